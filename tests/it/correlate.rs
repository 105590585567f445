//! The correlate engine on the synthetic county (东溟县, fixtures/county): each hazard's
//! tiers, upgrades, downgrades and lifts at the simulated times the rules say, and every
//! warning it writes valid CAP 1.2 under Google's profile.

use crate::common;

use common::gauge_rain as rain;

use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use stormbell::cap::{self, Options, Profile};
use stormbell::correlate::engine::{Emitted, Engine};
use stormbell::correlate::lifecycle::{Change, MessageKind};
use stormbell::correlate::warning::Issuer;
use stormbell::correlate::{Hazard, Rules, Tier};
use stormbell::feeds::Observation;
use stormbell::feeds::fire::{FireBatch, FireWeather};
use stormbell::registry::{self, Registry};

fn county() -> Arc<Registry> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    let (loaded, _) = registry::check_dir(&dir, registry::Encoding::Auto);
    Arc::new(Registry::new(loaded.data))
}

/// The office of the built-in configuration (the synthetic county), issuing exercises.
fn issuer() -> Issuer {
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    Issuer {
        status: stormbell::cap::model::Status::Exercise,
        ..cfg.issuer()
    }
}

fn engine() -> Engine {
    Engine::new(Rules::national(), issuer(), county())
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Every message valid under the Google profile (errors only; warnings allowed).
fn assert_valid(emitted: &[Emitted]) {
    for e in emitted {
        for i in &e.issued {
            let report = cap::inspect(
                i.xml.as_bytes(),
                &Options {
                    profile: Profile::Google,
                    limits: cap::Limits::default(),
                },
            );
            let errors: Vec<String> = report.errors().map(|p| p.render(&i.identifier)).collect();
            assert!(
                errors.is_empty(),
                "{}:\n{}\n{}",
                i.identifier,
                errors.join("\n"),
                i.xml
            );
        }
    }
}

/// Feed hourly rain (mm per hour, starting at `start`), evaluating every 10 minutes; returns
/// every decision for one lineage with its simulated time.
fn run_rain(
    e: &mut Engine,
    start: Timestamp,
    hourly: &[f64],
    until_hours: i64,
    lineage: &str,
) -> Vec<(Timestamp, Emitted)> {
    let mut out = Vec::new();
    let mut inbox = 0;
    for step in 0..(until_hours * 6) {
        let now = start + SignedDuration::from_mins(step * 10);
        if step % 6 == 0 && step > 0 {
            let h = (step / 6 - 1) as usize;
            if let Some(mm) = hourly.get(h) {
                inbox += 1;
                e.observe(&rain(now, *mm), inbox);
            }
        }
        let ev = e.evaluate(now);
        assert!(ev.problems.is_empty(), "{:?}", ev.problems);
        assert_valid(&ev.emitted);
        out.extend(
            ev.emitted
                .into_iter()
                .filter(|x| x.lineage == lineage)
                .map(|x| (now, x)),
        );
    }
    out
}

#[test]
fn flash_flood_prepares_then_moves_then_waits_to_lift() {
    // FF331098001: 1 h prepare 35 / move 45; 3 h 60 / 80.
    let mut e = engine();
    let start = at("2019-08-09T10:00:00+08:00");
    let hourly = [5.0, 38.0, 20.0, 30.0, 2.0, 0.0, 0.0, 0.0, 0.0];
    let got = run_rain(&mut e, start, &hourly, 12, "flash_flood:FF331098001");
    let times: Vec<(i64, MessageKind, Tier)> = got
        .iter()
        .map(|(t, x)| {
            (
                t.duration_since(start).as_mins(),
                x.decision.send,
                x.state.tier,
            )
        })
        .collect();
    // 12:00: 38 mm in the last hour ≥ 35 → prepare (orange). 13:00: 3 h = 63 (≥ 60, < 80),
    // 1 h = 20: still orange. 14:00: 3 h = 88 ≥ 80 → move now (red), at once.
    assert_eq!(
        times[0],
        (120, MessageKind::Alert, Tier::Orange),
        "{times:?}"
    );
    assert_eq!(times[1], (240, MessageKind::Update, Tier::Red), "{times:?}");
    // The rain stops at 15:00 (2 mm). The 3 h sum falls below 80 × 0.9 at 16:00 (52 mm) and
    // the 1 h below 35 × 0.9: every threshold clears at 17:00 (3 h = 32 ≥ 60 × 0.9? no).
    // Red stands at least 180 min (from 14:00) and the lift waits 180 min of all-clear, so
    // nothing is sent before 14:00 + 180 min, and the lift comes last.
    let last = times.last().unwrap();
    assert_eq!(last.1, MessageKind::Cancel, "{times:?}");
    assert!(times[2..].iter().all(|t| t.0 >= 240 + 180), "{times:?}");
    let red = &got[1].1;
    assert!(red.decision.raises);
    assert_eq!(red.targets.tier, Tier::Red);
    assert_eq!(red.targets.places[0].id, "FF331098001");
    assert_eq!(red.targets.evacuate, 172, "the zone's people to move");
    assert!(
        red.targets
            .contacts
            .iter()
            .any(|c| c.target == "FF331098001"),
        "whoever answers for the zone is called: {:?}",
        red.targets.contacts
    );
    assert!(
        red.targets.contacts.iter().any(|c| c.level == "county"),
        "and up the ladder"
    );
    let xml = &red.issued[0].xml;
    assert!(xml.contains("<msgType>Update</msgType>") && xml.contains("<references>"));
    assert!(xml.contains("立即转移"), "{xml}");
    assert!(xml.contains("+08:00</sent>"));
}

#[test]
fn a_value_hovering_at_the_threshold_does_not_flap() {
    let mut e = engine();
    let start = at("2019-08-09T10:00:00+08:00");
    // 3 h sums: 51, 49, 48, 49, 52, 51, 49, 49 — across the orange 50 mm line for hours at a
    // time, never below 50 × 0.9. Without hysteresis this would go orange → yellow → orange.
    let hourly = [17.0, 17.0, 17.0, 15.0, 16.0, 18.0, 18.0, 15.0, 16.0, 18.0];
    let mut sends = Vec::new();
    let mut inbox = 0;
    for step in 0..(11 * 6) {
        let now = start + SignedDuration::from_mins(step * 10);
        if step % 6 == 0 && step > 0 {
            inbox += 1;
            e.observe(&rain(now, hourly[(step / 6 - 1) as usize]), inbox);
        }
        for x in e.evaluate(now).emitted {
            if x.state.hazard == Hazard::Rainstorm {
                sends.push((step, x.lineage.clone(), x.decision.send, x.state.tier));
            }
        }
    }
    assert!(!sends.is_empty());
    assert!(
        sends
            .iter()
            .all(|s| s.2 == MessageKind::Alert && s.3 == Tier::Orange),
        "one orange alert per town, nothing after: {sends:?}"
    );
}

#[test]
fn rainstorm_tiers_follow_the_national_table_per_town() {
    let mut e = engine();
    let start = at("2019-08-09T10:00:00+08:00");
    // 3 h of 20 mm (60 in 3 h: orange), then 45/h (135 in 3 h: red).
    let hourly = [20.0, 20.0, 20.0, 45.0, 45.0, 45.0];
    let mut all = Vec::new();
    let mut inbox = 0;
    for h in 0..7i64 {
        let now = start + SignedDuration::from_hours(h);
        if h > 0 {
            inbox += 1;
            e.observe(&rain(now, hourly[(h - 1) as usize]), inbox);
        }
        let ev = e.evaluate(now);
        assert_valid(&ev.emitted);
        all.extend(
            ev.emitted
                .into_iter()
                .filter(|x| x.state.hazard == Hazard::Rainstorm)
                .map(|x| (h, x)),
        );
    }
    let tiers: Vec<(i64, Tier)> = all.iter().map(|(h, x)| (*h, x.state.tier)).collect();
    // 3 h: 60 mm ≥ 50 in 3 h → orange at 13:00; 20+20+45 = 85 (orange); 20+45+45 = 110 ≥ 100
    // → red at 15:00.
    assert!(tiers.contains(&(3, Tier::Orange)), "{tiers:?}");
    assert!(tiers.contains(&(5, Tier::Red)), "{tiers:?}");
    assert!(!tiers.iter().any(|(h, t)| *t == Tier::Red && *h < 5));
    // The area is the town; its villages near the gauge are named.
    let red = &all.iter().find(|(h, _)| *h == 5).unwrap().1;
    assert!(
        red.lineage.starts_with("rainstorm:331098"),
        "{}",
        red.lineage
    );
    assert!(!red.targets.places.is_empty());
}

fn dry_day(date: jiff::civil::Date, station: &str, lon: f64, lat: f64) -> FireWeather {
    FireWeather {
        station: station.into(),
        lon,
        lat,
        date,
        temp_c: 33.0,
        rh: 18.0,
        wind_kmh: 30.0,
        rain_mm: 0.0,
    }
}

#[test]
fn wildfire_danger_rises_with_dry_days_and_lifts_after_rain() {
    let mut e = engine();
    // A station beside 桃湾村山林 (FO331098001, 120.959, 28.120).
    let (lon, lat) = (120.96, 28.12);
    let mut date = jiff::civil::date(2022, 8, 1);
    let mut tiers = Vec::new();
    let mut lifted = None;
    for day in 0..20 {
        let mut w = dry_day(date, "58666", lon, lat);
        if day >= 12 {
            w.rain_mm = 25.0;
            w.rh = 95.0;
            w.temp_c = 22.0;
            w.wind_kmh = 5.0;
        }
        e.observe(&Observation::Fire(FireBatch::Weather(vec![w])), day + 1);
        for hour in [14, 20] {
            let now = date
                .at(hour, 0, 0, 0)
                .in_tz("Asia/Shanghai")
                .unwrap()
                .timestamp();
            let ev = e.evaluate(now);
            assert_valid(&ev.emitted);
            for x in ev
                .emitted
                .into_iter()
                .filter(|x| x.lineage == "wildfire:FO331098001")
            {
                if x.decision.send == MessageKind::Cancel {
                    lifted = Some(day);
                } else {
                    tiers.push((day, x.state.tier));
                }
            }
        }
        date = date.tomorrow().unwrap();
    }
    assert!(!tiers.is_empty());
    assert!(
        tiers.windows(2).all(|w| w[0].1 <= w[1].1 || w[1].0 >= 12),
        "rising while dry: {tiers:?}"
    );
    assert_eq!(
        tiers.iter().filter(|t| t.0 < 12).map(|t| t.1).max(),
        Some(Tier::Red)
    );
    let lifted = lifted.expect("lifted after the rain");
    assert!(lifted >= 12, "{lifted}");
}

fn upstream_alert(
    identifier: &str,
    msg_type: &str,
    sent: &str,
    references: Option<&str>,
    (event, code): (&str, &str),
    geocode: &str,
    expires: &str,
) -> Observation {
    let refs = references
        .map(|r| format!("<references>{r}</references>"))
        .unwrap_or_default();
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>qxj.taizhou.example.cn</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {refs}
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>{event}</event>
    <urgency>Expected</urgency>
    <severity>Moderate</severity>
    <certainty>Likely</certainty>
    <eventCode><valueName>CN-11B</valueName><value>{code}</value></eventCode>
    <expires>{expires}</expires>
    <headline>台州市地质灾害气象风险{event}（合成）</headline>
    <area><areaDesc>东溟县桃林镇</areaDesc><geocode><valueName>GB/T 2260</valueName><value>{geocode}</value></geocode></area>
  </info>
</alert>"#
    );
    let alert = cap::read_alert(xml.as_bytes(), &cap::Limits::default())
        .unwrap()
        .alert;
    Observation::Alert(Box::new(stormbell::feeds::UpstreamAlert {
        url: "http://127.0.0.1/synthetic".into(),
        alert,
        dialect: "oasis".into(),
        digest: "d".into(),
        problems: Vec::new(),
        lineage: None,
        expired: false,
    }))
}

