//! `stormbell registry check|import|stats|show|health|imports`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;

use stormbell::config::Config;
use stormbell::registry::{
    self, Encoding, ImportError, Level, Registry, SiteStatus, Stage, db, health,
};
use stormbell::store::Store;

use super::{CLOSE_WITHIN, EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Check a registry folder without writing: every bad row as `file:line: column: problem`.
    Check {
        /// The folder (see fixtures/README.md for its files and columns).
        dir: PathBuf,
        /// How the CSV files are encoded (auto: UTF-8 if valid, else GBK/GB18030).
        #[arg(long, value_enum, default_value = "auto")]
        encoding: Encoding,
    },
    /// Import a registry folder as a new version — all or nothing — and print what changed.
    Import {
        /// The folder.
        dir: PathBuf,
        /// How the CSV files are encoded.
        #[arg(long, value_enum, default_value = "auto")]
        encoding: Encoding,
        /// Who is importing (recorded in the audit trail).
        #[arg(long, default_value = "office")]
        actor: String,
    },
    /// Counts of what the registry holds.
    Stats,
    /// One village: its sites and thresholds, shelters, terminals and who answers for it.
    Show {
        /// The 12-digit village code.
        code: String,
        /// As it stood at the end of this date (YYYY-MM-DD), from the import history.
        #[arg(long, value_name = "DATE")]
        on: Option<String>,
    },
    /// The roster's gaps: unanswered villages and sites, overloaded people, shared phones,
    /// unconfirmed persons, shelters too small.
    Health,
    /// Every import, with its digest.
    Imports,
}

pub fn run(cmd: RegistryCommand, cfg: &Config) -> u8 {
    match cmd {
        RegistryCommand::Check { dir, encoding } => check(&dir, encoding),
        RegistryCommand::Import {
            dir,
            encoding,
            actor,
        } => import(cfg, &dir, encoding, &actor),
        RegistryCommand::Stats => with_store(cfg, stats),
        RegistryCommand::Show { code, on } => {
            with_store(cfg, |s| show(cfg, s, &code, on.as_deref()))
        }
        RegistryCommand::Health => with_store(cfg, |s| health_report(cfg, s)),
        RegistryCommand::Imports => with_store(cfg, imports),
    }
}

fn with_store(cfg: &Config, f: impl FnOnce(&Store) -> u8) -> u8 {
    if !cfg.store.location().exists() {
        eprintln!(
            "stormbell: no database at {} yet; `stormbell registry import DIR` creates it",
            cfg.store.location()
        );
        return EXIT_USAGE;
    }
    match cfg.store.location().open() {
        Ok(s) => f(&s),
        Err(e) => {
            eprintln!("stormbell: {e}");
            EXIT_PROBLEMS
        }
    }
}

fn check(dir: &Path, encoding: Encoding) -> u8 {
    let (loaded, findings) = registry::check_dir(dir, encoding);
    for f in &findings.0 {
        println!("{}", f.render());
    }
    for o in findings.omitted() {
        println!("{o}");
    }
    let (errors, warnings) = (findings.errors(), findings.warnings());
    let d = &loaded.data;
    let files: Vec<String> = loaded
        .files
        .iter()
        .map(|(f, e)| format!("{f} ({e})"))
        .collect();
    eprintln!(
        "{}: {errors} error(s), {warnings} warning(s); read {} villages, {} sites, {} persons from {}",
        dir.display(),
        d.villages.len(),
        d.sites.len(),
        d.persons.len(),
        files.join(", ")
    );
    if errors == 0 { 0 } else { EXIT_PROBLEMS }
}

