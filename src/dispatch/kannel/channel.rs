//! The Kannel channel: claims due messages from the outbox and sends each through the gateway
//! ([`super::protocol`]); beside the sends, it serves the gateway's delivery reports on
//! `dlr_listen`. The loop around it is [`crate::dispatch::drive`]'s, which owns the listener's
//! task: a channel restarted by the supervisor binds `dlr_listen` again because the last
//! run's listener ended with it.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::protocol;
use super::settings::KannelSettings;
use crate::dispatch::Channel;
use crate::dispatch::outbox::{self, Claimed, Lane, Outcome, Policy};
use crate::runtime::{Clock, Shutdown, SystemClock};
use crate::store::Store;

/// The name the channel claims outbox rows by (`claimed_by`), and its stage's name.
pub const NAME: &str = "kannel";

/// The HTTP gateway channel.
pub struct KannelChannel {
    settings: KannelSettings,
    lane: Lane,
    client: reqwest::Client,
    /// What delivery reports must carry (read from the store at start).
    secret: std::sync::OnceLock<Arc<str>>,
}

impl KannelChannel {
    /// A channel through this gateway.
    pub fn new(
        settings: KannelSettings,
        store: Store,
        policy: Policy,
    ) -> anyhow::Result<KannelChannel> {
        if let Some(why) = settings.problem() {
            anyhow::bail!("dispatch.kannel: {why}");
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(KannelChannel {
            settings,
            lane: Lane {
                store,
                policy,
                clock: Arc::new(SystemClock::new()),
                name: NAME,
                channel: "sms",
                swept: Default::default(),
            },
            client,
            secret: std::sync::OnceLock::new(),
        })
    }

    /// Stamp claims, outcomes and reports with this clock (see `SmsChannel::with_clock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> KannelChannel {
        self.lane.clock = clock;
        self
    }
}

impl Channel for KannelChannel {
    type Item = Claimed;
    type Outcome = (i64, Outcome);

    fn name(&self) -> &'static str {
        NAME
    }

    fn window(&self) -> usize {
        self.settings.concurrency.max(1)
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        self.lane.reconcile().await
    }

    async fn start(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(&self.settings.dlr_listen)
            .await
            .map_err(|e| anyhow::anyhow!("kannel dlr_listen {}: {e}", self.settings.dlr_listen))?;
        let secret: Arc<str> = self
            .lane
            .store
            .write(|tx| outbox::secret(tx, protocol::SECRET))
            .await?
            .into();
        let _ = self.secret.set(secret.clone());
        let app = protocol::router(self.lane.store.clone(), self.lane.clock.clone(), secret);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let limits = crate::runtime::listen::Limits::default();
            if let Err(e) = crate::runtime::listen::serve(listener, app, limits, stop).await {
                tracing::error!("kannel delivery reports: {e}");
            }
        });
        Ok(())
    }

    async fn turn(&self) -> anyhow::Result<()> {
        self.lane.sweep().await
    }

    async fn claim(&self, n: usize) -> anyhow::Result<Vec<Claimed>> {
        self.lane.claim(n).await
    }

    async fn send(self: Arc<Self>, m: Claimed) -> (i64, Outcome) {
        let secret = self.secret.get().map(|s| s.to_string()).unwrap_or_default();
        (
            m.id,
            protocol::send(&self.client, &self.settings, &secret, &m).await,
        )
    }

    async fn record(&self, batch: Vec<(i64, Outcome)>) -> anyhow::Result<()> {
        self.lane.record(batch).await
    }
}
