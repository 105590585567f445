//! The correlate stage's tables (`corr_*`, migration 0004): lineages in force, every
//! message issued, every decision with its cause. Nothing else writes them; the web and
//! dispatch stages read issued warnings through [`issued_since`] and [`current`].

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::lifecycle::{Decision, Lineage};
use super::warning::{Issued, Targets};

/// Lineages in force.
pub fn lineages(conn: &Connection) -> anyhow::Result<Vec<Lineage>> {
    let mut stmt = conn.prepare_cached("SELECT key, state FROM corr_lineage ORDER BY key")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (key, json) = row?;
        out.push(
            serde_json::from_str(&json)
                .map_err(|e| anyhow::anyhow!("lineage {key} cannot be read back: {e}"))?,
        );
    }
    Ok(out)
}

/// How many lineages are in force (for `status`).
pub fn in_force(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM corr_lineage", [], |r| r.get(0))
}

/// Whether a lineage's latest message is its lift (a Cancel).
pub fn lifted(conn: &Connection, key: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT msg_type = 'Cancel' FROM corr_warning WHERE lineage = ?1 ORDER BY id DESC LIMIT 1",
    )?
    .query_row([key], |r| r.get(0))
    .optional()
    .map(|o| o.unwrap_or(false))
}

/// Keep (or drop, with `None`) a lineage's state.
pub fn put_lineage(
    tx: &Transaction<'_>,
    key: &str,
    state: Option<&Lineage>,
    at: &str,
) -> anyhow::Result<()> {
    match state {
        Some(l) => {
            tx.prepare_cached(
                "INSERT INTO corr_lineage (key, state, updated) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated = excluded.updated",
            )?
            .execute(params![key, serde_json::to_string(l)?, at])?;
        }
        None => {
            tx.prepare_cached("DELETE FROM corr_lineage WHERE key = ?1")?
                .execute(params![key])?;
        }
    }
    Ok(())
}

/// Record a decision; returns its id.
#[allow(clippy::too_many_arguments)]
pub fn record_decision(
    tx: &Transaction<'_>,
    lineage: &str,
    d: &Decision,
    reason: &str,
    cause: Option<i64>,
    targets: &Targets,
    at: &str,
) -> anyhow::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO corr_decision (at, lineage, send, changes, reason, cause, targets)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        at,
        lineage,
        format!("{:?}", d.send),
        serde_json::to_string(&d.changes)?,
        reason,
        cause,
        serde_json::to_string(targets)?
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Record one issued message of a decision.
pub fn record_issued(
    tx: &Transaction<'_>,
    i: &Issued,
    lineage: &Lineage,
    decision: i64,
    tier: Option<&str>,
    sent: &str,
    expires: Option<&str>,
) -> anyhow::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO corr_warning (identifier, lineage, version, msg_type, hazard, tier, sent,
                                   expires, restricted, cap, decision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        i.identifier,
        lineage.key(),
        lineage.version,
        i.msg_type,
        lineage.hazard.as_str(),
        tier,
        sent,
        expires,
        lineage.restricted,
        i.xml,
        decision
    ])?;
    Ok(tx.last_insert_rowid())
}

/// References (`sender,identifier,sent`) of every message a lineage has had, oldest first.
pub fn references(conn: &Connection, lineage: &str, sender: &str) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT identifier, sent FROM corr_warning WHERE lineage = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![lineage], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, sent) = row?;
        out.push(format!("{sender},{id},{sent}"));
    }
    Ok(out)
}

/// One issued message as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredWarning {
    /// Row id (the Atom feed's order).
    pub id: i64,
    /// CAP identifier.
    pub identifier: String,
    /// `hazard:area`.
    pub lineage: String,
    /// Version.
    pub version: i64,
    /// Alert / Update / Cancel.
    pub msg_type: String,
    /// Hazard.
    pub hazard: String,
    /// Tier (none for a Cancel).
    pub tier: Option<String>,
    /// Sent (CAP form).
    pub sent: String,
    /// Expires (CAP form).
    pub expires: Option<String>,
    /// Officials only.
    pub restricted: bool,
    /// The CAP XML.
    pub cap: String,
}

fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredWarning> {
    Ok(StoredWarning {
        id: r.get(0)?,
        identifier: r.get(1)?,
        lineage: r.get(2)?,
        version: r.get(3)?,
        msg_type: r.get(4)?,
        hazard: r.get(5)?,
        tier: r.get(6)?,
        sent: r.get(7)?,
        expires: r.get(8)?,
        restricted: r.get(9)?,
        cap: r.get(10)?,
    })
}

const COLUMNS: &str =
    "id, identifier, lineage, version, msg_type, hazard, tier, sent, expires, restricted, cap";

/// Messages issued after row `after`, oldest first.
pub fn issued_since(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredWarning>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM corr_warning WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    stmt.query_map(params![after, limit as i64], stored)?
        .collect()
}

/// The current messages: the latest version of every lineage, Cancels included (so that a
/// poller sees the lift), newest first.
pub fn current(conn: &Connection) -> rusqlite::Result<Vec<StoredWarning>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM corr_warning w
         WHERE version = (SELECT max(version) FROM corr_warning v WHERE v.lineage = w.lineage)
         ORDER BY id DESC"
    ))?;
    stmt.query_map([], stored)?.collect()
}

/// One message by identifier.
pub fn by_identifier(
    conn: &Connection,
    identifier: &str,
) -> rusqlite::Result<Option<StoredWarning>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM corr_warning WHERE identifier = ?1"
    ))?
    .query_row(params![identifier], stored)
    .optional()
}

/// Record a warning in force re-targeted to a new registry (`send` = `Retarget`, no changes of
/// its own): the targets as the warning now stands; returns its id.
pub fn record_retarget(
    tx: &Transaction<'_>,
    lineage: &str,
    targets: &Targets,
    at: &str,
) -> anyhow::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO corr_decision (at, lineage, send, changes, reason, cause, targets)
         VALUES (?1, ?2, 'Retarget', '[]', 'the registry changed', NULL, ?3)",
    )?
    .execute(params![at, lineage, serde_json::to_string(targets)?])?;
    Ok(tx.last_insert_rowid())
}

/// Every message of one lineage, in order (for the after-action report).
pub fn of_lineage(conn: &Connection, lineage: &str) -> rusqlite::Result<Vec<StoredWarning>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM corr_warning WHERE lineage = ?1 ORDER BY version, id"
    ))?
    .query_map(params![lineage], stored)?
    .collect()
}

/// The targets of a lineage's last decision that was not a Cancel: the places, people to
/// move and shelters as the warning last stood (also after it was lifted).
pub fn last_targets(conn: &Connection, lineage: &str) -> anyhow::Result<Option<Targets>> {
    let json: Option<String> = conn
        .prepare_cached(
            "SELECT targets FROM corr_decision WHERE lineage = ?1 AND send != 'Cancel'
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![lineage], |r| r.get(0))
        .optional()?;
    json.map(|j| serde_json::from_str(&j).map_err(Into::into))
        .transpose()
}

/// The targets of the decision a message belongs to.
pub fn targets_of(conn: &Connection, identifier: &str) -> anyhow::Result<Option<Targets>> {
    let t: Option<String> = conn
        .prepare_cached(
            "SELECT d.targets FROM corr_warning w JOIN corr_decision d ON d.id = w.decision
             WHERE w.identifier = ?1",
        )?
        .query_row(params![identifier], |r| r.get(0))
        .optional()?;
    Ok(match t {
        Some(t) => Some(serde_json::from_str(&t)?),
        None => None,
    })
}

/// One recorded decision.
#[derive(Debug, Clone, Serialize)]
pub struct StoredDecision {
    /// When.
    pub at: String,
    /// Alert / Update / Cancel.
    pub send: String,
    /// The changes, as JSON.
    pub changes: String,
    /// Why.
    pub reason: String,
    /// The inbox entry that caused it.
    pub cause: Option<i64>,
}

/// Decisions of a lineage, oldest first.
pub fn decisions(conn: &Connection, lineage: &str) -> rusqlite::Result<Vec<StoredDecision>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, send, changes, reason, cause FROM corr_decision WHERE lineage = ?1 ORDER BY id",
    )?;
    stmt.query_map(params![lineage], |r| {
        Ok(StoredDecision {
            at: r.get(0)?,
            send: r.get(1)?,
            changes: r.get(2)?,
            reason: r.get(3)?,
            cause: r.get(4)?,
        })
    })?
    .collect()
}
