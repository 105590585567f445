//! Replaying a recorded scenario: the same feed kinds and the same poller, reading timestamped
//! snapshots from a folder on a simulated clock, at any speed. Drills (`stormbell replay`) and
//! tests are built on it. The folder format is documented in `fixtures/scenarios/README.md`:
//!
//! ```text
//! scenario.toml                      name, start, end, [[feed]] id / kind / interval_secs
//! feeds/<feed id>/<time>.<ext>       what the feed served from <time> on (basic ISO 8601
//!                                    with offset, e.g. 20190809T180000+0800.json)
//! feeds/<feed id>/<time>.down        from <time> on the feed answers 503 (an outage)
//! docs/…                             documents the feeds link to (replay://scenario/docs/…)
//! ```
//!
//! A feed's address is `replay://scenario/feeds/<id>/`. At simulated time *t* it serves the
//! latest snapshot not after *t* (404 before the first), with the file name as its ETag, so
//! conditional requests behave as they do against a real server.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use super::fetch::{Conditional, FetchError, FetchFuture, Fetcher, Validators};
use super::poller::FeedSpec;
use crate::runtime::clock::Clock;

/// The scheme and host of replay addresses.
pub const PREFIX: &str = "replay://scenario/";

/// A scenario as described by its `scenario.toml`.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The folder.
    pub root: PathBuf,
    /// Title, Chinese first.
    pub name: String,
    /// What it rehearses, and where its data came from.
    pub description: String,
    /// Simulated start.
    pub start: Timestamp,
    /// Simulated end.
    pub end: Timestamp,
    /// Its feeds.
    pub feeds: Vec<ScenarioFeed>,
    /// The `[drill]` table, read by the full-pipeline replay (`stormbell::drill`): the
    /// simulated responders and the registry. Kept raw here: the feeds do not need it, and
    /// the drill checks its keys itself.
    pub drill: Option<toml::Table>,
}

/// One feed of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFeed {
    /// Id; its snapshots are in `feeds/<id>/`.
    pub id: String,
    /// Kind (`cap`, `typhoon`, `rainfall`, `fire`).
    pub kind: String,
    /// Polling interval in simulated seconds.
    pub interval_secs: u64,
    /// Gap alarm after this many intervals without success.
    #[serde(default = "three")]
    pub gap_intervals: u32,
}

