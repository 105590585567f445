//! The poller: one task per feed, so a slow or broken feed never delays another.
//!
//! Each task repeats: wait for the next poll (on the [`Clock`]), fetch conditionally, let the
//! feed's [`FeedKind`] read the document, fetch the documents it links to, and commit what is
//! new — inbox entries, keys seen, raw documents — in **one** transaction before handing it
//! to the correlate stage over a channel. A crash between commit and hand-off loses nothing:
//! [`Poller::run`] first re-delivers whatever the inbox still holds unconsumed.
//!
//! Failures back off exponentially with jitter (backon), starting at `backoff_min` and never
//! beyond `backoff_max`. Silence is measured on the monotonic clock from the last success; at
//! `gap_intervals` × interval the feed raises a gap alarm — an inbox entry like any other, so
//! it reaches the duty officer by the same path as a warning — and a recovery notice when it
//! next succeeds. Both are in the audit trail.
//!
//! Polls that bring nothing new are by far the most common and are written to the store in one
//! batch per second ([`Poller::flush_health`]); everything that carries items is committed
//! before it is handed on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::fetch::{Conditional, FetchError, Fetcher, Validators};
use super::state::{self, HealthDelta};
use super::{AlarmState, FeedAlarm, FeedError, FeedKind, Item, Link, Observation};
use crate::runtime::{Awake, Clock, Shutdown};
use crate::store::{Store, StoreError, audit};

/// One feed to poll.
#[derive(Clone)]
pub struct FeedSpec {
    /// Id (unique).
    pub id: String,
    /// What reads its documents.
    pub kind: Arc<dyn FeedKind>,
    /// Where it is.
    pub url: String,
    /// Time between polls.
    pub interval: Duration,
    /// Intervals without a success before the gap alarm.
    pub gap_intervals: u32,
    /// Largest document accepted.
    pub max_bytes: usize,
}

impl std::fmt::Debug for FeedSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSpec")
            .field("id", &self.id)
            .field("kind", &self.kind.name())
            .field("url", &self.url)
            .field("interval", &self.interval)
            .field("gap_intervals", &self.gap_intervals)
            .finish()
    }
}

impl FeedSpec {
    /// The silence after which the gap alarm is raised.
    pub fn gap_after(&self) -> Duration {
        self.interval.saturating_mul(self.gap_intervals)
    }

    /// The enabled feeds of `[feeds]`; CAP documents are read within `limits`.
    pub fn all(feeds: &super::FeedsSettings, limits: crate::cap::Limits) -> Vec<FeedSpec> {
        feeds
            .source
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| {
                let kind: Arc<dyn FeedKind> = match (s.kind.as_str(), &s.stations) {
                    ("sl323", _) => Arc::new(super::sl323::Sl323Feed {
                        query: s
                            .query
                            .clone()
                            .unwrap_or_else(|| super::sl323::DEFAULT_QUERY.into()),
                    }),
                    ("sl651", Some(path)) => {
                        // Checked by `config check` and at start; here a table that became
                        // unreadable leaves every station unknown, loudly.
                        let stations = std::fs::read_to_string(path)
                            .map_err(|e| e.to_string())
                            .and_then(|t| super::sl651::stations_csv(&t));
                        match stations {
                            Ok(stations) => Arc::new(super::sl651::Sl651Feed { stations }),
                            Err(e) => {
                                tracing::error!(feed = %s.id, "station table {path}: {e}");
                                return None;
                            }
                        }
                    }
                    _ => super::kind(&s.kind, limits)?,
                };
                Some(FeedSpec {
                    id: s.id.clone(),
                    kind,
                    url: s.url.clone(),
                    interval: Duration::from_secs(s.interval_secs.unwrap_or(feeds.interval_secs)),
                    gap_intervals: s.gap_intervals.unwrap_or(feeds.gap_intervals),
                    max_bytes: limits.max_bytes,
                })
            })
            .collect()
    }
}

