//! Warning criteria as data: one TOML file per issuing jurisdiction in `config/rules/`.
//!
//! Why data: real criteria differ by province and county (a local rainstorm red adds
//! "1 h ≥ 60 mm", Guangdong adds a white typhoon signal, flash-flood thresholds are per
//! village). The national defaults ship as `config/rules/national.toml`; an office copies it,
//! changes what its own scheme says, and points `correlate.rules` at the copy.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::tier::Tier;

/// The national defaults, compiled in so that a fresh install warns correctly.
pub const NATIONAL: &str = include_str!("../../config/rules/national.toml");

/// A complete rule set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Short code of the issuing jurisdiction (e.g. `CN`, `CN-33`).
    pub jurisdiction: String,
    /// Name in words.
    pub name: String,
    /// How warnings are kept from flapping.
    pub lifecycle: Lifecycle,
    /// CAP fields per tier and hazard.
    pub cap: CapRules,
    /// Typhoon signals.
    pub typhoon: TyphoonRules,
    /// Rainstorm signals.
    pub rainstorm: RainstormRules,
    /// Flash-flood village warnings.
    pub flash_flood: FlashFloodRules,
    /// Geological-hazard warnings.
    pub geo_hazard: GeoHazardRules,
    /// Forest-fire danger.
    pub wildfire: WildfireRules,
    /// Relaying upstream CAP alerts.
    pub upstream: UpstreamRules,
}

impl Rules {
    /// The national event type code (`11B…`) of each hazard's warnings, keyed by the hazard's
    /// name: what a broadcast instruction or a CAP message names the event by.
    pub fn event_codes(&self) -> std::collections::HashMap<String, String> {
        use crate::correlate::tier::Hazard;
        [
            (Hazard::Typhoon, &self.typhoon.event_code),
            (Hazard::Rainstorm, &self.rainstorm.event_code),
            (Hazard::FlashFlood, &self.flash_flood.event_code),
            (Hazard::GeoHazard, &self.geo_hazard.event_code),
            (Hazard::Wildfire, &self.wildfire.event_code),
        ]
        .into_iter()
        .map(|(h, c)| (h.as_str().to_string(), c.clone()))
        .collect()
    }
}

/// Hysteresis and holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// A trigger must fall this fraction below a threshold before it counts as below it.
    pub hysteresis: f64,
    /// A lower tier must hold this long (minutes) before a downgrade goes out.
    pub downgrade_hold_mins: u32,
    /// Below every threshold this long (minutes) before the warning is lifted.
    pub lift_hold_mins: u32,
    /// Once issued or raised, a tier stands at least this long (minutes).
    pub min_hold_mins: BTreeMap<Tier, u32>,
    /// Villages leaving a warning's area must be out this long (minutes) before it narrows.
    pub narrow_hold_mins: u32,
    /// CAP `expires` is this long after `sent` unless re-issued (hours).
    pub expires_hours: u32,
    /// New or raised places of a warning in force (below red, tier of the warning unchanged)
    /// are gathered this long (minutes) into one update.
    pub coalesce_mins: u32,
}

/// CAP urgency and certainty per tier (Google needs real values, not Unknown).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapRules {
    /// Per tier: `[urgency, certainty]`.
    pub tier: BTreeMap<Tier, [String; 2]>,
}

/// One tier of the typhoon signal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TyphoonTier {
    /// The tier.
    pub tier: Tier,
    /// Look-ahead window, hours.
    pub hours: u32,
    /// Mean wind level (China scale) that triggers it.
    pub mean_level: u8,
    /// Gust level that triggers it.
    pub gust_level: u8,
}

/// Typhoon rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TyphoonRules {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Gust / mean wind ratio, to turn a gust criterion into a mean wind speed.
    pub gust_factor: f64,
    /// Radius of maximum wind (km) assumed when fitting the wind profile to a single circle.
    pub rmw_km: f64,
    /// How far a circle derived from the wind profile may reach beyond the outermost circle an
    /// agency reported, as a multiple of it (1.0: never beyond what was reported).
    pub derived_reach: f64,
    /// Interpolation step along the track (minutes).
    pub step_mins: u32,
    /// Whose tracks to use when several agencies track one storm, most preferred first
    /// (WMO location indicators: `BABJ` CMA, `RJTD` JMA, `PGTW` JTWC).
    #[serde(default = "default_agencies")]
    pub agencies: Vec<String>,
    /// CAP event code (national 11Bxx).
    pub event_code: String,
    /// The tiers, any order.
    pub tiers: Vec<TyphoonTier>,
}

