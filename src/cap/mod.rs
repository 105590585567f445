//! CAP: the Common Alerting Protocol, read, checked and written.
//!
//! Everything stormbell warns from or warns with passes through here: upstream alerts from
//! meteorological, hydrological and natural-resources services (OASIS CAP 1.0/1.1/1.2 or the
//! Chinese national dialect, alone, in Atom/RSS indexes or in EDXL-DE envelopes), and the
//! warnings stormbell itself issues.
//!
//! * [`inspect`] reads any such document and judges it: schema rules of its own CAP version,
//!   the specification's semantic rules, and optionally a profile (Google, Chinese national).
//! * [`read_alerts`] / [`read_alert`] read liberally for the pipeline: structural slips are
//!   tolerated and reported, unrepresentable values refuse the alert with every reason.
//! * [`build`] writes CAP 1.2; [`cn::build_cn`] writes the national dialect.
//!
//! Layers: [`xml`] (bytes → safe element tree) → [`schema`] (per-version structure) and
//! [`read`] / [`cn`] (tree → [`model`]) → profiles ([`google`]) → [`build`].

pub(crate) mod build;
pub mod cn;
pub(crate) mod edxl;
pub(crate) mod google;
pub(crate) mod index;
pub mod model;
pub(crate) mod problem;
pub(crate) mod read;
pub(crate) mod schema;
pub(crate) mod xml;

pub use build::{BuildError, build};
pub use model::*;
pub use problem::{Level, Problem, Problems};
pub use schema::CapVersion;
pub use xml::Limits;

use xml::{Doc, NodeId, Ns};

/// The form an alert was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Dialect {
    /// OASIS CAP of the given version.
    Oasis(CapVersion),
    /// The Chinese national warning-release dialect (GB/T 35965.1).
    Cn,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dialect::Oasis(v) => write!(f, "CAP {}", v.as_str()),
            Dialect::Cn => f.write_str("CAP (national dialect, GB/T 35965.1)"),
        }
    }
}

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DocKind {
    /// A single `<alert>`.
    Alert(Dialect),
    /// A non-standard `<alerts>` root holding several CAP alerts (seen from SMHI).
    AlertList,
    /// An EDXL-DE 1.0 envelope.
    Edxl,
    /// An Atom index feed.
    Atom,
    /// An RSS 2.0 index feed.
    Rss,
}

/// Extra rules to apply on top of the standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The OASIS standard only (schema of the alert's own version + specification rules).
    #[default]
    Oasis,
    /// Also Google Public Alerts' requirements.
    Google,
    /// Also the Chinese national dialect's requirements (can it be sent as GB/T 35965.1?).
    Cn,
}

/// How to read and judge documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Extra rules.
    pub profile: Profile,
    /// Size and shape limits.
    pub limits: Limits,
}

/// One alert found in a document.
#[derive(Debug, Clone)]
pub struct Found {
    /// Element path of the alert, e.g. `alert` or `feed/entry[1]/content/alert`.
    pub path: String,
    /// Line where it starts.
    pub line: u32,
    /// Its form.
    pub dialect: Dialect,
    /// The alert, if every value could be represented.
    pub alert: Option<Alert>,
}

/// Everything learnt about one document.
#[derive(Debug, Clone)]
pub struct Report {
    /// What it is, if it could be parsed at all.
    pub kind: Option<DocKind>,
    /// Every problem, in line order.
    pub problems: Vec<Problem>,
    /// The alerts it holds.
    pub alerts: Vec<Found>,
    /// The index entries, for Atom/RSS.
    pub index: Option<index::Index>,
}

impl Report {
    /// Valid: parsed, and no errors.
    pub fn is_valid(&self) -> bool {
        self.kind.is_some() && !self.problems.iter().any(Problem::is_error)
    }

    /// Errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }
}

