//! The word to stop, in the manner of mini-redis's `Shutdown`.
//!
//! One [`Trigger`] per running pipeline; every stage holds a [`Shutdown`] cloned from it. A
//! stage checks [`Shutdown::is_shutdown`] between pieces of work and waits on
//! [`Shutdown::recv`] inside its `select!`s. Firing is a level, not an edge: once fired,
//! `recv` resolves at once every time it is awaited, and `is_shutdown` stays true.
//!
//! Before this type each stage held a bare `watch::Receiver<bool>`, and a loop that did
//! `_ = stop.changed() => continue` spun at full speed once the sender was dropped (`changed`
//! fails at once, and the flag it then read was still `false`). Here a dropped trigger is a
//! shutdown: nothing can ever un-fire it, and no stage outlives the one who started it.

use tokio::sync::watch;

/// The side that says stop. Dropping it says stop too.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    /// A new trigger, not yet fired, and the first receiver.
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger { tx }, Shutdown { rx })
    }

    /// Tell every holder of a [`Shutdown`] to stop. Firing twice is harmless.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    /// Whether it has been fired.
    pub fn is_fired(&self) -> bool {
        *self.tx.borrow()
    }

    /// Another receiver (for a stage started later).
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

/// The side that listens. Cheap to clone; each stage holds its own.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Whether the stage must stop now: the trigger fired, or it is gone.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolve once the stage must stop (at once if it already must). Cancel-safe: it can be
    /// one branch of a `select!` in a loop.
    pub async fn recv(&mut self) {
        // An error means the trigger was dropped: that is a shutdown as well. The guard
        // `wait_for` returns is dropped here, inside, so callers' futures stay `Send`.
        let _ = self.rx.wait_for(|fired| *fired).await.map(|_| ());
    }

    /// A receiver whose trigger is already gone: it is shut down from the start (for a stage
    /// run once, to finish what it holds and return).
    pub fn already() -> Shutdown {
        Trigger::new().1
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn firing_is_a_level_every_receiver_sees_at_once_and_again() {
        let (trigger, mut a) = Trigger::new();
        let mut b = trigger.subscribe();
        assert!(!a.is_shutdown());
        trigger.fire();
        assert!(trigger.is_fired());
        for s in [&mut a, &mut b] {
            assert!(s.is_shutdown());
            // Awaited twice: both resolve at once.
            tokio::time::timeout(Duration::from_secs(1), s.recv())
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(1), s.recv())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_dropped_trigger_is_a_shutdown_and_a_select_loop_on_it_ends_instead_of_spinning() {
        let (trigger, mut s) = Trigger::new();
        let looped = tokio::spawn(async move {
            let mut turns = 0u64;
            // The shape every stage's loop has: check, then wait on stop or other work.
            loop {
                if s.is_shutdown() {
                    return turns;
                }
                turns += 1;
                tokio::select! {
                    _ = s.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
            }
        });
        tokio::task::yield_now().await;
        drop(trigger);
        let turns = tokio::time::timeout(Duration::from_secs(5), looped)
            .await
            .expect("the loop ends once its trigger is gone")
            .unwrap();
        // One turn before the drop, at most one more to notice it: no spinning.
        assert!(turns <= 2, "{turns} turns");
        assert!(Shutdown::already().is_shutdown());
    }
}
