//! The correlate engine: observations in, decisions and warnings out, everything recorded.
//!
//! [`Engine`] is synchronous and owns no I/O: [`Engine::observe`] feeds every rule,
//! [`Engine::evaluate`] asks them where the danger is now and steps each lineage, building
//! the CAP messages and targets of every decision; [`commit`] writes those, with the inbox
//! entries they consumed, in one transaction. [`run`] is the async task around it that the
//! daemon and replays use: it takes deliveries from the feeds, re-evaluates on a tick (holds
//! and windows move with time, not only with new observations), and hands each warning's
//! [`Targets`] on to dispatch.
//!
//! Observing is idempotent (a batch seen twice changes nothing), so at start the engine
//! rebuilds its memory — rolling rain, tracks, alerts in force — by re-reading the last
//! [`MEMORY_HOURS`] of the inbox, consumed or not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::store::sql::Tx;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;

use super::assess::{Assessment, Ctx, Rule};
use super::feed_gap::FeedGapRule;
use super::flash_flood::FlashFloodRule;
use super::geo_hazard::GeoHazardRule;
use super::lifecycle::{self, Decision, Lineage, MessageKind};
use super::rain::RainBook;
use super::rainstorm::RainstormRule;
use super::rules::Rules;
use super::store as cstore;
use super::tier::{Hazard, Tier};
use super::typhoon::TyphoonRule;
use super::upstream::UpstreamRule;
use super::warning::{self, Contact, Issued, Issuer, Targets};
use super::wildfire::WildfireRule;
use crate::feeds::poller::Delivery;
use crate::feeds::{Observation, state as inbox};
use crate::registry::{Registry, Shared};
use crate::runtime::{Clock, Shutdown};
use crate::store::{Store, audit};

/// How far back the engine's memory reaches at start (rain windows, soil moisture).
pub const MEMORY_HOURS: i64 = 8 * 24;

/// The lineages in force and the references of their messages, as stored.
#[derive(Debug, Default)]
pub struct Snapshot {
    lineages: Vec<Lineage>,
    refs: HashMap<String, Vec<String>>,
}

/// Read a [`Snapshot`] (`sender`: this office's CAP sender, for the references).
pub fn snapshot(conn: &crate::store::sql::Conn<'_>, sender: &str) -> anyhow::Result<Snapshot> {
    let mut s = Snapshot::default();
    for l in cstore::lineages(conn)? {
        let key = l.key();
        s.refs
            .insert(key.clone(), cstore::references(conn, &key, sender)?);
        s.lineages.push(l);
    }
    Ok(s)
}

/// One decision with everything it produced.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// `hazard:area`.
    pub lineage: String,
    /// The lineage as the message describes it (for a Cancel: as it stood, version bumped).
    pub state: Lineage,
    /// The state to keep (None: lifted).
    pub keep: Option<Lineage>,
    /// The decision.
    pub decision: Decision,
    /// The assessment's reason.
    pub reason: String,
    /// The observation that caused it.
    pub cause: Option<i64>,
    /// The CAP messages (none for internal warnings).
    pub issued: Vec<Issued>,
    /// For dispatch.
    pub targets: Targets,
}

/// What one evaluation produced.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Decisions, most urgent first.
    pub emitted: Vec<Emitted>,
    /// Lineages whose state moved without a message (hold timers).
    pub quiet: Vec<(String, Option<Lineage>)>,
    /// Decisions that could not be turned into a warning (said, retried next time).
    pub problems: Vec<String>,
}

/// The engine.
pub struct Engine {
    rules: Rules,
    issuer: Issuer,
    reg: Arc<Registry>,
    rain: RainBook,
    kinds: Vec<Box<dyn Rule>>,
    lineages: BTreeMap<String, Lineage>,
    refs: HashMap<String, Vec<String>>,
}

