//! Channels restarted by the supervisor, as the daemon runs them: a store fault ends a run,
//! the supervisor starts the channel again, and the new run must stand alone — its own
//! delivery-report listener, its own binds, and only its own rows taken back.
//!
//! The fault is real: the outbox table is renamed away under the running channel (its claim
//! then fails, as on a corrupt or full database), and renamed back once the failure is in the
//! audit trail. Peers: Kannel with the node-smpp SMSC, and the SMSC alone for SMPP.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dispatch::{contact, targets};
use common::kannel::{free_port, start_kannel};
use common::smsc::Smsc;
use jiff::Timestamp;
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::dispatch::kannel::KannelChannel;
use stormbell::dispatch::outbox::{self, Policy};
use stormbell::dispatch::sms::SmsChannel;
use stormbell::runtime::Trigger;
use stormbell::store::Store;
use stormbell::supervise::{self, Backoff};

/// Quick restarts, so the test waits seconds, not minutes.
fn quick() -> Backoff {
    Backoff {
        first: Duration::from_millis(200),
        max: Duration::from_secs(1),
        healthy_after: Duration::from_secs(60),
    }
}

/// The outbox table renamed away under the running daemon, and back. (On PostgreSQL a
/// statement the store prepared before looks its table up by name again after the change.)
struct Fault<'a> {
    place: &'a Place,
}

impl Fault<'_> {
    fn break_outbox(place: &Place) -> Fault<'_> {
        Fault::exec(
            place,
            "ALTER TABLE dispatch_message RENAME TO dispatch_message_away",
        );
        Fault { place }
    }

    fn mend(self) {
        Fault::exec(
            self.place,
            "ALTER TABLE dispatch_message_away RENAME TO dispatch_message",
        );
    }

    fn exec(place: &Place, sql: &str) {
        place.raw(sql, sql, &[]).unwrap();
    }
}

/// What the supervisor wrote about the stage's failures.
fn failures(store: &Store, stage: &'static str) -> Vec<String> {
    store
        .read_blocking(move |c| {
            let mut st = c.prepare(
                "SELECT detail FROM audit WHERE kind = 'stage.failed' AND subject = ?1 ORDER BY seq",
            )?;
            let r = st.query_map([stage], |r| r.get(0))?;
            Ok(r.collect::<Result<Vec<String>, _>>()?)
        })
        .unwrap()
}

fn enqueue(store: &Store, decision: i64, first: usize, n: usize) {
    let contacts: Vec<_> = (first..first + n)
        .map(|i| contact(i, &format!("1370000{i:04}")))
        .collect();
    let t = targets(
        &format!("geo_hazard:33109810{decision}"),
        1,
        Hazard::GeoHazard,
        Tier::Orange,
        MessageKind::Alert,
        contacts,
    );
    store
        .write_blocking(move |tx| {
            outbox::enqueue(tx, decision, &t, Timestamp::now(), &Policy::default())
        })
        .unwrap();
}

on_both! {
fn a_restarted_kannel_channel_listens_for_delivery_reports_again_and_sends(backend) {
    let smsc = Smsc::start(20);
    let dir = tempfile::tempdir().unwrap();
    let kannel = start_kannel(&smsc, dir.path());
    let place = Place::new(backend);
    let store = place.open();
    let dlr_port = free_port();
    let settings = kannel.settings(dlr_port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (trigger, stop) = Trigger::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let (st, sd, wk) = (store.clone(), stop.clone(), wake.clone());
        let stage = tokio::spawn(supervise::stage(
            "kannel",
            store.clone(),
            stop,
            quick(),
            move || {
                let ch = KannelChannel::new(settings.clone(), st.clone(), Policy::default());
                let (sd, wk) = (sd.clone(), wk.clone());
                async move { stormbell::dispatch::drive(ch?, sd, wk).await }
            },
        ));
        // Up: its delivery-report listener answers.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", dlr_port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "no DLR listener");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The fault ends the run; mended once the supervisor has recorded it.
        let fault = Fault::break_outbox(&place);
        common::wait_count_within(
            &store,
            "the failure recorded",
            "SELECT count(*) FROM audit WHERE kind = 'stage.failed' AND subject = 'kannel'",
            1,
            20,
        )
        .await;
        fault.mend();
        // The restarted channel sends, and its own listener takes the delivery reports.
        enqueue(&store, 7, 0, 5);
        wake.notify_waiters();
        common::wait_count_within(
            &store,
            "texts delivered after the restart",
            "SELECT count(*) FROM dispatch_message WHERE state = 'delivered'",
            5,
            40,
        )
        .await;
        trigger.fire();
        stage.await.unwrap();
    });
    // No run failed for want of its port: the old listener ended with the run that owned it.
    let failed = failures(&store, "kannel");
    assert!(
        failed.iter().all(|f| !f.contains("dlr_listen")),
        "{failed:#?}"
    );
    assert_eq!(smsc.phones().len(), 5);
}
}

