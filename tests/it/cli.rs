//! The `stormbell` command as a user runs it: exit codes, output lines, files written.

use crate::common;
use crate::common::backend::{Backend, Place, on_both};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    common::stormbell()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ext(p: &str) -> String {
    common::external().join(p).display().to_string()
}

fn root(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

fn xmllint_12(file: &Path) -> Output {
    Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(common::external().join("schema/CAP-v1.2.xsd"))
        .arg(file)
        .output()
        .expect("xmllint is not installed: run ./scripts/test")
}

#[test]
fn validate_prints_ok_or_one_line_per_problem_and_sets_the_exit_code() {
    let good = ext("cap/valid/google-cap-library/canada.cap");
    let o = run(&["cap", "validate", &good]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), format!("{good}: ok\n"));

    let bad = ext("cap/invalid/google-cap-library/invalid.cap");
    let o = run(&["cap", "validate", &good, &bad]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains(&format!("{good}: ok\n")), "{out}");
    assert!(
        out.contains(&format!("{bad}:9: alert: required <scope> is missing")),
        "{out}"
    );
}

#[test]
fn validate_with_the_google_profile() {
    let f = ext("cap/valid/oasiscap/v1dot2_appendix_adot4.xml");
    let o = run(&["cap", "validate", "--profile", "google", &f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("Google requires <expires>"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn validate_refuses_oversize_files_unread() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.xml");
    let file = std::fs::File::create(&f).unwrap();
    file.set_len(50 * 1024 * 1024).unwrap(); // sparse: costs no disk
    let o = run(&["cap", "validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("over the limit"), "{}", stdout(&o));
}

#[test]
fn convert_to_oasis_writes_xsd_valid_cap_12_for_every_corpus_alert() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["valid", "lenient"] {
        let mut stack = vec![common::external().join("cap").join(sub)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    files.push(p)
                }
            }
        }
    }
    files.push(PathBuf::from(root("fixtures/cap/cn-typhoon-red.xml")));
    assert_eq!(files.len(), 44);
    for (i, f) in files.iter().enumerate() {
        let o = run(&["cap", "convert", "--to", "oasis", f.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let out = dir.path().join(format!("{i}.xml"));
        std::fs::write(&out, &o.stdout).unwrap();
        let lint = xmllint_12(&out);
        assert!(
            lint.status.success(),
            "{} converted is not valid CAP 1.2: {}",
            f.display(),
            String::from_utf8_lossy(&lint.stderr)
        );
    }
}

#[test]
fn convert_to_the_national_dialect_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let cn = root("fixtures/cap/cn-typhoon-red.xml");
    let o = run(&["cap", "convert", "--to", "oasis", &cn]);
    let oasis = dir.path().join("oasis.xml");
    std::fs::write(&oasis, &o.stdout).unwrap();
    let o = run(&["cap", "convert", "--to", "cn", oasis.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = stdout(&o);
    assert!(
        text.contains("<sendTime>2019-08-09 18:30:00+08:00</sendTime>"),
        "{text}"
    );
    assert!(text.contains("<severity>Red</severity>"), "{text}");
    assert!(
        text.contains("<circle>28.2,121.48 25000</circle>"),
        "{text}"
    );
    let back = dir.path().join("cn.xml");
    std::fs::write(&back, &o.stdout).unwrap();
    let o = run(&["cap", "validate", back.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // An OASIS alert with no national codes cannot become the dialect, and says why.
    let o = run(&[
        "cap",
        "convert",
        "--to",
        "cn",
        &ext("cap/valid/oasiscap/v1dot2_appendix_adot1.xml"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("14-digit national sender code"));
}

#[test]
fn convert_needs_a_choice_when_a_file_holds_several_alerts() {
    let f = ext("cap/wrappers/bushfire_valid.edxlde");
    let o = run(&["cap", "convert", "--to", "oasis", &f]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds 7 alerts"));
    let o = run(&["cap", "convert", "--to", "json", "--index", "3", &f]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sender"], "webmaster@rfs.nsw.gov.au");
}

#[test]
fn config_check_passes_the_shipped_default() {
    let o = run(&["config", "check", &root("config/default.toml")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).ends_with("default.toml: ok\n"));
}

#[test]
fn config_check_names_file_key_and_expectation_for_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("county.toml");
    std::fs::write(
        &f,
        "[http]\ntimeout_secs = -3\n[office]\ntimezone = \"Asia/Shanghia\"\n",
    )
    .unwrap();
    let o = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let file = f.display().to_string();
    assert!(
        out.contains(&format!("{file}: key `http.timeout_secs`")),
        "{out}"
    );
    assert!(out.contains("expected"), "{out}");
    assert!(
        out.contains(&format!(
            "{file}: key `office.timezone`: `Asia/Shanghia` is not an IANA time zone"
        )),
        "{out}"
    );
}

#[test]
fn environment_variables_are_a_layer_and_are_named_when_wrong() {
    let o = bin()
        .args(["config", "check"])
        .env("STORMBELL_CAP__MAX_DEPTH", "deep")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("STORMBELL_CAP__MAX_DEPTH"),
        "{}",
        stdout(&o)
    );

    let o = bin()
        .args(["config", "show"])
        .env("STORMBELL_STORE__PATH", "/srv/flood/stormbell.db")
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("path = \"/srv/flood/stormbell.db\""),
        "{}",
        stdout(&o)
    );
    // A flag beats the environment.
    let o = bin()
        .args(["--db", "/tmp/flag.db", "config", "show"])
        .env("STORMBELL_STORE__PATH", "/srv/flood/stormbell.db")
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("path = \"/tmp/flag.db\""),
        "{}",
        stdout(&o)
    );
}

/// Sign in to the demo's office page as the demo user and read the board (blocking HTTP/1.1
/// over a socket: the test needs no runtime for two requests).
fn office_signs_in(base: &str, password: &str) {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://").to_string();
    let request = |req: String| -> String {
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    };
    let login = request(format!(
        "GET /office/login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ));
    let pre = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: sb_pre="))
        .and_then(|v| v.split(';').next())
        .expect("a pre-session cookie")
        .to_string();
    let at = login.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = login[at..].split('"').next().unwrap().to_string();
    let body = format!("user=demo&password={password}&csrf={csrf}");
    let signed = request(format!(
        "POST /office/login HTTP/1.1\r\nHost: {host}\r\nCookie: sb_pre={pre}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(signed.starts_with("HTTP/1.1 303"), "{signed}");
    let session = signed
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: sb_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session")
        .to_string();
    let page = request(format!(
        "GET /office HTTP/1.1\r\nHost: {host}\r\nCookie: sb_session={session}\r\nConnection: close\r\n\r\n"
    ));
    assert!(
        page.starts_with("HTTP/1.1 200"),
        "{}",
        &page[..page.len().min(500)]
    );
    assert!(
        page.contains("一图一表") && page.contains("<svg"),
        "the board and its map"
    );
}

#[test]
fn demo_runs_a_drill_with_no_configuration_serves_the_office_page_and_leaves_a_verifiable_audit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    // The flash-flood drill at full speed (the README's demo replays Lekima in two minutes).
    let mut child = bin()
        .args([
            "demo",
            "--dir",
            d.to_str().unwrap(),
            "--serve",
            "127.0.0.1:0",
            "--speed",
            "max",
            "--scenario",
            &root("fixtures/scenarios/cell-2024"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            out.push_str(&line);
            out.push('\n');
            if line.contains("serving the office page until Ctrl-C") {
                break;
            }
        }
    }
    // What it is, plainly: the county, the login, and that no real phone is texted.
    assert!(out.contains("251 villages"), "{out}");
    assert!(out.contains("IN-PROCESS SIMULATED NETWORK"), "{out}");
    // A line per warning as it is issued, in simulated Beijing time, then the drill's figures.
    assert!(out.contains("06-16 16:10  Alert  red    山洪灾害"), "{out}");
    assert!(out.contains("Cancel"), "{out}");
    assert!(out.contains("drill finished in"), "{out}");
    let office_line = out
        .lines()
        .find(|l| l.contains("duty office"))
        .unwrap_or_else(|| panic!("{out}"));
    let url = office_line.split_whitespace().nth(2).unwrap().to_string();
    let password = office_line.split_whitespace().last().unwrap().to_string();
    let base = url.trim_end_matches("/office").to_string();
    office_signs_in(&base, &password);
    // The lead's link in the output opens their check-in page, in the drill's time.
    let link = out
        .lines()
        .find(|l| l.contains("a lead's link"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http")))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let page = http_get(&link);
    assert!(
        page.starts_with("HTTP/1.1 200"),
        "{}",
        &page[..page.len().min(400)]
    );
    // Ctrl-C ends it cleanly.
    // SAFETY: sends SIGINT to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
    // The drill's folder: report, summary, the logs of every text and answer, CAP.
    for f in [
        "report.md",
        "summary.json",
        "dispatch.jsonl",
        "responses.jsonl",
    ] {
        assert!(d.join("drill").join(f).is_file(), "{f}");
    }
    assert!(std::fs::read_dir(d.join("drill/cap")).unwrap().count() > 10);
    // The log file is plain text: no terminal colour codes in it.
    let log = std::fs::read_to_string(d.join("demo.log")).unwrap();
    assert!(
        !log.is_empty() && !log.contains('\u{1b}'),
        "ANSI in demo.log"
    );
    let db = d.join("stormbell.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { c.query_row(sql, (), |r| r.get(0)).unwrap() };
    assert!(
        count("SELECT count(*) FROM corr_warning WHERE hazard = 'flash_flood' AND tier = 'red'")
            > 0
    );
    assert!(count("SELECT count(*) FROM dispatch_message WHERE state = 'delivered'") > 0);
    assert!(count("SELECT count(*) FROM respond_answer") > 0);
    assert_eq!(
        count("SELECT count(*) FROM dispatch_message WHERE state = 'submitting'"),
        0
    );
    drop(c);
    // The duty officer's status sees the texts and the answers…
    let o = run(&["--db", db.to_str().unwrap(), "status"]);
    assert!(
        stdout(&o).contains("outbox:   sms:") && stdout(&o).contains("delivered"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("respond:  calls "), "{}", stdout(&o));
    // …and that the loudspeakers have no route in the embedded default.
    assert!(
        stdout(&o).contains("broadcast: no route configured"),
        "{}",
        stdout(&o)
    );
    let o = run(&["--db", db.to_str().unwrap(), "audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("audit intact"), "{}", stdout(&o));

    // Tamper behind stormbell's back: verify names the row.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "DROP TRIGGER audit_refuse_update; UPDATE audit SET subject = 'x' WHERE seq = 2;",
    )
    .unwrap();
    drop(c);
    let o = run(&["--db", db.to_str().unwrap(), "audit", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("audit BROKEN at entry #2"),
        "{}",
        stdout(&o)
    );
}

/// A plain GET over a socket (HTTP/1.1, connection closed).
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn replay_names_a_missing_scenario_and_fails() {
    let o = run(&["replay", "--scenario", "fixtures/scenarios/no-such-storm"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no-such-storm") && err.contains("scenario.toml"),
        "{err}"
    );
}

on_both! {
    fn run_logs_json_and_shuts_down_cleanly_on_sigterm(backend) {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir().unwrap();
        // A SQLite file of its own, or a new PostgreSQL database (by its URL).
        let place = (backend == Backend::Postgres).then(|| Place::new(backend));
        let db = match &place {
            Some(p) => p.at.clone(),
            None => dir.path().join("d.db").display().to_string(),
        };
        let mut child = bin()
            .args(["--log-format", "json", "--db", &db, "run"])
            // The data folder: on PostgreSQL the checkpoints and their key go there.
            .env("STORMBELL_STORE__PATH", dir.path().join("d.db"))
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // Every line is JSON; with no feeds configured and an empty registry the daemon says so,
        // then that it runs.
        let mut said = Vec::new();
        loop {
            let line = lines.next().unwrap().unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let msg = v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            said.push((
                v["level"].as_str().unwrap_or_default().to_string(),
                msg.clone(),
            ));
            // On PostgreSQL the node runs as a standby first, and says what it lacks once it
            // leads.
            let seen = |what: &str| said.iter().any(|(_, m)| m.contains(what));
            if seen("stormbell running") && seen("no feeds configured") && seen("registry is empty")
            {
                break;
            }
        }
        assert!(
            said.iter()
                .any(|(l, m)| l == "WARN" && m.contains("no feeds configured")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|(l, m)| l == "WARN" && m.contains("registry is empty")),
            "{said:?}"
        );
        // The shell's builtin kill: /bin/kill (procps) is not on every minimal machine.
        let kill = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", child.id())])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
        let kinds: Vec<String> = match &place {
            Some(p) => common::postgres::client(&p.at, |c| {
                c.query("SELECT kind FROM audit ORDER BY seq", &[])
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect()
            }),
            None => rusqlite::Connection::open(&db)
                .unwrap()
                .prepare("SELECT kind FROM audit ORDER BY seq")
                .unwrap()
                .query_map((), |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect(),
        };
        // On PostgreSQL the one node takes the leader's lease first (several may share it).
        let want: &[&str] = match backend {
            Backend::Sqlite => &["daemon.started", "daemon.stopped"],
            Backend::Postgres => &["daemon.started", "daemon.leading", "daemon.stopped"],
        };
        assert_eq!(kinds, want);
    }
}

/// A loopback HTTP server that serves a real NWS Atom index, rewritten so its links point
/// back here, and real alerts behind those links — plus one broken link and one bad alert.
mod follow {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    fn serve() -> (String, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let base = format!("http://{}", listener.local_addr().unwrap());
                let feed = std::fs::read_to_string(common::external().join("cap/feeds/google-cap-library/weather_index.atom"))
                    .unwrap();
                // The real index lists two NWS alerts; point them at us, and add a third entry
                // whose link is broken.
                let feed = feed
                    .replace(
                        "http://www.weather.gov/alerts-beta/wwacapget.php?x=CT20100831030400OKXAirQualityAlertOKX20100901031500CT",
                        &format!("{base}/alerts/weather.cap"),
                    )
                    .replace(
                        "http://www.weather.gov/alerts-beta/wwacapget.php?x=DC20100830203300LWXAirQualityAlertLWX20100901040000DC",
                        &format!("{base}/alerts/invalid.cap"),
                    )
                    .replace(
                        "</feed>",
                        &format!("<entry><id>gone</id><title>gone</title><updated>2010-08-30T23:04:00-04:00</updated><link href='{base}/alerts/gone.cap'/></entry></feed>"),
                    );
                let app = Router::new()
                    .route("/feed.atom", get(move || async move { feed }))
                    .route(
                        "/alerts/weather.cap",
                        get(|| async { std::fs::read(common::external().join("cap/valid/google-cap-library/weather.cap")).unwrap() }),
                    )
                    .route(
                        "/alerts/invalid.cap",
                        get(|| async { std::fs::read(common::external().join("cap/invalid/google-cap-library/invalid.cap")).unwrap() }),
                    )
                    .route("/alerts/gone.cap", get(|| async { StatusCode::NOT_FOUND }));
                tx.send(base).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        (rx.recv().unwrap(), handle)
    }

    #[test]
    fn follow_fetches_and_checks_every_linked_alert() {
        let (base, _server) = serve();
        let feed = format!("{base}/feed.atom");
        let o = run(&["cap", "validate", "--follow", &feed]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(out.contains(&format!("{feed}: ok")), "{out}");
        assert!(
            out.contains(&format!("{base}/alerts/weather.cap: ok")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{base}/alerts/invalid.cap:9: alert: required <scope> is missing"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("{base}/alerts/gone.cap: HTTP 404")),
            "{out}"
        );
    }

    on_both! {
    fn run_polls_the_configured_feeds_and_status_shows_their_health_and_gap(backend) {
        let (base, _server) = serve();
        let dir = tempfile::tempdir().unwrap();
        // The daemon's database: a SQLite file of its own, or a new PostgreSQL database.
        let place = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Place::new(backend)),
        };
        let db = match &place {
            Some(p) => std::path::PathBuf::from(&p.at),
            None => dir.path().join("d.db"),
        };
        let count = |sql: &str| -> i64 {
            match &place {
                Some(p) => common::postgres::query_one(&p.at, sql),
                None => rusqlite::Connection::open(&db)
                    .unwrap()
                    .query_row(sql, [], |r| r.get(0))
                    .unwrap(),
            }
        };
        let cfg = dir.path().join("feeds.toml");
        std::fs::write(
            &cfg,
            format!(
                "[store]\npath = {:?}\n\n\
                 [feeds]\nstart_spread_secs = 0\nbackoff_min_secs = 1\nbackoff_max_secs = 2\n\n\
                 [[feeds.source]]\nid = \"nws\"\nkind = \"cap\"\nurl = \"{base}/feed.atom\"\ninterval_secs = 1\n\n\
                 [[feeds.source]]\nid = \"dead\"\nkind = \"typhoon\"\nurl = \"{base}/typhoon.json\"\ninterval_secs = 1\ngap_intervals = 2\n",
                // The data folder: on PostgreSQL the checkpoints and their key go there.
                dir.path().join("d.db").display().to_string()
            ),
        )
        .unwrap();
        let args = [
            "--config",
            cfg.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ];
        // Its log goes to a file in the folder: each line written wakes the wait below (a
        // PostgreSQL commit shows in no file).
        let log = dir.path().join("run.log");
        let mut child = bin()
            .args(args)
            .args(["--log-format", "json", "run"])
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait (bounded) until the dead feed's gap alarm is in the database.
        let gap = "SELECT count(*) FROM feed_state WHERE feed = 'dead' AND gap_since IS NOT NULL";
        let raised = common::changed_until(15, dir.path(), || {
            // Read before the daemon has made its schema: not yet.
            std::panic::catch_unwind(|| count(gap)).is_ok_and(|n| n == 1)
        });
        Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", child.id())])
            .status()
            .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
        let logs = std::fs::read_to_string(&log).unwrap();
        assert!(raised, "no gap alarm; logs:\n{logs}");
        assert!(
            logs.lines()
                .any(|l| l.contains("\"ERROR\"") && l.contains("FEED GAP") && l.contains("dead")),
            "{logs}"
        );

        let o = bin().args(args).arg("status").output().unwrap();
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{out}");
        assert!(
            out.contains(&format!("nws [cap] {base}/feed.atom: ok")),
            "{out}"
        );
        assert!(
            out.contains(&format!("dead [typhoon] {base}/typhoon.json: GAP")),
            "{out}"
        );
        assert!(out.contains("gap alarm raised 20"), "{out}");
        assert!(
            out.contains("0 items, "),
            "an alarm is not an item the feed published: {out}"
        );
        assert!(
            out.contains("2 linked documents failed")
                && out.contains(&format!("{base}/alerts/gone.cap: HTTP 404"))
                && out.contains(&format!("{base}/alerts/invalid.cap: line 9")),
            "the broken links are shown: {out}"
        );
        assert!(
            out.contains(&format!("{base}/typhoon.json: HTTP 404")),
            "{out}"
        );
        // The correlate stage acted on the readable alert and the gap alarm: nothing waits.
        assert!(
            out.contains("2 configured, 0 inbox entries not yet acted on"),
            "{out}"
        );
        let o = bin().args(args).args(["audit", "verify"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        // The daemon signed the head at its stop, outside the database: the last entry (its
        // own `daemon.stopped`) is covered.
        let last = count("SELECT max(seq) FROM audit");
        assert!(
            stdout(&o).contains(&format!("checkpoints: 1 hold (last #{last} of ")),
            "{}",
            stdout(&o)
        );
        assert!(
            logs.lines()
                .any(|l| l.contains("audit checkpoint") && l.contains(&format!("\"seq\":{last}"))),
            "each checkpoint is logged too: {logs}"
        );
        let gaps = count("SELECT count(*) FROM audit WHERE kind = 'feed.gap' AND subject = 'dead'");
        assert_eq!(gaps, 1);
        // The gap became an internal warning for the county's duty officers.
        let warned = count(
            "SELECT count(*) FROM corr_decision WHERE lineage = 'feed_gap:dead' AND send = 'Alert'",
        );
        assert_eq!(warned, 1);
    }
    }
}

#[test]
fn config_check_names_each_bad_feed_source() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("feeds.toml");
    std::fs::write(
        &f,
        "[[feeds.source]]\nid = \"radar\"\nkind = \"radar\"\nurl = \"ftp://example.cn/x\"\n\n\
         [[feeds.source]]\nid = \"radar\"\nkind = \"cap\"\nurl = \"https://example.cn/cap.atom\"\ninterval_secs = 0\n",
    )
    .unwrap();
    let o = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let path = f.display().to_string();
    for want in [
        format!("{path}: key `feeds.source[0].kind`: `radar` is not a feed kind"),
        format!("{path}: key `feeds.source[0].url`: `ftp://example.cn/x` is not an http(s)"),
        format!("{path}: key `feeds.source[1].id`: `radar` is used by two feeds"),
        format!("{path}: key `feeds.source[1].interval_secs`: expected at least 1 second"),
    ] {
        assert!(out.contains(&want), "missing `{want}` in:\n{out}");
    }
}

/// `stormbell fwi` prints the reference table (to the reference's 4 significant digits),
/// with and without the day-length adjustment, and names a bad row without losing the rest.
#[test]
fn fwi_prints_the_reference_table_and_names_bad_rows() {
    let compare = |out: &str, reference: &str| {
        let want = std::fs::read_to_string(ext(&format!("fwi/{reference}"))).unwrap();
        let (got, want): (Vec<&str>, Vec<&str>) = (out.lines().collect(), want.lines().collect());
        assert_eq!(got.len(), want.len());
        assert_eq!(got[0].to_ascii_uppercase(), want[0]);
        for (g, w) in got[1..].iter().zip(&want[1..]) {
            for (a, b) in g.split(',').zip(w.split(',')).skip(9) {
                let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
                let unit = 10f64.powi(b.abs().log10().floor() as i32 - 3);
                assert!((a - b).abs() <= unit * (1.0 + 1e-9), "{g}\n{w}");
            }
        }
    };
    let input = ext("fwi/test_fwi.csv");
    let o = run(&["fwi", &input]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    compare(&stdout(&o), "fwi_01.csv");
    let o = run(&["fwi", "--no-lat-adjust", &input]);
    compare(&stdout(&o), "fwi_07.csv");
    let o = run(&["fwi", "--start", "0,0,0", &input]);
    compare(&stdout(&o), "fwi_05.csv");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(&input)
        .unwrap()
        .replacen(";42;25;", ";42;twenty;", 1);
    std::fs::write(&bad, text).unwrap();
    let o = run(&["fwi", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2: ws `twenty` is not a number"), "{err}");
    assert_eq!(stdout(&o).lines().count(), 49, "every row is still printed");
}

#[test]
fn run_refuses_a_broadcast_platform_it_cannot_sign_for_or_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let cfg = dir.path().join("b.toml");
    let write = |platform: &str| {
        std::fs::write(
            &cfg,
            format!("[dispatch.broadcast.platform]\nurl = \"http://127.0.0.1:9/\"\n{platform}"),
        )
        .unwrap();
    };
    let start = || {
        bin()
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
                "run",
            ])
            .output()
            .unwrap()
    };
    // A key that is not there: named, before anything runs.
    write(
        "src = \"010333109800000001\"\ndest = \"010233100000000001\"\n\
         [dispatch.broadcast.platform.signer]\nkind = \"sm2\"\nkey = \"/nonexistent/ebd.key.pem\"\ncert_sn = \"1\"\nissuer = \"x\"\n",
    );
    let o = start();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("/nonexistent/ebd.key.pem"), "{err}");
    // A resource code of the wrong shape: the key named.
    write("src = \"0103331098\"\ndest = \"010233100000000001\"\n");
    let o = start();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("dispatch.broadcast.platform.src"), "{err}");
    // A signer kind that does not exist: the config check says where.
    write(
        "src = \"010333109800000001\"\ndest = \"010233100000000001\"\n[dispatch.broadcast.platform.signer]\nkind = \"rsa\"\n",
    );
    let o = start();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("dispatch.broadcast"), "{err}");
}

/// A trail of `n` entries, as stages write them (synthetic).
fn trail(place: &Place, n: usize) {
    let store = place.open();
    let at: jiff::Timestamp = "2019-08-09T18:30:00Z".parse().unwrap();
    store
        .write_blocking(move |tx| {
            for i in 0..n {
                let e = stormbell::store::audit::Entry::utc(
                    at + jiff::SignedDuration::from_mins(i as i64),
                    "system",
                    "sms.accepted",
                    format!("msg-{i}"),
                    serde_json::json!({ "to": "1380571xxxx", "lineage": "flash_flood:331098101201" }),
                );
                stormbell::store::audit::append(tx, &e)?;
            }
            Ok(())
        })
        .unwrap();
}

/// Rewrite entry `seq` behind stormbell's back and recompute every hash after it, as someone
/// who knows the chain's rule would: the chain alone then verifies.
fn rewrite_and_rechain(place: &Place, seq: i64) {
    use stormbell::store::audit;
    place.disarm_audit(&["UPDATE", "DELETE"]);
    let store = place.open();
    store
        .write_blocking(move |c| {
            c.execute(
                "UPDATE audit SET detail = '{\"to\":\"1380571xxxx\",\"note\":\"never sent\"}' WHERE seq = ?1",
                [seq],
            )?;
            let mut prev = audit::since(c, seq - 1, 1)?[0].hash.clone();
            for mut r in audit::since(c, seq, 100_000)? {
                r.prev_hash = prev;
                r.hash = audit::compute_hash(&r);
                c.execute(
                    "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                    rusqlite::params![r.prev_hash, r.hash, r.seq],
                )?;
                prev = r.hash;
            }
            Ok(())
        })
        .unwrap();
    assert!(store.close(std::time::Duration::from_secs(10)));
}

on_both! {
fn audit_verify_holds_the_trail_to_signed_checkpoints_and_to_the_duty_logs_head(backend) {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    trail(&place, 10);
    // The office's store by its environment; on PostgreSQL the checkpoints and key go in
    // the data folder `dir`, named after the database.
    let on = |place: &Place, args: &[&str]| {
        let mut c = bin();
        place.env(&mut c, dir.path());
        c.args(args).output().unwrap()
    };
    let run = |args: &[&str]| on(&place, args);

    // The head, as the duty officer copies it into the duty log…
    let o = run(&["audit", "head"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let head = stdout(&o).lines().next().unwrap().to_string();
    assert!(head.starts_with("#10 sha256:"), "{head}");
    assert!(
        stdout(&o).contains("2019-08-10 02:39:00"),
        "the last entry's time, local: {}",
        stdout(&o)
    );
    // …and a signed checkpoint beside the database (its key created on first use, 0600).
    let o = run(&["audit", "checkpoint"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let beside = |ext: &str| match backend {
        Backend::Sqlite => Path::new(&place.at).with_extension(ext),
        Backend::Postgres => {
            let mut made: Vec<PathBuf> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect();
            assert_eq!(made.len(), 1, "one {ext} in the data folder: {made:?}");
            made.remove(0)
        }
    };
    let key = beside("audit-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is for its owner only: {mode:o}");
    }
    let o = run(&["audit", "verify", "--head", &head]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("head #10 from the duty log: holds"), "{out}");
    assert!(out.contains("checkpoints: 1 hold (last #10 of "), "{out}");

    // Rows cut off the end: the chain alone still verifies; the checkpoint and the duty
    // log's head say what happened.
    let cut = place.copy();
    cut.disarm_audit(&["DELETE"]);
    cut.raw(
        "DELETE FROM audit WHERE seq > 7",
        "DELETE FROM audit WHERE seq > 7",
        &[],
    )
    .unwrap();
    let cps = beside("audit-checkpoints");
    let cut_args = [
        "audit",
        "verify",
        "--checkpoints",
        cps.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--head",
        &head,
    ];
    let o = on(&cut, &cut_args);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("audit intact: 7 entries"), "{out}");
    assert!(
        out.contains("head #10 from the duty log: DOES NOT HOLD: the trail ends at #7"),
        "{out}"
    );
    assert!(
        out.contains("checkpoint #10 of 20")
            && out.contains("the trail ends at #7; rows were cut off the end"),
        "{out}"
    );

    // A row rewritten and the chain recomputed after it.
    rewrite_and_rechain(&place, 4);
    let o = run(&["audit", "verify"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("audit intact: 10 entries"), "{out}");
    assert!(
        out.contains("DOES NOT HOLD: checkpoint #10")
            && out.contains("was rewritten at or before it"),
        "{out}"
    );
    let o = run(&["audit", "verify", "--head", &head]);
    assert!(
        stdout(&o).contains("head #10 from the duty log: DOES NOT HOLD: the row's hash is now"),
        "{}",
        stdout(&o)
    );
    // `status` says so too.
    let o = run(&["status"]);
    assert!(
        stdout(&o).contains("checkpoints: 1 DO NOT HOLD"),
        "{}",
        stdout(&o)
    );

    // A checkpoint line forged without the key is named as such.
    let mut lines = std::fs::read_to_string(&cps).unwrap();
    let forged = lines
        .lines()
        .next()
        .unwrap()
        .replace("\"seq\":10", "\"seq\":9");
    lines.push_str(&forged);
    lines.push('\n');
    std::fs::write(&cps, lines).unwrap();
    let o = run(&["audit", "verify"]);
    assert!(
        stdout(&o).contains("checkpoint #9 of ") && stdout(&o).contains("not the audit key's"),
        "{}",
        stdout(&o)
    );
    // A bad --head is a usage error, not a silent pass.
    let o = run(&["audit", "verify", "--head", "#10 sha256:abc"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
}

#[test]
fn config_check_says_each_problem_once_with_its_file_and_status_needs_a_database() {
    let dir = tempfile::tempdir().unwrap();
    // Not TOML: one problem, with the file and the line, not one per section.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[store]\npath = \"x.db\"\n[web\n").unwrap();
    let o = run(&["--config", bad.to_str().unwrap(), "config", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert_eq!(all.matches("not valid TOML").count(), 1, "{all}");
    assert!(all.contains("bad.toml") && all.contains("line 3"), "{all}");
    // Links people open must be https (http only on loopback); every problem at once.
    let urls = dir.path().join("urls.toml");
    std::fs::write(
        &urls,
        "[web]\npublic_url = \"http://fxb.example.gov.cn\"\n[dispatch]\nlink_base = \"fxb.example.gov.cn/r/\"\n",
    )
    .unwrap();
    let o = run(&["--config", urls.to_str().unwrap(), "config", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(all.contains("urls.toml: key `web.public_url`"), "{all}");
    assert!(all.contains("urls.toml: key `dispatch.link_base`"), "{all}");
    // A log level that names no level.
    let o = run(&["--log-level", "verbose", "config", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&[
        "--log-level",
        "info,stormbell::cap=debug",
        "config",
        "check",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // `status` on a database that is not there fails, saying where it looked.
    let missing = dir.path().join("none.db");
    let o = run(&["--db", missing.to_str().unwrap(), "status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no database at"));
    assert!(!missing.exists());
}

/// Every real sample in tests/data/real-formats that is one document of a format stormbell
/// reads is read (exit 0) into lines of the documented kinds; the quoted research note is
/// refused (exit 1) with a reason; nothing panics.
#[test]
fn feed_read_every_real_sample() {
    let dirs = [
        "real-formats/01-tac-samples",
        "real-formats/02-json-samples",
    ];
    let mut files: Vec<String> = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(common::external().join(d)).unwrap() {
            files.push(e.unwrap().path().display().to_string());
        }
    }
    // The telemetry frames and the national system's CAP (the warning JSON files are
    // collections of quoted rows, read row by row in feeds_formats).
    for e in std::fs::read_dir(common::external().join("real-formats/03-hydro-samples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "hex") {
            files.push(p.display().to_string());
        }
    }
    files.push(
        common::external()
            .join("real-formats/04-cap-samples/cap_12379_henan_2020-02-05_gale_blue_update.xml")
            .display()
            .to_string(),
    );
    files.sort();
    assert!(files.len() >= 27, "{files:?}");
    for f in &files {
        let o = run(&["feed", "read", "--received", "2026-10-07T00:00:00Z", f]);
        let out = stdout(&o);
        let kinds: Vec<String> = out
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["kind"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(!kinds.is_empty(), "{f}");
        let refused = f.ends_with("nmc_small_endpoints_2026-09-13.txt");
        assert_eq!(o.status.success(), !refused, "{f}: {out}");
        assert!(
            kinds.iter().all(|k| [
                "typhoon", "landfall", "rain", "cap", "skipped", "note", "refused"
            ]
            .contains(&k.as_str())),
            "{f}: {kinds:?}"
        );
        assert_eq!(
            kinds.contains(&"refused".to_string()),
            refused,
            "{f}: {kinds:?}"
        );
    }
    // Several files at once: one refused makes the exit status 1, the others still print.
    let o = run(&[
        "feed",
        "read",
        &files[0],
        &common::external()
            .join("real-formats/02-json-samples/nmc_small_endpoints_2026-09-13.txt")
            .display()
            .to_string(),
    ]);
    assert!(!o.status.success());
    assert!(stdout(&o).lines().count() >= 2);
}

/// A registry for another county (990100 西岭县, the fixture county's files with its codes
/// and name changed) with the default configuration (东溟县, 33109899900000): the daemon
/// refuses to start, naming both, instead of warning 西岭县's villages as 东溟县.
#[test]
fn run_refuses_a_registry_of_another_county_than_the_office() {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::county::copy_files(&dir.path().join("reg"));
    for e in std::fs::read_dir(&reg).unwrap() {
        let p = e.unwrap().path();
        // Some of the fixture's files are GBK, as offices' spreadsheets export them.
        let bytes = std::fs::read(&p).unwrap();
        let utf8 = std::str::from_utf8(&bytes).is_ok();
        let enc = if utf8 {
            encoding_rs::UTF_8
        } else {
            encoding_rs::GBK
        };
        let (text, _, bad) = enc.decode(&bytes);
        assert!(!bad, "{}", p.display());
        let changed = text.replace("331098", "990100").replace("东溟县", "西岭县");
        let (out, _, bad) = enc.encode(&changed);
        assert!(!bad);
        std::fs::write(&p, out).unwrap();
    }
    let db = dir.path().join("d.db");
    let db = db.to_str().unwrap();
    let o = run(&["--db", db, "registry", "import", reg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The import is in the database file itself once the command has exited: nothing left
    // in a WAL beside it for someone who copies the file.
    let wal_len = || std::fs::metadata(format!("{db}-wal")).map_or(0, |m| m.len());
    assert_eq!(wal_len(), 0, "the import was left in the WAL");
    let o = run(&["--db", db, "run"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("990100") && err.contains("西岭县") && err.contains("33109899900000"),
        "{err}"
    );
    // Configured for that county, it starts (and stops on SIGTERM as usual).
    let cfg = dir.path().join("office.toml");
    std::fs::write(
        &cfg,
        "[office]\nname = \"西岭县防汛防台抗旱指挥部办公室\"\nname_en = \"Xiling County (synthetic)\"\n\
         cap_sender = \"fxb.xiling.example.cn\"\nsender_code = \"99010099900000\"\n",
    )
    .unwrap();
    let mut child = bin()
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--log-format",
            "json",
            "--db",
            db,
            "run",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let running = lines
        .by_ref()
        .any(|l| l.is_ok_and(|l| l.contains("stormbell running")));
    assert!(running);
    let kill = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    // Read to the end: the daemon logs its shutdown.
    for _ in lines {}
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // Stopped, it leaves its database whole in the one file.
    assert_eq!(wal_len(), 0, "the daemon left its WAL behind");
}

/// A telemetry feed is checked for what it needs: an address to listen on and a readable
/// station table whose lines are address,name,lon,lat.
#[test]
fn config_check_names_what_an_sl651_feed_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("stations.csv");
    std::fs::write(
        &table,
        "address,name,lon,lat\n0040803540,岭头（合成）,120.90,x\n",
    )
    .unwrap();
    let f = dir.path().join("county.toml");
    std::fs::write(
        &f,
        format!(
            "[[feeds.source]]\nid = \"rtu\"\nkind = \"sl651\"\nurl = \"http://x\"\n\
             [[feeds.source]]\nid = \"rtu2\"\nkind = \"sl651\"\nurl = \"tcp://0.0.0.0:5011\"\nstations = \"{}\"\n",
            table.display()
        ),
    )
    .unwrap();
    let o = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("feeds.source[0].url") && out.contains("tcp://ADDRESS:PORT"),
        "{out}"
    );
    assert!(out.contains("feeds.source[0].stations"), "{out}");
    assert!(
        out.contains("feeds.source[1].stations") && out.contains("line 2"),
        "{out}"
    );
    // Fixed, it passes.
    std::fs::write(
        &table,
        "address,name,lon,lat\n0040803540,岭头（合成）,120.90,28.52\n",
    )
    .unwrap();
    std::fs::write(
        &f,
        format!(
            "[[feeds.source]]\nid = \"rtu2\"\nkind = \"sl651\"\nurl = \"tcp://0.0.0.0:5011\"\nstations = \"{}\"\n",
            table.display()
        ),
    )
    .unwrap();
    let o = run(&["config", "check", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stdout(&o));
}
