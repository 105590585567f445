//! CMA's bulletins (National Meteorological Centre, Beijing, `BABJ`).
//!
//! `WTPQ20 BABJ` "SUBJECTIVE FORECAST", the product behind every Chinese typhoon signal:
//!
//! ```text
//! WTPQ20 BABJ 241800 CCA
//! SUBJECTIVE FORECAST
//! TS PABUK 2426 (2426) INITIAL TIME 241800 UTC
//! 00HR 11.4N 111.1E 1000HPA 18M/S
//! 30KTS WINDS 150KM NORTHEAST
//! 120KM SOUTHEAST                       (continuations: no prefix, NE SE SW NW, indented or not)
//! 120KM SOUTHWEST
//! 180KM NORTHWEST
//! MOVE WSW 16KM/H
//! P+06HR 11.1N 110.3E 1000HPA 18M/S     (6-hourly near the coast, else 12/24/…/120 h)
//! P+36HR 9.5N 107.2E 1002HPA 15M/S=
//! ```
//!
//! Categories are TD, TS, STS, TY, STY and `SuperTY` (mixed case); an unnamed depression is
//! `TD  01 INITIAL TIME …`. Winds are CMA's 2-minute mean in m/s. The 30, 50 and 64 kt blocks
//! are CMA's 7-, 10- and 12-level circles, present only as far as the storm has them (none for
//! a TD) and **only at the analysis**.
//!
//! **Radii at the forecast points.** CMA gives none, yet the signal criteria look 12–24 h
//! ahead. Each quadrant's circles are carried to each forecast point by the analysis' wind
//! profile ([`wind_profile::carry`]): the Holland (1980) profile fitted to the analysis
//! circles, with the same radius of maximum wind and shape (the storm keeps its size), read
//! at the forecast's maximum wind. A weakening storm's circles shrink and a circle ends when
//! the forecast wind no longer reaches its level; where no profile fits, a circle is carried
//! unchanged while the forecast wind still reaches its level. Carried circles are marked
//! [`RadiusSource::Carried`] and the warnings say the circle was derived.
//!
//! `WHCI40 BABJ` landfall messages put the number before the name and write `GMT` and `m/s`:
//! `STY 1808 (1808) MARIA LANDED ON FUJIAN LIANJIANG` / `110110GMT (42m/s)`.

use jiff::{SignedDuration, Timestamp};

use super::{Heading, Landfall, coord, day_time, number_before};
use crate::feeds::FeedError;
use crate::feeds::typhoon::{
    Grade, Radii, RadiusSource, Track, TrackPoint, level_floor, wind_level,
};
use crate::feeds::wind_profile::{self, RMAX_PRIOR_KM};

fn bad(line: usize, message: impl Into<String>) -> FeedError {
    FeedError::Format {
        line: Some(line as u32),
        message: message.into(),
    }
}

/// A CMA category as written in the bulletins.
fn category(s: &str) -> Option<Grade> {
    Some(match s {
        "TD" => Grade::TD,
        "TS" => Grade::TS,
        "STS" => Grade::STS,
        "TY" => Grade::TY,
        "STY" => Grade::STY,
        "SuperTY" | "SUPERTY" | "SUPER" => Grade::SuperTY,
        _ => return None,
    })
}

fn quadrant(s: &str) -> Option<usize> {
    Some(match s {
        "NORTHEAST" | "NE" => 0,
        "SOUTHEAST" | "SE" => 1,
        "SOUTHWEST" | "SW" => 2,
        "NORTHWEST" | "NW" => 3,
        _ => return None,
    })
}

/// The speeds of the 7-, 10- and 12-level circles (m/s).
fn circle_speeds() -> [f64; 3] {
    [level_floor(7), level_floor(10), level_floor(12)]
}

/// Latitude, longitude, pressure (hPa) and wind (m/s) of one line.
type Position = (f64, f64, Option<f64>, Option<f64>);

/// `lat lon pppHPA vvM/S` from the fields after `00HR` or `P+nnHR`.
fn position(f: &[&str], n: usize) -> Result<Position, FeedError> {
    let lat = f
        .first()
        .and_then(|s| coord(s))
        .filter(|v| v.abs() <= 90.0)
        .ok_or_else(|| {
            bad(
                n,
                format!("latitude `{}` unreadable", f.first().unwrap_or(&"")),
            )
        })?;
    let lon = f
        .get(1)
        .and_then(|s| coord(s))
        .filter(|v| v.abs() <= 180.0)
        .ok_or_else(|| {
            bad(
                n,
                format!("longitude `{}` unreadable", f.get(1).unwrap_or(&"")),
            )
        })?;
    let p = f.get(2).and_then(|s| number_before(s, "HPA"));
    let v = f.get(3).and_then(|s| number_before(s, "M/S"));
    if f.len() > 2 && p.is_none() {
        return Err(bad(n, format!("pressure `{}` is not nnnHPA", f[2])));
    }
    if f.len() > 3 && v.is_none() {
        return Err(bad(n, format!("wind `{}` is not nnM/S", f[3])));
    }
    if p.is_some_and(|p| !(850.0..=1050.0).contains(&p))
        || v.is_some_and(|v| !(0.0..=110.0).contains(&v))
    {
        return Err(bad(n, "pressure or wind out of any storm's range"));
    }
    Ok((lat, lon, p, v))
}

