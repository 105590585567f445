//! The weather services' warning JSON: what a county often has before it has the national
//! system's CAP. Three shapes, each read into the CAP model so the relay rule treats them as
//! any upstream alert:
//!
//! * nmc.cn `rest/findAlarm`: `{data: {page: {list: [{alertid, issuetime "yyyy/MM/dd HH:mm",
//!   title, url, pic ".../pTTTTLLL.png"}]}}}` — the hazard and level only in the picture's code;
//! * weather.cma.cn `api/now/<station>`: `alarm: [{id, title, signaltype, signallevel,
//!   effective, eventType "11Bxx", severity "BLUE", type "pTTTTLLL"}]` (or that array alone);
//! * weather.com.cn's detail, a script `var alarminfo={…};` with `TYPECODE`/`LEVELCODE` from
//!   **another table and the opposite level order** (01 blue … 04 red), `ISSUETIME`,
//!   `RELIEVETIME`, `identifier`, `msgType`.
//!
//! The code tables are data (`config/warning-codes.toml`); a code not in them falls back to the
//! warning's own title (…大风蓝色预警…), and a row that says neither is refused with a note.
//! The alert id is the national one (14-digit sender code `_` entry time): its first six
//! digits are the issuing area (GB/T 2260), which becomes the alert's area code, so a
//! provincial warning covers the province's villages and a county's its own. Times are
//! Beijing time.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Document, FeedError, FeedKind, Item, Observation, Parsed, UpstreamAlert};
use crate::cap::model::{
    Alert, Area, CapDateTime, Category, Certainty, Info, MsgType, Scope, Severity, Status, Urgency,
    ValuePair,
};

/// The feed kind.
pub struct WarningJsonFeed;

#[derive(Debug, Deserialize)]
struct Hazard {
    name: String,
    event_code: String,
}

#[derive(Debug, Deserialize)]
struct Table {
    types: BTreeMap<String, Hazard>,
    levels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Codes {
    nmc: Table,
    weather_com_cn: Table,
}

fn codes() -> &'static Codes {
    static CODES: std::sync::OnceLock<Codes> = std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        // Compiled in and checked by the tests: a broken table is a build's bug.
        toml::from_str(include_str!("../../config/warning-codes.toml"))
            .unwrap_or_else(|e| panic!("config/warning-codes.toml: {e}"))
    })
}

/// One warning as the services give it, before it becomes CAP.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    title: String,
    issued: Option<String>,
    hazard: Option<(String, String)>,
    colour: Option<&'static str>,
    relieved: Option<String>,
    msg_type: Option<String>,
}

const COLOURS: [(&str, &str); 4] = [
    ("红色", "red"),
    ("橙色", "orange"),
    ("黄色", "yellow"),
    ("蓝色", "blue"),
];

fn colour_word(s: &str) -> Option<&'static str> {
    COLOURS.iter().find(|(w, _)| s.contains(w)).map(|(_, c)| *c)
}

