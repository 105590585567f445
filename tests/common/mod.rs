//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/external` from the project root: real material nobody here wrote.
pub fn external() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = root.join("../shared/external");
    assert!(
        p.is_dir(),
        "{} is missing: the shared test material must sit beside the project",
        p.display()
    );
    p
}

/// The bytes of a file under `../shared/external/`.
pub fn ext_bytes(rel: &str) -> Vec<u8> {
    let p = external().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The bytes of a file under `fixtures/`.
pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
pub mod county;
pub mod dispatch;
pub mod ebd;
pub mod icecast;
pub mod smsc;
pub mod webdriver;

/// Hourly rain at a synthetic gauge beside the flash-flood zone FF331098001 (120.9425,
/// 28.1881) of the fixture county: what the end-to-end tests drive the county with.
pub fn gauge_rain(end: jiff::Timestamp, mm: f64) -> stormbell::feeds::Observation {
    use stormbell::feeds::rainfall::{RainBatch, RainReading};
    stormbell::feeds::Observation::Rain(RainBatch {
        readings: vec![RainReading {
            station: "70499001".into(),
            name: Some("桃垟（合成）".into()),
            lon: Some(120.945),
            lat: Some(28.19),
            end,
            minutes: 60,
            mm: Some(mm),
            flag: None,
        }],
    })
}
