//! The call rules on a real store: who is called when, what a raise and a lift do, what one
//! answer covers, and that each step fires once however often the ladder is walked.

use crate::common;
use crate::common::backend::{Backend, Place, on_both};

use std::path::Path;

use common::dispatch::{contact, targets};
use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::Targets;
use stormbell::dispatch::outbox::Policy;
use stormbell::registry::{self, Encoding, Registry};
use stormbell::respond::calls::{self, RespondSettings, Step};
use stormbell::store::Store;

fn settings(all: bool) -> RespondSettings {
    let mut s = RespondSettings {
        all_must_answer: all,
        ..Default::default()
    };
    s.ladder.insert(
        "red".into(),
        vec![
            Step {
                after_mins: 5,
                action: "resend".into(),
            },
            Step {
                after_mins: 15,
                action: "silent".into(),
            },
        ],
    );
    s
}

/// Two persons for one village (上坞村), as a village and its deputy lead would be.
fn warn(version: u32, tier: Tier, send: MessageKind, raises: bool) -> Targets {
    let mut t = targets(
        "flash_flood:FF1",
        version,
        Hazard::FlashFlood,
        tier,
        send,
        vec![contact(1, "13900000001"), contact(2, "13900000002")],
    );
    t.raises = raises;
    t
}

struct F {
    _dir: Place,
    store: Store,
    reg: std::sync::Arc<Registry>,
    now: Timestamp,
    s: RespondSettings,
}

