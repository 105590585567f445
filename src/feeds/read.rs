//! What stormbell makes of a document, as `stormbell feed read` prints it: one JSON object per
//! line, so an office can try a sample from its own bureau before pointing a feed at the
//! service. The shapes are stable and documented in docs/feeds.md:
//!
//! * `{"kind":"typhoon", "agency", "storm", "name", "category", "time", "lat", "lon",
//!   "pressure_hpa", "wind_ms", "radii_km": {"30kt": {"ne","se","sw","nw"}, …},
//!   "forecasts": [{"hours", "time", "lat", "lon", "pressure_hpa", "wind_ms", "radii_km"}]}`
//!   — one line per analysed fix; radii keyed by the agency's own threshold (the Chinese
//!   7/10/12-level circles as `30kt`/`50kt`/`64kt`, JTWC's as `34kt`/`50kt`/`64kt`), in km,
//!   by quadrant; only radii the document gives (not those stormbell carries forward);
//! * `{"kind":"landfall", "agency", "storm", "name", "time", "place", "wind_ms"}`;
//! * `{"kind":"rain", "station", "time", "readings": [{"element", "mm"}]}`;
//! * `{"kind":"cap", "sender", "identifier", "sent", "event", "severity", "areas"}`;
//! * `{"kind":"skipped", "file", "what", "reason"}` — a product recognised and not used;
//! * `{"kind":"refused", "file", "reason"}`.

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::typhoon::{Radii, RadiusSource, Track, TrackPoint, agency_code};
use super::{Document, Observation};
use crate::cap;

/// The kinds `feed read` knows, and `auto`.
pub const READ_KINDS: &[&str] = &[
    "auto",
    "bulletin",
    "typhoon_web",
    "typhoon",
    "cap",
    "warning_json",
    "rainfall",
    "sl651",
    "fire",
];

/// The kind of a document, recognised from its content.
pub fn detect(body: &[u8]) -> Option<&'static str> {
    // SL 651 frames, binary or as hexadecimal text.
    if body.starts_with(&[0x7E, 0x7E])
        || std::str::from_utf8(&body[..body.len().min(4)])
            .is_ok_and(|h| h.eq_ignore_ascii_case("7E7E"))
    {
        return Some("sl651");
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let t = head.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('<') {
        return Some("cap");
    }
    if t.lines()
        .take(4)
        .any(|l| super::bulletin::Heading::parse(l.trim()).is_some())
    {
        return Some("bulletin");
    }
    let whole = String::from_utf8_lossy(body);
    let json = super::typhoon_web::unwrap_jsonp(&whole);
    if ["\"alertid\"", "\"TYPECODE\"", "\"signallevel\""]
        .iter()
        .any(|k| json.contains(k))
    {
        return Some("warning_json");
    }
    let wrapped =
        json.len() + 2 < whole.trim().len() && (json.starts_with('{') || json.starts_with('['));
    let web = ["\"typhoonList\"", "\"typhoon\"", "\"tfid\""]
        .iter()
        .any(|k| json.contains(k))
        // A lone point of the national service: `[id, "yyyyMMddHHmm", …`.
        || (json.starts_with('[') && json.get(1..40).is_some_and(|h| h.contains(", \"20") || h.contains(",\"20")));
    if web || wrapped {
        return Some("typhoon_web");
    }
    if t.starts_with('{') || t.starts_with('[') || t.starts_with("SID,") || t.starts_with("66666") {
        return Some("typhoon");
    }
    let first = t.lines().next().unwrap_or("").to_ascii_lowercase();
    if first.contains("station") || first.contains("stcd") {
        if first.contains("ffmc") || first.contains("rh") || first.contains("temp") {
            return Some("fire");
        }
        return Some("rainfall");
    }
    None
}

/// A number as people read it: to 0.1, without `.0`.
fn num(x: f64) -> Value {
    let r = (x * 10.0).round() / 10.0;
    if r.fract() == 0.0 && r.abs() < 1e15 {
        json!(r as i64)
    } else {
        json!(r)
    }
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, num)
}

