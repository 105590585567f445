//! Calls and the ladder (叫应): every responsible person named by a warning is called, must
//! answer by a deadline that depends on the tier, and is chased up the ladder when silent.
//!
//! A call is written in the decision's transaction ([`register`], part of the hook), for an
//! Alert or a raise (a routine update does not ask again; a Cancel closes the lineage's calls).
//! Its steps are scheduled then and there, from `[respond.ladder]`: each step is a row with a
//! due time; [`fire_due`] fires the due ones, each in one transaction with what it does, so a
//! step fires once across crashes and restarts. Any answer from the person ([`answered`])
//! closes their open calls and cancels the pending steps; with `all_must_answer = false` an
//! answer also covers the other persons called for the same place.
//!
//! Actions: `resend` (the chase text to the person again), `deputy` (their A/B deputy),
//! `town` and `county` (the duty persons of the place's town or county), `silent` (the place
//! goes on the county duty officer's silent list). Messages go through dispatch's outbox
//! (`outbox::notice`): respond asks dispatch to send; dispatch never calls respond.

use std::collections::BTreeMap;

use crate::store::sql::{Conn, OptionalExtension, Tx};
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::correlate::MessageKind;
use crate::correlate::Targets;
use crate::correlate::Tier;
use crate::dispatch::outbox::{self, Notice, Policy, Words};
use crate::registry::Registry;
use crate::store::stamp;

crate::store::sql_enum! {
    /// Where a call stands (`respond_call.state`).
    pub enum CallState {
        /// Waiting for the person's answer; the ladder climbs.
        Open = "open",
        /// They answered.
        Answered = "answered",
        /// Someone else answered for the same place.
        Covered = "covered",
        /// A raise asked them again (the newer call stands).
        Superseded = "superseded",
        /// The warning was lifted before they answered.
        Lifted = "lifted",
        /// The ladder ran out: on the silent list.
        Silent = "silent",
        /// They no longer answer for the place (the registry changed).
        Replaced = "replaced",
    }
}

crate::store::sql_enum! {
    /// A ladder step (`respond_step.state`).
    pub enum StepState {
        /// Not yet due, or due and about to fire.
        Pending = "pending",
        /// Done (what it did is in its detail).
        Fired = "fired",
        /// Its call was answered or closed first.
        Cancelled = "cancelled",
    }
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Minutes after the warning.
    pub after_mins: u32,
    /// resend | deputy | town | county | silent.
    pub action: String,
}

/// `[respond]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondSettings {
    /// Every person called for a place must answer (false: one answer covers the place).
    #[serde(default)]
    pub all_must_answer: bool,
    /// The ladder per tier (`blue`, `yellow`, `orange`, `red`); a tier without one is tracked
    /// but not chased.
    #[serde(default)]
    pub ladder: BTreeMap<String, Vec<Step>>,
    /// A person's requests for help about one warning are passed on to the town and county at
    /// most once in this many minutes (later ones are kept for the office).
    #[serde(default = "thirty")]
    pub help_coalesce_mins: u32,
    /// At most this many persons' requests for help about one warning are passed on in an
    /// hour (the rest are kept for the office, which sees every one).
    #[serde(default = "ten")]
    pub help_per_hour: u32,
}

impl Default for RespondSettings {
    fn default() -> RespondSettings {
        RespondSettings {
            all_must_answer: false,
            ladder: BTreeMap::new(),
            help_coalesce_mins: thirty(),
            help_per_hour: ten(),
        }
    }
}

fn thirty() -> u32 {
    30
}

fn ten() -> u32 {
    10
}

/// The actions a step may name.
pub const ACTIONS: &[&str] = &[
    "resend",
    "terminal",
    "call",
    "deputy",
    "town",
    "call_town",
    "county",
    "silent",
];

