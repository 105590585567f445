//! Dispatch over SMPP against a real, independently written SMS centre (node-smpp, started
//! from tests/smsc/ on 127.0.0.1): binds, windows, Chinese text split and reassembled on the
//! "phone", receipts, replies, and the faults the issue names.

use crate::common;
use crate::common::backend::{Backend, Place, on_both};

use std::sync::Arc;
use std::time::Duration;

use common::dispatch::{self, contact, mobile};
use common::smsc::Smsc;
use jiff::Timestamp;
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::{Contact, Targets};
use stormbell::dispatch::outbox::{self, Policy};
use stormbell::dispatch::sms::session::{BindError, BindSettings, Session};
use stormbell::dispatch::sms::{AccountSettings, SmsChannel, encode, pdu};
use stormbell::store::Store;
use tokio::sync::{Notify, mpsc};

fn bind(smsc: &Smsc, password: &str) -> BindSettings {
    BindSettings {
        address: smsc.smpp.clone(),
        system_id: "county".into(),
        password: password.into(),
        system_type: String::new(),
        window: 10,
        response_timeout: Duration::from_secs(5),
        enquire_every: Duration::from_millis(300),
        give_up: Duration::from_secs(60),
    }
}

pub(crate) fn account(smsc: &Smsc, name: &str, system_id: &str, password: &str) -> AccountSettings {
    AccountSettings {
        name: name.into(),
        address: smsc.smpp.clone(),
        system_id: system_id.into(),
        password: password.into(),
        system_type: String::new(),
        source: "12379".into(),
        binds: 2,
        window: 20,
        tps: 2000,
        prefixes: Vec::new(),
        backup: false,
        response_timeout_secs: 5,
        enquire_secs: 30,
        ..Default::default()
    }
}

/// A warning over four villages (long enough in Chinese to need two parts).
pub(crate) fn targets(
    lineage: &str,
    version: u32,
    hazard: Hazard,
    tier: Tier,
    send: MessageKind,
    contacts: Vec<Contact>,
) -> Targets {
    let mut t = dispatch::targets(lineage, version, hazard, tier, send, contacts);
    t.places = ["上坞村", "下坞村", "石门坎村", "竹林湾村"]
        .iter()
        .enumerate()
        .map(|(k, n)| dispatch::place(&format!("33109810120{k}"), n, tier))
        .collect();
    t.evacuate = 160;
    t
}

/// A new, empty store on `backend` (and the place that keeps it).
pub(crate) fn store_on(backend: Backend) -> (Place, Store) {
    let place = Place::new(backend);
    let s = place.open();
    (place, s)
}

pub(crate) fn enqueue(
    store: &Store,
    decision: i64,
    t: Targets,
    policy: &Policy,
) -> outbox::Enqueued {
    let policy = policy.clone();
    store
        .write_blocking(move |tx| {
            // A decision row exists in real runs; the outbox only needs its id.
            outbox::enqueue(tx, decision, &t, Timestamp::now(), &policy)
        })
        .unwrap()
}

pub(crate) fn states(store: &Store) -> Vec<(String, String, i64, i64, Option<String>)> {
    store
        .read_blocking(|c| {
            let mut st = c.prepare(
                "SELECT address, state, attempts, uncertain, last_error FROM dispatch_message ORDER BY id",
            )?;
            let rows = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap()
}

pub(crate) fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read_blocking(move |c| Ok(c.query_row(sql, (), |r| r.get(0))?))
        .unwrap()
}

/// Run the SMS channel until `done(store)` holds (or 60 s), then stop it cleanly.
pub(crate) fn run_channel(
    store: &Store,
    accounts: Vec<AccountSettings>,
    policy: &Policy,
    done: impl Fn(&Store) -> bool,
) {
    run_channels(&[(store.clone(), accounts)], policy, done);
}

/// Run one SMS channel per node (each its store, named for its node, and its accounts) until
/// `done` holds on the first node's store (or 60 s), then stop them all cleanly.
pub(crate) fn run_channels(
    nodes: &[(Store, Vec<AccountSettings>)],
    policy: &Policy,
    done: impl Fn(&Store) -> bool,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = &nodes[0].0;
    rt.block_on(async {
        let (stop_tx, stop) = stormbell::runtime::Trigger::new();
        let tasks: Vec<_> = nodes
            .iter()
            .map(|(node, accounts)| {
                let ch = SmsChannel::new(accounts.clone(), node.clone(), policy.clone());
                tokio::spawn(stormbell::dispatch::drive(
                    ch,
                    stop.clone(),
                    Arc::new(Notify::new()),
                ))
            })
            .collect();
        // Checked after each write of any node; the check reads on this thread, which may
        // block.
        let stores: Vec<&Store> = nodes.iter().map(|(s, _)| s).collect();
        let held = common::stores_changed_until(60, &stores, || {
            std::future::ready(tokio::task::block_in_place(|| done(store)))
        })
        .await;
        assert!(held, "timed out: {:?}", states(store));
        stop_tx.fire();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the channel stops")
                .unwrap()
                .unwrap();
        }
    });
}

