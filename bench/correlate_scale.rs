//! National-scale correlate benchmark: 600,000 villages in the spatial index and a
//! five-day typhoon forecast interpolated hourly → the exposed-village set; and one hour of
//! 60,000 gauge readings → rolling sums and the crossed flash-flood thresholds of 500,000
//! zones. Synthetic data (uniform over south-east China), fixed seed.
//!
//! cargo run --release --example correlate_scale [-- --export DIR]
//!
//! With `--export DIR` it also writes the same villages (`villages.csv`) and the same wind
//! field (`wind.csv`: per hourly position and tier, the radius in each quadrant) for the
//! PostGIS side of the comparison, `bench/postgis_typhoon.sh`.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::Rules;
use stormbell::correlate::rain::RainBook;
use stormbell::correlate::typhoon::{Fix, exposure, sample, tier_speed};
use stormbell::feeds::rainfall::{RainBatch, RainReading};
use stormbell::registry::{Dataset, Registry, Village};

/// xorshift: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Villages and the sampled wind field as CSV for PostGIS. Radii in metres on PostGIS's
/// sphere (mean radius 6,371,008.8 m) scaled so that they span the same angle as stormbell's
/// kilometres on its 6,371 km sphere: both sides then ask exactly the same question.
fn export(dir: &std::path::Path, reg: &Registry, rules: &Rules, path: &[Fix], start: Timestamp) {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let mut v = std::io::BufWriter::new(std::fs::File::create(dir.join("villages.csv")).unwrap());
    for (i, x) in reg.data.villages.iter().enumerate() {
        writeln!(v, "{i},{},{}", x.point.lon, x.point.lat).unwrap();
    }
    let scale = 1000.0 * 6_371_008.8 / 6_371_000.0;
    let t = &rules.typhoon;
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("wind.csv")).unwrap());
    let end = start + SignedDuration::from_hours(120);
    let step = SignedDuration::from_mins(i64::from(t.step_mins));
    for (k, fix) in sample(path, start, end, step).iter().enumerate() {
        let ahead = fix.time.duration_since(start);
        for tier in &t.tiers {
            if ahead > SignedDuration::from_hours(i64::from(tier.hours)) {
                continue;
            }
            let speed = tier_speed(tier.mean_level, tier.gust_level, t.gust_factor);
            let r: Vec<f64> = (0..4)
                .map(|q| fix.radius_for(speed, q, t.rmw_km, t.derived_reach) * scale)
                .collect();
            if r.iter().all(|x| *x <= 0.0) {
                continue;
            }
            writeln!(
                w,
                "{k},{},{},{},{},{},{},{},{}",
                fix.time, tier.tier as u8, fix.lon, fix.lat, r[0], r[1], r[2], r[3]
            )
            .unwrap();
        }
    }
    println!("exported villages.csv and wind.csv to {}", dir.display());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut rng = Rng(0x5eed);
    let n_villages = 600_000;
    let villages: Vec<Village> = (0..n_villages)
        .map(|i| Village {
            code: format!("{:012}", 330000000000u64 + i as u64),
            name: format!("村{i}"),
            town: format!("{:09}", 330000000u64 + (i / 20) as u64),
            point: stormbell::cap::model::Point {
                lon: 105.0 + 17.0 * rng.next(),
                lat: 18.0 + 14.0 * rng.next(),
            },
            households: 100,
            population: 300,
            evacuate: 10,
            polygon: None,
        })
        .collect();
    let t = Instant::now();
    let reg = Registry::new(Dataset {
        villages,
        ..Dataset::default()
    });
    println!(
        "index: {n_villages} villages in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // A Lekima-like forecast: 5 days, a point every 6 h, moving NW then N.
    let start: Timestamp = "2019-08-08T00:00:00Z".parse().unwrap();
    let path: Vec<Fix> = (0..=20)
        .map(|k| Fix {
            time: start + SignedDuration::from_hours(6 * k),
            lat: 20.0 + 0.6 * k as f64,
            lon: 128.0 - 0.35 * k as f64,
            vmax: Some(55.0 - k as f64),
            derived: false,
            radii: [
                [380.0, 320.0, 280.0, 300.0],
                [150.0, 120.0, 100.0, 120.0],
                [80.0, 60.0, 50.0, 60.0],
            ],
        })
        .collect();
    let mut rules = Rules::national();
    // The whole 5-day forecast, hourly, for every tier (the workload).
    for tier in &mut rules.typhoon.tiers {
        tier.hours = 120;
    }
    let mut times = Vec::new();
    let mut exposed = 0;
    let mut by_tier = [0usize; 4];
    for _ in 0..7 {
        let t = Instant::now();
        let e = exposure(&reg, &rules, &path, start, None);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        exposed = e.len();
        by_tier = [0; 4];
        for x in &e {
            by_tier[x.tier as usize] += 1;
        }
    }
    let fixes = sample(
        &path,
        start,
        start + SignedDuration::from_hours(120),
        SignedDuration::from_hours(1),
    )
    .len();
    println!(
        "typhoon: {fixes} hourly positions, {exposed} villages exposed: median {:.1} ms (target < 50 ms)",
        median(times)
    );
    println!("typhoon: exposed by tier (blue, yellow, orange, red): {by_tier:?}");
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--export")
        .and_then(|i| args.get(i + 1))
    {
        export(std::path::Path::new(dir), &reg, &rules, &path, start);
    }

    // 60,000 gauges, 25 hours of readings; 500,000 zones with 1/3/6 h thresholds, each read
    // from its two nearest gauges.
    let n_gauges = 60_000;
    let pos: Vec<(f64, f64)> = (0..n_gauges)
        .map(|_| (105.0 + 17.0 * rng.next(), 18.0 + 14.0 * rng.next()))
        .collect();
    let mut book = RainBook::new(SignedDuration::from_hours(48));
    for h in 0..24 {
        let end = start + SignedDuration::from_hours(h);
        let batch = RainBatch {
            readings: pos
                .iter()
                .enumerate()
                .map(|(i, (lon, lat))| RainReading {
                    station: format!("G{i}"),
                    name: None,
                    lon: Some(*lon),
                    lat: Some(*lat),
                    end,
                    minutes: 60,
                    mm: Some(30.0 * rng.next() * rng.next()),
                    flag: None,
                })
                .collect(),
        };
        book.add(&batch, h);
    }
    book.index();
    let zones: Vec<(f64, f64, [f64; 3])> = (0..500_000)
        .map(|_| {
            (
                105.0 + 17.0 * rng.next(),
                18.0 + 14.0 * rng.next(),
                [
                    25.0 + 20.0 * rng.next(),
                    50.0 + 30.0 * rng.next(),
                    80.0 + 40.0 * rng.next(),
                ],
            )
        })
        .collect();
    let t = Instant::now();
    let gauges: Vec<Vec<usize>> = zones
        .iter()
        .map(|(lon, lat, _)| book.near(*lon, *lat, 2, 30.0))
        .collect();
    println!(
        "zones: gauges assigned to 500,000 zones in {:.0} ms (once per gauge-set change)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let hour = start + SignedDuration::from_hours(24);
    let mut times = Vec::new();
    let mut crossed = 0;
    for _ in 0..5 {
        // The new hour arrives: 60,000 readings.
        let batch = RainBatch {
            readings: pos
                .iter()
                .enumerate()
                .map(|(i, (lon, lat))| RainReading {
                    station: format!("G{i}"),
                    name: None,
                    lon: Some(*lon),
                    lat: Some(*lat),
                    end: hour,
                    minutes: 60,
                    mm: Some(60.0 * rng.next() * rng.next()),
                    flag: None,
                })
                .collect(),
        };
        let t = Instant::now();
        book.add(&batch, 99);
        let table = book.table(hour, &[1.0, 3.0, 6.0]);
        crossed = 0;
        for (z, g) in zones.iter().zip(&gauges) {
            for (k, h) in [1.0, 3.0, 6.0].iter().enumerate() {
                if table.max(g, *h).is_some_and(|(mm, _)| mm >= z.2[k]) {
                    crossed += 1;
                    break;
                }
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "rain: one hour of {n_gauges} readings → rolling 1/3/6 h sums and {crossed} of 500,000 zones over a threshold: median {:.0} ms (target < 200 ms)",
        median(times)
    );
}