fn import(cfg: &Config, dir: &Path, encoding: Encoding, actor: &str) -> u8 {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let progress = |s: Stage| {
        bar.set_message(match s {
            Stage::Reading => "reading files",
            Stage::Checking => "checking across files",
            Stage::Writing => "writing the new version",
        })
    };
    // Check the folder before the database is even opened: a refused import touches nothing.
    let outcome = registry::prepare_import(dir, encoding, &progress).and_then(|prepared| {
        progress(Stage::Writing);
        let store = cfg.store.location().open()?;
        let warnings = prepared.findings.warnings();
        let at = jiff::Timestamp::now().to_zoned(cfg.time_zone());
        let report = prepared.commit(&store, actor, at)?;
        // Closed before we exit: the import folded into the database file (when nothing else
        // has it open), not left in the WAL beside it for someone copying the file.
        store.close(CLOSE_WITHIN);
        Ok((report, warnings))
    });
    bar.finish_and_clear();
    match outcome {
        Err(ImportError::Refused(findings)) => {
            for f in findings.0.iter().filter(|f| f.is_error()) {
                println!("{}", f.render());
            }
            for o in findings.omitted().iter().filter(|o| o.contains(" errors ")) {
                println!("{o}");
            }
            eprintln!(
                "{}: {} error(s); nothing was imported (the database is unchanged)",
                dir.display(),
                findings.errors()
            );
            EXIT_PROBLEMS
        }
        Err(e) => {
            eprintln!("stormbell: {e}; nothing was imported");
            EXIT_PROBLEMS
        }
        Ok((report, warnings)) => {
            let r = &report;
            println!(
                "import #{} of {} at {} (sha256 {})",
                r.import_id,
                dir.display(),
                r.at,
                &r.digest[..16]
            );
            match r.previous {
                Some(p) if r.changes.is_empty() => println!("no changes since import #{p}"),
                Some(p) => {
                    println!("changes since import #{p}:");
                    for c in &r.changes {
                        if c.detail.is_empty() {
                            println!("  {:<18} {}", c.what, c.subject);
                        } else {
                            println!("  {:<18} {}: {}", c.what, c.subject, c.detail);
                        }
                    }
                }
                None => println!("first import"),
            }
            println!();
            println!(
                "  {:<11} {:>8} {:>7} {:>8} {:>8}",
                "", "total", "added", "changed", "removed"
            );
            for c in &r.counts {
                println!(
                    "  {:<11} {:>8} {:>7} {:>8} {:>8}",
                    c.kind, c.total, c.added, c.changed, c.removed
                );
            }
            if warnings > 0 {
                println!(
                    "\n{warnings} warning(s); `stormbell registry check {}` lists them",
                    dir.display()
                );
            }
            0
        }
    }
}

fn load(store: &Store) -> Option<Registry> {
    match Registry::load(store) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("stormbell: {e}");
            None
        }
    }
}