impl RespondSettings {
    /// Problems with the ladder, each as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (tier, steps) in &self.ladder {
            if Tier::parse(tier).is_none() {
                out.push((
                    format!("respond.ladder.{tier}"),
                    "not a tier: blue, yellow, orange or red".into(),
                ));
            }
            let mut last = 0;
            for (i, s) in steps.iter().enumerate() {
                if !ACTIONS.contains(&s.action.as_str()) {
                    out.push((
                        format!("respond.ladder.{tier}[{i}].action"),
                        format!("{:?} is not one of {}", s.action, ACTIONS.join(", ")),
                    ));
                }
                if s.after_mins < last {
                    out.push((
                        format!("respond.ladder.{tier}[{i}].after_mins"),
                        format!("{} comes before the step above it ({last})", s.after_mins),
                    ));
                }
                last = s.after_mins;
            }
        }
        out
    }
}

/// What registering one decision's calls did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registered {
    /// Calls made.
    pub calls: usize,
    /// Steps scheduled.
    pub steps: usize,
    /// Earlier calls closed (superseded by a raise, or lifted).
    pub closed: usize,
}

/// Write the calls of a decision, inside its transaction.
pub fn register(
    tx: &Tx<'_>,
    decision: i64,
    t: &Targets,
    now: Timestamp,
    settings: &RespondSettings,
    policy: &Policy,
) -> anyhow::Result<Registered> {
    let mut out = Registered::default();
    let at = stamp(now);
    if t.send == MessageKind::Cancel {
        out.closed += close(tx, &t.lineage, None, decision, CallState::Lifted, now)?;
        return Ok(out);
    }
    if !(t.send == MessageKind::Alert || t.raises) {
        return Ok(out);
    }
    let words = serde_json::to_string(&outbox::words(t, crate::templates::lang(&policy.lang)))?;
    let ladder = settings
        .ladder
        .get(t.tier.as_str())
        .cloned()
        .unwrap_or_default();
    // Whether anything of an earlier decision of this warning is still open: most decisions
    // are a warning's first, and then the per-person closing below (three statements a
    // person, round trips on PostgreSQL) has nothing to do. The same conditions as `close`.
    let earlier: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM respond_call
                            WHERE lineage = ?1 AND state = 'open' AND decision < ?2)",
        )?
        .query_row(params![t.lineage, decision], |r| r.get(0))?
        || outbox::rings_queued_before(tx, &t.lineage, decision)?;
    // The ladder's steps of one call in one statement.
    let steps_sql = format!(
        "INSERT INTO respond_step (call, step, due, action, state) VALUES {}",
        (0..ladder.len())
            .map(|i| format!(
                "(?1, ?{}, ?{}, ?{}, 'pending')",
                3 * i + 2,
                3 * i + 3,
                3 * i + 4
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let steps: Vec<(i64, String, &str)> = ladder
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                i as i64 + 1,
                stamp(now + SignedDuration::from_mins(i64::from(s.after_mins))),
                s.action.as_str(),
            )
        })
        .collect();
    for c in &t.contacts {
        // A raise asks again: the person's open calls for this warning give way to the new one.
        if earlier {
            out.closed += close(
                tx,
                &t.lineage,
                Some(&c.person),
                decision,
                CallState::Superseded,
                now,
            )?;
        }
        let n = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO respond_call
               (decision, lineage, version, hazard, tier, person, name, mobile, level, role, target,
                deputy, words, called, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'open')",
            )?
            .execute(params![
                decision,
                t.lineage,
                t.version,
                t.hazard.as_str(),
                t.tier.as_str(),
                c.person,
                c.name,
                c.mobile,
                c.level,
                c.role,
                c.target,
                c.deputy,
                words,
                at
            ])?;
        if n == 0 {
            continue;
        }
        out.calls += 1;
        let call = tx.last_insert_rowid()?;
        if steps.is_empty() {
            continue;
        }
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&call];
        for (n, due, action) in &steps {
            values.extend([n as &dyn rusqlite::ToSql, due, action]);
        }
        tx.prepare_cached(&steps_sql)?.execute(values.as_slice())?;
        out.steps += steps.len();
    }
    Ok(out)
}

