//! The after-action report's charts, as inline SVG on one time axis: who answered over time
//! per level, people to move / moved / back home over time (the evacuation ledger replayed
//! report by report), and the warning's tier as it was issued. Drawn here from the report's
//! own figures, so a chart's last value is the table's; no words inside (the report's
//! template names the series, in its language), only numbers and times.

use std::fmt::Write;

use jiff::Timestamp;
use serde::Serialize;

/// One series: a colour and its points (time, value), in time order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Its key (the template names it).
    pub key: String,
    /// Stroke colour.
    pub colour: &'static str,
    /// (time, value), a step line.
    pub points: Vec<(Timestamp, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 10.0;
const RIGHT: f64 = 12.0;

/// A step chart of `series` over [`from`, `to`], times labelled in `tz` (`08-09 18:02`).
pub fn steps(series: &[Series], from: Timestamp, to: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    let span = (to.as_second() - from.as_second()).max(60) as f64;
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max);
    // Four grid lines at round steps (a tier chart: 1, 2, 3, 4).
    let step = nice(top / 4.0);
    let top = step * 4.0;
    let x =
        |t: Timestamp| LEFT + (t.as_second() - from.as_second()) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - v / top * (H - BOTTOM - TOP);
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" font-size="10" font-family="sans-serif">"#
    );
    // Axes and grid: four value lines, five time ticks.
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{v}</text>"##,
            x2 = W - RIGHT,
            tx = LEFT - 4.0,
            ty = yy + 3.0,
            v = v.round() as i64
        );
    }
    for i in 0..=4 {
        let t = Timestamp::from_second(from.as_second() + (span as i64) * i64::from(i) / 4)
            .unwrap_or(from);
        let xx = x(t);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{yb}" stroke="#eee"/><text x="{xx:.1}" y="{ty}" text-anchor="middle">{label}</text>"##,
            yb = H - BOTTOM,
            ty = H - BOTTOM + 14.0,
            label = super::board::readable(t, tz)
        );
    }
    for se in series {
        if se.points.is_empty() {
            continue;
        }
        let mut d = String::new();
        let mut last: Option<f64> = None;
        for (t, v) in &se.points {
            let (xx, yy) = (x(*t), y(*v));
            match last {
                None => {
                    let _ = write!(d, "M{xx:.1} {yy:.1}");
                }
                Some(prev) => {
                    let _ = write!(d, " L{xx:.1} {:.1} L{xx:.1} {yy:.1}", y(prev));
                }
            }
            last = Some(*v);
        }
        if let Some(v) = last {
            let _ = write!(d, " L{:.1} {:.1}", x(to), y(v));
        }
        let _ = write!(
            s,
            r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="2" data-series="{k}" data-last="{v}"/>"#,
            c = se.colour,
            // A gauge's name comes from a feed: never markup.
            k = crate::cap::xml::escape_attr(&se.key),
            v = last.unwrap_or(0.0)
        );
    }
    s.push_str("</svg>");
    s
}

/// A round top for the value axis (1, 2 or 5 times a power of ten).
fn nice(v: f64) -> f64 {
    let v = v.max(1.0);
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_chart_ends_on_its_last_value_and_keeps_inside_the_frame() {
        let t0: Timestamp = "2019-08-09T04:00:00Z".parse().unwrap();
        let t1: Timestamp = "2019-08-09T10:00:00Z".parse().unwrap();
        let s = steps(
            &[Series {
                key: "moved".into(),
                colour: "#0a0",
                points: vec![(t0, 0.0), ("2019-08-09T06:00:00Z".parse().unwrap(), 35.0)],
            }],
            t0,
            t1,
            &jiff::tz::TimeZone::fixed(jiff::tz::offset(8)),
        );
        assert!(s.contains(r#"data-last="35""#), "{s}");
        assert!(
            s.contains("08-09 12:00") && s.contains("08-09 18:00"),
            "{s}"
        );
        assert_eq!(nice(35.0), 50.0);
        assert_eq!(nice(172.0), 200.0);
        assert_eq!(nice(1.0), 1.0);
        // A series named by a feed (a gauge) cannot break out of its attribute.
        let hostile = steps(
            &[Series {
                key: r#""><script>x</script>"#.into(),
                colour: "#0a0",
                points: vec![(t0, 1.0)],
            }],
            t0,
            t1,
            &jiff::tz::TimeZone::UTC,
        );
        assert!(!hostile.contains("<script>"), "{hostile}");
    }
}