impl Engine {
    /// An engine with every rule, no memory and no lineages.
    pub fn new(rules: Rules, issuer: Issuer, reg: Arc<Registry>) -> Engine {
        let kinds: Vec<Box<dyn Rule>> = vec![
            Box::new(TyphoonRule::new()),
            Box::new(RainstormRule::default()),
            Box::new(FlashFloodRule::default()),
            Box::new(GeoHazardRule::new(&issuer.sender)),
            Box::new(WildfireRule::new()),
            Box::new(UpstreamRule::new(&issuer.sender)),
            Box::new(FeedGapRule::new(issuer.sender_code.get(..6).unwrap_or(""))),
        ];
        Engine {
            rules,
            issuer,
            reg,
            rain: RainBook::new(SignedDuration::from_hours(MEMORY_HOURS)),
            kinds,
            lineages: BTreeMap::new(),
            refs: HashMap::new(),
        }
    }

    /// Take up the lineages in force and their message history (from [`snapshot`]).
    pub fn restore(&mut self, s: Snapshot) {
        self.lineages = s.lineages.into_iter().map(|l| (l.key(), l)).collect();
        self.refs = s.refs;
    }

    /// The lineages in force.
    pub fn lineages(&self) -> impl Iterator<Item = &Lineage> {
        self.lineages.values()
    }

    /// The registry in use.
    pub fn registry(&self) -> &Registry {
        &self.reg
    }

    /// Take in one observation. Returns whether any rule was interested.
    pub fn observe(&mut self, obs: &Observation, inbox: i64) -> bool {
        if let Observation::Rain(batch) = obs {
            self.rain.add(batch, inbox);
            self.rain.index();
        }
        let mut any = false;
        for k in &mut self.kinds {
            any |= k.observe(obs, inbox, &self.reg);
        }
        any
    }

    /// Assess every rule at `now` and step every lineage.
    pub fn evaluate(&mut self, now: Timestamp) -> Evaluation {
        self.rain.prune(now);
        let mut held: HashMap<Hazard, HashMap<String, Tier>> = HashMap::new();
        for l in self.lineages.values() {
            for (id, h) in &l.places {
                held.entry(l.hazard).or_default().insert(id.clone(), h.tier);
            }
        }
        // One table of rolling sums for every rain-driven rule.
        let sums = if self.rain.gauges() > 0 {
            let mut windows: Vec<f64> =
                self.rules.rainstorm.tiers.iter().map(|t| t.hours).collect();
            windows.extend_from_slice(self.reg.threshold_windows());
            self.rain.table(now, &windows)
        } else {
            Default::default()
        };
        let ctx = Ctx {
            reg: &self.reg,
            rules: &self.rules,
            rain: &self.rain,
            sums: &sums,
            tz: &self.issuer.tz,
            held: &held,
        };
        let mut assessed: BTreeMap<String, Assessment> = BTreeMap::new();
        for k in &mut self.kinds {
            for a in k.assess(now, &ctx) {
                assessed.insert(lifecycle::key(a.hazard, &a.area), a);
            }
        }
        let mut keys: Vec<String> = assessed.keys().cloned().collect();
        keys.extend(
            self.lineages
                .keys()
                .filter(|k| !assessed.contains_key(*k))
                .cloned(),
        );
        let mut out = Evaluation::default();
        for key in keys {
            let prev = self.lineages.get(&key);
            let a = assessed.get(&key);
            let step = lifecycle::step(prev, a, now, &self.rules);
            let Some(decision) = step.decision else {
                let moved = match (&step.state, prev) {
                    (Some(a), Some(b)) => !a.same_but_words(b),
                    (None, None) => false,
                    _ => true,
                };
                if moved {
                    out.quiet.push((key.clone(), step.state.clone()));
                    match step.state {
                        Some(s) => self.lineages.insert(key, s),
                        None => self.lineages.remove(&key),
                    };
                }
                continue;
            };
            // What the message describes: the new state, or for a lift the last one.
            let state = match (&step.state, prev) {
                (Some(s), _) => s.clone(),
                (None, Some(p)) => {
                    let mut p = p.clone();
                    p.version += 1;
                    p.last_sent = now;
                    p.reason = a
                        .map(|a| a.reason.clone())
                        .unwrap_or_else(|| p.reason.clone());
                    p
                }
                (None, None) => continue,
            };
            let before = self.refs.get(&key).cloned().unwrap_or_default();
            let issued = if state.hazard == Hazard::FeedGap {
                Ok(Vec::new())
            } else {
                warning::build(
                    &self.reg,
                    &self.rules,
                    &self.issuer,
                    &state,
                    &decision,
                    &before,
                    now,
                )
            };
            let issued = match issued {
                Ok(i) => i,
                Err(e) => {
                    out.problems.push(format!("{key}: {e:#}"));
                    continue;
                }
            };
            let ids = issued.iter().map(|i| i.identifier.clone()).collect();
            let targets = warning::targets(&self.reg, &state, &decision, ids);
            match &step.state {
                Some(s) => {
                    self.lineages.insert(key.clone(), s.clone());
                    self.refs
                        .entry(key.clone())
                        .or_default()
                        .extend(issued.iter().map(|i| i.reference.clone()));
                }
                None => {
                    self.lineages.remove(&key);
                    self.refs.remove(&key);
                }
            }
            out.emitted.push(Emitted {
                lineage: key,
                reason: a
                    .map(|a| a.reason.clone())
                    .unwrap_or_else(|| state.reason.clone()),
                cause: a.and_then(|a| a.cause),
                keep: step.state,
                state,
                decision,
                issued,
                targets,
            });
        }
        // Bad news first: raises, then by tier.
        out.emitted.sort_by(|a, b| {
            b.decision
                .raises
                .cmp(&a.decision.raises)
                .then(b.state.tier.cmp(&a.state.tier))
        });
        out
    }
}

