//! Upstream CAP alerts relayed down to the villages they cover, with their tier.
//!
//! Each upstream lineage (an alert and its updates) is followed as one: the newest message
//! stands for it; a Cancel, or the expiry of every `<info>`, ends it, and the relay is lifted
//! at once rather than after the usual hold. A village is covered when its point is inside
//! one of the alert's polygons or circles, or its code falls under one of the alert's
//! administrative geocodes (6-, 9- or 12-digit, GB/T 2260 / 10114). Alerts this office sent
//! are never relayed back to it, and alerts the geological-hazard rule takes are not relayed
//! a second time.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use super::assess::{Assessment, Ctx, Place, PlaceKind, Rule, UpstreamRef};
use super::rules::GeoHazardRules;
use super::tier::{Hazard, Tier};
use crate::cap::model::{Alert, MsgType, Severity};
use crate::feeds::{Observation, UpstreamAlert};
use crate::registry::Registry;

/// The newest message of each upstream lineage.
#[derive(Debug, Default)]
pub struct AlertBook {
    lineages: HashMap<String, Followed>,
}

/// One followed lineage.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The newest message.
    pub alert: Alert,
    /// Its inbox id.
    pub inbox: i64,
    /// Cancelled upstream.
    pub cancelled: bool,
}

impl Followed {
    /// Whether the lineage has ended at `now` (cancelled, or every info expired).
    pub fn ended(&self, now: Timestamp) -> bool {
        self.cancelled
            || (!self.alert.infos.is_empty()
                && self
                    .alert
                    .infos
                    .iter()
                    .all(|i| i.expires.is_some_and(|e| e.timestamp() <= now)))
    }

    /// What a relay refers to.
    pub fn reference(&self) -> UpstreamRef {
        let info = self.alert.infos.first();
        UpstreamRef {
            reference: format!(
                "{},{},{}",
                self.alert.sender, self.alert.identifier, self.alert.sent
            ),
            sender: self.alert.sender.clone(),
            event: info.map(|i| i.event.clone()).unwrap_or_default(),
            event_code: info.and_then(|i| {
                i.event_codes
                    .iter()
                    .find(|v| v.value_name == crate::cap::cn::VN_EVENT_TYPE)
                    .map(|v| v.value.trim().to_string())
            }),
            headline: info.and_then(|i| i.headline.clone()),
            expires: self
                .alert
                .infos
                .iter()
                .filter_map(|i| i.expires.map(|e| e.timestamp()))
                .max(),
        }
    }
}

impl AlertBook {
    /// Take in an alert; returns whether it changed a lineage.
    pub fn add(&mut self, a: &UpstreamAlert, inbox: i64, own_sender: &str) -> bool {
        if a.alert.sender == own_sender {
            return false;
        }
        let root = a.lineage.as_ref().map_or_else(
            || format!("{},{},{}", a.alert.sender, a.alert.identifier, a.alert.sent),
            |l| l.root.clone(),
        );
        let cancel = a.alert.msg_type == MsgType::Cancel;
        match self.lineages.get_mut(&root) {
            Some(f) if f.alert.sent > a.alert.sent && !cancel => false,
            Some(f) => {
                if cancel {
                    f.cancelled = true;
                    f.inbox = inbox;
                } else {
                    f.alert = a.alert.clone();
                    f.inbox = inbox;
                }
                true
            }
            None => {
                self.lineages.insert(
                    root,
                    Followed {
                        alert: a.alert.clone(),
                        inbox,
                        cancelled: cancel,
                    },
                );
                true
            }
        }
    }

    /// The lineages, by root.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Followed)> {
        self.lineages.iter()
    }

    /// Forget lineages ended more than two days ago.
    pub fn prune(&mut self, now: Timestamp) {
        let cut = now
            .checked_sub(SignedDuration::from_hours(48))
            .unwrap_or(now);
        self.lineages
            .retain(|_, f| !f.ended(cut) || f.alert.sent.timestamp() > cut);
    }
}

