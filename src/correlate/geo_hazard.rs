//! Geological-hazard warnings: the upstream risk areas (natural resources + meteorology,
//! blue–red) × the registry's hazard sites, plus each site's own rainfall trigger where it
//! has thresholds. Blue risk is for officials only (scope Restricted); yellow and above go to
//! the public (configurable: `geo_hazard.public_from`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::assess::{Assessment, Ctx, Place, PlaceKind, Rule};
use super::flash_flood::{SiteGauges, site_rain_tier};
use super::tier::{Hazard, Tier};
use super::upstream::{AlertBook, alert_tier, covered_villages, is_geo};
use crate::feeds::Observation;
use crate::registry::Registry;
use crate::registry::model::{SiteKind, SiteStatus};

/// The geological-hazard rule.
#[derive(Debug)]
pub struct GeoHazardRule {
    book: AlertBook,
    own_sender: String,
    gauges: SiteGauges,
}

impl GeoHazardRule {
    /// A rule that ignores `own_sender`'s alerts.
    pub fn new(own_sender: &str) -> Self {
        GeoHazardRule {
            book: AlertBook::default(),
            own_sender: own_sender.to_string(),
            gauges: SiteGauges::default(),
        }
    }
}

impl Rule for GeoHazardRule {
    fn hazard(&self) -> Hazard {
        Hazard::GeoHazard
    }

    fn observe(&mut self, obs: &Observation, inbox: i64, _reg: &Registry) -> bool {
        match obs {
            Observation::Alert(a) => self.book.add(a, inbox, &self.own_sender),
            Observation::Rain(_) => true,
            _ => false,
        }
    }

    fn assess(&mut self, now: Timestamp, ctx: &Ctx<'_>) -> Vec<Assessment> {
        let r = &ctx.rules.geo_hazard;
        if !r.enabled {
            return Vec::new();
        }
        self.book.prune(now);
        // Per site: the highest live upstream tier (with the alert), and whether an ended
        // alert covered it.
        let mut upstream: BTreeMap<String, (Tier, String, i64)> = BTreeMap::new();
        let mut ended_over: BTreeSet<String> = BTreeSet::new();
        let sites: Vec<_> = ctx
            .reg
            .data
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::GeoHazard && s.status == SiteStatus::Active)
            .collect();
        for (_, f) in self.book.iter() {
            if !is_geo(&f.alert, r) {
                continue;
            }
            let villages: BTreeSet<&str> = covered_villages(&f.alert, ctx.reg)
                .into_iter()
                .map(|i| ctx.reg.data.villages[i].code.as_str())
                .collect();
            let tier = alert_tier(&f.alert);
            let ended = f.ended(now);
            for s in &sites {
                if !s.villages.iter().any(|v| villages.contains(v.as_str())) {
                    continue;
                }
                match tier {
                    Some(t) if !ended => {
                        let e = upstream.entry(s.id.clone()).or_insert((
                            t,
                            f.reference().event,
                            f.inbox,
                        ));
                        if t > e.0 {
                            *e = (t, f.reference().event, f.inbox);
                        }
                    }
                    _ => {
                        ended_over.insert(s.id.clone());
                    }
                }
            }
        }
        let mut out = Vec::new();
        for s in &sites {
            let rain = if ctx.rain.gauges() > 0 && ctx.reg.thresholds_of(&s.id).next().is_some() {
                let gauges = self.gauges.of(s, ctx, &r.gauges).to_vec();
                site_rain_tier(
                    s,
                    Hazard::GeoHazard,
                    ctx,
                    now,
                    &gauges,
                    (r.prepare_tier, r.move_tier),
                )
            } else {
                None
            };
            let up = upstream.get(&s.id);
            let (tier, why, cause) = match (up, rain) {
                (Some((t, ev, inbox)), Some((rt, rwhy))) if rt > *t => {
                    (rt, rwhy, ctx.rain.last_inbox.or(Some(*inbox)))
                }
                (Some((t, ev, inbox)), _) => (
                    *t,
                    super::why::said(
                        "geo_area",
                        serde_json::json!({"place": s.name, "tier": t.as_str(), "event": ev}),
                    ),
                    Some(*inbox),
                ),
                (None, Some((rt, rwhy))) => (rt, rwhy, ctx.rain.last_inbox),
                (None, None) => {
                    if ended_over.contains(&s.id) {
                        out.push(Assessment {
                            hazard: Hazard::GeoHazard,
                            area: s.id.clone(),
                            area_name: s.name.clone(),
                            places: Vec::new(),
                            onset: None,
                            ended: true,
                            reason: super::why::said(
                                "geo_ended",
                                serde_json::json!({"place": s.name}),
                            ),
                            cause: None,
                            upstream: None,
                            restricted: false,
                        });
                    }
                    continue;
                }
            };
            out.push(Assessment {
                hazard: Hazard::GeoHazard,
                area: s.id.clone(),
                area_name: s.name.clone(),
                reason: why.clone(),
                places: vec![Place {
                    kind: PlaceKind::Site,
                    id: s.id.clone(),
                    tier,
                    why,
                }],
                onset: None,
                ended: false,
                cause,
                upstream: None,
                restricted: tier < r.public_from,
            });
        }
        out
    }
}
