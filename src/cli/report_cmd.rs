//! `stormbell report WARNING_ID`: the after-action report of one warning, as Markdown, an HTML
//! page with its charts, CSV, and with `--pdf` a PDF printed from the page by headless
//! Chromium (what the office files and hands upward).

use std::path::PathBuf;

use clap::Args;
use stormbell::config::Config;
use stormbell::registry::Registry;
use stormbell::respond::report;

use super::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The warning: its lineage (`flash_flood:FF331098001`, as `stormbell status` lists them)
    /// or the CAP identifier of any of its messages.
    warning: String,
    /// Directory for report.md, report.html, persons.csv and timeline.csv (default:
    /// report-<warning>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Language of the Markdown and the page: zh-CN or en.
    #[arg(long, default_value = "zh-CN")]
    lang: String,
    /// Also print the page to report.pdf with headless Chromium.
    #[arg(long)]
    pdf: bool,
    /// The Chromium to print with.
    #[arg(long, default_value = "chromium", value_name = "PROGRAM")]
    browser: PathBuf,
}

/// Print `html` to `pdf` with headless Chromium, within two minutes.
fn print_pdf(
    browser: &std::path::Path,
    html: &std::path::Path,
    pdf: &std::path::Path,
) -> anyhow::Result<()> {
    let html = std::fs::canonicalize(html)?;
    let dir = tempfile_dir(pdf)?;
    let mut child = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", dir.display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (install Debian's chromium, or give --browser)",
                browser.display()
            )
        })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            anyhow::bail!("{} did not finish printing in 120 s", browser.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() || std::fs::metadata(pdf).map(|m| m.len()).unwrap_or(0) == 0 {
        anyhow::bail!("{} could not print the page ({status})", browser.display());
    }
    Ok(())
}

/// A fresh profile directory for one print, beside the output.
fn tempfile_dir(pdf: &std::path::Path) -> std::io::Result<PathBuf> {
    let dir = pdf
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(format!(".chromium-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn run(args: ReportArgs, cfg: &Config) -> u8 {
    if !cfg.store.location().exists() {
        eprintln!(
            "stormbell: no database at {} (store.path)",
            cfg.store.location()
        );
        return EXIT_USAGE;
    }
    let store = match cfg.store.location().open() {
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
            ("report.html", report::html(&r, &args.lang)?),
            ("persons.csv", report::persons_csv(&r)?),
            ("timeline.csv", report::timeline_csv(&r)?),
        ] {
            let path = out.join(name);
            std::fs::write(&path, body)?;
            written.push(path);
        }
        if args.pdf {
            let pdf = out.join("report.pdf");
            print_pdf(&args.browser, &out.join("report.html"), &pdf)?;
            written.push(pdf);
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
