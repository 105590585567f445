//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `tests/data` from the project root: real material nobody here wrote.
pub fn external() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = root.join("tests/data");
    assert!(
        p.is_dir(),
        "{} is missing: the real test material (tests/data) is part of the repository",
        p.display()
    );
    p
}

/// The bytes of a file under `tests/data/`.
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
pub mod backend;
pub mod county;
pub mod dispatch;
pub mod ebd;
pub mod icecast;
pub mod kannel;
pub mod patroni;
pub mod postgres;
pub mod server;
pub mod sip;
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

/// Wait (up to 30 s) until the single number `sql` reads reaches `want`; fail naming `what`.
pub async fn wait_count(store: &stormbell::store::Store, what: &str, sql: &'static str, want: i64) {
    wait_count_within(store, what, sql, want, 30).await
}

/// [`wait_count`] up to `secs`. Checked again after each of the store's write batches, never
/// on a timer.
pub async fn wait_count_within(
    store: &stormbell::store::Store,
    what: &str,
    sql: &'static str,
    want: i64,
    secs: u64,
) {
    let n = std::cell::Cell::new(0);
    let what = Said(|| format!("{what}: {} of {want}", n.get()));
    wait_store(what, secs, store, || {
        let (store, n) = (store.clone(), &n);
        async move {
            let read = store.read(move |c| Ok(c.query_row(sql, (), |r| r.get(0))?));
            n.set(read.await.unwrap());
            n.get() >= want
        }
    })
    .await
}

/// A wait's failure message, written only if the wait fails, so that it can tell the state
/// at that moment (the last count read, a peer's log).
pub struct Said<F>(pub F);

impl<F: Fn() -> String> std::fmt::Display for Said<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}

/// Every row `sql` reads, each column as text (NULL, numbers, `<blob>`): what a test shows
/// when a wait fails, and compares when the values' types do not matter.
pub async fn rows(store: &stormbell::store::Store, sql: &'static str) -> Vec<Vec<String>> {
    store
        .read(move |c| {
            let mut st = c.prepare(sql)?;
            let n = st.column_count();
            let r = st
                .query_map((), |r| {
                    (0..n)
                        .map(|i| {
                            let v: rusqlite::types::Value = r.get(i)?;
                            Ok(match v {
                                rusqlite::types::Value::Null => "NULL".into(),
                                rusqlite::types::Value::Integer(i) => i.to_string(),
                                rusqlite::types::Value::Real(f) => f.to_string(),
                                rusqlite::types::Value::Text(t) => t,
                                rusqlite::types::Value::Blob(_) => "<blob>".into(),
                            })
                        })
                        .collect::<stormbell::store::sql::Result<Vec<String>>>()
                })?
                .collect::<stormbell::store::sql::Result<Vec<_>>>()?;
            Ok(r)
        })
        .await
        .unwrap()
}

/// The SQL that reads 1 when no message waits to be sent.
pub const ALL_OUT: &str =
    "SELECT count(*) = 0 FROM dispatch_message WHERE state IN ('queued', 'submitting')";

/// The web server on `listener` for the synthetic county's office, with the pages given,
/// until the returned sender says stop.
/// The CSRF value of a page's form.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

pub fn serve_web(
    listener: tokio::net::TcpListener,
    store: &stormbell::store::Store,
    checkin: Option<stormbell::web::checkin::Checkin>,
    office: Option<stormbell::web::office::Office>,
) -> (
    tokio::task::JoinHandle<std::io::Result<()>>,
    stormbell::runtime::Trigger,
) {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stop_rx) = stormbell::runtime::Trigger::new();
    let server = tokio::spawn(stormbell::web::serve(
        listener,
        store.clone(),
        stormbell::web::WebSettings {
            title: "东溟县防汛办".into(),
            sender: "fx@example.cn".into(),
            base,
        },
        checkin,
        office,
        stop_rx,
    ));
    (server, stop)
}

/// The poller's settings the tests use: quick health writes, first polls at once, retries
/// from 5 s to 2 min, four linked documents at a time, stamps in Asia/Shanghai.
pub fn poller_settings() -> stormbell::feeds::poller::Settings {
    use std::time::Duration;
    stormbell::feeds::poller::Settings {
        backoff_min: Duration::from_secs(5),
        backoff_max: Duration::from_secs(120),
        follow_concurrency: 4,
        start_spread: Duration::ZERO,
        flush_every: Duration::from_millis(50),
        tz: jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
        hold_clock: false,
        jitter_seed: None,
    }
}

/// A poller for feeds that fetch nothing over HTTP (an SL 323 database, an SL 651
/// listener), stamping with `clock` and handing on to `tx`.
pub fn quiet_poller(
    store: stormbell::store::Store,
    clock: stormbell::runtime::clock::SimClock,
    tx: tokio::sync::mpsc::Sender<stormbell::feeds::poller::Delivery>,
) -> std::sync::Arc<stormbell::feeds::poller::Poller> {
    std::sync::Arc::new(stormbell::feeds::poller::Poller::new(
        store,
        // Never used: these feeds fetch nothing over HTTP.
        std::sync::Arc::new(stormbell::feeds::fetch::HttpFetcher::new(
            stormbell::http::client(&stormbell::http::HttpSettings {
                user_agent: "stormbell-test".into(),
                connect_timeout_secs: 2,
                timeout_secs: 5,
            })
            .unwrap(),
        )),
        std::sync::Arc::new(clock),
        stormbell::feeds::poller::Settings {
            follow_concurrency: 1,
            ..poller_settings()
        },
        tx,
    ))
}