#[test]
fn a_bind_is_checked_then_submits_receipts_and_replies_flow() {
    let smsc = Smsc::start(10);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel(16);
        // The wrong password is refused with the SMSC's own status.
        match Session::bind(bind(&smsc, "wrong"), tx.clone()).await {
            Err(BindError::Refused { status, .. }) => assert_eq!(status, "ESME_RBINDFAIL"),
            other => panic!("expected a refused bind, got {:?}", other.map(|_| ())),
        }
        let s = Session::bind(bind(&smsc, "secret"), tx).await.unwrap();
        // Over 70 Chinese characters: two parts, each 67 or fewer, reassembled by the handset.
        let text = "【溪口镇防汛办】上坞村山洪灾害红色预警：请立即组织危险区群众转移至溪口镇中心小学，老弱病残优先，逐户叫应，应转尽转。回复1收到，2到岗，3+人数报转移，4求援。";
        assert!(text.chars().count() > 70);
        let enc = encode::encode(text, 42);
        assert_eq!(enc.parts.len(), 2);
        let mut ids = Vec::new();
        for p in &enc.parts {
            let r = s
                .submit(&pdu::SubmitSm {
                    dest_ton: 1,
                    dest_npi: 1,
                    dest: "8613812345678".into(),
                    source: "12379".into(),
                    esm_class: pdu::esm::UDHI,
                    registered_delivery: 1,
                    data_coding: 8,
                    short_message: p.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(r.status, 0);
            ids.push(r.message_id);
        }
        // Both receipts come back, matched by id; acknowledged.
        let mut got = Vec::new();
        while got.len() < 2 {
            let i = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            assert!(i.deliver.is_receipt());
            got.push(pdu::parse_receipt(&i.deliver).unwrap().id);
            i.ack.ok();
        }
        got.sort();
        ids.sort();
        assert_eq!(got, ids);
        // A reply from a phone, in Chinese: decoded, acknowledged.
        smsc.control("/mo?from=8613812345678&text=%E6%94%B6%E5%88%B0");
        let i = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert!(!i.deliver.is_receipt());
        assert_eq!(encode::decode(i.deliver.data_coding, false, &i.deliver.short_message), "收到");
        i.ack.ok();
        // A reply we fail to store (the Ack dropped) is delivered again by the SMSC.
        smsc.control("/mo?from=8613812345678&text=2");
        let i = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        drop(i);
        let again = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(again.deliver.short_message, b"2");
        again.ack.ok();
        // Keep-alive: the link stays up across several enquire_link periods.
        let ctl = smsc.control.clone();
        tokio::task::spawn_blocking(move || {
            common::smsc::wait_at(&ctl, 10, "two enquire_links", |st| {
                st["enquireLinks"].as_u64() >= Some(2)
            })
        })
        .await
        .unwrap();
        assert!(!s.is_closed());
        s.unbind().await;
        assert!(s.is_closed());
    });
    let st = smsc.status();
    assert!(st["enquireLinks"].as_u64().unwrap() >= 2, "{st}");
    assert_eq!(
        st["moAcked"], 2,
        "the reply, then the one redelivered: {st}"
    );
    assert_eq!(st["bindsRefused"], 1);
    // The handset shows exactly the text sent.
    let phones = smsc.phones();
    assert_eq!(phones.len(), 1);
    assert_eq!(phones[0]["parts"], 2);
    assert_eq!(
        phones[0]["text"],
        "【溪口镇防汛办】上坞村山洪灾害红色预警：请立即组织危险区群众转移至溪口镇中心小学，老弱病残优先，逐户叫应，应转尽转。回复1收到，2到岗，3+人数报转移，4求援。"
    );
}

