//! Dispatch: warnings out to people, durably.
//!
//! `outbox.rs` owns the tables (`dispatch_*`): a row per (warning version, person, channel)
//! written in the transaction that records the decision ([`hook`]), claimed by a channel,
//! and moved through its states by committed writes. Each channel is a module implementing
//! [`Channel`]: it claims due rows, sends them its way, and records what happened. `sms/` is
//! the first (SMPP 3.4); broadcast terminals and check-in links follow the same shape.

pub mod broadcast;
pub mod kannel;
pub mod link;
pub mod outbox;
pub mod sms;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Notify, watch};

use crate::correlate::engine::DecisionHook;
use crate::store::Store;

/// A way of reaching people. One module per channel, all of this shape.
pub trait Channel: std::marker::Send + 'static {
    /// The `channel` value of its outbox rows.
    fn name(&self) -> &'static str;

    /// Claim and send until `stop` turns true; finish or record what is in flight, then
    /// return. `wake` is notified when new rows are queued.
    fn run(
        self: Box<Self>,
        stop: watch::Receiver<bool>,
        wake: Arc<Notify>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + std::marker::Send>>;
}

impl Channel for sms::SmsChannel {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn run(
        self: Box<Self>,
        stop: watch::Receiver<bool>,
        wake: Arc<Notify>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + std::marker::Send>> {
        Box::pin(sms::SmsChannel::run(*self, stop, wake))
    }
}

impl Channel for kannel::KannelChannel {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn run(
        self: Box<Self>,
        stop: watch::Receiver<bool>,
        wake: Arc<Notify>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + std::marker::Send>> {
        Box::pin(kannel::KannelChannel::run(*self, stop, wake))
    }
}

impl Channel for broadcast::channel::BroadcastChannel {
    fn name(&self) -> &'static str {
        "broadcast"
    }

    fn run(
        self: Box<Self>,
        stop: watch::Receiver<bool>,
        wake: Arc<Notify>,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + std::marker::Send>> {
        Box::pin(broadcast::channel::BroadcastChannel::run(*self, stop, wake))
    }
}

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

/// Re-queue what a previous run left mid-send (see `outbox` on the at-least-once window);
/// run once at start, before any channel.
pub async fn reconcile(store: &Store, grace: jiff::SignedDuration) -> anyhow::Result<usize> {
    let now = jiff::Timestamp::now();
    let n = store
        .write(move |tx| outbox::reconcile(tx, now, grace))
        .await?;
    if n > 0 {
        tracing::warn!(
            "{n} message(s) were being sent when stormbell stopped; each waits {grace:#} for a receipt proving the SMSC had it, then goes again counted as a possible duplicate"
        );
    }
    Ok(n)
}