#[test]
fn geological_risk_areas_warn_the_sites_inside_and_blue_stays_internal() {
    let mut e = engine();
    let reg = county();
    let town = "331098109"; // the town of GH331098002 (新岗村东侧崩塌, village 331098109201)
    let sites_in_town: Vec<String> = reg
        .data
        .sites
        .iter()
        .filter(|s| {
            s.kind == registry::SiteKind::GeoHazard
                && s.villages.iter().any(|v| v.starts_with(town))
        })
        .map(|s| s.id.clone())
        .collect();
    assert!(sites_in_town.contains(&"GH331098002".to_string()));
    let now = at("2019-08-09T17:05:00+08:00");
    e.observe(
        &upstream_alert(
            "GEO-1",
            "Alert",
            "2019-08-09T17:00:00+08:00",
            None,
            ("地质灾害气象风险黄色预警", "11B37"),
            town,
            "2019-08-10T17:00:00+08:00",
        ),
        1,
    );
    let ev = e.evaluate(now);
    assert_valid(&ev.emitted);
    let geo: Vec<&Emitted> = ev
        .emitted
        .iter()
        .filter(|x| x.state.hazard == Hazard::GeoHazard)
        .collect();
    let mut warned: Vec<String> = geo.iter().map(|x| x.state.area.clone()).collect();
    warned.sort();
    let mut want = sites_in_town.clone();
    want.sort();
    assert_eq!(warned, want, "exactly the sites in the risk area");
    assert!(
        geo.iter()
            .all(|x| x.state.tier == Tier::Yellow && !x.state.restricted)
    );
    assert!(geo[0].issued[0].xml.contains("<scope>Public</scope>"));
    // Not relayed a second time as a plain upstream alert.
    assert!(
        !ev.emitted
            .iter()
            .any(|x| x.state.hazard == Hazard::Upstream)
    );

    let geo_root = "qxj.taizhou.example.cn,GEO-1,2019-08-09T17:00:00+08:00";
    // Lowered upstream to blue: after the hold, the sites go to blue, for officials only.
    e.observe(
        &with_root(
            upstream_alert(
                "GEO-2",
                "Update",
                "2019-08-09T20:00:00+08:00",
                Some(geo_root),
                ("地质灾害气象风险蓝色预警", "11B37"),
                town,
                "2019-08-10T20:00:00+08:00",
            ),
            geo_root,
        ),
        2,
    );
    let mut downgraded = Vec::new();
    for m in (0..=240).step_by(30) {
        let ev = e.evaluate(at("2019-08-09T20:00:00+08:00") + SignedDuration::from_mins(m));
        assert_valid(&ev.emitted);
        downgraded.extend(
            ev.emitted
                .into_iter()
                .filter(|x| x.lineage == "geo_hazard:GH331098002")
                .map(|x| (m, x)),
        );
    }
    assert_eq!(downgraded.len(), 1, "one downgrade");
    let (m, d) = &downgraded[0];
    assert!(*m >= 60, "a downgrade waits for its hold: {m}");
    assert!(d.decision.changes.contains(&Change::Downgrade {
        from: Tier::Yellow,
        to: Tier::Blue
    }));
}