/// Settings shared by every feed task.
#[derive(Debug, Clone)]
pub struct Settings {
    /// First retry delay after a failure.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Linked documents fetched at once, per feed.
    pub follow_concurrency: usize,
    /// First polls spread over this much time (at most one interval).
    pub start_spread: Duration,
    /// How often batched health is written.
    pub flush_every: Duration,
    /// Time zone of the stamps written.
    pub tz: jiff::tz::TimeZone,
    /// Whether a delivery keeps a simulated clock waiting until its consumer drops it: on
    /// for replays whose consumer is the correlate stage; off where a test drains the channel
    /// itself after moving the clock. (Nothing for the system clock either way.)
    pub hold_clock: bool,
    /// Seed of the retry jitter, mixed with each feed's id: set by drills so that a replay at
    /// full speed retries at the same simulated moments every time (`None`: random, as a live
    /// daemon wants, so many offices' retries do not fall into step).
    pub jitter_seed: Option<u64>,
}

impl Settings {
    /// From `[feeds]`, stamping in the office's time zone.
    pub fn new(feeds: &super::FeedsSettings, tz: jiff::tz::TimeZone) -> Settings {
        Settings {
            backoff_min: Duration::from_secs(feeds.backoff_min_secs),
            backoff_max: Duration::from_secs(feeds.backoff_max_secs),
            follow_concurrency: feeds.follow_concurrency,
            start_spread: Duration::from_secs(feeds.start_spread_secs),
            flush_every: Duration::from_secs(1),
            tz,
            hold_clock: false,
            jitter_seed: None,
        }
    }
}

/// What the correlate stage receives: an inbox entry to act on and then mark consumed
/// ([`state::consume`]) in the transaction that records what it made of it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Inbox id.
    pub inbox: i64,
    /// Feed id.
    pub feed: String,
    /// The item's key.
    pub key: String,
    /// The observation.
    pub observation: Observation,
    /// Keeps a simulated clock from moving on until the consumer has dropped the delivery
    /// (done with it): a replay's warnings then come at the simulated time a live run's
    /// would. Nothing for the system clock.
    pub busy: Arc<Awake>,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Fetching failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The document was fetched but is not usable.
    #[error("{url}: {error}")]
    Format {
        /// Where.
        url: String,
        /// What.
        error: FeedError,
    },
    /// The store refused.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollReport {
    /// 304, or a body identical to the last one.
    pub unchanged: bool,
    /// Inbox ids of the new items, in order.
    pub new_items: Vec<i64>,
    /// Linked documents fetched.
    pub followed: usize,
    /// Linked documents that could not be fetched or read (retried next poll).
    pub link_failures: Vec<String>,
    /// Problems that did not stop anything.
    pub problems: Vec<String>,
}

/// A feed's memory between polls.
#[derive(Debug, Default)]
struct FeedRun {
    validators: Validators,
    last_digest: Option<String>,
    /// Some links failed last time: fetch the index again in full.
    links_pending: bool,
    failures: u32,
    last_error: Option<String>,
    last_success: Option<String>,
    gap_raised: bool,
}

/// Polls feeds and hands what they publish to the correlate stage.
pub struct Poller {
    store: Store,
    fetcher: Arc<dyn Fetcher>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    out: mpsc::Sender<Delivery>,
    book: Mutex<HashMap<String, HealthDelta>>,
    /// Held for a whole flush, so a flush that finds the book empty still returns only after
    /// a concurrent one has written what it took.
    flushing: tokio::sync::Mutex<()>,
}

