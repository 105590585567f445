//! From rain to phones: the correlate engine on the synthetic county decides a flash-flood
//! warning, its decision queues the messages in the same transaction, and the SMS channel
//! delivers them through the node-smpp SMSC; the lift reaches the same people.

use crate::common;
use crate::common::backend::{Place, on_both};

use common::gauge_rain as rain;

use std::path::Path;
use std::sync::Arc;

use common::smsc::Smsc;
use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::engine::{self, Engine};
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::{Rules, Tier};
use stormbell::dispatch::outbox::Policy;
use stormbell::dispatch::sms::SmsChannel;
use stormbell::registry::{self, Registry};
use stormbell::runtime::clock::SimClock;
use stormbell::store::Store;

fn send_all(store: &Store, smsc: &Smsc, policy: &Policy, clock: Arc<SimClock>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (stop_tx, stop) = stormbell::runtime::Trigger::new();
        let account = smsc.account();
        let ch = SmsChannel::new(vec![account], store.clone(), policy.clone()).with_clock(clock);
        let task = tokio::spawn(stormbell::dispatch::drive(
            ch,
            stop,
            Arc::new(tokio::sync::Notify::new()),
        ));
        // The channel runs on the runtime's workers; the rows are looked at after each of
        // the store's write batches.
        common::wait_store("every text sent and receipted", 30, store, || {
            let store = store.clone();
            async move {
                let left = store.read(|c| {
                    Ok(c.query_row(
                        "SELECT count(*) FROM dispatch_message
                         WHERE state IN ('queued', 'submitting', 'accepted')",
                        (),
                        |r| r.get::<_, i64>(0),
                    )?)
                });
                left.await.unwrap() == 0
            }
        })
        .await;
        stop_tx.fire();
        task.await.unwrap().unwrap();
    });
}

on_both! {
    fn a_flash_flood_warning_from_rain_reaches_the_responsible_persons_and_so_does_its_lift(backend) {
        let place = Place::new(backend);
        let smsc = Smsc::start(5);
        let store = place.open();
        let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
        let (loaded, _) = registry::check_dir(&county, registry::Encoding::Auto);
        let reg = Arc::new(Registry::new(loaded.data));
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        let tz = cfg.time_zone();
        let policy = cfg.dispatch_policy();
        let hook = stormbell::dispatch::hook(policy.clone(), Arc::new(tokio::sync::Notify::new()));
        let mut e = Engine::new(Rules::national(), cfg.issuer(), reg.clone());
        // Simulated time: the channel's clock is the decisions' clock, as in a replay.
        let start: Timestamp = "2019-08-09T10:00:00+08:00".parse().unwrap();
        let clock = Arc::new(SimClock::new(start));
        let hourly = [5.0, 38.0, 20.0, 30.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut red = None;
        let mut lifted = false;
        for step in 0..(12 * 6) {
            let now = start + SignedDuration::from_mins(step * 10);
            if step % 6 == 0 && step > 0 {
                if let Some(mm) = hourly.get((step / 6 - 1) as usize) {
                    e.observe(&rain(now, *mm), step);
                }
            }
            let ev = Arc::new(e.evaluate(now));
            let ours: Vec<_> = ev
                .emitted
                .iter()
                .filter(|x| x.lineage == "flash_flood:FF331098001")
                .map(|x| (x.decision.send, x.state.tier, x.targets.clone()))
                .collect();
            let (ev2, tz2, hook2) = (ev.clone(), tz.clone(), hook.clone());
            store
                .write_blocking(move |tx| engine::commit(tx, &ev2, &[], now, &tz2, Some(&hook2)))
                .unwrap();
            for (send, tier, targets) in ours {
                if send == MessageKind::Update && tier == Tier::Red {
                    // Move now: send before the rain stops, as the daemon would.
                    clock.advance_to(now);
                    send_all(&store, &smsc, &policy, clock.clone());
                    red = Some(targets);
                }
                if send == MessageKind::Cancel {
                    lifted = true;
                }
            }
        }
        assert!(lifted, "the warning was lifted within the run");
        clock.advance_to(start + SignedDuration::from_hours(12));
        send_all(&store, &smsc, &policy, clock.clone());
        let red = red.expect("the zone reached move-now");
        // Everyone called for the red warning got it on their phone, once, naming the zone's
        // villages and the action; then the lift.
        let phones = smsc.phones();
        let mut numbers: Vec<String> = red
            .contacts
            .iter()
            .filter_map(|c| stormbell::dispatch::outbox::normalise_mobile(&c.mobile))
            .collect();
        numbers.sort();
        numbers.dedup();
        assert!(
            numbers.len() >= 3,
            "a zone, its village and the ladder: {numbers:?}"
        );
        for n in &numbers {
            let got: Vec<&str> = phones
                .iter()
                .filter(|p| p["dest"] == format!("86{n}"))
                .map(|p| p["text"].as_str().unwrap())
                .collect();
            let rows: Vec<String> = {
                let n = n.clone();
                store
                    .read_blocking(move |c| {
                        let mut st = c.prepare(
                            "SELECT id || ' ' || lineage || ' v' || version || ' ' || send || ' ' || tier || ' ' || state || ' ' || coalesce(CAST(merged_into AS TEXT), '-') || ' ' || coalesce(last_error, '') FROM dispatch_message WHERE address = ?1 ORDER BY id",
                        )?;
                        let r = st.query_map([n], |r| r.get(0))?;
                        Ok(r.collect::<Result<Vec<String>, _>>()?)
                    })
                    .unwrap()
            };
            assert_eq!(got.len(), 2, "{n}: {got:?}\n{}", rows.join("\n"));
            assert!(
                got[0].contains("山洪") && got[0].contains("红色"),
                "{}",
                got[0]
            );
            assert!(got[0].contains("立即组织危险区群众转移"), "{}", got[0]);
            assert!(got[1].contains("解除"), "{}", got[1]);
        }
        // However many zones one storm turns red, nobody's phone gets a wall of text: warnings
        // of one kind are one line (the first few places, then the count).
        for p in &phones {
            let text = p["text"].as_str().unwrap();
            let (_, segments) = stormbell::dispatch::sms::encode::segments(text);
            assert!(segments <= 4, "{segments} segments: {text}");
        }
        // The orange Alert, still queued when red came, was superseded rather than sent late.
        let superseded: i64 = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM dispatch_message WHERE state = 'superseded'",
                    (),
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert!(superseded >= numbers.len() as i64, "{superseded}");
    }
}
