//! The feeds' tables: health and validators per feed, keys seen, raw CAP documents, alert
//! lineages, and the inbox the correlate stage consumes. Only this module touches them.

use crate::store::sql::{Conn, OptionalExtension, Tx};
use rusqlite::params;
use serde::Serialize;

use super::{Item, Lineage, Observation};

/// A feed's health and validators, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedHealth {
    /// Feed id.
    pub feed: String,
    /// Kind.
    pub kind: String,
    /// Address.
    pub url: String,
    /// ETag of the last document.
    pub etag: Option<String>,
    /// Last-Modified of the last document.
    pub last_modified: Option<String>,
    /// Last poll attempt.
    pub last_attempt: Option<String>,
    /// Last successful poll.
    pub last_success: Option<String>,
    /// Last error message.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<String>,
    /// Consecutive failures.
    pub failures: i64,
    /// Polls made.
    pub polls: i64,
    /// Items handed on, all time.
    pub items: i64,
    /// When the gap alarm was raised (none when the feed is healthy).
    pub gap_since: Option<String>,
}

fn health_row(r: &crate::store::sql::Row<'_>) -> crate::store::sql::Result<FeedHealth> {
    Ok(FeedHealth {
        feed: r.get(0)?,
        kind: r.get(1)?,
        url: r.get(2)?,
        etag: r.get(3)?,
        last_modified: r.get(4)?,
        last_attempt: r.get(5)?,
        last_success: r.get(6)?,
        last_error: r.get(7)?,
        last_error_at: r.get(8)?,
        failures: r.get(9)?,
        polls: r.get(10)?,
        items: r.get(11)?,
        gap_since: r.get(12)?,
    })
}

const HEALTH_COLS: &str = "feed, kind, url, etag, last_modified, last_attempt, last_success, last_error, \
                           last_error_at, failures, polls, items, gap_since";

/// Every feed's health, by id.
pub fn all_health(conn: &Conn<'_>) -> crate::store::sql::Result<Vec<FeedHealth>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {HEALTH_COLS} FROM feed_state ORDER BY feed"
    ))?;
    let rows = stmt.query_map((), health_row)?;
    rows.collect()
}

/// One feed's health, if it was ever polled.
pub fn health(conn: &Conn<'_>, feed: &str) -> crate::store::sql::Result<Option<FeedHealth>> {
    conn.query_row(
        &format!("SELECT {HEALTH_COLS} FROM feed_state WHERE feed = ?1"),
        [feed],
        health_row,
    )
    .optional()
}

/// Make sure a feed has a row (its kind and address as configured now).
pub fn register(tx: &Tx<'_>, feed: &str, kind: &str, url: &str) -> crate::store::sql::Result<()> {
    tx.execute(
        "INSERT INTO feed_state (feed, kind, url) VALUES (?1, ?2, ?3)
         ON CONFLICT (feed) DO UPDATE SET kind = excluded.kind,
           url = excluded.url,
           etag = CASE WHEN feed_state.url = excluded.url THEN feed_state.etag END,
           last_modified = CASE WHEN feed_state.url = excluded.url THEN feed_state.last_modified END",
        params![feed, kind, url],
    )?;
    Ok(())
}

/// What polls since the last flush changed in a feed's health. Polls that bring nothing new
/// (a 304, an unchanged document) are the common case — hundreds a minute — and are written in
/// one batch per second instead of one transaction each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthDelta {
    /// Polls made.
    pub polls: i64,
    /// Time of the latest attempt.
    pub last_attempt: Option<String>,
    /// Time of the latest success.
    pub last_success: Option<String>,
    /// Whether a success came after the failures already counted in the store.
    pub reset_failures: bool,
    /// Failures since the latest success (or since the last flush, if none).
    pub failures: i64,
    /// The latest error or problem, and when.
    pub last_error: Option<(String, String)>,
    /// Validators to use next time, if they changed. They are only ever set after the items
    /// of the response they belong to were committed, so a crash can make stormbell fetch a
    /// document again, never skip one.
    pub validators: Option<(Option<String>, Option<String>)>,
}

