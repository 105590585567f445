//! CAP index feeds: Atom (RFC 4287) and RSS 2.0 documents that list alerts, by link or inline.
//!
//! Publishers announce alerts through such indexes (NWS, Environment Canada via NAAD, USGS,
//! national platforms). stormbell reads them to find alerts (feeds stage) and checks them the
//! way Google's CAP validator does (every entry needs an id, a title and a CAP link or inline
//! CAP). It also writes its own Atom index (publishing stage) so others can poll it.

use super::problem::Problems;
use super::xml::{Doc, NodeId, Ns, is_xml_ws};

/// Which kind of index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IndexFormat {
    /// Atom 1.0.
    Atom,
    /// RSS 2.0.
    Rss,
}

/// An index feed as read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Index {
    /// Atom or RSS.
    pub format: IndexFormat,
    /// Feed id (Atom) or channel link (RSS).
    pub id: Option<String>,
    /// Feed title.
    pub title: Option<String>,
    /// The entries, in document order.
    pub entries: Vec<Entry>,
}

/// One entry (Atom) or item (RSS).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Atom `id` or RSS `guid`.
    pub id: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Atom `updated` or RSS `pubDate`, as written.
    pub updated: Option<String>,
    /// The link to the CAP document, if any.
    pub link: Option<String>,
    /// An inline `<alert>` element (CAP or the national dialect), if any.
    #[serde(skip)]
    pub inline_alert: Option<NodeId>,
    /// Element path of the entry, e.g. `feed/entry[2]`.
    pub path: String,
    /// Line of the entry.
    pub line: u32,
}

const ATOM_FEED_CHILDREN: &[&str] = &[
    "author",
    "category",
    "contributor",
    "generator",
    "icon",
    "id",
    "link",
    "logo",
    "rights",
    "subtitle",
    "title",
    "updated",
    "entry",
];
const ATOM_ENTRY_CHILDREN: &[&str] = &[
    "author",
    "category",
    "content",
    "contributor",
    "id",
    "link",
    "published",
    "rights",
    "source",
    "summary",
    "title",
    "updated",
];

fn text(doc: &Doc<'_>, id: NodeId) -> String {
    doc.node(id).text.trim_matches(is_xml_ws).to_string()
}

fn is_alert(doc: &Doc<'_>, id: NodeId) -> bool {
    let n = doc.node(id);
    n.local == "alert"
        && (super::schema::CapVersion::of_ns(n.ns).is_some() || super::cn::looks_like_cn(doc, id))
}

/// Find a CAP `<alert>` among the descendants of `id` (used for Atom `<content>`).
fn find_alert(doc: &Doc<'_>, id: NodeId) -> Option<NodeId> {
    for c in doc.children(id) {
        if is_alert(doc, c) {
            return Some(c);
        }
        if let Some(found) = find_alert(doc, c) {
            return Some(found);
        }
    }
    None
}

