//! Property tests: random valid alerts survive build → parse unchanged, and what the builder
//! writes passes our own strict validation. (The corpus test holds the builder to the official
//! XSD through xmllint; this one explores shapes the corpus does not have.)

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use stormbell::cap::*;

/// Text as real alerts carry it: Chinese, markup characters, quotes, CR/LF, leading spaces.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,30}",
        "[\\u{4e00}-\\u{9fa5}，。：；！（）、 ]{0,30}",
        "[a-z<>&\"' \\r\\n\\t]{0,20}",
        Just("山洪灾害红色预警：请立即转移到安全地点\r\n1. 先人员、后财产".to_string()),
    ]
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:@/-]{1,32}"
}

fn datetime() -> impl Strategy<Value = CapDateTime> {
    (
        1990i16..2100,
        1i8..=12,
        1i8..=28,
        0i8..24,
        0i8..60,
        0i8..60,
        -48i32..=56,
    )
        .prop_map(|(y, mo, d, h, mi, s, q)| {
            let civil = jiff::civil::date(y, mo, d).at(h, mi, s, 0);
            let offset = jiff::tz::Offset::from_seconds(q * 15 * 60).unwrap();
            CapDateTime::new(civil, offset).unwrap()
        })
}

fn point() -> impl Strategy<Value = Point> {
    (-90.0f64..=90.0, -180.0f64..=180.0).prop_map(|(lat, lon)| Point { lat, lon })
}

fn polygon() -> impl Strategy<Value = Polygon> {
    vec(point(), 3..8).prop_map(|mut pts| {
        pts.push(pts[0]);
        Polygon { points: pts }
    })
}

fn pair() -> impl Strategy<Value = ValuePair> {
    (text(), text()).prop_map(|(n, v)| ValuePair::new(n, v))
}

fn area() -> impl Strategy<Value = Area> {
    (
        text(),
        vec(polygon(), 0..3),
        vec((point(), 0.0f64..500.0), 0..3),
        vec(
            ("[0-9]{12}").prop_map(|c| ValuePair::new("CN:areaCode", c)),
            0..4,
        ),
        option::of(-1000.0f64..30000.0),
        any::<bool>(),
    )
        .prop_map(
            |(area_desc, polygons, circles, geocodes, altitude, with_ceiling)| Area {
                area_desc,
                polygons,
                circles: circles
                    .into_iter()
                    .map(|(center, radius_km)| Circle { center, radius_km })
                    .collect(),
                geocodes,
                altitude,
                ceiling: altitude.filter(|_| with_ceiling).map(|a| a + 100.0),
            },
        )
}

fn resource() -> impl Strategy<Value = Resource> {
    (
        text(),
        "[a-z]{1,10}/[a-z0-9.+-]{1,12}",
        option::of(any::<u64>()),
        option::of(Just("http://127.0.0.1/a.mp3".to_string())),
        option::of(vec(any::<u8>(), 0..40).prop_map(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b)
        })),
        option::of("[0-9a-f]{40}"),
    )
        .prop_map(
            |(resource_desc, mime_type, size, uri, deref_uri, digest)| Resource {
                resource_desc,
                mime_type,
                size,
                uri,
                deref_uri,
                digest,
            },
        )
}

fn info() -> impl Strategy<Value = Info> {
    (
        (
            option::of(prop_oneof![
                Just("zh-CN".to_string()),
                Just("en-US".to_string()),
                Just("es-419".to_string())
            ]),
            vec(proptest::sample::select(Category::ALL), 1..3),
            text(),
            vec(proptest::sample::select(ResponseType::ALL), 0..3),
            proptest::sample::select(Urgency::ALL),
            proptest::sample::select(Severity::ALL),
            proptest::sample::select(Certainty::ALL),
            option::of(text()),
            vec(pair(), 0..3),
        ),
        (
            option::of(datetime()),
            option::of(datetime()),
            option::of(datetime()),
            option::of(text()),
            option::of(text()),
            option::of(text()),
            option::of(text()),
            option::of(Just("https://127.0.0.1/w".to_string())),
            option::of(text()),
            vec(pair(), 0..3),
            vec(resource(), 0..2),
            vec(area(), 0..3),
        ),
    )
        .prop_map(|(a, b)| Info {
            language: a.0,
            categories: a.1,
            event: a.2,
            response_types: a.3,
            urgency: a.4,
            severity: a.5,
            certainty: a.6,
            audience: a.7,
            event_codes: a.8,
            effective: b.0,
            onset: b.1,
            expires: b.2,
            sender_name: b.3,
            headline: b.4,
            description: b.5,
            instruction: b.6,
            web: b.7,
            contact: b.8,
            parameters: b.9,
            resources: b.10,
            areas: b.11,
        })
}

fn alert() -> impl Strategy<Value = Alert> {
    (
        (
            token(),
            token(),
            datetime(),
            proptest::sample::select(Status::ALL),
            proptest::sample::select(MsgType::ALL),
            option::of(text()),
            proptest::sample::select(Scope::ALL),
            vec(text(), 0..3),
            option::of(text()),
        ),
        (
            vec((token(), token(), datetime()), 1..4),
            option::of(token()),
            vec(info(), 0..3),
            "[a-z ]{0,10}[a-z]",
        ),
    )
        .prop_map(|(a, b)| {
            let (identifier, sender, sent, status, msg_type, source, scope, codes, note) = a;
            let (refs, incidents, infos, who) = b;
            // Keep the specification's cross-field rules, so the alert is valid as well as
            // representable: references for non-Alerts, recipients for Private, etc.
            let mut references: Vec<Reference> = Vec::new();
            for (s, i, t) in refs {
                let r = Reference {
                    sender: s,
                    identifier: i,
                    sent: t,
                };
                if !references.contains(&r) {
                    references.push(r);
                }
            }
            Alert {
                identifier,
                sender,
                sent,
                status,
                msg_type,
                source,
                scope,
                restriction: (scope == Scope::Restricted).then(|| who.clone()),
                addresses: (scope == Scope::Private).then(|| who.clone()),
                codes,
                note,
                references: (msg_type != MsgType::Alert).then_some(references),
                incidents,
                infos,
                signatures: Vec::new(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn build_then_parse_gives_the_same_alert(a in alert()) {
        let xml = build(&a).unwrap();
        let back = read_alert(xml.as_bytes(), &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(&back.alert, &a);
        let report = inspect(xml.as_bytes(), &Options::default());
        let errors: Vec<String> = report.errors().map(|p| p.render("built")).collect();
        prop_assert!(errors.is_empty(), "{:?}\n{}", errors, xml);
    }

    #[test]
    fn json_round_trips_too(a in alert()) {
        let json = serde_json::to_string(&a).unwrap();
        let back: Alert = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, a);
    }
}
