//! `backup DIR` and `restore FILE`: the copy an office keeps, and the way back.

use std::path::PathBuf;

use clap::Args;

use stormbell::config::Config;
use stormbell::store::{Claim, audit, backup};

use super::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The folder the copy and its manifest go to (created if needed).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A copy `stormbell backup` made (its `.manifest` beside it is checked when present).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Backup and restore copy a SQLite file; a PostgreSQL database has its own tools.
fn sqlite_only(cfg: &Config, what: &str) -> Option<u8> {
    (cfg.store.backend == stormbell::config::StoreBackend::Postgres).then(|| {
        eprintln!(
            "stormbell {what}: the store is on PostgreSQL; back it up with pg_basebackup and WAL \
             archiving (docs/deploy.md, \"Backups\")"
        );
        EXIT_USAGE
    })
}

pub fn backup(args: BackupArgs, cfg: &Config) -> u8 {
    if let Some(code) = sqlite_only(cfg, "backup") {
        return code;
    }
    let now = jiff::Zoned::now().with_time_zone(cfg.time_zone());
    match backup::take(&cfg.store.path, &args.dir, &now) {
        Ok(t) => {
            println!("backup:   {}", t.file.display());
            println!("manifest: {}", t.manifest.display());
            println!("schema:   {}", t.facts.schema);
            println!("audit:    {} ({} entries)", t.facts.head, t.facts.entries);
            println!("bytes:    {}", t.facts.bytes);
            if t.facts.chain != "intact" {
                // The copy is kept (it is what the database holds), but nobody should file it
                // as a good one without knowing.
                eprintln!(
                    "stormbell backup: the audit chain in the copy is {}",
                    t.facts.chain
                );
                return EXIT_PROBLEMS;
            }
            0
        }
        Err(e) => {
            eprintln!("stormbell backup: {e:#}");
            EXIT_PROBLEMS
        }
    }
}

pub fn restore(args: RestoreArgs, cfg: &Config) -> u8 {
    if !args.file.exists() {
        eprintln!("stormbell restore: no file {}", args.file.display());
        return EXIT_USAGE;
    }
    if let Some(code) = sqlite_only(cfg, "restore") {
        return code;
    }
    // A running daemon holds the claim; restoring under it would lose what it writes next.
    let claim = match Claim::take(&cfg.store.path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stormbell restore: {e}");
            return EXIT_PROBLEMS;
        }
    };
    let tz = cfg.time_zone();
    let now = jiff::Zoned::now().with_time_zone(tz.clone());
    let checkpoints = cfg.store.checkpoints(false).file;
    let restored = match backup::restore(&args.file, &cfg.store.path, Some(&checkpoints), &now) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stormbell restore: {e:#}; nothing was changed");
            return EXIT_PROBLEMS;
        }
    };
    if restored.manifest.is_none() {
        eprintln!(
            "stormbell restore: note: no manifest beside {}; its bytes could not be checked \
             against what was taken",
            args.file.display()
        );
    }
    // Opening brings an older backup's schema up to date; the restore goes in the trail.
    let store = match cfg.store.location().open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stormbell restore: the restored database does not open: {e}");
            return EXIT_PROBLEMS;
        }
    };
    let entry = backup::restored_entry(&restored, &args.file, &now);
    let recorded = store.write_blocking(move |tx| Ok(audit::append(tx, &entry)?));
    let schema_now = store
        .read_blocking(|c| Ok(backup::schema_version(c)?))
        .unwrap_or(restored.schema_was);
    store.close(std::time::Duration::from_secs(60));
    drop(claim);
    println!(
        "restored: {} → {}",
        args.file.display(),
        cfg.store.path.display()
    );
    if let Some(m) = &restored.manifest {
        println!("taken:    {}", m.taken);
    }
    println!("schema:   {} → {schema_now}", restored.schema_was);
    println!("audit:    the backup ends at {}", restored.head);
    if let Some(h) = &restored.replaced_head {
        println!("          the replaced trail had reached {h}");
    }
    if let Some(p) = &restored.moved_db {
        println!("moved aside: {}", p.display());
    }
    if let Some(p) = &restored.moved_checkpoints {
        println!("moved aside: {}", p.display());
    }
    match recorded {
        Ok(rec) => {
            println!("recorded: #{} store.restored", rec.seq);
            0
        }
        Err(e) => {
            eprintln!("stormbell restore: restored, but the trail could not record it: {e}");
            EXIT_PROBLEMS
        }
    }
}
