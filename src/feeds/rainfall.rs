//! Station rainfall: period totals (5-minute to daily) by station, as CSV or JSON.
//!
//! Column names follow either stormbell's own (`station, lon, lat, time, minutes, mm`) or the
//! national hydrological database's rainfall table (`STCD` station code, `TM` time, `DRP`
//! period rainfall in mm, `INTV` period length as `hh.mm`: `1.00` is an hour, `0.05` five
//! minutes). Times without an offset are Beijing time.
//!
//! A reading is **flagged, not trusted** when it is missing, negative, or beyond what rain can
//! do in its period (e.g. 500 mm in 10 minutes): flagged readings are passed on with their flag
//! so the office sees a gauge going wrong, and are left out of accumulations.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::FeedError;

/// Why a reading is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum RainFlag {
    /// No value (empty, `--`, or a sentinel such as -999).
    Missing,
    /// Below zero.
    Negative,
    /// More than rain can do in the period.
    Absurd {
        /// The most the period allows (mm).
        limit_mm: f64,
    },
    /// The same station, time and period again in one document (the first one is used).
    Duplicate,
}

/// One period total at one station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RainReading {
    /// Station code.
    pub station: String,
    /// Station name, where given.
    pub name: Option<String>,
    /// Station longitude, where given.
    pub lon: Option<f64>,
    /// Station latitude, where given.
    pub lat: Option<f64>,
    /// End of the period.
    pub end: Timestamp,
    /// Length of the period in minutes.
    pub minutes: u32,
    /// Rain over the period (mm); `None` when missing.
    pub mm: Option<f64>,
    /// Set when the reading is not to be trusted.
    pub flag: Option<RainFlag>,
}

/// The most rain (mm) a period of `minutes` can plausibly bring. Well above world records at
/// each duration, so only broken gauges and typos exceed it.
pub fn plausible_max(minutes: u32) -> f64 {
    match minutes {
        0..=5 => 60.0,
        6..=10 => 90.0,
        11..=30 => 180.0,
        31..=60 => 300.0,
        61..=180 => 600.0,
        181..=360 => 900.0,
        361..=720 => 1200.0,
        _ => 2000.0,
    }
}

/// A parsed rainfall document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RainBatch {
    /// Every reading, flagged ones included.
    pub readings: Vec<RainReading>,
}

impl RainBatch {
    /// The readings that can be trusted.
    pub fn trusted(&self) -> impl Iterator<Item = &RainReading> {
        self.readings.iter().filter(|r| r.flag.is_none())
    }

    /// How many readings are flagged.
    pub fn flagged(&self) -> usize {
        self.readings.iter().filter(|r| r.flag.is_some()).count()
    }
}

fn bad(line: Option<u32>, message: impl Into<String>) -> FeedError {
    FeedError::Format {
        line,
        message: message.into(),
    }
}

/// `INTV` of the hydrological database: `hh.mm` (1.00 = 60 minutes, 0.05 = 5 minutes).
fn parse_intv(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once('.').unwrap_or((s.trim(), "0"));
    let h: u32 = h.parse().ok()?;
    let m: u32 = format!("{m:0<2}").get(..2)?.parse().ok()?;
    (m < 60 && (h > 0 || m > 0)).then_some(h * 60 + m)
}

