//! The voice channel's rows: a call to a person is a message of channel `voice` (queued,
//! claimed and retried like a text), and every attempt to ring them is a `dispatch_call` row
//! saying how it ended. A key pressed is read from there by respond, as an answer to the
//! message's own warning.

use crate::store::sql::{Conn, Tx};
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;

use super::*;

crate::store::sql_enum! {
    /// How one ring ended (`dispatch_call.outcome`).
    pub enum CallOutcome {
        /// Answered, and a key pressed.
        Acknowledged = "acknowledged",
        /// Answered; no key before the prompt ended, or they hung up.
        AnsweredNoKey = "answered_no_key",
        /// Busy (486, 600).
        Busy = "busy",
        /// Rang out (cancelled after the ring time; 408, 480, 487).
        NoAnswer = "no_answer",
        /// Declined (603).
        Rejected = "rejected",
        /// The number or the trunk could not be reached (404, 5xx, no response).
        Unreachable = "unreachable",
        /// Anything else (a refused login, no common codec), with the reason.
        Failed = "failed",
    }
}

impl CallOutcome {
    /// Whether the person was reached (the message is delivered: they heard it).
    pub fn reached(self) -> bool {
        matches!(self, CallOutcome::Acknowledged | CallOutcome::AnsweredNoKey)
    }
}

/// One ring, as the voice channel hands it to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    /// The trunk it went through.
    pub trunk: String,
    /// How it ended.
    pub outcome: CallOutcome,
    /// The SIP status code, if any.
    pub code: Option<u16>,
    /// The key pressed.
    pub key: Option<char>,
    /// How the key came (`rfc4733`, `info`).
    pub via: Option<String>,
    /// Audio played before the key or the end, in ms.
    pub heard_ms: Option<i64>,
    /// What went wrong, in words.
    pub detail: Option<String>,
}

/// What one claimed call came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Called {
    /// It was placed and ended so.
    Rang(Ring),
    /// It was not placed (the person is on another of our calls right now, or no trunk is
    /// configured for the number): back to the queue after `after`, not counted as an attempt.
    NotPlaced {
        /// Why.
        reason: String,
        /// When to try again.
        after: SignedDuration,
    },
}

/// How the voice channel retries: attempts in all, and the pause after each kind of miss.
#[derive(Debug, Clone, PartialEq)]
pub struct RingRules {
    /// Rings before the message fails for good.
    pub attempts: u32,
    /// After a busy line.
    pub busy: SignedDuration,
    /// After no answer.
    pub no_answer: SignedDuration,
    /// After the number or trunk could not be reached, or the call failed.
    pub unreachable: SignedDuration,
}

impl Default for RingRules {
    fn default() -> RingRules {
        RingRules {
            attempts: 3,
            busy: SignedDuration::from_mins(2),
            no_answer: SignedDuration::from_mins(3),
            unreachable: SignedDuration::from_mins(5),
        }
    }
}

/// Queue a call to a person (channel `voice`): the same fields as a text's [`Notice`], `text`
/// being what is spoken after the alert tone. `None` when one with the same purpose was
/// queued already (a step fired twice rings once), or the number is unusable.
pub fn ring(tx: &Tx<'_>, n: &Notice, now: Timestamp) -> anyhow::Result<Option<i64>> {
    insert_notice(tx, n, "voice", now)
}