/// A warning in force was re-targeted to a new registry ([`crate::correlate::Retarget`]):
/// the persons it now calls join its ladder from now, as a new call would; the persons who no
/// longer answer for a place are no longer chased (their open or silent calls for it become
/// `replaced`, their pending steps cancelled); a changed number is what the ladder's next
/// text to that person uses.
pub fn retarget(
    tx: &Tx<'_>,
    r: &crate::correlate::Retarget,
    now: Timestamp,
    settings: &RespondSettings,
    policy: &Policy,
) -> anyhow::Result<Registered> {
    let at = stamp(now);
    for c in &r.removed {
        tx.prepare_cached(
            "UPDATE respond_step SET state = 'cancelled', fired = ?4,
                    detail = 'call replaced: no longer on duty in the registry'
             WHERE state || '' = 'pending' AND call IN (
               SELECT id FROM respond_call WHERE lineage = ?1 AND person = ?2 AND target = ?3
                 AND state IN ('open', 'silent'))",
        )?
        .execute(params![r.lineage, c.person, c.target, at])?;
        tx.prepare_cached(
            "UPDATE respond_call SET state = 'replaced'
             WHERE lineage = ?1 AND person = ?2 AND target = ?3 AND state IN ('open', 'silent')",
        )?
        .execute(params![r.lineage, c.person, c.target])?;
    }
    for c in &r.renumbered {
        tx.prepare_cached(
            "UPDATE respond_call SET mobile = ?3
             WHERE lineage = ?1 AND person = ?2 AND state IN ('open', 'silent')",
        )?
        .execute(params![r.lineage, c.person, c.mobile])?;
    }
    if r.added.is_empty() {
        return Ok(Registered::default());
    }
    // Their first call for this warning: asked as an Alert would ask.
    let t = Targets {
        contacts: r.added.clone(),
        raises: true,
        ..r.targets.clone()
    };
    register(tx, r.decision, &t, now, settings, policy)
}

/// Close the open calls of a lineage made by decisions before `decision` (one person's, or
/// everyone's) and cancel their steps.
fn close(
    tx: &Tx<'_>,
    lineage: &str,
    person: Option<&str>,
    decision: i64,
    state: CallState,
    now: Timestamp,
) -> anyhow::Result<usize> {
    let at = stamp(now);
    let why = format!("call {state}");
    // Two shapes, so each uses the (lineage, state, person) index to the full: one person's
    // calls (a raise, per contact: must not scan the lineage's thousands), or everyone's.
    let (steps, calls) = if person.is_some() {
        (
            // `state || ''`: find the steps by their call (a handful), not every pending step.
            "UPDATE respond_step SET state = 'cancelled', fired = ?4, detail = ?3
             WHERE state || '' = 'pending' AND call IN (
               SELECT id FROM respond_call WHERE lineage = ?1 AND state = 'open' AND person = ?2
                 AND decision < ?5)",
            "UPDATE respond_call SET state = ?3 WHERE lineage = ?1 AND state = 'open'
               AND person = ?2 AND decision < ?4",
        )
    } else {
        (
            "UPDATE respond_step SET state = 'cancelled', fired = ?4, detail = ?3
             WHERE state || '' = 'pending' AND call IN (
               SELECT id FROM respond_call WHERE lineage = ?1 AND state = 'open' AND CAST(?2 AS TEXT) IS NULL
                 AND decision < ?5)",
            "UPDATE respond_call SET state = ?3 WHERE lineage = ?1 AND state = 'open'
               AND CAST(?2 AS TEXT) IS NULL AND decision < ?4",
        )
    };
    tx.prepare_cached(steps)?
        .execute(params![lineage, person, why, at, decision])?;
    outbox::withdraw_rings(tx, lineage, person, decision, now)?;
    Ok(tx
        .prepare_cached(calls)?
        .execute(params![lineage, person, state, decision])?)
}

