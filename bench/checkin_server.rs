//! The check-in endpoint under load: a store holding the synthetic county, a red
//! warning calling `--persons` responsible persons, each with a check-in link; the web server
//! on 127.0.0.1; optionally the SMS channel sending those persons' texts to an SMSC at the
//! same time ("while dispatch is running"). Writes one line per link, `path<TAB>form body`, for
//! the load generator (wrk, `bench/checkin.lua`), prints `listening ADDR`, and serves until
//! killed.
//!
//!     cargo run --release --example checkin_server -- --persons 20000 --out /tmp/reqs.txt [--smpp HOST:PORT]

#[path = "common.rs"]
mod common;

use std::sync::Arc;

use stormbell::dispatch::outbox::{self, Policy};
use stormbell::dispatch::sms::{AccountSettings, SmsChannel};
use stormbell::respond::calls::{self, RespondSettings};
use stormbell::runtime::clock::SystemClock;
use stormbell::web::checkin::{Checkin, Limits};

/// The allocator the daemon runs with (src/main.rs), so the figures are the daemon's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The store names writes and commits that hold the others up (warnings, on stderr).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .init();
    let persons: usize = common::arg("--persons").map_or(Ok(20_000), |s| s.parse())?;
    let out = common::arg("--out").unwrap_or_else(|| "/tmp/checkin-requests.txt".into());
    let dir = tempfile::tempdir()?;
    let (store, reg) = common::county_store(dir.path())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let policy = Policy {
        office: "东溟县防汛办".into(),
        link_base: Some(format!("{base}/r/")),
        cap_per_person: 100,
        ..Policy::default()
    };
    // Every village of the county, the persons spread over them (synthetic numbers).
    let t = common::county_targets(&reg, persons);
    let settings = RespondSettings {
        all_must_answer: true,
        ..RespondSettings::default()
    };
    let (p2, s2) = (policy.clone(), settings.clone());
    store
        .write(move |tx| {
            outbox::enqueue(tx, 1, &t, jiff::Timestamp::now(), &p2)?;
            calls::register(tx, 1, &t, jiff::Timestamp::now(), &s2, &p2)?;
            Ok::<_, anyhow::Error>(())
        })
        .await?;
    let checkin = Checkin::new(
        store.clone(),
        reg.clone(),
        settings,
        policy.clone(),
        // All the load comes from one address here; the per-token limit still applies.
        Limits {
            per_ip_per_min: 100_000_000,
            ..Limits::default()
        },
        Arc::new(SystemClock::new()),
    )
    .await?;
    let tokens: Vec<String> = store
        .read(|c| {
            let mut st = c.prepare(
                "SELECT token FROM dispatch_message WHERE token IS NOT NULL ORDER BY id",
            )?;
            let r = st
                .query_map((), |r| r.get(0))?
                .collect::<stormbell::store::sql::Result<Vec<String>>>()?;
            Ok(r)
        })
        .await?;
    let mut lines = String::new();
    for t in &tokens {
        let csrf = checkin.csrf(t).unwrap_or_default();
        lines.push_str(&format!("/r/{t}\tkind=ack&csrf={csrf}\n"));
    }
    std::fs::write(&out, lines)?;
    let (stop_tx, stop) = stormbell::runtime::Trigger::new();
    // Dispatch at the same time, when an SMSC is given.
    if let Some(smpp) = common::arg("--smpp") {
        let account = AccountSettings {
            name: "main".into(),
            address: smpp,
            system_id: "county".into(),
            password: "secret".into(),
            system_type: String::new(),
            source: "12379".into(),
            binds: 2,
            window: 100,
            tps: 1000,
            prefixes: vec![],
            backup: false,
            response_timeout_secs: 10,
            enquire_secs: 30,
            ..Default::default()
        };
        tokio::spawn(stormbell::dispatch::drive(
            SmsChannel::new(vec![account], store.clone(), policy.clone()),
            stop.clone(),
            Arc::new(tokio::sync::Notify::new()),
        ));
    }
    let web = stormbell::web::WebSettings {
        title: "东溟县防汛办".into(),
        sender: "fx@example.cn".into(),
        base: base.clone(),
    };
    println!("listening {base} links {}", tokens.len());
    let rx = stop.clone();
    let server = stormbell::web::serve(listener, store.clone(), web, Some(checkin), None, rx);
    tokio::select! {
        r = server => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    stop_tx.fire();
    let answered: i64 = store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM respond_answer", (), |r| r.get(0))?))
        .await?;
    eprintln!("answers recorded: {answered}");
    Ok(())
}
