//! The broadcast channel: claims broadcast jobs of one route and sees them through, the same
//! shape as the SMS channel (claim, send, record, every state a committed write).
//!
//! - **platform**: package the EBM (script, area codes, the MP3 as an auxiliary resource),
//!   sign it, POST it, read the `EBDResponse`; then poll `EBMStateRequest` until every terminal
//!   has reported. A heartbeat (`ConnectionCheck`) and a terminal-state report (`OMDRequest`
//!   for `EBRDTState`) run on their own timers. Unreachable: retried with backoff; refused
//!   (signature, content): failed and alarmed at once.
//! - **icecast**: stream the MP3 to each village's mount, paced, in parallel; a village whose
//!   mount had fewer listeners than it has IP speakers is unconfirmed.
//!
//! Past a job's deadline, every terminal that has not confirmed play is `unconfirmed` and an
//! alarm waits in `broadcast_alarm` for respond, which chases a silent loudspeaker as it
//! chases a silent village head.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::audio::{Audio, Synth};
use super::ebd::{self, Auxiliary, Ebm, Endpoint, MsgType, Reply};
use super::icecast::{self, IcecastSettings};
use super::jobs::{self, Due, Report};
use super::sign::{Signer, SignerSettings};
use crate::feeds::clock::{Clock, SystemClock};
use crate::store::Store;

/// `[dispatch.broadcast]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BroadcastSettings {
    /// Terminals must confirm play within this many minutes of the decision.
    #[serde(default = "default_deadline")]
    pub deadline_mins: u32,
    /// Where audio is cached (default: `audio/` beside the store).
    #[serde(default)]
    pub audio_cache: Option<PathBuf>,
    /// `[dispatch.broadcast.platform]`: the county emergency-broadcast platform.
    #[serde(default)]
    pub platform: Option<PlatformSettings>,
    /// `[dispatch.broadcast.icecast]`: IP speakers pulling Icecast mounts.
    #[serde(default)]
    pub icecast: Option<IcecastSettings>,
}

fn default_deadline() -> u32 {
    10
}

impl Default for BroadcastSettings {
    fn default() -> Self {
        BroadcastSettings {
            deadline_mins: default_deadline(),
            audio_cache: None,
            platform: None,
            icecast: None,
        }
    }
}

impl BroadcastSettings {
    /// The routes configured.
    pub fn routes(&self) -> jobs::Routes {
        jobs::Routes {
            platform: self.platform.is_some(),
            icecast: self.icecast.is_some(),
        }
    }
}

/// `[dispatch.broadcast.platform]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlatformSettings {
    /// Where packages are POSTed.
    pub url: String,
    /// Our resource code (EBRID, 18 digits).
    pub src: String,
    /// The platform's resource code.
    pub dest: String,
    /// Seconds between state polls of a broadcast in progress.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// Seconds between heartbeats (and terminal-state reports).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Seconds to wait for an answer.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Send the MP3 with the instruction (else the platform speaks the text itself).
    #[serde(default = "default_true")]
    pub audio: bool,
    /// MP3 bit rate (kbit/s).
    #[serde(default = "default_kbps")]
    pub kbps: u32,
    /// How packages are signed.
    #[serde(default = "default_signer")]
    pub signer: SignerSettings,
}

fn default_poll() -> u64 {
    5
}
fn default_heartbeat() -> u64 {
    60
}
fn default_timeout() -> u64 {
    10
}
fn default_true() -> bool {
    true
}
fn default_kbps() -> u32 {
    32
}
fn default_signer() -> SignerSettings {
    SignerSettings::None
}

/// Ids that stay unique across restarts and databases: milliseconds since the epoch times a
/// thousand, plus a counter (16 digits until the year 2286).
#[derive(Debug, Default)]
pub struct Sequence(AtomicI64);

impl Sequence {
    /// The next id.
    pub fn next(&self) -> i64 {
        let base = jiff::Timestamp::now().as_millisecond() * 1000;
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let n = base.max(cur + 1);
            match self
                .0
                .compare_exchange(cur, n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return n % 10_000_000_000_000_000,
                Err(c) => cur = c,
            }
        }
    }
}

/// The most of a platform's answer read (an EBDResponse or state report is a few KB).
const ANSWER_LIMIT: usize = 4 * 1024 * 1024;

