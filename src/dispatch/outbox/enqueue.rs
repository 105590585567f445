//! Rows in: a decision's messages (in the decision's transaction), respond's notices, and what
//! a new registry changes about texts still waiting.

use crate::store::sql::Tx;
use jiff::Timestamp;
use rusqlite::params;

use super::*;

/// What enqueueing one decision did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Rows queued.
    pub queued: usize,
    /// Rows recorded as failed before sending (no usable number), with the reasons.
    pub invalid: Vec<String>,
    /// Older queued rows superseded.
    pub superseded: usize,
    /// Cancels not sent because nothing had been sent to cancel.
    pub skipped: usize,
}

/// People per statement when a decision is queued: a bounded JSON parameter (a few hundred
/// kilobytes) whatever the warning's size.
const ENQUEUE_CHUNK: usize = 1000;

/// One person's row as the set-based insert reads it (short names: a county's worth of these
/// is the statement's one parameter).
#[derive(serde::Serialize)]
struct NewRow<'a> {
    /// Person.
    p: &'a str,
    /// Address.
    a: String,
    /// State.
    s: &'a str,
    /// Text, with the person's link.
    t: String,
    /// Why it failed or was skipped.
    e: Option<String>,
    /// Check-in token.
    k: Option<String>,
    /// When the link expires.
    x: Option<&'a str>,
}

/// What every row of one decision shares.
struct Shared<'a> {
    decision: i64,
    t: &'a Targets,
    priority: i64,
    segments: i64,
    at: &'a str,
    words: &'a str,
}

/// Insert a chunk of a decision's rows, unless a person's row for the decision is there
/// already (the decision queued again); the people whose rows went in.
fn insert(
    tx: &Tx<'_>,
    d: &Shared<'_>,
    rows: &[NewRow<'_>],
) -> anyhow::Result<std::collections::HashSet<String>> {
    let t = d.t;
    if tx.is_postgres() {
        // One statement for the chunk (a statement is a round trip there), the rows' fields
        // read in one pass.
        return Ok(tx
            .prepare_cached(
                "INSERT INTO dispatch_message
                   (decision, lineage, version, send, hazard, tier, raises, person, channel,
                    address, priority, state, text, segments, not_before, last_error, created,
                    updated, words, token, link_expires)
                 SELECT CAST(?1 AS BIGINT), ?2, CAST(?3 AS BIGINT), ?4, ?5, ?6,
                        CAST(?7 AS BIGINT), r.p, 'sms', r.a, CAST(?8 AS BIGINT), r.s, r.t,
                        CAST(?9 AS BIGINT), ?10, r.e, ?10, ?10, ?11, r.k, r.x
                 FROM json_to_recordset(CAST(?12 AS json))
                      AS r(p text, a text, s text, t text, e text, k text, x text)
                 ON CONFLICT DO NOTHING
                 RETURNING person",
            )?
            .query_map(
                params![
                    d.decision,
                    t.lineage,
                    t.version,
                    t.send.as_str(),
                    t.hazard.as_str(),
                    t.tier.as_str(),
                    t.raises,
                    d.priority,
                    d.segments,
                    d.at,
                    d.words,
                    serde_json::to_string(rows)?,
                ],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?);
    }
    // SQLite is in the process: a statement per row costs microseconds, and is faster than
    // reading the rows back out of one JSON parameter (1.3 s against 1.9 s for 100,000).
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO dispatch_message
           (decision, lineage, version, send, hazard, tier, raises, person, channel, address,
            priority, state, text, segments, not_before, last_error, created, updated, words,
            token, link_expires)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'sms', ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                 ?14, ?14, ?16, ?17, ?18)",
    )?;
    let mut inserted = std::collections::HashSet::new();
    for r in rows {
        let n = insert.execute(params![
            d.decision,
            t.lineage,
            t.version,
            t.send.as_str(),
            t.hazard.as_str(),
            t.tier.as_str(),
            t.raises,
            r.p,
            r.a,
            d.priority,
            r.s,
            r.t,
            d.segments,
            d.at,
            r.e,
            d.words,
            r.k,
            r.x,
        ])?;
        if n == 1 {
            inserted.insert(r.p.to_string());
        }
    }
    Ok(inserted)
}

