//! The outbox's rules on a real store: order, supersede, merge, the per-person cap, Cancel
//! handling, expiry and the restart reconciliation.

use crate::common;

use common::dispatch::{contact, targets};
use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::Targets;
use stormbell::dispatch::outbox::{self, Claimed, Outcome, Policy};
use stormbell::store::Store;

use crate::common::backend::{Backend, Place, on_both};

fn t(
    lineage: &str,
    version: u32,
    hazard: Hazard,
    tier: Tier,
    send: MessageKind,
    raises: bool,
    who: &[usize],
) -> Targets {
    let people = who
        .iter()
        .map(|i| contact(*i, &format!("139{:08}", 20_000_000 + i)))
        .collect();
    let mut t = targets(lineage, version, hazard, tier, send, people);
    t.raises = raises;
    t.shelters.clear();
    t.evacuate = 30;
    t
}

struct Fixture {
    _place: Place,
    store: Store,
    policy: Policy,
    now: Timestamp,
    decision: i64,
}

impl Fixture {
    /// A new, empty outbox on `backend`.
    fn on(backend: Backend) -> Fixture {
        let place = Place::new(backend);
        let store = place.open();
        Fixture {
            _place: place,
            store,
            policy: Policy::default(),
            now: "2026-08-09T03:00:00+08:00".parse().unwrap(),
            decision: 0,
        }
    }

    fn enqueue(&mut self, targets: Targets) -> outbox::Enqueued {
        self.decision += 1;
        let (d, p, now) = (self.decision, self.policy.clone(), self.now);
        self.store
            .write_blocking(move |tx| outbox::enqueue(tx, d, &targets, now, &p))
            .unwrap()
    }

    fn claim(&self, limit: usize) -> Vec<Claimed> {
        let (p, now) = (self.policy.clone(), self.now);
        self.store
            .write_blocking(move |tx| outbox::claim(tx, "sms", "test", limit, now, &p))
            .unwrap()
    }

    fn record(&self, results: Vec<(i64, Outcome)>) {
        let (p, now) = (self.policy.clone(), self.now);
        self.store
            .write_blocking(move |tx| outbox::record(tx, &results, now, &p))
            .unwrap()
    }

    fn accept(&self, c: &[Claimed]) {
        self.record(
            c.iter()
                .map(|m| {
                    (
                        m.id,
                        Outcome::Accepted {
                            account: "main".into(),
                            parts: vec![(1, 1, format!("X{}", m.id))],
                            uncertain: false,
                        },
                    )
                })
                .collect(),
        );
    }

    fn states(&self) -> Vec<(String, String, String)> {
        self.store
            .read_blocking(|c| {
                let mut st =
                    c.prepare("SELECT lineage, person, state FROM dispatch_message ORDER BY id")?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap()
    }
}

on_both! {
    fn red_goes_first_and_a_newer_version_supersedes_what_was_not_sent(backend) {
        let mut f = Fixture::on(backend);
        f.enqueue(t(
            "rainstorm:A",
            1,
            Hazard::Rainstorm,
            Tier::Blue,
            MessageKind::Alert,
            true,
            &[1, 2],
        ));
        f.enqueue(t(
            "flash_flood:B",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &[3],
        ));
        // Version 2 of the rainstorm before version 1 went: person 1 and 2 get only version 2.
        let e = f.enqueue(t(
            "rainstorm:A",
            2,
            Hazard::Rainstorm,
            Tier::Yellow,
            MessageKind::Update,
            true,
            &[1, 2],
        ));
        assert_eq!(e.superseded, 2);
        let c = f.claim(10);
        assert_eq!(c[0].person, "P00003", "red first");
        assert!(c[0].text.contains("红色"));
        assert_eq!(c.len(), 3);
        let s = f.states();
        assert_eq!(s.iter().filter(|r| r.2 == "superseded").count(), 2);
        assert!(c.iter().all(|m| m.merged.is_empty()));
    }
}

on_both! {
    fn several_warnings_for_one_person_become_one_message_highest_tier_first(backend) {
        let mut f = Fixture::on(backend);
        f.enqueue(t(
            "typhoon:330522",
            1,
            Hazard::Typhoon,
            Tier::Yellow,
            MessageKind::Alert,
            true,
            &[7],
        ));
        f.enqueue(t(
            "flash_flood:330522101",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &[7],
        ));
        f.enqueue(t(
            "geo_hazard:330522101",
            1,
            Hazard::GeoHazard,
            Tier::Orange,
            MessageKind::Alert,
            true,
            &[7],
        ));
        let c = f.claim(10);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].merged.len(), 2);
        let text = &c[0].text;
        let (flood, geo, typhoon) = (
            text.find("山洪").unwrap(),
            text.find("地质灾害").unwrap(),
            text.find("台风").unwrap(),
        );
        assert!(flood < geo && geo < typhoon, "highest tier first: {text}");
        assert!(text.contains("3条预警"), "{text}");
        let s = f.states();
        assert_eq!(s.iter().filter(|r| r.2 == "merged").count(), 2);
        // The segment count stored is the merged text's.
        let segs: i64 = f
            .store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT sent_segments FROM dispatch_message WHERE state = 'submitting'",
                    (),
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(
            segs as usize,
            stormbell::dispatch::sms::encode::segments(text).1
        );
    }
}

on_both! {
    fn the_per_person_cap_holds_routine_updates_but_never_an_upgrade(backend) {
        let mut f = Fixture::on(backend);
        f.policy.cap_per_person = 1;
        f.enqueue(t(
            "rainstorm:A",
            1,
            Hazard::Rainstorm,
            Tier::Yellow,
            MessageKind::Alert,
            true,
            &[1],
        ));
        let c = f.claim(10);
        f.accept(&c);
        // A routine update at the same tier: held by the cap.
        f.enqueue(t(
            "rainstorm:A",
            2,
            Hazard::Rainstorm,
            Tier::Yellow,
            MessageKind::Update,
            false,
            &[1],
        ));
        assert!(f.claim(10).is_empty(), "held");
        // An upgrade goes at once (carrying the held update with it).
        f.enqueue(t(
            "flash_flood:B",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &[1],
        ));
        let c = f.claim(10);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].merged.len(), 1);
        // After the window, routine messages flow again.
        f.accept(&c);
        f.enqueue(t(
            "rainstorm:A",
            3,
            Hazard::Rainstorm,
            Tier::Yellow,
            MessageKind::Update,
            false,
            &[1],
        ));
        assert!(f.claim(10).is_empty());
        f.now += SignedDuration::from_mins(61);
        assert_eq!(f.claim(10).len(), 1);
    }
}

