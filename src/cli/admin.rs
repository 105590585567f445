//! `config check`, `audit verify`, `status` and `run`.

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
    /// Recompute the hash chain and name the first broken link.
    Verify,
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

fn open_existing(cfg: &Config) -> Result<Store, u8> {
    if !cfg.store.path.exists() {
        eprintln!(
            "stormbell: no database at {} (store.path); nothing to check",
            cfg.store.path.display()
        );
        return Err(EXIT_USAGE);
    }
    Store::open(&cfg.store.path).map_err(|e| {
        eprintln!("stormbell: {e}");
        EXIT_PROBLEMS
    })
}

pub fn audit(cmd: AuditCommand, cfg: &Config) -> u8 {
    match cmd {
        AuditCommand::Verify => {
            let store = match open_existing(cfg) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.read_blocking(|c| Ok(audit::verify(c)?)) {
                Ok(audit::Verification::Intact { entries, head }) => {
                    match head {
                        Some((seq, hash)) => println!(
                            "{}: audit intact: {entries} entries; head #{seq} sha256:{hash}",
                            store.path().display()
                        ),
                        None => {
                            println!("{}: audit intact: no entries yet", store.path().display())
                        }
                    }
                    0
                }
                Ok(audit::Verification::Broken {
                    seq,
                    reason,
                    intact_before,
                }) => {
                    println!(
                        "{}: audit BROKEN at entry #{seq}: {reason} ({intact_before} entries before it are intact)",
                        store.path().display()
                    );
                    EXIT_PROBLEMS
                }
                Err(e) => {
                    eprintln!("stormbell: {e}");
                    EXIT_PROBLEMS
                }
            }
        }
    }
}