#[test]
fn upstream_alerts_are_relayed_to_the_villages_they_cover_and_lifted_when_cancelled() {
    let mut e = engine();
    let reg = county();
    let town = "331098108";
    let in_town = reg
        .data
        .villages
        .iter()
        .filter(|v| v.code.starts_with(town))
        .count();
    e.observe(
        &upstream_alert(
            "TY-1",
            "Alert",
            "2019-08-09T08:00:00+08:00",
            None,
            ("台风橙色预警", "11B01"),
            town,
            "2019-08-10T08:00:00+08:00",
        ),
        1,
    );
    let ev = e.evaluate(at("2019-08-09T08:05:00+08:00"));
    assert_valid(&ev.emitted);
    let relay = ev
        .emitted
        .iter()
        .find(|x| x.state.hazard == Hazard::Upstream)
        .expect("relayed");
    assert_eq!(
        relay.state.tier,
        Tier::Orange,
        "the colour word decides the tier"
    );
    assert_eq!(relay.state.places.len(), in_town);
    let relay_id = relay.issued[0].identifier.clone();
    let root = "qxj.taizhou.example.cn,TY-1,2019-08-09T08:00:00+08:00";
    e.observe(
        &with_root(
            upstream_alert(
                "TY-2",
                "Cancel",
                "2019-08-09T10:00:00+08:00",
                Some(root),
                ("台风橙色预警", "11B01"),
                town,
                "2019-08-10T08:00:00+08:00",
            ),
            root,
        ),
        2,
    );
    // A Cancel upstream lifts the relay at once, not after the lift hold.
    let ev = e.evaluate(at("2019-08-09T10:05:00+08:00"));
    let lifted = ev
        .emitted
        .iter()
        .find(|x| x.state.hazard == Hazard::Upstream)
        .expect("lifted");
    assert_eq!(lifted.decision.send, MessageKind::Cancel);
    assert_eq!(lifted.lineage, format!("upstream:{root}"));
    let xml = &lifted.issued[0].xml;
    assert!(
        xml.contains("<msgType>Cancel</msgType>") && xml.contains(&relay_id),
        "{xml}"
    );
    assert!(e.lineages().next().is_none());
}

