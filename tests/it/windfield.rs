//! The typhoon wind field against places at known distances: a warning only where the wind
//! will be. Tracks are the Lekima drill's (IBTrACS values in the typhoon service's JSON).

use std::path::{Path, PathBuf};

use crate::common;
use crate::common::backend::Backend;

use jiff::Timestamp;
use stormbell::correlate::typhoon::{exposure, path};
use stormbell::correlate::{Rules, Tier};
use stormbell::feeds::typhoon;
use stormbell::registry::{self, Registry};

/// A scenario's typhoon snapshots (named by their publication time), in time order.
fn snapshots(scenario: &str) -> Vec<(Timestamp, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/scenarios")
        .join(scenario)
        .join("feeds/typhoon");
    let mut files: Vec<(Timestamp, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
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
    for (at, file) in snapshots("lekima-2019") {
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

/// The point `km` from (`lat`, `lon`) on bearing `deg` (great circle).
fn destination(lat: f64, lon: f64, deg: f64, km: f64) -> (f64, f64) {
    let (p1, l1, th, d) = (
        lat.to_radians(),
        lon.to_radians(),
        deg.to_radians(),
        km / 6371.0,
    );
    let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * th.cos()).asin();
    let l2 = l1 + (th.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
    (p2.to_degrees(), l2.to_degrees())
}

/// Villages at known distances from Jongdari's analysis (CMA bulletin of 2018-07-27 06Z: 7-,
/// 10- and 12-level circles 400/80/50 km to the north-east, 220/60/50 to the south-west)
/// get the tier the national criteria give for the wind the circles say they have: a mean of
/// level 12 inside the 12-level circle is red (red: mean level 12), level 10 inside the
/// 10-level circle at least orange (orange: mean level 10), level 7 inside the 7-level circle
/// at least blue (blue: mean level 6), and below level 10 outside the 10-level circle never
/// red (red needs a mean of level 12, or gusts of 14 = a mean of 29.6 m/s at 1.4). Beyond the
/// bound on derived circles (1.25 × the 7-level one) nothing.
#[test]
fn tiers_at_known_distances_follow_the_national_criteria() {
    let body = common::ext_bytes(
        "real-formats/01-tac-samples/cma_WTPQ20_BABJ_270600_TY_JONGDARI_1812.transcribed.txt",
    );
    let read =
        stormbell::feeds::bulletin::parse(&body, "2018-07-27T07:00:00Z".parse().unwrap()).unwrap();
    let Some(stormbell::feeds::bulletin::Bulletin::Track(mut track)) =
        read.bulletins.into_iter().next()
    else {
        panic!("no track");
    };
    // The analysis alone: distances are the analysis' own, not the forecast's.
    track.forecasts.clear();
    let (lat, lon) = (track.points[0].lat, track.points[0].lon);
    let now = track.points[0].time;
    // (bearing, km, lowest tier, highest tier); None = no warning.
    let cases: [(f64, f64, Option<Tier>, Option<Tier>); 8] = [
        (45.0, 40.0, Some(Tier::Red), Some(Tier::Red)),
        (45.0, 70.0, Some(Tier::Orange), Some(Tier::Red)),
        (45.0, 300.0, Some(Tier::Blue), Some(Tier::Orange)),
        (45.0, 395.0, Some(Tier::Blue), Some(Tier::Orange)),
        (45.0, 520.0, None, None),
        (225.0, 200.0, Some(Tier::Blue), Some(Tier::Orange)),
        (225.0, 290.0, None, None),
        (315.0, 190.0, None, None),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (loaded, _) = registry::check_dir(&root.join("fixtures/county"), registry::Encoding::Auto);
    let mut data = loaded.data;
    let template = data.villages[0].clone();
    // Far from the fixture county (Jongdari was east of Japan): only these villages count.
    for (k, (bearing, km, ..)) in cases.iter().enumerate() {
        let (la, lo) = destination(lat, lon, *bearing, *km);
        let mut v = template.clone();
        v.code = format!("99000000{:04}", k);
        v.name = format!("测距村{k}（合成）");
        v.point = stormbell::cap::Point { lat: la, lon: lo };
        v.polygon = None;
        data.villages.push(v);
    }
    let reg = Registry::new(data);
    let rules = Rules::national();
    let exposed = exposure(&reg, &rules, &path(&track, now), now, None);
    for (k, (bearing, km, lo, hi)) in cases.iter().enumerate() {
        let i = reg.village_index(&format!("99000000{:04}", k)).unwrap();
        let got = exposed.iter().find(|e| e.village == i).map(|e| e.tier);
        assert!(
            got >= *lo && got <= *hi,
            "{km} km on {bearing}°: {got:?}, want {lo:?}–{hi:?}"
        );
    }
}

/// The first time each tier reaches any of the county's villages, evaluating every 20 minutes
/// the newest track each snapshot folder had published by then (`read` turns a file into it).
fn first_tiers(
    folder: &str,
    read: impl Fn(&[u8], Timestamp) -> Vec<stormbell::feeds::typhoon::Track>,
) -> Vec<(Tier, Option<Timestamp>)> {
    let files = snapshots(folder);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (loaded, _) = registry::check_dir(&root.join("fixtures/county"), registry::Encoding::Auto);
    let reg = Registry::new(loaded.data);
    let rules = Rules::national();
    let mut seen: Vec<(Tier, Timestamp)> = Vec::new();
    for (at, file) in &files {
        let tracks = read(&std::fs::read(file).unwrap(), *at);
        for track in &tracks {
            for k in 0..9 {
                let now = *at + jiff::SignedDuration::from_mins(20 * k);
                if let Some(top) = exposure(&reg, &rules, &path(track, now), now, None)
                    .iter()
                    .map(|e| e.tier)
                    .max()
                {
                    seen.push((top, now));
                }
            }
        }
    }
    [Tier::Blue, Tier::Yellow, Tier::Orange, Tier::Red]
        .into_iter()
        .map(|tier| {
            (
                tier,
                seen.iter().filter(|(t, _)| *t >= tier).map(|x| x.1).min(),
            )
        })
        .collect()
}

/// The Lekima drill with its typhoon feed as CMA's bulletins (radii at the analysis only,
/// carried to the forecast points by the wind profile) warns the county's villages of every
/// tier no later than the county meteorological office's own signal of that colour — and the
/// whole drill runs on it through the live poller and the correlate stage. (The service-JSON
/// scenario is printed beside it: its forecast points carry the radii the storm really had
/// later, a perfect forecast no agency gives, so it is not the bar.)
#[test]
fn lekima_from_cma_bulletins_warns_as_timely_as_from_the_service_json() {
    let json = first_tiers("lekima-2019", |b, _| typhoon::parse(b).unwrap());
    let cma = first_tiers("lekima-2019-cma", |b, at| {
        stormbell::feeds::bulletin::parse(b, at)
            .unwrap()
            .bulletins
            .into_iter()
            .filter_map(|x| match x {
                stormbell::feeds::bulletin::Bulletin::Track(t) => Some(t),
                _ => None,
            })
            .collect()
    });
    // The county meteorological office's own signals in the drill (blue, yellow, orange, red;
    // Minor … Extreme in CAP): the flood office's warning to the villages must not lag them.
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios/lekima-2019/docs");
    let mut signals: Vec<(Tier, Timestamp)> = Vec::new();
    for e in std::fs::read_dir(docs).unwrap() {
        let a = stormbell::cap::read_alert(
            &std::fs::read(e.unwrap().path()).unwrap(),
            &stormbell::cap::Limits::default(),
        )
        .unwrap()
        .alert;
        if a.msg_type.as_str() == "Cancel" {
            continue;
        }
        let tier = match a.infos[0].severity.as_str() {
            "Minor" => Tier::Blue,
            "Moderate" => Tier::Yellow,
            "Severe" => Tier::Orange,
            _ => Tier::Red,
        };
        signals.push((tier, a.sent.to_string().parse().unwrap()));
    }
    assert_eq!(signals.len(), 4);
    for ((tier, j), (_, c)) in json.iter().zip(&cma) {
        let signal = signals.iter().find(|s| s.0 == *tier).unwrap().1;
        eprintln!(
            "{tier:?}: service JSON {j:?}, CMA bulletins {c:?}, the county's signal {signal}"
        );
        let c = c.expect("the bulletins warn");
        assert!(j.is_some(), "the JSON warns {tier:?}");
        assert!(
            c <= signal,
            "{tier:?} from the bulletins at {c}, the signal at {signal}"
        );
    }

    // The drill itself, on the bulletins: each tier's first warning no later than the county
    // signal of that colour, not before the track shows it, and red before landfall.
    let o = crate::correlate_replay::replay("lekima-2019-cma", Backend::Sqlite);
    let landfall: Timestamp = "2019-08-10T01:45:00+08:00".parse().unwrap();
    for (tier, first) in &cma {
        let first = first.unwrap();
        let signal = signals.iter().find(|s| s.0 == *tier).unwrap().1;
        let got = o
            .decisions
            .iter()
            .filter(|d| {
                d.lineage.starts_with("typhoon:") && d.tier >= Some(*tier) && d.send != "Cancel"
            })
            .map(|d| d.at)
            .min()
            .unwrap_or_else(|| panic!("no {tier:?} typhoon decision in the drill"));
        eprintln!("{tier:?}: drill {got}, track {first}, signal {signal}");
        // The track is sampled every 20 min here, the drill evaluates every 5.
        assert!(
            got + jiff::SignedDuration::from_mins(20) > first && got <= signal,
            "{tier:?}: drill {got}, track {first}, signal {signal}"
        );
        if *tier == Tier::Red {
            assert!(got < landfall, "red at {got}");
        }
    }
    assert!(o.caps.iter().any(|(_, xml)| xml.contains("中央气象台")));
}

/// A replay is the same every time: the simulated clock moves only when every stage is idle,
/// so the decisions, their times and their tiers do not depend on how the machine schedules
/// the stages (they did: a stage released the clock before registering its next tick), nor
/// on the store's engine: the second run is on PostgreSQL.
#[test]
fn the_same_drill_twice_decides_the_same() {
    let fmt = |o: &crate::correlate_replay::Outcome| -> Vec<String> {
        o.decisions
            .iter()
            .map(|d| format!("{} {} {} {:?}", d.at, d.lineage, d.send, d.tier))
            .collect()
    };
    let a = fmt(&crate::correlate_replay::replay(
        "lekima-2019-cma",
        Backend::Sqlite,
    ));
    let b = fmt(&crate::correlate_replay::replay(
        "lekima-2019-cma",
        Backend::Postgres,
    ));
    assert!(a.len() > 100, "{}", a.len());
    let first = a.iter().zip(&b).position(|(x, y)| x != y);
    assert!(
        a == b,
        "{} (SQLite) vs {} (PostgreSQL) decisions; first difference: {:?}",
        a.len(),
        b.len(),
        first.map(|i| (&a[i], &b[i]))
    );
}
