//! A small, safe XML front end for everything the CAP codec reads.
//!
//! Alerts arrive from the outside world: from feeds we do not control, in encodings we did not
//! choose, sometimes broken, sometimes hostile. This module turns bytes into a compact element
//! tree with byte positions, and refuses what must never be processed:
//!
//! * documents over a size limit (checked before anything is allocated for them);
//! * any `<!DOCTYPE>`: DTDs and external entities are refused, never resolved, so neither XXE
//!   nor entity-expansion ("billion laughs") attacks get anywhere;
//! * undefined entity references, invalid UTF-8, truncated documents, runaway nesting and
//!   absurd element counts.
//!
//! Each refusal is one [`XmlError`] with a line number. Positions are byte offsets into the
//! decoded text; lines are computed only when a problem is reported.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// The namespaces the codec knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns {
    /// No namespace.
    None,
    /// `http://www.incident.com/cap/1.0`
    Cap10,
    /// `urn:oasis:names:tc:emergency:cap:1.1`
    Cap11,
    /// `urn:oasis:names:tc:emergency:cap:1.2`
    Cap12,
    /// `http://www.w3.org/2000/09/xmldsig#`
    Dsig,
    /// `http://www.w3.org/2005/Atom`
    Atom,
    /// `urn:oasis:names:tc:emergency:EDXL:DE:1.0`
    EdxlDe,
    /// Any other namespace: index into [`Doc::other_namespaces`].
    Other(u16),
}

/// CAP 1.0 namespace URI.
pub const NS_CAP10: &str = "http://www.incident.com/cap/1.0";
/// CAP 1.1 namespace URI.
pub const NS_CAP11: &str = "urn:oasis:names:tc:emergency:cap:1.1";
/// CAP 1.2 namespace URI.
pub const NS_CAP12: &str = "urn:oasis:names:tc:emergency:cap:1.2";
/// XML-DSig namespace URI.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Atom namespace URI.
pub const NS_ATOM: &str = "http://www.w3.org/2005/Atom";
/// EDXL-DE 1.0 namespace URI.
pub const NS_EDXLDE: &str = "urn:oasis:names:tc:emergency:EDXL:DE:1.0";

/// Limits that bound the memory and time spent on one document.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest document accepted, in bytes (before decoding).
    pub max_bytes: usize,
    /// Deepest element nesting accepted.
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
    /// Most distinct namespace URIs in one document. A real alert uses a handful (CAP,
    /// XML-DSig, perhaps an envelope); tens of thousands are an attack on the parser's time.
    pub max_namespaces: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 10 * 1024 * 1024,
            max_depth: 64,
            max_elements: 200_000,
            max_namespaces: 256,
        }
    }
}

/// Why a document could not be read as XML at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct XmlError {
    /// A stable code, e.g. `xml.dtd`, `xml.too-large`, `xml.utf8`.
    pub code: &'static str,
    /// 1-based line, where known.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// Identifies one element in a [`Doc`].
pub type NodeId = u32;

const NONE: u32 = u32::MAX;

/// One element.
#[derive(Debug)]
pub struct Node<'a> {
    /// Namespace of the element.
    pub ns: Ns,
    /// Local name (without prefix).
    pub local: &'a str,
    /// The qualified name as written (with prefix, if any).
    pub qname: &'a str,
    /// Raw attribute text of the start tag (namespace declarations included).
    pub attrs: &'a str,
    /// Byte offset of the `<` of the start tag.
    pub start: u32,
    /// Byte offset just after the end tag.
    pub end: u32,
    /// Direct text content (text, CDATA and resolved references), EOLs normalised; for an
    /// element with children, only what is not whitespace between them.
    pub text: Cow<'a, str>,
    /// Depth: 0 for the root element.
    pub depth: u16,
    /// A small number the caller's classifier gave the local name (see [`Doc::parse_classified`]);
    /// lets vocabulary lookups happen once per element instead of once per check.
    pub tag: u8,
    parent: u32,
    first_child: u32,
    next_sibling: u32,
}

