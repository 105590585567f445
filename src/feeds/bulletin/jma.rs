//! JMA's RSMC tropical-cyclone advisories (`WTPQ5x RJTD`, RSMC Tokyo).
//!
//! ```text
//! WTPQ50 RJTD 080000
//! RSMC TROPICAL CYCLONE ADVISORY
//! NAME TY 1909 LEKIMA (1909)
//! ANALYSIS
//! PSTN 080000UTC 24.9N 124.6E GOOD
//! MOVE NW 10KT
//! PRES 925HPA
//! MXWD 105KT
//! GUST 150KT
//! 50KT 90NM
//! 30KT 240NM NORTHEAST 180NM SOUTHWEST
//! FORECAST
//! 24HF 090000UTC 27.3N 121.7E 45NM 70%
//! MOVE NW 08KT
//! …
//! ```
//!
//! Winds are JMA's 10-minute mean in knots, radii nautical miles. A radius is a circle
//! (`50KT 90NM`) or a long radius towards a direction and a short one opposite
//! (`30KT 240NM NORTHEAST 180NM SOUTHWEST`): the quadrants facing that direction get the long
//! one (`NORTH` is a semicircle: both northern quadrants), the others the short one. Forecast
//! positions carry the radius of the 70 % probability circle (`45NM 70%`), which is the
//! position's uncertainty, not a wind radius, and is not used as one. `MOVE W SLOWLY` and
//! `MOVE ALMOST STATIONARY` are legal; the last line may end with `=`.
//! JMA's 30 kt radius stands for the 7-level circle and the 50 kt radius for the 10-level one.

use jiff::Timestamp;

use super::{Heading, coord, day_time, number_before};
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

/// The quadrants (NE, SE, SW, NW) facing a direction.
fn facing(dir: &str) -> Option<[bool; 4]> {
    Some(match dir {
        "NORTH" => [true, false, false, true],
        "EAST" => [true, true, false, false],
        "SOUTH" => [false, true, true, false],
        "WEST" => [false, false, true, true],
        "NORTHEAST" => [true, false, false, false],
        "SOUTHEAST" => [false, true, false, false],
        "SOUTHWEST" => [false, false, true, false],
        "NORTHWEST" => [false, false, false, true],
        _ => return None,
    })
}

struct Point {
    time: Timestamp,
    lat: f64,
    lon: f64,
    pres: Option<f64>,
    wind_kt: Option<f64>,
    motion: Option<String>,
    r30: Option<[f64; 4]>,
    r50: Option<[f64; 4]>,
}

impl Point {
    fn track_point(&self) -> TrackPoint {
        let wind = self.wind_kt.map(|k| (k * KT_TO_MS * 10.0).round() / 10.0);
        let radii = |r: Option<[f64; 4]>, source| {
            r.filter(|r| r.iter().any(|x| *x > 0.0)).map(|r| Radii {
                ne: r[0] * NM_TO_KM,
                se: r[1] * NM_TO_KM,
                sw: r[2] * NM_TO_KM,
                nw: r[3] * NM_TO_KM,
                source,
            })
        };
        TrackPoint {
            time: self.time,
            lat: self.lat,
            lon: self.lon,
            grade: wind.and_then(Grade::from_wind),
            wind_ms: wind,
            level: wind.map(wind_level),
            pressure_hpa: self.pres,
            move_dir: self.motion.clone(),
            move_speed_kmh: None,
            r7: radii(self.r30, RadiusSource::Jma30kt),
            r10: radii(self.r50, RadiusSource::Jma50kt),
            r12: None,
        }
    }
}

/// `240NM NORTHEAST 180NM SOUTHWEST` or `90NM` as quadrants (NM).
fn radius(f: &[&str], n: usize) -> Result<[f64; 4], FeedError> {
    let long = f
        .first()
        .and_then(|s| number_before(s, "NM"))
        .ok_or_else(|| bad(n, "radius is not nnNM"))?;
    let Some(dir) = f.get(1) else {
        return Ok([long; 4]);
    };
    let side = facing(dir).ok_or_else(|| bad(n, format!("unknown direction `{dir}`")))?;
    let short = f
        .get(2)
        .and_then(|s| number_before(s, "NM"))
        .unwrap_or(long);
    Ok(side.map(|s| if s { long } else { short }))
}

/// One RSMC advisory, with the notes reading it raised.
pub fn advisory(
    h: &Heading,
    body: &[&str],
    reference: Timestamp,
) -> Result<(Track, Vec<String>), FeedError> {
    let notes = Vec::new();
    let mut storm: Option<(String, String)> = None;
    let mut points: Vec<Point> = Vec::new();
    for (i, raw) in body.iter().enumerate() {
        let n = i + 1;
        let line = raw.trim().trim_end_matches('=').trim_end();
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(&key) = f.first() else {
            continue;
        };
        if key == "NAME" {
            // NAME TY 1909 LEKIMA (1909)  /  NAME TD
            let number = f
                .iter()
                .find(|x| x.len() == 4 && x.bytes().all(|b| b.is_ascii_digit()))
                .map(|s| s.to_string())
                .unwrap_or_default();
            let name = f
                .iter()
                .skip(2)
                .filter(|x| {
                    !x.starts_with('(') && x.bytes().all(|b| b.is_ascii_uppercase() || b == b'-')
                })
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            storm = Some((number, name));
            continue;
        }
        let position = |t: &str, lat: &str, lon: &str| -> Result<Point, FeedError> {
            let time = t
                .strip_suffix("UTC")
                .and_then(|d| day_time(d, reference))
                .ok_or_else(|| bad(n, format!("`{t}` is not DDHHMMUTC")))?;
            let lat = coord(lat).filter(|v| v.abs() <= 90.0);
            let lon = coord(lon).filter(|v| v.abs() <= 180.0);
            let (Some(lat), Some(lon)) = (lat, lon) else {
                return Err(bad(n, format!("position unreadable: `{line}`")));
            };
            Ok(Point {
                time,
                lat,
                lon,
                pres: None,
                wind_kt: None,
                motion: None,
                r30: None,
                r50: None,
            })
        };
        if key == "PSTN" && f.len() >= 4 {
            points.push(position(f[1], f[2], f[3])?);
            continue;
        }
        if f.len() >= 4 && key.ends_with("HF") && key[..key.len() - 2].parse::<u32>().is_ok() {
            points.push(position(f[1], f[2], f[3])?);
            continue;
        }
        let Some(p) = points.last_mut() else {
            continue;
        };
        match key {
            "PRES" => p.pres = f.get(1).and_then(|s| number_before(s, "HPA")),
            "MXWD" => p.wind_kt = f.get(1).and_then(|s| number_before(s, "KT")),
            "MOVE" => p.motion = Some(f[1..].join(" ")),
            "30KT" => p.r30 = Some(radius(&f[1..], n)?),
            "50KT" => p.r50 = Some(radius(&f[1..], n)?),
            _ => {}
        }
    }
    let (number, name) = storm.ok_or_else(|| bad(1, "no `NAME <CAT> <NUMBER> <NAME>` line"))?;
    if points.is_empty() {
        return Err(bad(1, "no `PSTN DDHHMMUTC <lat> <lon>` analysis"));
    }
    let analysis = points.remove(0).track_point();
    let ahead: Vec<TrackPoint> = points.iter().map(Point::track_point).collect();
    let storm = if number.is_empty() {
        name.clone()
    } else {
        number
    };
    Ok((
        super::bulletin_track(h, storm, name, "jma-advisory", analysis, ahead),
        notes,
    ))
}
