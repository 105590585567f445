//! `stormbell feed`: look at what stormbell makes of a document before pointing a feed at it.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use stormbell::feeds::read;

use super::{EXIT_PROBLEMS, EXIT_USAGE};

/// `stormbell feed …`
#[derive(Subcommand, Debug)]
pub enum FeedCommand {
    /// Print what each document yields, one JSON object per line (shapes in docs/feeds.md);
    /// exit 0 only if every document was read.
    Read(ReadArgs),
}

/// Arguments of `stormbell feed read`.
#[derive(Args, Debug)]
pub struct ReadArgs {
    /// The documents.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// The kind to read them as; `auto` recognises each from its content.
    #[arg(long, default_value = "auto", value_parser = clap::builder::PossibleValuesParser::new(read::READ_KINDS))]
    kind: String,
    /// When the documents were received (RFC 3339): the month and year of bulletins that
    /// give only day and time. Default: each file's modification time.
    #[arg(long, value_name = "TIME")]
    received: Option<String>,
}

/// Run a `feed` command.
pub fn run(cmd: FeedCommand) -> u8 {
    match cmd {
        FeedCommand::Read(a) => read_files(a),
    }
}

fn read_files(a: ReadArgs) -> u8 {
    let received = match a.received.as_deref().map(str::parse::<jiff::Timestamp>) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            eprintln!("stormbell feed read: --received: {e} (e.g. 2024-12-25T03:20:00+08:00)");
            return EXIT_USAGE;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut all = true;
    for f in &a.files {
        let name = f.display().to_string();
        let (lines, ok) = match std::fs::read(f) {
            Ok(body) => {
                let when = received
                    .or_else(|| {
                        std::fs::metadata(f)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    })
                    .unwrap_or_else(jiff::Timestamp::now);
                read::read(&a.kind, &name, &body, when)
            }
            Err(e) => (
                vec![
                    serde_json::json!({"kind": "refused", "file": name, "reason": format!("cannot read: {e}")}),
                ],
                false,
            ),
        };
        all &= ok;
        for l in lines {
            if writeln!(out, "{l}").is_err() {
                return EXIT_PROBLEMS;
            }
        }
    }
    if all { 0 } else { EXIT_PROBLEMS }
}
