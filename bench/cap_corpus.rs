//! `cargo bench --bench cap_corpus`: the CAP codec on the whole real corpus
//! (`tests/data/cap/valid`, 41 alerts from NWS, IPAWS, ECCC, BoM, PAGASA, …).
//!
//! * `inspect_corpus`: parse and validate every alert (what `stormbell cap validate` does);
//! * `read_corpus`: liberal reading into the model (what the feeds stage does);
//! * `build_corpus`: writing every alert back as CAP 1.2.
//!
//! Throughput is reported in alerts. The side-by-side with capparselib is
//! `bench/cap_vs_python.sh`; figures are in `bench/README.md`.

use std::path::PathBuf;

use divan::counter::{BytesCount, ItemsCount};
use stormbell::cap::{self, Limits, Options};

/// The same allocator as the `stormbell` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cap/valid");
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("the shared corpus beside the project") {
            let p = e.expect("readable entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).expect("readable file"))
        .collect()
}

#[divan::bench(sample_count = 30)]
fn inspect_corpus(bencher: divan::Bencher) {
    let docs = corpus();
    let bytes: usize = docs.iter().map(Vec::len).sum();
    let opts = Options::default();
    bencher
        .counter(ItemsCount::new(docs.len()))
        .counter(BytesCount::new(bytes))
        .bench(|| {
            let mut alerts = 0;
            for d in &docs {
                let r = cap::inspect(divan::black_box(d), &opts);
                assert!(r.is_valid());
                alerts += r.alerts.len();
            }
            alerts
        });
}

#[divan::bench(sample_count = 30)]
fn read_corpus(bencher: divan::Bencher) {
    let docs = corpus();
    let limits = Limits::default();
    bencher.counter(ItemsCount::new(docs.len())).bench(|| {
        docs.iter()
            .map(|d| {
                cap::read_alert(divan::black_box(d), &limits)
                    .map(|p| p.alert.infos.len())
                    .unwrap_or(0)
            })
            .sum::<usize>()
    });
}

#[divan::bench(sample_count = 30)]
fn build_corpus(bencher: divan::Bencher) {
    let limits = Limits::default();
    let alerts: Vec<cap::Alert> = corpus()
        .iter()
        .map(|d| cap::read_alert(d, &limits).expect("valid corpus").alert)
        .collect();
    bencher.counter(ItemsCount::new(alerts.len())).bench(|| {
        alerts
            .iter()
            .map(|a| {
                cap::build(divan::black_box(a))
                    .map(|x| x.len())
                    .unwrap_or(0)
            })
            .sum::<usize>()
    });
}