/// Read and judge a document of any supported kind.
pub fn inspect(bytes: &[u8], opts: &Options) -> Report {
    let mut out = Problems::new();
    let (text, encoding) = match xml::decode(bytes, &opts.limits) {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let doc = match Doc::parse_classified(&text, &opts.limits, encoding, schema::El::classify) {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let root = doc.root();
    let r = doc.node(root);
    let mut alerts = Vec::new();
    let mut idx = None;
    let kind = match (r.ns, r.local) {
        (_, "alert") => match dialect_of(&doc, root, &mut out, "alert") {
            Some(d) => {
                alerts.push(check_alert(&doc, root, d, "alert", opts.profile, &mut out));
                Some(DocKind::Alert(d))
            }
            None => None,
        },
        (ns, "alerts") if CapVersion::of_ns(ns).is_some() => {
            let inner: Vec<NodeId> = doc.children(root).collect();
            out.error(
                "cap.root",
                Some(doc.line(root)),
                "alerts",
                format!(
                    "<alerts> is not a CAP root element (a CAP document holds exactly one \
                     <alert>); the {} alerts inside were each checked",
                    inner.len()
                ),
            );
            for (i, c) in inner.into_iter().enumerate() {
                let path = format!("alerts/alert[{}]", i + 1);
                if let Some(d) = dialect_of(&doc, c, &mut out, &path) {
                    alerts.push(check_alert(&doc, c, d, &path, opts.profile, &mut out));
                }
            }
            Some(DocKind::AlertList)
        }
        (Ns::EdxlDe, "EDXLDistribution") => {
            for (node, path) in edxl::read_edxl(&doc, root, &mut out) {
                if let Some(d) = dialect_of(&doc, node, &mut out, &path) {
                    alerts.push(check_alert(&doc, node, d, &path, opts.profile, &mut out));
                }
            }
            Some(DocKind::Edxl)
        }
        (Ns::Atom, "feed") => {
            let index = index::read_atom(&doc, root, &mut out);
            for e in &index.entries {
                if let Some(node) = e.inline_alert {
                    let path = format!("{}/content/alert", e.path);
                    if let Some(d) = dialect_of(&doc, node, &mut out, &path) {
                        alerts.push(check_alert(&doc, node, d, &path, opts.profile, &mut out));
                    }
                }
            }
            idx = Some(index);
            Some(DocKind::Atom)
        }
        (Ns::None, "rss") => {
            let index = index::read_rss(&doc, root, &mut out);
            for e in &index.entries {
                if let Some(node) = e.inline_alert {
                    let path = format!("{}/alert", e.path);
                    if let Some(d) = dialect_of(&doc, node, &mut out, &path) {
                        alerts.push(check_alert(&doc, node, d, &path, opts.profile, &mut out));
                    }
                }
            }
            idx = Some(index);
            Some(DocKind::Rss)
        }
        (ns, local) => {
            out.error(
                "doc.kind",
                Some(doc.line(root)),
                local,
                format!(
                    "not a CAP alert, Atom/RSS index or EDXL-DE envelope: root element <{local}>{}",
                    match ns {
                        Ns::None => String::new(),
                        other => format!(" in namespace `{}`", doc.ns_uri(other)),
                    }
                ),
            );
            None
        }
    };
    Report {
        kind,
        problems: out.into_sorted(),
        alerts,
        index: idx,
    }
}

fn failed(e: xml::XmlError) -> Report {
    let mut out = Problems::new();
    out.error(e.code, e.line, "", e.message);
    Report {
        kind: None,
        problems: out.into_sorted(),
        alerts: Vec::new(),
        index: None,
    }
}

/// Which dialect an `<alert>` element is in, or a problem saying why it is none.
fn dialect_of(doc: &Doc<'_>, id: NodeId, out: &mut Problems, path: &str) -> Option<Dialect> {
    let n = doc.node(id);
    if n.local != "alert" {
        out.error(
            "cap.root",
            Some(doc.line(id)),
            path,
            format!("expected a CAP <alert>, found <{}>", n.qname),
        );
        return None;
    }
    if let Some(v) = CapVersion::of_ns(n.ns) {
        return Some(Dialect::Oasis(v));
    }
    if cn::looks_like_cn(doc, id) {
        return Some(Dialect::Cn);
    }
    let ns = doc.ns_uri(n.ns);
    out.error(
        "cap.namespace",
        Some(doc.line(id)),
        path,
        if ns.is_empty() {
            format!(
                "<alert> has no namespace, and is not the national dialect either; CAP 1.2 \
                 uses `{}`",
                xml::NS_CAP12
            )
        } else {
            format!(
                "<alert> is in namespace `{ns}`, which is not CAP: CAP 1.2 uses `{}` \
                 (1.1 `{}`, 1.0 `{}`)",
                xml::NS_CAP12,
                xml::NS_CAP11,
                xml::NS_CAP10
            )
        },
    );
    None
}

fn check_alert(
    doc: &Doc<'_>,
    id: NodeId,
    dialect: Dialect,
    path: &str,
    profile: Profile,
    out: &mut Problems,
) -> Found {
    let alert = match dialect {
        Dialect::Oasis(v) => {
            schema::check_alert(doc, id, v, path, out);
            read::read_alert(doc, id, v, path, out)
        }
        Dialect::Cn => cn::read_cn(doc, id, path, out),
    };
    if let Some(a) = &alert {
        let mut extra = Problems::new();
        match profile {
            Profile::Oasis => {}
            Profile::Google => google::check(a, &mut extra),
            Profile::Cn => {
                if dialect != Dialect::Cn
                    && let Err(errs) = cn::build_cn(a)
                {
                    for e in errs {
                        extra.error("cn.profile", None, e.path, e.message);
                    }
                }
            }
        }
        // Profile checks speak in model paths (`alert/info[1]/…`); anchor them in the document.
        for mut p in Vec::<Problem>::from(extra) {
            let rel = p.path.strip_prefix("alert").unwrap_or(&p.path).to_string();
            p.line = locate(doc, id, &rel).or(Some(doc.line(id)));
            p.path = format!("{path}{rel}");
            out.push(p.level, p.code, p.line, p.path, p.message);
        }
    }
    Found {
        path: path.to_string(),
        line: doc.line(id),
        dialect,
        alert,
    }
}

/// Line of the element at a relative path like `/info[1]/area[2]/polygon[1]`, where it exists.
fn locate(doc: &Doc<'_>, from: NodeId, rel: &str) -> Option<u32> {
    let mut at = from;
    for seg in rel.split('/').filter(|s| !s.is_empty()) {
        let (name, nth) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().unwrap_or(1)),
            None => (seg, 1),
        };
        match doc
            .children(at)
            .filter(|&c| doc.node(c).local == name)
            .nth(nth.saturating_sub(1))
        {
            Some(c) => at = c,
            None => break,
        }
    }
    Some(doc.line(at))
}

