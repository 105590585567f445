//! Feeds: polling the services that warnings start from — CAP alerts, typhoon tracks, station
//! rainfall, fire observations — and handing what they publish to the correlate stage.
//!
//! A duty officer must be able to trust two things: everything published is picked up within
//! one polling interval, and a feed that goes quiet or broken is reported, not silently absent.
//!
//! Shape (as Vector's sources): one trait, [`FeedKind`], turns one fetched document into items;
//! one module per kind implements it ([`cap_feed`], [`typhoon`], [`rainfall`], [`fire`]). The
//! [`poller`] does everything the kinds share: scheduling on a [`Clock`](crate::runtime::Clock), conditional GET with
//! timeouts and a size cap through a [`fetch::Fetcher`] (HTTP, or a recorded scenario for
//! drills: [`replay`]), backoff with jitter, following links, deduplication, and the gap
//! alarm. What was seen and handed on is recorded in the store ([`state`]) in one transaction
//! with the items themselves (a durable inbox), so a restart neither misses nor repeats.

pub mod bulletin;
pub mod cap_feed;
pub mod fetch;
pub mod fire;
pub mod poller;
pub mod rainfall;
pub mod read;
pub mod replay;
mod settings;
pub mod sl323;
pub mod sl651;
pub mod state;
pub mod typhoon;
pub mod typhoon_web;
pub mod warning_json;
pub mod wind_profile;

use serde::{Deserialize, Serialize};

use crate::cap;

pub use settings::{FeedsSettings, Source};

/// Why a document could not be used at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// The document is not in the expected form.
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Format {
        /// Where, if known.
        line: Option<u32>,
        /// What is wrong.
        message: String,
    },
}

/// An alert from an upstream service, as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamAlert {
    /// Where it was fetched from.
    pub url: String,
    /// The alert in the CAP 1.2 model.
    pub alert: cap::Alert,
    /// The form it came in (`CAP 1.2`, `CAP (national dialect …)`).
    pub dialect: String,
    /// SHA-256 of the document as received (the bytes are kept in the store).
    pub digest: String,
    /// What reading noticed (schema slips, upgrades), for the officer.
    pub problems: Vec<String>,
    /// Where it stands in its lineage (filled in when it is accepted).
    pub lineage: Option<Lineage>,
    /// Whether every `<info>` had already expired when it arrived.
    pub expired: bool,
}

/// Where an alert stands among the alerts it updates or cancels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The first alert of the lineage (`sender,identifier,sent`), as far as known.
    pub root: String,
    /// References this alert makes that have not arrived (an Update before its Alert, a
    /// Cancel of an alert never seen). Empty when every reference is known.
    pub missing: Vec<String>,
}

/// What a feed hands on to the correlate stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Observation {
    /// A CAP alert (any msgType).
    Alert(Box<UpstreamAlert>),
    /// A typhoon track with its forecasts.
    Track(typhoon::Track),
    /// Station rainfall.
    Rain(rainfall::RainBatch),
    /// Fire weather or hotspots.
    Fire(fire::FireBatch),
    /// A storm made landfall (CMA's `WHCI40 BABJ`).
    Landfall(bulletin::Landfall),
    /// A feed went silent, or came back: for the duty officer, on the same path as warnings.
    FeedAlarm(FeedAlarm),
}

impl Observation {
    /// One line for logs.
    pub fn summary(&self) -> String {
        match self {
            Observation::Alert(a) => {
                let info = a.alert.infos.first();
                format!(
                    "CAP {} {} from {} ({}{}){}",
                    a.alert.msg_type.as_str(),
                    a.alert.identifier,
                    a.alert.sender,
                    info.map(|i| i.event.as_str()).unwrap_or("no info"),
                    info.map(|i| format!(", {}", i.severity.as_str()))
                        .unwrap_or_default(),
                    match &a.lineage {
                        Some(l) if !l.missing.is_empty() => {
                            format!("; {} reference(s) not received", l.missing.len())
                        }
                        _ => String::new(),
                    }
                )
            }
            Observation::Track(t) => format!(
                "typhoon {} {} {}: {} point(s), {} forecast(s)",
                t.storm,
                t.name,
                t.name_en,
                t.points.len(),
                t.forecasts.len()
            ),
            Observation::Rain(r) => format!(
                "rainfall: {} reading(s), {} flagged",
                r.readings.len(),
                r.flagged()
            ),
            Observation::Landfall(l) => format!(
                "landfall: {} {} at {} ({})",
                l.storm, l.name, l.place, l.time
            ),
            Observation::Fire(fire::FireBatch::Weather(w)) => {
                format!("fire weather: {} observation(s)", w.len())
            }
            Observation::Fire(fire::FireBatch::Hotspots(h)) => {
                format!("fire hotspots: {} detection(s)", h.len())
            }
            Observation::FeedAlarm(a) => match a.state {
                AlarmState::Gap => format!(
                    "FEED GAP: {} silent for {} s (last success {})",
                    a.feed,
                    a.silent_secs,
                    a.last_success.as_deref().unwrap_or("never")
                ),
                AlarmState::Recovered => {
                    format!("feed {} recovered after {} s", a.feed, a.silent_secs)
                }
            },
        }
    }
}

