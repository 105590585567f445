//! Hostile input and a hostile network, as an outsider on the office network or the internet
//! would try them, over loopback only and bounded in count and time: each test shows one hole
//! closed (each was run against the code before its fix and seen to fail).

use crate::common;
use crate::common::backend::{Place, on_both};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use stormbell::runtime::listen::Limits;
use stormbell::store::Store;

/// A GET over a plain socket; the whole answer (headers and body), or what came before the
/// server closed.
fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server has closed `s` (reads end), waiting up to `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn half_sent_requests_are_closed_and_one_address_cannot_take_every_connection() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("w.db")).unwrap();
    let limits = Limits {
        header_secs: 1,
        request_secs: 5,
        max_connections: 64,
        max_per_address: 8,
        // Clients straight on the port, no proxy in front.
        trusted_proxies: Vec::new(),
    };
    let (addr, stop) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, rx) = stormbell::runtime::Trigger::new();
        tokio::spawn(stormbell::web::serve_limited(
            listener,
            store.clone(),
            stormbell::web::WebSettings {
                title: "东溟县防汛办".into(),
                sender: "fx@example.cn".into(),
                base: format!("http://{addr}"),
            },
            None,
            None,
            limits.clone(),
            rx,
        ));
        (addr, stop)
    });
    // Eight clients each send half a request and wait (slowloris).
    let mut slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /cap/feed.atom HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // The address holds all its connections: a ninth is closed at once, unanswered.
    let mut ninth = TcpStream::connect(&addr).unwrap();
    assert!(closed_within(&mut ninth, Duration::from_secs(5)));
    // The half-sent ones are closed once their headers are overdue…
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(10)),
            "a half-sent request was still open"
        );
    }
    // …and the port answers again.
    let start = Instant::now();
    let mut answer = String::new();
    while !answer.starts_with("HTTP/1.1 200") {
        assert!(start.elapsed() < Duration::from_secs(10), "{answer}");
        answer = get(&addr, "/cap/feed.atom");
    }
    // Every answer says what it is.
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{answer}"
    );
    stop.fire();
}

on_both! {
    fn the_check_in_pages_and_their_errors_may_not_be_sniffed(backend) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let checkin = stormbell::web::checkin::Checkin::new(
                store.clone(),
                reg,
                cfg.respond.clone(),
                cfg.dispatch_policy(),
                Default::default(),
                std::sync::Arc::new(stormbell::runtime::SystemClock::new()),
            )
            .await
            .unwrap();
            let (_server, stop) = common::serve_web(listener, &store, Some(checkin), None);
            let a = addr.clone();
            let answer = tokio::task::spawn_blocking(move || get(&a, "/r/AAAAAAAAAAAAAAAAAAAAAA"))
                .await
                .unwrap();
            assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("x-content-type-options: nosniff"),
                "{answer}"
            );
            stop.fire();
        });
    }
}

on_both! {
    fn a_forged_delivery_report_is_refused_and_adds_nothing(backend) {
        use stormbell::correlate::{Hazard, MessageKind, Tier};
        use stormbell::dispatch::kannel::KannelChannel;
        use stormbell::dispatch::outbox::{self, Policy};
        let place = Place::new(backend);
        let store = place.open();
        let t = common::dispatch::targets(
            "geo_hazard:331098102",
            1,
            Hazard::GeoHazard,
            Tier::Orange,
            MessageKind::Alert,
            vec![common::dispatch::contact(1, "13700000001")],
        );
        store
            .write_blocking(move |tx| {
                outbox::enqueue(tx, 1, &t, jiff::Timestamp::now(), &Policy::default())
            })
            .unwrap();
        let dlr_port = common::kannel::free_port();
        // The gateway itself is down: nothing is sent, only the report listener matters here.
        let mut settings = stormbell::dispatch::kannel::KannelSettings {
            sendsms_url: format!(
                "http://127.0.0.1:{}/cgi-bin/sendsms",
                common::kannel::free_port()
            ),
            username: "stormbell".into(),
            password: "pw".into(),
            source: "12379".into(),
            dlr_listen: format!("127.0.0.1:{dlr_port}"),
            dlr_base: format!("http://127.0.0.1:{dlr_port}"),
            dlr_remote: false,
            concurrency: 2,
            smsc: String::new(),
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (trigger, stop) = stormbell::runtime::Trigger::new();
            let ch = KannelChannel::new(settings.clone(), store.clone(), Policy::default()).unwrap();
            let task = tokio::spawn(stormbell::dispatch::drive(
                ch,
                stop,
                std::sync::Arc::new(tokio::sync::Notify::new()),
            ));
            let dlr = format!("127.0.0.1:{dlr_port}");
            // The channel binds its listener before its first claim, and every claim is a
            // write: looked at again after each of the store's write batches.
            let listening = dlr.clone();
            common::wait_store("the delivery-report listener", 10, &store, || {
                let dlr = listening.clone();
                async move {
                    tokio::task::spawn_blocking(move || TcpStream::connect(&dlr).is_ok())
                        .await
                        .unwrap()
                }
            })
            .await;
            let ask = |path: String| {
                let dlr = dlr.clone();
                tokio::task::spawn_blocking(move || get(&dlr, &path))
            };
            let count = |sql: &'static str| {
                store
                    .read_blocking(move |c| Ok(c.query_row(sql, (), |r| r.get::<_, i64>(0))?))
                    .unwrap()
            };
            // No secret, or a wrong one: refused; the message is not marked, nothing is kept.
            for path in [
                "/kannel/dlr?id=1&status=1".to_string(),
                "/kannel/dlr?id=1&status=1&k=guess".to_string(),
                "/kannel/dlr?id=99999&status=2".to_string(),
            ] {
                let answer = ask(path.clone()).await.unwrap();
                assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
            }
            assert_eq!(
                count("SELECT count(*) FROM dispatch_message WHERE state IN ('delivered', 'failed')"),
                0
            );
            assert_eq!(count("SELECT count(*) FROM dispatch_inbound"), 0);
            // Even with the secret, a report about a message never sent through the gateway adds
            // nothing (reports cannot add rows without bound).
            let secret: String = store
                .read_blocking(|c| {
                    Ok(c.query_row(
                        "SELECT value FROM dispatch_secret WHERE name = 'kannel-dlr'",
                        (),
                        |r| r.get(0),
                    )?)
                })
                .unwrap();
            let answer = ask(format!("/kannel/dlr?id=99999&status=1&k={secret}"))
                .await
                .unwrap();
            assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
            assert_eq!(count("SELECT count(*) FROM dispatch_inbound"), 0);
            trigger.fire();
            task.await.unwrap().unwrap();
        });
        // A listener off the loopback needs saying so.
        settings.dlr_listen = "0.0.0.0:8471".into();
        let refused = KannelChannel::new(settings, store, Policy::default());
        assert!(
            refused
                .err()
                .is_some_and(|e| e.to_string().contains("dlr_remote")),
            "an open listener was accepted"
        );
    }
}

/// The call states of `person` on `lineage`.
fn call_states(store: &Store, lineage: &str, person: &str) -> Vec<String> {
    let (l, p) = (lineage.to_string(), person.to_string());
    store
        .read_blocking(move |c| {
            let mut st = c.prepare(
                "SELECT state FROM respond_call WHERE lineage = ?1 AND person = ?2 ORDER BY id",
            )?;
            let r = st.query_map([&l, &p], |r| r.get(0))?;
            Ok(r.collect::<Result<Vec<String>, _>>()?)
        })
        .unwrap()
}

/// A second warning, current, for `contact` (queued and called as an Alert).
fn second_warning(
    store: &Store,
    lineage: &'static str,
    decision: i64,
    contact: stormbell::correlate::Contact,
    (policy, settings): (
        &stormbell::dispatch::Policy,
        &stormbell::respond::RespondSettings,
    ),
) {
    use stormbell::correlate::{Hazard, MessageKind, Tier};
    let t = common::dispatch::targets(
        lineage,
        1,
        Hazard::Rainstorm,
        Tier::Red,
        MessageKind::Alert,
        vec![contact],
    );
    let (p, s) = (policy.clone(), settings.clone());
    store
        .write_blocking(move |tx| {
            let now = jiff::Timestamp::now();
            stormbell::dispatch::outbox::enqueue(tx, decision, &t, now, &p)?;
            stormbell::respond::calls::register(tx, decision, &t, now, &s, &p)?;
            Ok(())
        })
        .unwrap();
}

on_both! {
    fn a_link_answers_only_its_own_warning_and_a_lifted_one_only_reports_people_home(backend) {
        use stormbell::respond::intake::{self, LinkAnswer, LinkOutcome};
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        let mut policy = cfg.dispatch_policy();
        policy.link_base = Some("https://fx.example.cn/r/".into());
        let settings = cfg.respond.clone();
        // The zone is warned and then lifted; its lead is called on another warning meanwhile.
        let (warned, mut driver) =
            common::county::drive_zone(&store, reg.clone(), &cfg, &policy, &settings, 50.0);
        let lead = warned
            .contacts
            .iter()
            .find(|c| c.level == "village")
            .unwrap()
            .clone();
        driver.until_lifted(&store);
        const OTHER: &str = "rainstorm:331098108";
        second_warning(&store, OTHER, 9_000, lead.clone(), (&policy, &settings));
        assert_eq!(call_states(&store, OTHER, &lead.person), ["open"]);
        // The lead taps "received" on the lifted warning's link.
        let person = lead.person.clone();
        let link = store
            .read_blocking(move |c| {
                let message: i64 = c.query_row(
                    "SELECT id FROM dispatch_message WHERE lineage = ?1 AND person = ?2 AND purpose = 'warning' ORDER BY id LIMIT 1",
                    [common::county::ZONE, person.as_str()],
                    |r| r.get(0),
                )?;
                Ok(stormbell::dispatch::link::of_message(c, message)?.unwrap())
            })
            .unwrap();
        let tap = |kind: &str, people: Option<u32>| {
            let (link, reg, s, p) = (link.clone(), reg.clone(), settings.clone(), policy.clone());
            let a = LinkAnswer {
                kind: kind.into(),
                people,
                ..Default::default()
            };
            store
                .write_blocking(move |tx| {
                    intake::from_link(tx, &link, &a, jiff::Timestamp::now(), &reg, &s, &p)
                })
                .unwrap()
        };
        assert_eq!(tap("ack", None), LinkOutcome::Lifted);
        // The other warning's call is not answered by a tap on the old link.
        assert_eq!(call_states(&store, OTHER, &lead.person), ["open"]);
        // People back home can still be reported on it.
        assert!(matches!(tap("returned", Some(3)), LinkOutcome::Recorded(_)));
        assert_eq!(call_states(&store, OTHER, &lead.person), ["open"]);
    }
}

on_both! {
    fn an_sms_reply_answers_only_the_warnings_its_last_text_carried(backend) {
        use stormbell::dispatch::outbox::{self, Policy};
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let policy = Policy::default();
        let settings = stormbell::respond::RespondSettings::default();
        let lead = common::dispatch::contact(1, "13700000001");
        // Two warnings call the lead; only the first has been texted so far.
        second_warning(
            &store,
            "rainstorm:331098101",
            1,
            lead.clone(),
            (&policy, &settings),
        );
        common::dispatch::accept_all(&store, &policy, jiff::Timestamp::now());
        second_warning(
            &store,
            "rainstorm:331098102",
            2,
            lead.clone(),
            (&policy, &settings),
        );
        // The lead replies "1".
        store
            .write_blocking(|tx| {
                outbox::inbound(
                    tx,
                    &outbox::Inbound {
                        kind: "reply",
                        account: "main",
                        source: "8613700000001",
                        dest: "12379",
                        text: "1",
                        smsc_id: None,
                        stat: None,
                        ..Default::default()
                    },
                    jiff::Timestamp::now(),
                )
            })
            .unwrap();
        let (r, s, p) = (reg.clone(), settings.clone(), policy.clone());
        store
            .write_blocking(move |tx| stormbell::respond::intake::run_once(tx, 10, &r, &s, &p))
            .unwrap();
        assert_eq!(
            call_states(&store, "rainstorm:331098101", &lead.person),
            ["answered"]
        );
        // The warning they were not yet texted about still waits for their answer.
        assert_eq!(
            call_states(&store, "rainstorm:331098102", &lead.person),
            ["open"]
        );
    }
}

on_both! {
    fn requests_for_help_are_coalesced_bounded_ranked_below_warnings_and_quoted_in_a_marked_field(backend) {
        use stormbell::respond::intake::{self, LinkAnswer};
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        let mut policy = cfg.dispatch_policy();
        policy.link_base = Some("https://fx.example.cn/r/".into());
        let settings = stormbell::respond::RespondSettings {
            help_per_hour: 3,
            ..cfg.respond.clone()
        };
        let warned = common::county::warn_zone(&store, reg.clone(), &cfg, &policy, &settings, 50.0);
        let links: Vec<stormbell::dispatch::link::Link> = store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT id FROM dispatch_message WHERE lineage = ?1 AND purpose = 'warning' ORDER BY id",
                )?;
                let ids: Vec<i64> = st
                    .query_map([common::county::ZONE], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok(ids
                    .into_iter()
                    .filter_map(|m| stormbell::dispatch::link::of_message(c, m).ok().flatten())
                    .collect())
            })
            .unwrap();
        assert!(links.len() >= 5, "{} links", links.len());
        let notices = || {
            store
                .read_blocking(|c| {
                    Ok(c.query_row(
                        "SELECT count(*) FROM dispatch_message WHERE purpose LIKE 'help:%'",
                        (),
                        |r| r.get::<_, i64>(0),
                    )?)
                })
                .unwrap()
        };
        let ask = |link: &stormbell::dispatch::link::Link, i: usize| {
            let (link, reg, s, p) = (link.clone(), reg.clone(), settings.clone(), policy.clone());
            let a = LinkAnswer {
                kind: "help".into(),
                note: Some(format!(
                    "第{i}次：请拨13912345678，桥断了，需要船和担架，老人三位不能走动，请尽快"
                )),
                ..Default::default()
            };
            store
                .write_blocking(move |tx| {
                    intake::from_link(tx, &link, &a, jiff::Timestamp::now(), &reg, &s, &p)
                })
                .unwrap()
        };
        // One person posts 35 times, each with new words: the officers are texted once.
        ask(&links[0], 0);
        let once = notices();
        assert!(once > 0, "the first request is passed on");
        for i in 1..35 {
            ask(&links[0], i);
        }
        assert_eq!(
            notices(),
            once,
            "later requests are kept for the office only"
        );
        // Every request is kept for the office.
        let kept: i64 = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM respond_answer WHERE kind = 'help'",
                    (),
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(kept, 35);
        // Other persons: at most help_per_hour (3) requests about the warning are passed on.
        for (i, l) in links.iter().enumerate().skip(1) {
            ask(l, 100 + i);
        }
        // (purpose = help:<asker>:<role of the officer told>)
        let purposes: Vec<String> = store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT purpose FROM dispatch_message WHERE purpose LIKE 'help:%'",
                )?;
                let rows = st.query_map((), |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        let requesters: std::collections::BTreeSet<&str> = purposes
            .iter()
            .filter_map(|p| p.strip_prefix("help:")?.split(':').next())
            .collect();
        assert_eq!(requesters.len(), 3, "help_per_hour bounds the askers passed on");
        // Ranked below the warning's own texts, and the asker's words only inside the marked
        // field, cut short, the number masked.
        let (top_help, low_warning, text): (i64, i64, String) = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT max(priority) FROM dispatch_message WHERE purpose LIKE 'help:%'),
                            (SELECT min(priority) FROM dispatch_message WHERE purpose = 'warning'),
                            (SELECT text FROM dispatch_message WHERE purpose LIKE 'help:%' LIMIT 1)",
                    (),
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .unwrap();
        assert!(top_help < low_warning, "{top_help} ≥ {low_warning}");
        assert!(!text.contains("13912345678"), "{text}");
        let quoted = text.split("〔本人原话：").nth(1).unwrap_or_default();
        assert!(
            quoted.contains("桥断了") && quoted.ends_with('〕'),
            "{text}"
        );
        assert!(quoted.chars().count() <= 45, "{text}");
        let _ = warned;
    }
}

/// A feed kind that reads with the real CAP kind, but first says it has begun and then waits
/// to be let go: the test decides how long "a slow document" takes.
struct Held {
    inner: std::sync::Arc<dyn stormbell::feeds::FeedKind>,
    begun: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl stormbell::feeds::FeedKind for Held {
    fn name(&self) -> &'static str {
        "cap"
    }
    fn parse(
        &self,
        doc: &stormbell::feeds::Document<'_>,
    ) -> Result<stormbell::feeds::Parsed, stormbell::feeds::FeedError> {
        let _ = self.begun.lock().unwrap().send(());
        let _ = self
            .go
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(60));
        self.inner.parse(doc)
    }
}

/// A 4 MB alert with 200,000 distinct namespace declarations (synthetic).
fn namespace_bomb() -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\
         <identifier>SYNTHETIC-NS-BOMB</identifier>",
    );
    for i in 0..200_000 {
        s.push_str(&format!("<n xmlns='urn:s:{i}'/>"));
    }
    s.push_str("</alert>");
    s.into_bytes()
}

on_both! {
    fn a_slow_feed_document_delays_only_its_own_feed_and_a_namespace_bomb_is_refused(backend) {
        use stormbell::feeds::poller::{FeedSpec, PollError, Poller, Settings};
        // The feed's server runs on a runtime of its own: it only hands out the document.
        let srv_rt = tokio::runtime::Runtime::new().unwrap();
        let server = srv_rt.block_on(common::server::Server::start());
        let bomb = namespace_bomb();
        assert!(bomb.len() > 4_000_000);
        server.set("/cap/bomb.xml", common::server::Reply::doc(bomb));
        let url = server.url("/cap/bomb.xml");

        let place = Place::new(backend);
        let store = place.open();
        let (begun_tx, begun) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let kind = std::sync::Arc::new(Held {
            inner: stormbell::feeds::kind("cap", stormbell::cap::Limits::default()).unwrap(),
            begun: std::sync::Mutex::new(begun_tx),
            go: std::sync::Mutex::new(go_rx),
        });
        // The daemon's side: one thread, one async worker (the strictest case of the two a
        // two-core office server has), serving the web port and polling the feed.
        let st = store.clone();
        let daemon = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx
                    .send(listener.local_addr().unwrap().to_string())
                    .unwrap();
                let (_server, stop) = common::serve_web(listener, &st, None, None);
                let (tx, _rx) = tokio::sync::mpsc::channel(16);
                let client = stormbell::http::client(&stormbell::http::HttpSettings {
                    user_agent: "stormbell-test/0.1".into(),
                    connect_timeout_secs: 2,
                    timeout_secs: 30,
                })
                .unwrap();
                let poller = Poller::new(
                    st.clone(),
                    std::sync::Arc::new(stormbell::feeds::fetch::HttpFetcher::new(client)),
                    std::sync::Arc::new(stormbell::runtime::SystemClock::new()),
                    Settings {
                        follow_concurrency: 2,
                        ..common::poller_settings()
                    },
                    tx,
                );
                let spec = FeedSpec {
                    id: "upstream-cap".into(),
                    kind,
                    url,
                    interval: Duration::from_secs(60),
                    gap_intervals: 3,
                    max_bytes: 10 * 1024 * 1024,
                };
                let outcome =
                    tokio::time::timeout(Duration::from_secs(120), poller.poll_once(&spec)).await;
                stop.fire();
                outcome
            })
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // The document is being read…
        begun
            .recv_timeout(Duration::from_secs(30))
            .expect("the poller fetched the document and began to read it");
        // …and meanwhile the web port answers, as often as asked. (Before, the parse held the
        // only worker and this never came back.)
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            let answer = get(&addr, "/cap/feed.atom");
            slowest = slowest.max(t.elapsed());
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
        }
        eprintln!("web answered within {slowest:?} while a feed document was being read");
        go.send(()).unwrap();
        // The document itself is refused, quickly, for what it is.
        let outcome = daemon.join().unwrap().expect("the poll finished");
        match outcome {
            Err(PollError::Format { error, .. }) => {
                let msg = error.to_string();
                assert!(msg.contains("namespaces"), "{msg}");
            }
            other => panic!("expected the namespace bomb to be refused, got {other:?}"),
        }
        drop(server);
    }
}

#[test]
fn another_process_writing_beside_the_daemon_costs_no_answer() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("office.db");
    let store = Store::open(&db).unwrap();
    let reg = common::county::registry(&store);
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut policy = cfg.dispatch_policy();
    policy.link_base = Some(format!("http://{addr}/r/"));
    let settings = cfg.respond.clone();
    let (warned, _driver) =
        common::county::drive_zone(&store, reg.clone(), &cfg, &policy, &settings, 50.0);
    // Every village lead's link, from the texts they were sent.
    let prefix = format!("http://{addr}");
    let links: Vec<String> = store
        .read_blocking(move |c| {
            let mut st = c.prepare(
                "SELECT text FROM dispatch_message WHERE purpose = 'warning'
                   AND person IN (SELECT person FROM respond_call WHERE level = 'village')",
            )?;
            let texts = st.query_map((), |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for t in texts {
                let t = t?;
                if let Some(at) = t.find(&format!("{prefix}/r/")) {
                    out.push(
                        t[at + prefix.len()..]
                            .chars()
                            .take_while(|c| c.is_ascii_graphic())
                            .collect(),
                    );
                }
            }
            Ok(out)
        })
        .unwrap();
    assert!(links.len() >= 2, "{links:?}");
    let clock = std::sync::Arc::new(stormbell::runtime::clock::SimClock::new(
        warned.at + jiff::SignedDuration::from_mins(5),
    ));
    let stop = rt.block_on(async {
        let checkin = stormbell::web::checkin::Checkin::new(
            store.clone(),
            reg.clone(),
            settings.clone(),
            policy.clone(),
            stormbell::web::checkin::Limits {
                per_ip_per_min: 100_000,
                per_token_per_min: 100_000,
            },
            clock,
        )
        .await
        .unwrap();
        common::serve_web(listener, &store, Some(checkin), None).1
    });

    // Another process takes the write lock and keeps it longer than the busy timeout (a big
    // import), while `stormbell user add` runs again and again beside the daemon.
    // It lets go once the daemon's writer has waited out a whole busy timeout and tried again
    // (or, without that retry, after a bound, the answers having been refused meanwhile).
    let (held_tx, held) = std::sync::mpsc::channel();
    let holder_db = db.clone();
    let waiter = store.clone();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&holder_db).unwrap();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        held_tx.send(()).unwrap();
        let start = Instant::now();
        while waiter.lock_waits() == 0 && start.elapsed() < Duration::from_secs(30) {
            std::thread::park_timeout(Duration::from_millis(20));
        }
        c.execute_batch("COMMIT").unwrap();
        waiter.lock_waits()
    });
    held.recv_timeout(Duration::from_secs(10)).unwrap();
    let cli_db = db.clone();
    let cli = std::thread::spawn(move || {
        let mut codes = Vec::new();
        for i in 0..6 {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stormbell"))
                .args([
                    "--db",
                    cli_db.to_str().unwrap(),
                    "user",
                    "add",
                    &format!("duty-{i}"),
                ])
                .env_remove("RUST_LOG")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"correct horse battery staple 2019\n")
                .unwrap();
            let out = child.wait_with_output().unwrap();
            codes.push((
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        codes
    });

    // Meanwhile every lead answers, and reports people moved, several times over.
    let answers: Vec<(u16, String)> = rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for link in &links {
            let (http, url) = (http.clone(), format!("http://{addr}{link}"));
            tasks.push(tokio::spawn(async move {
                let page = http.get(&url).send().await.unwrap().text().await.unwrap();
                let csrf = common::csrf_of(&page);
                let mut out = Vec::new();
                for (i, body) in [
                    format!("kind=ack&csrf={csrf}"),
                    format!("kind=post&csrf={csrf}"),
                    format!("kind=moved&people=2&csrf={csrf}"),
                    format!("kind=moved&people=5&csrf={csrf}"),
                ]
                .into_iter()
                .enumerate()
                {
                    let r = http
                        .post(&url)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let to = r
                        .headers()
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let text = r.text().await.unwrap_or_default();
                    out.push((status, format!("answer {i}: {to} {text:.300}")));
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let waited = holder.join().unwrap();
    let codes = cli.join().unwrap();
    stop.fire();

    assert!(waited >= 1, "the writer never waited out the lock");
    for (status, what) in &answers {
        assert_eq!(*status, 303, "an answer was refused: {what}");
        assert!(what.contains("?ok=1"), "{what}");
    }
    for (code, stderr) in &codes {
        assert_eq!(
            *code,
            Some(0),
            "user add failed beside the daemon: {stderr}"
        );
    }
    // Every answer is in the store: one ack, one clock-in and two reports per lead.
    let n = links.len() as i64;
    let count = |sql: &'static str| -> i64 {
        store
            .read_blocking(move |c| Ok(c.query_row(sql, (), |r| r.get(0))?))
            .unwrap()
    };
    assert_eq!(
        count("SELECT count(*) FROM respond_answer WHERE channel = 'link'"),
        4 * n
    );
    assert_eq!(count("SELECT count(*) FROM web_user"), 6);
}

on_both! {
    fn a_count_beyond_the_registered_figure_is_asked_back_and_flagged_never_added_silently(backend) {
        use stormbell::respond::intake::{self, LinkAnswer, LinkOutcome};
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        let mut policy = cfg.dispatch_policy();
        policy.link_base = Some("https://fx.example.cn/r/".into());
        let settings = cfg.respond.clone();
        let (warned, _driver) =
            common::county::drive_zone(&store, reg.clone(), &cfg, &policy, &settings, 50.0);
        let lead = warned
            .contacts
            .iter()
            .find(|c| c.level == "village")
            .unwrap()
            .clone();
        // The figure the lead's village registered as having to move (their report is booked to
        // the village they answer for).
        let village = warned
            .contacts
            .iter()
            .filter(|c| c.person == lead.person)
            .find_map(|c| reg.village(&c.target))
            .unwrap()
            .clone();
        let registered = village.evacuate;
        assert!(registered > 0 && registered < 1000, "{registered}");
        // Every warning text goes out, so replies find the text they answer.
        let t0 = warned.at;
        common::dispatch::accept_all(&store, &policy, t0);
        let mut minute = 1;
        let mut reply = |text: &str| {
            let at = t0 + jiff::SignedDuration::from_mins(minute);
            minute += 1;
            common::dispatch::reply_at(&store, (&reg, &settings, &policy), &lead.mobile, text, at);
        };
        let person = lead.person.clone();
        let moved = || -> Option<(i64, Option<i64>)> {
            let p = person.clone();
            store
                .read_blocking(move |c| {
                    Ok(c.query_row(
                        "SELECT people, beyond FROM respond_evacuation WHERE lineage = ?1 AND person = ?2",
                        [common::county::ZONE, p.as_str()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .ok())
                })
                .unwrap()
        };
        let asked_back = || -> Vec<String> {
            store
                .read_blocking(|c| {
                    let mut q = c.prepare(
                        "SELECT text FROM dispatch_message WHERE purpose LIKE 'confirm:%' ORDER BY id",
                    )?;
                    let r = q.query_map((), |r| r.get(0))?;
                    Ok(r.collect::<Result<Vec<String>, _>>()?)
                })
                .unwrap()
        };

        // "3 99999" by SMS: the lead is awake (their call is answered), the number is not added,
        // and they are asked to confirm it.
        reply("3 99999");
        assert_eq!(moved(), None);
        let states = call_states(&store, common::county::ZONE, &lead.person);
        assert!(
            !states.is_empty() && states.iter().all(|s| s == "answered"),
            "{states:?}"
        );
        let asks = asked_back();
        assert_eq!(asks.len(), 1, "{asks:?}");
        assert!(
            asks[0].contains("99999") && asks[0].contains(&format!("{registered}人")),
            "{asks:?}"
        );
        // A plausible number counts at once, unflagged.
        reply(&format!("3 {}", registered - 1));
        assert_eq!(moved(), Some((i64::from(registered) - 1, None)));
        // A number beyond, sent again to confirm it: counted, and flagged for the office.
        let beyond = registered + 7;
        reply(&format!("3 {beyond}"));
        assert_eq!(moved(), Some((i64::from(registered) - 1, None)));
        reply(&format!("3 {beyond}"));
        assert_eq!(
            moved(),
            Some((i64::from(beyond), Some(i64::from(registered))))
        );
        assert_eq!(asked_back().len(), 2);

        // On the link: 100,000 is asked back (a double tap asks again), confirmed only with the
        // same number.
        let p = lead.person.clone();
        let link = store
            .read_blocking(move |c| {
                let message: i64 = c.query_row(
                    "SELECT id FROM dispatch_message WHERE lineage = ?1 AND person = ?2 AND purpose = 'warning' ORDER BY id LIMIT 1",
                    [common::county::ZONE, p.as_str()],
                    |r| r.get(0),
                )?;
                Ok(stormbell::dispatch::link::of_message(c, message)?.unwrap())
            })
            .unwrap();
        let tap = |people: u32, confirmed: bool| {
            let (link, reg, s, p) = (link.clone(), reg.clone(), settings.clone(), policy.clone());
            let a = LinkAnswer {
                kind: "moved".into(),
                people: Some(people),
                confirmed,
                ..Default::default()
            };
            store
                .write_blocking(move |tx| {
                    intake::from_link(
                        tx,
                        &link,
                        &a,
                        t0 + jiff::SignedDuration::from_mins(30),
                        &reg,
                        &s,
                        &p,
                    )
                })
                .unwrap()
        };
        let ask = LinkOutcome::Confirm {
            people: 100_000,
            registered,
        };
        assert_eq!(tap(100_000, false), ask);
        assert_eq!(tap(100_000, false), ask);
        assert_eq!(moved().map(|m| m.0), Some(i64::from(beyond)));
        assert!(matches!(tap(100_000, true), LinkOutcome::Recorded(_)));
        assert_eq!(moved(), Some((100_000, Some(i64::from(registered)))));
        // A number posted with another answer (a forged "received" form) books nobody.
        let (l2, r2, s2, p2) = (link.clone(), reg.clone(), settings.clone(), policy.clone());
        store
            .write_blocking(move |tx| {
                let a = LinkAnswer {
                    kind: "ack".into(),
                    people: Some(3),
                    ..Default::default()
                };
                intake::from_link(
                    tx,
                    &l2,
                    &a,
                    t0 + jiff::SignedDuration::from_mins(40),
                    &r2,
                    &s2,
                    &p2,
                )
            })
            .unwrap();
        assert_eq!(moved(), Some((100_000, Some(i64::from(registered)))));

        // The office's board says which report to check.
        let (r, tz) = (reg.clone(), cfg.time_zone());
        let board = store
            .read_blocking(move |c| {
                stormbell::respond::board::read(
                    c,
                    &r,
                    &tz,
                    stormbell::respond::board::Filter::All,
                    stormbell::respond::board::AsOf::wall(),
                )
            })
            .unwrap();
        let place = board
            .warnings
            .iter()
            .flat_map(|w| &w.places)
            .find(|p| p.id == village.code)
            .expect("the lead's village is on the board");
        // Counted up to what the place registered; the rest is for the office to check, never
        // in a total.
        assert_eq!(place.to_check, 100_000 - registered);
        assert_eq!(place.moved, place.to_move.min(registered));
        assert!(board.totals.moved <= board.totals.to_move);
    }
}

on_both! {
    fn the_boards_csv_never_hands_a_spreadsheet_a_formula(backend) {
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        let policy = cfg.dispatch_policy();
        let settings = cfg.respond.clone();
        let (warned, _driver) =
            common::county::drive_zone(&store, reg.clone(), &cfg, &policy, &settings, 50.0);
        // A registry file whose village name is a formula (as an insider or a tampered file
        // could make it).
        let village = warned
            .contacts
            .iter()
            .find_map(|c| reg.village(&c.target))
            .unwrap()
            .code
            .clone();
        let mut data = reg.data.clone();
        let evil = "=HYPERLINK(\"http://evil.example/x\",\"点此查看\")";
        for v in &mut data.villages {
            if v.code == village {
                v.name = evil.into();
            }
        }
        let reg = std::sync::Arc::new(stormbell::registry::Registry::new(data));
        let tz = cfg.time_zone();
        let csv = store
            .read_blocking(move |c| {
                let b = stormbell::respond::board::read(
                    c,
                    &reg,
                    &tz,
                    stormbell::respond::board::Filter::All,
                    stormbell::respond::board::AsOf::wall(),
                )?;
                stormbell::respond::board::csv(&b)
            })
            .unwrap();
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let names: Vec<String> = r.records().map(|rec| rec.unwrap()[5].to_string()).collect();
        assert!(names.iter().any(|n| n == &format!("'{evil}")), "{names:?}");
        assert!(
            names.iter().all(|n| !n.starts_with('=')),
            "a live formula: {names:?}"
        );
    }
}

#[test]
fn a_huge_or_broken_registry_file_is_refused_or_summarised_not_read_into_memory_or_printed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let county = common::county::copy_files(&dir.path().join("county"));
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stormbell"))
            .args(["registry", "check", county.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    // 5,000 broken rows: every one counted, twenty of a kind listed, the rest summed up.
    let mut villages = std::fs::read_to_string(county.join("villages.csv")).unwrap();
    for i in 0..5000 {
        villages.push_str(&format!(
            "33109810X{i:03},坏行{i},331098101,abc,def,1,2,3\n"
        ));
    }
    std::fs::write(county.join("villages.csv"), villages).unwrap();
    let o = check();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        out.lines().count() < 400,
        "{} lines printed",
        out.lines().count()
    );
    assert!(
        out.lines().any(|l| l.starts_with("villages.csv: ")
            && l.contains("more registry.")
            && l.contains("not listed")),
        "{out}"
    );
    let errors: usize = err
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(errors >= 5000, "every broken row is counted: {err}");

    // A 300 MB file where a CSV should be (sparse: it takes no disk) is refused unread.
    std::fs::copy(fixture.join("villages.csv"), county.join("villages.csv")).unwrap();
    let f = std::fs::File::create(county.join("persons.csv")).unwrap();
    f.set_len(300 * 1024 * 1024).unwrap();
    drop(f);
    let o = check();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("persons.csv") && out.contains("300.0 MB, over the 128 MB"),
        "{out}"
    );
}

on_both! {
    async fn a_stranger_guessing_from_elsewhere_cannot_lock_the_duty_officer_out(backend) {
        use stormbell::web::auth;
        const PASSWORD: &str = "correct horse battery staple 2019";
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let now = jiff::Timestamp::now();
        store
            .write_blocking(move |tx| {
                auth::put_user(tx, &auth::NewUser::new("duty", PASSWORD, "officer")?, now)
            })
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let office = stormbell::web::office::Office::new(
            store.clone(),
            reg,
            jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
            "东溟县防汛办（合成）",
            &base,
        )
        .await
        .unwrap();
        let (_server, stop) = common::serve_web(listener, &store, None, Some(office));
        // Clients from three loopback addresses: 127.0.0.1 is the reverse proxy in front (trusted
        // by default), 127.0.0.2 and 127.0.0.3 reach the port directly.
        let from = |ip: [u8; 4]| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from(ip))
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap()
        };
        let (proxy, direct, spoofer) = (
            from([127, 0, 0, 1]),
            from([127, 0, 0, 2]),
            from([127, 0, 0, 3]),
        );
        let url = format!("{base}/api/v1/session");
        let try_as = |client: &reqwest::Client, xff: Option<String>, password: &str| {
            let mut r = client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(serde_json::json!({"user": "duty", "password": password}).to_string());
            if let Some(x) = xff {
                r = r.header("X-Forwarded-For", x);
            }
            r.send()
        };
        // A stranger on the internet guesses at the officer's name through the proxy, faster
        // than the limit allows: their own tries are refused…
        let mut statuses = Vec::new();
        for _ in 0..14 {
            let r = try_as(&proxy, Some("203.0.113.7".into()), "guess guess 1")
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        assert!(statuses.starts_with(&[401; 10]), "{statuses:?}");
        assert!(statuses.ends_with(&[429; 4]), "{statuses:?}");
        // …the officer, at the office's own address and through the proxy from home, gets in.
        let r = try_as(&direct, None, PASSWORD).await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let r = try_as(&proxy, Some("198.51.100.20".into()), PASSWORD)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Someone not behind the proxy cannot pick a new address per try by writing the header.
        let mut statuses = Vec::new();
        for i in 0..14 {
            let r = try_as(&spoofer, Some(format!("192.0.2.{i}")), "guess guess 2")
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        assert!(statuses.ends_with(&[429; 4]), "{statuses:?}");
        // The trail names each try's client as the port took it: the stranger's own address
        // through the proxy, the spoofer's real one.
        let addresses: Vec<String> = store
            .read_blocking(|c| {
                let mut q = c.prepare(
                    "SELECT DISTINCT json_extract(detail, '$.address') FROM audit
                     WHERE kind IN ('office.signed_in', 'office.sign_in_refused') ORDER BY 1",
                )?;
                let r = q.query_map((), |r| r.get(0))?;
                Ok(r.collect::<Result<Vec<String>, _>>()?)
            })
            .unwrap();
        assert_eq!(
            addresses,
            ["127.0.0.2", "127.0.0.3", "198.51.100.20", "203.0.113.7"]
        );
        stop.fire();
    }
}

on_both! {
    fn a_report_from_someone_holding_several_places_is_booked_only_where_they_say(backend) {
        use stormbell::respond::intake;
        let dir = tempfile::tempdir().unwrap();
        let place = Place::new(backend);
        let store = place.open();
        // The fixture county, with one lead answering for two villages the zone threatens (桃垟村
        // and its neighbour 上溪村), as a small county's roster often has.
        let county = common::county::copy_files(&dir.path().join("county"));
        let mut duties = std::fs::read_to_string(county.join("duties.csv")).unwrap();
        duties.push_str("P33109800824,331098108203,村防汛责任人\n");
        std::fs::write(county.join("duties.csv"), duties).unwrap();
        let prepared =
            stormbell::registry::prepare_import(&county, stormbell::registry::Encoding::Auto, &|_| {})
                .unwrap();
        let reg = std::sync::Arc::new(stormbell::registry::Registry::new(prepared.data.clone()));
        prepared.commit(&store, "test", jiff::Zoned::now()).unwrap();
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        let policy = cfg.dispatch_policy();
        let settings = cfg.respond.clone();
        let (warned, _driver) =
            common::county::drive_zone(&store, reg.clone(), &cfg, &policy, &settings, 50.0);
        // That lead, and a town officer.
        let lineage = common::county::ZONE.to_string();
        let must = |person: &str| {
            let (r, l, p) = (reg.clone(), lineage.clone(), person.to_string());
            store
                .read_blocking(move |c| intake::places_to_name(c, &r, &l, &p))
                .unwrap()
        };
        let lead = warned
            .contacts
            .iter()
            .find(|c| c.level == "village" && must(&c.person).len() >= 2)
            .expect("a lead holding two villages under the zone")
            .clone();
        let officer = warned
            .contacts
            .iter()
            .find(|c| c.level == "town")
            .expect("a town officer")
            .clone();
        let t0 = warned.at;
        common::dispatch::accept_all(&store, &policy, t0);
        let mut minute = 1;
        let mut reply = |mobile: &str, text: &str| {
            let at = t0 + jiff::SignedDuration::from_mins(minute);
            minute += 1;
            common::dispatch::reply_at(&store, (&reg, &settings, &policy), mobile, text, at);
        };
        let booked = |person: &str| -> Vec<(String, i64)> {
            let p = person.to_string();
            store
                .read_blocking(move |c| {
                    let mut q = c.prepare(
                        "SELECT target, people FROM respond_evacuation WHERE person = ?1 ORDER BY target",
                    )?;
                    let r = q.query_map([p], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    Ok(r.collect::<Result<Vec<_>, _>>()?)
                })
                .unwrap()
        };
        let asked = |purpose: &str| -> i64 {
            let p = format!("{purpose}%");
            store
                .read_blocking(move |c| {
                    Ok(c.query_row(
                        "SELECT count(*) FROM dispatch_message WHERE purpose LIKE ?1",
                        [p],
                        |r| r.get(0),
                    )?)
                })
                .unwrap()
        };
        // Not saying which: kept, asked back with their places, booked nowhere.
        reply(&lead.mobile, "3 12");
        assert!(booked(&lead.person).is_empty());
        assert_eq!(asked("unbooked:"), 1);
        // Saying which: booked there, and only there.
        let places = must(&lead.person);
        let (id, name) = &places[1];
        reply(&lead.mobile, &format!("3 12 {name}"));
        let b = booked(&lead.person);
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(stormbell::respond::ledger::row_of(&reg, &b[0].0), *id);
        assert_eq!(b[0].1, 12);
        // A town officer never books for the town's code; for a place they name, yes.
        let officer_places = must(&officer.person);
        reply(&officer.mobile, "3 20");
        assert!(
            booked(&officer.person)
                .iter()
                .all(|(t, _)| reg.village(t).is_some() || reg.site(t).is_some()),
            "never a unit code"
        );
        if let Some((oid, oname)) = officer_places.first() {
            reply(&officer.mobile, &format!("3 20 {oname}"));
            let b = booked(&officer.person);
            assert!(b.iter().any(|(t, n)| t == oid && *n == 20), "{b:?}");
        }
        // A return before the lift is kept and answered, not counted.
        reply(&lead.mobile, &format!("5 12 {name}"));
        let returned: Option<i64> = {
            let p = lead.person.clone();
            store
                .read_blocking(move |c| {
                    Ok(c.query_row(
                        "SELECT max(returned) FROM respond_evacuation WHERE person = ?1",
                        [p],
                        |r| r.get(0),
                    )?)
                })
                .unwrap()
        };
        assert_eq!(returned, None);
        assert!(asked("unbooked:") >= 2);
    }
}
