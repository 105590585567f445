//! Typhoon signals: which villages the forecast wind circles cover, within which window.
//!
//! A track point gives the 7/10/12-level wind radii per quadrant (NE/SE/SW/NW). The CMA
//! criteria speak of other speeds too (level 6 mean for blue, gusts of 8–14), so each
//! quadrant's wind profile is fitted through the known (speed, radius) pairs — the circles,
//! plus the maximum wind at the radius of maximum wind — as a power law `v ∝ r^-α` between
//! neighbouring pairs (a modified Rankine vortex, the usual outer-wind model), and read at the
//! speed a tier needs. A gust criterion becomes the mean speed that brings such gusts
//! (`gust_factor`). Between track points everything is interpolated linearly in time, every
//! `step_mins`; a village is exposed to a tier when, at some step within the tier's window
//! (now included: "or already affected"), it lies within that tier's radius in its quadrant.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use super::assess::{Assessment, Ctx, Place, PlaceKind, Rule, by_area};
use super::rules::Rules;
use super::tier::{Hazard, Tier};
use crate::feeds::Observation;
use crate::feeds::typhoon::{Radii, Track, TrackPoint, level_floor};
use crate::registry::Registry;

/// One position of the storm with its wind field, as used for exposure.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// When.
    pub time: Timestamp,
    /// Centre latitude.
    pub lat: f64,
    /// Centre longitude.
    pub lon: f64,
    /// Maximum sustained wind, m/s, if known.
    pub vmax: Option<f64>,
    /// Radii per quadrant (NE, SE, SW, NW) of the 7-, 10- and 12-level winds (0 = none).
    pub radii: [[f64; 4]; 3],
}

const CIRCLE_LEVELS: [u8; 3] = [7, 10, 12];

fn quad(r: Option<&Radii>) -> [f64; 4] {
    r.map_or([0.0; 4], |r| [r.ne, r.se, r.sw, r.nw])
}

impl Fix {
    /// From a track point.
    pub fn of(p: &TrackPoint) -> Fix {
        Fix {
            time: p.time,
            lat: p.lat,
            lon: p.lon,
            vmax: p.wind_ms,
            radii: [
                quad(p.r7.as_ref()),
                quad(p.r10.as_ref()),
                quad(p.r12.as_ref()),
            ],
        }
    }

    /// Linear interpolation between two fixes at time `t`.
    pub fn between(a: &Fix, b: &Fix, t: Timestamp) -> Fix {
        let span = b.time.duration_since(a.time).as_secs_f64();
        let f = if span > 0.0 {
            (t.duration_since(a.time).as_secs_f64() / span).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mix = |x: f64, y: f64| x + (y - x) * f;
        let mut radii = [[0.0; 4]; 3];
        for (c, row) in radii.iter_mut().enumerate() {
            for (q, r) in row.iter_mut().enumerate() {
                *r = mix(a.radii[c][q], b.radii[c][q]);
            }
        }
        Fix {
            time: t,
            lat: mix(a.lat, b.lat),
            lon: mix(a.lon, b.lon),
            vmax: match (a.vmax, b.vmax) {
                (Some(x), Some(y)) => Some(mix(x, y)),
                (x, y) => x.or(y),
            },
            radii,
        }
    }

    /// Radius (km) within which the mean wind reaches `speed` m/s in quadrant `q`
    /// (0 NE, 1 SE, 2 SW, 3 NW); 0 when it nowhere does.
    pub fn radius_for(&self, speed: f64, q: usize, rmw_km: f64) -> f64 {
        // Known (speed, radius) pairs, outermost (slowest) first.
        let mut pairs: Vec<(f64, f64)> = CIRCLE_LEVELS
            .iter()
            .zip(&self.radii)
            .filter(|(_, r)| r[q] > 0.0)
            .map(|(l, r)| (level_floor(*l), r[q]))
            .collect();
        if let Some(v) = self.vmax
            && pairs.iter().all(|(_, r)| *r > rmw_km)
            && pairs.iter().all(|(s, _)| *s < v)
        {
            pairs.push((v, rmw_km));
        }
        if pairs.is_empty() {
            return 0.0;
        }
        if self.vmax.is_some_and(|v| speed > v) {
            return 0.0;
        }
        // Exactly at or between known speeds: interpolate log-log; outside, extend the
        // nearest segment's slope (or α = 0.5 with a single pair), slope kept within reason.
        let alpha = |a: (f64, f64), b: (f64, f64)| -> f64 {
            let a_ = (b.0 / a.0).ln() / (a.1 / b.1).ln();
            if a_.is_finite() {
                a_.clamp(0.3, 1.0)
            } else {
                0.5
            }
        };
        let (v0, r0) = pairs[0];
        if speed <= v0 {
            let a = if pairs.len() > 1 {
                alpha(pairs[0], pairs[1])
            } else {
                0.5
            };
            // Extrapolating outwards: no more than three times the outermost circle.
            return (r0 * (v0 / speed).powf(1.0 / a)).min(3.0 * r0);
        }
        for w in pairs.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            if speed <= hi.0 {
                let a = alpha(lo, hi);
                return lo.1 * (lo.0 / speed).powf(1.0 / a);
            }
        }
        // Faster than every known speed and no maximum wind given: inside the innermost
        // circle, by the same slope.
        let last = pairs[pairs.len() - 1];
        if pairs.len() > 1 {
            let a = alpha(pairs[pairs.len() - 2], last);
            last.1 * (last.0 / speed).powf(1.0 / a)
        } else {
            0.0
        }
    }
}