/// The gap alarm and its recovery notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedAlarm {
    /// The feed.
    pub feed: String,
    /// Its kind.
    pub kind: String,
    /// Its address.
    pub url: String,
    /// Raised or cleared.
    pub state: AlarmState,
    /// When (RFC 3339 with offset).
    pub at: String,
    /// The last successful poll before the silence, if there ever was one.
    pub last_success: Option<String>,
    /// How long the feed had been silent, in seconds (monotonic time).
    pub silent_secs: u64,
    /// The polling interval, in seconds.
    pub interval_secs: u64,
    /// Failed polls in a row.
    pub failures: u32,
    /// The last error.
    pub last_error: Option<String>,
}

/// Whether a [`FeedAlarm`] raises or clears the alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    /// No successful poll for the configured number of intervals.
    Gap,
    /// A successful poll after a gap.
    Recovered,
}

/// A time as Chinese meteorological and hydrological services write it: RFC 3339 (an explicit
/// offset or `Z` is honoured), or `YYYY-MM-DD HH:MM[:SS]` — also with `T` or `/` — which is
/// Beijing time.
pub fn beijing_time(s: &str) -> Option<jiff::Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let mut norm = s.replace('/', "-").replace(' ', "T");
    if norm.len() == 16 {
        norm.push_str(":00");
    }
    let civil: jiff::civil::DateTime = norm.parse().ok()?;
    jiff::tz::Offset::from_hours(8)
        .ok()?
        .to_timestamp(civil)
        .ok()
}

/// A CSV record, or the error naming its line.
pub(crate) fn csv_record(
    rec: Result<csv::StringRecord, csv::Error>,
) -> Result<csv::StringRecord, FeedError> {
    rec.map_err(|e| FeedError::Format {
        line: e.position().map(|p| p.line() as u32),
        message: format!("unreadable row: {e}"),
    })
}

/// One thing found in a document, with the key that identifies it across polls.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Identity for deduplication, unique within the feed (for CAP: `sender|identifier|sent`).
    pub key: String,
    /// What to hand on.
    pub observation: Observation,
}

/// What one document yielded.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// New-or-not items (the poller drops those already seen).
    pub items: Vec<Item>,
    /// Links to fetch too (CAP documents an index points to).
    pub follow: Vec<Link>,
    /// Problems that did not stop the document from being used.
    pub problems: Vec<String>,
    /// Products recognised and deliberately not used (not problems: logged as information).
    pub skipped: Vec<Skipped>,
}

/// A product a kind recognised and deliberately does not use (CMA's telegraph-code
/// bulletins beside the subjective forecast that carries the same track).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// What it is (a bulletin's heading).
    pub what: String,
    /// Why it is not used.
    pub why: String,
}

/// A link found in a feed's document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Absolute address.
    pub url: String,
    /// What the index says about the linked document's version (Atom `updated`, RSS
    /// `pubDate`): a link is fetched again when this changes.
    pub version: Option<String>,
}

impl Link {
    /// The key under which a fetched link is remembered.
    pub fn key(&self) -> String {
        format!(
            "link|{}|{}",
            self.url,
            self.version.as_deref().unwrap_or("")
        )
    }
}

/// A fetched document, as a kind sees it.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    /// The feed it belongs to.
    pub feed: &'a str,
    /// Where it came from.
    pub url: &'a str,
    /// The bytes as received.
    pub body: &'a [u8],
    /// SHA-256 of the body.
    pub digest: &'a str,
    /// When it arrived.
    pub received: jiff::Timestamp,
}

