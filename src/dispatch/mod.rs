//! Dispatch: warnings out to people and loudspeakers, durably.
//!
//! `outbox/` owns the message tables (`dispatch_*`): a row per (warning version, person,
//! channel) written in the transaction that records the decision ([`hook`]), claimed by a
//! channel, and moved through its states by committed writes. `broadcast/` owns the
//! loudspeaker jobs (`broadcast_*`), written by the same hook. `outbox/link.rs` makes each
//! person's check-in link, stored on the message that carries it.
//!
//! Each channel is a folder of the same shape — `settings.rs`, `channel.rs`, its protocol —
//! implementing [`Channel`], and [`drive`] runs every one of them: claim, wait, send, record,
//! drain. SMS over SMPP ([`sms`]), SMS through an HTTP gateway ([`kannel`]), the county
//! emergency-broadcast platform ([`platform`]) and IP speakers on Icecast ([`icecast`]). Calls through a SIP trunk ([`voice`]): the user
//! agent and its limits, not yet a channel of the outbox.

pub mod broadcast;
mod drive;
pub mod icecast;
pub mod kannel;
pub use outbox::link;
pub mod outbox;
pub mod platform;
pub mod sms;
pub mod voice;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::correlate::engine::{DecisionHook, RetargetHook};
use crate::store::Store;

pub use drive::{Channel, drive};
pub use outbox::{MessageState, Policy};

/// The hook correlate calls inside each decision's transaction: queue the messages.
pub fn hook(policy: outbox::Policy, wake: Arc<Notify>) -> DecisionHook {
    hook_with(policy, wake, None)
}

/// The hook, also queueing broadcasts to the village terminals when a route is configured.
pub fn hook_with(
    policy: outbox::Policy,
    wake: Arc<Notify>,
    broadcast: Option<broadcast::jobs::Plan>,
) -> DecisionHook {
    DecisionHook(Arc::new(move |tx, decision, targets, now| {
        let e = outbox::enqueue(tx, decision, targets, now, &policy)?;
        for why in &e.invalid {
            tracing::error!(lineage = %targets.lineage, "not sent: {why}");
        }
        let mut queued = e.queued;
        if let Some(plan) = &broadcast {
            let b = broadcast::jobs::enqueue(tx, decision, targets, now, plan)?;
            if !b.no_route.is_empty() {
                tracing::error!(
                    lineage = %targets.lineage,
                    "{} broadcast terminal(s) have no route and will not sound: {}",
                    b.no_route.len(),
                    b.no_route.join(", ")
                );
            }
            queued += b.jobs;
        }
        if queued > 0 {
            wake.notify_waiters();
        }
        Ok(())
    }))
}

/// The hook correlate calls when it re-targets a warning in force to a new registry: the
/// persons it now calls get the warning as it stands (never held back: for them it is new);
/// the texts still waiting for persons no longer on duty are withdrawn; a changed number is
/// used for what still waits.
pub fn retarget_hook(policy: outbox::Policy, wake: Arc<Notify>) -> RetargetHook {
    RetargetHook(Arc::new(move |tx, r, now| {
        for c in &r.removed {
            // Withdrawn only if they answer for no other place of this warning now.
            if !r.targets.contacts.iter().any(|k| k.person == c.person) {
                outbox::withdraw(tx, &r.lineage, &c.person, now)?;
            }
        }
        for c in &r.renumbered {
            outbox::renumber(tx, &c.person, &c.mobile, now)?;
        }
        if !r.added.is_empty() {
            let t = crate::correlate::Targets {
                contacts: r.added.clone(),
                raises: true,
                ..r.targets.clone()
            };
            let e = outbox::enqueue(tx, r.decision, &t, now, &policy)?;
            for why in &e.invalid {
                tracing::error!(lineage = %r.lineage, "not sent: {why}");
            }
            if e.queued > 0 {
                wake.notify_waiters();
            }
        }
        Ok(())
    }))
}

/// Take back what a previous run left mid-send (see `outbox` on the at-least-once window):
/// the rows `scope` names ([`outbox::Scope`]: a channel's own at its restart, a node's own at
/// its start or once it is found dead, every row on one machine at the daemon's start).
pub async fn reconcile(
    store: &Store,
    scope: outbox::Scope,
    now: jiff::Timestamp,
    grace: jiff::SignedDuration,
) -> anyhow::Result<usize> {
    let shown = scope.to_string();
    let n = store
        .write(move |tx| outbox::reconcile(tx, &scope, now, grace))
        .await?;
    if n > 0 {
        tracing::warn!(
            scope = %shown,
            "{n} message(s) were being sent when the channel stopped; each waits {grace:#} for a receipt proving the SMSC had it, then goes again counted as a possible duplicate"
        );
    }
    Ok(n)
}