/// Write an evaluation and mark the inbox entries it consumed, in one transaction. Each
/// decision is also an audit entry (`warning.issued` / `warning.updated` / `warning.lifted`).
pub fn commit(
    tx: &Tx<'_>,
    ev: &Evaluation,
    consumed: &[i64],
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
    hook: Option<&DecisionHook>,
) -> anyhow::Result<()> {
    let at = crate::store::stamp(now);
    for (key, state) in &ev.quiet {
        cstore::put_lineage(tx, key, state.as_ref(), &at)?;
    }
    for e in &ev.emitted {
        cstore::put_lineage(tx, &e.lineage, e.keep.as_ref(), &at)?;
        let id = cstore::record_decision(
            tx,
            &e.lineage,
            &e.decision,
            &e.reason,
            e.cause,
            &e.targets,
            &at,
        )?;
        if let Some(h) = hook {
            (h.0)(tx, id, &e.targets, now)?;
        }
        for i in &e.issued {
            let sent = crate::cap::model::CapDateTime::from_timestamp(i.sent, tz.to_offset(i.sent));
            let expires = i.expires.map(|x| {
                crate::cap::model::CapDateTime::from_timestamp(x, tz.to_offset(x)).to_string()
            });
            let tier = (e.decision.send != MessageKind::Cancel).then(|| e.state.tier.as_str());
            cstore::record_issued(
                tx,
                i,
                &e.state,
                id,
                tier,
                &sent.to_string(),
                expires.as_deref(),
            )?;
        }
        let kind = match e.decision.send {
            MessageKind::Alert => "warning.issued",
            MessageKind::Update => "warning.updated",
            MessageKind::Cancel => "warning.lifted",
        };
        audit::append(
            tx,
            &audit::Entry {
                at: now.to_zoned(tz.clone()),
                actor: "correlate".into(),
                kind: kind.into(),
                subject: e.lineage.clone(),
                detail: serde_json::json!({
                    "decision": id,
                    "tier": e.state.tier,
                    "version": e.state.version,
                    "changes": e.decision.changes,
                    "reason": e.reason,
                    "cause": e.cause,
                    "identifiers": e.issued.iter().map(|i| &i.identifier).collect::<Vec<_>>(),
                    "places": e.state.places.len(),
                }),
            },
        )?;
    }
    inbox::consume(tx, consumed, &at)?;
    Ok(())
}