fn stats(store: &Store) -> u8 {
    let Some(reg) = load(store) else {
        return EXIT_PROBLEMS;
    };
    let d = &reg.data;
    let imports = store
        .read_blocking(|c| Ok(db::imports(c)?))
        .unwrap_or_default();
    match imports.last() {
        Some(i) => println!("registry: import #{} of {} at {}", i.id, i.source, i.at),
        None => {
            println!("registry: nothing imported yet");
            return 0;
        }
    }
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for s in &d.sites {
        let e = kinds.entry(s.kind.as_str()).or_default();
        if s.status == SiteStatus::Active {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let towns = d.units.iter().filter(|u| u.level == Level::Town).count();
    println!("  towns          {towns}");
    println!(
        "  villages       {} ({} with outlines)",
        d.villages.len(),
        d.villages.iter().filter(|v| v.polygon.is_some()).count()
    );
    println!("  groups         {}", d.groups.len());
    for (k, (active, closed)) in &kinds {
        println!("  {k:<14} {active} active, {closed} closed");
    }
    println!("  thresholds     {}", d.thresholds.len());
    println!(
        "  shelters       {} (capacity {})",
        d.shelters.len(),
        d.shelters
            .iter()
            .map(|s| u64::from(s.capacity))
            .sum::<u64>()
    );
    println!("  terminals      {}", d.terminals.len());
    let mut levels: BTreeMap<Level, usize> = BTreeMap::new();
    for p in &d.persons {
        *levels.entry(p.level).or_default() += 1;
    }
    println!(
        "  persons        {} ({})",
        d.persons.len(),
        levels
            .iter()
            .map(|(l, n)| format!("{l} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  duties         {}", d.duties.len());
    println!(
        "  to evacuate    {} people in villages, {} at sites",
        d.villages
            .iter()
            .map(|v| u64::from(v.evacuate))
            .sum::<u64>(),
        d.sites
            .iter()
            .filter(|s| s.status == SiteStatus::Active)
            .map(|s| u64::from(s.evacuate))
            .sum::<u64>()
    );
    0
}

fn show(cfg: &Config, store: &Store, code: &str, on: Option<&str>) -> u8 {
    let tz = cfg.time_zone();
    let (import, label) = match on {
        Some(date) => {
            let Ok(day) = date.parse::<jiff::civil::Date>() else {
                eprintln!("stormbell: `{date}` is not a date (YYYY-MM-DD)");
                return EXIT_USAGE;
            };
            match store.read_blocking(move |c| db::import_on(c, day, &tz)) {
                Ok(Some(i)) => (Some(i), format!("as of {date} (import #{i})")),
                Ok(None) => {
                    println!("{code}: nothing had been imported by {date}");
                    return EXIT_PROBLEMS;
                }
                Err(e) => {
                    eprintln!("stormbell: {e}");
                    return EXIT_PROBLEMS;
                }
            }
        }
        None => (None, "now".to_string()),
    };
    let data = match store.read_blocking(move |c| db::load(c, import)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("stormbell: {e}");
            return EXIT_PROBLEMS;
        }
    };
    let reg = Registry::new(data);
    let Some(v) = reg.village(code) else {
        println!("{code}: no such village in the registry ({label})");
        return EXIT_PROBLEMS;
    };
    let town = reg.unit(&v.town).map(|u| u.name.as_str()).unwrap_or("?");
    println!("{} {} — {town} ({label})", v.code, v.name);
    println!(
        "  at {:.5}°E {:.5}°N; {} households, {} people, {} to move when warned{}",
        v.point.lon,
        v.point.lat,
        v.households,
        v.population,
        v.evacuate,
        if v.polygon.is_some() {
            "; outline known"
        } else {
            ""
        }
    );
    let person_line = |d: &registry::Duty, p: Option<&registry::Person>| match p {
        Some(p) => format!(
            "{} {} {} ({}){}{}",
            super::pad(&d.role, 16),
            p.name,
            p.mobile,
            p.id,
            p.deputy
                .as_deref()
                .and_then(|id| reg.person(id))
                .map(|dep| format!(", deputy {} {}", dep.name, dep.mobile))
                .unwrap_or_default(),
            if p.on_duty { "" } else { " [off duty]" }
        ),
        None => format!(
            "{} {} (not in persons.csv)",
            super::pad(&d.role, 16),
            d.person
        ),
    };
    println!("  responsible:");
    for (d, p) in reg.duties_for(code) {
        println!("    {}", person_line(d, p));
    }
    for (d, p) in reg.duties_for(&v.town) {
        if d.role.contains("责任人") {
            println!("    {} [town]", person_line(d, p));
        }
    }
    for g in reg.data.groups.iter().filter(|g| g.village == v.code) {
        println!("  group {} {} ({} people)", g.code, g.name, g.population);
        for (d, p) in reg.duties_for(&g.code) {
            println!("    {}", person_line(d, p));
        }
    }
    for s in reg.sites_of(code) {
        let status = match &s.status {
            SiteStatus::Active => String::new(),
            SiteStatus::Closed { on, .. } => format!(
                " [closed {}]",
                on.map(|d| d.to_string()).unwrap_or_default()
            ),
        };
        println!(
            "  site {} {} — {} {}, {} people threatened, {} to move{}{}",
            s.id,
            s.name,
            s.kind.as_str(),
            s.hazard,
            s.people,
            s.evacuate,
            if s.vulnerable {
                ", old/sick/disabled among them"
            } else {
                ""
            },
            status
        );
        let mut th: Vec<_> = reg.thresholds_of(&s.id).collect();
        th.sort_by_key(|t| (t.soil, t.minutes));
        for t in th {
            println!(
                "    {:>4} {:<6} 准备转移 {:>5} mm  立即转移 {:>5} mm",
                registry::format_duration(t.minutes),
                t.soil.as_str(),
                t.prepare_mm,
                t.move_mm
            );
        }
        for (d, p) in reg.duties_for(&s.id) {
            println!("    {}", person_line(d, p));
        }
    }
    for s in reg
        .data
        .shelters
        .iter()
        .filter(|s| s.serves.iter().any(|x| x == code))
    {
        println!("  shelter {} {} (capacity {})", s.id, s.name, s.capacity);
    }
    for t in reg.terminals_of(code) {
        println!("  terminal {} {} ({})", t.id, t.name, t.kind.as_str());
    }
    0
}

fn health_report(cfg: &Config, store: &Store) -> u8 {
    let Some(reg) = load(store) else {
        return EXIT_PROBLEMS;
    };
    let imports = store
        .read_blocking(|c| Ok(db::imports(c)?))
        .unwrap_or_default();
    let since = confirmation_cutoff(&imports, cfg.registry.confirm_within_days);
    let gaps = health::report(&reg.data, cfg.health_limits(), since);
    let mut by_check: BTreeMap<&str, Vec<&health::Gap>> = BTreeMap::new();
    for g in &gaps {
        by_check.entry(g.check).or_default().push(g);
    }
    if gaps.is_empty() {
        println!("roster health: no gaps found");
        return 0;
    }
    for (check, list) in by_check {
        println!("{check} ({}):", list.len());
        for g in list {
            println!("  {}: {}", g.subject, g.detail);
        }
    }
    0
}

/// Persons confirmed before this date are listed: the previous import's date, or, with only one
/// import, `days` before it. An import of the same files again (the same digest: "no changes")
/// is not a roster update; it neither moves the date nor makes everybody unconfirmed.
pub fn confirmation_cutoff(imports: &[db::ImportInfo], days: i64) -> Option<jiff::civil::Date> {
    let mut distinct: Vec<&db::ImportInfo> = Vec::new();
    for i in imports {
        if distinct.last().is_none_or(|l| l.digest != i.digest) {
            distinct.push(i);
        }
    }
    let date_of = |i: &db::ImportInfo| {
        i.at.parse::<jiff::Zoned>()
            .ok()
            .map(|z| z.date())
            .or_else(|| {
                i.at.parse::<jiff::Timestamp>()
                    .ok()
                    .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date())
            })
    };
    match distinct.as_slice() {
        [] => None,
        [only] => date_of(only).and_then(|d| d.checked_sub(jiff::Span::new().days(days)).ok()),
        [.., prev, _] => date_of(prev),
    }
}

fn imports(store: &Store) -> u8 {
    match store.read_blocking(|c| Ok(db::imports(c)?)) {
        Ok(list) if list.is_empty() => {
            println!("nothing imported yet");
            0
        }
        Ok(list) => {
            for i in list {
                println!(
                    "#{:<4} {}  {}  sha256 {}",
                    i.id,
                    i.at,
                    i.source,
                    &i.digest[..16]
                );
            }
            0
        }
        Err(e) => {
            eprintln!("stormbell: {e}");
            EXIT_PROBLEMS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(id: i64, at: &str, digest: &str) -> db::ImportInfo {
        db::ImportInfo {
            id,
            at: at.into(),
            source: "fixtures/county".into(),
            digest: digest.into(),
        }
    }

    #[test]
    fn the_same_roster_imported_again_is_no_roster_update() {
        let once = [import(1, "2026-06-01T09:00:00+08:00[Asia/Shanghai]", "aa")];
        let again = [
            import(1, "2026-06-01T09:00:00+08:00[Asia/Shanghai]", "aa"),
            import(2, "2026-06-20T09:00:00+08:00[Asia/Shanghai]", "aa"),
        ];
        assert_eq!(
            confirmation_cutoff(&once, 30),
            confirmation_cutoff(&again, 30)
        );
        let changed = [
            import(1, "2026-06-01T09:00:00+08:00[Asia/Shanghai]", "aa"),
            import(2, "2026-06-20T09:00:00+08:00[Asia/Shanghai]", "bb"),
        ];
        assert_eq!(
            confirmation_cutoff(&changed, 30),
            Some(jiff::civil::date(2026, 6, 1))
        );
    }
}
