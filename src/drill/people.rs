//! The drill's outside world: the phone network and the people holding the phones.
//!
//! A drill must not text real village leads at three in the morning of a past typhoon, so the
//! SMS channel of a replay is this simulated network: it claims due messages from the outbox
//! exactly as the SMPP channel does (merging, caps, retries and expiry included), accepts
//! them, and some seconds later returns a delivery receipt — or, for the numbers that are
//! switched off, an `UNDELIV` one. Everything after that is the real code: receipts go through
//! [`outbox::receipt`], replies through the SMS reply parser, taps through the same
//! [`intake::from_link`] the check-in page calls, and the escalation ladder climbs on its own.
//!
//! The responders are drawn from a seeded hash of (person, warning), not a random generator,
//! so the same scenario gives the same people the same behaviour in every run, and what each
//! has done is kept in `drill_act` in the transaction that does it: a replay killed and
//! resumed neither forgets an answer nor gives it twice.

use crate::store::sql::{OptionalExtension, Tx};
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::dispatch::outbox::{self, Inbound, Outcome, Policy};
use crate::registry::Registry;
use crate::respond::calls::RespondSettings;
use crate::respond::intake::{self, LinkAnswer};

/// The account name the simulated network's messages and receipts carry.
pub const ACCOUNT: &str = "drill";

/// How the simulated people behave (`[drill.responders]` in `scenario.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Responders {
    /// Seed of every draw; change it for another cast of people.
    pub seed: u64,
    /// Share of numbers that are switched off or out of coverage (every text `UNDELIV`).
    pub unreachable_share: f64,
    /// Seconds from acceptance to the handset's receipt: [least, most].
    pub delivery_secs: [u32; 2],
    /// Share of the persons who answer their calls at all (the rest never do, and the
    /// ladder climbs over them).
    pub answer_share: f64,
    /// Of those who answer, the share who reply by SMS (the rest tap their link).
    pub sms_share: f64,
    /// Minutes from receiving the text to answering: [least, most].
    pub answer_mins: [u32; 2],
    /// Of the village and site leads who answer, the share who also clock in at their post.
    pub post_share: f64,
    /// Minutes from answering to clocking in: [least, most].
    pub post_mins: [u32; 2],
    /// Share of the people to move who are moved in the end (the rest refuse or cannot).
    pub moved_share: f64,
    /// Evacuation reports: how many, and the minutes between them.
    pub reports: u32,
    /// Minutes between evacuation reports.
    pub report_every_mins: u32,
    /// Minutes after a lift before the lead reports people back home.
    pub return_after_mins: u32,
    /// Of the persons rung (a drill with calls), the share who pick up each ring.
    pub pick_up_share: f64,
    /// Of those who pick up, the share who press 1 (the rest listen and hang up).
    pub key_share: f64,
}

impl Default for Responders {
    fn default() -> Responders {
        Responders {
            seed: 1,
            unreachable_share: 0.02,
            delivery_secs: [3, 90],
            answer_share: 0.85,
            sms_share: 0.4,
            answer_mins: [2, 40],
            post_share: 0.7,
            post_mins: [5, 30],
            moved_share: 0.95,
            reports: 3,
            report_every_mins: 30,
            return_after_mins: 120,
            pick_up_share: 0.75,
            key_share: 0.9,
        }
    }
}

