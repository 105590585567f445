//! The synthetic county (`fixtures/county`) in a fresh store, and a flash-flood warning on it
//! driven the way the daemon drives it: rain at the gauge beside zone FF331098001 through the
//! real correlate engine, whose decisions queue dispatch's texts and register respond's calls.

use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::engine::{self, Engine};
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::warning::Contact;
use stormbell::correlate::{Rules, Tier};
use stormbell::dispatch::outbox::Policy;
use stormbell::registry::{self, Encoding, Registry};
use stormbell::respond::calls::RespondSettings;
use stormbell::store::Store;

/// The flash-flood zone the tests warn.
pub const ZONE: &str = "flash_flood:FF331098001";

/// An hour's rain of `mm` ending at `end` (RFC 3339) at the gauge 桃垟 in 桃林镇 (synthetic),
/// beside the zone the tests warn: 40 mm raises its warnings, 60 mm more upgrades them.
pub fn rain(end: &str, mm: f64) -> stormbell::feeds::Observation {
    use stormbell::feeds::rainfall::{RainBatch, RainReading};
    stormbell::feeds::Observation::Rain(RainBatch {
        readings: vec![RainReading {
            station: "70499001".into(),
            name: None,
            lon: Some(120.945),
            lat: Some(28.19),
            end: end.parse().unwrap(),
            minutes: 60,
            mm: Some(mm),
            flag: None,
        }],
    })
}

/// Import the fixture county into `store`.
pub fn registry(store: &Store) -> Arc<Registry> {
    let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    let prepared = registry::prepare_import(&county, Encoding::Auto, &|_| {}).unwrap();
    let reg = Arc::new(Registry::new(prepared.data.clone()));
    prepared.commit(store, "test", jiff::Zoned::now()).unwrap();
    reg
}

/// The zone's Alert: when, at what tier, and whom it calls.
pub struct Warned {
    /// Decision time.
    pub at: Timestamp,
    /// Tier.
    pub tier: Tier,
    /// Persons called.
    pub contacts: Vec<Contact>,
}

/// Rain on 2019-08-09 from 10:00 (+08:00): 5 mm in the hour to 11:00, then `mm` in the hour
/// to 12:00 (38 mm: 准备转移, orange; 50 mm: 立即转移, red). Only the zone's decisions reach
/// dispatch and respond (the same rain warns other places, which the tests do not follow).
pub fn warn_zone(
    store: &Store,
    reg: Arc<Registry>,
    cfg: &stormbell::config::Config,
    policy: &Policy,
    settings: &RespondSettings,
    mm: f64,
) -> Warned {
    drive_zone(store, reg, cfg, policy, settings, mm).0
}

/// The engine after the zone's Alert, to drive on (to the lift).
pub struct Driver {
    engine: Engine,
    hook: engine::DecisionHook,
    tz: jiff::tz::TimeZone,
    /// The last evaluation's time.
    pub at: Timestamp,
}

impl Driver {
    /// Dry hours (the gauge reporting 0 mm each hour), ten minutes at a time, until the zone's
    /// warning is lifted (a Cancel), up to two days; returns when.
    pub fn until_lifted(&mut self, store: &Store) -> Timestamp {
        for step in 0..288 {
            self.at += SignedDuration::from_mins(10);
            let now = self.at;
            // The gauge keeps reporting, dry (a silent gauge is blind, and blind holds).
            if step % 6 == 5 {
                self.engine
                    .observe(&super::gauge_rain(now, 0.0), 100 + step);
            }
            let ev = Arc::new(self.engine.evaluate(now));
            let lifted = ev
                .emitted
                .iter()
                .any(|x| x.lineage == ZONE && x.decision.send == MessageKind::Cancel);
            let (ev2, tz2, hook2) = (ev.clone(), self.tz.clone(), self.hook.clone());
            store
                .write_blocking(move |tx| engine::commit(tx, &ev2, &[], now, &tz2, Some(&hook2)))
                .unwrap();
            if lifted {
                return now;
            }
        }
        panic!("the zone was not lifted within two dry days");
    }
}

/// The fixture county's registry files (CSV and GeoJSON), copied into `to` so a test can
/// change them as an office changes its roster; returns `to`.
pub fn copy_files(to: &Path) -> std::path::PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "csv" || x == "geojson") {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    to.to_path_buf()
}

