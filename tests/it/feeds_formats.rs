//! The real formats the services publish (tests/data/real-formats, with provenance), read file
//! by file into the values the files say — checked here against the text of each file, not
//! against a run of the parser.

use crate::common;

use jiff::Timestamp;
use serde_json::Value;
use stormbell::feeds::bulletin::{self, Bulletin};
use stormbell::feeds::read;
use stormbell::feeds::typhoon::{RadiusSource, Track, level_floor};

fn tac(name: &str) -> Vec<u8> {
    common::ext_bytes(&format!("real-formats/01-tac-samples/{name}"))
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The lines `feed read` prints for a file.
fn lines(name: &str, body: &[u8], received: &str) -> (Vec<Value>, bool) {
    read::read("auto", name, body, ts(received))
}

fn only_track(body: &[u8], received: &str) -> Track {
    let read = bulletin::parse(body, ts(received)).unwrap();
    let tracks: Vec<Track> = read
        .bulletins
        .into_iter()
        .filter_map(|b| match b {
            Bulletin::Track(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 1);
    tracks.into_iter().next().unwrap()
}

#[test]
fn cma_subjective_forecasts_read_as_written() {
    // TS PABUK 2426, the CCA correction of 24 18Z (no `=`, no NNNN, no last newline).
    let (out, ok) = lines(
        "cma_WTPQ20_BABJ_241800_CCA_TS_PABUK_2426.txt",
        &tac("cma_WTPQ20_BABJ_241800_CCA_TS_PABUK_2426.txt"),
        "2024-12-24T18:40:00Z",
    );
    assert!(ok);
    assert_eq!(out.len(), 1, "{out:?}");
    let f = &out[0];
    assert_eq!(f["kind"], "typhoon");
    assert_eq!(f["agency"], "BABJ");
    assert_eq!(f["storm"], "2426");
    assert_eq!(f["name"], "PABUK");
    assert_eq!(f["category"], "TS");
    assert_eq!(f["time"], "2024-12-24T18:00:00Z");
    assert_eq!(
        (f["lat"].as_f64(), f["lon"].as_f64()),
        (Some(11.4), Some(111.1))
    );
    assert_eq!(f["pressure_hpa"], 1000);
    assert_eq!(f["wind_ms"], 18);
    assert_eq!(
        f["radii_km"],
        serde_json::json!({"30kt": {"ne": 150, "se": 120, "sw": 120, "nw": 180}})
    );
    let fc = f["forecasts"].as_array().unwrap();
    let hours: Vec<i64> = fc.iter().map(|x| x["hours"].as_i64().unwrap()).collect();
    assert_eq!(hours, [6, 12, 18, 24, 36]);
    assert_eq!(fc[3]["time"], "2024-12-25T18:00:00Z");
    assert_eq!(
        (fc[3]["lat"].as_f64(), fc[3]["lon"].as_f64()),
        (Some(9.7), Some(108.1))
    );
    assert_eq!(
        (fc[3]["pressure_hpa"].as_i64(), fc[3]["wind_ms"].as_i64()),
        (Some(1002), Some(15))
    );
    // CMA gives no radii at forecast points; none are printed as if it had.
    assert!(fc.iter().all(|x| x["radii_km"] == serde_json::json!({})));

    // SuperTY (mixed case) with the OCHA copy's indented continuations and `...` elisions.
    let t = only_track(
        &tac("cma_WTPQ20_BABJ_131200_SuperTY_SINLAKU_2604.partial.txt"),
        "2026-04-13T13:00:00Z",
    );
    let p = &t.points[0];
    assert_eq!(format!("{:?}", p.grade.unwrap()), "SuperTY");
    assert_eq!(
        (p.lat, p.lon, p.pressure_hpa, p.wind_ms),
        (13.1, 147.4, Some(905.0), Some(68.0))
    );
    let r7 = p.r7.unwrap();
    assert_eq!((r7.ne, r7.se, r7.sw, r7.nw), (500.0, 480.0, 450.0, 450.0));
    assert_eq!(p.r10.unwrap().ne, 160.0);
    assert_eq!(t.points[0].time, ts("2026-04-13T12:00:00Z"));
    assert_eq!(
        t.forecasts[0]
            .points
            .iter()
            .map(|f| f.time)
            .collect::<Vec<_>>(),
        [ts("2026-04-14T00:00:00Z"), ts("2026-04-18T12:00:00Z")]
    );

    // Typhoon Jongdari: all three circles.
    let t = only_track(
        &tac("cma_WTPQ20_BABJ_270600_TY_JONGDARI_1812.transcribed.txt"),
        "2018-07-27T07:00:00Z",
    );
    let p = &t.points[0];
    let q = |r: Option<stormbell::feeds::typhoon::Radii>| {
        let r = r.unwrap();
        (r.ne, r.se, r.sw, r.nw)
    };
    assert_eq!(q(p.r7), (400.0, 400.0, 220.0, 150.0));
    assert_eq!(q(p.r10), (80.0, 100.0, 60.0, 60.0));
    assert_eq!(q(p.r12), (50.0, 60.0, 50.0, 50.0));
    assert_eq!(p.move_dir.as_deref(), Some("N"));
    assert_eq!(p.move_speed_kmh, Some(38.0));
    assert_eq!(t.forecasts[0].points.len(), 5);
    assert_eq!(t.forecasts[0].points[4].wind_ms, Some(15.0));

    // A tropical depression: no radii at all; unnamed, numbered "01"; the heading (250000)
    // differs from the initial time (242100), which rules.
    let t = only_track(
        &tac("cma_WTPQ20_BABJ_250000_TD_unnamed_01.txt"),
        "2024-05-25T00:20:00Z",
    );
    assert_eq!((t.storm.as_str(), t.name_en.as_str()), ("01", ""));
    assert_eq!(t.points[0].time, ts("2024-05-24T21:00:00Z"));
    assert!(t.points[0].r7.is_none() && t.points[0].r10.is_none());
    assert_eq!(t.forecasts[0].points.len(), 8);
    assert_eq!(t.forecasts[0].points[7].time, ts("2024-05-29T21:00:00Z"));
}

#[test]
fn month_and_year_come_from_the_reference_across_their_ends() {
    // The Pabuk TD of the 25th read on 1 January: December, last year.
    let t = only_track(
        &tac("cma_WTPQ20_BABJ_250300_TD_PABUK_2426.txt"),
        "2025-01-01T00:00:00Z",
    );
    // Nearest to 1 January among 25 Nov, 25 Dec, 25 Jan: 25 December 2024.
    assert_eq!(t.points[0].time, ts("2024-12-25T03:00:00Z"));
    // From a CMA FTP file name's stamp, whatever the time of receipt.
    let name = "Z_SEVP_C_BABJ_20241225031500_P_WTPQ20.TXT";
    let (out, ok) = read::read(
        "bulletin",
        name,
        &tac("cma_WTPQ20_BABJ_250300_TD_PABUK_2426.txt"),
        ts("2030-06-01T00:00:00Z"),
    );
    assert!(ok);
    assert_eq!(out[0]["time"], "2024-12-25T03:00:00Z");
}

#[test]
fn several_bulletins_in_one_file_and_corrections_after_originals() {
    let mut file = Vec::new();
    for name in [
        "cma_WTPQ20_BABJ_241800_CCA_TS_PABUK_2426.txt",
        "cma_TCPQ40_BABJ_250600_PABUK.txt",
        "cma_WTPQ20_BABJ_242100_CCA_TS_PABUK_2426.partial.txt",
        "cma_WTPQ20_BABJ_250300_TD_PABUK_2426.txt",
    ] {
        // Glued as a CMA decoder's input: the last lines of some have no newline.
        file.extend_from_slice(&tac(name));
        file.push(b'\n');
    }
    let read = bulletin::parse(&file, ts("2024-12-25T04:00:00Z")).unwrap();
    let kinds: Vec<String> = read
        .bulletins
        .iter()
        .map(|b| match b {
            Bulletin::Track(t) => format!("{} {} c{}", t.storm, t.points[0].time, t.correction),
            Bulletin::Landfall(_) => "landfall".into(),
            Bulletin::Skipped { heading, .. } => format!("skipped {heading}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "2426 2024-12-24T18:00:00Z c1",
            "skipped TCPQ40 BABJ 250600",
            "2426 2024-12-24T21:00:00Z c1",
            "2426 2024-12-25T03:00:00Z c0",
        ]
    );
}

#[test]
fn landfall_and_the_products_that_are_skipped() {
    let (out, ok) = lines(
        "cma_WHCI40_BABJ_110110_STY_MARIA_1808.transcribed.txt",
        &tac("cma_WHCI40_BABJ_110110_STY_MARIA_1808.transcribed.txt"),
        "2018-07-11T02:00:00Z",
    );
    assert!(ok);
    assert_eq!(
        out,
        [
            serde_json::json!({"kind": "landfall", "agency": "BABJ", "storm": "1808",
            "name": "MARIA", "time": "2018-07-11T01:10:00Z", "place": "FUJIAN LIANJIANG",
            "wind_ms": 42})
        ]
    );
    for name in [
        "cma_TCPQ40_BABJ_112100_4storms_TORAJI_MANYI_YINXING_USAGI.txt",
        "cma_TCPQ40_BABJ_250600_PABUK.txt",
        "cma_TCPQ40_BABJ_261800_JONGDARI.transcribed.txt",
        "cma_WSCI40_BABJ_250000_telecode.txt",
        "cma_WSCI40_BABJ_250900_telecode.txt",
        "jtwc_ABPW10_PGTW_080600_APR2026.txt",
    ] {
        let (out, ok) = lines(name, &tac(name), "2024-12-25T04:00:00Z");
        assert!(ok, "{name}: {out:?}");
        assert_eq!(out.len(), 1, "{name}: {out:?}");
        assert_eq!(out[0]["kind"], "skipped", "{name}");
        assert!(!out[0]["reason"].as_str().unwrap().is_empty());
    }
}

#[test]
fn jtwc_warnings_with_crlf_and_radii_at_every_forecast() {
    let body = tac("jtwc_WTPS31_PGTW_080300_TC30P_MAILA_crlf.txt");
    assert!(body.windows(2).any(|w| w == b"\r\n"), "the sample is CRLF");
    let t = only_track(&body, "2026-04-08T03:30:00Z");
    assert_eq!(
        (t.agency.as_str(), t.storm.as_str(), t.name_en.as_str()),
        ("PGTW", "30P", "MAILA")
    );
    let p = &t.points[0];
    assert_eq!(p.time, ts("2026-04-08T00:00:00Z"));
    assert_eq!((p.lat, p.lon), (-9.0, 155.9));
    assert_eq!(p.pressure_hpa, Some(937.0));
    // 115 kt.
    assert!((p.wind_ms.unwrap() - 115.0 * 0.514_444).abs() < 0.06);
    let nm = |x: f64| x * 1.852;
    let r7 = p.r7.unwrap();
    assert_eq!(r7.source, RadiusSource::Jtwc34kt);
    assert!((r7.ne - nm(120.0)).abs() < 1e-9 && (r7.nw - nm(115.0)).abs() < 1e-9);
    let r12 = p.r12.unwrap();
    assert!((r12.se - nm(45.0)).abs() < 1e-9);
    let fc = &t.forecasts[0].points;
    let hours: Vec<i64> = fc
        .iter()
        .map(|f| f.time.duration_since(p.time).as_hours())
        .collect();
    assert_eq!(hours, [12, 24, 36, 48, 72, 96, 120]);
    // Radii at every forecast time, 000 NM meaning none that side.
    let last = fc.last().unwrap();
    let r10 = last.r10.unwrap();
    assert_eq!((r10.ne, r10.nw), (0.0, 0.0));
    assert!((r10.se - nm(30.0)).abs() < 1e-9);
    assert!(last.r12.is_none());

    // The printed keys are JTWC's own thresholds.
    let (out, ok) = lines("maila", &body, "2026-04-08T03:30:00Z");
    assert!(ok);
    let keys: Vec<&String> = out[0]["radii_km"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["34kt", "50kt", "64kt"]);
    assert_eq!(out[0]["lat"], -9);

    // Chan-hom as JTWC's 14W, checked against the Zhejiang service's point for the same time
    // (33.1N 153.2E at 2026-08-08 20:00 Beijing time).
    let t = only_track(
        &tac("pgtw_WTPN33_PGTW_081500_TS14W_CHAN-HOM.partial.txt"),
        "2026-08-08T15:10:00Z",
    );
    assert_eq!((t.storm.as_str(), t.name_en.as_str()), ("14W", "CHAN-HOM"));
    assert_eq!(t.points[0].time, ts("2026-08-08T20:00:00+08:00"));
    assert_eq!((t.points[0].lat, t.points[0].lon), (33.1, 153.2));
    assert_eq!(t.points[0].r7.unwrap().se, 0.0);
}

#[test]
fn jma_advisories_fill_semicircles_and_ignore_the_probability_circle() {
    let body = common::fixture_bytes("feeds/jma_WTPQ50_RJTD_080000_LEKIMA.synthetic.txt");
    let t = only_track(&body, "2019-08-08T01:00:00Z");
    assert_eq!(
        (t.agency.as_str(), t.storm.as_str(), t.name_en.as_str()),
        ("RJTD", "1909", "LEKIMA")
    );
    let p = &t.points[0];
    assert_eq!((p.lat, p.lon, p.pressure_hpa), (24.1, 125.2, Some(930.0)));
    let r7 = p.r7.unwrap();
    let nm = |x: f64| x * 1.852;
    // 30KT 210NM NORTH 160NM SOUTH: both northern quadrants long, both southern short.
    assert_eq!((r7.ne, r7.nw), (nm(210.0), nm(210.0)));
    assert_eq!((r7.se, r7.sw), (nm(160.0), nm(160.0)));
    assert_eq!(p.r10.unwrap().sw, nm(80.0));
    let fc = &t.forecasts[0].points;
    assert_eq!(fc.len(), 3);
    assert_eq!(fc[2].time, ts("2019-08-11T00:00:00Z"));
    assert!((fc[2].wind_ms.unwrap() - 45.0 * 0.514_444).abs() < 0.06);
    // The 70 % circle (100NM) is where the centre may be, not a wind radius.
    assert!(fc[2].r7.is_none());
}

#[test]
fn broken_bulletins_are_refused_one_line_each_and_the_rest_read() {
    let good = tac("cma_WTPQ20_BABJ_260600_TS_EWINIAR_2401.txt");
    let cases: [(&str, &str); 4] = [
        (
            "WTPQ20 BABJ 260600\nSUBJECTIVE FORECAST\nXX EWINIAR 2401 (2401) INITIAL TIME 260600 UTC\n00HR 14.2N 121.5E 990HPA 23M/S=\n",
            "unknown category",
        ),
        (
            "WTPQ20 BABJ 260600\nSUBJECTIVE FORECAST\nTS EWINIAR 2401 (2401) INITIAL TIME 260600 UTC\nMOVE NE 9KM/H\n",
            "00HR",
        ),
        (
            "WTPQ20 BABJ 260600\nSUBJECTIVE FORECAST\nTS EWINIAR 2401 (2401) INITIAL TIME 260600 UTC\n00HR 94.2N 121.5E 990HPA 23M/S=\n",
            "latitude",
        ),
        (
            "WTPQ20 BABJ 260600\nSUBJECTIVE FORECAST\nTS EWINIAR 2401 (2401) INITIAL TIME 266600 UTC\n00HR 14.2N 121.5E 990HPA 23M/S=\n",
            "initial time",
        ),
    ];
    for (broken, says) in cases {
        // Alone: refused, saying what and where.
        let (out, ok) = lines("broken.txt", broken.as_bytes(), "2024-05-26T07:00:00Z");
        assert!(!ok);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["kind"], "refused");
        let reason = out[0]["reason"].as_str().unwrap();
        assert!(reason.contains(says) && reason.contains("line"), "{reason}");
        // Beside a good one: the good one is read, the broken one named.
        let mut both = broken.as_bytes().to_vec();
        both.extend_from_slice(&good);
        let (out, ok) = lines("both.txt", &both, "2024-05-26T07:00:00Z");
        assert!(ok, "{out:?}");
        assert_eq!(out.iter().filter(|l| l["kind"] == "typhoon").count(), 1);
        assert!(
            out.iter()
                .any(|l| l["kind"] == "note" && l["note"].as_str().unwrap().contains(says))
        );
    }
    // Not a bulletin at all.
    let (out, ok) = lines("x.txt", b"hello\nworld\n", "2024-05-26T07:00:00Z");
    assert!(!ok && out[0]["kind"] == "refused");
}

/// The wind field at each real bulletin's analysis time reproduces the circles the bulletin
/// reports, in every quadrant.
#[test]
fn derived_circles_at_the_analysis_are_the_reported_ones() {
    use stormbell::correlate::typhoon::Fix;
    let mut checked = 0;
    for name in [
        "cma_WTPQ20_BABJ_241800_CCA_TS_PABUK_2426.txt",
        "cma_WTPQ20_BABJ_242100_CCA_TS_PABUK_2426.partial.txt",
        "cma_WTPQ20_BABJ_131200_SuperTY_SINLAKU_2604.partial.txt",
        "cma_WTPQ20_BABJ_270600_TY_JONGDARI_1812.transcribed.txt",
        "jtwc_WTPS31_PGTW_080300_TC30P_MAILA_crlf.txt",
        "pgtw_WTPN33_PGTW_081500_TS14W_CHAN-HOM.partial.txt",
    ] {
        let t = only_track(&tac(name), "2024-12-25T00:00:00Z");
        let p = &t.points[0];
        let fix = Fix::of(p);
        for (level, r) in [(7, p.r7), (10, p.r10), (12, p.r12)] {
            let Some(r) = r else { continue };
            for (q, want) in [r.ne, r.se, r.sw, r.nw].into_iter().enumerate() {
                if want <= 0.0 {
                    continue;
                }
                let got = fix.radius_for(level_floor(level), q, 30.0, 1.25);
                assert!(
                    (got - want).abs() < 1e-6,
                    "{name} level {level} q{q}: {got} vs {want}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
}

fn json_sample(name: &str) -> Vec<u8> {
    common::ext_bytes(&format!("real-formats/02-json-samples/{name}"))
}

fn web(body: &[u8], url: &str) -> stormbell::feeds::Parsed {
    stormbell::feeds::typhoon_web::parse(body, url, ts("2026-10-07T00:00:00Z")).unwrap()
}

fn tracks_of(p: &stormbell::feeds::Parsed) -> Vec<&Track> {
    p.items
        .iter()
        .filter_map(|i| match &i.observation {
            stormbell::feeds::Observation::Track(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn the_national_services_jsonp_longitude_first() {
    // One layer of parentheses; longitude before latitude; a TD with no radii, moving "no".
    let p = web(
        &json_sample("nmc_view_3227033_BOLAVEN_0523_firstpoint.jsonp"),
        "view_3227033",
    );
    let t = tracks_of(&p)[0];
    assert_eq!(
        (t.storm.as_str(), t.name.as_str(), t.name_en.as_str()),
        ("523", "布拉万", "BOLAVEN")
    );
    let x = &t.points[0];
    assert_eq!((x.lat, x.lon), (8.8, 129.6));
    assert_eq!(x.time, ts("2005-11-14T00:00:00Z"));
    assert_eq!(
        (x.pressure_hpa, x.wind_ms, x.move_dir.as_deref()),
        (Some(1002.0), Some(15.0), None)
    );
    assert!(x.r7.is_none() && t.forecasts.is_empty());

    // Saudel's point at 2026-08-21 21Z: radii NE,SE,SW,NW; CMA's forecasts by lead time.
    let (out, ok) = read::read(
        "auto",
        "saudel.json",
        &json_sample("nmc_view_3304099_SAUDEL_2618_point_202608212100.excerpt.json"),
        ts("2026-08-22T00:00:00Z"),
    );
    assert!(ok);
    let f = &out[0];
    assert_eq!(
        (f["lat"].as_f64(), f["lon"].as_f64()),
        (Some(17.7), Some(147.5))
    );
    assert_eq!(f["time"], "2026-08-21T21:00:00Z");
    assert_eq!(f["category"], "TY");
    assert_eq!(
        f["radii_km"],
        serde_json::json!({
            "30kt": {"ne": 380, "se": 420, "sw": 400, "nw": 350},
            "50kt": {"ne": 80, "se": 80, "sw": 150, "nw": 150},
            "64kt": {"ne": 40, "se": 40, "sw": 60, "nw": 60},
        })
    );
    let fc = f["forecasts"].as_array().unwrap();
    assert_eq!(fc.len(), 8);
    assert_eq!(fc[0]["time"], "2026-08-22T09:00:00Z");
    assert_eq!(
        (fc[0]["lat"].as_f64(), fc[0]["lon"].as_f64()),
        (Some(19.0), Some(145.8))
    );
    assert_eq!(fc[7]["hours"], 120);
}

#[test]
fn the_national_services_lists_with_one_or_two_layers_lead_to_the_active_storms() {
    let url = "http://typhoon.nmc.cn/weatherservice/typhoon/jsons/list_default?t=1";
    // Two layers of parentheses, a name with a trailing newline, a nameless depression.
    let p = web(
        &json_sample("nmc_list_default_2026-10-07_excerpt.jsonp"),
        url,
    );
    let links: Vec<&str> = p.follow.iter().map(|l| l.url.as_str()).collect();
    assert_eq!(
        links,
        [
            "http://typhoon.nmc.cn/weatherservice/typhoon/jsons/view_3346033",
            "http://typhoon.nmc.cn/weatherservice/typhoon/jsons/view_3346168",
            "http://typhoon.nmc.cn/weatherservice/typhoon/jsons/view_3341981",
        ]
    );
    assert!(p.skipped.iter().any(|s| s.what.ends_with("小熊")));
    for name in [
        "nmc_list_1950_excerpt.jsonp",
        "nmc_list_2024_nameless_entry.jsonp",
    ] {
        let p = web(&json_sample(name), url);
        assert!(p.follow.is_empty() && p.items.is_empty(), "{name}");
    }
    // The same list with one layer.
    let single = String::from_utf8(json_sample("nmc_list_default_2026-10-07_excerpt.jsonp"))
        .unwrap()
        .replacen("((", "(", 1)
        .replacen("}))", "})", 1);
    assert_eq!(web(single.as_bytes(), url).follow.len(), 3);
    // The quoted research note is not one document: refused with a reason, not a crash.
    let (out, ok) = read::read(
        "typhoon_web",
        "notes.txt",
        &json_sample("nmc_small_endpoints_2026-09-13.txt"),
        ts("2026-10-07T00:00:00Z"),
    );
    assert!(!ok && out[0]["kind"] == "refused", "{out:?}");
}

#[test]
fn the_zhejiang_service_ne_se_nw_sw_beijing_time_and_five_agencies() {
    let derived = web(
        &json_sample("zj_TyphoonInfo_202116_MINDULLE.derived.json"),
        "x",
    );
    // The repository copy wrapped in a script assignment reads the same.
    let script = web(
        &json_sample("zj_TyphoonInfo_202116_MINDULLE_2021.data.js"),
        "x",
    );
    let (a, b) = (tracks_of(&derived)[0], tracks_of(&script)[0]);
    assert_eq!(a, b);
    assert_eq!(
        (a.storm.as_str(), a.name.as_str(), a.name_en.as_str()),
        ("202116", "蒲公英", "MINDULLE")
    );
    assert_eq!(a.points.len(), 52);
    let (out, ok) = read::read(
        "auto",
        "mindulle.json",
        &json_sample("zj_TyphoonInfo_202116_MINDULLE.derived.json"),
        ts("2021-10-02T00:00:00Z"),
    );
    assert!(ok);
    assert_eq!(out.iter().filter(|l| l["kind"] == "typhoon").count(), 52);
    // "2021/9/27 5:00:00" Beijing time; radius7 "320|300|320|350" is NE|SE|NW|SW.
    let p = a
        .points
        .iter()
        .find(|p| p.time == ts("2021-09-26T21:00:00Z"))
        .unwrap();
    let r7 = p.r7.unwrap();
    assert_eq!((r7.ne, r7.se, r7.sw, r7.nw), (320.0, 300.0, 350.0, 320.0));
    let r10 = p.r10.unwrap();
    assert_eq!(
        (r10.ne, r10.se, r10.sw, r10.nw),
        (180.0, 180.0, 200.0, 180.0)
    );
    assert_eq!(
        (p.lat, p.lon, p.wind_ms, p.pressure_hpa),
        (19.6, 136.7, Some(55.0), Some(930.0))
    );
    // Five agencies' forecasts from that point, by name; the first point (the analysis again)
    // left out; a missing pressure is missing, not zero.
    let from_here: Vec<&stormbell::feeds::typhoon::Forecast> =
        a.forecasts.iter().filter(|f| f.issued == p.time).collect();
    let mut names: Vec<&str> = from_here.iter().map(|f| f.agency.as_str()).collect();
    names.sort();
    assert_eq!(names, ["中国", "中国台湾", "中国香港", "日本", "美国"]);
    let hk = from_here.iter().find(|f| f.agency == "中国香港").unwrap();
    assert!(hk.points.iter().all(|x| x.time > p.time));
    assert!(hk.points.iter().any(|x| x.pressure_hpa.is_none()));
    // The printed fix carries CMA's forecast only.
    let line = out
        .iter()
        .find(|l| l["time"] == "2021-09-26T21:00:00Z")
        .unwrap();
    let cn = from_here.iter().find(|f| f.agency == "中国").unwrap();
    assert_eq!(line["forecasts"].as_array().unwrap().len(), cn.points.len());
}

fn cap_sample(name: &str) -> Vec<u8> {
    common::ext_bytes(&format!("real-formats/04-cap-samples/{name}"))
}

/// (identifier, event, severity, area code, sent, expires) of each alert a document yields.
fn warnings(body: &[u8]) -> Vec<(String, String, String, String, String, Option<String>)> {
    let p = stormbell::feeds::warning_json::parse(body, "x").unwrap();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    p.items
        .iter()
        .map(|i| match &i.observation {
            stormbell::feeds::Observation::Alert(a) => {
                let info = &a.alert.infos[0];
                (
                    a.alert.identifier.clone(),
                    info.event.clone(),
                    info.severity.as_str().to_string(),
                    info.areas[0].geocodes[0].value.clone(),
                    a.alert.sent.to_string(),
                    info.expires.as_ref().map(|e| e.to_string()),
                )
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn the_weather_services_warning_json_with_their_own_code_tables() {
    let nmc: Value =
        serde_json::from_slice(&cap_sample("nmc_rest_findAlarm_samples.json")).unwrap();
    // findAlarm: the hazard and level only in the picture's code (0007 大风, 004 blue).
    let w = warnings(nmc["sample_2023_06_05"].to_string().as_bytes());
    assert_eq!(
        w,
        [(
            "41062241600000_20230605160643".to_string(),
            "大风蓝色预警".to_string(),
            "Minor".to_string(),
            "410622000000".to_string(),
            "2023-06-05T16:06:00+08:00".to_string(),
            None
        )]
    );
    let w = warnings(nmc["extra_rows_2026_08_07"].to_string().as_bytes());
    assert_eq!(w[0].1, "山洪蓝色预警");
    assert_eq!(w[0].3, "330000000000");
    assert_eq!(
        (w[1].1.as_str(), w[1].2.as_str()),
        ("地质灾害黄色预警", "Moderate")
    );

    // weather.cma.cn: eventType and an upper-case severity word; a row without `type`.
    let cma: Value =
        serde_json::from_slice(&cap_sample("weather_cma_cn_api_now_alarm_samples.json")).unwrap();
    let w = warnings(cma["beijing_54511_2025-06-14"].to_string().as_bytes());
    assert_eq!(
        (w[0].1.as_str(), w[0].2.as_str(), w[0].4.as_str()),
        ("暴雨蓝色预警", "Minor", "2025-06-14T08:25:00+08:00")
    );
    let w = warnings(cma["guangzhou_59287_2020-10-12"].to_string().as_bytes());
    assert_eq!(
        (w[0].1.as_str(), w[0].2.as_str()),
        ("其它气象灾害橙色预警", "Severe")
    );
    let w = warnings(cma["jian_2025-03-13"].to_string().as_bytes());
    assert_eq!(
        w.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
        ["大雾橙色预警", "冰雹橙色预警"]
    );

    // weather.com.cn's detail: a script, its own table, levels the other way round (02 is
    // yellow there, orange at nmc), and the time it is lifted.
    let page = String::from_utf8(cap_sample(
        "weather_com_cn_alarmMap_row_and_detail_2026-10-06.txt",
    ))
    .unwrap();
    let detail = page
        .lines()
        .find(|l| l.starts_with("var alarminfo="))
        .unwrap();
    let w = warnings(detail.as_bytes());
    assert_eq!(
        w,
        [(
            "65402641600000_20261006212927".to_string(),
            "雷电黄色预警".to_string(),
            "Moderate".to_string(),
            "654026000000".to_string(),
            "2026-10-06T21:29:27+08:00".to_string(),
            Some("2026-10-07T09:29:27+08:00".to_string())
        )]
    );
    // auto recognises them.
    assert_eq!(read::detect(detail.as_bytes()), Some("warning_json"));
    assert_eq!(
        read::detect(nmc["sample_2023_06_05"].to_string().as_bytes()),
        Some("warning_json")
    );
}
