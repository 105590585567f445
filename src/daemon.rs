//! The pipeline as one object: built from its settings, a store, the registry, a clock and a
//! fetcher, it starts every stage, supervises the ones that may be restarted, and stops them
//! all on one [`Shutdown`].
//!
//! `stormbell run` (the daemon), `stormbell replay` and `stormbell demo` (drills on a simulated
//! clock) and the tests all build this same [`Pipeline`]; what differs between them is only
//! what they hand it — the system clock and HTTP, or a simulated clock and a recorded
//! scenario — and which optional stages the settings name (channels, the respond task, the
//! web port).
//!
//! ```text
//!  feeds (poller) ──inbox──▶ correlate ──decision hook──▶ dispatch outbox ──▶ channels
//!                               │            (same tx)     respond calls        (supervised)
//!                               └──targets──▶ follow (log, published files, a watcher)
//!  respond task (supervised): answers in, ladder steps out      web port: feed, links, office
//! ```
//!
//! Feeds and correlate hold the pipeline's memory in the store and are not restarted in
//! place: if either ends by itself, [`Running::ended`] says so and the daemon stops with an
//! error (systemd restarts it, and both rebuild from the inbox). The channels and the respond
//! task are restarted with backoff by [`crate::supervise`], each failure audited.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::correlate::engine::{self, Engine};
use crate::correlate::warning::{Issuer, Targets};
use crate::correlate::{DecisionHook, Rules};
use crate::dispatch::Policy;
use crate::dispatch::broadcast::audio::Synth;
use crate::dispatch::broadcast::{BroadcastSettings, jobs};
use crate::dispatch::kannel::{KannelChannel, KannelSettings};
use crate::dispatch::sms::{AccountSettings, SmsChannel};
use crate::dispatch::{self, icecast::IcecastChannel, platform, platform::PlatformChannel};
use crate::feeds::fetch::Fetcher;
use crate::feeds::poller::{self, FeedSpec, Poller};
use crate::registry::Registry;
use crate::respond::RespondSettings;
use crate::runtime::{Clock, Shutdown, Trigger};
use crate::store::{Store, StoreError};
use crate::web::{self, WebSettings};

/// Everything the stages need, each stage's own settings side by side (composed from the
/// configuration by [`crate::config::Config::pipeline`]; a drill changes a few).
#[derive(Clone)]
pub struct Settings {
    /// The office's time zone (stamps, templates).
    pub tz: jiff::tz::TimeZone,
    /// The feeds to poll.
    pub feeds: Vec<FeedSpec>,
    /// Limits on reading a feed's documents (a drill's feeds are read within them too).
    pub limits: crate::cap::Limits,
    /// How the poller runs.
    pub poller: poller::Settings,
    /// The warning criteria.
    pub rules: Rules,
    /// Who issues the warnings.
    pub issuer: Issuer,
    /// Correlate's periodic re-evaluation.
    pub tick: Duration,
    /// Shift of correlate's ticks after start (zero for the daemon; see
    /// [`engine::RunSettings::phase`]).
    pub phase: Duration,
    /// How the outbox treats people and time.
    pub policy: Policy,
    /// Calls, answers and the ladder.
    pub respond: RespondSettings,
    /// Whether the respond task runs (a drill's simulated world runs its turns instead).
    pub respond_task: bool,
    /// How often a new registry import is looked for (`None`: the registry given stays in
    /// force, as in a drill).
    pub registry_reload: Option<Duration>,
    /// The channels to run.
    pub channels: ChannelSettings,
    /// The web port, if any.
    pub web: Option<WebStage>,
    /// The CAP feed's title, sender and public base URL (the web port and published files).
    pub feed: WebSettings,
    /// Where published CAP files are written (`web.publish_dir`), if anywhere.
    pub publish_dir: Option<PathBuf>,
    /// Signed checkpoints of the audit trail's head, kept by [`serve`] (none in a drill: its
    /// database is its own and thrown away).
    pub checkpoints: Option<crate::store::checkpoint::Settings>,
    /// What the daemon prunes as it ages ([`crate::retention`]; none in a drill).
    pub retention: Option<crate::retention::Settings>,
}

/// The channels' settings (empty in a drill: its network is simulated).
#[derive(Debug, Clone, Default)]
pub struct ChannelSettings {
    /// SMPP accounts.
    pub sms: Vec<AccountSettings>,
    /// An HTTP SMS gateway.
    pub kannel: Option<KannelSettings>,
    /// SIP trunks for calls.
    pub voice: crate::dispatch::voice::VoiceSettings,
    /// The loudspeakers' routes.
    pub broadcast: BroadcastSettings,
    /// Where loudspeaker audio is cached when `broadcast.audio_cache` is not set.
    pub audio_cache: PathBuf,
    /// National event-type codes per hazard (for the platform's instructions).
    pub event_types: std::collections::HashMap<String, String>,
}

/// The web port: the CAP feed, the check-in pages and the office page.
#[derive(Debug, Clone)]
pub struct WebStage {
    /// `web.listen` (host:port).
    pub listen: String,
    /// The office's name (page titles).
    pub office: String,
    /// What one connection and one client may hold.
    pub limits: crate::runtime::listen::Limits,
}

