//! What comes back: receipts onto their parts, replies from phones for respond, and the
//! reconciliation of rows left mid-send by a stop.

use crate::store::sql::{Conn, OptionalExtension, Tx};
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;

use super::*;

/// A receipt whose id is the answer's id as it was (an HTTP gateway's report, a drill's
/// simulated network), matched to its part and message; `false` when no part has that id.
pub fn receipt(
    tx: &Tx<'_>,
    account: &str,
    smsc_id: &str,
    stat: &str,
    delivered: bool,
    failed: bool,
    now: Timestamp,
) -> anyhow::Result<bool> {
    receipt_by_key(
        tx,
        account,
        &ReceiptIds::Exact.receipt_key(smsc_id),
        stat,
        delivered,
        failed,
        now,
    )
}

/// A receipt matched by its key (the id read under its account's form, [`ReceiptIds`]) to its
/// part and message; `false` when no part has that key.
pub fn receipt_by_key(
    tx: &Tx<'_>,
    account: &str,
    key: &str,
    stat: &str,
    delivered: bool,
    failed: bool,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let at = stamp(now);
    // The part, and what its audit entries name about its message, in one read.
    let part: Option<(i64, i64, String, i64, About)> = tx
        .prepare_cached(
            "SELECT p.message, p.part, p.smsc_id, p.total, m.person, m.lineage, m.version, m.send
             FROM dispatch_part p JOIN dispatch_message m ON m.id = p.message
             WHERE p.account = ?1 AND p.id_key = ?2
             ORDER BY p.rowid DESC LIMIT 1",
        )?
        .query_row(params![account, key], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                About::read(r, 4)?,
            ))
        })
        .optional()?;
    let Some((message, part_no, smsc_id, total, about)) = part else {
        return Ok(false);
    };
    let smsc_id = smsc_id.as_str();
    let state = PartState::after(delivered, failed);
    tx.prepare_cached(
        "UPDATE dispatch_part SET state = ?1, receipt = ?2, at = ?3
         WHERE message = ?4 AND part = ?5",
    )?
    .execute(params![state, stat, at, message, part_no])?;
    // The message is delivered when every part is; failed when any part failed. A text of
    // one part is what this receipt says.
    let (parts, done, bad, total): (i64, i64, i64, i64) = if total == 1 {
        (1, i64::from(delivered), i64::from(failed && !delivered), 1)
    } else {
        tx.prepare_cached(
            "SELECT count(*), sum(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END), sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), max(total)
             FROM dispatch_part WHERE message = ?1",
        )?
        .query_row(params![message], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
    };
    if bad > 0 {
        let changed = tx
            .prepare_cached(
                "UPDATE dispatch_message SET state = 'failed', last_error = ?1, updated = ?2
             WHERE id = ?3 AND state IN ('accepted', 'delivered', 'delivery_unknown')",
            )?
            .execute(params![format!("receipt: {stat}"), at, message])?;
        if changed > 0 {
            audit_about(
                tx,
                message,
                &about,
                "sms.undelivered",
                now,
                serde_json::json!({
                    "account": account, "smsc_id": smsc_id, "stat": stat,
                }),
            )?;
        }
    } else if parts == total && done == total {
        let changed = tx
            .prepare_cached(
                "UPDATE dispatch_message SET state = 'delivered', updated = ?1
                 WHERE id = ?2 AND state IN ('accepted', 'delivery_unknown')",
            )?
            .execute(params![at, message])?;
        if changed > 0 {
            audit_about(
                tx,
                message,
                &about,
                "sms.delivered",
                now,
                serde_json::json!({
                    "account": account, "parts": parts,
                }),
            )?;
        }
    }
    Ok(true)
}

/// PostgreSQL: a batch's receipted parts (`[{"m": message, "n": part, "s": state, "r":
/// stat}]`); its keys also as an array, for the plan (see `claim::CLAIM_TAKE`).
pub const RECEIPT_PARTS: &str = "UPDATE dispatch_part AS p SET state = v.s, receipt = v.r, at = ?1
     FROM json_to_recordset(CAST(?2 AS json)) AS v(m bigint, n bigint, s text, r text)
     WHERE p.message = v.m AND p.part = v.n
       AND p.message = ANY(ARRAY(SELECT CAST(k.j ->> 'm' AS bigint)
                                 FROM json_array_elements(CAST(?2 AS json)) AS k(j)))";

