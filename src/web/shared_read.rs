//! Requests for the same part of the board at the same time share one read.
//!
//! In a storm every page open in the duty office is told of each change at once and asks
//! for the board again at once; a province's summary is seconds of the store's time to read,
//! so ten open pages would be ten such reads every two seconds. Here a request waits for the
//! read of its key in progress, if any, and then takes the result of the next read, shared
//! with everyone who queued beside it: at most two reads of a key run back to back however
//! many pages ask.
//!
//! A request never gets a read that began before it arrived: the page was told "the board
//! changed", and a read begun earlier may not have seen that change (it would then show the
//! old figures until the next change). Nothing is kept once the requests that queued for a
//! read have taken it: a later request could not use it anyway.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The reads of one kind of value, by key (the board: its filter and scope).
pub(crate) struct SharedReads<V> {
    /// Reads begun so far: a read is numbered by it, a request notes it when it arrives.
    begun: AtomicU64,
    slots: Mutex<HashMap<String, Arc<Slot<V>>>>,
}

/// One key's last read, for the requests queued behind it.
type Slot<V> = tokio::sync::Mutex<Option<(u64, Arc<V>)>>;

impl<V> Default for SharedReads<V> {
    fn default() -> Self {
        SharedReads {
            begun: AtomicU64::new(0),
            slots: Mutex::default(),
        }
    }
}

impl<V> SharedReads<V> {
    /// The value of `key` from a read begun after this call: the read another request of
    /// the same key began after this one arrived, or `read`. A failed read is not shared:
    /// the next request in line tries again.
    pub(crate) async fn get<F, Fut>(&self, key: String, read: F) -> anyhow::Result<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<V>>,
    {
        let arrived = self.begun.load(Ordering::SeqCst);
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        // However this request ends (a value, a failed read, or dropped mid-read when its
        // page went away), its key's slot goes once nobody else holds it.
        let ours = Leave {
            reads: self,
            key,
            slot,
        };
        let mut last = ours.slot.lock().await;
        let value = match last.as_ref() {
            Some((number, value)) if *number > arrived => value.clone(),
            _ => {
                *last = None;
                let number = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
                let value = Arc::new(read().await?);
                *last = Some((number, value.clone()));
                value
            }
        };
        // Nobody else queued for this key (the map and this request hold the slot): the
        // value can serve no later request, so it is not kept.
        if Arc::strong_count(&ours.slot) <= 2 {
            *last = None;
        }
        Ok(value)
    }

    /// How many reads have begun (for tests).
    #[cfg(test)]
    fn begun(&self) -> u64 {
        self.begun.load(Ordering::SeqCst)
    }

    /// How many keys hold a slot (for tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }
}

/// A request's hold on its key's slot: on leaving, the slot is removed from the map if
/// nobody else holds it (the map and this request are its only holders).
struct Leave<'a, V> {
    reads: &'a SharedReads<V>,
    key: String,
    slot: Arc<Slot<V>>,
}

impl<V> Drop for Leave<'_, V> {
    fn drop(&mut self) {
        let mut slots = self.reads.slots.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&self.slot) <= 2
            && slots
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that waits for its gate to open, then answers with its number.
    async fn gated(gate: Arc<tokio::sync::Semaphore>, n: u64) -> anyhow::Result<u64> {
        let _pass = gate.acquire().await?;
        Ok(n)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_queued_behind_a_read_share_the_next_one_and_never_an_older_one() {
        let reads: Arc<SharedReads<u64>> = Arc::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let counter = Arc::new(AtomicU64::new(0));
        let ask = |key: &str| {
            let (reads, gate, counter, key) = (
                reads.clone(),
                gate.clone(),
                counter.clone(),
                key.to_string(),
            );
            tokio::spawn(async move {
                reads
                    .get(key, || {
                        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                        gated(gate, n)
                    })
                    .await
                    .map(|v| *v)
            })
        };
        // The first request's read is under way (held at its gate).
        let first = ask("summary");
        while reads.begun() < 1 {
            tokio::task::yield_now().await;
        }
        // Five more arrive meanwhile, and one for another key.
        let late: Vec<_> = (0..5).map(|_| ask("summary")).collect();
        let other = ask("331098");
        while reads.begun() < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // The other key's read began beside the first; the five wait.
        assert_eq!(reads.begun(), 2);
        gate.add_permits(100);
        assert_eq!(first.await.unwrap().unwrap(), 1);
        let mut got = Vec::new();
        for l in late {
            got.push(l.await.unwrap().unwrap());
        }
        let other = other.await.unwrap().unwrap();
        // The five got one read, begun after they arrived: not the first's (1), nor the
        // other key's.
        assert!(got.iter().all(|v| *v == got[0]), "{got:?}");
        assert!(got[0] != 1 && got[0] != other, "{got:?} {other}");
        assert_eq!(reads.begun(), 3);
        // Nothing kept once everyone has had theirs; a request now reads afresh.
        assert_eq!(reads.kept(), 0);
        assert_eq!(ask("summary").await.unwrap().unwrap(), 4);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_read_is_not_shared_and_the_next_in_line_reads_again() {
        let reads: Arc<SharedReads<u64>> = Arc::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let failing = {
            let (reads, gate) = (reads.clone(), gate.clone());
            tokio::spawn(async move {
                reads
                    .get("all".into(), || async move {
                        let _pass = gate.acquire().await?;
                        anyhow::bail!("the store is away")
                    })
                    .await
                    .map(|v| *v)
            })
        };
        while reads.begun() < 1 {
            tokio::task::yield_now().await;
        }
        let (r, g) = (reads.clone(), gate.clone());
        let behind = tokio::spawn(async move { r.get("all".into(), || gated(g, 7)).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        assert!(failing.await.unwrap().is_err());
        assert_eq!(*behind.await.unwrap().unwrap(), 7);
        assert_eq!(reads.begun(), 2);
        assert_eq!(reads.kept(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_that_fails_alone_or_goes_away_mid_read_leaves_no_slot() {
        let reads: Arc<SharedReads<u64>> = Arc::default();
        let failed = reads
            .get("331098".into(), || async {
                anyhow::bail!("the store is away")
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(reads.kept(), 0);
        // A page closed while its read waits: the request is dropped mid-read.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (r, g) = (reads.clone(), gate.clone());
        let gone = tokio::spawn(async move { r.get("all".into(), || gated(g, 1)).await });
        while reads.begun() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(reads.kept(), 1);
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        assert_eq!(reads.kept(), 0);
    }
}
