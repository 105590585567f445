//! The correlate stage's tables (`corr_*`, migration 0004): lineages in force, every
//! message issued, every decision with its cause. Nothing else writes them; the web and
//! dispatch stages read issued warnings through [`issued_since`] and [`current`].

use std::collections::BTreeMap;

use crate::store::sql::{Conn, OptionalExtension, Tx};
use jiff::Timestamp;
use rusqlite::params;
use serde::Serialize;

use super::lifecycle::{Decision, Lineage};
use super::warning::{Issued, Targets};

/// Lineages in force.
pub fn lineages(conn: &Conn<'_>) -> anyhow::Result<Vec<Lineage>> {
    let mut stmt = conn.prepare_cached("SELECT key, state FROM corr_lineage ORDER BY key")?;
    let rows = stmt.query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
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
pub fn in_force(conn: &Conn<'_>) -> crate::store::sql::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM corr_lineage")?
        .query_row((), |r| r.get(0))
}

/// Whether a lineage's latest message is its lift (a Cancel).
pub fn lifted(conn: &Conn<'_>, key: &str) -> crate::store::sql::Result<bool> {
    conn.prepare_cached(
        "SELECT msg_type = 'Cancel' FROM corr_warning WHERE lineage = ?1 ORDER BY id DESC LIMIT 1",
    )?
    .query_row([key], |r| r.get(0))
    .optional()
    .map(|o| o.unwrap_or(false))
}

/// Keep (or drop, with `None`) a lineage's state.
pub fn put_lineage(
    tx: &Tx<'_>,
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
    tx: &Tx<'_>,
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
    Ok(tx.last_insert_rowid()?)
}

/// Record one issued message of a decision.
pub fn record_issued(
    tx: &Tx<'_>,
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
    Ok(tx.last_insert_rowid()?)
}

/// References (`sender,identifier,sent`) of every message a lineage has had, oldest first.
pub fn references(conn: &Conn<'_>, lineage: &str, sender: &str) -> anyhow::Result<Vec<String>> {
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

fn stored(r: &crate::store::sql::Row<'_>) -> crate::store::sql::Result<StoredWarning> {
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
    conn: &Conn<'_>,
    after: i64,
    limit: usize,
) -> crate::store::sql::Result<Vec<StoredWarning>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM corr_warning WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    stmt.query_map(params![after, limit as i64], stored)?
        .collect()
}

/// The current messages: the latest version of every lineage, Cancels included (so that a
/// poller sees the lift), newest first.
pub fn current(conn: &Conn<'_>) -> crate::store::sql::Result<Vec<StoredWarning>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM corr_warning w
         WHERE version = (SELECT max(version) FROM corr_warning v WHERE v.lineage = w.lineage)
         ORDER BY id DESC"
    ))?;
    stmt.query_map((), stored)?.collect()
}

/// One message by identifier.
pub fn by_identifier(
    conn: &Conn<'_>,
    identifier: &str,
) -> crate::store::sql::Result<Option<StoredWarning>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM corr_warning WHERE identifier = ?1"
    ))?
    .query_row(params![identifier], stored)
    .optional()
}

/// The keys of the lineages in force, as a JSON array: what a later stage's query filters its
/// own rows by (`lineage IN (SELECT value FROM json_each(?))`) without naming this stage's
/// tables.
pub fn in_force_keys(conn: &Conn<'_>) -> crate::store::sql::Result<String> {
    let keys = conn
        .prepare_cached("SELECT key FROM corr_lineage ORDER BY key")?
        .query_map((), |r| r.get::<_, String>(0))?
        .collect::<crate::store::sql::Result<Vec<_>>>()?;
    Ok(serde_json::Value::from(keys).to_string())
}

/// Lineages lifted and no longer in force whose lift was issued at `since` or later (the lift
/// message's CAP time), with their hazard and that time: (lineage, hazard, sent). `since`
/// `None`: every one.
pub fn lifted_since(
    conn: &Conn<'_>,
    since: Option<Timestamp>,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let rows: Vec<(String, String, String)> = conn
        .prepare_cached(
            "SELECT lineage, hazard, max(sent) FROM corr_warning
             WHERE msg_type = 'Cancel' AND lineage NOT IN (SELECT key FROM corr_lineage)
             GROUP BY lineage, hazard",
        )?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter(|(_, _, sent)| match (since, sent.parse::<Timestamp>()) {
            (Some(since), Ok(t)) => t >= since,
            _ => true,
        })
        .collect())
}

/// When the newest message was issued (the warnings' own clock: a replayed storm's, or now).
pub fn newest_sent(conn: &Conn<'_>) -> anyhow::Result<Option<Timestamp>> {
    let newest: Option<String> = conn
        .prepare_cached("SELECT max(sent) FROM corr_warning")?
        .query_row((), |r| r.get(0))?;
    Ok(newest.and_then(|s| s.parse().ok()))
}

/// Every message issued, in order: (id, identifier, the CAP XML as published).
pub fn all_issued(conn: &Conn<'_>) -> crate::store::sql::Result<Vec<(i64, String, String)>> {
    conn.prepare_cached("SELECT id, identifier, cap FROM corr_warning ORDER BY id")?
        .query_map((), |r| {
            Ok((r.get("id")?, r.get("identifier")?, r.get("cap")?))
        })?
        .collect()
}