fn default_agencies() -> Vec<String> {
    ["BABJ", "RJTD", "PGTW"].map(String::from).to_vec()
}

/// One tier of a rainfall criterion.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RainTier {
    /// The tier.
    pub tier: Tier,
    /// Window, hours (may be fractional, e.g. 0.5).
    pub hours: f64,
    /// Accumulation over the window that triggers it, mm.
    pub mm: f64,
}

/// Which gauges stand for a place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gauges {
    /// Use up to this many nearest gauges.
    pub nearest: usize,
    /// … within this distance, km.
    pub max_km: f64,
}

/// Rainstorm rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RainstormRules {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Gauges per village.
    pub gauges: Gauges,
    /// CAP event code.
    pub event_code: String,
    /// The tiers; any one met raises that tier.
    pub tiers: Vec<RainTier>,
}

/// Soil-moisture state from antecedent rain, for thresholds that depend on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoilRules {
    /// Antecedent precipitation index: days looked back.
    pub days: u32,
    /// … daily decay factor.
    pub decay: f64,
    /// At or below this API (mm), the soil is dry (较干).
    pub dry_mm: f64,
    /// At or above this, wet (较湿); in between, normal.
    pub wet_mm: f64,
}

/// Flash-flood rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashFloodRules {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Gauges per zone.
    pub gauges: Gauges,
    /// Tier of 准备转移 (prepare to move).
    pub prepare_tier: Tier,
    /// Tier of 立即转移 (move now).
    pub move_tier: Tier,
    /// Soil state.
    pub soil: SoilRules,
    /// CAP event code (none is known nationally for water-department warnings).
    pub event_code: String,
}

/// Geological-hazard rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoHazardRules {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Upstream alerts with one of these event codes are risk-area warnings.
    pub event_codes: Vec<String>,
    /// … or whose event contains one of these words.
    pub event_words: Vec<String>,
    /// Lowest tier released to the public; lower ones go to officials only (scope Restricted).
    pub public_from: Tier,
    /// Gauges per site, for sites with rainfall thresholds.
    pub gauges: Gauges,
    /// Tier of a site's 准备转移 threshold.
    pub prepare_tier: Tier,
    /// Tier of a site's 立即转移 threshold.
    pub move_tier: Tier,
    /// CAP event code.
    pub event_code: String,
}

/// Wildfire rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WildfireRules {
    /// Whether the rule runs.
    pub enabled: bool,
    /// FWI values at which danger levels 2, 3, 4 and 5 begin.
    pub fwi_breakpoints: [f64; 4],
    /// Warning tier for danger levels (levels not listed are not warned).
    pub tier_for_level: BTreeMap<String, Tier>,
    /// Use the nearest station within this distance of a forest area, km.
    pub station_max_km: f64,
    /// CAP event code.
    pub event_code: String,
}

/// Upstream relay rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamRules {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Alerts below this tier are not relayed.
    pub min_tier: Tier,
}

/// Why a rule file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Unreadable file.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        error: std::io::Error,
    },
    /// Not a valid rule set.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the key.
        message: String,
    },
}

impl Rules {
    /// The national defaults.
    pub fn national() -> Rules {
        // The shipped file is checked by a test; a broken build must not reach an office.
        match Rules::parse(NATIONAL, "config/rules/national.toml") {
            Ok(r) => r,
            Err(e) => panic!("the built-in national rules are broken: {e}"),
        }
    }