on_both! {
fn a_restarted_smpp_channel_leaves_no_old_bind_up_and_takes_back_only_its_own_rows(backend) {
    let smsc = Arc::new(Smsc::start(20));
    // Until the SMSC has seen `binds` binds in all and has exactly `up` of them up.
    let sessions = |binds: u64, up: u64| {
        let smsc = smsc.clone();
        tokio::task::spawn_blocking(move || {
            smsc.wait_for(20, &format!("{binds} binds, {up} up"), |s| {
                s["binds"].as_u64() >= Some(binds) && s["sessions"].as_u64() == Some(up)
            })
        })
    };
    let place = Place::new(backend);
    let store = place.open();
    // A row another channel (the gateway) has mid-send: the SMPP channel's restarts must leave
    // it alone, or it would be sent a second time after the grace period.
    enqueue(&store, 3, 100, 1);
    let elsewhere: Vec<i64> = store
        .write_blocking(|tx| {
            Ok(
                outbox::claim(tx, "sms", "kannel", 1, Timestamp::now(), &Policy::default())?
                    .into_iter()
                    .map(|m| m.id)
                    .collect(),
            )
        })
        .unwrap();
    assert_eq!(elsewhere.len(), 1);
    let account = smsc.account();
    let policy = Policy {
        reconcile_grace: jiff::SignedDuration::from_secs(1),
        ..Policy::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (trigger, stop) = Trigger::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let (st, sd, wk, pol) = (store.clone(), stop.clone(), wake.clone(), policy.clone());
        let stage = tokio::spawn(supervise::stage(
            "smpp",
            store.clone(),
            stop,
            quick(),
            move || {
                let ch = SmsChannel::new(vec![account.clone()], st.clone(), pol.clone());
                stormbell::dispatch::drive(ch, sd.clone(), wk.clone())
            },
        ));
        sessions(1, 1).await.unwrap();
        let fault = Fault::break_outbox(&place);
        common::wait_count_within(
            &store,
            "the failure recorded",
            "SELECT count(*) FROM audit WHERE kind = 'stage.failed' AND subject = 'smpp'",
            1,
            20,
        )
        .await;
        fault.mend();
        // Bound again (a second bind at the SMSC), and only the new bind is up.
        sessions(2, 1).await.unwrap();
        enqueue(&store, 9, 0, 5);
        wake.notify_waiters();
        common::wait_count_within(
            &store,
            "texts delivered after the restart",
            "SELECT count(*) FROM dispatch_message WHERE state = 'delivered'",
            5,
            30,
        )
        .await;
        trigger.fire();
        stage.await.unwrap();
    });
    let status = smsc.status();
    assert_eq!(
        status["sessions"], 0,
        "binds left up after the stop: {status}"
    );
    // Each text reached its phone once; the other channel's row is still its own.
    assert_eq!(smsc.phones().len(), 5);
    let (state, claimed_by): (String, String) = store
        .read_blocking(move |c| {
            Ok(c.query_row(
                "SELECT state, claimed_by FROM dispatch_message WHERE id = ?1",
                [elsewhere[0]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .unwrap();
    assert_eq!(
        (state.as_str(), claimed_by.as_str()),
        ("submitting", "kannel")
    );
}
}
