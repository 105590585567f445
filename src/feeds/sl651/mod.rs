//! SL 651-2014 hydrological telemetry: the protocol rain gauges' RTUs speak to a county's
//! central station. [`frame`] reads and writes the HEX/BCD frames; this module turns reports
//! into rain readings (the feed kind `sl651`, for documents of frames: `feed read`, replays);
//! [`listen`] is the TCP listener a county points its RTUs at, answering each frame as the
//! standard says.
//!
//! **Rain elements.** Period amounts become readings of their period ending at the
//! observation time: `P1` (1 h), `P2`/`P3`/`P6`/`P12`, `PD` (the day, ending at the hydrological
//! day's start), `PN01`/`PN05`/`PN10`/`PN30`, and `DRP` (`F4`: twelve five-minute amounts,
//! `FF` invalid). `PJ` (since the day's start) and `PT` (since 1 January) are cumulative: they
//! are never summed; the listener turns the difference between a station's consecutive `PT`
//! into the rain of the period between them.
//!
//! **What is refused**, each with a log line and a count on `/metrics`
//! (`stormbell_feed_refused_total{feed,reason}`): a bad CRC (`crc`), a frame cut short
//! (`truncated`), framing that does not add up (`malformed`), a station not in the feed's
//! station table (`unknown_station`), and an observation time more than an hour ahead of or
//! three days behind the time of receipt (`clock`: a real frame says year 59).

pub mod frame;
pub mod listen;

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::rainfall::{RainBatch, RainFlag, RainReading, plausible_max};
use super::{Document, FeedError, FeedKind, Item, Observation, Parsed};
use frame::{FrameError, Report};

/// A station of the feed's table: the RTU's address and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Station {
    /// The 10-digit address the RTU sends.
    pub address: String,
    /// Name.
    pub name: String,
    /// Longitude, WGS 84.
    pub lon: f64,
    /// Latitude, WGS 84.
    pub lat: f64,
}

/// The station table: `address,name,lon,lat` per line (a header line is allowed).
pub fn stations_csv(text: &str) -> Result<HashMap<String, Station>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() < 4 || line.trim().is_empty() {
            if line.trim().is_empty() {
                continue;
            }
            return Err(format!("line {}: expected address,name,lon,lat", i + 1));
        }
        let (Ok(lon), Ok(lat)) = (f[2].parse::<f64>(), f[3].parse::<f64>()) else {
            if i == 0 {
                continue; // the header
            }
            return Err(format!(
                "line {}: lon/lat `{}`,`{}` are not numbers",
                i + 1,
                f[2],
                f[3]
            ));
        };
        if f[0].len() != 10 || !f[0].bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "line {}: address `{}` is not 10 digits",
                i + 1,
                f[0]
            ));
        }
        out.insert(
            f[0].to_ascii_uppercase(),
            Station {
                address: f[0].to_ascii_uppercase(),
                name: f[1].to_string(),
                lon,
                lat,
            },
        );
    }
    Ok(out)
}

/// Why a frame is not used, as stored and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `crc`, `truncated`, `malformed`, `unknown_station`, `clock`, `not_a_frame`.
    pub reason: &'static str,
    /// What exactly.
    pub detail: String,
}

impl Refusal {
    fn of(e: &FrameError) -> Refusal {
        Refusal {
            reason: match e {
                FrameError::Crc { .. } => "crc",
                FrameError::Truncated { .. } => "truncated",
                FrameError::Malformed(_) => "malformed",
                FrameError::NotAFrame(_) => "not_a_frame",
            },
            detail: e.to_string(),
        }
    }
}

/// The frames in a document: binary, or hexadecimal text (whitespace and line breaks
/// ignored). Each frame read or refused, in order.
pub fn frames(body: &[u8]) -> Vec<Result<Report, Refusal>> {
    let text = std::str::from_utf8(body).ok().map(str::trim);
    let bytes: Vec<u8> = match text {
        Some(t) if t.len() >= 4 && t[..4].eq_ignore_ascii_case("7E7E") => {
            let digits: Vec<u8> = t.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            if digits.len() % 2 != 0 || !digits.iter().all(u8::is_ascii_hexdigit) {
                return vec![Err(Refusal {
                    reason: "malformed",
                    detail: "hexadecimal text with an odd digit count or a non-hex character"
                        .into(),
                })];
            }
            digits
                .chunks(2)
                .map(|p| {
                    u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0)
                })
                .collect()
        }
        _ => body.to_vec(),
    };
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match frame::frame_len(rest) {
            Ok(Some(n)) => {
                out.push(frame::read(&rest[..n]).map_err(|e| Refusal::of(&e)));
                rest = &rest[n..];
            }
            Ok(None) => {
                out.push(frame::read(rest).map_err(|e| Refusal::of(&e)));
                break;
            }
            Err(e) => {
                out.push(Err(Refusal::of(&e)));
                break;
            }
        }
    }
    out
}

/// How far an observation time may be from the time of receipt.
const AHEAD: SignedDuration = SignedDuration::from_hours(1);
const BEHIND: SignedDuration = SignedDuration::from_hours(72);

/// Beijing time, in which SL 651 writes every time.
pub fn beijing() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Shanghai")
        .unwrap_or(jiff::tz::TimeZone::fixed(jiff::tz::Offset::constant(8)))
}

