//! The Icecast channel: each broadcast job streamed as MP3 to every village's mount, paced,
//! in parallel; a village whose mount had fewer listeners than it has IP speakers is
//! unconfirmed. Past a job's deadline, the speakers that did not confirm are alarmed for
//! respond. The loop around it is [`crate::dispatch::drive`]'s; streams in progress finish on
//! shutdown (a loudspeaker message is not cut off mid-sentence).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::SignedDuration;
use tokio::task::JoinSet;

use super::settings::IcecastSettings;
use crate::dispatch::Channel;
use crate::dispatch::broadcast::jobs::{self, Due, Report};
use crate::dispatch::broadcast::{self, InFlight, audio::Synth};
use crate::runtime::{Clock, Shutdown, SystemClock};
use crate::store::Store;

/// The route's name in `broadcast_job`, and the channel's stage name.
pub const NAME: &str = "icecast";

/// Broadcasts streaming at once (each to many mounts).
const JOBS_AT_ONCE: usize = 16;

/// The Icecast channel.
pub struct IcecastChannel {
    settings: Arc<IcecastSettings>,
    store: Store,
    synth: Arc<Synth>,
    clock: Arc<dyn Clock>,
    /// Jobs older than this are no longer tracked.
    keep: SignedDuration,
    /// One source per Icecast mount at a time: a village warned for two hazards at once hears
    /// them one after the other (a second source would be refused as "mount in use").
    mounts: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    http: reqwest::Client,
    /// Jobs streaming now.
    in_flight: InFlight,
}

impl IcecastChannel {
    /// A channel streaming to Icecast mounts.
    pub fn new(
        settings: IcecastSettings,
        store: Store,
        synth: Synth,
        keep: SignedDuration,
    ) -> IcecastChannel {
        IcecastChannel {
            settings: Arc::new(settings),
            store,
            synth: Arc::new(synth),
            clock: Arc::new(SystemClock::new()),
            keep,
            mounts: Default::default(),
            http: reqwest::Client::new(),
            in_flight: InFlight::default(),
        }
    }

    /// Stamp records with this clock (a replay's simulated one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> IcecastChannel {
        self.clock = clock;
        self
    }

    async fn send_icecast(&self, job: Due) -> anyhow::Result<()> {
        let s = &self.settings;
        let id = job.id;
        let mp3 = match broadcast::render(&self.synth, &job.script, s.kbps).await {
            Ok(a) => a,
            Err(e) => {
                // Perhaps passing (a full disk, a killed encoder): try again; the deadline
                // reports the terminals if it lasts.
                let now = self.clock.now();
                let why = format!("no audio for the IP speakers: {e:#}");
                tracing::error!(job = id, "{why}");
                let wait = broadcast::backoff(job.attempts);
                self.store
                    .write(move |tx| jobs::retry(tx, id, &why, now, now + wait))
                    .await?;
                return Ok(());
            }
        };
        // Streaming: the job is under way (its deadline now finds terminals waiting, not a
        // broadcast never attempted).
        {
            let now = self.clock.now();
            let sha = mp3.sha256.clone();
            self.store
                .write(move |tx| jobs::sent(tx, id, Some(&sha), "streaming", now, now))
                .await?;
        }
        // One stream per mount; a mount serves every IP speaker of its villages.
        let mut mounts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (term, village) in &job.terminals {
            mounts
                .entry(s.mount_for(village))
                .or_default()
                .push(term.clone());
        }
        if job.send == "Cancel" {
            for v in &job.areas {
                mounts.entry(s.mount_for(v)).or_default();
            }
        }
        let mut set = JoinSet::new();
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        for (mount, terms) in mounts {
            let (s, http, mp3, sem) = (s.clone(), self.http.clone(), mp3.clone(), sem.clone());
            let lock = match self.mounts.lock() {
                Ok(mut m) => m.entry(mount.clone()).or_default().clone(),
                Err(_) => Arc::default(),
            };
            set.spawn(async move {
                let _mount = lock.lock_owned().await;
                let _permit = sem.acquire_owned().await;
                let r = super::stream::stream(&s, &http, &mount, &mp3).await;
                (mount, terms, r)
            });
        }
        let mut reports = Vec::new();
        let mut errors = Vec::new();
        while let Some(r) = set.join_next().await {
            let (mount, terms, r) = r?;
            match r {
                Ok(played) => {
                    let heard = played.listeners.unwrap_or(0) as usize;
                    let code = if heard >= terms.len() { 2 } else { 3 };
                    let desc = format!(
                        "mount {mount}: {heard} listener(s) for {} IP speaker(s), {} bytes in {:.1} s",
                        terms.len(),
                        played.bytes,
                        played.elapsed.as_secs_f64()
                    );
                    reports.extend(terms.into_iter().map(|t| Report {
                        terminal: t,
                        code,
                        desc: desc.clone(),
                    }));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let now = self.clock.now();
        let sha = mp3.sha256.clone();
        let wait = broadcast::backoff(job.attempts);
        self.store
            .write(move |tx| {
                let result = if errors.is_empty() {
                    "streamed".to_string()
                } else {
                    format!("{} mount(s) failed: {}", errors.len(), errors.join("; "))
                };
                jobs::reported(tx, id, &reports, &result, None, now, now)?;
                if errors.is_empty() {
                    jobs::finish(tx, id, &sha, now)?;
                } else {
                    jobs::requeue(tx, id, &result, now, now + wait)?;
                }
                Ok::<_, anyhow::Error>(())
            })
            .await?;
        Ok(())
    }
}

impl Channel for IcecastChannel {
    type Item = Due;
    type Outcome = anyhow::Result<()>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn window(&self) -> usize {
        JOBS_AT_ONCE
    }

    async fn start(
        self: &Arc<Self>,
        _tasks: &mut JoinSet<()>,
        _shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let now = self.clock.now();
        let n = self
            .store
            .write(move |tx| jobs::resume_streams(tx, now))
            .await?;
        if n > 0 {
            tracing::warn!(
                "{n} Icecast broadcast(s) were cut off by a restart and play again from the start"
            );
        }
        Ok(())
    }

    async fn turn(&self) -> anyhow::Result<()> {
        broadcast::deadlines(&self.store, NAME, self.clock.now(), self.keep).await
    }

    async fn claim(&self, n: usize) -> anyhow::Result<Vec<Due>> {
        let now = self.clock.now();
        let due = self.store.read(move |c| jobs::due(c, NAME, now, n)).await?;
        Ok(self.in_flight.take(due))
    }

    async fn send(self: Arc<Self>, job: Due) -> anyhow::Result<()> {
        let id = job.id;
        if let Err(e) = self.send_icecast(job).await {
            tracing::error!(job = id, "icecast broadcast: {e:#}");
        }
        self.in_flight.done(id);
        Ok(())
    }

    async fn record(&self, _batch: Vec<anyhow::Result<()>>) -> anyhow::Result<()> {
        // Each stream wrote its own outcome.
        Ok(())
    }
}
