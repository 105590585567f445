//! `stormbell report WARNING_ID`: the after-action report of one warning, as Markdown and CSV.

use std::path::PathBuf;

use clap::Args;
use stormbell::config::Config;
use stormbell::registry::Registry;
use stormbell::respond::report;
use stormbell::store::Store;

use super::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The warning: its lineage (`flash_flood:FF331098001`, as `stormbell status` lists them)
    /// or the CAP identifier of any of its messages.
    warning: String,
    /// Directory for report.md, persons.csv and timeline.csv (default: report-<warning>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Language of the Markdown: zh-CN or en.
    #[arg(long, default_value = "zh-CN")]
    lang: String,
}

pub fn run(args: ReportArgs, cfg: &Config) -> u8 {
    if !cfg.store.path.exists() {
        eprintln!(
            "stormbell: no database at {} (store.path)",
            cfg.store.path.display()
        );
        return EXIT_USAGE;
    }
    let store = match Store::open(&cfg.store.path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stormbell: {e}");
            return EXIT_PROBLEMS;
        }
    };
    let reg = match Registry::load(&store) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stormbell: registry: {e}");
            return EXIT_PROBLEMS;
        }
    };
    let tz = cfg.time_zone();
    let id = args.warning.clone();
    let found = store.read_blocking(move |c| {
        let Some(lineage) = report::lineage_of(c, &id)? else {
            return Ok(None);
        };
        Ok(Some(report::read(c, &reg, &tz, &lineage)?))
    });
    let r = match found {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!(
                "stormbell: no warning {:?} (give a lineage such as flash_flood:FF331098001, or a CAP identifier)",
                args.warning
            );
            return EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("stormbell: report: {e:#}");
            return EXIT_PROBLEMS;
        }
    };
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "report-{}",
            r.lineage
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                })
                .collect::<String>()
        ))
    });
    let files = (|| -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(&out)?;
        let mut written = Vec::new();
        for (name, body) in [
            ("report.md", report::markdown(&r, &args.lang)?),
            ("persons.csv", report::persons_csv(&r)?),
            ("timeline.csv", report::timeline_csv(&r)?),
        ] {
            let path = out.join(name);
            std::fs::write(&path, body)?;
            written.push(path);
        }
        Ok(written)
    })();
    match files {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            println!(
                "{}: {} persons called, {} never answered; moved {} of {}",
                r.lineage,
                r.persons.len(),
                r.persons
                    .iter()
                    .filter(|p| p.state != "answered" && p.state != "covered")
                    .count(),
                r.evacuated.1,
                r.evacuated.0
            );
            0
        }
        Err(e) => {
            eprintln!("stormbell: writing {}: {e:#}", out.display());
            EXIT_PROBLEMS
        }
    }
}