/// The function a [`DecisionHook`] holds.
pub type DecisionFn = dyn Fn(&Tx<'_>, i64, &Targets, Timestamp) -> anyhow::Result<()> + Send + Sync;

/// Called inside the transaction that records each decision, with its id and targets: how a
/// later stage (dispatch's outbox) writes its rows atomically with the decision, without
/// correlate knowing that stage.
#[derive(Clone)]
pub struct DecisionHook(
    /// The function.
    pub Arc<DecisionFn>,
);

impl std::fmt::Debug for DecisionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionHook")
    }
}

/// How the correlate task runs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Re-evaluate at least this often (holds and windows move with time).
    pub tick: Duration,
    /// Shift of the ticks past `tick`'s grid in absolute time (and the least time from the
    /// start to the first tick). Zero for the daemon. A drill sets 15 s: its polls fall
    /// on whole minutes, and a tick at a poll's instant would evaluate before or after that
    /// poll's delivery as the scheduler pleases; off the poll's instant, it is always after.
    pub phase: Duration,
    /// The office's time zone.
    pub tz: jiff::tz::TimeZone,
    /// Runs in each decision's transaction (the dispatch outbox).
    pub on_decision: Option<DecisionHook>,
    /// The registry in force, when it can change while the task runs (the daemon): a new one
    /// is taken between two evaluations and the warnings in force are re-targeted.
    pub registry: Option<Shared>,
    /// Runs in the transaction that re-targets a warning in force.
    pub on_retarget: Option<RetargetHook>,
}

/// Rebuild the engine's memory as at start: the last [`MEMORY_HOURS`] of the inbox, consumed
/// or not, observed again (observing is idempotent), and the lineages in force with their
/// message history from the store.
async fn rebuild(engine: &mut Engine, store: &Store, clock: &dyn Clock) -> anyhow::Result<()> {
    let since = clock
        .now()
        .checked_sub(SignedDuration::from_hours(MEMORY_HOURS))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let since = crate::store::stamp(since);
    let sender = engine.issuer.sender.clone();
    let (memory, unreadable, snap) = store
        .read(move |c| {
            let (m, u) = inbox::received_since(c, &since)?;
            Ok((m, u, snapshot(c, &sender)?))
        })
        .await?;
    for (id, why) in unreadable {
        tracing::error!(inbox = id, "{why}; not part of the correlate memory");
    }
    for p in &memory {
        engine.observe(&p.observation, p.id);
    }
    let lineages = snap.lineages.len();
    engine.restore(snap);
    tracing::info!(
        observations = memory.len(),
        lineages,
        "correlate: memory rebuilt"
    );
    Ok(())
}

/// Take up a new registry between two evaluations: a fresh engine over it, its memory rebuilt
/// (rules keep what they derived from the registry, such as which villages a gauge covers),
/// then the warnings in force re-targeted in one transaction ([`retarget`]).
async fn take_registry(
    engine: &mut Engine,
    reg: Arc<Registry>,
    store: &Store,
    clock: &dyn Clock,
    settings: &RunSettings,
) -> anyhow::Result<()> {
    let mut fresh = Engine::new(engine.rules.clone(), engine.issuer.clone(), reg.clone());
    rebuild(&mut fresh, store, clock).await?;
    let lineages: Vec<Lineage> = fresh.lineages().cloned().collect();
    let (now, tz, hook) = (
        clock.now(),
        settings.tz.clone(),
        settings.on_retarget.clone(),
    );
    let changed = store
        .write(move |tx| retarget(tx, &reg, &lineages, now, &tz, hook.as_ref()))
        .await?;
    for r in &changed {
        tracing::warn!(
            lineage = %r.lineage,
            added = r.added.len(),
            removed = r.removed.len(),
            renumbered = r.renumbered.len(),
            "correlate: warning re-targeted to the new registry"
        );
    }
    *engine = fresh;
    Ok(())
}