/// Initial bearing (degrees clockwise from north) from one point to another.
pub fn bearing(from_lat: f64, from_lon: f64, to_lat: f64, to_lon: f64) -> f64 {
    let (p1, p2) = (from_lat.to_radians(), to_lat.to_radians());
    let dl = (to_lon - from_lon).to_radians();
    let y = dl.sin() * p2.cos();
    let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}

fn quadrant(bearing: f64) -> usize {
    ((bearing.rem_euclid(360.0) / 90.0) as usize).min(3)
}

/// The positions to use from a track at `now`: the last analysis at or before `now` (or the
/// first one after), then the newest forecast's points after it, then later analyses (a
/// replayed best track), in time order.
pub fn path(track: &Track, now: Timestamp) -> Vec<Fix> {
    let mut fixes: Vec<Fix> = Vec::new();
    let last_obs = track.points.iter().rfind(|p| p.time <= now);
    if let Some(p) = last_obs {
        fixes.push(Fix::of(p));
    }
    let after = last_obs.map_or(Timestamp::MIN, |p| p.time);
    // Observed points after `now` only exist in replays of a best track; they are the truth.
    for p in track.points.iter().filter(|p| p.time > after) {
        fixes.push(Fix::of(p));
    }
    let newest = track.forecasts.iter().max_by_key(|f| f.issued);
    if let Some(f) = newest {
        let last = fixes.last().map_or(Timestamp::MIN, |f| f.time);
        for p in f.points.iter().filter(|p| p.time > last) {
            fixes.push(Fix::of(p));
        }
    }
    fixes.sort_by_key(|f| f.time);
    fixes
}

/// Sample the path every `step` from `from` to `to` (inclusive), interpolating.
pub fn sample(path: &[Fix], from: Timestamp, to: Timestamp, step: SignedDuration) -> Vec<Fix> {
    let mut out = Vec::new();
    let (Some(first), Some(last)) = (path.first(), path.last()) else {
        return out;
    };
    let mut t = from.max(first.time);
    let end = to.min(last.time);
    // A track entirely in the past: its last fix still tells whether villages are affected.
    if t > end {
        if last.time <= from && from.duration_since(last.time) <= SignedDuration::from_hours(6) {
            out.push(last.clone());
        }
        return out;
    }
    let mut i = 0;
    while t <= end {
        while i + 1 < path.len() && path[i + 1].time < t {
            i += 1;
        }
        let fix = if i + 1 < path.len() {
            Fix::between(&path[i], &path[i + 1], t)
        } else {
            path[i].clone()
        };
        out.push(fix);
        t = match t.checked_add(step) {
            Ok(n) => n,
            Err(_) => break,
        };
    }
    out
}

/// The mean wind (m/s) a tier needs: its mean level, or the mean that brings its gust level.
pub fn tier_speed(mean_level: u8, gust_level: u8, gust_factor: f64) -> f64 {
    level_floor(mean_level).min(level_floor(gust_level) / gust_factor)
}

/// The typhoon rule: the latest track of each storm.
#[derive(Default)]
pub struct TyphoonRule {
    tracks: HashMap<String, (Track, i64)>,
}