/// PostgreSQL: the one-part texts a batch's receipts settle (`[{"m": message, "bad": 0 | 1,
/// "e": error}]`): what the receipt says, as [`receipt_by_key`] decides it for one.
pub const RECEIPT_MESSAGES: &str = "UPDATE dispatch_message AS m
     SET state = CASE WHEN v.bad = 1 THEN 'failed' ELSE 'delivered' END,
         last_error = CASE WHEN v.bad = 1 THEN v.e ELSE m.last_error END,
         updated = ?1
     FROM json_to_recordset(CAST(?2 AS json)) AS v(m bigint, bad bigint, e text)
     WHERE m.id = v.m
       AND ((v.bad = 1 AND (m.state || '') IN ('accepted', 'delivered', 'delivery_unknown'))
            OR (v.bad = 0 AND (m.state || '') IN ('accepted', 'delivery_unknown')))
       AND m.id = ANY(ARRAY(SELECT CAST(k.j ->> 'm' AS bigint)
                            FROM json_array_elements(CAST(?2 AS json)) AS k(j)))
     RETURNING m.id";

/// A receipt to match by its key ([`receipts_by_key`]).
#[derive(Debug, Clone, Copy)]
pub struct Keyed<'a> {
    /// The account it came on.
    pub account: &'a str,
    /// Its id read under the account's form ([`ReceiptIds::receipt_key`]).
    pub key: &'a str,
    /// Its stat word.
    pub stat: &'a str,
}