/// When correlate next re-evaluates, as the clock's elapsed time: the first instant strictly
/// after now + `beyond` that lies `phase` past a multiple of `tick` in absolute time (on the
/// clock's calendar, not since its start). So the ticks of every run fall on the same grid: a node
/// that takes over from a leader, or a drill resumed after a crash, goes on with the old
/// schedule instead of starting its own (a resumed Lekima drill re-evaluated two minutes off
/// the whole run's, and folded two updates differently).
fn next_tick_after(
    clock: &dyn Clock,
    tick: Duration,
    phase: Duration,
    beyond: Duration,
) -> Duration {
    let period = tick.as_nanos() as i128;
    let from = clock.elapsed() + beyond;
    if period == 0 {
        return from;
    }
    let now = clock.now().as_nanosecond() + beyond.as_nanos() as i128;
    let into = (now - phase.as_nanos() as i128).rem_euclid(period);
    from + Duration::from_nanos((period - into) as u64)
}

/// Run the correlate stage until `shutdown`: rebuild memory, then take deliveries from the
/// feeds and re-evaluate on every batch and every tick; hand each decision's targets to
/// `out` after it is committed.
pub async fn run(
    mut engine: Engine,
    store: Store,
    clock: Arc<dyn Clock>,
    settings: RunSettings,
    mut rx: mpsc::Receiver<Delivery>,
    out: mpsc::Sender<Targets>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let starting = clock.awake();
    rebuild(&mut engine, &store, clock.as_ref()).await?;
    let mut registry = settings.registry.clone();

    // Not within `phase` of the start: the start evaluates the first polls' deliveries,
    // which stands for a tick there (and a drill keeps the schedule it always had).
    let mut next_tick = next_tick_after(
        clock.as_ref(),
        settings.tick,
        settings.phase,
        settings.phase,
    );
    // What kept a simulated clock still during the last turn (its wake-up, its deliveries):
    // released only once the next tick is registered, or the clock could move on in between
    // and skip that tick (a replay would then evaluate at other moments from run to run).
    // (The first turn holds the start's guard.)
    let mut held: (Option<crate::runtime::Awake>, Vec<Delivery>) = (Some(starting), Vec::new());
    loop {
        let sleep = clock.sleep_until(next_tick);
        drop(std::mem::take(&mut held));
        let mut batch: Vec<Delivery> = Vec::new();
        let awake = tokio::select! {
            d = rx.recv() => match d {
                Some(d) => { batch.push(d); None }
                None => return Ok(()),
            },
            woke = sleep => Some(woke),
            _ = changed(&mut registry) => {
                if let Some(reg) = registry.as_ref().map(Shared::current) {
                    let busy = clock.awake();
                    take_registry(&mut engine, reg, &store, clock.as_ref(), &settings).await?;
                    held.0 = Some(busy);
                }
                continue;
            }
            _ = shutdown.recv() => return Ok(()),
        };
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        // On a simulated clock, everything of this instant first: a feed still polling
        // (holding the clock) may deliver at the same instant, and evaluating before and after
        // it can decide otherwise than once on both (a yellow warning then its orange update,
        // against an orange one), so a replay would depend on how the machine scheduled its
        // tasks. Wait until every task but this one and the deliveries taken is idle, taking
        // in what arrives meanwhile (a poller may be waiting for room in the channel).
        // The system clock answers at once.
        loop {
            let held = usize::from(awake.is_some()) + holding(&batch);
            tokio::select! {
                biased;
                _ = clock.settled_but(held) => break,
                d = rx.recv() => match d {
                    Some(d) => batch.push(d),
                    None => break,
                },
                _ = shutdown.recv() => return Ok(()),
            }
        }
        if clock.elapsed() >= next_tick {
            next_tick = next_tick_after(
                clock.as_ref(),
                settings.tick,
                settings.phase,
                Duration::ZERO,
            );
        }
        let now = clock.now();
        let consumed: Vec<i64> = batch.iter().map(|d| d.inbox).collect();
        // Observing and evaluating is CPU work on what came from outside (a long track, a
        // big rain table, every site of the registry): it runs on the blocking pool, so the
        // web pages and the other stages keep their async workers meanwhile.
        // The batch comes back with the engine: each delivery holds a simulated clock still
        // until its decisions are committed.
        let (back, batch, ev) = tokio::task::spawn_blocking(move || {
            for d in &batch {
                engine.observe(&d.observation, d.inbox);
            }
            let ev = engine.evaluate(now);
            (engine, batch, ev)
        })
        .await
        .map_err(|e| anyhow::anyhow!("correlate: evaluation failed: {e}"))?;
        engine = back;
        for p in &ev.problems {
            tracing::error!("correlate: {p}");
        }
        if ev.emitted.is_empty() && ev.quiet.is_empty() && consumed.is_empty() {
            held = (awake, batch);
            continue;
        }
        let tz = settings.tz.clone();
        let targets: Vec<Targets> = ev.emitted.iter().map(|e| e.targets.clone()).collect();
        for e in &ev.emitted {
            tracing::warn!(
                lineage = %e.lineage,
                tier = %e.state.tier,
                version = e.state.version,
                send = ?e.decision.send,
                "{}",
                e.reason
            );
        }
        let ev = Arc::new(ev);
        let ev2 = ev.clone();
        let hook = settings.on_decision.clone();
        let written = store
            .write(move |tx| commit(tx, &ev2, &consumed, now, &tz, hook.as_ref()))
            .await;
        match written {
            Ok(()) => {
                for t in targets {
                    if out.send(t).await.is_err() {
                        tracing::warn!("correlate: dispatch is gone; warnings stay in the store");
                        break;
                    }
                }
            }
            Err(e) => {
                // Nothing was recorded and nothing consumed: forget what this evaluation did
                // and decide again from the store's state (the deliveries come back at the
                // next start; their effect is in the engine's memory already).
                tracing::error!("correlate: could not record decisions: {e}; retrying");
                let sender = engine.issuer.sender.clone();
                let snap = store.read(move |c| snapshot(c, &sender)).await?;
                engine.restore(snap);
            }
        }
        held = (awake, batch);
    }
}

