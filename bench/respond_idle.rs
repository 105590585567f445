//! Escalation timers at rest ("escalation timers for 50,000 persons cost under 1%
//! CPU while idle"). A red warning calls `--persons` responsible persons over the synthetic
//! county; each call's ladder (four steps in the default configuration) is stored as pending
//! steps. The respond stage then runs as the daemon runs it (reading SMS replies, loudspeaker
//! alarms and due steps every second) for `--secs` seconds before any step is due, and this
//! process's CPU time over that span is printed as a share of one core.
//!
//!     cargo run --release --example respond_idle -- --persons 50000 --secs 30

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use stormbell::respond::calls;
use stormbell::runtime::clock::SystemClock;

/// User + system CPU time of this process.
fn cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we give it and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let persons: usize = common::arg("--persons").map_or(Ok(50_000), |s| s.parse())?;
    let secs: u64 = common::arg("--secs").map_or(Ok(30), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let (store, reg) = common::county_store(dir.path())?;
    let cfg = stormbell::config::Config::load(None, &Default::default())?;
    let (policy, settings) = (cfg.dispatch_policy(), cfg.respond.clone());
    let t = common::county_targets(&reg, persons);
    let (p2, s2) = (policy.clone(), settings.clone());
    let t0 = Instant::now();
    store
        .write(move |tx| {
            calls::register(tx, 1, &t, jiff::Timestamp::now(), &s2, &p2)?;
            Ok::<_, anyhow::Error>(())
        })
        .await?;
    let (calls_n, steps): (i64, i64) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM respond_call), (SELECT count(*) FROM respond_step WHERE state = 'pending')",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await?;
    println!(
        "{calls_n} calls, {steps} pending escalation steps (registered in {:.1} s); first due in {} min",
        t0.elapsed().as_secs_f64(),
        settings
            .ladder
            .get("red")
            .and_then(|l| l.first())
            .map_or(0, |s| s.after_mins)
    );
    let (stop_tx, stop) = stormbell::runtime::Trigger::new();
    let respond = tokio::spawn(stormbell::respond::run(
        store.clone(),
        reg.clone(),
        settings,
        policy,
        Arc::new(SystemClock::new()),
        Arc::new(tokio::sync::Notify::new()),
        stop,
    ));
    // Let the first passes (and SQLite's caches) settle, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (c0, w0) = (cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (c1, w1) = (cpu(), w0.elapsed());
    stop_tx.fire();
    respond.await??;
    let still: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM respond_step WHERE state = 'pending'",
                (),
                |r| r.get(0),
            )?)
        })
        .await?;
    println!(
        "idle {:.1} s: CPU {:.3} s = {:.3} % of one core; {} steps still pending (none was due)",
        w1.as_secs_f64(),
        (c1 - c0).as_secs_f64(),
        100.0 * (c1 - c0).as_secs_f64() / w1.as_secs_f64(),
        still
    );
    Ok(())
}
