//! The CAP XML schemas (1.0, 1.1, 1.2) as tables, and a checker that walks a document against
//! them.
//!
//! The tables are transcribed from the official OASIS XSDs (`tests/data/schema/`):
//! element order (`xs:sequence`), cardinalities, enumerations and simple types. Checking them
//! here instead of calling out to an XSD engine keeps validation in-process and fast, and lets
//! every problem carry an element path and a line. A test runs `xmllint` with the official
//! XSDs over the same corpus to keep the two in agreement.

use super::problem::{ElemPath, Problems};
use super::xml::{Doc, NodeId, Ns, is_xml_ws};

/// Which CAP version's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum CapVersion {
    /// CAP 1.0 (2004), namespace `http://www.incident.com/cap/1.0`.
    V1_0,
    /// CAP 1.1 (2005), namespace `urn:oasis:names:tc:emergency:cap:1.1`.
    V1_1,
    /// CAP 1.2 (2010), namespace `urn:oasis:names:tc:emergency:cap:1.2`.
    V1_2,
}

impl CapVersion {
    /// The version a namespace belongs to.
    pub fn of_ns(ns: Ns) -> Option<CapVersion> {
        match ns {
            Ns::Cap10 => Some(CapVersion::V1_0),
            Ns::Cap11 => Some(CapVersion::V1_1),
            Ns::Cap12 => Some(CapVersion::V1_2),
            _ => None,
        }
    }

    /// "1.0", "1.1" or "1.2".
    pub fn as_str(self) -> &'static str {
        match self {
            CapVersion::V1_0 => "1.0",
            CapVersion::V1_1 => "1.1",
            CapVersion::V1_2 => "1.2",
        }
    }

    fn alert(self) -> &'static Complex {
        match self {
            CapVersion::V1_0 => &ALERT_10,
            CapVersion::V1_1 => &ALERT_11,
            CapVersion::V1_2 => &ALERT_12,
        }
    }
}

/// Declares the CAP element vocabulary once: an enum to compare by value instead of by
/// string, and the mapping both ways.
macro_rules! elements {
    ($($variant:ident = $text:literal,)+) => {
        /// Every element name of CAP 1.0, 1.1 and 1.2.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub(crate) enum El { $($variant,)+ /** Not a CAP element name. */ Other }

        impl El {
            /// The element for a local name (a `match`, compiled to a length-and-bytes
            /// decision tree rather than a scan).
            pub(crate) fn of(local: &str) -> El {
                match local { $($text => El::$variant,)+ _ => El::Other }
            }
            /// The element for a tag given by [`El::classify`].
            pub(crate) fn from_tag(tag: u8) -> El {
                const ALL: [El; EL_COUNT] = [$(El::$variant,)+ El::Other];
                ALL.get(tag as usize).copied().unwrap_or(El::Other)
            }
            /// The element of a tree node. The tree must have been built with [`El::classify`]
            /// (debug builds check that the tag agrees with the name).
            pub(crate) fn of_node(node: &super::xml::Node<'_>) -> El {
                let el = El::from_tag(node.tag);
                debug_assert_eq!(el, El::of(node.local), "tree not classified with El::classify");
                el
            }
            /// A tree classifier: the element's number, for [`super::xml::Node::tag`].
            pub(crate) fn classify(local: &str) -> u8 {
                El::of(local) as u8
            }
            /// The element's name as written.
            pub(crate) fn as_str(self) -> &'static str {
                match self { $(El::$variant => $text,)+ El::Other => "?" }
            }
        }

        /// Number of [`El`] values, `Other` included.
        pub(crate) const EL_COUNT: usize = [$($text,)+].len() + 1;
    };
}

