//! Hostile input and a hostile network, as an outsider on the office network or the internet
//! would try them, over loopback only and bounded in count and time: each test shows one hole
//! closed (each was run against the code before its fix and seen to fail).

use crate::common;

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
            limits,
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

#[test]
fn the_check_in_pages_and_their_errors_may_not_be_sniffed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("c.db")).unwrap();
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

#[test]
fn a_forged_delivery_report_is_refused_and_adds_nothing() {
    use stormbell::correlate::{Hazard, MessageKind, Tier};
    use stormbell::dispatch::kannel::KannelChannel;
    use stormbell::dispatch::outbox::{self, Policy};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("k.db")).unwrap();
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
        let ask = |path: String| {
            let dlr = dlr.clone();
            tokio::task::spawn_blocking(move || {
                let start = Instant::now();
                loop {
                    if TcpStream::connect(&dlr).is_ok() {
                        return get(&dlr, &path);
                    }
                    assert!(start.elapsed() < Duration::from_secs(10), "no listener");
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let count = |sql: &'static str| {
            store
                .read_blocking(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?))
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
                    [],
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