on_both! {
    fn a_cancel_is_skipped_when_nothing_was_sent_and_sent_last_when_something_was(backend) {
        let mut f = Fixture::on(backend);
        f.enqueue(t(
            "typhoon:X",
            1,
            Hazard::Typhoon,
            Tier::Blue,
            MessageKind::Alert,
            true,
            &[1, 2],
        ));
        // Person 1 got the Alert; person 2's was still queued when the warning was lifted.
        let c = f.claim(1);
        assert_eq!(c[0].person, "P00001");
        f.accept(&c);
        let e = f.enqueue(t(
            "typhoon:X",
            2,
            Hazard::Typhoon,
            Tier::Blue,
            MessageKind::Cancel,
            false,
            &[1, 2],
        ));
        assert_eq!(e.skipped, 1);
        assert_eq!(e.superseded, 1);
        let s = f.states();
        assert_eq!(
            s[1],
            ("typhoon:X".into(), "P00002".into(), "superseded".into())
        );
        assert_eq!(
            s[3],
            ("typhoon:X".into(), "P00002".into(), "skipped".into())
        );
        // A new red Alert for someone else goes before person 1's Cancel.
        f.enqueue(t(
            "flash_flood:Y",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &[9],
        ));
        let c = f.claim(10);
        assert_eq!(c[0].person, "P00009");
        assert_eq!(c[1].person, "P00001");
        assert!(c[1].text.contains("解除"), "{}", c[1].text);
    }
}

on_both! {
    fn throttles_do_not_count_as_attempts_unknown_outcomes_are_counted_and_restarts_requeue(backend) {
        let mut f = Fixture::on(backend);
        f.policy.max_attempts = 2;
        f.enqueue(t(
            "rainstorm:A",
            1,
            Hazard::Rainstorm,
            Tier::Orange,
            MessageKind::Alert,
            true,
            &[1, 2, 3],
        ));
        let c = f.claim(10);
        let ids: Vec<i64> = c.iter().map(|m| m.id).collect();
        let retry = |uncertain: bool, counts: bool| Outcome::Retry {
            account: Some("main".into()),
            reason: "x".into(),
            after: SignedDuration::from_secs(1),
            uncertain,
            counts,
            parts: Vec::new(),
        };
        f.record(vec![
            (ids[0], retry(false, false)),
            (ids[1], retry(true, true)),
            (ids[2], retry(false, true)),
        ]);
        // Not due before the delay.
        assert!(f.claim(10).is_empty());
        f.now += SignedDuration::from_secs(2);
        let c = f.claim(10);
        assert_eq!(c.len(), 3);
        // Second failure: the two that counted reach max_attempts and fail; the throttled one
        // is only on its first attempt.
        f.record(c.iter().map(|m| (m.id, retry(false, true))).collect());
        let rows: Vec<(i64, String, i64, i64)> = f
            .store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT id, state, attempts, uncertain FROM dispatch_message ORDER BY id",
                )?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(rows[0].1, "queued");
        assert_eq!(rows[1].1, "failed");
        assert_eq!(rows[1].3, 1, "the unknown outcome is counted");
        assert_eq!(rows[2].1, "failed");
        // A stop mid-send: the row waits out the grace for a receipt, then goes again, counted.
        f.now += SignedDuration::from_secs(2);
        let c = f.claim(10);
        assert_eq!(c.len(), 1);
        let now = f.now;
        let n = f
            .store
            .write_blocking(move |tx| {
                outbox::reconcile(
                    tx,
                    &outbox::Scope::Every,
                    now,
                    SignedDuration::from_secs(20),
                )
            })
            .unwrap();
        assert_eq!(n, 1);
        let row = rows[0].0;
        let state = |f: &Fixture| -> (String, i64) {
            f.store
                .read_blocking(move |c| {
                    Ok(c.query_row(
                        "SELECT state, uncertain FROM dispatch_message WHERE id = ?1",
                        [row],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?)
                })
                .unwrap()
        };
        assert_eq!(state(&f), ("reconciling".into(), 0));
        assert!(f.claim(10).is_empty(), "not sent again within the grace");
        f.now += SignedDuration::from_secs(21);
        let c = f.claim(10);
        assert_eq!(c.len(), 1);
        assert_eq!(state(&f), ("submitting".into(), 1));
    }
}

on_both! {
    fn a_receipt_after_a_restart_proves_a_message_got_through_and_it_is_not_sent_again(backend) {
        let mut f = Fixture::on(backend);
        f.enqueue(t(
            "flash_flood:F",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &[1, 2],
        ));
        let c = f.claim(10);
        assert_eq!(c.len(), 2);
        let now = f.now;
        f.store
            .write_blocking(move |tx| {
                outbox::reconcile(
                    tx,
                    &outbox::Scope::Every,
                    now,
                    SignedDuration::from_secs(20),
                )
            })
            .unwrap();
        // The SMSC delivers a receipt for person 1's message to the new bind: an id we never
        // recorded, from person 1's number.
        let number = format!("86{}", c[0].address);
        let used = f
            .store
            .write_blocking(move |tx| {
                outbox::recover(tx, None, &number, "main", "M00000042", "DELIVRD", now)
            })
            .unwrap();
        assert!(used);
        // A receipt from a number with nothing mid-send is not used.
        let unused = f
            .store
            .write_blocking(move |tx| {
                outbox::recover(
                    tx,
                    None,
                    "8613900000000",
                    "main",
                    "M00000043",
                    "DELIVRD",
                    now,
                )
            })
            .unwrap();
        assert!(!unused);
        f.now += SignedDuration::from_secs(21);
        let again = f.claim(10);
        assert_eq!(again.len(), 1, "only the unproven one goes again");
        assert_eq!(again[0].person, c[1].person);
        let s = f.states();
        assert_eq!(s[0].2, "delivered");
    }
}

on_both! {
    fn messages_queued_too_long_expire_instead_of_going_out_late(backend) {
        let mut f = Fixture::on(backend);
        f.enqueue(t(
            "rainstorm:A",
            1,
            Hazard::Rainstorm,
            Tier::Blue,
            MessageKind::Alert,
            true,
            &[1],
        ));
        f.now += SignedDuration::from_hours(7);
        assert!(f.claim(10).is_empty());
        assert_eq!(f.states()[0].2, "expired");
    }
}