/// A parsed document: the decoded text and its element tree.
#[derive(Debug)]
pub struct Doc<'a> {
    /// The document text (UTF-8).
    pub src: &'a str,
    nodes: Vec<Node<'a>>,
    /// URIs of namespaces not in [`Ns`], indexed by `Ns::Other`.
    pub other_namespaces: Vec<String>,
    /// The encoding the document declared (or `UTF-8`).
    pub declared_encoding: String,
    /// For top-level XML-DSig elements: namespace bindings in scope from ancestors that the
    /// element does not redeclare, so it can be kept verbatim and still stand alone.
    inherited_ns: Vec<(NodeId, Vec<(String, String)>)>,
    line_cache: Cell<(u32, u32)>,
    last_ns: Option<(String, Ns)>,
    /// `other_namespaces` by URI, so interning a namespace costs the same however many the
    /// document declared before it.
    ns_index: HashMap<String, u16>,
}

/// Decode raw bytes to UTF-8 text, honouring a BOM or the XML declaration's `encoding`.
///
/// Returns the text and the name of the encoding that was used. Bytes that are not valid in
/// the declared encoding are an error naming the line: a mislabelled feed must be noticed,
/// not silently repaired.
pub fn decode<'b>(bytes: &'b [u8], limits: &Limits) -> Result<(Cow<'b, str>, String), XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError {
            code: "xml.too-large",
            line: None,
            message: format!(
                "document is {} bytes, over the limit of {} bytes; refused without parsing",
                bytes.len(),
                limits.max_bytes
            ),
        });
    }
    if bytes.is_empty() {
        return Err(XmlError {
            code: "xml.empty",
            line: None,
            message: "document is empty".into(),
        });
    }
    // Byte-order marks decide the encoding outright.
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest, bytes.len() - rest.len()).map(|s| (Cow::Borrowed(s), "UTF-8".into()));
    }
    for (bom, enc) in [
        (&b"\xFF\xFE"[..], encoding_rs::UTF_16LE),
        (&b"\xFE\xFF"[..], encoding_rs::UTF_16BE),
    ] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            return match enc.decode_without_bom_handling_and_without_replacement(rest) {
                Some(s) => Ok((Cow::Owned(s.into_owned()), enc.name().into())),
                None => Err(XmlError {
                    code: "xml.encoding",
                    line: None,
                    message: format!("bytes are not valid {}", enc.name()),
                }),
            };
        }
    }
    let declared = declared_encoding(bytes);
    match declared.as_deref() {
        None => utf8(bytes, 0).map(|s| (Cow::Borrowed(s), "UTF-8".into())),
        Some(label) => {
            let Some(enc) = encoding_rs::Encoding::for_label(label.as_bytes()) else {
                return Err(XmlError {
                    code: "xml.encoding",
                    line: Some(1),
                    message: format!("unknown encoding `{label}` in the XML declaration"),
                });
            };
            if enc == encoding_rs::UTF_8 {
                return utf8(bytes, 0).map(|s| (Cow::Borrowed(s), "UTF-8".into()));
            }
            if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
                return Err(XmlError {
                    code: "xml.encoding",
                    line: Some(1),
                    message: format!("declared {label} but the document has no byte-order mark"),
                });
            }
            match enc.decode_without_bom_handling_and_without_replacement(bytes) {
                Some(s) => Ok((Cow::Owned(s.into_owned()), enc.name().into())),
                None => Err(XmlError {
                    code: "xml.encoding",
                    line: None,
                    message: format!("bytes are not valid {} as declared", enc.name()),
                }),
            }
        }
    }
}

fn utf8(bytes: &[u8], shift: usize) -> Result<&str, XmlError> {
    // Fast path (SIMD); on failure, the standard library says where.
    if let Ok(s) = simdutf8::basic::from_utf8(bytes) {
        return Ok(s);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        XmlError {
            code: "xml.utf8",
            line: Some(line as u32),
            message: format!(
                "invalid UTF-8 at byte {} (declared or assumed UTF-8); is the document in another \
                 encoding, e.g. ISO-8859-1 or GBK, without saying so?",
                at + shift
            ),
        }
    })
}

