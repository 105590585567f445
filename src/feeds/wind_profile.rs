//! The wind profile of a tropical cyclone: how the mean wind falls off with distance from the
//! centre, fitted to the circles an agency reports, so that stormbell can say where a wind no
//! agency drew a circle for will blow — and, as importantly, where it will not.
//!
//! **The model.** Holland (1980), "An analytic model of the wind and pressure profiles in
//! hurricanes", *Mon. Wea. Rev.* 108, 1212–1218, in its usual normalised form (Holland 2008,
//! eq. 1 without the Coriolis term, which is small inside 1,000 km at typhoon latitudes):
//!
//! ```text
//! V(r) = Vmax · [ (Rmax/r)^B · exp(1 − (Rmax/r)^B) ]^½        (r ≥ Rmax)
//! ```
//!
//! with the radius of maximum wind `Rmax` and the shape parameter `B`. Holland gives
//! 1 ≤ B ≤ 2.5 for observed storms; outside `Rmax` the profile decays as `r^(−B/2)`, i.e. as a
//! modified Rankine vortex with exponent 0.5–1.25, the range reported for the outer winds
//! (Mallen, Montgomery and Wang 2005 found 0.3–0.6 in the outer core; the lower values are
//! why the outer circles must be *bounded*, below). `Rmax` is kept within 5–200 km
//! (Willoughby and Rahn 2004 report 8–130 km for Atlantic hurricanes; large weakening western
//! Pacific storms reach more).
//!
//! **The fit.** Per quadrant, from the maximum wind and the reported circles (the 7-, 10- and
//! 12-level radii of Chinese agencies, or the 30/34, 50 and 64 kt radii of JMA and JTWC):
//! for each circle `(v, r)`, `x = (Rmax/r)^B` solves `x·e^(1−x) = (v/Vmax)²` whatever `B` is, so
//! `ln Rmax = ln r + ln x / B` and `1/B` follows by least squares (or, with a single circle,
//! from the assumed `Rmax` of the rules). The fit is accepted only when `B` and `Rmax` are
//! within the bounds above and every reported circle is reproduced within [`FIT_TOLERANCE`];
//! otherwise there is no profile, and callers use the reported circles only.
//!
//! **How it is used.** Radii outward of the outermost reported circle are that circle times
//! the profile's ratio (so the profile passes through what the agency reported), and never more
//! than the rules' `derived_reach` times it. CMA's bulletins give radii at the analysis only;
//! [`carry`] keeps each quadrant's `Rmax`, `B` and that anchoring for the forecast points and
//! reads the circles at the forecast's maximum wind: a storm of the same size that weakens has
//! smaller circles, and a circle ends where the forecast wind no longer reaches its level.

/// The radius of maximum wind assumed when a quadrant has a single circle and nothing else
/// settles the profile's shape (the national rules' default `rmw_km`).
pub const RMAX_PRIOR_KM: f64 = 30.0;
/// Holland's range for the shape parameter `B`.
pub const B_RANGE: (f64, f64) = (1.0, 2.5);
/// The range accepted for the radius of maximum wind, km.
pub const RMAX_RANGE_KM: (f64, f64) = (5.0, 200.0);
/// How far (as a fraction) a fitted profile may miss a reported circle and still be used:
/// agencies round radii to 10–50 km and draw each circle to its farthest extent in the
/// quadrant, so a smooth profile follows them only roughly.
pub const FIT_TOLERANCE: f64 = 0.30;

/// A fitted profile for one quadrant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Maximum sustained wind, m/s.
    pub vmax: f64,
    /// Radius of maximum wind, km.
    pub rmax_km: f64,
    /// Holland's shape parameter.
    pub b: f64,
}

