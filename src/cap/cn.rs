//! The Chinese national warning-release CAP dialect (国家突发事件预警信息发布系统), read into and
//! written from the CAP 1.2 model.
//!
//! The dialect follows GB/T 35965.1-2018 as summarised in `docs/domain.md` §4.1.
//! The official XSD and element order were not available, so this module checks presence,
//! cardinality and values, and writes elements in the order of that table; element order is
//! not enforced when reading. Where the mapping has to choose, the choice is written here and
//! in `docs/cap-cn-mapping.md`, and tested both ways.
//!
//! | dialect                          | CAP 1.2 model                                            |
//! |----------------------------------|----------------------------------------------------------|
//! | `identifier`                     | `identifier`                                             |
//! | `senderCode` (14 digits)         | `sender` (the machine id of the originator)              |
//! | `sender` (issuer name)           | `info/senderName` of every info                          |
//! | `phone`                          | `info/contact` of the first info                         |
//! | `sendTime` `YYYY-MM-DD hh:mm:ss+08:00` | `sent` `YYYY-MM-DDThh:mm:ss+08:00`                 |
//! | `status` (Actual, Test)          | `status`                                                 |
//! | `msgType` (Alert, Update, Cancel)| `msgType`                                                |
//! | `scope` (Public)                 | `scope`                                                  |
//! | `code/method` (`methodName`, `message`, `audienceGrp`, `audiencePrt`) | parameters `CN:method`, `CN:method:<name>:message`, … |
//! | `secClassification`              | parameter `CN:secClassification`                         |
//! | `note`                           | `note`                                                   |
//! | `references` (first identifier)  | one `sender,identifier,sent` triplet: sender code and entry time are read from the national identifier `ZZZZZZDDDUUUXX_YYYYMMDDhhmmss[_N]`; writing takes the earliest referenced identifier |
//! | `info/eventType` (e.g. `11B03`)  | `eventCode` `CN:eventType`, `event` = the code's name, `category` from the code table |
//! | `info/severity` Red/Orange/Yellow/Blue/Unknown | Extreme/Severe/Moderate/Minor/Unknown      |
//! | `info/certainty` VeryLikely      | Likely (+ parameter `CN:certainty`=`VeryLikely` so it comes back); OASIS Possible is written as Unknown (the dialect has no such value) |
//! | `info/senderName` (signing officer) | parameter `CN:signer`                                 |
//! | `info/resource` (`resourceDesc`, `size`, `digest`) | `resource`; `mimeType` from the file extension |
//! | `area/circle` radius in metres   | `circle` radius in km                                    |
//! | `area/geocode` `c1,c2,…`         | one `geocode` `CN:areaCode` per code                     |

use std::sync::OnceLock;

use super::build::BuildError;
use super::model::*;
use super::problem::Problems;
use super::xml::{Doc, NodeId, is_xml_ws, write_text};

/// Namespace of the national dialect as seen in the published example (vendor namespace).
/// Reading accepts it, no namespace, or any namespace that is not OASIS CAP's.
pub const NS_CN: &str = "http://com.icss.amp";
/// valueName of the event-type code in the model.
pub const VN_EVENT_TYPE: &str = "CN:eventType";
/// valueName of a 12-digit (or 6/9/15-digit) administrative area code in the model.
pub const VN_AREA_CODE: &str = "CN:areaCode";
const VN_SIGNER: &str = "CN:signer";
const VN_SEC: &str = "CN:secClassification";
const VN_CERTAINTY: &str = "CN:certainty";
const VN_METHOD: &str = "CN:method";

/// One row of the national event-type table.
#[derive(Debug, Clone)]
pub struct EventType {
    /// The code, e.g. `11B03`.
    pub code: String,
    /// Chinese name, e.g. 暴雨.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// CAP categories for events of this type.
    pub categories: Vec<Category>,
}

/// The built-in national event-type table (`src/cap/cn_event_types.csv`).
pub fn event_types() -> &'static [EventType] {
    static TABLE: OnceLock<Vec<EventType>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("cn_event_types.csv")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split(',');
                let code = f.next()?.trim().to_string();
                let name_zh = f.next()?.trim().to_string();
                let name_en = f.next()?.trim().to_string();
                let categories = f
                    .next()?
                    .split(';')
                    .filter_map(|c| Category::from_cap(c.trim()))
                    .collect();
                Some(EventType {
                    code,
                    name_zh,
                    name_en,
                    categories,
                })
            })
            .collect()
    })
}

/// The name of the hazard an upstream warning is about, in `lang` ("zh-CN" or "en"), for the
/// texts that relay it ("暴雨" in "暴雨红色预警"): the national event-type table's name when
/// the alert carried a code it knows, else the alert's own `event` with its colour and the
/// word "warning" taken off ("暴雨红色预警" → "暴雨", "Flood Warning" → "Flood"); `None`
/// when nothing is left.
pub fn hazard_name(event: &str, code: Option<&str>, lang: &str) -> Option<String> {
    if let Some(t) = code.and_then(event_type) {
        return Some(if lang == "en" {
            t.name_en.clone()
        } else {
            t.name_zh.clone()
        });
    }
    let mut s = event.trim();
    for suffix in [
        "预警信号",
        "预警",
        " Warning",
        " warning",
        " Alert",
        " alert",
    ] {
        s = s.strip_suffix(suffix).unwrap_or(s).trim_end();
    }
    for colour in [
        "红色", "橙色", "黄色", "蓝色", " Red", " Orange", " Yellow", " Blue",
    ] {
        s = s.strip_suffix(colour).unwrap_or(s).trim_end();
    }
    if s.is_empty() {
        return None;
    }
    // A name the table knows, in the other language when asked for it.
    if let Some(t) = event_types()
        .iter()
        .find(|t| t.name_zh == s || t.name_en.eq_ignore_ascii_case(s))
    {
        return Some(if lang == "en" {
            t.name_en.clone()
        } else {
            t.name_zh.clone()
        });
    }
    Some(s.to_string())
}

