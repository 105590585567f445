//! Poller load benchmark: N CAP feeds on loopback polled every second, with new
//! alerts published while it runs. Reports the poller's CPU share of one core, its resident
//! memory, and the latency from publication to the correlate channel.
//!
//! `cargo run --release --example feeds_poll -- [--feeds 200] [--seconds 60] [--publish-ms 1000]`
//!
//! The HTTP server runs in a child process (this same program with `serve`), so the CPU and
//! memory figures are the poller's alone. The server is axum/hyper; each feed is an Atom index
//! with its five latest alerts inline, with an ETag, answering 304 when unchanged — as a
//! well-behaved publisher does. About every `publish-ms` (at irregular moments) one feed, round
//! robin, gets a new alert.
//!
//! Each alert's `<note>` carries `published=<ns> served=<ns>`: when the server made it
//! available, and when the request that first carried it arrived. At the channel the driver
//! takes `now − served` (the poller's own work: fetch, parse, dedupe, commit, hand on — what
//! bounds at 50 ms) and `now − published` (that plus the polling wait).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stormbell::cap;
use stormbell::feeds::fetch::HttpFetcher;
use stormbell::feeds::poller::{FeedSpec, Poller, Settings};
use stormbell::feeds::{Observation, state};
use stormbell::http::HttpSettings;
use stormbell::runtime::clock::SystemClock;
use stormbell::store::Store;

/// The same allocator as the `stormbell` binary (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} needs a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        serve(
            arg(&args, "--feeds", 200) as usize,
            arg(&args, "--publish-ms", 1000),
        );
    } else {
        drive(&args);
    }
}

// ---- the publisher (child process) ------------------------------------------------------------

struct Published {
    seq: u64,
    ns: u128,
}

#[derive(Clone)]
struct Feeds(Arc<Mutex<Vec<VecDeque<Published>>>>);

fn alert(feed: usize, p: &Published, served: u128) -> String {
    let sent = jiff::Timestamp::from_nanosecond(p.ns as i128)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    format!(
        r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>bench-{feed}-{seq}</identifier><sender>bench@stormbell.example</sender><sent>{sent}</sent><status>Exercise</status><msgType>Alert</msgType><scope>Public</scope><note>published={pub_ns} served={served}</note><info><language>zh-CN</language><category>Met</category><event>暴雨</event><urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty><senderName>东溟县气象局 (synthetic benchmark)</senderName><headline>东溟县气象局发布暴雨橙色预警</headline><description>预计未来3小时内本县大部地区降雨量将达50毫米以上。</description><area><areaDesc>东溟县</areaDesc><geocode><valueName>GB/T 2260</valueName><value>331098</value></geocode></area></info></alert>"#,
        seq = p.seq,
        pub_ns = p.ns,
    )
}

fn serve(n: usize, publish_ms: u64) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;

    let feeds = Feeds(Arc::new(Mutex::new(
        (0..n).map(|_| VecDeque::new()).collect(),
    )));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let publisher = feeds.clone();
        tokio::spawn(async move {
            // Publish at irregular moments (½–1½ × publish-ms apart), so that publications
            // fall at every phase of the pollers' one-second cycle.
            let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut next = 0usize;
            let mut seq = 0u64;
            loop {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let factor = 0.5 + (rng % 1000) as f64 / 1000.0;
                tokio::time::sleep(Duration::from_millis(publish_ms).mul_f64(factor)).await;
                seq += 1;
                let mut all = publisher.0.lock().unwrap();
                let q = &mut all[next % n];
                q.push_back(Published { seq, ns: now_ns() });
                if q.len() > 5 {
                    q.pop_front();
                }
                next += 1;
            }
        });
        let handler = |State(feeds): State<Feeds>, Path(i): Path<usize>, headers: HeaderMap| async move {
            let served = now_ns();
            let all = feeds.0.lock().unwrap();
            let Some(q) = all.get(i) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let etag = format!("\"{i}-{}\"", q.back().map(|p| p.seq).unwrap_or(0));
            if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
            }
            let mut body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:bench:{i}</id><title>bench feed {i}</title><updated>2026-11-22T10:00:00+08:00</updated>"
            );
            for p in q.iter().rev() {
                body.push_str(&format!(
                    "<entry><id>urn:bench:{i}:{}</id><title>暴雨橙色预警</title><updated>2026-11-22T10:00:00+08:00</updated><content type=\"application/cap+xml\">{}</content></entry>",
                    p.seq,
                    alert(i, p, served)
                ));
            }
            body.push_str("</feed>\n");
            (
                StatusCode::OK,
                [(header::ETAG, etag), (header::CONTENT_TYPE, "application/atom+xml".to_string())],
                body,
            )
                .into_response()
        };
        let app = axum::Router::new()
            .route("/feed/{i}", axum::routing::get(handler))
            .with_state(feeds);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

