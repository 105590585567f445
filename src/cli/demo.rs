//! `stormbell demo`: the embedded default, with zero configuration.
//!
//! It shows the parts that exist: a fresh SQLite store with its audit chain, the synthetic
//! county's registry, the CAP codec reading a (synthetic) national-dialect typhoon warning and
//! its Cancel, checking them and writing them as OASIS CAP 1.2, the feeds replaying three days
//! of Typhoon Lekima (2019) in a few seconds with every decision queueing its texts and calls,
//! and the after-action report of the warning that called most. With `--serve ADDR` it then
//! serves the duty office's page and the check-in links over the result. It says plainly which
//! stages are not built yet.

use std::path::PathBuf;

use clap::Args;

use stormbell::cap::{self, Options, Profile, cn};
use stormbell::config::Config;
use stormbell::registry::{self, Encoding, Registry, health};
use stormbell::store::{Store, audit};

use super::EXIT_PROBLEMS;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's database and output (default: a new folder under the system
    /// temporary directory). Nothing outside it is touched.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// After the replay, serve the duty office's page and the check-in links on this address
    /// (e.g. 127.0.0.1:8470) until Ctrl-C, with a demo account whose password is printed.
    /// The texts then carry check-in links to it.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
}

/// The bundled synthetic county (fixtures/county/), so the demo runs from anywhere.
const COUNTY: &[(&str, &[u8])] = &[
    (
        "units.csv",
        include_bytes!("../../fixtures/county/units.csv"),
    ),
    (
        "villages.csv",
        include_bytes!("../../fixtures/county/villages.csv"),
    ),
    (
        "groups.csv",
        include_bytes!("../../fixtures/county/groups.csv"),
    ),
    (
        "sites.csv",
        include_bytes!("../../fixtures/county/sites.csv"),
    ),
    (
        "thresholds.csv",
        include_bytes!("../../fixtures/county/thresholds.csv"),
    ),
    (
        "shelters.csv",
        include_bytes!("../../fixtures/county/shelters.csv"),
    ),
    (
        "terminals.csv",
        include_bytes!("../../fixtures/county/terminals.csv"),
    ),
    (
        "persons.csv",
        include_bytes!("../../fixtures/county/persons.csv"),
    ),
    (
        "duties.csv",
        include_bytes!("../../fixtures/county/duties.csv"),
    ),
    (
        "villages.geojson",
        include_bytes!("../../fixtures/county/villages.geojson"),
    ),
    (
        "sites.geojson",
        include_bytes!("../../fixtures/county/sites.geojson"),
    ),
];

/// The bundled synthetic alerts (fixtures/cap/).
const SAMPLES: &[(&str, &[u8])] = &[
    (
        "cn-typhoon-red.xml",
        include_bytes!("../../fixtures/cap/cn-typhoon-red.xml"),
    ),
    (
        "cn-typhoon-red-cancel.xml",
        include_bytes!("../../fixtures/cap/cn-typhoon-red-cancel.xml"),
    ),
];

pub fn run(args: DemoArgs, cfg: &Config) -> u8 {
    match demo(args, cfg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stormbell demo: {e:#}");
            EXIT_PROBLEMS
        }
    }
}

