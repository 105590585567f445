//! Rainstorm signals: rolling accumulations at each village's gauges against the tier table
//! (national: 50 mm in 12/6/3 h, 100 mm in 3 h). Observed rain only: no forecast-rain feed
//! exists yet.

use jiff::Timestamp;

use super::assess::{Assessment, Ctx, Place, PlaceKind, Rule, by_area};
use super::rain::STALE_AFTER;
use super::tier::{Hazard, Tier};
use super::typhoon::town_name;
use crate::feeds::Observation;
use crate::registry::Registry;

/// The rainstorm rule. Its memory is the shared [`super::rain::RainBook`]; it keeps each
/// village's gauges until the gauges change.
#[derive(Default)]
pub struct RainstormRule {
    gauges: (u64, Vec<Vec<usize>>),
}

impl Rule for RainstormRule {
    fn hazard(&self) -> Hazard {
        Hazard::Rainstorm
    }

    fn observe(&mut self, obs: &Observation, _inbox: i64, _reg: &Registry) -> bool {
        matches!(obs, Observation::Rain(_))
    }

    fn assess(&mut self, now: Timestamp, ctx: &Ctx<'_>) -> Vec<Assessment> {
        let r = &ctx.rules.rainstorm;
        if !r.enabled || ctx.rain.gauges() == 0 {
            return Vec::new();
        }
        if self.gauges.0 != ctx.rain.generation
            || self.gauges.1.len() != ctx.reg.data.villages.len()
        {
            let near = ctx
                .reg
                .data
                .villages
                .iter()
                .map(|v| {
                    ctx.rain
                        .near(v.point.lon, v.point.lat, r.gauges.nearest, r.gauges.max_km)
                })
                .collect();
            self.gauges = (ctx.rain.generation, near);
        }
        let mut places = Vec::new();
        for (vi, v) in ctx.reg.data.villages.iter().enumerate() {
            let gauges = &self.gauges.1[vi];
            if gauges.is_empty() {
                continue;
            }
            // Blind (every gauge silent): hold what the village has, neither raise nor lower.
            if !gauges.iter().any(|g| ctx.rain.fresh(*g, now, STALE_AFTER)) {
                if let Some(tier) = ctx.held(Hazard::Rainstorm, &v.code) {
                    places.push((
                        v.town.clone(),
                        town_name(ctx.reg, &v.town),
                        Place {
                            kind: PlaceKind::Village,
                            id: v.code.clone(),
                            tier,
                            why: super::why::said(
                                "rain_blind",
                                serde_json::json!({"place": v.name, "mins": STALE_AFTER.as_mins(), "tier": tier.as_str()}),
                            ),
                        },
                    ));
                }
                continue;
            }
            let mut best: Option<(Tier, String)> = None;
            for t in &r.tiers {
                if best.as_ref().is_some_and(|(b, _)| *b >= t.tier) {
                    continue;
                }
                if let Some((mm, g)) = ctx.sums.max(gauges, t.hours)
                    && ctx.meets(Hazard::Rainstorm, &v.code, t.tier, mm, t.mm)
                {
                    best = Some((
                        t.tier,
                        super::why::said(
                            "rainstorm",
                            serde_json::json!({
                                "place": v.name, "mm": (mm * 10.0).round() / 10.0,
                                "hours": t.hours, "gauge": ctx.rain.name(g), "limit": t.mm,
                            }),
                        ),
                    ));
                }
            }
            if let Some((tier, why)) = best {
                places.push((
                    v.town.clone(),
                    town_name(ctx.reg, &v.town),
                    Place {
                        kind: PlaceKind::Village,
                        id: v.code.clone(),
                        tier,
                        why,
                    },
                ));
            }
        }
        by_area(
            Hazard::Rainstorm,
            places,
            |ps| {
                ps.first().map_or_else(String::new, |p| {
                    super::why::said(
                        "rainstorm_area",
                        serde_json::json!({"count": ps.len(), "top": super::why::read(&p.why)}),
                    )
                })
            },
            ctx.rain.last_inbox,
        )
    }
}
