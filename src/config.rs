//! Configuration: the built-in `config/default.toml`, then a file, then `STORMBELL_…`
//! environment variables, then command-line flags.
//!
//! A wrong value at 3 a.m. must be found before the daemon starts, not when the first warning
//! fails: every problem is reported with where the value came from (file or variable), the
//! key, and what was expected — all of them at once.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

/// The built-in defaults, compiled in from `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Name under which the built-in defaults appear in messages.
pub const DEFAULT_NAME: &str = "built-in config/default.toml";

/// Everything stormbell can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who is issuing warnings.
    pub office: Office,
    /// Where state is kept.
    pub store: StoreConfig,
    /// How to log.
    pub log: LogConfig,
    /// Limits for reading CAP and feed documents.
    pub cap: CapConfig,
    /// Outgoing HTTP (feeds, `cap validate --follow`).
    pub http: crate::http::HttpSettings,
    /// The county registry.
    pub registry: crate::registry::RegistrySettings,
    /// `[feeds]`: polling defaults and the `[[feeds.source]]` list.
    pub feeds: crate::feeds::FeedsSettings,
    /// `[correlate]`: which warning criteria, how often to re-evaluate.
    pub correlate: CorrelateConfig,
    /// `[web]`: the HTTP port (CAP feed) and the published files.
    pub web: WebConfig,
    /// `[dispatch]`: the outbox policy and the SMS accounts.
    pub dispatch: DispatchConfig,
    /// `[respond]`: answer deadlines and the escalation ladder per tier.
    pub respond: crate::respond::calls::RespondSettings,
}

/// `[dispatch]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    /// Language of the texts: `zh-CN` or `en`.
    pub lang: String,
    /// At most this many messages to one person per `cap_window_mins` (raises always go).
    pub cap_per_person: u32,
    /// The window of that cap, minutes.
    pub cap_window_mins: u32,
    /// A message still queued after this many hours is expired.
    pub expire_hours: u32,
    /// Attempts before a message fails for good.
    pub max_attempts: u32,
    /// After a restart, seconds a message that was mid-send waits for a receipt proving the
    /// SMSC had it before it is sent again.
    pub reconcile_grace_secs: u32,
    /// Seconds the parts of a long reply from a phone are waited for before it is handled
    /// with what came (marked incomplete).
    #[serde(default = "default_reply_parts_wait")]
    pub reply_parts_wait_secs: u32,
    /// Base of the personal check-in links in the texts (`https://fx.example.cn/r/`); empty:
    /// no links.
    #[serde(default)]
    pub link_base: String,
    /// Hours a check-in link keeps working after its warning was decided.
    #[serde(default = "default_link_hours")]
    pub link_valid_hours: u32,
    /// `[dispatch.sms]`.
    pub sms: SmsConfig,
    /// `[dispatch.kannel]`: send SMS through an HTTP SMS gateway instead of (or beside) SMPP.
    #[serde(default)]
    pub kannel: Option<crate::dispatch::kannel::KannelSettings>,
    /// `[dispatch.broadcast]`: village loudspeakers, through the county emergency-broadcast
    /// platform and/or Icecast mounts.
    #[serde(default)]
    pub broadcast: crate::dispatch::broadcast::BroadcastSettings,
    /// `[dispatch.voice]`: calls through SIP trunks (电话叫应), rung by the ladder's `call`
    /// and `call_town` steps.
    #[serde(default)]
    pub voice: crate::dispatch::voice::VoiceSettings,
}

fn default_reply_parts_wait() -> u32 {
    60
}

fn default_link_hours() -> u32 {
    72
}

/// `[dispatch.sms]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// `[[dispatch.sms.accounts]]`: none means messages wait in the outbox.
    #[serde(default)]
    pub accounts: Vec<crate::dispatch::sms::AccountSettings>,
}

/// `[correlate]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelateConfig {
    /// `national` (the built-in defaults) or a path to a rules file (config/rules/*.toml).
    pub rules: String,
    /// Re-evaluate at least every this many seconds (holds and windows move with time).
    pub tick_secs: u64,
    /// CAP `<status>` of the warnings: `Actual`, or `Exercise` on a training system.
    pub status: String,
}

/// `[web]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on, e.g. `127.0.0.1:8470`; empty for no HTTP server.
    pub listen: String,
    /// Base URL others reach this server at, for links in the Atom feed.
    pub public_url: String,
    /// Directory the CAP feed and alerts are also written to as files; empty for none.
    pub publish_dir: String,
    /// `[web.limits]`: what one connection and one client may hold.
    pub limits: crate::runtime::listen::Limits,
}

/// The issuing office.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Office {
    /// Name, Chinese first.
    pub name: String,
    /// English name.
    pub name_en: String,
    /// IANA time zone, e.g. `Asia/Shanghai`.
    pub timezone: String,
    /// CAP `<sender>` of this office.
    pub cap_sender: String,
    /// 14-digit national sender code.
    pub sender_code: String,
}