/// `x` in (0, 1] with `x·e^(1−x) = y`, for `y` in (0, 1]: where, as `(Rmax/r)^B`, the
/// profile's wind is `Vmax·√y`.
fn x_of(y: f64) -> f64 {
    if y >= 1.0 {
        return 1.0;
    }
    // In t = ln x the equation is t + 1 − e^t = ln y, increasing in t on (−∞, 0].
    let target = y.ln();
    let (mut lo, mut hi) = (target - 1.0, 0.0f64);
    // At lo: lo + 1 − e^lo < target since e^lo > 0 … so the root lies in [lo, 0].
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if mid + 1.0 - mid.exp() < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

impl Profile {
    /// The mean wind (m/s) at `r_km` from the centre.
    pub fn speed_at(&self, r_km: f64) -> f64 {
        if r_km <= self.rmax_km {
            return self.vmax;
        }
        let x = (self.rmax_km / r_km).powf(self.b);
        self.vmax * (x * (1.0 - x).exp()).sqrt()
    }

    /// The radius (km, outside `Rmax`) at which the mean wind falls to `speed`; `None` when the
    /// storm's maximum wind does not reach it.
    pub fn radius_of(&self, speed: f64) -> Option<f64> {
        if speed.is_nan() || speed <= 0.0 || speed > self.vmax {
            return None;
        }
        let x = x_of((speed / self.vmax).powi(2));
        Some(self.rmax_km * x.powf(-1.0 / self.b))
    }

    /// Fit to the reported circles `(speed m/s, radius km)` of one quadrant, given the maximum
    /// wind; `rmax_prior_km` settles `B` when only one circle is known. `None` when no profile
    /// within the published bounds follows the circles.
    pub fn fit(vmax: f64, circles: &[(f64, f64)], rmax_prior_km: f64) -> Option<Profile> {
        let pts: Vec<(f64, f64)> = circles
            .iter()
            .filter(|(v, r)| *v > 0.0 && *v < vmax && *r > 0.0)
            .map(|(v, r)| (r.ln(), x_of((v / vmax).powi(2)).ln()))
            .collect();
        if !(vmax.is_finite() && vmax > 0.0) || pts.is_empty() || pts.len() < circles.len() {
            return None;
        }
        let (u_lo, u_hi) = (1.0 / B_RANGE.1, 1.0 / B_RANGE.0);
        let n = pts.len() as f64;
        let u = if pts.len() == 1 {
            let (a, c) = pts[0];
            (rmax_prior_km.max(1.0).ln() - a) / c
        } else {
            let ma = pts.iter().map(|p| p.0).sum::<f64>() / n;
            let mc = pts.iter().map(|p| p.1).sum::<f64>() / n;
            let cov: f64 = pts.iter().map(|(a, c)| (a - ma) * (c - mc)).sum();
            let var: f64 = pts.iter().map(|(_, c)| (c - mc).powi(2)).sum();
            if var <= 1e-12 {
                return None;
            }
            -cov / var
        };
        if !u.is_finite() {
            return None;
        }
        let u = u.clamp(u_lo, u_hi);
        let ln_rmax = pts.iter().map(|(a, c)| a + c * u).sum::<f64>() / n;
        let rmax_km = ln_rmax.exp();
        if !(RMAX_RANGE_KM.0..=RMAX_RANGE_KM.1).contains(&rmax_km) {
            return None;
        }
        let worst = pts
            .iter()
            .map(|(a, c)| ((ln_rmax - c * u) - a).abs())
            .fold(0.0, f64::max);
        (worst <= (1.0 + FIT_TOLERANCE).ln()).then_some(Profile {
            vmax,
            rmax_km,
            b: 1.0 / u,
        })
    }

    /// The radius of `speed` outward of the circle `(v0, r0)` the profile was anchored to:
    /// `r0` times the profile's own ratio, at most `reach · r0`.
    pub fn beyond(&self, (v0, r0): (f64, f64), speed: f64, reach: f64) -> Option<f64> {
        let ratio = self.radius_of(speed)? / self.radius_of(v0)?;
        Some(r0 * ratio.clamp(1.0, reach.max(1.0)))
    }
}

/// Carry one quadrant's circles from the analysis to a forecast point with maximum wind
/// `vmax_then`: the analysis profile (same `Rmax` and `B`, so the same size) at the new
/// maximum wind, anchored so that it reproduces the analysis circles exactly when the wind is
/// unchanged. Without a profile, a circle is carried unchanged while the forecast wind still
/// reaches its speed. Returns the radius per entry of `speeds` (0 where the wind does not
/// reach it).
pub fn carry(
    vmax_now: Option<f64>,
    circles: &[(f64, f64)],
    vmax_then: Option<f64>,
    speeds: &[f64],
    rmax_prior_km: f64,
) -> Vec<f64> {
    let reported: Vec<(f64, f64)> = circles.iter().copied().filter(|c| c.1 > 0.0).collect();
    let Some(then) = vmax_then else {
        // No forecast wind: nothing says the circles change.
        return speeds
            .iter()
            .map(|s| {
                reported
                    .iter()
                    .find(|(v, _)| (v - s).abs() < 1e-9)
                    .map_or(0.0, |c| c.1)
            })
            .collect();
    };
    let fitted = vmax_now.and_then(|v| Profile::fit(v, &reported, rmax_prior_km));
    speeds
        .iter()
        .map(|&s| {
            let own = reported.iter().find(|(v, _)| (v - s).abs() < 1e-9);
            if s >= then {
                return 0.0;
            }
            match (fitted, own) {
                (Some(p), Some(&(_, r))) => {
                    let later = Profile { vmax: then, ..p };
                    match (later.radius_of(s), p.radius_of(s)) {
                        (Some(a), Some(b)) if b > 0.0 => r * a / b,
                        _ => 0.0,
                    }
                }
                (None, Some(&(_, r))) => r,
                // A circle the analysis did not have is not invented for the forecast.
                _ => 0.0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_inverts_itself() {
        let p = Profile {
            vmax: 40.0,
            rmax_km: 30.0,
            b: 1.4,
        };
        for v in [13.9, 17.2, 24.5, 32.7, 39.0] {
            let r = p.radius_of(v).unwrap();
            assert!((p.speed_at(r) - v).abs() < 1e-6, "{v} at {r}");
        }
        assert_eq!(p.radius_of(41.0), None);
        // Decays outward.
        assert!(p.radius_of(13.9).unwrap() > p.radius_of(24.5).unwrap());
    }

    #[test]
    fn a_fit_recovers_the_profile_it_was_drawn_from() {
        let truth = Profile {
            vmax: 45.0,
            rmax_km: 25.0,
            b: 1.6,
        };
        let circles: Vec<(f64, f64)> = [13.9, 24.5, 32.7]
            .iter()
            .map(|&v| (v, truth.radius_of(v).unwrap()))
            .collect();
        let fit = Profile::fit(45.0, &circles, 30.0).unwrap();
        assert!((fit.b - 1.6).abs() < 1e-6 && (fit.rmax_km - 25.0).abs() < 1e-6);
    }

    #[test]
    fn no_fit_outside_the_published_bounds() {
        // A 22.6 m/s storm whose 13.9 m/s circle is 694 km: Rmax would have to be > 100 km
        // with B = 1 and that fits, but a 13.9 m/s circle at 2,000 km does not.
        assert!(Profile::fit(22.6, &[(13.9, 694.0)], 30.0).is_some());
        assert!(Profile::fit(22.6, &[(13.9, 2000.0)], 30.0).is_none());
        // Circles that no single profile follows.
        assert!(Profile::fit(40.0, &[(13.9, 100.0), (24.5, 300.0)], 30.0).is_none());
        // A circle for a wind stronger than the maximum.
        assert!(Profile::fit(20.0, &[(24.5, 100.0)], 30.0).is_none());
    }

    #[test]
    fn derived_circles_stay_within_reach() {
        let p = Profile::fit(22.6, &[(13.9, 694.0)], 30.0).unwrap();
        let r = p.beyond((13.9, 694.0), 10.8, 1.25).unwrap();
        assert!(r > 694.0 && r <= 694.0 * 1.25 + 1e-9, "{r}");
    }

    #[test]
    fn carried_circles_shrink_as_the_storm_weakens_and_end_below_their_level() {
        let circles = [(13.9, 400.0), (24.5, 80.0), (32.7, 50.0)];
        let speeds = [13.9, 24.5, 32.7];
        let same = carry(Some(38.0), &circles, Some(38.0), &speeds, 30.0);
        // Same wind: the analysis circles back (whether or not a profile fitted).
        for (a, b) in same.iter().zip(circles.iter()) {
            assert!((a - b.1).abs() < 1e-6, "{same:?}");
        }
        let weaker = carry(Some(38.0), &circles, Some(28.0), &speeds, 30.0);
        assert!(weaker[0] > 0.0 && weaker[0] <= 400.0, "{weaker:?}");
        assert!(weaker[1] > 0.0 && weaker[1] <= 80.0, "{weaker:?}");
        assert_eq!(weaker[2], 0.0, "28 m/s does not reach level 12");
        let td = carry(Some(38.0), &circles, Some(13.0), &speeds, 30.0);
        assert_eq!(td, vec![0.0, 0.0, 0.0]);
    }
}
