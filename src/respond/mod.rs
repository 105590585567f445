//! Respond: the call-and-respond loop (叫应). A warning nobody acknowledged has not been
//! delivered: this stage records who was called (`calls.rs`, in the decision's transaction),
//! reads what people answered (`intake.rs`: SMS replies in the language of `reply.rs`, and the
//! check-in links' answers, with the same effects), and chases silence up the ladder
//! (`calls::fire_due`: re-send, the village's loudspeakers again, deputy, town, county, the
//! silent list). `terminals.rs` turns broadcast alarms (a loudspeaker that did not confirm)
//! into messages to the people of that village; `shelters.rs` tells the town and county when a
//! shelter passes 90 %. After a lift, leads report people back home (解除转移) the same way.
//!
//! The read side: `board.rs` (the duty office's board, for the page, API and CSV) and
//! `report.rs` (the after-action report of one warning).
//!
//! Respond is the loop's last stage: it asks dispatch to act only through
//! `dispatch::outbox::notice` (texts) and `dispatch::broadcast::jobs::resound` (loudspeakers
//! again), and reads dispatch's published state through its functions; dispatch never calls
//! respond.

pub mod board;
pub mod calls;
pub(crate) mod charts;
pub mod intake;
pub mod ledger;
pub(crate) mod reply;
pub mod report;
pub(crate) mod shelters;
pub mod terminals;

pub use calls::RespondSettings;

use std::sync::Arc;

use crate::correlate::DecisionHook;
use crate::dispatch::Policy;

/// How far respond has read another stage's queue named `name` (0: nothing yet).
pub(crate) fn cursor(c: &crate::store::sql::Conn<'_>, name: &str) -> anyhow::Result<i64> {
    Ok(crate::store::sql::OptionalExtension::optional(
        c.prepare_cached("SELECT last FROM respond_cursor WHERE name = ?1")?
            .query_row([name], |r| r.get(0)),
    )?
    .unwrap_or(0))
}

/// Move the cursor of `name` to `last`.
pub(crate) fn advance(tx: &crate::store::sql::Tx<'_>, name: &str, last: i64) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO respond_cursor (name, last) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET last = ?2",
    )?
    .execute(rusqlite::params![name, last])?;
    Ok(())
}

/// A stored UTC time as the office reads it: local, with its offset (the text as it was when
/// it does not parse).
pub(crate) fn local_time(s: &str, tz: &jiff::tz::TimeZone) -> String {
    s.parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_else(|_| s.to_string())
}

/// A stored UTC time as people read it in a report: the office's zone, to the minute
/// (`2019-08-09 18:02`; the text as it was when it does not parse).
pub(crate) fn readable_time(s: &str, tz: &jiff::tz::TimeZone) -> String {
    s.parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| s.to_string())
}

/// A village's, site's, town's or county's name, for words people read (the code when the
/// registry does not know it).
pub(crate) fn place_name(reg: &crate::registry::Registry, id: &str) -> String {
    reg.village(id)
        .map(|v| v.name.clone())
        .or_else(|| reg.site(id).map(|s| s.name.clone()))
        .or_else(|| reg.unit(id).map(|u| u.name.clone()))
        .unwrap_or_else(|| id.to_string())
}

/// The people a place registered as having to move, against which a report of people moved
/// (or back home) is held: a village's to-move figure (its population when it has none), a
/// group's population, a site's threatened people, a town's or the county's villages' to-move
/// figures summed. A report beyond it is asked to be confirmed and flagged for the office.
pub(crate) fn registered_to_move(reg: &crate::registry::Registry, id: &str) -> u32 {
    if let Some(v) = reg.village(id) {
        return if v.evacuate > 0 {
            v.evacuate
        } else {
            v.population
        };
    }
    if let Some(s) = reg.site(id) {
        return if s.evacuate > 0 { s.evacuate } else { s.people };
    }
    if let Some(g) = reg.data.groups.iter().find(|g| g.code == id) {
        return g.population;
    }
    reg.villages_under(id)
        .map(|i| {
            let v = &reg.data.villages[i];
            if v.evacuate > 0 {
                v.evacuate
            } else {
                v.population
            }
        })
        .fold(0u32, u32::saturating_add)
}

