//! The county map of the office page, as inline SVG drawn from the registry's own coordinates:
//! no tiles, no map library, nothing fetched at run time (the office may be cut off from the
//! internet exactly when it needs the map).
//!
//! The base layer (every village outline, or a dot where no outline is known) is drawn once;
//! each board adds its warned places on top: filled by tier, ringed by answer (silent: a thick
//! black ring; waiting: grey; answered: green). Each mark carries a `<title>` (its name and
//! state) and `data-` attributes tests and scripts can read.

use std::fmt::Write;

use crate::registry::Registry;
use crate::respond::board::{Answer, Board};

/// Width of the drawing in SVG units (height follows the county's shape).
const WIDTH: f64 = 800.0;
const MARGIN: f64 = 12.0;

/// The projection and the base layer.
#[derive(Debug, Clone)]
pub struct BaseMap {
    min_lon: f64,
    max_lat: f64,
    /// Units per degree of longitude (latitude: divided by the cosine).
    scale: f64,
    kx: f64,
    height: f64,
    base: String,
}

impl BaseMap {
    /// Fit the registry's villages (outlines where known, else points) into the drawing.
    pub fn new(reg: &Registry) -> BaseMap {
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for v in &reg.data.villages {
            pts.push((v.point.lon, v.point.lat));
            if let Some(poly) = &v.polygon {
                for p in &poly.0 {
                    pts.extend(p.exterior().0.iter().map(|c| (c.x, c.y)));
                }
            }
        }
        let (mut min_lon, mut max_lon, mut min_lat, mut max_lat) = (180.0, -180.0, 90.0, -90.0);
        for (lon, lat) in &pts {
            min_lon = f64::min(min_lon, *lon);
            max_lon = f64::max(max_lon, *lon);
            min_lat = f64::min(min_lat, *lat);
            max_lat = f64::max(max_lat, *lat);
        }
        if pts.is_empty() {
            (min_lon, max_lon, min_lat, max_lat) = (0.0, 1.0, 0.0, 1.0);
        }
        // Equirectangular about the middle latitude: right enough for a county.
        let kx = ((min_lat + max_lat) / 2.0_f64).to_radians().cos().max(0.1);
        let span_x = ((max_lon - min_lon) * kx).max(1e-6);
        let span_y = (max_lat - min_lat).max(1e-6);
        let scale = (WIDTH - 2.0 * MARGIN) / span_x;
        let height = span_y * scale + 2.0 * MARGIN;
        let mut m = BaseMap {
            min_lon,
            max_lat,
            scale,
            kx,
            height,
            base: String::new(),
        };
        let mut base = String::new();
        for v in &reg.data.villages {
            match &v.polygon {
                Some(poly) => {
                    for p in &poly.0 {
                        let d = m.path(p.exterior().0.iter().map(|c| (c.x, c.y)));
                        let _ = write!(base, r#"<path class="v" d="{d}"/>"#);
                    }
                }
                None => {
                    let (x, y) = m.xy(v.point.lon, v.point.lat);
                    let _ = write!(base, r#"<circle class="v" cx="{x:.1}" cy="{y:.1}" r="2"/>"#);
                }
            }
        }
        m.base = base;
        m
    }

    fn xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        (
            MARGIN + (lon - self.min_lon) * self.kx * self.scale,
            MARGIN + (self.max_lat - lat) * self.scale,
        )
    }

    fn path(&self, pts: impl Iterator<Item = (f64, f64)>) -> String {
        let mut d = String::new();
        for (i, (lon, lat)) in pts.enumerate() {
            let (x, y) = self.xy(lon, lat);
            let _ = write!(d, "{}{x:.1} {y:.1}", if i == 0 { "M" } else { "L" });
        }
        d.push('Z');
        d
    }

    /// The map with a board's places on it.
    pub fn draw(&self, board: &Board) -> String {
        let mut s = String::with_capacity(self.base.len() + 4096);
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {h:.0}" role="img" aria-label="county map" class="map"><style>.v{{fill:#f2f2ee;stroke:#b8b8b0;stroke-width:.6}}.p{{stroke-width:2;fill-opacity:.85}}.silent{{stroke:#000;stroke-width:4;stroke-dasharray:4 2}}.waiting{{stroke:#777}}.answered{{stroke:#0a0}}.uncalled{{stroke:#ccc}}</style>"#,
            h = self.height
        );
        s.push_str(&self.base);
        // Most serious last, so it is drawn on top.
        let mut places: Vec<_> = board
            .warnings
            .iter()
            .flat_map(|w| w.places.iter())
            .filter_map(|p| p.point.map(|pt| (p, pt)))
            .collect();
        places.sort_by_key(|(p, _)| (p.tier_rank(), std::cmp::Reverse(p.answer)));
        for (p, (lat, lon)) in places {
            let (x, y) = self.xy(lon, lat);
            let fill = crate::correlate::Tier::parse(&p.tier).map_or("#888", |t| t.rgb());
            let r = if p.kind == "site" { 4.0 } else { 6.5 };
            let _ = write!(
                s,
                r#"<circle class="p {a}" data-place="{id}" data-answer="{a}" cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}"><title>{name} {a} {moved}/{to_move}</title></circle>"#,
                a = p.answer.as_str(),
                id = esc(&p.id),
                name = esc(&p.name),
                moved = p.moved,
                to_move = p.to_move,
            );
            if p.answer == Answer::Silent {
                let _ = write!(
                    s,
                    r#"<text x="{tx:.1}" y="{ty:.1}" font-size="11">{name}</text>"#,
                    tx = x + 8.0,
                    ty = y + 4.0,
                    name = esc(&p.name)
                );
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// Escape text for SVG (XML).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}
