//! The durable outbox: every (warning version, person, channel) is a row before anything is
//! sent, and every state it passes through is a committed write.
//!
//! ```text
//! queued ──claim──▶ submitting ──SMSC ok──▶ accepted ──receipt──▶ delivered
//!   ▲  │                │   │                    └──receipt──▶ failed (UNDELIV, …)
//!   │  │                │   └─permanent error──▶ failed (bad number: the reason is kept)
//!   │  │                └─throttled / no verdict / link down──▶ queued (later; `uncertain`
//!   │  │                                                          counts sends with no verdict)
//!   │  ├─a newer version for the same person──▶ superseded
//!   │  ├─carried inside another message──▶ merged (merged_into = the carrier; back to
//!   │  │                                    queued if the carrier goes back, failed with it)
//!   │  └─queued longer than `expire_after`──▶ expired
//!   └──── restart: rows left in submitting ──▶ reconciling ──a receipt proves it──▶ accepted
//!                                                  └──grace over──▶ queued, uncertain + 1
//! ```
//!
//! **The at-least-once window.** SMPP 3.4 cannot be asked "did you get my submit?" without
//! the message id the answer would have carried. A row whose submit_sm was written but whose
//! answer was not yet committed when stormbell died is `reconciling` after the restart: an
//! SMSC delivers receipts again to a new bind, and a receipt from that row's number proves
//! the message got through (`recover`) — it is not sent again. What no receipt proves within
//! `reconcile_grace` is sent again and counted in `uncertain`: at most (window × binds)
//! messages per account, because a window slot is freed only once its outcome is committed.
//! Re-sending is the right side to err on for a warning; the counts are reported, never
//! hidden.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::correlate::lifecycle::Send;
use crate::correlate::tier::Tier;
use crate::correlate::warning::Targets;
use crate::store::stamp;

crate::store::sql_enum! {
    /// Where a message is (`dispatch_message.state`; the diagram at the top of this module).
    pub enum MessageState {
        /// Waiting to be claimed.
        Queued = "queued",
        /// Claimed by a channel, being sent.
        Submitting = "submitting",
        /// Was mid-send at a restart: waits for a receipt proving it got through.
        Reconciling = "reconciling",
        /// Every part accepted by the SMS centre.
        Accepted = "accepted",
        /// A receipt says it reached the phone.
        Delivered = "delivered",
        /// Refused for good, or a receipt says it did not arrive.
        Failed = "failed",
        /// Still queued when the warning had moved on.
        Expired = "expired",
        /// A newer version for the same person, or the person was replaced.
        Superseded = "superseded",
        /// Carried inside another message.
        Merged = "merged",
        /// Never sendable (no valid number).
        Skipped = "skipped",
    }
}

crate::store::sql_enum! {
    /// What became of one part at the SMS centre (`dispatch_part.state`).
    pub enum PartState {
        /// The centre took it.
        Accepted = "accepted",
        /// Its receipt says delivered.
        Delivered = "delivered",
        /// Its receipt says it failed.
        Failed = "failed",
    }
}

/// How the outbox treats people and time.
#[derive(Debug, Clone)]
pub struct Policy {
    /// At most this many messages to one person within `cap_window`, unless one raises the
    /// danger (those always go).
    pub cap_per_person: u32,
    /// The window of the cap.
    pub cap_window: SignedDuration,
    /// A message still queued after this long is expired (the warning has moved on).
    pub expire_after: SignedDuration,
    /// Attempts before a message fails for good.
    pub max_attempts: u32,
    /// After a restart, how long a message that was mid-send waits for a receipt that proves
    /// the SMSC had it, before it is sent again.
    pub reconcile_grace: SignedDuration,
    /// Office name for the text.
    pub office: String,
    /// Drill: texts are marked so.
    pub exercise: bool,
    /// Text language: "zh-CN" or "en".
    pub lang: String,
    /// Base of the personal check-in links (`https://x.cn/r/`); `None`: texts carry no link.
    pub link_base: Option<String>,
    /// How long a check-in link works after its warning was decided.
    pub link_valid: SignedDuration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            cap_per_person: 6,
            cap_window: SignedDuration::from_hours(1),
            expire_after: SignedDuration::from_hours(6),
            max_attempts: 8,
            reconcile_grace: SignedDuration::from_secs(20),
            office: "防汛办".into(),
            exercise: false,
            lang: "zh-CN".into(),
            link_base: None,
            link_valid: SignedDuration::from_hours(72),
        }
    }
}

/// A Chinese mobile number in its 11-digit form, from what a roster says ("+86 138-0000-0001",
/// "8613800000001", "138 0000 0001"); `None` when it is not one.
pub fn normalise_mobile(raw: &str) -> Option<String> {
    let digits: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '\u{3000}'))
        .collect();
    let d = digits.strip_prefix('+').unwrap_or(&digits);
    let d = if d.len() == 13 {
        d.strip_prefix("86").unwrap_or(d)
    } else {
        d
    };
    let ok = d.len() == 11
        && d.starts_with('1')
        && d.as_bytes()
            .get(1)
            .is_some_and(|c| (b'3'..=b'9').contains(c))
        && d.bytes().all(|c| c.is_ascii_digit());
    ok.then(|| d.to_string())
}