/// One `WTPQ20 BABJ` subjective forecast, with the notes reading it raised.
pub fn forecast(
    h: &Heading,
    body: &[&str],
    reference: Timestamp,
) -> Result<(Track, Vec<String>), FeedError> {
    let mut notes = Vec::new();
    let mut storm: Option<(Grade, String, String, Timestamp)> = None;
    let mut analysis: Option<Position> = None;
    let mut circles = [[None::<f64>; 4]; 3];
    let mut block: Option<usize> = None;
    let mut motion: Option<(String, Option<f64>)> = None;
    let mut ahead: Vec<(i64, Position)> = Vec::new();
    for (i, raw) in body.iter().enumerate() {
        let n = i + 1;
        let mut line = raw.trim();
        let last = line.ends_with('=');
        if last {
            line = line.trim_end_matches('=').trim_end();
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || line == "SUBJECTIVE FORECAST" {
            if last {
                break;
            }
            continue;
        }
        if line.starts_with("...") {
            notes.push(format!("line {n}: this copy elides lines (`...`)"));
            block = None;
        } else if let Some(k) = f.iter().position(|x| *x == "INITIAL") {
            let grade =
                category(f[0]).ok_or_else(|| bad(n, format!("unknown category `{}`", f[0])))?;
            if f.get(k + 1) != Some(&"TIME") {
                return Err(bad(n, "expected `INITIAL TIME DDHHMM UTC`"));
            }
            let t = f
                .get(k + 2)
                .and_then(|d| day_time(d, reference))
                .ok_or_else(|| bad(n, "initial time is not DDHHMM"))?;
            let mid = &f[1..k];
            let number = mid
                .iter()
                .find(|x| x.bytes().all(|b| b.is_ascii_digit()))
                .map(|x| x.to_string())
                .ok_or_else(|| bad(n, "no storm number"))?;
            let name = mid
                .iter()
                .filter(|x| !x.starts_with('(') && x.bytes().any(|b| b.is_ascii_alphabetic()))
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            storm = Some((grade, number, name, t));
        } else if f[0] == "00HR" {
            analysis = Some(position(&f[1..], n)?);
        } else if f.len() >= 4 && f[0].ends_with("KTS") && f[1] == "WINDS" {
            let c = match f[0] {
                "30KTS" => 0,
                "50KTS" => 1,
                "64KTS" => 2,
                other => return Err(bad(n, format!("unknown wind threshold `{other}`"))),
            };
            block = Some(c);
            let r = number_before(f[2], "KM").ok_or_else(|| bad(n, "radius is not nnnKM"))?;
            let q = quadrant(f[3]).ok_or_else(|| bad(n, format!("unknown quadrant `{}`", f[3])))?;
            circles[c][q] = Some(r);
        } else if f.len() == 2
            && let (Some(r), Some(q)) = (number_before(f[0], "KM"), quadrant(f[1]))
        {
            let c = block.ok_or_else(|| bad(n, "a radius outside any nnKTS WINDS block"))?;
            circles[c][q] = Some(r);
        } else if f[0] == "MOVE" {
            block = None;
            motion = Some((
                f.get(1).map(|s| s.to_string()).unwrap_or_default(),
                f.get(2).and_then(|s| number_before(s, "KM/H")),
            ));
        } else if let Some(hours) = f[0]
            .strip_prefix("P+")
            .and_then(|s| s.strip_suffix("HR"))
            .and_then(|s| s.parse::<i64>().ok())
        {
            block = None;
            if !(1..=240).contains(&hours) {
                return Err(bad(n, format!("forecast hour {hours} out of range")));
            }
            ahead.push((hours, position(&f[1..], n)?));
        } else {
            notes.push(format!("line {n}: not understood, ignored: `{line}`"));
        }
        if last {
            break;
        }
    }
    let (grade, number, name, t0) =
        storm.ok_or_else(|| bad(1, "no `<CAT> <NAME> <NUMBER> INITIAL TIME DDHHMM UTC` line"))?;
    let (lat, lon, pres, wind) = analysis.ok_or_else(|| bad(1, "no `00HR` analysis line"))?;
    if let Some(ht) = day_time(&h.time, reference)
        && ht.duration_since(t0).abs() > SignedDuration::from_hours(12)
    {
        notes.push(format!(
            "heading time {} is more than 12 h from the initial time",
            h.time
        ));
    }
    let mut reported = [[0.0f64; 4]; 3];
    for (c, row) in circles.iter().enumerate() {
        let given = row.iter().filter(|r| r.is_some()).count();
        if given > 0 && given < 4 {
            notes.push(format!(
                "{}KTS radii given for {given} of 4 quadrants (the others taken as none)",
                [30, 50, 64][c]
            ));
        }
        for (q, r) in row.iter().enumerate() {
            reported[c][q] = r.unwrap_or(0.0);
        }
    }
    let point =
        |time, lat, lon, pres: Option<f64>, wind: Option<f64>, r: [[f64; 4]; 3], src| TrackPoint {
            time,
            lat,
            lon,
            grade: wind.and_then(Grade::from_wind),
            wind_ms: wind,
            level: wind.map(wind_level),
            pressure_hpa: pres,
            move_dir: None,
            move_speed_kmh: None,
            r7: Radii::of(r[0], src),
            r10: Radii::of(r[1], src),
            r12: Radii::of(r[2], src),
        };
    let mut now = point(t0, lat, lon, pres, wind, reported, RadiusSource::China);
    now.grade = Some(grade);
    if let Some((dir, speed)) = motion {
        now.move_dir = Some(dir);
        now.move_speed_kmh = speed;
    }
    let speeds = circle_speeds();
    let mut points = Vec::new();
    ahead.sort_by_key(|a| a.0);
    for (hours, (flat, flon, fp, fv)) in ahead {
        let mut carried = [[0.0f64; 4]; 3];
        for q in 0..4 {
            let at_q: Vec<(f64, f64)> = (0..3).map(|c| (speeds[c], reported[c][q])).collect();
            let r = wind_profile::carry(wind, &at_q, fv, &speeds, RMAX_PRIOR_KM);
            for c in 0..3 {
                carried[c][q] = r[c];
            }
        }
        let time = t0
            .checked_add(SignedDuration::from_hours(hours))
            .map_err(|_| bad(1, "forecast time out of range"))?;
        points.push(point(
            time,
            flat,
            flon,
            fp,
            fv,
            carried,
            RadiusSource::Carried,
        ));
    }
    Ok((
        super::bulletin_track(h, number, name, "cma-bulletin", now, points),
        notes,
    ))
}

/// One `WHCI40 BABJ` landfall message.
pub fn landfall(h: &Heading, body: &[&str], reference: Timestamp) -> Result<Landfall, FeedError> {
    let lines: Vec<(usize, &str)> = body
        .iter()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().trim_end_matches('=').trim_end()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let (n, head) = lines
        .iter()
        .find(|(_, l)| l.contains(" LANDED ON "))
        .copied()
        .ok_or_else(|| bad(1, "no `… LANDED ON <PLACE>` line"))?;
    let (who, place) = head.split_once(" LANDED ON ").unwrap_or((head, ""));
    let f: Vec<&str> = who.split_whitespace().collect();
    let grade = f.first().and_then(|c| category(c));
    let storm = f
        .iter()
        .find(|x| x.len() >= 2 && x.bytes().all(|b| b.is_ascii_digit()))
        .map(|x| x.to_string())
        .ok_or_else(|| bad(n, "no storm number"))?;
    let name = f
        .iter()
        .skip(1)
        .filter(|x| !x.starts_with('(') && x.bytes().any(|b| b.is_ascii_alphabetic()))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let (m, when) = lines
        .iter()
        .find(|(_, l)| {
            l.split_whitespace()
                .next()
                .is_some_and(|t| t.to_ascii_uppercase().ends_with("GMT"))
        })
        .copied()
        .ok_or_else(|| bad(n + 1, "no `DDHHMMGMT` time line"))?;
    let mut t = when.split_whitespace();
    let stamp = t.next().unwrap_or("");
    let time = day_time(&stamp[..stamp.len().saturating_sub(3)], reference)
        .ok_or_else(|| bad(m, format!("`{stamp}` is not DDHHMMGMT")))?;
    let wind_ms = t
        .next()
        .map(|w| w.trim_matches(|c| c == '(' || c == ')'))
        .and_then(|w| number_before(w, "M/S"));
    Ok(Landfall {
        agency: h.cccc.clone(),
        storm,
        name,
        grade,
        time,
        place: place.trim().to_string(),
        wind_ms,
    })
}
