//! `stormbell replay`: a recorded storm as a drill, through the whole pipeline on a simulated
//! clock (`stormbell::drill`), with its output folder for the after-action review.

use std::path::PathBuf;

use clap::Args;

use stormbell::config::Config;
use stormbell::drill::{self, Drill, Speed};
use stormbell::store::Store;

use super::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The scenario folder (scenario.toml, feeds/, docs/), e.g. fixtures/scenarios/lekima-2019.
    #[arg(long, value_name = "DIR")]
    scenario: PathBuf,
    /// Output folder: cap/, dispatch.jsonl, responses.jsonl, summary.json, report.md,
    /// reports/ (default: ./replay-<scenario folder name>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Simulated seconds per real second, or `max` (event by event, as fast as the work
    /// allows, and the same outputs byte for byte every time).
    #[arg(long, default_value = "max", value_name = "N|max")]
    speed: Speed,
    /// The county registry folder to import (default: the one the scenario's [drill] names).
    #[arg(long, value_name = "DIR")]
    registry: Option<PathBuf>,
    /// Language of the reports (zh-CN or en).
    #[arg(long, default_value = "zh-CN")]
    lang: String,
}

pub fn run(args: ReplayArgs, db: Option<PathBuf>, cfg: &Config) -> u8 {
    let drill = match Drill::load(&args.scenario, args.registry.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("stormbell replay: {e:#}");
            return EXIT_USAGE;
        }
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let name = args
            .scenario
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "scenario".into());
        PathBuf::from(format!("replay-{name}"))
    });
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("stormbell replay: {}: {e}", out.display());
        return EXIT_USAGE;
    }
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("drill.log"))
    {
        Ok(f) => super::init_logging_to(cfg, std::sync::Mutex::new(f)),
        Err(e) => {
            eprintln!("stormbell replay: {}: {e}", out.join("drill.log").display());
            return EXIT_USAGE;
        }
    }
    match replay(&drill, &out, db, args.speed, &args.lang, cfg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stormbell replay: {e:#}");
            EXIT_PROBLEMS
        }
    }
}