impl TyphoonRule {
    /// A rule with no storms yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Per village: the highest tier reached and when it is first reached.
pub fn exposure(
    reg: &Registry,
    rules: &Rules,
    path: &[Fix],
    now: Timestamp,
    held: &dyn Fn(&str) -> Option<Tier>,
) -> HashMap<usize, (Tier, Timestamp, f64)> {
    let t = &rules.typhoon;
    let mut out: HashMap<usize, (Tier, Timestamp, f64)> = HashMap::new();
    let step = SignedDuration::from_mins(i64::from(t.step_mins));
    let longest = t.tiers.iter().map(|x| x.hours).max().unwrap_or(0);
    let end = now
        .saturating_add(SignedDuration::from_hours(i64::from(longest)))
        .unwrap_or(now);
    let h = rules.lifecycle.hysteresis;
    let speeds: Vec<(Tier, SignedDuration, f64)> = t
        .tiers
        .iter()
        .map(|x| {
            (
                x.tier,
                SignedDuration::from_hours(i64::from(x.hours)),
                tier_speed(x.mean_level, x.gust_level, t.gust_factor),
            )
        })
        .collect();
    for fix in sample(path, now, end, step) {
        let ahead = fix.time.duration_since(now);
        // The tiers whose window reaches this fix, with their radius per quadrant.
        let active: Vec<(Tier, [f64; 4])> = speeds
            .iter()
            .filter(|(_, window, _)| ahead <= *window)
            .map(|(tier, _, speed)| {
                let mut r = [0.0; 4];
                for (q, x) in r.iter_mut().enumerate() {
                    *x = fix.radius_for(*speed, q, t.rmw_km);
                }
                (*tier, r)
            })
            .collect();
        let reach = active
            .iter()
            .flat_map(|(_, r)| r.iter().copied())
            .fold(0.0, f64::max)
            * (1.0 + h);
        if reach <= 0.0 {
            continue;
        }
        // One search per fix; each village's distance and quadrant once.
        for (vi, d) in reg
            .index
            .villages_within_km(&reg.data, fix.lon, fix.lat, reach)
        {
            let v = &reg.data.villages[vi];
            let q = quadrant(bearing(fix.lat, fix.lon, v.point.lat, v.point.lon));
            let holds = held(&v.code);
            let best = active
                .iter()
                .filter(|(tier, r)| {
                    let keep = holds.is_some_and(|ht| ht >= *tier);
                    d <= r[q] * if keep { 1.0 + h } else { 1.0 }
                })
                .map(|(tier, _)| *tier)
                .max();
            if let Some(tier) = best {
                let e = out.entry(vi).or_insert((tier, fix.time, d));
                if tier > e.0 {
                    *e = (tier, fix.time, d);
                }
            }
        }
    }
    out
}

impl Rule for TyphoonRule {
    fn hazard(&self) -> Hazard {
        Hazard::Typhoon
    }

    fn observe(&mut self, obs: &Observation, inbox: i64, _reg: &Registry) -> bool {
        match obs {
            Observation::Track(t) => {
                self.tracks.insert(t.storm.clone(), (t.clone(), inbox));
                true
            }
            _ => false,
        }
    }