/// Record what became of claimed calls, in one transaction: each ring as a `dispatch_call`
/// row and an audit entry; the message delivered when the person was reached, failed when
/// they declined or the attempts ran out, queued again otherwise.
pub fn record_rings(
    tx: &Tx<'_>,
    results: &[(i64, Called)],
    now: Timestamp,
    rules: &RingRules,
) -> anyhow::Result<()> {
    let at = stamp(now);
    for (id, called) in results {
        let ring = match called {
            Called::NotPlaced { reason, after } => {
                tx.prepare_cached(
                    "UPDATE dispatch_message SET state = 'queued', not_before = ?1,
                            attempts = attempts - 1, last_error = ?2, updated = ?3
                     WHERE id = ?4 AND state = 'submitting'",
                )?
                .execute(params![
                    stamp(now.checked_add(*after).unwrap_or(now)),
                    reason,
                    at,
                    id
                ])?;
                continue;
            }
            Called::Rang(r) => r,
        };
        let attempts: Option<i64> = crate::store::sql::OptionalExtension::optional(
            tx.prepare_cached(
                "SELECT attempts FROM dispatch_message WHERE id = ?1 AND state = 'submitting'",
            )?
            .query_row(params![id], |r| r.get(0)),
        )?;
        // Recorded already (or taken back by a restart's reconciliation): once only.
        let Some(attempts) = attempts else {
            continue;
        };
        tx.prepare_cached(
            "INSERT INTO dispatch_call (message, trunk, attempt, outcome, code, key, via, heard_ms, detail, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            id,
            ring.trunk,
            attempts,
            ring.outcome,
            ring.code,
            ring.key.map(String::from),
            ring.via,
            ring.heard_ms,
            ring.detail,
            at
        ])?;
        let reason = ring
            .detail
            .clone()
            .unwrap_or_else(|| ring.outcome.as_str().to_string());
        let (state, retry) = match ring.outcome {
            o if o.reached() => ("delivered", None),
            CallOutcome::Rejected => ("failed", None),
            _ if attempts >= i64::from(rules.attempts) => ("failed", None),
            CallOutcome::Busy => ("queued", Some(rules.busy)),
            CallOutcome::NoAnswer => ("queued", Some(rules.no_answer)),
            _ => ("queued", Some(rules.unreachable)),
        };
        let error = match (state, ring.outcome.reached()) {
            (_, true) => None,
            ("failed", false) if ring.outcome != CallOutcome::Rejected => {
                Some(format!("gave up after {attempts} call(s): {reason}"))
            }
            _ => Some(reason.clone()),
        };
        let when = retry.map_or(at.clone(), |r| stamp(now.checked_add(r).unwrap_or(now)));
        tx.prepare_cached(
            "UPDATE dispatch_message SET state = ?1, account = ?2, last_error = ?3, updated = ?4,
                    not_before = CASE WHEN ?1 = 'queued' THEN ?5 ELSE not_before END
             WHERE id = ?6",
        )?
        .execute(params![state, ring.trunk, error, at, when, id])?;
        audit(
            tx,
            *id,
            &format!("voice.{}", ring.outcome.as_str()),
            now,
            serde_json::json!({
                "trunk": ring.trunk, "attempt": attempts, "code": ring.code,
                "key": ring.key.map(String::from), "heard_ms": ring.heard_ms,
                "detail": ring.detail, "then": state,
            }),
        )?;
    }
    Ok(())
}

/// A key pressed on a call, as respond reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// `dispatch_call.id` (respond's cursor).
    pub id: i64,
    /// The key.
    pub key: String,
    /// When the call ended.
    pub at: Timestamp,
    /// The number rung.
    pub address: String,
    /// The message the call carried, and its warning: what the key answers.
    pub about: LastSent,
}

/// A key's row as read: ring id, key, time, number, message, person, lineage, version,
/// decision.
type KeyRow = (i64, String, String, String, i64, String, String, i64, i64);

/// Keys pressed after ring `after` (a `dispatch_call` id), oldest first, at most `limit`.
pub fn keys_after(c: &Conn<'_>, after: i64, limit: usize) -> anyhow::Result<Vec<Key>> {
    let rows: Vec<KeyRow> = c
        .prepare_cached(
            "SELECT k.id, k.key, k.at, m.address, m.id, m.person, m.lineage, m.version, m.decision
             FROM dispatch_call k JOIN dispatch_message m ON m.id = k.message
             WHERE k.id > ?1 AND k.key IS NOT NULL ORDER BY k.id LIMIT ?2",
        )?
        .query_map(params![after, limit as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, key, at, address, message, person, lineage, version, decision) in rows {
        let at: Timestamp = at.parse()?;
        out.push(Key {
            id,
            key,
            at,
            address,
            about: LastSent {
                message,
                person,
                decision,
                lineage,
                version,
                at,
            },
        });
    }
    Ok(out)
}

/// The last ring recorded (respond's cursor starts a new store here, not at 0: none exist).
pub fn last_ring(c: &Conn<'_>) -> anyhow::Result<i64> {
    Ok(
        c.prepare_cached("SELECT coalesce(max(id), 0) FROM dispatch_call")?
            .query_row((), |r| r.get(0))?,
    )
}

/// One ring as a record or report shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RingRecord {
    /// Row id.
    pub id: i64,
    /// The message.
    pub message: i64,
    /// Its person.
    pub person: String,
    /// Its warning.
    pub lineage: String,
    /// Which attempt.
    pub attempt: i64,
    /// How it ended.
    pub outcome: CallOutcome,
    /// SIP status code.
    pub code: Option<i64>,
    /// The key pressed.
    pub key: Option<String>,
    /// When it ended.
    pub at: String,
}