/// Where state is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Which engine keeps the store.
    pub backend: StoreBackend,
    /// SQLite database file (and, on either engine, where the audit checkpoints are kept
    /// beside).
    pub path: PathBuf,
    /// PostgreSQL: the libpq URL (several hosts with `target_session_attrs=read-write`).
    pub url: String,
    /// PostgreSQL: this node's name among the nodes (empty: the host name).
    pub node: String,
    /// PostgreSQL: seconds the leader's lease lasts unrenewed: a standby takes over within
    /// this long of the leader's death.
    pub lease_secs: u64,
    /// Where signed checkpoints of the audit trail's head are appended (empty: beside the
    /// database, `<name>.audit-checkpoints`).
    pub audit_checkpoints: PathBuf,
    /// The key that signs them (empty: beside the database, `<name>.audit-key`; created at
    /// the daemon's first start).
    pub audit_key: PathBuf,
    /// Minutes between checkpoints while the trail grows (0: only at shutdown).
    pub audit_checkpoint_mins: u64,
    /// Days that feed documents, seen keys, consumed inbox entries and handled receipts are
    /// kept (0: for ever). The record of warnings, messages and answers is always kept.
    pub retention_days: u64,
}

/// The store's engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One SQLite file on this machine.
    Sqlite,
    /// A PostgreSQL database several nodes share.
    Postgres,
}

impl StoreConfig {
    /// The leader lease's rules for this node.
    pub fn lease(&self) -> crate::store::lease::LeaseSettings {
        let node = if self.node.is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "stormbell".into())
        } else {
            self.node.clone()
        };
        crate::store::lease::LeaseSettings {
            node,
            ttl: std::time::Duration::from_secs(self.lease_secs),
        }
    }

    /// Where the database is, by the configured engine.
    pub fn location(&self) -> crate::store::Location {
        match self.backend {
            StoreBackend::Sqlite => crate::store::Location::Sqlite(self.path.clone()),
            StoreBackend::Postgres => crate::store::Location::Postgres(self.url.clone()),
        }
    }

    /// Where checkpoints are kept and the key that signs them, as configured or beside the
    /// database. A PostgreSQL database has no folder of its own: its files go in the data
    /// folder (`store.path`'s), named after the database and its server, so that two
    /// databases (a county's and a drill's, two offices' on one server) never share one
    /// checkpoint file and key, whose heads one of them would then fail to hold.
    pub fn checkpoints(&self, every: bool) -> crate::store::checkpoint::Settings {
        let beside = |configured: &Path, ext: &str| {
            if !configured.as_os_str().is_empty() {
                return configured.to_path_buf();
            }
            match self.backend {
                StoreBackend::Sqlite => self.path.with_extension(ext),
                StoreBackend::Postgres => self
                    .path
                    .with_file_name(format!("{}.{ext}", postgres_name(&self.url))),
            }
        };
        crate::store::checkpoint::Settings {
            file: beside(&self.audit_checkpoints, "audit-checkpoints"),
            key: beside(&self.audit_key, "audit-key"),
            every: (every && self.audit_checkpoint_mins > 0)
                .then(|| std::time::Duration::from_secs(self.audit_checkpoint_mins * 60)),
        }
    }
}

/// A PostgreSQL database as a file name: `<database>@<hosts>_<ports>` from its URL (the
/// password never), every character but letters, digits and `.,-@_` as `_`.
fn postgres_name(url: &str) -> String {
    use std::str::FromStr;
    let raw = match postgres::Config::from_str(url) {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
            format!(
                "{}@{}_{}",
                c.get_dbname().or(c.get_user()).unwrap_or("postgres"),
                hosts.join(","),
                ports.join(",")
            )
        }
        Err(_) => "postgres".to_string(),
    };
    raw.chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ".,-@_".contains(ch) {
                ch
            } else {
                '_'
            }
        })
        .collect()
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How to log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// human or json.
    pub format: LogFormat,
    /// tracing filter directives.
    pub level: String,
}

/// Limits for reading CAP and feed documents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapConfig {
    /// Largest document accepted, in bytes.
    pub max_document_bytes: usize,
    /// Deepest nesting accepted.
    pub max_depth: usize,
    /// Most elements accepted.
    pub max_elements: usize,
    /// Most distinct namespace URIs accepted in one document.
    pub max_namespaces: usize,
}

/// Values given on the command line, which override every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--db PATH`
    pub store_path: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<LogFormat>,
    /// `--log-level`
    pub log_level: Option<String>,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where the value came from: a file path, an environment variable, the built-in defaults.
    pub source: String,
    /// The dotted key, e.g. `store.path`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: key `{}`: {}", self.source, self.key, self.message)
        }
    }
}

/// All problems found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// Every problem, not just the first.
    pub problems: Vec<ConfigProblem>,
}

/// A provider with a name of our choosing (so messages say which layer a value came from).
struct Named<P> {
    inner: P,
    name: String,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }
    fn data(&self) -> figment::Result<figment::value::Map<Profile, figment::value::Dict>> {
        self.inner.data()
    }
}

/// Flags layer.
struct Flags(Overrides);

impl Provider for Flags {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flag")
    }
    fn data(&self) -> figment::Result<figment::value::Map<Profile, figment::value::Dict>> {
        use figment::value::{Dict, Value};
        let mut root = Dict::new();
        let mut put = |section: &str, key: &str, v: Value| {
            let entry = root
                .entry(section.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, d) = entry {
                d.insert(key.to_string(), v);
            }
        };
        if let Some(p) = &self.0.store_path {
            // `--db` names a file, or a PostgreSQL database by its URL.
            match crate::store::Location::parse(&p.to_string_lossy()) {
                crate::store::Location::Postgres(url) => {
                    put("store", "backend", Value::from("postgres"));
                    put("store", "url", Value::from(url));
                }
                crate::store::Location::Sqlite(path) => {
                    put("store", "path", Value::from(path.display().to_string()));
                }
            }
        }
        if let Some(f) = self.0.log_format {
            let s = match f {
                LogFormat::Human => "human",
                LogFormat::Json => "json",
            };
            put("log", "format", Value::from(s));
        }
        if let Some(l) = &self.0.log_level {
            put("log", "level", Value::from(l.clone()));
        }
        Ok(Profile::Default.collect(root))
    }
}