/// A pipeline ready to start.
pub struct Pipeline {
    settings: Settings,
    store: Store,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    fetcher: Arc<dyn Fetcher>,
    listener: Option<tokio::net::TcpListener>,
    watcher: Option<mpsc::UnboundedSender<(Timestamp, Targets)>>,
    standby: bool,
}

impl Pipeline {
    /// A pipeline over `store`, deciding with `registry`, on `clock`, fetching with `fetcher`.
    pub fn new(
        settings: Settings,
        store: Store,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        fetcher: Arc<dyn Fetcher>,
    ) -> Pipeline {
        Pipeline {
            settings,
            store,
            registry,
            clock,
            fetcher,
            listener: None,
            watcher: None,
            standby: false,
        }
    }

    /// Start as a standby node on a shared database: only what every node runs (the SMS
    /// channels, claiming with the others; the web port). What must run once — the feeds,
    /// correlate, the respond task's timers, the loudspeakers — waits for [`Running::lead`].
    pub fn standing_by(mut self) -> Pipeline {
        self.standby = true;
        self
    }

    /// Serve the web port on this listener rather than binding `web.listen` (tests: port 0).
    pub fn with_listener(mut self, listener: tokio::net::TcpListener) -> Pipeline {
        self.listener = Some(listener);
        self
    }

    /// Tell `tx` of each warning message after its decision is committed, with the clock's
    /// time (the drill's progress lines).
    pub fn watch_warnings(mut self, tx: mpsc::UnboundedSender<(Timestamp, Targets)>) -> Pipeline {
        self.watcher = Some(tx);
        self
    }

    /// Start every stage. Fails, with every stage stopped again, when one cannot start (a
    /// port taken, a missing voice, a bad key).
    pub async fn start(self) -> anyhow::Result<Running> {
        let (trigger, shutdown) = Trigger::new();
        let mut running = Running {
            trigger,
            feeds: None,
            correlate: None,
            follow: None,
            supervised: Vec::new(),
            web: None,
            follow_registry: None,
            poller: None,
            wake: Arc::new(Notify::new()),
            early: Vec::new(),
            leading: None,
        };
        match self.start_on(&mut running, shutdown).await {
            Ok(()) => Ok(running),
            Err(e) => {
                let _ = running.stop().await;
                Err(e)
            }
        }
    }

    async fn start_on(self, r: &mut Running, shutdown: Shutdown) -> anyhow::Result<()> {
        let s = self.settings;
        // Warnings go out under the office's name and code: never another county's.
        s.issuer
            .check_county(&self.registry)
            .map_err(|e| anyhow::anyhow!(e))?;
        let (store, clock) = (self.store, self.clock);
        // What a previous run left mid-send waits for proof, then goes again (counted); each
        // channel later takes back only what it claims itself. On a shared database, only
        // this node's rows: the other nodes' are in flight.
        let mine = match store.node() {
            Some(node) => dispatch::outbox::Scope::Node(node.to_string()),
            None => dispatch::outbox::Scope::Every,
        };
        dispatch::reconcile(&store, mine, clock.now(), s.policy.reconcile_grace).await?;
        // A standby says now, not first when it leads, that its loudspeakers cannot sound.
        let routes = s.channels.broadcast.routes();
        if self.standby && (routes.platform || routes.icecast) {
            loudspeakers_ready(&s)?;
        }
        // The registry in force, shared; a new import is taken up while running.
        let (publisher, registry) = crate::registry::Shared::new(self.registry.clone());
        if let Some(every) = s.registry_reload {
            r.follow_registry = Some(tokio::spawn(crate::registry::follow(
                store.clone(),
                publisher,
                every,
                shutdown.clone(),
            )));
        }
        start_sms(r, &s, &store, &clock, &shutdown)?;
        start_voice(r, &s, &store, &clock, &shutdown)?;
        if let Some(w) = &s.web {
            let listener = match self.listener {
                Some(l) => l,
                None => tokio::net::TcpListener::bind(&w.listen)
                    .await
                    .map_err(|e| anyhow::anyhow!("web.listen {}: {e}", w.listen))?,
            };
            let web = WebPort {
                store: store.clone(),
                registry: registry.clone(),
                respond: s.respond.clone(),
                policy: s.policy.clone(),
                tz: s.tz.clone(),
                feed: s.feed.clone(),
                office: w.office.clone(),
                limits: w.limits.clone(),
                clock: clock.clone(),
            };
            r.web = Some(web.serve(listener, shutdown.clone()).await?);
        }
        r.leading = Some(Leading {
            settings: s,
            store,
            clock,
            fetcher: self.fetcher,
            registry: self.registry,
            shared: registry,
            watcher: self.watcher,
            shutdown,
        });
        if !self.standby {
            r.lead().await?;
        }
        Ok(())
    }
}

/// What only the leader runs, kept by a standby until it leads ([`Running::lead`]).
struct Leading {
    settings: Settings,
    store: Store,
    clock: Arc<dyn Clock>,
    fetcher: Arc<dyn Fetcher>,
    registry: Arc<Registry>,
    shared: crate::registry::Shared,
    watcher: Option<mpsc::UnboundedSender<(Timestamp, Targets)>>,
    shutdown: Shutdown,
}

