//! The one loop every channel runs in: claim, wait, send, record, drain.
//!
//! A channel ([`Channel`]) says only how to speak its protocol: what to claim, how to send one
//! item, how to commit outcomes, what runs beside the sends (binds, a listener for delivery
//! reports, heartbeats). Everything around that is here, once, so the channels cannot differ
//! in the parts where bugs hide:
//!
//! - **Claiming** only with room: a send starts only with a window slot, and a slot is freed
//!   only once its outcome is committed, so what a crash can leave mid-send is bounded by the
//!   window.
//! - **Waiting** on the one [`Shutdown`], on `wake` (new rows queued), or on a timer (retries
//!   and held rows coming due; the channel's housekeeping).
//! - **Ownership**: every task the channel spawns — what runs beside the sends, each send, the
//!   recorder — lives in a [`JoinSet`] owned by this function. Whatever way it ends (shutdown,
//!   an error, a panic unwinding through it), the tasks end with it: a supervisor that
//!   restarts a channel never finds the last run's listener still holding the port or its
//!   binds still up.
//! - **Draining** on shutdown: sends in flight finish and their outcomes are committed, then
//!   the channel leaves politely ([`Channel::finish`]: unbind), then what ran beside it ends.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::runtime::Shutdown;

/// A way of reaching people or loudspeakers. One folder per channel under `dispatch/`, each
/// of the same files (`settings.rs`, `channel.rs`, and its protocol); [`drive`] runs it.
pub trait Channel: Send + Sync + Sized + 'static {
    /// What one claim hands over (an outbox row, a broadcast job).
    type Item: Send + 'static;
    /// What one send came to, committed by [`Channel::record`].
    type Outcome: Send + 'static;

    /// Its name, for logs, the supervisor, and the outbox rows it claims (`claimed_by`).
    fn name(&self) -> &'static str;

    /// Sends in flight at most (the sum of its windows).
    fn window(&self) -> usize;

    /// Before anything else, on every start and restart: take back what an earlier run of
    /// *this* channel left mid-send (rows claimed by it and never recorded), and nothing of
    /// any other channel's.
    fn reconcile(&self) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Start what runs beside the sends for the channel's life (binds, a listener for
    /// delivery reports, the store of what comes back), each on `tasks`; each ends when
    /// `shutdown` fires (or is aborted when the channel ends another way). An error here (a
    /// port that cannot be bound) ends the run.
    fn start(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        shutdown: &Shutdown,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        let _ = (tasks, shutdown);
        async { Ok(()) }
    }

    /// Room right now (window slots on live links); `None`: no limit beyond the window.
    fn room(&self) -> Option<usize> {
        None
    }

    /// Housekeeping at every turn of the loop, before claiming: deadlines, heartbeats, state
    /// polls. It also runs while the window is full.
    fn turn(&self) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Claim up to `n` due items, marking them taken in a committed write.
    fn claim(&self, n: usize) -> impl Future<Output = anyhow::Result<Vec<Self::Item>>> + Send;

    /// Send one item through the protocol. Never fails: a failure is an outcome to record.
    fn send(self: Arc<Self>, item: Self::Item) -> impl Future<Output = Self::Outcome> + Send;

    /// Commit a batch of outcomes in one write. An error ends the run (the supervisor starts
    /// it again, and [`Channel::reconcile`] takes the unrecorded rows back).
    fn record(&self, batch: Vec<Self::Outcome>) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// How long to wait for work when a turn found nothing to claim (`room` 0: no live link).
    fn idle(&self, room: usize) -> Duration {
        let _ = room;
        Duration::from_millis(250)
    }

    /// Leave politely (unbind), on every way out, once the sends in flight are recorded on a
    /// graceful stop, or at once after an error.
    fn finish(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Outcomes committed in one write at most.
const BATCH: usize = 500;

/// Run `channel` until `shutdown` fires; `wake` is notified when new work is queued. Returns
/// the first error (after leaving politely); every task it started has ended or been aborted
/// by then.
pub async fn drive<C: Channel>(
    channel: C,
    mut shutdown: Shutdown,
    wake: Arc<Notify>,
) -> anyhow::Result<()> {
    let ch = Arc::new(channel);
    let mut beside = JoinSet::new();
    let mut sends = JoinSet::new();
    let ran = run(&ch, &mut beside, &mut sends, &mut shutdown, &wake).await;
    if ran.is_err() {
        // Nothing of this run may outlive it: a send still waiting is abandoned (its row stays
        // claimed, and the next run's reconcile takes it back), the binds and listeners end.
        sends.abort_all();
        beside.abort_all();
        while sends.join_next().await.is_some() {}
    }
    ch.finish().await;
    if ran.is_ok() {
        // What runs beside the sends ends by itself once told to stop and left; a part that
        // hangs is not waited on for ever.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while beside.join_next().await.is_some() {}
        })
        .await;
        if ended.is_err() {
            tracing::warn!(
                channel = ch.name(),
                "parts of the channel did not end within 10 s; stopped"
            );
        }
    }
    beside.shutdown().await;
    ran
}