/// How many distinct clock guards a batch of deliveries holds (a poll's deliveries may
/// share one).
fn holding(batch: &[Delivery]) -> usize {
    let mut seen: Vec<*const crate::runtime::Awake> = batch
        .iter()
        .filter(|d| d.busy.holds())
        .map(|d| Arc::as_ptr(&d.busy))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// Resolve when a new registry is published; never without one that can change.
async fn changed(registry: &mut Option<Shared>) {
    match registry {
        Some(r) => r.changed().await,
        None => std::future::pending().await,
    }
}

/// A warning in force whose people changed with a new registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Retarget {
    /// `hazard:area`.
    pub lineage: String,
    /// The recorded re-targeting (a `corr_decision` row, `send` = `Retarget`): the messages
    /// and calls it makes hang off it.
    pub decision: i64,
    /// The warning as it now stands: its last targets, with the new registry's people.
    pub targets: Targets,
    /// Persons (per place they answer for) the warning now calls and did not: they get the
    /// current warning and join its ladder.
    pub added: Vec<Contact>,
    /// Persons it called who no longer answer for the place: no longer chased.
    pub removed: Vec<Contact>,
    /// Persons whose number changed (with the new one): the next message uses it.
    pub renumbered: Vec<Contact>,
}

/// The function a [`RetargetHook`] holds.
pub type RetargetFn = dyn Fn(&Tx<'_>, &Retarget, Timestamp) -> anyhow::Result<()> + Send + Sync;

/// Called inside the transaction that re-targets a warning in force: how dispatch texts the
/// new duty holders and respond calls them and stops chasing the replaced, atomically with the
/// record, without correlate knowing either.
#[derive(Clone)]
pub struct RetargetHook(
    /// The function.
    pub Arc<RetargetFn>,
);

impl std::fmt::Debug for RetargetHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetargetHook")
    }
}

