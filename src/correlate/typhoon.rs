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
use crate::feeds::typhoon::{
    Forecast, Radii, RadiusSource, Track, TrackPoint, agency_code, level_floor,
};
use crate::feeds::wind_profile::Profile;
use crate::registry::Registry;
use crate::registry::geo::{EARTH_KM, chord_of_km, km_of_chord, unit_vector};
use crate::registry::spatial::Cell;

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
    /// Whether the circles were carried from an analysis rather than reported for this time
    /// (CMA's forecast points, [`crate::feeds::wind_profile::carry`]).
    pub derived: bool,
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
            derived: [&p.r7, &p.r10, &p.r12]
                .iter()
                .any(|r| r.is_some_and(|r| r.source == RadiusSource::Carried)),
        }
    }

    /// The fix at time `t` between two fixes. Position and maximum wind are interpolated
    /// linearly; a circle both fixes report is too. A circle only the earlier fix reports
    /// holds its size while the interpolated maximum wind still reaches the circle's level and
    /// ends when it no longer does (the storm's weakening), never fading over the interval
    /// into a shallow, far-reaching profile; a circle only the later fix reports starts when
    /// the wind reaches its level. Without maximum winds, the earlier circle holds to the
    /// later fix and a new one starts there.
    pub fn between(a: &Fix, b: &Fix, t: Timestamp) -> Fix {
        let span = b.time.duration_since(a.time).as_secs_f64();
        let f = if span > 0.0 {
            (t.duration_since(a.time).as_secs_f64() / span).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mix = |x: f64, y: f64| x + (y - x) * f;
        let vmax = match (a.vmax, b.vmax) {
            (Some(x), Some(y)) => Some(mix(x, y)),
            (x, y) => x.or(y),
        };
        let known = a.vmax.is_some() && b.vmax.is_some();
        let mut radii = [[0.0; 4]; 3];
        for (c, row) in radii.iter_mut().enumerate() {
            let floor = level_floor(CIRCLE_LEVELS[c]);
            let reaches = vmax.is_none_or(|v| v >= floor);
            for (q, r) in row.iter_mut().enumerate() {
                let (x, y) = (a.radii[c][q], b.radii[c][q]);
                *r = match (x > 0.0, y > 0.0) {
                    (true, true) => mix(x, y),
                    (false, false) => 0.0,
                    (true, false) if reaches && (known || f < 1.0) => x,
                    (false, true) if reaches && (known || f >= 1.0) => y,
                    _ => 0.0,
                };
            }
        }
        Fix {
            time: t,
            lat: mix(a.lat, b.lat),
            lon: mix(a.lon, b.lon),
            vmax,
            radii,
            derived: a.derived || b.derived,
        }
    }

    /// The reported circles of quadrant `q` (0 NE, 1 SE, 2 SW, 3 NW) as (speed m/s, radius
    /// km), outermost (slowest) first.
    fn circles(&self, q: usize) -> Vec<(f64, f64)> {
        CIRCLE_LEVELS
            .iter()
            .zip(&self.radii)
            .filter(|(_, r)| r[q] > 0.0)
            .map(|(l, r)| (level_floor(*l), r[q]))
            .collect()
    }

    /// Whether the radius of `speed` lies outward of every reported circle (so it comes from
    /// the wind profile, not from an agency), or the circles themselves were carried from an
    /// analysis to a forecast point.
    pub fn is_derived(&self, speed: f64) -> bool {
        self.derived
            || (0..4).any(|q| {
                self.circles(q)
                    .first()
                    .is_some_and(|&(v0, _)| speed < v0 - 1e-9)
            })
    }

    /// Radius (km) within which the mean wind reaches `speed` m/s in quadrant `q`
    /// (0 NE, 1 SE, 2 SW, 3 NW); 0 when it nowhere does.
    ///
    /// At a reported circle's speed, that circle. Between two reported circles, log-log
    /// interpolation between them (a power law `v ∝ r^-α`, as a modified Rankine vortex).
    /// Inward of the innermost, the same toward the maximum wind at `rmw_km`. Outward of the
    /// outermost reported circle, the Holland (1980) profile fitted to the circles
    /// ([`Profile`]), anchored at that circle and reaching at most `reach` times it; where no
    /// profile within the published bounds fits, the outermost reported circle itself.
    pub fn radius_for(&self, speed: f64, q: usize, rmw_km: f64, reach: f64) -> f64 {
        let mut pairs = self.circles(q);
        if self.vmax.is_some_and(|v| speed > v) {
            return 0.0;
        }
        let Some(&(v0, r0)) = pairs.first() else {
            // No circle at all (a depression): only the maximum wind at the radius of
            // maximum wind is known; a modified Rankine decay (α = 0.5) from there, within
            // three times that radius.
            return match self.vmax {
                Some(v) if v > 0.0 => (rmw_km * (v / speed).powi(2)).min(3.0 * rmw_km),
                _ => 0.0,
            };
        };
        if speed <= v0 {
            if speed >= v0 - 1e-9 {
                return r0;
            }
            return self
                .vmax
                .and_then(|v| Profile::fit(v, &pairs, rmw_km))
                .and_then(|p| p.beyond((v0, r0), speed, reach))
                .unwrap_or(r0);
        }
        if let Some(v) = self.vmax
            && pairs.iter().all(|(_, r)| *r > rmw_km)
            && pairs.iter().all(|(s, _)| *s < v)
        {
            pairs.push((v, rmw_km));
        }
        // Between known speeds: interpolate log-log. Between two circles the result stays
        // between them whatever the slope (so each circle is reproduced exactly); a slope
        // beyond them is kept within reason.
        let alpha = |a: (f64, f64), b: (f64, f64)| -> f64 {
            let a_ = (b.0 / a.0).ln() / (a.1 / b.1).ln();
            if a_.is_finite() {
                a_.clamp(0.3, 1.0)
            } else {
                0.5
            }
        };
        for w in pairs.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            if speed <= hi.0 {
                let f = (speed / lo.0).ln() / (hi.0 / lo.0).ln();
                if f.is_finite() && hi.1 > 0.0 && lo.1 > 0.0 {
                    return (lo.1.ln() + (hi.1 / lo.1).ln() * f.clamp(0.0, 1.0)).exp();
                }
                return hi.1;
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

#[cfg(test)]
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
    // The track's own agency's newest forecast (never another agency's points spliced onto
    // its analysis), or, when it has none, the newest there is.
    let own = |f: &&Forecast| track.agency.is_empty() || agency_code(&f.agency) == track.agency;
    let newest = track
        .forecasts
        .iter()
        .filter(own)
        .max_by_key(|f| f.issued)
        .or_else(|| track.forecasts.iter().max_by_key(|f| f.issued));
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

/// A village the forecast wind field reaches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exposed {
    /// Index in `Dataset::villages`.
    pub village: usize,
    /// The highest tier reached within that tier's window.
    pub tier: Tier,
    /// When that tier is first reached.
    pub at: Timestamp,
    /// Distance from the storm centre then, km.
    pub km: f64,
}

/// One sampled position, prepared for the sweep: its centre as a unit vector, the local east
/// and north directions (for the quadrant), and per tier (ascending) the squared chord radius
/// in each quadrant on the unit sphere, plain and widened by the hysteresis (0 = the tier
/// does not reach at this time).
struct Probe {
    time: Timestamp,
    centre: [f64; 3],
    east: [f64; 3],
    north: [f64; 3],
    plain: [[f64; 4]; 4],
    widened: [[f64; 4]; 4],
}

/// Per tier (at most the four there are), per quadrant, the squared unit chord of each radius.
fn squared_chords(km: &[[f64; 4]], widen: f64) -> [[f64; 4]; 4] {
    let mut out = [[0.0; 4]; 4];
    for (o, r) in out.iter_mut().zip(km) {
        *o = r.map(|r| {
            if r > 0.0 {
                (chord_of_km(r * widen) / EARTH_KM).powi(2)
            } else {
                0.0
            }
        });
    }
    out
}

/// The quadrant (0 NE, 1 SE, 2 SW, 3 NW) of a direction given by its east and north
/// components: what `quadrant(bearing(..))` gives, edges included, without the arctangent.
fn quadrant_of(east: f64, north: f64) -> usize {
    if east >= 0.0 && north > 0.0 || east == 0.0 && north == 0.0 {
        0
    } else if east > 0.0 && north <= 0.0 {
        1
    } else if east <= 0.0 && north < 0.0 {
        2
    } else {
        3
    }
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn chord2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    x * x + y * y + z * z
}

/// A lower bound of `sqrt(x)`, cheap: single precision, shaved by far more than its error.
/// Only ever used to decide how far it is safe to jump, never whether a village is hit.
fn sqrt_below(x: f64) -> f64 {
    f64::from((x as f32).sqrt()) * (1.0 - 1e-5)
}

/// A bound that may be zero (nothing moves): its inverse, or infinity.
fn inverse(x: f64) -> f64 {
    if x > 0.0 { 1.0 / x } else { f64::INFINITY }
}

/// The prepared sweep over one path (all distances as unit-sphere chords).
///
/// Per class of village (`w`: 0 holds no tier, 1 holds one, whose radii are widened), per
/// starting tier `lvl` (the lowest tier still worth finding) and per probe: the reach, the
/// largest radius of that tier or any above it, overall and per quadrant; and how fast that
/// reach can close in on a village from one probe to the next (centre movement plus radius
/// growth; a chord obeys the triangle inequality, so these bounds are exact).
struct Sweep {
    tiers: Vec<Tier>,
    probes: Vec<Probe>,
    /// `reach[w][lvl][f]` and its square.
    reach: [Vec<Vec<f64>>; 2],
    reach2: [Vec<Vec<f64>>; 2],
    /// `1 / closing speed`, per `w` and `lvl`.
    inv_closing: [Vec<f64>; 2],
    /// As `reach`, per quadrant.
    quad_reach: [Vec<Vec<[f64; 4]>>; 2],
    /// As `inv_closing`, per quadrant.
    inv_quad_closing: [Vec<[f64; 4]>; 2],
    /// As `inv_closing[1][0]` (widened radii, every tier), walking back in time.
    inv_closing_back: f64,
    /// `1 /` the most the local east and north unit vectors move from one probe to the next:
    /// how fast a village's east/north components (so its quadrant) can change.
    inv_turning: f64,
}

impl Sweep {
    fn new(rules: &Rules, path: &[Fix], now: Timestamp) -> Sweep {
        let t = &rules.typhoon;
        let widen = 1.0 + rules.lifecycle.hysteresis;
        let mut speeds: Vec<(Tier, SignedDuration, f64)> = t
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
        speeds.sort_by_key(|s| s.0);
        // One entry per tier (there are four): a repeated tier keeps its first criteria.
        speeds.dedup_by_key(|s| s.0);
        let longest = speeds.iter().map(|s| s.1).max().unwrap_or_default();
        let end = now.saturating_add(longest).unwrap_or(now);
        let step = SignedDuration::from_mins(i64::from(t.step_mins.max(1)));
        let probes: Vec<Probe> = sample(path, now, end, step)
            .into_iter()
            .map(|fix| {
                let ahead = fix.time.duration_since(now);
                let km: Vec<[f64; 4]> = speeds
                    .iter()
                    .map(|(_, window, speed)| {
                        let mut r = [0.0; 4];
                        if ahead <= *window {
                            for (q, x) in r.iter_mut().enumerate() {
                                *x = fix.radius_for(*speed, q, t.rmw_km, t.derived_reach);
                            }
                        }
                        r
                    })
                    .collect();
                let (p, l) = (fix.lat.to_radians(), fix.lon.to_radians());
                Probe {
                    time: fix.time,
                    centre: unit_vector(fix.lon, fix.lat),
                    east: [-l.sin(), l.cos(), 0.0],
                    north: [-p.sin() * l.cos(), -p.sin() * l.sin(), p.cos()],
                    plain: squared_chords(&km, 1.0),
                    widened: squared_chords(&km, widen),
                }
            })
            .collect();
        let n = speeds.len();
        let moved: Vec<f64> = probes
            .windows(2)
            .map(|p| chord2(&p[0].centre, &p[1].centre).sqrt())
            .collect();
        let quad_reach: [Vec<Vec<[f64; 4]>>; 2] = [false, true].map(|widened| {
            (0..n)
                .map(|lvl| {
                    probes
                        .iter()
                        .map(|p| {
                            let r = if widened { &p.widened } else { &p.plain };
                            let mut m = [0.0f64; 4];
                            for t in &r[lvl..n] {
                                for (m, x) in m.iter_mut().zip(t) {
                                    *m = m.max(x.sqrt());
                                }
                            }
                            m
                        })
                        .collect()
                })
                .collect()
        });
        let reach: [Vec<Vec<f64>>; 2] = [0, 1].map(|w| {
            quad_reach[w]
                .iter()
                .map(|per| {
                    per.iter()
                        .map(|q| q.iter().copied().fold(0.0, f64::max))
                        .collect()
                })
                .collect()
        });
        let reach2 = [0, 1].map(|w| {
            reach[w]
                .iter()
                .map(|r: &Vec<f64>| r.iter().map(|x| x * x).collect())
                .collect()
        });
        let inv_closing = [0, 1].map(|w| {
            reach[w]
                .iter()
                .map(|r| {
                    let c = moved
                        .iter()
                        .zip(r.windows(2))
                        .map(|(m, r)| m + (r[1] - r[0]).max(0.0))
                        .fold(0.0, f64::max);
                    inverse(c)
                })
                .collect()
        });
        let inv_quad_closing = [0, 1].map(|w| {
            quad_reach[w]
                .iter()
                .map(|r| {
                    let mut m = [0.0f64; 4];
                    for (moved, r) in moved.iter().zip(r.windows(2)) {
                        for q in 0..4 {
                            m[q] = m[q].max(moved + (r[1][q] - r[0][q]).max(0.0));
                        }
                    }
                    m.map(inverse)
                })
                .collect()
        });
        let inv_closing_back = inverse(
            moved
                .iter()
                .zip(reach[1][0].windows(2))
                .map(|(m, r)| m + (r[0] - r[1]).max(0.0))
                .fold(0.0, f64::max),
        );
        let turning = probes
            .windows(2)
            .map(|p| {
                chord2(&p[0].east, &p[1].east)
                    .max(chord2(&p[0].north, &p[1].north))
                    .sqrt()
            })
            .fold(0.0, f64::max);
        Sweep {
            tiers: speeds.iter().map(|s| s.0).collect(),
            probes,
            reach,
            reach2,
            inv_closing,
            quad_reach,
            inv_quad_closing,
            inv_closing_back,
            inv_turning: inverse(turning),
        }
    }

    /// The probes between which anything in a ball (a [`Cell`] of villages) may be within
    /// reach of any tier, for any village, held or not: the first and one past the last;
    /// `None` if nothing ever is.
    fn span_for(&self, cell: &Cell) -> Option<(usize, usize)> {
        let gap = |f: usize| {
            let c = chord2(&cell.centre, &self.probes[f].centre).sqrt();
            c - cell.radius - self.reach[1][0][f]
        };
        let step = |gap: f64, inv: f64| {
            let jump = gap * (1.0 - 1e-9) * inv;
            if jump > 1.0 { jump as usize } else { 1 }
        };
        let mut first = 0;
        loop {
            let g = gap(first);
            if g <= 0.0 {
                break;
            }
            first = first.saturating_add(step(g, self.inv_closing[1][0]));
            if first >= self.probes.len() {
                return None;
            }
        }
        let mut last = self.probes.len() - 1;
        loop {
            let g = gap(last);
            if g <= 0.0 {
                break;
            }
            last = last.saturating_sub(step(g, self.inv_closing_back));
            if last <= first {
                last = first;
                break;
            }
        }
        Some((first, last + 1))
    }

    /// One village: walk the probes in time order looking only for tiers above the best so
    /// far, jumping every probe that provably cannot bring one: while the village is outside
    /// the reach of every such tier, as many as the reach cannot close in; after a miss
    /// inside it, as many as neither its quadrant can change nor that quadrant's radii close
    /// in. The jumps are computed from a lower bound of the distance, so they are safe; the
    /// hits are decided on the exact squared chord.
    fn village(
        &self,
        index: usize,
        u: &[f64; 3],
        held: Option<usize>,
        (from, to): (usize, usize),
    ) -> Option<Exposed> {
        let n = self.tiers.len();
        let w = usize::from(held.is_some());
        let mut best: Option<(usize, usize, f64)> = None;
        let mut f = from;
        while f < to {
            let lvl = best.map_or(0, |b| b.0 + 1);
            if lvl >= n {
                break;
            }
            let p = &self.probes[f];
            let c2 = chord2(u, &p.centre);
            if c2 > self.reach2[w][lvl][f] {
                let gap = sqrt_below(c2) - self.reach[w][lvl][f];
                let jump = gap * self.inv_closing[w][lvl];
                // Truncation is the floor here, and saturates (an infinite jump ends the walk).
                f = f.saturating_add(if jump > 1.0 { jump as usize } else { 1 });
                continue;
            }
            // Within reach of some tier still to find: which quadrant, then each such tier.
            let (east, north) = (dot(u, &p.east), dot(u, &p.north));
            let q = quadrant_of(east, north);
            let hit = (lvl..n).rev().find(|&k| {
                let r = if held.is_some_and(|h| h >= k) {
                    p.widened[k][q]
                } else {
                    p.plain[k][q]
                };
                r > 0.0 && c2 <= r
            });
            if let Some(k) = hit {
                best = Some((k, f, c2.sqrt()));
                f += 1;
                continue;
            }
            let gap = sqrt_below(c2) - self.quad_reach[w][lvl][f][q];
            let by_gap = gap * self.inv_quad_closing[w][lvl][q];
            let by_turn = east.abs().min(north.abs()) * (1.0 - 1e-9) * self.inv_turning;
            let jump = by_gap.min(by_turn);
            f = f.saturating_add(if jump > 1.0 { jump as usize } else { 1 });
        }
        best.map(|(k, f, c)| Exposed {
            village: index,
            tier: self.tiers[k],
            at: self.probes[f].time,
            km: km_of_chord(c * EARTH_KM),
        })
    }
}

/// Every village the wind field along `path` reaches from `now`: its highest tier within
/// that tier's window and when it is first reached, in village order. A village that holds a
/// tier (`held`, by village code) keeps it out to the radius widened by the hysteresis.
///
/// The sweep is per village rather than per position: one pass over the registry's unit
/// vectors, skipping ahead along the track while a village is far out, split over the cores.
/// Exact (no approximation beyond floating point): see `tests::sweep_matches_brute_force`.
pub fn exposure(
    reg: &Registry,
    rules: &Rules,
    path: &[Fix],
    now: Timestamp,
    held: Option<&HashMap<String, Tier>>,
) -> Vec<Exposed> {
    let threads = if reg.data.villages.len() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    exposure_on(reg, rules, path, now, held, threads)
}

/// [`exposure`] on a given number of threads.
fn exposure_on(
    reg: &Registry,
    rules: &Rules,
    path: &[Fix],
    now: Timestamp,
    held: Option<&HashMap<String, Tier>>,
    threads: usize,
) -> Vec<Exposed> {
    let sweep = Sweep::new(rules, path, now);
    if sweep.probes.is_empty() || sweep.tiers.is_empty() {
        return Vec::new();
    }
    let mut held_at: HashMap<usize, usize> = HashMap::new();
    for (code, tier) in held.into_iter().flatten() {
        if let (Some(i), Some(k)) = (
            reg.village_index(code),
            sweep.tiers.iter().rposition(|t| t <= tier),
        ) {
            held_at.insert(i, k);
        }
    }
    let units = reg.index.village_units();
    let order = reg.index.villages_by_cell();
    let run = |cells: &[Cell]| -> Vec<Exposed> {
        let mut out = Vec::new();
        for cell in cells {
            let Some(span) = sweep.span_for(cell) else {
                continue;
            };
            let members = cell.members.clone();
            for (&index, u) in order[members.clone()].iter().zip(&units[members]) {
                let held = if held_at.is_empty() {
                    None
                } else {
                    held_at.get(&index).copied()
                };
                out.extend(sweep.village(index, u, held, span));
            }
        }
        out
    };
    let cells = reg.index.village_cells();
    let mut out = if threads < 2 {
        run(cells)
    } else {
        // Interleave the cells over the threads: neighbouring cells cost alike.
        let parts: Vec<Vec<Cell>> = (0..threads)
            .map(|k| cells.iter().skip(k).step_by(threads).cloned().collect())
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter()
                .map(|part| {
                    let run = &run;
                    s.spawn(move || run(part))
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                match h.join() {
                    Ok(mut v) => out.append(&mut v),
                    // A panic in pure arithmetic is a bug; surface it where it happened.
                    Err(e) => std::panic::resume_unwind(e),
                }
            }
            out
        })
    };
    out.sort_unstable_by_key(|e| e.village);
    out
}

/// Registries smaller than this are swept on one thread (a county's few hundred villages
/// take microseconds; threads would cost more).
const PARALLEL_FROM: usize = 20_000;

impl Rule for TyphoonRule {
    fn hazard(&self) -> Hazard {
        Hazard::Typhoon
    }

    fn observe(&mut self, obs: &Observation, inbox: i64, _reg: &Registry) -> bool {
        match obs {
            Observation::Track(t) => {
                // A bulletin arriving late never replaces a newer one; a correction (CCA)
                // replaces the bulletin it corrects, never the other way round.
                let newest = |t: &Track| t.points.iter().map(|p| p.time).max();
                let key = format!("{}|{}", t.agency, t.storm);
                if let Some((old, _)) = self.tracks.get(&key)
                    && (newest(t), t.correction) < (newest(old), old.correction)
                {
                    return false;
                }
                self.tracks.insert(key, (t.clone(), inbox));
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
        // Per village: tier, when, km, storm, inbox row, derived, agency.
        type Best = (Tier, Timestamp, f64, String, i64, bool, String);
        let mut best: HashMap<usize, Best> = HashMap::new();
        let held = ctx.held.get(&Hazard::Typhoon);
        let t = &ctx.rules.typhoon;
        for (track, inbox) in chosen(self.tracks.values(), &t.agencies) {
            let p = path(track, now);
            // Whether a tier's circle comes from the wind profile (or circles carried to a
            // forecast point) rather than from what the agency reported: said in the text.
            let derived = |tier: Tier| {
                t.tiers.iter().filter(|x| x.tier == tier).any(|x| {
                    let speed = tier_speed(x.mean_level, x.gust_level, t.gust_factor);
                    p.iter().any(|f| f.is_derived(speed))
                })
            };
            for Exposed {
                village: vi,
                tier,
                at,
                km: d,
            } in exposure(ctx.reg, ctx.rules, &p, now, held)
            {
                let name = format!("{} {}", track.storm, track.name).trim().to_string();
                let e = best.entry(vi).or_insert((
                    tier,
                    at,
                    d,
                    name.clone(),
                    *inbox,
                    derived(tier),
                    track.agency.clone(),
                ));
                if tier > e.0 {
                    *e = (
                        tier,
                        at,
                        d,
                        name,
                        *inbox,
                        derived(tier),
                        track.agency.clone(),
                    );
                }
            }
        }
        let mut onset: HashMap<String, Timestamp> = HashMap::new();
        let mut cause = None;
        let places: Vec<(String, String, Place)> = best
            .into_iter()
            .map(|(vi, (tier, at, d, storm, inbox, derived, agency))| {
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
                        why: super::why::said(
                            "typhoon_wind",
                            serde_json::json!({
                                "storm": storm, "tier": tier.as_str(), "place": v.name,
                                "when": when.to_string(), "km": d, "derived": derived,
                                "agency": agency,
                            }),
                        ),
                    },
                )
            })
            .collect();
        let mut out = by_area(
            Hazard::Typhoon,
            places,
            |ps| {
                super::why::said(
                    "typhoon_area",
                    serde_json::json!({
                        "count": ps.len(),
                        "tier": ps.first().map_or("", |p| p.tier.as_str()),
                        "derived": ps.iter().any(|p| {
                            super::why::read(&p.why).get("derived") == Some(&serde_json::Value::Bool(true))
                        }),
                        "agency": ps.first().and_then(|p| {
                            super::why::read(&p.why).get("agency").cloned()
                        }),
                    }),
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

/// One track per storm: the most preferred agency's (`preference`, in order; agencies not
/// listed after those listed), unless its newest analysis is more than 12 h older than
/// another agency's, in which case the freshest. Agencies are never mixed within a track:
/// each fix is one agency's. Storms are the same when their international names are (JTWC
/// numbers them differently: 14W is CMA's 2615), or else their numbers.
fn chosen<'a>(
    tracks: impl Iterator<Item = &'a (Track, i64)>,
    preference: &[String],
) -> Vec<&'a (Track, i64)> {
    let rank = |a: &str| {
        preference
            .iter()
            .position(|p| p == a)
            .unwrap_or(preference.len())
    };
    let newest = |t: &Track| t.points.iter().map(|p| p.time).max();
    let mut by: std::collections::BTreeMap<String, Vec<&'a (Track, i64)>> = Default::default();
    for e in tracks {
        let id = if e.0.name_en.trim().is_empty() {
            e.0.storm.clone()
        } else {
            e.0.name_en.trim().to_ascii_uppercase()
        };
        by.entry(id).or_default().push(e);
    }
    by.into_values()
        .filter_map(|mut group| {
            let freshest = group.iter().filter_map(|e| newest(&e.0)).max();
            group.sort_by_key(|e| (rank(&e.0.agency), std::cmp::Reverse(newest(&e.0))));
            let recent = |e: &&&(Track, i64)| match (newest(&e.0), freshest) {
                (Some(n), Some(f)) => f.duration_since(n) <= SignedDuration::from_hours(12),
                _ => true,
            };
            group.iter().find(recent).or(group.first()).copied()
        })
        .collect()
}

/// A town's name from the registry's units, or its code.
pub fn town_name(reg: &Registry, code: &str) -> String {
    reg.unit(code)
        .map_or_else(|| code.to_string(), |u| u.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::geo::bearing;

    fn fix(r7: f64, r10: f64, r12: f64, vmax: Option<f64>) -> Fix {
        Fix {
            time: Timestamp::UNIX_EPOCH,
            lat: 25.0,
            lon: 125.0,
            vmax,
            radii: [[r7, r7 / 2.0, r7 / 2.0, r7 / 2.0], [r10; 4], [r12; 4]],
            derived: false,
        }
    }

    #[test]
    fn radii_are_read_back_at_the_circles_and_grow_for_weaker_winds() {
        let f = fix(300.0, 120.0, 60.0, Some(50.0));
        assert!((f.radius_for(level_floor(7), 0, 30.0, 1.25) - 300.0).abs() < 1e-9);
        assert!((f.radius_for(level_floor(10), 0, 30.0, 1.25) - 120.0).abs() < 1e-9);
        assert!((f.radius_for(level_floor(12), 0, 30.0, 1.25) - 60.0).abs() < 1e-9);
        let r6 = f.radius_for(level_floor(6), 0, 30.0, 1.25);
        let r8 = f.radius_for(level_floor(8), 0, 30.0, 1.25);
        assert!(r6 > 300.0 && r6 <= 375.0, "{r6}");
        assert!(r8 < 300.0 && r8 > 120.0, "{r8}");
        // The quadrant matters: the SE circle is half the NE one.
        assert!(f.radius_for(level_floor(8), 1, 30.0, 1.25) < r8);
        // Beyond the maximum wind there is nothing.
        assert_eq!(f.radius_for(level_floor(16), 0, 30.0, 1.25), 0.0);
        // Without circles only the maximum wind at the radius of maximum wind is known: a
        // depression too weak for level 6 covers nothing, and one with no wind given nothing.
        assert_eq!(
            fix(0.0, 0.0, 0.0, Some(10.0)).radius_for(10.8, 0, 30.0, 1.25),
            0.0
        );
        assert_eq!(
            fix(0.0, 0.0, 0.0, None).radius_for(10.8, 0, 30.0, 1.25),
            0.0
        );
        let r = fix(0.0, 0.0, 0.0, Some(15.0)).radius_for(10.8, 0, 30.0, 1.25);
        assert!(r > 30.0 && r <= 90.0, "{r}");
    }

    #[test]
    fn a_circle_the_next_fix_lacks_ends_with_the_wind_not_by_fading() {
        let mut a = fix(300.0, 120.0, 0.0, Some(30.0));
        a.time = Timestamp::UNIX_EPOCH;
        let mut b = fix(250.0, 0.0, 0.0, Some(20.0));
        b.time = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(12);
        let at = |h: i64| {
            Fix::between(
                &a,
                &b,
                Timestamp::UNIX_EPOCH + SignedDuration::from_hours(h),
            )
        };
        // The 7-level circle both report: interpolated.
        assert!((at(6).radii[0][0] - 275.0).abs() < 1e-9);
        // The 10-level circle only the first reports holds while the maximum wind (30 → 20
        // m/s) still reaches 24.5 m/s (until 6.6 h), then ends.
        assert_eq!(at(3).radii[1][0], 120.0);
        assert_eq!(at(6).radii[1][0], 120.0);
        assert_eq!(at(7).radii[1][0], 0.0);
        // And the 7-level outer edge is never stretched by a faded inner circle: the derived
        // level-6 radius stays within reach of the reported 7-level circle.
        for h in 0..=12 {
            let f = at(h);
            let r6 = f.radius_for(level_floor(6), 0, 30.0, 1.25);
            assert!(r6 <= 1.25 * f.radii[0][0] + 1e-9, "{h} h: {r6}");
        }
    }

    #[test]
    fn bearings_pick_the_right_quadrant() {
        assert_eq!(quadrant(bearing(25.0, 125.0, 26.0, 126.0)), 0);
        assert_eq!(quadrant(bearing(25.0, 125.0, 24.0, 126.0)), 1);
        assert_eq!(quadrant(bearing(25.0, 125.0, 24.0, 124.0)), 2);
        assert_eq!(quadrant(bearing(25.0, 125.0, 26.0, 124.0)), 3);
    }

    /// The obvious algorithm: every sampled position against every village, great-circle
    /// distance and bearing by trigonometry. The sweep must give exactly its answer.
    fn brute_force(
        reg: &Registry,
        rules: &Rules,
        path: &[Fix],
        now: Timestamp,
        held: &HashMap<String, Tier>,
    ) -> Vec<Exposed> {
        let t = &rules.typhoon;
        let h = rules.lifecycle.hysteresis;
        let longest = t.tiers.iter().map(|x| x.hours).max().unwrap_or(0);
        let end = now + SignedDuration::from_hours(i64::from(longest));
        let step = SignedDuration::from_mins(i64::from(t.step_mins));
        let mut out: Vec<Option<Exposed>> = vec![None; reg.data.villages.len()];
        for fix in sample(path, now, end, step) {
            let ahead = fix.time.duration_since(now);
            for (vi, v) in reg.data.villages.iter().enumerate() {
                let d =
                    crate::registry::geo::km_between(v.point.lon, v.point.lat, fix.lon, fix.lat);
                let q = quadrant(bearing(fix.lat, fix.lon, v.point.lat, v.point.lon));
                let holds = held.get(&v.code).copied();
                let best = t
                    .tiers
                    .iter()
                    .filter(|x| ahead <= SignedDuration::from_hours(i64::from(x.hours)))
                    .filter(|x| {
                        let speed = tier_speed(x.mean_level, x.gust_level, t.gust_factor);
                        let r = fix.radius_for(speed, q, t.rmw_km, t.derived_reach);
                        let keep = holds.is_some_and(|ht| ht >= x.tier);
                        r > 0.0 && d <= r * if keep { 1.0 + h } else { 1.0 }
                    })
                    .map(|x| x.tier)
                    .max();
                if let Some(tier) = best
                    && out[vi].is_none_or(|e| tier > e.tier)
                {
                    out[vi] = Some(Exposed {
                        village: vi,
                        tier,
                        at: fix.time,
                        km: d,
                    });
                }
            }
        }
        out.into_iter().flatten().collect()
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn same(fast: &[Exposed], slow: &[Exposed], seed: u64) {
        assert_eq!(fast.len(), slow.len(), "seed {seed:x}");
        for (a, b) in fast.iter().zip(slow) {
            assert_eq!(
                (a.village, a.tier, a.at),
                (b.village, b.tier, b.at),
                "seed {seed:x}"
            );
            assert!((a.km - b.km).abs() < 1e-6, "{} vs {}", a.km, b.km);
        }
    }

    #[test]
    fn sweep_matches_brute_force() {
        let now: Timestamp = "2019-08-08T00:00:00Z".parse().unwrap();
        let mut rules = Rules::national();
        for (k, tier) in rules.typhoon.tiers.iter_mut().enumerate() {
            // Windows that end at different times, so tiers drop out along the track.
            tier.hours = 18 + 14 * k as u32;
        }
        rules.typhoon.step_mins = 30;
        let tracks: Vec<Vec<Fix>> = vec![
            // Moving north-west, weakening.
            (0..=12)
                .map(|k| Fix {
                    time: now + SignedDuration::from_hours(6 * k - 6),
                    lat: 22.0 + 0.6 * k as f64,
                    lon: 124.0 - 0.45 * k as f64,
                    derived: false,
                    vmax: Some(52.0 - 1.5 * k as f64),
                    radii: [
                        [350.0, 300.0, 250.0, 280.0],
                        [150.0, 120.0, 90.0, 110.0],
                        [80.0, 60.0, 40.0, 50.0],
                    ],
                })
                .collect(),
            // Stationary (nothing closes in: villages out of reach stay out).
            (0..=4)
                .map(|k| Fix {
                    time: now + SignedDuration::from_hours(6 * k),
                    lat: 25.0,
                    lon: 121.0,
                    derived: false,
                    vmax: Some(40.0),
                    radii: [[300.0; 4], [100.0; 4], [0.0, 0.0, 40.0, 0.0]],
                })
                .collect(),
            // A jump between forecasts and a growing storm.
            vec![
                Fix {
                    time: now,
                    lat: 20.0,
                    lon: 126.0,
                    derived: false,
                    vmax: Some(30.0),
                    radii: [[200.0; 4], [0.0; 4], [0.0; 4]],
                },
                Fix {
                    time: now + SignedDuration::from_hours(12),
                    lat: 24.5,
                    lon: 120.5,
                    derived: false,
                    vmax: Some(58.0),
                    radii: [[450.0, 400.0, 380.0, 420.0], [180.0; 4], [90.0; 4]],
                },
                Fix {
                    time: now + SignedDuration::from_hours(48),
                    lat: 28.0,
                    lon: 119.0,
                    derived: false,
                    vmax: Some(25.0),
                    radii: [[250.0; 4], [0.0; 4], [0.0; 4]],
                },
            ],
        ];
        for (seed, track) in [0x1234_5678_u64, 0x0bad_cafe, 0x5eed_f00d]
            .into_iter()
            .zip(&tracks)
        {
            let mut rng = Rng(seed);
            let villages: Vec<crate::registry::Village> = (0..4000)
                .map(|i| crate::registry::Village {
                    code: format!("{:012}", 330000000000u64 + i),
                    name: format!("村{i}"),
                    town: format!("{:09}", 330000000u64 + i / 20),
                    point: crate::cap::model::Point {
                        lon: 112.0 + 16.0 * rng.next(),
                        lat: 17.0 + 16.0 * rng.next(),
                    },
                    households: 100,
                    population: 300,
                    evacuate: 10,
                    polygon: None,
                })
                .collect();
            let held: HashMap<String, Tier> = villages
                .iter()
                .filter_map(|v| {
                    let (pick, tier) = (rng.next(), rng.next());
                    (pick < 0.3).then(|| (v.code.clone(), Tier::ALL[(tier * 4.0) as usize % 4]))
                })
                .collect();
            let reg = Registry::new(crate::registry::Dataset {
                villages,
                ..Default::default()
            });
            let fast = exposure(&reg, &rules, track, now, Some(&held));
            let slow = brute_force(&reg, &rules, track, now, &held);
            assert!(
                slow.len() > 200 && slow.len() < 3800,
                "the track must expose some villages and spare others: {}",
                slow.len()
            );
            assert!(slow.iter().any(|e| e.tier == Tier::Red));
            same(&fast, &slow, seed);
            // Hysteresis matters: without the held tiers, fewer villages keep theirs.
            let bare = exposure(&reg, &rules, track, now, None);
            same(
                &bare,
                &brute_force(&reg, &rules, track, now, &HashMap::new()),
                seed,
            );
            assert!(bare.len() < fast.len(), "{} vs {}", bare.len(), fast.len());
            // Split over threads, the answer is the same.
            assert_eq!(exposure_on(&reg, &rules, track, now, Some(&held), 3), fast);
        }
    }

    #[test]
    fn gusts_turn_into_the_mean_that_brings_them() {
        // Blue: level 6 mean (10.8 m/s) or level 8 gusts (17.2 / 1.4 = 12.3): level 6 decides.
        assert_eq!(tier_speed(6, 8, 1.4), 10.8);
        // With gusts 1.8 × the mean, level 8 gusts come with 9.6 m/s means.
        assert!((tier_speed(6, 8, 1.8) - 17.2 / 1.8).abs() < 1e-9);
    }
}