/// Someone answered about `lineages` (the warning their link is for, or the warnings their
/// last text carried): close their open calls of those warnings made before `at` (and, unless
/// every person must answer, the others' for the same places). A late answer counts too: a
/// call already on the silent list comes off it. Their calls on any other warning stay open:
/// an answer acts only on what it answers. Returns the calls closed.
pub fn answered(
    tx: &Tx<'_>,
    person: &str,
    lineages: &[String],
    answer: i64,
    at: Timestamp,
    settings: &RespondSettings,
) -> anyhow::Result<usize> {
    let when = stamp(at);
    let scope = serde_json::to_string(lineages)?;
    let mine: Vec<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT id, lineage, target FROM respond_call WHERE person = ?1 AND state IN ('open', 'silent')
               AND called <= ?2 AND lineage IN (SELECT value FROM json_each(?3))",
        )?
        .query_map(params![person, when, scope], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<crate::store::sql::Result<_>>()?;
    let mut closed = 0;
    for (id, lineage, target) in mine {
        closed += finish(tx, id, CallState::Answered, answer, &when)?;
        if !settings.all_must_answer {
            let others: Vec<i64> = tx
                .prepare_cached(
                    "SELECT id FROM respond_call WHERE lineage = ?1 AND target = ?2 AND state IN ('open', 'silent')
                       AND called <= ?3",
                )?
                .query_map(params![lineage, target, when], |r| r.get(0))?
                .collect::<crate::store::sql::Result<_>>()?;
            for o in others {
                closed += finish(tx, o, CallState::Covered, answer, &when)?;
            }
        }
    }
    Ok(closed)
}

/// The answered call's pending steps cancelled (`?1` the call, `?2` when, `?3` why): an
/// answer's one write that a storm repeats for every person. `state || ''` is no column an
/// index holds: the call's handful of steps are found by `(call, step)`, never by walking
/// every pending step of the storm through `respond_step_due`, which PostgreSQL chose with
/// statistics taken while the table was small (6 ms an answer at 450,000 pending steps, 56 s
/// of a 40-county storm's 72 s of commits). Public so that its plan can be checked against a
/// real PostgreSQL.
pub const ANSWERED_STEPS: &str =
    "UPDATE respond_step SET state = 'cancelled', fired = ?2, detail = ?3
     WHERE call = ?1 AND state || '' = 'pending'";

fn finish(
    tx: &Tx<'_>,
    call: i64,
    state: CallState,
    answer: i64,
    when: &str,
) -> anyhow::Result<usize> {
    tx.prepare_cached(ANSWERED_STEPS)?.execute(params![
        call,
        when,
        format!("answered (answer {answer})")
    ])?;
    outbox::withdraw_rings_of(tx, call, when.parse()?)?;
    Ok(tx
        .prepare_cached(
            "UPDATE respond_call SET state = ?2, answered = ?3, answer = ?4
         WHERE id = ?1 AND state IN ('open', 'silent')",
        )?
        .execute(params![call, state, when, answer])?)
}

/// A call as a step sees it.
#[derive(Debug, Clone)]
struct Call {
    id: i64,
    decision: i64,
    lineage: String,
    version: i64,
    hazard: String,
    tier: String,
    person: String,
    name: String,
    mobile: String,
    role: String,
    target: String,
    deputy: Option<String>,
    words: Words,
    called: Timestamp,
}

/// What firing the due steps did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fired {
    /// Steps fired.
    pub steps: usize,
    /// Messages queued by them.
    pub messages: usize,
    /// Places put on the silent list.
    pub silent: usize,
}

/// The town and county codes over a place (a village's code, or a site's first village).
pub(crate) fn units_over(reg: &Registry, target: &str) -> (Option<String>, Option<String>) {
    let code = if target.len() >= 9 && target.bytes().all(|b| b.is_ascii_digit()) {
        Some(target.to_string())
    } else {
        reg.site(target).and_then(|s| s.villages.first().cloned())
    };
    match code {
        Some(c) if c.len() >= 9 => (Some(c[..9].to_string()), Some(c[..6].to_string())),
        _ => (None, None),
    }
}

