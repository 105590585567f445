//! Calls through a real SIP proxy to real phones: stormbell's user agent rings baresip phones
//! (Debian `baresip-core`) registered at a kamailio (Debian `kamailio`) that asks for digest
//! credentials on every INVITE, plays them the warning, and hears the keys they press.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::time::Duration;

use common::sip::{Behaviour, DECLINING, Kamailio, Phone, TRUNK_PASSWORD};
use stormbell::dispatch::voice::{Outcome, Prompt, Refused, Transport, Trunk, TrunkSettings};

fn trunk(k: &Kamailio, transport: Transport) -> TrunkSettings {
    TrunkSettings {
        name: "县电信中继".into(),
        proxy: k.addr(),
        transport,
        user: "office".into(),
        password: TRUNK_PASSWORD.into(),
        caller_id: "05718800110".into(),
        max_calls: 8,
        calls_per_sec: 20,
        ring_secs: 20,
        answer_secs: 8,
        ..TrunkSettings::default()
    }
}

/// The prompt's words spoken by espeak-ng (22 kHz, resampled by the user agent), `rounds`
/// times.
fn spoken_prompt(rounds: u32, linger: Duration) -> Prompt {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("prompt.wav");
    let words = stormbell::dispatch::voice::prompt_words("zh-CN").unwrap();
    assert!(words.contains("请按1"), "{words}");
    let st = std::process::Command::new("espeak-ng")
        .args(["-v", "cmn", "-w"])
        .arg(&wav)
        .arg(&words)
        .status()
        .expect("espeak-ng runs (Debian espeak-ng)");
    assert!(st.success());
    Prompt::from_wav(&std::fs::read(&wav).unwrap(), rounds, linger).unwrap()
}

