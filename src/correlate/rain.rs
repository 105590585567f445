//! Rolling rainfall per gauge, shared by the rainstorm, flash-flood and geological rules.
//!
//! Readings are kept per (station, period end); a corrected re-publication of the same period
//! replaces the earlier value (latest wins), so a rain service that re-sends an hour does not
//! count it twice. Flagged readings (absurd values, broken gauges) are left out. A window's
//! accumulation counts each reading by the share of its period inside the window; a gauge
//! with no reading in a window has no accumulation (unknown is not zero).

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use rstar::{AABB, RTree, RTreeObject};

use crate::feeds::rainfall::RainBatch;
use crate::registry::geo::km_between;

/// Readings of one gauge.
#[derive(Debug, Default, Clone)]
struct Gauge {
    lon: Option<f64>,
    lat: Option<f64>,
    /// Period end → (minutes, mm).
    readings: BTreeMap<Timestamp, (u32, f64)>,
}

#[derive(Debug, Clone)]
struct GaugePoint {
    station: usize,
    lon: f64,
    lat: f64,
}

impl RTreeObject for GaugePoint {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        AABB::from_point([self.lon, self.lat])
    }
}

impl rstar::PointDistance for GaugePoint {
    fn distance_2(&self, p: &[f64; 2]) -> f64 {
        let (dx, dy) = (self.lon - p[0], self.lat - p[1]);
        dx * dx + dy * dy
    }
}

/// A gauge whose newest reading is older than this is blind (feed down, gauge broken).
pub const STALE_AFTER: SignedDuration = SignedDuration::from_mins(150);

/// All gauges' recent readings.
#[derive(Debug, Default)]
pub struct RainBook {
    names: Vec<String>,
    index_of: HashMap<String, usize>,
    gauges: Vec<Gauge>,
    tree: Option<RTree<GaugePoint>>,
    /// Inbox id of the latest batch taken in.
    pub last_inbox: Option<i64>,
    /// Bumped whenever the set or positions of gauges change (assignments must be redone).
    pub generation: u64,
    /// Readings older than this before the newest are dropped.
    pub keep: SignedDuration,
}

impl RainBook {
    /// An empty book keeping `keep` of history.
    pub fn new(keep: SignedDuration) -> RainBook {
        RainBook {
            keep,
            ..RainBook::default()
        }
    }

    /// Take in a batch. Returns how many readings were new or corrected.
    pub fn add(&mut self, batch: &RainBatch, inbox: i64) -> usize {
        let mut n = 0;
        for r in batch.trusted() {
            let Some(mm) = r.mm else { continue };
            let i = match self.index_of.get(&r.station) {
                Some(&i) => i,
                None => {
                    self.names.push(r.station.clone());
                    self.gauges.push(Gauge::default());
                    self.index_of
                        .insert(r.station.clone(), self.gauges.len() - 1);
                    self.tree = None;
                    self.gauges.len() - 1
                }
            };
            let g = &mut self.gauges[i];
            if let (Some(lon), Some(lat)) = (r.lon, r.lat)
                && (g.lon != Some(lon) || g.lat != Some(lat))
            {
                g.lon = Some(lon);
                g.lat = Some(lat);
                self.tree = None;
            }
            if g.readings.insert(r.end, (r.minutes, mm)) != Some((r.minutes, mm)) {
                n += 1;
            }
        }
        self.last_inbox = Some(inbox);
        n
    }

    /// Drop readings older than `keep` before `now`.
    pub fn prune(&mut self, now: Timestamp) {
        let Ok(cut) = now.checked_sub(self.keep) else {
            return;
        };
        for g in &mut self.gauges {
            g.readings = g.readings.split_off(&cut);
        }
    }

    /// Whether a gauge has reported a period ending within `max_age` of `now`. A gauge that
    /// has gone quiet (its feed is down) is blind, not dry: rules hold what they had.
    pub fn fresh(&self, gauge: usize, now: Timestamp, max_age: SignedDuration) -> bool {
        self.gauges
            .get(gauge)
            .and_then(|g| g.readings.keys().next_back())
            .is_some_and(|end| now.duration_since(*end) <= max_age)
    }