/// Receipts matched to their parts and messages as [`receipt_by_key`] matches each, in order;
/// for each, whether a part had its key. On PostgreSQL the receipts of one-part texts (most
/// of a centre's burst) are matched and applied a statement per table for the whole batch,
/// not four round trips each; a text of several parts, or a message named twice in the
/// batch, is taken one receipt at a time after them, in order. SQLite takes each in turn.
pub fn receipts_by_key(
    tx: &Tx<'_>,
    receipts: &[Keyed<'_>],
    now: Timestamp,
) -> anyhow::Result<Vec<bool>> {
    let one = |r: &Keyed<'_>| {
        let (delivered, failed) = stat_meaning(r.stat);
        receipt_by_key(tx, r.account, r.key, r.stat, delivered, failed, now)
    };
    if !tx.is_postgres() || receipts.len() < 2 {
        return receipts.iter().map(one).collect();
    }
    let wanted: Vec<_> = receipts
        .iter()
        .enumerate()
        .map(|(o, r)| serde_json::json!({ "o": o, "a": r.account, "k": r.key }))
        .collect();
    // Each receipt's part (the newest row of its key), and its message's particulars.
    let found: Vec<(usize, i64, i64, String, i64, About)> = tx
        .prepare_cached(
            "SELECT v.o, x.message, x.part, x.smsc_id, x.total, x.person, x.lineage, x.version,
                    x.send
             FROM json_to_recordset(CAST(?1 AS json)) AS v(o bigint, a text, k text)
             CROSS JOIN LATERAL (
                 SELECT p.message, p.part, p.smsc_id, p.total, m.person, m.lineage, m.version,
                        m.send
                 FROM dispatch_part p JOIN dispatch_message m ON m.id = p.message
                 WHERE p.account = v.a AND p.id_key = v.k
                 ORDER BY p.rowid DESC LIMIT 1) AS x",
        )?
        .query_map(params![serde_json::to_string(&wanted)?], |r| {
            Ok((
                r.get::<_, i64>(0)?.max(0) as usize,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                About::read(r, 5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut matched = vec![false; receipts.len()];
    let mut named: std::collections::HashMap<i64, usize> = Default::default();
    for f in &found {
        *named.entry(f.1).or_default() += 1;
    }
    // Together: one-part texts named once. One at a time: the rest, in order.
    let mut together = Vec::new();
    let mut alone = Vec::new();
    for f in found {
        let Some(r) = receipts.get(f.0) else { continue };
        matched[f.0] = true;
        if f.4 == 1 && named.get(&f.1) == Some(&1) {
            together.push((r, f));
        } else {
            alone.push(f.0);
        }
    }
    together.sort_by_key(|(_, f)| f.0);
    if !together.is_empty() {
        let at = stamp(now);
        let mut parts = Vec::with_capacity(together.len());
        let mut messages = Vec::new();
        for (r, (_, message, part, _, _, _)) in &together {
            let (delivered, failed) = stat_meaning(r.stat);
            let state = PartState::after(delivered, failed);
            parts.push(serde_json::json!({
                "m": message, "n": part, "s": state.as_str(), "r": r.stat,
            }));
            if delivered || failed {
                messages.push(serde_json::json!({
                    "m": message, "bad": i64::from(!delivered),
                    "e": format!("receipt: {}", r.stat),
                }));
            }
        }
        tx.prepare_cached(RECEIPT_PARTS)?
            .execute(params![at, serde_json::to_string(&parts)?])?;
        // A text of one part is what its receipt says (see `receipt_by_key`).
        let changed: std::collections::HashSet<i64> = if messages.is_empty() {
            Default::default()
        } else {
            tx.prepare_cached(RECEIPT_MESSAGES)?
                .query_map(params![at, serde_json::to_string(&messages)?], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let entries: Vec<_> = together
            .iter()
            .filter(|(_, f)| changed.contains(&f.1))
            .map(|(r, (_, message, _, smsc_id, _, about))| {
                let (delivered, _) = stat_meaning(r.stat);
                let (kind, detail) = if delivered {
                    (
                        "sms.delivered",
                        serde_json::json!({ "account": r.account, "parts": 1 }),
                    )
                } else {
                    (
                        "sms.undelivered",
                        serde_json::json!({
                            "account": r.account, "smsc_id": smsc_id, "stat": r.stat,
                        }),
                    )
                };
                about_entry(*message, about, kind, now, detail)
            })
            .collect();
        crate::store::audit::append_all(tx, &entries)?;
    }
    alone.sort_unstable();
    for o in alone {
        if let Some(r) = receipts.get(o) {
            one(r)?;
        }
    }
    Ok(matched)
}

/// Whether a receipt's stat word means delivered, or failed for good.
pub fn stat_meaning(stat: &str) -> (bool, bool) {
    (
        stat == "DELIVRD",
        matches!(
            stat,
            "UNDELIV" | "REJECTD" | "DELETED" | "UNKNOWN" | "EXPIRED"
        ),
    )
}

/// A receipt or reply as it came back.
#[derive(Debug, Clone, Default)]
pub struct Inbound<'a> {
    /// reply | orphan_receipt.
    pub kind: &'a str,
    /// Account it came in on.
    pub account: &'a str,
    /// Originator.
    pub source: &'a str,
    /// Destination.
    pub dest: &'a str,
    /// Text.
    pub text: &'a str,
    /// A receipt's message id.
    pub smsc_id: Option<&'a str>,
    /// A receipt's stat.
    pub stat: Option<&'a str>,
    /// A receipt's key (its id under the account's form; the id itself when `None`).
    pub id_key: Option<&'a str>,
    /// A reply handled with parts missing (they did not come within the wait).
    pub incomplete: bool,
}

/// Keep something that came back and matched nothing we sent: a reply from a phone, or a
/// receipt for an id not (yet) recorded.
pub fn inbound(tx: &Tx<'_>, i: &Inbound<'_>, now: Timestamp) -> anyhow::Result<i64> {
    // Respond reads these rows in id order behind a cursor: when several nodes insert, ids
    // must become visible in the order they were given, or a reply committed late under a
    // lower id would be passed over for good. Held until the commit.
    tx.serialise("stormbell.dispatch_inbound")?;
    // Its id comes back with the insert (not a second round trip for `lastval()`).
    Ok(tx
        .prepare_cached(
            "INSERT INTO dispatch_inbound
               (at, kind, account, source, dest, text, smsc_id, stat, id_key, incomplete)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             RETURNING id",
        )?
        .query_row(
            params![
                stamp(now),
                i.kind,
                i.account,
                i.source,
                i.dest,
                i.text,
                i.smsc_id,
                i.stat,
                i.id_key.or(i.smsc_id.map(str::trim)),
                i.incomplete,
            ],
            |r| r.get(0),
        )?)
}

/// Whose rows left in `submitting` are taken back by [`reconcile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every row: one machine at the daemon's start, before any channel runs.
    Every,
    /// One channel's rows (its `claimed_by`, as [`crate::store::Store::qualified`] wrote
    /// it): a channel restarted by the supervisor, while the others still have rows in flight.
    Claimant(String),
    /// Every row node `node` claimed (`…@node`): at that node's own start, or once the leader
    /// finds it dead, while the other nodes' rows stay in flight.
    Node(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Every => f.write_str("every channel"),
            Scope::Claimant(c) => write!(f, "channel {c}"),
            Scope::Node(n) => write!(f, "node {n}"),
        }
    }
}

/// At start (and at each channel's restart): rows left in `submitting` by a stop mid-send may
/// or may not have reached the SMSC, and SMPP cannot be asked. `scope` says whose rows these
/// are ([`Scope`]): a channel restarted by the supervisor takes back only its own, never rows
/// another channel or node still has in flight. They wait `grace` in `reconciling` for a
/// receipt that proves the SMSC had them ([`recover`]: the SMSC delivers receipts again to a
/// new bind); whatever is still unproven then is sent again and counted as `uncertain`.
/// Returns how many rows wait.
pub fn reconcile(
    tx: &Tx<'_>,
    scope: &Scope,
    now: Timestamp,
    grace: SignedDuration,
) -> anyhow::Result<usize> {
    let (until, at) = (stamp(now.checked_add(grace).unwrap_or(now)), stamp(now));
    // One claimant exactly, or every claimant ending in `@node` (compared as it is: a node's
    // name may hold LIKE's wildcards), or, with neither, every row.
    let (claimant, suffix) = match scope {
        Scope::Every => (None, None),
        Scope::Claimant(c) => (Some(c.clone()), None),
        Scope::Node(node) => (None, Some(format!("@{node}"))),
    };
    let n = tx
        .prepare_cached(
            "UPDATE dispatch_message SET state = 'reconciling', not_before = ?1, updated = ?2,
                    last_error = 'stormbell stopped while sending: waiting for a receipt'
             WHERE state = 'submitting'
               AND ((CAST(?3 AS TEXT) IS NULL AND CAST(?4 AS TEXT) IS NULL)
                    OR claimed_by = ?3
                    OR substr(claimed_by, length(claimed_by) - length(CAST(?4 AS TEXT)) + 1) = ?4)",
        )?
        .execute(params![until, at, claimant, suffix])?;
    Ok(n)
}

/// A receipt nobody's part matched: if it is for a number whose message was mid-send at a
/// restart, it proves the SMSC had that message — record the part from the receipt instead of
/// sending again. `row` names the message when the receipt says so (an HTTP gateway's report
/// carries our id); otherwise the oldest reconciling message to `number` is taken. Returns
/// whether it was used.
pub fn recover(
    tx: &Tx<'_>,
    row: Option<i64>,
    number: &str,
    account: &str,
    smsc_id: &str,
    stat: &str,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let found: Option<(i64, i64)> = match row {
        Some(id) => tx
            .query_row(
                "SELECT id, coalesce(sent_segments, segments) FROM dispatch_message
                 WHERE id = ?1 AND state = 'reconciling'",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
        None => {
            let Some(n) = normalise_mobile(number) else {
                return Ok(false);
            };
            tx.prepare_cached(
                "SELECT id, coalesce(sent_segments, segments) FROM dispatch_message
                 WHERE address = ?1 AND state = 'reconciling' ORDER BY id LIMIT 1",
            )?
            .query_row(params![n], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        }
    };
    let Some((id, total)) = found else {
        return Ok(false);
    };
    let at = stamp(now);
    let have: i64 = tx
        .prepare_cached("SELECT count(*) FROM dispatch_part WHERE message = ?1")?
        .query_row(params![id], |r| r.get(0))?;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO dispatch_part
           (message, part, total, account, smsc_id, state, at, id_key)
         VALUES (?1, ?2, ?3, ?4, ?5, 'accepted', ?6, ?5)",
    )?
    .execute(params![id, have + 1, total, account, smsc_id, at])?;
    if have + 1 >= total {
        tx.prepare_cached(
            "UPDATE dispatch_message SET state = 'accepted', account = ?1, updated = ?2,
                    last_error = 'outcome recovered from a receipt after a restart'
             WHERE id = ?3",
        )?
        .execute(params![account, at, id])?;
    }
    let (delivered, failed) = stat_meaning(stat);
    receipt(tx, account, smsc_id, stat, delivered, failed, now)?;
    Ok(true)
}

/// A reply from a phone, as stored by the SMS channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// `dispatch_inbound.id`.
    pub id: i64,
    /// When it was stored.
    pub at: Timestamp,
    /// The number it came from (as the SMSC gave it).
    pub source: String,
    /// What it said.
    pub text: String,
    /// Parts of it never came (it was handled with what did).
    pub incomplete: bool,
}

/// Replies from phones stored after `after`, oldest first (respond reads them with its own
/// cursor).
pub fn replies_after(c: &Conn<'_>, after: i64, limit: usize) -> anyhow::Result<Vec<Reply>> {
    let mut st = c.prepare_cached(
        "SELECT id, at, source, text, incomplete FROM dispatch_inbound
         WHERE kind = 'reply' AND id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = st
        .query_map(params![after, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })?
        .collect::<Result<Vec<(i64, String, String, String, bool)>, _>>()?;
    rows.into_iter()
        .map(|(id, at, source, text, incomplete)| {
            Ok(Reply {
                id,
                at: at.parse()?,
                source,
                text,
                incomplete,
            })
        })
        .collect()
}

/// What was last sent to a number: the person it belongs to and the warning (the carrier's,
/// when several rode in one text), for matching a reply to "their latest warning".
#[derive(Debug, Clone, PartialEq)]
pub struct LastSent {
    /// Row id.
    pub message: i64,
    /// The person.
    pub person: String,
    /// Decision.
    pub decision: i64,
    /// hazard:area.
    pub lineage: String,
    /// Version.
    pub version: i64,
    /// When it was sent (last state change).
    pub at: Timestamp,
}

/// The latest warning message that went out to `address` (11 digits), if any.
pub fn last_sent_to(c: &Conn<'_>, address: &str) -> anyhow::Result<Option<LastSent>> {
    let row = c
        .prepare_cached(
            "SELECT id, person, decision, lineage, version, updated FROM dispatch_message
             WHERE address = ?1 AND channel = 'sms' AND purpose = 'warning'
               AND state IN ('submitting', 'accepted', 'delivered', 'delivery_unknown',
                             'reconciling')
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![address], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .optional()?;
    row.map(|(message, person, decision, lineage, version, at)| {
        Ok(LastSent {
            message,
            person,
            decision,
            lineage,
            version,
            at: at.parse()?,
        })
    })
    .transpose()
}

/// Delete up to `limit` rows of what came back from SMS centres that are older than `cutoff`
/// (a store stamp) and done with: replies already handled (up to `handled`, the last reply the
/// respond stage has acted on; their answers are respond's rows),
/// receipts for ids nobody sent (kept for a human until then), and parts of long replies whose
/// wait ended long ago. The state each receipt moved a message to is on the message itself,
/// which is kept. Returns (table, rows).
pub fn prune(
    tx: &Tx<'_>,
    cutoff: &str,
    handled: i64,
    limit: usize,
) -> crate::store::sql::Result<Vec<(&'static str, usize)>> {
    let limit = limit as i64;
    let inbound = tx
        .prepare_cached(
            "DELETE FROM dispatch_inbound WHERE id IN
               (SELECT id FROM dispatch_inbound
                 WHERE at < ?1
                   AND ((kind = 'reply' AND id <= ?3) OR kind = 'orphan_receipt' OR consumed = 1)
                 LIMIT ?2)",
        )?
        .execute(params![cutoff, limit, handled])?;
    let parts = tx
        .prepare_cached(
            "DELETE FROM dispatch_mo_part WHERE rowid IN
               (SELECT rowid FROM dispatch_mo_part WHERE at < ?1 LIMIT ?2)",
        )?
        .execute(params![cutoff, limit])?;
    Ok(vec![
        ("dispatch_inbound", inbound),
        ("dispatch_mo_part", parts),
    ])
}
