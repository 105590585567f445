//! What a rule says about the world now, and the one trait every rule implements.
//!
//! A rule takes in observations ([`Rule::observe`]) and, when asked, says which areas are at
//! risk at which tier ([`Rule::assess`]). It says nothing about what was said before: the
//! lifecycle ([`super::lifecycle`]) turns successive assessments into issue / update / lift
//! decisions, with hysteresis and holds. Adding a hazard is one new module implementing
//! [`Rule`].

use std::collections::HashMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::rain::RainBook;
use super::rules::Rules;
use super::tier::{Hazard, Tier};
use crate::feeds::Observation;
use crate::registry::Registry;

/// What kind of place a warning names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaceKind {
    /// A village (12-digit code).
    Village,
    /// A hazard site (registry id).
    Site,
    /// An administrative unit (county, town): for internal warnings to its duty officers.
    Unit,
}

/// One village or site under a warning, at its own tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// Village or site.
    pub kind: PlaceKind,
    /// Village code or site id.
    pub id: String,
    /// Its tier (a warning's tier is the highest of its places').
    pub tier: Tier,
    /// Why, in one line of numbers (for the decision log and the duty officer).
    pub why: String,
}

/// One area's state according to a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The hazard.
    pub hazard: Hazard,
    /// The lineage's area key: a town code, a site id, or an upstream alert's lineage.
    pub area: String,
    /// The area in words (Chinese), for `areaDesc` and messages.
    pub area_name: String,
    /// The places at risk now; empty means the area is below every threshold.
    pub places: Vec<Place>,
    /// When the danger is expected to begin (CAP `onset`), if known.
    pub onset: Option<Timestamp>,
    /// The danger ends with certainty (the upstream alert was cancelled or expired): lift
    /// at once instead of waiting out the hold.
    pub ended: bool,
    /// Overall reason, one line.
    pub reason: String,
    /// Inbox id of the observation that caused this, when one did.
    pub cause: Option<i64>,
    /// For relayed alerts: the upstream alert (`sender,identifier,sent`) and its event.
    pub upstream: Option<UpstreamRef>,
    /// Officials only (scope Restricted): e.g. blue geological-hazard risk.
    pub restricted: bool,
}

impl Assessment {
    /// The area's tier: the highest of its places', or none.
    pub fn tier(&self) -> Option<Tier> {
        self.places.iter().map(|p| p.tier).max()
    }
}

/// The upstream alert a relay comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamRef {
    /// `sender,identifier,sent` of the latest upstream message.
    pub reference: String,
    /// Upstream sender.
    pub sender: String,
    /// Upstream event text.
    pub event: String,
    /// The national event-type code it carried (`CN:eventType`, e.g. `11B03`), if any.
    #[serde(default)]
    pub event_code: Option<String>,
    /// Upstream headline, if any.
    pub headline: Option<String>,
    /// Upstream expiry.
    pub expires: Option<Timestamp>,
}

/// What every rule can see when assessing.
pub struct Ctx<'a> {
    /// The registry.
    pub reg: &'a Registry,
    /// The criteria.
    pub rules: &'a Rules,
    /// Rolling rainfall, shared by the rainfall-driven rules.
    pub rain: &'a RainBook,
    /// Every gauge's accumulation over every window the rules and thresholds use, computed
    /// once per evaluation (see [`super::rain::RainBook::table`]).
    pub sums: &'a super::rain::SumTable,
    /// The office's time zone, for times in words.
    pub tz: &'a jiff::tz::TimeZone,
    /// Tiers places hold now, by (hazard, place id): thresholds of tiers at or below a held
    /// tier are relaxed by the hysteresis, so a value hovering at a threshold does not flap.
    pub held: &'a HashMap<Hazard, HashMap<String, Tier>>,
}

impl Ctx<'_> {
    /// Whether `value` meets `threshold` for `tier` at `place`, with hysteresis: a place that
    /// already holds `tier` or higher keeps it until the value falls below
    /// `threshold × (1 − hysteresis)`.
    pub fn meets(
        &self,
        hazard: Hazard,
        place: &str,
        tier: Tier,
        value: f64,
        threshold: f64,
    ) -> bool {
        let held = self.held(hazard, place).is_some_and(|h| h >= tier);
        if held {
            value >= threshold * (1.0 - self.rules.lifecycle.hysteresis)
        } else {
            value >= threshold
        }
    }

    /// The tier a place holds now, if any.
    pub fn held(&self, hazard: Hazard, place: &str) -> Option<Tier> {
        self.held.get(&hazard)?.get(place).copied()
    }
}

/// One hazard's rule: takes in observations, says which areas are at risk.
pub trait Rule: Send {
    /// The hazard it decides.
    fn hazard(&self) -> Hazard;
    /// Take in an observation (`inbox` is its id, for the decision log). Returns whether it
    /// was of interest.
    fn observe(&mut self, obs: &Observation, inbox: i64, reg: &Registry) -> bool;
    /// The areas at risk at `now`. Areas not returned are below every threshold.
    fn assess(&mut self, now: Timestamp, ctx: &Ctx<'_>) -> Vec<Assessment>;
}

/// Group places by an area key, building one assessment per area.
pub fn by_area(
    hazard: Hazard,
    places: Vec<(String, String, Place)>,
    reason: impl Fn(&[Place]) -> String,
    cause: Option<i64>,
) -> Vec<Assessment> {
    let mut areas: std::collections::BTreeMap<String, (String, Vec<Place>)> = Default::default();
    for (area, name, p) in places {
        areas
            .entry(area)
            .or_insert_with(|| (name, Vec::new()))
            .1
            .push(p);
    }
    areas
        .into_iter()
        .map(|(area, (area_name, mut places))| {
            places.sort_by(|a, b| b.tier.cmp(&a.tier).then(a.id.cmp(&b.id)));
            Assessment {
                hazard,
                reason: reason(&places),
                area,
                area_name,
                places,
                onset: None,
                ended: false,
                cause,
                upstream: None,
                restricted: false,
            }
        })
        .collect()
}