/// Why an exchange with the platform did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Not reached, timed out, or an HTTP error: try again.
    #[error("platform unreachable: {0}")]
    Unreachable(String),
    /// It answered something unreadable.
    #[error("platform answer unreadable: {0}")]
    Unreadable(String),
}

/// A county emergency-broadcast platform.
pub struct Platform {
    settings: PlatformSettings,
    ep: Endpoint,
    signer: Box<dyn Signer>,
    http: reqwest::Client,
    seq: Sequence,
}

impl Platform {
    /// From settings (the signer's key is read now: a bad key stops start-up).
    pub fn new(
        settings: PlatformSettings,
        sender: &str,
        tz: jiff::tz::TimeZone,
    ) -> anyhow::Result<Platform> {
        for (key, v) in [("src", &settings.src), ("dest", &settings.dest)] {
            if !ebd::valid_ebrid(v) {
                anyhow::bail!(
                    "dispatch.broadcast.platform.{key} {v:?} is not an 18-digit resource code (EBRID)"
                );
            }
        }
        let signer = settings.signer.build()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .build()?;
        Ok(Platform {
            ep: Endpoint {
                src: settings.src.clone(),
                dest: settings.dest.clone(),
                sender: sender.into(),
                tz,
            },
            settings,
            signer,
            http,
            seq: Sequence::default(),
        })
    }

    /// A new EBMID.
    pub fn new_ebm_id(&self) -> String {
        ebd::ebm_id(&self.ep.src, self.seq.next())
    }

    /// POST one package and read the answer.
    async fn exchange(
        &self,
        build: impl FnOnce(&Endpoint, &str, Timestamp) -> Vec<u8>,
        files: &[(&str, &[u8])],
    ) -> Result<Reply, PlatformError> {
        let now = Timestamp::now();
        let id = ebd::ebd_id(&self.ep.src, self.seq.next());
        let doc = build(&self.ep, &id, now);
        let tar = ebd::package(&id, &doc, self.signer.as_ref(), now, files)
            .map_err(|e| PlatformError::Unreadable(format!("packaging: {e:#}")))?;
        let resp = self
            .http
            .post(&self.settings.url)
            .header("Content-Type", "application/x-tar")
            .body(tar)
            .send()
            .await
            .map_err(|e| PlatformError::Unreachable(format!("{}: {e}", self.settings.url)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(PlatformError::Unreachable(format!(
                "{} answered HTTP {status}",
                self.settings.url
            )));
        }
        // An answer is a small tar of XML; anything larger is not one (and is not read whole).
        let body = crate::http::read_capped(resp, &self.settings.url, ANSWER_LIMIT)
            .await
            .map_err(|e| match e {
                crate::http::FetchError::TooLarge { .. } => {
                    PlatformError::Unreadable(e.to_string())
                }
                e => PlatformError::Unreachable(e.to_string()),
            })?;
        ebd::read_reply(&body, &self.ep).map_err(|e| PlatformError::Unreadable(format!("{e:#}")))
    }
}

/// How the channel reaches its terminals.
enum Route {
    Platform(Arc<Platform>),
    Icecast(Arc<IcecastSettings>),
}

/// The broadcast channel for one route.
pub struct BroadcastChannel {
    route: Route,
    store: Store,
    synth: Arc<Synth>,
    clock: Arc<dyn Clock>,
    /// Hazard → national event type code (`11B…`), from the warning rules.
    event_types: HashMap<String, String>,
    /// Jobs older than this are no longer tracked.
    keep: SignedDuration,
    /// End of play window written into the instruction.
    play_for: SignedDuration,
    /// A drill: instructions are marked as tests.
    exercise: bool,
    /// One source per Icecast mount at a time: a village warned for two hazards at once hears
    /// them one after the other (a second source would be refused as "mount in use").
    mounts: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    http: reqwest::Client,
}

impl BroadcastChannel {
    /// A channel driving a county platform.
    pub fn platform(
        platform: Platform,
        store: Store,
        synth: Synth,
        keep: SignedDuration,
    ) -> BroadcastChannel {
        BroadcastChannel::with_route(Route::Platform(Arc::new(platform)), store, synth, keep)
    }

    /// A channel streaming to Icecast mounts.
    pub fn icecast(
        settings: IcecastSettings,
        store: Store,
        synth: Synth,
        keep: SignedDuration,
    ) -> BroadcastChannel {
        BroadcastChannel::with_route(Route::Icecast(Arc::new(settings)), store, synth, keep)
    }