impl Config {
    /// The layered figment: built-in defaults, `file`, environment, flags.
    fn figment(file: Option<&Path>, overrides: &Overrides) -> Result<Figment, ConfigError> {
        let mut fig = Figment::new().merge(Named {
            inner: Toml::string(DEFAULT_TOML),
            name: DEFAULT_NAME.into(),
        });
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError {
                    problems: vec![ConfigProblem {
                        source: path.display().to_string(),
                        key: String::new(),
                        message: "no such file".into(),
                    }],
                });
            }
            // A file that is not TOML is one problem, said once with its line (figment would
            // repeat it for every section read from it).
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                problems: vec![ConfigProblem {
                    source: path.display().to_string(),
                    key: String::new(),
                    message: format!("cannot be read: {e}"),
                }],
            })?;
            if let Err(e) = text.parse::<toml::Table>() {
                return Err(ConfigError {
                    problems: vec![ConfigProblem {
                        source: path.display().to_string(),
                        key: String::new(),
                        message: format!("not valid TOML: {}", e.to_string().trim()),
                    }],
                });
            }
            fig = fig.merge(Toml::file(path));
        }
        Ok(fig
            .merge(Env::prefixed("STORMBELL_").split("__"))
            .merge(Flags(overrides.clone())))
    }

    /// Load and validate the configuration, reporting every problem found.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let fig = Self::figment(file, overrides)?;
        let mut problems = Vec::new();
        // Sections are extracted one by one so that a mistake in one does not hide another.
        fn section<T: serde::de::DeserializeOwned>(
            fig: &Figment,
            name: &str,
            problems: &mut Vec<ConfigProblem>,
        ) -> Option<T> {
            match fig.extract_inner::<T>(name) {
                Ok(v) => Some(v),
                Err(e) => {
                    problems.extend(e.into_iter().map(|mut e| {
                        // figment 0.10 appends the section to the end of the error path
                        // instead of prepending it; put it back in front.
                        if e.path.last().map(String::as_str) == Some(name) {
                            e.path.pop();
                            e.path.insert(0, name.to_string());
                        }
                        from_figment(&e)
                    }));
                    None
                }
            }
        }
        let office = section::<Office>(&fig, "office", &mut problems);
        let store = section::<StoreConfig>(&fig, "store", &mut problems);
        let log = section::<LogConfig>(&fig, "log", &mut problems);
        let cap = section::<CapConfig>(&fig, "cap", &mut problems);
        let http = section::<crate::http::HttpSettings>(&fig, "http", &mut problems);
        let registry =
            section::<crate::registry::RegistrySettings>(&fig, "registry", &mut problems);
        let feeds = section::<crate::feeds::FeedsSettings>(&fig, "feeds", &mut problems);
        let correlate = section::<CorrelateConfig>(&fig, "correlate", &mut problems);
        let web = section::<WebConfig>(&fig, "web", &mut problems);
        let dispatch = section::<DispatchConfig>(&fig, "dispatch", &mut problems);
        let respond =
            section::<crate::respond::calls::RespondSettings>(&fig, "respond", &mut problems);
        if let Some(r) = &respond {
            for (key, message) in r.problems() {
                problems.push(ConfigProblem {
                    source: source_of(&fig, &key),
                    key,
                    message,
                });
            }
        }
        const SECTIONS: &[&str] = &[
            "office",
            "store",
            "log",
            "cap",
            "http",
            "registry",
            "feeds",
            "correlate",
            "web",
            "dispatch",
            "respond",
        ];
        if let Ok(data) = fig.data()
            && let Some(dict) = data.get(&Profile::Default)
        {
            for key in dict.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
                problems.push(ConfigProblem {
                    source: source_of(&fig, key),
                    key: key.clone(),
                    message: format!("unknown section; expected one of {}", SECTIONS.join(", ")),
                });
            }
        }
        // Check what did parse, even if another section did not, so every problem shows.
        check_office(office.as_ref(), &fig, &mut problems);
        check_store(store.as_ref(), &fig, &mut problems);
        check_log(log.as_ref(), &fig, &mut problems);
        check_cap(cap.as_ref(), &fig, &mut problems);
        check_http(http.as_ref(), &fig, &mut problems);
        check_registry(registry.as_ref(), &fig, &mut problems);
        check_feeds(feeds.as_ref(), &fig, &mut problems);
        if let Some(c) = &correlate {
            let mut bad = |key: &str, message: String| {
                problems.push(ConfigProblem {
                    source: source_of(&fig, &format!("correlate.{key}")),
                    key: format!("correlate.{key}"),
                    message,
                })
            };
            if c.rules != "national"
                && let Err(e) = crate::correlate::Rules::load(std::path::Path::new(&c.rules))
            {
                bad("rules", format!("{e}"));
            }
            if c.tick_secs == 0 || c.tick_secs > 3600 {
                bad("tick_secs", "must be 1–3600".into());
            }
            if !matches!(c.status.as_str(), "Actual" | "Exercise") {
                bad(
                    "status",
                    format!("`{}`: expected Actual or Exercise", c.status),
                );
            }
        }
        if let Some(w) = &web
            && !w.listen.is_empty()
            && w.listen.parse::<std::net::SocketAddr>().is_err()
        {
            problems.push(ConfigProblem {
                source: source_of(&fig, "web.listen"),
                key: "web.listen".into(),
                message: format!(
                    "`{}` is not an address:port (e.g. 127.0.0.1:8470)",
                    w.listen
                ),
            });
        }
        if let Some(w) = &web
            && let Err(why) = https_or_loopback(&w.public_url)
        {
            problems.push(ConfigProblem {
                source: source_of(&fig, "web.public_url"),
                key: "web.public_url".into(),
                message: why,
            });
        }
        if let Some(d) = &dispatch
            && !d.link_base.is_empty()
            && let Err(why) = https_or_loopback(&d.link_base)
        {
            problems.push(ConfigProblem {
                source: source_of(&fig, "dispatch.link_base"),
                key: "dispatch.link_base".into(),
                message: why,
            });
        }
        if let Some(w) = &web {
            let l = &w.limits;
            let mut bad = |key: &str, message: String| {
                problems.push(ConfigProblem {
                    source: source_of(&fig, &format!("web.limits.{key}")),
                    key: format!("web.limits.{key}"),
                    message,
                })
            };
            if !(1..=300).contains(&l.header_secs) {
                bad("header_secs", format!("{} is outside 1–300", l.header_secs));
            }
            if !(1..=3600).contains(&l.request_secs) {
                bad(
                    "request_secs",
                    format!("{} is outside 1–3600", l.request_secs),
                );
            }
            if l.max_connections == 0 {
                bad("max_connections", "must be at least 1".into());
            }
            if l.max_per_address == 0 || l.max_per_address > l.max_connections {
                bad(
                    "max_per_address",
                    format!(
                        "{} must be at least 1 and at most max_connections ({})",
                        l.max_per_address, l.max_connections
                    ),
                );
            }
        }
        if let Some(d) = &dispatch {
            let mut bad = |key: &str, message: String| {
                problems.push(ConfigProblem {
                    source: source_of(&fig, &format!("dispatch.{key}")),
                    key: format!("dispatch.{key}"),
                    message,
                })
            };
            if !matches!(d.lang.as_str(), "zh-CN" | "en") {
                bad("lang", format!("`{}`: expected zh-CN or en", d.lang));
            }
            if d.cap_per_person == 0 {
                bad("cap_per_person", "must be at least 1".into());
            }
            if d.max_attempts == 0 {
                bad("max_attempts", "must be at least 1".into());
            }
            let mut names = std::collections::HashSet::new();
            for (i, a) in d.sms.accounts.iter().enumerate() {
                if !names.insert(a.name.clone()) {
                    bad(
                        &format!("sms.accounts[{i}].name"),
                        format!("`{}` is used twice", a.name),
                    );
                }
                if a.tps == 0 {
                    bad(
                        &format!("sms.accounts[{i}].tps"),
                        "must be at least 1".into(),
                    );
                }
                if a.window == 0 || a.window > 1000 {
                    bad(
                        &format!("sms.accounts[{i}].window"),
                        "must be 1–1000".into(),
                    );
                }
                if a.address.parse::<std::net::SocketAddr>().is_err() && !a.address.contains(':') {
                    bad(
                        &format!("sms.accounts[{i}].address"),
                        format!("`{}` is not host:port", a.address),
                    );
                }
            }
            if let Some(why) = d.kannel.as_ref().and_then(|k| k.problem()) {
                bad("kannel.dlr_listen", why);
            }
            for (key, why) in d.voice.problems() {
                bad(key.trim_start_matches("dispatch."), why);
            }
        }
        match (
            office, store, log, cap, http, registry, feeds, correlate, web, dispatch, respond,
        ) {
            (
                Some(office),
                Some(store),
                Some(log),
                Some(cap),
                Some(http),
                Some(registry),
                Some(feeds),
                Some(correlate),
                Some(web),
                Some(dispatch),
                Some(respond),
            ) if problems.is_empty() => Ok(Config {
                office,
                store,
                log,
                cap,
                http,
                registry,
                feeds,
                correlate,
                web,
                dispatch,
                respond,
            }),
            _ => Err(ConfigError { problems }),
        }
    }

    /// The outbox policy from `[dispatch]` and `[office]`.
    pub fn dispatch_policy(&self) -> crate::dispatch::Policy {
        crate::dispatch::Policy {
            cap_per_person: self.dispatch.cap_per_person,
            cap_window: jiff::SignedDuration::from_mins(i64::from(self.dispatch.cap_window_mins)),
            expire_after: jiff::SignedDuration::from_hours(i64::from(self.dispatch.expire_hours)),
            max_attempts: self.dispatch.max_attempts,
            reconcile_grace: jiff::SignedDuration::from_secs(i64::from(
                self.dispatch.reconcile_grace_secs,
            )),
            reply_parts_wait: jiff::SignedDuration::from_secs(i64::from(
                self.dispatch.reply_parts_wait_secs.max(1),
            )),
            office: if self.dispatch.lang == "en" {
                self.office.name_en.clone()
            } else {
                self.office.name.clone()
            },
            exercise: self.correlate.status == "Exercise",
            lang: self.dispatch.lang.clone(),
            link_base: (!self.dispatch.link_base.is_empty())
                .then(|| self.dispatch.link_base.clone()),
            link_valid: jiff::SignedDuration::from_hours(i64::from(self.dispatch.link_valid_hours)),
            accounts: self
                .dispatch
                .sms
                .accounts
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        crate::dispatch::outbox::AccountRules {
                            ids: a.receipt_ids,
                            receipt_deadline: jiff::SignedDuration::from_secs(
                                a.receipt_deadline_secs.max(1) as i64,
                            ),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The office time zone (validated on load).
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.office.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// The warning criteria in force.
    pub fn rules(&self) -> Result<crate::correlate::Rules, crate::correlate::RulesError> {
        if self.correlate.rules == "national" {
            Ok(crate::correlate::Rules::national())
        } else {
            crate::correlate::Rules::load(std::path::Path::new(&self.correlate.rules))
        }
    }

    /// Who issues warnings, as the correlate stage needs it.
    pub fn issuer(&self) -> crate::correlate::Issuer {
        crate::correlate::Issuer {
            sender: self.office.cap_sender.clone(),
            sender_code: self.office.sender_code.clone(),
            name: self.office.name.clone(),
            name_en: self.office.name_en.clone(),
            tz: self.time_zone(),
            status: if self.correlate.status == "Exercise" {
                crate::cap::model::Status::Exercise
            } else {
                crate::cap::model::Status::Actual
            },
        }
    }

    /// Every stage's settings, composed: what [`crate::daemon::Pipeline`] is built from. Fails
    /// only when the rules file named by `correlate.rules` cannot be read.
    pub fn pipeline(&self) -> Result<crate::daemon::Settings, crate::correlate::RulesError> {
        let rules = self.rules()?;
        let event_types = rules.event_codes();
        let tz = self.time_zone();
        let feed = crate::web::WebSettings {
            title: self.office.name.clone(),
            sender: self.office.cap_sender.clone(),
            base: self.web.public_url.clone(),
        };
        Ok(crate::daemon::Settings {
            tz: tz.clone(),
            feeds: crate::feeds::poller::FeedSpec::all(&self.feeds, self.cap_limits()),
            limits: self.cap_limits(),
            poller: crate::feeds::poller::Settings::new(&self.feeds, tz),
            rules,
            issuer: self.issuer(),
            tick: std::time::Duration::from_secs(self.correlate.tick_secs),
            phase: std::time::Duration::ZERO,
            policy: self.dispatch_policy(),
            respond: self.respond.clone(),
            respond_task: true,
            registry_reload: (self.registry.reload_secs > 0)
                .then(|| std::time::Duration::from_secs(self.registry.reload_secs)),
            channels: crate::daemon::ChannelSettings {
                sms: self.dispatch.sms.accounts.clone(),
                kannel: self.dispatch.kannel.clone(),
                voice: self.dispatch.voice.clone(),
                broadcast: self.dispatch.broadcast.clone(),
                audio_cache: self
                    .store
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("audio"),
                event_types,
            },
            web: (!self.web.listen.is_empty()).then(|| crate::daemon::WebStage {
                listen: self.web.listen.clone(),
                office: self.office.name.clone(),
                limits: self.web.limits.clone(),
            }),
            feed,
            checkpoints: Some(self.store.checkpoints(true)),
            retention: (self.store.retention_days > 0).then(|| crate::retention::Settings {
                keep: jiff::SignedDuration::from_hours(self.store.retention_days as i64 * 24),
                every: std::time::Duration::from_secs(6 * 3600),
            }),
            publish_dir: (!self.web.publish_dir.is_empty())
                .then(|| PathBuf::from(&self.web.publish_dir)),
        })
    }

    /// Limits for the roster health report.
    pub fn health_limits(&self) -> crate::registry::health::HealthLimits {
        crate::registry::health::HealthLimits {
            max_sites_per_person: self.registry.max_sites_per_person,
            confirm_within_days: self.registry.confirm_within_days,
        }
    }

    /// Limits for reading CAP documents.
    pub fn cap_limits(&self) -> crate::cap::Limits {
        crate::cap::Limits {
            max_bytes: self.cap.max_document_bytes,
            max_depth: self.cap.max_depth,
            max_elements: self.cap.max_elements,
            max_namespaces: self.cap.max_namespaces,
        }
    }
}

fn problem(fig: &Figment, key: &str, message: String) -> ConfigProblem {
    ConfigProblem {
        source: source_of(fig, key),
        key: key.to_string(),
        message,
    }
}

fn check_office(o: Option<&Office>, fig: &Figment, out: &mut Vec<ConfigProblem>) {
    let Some(o) = o else { return };
    if jiff::tz::TimeZone::get(&o.timezone).is_err() {
        out.push(problem(
            fig,
            "office.timezone",
            format!(
                "`{}` is not an IANA time zone (expected e.g. Asia/Shanghai)",
                o.timezone
            ),
        ));
    }
    if o.cap_sender.is_empty()
        || o.cap_sender
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
    {
        out.push(problem(
            fig,
            "office.cap_sender",
            format!(
                "`{}` is not a CAP sender id (expected a non-empty id without spaces, commas, < or &)",
                o.cap_sender
            ),
        ));
    }
    if !(o.sender_code.len() == 14 && o.sender_code.bytes().all(|b| b.is_ascii_digit())) {
        out.push(problem(
            fig,
            "office.sender_code",
            format!("`{}` is not a 14-digit national sender code", o.sender_code),
        ));
    }
}

fn check_store(s: Option<&StoreConfig>, fig: &Figment, out: &mut Vec<ConfigProblem>) {
    if let Some(s) = s
        && s.lease_secs < 3
    {
        out.push(problem(
            fig,
            "store.lease_secs",
            format!(
                "{} is less than 3: the leader renews every third of it, and a renewal needs a \
                 round trip to the database",
                s.lease_secs
            ),
        ));
    }
    if let Some(s) = s
        && s.backend == StoreBackend::Postgres
    {
        let lower = s.url.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            out.push(problem(
                fig,
                "store.url",
                format!(
                    "store.backend is postgres: expected a postgres:// URL, found {:?}",
                    crate::store::Location::Postgres(s.url.clone()).to_string()
                ),
            ));
        }
    }
    if s.is_some_and(|s| s.path.as_os_str().is_empty()) {
        out.push(problem(
            fig,
            "store.path",
            "expected a file path, found an empty string".into(),
        ));
    }
    if let Some(s) = s
        && s.audit_checkpoint_mins > 7 * 24 * 60
    {
        out.push(problem(
            fig,
            "store.audit_checkpoint_mins",
            format!(
                "{} is more than a week; a checkpoint that rare anchors little",
                s.audit_checkpoint_mins
            ),
        ));
    }
}

/// Whether every directive of a log filter names a level (`info`, `stormbell::cap=debug`): a
/// bare word that is not a level is read by the filter as a module name and silently logs
/// nothing, which is never what `--log-level verbose` meant.
fn levels_known(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .all(|d| {
            let level = d.rsplit_once('=').map_or(d, |(_, l)| l);
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        })
}

/// Whether `url` is an absolute https URL (http is allowed for a loopback host, where the
/// demo and tests serve).
fn https_or_loopback(url: &str) -> Result<(), String> {
    let Ok(u) = url.parse::<reqwest::Url>() else {
        return Err(format!(
            "`{url}` is not an absolute URL (e.g. https://fxb.example.gov.cn)"
        ));
    };
    let loopback = u.host_str().is_some_and(|h| {
        h == "localhost"
            || h.trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback())
    });
    match u.scheme() {
        "https" if u.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "`{url}` must be an absolute https URL: people's phones open it, and a link over \
             plain http can be read and changed on the way"
        )),
    }
}

