//! Throughput driver for `bench/cap_vs_python.sh`: parse and validate the given CAP files in a
//! loop on one thread for a fixed time, and print alerts per second as JSON.
//!
//! `cargo run --release --example cap_throughput -- [--seconds S] FILE...`
//!
//! Work per alert is exactly what `stormbell cap validate` does: decode, parse, schema and
//! specification checks, and reading into the model.

use std::time::{Duration, Instant};

use stormbell::cap::{self, Options};

/// The same allocator as the `stormbell` binary (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut seconds = 3.0f64;
    if let Some(i) = args.iter().position(|a| a == "--seconds") {
        seconds = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("--seconds needs a number"));
        args.drain(i..i + 2);
    }
    let docs: Vec<Vec<u8>> = args
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect();
    assert!(!docs.is_empty(), "no files given");
    let bytes: usize = docs.iter().map(Vec::len).sum();
    let opts = Options::default();
    // Warm up, and make sure the work is real: every document must be read.
    for (f, d) in args.iter().zip(&docs) {
        let r = cap::inspect(d, &opts);
        assert!(r.kind.is_some(), "{f} unreadable");
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut alerts = 0u64;
    let mut passes = 0u64;
    while start.elapsed() < budget {
        for d in &docs {
            let r = cap::inspect(std::hint::black_box(d), &opts);
            alerts += r.alerts.len() as u64;
        }
        passes += 1;
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "{{\"implementation\": \"stormbell\", \"files\": {}, \"alerts\": {alerts}, \"seconds\": {t:.3}, \"alerts_per_sec\": {:.0}, \"mb_per_sec\": {:.1}}}",
        docs.len(),
        alerts as f64 / t,
        (bytes as f64 * passes as f64) / t / 1e6
    );
}