on_both! {
    fn what_rode_along_is_never_lost_when_its_carrier_goes_back_or_is_superseded(backend) {
        let mut f = Fixture::on(backend);
        f.enqueue(t(
            "typhoon:T",
            1,
            Hazard::Typhoon,
            Tier::Orange,
            MessageKind::Alert,
            true,
            &[5],
        ));
        f.enqueue(t(
            "flash_flood:F",
            1,
            Hazard::FlashFlood,
            Tier::Yellow,
            MessageKind::Alert,
            true,
            &[5],
        ));
        let c = f.claim(10);
        assert_eq!((c.len(), c[0].merged.len()), (1, 1));
        // The SMSC had no verdict: the carrier goes back, and so does what it carried.
        f.record(vec![(
            c[0].id,
            Outcome::Retry {
                account: Some("main".into()),
                reason: "link lost".into(),
                after: SignedDuration::ZERO,
                uncertain: true,
                counts: true,
                parts: Vec::new(),
            },
        )]);
        // A newer typhoon version supersedes the carrier before it goes again.
        f.enqueue(t(
            "typhoon:T",
            2,
            Hazard::Typhoon,
            Tier::Red,
            MessageKind::Update,
            true,
            &[5],
        ));
        let c = f.claim(10);
        assert_eq!(c.len(), 1);
        let text = &c[0].text;
        assert!(
            text.contains("山洪") && text.contains("台风") && text.contains("红色"),
            "{text}"
        );
        let s = f.states();
        assert_eq!(s[0].2, "superseded");
        // A permanent failure takes what rode along with it, with the reason.
        f.record(vec![(
            c[0].id,
            Outcome::Failed {
                account: Some("main".into()),
                reason: "ESME_RINVDSTADR".into(),
            },
        )]);
        let s = f.states();
        assert!(
            s.iter().all(|r| r.2 == "superseded" || r.2 == "failed"),
            "{s:?}"
        );
        assert_eq!(s.iter().filter(|r| r.2 == "failed").count(), 2);
    }
}

on_both! {
    fn a_merged_text_is_one_line_per_kind_of_warning_not_one_per_place(backend) {
        let mut f = Fixture::on(backend);
        // Twelve zones red at once (some as new Alerts, some raised by an Update), and a lift.
        for k in 0..12 {
            let send = if k % 2 == 0 {
                MessageKind::Alert
            } else {
                MessageKind::Update
            };
            f.enqueue(t(
                &format!("flash_flood:FF{k:03}"),
                1 + (k % 2) as u32,
                Hazard::FlashFlood,
                Tier::Red,
                send,
                true,
                &[1],
            ));
        }
        f.enqueue(t(
            "rainstorm:A",
            3,
            Hazard::Rainstorm,
            Tier::Blue,
            MessageKind::Cancel,
            false,
            &[2],
        ));
        let c = f.claim(10);
        let text = &c.iter().find(|m| m.person == "P00001").unwrap().text;
        assert!(text.contains("您有12条预警"), "{text}");
        assert_eq!(text.matches("山洪灾害红色预警").count(), 1, "{text}");
        assert!(text.contains("请立即组织危险区群众转移"), "{text}");
        assert!(
            stormbell::dispatch::sms::encode::segments(text).1 <= 2,
            "{text}"
        );
    }
}

on_both! {
    fn a_cancel_is_sent_to_someone_whose_alert_may_have_gone_out_before_a_restart(backend) {
        let mut f = Fixture::on(backend);
        f.enqueue(t(
            "typhoon:R",
            1,
            Hazard::Typhoon,
            Tier::Orange,
            MessageKind::Alert,
            true,
            &[1],
        ));
        assert_eq!(f.claim(10).len(), 1);
        let now = f.now;
        f.store
            .write_blocking(move |tx| {
                outbox::reconcile(
                    tx,
                    &outbox::Scope::Every,
                    now,
                    SignedDuration::from_secs(20),
                )
            })
            .unwrap();
        // The Alert may have reached the phone: its lift must follow.
        let e = f.enqueue(t(
            "typhoon:R",
            2,
            Hazard::Typhoon,
            Tier::Orange,
            MessageKind::Cancel,
            false,
            &[1],
        ));
        assert_eq!(e.skipped, 0);
        assert_eq!(e.queued, 1);
    }
}

on_both! {
    fn the_cap_never_pushes_back_a_raise_waiting_to_retry(backend) {
        let mut f = Fixture::on(backend);
        f.policy.cap_per_person = 1;
        f.enqueue(t(
            "rainstorm:A",
            1,
            Hazard::Rainstorm,
            Tier::Yellow,
            MessageKind::Alert,
            true,
            &[1],
        ));
        let c = f.claim(10);
        f.accept(&c);
        // A red raise, refused for now (retry in 30 s).
        f.enqueue(t(
            "flash_flood:B",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &[1],
        ));
        let red = f.claim(10);
        assert_eq!(red.len(), 1);
        f.record(vec![(
            red[0].id,
            Outcome::Retry {
                account: Some("main".into()),
                reason: "ESME_RSYSERR".into(),
                after: SignedDuration::from_secs(30),
                uncertain: false,
                counts: true,
                parts: Vec::new(),
            },
        )]);
        // A routine update meanwhile: held by the cap…
        f.enqueue(t(
            "rainstorm:A",
            2,
            Hazard::Rainstorm,
            Tier::Yellow,
            MessageKind::Update,
            false,
            &[1],
        ));
        assert!(f.claim(10).is_empty());
        // …but the raise goes when its retry is due, not when the cap's window ends.
        f.now += SignedDuration::from_secs(31);
        let c = f.claim(10);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, red[0].id);
    }
}

