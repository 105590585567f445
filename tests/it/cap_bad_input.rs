//! Bad input gets one clear error and never a panic or unbounded memory: malformed XML, wrong
//! namespaces, huge documents, entity-expansion attacks, invalid UTF-8, truncation.

use crate::common;

use proptest::prelude::*;
use stormbell::cap::{self, Limits, Options};

fn first_error(bytes: &[u8]) -> (String, Option<u32>, String) {
    let r = cap::inspect(bytes, &Options::default());
    assert!(
        !r.is_valid(),
        "accepted: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    let p = r.errors().next().expect("an error").clone();
    (p.code.to_string(), p.line, p.message)
}

fn sample() -> Vec<u8> {
    std::fs::read(common::external().join("cap/valid/oasiscap/v1dot2_appendix_adot2.xml")).unwrap()
}

#[test]
fn a_50_mb_document_is_refused_unread() {
    let mut big =
        b"<?xml version=\"1.0\"?><alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>"
            .to_vec();
    big.resize(50 * 1024 * 1024, b'x');
    let (code, _, msg) = first_error(&big);
    // Refused by its size, before any parsing: the error is the size's, not the XML's (the
    // body is not even well-formed).
    assert_eq!(code, "xml.too-large");
    assert!(msg.contains("52428800"), "{msg}");
}

#[test]
fn billion_laughs_is_refused_at_the_doctype() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>"#;
    let (code, line, _) = first_error(bomb.as_bytes());
    assert_eq!((code.as_str(), line), ("xml.dtd", Some(2)));
}

#[test]
fn external_entities_without_a_doctype_are_refused() {
    let s = "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n<identifier>&xxe;</identifier></alert>";
    let (code, line, msg) = first_error(s.as_bytes());
    assert_eq!((code.as_str(), line), ("xml.entity", Some(2)));
    assert!(msg.contains("&xxe;"));
}

#[test]
fn invalid_utf8_names_the_line() {
    let mut s = sample();
    let at = s.windows(7).position(|w| w == b"<event>").unwrap() + 7;
    s.insert(at, 0xFF);
    let (code, line, _) = first_error(&s);
    assert_eq!(code, "xml.utf8");
    let expected = 1 + s[..at].iter().filter(|&&b| b == b'\n').count() as u32;
    assert_eq!(line, Some(expected));
}

#[test]
fn malformed_xml_names_the_line() {
    let s = "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n<identifier>a</identifer>\n</alert>";
    let (code, line, _) = first_error(s.as_bytes());
    assert_eq!((code.as_str(), line), ("xml.syntax", Some(2)));
}

#[test]
fn wrong_namespace_is_named() {
    let s = String::from_utf8(sample()).unwrap().replace(
        "urn:oasis:names:tc:emergency:cap:1.2",
        "urn:oasis:names:tc:emergency:cap:9.9",
    );
    let (code, _, msg) = first_error(s.as_bytes());
    assert_eq!(code, "cap.namespace");
    assert!(msg.contains("cap:9.9"));
}

#[test]
fn runaway_nesting_and_element_counts_are_bounded() {
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    assert_eq!(first_error(deep.as_bytes()).0, "xml.too-deep");
    let wide = format!("<a>{}</a>", "<b/>".repeat(300_000));
    assert_eq!(first_error(wide.as_bytes()).0, "xml.too-many");
}

#[test]
fn every_truncation_of_a_real_alert_is_an_error_not_a_panic() {
    let s = sample();
    let end = s.windows(8).rposition(|w| w == b"</alert>").unwrap();
    for cut in (1..end).step_by(7) {
        let r = cap::inspect(&s[..cut], &Options::default());
        assert!(!r.is_valid(), "accepted a document cut at byte {cut}");
        assert!(r.errors().next().is_some());
    }
}

#[test]
fn liberal_reading_refuses_with_every_reason() {
    let s = String::from_utf8(sample())
        .unwrap()
        .replacen("<urgency>Immediate</urgency>", "<urgency>Soon</urgency>", 1)
        .replacen("<severity>Severe</severity>", "<severity>Bad</severity>", 1);
    let err = cap::read_alert(s.as_bytes(), &Limits::default()).unwrap_err();
    let codes: Vec<_> = err
        .problems
        .iter()
        .filter(|p| p.is_error())
        .map(|p| p.path.clone())
        .collect();
    assert!(codes.iter().any(|p| p.ends_with("urgency")), "{codes:?}");
    assert!(codes.iter().any(|p| p.ends_with("severity")), "{codes:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, .. ProptestConfig::default() })]

    /// Random bytes never panic the reader.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = cap::inspect(&bytes, &Options::default());
    }

    /// Random edits of a real alert never panic, and an accepted document still reads back.
    #[test]
    fn mutated_alerts_never_panic(pos in 0usize..2000, len in 0usize..20, with in proptest::collection::vec(any::<u8>(), 0..20)) {
        let mut s = sample();
        let pos = pos.min(s.len());
        let end = (pos + len).min(s.len());
        s.splice(pos..end, with);
        let r = cap::inspect(&s, &Options::default());
        if r.is_valid() {
            prop_assert!(r.alerts.iter().all(|a| a.alert.is_some()));
        }
    }
}
