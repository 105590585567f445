//! Drills (应急演练): the whole pipeline over a recorded storm, on a simulated clock.
//!
//! A county rehearses before every flood season. `stormbell replay` takes a scenario folder
//! (what each feed served, and when: `fixtures/scenarios/README.md`), the county's registry,
//! and a cast of simulated responders, and lives through the storm again: the real poller
//! reads the recorded feeds ([`crate::feeds::replay`]), the real correlate stage issues and
//! lifts warnings, the real outbox queues, merges, caps and retries texts, the real respond
//! stage reads answers and climbs the ladder. Only three things are not real: the clock
//! ([`SimClock`]), the phone network and the people holding the phones ([`people`]).
//!
//! Determinism: at `--speed max` the clock moves event by event and only when every task is
//! asleep; the poller's retry jitter is seeded; polls fall on whole minutes, correlate's
//! periodic re-evaluation at 15 s past and the people's turn at 30 s past, so no two of them
//! share an instant whose order the scheduler would decide; their behaviour is a hash of
//! (seed, person, warning). The same scenario therefore gives the same outputs byte for byte
//! ([`output`]; link tokens, which are secrets and random, are masked there).
//!
//! Resumption: every turn of the people records how far the drill has come (`drill_run`) in
//! the transaction that does the turn's work, and everything the pipeline knows is in the
//! store. A replay killed at any moment and started again on the same database continues
//! from the last completed minute: the feeds are polled again (a snapshot already taken is
//! recognised by the inbox), correlate rebuilds its memory from the inbox, and the outbox
//! reconciles what was mid-send.

pub mod output;
pub(crate) mod people;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rusqlite::params;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::runtime::Shutdown;

use crate::correlate::Targets;
use crate::daemon::{Pipeline, Settings};
use crate::feeds::poller;
use crate::feeds::replay::{ReplayFetcher, Scenario};
use crate::registry::{self, Encoding, Registry};
use crate::runtime::clock::{Clock, SimClock};
use crate::store::{Store, audit};

pub use people::Responders;

/// The links of a drill's texts when no web server is configured (`.invalid` never resolves,
/// RFC 2606).
pub const LINK_BASE: &str = "https://drill.invalid/r/";

/// A scenario with what the drill needs beyond its feeds.
#[derive(Debug, Clone)]
pub struct Drill {
    /// The recorded feeds.
    pub scenario: Scenario,
    /// The registry folder imported into a new drill database.
    pub registry: PathBuf,
    /// How the simulated people behave.
    pub responders: Responders,
    /// Calls (电话叫应): the minute after a red or orange warning at which the ladder rings
    /// the silent, through a simulated phone network (`[drill] call_after_mins`); `None`: the
    /// ladder as the office configured it.
    pub call_after_mins: Option<u32>,
}

/// `[drill]` in `scenario.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillToml {
    /// Registry folder, relative to the scenario.
    registry: Option<String>,
    #[serde(default)]
    responders: Responders,
    /// See [`Drill::call_after_mins`].
    #[serde(default)]
    call_after_mins: Option<u32>,
}

impl Drill {
    /// Load a scenario folder. `registry` (a command-line choice) wins over the folder its
    /// `[drill]` table names; one of them must say where the county is.
    pub fn load(dir: &Path, registry: Option<&Path>) -> anyhow::Result<Drill> {
        let scenario = Scenario::load(dir)?;
        let file = dir.join("scenario.toml");
        // The drill's schedule (polls, correlate's ticks, the people's turn) keeps to its own
        // seconds of the minute only if the drill starts on one.
        if scenario.start.as_second().rem_euclid(60) != 0 || scenario.start.subsec_nanosecond() != 0
        {
            anyhow::bail!(
                "{}: `start` must be on a whole minute for a drill",
                file.display()
            );
        }
        let t: DrillToml = match &scenario.drill {
            Some(table) => DrillToml::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| anyhow::anyhow!("{}: [drill]: {e}", file.display()))?,
            None => DrillToml {
                registry: None,
                responders: Responders::default(),
                call_after_mins: None,
            },
        };
        t.responders
            .check()
            .map_err(|e| anyhow::anyhow!("{}: [drill.responders]: {e}", file.display()))?;
        let registry = match (registry, t.registry) {
            (Some(r), _) => r.to_path_buf(),
            (None, Some(r)) => dir.join(r),
            (None, None) => anyhow::bail!(
                "{}: no registry: name one in [drill] registry = \"…\" or give --registry DIR",
                file.display()
            ),
        };
        if !registry.join("villages.csv").is_file() {
            anyhow::bail!(
                "{}: the registry folder {} has no villages.csv",
                file.display(),
                registry.display()
            );
        }
        if t.call_after_mins.is_some_and(|m| m > 24 * 60) {
            anyhow::bail!(
                "{}: [drill] call_after_mins must be at most a day (1440)",
                file.display()
            );
        }
        Ok(Drill {
            scenario,
            registry,
            responders: t.responders,
            call_after_mins: t.call_after_mins,
        })
    }
}