impl Leading {
    /// Start the loudspeakers, the respond task, the feeds and correlate.
    async fn start(self, r: &mut Running) -> anyhow::Result<()> {
        let Leading {
            settings: s,
            store,
            clock,
            fetcher,
            registry: loaded,
            shared: registry,
            watcher,
            shutdown,
        } = self;
        // The loudspeakers: a missing voice or encoder, a bad key or resource code stops the
        // start here, naming it, not the first warning.
        let routes = s.channels.broadcast.routes();
        let plan = (routes.platform || routes.icecast).then(|| jobs::Plan {
            routes,
            deadline: jiff::SignedDuration::from_mins(i64::from(
                s.channels.broadcast.deadline_mins,
            )),
            policy: s.policy.clone(),
        });
        if plan.is_none() && !loaded.data.terminals.is_empty() && s.respond_task {
            tracing::warn!(
                terminals = loaded.data.terminals.len(),
                "no broadcast route ([dispatch.broadcast.platform] or [dispatch.broadcast.icecast]) configured: the registry's loudspeakers will not sound"
            );
        }
        // Every decision queues its messages, loudspeaker jobs and calls in its own
        // transaction (correlate knows none of them); so does every re-targeting of a
        // warning in force to a new registry.
        let retarget = crate::respond::chain_retarget(
            dispatch::retarget_hook(s.policy.clone(), r.wake.clone()),
            crate::respond::retarget_hook(s.respond.clone(), s.policy.clone()),
        );
        let hook: DecisionHook = crate::respond::chain(
            dispatch::hook_with(s.policy.clone(), r.wake.clone(), plan.clone()),
            crate::respond::hook(s.respond.clone(), s.policy.clone()),
        );
        if plan.is_some() {
            start_loudspeakers(r, &s, &store, &clock, &shutdown)?;
        }
        if s.respond_task {
            let (st, reg, rs, pol, ck, wk) = (
                store.clone(),
                registry.clone(),
                s.respond.clone(),
                s.policy.clone(),
                clock.clone(),
                r.wake.clone(),
            );
            let sd = shutdown.clone();
            r.supervise("respond", &store, &shutdown, move || {
                crate::respond::run(
                    st.clone(),
                    reg.clone(),
                    rs.clone(),
                    pol.clone(),
                    ck.clone(),
                    wk.clone(),
                    sd.clone(),
                )
            });
        }
        // Feeds, then correlate behind them.
        let (out, inbox) = mpsc::channel(1024);
        let poller = Arc::new(Poller::new(
            store.clone(),
            fetcher,
            clock.clone(),
            s.poller.clone(),
            out,
        ));
        if s.feeds.is_empty() {
            tracing::warn!("no feeds configured ([[feeds.source]]): nothing will be polled");
        }
        // Feeds the services are polled for, and feeds that listen (rain gauges' RTUs
        // connect to us): the listeners share the poller's inbox and health.
        let listening: Vec<crate::feeds::poller::FeedSpec> = s
            .feeds
            .iter()
            .filter(|f| f.url.starts_with("tcp://"))
            .cloned()
            .collect();
        // `run` marks the poller busy at once (a simulated clock must not move before the
        // feeds run): it is called here, not inside the task.
        let polling = poller.clone().run(s.feeds.clone(), shutdown.clone());
        r.feeds = Some(tokio::spawn({
            let (poller, shutdown) = (poller.clone(), shutdown.clone());
            async move {
                if !listening.is_empty() {
                    poller.register(&listening).await?;
                }
                let mut listeners = tokio::task::JoinSet::new();
                for spec in listening {
                    listeners.spawn(crate::feeds::sl651::listen::run(
                        poller.clone(),
                        spec,
                        shutdown.clone(),
                    ));
                }
                let polled = polling.await;
                while listeners.join_next().await.is_some() {}
                polled
            }
        }));
        r.poller = Some(poller);
        if loaded.data.villages.is_empty() {
            tracing::warn!(
                "the registry is empty (stormbell registry import DIR): no village can be warned"
            );
        }
        let engine = Engine::new(s.rules.clone(), s.issuer.clone(), loaded.clone());
        let (targets_tx, targets_rx) = mpsc::channel(1024);
        r.correlate = Some(tokio::spawn(engine::run(
            engine,
            store.clone(),
            clock.clone(),
            engine::RunSettings {
                tick: s.tick,
                phase: s.phase,
                tz: s.tz.clone(),
                on_decision: Some(hook),
                registry: s.registry_reload.map(|_| registry.clone()),
                on_retarget: Some(retarget),
            },
            inbox,
            targets_tx,
            shutdown.clone(),
        )));
        r.follow = Some(tokio::spawn(follow(
            targets_rx,
            store.clone(),
            s.publish_dir.clone(),
            s.feed.clone(),
            clock.clone(),
            watcher,
        )));
        Ok(())
    }
}

