//! Fire observations, of two kinds:
//!
//! * **fire weather**: daily noon observations per station (temperature, relative humidity,
//!   10 m wind, 24 h rain) from which the correlate stage computes the Fire Weather Index.
//!   Columns `station, lon, lat, date, temp, rh, ws, prec`, or the shape of the Canadian Forest
//!   Service's `test_fwi.csv` (`long;lat;yr;mon;day;temp;rh;ws;prec`);
//! * **hotspots**: active fires detected by satellite, in NASA FIRMS form (CSV or JSON;
//!   `latitude, longitude, brightness, …, acq_date, acq_time, satellite, confidence, frp`).
//!
//! A row that is out of range is reported and left out; the rest of the document is kept.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::FeedError;

/// One station's noon observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FireWeather {
    /// Station code (when the file has none: `lon,lat`).
    pub station: String,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
    /// Local date of the observation.
    pub date: jiff::civil::Date,
    /// Temperature, °C.
    pub temp_c: f64,
    /// Relative humidity, %.
    pub rh: f64,
    /// 10 m wind, km/h.
    pub wind_kmh: f64,
    /// Rain over the past 24 h, mm.
    pub rain_mm: f64,
}

/// One satellite fire detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hotspot {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Acquisition time (UTC).
    pub time: Timestamp,
    /// Brightness temperature, K.
    pub brightness: Option<f64>,
    /// Detection confidence as published (0–100 for MODIS; l/n/h for VIIRS).
    pub confidence: String,
    /// Fire radiative power, MW.
    pub frp: Option<f64>,
    /// Satellite (Terra, Aqua, N, …).
    pub satellite: String,
    /// Day or night.
    pub daynight: String,
}

/// What a fire document held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "rows", rename_all = "snake_case")]
pub enum FireBatch {
    /// Noon observations.
    Weather(Vec<FireWeather>),
    /// Satellite detections.
    Hotspots(Vec<Hotspot>),
}

fn bad(line: Option<u32>, message: impl Into<String>) -> FeedError {
    FeedError::Format {
        line,
        message: message.into(),
    }
}

/// Read a fire document; rows out of range are returned as problems (`line: message`).
pub fn parse(body: &[u8]) -> Result<(FireBatch, Vec<String>), FeedError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| bad(None, format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        return hotspots_json(t);
    }
    let first = t.lines().next().unwrap_or("").to_ascii_lowercase();
    let delim = if first.contains(';') { b';' } else { b',' };
    let header: Vec<String> = first
        .split(delim as char)
        .map(|s| s.trim().to_string())
        .collect();
    if header.iter().any(|h| h == "acq_date") {
        hotspots_csv(t)
    } else if header.iter().any(|h| h == "rh") {
        weather_csv(t, delim)
    } else {
        Err(bad(
            Some(1),
            "neither fire-weather observations (…rh, ws, prec) nor FIRMS hotspots (…acq_date)",
        ))
    }
}

