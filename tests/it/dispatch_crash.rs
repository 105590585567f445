//! `kill -9` of the daemon in the middle of sending 10,000 warnings, then a restart: nobody
//! is lost, and every message a phone got twice is one the outbox counted as uncertain — at
//! most the SMPP windows' worth (binds × window).

use crate::common;
use crate::common::backend::{Place, on_both};

use std::process::{Child, Stdio};
use std::time::Duration;

use common::dispatch::{contact, targets};
use common::smsc::Smsc;
use jiff::Timestamp;
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::dispatch::outbox::{self, Policy};

const N: usize = 10_000;
const BINDS: usize = 2;
const WINDOW: usize = 50;

fn daemon(config: &std::path::Path, log: &std::path::Path) -> Child {
    let mut c = common::stormbell_bare();
    c.args(["--config", config.to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

on_both! {
fn kill_9_mid_send_then_restart_loses_nobody_and_bounds_duplicates(backend) {
    let smsc = Smsc::start(50);
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let db_count = |sql: &str| place.count(sql);
    // 10,000 responsible persons warned by one red flash-flood decision (synthetic numbers).
    {
        let store = place.open();
        let contacts: Vec<_> = (0..N)
            .map(|i| contact(i, &format!("137{:08}", 30_000_000 + i)))
            .collect();
        let mut t = targets(
            "flash_flood:331098",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            contacts,
        );
        // One short line: one part per message.
        t.shelters.clear();
        let e = store
            .write_blocking(move |tx| {
                outbox::enqueue(tx, 1, &t, Timestamp::now(), &Policy::default())
            })
            .unwrap();
        assert_eq!(e.queued, N);
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
reconcile_grace_secs = 5
{account}"#,
            store = place.store_toml(dir.path()),
            account =
                smsc.account_toml(&format!("binds = {BINDS}\nwindow = {WINDOW}\ntps = 100000"))
        ),
    )
    .unwrap();
    let parts = db_count("SELECT sum(segments) FROM dispatch_message") as u64;

    // First run: killed without warning once about a third has gone out.
    let mut first = daemon(&config, &dir.path().join("first.log"));
    common::wait_until(
        common::Said(|| format!("too slow: {} of {parts}", smsc.status()["accepted"])),
        120,
        smsc.log.path(),
        || {
            let alive = first.try_wait().unwrap().is_none();
            let log = dir.path().join("first.log");
            assert!(
                alive,
                "the daemon exited: {}",
                std::fs::read_to_string(log).unwrap()
            );
            smsc.status()["accepted"].as_u64().unwrap() >= parts / 3
        },
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let at_kill = smsc.status()["accepted"].as_u64().unwrap();
    assert!(
        at_kill < parts,
        "the kill must land mid-send ({at_kill} of {parts})"
    );
    let left = db_count(
        "SELECT count(*) FROM dispatch_message WHERE state = 'submitting'",
    );
    assert!(
        left > 0 && left <= (BINDS * WINDOW) as i64,
        "rows mid-send at the kill: {left}"
    );

    // Second run: picks up, finishes, stops cleanly on SIGTERM.
    let mut second = daemon(&config, &dir.path().join("second.log"));
    place.wait_until("the restart did not finish", 120, dir.path(), || {
        assert!(second.try_wait().unwrap().is_none());
        db_count(
            "SELECT count(*) FROM dispatch_message WHERE state IN ('queued', 'submitting', 'reconciling')",
        ) == 0
    });
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let status = second.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("waits 5s for a receipt"),
        "the restart says what it re-sent: {log}"
    );

    // Every phone got the warning at least once.
    let phones = smsc.phones();
    let mut per: std::collections::HashMap<String, usize> = Default::default();
    for p in &phones {
        *per.entry(p["dest"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per.len(), N, "every recipient");
    let duplicates: usize = per.values().map(|c| c - 1).sum();
    // Of the rows mid-send at the kill, those a receipt proved were not sent again; the rest
    // were, and were counted.
    let recovered = db_count(
        "SELECT count(*) FROM dispatch_message WHERE last_error = 'outcome recovered from a receipt after a restart'",
    );
    let uncertain = db_count("SELECT sum(uncertain) FROM dispatch_message");
    assert_eq!(
        recovered + uncertain,
        left,
        "every row mid-send was either proven or re-sent"
    );
    assert!(
        duplicates as i64 <= uncertain,
        "{duplicates} duplicates but only {uncertain} counted as uncertain"
    );
    assert!(
        uncertain <= (BINDS * WINDOW) as i64,
        "bounded by the windows: {uncertain}"
    );
    assert!(
        recovered > 0,
        "receipts after the restart prove most of them got through"
    );
    assert_eq!(
        db_count(
            "SELECT count(*) FROM dispatch_message WHERE state = 'failed'"
        ),
        0
    );
    eprintln!(
        "kill -9 at {at_kill}/{parts} parts: {left} mid-send; {recovered} proven by receipts, {uncertain} re-sent, {duplicates} phones got it twice"
    );
}
}
