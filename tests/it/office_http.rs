//! The duty office's page and API over real HTTP on loopback, for what a browser test does not
//! show: every door that must stay shut (no session, no CSRF value, another origin, a wrong or
//! unknown name, a disabled user, a signed-out session, too many tries), what is stored (no
//! password, no session id in clear), and the API and CSV a script reads.

use crate::common;
use crate::common::backend::{Place, on_both};
use common::csrf_of;

use std::time::Duration;

use stormbell::store::Store;
use stormbell::web::auth;

const PASSWORD: &str = "防汛值班 2019 duty";

fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read_blocking(move |c| Ok(c.query_row(sql, (), |r| r.get(0))?))
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(String::from)
}

fn value_of(cookie: &str) -> String {
    cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

on_both! {
    async fn office_doors_stay_shut_without_a_session_and_open_with_one(backend) {
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        let policy = cfg.dispatch_policy();
        let settings = cfg.respond.clone();
        let (s2, r2, c2, p2, t2) = (
            store.clone(),
            reg.clone(),
            cfg.clone(),
            policy.clone(),
            settings.clone(),
        );
        tokio::task::spawn_blocking(move || {
            common::county::warn_zone(&s2, r2, &c2, &p2, &t2, 38.0);
        })
        .await
        .unwrap();
        let now = jiff::Timestamp::now();
        store
            .write_blocking(move |tx| {
                auth::put_user(tx, &auth::NewUser::new("duty", PASSWORD, "officer")?, now)?;
                auth::put_user(tx, &auth::NewUser::new("night", PASSWORD, "viewer")?, now)
            })
            .unwrap();
        // Stored: hashes, never the password.
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM web_user WHERE hash LIKE '$argon2id$%' AND hash NOT LIKE '%2019%'"
            ),
            2
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let office = stormbell::web::office::Office::new(
            store.clone(),
            reg.clone(),
            cfg.time_zone(),
            "东溟县防汛办（合成）",
            &base,
        )
        .await
        .unwrap();
        let (server, stop) = common::serve_web(listener, &store, None, Some(office));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();

        // No session: the page sends to sign-in; the rest say 401 and show nothing.
        let r = http.get(format!("{base}/office")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/office/login");
        for path in [
            "/office/board",
            "/office/events",
            "/api/v1/board",
            "/api/v1/board.csv",
        ] {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 401, "{path}");
            let body = r.text().await.unwrap();
            assert!(!body.contains("FF331098001"), "{path} leaks nothing");
        }
        let r = http
            .get(format!("{base}/api/v1/board"))
            .header("Authorization", "Bearer AAAAAAAAAAAAAAAAAAAAAA")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "a guessed bearer token");

        // The sign-in form and its pre-session cookie.
        let login = |pre: &str, fields: &[(&str, &str)], origin: Option<&str>| {
            let mut req = http
                .post(format!("{base}/office/login"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Cookie", format!("sb_pre={pre}"))
                .body(form(fields));
            if let Some(o) = origin {
                req = req.header("Origin", o);
            }
            req.send()
        };
        let r = http
            .get(format!("{base}/office/login"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let pre = value_of(&set_cookie(&r, "sb_pre").expect("a pre-session cookie"));
        let page = r.text().await.unwrap();
        let csrf = csrf_of(&page);

        // Without the CSRF value, with another cookie's value, or from another site: refused
        // before the password is even looked at.
        for (p, fields, origin) in [
            (
                pre.as_str(),
                vec![("user", "duty"), ("password", PASSWORD)],
                None,
            ),
            (
                "BBBBBBBBBBBBBBBBBBBBBB",
                vec![
                    ("user", "duty"),
                    ("password", PASSWORD),
                    ("csrf", csrf.as_str()),
                ],
                None,
            ),
            (
                pre.as_str(),
                vec![
                    ("user", "duty"),
                    ("password", PASSWORD),
                    ("csrf", csrf.as_str()),
                ],
                Some("http://evil.example"),
            ),
        ] {
            let r = login(p, &fields, origin).await.unwrap();
            assert_eq!(r.status(), 403);
            assert!(set_cookie(&r, "sb_session").is_none());
        }
        // A wrong password and an unknown name get the same answer; an injection is a name.
        for (user, pw) in [
            ("duty", "not the password"),
            ("nobody", PASSWORD),
            ("' OR '1'='1", "' OR '1'='1"),
        ] {
            let r = login(
                &pre,
                &[("user", user), ("password", pw), ("csrf", &csrf)],
                None,
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 401, "{user}");
            assert!(set_cookie(&r, "sb_session").is_none());
            assert!(r.text().await.unwrap().contains("用户名或密码错误"));
        }
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM audit WHERE kind = 'office.sign_in_refused'"
            ),
            3
        );

        // A name of 100,000 characters and a megabyte of password: refused like any wrong one.
        let long = "名".repeat(100_000);
        let huge = "p".repeat(1 << 20);
        let r = login(
            &pre,
            &[("user", &long), ("password", &huge), ("csrf", &csrf)],
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401);

        // Signed in: a session cookie the page can't read, only its hash stored.
        let r = login(
            &pre,
            &[("user", "duty"), ("password", PASSWORD), ("csrf", &csrf)],
            Some(&base),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 303);
        let cookie = set_cookie(&r, "sb_session").expect("a session");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let session = value_of(&cookie);
        assert_eq!(session.len(), 22, "128 bits");
        let stored: Vec<String> = store
            .read_blocking(|c| {
                let mut q = c.prepare("SELECT id FROM web_session")?;
                let r = q.query_map((), |r| r.get(0))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert!(!stored[0].contains(&session) && stored[0].len() == 64);
        let with = |path: &str| {
            http.get(format!("{base}{path}"))
                .header("Cookie", format!("sb_session={session}"))
                .send()
        };

        // The page: the warned zone's villages, waiting for answers; the map; no caching.
        let r = with("/office").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let page = r.text().await.unwrap();
        assert!(
            page.contains("<svg") && page.contains("data-place=\"331098108208\""),
            "the map"
        );
        assert!(page.contains("桃垟村"), "the village by name");
        // The base map an officer orients on, drawn from the registry's layers: town boundaries
        // with their names, rivers, roads, the coast.
        for layer in ["towns", "rivers", "roads", "coast"] {
            assert!(page.contains(&format!("class=\"l {layer}\"")), "{layer}");
        }
        assert!(page.contains(">桃林镇</text>"), "a town's name on the map");
        let office_csrf = csrf_of(&page);

        // The API: the same board as JSON; the CSV with one row per place.
        let r = with("/api/v1/board").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let board: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let zone = board["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["lineage"] == common::county::ZONE)
            .expect("the zone's warning");
        assert_eq!(zone["tier"], "orange");
        let places = zone["places"].as_array().unwrap();
        let v208 = places.iter().find(|p| p["id"] == "331098108208").unwrap();
        assert_eq!(v208["answer"], "waiting");
        assert!(v208["called"].as_u64().unwrap() >= 1);
        assert!(v208["to_move"].as_u64().unwrap() > 0, "the site's people");
        assert_eq!(v208["sites"][0][0], "FF331098001");
        // Every view gives the same county figures at the same moment (ARCHITECTURE.md, "The
        // evacuation ledger"): the JSON, the CSV's county row, /metrics and `status`.
        let totals = &board["totals"];
        let csv = with("/api/v1/board.csv")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let county: Vec<&str> = csv
            .lines()
            .find(|l| l.split(',').nth(4) == Some("county"))
            .expect("the CSV's county row")
            .split(',')
            .collect();
        // Columns by their header's name: the county row's places are under "called".
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        for (column, key) in [
            ("called", "places"),
            ("to_move", "to_move"),
            ("moved", "moved"),
            ("refused", "refused"),
        ] {
            assert_eq!(county[col(column)], totals[key].to_string(), "{key}: {csv}");
        }
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for (figure, key) in [
            ("to_move", "to_move"),
            ("moved", "moved"),
            ("refused", "refused"),
        ] {
            let line = format!(
                "stormbell_evacuation_people{{figure=\"{figure}\"}} {}",
                totals[key]
            );
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
        assert!(
            metrics.contains(&format!(
                "stormbell_places{{answer=\"waiting\"}} {}",
                totals["waiting"]
            )),
            "{metrics}"
        );
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_stormbell"))
            .args(["--db", &place.at, "status"])
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&status.stdout);
        assert!(
            status.contains(&format!(
                "evacuate: {} place(s) under warning: to move {}, moved {}, refused {}",
                totals["places"], totals["to_move"], totals["moved"], totals["refused"]
            )),
            "{status}"
        );

        let r = with("/api/v1/board.csv?filter=silent").await.unwrap();
        assert_eq!(r.status(), 200);
        let csv = r.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("lineage,hazard,warning_tier,place"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("331098108208") && l.contains(",waiting,")),
            "{csv}"
        );
        assert!(
            lines[1..]
                .iter()
                .filter(|l| !matches!(l.split(',').nth(4), Some("town" | "county")))
                .all(|l| l.contains(",waiting,") || l.contains(",silent,")),
            "the silent filter keeps silent and waiting places only"
        );

        // Live: the events stream opens with the board's digest.
        let mut r = with("/office/events").await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .expect("an event within the watch period")
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&chunk).contains("event: board"));
        // Kept open to the end, as an office page left open through a restart would be.
        let mut live = r;

        // Scripts: a JSON sign-in gives a bearer token; a form post to it is refused.
        let r = http
            .post(format!("{base}/api/v1/session"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("user", "night"), ("password", PASSWORD)]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        let r = http
            .post(format!("{base}/api/v1/session"))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "user": "night", "password": PASSWORD }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let token: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let bearer = token["token"].as_str().unwrap().to_string();
        let api = |t: String| {
            http.get(format!("{base}/api/v1/board"))
                .header("Authorization", format!("Bearer {t}"))
                .send()
        };
        assert_eq!(api(bearer.clone()).await.unwrap().status(), 200);
        // A disabled user's sessions end at once.
        let later = jiff::Timestamp::now();
        store
            .write_blocking(move |tx| auth::disable_user(tx, "night", later))
            .unwrap();
        assert_eq!(api(bearer).await.unwrap().status(), 401);

        // Signing out needs the page's CSRF value; afterwards the session is gone.
        let out = |csrf: &str| {
            http.post(format!("{base}/office/logout"))
                .header("Cookie", format!("sb_session={session}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&[("csrf", csrf)]))
                .send()
        };
        assert_eq!(out("forged").await.unwrap().status(), 403);
        assert_eq!(with("/api/v1/board").await.unwrap().status(), 200);
        assert_eq!(out(&office_csrf).await.unwrap().status(), 303);
        assert_eq!(with("/api/v1/board").await.unwrap().status(), 401);

        // Guessing one name's password: ten tries a minute, then 429 even for the right one.
        let mut statuses = Vec::new();
        for _ in 0..12 {
            let r = login(
                &pre,
                &[
                    ("user", "duty"),
                    ("password", "guess guess 1"),
                    ("csrf", &csrf),
                ],
                None,
            )
            .await
            .unwrap();
            statuses.push(r.status().as_u16());
        }
        assert!(statuses.contains(&429), "{statuses:?}");
        let r = login(
            &pre,
            &[("user", "duty"), ("password", PASSWORD), ("csrf", &csrf)],
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 429);

        // Shutting down with a live page open: the stream ends and the server stops.
        stop.fire();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("an open office page must not hold the shutdown")
            .unwrap()
            .unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(Some(_)) = live.chunk().await {}
        })
        .await;
        assert!(ended.is_ok(), "the live stream ended");
    }
}