fn check_log(l: Option<&LogConfig>, fig: &Figment, out: &mut Vec<ConfigProblem>) {
    let Some(l) = l else { return };
    if !levels_known(&l.level) {
        out.push(problem(
            fig,
            "log.level",
            format!(
                "`{}` names no level; expected trace, debug, info, warn, error or off, or \
                 module=level (e.g. info,stormbell::cap=debug)",
                l.level
            ),
        ));
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&l.level) {
        out.push(problem(
            fig,
            "log.level",
            format!(
                "`{}` is not a log filter ({e}); expected e.g. info or info,stormbell::cap=debug",
                l.level
            ),
        ));
    }
}

fn check_cap(c: Option<&CapConfig>, fig: &Figment, out: &mut Vec<ConfigProblem>) {
    let Some(c) = c else { return };
    if c.max_document_bytes > 256 * 1024 * 1024 {
        out.push(problem(
            fig,
            "cap.max_document_bytes",
            format!(
                "{} is more than any alert needs (expected at most 268435456, 256 MiB)",
                c.max_document_bytes
            ),
        ));
    }
    if c.max_document_bytes < 1024 {
        out.push(problem(
            fig,
            "cap.max_document_bytes",
            format!(
                "{} is too small to hold any real alert (expected at least 1024)",
                c.max_document_bytes
            ),
        ));
    }
    if !(4..=1000).contains(&c.max_depth) {
        out.push(problem(
            fig,
            "cap.max_depth",
            format!("{} is outside 4…1000", c.max_depth),
        ));
    }
    if c.max_elements < 100 {
        out.push(problem(
            fig,
            "cap.max_elements",
            format!("{} is too small (expected at least 100)", c.max_elements),
        ));
    }
    if !(8..=65_535).contains(&c.max_namespaces) {
        out.push(problem(
            fig,
            "cap.max_namespaces",
            format!("{} is outside 8…65535", c.max_namespaces),
        ));
    }
}

