//! Stage supervision for the daemon: a stage (a channel, the respond loop) that fails, panics
//! or ends on its own before shutdown is restarted with backoff, and each failure is logged
//! and written to the audit trail. A stage is never silently gone in the middle of a typhoon.
//!
//! A stage is a factory of futures: each restart builds it afresh from its settings, so no
//! half-broken state carries over. The outbox and the stores are the stages' memory; a
//! restarted channel claims what is due as any starting channel does.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::runtime::Shutdown;
use crate::store::Store;
use crate::store::audit;

/// How long to wait before restarting a failed stage.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// After the first failure.
    pub first: Duration,
    /// At most (doubling from `first`).
    pub max: Duration,
    /// A stage that ran at least this long before failing starts again from `first`.
    pub healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(300),
        }
    }
}

/// Run the stage `name` built by `make` until `stop` turns true, restarting it after each
/// failure. Returns how many times it was restarted.
pub async fn stage<F, Fut>(
    name: &'static str,
    store: Store,
    mut stop: Shutdown,
    backoff: Backoff,
    mut make: F,
) -> usize
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut delay = backoff.first;
    let mut restarts = 0;
    loop {
        let started = Instant::now();
        // Spawned, so a panic is caught as a JoinError instead of taking the supervisor down.
        let outcome = tokio::spawn(make()).await;
        if stop.is_shutdown() {
            match outcome {
                Ok(Err(e)) => {
                    tracing::warn!(
                        stage = name,
                        "stage ended with an error during shutdown: {e:#}"
                    )
                }
                Err(e) => tracing::warn!(stage = name, "stage failed during shutdown: {e}"),
                Ok(Ok(())) => {}
            }
            return restarts;
        }
        let why = match outcome {
            Ok(Ok(())) => "ended by itself before shutdown".to_string(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) if e.is_panic() => format!("panicked: {e}"),
            Err(e) => format!("task failed: {e}"),
        };
        if started.elapsed() >= backoff.healthy_after {
            delay = backoff.first;
        }
        tracing::error!(
            stage = name,
            restart_in_ms = delay.as_millis() as u64,
            "STAGE FAILED, restarting: {why}"
        );
        let entry = audit::Entry::now(
            &jiff::tz::TimeZone::UTC,
            "system",
            "stage.failed",
            name,
            serde_json::json!({
                "error": why, "restart_in_ms": delay.as_millis() as u64,
                "ran_ms": started.elapsed().as_millis() as u64,
            }),
        );
        if let Err(e) = store
            .write(move |tx| Ok::<_, anyhow::Error>(audit::append(tx, &entry)?))
            .await
        {
            tracing::error!(stage = name, "could not record the failure: {e}");
        }
        tokio::select! {
            _ = stop.recv() => return restarts,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(backoff.max);
        restarts += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn quick() -> Backoff {
        Backoff {
            first: Duration::from_millis(5),
            max: Duration::from_millis(20),
            healthy_after: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_failing_and_a_panicking_stage_are_restarted_and_recorded_until_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.db")).unwrap();
        let (stop_tx, stop) = crate::runtime::Trigger::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (r, s) = (runs.clone(), stop.clone());
        let task = tokio::spawn(stage("test", store.clone(), stop, quick(), move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let mut s = s.clone();
            async move {
                match n {
                    0 => anyhow::bail!("the SMSC refused the bind"),
                    1 => panic!("a bug"),
                    2 => Ok(()),
                    _ => {
                        // Healthy: runs until shutdown.
                        s.recv().await;
                        Ok(())
                    }
                }
            }
        }));
        while runs.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop_tx.fire();
        let restarts = task.await.unwrap();
        assert_eq!(restarts, 3);
        let failures: Vec<String> = store
            .read(|c| {
                let mut q =
                    c.prepare("SELECT detail FROM audit WHERE kind = 'stage.failed' ORDER BY seq")?;
                let r = q.query_map((), |r| r.get(0))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].contains("refused the bind"));
        assert!(failures[1].contains("panicked"));
        assert!(failures[2].contains("ended by itself"));
    }

    #[tokio::test]
    async fn shutdown_during_the_backoff_ends_the_supervisor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.db")).unwrap();
        let (stop_tx, stop) = crate::runtime::Trigger::new();
        let slow = Backoff {
            first: Duration::from_secs(600),
            ..quick()
        };
        let task = tokio::spawn(stage("test", store.clone(), stop, slow, || async {
            anyhow::bail!("down")
        }));
        // Once the failure is recorded, the supervisor is in its ten-minute backoff.
        let failed = || async {
            store
                .read(|c| {
                    Ok(c.query_row(
                        "SELECT count(*) FROM audit WHERE kind = 'stage.failed'",
                        (),
                        |r| r.get::<_, i64>(0),
                    )?)
                })
                .await
                .unwrap()
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            while failed().await == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the failure is recorded");
        stop_tx.fire();
        let restarts = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends promptly")
            .unwrap();
        assert_eq!(restarts, 0);
    }
}
