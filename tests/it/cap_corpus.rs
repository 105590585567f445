//! The CAP codec against real alerts nobody on this project wrote (`tests/data/cap`).
//!
//! * every file in `valid/` passes strict validation, under the rules of its own CAP version;
//! * every file in `lenient/` is read (with a warning naming what was out of order) but is
//!   rejected by validation for its real reason;
//! * every file in `invalid/` is rejected for the reason recorded in SOURCES.md;
//! * every alert round-trips: parse → build → parse gives an equal value.
//!
//! The XSD cross-check with xmllint lives in `cap_xsd.rs`.

use crate::common;

use std::path::{Path, PathBuf};

use stormbell::cap::{self, Limits, Options, Profile};

fn files(sub: &str) -> Vec<PathBuf> {
    let dir = common::external().join("cap").join(sub);
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no files under {sub}");
    out
}

fn inspect(path: &Path) -> cap::Report {
    let bytes = std::fs::read(path).unwrap();
    cap::inspect(&bytes, &Options::default())
}

fn render(path: &Path, r: &cap::Report) -> String {
    r.problems
        .iter()
        .map(|p| p.render(&path.display().to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_valid_alert_passes_under_its_own_version() {
    let mut failures = Vec::new();
    let mut versions = std::collections::BTreeMap::new();
    for f in files("valid") {
        let r = inspect(&f);
        if !r.is_valid() || r.alerts.len() != 1 || r.alerts[0].alert.is_none() {
            failures.push(render(&f, &r));
        }
        if let Some(a) = r.alerts.first() {
            *versions.entry(a.dialect.to_string()).or_insert(0) += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "valid files rejected:\n{}",
        failures.join("\n")
    );
    // The corpus spans all three versions: make sure each was actually exercised.
    assert_eq!(versions.get("CAP 1.0"), Some(&4), "{versions:?}");
    assert_eq!(versions.get("CAP 1.1"), Some(&12), "{versions:?}");
    assert_eq!(versions.get("CAP 1.2"), Some(&25), "{versions:?}");
}

#[test]
fn lenient_files_are_read_with_a_warning_but_fail_validation() {
    let expect = [
        (
            "earthquake_signed.cap",
            "schema.signature-placement",
            "Signature",
        ),
        ("sweden.cap", "schema.order", "<senderName>"),
    ];
    for (name, code, mention) in expect {
        let f = common::external().join("cap/lenient").join(name);
        let bytes = std::fs::read(&f).unwrap();
        let parsed = cap::read_alert(&bytes, &Limits::default())
            .unwrap_or_else(|e| panic!("{name} not read: {e}"));
        assert!(
            parsed
                .problems
                .iter()
                .any(|p| p.code == code && p.message.contains(mention)),
            "{name}: reading did not note {code} about {mention}: {:?}",
            parsed.problems
        );
        let r = inspect(&f);
        assert!(!r.is_valid(), "{name} passed validation");
        assert!(
            r.errors()
                .any(|p| p.code == code && p.message.contains(mention) && p.line.is_some()),
            "{name}: no {code} error naming {mention}:\n{}",
            render(&f, &r)
        );
    }
}

#[test]
fn lenient_signature_is_kept_verbatim() {
    let bytes =
        std::fs::read(common::external().join("cap/lenient/earthquake_signed.cap")).unwrap();
    let parsed = cap::read_alert(&bytes, &Limits::default()).unwrap();
    assert_eq!(parsed.alert.signatures.len(), 1);
    let sig = &parsed.alert.signatures[0];
    assert!(sig.starts_with("<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">"));
    assert!(sig.ends_with("</Signature>"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains(sig.as_str()),
        "signature not byte-identical to the source"
    );
}

/// The reason each invalid file must be rejected for (SOURCES.md, "invalid/").
fn expected_reason(name: &str) -> (&'static str, &'static str) {
    match name {
        "invalid.cap" => ("schema.missing", "<scope>"),
        "noaa_errors.cap" => ("schema.enum", "urgency"),
        "canada_errors.cap" => ("cap.references.missing", "<references> is empty"),
        "xee.cap" | "feeds_xee.atom" => ("xml.dtd", "DOCTYPE"),
        "feeds_no_id.atom" => ("atom.id", "<id>"),
        "feeds_no_title.atom" => ("atom.entry-title", "<title>"),
        "feeds_no_link.atom" => ("atom.cap-link", "link"),
        "feeds_invalid_element.atom" => ("atom.unknown", "<foo>"),
        "feeds_invalid.rss" => ("rss.cap-link", "<link>"),
        "feeds_weather_invalid.atom" => ("cap.identifier", "comma"),
        "feeds_bushfire_invalid.edxlde" => ("schema.enum", "Foobar"),
        "invalid_xmlns.cap" => ("cap.namespace", "urn:oasis:names:tc:emergency:alerts:1.2"),
        other => panic!("no expectation recorded for invalid file {other}"),
    }
}

#[test]
fn every_invalid_file_is_rejected_for_its_real_reason() {
    for f in files("invalid") {
        let name = f.file_name().unwrap().to_str().unwrap();
        let (code, mention) = expected_reason(name);
        let r = inspect(&f);
        assert!(!r.is_valid(), "{name} passed");
        let all = render(&f, &r);
        assert!(
            r.errors().any(
                |p| p.code == code && (p.message.contains(mention) || p.path.contains(mention))
            ),
            "{name}: expected {code} mentioning {mention}, got:\n{all}"
        );
        assert!(
            r.errors()
                .all(|p| p.line.is_some() || p.code.starts_with("xml.")),
            "{name}: an error without a line:\n{all}"
        );
    }
}

#[test]
fn noaa_errors_reports_every_empty_value_not_just_the_first() {
    let r = inspect(&common::external().join("cap/invalid/google-cap-library/noaa_errors.cap"));
    let enums: Vec<_> = r.errors().filter(|p| p.code == "schema.enum").collect();
    for what in ["urgency", "severity", "certainty"] {
        assert!(
            enums.iter().any(|p| p.path.ends_with(what)),
            "{what} not reported: {enums:?}"
        );
    }
    assert!(r.problems.iter().any(|p| p.code == "cap.references.empty"));
}

#[test]
fn bushfire_edxl_names_the_empty_alert_and_the_bad_urgency_by_line() {
    let r = inspect(
        &common::external().join("cap/invalid/google-cap-library/feeds_bushfire_invalid.edxlde"),
    );
    let lines: Vec<u32> = r.errors().filter_map(|p| p.line).collect();
    assert!(
        lines.contains(&95) || lines.contains(&94),
        "empty alert not located: {lines:?}"
    );
    assert!(
        lines.contains(&115),
        "urgency Foobar not located: {lines:?}"
    );
    // The other alerts in the envelope are fine and were read.
    let read = r.alerts.iter().filter(|a| a.alert.is_some()).count();
    assert_eq!(r.alerts.len(), 7);
    assert_eq!(read, 5);
}

#[test]
fn wrappers_are_opened_and_every_inner_alert_checked() {
    let edxl = inspect(&common::external().join("cap/wrappers/rfs_nsw_edxlde.xml"));
    assert!(edxl.is_valid(), "{}", render(Path::new("rfs"), &edxl));
    assert_eq!(edxl.alerts.len(), 1);
    let many = inspect(&common::external().join("cap/wrappers/bushfire_valid.edxlde"));
    assert!(many.is_valid(), "{}", render(Path::new("bushfire"), &many));
    assert_eq!(many.alerts.len(), 7);

    let smhi_path = common::external().join("cap/wrappers/smhi.se.alerts.cap");
    let smhi = inspect(&smhi_path);
    assert_eq!(smhi.alerts.len(), 17);
    assert!(smhi.alerts.iter().all(|a| a.alert.is_some()));
    let errors: Vec<_> = smhi.errors().map(|p| p.code).collect();
    assert_eq!(errors, vec!["cap.root"], "{}", render(&smhi_path, &smhi));
    // Liberal reading takes all 17.
    let bytes = std::fs::read(&smhi_path).unwrap();
    assert_eq!(
        cap::read_alerts(&bytes, &Limits::default()).unwrap().len(),
        17
    );
}

#[test]
fn every_alert_round_trips_through_the_builder() {
    let mut checked = 0;
    for sub in ["valid", "lenient", "wrappers"] {
        for f in files(sub) {
            let bytes = std::fs::read(&f).unwrap();
            let parsed = cap::read_alerts(&bytes, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for p in parsed {
                let xml = cap::build(&p.alert).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                let again =
                    cap::read_alert(xml.as_bytes(), &Limits::default()).unwrap_or_else(|e| {
                        panic!("{}: rebuilt alert unreadable: {e}\n{xml}", f.display())
                    });
                assert_eq!(
                    again.alert,
                    p.alert,
                    "{}: round trip changed the alert",
                    f.display()
                );
                // What we write is valid CAP 1.2 by our own checks too.
                let r = cap::inspect(xml.as_bytes(), &Options::default());
                assert!(
                    r.is_valid(),
                    "{}: built alert invalid:\n{}",
                    f.display(),
                    render(&f, &r)
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 41 + 2 + 1 + 7 + 17);
}

#[test]
fn feeds_in_the_corpus_are_judged() {
    for f in files("feeds") {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let r = inspect(&f);
        if name == "pelmorex.atom" {
            // Declares UTF-8 but is ISO-8859-1: a mislabelled feed is reported, not repaired.
            assert_eq!(r.problems[0].code, "xml.utf8", "{}", render(&f, &r));
            continue;
        }
        assert!(r.is_valid(), "{name}:\n{}", render(&f, &r));
        let index = r.index.as_ref().expect("an index");
        for e in &index.entries {
            assert!(
                e.link.is_some() || e.inline_alert.is_some(),
                "{name}: {e:?}"
            );
        }
    }
}

#[test]
fn google_profile_adds_its_rules() {
    let f = common::external().join("cap/valid/oasiscap/v1dot2_appendix_adot4.xml");
    let bytes = std::fs::read(&f).unwrap();
    let plain = cap::inspect(&bytes, &Options::default());
    assert!(plain.is_valid());
    let google = cap::inspect(
        &bytes,
        &Options {
            profile: Profile::Google,
            ..Options::default()
        },
    );
    // The OASIS Amber-alert example has no <expires>: Google refuses it.
    assert!(
        google
            .errors()
            .any(|p| p.code == "google.expires" && p.line.is_some()),
        "{}",
        render(&f, &google)
    );
}
