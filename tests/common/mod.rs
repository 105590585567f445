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