fn check_http(h: Option<&crate::http::HttpSettings>, fig: &Figment, out: &mut Vec<ConfigProblem>) {
    let Some(h) = h else { return };
    for (key, v) in [
        ("http.connect_timeout_secs", h.connect_timeout_secs),
        ("http.timeout_secs", h.timeout_secs),
    ] {
        if v == 0 {
            out.push(problem(
                fig,
                key,
                "expected at least 1 second, found 0".into(),
            ));
        }
    }
}

fn check_registry(
    r: Option<&crate::registry::RegistrySettings>,
    fig: &Figment,
    out: &mut Vec<ConfigProblem>,
) {
    let Some(r) = r else { return };
    if r.max_sites_per_person == 0 {
        out.push(problem(
            fig,
            "registry.max_sites_per_person",
            "expected at least 1, found 0".into(),
        ));
    }
    if r.confirm_within_days <= 0 {
        out.push(problem(
            fig,
            "registry.confirm_within_days",
            format!(
                "expected a number of days above 0, found {}",
                r.confirm_within_days
            ),
        ));
    }
    if r.reload_secs > 3600 {
        out.push(problem(
            fig,
            "registry.reload_secs",
            format!(
                "expected 0 (never) to 3600 seconds, found {}: a new roster must reach a running daemon within the hour",
                r.reload_secs
            ),
        ));
    }
}