    /// Number of gauges known.
    pub fn gauges(&self) -> usize {
        self.gauges.len()
    }

    /// A gauge's code.
    pub fn name(&self, gauge: usize) -> &str {
        &self.names[gauge]
    }

    fn tree(&mut self) -> &RTree<GaugePoint> {
        if self.tree.is_none() {
            let pts =
                self.gauges
                    .iter()
                    .enumerate()
                    .filter_map(|(i, g)| {
                        let (lon, lat) = (g.lon?, g.lat?);
                        // A feed's NaN or off-globe position must not reach the tree (its bulk
                        // load orders by coordinate and would panic on NaN): such a gauge is
                        // simply not near anything.
                        ((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat))
                            .then_some(GaugePoint {
                                station: i,
                                lon,
                                lat,
                            })
                    })
                    .collect();
            self.tree = Some(RTree::bulk_load(pts));
            self.generation += 1;
        }
        self.tree.get_or_insert_with(RTree::new)
    }

    /// Build the spatial index now (after a batch), so assessments can share the book.
    pub fn index(&mut self) {
        let _ = self.tree();
    }

    /// Up to `n` gauges within `max_km` of a point, nearest first (the index must be built).
    pub fn near(&self, lon: f64, lat: f64, n: usize, max_km: f64) -> Vec<usize> {
        let Some(tree) = &self.tree else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for g in tree.nearest_neighbor_iter(&[lon, lat]) {
            if out.len() >= n || km_between(lon, lat, g.lon, g.lat) > max_km {
                break;
            }
            out.push(g.station);
        }
        out
    }

    /// Rain at a gauge over the `hours` up to its latest reading at or before `now`, or
    /// `None` if it reported nothing in that window.
    ///
    /// The window ends where the gauge's data ends, not at `now`: the part of the last hour
    /// not yet reported is unknown, not dry, so sums do not fall between two readings (a
    /// silent gauge is handled by [`RainBook::fresh`]).
    pub fn sum(&self, gauge: usize, now: Timestamp, hours: f64) -> Option<f64> {
        let g = self.gauges.get(gauge)?;
        let now = *g.readings.range(..=now).next_back()?.0;
        let span = SignedDuration::from_secs_f64(hours * 3600.0);
        let start = now.checked_sub(span).ok()?;
        let mut total = None;
        // A reading ending up to its own length after `start` may overlap the window.
        let from = start
            .checked_sub(SignedDuration::from_hours(24))
            .unwrap_or(start);
        for (end, (minutes, mm)) in g.readings.range(from..=now) {
            let begin = end
                .checked_sub(SignedDuration::from_mins(i64::from(*minutes)))
                .unwrap_or(*end);
            let lo = begin.max(start);
            if *end <= lo {
                continue;
            }
            let whole = end.duration_since(begin).as_secs_f64();
            let part = end.duration_since(lo).as_secs_f64();
            let share = if whole > 0.0 { part / whole } else { 1.0 };
            *total.get_or_insert(0.0) += mm * share;
        }
        total
    }

    /// Every gauge's accumulation over each of `windows` (hours) before `now`, computed once
    /// per evaluation and shared by every place those gauges serve.
    pub fn table(&self, now: Timestamp, windows: &[f64]) -> SumTable {
        let mut w: Vec<f64> = windows.to_vec();
        w.sort_by(f64::total_cmp);
        w.dedup();
        let data = (0..self.gauges.len())
            .map(|g| w.iter().map(|h| self.sum(g, now, *h)).collect())
            .collect();
        SumTable { windows: w, data }
    }

