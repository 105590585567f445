//! Writing the model as OASIS CAP 1.2 XML.
//!
//! The output follows the 1.2 schema's element order exactly, writes date-times with explicit
//! offsets, and keeps XML-DSig signatures verbatim at the end of `<alert>`. What cannot be
//! written as valid CAP 1.2 (text with characters XML forbids, a missing category) is an error,
//! never silently altered.

use std::fmt::Write as _;

use super::model::*;
use super::xml::{NS_CAP12, write_text};

/// Why an alert cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BuildError {
    /// Element path of the offending value.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Write an alert as a CAP 1.2 document (UTF-8, with an XML declaration).
pub fn build(alert: &Alert) -> Result<String, BuildError> {
    let mut w = Writer {
        // Most alerts fit; embedded audio grows the buffer once or twice.
        out: String::with_capacity(8192),
        depth: 0,
    };
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w.out.push_str("<alert xmlns=\"");
    w.out.push_str(NS_CAP12);
    w.out.push_str("\">\n");
    w.depth = 1;
    let p = "alert";
    w.leaf(p, "identifier", &alert.identifier)?;
    w.leaf(p, "sender", &alert.sender)?;
    w.leaf(p, "sent", &alert.sent.to_string())?;
    w.leaf(p, "status", alert.status.as_str())?;
    w.leaf(p, "msgType", alert.msg_type.as_str())?;
    w.opt(p, "source", &alert.source)?;
    w.leaf(p, "scope", alert.scope.as_str())?;
    w.opt(p, "restriction", &alert.restriction)?;
    w.opt(p, "addresses", &alert.addresses)?;
    for code in &alert.codes {
        w.leaf(p, "code", code)?;
    }
    w.opt(p, "note", &alert.note)?;
    if let Some(refs) = &alert.references {
        let joined = refs
            .iter()
            .map(Reference::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        w.leaf(p, "references", &joined)?;
    }
    w.opt(p, "incidents", &alert.incidents)?;
    for (i, info) in alert.infos.iter().enumerate() {
        w.info(&format!("alert/info[{}]", i + 1), info)?;
    }
    for sig in &alert.signatures {
        w.indent();
        w.out.push_str(sig.trim());
        w.out.push('\n');
    }
    w.out.push_str("</alert>\n");
    Ok(w.out)
}

struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        let _ = writeln!(self.out, "<{name}>");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
    }

    fn leaf(&mut self, path: &str, name: &str, text: &str) -> Result<(), BuildError> {
        self.indent();
        let _ = write!(self.out, "<{name}>");
        write_text(&mut self.out, text).map_err(|c| BuildError {
            path: format!("{path}/{name}"),
            message: format!("contains U+{:04X}, a character XML cannot carry", c as u32),
        })?;
        let _ = writeln!(self.out, "</{name}>");
        Ok(())
    }

    fn opt(&mut self, path: &str, name: &str, text: &Option<String>) -> Result<(), BuildError> {
        match text {
            Some(t) => self.leaf(path, name, t),
            None => Ok(()),
        }
    }

    fn pair(&mut self, path: &str, name: &str, pair: &ValuePair) -> Result<(), BuildError> {
        self.open(name);
        self.leaf(path, "valueName", &pair.value_name)?;
        self.leaf(path, "value", &pair.value)?;
        self.close(name);
        Ok(())
    }

    fn info(&mut self, p: &str, info: &Info) -> Result<(), BuildError> {
        if info.categories.is_empty() {
            return Err(BuildError {
                path: p.to_string(),
                message: "CAP 1.2 requires at least one <category>".into(),
            });
        }
        self.open("info");
        self.opt(p, "language", &info.language)?;
        for c in &info.categories {
            self.leaf(p, "category", c.as_str())?;
        }
        self.leaf(p, "event", &info.event)?;
        for r in &info.response_types {
            self.leaf(p, "responseType", r.as_str())?;
        }
        self.leaf(p, "urgency", info.urgency.as_str())?;
        self.leaf(p, "severity", info.severity.as_str())?;
        self.leaf(p, "certainty", info.certainty.as_str())?;
        self.opt(p, "audience", &info.audience)?;
        for ec in &info.event_codes {
            self.pair(p, "eventCode", ec)?;
        }
        for (name, t) in [
            ("effective", info.effective),
            ("onset", info.onset),
            ("expires", info.expires),
        ] {
            if let Some(t) = t {
                self.leaf(p, name, &t.to_string())?;
            }
        }
        self.opt(p, "senderName", &info.sender_name)?;
        self.opt(p, "headline", &info.headline)?;
        self.opt(p, "description", &info.description)?;
        self.opt(p, "instruction", &info.instruction)?;
        self.opt(p, "web", &info.web)?;
        self.opt(p, "contact", &info.contact)?;
        for param in &info.parameters {
            self.pair(p, "parameter", param)?;
        }
        for (i, r) in info.resources.iter().enumerate() {
            let rp = format!("{p}/resource[{}]", i + 1);
            self.open("resource");
            self.leaf(&rp, "resourceDesc", &r.resource_desc)?;
            self.leaf(&rp, "mimeType", &r.mime_type)?;
            if let Some(size) = r.size {
                self.leaf(&rp, "size", &size.to_string())?;
            }
            self.opt(&rp, "uri", &r.uri)?;
            self.opt(&rp, "derefUri", &r.deref_uri)?;
            self.opt(&rp, "digest", &r.digest)?;
            self.close("resource");
        }
        for (i, a) in info.areas.iter().enumerate() {
            let ap = format!("{p}/area[{}]", i + 1);
            self.open("area");
            self.leaf(&ap, "areaDesc", &a.area_desc)?;
            for poly in &a.polygons {
                finite(
                    &ap,
                    "polygon",
                    poly.points.iter().flat_map(|p| [p.lat, p.lon]),
                )?;
                self.leaf(&ap, "polygon", &poly.to_string())?;
            }
            for c in &a.circles {
                finite(&ap, "circle", [c.center.lat, c.center.lon, c.radius_km])?;
                self.leaf(&ap, "circle", &c.to_string())?;
            }
            for g in &a.geocodes {
                self.pair(&ap, "geocode", g)?;
            }
            if let Some(alt) = a.altitude {
                finite(&ap, "altitude", [alt])?;
                self.leaf(&ap, "altitude", &alt.to_string())?;
            }
            if let Some(ceil) = a.ceiling {
                finite(&ap, "ceiling", [ceil])?;
                self.leaf(&ap, "ceiling", &ceil.to_string())?;
            }
            self.close("area");
        }
        self.close("info");
        Ok(())
    }
}

/// `xs:decimal` has no exponent and no `inf`/`NaN`. Rust's `Display` for `f64` never writes an
/// exponent, so only non-finite numbers (which the reader never produces) must be refused.
fn finite(path: &str, name: &str, values: impl IntoIterator<Item = f64>) -> Result<(), BuildError> {
    if values.into_iter().all(f64::is_finite) {
        Ok(())
    } else {
        Err(BuildError {
            path: format!("{path}/{name}"),
            message: "holds a number that is not finite".into(),
        })
    }
}