// ---- the poller (this process) ----------------------------------------------------------------

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Polls made by all feeds so far (as last flushed).
async fn total_polls(store: &Store) -> i64 {
    store
        .read(|c| {
            Ok(
                c.query_row("SELECT coalesce(sum(polls), 0) FROM feed_state", (), |r| {
                    r.get(0)
                })?,
            )
        })
        .await
        .unwrap()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn drive(args: &[String]) {
    let n = arg(args, "--feeds", 200) as usize;
    let seconds = arg(args, "--seconds", 60);
    let publish_ms = arg(args, "--publish-ms", 1000);
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "serve",
            "--feeds",
            &n.to_string(),
            "--publish-ms",
            &publish_ms.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (cpu, wall, rss, hwm, work, total, polls, delivered) = rt.block_on(async move {
        let store = Store::open(dir.path().join("bench.db")).unwrap();
        let client = stormbell::http::client(&HttpSettings {
            user_agent: "stormbell-bench/0.1".into(),
            connect_timeout_secs: 5,
            timeout_secs: 30,
        })
        .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        let poller = Arc::new(Poller::new(
            store.clone(),
            Arc::new(HttpFetcher::new(client)),
            Arc::new(SystemClock::new()),
            Settings {
                backoff_min: Duration::from_secs(5),
                backoff_max: Duration::from_secs(300),
                follow_concurrency: 4,
                start_spread: Duration::from_secs(1),
                flush_every: Duration::from_secs(1),
                tz: jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
                hold_clock: false,
                jitter_seed: None,
            },
            tx,
        ));
        let specs: Vec<FeedSpec> = (0..n)
            .map(|i| FeedSpec {
                id: format!("bench-{i:03}"),
                kind: stormbell::feeds::kind("cap", cap::Limits::default()).unwrap(),
                url: format!("http://127.0.0.1:{port}/feed/{i}"),
                interval: Duration::from_secs(1),
                gap_intervals: 3,
                max_bytes: 10 * 1024 * 1024,
            })
            .collect();
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        let run = tokio::spawn(poller.clone().run(specs, stop_rx));
        // The correlate stage's part: take each delivery and mark it consumed, in batches.
        let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let m = measuring.clone();
        let consumer_store = store.clone();
        let consumer = tokio::spawn(async move {
            let (mut work, mut total) = (Vec::new(), Vec::new());
            let mut ids = Vec::new();
            while let Some(d) = rx.recv().await {
                let at = now_ns();
                if let Observation::Alert(a) = &d.observation
                    && let Some(note) = &a.alert.note
                {
                    let field = |k: &str| {
                        note.split_whitespace()
                            .find_map(|f| f.strip_prefix(k))
                            .and_then(|v| v.parse::<u128>().ok())
                    };
                    if let (Some(p), Some(s)) = (field("published="), field("served=")) {
                        if m.load(std::sync::atomic::Ordering::Relaxed) {
                            work.push(at.saturating_sub(s) as f64 / 1e6);
                            total.push(at.saturating_sub(p) as f64 / 1e6);
                        }
                    }
                }
                ids.push(d.inbox);
                if ids.len() >= 16 || rx.is_empty() {
                    let batch = std::mem::take(&mut ids);
                    let _ = consumer_store
                        .write(move |tx| Ok(state::consume(tx, &batch, "bench")?))
                        .await;
                }
            }
            (work, total)
        });
        // Warm up: every feed polled at least once, connections open.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let polls_before = total_polls(&store).await;
        measuring.store(true, std::sync::atomic::Ordering::Relaxed);
        let (c0, w0) = (cpu_seconds(), Instant::now());
        let mut hwm = 0;
        for _ in 0..seconds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = status_kb("VmRSS:");
            hwm = hwm.max(now);
            if std::env::var_os("FEEDS_POLL_TRACE").is_some() {
                eprintln!("rss {} kB, threads {}", now, status_kb("Threads:"));
            }
        }
        let (cpu, wall) = (cpu_seconds() - c0, w0.elapsed().as_secs_f64());
        let rss = status_kb("VmRSS:");
        // The peak over the whole life of the process, start-up included.
        let hwm = hwm.max(status_kb("VmHWM:"));
        let polls_after = total_polls(&store).await;
        stop.fire();
        run.await.unwrap().unwrap();
        drop(poller);
        let (mut work, mut total) = consumer.await.unwrap();
        work.sort_by(f64::total_cmp);
        total.sort_by(f64::total_cmp);
        let delivered = work.len();
        (
            cpu,
            wall,
            rss,
            hwm,
            work,
            total,
            polls_after - polls_before,
            delivered,
        )
    });
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{}",
        serde_json::json!({
            "feeds": n,
            "interval_s": 1,
            "seconds": wall,
            "polls_per_s": polls as f64 / wall,
            "cpu_percent_of_one_core": 100.0 * cpu / wall,
            "rss_mb": rss as f64 / 1024.0,
            "rss_peak_mb": hwm as f64 / 1024.0,
            "alerts_delivered": delivered,
            "work_ms_p50": pct(&work, 0.5),
            "work_ms_p99": pct(&work, 0.99),
            "work_ms_max": work.last().copied().unwrap_or(f64::NAN),
            "publish_to_channel_ms_p50": pct(&total, 0.5),
            "publish_to_channel_ms_p99": pct(&total, 0.99),
        })
    );
}