/// The pipeline a drill runs: the office's, but everything it issues is an exercise (CAP
/// status `Exercise`, texts marked 演练), its texts carry check-in links as in earnest (the
/// simulated people tap them) — pointing, when no web server is named, at a reserved name that
/// can never resolve ([`LINK_BASE`]) — and its network is simulated: no channel, no respond
/// task (the simulated world runs respond's turns), no web port, no published files, and the
/// registry imported at its start stays in force. The
/// schedule keeps its own seconds of the minute: polls on whole minutes, correlate's ticks at
/// 15 s past, the people at 30 s past.
pub fn settings(base: &Settings) -> Settings {
    let mut s = base.clone();
    s.issuer.status = crate::cap::model::Status::Exercise;
    s.policy.exercise = true;
    if s.policy.link_base.is_none() {
        s.policy.link_base = Some(LINK_BASE.into());
    }
    s.channels = Default::default();
    s.respond_task = false;
    // The drill's registry is the one it imported at its start.
    s.registry_reload = None;
    s.web = None;
    s.publish_dir = None;
    s.checkpoints = None;
    s.retention = None;
    s.phase = Duration::from_secs(15);
    s
}

/// How fast simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Event by event, as fast as the work allows: deterministic.
    Max,
    /// This many simulated seconds per real second (for drills watched live).
    Times(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Speed, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(Speed::Times(x)),
            _ => Err(format!(
                "`{s}` is not a speed: `max`, or simulated seconds per real second (e.g. 3600)"
            )),
        }
    }
}

/// What a drill tells whoever watches it, as it goes.
#[derive(Debug, Default)]
pub struct Events {
    /// Each warning message, after its decision is committed, with the simulated time.
    pub warnings: Option<mpsc::UnboundedSender<(Timestamp, Targets)>>,
    /// Simulated time, after each minute's turn.
    pub progress: Option<watch::Sender<Timestamp>>,
    /// The clock to run on (moved to where the drill starts), for a watcher that serves the
    /// check-in pages in the drill's time; a new one when `None`.
    pub clock: Option<SimClock>,
}

/// How a run went.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    /// Where it started (the scenario's start, or where a killed run had reached).
    pub from: Timestamp,
    /// Whether it resumed a killed run.
    pub resumed: bool,
    /// Whether the database had already finished this scenario (nothing was run).
    pub already_finished: bool,
    /// What the simulated network and people did in this run.
    pub turns: people::Turn,
}