elements! {
    Alert = "alert",
    Identifier = "identifier",
    Sender = "sender",
    Sent = "sent",
    Status = "status",
    MsgType = "msgType",
    Password = "password",
    Source = "source",
    Scope = "scope",
    Restriction = "restriction",
    Addresses = "addresses",
    Code = "code",
    Note = "note",
    References = "references",
    Incidents = "incidents",
    Info = "info",
    Language = "language",
    Category = "category",
    Event = "event",
    ResponseType = "responseType",
    Urgency = "urgency",
    Severity = "severity",
    Certainty = "certainty",
    Audience = "audience",
    EventCode = "eventCode",
    Effective = "effective",
    Onset = "onset",
    Expires = "expires",
    SenderName = "senderName",
    Headline = "headline",
    Description = "description",
    Instruction = "instruction",
    Web = "web",
    Contact = "contact",
    Parameter = "parameter",
    Resource = "resource",
    ResourceDesc = "resourceDesc",
    MimeType = "mimeType",
    Size = "size",
    Uri = "uri",
    DerefUri = "derefUri",
    Digest = "digest",
    Area = "area",
    AreaDesc = "areaDesc",
    Polygon = "polygon",
    Circle = "circle",
    Geocode = "geocode",
    Altitude = "altitude",
    Ceiling = "ceiling",
    ValueName = "valueName",
    Value = "value",
}

/// The simple types CAP uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    /// `xs:string`: anything, whitespace kept.
    Str,
    /// An enumeration restricted from `xs:string`: the text must match exactly.
    Enum(&'static [&'static str]),
    /// `xs:dateTime` (1.0, 1.1).
    DateTime,
    /// `xs:dateTime` restricted by the 1.2 pattern `\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[-,+]\d\d:\d\d`.
    DateTime12,
    /// `xs:language`.
    Language,
    /// `xs:anyURI` (lexically almost anything; checked semantically elsewhere).
    AnyUri,
    /// `xs:integer`.
    Integer,
    /// `xs:decimal`.
    Decimal,
    /// A complex type.
    Complex(&'static Complex),
}

/// One element of a sequence.
#[derive(Debug)]
pub(crate) struct Particle {
    pub el: El,
    pub min: u32,
    pub max: u32,
    pub ty: Ty,
}

/// A complex type: a sequence of particles, optionally followed by XML-DSig elements.
#[derive(Debug)]
pub(crate) struct Complex {
    pub seq: &'static [Particle],
    /// CAP 1.2 ends `<alert>` with `<xs:any namespace="…xmldsig#" processContents="lax"/>`.
    pub dsig_tail: bool,
}

const U: u32 = u32::MAX;

const fn p(el: El, min: u32, max: u32, ty: Ty) -> Particle {
    Particle { el, min, max, ty }
}

