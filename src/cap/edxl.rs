//! EDXL-DE 1.0 envelopes (OASIS Emergency Data Exchange Language, Distribution Element).
//!
//! Some publishers (e.g. NSW RFS) distribute CAP alerts inside EDXL-DE envelopes. stormbell
//! checks the envelope's required elements and hands every embedded alert to the CAP checks.

use super::problem::Problems;
use super::xml::{Doc, NodeId, Ns, is_xml_ws};

const STATUS: &[&str] = &["Actual", "Exercise", "System", "Test"];
const TYPES: &[&str] = &[
    "Report",
    "Update",
    "Cancel",
    "Request",
    "Response",
    "Dispatch",
    "Ack",
    "Error",
    "SensorConfiguration",
    "SensorControl",
    "SensorStatus",
    "SensorDetection",
];

/// Check an `<EDXLDistribution>` and return the `<alert>` elements it carries, with paths.
pub fn read_edxl(doc: &Doc<'_>, root: NodeId, out: &mut Problems) -> Vec<(NodeId, String)> {
    let rp = "EDXLDistribution";
    let mut found: Vec<(NodeId, String)> = Vec::new();
    let child = |name: &str| {
        doc.children(root)
            .find(|&c| doc.node(c).ns == Ns::EdxlDe && doc.node(c).local == name)
    };
    for required in [
        "distributionID",
        "senderID",
        "dateTimeSent",
        "distributionStatus",
        "distributionType",
        "combinedConfidentiality",
    ] {
        match child(required) {
            None => out.error(
                "edxl.missing",
                Some(doc.line(root)),
                rp,
                format!("required <{required}> is missing"),
            ),
            Some(c) => {
                let v = doc.node(c).text.trim_matches(is_xml_ws).to_string();
                let bad = match required {
                    "distributionStatus" => (!STATUS.contains(&v.as_str()))
                        .then(|| format!("`{v}` is not one of {}", STATUS.join(", "))),
                    "distributionType" => (!TYPES.contains(&v.as_str()))
                        .then(|| format!("`{v}` is not one of {}", TYPES.join(", "))),
                    "dateTimeSent" => (!super::schema::is_xs_date_time(&v))
                        .then(|| format!("`{v}` is not an xs:dateTime")),
                    _ => v.is_empty().then(|| format!("<{required}> is empty")),
                };
                if let Some(msg) = bad {
                    out.error(
                        "edxl.value",
                        Some(doc.line(c)),
                        format!("{rp}/{required}"),
                        msg,
                    );
                }
            }
        }
    }
    let mut co = 0;
    for c in doc.children(root) {
        let n = doc.node(c);
        if n.ns != Ns::EdxlDe || n.local != "contentObject" {
            continue;
        }
        co += 1;
        let cpath = format!("{rp}/contentObject[{co}]");
        let xml = doc
            .children(c)
            .find(|&k| doc.node(k).ns == Ns::EdxlDe && doc.node(k).local == "xmlContent");
        let non_xml = doc
            .children(c)
            .any(|k| doc.node(k).ns == Ns::EdxlDe && doc.node(k).local == "nonXMLContent");
        match (xml, non_xml) {
            (Some(_), true) => out.error(
                "edxl.content",
                Some(doc.line(c)),
                &cpath,
                "a contentObject holds either <xmlContent> or <nonXMLContent>, not both",
            ),
            (None, false) => out.error(
                "edxl.content",
                Some(doc.line(c)),
                &cpath,
                "a contentObject needs <xmlContent> or <nonXMLContent>",
            ),
            _ => {}
        }
        let Some(xml) = xml else { continue };
        for holder in doc.children(xml) {
            let h = doc.node(holder);
            if h.ns != Ns::EdxlDe {
                continue;
            }
            for inner in doc.children(holder) {
                let a = doc.node(inner);
                if a.local == "alert" {
                    found.push((inner, format!("{cpath}/xmlContent/{}/alert", h.local)));
                }
            }
        }
    }
    if found.is_empty() {
        out.warn(
            "edxl.empty",
            Some(doc.line(root)),
            rp,
            "the envelope carries no CAP alert",
        );
    }
    found
}