    /// Read a rule file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|error| RulesError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Rules::parse(&text, &path.display().to_string())
    }

    /// Parse and check a rule set.
    pub fn parse(text: &str, path: &str) -> Result<Rules, RulesError> {
        let rules: Rules = toml::from_str(text).map_err(|e| RulesError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        let problems = rules.check();
        if problems.is_empty() {
            Ok(rules)
        } else {
            Err(RulesError::Invalid {
                path: path.into(),
                message: problems.join("; "),
            })
        }
    }

    fn check(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(0.0..0.5).contains(&self.lifecycle.hysteresis) {
            p.push("lifecycle.hysteresis must be in [0, 0.5)".into());
        }
        for t in Tier::ALL {
            if !self.cap.tier.contains_key(&t) {
                p.push(format!("cap.tier.{t} is missing"));
            }
        }
        for (t, [u, c]) in &self.cap.tier {
            if crate::cap::model::Urgency::from_cap(u).is_none() {
                p.push(format!("cap.tier.{t}: urgency `{u}` is not a CAP urgency"));
            }
            if crate::cap::model::Certainty::from_cap(c).is_none() {
                p.push(format!(
                    "cap.tier.{t}: certainty `{c}` is not a CAP certainty"
                ));
            }
        }
        for t in &self.typhoon.tiers {
            if t.hours == 0 || t.mean_level > 17 || t.gust_level > 17 {
                p.push(format!(
                    "typhoon.tiers ({}): hours must be > 0 and levels 0–17",
                    t.tier
                ));
            }
        }
        if !(1.0..=3.0).contains(&self.typhoon.gust_factor) {
            p.push("typhoon.gust_factor must be within 1–3".into());
        }
        if !(1.0..=2.0).contains(&self.typhoon.derived_reach) {
            p.push("typhoon.derived_reach must be within 1–2".into());
        }
        if self.typhoon.step_mins == 0 || self.typhoon.step_mins > 180 {
            p.push("typhoon.step_mins must be 1–180".into());
        }
        for t in &self.rainstorm.tiers {
            if !(t.hours > 0.0 && t.hours <= 72.0 && t.mm > 0.0) {
                p.push(format!(
                    "rainstorm.tiers ({}): hours must be in (0, 72] and mm > 0",
                    t.tier
                ));
            }
        }
        let b = self.wildfire.fwi_breakpoints;
        if !b.windows(2).all(|w| w[0] < w[1]) || b[0] <= 0.0 {
            p.push("wildfire.fwi_breakpoints must be positive and increasing".into());
        }
        for k in self.wildfire.tier_for_level.keys() {
            if !matches!(k.as_str(), "1" | "2" | "3" | "4" | "5") {
                p.push(format!("wildfire.tier_for_level: `{k}` is not a level 1–5"));
            }
        }
        for (name, g) in [
            ("rainstorm.gauges", &self.rainstorm.gauges),
            ("flash_flood.gauges", &self.flash_flood.gauges),
            ("geo_hazard.gauges", &self.geo_hazard.gauges),
        ] {
            if g.nearest == 0 || g.max_km <= 0.0 {
                p.push(format!("{name}: nearest must be ≥ 1 and max_km > 0"));
            }
        }
        p
    }

    /// Minimum hold of a tier.
    pub fn min_hold(&self, t: Tier) -> jiff::SignedDuration {
        jiff::SignedDuration::from_mins(i64::from(
            self.lifecycle.min_hold_mins.get(&t).copied().unwrap_or(0),
        ))
    }

    /// The FWI danger level (1–5) of an FWI value.
    pub fn fire_level(&self, fwi: f64) -> u8 {
        1 + self
            .wildfire
            .fwi_breakpoints
            .iter()
            .filter(|b| fwi >= **b)
            .count() as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_national_defaults_are_the_cma_tables() {
        let r = Rules::national();
        let red = r
            .typhoon
            .tiers
            .iter()
            .find(|t| t.tier == Tier::Red)
            .unwrap();
        assert_eq!((red.hours, red.mean_level, red.gust_level), (6, 12, 14));
        let orange = r
            .rainstorm
            .tiers
            .iter()
            .find(|t| t.tier == Tier::Orange)
            .unwrap();
        assert_eq!((orange.hours, orange.mm), (3.0, 50.0));
        assert_eq!(r.fire_level(0.0), 1);
        assert_eq!(r.fire_level(r.wildfire.fwi_breakpoints[3]), 5);
    }

    #[test]
    fn a_bad_rule_file_names_key_and_reason() {
        let text = NATIONAL.replace("gust_factor = 1.4", "gust_factor = 9");
        let e = Rules::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(
            e.contains("x.toml") && e.contains("typhoon.gust_factor"),
            "{e}"
        );
        let text = NATIONAL.replace("hysteresis = ", "hysteresys = ");
        let e = Rules::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(e.contains("hysteresys"), "{e}");
    }
}
