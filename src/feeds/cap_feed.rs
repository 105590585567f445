//! CAP alert feeds: an index (Atom, RSS 2.0, or a plain list of links) and the alerts it
//! points to, in OASIS CAP 1.0–1.2 or the national dialect; also a bare alert or an EDXL-DE
//! envelope served at the feed's address.
//!
//! The index is read with the CAP codec's index reader; its inline alerts become items at once
//! and its links are followed by the poller. Each alert's key is `sender|identifier|sent`, the
//! triple CAP names a message by, so the same alert seen through two indexes or twice in one is
//! handed on once.

use crate::cap::{self, DocKind, Options, Profile};

use super::{Document, FeedError, FeedKind, Item, Link, Observation, Parsed, UpstreamAlert};

/// The CAP feed kind.
#[derive(Debug, Clone, Copy)]
pub struct CapFeed {
    /// Limits for each document.
    pub limits: cap::Limits,
}

/// How far ahead of our clock an alert's `sent` may be before it is flagged.
pub const SKEW_TOLERANCE_MINS: i64 = 10;

/// The deduplication key of an alert.
pub fn key(a: &cap::Alert) -> String {
    format!("{}|{}|{}", a.sender, a.identifier, a.sent)
}

fn resolve(base: &str, link: &str) -> String {
    match reqwest::Url::parse(base).and_then(|b| b.join(link)) {
        Ok(u) => u.to_string(),
        Err(_) => link.to_string(),
    }
}

impl FeedKind for CapFeed {
    fn name(&self) -> &'static str {
        "cap"
    }

    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError> {
        let start = doc
            .body
            .iter()
            .position(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF)
            .map(|i| doc.body[i]);
        if start != Some(b'<') {
            // A plain list of links, one per line.
            let text = std::str::from_utf8(doc.body).map_err(|e| FeedError::Format {
                line: None,
                message: format!(
                    "neither XML nor a UTF-8 list of links (bad byte at {})",
                    e.valid_up_to()
                ),
            })?;
            let mut parsed = Parsed::default();
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                if l.starts_with("http://")
                    || l.starts_with("https://")
                    || l.starts_with("replay://")
                {
                    parsed.follow.push(Link {
                        url: l.to_string(),
                        version: None,
                    });
                } else {
                    parsed
                        .problems
                        .push(format!("line {}: `{l}` is not a link", i + 1));
                }
            }
            return Ok(parsed);
        }
        let report = cap::inspect(
            doc.body,
            &Options {
                profile: Profile::Oasis,
                limits: self.limits,
            },
        );
        let Some(kind) = report.kind else {
            let first = report.errors().next();
            return Err(FeedError::Format {
                line: first.and_then(|p| p.line),
                message: first
                    .map(|p| p.message.clone())
                    .unwrap_or_else(|| "unreadable".into()),
            });
        };
        // Problems of a readable alert travel with it; the document's own list holds the
        // rest: each unreadable alert, named, and problems outside any alert.
        let mut parsed = Parsed::default();
        let readable: Vec<&str> = report
            .alerts
            .iter()
            .filter(|f| f.alert.is_some())
            .map(|f| f.path.as_str())
            .collect();
        for p in &report.problems {
            if !readable.iter().any(|r| cap::is_within(&p.path, r)) {
                parsed.problems.push(p.render(doc.url));
            }
        }
        let mut unreadable = 0;
        for found in &report.alerts {
            let Some(alert) = &found.alert else {
                unreadable += 1;
                parsed.problems.push(format!(
                    "{}: the alert at {} (line {}) cannot be read and is not handed on",
                    doc.url, found.path, found.line
                ));
                continue;
            };
            let expired = !alert.infos.is_empty()
                && alert
                    .infos
                    .iter()
                    .all(|i| i.expires.is_some_and(|e| e.timestamp() <= doc.received));
            let mut problems: Vec<String> = report
                .problems
                .iter()
                .filter(|p| cap::is_within(&p.path, &found.path))
                .map(|p| p.render(doc.url))
                .collect();
            // A sender whose clock runs ahead makes "sent" times in the future; the alert is
            // still handed on (it may be real), but the officer is told not to trust its times.
            let ahead = alert.sent.timestamp().duration_since(doc.received);
            if ahead > jiff::SignedDuration::from_mins(SKEW_TOLERANCE_MINS) {
                problems.push(format!(
                    "{}: sent {} is {} min ahead of our clock at receipt ({}); the sender's clock or ours is wrong",
                    doc.url,
                    alert.sent,
                    ahead.as_secs() / 60,
                    doc.received
                ));
            }
            parsed.items.push(Item {
                key: key(alert),
                observation: Observation::Alert(Box::new(UpstreamAlert {
                    url: doc.url.to_string(),
                    alert: alert.clone(),
                    dialect: found.dialect.to_string(),
                    digest: doc.digest.to_string(),
                    problems,
                    lineage: None,
                    expired,
                })),
            });
        }
        if let (Some(index), DocKind::Atom | DocKind::Rss) = (&report.index, kind) {
            for e in &index.entries {
                if e.inline_alert.is_none()
                    && let Some(link) = &e.link
                {
                    parsed.follow.push(Link {
                        url: resolve(doc.url, link),
                        version: e.updated.clone(),
                    });
                }
            }
        }
        if matches!(kind, DocKind::Alert(_)) && unreadable > 0 {
            let first = report.errors().next();
            return Err(FeedError::Format {
                line: first.and_then(|p| p.line),
                message: format!(
                    "the alert cannot be read: {}",
                    first.map(|p| p.message.clone()).unwrap_or_default()
                ),
            });
        }
        Ok(parsed)
    }
}