fn value(raw: &str) -> Option<f64> {
    let s = raw.trim();
    if s.is_empty() || s == "--" || s.eq_ignore_ascii_case("null") || s.eq_ignore_ascii_case("nan")
    {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    // Sentinels hydrological exports use for "no data".
    if !v.is_finite() || v <= -999.0 || v >= 9999.0 {
        return None;
    }
    Some(v)
}

fn classify(r: &mut RainReading) {
    r.flag = match r.mm {
        None => Some(RainFlag::Missing),
        Some(v) if v < 0.0 => Some(RainFlag::Negative),
        Some(v) if v > plausible_max(r.minutes) => Some(RainFlag::Absurd {
            limit_mm: plausible_max(r.minutes),
        }),
        _ => None,
    };
}

fn mark_duplicates(readings: &mut [RainReading]) {
    let mut seen = std::collections::HashSet::new();
    for r in readings.iter_mut() {
        if !seen.insert((r.station.clone(), r.end, r.minutes)) && r.flag.is_none() {
            r.flag = Some(RainFlag::Duplicate);
        }
    }
}

/// Read a rainfall document (CSV or JSON).
pub fn parse(body: &[u8]) -> Result<RainBatch, FeedError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| bad(None, format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
    let t = text.trim_start_matches('\u{feff}').trim_start();
    let mut readings = if t.starts_with('{') || t.starts_with('[') {
        parse_json(t)?
    } else {
        parse_csv(t)?
    };
    for r in &mut readings {
        classify(r);
    }
    mark_duplicates(&mut readings);
    Ok(RainBatch { readings })
}

fn parse_csv(text: &str) -> Result<Vec<RainReading>, FeedError> {
    let text = crate::text::lf(text);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| bad(Some(1), format!("unreadable header: {e}")))?
        .clone();
    let find = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let station = find(&["station", "stcd", "站号", "测站编码"])
        .ok_or_else(|| bad(Some(1), "no station column (station or STCD)"))?;
    let time = find(&["time", "tm", "end", "时间"])
        .ok_or_else(|| bad(Some(1), "no time column (time or TM)"))?;
    let mm = find(&["mm", "drp", "rain", "雨量", "时段雨量"])
        .ok_or_else(|| bad(Some(1), "no rainfall column (mm or DRP)"))?;
    let minutes = find(&["minutes", "时段分钟"]);
    let intv = find(&["intv", "时段长"]);
    let (name, lon, lat) = (
        find(&["name", "stnm", "站名"]),
        find(&["lon", "lgtd", "经度"]),
        find(&["lat", "lttd", "纬度"]),
    );
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = super::csv_record(rec)?;
        let line = rec.position().map(|p| p.line() as u32);
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("");
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let st = get(Some(station));
        if st.is_empty() {
            return Err(bad(line, "empty station code"));
        }
        let end = super::beijing_time(get(Some(time)))
            .ok_or_else(|| bad(line, format!("`{}` is not a time", get(Some(time)))))?;
        let mins = match (minutes, intv) {
            (Some(c), _) if !get(Some(c)).is_empty() => get(Some(c))
                .parse::<u32>()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| {
                    bad(
                        line,
                        format!("`{}` is not a number of minutes", get(Some(c))),
                    )
                })?,
            (_, Some(c)) if !get(Some(c)).is_empty() => parse_intv(get(Some(c)))
                .ok_or_else(|| bad(line, format!("`{}` is not an INTV (hh.mm)", get(Some(c)))))?,
            _ => 60,
        };
        let coord = |c: Option<usize>| get(c).parse::<f64>().ok();
        out.push(RainReading {
            station: st.to_string(),
            name: Some(get(name).to_string()).filter(|s| !s.is_empty()),
            lon: coord(lon),
            lat: coord(lat),
            end,
            minutes: mins,
            mm: value(get(Some(mm))),
            flag: None,
        });
    }
    Ok(out)
}

