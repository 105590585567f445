//! SMS dispatch benchmarks, against an SMSC on 127.0.0.1 (bench/sms_vs_smpplib.sh
//! starts the node-smpp one from tests/smsc and runs every mode).
//!
//! cargo run --release --example sms_throughput -- MODE [options]
//!
//!   raw --smpp ADDR --window W [--binds B] [--count N]
//!       N UCS-2 messages (one part each, no receipts) over B binds, W in flight per bind:
//!       the session layer alone.
//!   outbox --smpp ADDR --window W [--binds B] [--count N] [--tps T] [--db URL [--nodes K]]
//!       N warnings through the whole path: rows in the outbox, claimed, sent, outcomes
//!       committed, receipts stored (SQLite in a temporary directory, or `--db URL`: a
//!       PostgreSQL database, empty). `--nodes K` (PostgreSQL): K nodes share the outbox, each
//!       its own store (writer connection, readers) and its own B binds, claiming under its
//!       own name, as K `stormbell run` would (in one process here). `--tps T`: each node's
//!       share of the carrier's contract (as `tps` in its account settings; unlimited if
//!       not given).
//!   rate --smpp ADDR --tps T --seconds S
//!       the account rate limiter: messages accepted per second over S seconds at T TPS.
//!   enqueue --count N [--no-links] [--db URL]
//!       one decision for N recipients written to the outbox in one transaction, each
//!       text with its check-in link (unless --no-links).
//!   phases --count N [--batch B]
//!       the store writer's work per text, phase by phase, with no network: claims of B,
//!       outcomes recorded in batches of B, receipts stored in batches of B (what the
//!       durable path asks of the writer, each phase timed alone).
//!
//! Output: one JSON object per run on standard output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use stormbell::correlate::assess::PlaceKind;
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::{Contact, TargetPlace, Targets};
use stormbell::dispatch::outbox::{self, Policy};
use stormbell::dispatch::sms::session::{BindSettings, Session};
use stormbell::dispatch::sms::{AccountSettings, SmsChannel, encode, pdu};
use stormbell::store::Store;

/// The allocator the daemon runs with (src/main.rs), so the figures are the daemon's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The store `--db` names (a PostgreSQL URL: an empty database of its own), else a SQLite file
/// at `default`.
fn open(args: &[String], default: &std::path::Path) -> Store {
    match arg(args, "--db") {
        Some(db) => stormbell::store::Location::parse(&db).open().unwrap(),
        None => Store::open(default).unwrap(),
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The whole machine's busy time so far, in core-seconds (Linux's `/proc/stat`, clock ticks
/// of 1/100 s): read around a run, what every process on it spent (the SMSC, the database
/// server, this one), which on a machine shared by all three bounds the rate any design of
/// the store could reach. `None` where there is no `/proc/stat`.
fn machine_busy() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy = ticks.iter().take(8).sum::<f64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy / 100.0)
}

fn num(args: &[String], name: &str, default: usize) -> usize {
    arg(args, name).map_or(default, |v| v.parse().expect("a number"))
}

/// The benchmark message: a red flash-flood warning's first 70 characters (one UCS-2 part).
const TEXT: &str = "【东溟县防汛办】上坞村山洪灾害红色预警：请立即组织危险区群众转移至溪口镇中心小学，老弱病残优先。回复1收到";

fn targets(n: usize) -> Targets {
    Targets {
        lineage: "flash_flood:331098".into(),
        version: 1,
        hazard: Hazard::FlashFlood,
        tier: Tier::Red,
        send: MessageKind::Alert,
        raises: true,
        restricted: false,
        identifiers: vec![],
        places: vec![TargetPlace {
            kind: PlaceKind::Village,
            id: "331098101201".into(),
            name: "上坞村".into(),
            tier: Tier::Red,
            evacuate: 40,
        }],
        evacuate: 40,
        contacts: (0..n)
            .map(|i| Contact {
                person: format!("P{i:06}"),
                name: format!("责任人{i}"),
                mobile: format!("13{}{:08}", 5 + i % 5, i),
                level: "village".into(),
                role: "村级责任人".into(),
                target: "331098101201".into(),
                deputy: None,
            })
            .collect(),
        terminals: vec![],
        shelters: vec![],
        gaps: vec![],
        relayed: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match mode.as_str() {
        "raw" => rt.block_on(raw(&args)),
        "outbox" => rt.block_on(through_outbox(&args)),
        "rate" => rt.block_on(rate(&args)),
        "enqueue" => enqueue(&args),
        "phases" => phases(&args),
        _ => {
            eprintln!(
                "usage: sms_throughput raw|outbox|rate|enqueue|phases [options] (see the file's header)"
            );
            std::process::exit(2);
        }
    }
}

async fn raw(args: &[String]) {
    let smpp = arg(args, "--smpp").expect("--smpp");
    let window = num(args, "--window", 10);
    let binds = num(args, "--binds", 1);
    let count = num(args, "--count", 10_000);
    let mut sessions = Vec::new();
    for _ in 0..binds {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        std::mem::forget(rx);
        let s = Session::bind(
            BindSettings {
                address: smpp.clone(),
                system_id: "county".into(),
                password: "secret".into(),
                system_type: String::new(),
                window,
                response_timeout: Duration::from_secs(30),
                enquire_every: Duration::from_secs(60),
                give_up: Duration::from_secs(60),
            },
            tx,
        )
        .await
        .expect("bind");
        sessions.push(s);
    }
    let enc = encode::encode(TEXT, 1);
    assert_eq!(enc.parts.len(), 1);
    let octets = enc.parts[0].clone();
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    // W workers per bind, each submitting and waiting: W in flight per bind.
    for s in &sessions {
        for _ in 0..window {
            let (s, next, octets) = (s.clone(), next.clone(), octets.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return ok;
                    }
                    let sm = pdu::SubmitSm {
                        source_ton: 5,
                        source: "12379".into(),
                        dest_ton: 1,
                        dest_npi: 1,
                        dest: format!("8613{}{:08}", 5 + i % 5, i),
                        data_coding: 8,
                        short_message: octets.clone(),
                        ..Default::default()
                    };
                    if let Ok(r) = s.submit(&sm).await
                        && r.status == 0
                    {
                        ok += 1;
                    }
                }
            }));
        }
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    for s in &sessions {
        s.unbind().await;
    }
    println!(
        "{{\"mode\": \"raw\", \"window\": {window}, \"binds\": {binds}, \"count\": {count}, \"accepted\": {ok}, \"seconds\": {secs:.3}, \"per_sec\": {:.0}}}",
        ok as f64 / secs
    );
}