type Done<O> = (O, OwnedSemaphorePermit);

async fn run<C: Channel>(
    ch: &Arc<C>,
    beside: &mut JoinSet<()>,
    sends: &mut JoinSet<()>,
    shutdown: &mut Shutdown,
    wake: &Notify,
) -> anyhow::Result<()> {
    ch.reconcile().await?;
    ch.start(beside, shutdown).await?;
    let window = ch.window().max(1);
    let slots = Arc::new(Semaphore::new(window));
    // Each outcome travels with its window slot, released only once the outcome is
    // committed.
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done<C::Outcome>>();
    let mut recorder = tokio::spawn(record(ch.clone(), done_rx));
    let looped = async {
        loop {
            if shutdown.is_shutdown() {
                return Ok(());
            }
            if recorder.is_finished() {
                // It only ends early when a record failed.
                return Err(anyhow::anyhow!("{}: could not record outcomes", ch.name()));
            }
            reap(ch.name(), sends)?;
            ch.turn().await?;
            // A free slot first (a committed outcome frees one); the timer lets housekeeping
            // run while the window is full.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                },
                _ = shutdown.recv() => continue,
                _ = tokio::time::sleep(ch.idle(1)) => continue,
            };
            let room = ch
                .room()
                .unwrap_or(usize::MAX)
                .min(slots.available_permits() + 1);
            let claimed = if room == 0 {
                Vec::new()
            } else {
                ch.claim(room).await?
            };
            if claimed.is_empty() {
                drop(first);
                tokio::select! {
                    _ = shutdown.recv() => {}
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(ch.idle(room)) => {}
                }
                continue;
            }
            let mut first = Some(first);
            for item in claimed {
                let permit = match first.take() {
                    Some(p) => p,
                    // Claimed with room for it: a slot frees as soon as an outcome commits.
                    None => match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => return Ok(()),
                    },
                };
                let (ch, done) = (ch.clone(), done_tx.clone());
                sends.spawn(async move {
                    let outcome = ch.send(item).await;
                    let _ = done.send((outcome, permit));
                });
            }
        }
    };
    let looped: anyhow::Result<()> = looped.await;
    if looped.is_err() {
        drop(done_tx);
        recorder.abort();
        return looped;
    }
    // Draining: every send in flight ends (each by its own protocol's timeout at worst) and
    // is recorded before the channel leaves.
    while let Some(r) = sends.join_next().await {
        if let Err(e) = r
            && e.is_panic()
        {
            tracing::error!(channel = ch.name(), "a send panicked while stopping: {e}");
        }
    }
    drop(done_tx);
    match (&mut recorder).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(anyhow::anyhow!("{}: the recorder failed: {e}", ch.name())),
    }
}

/// Collect finished sends; a send that panicked left its outcome unrecorded, which is a fault
/// of the run (the restart's reconcile takes the row back).
fn reap(name: &str, sends: &mut JoinSet<()>) -> anyhow::Result<()> {
    while let Some(r) = sends.try_join_next() {
        if let Err(e) = r
            && e.is_panic()
        {
            anyhow::bail!("{name}: a send panicked: {e}");
        }
    }
    Ok(())
}

/// Batch outcomes into writes (whatever has arrived, up to [`BATCH`]), then free their slots.
async fn record<C: Channel>(
    ch: Arc<C>,
    mut rx: mpsc::UnboundedReceiver<Done<C::Outcome>>,
) -> anyhow::Result<()> {
    while let Some((outcome, permit)) = rx.recv().await {
        let mut batch = vec![outcome];
        let mut permits = vec![permit];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok((o, p)) => {
                    batch.push(o);
                    permits.push(p);
                }
                Err(_) => break,
            }
        }
        let n = batch.len();
        if let Err(e) = ch.record(batch).await {
            tracing::error!(
                channel = ch.name(),
                "cannot record {n} outcome(s); the channel stops and its next start takes them back: {e:#}"
            );
            return Err(e);
        }
        drop(permits);
    }
    Ok(())
}
