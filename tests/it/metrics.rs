//! `/metrics` over loopback HTTP, checked by Prometheus's own `promtool check metrics` (Debian
//! `prometheus`): a warning in force, its queued texts, its calls, one answered three minutes
//! after the call, and the counts each family must show.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::io::Write;
use std::process::{Command, Stdio};

use jiff::SignedDuration;

on_both! {
    async fn metrics_are_valid_prometheus_text_and_count_what_the_store_holds(backend) {
        let place = Place::new(backend);
        let store = place.open();
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
                    (),
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
                    (),
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
        // Nothing personal: no number or person id in any series' name or labels (the values are
        // counts and bytes, and may hold any digits).
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            assert!(!series.contains("139") && !series.contains("P33"), "{line}");
        }
    }
}

on_both! {
/// `stormbell_audit_chain_ok` goes to 0 at the next scrape when the trail's last verified row
/// is rewritten, and at the first scrape of a new watch when a row deep in the trail was.
fn the_audit_chain_figure_falls_when_the_trail_is_rewritten(backend) {
    use stormbell::store::audit;
    use stormbell::web::metrics::{ChainWatch, render_upkeep};
    let place = Place::new(backend);
    let store = place.open();
    let db = store.path().to_path_buf();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    for i in 0..20 {
        let e = audit::Entry::now(
            &tz,
            "test",
            "test.entry",
            format!("e{i}"),
            serde_json::json!({}),
        );
        store
            .write_blocking(move |tx| Ok(audit::append(tx, &e)?))
            .unwrap();
    }
    let now = jiff::Timestamp::now();
    let scrape = |w: &ChainWatch| {
        store
            .read_blocking(|c| render_upkeep(c, w, &db, now))
            .unwrap()
    };
    let watch = ChainWatch::default();
    let first = scrape(&watch);
    assert!(first.contains("stormbell_audit_chain_ok 1"), "{first}");
    assert!(first.contains("stormbell_audit_entries 20"), "{first}");
    // A row deep in the trail: a new watch (a restarted daemon) verifies the whole chain.
    place.disarm_audit(&["UPDATE"]);
    let rewrite = "UPDATE audit SET subject = 'rewritten' WHERE seq = 5";
    place.raw(rewrite, rewrite, &[]).unwrap();
    let fresh = scrape(&ChainWatch::default());
    assert!(fresh.contains("stormbell_audit_chain_ok 0"), "{fresh}");
    // The row the running watch last verified, rewritten with its hash recomputed elsewhere:
    // its hash no longer matches what the watch holds.
    place
        .raw(
            "UPDATE audit SET hash = ?1 WHERE seq = 20",
            "UPDATE audit SET hash = $1 WHERE seq = 20",
            &[audit::GENESIS],
        )
        .unwrap();
    let again = scrape(&watch);
    assert!(again.contains("stormbell_audit_chain_ok 0"), "{again}");
}
}
