//! Google Public Alerts' rules on top of CAP 1.2.
//!
//! Google (and most aggregators that follow it) require more than the standard: an expiry, a
//! description and an area in every `<info>`, plain text, valid polygons, and one alert per
//! contiguous area. Sources: <https://developers.google.com/public-alerts/reference/google-cap-requirements>
//! and DOMAIN.md §4.3. stormbell checks its own output against these so that downstream
//! systems can show its warnings.

use geo::{Coord, Intersects, LineString, Polygon as GeoPolygon};

use super::model::*;
use super::problem::Problems;

/// Check an alert against Google's profile. Paths are model paths (`alert/info[1]/area[2]`).
pub fn check(alert: &Alert, out: &mut Problems) {
    if alert.infos.is_empty() && alert.msg_type != MsgType::Cancel {
        out.error(
            "google.info",
            None,
            "alert",
            "Google requires at least one <info> (except in a Cancel)",
        );
    }
    let mut languages: Vec<(&str, &str)> = Vec::new();
    for (i, info) in alert.infos.iter().enumerate() {
        let p = format!("alert/info[{}]", i + 1);
        let lang = info.language.as_deref().unwrap_or("en-US");
        if let Some((_, ev)) = languages.iter().find(|(l, _)| *l == lang)
            && *ev == info.event
        {
            out.warn(
                "google.language",
                None,
                &p,
                format!("a second <info> in language {lang} for the same event; use one <info> per language"),
            );
        }
        languages.push((lang, &info.event));
        if info.expires.is_none() {
            out.error("google.expires", None, &p, "Google requires <expires>");
        }
        if info
            .description
            .as_deref()
            .is_none_or(|d| d.trim().is_empty())
        {
            out.error(
                "google.description",
                None,
                &p,
                "Google requires a <description>",
            );
        }
        if info.areas.is_empty() {
            out.error(
                "google.area",
                None,
                &p,
                "Google requires at least one <area>",
            );
        }
        if info.instruction.is_none() {
            out.warn(
                "google.instruction",
                None,
                &p,
                "Google recommends an <instruction>",
            );
        }
        if info.response_types.is_empty() {
            out.warn(
                "google.response-type",
                None,
                &p,
                "Google recommends a <responseType>",
            );
        }
        for (what, v) in [
            ("urgency", info.urgency == Urgency::Unknown),
            ("severity", info.severity == Severity::Unknown),
            ("certainty", info.certainty == Certainty::Unknown),
        ] {
            if v {
                out.warn(
                    "google.unknown",
                    None,
                    format!("{p}/{what}"),
                    format!("{what} Unknown: Google needs a real value to rank and show the alert"),
                );
            }
        }
        for (what, text) in [
            ("headline", &info.headline),
            ("description", &info.description),
            ("instruction", &info.instruction),
        ] {
            if let Some(t) = text
                && let Some(tag) = html_tag(t)
            {
                out.error(
                    "google.plain-text",
                    None,
                    format!("{p}/{what}"),
                    format!("contains HTML markup `{tag}`; Google requires plain text"),
                );
            }
        }
        let mut shapes: Vec<(String, GeoPolygon<f64>)> = Vec::new();
        for (j, area) in info.areas.iter().enumerate() {
            let ap = format!("{p}/area[{}]", j + 1);
            if area.polygons.is_empty() && area.circles.is_empty() && area.geocodes.is_empty() {
                out.error(
                    "google.area-shape",
                    None,
                    &ap,
                    "an <area> needs a <polygon>, <circle> or <geocode>",
                );
            }
            if area.area_desc.chars().count() >= 50 {
                out.warn(
                    "google.area-desc",
                    None,
                    format!("{ap}/areaDesc"),
                    "Google shows <areaDesc> in titles: keep it under 50 characters",
                );
            }
            for (k, poly) in area.polygons.iter().enumerate() {
                let pp = format!("{ap}/polygon[{}]", k + 1);
                if poly.points.len() < 4 {
                    continue; // the core CAP check reports it
                }
                if let Some((a, b)) = self_intersection(&poly.points) {
                    out.error(
                        "google.polygon-valid",
                        None,
                        &pp,
                        format!("the polygon crosses itself (edges {a} and {b}); Google requires valid polygons"),
                    );
                }
                shapes.push((pp, to_geo(&poly.points)));
            }
            for (k, c) in area.circles.iter().enumerate() {
                let cp = format!("{ap}/circle[{}]", k + 1);
                if c.radius_km <= 0.0 {
                    out.warn(
                        "google.circle-zero",
                        None,
                        &cp,
                        "a circle of zero radius is not shown by Google",
                    );
                    continue;
                }
                shapes.push((cp, circle_polygon(c)));
            }
        }
        if shapes.len() > 1 {
            let groups = components(&shapes);
            if groups > 1 {
                out.error(
                    "google.contiguous",
                    None,
                    &p,
                    format!(
                        "the areas form {groups} separate regions; Google requires non-contiguous \
                         areas to be sent as separate alerts"
                    ),
                );
            }
        }
    }
}