on_both! {
    fn a_warning_reaches_every_phone_with_receipts_and_bad_numbers_fail_with_their_reason(backend) {
        let smsc = Smsc::start(10);
        let (_d, store) = store_on(backend);
        let policy = Policy::default();
        smsc.control("/invalid?number=8613899999999");
        smsc.control("/undeliverable?number=8613888888888");
        let mut contacts: Vec<Contact> = (0..40).map(|i| contact(i, &mobile(i))).collect();
        contacts.push(contact(900, "0571-8888888")); // a landline in the roster
        contacts.push(contact(901, "13899999999")); // the network does not know it
        contacts.push(contact(902, "+86 138 8888 8888")); // switched off for good
        let e = enqueue(
            &store,
            1,
            targets(
                "flash_flood:330522101",
                1,
                Hazard::FlashFlood,
                Tier::Red,
                MessageKind::Alert,
                contacts,
            ),
            &policy,
        );
        assert_eq!(e.queued, 42);
        assert_eq!(e.invalid.len(), 1);
        assert!(e.invalid[0].contains("0571-8888888"), "{:?}", e.invalid);
        run_channel(
            &store,
            vec![account(&smsc, "main", "county", "secret")],
            &policy,
            // Every message settled and every part's receipt stored: a two-part text fails at its
            // first failed part, before the other part's receipt has come in.
            |s| {
                count(
                    s,
                    "SELECT count(*) FROM dispatch_message WHERE state IN ('queued', 'submitting', 'accepted')",
                ) == 0
                    && count(
                        s,
                        "SELECT count(*) FROM dispatch_part WHERE receipt IS NULL",
                    ) == 0
            },
        );
        let rows = states(&store);
        let by = |addr: &str| rows.iter().find(|r| r.0 == addr).unwrap().clone();
        assert_eq!(
            rows.iter().filter(|r| r.1 == "delivered").count(),
            40,
            "{rows:?}"
        );
        let landline = by("0571-8888888");
        assert_eq!(landline.1, "failed");
        assert_eq!(by("13899999999").1, "failed");
        assert!(by("13899999999").4.unwrap().contains("ESME_RINVDSTADR"));
        let off = by("13888888888");
        assert_eq!(off.1, "failed");
        assert!(off.4.unwrap().contains("UNDELIV"));
        // What the phones show is what the outbox rendered, Chinese, in the parts it said.
        let texts: Vec<(String, String, i64)> = store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT address, text, segments FROM dispatch_message WHERE state = 'delivered'",
                )?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        let phones = smsc.phones();
        for (addr, text, segments) in &texts {
            let seen: Vec<_> = phones
                .iter()
                .filter(|p| p["dest"] == format!("86{addr}"))
                .collect();
            assert_eq!(seen.len(), 1, "{addr}");
            assert_eq!(seen[0]["text"], text.as_str());
            assert_eq!(seen[0]["parts"], *segments);
            assert!(text.contains("山洪") && text.contains("红色"), "{text}");
        }
        assert!(
            texts[0].2 >= 2,
            "a full Chinese warning needs concatenation: {}",
            texts[0].1
        );
        // Every part went as UCS-2 with a header.
        assert!(smsc.submits().iter().all(|s| s["data_coding"] == 8));
        // Receipts were stored on every part.
        let missing: Vec<(i64, i64, String, String, String)> = store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT p.message, p.part, p.smsc_id, p.state, m.state FROM dispatch_part p
                     JOIN dispatch_message m ON m.id = p.message WHERE p.receipt IS NULL",
                )?;
                let r = st.query_map((), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        let orphans = count(&store, "SELECT count(*) FROM dispatch_inbound");
        assert!(
            missing.is_empty(),
            "parts without receipts: {missing:?}; {orphans} unmatched"
        );
    }
}

