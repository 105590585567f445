//! Cross-checks with an independent validator: libxml2's `xmllint` and the official OASIS XSDs.
//!
//! 1. Everything the builder writes, for every alert of the corpus, validates against
//!    `CAP-v1.2.xsd`.
//! 2. On the original files, our schema verdict agrees with xmllint's under each file's own
//!    version XSD: we report a `schema.*` error exactly when xmllint rejects the file.
//!
//! `scripts/test` installs xmllint (Debian `libxml2-utils`); without it these tests fail with a
//! message saying so rather than pass silently.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use stormbell::cap::{self, Dialect, Limits, Options};

fn xmllint(schema: &Path, files: &[PathBuf]) -> std::process::Output {
    Command::new("xmllint")
        .arg("--noout")
        .arg("--nonet")
        .arg("--schema")
        .arg(schema)
        .args(files)
        .output()
        .expect("xmllint is not installed: run ./scripts/test (it installs libxml2-utils)")
}

fn corpus(subs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in subs {
        let mut stack = vec![common::external().join("cap").join(sub)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    out.push(p)
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn everything_the_builder_writes_validates_against_the_official_xsd() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for f in corpus(&["valid", "lenient", "wrappers"]) {
        let bytes = std::fs::read(&f).unwrap();
        for (i, p) in cap::read_alerts(&bytes, &Limits::default())
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let xml = cap::build(&p.alert).unwrap();
            let out = dir.path().join(format!(
                "{}-{i}.xml",
                f.file_name().unwrap().to_string_lossy()
            ));
            std::fs::write(&out, xml).unwrap();
            written.push(out);
        }
    }
    assert_eq!(written.len(), 68);
    let res = xmllint(&common::external().join("schema/CAP-v1.2.xsd"), &written);
    assert!(
        res.status.success(),
        "xmllint rejected built alerts:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn our_schema_verdict_agrees_with_xmllint_on_every_cap_file() {
    let schemas = common::external().join("schema");
    let mut disagreements = Vec::new();
    let mut compared = 0;
    for f in corpus(&["valid", "lenient", "invalid"]) {
        let bytes = std::fs::read(&f).unwrap();
        let r = cap::inspect(&bytes, &Options::default());
        // Only single OASIS alerts have an XSD verdict to compare (feeds, envelopes and the
        // refused DTD files are judged elsewhere).
        let Some(cap::DocKind::Alert(Dialect::Oasis(v))) = r.kind else {
            continue;
        };
        let xsd = schemas.join(format!("CAP-v{}.xsd", v.as_str()));
        let theirs = xmllint(&xsd, std::slice::from_ref(&f)).status.success();
        let ours = !r.errors().any(|p| p.code.starts_with("schema."));
        compared += 1;
        if theirs != ours {
            disagreements.push(format!(
                "{}: xmllint {}, stormbell {}\n{}\n{}",
                f.display(),
                if theirs { "accepts" } else { "rejects" },
                if ours { "accepts" } else { "rejects" },
                String::from_utf8_lossy(&xmllint(&xsd, std::slice::from_ref(&f)).stderr),
                r.problems
                    .iter()
                    .map(|p| p.render(""))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    assert!(compared >= 45, "only {compared} files compared");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
}