on_both! {
    fn every_person_gets_their_own_link_and_a_merged_text_carries_the_carriers(backend) {
        let mut f = Fixture::on(backend);
        f.policy.link_base = Some("https://fx.example.cn/r/".into());
        f.enqueue(t(
            "flash_flood:FF1",
            1,
            Hazard::FlashFlood,
            Tier::Orange,
            MessageKind::Alert,
            true,
            &[1, 2, 3],
        ));
        let texts: Vec<(String, String, i64)> = f
            .store
            .read_blocking(|c| {
                let mut st =
                    c.prepare("SELECT person, text, segments FROM dispatch_message ORDER BY id")?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(texts.len(), 3);
        let mut tokens = Vec::new();
        for (person, text, segments) in &texts {
            let at = text
                .find("https://fx.example.cn/r/")
                .expect("a link in the text");
            let token: String = text[at + "https://fx.example.cn/r/".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            assert_eq!(token.len(), 22, "{text}");
            // The token stands for this person and this warning, and expires.
            let found = f
                .store
                .read_blocking({
                    let token = token.clone();
                    move |c| stormbell::dispatch::link::lookup(c, &token)
                })
                .unwrap()
                .expect("the token is recorded");
            assert_eq!(&found.person, person);
            assert_eq!(
                (found.lineage.as_str(), found.version),
                ("flash_flood:FF1", 1)
            );
            assert_eq!(found.expires, f.now + SignedDuration::from_hours(72));
            // Same length for everyone: the segments counted once hold.
            assert_eq!(*segments, texts[0].2);
            assert_eq!(
                stormbell::dispatch::sms::encode::segments(text).1 as i64,
                *segments
            );
            tokens.push(token);
        }
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), 3, "one token per person");
        // A guess, or a token of the wrong shape, is nothing.
        let none = f
            .store
            .read_blocking(|c| stormbell::dispatch::link::lookup(c, "AAAAAAAAAAAAAAAAAAAAAA"))
            .unwrap();
        assert!(none.is_none());

        // A second warning for person 1: one message, the carrier's link in it.
        f.enqueue(t(
            "rainstorm:R1",
            1,
            Hazard::Rainstorm,
            Tier::Yellow,
            MessageKind::Alert,
            true,
            &[1],
        ));
        let claimed = f.claim(10);
        let one = claimed.iter().find(|c| c.person == "P00001").unwrap();
        assert_eq!(one.merged.len(), 1);
        let carrier = f
            .store
            .read_blocking({
                let id = one.id;
                move |c| stormbell::dispatch::link::of_message(c, id)
            })
            .unwrap()
            .unwrap();
        assert!(
            one.text
                .contains(&format!("https://fx.example.cn/r/{}", carrier.token)),
            "{}",
            one.text
        );
    }
}

on_both! {
    fn a_text_with_no_receipt_by_the_deadline_is_sent_no_receipt_until_a_late_one_comes(backend) {
        let mut f = Fixture::on(backend);
        f.policy.accounts.insert(
            "main".into(),
            outbox::AccountRules {
                ids: outbox::ReceiptIds::Exact,
                receipt_deadline: SignedDuration::from_mins(30),
            },
        );
        f.enqueue(t(
            "flash_flood:F",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &[1, 2],
        ));
        let c = f.claim(10);
        f.accept(&c);
        let settle = |f: &Fixture| {
            let (p, now) = (f.policy.clone(), f.now);
            f.store
                .write_blocking(move |tx| outbox::settle_unreceipted(tx, "sms", now, &p))
                .unwrap()
        };
        // Before the deadline: still waiting.
        f.now += SignedDuration::from_mins(29);
        settle(&f);
        assert!(f.states().iter().all(|s| s.2 == "accepted"));
        // After it: final, "sent, no receipt" — never delivered.
        f.now += SignedDuration::from_mins(2);
        settle(&f);
        assert!(f.states().iter().all(|s| s.2 == "delivery_unknown"));
        // Each is said once in the trail, about its own person, and the chain holds.
        let said = left(&f).2;
        let settled: Vec<_> = said
            .iter()
            .filter(|e| e.0 == "sms.no_receipt")
            .map(|e| e.1.as_str())
            .collect();
        assert_eq!(settled, ["P00001", "P00002"]);
        settle(&f);
        assert_eq!(
            left(&f).2.iter().filter(|e| e.0 == "sms.no_receipt").count(),
            2,
            "a text settled is not settled again"
        );
        // Nothing is claimed again (it was sent).
        assert!(f.claim(10).is_empty());
        // A receipt that comes later still tells the truth.
        let (id, now) = (format!("X{}", c[0].id), f.now);
        let matched = f
            .store
            .write_blocking(move |tx| outbox::receipt(tx, "main", &id, "DELIVRD", true, false, now))
            .unwrap();
        assert!(matched);
        let s = f.states();
        assert_eq!(s[0].2, "delivered");
        assert_eq!(s[1].2, "delivery_unknown");
    }
}

on_both! {
    fn a_text_stopped_between_its_parts_goes_on_from_the_first_part_not_accepted(backend) {
        let mut f = Fixture::on(backend);
        f.enqueue(t(
            "flash_flood:F",
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &[1],
        ));
        // Another warning for the same person, queued while the first is out: it rides along.
        f.enqueue(t(
            "geo_hazard:G",
            1,
            Hazard::GeoHazard,
            Tier::Orange,
            MessageKind::Alert,
            true,
            &[1],
        ));
        let c = f.claim(10);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].accepted_parts, 0);
        let text = c[0].text.clone();
        // Part 1 of 2 accepted, then the link dropped before part 2.
        f.record(vec![(
            c[0].id,
            Outcome::Retry {
                account: Some("main".into()),
                reason: "the bind closed before sending part 2/2".into(),
                after: SignedDuration::ZERO,
                uncertain: false,
                counts: false,
                parts: vec![(1, 2, "P1".into())],
            },
        )]);
        // A newer version of its warning does not replace a text whose first part is on the
        // phone (the phone would keep a part that never becomes a text): it is finished.
        let e = f.enqueue(t(
            "flash_flood:F",
            2,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Update,
            true,
            &[1],
        ));
        assert_eq!(e.superseded, 0);
        // A third warning queued meanwhile must not change the text whose first part is out.
        f.enqueue(t(
            "typhoon:T",
            1,
            Hazard::Typhoon,
            Tier::Yellow,
            MessageKind::Alert,
            true,
            &[1],
        ));
        let again = f.claim(10);
        let resumed = again.iter().find(|m| m.id == c[0].id).expect("resumed");
        assert_eq!(resumed.accepted_parts, 1);
        assert_eq!(
            resumed.text, text,
            "the same text, so the parts fit together"
        );
        assert_eq!(
            resumed.merged, c[0].merged,
            "what rode along still rides along"
        );
        f.record(vec![(
            resumed.id,
            Outcome::Accepted {
                account: "main".into(),
                parts: vec![(2, 2, "P2".into())],
                uncertain: false,
            },
        )]);
        let parts: Vec<(i64, String)> = f
            .store
            .read_blocking(|c| {
                let mut st = c.prepare("SELECT part, smsc_id FROM dispatch_part ORDER BY part")?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(parts, vec![(1, "P1".into()), (2, "P2".into())]);
        // Both parts' receipts make it delivered.
        let now = f.now;
        f.store
            .write_blocking(move |tx| {
                outbox::receipt(tx, "main", "P1", "DELIVRD", true, false, now)?;
                outbox::receipt(tx, "main", "P2", "DELIVRD", true, false, now)
            })
            .unwrap();
        let s = f.states();
        assert_eq!(
            s.iter().find(|r| r.0 == "flash_flood:F").unwrap().2,
            "delivered"
        );
    }
}

// Several nodes on one PostgreSQL claim from one outbox (SQLite: two handles on one file, its
// one writer at a time).
on_both! {
    fn two_nodes_claiming_from_one_outbox_never_take_the_same_row(backend) {
        let place = Place::new(backend);
        let (a, b) = (place.open(), place.open());
        a.name_node("a");
        b.name_node("b");
        let now: Timestamp = "2026-08-09T03:00:00+08:00".parse().unwrap();
        let who: Vec<usize> = (0..240).collect();
        // Two warnings for everyone: a red one and an orange one, which merge per person.
        let red = t("flash_flood:FF331098001", 1, Hazard::FlashFlood, Tier::Red, MessageKind::Alert, true, &who);
        let orange = t("geo_hazard:DZ331098002", 1, Hazard::GeoHazard, Tier::Orange, MessageKind::Alert, true, &who);
        a.write_blocking(move |tx| {
            outbox::enqueue(tx, 1, &red, now, &Policy::default())?;
            outbox::enqueue(tx, 2, &orange, now, &Policy::default())
        })
        .unwrap();
        let rows: Vec<i64> = a
            .read_blocking(|c| {
                Ok(c.prepare("SELECT id FROM dispatch_message WHERE channel = 'sms' ORDER BY id")?
                    .query_map((), |r| r.get(0))?
                    .collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(rows.len(), 480);
        let queued = |s: &Store| -> i64 {
            s.read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM dispatch_message WHERE state = 'queued'",
                    (),
                    |r| r.get(0),
                )?)
            })
            .unwrap()
        };
        // Each node claims nine at a time as fast as it can, until nothing is queued.
        let claimer = |s: Store| {
            std::thread::spawn(move || {
                let mut got: Vec<Claimed> = Vec::new();
                loop {
                    let who = s.qualified("sms");
                    let c = s
                        .write_blocking(move |tx| {
                            outbox::claim(tx, "sms", &who, 9, now, &Policy::default())
                        })
                        .unwrap();
                    if c.is_empty() && queued(&s) == 0 {
                        return got;
                    }
                    got.extend(c);
                }
            })
        };
        let (ta, tb) = (claimer(a.clone()), claimer(b.clone()));
        let (by_a, by_b) = (ta.join().unwrap(), tb.join().unwrap());
        // Every row went out exactly once, as a text or inside one.
        let mut seen: Vec<i64> = by_a
            .iter()
            .chain(&by_b)
            .flat_map(|c| std::iter::once(c.id).chain(c.merged.iter().copied()))
            .collect();
        seen.sort();
        let twice: Vec<_> = seen.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        assert!(twice.is_empty(), "rows claimed twice: {twice:?}");
        assert_eq!(seen, rows);
        // Each text is claimed under the node that took it.
        let claimants: Vec<(String, i64)> = a
            .read_blocking(|c| {
                Ok(c.prepare(
                    "SELECT claimed_by, count(*) FROM dispatch_message
                     WHERE state = 'submitting' GROUP BY claimed_by ORDER BY claimed_by",
                )?
                .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?)
            })
            .unwrap();
        let expect: Vec<(String, i64)> = match backend {
            Backend::Sqlite => vec![("sms".into(), (by_a.len() + by_b.len()) as i64)],
            Backend::Postgres => [("sms@a", by_a.len()), ("sms@b", by_b.len())]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(w, n)| (w.to_string(), n as i64))
                .collect(),
        };
        assert_eq!(claimants, expect);
    }
}