/// Fire every pending step that is due, each in `tx` with the messages it queues. The
/// registry says who the deputies and the town and county duty persons are.
pub fn fire_due(
    tx: &Tx<'_>,
    now: Timestamp,
    reg: &Registry,
    policy: &Policy,
) -> anyhow::Result<Fired> {
    let mut out = Fired::default();
    let due: Vec<(i64, i64, i64, String)> = tx
        .prepare_cached(
            "SELECT s.id, s.call, s.step, s.action FROM respond_step s JOIN respond_call c ON c.id = s.call
             WHERE s.state = 'pending' AND s.due <= ?1 AND c.state = 'open' ORDER BY s.due, s.id LIMIT 500",
        )?
        .query_map(params![stamp(now)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    let lang = crate::templates::lang(&policy.lang);
    for (step_id, call_id, step, action) in due {
        let Some(call) = load_call(tx, call_id)? else {
            continue;
        };
        let minutes = (now.duration_since(call.called).as_secs() / 60).max(0);
        let event = crate::templates::event_name(&call.hazard, lang)?;
        let tier = Tier::parse(&call.tier).unwrap_or(Tier::Blue);
        let mut queued = Vec::new();
        // A text, or (`voice`) a call through the voice channel.
        let mut notify = |person: &str,
                          mobile: &str,
                          text: String,
                          purpose: String,
                          voice: bool|
         -> anyhow::Result<()> {
            let n = Notice {
                decision: call.decision,
                lineage: call.lineage.clone(),
                version: call.version as u32,
                hazard: call.hazard.clone(),
                tier,
                person: person.to_string(),
                mobile: mobile.to_string(),
                text,
                purpose,
                chase: true,
            };
            let id = if voice {
                outbox::ring(tx, &n, now)?
            } else {
                outbox::notice(tx, &n, now)?
            };
            if let Some(id) = id {
                queued.push(format!("{person}#{id}"));
            }
            Ok(())
        };
        let escalate = |to_role: &str| -> anyhow::Result<String> {
            let t = crate::templates::env()?
                .get_template(&format!("sms/escalate.{lang}"))?
                .render(minijinja::context! {
                    office => &policy.office, exercise => policy.exercise, event => &event,
                    tier => &call.tier, tier_zh => tier.zh(), places => &call.words.places,
                    minutes => minutes, name => &call.name, role => &call.role,
                    mobile => &call.mobile, to_role => to_role,
                })?;
            Ok(t.trim().to_string())
        };
        // What a call says before the keys' prompt (`templates/voice/call.{lang}.j2`): to the
        // person, or (`to_role`) to a town officer about them.
        let spoken = |to_role: Option<&str>| -> anyhow::Result<String> {
            let t = crate::templates::env()?
                .get_template(&format!("voice/call.{lang}"))?
                .render(minijinja::context! {
                    office => &policy.office, exercise => policy.exercise, event => &event,
                    tier => &call.tier, tier_zh => tier.zh(), places => &call.words.places,
                    minutes => minutes, name => &call.name, role => &call.role,
                    to_role => to_role,
                })?;
            Ok(t.trim().to_string())
        };
        let mut detail = String::new();
        match action.as_str() {
            "resend" => {
                let text = crate::templates::env()?
                    .get_template(&format!("sms/chase.{lang}"))?
                    .render(minijinja::context! {
                        office => &policy.office, exercise => policy.exercise, event => &event,
                        tier => &call.tier, tier_zh => tier.zh(), places => &call.words.places,
                        minutes => minutes, name => &call.name,
                    })?;
                notify(
                    &call.person,
                    &call.mobile,
                    text.trim().to_string(),
                    format!("resend:{}:{step}", call.id),
                    false,
                )?;
            }
            "call" => {
                // 电话叫应: the person's phone rings until they answer; a key answers the call.
                let words = spoken(None)?;
                notify(
                    &call.person,
                    &call.mobile,
                    words,
                    format!("call:{}:{step}", call.id),
                    true,
                )?;
            }
            "terminal" => {
                // The channel ladder: the village's loudspeakers say it again, for everyone
                // there, the lead included (through dispatch's broadcast queue).
                let village = super::ledger::row_of(reg, &call.target);
                let jobs =
                    crate::dispatch::broadcast::jobs::resound(tx, &call.lineage, &village, now)?;
                detail = if jobs > 0 {
                    format!("loudspeakers of {village} sound again ({jobs} broadcast(s))")
                } else {
                    format!(
                        "no loudspeaker of {village} was in this warning's broadcast (or it already sounds again)"
                    )
                };
            }
            "deputy" => match call.deputy.as_deref().and_then(|d| reg.person(d)) {
                Some(d) => notify(
                    &d.id,
                    &d.mobile,
                    escalate("deputy")?,
                    format!("deputy:{}:{step}", call.id),
                    false,
                )?,
                None => {
                    detail = format!(
                        "{} ({}) has no deputy in the registry",
                        call.name, call.person
                    )
                }
            },
            "town" | "county" | "call_town" => {
                let (town, county) = units_over(reg, &call.target);
                let voice = action == "call_town";
                let unit = if action == "county" { county } else { town };
                let mut any = false;
                if let Some(unit) = unit {
                    let text = if voice {
                        spoken(Some("town"))?
                    } else {
                        escalate(&action)?
                    };
                    for (duty, person) in reg.duties_for(&unit) {
                        let Some(p) = person else { continue };
                        if p.id == call.person {
                            continue;
                        }
                        any = true;
                        notify(
                            &p.id,
                            &p.mobile,
                            text.clone(),
                            format!("{action}:{}:{step}:{}", call.id, duty.role),
                            voice,
                        )?;
                    }
                }
                if !any {
                    detail = format!(
                        "nobody on duty for the {action} over {} in the registry",
                        call.target
                    );
                }
            }
            "silent" => {
                tx.prepare_cached(
                    "UPDATE respond_call SET state = 'silent' WHERE id = ?1 AND state = 'open'",
                )?
                .execute(params![call.id])?;
                out.silent += 1;
                detail = format!(
                    "{} ({}, {}) silent {minutes} min after the {} {} warning: on the county's silent list",
                    call.name, call.role, call.target, call.tier, call.hazard
                );
                tracing::error!(person = %call.person, target = %call.target, lineage = %call.lineage, "{detail}");
            }
            other => detail = format!("unknown action {other:?}"),
        }
        out.messages += queued.len();
        if detail.is_empty() {
            detail = format!("queued {}", queued.join(", "));
        }
        let n = tx.prepare_cached("UPDATE respond_step SET state = 'fired', fired = ?2, detail = ?3 WHERE id = ?1 AND state = 'pending'")?.execute(
            params![step_id, stamp(now), detail],
        )?;
        out.steps += n;
        crate::store::audit::append(
            tx,
            &crate::store::audit::Entry {
                at: now.to_zoned(jiff::tz::TimeZone::UTC),
                actor: "respond".into(),
                kind: format!("escalation.{action}"),
                subject: call.person.clone(),
                detail: serde_json::json!({
                    "call": call.id, "step": step, "lineage": call.lineage, "target": call.target,
                    "minutes": minutes, "detail": detail,
                }),
            },
        )?;
    }
    Ok(out)
}

fn load_call(c: &Conn<'_>, id: i64) -> anyhow::Result<Option<Call>> {
    let row = c
        .prepare_cached(
            "SELECT id, decision, lineage, version, hazard, tier, person, name, mobile, role, target,
                    deputy, words, called FROM respond_call WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((
                (r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?),
                (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, String>(6)?, r.get::<_, String>(7)?),
                (r.get::<_, String>(8)?, r.get::<_, String>(9)?, r.get::<_, String>(10)?),
                (r.get::<_, Option<String>>(11)?, r.get::<_, String>(12)?, r.get::<_, String>(13)?),
            ))
        })
        .optional()?;
    let Some((
        (id, decision, lineage, version),
        (hazard, tier, person, name),
        (mobile, role, target),
        (deputy, words, called),
    )) = row
    else {
        return Ok(None);
    };
    Ok(Some(Call {
        id,
        decision,
        lineage,
        version,
        hazard,
        tier,
        person,
        name,
        mobile,
        role,
        target,
        deputy,
        words: serde_json::from_str(&words)?,
        called: called.parse()?,
    }))
}

/// A place on the county duty officer's silent list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silent {
    /// hazard:area.
    pub lineage: String,
    /// The village or site.
    pub target: String,
    /// Who did not answer.
    pub person: String,
    /// Their name.
    pub name: String,
    /// When they were called.
    pub called: String,
}

