//! The county emergency-broadcast platform adapter against an independent, strict test
//! platform (tests/ebd_platform/platform.py): packages validated (tar layout, XML, fields, the
//! audio's SM3 digest, the SM2 signature checked by openssl), broadcasts tracked per terminal,
//! and every failure reaching `broadcast_alarm` for respond.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::dispatch::{contact, mobile, place, targets};
use common::ebd::{COUNTY, EbdPlatform, PLATFORM, sm2_keys};
use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::Targets;
use stormbell::dispatch::broadcast::audio::Synth;
use stormbell::dispatch::broadcast::jobs::{self, Plan, Routes};
use stormbell::dispatch::outbox::Policy;
use stormbell::dispatch::platform::sign::SignerSettings;
use stormbell::dispatch::platform::{Platform, PlatformChannel, PlatformSettings};
use stormbell::registry::{self, Encoding};
use stormbell::runtime::clock::{Clock, SimClock};
use stormbell::store::Store;

/// A store holding the synthetic county's registry.
fn county_store(place: &Place) -> (Store, registry::Dataset) {
    let store = place.open();
    let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    let prepared = registry::prepare_import(&county, Encoding::Auto, &|_| {}).unwrap();
    let data = prepared.data.clone();
    prepared.commit(&store, "test", jiff::Zoned::now()).unwrap();
    (store, data)
}

/// A warning version for these villages, with their terminals.
fn warning(
    data: &registry::Dataset,
    villages: &[&str],
    version: u32,
    tier: Tier,
    send: MessageKind,
) -> Targets {
    let mut t = targets(
        "flash_flood:FF331098001",
        version,
        Hazard::FlashFlood,
        tier,
        send,
        vec![contact(1, &mobile(1))],
    );
    t.places = villages
        .iter()
        .map(|v| {
            let name = data
                .villages
                .iter()
                .find(|x| x.code == *v)
                .map(|x| x.name.clone())
                .unwrap();
            place(v, &name, tier)
        })
        .collect();
    t.terminals = data
        .terminals
        .iter()
        .filter(|x| villages.contains(&x.village.as_str()))
        .map(|x| x.id.clone())
        .collect();
    t
}

fn platform_settings(url: &str, signer: SignerSettings) -> PlatformSettings {
    PlatformSettings {
        url: url.into(),
        src: COUNTY.into(),
        dest: PLATFORM.into(),
        poll_secs: 1,
        heartbeat_secs: 2,
        timeout_secs: 5,
        audio: true,
        kbps: 32,
        signer,
    }
}

fn tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()
}