/// The SMS channels, each under supervision: SMPP accounts and/or an HTTP gateway.
fn start_sms(
    r: &mut Running,
    s: &Settings,
    store: &Store,
    clock: &Arc<dyn Clock>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    if let Some(k) = s.channels.kannel.clone() {
        // A gateway URL that cannot make a client stops the start here.
        KannelChannel::new(k.clone(), store.clone(), s.policy.clone())?;
        let (st, pol, ck, sd, wk) = (
            store.clone(),
            s.policy.clone(),
            clock.clone(),
            shutdown.clone(),
            r.wake.clone(),
        );
        r.supervise(dispatch::kannel::NAME, store, shutdown, move || {
            let ch = KannelChannel::new(k.clone(), st.clone(), pol.clone())
                .map(|c| c.with_clock(ck.clone()));
            let (sd, wk) = (sd.clone(), wk.clone());
            async move { dispatch::drive(ch?, sd, wk).await }
        });
    }
    if !s.channels.sms.is_empty() {
        let (accounts, st, pol, ck, sd, wk) = (
            s.channels.sms.clone(),
            store.clone(),
            s.policy.clone(),
            clock.clone(),
            shutdown.clone(),
            r.wake.clone(),
        );
        r.supervise(dispatch::sms::NAME, store, shutdown, move || {
            let ch =
                SmsChannel::new(accounts.clone(), st.clone(), pol.clone()).with_clock(ck.clone());
            dispatch::drive(ch, sd.clone(), wk.clone())
        });
    } else if s.channels.kannel.is_none() && s.respond_task {
        tracing::warn!(
            "no SMS account ([[dispatch.sms.accounts]]) or gateway ([dispatch.kannel]) configured: messages wait in the outbox"
        );
    }
    Ok(())
}

/// The voice channel, under supervision, when a trunk is configured: its voice checked at
/// start (a missing espeak-ng stops the start, not the first call).
fn start_voice(
    r: &mut Running,
    s: &Settings,
    store: &Store,
    clock: &Arc<dyn Clock>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    if s.channels.voice.trunks.is_empty() {
        return Ok(());
    }
    let cache = s
        .channels
        .broadcast
        .audio_cache
        .clone()
        .unwrap_or_else(|| s.channels.audio_cache.clone());
    let synth = Synth::mandarin(cache);
    synth.check(false)?;
    let (v, st, pol, ck, sd, wk) = (
        s.channels.voice.clone(),
        store.clone(),
        s.policy.clone(),
        clock.clone(),
        shutdown.clone(),
        r.wake.clone(),
    );
    r.supervise(dispatch::voice::NAME, store, shutdown, move || {
        let ch = dispatch::voice::VoiceChannel::new(&v, st.clone(), pol.clone(), synth.clone())
            .with_clock(ck.clone());
        dispatch::drive(ch, sd.clone(), wk.clone())
    });
    Ok(())
}

/// Whether the loudspeakers can sound: the voice and encoder are there, the platform's key and
/// resource code are good. Checked at start (a standby's too, not first when it leads), naming
/// what is wrong. Returns the voice.
fn loudspeakers_ready(s: &Settings) -> anyhow::Result<Synth> {
    let b = &s.channels.broadcast;
    let cache = b
        .audio_cache
        .clone()
        .unwrap_or_else(|| s.channels.audio_cache.clone());
    let synth = Synth::mandarin(cache);
    synth.check(true)?;
    if let Some(p) = b.platform.clone() {
        // A bad key or resource code stops the start here, naming it (each restart of the
        // channel builds it afresh).
        platform::Platform::new(p, &s.policy.office, s.tz.clone())
            .map_err(|e| anyhow::anyhow!("broadcast platform: {e:#}"))?;
    }
    Ok(synth)
}

/// The loudspeaker channels, each under supervision: the county platform and/or Icecast.
fn start_loudspeakers(
    r: &mut Running,
    s: &Settings,
    store: &Store,
    clock: &Arc<dyn Clock>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let b = &s.channels.broadcast;
    let synth = loudspeakers_ready(s)?;
    let keep = s.policy.expire_after;
    let exercise = s.policy.exercise;
    if let Some(p) = b.platform.clone() {
        let office = s.policy.office.clone();
        let (st, sy, ev, tz, ck, sd, wk) = (
            store.clone(),
            synth.clone(),
            s.channels.event_types.clone(),
            s.tz.clone(),
            clock.clone(),
            shutdown.clone(),
            r.wake.clone(),
        );
        r.supervise(platform::NAME, store, shutdown, move || {
            let built = platform::Platform::new(p.clone(), &office, tz.clone()).map(|pl| {
                PlatformChannel::new(pl, st.clone(), sy.clone(), keep)
                    .with_event_types(ev.clone())
                    .with_exercise(exercise)
                    .with_clock(ck.clone())
            });
            let (sd, wk) = (sd.clone(), wk.clone());
            async move { dispatch::drive(built?, sd, wk).await }
        });
    }
    if let Some(i) = b.icecast.clone() {
        let (st, ck, sd, wk) = (
            store.clone(),
            clock.clone(),
            shutdown.clone(),
            r.wake.clone(),
        );
        r.supervise(dispatch::icecast::NAME, store, shutdown, move || {
            let ch = IcecastChannel::new(i.clone(), st.clone(), synth.clone(), keep)
                .with_clock(ck.clone());
            dispatch::drive(ch, sd.clone(), wk.clone())
        });
    }
    Ok(())
}

