//! The outbox as one channel sees it: the rows it claims by its name, the outcomes it
//! records, and the rows it left mid-send that it takes back at its start.

use std::sync::Arc;

use super::*;
use crate::runtime::Clock;
use crate::store::Store;

/// One channel's lane of the outbox (SMPP and the HTTP gateway share the `sms` rows, each
/// claiming by its own name; the voice channel claims the `voice` rows).
#[derive(Clone)]
pub struct Lane {
    /// The store.
    pub store: Store,
    /// How the outbox treats people and time.
    pub policy: Policy,
    /// The clock of the run (claims, outcomes and receipts are stamped with it).
    pub clock: Arc<dyn Clock>,
    /// The channel's name (`claimed_by`).
    pub name: &'static str,
    /// The rows it claims (`dispatch_message.channel`: `sms`, `voice`).
    pub channel: &'static str,
    /// When receipts' deadlines were last looked at.
    pub swept: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl Lane {
    /// What this channel claims rows by on this node (`claimed_by`): its name, with the
    /// node's on a shared database ([`Store::qualified`]).
    pub fn claimant(&self) -> String {
        self.store.qualified(self.name)
    }

    /// Take back the rows this channel left mid-send (see [`reconcile`]).
    pub async fn reconcile(&self) -> anyhow::Result<()> {
        crate::dispatch::reconcile(
            &self.store,
            Scope::Claimant(self.claimant()),
            self.clock.now(),
            self.policy.reconcile_grace,
        )
        .await
        .map(|_| ())
    }

    /// Housekeeping, at most every few seconds: texts past their account's receipt deadline
    /// are settled as "sent, no receipt" ([`settle_unreceipted`]).
    pub async fn sweep(&self) -> anyhow::Result<()> {
        let now_i = tokio::time::Instant::now();
        {
            let mut last = match self.swept.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            if last.is_some_and(|l| now_i.duration_since(l) < std::time::Duration::from_secs(5)) {
                return Ok(());
            }
            *last = Some(now_i);
        }
        let (policy, now, channel) = (self.policy.clone(), self.clock.now(), self.channel);
        Ok(self
            .store
            .write(move |tx| settle_unreceipted(tx, channel, now, &policy))
            .await?)
    }

    /// Claim up to `n` due texts (see [`claim`]), apart from the store's write lock: a claim
    /// waits for no row, so one node's claims go on beside another node's writes.
    pub async fn claim(&self, n: usize) -> anyhow::Result<Vec<Claimed>> {
        let (policy, now, name) = (self.policy.clone(), self.clock.now(), self.claimant());
        let channel = self.channel;
        Ok(self
            .store
            .write_apart(move |tx| claim(tx, channel, &name, n, now, &policy))
            .await?)
    }

    /// Record a batch of outcomes in one write (see [`record`]).
    pub async fn record(&self, batch: Vec<(i64, Outcome)>) -> anyhow::Result<()> {
        let (policy, now) = (self.policy.clone(), self.clock.now());
        Ok(self
            .store
            .write(move |tx| record(tx, &batch, now, &policy))
            .await?)
    }
}