/// Run a channel on the simulated clock (20 times real time: a simulated second per 50 ms)
/// until `done` holds.
async fn drive(
    store: &Store,
    ch: PlatformChannel,
    clock: &Arc<SimClock>,
    within: Duration,
    done: impl Fn(&stormbell::store::sql::Conn<'_>) -> bool + Clone + Send + 'static,
) {
    let (stop_tx, stop) = stormbell::runtime::Trigger::new();
    let task = tokio::spawn(stormbell::dispatch::drive(
        ch,
        stop,
        Arc::new(tokio::sync::Notify::new()),
    ));
    // The library's own pacing (as a drill at speed), and a check after each write.
    let pace = clock.run_at(20.0, Duration::from_secs(1));
    let held = common::store_changed_until(within.as_secs(), store, || {
        let (d, store) = (done.clone(), store.clone());
        async move { store.read(move |c| Ok(d(c))).await.unwrap() }
    })
    .await;
    pace.abort();
    if !held {
        let jobs = "SELECT id, route, send, state, attempts, last_error, result FROM broadcast_job";
        let targets = "SELECT job, state, count(*) FROM broadcast_target GROUP BY job, state";
        panic!(
            "not done within {within:?}; jobs: {:?}; targets: {:?}",
            common::rows(store, jobs).await,
            common::rows(store, targets).await,
        );
    }
    stop_tx.fire();
    task.await.unwrap().unwrap();
}

fn count(c: &stormbell::store::sql::Conn<'_>, sql: &str) -> i64 {
    c.query_row(sql, (), |r| r.get(0)).unwrap()
}

fn plan(deadline_secs: i64) -> Plan {
    Plan {
        routes: Routes {
            platform: true,
            icecast: false,
        },
        deadline: SignedDuration::from_secs(deadline_secs),
        policy: Policy {
            office: "东溟县防汛办".into(),
            ..Policy::default()
        },
    }
}

fn enqueue(
    store: &Store,
    decision: i64,
    t: &Targets,
    now: Timestamp,
    plan: &Plan,
) -> jobs::Enqueued {
    let (t, plan) = (t.clone(), plan.clone());
    store
        .write_blocking(move |tx| jobs::enqueue(tx, decision, &t, now, &plan))
        .unwrap()
}

on_both! {
    async fn a_signed_warning_is_accepted_played_per_terminal_and_its_lift_stops_it(backend) {
        let place = Place::new(backend);
        let dir = tempfile::tempdir().unwrap();
        let (store, data) = county_store(&place);
        let (key, public) = sm2_keys(dir.path(), "county");
        let platform = EbdPlatform::start(Some((&public, "SN-2026-0001")), 400);
        let start: Timestamp = "2019-08-09T21:00:00+08:00".parse().unwrap();
        let clock = Arc::new(SimClock::new(start));
        let villages = ["331098001002", "331098001003", "331098001005"];
        let red = warning(&data, &villages, 2, Tier::Red, MessageKind::Update);
        let want: BTreeSet<String> = red.terminals.iter().cloned().collect();
        // The terminals of these villages as the fixture's CSV lists them (read here as text).
        let csv = String::from_utf8(common::fixture_bytes("county/terminals.csv")).unwrap();
        let listed: BTreeSet<String> = csv
            .lines()
            .filter(|l| villages.iter().any(|v| l.split(',').nth(1) == Some(*v)))
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        assert_eq!(want, listed);
        let n = want.len() as i64;
        let e = enqueue(&store, 1, &red, start, &plan(600));
        assert_eq!((e.jobs, e.terminals as i64), (1, n));

        let signer = SignerSettings::Sm2 {
            key,
            cert_sn: "SN-2026-0001".into(),
            issuer: "TEST-CA".into(),
        };
        let synth = Synth::mandarin(dir.path().join("audio"));
        let p = Platform::new(
            platform_settings(&platform.url, signer.clone()),
            "东溟县防汛办",
            tz(),
        )
        .unwrap();
        let ch = PlatformChannel::new(
            p,
            store.clone(),
            synth.clone(),
            SignedDuration::from_hours(6),
        )
        .with_clock(clock.clone())
        .with_event_types([("flash_flood".to_string(), "11B37".to_string())].into());
        drive(&store, ch, &clock, Duration::from_secs(60), |c| {
            count(c, "SELECT count(*) FROM broadcast_job WHERE state = 'done'") == 1
        })
        .await;

        // The platform took a valid, signed package, once, naming the villages.
        let status = platform.control("/status");
        let ebms = status["ebms"].as_object().unwrap();
        assert_eq!(ebms.len(), 1, "{status}");
        let (ebm_id, ebm) = ebms.iter().next().unwrap();
        assert_eq!(ebm_id.len(), 34);
        let areas: BTreeSet<String> = ebm["areas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(areas, villages.iter().map(|v| v.to_string()).collect());
        let received = platform.received();
        assert!(received.iter().all(|r| r["ok"] == true), "{received:?}");
        for kind in ["EBM", "EBMStateRequest", "ConnectionCheck", "OMDRequest"] {
            assert!(
                received.iter().any(|r| r["type"] == kind),
                "no {kind} in {received:?}"
            );
        }
        // Every terminal reported done, recorded per terminal, with the play on the terminal.
        let c = store.clone();
        let (played, on_terminal, coverage, alarms) = c
            .read(|c| {
                Ok((
                    count(
                        c,
                        "SELECT count(*) FROM broadcast_target WHERE state = 'played'",
                    ),
                    count(
                        c,
                        "SELECT count(*) FROM broadcast_terminal WHERE played_job = 1",
                    ),
                    c.query_row("SELECT coverage FROM broadcast_job WHERE id = 1", (), |r| {
                        r.get::<_, f64>(0)
                    })?,
                    count(c, "SELECT count(*) FROM broadcast_alarm"),
                ))
            })
            .await
            .unwrap();
        assert_eq!((played, on_terminal, alarms), (n, n, 0));
        assert_eq!(coverage, 100.0);
        // The audit trail: the broadcast sent once, and each terminal's play, naming the warning.
        let (sent, plays) = store
            .read(|c| {
                Ok((
                    count(
                        c,
                        "SELECT count(*) FROM audit WHERE kind = 'broadcast.sent'
                         AND CAST(json_extract(detail, '$.job') AS INTEGER) = 1",
                    ),
                    count(
                        c,
                        "SELECT count(*) FROM audit WHERE kind = 'broadcast.played'
                         AND json_extract(detail, '$.lineage') = 'flash_flood:FF331098001'",
                    ),
                ))
            })
            .await
            .unwrap();
        assert_eq!((sent, plays), (1, n));

        // The lift: a stop instruction naming the broadcast it stops.
        let lift = warning(&data, &villages, 3, Tier::Red, MessageKind::Cancel);
        let later = start + SignedDuration::from_hours(3);
        clock.advance_to(later);
        assert_eq!(enqueue(&store, 2, &lift, later, &plan(600)).jobs, 1);
        let p = Platform::new(
            platform_settings(&platform.url, signer),
            "东溟县防汛办",
            tz(),
        )
        .unwrap();
        let ch = PlatformChannel::new(p, store.clone(), synth, SignedDuration::from_hours(6))
            .with_clock(clock.clone());
        drive(&store, ch, &clock, Duration::from_secs(30), |c| {
            count(c, "SELECT count(*) FROM broadcast_job WHERE state = 'done'") == 2
        })
        .await;
        let status = platform.control("/status");
        let stop = status["ebms"]
            .as_object()
            .unwrap()
            .values()
            .find(|e| e["msg_type"] == "2")
            .expect("a stop instruction");
        assert_eq!(stop["related"], ebm_id.as_str());
        assert_eq!(status["ebms"][ebm_id]["stopped"], true);
    }
}

on_both! {
    async fn outages_offline_and_silent_terminals_and_refusals_reach_the_alarms(backend) {
        let place = Place::new(backend);
        let dir = tempfile::tempdir().unwrap();
        let (store, data) = county_store(&place);
        let platform = EbdPlatform::start(None, 300);
        let start: Timestamp = "2019-08-09T21:00:00+08:00".parse().unwrap();
        let clock = Arc::new(SimClock::new(start));
        let villages = ["331098001002", "331098001003"];
        let red = warning(&data, &villages, 1, Tier::Red, MessageKind::Alert);
        let (offline, silent) = (red.terminals[0].clone(), red.terminals[1].clone());
        platform.control(&format!("/offline?id={offline}"));
        platform.control(&format!("/silent?id={silent}"));
        // The platform is down for the first posts (the heartbeat's and the instruction's).
        platform.control("/down?n=3");
        enqueue(&store, 1, &red, start, &plan(120));

        let synth = Synth::mandarin(dir.path().join("audio"));
        let p = Platform::new(
            platform_settings(&platform.url, SignerSettings::None),
            "东溟县防汛办",
            tz(),
        )
        .unwrap();
        let ch = PlatformChannel::new(
            p,
            store.clone(),
            synth.clone(),
            SignedDuration::from_hours(6),
        )
        .with_clock(clock.clone());
        // Until the deadline has passed and the silent terminal is reported.
        drive(&store, ch, &clock, Duration::from_secs(60), |c| {
            count(
                c,
                "SELECT count(*) FROM broadcast_target WHERE state = 'unconfirmed'",
            ) == 1
        })
        .await;
        let got = common::rows(
            &store,
            "SELECT terminal, state, detail FROM broadcast_target ORDER BY terminal",
        )
        .await;
        let state_of = |id: &str| got.iter().find(|r| r[0] == id).unwrap()[1].clone();
        assert_eq!(state_of(&offline), "failed", "{got:?}");
        assert_eq!(state_of(&silent), "unconfirmed", "{got:?}");
        assert_eq!(
            got.iter().filter(|r| r[1] == "played").count(),
            red.terminals.len() - 2,
            "{got:?}"
        );
        // The outage was retried, not given up: attempts counted, the 503 remembered.
        let job = common::rows(
            &store,
            "SELECT attempts, state FROM broadcast_job WHERE id = 1",
        )
        .await;
        assert!(job[0][0].parse::<i64>().unwrap() >= 2, "{job:?}");
        let posts = platform.received();
        assert!(posts.iter().any(|r| r["code"] == "503"), "{posts:?}");
        let alarms = common::rows(
            &store,
            "SELECT kind, terminal, detail FROM broadcast_alarm ORDER BY id",
        )
        .await;
        let kinds: Vec<(&str, &str)> = alarms
            .iter()
            .map(|a| (a[0].as_str(), a[1].as_str()))
            .collect();
        assert!(kinds.contains(&("failed", offline.as_str())), "{alarms:?}");
        assert!(
            kinds.contains(&("unconfirmed", silent.as_str())),
            "{alarms:?}"
        );
        assert!(
            alarms.iter().any(|a| a[2].contains("终端离线")),
            "the platform's words kept: {alarms:?}"
        );
        assert_eq!(alarms.len(), 2, "each once: {alarms:?}");
        let link = common::rows(
            &store,
            "SELECT ok FROM broadcast_link WHERE route = 'platform'",
        )
        .await;
        assert_eq!(link, vec![vec!["1".to_string()]]);
        let offline_state = common::rows(
            &store,
            &*format!("SELECT online FROM broadcast_terminal WHERE id = '{offline}'").leak(),
        )
        .await;
        assert_eq!(
            offline_state,
            vec![vec!["0".to_string()]],
            "the terminal-state report"
        );

        // A platform that answers 200 with a failure code: refused, every terminal failed, alarmed.
        platform.control("/fail?code=2&n=1");
        let next = warning(
            &data,
            &["331098001005"],
            1,
            Tier::Orange,
            MessageKind::Alert,
        );
        let mut next = next;
        next.lineage = "flash_flood:FF331098002".into();
        enqueue(&store, 2, &next, clock.now(), &plan(120));
        let p = Platform::new(
            platform_settings(&platform.url, SignerSettings::None),
            "东溟县防汛办",
            tz(),
        )
        .unwrap();
        let ch = PlatformChannel::new(p, store.clone(), synth, SignedDuration::from_hours(6))
            .with_clock(clock.clone());
        drive(&store, ch, &clock, Duration::from_secs(30), |c| {
            count(
                c,
                "SELECT count(*) FROM broadcast_job WHERE id = 2 AND state = 'failed'",
            ) == 1
        })
        .await;
        let refused = common::rows(
            &store,
            "SELECT kind, detail FROM broadcast_alarm WHERE job = 2",
        )
        .await;
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0][0], "refused");
        assert!(refused[0][1].contains("code 2"), "{refused:?}");
    }
}