    /// The highest accumulation over `hours` among some gauges, with the gauge.
    pub fn max_sum(&self, gauges: &[usize], now: Timestamp, hours: f64) -> Option<(f64, usize)> {
        gauges
            .iter()
            .filter_map(|&g| self.sum(g, now, hours).map(|s| (s, g)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// Antecedent precipitation index at a gauge before `before`: Σ daily rain × decay^day
    /// over `days` days.
    pub fn api(&self, gauge: usize, before: Timestamp, days: u32, decay: f64) -> Option<f64> {
        let mut total = None;
        for d in 1..=days {
            let end = before
                .checked_sub(SignedDuration::from_hours(24 * i64::from(d - 1)))
                .ok()?;
            if let Some(s) = self.sum(gauge, end, 24.0) {
                *total.get_or_insert(0.0) += s * decay.powi(d as i32);
            }
        }
        total
    }
}

/// Accumulations per gauge and window (see [`RainBook::table`]).
#[derive(Debug, Default)]
pub struct SumTable {
    windows: Vec<f64>,
    data: Vec<Vec<Option<f64>>>,
}

impl SumTable {
    /// A gauge's accumulation over `hours` (one of the windows the table was built for).
    pub fn get(&self, gauge: usize, hours: f64) -> Option<f64> {
        let k = self.windows.iter().position(|w| *w == hours)?;
        *self.data.get(gauge)?.get(k)?
    }

    /// The highest accumulation over `hours` among some gauges, with the gauge.
    pub fn max(&self, gauges: &[usize], hours: f64) -> Option<(f64, usize)> {
        gauges
            .iter()
            .filter_map(|&g| self.get(g, hours).map(|s| (s, g)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::rainfall::{RainBatch, RainReading};

    fn reading(station: &str, end: &str, minutes: u32, mm: f64) -> RainReading {
        RainReading {
            station: station.into(),
            name: None,
            lon: Some(121.0),
            lat: Some(28.0),
            end: end.parse().unwrap(),
            minutes,
            mm: Some(mm),
            flag: None,
        }
    }

    #[test]
    fn windows_count_shares_and_corrections_replace() {
        let mut b = RainBook::new(SignedDuration::from_hours(72));
        let batch = RainBatch {
            readings: vec![
                reading("R1", "2019-08-09T10:00:00Z", 60, 10.0),
                reading("R1", "2019-08-09T11:00:00Z", 60, 20.0),
                reading("R1", "2019-08-09T12:00:00Z", 60, 30.0),
            ],
        };
        b.add(&batch, 1);
        let now: Timestamp = "2019-08-09T12:00:00Z".parse().unwrap();
        assert_eq!(b.sum(0, now, 3.0), Some(60.0));
        assert_eq!(b.sum(0, now, 1.0), Some(30.0));
        assert_eq!(b.sum(0, now, 0.5), Some(15.0), "half of the last hour");
        assert_eq!(b.sum(0, now, 2.5), Some(55.0));
        // The 12:00 hour is corrected to 25 mm: it replaces, not adds.
        b.add(
            &RainBatch {
                readings: vec![reading("R1", "2019-08-09T12:00:00Z", 60, 25.0)],
            },
            2,
        );
        assert_eq!(b.sum(0, now, 3.0), Some(55.0));
        // Between readings and after the last one, the window ends where the data ends:
        // a gauge that has not reported yet is unknown, not dry — and it shows as stale.
        let later: Timestamp = "2019-08-10T12:00:00Z".parse().unwrap();
        assert_eq!(b.sum(0, later, 3.0), Some(55.0));
        assert!(!b.fresh(0, later, STALE_AFTER));
        assert!(b.fresh(0, now, STALE_AFTER));
        // Before its first reading there is nothing.
        assert_eq!(b.sum(0, "2019-08-09T09:00:00Z".parse().unwrap(), 3.0), None);
        // A feed's NaN position is kept out of the spatial index instead of panicking it.
        let mut bad = reading("R2", "2019-08-09T12:00:00Z", 60, 1.0);
        bad.lon = Some(f64::NAN);
        b.add(
            &RainBatch {
                readings: vec![bad],
            },
            3,
        );
        b.index();
        assert_eq!(b.near(121.0, 28.0, 3, 5.0), vec![0]);
        assert!(b.near(122.0, 28.0, 3, 5.0).is_empty());
    }
}
