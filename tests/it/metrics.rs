//! `/metrics` over loopback HTTP, checked by Prometheus's own `promtool check metrics` (Debian
//! `prometheus`): a warning in force, its queued texts, its calls, one answered three minutes
//! after the call, and the counts each family must show.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use jiff::SignedDuration;
use stormbell::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text_and_count_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("m.db")).unwrap();
    let reg = common::county::registry(&store);
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    let (policy, settings) = (cfg.dispatch_policy(), cfg.respond.clone());
    let (s2, r2, c2, p2, t2) = (
        store.clone(),
        reg.clone(),
        cfg.clone(),
        policy.clone(),
        settings.clone(),
    );
    let warned = tokio::task::spawn_blocking(move || {
        common::county::warn_zone(&s2, r2, &c2, &p2, &t2, 38.0)
    })
    .await
    .unwrap();
    // One person answers three minutes after the call.
    let person = warned.contacts[0].person.clone();
    let at = warned.at + SignedDuration::from_mins(3);
    let s3 = settings.clone();
    store
        .write(move |tx| {
            let zone = [common::county::ZONE.to_string()];
            stormbell::respond::calls::answered(tx, &person, &zone, 1, at, &s3)
        })
        .await
        .unwrap();
    // Their own calls are answered (one per place they answer for); the co-responsibles'
    // are covered, which is not an answer of theirs.
    let answered = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM respond_call WHERE state = 'answered'",
                [],
                |r| r.get::<_, i64>(0),
            )?)
        })
        .await
        .unwrap() as f64;

    // A telemetry listener refused two frames with a bad CRC.
    for _ in 0..2 {
        store
            .write(|tx| {
                Ok(stormbell::feeds::state::refused(
                    tx,
                    "rtu",
                    "crc",
                    "2024-07-09T00:00:00Z",
                    "CRC 7B54 sent, D001 computed",
                )?)
            })
            .await
            .unwrap();
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (server, stop) = common::serve_web(listener, &store, None, None);
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = r.text().await.unwrap();
    stop.fire();
    server.await.unwrap().unwrap();

    // Prometheus's own checker (format and naming lints).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian prometheus; scripts/test installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let value = |line_start: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("{line_start} in\n{body}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(value("stormbell_warnings_active{hazard=\"flash_flood\",tier=\"orange\"}") >= 1.0);
    assert_eq!(
        value("stormbell_feed_refused_total{feed=\"rtu\",reason=\"crc\"}"),
        2.0
    );
    let queued: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM dispatch_message WHERE channel = 'sms' AND state = 'queued'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert!(queued > 0);
    assert_eq!(
        value("stormbell_messages{channel=\"sms\",state=\"queued\"}"),
        queued as f64
    );
    // The person's calls (one per place they answer for), answered after 180 s: in the 300 s
    // bucket, not the 120 s one.
    assert!(answered >= 1.0);
    assert_eq!(value("stormbell_calls{state=\"answered\"}"), answered);
    assert_eq!(value("stormbell_ack_seconds_bucket{le=\"120\"}"), 0.0);
    assert_eq!(value("stormbell_ack_seconds_bucket{le=\"300\"}"), answered);
    assert_eq!(value("stormbell_ack_seconds_count"), answered);
    assert_eq!(value("stormbell_ack_seconds_sum"), 180.0 * answered);
    assert!(value("stormbell_escalation_steps{action=\"resend\",state=\"pending\"}") >= 1.0);
    // Nothing personal.
    assert!(!body.contains("139") && !body.contains("P33"), "{body}");
}