    fn with_route(
        route: Route,
        store: Store,
        synth: Synth,
        keep: SignedDuration,
    ) -> BroadcastChannel {
        BroadcastChannel {
            route,
            store,
            synth: Arc::new(synth),
            clock: Arc::new(SystemClock::new()),
            event_types: HashMap::new(),
            keep,
            play_for: keep,
            exercise: false,
            mounts: Default::default(),
            http: reqwest::Client::new(),
        }
    }

    /// Stamp records with this clock (a replay's simulated one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> BroadcastChannel {
        self.clock = clock;
        self
    }

    /// Mark instructions as a drill (`TestType` 1), as the texts are.
    pub fn with_exercise(mut self, exercise: bool) -> BroadcastChannel {
        self.exercise = exercise;
        self
    }

    /// National event type codes per hazard (for the instruction's `EventType`).
    pub fn with_event_types(mut self, codes: HashMap<String, String>) -> BroadcastChannel {
        self.event_types = codes;
        self
    }

    fn route_name(&self) -> &'static str {
        match self.route {
            Route::Platform(_) => "platform",
            Route::Icecast(_) => "icecast",
        }
    }

    /// Render the job's audio (espeak-ng, then ffmpeg) off the async threads.
    async fn audio(&self, script: &str, kbps: u32) -> anyhow::Result<Audio> {
        let synth = self.synth.clone();
        let script = script.to_string();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Audio> {
            let wav = synth.render(&script)?;
            Ok(synth.mp3(&wav, kbps)?)
        })
        .await?
    }

    /// Run until `stop` turns true.
    pub async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<()> {
        let me = Arc::new(self);
        let route = me.route_name();
        let mut streams: JoinSet<()> = JoinSet::new();
        let in_flight: Arc<std::sync::Mutex<HashSet<i64>>> = Arc::default();
        let mut next_beat = tokio::time::Instant::now();
        if let Route::Icecast(_) = me.route {
            let now = me.clock.now();
            let n = me
                .store
                .write(move |tx| jobs::resume_streams(tx, now))
                .await?;
            if n > 0 {
                tracing::warn!(
                    "{n} Icecast broadcast(s) were cut off by a restart and play again from the start"
                );
            }
        }
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let now = me.clock.now();
            // Deadlines first: a terminal silent past its deadline is reported even while the
            // route is down.
            // One write for both (this runs four times a second, mostly finding nothing).
            let keep = me.keep;
            let raised = me
                .store
                .write(move |tx| {
                    jobs::retire(tx, route, now, keep)?;
                    jobs::deadlines(tx, route, now)
                })
                .await?;
            if raised > 0 {
                tracing::warn!(
                    route,
                    raised,
                    "broadcast: terminals or broadcasts past their deadline reported to respond"
                );
            }
            let due = me.store.read(move |c| jobs::due(c, route, now, 32)).await?;
            match &me.route {
                Route::Platform(p) => {
                    if tokio::time::Instant::now() >= next_beat {
                        next_beat = tokio::time::Instant::now()
                            + Duration::from_secs(p.settings.heartbeat_secs.max(1));
                        me.heartbeat(p).await?;
                    }
                    for job in due {
                        if *stop.borrow() {
                            break;
                        }
                        me.send_platform(p, job).await?;
                    }
                    me.poll_platform(p).await?;
                }
                Route::Icecast(s) => {
                    while streams.try_join_next().is_some() {}
                    for job in due {
                        let fresh = in_flight
                            .lock()
                            .map(|mut g| g.insert(job.id))
                            .unwrap_or(false);
                        if !fresh {
                            continue;
                        }
                        let (me2, s2, flight) = (me.clone(), s.clone(), in_flight.clone());
                        streams.spawn(async move {
                            let id = job.id;
                            if let Err(e) = me2.send_icecast(&s2, job).await {
                                tracing::error!(job = id, "icecast broadcast: {e:#}");
                            }
                            if let Ok(mut g) = flight.lock() {
                                g.remove(&id);
                            }
                        });
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        // Streams in progress finish (a loudspeaker message is not cut off mid-sentence).
        while streams.join_next().await.is_some() {}
        Ok(())
    }

    async fn heartbeat(&self, p: &Platform) -> anyhow::Result<()> {
        let check = p.exchange(ebd::connection_check, &[]).await;
        let now = self.clock.now();
        let verdict: Result<(), String> = match check {
            Ok(Reply::Response { code, .. }) if code == "1" => Ok(()),
            Ok(other) => Err(format!("heartbeat answered {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &verdict {
            tracing::warn!("broadcast platform heartbeat: {e}");
        }
        let v = verdict.clone();
        self.store
            .write(move |tx| {
                jobs::link(
                    tx,
                    "platform",
                    v.as_ref().map(|_| ()).map_err(String::as_str),
                    now,
                )
            })
            .await?;
        if verdict.is_ok()
            && let Ok(Reply::Terminals(states)) = p.exchange(ebd::terminal_state_request, &[]).await
        {
            let offline = states.iter().filter(|s| !s.online).count();
            if offline > 0 {
                tracing::warn!(
                    offline,
                    "broadcast terminals offline by the platform's report"
                );
            }
            self.store
                .write(move |tx| jobs::terminal_states(tx, &states, now))
                .await?;
        }
        Ok(())
    }

    async fn send_platform(&self, p: &Platform, job: Due) -> anyhow::Result<()> {
        let id = job.id;
        let ebm_id = match &job.ebm_id {
            Some(e) => e.clone(),
            None => {
                let e = p.new_ebm_id();
                let e2 = e.clone();
                self.store
                    .write(move |tx| jobs::assign_ebm(tx, id, &e2))
                    .await?;
                e
            }
        };
        let cancel = job.send == "Cancel";
        let audio = if p.settings.audio && !cancel {
            match self.audio(&job.script, p.settings.kbps).await {
                Ok(a) => Some(a),
                Err(e) => {
                    // No audio is no reason to stay silent: the platform speaks the text.
                    tracing::error!(
                        job = id,
                        "broadcast audio failed, sending the text for the platform to speak: {e:#}"
                    );
                    None
                }
            }
        } else {
            None
        };
        let bytes = match &audio {
            Some(a) => Some(tokio::fs::read(&a.path).await?),
            None => None,
        };
        let file = audio
            .as_ref()
            .map(|a| format!("EBDI_{}_{}.mp3", ebm_id, &a.sha256[..16]));
        let now = self.clock.now();
        let ebm = Ebm {
            ebm_id: ebm_id.clone(),
            related: job.related.clone(),
            msg_type: if cancel { MsgType::Stop } else { MsgType::Play },
            test: self.exercise,
            severity: severity(&job.tier),
            event_type: self
                .event_types
                .get(&job.hazard)
                .cloned()
                .unwrap_or_default(),
            title: job.title.clone(),
            text: job.script.clone(),
            areas: job.areas.clone(),
            start: now,
            end: now + self.play_for,
            audio: match (&file, &bytes) {
                (Some(f), Some(b)) => Some(Auxiliary::of(f.clone(), b)),
                _ => None,
            },
        };
        let files: Vec<(&str, &[u8])> = match (&file, &bytes) {
            (Some(f), Some(b)) => vec![(f.as_str(), b.as_slice())],
            _ => vec![],
        };
        let reply = p
            .exchange(|ep, ebd, at| ebd::ebm_document(ep, ebd, &ebm, at), &files)
            .await;
        let now = self.clock.now();
        let sha = audio.as_ref().map(|a| a.sha256.clone());
        let poll = now + SignedDuration::from_secs(p.settings.poll_secs.max(1) as i64);
        match reply {
            Ok(Reply::Response { code, desc }) if code == "1" => {
                tracing::info!(job = id, ebm = %ebm_id, areas = job.areas.len(), "broadcast accepted by the platform");
                let result = format!("{code} {desc}");
                self.store
                    .write(move |tx| {
                        jobs::sent(tx, id, sha.as_deref(), &result, now, poll)?;
                        if cancel {
                            jobs::reported(tx, id, &[], &result, None, now, now)?;
                        }
                        Ok::<_, anyhow::Error>(())
                    })
                    .await?;
            }
            Ok(Reply::Response { code, desc }) if code == "5" && cancel => {
                let result = format!("{code} {desc} (nothing to stop)");
                self.store
                    .write(move |tx| {
                        jobs::sent(tx, id, None, &result, now, now)?;
                        jobs::reported(tx, id, &[], &result, None, now, now)
                    })
                    .await?;
            }
            Ok(Reply::Response { code, desc }) => {
                let why = format!("the platform refused broadcast {ebm_id}: code {code} {desc}");
                tracing::error!(job = id, "{why}");
                self.store
                    .write(move |tx| jobs::refused(tx, id, &why, now))
                    .await?;
            }
            Ok(other) => {
                let why = format!("the platform answered an instruction with {other:?}");
                self.store
                    .write(move |tx| jobs::refused(tx, id, &why, now))
                    .await?;
            }
            Err(e) => {
                let wait = backoff(job.attempts);
                let why = e.to_string();
                tracing::warn!(
                    job = id,
                    attempt = job.attempts + 1,
                    "broadcast not delivered to the platform, again in {wait:?}: {why}"
                );
                self.store
                    .write(move |tx| jobs::retry(tx, id, &why, now, now + wait))
                    .await?;
            }
        }
        Ok(())
    }

    async fn poll_platform(&self, p: &Platform) -> anyhow::Result<()> {
        let now = self.clock.now();
        let tracked = self
            .store
            .read(move |c| jobs::to_poll(c, "platform", now))
            .await?;
        for t in tracked {
            let Some(ebm_id) = t.ebm_id.clone() else {
                continue;
            };
            let reply = p
                .exchange(|ep, ebd, at| ebd::state_request(ep, ebd, &ebm_id, at), &[])
                .await;
            let now = self.clock.now();
            let past = now >= t.deadline;
            // Before the deadline, poll at the configured pace; after it, slower (a late
            // report still turns an unconfirmed terminal into a played one).
            let pace = if past {
                p.settings.poll_secs.max(1) * 6
            } else {
                p.settings.poll_secs.max(1)
            };
            let next = now + SignedDuration::from_secs(pace as i64);
            let id = t.id;
            match reply {
                Ok(Reply::State {
                    code,
                    desc,
                    coverage,
                    terminals,
                }) => {
                    let reports: Vec<Report> = terminals
                        .into_iter()
                        .map(|x| Report {
                            terminal: x.ebrid,
                            code: x.code,
                            desc: x.desc,
                        })
                        .collect();
                    let result = format!("{code} {desc}");
                    self.store
                        .write(move |tx| {
                            jobs::reported(tx, id, &reports, &result, coverage, now, next)
                        })
                        .await?;
                }
                Ok(Reply::Response { code, desc }) => {
                    let why = format!("state of {ebm_id}: code {code} {desc}");
                    if code == "5" {
                        self.store
                            .write(move |tx| jobs::refused(tx, id, &why, now))
                            .await?;
                    } else {
                        self.store
                            .write(move |tx| jobs::poll_later(tx, id, Some(&why), now, next))
                            .await?;
                    }
                }
                Ok(other) => {
                    let why = format!("state request answered {other:?}");
                    self.store
                        .write(move |tx| jobs::poll_later(tx, id, Some(&why), now, next))
                        .await?;
                }
                Err(e) => {
                    let why = e.to_string();
                    self.store
                        .write(move |tx| jobs::poll_later(tx, id, Some(&why), now, next))
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn send_icecast(&self, s: &IcecastSettings, job: Due) -> anyhow::Result<()> {
        let id = job.id;
        let mp3 = match self.audio(&job.script, s.kbps).await {
            Ok(a) => a,
            Err(e) => {
                // Perhaps passing (a full disk, a killed encoder): try again; the deadline
                // reports the terminals if it lasts.
                let now = self.clock.now();
                let why = format!("no audio for the IP speakers: {e:#}");
                tracing::error!(job = id, "{why}");
                let wait = backoff(job.attempts);
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
                let r = icecast::stream(&s, &http, &mount, &mp3).await;
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
        let wait = backoff(job.attempts);
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

/// 2, 4, 8 … seconds, at most a minute.
fn backoff(attempts: i64) -> SignedDuration {
    SignedDuration::from_secs(2i64.saturating_mul(1 << attempts.clamp(0, 5)).min(60))
}

/// The instruction's severity: 1 (red) … 4 (blue).
fn severity(tier: &str) -> u8 {
    match tier {
        "red" => 1,
        "orange" => 2,
        "yellow" => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_unique_and_sixteen_digits() {
        let s = Sequence::default();
        let a: Vec<i64> = (0..1000).map(|_| s.next()).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(b.len(), 1000);
        assert!(a.iter().all(|n| format!("{n:016}").len() == 16));
        assert_eq!(backoff(0), SignedDuration::from_secs(2));
        assert_eq!(backoff(10), SignedDuration::from_secs(60));
        assert_eq!(severity("red"), 1);
    }
}