/// Read and check an Atom feed whose root is `root`.
pub fn read_atom(doc: &Doc<'_>, root: NodeId, out: &mut Problems) -> Index {
    let root_name = doc.node(root).local;
    let mut index = Index {
        format: IndexFormat::Atom,
        id: None,
        title: None,
        entries: Vec::new(),
    };
    let mut has_updated = false;
    let mut has_author = false;
    let mut entry_no = 0;
    for c in doc.children(root) {
        let n = doc.node(c);
        if n.ns != Ns::Atom {
            continue; // foreign markup is allowed in Atom
        }
        match n.local {
            "id" => index.id = Some(text(doc, c)),
            "title" => index.title = Some(text(doc, c)),
            "updated" => {
                has_updated = true;
                check_rfc3339(doc, c, &format!("{root_name}/updated"), out);
            }
            "author" => has_author = true,
            "entry" => {
                entry_no += 1;
                index.entries.push(read_atom_entry(
                    doc,
                    c,
                    &format!("{root_name}/entry[{entry_no}]"),
                    out,
                ));
            }
            other if ATOM_FEED_CHILDREN.contains(&other) => {}
            other => out.error(
                "atom.unknown",
                Some(doc.line(c)),
                root_name,
                format!("<{other}> is not an Atom feed element"),
            ),
        }
    }
    if index.id.as_deref().is_none_or(str::is_empty) {
        out.error(
            "atom.id",
            Some(doc.line(root)),
            root_name,
            "the feed has no <id> (Atom requires one)",
        );
    }
    if index.title.is_none() {
        out.error(
            "atom.title",
            Some(doc.line(root)),
            root_name,
            "the feed has no <title> (Atom requires one)",
        );
    }
    if !has_updated {
        out.error(
            "atom.updated",
            Some(doc.line(root)),
            root_name,
            "the feed has no <updated> (Atom requires one)",
        );
    }
    if !has_author && index.entries.iter().any(|_| true) {
        // RFC 4287: a feed without <author> needs one in every entry; entries are checked below.
        for c in doc.children(root).filter(|&c| doc.node(c).local == "entry") {
            if !doc
                .children(c)
                .any(|k| doc.node(k).ns == Ns::Atom && doc.node(k).local == "author")
            {
                out.warn(
                    "atom.author",
                    Some(doc.line(c)),
                    root_name,
                    "neither the feed nor this entry names an <author>",
                );
                break;
            }
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for e in &index.entries {
        if let Some(id) = e.id.as_deref() {
            if seen.contains(&id) {
                out.warn(
                    "atom.duplicate-id",
                    Some(e.line),
                    &e.path,
                    format!("entry id `{id}` appears twice"),
                );
            }
            seen.push(id);
        }
    }
    index
}

fn read_atom_entry(doc: &Doc<'_>, id: NodeId, path: &str, out: &mut Problems) -> Entry {
    let mut entry = Entry {
        id: None,
        title: None,
        updated: None,
        link: None,
        inline_alert: None,
        path: path.to_string(),
        line: doc.line(id),
    };
    let mut links: Vec<(Option<String>, Option<String>, String)> = Vec::new();
    let mut content: Option<NodeId> = None;
    for c in doc.children(id) {
        let n = doc.node(c);
        if n.ns != Ns::Atom {
            continue;
        }
        match n.local {
            "id" => entry.id = Some(text(doc, c)),
            "title" => entry.title = Some(text(doc, c)),
            "updated" => {
                entry.updated = Some(text(doc, c));
                check_rfc3339(doc, c, &format!("{path}/updated"), out);
            }
            "link" => {
                if let Some(href) = doc.attr(c, "href") {
                    links.push((doc.attr(c, "rel"), doc.attr(c, "type"), href));
                } else {
                    out.error("atom.link", Some(doc.line(c)), path, "<link> without href");
                }
            }
            "content" => content = Some(c),
            other if ATOM_ENTRY_CHILDREN.contains(&other) => {}
            other => out.error(
                "atom.unknown",
                Some(doc.line(c)),
                path,
                format!("<{other}> is not an Atom entry element"),
            ),
        }
    }
    // Prefer an explicit CAP type, then alternate / untyped links.
    let cap_type = |t: &Option<String>| {
        t.as_deref().is_some_and(|t| {
            t.contains("cap+xml") || t.contains("application/xml") || t == "text/xml"
        })
    };
    entry.link = links
        .iter()
        .find(|(_, t, _)| cap_type(t))
        .or_else(|| {
            links.iter().find(|(rel, t, _)| {
                rel.as_deref().is_none_or(|r| r == "alternate")
                    && !t.as_deref().is_some_and(|t| t.starts_with("text/html"))
            })
        })
        .map(|(_, _, h)| h.clone());
    if let Some(c) = content {
        entry.inline_alert = find_alert(doc, c);
    }
    if entry.id.as_deref().is_none_or(str::is_empty) {
        out.error(
            "atom.entry-id",
            Some(entry.line),
            path,
            "the entry has no <id> (required)",
        );
    }
    if entry.title.is_none() {
        out.error(
            "atom.entry-title",
            Some(entry.line),
            path,
            "the entry has no <title> (required)",
        );
    }
    if entry.updated.is_none() {
        out.error(
            "atom.entry-updated",
            Some(entry.line),
            path,
            "the entry has no <updated> (Atom requires one)",
        );
    }
    if entry.link.is_none() && entry.inline_alert.is_none() {
        out.error(
            "atom.cap-link",
            Some(entry.line),
            path,
            "the entry has neither a link to a CAP document nor an inline CAP alert",
        );
    }
    entry
}

fn check_rfc3339(doc: &Doc<'_>, id: NodeId, path: &str, out: &mut Problems) {
    let t = text(doc, id);
    let ok = match super::model::CapDateTime::parse_lenient(&t) {
        Ok((_, notes)) => !notes.iter().any(|n| n.starts_with("no UTC")),
        Err(_) => false,
    };
    if !ok {
        out.error(
            "atom.date",
            Some(doc.line(id)),
            path,
            format!("`{t}` is not an RFC 3339 date-time"),
        );
    }
}

/// Read and check an RSS 2.0 feed whose root is `root` (`<rss>`).
pub fn read_rss(doc: &Doc<'_>, root: NodeId, out: &mut Problems) -> Index {
    let mut index = Index {
        format: IndexFormat::Rss,
        id: None,
        title: None,
        entries: Vec::new(),
    };
    match doc.attr(root, "version").as_deref() {
        Some("2.0") => {}
        Some(v) => out.warn(
            "rss.version",
            Some(doc.line(root)),
            "rss",
            format!("RSS version `{v}`, not 2.0"),
        ),
        None => out.warn(
            "rss.version",
            Some(doc.line(root)),
            "rss",
            "<rss> has no version attribute",
        ),
    }
    let Some(channel) = doc.children(root).find(|&c| doc.node(c).local == "channel") else {
        out.error("rss.channel", Some(doc.line(root)), "rss", "no <channel>");
        return index;
    };
    let has = |name: &str| {
        doc.children(channel)
            .find(|&c| doc.node(c).local == name && doc.node(c).ns == Ns::None)
    };
    index.title = has("title").map(|c| text(doc, c));
    index.id = has("link").map(|c| text(doc, c));
    for required in ["title", "link", "description"] {
        if has(required).is_none() {
            out.error(
                "rss.channel",
                Some(doc.line(channel)),
                "rss/channel",
                format!("the channel has no <{required}> (RSS 2.0 requires it)"),
            );
        }
    }
    let mut item_no = 0;
    for item in doc
        .children(channel)
        .filter(|&c| doc.node(c).local == "item" && doc.node(c).ns == Ns::None)
    {
        item_no += 1;
        let path = format!("rss/channel/item[{item_no}]");
        let line = doc.line(item);
        let get = |name: &str| {
            doc.children(item)
                .find(|&c| doc.node(c).local == name && doc.node(c).ns == Ns::None)
                .map(|c| text(doc, c))
        };
        let entry = Entry {
            id: get("guid"),
            title: get("title"),
            updated: get("pubDate"),
            link: get("link").filter(|l| !l.is_empty()),
            inline_alert: doc.children(item).find(|&c| is_alert(doc, c)),
            path: path.clone(),
            line,
        };
        if entry.title.is_none() && get("description").is_none() {
            out.error(
                "rss.item-title",
                Some(line),
                &path,
                "the item has neither <title> nor <description> (RSS 2.0 requires one)",
            );
        }
        if entry.link.is_none() && entry.inline_alert.is_none() {
            out.error(
                "rss.cap-link",
                Some(line),
                &path,
                "the item has no <link> to a CAP document",
            );
        }
        if entry.id.is_none() {
            out.warn(
                "rss.guid",
                Some(line),
                &path,
                "the item has no <guid>; recommended so that readers can tell items apart",
            );
        }
        if entry.updated.is_none() {
            out.warn(
                "rss.pubdate",
                Some(line),
                &path,
                "the item has no <pubDate>",
            );
        }
        index.entries.push(entry);
    }
    index
}
