//! Calls at once through a SIP proxy (bench/voice_calls.sh starts kamailio and baresip phone
//! banks on 127.0.0.1 and runs this beside baresip placing the same calls).
//!
//! cargo run --release --example voice_calls -- --proxy ADDR --user U --password P
//!     --first NUMBER --calls N [--secs S]
//!
//! N calls at once to N consecutive numbers from `--first`, each playing S seconds of audio
//! (a speech-band tone, no key expected) and hanging up. Reports call set-up time (INVITE to
//! the 200) p50/p99/max, the process's CPU while all N are up (a window inside the audio,
//! after the last set-up), per call as a share of one core, and the peak resident memory.
//!
//! Output: one JSON object on standard output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stormbell::dispatch::voice::{Prompt, Transport, TrunkSettings, call};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// User + system CPU seconds of this process so far.
fn cpu_secs() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: a valid pointer to a rusage the kernel fills.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    // SAFETY: filled above (zeroed if the call failed).
    let u = unsafe { u.assume_init() };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Peak resident memory in KiB (VmHWM).
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn pct(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let proxy = arg(&args, "--proxy").ok_or_else(|| anyhow::anyhow!("--proxy ADDR"))?;
    let user = arg(&args, "--user").unwrap_or_else(|| "office".into());
    let password = arg(&args, "--password").unwrap_or_default();
    let first: u64 = arg(&args, "--first")
        .ok_or_else(|| anyhow::anyhow!("--first NUMBER"))?
        .parse()?;
    let n: u64 = arg(&args, "--calls")
        .unwrap_or_else(|| "100".into())
        .parse()?;
    let secs: u64 = arg(&args, "--secs")
        .unwrap_or_else(|| "20".into())
        .parse()?;
    let settings = TrunkSettings {
        name: "bench".into(),
        proxy,
        transport: Transport::Udp,
        user,
        password,
        max_calls: n as usize,
        calls_per_sec: 1000,
        ring_secs: 30,
        answer_secs: 10,
        ..TrunkSettings::default()
    };
    // A speech-band tone as the words: the same G.711 work per packet as speech.
    let samples: Vec<i16> = (0..secs * 8000)
        .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let prompt = Prompt {
        samples: Arc::new(samples),
        rounds: 1,
        linger: Duration::ZERO,
    };
    let settings = Arc::new(settings);
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let (s, p) = (settings.clone(), prompt.clone());
        calls.spawn(async move { call::place_timed(&s, &(first + i).to_string(), &p).await });
    }
    // The window: from 3 s after the start (every call set up by then, checked below) to 3 s
    // before the audio ends.
    let from = Duration::from_secs(3);
    let to = Duration::from_secs(secs.saturating_sub(3).max(4));
    tokio::time::sleep_until(tokio::time::Instant::from_std(started + from)).await;
    let cpu0 = cpu_secs();
    tokio::time::sleep_until(tokio::time::Instant::from_std(started + to)).await;
    let cpu1 = cpu_secs();
    let window = (to - from).as_secs_f64();
    let mut setups = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
    while let Some(r) = calls.join_next().await {
        let (o, setup) = r?;
        *outcomes.entry(o.name().to_string()).or_default() += 1;
        if let Some(s) = setup {
            setups.push(s);
        }
    }
    setups.sort();
    let all_up_in_window = setups.last().is_some_and(|s| *s < from);
    let per_call = (cpu1 - cpu0) / window / n as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "stormbell",
            "calls": n,
            "outcomes": outcomes,
            "setup_ms": { "p50": pct(&setups, 0.5), "p99": pct(&setups, 0.99), "max": pct(&setups, 1.0) },
            "all_up_in_window": all_up_in_window,
            "window_secs": window,
            "cpu_core_share_per_call": per_call,
            "cpu_core_share_all": (cpu1 - cpu0) / window,
            "peak_rss_kib": peak_kib(),
        })
    );
    Ok(())
}
