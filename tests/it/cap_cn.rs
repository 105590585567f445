//! The Chinese national dialect: read into the CAP 1.2 model, written back, and mapped to and
//! from OASIS CAP — each direction of the documented mapping (src/cap/cn.rs) tested.

use crate::common;

use stormbell::cap::{self, Certainty, Dialect, Limits, MsgType, Options, Profile, Severity, cn};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cap")
            .join(name),
    )
    .unwrap()
}

#[test]
fn reads_the_dialect_into_the_model_with_the_documented_mapping() {
    let parsed = cap::read_alert(&fixture("cn-typhoon-red.xml"), &Limits::default()).unwrap();
    assert_eq!(parsed.dialect, Dialect::Cn);
    let a = &parsed.alert;
    assert_eq!(
        a.sender, "33109841600000",
        "senderCode becomes the OASIS sender"
    );
    assert_eq!(a.sent.to_string(), "2019-08-09T18:30:00+08:00");
    let info = &a.infos[0];
    assert_eq!(info.event, "台风");
    assert_eq!(info.categories, vec![cap::Category::Met]);
    assert_eq!(info.severity, Severity::Extreme, "Red is Extreme");
    assert_eq!(
        info.certainty,
        Certainty::Likely,
        "VeryLikely is Likely (as CAP 1.1 prescribes)"
    );
    assert_eq!(info.sender_name.as_deref(), Some("东溟县气象局"));
    assert_eq!(info.contact.as_deref(), Some("0576-89990000"));
    assert!(
        info.event_codes
            .iter()
            .any(|e| e.value_name == cn::VN_EVENT_TYPE && e.value == "11B01")
    );
    let area = &info.areas[0];
    assert_eq!(area.circles[0].radius_km, 25.0, "25000 m is 25 km");
    let codes: Vec<&str> = area.geocodes.iter().map(|g| g.value.as_str()).collect();
    assert_eq!(codes, ["331098101001", "331098101002", "331098102001"]);
    assert_eq!(info.resources[0].mime_type, "image/jpeg");
}

#[test]
fn a_cancel_references_the_first_alert_as_a_full_triplet() {
    let cancel =
        cap::read_alert(&fixture("cn-typhoon-red-cancel.xml"), &Limits::default()).unwrap();
    assert_eq!(cancel.alert.msg_type, MsgType::Cancel);
    let refs = cancel.alert.references.as_ref().unwrap();
    assert_eq!(refs.len(), 1);
    let first = cap::read_alert(&fixture("cn-typhoon-red.xml"), &Limits::default()).unwrap();
    // The derived triplet names exactly the original alert: sender and identifier match, and
    // the time comes from the identifier, which carries it.
    assert_eq!(refs[0].sender, first.alert.sender);
    assert_eq!(refs[0].identifier, first.alert.identifier);
    assert_eq!(refs[0].sent, first.alert.sent);
}

#[test]
fn dialect_round_trips_through_the_model() {
    for name in ["cn-typhoon-red.xml", "cn-typhoon-red-cancel.xml"] {
        let a = cap::read_alert(&fixture(name), &Limits::default())
            .unwrap()
            .alert;
        let (xml, _notes) = cn::build_cn(&a).unwrap();
        let again = cap::read_alert(xml.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(again.dialect, Dialect::Cn);
        assert_eq!(
            again.alert, a,
            "{name}: cn → model → cn changed the alert\n{xml}"
        );
    }
}

#[test]
fn dialect_to_oasis_and_back_loses_nothing() {
    for name in ["cn-typhoon-red.xml", "cn-typhoon-red-cancel.xml"] {
        let a = cap::read_alert(&fixture(name), &Limits::default())
            .unwrap()
            .alert;
        let oasis = cap::build(&a).unwrap();
        let report = cap::inspect(oasis.as_bytes(), &Options::default());
        assert!(report.is_valid(), "{name} as OASIS: {:?}", report.problems);
        let via_oasis = cap::read_alert(oasis.as_bytes(), &Limits::default())
            .unwrap()
            .alert;
        let (cn_again, _) = cn::build_cn(&via_oasis).unwrap();
        let back = cap::read_alert(cn_again.as_bytes(), &Limits::default())
            .unwrap()
            .alert;
        assert_eq!(back, a, "{name}: cn → oasis → cn changed the alert");
    }
}

#[test]
fn oasis_alerts_that_cannot_be_sent_in_the_dialect_say_why() {
    let bytes =
        std::fs::read(common::external().join("cap/valid/oasiscap/v1dot2_appendix_adot2.xml"))
            .unwrap();
    let r = cap::inspect(
        &bytes,
        &Options {
            profile: Profile::Cn,
            ..Options::default()
        },
    );
    let msgs: Vec<String> = r.errors().map(|p| p.render("x")).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("14-digit national sender code")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("area codes")), "{msgs:?}");
    assert!(r.errors().all(|p| p.line.is_some()));
}

#[test]
fn dialect_rules_are_enforced_when_reading() {
    let good = String::from_utf8(fixture("cn-typhoon-red.xml")).unwrap();
    let cases = [
        (
            "<severity>Red</severity>",
            "<severity>Purple</severity>",
            "cn.severity",
        ),
        (
            "<status>Actual</status>",
            "<status>Exercise</status>",
            "cn.status",
        ),
        (
            "<senderCode>33109841600000</senderCode>",
            "<senderCode>3310984160</senderCode>",
            "cn.sender-code",
        ),
        ("331098101002,", "33109810100,", "cn.area-code"),
        (
            "<sendTime>2019-08-09 18:30:00+08:00</sendTime>",
            "<sendTime>2019/08/09 18:30</sendTime>",
            "cn.time",
        ),
        ("<headline>", "<headlinex>", "cn.missing"),
    ];
    for (from, to, code) in cases {
        let bad = good.replacen(from, to, 1).replacen(
            "</headline>",
            if to == "<headlinex>" {
                "</headlinex>"
            } else {
                "</headline>"
            },
            1,
        );
        assert_ne!(bad, good, "{from} not found");
        let r = cap::inspect(bad.as_bytes(), &Options::default());
        assert!(
            r.errors().any(|p| p.code == code && p.line.is_some()),
            "{to}: expected {code}, got {:?}",
            r.problems
        );
    }
}
