//! Forest-fire danger: the FWI System computed daily per weather station, mapped to the five
//! national fire-danger levels, and warned at the forest areas nearest each station.
//!
//! Each station's codes chain from day to day; a day seen again (a corrected observation)
//! is recomputed from the day before it, and a gap of more than one day restarts the chain
//! from the standard start values (the codes describe a continuous season).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use super::assess::{Assessment, Ctx, Place, PlaceKind, Rule, by_area};
use super::fwi::{self, Codes, DayLength, Indices, Noon};
use super::tier::Hazard;
use crate::feeds::Observation;
use crate::feeds::fire::{FireBatch, FireWeather};
use crate::registry::Registry;
use crate::registry::geo::km_between;
use crate::registry::model::{SiteKind, SiteStatus};

#[derive(Debug, Default)]
struct Station {
    lon: f64,
    lat: f64,
    /// Observations by date, and the indices computed for each.
    days: BTreeMap<jiff::civil::Date, (FireWeather, Indices)>,
    inbox: i64,
}

/// The wildfire rule.
#[derive(Debug, Default)]
pub struct WildfireRule {
    stations: HashMap<String, Station>,
}

impl WildfireRule {
    /// A rule with no stations yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, w: &FireWeather, inbox: i64) {
        let s = self.stations.entry(w.station.clone()).or_default();
        s.lon = w.lon;
        s.lat = w.lat;
        s.inbox = inbox;
        let placeholder = Indices {
            ffmc: 0.0,
            dmc: 0.0,
            dc: 0.0,
            isi: 0.0,
            bui: 0.0,
            fwi: 0.0,
            dsr: 0.0,
        };
        s.days.insert(w.date, (w.clone(), placeholder));
        // Recompute from this day on: later days depend on it.
        let dates: Vec<_> = s.days.range(w.date..).map(|(d, _)| *d).collect();
        for d in dates {
            let yesterday = d
                .yesterday()
                .ok()
                .and_then(|y| s.days.get(&y))
                .map(|(_, i)| i.codes());
            let Some((obs, _)) = s.days.get(&d) else {
                continue;
            };
            let noon = Noon {
                month: d.month() as u8,
                lat: obs.lat,
                temp: obs.temp_c,
                rh: obs.rh,
                wind: obs.wind_kmh,
                rain: obs.rain_mm,
            };
            let ix = fwi::day(
                yesterday.unwrap_or(Codes::START),
                &noon,
                DayLength::ByLatitude,
            );
            if let Some(e) = s.days.get_mut(&d) {
                e.1 = ix;
            }
        }
        // A season's worth is plenty.
        while s.days.len() > 400 {
            s.days.pop_first();
        }
    }
}

impl Rule for WildfireRule {
    fn hazard(&self) -> Hazard {
        Hazard::Wildfire
    }

    fn observe(&mut self, obs: &Observation, inbox: i64, _reg: &Registry) -> bool {
        match obs {
            Observation::Fire(FireBatch::Weather(rows)) => {
                for w in rows {
                    self.add(w, inbox);
                }
                true
            }
            _ => false,
        }
    }

    fn assess(&mut self, now: Timestamp, ctx: &Ctx<'_>) -> Vec<Assessment> {
        let r = &ctx.rules.wildfire;
        if !r.enabled || self.stations.is_empty() {
            return Vec::new();
        }
        let today = now.to_zoned(ctx.tz.clone()).date();
        // Today's indices, or yesterday's before today's noon observation is in.
        let current: Vec<(&String, &Station, f64, jiff::civil::Date)> = self
            .stations
            .iter()
            .filter_map(|(id, s)| {
                let (d, (_, ix)) = s.days.range(..=today).next_back()?;
                (today.since(*d).ok()?.get_days() <= 1).then_some((id, s, ix.fwi, *d))
            })
            .collect();
        let mut places = Vec::new();
        let mut cause = None;
        for site in ctx
            .reg
            .data
            .sites
            .iter()
            .filter(|s| s.kind == SiteKind::Forest && s.status == SiteStatus::Active)
        {
            let Some((lon, lat)) = ctx.reg.site_point(site) else {
                continue;
            };
            let nearest = current
                .iter()
                .map(|(id, s, f, d)| (km_between(lon, lat, s.lon, s.lat), *id, *s, *f, *d))
                .filter(|x| x.0 <= r.station_max_km)
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((km, id, station, value, date)) = nearest else {
                continue;
            };
            // Hysteresis on the FWI value: a site holding a tier keeps it down to
            // breakpoint × (1 − h).
            let held = ctx.held(Hazard::Wildfire, &site.id);
            let level = (1..=5u8)
                .rev()
                .find(|l| {
                    if *l == 1 {
                        return true;
                    }
                    let b = r.fwi_breakpoints[usize::from(*l) - 2];
                    let tier = r.tier_for_level.get(&l.to_string());
                    match (tier, held) {
                        (Some(t), Some(h)) if h >= *t => {
                            value >= b * (1.0 - ctx.rules.lifecycle.hysteresis)
                        }
                        _ => value >= b,
                    }
                })
                .unwrap_or(1);
            if let Some(tier) = r.tier_for_level.get(&level.to_string()) {
                cause = Some(cause.map_or(station.inbox, |c: i64| c.max(station.inbox)));
                places.push((
                    site.id.clone(),
                    site.name.clone(),
                    Place {
                        kind: PlaceKind::Site,
                        id: site.id.clone(),
                        tier: *tier,
                        why: super::why::said(
                            "fire",
                            serde_json::json!({
                                "place": site.name, "level": level, "fwi": value,
                                "date": date.to_string(), "station": id, "km": km,
                            }),
                        ),
                    },
                ));
            }
        }
        by_area(
            Hazard::Wildfire,
            places,
            |ps| ps.first().map_or_else(String::new, |p| p.why.clone()),
            cause,
        )
    }
}
