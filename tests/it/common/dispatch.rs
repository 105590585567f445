//! Warnings for the dispatch tests, of the synthetic county's shape.

use stormbell::correlate::assess::PlaceKind;
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::{Contact, TargetPlace, TargetShelter, Targets};

/// A village-level responsible person (synthetic).
pub fn contact(i: usize, mobile: &str) -> Contact {
    Contact {
        person: format!("P{i:05}"),
        name: format!("责任人{i}"),
        mobile: mobile.into(),
        level: "village".into(),
        role: "村级责任人".into(),
        target: "331098101201".into(),
        deputy: None,
    }
}

/// Synthetic mobile number `i` (138…).
pub fn mobile(i: usize) -> String {
    format!("138{:08}", 10_000_000 + i)
}

/// One warning version for `contacts`: one village (上坞村) and its shelter; an Alert raises.
pub fn targets(
    lineage: &str,
    version: u32,
    hazard: Hazard,
    tier: Tier,
    send: MessageKind,
    contacts: Vec<Contact>,
) -> Targets {
    Targets {
        lineage: lineage.into(),
        version,
        hazard,
        tier,
        send,
        raises: send == MessageKind::Alert,
        restricted: false,
        identifiers: vec![format!("{lineage}-{version}")],
        places: vec![place("331098101201", "上坞村", tier)],
        evacuate: 40,
        contacts,
        terminals: Vec::new(),
        shelters: vec![TargetShelter {
            id: "S01".into(),
            name: "溪口镇中心小学".into(),
            capacity: 300,
        }],
        gaps: Vec::new(),
        relayed: None,
    }
}

/// A village in the targets with 40 people to move.
pub fn place(id: &str, name: &str, tier: Tier) -> TargetPlace {
    TargetPlace {
        kind: PlaceKind::Village,
        id: id.into(),
        name: name.into(),
        tier,
        evacuate: 40,
    }
}

/// Claim every queued text at `at` and record each as accepted by the SMSC (one part each),
/// as the SMS channel would: replies then find the text they answer.
pub fn accept_all(
    store: &stormbell::store::Store,
    policy: &stormbell::dispatch::outbox::Policy,
    at: jiff::Timestamp,
) {
    use stormbell::dispatch::outbox::{self, Outcome};
    let p = policy.clone();
    store
        .write_blocking(move |tx| {
            let claimed = outbox::claim(tx, "sms", "test", 10_000, at, &p)?;
            let outcomes: Vec<(i64, Outcome)> = claimed
                .iter()
                .map(|m| {
                    (
                        m.id,
                        Outcome::Accepted {
                            account: "main".into(),
                            parts: vec![(1, 1, format!("S{}", m.id))],
                            uncertain: false,
                        },
                    )
                })
                .collect();
            outbox::record(tx, &outcomes, at, &p)
        })
        .unwrap();
}

/// A reply from `mobile` as the SMS centre would hand it over at `at`, then one intake pass:
/// what the respond stage does with it.
pub fn reply_at(
    store: &stormbell::store::Store,
    (reg, settings, policy): (
        &std::sync::Arc<stormbell::registry::Registry>,
        &stormbell::respond::RespondSettings,
        &stormbell::dispatch::outbox::Policy,
    ),
    mobile: &str,
    text: &str,
    at: jiff::Timestamp,
) {
    use stormbell::dispatch::outbox;
    let (source, text) = (format!("86{mobile}"), text.to_string());
    let (r, s, p) = (reg.clone(), settings.clone(), policy.clone());
    store
        .write_blocking(move |tx| {
            outbox::inbound(
                tx,
                &outbox::Inbound {
                    kind: "reply",
                    account: "main",
                    source: &source,
                    dest: "12379",
                    text: &text,
                    smsc_id: None,
                    stat: None,
                    ..Default::default()
                },
                at,
            )?;
            stormbell::respond::intake::run_once(tx, 10, &r, &s, &p)
        })
        .unwrap();
}
