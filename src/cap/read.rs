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

use super::model::*;
use super::problem::{ElemPath, Problems};
use super::schema::{CapVersion, EL_COUNT, El};
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
        pool: Vec::new(),
    };
    let alert = r.alert(id, &ElemPath::root(path));
    if r.broken { None } else { alert }
}

struct Reader<'d, 'a, 'o> {
    doc: &'d Doc<'a>,
    version: CapVersion,
    ns: Ns,
    out: &'o mut Problems,
    /// Set when a value cannot be represented: the alert will not be returned.
    broken: bool,
    /// Reused child lists (one is needed per element being read, at each depth).
    pool: Vec<Vec<(El, NodeId)>>,
}

/// The CAP children of one element, by kind.
struct Kids {
    first: [u32; EL_COUNT],
    list: Vec<(El, NodeId)>,
}

impl Kids {
    fn first(&self, el: El) -> Option<NodeId> {
        let n = self.first[el as usize];
        (n != u32::MAX).then_some(n)
    }

    /// Every child of a kind, with its 1-based position among its kind (for paths).
    fn all(&self, el: El) -> impl Iterator<Item = (NodeId, u32)> + '_ {
        self.list
            .iter()
            .filter(move |(e, _)| *e == el)
            .zip(1u32..)
            .map(|((_, n), i)| (*n, i))
    }
}

