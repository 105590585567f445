//! Typhoon Lekima (2019) over the synthetic county, replayed through the live poller and the
//! correlate stage on a simulated clock. The expectations are computed here from the
//! scenario's own files (rain sums, signal times, landfall), not copied from a run.

use crate::common;
use crate::common::backend::{Backend, Place, on_both};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use stormbell::cap::{self, Options, Profile};
use stormbell::correlate::engine::{Engine, RunSettings};
use stormbell::correlate::{Rules, Tier};
use stormbell::feeds::poller::{Poller, Settings};
use stormbell::feeds::replay::{ReplayFetcher, Scenario};
use stormbell::registry::{self, Registry};
use stormbell::runtime::clock::SimClock;
use tokio::sync::mpsc;

pub(crate) struct Decision {
    pub(crate) at: Timestamp,
    pub(crate) lineage: String,
    pub(crate) send: String,
    pub(crate) tier: Option<Tier>,
    changes: String,
}

pub(crate) struct Outcome {
    pub(crate) decisions: Vec<Decision>,
    pub(crate) caps: Vec<(String, String)>,
    dir: tempfile::TempDir,
    _place: Place,
}

/// The correlate stage as these tests run it: a tick every 5 minutes on the whole minute, and
/// nothing done with its decisions but recording them.
fn settings(tz: jiff::tz::TimeZone) -> RunSettings {
    RunSettings {
        tick: Duration::from_secs(300),
        phase: Duration::ZERO,
        tz,
        on_decision: None,
        registry: None,
        on_retarget: None,
    }
}

