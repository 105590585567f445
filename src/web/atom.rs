//! The CAP Atom feed stormbell publishes: the same shape stormbell polls from others (an
//! Atom index whose entries link to CAP documents), so a provincial platform, a neighbouring
//! county or a broadcaster can poll it with any CAP-aware reader.

use crate::correlate::store::StoredWarning;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

/// The text of the first `<headline>` in a CAP document, for the entry title.
fn headline(xml: &str) -> Option<&str> {
    let a = xml.find("<headline>")? + "<headline>".len();
    let b = xml[a..].find("</headline>")? + a;
    Some(&xml[a..b])
}

/// Build the feed. `base` is the public URL of the server (no trailing slash); `updated` is
/// the feed's `<updated>` (the newest entry's time, or now for an empty feed).
pub fn feed(
    title: &str,
    sender: &str,
    base: &str,
    updated: &str,
    entries: &[StoredWarning],
) -> String {
    let base = base.trim_end_matches('/');
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    out.push_str(&format!("  <id>urn:stormbell:{}:feed</id>\n", esc(sender)));
    out.push_str(&format!("  <title>{}</title>\n", esc(title)));
    out.push_str(&format!("  <updated>{}</updated>\n", esc(updated)));
    out.push_str(&format!(
        "  <link rel=\"self\" href=\"{}/cap/feed.atom\"/>\n",
        esc(base)
    ));
    out.push_str(&format!(
        "  <author><name>{}</name></author>\n",
        esc(sender)
    ));
    for w in entries {
        let title = headline(&w.cap)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{} {}", w.msg_type, w.lineage));
        out.push_str("  <entry>\n");
        out.push_str(&format!(
            "    <id>urn:oasis:names:tc:emergency:cap:1.2:{},{}</id>\n",
            esc(sender),
            esc(&w.identifier)
        ));
        // The title is already escaped XML text from the CAP document.
        out.push_str(&format!("    <title>{title}</title>\n"));
        out.push_str(&format!("    <updated>{}</updated>\n", esc(&w.sent)));
        out.push_str(&format!(
            "    <link rel=\"alternate\" type=\"application/cap+xml\" href=\"{}/cap/{}.xml\"/>\n",
            esc(base),
            esc(&w.identifier)
        ));
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    out
}
