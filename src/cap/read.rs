//! Reading an OASIS `<alert>` element (CAP 1.0, 1.1 or 1.2) into the 1.2 model.
//!
//! Reading is liberal about *structure*: elements out of order, unknown elements and
//! misplaced signatures are recorded as problems (the schema check names them) and reading
//! carries on, because real publishers ship such files and a warning must not be lost over an
//! element order. Reading is strict about *values*: an unknown severity, a date that is not a
//! date, a polygon that is not coordinates cannot be represented, so the alert is not returned
//! and every reason is reported.
//!
//! This module also applies the rules of the CAP specification text that no schema can
//! express (identifier characters, `references` triplets, closed polygons, Update/Cancel
//! needing references, …) and upgrades CAP 1.0 and 1.1 values to their 1.2 form, noting each
//! upgrade.

use base64::Engine;

use super::model::*;
use super::problem::Problems;
use super::schema::CapVersion;
use super::xml::{Doc, NodeId, Ns, is_xml_ws};

/// Read the `<alert>` element `id` of `doc`. Problems go to `out`; the alert is returned when
/// every value could be represented.
pub fn read_alert(
    doc: &Doc<'_>,
    id: NodeId,
    version: CapVersion,
    path: &str,
    out: &mut Problems,
) -> Option<Alert> {
    let mut r = Reader {
        doc,
        version,
        ns: doc.node(id).ns,
        out,
        broken: false,
    };
    let alert = r.alert(id, path);
    if r.broken { None } else { alert }
}

struct Reader<'d, 'a, 'o> {
    doc: &'d Doc<'a>,
    version: CapVersion,
    ns: Ns,
    out: &'o mut Problems,
    broken: bool,
}

/// Children of one element grouped by local name, with their 1-based index among siblings of
/// the same name (for paths).
struct Kids {
    items: Vec<(&'static str, NodeId, u32)>,
}

impl Kids {
    fn first(&self, name: &str) -> Option<(NodeId, u32)> {
        self.items
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, id, i)| (*id, *i))
    }
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = (NodeId, u32)> + 's {
        self.items
            .iter()
            .filter(move |(n, _, _)| *n == name)
            .map(|(_, id, i)| (*id, *i))
    }
}

/// Names the reader understands, so `Kids` can hold `'static` names.
const NAMES: &[&str] = &[
    "identifier",
    "sender",
    "sent",
    "status",
    "msgType",
    "password",
    "source",
    "scope",
    "restriction",
    "addresses",
    "code",
    "note",
    "references",
    "incidents",
    "info",
    "language",
    "category",
    "event",
    "responseType",
    "urgency",
    "severity",
    "certainty",
    "audience",
    "eventCode",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "contact",
    "parameter",
    "resource",
    "area",
    "resourceDesc",
    "mimeType",
    "size",
    "uri",
    "derefUri",
    "digest",
    "areaDesc",
    "polygon",
    "circle",
    "geocode",
    "altitude",
    "ceiling",
    "valueName",
    "value",
];