/// Follow the warnings correlate hands on (after each decision is committed): log each, tell
/// the watcher, refresh the published files; until correlate ends.
async fn follow(
    mut rx: mpsc::Receiver<Targets>,
    store: Store,
    publish_dir: Option<PathBuf>,
    feed: WebSettings,
    clock: Arc<dyn Clock>,
    watcher: Option<mpsc::UnboundedSender<(Timestamp, Targets)>>,
) {
    while let Some(t) = rx.recv().await {
        tracing::warn!(
            lineage = %t.lineage,
            tier = %t.tier,
            version = t.version,
            places = t.places.len(),
            evacuate = t.evacuate,
            contacts = t.contacts.len(),
            terminals = t.terminals.len(),
            "warning {:?}: {}",
            t.send,
            t.identifiers.join(" ")
        );
        for g in &t.gaps {
            tracing::warn!(lineage = %t.lineage, "roster gap: {g}");
        }
        if let Some(dir) = &publish_dir {
            let (dir, feed) = (dir.clone(), feed.clone());
            match store
                .read(move |c| web::publish_files(c, &dir, &feed))
                .await
            {
                Ok(n) => tracing::debug!("published {n} new alert file(s)"),
                Err(e) => tracing::error!("publishing files: {e}"),
            }
        }
        if let Some(w) = &watcher {
            let _ = w.send((clock.now(), t));
        }
    }
}

/// The web port's parts: the CAP feed, the check-in pages behind the links in the texts, and
/// the duty office's page, API and CSV. The demo serves it on its own, over a finished drill.
pub struct WebPort {
    /// The store.
    pub store: Store,
    /// The registry in force (names, the map).
    pub registry: crate::registry::Shared,
    /// Respond's settings (the check-in pages' answers).
    pub respond: RespondSettings,
    /// The outbox policy (links, notices).
    pub policy: Policy,
    /// The office's time zone.
    pub tz: jiff::tz::TimeZone,
    /// The CAP feed's title, sender and public base URL.
    pub feed: WebSettings,
    /// The office's name (page titles).
    pub office: String,
    /// What one connection and one client may hold.
    pub limits: crate::runtime::listen::Limits,
    /// The clock answers are stamped with (a drill's, for a drill's links).
    pub clock: Arc<dyn Clock>,
}

impl WebPort {
    /// Serve on `listener` until `shutdown`; returns the address and the server's task.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: Shutdown,
    ) -> anyhow::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
        let addr = listener.local_addr()?;
        let drill = self.policy.exercise;
        let checkin = web::checkin::Checkin::new(
            self.store.clone(),
            self.registry.clone(),
            self.respond,
            self.policy,
            Default::default(),
            self.clock.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("check-in pages: {e:#}"))?;
        let office = web::office::Office::new(
            self.store.clone(),
            self.registry,
            self.tz,
            &self.office,
            &self.feed.base,
        )
        .await
        .map_err(|e| anyhow::anyhow!("office page: {e:#}"))?
        .on_clock(self.clock, drill);
        tracing::info!(%addr, "CAP feed at /cap/feed.atom, the duty office's page at /office");
        let task = tokio::spawn(web::serve_limited(
            listener,
            self.store,
            self.feed,
            Some(checkin),
            Some(office),
            self.limits,
            shutdown,
        ));
        Ok((addr, task))
    }
}

/// A started pipeline.
pub struct Running {
    trigger: Trigger,
    feeds: Option<JoinHandle<anyhow::Result<()>>>,
    correlate: Option<JoinHandle<anyhow::Result<()>>>,
    follow: Option<JoinHandle<()>>,
    supervised: Vec<(&'static str, JoinHandle<usize>)>,
    web: Option<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
    follow_registry: Option<JoinHandle<()>>,
    poller: Option<Arc<Poller>>,
    wake: Arc<Notify>,
    /// Results of stages that ended before `stop` (see [`Running::ended`]).
    early: Vec<(Ended, Result<anyhow::Result<()>, tokio::task::JoinError>)>,
    /// What only the leader runs, until this node leads.
    leading: Option<Leading>,
}

/// Why a running pipeline ended before it was asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The feeds stage ended by itself: nothing is polled any more.
    Feeds,
    /// The correlate stage ended by itself: nothing is decided any more.
    Correlate,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ended::Feeds => "the feeds stage ended without being asked to",
            Ended::Correlate => "the correlate stage ended without being asked to",
        })
    }
}

impl Running {
    fn supervise<F, Fut>(&mut self, name: &'static str, store: &Store, stop: &Shutdown, make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (store, stop) = (store.clone(), stop.clone());
        self.supervised.push((
            name,
            tokio::spawn(crate::supervise::stage(
                name,
                store,
                stop,
                Default::default(),
                make,
            )),
        ));
    }

    /// Start what only the leader runs (a pipeline started [`Pipeline::standing_by`], once its
    /// node takes the lease); nothing when it runs already.
    pub async fn lead(&mut self) -> anyhow::Result<()> {
        match self.leading.take() {
            Some(l) => l.start(self).await,
            None => Ok(()),
        }
    }

    /// Another receiver of the pipeline's shutdown (for a task that runs beside it).
    pub fn shutdown(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// Notified when messages are queued outside correlate's hook (a drill's world).
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Where the web port listens, if it does.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().map(|(a, _)| *a)
    }