#[test]
fn a_relayed_upstream_warning_names_its_hazard_in_every_text() {
    // A rainstorm warning from upstream, relayed to the villages of one town. The texts used
    // to read "…等N处预警红色预警", never saying 暴雨.
    let mut e = engine();
    let reg = county();
    let town = "331098108";
    e.observe(
        &upstream_alert(
            "RS-1",
            "Alert",
            "2019-08-09T08:00:00+08:00",
            None,
            ("暴雨红色预警", "11B03"),
            town,
            "2019-08-10T08:00:00+08:00",
        ),
        1,
    );
    let ev = e.evaluate(at("2019-08-09T08:05:00+08:00"));
    let relay = ev
        .emitted
        .iter()
        .find(|x| x.state.hazard == Hazard::Upstream)
        .expect("relayed");
    // The CAP event is the hazard, not the upstream's whole title.
    let xml = &relay.issued[0].xml;
    assert!(xml.contains("<event>暴雨</event>"), "{xml}");
    let t = stormbell::correlate::warning::targets(&reg, &relay.state, &relay.decision, vec![]);
    let policy = stormbell::dispatch::outbox::Policy::default();
    let zh = stormbell::dispatch::outbox::render_one(
        &stormbell::dispatch::outbox::words(&t, "zh-CN"),
        &policy,
        None,
    )
    .unwrap();
    assert!(zh.contains("暴雨红色预警"), "{zh}");
    assert!(!zh.contains("预警红色预警"), "{zh}");
    let en_policy = stormbell::dispatch::outbox::Policy {
        lang: "en".into(),
        ..policy.clone()
    };
    let en = stormbell::dispatch::outbox::render_one(
        &stormbell::dispatch::outbox::words(&t, "en"),
        &en_policy,
        None,
    )
    .unwrap();
    assert!(en.contains("Rainstorm"), "{en}");
    // Several warnings in one text name it too.
    let merged = stormbell::dispatch::outbox::render_merged(
        &[
            stormbell::dispatch::outbox::words(&t, "zh-CN"),
            stormbell::dispatch::outbox::words(&t, "zh-CN"),
        ],
        &policy,
        None,
    )
    .unwrap();
    assert!(merged.contains("暴雨红色预警"), "{merged}");
    // Without a code the alert's own words are read: the colour and "预警" taken off.
    assert_eq!(
        stormbell::cap::cn::hazard_name("山洪灾害橙色预警", None, "zh-CN").as_deref(),
        Some("山洪灾害")
    );
    assert_eq!(
        stormbell::cap::cn::hazard_name("Flood Warning", None, "en").as_deref(),
        Some("Flood")
    );
    assert_eq!(
        stormbell::cap::cn::hazard_name("红色预警", None, "zh-CN"),
        None
    );
}