on_both! {
    fn a_dead_nodes_rows_are_taken_back_and_a_live_nodes_stay_in_flight(backend) {
        let place = Place::new(backend);
        let store = place.open();
        let now: Timestamp = "2026-08-09T03:00:00+08:00".parse().unwrap();
        let who: Vec<usize> = (0..6).collect();
        let red = t("flash_flood:FF331098001", 1, Hazard::FlashFlood, Tier::Red, MessageKind::Alert, true, &who);
        store
            .write_blocking(move |tx| outbox::enqueue(tx, 1, &red, now, &Policy::default()))
            .unwrap();
        // Node "b_1" (a name with LIKE's wildcard in it) and node "1" each take three.
        for who in ["sms@b_1", "sms@1", "kannel@b_1"] {
            store
                .write_blocking(move |tx| outbox::claim(tx, "sms", who, 2, now, &Policy::default()))
                .unwrap();
        }
        let by = |state: &'static str| -> Vec<String> {
            store
                .read_blocking(move |c| {
                    Ok(c.prepare(
                        "SELECT claimed_by FROM dispatch_message WHERE state = ?1 ORDER BY claimed_by",
                    )?
                    .query_map([state], |r| r.get(0))?
                    .collect::<Result<_, _>>()?)
                })
                .unwrap()
        };
        assert_eq!(by("submitting").len(), 6);
        let n = store
            .write_blocking(move |tx| {
                outbox::reconcile(
                    tx,
                    &outbox::Scope::Node("b_1".into()),
                    now,
                    SignedDuration::from_secs(20),
                )
            })
            .unwrap();
        assert_eq!(n, 4);
        assert_eq!(by("reconciling"), ["kannel@b_1", "kannel@b_1", "sms@b_1", "sms@b_1"]);
        assert_eq!(by("submitting"), ["sms@1", "sms@1"]);
        // One channel's rows alone (a channel restarted by its supervisor).
        store
            .write_blocking(move |tx| {
                outbox::reconcile(tx, &outbox::Scope::Claimant("sms@1".into()), now, SignedDuration::from_secs(20))
            })
            .unwrap();
        assert!(by("submitting").is_empty());
    }
}