    fn assess(&mut self, now: Timestamp, ctx: &Ctx<'_>) -> Vec<Assessment> {
        if !ctx.rules.typhoon.enabled {
            return Vec::new();
        }
        // A storm whose last known position is more than two days old is gone.
        self.tracks.retain(|_, (t, _)| {
            let last = t
                .points
                .iter()
                .map(|p| p.time)
                .chain(
                    t.forecasts
                        .iter()
                        .flat_map(|f| f.points.iter().map(|p| p.time)),
                )
                .max();
            last.is_some_and(|l| now.duration_since(l) < SignedDuration::from_hours(48))
        });
        let mut best: HashMap<usize, (Tier, Timestamp, f64, String, i64)> = HashMap::new();
        for (track, inbox) in self.tracks.values() {
            let p = path(track, now);
            let held = |code: &str| ctx.held(Hazard::Typhoon, code);
            for (vi, (tier, at, d)) in exposure(ctx.reg, ctx.rules, &p, now, &held) {
                let name = format!("{} {}", track.storm, track.name);
                let e = best
                    .entry(vi)
                    .or_insert((tier, at, d, name.clone(), *inbox));
                if tier > e.0 {
                    *e = (tier, at, d, name, *inbox);
                }
            }
        }
        let mut onset: HashMap<String, Timestamp> = HashMap::new();
        let mut cause = None;
        let places: Vec<(String, String, Place)> = best
            .into_iter()
            .map(|(vi, (tier, at, d, storm, inbox))| {
                let v = &ctx.reg.data.villages[vi];
                let town = town_name(ctx.reg, &v.town);
                let o = onset.entry(v.town.clone()).or_insert(at);
                *o = (*o).min(at);
                cause = Some(cause.map_or(inbox, |c: i64| c.max(inbox)));
                let when = at.to_zoned(ctx.tz.clone()).strftime("%m-%d %H:%M");
                (
                    v.town.clone(),
                    town,
                    Place {
                        kind: PlaceKind::Village,
                        id: v.code.clone(),
                        tier,
                        why: format!(
                            "{storm}: {tier} wind reaches {} from {when} ({d:.0} km from centre)",
                            v.name
                        ),
                    },
                )
            })
            .collect();
        let mut out = by_area(
            Hazard::Typhoon,
            places,
            |ps| {
                format!(
                    "{} village(s) inside the forecast wind circles; highest {}",
                    ps.len(),
                    ps.first().map_or("-", |p| p.tier.as_str())
                )
            },
            cause,
        );
        for a in &mut out {
            a.onset = onset.get(&a.area).copied();
        }
        out
    }
}

/// A town's name from the registry's units, or its code.
pub fn town_name(reg: &Registry, code: &str) -> String {
    reg.data
        .units
        .iter()
        .find(|u| u.code == code)
        .map_or_else(|| code.to_string(), |u| u.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(r7: f64, r10: f64, r12: f64, vmax: Option<f64>) -> Fix {
        Fix {
            time: Timestamp::UNIX_EPOCH,
            lat: 25.0,
            lon: 125.0,
            vmax,
            radii: [[r7, r7 / 2.0, r7 / 2.0, r7 / 2.0], [r10; 4], [r12; 4]],
        }
    }

    #[test]
    fn radii_are_read_back_at_the_circles_and_grow_for_weaker_winds() {
        let f = fix(300.0, 120.0, 60.0, Some(50.0));
        assert!((f.radius_for(level_floor(7), 0, 30.0) - 300.0).abs() < 1e-9);
        assert!((f.radius_for(level_floor(10), 0, 30.0) - 120.0).abs() < 1e-9);
        assert!((f.radius_for(level_floor(12), 0, 30.0) - 60.0).abs() < 1e-9);
        let r6 = f.radius_for(level_floor(6), 0, 30.0);
        let r8 = f.radius_for(level_floor(8), 0, 30.0);
        assert!(r6 > 300.0 && r6 <= 900.0, "{r6}");
        assert!(r8 < 300.0 && r8 > 120.0, "{r8}");
        // The quadrant matters: the SE circle is half the NE one.
        assert!(f.radius_for(level_floor(8), 1, 30.0) < r8);
        // Beyond the maximum wind there is nothing.
        assert_eq!(f.radius_for(level_floor(16), 0, 30.0), 0.0);
        // Without circles only the maximum wind at the radius of maximum wind is known: a
        // depression too weak for level 6 covers nothing, and one with no wind given nothing.
        assert_eq!(
            fix(0.0, 0.0, 0.0, Some(10.0)).radius_for(10.8, 0, 30.0),
            0.0
        );
        assert_eq!(fix(0.0, 0.0, 0.0, None).radius_for(10.8, 0, 30.0), 0.0);
        let r = fix(0.0, 0.0, 0.0, Some(15.0)).radius_for(10.8, 0, 30.0);
        assert!(r > 30.0 && r <= 90.0, "{r}");
    }

    #[test]
    fn bearings_pick_the_right_quadrant() {
        assert_eq!(quadrant(bearing(25.0, 125.0, 26.0, 126.0)), 0);
        assert_eq!(quadrant(bearing(25.0, 125.0, 24.0, 126.0)), 1);
        assert_eq!(quadrant(bearing(25.0, 125.0, 24.0, 124.0)), 2);
        assert_eq!(quadrant(bearing(25.0, 125.0, 26.0, 124.0)), 3);
    }

    #[test]
    fn gusts_turn_into_the_mean_that_brings_them() {
        // Blue: level 6 mean (10.8 m/s) or level 8 gusts (17.2 / 1.4 = 12.3): level 6 decides.
        assert_eq!(tier_speed(6, 8, 1.4), 10.8);
        // With gusts 1.8 × the mean, level 8 gusts come with 9.6 m/s means.
        assert!((tier_speed(6, 8, 1.8) - 17.2 / 1.8).abs() < 1e-9);
    }
}
