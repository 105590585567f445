//! The tamper-evident audit trail.
//!
//! Every send, receipt, answer, escalation and decision is written here, in order, for the
//! after-action review. Rows are chained: each carries the SHA-256 of its predecessor, and its
//! own hash covers that and all its fields. The schema refuses UPDATE and DELETE; anyone who
//! bypasses that (by dropping the triggers) breaks the chain, and [`verify`] names the first
//! row that no longer fits.
//!
//! What the chain proves: no row was altered, inserted or removed *within* it since it was
//! written, unless whoever did it also recomputed every hash after that row. It does not show
//! rows cut off the end, nor a rewrite with the hashes recomputed. Those need a head written
//! down outside the database: signed checkpoints ([`super::checkpoint`]) and the duty log,
//! held to the trail with [`against`].

use crate::store::sql::{Conn, OptionalExtension, Tx};
use rusqlite::params;
use sha2::{Digest, Sha256};

/// The hash "before" the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Something to record.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When it happened.
    pub at: jiff::Zoned,
    /// Who or what acted (`system`, `feeds`, `officer:…`).
    pub actor: String,
    /// What happened, dotted (`warning.issued`).
    pub kind: String,
    /// What it concerns (a warning id, a person id).
    pub subject: String,
    /// Particulars.
    pub detail: serde_json::Value,
}

impl Entry {
    /// An entry at the current time in the given zone.
    pub fn now(
        tz: &jiff::tz::TimeZone,
        actor: impl Into<String>,
        kind: impl Into<String>,
        subject: impl Into<String>,
        detail: serde_json::Value,
    ) -> Entry {
        let mut e = Entry::utc(jiff::Timestamp::now(), actor, kind, subject, detail);
        e.at = e.at.with_time_zone(tz.clone());
        e
    }
}

impl Entry {
    /// An entry at `at` (stored as UTC), for stages that keep time as timestamps.
    pub fn utc(
        at: jiff::Timestamp,
        actor: impl Into<String>,
        kind: impl Into<String>,
        subject: impl Into<String>,
        detail: serde_json::Value,
    ) -> Entry {
        Entry {
            at: at.to_zoned(jiff::tz::TimeZone::UTC),
            actor: actor.into(),
            kind: kind.into(),
            subject: subject.into(),
            detail,
        }
    }

    /// The same entry with more facts in its detail object (what it concerns: its warning,
    /// message, broadcast).
    pub fn with(
        mut self,
        facts: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
    ) -> Entry {
        if let Some(m) = self.detail.as_object_mut() {
            for (k, v) in facts {
                m.insert(k.into(), v);
            }
        }
        self
    }
}

/// A row as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// RFC 3339 time with offset.
    pub at: String,
    /// Who or what acted.
    pub actor: String,
    /// What happened.
    pub kind: String,
    /// What it concerns.
    pub subject: String,
    /// Particulars, as JSON text.
    pub detail: String,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// Hash of this row.
    pub hash: String,
}