/// Write the SMS rows for one decision, inside the transaction that records it.
pub fn enqueue(
    tx: &Tx<'_>,
    decision: i64,
    t: &Targets,
    now: Timestamp,
    policy: &Policy,
) -> anyhow::Result<Enqueued> {
    let mut out = Enqueued::default();
    let w = words(t, lang_of(policy));
    let words_json = serde_json::to_string(&w)?;
    let at = stamp(now);
    // One text for everyone, with a placeholder as long as a personal link (so everyone's
    // text has the same number of segments), each person's link put in its place.
    let slot = policy
        .link_base
        .as_deref()
        .map(crate::dispatch::link::placeholder);
    let text = render_one(&w, policy, slot.as_deref())?;
    let (_, segments) = crate::dispatch::sms::encode::segments(&text);
    // A person's check-in link is stored on the row that carries it (`token`, `link_expires`).
    // (A validity past the calendar's end, from an absurd setting, means never expiring, not
    // a panic in every warning's transaction.)
    let expires = stamp(now.checked_add(policy.link_valid).unwrap_or(Timestamp::MAX));
    // Everyone once, in the order the targets name them.
    let mut seen = std::collections::HashSet::with_capacity(t.contacts.len());
    let people: Vec<&crate::correlate::Contact> = t
        .contacts
        .iter()
        .filter(|c| seen.insert(c.person.as_str()))
        .collect();
    let mut tokens = crate::dispatch::link::Tokens::default();
    // Set-based, a chunk of people per statement: on PostgreSQL every statement is a round
    // trip, and a county-wide red warning names tens of thousands (one statement per person
    // took 25 s for 100,000 there; SQLite's 2 s did not show it).
    for chunk in people.chunks(ENQUEUE_CHUNK) {
        let names = serde_json::to_string(&chunk.iter().map(|c| &c.person).collect::<Vec<_>>())?;
        // A newer version replaces what these people have not been sent yet.
        if t.version > 1 {
            out.superseded += tx
                .prepare_cached(
                    "UPDATE dispatch_message SET state = 'superseded', updated = ?1
                     WHERE lineage = ?2 AND channel = 'sms' AND state = 'queued'
                       AND version < ?3 AND purpose = 'warning'
                       AND person IN (SELECT value FROM json_each(?4))
                       -- A text whose first parts are on the phone is finished, not replaced:
                       -- the phone would keep a part that never becomes a text.
                       AND NOT EXISTS (SELECT 1 FROM dispatch_part p
                                       WHERE p.message = dispatch_message.id)",
                )?
                .execute(params![at, t.lineage, t.version, names])?;
        }
        // A cancel goes only to those who were ever sent something of this warning. Read
        // after the supersede, which waited for any claim holding these people's texts
        // (claims run apart from the write lock on PostgreSQL): a text taken meanwhile is
        // seen sent here, and its cancel follows it.
        let ever: std::collections::HashSet<String> = if t.send == MessageKind::Cancel {
            tx.prepare_cached(
                "SELECT DISTINCT person FROM dispatch_message
                 WHERE lineage = ?1 AND channel = 'sms'
                   AND person IN (SELECT value FROM json_each(?2))
                   AND (state IN ('submitting', 'reconciling', 'accepted', 'delivered', 'merged')
                        OR uncertain > 0)",
            )?
            .query_map(params![t.lineage, names], |r| r.get(0))?
            .collect::<Result<_, _>>()?
        } else {
            Default::default()
        };
        let mut rows = Vec::with_capacity(chunk.len());
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut tokened = std::collections::HashSet::new();
        for c in chunk {
            let (address, mut state, mut err) = match normalise_mobile(&c.mobile) {
                Some(n) => (n, MessageState::Queued, None),
                None => (
                    c.mobile.clone(),
                    MessageState::Failed,
                    Some(format!(
                        "{} ({}) has no usable mobile number: {:?}",
                        c.name, c.person, c.mobile
                    )),
                ),
            };
            if t.send == MessageKind::Cancel
                && state == MessageState::Queued
                && !ever.contains(&c.person)
            {
                state = MessageState::Skipped;
                err = Some("nothing was sent to this person to cancel".into());
                out.skipped += 1;
            }
            let token = match (&slot, state) {
                (Some(_), MessageState::Queued) => Some(tokens.draw()?),
                _ => None,
            };
            let personal = match (&slot, &token, &policy.link_base) {
                (Some(slot), Some(tok), Some(base)) => {
                    text.replacen(slot, &format!("{base}{tok}"), 1)
                }
                (Some(slot), _, _) => text.replacen(slot, "", 1),
                _ => text.clone(),
            };
            if token.is_some() {
                tokened.insert(c.person.as_str());
            }
            rows.push(NewRow {
                p: &c.person,
                s: state.as_str(),
                e: err.clone(),
                x: token.as_ref().map(|_| expires.as_str()),
                k: token,
                a: address,
                t: personal,
            });
            outcomes.push((c.person.as_str(), state, err));
        }
        // `INSERT OR IGNORE`: a person's row for this decision may be there already (the
        // decision queued again); RETURNING names the rows that went in.
        let shared = Shared {
            decision,
            t,
            priority: priority(t.send, t.tier, t.raises),
            segments: segments as i64,
            at: &at,
            words: &words_json,
        };
        let inserted = insert(tx, &shared, &rows)?;
        // Ignored with a token: this person's text for the decision is there already (a
        // repeat), or the token was drawn before (128 random bits: never seen, but never
        // silent).
        let ignored: Vec<&str> = tokened
            .iter()
            .copied()
            .filter(|p| !inserted.contains(*p))
            .collect();
        if !ignored.is_empty() {
            let there: std::collections::HashSet<String> = tx
                .prepare_cached(
                    "SELECT person FROM dispatch_message WHERE decision = ?1
                       AND channel = 'sms' AND purpose = 'warning'
                       AND person IN (SELECT value FROM json_each(?2))",
                )?
                .query_map(params![decision, serde_json::to_string(&ignored)?], |r| {
                    r.get(0)
                })?
                .collect::<Result<_, _>>()?;
            if let Some(p) = ignored.iter().find(|p| !there.contains(**p)) {
                anyhow::bail!(
                    "a check-in token was drawn twice: the warning for {p} is not queued"
                );
            }
        }
        for (person, state, err) in outcomes {
            if !inserted.contains(person) {
                continue;
            }
            match state {
                MessageState::Queued => out.queued += 1,
                MessageState::Failed => out.invalid.extend(err),
                _ => {}
            }
        }
    }
    // PostgreSQL plans the claims by the table's statistics, which autovacuum renews only
    // about a minute after a large change: until then a queue that just grew by a county
    // looks empty to the planner, which then scans all of it for each person claimed
    // (measured: 3,000 queued, 580,000 rows compared per claim). A large warning renews them
    // in its own transaction (ANALYZE samples, whatever the table's size; it counts the
    // rows this transaction wrote), and so does any warning once the table's file has grown
    // to more than twice what the planner last measured: a storm of many small warnings
    // (a drill's first hour read each person's texts through the queue's state index, up to
    // 147 ms a claim). Doubling by doubling, a handful of times as a storm fills the table;
    // the file's size is read at once, where the server's row counts lag by seconds.
    if tx.is_postgres() && out.queued > 0 {
        let grown: bool = out.queued >= ENQUEUE_CHUNK
            || tx.query_row(
                "SELECT pg_relation_size(c.oid) > 2 * 8192 * CAST(greatest(c.relpages, 16) AS BIGINT)
                 FROM pg_class c WHERE c.oid = CAST('dispatch_message' AS regclass)",
                (),
                |r| r.get(0),
            )?;
        if grown {
            tx.execute_batch("ANALYZE dispatch_message")?;
        }
    }
    Ok(out)
}

