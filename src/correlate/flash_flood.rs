//! Flash-flood village warnings: each zone's critical rainfall (准备转移 / 立即转移, per
//! window and soil state, from the registry) against rolling accumulations at its gauges.
//! The soil state comes from the antecedent precipitation index at the same gauges when the
//! zone has thresholds per soil state; thresholds for "any" state always apply.

use jiff::{SignedDuration, Timestamp};

use super::assess::{Assessment, Ctx, Place, PlaceKind, Rule, by_area};
use super::rain::STALE_AFTER;
use super::rules::{Gauges, SoilRules};
use super::tier::{Hazard, Tier};
use crate::feeds::Observation;
use crate::registry::Registry;
use crate::registry::model::{Site, SiteKind, SiteStatus, Soil};

/// The flash-flood rule. Its memory is the shared [`super::rain::RainBook`]; it keeps each
/// zone's gauges until the gauges change.
#[derive(Default)]
pub struct FlashFloodRule {
    gauges: SiteGauges,
}

/// Gauges per site, kept until the gauge set changes.
#[derive(Debug, Default)]
pub struct SiteGauges {
    generation: u64,
    of: std::collections::HashMap<String, Vec<usize>>,
}

impl SiteGauges {
    /// The gauges of a site (computed once per gauge generation).
    pub fn of(&mut self, site: &Site, ctx: &Ctx<'_>, g: &Gauges) -> &[usize] {
        if self.generation != ctx.rain.generation {
            self.of.clear();
            self.generation = ctx.rain.generation;
        }
        self.of
            .entry(site.id.clone())
            .or_insert_with(|| site_gauges(site, ctx, g))
    }
}

/// Where a site's rain is measured: its own point, else its villages'.
fn site_gauges(site: &Site, ctx: &Ctx<'_>, g: &Gauges) -> Vec<usize> {
    let mut points = Vec::new();
    if let Some(p) = &site.point {
        points.push((p.lon, p.lat));
    } else {
        for v in &site.villages {
            if let Some(v) = ctx.reg.village(v) {
                points.push((v.point.lon, v.point.lat));
            }
        }
    }
    let mut out: Vec<usize> = Vec::new();
    for (lon, lat) in points {
        for i in ctx.rain.near(lon, lat, g.nearest, g.max_km) {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    out
}

/// The soil state at some gauges now, by the antecedent precipitation index (wettest gauge).
pub fn soil_state(ctx: &Ctx<'_>, gauges: &[usize], now: Timestamp, s: &SoilRules) -> Option<Soil> {
    // The index looks at the days before the current event: end a day back.
    let before = now.checked_sub(SignedDuration::from_hours(24)).ok()?;
    let api = gauges
        .iter()
        .filter_map(|&g| ctx.rain.api(g, before, s.days, s.decay))
        .max_by(f64::total_cmp)?;
    Some(if api <= s.dry_mm {
        Soil::Dry
    } else if api >= s.wet_mm {
        Soil::Wet
    } else {
        Soil::Normal
    })
}

/// A site's tier from its rainfall thresholds, with the reason; `None` below all of them.
#[allow(clippy::too_many_arguments)]
pub fn site_rain_tier(
    site: &Site,
    hazard: Hazard,
    ctx: &Ctx<'_>,
    now: Timestamp,
    gauges: &[usize],
    (prepare, move_now): (Tier, Tier),
) -> Option<(Tier, String)> {
    let thresholds: Vec<_> = ctx.reg.thresholds_of(&site.id).collect();
    if thresholds.is_empty() || gauges.is_empty() {
        return None;
    }
    // Blind (every gauge silent): hold what the site has, neither raise nor lower.
    if !gauges.iter().any(|g| ctx.rain.fresh(*g, now, STALE_AFTER)) {
        return ctx.held(hazard, &site.id).map(|t| {
            (
                t,
                super::why::said(
                    "rain_blind",
                    serde_json::json!({"place": site.name, "mins": STALE_AFTER.as_mins(), "tier": t.as_str()}),
                ),
            )
        });
    }
    let soil = if thresholds.iter().any(|t| t.soil != Soil::Any) {
        soil_state(ctx, gauges, now, &ctx.rules.flash_flood.soil).unwrap_or(Soil::Normal)
    } else {
        Soil::Any
    };
    let mut best: Option<(Tier, String)> = None;
    for t in thresholds
        .iter()
        .filter(|t| t.soil == Soil::Any || t.soil == soil)
    {
        let h = f64::from(t.minutes) / 60.0;
        let Some((mm, g)) = ctx.sums.max(gauges, h) else {
            continue;
        };
        for (tier, limit, word) in [
            (move_now, t.move_mm, "move"),
            (prepare, t.prepare_mm, "prepare"),
        ] {
            if best.as_ref().is_some_and(|(b, _)| *b >= tier) {
                break;
            }
            if ctx.meets(hazard, &site.id, tier, mm, limit) {
                best = Some((
                    tier,
                    super::why::said(
                        "rain",
                        serde_json::json!({
                            "place": site.name, "action": word, "mm": (mm * 10.0).round() / 10.0,
                            "hours": h, "gauge": ctx.rain.name(g), "limit": limit,
                            "soil": soil.as_str(),
                        }),
                    ),
                ));
                break;
            }
        }
    }
    best
}

impl Rule for FlashFloodRule {
    fn hazard(&self) -> Hazard {
        Hazard::FlashFlood
    }

    fn observe(&mut self, obs: &Observation, _inbox: i64, _reg: &Registry) -> bool {
        matches!(obs, Observation::Rain(_))
    }

    fn assess(&mut self, now: Timestamp, ctx: &Ctx<'_>) -> Vec<Assessment> {
        let r = &ctx.rules.flash_flood;
        if !r.enabled || ctx.rain.gauges() == 0 {
            return Vec::new();
        }
        let mut places = Vec::new();
        for site in ctx
            .reg
            .data
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::FlashFlood && s.status == SiteStatus::Active)
        {
            let gauges = self.gauges.of(site, ctx, &r.gauges);
            if let Some((tier, why)) = site_rain_tier(
                site,
                Hazard::FlashFlood,
                ctx,
                now,
                gauges,
                (r.prepare_tier, r.move_tier),
            ) {
                places.push((
                    site.id.clone(),
                    site.name.clone(),
                    Place {
                        kind: PlaceKind::Site,
                        id: site.id.clone(),
                        tier,
                        why,
                    },
                ));
            }
        }
        by_area(
            Hazard::FlashFlood,
            places,
            |ps| ps.first().map_or_else(String::new, |p| p.why.clone()),
            ctx.rain.last_inbox,
        )
    }
}