/// Every ring, in order.
pub fn all_rings(c: &Conn<'_>) -> anyhow::Result<Vec<RingRecord>> {
    Ok(c.prepare(
        "SELECT k.id, k.message, m.person, m.lineage, k.attempt, k.outcome, k.code, k.key, k.at
         FROM dispatch_call k JOIN dispatch_message m ON m.id = k.message ORDER BY k.id",
    )?
    .query_map((), |r| {
        Ok(RingRecord {
            id: r.get(0)?,
            message: r.get(1)?,
            person: r.get(2)?,
            lineage: r.get(3)?,
            attempt: r.get(4)?,
            outcome: r.get(5)?,
            code: r.get(6)?,
            key: r.get(7)?,
            at: r.get(8)?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

/// What a person's calls about one warning came to, for the office's board.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rung {
    /// Their phone was rung (a ring was recorded).
    pub rung: bool,
    /// They picked up (a ring reached them).
    pub picked_up: bool,
    /// They pressed a key.
    pub pressed: bool,
}

/// Per warning lineage of `lineages`, per person: see [`Rung`]. Calls to town officers about
/// someone are theirs, not the silent person's.
pub fn rings_by_lineage(
    c: &Conn<'_>,
    lineages: &[String],
) -> anyhow::Result<std::collections::HashMap<String, std::collections::HashMap<String, Rung>>> {
    let rows = crate::store::sql::query_in(
        c,
        lineages,
        |list| {
            format!(
                "SELECT m.lineage, m.person,
                    max(CASE WHEN k.outcome IN ('acknowledged', 'answered_no_key') THEN 1 ELSE 0 END),
                    max(CASE WHEN k.outcome = 'acknowledged' THEN 1 ELSE 0 END)
                 FROM dispatch_call k JOIN dispatch_message m ON m.id = k.message
                 WHERE m.lineage IN ({list})
                 GROUP BY m.lineage, m.person"
            )
        },
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                Rung {
                    rung: true,
                    picked_up: r.get(2)?,
                    pressed: r.get(3)?,
                },
            ))
        },
    )?;
    let mut out: std::collections::HashMap<String, std::collections::HashMap<String, Rung>> =
        Default::default();
    for (lineage, person, r) in rows {
        out.entry(lineage).or_default().insert(person, r);
    }
    Ok(out)
}

/// Rings recorded, by outcome (every outcome listed, zero included), for `status` and
/// `/metrics`.
pub fn ring_counts(c: &Conn<'_>) -> anyhow::Result<Vec<(CallOutcome, i64)>> {
    let found: std::collections::HashMap<String, i64> = c
        .prepare_cached("SELECT outcome, count(*) FROM dispatch_call GROUP BY outcome")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(CallOutcome::ALL
        .iter()
        .map(|o| (*o, found.get(o.as_str()).copied().unwrap_or(0)))
        .collect())
}

/// Calls about respond's call `call` still waiting to ring (a retry after no answer, a town
/// officer's call about the person) are withdrawn: the person answered, by whatever channel.
/// Returns how many.
pub fn withdraw_rings_of(tx: &Tx<'_>, call: i64, now: Timestamp) -> anyhow::Result<usize> {
    let own = format!("call:{call}:%");
    let town = format!("call_town:{call}:%");
    Ok(tx
        .prepare_cached(
            "UPDATE dispatch_message SET state = 'superseded', updated = ?3,
                    last_error = 'the person answered: not rung (again)'
             WHERE channel = 'voice' AND state = 'queued' AND (purpose LIKE ?1 OR purpose LIKE ?2)",
        )?
        .execute(params![own, town, stamp(now)])?)
}

/// Whether rings of `lineage` queued by a decision before `decision` wait to be sent (what
/// [`withdraw_rings`] would withdraw for anyone): a warning's new decision asks once, and
/// spares each person's withdrawal when there is none.
pub fn rings_queued_before(tx: &Tx<'_>, lineage: &str, decision: i64) -> anyhow::Result<bool> {
    Ok(tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM dispatch_message
                            WHERE channel = 'voice' AND state = 'queued' AND lineage = ?1
                              AND decision < ?2)",
        )?
        .query_row(params![lineage, decision], |r| r.get(0))?)
}

/// Calls of warning `lineage` (one person's, or everyone's) queued by decisions before
/// `decision` are withdrawn: the calls they chase were closed (a raise asks again; a lift ends
/// the warning). Returns how many.
pub fn withdraw_rings(
    tx: &Tx<'_>,
    lineage: &str,
    person: Option<&str>,
    decision: i64,
    now: Timestamp,
) -> anyhow::Result<usize> {
    Ok(tx
        .prepare_cached(
            "UPDATE dispatch_message SET state = 'superseded', updated = ?4,
                    last_error = 'the call it chased was closed'
             WHERE channel = 'voice' AND state = 'queued' AND lineage = ?1
               AND (person = ?2 OR CAST(?2 AS TEXT) IS NULL) AND decision < ?3",
        )?
        .execute(params![lineage, person, decision, stamp(now)])?)
}