/// A scenario (a folder under fixtures/scenarios) through the live poller and the correlate
/// stage on a simulated clock, over the fixture county, with the store on `backend`.
pub(crate) fn replay(scenario: &str, backend: Backend) -> Outcome {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sc = Scenario::load(&root.join("fixtures/scenarios").join(scenario)).unwrap();
    let (loaded, _) = registry::check_dir(&root.join("fixtures/county"), registry::Encoding::Auto);
    let reg = Arc::new(Registry::new(loaded.data));
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let store = place.open();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = SimClock::new(sc.start);
        let (tx, rx) = mpsc::channel(1024);
        let (ttx, mut trx) = mpsc::channel(100_000);
        let poller = Arc::new(Poller::new(
            store.clone(),
            Arc::new(ReplayFetcher::new(&sc, Arc::new(clock.clone())).unwrap()),
            Arc::new(clock.clone()),
            Settings {
                start_spread: Duration::ZERO,
                hold_clock: true,
                ..Settings::new(&cfg.feeds, cfg.time_zone())
            },
            tx,
        ));
        let engine = Engine::new(Rules::national(), cfg.issuer(), reg);
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        let feeds = tokio::spawn(poller.run(sc.specs(cap::Limits::default()), stop_rx.clone()));
        let correlate = tokio::spawn(stormbell::correlate::engine::run(
            engine,
            store.clone(),
            Arc::new(clock.clone()),
            settings(tz.clone()),
            rx,
            ttx,
            stop_rx,
        ));
        let drain = tokio::spawn(async move { while trx.recv().await.is_some() {} });
        clock.run_until(sc.end).await;
        stop.fire();
        feeds.await.unwrap().unwrap();
        correlate.await.unwrap().unwrap();
        drain.await.unwrap();
    });
    let (decisions, caps) = store
        .read_blocking(|c| {
            let mut stmt = c.prepare(
                "SELECT d.at, d.lineage, d.send, (SELECT tier FROM corr_warning w WHERE w.decision = d.id LIMIT 1),
                        d.changes
                 FROM corr_decision d ORDER BY d.id",
            )?;
            let decisions = stmt
                .query_map((), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?
                .map(|r| {
                    let (at, lineage, send, tier, changes) = r.unwrap();
                    Decision {
                        at: at.parse().unwrap(),
                        lineage,
                        send,
                        tier: tier.and_then(|t| Tier::parse(&t)),
                        changes,
                    }
                })
                .collect();
            let mut stmt = c.prepare("SELECT identifier, cap FROM corr_warning ORDER BY id")?;
            let caps = stmt
                .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
                .map(Result::unwrap)
                .collect();
            Ok((decisions, caps))
        })
        .unwrap();
    Outcome {
        decisions,
        caps,
        dir,
        _place: place,
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The scenario's rain, read independently: (station, period end) → mm, latest file wins,
/// values above 300 mm/h left out (the gauge gone mad).
fn rain_files() -> BTreeMap<(String, Timestamp), f64> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios/lekima-2019/feeds/rain");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = BTreeMap::new();
    for f in files {
        if f.extension().is_some_and(|e| e == "down") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().skip(1) {
            let c: Vec<&str> = line.split(',').collect();
            let end = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", c[4])
                .unwrap()
                .in_tz("Asia/Shanghai")
                .unwrap()
                .timestamp();
            let mm: f64 = c[5].parse().unwrap();
            if mm <= 300.0 {
                out.insert((c[0].to_string(), end), mm);
            }
        }
    }
    out
}

on_both! {
fn lekima_over_the_county(backend) {
    let o = replay("lekima-2019", backend);
    assert!(!o.decisions.is_empty());
    let first = |prefix: &str, tier: Tier| {
        o.decisions
            .iter()
            .filter(|d| d.lineage.starts_with(prefix) && d.tier == Some(tier) && d.send != "Cancel")
            .map(|d| d.at)
            .min()
    };

    // Rainstorm red (100 mm in 3 h) comes at the first hour some gauge's 3 h sum reaches
    // 100 mm — within one poll (10 min) and one evaluation tick (5 min) of its publication —
    // and never before.
    let rain = rain_files();
    let mut first_red: Option<Timestamp> = None;
    for (station, end) in rain.keys() {
        let sum: f64 = (0..3)
            .filter_map(|h| rain.get(&(station.clone(), *end - SignedDuration::from_hours(h))))
            .sum();
        if sum >= 100.0 {
            first_red = Some(first_red.map_or(*end, |f: Timestamp| f.min(*end)));
        }
    }
    let want = first_red.expect("the scenario has a red-rain hour");
    let got = first("rainstorm:", Tier::Red).expect("a red rainstorm warning");
    // Files are published 10 min after the hour they cover.
    assert!(
        got >= want && got <= want + SignedDuration::from_mins(10 + 10 + 5),
        "rain red at {got}, the data says {want}"
    );

    // The rain feed's outage becomes an internal warning to the duty officers, lifted when it
    // recovers; and no rain warning is lowered while the gauges are blind.
    let gap: Vec<&Decision> = o
        .decisions
        .iter()
        .filter(|d| d.lineage == "feed_gap:rain")
        .collect();
    assert_eq!(
        gap.iter().map(|d| d.send.as_str()).collect::<Vec<_>>(),
        ["Alert", "Cancel"]
    );
    let (down, up) = (gap[0].at, gap[1].at);
    let lowered: Vec<(&str, Timestamp)> = o
        .decisions
        .iter()
        .filter(|d| {
            (d.lineage.starts_with("rainstorm:") || d.lineage.starts_with("flash_flood:"))
                && d.at > down
                && d.at < up
                && ["downgrade", "narrow", "lift"]
                    .iter()
                    .any(|c| d.changes.contains(&format!("\"change\":\"{c}\"")))
        })
        .map(|d| (d.lineage.as_str(), d.at))
        .collect();
    assert!(
        lowered.is_empty(),
        "lowered while blind ({down} – {up}): {lowered:?}"
    );

    // Typhoon: the tiers come in order — orange no later than red, red before landfall
    // (01:45 on the 10th) but within a day of it (a 6 h window on a storm moving ~15 km/h
    // cannot reach further) — and no typhoon warning is left at red two days later.
    let landfall = at("2019-08-10T01:45:00+08:00");
    let red = first("typhoon:", Tier::Red).expect("typhoon red");
    let orange = first("typhoon:", Tier::Orange).expect("typhoon orange");
    assert!(orange <= red, "orange {orange}, red {red}");
    assert!(
        red < landfall && red > landfall - SignedDuration::from_hours(24),
        "{red}"
    );
    let mut last: BTreeMap<&str, (&str, Option<Tier>)> = BTreeMap::new();
    for d in o
        .decisions
        .iter()
        .filter(|d| d.lineage.starts_with("typhoon:"))
    {
        last.insert(&d.lineage, (&d.send, d.tier));
    }
    assert!(
        last.values()
            .all(|(send, tier)| *send == "Cancel" || *tier < Some(Tier::Red)),
        "{last:?}"
    );
    // Tiers only rise before landfall.
    let mut by_town: BTreeMap<&str, Vec<Tier>> = BTreeMap::new();
    for d in o
        .decisions
        .iter()
        .filter(|d| d.lineage.starts_with("typhoon:") && d.at < landfall)
    {
        if let Some(t) = d.tier {
            by_town.entry(&d.lineage).or_default().push(t);
        }
    }
    for (town, tiers) in &by_town {
        assert!(tiers.windows(2).all(|w| w[0] <= w[1]), "{town}: {tiers:?}");
    }

    // The county weather office's own signal is relayed to its villages and lifted at once
    // when it is cancelled (15:30 on the 10th; the warnings feed is polled every 5 min).
    let relay: Vec<&Decision> = o
        .decisions
        .iter()
        .filter(|d| d.lineage.starts_with("upstream:"))
        .collect();
    assert!(!relay.is_empty());
    let cancel = relay
        .iter()
        .find(|d| d.send == "Cancel")
        .expect("relay lifted");
    let cancelled = at("2019-08-10T15:30:00+08:00");
    assert!(
        cancel.at >= cancelled && cancel.at <= cancelled + SignedDuration::from_mins(10),
        "{}",
        cancel.at
    );
    assert_eq!(relay.iter().filter_map(|d| d.tier).max(), Some(Tier::Red));

    // Blue (level 6, for which no agency draws a circle) comes from the wind profile beyond
    // the reported 7-level circle, and the warning says so.
    assert!(
        o.caps
            .iter()
            .any(|(_, xml)| xml.contains("风圈外缘按风廓线推算")),
        "no typhoon text says its circle was derived"
    );

    // Every message valid CAP 1.2 with Google's rules, and against the official XSD.
    for (id, xml) in &o.caps {
        let report = cap::inspect(
            xml.as_bytes(),
            &Options {
                profile: Profile::Google,
                limits: cap::Limits::default(),
            },
        );
        let errors: Vec<String> = report.errors().map(|p| p.render(id)).collect();
        assert!(errors.is_empty(), "{id}: {errors:?}");
    }
    let files: Vec<String> = o
        .caps
        .iter()
        .enumerate()
        .map(|(i, (_, xml))| {
            let p = o.dir.path().join(format!("{i}.xml"));
            std::fs::write(&p, xml).unwrap();
            p.display().to_string()
        })
        .collect();
    let xsd = common::external().join("schema/CAP-v1.2.xsd");
    for chunk in files.chunks(400) {
        let out = std::process::Command::new("xmllint")
            .args(["--nonet", "--noout", "--schema"])
            .arg(&xsd)
            .args(chunk)
            .output()
            .expect("xmllint (libxml2-utils) is installed by scripts/test");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
}

on_both! {
    /// Two feeds polled at the same simulated instant, the second still fetching when the
    /// first delivers: correlate waits for it and decides once on both, as evaluating both
    /// at once does, never a warning and then its update at the same instant. (A replay's
    /// decisions otherwise depended on how the machine scheduled the feeds.)
    async fn deliveries_of_one_instant_are_decided_together(backend) {
        use stormbell::feeds::Observation;
        use stormbell::feeds::poller::Delivery;
        use stormbell::runtime::Clock;

        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (loaded, _) =
            registry::check_dir(&root.join("fixtures/county"), registry::Encoding::Auto);
        let reg = Arc::new(Registry::new(loaded.data));
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        // An hour of 40 mm, then one of 60 mm, at a gauge in 桃林镇 (synthetic).
        let rain = crate::common::county::rain;
        let first = || rain("2019-08-09T12:00:00+08:00", 40.0);
        let second = || rain("2019-08-09T13:00:00+08:00", 60.0);
        let t: Timestamp = "2019-08-09T13:00:00+08:00".parse().unwrap();
        let decide = |obs: Vec<Observation>| -> BTreeMap<String, Tier> {
            let mut e = Engine::new(Rules::national(), cfg.issuer(), reg.clone());
            for (i, o) in obs.iter().enumerate() {
                e.observe(o, i as i64 + 1);
            }
            e.evaluate(t)
                .emitted
                .iter()
                .map(|e| (e.lineage.clone(), e.state.tier))
                .collect()
        };
        let together = decide(vec![first(), second()]);
        let alone = decide(vec![first()]);
        // The case is one where splitting would show: the first alone already warns, lower.
        assert!(!alone.is_empty());
        assert_ne!(alone, together);

        let place = Place::new(backend);
        let store = place.open();
        let clock = SimClock::new(t);
        let (tx, rx) = mpsc::channel(1);
        let (ttx, mut trx) = mpsc::channel(1000);
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        // The second feed's poll, still in flight at this instant.
        let polling = clock.awake();
        let correlate = tokio::spawn(stormbell::correlate::engine::run(
            Engine::new(Rules::national(), cfg.issuer(), reg.clone()),
            store.clone(),
            Arc::new(clock.clone()),
            settings(cfg.time_zone()),
            rx,
            ttx,
            stop_rx,
        ));
        let drain = tokio::spawn(async move { while trx.recv().await.is_some() {} });
        let deliver = |inbox: i64, observation: Observation| Delivery {
            inbox,
            feed: format!("rain-{inbox}"),
            key: format!("{inbox}"),
            observation,
            busy: Arc::new(clock.awake()),
        };
        tx.send(deliver(1, first())).await.unwrap();
        // The second comes only once correlate has taken the first: the channel holds one,
        // so room for the second means the first was received.
        let room = tx.reserve().await.unwrap();
        room.send(deliver(2, second()));
        drop(polling);
        clock.settle().await;
        let decided: Vec<(String, String, Option<String>)> = store
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT d.at, d.lineage,
                            (SELECT tier FROM corr_warning w WHERE w.decision = d.id LIMIT 1)
                     FROM corr_decision d ORDER BY d.id",
                )?;
                let rows = stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap();
        stop.fire();
        correlate.await.unwrap().unwrap();
        drain.await.unwrap();
        let got: BTreeMap<String, Tier> = decided
            .iter()
            .map(|(_, l, tier)| (l.clone(), tier.as_deref().and_then(Tier::parse).unwrap()))
            .collect();
        assert_eq!(decided.len(), got.len(), "one decision per warning: {decided:?}");
        assert!(decided.iter().all(|(at, _, _)| at.parse::<Timestamp>().unwrap() == t));
        assert_eq!(got, together);
    }
}