/// Whom a person was called as for a warning: by the call a decision made for them, else by
/// their latest call for the warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalledAs {
    /// Their level (village, site, town, …).
    pub level: String,
    /// The village or site they answer for.
    pub target: String,
    /// Whether the decision itself called them (an Alert or a raise asks again; other updates
    /// do not).
    pub by_this: bool,
}

/// See [`CalledAs`].
pub fn called_as(
    c: &Conn<'_>,
    decision: i64,
    person: &str,
    lineage: &str,
) -> anyhow::Result<Option<CalledAs>> {
    let this: Option<(String, String)> = c
        .prepare_cached(
            "SELECT level, target FROM respond_call WHERE decision = ?1 AND person = ?2
             ORDER BY id LIMIT 1",
        )?
        .query_row(params![decision, person], |x| Ok((x.get(0)?, x.get(1)?)))
        .optional()?;
    if let Some((level, target)) = this {
        return Ok(Some(CalledAs {
            level,
            target,
            by_this: true,
        }));
    }
    let latest: Option<(String, String)> = c
        .prepare_cached(
            "SELECT level, target FROM respond_call WHERE person = ?1 AND lineage = ?2
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![person, lineage], |x| Ok((x.get(0)?, x.get(1)?)))
        .optional()?;
    Ok(latest.map(|(level, target)| CalledAs {
        level,
        target,
        by_this: false,
    }))
}

