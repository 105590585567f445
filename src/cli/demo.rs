//! `stormbell demo`: the embedded default, with zero configuration, as a newcomer's first ten
//! minutes.
//!
//! It makes a temporary SQLite database, imports the bundled synthetic county, starts the web
//! server (the duty office's page, the check-in links, the CAP feed) and a demo account, and
//! replays Typhoon Lekima (2019) as a drill through the whole pipeline (`stormbell::drill`) at
//! a speed that shows the three-day storm in about two minutes: a progress bar, a line per
//! warning, the office page changing as the simulated village leads answer and move people.
//! Texts go to the drill's simulated phone network, in process: no SMS centre, no real phone.
//! Then it writes the drill's report and keeps the page up until Ctrl-C.

use std::path::PathBuf;

use clap::Args;

use stormbell::config::Config;
use stormbell::drill::{self, Drill, Speed};
use stormbell::store::Store;

use super::EXIT_PROBLEMS;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's database and output (default: a new folder under the system
    /// temporary directory). Nothing outside it is touched.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Address of the web server (the office page and the check-in links); when it is taken,
    /// a free port is used instead.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8470")]
    serve: String,
    /// Simulated seconds per real second (default: the whole scenario in about two minutes),
    /// or `max`.
    #[arg(long, value_name = "N|max")]
    speed: Option<Speed>,
    /// Another scenario folder (default: fixtures/scenarios/lekima-2019).
    #[arg(long, value_name = "DIR")]
    scenario: Option<PathBuf>,
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
    let dir = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("stormbell-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("demo.log"))?;
    super::init_logging_to(cfg, std::sync::Mutex::new(log));
    let scenario = match args.scenario.or_else(scenario_dir) {
        Some(s) => s,
        None => anyhow::bail!(
            "the Lekima scenario (fixtures/scenarios/lekima-2019) is not here: run the demo \
             from the repository (./scripts/demo), or give --scenario DIR"
        ),
    };
    // The bundled county, written out as a county office would hand it over.
    let county = dir.join("county");
    std::fs::create_dir_all(&county)?;
    for (name, bytes) in COUNTY {
        std::fs::write(county.join(name), bytes)?;
    }
    let drill = Drill::load(&scenario, Some(&county))?;
    let listener = std::net::TcpListener::bind(&args.serve)
        .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| anyhow::anyhow!("no port for the web server: {e}"))?;
    let at = listener.local_addr()?;
    let base = format!("http://{at}");
    let mut cfg = cfg.clone();
    cfg.dispatch.link_base = format!("{base}/r/");
    let settings = cfg.pipeline()?;
    let drilled = drill::settings(&settings);
    let tz = settings.tz.clone();
    let db = dir.join("stormbell.db");
    let store = Store::open(&db)?;
    let span = drill.scenario.end.duration_since(drill.scenario.start);
    let speed = args
        .speed
        .unwrap_or(Speed::Times((span.as_secs_f64() / 120.0).max(1.0)));

    let rt = super::runtime()?;
    rt.block_on(async {
        drill::setup(&drill, &store, &tz).await?;
        let reg = std::sync::Arc::new(stormbell::registry::Registry::load(&store)?);
        let mut pw = [0u8; 9];
        getrandom::getrandom(&mut pw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let password = format!("demo-{}", hex::encode(pw));
        let user = stormbell::web::auth::NewUser::new("demo", &password, "officer")?;
        let now = jiff::Timestamp::now();
        store
            .write(move |tx| stormbell::web::auth::put_user(tx, &user, now))
            .await?;
        let (stop_tx, stop_rx) = stormbell::runtime::Trigger::new();
        // The check-in pages live in the drill's time, so a link tapped by hand is current.
        let clock = stormbell::runtime::SimClock::new(drill.scenario.start);
        listener.set_nonblocking(true)?;
        let port = stormbell::daemon::WebPort {
            store: store.clone(),
            registry: reg.clone().into(),
            respond: drilled.respond.clone(),
            policy: drilled.policy.clone(),
            tz: tz.clone(),
            feed: stormbell::web::WebSettings {
                base: base.clone(),
                ..settings.feed.clone()
            },
            office: cfg.office.name.clone(),
            limits: cfg.web.limits,
            clock: std::sync::Arc::new(clock.clone()),
        };
        let (_, web) = port
            .serve(tokio::net::TcpListener::from_std(listener)?, stop_rx.clone())
            .await?;
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop_tx.fire();
            }
        });

        println!("stormbell demo — {} ({})", cfg.office.name, cfg.office.name_en);
        println!("  folder        {}", dir.display());
        println!("  database      {} (SQLite, WAL)", db.display());
        println!("  log           {}", dir.join("demo.log").display());
        println!(
            "  registry      the synthetic county 331098 东溟县: {} villages, {} hazard sites, {} persons",
            reg.data.villages.len(),
            reg.data.sites.len(),
            reg.data.persons.len()
        );
        println!("  duty office   {base}/office   user demo, password {password}");
        println!("  CAP feed      {base}/cap/feed.atom");
        println!(
            "  SMS           IN-PROCESS SIMULATED NETWORK (drill): no SMS centre and no real phone; \
             every text is marked 【演练】, simulated village leads answer by reply or link"
        );
        println!();
        println!(
            "drill: {} — {} → {} (Beijing time), {}",
            drill.scenario.name,
            local(drill.scenario.start, &tz),
            local(drill.scenario.end, &tz),
            match speed {
                Speed::Max => "as fast as it goes".to_string(),
                Speed::Times(x) => format!(
                    "{x:.0}× real time (about {:.0} s); open the office page now and watch",
                    span.as_secs_f64() / x
                ),
            }
        );
        let started = std::time::Instant::now();
        let ran = super::replay_cmd::run_watched(
            &settings,
            &drill,
            &store,
            speed,
            Some(clock),
            None,
            stop_rx.clone(),
        )
        .await;
        ran?;
        let out = dir.join("drill");
        let summary = {
            let (store, reg, drill, tz, out) =
                (store.clone(), reg.clone(), drill.clone(), tz.clone(), out.clone());
            let link = drilled.policy.link_base.clone();
            tokio::task::spawn_blocking(move || {
                drill::output::write(&store, &reg, &drill, &tz, link.as_deref(), "zh-CN", &out)
            })
            .await??
        };
        println!(
            "drill finished in {:.0} s: {} warnings ({} lifted), {} texts, {:.0}% of calls answered, \
             {} of {} people moved",
            started.elapsed().as_secs_f64(),
            summary.warnings.total,
            summary.warnings.lifted,
            summary.messages.get("sms").map(|m| m.values().sum::<i64>()).unwrap_or(0),
            summary.acknowledgement.rate * 100.0,
            summary.evacuation.get("moved").copied().unwrap_or(0),
            summary.evacuation.get("to_move").copied().unwrap_or(0),
        );
        println!("  after-action report   {}", out.join("report.md").display());
        let link = store.read(stormbell::dispatch::link::latest_token).await?;
        if let Some(t) = link {
            println!("  a lead's link         {base}/r/{t}   (as in their text: answer, report people moved)");
        }
        println!();
        println!("serving the office page until Ctrl-C");
        web.await??;
        Ok::<_, anyhow::Error>(())
    })
}

fn local(t: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
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