/// The `stormbell` program, with none of the caller's STORMBELL_… settings: tests must not
/// depend on the caller's environment.
pub fn stormbell_bare() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_stormbell"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STORMBELL_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

/// [`stormbell_bare`], and never the fixed default web port (tests run side by side).
pub fn stormbell() -> std::process::Command {
    let mut c = stormbell_bare();
    c.env("STORMBELL_WEB__LISTEN", "127.0.0.1:0");
    c
}

/// Wait until `done()` holds, checking it again each time a file in `dir` changes, up to
/// `secs`; fail naming `what`. The state waited for (a row another process commits, a line in
/// its log, a file it writes) lives in files in `dir`, so every change there wakes the check
/// (inotify) and nothing sleeps on a guess. The watch is set before the first check: a change
/// that comes between a check and the wait is not missed.
pub fn wait_until(
    what: impl std::fmt::Display,
    secs: u64,
    dir: &std::path::Path,
    done: impl FnMut() -> bool,
) {
    assert!(
        changed_until(secs, dir, done),
        "{what}: not within {secs} s"
    );
}

/// [`wait_until`] for a caller with more to do when the wait fails (stop a child, then show
/// its log): whether `done()` came to hold within `secs`.
pub fn changed_until(secs: u64, dir: &std::path::Path, done: impl FnMut() -> bool) -> bool {
    watched_until(secs, &[dir], done)
}

/// [`changed_until`] over several folders (a log and a database's, say).
pub fn watched_until(secs: u64, dirs: &[&std::path::Path], mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let watched = Inotify::watch(dirs);
    // SQLite appends a commit to the WAL (the event) and only then publishes it in the
    // shared-memory index, which inotify does not see: a check woken by the last commit of a
    // burst may come too early. So after each event the state is looked at again a little
    // later (10, 100 and 1,000 ms after it) before waiting on events alone.
    const AGAIN_MS: [i32; 3] = [10, 100, 1000];
    let mut again = AGAIN_MS.len();
    while !done() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let left_ms = left.as_millis().min(i32::MAX as u128) as i32;
        let wait_ms = AGAIN_MS.get(again).map_or(left_ms, |&a| a.min(left_ms));
        let mut p = libc::pollfd {
            fd: watched.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, its count, a timeout in milliseconds.
        let events = unsafe { libc::poll(&mut p, 1, wait_ms) };
        if events > 0 {
            watched.drain();
            again = 0;
        } else if again < AGAIN_MS.len() {
            again += 1;
        }
    }
    true
}

/// Wait inside a runtime until `done()` holds, checking it again after each write batch of
/// `store` (see [`stormbell::store::Store::written`]), up to `secs`; fail naming `what`. For
/// states this process's stages write: the stages under test run meanwhile.
pub async fn wait_store<F: std::future::Future<Output = bool>>(
    what: impl std::fmt::Display,
    secs: u64,
    store: &stormbell::store::Store,
    done: impl FnMut() -> F,
) {
    let held = store_changed_until(secs, store, done).await;
    assert!(held, "{what}: not within {secs} s");
}

/// [`wait_store`] for a caller with more to do when the wait fails: whether `done()` came to
/// hold within `secs`.
pub async fn store_changed_until<F: std::future::Future<Output = bool>>(
    secs: u64,
    store: &stormbell::store::Store,
    done: impl FnMut() -> F,
) -> bool {
    stores_changed_until(secs, &[store], done).await
}

/// [`store_changed_until`] with several nodes writing, each through its own store: `done()`
/// is checked again after a write batch of any of them.
pub async fn stores_changed_until<F: std::future::Future<Output = bool>>(
    secs: u64,
    stores: &[&stormbell::store::Store],
    mut done: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut written: Vec<_> = stores.iter().map(|s| s.written()).collect();
    loop {
        // Marked seen before looking: a batch ending during the check is waited for again.
        for w in &mut written {
            w.borrow_and_update();
        }
        if done().await {
            return true;
        }
        let any =
            futures_util::future::select_all(written.iter_mut().map(|w| Box::pin(w.changed())));
        match tokio::time::timeout_at(deadline, any).await {
            Ok((Ok(()), _, _)) => {}
            // Timed out, or a writer is gone (nothing more will change).
            _ => return done().await,
        }
    }
}

/// An inotify descriptor watching directories, closed when dropped (a failed wait panics).
struct Inotify(i32);

impl Inotify {
    fn watch(dirs: &[&std::path::Path]) -> Inotify {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: inotify_init1 takes flags only.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        assert!(fd >= 0, "inotify: {}", std::io::Error::last_os_error());
        let me = Inotify(fd);
        let mask = libc::IN_MODIFY
            | libc::IN_CREATE
            | libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_TO
            | libc::IN_DELETE
            | libc::IN_ATTRIB;
        for dir in dirs {
            let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
            // SAFETY: our descriptor, a NUL-terminated path, a mask.
            let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) };
            assert!(
                wd >= 0,
                "cannot watch {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
        me
    }

    /// Reads every event waiting: only that something changed matters, not what.
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer of the length given, from our own non-blocking fd.
        while unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns, once.
        unsafe { libc::close(self.0) };
    }
}