on_both! {
    /// A county-wide warning names thousands: it is queued a chunk of people per statement
    /// (the chunks' edges must neither drop nor double anyone), each person once with their
    /// own link, and the same decision queued again adds nothing.
    fn a_county_wide_warning_is_queued_once_per_person_across_chunks(backend) {
        let mut f = Fixture::on(backend);
        f.policy.link_base = Some("https://fx.example.cn/r/".into());
        let n = 2_345;
        // Every 100th number unusable, and the first 50 people named twice (a person on
        // duty for two places).
        let mut people: Vec<_> = (0..n)
            .map(|i| {
                let mobile = if i % 100 == 7 { "0571-1234".to_string() } else { format!("139{:08}", 30_000_000 + i) };
                contact(i, &mobile)
            })
            .collect();
        people.extend((0..50).map(|i| contact(i, &format!("139{:08}", 30_000_000 + i))));
        let alert = |version, send| {
            let mut t = targets("flash_flood:331098", version, Hazard::FlashFlood, Tier::Red, send, people.clone());
            t.shelters.clear();
            t
        };
        let bad = (0..n).filter(|i| i % 100 == 7).count();
        let e = f.enqueue(alert(1, MessageKind::Alert));
        assert_eq!((e.queued, e.invalid.len(), e.superseded, e.skipped), (n - bad, bad, 0, 0));
        assert!(e.invalid.iter().all(|why| why.contains("0571-1234")), "{:?}", &e.invalid[..3]);
        // The same decision again (a writer retrying its batch): nothing more.
        f.decision -= 1;
        let again = f.enqueue(alert(1, MessageKind::Alert));
        assert_eq!((again.queued, again.invalid.len()), (0, 0));
        let (rows, people_, tokens, texts): (i64, i64, i64, i64) = f
            .store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*), count(DISTINCT person), count(DISTINCT token),
                            count(DISTINCT text)
                     FROM dispatch_message",
                    (),
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?)
            })
            .unwrap();
        assert_eq!((rows, people_), (n as i64, n as i64));
        // Each queued person's own token, inside their own text.
        assert_eq!((tokens, texts), ((n - bad) as i64, (n - bad + 1) as i64));
        // Version 2 replaces every text not yet sent; only those with a number get a new one.
        let e2 = f.enqueue(alert(2, MessageKind::Update));
        assert_eq!((e2.queued, e2.superseded), (n - bad, n - bad));
        // Half of version 2 goes out; then the cancel reaches exactly those.
        let sent = f.claim(1_000);
        assert_eq!(sent.len(), 1_000);
        f.accept(&sent);
        let e3 = f.enqueue(alert(3, MessageKind::Cancel));
        assert_eq!((e3.queued, e3.skipped, e3.superseded), (1_000, n - bad - 1_000, n - bad - 1_000));
        let queued_cancels: std::collections::HashSet<String> = f
            .states()
            .into_iter()
            .filter(|(_, _, s)| s == "queued")
            .map(|(_, p, _)| p)
            .collect();
        let sent_to: std::collections::HashSet<String> = sent.iter().map(|c| c.person.clone()).collect();
        assert_eq!(queued_cancels, sent_to);
    }
}

/// What a batch left behind, for comparing two ways of recording it: every text (person,
/// state, account, uncertain, attempts, last error), every part in the order kept (person,
/// part, state, receipt, key) and every audit entry (kind, subject, detail).
type Left = (
    Vec<(String, String, Option<String>, i64, i64, Option<String>)>,
    Vec<(String, i64, String, Option<String>, Option<String>)>,
    Vec<(String, String, String)>,
);

fn left(f: &Fixture) -> Left {
    f.store
        .read_blocking(|c| {
            let texts = c
                .prepare(
                    "SELECT person, state, account, uncertain, attempts, last_error
                     FROM dispatch_message ORDER BY person",
                )?
                .query_map((), |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let parts = c
                .prepare(
                    "SELECT m.person, p.part, p.state, p.receipt, p.id_key
                     FROM dispatch_part p JOIN dispatch_message m ON m.id = p.message
                     ORDER BY p.rowid",
                )?
                .query_map((), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut entries = c
                .prepare("SELECT kind, subject, detail FROM audit ORDER BY seq")?
                .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            // Within one batch the order of entries may differ (a run written together);
            // what each says may not.
            entries.sort();
            assert!(matches!(
                stormbell::store::audit::verify(c)?,
                stormbell::store::audit::Verification::Intact { .. }
            ));
            Ok((texts, parts, entries))
        })
        .unwrap()
}

on_both! {
    fn a_batch_of_outcomes_and_receipts_leaves_what_each_recorded_alone_leaves(backend) {
        // Eight people; the same outcomes and receipts recorded once as two batches (on
        // PostgreSQL the plain acceptances and one-part receipts go set-based) and once one
        // at a time.
        let run = |together: bool| {
            let mut f = Fixture::on(backend);
            f.policy.accounts.insert(
                "main".into(),
                outbox::AccountRules {
                    ids: outbox::ReceiptIds::Exact,
                    receipt_deadline: SignedDuration::from_mins(30),
                },
            );
            f.enqueue(t(
                "flash_flood:F",
                1,
                Hazard::FlashFlood,
                Tier::Red,
                MessageKind::Alert,
                true,
                &[1, 2, 3, 4, 5, 6, 7, 8],
            ));
            let c = f.claim(10);
            assert_eq!(c.len(), 8);
            let id = |n: usize| c.iter().find(|m| m.person == format!("P{n:05}")).unwrap().id;
            // Person 8's receipt came before its answer was recorded (a fast centre).
            let now = f.now;
            f.store
                .write_blocking(move |tx| {
                    outbox::inbound(
                        tx,
                        &outbox::Inbound {
                            kind: "orphan_receipt",
                            account: "main",
                            source: "13900000000",
                            dest: "10690000",
                            text: "id:X8 stat:DELIVRD",
                            smsc_id: Some("X8"),
                            stat: Some("DELIVRD"),
                            id_key: Some("X8"),
                            ..outbox::Inbound::default()
                        },
                        now,
                    )
                })
                .unwrap();
            let accepted = |parts: &[&str], uncertain: bool| Outcome::Accepted {
                account: "main".into(),
                parts: parts
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i as u32 + 1, parts.len() as u32, s.to_string()))
                    .collect(),
                uncertain,
            };
            let outcomes = vec![
                (id(1), accepted(&["X1"], false)),
                (id(2), accepted(&["X2"], false)),
                (id(3), accepted(&["X3a", "X3b"], false)),
                (
                    id(4),
                    Outcome::Failed {
                        account: Some("main".into()),
                        reason: "ESME_RINVDSTADR".into(),
                    },
                ),
                // An SMS centre's id with a NUL in it (PostgreSQL's text cannot hold one).
                (id(5), accepted(&["X\u{0}5"], false)),
                (
                    id(6),
                    Outcome::Retry {
                        account: Some("main".into()),
                        reason: "the link dropped".into(),
                        after: SignedDuration::from_secs(30),
                        uncertain: true,
                        counts: true,
                        parts: vec![],
                    },
                ),
                (id(7), accepted(&["X7"], true)),
                (id(8), accepted(&["X8"], false)),
            ];
            let receipts: Vec<(&str, &str)> = vec![
                ("X1", "DELIVRD"),
                ("X2", "UNDELIV"),
                ("X3a", "DELIVRD"),
                ("X3b", "DELIVRD"),
                ("X\u{0}5", "ENROUTE"),
                ("X\u{0}5", "DELIVRD"),
                ("X404", "DELIVRD"),
                ("X7", "DELIVRD"),
            ];
            let batches: Vec<Vec<_>> = if together {
                vec![outcomes]
            } else {
                outcomes.into_iter().map(|o| vec![o]).collect()
            };
            for b in batches {
                f.record(b);
            }
            let keyed = |rs: Vec<(&'static str, &'static str)>| {
                let now = f.now;
                f.store
                    .write_blocking(move |tx| {
                        let k: Vec<_> = rs
                            .iter()
                            .map(|(key, stat)| outbox::Keyed { account: "main", key, stat })
                            .collect();
                        outbox::receipts_by_key(tx, &k, now)
                    })
                    .unwrap()
            };
            let matched: Vec<bool> = if together {
                keyed(receipts)
            } else {
                receipts.into_iter().flat_map(|r| keyed(vec![r])).collect()
            };
            assert_eq!(matched, [true, true, true, true, true, true, false, true]);
            left(&f)
        };
        let (alone, together) = (run(false), run(true));
        let state = |l: &Left, n: usize| {
            let p = format!("P{n:05}");
            l.0.iter().find(|t| t.0 == p).unwrap().1.clone()
        };
        let want = [
            "delivered", "failed", "delivered", "failed", "delivered", "queued", "delivered",
            "delivered",
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(state(&together, i + 1), *w, "person {}", i + 1);
        }
        assert_eq!(together.1.len(), 7, "seven parts kept");
        let kinds = |l: &Left, k: &str| l.2.iter().filter(|e| e.0 == k).count();
        assert_eq!(kinds(&together, "sms.accepted"), 6);
        assert_eq!(kinds(&together, "sms.delivered"), 5);
        assert_eq!(kinds(&together, "sms.undelivered"), 1);
        assert_eq!(together, alone);
    }
}

