//! Command-line parsing and dispatch. Each subcommand is a few lines of printing around one
//! library call; nothing here decides anything a test of the library could not see.

mod admin;
mod backup_cmd;
mod cap_cmd;
mod demo;
mod feed_cmd;
mod fwi_cmd;
mod registry_cmd;
mod replay_cmd;
mod report_cmd;
mod send_test;
mod user_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use stormbell::config::{Config, LogFormat, Overrides};

/// Exit status for "the input was checked and found wanting" (invalid alert, broken audit).
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status for usage errors, bad configuration, and commands not built yet.
pub const EXIT_USAGE: u8 = 2;

/// How long a command waits, before it exits, for its writes to be folded from the WAL into
/// the database file (the store closed; when the daemon has the file open too, its own
/// checkpoints do that and the command only closes its connection).
pub const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(
    name = "stormbell",
    version,
    about = "Warns villages before typhoons, flash floods, landslides and wildfires reach them, \
             and makes sure somebody answered.",
    long_about = None
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// Configuration file layered over the built-in defaults (see config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database file (overrides store.path).
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Log format (overrides log.format).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. info or debug (overrides log.level).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
}

impl Global {
    fn overrides(&self) -> Overrides {
        Overrides {
            store_path: self.db.clone(),
            log_format: self.log_format,
            log_level: self.log_level.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon until SIGTERM or Ctrl-C.
    Run,
    /// Show stormbell at work on the bundled synthetic county, with no configuration.
    Demo(demo::DemoArgs),
    /// The county registry: villages, hazard sites, shelters, terminals, responsible persons.
    #[command(subcommand)]
    Registry(registry_cmd::RegistryCommand),
    /// Replay a recorded storm as a drill: the whole pipeline on a simulated clock, with
    /// simulated responders; writes CAP, dispatch and response logs and the drill's report.
    Replay(replay_cmd::ReplayArgs),
    /// Validate and convert CAP alerts, index feeds and EDXL-DE envelopes.
    #[command(subcommand)]
    Cap(cap_cmd::CapCommand),
    /// Fire Weather Index (FFMC, DMC, DC, ISI, BUI, FWI, DSR) from daily noon weather.
    Fwi(fwi_cmd::FwiArgs),
    /// What stormbell makes of a feed's document: try a sample from your bureau first.
    #[command(subcommand)]
    Feed(feed_cmd::FeedCommand),
    /// After-action report of a warning: timeline, time to acknowledge per level, who never
    /// answered, evacuation; Markdown and CSV.
    Report(report_cmd::ReportArgs),
    /// Configuration.
    #[command(subcommand)]
    Config(admin::ConfigCommand),
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(admin::AuditCommand),
    /// What the daemon's store says now.
    Status,
    /// Copy the database as it stands now (while the daemon runs) into DIR, with the audit
    /// trail's head and a checksum in a manifest beside it.
    Backup(backup_cmd::BackupArgs),
    /// Put a backup back in place of the database (the daemon stopped); what it replaces is
    /// moved aside, never deleted, and the restore is recorded in the audit trail.
    Restore(backup_cmd::RestoreArgs),
    /// Send a test text to a phone through the running daemon's SMS accounts, recorded in the
    /// audit trail, and wait for the SMS centre's verdict.
    SendTest(send_test::SendTestArgs),
    /// Office users of the duty office's page.
    #[command(subcommand)]
    User(user_cmd::UserCommand),
}

/// Parse arguments, set up logging, run the command.
pub fn main() -> ExitCode {
    let cli = parse();
    if !matches!(cli.command, Command::Run) {
        default_sigpipe();
    }
    let code = match cli.command {
        Command::Config(cmd) => admin::config(cmd, &cli.global),
        Command::Cap(cmd) => with_config(&cli.global, |cfg| cap_cmd::run(cmd, cfg)),
        Command::Audit(cmd) => with_config(&cli.global, |cfg| admin::audit(cmd, cfg)),
        Command::Status => with_config(&cli.global, admin::status),
        Command::SendTest(args) => with_config(&cli.global, |cfg| send_test::run(args, cfg)),
        Command::Backup(args) => with_config(&cli.global, |cfg| backup_cmd::backup(args, cfg)),
        Command::Restore(args) => with_config(&cli.global, |cfg| backup_cmd::restore(args, cfg)),
        Command::Feed(cmd) => feed_cmd::run(cmd),
        Command::User(cmd) => with_config(&cli.global, |cfg| user_cmd::run(cmd, cfg)),
        Command::Run => with_config(&cli.global, admin::run),
        // The demo's stages log to its folder (demo.rs); the terminal shows the story.
        Command::Demo(args) => {
            match Config::load(cli.global.config.as_deref(), &cli.global.overrides()) {
                Ok(cfg) => demo::run(args, &cfg),
                Err(e) => {
                    eprintln!("stormbell: configuration problems:\n{e}");
                    EXIT_USAGE
                }
            }
        }
        Command::Registry(cmd) => with_config(&cli.global, |cfg| registry_cmd::run(cmd, cfg)),
        Command::Replay(args) => {
            // The stages' log goes to the drill's folder (replay_cmd), not the terminal.
            match Config::load(cli.global.config.as_deref(), &cli.global.overrides()) {
                Ok(cfg) => replay_cmd::run(args, cli.global.db.clone(), &cfg),
                Err(e) => {
                    eprintln!("stormbell: configuration problems:\n{e}");
                    EXIT_USAGE
                }
            }
        }
        Command::Fwi(args) => fwi_cmd::run(args),
        Command::Report(args) => with_config(&cli.global, |cfg| report_cmd::run(args, cfg)),
    };
    ExitCode::from(code)
}

/// The arguments, with `--version` naming the schema version too: the first thing to ask when
/// a backup from another machine is to be restored, or an upgrade is planned.
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let version = format!(
        "{} (database schema {})",
        env!("CARGO_PKG_VERSION"),
        stormbell::store::backup::latest_schema()
    );
    // Leaked once per process: clap keeps a version as `&'static str` (its `string` feature
    // would add an allocation type to every name instead).
    let version: &'static str = Box::leak(version.into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

/// Let a short-lived command end quietly when its reader goes away (`stormbell … | head`),
/// as Unix tools do, instead of failing on every write. Not for the daemon: a log reader that
/// disappears must never stop it.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any other thread exists; it only resets this
    // process's disposition of SIGPIPE to the default, which is what `signal` is for.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Load the configuration, start logging, and run `f`; configuration problems end the run.
fn with_config(global: &Global, f: impl FnOnce(&Config) -> u8) -> u8 {
    let cfg = match Config::load(global.config.as_deref(), &global.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stormbell: configuration problems:\n{e}");
            return EXIT_USAGE;
        }
    };
    init_logging(&cfg);
    f(&cfg)
}

fn init_logging(cfg: &Config) {
    use std::io::IsTerminal;
    init_logging_as(cfg, std::io::stderr, std::io::stderr().is_terminal());
}

/// Logging to `writer` (a file, for commands whose terminal shows a summary instead): plain
/// text, no terminal colour codes in the file.
fn init_logging_to<W>(cfg: &Config, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    init_logging_as(cfg, writer, false);
}

/// Logging to `writer`, in colour only when `ansi` (a terminal).
fn init_logging_as<W>(cfg: &Config, writer: W, ansi: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = match cfg.log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A single-threaded runtime for the commands that do I/O concurrently.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Pad text to a display width, counting CJK characters as two columns (as terminals show
/// them), so Chinese names and roles line up.
pub fn pad(s: &str, width: usize) -> String {
    let w: usize = s
        .chars()
        .map(|c| {
            let c = c as u32;
            let wide = (0x1100..=0x115F).contains(&c)
                || (0x2E80..=0xA4CF).contains(&c)
                || (0xAC00..=0xD7A3).contains(&c)
                || (0xF900..=0xFAFF).contains(&c)
                || (0xFE30..=0xFE4F).contains(&c)
                || (0xFF00..=0xFF60).contains(&c)
                || (0xFFE0..=0xFFE6).contains(&c);
            if wide { 2 } else { 1 }
        })
        .sum();
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pad_counts_chinese_as_two_columns() {
        assert_eq!(super::pad("监测员", 8), "监测员  ");
        assert_eq!(super::pad("abc", 5), "abc  ");
        assert_eq!(
            super::pad("村防汛副责任人（AB角）", 4),
            "村防汛副责任人（AB角）"
        );
    }
}
