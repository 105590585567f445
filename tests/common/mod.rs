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
pub mod dispatch;
pub mod ebd;
pub mod icecast;
pub mod smsc;