/// The key of the advisory lock every ordinary write batch of every node takes on
/// PostgreSQL (FNV-1a of its name, as any node computes it).
fn write_lock_key() -> i64 {
    "stormbell.write"
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }) as i64
}

#[test]
fn a_claim_goes_on_while_another_node_holds_the_write_lock_and_passes_over_a_row_it_holds() {
    // Another node's batch holds the store's write lock and a queued row of person 1; this
    // node claims apart from the lock: it neither waits for the lock nor for the row.
    let mut f = Fixture::on(Backend::Postgres);
    f.enqueue(t(
        "flash_flood:F",
        1,
        Hazard::FlashFlood,
        Tier::Red,
        MessageKind::Alert,
        true,
        &[1, 2],
    ));
    let url = f._place.at.clone();
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let (locked, is_locked) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        common::postgres::client(&url, move |c| {
            let mut tx = c.transaction().unwrap();
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&write_lock_key()])
                .unwrap();
            tx.query(
                "SELECT id FROM dispatch_message WHERE person = 'P00001' FOR UPDATE",
                &[],
            )
            .unwrap();
            locked.send(()).unwrap();
            // Held until the test has seen what it came to see.
            let _ = held.recv_timeout(std::time::Duration::from_secs(120));
            tx.rollback().unwrap();
        })
    });
    is_locked.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, p, now) = (f.store.clone(), f.policy.clone(), f.now);
    let claimed = rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            store.write_apart(move |tx| outbox::claim(tx, "sms", "test", 10, now, &p)),
        )
        .await
    });
    let claimed = claimed
        .expect("a claim apart waits for neither the write lock nor a row another holds")
        .unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|c| c.person.as_str())
            .collect::<Vec<_>>(),
        ["P00002"],
        "the row the other transaction holds is passed over"
    );
    // Work that keeps the audit chain in line may not run apart.
    let (store, now) = (f.store.clone(), f.now);
    let refused = rt.block_on(store.write_apart(move |tx| {
        let e = stormbell::store::audit::Entry::utc(now, "test", "test.apart", "x", "{}".into());
        Ok(stormbell::store::audit::append(tx, &e)?)
    }));
    let why = refused
        .expect_err("an audit entry written apart")
        .to_string();
    assert!(why.contains("apart from the store's write lock"), "{why}");
    hold.send(()).unwrap();
    other.join().unwrap();
    // Released: the row is claimed at the next turn.
    assert_eq!(f.claim(10).len(), 1);
}

#[test]
fn a_cancel_queued_while_a_claim_apart_holds_the_text_waits_for_it_and_reaches_the_person() {
    // A claim on another node has taken person 1's text and not yet committed when the lift
    // is queued (with the write lock): the lift's supersede waits for the claim's commit,
    // and its check of what was sent then sees the text sent, so the cancel goes to them.
    let mut f = Fixture::on(Backend::Postgres);
    let alert = |send, version| {
        t(
            "flash_flood:F",
            version,
            Hazard::FlashFlood,
            Tier::Red,
            send,
            true,
            &[1],
        )
    };
    f.enqueue(alert(MessageKind::Alert, 1));
    let url = f._place.at.clone();
    let (commit, go) = std::sync::mpsc::channel::<()>();
    let (took, taken) = std::sync::mpsc::channel::<()>();
    let claim = std::thread::spawn(move || {
        common::postgres::client(&url, move |c| {
            let mut tx = c.transaction().unwrap();
            tx.execute(
                "UPDATE dispatch_message SET state = 'submitting', attempts = attempts + 1
                 WHERE id IN (SELECT id FROM dispatch_message WHERE person = 'P00001'
                              AND state = 'queued' FOR UPDATE SKIP LOCKED)",
                &[],
            )
            .unwrap();
            took.send(()).unwrap();
            go.recv_timeout(std::time::Duration::from_secs(120))
                .unwrap();
            tx.commit().unwrap();
        })
    });
    taken.recv().unwrap();
    f.decision += 1;
    let (store, d, p, now, lift) = (
        f.store.clone(),
        f.decision,
        f.policy.clone(),
        f.now,
        alert(MessageKind::Cancel, 2),
    );
    let queued = std::thread::spawn(move || {
        store.write_blocking(move |tx| outbox::enqueue(tx, d, &lift, now, &p))
    });
    // The lift's writer is waiting for the claim's row (a state of the server, not a timer).
    let url = f._place.at.clone();
    let waiting = || -> i64 {
        common::postgres::query_one(
            &url,
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'stormbell' AND wait_event_type = 'Lock'",
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while waiting() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the lift never waited for the claim"
        );
        std::thread::yield_now();
    }
    commit.send(()).unwrap();
    claim.join().unwrap();
    let e = queued.join().unwrap().unwrap();
    assert_eq!((e.queued, e.skipped, e.superseded), (1, 0, 0), "{e:?}");
    let s = f.states();
    assert_eq!(
        s.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ["submitting", "queued"],
        "the alert went, and its lift follows it"
    );
}