impl HealthDelta {
    /// A poll was attempted at `at`.
    pub fn attempt(&mut self, at: &str) {
        self.polls += 1;
        self.last_attempt = Some(at.to_string());
    }
    /// It succeeded.
    pub fn success(&mut self, at: &str) {
        self.last_success = Some(at.to_string());
        self.reset_failures = true;
        self.failures = 0;
    }
    /// It failed.
    pub fn failure(&mut self, at: &str, error: &str) {
        self.failures += 1;
        self.problem(at, error);
    }
    /// Something went wrong that did not fail the poll (a linked document).
    pub fn problem(&mut self, at: &str, error: &str) {
        self.last_error = Some((at.to_string(), error.to_string()));
    }
}

/// Apply a [`HealthDelta`].
pub fn apply(tx: &Tx<'_>, feed: &str, d: &HealthDelta) -> crate::store::sql::Result<()> {
    let (set_validators, etag, last_modified) = match &d.validators {
        Some((e, l)) => (true, e.as_deref(), l.as_deref()),
        None => (false, None, None),
    };
    let (err_at, err) = match &d.last_error {
        Some((at, e)) => (Some(at.as_str()), Some(e.as_str())),
        None => (None, None),
    };
    tx.execute(
        "UPDATE feed_state SET
           polls = polls + ?2,
           last_attempt = COALESCE(?3, last_attempt),
           last_success = COALESCE(?4, last_success),
           failures = CASE WHEN ?5 THEN ?6 ELSE failures + ?6 END,
           last_error_at = COALESCE(?7, last_error_at),
           last_error = COALESCE(?8, last_error),
           etag = CASE WHEN ?9 THEN ?10 ELSE etag END,
           last_modified = CASE WHEN ?9 THEN ?11 ELSE last_modified END
         WHERE feed = ?1",
        params![
            feed,
            d.polls,
            d.last_attempt,
            d.last_success,
            d.reset_failures,
            d.failures,
            err_at,
            err,
            set_validators,
            etag,
            last_modified
        ],
    )?;
    Ok(())
}

/// Raise or clear the gap alarm.
pub fn set_gap(tx: &Tx<'_>, feed: &str, since: Option<&str>) -> crate::store::sql::Result<()> {
    tx.execute(
        "UPDATE feed_state SET gap_since = ?2 WHERE feed = ?1",
        params![feed, since],
    )?;
    Ok(())
}

/// Whether a key (item or followed link) was seen by a feed.
pub fn is_seen(conn: &Conn<'_>, feed: &str, key: &str) -> crate::store::sql::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM feed_seen WHERE feed = ?1 AND key = ?2",
        params![feed, key],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// Mark a key seen; returns false if it already was.
pub fn mark_seen(tx: &Tx<'_>, feed: &str, key: &str, at: &str) -> crate::store::sql::Result<bool> {
    let n = tx.execute(
        "INSERT OR IGNORE INTO feed_seen (feed, key, first_seen) VALUES (?1, ?2, ?3)",
        params![feed, key, at],
    )?;
    Ok(n == 1)
}

/// Keep a CAP document exactly as received.
pub fn keep_document(
    tx: &Tx<'_>,
    digest: &str,
    feed: &str,
    url: &str,
    at: &str,
    body: &[u8],
) -> crate::store::sql::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO feed_doc (digest, feed, url, received, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![digest, feed, url, at, body],
    )?;
    Ok(())
}

/// A kept document's bytes.
pub fn document(conn: &Conn<'_>, digest: &str) -> crate::store::sql::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT body FROM feed_doc WHERE digest = ?1",
        [digest],
        |r| r.get(0),
    )
    .optional()
}