/// One kind of feed: how its documents become items. Implementations are stateless; the
/// poller keeps all state.
pub trait FeedKind: Send + Sync + 'static {
    /// The kind's name in configuration (`cap`, `typhoon`, `rainfall`, `fire`).
    fn name(&self) -> &'static str;
    /// Read one document.
    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError>;
    /// The SL 651 reader, for a kind whose feed listens rather than polls.
    fn sl651(&self) -> Option<&sl651::Sl651Feed> {
        None
    }
    /// The SELECT of a kind whose feed is a database table rather than a URL ([`sl323`]).
    fn sql_query(&self) -> Option<&str> {
        None
    }
}

/// Read one fetched document on tokio's blocking pool, never on an async worker.
///
/// Parsing is the one CPU-heavy step between the network and the store, and its input comes
/// from outside: a hostile or merely huge document must delay only its own feed, never the
/// check-in pages, the office's sign-in or the other feeds sharing the runtime's workers.
/// The body is moved there and handed back with the outcome; a panic in a parser becomes a
/// format error for that document instead of ending the feed's task.
pub(crate) async fn parse_off_workers(
    kind: std::sync::Arc<dyn FeedKind>,
    feed: String,
    url: String,
    body: Vec<u8>,
    digest: String,
    received: jiff::Timestamp,
) -> (Vec<u8>, Result<Parsed, FeedError>) {
    let parsed = tokio::task::spawn_blocking(move || {
        let doc = Document {
            feed: &feed,
            url: &url,
            body: &body,
            digest: &digest,
            received,
        };
        let parsed = kind.parse(&doc);
        (body, parsed)
    })
    .await;
    match parsed {
        Ok(done) => done,
        Err(e) => (
            Vec::new(),
            Err(FeedError::Format {
                line: None,
                message: format!("reading the document failed inside the parser: {e}"),
            }),
        ),
    }
}

/// The kind named in configuration.
pub fn kind(name: &str, limits: cap::Limits) -> Option<std::sync::Arc<dyn FeedKind>> {
    Some(match name {
        "cap" => std::sync::Arc::new(cap_feed::CapFeed { limits }),
        "bulletin" => std::sync::Arc::new(bulletin::BulletinFeed),
        "typhoon_web" => std::sync::Arc::new(typhoon_web::TyphoonWebFeed),
        "warning_json" => std::sync::Arc::new(warning_json::WarningJsonFeed),
        "sl651" => std::sync::Arc::new(sl651::Sl651Feed::default()),
        "sl323" => std::sync::Arc::new(sl323::Sl323Feed {
            query: sl323::DEFAULT_QUERY.into(),
        }),
        "typhoon" => std::sync::Arc::new(typhoon::TyphoonFeed),
        "rainfall" => std::sync::Arc::new(rainfall::RainfallFeed),
        "fire" => std::sync::Arc::new(fire::FireFeed),
        _ => return None,
    })
}

/// The names [`kind`] knows.
pub const KINDS: &[&str] = &[
    "cap",
    "warning_json",
    "typhoon",
    "typhoon_web",
    "bulletin",
    "rainfall",
    "sl651",
    "sl323",
    "fire",
];

impl FeedKind for typhoon::TyphoonFeed {
    fn name(&self) -> &'static str {
        "typhoon"
    }
    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError> {
        let tracks = typhoon::parse(doc.body)?;
        Ok(Parsed {
            items: tracks
                .into_iter()
                .map(|t| Item {
                    key: format!("{}|{}", t.storm, doc.digest),
                    observation: Observation::Track(t),
                })
                .collect(),
            ..Parsed::default()
        })
    }
}

impl FeedKind for rainfall::RainfallFeed {
    fn name(&self) -> &'static str {
        "rainfall"
    }
    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError> {
        let batch = rainfall::parse(doc.body)?;
        let problems = batch
            .readings
            .iter()
            .filter_map(|r| {
                r.flag.map(|f| {
                    format!(
                        "station {} at {}: {} not trusted ({f:?})",
                        r.station,
                        r.end,
                        r.mm.map(|m| format!("{m} mm"))
                            .unwrap_or_else(|| "no value".into())
                    )
                })
            })
            .collect();
        Ok(Parsed {
            items: vec![Item {
                key: doc.digest.to_string(),
                observation: Observation::Rain(batch),
            }],
            problems,
            ..Parsed::default()
        })
    }
}

impl FeedKind for fire::FireFeed {
    fn name(&self) -> &'static str {
        "fire"
    }
    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError> {
        let (batch, problems) = fire::parse(doc.body)?;
        Ok(Parsed {
            items: vec![Item {
                key: doc.digest.to_string(),
                observation: Observation::Fire(batch),
            }],
            problems,
            ..Parsed::default()
        })
    }
}