/// Look an event type up by code.
pub fn event_type(code: &str) -> Option<&'static EventType> {
    event_types().iter().find(|e| e.code == code)
}

/// The dialect's colour word for a severity.
pub fn colour_of(s: Severity) -> &'static str {
    match s {
        Severity::Extreme => "Red",
        Severity::Severe => "Orange",
        Severity::Moderate => "Yellow",
        Severity::Minor => "Blue",
        Severity::Unknown => "Unknown",
    }
}

/// The severity for a colour word.
pub fn severity_of(colour: &str) -> Option<Severity> {
    Some(match colour {
        "Red" => Severity::Extreme,
        "Orange" => Severity::Severe,
        "Yellow" => Severity::Moderate,
        "Blue" => Severity::Minor,
        "Unknown" => Severity::Unknown,
        _ => return None,
    })
}

/// Whether a document root looks like the national dialect: an `<alert>` outside the OASIS
/// namespaces with the dialect's own header elements.
pub fn looks_like_cn(doc: &Doc<'_>, root: NodeId) -> bool {
    let n = doc.node(root);
    n.local == "alert"
        && super::schema::CapVersion::of_ns(n.ns).is_none()
        && doc.children(root).any(|c| {
            let l = doc.node(c).local;
            l == "senderCode" || l == "sendTime"
        })
}

/// Format a time the way the dialect writes it: `YYYY-MM-DD hh:mm:ss+08:00`.
pub fn format_time(t: &CapDateTime) -> String {
    t.to_string().replacen('T', " ", 1)
}

/// Parse a dialect time (`YYYY-MM-DD hh:mm:ss±hh:mm`; the OASIS `T` form is accepted too).
pub fn parse_time(s: &str) -> Result<(CapDateTime, bool), String> {
    let s = s.trim_matches(is_xml_ws);
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        let mut t = s.to_string();
        t.replace_range(10..11, "T");
        CapDateTime::parse_cap12(&t)
            .map(|v| (v, true))
            .map_err(|_| format!("`{s}` is not a time of the form YYYY-MM-DD hh:mm:ss+08:00"))
    } else {
        CapDateTime::parse_cap12(s)
            .map(|v| (v, false))
            .map_err(|_| format!("`{s}` is not a time of the form YYYY-MM-DD hh:mm:ss+08:00"))
    }
}

/// Whether an identifier has the national form `ZZZZZZDDDUUUXX_YYYYMMDDhhmmss[_N]`, and if so
/// the sender code and entry time it carries.
pub fn parse_identifier(id: &str) -> Option<(String, CapDateTime)> {
    let b = id.as_bytes();
    let ok = (b.len() == 29 || (b.len() == 31 && b[29] == b'_' && b[30].is_ascii_digit()))
        && b[14] == b'_'
        && b[..14].iter().all(u8::is_ascii_digit)
        && b[15..29].iter().all(u8::is_ascii_digit);
    if !ok {
        return None;
    }
    let t = &id[15..29];
    let text = format!(
        "{}-{}-{}T{}:{}:{}+08:00",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[8..10],
        &t[10..12],
        &t[12..14]
    );
    let sent = CapDateTime::parse_cap12(&text).ok()?;
    Some((id[..14].to_string(), sent))
}

fn is_sender_code(s: &str) -> bool {
    s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_area_code(s: &str) -> bool {
    matches!(s.len(), 6 | 9 | 12 | 15) && s.bytes().all(|b| b.is_ascii_digit())
}

// ---- reading -------------------------------------------------------------------------------

/// Read a dialect `<alert>` into the model, checking the dialect's rules.
pub fn read_cn(doc: &Doc<'_>, id: NodeId, path: &str, out: &mut Problems) -> Option<Alert> {
    let mut r = CnReader {
        doc,
        out,
        broken: false,
    };
    let a = r.alert(id, path);
    if r.broken { None } else { a }
}

struct CnReader<'d, 'a, 'o> {
    doc: &'d Doc<'a>,
    out: &'o mut Problems,
    broken: bool,
}

impl<'a> CnReader<'_, 'a, '_> {
    fn kids(&self, id: NodeId) -> Vec<(&'a str, NodeId)> {
        self.doc
            .children(id)
            .map(|c| (self.doc.node(c).local, c))
            .collect()
    }

    fn first(kids: &[(&str, NodeId)], name: &str) -> Option<NodeId> {
        kids.iter().find(|(n, _)| *n == name).map(|(_, id)| *id)
    }

