//! An open-loop load generator for the check-in pages: answers are sent at a fixed rate,
//! whether or not the server has answered the ones before, and each answer's latency is taken
//! from the moment it was *due*, not from when it could finally be sent. A closed-loop tool
//! (wrk, each connection waiting for its answer before sending the next) sends less when the
//! server stalls and so never sees the answers that would have waited behind the stall
//! ("coordinated omission"); a village lead's phone does not wait for the others.
//!
//!     cargo run --release --example checkin_load -- --url http://127.0.0.1:PORT \
//!         --requests FILE --rate 2000 --seconds 10 [--skip N] [--connections 256]
//!
//! FILE is what `checkin_server` writes: one `path<TAB>form body` per line, each a different
//! person's link. Answer i is due at start + i / rate and uses line skip + i (no link is
//! answered twice). Every answer gets its own task; at most `--connections` are in flight (as
//! the office's nginx holds a pool of connections to the daemon; the daemon itself refuses
//! connections past its own limit, 512 by default, which is a protection and not what is
//! measured here): an answer due while all are busy waits for one, and that wait is in its
//! latency. Prints one JSON object: the rate asked and achieved, answers by
//! status, p50 / p90 / p99 / p99.9 / max from the due time, and how late the generator
//! itself was in sending (its own lag, which is in the latencies too).

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let url = common::arg("--url").ok_or_else(|| anyhow::anyhow!("--url is needed"))?;
    let file = common::arg("--requests").ok_or_else(|| anyhow::anyhow!("--requests is needed"))?;
    let rate: f64 = common::arg("--rate").map_or(Ok(2000.0), |s| s.parse())?;
    let seconds: f64 = common::arg("--seconds").map_or(Ok(10.0), |s| s.parse())?;
    let skip: usize = common::arg("--skip").map_or(Ok(0), |s| s.parse())?;
    let connections: usize = common::arg("--connections").map_or(Ok(256), |s| s.parse())?;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(connections));
    let lines: Vec<(String, String)> = std::fs::read_to_string(&file)?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, b)| (p.to_string(), b.to_string()))
        .skip(skip)
        .collect();
    let n = ((rate * seconds) as usize).min(lines.len());
    if n < (rate * seconds) as usize {
        anyhow::bail!(
            "{file} has {} unused links after --skip {skip}; {} are needed",
            lines.len(),
            (rate * seconds) as usize
        );
    }
    let client = reqwest::Client::builder()
        // A 303 after an answer is the answer's success; following it would be a second
        // request the phone makes later, not part of answering.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u16, Duration, Option<String>)>();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut lag = Vec::with_capacity(n);
    for (i, (path, body)) in lines.into_iter().take(n).enumerate() {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due).await;
        lag.push(due.elapsed());
        let (client, tx, url, slots) = (client.clone(), tx.clone(), url.clone(), slots.clone());
        let due = due.into_std();
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let mut why = None;
            let status = match client
                .post(format!("{url}{path}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
            {
                // The whole answer read: the latency a phone sees.
                Ok(r) => {
                    let s = r.status().as_u16();
                    match r.bytes().await {
                        Ok(_) => s,
                        Err(e) => {
                            why = Some(format!("{:?}", e.without_url()));
                            0
                        }
                    }
                }
                Err(e) => {
                    why = Some(format!("{:?}", e.without_url()));
                    0
                }
            };
            let _ = tx.send((status, Instant::now().duration_since(due), why));
        });
    }
    drop(tx);
    let sent_in = start.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(n);
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    while let Some((s, d, why)) = rx.recv().await {
        *by_status.entry(s).or_default() += 1;
        if let Some(w) = why {
            *errors.entry(w).or_default() += 1;
        }
        lat.push(d);
    }
    let done_in = start.elapsed().as_secs_f64();
    // What went wrong, on stderr: the JSON line says how many.
    for (why, k) in &errors {
        eprintln!("{k} answers failed: {why}");
    }
    lat.sort();
    lag.sort();
    let pct = |v: &[Duration], p: f64| -> f64 {
        v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let statuses: Vec<String> = by_status
        .iter()
        .map(|(s, k)| {
            format!(
                "\"{}\": {k}",
                if *s == 0 {
                    "error".into()
                } else {
                    s.to_string()
                }
            )
        })
        .collect();
    println!(
        "{{\"rate\": {rate}, \"answers\": {n}, \"sent_per_sec\": {:.1}, \"done_per_sec\": {:.1}, \
         \"status\": {{{}}}, \"p50_ms\": {:.2}, \"p90_ms\": {:.2}, \"p99_ms\": {:.2}, \
         \"p999_ms\": {:.2}, \"max_ms\": {:.2}, \"send_lag_p99_ms\": {:.2}}}",
        n as f64 / sent_in,
        n as f64 / done_in,
        statuses.join(", "),
        pct(&lat, 0.50),
        pct(&lat, 0.90),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        pct(&lat, 1.0),
        pct(&lag, 0.99),
    );
    Ok(())
}