    /// Resolve when feeds or correlate ends by itself (never while both run). A daemon that has
    /// stopped polling or deciding must not look alive: the caller stops and exits non-zero.
    /// Cancel-safe: the ended stage's result is kept for [`Running::stop`].
    pub async fn ended(&mut self) -> Ended {
        type Task = JoinHandle<anyhow::Result<()>>;
        async fn join(t: &mut Option<Task>) -> Result<anyhow::Result<()>, tokio::task::JoinError> {
            match t {
                Some(t) => t.await,
                None => std::future::pending().await,
            }
        }
        let (which, result) = tokio::select! {
            r = join(&mut self.feeds) => (Ended::Feeds, r),
            r = join(&mut self.correlate) => (Ended::Correlate, r),
        };
        match which {
            Ended::Feeds => self.feeds = None,
            Ended::Correlate => self.correlate = None,
        }
        self.early.push((which, result));
        which
    }

    /// Fire the shutdown and wait for every stage to finish what it holds. Returns each
    /// stage's error, named.
    pub async fn stop(mut self) -> Result<(), Vec<String>> {
        self.trigger.fire();
        let mut errors = Vec::new();
        let mut take = |name: &str, r: Result<anyhow::Result<()>, tokio::task::JoinError>| match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("{name}: {e:#}")),
            Err(e) => errors.push(format!("{name} task: {e}")),
        };
        for (which, r) in std::mem::take(&mut self.early) {
            take(
                match which {
                    Ended::Feeds => "feeds",
                    Ended::Correlate => "correlate",
                },
                r,
            );
        }
        if let Some(f) = self.feeds.take() {
            take("feeds", f.await);
        }
        if let Some(c) = self.correlate.take() {
            take("correlate", c.await);
        }
        // The poller holds correlate's sender only through itself; correlate is done.
        drop(self.poller.take());
        if let Some(f) = self.follow.take() {
            let _ = f.await;
        }
        for (name, task) in self.supervised.drain(..) {
            match task.await {
                Ok(restarts) if restarts > 0 => {
                    tracing::warn!(
                        stage = name,
                        restarts,
                        "stage was restarted during this run"
                    )
                }
                Ok(_) => {}
                Err(e) => take(name, Err(e)),
            }
        }
        if let Some(f) = self.follow_registry.take() {
            let _ = f.await;
        }
        if let Some((_, web)) = self.web.take() {
            match web.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("web: {e}")),
                Err(e) => errors.push(format!("web task: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// How `stormbell run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Asked to stop (a signal), and stopped.
    Stopped,
    /// This node lost the leader lease and stepped down: it wrote nothing after (its store is
    /// revoked) and exits with an error so the service manager starts it again, as a standby.
    SteppedDown,
}

/// The leader lease a node on a shared PostgreSQL database runs under.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The database (libpq URL).
    pub url: String,
    /// This node's name and the lease's length.
    pub settings: crate::store::lease::LeaseSettings,
}

impl Lease {
    /// Wait until this node holds the lease, then fence `store` by it: from here every write
    /// batch of the store first checks that the lease still names this node and epoch. The
    /// one way a node (the daemon, a drill) starts leading, so no leader writes unfenced.
    pub async fn take(&self, store: &Store) -> Result<crate::store::lease::Leadership, StoreError> {
        let l = crate::store::lease::acquire(&self.url, &self.settings).await?;
        store.fence(&self.settings.node, l.epoch);
        Ok(l)
    }
}