    fn all<'k>(kids: &'k [(&str, NodeId)], name: &'k str) -> impl Iterator<Item = NodeId> + 'k {
        kids.iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, id)| *id)
    }

    fn text(&self, id: NodeId) -> String {
        self.doc.node(id).text.to_string()
    }

    fn trimmed(&self, id: NodeId) -> String {
        self.doc.node(id).text.trim_matches(is_xml_ws).to_string()
    }

    fn required(
        &mut self,
        kids: &[(&str, NodeId)],
        parent: NodeId,
        path: &str,
        name: &str,
    ) -> Option<NodeId> {
        let found = Self::first(kids, name);
        if found.is_none() {
            self.out.error(
                "cn.missing",
                Some(self.doc.line(parent)),
                path,
                format!("required <{name}> is missing (GB/T 35965.1 dialect)"),
            );
            self.broken = true;
        }
        found
    }

    fn time(&mut self, id: NodeId, path: &str) -> Option<CapDateTime> {
        let raw = self.trimmed(id);
        match parse_time(&raw) {
            Ok((t, dialect_form)) => {
                if !dialect_form {
                    self.out.warn(
                        "cn.time-form",
                        Some(self.doc.line(id)),
                        path,
                        format!("`{raw}` uses the OASIS `T` form; the dialect writes a space"),
                    );
                }
                if t.offset().seconds() != 8 * 3600 {
                    self.out.warn(
                        "cn.time-offset",
                        Some(self.doc.line(id)),
                        path,
                        format!("`{raw}` is not at +08:00, the offset the dialect fixes"),
                    );
                }
                Some(t)
            }
            Err(e) => {
                self.out.error("cn.time", Some(self.doc.line(id)), path, e);
                self.broken = true;
                None
            }
        }
    }

    fn alert(&mut self, id: NodeId, path: &str) -> Option<Alert> {
        let kids = self.kids(id);
        let line = |r: &Self, n: NodeId| Some(r.doc.line(n));
        let identifier = self
            .required(&kids, id, path, "identifier")
            .map(|n| self.trimmed(n));
        if let (Some(ident), Some(n)) = (&identifier, Self::first(&kids, "identifier"))
            && parse_identifier(ident).is_none()
        {
            self.out.error(
                "cn.identifier",
                line(self, n),
                format!("{path}/identifier"),
                format!(
                    "`{ident}` is not a national identifier ZZZZZZDDDUUUXX_YYYYMMDDhhmmss[_N] \
                     (14-digit sender code, entry time, optional sequence)"
                ),
            );
        }
        let issuer = self
            .required(&kids, id, path, "sender")
            .map(|n| self.text(n));
        let sender_code = self
            .required(&kids, id, path, "senderCode")
            .map(|n| self.trimmed(n));
        if let (Some(code), Some(n)) = (&sender_code, Self::first(&kids, "senderCode"))
            && !is_sender_code(code)
        {
            self.out.error(
                "cn.sender-code",
                line(self, n),
                format!("{path}/senderCode"),
                format!(
                    "`{code}` is not a 14-digit sender code (6-digit area + 3-digit organisation \
                     + 3-digit internal + 2-digit extension)"
                ),
            );
        }
        let phone = Self::first(&kids, "phone").map(|n| self.text(n));
        let sent = match self.required(&kids, id, path, "sendTime") {
            Some(n) => self.time(n, &format!("{path}/sendTime")),
            None => None,
        };
        let status = self.required(&kids, id, path, "status").and_then(|n| {
            let v = self.trimmed(n);
            match v.as_str() {
                "Actual" => Some(Status::Actual),
                "Test" => Some(Status::Test),
                other => {
                    self.out.error(
                        "cn.status",
                        Some(self.doc.line(n)),
                        format!("{path}/status"),
                        format!("`{other}`: the dialect uses only Actual and Test"),
                    );
                    self.broken = true;
                    None
                }
            }
        });
        let msg_type = self.required(&kids, id, path, "msgType").and_then(|n| {
            let v = self.trimmed(n);
            match v.as_str() {
                "Alert" => Some(MsgType::Alert),
                "Update" => Some(MsgType::Update),
                "Cancel" => Some(MsgType::Cancel),
                other => {
                    self.out.error(
                        "cn.msgtype",
                        Some(self.doc.line(n)),
                        format!("{path}/msgType"),
                        format!("`{other}`: the dialect uses Alert, Update and Cancel (Ack and Error are reserved)"),
                    );
                    self.broken = true;
                    None
                }
            }
        });
        let scope = self.required(&kids, id, path, "scope").and_then(|n| {
            let v = self.trimmed(n);
            if v == "Public" {
                Some(Scope::Public)
            } else {
                self.out.error(
                    "cn.scope",
                    Some(self.doc.line(n)),
                    format!("{path}/scope"),
                    format!("`{v}`: the dialect's scope is always Public"),
                );
                self.broken = true;
                None
            }
        });
        // code/method → parameters
        let mut cn_params: Vec<ValuePair> = Vec::new();
        for code in Self::all(&kids, "code") {
            let ck = self.kids(code);
            for m in Self::all(&ck, "method") {
                let mk = self.kids(m);
                let Some(name) = Self::first(&mk, "methodName").map(|n| self.trimmed(n)) else {
                    self.out.error(
                        "cn.method",
                        Some(self.doc.line(m)),
                        format!("{path}/code/method"),
                        "<method> without <methodName>",
                    );
                    continue;
                };
                cn_params.push(ValuePair::new(VN_METHOD, name.clone()));
                for field in ["message", "audienceGrp", "audiencePrt"] {
                    // The national system's own alerts spell it `audenceprt`.
                    let found = Self::first(&mk, field).or_else(|| {
                        (field == "audiencePrt")
                            .then(|| Self::first(&mk, "audenceprt"))
                            .flatten()
                    });
                    if let Some(n) = found {
                        let v = self.text(n);
                        if !v.trim().is_empty() {
                            cn_params
                                .push(ValuePair::new(format!("{VN_METHOD}:{name}:{field}"), v));
                        }
                    }
                }
            }
        }
        if Self::first(&kids, "code").is_none() {
            self.out.warn(
                "cn.missing-method",
                Some(self.doc.line(id)),
                path,
                "no <code>/<method>: the dialect expects the dissemination means",
            );
        }
        if let Some(n) = Self::first(&kids, "secClassification") {
            let v = self.trimmed(n);
            if v != "None" && v != "Inner" {
                self.out.error(
                    "cn.sec",
                    Some(self.doc.line(n)),
                    format!("{path}/secClassification"),
                    format!("`{v}` is not None or Inner"),
                );
            }
            cn_params.push(ValuePair::new(VN_SEC, v));
        }
        let note = Self::first(&kids, "note").map(|n| self.text(n));
        let references = match Self::first(&kids, "references") {
            Some(n) => {
                let v = self.trimmed(n);
                if v.is_empty() {
                    Some(Vec::new())
                } else {
                    match parse_identifier(&v) {
                        Some((sender, sent)) => Some(vec![Reference {
                            sender,
                            identifier: v,
                            sent,
                        }]),
                        None => {
                            self.out.error(
                                "cn.references",
                                Some(self.doc.line(n)),
                                format!("{path}/references"),
                                format!(
                                    "`{v}` is not the national identifier of the first alert; \
                                     without it the lineage cannot be followed"
                                ),
                            );
                            self.broken = true;
                            None
                        }
                    }
                }
            }
            None => None,
        };
        if matches!(msg_type, Some(MsgType::Update | MsgType::Cancel))
            && references.as_ref().is_none_or(|r| r.is_empty())
        {
            self.out.error(
                "cap.references.missing",
                Some(self.doc.line(id)),
                path,
                "Update and Cancel must give the first alert's identifier in <references>",
            );
        }
        if msg_type == Some(MsgType::Cancel) && note.as_deref().is_none_or(|n| n.trim().is_empty())
        {
            self.out.warn(
                "cn.cancel-note",
                Some(self.doc.line(id)),
                path,
                "a Cancel should give its reason in <note>",
            );
        }
        let mut infos = Vec::new();
        let mut info_nodes = Self::all(&kids, "info").peekable();
        if info_nodes.peek().is_none() {
            self.out.error(
                "cn.missing",
                Some(self.doc.line(id)),
                path,
                "required <info> is missing (GB/T 35965.1 dialect)",
            );
            self.broken = true;
        }
        let info_ids: Vec<NodeId> = info_nodes.collect();
        for (i, n) in info_ids.into_iter().enumerate() {
            let ipath = format!("{path}/info[{}]", i + 1);
            if let Some(mut info) = self.info(n, &ipath) {
                info.sender_name = issuer.clone();
                if i == 0 {
                    info.contact = phone.clone();
                }
                info.parameters.extend(cn_params.iter().cloned());
                infos.push(info);
            }
        }
        Some(Alert {
            identifier: identifier?,
            sender: sender_code?,
            sent: sent?,
            status: status?,
            msg_type: msg_type?,
            source: None,
            scope: scope?,
            restriction: None,
            addresses: None,
            codes: Vec::new(),
            note,
            references,
            incidents: None,
            infos,
            signatures: Vec::new(),
        })
    }

    fn info(&mut self, id: NodeId, path: &str) -> Option<Info> {
        let kids = self.kids(id);
        let language = Self::first(&kids, "language")
            .map(|n| self.trimmed(n))
            .unwrap_or_else(|| "zh-CN".to_string());
        let mut parameters = Vec::new();
        let (event, categories, event_codes) = match self.required(&kids, id, path, "eventType") {
            Some(n) => {
                let code = self.trimmed(n);
                match event_type(&code) {
                    Some(et) => {
                        let name = if language.starts_with("zh") {
                            et.name_zh.clone()
                        } else {
                            et.name_en.clone()
                        };
                        (
                            name,
                            et.categories.clone(),
                            vec![ValuePair::new(VN_EVENT_TYPE, code)],
                        )
                    }
                    None => {
                        self.out.warn(
                            "cn.event-type",
                            Some(self.doc.line(n)),
                            format!("{path}/eventType"),
                            format!("event type `{code}` is not in the national table; event named by its code"),
                        );
                        (
                            code.clone(),
                            vec![Category::Other],
                            vec![ValuePair::new(VN_EVENT_TYPE, code)],
                        )
                    }
                }
            }
            None => (String::new(), Vec::new(), Vec::new()),
        };
        let urgency = self.required(&kids, id, path, "urgency").and_then(|n| {
            let v = self.trimmed(n);
            let u = Urgency::from_cap(&v);
            if u.is_none() {
                self.out.error(
                    "cn.urgency",
                    Some(self.doc.line(n)),
                    format!("{path}/urgency"),
                    format!("`{v}` is not an urgency"),
                );
                self.broken = true;
            }
            u
        });
        let severity = self.required(&kids, id, path, "severity").and_then(|n| {
            let v = self.trimmed(n);
            let s = severity_of(&v);
            if s.is_none() {
                self.out.error(
                    "cn.severity",
                    Some(self.doc.line(n)),
                    format!("{path}/severity"),
                    format!("`{v}` is not one of Red, Orange, Yellow, Blue, Unknown"),
                );
                self.broken = true;
            }
            s
        });
        let certainty = self.required(&kids, id, path, "certainty").and_then(|n| {
            let v = self.trimmed(n);
            match v.as_str() {
                "VeryLikely" => {
                    parameters.push(ValuePair::new(VN_CERTAINTY, "VeryLikely"));
                    Some(Certainty::Likely)
                }
                "Observed" => Some(Certainty::Observed),
                "Likely" => Some(Certainty::Likely),
                "Unlikely" => Some(Certainty::Unlikely),
                "Unknown" => Some(Certainty::Unknown),
                other => {
                    self.out.error(
                        "cn.certainty",
                        Some(self.doc.line(n)),
                        format!("{path}/certainty"),
                        format!("`{other}` is not one of Observed, VeryLikely, Likely, Unlikely, Unknown"),
                    );
                    self.broken = true;
                    None
                }
            }
        });
        let effective = match self.required(&kids, id, path, "effective") {
            Some(n) => self.time(n, &format!("{path}/effective")),
            None => None,
        };
        // The national system writes `<onset/>` and `<expires/>` when it has no time: absent
        // ("until cancelled"), not malformed.
        let onset = Self::first(&kids, "onset")
            .filter(|n| !self.trimmed(*n).is_empty())
            .and_then(|n| self.time(n, &format!("{path}/onset")));
        let expires = Self::first(&kids, "expires")
            .filter(|n| !self.trimmed(*n).is_empty())
            .and_then(|n| self.time(n, &format!("{path}/expires")));
        if let Some(n) = self.required(&kids, id, path, "senderName") {
            parameters.push(ValuePair::new(VN_SIGNER, self.text(n)));
        }
        let headline = self
            .required(&kids, id, path, "headline")
            .map(|n| self.text(n));
        let description = self
            .required(&kids, id, path, "description")
            .map(|n| self.text(n));
        let instruction = Self::first(&kids, "instruction").map(|n| self.text(n));
        let web = Self::first(&kids, "web").map(|n| self.text(n));
        let mut resources = Vec::new();
        for n in Self::all(&kids, "resource") {
            let rk = self.kids(n);
            let Some(desc) = Self::first(&rk, "resourceDesc").map(|d| self.text(d)) else {
                self.out.error(
                    "cn.missing",
                    Some(self.doc.line(n)),
                    format!("{path}/resource"),
                    "required <resourceDesc> is missing",
                );
                self.broken = true;
                continue;
            };
            let size = match Self::first(&rk, "size").map(|s| self.trimmed(s)) {
                Some(s) => match s.parse::<u64>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        self.out.error(
                            "cn.resource",
                            Some(self.doc.line(n)),
                            format!("{path}/resource/size"),
                            format!("`{s}` is not a size in bytes"),
                        );
                        self.broken = true;
                        None
                    }
                },
                None => None,
            };
            resources.push(Resource {
                mime_type: Self::first(&rk, "mimeType")
                    .map(|m| self.trimmed(m))
                    .unwrap_or_else(|| mime_from_name(&desc).to_string()),
                resource_desc: desc,
                size,
                uri: Self::first(&rk, "uri").map(|u| self.text(u)),
                deref_uri: None,
                digest: Self::first(&rk, "digest").map(|d| self.trimmed(d)),
            });
        }
        let mut areas = Vec::new();
        let area_ids: Vec<NodeId> = Self::all(&kids, "area").collect();
        if area_ids.is_empty() {
            self.out.error(
                "cn.missing",
                Some(self.doc.line(id)),
                path,
                "required <area> is missing (GB/T 35965.1 dialect)",
            );
            self.broken = true;
        }
        for (i, n) in area_ids.into_iter().enumerate() {
            let apath = format!("{path}/area[{}]", i + 1);
            if let Some(a) = self.area(n, &apath) {
                areas.push(a);
            }
        }
        Some(Info {
            language: Some(language),
            categories,
            event,
            response_types: Vec::new(),
            urgency: urgency?,
            severity: severity?,
            certainty: certainty?,
            audience: None,
            event_codes,
            effective: Some(effective?),
            onset,
            expires,
            sender_name: None,
            headline: Some(headline?),
            description: Some(description?),
            instruction,
            web,
            contact: None,
            parameters,
            resources,
            areas,
        })
    }

    fn area(&mut self, id: NodeId, path: &str) -> Option<Area> {
        let kids = self.kids(id);
        let area_desc = self
            .required(&kids, id, path, "areaDesc")
            .map(|n| self.text(n));
        let mut polygons = Vec::new();
        // `<polygon/>` and `<circle/>` are usually empty in the national system's alerts.
        let polygon_ids: Vec<NodeId> = Self::all(&kids, "polygon")
            .filter(|n| !self.trimmed(*n).is_empty())
            .collect();
        for n in polygon_ids {
            match Polygon::parse(&self.text(n)) {
                Ok(p) => {
                    if !p.points.is_empty() && !p.is_closed() {
                        self.out.warn(
                            "cn.polygon",
                            Some(self.doc.line(n)),
                            format!("{path}/polygon"),
                            "the ring is not closed (the dialect then means a line)",
                        );
                    }
                    polygons.push(p)
                }
                Err(e) => {
                    self.out.error(
                        "cn.polygon",
                        Some(self.doc.line(n)),
                        format!("{path}/polygon"),
                        e,
                    );
                    self.broken = true;
                }
            }
        }
        let mut circles = Vec::new();
        let circle_ids: Vec<NodeId> = Self::all(&kids, "circle")
            .filter(|n| !self.trimmed(*n).is_empty())
            .collect();
        for n in circle_ids {
            match Circle::parse(&self.text(n)) {
                Ok(c) => circles.push(Circle {
                    center: c.center,
                    radius_km: c.radius_km / 1000.0,
                }),
                Err(e) => {
                    self.out.error(
                        "cn.circle",
                        Some(self.doc.line(n)),
                        format!("{path}/circle"),
                        format!("{e} (radius in metres)"),
                    );
                    self.broken = true;
                }
            }
        }
        let mut geocodes = Vec::new();
        let geo_ids: Vec<NodeId> = Self::all(&kids, "geocode").collect();
        if geo_ids.is_empty() {
            self.out.error(
                "cn.missing",
                Some(self.doc.line(id)),
                path,
                "required <geocode> (area codes) is missing",
            );
            self.broken = true;
        }
        for n in geo_ids {
            for code in self.text(n).split(',') {
                let code = code.trim_matches(is_xml_ws);
                if code.is_empty() {
                    continue;
                }
                if !is_area_code(code) {
                    self.out.error(
                        "cn.area-code",
                        Some(self.doc.line(n)),
                        format!("{path}/geocode"),
                        format!("`{code}` is not a 6-, 9-, 12- or 15-digit administrative code"),
                    );
                }
                // The national system repeats codes (`410000000000,410000000000`): once each.
                if !geocodes
                    .iter()
                    .any(|g: &ValuePair| g.value_name == VN_AREA_CODE && g.value == code)
                {
                    geocodes.push(ValuePair::new(VN_AREA_CODE, code));
                }
            }
        }
        Some(Area {
            area_desc: area_desc?,
            polygons,
            circles,
            geocodes,
            altitude: None,
            ceiling: None,
        })
    }
}