on_both! {
    async fn a_wrong_key_is_refused_by_the_platform_and_an_unreachable_one_is_alarmed(backend) {
        let place = Place::new(backend);
        let dir = tempfile::tempdir().unwrap();
        let (store, data) = county_store(&place);
        let (_, registered) = sm2_keys(dir.path(), "registered");
        let (stolen, _) = sm2_keys(dir.path(), "other");
        let platform = EbdPlatform::start(Some((&registered, "SN-1")), 300);
        let start: Timestamp = "2019-08-09T21:00:00+08:00".parse().unwrap();
        let clock = Arc::new(SimClock::new(start));
        let red = warning(&data, &["331098001002"], 1, Tier::Red, MessageKind::Alert);
        enqueue(&store, 1, &red, start, &plan(60));
        let signer = SignerSettings::Sm2 {
            key: stolen,
            cert_sn: "SN-1".into(),
            issuer: "TEST-CA".into(),
        };
        let synth = Synth::mandarin(dir.path().join("audio"));
        let p = Platform::new(
            platform_settings(&platform.url, signer),
            "东溟县防汛办",
            tz(),
        )
        .unwrap();
        let ch = PlatformChannel::new(
            p,
            store.clone(),
            synth.clone(),
            SignedDuration::from_hours(6),
        )
        .with_clock(clock.clone());
        drive(&store, ch, &clock, Duration::from_secs(30), |c| {
            count(
                c,
                "SELECT count(*) FROM broadcast_alarm WHERE kind = 'refused'",
            ) == 1
        })
        .await;
        let a = common::rows(
            &store,
            "SELECT detail FROM broadcast_alarm WHERE kind = 'refused'",
        )
        .await;
        assert!(a[0][0].contains("code 4"), "signature rejected: {a:?}");
        assert!(
            platform
                .received()
                .iter()
                .any(|r| r["why"] == "SM2 signature does not verify")
        );

        // Nobody listening: the job waits and retries; past its deadline, respond is told.
        let red2 = {
            let mut t = warning(&data, &["331098001003"], 1, Tier::Red, MessageKind::Alert);
            t.lineage = "flash_flood:FF331098003".into();
            t
        };
        enqueue(&store, 2, &red2, clock.now(), &plan(60));
        let p = Platform::new(
            platform_settings("http://127.0.0.1:9/", SignerSettings::None),
            "东溟县防汛办",
            tz(),
        )
        .unwrap();
        let ch = PlatformChannel::new(p, store.clone(), synth, SignedDuration::from_hours(6))
            .with_clock(clock.clone());
        drive(&store, ch, &clock, Duration::from_secs(60), |c| {
            count(
                c,
                "SELECT count(*) FROM broadcast_alarm WHERE kind = 'unreachable' AND job = 2",
            ) == 1
        })
        .await;
        let job = common::rows(
            &store,
            "SELECT state, attempts, last_error FROM broadcast_job WHERE id = 2",
        )
        .await;
        assert_eq!(job[0][0], "queued", "still trying: {job:?}");
        assert!(job[0][1].parse::<i64>().unwrap() >= 2, "{job:?}");
        assert!(job[0][2].contains("127.0.0.1:9"), "{job:?}");
        let unconfirmed = common::rows(
            &store,
            "SELECT count(*) FROM broadcast_alarm WHERE kind = 'unconfirmed' AND job = 2",
        )
        .await;
        assert_eq!(unconfirmed[0][0], red2.terminals.len().to_string());
        let link = common::rows(&store, "SELECT ok, last_error FROM broadcast_link").await;
        assert_eq!(link[0][0], "0", "{link:?}");
    }
}