/// Run a pipeline as the daemon does: its start and stop in the audit trail (`daemon.started`,
/// `daemon.stopped` with the reason), every stage until `signal` resolves (with its name) or
/// until feeds or correlate ends by itself, then a graceful stop. An error names every stage
/// that failed; a stage that ended by itself is an error.
///
/// Under a `lease` (nodes sharing PostgreSQL), the node starts as a standby — its SMS
/// channels claim with the other nodes', its web port serves — and starts the rest when it
/// takes the lease (`daemon.leading`), fenced by it; meanwhile, as leader, it takes back what
/// a node that died left mid-send. If it loses the lease it steps down at once
/// ([`Served::SteppedDown`]).
pub async fn serve(
    pipeline: Pipeline,
    store: &Store,
    subject: &str,
    lease: Option<Lease>,
    signal: impl std::future::Future<Output = &'static str>,
) -> anyhow::Result<Served> {
    use crate::store::audit;
    let tz = pipeline.settings.tz.clone();
    let node = lease.as_ref().map(|l| l.settings.node.clone());
    let started = audit::Entry::now(
        &tz,
        "system",
        "daemon.started",
        subject,
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "feeds": pipeline.settings.feeds.len(),
            "node": node,
        }),
    );
    // The trail is held to its checkpoints before anything is added to it, so a trail cut or
    // rewritten while the daemon was down is said at once, in the log and in the trail.
    let checkpoints = match &pipeline.settings.checkpoints {
        Some(cp) => Some((cp.clone(), open_checkpoints(store, cp, &tz, subject).await?)),
        None => None,
    };
    store
        .write(move |tx| Ok(audit::append(tx, &started)?))
        .await?;
    // Every connection, file and child process takes a descriptor; a soft limit of 1,024
    // is reached by a few hundred held connections.
    crate::runtime::listen::raise_file_limit();
    let clock = pipeline.clock.clone();
    let retention = pipeline.settings.retention;
    let grace = pipeline.settings.policy.reconcile_grace;
    let pipeline = match &lease {
        Some(l) => {
            let node = l.settings.node.clone();
            store
                .write(move |tx| Ok(crate::store::lease::announce(tx, &node)?))
                .await?;
            pipeline.standing_by()
        }
        None => pipeline,
    };
    let mut running = pipeline.start().await?;
    let keeper = checkpoints.as_ref().map(|(cp, key)| {
        tokio::spawn(keep_checkpoints(
            store.clone(),
            cp.clone(),
            key.clone(),
            clock.clone(),
            running.shutdown(),
        ))
    });
    // What runs once, beside the leader's pipeline.
    let mut beside: Vec<JoinHandle<()>> = Vec::new();
    let start_beside = |running: &Running, beside: &mut Vec<JoinHandle<()>>| {
        if let Some(settings) = retention {
            beside.push(tokio::spawn(crate::retention::run(
                store.clone(),
                settings,
                clock.clone(),
                running.shutdown(),
            )));
        }
        if let Some(l) = &lease {
            beside.push(tokio::spawn(take_back_from_the_gone(
                store.clone(),
                l.settings.clone(),
                grace,
                clock.clone(),
                running.shutdown(),
            )));
        }
    };
    tokio::pin!(signal);
    let mut why: Option<Result<String, String>> = None;
    // A standby, until it leads. The lease keeper lives until the pipeline has stopped: a
    // node says it is gone only once nothing of it is in flight.
    let mut leadership = None;
    let mut acquiring = lease.as_ref().map(|l| Box::pin(l.take(store)));
    match acquiring.as_mut() {
        Some(acquire) => {
            tracing::info!(db = %store.path().display(), "stormbell running as a standby");
            tokio::select! {
                s = &mut signal => {
                    tracing::info!(signal = s, "shutting down");
                    why = Some(Ok(s.to_string()));
                }
                ended = running.ended() => why = Some(Err(ended.to_string())),
                taken = acquire => match taken {
                    Err(e) => why = Some(Err(e.to_string())),
                    Ok(l) => {
                        let node = node.clone().unwrap_or_default();
                        let entry = audit::Entry::now(
                            &tz,
                            "system",
                            "daemon.leading",
                            subject,
                            serde_json::json!({ "node": node, "epoch": l.epoch }),
                        );
                        leadership = Some(l);
                        let led = async {
                            store.write(move |tx| Ok(audit::append(tx, &entry)?)).await?;
                            running.lead().await
                        };
                        match led.await {
                            Ok(()) => start_beside(&running, &mut beside),
                            Err(e) => why = Some(Err(format!("{e:#}"))),
                        }
                    }
                },
            }
        }
        None => start_beside(&running, &mut beside),
    }
    let mut stepped_down = false;
    if why.is_none() {
        tracing::info!(db = %store.path().display(), "stormbell running");
        let lost = async {
            match &leadership {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        why = Some(tokio::select! {
            s = &mut signal => {
                tracing::info!(signal = s, "shutting down");
                Ok(s.to_string())
            }
            ended = running.ended() => {
                tracing::error!("{ended}; shutting down");
                Err(ended.to_string())
            }
            lost = lost => {
                // Nothing more of this node reaches the database: another node leads.
                tracing::error!("{lost}; this node steps down");
                store.revoke();
                stepped_down = true;
                Ok("leader lease lost".to_string())
            }
        });
    }
    let why = why.unwrap_or_else(|| Err("no reason".into()));
    let stopped = running.stop().await;
    if !stepped_down {
        let reason = match &why {
            Ok(s) => s.clone(),
            Err(e) => format!("none ({e})"),
        };
        let entry = audit::Entry::now(
            &tz,
            "system",
            "daemon.stopped",
            subject,
            serde_json::json!({ "signal": reason }),
        );
        store
            .write(move |tx| Ok(audit::append(tx, &entry)?))
            .await?;
    }
    if let Some(k) = keeper {
        let _ = k.await;
    }
    for task in beside {
        let _ = task.await;
    }
    // The last checkpoint covers the stop itself.
    if let Some((cp, key)) = &checkpoints
        && !stepped_down
        && let Err(e) = checkpoint_now(store, cp, key, clock.now(), None).await
    {
        tracing::error!("audit: the checkpoint at shutdown was not written: {e:#}");
    }
    // Now the lease goes (the leader's given up at once, a standby's wait ended).
    drop(leadership);
    drop(acquiring);
    match (why, stopped) {
        (Ok(_), Ok(())) if stepped_down => Ok(Served::SteppedDown),
        (Ok(_), Ok(())) => Ok(Served::Stopped),
        (why, stopped) => {
            let mut all: Vec<String> = why.err().into_iter().collect();
            all.extend(stopped.err().unwrap_or_default());
            anyhow::bail!("{}", all.join("; "))
        }
    }
}

/// The leader's watch over the other nodes: every third of the lease, the nodes that stopped
/// or went silent for three leases ([`crate::store::lease::gone`]) have what they left
/// mid-send taken back ([`dispatch::reconcile`] for their rows: a grace for receipts, then
/// sent again, counted). A node that stops cleanly has nothing in flight.
async fn take_back_from_the_gone(
    store: Store,
    lease: crate::store::lease::LeaseSettings,
    grace: jiff::SignedDuration,
    clock: Arc<dyn Clock>,
    mut shutdown: Shutdown,
) {
    let silent_for = lease.ttl * 3;
    let mut every = tokio::time::interval(lease.ttl / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.recv() => return,
        }
        let me = lease.node.clone();
        let gone = match store
            .read(move |c| Ok(crate::store::lease::gone(c, &me, silent_for)?))
            .await
        {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!("cannot read the other nodes' heartbeats: {e:#}");
                continue;
            }
        };
        for node in gone {
            let scope = dispatch::outbox::Scope::Node(node.clone());
            if let Err(e) = dispatch::reconcile(&store, scope, clock.now(), grace).await {
                tracing::warn!(node = %node, "cannot take back what the node left mid-send: {e:#}");
            }
        }
    }
}

