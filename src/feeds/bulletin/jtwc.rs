//! JTWC's tropical-cyclone warnings (`WTPN3x`, `WTPS3x`, `WTIO3x` … `PGTW`).
//!
//! CRLF line ends and trailing spaces; the position `080000Z --- NEAR 9.0S 155.9E`; winds
//! `MAX SUSTAINED WINDS - 115 KT, GUSTS 140 KT` (1-minute mean, knots); radii
//! `RADIUS OF 064 KT WINDS - 040 NM NORTHEAST QUADRANT` with the other quadrants on indented
//! continuation lines (`000 NM` occurs and means none that side), **repeated at every forecast
//! time**; forecasts under `12 HRS, VALID AT:`; the storm as `TROPICAL STORM 14W (CHAN-HOM)`
//! in the `SUBJ/` line (JTWC's numbers, not CMA's); the central pressure only in the
//! remarks. JTWC's 34, 50 and 64 kt radii stand for the 7-, 10- and 12-level circles as the
//! [`typhoon`](crate::feeds::typhoon) module describes (34 kt is already level 8, so that
//! circle is the smaller one); knots become m/s and nautical miles km.

use jiff::{SignedDuration, Timestamp};

use super::{Heading, coord, day_time};
use crate::feeds::FeedError;
use crate::feeds::typhoon::{
    Grade, KT_TO_MS, NM_TO_KM, Radii, RadiusSource, Track, TrackPoint, wind_level,
};

fn bad(line: usize, message: impl Into<String>) -> FeedError {
    FeedError::Format {
        line: Some(line as u32),
        message: message.into(),
    }
}

fn quadrant(s: &str) -> Option<usize> {
    Some(match s {
        "NORTHEAST" => 0,
        "SOUTHEAST" => 1,
        "SOUTHWEST" => 2,
        "NORTHWEST" => 3,
        _ => return None,
    })
}

#[derive(Default)]
struct Point {
    hours: i64,
    time: Option<Timestamp>,
    lat: f64,
    lon: f64,
    wind_kt: Option<f64>,
    /// 34, 50, 64 kt; per quadrant, nautical miles.
    radii: [[Option<f64>; 4]; 3],
    motion: Option<(f64, f64)>,
}

impl Point {
    fn track_point(&self, pressure: Option<f64>) -> Option<TrackPoint> {
        let wind = self.wind_kt.map(|k| (k * KT_TO_MS * 10.0).round() / 10.0);
        let radii = |c: usize, source| {
            let r = self.radii[c].map(|x| x.unwrap_or(0.0) * NM_TO_KM);
            r.iter().any(|x| *x > 0.0).then_some(Radii {
                ne: r[0],
                se: r[1],
                sw: r[2],
                nw: r[3],
                source,
            })
        };
        Some(TrackPoint {
            time: self.time?,
            lat: self.lat,
            lon: self.lon,
            grade: wind.and_then(Grade::from_wind),
            wind_ms: wind,
            level: wind.map(wind_level),
            pressure_hpa: pressure,
            move_dir: self.motion.map(|m| format!("{:.0}°", m.0)),
            move_speed_kmh: self.motion.map(|m| (m.1 * NM_TO_KM * 10.0).round() / 10.0),
            r7: radii(0, RadiusSource::Jtwc34kt),
            r10: radii(1, RadiusSource::Jtwc50kt),
            r12: radii(2, RadiusSource::Jtwc64kt),
        })
    }
}