#[test]
fn the_receipt_deadline_sweep_passes_over_a_text_whose_receipt_is_being_stored() {
    // Another node's receipts batch holds person 1's text; the sweep settles person 2's and
    // leaves person 1's to the receipt, without waiting for it.
    let mut f = Fixture::on(Backend::Postgres);
    f.enqueue(t(
        "flash_flood:F",
        1,
        Hazard::FlashFlood,
        Tier::Red,
        MessageKind::Alert,
        true,
        &[1, 2],
    ));
    let c = f.claim(10);
    f.accept(&c);
    f.now += f.policy.rules("main").receipt_deadline + SignedDuration::from_mins(1);
    let url = f._place.at.clone();
    let (done, release) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        common::postgres::client(&url, move |c| {
            let mut tx = c.transaction().unwrap();
            tx.execute(
                "UPDATE dispatch_message SET state = 'delivered' WHERE person = 'P00001'",
                &[],
            )
            .unwrap();
            held.send(()).unwrap();
            release
                .recv_timeout(std::time::Duration::from_secs(120))
                .unwrap();
            tx.commit().unwrap();
        })
    });
    is_held.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, p, now) = (f.store.clone(), f.policy.clone(), f.now);
    rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            store.write(move |tx| outbox::settle_unreceipted(tx, "sms", now, &p)),
        )
        .await
    })
    .expect("the sweep does not wait for a receipt being stored")
    .unwrap();
    done.send(()).unwrap();
    other.join().unwrap();
    let s = f.states();
    assert_eq!(
        s.iter()
            .map(|r| (r.1.as_str(), r.2.as_str()))
            .collect::<Vec<_>>(),
        [("P00001", "delivered"), ("P00002", "delivery_unknown")]
    );
}

#[test]
fn the_upkeep_look_every_claim_takes_reads_an_index_not_the_queue() {
    // A queue of 3,000 with nothing stale, its statistics fresh (a warning that queues a
    // thousand analyses the table). The plan PostgreSQL runs a prepared statement with after
    // its fifth execution is the generic one: forced here, it must not walk the table (the
    // old look did, every claim).
    let mut f = Fixture::on(Backend::Postgres);
    let who: Vec<usize> = (0..3_000).collect();
    f.enqueue(t(
        "flash_flood:F",
        1,
        Hazard::FlashFlood,
        Tier::Red,
        MessageKind::Alert,
        true,
        &who,
    ));
    let plan = common::postgres::generic_plan(
        &f._place.at,
        outbox::UPKEEP_LOOK,
        "text, text, text",
        "'sms', '2026-08-09T03:00:00+08:00', '2026-08-08T03:00:00+08:00'",
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(plan.contains("dispatch_message_age"), "{plan}");
}

#[test]
fn a_batch_applied_to_the_rows_it_names_reads_them_from_the_key_not_the_table() {
    // Claims, acceptances and receipts name their rows in one JSON parameter. PostgreSQL
    // guesses such a function yields 100 rows, so for a table of a few thousand the plan it
    // keeps for a prepared statement (forced here) walked the whole table for every batch:
    // at a carrier's 500 texts a second, a claim of one or two texts took 1.2 ms, most of
    // the server's time. Each must read its rows by key: the texts' statements with a
    // thousand queued, the parts' once a few thousand went out (below that a walk of the
    // parts is the cheaper plan, and fine).
    let mut f = Fixture::on(Backend::Postgres);
    let url = f._place.at.clone();
    let two = r#"'[{"i": 5, "m": 5, "n": 1, "t": "x", "s": 1, "c": 6, "a": "main", "u": 0, "r": "DELIVRD", "bad": 0, "e": ""}, {"i": 7, "m": 7, "n": 1, "t": "y", "s": 1, "c": 8, "a": "main", "u": 0, "r": "DELIVRD", "bad": 0, "e": ""}]'"#;
    let read_by_key = |statements: &[(&str, &str, &str, String)]| {
        common::postgres::client(&url, |c| {
            c.batch_execute("ANALYZE dispatch_message; ANALYZE dispatch_part")
                .unwrap()
        });
        for (name, statement, types, args) in statements {
            let plan = common::postgres::generic_plan(&url, statement, types, args);
            assert!(!plan.contains("Seq Scan"), "{name}:\n{plan}");
            assert!(plan.contains("_pkey"), "{name}:\n{plan}");
        }
    };
    let mut queue = |from: usize, n: usize| {
        let who: Vec<usize> = (from..from + n).collect();
        f.enqueue(t(
            &format!("flash_flood:F{from}"),
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &who,
        ));
    };
    queue(0, 1_000);
    read_by_key(&[
        (
            "claim",
            outbox::CLAIM_TAKE,
            "text, text, text",
            format!("'t', 'smpp', {two}"),
        ),
        (
            "ride along",
            outbox::CLAIM_RIDE,
            "text, text",
            format!("'t', {two}"),
        ),
        (
            "accepted",
            outbox::ACCEPTED_RUN,
            "text, text",
            format!("'t', {two}"),
        ),
        (
            "receipted texts",
            outbox::RECEIPT_MESSAGES,
            "text, text",
            format!("'t', {two}"),
        ),
    ]);
    queue(1_000, 5_000);
    let claimed = f.claim(6_000);
    f.accept(&claimed);
    read_by_key(&[
        (
            "parts sent again",
            outbox::PARTS_REPLACED,
            "text",
            two.to_string(),
        ),
        (
            "receipted parts",
            outbox::RECEIPT_PARTS,
            "text, text",
            format!("'t', {two}"),
        ),
    ]);
}

#[test]
fn a_storm_of_small_warnings_keeps_the_planners_picture_of_the_queue_current() {
    // Eight warnings of 150 persons each, none large enough alone to renew the statistics:
    // the planner must still know the queue holds about 1,200 texts, not the empty table
    // the migration left (with that picture it read each claimed person's texts through
    // the queue's state index).
    let mut f = Fixture::on(Backend::Postgres);
    for w in 0..8 {
        let who: Vec<usize> = (w * 150..(w + 1) * 150).collect();
        f.enqueue(t(
            &format!("flash_flood:F{w}"),
            1,
            Hazard::FlashFlood,
            Tier::Red,
            MessageKind::Alert,
            true,
            &who,
        ));
    }
    let queued = f
        ._place
        .count("SELECT count(*) FROM dispatch_message WHERE state = 'queued'");
    assert_eq!(queued, 1_200);
    let known: f64 = common::postgres::query_one(
        &f._place.at,
        "SELECT CAST(reltuples AS DOUBLE PRECISION) FROM pg_class WHERE relname = 'dispatch_message'",
    );
    assert!(
        known >= queued as f64 / 2.0,
        "the planner's rows {known} against {queued} queued"
    );
}