/// The observation times of a report, refused when a clock is far off.
pub fn times(r: &Report, received: Timestamp) -> Result<Vec<Timestamp>, Refusal> {
    let tz = beijing();
    r.observed
        .iter()
        .map(|o| {
            let t = o.time.at(&tz, received).ok_or_else(|| Refusal {
                reason: "clock",
                detail: format!("observation time {:?} is not a date", o.time),
            })?;
            let off = t.duration_since(received);
            if off > AHEAD || -off > BEHIND {
                return Err(Refusal {
                    reason: "clock",
                    detail: format!(
                        "station {}: observation time {} is {} h from the time of receipt {}",
                        r.header.station,
                        t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M"),
                        off.as_hours(),
                        received.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M")
                    ),
                });
            }
            Ok(t)
        })
        .collect()
}

/// The period rain of a report as readings (cumulative PJ and PT are not; see the module).
pub fn readings(r: &Report, at: &[Timestamp], station: Option<&Station>) -> Vec<RainReading> {
    let mut out = Vec::new();
    let mut push = |end: Timestamp, minutes: u32, mm: Option<f64>| {
        let flag = match mm {
            None => Some(RainFlag::Missing),
            Some(x) if x < 0.0 => Some(RainFlag::Negative),
            Some(x) if x > plausible_max(minutes) => Some(RainFlag::Absurd {
                limit_mm: plausible_max(minutes),
            }),
            _ => None,
        };
        out.push(RainReading {
            station: r.header.station.clone(),
            name: station.map(|s| s.name.clone()),
            lon: station.map(|s| s.lon),
            lat: station.map(|s| s.lat),
            end,
            minutes,
            mm,
            flag,
        });
    };
    for (o, t) in r.observed.iter().zip(at) {
        for e in &o.elements {
            if e.id == 0xF4 {
                let n = e.five_minutes.len() as i64;
                for (k, v) in e.five_minutes.iter().enumerate() {
                    let end = *t - SignedDuration::from_mins(5 * (n - 1 - k as i64));
                    push(end, 5, *v);
                }
            } else if let Some(minutes) = frame::rain_minutes(e.id) {
                push(*t, minutes, e.value);
            }
        }
    }
    out
}

/// The feed kind of SL 651 frames in documents. The listener uses the same reading.
#[derive(Default)]
pub struct Sl651Feed {
    /// The known stations; empty: every station is taken (without a position).
    pub stations: HashMap<String, Station>,
}

impl Sl651Feed {
    /// One report into its item, or why it is refused.
    pub fn item(&self, r: &Report, received: Timestamp) -> Result<Item, Refusal> {
        let station = self.stations.get(&r.header.station);
        if station.is_none() && !self.stations.is_empty() {
            return Err(Refusal {
                reason: "unknown_station",
                detail: format!(
                    "station {} is not in the feed's station table",
                    r.header.station
                ),
            });
        }
        let at = times(r, received)?;
        Ok(Item {
            key: format!(
                "sl651|{}|{:04X}|{}",
                r.header.station,
                r.serial,
                at.first().map(|t| t.to_string()).unwrap_or_default()
            ),
            observation: Observation::Rain(RainBatch {
                readings: readings(r, &at, station),
            }),
        })
    }
}

impl FeedKind for Sl651Feed {
    fn name(&self) -> &'static str {
        "sl651"
    }
    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError> {
        let mut parsed = Parsed::default();
        let mut refused = Vec::new();
        for f in frames(doc.body) {
            match f.and_then(|r| self.item(&r, doc.received)) {
                Ok(item) => parsed.items.push(item),
                Err(e) => refused.push(format!("{}: {}", e.reason, e.detail)),
            }
        }
        if parsed.items.is_empty() {
            return Err(FeedError::Format {
                line: None,
                message: if refused.is_empty() {
                    "no SL 651 frame".into()
                } else {
                    refused.join("; ")
                },
            });
        }
        parsed.problems = refused;
        Ok(parsed)
    }
    fn sl651(&self) -> Option<&Sl651Feed> {
        Some(self)
    }
}

/// What `feed read` prints for a document of frames: a `rain` line per report (every rain
/// element by its SL 651 name, cumulative ones too), a `note` for a clock far off, a
/// `refused` line per frame refused. Returns the lines and whether every frame was read.
pub fn describe(file: &str, body: &[u8], received: Timestamp) -> (Vec<Value>, bool) {
    let tz = beijing();
    let mut out = Vec::new();
    let mut ok = true;
    for f in frames(body) {
        let r = match f {
            Ok(r) => r,
            Err(e) => {
                ok = false;
                out.push(json!({"kind": "refused", "file": file, "reason": format!("{}: {}", e.reason, e.detail)}));
                continue;
            }
        };
        if let Err(e) = times(&r, received) {
            out.push(json!({"kind": "note", "file": file, "note": format!("{}: {}", e.reason, e.detail)}));
        }
        for o in &r.observed {
            let time = o.time.at(&tz, received).map(|t| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            });
            let readings: Vec<Value> = o
                .elements
                .iter()
                .filter_map(|e| {
                    let name = frame::element_name(e.id)?;
                    if e.id == 0xF4 {
                        Some(json!({"element": name, "mm": e.five_minutes}))
                    } else if name.starts_with('P') {
                        Some(json!({"element": name, "mm": e.value}))
                    } else {
                        None
                    }
                })
                .collect();
            out.push(json!({
                "kind": "rain",
                "station": r.header.station,
                "function": format!("{:02X}", r.header.function),
                "station_type": r.station_type.map(|b| (b as char).to_string()),
                "time": time,
                "readings": readings,
            }));
        }
    }
    if out.is_empty() {
        out.push(json!({"kind": "refused", "file": file, "reason": "no SL 651 frame"}));
        ok = false;
    }
    (out, ok)
}