/// The header row, lower-cased.
fn lower_headers(rdr: &mut csv::Reader<&[u8]>) -> Result<Vec<String>, FeedError> {
    Ok(rdr
        .headers()
        .map_err(|e| bad(Some(1), format!("unreadable header: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect())
}

fn weather_csv(text: &str, delim: u8) -> Result<(FireBatch, Vec<String>), FeedError> {
    let text = crate::text::lf(text);
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = lower_headers(&mut rdr)?;
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let need = |names: &[&str]| {
        col(names).ok_or_else(|| bad(Some(1), format!("no `{}` column", names[0])))
    };
    let (lon, lat) = (
        need(&["lon", "long", "longitude"])?,
        need(&["lat", "latitude"])?,
    );
    let (temp, rh, ws, prec) = (
        need(&["temp"])?,
        need(&["rh"])?,
        need(&["ws"])?,
        need(&["prec"])?,
    );
    let station = col(&["station", "id", "stcd"]);
    let date = col(&["date"]);
    let (yr, mon, day) = (col(&["yr", "year"]), col(&["mon", "month"]), col(&["day"]));
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for rec in rdr.records() {
        let rec = super::csv_record(rec)?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let get = |c: usize| rec.get(c).unwrap_or("");
        let num = |c: usize| get(c).parse::<f64>().ok().filter(|v| v.is_finite());
        let d = match (date, yr, mon, day) {
            (Some(c), _, _, _) => get(c).replace('/', "-").parse::<jiff::civil::Date>().ok(),
            (None, Some(y), Some(m), Some(dd)) => match (
                get(y).parse::<i16>(),
                get(m).parse::<i8>(),
                get(dd).parse::<i8>(),
            ) {
                (Ok(y), Ok(m), Ok(dd)) => jiff::civil::Date::new(y, m, dd).ok(),
                _ => None,
            },
            _ => None,
        };
        let (Some(d), Some(lo), Some(la), Some(t), Some(h), Some(w), Some(p)) = (
            d,
            num(lon),
            num(lat),
            num(temp),
            num(rh),
            num(ws),
            num(prec),
        ) else {
            problems.push(format!(
                "line {line}: a value is missing or not a number; row left out"
            ));
            continue;
        };
        let out_of_range = if !(0.0..=100.0).contains(&h) {
            Some(format!("relative humidity {h} % is outside 0–100"))
        } else if !(0.0..=250.0).contains(&w) {
            Some(format!("wind {w} km/h is not possible"))
        } else if !(-60.0..=60.0).contains(&t) {
            Some(format!("temperature {t} °C is not possible"))
        } else if !(0.0..=2000.0).contains(&p) {
            Some(format!("24 h rain {p} mm is not possible"))
        } else {
            None
        };
        if let Some(why) = out_of_range {
            problems.push(format!("line {line}: {why}; row left out"));
            continue;
        }
        rows.push(FireWeather {
            station: station
                .map(|c| get(c).to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("{lo},{la}")),
            lon: lo,
            lat: la,
            date: d,
            temp_c: t,
            rh: h,
            wind_kmh: w,
            rain_mm: p,
        });
    }
    Ok((FireBatch::Weather(rows), problems))
}

fn firms_time(date: &str, hhmm: &str) -> Option<Timestamp> {
    let d: jiff::civil::Date = date.trim().parse().ok()?;
    let n: u32 = hhmm.trim().parse().ok()?;
    let t = jiff::civil::Time::new((n / 100) as i8, (n % 100) as i8, 0, 0).ok()?;
    jiff::tz::Offset::UTC.to_timestamp(d.to_datetime(t)).ok()
}

fn hotspot(
    lat: Option<f64>,
    lon: Option<f64>,
    time: Option<Timestamp>,
    rest: (Option<f64>, String, Option<f64>, String, String),
) -> Result<Hotspot, String> {
    let (Some(lat), Some(lon)) = (lat, lon) else {
        return Err("no position".into());
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("position {lat},{lon} is not on Earth"));
    }
    let time = time.ok_or("no acquisition date/time")?;
    let (brightness, confidence, frp, satellite, daynight) = rest;
    Ok(Hotspot {
        lat,
        lon,
        time,
        brightness,
        confidence,
        frp,
        satellite,
        daynight,
    })
}

fn hotspots_csv(text: &str) -> Result<(FireBatch, Vec<String>), FeedError> {
    let text = crate::text::lf(text);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = lower_headers(&mut rdr)?;
    let col = |n: &str| headers.iter().position(|h| h == n);
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for rec in rdr.records() {
        let rec = super::csv_record(rec)?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let get = |n: &str| col(n).and_then(|c| rec.get(c)).unwrap_or("").to_string();
        let num = |n: &str| get(n).parse::<f64>().ok();
        let t = firms_time(&get("acq_date"), &get("acq_time"));
        match hotspot(
            num("latitude"),
            num("longitude"),
            t,
            (
                num("brightness").or(num("bright_ti4")),
                get("confidence"),
                num("frp"),
                get("satellite"),
                get("daynight"),
            ),
        ) {
            Ok(h) => rows.push(h),
            Err(why) => problems.push(format!("line {line}: {why}; row left out")),
        }
    }
    Ok((FireBatch::Hotspots(rows), problems))
}

fn hotspots_json(text: &str) -> Result<(FireBatch, Vec<String>), FeedError> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(Some(e.line() as u32), format!("not JSON: {e}")))?;
    let list = v
        .as_array()
        .ok_or_else(|| bad(None, "expected an array of FIRMS records"))?;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let s = |n: &str| match r.get(n) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(x)) => x.to_string(),
            _ => String::new(),
        };
        let num = |n: &str| s(n).parse::<f64>().ok();
        let t = firms_time(&s("acq_date"), &s("acq_time"));
        match hotspot(
            num("latitude"),
            num("longitude"),
            t,
            (
                num("brightness").or(num("bright_ti4")),
                s("confidence"),
                num("frp"),
                s("satellite"),
                s("daynight"),
            ),
        ) {
            Ok(h) => rows.push(h),
            Err(why) => problems.push(format!("record {}: {why}; left out", i + 1)),
        }
    }
    Ok((FireBatch::Hotspots(rows), problems))
}

/// The fire-observation feed kind (see [`super::FeedKind`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct FireFeed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weather_rows_out_of_range_are_left_out_and_said() {
        let csv = "station,lon,lat,date,temp,rh,ws,prec\nF01,120.9,28.2,2026-04-01,24,35,18,0\nF02,120.9,28.2,2026-04-01,24,135,18,0\n";
        let (batch, problems) = parse(csv.as_bytes()).unwrap();
        let FireBatch::Weather(rows) = batch else {
            panic!()
        };
        assert_eq!(rows.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("line 3: relative humidity 135"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_canadian_test_input_shape_is_read() {
        let csv = "long;lat;yr;mon;day;temp;rh;ws;prec\n-100;40;1985;4;13;17;42;25;0\n";
        let (batch, _) = parse(csv.as_bytes()).unwrap();
        let FireBatch::Weather(rows) = batch else {
            panic!()
        };
        assert_eq!(rows[0].date.to_string(), "1985-04-13");
        assert_eq!(rows[0].station, "-100,40");
    }
}