fn with_root(obs: Observation, root: &str) -> Observation {
    match obs {
        Observation::Alert(mut a) => {
            a.lineage = Some(stormbell::feeds::Lineage {
                root: root.to_string(),
                missing: Vec::new(),
            });
            Observation::Alert(a)
        }
        other => other,
    }
}

/// The national early-warning system's CAP as it really is (a real 12379 alert: no namespace,
/// `sendTime`, `senderCode`, `eventType`, datetimes with a space, empty `<onset/>` and
/// `<expires/>`, `audenceprt`, duplicated area codes, an Update whose first issue never
/// arrived) is read, and relayed to the villages its area codes cover.
#[test]
fn the_national_systems_own_cap_is_read_and_relayed() {
    use stormbell::feeds::FeedKind;
    let real = common::ext_bytes(
        "real-formats/04-cap-samples/cap_12379_henan_2020-02-05_gale_blue_update.xml",
    );
    let read = |body: &[u8]| {
        let kind = stormbell::feeds::cap_feed::CapFeed {
            limits: cap::Limits::default(),
        };
        let parsed = kind
            .parse(&stormbell::feeds::Document {
                feed: "national",
                url: "http://127.0.0.1/12379.xml",
                body,
                digest: "d",
                received: at("2020-02-05T11:00:00+08:00"),
            })
            .unwrap();
        assert_eq!(parsed.items.len(), 1, "{:?}", parsed.problems);
        parsed.items.into_iter().next().unwrap().observation
    };
    let Observation::Alert(a) = read(&real) else {
        panic!("not an alert");
    };
    assert_eq!(a.alert.sender, "41000041600000");
    assert_eq!(a.alert.identifier, "41000041600000_20200205105119");
    assert_eq!(a.alert.sent.to_string(), "2020-02-05T10:45:00+08:00");
    assert_eq!(a.alert.msg_type.as_str(), "Update");
    let info = &a.alert.infos[0];
    assert_eq!(info.event, "大风");
    assert!(info.expires.is_none() && info.onset.is_none());
    let codes: Vec<&str> = info.areas[0]
        .geocodes
        .iter()
        .map(|g| g.value.as_str())
        .collect();
    assert_eq!(codes, ["410000000000"]);
    // The misspelt `audenceprt` is read as audiencePrt (its value here is a lone comma).
    assert!(
        info.parameters
            .iter()
            .any(|p| p.value_name.ends_with(":SMS:audiencePrt") && p.value == ","),
        "{:?}",
        info.parameters
    );

    // The same provincial alert issued by the fixture county's province (330000000000, as the
    // system writes a province): relayed at its colour to every village of the county.
    let local = String::from_utf8(real.clone())
        .unwrap()
        .replace("410000000000", "330000000000");
    let mut e = engine();
    let reg = county();
    e.observe(&read(local.as_bytes()), 1);
    let ev = e.evaluate(at("2020-02-05T11:05:00+08:00"));
    assert_valid(&ev.emitted);
    let relay = ev
        .emitted
        .iter()
        .find(|x| x.state.hazard == Hazard::Upstream)
        .expect("relayed");
    assert_eq!(relay.state.tier, Tier::Blue);
    assert_eq!(relay.state.places.len(), reg.data.villages.len());
    // And for one of its towns only.
    let town = "331098108";
    let one = String::from_utf8(real)
        .unwrap()
        .replace("410000000000", &format!("{town}000"));
    let mut e = engine();
    e.observe(&read(one.as_bytes()), 1);
    let ev = e.evaluate(at("2020-02-05T11:05:00+08:00"));
    let relay = ev
        .emitted
        .iter()
        .find(|x| x.state.hazard == Hazard::Upstream)
        .expect("relayed");
    assert_eq!(
        relay.state.places.len(),
        reg.data
            .villages
            .iter()
            .filter(|v| v.code.starts_with(town))
            .count()
    );
    assert!(relay.issued[0].xml.contains("大风"));
}