/// Load (or create) the checkpoint key and hold the trail to every checkpoint written so far.
/// What does not hold is logged as an error and recorded in the trail
/// (`audit.checkpoint-failed`); the daemon still starts, since warnings matter more than the
/// record of them, and `stormbell audit verify` and `status` keep saying it.
async fn open_checkpoints(
    store: &Store,
    cp: &crate::store::checkpoint::Settings,
    tz: &jiff::tz::TimeZone,
    subject: &str,
) -> anyhow::Result<crate::store::checkpoint::Key> {
    use crate::store::{audit, checkpoint};
    let (key_path, file) = (cp.key.clone(), cp.file.clone());
    // A key that cannot be read or made is a configuration error, said at start like a bad
    // SM2 key; a checkpoint file that cannot be read is a finding about the trail, and the
    // daemon starts.
    let (key, written, unreadable) = tokio::task::spawn_blocking(move || {
        let key = checkpoint::Key::load_or_create(&key_path)
            .map_err(|e| anyhow::anyhow!("store.audit_key: {e:#}"))?;
        let (written, unreadable) = checkpoint::read(&file).unwrap_or_else(|e| {
            let why = format!(
                "store.audit_checkpoints {}: cannot be read: {e}",
                file.display()
            );
            (Vec::new(), vec![why])
        });
        Ok::<_, anyhow::Error>((key, written, unreadable))
    })
    .await??;
    let (k, zone) = (key.clone(), tz.clone());
    let checked = store
        .read(move |c| Ok(checkpoint::check(c, &k, &written, &zone)?))
        .await?;
    let failures: Vec<String> = unreadable.into_iter().chain(checked.failures).collect();
    if failures.is_empty() {
        if let Some(last) = &checked.last {
            tracing::info!(
                checkpoints = checked.holding,
                seq = last.seq,
                "audit trail holds to its checkpoints"
            );
        }
        return Ok(key);
    }
    for f in &failures {
        tracing::error!("AUDIT TRAIL DOES NOT HOLD: {f}");
    }
    let entry = audit::Entry::now(
        tz,
        "system",
        "audit.checkpoint-failed",
        subject,
        serde_json::json!({
            "file": cp.file.display().to_string(),
            "holding": checked.holding,
            "failures": failures,
        }),
    );
    store
        .write(move |tx| Ok(audit::append(tx, &entry)?))
        .await?;
    Ok(key)
}

/// Sign the trail's head and append it to the checkpoint file (and the log), unless the head
/// is still `unless` (nothing new since the last one). Returns the head signed.
async fn checkpoint_now(
    store: &Store,
    cp: &crate::store::checkpoint::Settings,
    key: &crate::store::checkpoint::Key,
    now: Timestamp,
    unless: Option<i64>,
) -> anyhow::Result<Option<i64>> {
    use crate::store::{audit, checkpoint};
    let Some((seq, hash)) = store.read(|c| Ok(audit::head(c)?)).await? else {
        return Ok(None);
    };
    if unless == Some(seq) {
        return Ok(Some(seq));
    }
    let signed = checkpoint::Checkpoint::sign(key, seq, &hash, now);
    let file = cp.file.clone();
    let line = signed.clone();
    tokio::task::spawn_blocking(move || checkpoint::append(&file, &line))
        .await?
        .map_err(|e| anyhow::anyhow!("{}: {e}", cp.file.display()))?;
    tracing::info!(
        seq = signed.seq,
        hash = %signed.hash,
        mac = %signed.mac,
        at = %signed.at,
        "audit checkpoint"
    );
    Ok(Some(seq))
}

/// Every `cp.every`, a checkpoint when the trail has grown, until `shutdown`.
async fn keep_checkpoints(
    store: Store,
    cp: crate::store::checkpoint::Settings,
    key: crate::store::checkpoint::Key,
    clock: Arc<dyn Clock>,
    mut shutdown: Shutdown,
) {
    let Some(every) = cp.every else {
        return;
    };
    let mut last = None;
    loop {
        let next = clock.elapsed() + every;
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = shutdown.recv() => return,
        }
        match checkpoint_now(&store, &cp, &key, clock.now(), last).await {
            Ok(head) => last = head,
            Err(e) => tracing::error!("audit: checkpoint not written: {e:#}"),
        }
    }
}