on_both! {
    async fn a_broadcast_whose_answer_was_lost_goes_again_under_the_same_ebmid_and_plays_once(backend) {
        let place = Place::new(backend);
        let dir = tempfile::tempdir().unwrap();
        let (store, data) = county_store(&place);
        let platform = EbdPlatform::start(None, 200);
        let start: Timestamp = "2019-08-09T21:00:00+08:00".parse().unwrap();
        let clock = Arc::new(SimClock::new(start));
        let red = warning(&data, &["331098001002"], 1, Tier::Red, MessageKind::Alert);
        enqueue(&store, 1, &red, start, &plan(600));
        let synth = Synth::mandarin(dir.path().join("audio"));
        let run = |synth: Synth| {
            let p = Platform::new(
                platform_settings(&platform.url, SignerSettings::None),
                "东溟县防汛办",
                tz(),
            )
            .unwrap();
            PlatformChannel::new(p, store.clone(), synth, SignedDuration::from_hours(6))
                .with_clock(clock.clone())
        };
        drive(
            &store,
            run(synth.clone()),
            &clock,
            Duration::from_secs(30),
            |c| count(c, "SELECT count(*) FROM broadcast_job WHERE state = 'done'") == 1,
        )
        .await;
        // What a crash between the platform's answer and our commit leaves: the job queued with
        // its EBMID, the terminals waiting.
        store
            .write_blocking(|tx| {
                tx.execute_batch(
                    "UPDATE broadcast_job SET state = 'queued', result = NULL;
                     UPDATE broadcast_target SET state = 'waiting';",
                )?;
                Ok(())
            })
            .unwrap();
        drive(&store, run(synth), &clock, Duration::from_secs(30), |c| {
            count(c, "SELECT count(*) FROM broadcast_job WHERE state = 'done'") == 1
        })
        .await;
        let status = platform.control("/status");
        assert_eq!(
            status["ebms"].as_object().unwrap().len(),
            1,
            "one broadcast: {status}"
        );
        assert_eq!(
            status["duplicates"], 1,
            "recognised as the same one: {status}"
        );
        let ebm_posts = platform
            .received()
            .iter()
            .filter(|r| r["type"] == "EBM")
            .count();
        assert_eq!(ebm_posts, 2);
        let played = common::rows(
            &store,
            "SELECT count(*) FROM broadcast_target WHERE state = 'played'",
        )
        .await;
        assert_eq!(played[0][0], red.terminals.len().to_string());
    }
}
