//! The county emergency-broadcast platform's message family (EBD envelopes, GY/T 385-2023,
//! formerly GD/J 082-2018): building what stormbell sends, packaging it, reading the answers.
//!
//! What we send, each an `EBD` envelope (`EBDVersion`, `EBDID`, `EBDType`, `SRC`/`DEST`
//! resource codes, `EBDTime`):
//! - `EBM`: a broadcast instruction — the warning's title and spoken text, the 12-digit area
//!   codes of the target villages, start/end times, severity, event type, and the audio as an
//!   auxiliary resource (its file inside the package, size and SM3 digest). `MsgType` 1 plays,
//!   2 stops (a Cancel), with `RelatedEBM` naming the broadcast it stops or replaces.
//! - `EBMStateRequest`: how is broadcast `EBMID` doing?
//! - `ConnectionCheck`: the heartbeat between tiers.
//! - `OMDRequest` for `EBRDTState`: which terminals are online.
//!
//! A package is a tar (`EBDT_<EBDID>.tar`) holding `EBDB_<EBDID>.xml`, its signature
//! `EBDS_EBDB_<EBDID>.xml` when signing, and the audio file. Answers come back the same way.
//!
//! **What is ours, not the standard's.** The normative text was not available while this was
//! written (see `docs/domain.md` §5, §8). Field names and the result codes
//! (`1` done, `3` unsupported, `4` signature rejected, `5` unknown EBMID) and broadcast states
//! (`0` failed, `1` playing, `2` done) follow a Zhejiang county bridge's code. These are our
//! choices until checked against GY/T 385/386-2023: `EBMID` = source EBRID + 16-digit sequence;
//! `Severity` 1–4 = red…blue (as GB/T 35965's 特别重大…一般); `TestType` 1 for a drill, 0
//! otherwise; `AuxiliaryType` 2 = MP3 file; `AreaCode` as a comma-separated list; per-terminal
//! results as `ResBrdItem/EBEBS` with the terminal's EBRID in `EBEID` and the same 0/1/2 codes
//! in `ResultCode`; terminal states `StateCode` 1 = online, anything else = not.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use quick_xml::escape::escape;

use super::sign::Signer;

/// Who we are and whom we talk to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Our resource code (18 digits: type, level, 12-digit area code, sequence).
    pub src: String,
    /// The platform's resource code.
    pub dest: String,
    /// The office's name (`SenderName`).
    pub sender: String,
    /// Zone of the times written (the platform reads local time).
    pub tz: TimeZone,
}

/// Whether a resource code has the 18-digit shape.
pub fn valid_ebrid(s: &str) -> bool {
    s.len() == 18 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The 36-digit id of an envelope: "01", our resource code, a 16-digit sequence.
pub fn ebd_id(src: &str, seq: i64) -> String {
    format!("01{src}{seq:016}")
}

/// The id of a broadcast: our resource code and a 16-digit sequence.
pub fn ebm_id(src: &str, seq: i64) -> String {
    format!("{src}{seq:016}")
}

/// Play or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// Broadcast it.
    Play = 1,
    /// Stop the broadcast named in `RelatedEBM` (a lifted warning).
    Stop = 2,
}

/// The audio carried with a broadcast.
#[derive(Debug, Clone)]
pub struct Auxiliary {
    /// Its name inside the package.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// SM3 of its bytes (hex).
    pub sm3: String,
}

impl Auxiliary {
    /// Describe a file that goes into the package (digested once, however many instructions
    /// name it).
    pub fn of(file: impl Into<String>, bytes: &[u8]) -> Auxiliary {
        Auxiliary {
            file: file.into(),
            size: bytes.len() as u64,
            sm3: sm3_hex(bytes),
        }
    }
}

/// A broadcast instruction.
#[derive(Debug, Clone)]
pub struct Ebm {
    /// This broadcast.
    pub ebm_id: String,
    /// The broadcast it replaces or stops.
    pub related: Option<String>,
    /// Play or stop.
    pub msg_type: MsgType,
    /// A drill.
    pub test: bool,
    /// 1 (red) … 4 (blue).
    pub severity: u8,
    /// National event type code (`11B…`), empty when unknown.
    pub event_type: String,
    /// Title.
    pub title: String,
    /// The spoken text (also for platforms that speak it themselves, TTS).
    pub text: String,
    /// 12-digit codes of the villages.
    pub areas: Vec<String>,
    /// Play from.
    pub start: Timestamp,
    /// Play until.
    pub end: Timestamp,
    /// The audio, when there is a file.
    pub audio: Option<Auxiliary>,
}

