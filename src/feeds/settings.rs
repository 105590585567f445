//! `[feeds]`: how the weather, water and natural-resources services are polled, and which.
//! The feeds stage owns this; the configuration composes it with the others.

use serde::{Deserialize, Serialize};

/// `[feeds]`: how the weather services are polled, and which.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsSettings {
    /// Seconds between polls of a feed (a source may set its own).
    pub interval_secs: u64,
    /// A feed with no successful poll for this many intervals raises the gap alarm.
    pub gap_intervals: u32,
    /// First retry after a failed poll, in seconds (doubling, with jitter).
    pub backoff_min_secs: u64,
    /// Longest wait between retries, in seconds.
    pub backoff_max_secs: u64,
    /// How many linked documents of one feed are fetched at once.
    pub follow_concurrency: usize,
    /// First polls after start are spread over this many seconds (at most one interval), so
    /// that a restart does not hit every publisher at the same instant.
    pub start_spread_secs: u64,
    /// The feeds.
    #[serde(default)]
    pub source: Vec<Source>,
}

/// One `[[feeds.source]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A short unique id (letters, digits, `-`, `_`, `.`), used in the store and in logs.
    pub id: String,
    /// `cap`, `bulletin`, `typhoon_web`, `typhoon`, `rainfall`, `sl651` or `fire`.
    pub kind: String,
    /// The address polled (http, https, or `replay://` inside a scenario); for `sl651`, the
    /// address listened on, `tcp://0.0.0.0:5011`.
    pub url: String,
    /// Overrides `[feeds] interval_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
    /// Overrides `[feeds] gap_intervals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_intervals: Option<u32>,
    /// For an `sl651` feed: the station table (`address,name,lon,lat` CSV) that says which
    /// RTUs are ours and where they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stations: Option<String>,
    /// For an `sl323` feed: the SELECT giving the rain rows (`$1` for the time from which
    /// rows are wanted); default: `ST_PPTN_R` joined to `ST_STBPRP_B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Set false to keep a feed in the file without polling it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}