fn replay(
    drill: &Drill,
    out: &std::path::Path,
    db: Option<PathBuf>,
    speed: Speed,
    lang: &str,
    cfg: &Config,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    // The drill's own database, beside its output, unless one is named: never the office's.
    let db = match db {
        Some(d) => stormbell::store::Location::parse(&d.to_string_lossy()),
        None => stormbell::store::Location::Sqlite(out.join("drill.db")),
    };
    let store = db.open()?;
    // On PostgreSQL several nodes may replay the same drill as a hot standby: the one holding
    // the leader lease runs it, the others wait and resume it if that node dies.
    let lease = match &db {
        stormbell::store::Location::Postgres(url) => Some(stormbell::daemon::Lease {
            url: url.clone(),
            settings: cfg.store.lease(),
        }),
        stormbell::store::Location::Sqlite(_) => None,
    };
    let settings = cfg.pipeline()?;
    let tz = settings.tz.clone();
    let local = |t: jiff::Timestamp| t.to_zoned(tz.clone()).strftime("%m-%d %H:%M").to_string();
    println!("stormbell replay — {}", drill.scenario.name);
    println!(
        "  {} → {} (Beijing time), registry {}, database {}",
        local(drill.scenario.start),
        local(drill.scenario.end),
        drill.registry.display(),
        db
    );
    if let Some(l) = &lease {
        println!(
            "  node {}: runs the drill while it holds the leader lease ({} s), stands by otherwise",
            l.settings.node,
            l.settings.ttl.as_secs()
        );
    }
    let rt = match speed {
        // One thread: the simulated clock decides the order of everything.
        Speed::Max => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Speed::Times(_) => super::runtime()?,
    };
    let started = std::time::Instant::now();
    let ran = rt.block_on(async {
        let (stop_tx, stop_rx) = stormbell::runtime::Trigger::new();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop_tx.fire();
            }
        });
        run_watched(
            &settings,
            drill,
            &store,
            speed,
            None,
            lease.as_ref(),
            stop_rx,
        )
        .await
    })?;
    let ran = match ran {
        drill::Led::Ran(ran) => ran,
        drill::Led::SteppedDown(why) => {
            anyhow::bail!("{why}: this node stepped down; the node leading now goes on")
        }
    };
    if ran.already_finished {
        println!("  this database has finished the drill already; writing its outputs again");
    } else {
        if ran.resumed {
            println!("  resumed a stopped run from {}", local(ran.from));
        }
        println!(
            "  this run: {} texts accepted by the simulated network, {} receipts, {} answers",
            ran.turns.accepted, ran.turns.receipts, ran.turns.answers
        );
    }
    let reg = stormbell::registry::Registry::load(&store)?;
    let policy = drill::settings(&settings).policy;
    let summary = drill::output::write(
        &store,
        &reg,
        drill,
        &tz,
        policy.link_base.as_deref(),
        lang,
        out,
    )?;
    let total: i64 = summary.warnings.lineages.values().sum();
    println!(
        "  {total} warnings ({} lifted); {} texts; {:.0}% of calls answered, median {} min; {} moved of {}",
        summary.warnings.lifted,
        summary
            .messages
            .get("sms")
            .map(|m| m.values().sum::<i64>())
            .unwrap_or(0),
        summary.acknowledgement.rate * 100.0,
        summary
            .acknowledgement
            .minutes
            .get("median")
            .map(|m| m.to_string())
            .unwrap_or_else(|| "—".into()),
        summary.evacuation.get("moved").copied().unwrap_or(0),
        summary.evacuation.get("to_move").copied().unwrap_or(0),
    );
    println!(
        "  output: {} (report.md, summary.json, dispatch.jsonl, responses.jsonl, cap/) in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Run the drill with this terminal watching: a progress bar (on a terminal) and a line per
/// warning as it is issued. `clock`: the one a web server shows drill time by (the demo).
/// Under a `lease` (a database several nodes share), only while this node leads.
pub(super) async fn run_watched(
    settings: &stormbell::daemon::Settings,
    drill: &Drill,
    store: &Store,
    speed: Speed,
    clock: Option<stormbell::runtime::SimClock>,
    lease: Option<&stormbell::daemon::Lease>,
    stop: stormbell::runtime::Shutdown,
) -> anyhow::Result<drill::Led> {
    let tz = settings.tz.clone();
    let (wtx, mut wrx) = tokio::sync::mpsc::unbounded_channel();
    let (ptx, prx) = tokio::sync::watch::channel(drill.scenario.start);
    let progress = tokio::spawn(watch(
        drill.scenario.start,
        drill.scenario.end,
        prx,
        tz.clone(),
    ));
    let printer = tokio::spawn(async move {
        while let Some((at, t)) = wrx.recv().await {
            print_warning(at, &t, &tz);
        }
    });
    let events = drill::Events {
        warnings: Some(wtx),
        progress: Some(ptx),
        clock,
    };
    let ran = match lease {
        Some(l) => drill::run_under(l, settings, drill, store, speed, events, stop).await,
        None => drill::run(settings, drill, store, speed, events, stop)
            .await
            .map(drill::Led::Ran),
    };
    let _ = printer.await;
    progress.abort();
    ran
}

/// One line per warning message as it is issued: simulated time, message type, tier, the
/// hazard, the first place and how many more, the people to move.
fn print_warning(
    at: jiff::Timestamp,
    t: &stormbell::correlate::warning::Targets,
    tz: &jiff::tz::TimeZone,
) {
    let event = stormbell::templates::event_name(t.hazard.as_str(), "zh-CN")
        .unwrap_or_else(|_| t.hazard.as_str().to_string());
    let place = match t.places.first() {
        Some(p) if t.places.len() > 1 => format!("{}等{}处", p.name, t.places.len()),
        Some(p) => p.name.clone(),
        None => "-".into(),
    };
    println!(
        "  {}  {:<6} {:<6} {} {}  {}  {} people to move",
        at.to_zoned(tz.clone()).strftime("%m-%d %H:%M"),
        format!("{:?}", t.send),
        t.tier.as_str(),
        super::pad(&event, 10),
        super::pad(&place, 22),
        t.lineage,
        t.evacuate,
    );
}

/// A progress bar on a terminal (simulated time), nothing otherwise.
async fn watch(
    start: jiff::Timestamp,
    end: jiff::Timestamp,
    mut rx: tokio::sync::watch::Receiver<jiff::Timestamp>,
    tz: jiff::tz::TimeZone,
) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return;
    }
    let total = end.duration_since(start).as_secs().max(1) as u64;
    let bar = indicatif::ProgressBar::new(total);
    while rx.changed().await.is_ok() {
        let now = *rx.borrow_and_update();
        bar.set_position(now.duration_since(start).as_secs().max(0) as u64);
        bar.set_message(now.to_zoned(tz.clone()).strftime("%m-%d %H:%M").to_string());
    }
    bar.finish_and_clear();
}