impl Reader<'_, '_, '_> {
    fn line(&self, id: NodeId) -> Option<u32> {
        Some(self.doc.line(id))
    }

    fn kids(&self, id: NodeId) -> Kids {
        let mut items: Vec<(&'static str, NodeId, u32)> = Vec::new();
        for c in self.doc.children(id) {
            let n = self.doc.node(c);
            if n.ns != self.ns {
                continue;
            }
            if let Some(name) = NAMES.iter().find(|&&k| k == n.local) {
                let idx = items.iter().filter(|(k, _, _)| k == name).count() as u32 + 1;
                items.push((name, c, idx));
            }
        }
        Kids { items }
    }

    fn text(&self, id: NodeId) -> String {
        self.doc.node(id).text.to_string()
    }

    fn trimmed(&self, id: NodeId) -> &str {
        let t: &str = &self.doc.node(id).text;
        // Borrow from the node; lifetime tied to self.doc.
        t.trim_matches(is_xml_ws)
    }

    fn opt_text(&self, kids: &Kids, name: &str) -> Option<String> {
        kids.first(name).map(|(id, _)| self.text(id))
    }

    /// A required text element; missing ones were reported by the schema check.
    fn req_text(&mut self, kids: &Kids, name: &str) -> String {
        match kids.first(name) {
            Some((id, _)) => self.text(id),
            None => {
                self.broken = true;
                String::new()
            }
        }
    }

    fn enum_value<T: Copy>(
        &mut self,
        kids: &Kids,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let (id, _) = kids.first(name)?;
        let raw = self.trimmed(id).to_string();
        match parse(&raw) {
            Some(v) => Some(v),
            None => {
                // The schema check reported the bad value; it cannot be represented.
                self.broken = true;
                None
            }
        }
    }

    fn date_time(&mut self, id: NodeId, path: &str) -> Option<CapDateTime> {
        let raw = self.trimmed(id).to_string();
        match CapDateTime::parse_lenient(&raw) {
            Ok((value, deviations)) => {
                if self.version != CapVersion::V1_2 {
                    // The 1.2 schema pattern already reports these; 1.0 and 1.1 rely on the
                    // specification text ("alphabetic timezone designators such as Z MUST NOT
                    // be used"; the offset is required).
                    for d in deviations {
                        let fatal_for_meaning = d.starts_with("no UTC") || d.starts_with('`');
                        if fatal_for_meaning {
                            self.out.error(
                                "cap.datetime",
                                self.line(id),
                                path,
                                format!("`{raw}`: {d}; CAP requires an explicit ±hh:mm offset"),
                            );
                        } else {
                            self.out.warn(
                                "cap.datetime",
                                self.line(id),
                                path,
                                format!("`{raw}`: {d}"),
                            );
                        }
                    }
                }
                Some(value)
            }
            Err(_) => {
                self.broken = true;
                None
            }
        }
    }

    fn alert(&mut self, id: NodeId, path: &str) -> Option<Alert> {
        let kids = self.kids(id);
        let identifier = self.req_text(&kids, "identifier");
        if let Some((node, _)) = kids.first("identifier") {
            self.check_id_chars(
                node,
                &format!("{path}/identifier"),
                &identifier,
                "identifier",
            );
        }
        let sender = self.req_text(&kids, "sender");
        if let Some((node, _)) = kids.first("sender") {
            self.check_id_chars(node, &format!("{path}/sender"), &sender, "sender");
        }
        let sent = match kids.first("sent") {
            Some((n, _)) => self.date_time(n, &format!("{path}/sent")),
            None => {
                self.broken = true;
                None
            }
        };
        let status = self.enum_value(&kids, "status", Status::from_cap);
        let msg_type = self.enum_value(&kids, "msgType", MsgType::from_cap);
        if let Some((n, _)) = kids.first("password") {
            self.out.note(
                "cap.upgrade",
                self.line(n),
                format!("{path}/password"),
                "CAP 1.0 <password> has no place in CAP 1.2 and is not kept",
            );
        }
        let source = self.opt_text(&kids, "source");
        let scope = match kids.first("scope") {
            Some(_) => self.enum_value(&kids, "scope", Scope::from_cap),
            None => {
                if self.version == CapVersion::V1_0 {
                    self.out.error(
                        "cap.upgrade.scope",
                        self.line(id),
                        path,
                        "this CAP 1.0 alert has no <scope>, which CAP 1.2 requires; stormbell \
                         will not guess who may see an alert",
                    );
                }
                self.broken = true;
                None
            }
        };
        let restriction = self.opt_text(&kids, "restriction");
        let addresses = self.opt_text(&kids, "addresses");
        let codes: Vec<String> = kids.all("code").map(|(n, _)| self.text(n)).collect();
        let note = self.opt_text(&kids, "note");
        let references = kids
            .first("references")
            .map(|(n, _)| self.references(n, &format!("{path}/references")));
        let incidents = self.opt_text(&kids, "incidents");

        let mut infos = Vec::new();
        for (n, i) in kids.all("info") {
            if let Some(info) = self.info(n, &format!("{path}/info[{i}]")) {
                infos.push(info);
            }
        }
        let mut signatures = Vec::new();
        for c in self.doc.children(id) {
            let node = self.doc.node(c);
            if node.ns == Ns::Dsig && node.local == "Signature" {
                signatures.push(self.doc.raw_standalone(c));
            }
        }

        // Cross-field rules of the specification.
        let refs_empty = references.as_ref().is_none_or(|r| r.is_empty());
        if let Some(mt) = msg_type
            && mt != MsgType::Alert
            && refs_empty
        {
            self.out.error(
                "cap.references.missing",
                self.line(id),
                path,
                format!(
                    "msgType {mt} must name the message(s) it refers to in <references> \
                     (sender,identifier,sent), but {}",
                    if references.is_some() {
                        "<references> is empty"
                    } else {
                        "there is no <references>"
                    }
                ),
            );
        } else if references.as_ref().is_some_and(|r| r.is_empty())
            && let Some((n, _)) = kids.first("references")
        {
            self.out.warn(
                "cap.references.empty",
                self.line(n),
                format!("{path}/references"),
                "<references> is present but empty",
            );
        }
        match scope {
            Some(Scope::Restricted)
                if restriction.as_deref().is_none_or(|r| r.trim().is_empty()) =>
            {
                self.out.error(
                    "cap.restriction",
                    self.line(id),
                    path,
                    "scope Restricted needs a <restriction> saying who may see the alert",
                );
            }
            Some(Scope::Private) if addresses.as_deref().is_none_or(|a| a.trim().is_empty()) => {
                self.out.error(
                    "cap.addresses",
                    self.line(id),
                    path,
                    "scope Private needs <addresses> naming the recipients",
                );
            }
            _ => {}
        }
        if let Some(a) = &addresses
            && a.matches('"').count() % 2 == 1
            && let Some((n, _)) = kids.first("addresses")
        {
            self.out.error(
                "cap.addresses",
                self.line(n),
                format!("{path}/addresses"),
                "unbalanced double quote in <addresses>",
            );
        }
        if let (Some(sent), Some(info_exp)) = (sent, infos.iter().filter_map(|i| i.expires).min())
            && info_exp.timestamp() < sent.timestamp()
        {
            self.out.warn(
                "cap.expires-before-sent",
                self.line(id),
                path,
                format!("an <info> expires ({info_exp}) before the alert was sent ({sent})"),
            );
        }

        Some(Alert {
            identifier,
            sender,
            sent: sent?,
            status: status?,
            msg_type: msg_type?,
            source,
            scope: scope?,
            restriction,
            addresses,
            codes,
            note,
            references,
            incidents,
            infos,
            signatures,
        })
    }

    /// CAP: identifier and sender "MUST NOT include spaces, commas or restricted characters
    /// (< and &)".
    fn check_id_chars(&mut self, id: NodeId, path: &str, value: &str, what: &str) {
        if value.is_empty() {
            self.out.error(
                "cap.identifier",
                self.line(id),
                path,
                format!("<{what}> is empty"),
            );
            return;
        }
        if let Some(c) = value
            .chars()
            .find(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
        {
            let name = match c {
                ',' => "a comma".to_string(),
                '<' | '&' => format!("the restricted character `{c}`"),
                _ => "whitespace".to_string(),
            };
            self.out.error(
                "cap.identifier",
                self.line(id),
                path,
                format!("<{what}> `{value}` contains {name}, which CAP forbids"),
            );
        }
    }

    fn references(&mut self, id: NodeId, path: &str) -> Vec<Reference> {
        let raw = self.text(id);
        let mut refs = Vec::new();
        for item in raw.split_ascii_whitespace() {
            match Reference::parse(item) {
                Ok(r) => {
                    if refs.contains(&r) {
                        self.out.warn(
                            "cap.references.duplicate",
                            self.line(id),
                            path,
                            format!("`{item}` is listed twice"),
                        );
                    } else {
                        refs.push(r);
                    }
                }
                Err(e) => {
                    self.out
                        .error("cap.references.format", self.line(id), path, e);
                    self.broken = true;
                }
            }
        }
        refs
    }

    fn info(&mut self, id: NodeId, path: &str) -> Option<Info> {
        let kids = self.kids(id);
        let language = kids
            .first("language")
            .map(|(n, _)| self.trimmed(n).to_string());
        let mut categories = Vec::new();
        for (n, _) in kids.all("category") {
            match Category::from_cap(self.trimmed(n)) {
                Some(c) => categories.push(c),
                None => self.broken = true,
            }
        }
        if categories.is_empty() && self.version == CapVersion::V1_0 {
            self.out.note(
                "cap.upgrade",
                self.line(id),
                path,
                "CAP 1.0 <info> without <category>: read as category Other (CAP 1.2 requires one)",
            );
            categories.push(Category::Other);
        } else if categories.is_empty() {
            self.broken = true;
        }
        let event = self.req_text(&kids, "event");
        let mut response_types = Vec::new();
        for (n, _) in kids.all("responseType") {
            match ResponseType::from_cap(self.trimmed(n)) {
                Some(r) => response_types.push(r),
                None => self.broken = true,
            }
        }
        let urgency = self.enum_value(&kids, "urgency", Urgency::from_cap);
        let severity = self.enum_value(&kids, "severity", Severity::from_cap);
        let certainty = match kids.first("certainty") {
            Some((n, _))
                if self.version == CapVersion::V1_0 && self.trimmed(n) == "Very Likely" =>
            {
                self.out.note(
                    "cap.upgrade",
                    self.line(n),
                    format!("{path}/certainty"),
                    "CAP 1.0 certainty `Very Likely` is read as `Likely`, as CAP 1.1 prescribes",
                );
                Some(Certainty::Likely)
            }
            _ => self.enum_value(&kids, "certainty", Certainty::from_cap),
        };
        if urgency.is_none() || severity.is_none() || certainty.is_none() {
            self.broken = true;
        }
        let audience = self.opt_text(&kids, "audience");
        let event_codes = self.pairs(&kids, "eventCode", path);
        let effective = self.opt_time(&kids, "effective", path);
        let onset = self.opt_time(&kids, "onset", path);
        let expires = self.opt_time(&kids, "expires", path);
        let sender_name = self.opt_text(&kids, "senderName");
        let headline = self.opt_text(&kids, "headline");
        let description = self.opt_text(&kids, "description");
        let instruction = self.opt_text(&kids, "instruction");
        let web = self.opt_text(&kids, "web");
        if let (Some(w), Some((n, _))) = (&web, kids.first("web")) {
            let w = w.trim_matches(is_xml_ws);
            if !w.is_empty() && !w.contains("://") {
                self.out.warn(
                    "cap.web",
                    self.line(n),
                    format!("{path}/web"),
                    format!("`{w}` is not a full absolute URI"),
                );
            }
        }
        let contact = self.opt_text(&kids, "contact");
        let parameters = self.pairs(&kids, "parameter", path);
        let mut resources = Vec::new();
        for (n, i) in kids.all("resource") {
            if let Some(r) = self.resource(n, &format!("{path}/resource[{i}]")) {
                resources.push(r);
            }
        }
        let mut areas = Vec::new();
        for (n, i) in kids.all("area") {
            if let Some(a) = self.area(n, &format!("{path}/area[{i}]")) {
                areas.push(a);
            }
        }
        if let (Some(eff), Some(exp)) = (effective, expires)
            && exp.timestamp() < eff.timestamp()
        {
            self.out.warn(
                "cap.expires-before-effective",
                self.line(id),
                path,
                format!("expires ({exp}) is before effective ({eff})"),
            );
        }
        Some(Info {
            language,
            categories,
            event,
            response_types,
            urgency: urgency?,
            severity: severity?,
            certainty: certainty?,
            audience,
            event_codes,
            effective,
            onset,
            expires,
            sender_name,
            headline,
            description,
            instruction,
            web,
            contact,
            parameters,
            resources,
            areas,
        })
    }

    fn opt_time(&mut self, kids: &Kids, name: &str, path: &str) -> Option<CapDateTime> {
        let (n, _) = kids.first(name)?;
        self.date_time(n, &format!("{path}/{name}"))
    }

    /// eventCode, parameter and geocode: `<valueName>`/`<value>` in 1.1 and 1.2,
    /// `valueName=value` text in 1.0.
    fn pairs(&mut self, kids: &Kids, name: &str, path: &str) -> Vec<ValuePair> {
        let mut out = Vec::new();
        for (n, i) in kids.all(name) {
            let here = format!("{path}/{name}[{i}]");
            if self.version == CapVersion::V1_0 {
                let raw = self.text(n);
                match raw.split_once('=') {
                    Some((k, v)) => out.push(ValuePair::new(k.trim(), v.trim())),
                    None => {
                        self.out.warn(
                            "cap.upgrade",
                            self.line(n),
                            here,
                            format!(
                                "CAP 1.0 <{name}> `{raw}` is not `valueName=value`; kept as a \
                                 value with an empty valueName"
                            ),
                        );
                        out.push(ValuePair::new("", raw.trim()));
                    }
                }
                continue;
            }
            let inner = self.kids(n);
            let (Some((vn, _)), Some((v, _))) = (inner.first("valueName"), inner.first("value"))
            else {
                self.broken = true;
                continue;
            };
            let pair = ValuePair::new(self.text(vn), self.text(v));
            if pair.value.trim().is_empty() && name != "parameter" {
                self.out.warn(
                    "cap.empty-value",
                    self.line(v),
                    format!("{here}/value"),
                    format!("<{name}> `{}` has an empty value", pair.value_name.trim()),
                );
            }
            out.push(pair);
        }
        out
    }

    fn resource(&mut self, id: NodeId, path: &str) -> Option<Resource> {
        let kids = self.kids(id);
        let resource_desc = self.req_text(&kids, "resourceDesc");
        let mime_type = match self.opt_text(&kids, "mimeType") {
            Some(m) => m,
            None if self.version != CapVersion::V1_2 => {
                self.out.note(
                    "cap.upgrade",
                    self.line(id),
                    path,
                    format!(
                        "CAP {} resource without <mimeType>: read as application/octet-stream \
                         (CAP 1.2 requires a type)",
                        self.version.as_str()
                    ),
                );
                "application/octet-stream".to_string()
            }
            None => {
                self.broken = true;
                String::new()
            }
        };
        let size = match kids.first("size") {
            Some((n, _)) => {
                let raw = self.trimmed(n).to_string();
                match raw.strip_prefix('+').unwrap_or(&raw).parse::<u64>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        if raw.starts_with('-') {
                            self.out.error(
                                "cap.resource.size",
                                self.line(n),
                                format!("{path}/size"),
                                format!("size `{raw}` is negative"),
                            );
                        }
                        self.broken = true;
                        None
                    }
                }
            }
            None => None,
        };
        let uri = self.opt_text(&kids, "uri");
        let deref_uri = self.opt_text(&kids, "derefUri");
        if let (Some(d), Some((n, _))) = (&deref_uri, kids.first("derefUri")) {
            let compact: String = d.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            if base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .is_err()
            {
                self.out.error(
                    "cap.resource.derefuri",
                    self.line(n),
                    format!("{path}/derefUri"),
                    "<derefUri> is not valid base64",
                );
            }
        }
        let digest = self.opt_text(&kids, "digest");
        if let (Some(d), Some((n, _))) = (&digest, kids.first("digest")) {
            let d = d.trim_matches(is_xml_ws);
            if !(d.len() == 40 && d.bytes().all(|b| b.is_ascii_hexdigit())) {
                self.out.warn(
                    "cap.resource.digest",
                    self.line(n),
                    format!("{path}/digest"),
                    format!("`{d}` does not look like a SHA-1 digest (40 hex digits)"),
                );
            }
        }
        Some(Resource {
            resource_desc,
            mime_type,
            size,
            uri,
            deref_uri,
            digest,
        })
    }

    fn area(&mut self, id: NodeId, path: &str) -> Option<Area> {
        let kids = self.kids(id);
        let area_desc = self.req_text(&kids, "areaDesc");
        let mut polygons = Vec::new();
        for (n, i) in kids.all("polygon") {
            let here = format!("{path}/polygon[{i}]");
            let raw = self.text(n);
            match Polygon::parse(&raw) {
                Ok(poly) => {
                    self.check_polygon(n, &here, &poly);
                    polygons.push(poly);
                }
                Err(e) => {
                    self.out.error(
                        "cap.polygon.format",
                        self.line(n),
                        here,
                        format!("not a polygon: {e}"),
                    );
                    self.broken = true;
                }
            }
        }
        let mut circles = Vec::new();
        for (n, i) in kids.all("circle") {
            let here = format!("{path}/circle[{i}]");
            let raw = self.text(n);
            match Circle::parse(&raw) {
                Ok(c) => {
                    if !c.center.in_range() {
                        self.out.error(
                            "cap.circle.range",
                            self.line(n),
                            here.clone(),
                            format!("centre {} is not a valid latitude,longitude", c.center),
                        );
                    }
                    if c.radius_km < 0.0 {
                        self.out.error(
                            "cap.circle.radius",
                            self.line(n),
                            here,
                            format!("radius {} km is negative", c.radius_km),
                        );
                    }
                    circles.push(c);
                }
                Err(e) => {
                    self.out.error(
                        "cap.circle.format",
                        self.line(n),
                        here,
                        format!("not a circle (`lat,lon radius-km`): {e}"),
                    );
                    self.broken = true;
                }
            }
        }
        let geocodes = self.pairs(&kids, "geocode", path);
        let altitude = self.decimal(&kids, "altitude", path);
        let ceiling = self.decimal(&kids, "ceiling", path);
        if ceiling.is_some()
            && altitude.is_none()
            && let Some((n, _)) = kids.first("ceiling")
        {
            self.out.error(
                "cap.ceiling",
                self.line(n),
                format!("{path}/ceiling"),
                "<ceiling> must not be used without <altitude>",
            );
        }
        if let (Some(a), Some(c)) = (altitude, ceiling)
            && c < a
        {
            self.out.warn(
                "cap.ceiling",
                self.line(id),
                path,
                format!("ceiling {c} is below altitude {a}"),
            );
        }
        Some(Area {
            area_desc,
            polygons,
            circles,
            geocodes,
            altitude,
            ceiling,
        })
    }

    fn decimal(&mut self, kids: &Kids, name: &str, path: &str) -> Option<f64> {
        let (n, _) = kids.first(name)?;
        let raw = self.trimmed(n).to_string();
        match parse_number(&raw) {
            Some(v) => Some(v),
            None => {
                if self.version != CapVersion::V1_2 {
                    self.out.error(
                        "cap.upgrade.decimal",
                        self.line(n),
                        format!("{path}/{name}"),
                        format!("<{name}> `{raw}` is not a number; CAP 1.2 requires a decimal"),
                    );
                }
                self.broken = true;
                None
            }
        }
    }

    fn check_polygon(&mut self, id: NodeId, path: &str, poly: &Polygon) {
        let line = self.line(id);
        if poly.points.is_empty() {
            self.out.warn(
                "cap.polygon.empty",
                line,
                path,
                "empty <polygon> (it describes no area)",
            );
            return;
        }
        if let Some(p) = poly.points.iter().find(|p| !p.in_range()) {
            self.out.error(
                "cap.polygon.range",
                line,
                path,
                format!("point {p} is not a valid latitude,longitude"),
            );
        }
        if poly.points.len() < 4 {
            self.out.error(
                "cap.polygon.points",
                line,
                path,
                format!(
                    "a polygon needs at least 4 points (first = last); this one has {}",
                    poly.points.len()
                ),
            );
        } else if !poly.is_closed() {
            self.out.error(
                "cap.polygon.open",
                line,
                path,
                "the polygon is not closed: its first and last points differ",
            );
        }
    }
}