fn check_feeds(
    f: Option<&crate::feeds::FeedsSettings>,
    fig: &Figment,
    out: &mut Vec<ConfigProblem>,
) {
    let Some(f) = f else { return };
    for (key, v) in [
        ("feeds.interval_secs", f.interval_secs),
        ("feeds.backoff_min_secs", f.backoff_min_secs),
        ("feeds.backoff_max_secs", f.backoff_max_secs),
    ] {
        if v == 0 {
            out.push(problem(
                fig,
                key,
                "expected at least 1 second, found 0".into(),
            ));
        }
    }
    if f.backoff_min_secs > f.backoff_max_secs {
        out.push(problem(
            fig,
            "feeds.backoff_min_secs",
            format!(
                "{} is more than feeds.backoff_max_secs ({})",
                f.backoff_min_secs, f.backoff_max_secs
            ),
        ));
    }
    if f.gap_intervals == 0 {
        out.push(problem(
            fig,
            "feeds.gap_intervals",
            "expected at least 1, found 0".into(),
        ));
    }
    if !(1..=64).contains(&f.follow_concurrency) {
        out.push(problem(
            fig,
            "feeds.follow_concurrency",
            format!("{} is outside 1…64", f.follow_concurrency),
        ));
    }
    let mut ids = std::collections::HashSet::new();
    for (i, s) in f.source.iter().enumerate() {
        let source = source_of(fig, "feeds.source");
        let mut bad = |k: &str, message: String| {
            out.push(ConfigProblem {
                source: source.clone(),
                key: format!("feeds.source[{i}].{k}"),
                message,
            })
        };
        if s.id.is_empty()
            || !s
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bad(
                "id",
                format!(
                    "`{}` is not a feed id (expected letters, digits, -, _ or .)",
                    s.id
                ),
            );
        } else if !ids.insert(s.id.as_str()) {
            bad("id", format!("`{}` is used by two feeds", s.id));
        }
        if !crate::feeds::KINDS.contains(&s.kind.as_str()) {
            bad(
                "kind",
                format!(
                    "`{}` is not a feed kind (expected one of {})",
                    s.kind,
                    crate::feeds::KINDS.join(", ")
                ),
            );
        }
        if s.kind == "sl651" {
            // A listening feed: the address the RTUs connect to, and its station table.
            let addr = s.url.strip_prefix("tcp://").unwrap_or("");
            if addr.parse::<std::net::SocketAddr>().is_err() {
                bad(
                    "url",
                    format!("`{}` is not tcp://ADDRESS:PORT to listen on", s.url),
                );
            }
            match s.stations.as_deref().map(std::fs::read_to_string) {
                None => bad(
                    "stations",
                    "an sl651 feed needs its station table (address,name,lon,lat)".into(),
                ),
                Some(Err(e)) => bad("stations", format!("cannot read it: {e}")),
                Some(Ok(text)) => {
                    if let Err(e) = crate::feeds::sl651::stations_csv(&text) {
                        bad("stations", e);
                    }
                }
            }
        } else if s.kind == "sl323" {
            if !(s.url.starts_with("postgres://") || s.url.starts_with("postgresql://"))
                || s.url.parse::<tokio_postgres::Config>().is_err()
            {
                bad(
                    "url",
                    format!("`{}` is not a postgres:// connection string", s.url),
                );
            }
            if s.query.as_deref().is_some_and(|q| !q.contains("$1")) {
                bad(
                    "query",
                    "the query must use $1, the time from which rows are wanted".into(),
                );
            }
        } else {
            let scheme_ok = ["http://", "https://", "replay://"]
                .iter()
                .any(|p| s.url.starts_with(p));
            if !scheme_ok || reqwest::Url::parse(&s.url).is_err() {
                bad(
                    "url",
                    format!("`{}` is not an http(s) or replay:// URL", s.url),
                );
            }
        }
        if s.interval_secs == Some(0) {
            bad(
                "interval_secs",
                "expected at least 1 second, found 0".into(),
            );
        }
        if s.gap_intervals == Some(0) {
            bad("gap_intervals", "expected at least 1, found 0".into());
        }
    }
}