/// Re-target the warnings in force to `reg`: each lineage's targets as they now stand (its
/// places, with the new registry's people, numbers, people to move and shelters) against its
/// last recorded ones. A lineage whose targets changed gets a `Retarget` record and the hook;
/// one audit entry (`registry.applied`) says which import was taken up and what it changed.
pub fn retarget(
    tx: &Tx<'_>,
    reg: &Registry,
    lineages: &[Lineage],
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
    hook: Option<&RetargetHook>,
) -> anyhow::Result<Vec<Retarget>> {
    let at = crate::store::stamp(now);
    let mut out = Vec::new();
    for l in lineages {
        let key = l.key();
        let Some(old) = cstore::last_targets(tx, &key)? else {
            continue;
        };
        let same_decision = Decision {
            send: old.send,
            changes: Vec::new(),
            raises: old.raises,
        };
        let new = warning::targets(reg, l, &same_decision, old.identifiers.clone());
        if new == old {
            continue;
        }
        let pair = |c: &Contact| (c.person.clone(), c.target.clone());
        let before: HashMap<_, &Contact> = old.contacts.iter().map(|c| (pair(c), c)).collect();
        let after: HashMap<_, &Contact> = new.contacts.iter().map(|c| (pair(c), c)).collect();
        let added = new
            .contacts
            .iter()
            .filter(|c| !before.contains_key(&pair(c)))
            .cloned()
            .collect();
        let removed = old
            .contacts
            .iter()
            .filter(|c| !after.contains_key(&pair(c)))
            .cloned()
            .collect();
        let renumbered = new
            .contacts
            .iter()
            .filter(|c| before.get(&pair(c)).is_some_and(|o| o.mobile != c.mobile))
            .cloned()
            .collect();
        let decision = cstore::record_retarget(tx, &key, &new, &at)?;
        let r = Retarget {
            lineage: key,
            decision,
            targets: new,
            added,
            removed,
            renumbered,
        };
        if let Some(h) = hook {
            (h.0)(tx, &r, now)?;
        }
        out.push(r);
    }
    audit::append(
        tx,
        &audit::Entry {
            at: now.to_zoned(tz.clone()),
            actor: "correlate".into(),
            kind: "registry.applied".into(),
            subject: reg
                .import
                .map(|i| format!("import #{i}"))
                .unwrap_or_default(),
            detail: serde_json::json!({
                "import": reg.import,
                "lineages": lineages.len(),
                "retargeted": out.iter().map(|r| serde_json::json!({
                    "lineage": r.lineage,
                    "decision": r.decision,
                    "added": r.added.iter().map(|c| &c.person).collect::<Vec<_>>(),
                    "removed": r.removed.iter().map(|c| &c.person).collect::<Vec<_>>(),
                    "renumbered": r.renumbered.iter().map(|c| &c.person).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock::SimClock;

    #[test]
    fn ticks_keep_one_grid_across_a_resume() {
        let (tick, phase) = (Duration::from_secs(300), Duration::from_secs(15));
        let at = |s: &str| -> Timestamp { s.parse().unwrap() };
        let first = |start: &str| {
            let clock = SimClock::new(at(start));
            let t = next_tick_after(&clock, tick, phase, phase);
            clock.now() + SignedDuration::try_from(t - clock.elapsed()).unwrap()
        };
        // A drill starting on the grid waits a whole tick, as it always did.
        assert_eq!(first("2019-08-08T00:00:00Z"), at("2019-08-08T00:05:15Z"));
        // Resumed off the grid (a crash, a new leader): the old schedule goes on.
        assert_eq!(first("2019-08-09T12:17:00Z"), at("2019-08-09T12:20:15Z"));
        // Within `phase` of the start, the next one.
        assert_eq!(first("2019-08-09T12:20:10Z"), at("2019-08-09T12:25:15Z"));
        // Later ticks: strictly after now, on the grid.
        let clock = SimClock::new(at("2019-08-09T12:20:15Z"));
        let t = next_tick_after(&clock, tick, phase, Duration::ZERO);
        assert_eq!(t - clock.elapsed(), tick);
    }
}
