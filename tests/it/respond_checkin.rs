//! The personal check-in link, driven over real HTTP on loopback as a village lead's phone
//! would: open the link from the SMS, acknowledge, report people moved; and every refusal the
//! pages owe: no CSRF token, another origin, a guessed or malformed token, too many tries, an
//! expired link.

use crate::common;
use crate::common::backend::{Place, on_both};
use common::csrf_of;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::dispatch::{contact, targets};
use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::dispatch::outbox::{self, Policy};
use stormbell::registry::{self, Encoding, Registry};
use stormbell::respond::calls::{self, RespondSettings};
use stormbell::runtime::clock::SimClock;
use stormbell::store::Store;
use stormbell::web::checkin::{Checkin, Limits};

fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read_blocking(move |c| Ok(c.query_row(sql, (), |r| r.get(0))?))
        .unwrap()
}

/// application/x-www-form-urlencoded, as a browser sends a form.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

on_both! {
    async fn a_lead_acknowledges_and_reports_people_moved_from_the_link_in_their_sms(backend) {
        let place = Place::new(backend);
        let store = place.open();
        let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
        let prepared = registry::prepare_import(&county, Encoding::Auto, &|_| {}).unwrap();
        let reg = Arc::new(Registry::new(prepared.data.clone()));
        prepared.commit(&store, "test", jiff::Zoned::now()).unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let policy = Policy {
            office: "东溟县防汛办".into(),
            link_base: Some(format!("{base}/r/")),
            ..Policy::default()
        };
        let settings = RespondSettings::default();
        let now: Timestamp = "2026-08-09T03:00:00+08:00".parse().unwrap();
        let mut t = targets(
            "flash_flood:FF331098001",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            vec![contact(1, "13900000001"), contact(2, "13900000002")],
        );
        for c in &mut t.contacts {
            c.target = "331098001002".into();
        }
        let (p2, s2) = (policy.clone(), settings.clone());
        store
            .write_blocking(move |tx| {
                outbox::enqueue(tx, 1, &t, now, &p2)?;
                calls::register(tx, 1, &t, now, &s2, &p2)
            })
            .unwrap();
        let text: String = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT text FROM dispatch_message WHERE person = 'P00001'",
                    (),
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        let at = text
            .find(&format!("{base}/r/"))
            .expect("the link is in the SMS");
        let link: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_graphic())
            .collect();

        let clock = Arc::new(SimClock::new(now + SignedDuration::from_mins(3)));
        let checkin = Checkin::new(
            store.clone(),
            reg.clone(),
            settings.clone(),
            policy.clone(),
            Limits {
                per_ip_per_min: 1000,
                per_token_per_min: 12,
            },
            clock.clone(),
        )
        .await
        .unwrap();
        let settings_web = stormbell::web::WebSettings {
            title: "东溟县防汛办".into(),
            sender: "fx@example.cn".into(),
            base: base.clone(),
        };
        let (stop_tx, stop_rx) = stormbell::runtime::Trigger::new();
        let server = tokio::spawn(stormbell::web::serve(
            listener,
            store.clone(),
            settings_web,
            Some(checkin),
            None,
            stop_rx,
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();

        // The page: small, the warning in words, no phone numbers, no script, not cached.
        let r = http.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let page = r.text().await.unwrap();
        assert!(page.len() < 8 * 1024, "{} bytes", page.len());
        assert!(
            page.contains("山洪灾害红色预警") && page.contains("上坞村"),
            "{page}"
        );
        assert!(page.contains("溪口镇中心小学"), "the shelter is named");
        assert!(!page.contains("<script"), "works with scripts off");
        assert!(!page.contains("1390000000"), "no phone number on the page");
        let csrf = csrf_of(&page);

        // Without the form's CSRF value, or from another site: refused, nothing recorded.
        let r = http
            .post(&link)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("kind", "ack")]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = http
            .post(&link)
            .header("Origin", "http://evil.example")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("kind", "ack"), ("csrf", csrf.as_str())]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(count(&store, "SELECT count(*) FROM respond_answer"), 0);

        // 收到: recorded, the call answered, the co-responsible covered.
        let r = http
            .post(&link)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("kind", "ack"), ("csrf", csrf.as_str())]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert!(r.headers()["location"].to_str().unwrap().ends_with("?ok=1"));
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM respond_answer WHERE channel = 'link' AND kind = 'ack' AND person = 'P00001'"
            ),
            1
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM respond_call WHERE person = 'P00001' AND state = 'answered'"
            ),
            1
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM respond_call WHERE person = 'P00002' AND state = 'covered'"
            ),
            1
        );

        // 转移上报: 23 moved to the school; the same report again (a double tap) counts once; a
        // later total replaces it.
        let moved = [
            ("kind", "moved"),
            ("csrf", csrf.as_str()),
            ("people", "23"),
            ("shelter", "溪口镇中心小学"),
            ("refused", "2"),
        ];
        for _ in 0..2 {
            let r = http
                .post(&link)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&moved))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303);
        }
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM respond_answer WHERE kind = 'moved'"
            ),
            1
        );
        assert_eq!(
            count(&store, "SELECT sum(people) FROM respond_evacuation"),
            23
        );
        assert_eq!(count(&store, "SELECT refused FROM respond_evacuation"), 2);
        let page = http
            .get(format!("{link}?ok=1"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("已转移 23 人") && page.contains("已收到您的报告"),
            "{page}"
        );
        // A number that is not one: said, not recorded.
        let r = http
            .post(&link)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("kind", "moved"),
                ("csrf", csrf.as_str()),
                ("people", "很多"),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("人数请填数字"));

        // A guess, a malformed token, another page's CSRF value: nothing.
        let guess = format!("{base}/r/AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(http.get(&guess).send().await.unwrap().status(), 404);
        assert_eq!(
            http.get(format!("{base}/r/../../etc"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        let other: String = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT token FROM dispatch_message WHERE person = 'P00002' AND token IS NOT NULL",
                    (),
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        let r = http
            .post(format!("{base}/r/{other}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[("kind", "help"), ("csrf", csrf.as_str())]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            403,
            "one link's CSRF value does not open another"
        );

        // Hammering one token is slowed down.
        let mut limited = false;
        for _ in 0..20 {
            if http.get(&link).send().await.unwrap().status() == 429 {
                limited = true;
                break;
            }
        }
        assert!(limited, "429 after the per-token limit");

        // Three days later the link has expired: it shows nothing but that.
        clock.advance(Duration::from_secs(73 * 3600));
        let r = http.get(format!("{base}/r/{other}")).send().await.unwrap();
        assert_eq!(r.status(), 410);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("链接已失效") && !page.contains("上坞村"),
            "{page}"
        );

        stop_tx.fire();
        server.await.unwrap().unwrap();
    }
}