/// One line for the feed's health from what went wrong in a poll that succeeded: failed
/// links first (they are retried), then problems within documents.
fn problem_summary(report: &PollReport) -> Option<String> {
    let mut parts = Vec::new();
    match report.link_failures.as_slice() {
        [] => {}
        [one] => parts.push(one.clone()),
        many => parts.push(format!(
            "{} linked documents failed: {}",
            many.len(),
            first_few(many)
        )),
    }
    match report.problems.as_slice() {
        [] => {}
        [one] => parts.push(one.clone()),
        many => parts.push(format!("{} problems: {}", many.len(), first_few(many))),
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The first five messages, so a file with a thousand bad rows stays one readable line.
fn first_few(msgs: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = msgs[..msgs.len().min(SHOWN)].join("; ");
    if msgs.len() > SHOWN {
        s.push_str(&format!("; … {} more in the log", msgs.len() - SHOWN));
    }
    s
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A stable fraction in [0, 1) from a feed id, to spread first polls.
fn spread_fraction(id: &str) -> f64 {
    (feed_hash(id) >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a of a feed id: a stable number per feed (start spread, jitter seeds).
fn feed_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl Poller {
    /// A poller writing to `store` and handing on to `out`.
    pub fn new(
        store: Store,
        fetcher: Arc<dyn Fetcher>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        out: mpsc::Sender<Delivery>,
    ) -> Poller {
        Poller {
            store,
            fetcher,
            clock,
            settings,
            out,
            book: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    fn busy(&self) -> Awake {
        if self.settings.hold_clock {
            self.clock.awake()
        } else {
            Awake::none()
        }
    }

    fn stamp(&self) -> String {
        crate::store::stamp(self.clock.now())
    }

    /// A time as an alarm tells it to people: in the office's zone, with its offset (a stored
    /// stamp, which is UTC, converted; the text as it was when it does not parse).
    fn local(&self, t: Timestamp) -> String {
        let z = t.to_zoned(self.settings.tz.clone());
        let t = t.round(jiff::Unit::Millisecond).unwrap_or(t);
        t.display_with_offset(z.offset()).to_string()
    }

    fn note(&self, feed: &str, f: impl FnOnce(&mut HealthDelta)) {
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        match book.get_mut(feed) {
            Some(d) => f(d),
            None => f(book.entry(feed.to_string()).or_default()),
        }
    }

    /// Write the batched health of every feed in one transaction.
    pub async fn flush_health(&self) -> Result<(), StoreError> {
        let _flushing = self.flushing.lock().await;
        let batch: Vec<(String, HealthDelta)> = {
            let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            book.drain().collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let result = self
            .store
            .write(move |tx| {
                for (feed, d) in &batch {
                    state::apply(tx, feed, d)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "feed health could not be written");
        }
        result
    }

    /// Make sure every feed has its row in the store.
    pub async fn register(&self, specs: &[FeedSpec]) -> Result<(), StoreError> {
        let rows: Vec<(String, String, String)> = specs
            .iter()
            .map(|s| (s.id.clone(), s.kind.name().to_string(), s.url.clone()))
            .collect();
        self.store
            .write(move |tx| {
                for (id, kind, url) in &rows {
                    state::register(tx, id, kind, url)?;
                }
                Ok(())
            })
            .await
    }

    /// Hand on everything the inbox holds unconsumed (after a restart: what was committed but
    /// not yet acted on). Returns how many.
    pub async fn redeliver(&self) -> Result<usize, StoreError> {
        let mut after = 0;
        let mut n = 0;
        loop {
            let (batch, unreadable) = self
                .store
                .read(move |c| Ok(state::pending_after(c, after, 500)?))
                .await?;
            for (id, why) in &unreadable {
                after = after.max(*id);
                tracing::error!("{why}; left in the inbox, not handed on");
            }
            if batch.is_empty() && unreadable.is_empty() {
                return Ok(n);
            }
            for p in batch {
                after = after.max(p.id);
                n += 1;
                let d = Delivery {
                    inbox: p.id,
                    feed: p.feed,
                    key: p.key,
                    observation: p.observation,
                    busy: Arc::new(self.busy()),
                };
                if self.out.send(d).await.is_err() {
                    return Ok(n);
                }
            }
        }
    }

    /// The feeds' memory as the store has it (validators, failures, whether a gap alarm is
    /// up), read in one go.
    async fn load_all(&self) -> Result<HashMap<String, FeedRun>, StoreError> {
        let rows = self.store.read(|c| Ok(state::all_health(c)?)).await?;
        Ok(rows
            .into_iter()
            .map(|h| {
                let run = FeedRun {
                    validators: Validators {
                        etag: h.etag,
                        last_modified: h.last_modified,
                    },
                    failures: u32::try_from(h.failures).unwrap_or(u32::MAX),
                    last_error: h.last_error,
                    last_success: h.last_success,
                    gap_raised: h.gap_since.is_some(),
                    ..FeedRun::default()
                };
                (h.feed, run)
            })
            .collect())
    }

    /// Poll one feed once, outside any schedule (tests, `feeds check`): fetch, read, follow
    /// links, commit and hand on what is new. Uses and updates the validators in the store.
    pub async fn poll_once(&self, spec: &FeedSpec) -> Result<PollReport, PollError> {
        self.register(std::slice::from_ref(spec)).await?;
        let mut run = self.load_all().await?.remove(&spec.id).unwrap_or_default();
        let r = self.poll(spec, &mut run).await;
        self.flush_health().await?;
        r
    }

    async fn poll(&self, spec: &FeedSpec, run: &mut FeedRun) -> Result<PollReport, PollError> {
        let at = self.stamp();
        self.note(&spec.id, |d| d.attempt(&at));
        let result = self.poll_inner(spec, run, &at).await;
        match &result {
            Ok(report) => {
                run.failures = 0;
                run.last_success = Some(at.clone());
                self.note(&spec.id, |d| {
                    d.success(&at);
                    if let Some(msg) = problem_summary(report) {
                        d.problem(&at, &msg);
                    }
                });
            }
            Err(e) => {
                run.failures = run.failures.saturating_add(1);
                let msg = e.to_string();
                run.last_error = Some(msg.clone());
                self.note(&spec.id, |d| d.failure(&at, &msg));
            }
        }
        result
    }

    async fn poll_inner(
        &self,
        spec: &FeedSpec,
        run: &mut FeedRun,
        at: &str,
    ) -> Result<PollReport, PollError> {
        let fetched = match spec.kind.sql_query() {
            // A database table (SL 323), not a URL.
            Some(q) => {
                super::sl323::fetch(
                    &spec.url,
                    q,
                    &run.validators,
                    self.clock.now(),
                    spec.max_bytes,
                )
                .await?
            }
            None => {
                self.fetcher
                    .fetch(&spec.url, &run.validators, spec.max_bytes)
                    .await?
            }
        };
        let (bytes, validators) = match fetched {
            Conditional::NotModified => {
                return Ok(PollReport {
                    unchanged: true,
                    ..PollReport::default()
                });
            }
            Conditional::Body { bytes, validators } => (bytes, validators),
        };
        let dig = digest(&bytes);
        if !run.links_pending && run.last_digest.as_deref() == Some(dig.as_str()) {
            self.remember_validators(spec, run, validators);
            return Ok(PollReport {
                unchanged: true,
                ..PollReport::default()
            });
        }
        let received = self.clock.now();
        let (bytes, parsed) = super::parse_off_workers(
            spec.kind.clone(),
            spec.id.clone(),
            spec.url.clone(),
            bytes,
            dig.clone(),
            received,
        )
        .await;
        let parsed = parsed.map_err(|error| PollError::Format {
            url: spec.url.clone(),
            error,
        })?;
        for sk in &parsed.skipped {
            tracing::info!(feed = %spec.id, "{} not used: {}", sk.what, sk.why);
        }
        let mut report = PollReport {
            problems: parsed.problems,
            ..PollReport::default()
        };
        let mut docs = vec![Fetchedoc {
            url: spec.url.clone(),
            digest: dig.clone(),
            body: bytes,
            link_key: None,
            items: parsed.items,
            problems: Vec::new(),
        }];

        // Follow links not yet seen, a few at a time.
        let links = self.unseen_links(spec, parsed.follow).await?;
        report.followed = links.len();
        for outcome in self.follow(spec, links, received).await {
            match outcome {
                Ok(mut d) => {
                    report.problems.append(&mut d.problems);
                    docs.push(d);
                }
                Err(msg) => report.link_failures.push(msg),
            }
        }
        // Said once per poll that found them, bounded so one broken file cannot flood the log.
        const LOGGED: usize = 20;
        let said = report.link_failures.iter().chain(&report.problems);
        for msg in said.clone().take(LOGGED) {
            tracing::warn!(feed = %spec.id, "{msg}");
        }
        if said.clone().count() > LOGGED {
            tracing::warn!(feed = %spec.id, "… and {} more problems", said.count() - LOGGED);
        }

        // Alerts in time order, so that an Update in the same poll as its Alert finds it.
        for d in &mut docs {
            d.items.sort_by_key(|i| match &i.observation {
                Observation::Alert(a) => Some(a.alert.sent.timestamp()),
                _ => None,
            });
        }
        docs[1..].sort_by_key(|d| {
            d.items
                .iter()
                .filter_map(|i| match &i.observation {
                    Observation::Alert(a) => Some(a.alert.sent.timestamp()),
                    _ => None,
                })
                .min()
        });

        let feed = spec.id.clone();
        let at_owned = at.to_string();
        let accepted = self
            .store
            .write(move |tx| {
                let mut out = Vec::new();
                for d in docs {
                    let new = state::accept(tx, &feed, &at_owned, d.items)?;
                    if !new.is_empty() {
                        state::keep_document(tx, &d.digest, &feed, &d.url, &at_owned, &d.body)?;
                    }
                    if let Some(k) = &d.link_key {
                        state::mark_seen(tx, &feed, k, &at_owned)?;
                    }
                    out.extend(new);
                }
                Ok(out)
            })
            .await?;
        run.links_pending = !report.link_failures.is_empty();
        run.last_digest = Some(dig);
        if run.links_pending {
            // Fetch the index in full next time, so the failed links are tried again.
            run.validators = Validators::default();
            self.note(&spec.id, |d| d.validators = Some((None, None)));
        } else {
            self.remember_validators(spec, run, validators);
        }
        for (id, item) in accepted {
            report.new_items.push(id);
            self.hand_on(&spec.id, id, item).await;
        }
        Ok(report)
    }

    fn remember_validators(&self, spec: &FeedSpec, run: &mut FeedRun, v: Validators) {
        if v != run.validators {
            self.note(&spec.id, |d| {
                d.validators = Some((v.etag.clone(), v.last_modified.clone()))
            });
            run.validators = v;
        }
    }

    /// An item a listening feed received (an SL 651 frame): into the inbox with its raw
    /// bytes, marked seen (a station sending the same report again is not counted twice), and
    /// handed on, as a poll's items are. Returns whether it was new.
    pub(crate) async fn push(
        &self,
        feed: &str,
        item: Item,
        body: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let at = self.stamp();
        let (feed_id, at2, dig) = (feed.to_string(), at.clone(), digest(&body));
        let new = self
            .store
            .write(move |tx| {
                let new = state::accept(tx, &feed_id, &at2, vec![item])?;
                if !new.is_empty() {
                    state::keep_document(tx, &dig, &feed_id, "tcp", &at2, &body)?;
                }
                Ok(new)
            })
            .await?;
        self.note(feed, |d| {
            d.attempt(&at);
            d.success(&at);
        });
        let any = !new.is_empty();
        for (id, item) in new {
            self.hand_on(feed, id, item).await;
        }
        Ok(any)
    }

    /// Count what a listening feed refused, and say so.
    pub(crate) async fn refuse(&self, feed: &str, reason: &'static str, detail: String) {
        tracing::warn!(feed = %feed, reason, "refused: {detail}");
        let (feed_id, at) = (feed.to_string(), self.stamp());
        let r = self
            .store
            .write(move |tx| Ok(state::refused(tx, &feed_id, reason, &at, &detail)?))
            .await;
        if let Err(e) = r {
            tracing::error!(feed = %feed, "cannot count a refused frame: {e}");
        }
    }

    /// The clock the poller stamps with.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    async fn hand_on(&self, feed: &str, inbox: i64, item: Item) {
        let d = Delivery {
            inbox,
            feed: feed.to_string(),
            key: item.key,
            observation: item.observation,
            busy: Arc::new(self.busy()),
        };
        // A closed channel means we are shutting down; the entry stays pending in the inbox
        // and is re-delivered at the next start.
        let _ = self.out.send(d).await;
    }

    async fn unseen_links(
        &self,
        spec: &FeedSpec,
        links: Vec<Link>,
    ) -> Result<Vec<Link>, StoreError> {
        if links.is_empty() {
            return Ok(links);
        }
        let feed = spec.id.clone();
        self.store
            .read(move |c| {
                let mut keep = Vec::new();
                let mut keys = std::collections::HashSet::new();
                for l in links {
                    let k = l.key();
                    if keys.insert(k.clone()) && !state::is_seen(c, &feed, &k)? {
                        keep.push(l);
                    }
                }
                Ok(keep)
            })
            .await
    }

    async fn follow(
        &self,
        spec: &FeedSpec,
        links: Vec<Link>,
        received: jiff::Timestamp,
    ) -> Vec<Result<Fetchedoc, String>> {
        let mut results: Vec<Option<Result<Fetchedoc, String>>> =
            (0..links.len()).map(|_| None).collect();
        let mut set = tokio::task::JoinSet::new();
        let mut queue = links.into_iter().enumerate();
        let limit = self.settings.follow_concurrency.max(1);
        loop {
            while set.len() < limit {
                let Some((i, link)) = queue.next() else { break };
                let fetcher = self.fetcher.clone();
                let kind = spec.kind.clone();
                let feed = spec.id.clone();
                let max = spec.max_bytes;
                set.spawn(async move {
                    (
                        i,
                        fetch_linked(fetcher, kind, feed, link, max, received).await,
                    )
                });
            }
            match set.join_next().await {
                Some(Ok((i, r))) => results[i] = Some(r),
                Some(Err(e)) => tracing::error!(feed = %spec.id, "a link fetch task failed: {e}"),
                None => break,
            }
        }
        results.into_iter().flatten().collect()
    }

    /// Run every feed until `shutdown` turns true: register the feeds, re-deliver what the
    /// inbox holds, then poll each feed on its own task and flush health every second. On
    /// shutdown, tasks stop between polls (or abandon a poll in flight: whatever it committed
    /// stays in the inbox) and health is flushed once more.
    ///
    /// The poller counts as busy (see [`Clock::awake`]) from the moment this is called, so a
    /// simulated clock does not move before the feeds are running.
    pub fn run(
        self: Arc<Self>,
        specs: Vec<FeedSpec>,
        mut shutdown: Shutdown,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
        let starting = self.clock.awake();
        async move {
            self.register(&specs).await?;
            let n = self.redeliver().await?;
            if n > 0 {
                tracing::info!("re-delivered {n} inbox entries not yet acted on");
            }
            let mut runs = self.load_all().await?;
            let mut tasks = tokio::task::JoinSet::new();
            for spec in specs {
                let me = self.clone();
                let rx = shutdown.clone();
                let run = runs.remove(&spec.id).unwrap_or_default();
                if spec.url.starts_with("tcp://") {
                    // A listening feed: the pipeline runs its listener (sl651::listen).
                    continue;
                }
                let awake = self.clock.awake();
                tasks.spawn(async move { me.run_feed(spec, run, awake, rx).await });
            }
            drop(starting);
            let flusher = {
                let me = self.clone();
                let mut rx = shutdown.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(me.settings.flush_every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => { let _ = me.flush_health().await; }
                            _ = rx.recv() => break,
                        }
                    }
                })
            };
            shutdown.recv().await;
            while let Some(r) = tasks.join_next().await {
                if let Err(e) = r {
                    tracing::error!("a feed task failed: {e}");
                }
            }
            let _ = flusher.await;
            self.flush_health().await?;
            Ok(())
        }
    }

    fn backoff(&self, spec: &FeedSpec) -> backon::ExponentialBackoff {
        let min = self
            .settings
            .backoff_min
            .min(spec.interval)
            .max(Duration::from_millis(10));
        // Jitter adds up to 100 %, so the undisturbed delay stops at half the maximum.
        let max = (self.settings.backoff_max / 2).max(min);
        let b = backon::ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        match self.settings.jitter_seed {
            Some(seed) => b.with_jitter_seed(seed ^ feed_hash(&spec.id)).build(),
            None => b.build(),
        }
    }

    async fn run_feed(
        self: Arc<Self>,
        spec: FeedSpec,
        mut run: FeedRun,
        awake: Awake,
        mut shutdown: Shutdown,
    ) {
        // Busy (for a simulated clock) except while waiting for the next poll.
        let mut awake = Some(awake);
        let clock = self.clock.clone();
        let start = clock.elapsed();
        let mut last_ok = start;
        let spread = self.settings.start_spread.min(spec.interval);
        let mut next = start + spread.mul_f64(spread_fraction(&spec.id));
        let mut backoff: Option<backon::ExponentialBackoff> = None;
        tracing::info!(feed = %spec.id, kind = spec.kind.name(), url = %spec.url, "polling every {:?}", spec.interval);
        loop {
            let gap_at = last_ok + spec.gap_after();
            let wake = if run.gap_raised {
                next
            } else {
                next.min(gap_at)
            };
            let sleep = clock.sleep_until(wake);
            drop(awake.take());
            tokio::select! {
                woke = sleep => awake = Some(woke),
                _ = shutdown.recv() => return,
            }
            if !run.gap_raised
                && clock.elapsed() >= gap_at
                && self
                    .raise_gap(&spec, &Snapshot::of(&run), clock.elapsed() - last_ok)
                    .await
            {
                run.gap_raised = true;
            }
            if clock.elapsed() < next {
                continue;
            }
            let started = clock.elapsed();
            // The poll runs to its end (bounded by the HTTP timeouts), but the gap alarm does
            // not wait for a hanging server: it is raised from what was known before the poll.
            let before = Snapshot::of(&run);
            let mut gap_pending = !run.gap_raised && started < gap_at;
            let mut raised_in_flight = false;
            let outcome = {
                let poll = self.poll(&spec, &mut run);
                tokio::pin!(poll);
                let gap_sleep = clock.sleep_until(gap_at);
                tokio::pin!(gap_sleep);
                loop {
                    tokio::select! {
                        r = &mut poll => break Some(r),
                        _ = &mut gap_sleep, if gap_pending => {
                            gap_pending = false;
                            let silent = clock.elapsed().saturating_sub(last_ok);
                            raised_in_flight = self.raise_gap(&spec, &before, silent).await;
                        }
                        _ = shutdown.recv() => break None,
                    }
                }
            };
            if raised_in_flight {
                run.gap_raised = true;
            }
            let Some(outcome) = outcome else { return };
            let now = clock.elapsed();
            match outcome {
                Ok(report) => {
                    backoff = None;
                    if run.gap_raised
                        && self
                            .clear_gap(&spec, &Snapshot::of(&run), now.saturating_sub(last_ok))
                            .await
                    {
                        run.gap_raised = false;
                    }
                    last_ok = now;
                    next = (started + spec.interval).max(now);
                    if !report.new_items.is_empty() {
                        tracing::info!(feed = %spec.id, "{} new item(s)", report.new_items.len());
                    }
                }
                Err(e) => {
                    let delay = backoff
                        .get_or_insert_with(|| self.backoff(&spec))
                        .next()
                        .unwrap_or(self.settings.backoff_max)
                        .min(self.settings.backoff_max);
                    tracing::warn!(feed = %spec.id, failures = run.failures, "poll failed: {e}; retrying in {:.1} s", delay.as_secs_f64());
                    // A gap reached by now is raised at the top of the loop, which wakes at
                    // the earlier of the retry and the gap deadline.
                    next = now + delay;
                }
            }
        }
    }

    /// Raise the gap alarm; returns whether it was recorded.
    async fn raise_gap(&self, spec: &FeedSpec, run: &Snapshot, silent: Duration) -> bool {
        tracing::error!(
            feed = %spec.id,
            "FEED GAP: no successful poll for {} s ({} intervals); last error: {}",
            silent.as_secs(),
            spec.gap_intervals,
            run.last_error.as_deref().unwrap_or("none")
        );
        self.commit_alarm(spec, self.alarm(spec, run, AlarmState::Gap, silent))
            .await
    }

    /// Announce recovery; returns whether it was recorded.
    async fn clear_gap(&self, spec: &FeedSpec, run: &Snapshot, silent: Duration) -> bool {
        tracing::info!(feed = %spec.id, "feed recovered after {} s of silence", silent.as_secs());
        self.commit_alarm(spec, self.alarm(spec, run, AlarmState::Recovered, silent))
            .await
    }

    fn alarm(
        &self,
        spec: &FeedSpec,
        run: &Snapshot,
        state: AlarmState,
        silent: Duration,
    ) -> FeedAlarm {
        FeedAlarm {
            feed: spec.id.clone(),
            kind: spec.kind.name().to_string(),
            url: spec.url.clone(),
            state,
            at: self.local(self.clock.now()),
            last_success: run.last_success.as_ref().map(|s| {
                s.parse::<Timestamp>()
                    .map(|t| self.local(t))
                    .unwrap_or_else(|_| s.clone())
            }),
            silent_secs: silent.as_secs(),
            interval_secs: spec.interval.as_secs(),
            failures: run.failures,
            last_error: run.last_error.clone(),
        }
    }

    /// Commit an alarm to the inbox and the audit trail, then hand it on. Returns whether it
    /// was committed (if not, it is tried again at the next check).
    async fn commit_alarm(&self, spec: &FeedSpec, alarm: FeedAlarm) -> bool {
        let feed = spec.id.clone();
        let tz = self.settings.tz.clone();
        let now = self.clock.now();
        let state_name = match alarm.state {
            AlarmState::Gap => "gap",
            AlarmState::Recovered => "recovered",
        };
        let key = format!("alarm|{state_name}|{}", alarm.at);
        let at_text = alarm.at.clone();
        let a = alarm.clone();
        let r = self
            .store
            .write(move |tx| {
                state::set_gap(
                    tx,
                    &feed,
                    matches!(a.state, AlarmState::Gap).then_some(a.at.as_str()),
                )?;
                audit::append(
                    tx,
                    &audit::Entry {
                        at: now.to_zoned(tz),
                        actor: "feeds".into(),
                        kind: format!("feed.{state_name}"),
                        subject: feed.clone(),
                        detail: serde_json::to_value(&a)?,
                    },
                )?;
                let observation = Observation::FeedAlarm(a);
                let id = state::enqueue(tx, &feed, &key, &at_text, &observation)?;
                Ok((id, Item { key, observation }))
            })
            .await;
        match r {
            Ok((id, item)) => {
                self.hand_on(&spec.id, id, item).await;
                true
            }
            Err(e) => {
                tracing::error!(feed = %spec.id, "the {state_name} alarm could not be recorded: {e}");
                false
            }
        }
    }
}

/// What an alarm reports about a feed, taken before a poll that may still be running.
#[derive(Debug, Clone)]
struct Snapshot {
    failures: u32,
    last_error: Option<String>,
    last_success: Option<String>,
}

impl Snapshot {
    fn of(run: &FeedRun) -> Snapshot {
        Snapshot {
            failures: run.failures,
            last_error: run.last_error.clone(),
            last_success: run.last_success.clone(),
        }
    }
}

/// A fetched document with what it yielded.
struct Fetchedoc {
    url: String,
    digest: String,
    body: Vec<u8>,
    /// For a linked document: the key that marks the link done.
    link_key: Option<String>,
    items: Vec<Item>,
    /// What did not stop the document being read (a bad row, an unreadable inline alert).
    problems: Vec<String>,
}

async fn fetch_linked(
    fetcher: Arc<dyn Fetcher>,
    kind: Arc<dyn FeedKind>,
    feed: String,
    link: Link,
    max_bytes: usize,
    received: jiff::Timestamp,
) -> Result<Fetchedoc, String> {
    let none = Validators::default();
    let bytes = match fetcher.fetch(&link.url, &none, max_bytes).await {
        Ok(Conditional::Body { bytes, .. }) => bytes,
        Ok(Conditional::NotModified) => {
            return Err(format!(
                "{}: HTTP 304 to an unconditional request",
                link.url
            ));
        }
        Err(e) => return Err(format!("linked document {e}")),
    };
    let dig = digest(&bytes);
    let (bytes, parsed) =
        super::parse_off_workers(kind, feed, link.url.clone(), bytes, dig.clone(), received).await;
    let parsed = parsed.map_err(|e| format!("linked document {}: {e}", link.url))?;
    let mut problems = parsed.problems;
    if !parsed.follow.is_empty() {
        // Links are followed one level deep: a second index would multiply the fetches of
        // every poll, so it has to be configured as a feed of its own.
        problems.push(format!(
            "linked document {} is itself an index with {} links, which are not followed; \
             configure it as a feed of its own",
            link.url,
            parsed.follow.len()
        ));
    }
    Ok(Fetchedoc {
        url: link.url.clone(),
        digest: dig,
        body: bytes,
        link_key: Some(link.key()),
        items: parsed.items,
        problems,
    })
}
