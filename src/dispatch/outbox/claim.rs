//! Rows out: a channel claims what is due (merging a person's texts, holding what the cap
//! holds, expiring what is stale) and records what became of each send.

use crate::store::sql::{OptionalExtension, Tx};
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;

use super::*;

/// A message claimed for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// Row id (the carrier, when others were merged into it).
    pub id: i64,
    /// Person.
    pub person: String,
    /// Number.
    pub address: String,
    /// Final text.
    pub text: String,
    /// Its parts, as the claim counted them (and stored them in `sent_segments`).
    pub segments: u32,
    /// Rows merged into it.
    pub merged: Vec<i64>,
    /// Parts of this text the centre has already accepted (an earlier attempt stopped
    /// between parts): the send resumes after them, with the same concatenation reference, so
    /// the phone puts one text together.
    pub accepted_parts: u32,
}

struct Row {
    purpose: String,
    id: i64,
    person: String,
    address: String,
    text: String,
    segments: i64,
    raises: bool,
    tier: String,
    words: String,
    sent_text: Option<String>,
    sent_segments: Option<i64>,
}

/// Claim up to `limit` messages of a channel that are due, marking them `submitting`.
///
/// Per person, the highest-priority due row carries every other queued row of that person
/// (one message naming all the warnings, highest tier first). The per-person cap holds back
/// a message that does not raise the danger; it is not held back when it does.
pub fn claim(
    tx: &Tx<'_>,
    channel: &str,
    claimed_by: &str,
    limit: usize,
    now: Timestamp,
    policy: &Policy,
) -> anyhow::Result<Vec<Claimed>> {
    let at = stamp(now);
    // Several nodes claim from one queue on PostgreSQL: their write batches go one at a time
    // (the store's write lock), and the rows a claim takes are locked `FOR UPDATE SKIP LOCKED`
    // as well, so that no claim ever takes or waits for a row another transaction holds.
    housekeeping(tx, channel, &at, now, policy)?;
    let mut st = tx.prepare_cached(
        "SELECT id, person, address, text, segments, raises, tier, words, purpose, sent_text,
                sent_segments
         FROM dispatch_message
         WHERE channel = ?1 AND state = 'queued' AND not_before <= ?2
         ORDER BY priority DESC, id LIMIT ?3 FOR UPDATE SKIP LOCKED",
    )?;
    let due: Vec<Row> = st
        .query_map(params![channel, at, (limit * 2).max(16) as i64], |r| {
            Ok(Row {
                id: r.get(0)?,
                person: r.get(1)?,
                address: r.get(2)?,
                text: r.get(3)?,
                segments: r.get(4)?,
                raises: r.get(5)?,
                tier: r.get(6)?,
                words: r.get(7)?,
                purpose: r.get(8)?,
                sent_text: r.get(9)?,
                sent_segments: r.get(10)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    let mut taken = std::collections::HashSet::new();
    let since = stamp(now.checked_sub(policy.cap_window).unwrap_or(now));
    let mut ask = Lookups::read(tx, channel, &since, &due)?;
    // PostgreSQL: the rows taken, and those riding along, written after the loop.
    let (mut taking, mut riding) = (Vec::new(), Vec::new());
    for row in due {
        if out.len() >= limit {
            break;
        }
        if !taken.insert(row.person.clone()) {
            continue;
        }
        // The cap: how many went to this person lately, and the highest tier among them.
        let (recent, oldest, top) = ask.lately(tx, channel, &since, &row.person)?;
        let rank = Tier::parse(&row.tier).map_or(0, |t| t as i64 + 1);
        let higher = top.is_none_or(|top| rank > top);
        if recent >= i64::from(policy.cap_per_person) && !(row.raises || higher) {
            let until = oldest
                .as_deref()
                .and_then(parse_ts)
                .and_then(|o| o.checked_add(policy.cap_window).ok())
                .unwrap_or(now);
            // Only what does not raise the danger waits (a raise in retry backoff must not).
            tx.prepare_cached(
                "UPDATE dispatch_message SET not_before = ?1, updated = ?2,
                        last_error = 'held by the per-person cap'
                 WHERE id IN (
                   SELECT id FROM dispatch_message
                   WHERE channel = ?3 AND person = ?4 AND state = 'queued' AND raises = 0
                     AND not_before < ?1 FOR UPDATE SKIP LOCKED)",
            )?
            .execute(params![stamp(until), at, channel, row.person])?;
            continue;
        }
        // Part of this text is out already: the rest goes as it was (the same text, carrying
        // what it carried), never a new text whose parts would not fit the ones on the phone.
        // (Only a text claimed before can have parts out.)
        let accepted_parts = if row.sent_text.is_some() {
            accepted_parts(tx, row.id)?
        } else {
            0
        };
        if accepted_parts > 0
            && let (Some(text), Some(segments)) = (&row.sent_text, row.sent_segments)
        {
            tx.prepare_cached(
                "UPDATE dispatch_message SET state = 'submitting', attempts = attempts + 1,
                        updated = ?1, claimed_by = ?2 WHERE id = ?3",
            )?
            .execute(params![at, claimed_by, row.id])?;
            let merged: Vec<i64> = tx
                .prepare_cached(
                    "SELECT id FROM dispatch_message WHERE merged_into = ?1 AND state = 'merged'",
                )?
                .query_map(params![row.id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            out.push(Claimed {
                id: row.id,
                person: row.person,
                address: row.address,
                text: text.clone(),
                segments: u32::try_from(segments).unwrap_or(0),
                merged,
                accepted_parts,
            });
            continue;
        }
        // Everything else queued for this person rides along (warnings only: a notice has
        // its own words and goes alone).
        let mut others: Vec<(i64, String)> = if row.purpose == "warning" {
            ask.riders(tx, channel, &row.person, row.id)?
        } else {
            Vec::new()
        };
        let (text, segments) = if others.is_empty() {
            (row.text.clone(), row.segments as u32)
        } else {
            let mut items: Vec<Words> = vec![serde_json::from_str(&row.words)?];
            for (_, w) in &others {
                items.push(serde_json::from_str(w)?);
            }
            let link = match &policy.link_base {
                Some(base) => crate::dispatch::link::of_message(tx, row.id)?
                    .map(|l| format!("{base}{}", l.token)),
                None => None,
            };
            let text = render_merged(&items, policy, link.as_deref())?;
            let (_, n) = crate::dispatch::sms::encode::segments(&text);
            (text, n as u32)
        };
        if tx.is_postgres() {
            // Written together after the loop: a round trip per row was most of a claim.
            taking.push(serde_json::json!({ "i": row.id, "t": text, "s": segments }));
            riding.extend(
                others
                    .iter()
                    .map(|(id, _)| serde_json::json!({ "i": id, "c": row.id })),
            );
        } else {
            tx.prepare_cached(
                "UPDATE dispatch_message SET state = 'submitting', attempts = attempts + 1,
                        sent_text = ?1, sent_segments = ?2, updated = ?3, claimed_by = ?5
                 WHERE id = ?4",
            )?
            .execute(params![text, segments, at, row.id, claimed_by])?;
            for (id, _) in &others {
                tx.prepare_cached(
                    "UPDATE dispatch_message SET state = 'merged', merged_into = ?1, updated = ?2
                     WHERE id = ?3",
                )?
                .execute(params![row.id, at, id])?;
            }
        }
        out.push(Claimed {
            id: row.id,
            person: row.person,
            address: row.address,
            text,
            segments,
            merged: others.drain(..).map(|(id, _)| id).collect(),
            accepted_parts: 0,
        });
    }
    if !taking.is_empty() {
        tx.prepare_cached(CLAIM_TAKE)?.execute(params![
            at,
            claimed_by,
            serde_json::to_string(&taking)?
        ])?;
    }
    if !riding.is_empty() {
        tx.prepare_cached(CLAIM_RIDE)?
            .execute(params![at, serde_json::to_string(&riding)?])?;
    }
    Ok(out)
}

// The statements below apply a batch (rows as one JSON parameter) to the rows it names. Each
// also names its keys as an array (`= ANY(ARRAY(…))`): PostgreSQL guesses a JSON function
// yields 100 rows, and for a table of a few thousand rows the plan it keeps for a prepared
// statement then walked the whole table for every batch (a claim of one text at a
// contract's pace: 1.2 ms, most of the server's time); an array it guesses at ten, and reads
// those from the primary key. A condition on the state is written `state || ''`, which no
// index holds: statistics from before the texts went out count few in flight, and the plan
// would then walk every text in that state instead. `tests/it/dispatch_outbox.rs` checks
// their plans.

/// PostgreSQL: the claimed rows, each with the words it goes out with
/// (`[{"i": id, "t": text, "s": segments}]`).
pub const CLAIM_TAKE: &str = "UPDATE dispatch_message AS m
     SET state = 'submitting', attempts = m.attempts + 1, sent_text = v.t, sent_segments = v.s,
         updated = ?1, claimed_by = ?2
     FROM json_to_recordset(CAST(?3 AS json)) AS v(i bigint, t text, s bigint)
     WHERE m.id = v.i
       AND m.id = ANY(ARRAY(SELECT CAST(k.j ->> 'i' AS bigint)
                            FROM json_array_elements(CAST(?3 AS json)) AS k(j)))";

/// PostgreSQL: the texts that ride along with a claimed one (`[{"i": id, "c": carrier}]`).
pub const CLAIM_RIDE: &str = "UPDATE dispatch_message AS m
     SET state = 'merged', merged_into = v.c, updated = ?1
     FROM json_to_recordset(CAST(?2 AS json)) AS v(i bigint, c bigint)
     WHERE m.id = v.i
       AND m.id = ANY(ARRAY(SELECT CAST(k.j ->> 'i' AS bigint)
                            FROM json_array_elements(CAST(?2 AS json)) AS k(j)))";

/// PostgreSQL: a run of plain acceptances (`[{"i": id, "a": account, "u": uncertain}]`), with
/// the rows' particulars for their audit entries.
pub const ACCEPTED_RUN: &str = "UPDATE dispatch_message AS m
     SET state = 'accepted', account = v.a, updated = ?1, last_error = NULL,
         uncertain = m.uncertain + v.u
     FROM json_to_recordset(CAST(?2 AS json)) AS v(i bigint, a text, u bigint)
     WHERE m.id = v.i AND (m.state || '') = 'submitting'
       AND m.id = ANY(ARRAY(SELECT CAST(k.j ->> 'i' AS bigint)
                            FROM json_array_elements(CAST(?2 AS json)) AS k(j)))
     RETURNING m.id, m.person, m.lineage, m.version, m.send";

/// PostgreSQL: the parts kept before for parts sent again (`[{"m": message, "n": part}]`).
pub const PARTS_REPLACED: &str = "DELETE FROM dispatch_part AS p
     USING json_to_recordset(CAST(?1 AS json)) AS v(m bigint, n bigint)
     WHERE p.message = v.m AND p.part = v.n
       AND p.message = ANY(ARRAY(SELECT CAST(k.j ->> 'm' AS bigint)
                                 FROM json_array_elements(CAST(?1 AS json)) AS k(j)))";

/// A person's recent texts as the cap counts them: how many, the oldest one's time, the
/// highest tier among them (ranks 1–4, blue to red).
type Lately = (i64, Option<String>, Option<i64>);

/// What a claim asks about each person it claims for: the cap's count, and the other texts
/// queued for them that ride along. On PostgreSQL read for every person of the claim at once
/// (a statement per person was most of a claim's round trips: 298 texts/s against 880 after);
/// on SQLite, in the process, a statement per person as it is asked (cheaper than the
/// batched reads there). Each person is claimed at most once, and nothing the claim writes
/// for one person changes another's answers.
enum Lookups {
    /// PostgreSQL: read ahead.
    Batched {
        lately: std::collections::HashMap<String, Lately>,
        riders: std::collections::HashMap<String, Vec<(i64, String)>>,
    },
    /// SQLite: asked per person.
    PerPerson,
}

impl Lookups {
    fn read(tx: &Tx<'_>, channel: &str, since: &str, due: &[Row]) -> anyhow::Result<Lookups> {
        if !tx.is_postgres() {
            return Ok(Lookups::PerPerson);
        }
        if due.is_empty() {
            // Nothing to ask about (most claims of a quiet queue): no round trip.
            return Ok(Lookups::Batched {
                lately: Default::default(),
                riders: Default::default(),
            });
        }
        let mut names: Vec<&str> = Vec::new();
        let mut named = std::collections::HashSet::new();
        for r in due {
            if named.insert(r.person.as_str()) {
                names.push(r.person.as_str());
            }
        }
        let names = serde_json::to_string(&names)?;
        // Person by person (LATERAL), each the lookup a statement per person made: a join
        // against the list is planned by the table's statistics, which lag behind a storm's
        // sends (PostgreSQL then read every text sent so far for each claim).
        let lately: std::collections::HashMap<String, Lately> = tx
            .prepare_cached(
                "SELECT n.value, a.recent, a.oldest, a.top
                 FROM json_array_elements_text(CAST(?2 AS json)) AS n
                 CROSS JOIN LATERAL (
                   SELECT count(*) AS recent, min(updated) AS oldest,
                          max(CASE tier WHEN 'red' THEN 4 WHEN 'orange' THEN 3
                                        WHEN 'yellow' THEN 2 ELSE 1 END) AS top
                   FROM dispatch_message
                   WHERE channel = ?1 AND person = n.value AND updated >= ?3
                     AND state IN ('submitting', 'accepted', 'delivered', 'delivery_unknown'))
                   AS a",
            )?
            .query_map(params![channel, names, since], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
            })?
            .collect::<Result<_, _>>()?;
        let mut riders: std::collections::HashMap<String, Vec<(i64, String)>> = Default::default();
        let mut st = tx.prepare_cached(
            // Person by person, for the same reason; the rows locked as they are read.
            "SELECT n.value, m.id, m.words
             FROM json_array_elements_text(CAST(?2 AS json)) AS n
             CROSS JOIN LATERAL (
               SELECT id, words, priority FROM dispatch_message
               WHERE channel = ?1 AND person = n.value AND state = 'queued' AND purpose = 'warning'
               FOR UPDATE SKIP LOCKED) AS m
             ORDER BY m.priority DESC, m.id",
        )?;
        let mut rows = st.query(params![channel, names])?;
        while let Some(r) = rows.next()? {
            riders
                .entry(r.get(0)?)
                .or_default()
                .push((r.get(1)?, r.get(2)?));
        }
        drop(rows);
        Ok(Lookups::Batched { lately, riders })
    }

    /// The cap's figures for `person`.
    fn lately(
        &mut self,
        tx: &Tx<'_>,
        channel: &str,
        since: &str,
        person: &str,
    ) -> anyhow::Result<Lately> {
        if let Lookups::Batched { lately, .. } = self {
            return Ok(lately.remove(person).unwrap_or((0, None, None)));
        }
        Ok(tx
            .prepare_cached(
                "SELECT count(*), min(updated), max(CASE tier WHEN 'red' THEN 4 WHEN 'orange' THEN 3
                        WHEN 'yellow' THEN 2 ELSE 1 END)
                 FROM dispatch_message
                 WHERE channel = ?1 AND person = ?2 AND updated >= ?3
                   AND state IN ('submitting', 'accepted', 'delivered', 'delivery_unknown')",
            )?
            .query_row(params![channel, person, since], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?)
    }

    /// The other warnings queued for `person` than `carrier`, highest first.
    fn riders(
        &mut self,
        tx: &Tx<'_>,
        channel: &str,
        person: &str,
        carrier: i64,
    ) -> anyhow::Result<Vec<(i64, String)>> {
        if let Lookups::Batched { riders, .. } = self {
            let mut them = riders.remove(person).unwrap_or_default();
            them.retain(|(id, _)| *id != carrier);
            return Ok(them);
        }
        Ok(tx
            .prepare_cached(
                "SELECT id, words FROM dispatch_message
                 WHERE channel = ?1 AND person = ?2 AND state = 'queued' AND id != ?3
                   AND purpose = 'warning'
                 ORDER BY priority DESC, id FOR UPDATE SKIP LOCKED",
            )?
            .query_map(params![channel, person, carrier], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?)
    }
}

/// The one look a claim takes at its queue's upkeep ([`housekeeping`]): `?1` the channel, `?2`
/// now, `?3` the age past which a queued text expires; whether anything is due back from
/// reconciling, whether anything has expired. Public so that its plan can be checked on a
/// real PostgreSQL: the queue's oldest row is asked for as a `min` over
/// `dispatch_message_age`, because "any queued row older than" got a generic plan that
/// expected a thousand such rows and walked the whole table to find none, every claim (2 ms
/// at 5,000 queued; a province's queue would make every claim a scan of it).
pub const UPKEEP_LOOK: &str = "SELECT EXISTS (SELECT 1 FROM dispatch_message
                    WHERE channel = ?1 AND state = 'reconciling' AND not_before <= ?2),
            coalesce((SELECT min(created) FROM dispatch_message
                      WHERE channel = ?1 AND state = 'queued') < ?3, FALSE)";

/// The queue's upkeep before a claim: what was mid-send at a stop and got no receipt within
/// the grace goes back to the queue (counted), and what is too old to matter expires. Like
/// the rest of a claim it waits for no row (a claim runs apart from the store's write lock on
/// PostgreSQL, [`crate::store::Store::write_apart`]): a row another transaction holds (a
/// receipt proving a text mid-send got through) is skipped, and looked at by the next claim.
fn housekeeping(
    tx: &Tx<'_>,
    channel: &str,
    at: &str,
    now: Timestamp,
    policy: &Policy,
) -> anyhow::Result<()> {
    // Too old to matter any more.
    let stale = stamp(now.checked_sub(policy.expire_after).unwrap_or(now));
    // Most claims find nothing to tidy: one look, not four updates (a drill claims twice a
    // simulated minute; each statement is a round trip on PostgreSQL).
    let (returning, expiring): (bool, bool) = tx
        .prepare_cached(UPKEEP_LOOK)?
        .query_row(params![channel, at, stale], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if returning {
        back_from_reconciling(tx, channel, at)?;
    }
    if expiring {
        expire(tx, channel, at, &stale)?;
    }
    Ok(())
}

/// Rows mid-send at a restart whose grace has passed with no receipt go back to the queue,
/// counted as possible duplicates; what rode inside them first, as itself.
fn back_from_reconciling(tx: &Tx<'_>, channel: &str, at: &str) -> anyhow::Result<()> {
    tx.prepare_cached(
        "UPDATE dispatch_message SET state = 'queued', merged_into = NULL, updated = ?1
         WHERE id IN (
           SELECT id FROM dispatch_message
           WHERE channel = ?2 AND state = 'merged' AND merged_into IN (
             SELECT id FROM dispatch_message
             WHERE channel = ?2 AND state = 'reconciling' AND not_before <= ?1) FOR UPDATE SKIP LOCKED)",
    )?
    .execute(params![at, channel])?;
    tx.prepare_cached(
        "UPDATE dispatch_message SET state = 'queued', uncertain = uncertain + 1, updated = ?1,
                last_error = 'stormbell stopped while sending it and no receipt came: sent again'
         WHERE id IN (
           SELECT id FROM dispatch_message
           WHERE channel = ?2 AND state = 'reconciling' AND not_before <= ?1 FOR UPDATE SKIP LOCKED)",
    )?
    .execute(params![at, channel])?;
    Ok(())
}

/// Queued rows older than `stale` expire; what rides inside them first goes back to the
/// queue as itself.
fn expire(tx: &Tx<'_>, channel: &str, at: &str, stale: &str) -> anyhow::Result<()> {
    // What rides inside a text about to expire (a text resumed after its first parts) goes
    // back to the queue as itself, judged by its own age.
    tx.prepare_cached(
        "UPDATE dispatch_message SET state = 'queued', merged_into = NULL, updated = ?1
         WHERE id IN (
           SELECT id FROM dispatch_message
           WHERE state = 'merged' AND merged_into IN (
             SELECT id FROM dispatch_message
             WHERE channel = ?2 AND state = 'queued' AND created < ?3) FOR UPDATE SKIP LOCKED)",
    )?
    .execute(params![at, channel, stale])?;
    tx.prepare_cached(
        "UPDATE dispatch_message SET state = 'expired', updated = ?1,
                last_error = 'still queued when the warning had moved on'
         WHERE id IN (
           SELECT id FROM dispatch_message
           WHERE channel = ?2 AND state = 'queued' AND created < ?3 FOR UPDATE SKIP LOCKED)",
    )?
    .execute(params![at, channel, stale])?;
    Ok(())
}

/// How one send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every part accepted: (part number, total, SMSC id).
    Accepted {
        /// Account used.
        account: String,
        /// Parts accepted in this attempt.
        parts: Vec<(u32, u32, String)>,
        /// Whether a part went again after a send with no verdict (a possible duplicate part).
        uncertain: bool,
    },
    /// Refused for good (the reason).
    Failed {
        /// Account used, if any.
        account: Option<String>,
        /// Why.
        reason: String,
    },
    /// Try again after `after`; `uncertain` when the SMSC may have it already.
    Retry {
        /// Account used, if any.
        account: Option<String>,
        /// Why.
        reason: String,
        /// Delay.
        after: SignedDuration,
        /// Whether a send went out with no verdict.
        uncertain: bool,
        /// Whether it counts as an attempt (a throttle does not).
        counts: bool,
        /// Parts the centre accepted before it stopped (kept: the next attempt sends the same
        /// text from the first part not accepted).
        parts: Vec<(u32, u32, String)>,
    },
}

/// What [`record`] looks up once per account in a batch.
#[derive(Default)]
struct Accounts {
    /// The form its receipts' ids are read under.
    forms: std::collections::HashMap<String, ReceiptIds>,
    /// Whether any receipt is kept unmatched (then a part's may be among them).
    early: std::collections::HashMap<String, bool>,
}

impl Accounts {
    fn form(&mut self, tx: &Tx<'_>, policy: &Policy, account: &str) -> anyhow::Result<ReceiptIds> {
        if let Some(f) = self.forms.get(account) {
            return Ok(*f);
        }
        let f = form_of(tx, policy, account)?;
        self.forms.insert(account.to_string(), f);
        Ok(f)
    }

    fn early(&mut self, tx: &Tx<'_>, account: &str) -> anyhow::Result<bool> {
        if let Some(e) = self.early.get(account) {
            return Ok(*e);
        }
        let e = has_orphans(tx, account)?;
        self.early.insert(account.to_string(), e);
        Ok(e)
    }
}

/// Record outcomes, in one transaction, in their order.
pub fn record(
    tx: &Tx<'_>,
    results: &[(i64, Outcome)],
    now: Timestamp,
    policy: &Policy,
) -> anyhow::Result<()> {
    let at = stamp(now);
    let mut accounts = Accounts::default();
    let mut rest = results;
    while let Some((first, after)) = rest.split_first() {
        // On PostgreSQL a run of plain acceptances (most of a busy batch) is written a
        // statement per table, not per text: each statement is a round trip to the server.
        let run = if tx.is_postgres() { plain_run(rest) } else { 0 };
        if run >= 2 {
            accept_all(tx, &rest[..run], &at, now, policy, &mut accounts)?;
            rest = &rest[run..];
            continue;
        }
        record_one(tx, first, &at, now, policy, &mut accounts)?;
        rest = after;
    }
    Ok(())
}

/// How many outcomes from the start of `results` are acceptances of distinct texts from
/// their first part (not resumed), which [`accept_all`] writes together.
fn plain_run(results: &[(i64, Outcome)]) -> usize {
    let mut ids = std::collections::HashSet::new();
    results
        .iter()
        .take_while(|(id, o)| match o {
            Outcome::Accepted { parts, .. } => {
                parts.first().is_none_or(|p| p.0 == 1) && ids.insert(*id)
            }
            _ => false,
        })
        .count()
}

/// Acceptances of distinct texts, not resumed ([`plain_run`]), written set-based on
/// PostgreSQL: what [`record_one`] does for each, with the same rows and audit entries.
fn accept_all(
    tx: &Tx<'_>,
    run: &[(i64, Outcome)],
    at: &str,
    now: Timestamp,
    policy: &Policy,
    accounts: &mut Accounts,
) -> anyhow::Result<()> {
    let mut texts = Vec::with_capacity(run.len());
    let mut parts_rows = Vec::new();
    // Per account, the keys of its parts (in order), for the receipts that came first.
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    for (id, o) in run {
        let Outcome::Accepted {
            account,
            parts,
            uncertain,
        } = o
        else {
            continue;
        };
        texts.push(serde_json::json!({ "i": id, "a": account, "u": i64::from(*uncertain) }));
        let form = accounts.form(tx, policy, account)?;
        let early = accounts.early(tx, account)?;
        for (part, total, smsc) in parts {
            let key = form.answer_key(smsc);
            parts_rows.push(serde_json::json!({
                "o": parts_rows.len(), "m": id, "n": part, "t": total, "a": account,
                "s": smsc, "k": key,
            }));
            if early {
                match keys.iter_mut().find(|(a, _)| a == account) {
                    Some((_, k)) => k.push(key),
                    None => keys.push((account.clone(), vec![key])),
                }
            }
        }
    }
    // The rows' particulars for their audit entries come back with the update.
    let about: std::collections::HashMap<i64, About> = tx
        .prepare_cached(ACCEPTED_RUN)?
        .query_map(params![at, serde_json::to_string(&texts)?], |r| {
            Ok((r.get(0)?, About::read(r, 1)?))
        })?
        .collect::<Result<_, _>>()?;
    let entries: Vec<_> = run
        .iter()
        .filter_map(|(id, o)| {
            let Outcome::Accepted { account, parts, .. } = o else {
                return None;
            };
            about.get(id).map(|a| {
                about_entry(
                    *id,
                    a,
                    "sms.accepted",
                    now,
                    serde_json::json!({ "account": account, "parts": parts.len() }),
                )
            })
        })
        .collect();
    crate::store::audit::append_all(tx, &entries)?;
    if parts_rows.is_empty() {
        return Ok(());
    }
    let parts_json = serde_json::to_string(&parts_rows)?;
    // A part sent again replaces the one kept before, as a new row (see `keep_parts`).
    tx.prepare_cached(PARTS_REPLACED)?
        .execute(params![parts_json])?;
    tx.prepare_cached(
        "INSERT INTO dispatch_part (message, part, total, account, smsc_id, state, at, id_key)
         SELECT v.m, v.n, v.t, v.a, v.s, 'accepted', ?1, v.k
         FROM json_to_recordset(CAST(?2 AS json))
              AS v(o bigint, m bigint, n bigint, t bigint, a text, s text, k text)
         ORDER BY v.o",
    )?
    .execute(params![at, parts_json])?;
    for (account, keys) in keys {
        apply_early(tx, &account, &keys, now)?;
    }
    Ok(())
}

/// Record one outcome (see [`record`]).
fn record_one(
    tx: &Tx<'_>,
    (id, o): &(i64, Outcome),
    at: &str,
    now: Timestamp,
    policy: &Policy,
    accounts: &mut Accounts,
) -> anyhow::Result<()> {
    match o {
        Outcome::Accepted {
            account,
            parts,
            uncertain,
        } => {
            // The row's particulars for its audit entry come back with the update.
            let about: Option<About> = tx
                .prepare_cached(
                    "UPDATE dispatch_message SET state = 'accepted', account = ?1, updated = ?2,
                            last_error = NULL, uncertain = uncertain + ?4
                     WHERE id = ?3 AND state = 'submitting'
                     RETURNING person, lineage, version, send",
                )?
                .query_row(params![account, at, id, *uncertain as i64], |r| {
                    About::read(r, 0)
                })
                .optional()?;
            if let Some(about) = about {
                audit_about(
                    tx,
                    *id,
                    &about,
                    "sms.accepted",
                    now,
                    serde_json::json!({
                        "account": account, "parts": parts.len(),
                    }),
                )?;
            }
            // Accepted first: a receipt that came before this record applies at once.
            let form = accounts.form(tx, policy, account)?;
            let early = accounts.early(tx, account)?;
            keep_parts(tx, form, *id, account, parts, early, at, now)?;
            // A text resumed after its first parts: their receipts may all be in already.
            if parts.first().is_some_and(|p| p.0 > 1) {
                settle_if_receipted(tx, *id, at)?;
            }
        }
        Outcome::Failed { account, reason } => {
            tx.prepare_cached(
                "UPDATE dispatch_message SET state = 'failed', account = coalesce(?1, account),
                        last_error = ?2, updated = ?3 WHERE id = ?4",
            )?
            .execute(params![account, reason, at, id])?;
            audit(
                tx,
                *id,
                "sms.failed",
                now,
                serde_json::json!({
                    "account": account, "reason": reason,
                }),
            )?;
            // Same person, same number: what rode along failed with it.
            tx.prepare_cached(
                "UPDATE dispatch_message SET state = 'failed', last_error = ?1, updated = ?2
                 WHERE state = 'merged' AND merged_into = ?3",
            )?
            .execute(params![
                format!("sent inside message {id}, which failed: {reason}"),
                at,
                id
            ])?;
        }
        Outcome::Retry {
            account,
            reason,
            after,
            uncertain,
            counts,
            parts,
        } => {
            if let (Some(a), false) = (account, parts.is_empty()) {
                let form = form_of(tx, policy, a)?;
                keep_parts(tx, form, *id, a, parts, true, at, now)?;
            }
            let attempts: i64 = tx
                .query_row(
                    "SELECT attempts FROM dispatch_message WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            if *counts && attempts >= i64::from(policy.max_attempts) {
                audit(
                    tx,
                    *id,
                    "sms.failed",
                    now,
                    serde_json::json!({
                        "account": account, "reason": reason, "attempts": attempts,
                    }),
                )?;
                tx.prepare_cached(
                    "UPDATE dispatch_message SET state = 'failed', uncertain = uncertain + ?1,
                            last_error = ?2, updated = ?3 WHERE id = ?4",
                )?
                .execute(params![
                    *uncertain as i64,
                    format!("gave up after {attempts} attempts: {reason}"),
                    at,
                    id
                ])?;
                return Ok(());
            }
            let when = now.checked_add(*after).unwrap_or(now);
            // What rode along goes back to the queue on its own: a newer version may yet
            // supersede this carrier, and must not take the others down with it. Not when
            // part of the text is out: the rest must be the same text, carrying them.
            if accepted_parts(tx, *id)? == 0 {
                unmerge(tx, *id, at)?;
            }
            tx.prepare_cached(
                "UPDATE dispatch_message SET state = 'queued', not_before = ?1,
                        attempts = attempts - ?2, uncertain = uncertain + ?3,
                        account = coalesce(?4, account), last_error = ?5, updated = ?6
                 WHERE id = ?7",
            )?
            .execute(params![
                stamp(when),
                (!*counts) as i64,
                *uncertain as i64,
                account,
                reason,
                at,
                id
            ])?;
        }
    }
    Ok(())
}

/// Texts accepted longer ago than their account's receipt deadline, with no receipt, become
/// `delivery_unknown` ("sent, no receipt"): final in every view, never delivered. One update
/// per account (the rows and their audit particulars come back with it); a text whose receipt
/// is being stored by another transaction right now is passed over (`SKIP LOCKED`: the receipt
/// wins, and the sweep never waits for it).
pub fn settle_unreceipted(
    tx: &Tx<'_>,
    channel: &str,
    now: Timestamp,
    policy: &Policy,
) -> anyhow::Result<()> {
    let at = stamp(now);
    let accounts: Vec<String> = tx
        .prepare_cached(
            "SELECT DISTINCT account FROM dispatch_message
             WHERE channel = ?1 AND state = 'accepted' AND account IS NOT NULL",
        )?
        .query_map(params![channel], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for account in accounts {
        let deadline = policy.rules(&account).receipt_deadline;
        let before = stamp(now.checked_sub(deadline).unwrap_or(now));
        let mut settled: Vec<(i64, About)> = tx
            .prepare_cached(
                "UPDATE dispatch_message SET state = 'delivery_unknown', updated = ?1,
                        last_error = ?2
                 WHERE id IN (
                   SELECT id FROM dispatch_message
                   WHERE channel = ?3 AND state = 'accepted' AND account = ?4 AND updated <= ?5 FOR UPDATE SKIP LOCKED)
                 RETURNING id, person, lineage, version, send",
            )?
            .query_map(
                params![
                    at,
                    format!(
                        "accepted by the centre; no receipt within {} s",
                        deadline.as_secs()
                    ),
                    channel,
                    account,
                    before
                ],
                |r| Ok((r.get(0)?, About::read(r, 1)?)),
            )?
            .collect::<Result<_, _>>()?;
        settled.sort_by_key(|(id, _)| *id);
        let entries: Vec<_> = settled
            .iter()
            .map(|(id, about)| {
                about_entry(
                    *id,
                    about,
                    "sms.no_receipt",
                    now,
                    serde_json::json!({
                        "account": account, "deadline_secs": deadline.as_secs(),
                    }),
                )
            })
            .collect();
        crate::store::audit::append_all(tx, &entries)?;
    }
    Ok(())
}

/// Parts of message `id` the centre has accepted so far.
pub(super) fn accepted_parts(tx: &Tx<'_>, id: i64) -> anyhow::Result<u32> {
    Ok(tx
        .prepare_cached("SELECT count(*) FROM dispatch_part WHERE message = ?1")?
        .query_row(params![id], |r| r.get::<_, u32>(0))?)
}

/// Store the parts an attempt got accepted (keyed for receipts under the account's form),
/// and apply the receipts that came before their answers were recorded (fast centres).
#[allow(clippy::too_many_arguments)]
fn keep_parts(
    tx: &Tx<'_>,
    form: ReceiptIds,
    id: i64,
    account: &str,
    parts: &[(u32, u32, String)],
    early: bool,
    at: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    for (part, total, smsc) in parts {
        // A part sent again replaces the one kept before, as a new row (the newest row of an
        // id key is the one a receipt is for).
        tx.prepare_cached("DELETE FROM dispatch_part WHERE message = ?1 AND part = ?2")?
            .execute(params![id, part])?;
        tx.prepare_cached(
            "INSERT INTO dispatch_part
               (message, part, total, account, smsc_id, state, at, id_key)
             VALUES (?1, ?2, ?3, ?4, ?5, 'accepted', ?6, ?7)",
        )?
        .execute(params![
            id,
            part,
            total,
            account,
            smsc,
            at,
            form.answer_key(smsc)
        ])?;
    }
    if !early {
        return Ok(());
    }
    let keys: Vec<String> = parts
        .iter()
        .map(|(_, _, smsc)| form.answer_key(smsc))
        .collect();
    apply_early(tx, account, &keys, now)
}

/// Apply the receipts kept unmatched for `account` whose keys are among `keys` (parts just
/// recorded: their receipts came before their answers), in the order of `keys`, and drop them
/// from what is kept.
fn apply_early(tx: &Tx<'_>, account: &str, keys: &[String], now: Timestamp) -> anyhow::Result<()> {
    let row = |r: &crate::store::sql::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    let mut early: Vec<(i64, String, String)> = if tx.is_postgres() {
        // All the keys in one round trip.
        tx.prepare_cached(
            "SELECT id, id_key, coalesce(stat, '') FROM dispatch_inbound
             WHERE kind = 'orphan_receipt' AND account = ?1
               AND id_key IN (SELECT value FROM json_each(?2))",
        )?
        .query_map(params![account, serde_json::to_string(&keys)?], row)?
        .collect::<Result<_, _>>()?
    } else {
        // In the process, a statement per key (SQLite's json_each would not carry a NUL).
        let mut found = Vec::new();
        for key in keys {
            let rows = tx
                .prepare_cached(
                    "SELECT id, id_key, coalesce(stat, '') FROM dispatch_inbound
                     WHERE kind = 'orphan_receipt' AND account = ?1 AND id_key = ?2",
                )?
                .query_map(params![account, key], row)?
                .collect::<Result<Vec<_>, _>>()?;
            found.extend(rows);
        }
        found
    };
    early.sort_by_key(|(row, key, _)| (keys.iter().position(|k| k == key), *row));
    for (row, key, stat) in early {
        let (delivered, failed) = stat_meaning(&stat);
        receipt_by_key(tx, account, &key, &stat, delivered, failed, now)?;
        tx.prepare_cached("DELETE FROM dispatch_inbound WHERE id = ?1")?
            .execute(params![row])?;
    }
    Ok(())
}

/// Whether account `account` has receipts kept that matched nothing (yet).
fn has_orphans(tx: &Tx<'_>, account: &str) -> anyhow::Result<bool> {
    Ok(tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM dispatch_inbound
                            WHERE kind = 'orphan_receipt' AND account = ?1)",
        )?
        .query_row(params![account], |r| r.get(0))?)
}

/// A message just accepted whose parts' receipts all came in already (the early parts of a
/// resumed text) is delivered, or failed, now.
fn settle_if_receipted(tx: &Tx<'_>, id: i64, at: &str) -> anyhow::Result<()> {
    let (parts, done, bad, total): (i64, i64, i64, i64) = tx
        .prepare_cached(
            "SELECT count(*), coalesce(sum(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END), 0),
                    coalesce(sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0), coalesce(max(total), 0)
             FROM dispatch_part WHERE message = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    if parts == 0 || parts < total {
        return Ok(());
    }
    let now = at.parse::<Timestamp>()?;
    if bad > 0 {
        let changed = tx
            .prepare_cached(
                "UPDATE dispatch_message SET state = 'failed',
                        last_error = 'receipt: a part failed', updated = ?1
                 WHERE id = ?2 AND state = 'accepted'",
            )?
            .execute(params![at, id])?;
        if changed > 0 {
            audit(
                tx,
                id,
                "sms.undelivered",
                now,
                serde_json::json!({ "parts": parts }),
            )?;
        }
    } else if done == total {
        let changed = tx
            .prepare_cached(
                "UPDATE dispatch_message SET state = 'delivered', updated = ?1
             WHERE id = ?2 AND state = 'accepted'",
            )?
            .execute(params![at, id])?;
        if changed > 0 {
            audit(
                tx,
                id,
                "sms.delivered",
                now,
                serde_json::json!({ "parts": parts }),
            )?;
        }
    }
    Ok(())
}

/// Rows carried inside `carrier` go back to the queue as themselves.
pub(super) fn unmerge(tx: &Tx<'_>, carrier: i64, at: &str) -> anyhow::Result<usize> {
    Ok(tx
        .prepare_cached(
            "UPDATE dispatch_message SET state = 'queued', merged_into = NULL, updated = ?1
         WHERE state = 'merged' AND merged_into = ?2",
        )?
        .execute(params![at, carrier])?)
}
