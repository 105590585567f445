//! `config check`, `audit verify|head|checkpoint`, `status` and `run`.

use std::path::PathBuf;

use clap::Subcommand;

use stormbell::config::Config;
use stormbell::store::{Store, audit};

use super::{EXIT_PROBLEMS, EXIT_USAGE, Global};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a configuration file (layered over the built-in defaults, with STORMBELL_…
    /// variables applied) without starting anything.
    Check {
        /// The file; without it, the built-in defaults and environment are checked.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the effective configuration as TOML.
    Show,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain and name the first broken link; then hold the trail to its
    /// signed checkpoints and to any head written down in the duty log (a trail cut short or
    /// rewritten with its hashes recomputed passes the chain alone).
    Verify {
        /// A head from the duty log, as `audit head` printed it (`#SEQ sha256:HASH`); may be
        /// given more than once.
        #[arg(long = "head", value_name = "HEAD")]
        heads: Vec<String>,
        /// The checkpoint file (default: `store.audit_checkpoints`).
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// The key that signed them (default: `store.audit_key`).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Print the trail's head (`#SEQ sha256:HASH`) to write in the duty log.
    Head,
    /// Sign the head now and append it to the checkpoint file (the daemon does this every
    /// `store.audit_checkpoint_mins` and at shutdown).
    Checkpoint,
}

pub fn config(cmd: ConfigCommand, global: &Global) -> u8 {
    match cmd {
        ConfigCommand::Check { file } => {
            let file = file.or_else(|| global.config.clone());
            let label = file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| stormbell::config::DEFAULT_NAME.to_string());
            match Config::load(file.as_deref(), &global.overrides()) {
                Ok(_) => {
                    println!("{label}: ok");
                    0
                }
                Err(e) => {
                    for p in &e.problems {
                        println!("{p}");
                    }
                    EXIT_PROBLEMS
                }
            }
        }
        ConfigCommand::Show => match Config::load(global.config.as_deref(), &global.overrides()) {
            Ok(c) => match toml_string(&c) {
                Ok(s) => {
                    print!("{s}");
                    0
                }
                Err(e) => {
                    eprintln!("stormbell: {e}");
                    EXIT_PROBLEMS
                }
            },
            Err(e) => {
                eprintln!("{e}");
                EXIT_USAGE
            }
        },
    }
}

fn toml_string(c: &Config) -> Result<String, String> {
    toml::to_string_pretty(c).map_err(|e| e.to_string())
}

/// The database the configuration names, which must exist already (a command that reads or
/// adds to the daemon's record, never creates one).
pub(super) fn open_existing(cfg: &Config) -> Result<Store, u8> {
    if !cfg.store.location().exists() {
        eprintln!(
            "stormbell: no database at {} (store.path): is this the daemon's configuration?",
            cfg.store.location()
        );
        return Err(EXIT_USAGE);
    }
    cfg.store.location().open().map_err(|e| {
        eprintln!("stormbell: {e}");
        EXIT_PROBLEMS
    })
}

pub fn audit(cmd: AuditCommand, cfg: &Config) -> u8 {
    let store = match open_existing(cfg) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let tz = cfg.time_zone();
    match cmd {
        AuditCommand::Verify {
            heads,
            checkpoints,
            key,
        } => {
            let mut cp = cfg.store.checkpoints(false);
            if let Some(f) = checkpoints {
                cp.file = f;
            }
            if let Some(k) = key {
                cp.key = k;
            }
            verify(&store, &heads, &cp, &tz)
        }
        AuditCommand::Head => match store.read_blocking(|c| Ok(audit::head_at(c)?)) {
            Ok(Some((seq, hash, at))) => {
                println!("#{seq} sha256:{hash}");
                println!(
                    "  (the last entry, {}; write this line in the duty log and check it later                      with `stormbell audit verify --head`)",
                    local(&at, &tz)
                );
                0
            }
            Ok(None) => {
                println!(
                    "{}: the audit trail has no entries yet",
                    store.path().display()
                );
                0
            }
            Err(e) => {
                eprintln!("stormbell: {e}");
                EXIT_PROBLEMS
            }
        },
        AuditCommand::Checkpoint => {
            use stormbell::store::checkpoint;
            let cp = cfg.store.checkpoints(false);
            let written = checkpoint::Key::load_or_create(&cp.key).and_then(|key| {
                let Some((seq, hash)) = store.read_blocking(|c| Ok(audit::head(c)?))? else {
                    return Ok(None);
                };
                let signed = checkpoint::Checkpoint::sign(&key, seq, &hash, jiff::Timestamp::now());
                checkpoint::append(&cp.file, &signed)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", cp.file.display()))?;
                Ok(Some(signed))
            });
            match written {
                Ok(Some(c)) => {
                    println!(
                        "checkpoint #{} sha256:{} signed and appended to {}",
                        c.seq,
                        c.hash,
                        cp.file.display()
                    );
                    0
                }
                Ok(None) => {
                    println!(
                        "{}: the audit trail has no entries yet",
                        store.path().display()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("stormbell: {e:#}");
                    EXIT_PROBLEMS
                }
            }
        }
    }
}

/// `audit verify`: the chain, then every head given and every checkpoint. Each finding is
/// printed; the status is non-zero if any does not hold.
fn verify(
    store: &Store,
    heads: &[String],
    cp: &stormbell::store::checkpoint::Settings,
    tz: &jiff::tz::TimeZone,
) -> u8 {
    use stormbell::store::audit::Against;
    use stormbell::store::checkpoint;
    let path = store.path().display().to_string();
    let mut failed = false;
    match store.read_blocking(|c| Ok(audit::verify(c)?)) {
        Ok(audit::Verification::Intact { entries, head }) => match head {
            Some((seq, hash)) => {
                println!("{path}: audit intact: {entries} entries; head #{seq} sha256:{hash}")
            }
            None => println!("{path}: audit intact: no entries yet"),
        },
        Ok(audit::Verification::Broken {
            seq,
            reason,
            intact_before,
        }) => {
            println!(
                "{path}: audit BROKEN at entry #{seq}: {reason} ({intact_before} entries before it are intact)"
            );
            failed = true;
        }
        Err(e) => {
            eprintln!("stormbell: {e}");
            return EXIT_PROBLEMS;
        }
    }
    for h in heads {
        let Some((seq, hash)) = checkpoint::parse_head(h) else {
            eprintln!(
                "stormbell: --head `{h}`: expected `#SEQ sha256:HASH` as `audit head` prints it"
            );
            return EXIT_USAGE;
        };
        match store.read_blocking(move |c| Ok(audit::against(c, seq, &hash)?)) {
            Ok(Against::Holds) => println!("head #{seq} from the duty log: holds"),
            Ok(Against::Truncated { last }) => {
                println!(
                    "head #{seq} from the duty log: DOES NOT HOLD: the trail ends at #{last};                      rows were cut off the end"
                );
                failed = true;
            }
            Ok(Against::Rewritten { found }) => {
                println!(
                    "head #{seq} from the duty log: DOES NOT HOLD: the row's hash is now {found};                      the trail was rewritten at or before it"
                );
                failed = true;
            }
            Err(e) => {
                eprintln!("stormbell: {e}");
                return EXIT_PROBLEMS;
            }
        }
    }
    match checkpoints(store, cp, tz) {
        Ok(None) => println!(
            "checkpoints: none yet in {} (the daemon writes them; `stormbell audit checkpoint` writes one now)",
            cp.file.display()
        ),
        Ok(Some((checked, problems))) => {
            match &checked.last {
                Some(last) => println!(
                    "checkpoints: {} hold (last #{} of {}) in {}",
                    checked.holding,
                    last.seq,
                    last.local(tz),
                    cp.file.display()
                ),
                None => println!("checkpoints: none holds in {}", cp.file.display()),
            }
            for p in problems.iter().chain(&checked.failures) {
                println!("  DOES NOT HOLD: {p}");
                failed = true;
            }
        }
        Err(e) => {
            println!("checkpoints: cannot be checked: {e:#}");
            failed = true;
        }
    }
    if failed { EXIT_PROBLEMS } else { 0 }
}

/// The checkpoints in `cp.file` held to the trail (`None`: no file yet), with the lines that
/// are not checkpoints.
fn checkpoints(
    store: &Store,
    cp: &stormbell::store::checkpoint::Settings,
    tz: &jiff::tz::TimeZone,
) -> anyhow::Result<Option<(stormbell::store::checkpoint::Checked, Vec<String>)>> {
    use stormbell::store::checkpoint;
    if !cp.file.exists() {
        return Ok(None);
    }
    let (written, problems) =
        checkpoint::read(&cp.file).map_err(|e| anyhow::anyhow!("{}: {e}", cp.file.display()))?;
    let key = checkpoint::Key::load(&cp.key)?;
    let tz = tz.clone();
    let checked = store.read_blocking(move |c| Ok(checkpoint::check(c, &key, &written, &tz)?))?;
    Ok(Some((checked, problems)))
}

pub fn status(cfg: &Config) -> u8 {
    println!("office:   {} ({})", cfg.office.name, cfg.office.name_en);
    println!("timezone: {}", cfg.office.timezone);
    println!("database: {}", cfg.store.location());
    if !cfg.store.location().exists() {
        eprintln!(
            "stormbell status: no database at {} (`stormbell run` or `stormbell demo` creates it; \
             check [store] path)",
            cfg.store.location()
        );
        return 1;
    } else {
        if let Ok(v) = cfg
            .store
            .location()
            .open()
            .and_then(|s| s.read_blocking(|c| Ok(stormbell::store::backup::schema_version(c)?)))
        {
            println!(
                "schema:   {v} (this stormbell: {})",
                stormbell::store::backup::latest_schema()
            );
        }
        if let Ok(nodes) = cfg
            .store
            .location()
            .open()
            .and_then(|s| s.read_blocking(|c| Ok(stormbell::store::lease::nodes(c)?)))
        {
            for n in nodes {
                let epoch = n.epoch.map(|e| format!(", epoch {e}")).unwrap_or_default();
                println!(
                    "node:     {} — {}{epoch}, last heartbeat {:.1} s ago",
                    n.node, n.role, n.seen_secs
                );
            }
        }
        match cfg
            .store
            .location()
            .open()
            .and_then(|s| s.read_blocking(|c| Ok(audit::verify(c)?)))
        {
            Ok(audit::Verification::Intact { entries, head }) => {
                let head = head
                    .map(|(s, h)| format!("#{s} sha256:{}", &h[..16]))
                    .unwrap_or_default();
                println!("audit:    intact, {entries} entries {head}");
            }
            Ok(audit::Verification::Broken { seq, reason, .. }) => {
                println!("audit:    BROKEN at entry #{seq}: {reason}");
            }
            Err(e) => println!("audit:    unreadable: {e}"),
        }
        let cp = cfg.store.checkpoints(false);
        match cfg
            .store
            .location()
            .open()
            .map_err(anyhow::Error::from)
            .and_then(|s| checkpoints(&s, &cp, &cfg.time_zone()))
        {
            Ok(None) => println!("          no checkpoints yet ({})", cp.file.display()),
            Ok(Some((checked, problems))) => {
                let bad = problems.len() + checked.failures.len();
                match (&checked.last, bad) {
                    (Some(last), 0) => println!(
                        "          {} checkpoints hold, the last #{} of {}",
                        checked.holding,
                        last.seq,
                        last.local(&cfg.time_zone())
                    ),
                    _ => {
                        println!(
                            "          checkpoints: {bad} DO NOT HOLD (`stormbell audit verify`)"
                        )
                    }
                }
            }
            Err(e) => println!("          checkpoints cannot be checked: {e:#}"),
        }
    }
    if cfg.store.location().exists()
        && let Ok(store) = cfg.store.location().open()
    {
        match store.read_blocking(|c| Ok(stormbell::registry::db::imports(c)?)) {
            Ok(list) => match list.last() {
                Some(last) => match stormbell::registry::Registry::load(&store) {
                    Ok(reg) => println!(
                        "registry: import #{} at {}: {} villages, {} sites, {} persons",
                        last.id,
                        local(&last.at, &cfg.time_zone()),
                        reg.data.villages.len(),
                        reg.data.sites.len(),
                        reg.data.persons.len()
                    ),
                    Err(e) => println!("registry: unreadable: {e}"),
                },
                None => {
                    println!("registry: nothing imported yet (`stormbell registry import DIR`)")
                }
            },
            Err(e) => println!("registry: unreadable: {e}"),
        }
    }
    if cfg.store.location().exists()
        && let Ok(store) = cfg.store.location().open()
    {
        feeds_status(cfg, &store);
    } else if !cfg.feeds.source.is_empty() {
        println!(
            "feeds:    {} configured, never polled",
            cfg.feeds.source.len()
        );
    }
    if cfg.store.location().exists()
        && let Ok(store) = cfg.store.location().open()
    {
        dispatch_status(cfg, &store);
        broadcast_status(cfg, &store);
        respond_status(cfg, &store);
    }
    0
}

/// A stored time (UTC) as the duty officer reads it: the office's local time.
/// A stored time as the office reads it at a glance: `08-09 18:02`, the county's time.
fn short(s: &str, tz: &jiff::tz::TimeZone) -> String {
    s.parse::<jiff::Timestamp>()
        .map(|t| stormbell::respond::board::readable(t, tz))
        .unwrap_or_else(|_| s.to_string())
}

fn local(s: &str, tz: &jiff::tz::TimeZone) -> String {
    s.parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| s.to_string())
}

/// Call-and-respond: calls by state, answers, and the silent list.
fn respond_status(cfg: &Config, store: &Store) {
    let tz = cfg.time_zone();
    let reg = stormbell::registry::Registry::load(store).ok();
    let found = store.read_blocking(move |c| {
        let (calls, answers) = stormbell::respond::calls::tallies(c)?;
        let ledger = match &reg {
            Some(reg) => Some(stormbell::respond::ledger::county(c, reg)?),
            None => None,
        };
        // An office over several counties: the same figures per county (the board's county
        // lines), each with its name.
        let counties = match (&reg, &ledger) {
            (Some(reg), Some(rows))
                if stormbell::respond::board::Scope::default_for(reg)
                    == stormbell::respond::board::Scope::Summary =>
            {
                stormbell::respond::ledger::by_county(reg, rows)
            }
            _ => Vec::new(),
        };
        Ok((
            calls,
            answers,
            stormbell::respond::calls::silent(c)?,
            ledger,
            counties,
        ))
    });
    match found {
        Ok((calls, answers, silent, ledger, counties)) => {
            // The same figures as the board's county line (ARCHITECTURE.md, "The evacuation
            // ledger").
            if let Some(rows) = ledger.filter(|r| !r.is_empty()) {
                let t = stormbell::respond::ledger::total(rows.values());
                println!(
                    "evacuate: {} place(s) under warning: to move {}, moved {}, refused {}{}",
                    rows.len(),
                    t.to_move,
                    t.moved,
                    t.refused,
                    if t.beyond > 0 {
                        format!("; {} reported beyond the registry, to check", t.beyond)
                    } else {
                        String::new()
                    }
                );
                for (code, name, n, f) in &counties {
                    println!(
                        "  {} {code}: {n} place(s): to move {}, moved {}, refused {}",
                        if name.is_empty() { "(no county)" } else { name },
                        f.to_move,
                        f.moved,
                        f.refused
                    );
                }
            }
            let join = |v: &[(String, i64)]| {
                v.iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if calls.is_empty() {
                println!("respond:  nobody called yet");
            } else {
                println!("respond:  calls {}", join(&calls));
            }
            if !answers.is_empty() {
                println!("respond:  answers {}", join(&answers));
            }
            if silent.is_empty() {
                println!("silent:   none");
            }
            // Grouped by place: whom to ring for it, since when (the county's time).
            let mut by_place: std::collections::BTreeMap<
                &str,
                Vec<&stormbell::respond::calls::Silent>,
            > = Default::default();
            for s in &silent {
                by_place.entry(s.target.as_str()).or_default().push(s);
            }
            if !by_place.is_empty() {
                println!(
                    "silent:   {} person(s) at {} place(s), nobody answered:",
                    silent.len(),
                    by_place.len()
                );
            }
            for (place, persons) in by_place {
                let mut names: Vec<String> = persons
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.person))
                    .collect();
                names.sort();
                names.dedup();
                let since = persons
                    .iter()
                    .map(|s| s.called.as_str())
                    .min()
                    .unwrap_or("");
                let mut lineages: Vec<&str> = persons.iter().map(|s| s.lineage.as_str()).collect();
                lineages.sort();
                lineages.dedup();
                println!(
                    "          {place}  {}  since {}  [{}]",
                    names.join(", "),
                    short(since, &tz),
                    lineages.join(" ")
                );
            }
        }
        Err(e) => println!("respond:  unreadable: {e}"),
    }
}