on_both! {
    fn throttling_slows_down_and_a_dropped_link_is_resumed_without_losing_anyone(backend) {
        let smsc = Smsc::start(5);
        let (_d, store) = store_on(backend);
        let policy = Policy::default();
        let n = 300;
        let contacts: Vec<Contact> = (0..n).map(|i| contact(i, &mobile(i))).collect();
        enqueue(
            &store,
            1,
            targets(
                "typhoon:330522",
                1,
                Hazard::Typhoon,
                Tier::Orange,
                MessageKind::Alert,
                contacts,
            ),
            &policy,
        );
        // The next 30 submits are throttled; after 120 more the SMSC drops every connection.
        smsc.control("/throttle?count=30");
        smsc.control("/drop-after?count=120");
        run_channel(
            &store,
            vec![account(&smsc, "main", "county", "secret")],
            &policy,
            |s| {
                count(
                    s,
                    "SELECT count(*) FROM dispatch_message WHERE state IN ('queued', 'submitting', 'accepted')",
                ) == 0
            },
        );
        let rows = states(&store);
        assert!(rows.iter().all(|r| r.1 == "delivered"), "{rows:?}");
        // A throttle is not an attempt: nobody failed, nobody is near the limit.
        assert!(rows.iter().all(|r| r.2 < 8));
        let submits = smsc.submits();
        assert_eq!(
            submits
                .iter()
                .filter(|s| s["status"] == pdu::status::RTHROTTLED)
                .count(),
            30
        );
        // Every phone got the warning; a phone that got it twice is one whose send had no
        // verdict when the link dropped, and those are counted and bounded by the windows.
        let phones = smsc.phones();
        let mut per: std::collections::HashMap<String, usize> = Default::default();
        for p in &phones {
            *per.entry(p["dest"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        assert_eq!(per.len(), n);
        let duplicates: usize = per.values().map(|c| c - 1).sum();
        let uncertain = count(&store, "SELECT sum(uncertain) FROM dispatch_message");
        assert!(
            duplicates as i64 <= uncertain,
            "{duplicates} duplicates, {uncertain} counted"
        );
        assert!(
            uncertain <= 2 * 20,
            "bounded by binds × window: {uncertain}"
        );
        assert!(
            smsc.status()["binds"].as_u64().unwrap() >= 4,
            "re-bound after the drop"
        );
    }
}

on_both! {
    fn an_smsc_down_at_start_gets_the_queue_when_it_comes_up_and_backups_take_over(backend) {
        let smsc = Smsc::start(5);
        let (_d, store) = store_on(backend);
        let policy = Policy::default();
        smsc.control("/refuse?on=1");
        let contacts: Vec<Contact> = (0..20).map(|i| contact(i, &mobile(i))).collect();
        enqueue(
            &store,
            1,
            targets(
                "rainstorm:330522",
                1,
                Hazard::Rainstorm,
                Tier::Yellow,
                MessageKind::Alert,
                contacts,
            ),
            &policy,
        );
        // Up once both accounts have found it down (a refused connection each, at least).
        let control = smsc.control.clone();
        let opener = std::thread::spawn(move || {
            common::smsc::wait_at(&control, 20, "both accounts refused", |s| {
                s["connectionsRefused"].as_u64() >= Some(2)
            });
            common::smsc::control_at(&control, "/refuse?on=0");
        });
        // The primary account's password is wrong (it never comes up) and serves 138…; the
        // backup takes everything.
        let mut primary = account(&smsc, "cmcc", "county", "not-the-password");
        primary.prefixes = vec!["138".into()];
        let mut backup = account(&smsc, "backup", "backup", "backup1");
        backup.backup = true;
        // Done when every text is delivered and the primary's bind is recorded down, with why.
        run_channel(&store, vec![primary, backup], &policy, |s| {
            count(
                s,
                "SELECT count(*) FROM dispatch_message WHERE state = 'delivered'",
            ) == 20
                && count(
                    s,
                    "SELECT count(*) FROM dispatch_bind WHERE account = 'cmcc' AND state = 'down'
                       AND detail IS NOT NULL",
                ) >= 1
                && count(
                    s,
                    "SELECT count(*) FROM dispatch_bind WHERE account = 'backup' AND state = 'bound'",
                ) >= 1
        });
        // Stopped with the channel: every bind says so.
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM dispatch_bind WHERE state != 'stopped'"
            ),
            0
        );
        assert!(count(&store, "SELECT count(*) FROM dispatch_bind") >= 2);
        opener.join().unwrap();
        let submits = smsc.submits();
        let parts = count(&store, "SELECT sum(segments) FROM dispatch_message");
        assert_eq!(submits.len() as i64, parts, "every part sent once");
        assert!(submits.iter().all(|s| s["system_id"] == "backup"));
        assert!(smsc.status()["bindsRefused"].as_u64().unwrap() >= 1);
    }
}

on_both! {
    fn receipts_for_unknown_ids_and_replies_are_kept_for_people(backend) {
        let smsc = Smsc::start(5);
        let (_d, store) = store_on(backend);
        let policy = Policy::default();
        enqueue(
            &store,
            1,
            targets(
                "geo_hazard:330522",
                1,
                Hazard::GeoHazard,
                Tier::Orange,
                MessageKind::Alert,
                vec![contact(1, &mobile(1))],
            ),
            &policy,
        );
        let ctl = smsc.control.clone();
        let poke = std::thread::spawn(move || {
            // Once bound, an unknown receipt and a reply arrive.
            common::smsc::wait_at(&ctl, 20, "a bind", |s| s["sessions"].as_u64() >= Some(1));
            for path in [
                "/receipt?id=NOBODY&stat=DELIVRD",
                "/mo?from=8613810000001&text=3%2035",
            ] {
                common::smsc::control_at(&ctl, path);
            }
        });
        run_channel(
            &store,
            vec![account(&smsc, "main", "county", "secret")],
            &policy,
            |s| {
                count(s, "SELECT count(*) FROM dispatch_inbound") == 2
                    && count(
                        s,
                        "SELECT count(*) FROM dispatch_message WHERE state = 'delivered'",
                    ) == 1
            },
        );
        poke.join().unwrap();
        let inbound: Vec<(String, String, String)> = store
            .read_blocking(|c| {
                let mut st =
                    c.prepare("SELECT kind, source, text FROM dispatch_inbound ORDER BY id")?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert!(
            inbound
                .iter()
                .any(|i| i.0 == "orphan_receipt" && i.2.contains("NOBODY")),
            "{inbound:?}"
        );
        assert!(
            inbound
                .iter()
                .any(|i| i.0 == "reply" && i.1 == "8613810000001" && i.2 == "3 35"),
            "{inbound:?}"
        );
        // Both were acknowledged only after they were stored.
        smsc.wait_for(5, "acks", |s| s["moAcked"] == 1);
    }
}

on_both! {
    fn an_unbind_from_the_centre_is_always_answered_before_the_link_closes(backend) {
        // SMPP 3.4 §4.2: the ESME answers the centre's unbind with unbind_resp. The reply was
        // queued and the writer, told to stop in the same instant, could drop it: 13 of 28
        // centre-initiated unbinds went unanswered.
        let smsc = Smsc::start(5);
        let (_d, store) = store_on(backend);
        let policy = Policy::default();
        let rounds = std::sync::atomic::AtomicU64::new(0);
        run_channel(
            &store,
            vec![account(&smsc, "main", "county", "secret")],
            &policy,
            |_| {
                use std::sync::atomic::Ordering::SeqCst;
                let st = smsc.status();
                let binds = st["binds"].as_u64().unwrap_or(0);
                let sessions = st["sessions"].as_u64().unwrap_or(0);
                let n = rounds.load(SeqCst);
                // Both binds up again since the last round: unbind them from the centre.
                if binds >= 2 * (n + 1) && sessions >= 2 {
                    if n == 8 {
                        return true;
                    }
                    smsc.control("/unbind");
                    rounds.fetch_add(1, SeqCst);
                }
                false
            },
        );
        let st = smsc.status();
        assert!(st["unbindsSent"].as_u64().unwrap() >= 16, "{st}");
        assert_eq!(st["unbindResps"], st["unbindsSent"], "{st}");
    }
}

on_both! {
    fn throttling_between_parts_is_no_possible_duplicate(backend) {
        // Every submit gets a verdict (accepted, or throttled): nothing can have reached a phone
        // twice, so nothing is counted as a possible duplicate. A second part throttled after
        // its first was accepted used to mark the message "uncertain" (263 under throttling,
        // with no real duplicate). Parts sent again keep the message's concatenation reference:
        // the phone shows one text.
        let smsc = Smsc::start(5);
        let (_d, store) = store_on(backend);
        let policy = Policy::default();
        let n = 60;
        let contacts: Vec<Contact> = (0..n).map(|i| contact(i, &mobile(i))).collect();
        enqueue(
            &store,
            1,
            targets(
                "typhoon:330522",
                1,
                Hazard::Typhoon,
                Tier::Orange,
                MessageKind::Alert,
                contacts,
            ),
            &policy,
        );
        smsc.control("/throttle?count=40&part=2");
        run_channel(
            &store,
            vec![account(&smsc, "main", "county", "secret")],
            &policy,
            |s| {
                count(
                    s,
                    "SELECT count(*) FROM dispatch_message WHERE state IN ('queued', 'submitting', 'accepted')",
                ) == 0
            },
        );
        let rows = states(&store);
        assert!(rows.iter().all(|r| r.1 == "delivered"), "{rows:?}");
        // Some throttles fell on a second part after its first was accepted.
        let submits = smsc.submits();
        let throttled_second = submits
            .iter()
            .filter(|s| s["status"] == pdu::status::RTHROTTLED && s["concat"]["seq"] == 2)
            .count();
        assert!(
            throttled_second > 0,
            "the throttle hit no second part: {:?}",
            submits
                .iter()
                .map(|s| (s["status"].clone(), s["concat"].clone()))
                .take(60)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            count(
                &store,
                "SELECT coalesce(sum(uncertain), 0) FROM dispatch_message"
            ),
            0
        );
        // And every phone shows the warning once.
        let mut per: std::collections::HashMap<String, usize> = Default::default();
        for p in smsc.phones() {
            *per.entry(p["dest"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        assert_eq!(per.len(), n);
        assert!(per.values().all(|c| *c == 1), "{per:?}");
    }
}