fn source_of(fig: &Figment, key: &str) -> String {
    match fig.find_metadata(key) {
        Some(md) => describe(md, key),
        None => DEFAULT_NAME.into(),
    }
}

fn describe(md: &Metadata, key: &str) -> String {
    if let Some(path) = md.source.as_ref().and_then(|s| s.file_path()) {
        return path.display().to_string();
    }
    if md.name.contains("environment") {
        return format!("environment variable {}", env_name(key));
    }
    md.name.to_string()
}

/// The environment variable that sets a dotted key (`cap.max_depth` → `STORMBELL_CAP__MAX_DEPTH`).
pub fn env_name(key: &str) -> String {
    format!("STORMBELL_{}", key.replace('.', "__").to_ascii_uppercase())
}

fn from_figment(e: &figment::Error) -> ConfigProblem {
    let key = e.path.join(".");
    let source = match &e.metadata {
        Some(md) => describe(md, &key),
        None => DEFAULT_NAME.into(),
    };
    ConfigProblem {
        source,
        key,
        message: e.kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_postgresql_databases_never_share_checkpoints_and_a_sqlite_file_keeps_its_own() {
        let mut store = Config::load(None, &Default::default()).unwrap().store;
        let sqlite = store.checkpoints(true);
        assert_eq!(sqlite.file, store.path.with_extension("audit-checkpoints"));
        store.backend = StoreBackend::Postgres;
        let mut files = std::collections::BTreeSet::new();
        for url in [
            "postgres://stormbell:s3cret@db1,db2/county?target_session_attrs=read-write",
            "postgres://stormbell:s3cret@db1,db2/drill?target_session_attrs=read-write",
            "postgres://stormbell@127.0.0.1:5433/county",
        ] {
            store.url = url.into();
            let s = store.checkpoints(true);
            assert_eq!(s.file.parent(), store.path.parent(), "in the data folder");
            let name = s.file.display().to_string();
            assert!(!name.contains("s3cret"), "{name}");
            assert!(s.key.display().to_string().ends_with(".audit-key"));
            files.insert(name);
        }
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(
            files
                .iter()
                .any(|f| f.ends_with("county@db1,db2_5432,5432.audit-checkpoints")),
            "{files:?}"
        );
    }

    /// Dotted keys of a TOML table (arrays and values are leaves).
    fn keys(t: &toml::Table, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => keys(inner, &key, out),
                _ => {
                    out.insert(key);
                }
            }
        }
    }

    /// `config/default.toml` is the configuration reference: it must name every setting the
    /// program has (set, or shown in a commented example when it is an optional table) and
    /// nothing the program does not read, each explained by a comment above it or its group.
    #[test]
    fn default_toml_is_the_complete_reference_of_the_settings() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        let served: toml::Table = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        let doc: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
        let (mut have, mut documented) = Default::default();
        keys(&served, "", &mut have);
        keys(&doc, "", &mut documented);
        let missing: Vec<&String> = have.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "settings not in config/default.toml: {missing:?}"
        );
        let stale: Vec<&String> = documented.difference(&have).collect();
        assert!(
            stale.is_empty(),
            "keys in config/default.toml nobody reads: {stale:?}"
        );
        // Every key line has a comment above it, or sits in a group under one.
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with('[') || !t.contains(" = ") {
                continue;
            }
            let explained = lines[..i]
                .iter()
                .rev()
                .take_while(|p| !p.trim().is_empty() && !p.trim().starts_with('['))
                .any(|p| p.trim().starts_with('#'));
            assert!(
                explained,
                "config/default.toml:{}: `{t}` has no comment",
                i + 1
            );
        }
        // The optional tables are shown, commented, with every field they take.
        for (table, fields) in [
            (
                "[dispatch.kannel]",
                &[
                    "sendsms_url",
                    "username",
                    "password",
                    "source",
                    "dlr_listen",
                ][..],
            ),
            (
                "[[dispatch.voice.trunks]]",
                &[
                    "name",
                    "proxy",
                    "domain",
                    "transport",
                    "user",
                    "password",
                    "caller_id",
                    "local_ip",
                    "max_calls",
                    "calls_per_sec",
                    "ring_secs",
                    "answer_secs",
                    "register",
                    "register_secs",
                ][..],
            ),
            (
                "[dispatch.broadcast.platform]",
                &["url", "src", "dest", "poll_secs", "heartbeat_secs"][..],
            ),
            (
                "[dispatch.broadcast.icecast]",
                &["url", "password", "mount", "kbps"][..],
            ),
        ] {
            let at = DEFAULT_TOML
                .find(&format!("# {table}"))
                .unwrap_or_else(|| panic!("{table}"));
            for f in fields {
                assert!(
                    DEFAULT_TOML[at..].contains(&format!("# {f} = ")),
                    "{table} {f}"
                );
            }
        }
    }

    #[test]
    fn the_built_in_defaults_are_valid() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.office.timezone, "Asia/Shanghai");
        assert_eq!(c.log.format, LogFormat::Human);
    }

    #[test]
    fn a_bad_value_names_file_key_and_expectation() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        std::fs::write(
            &f,
            "[cap]\nmax_document_bytes = \"lots\"\n[office]\ntimezone = \"Mars/Olympus\"\n[stor]\npath = \"x\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&f.display().to_string()), "{text}");
        assert!(text.contains("key `cap.max_document_bytes`"), "{text}");
        assert!(text.contains("expected"), "{text}");
        // The misspelt section is reported too, in the same run.
        assert!(text.contains("key `stor`: unknown section"), "{text}");
    }

    #[test]
    fn semantic_problems_are_all_reported_with_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[office]\ntimezone = \"Mars/Olympus\"\nsender_code = \"123\"\n[log]\nlevel = \"stormbell=loud\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["office.timezone", "office.sender_code", "log.level"]);
        assert!(
            err.problems
                .iter()
                .all(|p| p.source == f.display().to_string())
        );
    }

    #[test]
    fn a_postgres_store_needs_a_url_and_a_lease_a_renewal_fits_in() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[store]\nbackend = \"postgres\"\nurl = \"db1\"\nlease_secs = 1\n",
        )
        .unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["store.lease_secs", "store.url"]);
        // `--db postgres://…` chooses the engine and the database.
        let o = Overrides {
            store_path: Some("postgres://u:secret@db1,db2/sb".into()),
            ..Overrides::default()
        };
        let c = Config::load(None, &o).unwrap();
        assert_eq!(c.store.backend, StoreBackend::Postgres);
        assert_eq!(
            c.store.location().to_string(),
            "postgres://u:***@db1,db2/sb"
        );
    }

    #[test]
    fn flags_override_files() {
        let o = Overrides {
            store_path: Some("/tmp/x.db".into()),
            log_format: Some(LogFormat::Json),
            log_level: None,
        };
        let c = Config::load(None, &o).unwrap();
        assert_eq!(c.store.path, PathBuf::from("/tmp/x.db"));
        assert_eq!(c.log.format, LogFormat::Json);
    }
}
