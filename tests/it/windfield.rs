//! The typhoon wind field against places at known distances: a warning only where the wind
//! will be. Tracks are the Lekima drill's (IBTrACS values in the typhoon service's JSON).

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use stormbell::correlate::typhoon::{exposure, path};
use stormbell::correlate::{Rules, Tier};
use stormbell::feeds::typhoon;
use stormbell::registry::{self, Registry};

fn lekima_files() -> Vec<(Timestamp, PathBuf)> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios/lekima-2019/feeds/typhoon");
    let mut files: Vec<(Timestamp, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
            let t = jiff::fmt::strtime::parse("%Y%m%dT%H%M%S%z", &stem)
                .unwrap()
                .to_timestamp()
                .unwrap();
            (t, p)
        })
        .collect();
    files.sort();
    files
}

/// The fixture county with one more village, at `lat`, `lon`.
fn county_and(code: &str, name: &str, lat: f64, lon: f64) -> (Registry, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (loaded, _) = registry::check_dir(&root.join("fixtures/county"), registry::Encoding::Auto);
    let mut data = loaded.data;
    let mut v = data.villages[0].clone();
    v.code = code.into();
    v.name = name.into();
    v.point = stormbell::cap::Point { lat, lon };
    v.polygon = None;
    data.villages.push(v);
    let reg = Registry::new(data);
    let i = reg.village_index(code).unwrap();
    (reg, i)
}

/// Harbin (45.8° N, 126.5° E) lies 1,500 km and more from every point of Lekima's track and
/// forecasts. The forecast for 08-11 05:00 has a tropical storm (22.6 m/s) whose 7-level
/// circle reaches 694 km to the north-east: no reported circle and no fitted profile comes
/// near Harbin, so no typhoon warning of any tier may cover it at any time of the drill.
#[test]
fn a_village_at_harbin_is_never_in_lekimas_wind() {
    let (reg, harbin) = county_and("230102001001", "哈尔滨测试村（合成）", 45.8, 126.5);
    let rules = Rules::national();
    let mut county_tiers: Vec<(Tier, Timestamp)> = Vec::new();
    for (at, file) in lekima_files() {
        let tracks = typhoon::parse(&std::fs::read(&file).unwrap()).unwrap();
        for track in &tracks {
            // Every 20 minutes until the next snapshot: the daemon evaluates every 5.
            for k in 0..9 {
                let now = at + jiff::SignedDuration::from_mins(20 * k);
                let exposed = exposure(&reg, &rules, &path(track, now), now, None);
                assert!(
                    exposed.iter().all(|e| e.village != harbin),
                    "Harbin warned at {now} from {}",
                    file.display()
                );
                if let Some(top) = exposed.iter().map(|e| e.tier).max() {
                    county_tiers.push((top, now));
                }
            }
        }
    }
    // The county itself (on Lekima's landfall coast) still sees every tier.
    for tier in [Tier::Blue, Tier::Yellow, Tier::Orange, Tier::Red] {
        let first = county_tiers
            .iter()
            .filter(|(t, _)| *t >= tier)
            .map(|x| x.1)
            .min();
        eprintln!("first {tier:?} or above over the county: {first:?}");
        assert!(first.is_some(), "{tier:?} never reached the county");
    }
}