impl F {
    fn new(backend: Backend, all: bool) -> F {
        let dir = Place::new(backend);
        let store = dir.open();
        let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
        let (loaded, _) = registry::check_dir(&county, Encoding::Auto);
        F {
            _dir: dir,
            store,
            reg: std::sync::Arc::new(Registry::new(loaded.data)),
            now: "2026-08-09T03:00:00+08:00".parse().unwrap(),
            s: settings(all),
        }
    }
    fn register(&self, decision: i64, t: Targets) -> calls::Registered {
        let (s, now) = (self.s.clone(), self.now);
        self.store
            .write_blocking(move |tx| {
                calls::register(tx, decision, &t, now, &s, &Policy::default())
            })
            .unwrap()
    }
    fn states(&self) -> Vec<(i64, String, String)> {
        self.store
            .read_blocking(|c| {
                let mut st =
                    c.prepare("SELECT decision, person, state FROM respond_call ORDER BY id")?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap()
    }
    fn fire(&self, at: Timestamp) -> calls::Fired {
        let (reg, p) = (self.reg.clone(), Policy::default());
        self.store
            .write_blocking(move |tx| calls::fire_due(tx, at, &reg, &p))
            .unwrap()
    }
    fn answer(&self, person: &str, at: Timestamp) -> usize {
        let (s, person) = (self.s.clone(), person.to_string());
        self.store
            .write_blocking(move |tx| {
                calls::answered(tx, &person, &["flash_flood:FF1".to_string()], 1, at, &s)
            })
            .unwrap()
    }
}

on_both! {
    fn an_alert_calls_a_routine_update_does_not_a_raise_calls_again_and_a_lift_closes(backend) {
        let f = F::new(backend, false);
        let r = f.register(1, warn(1, Tier::Orange, MessageKind::Alert, true));
        assert_eq!(
            (r.calls, r.steps),
            (2, 0),
            "orange has no ladder in these settings"
        );
        assert_eq!(
            f.register(2, warn(2, Tier::Orange, MessageKind::Update, false))
                .calls,
            0
        );
        let r = f.register(3, warn(3, Tier::Red, MessageKind::Update, true));
        assert_eq!((r.calls, r.steps, r.closed), (2, 4, 2));
        let s = f.states();
        assert_eq!(
            s.iter().map(|x| x.2.as_str()).collect::<Vec<_>>(),
            ["superseded", "superseded", "open", "open"]
        );
        let r = f.register(4, warn(4, Tier::Red, MessageKind::Cancel, false));
        assert_eq!((r.calls, r.closed), (0, 2));
        assert!(f.states().iter().skip(2).all(|x| x.2 == "lifted"));
        // The lift cancelled the steps: nothing fires later.
        assert_eq!(f.fire(f.now + SignedDuration::from_hours(1)).steps, 0);
    }
}

on_both! {
    fn one_answer_covers_the_place_unless_everyone_must_answer(backend) {
        let f = F::new(backend, false);
        f.register(1, warn(1, Tier::Red, MessageKind::Alert, true));
        assert_eq!(f.answer("P00001", f.now + SignedDuration::from_mins(2)), 2);
        let s = f.states();
        assert_eq!((s[0].2.as_str(), s[1].2.as_str()), ("answered", "covered"));
        assert_eq!(f.fire(f.now + SignedDuration::from_hours(1)).steps, 0);

        let g = F::new(backend, true);
        g.register(1, warn(1, Tier::Red, MessageKind::Alert, true));
        assert_eq!(g.answer("P00001", g.now + SignedDuration::from_mins(2)), 1);
        // The other still climbs: resend at 5, silent at 15; each once however often we look.
        let at = g.now + SignedDuration::from_mins(6);
        let first = g.fire(at);
        assert_eq!((first.steps, first.messages), (1, 1));
        assert_eq!(g.fire(at).steps, 0, "a step fires once");
        let late = g.fire(g.now + SignedDuration::from_mins(20));
        assert_eq!((late.steps, late.silent), (1, 1));
        let s = g.states();
        assert_eq!((s[0].2.as_str(), s[1].2.as_str()), ("answered", "silent"));
        // An answer given before a call was made does not answer it.
        g.register(2, warn(2, Tier::Red, MessageKind::Update, true));
        assert_eq!(g.answer("P00002", g.now - SignedDuration::from_mins(1)), 0);
    }
}

#[test]
fn a_ladder_with_an_unknown_action_or_out_of_order_is_refused_with_its_key() {
    let mut s = settings(false);
    s.ladder.insert(
        "orange".into(),
        vec![
            Step {
                after_mins: 10,
                action: "telegram".into(),
            },
            Step {
                after_mins: 5,
                action: "silent".into(),
            },
        ],
    );
    s.ladder.insert("purple".into(), vec![]);
    let keys: Vec<String> = s.problems().into_iter().map(|p| p.0).collect();
    assert_eq!(
        keys,
        [
            "respond.ladder.orange[0].action",
            "respond.ladder.orange[1].after_mins",
            "respond.ladder.purple"
        ]
    );
}

/// Broadcasts through the county platform, 10 minutes to confirm.
fn platform_plan() -> stormbell::dispatch::broadcast::jobs::Plan {
    use stormbell::dispatch::broadcast::jobs;
    jobs::Plan {
        routes: jobs::Routes {
            platform: true,
            icecast: false,
        },
        deadline: SignedDuration::from_mins(10),
        policy: Policy::default(),
    }
}

/// The fixture county in a store, and a red warning calling the two persons of a village
/// with two loudspeakers (黄坞社区): (dir, store, registry, now, village, targets).
fn loudspeaker_village(
    backend: Backend,
) -> (
    Place,
    Store,
    std::sync::Arc<Registry>,
    Timestamp,
    &'static str,
    Targets,
) {
    let dir = Place::new(backend);
    let store = dir.open();
    let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    let prepared = registry::prepare_import(&county, Encoding::Auto, &|_| {}).unwrap();
    let reg = std::sync::Arc::new(Registry::new(prepared.data.clone()));
    prepared.commit(&store, "test", jiff::Zoned::now()).unwrap();
    let now: Timestamp = "2026-08-09T03:00:00+08:00".parse().unwrap();
    let village = "331098001002";
    let mut t = warn(1, Tier::Red, MessageKind::Alert, true);
    for c in &mut t.contacts {
        c.target = village.into();
    }
    (dir, store, reg, now, village, t)
}

on_both! {
    fn a_loudspeaker_that_did_not_play_sends_the_village_leads_to_their_gongs(backend) {
        use stormbell::dispatch::broadcast::jobs;
        let (_dir, store, reg, now, village, mut t) = loudspeaker_village(backend);
        t.terminals = reg.terminals_of(village).map(|x| x.id.clone()).collect();
        assert_eq!(t.terminals.len(), 2);
        let plan = platform_plan();
        let s = settings(false);
        store
            .write_blocking(move |tx| {
                calls::register(tx, 1, &t, now, &s, &Policy::default())?;
                jobs::enqueue(tx, 1, &t, now, &plan)?;
                // Nobody took the broadcast by its deadline.
                jobs::deadlines(tx, "platform", now + SignedDuration::from_mins(11))
            })
            .unwrap();
        let r = reg.clone();
        let (read, sent) = store
            .write_blocking(move |tx| {
                stormbell::respond::terminals::run_once(
                    tx,
                    &r,
                    &Policy::default(),
                    now + SignedDuration::from_mins(11),
                )
            })
            .unwrap();
        // One alarm for the broadcast, one per terminal.
        assert_eq!(read, 3);
        let texts: Vec<(String, String)> = store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT person, text FROM dispatch_message WHERE send = 'Notice' ORDER BY id",
                )?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(texts.len(), sent);
        // Each of the two village persons, once per silent terminal.
        for p in ["P00001", "P00002"] {
            let theirs: Vec<&String> = texts.iter().filter(|x| x.0 == p).map(|x| &x.1).collect();
            assert_eq!(theirs.len(), 2, "{texts:?}");
            assert!(
                theirs
                    .iter()
                    .all(|t| t.contains("未确认播放") && t.contains("黄坞社区")),
                "{theirs:?}"
            );
        }
        // And the county is told the broadcast never went out.
        assert!(
            texts.iter().any(|x| x.0 != "P00001" && x.0 != "P00002"),
            "{texts:?}"
        );
        // Read once: a second pass finds nothing new.
        let r = reg.clone();
        let again = store
            .write_blocking(move |tx| {
                stormbell::respond::terminals::run_once(tx, &r, &Policy::default(), now)
            })
            .unwrap();
        assert_eq!(again, (0, 0));
    }
}

on_both! {
    fn a_terminal_step_sounds_the_village_loudspeakers_again_once(backend) {
        use stormbell::dispatch::broadcast::jobs;
        let (_dir, store, reg, now, village, mut t) = loudspeaker_village(backend);
        // The warning sounds this village's two loudspeakers and one elsewhere.
        t.terminals = reg.terminals_of(village).map(|x| x.id.clone()).collect();
        assert_eq!(t.terminals.len(), 2);
        let other = reg
            .data
            .terminals
            .iter()
            .find(|x| {
                x.village != village && x.kind == stormbell::registry::model::TerminalKind::Cellular
            })
            .unwrap();
        t.terminals.push(other.id.clone());
        let plan = platform_plan();
        let mut s = settings(false);
        s.ladder.insert(
            "red".into(),
            vec![
                Step {
                    after_mins: 5,
                    action: "terminal".into(),
                },
                Step {
                    after_mins: 15,
                    action: "silent".into(),
                },
            ],
        );
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let s2 = s.clone();
        store
            .write_blocking(move |tx| {
                calls::register(tx, 1, &t, now, &s2, &Policy::default())?;
                jobs::enqueue(tx, 1, &t, now, &plan)
            })
            .unwrap();
        let r = reg.clone();
        let fired = store
            .write_blocking(move |tx| {
                calls::fire_due(
                    tx,
                    now + SignedDuration::from_mins(6),
                    &r,
                    &Policy::default(),
                )
            })
            .unwrap();
        // Both persons' steps fired; the loudspeakers sound again once, only this village's.
        assert_eq!(fired.steps, 2);
        let copies: Vec<(i64, String, String)> = store
            .read_blocking(|c| {
                let mut q = c.prepare(
                    "SELECT resound, areas, state FROM broadcast_job WHERE resound IS NOT NULL",
                )?;
                let r = q.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(copies[0].1, format!("[\"{village}\"]"));
        assert_eq!(copies[0].2, "queued");
        let targets: Vec<String> = store
            .read_blocking(|c| {
                let mut q = c.prepare(
                    "SELECT t.terminal FROM broadcast_target t JOIN broadcast_job j ON j.id = t.job
                     WHERE j.resound IS NOT NULL ORDER BY t.terminal",
                )?;
                let r = q.query_map((), |r| r.get(0))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(targets.len(), 2);
        assert!(!targets.contains(&other.id));
        let details: Vec<String> = store
            .read_blocking(|c| {
                let mut q =
                    c.prepare("SELECT detail FROM respond_step WHERE state = 'fired' ORDER BY id")?;
                let r = q.query_map((), |r| r.get(0))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert!(details[0].contains("sound again"), "{details:?}");
        assert!(details[1].contains("already sounds again"), "{details:?}");
    }
}

on_both! {
    /// The ladder's phone steps: `call` rings each silent person (a call per person, through
    /// the voice channel's rows), an answer withdraws that person's ring still waiting, and
    /// `call_town` rings the town's duty persons about whoever is still silent.
    fn the_ladder_rings_the_silent_and_then_the_town_about_them(backend) {
        let mut f = F::new(backend, true);
        f.s.ladder.insert(
            "red".into(),
            vec![
                Step { after_mins: 5, action: "call".into() },
                Step { after_mins: 10, action: "call_town".into() },
            ],
        );
        f.register(1, warn(1, Tier::Red, MessageKind::Alert, true));
        let fired = f.fire(f.now + SignedDuration::from_mins(5));
        assert_eq!((fired.steps, fired.messages), (2, 2));
        let rings = |f: &F| -> Vec<(String, String, String)> {
            f.store
                .read_blocking(|c| {
                    let mut st = c.prepare(
                        "SELECT person, purpose, state FROM dispatch_message
                         WHERE channel = 'voice' ORDER BY id",
                    )?;
                    let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    Ok(r.collect::<Result<Vec<_>, _>>()?)
                })
                .unwrap()
        };
        let first = rings(&f);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|r| r.1.starts_with("call:") && r.2 == "queued"), "{first:?}");
        // The first person answers (by any channel): their ring is withdrawn, the other's waits.
        assert_eq!(f.answer("P00001", f.now + SignedDuration::from_mins(6)), 1);
        let after = rings(&f);
        assert_eq!(
            after.iter().map(|r| (r.0.as_str(), r.2.as_str())).collect::<Vec<_>>(),
            vec![("P00001", "superseded"), ("P00002", "queued")]
        );
        // Ten minutes in, the town's duty persons are rung about the second, not the first.
        let fired = f.fire(f.now + SignedDuration::from_mins(10));
        assert_eq!(fired.steps, 1);
        let town: Vec<_> = rings(&f).into_iter().filter(|r| r.1.starts_with("call_town:")).collect();
        assert!(!town.is_empty(), "the town's duty persons are rung");
        assert_eq!(fired.messages, town.len());
        assert!(town.iter().all(|r| r.0 != "P00001" && r.0 != "P00002"), "{town:?}");
        // Firing again rings nobody twice.
        assert_eq!(f.fire(f.now + SignedDuration::from_mins(11)).steps, 0);
        assert_eq!(rings(&f).len(), 2 + town.len());
    }
}

#[test]
fn an_answer_finds_its_calls_steps_by_the_call_whatever_the_statistics_say() {
    // A storm's first hour on a new database: the steps table was analysed while empty (as
    // the migration left it), then a storm registered 100,000 pending steps before
    // autovacuum looked again. The plan PostgreSQL runs a prepared statement with after its
    // fifth execution is the generic one: forced here, an answer's cancelling of its call's
    // steps must find them by the call, not walk every pending step of the storm.
    let place = Place::new(Backend::Postgres);
    drop(place.open());
    place
        .raw(
            "",
            "ANALYZE respond_step;
             INSERT INTO respond_step (call, step, due, action, state)
             SELECT c, s, '2026-08-09T03:00:00+08:00', 'resend', 'pending'
             FROM generate_series(1, 20000) c, generate_series(1, 5) s",
            &[],
        )
        .unwrap();
    let plan = common::postgres::generic_plan(
        &place.at,
        calls::ANSWERED_STEPS,
        "bigint, text, text",
        "100, 'now', 'answered'",
    );
    assert!(!plan.contains("respond_step_due"), "{plan}");
    assert!(plan.contains("respond_step_call_step_key"), "{plan}");
}