const STATUS_10: &[&str] = &["Actual", "Exercise", "System", "Test"];
const STATUS: &[&str] = &["Actual", "Exercise", "System", "Test", "Draft"];
const MSG_TYPE: &[&str] = &["Alert", "Update", "Cancel", "Ack", "Error"];
const SCOPE: &[&str] = &["Public", "Restricted", "Private"];
const CATEGORY_10: &[&str] = &[
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "Other",
];
const CATEGORY: &[&str] = &[
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
];
const RESPONSE_11: &[&str] = &[
    "Shelter", "Evacuate", "Prepare", "Execute", "Monitor", "Assess", "None",
];
const RESPONSE_12: &[&str] = &[
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None",
];
const URGENCY: &[&str] = &["Immediate", "Expected", "Future", "Past", "Unknown"];
const SEVERITY: &[&str] = &["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
const CERTAINTY_10: &[&str] = &["Very Likely", "Likely", "Possible", "Unlikely", "Unknown"];
const CERTAINTY: &[&str] = &["Observed", "Likely", "Possible", "Unlikely", "Unknown"];

static VALUE_PAIR: Complex = Complex {
    seq: &[p(El::ValueName, 1, 1, Ty::Str), p(El::Value, 1, 1, Ty::Str)],
    dsig_tail: false,
};

// ---- CAP 1.0 -------------------------------------------------------------------------------

static RESOURCE_10: Complex = Complex {
    seq: &[
        p(El::ResourceDesc, 1, 1, Ty::Str),
        p(El::MimeType, 0, 1, Ty::Str),
        p(El::Size, 0, 1, Ty::Integer),
        p(El::Uri, 0, 1, Ty::AnyUri),
        p(El::Digest, 0, 1, Ty::Str),
    ],
    dsig_tail: false,
};

static AREA_10: Complex = Complex {
    seq: &[
        p(El::AreaDesc, 1, 1, Ty::Str),
        p(El::Polygon, 0, U, Ty::Str),
        p(El::Circle, 0, U, Ty::Str),
        p(El::Geocode, 0, U, Ty::Str),
        p(El::Altitude, 0, 1, Ty::Str),
        p(El::Ceiling, 0, 1, Ty::Str),
    ],
    dsig_tail: false,
};

static INFO_10: Complex = Complex {
    seq: &[
        p(El::Language, 0, 1, Ty::Language),
        p(El::Category, 0, U, Ty::Enum(CATEGORY_10)),
        p(El::Event, 1, 1, Ty::Str),
        p(El::Urgency, 1, 1, Ty::Enum(URGENCY)),
        p(El::Severity, 1, 1, Ty::Enum(SEVERITY)),
        p(El::Certainty, 1, 1, Ty::Enum(CERTAINTY_10)),
        p(El::Audience, 0, 1, Ty::Str),
        p(El::EventCode, 0, U, Ty::Str),
        p(El::Effective, 0, 1, Ty::DateTime),
        p(El::Onset, 0, 1, Ty::DateTime),
        p(El::Expires, 0, 1, Ty::DateTime),
        p(El::SenderName, 0, 1, Ty::Str),
        p(El::Headline, 0, 1, Ty::Str),
        p(El::Description, 0, 1, Ty::Str),
        p(El::Instruction, 0, 1, Ty::Str),
        p(El::Web, 0, 1, Ty::AnyUri),
        p(El::Contact, 0, 1, Ty::Str),
        p(El::Parameter, 0, U, Ty::Str),
        p(El::Resource, 0, U, Ty::Complex(&RESOURCE_10)),
        p(El::Area, 0, U, Ty::Complex(&AREA_10)),
    ],
    dsig_tail: false,
};

static ALERT_10: Complex = Complex {
    seq: &[
        p(El::Identifier, 1, 1, Ty::Str),
        p(El::Sender, 1, 1, Ty::Str),
        p(El::Sent, 1, 1, Ty::DateTime),
        p(El::Status, 1, 1, Ty::Enum(STATUS_10)),
        p(El::MsgType, 1, 1, Ty::Enum(MSG_TYPE)),
        p(El::Password, 0, 1, Ty::Str),
        p(El::Source, 0, 1, Ty::Str),
        p(El::Scope, 0, 1, Ty::Enum(SCOPE)),
        p(El::Restriction, 0, 1, Ty::Str),
        p(El::Addresses, 0, 1, Ty::Str),
        p(El::Code, 0, U, Ty::Str),
        p(El::Note, 0, 1, Ty::Str),
        p(El::References, 0, 1, Ty::Str),
        p(El::Incidents, 0, 1, Ty::Str),
        p(El::Info, 0, U, Ty::Complex(&INFO_10)),
    ],
    dsig_tail: false,
};

// ---- CAP 1.1 -------------------------------------------------------------------------------

static RESOURCE_11: Complex = Complex {
    seq: &[
        p(El::ResourceDesc, 1, 1, Ty::Str),
        p(El::MimeType, 0, 1, Ty::Str),
        p(El::Size, 0, 1, Ty::Integer),
        p(El::Uri, 0, 1, Ty::AnyUri),
        p(El::DerefUri, 0, 1, Ty::Str),
        p(El::Digest, 0, 1, Ty::Str),
    ],
    dsig_tail: false,
};

static AREA_11: Complex = Complex {
    seq: &[
        p(El::AreaDesc, 1, 1, Ty::Str),
        p(El::Polygon, 0, U, Ty::Str),
        p(El::Circle, 0, U, Ty::Str),
        p(El::Geocode, 0, U, Ty::Complex(&VALUE_PAIR)),
        p(El::Altitude, 0, 1, Ty::Str),
        p(El::Ceiling, 0, 1, Ty::Str),
    ],
    dsig_tail: false,
};

static INFO_11: Complex = Complex {
    seq: &[
        p(El::Language, 0, 1, Ty::Language),
        p(El::Category, 1, U, Ty::Enum(CATEGORY)),
        p(El::Event, 1, 1, Ty::Str),
        p(El::ResponseType, 0, U, Ty::Enum(RESPONSE_11)),
        p(El::Urgency, 1, 1, Ty::Enum(URGENCY)),
        p(El::Severity, 1, 1, Ty::Enum(SEVERITY)),
        p(El::Certainty, 1, 1, Ty::Enum(CERTAINTY)),
        p(El::Audience, 0, 1, Ty::Str),
        p(El::EventCode, 0, U, Ty::Complex(&VALUE_PAIR)),
        p(El::Effective, 0, 1, Ty::DateTime),
        p(El::Onset, 0, 1, Ty::DateTime),
        p(El::Expires, 0, 1, Ty::DateTime),
        p(El::SenderName, 0, 1, Ty::Str),
        p(El::Headline, 0, 1, Ty::Str),
        p(El::Description, 0, 1, Ty::Str),
        p(El::Instruction, 0, 1, Ty::Str),
        p(El::Web, 0, 1, Ty::AnyUri),
        p(El::Contact, 0, 1, Ty::Str),
        p(El::Parameter, 0, U, Ty::Complex(&VALUE_PAIR)),
        p(El::Resource, 0, U, Ty::Complex(&RESOURCE_11)),
        p(El::Area, 0, U, Ty::Complex(&AREA_11)),
    ],
    dsig_tail: false,
};

static ALERT_11: Complex = Complex {
    seq: &[
        p(El::Identifier, 1, 1, Ty::Str),
        p(El::Sender, 1, 1, Ty::Str),
        p(El::Sent, 1, 1, Ty::DateTime),
        p(El::Status, 1, 1, Ty::Enum(STATUS)),
        p(El::MsgType, 1, 1, Ty::Enum(MSG_TYPE)),
        p(El::Source, 0, 1, Ty::Str),
        p(El::Scope, 1, 1, Ty::Enum(SCOPE)),
        p(El::Restriction, 0, 1, Ty::Str),
        p(El::Addresses, 0, 1, Ty::Str),
        p(El::Code, 0, U, Ty::Str),
        p(El::Note, 0, 1, Ty::Str),
        p(El::References, 0, 1, Ty::Str),
        p(El::Incidents, 0, 1, Ty::Str),
        p(El::Info, 0, U, Ty::Complex(&INFO_11)),
    ],
    dsig_tail: false,
};

// ---- CAP 1.2 -------------------------------------------------------------------------------

static RESOURCE_12: Complex = Complex {
    seq: &[
        p(El::ResourceDesc, 1, 1, Ty::Str),
        p(El::MimeType, 1, 1, Ty::Str),
        p(El::Size, 0, 1, Ty::Integer),
        p(El::Uri, 0, 1, Ty::AnyUri),
        p(El::DerefUri, 0, 1, Ty::Str),
        p(El::Digest, 0, 1, Ty::Str),
    ],
    dsig_tail: false,
};

static AREA_12: Complex = Complex {
    seq: &[
        p(El::AreaDesc, 1, 1, Ty::Str),
        p(El::Polygon, 0, U, Ty::Str),
        p(El::Circle, 0, U, Ty::Str),
        p(El::Geocode, 0, U, Ty::Complex(&VALUE_PAIR)),
        p(El::Altitude, 0, 1, Ty::Decimal),
        p(El::Ceiling, 0, 1, Ty::Decimal),
    ],
    dsig_tail: false,
};

static INFO_12: Complex = Complex {
    seq: &[
        p(El::Language, 0, 1, Ty::Language),
        p(El::Category, 1, U, Ty::Enum(CATEGORY)),
        p(El::Event, 1, 1, Ty::Str),
        p(El::ResponseType, 0, U, Ty::Enum(RESPONSE_12)),
        p(El::Urgency, 1, 1, Ty::Enum(URGENCY)),
        p(El::Severity, 1, 1, Ty::Enum(SEVERITY)),
        p(El::Certainty, 1, 1, Ty::Enum(CERTAINTY)),
        p(El::Audience, 0, 1, Ty::Str),
        p(El::EventCode, 0, U, Ty::Complex(&VALUE_PAIR)),
        p(El::Effective, 0, 1, Ty::DateTime12),
        p(El::Onset, 0, 1, Ty::DateTime12),
        p(El::Expires, 0, 1, Ty::DateTime12),
        p(El::SenderName, 0, 1, Ty::Str),
        p(El::Headline, 0, 1, Ty::Str),
        p(El::Description, 0, 1, Ty::Str),
        p(El::Instruction, 0, 1, Ty::Str),
        p(El::Web, 0, 1, Ty::AnyUri),
        p(El::Contact, 0, 1, Ty::Str),
        p(El::Parameter, 0, U, Ty::Complex(&VALUE_PAIR)),
        p(El::Resource, 0, U, Ty::Complex(&RESOURCE_12)),
        p(El::Area, 0, U, Ty::Complex(&AREA_12)),
    ],
    dsig_tail: false,
};

static ALERT_12: Complex = Complex {
    seq: &[
        p(El::Identifier, 1, 1, Ty::Str),
        p(El::Sender, 1, 1, Ty::Str),
        p(El::Sent, 1, 1, Ty::DateTime12),
        p(El::Status, 1, 1, Ty::Enum(STATUS)),
        p(El::MsgType, 1, 1, Ty::Enum(MSG_TYPE)),
        p(El::Source, 0, 1, Ty::Str),
        p(El::Scope, 1, 1, Ty::Enum(SCOPE)),
        p(El::Restriction, 0, 1, Ty::Str),
        p(El::Addresses, 0, 1, Ty::Str),
        p(El::Code, 0, U, Ty::Str),
        p(El::Note, 0, 1, Ty::Str),
        p(El::References, 0, 1, Ty::Str),
        p(El::Incidents, 0, 1, Ty::Str),
        p(El::Info, 0, U, Ty::Complex(&INFO_12)),
    ],
    dsig_tail: true,
};

/// Check an `<alert>` element (and everything below it) against a version's schema.
///
/// `path` is the path of the alert element itself (e.g. `alert`, or
/// `EDXLDistribution/contentObject[2]/xmlContent/embeddedXMLContent/alert` inside a wrapper).
pub fn check_alert(
    doc: &Doc<'_>,
    alert: NodeId,
    version: CapVersion,
    path: &str,
    out: &mut Problems,
) {
    let cx = Checker {
        doc,
        version,
        ns: doc.node(alert).ns,
    };
    let path = ElemPath::root(path);
    cx.check_attrs(alert, &path, out);
    cx.check_complex(alert, version.alert(), &path, out);
}

struct Checker<'d, 'a> {
    doc: &'d Doc<'a>,
    version: CapVersion,
    ns: Ns,
}

impl Checker<'_, '_> {
    fn check_complex(&self, id: NodeId, ty: &Complex, path: &ElemPath<'_>, out: &mut Problems) {
        let doc = self.doc;
        let node = doc.node(id);
        if !node.text.trim_matches(is_xml_ws).is_empty() {
            out.error(
                "schema.text",
                Some(doc.line(id)),
                path,
                format!("<{}> holds elements, not text", node.local),
            );
        }
        let mut counts = [0u32; 24];
        debug_assert!(ty.seq.len() <= counts.len());
        let mut pos: usize = 0; // index into seq (seq.len() = inside the dsig tail)
        // Where each particle first appeared, to place "missing" reports.
        let mut first_at = [u32::MAX; 24];
        for child in doc.children(id) {
            let c = doc.node(child);
            if c.ns == Ns::Dsig && ty.dsig_tail {
                pos = ty.seq.len();
                continue;
            }
            if c.ns == Ns::Dsig {
                out.error(
                    "schema.signature-placement",
                    Some(doc.line(child)),
                    path,
                    if self.version == CapVersion::V1_2 {
                        format!(
                            "<{}> is not allowed here: CAP 1.2 admits XML-DSig elements only at \
                             the end of <alert>",
                            c.qname
                        )
                    } else {
                        format!(
                            "<{}> is not allowed: the CAP {} schema has no place for XML-DSig \
                             elements (CAP 1.2 added one after <info>)",
                            c.qname,
                            self.version.as_str()
                        )
                    },
                );
                continue;
            }
            if c.ns != self.ns {
                out.error(
                    "schema.foreign",
                    Some(doc.line(child)),
                    path,
                    format!(
                        "<{}> from namespace `{}` is not allowed in CAP {}",
                        c.qname,
                        doc.ns_uri(c.ns),
                        self.version.as_str()
                    ),
                );
                continue;
            }
            let el = El::of_node(c);
            let Some(idx) = ty.seq.iter().position(|p| p.el == el && el != El::Other) else {
                out.error(
                    "schema.unknown",
                    Some(doc.line(child)),
                    path,
                    format!(
                        "<{}> is not a CAP {} element here",
                        c.local,
                        self.version.as_str()
                    ),
                );
                continue;
            };
            if idx < pos {
                let after = if pos < ty.seq.len() {
                    format!("<{}>", ty.seq[pos].el.as_str())
                } else {
                    "the XML-DSig signature".to_string()
                };
                out.error(
                    "schema.order",
                    Some(doc.line(child)),
                    path,
                    format!(
                        "<{}> is out of order: the CAP {} schema puts it before {after}",
                        c.local,
                        self.version.as_str()
                    ),
                );
            } else {
                pos = idx;
            }
            counts[idx] += 1;
            if first_at[idx] == u32::MAX {
                first_at[idx] = child;
            }
            let part = &ty.seq[idx];
            let child_path =
                path.child(part.el.as_str(), if part.max > 1 { counts[idx] } else { 0 });
            if counts[idx] > part.max {
                out.error(
                    "schema.too-many",
                    Some(doc.line(child)),
                    child_path,
                    format!("<{}> may appear at most once", c.local),
                );
            }
            self.check_attrs(child, &child_path, out);
            match part.ty {
                Ty::Complex(inner) => self.check_complex(child, inner, &child_path, out),
                leaf => self.check_leaf(child, leaf, &child_path, out),
            }
        }
        for (i, part) in ty.seq.iter().enumerate() {
            if counts[i] < part.min {
                // Point at the first element that came after where the missing one belongs.
                let next = (i + 1..ty.seq.len())
                    .map(|j| first_at[j])
                    .filter(|&n| n != u32::MAX)
                    .min();
                let line = next.map(|n| doc.line(n)).unwrap_or_else(|| doc.line(id));
                let hint = match (0..i).rev().find(|&j| counts[j] > 0) {
                    Some(j) => format!(" (expected after <{}>)", ty.seq[j].el.as_str()),
                    None => " (expected first)".to_string(),
                };
                out.error(
                    "schema.missing",
                    Some(line),
                    path,
                    format!("required <{}> is missing{hint}", part.el.as_str()),
                );
            }
        }
    }

    fn check_attrs(&self, id: NodeId, path: &ElemPath<'_>, out: &mut Problems) {
        if self.doc.node(id).attrs.trim_matches(is_xml_ws).is_empty() {
            return;
        }
        for (name, _) in self.doc.attrs(id) {
            if name.starts_with("xsi:") || name.starts_with("xml:") {
                continue;
            }
            out.error(
                "schema.attribute",
                Some(self.doc.line(id)),
                path,
                format!("attribute `{name}` is not allowed on CAP elements"),
            );
        }
    }

    fn check_leaf(&self, id: NodeId, ty: Ty, path: &ElemPath<'_>, out: &mut Problems) {
        let doc = self.doc;
        let node = doc.node(id);
        if doc.has_children(id) {
            out.error(
                "schema.markup",
                Some(doc.line(id)),
                path,
                format!("<{}> must hold text only, not elements", node.local),
            );
        }
        let raw: &str = &node.text;
        let collapsed = raw.trim_matches(is_xml_ws);
        // Lines are counted only for the rare element that has a problem.
        let line = || Some(doc.line(id));
        match ty {
            Ty::Str | Ty::AnyUri | Ty::Complex(_) => {}
            Ty::Enum(values) => {
                if !values.contains(&raw) {
                    let hint = if values.contains(&collapsed) {
                        " (surrounding whitespace is not allowed)".to_string()
                    } else {
                        String::new()
                    };
                    let shown = if raw.is_empty() {
                        "empty value".to_string()
                    } else {
                        format!("`{raw}`")
                    };
                    out.error(
                        "schema.enum",
                        line(),
                        path,
                        format!("{shown} is not one of {}{hint}", values.join(", ")),
                    );
                }
            }
            Ty::DateTime => {
                if !is_xs_date_time(collapsed) {
                    out.error(
                        "schema.datetime",
                        line(),
                        path,
                        format!("`{collapsed}` is not an xs:dateTime"),
                    );
                }
            }
            Ty::DateTime12 => {
                if super::model::CapDateTime::parse_cap12(collapsed).is_err() {
                    out.error(
                        "schema.datetime",
                        line(),
                        path,
                        format!(
                            "`{collapsed}` is not a CAP 1.2 date-time \
                             (YYYY-MM-DDThh:mm:ss±hh:mm, no `Z`, no fractions)"
                        ),
                    );
                }
            }
            Ty::Language => {
                if !is_language(collapsed) {
                    out.error(
                        "schema.language",
                        line(),
                        path,
                        format!("`{collapsed}` is not a language tag (e.g. zh-CN, en-US)"),
                    );
                }
            }
            Ty::Integer => {
                let digits = collapsed.strip_prefix(['+', '-']).unwrap_or(collapsed);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    out.error(
                        "schema.integer",
                        line(),
                        path,
                        format!("`{collapsed}` is not an integer"),
                    );
                }
            }
            Ty::Decimal => {
                if super::model::parse_number(collapsed).is_none() {
                    out.error(
                        "schema.decimal",
                        line(),
                        path,
                        format!("`{collapsed}` is not a decimal number"),
                    );
                }
            }
        }
    }
}