/// The part of the decision hook that registers calls (compose it after dispatch's with
/// [`chain`]).
pub fn hook(settings: calls::RespondSettings, policy: Policy) -> DecisionHook {
    DecisionHook(Arc::new(move |tx, decision, targets, now| {
        calls::register(tx, decision, targets, now, &settings, &policy)?;
        Ok(())
    }))
}

/// The hook correlate calls when it re-targets a warning in force to a new registry
/// ([`calls::retarget`]).
pub fn retarget_hook(
    settings: calls::RespondSettings,
    policy: Policy,
) -> crate::correlate::RetargetHook {
    crate::correlate::RetargetHook(Arc::new(move |tx, r, now| {
        calls::retarget(tx, r, now, &settings, &policy)?;
        Ok(())
    }))
}

/// Two re-target hooks, one after the other, in the same transaction.
pub fn chain_retarget(
    first: crate::correlate::RetargetHook,
    then: crate::correlate::RetargetHook,
) -> crate::correlate::RetargetHook {
    crate::correlate::RetargetHook(Arc::new(move |tx, r, now| {
        (first.0)(tx, r, now)?;
        (then.0)(tx, r, now)
    }))
}

/// Two hooks, one after the other, in the same transaction.
pub fn chain(first: DecisionHook, then: DecisionHook) -> DecisionHook {
    DecisionHook(Arc::new(move |tx, decision, targets, now| {
        (first.0)(tx, decision, targets, now)?;
        (then.0)(tx, decision, targets, now)
    }))
}

/// One turn of the respond stage, in the caller's transaction: read new answers (SMS replies,
/// keys pressed on calls, and loudspeaker alarms) and fire the escalation steps due at `now`. The daemon's task runs
/// it every second; a drill runs it on its simulated clock.
pub fn step(
    tx: &crate::store::sql::Tx<'_>,
    reg: &crate::registry::Registry,
    settings: &calls::RespondSettings,
    policy: &Policy,
    now: jiff::Timestamp,
) -> anyhow::Result<(intake::Intake, calls::Fired)> {
    let mut took = intake::run_once(tx, 500, reg, settings, policy)?;
    let keys = intake::keys_once(tx, 500, reg, settings, policy)?;
    took.read += keys.read;
    took.understood += keys.understood;
    took.closed += keys.closed;
    took.messages += keys.messages;
    let (_, told) = terminals::run_once(tx, reg, policy, now)?;
    took.messages += told;
    let fired = calls::fire_due(tx, now, reg, policy)?;
    Ok((took, fired))
}

/// The respond task: every `tick`, read new answers and fire the steps that are due, each
/// batch in one transaction; wake the channels when messages were queued. Returns when `stop`
/// turns true.
pub async fn run(
    store: crate::store::Store,
    registry: impl Into<crate::registry::Shared>,
    settings: calls::RespondSettings,
    policy: Policy,
    clock: Arc<dyn crate::runtime::clock::Clock>,
    wake: Arc<tokio::sync::Notify>,
    mut stop: crate::runtime::Shutdown,
) -> anyhow::Result<()> {
    let registry: crate::registry::Shared = registry.into();
    let tick = std::time::Duration::from_secs(1);
    loop {
        if stop.is_shutdown() {
            return Ok(());
        }
        let now = clock.now();
        // One registry per turn: the one in force when the turn starts.
        let (reg, s, p) = (registry.current(), settings.clone(), policy.clone());
        let (took, fired) = store.write(move |tx| step(tx, &reg, &s, &p, now)).await?;
        if took.read > 0 {
            tracing::info!(
                read = took.read,
                understood = took.understood,
                repeats = took.repeats,
                strangers = took.strangers,
                closed = took.closed,
                "answers"
            );
        }
        if fired.steps > 0 {
            tracing::warn!(
                steps = fired.steps,
                messages = fired.messages,
                silent = fired.silent,
                "escalation"
            );
        }
        if took.messages + fired.messages > 0 {
            wake.notify_waiters();
        }
        tokio::select! {
            _ = stop.recv() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
}