impl Responders {
    /// The shares must be shares and the ranges ranges.
    pub fn check(&self) -> Result<(), String> {
        for (k, v) in [
            ("unreachable_share", self.unreachable_share),
            ("answer_share", self.answer_share),
            ("sms_share", self.sms_share),
            ("post_share", self.post_share),
            ("moved_share", self.moved_share),
            ("pick_up_share", self.pick_up_share),
            ("key_share", self.key_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("`{k}` = {v} is not a share between 0 and 1"));
            }
        }
        for (k, [a, b]) in [
            ("delivery_secs", self.delivery_secs),
            ("answer_mins", self.answer_mins),
            ("post_mins", self.post_mins),
        ] {
            if a > b {
                return Err(format!("`{k}` = [{a}, {b}]: the least is above the most"));
            }
        }
        if self.reports == 0 || self.report_every_mins == 0 {
            return Err("`reports` and `report_every_mins` must be at least 1".into());
        }
        // Times are added to the simulated clock: bound them so no file can push a plan past
        // the calendar's end (a panic) or a product past u32.
        const WEEK_MINS: u32 = 7 * 24 * 60;
        for (k, v, most) in [
            ("delivery_secs", self.delivery_secs[1], 86_400),
            ("answer_mins", self.answer_mins[1], WEEK_MINS),
            ("post_mins", self.post_mins[1], WEEK_MINS),
            ("reports", self.reports, 100),
            ("report_every_mins", self.report_every_mins, 24 * 60),
            ("return_after_mins", self.return_after_mins, WEEK_MINS),
        ] {
            if v > most {
                return Err(format!("`{k}` = {v} is more than {most}"));
            }
        }
        Ok(())
    }

    /// A fraction in [0, 1) drawn from the seed and `parts` (stable across runs and builds).
    fn draw(&self, parts: &[&str]) -> f64 {
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        for p in parts {
            h.update(p.as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn within(&self, range: [u32; 2], f: f64) -> i64 {
        let [a, b] = range;
        i64::from(a) + ((f64::from(b - a) + 1.0) * f).floor() as i64
    }
}

/// What one turn of the simulated world did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turn {
    /// Messages the network accepted.
    pub accepted: usize,
    /// Receipts it returned.
    pub receipts: usize,
    /// Answers the people gave (replies and taps).
    pub answers: usize,
    /// Calls rung.
    pub rings: usize,
}

fn secs(t: Timestamp) -> i64 {
    t.as_second()
}

/// The network's first half of a turn: the receipts that are due, each followed by what the
/// person who now has the text will do about it.
pub fn receipts(
    tx: &Tx<'_>,
    now: Timestamp,
    reg: &Registry,
    r: &Responders,
    turn: &mut Turn,
) -> anyhow::Result<()> {
    let due: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT smsc_id, stat FROM drill_receipt WHERE due <= ?1 ORDER BY due, smsc_id",
        )?
        .query_map(params![secs(now)], |x| Ok((x.get(0)?, x.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (smsc, stat) in due {
        let (delivered, failed) = outbox::stat_meaning(&stat);
        outbox::receipt(tx, ACCOUNT, &smsc, &stat, delivered, failed, now)?;
        tx.execute(
            "DELETE FROM drill_receipt WHERE smsc_id = ?1",
            params![smsc],
        )?;
        turn.receipts += 1;
        if delivered {
            let message = outbox::message_of_part(tx, ACCOUNT, &smsc)?;
            if let Some((id, outbox::MessageState::Delivered)) = message {
                plan_for(tx, id, now, reg, r)?;
            }
        }
    }
    Ok(())
}

/// The network's second half: every due message accepted, its receipts owed.
pub fn accept(
    tx: &Tx<'_>,
    now: Timestamp,
    policy: &Policy,
    r: &Responders,
    turn: &mut Turn,
) -> anyhow::Result<()> {
    // Everything due goes out now: the network takes it all (no throttle in a drill).
    loop {
        let claimed = outbox::claim(tx, "sms", "drill", 500, now, policy)?;
        if claimed.is_empty() {
            break;
        }
        let mut results = Vec::with_capacity(claimed.len());
        for c in &claimed {
            let (_, n) = crate::dispatch::sms::encode::segments(&c.text);
            let attempt = outbox::attempts(tx, c.id)?;
            let n = n.max(1) as u32;
            let off = r.draw(&["unreachable", &c.address]) < r.unreachable_share;
            let mut parts = Vec::new();
            for p in 1..=n {
                let smsc = format!("D{}.{attempt}.{p}", c.id);
                let delay = r.within(r.delivery_secs, r.draw(&["delivery", &smsc]));
                tx.execute(
                    "INSERT INTO drill_receipt (smsc_id, due, stat) VALUES (?1, ?2, ?3)",
                    params![
                        smsc,
                        secs(now) + delay,
                        if off { "UNDELIV" } else { "DELIVRD" }
                    ],
                )?;
                parts.push((p, n, smsc));
            }
            results.push((
                c.id,
                Outcome::Accepted {
                    account: ACCOUNT.into(),
                    parts,
                    uncertain: false,
                },
            ));
        }
        outbox::record(tx, &results, now, policy)?;
        turn.accepted += claimed.len();
    }
    Ok(())
}

/// The phone network's calls: every due call rings at once; whether the person picks up, and
/// presses 1, is drawn from (seed, number, message, attempt), so a retry may be picked up
/// where the first ring was not. A ring ends in the same turn (a minute holds a call).
pub fn ring(
    tx: &Tx<'_>,
    now: Timestamp,
    policy: &Policy,
    r: &Responders,
    turn: &mut Turn,
) -> anyhow::Result<()> {
    loop {
        let claimed = outbox::claim(tx, "voice", "drill", 500, now, policy)?;
        if claimed.is_empty() {
            break;
        }
        let mut results = Vec::with_capacity(claimed.len());
        for c in &claimed {
            let attempt = outbox::attempts(tx, c.id)?.to_string();
            let id = c.id.to_string();
            let off = r.draw(&["unreachable", &c.address]) < r.unreachable_share;
            let picks = !off && r.draw(&["pick-up", &c.address, &id, &attempt]) < r.pick_up_share;
            let presses = picks && r.draw(&["key", &c.address, &id]) < r.key_share;
            let outcome = match (off, picks, presses) {
                (true, _, _) => outbox::CallOutcome::Unreachable,
                (_, false, _) => outbox::CallOutcome::NoAnswer,
                (_, true, false) => outbox::CallOutcome::AnsweredNoKey,
                (_, true, true) => outbox::CallOutcome::Acknowledged,
            };
            results.push((
                c.id,
                outbox::Called::Rang(outbox::Ring {
                    trunk: ACCOUNT.into(),
                    outcome,
                    code: None,
                    key: presses.then_some('1'),
                    via: presses.then(|| "rfc4733".to_string()),
                    heard_ms: picks.then_some(20_000),
                    detail: off.then(|| "switched off or out of coverage".to_string()),
                }),
            ));
        }
        outbox::record_rings(tx, &results, now, &outbox::RingRules::default())?;
        turn.rings += claimed.len();
    }
    Ok(())
}

/// A warning text reached a person (message `id`, and every text it carried): plan what
/// they will do about each warning it names, if they have not planned it already.
fn plan_for(
    tx: &Tx<'_>,
    id: i64,
    now: Timestamp,
    reg: &Registry,
    r: &Responders,
) -> anyhow::Result<()> {
    for outbox::Carried {
        person,
        lineage,
        decision,
        words,
    } in outbox::carried(tx, id)?
    {
        // Some people answer, some never do (asleep, phone in a drawer): a trait of the
        // person, not of the warning.
        if r.draw(&["answers", &person]) >= r.answer_share {
            continue;
        }
        // The call this text made, if it made one (an Alert or a raise asks again; other
        // updates do not), else their latest call for the warning.
        let latest = crate::respond::calls::called_as(tx, decision, &person, &lineage)?;
        let Some(crate::respond::calls::CalledAs {
            level,
            target,
            by_this,
        }) = latest
        else {
            continue;
        };
        let sms = r.draw(&["sms", &person, &lineage]) < r.sms_share;
        let step = |tx: &Tx<'_>,
                    step: &str,
                    at: Timestamp,
                    people: Option<u32>,
                    refused: Option<u32>|
         -> anyhow::Result<()> {
            tx.execute(
                "INSERT OR IGNORE INTO drill_plan
                   (person, lineage, step, due, target, people, refused, sms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    person,
                    lineage,
                    step,
                    secs(at),
                    target,
                    people,
                    refused,
                    sms
                ],
            )?;
            Ok(())
        };
        // Each call is answered, some minutes after its text arrived.
        let dec = decision.to_string();
        let ack_at = now
            + SignedDuration::from_mins(r.within(r.answer_mins, r.draw(&["delay", &person, &dec])));
        if by_this {
            step(tx, &format!("ack:{decision}"), ack_at, None, None)?;
        }
        let lead = matches!(level.as_str(), "village" | "site" | "group");
        if lead && r.draw(&["post", &person, &lineage]) < r.post_share {
            let at = ack_at
                + SignedDuration::from_mins(
                    r.within(r.post_mins, r.draw(&["post-delay", &person, &lineage])),
                );
            step(tx, "post", at, None, None)?;
        }
        // Evacuation: once the warning says "move now", the first lead of the place to get
        // it reports people moved, in steps.
        let move_now = serde_json::from_str::<outbox::Words>(&words)
            .map(|w| w.move_ == "now")
            .unwrap_or(false);
        if !(move_now && matches!(level.as_str(), "village" | "site")) {
            continue;
        }
        let planned: i64 = tx.query_row(
            "SELECT count(*) FROM drill_plan WHERE lineage = ?1 AND target = ?2 AND step = 'moved1'",
            params![lineage, target],
            |x| x.get(0),
        )?;
        if planned > 0 {
            continue;
        }
        let to_move = reg
            .village(&target)
            .map(|v| v.evacuate)
            .or_else(|| reg.site(&target).map(|s| s.evacuate))
            .unwrap_or(0);
        let fin = (f64::from(to_move) * r.moved_share).round() as u32;
        if fin == 0 {
            continue;
        }
        let from = ack_at.max(now);
        for k in 1..=r.reports {
            let people = (u64::from(fin) * u64::from(k) / u64::from(r.reports)) as u32;
            let last = k == r.reports;
            step(
                tx,
                &format!("moved{k}"),
                from + SignedDuration::from_mins(i64::from(k * r.report_every_mins)),
                Some(people),
                last.then_some(to_move - fin),
            )?;
        }
    }
    Ok(())
}

/// Lifts since the last turn: every lead who reported people moved for the lifted warning
/// will report them back home.
pub fn lifts(tx: &Tx<'_>, scenario: &str, r: &Responders) -> anyhow::Result<()> {
    let after: i64 = tx.query_row(
        "SELECT lifts FROM drill_run WHERE scenario = ?1",
        params![scenario],
        |x| x.get(0),
    )?;
    let cancels = crate::correlate::store::lifts_after(tx, after)?;
    for (_, lineage, at) in &cancels {
        let due = secs(*at) + i64::from(r.return_after_mins) * 60;
        tx.execute(
            // Each lead reports the place's running total (the most any of its leads
            // reported moved), as the ledger counts a place's latest report.
            "INSERT OR IGNORE INTO drill_plan (person, lineage, step, due, target, people, sms)
             SELECT p.person, p.lineage, 'returned', ?2, p.target,
                    (SELECT max(q.people) FROM drill_plan q
                     WHERE q.target = p.target AND q.step LIKE 'moved%' AND q.channel IN ('sms', 'link')),
                    max(p.sms)
             FROM drill_plan p
             WHERE p.lineage = ?1 AND p.step LIKE 'moved%' AND p.channel IN ('sms', 'link')
             GROUP BY p.person, p.lineage, p.target",
            params![lineage, due],
        )?;
    }
    if let Some((last, _, _)) = cancels.last() {
        tx.execute(
            "UPDATE drill_run SET lifts = ?2 WHERE scenario = ?1",
            params![scenario, last],
        )?;
    }
    Ok(())
}

/// The people's half of a turn: every planned step whose time has come, in time order.
/// A warning lifted in the meantime makes its remaining steps moot (skipped), except the
/// report of people back home.
pub fn answer(
    tx: &Tx<'_>,
    now: Timestamp,
    reg: &Registry,
    settings: &RespondSettings,
    policy: &Policy,
    turn: &mut Turn,
) -> anyhow::Result<()> {
    type Due = (String, String, String, Option<u32>, Option<u32>, bool);
    let due: Vec<Due> = tx
        .prepare_cached(
            "SELECT person, lineage, step, people, refused, sms FROM drill_plan
             WHERE done IS NULL AND due <= ?1 ORDER BY due, person, lineage, step",
        )?
        .query_map(params![secs(now)], |x| {
            Ok((
                x.get(0)?,
                x.get(1)?,
                x.get(2)?,
                x.get(3)?,
                x.get(4)?,
                x.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (person, lineage, step, people, refused, sms) in due {
        let lifted = lift_time(tx, &lineage)?.is_some();
        // A lead whose latest text is about a warning still in force keeps people away: they
        // go home once that one is lifted too (a reply answers the last text's warning).
        if step == "returned" && sms && !last_text_lifted(tx, &person, reg)? {
            tx.execute(
                "UPDATE drill_plan SET due = due + 1800
                 WHERE person = ?1 AND lineage = ?2 AND step = ?3",
                params![person, lineage, step],
            )?;
            continue;
        }
        let (text, form) = match step.as_str() {
            s if s.starts_with("ack") => (
                "1".to_string(),
                LinkAnswer {
                    kind: "ack".into(),
                    ..Default::default()
                },
            ),
            "post" => (
                "2".to_string(),
                LinkAnswer {
                    kind: "post".into(),
                    ..Default::default()
                },
            ),
            "returned" => (
                format!("5 {}", people.unwrap_or(0)),
                LinkAnswer {
                    kind: "returned".into(),
                    people,
                    ..Default::default()
                },
            ),
            _ => (
                format!("3 {}", people.unwrap_or(0)),
                LinkAnswer {
                    kind: "moved".into(),
                    people,
                    refused,
                    ..Default::default()
                },
            ),
        };
        // A lead answering for several places names the one the report is for, first after
        // the number by SMS, chosen on the page (as a real one is asked to).
        let (text, form) = match plan_target(tx, &person, &lineage, &step)? {
            Some(target) if people.is_some() => {
                let must = intake::places_to_name(tx, reg, &lineage, &person)?;
                let row = crate::respond::ledger::row_of(reg, &target);
                match must.iter().find(|(id, _)| *id == row) {
                    Some((id, name)) => (
                        format!("{text} {name}"),
                        LinkAnswer {
                            place: Some(id.clone()),
                            ..form
                        },
                    ),
                    None => (text, form),
                }
            }
            _ => (text, form),
        };
        let channel = if lifted != (step == "returned") {
            "skipped"
        } else if sms {
            reply(tx, &person, reg, &text, now)?;
            "sms"
        } else if let Some(link) = current_link(tx, &person, &lineage, now)? {
            intake::from_link(tx, &link, &form, now, reg, settings, policy)?;
            "link"
        } else {
            // The link has expired: the lead texts instead, as a real one would.
            reply(tx, &person, reg, &text, now)?;
            "sms"
        };
        let shown = if channel == "link" {
            link_words(&form)
        } else {
            text
        };
        tx.execute(
            "UPDATE drill_plan SET done = ?4, channel = ?5, text = ?6
             WHERE person = ?1 AND lineage = ?2 AND step = ?3",
            params![person, lineage, step, secs(now), channel, shown],
        )?;
        if channel != "skipped" {
            turn.answers += 1;
        }
    }
    Ok(())
}

fn link_words(a: &LinkAnswer) -> String {
    let mut s = a.kind.clone();
    if let Some(n) = a.people {
        s.push_str(&format!(" people={n}"));
    }
    if let Some(n) = a.refused {
        s.push_str(&format!(" refused={n}"));
    }
    s
}

/// A text from the person's phone, as the SMSC would deliver it.
fn reply(
    tx: &Tx<'_>,
    person: &str,
    reg: &Registry,
    text: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let Some(mobile) = reg.person(person).map(|p| p.mobile.clone()) else {
        anyhow::bail!("drill: person {person} is not in the registry");
    };
    outbox::inbound(
        tx,
        &Inbound {
            kind: "reply",
            account: ACCOUNT,
            source: &mobile,
            dest: "drill",
            text,
            ..Inbound::default()
        },
        now,
    )?;
    Ok(())
}

/// The place a planned step reports for.
fn plan_target(
    tx: &Tx<'_>,
    person: &str,
    lineage: &str,
    step: &str,
) -> anyhow::Result<Option<String>> {
    Ok(tx
        .query_row(
            "SELECT target FROM drill_plan WHERE person = ?1 AND lineage = ?2 AND step = ?3",
            params![person, lineage, step],
            |x| x.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

/// Whether the warning of the person's latest text has been lifted (or no text went to them).
fn last_text_lifted(tx: &Tx<'_>, person: &str, reg: &Registry) -> anyhow::Result<bool> {
    let Some(mobile) = reg.person(person).map(|p| p.mobile.clone()) else {
        return Ok(true);
    };
    Ok(match outbox::last_sent_to(tx, &mobile)? {
        Some(last) => lift_time(tx, &last.lineage)?.is_some(),
        None => true,
    })
}

/// When the warning was lifted (see `correlate::store::lifted_at`).
fn lift_time(tx: &Tx<'_>, lineage: &str) -> anyhow::Result<Option<Timestamp>> {
    crate::correlate::store::lifted_at(tx, lineage)
}

/// The link in the person's latest delivered text of this warning, while it is valid.
fn current_link(
    tx: &Tx<'_>,
    person: &str,
    lineage: &str,
    now: Timestamp,
) -> anyhow::Result<Option<crate::dispatch::link::Link>> {
    let message = outbox::latest_delivered(tx, person, lineage)?;
    let Some(message) = message else {
        return Ok(None);
    };
    Ok(crate::dispatch::link::of_message(tx, message)?.filter(|l| l.expires > now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_stable_fractions_that_follow_the_seed() {
        let r = Responders::default();
        let a = r.draw(&["answers", "P1", "typhoon:331098"]);
        assert_eq!(a, r.draw(&["answers", "P1", "typhoon:331098"]));
        assert!((0.0..1.0).contains(&a));
        let other = Responders {
            seed: 2,
            ..Responders::default()
        };
        assert_ne!(a, other.draw(&["answers", "P1", "typhoon:331098"]));
        // Parts are separated: ("ab","c") is not ("a","bc").
        assert_ne!(r.draw(&["ab", "c"]), r.draw(&["a", "bc"]));
        // Shares come out near their share over many draws.
        let n = 4000;
        let hits = (0..n)
            .filter(|i| r.draw(&["answers", &format!("P{i}")]) < 0.85)
            .count();
        assert!((3250..3550).contains(&hits), "{hits} of {n}");
    }

    #[test]
    fn ranges_include_both_ends_and_bad_settings_are_named() {
        let r = Responders::default();
        assert_eq!(r.within([2, 40], 0.0), 2);
        assert_eq!(r.within([2, 40], 0.999_999), 40);
        assert_eq!(r.within([5, 5], 0.5), 5);
        let bad = Responders {
            answer_share: 1.5,
            ..Responders::default()
        };
        assert!(bad.check().unwrap_err().contains("answer_share"));
        let bad = Responders {
            post_mins: [30, 5],
            ..Responders::default()
        };
        assert!(bad.check().unwrap_err().contains("post_mins"));
        let bad = Responders {
            answer_mins: [1, u32::MAX],
            ..Responders::default()
        };
        assert!(bad.check().unwrap_err().contains("answer_mins"));
        let bad = Responders {
            reports: 1_000_000,
            ..Responders::default()
        };
        assert!(bad.check().unwrap_err().contains("reports"));
        assert!(Responders::default().check().is_ok());
    }
}