fn triple(sender: &str, identifier: &str, sent: &str) -> String {
    format!("{sender},{identifier},{sent}")
}

/// Record an upstream alert in its lineage. Returns `None` when the alert is already known
/// (from this feed or another), else its lineage.
///
/// The root of a lineage is the first alert: an Alert is its own root; an Update or Cancel
/// joins the lineage of the earliest message it references that is known, or, when none is
/// known yet, presumes the earliest referenced message to be the root (it is, when an Update
/// arrives before its Alert). When a message arrives that earlier messages presumed to be a
/// root but that itself belongs to an older lineage, those messages are moved to it.
pub fn record_alert(
    tx: &Tx<'_>,
    feed: &str,
    at: &str,
    alert: &crate::cap::Alert,
) -> crate::store::sql::Result<Option<Lineage>> {
    let sent = alert.sent.to_string();
    let me = triple(&alert.sender, &alert.identifier, &sent);
    let exists: bool = tx
        .query_row(
            "SELECT 1 FROM feed_cap WHERE sender = ?1 AND identifier = ?2 AND sent = ?3",
            params![alert.sender, alert.identifier, sent],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists {
        return Ok(None);
    }
    let mut refs: Vec<&crate::cap::Reference> = alert.references.iter().flatten().collect();
    refs.sort_by_key(|r| r.sent.timestamp());
    let mut root: Option<String> = None;
    let mut missing = Vec::new();
    for r in &refs {
        let found: Option<String> = tx
            .query_row(
                "SELECT root FROM feed_cap WHERE sender = ?1 AND identifier = ?2 AND sent = ?3",
                params![r.sender, r.identifier, r.sent.to_string()],
                |row| row.get(0),
            )
            .optional()?;
        match found {
            Some(rt) => {
                if root.is_none() {
                    root = Some(rt);
                }
            }
            None => missing.push(r.to_string()),
        }
    }
    let root = root.unwrap_or_else(|| {
        refs.first()
            .map(|r| r.to_string())
            .unwrap_or_else(|| me.clone())
    });
    tx.execute(
        "INSERT INTO feed_cap (sender, identifier, sent, msg_type, root, feed, received)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            alert.sender,
            alert.identifier,
            sent,
            alert.msg_type.as_str(),
            root,
            feed,
            at
        ],
    )?;
    // Messages that took this one for the root of their lineage follow it into its own.
    if root != me {
        tx.execute(
            "UPDATE feed_cap SET root = ?1 WHERE root = ?2",
            params![root, me],
        )?;
    }
    Ok(Some(Lineage { root, missing }))
}

/// Put one observation in the inbox (for the correlate stage) and return its id.
pub fn enqueue(
    tx: &Tx<'_>,
    feed: &str,
    key: &str,
    at: &str,
    observation: &Observation,
) -> anyhow::Result<i64> {
    let json = serde_json::to_string(observation)?;
    tx.prepare_cached(
        "INSERT INTO feed_inbox (feed, key, received, observation) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![feed, key, at, json])?;
    Ok(tx.last_insert_rowid()?)
}

/// Write a feed's new items into the inbox, marking them seen, within the caller's
/// transaction. Returns the inbox ids of the items that were new (in the order given); items
/// already seen (and alerts already known through another feed) are skipped.
pub fn accept(
    tx: &Tx<'_>,
    feed: &str,
    at: &str,
    items: Vec<Item>,
) -> anyhow::Result<Vec<(i64, Item)>> {
    let mut out = Vec::new();
    for mut item in items {
        if !mark_seen(tx, feed, &item.key, at)? {
            continue;
        }
        if let Observation::Alert(a) = &mut item.observation {
            match record_alert(tx, feed, at, &a.alert)? {
                Some(l) => {
                    for m in &l.missing {
                        a.problems.push(format!(
                            "this {} references {m}, which has not been received (it may arrive later, or was never published here)",
                            a.alert.msg_type.as_str()
                        ));
                    }
                    a.lineage = Some(l)
                }
                None => continue, // already handed on through another feed
            }
        }
        let id = enqueue(tx, feed, &item.key, at, &item.observation)?;
        out.push((id, item));
    }
    if !out.is_empty() {
        tx.execute(
            "UPDATE feed_state SET items = items + ?2 WHERE feed = ?1",
            params![feed, out.len() as i64],
        )?;
    }
    Ok(out)
}

/// An inbox entry not yet consumed.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Inbox id.
    pub id: i64,
    /// Feed.
    pub feed: String,
    /// The item's key.
    pub key: String,
    /// The observation.
    pub observation: Observation,
}