fn demo(args: DemoArgs, cfg: &Config) -> anyhow::Result<()> {
    // With --serve, the texts carry check-in links to the address served.
    let mut cfg = cfg.clone();
    let listener = match &args.serve {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("--serve {addr}: {e}"))?;
            let at = l.local_addr()?;
            cfg.dispatch.link_base = format!("http://{at}/r/");
            Some(l)
        }
        None => None,
    };
    let cfg = &cfg;
    let dir = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("stormbell-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(dir.join("cap"))?;
    let db = dir.join("stormbell.db");
    let tz = cfg.time_zone();
    println!(
        "stormbell demo — {} ({})",
        cfg.office.name, cfg.office.name_en
    );
    println!("  folder:   {}", dir.display());

    let store = Store::open(&db)?;
    println!(
        "  database: {} (SQLite, WAL, migrations applied)",
        db.display()
    );
    let e = audit::Entry::now(&tz, "system", "demo.started", "demo", serde_json::json!({}));
    store.write_blocking(move |tx| Ok(audit::append(tx, &e)?))?;

    println!();
    println!(
        "registry: importing the synthetic county (fixtures/county, persons.csv in GBK as Excel saves it)"
    );
    let county = dir.join("county");
    std::fs::create_dir_all(&county)?;
    for (name, bytes) in COUNTY {
        std::fs::write(county.join(name), bytes)?;
    }
    let prepared = registry::prepare_import(&county, Encoding::Auto, &|_| {})
        .map_err(|e| anyhow::anyhow!("the bundled county did not import: {e}"))?;
    let report = prepared.commit(&store, "demo", jiff::Timestamp::now().to_zoned(tz.clone()))?;
    let counts: Vec<String> = report
        .counts
        .iter()
        .map(|c| format!("{} {}", c.total, c.kind))
        .collect();
    println!("  import #{}: {}", report.import_id, counts.join(", "));
    let reg = Registry::load(&store)?;
    let since = jiff::Timestamp::now()
        .to_zoned(tz.clone())
        .date()
        .checked_sub(jiff::Span::new().days(cfg.registry.confirm_within_days))
        .ok();
    let gaps = health::report(&reg.data, cfg.health_limits(), since);
    println!(
        "  roster health: {} gap(s) to fix before the flood season:",
        gaps.len()
    );
    for g in &gaps {
        println!("    {}: {} — {}", g.check, g.subject, g.detail);
    }
    if let Some(zone) = reg
        .data
        .sites
        .iter()
        .find(|s| s.kind == registry::SiteKind::FlashFlood)
        && let Some(village) = zone.villages.first().and_then(|v| reg.village(v))
    {
        println!(
            "  e.g. {} {}: {} people to move; flash-flood zone {} (1h 准备转移 {} mm)",
            village.code,
            village.name,
            village.evacuate,
            zone.id,
            reg.thresholds_of(&zone.id)
                .find(|t| t.minutes == 60)
                .map(|t| t.prepare_mm.to_string())
                .unwrap_or_else(|| "-".into())
        );
        for (duty, person) in reg.duties_for(&village.code).take(2) {
            if let Some(p) = person {
                println!("      {} {} {}", duty.role, p.name, p.mobile);
            }
        }
    }

    println!();
    println!("CAP: reading upstream warnings in the national dialect (synthetic samples)");
    let limits = cfg.cap_limits();
    for (name, bytes) in SAMPLES {
        let report = cap::inspect(
            bytes,
            &Options {
                profile: Profile::Oasis,
                limits,
            },
        );
        let found = report
            .alerts
            .first()
            .ok_or_else(|| anyhow::anyhow!("{name}: no alert in the bundled sample"))?;
        let alert = found.alert.clone().ok_or_else(|| {
            anyhow::anyhow!("{name}: bundled sample unreadable: {:?}", report.problems)
        })?;
        let info = alert.infos.first();
        println!(
            "  {} {}  [{} · {} · {}]",
            if report.is_valid() { "✓" } else { "✗" },
            info.and_then(|i| i.headline.as_deref())
                .unwrap_or("(no headline)"),
            found.dialect,
            alert.msg_type,
            info.map(|i| cn::colour_of(i.severity)).unwrap_or("-"),
        );
        let oasis = cap::build(&alert)?;
        let out = dir.join("cap").join(format!("{}.xml", alert.identifier));
        std::fs::write(&out, &oasis)?;
        let check = cap::inspect(
            oasis.as_bytes(),
            &Options {
                profile: Profile::Oasis,
                limits,
            },
        );
        let google = cap::inspect(
            oasis.as_bytes(),
            &Options {
                profile: Profile::Google,
                limits,
            },
        );
        let google_errors: Vec<String> = google
            .errors()
            .filter(|p| p.code.starts_with("google."))
            .map(|p| p.message.clone())
            .collect();
        println!(
            "    → OASIS CAP 1.2 {} ({}; Google profile: {})",
            out.display(),
            if check.is_valid() { "valid" } else { "INVALID" },
            if google_errors.is_empty() {
                "passes".to_string()
            } else {
                google_errors.join("; ")
            },
        );
        let detail = serde_json::json!({
            "identifier": alert.identifier,
            "sender": alert.sender,
            "msgType": alert.msg_type.as_str(),
            "file": out.display().to_string(),
        });
        let e = audit::Entry::now(
            &tz,
            "demo",
            "cap.converted",
            alert.identifier.clone(),
            detail,
        );
        store.write_blocking(move |tx| Ok(audit::append(tx, &e)?))?;
    }

    println!();
    feeds(&store, cfg)?;

    println!();
    respond(&store, cfg, &dir)?;

    println!();
    match store.read_blocking(|c| Ok(audit::verify(c)?))? {
        audit::Verification::Intact { entries, head } => {
            let head = head
                .map(|(s, h)| format!("head #{s} sha256:{h}"))
                .unwrap_or_default();
            println!("audit: {entries} entries, chain intact, {head}");
        }
        audit::Verification::Broken { seq, reason, .. } => {
            anyhow::bail!("audit chain broken at #{seq}: {reason}")
        }
    }
    println!();
    println!("not yet built (each arrives with its issue):");
    println!(
        "  - every stage in one daemon, and the typhoon drill with SMS, loudspeakers and answers (#9)"
    );
    if let Some(l) = listener {
        serve(store, cfg, l)?;
    }
    Ok(())
}