/// Make `store` ready for the drill: a new database gets the registry imported (as of the
/// scenario's start) and a `drill_run` row; one that has this drill already is left alone.
/// The office page needs the registry before the drill starts, hence a step of its own.
pub async fn setup(drill: &Drill, store: &Store, tz: &jiff::tz::TimeZone) -> anyhow::Result<()> {
    let name = drill.scenario.name.clone();
    let runs: Vec<String> = store
        .read(move |c| {
            Ok(c.prepare("SELECT scenario FROM drill_run")?
                .query_map((), |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await?;
    if runs.contains(&name) {
        return Ok(());
    }
    if !runs.is_empty() {
        anyhow::bail!(
            "{}: this database holds another scenario's drill; give each drill its own --db",
            store.path().display()
        );
    }
    let start = drill.scenario.start;
    let prepared = registry::prepare_import(&drill.registry, Encoding::Auto, &|_| {})
        .map_err(|e| anyhow::anyhow!("{}: {e}", drill.registry.display()))?;
    prepared.commit(store, "drill", start.to_zoned(tz.clone()))?;
    let at = crate::store::stamp(start);
    let entry = audit::Entry::utc(
        start,
        "drill",
        "drill.started",
        name.clone(),
        serde_json::json!({ "scenario": name, "start": at }),
    );
    store
        .write(move |tx| {
            tx.execute(
                "INSERT INTO drill_run (scenario, started, reached) VALUES (?1, ?2, ?2)",
                params![name, at],
            )?;
            audit::append(tx, &entry)?;
            Ok(())
        })
        .await?;
    Ok(())
}

/// Where the drill stands on `store` (after [`setup`]): (from, resumed, finished).
async fn prepare(
    drill: &Drill,
    store: &Store,
    tz: &jiff::tz::TimeZone,
) -> anyhow::Result<(Timestamp, bool, bool)> {
    setup(drill, store, tz).await?;
    let name = drill.scenario.name.clone();
    let (started, reached, finished): (String, String, Option<String>) = store
        .read(move |c| {
            Ok(c.query_row(
                "SELECT started, reached, finished FROM drill_run WHERE scenario = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await?;
    let parse = |s: &str| {
        s.parse::<Timestamp>()
            .map_err(|e| anyhow::anyhow!("drill_run: {s:?}: {e}"))
    };
    let (started, reached) = (parse(&started)?, parse(&reached)?);
    Ok((reached, reached > started, finished.is_some()))
}

/// Run the drill on `store` until the scenario's end (or until `stop` fires: then it stops
/// after the current minute, resumable). `base` is the office's pipeline; [`settings`] makes
/// the drill's of it.
pub async fn run(
    base: &Settings,
    drill: &Drill,
    store: &Store,
    speed: Speed,
    events: Events,
    mut stop: Shutdown,
) -> anyhow::Result<Ran> {
    let mut settings = settings(base);
    if let Some(m) = drill.call_after_mins {
        with_calls(&mut settings.respond, m);
    }
    let tz = settings.tz.clone();
    let (from, resumed, finished) = prepare(drill, store, &tz).await?;
    let end = drill.scenario.end;
    if finished || from >= end {
        return Ok(Ran {
            from,
            resumed,
            already_finished: true,
            turns: people::Turn::default(),
        });
    }
    let policy = settings.policy.clone();
    if resumed {
        // Whatever a killed run left mid-send waits for proof, then goes again (counted).
        let grace = policy.reconcile_grace;
        let e = audit::Entry::utc(
            from,
            "drill",
            "drill.resumed",
            drill.scenario.name.clone(),
            serde_json::json!({ "from": from.to_string() }),
        );
        store
            .write(move |tx| {
                crate::dispatch::outbox::reconcile(
                    tx,
                    &crate::dispatch::outbox::Scope::Every,
                    from,
                    grace,
                )?;
                Ok(audit::append(tx, &e)?)
            })
            .await?;
    }
    let reg = Arc::new(Registry::load(store)?);
    // A resumed run starts on the next whole minute, as a new one does (scenarios start on
    // one): polls on whole minutes, correlate's ticks at 15 s past, the people at 30 s past.
    // The half minute skipped after the last busy turn was quiet (it changed nothing).
    let from = if resumed {
        let s = from.as_second() + i64::from(from.subsec_nanosecond() > 0);
        Timestamp::from_second(s + (60 - s.rem_euclid(60)) % 60)?
    } else {
        from
    };
    let clock = match events.clock {
        Some(c) => {
            c.advance_to(from);
            c
        }
        None => SimClock::new(from),
    };
    settings.feeds = drill.scenario.specs(settings.limits);
    settings.poller = poller::Settings {
        flush_every: Duration::from_secs(60),
        start_spread: Duration::ZERO,
        // One linked document at a time, so the inbox order is the same in every run.
        follow_concurrency: 1,
        hold_clock: true,
        jitter_seed: Some(drill.responders.seed),
        ..settings.poller
    };
    let fetcher = Arc::new(ReplayFetcher::new(
        &drill.scenario,
        Arc::new(clock.clone()),
    )?);
    let mut pipeline = Pipeline::new(
        settings.clone(),
        store.clone(),
        reg.clone(),
        Arc::new(clock.clone()),
        fetcher,
    );
    if let Some(w) = events.warnings {
        pipeline = pipeline.watch_warnings(w);
    }
    let running = pipeline.start().await?;
    let world = tokio::spawn(world(
        clock.clone(),
        store.clone(),
        reg.clone(),
        settings.respond.clone(),
        policy.clone(),
        drill.responders.clone(),
        drill.scenario.name.clone(),
        events.progress,
        running.shutdown(),
    ));
    // Drive the clock to the end, or until asked to stop.
    let stopped = match speed {
        Speed::Max => {
            tokio::select! {
                _ = clock.run_until(end) => false,
                _ = stop.recv() => true,
            }
        }
        Speed::Times(x) => {
            let driver = clock.run_at(x, Duration::from_secs(30));
            let mut stopped = false;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.recv() => { stopped = true; }
                }
                if stopped || clock.now() >= end {
                    break;
                }
            }
            driver.abort();
            stopped
        }
    };
    running
        .stop()
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.join("; ")))?;
    let turns = world.await??;
    if !stopped {
        let (name, at) = (drill.scenario.name.clone(), crate::store::stamp(end));
        let e = audit::Entry::utc(
            end,
            "drill",
            "drill.finished",
            name.clone(),
            serde_json::json!({
                "end": at,
            }),
        );
        store
            .write(move |tx| {
                tx.execute(
                    "UPDATE drill_run SET reached = ?2, finished = ?2 WHERE scenario = ?1",
                    params![name, at],
                )?;
                audit::append(tx, &e)?;
                Ok(())
            })
            .await?;
    }
    Ok(Ran {
        from,
        resumed,
        already_finished: false,
        turns,
    })
}

/// How a drill run under the leader lease ended ([`run_under`]).
#[derive(Debug)]
pub enum Led {
    /// This node ran the drill (or found it finished) and gave the lease up after.
    Ran(Ran),
    /// This node lost the lease mid-drill and stepped down: nothing it did after reached the
    /// database; the node that took the lease goes on from where the drill stands.
    SteppedDown(String),
}

/// Run the drill as one of several nodes sharing a PostgreSQL database, as a county drills its
/// hot standby (双机热备): stand by until this node holds the leader lease, then run the drill —
/// or resume it, if a leader that died left it part way ([`run`] continues from the last
/// completed minute and sends again, counted, what was mid-send) — with every write fenced by
/// the lease. A node that loses the lease stops at once ([`Led::SteppedDown`]); one that
/// finishes gives the lease up, so a standby still waiting takes it, finds the drill finished
/// and writes its outputs too. `stop` ends the wait, or the drill after its current minute.
///
/// The simulated clock is not shared: the node that takes over starts its own at the minute
/// the drill had reached, as a restarted replay does.
pub async fn run_under(
    lease: &crate::daemon::Lease,
    base: &Settings,
    drill: &Drill,
    store: &Store,
    speed: Speed,
    events: Events,
    mut stop: Shutdown,
) -> anyhow::Result<Led> {
    let node = lease.settings.node.clone();
    let leadership = tokio::select! {
        l = lease.take(store) => l?,
        _ = stop.recv() => anyhow::bail!("stopped while standing by for the leader lease"),
    };
    // Taking over a drill another node had started is recorded (which node ran which part);
    // starting one is not, so that a drill run by one node writes what it writes on SQLite.
    let name = drill.scenario.name.clone();
    let entry = audit::Entry::utc(
        Timestamp::now(),
        "system",
        "drill.leading",
        name.clone(),
        serde_json::json!({ "node": node, "epoch": leadership.epoch }),
    );
    store
        .write(move |tx| {
            let in_progress = tx
                .prepare_cached(
                    "SELECT count(*) FROM drill_run WHERE scenario = ?1 AND finished IS NULL",
                )?
                .query_row(params![name], |r| r.get::<_, i64>(0))?;
            if in_progress > 0 {
                audit::append(tx, &entry)?;
            }
            Ok(())
        })
        .await?;
    let (halt, halted) = crate::runtime::Trigger::new();
    let running = run(base, drill, store, speed, events, halted);
    tokio::pin!(running);
    let ran = tokio::select! {
        ran = &mut running => ran,
        why = leadership.lost() => {
            // Nothing more of this node reaches the database: another node leads.
            store.revoke();
            halt.fire();
            tracing::error!("{why}; this node steps down from the drill");
            let _ = running.await;
            return Ok(Led::SteppedDown(why));
        }
        _ = stop.recv() => {
            halt.fire();
            running.await
        }
    };
    // The lease is given up here (dropped), once the drill's last write is in.
    drop(leadership);
    ran.map(Led::Ran)
}

/// The red and orange ladders ring the silent `after` minutes into a warning (a `call` step in
/// its place among the others, unless the ladder has one already).
fn with_calls(respond: &mut crate::respond::RespondSettings, after: u32) {
    for tier in ["red", "orange"] {
        let steps = respond.ladder.entry(tier.to_string()).or_default();
        if steps.iter().any(|s| s.action == "call") {
            continue;
        }
        let at = steps
            .iter()
            .position(|s| s.after_mins > after)
            .unwrap_or(steps.len());
        steps.insert(
            at,
            crate::respond::calls::Step {
                after_mins: after,
                action: "call".into(),
            },
        );
    }
}

/// The simulated world's task: at 30 s past every simulated minute, the people act, the
/// respond stage reads their answers and climbs its ladder, and the network delivers; all in
/// one transaction with the drill's progress.
#[allow(clippy::too_many_arguments)]
async fn world(
    clock: SimClock,
    store: Store,
    reg: Arc<Registry>,
    settings: crate::respond::calls::RespondSettings,
    policy: crate::dispatch::Policy,
    responders: Responders,
    scenario: String,
    progress: Option<watch::Sender<Timestamp>>,
    mut halt: Shutdown,
) -> anyhow::Result<people::Turn> {
    let mut total = people::Turn::default();
    // The first slot: the next instant 30 s past a minute (after the last completed one,
    // when resuming).
    let first = Duration::try_from(to_next_slot(clock.now())).unwrap_or(Duration::ZERO);
    let mut next = clock.elapsed() + first;
    loop {
        let guard = tokio::select! {
            g = clock.sleep_until(next) => g,
            _ = halt.recv() => break,
        };
        let now = clock.now();
        let (reg2, s, p, r, name) = (
            reg.clone(),
            settings.clone(),
            policy.clone(),
            responders.clone(),
            scenario.clone(),
        );
        let turn = store
            .write(move |tx| {
                let mut turn = people::Turn::default();
                let before = tx.total_changes()?;
                // Phones ring (receipts), people act on what they have read, respond reads
                // their answers and climbs the ladder, and what is due goes out.
                people::receipts(tx, now, &reg2, &r, &mut turn)?;
                people::lifts(tx, &name, &r)?;
                people::answer(tx, now, &reg2, &s, &p, &mut turn)?;
                crate::respond::step(tx, &reg2, &s, &p, now)?;
                people::accept(tx, now, &p, &r, &mut turn)?;
                people::ring(tx, now, &p, &r, &mut turn)?;
                // A quiet minute changes nothing and need not be written (a write is an
                // fsync); resuming from the last busy one replays only quiet minutes.
                let after = tx.total_changes()?;
                if after > before {
                    tx.execute(
                        "UPDATE drill_run SET reached = ?2 WHERE scenario = ?1",
                        params![name, crate::store::stamp(now)],
                    )?;
                }
                Ok(turn)
            })
            .await?;
        total.accepted += turn.accepted;
        total.receipts += turn.receipts;
        total.answers += turn.answers;
        total.rings += turn.rings;
        if let Some(p) = &progress {
            let _ = p.send(now);
        }
        drop(guard);
        next += Duration::from_secs(60);
    }
    Ok(total)
}

/// How long from `now` until the next instant 30 s past a minute, strictly after `now`.
/// Polls and correlate ticks fall on whole minutes of a scenario that starts on one, so the
/// people never act at the same simulated instant as they do, and the order of the two never
/// depends on the scheduler.
pub fn to_next_slot(now: Timestamp) -> SignedDuration {
    let into = SignedDuration::from_secs(now.as_second().rem_euclid(60))
        + SignedDuration::from_nanos(i64::from(now.subsec_nanosecond()));
    let slot = SignedDuration::from_secs(30);
    if into < slot {
        slot - into
    } else {
        SignedDuration::from_secs(90) - into
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_people_act_half_a_minute_past_each_minute() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            to_next_slot(at("2019-08-08T00:00:00Z")),
            SignedDuration::from_secs(30)
        );
        assert_eq!(
            to_next_slot(at("2019-08-08T00:00:29Z")),
            SignedDuration::from_secs(1)
        );
        // A resumed run starts after the slot it last completed.
        assert_eq!(
            to_next_slot(at("2019-08-08T00:00:30Z")),
            SignedDuration::from_secs(60)
        );
        assert_eq!(
            to_next_slot(at("2019-08-08T00:00:45.5Z")),
            SignedDuration::from_millis(44_500)
        );
    }

    #[test]
    fn speeds_are_max_or_a_positive_factor() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("3600".parse::<Speed>(), Ok(Speed::Times(3600.0)));
        for bad in ["0", "-2", "fast", "NaN", "inf"] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
    }
}