fn colour_name(c: &str) -> Option<&'static str> {
    ["red", "orange", "yellow", "blue"]
        .into_iter()
        .find(|x| x.eq_ignore_ascii_case(c.trim()))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `pTTTTLLL` (from a `type`, or a picture's file name) in the nmc table.
fn nmc_code(code: &str) -> (Option<(String, String)>, Option<&'static str>) {
    let stem = code.rsplit('/').next().unwrap_or(code);
    let stem = stem.trim_end_matches(".png");
    let Some(digits) = stem.strip_prefix('p').filter(|d| d.len() == 7) else {
        return (None, None);
    };
    let t = codes();
    let hazard = t
        .nmc
        .types
        .get(&digits[..4])
        .map(|h| (h.name.clone(), h.event_code.clone()));
    let level = t.nmc.levels.get(&digits[4..]).and_then(|c| colour_name(c));
    (hazard, level)
}

/// The hazard named in a title (…大风蓝色预警…): the words before the colour.
fn hazard_in_title(title: &str) -> Option<(String, String)> {
    let (w, _) = COLOURS.iter().find(|(w, _)| title.contains(w))?;
    let before = &title[..title.find(w)?];
    let name: String = before
        .rsplit(['布', '台', '局', '心', '厅', '）', ')'])
        .next()?
        .trim()
        .to_string();
    (!name.is_empty() && name.chars().count() <= 8).then(|| (name, String::new()))
}

fn rows(v: &Value) -> Vec<Row> {
    // findAlarm envelope, or weather.cma.cn's `alarm`, or a bare list.
    let list: Vec<&Value> = if let Some(l) = v.pointer("/data/page/list").and_then(Value::as_array)
    {
        l.iter().collect()
    } else if let Some(l) = v.get("alarm").and_then(Value::as_array) {
        l.iter().collect()
    } else if let Some(l) = v.as_array() {
        l.iter().collect()
    } else if v.get("ALERTID").is_some() || v.get("TYPECODE").is_some() {
        vec![v]
    } else {
        Vec::new()
    };
    list.into_iter()
        .filter_map(|r| {
            let title = text(r.get("title"))
                .or_else(|| text(r.get("head")))
                .unwrap_or_default();
            if let Some(tc) = text(r.get("TYPECODE")) {
                // weather.com.cn: its own table, levels 01 blue … 04 red.
                let t = &codes().weather_com_cn;
                return Some(Row {
                    id: text(r.get("identifier")).or_else(|| text(r.get("ALERTID")))?,
                    hazard: t
                        .types
                        .get(&tc)
                        .map(|h| (h.name.clone(), h.event_code.clone()))
                        .or_else(|| text(r.get("SIGNALTYPE")).map(|n| (n, String::new()))),
                    colour: text(r.get("LEVELCODE"))
                        .and_then(|l| t.levels.get(&l).and_then(|c| colour_name(c)))
                        .or_else(|| colour_word(&text(r.get("SIGNALLEVEL")).unwrap_or_default())),
                    issued: text(r.get("ISSUETIME")),
                    relieved: text(r.get("RELIEVETIME")),
                    msg_type: text(r.get("msgType")),
                    title,
                });
            }
            let (mut hazard, mut colour) = text(r.get("type"))
                .or_else(|| text(r.get("pic")))
                .map(|c| nmc_code(&c))
                .unwrap_or((None, None));
            if let (Some(name), Some(code)) = (text(r.get("signaltype")), text(r.get("eventType")))
            {
                hazard = Some((name, code));
            }
            colour = colour
                .or_else(|| text(r.get("severity")).and_then(|s| colour_name(&s)))
                .or_else(|| colour_word(&text(r.get("signallevel")).unwrap_or_default()));
            Some(Row {
                id: text(r.get("alertid")).or_else(|| text(r.get("id")))?,
                issued: text(r.get("issuetime")).or_else(|| text(r.get("effective"))),
                hazard,
                colour,
                relieved: None,
                msg_type: None,
                title,
            })
        })
        .collect()
}

fn alert_of(r: &Row) -> Result<Alert, String> {
    let (name, code) = r
        .hazard
        .clone()
        .or_else(|| hazard_in_title(&r.title))
        .ok_or_else(|| {
            format!(
                "{}: neither a known code nor a title naming the hazard",
                r.id
            )
        })?;
    let colour = r
        .colour
        .or_else(|| colour_word(&r.title))
        .ok_or_else(|| format!("{}: no level", r.id))?;
    let sent = r
        .issued
        .as_deref()
        .and_then(super::beijing_time)
        .ok_or_else(|| format!("{}: no readable issue time", r.id))?;
    let area =
        r.id.get(..6)
            .filter(|a| a.bytes().all(|b| b.is_ascii_digit()));
    let area = area.ok_or_else(|| format!("{}: the id does not start with an area code", r.id))?;
    let bj = jiff::tz::Offset::constant(8);
    let zh = COLOURS
        .iter()
        .find(|(_, c)| *c == colour)
        .map_or("", |(w, _)| *w);
    let severity = match colour {
        "red" => Severity::Extreme,
        "orange" => Severity::Severe,
        "yellow" => Severity::Moderate,
        _ => Severity::Minor,
    };
    Ok(Alert {
        identifier: r.id.clone(),
        sender: r.id.split('_').next().unwrap_or(&r.id).to_string(),
        sent: CapDateTime::from_timestamp(sent, bj),
        status: Status::Actual,
        msg_type: match r.msg_type.as_deref() {
            Some("Update") => MsgType::Update,
            Some("Cancel") => MsgType::Cancel,
            _ => MsgType::Alert,
        },
        source: None,
        scope: Scope::Public,
        restriction: None,
        addresses: None,
        codes: Vec::new(),
        note: None,
        references: None,
        incidents: None,
        infos: vec![Info {
            language: Some("zh-CN".into()),
            categories: vec![Category::Met],
            event: format!("{name}{zh}预警"),
            response_types: Vec::new(),
            urgency: Urgency::Unknown,
            severity,
            certainty: Certainty::Unknown,
            audience: None,
            event_codes: if code.is_empty() {
                Vec::new()
            } else {
                vec![ValuePair::new("CN-11B", code)]
            },
            effective: Some(CapDateTime::from_timestamp(sent, bj)),
            onset: None,
            expires: r
                .relieved
                .as_deref()
                .and_then(super::beijing_time)
                .map(|t| CapDateTime::from_timestamp(t, bj)),
            sender_name: None,
            headline: Some(r.title.clone()),
            description: None,
            instruction: None,
            web: None,
            contact: None,
            parameters: Vec::new(),
            resources: Vec::new(),
            areas: vec![Area {
                area_desc: r.title.clone(),
                polygons: Vec::new(),
                circles: Vec::new(),
                geocodes: vec![ValuePair::new(
                    crate::cap::cn::VN_AREA_CODE,
                    format!("{area}000000"),
                )],
                altitude: None,
                ceiling: None,
            }],
        }],
        signatures: Vec::new(),
    })
}

/// What a document yields: alerts, and a note per row refused.
pub fn parse(body: &[u8], url: &str) -> Result<Parsed, FeedError> {
    let text = std::str::from_utf8(body).map_err(|e| FeedError::Format {
        line: None,
        message: format!("not UTF-8 (at byte {})", e.valid_up_to()),
    })?;
    let json = super::typhoon_web::unwrap_jsonp(text);
    let v: Value = serde_json::from_str(json).map_err(|e| FeedError::Format {
        line: Some(e.line() as u32),
        message: format!("not JSON: {e}"),
    })?;
    let found = rows(&v);
    if found.is_empty() {
        return Err(FeedError::Format {
            line: None,
            message: "no warnings: neither findAlarm's data.page.list, an `alarm` array nor \
                      an alarminfo object"
                .into(),
        });
    }
    let mut parsed = Parsed::default();
    for r in &found {
        match alert_of(r) {
            Ok(alert) => parsed.items.push(Item {
                key: format!("{}|{}|{}", alert.sender, alert.identifier, alert.sent),
                observation: Observation::Alert(Box::new(UpstreamAlert {
                    url: url.to_string(),
                    alert,
                    dialect: "weather service warning JSON".into(),
                    digest: String::new(),
                    problems: Vec::new(),
                    lineage: None,
                    expired: false,
                })),
            }),
            Err(e) => parsed.problems.push(e),
        }
    }
    Ok(parsed)
}

impl FeedKind for WarningJsonFeed {
    fn name(&self) -> &'static str {
        "warning_json"
    }
    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError> {
        let mut p = parse(doc.body, doc.url)?;
        for i in &mut p.items {
            if let Observation::Alert(a) = &mut i.observation {
                a.digest = doc.digest.to_string();
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_code_tables_read() {
        let c = super::codes();
        assert_eq!(c.nmc.levels["001"], "red");
        assert_eq!(c.weather_com_cn.levels["01"], "blue");
    }
}