/// Who the replay's warnings called, and the after-action report of the one that called most.
fn respond(store: &Store, cfg: &Config, dir: &std::path::Path) -> anyhow::Result<()> {
    let (calls, persons, steps): (i64, i64, i64) = store.read_blocking(|c| {
        Ok(c.query_row(
            "SELECT (SELECT count(*) FROM respond_call), (SELECT count(DISTINCT person) FROM respond_call),
                    (SELECT count(*) FROM respond_step WHERE state = 'pending')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    })?;
    let queued: i64 = store.read_blocking(|c| {
        Ok(c.query_row(
            "SELECT count(*) FROM dispatch_message WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )?)
    })?;
    println!(
        "respond: {calls} calls to {persons} responsible persons, {steps} escalation steps waiting; \
         {queued} texts queued (the demo has no SMS centre: nobody can answer, so on a live \
         clock each would climb its ladder)"
    );
    let top: Option<String> = store.read_blocking(|c| {
        Ok(rusqlite::OptionalExtension::optional(c.query_row(
            "SELECT lineage FROM respond_call GROUP BY lineage ORDER BY count(*) DESC, lineage LIMIT 1",
            [],
            |r| r.get(0),
        ))?)
    })?;
    if let Some(lineage) = top {
        let reg = Registry::load(store)?;
        let tz = cfg.time_zone();
        let l2 = lineage.clone();
        let r =
            store.read_blocking(move |c| stormbell::respond::report::read(c, &reg, &tz, &l2))?;
        let out = dir.join("report");
        std::fs::create_dir_all(&out)?;
        std::fs::write(
            out.join("report.md"),
            stormbell::respond::report::markdown(&r, "zh-CN")?,
        )?;
        std::fs::write(
            out.join("persons.csv"),
            stormbell::respond::report::persons_csv(&r)?,
        )?;
        std::fs::write(
            out.join("timeline.csv"),
            stormbell::respond::report::timeline_csv(&r)?,
        )?;
        println!(
            "  after-action report of {lineage} ({} persons called, {} messages): {}",
            r.persons.len(),
            r.messages.len(),
            out.join("report.md").display()
        );
    }
    Ok(())
}

/// Serve the office page and the check-in links over the demo's store until Ctrl-C.
fn serve(store: Store, cfg: &Config, listener: std::net::TcpListener) -> anyhow::Result<()> {
    use std::sync::Arc;
    let mut pw = [0u8; 9];
    getrandom::getrandom(&mut pw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let password = format!("demo-{}", hex::encode(pw));
    let now = jiff::Timestamp::now();
    let user = stormbell::web::auth::NewUser::new("demo", &password, "officer")?;
    store.write_blocking(move |tx| stormbell::web::auth::put_user(tx, &user, now))?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let reg = Arc::new(Registry::load(&store)?);
        let clock: Arc<dyn stormbell::feeds::clock::Clock> =
            Arc::new(stormbell::feeds::clock::SystemClock::new());
        let checkin = stormbell::web::checkin::Checkin::new(
            store.clone(),
            reg.clone(),
            cfg.respond.clone(),
            cfg.dispatch_policy(),
            Default::default(),
            clock,
        )
        .await?;
        let base = format!("http://{addr}");
        let office = stormbell::web::office::Office::new(
            store.clone(),
            reg,
            cfg.time_zone(),
            &cfg.office.name,
            &base,
        )
        .await?;
        println!();
        println!("serving until Ctrl-C:");
        println!("  duty office   {base}/office   user demo, password {password}");
        println!("  CAP feed      {base}/cap/feed.atom");
        let link: Option<String> = store
            .read(|c| {
                Ok(rusqlite::OptionalExtension::optional(c.query_row(
                    "SELECT token FROM dispatch_link ORDER BY rowid DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                ))?)
            })
            .await?;
        if let Some(t) = link {
            println!(
                "  a lead's link {base}/r/{t}   (as in their text: answer, report people moved)"
            );
        }
        stormbell::web::serve(
            listener,
            store.clone(),
            stormbell::web::WebSettings {
                title: cfg.office.name.clone(),
                sender: cfg.office.cap_sender.clone(),
                base: base.clone(),
            },
            Some(checkin),
            Some(office),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await?;
        Ok::<_, anyhow::Error>(())
    })
}

/// Where the Lekima scenario is: beside the working directory (`./scripts/demo` runs from the
/// repository), else where this binary was built from.
fn scenario_dir() -> Option<PathBuf> {
    let rel = PathBuf::from("fixtures/scenarios/lekima-2019");
    [
        rel.clone(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&rel),
    ]
    .into_iter()
    .find(|p| p.join("scenario.toml").is_file())
}

/// Replay the Lekima 2019 drill through the real poller and the correlate stage on a
/// simulated clock: what the feeds brought, and the warnings stormbell issued for the county.
fn feeds(store: &Store, cfg: &Config) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::time::Duration;
    use stormbell::correlate::engine::{Engine, RunSettings};
    use stormbell::feeds::clock::SimClock;
    use stormbell::feeds::poller::{Poller, Settings};
    use stormbell::feeds::replay::{ReplayFetcher, Scenario};
    use stormbell::feeds::{AlarmState, Observation};

    let Some(dir) = scenario_dir() else {
        println!(
            "feeds: the Lekima scenario (fixtures/scenarios/lekima-2019) is not here; skipped"
        );
        return Ok(());
    };
    let sc = Scenario::load(&dir)?;
    let tz = cfg.time_zone();
    let local = |t: jiff::Timestamp| t.to_zoned(tz.clone()).strftime("%m-%d %H:%M").to_string();
    println!(
        "feeds → correlate: replaying {} ({} → {}, Beijing time) through the live poller and \
         the correlate stage on a simulated clock",
        sc.name,
        local(sc.start),
        local(sc.end)
    );
    let clock = SimClock::new(sc.start);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (ctx_tx, ctx_rx) = tokio::sync::mpsc::channel(1024);
    let (targets_tx, mut targets_rx) = tokio::sync::mpsc::channel(100_000);
    let poller = Arc::new(Poller::new(
        store.clone(),
        Arc::new(ReplayFetcher::new(&sc, Arc::new(clock.clone()))?),
        Arc::new(clock.clone()),
        Settings {
            flush_every: Duration::from_millis(200),
            start_spread: Duration::ZERO,
            // Correlate consumes each delivery before simulated time moves on.
            hold_clock: true,
            ..Settings::from_config(cfg)
        },
        tx,
    ));
    let registry = Arc::new(stormbell::registry::Registry::load(store)?);
    let mut issuer = cfg.issuer();
    issuer.status = stormbell::cap::model::Status::Exercise;
    let engine = Engine::new(cfg.rules()?, issuer, registry);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The stages' own log lines would drown the summary; the demo prints what matters.
    let quiet = tracing::subscriber::NoSubscriber::default();
    let started = std::time::Instant::now();
    let mut seen: Vec<Observation> = Vec::new();
    let result: anyhow::Result<()> = tracing::subscriber::with_default(quiet, || {
        rt.block_on(async {
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(
                poller
                    .clone()
                    .run(sc.specs(cfg.cap_limits()), stop_rx.clone()),
            );
            let correlate = tokio::spawn(stormbell::correlate::engine::run(
                engine,
                store.clone(),
                Arc::new(clock.clone()),
                RunSettings {
                    tick: Duration::from_secs(cfg.correlate.tick_secs),
                    tz: tz.clone(),
                    // The demo has no SMS centre: messages are queued in the outbox, as a
                    // daemon without accounts would keep them.
                    // Each decision also records whom it calls (respond).
                    on_decision: Some(stormbell::respond::chain(
                        stormbell::dispatch::hook(
                            cfg.dispatch_policy(),
                            Arc::new(tokio::sync::Notify::new()),
                        ),
                        stormbell::respond::hook(cfg.respond.clone(), cfg.dispatch_policy()),
                    )),
                },
                ctx_rx,
                targets_tx,
                stop_rx,
            ));
            // Note what the feeds bring on the way to correlate (the delivery keeps the
            // simulated clock waiting until correlate is done with it).
            let tee = tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(d) = rx.recv().await {
                    seen.push(d.observation.clone());
                    if ctx_tx.send(d).await.is_err() {
                        break;
                    }
                }
                seen
            });
            // Event by event, as fast as the work allows, never ahead of it.
            clock.run_until(sc.end).await;
            let _ = stop.send(true);
            task.await??;
            correlate.await??;
            drop(poller);
            seen = tee.await?;
            Ok(())
        })
    });
    result?;
    let mut tracks = 0;
    let (mut batches, mut readings, mut flagged) = (0, 0, Vec::new());
    for o in &seen {
        match o {
            Observation::Alert(a) => {
                let info = a.alert.infos.first();
                println!(
                    "  {}  upstream {:<6} {}  [{}]",
                    local(a.alert.sent.timestamp()),
                    a.alert.msg_type.as_str(),
                    info.and_then(|i| i.headline.as_deref())
                        .unwrap_or("(no headline)"),
                    info.map(|i| cn::colour_of(i.severity)).unwrap_or("-"),
                );
            }
            Observation::FeedAlarm(a) => {
                let at =
                    a.at.parse::<jiff::Timestamp>()
                        .map(local)
                        .unwrap_or(a.at.clone());
                match a.state {
                    AlarmState::Gap => println!(
                        "  {at}  FEED GAP {}: no successful poll for {} min (last error: {})",
                        a.feed,
                        a.silent_secs / 60,
                        a.last_error.as_deref().unwrap_or("-")
                    ),
                    AlarmState::Recovered => println!(
                        "  {at}  feed {} recovered after {} min of silence",
                        a.feed,
                        a.silent_secs / 60
                    ),
                }
            }
            Observation::Track(_) => tracks += 1,
            Observation::Rain(r) => {
                batches += 1;
                readings += r.readings.len();
                for x in r.readings.iter().filter(|x| x.flag.is_some()) {
                    flagged.push(format!(
                        "{} {} {} mm in {} min",
                        x.station,
                        local(x.end),
                        x.mm.map(|m| m.to_string()).unwrap_or("-".into()),
                        x.minutes
                    ));
                }
            }
            Observation::Fire(_) => {}
        }
    }
    println!(
        "  typhoon: {tracks} track updates; rain: {batches} hourly batches, {readings} readings; not trusted: {}",
        if flagged.is_empty() {
            "none".to_string()
        } else {
            flagged.join("; ")
        }
    );
    println!("warnings issued (simulated time, lineage, tier, message, places, people to move):");
    let mut n = 0;
    while let Ok(t) = targets_rx.try_recv() {
        n += 1;
        if n > 40 {
            continue;
        }
        let sent = store.read_blocking({
            let id = t.identifiers.first().cloned().unwrap_or_default();
            move |c| Ok(stormbell::correlate::store::by_identifier(c, &id)?.map(|w| w.sent))
        })?;
        println!(
            "  {}  {:<32} {:<6} {:<6} v{} {:>3} places {:>5} people{}",
            sent.as_deref()
                .map(|s| s.get(5..16).unwrap_or(s).replace('T', " "))
                .unwrap_or_else(|| "(internal)".into()),
            t.lineage.chars().take(32).collect::<String>(),
            t.tier.as_str(),
            format!("{:?}", t.send),
            t.version,
            t.places.len(),
            t.evacuate,
            if t.gaps.is_empty() {
                String::new()
            } else {
                format!("  ({} roster gaps)", t.gaps.len())
            }
        );
    }
    if n > 40 {
        println!("  … and {} more", n - 40);
    }
    println!(
        "  {n} warning messages in all (in the store, /cap/feed.atom when the daemon runs); \
         three days replayed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