/// A warning from the weather services' JSON (a real nmc.cn row: 浙江省水利厅、浙江省气象台
/// 山洪灾害蓝色预警, province 33) is relayed to every village of the fixture county, blue.
#[test]
fn a_provincial_warning_from_the_services_json_is_relayed() {
    let nmc: serde_json::Value = serde_json::from_slice(&common::ext_bytes(
        "real-formats/04-cap-samples/nmc_rest_findAlarm_samples.json",
    ))
    .unwrap();
    let rows = serde_json::Value::Array(vec![nmc["extra_rows_2026_08_07"][0].clone()]);
    let parsed =
        stormbell::feeds::warning_json::parse(rows.to_string().as_bytes(), "http://127.0.0.1/x")
            .unwrap();
    let mut e = engine();
    let reg = county();
    e.observe(&parsed.items[0].observation, 1);
    let ev = e.evaluate(at("2026-08-07T18:30:00+08:00"));
    assert_valid(&ev.emitted);
    let relay = ev
        .emitted
        .iter()
        .find(|x| x.state.hazard == Hazard::Upstream)
        .expect("relayed");
    assert_eq!(relay.state.tier, Tier::Blue);
    assert_eq!(relay.state.places.len(), reg.data.villages.len());
    assert!(relay.issued[0].xml.contains("山洪"));
}