/// [`warn_zone`], keeping the engine to drive on.
pub fn drive_zone(
    store: &Store,
    reg: Arc<Registry>,
    cfg: &stormbell::config::Config,
    policy: &Policy,
    settings: &RespondSettings,
    mm: f64,
) -> (Warned, Driver) {
    let tz = cfg.time_zone();
    let inner = stormbell::respond::chain(
        stormbell::dispatch::hook(policy.clone(), Arc::new(tokio::sync::Notify::new())),
        stormbell::respond::hook(settings.clone(), policy.clone()),
    );
    let hook = engine::DecisionHook(Arc::new(move |tx, d, t, now| {
        if t.lineage == ZONE {
            (inner.0)(tx, d, t, now)
        } else {
            Ok(())
        }
    }));
    let mut e = Engine::new(Rules::national(), cfg.issuer(), reg);
    let start: Timestamp = "2019-08-09T10:00:00+08:00".parse().unwrap();
    let mut alert = None;
    for step in 0..=12 {
        let now = start + SignedDuration::from_mins(step * 10);
        if step == 6 {
            e.observe(&super::gauge_rain(now, 5.0), step);
        }
        if step == 12 {
            e.observe(&super::gauge_rain(now, mm), step);
        }
        let ev = Arc::new(e.evaluate(now));
        for x in ev.emitted.iter().filter(|x| x.lineage == ZONE) {
            assert_eq!(x.decision.send, MessageKind::Alert);
            alert = Some(Warned {
                at: now,
                tier: x.state.tier,
                contacts: x.targets.contacts.clone(),
            });
        }
        let (ev2, tz2, hook2) = (ev.clone(), tz.clone(), hook.clone());
        store
            .write_blocking(move |tx| engine::commit(tx, &ev2, &[], now, &tz2, Some(&hook2)))
            .unwrap();
    }
    let at = start + SignedDuration::from_mins(120);
    (
        alert.expect("the zone was warned"),
        Driver {
            engine: e,
            hook,
            tz,
            at,
        },
    )
}

/// The SMS channel (to the test SMSC) and the respond stage running on `clock`, as the daemon
/// runs them; [`Stages::stop`] ends both and checks they ended cleanly.
pub struct Stages {
    stop_tx: stormbell::runtime::Trigger,
    /// Stopped with the stages (for the web server's shutdown).
    pub stop: stormbell::runtime::Shutdown,
    /// Wakes the stages (as a new decision does).
    pub wake: Arc<tokio::sync::Notify>,
    sms: tokio::task::JoinHandle<anyhow::Result<()>>,
    respond: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Stages {
    /// Start both (inside a runtime).
    pub fn start(
        store: &Store,
        reg: &Arc<Registry>,
        (policy, settings): (&Policy, &RespondSettings),
        account: stormbell::dispatch::sms::AccountSettings,
        clock: Arc<stormbell::runtime::clock::SimClock>,
    ) -> Stages {
        let (stop_tx, stop) = stormbell::runtime::Trigger::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let sms = tokio::spawn(stormbell::dispatch::drive(
            stormbell::dispatch::sms::SmsChannel::new(vec![account], store.clone(), policy.clone())
                .with_clock(clock.clone()),
            stop.clone(),
            wake.clone(),
        ));
        let respond = tokio::spawn(stormbell::respond::run(
            store.clone(),
            reg.clone(),
            settings.clone(),
            policy.clone(),
            clock,
            wake.clone(),
            stop.clone(),
        ));
        Stages {
            stop_tx,
            stop,
            wake,
            sms,
            respond,
        }
    }

    /// Serve the CAP feed, the check-in pages (on this runtime's clock) and, when given, the
    /// office page on `listener` until the stages stop.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        store: &Store,
        reg: &Arc<Registry>,
        (policy, settings): (&Policy, &RespondSettings),
        clock: Arc<stormbell::runtime::clock::SimClock>,
        office: Option<stormbell::web::office::Office>,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let checkin = stormbell::web::checkin::Checkin::new(
            store.clone(),
            reg.clone(),
            settings.clone(),
            policy.clone(),
            Default::default(),
            clock,
        )
        .await
        .unwrap();
        let stop = self.stop.clone();
        tokio::spawn(stormbell::web::serve(
            listener,
            store.clone(),
            stormbell::web::WebSettings {
                title: "东溟县防汛办".into(),
                sender: "fx@example.cn".into(),
                base,
            },
            Some(checkin),
            office,
            stop,
        ))
    }

    /// Stop both and wait for them.
    pub async fn stop(self) {
        self.stop_tx.fire();
        self.sms.await.unwrap().unwrap();
        self.respond.await.unwrap().unwrap();
    }
}