/// The `encoding` pseudo-attribute of the XML declaration, if any (ASCII-compatible only).
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(256)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let value = &rest[1..];
    let close = value.find(quote)?;
    Some(value[..close].trim().to_string())
}

impl<'a> Doc<'a> {
    /// Parse decoded text into a tree, enforcing the limits.
    pub fn parse(src: &'a str, limits: &Limits) -> Result<Doc<'a>, XmlError> {
        Self::parse_with_encoding(src, limits, "UTF-8".into())
    }

    /// Parse decoded text, recording which encoding it came from.
    pub fn parse_with_encoding(
        src: &'a str,
        limits: &Limits,
        declared_encoding: String,
    ) -> Result<Doc<'a>, XmlError> {
        Self::parse_classified(src, limits, declared_encoding, |_| 0)
    }

    /// Parse decoded text, tagging each element with `classify(local name)`.
    pub fn parse_classified(
        src: &'a str,
        limits: &Limits,
        declared_encoding: String,
        classify: fn(&str) -> u8,
    ) -> Result<Doc<'a>, XmlError> {
        // Positions are u32; the configured limit keeps documents far below that.
        if src.len() > limits.max_bytes.saturating_mul(4) || src.len() >= u32::MAX as usize {
            return Err(XmlError {
                code: "xml.too-large",
                line: None,
                message: format!("document is over the limit of {} bytes", limits.max_bytes),
            });
        }
        // A byte-order mark was consumed by `decode`; another one is a character before the
        // XML declaration, which is not well-formed (and quick-xml would skip it silently,
        // shifting every position by three bytes).
        if src.starts_with('\u{FEFF}') {
            return Err(XmlError {
                code: "xml.syntax",
                line: Some(1),
                message: "a byte-order mark where the document should begin (two BOMs, or a BOM \
                          inside the text)"
                    .into(),
            });
        }
        let mut doc = Doc {
            src,
            nodes: Vec::with_capacity(src.len() / 48 + 8),
            other_namespaces: Vec::new(),
            declared_encoding,
            inherited_ns: Vec::new(),
            line_cache: Cell::new((0, 1)),
            last_ns: None,
            ns_index: HashMap::new(),
        };
        let mut reader = NsReader::from_str(src);
        {
            let cfg = reader.config_mut();
            cfg.expand_empty_elements = true;
            cfg.check_end_names = true;
            cfg.trim_text(false);
        }
        let mut stack: Vec<u32> = Vec::new();
        let mut last_child: Vec<u32> = Vec::new();
        let mut root: Option<u32> = None;
        loop {
            let pos = reader.buffer_position() as u32;
            let event = match reader.read_event() {
                Ok(x) => x,
                Err(e) => {
                    let at = reader.error_position() as u32;
                    return Err(doc.err("xml.syntax", at, format!("malformed XML: {e}")));
                }
            };
            match event {
                Event::DocType(_) => {
                    return Err(doc.err(
                        "xml.dtd",
                        pos,
                        "document type declaration (<!DOCTYPE …>) refused: DTDs and external \
                         entities are never processed (XXE and entity-expansion protection)",
                    ));
                }
                Event::Start(start) => {
                    if stack.is_empty() && root.is_some() {
                        return Err(doc.err(
                            "xml.syntax",
                            pos,
                            "a second root element; an XML document has exactly one",
                        ));
                    }
                    if stack.len() >= limits.max_depth {
                        return Err(doc.err(
                            "xml.too-deep",
                            pos,
                            format!("elements nested deeper than {} levels", limits.max_depth),
                        ));
                    }
                    if doc.nodes.len() >= limits.max_elements {
                        return Err(doc.err(
                            "xml.too-many",
                            pos,
                            format!("more than {} elements", limits.max_elements),
                        ));
                    }
                    let ns = match reader.resolver().resolve_element(start.name()).0 {
                        ResolveResult::Unbound => Ns::None,
                        ResolveResult::Bound(ns) => match doc.intern_ns(ns.0, limits) {
                            Some(ns) => ns,
                            None => {
                                return Err(doc.err(
                                    "xml.too-many-namespaces",
                                    pos,
                                    format!(
                                        "more than {} distinct namespaces",
                                        limits.max_namespaces
                                    ),
                                ));
                            }
                        },
                        ResolveResult::Unknown(prefix) => {
                            return Err(doc.err(
                                "xml.namespace",
                                pos,
                                format!("namespace prefix `{prefix}` is not declared"),
                            ));
                        }
                    };
                    let qname: &'a str = slice_of(src, start.name().0);
                    let local: &'a str = match qname.split_once(':') {
                        Some((_, l)) => l,
                        None => qname,
                    };
                    let attrs: &'a str = slice_of(src, start.attributes_raw());
                    let inherited_ns = if ns == Ns::Dsig
                        && stack
                            .last()
                            .is_none_or(|&p| doc.nodes[p as usize].ns != Ns::Dsig)
                    {
                        inherited_bindings(&reader, attrs)
                    } else {
                        Vec::new()
                    };
                    let id = doc.nodes.len() as u32;
                    let parent = stack.last().copied().unwrap_or(NONE);
                    doc.nodes.push(Node {
                        ns,
                        local,
                        qname,
                        attrs,
                        start: pos,
                        end: pos,
                        text: Cow::Borrowed(""),
                        depth: stack.len() as u16,
                        tag: classify(local),
                        parent,
                        first_child: NONE,
                        next_sibling: NONE,
                    });
                    if !inherited_ns.is_empty() {
                        doc.inherited_ns.push((id, inherited_ns));
                    }
                    if parent != NONE {
                        let lc = last_child[stack.len() - 1];
                        if lc == NONE {
                            doc.nodes[parent as usize].first_child = id;
                        } else {
                            doc.nodes[lc as usize].next_sibling = id;
                        }
                        last_child[stack.len() - 1] = id;
                    } else {
                        root = Some(id);
                    }
                    stack.push(id);
                    last_child.push(NONE);
                }
                Event::End(_) => {
                    let Some(id) = stack.pop() else {
                        return Err(doc.err("xml.syntax", pos, "end tag without a start tag"));
                    };
                    last_child.pop();
                    doc.nodes[id as usize].end = reader.buffer_position() as u32;
                }
                Event::Text(t) => {
                    let text = t.xml10_content();
                    match stack.last() {
                        Some(&id) => {
                            let node = &mut doc.nodes[id as usize];
                            if node.first_child == NONE {
                                append_text(&mut node.text, text);
                            } else if !text.trim_matches(is_xml_ws).is_empty() {
                                // Text after child elements (mixed content): kept so the
                                // schema check can report it.
                                append_text(&mut node.text, text);
                            }
                            // Indentation between child elements is not kept.
                        }
                        None => {
                            if !text.trim_matches(is_xml_ws).is_empty() {
                                return Err(doc.err(
                                    "xml.syntax",
                                    pos,
                                    "text outside the root element",
                                ));
                            }
                        }
                    }
                }
                Event::CData(c) => {
                    if let Some(&id) = stack.last() {
                        let text = c.xml10_content();
                        append_text(&mut doc.nodes[id as usize].text, text);
                    } else {
                        return Err(doc.err("xml.syntax", pos, "CDATA outside the root element"));
                    }
                }
                Event::GeneralRef(r) => {
                    let ch = match r.resolve_char_ref() {
                        Ok(Some(c)) if is_xml_char(c) => c.to_string(),
                        Ok(Some(c)) => {
                            return Err(doc.err(
                                "xml.syntax",
                                pos,
                                format!(
                                    "character reference to U+{:04X}, not allowed in XML",
                                    c as u32
                                ),
                            ));
                        }
                        Ok(None) => match &*r {
                            "lt" => "<".into(),
                            "gt" => ">".into(),
                            "amp" => "&".into(),
                            "apos" => "'".into(),
                            "quot" => "\"".into(),
                            other => {
                                return Err(doc.err(
                                    "xml.entity",
                                    pos,
                                    format!(
                                        "undefined entity `&{other};` (only the five predefined \
                                         entities and character references are allowed; DTDs \
                                         are refused)"
                                    ),
                                ));
                            }
                        },
                        Err(e) => {
                            return Err(doc.err(
                                "xml.syntax",
                                pos,
                                format!("bad character reference `&{};`: {e}", &*r),
                            ));
                        }
                    };
                    match stack.last() {
                        Some(&id) => append_text(&mut doc.nodes[id as usize].text, Cow::Owned(ch)),
                        None => {
                            return Err(doc.err(
                                "xml.syntax",
                                pos,
                                "reference outside the root element",
                            ));
                        }
                    }
                }
                // `expand_empty_elements` turns every `<x/>` into Start + End.
                Event::Empty(_) => {}
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => {
                    if let Some(&open) = stack.last() {
                        let n = &doc.nodes[open as usize];
                        let (name, start) = (n.qname, n.start);
                        let line = doc.line_of(start);
                        return Err(doc.err(
                            "xml.truncated",
                            src.len() as u32,
                            format!(
                                "document ends before <{name}> (opened on line {line}) is closed: \
                                 truncated?"
                            ),
                        ));
                    }
                    break;
                }
            }
        }
        if root.is_none() {
            return Err(XmlError {
                code: "xml.empty",
                line: None,
                message: "no root element".into(),
            });
        }
        Ok(doc)
    }

    fn err(&self, code: &'static str, at: u32, message: impl Into<String>) -> XmlError {
        XmlError {
            code,
            line: Some(self.line_of(at)),
            message: message.into(),
        }
    }

    /// The [`Ns`] of a namespace URI, or `None` when the document has already used as many
    /// distinct namespaces as `limits` allow.
    fn intern_ns(&mut self, uri: &str, limits: &Limits) -> Option<Ns> {
        // Nearly every element of a document is in the same namespace as the one before it.
        if let Some((cached, ns)) = &self.last_ns
            && cached == uri
        {
            return Some(*ns);
        }
        let ns = self.intern_ns_slow(uri, limits)?;
        self.last_ns = Some((uri.to_string(), ns));
        Some(ns)
    }

    fn intern_ns_slow(&mut self, uri: &str, limits: &Limits) -> Option<Ns> {
        Some(match uri {
            NS_CAP12 => Ns::Cap12,
            NS_CAP11 => Ns::Cap11,
            NS_CAP10 => Ns::Cap10,
            NS_DSIG => Ns::Dsig,
            NS_ATOM => Ns::Atom,
            NS_EDXLDE => Ns::EdxlDe,
            other => {
                if let Some(&i) = self.ns_index.get(other) {
                    return Some(Ns::Other(i));
                }
                let i = self.other_namespaces.len();
                if i >= limits.max_namespaces.min(usize::from(u16::MAX)) {
                    return None;
                }
                let i = i as u16;
                self.other_namespaces.push(other.to_string());
                self.ns_index.insert(other.to_string(), i);
                Ns::Other(i)
            }
        })
    }

    /// The root element (a parsed document always has one).
    pub fn root(&self) -> NodeId {
        0
    }

    /// An element by id.
    pub fn node(&self, id: NodeId) -> &Node<'a> {
        &self.nodes[id as usize]
    }

    /// The children of an element, in document order.
    pub fn children(&self, id: NodeId) -> Children<'_, 'a> {
        Children {
            doc: self,
            next: self.nodes[id as usize].first_child,
        }
    }

    /// The parent of an element, if it is not the root.
    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        let p = self.nodes[id as usize].parent;
        (p != NONE).then_some(p)
    }

    /// Whether an element has element children.
    pub fn has_children(&self, id: NodeId) -> bool {
        self.nodes[id as usize].first_child != NONE
    }

    /// The namespace URI of a node, for messages.
    pub fn ns_uri(&self, ns: Ns) -> &str {
        match ns {
            Ns::None => "",
            Ns::Cap10 => NS_CAP10,
            Ns::Cap11 => NS_CAP11,
            Ns::Cap12 => NS_CAP12,
            Ns::Dsig => NS_DSIG,
            Ns::Atom => NS_ATOM,
            Ns::EdxlDe => NS_EDXLDE,
            Ns::Other(i) => self
                .other_namespaces
                .get(i as usize)
                .map(String::as_str)
                .unwrap_or(""),
        }
    }

    /// The 1-based line of a byte offset.
    ///
    /// Lines are only needed for the few elements that have problems, and those come roughly
    /// in document order, so newlines are counted from the last answer instead of indexing the
    /// whole document up front.
    pub fn line_of(&self, offset: u32) -> u32 {
        let offset = (offset as usize).min(self.src.len());
        let (from, line) = match self.line_cache.get() {
            (o, l) if (o as usize) <= offset => (o as usize, l),
            _ => (0, 1),
        };
        let line =
            line + memchr::memchr_iter(b'\n', &self.src.as_bytes()[from..offset]).count() as u32;
        self.line_cache.set((offset as u32, line));
        line
    }

    /// The line where an element starts.
    pub fn line(&self, id: NodeId) -> u32 {
        self.line_of(self.nodes[id as usize].start)
    }

    /// The exact source text of an element, start tag to end tag.
    pub fn raw(&self, id: NodeId) -> &'a str {
        let n = &self.nodes[id as usize];
        &self.src[n.start as usize..n.end as usize]
    }

    /// An element's source text, made self-contained: namespace declarations it inherits from
    /// its ancestors are copied onto its start tag. Used to keep `ds:Signature` verbatim.
    pub fn raw_standalone(&self, id: NodeId) -> String {
        let n = &self.nodes[id as usize];
        let raw = self.raw(id);
        let Some((_, inherited)) = self.inherited_ns.iter().find(|(i, _)| *i == id) else {
            return raw.to_string();
        };
        let name_end = 1 + n.qname.len();
        let mut out = String::with_capacity(raw.len() + 64);
        out.push_str(&raw[..name_end]);
        for (prefix, uri) in inherited {
            out.push_str(" xmlns");
            if !prefix.is_empty() {
                out.push(':');
                out.push_str(prefix);
            }
            out.push_str("=\"");
            out.push_str(&escape_attr(uri));
            out.push('"');
        }
        out.push_str(&raw[name_end..]);
        out
    }

    /// The value of an attribute (by local name, no namespace), unescaped.
    pub fn attr(&self, id: NodeId, name: &str) -> Option<String> {
        let n = &self.nodes[id as usize];
        if n.attrs.is_empty() {
            return None;
        }
        let start = quick_xml::events::BytesStart::from_content(format!("x {}", n.attrs), 1);
        for a in start.attributes().flatten() {
            if a.key.0 == name {
                return a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned());
            }
        }
        None
    }

    /// Every attribute except namespace declarations: (qualified name, value).
    pub fn attrs(&self, id: NodeId) -> Vec<(String, String)> {
        let n = &self.nodes[id as usize];
        if n.attrs.trim().is_empty() {
            return Vec::new();
        }
        let start = quick_xml::events::BytesStart::from_content(format!("x {}", n.attrs), 1);
        start
            .attributes()
            .flatten()
            .filter(|a| a.key.0 != "xmlns" && !a.key.0.starts_with("xmlns:"))
            .map(|a| {
                (
                    a.key.0.to_string(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map(|v| v.into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Iterator over an element's children.
pub struct Children<'d, 'a> {
    doc: &'d Doc<'a>,
    next: u32,
}

impl Iterator for Children<'_, '_> {
    type Item = NodeId;
    fn next(&mut self) -> Option<NodeId> {
        if self.next == NONE {
            return None;
        }
        let id = self.next;
        self.next = self.doc.nodes[id as usize].next_sibling;
        Some(id)
    }
}

/// Bindings visible at the current element but declared by an ancestor.
fn inherited_bindings<R>(reader: &NsReader<R>, own_attrs: &str) -> Vec<(String, String)> {
    let resolver = reader.resolver();
    let mut out: Vec<(String, String)> = Vec::new();
    for (prefix, ns) in resolver.bindings() {
        let prefix = match prefix {
            quick_xml::name::PrefixDeclaration::Default => String::new(),
            quick_xml::name::PrefixDeclaration::Named(p) => p.to_string(),
        };
        // The default namespace of a signature is always its own (an unprefixed element that
        // inherited another default would not be an XML-DSig element).
        if prefix.is_empty() {
            continue;
        }
        let declared_here = own_attrs.contains(&format!("xmlns:{prefix}="))
            || own_attrs.contains(&format!("xmlns:{prefix} ="));
        if declared_here {
            continue;
        }
        let uri = ns.0.to_string();
        if let Some(slot) = out.iter_mut().find(|(p, _)| *p == prefix) {
            slot.1 = uri;
        } else {
            out.push((prefix, uri));
        }
    }
    out
}

fn append_text<'a>(slot: &mut Cow<'a, str>, text: Cow<'a, str>) {
    if slot.is_empty() {
        *slot = text;
    } else {
        slot.to_mut().push_str(&text);
    }
}

/// XML whitespace: space, tab, CR, LF.
pub fn is_xml_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Whether a character may appear in an XML 1.0 document.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Append `s` to `out` escaped for element content, in one pass over the bytes. Fails with
/// the first character XML 1.0 cannot carry (control characters other than tab, LF and CR;
/// U+FFFE and U+FFFF), leaving `out` with a partial write the caller discards.
pub fn write_text(out: &mut String, s: &str) -> Result<(), char> {
    let b = s.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let rep = match c {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'\r' => "&#13;",
            b'\t' | b'\n' => {
                i += 1;
                continue;
            }
            0..=0x1F => return Err(c as char),
            // U+FFFE / U+FFFF are EF BF BE / EF BF BF in UTF-8.
            0xEF if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) => {
                return Err(if b[i + 2] == 0xBE {
                    '\u{FFFE}'
                } else {
                    '\u{FFFF}'
                });
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        i += 1;
        last = i;
    }
    out.push_str(&s[last..]);
    Ok(())
}

/// Escape text for a double-quoted attribute value.
pub fn escape_attr(s: &str) -> Cow<'_, str> {
    if !s
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\r' | b'\n' | b'\t'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Re-borrow a string that quick-xml handed out from the input, so it lives as long as the
/// input. Falls back to leaking nothing: if the slice does not point into `src`, the empty
/// string is returned (never happens with the borrowed reader, but costs nothing to guard).
fn slice_of<'a>(src: &'a str, part: &str) -> &'a str {
    let base = src.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if p >= base && p + part.len() <= base + src.len() {
        &src[p - base..p - base + part.len()]
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Doc<'_>, XmlError> {
        Doc::parse(s, &Limits::default())
    }

    #[test]
    fn builds_a_tree_with_namespaces_text_and_lines() {
        let doc = parse(
            "<?xml version='1.0'?>\n<a xmlns='urn:oasis:names:tc:emergency:cap:1.2'>\n  <b>x &amp; y</b>\n  <c/>\n</a>",
        )
        .unwrap();
        let root = doc.root();
        assert_eq!(doc.node(root).ns, Ns::Cap12);
        let kids: Vec<_> = doc.children(root).collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(doc.node(kids[0]).text, "x & y");
        assert_eq!(doc.line(kids[0]), 3);
        assert_eq!(doc.line(kids[1]), 4);
        assert_eq!(doc.raw(kids[1]), "<c/>");
    }

    #[test]
    fn refuses_doctype_and_unknown_entities() {
        let e = parse("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>").unwrap_err();
        assert_eq!(e.code, "xml.dtd");
        let e = parse("<a>&x;</a>").unwrap_err();
        assert_eq!(e.code, "xml.entity");
    }

    #[test]
    fn reports_truncation_with_the_open_element() {
        let e = parse("<a>\n<b>text").unwrap_err();
        assert_eq!(e.code, "xml.truncated");
        assert!(e.message.contains("<b>"), "{}", e.message);
    }

    #[test]
    fn enforces_depth_and_size_limits() {
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(parse(&deep).unwrap_err().code, "xml.too-deep");
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            decode(b"<a>0123456789</a>", &limits).unwrap_err().code,
            "xml.too-large"
        );
    }

    #[test]
    fn distinct_namespaces_are_bounded_and_each_costs_the_same() {
        let doc = |n: usize| {
            let mut s = String::from("<a>");
            for i in 0..n {
                s.push_str(&format!("<x xmlns='urn:synthetic:{i}'/>"));
            }
            s + "</a>"
        };
        let limits = Limits::default();
        let ok = doc(limits.max_namespaces);
        let parsed = Doc::parse(&ok, &limits).unwrap();
        assert_eq!(parsed.other_namespaces.len(), limits.max_namespaces);
        // The same namespace again is the same index (found through the map, not a scan).
        let again = "<a><x xmlns='urn:synthetic:1'/><y xmlns='urn:synthetic:2'/>\
                     <z xmlns='urn:synthetic:1'/></a>";
        let parsed = Doc::parse(again, &limits).unwrap();
        let kids: Vec<Ns> = parsed.children(0).map(|c| parsed.node(c).ns).collect();
        assert_eq!(kids, vec![Ns::Other(0), Ns::Other(1), Ns::Other(0)]);
        let e = Doc::parse(&doc(limits.max_namespaces + 1), &limits).unwrap_err();
        assert_eq!(e.code, "xml.too-many-namespaces");
        assert!(e.message.contains("256"), "{}", e.message);
    }

    #[test]
    fn decodes_declared_latin1_and_rejects_mislabelled_utf8() {
        let latin1 = b"<?xml version='1.0' encoding='ISO-8859-1'?><a>Usulut\xe1n</a>";
        let (text, enc) = decode(latin1, &Limits::default()).unwrap();
        assert!(text.contains("Usulután"));
        assert_eq!(enc, "windows-1252");
        let bad = b"<?xml version='1.0' encoding='utf-8'?>\n<a>m\xe9t\xe9o</a>";
        let e = decode(bad, &Limits::default()).unwrap_err();
        assert_eq!((e.code, e.line), ("xml.utf8", Some(2)));
    }

    #[test]
    fn a_second_byte_order_mark_is_refused() {
        // Found by fuzzing: quick-xml skipped the second BOM, shifting every position.
        let (text, _) = decode(b"\xEF\xBB\xBF\xEF\xBB\xBF<a/>", &Limits::default()).unwrap();
        assert_eq!(parse(&text).unwrap_err().code, "xml.syntax");
        let (text, _) = decode(b"\xEF\xBB\xBF<a><b/></a>", &Limits::default()).unwrap();
        let doc = parse(&text).unwrap();
        let b = doc.children(doc.root()).next().unwrap();
        assert_eq!(doc.raw(b), "<b/>");
    }

    #[test]
    fn decodes_gbk_as_chinese_offices_export_it() {
        let (gbk, _, _) =
            encoding_rs::GBK.encode("<?xml version=\"1.0\" encoding=\"GBK\"?><a>台风蓝色预警</a>");
        let (text, _) = decode(&gbk, &Limits::default()).unwrap();
        let doc = parse(&text).unwrap();
        assert_eq!(doc.node(doc.root()).text, "台风蓝色预警");
    }

    #[test]
    fn write_text_escapes_and_refuses_what_xml_cannot_carry() {
        let mut out = String::new();
        write_text(&mut out, "a<b>&c\r\n\t台风").unwrap();
        assert_eq!(out, "a&lt;b&gt;&amp;c&#13;\n\t台风");
        assert_eq!(write_text(&mut String::new(), "x\u{1}y"), Err('\u{1}'));
        assert_eq!(write_text(&mut String::new(), "x\u{FFFF}"), Err('\u{FFFF}'));
        for c in ['\u{FFFD}', '\u{EFBF}', '\u{10000}'] {
            assert!(
                write_text(&mut String::new(), &c.to_string()).is_ok(),
                "{c:?}"
            );
            assert!(is_xml_char(c));
        }
    }

    #[test]
    fn signature_gets_inherited_namespaces() {
        let src = "<a xmlns:ds='http://www.w3.org/2000/09/xmldsig#'><ds:Signature><ds:X/></ds:Signature></a>";
        let doc = parse(src).unwrap();
        let sig = doc.children(doc.root()).next().unwrap();
        let raw = doc.raw_standalone(sig);
        assert!(
            raw.starts_with("<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">"),
            "{raw}"
        );
        assert!(parse(&raw).is_ok());
    }
}