/// Priority: red before blue; a raise before a same-tier update; a Cancel after everything
/// (so it never overtakes the Alert it cancels).
pub fn priority(send: Send, tier: Tier, raises: bool) -> i64 {
    if send == Send::Cancel {
        return 1;
    }
    let t = match tier {
        Tier::Blue => 1,
        Tier::Yellow => 2,
        Tier::Orange => 3,
        Tier::Red => 4,
    };
    t * 10 + if raises { 5 } else { 0 }
}

/// What a warning asks of people: move now, prepare, or go to your post.
fn action(t: &Targets) -> &'static str {
    if t.send == Send::Cancel {
        return "lift";
    }
    match (t.evacuate > 0, t.tier) {
        (true, Tier::Orange | Tier::Red) => "now",
        (true, Tier::Yellow) => "prepare",
        _ => "post",
    }
}

/// The words of one warning, as the templates take them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Words {
    /// Hazard (typhoon, flash_flood, …).
    pub hazard: String,
    /// blue … red.
    pub tier: String,
    /// 蓝色 … 红色.
    pub tier_zh: String,
    /// Alert / Update / Cancel.
    pub send: String,
    /// now / prepare / post / lift.
    pub move_: String,
    /// The first few places.
    pub places: String,
    /// "等N处" when there are more.
    pub more_places: String,
    /// Shelters to go to.
    pub shelters: String,
    /// Every place's name (for merged texts, which name the first few of a group).
    #[serde(default)]
    pub names: Vec<String>,
}

/// The words of one warning for the text templates (SMS and broadcast alike).
pub fn words(t: &Targets, lang: &str) -> Words {
    let names: Vec<&str> = t.places.iter().map(|p| p.name.as_str()).collect();
    let shown = names.iter().take(3).copied().collect::<Vec<_>>();
    let sep = if lang == "en" { ", " } else { "、" };
    let more = if names.len() > 3 {
        if lang == "en" {
            format!(" and {} more", names.len() - 3)
        } else {
            format!("等{}处", names.len())
        }
    } else {
        String::new()
    };
    Words {
        hazard: t.hazard.as_str().to_string(),
        tier: t.tier.as_str().to_string(),
        tier_zh: t.tier.zh().to_string(),
        send: t.send.as_str().to_string(),
        move_: action(t).to_string(),
        places: shown.join(sep),
        more_places: more,
        names: names.iter().map(|n| n.to_string()).collect(),
        shelters: t
            .shelters
            .iter()
            .take(2)
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(sep),
    }
}

fn lang_of(p: &Policy) -> &'static str {
    crate::templates::lang(&p.lang)
}

/// Render one warning's SMS for one person.
pub fn render_one(w: &Words, p: &Policy, link: Option<&str>) -> anyhow::Result<String> {
    let lang = lang_of(p);
    let text = crate::templates::env()?
        .get_template(&format!("sms/warning.{lang}"))?
        .render(minijinja::context! {
            office => &p.office, exercise => p.exercise, send => &w.send, hazard => &w.hazard,
            event => crate::templates::event_name(&w.hazard, lang)?, tier => &w.tier, tier_zh => &w.tier_zh,
            move => &w.move_, places => &w.places, more_places => &w.more_places,
            shelters => &w.shelters, link => link,
        })?;
    Ok(text.trim().to_string())
}