impl Reader<'_, '_, '_> {
    fn line(&self, id: NodeId) -> Option<u32> {
        Some(self.doc.line(id))
    }

    fn kids(&mut self, id: NodeId) -> Kids {
        let mut list = self.pool.pop().unwrap_or_default();
        list.clear();
        let mut first = [u32::MAX; EL_COUNT];
        for c in self.doc.children(id) {
            let n = self.doc.node(c);
            if n.ns != self.ns {
                continue;
            }
            let el = El::of_node(n);
            if el == El::Other {
                continue;
            }
            if first[el as usize] == u32::MAX {
                first[el as usize] = c;
            }
            list.push((el, c));
        }
        Kids { first, list }
    }

    fn done(&mut self, kids: Kids) {
        self.pool.push(kids.list);
    }

    fn text(&self, id: NodeId) -> String {
        self.doc.node(id).text.to_string()
    }

    fn trimmed(&self, id: NodeId) -> &str {
        let t: &str = &self.doc.node(id).text;
        t.trim_matches(is_xml_ws)
    }

    fn opt_text(&self, kids: &Kids, el: El) -> Option<String> {
        kids.first(el).map(|id| self.text(id))
    }

    /// A required text element; missing ones were reported by the schema check.
    fn req_text(&mut self, kids: &Kids, el: El) -> String {
        match kids.first(el) {
            Some(id) => self.text(id),
            None => {
                self.broken = true;
                String::new()
            }
        }
    }

    fn enum_value<T: Copy>(
        &mut self,
        kids: &Kids,
        el: El,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let id = kids.first(el)?;
        let v = parse(self.trimmed(id));
        if v.is_none() {
            // The schema check reported the bad value; it cannot be represented.
            self.broken = true;
        }
        v
    }

    fn date_time(&mut self, id: NodeId, path: &ElemPath<'_>) -> Option<CapDateTime> {
        let raw = self.trimmed(id);
        // The common case, a well-formed CAP 1.2 time, takes the strict fast path.
        if let Ok(t) = CapDateTime::parse_cap12(raw) {
            return Some(t);
        }
        match CapDateTime::parse_lenient(raw) {
            Ok((value, deviations)) => {
                if self.version != CapVersion::V1_2 && !deviations.is_empty() {
                    // The 1.2 schema pattern already reports these; 1.0 and 1.1 rely on the
                    // specification text ("alphabetic timezone designators such as Z MUST NOT
                    // be used"; the offset is required).
                    let raw = raw.to_string();
                    for d in deviations {
                        let wrong_offset = d.starts_with("no UTC") || d.starts_with('`');
                        if wrong_offset {
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

    fn alert(&mut self, id: NodeId, path: &ElemPath<'_>) -> Option<Alert> {
        let kids = self.kids(id);
        let identifier = self.req_text(&kids, El::Identifier);
        if let Some(node) = kids.first(El::Identifier) {
            self.check_id_chars(
                node,
                &path.child("identifier", 0),
                &identifier,
                "identifier",
            );
        }
        let sender = self.req_text(&kids, El::Sender);
        if let Some(node) = kids.first(El::Sender) {
            self.check_id_chars(node, &path.child("sender", 0), &sender, "sender");
        }
        let sent = match kids.first(El::Sent) {
            Some(n) => self.date_time(n, &path.child("sent", 0)),
            None => {
                self.broken = true;
                None
            }
        };
        let status = self.enum_value(&kids, El::Status, Status::from_cap);
        let msg_type = self.enum_value(&kids, El::MsgType, MsgType::from_cap);
        if let Some(n) = kids.first(El::Password) {
            self.out.note(
                "cap.upgrade",
                self.line(n),
                path.child("password", 0),
                "CAP 1.0 <password> has no place in CAP 1.2 and is not kept",
            );
        }
        let source = self.opt_text(&kids, El::Source);
        let scope = match kids.first(El::Scope) {
            Some(_) => self.enum_value(&kids, El::Scope, Scope::from_cap),
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
        let restriction = self.opt_text(&kids, El::Restriction);
        let addresses = self.opt_text(&kids, El::Addresses);
        let codes: Vec<String> = kids.all(El::Code).map(|(n, _)| self.text(n)).collect();
        let note = self.opt_text(&kids, El::Note);
        let references = kids
            .first(El::References)
            .map(|n| self.references(n, &path.child("references", 0)));
        let incidents = self.opt_text(&kids, El::Incidents);

        let mut infos = Vec::new();
        for (n, i) in kids.all(El::Info) {
            if let Some(info) = self.info(n, &path.child("info", i)) {
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
            && let Some(n) = kids.first(El::References)
        {
            self.out.warn(
                "cap.references.empty",
                self.line(n),
                path.child("references", 0),
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
            && let Some(n) = kids.first(El::Addresses)
        {
            self.out.error(
                "cap.addresses",
                self.line(n),
                path.child("addresses", 0),
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
        self.done(kids);

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
    fn check_id_chars(&mut self, id: NodeId, path: &ElemPath<'_>, value: &str, what: &str) {
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

    fn references(&mut self, id: NodeId, path: &ElemPath<'_>) -> Vec<Reference> {
        let doc = self.doc;
        let raw: &str = &doc.node(id).text;
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

    fn info(&mut self, id: NodeId, path: &ElemPath<'_>) -> Option<Info> {
        let kids = self.kids(id);
        let language = kids
            .first(El::Language)
            .map(|n| self.trimmed(n).to_string());
        let mut categories = Vec::new();
        for (n, _) in kids.all(El::Category) {
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
        let event = self.req_text(&kids, El::Event);
        let mut response_types = Vec::new();
        for (n, _) in kids.all(El::ResponseType) {
            match ResponseType::from_cap(self.trimmed(n)) {
                Some(r) => response_types.push(r),
                None => self.broken = true,
            }
        }
        let urgency = self.enum_value(&kids, El::Urgency, Urgency::from_cap);
        let severity = self.enum_value(&kids, El::Severity, Severity::from_cap);
        let certainty = match kids.first(El::Certainty) {
            Some(n) if self.version == CapVersion::V1_0 && self.trimmed(n) == "Very Likely" => {
                self.out.note(
                    "cap.upgrade",
                    self.line(n),
                    path.child("certainty", 0),
                    "CAP 1.0 certainty `Very Likely` is read as `Likely`, as CAP 1.1 prescribes",
                );
                Some(Certainty::Likely)
            }
            _ => self.enum_value(&kids, El::Certainty, Certainty::from_cap),
        };
        if urgency.is_none() || severity.is_none() || certainty.is_none() {
            self.broken = true;
        }
        let audience = self.opt_text(&kids, El::Audience);
        let event_codes = self.pairs(&kids, El::EventCode, path);
        let effective = self.opt_time(&kids, El::Effective, path);
        let onset = self.opt_time(&kids, El::Onset, path);
        let expires = self.opt_time(&kids, El::Expires, path);
        let sender_name = self.opt_text(&kids, El::SenderName);
        let headline = self.opt_text(&kids, El::Headline);
        let description = self.opt_text(&kids, El::Description);
        let instruction = self.opt_text(&kids, El::Instruction);
        let web = self.opt_text(&kids, El::Web);
        if let (Some(w), Some(n)) = (&web, kids.first(El::Web)) {
            let w = w.trim_matches(is_xml_ws);
            if !w.is_empty() && !w.contains("://") {
                self.out.warn(
                    "cap.web",
                    self.line(n),
                    path.child("web", 0),
                    format!("`{w}` is not a full absolute URI"),
                );
            }
        }
        let contact = self.opt_text(&kids, El::Contact);
        let parameters = self.pairs(&kids, El::Parameter, path);
        let mut resources = Vec::new();
        for (n, i) in kids.all(El::Resource) {
            if let Some(r) = self.resource(n, &path.child("resource", i)) {
                resources.push(r);
            }
        }
        let mut areas = Vec::new();
        for (n, i) in kids.all(El::Area) {
            if let Some(a) = self.area(n, &path.child("area", i)) {
                areas.push(a);
            }
        }
        self.done(kids);
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

    fn opt_time(&mut self, kids: &Kids, el: El, path: &ElemPath<'_>) -> Option<CapDateTime> {
        let n = kids.first(el)?;
        self.date_time(n, &path.child(el.as_str(), 0))
    }

    /// eventCode, parameter and geocode: `<valueName>`/`<value>` in 1.1 and 1.2,
    /// `valueName=value` text in 1.0.
    fn pairs(&mut self, kids: &Kids, el: El, path: &ElemPath<'_>) -> Vec<ValuePair> {
        let name = el.as_str();
        let mut out = Vec::new();
        for (n, i) in kids.all(el) {
            if self.version == CapVersion::V1_0 {
                let raw = self.text(n);
                match raw.split_once('=') {
                    Some((k, v)) => out.push(ValuePair::new(k.trim(), v.trim())),
                    None => {
                        self.out.warn(
                            "cap.upgrade",
                            self.line(n),
                            path.child(name, i),
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
            // Two children: no need for a child list.
            let (mut vn, mut v) = (None, None);
            for c in self.doc.children(n) {
                let node = self.doc.node(c);
                if node.ns != self.ns {
                    continue;
                }
                match El::of_node(node) {
                    El::ValueName if vn.is_none() => vn = Some(c),
                    El::Value if v.is_none() => v = Some(c),
                    _ => {}
                }
            }
            let (Some(vn), Some(v)) = (vn, v) else {
                self.broken = true;
                continue;
            };
            let pair = ValuePair::new(self.text(vn), self.text(v));
            if pair.value.trim().is_empty() && el != El::Parameter {
                self.out.warn(
                    "cap.empty-value",
                    self.line(v),
                    path.child(name, i).child("value", 0),
                    format!("<{name}> `{}` has an empty value", pair.value_name.trim()),
                );
            }
            out.push(pair);
        }
        out
    }

    fn resource(&mut self, id: NodeId, path: &ElemPath<'_>) -> Option<Resource> {
        let kids = self.kids(id);
        let resource_desc = self.req_text(&kids, El::ResourceDesc);
        let mime_type = match self.opt_text(&kids, El::MimeType) {
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
        let size = match kids.first(El::Size) {
            Some(n) => {
                let raw = self.trimmed(n);
                match raw.strip_prefix('+').unwrap_or(raw).parse::<u64>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        if raw.starts_with('-') {
                            let raw = raw.to_string();
                            self.out.error(
                                "cap.resource.size",
                                self.line(n),
                                path.child("size", 0),
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
        let uri = self.opt_text(&kids, El::Uri);
        let deref_uri = self.opt_text(&kids, El::DerefUri);
        if let (Some(d), Some(n)) = (&deref_uri, kids.first(El::DerefUri))
            && !is_base64(d)
        {
            self.out.error(
                "cap.resource.derefuri",
                self.line(n),
                path.child("derefUri", 0),
                "<derefUri> is not valid base64",
            );
        }
        let digest = self.opt_text(&kids, El::Digest);
        if let (Some(d), Some(n)) = (&digest, kids.first(El::Digest)) {
            let d = d.trim_matches(is_xml_ws);
            if !(d.len() == 40 && d.bytes().all(|b| b.is_ascii_hexdigit())) {
                self.out.warn(
                    "cap.resource.digest",
                    self.line(n),
                    path.child("digest", 0),
                    format!("`{d}` does not look like a SHA-1 digest (40 hex digits)"),
                );
            }
        }
        self.done(kids);
        Some(Resource {
            resource_desc,
            mime_type,
            size,
            uri,
            deref_uri,
            digest,
        })
    }

    fn area(&mut self, id: NodeId, path: &ElemPath<'_>) -> Option<Area> {
        let kids = self.kids(id);
        let area_desc = self.req_text(&kids, El::AreaDesc);
        let mut polygons = Vec::new();
        for (n, i) in kids.all(El::Polygon) {
            let here = path.child("polygon", i);
            match Polygon::parse(&self.doc.node(n).text) {
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
        for (n, i) in kids.all(El::Circle) {
            let here = path.child("circle", i);
            match Circle::parse(&self.doc.node(n).text) {
                Ok(c) => {
                    if !c.center.in_range() {
                        self.out.error(
                            "cap.circle.range",
                            self.line(n),
                            here,
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
        let geocodes = self.pairs(&kids, El::Geocode, path);
        let altitude = self.decimal(&kids, El::Altitude, path);
        let ceiling = self.decimal(&kids, El::Ceiling, path);
        if ceiling.is_some()
            && altitude.is_none()
            && let Some(n) = kids.first(El::Ceiling)
        {
            self.out.error(
                "cap.ceiling",
                self.line(n),
                path.child("ceiling", 0),
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
        self.done(kids);
        Some(Area {
            area_desc,
            polygons,
            circles,
            geocodes,
            altitude,
            ceiling,
        })
    }

    fn decimal(&mut self, kids: &Kids, el: El, path: &ElemPath<'_>) -> Option<f64> {
        let n = kids.first(el)?;
        let raw = self.trimmed(n);
        match parse_number(raw) {
            Some(v) => Some(v),
            None => {
                if self.version != CapVersion::V1_2 {
                    let raw = raw.to_string();
                    let name = el.as_str();
                    self.out.error(
                        "cap.upgrade.decimal",
                        self.line(n),
                        path.child(name, 0),
                        format!("<{name}> `{raw}` is not a number; CAP 1.2 requires a decimal"),
                    );
                }
                self.broken = true;
                None
            }
        }
    }

    fn check_polygon(&mut self, id: NodeId, path: &ElemPath<'_>, poly: &Polygon) {
        if poly.points.is_empty() {
            self.out.warn(
                "cap.polygon.empty",
                self.line(id),
                path,
                "empty <polygon> (it describes no area)",
            );
            return;
        }
        if let Some(p) = poly.points.iter().find(|p| !p.in_range()) {
            self.out.error(
                "cap.polygon.range",
                self.line(id),
                path,
                format!("point {p} is not a valid latitude,longitude"),
            );
        }
        if poly.points.len() < 4 {
            self.out.error(
                "cap.polygon.points",
                self.line(id),
                path,
                format!(
                    "a polygon needs at least 4 points (first = last); this one has {}",
                    poly.points.len()
                ),
            );
        } else if !poly.is_closed() {
            self.out.error(
                "cap.polygon.open",
                self.line(id),
                path,
                "the polygon is not closed: its first and last points differ",
            );
        }
    }
}

/// Byte classes for [`is_base64`]: 1 = alphabet, 2 = `=`, 3 = whitespace, 0 = anything else.
/// Odd classes may appear in the body; whitespace is counted via the second bit.
static B64_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => 1,
            b'=' => 2,
            b' ' | b'\t' | b'\r' | b'\n' => 3,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// Whether text is standard base64 (RFC 4648 alphabet, `=` padding only at the end), ignoring
/// whitespace, as `<derefUri>` may be wrapped. Checked by a branch-free scan, without decoding:
/// embedded audio can be megabytes.
pub(crate) fn is_base64(s: &str) -> bool {
    let b = s.as_bytes();
    // Trailing whitespace and padding.
    let mut end = b.len();
    let mut pad = 0usize;
    while end > 0 {
        match B64_CLASS[b[end - 1] as usize] {
            3 => {}
            2 => pad += 1,
            _ => break,
        }
        end -= 1;
    }
    if pad > 2 {
        return false;
    }
    // The body: only alphabet and whitespace.
    let mut ok = true;
    let mut ws = 0usize;
    for &c in &b[..end] {
        let k = B64_CLASS[c as usize];
        ok &= k & 1 == 1;
        ws += (k >> 1) as usize;
    }
    let data = end - ws;
    // Padding completes the last quantum: data + pad is a multiple of 4 (which also implies
    // two `=` follow two data characters and one `=` follows three).
    ok && (data + pad) % 4 == 0
}

#[cfg(test)]
mod tests {
    use super::is_base64;
    use base64::Engine;

    #[test]
    fn base64_scan_agrees_with_a_decoder() {
        let engine = base64::engine::general_purpose::STANDARD;
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let enc = engine.encode(&data);
            assert!(is_base64(&enc), "{enc}");
            let wrapped: String = enc
                .as_bytes()
                .chunks(7)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\n ");
            assert!(is_base64(&wrapped));
        }
        for bad in ["abc", "ab=c", "a===", "ab!d", "====", "abcde"] {
            assert_eq!(is_base64(bad), engine.decode(bad).is_ok(), "{bad}");
        }
    }
}
