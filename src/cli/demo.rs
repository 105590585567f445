//! `stormbell demo`: the embedded default, with zero configuration.
//!
//! Today it shows the parts that exist: a fresh SQLite store with its audit chain, and the
//! CAP codec reading a (synthetic) national-dialect typhoon warning and its Cancel, checking
//! them, and writing them as OASIS CAP 1.2. It says plainly which stages are not built yet.

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
    for (what, issue) in [
        (
            "polling feeds (CAP, typhoon tracks, rainfall, fire weather)",
            4,
        ),
        ("correlating observations into tiered warnings", 5),
        ("SMS over SMPP with receipts", 6),
        ("village broadcast terminals", 7),
        (
            "call-and-respond, check-in links, escalation, the office page",
            8,
        ),
        ("the daemon's stages and the typhoon drill", 9),
    ] {
        println!("  - {what} (#{issue})");
    }
    Ok(())
}
