//! Call-and-respond over real SMS: a flash-flood warning from rain on the synthetic county
//! calls the zone's responsible persons; the node-smpp SMSC delivers the texts and carries
//! their replies back (one reports 35 people moved — twice, as an SMSC redelivery would —
//! one writes something else, one asks for help); the silent ones are chased up the ladder on
//! schedule, once each, and end on the county's silent list.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::smsc::Smsc;
use stormbell::correlate::Tier;
use stormbell::correlate::warning::Contact;
use stormbell::runtime::clock::SimClock;
use stormbell::store::Store;

/// (person, kind, people, repeat_of, text) of a recorded answer.
type Answer = (String, String, Option<i64>, Option<i64>, String);

fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read_blocking(move |c| Ok(c.query_row(sql, (), |r| r.get(0))?))
        .unwrap()
}

on_both! {
    fn answers_by_sms_close_calls_count_evacuation_once_and_silence_climbs_the_ladder(backend) {
        let smsc = Smsc::start(5);
        let place = Place::new(backend);
        let store = place.open();
        let reg = common::county::registry(&store);
        let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
        let policy = cfg.dispatch_policy();
        let settings = cfg.respond.clone();
        let common::county::Warned { at, tier, contacts } =
            common::county::warn_zone(&store, reg.clone(), &cfg, &policy, &settings, 38.0);
        assert_eq!(tier, Tier::Orange, "the ladder below is orange's");
        let calls = count(
            &store,
            "SELECT count(*) FROM respond_call WHERE state = 'open'",
        );
        assert!(
            calls >= 5,
            "the zone, its villages, town and county: {calls}"
        );
        let clock = Arc::new(SimClock::new(at));

        // Who answers what (by role in the fixture's zone).
        let by_target =
            |t: &str| -> Vec<&Contact> { contacts.iter().filter(|c| c.target == t).collect() };
        let site = by_target("FF331098001");
        let v208 = by_target("331098108208");
        let v203 = by_target("331098108203");
        assert!(
            site.len() >= 2 && !v208.is_empty() && !v203.is_empty(),
            "{contacts:#?}"
        );
        let mover = site[0].clone();
        let chatty = v208[0].clone();
        let helpless = v203[0].clone();
        let silent: Vec<Contact> = contacts
            .iter()
            .filter(|c| !["FF331098001", "331098108208", "331098108203"].contains(&c.target.as_str()))
            .cloned()
            .collect();
        assert!(!silent.is_empty(), "someone up the ladder stays silent");

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let stages = common::county::Stages::start(
                &store,
                &reg,
                (&policy, &settings),
                smsc.account(),
                clock.clone(),
            );
            let wait = |what: &'static str, sql: &'static str, want: i64| {
                let store = store.clone();
                async move { common::wait_count(&store, what, sql, want).await }
            };
            wait(
                "warnings delivered",
                "SELECT count(*) FROM dispatch_message WHERE state = 'delivered'",
                calls.min(1),
            )
            .await;
            wait(
                "everyone's warning out",
                "SELECT count(*) = 0 FROM dispatch_message WHERE state IN ('queued', 'submitting')",
                1,
            )
            .await;
            // The replies, from the phones as the SMSC gives them (86…).
            let mo = |who: &Contact, text: &str| smsc.reply_from(&who.mobile, text);
            mo(&mover, "3 35");
            mo(&mover, "3 35");
            mo(&chatty, "好的马上去");
            mo(&helpless, "4 桥断了");
            wait("replies read", "SELECT count(*) FROM respond_answer", 4).await;
            // The codes went back to the one not understood; the help request to the town and
            // county duty persons.
            wait(
                "notices sent",
                "SELECT count(*) = 0 FROM dispatch_message WHERE state IN ('queued', 'submitting')",
                1,
            )
            .await;

            // Time passes with no answer from the others: the orange ladder fires.
            // One move: the steps fall due at their own times, and the respond stage's next turn
            // fires every step due by then, as after any pause.
            clock.advance(Duration::from_secs(31 * 60));
            wait(
                "silent list",
                "SELECT count(*) FROM respond_call WHERE state = 'silent'",
                1,
            )
            .await;
            wait(
                "chases sent",
                "SELECT count(*) = 0 FROM dispatch_message WHERE state IN ('queued', 'submitting')",
                1,
            )
            .await;
            stages.stop().await;
        });

        // The answers, word for word, with the repeat marked and not acted on twice.
        let answers: Vec<Answer> = store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT person, kind, people, repeat_of, text FROM respond_answer ORDER BY id",
                )?;
                let r = st.query_map((), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(answers.len(), 4, "{answers:?}");
        assert_eq!(
            (answers[0].0.as_str(), answers[0].1.as_str(), answers[0].2),
            (mover.person.as_str(), "moved", Some(35))
        );
        assert!(
            answers[1].3.is_some(),
            "the redelivered reply is a repeat: {answers:?}"
        );
        assert_eq!(answers[2].1, "unknown");
        assert_eq!(answers[2].4, "好的马上去");
        assert_eq!(
            (answers[3].0.as_str(), answers[3].1.as_str()),
            (helpless.person.as_str(), "help")
        );
        // 35 moved, not 70.
        let moved = count(&store, "SELECT sum(people) FROM respond_evacuation");
        assert_eq!(moved, 35);

        // Calls: the three who answered, and (one answer covers a place) their co-responsibles.
        let states: Vec<(String, String, String)> = store
            .read_blocking(|c| {
                let mut st = c.prepare("SELECT person, target, state FROM respond_call ORDER BY id")?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        let state_of = |p: &str, t: &str| {
            states
                .iter()
                .find(|s| s.0 == p && s.1 == t)
                .map(|s| s.2.clone())
                .unwrap()
        };
        assert_eq!(state_of(&mover.person, &mover.target), "answered");
        assert_eq!(state_of(&site[1].person, &site[1].target), "covered");
        assert_eq!(state_of(&chatty.person, &chatty.target), "answered");
        assert_eq!(state_of(&helpless.person, &helpless.target), "answered");
        for s in &silent {
            assert_eq!(state_of(&s.person, &s.target), "silent", "{states:?}");
        }
        // Every step of the silent ones fired exactly once; the answered ones' were cancelled.
        let fired = count(
            &store,
            "SELECT count(*) FROM respond_step WHERE state = 'fired'",
        );
        let pending = count(
            &store,
            "SELECT count(*) FROM respond_step WHERE state = 'pending'",
        );
        let ladder = cfg.respond.ladder["orange"].len() as i64;
        assert_eq!(
            fired,
            silent.len() as i64 * ladder,
            "every step once per silent call"
        );
        assert_eq!(pending, 0);

        // On the phones: the chase to each silent person, the codes, the help request.
        let phones = smsc.phones();
        let got = |who: &str, needle: &str| {
            let n = stormbell::dispatch::outbox::normalise_mobile(who).unwrap();
            phones
                .iter()
                .any(|p| p["dest"] == format!("86{n}") && p["text"].as_str().unwrap().contains(needle))
        };
        for s in &silent {
            assert!(got(&s.mobile, "再次提醒"), "{} was chased", s.name);
        }
        assert!(
            got(&chatty.mobile, "请按以下方式回复"),
            "the codes went back"
        );
        let helpers: BTreeSet<String> = reg
            .duties_for("331098108")
            .chain(reg.duties_for("331098"))
            .filter_map(|(_, p)| p.map(|p| p.mobile.clone()))
            .collect();
        assert!(!helpers.is_empty());
        for m in &helpers {
            assert!(
                got(m, "求援") && got(m, "桥断了"),
                "{m} got the help request"
            );
        }
        // Each chase once: no step's message went twice.
        let notices = count(
            &store,
            "SELECT count(*) FROM dispatch_message WHERE send = 'Notice'",
        );
        let distinct = count(
            &store,
            "SELECT count(DISTINCT decision || person || purpose) FROM dispatch_message WHERE send = 'Notice'",
        );
        assert_eq!(notices, distinct);
        // And every answer and step is in the audit trail.
        assert!(
            count(
                &store,
                "SELECT count(*) FROM audit WHERE kind LIKE 'answer.%'"
            ) >= 4
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM audit WHERE kind LIKE 'escalation.%'"
            ),
            fired
        );
    }
}