fn time(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn leaf(out: &mut String, indent: usize, name: &str, text: &str) {
    let _ = writeln!(
        out,
        "{:indent$}<{name}>{}</{name}>",
        "",
        escape(text),
        indent = indent
    );
}

fn envelope(ep: &Endpoint, id: &str, kind: &str, now: Timestamp, body: &str) -> Vec<u8> {
    let mut s = String::with_capacity(1024 + body.len());
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<EBD>\n");
    leaf(&mut s, 2, "EBDVersion", "1.0");
    leaf(&mut s, 2, "EBDID", id);
    leaf(&mut s, 2, "EBDType", kind);
    let _ = writeln!(
        s,
        "  <SRC>\n    <EBRID>{}</EBRID>\n  </SRC>",
        escape(&ep.src)
    );
    let _ = writeln!(
        s,
        "  <DEST>\n    <EBRID>{}</EBRID>\n  </DEST>",
        escape(&ep.dest)
    );
    leaf(&mut s, 2, "EBDTime", &time(now, &ep.tz));
    s.push_str(body);
    s.push_str("</EBD>\n");
    s.into_bytes()
}

/// SM3 digest (hex) of bytes: the auxiliary resource's `Digest`.
pub fn sm3_hex(b: &[u8]) -> String {
    use sm3::Digest;
    hex::encode(sm3::Sm3::digest(b))
}

/// The `EBDB_….xml` of a broadcast instruction.
pub fn ebm_document(ep: &Endpoint, ebd: &str, m: &Ebm, now: Timestamp) -> Vec<u8> {
    let mut b = String::with_capacity(2048 + m.text.len());
    b.push_str("  <EBM>\n");
    leaf(&mut b, 4, "EBMVersion", "1.0");
    leaf(&mut b, 4, "EBMID", &m.ebm_id);
    if let Some(r) = &m.related {
        let _ = writeln!(
            b,
            "    <RelatedEBM>\n      <EBMID>{}</EBMID>\n    </RelatedEBM>",
            escape(r)
        );
    }
    leaf(&mut b, 4, "TestType", if m.test { "1" } else { "0" });
    leaf(&mut b, 4, "StartTime", &time(m.start, &ep.tz));
    leaf(&mut b, 4, "EndTime", &time(m.end, &ep.tz));
    b.push_str("    <MsgBasicInfo>\n");
    leaf(&mut b, 6, "MsgType", &(m.msg_type as u8).to_string());
    leaf(&mut b, 6, "SenderName", &ep.sender);
    leaf(&mut b, 6, "SenderCode", &ep.src);
    leaf(&mut b, 6, "SentTime", &time(now, &ep.tz));
    leaf(&mut b, 6, "EventType", &m.event_type);
    leaf(&mut b, 6, "Severity", &m.severity.to_string());
    leaf(&mut b, 6, "StartTime", &time(m.start, &ep.tz));
    leaf(&mut b, 6, "EndTime", &time(m.end, &ep.tz));
    b.push_str("    </MsgBasicInfo>\n    <MsgContent>\n");
    leaf(&mut b, 6, "LanguageCode", "zho");
    leaf(&mut b, 6, "MsgTitle", &m.title);
    leaf(&mut b, 6, "MsgDesc", &m.text);
    leaf(&mut b, 6, "AreaCode", &m.areas.join(","));
    if let Some(a) = &m.audio {
        b.push_str("      <Auxiliary>\n");
        leaf(&mut b, 8, "AuxiliaryType", "2");
        leaf(&mut b, 8, "AuxiliaryDesc", &a.file);
        leaf(&mut b, 8, "Size", &a.size.to_string());
        leaf(&mut b, 8, "Digest", &a.sm3);
        b.push_str("      </Auxiliary>\n");
    }
    b.push_str("    </MsgContent>\n  </EBM>\n");
    envelope(ep, ebd, "EBM", now, &b)
}

/// The `EBDB_….xml` asking how a broadcast is doing.
pub fn state_request(ep: &Endpoint, ebd: &str, ebm: &str, now: Timestamp) -> Vec<u8> {
    let body = format!(
        "  <EBMStateRequest>\n    <EBM>\n      <EBMID>{}</EBMID>\n    </EBM>\n  </EBMStateRequest>\n",
        escape(ebm)
    );
    envelope(ep, ebd, "EBMStateRequest", now, &body)
}

/// The heartbeat.
pub fn connection_check(ep: &Endpoint, ebd: &str, now: Timestamp) -> Vec<u8> {
    let body = format!(
        "  <ConnectionCheck>\n    <RptTime>{}</RptTime>\n  </ConnectionCheck>\n",
        time(now, &ep.tz)
    );
    envelope(ep, ebd, "ConnectionCheck", now, &body)
}

/// Ask for every terminal's state (`OMDRequest` for `EBRDTState`, full report).
pub fn terminal_state_request(ep: &Endpoint, ebd: &str, now: Timestamp) -> Vec<u8> {
    let body = format!(
        "  <OMDRequest>\n    <OMDType>EBRDTState</OMDType>\n    <Params>\n      <RptStartTime>{}</RptStartTime>\n      <RptEndTime>{}</RptEndTime>\n      <RptType>Full</RptType>\n    </Params>\n  </OMDRequest>\n",
        time(now - jiff::SignedDuration::from_hours(24), &ep.tz),
        time(now, &ep.tz)
    );
    envelope(ep, ebd, "OMDRequest", now, &body)
}

/// The tar of an envelope: the document, its signature file when the signer gives one, and
/// any resource files.
pub fn package(
    ebd: &str,
    document: &[u8],
    signer: &dyn Signer,
    now: Timestamp,
    files: &[(&str, &[u8])],
) -> anyhow::Result<Vec<u8>> {
    let main = format!("EBDB_{ebd}.xml");
    let mut members: Vec<(String, Vec<u8>)> = vec![(main, document.to_vec())];
    if let Some(sig) = signer.sign(document)? {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Signature>\n");
        leaf(&mut s, 2, "Version", "1.0");
        let _ = writeln!(
            s,
            "  <RelatedEBD>\n    <EBDID>{}</EBDID>\n  </RelatedEBD>",
            escape(ebd)
        );
        s.push_str("  <SignatureCert>\n");
        leaf(&mut s, 4, "CertType", &sig.cert_type);
        leaf(&mut s, 4, "IssuerID", &sig.issuer);
        leaf(&mut s, 4, "CertSN", &sig.cert_sn);
        s.push_str("  </SignatureCert>\n");
        leaf(
            &mut s,
            2,
            "SignatureTime",
            &format!("{:x}", now.as_second()),
        );
        leaf(&mut s, 2, "DigestAlgorithm", sig.digest_algorithm);
        leaf(&mut s, 2, "SignatureAlgorithm", sig.signature_algorithm);
        leaf(&mut s, 2, "SignatureValue", &sig.value);
        s.push_str("</Signature>\n");
        members.push((format!("EBDS_EBDB_{ebd}.xml"), s.into_bytes()));
    }
    for (name, bytes) in files {
        members.push(((*name).to_string(), bytes.to_vec()));
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in &members {
        let mut h = tar::Header::new_ustar();
        h.set_path(name)?;
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(now.as_second().max(0) as u64);
        h.set_cksum();
        tar.append(&h, bytes.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

/// A parsed element: name, text, children (attributes are not used by this family).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// Local name.
    pub name: String,
    /// Text directly inside it, trimmed.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Node>,
}

impl Node {
    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this name.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text at a `/`-separated path below this element ("" when absent).
    pub fn at(&self, path: &str) -> &str {
        let mut n = self;
        for p in path.split('/') {
            match n.child(p) {
                Some(c) => n = c,
                None => return "",
            }
        }
        &n.text
    }
}

/// Parse XML into an owned tree, through the hardened reader the CAP codec uses (no DTDs,
/// no external entities, size and depth limits; an answer breaking them is refused).
pub fn parse(xml: &[u8]) -> anyhow::Result<Node> {
    use crate::cap::xml::{Doc, Limits, decode};
    let limits = Limits::default();
    let (text, _) = decode(xml, &limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    let doc = Doc::parse(&text, &limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    fn own(doc: &Doc<'_>, id: crate::cap::xml::NodeId) -> Node {
        let n = doc.node(id);
        Node {
            name: n.local.to_string(),
            text: n.text.trim().to_string(),
            children: doc.children(id).map(|c| own(doc, c)).collect(),
        }
    }
    Ok(own(&doc, doc.root()))
}

/// One terminal's part in a broadcast, as the platform reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalPlay {
    /// The terminal's resource code.
    pub ebrid: String,
    /// 0 failed, 1 playing, 2 done.
    pub code: u8,
    /// The platform's words.
    pub desc: String,
}

/// A terminal's state.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalState {
    /// Resource code.
    pub ebrid: String,
    /// Online (state code 1).
    pub online: bool,
    /// The platform's words.
    pub desc: String,
}

/// What the platform answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `EBDResponse`: the generic verdict.
    Response {
        /// Result code (`1` executed).
        code: String,
        /// Its words.
        desc: String,
    },
    /// `EBMStateResponse`.
    State {
        /// 0 failed, 1 playing, 2 done.
        code: u8,
        /// Its words.
        desc: String,
        /// Coverage percent, where given.
        coverage: Option<f64>,
        /// Per terminal.
        terminals: Vec<TerminalPlay>,
    },
    /// `EBRDTState`: terminals online or not.
    Terminals(Vec<TerminalState>),
}

/// Read an answer package (a tar holding one `EBDB_*.xml`) into what it says, checking it is
/// from `dest` and answers `ours` (when the answer names what it relates to).
pub fn read_reply(package: &[u8], ep: &Endpoint) -> anyhow::Result<Reply> {
    let mut ar = tar::Archive::new(package);
    let mut doc = None;
    for e in ar
        .entries()
        .map_err(|e| anyhow::anyhow!("the answer is not a tar package: {e}"))?
    {
        let mut e = e.map_err(|e| anyhow::anyhow!("the answer's tar is damaged: {e}"))?;
        let name = e.path()?.to_string_lossy().into_owned();
        if name.starts_with("EBDB_") && name.ends_with(".xml") {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b)?;
            doc = Some(b);
        }
    }
    let doc = doc.ok_or_else(|| anyhow::anyhow!("the answer package has no EBDB_*.xml"))?;
    let ebd = parse(&doc)?;
    if ebd.name != "EBD" {
        anyhow::bail!("the answer's root is <{}>, not <EBD>", ebd.name);
    }
    let from = ebd.at("SRC/EBRID");
    if from != ep.dest {
        anyhow::bail!(
            "the answer is from {from:?}, not the platform {:?}",
            ep.dest
        );
    }
    let kind = ebd.at("EBDType");
    match kind {
        "EBDResponse" => Ok(Reply::Response {
            code: ebd.at("EBDResponse/ResultCode").to_string(),
            desc: ebd.at("EBDResponse/ResultDesc").to_string(),
        }),
        "EBMStateResponse" => {
            let s = ebd
                .child("EBMStateResponse")
                .ok_or_else(|| anyhow::anyhow!("EBMStateResponse has no body"))?;
            let code: u8 = s.at("BrdStateCode").parse().map_err(|_| {
                anyhow::anyhow!("BrdStateCode {:?} is not 0/1/2", s.at("BrdStateCode"))
            })?;
            let coverage = s.at("Coverage/CoveragePercent").parse().ok();
            let mut terminals = Vec::new();
            if let Some(info) = s.child("ResBrdInfo") {
                for item in info.all("ResBrdItem") {
                    for bs in item.all("EBEBS") {
                        let ebrid = bs.at("EBEID").to_string();
                        let Ok(code) = bs.at("ResultCode").parse::<u8>() else {
                            anyhow::bail!(
                                "terminal {ebrid}: ResultCode {:?} is not 0/1/2",
                                bs.at("ResultCode")
                            );
                        };
                        terminals.push(TerminalPlay {
                            ebrid,
                            code,
                            desc: bs.at("ResultDesc").to_string(),
                        });
                    }
                }
            }
            Ok(Reply::State {
                code,
                desc: s.at("BrdStateDesc").to_string(),
                coverage,
                terminals,
            })
        }
        "EBRDTState" => {
            let s = ebd
                .child("EBRDTState")
                .ok_or_else(|| anyhow::anyhow!("EBRDTState has no body"))?;
            Ok(Reply::Terminals(
                s.all("EBRDT")
                    .map(|t| TerminalState {
                        ebrid: t.at("EBRID").to_string(),
                        online: t.at("StateCode") == "1",
                        desc: t.at("StateDesc").to_string(),
                    })
                    .collect(),
            ))
        }
        other => anyhow::bail!("an answer of type {other:?} was not expected"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::platform::sign::NoSigner;

    fn ep() -> Endpoint {
        Endpoint {
            src: "010333109800000001".into(),
            dest: "010233100000000001".into(),
            sender: "东溟县防汛办 & <test>".into(),
            tz: TimeZone::get("Asia/Shanghai").unwrap(),
        }
    }

    #[test]
    fn ids_have_their_lengths() {
        assert_eq!(ebd_id("010333109800000001", 7).len(), 36);
        assert!(ebd_id("010333109800000001", 7).ends_with("0000000000000007"));
        assert_eq!(ebm_id("010333109800000001", 7).len(), 34);
        assert!(valid_ebrid("010333109800000001"));
        assert!(!valid_ebrid("01033310980000000x"));
    }

    #[test]
    fn an_ebm_round_trips_through_its_own_reader_escaped_and_in_local_time() {
        let now: Timestamp = "2019-08-09T13:00:00Z".parse().unwrap();
        let m = Ebm {
            ebm_id: ebm_id(&ep().src, 1),
            related: None,
            msg_type: MsgType::Play,
            test: true,
            severity: 1,
            event_type: "11B01".into(),
            title: "台风红色预警 <演练>".into(),
            text: "请立即转移 & 避险".into(),
            areas: vec!["331098001001".into(), "331098001002".into()],
            start: now,
            end: now + jiff::SignedDuration::from_hours(6),
            audio: Some(Auxiliary::of("a.mp3", b"abc")),
        };
        let doc = ebm_document(&ep(), &ebd_id(&ep().src, 1), &m, now);
        let n = parse(&doc).unwrap();
        assert_eq!(n.at("EBM/MsgContent/MsgTitle"), "台风红色预警 <演练>");
        assert_eq!(n.at("EBM/MsgContent/MsgDesc"), "请立即转移 & 避险");
        assert_eq!(n.at("EBM/MsgBasicInfo/SenderName"), "东溟县防汛办 & <test>");
        assert_eq!(n.at("EBDTime"), "2019-08-09 21:00:00");
        // SM3("abc"), GB/T 32905's own example.
        assert_eq!(
            n.at("EBM/MsgContent/Auxiliary/Digest"),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        let tar = package(
            &ebd_id(&ep().src, 1),
            &doc,
            &NoSigner,
            now,
            &[("a.mp3", b"abc")],
        )
        .unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&tar[..]).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            names,
            vec![format!("EBDB_{}.xml", ebd_id(&ep().src, 1)), "a.mp3".into()]
        );
    }

    #[test]
    fn doctype_and_foreign_answers_are_refused() {
        assert!(parse(b"<!DOCTYPE x [<!ENTITY a 'b'>]><EBD>&a;</EBD>").is_err());
        assert!(parse(b"<EBD><x></EBD>").is_err());
        let doc = envelope(
            &Endpoint {
                src: "999".into(),
                ..ep()
            },
            "1",
            "EBDResponse",
            Timestamp::UNIX_EPOCH,
            "",
        );
        let tar = package("1", &doc, &NoSigner, Timestamp::UNIX_EPOCH, &[]).unwrap();
        let e = read_reply(&tar, &ep()).unwrap_err().to_string();
        assert!(e.contains("not the platform"), "{e}");
    }
}
