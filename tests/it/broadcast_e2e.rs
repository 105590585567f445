//! From rain to loudspeakers: the correlate engine on the synthetic county decides a
//! flash-flood warning; its decision queues the broadcasts in the same transaction; the
//! county platform (the strict test platform) plays it on the FM and cellular terminals and
//! reports each one done, while the IP speakers pull it from a real Icecast server. The lift
//! stops the platform's broadcast.

use crate::common;
use crate::common::backend::{Place, on_both};

use common::gauge_rain as rain;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ebd::{COUNTY, EbdPlatform, PLATFORM};
use common::icecast::Icecast;
use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::engine::{self, Engine};
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::{Rules, Tier};
use stormbell::dispatch::broadcast::audio::Synth;
use stormbell::dispatch::broadcast::jobs::{Plan, Routes};
use stormbell::dispatch::icecast::IcecastChannel;
use stormbell::dispatch::icecast::IcecastSettings;
use stormbell::dispatch::platform::sign::SignerSettings;
use stormbell::dispatch::platform::{Platform, PlatformChannel, PlatformSettings};
use stormbell::registry::{self, Encoding, Registry};
use stormbell::runtime::clock::SimClock;
use stormbell::store::Store;

/// The zone followed: 3 IP speakers and 2 cellular terminals in the fixture county.
const ZONE: &str = "flash_flood:FF331098024";

