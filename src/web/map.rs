//! The county map of the office page, as inline SVG drawn from the registry's own coordinates:
//! no tiles, no map library, nothing fetched at run time (the office may be cut off from the
//! internet exactly when it needs the map).
//!
//! The base layer (every village outline, or a dot where no outline is known, then the
//! registry's optional town boundaries, coastline, rivers and roads as lines, and the town
//! names) is drawn once;
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
    /// Fit the registry's villages (outlines where known, else points) into the drawing; or
    /// with `county` (a 6-digit code) that county's villages only, fitted to them, with the
    /// base-map lines that pass through its box.
    pub fn of(reg: &Registry, county: Option<&str>) -> BaseMap {
        let villages: Vec<&crate::registry::model::Village> = reg
            .data
            .villages
            .iter()
            .filter(|v| county.is_none_or(|c| crate::registry::model::county_code(&v.town) == c))
            .collect();
        let mut pts: Vec<(f64, f64)> = Vec::new();
        // The drawing fits the villages and the base-map layers (a coastline beyond the last
        // village is what an officer orients on); one county's drawing fits its villages.
        if county.is_none() {
            for l in &reg.data.layers {
                pts.extend(l.lines.iter().flatten().map(|p| (p[0], p[1])));
            }
        }
        for v in &villages {
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
        // A line is drawn when a point of it falls in the drawing's box (or a little beyond).
        let slack = 0.05 * (max_lon - min_lon).max(max_lat - min_lat);
        let inside = |p: &[f64; 2]| {
            p[0] >= min_lon - slack
                && p[0] <= max_lon + slack
                && p[1] >= min_lat - slack
                && p[1] <= max_lat + slack
        };
        for v in &villages {
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
        // The base-map layers over the village outlines (lines only, so the villages show
        // through) and under the places: towns, coast, rivers, roads, then the town names.
        let mut order: Vec<&crate::registry::model::Layer> = reg.data.layers.iter().collect();
        order.sort_by_key(|l| {
            crate::registry::model::LayerKind::ALL
                .iter()
                .position(|(k, _)| *k == l.kind)
        });
        for l in &order {
            let _ = write!(base, r#"<g class="l {}">"#, l.kind.as_str());
            for line in l.lines.iter().filter(|l| l.iter().any(&inside)) {
                let d = m.polyline(line);
                if !d.is_empty() {
                    let _ = write!(base, r#"<path d="{d}"/>"#);
                }
            }
            base.push_str("</g>");
        }
        for l in order
            .iter()
            .filter(|l| l.kind == crate::registry::model::LayerKind::Towns)
        {
            let (Some(name), Some(ring)) = (&l.name, l.lines.first()) else {
                continue;
            };
            if !ring.iter().any(&inside) {
                continue;
            }
            let n = ring.len() as f64;
            let (lon, lat) = ring
                .iter()
                .fold((0.0, 0.0), |a, p| (a.0 + p[0] / n, a.1 + p[1] / n));
            let (x, y) = m.xy(lon, lat);
            let _ = write!(
                base,
                r#"<text class="town-name" x="{x:.1}" y="{y:.1}" text-anchor="middle">{}</text>"#,
                esc(name)
            );
        }
        m.base = base;
        m
    }

    /// A polyline as path data, points closer than half a unit to the last one dropped (a
    /// river's thousand vertices draw as a hundred).
    fn polyline(&self, pts: &[[f64; 2]]) -> String {
        let mut d = String::new();
        let mut last: Option<(f64, f64)> = None;
        for (i, p) in pts.iter().enumerate() {
            let (x, y) = self.xy(p[0], p[1]);
            let end = i + 1 == pts.len();
            if let Some((lx, ly)) = last
                && (x - lx).abs() < 0.5
                && (y - ly).abs() < 0.5
                && !end
            {
                continue;
            }
            let _ = write!(d, "{}{x:.1} {y:.1}", if last.is_none() { "M" } else { "L" });
            last = Some((x, y));
        }
        d
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
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {h:.0}" role="img" aria-label="预警地图" class="map"><style>.v{{fill:#f2f2ee;stroke:#b8b8b0;stroke-width:.6}}.l path{{fill:none}}.towns path{{stroke:#777;stroke-width:1.4;stroke-dasharray:6 3}}.coast path{{stroke:#6a8caf;stroke-width:1.6}}.rivers path{{stroke:#4a90d9;stroke-width:1.2}}.roads path{{stroke:#c8963e;stroke-width:1}}.town-name{{font-size:13px;fill:#555;font-weight:bold;paint-order:stroke;stroke:#fff;stroke-width:3}}.p{{stroke-width:2;fill-opacity:.85}}.silent{{stroke:#000;stroke-width:4;stroke-dasharray:4 2}}.silent-name{{font-weight:bold;paint-order:stroke;stroke:#fff;stroke-width:3}}.waiting{{stroke:#777}}.answered{{stroke:#0a0}}.uncalled{{stroke:#ccc}}</style>"#,
            h = self.height
        );
        s.push_str(&self.base);
        // One mark per place, however many warnings hold it: its highest tier, its worst
        // answer (a village silent under one warning is silent on the map).
        let mut marks: std::collections::BTreeMap<
            &str,
            (&crate::respond::board::Place, Answer, u8),
        > = Default::default();
        for p in board.warnings.iter().flat_map(|w| w.places.iter()) {
            if p.point.is_none() {
                continue;
            }
            let e = marks
                .entry(p.id.as_str())
                .or_insert((p, p.answer, p.tier_rank()));
            e.1 = e.1.min(p.answer);
            if p.tier_rank() > e.2 {
                e.0 = p;
                e.2 = p.tier_rank();
            }
        }
        let mut places: Vec<_> = marks.into_values().collect();
        // Most serious last, so it is drawn on top; silent ones above all.
        places.sort_by_key(|(p, a, t)| (std::cmp::Reverse(*a), *t, p.id.clone()));
        let mut labels = Labels::default();
        let mut silent = Vec::new();
        for (p, answer, _) in places {
            let Some((lat, lon)) = p.point else { continue };
            let (x, y) = self.xy(lon, lat);
            let fill = crate::correlate::Tier::parse(&p.tier).map_or("#888", |t| t.rgb());
            let r = if p.kind == "site" { 4.0 } else { 6.5 };
            let _ = write!(
                s,
                r#"<circle class="p {a}" data-place="{id}" data-answer="{a}" cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}"><title>{name} {moved}/{to_move}</title></circle>"#,
                a = answer.as_str(),
                id = esc(&p.id),
                name = esc(&p.name),
                moved = p.moved,
                to_move = p.to_move,
            );
            if answer == Answer::Silent {
                silent.push((x, y, p));
            }
        }
        // Names of the silent places, where they fit without covering another name; the
        // rest keep their name in the mark's title (and on the table).
        for (x, y, p) in silent {
            if let Some((tx, ty)) = labels.place(x, y, &p.name) {
                let _ = write!(
                    s,
                    r#"<text class="silent-name" data-place="{id}" x="{tx:.1}" y="{ty:.1}" font-size="11">{name}</text>"#,
                    id = esc(&p.id),
                    name = esc(&p.name)
                );
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// Names placed so far on the drawing, so that no two overlap.
#[derive(Default)]
struct Labels {
    boxes: Vec<(f64, f64, f64, f64)>,
}

impl Labels {
    /// Where to write `name` beside the mark at (x, y): the first of four positions (right,
    /// left, above, below) that overlaps no name already placed; `None` when none is free.
    fn place(&mut self, x: f64, y: f64, name: &str) -> Option<(f64, f64)> {
        // 11-unit type: a Chinese character is about 11 wide, a Latin one about 6.
        let w: f64 = name
            .chars()
            .map(|c| if c.is_ascii() { 6.0 } else { 11.0 })
            .sum();
        let h = 12.0;
        for (tx, ty) in [
            (x + 8.0, y + 4.0),
            (x - 8.0 - w, y + 4.0),
            (x - w / 2.0, y - 9.0),
            (x - w / 2.0, y + 17.0),
        ] {
            let b = (tx, ty - h + 2.0, tx + w, ty + 2.0);
            if !self
                .boxes
                .iter()
                .any(|o| b.0 < o.2 && o.0 < b.2 && b.1 < o.3 && o.1 < b.3)
            {
                self.boxes.push(b);
                return Some((tx, ty));
            }
        }
        None
    }

    #[cfg(test)]
    fn overlapping(&self) -> bool {
        self.boxes.iter().enumerate().any(|(i, b)| {
            self.boxes[i + 1..]
                .iter()
                .any(|o| b.0 < o.2 && o.0 < b.2 && b.1 < o.3 && o.1 < b.3)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_cover_one_another() {
        let mut l = Labels::default();
        let mut placed = 0;
        // Forty places on top of one another and in a tight grid.
        for i in 0..40 {
            let (x, y) = (
                100.0 + f64::from(i % 5) * 9.0,
                100.0 + f64::from(i / 5) * 7.0,
            );
            placed += usize::from(l.place(x, y, "龙塘村").is_some());
        }
        assert!(!l.overlapping());
        assert!(placed > 4 && placed < 40, "{placed}");
    }
}