/// Render several warnings for one person as one message, highest tier first.
pub fn render_merged(items: &[Words], p: &Policy, link: Option<&str>) -> anyhow::Result<String> {
    let lang = lang_of(p);
    let mut sorted: Vec<&Words> = items.iter().collect();
    sorted.sort_by_key(|w| {
        (
            std::cmp::Reverse(Tier::parse(&w.tier).map_or(0, |t| t as u8)),
            w.send == "Cancel",
        )
    });
    // One line per (hazard, tier, kind, action): a county officer warned for 25 zones by one
    // storm reads one line naming the first few, not 25 (and pays for 2 segments, not 12).
    let mut groups: Vec<(&Words, Vec<&str>)> = Vec::new();
    for w in sorted {
        // An Alert and an Update at the same tier say the same thing; a lift does not.
        let same = |g: &&mut (&Words, Vec<&str>)| {
            g.0.hazard == w.hazard
                && g.0.tier == w.tier
                && (g.0.send == "Cancel") == (w.send == "Cancel")
                && g.0.move_ == w.move_
        };
        let names: Vec<&str> = if w.names.is_empty() {
            vec![w.places.as_str()]
        } else {
            w.names.iter().map(String::as_str).collect()
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.1.extend(names),
            None => groups.push((w, names)),
        }
    }
    let sep = if lang == "en" { ", " } else { "、" };
    let ctx: Vec<minijinja::Value> = groups
        .iter()
        .map(|(w, names)| {
            let mut shown: Vec<&str> = Vec::new();
            for n in names {
                if !shown.contains(n) && shown.len() < 3 {
                    shown.push(n);
                }
            }
            let mut all = names.clone();
            all.sort_unstable();
            all.dedup();
            Ok(minijinja::context! {
                event => crate::templates::event_name(&w.hazard, lang)?, tier => &w.tier, tier_zh => &w.tier_zh,
                send => &w.send, move => &w.move_, places => shown.join(sep),
                count => all.len(), shown => shown.len(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let text = crate::templates::env()?
        .get_template(&format!("sms/merged.{lang}"))?
        .render(minijinja::context! {
            office => &p.office, exercise => p.exercise, groups => ctx, total => items.len(),
            link => link,
        })?;
    Ok(text.trim().to_string())
}

fn parse_ts(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

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

/// Write the SMS rows for one decision, inside the transaction that records it.
pub fn enqueue(
    tx: &Transaction<'_>,
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
    let slot = policy.link_base.as_deref().map(super::link::placeholder);
    let text = render_one(&w, policy, slot.as_deref())?;
    let (_, segments) = super::sms::encode::segments(&text);
    let mut supersede = tx.prepare_cached(
        "UPDATE dispatch_message SET state = 'superseded', updated = ?1
         WHERE lineage = ?2 AND person = ?3 AND channel = 'sms' AND state = 'queued'
           AND version < ?4 AND purpose = 'warning'",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO dispatch_message
           (decision, lineage, version, send, hazard, tier, raises, person, channel, address,
            priority, state, text, segments, not_before, last_error, created, updated, words)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'sms', ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                 ?14, ?14, ?16)",
    )?;
    let mut seen = std::collections::HashSet::new();
    for c in &t.contacts {
        if !seen.insert(c.person.clone()) {
            continue;
        }
        let (address, state, err) = match normalise_mobile(&c.mobile) {
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
        // A newer version replaces what this person has not been sent yet.
        let superseded = if t.version > 1 {
            supersede.execute(params![at, t.lineage, c.person, t.version])?
        } else {
            0
        };
        out.superseded += superseded;
        let mut state = state;
        let mut err = err;
        if t.send == Send::Cancel && state == MessageState::Queued {
            let ever: i64 = tx.query_row(
                "SELECT count(*) FROM dispatch_message
                 WHERE lineage = ?1 AND person = ?2 AND channel = 'sms'
                   AND (state IN ('submitting', 'reconciling', 'accepted', 'delivered', 'merged')
                        OR uncertain > 0)",
                params![t.lineage, c.person],
                |r| r.get(0),
            )?;
            if ever == 0 {
                state = MessageState::Skipped;
                err = Some("nothing was sent to this person to cancel".into());
                out.skipped += 1;
            }
        }
        let token = match (&slot, state) {
            (Some(_), MessageState::Queued) => Some(super::link::token()?),
            _ => None,
        };
        let personal = match (&slot, &token, &policy.link_base) {
            (Some(slot), Some(tok), Some(base)) => text.replacen(slot, &format!("{base}{tok}"), 1),
            (Some(slot), _, _) => text.replacen(slot, "", 1),
            _ => text.clone(),
        };
        let n = insert.execute(params![
            decision,
            t.lineage,
            t.version,
            t.send.as_str(),
            t.hazard.as_str(),
            t.tier.as_str(),
            t.raises,
            c.person,
            address,
            priority(t.send, t.tier, t.raises),
            state,
            personal,
            segments as i64,
            at,
            err,
            words_json,
        ])?;
        if n == 1
            && let Some(tok) = &token
        {
            let id = tx.last_insert_rowid();
            super::link::record(
                tx,
                tok,
                id,
                decision,
                &t.lineage,
                t.version,
                &c.person,
                now,
                now + policy.link_valid,
            )?;
        }
        if n == 1 {
            match state {
                MessageState::Queued => out.queued += 1,
                MessageState::Failed => out.invalid.extend(err),
                _ => {}
            }
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
}

/// Queue a notice (see [`Notice`]). `None` when one with the same purpose was already queued
/// for that decision and person (a step fired twice sends once), or the number is unusable.
pub fn notice(tx: &Transaction<'_>, n: &Notice, now: Timestamp) -> anyhow::Result<Option<i64>> {
    let Some(address) = normalise_mobile(&n.mobile) else {
        return Ok(None);
    };
    let at = stamp(now);
    let (_, segments) = super::sms::encode::segments(&n.text);
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO dispatch_message
           (decision, lineage, version, send, hazard, tier, raises, person, channel, address,
            priority, state, text, segments, not_before, created, updated, words, purpose)
         VALUES (?1, ?2, ?3, 'Notice', ?4, ?5, 1, ?6, 'sms', ?7, ?8, 'queued', ?9, ?10, ?11, ?11,
                 ?11, '{}', ?12)",
        params![
            n.decision,
            n.lineage,
            n.version,
            n.hazard,
            n.tier.as_str(),
            n.person,
            address,
            // Above the warnings of its tier: a chase is more urgent than news.
            priority(Send::Alert, n.tier, true) + 1,
            n.text,
            segments as i64,
            at,
            n.purpose,
        ],
    )?;
    Ok((inserted == 1).then(|| tx.last_insert_rowid()))
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
}

/// Replies from phones stored after `after`, oldest first (respond reads them with its own
/// cursor).
pub fn replies_after(c: &Connection, after: i64, limit: usize) -> anyhow::Result<Vec<Reply>> {
    let mut st = c.prepare_cached(
        "SELECT id, at, source, text FROM dispatch_inbound WHERE kind = 'reply' AND id > ?1
         ORDER BY id LIMIT ?2",
    )?;
    let rows = st
        .query_map(params![after, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
            ))
        })?
        .collect::<Result<Vec<(i64, String, String, String)>, _>>()?;
    rows.into_iter()
        .map(|(id, at, source, text)| {
            Ok(Reply {
                id,
                at: at.parse()?,
                source,
                text,
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
pub fn last_sent_to(c: &Connection, address: &str) -> anyhow::Result<Option<LastSent>> {
    let row = c
        .prepare_cached(
            "SELECT id, person, decision, lineage, version, updated FROM dispatch_message
             WHERE address = ?1 AND channel = 'sms' AND purpose = 'warning'
               AND state IN ('submitting', 'accepted', 'delivered', 'reconciling')
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

/// A person no longer answers for any place of a warning in force (the registry changed):
/// their texts for it that are still waiting are withdrawn (`superseded`, the reason kept).
pub fn withdraw(
    tx: &Transaction<'_>,
    lineage: &str,
    person: &str,
    now: Timestamp,
) -> anyhow::Result<usize> {
    Ok(tx.execute(
        "UPDATE dispatch_message SET state = 'superseded', updated = ?3,
                last_error = 'replaced in the registry: no longer on duty for this warning'
         WHERE lineage = ?1 AND person = ?2 AND state = 'queued'",
        params![lineage, person, stamp(now)],
    )?)
}

/// A person's number changed in the registry: what still waits to be sent to them goes to
/// the new number. Returns how many texts were moved.
pub fn renumber(
    tx: &Transaction<'_>,
    person: &str,
    mobile: &str,
    now: Timestamp,
) -> anyhow::Result<usize> {
    let address = normalise_mobile(mobile).unwrap_or_else(|| mobile.to_string());
    Ok(tx.execute(
        "UPDATE dispatch_message SET address = ?2, updated = ?3
         WHERE person = ?1 AND state = 'queued' AND address != ?2",
        params![person, address, stamp(now)],
    )?)
}

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
    /// Rows merged into it.
    pub merged: Vec<i64>,
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
}

/// Claim up to `limit` messages of a channel that are due, marking them `submitting`.
///
/// Per person, the highest-priority due row carries every other queued row of that person
/// (one message naming all the warnings, highest tier first). The per-person cap holds back
/// a message that does not raise the danger; it is not held back when it does.
pub fn claim(
    tx: &Transaction<'_>,
    channel: &str,
    claimed_by: &str,
    limit: usize,
    now: Timestamp,
    policy: &Policy,
) -> anyhow::Result<Vec<Claimed>> {
    let at = stamp(now);
    // Mid-send at a restart and no receipt came within the grace: send again, counted.
    tx.execute(
        "UPDATE dispatch_message SET state = 'queued', merged_into = NULL, updated = ?1
         WHERE channel = ?2 AND state = 'merged' AND merged_into IN (
           SELECT id FROM dispatch_message
           WHERE channel = ?2 AND state = 'reconciling' AND not_before <= ?1)",
        params![at, channel],
    )?;
    tx.execute(
        "UPDATE dispatch_message SET state = 'queued', uncertain = uncertain + 1, updated = ?1,
                last_error = 'stormbell stopped while sending it and no receipt came: sent again'
         WHERE channel = ?2 AND state = 'reconciling' AND not_before <= ?1",
        params![at, channel],
    )?;
    // Too old to matter any more.
    let stale = stamp(now.checked_sub(policy.expire_after).unwrap_or(now));
    tx.execute(
        "UPDATE dispatch_message SET state = 'expired', updated = ?1,
                last_error = 'still queued when the warning had moved on'
         WHERE channel = ?2 AND state = 'queued' AND created < ?3",
        params![at, channel, stale],
    )?;
    let mut st = tx.prepare_cached(
        "SELECT id, person, address, text, segments, raises, tier, words, purpose
         FROM dispatch_message
         WHERE channel = ?1 AND state = 'queued' AND not_before <= ?2
         ORDER BY priority DESC, id LIMIT ?3",
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
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    let mut taken = std::collections::HashSet::new();
    let since = stamp(now.checked_sub(policy.cap_window).unwrap_or(now));
    for row in due {
        if out.len() >= limit {
            break;
        }
        if !taken.insert(row.person.clone()) {
            continue;
        }
        // The cap: how many went to this person lately, and the highest tier among them
        // (tiers as ranks 1–4, blue to red).
        let (recent, oldest, top): (i64, Option<String>, Option<i64>) = tx.query_row(
            "SELECT count(*), min(updated), max(CASE tier WHEN 'red' THEN 4 WHEN 'orange' THEN 3
                    WHEN 'yellow' THEN 2 ELSE 1 END)
             FROM dispatch_message
             WHERE channel = ?1 AND person = ?2 AND updated >= ?3
               AND state IN ('submitting', 'accepted', 'delivered')",
            params![channel, row.person, since],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let rank = Tier::parse(&row.tier).map_or(0, |t| t as i64 + 1);
        let higher = top.is_none_or(|top| rank > top);
        if recent >= i64::from(policy.cap_per_person) && !(row.raises || higher) {
            let until = oldest
                .as_deref()
                .and_then(parse_ts)
                .and_then(|o| o.checked_add(policy.cap_window).ok())
                .unwrap_or(now);
            // Only what does not raise the danger waits (a raise in retry backoff must not).
            tx.execute(
                "UPDATE dispatch_message SET not_before = ?1, updated = ?2,
                        last_error = 'held by the per-person cap'
                 WHERE channel = ?3 AND person = ?4 AND state = 'queued' AND raises = 0
                   AND not_before < ?1",
                params![stamp(until), at, channel, row.person],
            )?;
            continue;
        }
        // Everything else queued for this person rides along (warnings only: a notice has
        // its own words and goes alone).
        let mut others: Vec<(i64, String)> = if row.purpose == "warning" {
            tx.prepare_cached(
                "SELECT id, words FROM dispatch_message
                 WHERE channel = ?1 AND person = ?2 AND state = 'queued' AND id != ?3
                   AND purpose = 'warning'
                 ORDER BY priority DESC, id",
            )?
            .query_map(params![channel, row.person, row.id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?
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
                Some(base) => {
                    super::link::of_message(tx, row.id)?.map(|l| format!("{base}{}", l.token))
                }
                None => None,
            };
            let text = render_merged(&items, policy, link.as_deref())?;
            let (_, n) = super::sms::encode::segments(&text);
            (text, n as u32)
        };
        tx.execute(
            "UPDATE dispatch_message SET state = 'submitting', attempts = attempts + 1,
                    sent_text = ?1, sent_segments = ?2, updated = ?3, claimed_by = ?5
             WHERE id = ?4",
            params![text, segments, at, row.id, claimed_by],
        )?;
        for (id, _) in &others {
            tx.execute(
                "UPDATE dispatch_message SET state = 'merged', merged_into = ?1, updated = ?2
                 WHERE id = ?3",
                params![row.id, at, id],
            )?;
        }
        out.push(Claimed {
            id: row.id,
            person: row.person,
            address: row.address,
            text,
            merged: others.drain(..).map(|(id, _)| id).collect(),
        });
    }
    Ok(out)
}

/// How one send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every part accepted: (part number, total, SMSC id).
    Accepted {
        /// Account used.
        account: String,
        /// Parts.
        parts: Vec<(u32, u32, String)>,
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
    },
}

/// Record outcomes, in one transaction.
pub fn record(
    tx: &Transaction<'_>,
    results: &[(i64, Outcome)],
    now: Timestamp,
    policy: &Policy,
) -> anyhow::Result<()> {
    let at = stamp(now);
    for (id, o) in results {
        match o {
            Outcome::Accepted { account, parts } => {
                let changed = tx.execute(
                    "UPDATE dispatch_message SET state = 'accepted', account = ?1, updated = ?2,
                            last_error = NULL WHERE id = ?3 AND state = 'submitting'",
                    params![account, at, id],
                )?;
                if changed > 0 {
                    audit(
                        tx,
                        *id,
                        "sms.accepted",
                        now,
                        serde_json::json!({
                            "account": account, "parts": parts.len(),
                        }),
                    )?;
                }
                for (part, total, smsc) in parts {
                    tx.execute(
                        "INSERT OR REPLACE INTO dispatch_part
                           (message, part, total, account, smsc_id, state, at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'accepted', ?6)",
                        params![id, part, total, account, smsc, at],
                    )?;
                }
                // Receipts that arrived before this record (fast SMSCs) apply now.
                for (_, _, smsc) in parts {
                    let early: Vec<(i64, String)> = tx
                        .prepare_cached(
                            "SELECT id, stat FROM dispatch_inbound
                             WHERE kind = 'orphan_receipt' AND account = ?1 AND smsc_id = ?2",
                        )?
                        .query_map(params![account, smsc], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<_, _>>()?;
                    for (row, stat) in early {
                        let (delivered, failed) = stat_meaning(&stat);
                        receipt(tx, account, smsc, &stat, delivered, failed, now)?;
                        tx.execute("DELETE FROM dispatch_inbound WHERE id = ?1", params![row])?;
                    }
                }
            }
            Outcome::Failed { account, reason } => {
                tx.execute(
                    "UPDATE dispatch_message SET state = 'failed', account = coalesce(?1, account),
                            last_error = ?2, updated = ?3 WHERE id = ?4",
                    params![account, reason, at, id],
                )?;
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
                tx.execute(
                    "UPDATE dispatch_message SET state = 'failed', last_error = ?1, updated = ?2
                     WHERE state = 'merged' AND merged_into = ?3",
                    params![
                        format!("sent inside message {id}, which failed: {reason}"),
                        at,
                        id
                    ],
                )?;
            }
            Outcome::Retry {
                account,
                reason,
                after,
                uncertain,
                counts,
            } => {
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
                    tx.execute(
                        "UPDATE dispatch_message SET state = 'failed', uncertain = uncertain + ?1,
                                last_error = ?2, updated = ?3 WHERE id = ?4",
                        params![
                            *uncertain as i64,
                            format!("gave up after {attempts} attempts: {reason}"),
                            at,
                            id
                        ],
                    )?;
                    continue;
                }
                let when = now.checked_add(*after).unwrap_or(now);
                // What rode along goes back to the queue on its own: a newer version may yet
                // supersede this carrier, and must not take the others down with it.
                unmerge(tx, *id, &at)?;
                tx.execute(
                    "UPDATE dispatch_message SET state = 'queued', not_before = ?1,
                            attempts = attempts - ?2, uncertain = uncertain + ?3,
                            account = coalesce(?4, account), last_error = ?5, updated = ?6
                     WHERE id = ?7",
                    params![
                        stamp(when),
                        (!*counts) as i64,
                        *uncertain as i64,
                        account,
                        reason,
                        at,
                        id
                    ],
                )?;
            }
        }
    }
    Ok(())
}

/// Rows carried inside `carrier` go back to the queue as themselves.
fn unmerge(tx: &Transaction<'_>, carrier: i64, at: &str) -> anyhow::Result<usize> {
    Ok(tx.execute(
        "UPDATE dispatch_message SET state = 'queued', merged_into = NULL, updated = ?1
         WHERE state = 'merged' AND merged_into = ?2",
        params![at, carrier],
    )?)
}

/// A receipt, matched to its part and message; `false` when no part has that id.
pub fn receipt(
    tx: &Transaction<'_>,
    account: &str,
    smsc_id: &str,
    stat: &str,
    delivered: bool,
    failed: bool,
    now: Timestamp,
) -> anyhow::Result<bool> {
    let at = stamp(now);
    let part: Option<i64> = tx
        .query_row(
            "SELECT message FROM dispatch_part WHERE account = ?1 AND smsc_id = ?2",
            params![account, smsc_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(message) = part else {
        return Ok(false);
    };
    let state = if delivered {
        PartState::Delivered
    } else if failed {
        PartState::Failed
    } else {
        PartState::Accepted
    };
    tx.execute(
        "UPDATE dispatch_part SET state = ?1, receipt = ?2, at = ?3
         WHERE account = ?4 AND smsc_id = ?5",
        params![state, stat, at, account, smsc_id],
    )?;
    // The message is delivered when every part is; failed when any part failed.
    let (parts, done, bad, total): (i64, i64, i64, i64) = tx.query_row(
        "SELECT count(*), sum(state = 'delivered'), sum(state = 'failed'), max(total)
         FROM dispatch_part WHERE message = ?1",
        params![message],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    if bad > 0 {
        let changed = tx.execute(
            "UPDATE dispatch_message SET state = 'failed', last_error = ?1, updated = ?2
             WHERE id = ?3 AND state IN ('accepted', 'delivered')",
            params![format!("receipt: {stat}"), at, message],
        )?;
        if changed > 0 {
            audit(
                tx,
                message,
                "sms.undelivered",
                now,
                serde_json::json!({
                    "account": account, "smsc_id": smsc_id, "stat": stat,
                }),
            )?;
        }
    } else if parts == total && done == total {
        let changed = tx.execute(
            "UPDATE dispatch_message SET state = 'delivered', updated = ?1
             WHERE id = ?2 AND state = 'accepted'",
            params![at, message],
        )?;
        if changed > 0 {
            audit(
                tx,
                message,
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

/// One audit entry about one message, in the transaction that changed it: the after-action
/// review reads who was sent what, and when the network said it arrived, from the trail.
fn audit(
    tx: &Transaction<'_>,
    message: i64,
    kind: &str,
    now: Timestamp,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let row: Option<(String, String, i64, String)> = tx
        .prepare_cached(
            "SELECT person, lineage, version, send FROM dispatch_message WHERE id = ?1",
        )?
        .query_row(params![message], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((person, lineage, version, send)) = row else {
        return Ok(());
    };
    let entry = crate::store::audit::Entry::utc(now, "dispatch", kind, person, detail).with([
        ("message", message.into()),
        ("lineage", lineage.into()),
        ("version", version.into()),
        ("send", send.into()),
    ]);
    crate::store::audit::append(tx, &entry)?;
    Ok(())
}

/// Per person, for one warning lineage: (accepted by the SMSC, delivered to the handset) of
/// any of its warning texts (not notices). A text carried inside another counts as that one.
/// For the office's board.
pub fn delivery_by_person(
    c: &Connection,
    lineage: &str,
) -> anyhow::Result<HashMap<String, (bool, bool)>> {
    let mut q = c.prepare_cached(
        "SELECT m.person,
                max(coalesce(k.state, m.state) IN ('accepted', 'delivered')),
                max(coalesce(k.state, m.state) = 'delivered')
         FROM dispatch_message m LEFT JOIN dispatch_message k ON k.id = m.merged_into
         WHERE m.lineage = ?1 AND m.channel = 'sms' AND m.send != 'Notice'
         GROUP BY m.person",
    )?;
    let rows = q.query_map(params![lineage], |r| {
        Ok((
            r.get::<_, String>(0)?,
            (r.get::<_, bool>(1)?, r.get::<_, bool>(2)?),
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One SMS centre bind as the channel last knew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bind {
    /// Account name.
    pub account: String,
    /// Which of its binds (0-based).
    pub slot: i64,
    /// bound | down | stopped.
    pub state: String,
    /// Since when (UTC RFC 3339).
    pub since: String,
    /// The SMSC's address, or why it is down.
    pub detail: Option<String>,
}

/// Record a bind's state (the SMPP channel, when a bind comes up, drops, fails or stops).
pub fn set_bind(
    tx: &Transaction<'_>,
    account: &str,
    slot: usize,
    state: &str,
    detail: Option<&str>,
    now: Timestamp,
) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO dispatch_bind (account, slot, state, since, detail) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (account, slot) DO UPDATE SET state = ?3, since = ?4, detail = ?5",
        params![account, slot as i64, state, stamp(now), detail],
    )?;
    Ok(())
}

/// Every bind's last known state, by account and slot.
pub fn binds(c: &Connection) -> anyhow::Result<Vec<Bind>> {
    Ok(c.prepare(
        "SELECT account, slot, state, since, detail FROM dispatch_bind ORDER BY account, slot",
    )?
    .query_map([], |r| {
        Ok(Bind {
            account: r.get(0)?,
            slot: r.get(1)?,
            state: r.get(2)?,
            since: r.get(3)?,
            detail: r.get(4)?,
        })
    })?
    .collect::<Result<_, _>>()?)
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
}

/// Keep something that came back and matched nothing we sent: a reply from a phone, or a
/// receipt for an id not (yet) recorded.
pub fn inbound(tx: &Transaction<'_>, i: &Inbound<'_>, now: Timestamp) -> anyhow::Result<i64> {
    tx.execute(
        "INSERT INTO dispatch_inbound (at, kind, account, source, dest, text, smsc_id, stat)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            stamp(now),
            i.kind,
            i.account,
            i.source,
            i.dest,
            i.text,
            i.smsc_id,
            i.stat
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// At start (and at each channel's restart): rows left in `submitting` by a stop mid-send may
/// or may not have reached the SMSC, and SMPP cannot be asked. `scope` names the channel
/// whose rows these are (`claimed_by`): a channel restarted by the supervisor takes back only
/// its own, never rows another channel still has in flight; `None` (the daemon's start, before
/// any channel runs) takes back every row. They wait `grace` in `reconciling` for a receipt that
/// proves the SMSC had them ([`recover`]: the SMSC delivers receipts again to a new bind);
/// whatever is still unproven then is sent again and counted as `uncertain`. Returns how many
/// rows wait.
pub fn reconcile(
    tx: &Transaction<'_>,
    scope: Option<&str>,
    now: Timestamp,
    grace: SignedDuration,
) -> anyhow::Result<usize> {
    let until = stamp(now.checked_add(grace).unwrap_or(now));
    let n = tx.execute(
        "UPDATE dispatch_message SET state = 'reconciling', not_before = ?1, updated = ?2,
                last_error = 'stormbell stopped while sending: waiting for a receipt'
         WHERE state = 'submitting' AND (?3 IS NULL OR claimed_by = ?3)",
        params![until, stamp(now), scope],
    )?;
    Ok(n)
}

/// A receipt nobody's part matched: if it is for a number whose message was mid-send at a
/// restart, it proves the SMSC had that message — record the part from the receipt instead of
/// sending again. `row` names the message when the receipt says so (an HTTP gateway's report
/// carries our id); otherwise the oldest reconciling message to `number` is taken. Returns
/// whether it was used.
pub fn recover(
    tx: &Transaction<'_>,
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
            tx.query_row(
                "SELECT id, coalesce(sent_segments, segments) FROM dispatch_message
                 WHERE address = ?1 AND state = 'reconciling' ORDER BY id LIMIT 1",
                params![n],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        }
    };
    let Some((id, total)) = found else {
        return Ok(false);
    };
    let at = stamp(now);
    let have: i64 = tx.query_row(
        "SELECT count(*) FROM dispatch_part WHERE message = ?1",
        params![id],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO dispatch_part (message, part, total, account, smsc_id, state, at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'accepted', ?6)",
        params![id, have + 1, total, account, smsc_id, at],
    )?;
    if have + 1 >= total {
        tx.execute(
            "UPDATE dispatch_message SET state = 'accepted', account = ?1, updated = ?2,
                    last_error = 'outcome recovered from a receipt after a restart'
             WHERE id = ?3",
            params![account, at, id],
        )?;
    }
    let (delivered, failed) = stat_meaning(stat);
    receipt(tx, account, smsc_id, stat, delivered, failed, now)?;
    Ok(true)
}

/// The message a part belongs to, and where that message is: what a receipt for
/// (account, SMSC id) is about.
pub fn message_of_part(
    c: &Connection,
    account: &str,
    smsc_id: &str,
) -> anyhow::Result<Option<(i64, MessageState)>> {
    Ok(c.prepare_cached(
        "SELECT p.message, m.state FROM dispatch_part p
         JOIN dispatch_message m ON m.id = p.message
         WHERE p.account = ?1 AND p.smsc_id = ?2",
    )?
    .query_row(params![account, smsc_id], |x| Ok((x.get(0)?, x.get(1)?)))
    .optional()?)
}

/// How many times a message has been claimed for sending (the current attempt, once claimed).
pub fn attempts(c: &Connection, id: i64) -> anyhow::Result<i64> {
    Ok(
        c.prepare_cached("SELECT attempts FROM dispatch_message WHERE id = ?1")?
            .query_row(params![id], |x| x.get(0))?,
    )
}

/// A warning a text carried to a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    /// The person.
    pub person: String,
    /// The warning (`hazard:area`).
    pub lineage: String,
    /// The decision (warning version) it was queued for.
    pub decision: i64,
    /// The warning's words (JSON).
    pub words: String,
}

/// The warnings message `id` carried: its own and those merged into it.
pub fn carried(c: &Connection, id: i64) -> anyhow::Result<Vec<Carried>> {
    Ok(c.prepare_cached(
        "SELECT person, lineage, decision, words FROM dispatch_message
         WHERE (id = ?1 OR (merged_into = ?1 AND state = 'merged')) AND purpose = 'warning'
         ORDER BY id",
    )?
    .query_map(params![id], |x| {
        Ok(Carried {
            person: x.get("person")?,
            lineage: x.get("lineage")?,
            decision: x.get("decision")?,
            words: x.get("words")?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

/// The delivered message that carried a person's latest text of a warning (the carrier, when
/// it was merged into another), if any.
pub fn latest_delivered(
    c: &Connection,
    person: &str,
    lineage: &str,
) -> anyhow::Result<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT CASE WHEN m.state = 'merged' THEN m.merged_into ELSE m.id END
         FROM dispatch_message m
         LEFT JOIN dispatch_message car ON car.id = m.merged_into
         WHERE m.person = ?1 AND m.lineage = ?2 AND m.purpose = 'warning'
           AND (m.state = 'delivered' OR (m.state = 'merged' AND car.state = 'delivered'))
         ORDER BY m.version DESC, m.id DESC LIMIT 1",
    )?
    .query_row(params![person, lineage], |x| x.get(0))
    .optional()?
    .flatten())
}

/// One message as the record of a drill or an after-action file shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// Row id.
    pub id: i64,
    /// When it was queued (stored stamp).
    pub created: String,
    /// When it last changed.
    pub updated: String,
    /// Channel (`sms`).
    pub channel: String,
    /// `warning`, or the notice's purpose.
    pub purpose: String,
    /// `hazard:area`.
    pub lineage: String,
    /// Warning version.
    pub version: i64,
    /// Alert / Update / Cancel.
    pub send: String,
    /// Tier.
    pub tier: String,
    /// Registry person id.
    pub person: String,
    /// The number.
    pub address: String,
    /// What was sent (its own text if never claimed).
    pub text: String,
    /// Where it is.
    pub state: MessageState,
    /// Claims so far.
    pub attempts: i64,
    /// Sends with no verdict.
    pub uncertain: i64,
    /// The message that carried it, when merged.
    pub merged_into: Option<i64>,
    /// The last error.
    pub last_error: Option<String>,
}

/// Every message, in order.
pub fn all_messages(c: &Connection) -> anyhow::Result<Vec<MessageRecord>> {
    Ok(c.prepare(
        "SELECT id, created, updated, channel, purpose, lineage, version, send, tier, person,
                address, coalesce(sent_text, text) AS text, state, attempts, uncertain,
                merged_into, last_error
         FROM dispatch_message ORDER BY id",
    )?
    .query_map([], |r| {
        Ok(MessageRecord {
            id: r.get("id")?,
            created: r.get("created")?,
            updated: r.get("updated")?,
            channel: r.get("channel")?,
            purpose: r.get("purpose")?,
            lineage: r.get("lineage")?,
            version: r.get("version")?,
            send: r.get("send")?,
            tier: r.get("tier")?,
            person: r.get("person")?,
            address: r.get("address")?,
            text: r.get("text")?,
            state: r.get("state")?,
            attempts: r.get("attempts")?,
            uncertain: r.get("uncertain")?,
            merged_into: r.get("merged_into")?,
            last_error: r.get("last_error")?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

/// Sends that had no verdict and went again, in all (possible duplicates).
pub fn possible_duplicates(c: &Connection) -> anyhow::Result<i64> {
    Ok(c.query_row(
        "SELECT coalesce(sum(uncertain), 0) FROM dispatch_message",
        [],
        |r| r.get(0),
    )?)
}

/// Messages by channel and state, for status and metrics.
pub fn counts(c: &Connection) -> anyhow::Result<BTreeMap<(String, String), i64>> {
    let mut st =
        c.prepare("SELECT channel, state, count(*) FROM dispatch_message GROUP BY channel, state")?;
    let rows = st.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sends whose outcome was never known (possible duplicates), by account.
pub fn uncertain(c: &Connection) -> anyhow::Result<HashMap<String, i64>> {
    let mut st = c.prepare(
        "SELECT coalesce(account, '-'), sum(uncertain) FROM dispatch_message
         WHERE uncertain > 0 GROUP BY account",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_or_refused() {
        assert_eq!(
            normalise_mobile("+86 138-0000-0001").as_deref(),
            Some("13800000001")
        );
        assert_eq!(
            normalise_mobile("8613800000001").as_deref(),
            Some("13800000001")
        );
        assert_eq!(
            normalise_mobile("13800000001").as_deref(),
            Some("13800000001")
        );
        assert_eq!(normalise_mobile("12800000001"), None);
        assert_eq!(normalise_mobile("0571-8888888"), None);
        assert_eq!(normalise_mobile("1380000000"), None);
        assert_eq!(normalise_mobile(""), None);
    }

    #[test]
    fn red_goes_before_blue_and_cancels_go_last() {
        assert!(priority(Send::Alert, Tier::Red, true) > priority(Send::Alert, Tier::Blue, true));
        assert!(
            priority(Send::Update, Tier::Orange, true)
                > priority(Send::Update, Tier::Orange, false)
        );
        assert!(
            priority(Send::Cancel, Tier::Red, false) < priority(Send::Alert, Tier::Blue, false)
        );
    }
}