/// A radius in km as whole millimetres, so km → m → km gives back the same number.
fn metres(km: f64) -> f64 {
    (km * 1_000_000.0).round() / 1000.0
}

fn mime_from_name(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

// ---- writing -------------------------------------------------------------------------------

/// Write an alert in the national dialect. Fields the dialect cannot carry are listed in the
/// returned notes (as `Level::Note` problems); values it cannot express are errors.
pub fn build_cn(alert: &Alert) -> Result<(String, Problems), Vec<BuildError>> {
    let mut errs: Vec<BuildError> = Vec::new();
    let mut notes = Problems::new();
    let err = |errs: &mut Vec<BuildError>, path: &str, msg: String| {
        errs.push(BuildError {
            path: path.to_string(),
            message: msg,
        })
    };
    let first = alert.infos.first();
    let param = |name: &str| -> Vec<&str> {
        first
            .map(|i| {
                i.parameters
                    .iter()
                    .filter(|p| p.value_name == name)
                    .map(|p| p.value.as_str())
                    .collect()
            })
            .unwrap_or_default()
    };
    if parse_identifier(&alert.identifier).is_none() {
        err(
            &mut errs,
            "alert/identifier",
            format!(
                "`{}` is not a national identifier ZZZZZZDDDUUUXX_YYYYMMDDhhmmss[_N]",
                alert.identifier
            ),
        );
    }
    if !is_sender_code(&alert.sender) {
        err(
            &mut errs,
            "alert/sender",
            format!(
                "`{}` is not a 14-digit national sender code (the dialect's senderCode)",
                alert.sender
            ),
        );
    }
    let issuer = first.and_then(|i| i.sender_name.clone());
    if issuer.is_none() {
        err(
            &mut errs,
            "alert/info[1]/senderName",
            "the dialect needs the issuer's name (<sender>), taken from <senderName>".into(),
        );
    }
    if !matches!(alert.status, Status::Actual | Status::Test) {
        err(
            &mut errs,
            "alert/status",
            format!("{}: the dialect uses only Actual and Test", alert.status),
        );
    }
    if !matches!(
        alert.msg_type,
        MsgType::Alert | MsgType::Update | MsgType::Cancel
    ) {
        err(
            &mut errs,
            "alert/msgType",
            format!(
                "{}: the dialect has only Alert, Update and Cancel",
                alert.msg_type
            ),
        );
    }
    if alert.scope != Scope::Public {
        err(
            &mut errs,
            "alert/scope",
            format!("{}: the dialect's scope is always Public", alert.scope),
        );
    }
    if alert.infos.is_empty() {
        err(&mut errs, "alert", "the dialect needs an <info>".into());
    }
    let references = alert.references.as_ref().and_then(|refs| {
        refs.iter()
            .min_by_key(|r| r.sent.timestamp())
            .map(|r| r.identifier.clone())
    });
    if matches!(alert.msg_type, MsgType::Update | MsgType::Cancel) && references.is_none() {
        err(
            &mut errs,
            "alert/references",
            "Update and Cancel need the first alert's identifier".into(),
        );
    }
    for (what, present) in [
        ("source", alert.source.is_some()),
        ("restriction", alert.restriction.is_some()),
        ("addresses", alert.addresses.is_some()),
        ("code", !alert.codes.is_empty()),
        ("incidents", alert.incidents.is_some()),
        ("signature", !alert.signatures.is_empty()),
    ] {
        if present {
            notes.note(
                "cn.dropped",
                None,
                format!("alert/{what}"),
                format!("<{what}> has no place in the dialect and is not written"),
            );
        }
    }

    let mut w = String::with_capacity(4096);
    w.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w.push_str(&format!("<alert xmlns=\"{NS_CN}\">\n"));
    let leaf =
        |w: &mut String, depth: usize, name: &str, value: &str, errs: &mut Vec<BuildError>| {
            for _ in 0..depth {
                w.push_str("  ");
            }
            w.push('<');
            w.push_str(name);
            w.push('>');
            if let Err(c) = write_text(w, value) {
                errs.push(BuildError {
                    path: name.to_string(),
                    message: format!("contains U+{:04X}, which XML cannot carry", c as u32),
                });
            }
            w.push_str("</");
            w.push_str(name);
            w.push_str(">\n");
        };
    leaf(&mut w, 1, "identifier", &alert.identifier, &mut errs);
    leaf(
        &mut w,
        1,
        "sender",
        issuer.as_deref().unwrap_or(""),
        &mut errs,
    );
    leaf(&mut w, 1, "senderCode", &alert.sender, &mut errs);
    if let Some(phone) = first.and_then(|i| i.contact.as_deref()) {
        leaf(&mut w, 1, "phone", phone, &mut errs);
    }
    leaf(&mut w, 1, "sendTime", &format_time(&alert.sent), &mut errs);
    leaf(&mut w, 1, "status", alert.status.as_str(), &mut errs);
    leaf(&mut w, 1, "msgType", alert.msg_type.as_str(), &mut errs);
    leaf(&mut w, 1, "scope", alert.scope.as_str(), &mut errs);
    let methods = param(VN_METHOD);
    if !methods.is_empty() {
        w.push_str("  <code>\n");
        for m in &methods {
            w.push_str("    <method>\n");
            leaf(&mut w, 3, "methodName", m, &mut errs);
            for field in ["message", "audienceGrp", "audiencePrt"] {
                if let Some(v) = param(&format!("{VN_METHOD}:{m}:{field}")).first() {
                    leaf(&mut w, 3, field, v, &mut errs);
                }
            }
            w.push_str("    </method>\n");
        }
        w.push_str("  </code>\n");
    } else {
        notes.warn(
            "cn.missing-method",
            None,
            "alert/code",
            "no CN:method parameters: the dialect's <code>/<method> is left out",
        );
    }
    if let Some(sec) = param(VN_SEC).first() {
        leaf(&mut w, 1, "secClassification", sec, &mut errs);
    }
    if let Some(note) = &alert.note {
        leaf(&mut w, 1, "note", note, &mut errs);
    }
    if let Some(r) = &references {
        leaf(&mut w, 1, "references", r, &mut errs);
    }
    for (i, info) in alert.infos.iter().enumerate() {
        let p = format!("alert/info[{}]", i + 1);
        w.push_str("  <info>\n");
        leaf(
            &mut w,
            2,
            "language",
            info.language.as_deref().unwrap_or("zh-CN"),
            &mut errs,
        );
        let code = info
            .event_codes
            .iter()
            .find(|e| e.value_name == VN_EVENT_TYPE)
            .map(|e| e.value.clone())
            .or_else(|| {
                event_types()
                    .iter()
                    .find(|t| {
                        t.name_zh == info.event || t.name_en.eq_ignore_ascii_case(&info.event)
                    })
                    .map(|t| t.code.clone())
            });
        match &code {
            Some(c) => leaf(&mut w, 2, "eventType", c, &mut errs),
            None => err(
                &mut errs,
                &format!("{p}/event"),
                format!(
                    "no national eventType for event `{}`: add an eventCode `{VN_EVENT_TYPE}`",
                    info.event
                ),
            ),
        }
        leaf(&mut w, 2, "urgency", info.urgency.as_str(), &mut errs);
        leaf(&mut w, 2, "severity", colour_of(info.severity), &mut errs);
        let very = info
            .parameters
            .iter()
            .any(|p| p.value_name == VN_CERTAINTY && p.value == "VeryLikely");
        let certainty = match info.certainty {
            Certainty::Likely if very => "VeryLikely",
            Certainty::Possible => {
                notes.note(
                    "cn.certainty",
                    None,
                    format!("{p}/certainty"),
                    "the dialect has no `Possible`; written as Unknown",
                );
                "Unknown"
            }
            c => c.as_str(),
        };
        leaf(&mut w, 2, "certainty", certainty, &mut errs);
        leaf(
            &mut w,
            2,
            "effective",
            &format_time(&info.effective.unwrap_or(alert.sent)),
            &mut errs,
        );
        if let Some(t) = info.onset {
            leaf(&mut w, 2, "onset", &format_time(&t), &mut errs);
        }
        if let Some(t) = info.expires {
            leaf(&mut w, 2, "expires", &format_time(&t), &mut errs);
        }
        let signer = info
            .parameters
            .iter()
            .find(|p| p.value_name == VN_SIGNER)
            .map(|p| p.value.clone())
            .or_else(|| info.sender_name.clone())
            .unwrap_or_default();
        leaf(&mut w, 2, "senderName", &signer, &mut errs);
        match &info.headline {
            Some(h) => leaf(&mut w, 2, "headline", h, &mut errs),
            None => err(
                &mut errs,
                &format!("{p}/headline"),
                "the dialect requires a headline".into(),
            ),
        }
        match &info.description {
            Some(d) => leaf(&mut w, 2, "description", d, &mut errs),
            None => err(
                &mut errs,
                &format!("{p}/description"),
                "the dialect requires a description".into(),
            ),
        }
        if let Some(v) = &info.instruction {
            leaf(&mut w, 2, "instruction", v, &mut errs);
        }
        if let Some(v) = &info.web {
            leaf(&mut w, 2, "web", v, &mut errs);
        }
        for param in &info.parameters {
            if !param.value_name.starts_with("CN:") {
                notes.note(
                    "cn.dropped",
                    None,
                    format!("{p}/parameter"),
                    format!(
                        "parameter `{}` has no place in the dialect",
                        param.value_name
                    ),
                );
            }
        }
        for r in &info.resources {
            w.push_str("    <resource>\n");
            leaf(&mut w, 3, "resourceDesc", &r.resource_desc, &mut errs);
            if r.mime_type != mime_from_name(&r.resource_desc) {
                leaf(&mut w, 3, "mimeType", &r.mime_type, &mut errs);
            }
            if let Some(s) = r.size {
                leaf(&mut w, 3, "size", &s.to_string(), &mut errs);
            }
            if let Some(u) = &r.uri {
                leaf(&mut w, 3, "uri", u, &mut errs);
            }
            if let Some(d) = &r.digest {
                leaf(&mut w, 3, "digest", d, &mut errs);
            }
            w.push_str("    </resource>\n");
        }
        if info.areas.is_empty() {
            err(
                &mut errs,
                &format!("{p}/area"),
                "the dialect requires an area".into(),
            );
        }
        for (j, a) in info.areas.iter().enumerate() {
            let ap = format!("{p}/area[{}]", j + 1);
            w.push_str("    <area>\n");
            leaf(&mut w, 3, "areaDesc", &a.area_desc, &mut errs);
            for poly in &a.polygons {
                leaf(&mut w, 3, "polygon", &poly.to_string(), &mut errs);
            }
            for c in &a.circles {
                leaf(
                    &mut w,
                    3,
                    "circle",
                    &format!("{} {}", c.center, metres(c.radius_km)),
                    &mut errs,
                );
            }
            let codes: Vec<&str> = a
                .geocodes
                .iter()
                .filter(|g| g.value_name == VN_AREA_CODE)
                .map(|g| g.value.as_str())
                .collect();
            if codes.is_empty() {
                err(
                    &mut errs,
                    &ap,
                    format!("the dialect requires area codes (geocodes `{VN_AREA_CODE}`)"),
                );
            } else {
                for c in &codes {
                    if !is_area_code(c) {
                        err(
                            &mut errs,
                            &format!("{ap}/geocode"),
                            format!("`{c}` is not a 6-, 9-, 12- or 15-digit administrative code"),
                        );
                    }
                }
                leaf(&mut w, 3, "geocode", &codes.join(","), &mut errs);
            }
            for g in a.geocodes.iter().filter(|g| g.value_name != VN_AREA_CODE) {
                notes.note(
                    "cn.dropped",
                    None,
                    format!("{ap}/geocode"),
                    format!(
                        "geocode `{}` is not a national area code and is not written",
                        g.value_name
                    ),
                );
            }
            if a.altitude.is_some() || a.ceiling.is_some() {
                notes.note(
                    "cn.dropped",
                    None,
                    ap.clone(),
                    "altitude/ceiling have no place in the dialect",
                );
            }
            w.push_str("    </area>\n");
        }
        w.push_str("  </info>\n");
    }
    w.push_str("</alert>\n");
    if errs.is_empty() {
        Ok((w, notes))
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_identifiers_carry_sender_and_time() {
        let (code, t) = parse_identifier("33000041600000_20121025091026").unwrap();
        assert_eq!(code, "33000041600000");
        assert_eq!(t.to_string(), "2012-10-25T09:10:26+08:00");
        assert!(parse_identifier("33000041600000_20121025091026_3").is_some());
        assert!(parse_identifier("3300004160000_20121025091026").is_none());
        assert!(
            parse_identifier("33000041600000_20121325091026").is_none(),
            "month 13"
        );
    }

    #[test]
    fn radii_survive_metres_and_back() {
        for m in [0.0, 1234.5, 25000.0, 0.001, 987654.321] {
            let km = m / 1000.0;
            assert_eq!(metres(km), m);
            assert_eq!(metres(km) / 1000.0, km);
        }
    }

    #[test]
    fn colours_map_both_ways() {
        for s in Severity::ALL {
            assert_eq!(severity_of(colour_of(*s)), Some(*s));
        }
    }

    #[test]
    fn event_table_is_loaded() {
        assert_eq!(
            event_type("11B03").map(|e| e.name_zh.as_str()),
            Some("暴雨")
        );
        assert!(event_types().len() >= 48);
        assert!(event_types().iter().all(|e| !e.categories.is_empty()));
    }
}