/// An inbox entry that cannot be read back: its id and what is wrong with it.
pub type Unreadable = (i64, String);

/// Entries not yet consumed with an id above `after`, oldest first (up to `limit` rows
/// looked at). An entry that cannot be read back (written by another version, damaged) is
/// not allowed to hold up the rest: it is skipped and named in the second list, and stays in
/// the inbox for someone to look at.
pub fn pending_after(
    conn: &Conn<'_>,
    after: i64,
    limit: usize,
) -> crate::store::sql::Result<(Vec<Pending>, Vec<Unreadable>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, feed, key, observation FROM feed_inbox
         WHERE consumed IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
    )?;
    read_entries(stmt.query(params![after, limit as i64])?)
}

/// Every entry (consumed or not) received at or after `since` (an RFC 3339 stamp as the
/// store writes them, in the office's offset), oldest first: what a consumer re-reads at
/// start to rebuild its memory of recent observations (rolling rain, tracks in force).
pub fn received_since(
    conn: &Conn<'_>,
    since: &str,
) -> crate::store::sql::Result<(Vec<Pending>, Vec<Unreadable>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, feed, key, observation FROM feed_inbox WHERE received >= ?1 ORDER BY id",
    )?;
    read_entries(stmt.query(params![since])?)
}

/// Every entry received from `since` to `until` (store stamps, both included), oldest first:
/// what an after-action report charts.
pub fn received_between(
    conn: &Conn<'_>,
    since: &str,
    until: &str,
) -> crate::store::sql::Result<(Vec<Pending>, Vec<Unreadable>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, feed, key, observation FROM feed_inbox
         WHERE received >= ?1 AND received <= ?2 ORDER BY id",
    )?;
    read_entries(stmt.query(params![since, until])?)
}

/// Rows of `id, feed, key, observation` read back; an entry that cannot be (written by
/// another version, damaged) is named and skipped, never allowed to hold up the rest.
fn read_entries(
    mut rows: crate::store::sql::Rows<'_>,
) -> crate::store::sql::Result<(Vec<Pending>, Vec<Unreadable>)> {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    while let Some(r) = rows.next()? {
        let (id, feed, key): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let json: String = r.get(3)?;
        match serde_json::from_str(&json) {
            Ok(observation) => out.push(Pending {
                id,
                feed,
                key,
                observation,
            }),
            Err(e) => bad.push((
                id,
                format!("inbox entry {id} ({feed}, {key}) cannot be read back: {e}"),
            )),
        }
    }
    Ok((out, bad))
}

/// How many entries are not yet consumed.
pub fn pending_count(conn: &Conn<'_>) -> crate::store::sql::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM feed_inbox WHERE consumed IS NULL",
        (),
        |r| r.get(0),
    )
}

/// Mark inbox entries consumed (the consumer does this in the transaction that records what
/// it made of them).
pub fn consume(tx: &Tx<'_>, ids: &[i64], at: &str) -> crate::store::sql::Result<()> {
    let mut stmt = tx
        .prepare_cached("UPDATE feed_inbox SET consumed = ?2 WHERE id = ?1 AND consumed IS NULL")?;
    for id in ids {
        stmt.execute(params![id, at])?;
    }
    Ok(())
}