/// The tier of an upstream alert: a colour word in its event or headline (the Chinese
/// services name it: 台风橙色预警), else its severity.
pub fn alert_tier(a: &Alert) -> Option<Tier> {
    let info = a.infos.first()?;
    let text = format!(
        "{} {}",
        info.event,
        info.headline.as_deref().unwrap_or_default()
    );
    for (word, tier) in [
        ("红色", Tier::Red),
        ("橙色", Tier::Orange),
        ("黄色", Tier::Yellow),
        ("蓝色", Tier::Blue),
    ] {
        if text.contains(word) {
            return Some(tier);
        }
    }
    a.infos
        .iter()
        .map(|i| i.severity)
        .max_by_key(|s| match s {
            Severity::Extreme => 4,
            Severity::Severe => 3,
            Severity::Moderate => 2,
            Severity::Minor => 1,
            Severity::Unknown => 0,
        })
        .and_then(|s| match s {
            Severity::Extreme => Some(Tier::Red),
            Severity::Severe => Some(Tier::Orange),
            Severity::Moderate => Some(Tier::Yellow),
            Severity::Minor => Some(Tier::Blue),
            Severity::Unknown => None,
        })
}

/// Indices of the villages an alert's areas cover.
pub fn covered_villages(a: &Alert, reg: &Registry) -> Vec<usize> {
    let mut out = std::collections::BTreeSet::new();
    for info in &a.infos {
        for area in &info.areas {
            for p in &area.polygons {
                let ring: Vec<geo::Coord<f64>> = p
                    .points
                    .iter()
                    .map(|c| geo::Coord { x: c.lon, y: c.lat })
                    .collect();
                let poly = geo::Polygon::new(geo::LineString::new(ring), vec![]);
                out.extend(reg.index.villages_in(&poly));
            }
            for c in &area.circles {
                out.extend(reg.index.villages_within(
                    &reg.data,
                    c.center.lon,
                    c.center.lat,
                    c.radius_km,
                ));
            }
            for g in &area.geocodes {
                if let Some(v) = admin_prefix(g.value.trim()) {
                    out.extend(reg.villages_under(v));
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The prefix an administrative geocode stands for: province, city, county (6 digits),
/// town (9), village (12), with the zero padding removed. GB/T 2260 numbers a city's counties
/// 01–99 and a province's cities 01–99, so `410000` is the province 41 (the national system's
/// provincial alerts carry `410000000000`), `410600` the city 4106, `331098000000` the county
/// 331098 and `331098101000` the town 331098101 (no village is numbered 000).
pub fn admin_prefix(code: &str) -> Option<&str> {
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let county = |c: &str| -> usize {
        if c.ends_with("0000") {
            2
        } else if c.ends_with("00") {
            4
        } else {
            6
        }
    };
    match code.len() {
        6 => Some(&code[..county(code)]),
        9 => Some(code),
        12 if code.ends_with("000000") => Some(&code[..county(&code[..6])]),
        12 if code.ends_with("000") => Some(&code[..9]),
        12 => Some(code),
        _ => None,
    }
}

/// Whether an alert is a geological-hazard risk warning under the rules.
pub fn is_geo(a: &Alert, r: &GeoHazardRules) -> bool {
    a.infos.iter().any(|i| {
        i.event_codes
            .iter()
            .any(|c| r.event_codes.contains(&c.value))
            || r.event_words.iter().any(|w| i.event.contains(w.as_str()))
    })
}

/// The relay rule. Its assessments change only when an alert arrives or one expires, so
/// they are kept between those moments.
#[derive(Debug)]
pub struct UpstreamRule {
    book: AlertBook,
    own_sender: String,
    cached: Option<(Timestamp, Vec<Assessment>)>,
}

impl UpstreamRule {
    /// A relay that never relays `own_sender`'s alerts back.
    pub fn new(own_sender: &str) -> Self {
        UpstreamRule {
            book: AlertBook::default(),
            own_sender: own_sender.to_string(),
            cached: None,
        }
    }
}

impl Rule for UpstreamRule {
    fn hazard(&self) -> Hazard {
        Hazard::Upstream
    }

    fn observe(&mut self, obs: &Observation, inbox: i64, _reg: &Registry) -> bool {
        match obs {
            Observation::Alert(a) => {
                let changed = self.book.add(a, inbox, &self.own_sender);
                if changed {
                    self.cached = None;
                }
                changed
            }
            _ => false,
        }
    }

    fn assess(&mut self, now: Timestamp, ctx: &Ctx<'_>) -> Vec<Assessment> {
        let r = &ctx.rules.upstream;
        if !r.enabled {
            return Vec::new();
        }
        // Valid until the next expiry of a lineage still in force.
        if let Some((until, cached)) = &self.cached
            && now < *until
        {
            return cached.clone();
        }
        self.book.prune(now);
        let until = self
            .book
            .iter()
            .filter(|(_, f)| !f.ended(now))
            .filter_map(|(_, f)| f.reference().expires)
            .min()
            .unwrap_or(Timestamp::MAX)
            .min(
                now.checked_add(SignedDuration::from_hours(1))
                    .unwrap_or(now),
            );
        let mut out = Vec::new();
        for (root, f) in self.book.iter() {
            if ctx.rules.geo_hazard.enabled && is_geo(&f.alert, &ctx.rules.geo_hazard) {
                continue;
            }
            let reference = f.reference();
            let ended = f.ended(now);
            let tier = alert_tier(&f.alert).filter(|t| *t >= r.min_tier);
            let places: Vec<Place> = match tier {
                Some(tier) if !ended => covered_villages(&f.alert, ctx.reg)
                    .into_iter()
                    .map(|i| {
                        let v = &ctx.reg.data.villages[i];
                        Place {
                            kind: PlaceKind::Village,
                            id: v.code.clone(),
                            tier,
                            why: super::why::said(
                                "upstream_in",
                                serde_json::json!({"place": v.name, "event": reference.event}),
                            ),
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if places.is_empty() && !ended {
                continue;
            }
            let area_name = f
                .alert
                .infos
                .first()
                .and_then(|i| i.areas.first())
                .map(|a| a.area_desc.clone())
                .unwrap_or_default();
            out.push(Assessment {
                hazard: Hazard::Upstream,
                area: root.clone(),
                area_name,
                reason: if ended {
                    super::why::said(
                        "upstream_ended",
                        serde_json::json!({
                            "reference": reference.reference,
                            "how": if f.cancelled { "cancelled" } else { "expired" },
                        }),
                    )
                } else {
                    super::why::said(
                        "upstream_covers",
                        serde_json::json!({"reference": reference.reference, "count": places.len()}),
                    )
                },
                places,
                onset: f
                    .alert
                    .infos
                    .iter()
                    .filter_map(|i| i.onset.map(|o| o.timestamp()))
                    .min(),
                ended,
                cause: Some(f.inbox),
                upstream: Some(reference),
                restricted: false,
            });
        }
        self.cached = Some((until, out.clone()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::admin_prefix;

    #[test]
    fn provinces_cities_counties_towns_and_villages() {
        assert_eq!(admin_prefix("410000000000"), Some("41"));
        assert_eq!(admin_prefix("410600000000"), Some("4106"));
        assert_eq!(admin_prefix("410622000000"), Some("410622"));
        assert_eq!(admin_prefix("331098101000"), Some("331098101"));
        assert_eq!(admin_prefix("331098101201"), Some("331098101201"));
        assert_eq!(admin_prefix("330000"), Some("33"));
        assert_eq!(admin_prefix("331098"), Some("331098"));
        assert_eq!(admin_prefix("33109810"), None);
        assert_eq!(admin_prefix("33a098"), None);
    }
}
