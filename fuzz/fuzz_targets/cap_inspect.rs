//! Fuzz the CAP front door: any bytes into `inspect` must give a report, never a panic, and an
//! alert judged valid must build and read back to the same value.
//!
//!   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run cap_inspect corpus/ ../tests/data/cap
#![no_main]

use libfuzzer_sys::fuzz_target;
use stormbell::cap::{self, Limits, Options};

fuzz_target!(|data: &[u8]| {
    let report = cap::inspect(data, &Options::default());
    if report.is_valid() {
        for found in &report.alerts {
            let Some(alert) = &found.alert else { continue };
            if let Ok(xml) = cap::build(alert) {
                let back = cap::read_alert(xml.as_bytes(), &Limits::default())
                    .expect("a valid alert, rebuilt, must read back");
                assert_eq!(&back.alert, alert);
            }
        }
    }
});