/// One fired ladder step as the record of a drill shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Row id.
    pub id: i64,
    /// When it fired (stored stamp).
    pub fired: Option<String>,
    /// What it was (resend, deputy, town, …).
    pub action: String,
    /// What it did.
    pub detail: Option<String>,
    /// The person it chased.
    pub person: String,
    /// The warning.
    pub lineage: String,
    /// Its version.
    pub version: i64,
    /// The place the call was for.
    pub target: String,
    /// Its place on the ladder.
    pub step: i64,
}

/// Every ladder step that fired, in order.
pub fn fired_steps(c: &Conn<'_>) -> anyhow::Result<Vec<StepRecord>> {
    Ok(c.prepare(
        "SELECT s.id, s.fired, s.action, s.detail, c.person, c.lineage, c.version, c.target, s.step
         FROM respond_step s JOIN respond_call c ON c.id = s.call
         WHERE s.state = 'fired' ORDER BY s.id",
    )?
    .query_map((), |r| {
        Ok(StepRecord {
            id: r.get("id")?,
            fired: r.get("fired")?,
            action: r.get("action")?,
            detail: r.get("detail")?,
            person: r.get("person")?,
            lineage: r.get("lineage")?,
            version: r.get("version")?,
            target: r.get("target")?,
            step: r.get("step")?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

/// Fired steps by action.
pub fn escalations(c: &Conn<'_>) -> anyhow::Result<BTreeMap<String, i64>> {
    Ok(c.prepare(
        "SELECT s.action, count(DISTINCT c.person || ' ' || c.lineage) FROM respond_step s
         JOIN respond_call c ON c.id = s.call WHERE s.state = 'fired' GROUP BY s.action",
    )?
    .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect::<Result<_, _>>()?)
}

/// Per (person, warning): whether they answered it themselves, whether another lead of the
/// same place answered for them, whether they are on the silent list, whether the ladder ever
/// put them there (some answer after being listed).
pub fn outcomes(c: &Conn<'_>) -> anyhow::Result<Vec<(bool, bool, bool, bool)>> {
    Ok(c.prepare(
        "SELECT max(CASE WHEN c.state = 'answered' THEN 1 ELSE 0 END), max(CASE WHEN c.state = 'covered' THEN 1 ELSE 0 END), max(CASE WHEN c.state = 'silent' THEN 1 ELSE 0 END),
                EXISTS (SELECT 1 FROM respond_step s JOIN respond_call k ON k.id = s.call
                        WHERE k.person = c.person AND k.lineage = c.lineage
                          AND s.action = 'silent' AND s.state = 'fired')
         FROM respond_call c GROUP BY c.person, c.lineage ORDER BY c.person, c.lineage",
    )?
    .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
    .collect::<Result<_, _>>()?)
}

/// Per answered call: minutes from the call to its answer (or the answer that covered it).
pub fn answer_minutes(c: &Conn<'_>) -> anyhow::Result<Vec<f64>> {
    let mut st = c.prepare(
        "SELECT called, answered FROM respond_call
         WHERE state IN ('answered', 'covered') AND answered IS NOT NULL",
    )?;
    let mut mins = Vec::new();
    for row in st.query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (a, b) = row?;
        if let (Ok(a), Ok(b)) = (a.parse::<Timestamp>(), b.parse::<Timestamp>()) {
            mins.push(b.duration_since(a).as_secs_f64() / 60.0);
        }
    }
    Ok(mins)
}

/// (state or kind, how many), in name order.
pub type Tally = Vec<(String, i64)>;

/// Per (person, warning) answered by the person themselves: the channel of the answer that
/// closed their call (the first one), counted once per pair.
pub fn answered_by_channel(c: &Conn<'_>) -> anyhow::Result<BTreeMap<String, i64>> {
    Ok(c.prepare(
        "SELECT a.channel, count(*) FROM (
           SELECT min(k.answer) AS answer FROM respond_call k
           WHERE k.state = 'answered' AND k.answer IS NOT NULL GROUP BY k.person, k.lineage) f
         JOIN respond_answer a ON a.id = f.answer GROUP BY a.channel",
    )?
    .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect::<Result<_, _>>()?)
}

/// Calls by state, and first answers by kind (repeats left out), for `status`.
pub fn tallies(c: &Conn<'_>) -> anyhow::Result<(Tally, Tally)> {
    let mut st =
        c.prepare("SELECT state, count(*) FROM respond_call GROUP BY state ORDER BY state")?;
    let calls = st
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut st = c.prepare(
        "SELECT kind, count(*) FROM respond_answer WHERE repeat_of IS NULL GROUP BY kind ORDER BY kind",
    )?;
    let answers = st
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok((calls, answers))
}

/// The silent list, oldest call first.
pub fn silent(c: &Conn<'_>) -> anyhow::Result<Vec<Silent>> {
    Ok(c.prepare_cached(
        "SELECT lineage, target, person, name, called FROM respond_call WHERE state = 'silent' ORDER BY called, target",
    )?
    .query_map((), |r| {
        Ok(Silent {
            lineage: r.get(0)?,
            target: r.get(1)?,
            person: r.get(2)?,
            name: r.get(3)?,
            called: r.get(4)?,
        })
    })?
    .collect::<crate::store::sql::Result<_>>()?)
}

/// The respond stage's figures for monitoring (`/metrics`): calls by state, ladder steps by
/// action and state, and the seconds each answered call took to be answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// (state, calls).
    pub calls: Vec<(String, i64)>,
    /// (action, state, steps).
    pub steps: Vec<(String, String, i64)>,
    /// Seconds from call to the person's own answer, one per answered call.
    pub ack_secs: Vec<f64>,
}

/// Read [`Figures`].
pub fn figures(c: &Conn<'_>) -> anyhow::Result<Figures> {
    let calls = c
        .prepare_cached("SELECT state, count(*) FROM respond_call GROUP BY state ORDER BY state")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    let steps = c
        .prepare_cached(
            "SELECT action, state, count(*) FROM respond_step GROUP BY action, state ORDER BY action, state",
        )?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    let ack_secs = c
        .prepare_cached(
            "SELECT called, answered FROM respond_call WHERE state = 'answered' AND answered IS NOT NULL",
        )?
        .query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .filter_map(|row| {
            let (a, b) = row.ok()?;
            let (a, b) = (a.parse::<Timestamp>().ok()?, b.parse::<Timestamp>().ok()?);
            Some(b.duration_since(a).as_secs_f64().max(0.0))
        })
        .collect();
    Ok(Figures {
        calls,
        steps,
        ack_secs,
    })
}
