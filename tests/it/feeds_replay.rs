//! The Lekima 2019 drill scenario, replayed on a simulated clock through the same poller a live
//! run uses: three days in a few seconds.

use crate::common::backend::{Place, on_both};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stormbell::cap::{self, MsgType};
use stormbell::feeds::fetch::{Conditional, Fetcher, Validators};
use stormbell::feeds::poller::{Delivery, Poller, Settings};
use stormbell::feeds::rainfall::RainFlag;
use stormbell::feeds::replay::{ReplayFetcher, Scenario};
use stormbell::feeds::{AlarmState, Observation};
use stormbell::runtime::clock::SimClock;
use tokio::sync::mpsc;

/// How many snapshots of a feed a poller must see between the scenario's start and end: those
/// published by the end, less those already replaced at the start, less outages.
fn published(sc: &Scenario, feed: &str) -> usize {
    let mut times: Vec<(jiff::Timestamp, bool)> =
        std::fs::read_dir(sc.root.join("feeds").join(feed))
            .unwrap()
            .map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().to_string();
                let (stem, ext) = name.split_once('.').unwrap();
                (
                    stormbell::feeds::replay::snapshot_time(stem).unwrap(),
                    ext == "down",
                )
            })
            .filter(|(t, _)| *t <= sc.end)
            .collect();
    times.sort();
    let before = times.iter().filter(|(t, _)| *t <= sc.start).count();
    times
        .iter()
        .skip(before.saturating_sub(1))
        .filter(|(_, down)| !down)
        .count()
}

fn scenario() -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios/lekima-2019"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_fetcher_serves_the_latest_snapshot_with_conditional_requests() {
    let sc = scenario();
    let clock = SimClock::new(sc.start);
    let f = ReplayFetcher::new(&sc, Arc::new(clock.clone())).unwrap();
    let none = Validators::default();
    let url = "replay://scenario/feeds/warnings/";
    // Before the first warning is published, the index is empty.
    let Conditional::Body { bytes, .. } = f.fetch(url, &none, 1 << 20).await.unwrap() else {
        panic!("a body expected");
    };
    assert!(!String::from_utf8(bytes).unwrap().contains("<entry"));
    // Before a feed's first snapshot, it does not exist yet.
    let early = SimClock::new("2019-08-01T00:00:00+08:00".parse().unwrap());
    let before = ReplayFetcher::new(&sc, Arc::new(early)).unwrap();
    let e = before
        .fetch("replay://scenario/feeds/typhoon/", &none, 1 << 20)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    clock.advance_to("2019-08-08T10:00:00+08:00".parse().unwrap());
    let Conditional::Body { bytes, validators } = f.fetch(url, &none, 1 << 20).await.unwrap()
    else {
        panic!("a body expected");
    };
    assert!(String::from_utf8(bytes).unwrap().contains("蓝色"));
    assert_eq!(
        f.fetch(url, &validators, 1 << 20).await.unwrap(),
        Conditional::NotModified
    );
    clock.advance_to("2019-08-08T20:00:00+08:00".parse().unwrap());
    assert!(matches!(
        f.fetch(url, &validators, 1 << 20).await.unwrap(),
        Conditional::Body { .. }
    ));
    // The size cap holds here too, and nothing outside the scenario can be reached.
    assert!(
        f.fetch(url, &none, 100)
            .await
            .unwrap_err()
            .to_string()
            .contains("larger than 100")
    );
    let e = f
        .fetch("replay://scenario/../Cargo.toml", &none, 1 << 20)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    // During the outage the rain service answers 503.
    clock.advance_to("2019-08-09T23:00:00+08:00".parse().unwrap());
    let e = f
        .fetch("replay://scenario/feeds/rain/", &none, 1 << 20)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
}

on_both! {
async fn three_days_of_lekima_reach_the_correlate_channel_in_order(backend) {
    let sc = scenario();
    let clock = SimClock::new(sc.start);
    let place = Place::new(backend);
    let store = place.open();
    let (tx, mut rx) = mpsc::channel::<Delivery>(100_000);
    let poller = Arc::new(Poller::new(
        store.clone(),
        Arc::new(ReplayFetcher::new(&sc, Arc::new(clock.clone())).unwrap()),
        Arc::new(clock.clone()),
        Settings {
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(600),
            follow_concurrency: 4,
            start_spread: Duration::ZERO,
            flush_every: Duration::from_millis(100),
            tz: jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
            hold_clock: false,
            jitter_seed: None,
        },
        tx,
    ));
    let (stop, stop_rx) = stormbell::runtime::Trigger::new();
    let task = tokio::spawn(
        poller
            .clone()
            .run(sc.specs(cap::Limits::default()), stop_rx),
    );
    // Event by event: simulated time moves on only when every feed task is asleep.
    clock.run_until(sc.end).await;
    stop.fire();
    task.await.unwrap().unwrap();
    let mut got = Vec::new();
    while let Ok(d) = rx.try_recv() {
        got.push(d);
    }

    // The warnings: blue, yellow, orange, red, then the cancel, each once, in one lineage.
    let warnings: Vec<_> = got
        .iter()
        .filter_map(|d| match &d.observation {
            Observation::Alert(a) => Some(a),
            _ => None,
        })
        .collect();
    let kinds: Vec<MsgType> = warnings.iter().map(|a| a.alert.msg_type).collect();
    assert_eq!(
        kinds,
        [
            MsgType::Alert,
            MsgType::Update,
            MsgType::Update,
            MsgType::Update,
            MsgType::Cancel
        ]
    );
    let root = &warnings[0].lineage.as_ref().unwrap().root;
    for w in &warnings {
        let l = w.lineage.as_ref().unwrap();
        assert_eq!(&l.root, root);
        assert!(l.missing.is_empty(), "{:?}", l.missing);
        assert!(w.dialect.contains("national"), "{}", w.dialect);
    }

    // The track grows snapshot by snapshot, and ends over land past the county.
    let tracks: Vec<_> = got
        .iter()
        .filter_map(|d| match &d.observation {
            Observation::Track(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        tracks.len(),
        published(&sc, "typhoon"),
        "every snapshot, once"
    );
    assert!(
        tracks
            .windows(2)
            .all(|w| w[0].points.len() < w[1].points.len())
    );

    // Rain: hourly, with the mad gauge flagged, not trusted.
    let rain: Vec<_> = got
        .iter()
        .filter_map(|d| match &d.observation {
            Observation::Rain(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(
        rain.len(),
        published(&sc, "rain"),
        "every hour the service was up, once"
    );
    assert!(
        rain.iter()
            .flat_map(|b| &b.readings)
            .any(|r| matches!(r.flag, Some(RainFlag::Absurd { .. })) && r.mm == Some(999.9))
    );

    // The rain service's three-hour outage raised the gap alarm, and its return cleared it.
    let alarms: Vec<_> = got
        .iter()
        .filter_map(|d| match &d.observation {
            Observation::FeedAlarm(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(alarms.len(), 2, "{alarms:?}");
    assert_eq!(
        (alarms[0].feed.as_str(), alarms[0].state),
        ("rain", AlarmState::Gap)
    );
    // The last success was the 22:00 poll; 3 intervals of 600 s later, to the second.
    assert!(
        alarms[0].at.starts_with("2019-08-09T22:30:00"),
        "{}",
        alarms[0].at
    );
    assert_eq!(alarms[0].silent_secs, 1800);
    assert_eq!(alarms[1].state, AlarmState::Recovered);
    assert!(
        alarms[1].at.starts_with("2019-08-10T01"),
        "{}",
        alarms[1].at
    );
}
}