pub fn status(cfg: &Config) -> u8 {
    println!("office:   {} ({})", cfg.office.name, cfg.office.name_en);
    println!("timezone: {}", cfg.office.timezone);
    println!("database: {}", cfg.store.path.display());
    if !cfg.store.path.exists() {
        println!("          (not created yet: `stormbell run` or `stormbell demo` creates it)");
    } else {
        match Store::open(&cfg.store.path).and_then(|s| s.read_blocking(|c| Ok(audit::verify(c)?)))
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
    }
    if cfg.store.path.exists()
        && let Ok(store) = Store::open(&cfg.store.path)
    {
        match store.read_blocking(|c| Ok(stormbell::registry::db::imports(c)?)) {
            Ok(list) => match list.last() {
                Some(last) => match stormbell::registry::Registry::load(&store) {
                    Ok(reg) => println!(
                        "registry: import #{} at {}: {} villages, {} sites, {} persons",
                        last.id,
                        last.at,
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
    if cfg.store.path.exists()
        && let Ok(store) = Store::open(&cfg.store.path)
    {
        feeds_status(cfg, &store);
    } else if !cfg.feeds.source.is_empty() {
        println!(
            "feeds:    {} configured, never polled",
            cfg.feeds.source.len()
        );
    }
    if cfg.store.path.exists()
        && let Ok(store) = Store::open(&cfg.store.path)
    {
        dispatch_status(&store);
        broadcast_status(cfg, &store);
        respond_status(&store);
    }
    0
}

/// Call-and-respond: calls by state, answers, and the silent list.
fn respond_status(store: &Store) {
    let found = store.read_blocking(|c| {
        let mut st = c.prepare("SELECT state, count(*) FROM respond_call GROUP BY state ORDER BY state")?;
        let calls: Vec<(String, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut st = c.prepare("SELECT kind, count(*) FROM respond_answer WHERE repeat_of IS NULL GROUP BY kind ORDER BY kind")?;
        let answers: Vec<(String, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok((calls, answers, stormbell::respond::calls::silent(c)?))
    });
    match found {
        Ok((calls, answers, silent)) => {
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
            for s in &silent {
                println!(
                    "silent:   {} {} ({}) called {} for {}",
                    s.target, s.name, s.person, s.called, s.lineage
                );
            }
        }
        Err(e) => println!("respond:  unreadable: {e}"),
    }
}

/// The loudspeakers: routes and their links, what terminals played, what is alarmed.
fn broadcast_status(cfg: &Config, store: &Store) {
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
                    println!("  {}: link ok (checked {})", l.route, l.checked);
                } else {
                    println!(
                        "  {}: link DOWN (checked {}; last ok {}): {}",
                        l.route,
                        l.checked,
                        l.last_ok.as_deref().unwrap_or("never"),
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
fn dispatch_status(store: &Store) {
    let found = store.read_blocking(|c| {
        let lineages: i64 = c.query_row("SELECT count(*) FROM corr_lineage", [], |r| r.get(0))?;
        Ok((
            lineages,
            stormbell::dispatch::outbox::counts(c)?,
            stormbell::dispatch::outbox::uncertain(c)?,
            stormbell::dispatch::outbox::binds(c)?,
        ))
    });
    match found {
        Ok((lineages, counts, uncertain, binds)) => {
            println!("warnings: {lineages} in force");
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
            let total: i64 = uncertain.values().sum();
            if total > 0 {
                println!(
                    "outbox:   {total} send(s) had no verdict and went again (possible duplicates)"
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
                    b.since
                );
            }
        }
        Err(e) => println!("outbox:   unreadable: {e}"),
    }
}

/// Per-feed health, as the duty officer needs it: is each feed alive, since when is it not.
fn feeds_status(cfg: &Config, store: &Store) {
    use stormbell::feeds::state;
    let found = store.read_blocking(|c| Ok((state::all_health(c)?, state::pending_count(c)?)));
    let (health, pending) = match found {
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
            h.last_success.as_deref().unwrap_or("never"),
            h.polls,
            h.items,
            h.failures
        );
        if let Some(since) = &h.gap_since {
            println!("      gap alarm raised {since}");
        }
        if let Some(e) = &h.last_error {
            println!(
                "      last error {}: {e}",
                h.last_error_at.as_deref().unwrap_or("")
            );
        }
    }
}

/// The daemon: opens the store, records its start and stop in the audit trail, polls the
/// configured feeds into the inbox, and runs until SIGTERM or Ctrl-C. Later stages (correlate,
/// dispatch, respond) join it issue by issue; until correlate exists, what the feeds hand on
/// is logged and stays in the inbox for it.
pub fn run(cfg: &Config) -> u8 {
    use std::sync::Arc;
    use stormbell::feeds::{clock, fetch, poller};

    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stormbell: cannot start the runtime: {e}");
            return EXIT_USAGE;
        }
    };
    let tz = cfg.time_zone();
    let store = match Store::open(&cfg.store.path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stormbell: {e}");
            return EXIT_PROBLEMS;
        }
    };
    let client = match stormbell::http::client(&cfg.http) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stormbell: {e}");
            return EXIT_PROBLEMS;
        }
    };
    let specs = poller::FeedSpec::from_config(cfg);
    if specs.iter().any(|s| s.url.starts_with("replay://")) {
        eprintln!(
            "stormbell: replay:// feeds belong in a scenario (`stormbell replay`), not in `run`"
        );
        return EXIT_USAGE;
    }
    rt.block_on(async move {
        let started = audit::Entry::now(
            &tz,
            "system",
            "daemon.started",
            cfg.office.cap_sender.clone(),
            serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "pid": std::process::id(), "feeds": specs.len() }),
        );
        if let Err(e) = store.write(move |tx| Ok(audit::append(tx, &started)?)).await {
            eprintln!("stormbell: {e}");
            return EXIT_PROBLEMS;
        }
        // Listen for signals before announcing readiness, so a supervisor that stops us the
        // moment we say "running" gets a clean shutdown, not a kill.
        let signal = shutdown_signal();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (out, inbox) = tokio::sync::mpsc::channel(1024);
        let poller = Arc::new(poller::Poller::new(
            store.clone(),
            Arc::new(fetch::HttpFetcher::new(client)),
            Arc::new(clock::SystemClock::new()),
            poller::Settings::from_config(cfg),
            out,
        ));
        if specs.is_empty() {
            tracing::warn!("no feeds configured ([[feeds.source]]): nothing will be polled");
        }
        let (stop_rx2, stop_rx3) = (stop_rx.clone(), stop_rx.clone());
        let feeds = tokio::spawn(poller.run(specs, stop_rx.clone()));
        // Correlate: the registry and the criteria in force, fed by the feeds.
        let registry = match stormbell::registry::Registry::load(&store) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                eprintln!("stormbell: registry: {e}");
                return EXIT_PROBLEMS;
            }
        };
        if registry.data.villages.is_empty() {
            tracing::warn!("the registry is empty (stormbell registry import DIR): no village can be warned");
        }
        let rules = match cfg.rules() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("stormbell: rules: {e}");
                return EXIT_USAGE;
            }
        };
        let event_codes = rules.event_codes();
        let terminal_count = registry.data.terminals.len();
        let roster = registry.clone();
        let engine = stormbell::correlate::engine::Engine::new(rules, cfg.issuer(), registry);
        // Dispatch: what a previous run left mid-send goes again (counted), then every
        // decision queues its messages in its own transaction, and the SMS channel sends them.
        if let Err(e) = stormbell::dispatch::reconcile(&store, cfg.dispatch_policy().reconcile_grace).await {
            eprintln!("stormbell: dispatch: {e}");
            return EXIT_PROBLEMS;
        }
        let wake = Arc::new(tokio::sync::Notify::new());
        // Broadcast: the village loudspeakers, through the county platform and/or Icecast.
        let bset = cfg.dispatch.broadcast.clone();
        let routes = bset.routes();
        let plan = (routes.platform || routes.icecast).then(|| stormbell::dispatch::broadcast::jobs::Plan {
            routes,
            deadline: jiff::SignedDuration::from_mins(i64::from(bset.deadline_mins)),
            policy: cfg.dispatch_policy(),
        });
        let mut broadcasts = Vec::new();
        if plan.is_some() {
            use stormbell::dispatch::Channel;
            use stormbell::dispatch::broadcast::{audio::Synth, channel::BroadcastChannel, channel::Platform};
            let cache = bset.audio_cache.clone().unwrap_or_else(|| {
                store.path().parent().unwrap_or(std::path::Path::new(".")).join("audio")
            });
            let synth = Synth::mandarin(cache);
            // A missing voice or encoder must stop the daemon now, not fail the first warning.
            if let Err(e) = synth.check(true) {
                eprintln!("stormbell: broadcast: {e}");
                return EXIT_PROBLEMS;
            }
            let keep = cfg.dispatch_policy().expire_after;
            let exercise = cfg.dispatch_policy().exercise;
            if let Some(p) = bset.platform.clone() {
                let office = cfg.dispatch_policy().office;
                // A bad key or resource code stops start-up here, naming it…
                if let Err(e) = Platform::new(p.clone(), &office, tz.clone()) {
                    eprintln!("stormbell: broadcast platform: {e:#}");
                    return EXIT_PROBLEMS;
                }
                // …and each restart of the channel builds it afresh.
                let (st, sy, ev, tz2, sr, wk) = (store.clone(), synth.clone(), event_codes.clone(), tz.clone(), stop_rx.clone(), wake.clone());
                broadcasts.push(supervised("broadcast platform", &store, &stop_rx, move || {
                    let platform = Platform::new(p.clone(), &office, tz2.clone());
                    let (st, sy, ev, sr, wk) = (st.clone(), sy.clone(), ev.clone(), sr.clone(), wk.clone());
                    async move {
                        let ch: Box<dyn Channel> = Box::new(
                            BroadcastChannel::platform(platform?, st, sy, keep)
                                .with_event_types(ev)
                                .with_exercise(exercise),
                        );
                        ch.run(sr, wk).await
                    }
                }));
            }
            if let Some(i) = bset.icecast.clone() {
                let (st, sr, wk) = (store.clone(), stop_rx.clone(), wake.clone());
                broadcasts.push(supervised("broadcast icecast", &store, &stop_rx, move || {
                    let ch: Box<dyn Channel> = Box::new(
                        BroadcastChannel::icecast(i.clone(), st.clone(), synth.clone(), keep).with_exercise(exercise),
                    );
                    ch.run(sr.clone(), wk.clone())
                }));
            }
        } else if terminal_count > 0 {
            tracing::warn!(
                terminals = terminal_count,
                "no broadcast route ([dispatch.broadcast.platform] or [dispatch.broadcast.icecast]) configured: the registry's loudspeakers will not sound"
            );
        }
        // Respond: every decision also records whom it calls (same transaction), and one task
        // reads their answers and climbs the ladder for the silent ones.
        let hook = stormbell::respond::chain(
            stormbell::dispatch::hook_with(cfg.dispatch_policy(), wake.clone(), plan),
            stormbell::respond::hook(cfg.respond.clone(), cfg.dispatch_policy()),
        );
        let checkin_roster = roster.clone();
        let office_roster = roster.clone();
        let respond = {
            let (st, rs, pol, wk, sr) = (store.clone(), cfg.respond.clone(), cfg.dispatch_policy(), wake.clone(), stop_rx.clone());
            supervised("respond", &store, &stop_rx, move || {
                stormbell::respond::run(
                    st.clone(),
                    roster.clone(),
                    rs.clone(),
                    pol.clone(),
                    Arc::new(clock::SystemClock::new()),
                    wk.clone(),
                    sr.clone(),
                )
            })
        };
        let gateway = cfg.dispatch.kannel.clone().map(|k| {
            use stormbell::dispatch::Channel;
            let (st, pol, sr, wk) = (store.clone(), cfg.dispatch_policy(), stop_rx.clone(), wake.clone());
            let mut restart = false;
            supervised("kannel", &store, &stop_rx, move || {
                let ch: Box<dyn Channel> = Box::new(stormbell::dispatch::kannel::KannelChannel::new(
                    k.clone(),
                    st.clone(),
                    pol.clone(),
                ));
                resend_after_crash(std::mem::replace(&mut restart, true), st.clone(), pol.reconcile_grace, ch.run(sr.clone(), wk.clone()))
            })
        });
        let sms = if cfg.dispatch.sms.accounts.is_empty() {
            if gateway.is_none() {
                tracing::warn!("no SMS account ([[dispatch.sms.accounts]]) or gateway ([dispatch.kannel]) configured: messages wait in the outbox");
            }
            None
        } else {
            use stormbell::dispatch::Channel;
            let (accounts, st, pol, sr, wk) = (cfg.dispatch.sms.accounts.clone(), store.clone(), cfg.dispatch_policy(), stop_rx.clone(), wake.clone());
            let mut restart = false;
            Some(supervised("sms", &store, &stop_rx, move || {
                let ch: Box<dyn Channel> = Box::new(stormbell::dispatch::sms::SmsChannel::new(
                    accounts.clone(),
                    st.clone(),
                    pol.clone(),
                ));
                resend_after_crash(std::mem::replace(&mut restart, true), st.clone(), pol.reconcile_grace, ch.run(sr.clone(), wk.clone()))
            }))
        };
        let (targets_tx, targets_rx) = tokio::sync::mpsc::channel(1024);
        let correlate = tokio::spawn(stormbell::correlate::engine::run(
            engine,
            store.clone(),
            Arc::new(clock::SystemClock::new()),
            stormbell::correlate::engine::RunSettings {
                tick: std::time::Duration::from_secs(cfg.correlate.tick_secs),
                phase: std::time::Duration::ZERO,
                tz: tz.clone(),
                on_decision: Some(hook),
            },
            inbox,
            targets_tx,
            stop_rx2,
        ));
        let web_settings = stormbell::web::WebSettings {
            title: cfg.office.name.clone(),
            sender: cfg.office.cap_sender.clone(),
            base: cfg.web.public_url.clone(),
        };
        // Each warning's targets are logged and the published files refreshed (the messages
        // themselves were queued in the decision's transaction).
        let publish_dir = (!cfg.web.publish_dir.is_empty()).then(|| std::path::PathBuf::from(&cfg.web.publish_dir));
        let consumer = tokio::spawn(stormbell::web::follow_targets(
            targets_rx,
            store.clone(),
            publish_dir,
            web_settings.clone(),
        ));
        let web = if cfg.web.listen.is_empty() {
            None
        } else {
            match tokio::net::TcpListener::bind(&cfg.web.listen).await {
                Ok(l) => {
                    tracing::info!(listen = %cfg.web.listen, "CAP feed at /cap/feed.atom");
                    let mut rx = stop_rx3;
                    // The check-in pages behind the links in the texts (dispatch.link_base).
                    let checkin = match stormbell::web::checkin::Checkin::new(
                        store.clone(),
                        checkin_roster,
                        cfg.respond.clone(),
                        cfg.dispatch_policy(),
                        Default::default(),
                        Arc::new(clock::SystemClock::new()),
                    )
                    .await
                    {
                        Ok(c) => Some(c),
                        Err(e) => {
                            eprintln!("stormbell: check-in pages: {e:#}");
                            let _ = stop_tx.send(true);
                            return EXIT_PROBLEMS;
                        }
                    };
                    // The duty office's page, API and CSV (users: `stormbell user add`).
                    let office = match stormbell::web::office::Office::new(
                        store.clone(),
                        office_roster,
                        cfg.time_zone(),
                        &cfg.office.name,
                        &cfg.web.public_url,
                    )
                    .await
                    {
                        Ok(o) => Some(o),
                        Err(e) => {
                            eprintln!("stormbell: office page: {e:#}");
                            let _ = stop_tx.send(true);
                            return EXIT_PROBLEMS;
                        }
                    };
                    tracing::info!(listen = %cfg.web.listen, "duty office page at /office");
                    Some(tokio::spawn(stormbell::web::serve(l, store.clone(), web_settings, checkin, office, async move {
                        stormbell::feeds::poller::stopped(&mut rx).await;
                    })))
                }
                Err(e) => {
                    eprintln!("stormbell: web.listen {}: {e}", cfg.web.listen);
                    let _ = stop_tx.send(true);
                    return EXIT_PROBLEMS;
                }
            }
        };
        tracing::info!(db = %store.path().display(), "stormbell running");
        // Run until a signal, or until the feeds task ends by itself: a daemon that has
        // stopped polling must not look alive, so that is an error exit for the supervisor.
        // The same for the correlate stage: its memory is rebuilt from the inbox at start, so
        // the honest recovery is a restart of the daemon (systemd's Restart=on-failure), said
        // loudly, never a daemon that polls and decides nothing.
        let mut feeds = feeds;
        let mut correlate = correlate;
        let mut correlate_done = None;
        let early = tokio::select! {
            s = signal => Err(s),
            r = &mut feeds => Ok(r),
            r = &mut correlate => {
                correlate_done = Some(r);
                let _ = stop_tx.send(true);
                Ok((&mut feeds).await)
            }
        };
        let (signal, result, mut code) = match early {
            Err(signal) => {
                tracing::info!(%signal, "shutting down");
                let _ = stop_tx.send(true);
                (signal, feeds.await, 0)
            }
            Ok(result) if correlate_done.is_some() => {
                tracing::error!("the correlate stage ended without being asked to; shutting down");
                ("none (the correlate stage ended)", result, EXIT_PROBLEMS)
            }
            Ok(result) => {
                tracing::error!("the feeds task ended without being asked to; shutting down");
                // Every other stage waits for the word to stop.
                let _ = stop_tx.send(true);
                ("none (the feeds task ended)", result, EXIT_PROBLEMS)
            }
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("stormbell: feeds: {e}");
                code = EXIT_PROBLEMS;
            }
            Err(e) => {
                eprintln!("stormbell: feeds task: {e}");
                code = EXIT_PROBLEMS;
            }
        }
        let correlated = match correlate_done {
            Some(r) => r,
            None => correlate.await,
        };
        match correlated {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("stormbell: correlate: {e}");
                code = EXIT_PROBLEMS;
            }
            Err(e) => {
                eprintln!("stormbell: correlate task: {e}");
                code = EXIT_PROBLEMS;
            }
        }
        let _ = consumer.await;
        let named = [("sms", sms), ("kannel", gateway)]
            .into_iter()
            .chain(broadcasts.into_iter().map(|b| ("broadcast", Some(b))))
            .chain([("respond", Some(respond))]);
        for (name, task) in named {
            let Some(task) = task else { continue };
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    eprintln!("stormbell: {name}: {e}");
                    code = EXIT_PROBLEMS;
                }
                Err(e) => {
                    eprintln!("stormbell: {name} task: {e}");
                    code = EXIT_PROBLEMS;
                }
            }
        }
        if let Some(web) = web {
            let _ = web.await;
        }
        let stopped = audit::Entry::now(
            &tz,
            "system",
            "daemon.stopped",
            cfg.office.cap_sender.clone(),
            serde_json::json!({ "signal": signal }),
        );
        match store.write(move |tx| Ok(audit::append(tx, &stopped)?)).await {
            Ok(_) => code,
            Err(e) => {
                eprintln!("stormbell: {e}");
                EXIT_PROBLEMS
            }
        }
    })
}

/// A restarted SMS channel first does what start-up does: the rows its failed run left
/// mid-send wait for a receipt proving the SMSC had them, then go again (counted as possible
/// duplicates), so none is stuck half-sent until the next daemon restart.
async fn resend_after_crash(
    restart: bool,
    store: Store,
    grace: jiff::SignedDuration,
    run: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    if restart {
        stormbell::dispatch::reconcile(&store, grace).await?;
    }
    run.await
}

/// Spawn a stage under supervision: restarted with backoff when it fails, panics or ends
/// before shutdown, each failure logged and audited (`stormbell::supervise`).
fn supervised<F, Fut>(
    name: &'static str,
    store: &Store,
    stop: &tokio::sync::watch::Receiver<bool>,
    make: F,
) -> tokio::task::JoinHandle<anyhow::Result<()>>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (store, stop) = (store.clone(), stop.clone());
    tokio::spawn(async move {
        let restarts =
            stormbell::supervise::stage(name, store, stop, Default::default(), make).await;
        if restarts > 0 {
            tracing::warn!(
                stage = name,
                restarts,
                "stage was restarted during this run"
            );
        }
        Ok(())
    })
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
