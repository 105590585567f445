//! A feed gone silent is a warning too — for the duty officers of the county, not the
//! public. The gap alarm from the feeds stage becomes an internal lineage over each county
//! unit (no CAP message is published); the recovery notice lifts it at once.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::assess::{Assessment, Ctx, Place, PlaceKind, Rule};
use super::tier::{Hazard, Tier};
use crate::feeds::{AlarmState, FeedAlarm, Observation};
use crate::registry::Registry;

/// The feed-gap rule: the latest alarm per feed.
#[derive(Debug, Default)]
pub struct FeedGapRule {
    feeds: BTreeMap<String, (FeedAlarm, i64)>,
    office_unit: String,
}

impl FeedGapRule {
    /// A rule warning the county units of the registry, or `office_unit` (the office's own
    /// 6-digit area code) when the registry has none yet.
    pub fn new(office_unit: &str) -> Self {
        FeedGapRule {
            feeds: BTreeMap::new(),
            office_unit: office_unit.to_string(),
        }
    }
}

impl Rule for FeedGapRule {
    fn hazard(&self) -> Hazard {
        Hazard::FeedGap
    }

    fn observe(&mut self, obs: &Observation, inbox: i64, _reg: &Registry) -> bool {
        match obs {
            Observation::FeedAlarm(a) => {
                self.feeds.insert(a.feed.clone(), (a.clone(), inbox));
                true
            }
            _ => false,
        }
    }

    fn assess(&mut self, _now: Timestamp, ctx: &Ctx<'_>) -> Vec<Assessment> {
        let mut counties: Vec<String> = ctx.reg.data.counties().map(|u| u.code.clone()).collect();
        if counties.is_empty() {
            counties.push(self.office_unit.clone());
        }
        let mut out = Vec::new();
        for (feed, (alarm, inbox)) in &self.feeds {
            let ended = alarm.state == AlarmState::Recovered;
            out.push(Assessment {
                hazard: Hazard::FeedGap,
                area: feed.clone(),
                area_name: format!("数据源 {feed}"),
                places: if ended {
                    Vec::new()
                } else {
                    counties
                        .iter()
                        .map(|u| Place {
                            kind: PlaceKind::Unit,
                            id: u.clone(),
                            tier: Tier::Orange,
                            why: super::why::said(
                                "feed_silent",
                                serde_json::json!({
                                    "feed": feed, "url": alarm.url, "secs": alarm.silent_secs,
                                    "error": alarm.last_error,
                                }),
                            ),
                        })
                        .collect()
                },
                onset: None,
                ended,
                reason: super::why::said(
                    "feed_area",
                    serde_json::json!({"feed": feed, "state": if ended { "recovered" } else { "silent" }}),
                ),
                cause: Some(*inbox),
                upstream: None,
                restricted: true,
            });
        }
        out
    }
}