/// An IP speaker: pull a mount until it plays, then read until the source ends.
fn speaker(addr: String, mount: String, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET {mount} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        if all.starts_with(b"HTTP/1.0 200")
            && let Some(h) = all.windows(4).position(|w| w == b"\r\n\r\n")
        {
            return all.len() - h - 4;
        }
        if Instant::now() > deadline {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(c: &stormbell::store::sql::Conn<'_>, sql: &str) -> i64 {
    c.query_row(sql, (), |r| r.get(0)).unwrap()
}

/// Run the platform channel alone on the simulated clock until `done`.
async fn drive_platform(
    store: &Store,
    platform: PlatformChannel,
    clock: &Arc<SimClock>,
    within: Duration,
    done: &'static str,
) {
    drive(store, (platform, None), clock, within, done).await
}

/// Run both channels on the simulated clock (a simulated second per 100 ms: a 10-minute
/// deadline is a minute of real streaming) until `done`.
async fn drive(
    store: &Store,
    channels: (PlatformChannel, Option<IcecastChannel>),
    clock: &Arc<SimClock>,
    within: Duration,
    done: &'static str,
) {
    let (stop_tx, stop) = stormbell::runtime::Trigger::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let (platform, icecast) = channels;
    let mut tasks = vec![tokio::spawn(stormbell::dispatch::drive(
        platform,
        stop.clone(),
        wake.clone(),
    ))];
    if let Some(icecast) = icecast {
        tasks.push(tokio::spawn(stormbell::dispatch::drive(
            icecast,
            stop.clone(),
            wake,
        )));
    }
    // The library's own pacing (as a drill at speed), and a check after each write.
    let pace = clock.run_at(10.0, Duration::from_secs(1));
    let held = common::store_changed_until(within.as_secs(), store, || {
        let store = store.clone();
        async move { store.read(move |c| Ok(count(c, done) > 0)).await.unwrap() }
    })
    .await;
    pace.abort();
    if !held {
        let jobs = common::rows(
            store,
            "SELECT id, lineage, version, send, tier, route, state, attempts, last_error, result
             FROM broadcast_job ORDER BY id",
        )
        .await;
        let jobs: Vec<String> = jobs.iter().map(|r| r.join(" | ")).collect();
        panic!("not done: {done}\n{}", jobs.join("\n"));
    }
    stop_tx.fire();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

on_both! {
async fn a_flash_flood_warning_from_rain_sounds_every_terminal_and_its_lift_stops_it(backend) {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let store = place.open();
    let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    let prepared = registry::prepare_import(&county, Encoding::Auto, &|_| {}).unwrap();
    let reg = Arc::new(Registry::new(prepared.data.clone()));
    prepared.commit(&store, "test", jiff::Zoned::now()).unwrap();
    let platform = EbdPlatform::start(None, 500);
    let ice = Icecast::start(64);
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    let tz = cfg.time_zone();
    let mut policy = cfg.dispatch_policy();
    policy.exercise = true;
    let plan = Plan {
        routes: Routes {
            platform: true,
            icecast: true,
        },
        deadline: SignedDuration::from_mins(10),
        policy: policy.clone(),
    };
    // Follow one zone (IP speakers and FM/cellular terminals both): the rain warns many, and
    // each would take its own half-minute on the mounts.
    let inner =
        stormbell::dispatch::hook_with(policy, Arc::new(tokio::sync::Notify::new()), Some(plan));
    let hook = engine::DecisionHook(Arc::new(move |tx, d, t, now| {
        if t.lineage == ZONE {
            (inner.0)(tx, d, t, now)
        } else {
            Ok(())
        }
    }));
    let mut e = Engine::new(Rules::national(), cfg.issuer(), reg.clone());
    let start: Timestamp = "2019-08-09T10:00:00+08:00".parse().unwrap();
    let clock = Arc::new(SimClock::new(start));
    let icecast = IcecastSettings {
        url: ice.url.clone(),
        password: ice.password.clone(),
        mount: "/{village}.mp3".into(),
        kbps: 32,
        connect_secs: 5,
    };
    let synth = Synth::mandarin(dir.path().join("audio"));
    let channels = || {
        let settings = PlatformSettings {
            url: platform.url.clone(),
            src: COUNTY.into(),
            dest: PLATFORM.into(),
            poll_secs: 1,
            heartbeat_secs: 5,
            timeout_secs: 5,
            audio: true,
            kbps: 32,
            signer: SignerSettings::None,
        };
        let p = Platform::new(settings, "东溟县防汛办", tz.clone()).unwrap();
        (
            PlatformChannel::new(
                p,
                store.clone(),
                synth.clone(),
                SignedDuration::from_hours(6),
            )
            .with_clock(clock.clone())
            .with_exercise(true)
            .with_event_types(Rules::national().event_codes()),
            IcecastChannel::new(
                icecast.clone(),
                store.clone(),
                synth.clone(),
                SignedDuration::from_hours(6),
            )
            .with_clock(clock.clone()),
        )
    };
    let both = || {
        let (p, i) = channels();
        (p, Some(i))
    };

    let hourly = [5.0, 38.0, 20.0, 30.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let mut red = None;
    let mut lifted = false;
    for step in 0..(12 * 6) {
        let now = start + SignedDuration::from_mins(step * 10);
        if step % 6 == 0
            && step > 0
            && let Some(mm) = hourly.get((step / 6 - 1) as usize)
        {
            e.observe(&rain(now, *mm), step);
        }
        let ev = Arc::new(e.evaluate(now));
        let ours: Vec<_> = ev
            .emitted
            .iter()
            .filter(|x| x.lineage == ZONE)
            .map(|x| (x.decision.send, x.state.tier, x.targets.clone()))
            .collect();
        let (ev2, tz2, hook2) = (ev.clone(), tz.clone(), hook.clone());
        store
            .write_blocking(move |tx| engine::commit(tx, &ev2, &[], now, &tz2, Some(&hook2)))
            .unwrap();
        for (send, tier, targets) in ours {
            if send == MessageKind::Update && tier == Tier::Red && red.is_none() {
                clock.advance_to(now);
                // The IP speakers of the zone's villages listen, one per mount.
                let mut mounts: BTreeMap<String, usize> = BTreeMap::new();
                for t in reg
                    .data
                    .terminals
                    .iter()
                    .filter(|t| targets.terminals.contains(&t.id))
                {
                    if t.kind == stormbell::registry::model::TerminalKind::Ip {
                        *mounts.entry(icecast.mount_for(&t.village)).or_default() += 1;
                    }
                }
                assert!(!mounts.is_empty(), "the zone has IP speakers");
                let speakers: Vec<_> = mounts
                    .iter()
                    .flat_map(|(m, n)| std::iter::repeat_n(m.clone(), *n))
                    .map(|m| {
                        let addr = ice.addr.clone();
                        std::thread::spawn(move || speaker(addr, m, Duration::from_secs(30)))
                    })
                    .collect();
                drive(
                    &store,
                    both(),
                    &clock,
                    Duration::from_secs(90),
                    "SELECT CASE WHEN count(*) > 0 AND sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END) = count(*) THEN 1 ELSE 0 END FROM broadcast_job WHERE lineage = 'flash_flood:FF331098024' AND send = 'Update' AND tier = 'red'",
                )
                .await;
                let heard: Vec<usize> = speakers.into_iter().map(|s| s.join().unwrap()).collect();
                assert!(
                    heard.iter().all(|b| *b > 20_000),
                    "every IP speaker heard the message: {heard:?}"
                );
                red = Some(targets);
            }
            if send == MessageKind::Cancel {
                lifted = true;
            }
        }
    }
    assert!(lifted, "the warning was lifted within the run");
    let red = red.expect("the zone reached move-now");

    // Every terminal of the zone confirmed play, on one route or the other; nothing alarmed.
    let c = store.clone();
    let (played, targeted, alarms, superseded) = c
        .read(|c| {
            let zone = "(SELECT id FROM broadcast_job WHERE lineage = 'flash_flood:FF331098024' AND send = 'Update' AND tier = 'red')";
            Ok((
                count(c, &format!("SELECT count(*) FROM broadcast_target WHERE state = 'played' AND job IN {zone}")),
                count(c, &format!("SELECT count(DISTINCT terminal) FROM broadcast_target WHERE job IN {zone}")),
                count(c, "SELECT count(*) FROM broadcast_alarm WHERE lineage = 'flash_flood:FF331098024'"),
                count(c, "SELECT count(*) FROM broadcast_job WHERE state = 'superseded' AND lineage = 'flash_flood:FF331098024'"),
            ))
        })
        .await
        .unwrap();
    assert_eq!(targeted as usize, red.terminals.len());
    assert_eq!(played, targeted);
    let listed: Vec<String> = c
        .read(|c| {
            let mut st = c.prepare("SELECT kind, job, terminal, detail FROM broadcast_alarm WHERE lineage = 'flash_flood:FF331098024'")?;
            let r = st
                .query_map((), |r| Ok(format!("{}|{}|{:?}|{}", r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, String>(3)?)))?
                .collect::<stormbell::store::sql::Result<Vec<_>>>()?;
            Ok(r)
        })
        .await
        .unwrap();
    assert_eq!(alarms, 0, "{listed:#?}");
    assert!(
        superseded > 0,
        "earlier tiers, never sent, were replaced by the red"
    );
    // The platform got valid drill instructions (this zone's and any other the rain reached).
    let status = platform.control("/status");
    let ebms = status["ebms"].as_object().unwrap().clone();
    let zone_ebm: String = c
        .read(|c| {
            Ok(c.query_row(
                "SELECT ebm_id FROM broadcast_job WHERE lineage = 'flash_flood:FF331098024' AND route = 'platform' AND tier = 'red' AND send = 'Update'",
                (),
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert!(ebms.contains_key(&zone_ebm), "{status}");
    let received = platform.received();
    assert!(received.iter().all(|r| r["ok"] == true), "{received:?}");

    // The lift: the platform stops the red. (The mounts would announce it too, another 40 s of
    // real-time audio; the Icecast path is already shown above.)
    clock.advance_to(start + SignedDuration::from_hours(12));
    let (platform_only, _) = channels();
    drive_platform(
        &store,
        platform_only,
        &clock,
        Duration::from_secs(90),
        "SELECT CASE WHEN count(*) = 1 THEN 1 ELSE 0 END FROM broadcast_job WHERE lineage = 'flash_flood:FF331098024' AND send = 'Cancel' AND route = 'platform' AND state = 'done'",
    )
    .await;
    let status = platform.control("/status");
    let stops: BTreeSet<String> = status["ebms"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e["msg_type"] == "2")
        .map(|e| e["related"].as_str().unwrap().to_string())
        .collect();
    assert!(
        stops.contains(&zone_ebm),
        "the stop names the red broadcast: {stops:?}"
    );
}
}