/// Every message issued, in order, by what it was: (hazard, tier — none for a Cancel —,
/// message type).
pub fn message_kinds(
    conn: &Conn<'_>,
) -> crate::store::sql::Result<Vec<(String, Option<String>, String)>> {
    conn.prepare_cached("SELECT hazard, tier, msg_type FROM corr_warning ORDER BY id")?
        .query_map((), |r| {
            Ok((r.get("hazard")?, r.get("tier")?, r.get("msg_type")?))
        })?
        .collect()
}

/// Every warning (lineage) ever issued, in name order.
pub fn all_lineages(conn: &Conn<'_>) -> crate::store::sql::Result<Vec<String>> {
    conn.prepare_cached("SELECT DISTINCT lineage FROM corr_warning ORDER BY lineage")?
        .query_map((), |r| r.get(0))?
        .collect()
}

/// Warnings (lineages) ever issued, per hazard.
pub fn lineages_by_hazard(conn: &Conn<'_>) -> crate::store::sql::Result<BTreeMap<String, i64>> {
    conn.prepare_cached("SELECT hazard, count(DISTINCT lineage) FROM corr_warning GROUP BY hazard")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Warnings whose latest message is not a Cancel (in force when the record ends).
pub fn unlifted(conn: &Conn<'_>) -> crate::store::sql::Result<i64> {
    conn.prepare_cached(
        "SELECT count(*) FROM corr_warning w
         WHERE w.id = (SELECT max(id) FROM corr_warning x WHERE x.lineage = w.lineage)
           AND w.msg_type != 'Cancel'",
    )?
    .query_row((), |r| r.get(0))
}

/// Lifts (Cancel decisions) after decision `after`, in order: (decision id, lineage, when).
pub fn lifts_after(conn: &Conn<'_>, after: i64) -> anyhow::Result<Vec<(i64, String, Timestamp)>> {
    let rows: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT id, lineage, at FROM corr_decision WHERE id > ?1 AND send = 'Cancel' ORDER BY id",
        )?
        .query_map(params![after], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, lineage, at)| {
            let at = at
                .parse::<Timestamp>()
                .map_err(|e| anyhow::anyhow!("corr_decision {id}: unreadable time {at:?}: {e}"))?;
            Ok((id, lineage, at))
        })
        .collect()
}

/// When a lineage was lifted: the time of its latest decision, if that was a Cancel.
pub fn lifted_at(conn: &Conn<'_>, lineage: &str) -> anyhow::Result<Option<Timestamp>> {
    let last: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT send, at FROM corr_decision WHERE lineage = ?1 AND send != 'Retarget'
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![lineage], |x| Ok((x.get(0)?, x.get(1)?)))
        .optional()?;
    Ok(match last {
        Some((send, at)) if send == "Cancel" => at.parse().ok(),
        _ => None,
    })
}

/// Record a warning in force re-targeted to a new registry (`send` = `Retarget`, no changes of
/// its own): the targets as the warning now stands; returns its id.
pub fn record_retarget(
    tx: &Tx<'_>,
    lineage: &str,
    targets: &Targets,
    at: &str,
) -> anyhow::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO corr_decision (at, lineage, send, changes, reason, cause, targets)
         VALUES (?1, ?2, 'Retarget', '[]', 'the registry changed', NULL, ?3)",
    )?
    .execute(params![at, lineage, serde_json::to_string(targets)?])?;
    Ok(tx.last_insert_rowid()?)
}

/// Every message of one lineage, in order (for the after-action report).
pub fn of_lineage(conn: &Conn<'_>, lineage: &str) -> crate::store::sql::Result<Vec<StoredWarning>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM corr_warning WHERE lineage = ?1 ORDER BY version, id"
    ))?
    .query_map(params![lineage], stored)?
    .collect()
}

/// The targets of a lineage's last decision that was not a Cancel: the places, people to
/// move and shelters as the warning last stood (also after it was lifted).
pub fn last_targets(conn: &Conn<'_>, lineage: &str) -> anyhow::Result<Option<Targets>> {
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
pub fn targets_of(conn: &Conn<'_>, identifier: &str) -> anyhow::Result<Option<Targets>> {
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
pub fn decisions(conn: &Conn<'_>, lineage: &str) -> crate::store::sql::Result<Vec<StoredDecision>> {
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

/// Every lineage in the record: (key, its first message's time, whether its last message was
/// its lift). Retention keeps what a lifted warning's report reads, and nothing at all from
/// the start of one still in force.
pub fn lifetimes(conn: &Conn<'_>) -> anyhow::Result<Vec<(String, Timestamp, bool)>> {
    let rows: Vec<(String, String, bool)> = conn
        .prepare_cached(
            "SELECT w.lineage, s.first, w.msg_type = 'Cancel'
               FROM (SELECT lineage, min(sent) AS first, max(id) AS last
                       FROM corr_warning GROUP BY lineage) s
               JOIN corr_warning w ON w.id = s.last",
        )?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    rows.into_iter()
        .map(|(lineage, first, lifted)| {
            let at = first
                .parse::<Timestamp>()
                .map_err(|e| anyhow::anyhow!("warning {lineage}: time {first:?}: {e}"))?;
            Ok((lineage, at, lifted))
        })
        .collect()
}