fn parse_json(text: &str) -> Result<Vec<RainReading>, FeedError> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(Some(e.line() as u32), format!("not JSON: {e}")))?;
    let list = match &v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => o
            .get("readings")
            .or_else(|| o.get("data"))
            .and_then(|x| x.as_array())
            .ok_or_else(|| bad(None, "no `readings` array"))?,
        _ => return Err(bad(None, "expected an array of readings")),
    };
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let field = |names: &[&str]| names.iter().find_map(|n| r.get(*n)).cloned();
        let s = |names: &[&str]| -> Option<String> {
            match field(names)? {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let where_ = format!("reading {}", i + 1);
        let station = s(&["station", "stcd", "STCD"])
            .ok_or_else(|| bad(None, format!("{where_}: no station")))?;
        let t = s(&["time", "tm", "TM", "end"])
            .ok_or_else(|| bad(None, format!("{where_}: no time")))?;
        let end = super::beijing_time(&t)
            .ok_or_else(|| bad(None, format!("{where_}: `{t}` is not a time")))?;
        let minutes = match s(&["minutes"]) {
            Some(m) => m
                .parse::<u32>()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| bad(None, format!("{where_}: `{m}` is not minutes")))?,
            None => match s(&["intv", "INTV"]) {
                Some(iv) => parse_intv(&iv)
                    .ok_or_else(|| bad(None, format!("{where_}: `{iv}` is not an INTV")))?,
                None => 60,
            },
        };
        out.push(RainReading {
            station,
            name: s(&["name", "stnm"]),
            lon: s(&["lon", "lgtd"]).and_then(|x| x.parse().ok()),
            lat: s(&["lat", "lttd"]).and_then(|x| x.parse().ok()),
            end,
            minutes,
            mm: s(&["mm", "drp", "DRP", "rain"]).as_deref().and_then(value),
            flag: None,
        });
    }
    Ok(out)
}

/// The station-rainfall feed kind (see [`super::FeedKind`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RainfallFeed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_flagged_not_trusted() {
        let csv = "station,name,lon,lat,time,minutes,mm\n\
                   R001,湖岭,121.10,28.30,2019-08-09 18:00,60,42.5\n\
                   R002,石溪,121.11,28.31,2019-08-09 18:00,60,\n\
                   R003,竹坑,121.12,28.29,2019-08-09 18:00,60,-3\n\
                   R004,桃垟,121.13,28.28,2019-08-09 18:00,10,500\n\
                   R001,湖岭,121.10,28.30,2019-08-09 18:00,60,42.5\n\
                   R005,金港,121.14,28.27,2019-08-09 18:00,60,-999\n";
        let b = parse(csv.as_bytes()).unwrap();
        let flags: Vec<Option<RainFlag>> = b.readings.iter().map(|r| r.flag).collect();
        assert_eq!(
            flags,
            vec![
                None,
                Some(RainFlag::Missing),
                Some(RainFlag::Negative),
                Some(RainFlag::Absurd { limit_mm: 90.0 }),
                Some(RainFlag::Duplicate),
                Some(RainFlag::Missing),
            ]
        );
        assert_eq!(b.trusted().count(), 1);
        assert_eq!(b.readings[0].end.to_string(), "2019-08-09T10:00:00Z");
    }

    #[test]
    fn hydrological_database_columns() {
        let csv = "STCD,TM,DRP,INTV\n70100101,2019-08-09 17:05:00,3.5,0.05\n70100101,2019-08-09 18:00:00,38.0,1.00\n";
        let b = parse(csv.as_bytes()).unwrap();
        assert_eq!(b.readings[0].minutes, 5);
        assert_eq!(b.readings[1].minutes, 60);
        assert_eq!(b.readings[1].mm, Some(38.0));
    }

    #[test]
    fn json_form_and_clear_errors() {
        let json = r#"{"readings":[{"station":"R001","time":"2019-08-09T18:00:00+08:00","minutes":60,"mm":12.5}]}"#;
        assert_eq!(parse(json.as_bytes()).unwrap().readings[0].mm, Some(12.5));
        let e = parse(b"station,time,mm\nR1,yesterday,3\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        // The same from a file with Windows line ends (Excel): still line 3, not 2.
        let e = parse(b"station,time,mm\r\nR1,2019-08-09T18:00:00+08:00,3\r\nR1,yesterday,3\r\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(
            parse(b"foo,bar\n1,2\n")
                .unwrap_err()
                .to_string()
                .contains("no station")
        );
    }
}