async fn through_outbox(args: &[String]) {
    let smpp = arg(args, "--smpp").expect("--smpp");
    let window = num(args, "--window", 100);
    let binds = num(args, "--binds", 1);
    let count = num(args, "--count", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let store = open(args, &dir.path().join("bench.db"));
    let t = targets(count);
    store
        .write(move |tx| outbox::enqueue(tx, 1, &t, Timestamp::now(), &Policy::default()))
        .await
        .unwrap();
    let parts: i64 = store
        .read(|c| {
            Ok(
                c.query_row("SELECT sum(segments) FROM dispatch_message", (), |r| {
                    r.get(0)
                })?,
            )
        })
        .await
        .unwrap();
    let account = AccountSettings {
        name: "bench".into(),
        address: smpp,
        system_id: "county".into(),
        password: "secret".into(),
        system_type: String::new(),
        source: "12379".into(),
        binds,
        window,
        tps: num(args, "--tps", 1_000_000) as u32,
        prefixes: vec![],
        backup: false,
        response_timeout_secs: 30,
        enquire_secs: 60,
        ..Default::default()
    };
    let nodes = num(args, "--nodes", 1);
    let (stop_tx, stop) = stormbell::runtime::Trigger::new();
    let mut tasks = Vec::new();
    let busy = machine_busy();
    let start = Instant::now();
    for n in 0..nodes {
        let node = if nodes == 1 {
            store.clone()
        } else {
            let s = open(args, &dir.path().join("bench.db"));
            s.name_node(&format!("n{n}"));
            s
        };
        let ch = SmsChannel::new(vec![account.clone()], node, Policy::default());
        tasks.push(tokio::spawn(stormbell::dispatch::drive(
            ch,
            stop.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )));
    }
    loop {
        // The oldest of each state over an index, not a count of the table: the bench's own
        // look every 5 ms must not load the server it measures (a count was a fifth of
        // PostgreSQL's time on 5,000 texts).
        let left: bool = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT min(created) FROM dispatch_message
                             WHERE channel = 'sms' AND state = 'queued') IS NOT NULL
                         OR (SELECT min(created) FROM dispatch_message
                             WHERE channel = 'sms' AND state = 'submitting') IS NOT NULL",
                    (),
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        if !left {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let core_s = busy
        .zip(machine_busy())
        .map_or(-1.0, |(before, after)| after - before);
    stop_tx.fire();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Every text claimed once: as many claims as texts (a row claimed by two nodes would be
    // counted by both).
    let twice: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM dispatch_message WHERE attempts > 1 OR uncertain > 0",
                (),
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    println!(
        "{{\"mode\": \"outbox\", \"nodes\": {nodes}, \"window\": {window}, \"binds\": {binds}, \"messages\": {count}, \"parts\": {parts}, \"seconds\": {secs:.3}, \"parts_per_sec\": {:.0}, \"sent_again\": {twice}, \"machine_core_s\": {core_s:.2}}}",
        parts as f64 / secs
    );
}

async fn rate(args: &[String]) {
    let smpp = arg(args, "--smpp").expect("--smpp");
    let tps = num(args, "--tps", 100);
    let seconds = num(args, "--seconds", 20);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("rate.db")).unwrap();
    // More than the run can send; single-part English texts keep parts = messages.
    let n = tps * (seconds + 10);
    let t = targets(n);
    let policy = Policy {
        lang: "en".into(),
        office: "Dongming".into(),
        ..Policy::default()
    };
    let p2 = policy.clone();
    store
        .write(move |tx| outbox::enqueue(tx, 1, &t, Timestamp::now(), &p2))
        .await
        .unwrap();
    let account = AccountSettings {
        name: "rate".into(),
        address: smpp,
        system_id: "county".into(),
        password: "secret".into(),
        system_type: String::new(),
        source: "12379".into(),
        binds: 2,
        window: 50,
        tps: tps as u32,
        prefixes: vec![],
        backup: false,
        response_timeout_secs: 30,
        enquire_secs: 60,
        ..Default::default()
    };
    let (stop_tx, stop) = stormbell::runtime::Trigger::new();
    let ch = SmsChannel::new(vec![account], store.clone(), policy);
    let task = tokio::spawn(stormbell::dispatch::drive(
        ch,
        stop,
        Arc::new(tokio::sync::Notify::new()),
    ));
    let count = |store: Store| async move {
        store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT coalesce(sum(segments), 0) FROM dispatch_message WHERE state IN ('accepted', 'delivered')",
                    (),
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await
            .unwrap()
    };
    // Skip the first two seconds (binding, the first burst), then count over `seconds`.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a, t0) = (count(store.clone()).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
    let (b, secs) = (count(store.clone()).await, t0.elapsed().as_secs_f64());
    stop_tx.fire();
    task.await.unwrap().unwrap();
    let achieved = (b - a) as f64 / secs;
    println!(
        "{{\"mode\": \"rate\", \"tps\": {tps}, \"seconds\": {secs:.2}, \"parts\": {}, \"achieved\": {achieved:.2}, \"error_pct\": {:.2}}}",
        b - a,
        (achieved - tps as f64) / tps as f64 * 100.0
    );
}

fn enqueue(args: &[String]) {
    let count = num(args, "--count", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = open(args, &dir.path().join("enq.db"));
    let t = targets(count);
    // As a county sends a red warning: every text carries its person's check-in link (a
    // token and a link row each), unless `--no-links`.
    let policy = Policy {
        link_base: (!args.iter().any(|a| a == "--no-links"))
            .then(|| "https://fx.example.cn/r/".to_string()),
        ..Policy::default()
    };
    let start = Instant::now();
    let e = store
        .write_blocking(move |tx| {
            let e = outbox::enqueue(tx, 1, &t, Timestamp::now(), &policy)?;
            Ok((e, start.elapsed().as_secs_f64()))
        })
        .unwrap();
    let (e, rows) = e;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(e.queued, count);
    // "rows": the inserts alone; the rest of "seconds" is the commit (WAL written, synced).
    println!(
        "{{\"mode\": \"enqueue\", \"recipients\": {count}, \"seconds\": {secs:.3}, \"rows_s\": {rows:.3}, \"per_sec\": {:.0}}}",
        count as f64 / secs
    );
}

fn phases(args: &[String]) {
    let count = num(args, "--count", 20_000);
    let batch = num(args, "--batch", 50);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("phases.db")).unwrap();
    let t = targets(count);
    let policy = Policy::default();
    let p = policy.clone();
    let now = Timestamp::now();
    store
        .write_blocking(move |tx| outbox::enqueue(tx, 1, &t, now, &p))
        .unwrap();
    let timed = |name: &str, f: &mut dyn FnMut() -> usize| {
        let start = Instant::now();
        let mut n = 0;
        loop {
            let k = f();
            if k == 0 {
                break;
            }
            n += k;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"mode\": \"phases\", \"phase\": \"{name}\", \"texts\": {n}, \"batch\": {batch}, \"us_per_text\": {:.1}}}",
            secs * 1e6 / n.max(1) as f64
        );
    };
    let mut claimed: Vec<i64> = Vec::new();
    timed("claim", &mut || {
        let p = policy.clone();
        let c = store
            .write_blocking(move |tx| outbox::claim(tx, "sms", "bench", batch, now, &p))
            .unwrap();
        claimed.extend(c.iter().map(|m| m.id));
        c.len()
    });
    let mut chunks = claimed.chunks(batch);
    timed("record", &mut || {
        let Some(ids) = chunks.next() else { return 0 };
        let outcomes: Vec<(i64, outbox::Outcome)> = ids
            .iter()
            .map(|id| {
                (
                    *id,
                    outbox::Outcome::Accepted {
                        account: "bench".into(),
                        parts: vec![(1, 1, format!("M{id:08}"))],
                        uncertain: false,
                    },
                )
            })
            .collect();
        let (p, n) = (policy.clone(), outcomes.len());
        store
            .write_blocking(move |tx| outbox::record(tx, &outcomes, now, &p))
            .unwrap();
        n
    });
    let mut chunks = claimed.chunks(batch);
    timed("receipt", &mut || {
        let Some(ids) = chunks.next() else { return 0 };
        let ids = ids.to_vec();
        let n = ids.len();
        store
            .write_blocking(move |tx| {
                for id in &ids {
                    let key = outbox::ReceiptIds::Exact.receipt_key(&format!("M{id:08}"));
                    outbox::receipt_by_key(tx, "bench", &key, "DELIVRD", true, false, now)?;
                }
                Ok(())
            })
            .unwrap();
        n
    });
}