/// One JTWC warning, with the notes reading it raised.
pub fn warning(
    h: &Heading,
    body: &[&str],
    reference: Timestamp,
) -> Result<(Track, Vec<String>), FeedError> {
    let notes = Vec::new();
    let mut id = String::new();
    let mut name = String::new();
    let mut points: Vec<Point> = Vec::new();
    let mut hours: i64 = 0;
    let mut block: Option<usize> = None;
    let mut pressure: Option<f64> = None;
    let mut remarks = false;
    for (i, raw) in body.iter().enumerate() {
        let n = i + 1;
        let line = raw.trim().trim_end_matches('=').trim_end();
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if let Some(subj) = line.strip_prefix("SUBJ/") {
            // TROPICAL STORM 14W (CHAN-HOM) WARNING NR 007//
            if let (Some(a), Some(b)) = (subj.find('('), subj.find(')')) {
                name = subj[a + 1..b.max(a + 1)].trim().to_string();
                id = subj[..a]
                    .split_whitespace()
                    .last()
                    .unwrap_or_default()
                    .to_string();
            } else if let Some(w) = subj
                .split_whitespace()
                .find(|w| w.len() == 3 && w[..2].bytes().all(|b| b.is_ascii_digit()))
            {
                id = w.to_string();
            }
            continue;
        }
        if line.starts_with("REMARKS") {
            remarks = true;
        }
        if remarks {
            // MINIMUM CENTRAL PRESSURE AT 080000Z IS 937 MB.
            if let Some(k) = line.find("MINIMUM CENTRAL PRESSURE AT ") {
                let rest = &line[k..];
                pressure = rest
                    .split_whitespace()
                    .skip_while(|w| *w != "IS")
                    .nth(1)
                    .and_then(|p| p.parse::<f64>().ok())
                    .filter(|p| (850.0..=1050.0).contains(p));
            }
            continue;
        }
        if f.len() >= 3 && f[1] == "HRS," && f[2] == "VALID" {
            hours = f[0]
                .parse()
                .map_err(|_| bad(n, format!("forecast hour `{}` unreadable", f[0])))?;
            continue;
        }
        if f.len() >= 4 && f[1] == "---" && f[0].ends_with('Z') && f[0].len() == 7 {
            let time = f[0]
                .get(..6)
                .and_then(|d| day_time(d, reference))
                .ok_or_else(|| bad(n, format!("`{}` is not DDHHMMZ", f[0])))?;
            let k = if f[2] == "NEAR" { 3 } else { 2 };
            let lat = f.get(k).and_then(|s| coord(s)).filter(|v| v.abs() <= 90.0);
            let lon = f
                .get(k + 1)
                .and_then(|s| coord(s))
                .filter(|v| v.abs() <= 180.0);
            let (Some(lat), Some(lon)) = (lat, lon) else {
                return Err(bad(n, format!("position unreadable: `{line}`")));
            };
            points.push(Point {
                hours: if points.is_empty() { 0 } else { hours },
                time: Some(time),
                lat,
                lon,
                ..Point::default()
            });
            block = None;
            continue;
        }
        let Some(p) = points.last_mut() else {
            continue;
        };
        if line.starts_with("MAX SUSTAINED WINDS - ") {
            p.wind_kt = f
                .get(4)
                .and_then(|w| w.trim_end_matches(',').parse::<f64>().ok())
                .filter(|w| (0.0..=220.0).contains(w));
            if p.wind_kt.is_none() {
                return Err(bad(n, format!("wind unreadable: `{line}`")));
            }
        } else if line.starts_with("MOVEMENT PAST SIX HOURS - ") {
            // … - 350 DEGREES AT 05 KTS
            let dir = f.get(5).and_then(|d| d.parse::<f64>().ok());
            let kts = f.get(8).and_then(|d| d.parse::<f64>().ok());
            if let (Some(d), Some(k)) = (dir, kts) {
                p.motion = Some((d, k));
            }
        } else if f.len() >= 7 && f[0] == "RADIUS" && f[1] == "OF" && f[3] == "KT" {
            let c = match f[2] {
                "034" | "34" => 0,
                "050" | "50" => 1,
                "064" | "64" => 2,
                other => return Err(bad(n, format!("unknown radius threshold `{other} KT`"))),
            };
            block = Some(c);
            let r: f64 = f[6]
                .parse()
                .map_err(|_| bad(n, format!("radius `{}` unreadable", f[6])))?;
            match f.get(8).and_then(|q| quadrant(q)) {
                Some(q) => p.radii[c][q] = Some(r),
                // No quadrant: the same all round.
                None => p.radii[c] = [Some(r); 4],
            }
        } else if f.len() >= 3
            && f[1] == "NM"
            && let (Some(c), Ok(r), Some(q)) = (block, f[0].parse::<f64>(), quadrant(f[2]))
        {
            p.radii[c][q] = Some(r);
        } else {
            block = None;
        }
    }
    if points.is_empty() {
        return Err(bad(1, "no `DDHHMMZ --- NEAR <lat> <lon>` warning position"));
    }
    if id.is_empty() {
        return Err(bad(1, "no `SUBJ/… <ID> (<NAME>) WARNING NR …` line"));
    }
    let first = points.remove(0);
    let analysis = first
        .track_point(pressure)
        .ok_or_else(|| bad(1, "warning position without a time"))?;
    let t0 = analysis.time;
    let mut ahead = Vec::new();
    for p in &points {
        if let Some(mut tp) = p.track_point(None) {
            // The stated hour is the check on the stated time.
            if tp.time.duration_since(t0) != SignedDuration::from_hours(p.hours) {
                tp.time = t0
                    .checked_add(SignedDuration::from_hours(p.hours))
                    .unwrap_or(tp.time);
            }
            ahead.push(tp);
        }
    }
    Ok((
        super::bulletin_track(h, id, name, "jtwc-warning", analysis, ahead),
        notes,
    ))
}
