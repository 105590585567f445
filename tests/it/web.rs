//! The CAP feed stormbell publishes, served over real loopback HTTP and read back with the
//! same codec stormbell uses on others' feeds.

use crate::common::backend::{Place, on_both};
use crate::common::county::rain;
use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use stormbell::cap::{self, Options, Profile};
use stormbell::correlate::engine::{self, Engine};
use stormbell::correlate::warning::Issuer;
use stormbell::correlate::{Hazard, Rules};
use stormbell::registry::{self, Registry};
use stormbell::store::Store;
use stormbell::web::{self, WebSettings};

/// The office of the built-in configuration (the synthetic county), issuing exercises.
fn issuer() -> Issuer {
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    Issuer {
        status: stormbell::cap::model::Status::Exercise,
        ..cfg.issuer()
    }
}

/// A store with real warnings in it: an hour of 60 mm at a gauge in 桃林镇 raises
/// flash-flood and rainstorm warnings, then a second hour upgrades them.
fn warned_store(place: &Place) -> Store {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (loaded, _) = registry::check_dir(&root.join("fixtures/county"), registry::Encoding::Auto);
    let reg = Arc::new(Registry::new(loaded.data));
    let mut e = Engine::new(Rules::national(), issuer(), reg);
    let store = place.open();
    let tz = issuer().tz;
    for (i, (end, mm)) in [
        ("2019-08-09T12:00:00+08:00", 40.0),
        ("2019-08-09T13:00:00+08:00", 60.0),
    ]
    .iter()
    .enumerate()
    {
        e.observe(&rain(end, *mm), i as i64 + 1);
        let now: Timestamp = end.parse().unwrap();
        let ev = e.evaluate(now);
        assert!(!ev.emitted.is_empty());
        let tz = tz.clone();
        store
            .write_blocking(move |tx| engine::commit(tx, &ev, &[], now, &tz, None))
            .unwrap();
    }
    store
}

on_both! {
    async fn the_cap_feed_is_served_and_reads_back_with_the_codec(backend) {
        let place = Place::new(backend);
        let dir = tempfile::tempdir().unwrap();
        let store = warned_store(&place);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = WebSettings {
            title: "东溟县防汛防台抗旱指挥部办公室".into(),
            sender: "fxb.dongming.example.cn".into(),
            base: base.clone(),
        };
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        let server = tokio::spawn(web::serve(
            listener,
            store.clone(),
            settings.clone(),
            None,
            None,
            stop_rx,
        ));
        let client = reqwest::Client::new();
        let feed = client
            .get(format!("{base}/cap/feed.atom"))
            .send()
            .await
            .unwrap();
        assert_eq!(feed.status(), 200);
        assert!(
            feed.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/atom+xml")
        );
        let body = feed.bytes().await.unwrap();
        let report = cap::inspect(&body, &Options::default());
        assert!(report.is_valid(), "{:?}", report.problems);
        let index = report.index.expect("an Atom index");
        // One entry per lineage in force (its latest version), every one a link to a CAP file.
        let current = store.read(|c| Ok(web::current_public(c)?)).await.unwrap();
        assert_eq!(index.entries.len(), current.len());
        assert!(
            current
                .iter()
                .any(|w| w.hazard == Hazard::FlashFlood.as_str())
        );
        assert!(
            current
                .iter()
                .all(|w| w.version == 2 || w.msg_type == "Alert")
        );
        for entry in &index.entries {
            let link = entry.link.clone().expect("a link");
            assert!(link.starts_with(&base), "{link}");
            let r = client.get(&link).send().await.unwrap();
            assert_eq!(r.status(), 200, "{link}");
            let xml = r.bytes().await.unwrap();
            let alert = cap::read_alert(&xml, &cap::Limits::default())
                .unwrap()
                .alert;
            assert!(link.ends_with(&format!("/cap/{}.xml", alert.identifier)));
            assert!(current.iter().any(|w| w.identifier == alert.identifier));
            let google = cap::inspect(
                &xml,
                &Options {
                    profile: Profile::Google,
                    limits: cap::Limits::default(),
                },
            );
            assert_eq!(google.errors().count(), 0, "{:?}", google.problems);
        }
        // Unknown identifiers are 404, not an empty 200.
        let r = client
            .get(format!("{base}/cap/nope.xml"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // The same as files.
        let out = dir.path().join("pub");
        let s2 = settings.clone();
        let out2 = out.clone();
        let written = store
            .read(move |c| web::publish_files(c, &out2, &s2))
            .await
            .unwrap();
        let all = store
            .read(|c| Ok(stormbell::correlate::store::issued_since(c, 0, 10_000)?))
            .await
            .unwrap();
        assert_eq!(written, all.iter().filter(|w| !w.restricted).count());
        let file = std::fs::read(out.join("feed.atom")).unwrap();
        let again = cap::inspect(&file, &Options::default());
        assert_eq!(again.index.unwrap().entries.len(), index.entries.len());
        for w in &all {
            assert_eq!(
                std::fs::read_to_string(out.join(format!("{}.xml", w.identifier))).unwrap(),
                w.cap
            );
        }
        stop.fire();
        server.await.unwrap().unwrap();
    }
}