fn rms(s: &[i16]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    (s.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
}

/// Seconds of 8 kHz audio that are not quiet (20 ms windows above a floor).
fn voiced_secs(s: &[i16]) -> f64 {
    s.chunks(160).filter(|c| rms(c) > 300.0).count() as f64 * 0.02
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_hears_the_prompt_and_their_key_is_the_answer() {
    let k = Kamailio::start();
    let rfc = Phone::start(
        &k,
        "13800000001",
        Behaviour::Answer {
            key: Some('1'),
            after: Duration::from_millis(2500),
        },
    );
    let second = Phone::start(
        &k,
        "13800000002",
        Behaviour::Answer {
            key: Some('3'),
            after: Duration::from_millis(1500),
        },
    );
    let prompt = spoken_prompt(2, Duration::from_secs(3));
    assert!(
        prompt.length() > Duration::from_secs(2),
        "{:?}",
        prompt.length()
    );

    // Over UDP, the key as an RFC 4733 event.
    let udp = Trunk::new(trunk(&k, Transport::Udp));
    let o = udp.call(&rfc.number, &prompt).await.unwrap();
    let Outcome::Acknowledged { key, after, via } = o else {
        panic!("expected a key, got {o:?}; kamailio: {}", k.log());
    };
    assert_eq!((key, via), ('1', "rfc4733"));
    assert!(after >= Duration::from_millis(2500), "{after:?}");
    assert!(after < prompt.length() * 2, "{after:?}");
    rfc.wait_for("CALL_CLOSED", 10);
    // What the phone recorded is speech, not silence, for about as long as it listened.
    let heard = rfc.heard();
    let voiced = voiced_secs(&heard);
    assert!(
        voiced > 1.0 && voiced <= after.as_secs_f64() + 0.5,
        "voiced {voiced} s of {} s recorded (key after {after:?})",
        heard.len() as f64 / 8000.0
    );

    // Over TCP (kamailio relays to the phone over UDP).
    let tcp = Trunk::new(trunk(&k, Transport::Tcp));
    let o = tcp.call(&second.number, &prompt).await.unwrap();
    assert!(
        matches!(
            o,
            Outcome::Acknowledged {
                key: '3',
                via: "rfc4733",
                ..
            }
        ),
        "{o:?}; kamailio: {}",
        k.log()
    );
    second.wait_for("CALL_CLOSED", 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_listens_without_a_key_hears_the_prompt_twice() {
    let k = Kamailio::start();
    let silent = Phone::start(
        &k,
        "13800000011",
        Behaviour::Answer {
            key: None,
            after: Duration::ZERO,
        },
    );
    let hangs_up = Phone::start(
        &k,
        "13800000012",
        Behaviour::HangUp {
            after: Duration::from_millis(1500),
        },
    );
    let prompt = spoken_prompt(2, Duration::from_secs(1));
    let t = Trunk::new(trunk(&k, Transport::Udp));
    let o = t.call(&silent.number, &prompt).await.unwrap();
    let Outcome::AnsweredNoKey { heard, hung_up } = o else {
        panic!("expected no key, got {o:?}");
    };
    assert!(!hung_up);
    // Two rounds and the second of quiet between them, all played.
    let whole = prompt.length() * 2 + Duration::from_secs(1);
    assert!(
        heard.abs_diff(whole) <= Duration::from_millis(40),
        "{heard:?} vs {whole:?}"
    );
    silent.wait_for("CALL_CLOSED", 10);
    let rec = silent.heard();
    let recorded = rec.len() as f64 / 8000.0;
    assert!(
        (recorded - whole.as_secs_f64()).abs() < 1.5 + prompt.linger.as_secs_f64(),
        "recorded {recorded} s, played {whole:?}"
    );
    // Speech in both rounds: the voiced time is about twice one round's.
    let once = voiced_secs(&prompt.samples);
    let voiced = voiced_secs(&rec);
    assert!(
        voiced > once * 1.6 && voiced < once * 2.4,
        "voiced {voiced} s heard, {once} s per round"
    );

    let o = t.call(&hangs_up.number, &prompt).await.unwrap();
    let Outcome::AnsweredNoKey { heard, hung_up } = o else {
        panic!("expected a hang-up, got {o:?}");
    };
    assert!(hung_up, "{o:?}");
    assert!(heard < prompt.length(), "{heard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_call_can_fail_is_named() {
    let k = Kamailio::start();
    let busy = Phone::start(&k, "13800000021", Behaviour::Busy);
    let ringing = Phone::start(&k, "13800000022", Behaviour::Ring);
    let prompt = spoken_prompt(1, Duration::from_secs(1));
    let mut s = trunk(&k, Transport::Udp);
    s.ring_secs = 3;
    let t = Trunk::new(s.clone());

    let o = t.call(&busy.number, &prompt).await.unwrap();
    assert_eq!(o, Outcome::Busy { code: 486 });

    let o = t.call(&ringing.number, &prompt).await.unwrap();
    assert_eq!(
        o,
        Outcome::NoAnswer {
            code: None,
            rang: true
        }
    );
    // The CANCEL reached the phone: it stopped ringing.
    ringing.wait_for("CALL_CLOSED", 10);

    let o = t.call(DECLINING, &prompt).await.unwrap();
    assert_eq!(o, Outcome::Rejected { code: 603 });

    let o = t.call("13800000099", &prompt).await.unwrap();
    assert!(
        matches!(
            &o,
            Outcome::Unreachable {
                code: Some(404),
                ..
            }
        ),
        "{o:?}"
    );

    // A wrong password: refused, and the message says what to check.
    let wrong = Trunk::new(TrunkSettings {
        password: "not-the-password".into(),
        ..s.clone()
    });
    let o = wrong.call(&busy.number, &prompt).await.unwrap();
    let Outcome::Failed { reason } = &o else {
        panic!("expected a refusal, got {o:?}");
    };
    assert!(
        reason.contains("refused our credentials") && reason.contains("\"office\""),
        "{reason}"
    );
    // No password at all where one is asked.
    let none = Trunk::new(TrunkSettings {
        password: String::new(),
        ..s.clone()
    });
    let o = none.call(&busy.number, &prompt).await.unwrap();
    assert!(
        matches!(&o, Outcome::Failed { reason } if reason.contains("none is configured")),
        "{o:?}"
    );

    // A trunk that answers nothing (a port nobody listens on).
    let dead = {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.local_addr().unwrap()
    };
    let gone = Trunk::new(TrunkSettings {
        proxy: dead.to_string(),
        answer_secs: 2,
        ..s.clone()
    });
    let o = gone.call(&busy.number, &prompt).await.unwrap();
    assert!(
        matches!(&o, Outcome::Unreachable { code: None, reason } if reason.contains("within 2 s")),
        "{o:?}"
    );
    // Not a number.
    let o = t.call("13800000021;x", &prompt).await.unwrap();
    assert!(matches!(&o, Outcome::Failed { .. }), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_never_holds_more_calls_than_its_lines() {
    let k = Kamailio::start();
    let phones: Vec<Phone> = (0..4)
        .map(|i| {
            Phone::start(
                &k,
                &format!("1380000003{i}"),
                Behaviour::Answer {
                    key: Some('2'),
                    after: Duration::from_millis(1200),
                },
            )
        })
        .collect();
    let prompt = spoken_prompt(2, Duration::from_secs(1));
    let t = std::sync::Arc::new(Trunk::new(TrunkSettings {
        max_calls: 2,
        ..trunk(&k, Transport::Udp)
    }));
    let mut calls = tokio::task::JoinSet::new();
    for p in &phones {
        let (t, n, pr) = (t.clone(), p.number.clone(), prompt.clone());
        calls.spawn(async move { t.call(&n, &pr).await });
    }
    // The same person is never rung twice at once.
    // Once the first phone has the call's offer, its number is being called.
    let first = phones[0].log_handle();
    tokio::task::spawn_blocking(move || first.wait_for("CALL_REMOTE_SDP", 30))
        .await
        .unwrap();
    assert!(t.calling(&phones[0].number));
    let again = t.call(&phones[0].number, &prompt).await;
    assert_eq!(again, Err(Refused::InCall(phones[0].number.clone())));
    let mut keys = 0;
    while let Some(r) = calls.join_next().await {
        let o = r.unwrap().unwrap();
        assert!(matches!(o, Outcome::Acknowledged { key: '2', .. }), "{o:?}");
        keys += 1;
    }
    assert_eq!(keys, 4);
    for p in &phones {
        p.wait_for("CALL_CLOSED", 10);
    }
    // As the phones saw it: never more than two calls established at once. A phone reports
    // a call closed after it has answered our BYE, and its report reaches this test a moment
    // later still, while the next call may already be up: a call counts as closed 250 ms
    // before its report was read (each call lasts over a second).
    let slack = Duration::from_millis(250);
    let mut edges: Vec<(std::time::Instant, i32)> = Vec::new();
    for p in &phones {
        for (kind, at) in p.events().iter() {
            match kind.as_str() {
                "CALL_ESTABLISHED" => edges.push((*at, 1)),
                "CALL_CLOSED" => edges.push((*at - slack, -1)),
                _ => {}
            }
        }
    }
    edges.sort_by_key(|e| (e.0, e.1));
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    assert_eq!(most, 2, "calls at once");
}

on_both! {
/// The ladder's `call` step rings the village leads who have not answered a red warning: one
/// presses 1 (received), one presses 3 (needs help). Each key answers that person's call for
/// that warning, through the outbox and respond as an SMS reply would; the help goes on to
/// the town and county; the trail holds every ring.
async fn the_ladder_calls_silent_leads_and_their_keys_answer_the_warning(backend) {
    use common::dispatch::{contact, targets};
    use std::sync::Arc;
    use stormbell::correlate::lifecycle::MessageKind;
    use stormbell::correlate::tier::{Hazard, Tier};
    use stormbell::dispatch::broadcast::audio::Synth;
    use stormbell::dispatch::outbox::{self, Policy};
    use stormbell::dispatch::voice::{VoiceChannel, VoiceSettings};
    use stormbell::registry::{self, Encoding, Registry};
    use stormbell::respond::calls::{self, RespondSettings, Step};

    let k = Kamailio::start();
    let received = Phone::start(
        &k,
        "13900000001",
        Behaviour::Answer {
            key: Some('1'),
            after: Duration::from_millis(1500),
        },
    );
    let helpless = Phone::start(
        &k,
        "13900000002",
        Behaviour::Answer {
            key: Some('3'),
            after: Duration::from_millis(1500),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let store = place.open();
    let county = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    let (loaded, _) = registry::check_dir(&county, Encoding::Auto);
    let reg = Arc::new(Registry::new(loaded.data));
    let mut settings = RespondSettings {
        all_must_answer: true,
        ..Default::default()
    };
    settings.ladder.insert(
        "red".into(),
        vec![Step {
            after_mins: 5,
            action: "call".into(),
        }],
    );
    let policy = Policy {
        office: "东溟县防汛办".into(),
        ..Policy::default()
    };
    // On the real clock (the channel's): the warning went out five minutes ago.
    let t0 = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5);
    let warning = targets(
        "flash_flood:FF1",
        1,
        Hazard::FlashFlood,
        Tier::Red,
        MessageKind::Alert,
        vec![contact(1, &received.number), contact(2, &helpless.number)],
    );
    let (s, p) = (settings.clone(), policy.clone());
    store
        .write(move |tx| calls::register(tx, 1, &warning, t0, &s, &p).map(|_| ()))
        .await
        .unwrap();
    // Five minutes on, nobody has answered: the ladder rings both.
    let (r, p) = (reg.clone(), policy.clone());
    let at = t0 + jiff::SignedDuration::from_mins(5);
    let fired = store
        .write(move |tx| calls::fire_due(tx, at, &r, &p))
        .await
        .unwrap();
    assert_eq!((fired.steps, fired.messages), (2, 2));

    let voice = VoiceSettings {
        trunks: vec![trunk(&k, Transport::Udp)],
        rounds: 2,
        linger_secs: 2,
        ..VoiceSettings::default()
    };
    let ch = VoiceChannel::new(
        &voice,
        store.clone(),
        policy.clone(),
        Synth::mandarin(dir.path().join("audio")),
    );
    let (stop_tx, stop) = stormbell::runtime::Trigger::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let driving = tokio::spawn(stormbell::dispatch::drive(ch, stop, wake));
    let rung = common::store_changed_until(60, &store, || {
        let store = store.clone();
        async move {
            store
                .read(|c| Ok(outbox::all_rings(c)?.len() == 2))
                .await
                .unwrap()
        }
    })
    .await;
    assert!(rung, "two rings recorded; kamailio: {}", k.log());
    stop_tx.fire();
    driving.await.unwrap().unwrap();

    let rings = store.read(outbox::all_rings).await.unwrap();
    let mut keys: Vec<(String, Option<String>)> = rings
        .iter()
        .map(|r| (r.person.clone(), r.key.clone()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            ("P00001".to_string(), Some("1".to_string())),
            ("P00002".to_string(), Some("3".to_string()))
        ]
    );
    assert!(
        rings
            .iter()
            .all(|r| r.attempt == 1 && r.lineage == "flash_flood:FF1")
    );

    // Respond reads the keys: both calls answered, the help passed on.
    let (r, s, p) = (reg.clone(), settings.clone(), policy.clone());
    let now = at + jiff::SignedDuration::from_mins(1);
    let (took, _) = store
        .write(move |tx| stormbell::respond::step(tx, &r, &s, &p, now))
        .await
        .unwrap();
    assert_eq!((took.read, took.understood, took.closed), (2, 2, 2));
    assert!(
        took.messages > 0,
        "the help request went to the town and county"
    );
    let answers = common::rows(
        &store,
        "SELECT person, channel, kind, text FROM respond_answer ORDER BY person",
    )
    .await;
    assert_eq!(
        answers,
        vec![
            vec!["P00001", "call", "ack", "1"],
            vec!["P00002", "call", "help", "3"]
        ]
    );
    let open = common::rows(
        &store,
        "SELECT count(*) FROM respond_call WHERE state = 'open'",
    )
    .await;
    assert_eq!(open, vec![vec!["0"]]);
    // A second pass reads nothing again.
    let (r, s, p) = (reg.clone(), settings.clone(), policy.clone());
    let (again, _) = store
        .write(move |tx| stormbell::respond::step(tx, &r, &s, &p, now))
        .await
        .unwrap();
    assert_eq!(again.read, 0);
    let voice_rows = common::rows(
        &store,
        "SELECT state, account FROM dispatch_message WHERE channel = 'voice' ORDER BY id",
    )
    .await;
    assert_eq!(
        voice_rows,
        vec![
            vec!["delivered", "县电信中继"],
            vec!["delivered", "县电信中继"]
        ]
    );
    // What the board counts per person for the warning: both rung, picked up, pressed.
    let per = store
        .read(|c| outbox::rings_by_lineage(c, &["flash_flood:FF1".to_string()]))
        .await
        .unwrap();
    let per = &per["flash_flood:FF1"];
    assert_eq!(per.len(), 2);
    assert!(
        per.values().all(|r| r.rung && r.picked_up && r.pressed),
        "{per:?}"
    );
    let trail = store
        .read(|c| Ok(stormbell::store::audit::verify(c)?))
        .await
        .unwrap();
    assert!(
        matches!(trail, stormbell::store::audit::Verification::Intact { .. }),
        "{trail:?}"
    );
}
}

on_both! {
/// `kill -9` of the daemon while three calls are up, then a restart: each person is rung once
/// more (their call counted as uncertain), each key is recorded once, and no call shows twice.
fn kill_9_mid_call_then_restart_counts_no_call_twice(backend) {
    use std::process::Stdio;
    use stormbell::correlate::tier::Tier;
    use stormbell::dispatch::outbox::{self, Notice};

    let k = Kamailio::start();
    let phones: Vec<Phone> = (0..3)
        .map(|i| {
            Phone::start(
                &k,
                &format!("1370000005{i}"),
                Behaviour::Answer {
                    key: Some('1'),
                    after: Duration::from_secs(4),
                },
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    {
        let store = place.open();
        let numbers: Vec<String> = phones.iter().map(|p| p.number.clone()).collect();
        store
            .write_blocking(move |tx| {
                for (i, n) in numbers.iter().enumerate() {
                    let notice = Notice {
                        decision: 1,
                        lineage: "flash_flood:FF1".into(),
                        version: 1,
                        hazard: "flash_flood".into(),
                        tier: Tier::Red,
                        person: format!("P{i:05}"),
                        mobile: n.clone(),
                        text: "东溟县防汛办紧急电话。上坞村山洪灾害红色预警，请立即转移。".into(),
                        purpose: format!("call:{i}:0"),
                        chase: true,
                    };
                    assert!(outbox::ring(tx, &notice, jiff::Timestamp::now())?.is_some());
                }
                Ok(())
            })
            .unwrap();
        assert!(store.close(Duration::from_secs(10)));
    }
    let config = dir.path().join("stormbell.toml");
    std::fs::write(
        &config,
        format!(
            r#"
{store}
[web]
listen = ""
[dispatch]
reconcile_grace_secs = 2
[dispatch.voice]
rounds = 3
linger_secs = 2
[[dispatch.voice.trunks]]
name = "县电信中继"
proxy = "{proxy}"
user = "office"
password = "{TRUNK_PASSWORD}"
max_calls = 4
calls_per_sec = 10
"#,
            store = place.store_toml(dir.path()),
            proxy = k.addr(),
        ),
    )
    .unwrap();
    let daemon = |log: &str| {
        common::stormbell_bare()
            .args(["--config", config.to_str().unwrap(), "run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let count = |sql: &str| place.count(sql);

    // First run: killed while every phone is listening, before anyone pressed a key.
    let mut first = daemon("first.log");
    for p in &phones {
        p.wait_for("CALL_ESTABLISHED", 30);
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert_eq!(
        count(
            "SELECT count(*) FROM dispatch_message WHERE channel = 'voice' AND state = 'submitting'"
        ),
        3,
        "three calls were up at the kill"
    );
    assert_eq!(
        count("SELECT count(*) FROM dispatch_call"),
        0,
        "none of them ended"
    );
    // The line went silent; each person hangs up.
    for p in &phones {
        p.hang_up();
        p.wait_for("CALL_CLOSED", 10);
    }

    // Second run: the calls go again and are answered.
    let mut second = daemon("second.log");
    place.wait_until(
        "the restart did not finish the calls",
        90,
        dir.path(),
        || {
            assert!(second.try_wait().unwrap().is_none());
            count(
                "SELECT count(*) FROM dispatch_message WHERE channel = 'voice' AND state = 'delivered'",
            ) == 3
                && count("SELECT count(*) FROM respond_answer") == 3
        },
    );
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let status = second.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(status.success(), "{log}");

    // Each person was rung twice (the phones say so), each call was counted once: one ring
    // recorded per message, on its second attempt, the first counted as uncertain.
    for p in &phones {
        assert_eq!(p.count("CALL_ESTABLISHED"), 2, "phone {}", p.number);
    }
    assert_eq!(count("SELECT count(*) FROM dispatch_call"), 3);
    assert_eq!(
        count(
            "SELECT count(*) FROM dispatch_call WHERE outcome = 'acknowledged' AND key = '1' AND attempt = 2"
        ),
        3
    );
    assert_eq!(
        count("SELECT sum(uncertain) FROM dispatch_message WHERE channel = 'voice'"),
        3
    );
    // One answer per person, from their own key.
    assert_eq!(
        count(
            "SELECT count(DISTINCT address) FROM respond_answer WHERE channel = 'call' AND kind = 'ack'"
        ),
        3
    );
    assert_eq!(
        count("SELECT count(*) FROM audit WHERE kind = 'voice.acknowledged'"),
        3
    );
    // `status` counts the same rings.
    let out = common::stormbell_bare()
        .args(["--config", config.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("calls:    3 rung: 3 acknowledged"), "{said}");
}
}

/// A phone (or gateway) that relays keys by SIP INFO, played by SIPp (Debian `sip-tester`)
/// from `tests/sip/info_phone.xml`: its answer offers no `telephone-event`, and the key comes
/// as `application/dtmf-relay` inside the dialog. A trunk that asks no password takes the call
/// straight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sent_as_sip_info_is_the_answer_too() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").is_file(),
        "sipp is not installed: run ./scripts/test (Debian sip-tester)"
    );
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let media = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port() & !1
    };
    let dir = tempfile::tempdir().unwrap();
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sip/info_phone.xml");
    let mut sipp = std::process::Command::new("/usr/bin/sipp")
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-mp", &media.to_string()])
        .args(["-m", "1", "-timeout", "30s", "-nostdin", "-trace_err"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp starts");
    let settings = TrunkSettings {
        name: "PBX".into(),
        proxy: format!("127.0.0.1:{port}"),
        user: "office".into(),
        answer_secs: 5,
        ring_secs: 10,
        ..TrunkSettings::default()
    };
    // SIPp listens once it has started: the first INVITEs may go unanswered (retransmitted).
    let prompt = spoken_prompt(2, Duration::from_secs(2));
    let o = Trunk::new(settings)
        .call("13800000061", &prompt)
        .await
        .unwrap();
    let status = sipp.wait().unwrap();
    let errors: String = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        matches!(
            o,
            Outcome::Acknowledged {
                key: '2',
                via: "info",
                ..
            }
        ),
        "{o:?}; sipp: {errors}"
    );
    // SIPp's own verdict: its scenario ran to the end (our BYE answered), no unexpected message.
    assert!(status.success(), "sipp failed: {errors}");
}

/// A trunk that wants registration: REGISTER answered with digest credentials (kamailio's 401),
/// the binding granted, withdrawn with Expires: 0; a wrong password is refused, saying what to
/// check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trunk_registers_with_its_credentials_and_a_wrong_password_is_named() {
    use stormbell::dispatch::voice::register::Registration;
    let k = Kamailio::start();
    // Two registrations of the trunk user at once (UDP and TCP, as two nodes would have):
    // each reads its own binding's time from the registrar's list of both.
    let (udp, tcp) = (trunk(&k, Transport::Udp), trunk(&k, Transport::Tcp));
    let mut a = Registration::open(&udp).await.unwrap();
    let mut b = Registration::open(&tcp).await.unwrap();
    let granted = a.register(&udp, 300).await.unwrap();
    assert!(
        granted > Duration::from_secs(120) && granted <= Duration::from_secs(300),
        "{granted:?}"
    );
    let granted = b.register(&tcp, 120).await.unwrap();
    assert!(
        granted > Duration::ZERO && granted <= Duration::from_secs(120),
        "{granted:?}"
    );
    // Refreshed on the same registration (the other binding listed first or not), then
    // withdrawn.
    assert!(a.register(&udp, 300).await.unwrap() > Duration::from_secs(120));
    assert_eq!(a.register(&udp, 0).await.unwrap(), Duration::ZERO);
    assert_eq!(b.register(&tcp, 0).await.unwrap(), Duration::ZERO);
    let wrong = TrunkSettings {
        password: "not-the-password".into(),
        ..trunk(&k, Transport::Udp)
    };
    let e = Registration::open(&wrong)
        .await
        .unwrap()
        .register(&wrong, 300)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refused our credentials to register") && e.contains("\"office\""),
        "{e}"
    );
}