fn three() -> u32 {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioToml {
    name: String,
    #[serde(default)]
    description: String,
    start: String,
    end: String,
    #[serde(default)]
    feed: Vec<ScenarioFeed>,
    #[serde(default)]
    drill: Option<toml::Table>,
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScenarioError {
    /// The file or folder.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Parse a snapshot time from a file stem: `20190809T180000+0800`, `20190809T100000Z`, or
/// the extended form `2019-08-09T18:00:00+08:00`.
pub fn snapshot_time(stem: &str) -> Option<Timestamp> {
    if let Ok(t) = stem.parse::<Timestamp>() {
        return Some(t);
    }
    let b = stem.as_bytes();
    if b.len() < 16 || b[8] != b'T' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<&str> {
        let s = stem.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then_some(s)
    };
    let offset = match stem.get(15..)? {
        "Z" => "Z".to_string(),
        o if o.len() == 5 && o.is_ascii() && (o.starts_with('+') || o.starts_with('-')) => {
            format!("{}:{}", o.get(..3)?, digits(18..20)?)
        }
        _ => return None,
    };
    let text = format!(
        "{}-{}-{}T{}:{}:{}{offset}",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?
    );
    text.parse().ok()
}

impl Scenario {
    /// Read `scenario.toml` in `root` and check that every feed has a snapshot folder whose
    /// files are all named by time.
    pub fn load(root: &Path) -> Result<Scenario, ScenarioError> {
        let file = root.join("scenario.toml");
        let text =
            std::fs::read_to_string(&file).map_err(|e| err(&file, format!("cannot read: {e}")))?;
        let t: ScenarioToml = toml::from_str(&text).map_err(|e| err(&file, e.to_string()))?;
        let time = |key: &str, v: &str| {
            v.parse::<Timestamp>().map_err(|e| {
                err(
                    &file,
                    format!("`{key}`: `{v}` is not a time with offset ({e})"),
                )
            })
        };
        let start = time("start", &t.start)?;
        let end = time("end", &t.end)?;
        if end <= start {
            return Err(err(&file, "`end` is not after `start`"));
        }
        let mut ids = std::collections::HashSet::new();
        for f in &t.feed {
            if !ids.insert(f.id.as_str()) {
                return Err(err(&file, format!("feed `{}` is listed twice", f.id)));
            }
            if !super::KINDS.contains(&f.kind.as_str()) {
                return Err(err(
                    &file,
                    format!(
                        "feed `{}`: `{}` is not a feed kind ({})",
                        f.id,
                        f.kind,
                        super::KINDS.join(", ")
                    ),
                ));
            }
            if f.interval_secs == 0 || f.gap_intervals == 0 {
                return Err(err(
                    &file,
                    format!("feed `{}`: interval and gap must be at least 1", f.id),
                ));
            }
            snapshots(&root.join("feeds").join(&f.id))?;
        }
        Ok(Scenario {
            root: root.to_path_buf(),
            name: t.name,
            description: t.description,
            start,
            end,
            feeds: t.feed,
            drill: t.drill,
        })
    }

    /// The feeds as the poller takes them.
    pub fn specs(&self, limits: crate::cap::Limits) -> Vec<FeedSpec> {
        self.feeds
            .iter()
            .filter_map(|f| {
                Some(FeedSpec {
                    id: f.id.clone(),
                    kind: super::kind(&f.kind, limits)?,
                    url: format!("{PREFIX}feeds/{}/", f.id),
                    interval: Duration::from_secs(f.interval_secs),
                    gap_intervals: f.gap_intervals,
                    max_bytes: limits.max_bytes,
                })
            })
            .collect()
    }
}

/// A feed's snapshots, in time order.
fn snapshots(dir: &Path) -> Result<Vec<(Timestamp, PathBuf)>, ScenarioError> {
    let rd = std::fs::read_dir(dir).map_err(|e| err(dir, format!("no snapshot folder: {e}")))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| err(dir, e.to_string()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let stem = name.split_once('.').map(|(s, _)| s).unwrap_or(&name);
        // Extended-form stems contain no dots, so the first dot ends the time.
        let t = snapshot_time(stem).ok_or_else(|| {
            err(
                &path,
                "file name does not start with a time like 20190809T180000+0800",
            )
        })?;
        out.push((t, path));
    }
    out.sort();
    for w in out.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(err(
                &w[1].1,
                format!("two snapshots for the same time as {}", w[0].1.display()),
            ));
        }
    }
    Ok(out)
}

/// Serves a scenario's snapshots as of the simulated clock's time.
pub struct ReplayFetcher {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    feeds: HashMap<String, Vec<(Timestamp, PathBuf)>>,
}

impl ReplayFetcher {
    /// A fetcher for `scenario` on `clock`.
    pub fn new(scenario: &Scenario, clock: Arc<dyn Clock>) -> Result<ReplayFetcher, ScenarioError> {
        let mut feeds = HashMap::new();
        for f in &scenario.feeds {
            feeds.insert(
                f.id.clone(),
                snapshots(&scenario.root.join("feeds").join(&f.id))?,
            );
        }
        Ok(ReplayFetcher {
            root: scenario.root.clone(),
            clock,
            feeds,
        })
    }

    fn serve(
        &self,
        url: &str,
        validators: &Validators,
        max_bytes: usize,
    ) -> Result<Conditional, FetchError> {
        let status = |status: u16| FetchError::Status {
            url: url.to_string(),
            status,
        };
        let rel = url
            .strip_prefix(PREFIX)
            .ok_or_else(|| FetchError::Scheme(url.to_string()))?;
        let rel = rel.split(['?', '#']).next().unwrap_or_default();
        let path = if let Some(feed) = rel.strip_prefix("feeds/").map(|r| r.trim_end_matches('/'))
            && let Some(snaps) = self.feeds.get(feed)
        {
            let now = self.clock.now();
            let Some((_, p)) = snaps.iter().rev().find(|(t, _)| *t <= now) else {
                return Err(status(404));
            };
            if p.extension().is_some_and(|e| e == "down") {
                return Err(status(503));
            }
            p.clone()
        } else {
            // A linked document: any file inside the scenario, never outside it.
            let p = Path::new(rel);
            if p.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(status(403));
            }
            self.root.join(p)
        };
        let etag = format!(
            "\"{}\"",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        if validators.etag.as_deref() == Some(etag.as_str()) {
            return Ok(Conditional::NotModified);
        }
        let len = std::fs::metadata(&path).map_err(|_| status(404))?.len();
        if len > max_bytes as u64 {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit: max_bytes,
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| FetchError::Transport {
            url: url.to_string(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Ok(Conditional::Body {
            bytes,
            validators: Validators {
                etag: Some(etag),
                last_modified: None,
            },
        })
    }
}

impl Fetcher for ReplayFetcher {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
        validators: &'a Validators,
        max_bytes: usize,
    ) -> FetchFuture<'a> {
        Box::pin(std::future::ready(self.serve(url, validators, max_bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_times_in_basic_and_extended_form() {
        let want: Timestamp = "2019-08-09T10:00:00Z".parse().unwrap();
        assert_eq!(snapshot_time("20190809T180000+0800"), Some(want));
        assert_eq!(snapshot_time("20190809T100000Z"), Some(want));
        assert_eq!(snapshot_time("2019-08-09T18:00:00+08:00"), Some(want));
        assert_eq!(
            snapshot_time("20190809T180000"),
            None,
            "a time without offset is refused"
        );
        assert_eq!(snapshot_time("2019080xT180000+0800"), None);
        assert_eq!(snapshot_time("latest"), None);
        assert_eq!(snapshot_time("20190809T180000+1é0"), None, "not a panic");
    }
}