/// The first thing that looks like an HTML tag or entity-encoded tag.
fn html_tag(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    for pat in [
        "<br", "<p>", "<p ", "</", "<a ", "<b>", "<i>", "<div", "<span", "<img", "&lt;br", "&lt;p",
    ] {
        if let Some(at) = lower.find(pat) {
            let end = (at + 12).min(s.len());
            let end = (end..=s.len())
                .find(|&e| s.is_char_boundary(e))
                .unwrap_or(s.len());
            return Some(s[at..end].to_string());
        }
    }
    None
}

fn to_geo(points: &[Point]) -> GeoPolygon<f64> {
    let ring: Vec<Coord<f64>> = points
        .iter()
        .map(|p| Coord { x: p.lon, y: p.lat })
        .collect();
    GeoPolygon::new(LineString::new(ring), vec![])
}

/// A circle as a 36-sided polygon (planar approximation, good enough to judge contiguity).
fn circle_polygon(c: &Circle) -> GeoPolygon<f64> {
    let dlat = c.radius_km / 111.32;
    let coslat = c.center.lat.to_radians().cos().abs().max(0.01);
    let dlon = c.radius_km / (111.32 * coslat);
    let mut ring: Vec<Coord<f64>> = (0..36)
        .map(|i| {
            let a = (i as f64) * std::f64::consts::TAU / 36.0;
            Coord {
                x: c.center.lon + dlon * a.cos(),
                y: c.center.lat + dlat * a.sin(),
            }
        })
        .collect();
    ring.push(ring[0]);
    GeoPolygon::new(LineString::new(ring), vec![])
}

/// Number of connected groups among shapes that touch or overlap.
fn components(shapes: &[(String, GeoPolygon<f64>)]) -> usize {
    let n = shapes.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], i: usize) -> usize {
        let mut r = i;
        while p[r] != r {
            r = p[r];
        }
        let mut i = i;
        while p[i] != r {
            let next = p[i];
            p[i] = r;
            i = next;
        }
        r
    }
    for i in 0..n {
        for j in i + 1..n {
            if shapes[i].1.intersects(&shapes[j].1) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a] = b;
                }
            }
        }
    }
    (0..n).filter(|&i| find(&mut parent, i) == i).count()
}

/// Two non-adjacent edges of a closed ring that cross, as 1-based edge numbers.
fn self_intersection(points: &[Point]) -> Option<(usize, usize)> {
    let n = points.len() - 1; // closed ring: last == first
    let seg = |i: usize| (points[i], points[i + 1]);
    for i in 0..n {
        for j in i + 1..n {
            if j == i + 1 || (i == 0 && j == n - 1) {
                continue; // adjacent edges share a vertex
            }
            let (a, b) = seg(i);
            let (c, d) = seg(j);
            if segments_cross(a, b, c, d) {
                return Some((i + 1, j + 1));
            }
        }
    }
    None
}

fn segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool {
    let orient = |p: Point, q: Point, r: Point| {
        let v = (q.lon - p.lon) * (r.lat - p.lat) - (q.lat - p.lat) * (r.lon - p.lon);
        if v.abs() < 1e-12 {
            0
        } else if v > 0.0 {
            1
        } else {
            -1
        }
    };
    let on_segment = |p: Point, q: Point, r: Point| {
        r.lon >= p.lon.min(q.lon)
            && r.lon <= p.lon.max(q.lon)
            && r.lat >= p.lat.min(q.lat)
            && r.lat <= p.lat.max(q.lat)
    };
    let (o1, o2, o3, o4) = (
        orient(a, b, c),
        orient(a, b, d),
        orient(c, d, a),
        orient(c, d, b),
    );
    if o1 != o2 && o3 != o4 && o1 != 0 && o2 != 0 && o3 != 0 && o4 != 0 {
        return true;
    }
    (o1 == 0 && on_segment(a, b, c))
        || (o2 == 0 && on_segment(a, b, d))
        || (o3 == 0 && on_segment(c, d, a))
        || (o4 == 0 && on_segment(c, d, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Point> {
        v.iter().map(|&(lat, lon)| Point { lat, lon }).collect()
    }

    #[test]
    fn finds_a_bow_tie() {
        let bow = pts(&[(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0)]);
        assert!(self_intersection(&bow).is_some());
        let square = pts(&[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)]);
        assert!(self_intersection(&square).is_none());
    }

    #[test]
    fn counts_separate_regions() {
        let a = to_geo(&pts(&[
            (0.0, 0.0),
            (0.0, 1.0),
            (1.0, 1.0),
            (1.0, 0.0),
            (0.0, 0.0),
        ]));
        let b = to_geo(&pts(&[
            (0.5, 0.5),
            (0.5, 2.0),
            (2.0, 2.0),
            (2.0, 0.5),
            (0.5, 0.5),
        ]));
        let c = to_geo(&pts(&[
            (10.0, 10.0),
            (10.0, 11.0),
            (11.0, 11.0),
            (11.0, 10.0),
            (10.0, 10.0),
        ]));
        let shapes = vec![("a".into(), a), ("b".into(), b), ("c".into(), c)];
        assert_eq!(components(&shapes), 2);
    }

    #[test]
    fn spots_html() {
        assert!(html_tag("ALERT LEVEL: Advice<br />LOCATION").is_some());
        assert!(html_tag("请立即转移到安全地点").is_none());
    }
}
