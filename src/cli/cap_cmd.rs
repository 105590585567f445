//! `stormbell cap validate` and `stormbell cap convert`.

use std::io::Write;

use clap::{Subcommand, ValueEnum};

use stormbell::cap::{self, Level, Options, Problem, Profile, Report, cn};
use stormbell::config::Config;
use stormbell::http;

use super::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Subcommand, Debug)]
pub enum CapCommand {
    /// Check CAP alerts, Atom/RSS index feeds and EDXL-DE envelopes (files or http(s) URLs).
    /// Prints `FILE: ok`, or one line per problem `FILE:LINE: path: message`; exits 0 only
    /// when every file is valid.
    Validate {
        /// Extra rules on top of the standard.
        #[arg(long, value_enum, default_value = "oasis")]
        profile: ProfileArg,
        /// For index feeds: fetch every linked alert and check it too.
        #[arg(long)]
        follow: bool,
        /// Also print warnings and notes (they never make a file invalid).
        #[arg(long, short = 'W')]
        warnings: bool,
        /// Files or URLs.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Write an alert as OASIS CAP 1.2 (upgrading 1.0/1.1, repairing element order), as the
    /// national dialect, or as JSON, to standard output.
    Convert {
        /// Output form.
        #[arg(long, value_enum)]
        to: Target,
        /// Which alert, when the file holds several (1-based).
        #[arg(long, value_name = "N")]
        index: Option<usize>,
        /// The alert file.
        #[arg(value_name = "FILE")]
        file: String,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ProfileArg {
    /// OASIS CAP only.
    Oasis,
    /// Google Public Alerts' requirements too.
    Google,
    /// The Chinese national dialect's requirements too.
    Cn,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Target {
    /// OASIS CAP 1.2.
    Oasis,
    /// The national dialect (GB/T 35965.1).
    Cn,
    /// The model as JSON.
    Json,
}

pub fn run(cmd: CapCommand, cfg: &Config) -> u8 {
    match cmd {
        CapCommand::Validate {
            profile,
            follow,
            warnings,
            files,
        } => validate(cfg, profile, follow, warnings, &files),
        CapCommand::Convert { to, index, file } => convert(cfg, to, index, &file),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Read a local file, refusing oversize ones before reading them.
fn read_local(path: &str, limit: usize) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if meta.len() as usize > limit {
        return Err(format!(
            "{path}: document is {} bytes, over the limit of {limit} bytes (cap.max_document_bytes); refused unread",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn validate(
    cfg: &Config,
    profile: ProfileArg,
    follow: bool,
    warnings: bool,
    files: &[String],
) -> u8 {
    let opts = Options {
        profile: match profile {
            ProfileArg::Oasis => Profile::Oasis,
            ProfileArg::Google => Profile::Google,
            ProfileArg::Cn => Profile::Cn,
        },
        limits: cfg.cap_limits(),
    };
    let needs_net = follow || files.iter().any(|f| is_url(f));
    let net = if needs_net {
        match (super::runtime(), http::client(&cfg.http)) {
            (Ok(rt), Ok(client)) => Some((rt, client)),
            (Err(e), _) => {
                eprintln!("stormbell: cannot start the runtime: {e}");
                return EXIT_USAGE;
            }
            (_, Err(e)) => {
                eprintln!("stormbell: {e}");
                return EXIT_USAGE;
            }
        }
    } else {
        None
    };
    let fetch = |url: &str| -> Result<Vec<u8>, String> {
        let Some((rt, client)) = &net else {
            return Err(format!("{url}: network not enabled"));
        };
        rt.block_on(http::get_bounded(client, url, opts.limits.max_bytes))
            .map_err(|e| e.to_string())
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut all_ok = true;
    for file in files {
        let bytes = if is_url(file) {
            fetch(file)
        } else {
            read_local(file, opts.limits.max_bytes)
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                let _ = writeln!(out, "{e}");
                all_ok = false;
                continue;
            }
        };
        let report = cap::inspect(&bytes, &opts);
        all_ok &= print_report(&mut out, file, &report, warnings);
        if follow && let Some(index) = &report.index {
            for entry in &index.entries {
                if entry.inline_alert.is_some() {
                    continue; // already checked as part of the feed
                }
                let Some(link) = &entry.link else { continue };
                let url = match resolve(file, link) {
                    Some(u) => u,
                    None => {
                        let _ = writeln!(
                            out,
                            "{file}:{}: {}: cannot follow relative link `{link}` of a local file",
                            entry.line, entry.path
                        );
                        all_ok = false;
                        continue;
                    }
                };
                match fetch(&url) {
                    Ok(b) => {
                        let r = cap::inspect(&b, &opts);
                        all_ok &= print_report(&mut out, &url, &r, warnings);
                    }
                    Err(e) => {
                        let _ = writeln!(
                            out,
                            "{e} (linked from {file}:{}: {})",
                            entry.line, entry.path
                        );
                        all_ok = false;
                    }
                }
            }
        }
    }
    if all_ok { 0 } else { EXIT_PROBLEMS }
}

/// Resolve a feed link against the feed's own URL.
fn resolve(base: &str, link: &str) -> Option<String> {
    if is_url(link) {
        return Some(link.to_string());
    }
    if !is_url(base) {
        return None;
    }
    let base = reqwest::Url::parse(base).ok()?;
    base.join(link).ok().map(|u| u.to_string())
}

/// Print a report; returns whether the document is valid.
fn print_report(out: &mut impl Write, file: &str, report: &Report, warnings: bool) -> bool {
    let valid = report.is_valid();
    if valid {
        let _ = writeln!(out, "{file}: ok");
    }
    for p in &report.problems {
        if p.level == Level::Error || warnings {
            let _ = writeln!(out, "{}", p.render(file));
        }
    }
    valid
}

fn convert(cfg: &Config, to: Target, index: Option<usize>, file: &str) -> u8 {
    let limits = cfg.cap_limits();
    let bytes = match read_local(file, limits.max_bytes) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_PROBLEMS;
        }
    };
    let alerts = match cap::read_alerts(&bytes, &limits) {
        Ok(a) => a,
        Err(e) => {
            for p in &e.problems {
                if p.is_error() {
                    eprintln!("{}", p.render(file));
                }
            }
            return EXIT_PROBLEMS;
        }
    };
    let chosen = match (alerts.len(), index) {
        (0, _) => {
            eprintln!("{file}: holds no alert");
            return EXIT_PROBLEMS;
        }
        (1, None) => &alerts[0],
        (n, None) => {
            eprintln!("{file}: holds {n} alerts; choose one with --index 1…{n}");
            return EXIT_USAGE;
        }
        (n, Some(i)) if i == 0 || i > n => {
            eprintln!("{file}: --index {i} is out of range 1…{n}");
            return EXIT_USAGE;
        }
        (_, Some(i)) => &alerts[i - 1],
    };
    let report = |p: &Problem| eprintln!("{}", p.render(file));
    chosen.problems.iter().for_each(report);
    let text = match to {
        Target::Oasis => match cap::build(&chosen.alert) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{file}: cannot write as CAP 1.2: {e}");
                return EXIT_PROBLEMS;
            }
        },
        Target::Cn => match cn::build_cn(&chosen.alert) {
            Ok((x, notes)) => {
                notes.as_slice().iter().for_each(report);
                x
            }
            Err(errs) => {
                for e in errs {
                    eprintln!("{file}: cannot write in the national dialect: {e}");
                }
                return EXIT_PROBLEMS;
            }
        },
        Target::Json => match serde_json::to_string_pretty(&chosen.alert) {
            Ok(j) => j + "\n",
            Err(e) => {
                eprintln!("{file}: {e}");
                return EXIT_PROBLEMS;
            }
        },
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).is_err() {
        return EXIT_PROBLEMS;
    }
    0
}