fn radii_json(p: &TrackPoint) -> Value {
    let mut m = Map::new();
    let mut put = |r: &Option<Radii>, china: &str| {
        let Some(r) = r else { return };
        let key = match r.source {
            RadiusSource::Carried => return,
            RadiusSource::China => china,
            RadiusSource::Jma30kt => "30kt",
            RadiusSource::Jtwc34kt => "34kt",
            RadiusSource::Jtwc50kt | RadiusSource::Jma50kt => "50kt",
            RadiusSource::Jtwc64kt => "64kt",
        };
        m.insert(
            key.into(),
            json!({"ne": num(r.ne), "se": num(r.se), "sw": num(r.sw), "nw": num(r.nw)}),
        );
    };
    put(&p.r7, "30kt");
    put(&p.r10, "50kt");
    put(&p.r12, "64kt");
    Value::Object(m)
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One line per analysed fix of a track.
pub fn track_lines(t: &Track) -> Vec<Value> {
    let name = if t.name_en.is_empty() {
        &t.name
    } else {
        &t.name_en
    };
    t.points
        .iter()
        .map(|p| {
            // The track's own agency's forecast only: agencies are not mixed in a fix.
            let forecasts: Vec<Value> = t
                .forecasts
                .iter()
                .filter(|f| f.issued == p.time && agency_code(&f.agency) == t.agency)
                .flat_map(|f| f.points.iter())
                .map(|f| {
                    json!({
                        "hours": f.time.duration_since(p.time).as_hours(),
                        "time": time(f.time),
                        "lat": num(f.lat), "lon": num(f.lon),
                        "pressure_hpa": opt(f.pressure_hpa),
                        "wind_ms": opt(f.wind_ms),
                        "radii_km": radii_json(f),
                    })
                })
                .collect();
            json!({
                "kind": "typhoon",
                "agency": t.agency,
                "storm": t.storm,
                "name": name,
                "category": p.grade,
                "time": time(p.time),
                "lat": num(p.lat), "lon": num(p.lon),
                "pressure_hpa": opt(p.pressure_hpa),
                "wind_ms": opt(p.wind_ms),
                "radii_km": radii_json(p),
                "forecasts": forecasts,
            })
        })
        .collect()
}

fn observation_lines(o: &Observation) -> Vec<Value> {
    match o {
        Observation::Track(t) => track_lines(t),
        Observation::Landfall(l) => vec![json!({
            "kind": "landfall", "agency": l.agency, "storm": l.storm, "name": l.name,
            "time": time(l.time), "place": l.place, "wind_ms": opt(l.wind_ms),
        })],
        Observation::Rain(b) => {
            let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap_or(jiff::tz::TimeZone::UTC);
            let mut by: std::collections::BTreeMap<(String, Timestamp), Vec<Value>> =
                Default::default();
            for r in &b.readings {
                by.entry((r.station.clone(), r.end))
                    .or_default()
                    .push(json!({
                        "element": format!("P{}", r.minutes),
                        "minutes": r.minutes,
                        "mm": opt(r.mm),
                        "flag": r.flag.map(|f| format!("{f:?}")),
                    }));
            }
            by.into_iter()
                .map(|((station, end), readings)| {
                    json!({
                        "kind": "rain", "station": station,
                        "time": end.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                        "readings": readings,
                    })
                })
                .collect()
        }
        Observation::Alert(a) => {
            let info = a.alert.infos.first();
            vec![json!({
                "kind": "cap",
                "sender": a.alert.sender,
                "identifier": a.alert.identifier,
                "sent": a.alert.sent.to_string(),
                "msg_type": a.alert.msg_type.as_str(),
                "dialect": a.dialect,
                "event": info.map(|i| i.event.clone()),
                "severity": info.map(|i| i.severity.as_str()),
                "areas": a.alert.infos.iter().flat_map(|i| i.areas.iter().map(|x| x.area_desc.clone())).collect::<Vec<_>>(),
            })]
        }
        Observation::Fire(_) | Observation::FeedAlarm(_) => vec![json!({
            "kind": "other", "summary": o.summary(),
        })],
    }
}

/// Read one document as `kind` (`auto` recognises it) and return its lines, and whether it
/// was read (false when refused).
pub fn read(kind: &str, file: &str, body: &[u8], received: Timestamp) -> (Vec<Value>, bool) {
    let refused = |reason: String| {
        (
            vec![json!({"kind": "refused", "file": file, "reason": reason})],
            false,
        )
    };
    let kind = if kind == "auto" {
        match detect(body) {
            Some(k) => k,
            None => return refused("format not recognised (try --kind)".into()),
        }
    } else {
        kind
    };
    if kind == "sl651" {
        return super::sl651::describe(file, body, received);
    }
    let Some(k) = super::kind(kind, cap::Limits::default()) else {
        return refused(format!("unknown kind `{kind}`"));
    };
    let doc = Document {
        feed: "read",
        url: file,
        body,
        digest: "",
        received,
    };
    match k.parse(&doc) {
        Ok(parsed) => {
            let mut out: Vec<Value> = parsed
                .items
                .iter()
                .flat_map(|i| observation_lines(&i.observation))
                .collect();
            for sk in &parsed.skipped {
                out.push(
                    json!({"kind": "skipped", "file": file, "what": sk.what, "reason": sk.why}),
                );
            }
            for p in &parsed.problems {
                out.push(json!({"kind": "note", "file": file, "note": p}));
            }
            (out, true)
        }
        Err(e) => refused(e.to_string()),
    }
}