/// `xs:language`: `[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*`.
pub(crate) fn is_language(s: &str) -> bool {
    let mut parts = s.split('-');
    let Some(first) = parts.next() else {
        return false;
    };
    (1..=8).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// `xs:dateTime` lexical space (zone optional, fractions allowed, `24:00:00` allowed).
pub(crate) fn is_xs_date_time(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    super::model::CapDateTime::parse_lenient(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::xml::{Doc, Limits};

    fn check(src: &str) -> Vec<(&'static str, String)> {
        let doc =
            Doc::parse_classified(src, &Limits::default(), "UTF-8".into(), El::classify).unwrap();
        let version = CapVersion::of_ns(doc.node(doc.root()).ns).unwrap();
        let mut out = Problems::new();
        check_alert(&doc, doc.root(), version, "alert", &mut out);
        out.as_slice()
            .iter()
            .map(|p| (p.code, p.message.clone()))
            .collect()
    }

    const HEAD: &str = "<identifier>a</identifier><sender>s</sender><sent>2020-01-01T00:00:00+08:00</sent><status>Actual</status><msgType>Alert</msgType>";

    #[test]
    fn a_minimal_alert_passes() {
        let src = format!(
            "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>{HEAD}<scope>Public</scope></alert>"
        );
        assert!(check(&src).is_empty());
    }

    #[test]
    fn missing_scope_is_named() {
        let src = format!("<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>{HEAD}</alert>");
        let p = check(&src);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "schema.missing");
        assert!(p[0].1.contains("<scope>"));
    }

    #[test]
    fn order_cardinality_and_enums_are_checked() {
        let src = format!(
            "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>{HEAD}<scope>Public</scope><note>x</note><code>c</code><note>y</note>\
             <info><category>Met</category><event>e</event><urgency> Immediate</urgency><severity>Red</severity><certainty>Likely</certainty></info></alert>"
        );
        let codes: Vec<_> = check(&src).into_iter().map(|p| p.0).collect();
        assert_eq!(
            codes,
            vec![
                "schema.order",
                "schema.too-many",
                "schema.enum",
                "schema.enum"
            ]
        );
    }

    #[test]
    fn signatures_only_at_the_end_of_a_12_alert() {
        let sig = "<Signature xmlns='http://www.w3.org/2000/09/xmldsig#'/>";
        let ok = format!(
            "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>{HEAD}<scope>Public</scope>{sig}</alert>"
        );
        assert!(check(&ok).is_empty());
        let v11 = format!(
            "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.1'>{HEAD}<scope>Public</scope>{sig}</alert>"
        );
        assert_eq!(check(&v11)[0].0, "schema.signature-placement");
        let early = format!(
            "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>{HEAD}{sig}<scope>Public</scope></alert>"
        );
        assert_eq!(check(&early)[0].0, "schema.order");
    }

    #[test]
    fn language_tags() {
        assert!(is_language("zh-CN"));
        assert!(is_language("es-419"));
        assert!(!is_language("zh_CN"));
        assert!(!is_language(""));
    }
}