/// A message that is not a warning version's own text: a re-send, a notice up the ladder, an
/// answer to a reply. Respond queues these through [`notice`] (the one way it asks dispatch to
/// send); they share the outbox's queue, receipts and retries, and are never merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The decision it belongs to (the warning version it is about).
    pub decision: i64,
    /// hazard:area.
    pub lineage: String,
    /// Version.
    pub version: u32,
    /// Hazard.
    pub hazard: String,
    /// Tier (its priority follows it).
    pub tier: Tier,
    /// Whom to.
    pub person: String,
    /// Their number as the roster has it.
    pub mobile: String,
    /// The text, final.
    pub text: String,
    /// What it is, unique per decision and person: `resend:1`, `notify:2`, `reply:17` …
    pub purpose: String,
    /// A chase up the ladder (or the codes back to a person who just answered): ranked above
    /// the warnings of its tier and never held by the per-person cap. Otherwise (a request
    /// for help passed on, which anyone holding a link can cause) it ranks below the warnings
    /// of its tier and the cap holds it like other news.
    pub chase: bool,
}

/// Queue a notice (see [`Notice`]). `None` when one with the same purpose was already queued
/// for that decision and person (a step fired twice sends once), or the number is unusable.
pub fn notice(tx: &Tx<'_>, n: &Notice, now: Timestamp) -> anyhow::Result<Option<i64>> {
    insert_notice(tx, n, "sms", now)
}

