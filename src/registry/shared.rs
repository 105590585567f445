//! The registry in force, shared by the stages of a running daemon and swapped whole when an
//! import lands.
//!
//! Rosters turn over all season: leads change jobs, phones change, villages merge. An import
//! (`stormbell registry import`, from another process) writes a new version to the store;
//! [`follow`] notices it within one look (every few seconds), loads it off the async workers,
//! and publishes it. Each stage takes [`Shared::current`] when it starts a piece of work, so a
//! piece of work sees one registry from start to end, never half of two. Correlate takes a
//! new one between two evaluations and re-targets the warnings in force
//! (`correlate::engine`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Registry;
use crate::runtime::Shutdown;
use crate::store::Store;

/// A stage's view of the registry in force.
#[derive(Debug, Clone)]
pub struct Shared {
    rx: watch::Receiver<Arc<Registry>>,
}

/// The side that publishes a new registry (the daemon's [`follow`] task).
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<Arc<Registry>>,
}

impl Shared {
    /// A registry to share, and its publisher.
    pub fn new(reg: Arc<Registry>) -> (Publisher, Shared) {
        let (tx, rx) = watch::channel(reg);
        (Publisher { tx }, Shared { rx })
    }

    /// The registry in force now.
    pub fn current(&self) -> Arc<Registry> {
        self.rx.borrow().clone()
    }

    /// Wait for a registry newer than the last this view saw through here (then take it with
    /// [`Shared::current`]); pending for ever once nobody can publish one. Cancel-safe.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl From<Arc<Registry>> for Shared {
    /// A registry that never changes (tests, one-off commands).
    fn from(reg: Arc<Registry>) -> Shared {
        Shared::new(reg).1
    }
}

impl Publisher {
    /// Make `reg` the registry in force.
    pub fn publish(&self, reg: Arc<Registry>) {
        self.tx.send_replace(reg);
    }

    /// The registry in force.
    pub fn current(&self) -> Arc<Registry> {
        self.tx.borrow().clone()
    }
}

/// Look for a new import every `every` until `shutdown`; load each new one (off the async
/// workers: a county's registry is a few thousand records and a spatial index) and publish
/// it. A store that cannot be read is logged and looked at again next time.
pub async fn follow(store: Store, publisher: Publisher, every: Duration, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let have = publisher.current().import;
        let latest = match store.read(|c| Ok(super::db::latest_import(c)?)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("registry: cannot look for a new import: {e}");
                continue;
            }
        };
        if latest.is_none() || latest == have {
            continue;
        }
        let st = store.clone();
        match tokio::task::spawn_blocking(move || Registry::load(&st)).await {
            Ok(Ok(reg)) => {
                tracing::info!(
                    import = reg.import,
                    villages = reg.data.villages.len(),
                    persons = reg.data.persons.len(),
                    "registry: a new import is in force"
                );
                publisher.publish(Arc::new(reg));
            }
            Ok(Err(e)) => tracing::error!("registry: cannot load import {latest:?}: {e}"),
            Err(e) => tracing::error!("registry: loading import {latest:?} failed: {e}"),
        }
    }
}