/// An alert read for the pipeline, with what reading noticed.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The alert, in the CAP 1.2 model.
    pub alert: Alert,
    /// The form it arrived in.
    pub dialect: Dialect,
    /// Element path within its document.
    pub path: String,
    /// What reading noticed (schema slips, upgrades), for the log.
    pub problems: Vec<Problem>,
}

/// Why no alert could be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", summary(.problems))]
pub struct ReadError {
    /// Every problem found.
    pub problems: Vec<Problem>,
}

fn summary(problems: &[Problem]) -> String {
    let errors: Vec<&Problem> = problems.iter().filter(|p| p.is_error()).collect();
    match errors.as_slice() {
        [] => "no CAP alert found".to_string(),
        [one] => one.render("document"),
        [first, rest @ ..] => format!(
            "{} (and {} more problems)",
            first.render("document"),
            rest.len()
        ),
    }
}

/// Read every alert a document holds (an alert, a wrapper, or an index with inline alerts),
/// liberally: structural slips are reported in each [`Parsed::problems`]; an alert whose
/// values cannot be represented is an error (with all its problems), as is a document that is
/// not XML or not CAP at all.
pub fn read_alerts(bytes: &[u8], limits: &Limits) -> Result<Vec<Parsed>, ReadError> {
    let report = inspect(
        bytes,
        &Options {
            profile: Profile::Oasis,
            limits: *limits,
        },
    );
    if report.kind.is_none() {
        return Err(ReadError {
            problems: report.problems,
        });
    }
    let mut parsed = Vec::new();
    for f in &report.alerts {
        let mine: Vec<Problem> = report
            .problems
            .iter()
            .filter(|p| is_within(&p.path, &f.path))
            .cloned()
            .collect();
        match &f.alert {
            Some(a) => parsed.push(Parsed {
                alert: a.clone(),
                dialect: f.dialect,
                path: f.path.clone(),
                problems: mine,
            }),
            None => return Err(ReadError { problems: mine }),
        }
    }
    Ok(parsed)
}

/// Whether `path` is `ancestor` or below it (`alerts/alert[1]` does not contain
/// `alerts/alert[10]`): how a problem is attributed to the alert it belongs to.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Read a document that must hold exactly one alert.
pub fn read_alert(bytes: &[u8], limits: &Limits) -> Result<Parsed, ReadError> {
    let mut all = read_alerts(bytes, limits)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(ReadError {
            problems: vec![Problem {
                level: Level::Error,
                code: "doc.no-alert",
                line: None,
                path: String::new(),
                message: "the document holds no alert".into(),
            }],
        }),
        n => Err(ReadError {
            problems: vec![Problem {
                level: Level::Error,
                code: "doc.many-alerts",
                line: None,
                path: String::new(),
                message: format!("the document holds {n} alerts, not one"),
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::is_within;

    #[test]
    fn paths_contain_only_their_own_descendants() {
        assert!(is_within("alerts/alert[1]", "alerts/alert[1]"));
        assert!(is_within("alerts/alert[1]/info[2]", "alerts/alert[1]"));
        assert!(!is_within("alerts/alert[10]/info[1]", "alerts/alert[1]"));
        assert!(!is_within("alertsx", "alerts"));
    }
}