/// The loudspeakers: routes and their links, what terminals played, what is alarmed.
fn broadcast_status(cfg: &Config, store: &Store) {
    let tz = cfg.time_zone();
    let routes = cfg.dispatch.broadcast.routes();
    let configured: Vec<&str> = [("platform", routes.platform), ("icecast", routes.icecast)]
        .into_iter()
        .filter_map(|(n, on)| on.then_some(n))
        .collect();
    match store.read_blocking(stormbell::dispatch::broadcast::jobs::summary) {
        Ok(s) => {
            if configured.is_empty() {
                println!(
                    "broadcast: no route configured ([dispatch.broadcast.platform] / [dispatch.broadcast.icecast])"
                );
            } else {
                println!("broadcast: routes {}", configured.join(", "));
            }
            for l in &s.links {
                if l.ok {
                    println!(
                        "  {}: link ok (checked {})",
                        l.route,
                        local(&l.checked, &tz)
                    );
                } else {
                    println!(
                        "  {}: link DOWN (checked {}; last ok {}): {}",
                        l.route,
                        local(&l.checked, &tz),
                        l.last_ok
                            .as_deref()
                            .map(|t| local(t, &tz))
                            .unwrap_or("never".into()),
                        l.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            let mut by_route: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
            for (route, state, n) in &s.targets {
                by_route
                    .entry(route.as_str())
                    .or_default()
                    .push(format!("{n} {state}"));
            }
            for (route, parts) in by_route {
                println!("  {route} terminals: {}", parts.join(", "));
            }
            if !s.offline.is_empty() {
                println!(
                    "  {} terminal(s) offline by the platform's report",
                    s.offline.len()
                );
            }
            if !s.alarms.is_empty() {
                let parts: Vec<String> = s.alarms.iter().map(|(k, n)| format!("{n} {k}")).collect();
                println!("  alarms for respond: {}", parts.join(", "));
            }
        }
        Err(e) => println!("broadcast: unreadable: {e}"),
    }
}

/// Warnings in force and the outbox: how many messages are waiting, sent, delivered, failed,
/// and how many sends had no verdict (possible duplicates).
fn dispatch_status(cfg: &Config, store: &Store) {
    let tz = cfg.time_zone();
    let policy = cfg.dispatch_policy();
    let found = store.read_blocking(|c| {
        let lineages = stormbell::correlate::store::lineages(c)?;
        Ok((
            lineages,
            stormbell::dispatch::outbox::counts(c)?,
            stormbell::dispatch::outbox::uncertain(c)?,
            stormbell::dispatch::outbox::binds(c)?,
            stormbell::dispatch::outbox::ring_counts(c)?,
            stormbell::dispatch::outbox::unmatched(c, jiff::Timestamp::now())?
                .into_iter()
                .map(|u| {
                    let form = stormbell::dispatch::outbox::form_of(c, &policy, &u.account)?;
                    Ok((u, form))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        ))
    });
    match found {
        Ok((lineages, counts, uncertain, binds, rings, unmatched)) => {
            println!("warnings: {} in force", lineages.len());
            let mut lineages = lineages;
            lineages.sort_by(|a, b| b.tier.cmp(&a.tier).then(a.key().cmp(&b.key())));
            for l in &lineages {
                println!(
                    "          {:<28} {:<11} {:<6} {:>3} place(s)  since {}  {}",
                    l.key(),
                    l.hazard.as_str(),
                    l.tier.as_str(),
                    l.places.len(),
                    stormbell::respond::board::readable(l.issued, &tz),
                    l.area_name
                );
            }
            if counts.is_empty() {
                println!("outbox:   empty");
            }
            let mut by_channel: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
            for ((channel, state), n) in &counts {
                by_channel
                    .entry(channel.as_str())
                    .or_default()
                    .push(format!("{n} {state}"));
            }
            for (channel, parts) in by_channel {
                println!("outbox:   {channel}: {}", parts.join(", "));
            }
            let rung: i64 = rings.iter().map(|r| r.1).sum();
            if rung > 0 {
                let parts: Vec<String> = rings
                    .iter()
                    .filter(|r| r.1 > 0)
                    .map(|(o, n)| format!("{n} {}", o.as_str()))
                    .collect();
                println!("calls:    {rung} rung: {}", parts.join(", "));
            }
            let total: i64 = uncertain.values().sum();
            if total > 0 {
                println!(
                    "outbox:   {total} send(s) had no verdict and went again (possible duplicates)"
                );
            }
            for (u, form) in &unmatched {
                println!(
                    "WARNING:  {}: {} receipt(s) match no message sent (e.g. id {:?}; ids read as \
                     {}): set receipt_ids for this account if its centre writes ids another way",
                    u.account,
                    u.count,
                    u.example,
                    form.as_str()
                );
            }
            // Each SMS centre bind as the channel last knew it (a daemon that is not running
            // shows its binds stopped).
            for b in &binds {
                println!(
                    "smsc:     {}#{} {}{} since {}",
                    b.account,
                    b.slot,
                    if b.state == "down" {
                        "DOWN"
                    } else {
                        b.state.as_str()
                    },
                    b.detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default(),
                    local(&b.since, &tz)
                );
            }
        }
        Err(e) => println!("outbox:   unreadable: {e}"),
    }
}

/// Per-feed health, as the duty officer needs it: is each feed alive, since when is it not.
fn feeds_status(cfg: &Config, store: &Store) {
    let tz = cfg.time_zone();
    let at = |s: &str| local(s, &tz);
    use stormbell::feeds::state;
    let found = store.read_blocking(|c| {
        Ok((
            state::all_health(c)?,
            state::pending_count(c)?,
            state::refusals(c)?,
        ))
    });
    let (health, pending, refusals) = match found {
        Ok(x) => x,
        Err(e) => {
            println!("feeds:    unreadable: {e}");
            return;
        }
    };
    let configured: Vec<&str> = cfg
        .feeds
        .source
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.id.as_str())
        .collect();
    if health.is_empty() && configured.is_empty() {
        println!("feeds:    none configured ([[feeds.source]] in the config file)");
        return;
    }
    println!(
        "feeds:    {} configured, {} inbox entries not yet acted on",
        configured.len(),
        pending
    );
    for id in &configured {
        if !health.iter().any(|h| h.feed == *id) {
            println!("  {id}: never polled");
        }
    }
    for h in &health {
        let state = if h.gap_since.is_some() {
            "GAP"
        } else if h.failures > 0 {
            "FAILING"
        } else if h.last_success.is_some() {
            "ok"
        } else {
            "never succeeded"
        };
        let note = if configured.contains(&h.feed.as_str()) {
            ""
        } else {
            " (no longer configured)"
        };
        println!("  {} [{}] {}{note}: {state}", h.feed, h.kind, h.url);
        println!(
            "      last success {}; {} polls, {} items, {} failure(s) in a row",
            h.last_success.as_deref().map(at).unwrap_or("never".into()),
            h.polls,
            h.items,
            h.failures
        );
        if let Some(since) = &h.gap_since {
            println!("      gap alarm raised {}", at(since));
        }
        if let Some(e) = &h.last_error {
            println!(
                "      last error {}: {e}",
                h.last_error_at.as_deref().map(at).unwrap_or_default()
            );
        }
        for (_, reason, n, detail) in refusals.iter().filter(|r| r.0 == h.feed) {
            println!("      WARNING: {n} frame(s) refused ({reason}); last: {detail}");
        }
    }
}

/// The daemon: the whole pipeline over the configured store, registry and feeds, from start
/// (audited) until SIGTERM or Ctrl-C, or until feeds or correlate ends by itself (an error
/// exit, so systemd restarts it).
pub fn run(cfg: &Config) -> u8 {
    use std::sync::Arc;
    use stormbell::daemon::{self, Pipeline};
    use stormbell::feeds::fetch::HttpFetcher;
    use stormbell::runtime::SystemClock;

    let fail = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("stormbell: {what}{e:#}");
        EXIT_PROBLEMS
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => return fail("cannot start the runtime: ", &e),
    };
    let settings = match cfg.pipeline() {
        Ok(s) => s,
        Err(e) => return fail("rules: ", &e),
    };
    if settings
        .feeds
        .iter()
        .any(|s| s.url.starts_with("replay://"))
    {
        eprintln!(
            "stormbell: replay:// feeds belong in a scenario (`stormbell replay`), not in `run`"
        );
        return EXIT_USAGE;
    }
    // One daemon per database: a second one (or a restore) is refused while this one runs.
    // (On PostgreSQL the nodes share the database; the leader lease decides which one runs.)
    let _claim = match cfg.store.location() {
        stormbell::store::Location::Sqlite(path) => match stormbell::store::Claim::take(&path) {
            Ok(c) => Some(c),
            Err(e) => return fail("", &e),
        },
        stormbell::store::Location::Postgres(_) => None,
    };
    let store = match cfg.store.location().open() {
        Ok(s) => s,
        Err(e) => return fail("", &e),
    };
    let fetcher = match stormbell::http::client(&cfg.http) {
        Ok(c) => Arc::new(HttpFetcher::new(c)),
        Err(e) => return fail("", &e),
    };
    let registry = match stormbell::registry::Registry::load(&store) {
        Ok(r) => Arc::new(r),
        Err(e) => return fail("registry: ", &e),
    };
    // On a shared PostgreSQL the nodes share the outbox (each claims under its name) and one
    // of them leads, by the lease.
    let lease = match cfg.store.location() {
        stormbell::store::Location::Postgres(url) => {
            let settings = cfg.store.lease();
            store.name_node(&settings.node);
            Some(daemon::Lease { url, settings })
        }
        stormbell::store::Location::Sqlite(_) => None,
    };
    let served = store.clone();
    let code = rt.block_on(async move {
        // Listen for signals before announcing readiness, so a supervisor that stops us the
        // moment we say "running" gets a clean shutdown, not a kill.
        let signal = shutdown_signal();
        let pipeline = Pipeline::new(
            settings,
            served.clone(),
            registry,
            Arc::new(SystemClock::new()),
            fetcher,
        );
        match daemon::serve(pipeline, &served, &cfg.office.cap_sender, lease, signal).await {
            Ok(daemon::Served::Stopped) => 0,
            // The service manager starts this node again, as a standby.
            Ok(daemon::Served::SteppedDown) => EXIT_PROBLEMS,
            Err(e) => fail("", &e),
        }
    });
    // Every task and its handle on the store gone, then the store closed: a stopped daemon
    // leaves its database whole in one file (the WAL folded in), as an IT person copying it
    // expects.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    if !store.close(super::CLOSE_WITHIN) {
        tracing::warn!("the database did not close in time; its WAL stays beside it");
    }
    code
}

/// A future that resolves with the name of the first SIGINT/SIGTERM. The handlers are
/// installed when this function is called, not when the future is first polled, so no
/// signal that arrives in between is lost.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