/// A notice on `channel` (`sms`, or `voice` for a call: [`ring`]).
pub(super) fn insert_notice(
    tx: &Tx<'_>,
    n: &Notice,
    channel: &str,
    now: Timestamp,
) -> anyhow::Result<Option<i64>> {
    let Some(address) = normalise_mobile(&n.mobile) else {
        return Ok(None);
    };
    let at = stamp(now);
    let (_, segments) = crate::dispatch::sms::encode::segments(&n.text);
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO dispatch_message
           (decision, lineage, version, send, hazard, tier, raises, person, channel, address,
            priority, state, text, segments, not_before, created, updated, words, purpose)
         VALUES (?1, ?2, ?3, 'Notice', ?4, ?5, ?13, ?6, ?14, ?7, ?8, 'queued', ?9, ?10, ?11,
                 ?11, ?11, '{}', ?12)",
        )?
        .execute(params![
            n.decision,
            n.lineage,
            n.version,
            n.hazard,
            n.tier.as_str(),
            n.person,
            address,
            // A chase is more urgent than news; anything else waits behind the warnings.
            if n.chase {
                priority(MessageKind::Alert, n.tier, true) + 1
            } else {
                priority(MessageKind::Update, n.tier, false)
            },
            n.text,
            segments as i64,
            at,
            n.purpose,
            n.chase,
            channel,
        ])?;
    if inserted == 1 {
        Ok(Some(tx.last_insert_rowid()?))
    } else {
        Ok(None)
    }
}

/// A person no longer answers for any place of a warning in force (the registry changed):
/// their texts for it that are still waiting are withdrawn (`superseded`, the reason kept).
pub fn withdraw(tx: &Tx<'_>, lineage: &str, person: &str, now: Timestamp) -> anyhow::Result<usize> {
    // What rode inside a withdrawn text goes back to the queue as itself (its own warning's
    // duty decides whether it still goes).
    tx.prepare_cached("UPDATE dispatch_message SET state = 'queued', merged_into = NULL, updated = ?3
         WHERE state = 'merged' AND merged_into IN (
           SELECT id FROM dispatch_message WHERE lineage = ?1 AND person = ?2 AND state = 'queued')")?.execute(
        params![lineage, person, stamp(now)],
    )?;
    Ok(tx
        .prepare_cached(
            "UPDATE dispatch_message SET state = 'superseded', updated = ?3,
                last_error = 'replaced in the registry: no longer on duty for this warning'
         WHERE lineage = ?1 AND person = ?2 AND state = 'queued'",
        )?
        .execute(params![lineage, person, stamp(now)])?)
}

/// A person's number changed in the registry: what still waits to be sent to them goes to
/// the new number. Returns how many texts were moved.
pub fn renumber(tx: &Tx<'_>, person: &str, mobile: &str, now: Timestamp) -> anyhow::Result<usize> {
    let address = normalise_mobile(mobile).unwrap_or_else(|| mobile.to_string());
    // A text whose first parts went to the old number goes whole to the new one.
    tx.prepare_cached("DELETE FROM dispatch_part WHERE message IN (
           SELECT id FROM dispatch_message WHERE person = ?1 AND state = 'queued' AND address != ?2)")?.execute(
        params![person, address],
    )?;
    Ok(tx
        .prepare_cached(
            "UPDATE dispatch_message SET address = ?2, updated = ?3
         WHERE person = ?1 AND state = 'queued' AND address != ?2",
        )?
        .execute(params![person, address, stamp(now)])?)
}

/// A test text queued by the office (`stormbell send-test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestQueued {
    /// Its outbox row.
    pub message: i64,
    /// The number as the outbox will dial it.
    pub address: String,
    /// What it says.
    pub text: String,
}

/// Queue a test text to `mobile` through the same outbox, SMS accounts, retries and receipts as
/// a warning, and record it in the audit trail: what an office sends itself before the season
/// (and after any change of SMS account) to see a text arrive. It belongs to no warning
/// (`lineage` "test"), so a reply to it answers nothing.
pub fn queue_test(
    tx: &Tx<'_>,
    policy: &Policy,
    mobile: &str,
    by: &str,
    now: Timestamp,
) -> anyhow::Result<TestQueued> {
    let Some(address) = normalise_mobile(mobile) else {
        anyhow::bail!("{mobile:?} is not a mobile number (11 digits starting with 1, or +86…)");
    };
    let lang = crate::templates::lang(&policy.lang);
    let text = crate::templates::env()?
        .get_template(&format!("sms/test.{lang}"))?
        .render(minijinja::context! {
            office => &policy.office,
            exercise => policy.exercise,
        })?
        .trim()
        .to_string();
    let n = Notice {
        decision: 0,
        lineage: "test".into(),
        version: 0,
        hazard: "test".into(),
        tier: Tier::Blue,
        person: format!("test:{address}"),
        mobile: address.clone(),
        text: text.clone(),
        purpose: format!("test:{}", now.as_millisecond()),
        chase: true,
    };
    let Some(message) = notice(tx, &n, now)? else {
        anyhow::bail!("a test to {address} was queued at this same instant already");
    };
    crate::store::audit::append(
        tx,
        &crate::store::audit::Entry::utc(
            now,
            by,
            "dispatch.test_queued",
            format!("message:{message}"),
            serde_json::json!({ "message": message, "address": address }),
        ),
    )?;
    Ok(TestQueued {
        message,
        address,
        text,
    })
}