fn row_hash(
    prev: &str,
    seq: i64,
    at: &str,
    actor: &str,
    kind: &str,
    subject: &str,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"stormbell-audit-v1\n");
    h.update(prev.as_bytes());
    h.update(b"\n");
    let seq = seq.to_string();
    for field in [seq.as_str(), at, actor, kind, subject, detail] {
        // Length-prefixed, so no choice of field contents can imitate another row.
        h.update(field.len().to_string().as_bytes());
        h.update(b":");
        h.update(field.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// [`kinds_about`]'s statement (public for the test of its plan): the lineage's expression
/// is the one `audit_lineage` indexes, written the same way, or no engine would use it.
pub const KINDS_ABOUT: &str = "SELECT kind, count(*), min(seq) FROM audit
     WHERE kind LIKE ?1 || '%' AND json_extract(detail, '$.lineage') = ?2 GROUP BY kind";

/// Entries whose kind starts with `prefix` and whose detail names `lineage` (every message,
/// broadcast and escalation entry does), by kind: (kind, how many, when the first was). The
/// first is the first in the chain, which is the first in time.
pub fn kinds_about(
    c: &Conn<'_>,
    prefix: &str,
    lineage: &str,
) -> crate::store::sql::Result<Vec<(String, u32, String)>> {
    let groups: Vec<(String, i64, i64)> = c
        .prepare_cached(KINDS_ABOUT)?
        .query_map(params![prefix, lineage], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(groups.len());
    for (kind, n, first) in groups {
        let at: String = c
            .prepare_cached("SELECT at FROM audit WHERE seq = ?1")?
            .query_row(params![first], |r| r.get(0))?;
        out.push((kind, n.clamp(0, i64::from(u32::MAX)) as u32, at));
    }
    Ok(out)
}

/// The hash a row should carry, recomputed from its fields (for [`verify`] and for anyone
/// checking an exported trail independently).
pub fn compute_hash(rec: &Record) -> String {
    row_hash(
        &rec.prev_hash,
        rec.seq,
        &rec.at,
        &rec.actor,
        &rec.kind,
        &rec.subject,
        &rec.detail,
    )
}

/// The last row's sequence number and hash, if any.
pub fn head(conn: &Conn<'_>) -> crate::store::sql::Result<Option<(i64, String)>> {
    conn.prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row((), |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// The last row's sequence number, hash and time, if any (for people: `audit head`).
pub fn head_at(conn: &Conn<'_>) -> crate::store::sql::Result<Option<(i64, String, String)>> {
    conn.prepare_cached("SELECT seq, hash, at FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

/// Append an entry inside the caller's transaction (so it commits or rolls back with the work
/// it records).
pub fn append(tx: &Tx<'_>, entry: &Entry) -> crate::store::sql::Result<Record> {
    let (prev_seq, prev_hash) = head_in_line(tx)?;
    let r = chained(prev_seq + 1, prev_hash, entry);
    tx.prepare_cached(
        "INSERT INTO audit (seq, at, actor, kind, subject, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        r.seq,
        r.at,
        r.actor,
        r.kind,
        r.subject,
        r.detail,
        r.prev_hash,
        r.hash
    ])?;
    tx.chain_appended(r.seq, &r.hash);
    Ok(r)
}

/// The chain's head for the next append: read under the chain's lock (one chain however
/// many nodes write), or as this transaction last left it.
fn head_in_line(tx: &Tx<'_>) -> crate::store::sql::Result<(i64, String)> {
    tx.serialise("stormbell.audit")?;
    Ok(match tx.chain_head() {
        Some(head) => head,
        None => head(tx)?.unwrap_or((0, GENESIS.to_string())),
    })
}

/// `entry` as row `seq` after a row whose hash is `prev_hash`. What is hashed is what is
/// stored, on either engine: a NUL (which PostgreSQL's text cannot hold) is kept as U+FFFD
/// in both.
fn chained(seq: i64, prev_hash: String, entry: &Entry) -> Record {
    use crate::store::sql::storable;
    let at = super::stamp(entry.at.timestamp());
    let detail = serde_json::to_string(&entry.detail).unwrap_or_else(|_| "null".into());
    let (actor, kind, subject) = (
        storable(&entry.actor).into_owned(),
        storable(&entry.kind).into_owned(),
        storable(&entry.subject).into_owned(),
    );
    let hash = row_hash(&prev_hash, seq, &at, &actor, &kind, &subject, &detail);
    Record {
        seq,
        at,
        actor,
        kind,
        subject,
        detail,
        prev_hash,
        hash,
    }
}

/// Append entries in order inside the caller's transaction, as [`append`] one by one would
/// (the same rows, numbers and hashes). On PostgreSQL the rows go in as one statement: a
/// batch of outcomes or receipts appends dozens of entries, and a round trip each was most of
/// its cost. SQLite appends them one by one (microseconds each, in the process).
pub fn append_all(tx: &Tx<'_>, entries: &[Entry]) -> crate::store::sql::Result<Vec<Record>> {
    if !tx.is_postgres() || entries.len() < 2 {
        return entries.iter().map(|e| append(tx, e)).collect();
    }
    let (mut seq, mut prev_hash) = head_in_line(tx)?;
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let r = chained(seq, prev_hash, entry);
        prev_hash = r.hash.clone();
        records.push(r);
    }
    // (A NUL in a field is stored as U+FFFD on either engine, the JSON's `\u0000` included:
    // the parameter layer keeps text as PostgreSQL can hold it.)
    let rows = serde_json::to_string(&records)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(
        "INSERT INTO audit (seq, at, actor, kind, subject, detail, prev_hash, hash)
         SELECT r.seq, r.at, r.actor, r.kind, r.subject, r.detail, r.prev_hash, r.hash
         FROM json_to_recordset(CAST(?1 AS json))
              AS r(seq bigint, at text, actor text, kind text, subject text, detail text,
                   prev_hash text, hash text)
         ORDER BY r.seq",
    )?
    .execute(params![rows])?;
    tx.chain_appended(seq, &prev_hash);
    Ok(records)
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Verification {
    /// Every row fits. `head` is the last sequence number and hash (none for an empty trail).
    Intact {
        /// Rows checked.
        entries: u64,
        /// Last sequence number and hash.
        head: Option<(i64, String)>,
    },
    /// The first row that does not fit, and why.
    Broken {
        /// Sequence number of the first bad row.
        seq: i64,
        /// What is wrong with it.
        reason: String,
        /// Rows before it that were fine.
        intact_before: u64,
    },
}

/// Recompute the chain from the first row and name the first broken link.
pub fn verify(conn: &Conn<'_>) -> crate::store::sql::Result<Verification> {
    verify_after(conn, 0, GENESIS)
}

/// Recompute the chain after row `seq` (0: from the start), whose hash was found to be
/// `hash` by an earlier verification, and name the first broken link: what a monitor checks
/// at every scrape without reading the whole trail again. `entries` in the answer counts the
/// rows checked this time. (Row `seq` itself still carrying `hash` is for the caller to
/// check, with [`against`].)
pub fn verify_after(
    conn: &Conn<'_>,
    seq: i64,
    hash: &str,
) -> crate::store::sql::Result<Verification> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, actor, kind, subject, detail, prev_hash, hash FROM audit
         WHERE seq > ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([seq])?;
    let mut expected_seq = seq + 1;
    let mut prev = hash.to_string();
    let mut count = 0u64;
    while let Some(r) = rows.next()? {
        let rec = record(&r)?;
        let broken = |reason: String| Verification::Broken {
            seq: rec.seq,
            reason,
            intact_before: count,
        };
        if rec.seq != expected_seq {
            return Ok(broken(format!(
                "sequence jumps from {} to {}: {} row(s) removed",
                expected_seq - 1,
                rec.seq,
                rec.seq - expected_seq
            )));
        }
        if rec.prev_hash != prev {
            return Ok(broken(
                "its link to the previous row does not match that row's hash (a row was \
                 removed, inserted or rewritten before it)"
                    .into(),
            ));
        }
        if compute_hash(&rec) != rec.hash {
            return Ok(broken(
                "its contents do not match its hash (the row was altered)".into(),
            ));
        }
        prev = rec.hash;
        expected_seq += 1;
        count += 1;
    }
    Ok(Verification::Intact {
        entries: count,
        head: (expected_seq > 1).then(|| (expected_seq - 1, prev)),
    })
}

/// How the trail stands against one recorded head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Against {
    /// The row is there with the recorded hash.
    Holds,
    /// The trail ends before the recorded row: rows were cut off the end.
    Truncated {
        /// The last row the trail has (0: none).
        last: i64,
    },
    /// The row is there with another hash: it, or a row before it, was rewritten and the
    /// chain recomputed.
    Rewritten {
        /// The hash the row carries now.
        found: String,
    },
}

/// Hold the trail to a head recorded elsewhere (a checkpoint, the duty log).
pub fn against(conn: &Conn<'_>, seq: i64, hash: &str) -> crate::store::sql::Result<Against> {
    let found: Option<String> = conn
        .prepare_cached("SELECT hash FROM audit WHERE seq = ?1")?
        .query_row(params![seq], |r| r.get(0))
        .optional()?;
    Ok(match found {
        Some(h) if h.eq_ignore_ascii_case(hash) => Against::Holds,
        Some(found) => Against::Rewritten { found },
        None => Against::Truncated {
            last: head(conn)?.map_or(0, |(s, _)| s),
        },
    })
}

/// Rows from `from_seq` on, for reports.
pub fn since(
    conn: &Conn<'_>,
    from_seq: i64,
    limit: usize,
) -> crate::store::sql::Result<Vec<Record>> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, kind, subject, detail, prev_hash, hash FROM audit
         WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![from_seq, limit as i64], record)?;
    rows.collect()
}

/// A row of `SELECT seq, at, actor, kind, subject, detail, prev_hash, hash`.
fn record(r: &crate::store::sql::Row<'_>) -> crate::store::sql::Result<Record> {
    Ok(Record {
        seq: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        kind: r.get(3)?,
        subject: r.get(4)?,
        detail: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}