/// Gap alarms ever raised (each an inbox entry).
pub fn gap_alarms(c: &Conn<'_>) -> crate::store::sql::Result<i64> {
    c.query_row(
        "SELECT count(*) FROM feed_inbox
         WHERE json_extract(observation, '$.kind') = 'feed_alarm'
           AND json_extract(observation, '$.data.state') = 'gap'",
        (),
        |r| r.get(0),
    )
}

/// Count one thing a listening feed refused (`reason` one of the `feed_refused` reasons),
/// keeping the last detail.
pub fn refused(
    tx: &Tx<'_>,
    feed: &str,
    reason: &str,
    at: &str,
    detail: &str,
) -> crate::store::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO feed_refused (feed, reason, n, last_at, last_detail) VALUES (?1, ?2, 1, ?3, ?4)
         ON CONFLICT (feed, reason) DO UPDATE SET n = feed_refused.n + 1, last_at = ?3, last_detail = ?4",
    )?
    .execute(params![feed, reason, at, detail])?;
    Ok(())
}

/// What listening feeds refused: (feed, reason, count, last detail).
pub fn refusals(c: &Conn<'_>) -> crate::store::sql::Result<Vec<(String, String, i64, String)>> {
    c.prepare_cached("SELECT feed, reason, n, last_detail FROM feed_refused ORDER BY feed, reason")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect()
}

/// Delete up to `limit` rows per table that are older than `cutoff` (a store stamp) and that
/// nothing will read again: kept documents, seen keys, consumed inbox entries (outside every
/// window in `keep`, the spans a warning's report reads rain from; gap alarms are kept, they
/// are counted for ever), and refusal tallies not added to since. Returns (table, rows) for
/// each table; the caller repeats until nothing is left, one short transaction at a time, so
/// the pipeline's writes are never held up behind a season's worth of deletes.
pub fn prune(
    tx: &Tx<'_>,
    cutoff: &str,
    keep: &[(String, String)],
    limit: usize,
) -> crate::store::sql::Result<Vec<(&'static str, usize)>> {
    let limit = limit as i64;
    let doc = tx
        .prepare_cached(
            "DELETE FROM feed_doc WHERE digest IN
               (SELECT digest FROM feed_doc WHERE received < ?1 LIMIT ?2)",
        )?
        .execute(params![cutoff, limit])?;
    let seen = tx
        .prepare_cached(
            "DELETE FROM feed_seen WHERE (feed, key) IN
               (SELECT feed, key FROM feed_seen WHERE first_seen < ?1 LIMIT ?2)",
        )?
        .execute(params![cutoff, limit])?;
    // The open gaps between the windows to keep (both ends kept), each below the cutoff.
    let mut gaps = Vec::new();
    let mut from = String::new();
    for (a, b) in keep {
        if a.as_str() >= cutoff {
            break;
        }
        gaps.push((from.clone(), a.clone()));
        from = b.clone();
    }
    if from.as_str() < cutoff {
        gaps.push((from, cutoff.to_string()));
    }
    let mut inbox = 0;
    let mut stmt = tx.prepare_cached(
        "DELETE FROM feed_inbox WHERE id IN
           (SELECT id FROM feed_inbox
             WHERE received > ?1 AND received < ?2 AND consumed IS NOT NULL
               AND json_extract(observation, '$.kind') IS DISTINCT FROM 'feed_alarm'
             LIMIT ?3)",
    )?;
    for (a, b) in gaps {
        if (inbox as i64) < limit {
            inbox += stmt.execute(params![a, b, limit - inbox as i64])?;
        }
    }
    let refused = tx
        .prepare_cached("DELETE FROM feed_refused WHERE last_at < ?1")?
        .execute(params![cutoff])?;
    Ok(vec![
        ("feed_doc", doc),
        ("feed_seen", seen),
        ("feed_inbox", inbox),
        ("feed_refused", refused),
    ])
}
