//! Answers in: SMS replies read from dispatch's inbound queue (its own cursor, so nothing is
//! read twice and nothing in dispatch is changed), parsed ([`super::reply`]), matched to the
//! person and warning the last text to that number was about, and recorded word for word.
//!
//! - An answer closes the person's open calls ([`super::calls::answered`]).
//! - `3 35` records 35 people moved so far for the place the person answers for: the latest
//!   report stands, so a repeated reply never counts twice.
//! - `4` (need help) goes at once to the town and county duty persons of the place.
//! - A reply that is not understood is kept for a human and answered with the codes.
//! - A reply repeated within ten minutes (an SMSC redelivering, a second tap) is recorded with
//!   `repeat_of` and changes nothing.

use crate::store::sql::{Conn, OptionalExtension, Tx};
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;

use super::calls::{self, RespondSettings};
use super::reply::{self, Reply};
use crate::correlate::Tier;
use crate::dispatch::outbox::{self, Notice, Policy};
use crate::registry::Registry;

/// What one intake pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intake {
    /// Replies read.
    pub read: usize,
    /// Of which understood.
    pub understood: usize,
    /// Repeats (recorded, no effect).
    pub repeats: usize,
    /// From numbers no message went to.
    pub strangers: usize,
    /// Calls closed by them.
    pub closed: usize,
    /// Messages queued (help to officers, codes back).
    pub messages: usize,
}

const CURSOR: &str = "dispatch_inbound";
const REPEAT_WINDOW: SignedDuration = SignedDuration::from_mins(10);
/// How long a number held for being beyond the registered figure waits for its confirmation.
const CONFIRM_WINDOW: SignedDuration = SignedDuration::from_mins(60);

/// The last reply (`dispatch_inbound.id`) respond has acted on: replies up to it are done
/// with, and retention may delete them once they are old.
pub fn replies_handled(c: &crate::store::sql::Conn<'_>) -> anyhow::Result<i64> {
    super::cursor(c, CURSOR)
}

/// Read up to `limit` new replies and act on them, in `tx`.
pub fn run_once(
    tx: &Tx<'_>,
    limit: usize,
    reg: &Registry,
    settings: &RespondSettings,
    policy: &Policy,
) -> anyhow::Result<Intake> {
    let mut out = Intake::default();
    let after = super::cursor(tx, CURSOR)?;
    let replies = outbox::replies_after(tx, after, limit)?;
    let lang = crate::templates::lang(&policy.lang);
    for r in &replies {
        out.read += 1;
        let address = outbox::normalise_mobile(&r.source).unwrap_or_else(|| r.source.clone());
        let last = outbox::last_sent_to(tx, &address)?;
        let parsed = reply::parse(&r.text);
        let (kind, people, shelter, note) = match &parsed {
            Reply::Ack => ("ack", None, None, None),
            Reply::AtPost => ("post", None, None, None),
            Reply::Moved { people, shelter } => ("moved", Some(*people), shelter.clone(), None),
            Reply::Help(n) => ("help", None, None, n.clone()),
            Reply::Returned { people, place } => ("returned", Some(*people), place.clone(), None),
            Reply::Unknown => ("unknown", None, None, None),
        };
        let since = crate::store::stamp(r.at - REPEAT_WINDOW);
        // A repeat of an answer that was counted is ignored; the same reply again after one
        // held for being beyond the registered figure confirms it.
        let repeat_of: Option<i64> = tx
            .query_row(
                "SELECT id FROM respond_answer WHERE address = ?1 AND text = ?2 AND at >= ?3 AND at <= ?4
                   AND held IS NULL
                 ORDER BY id LIMIT 1",
                params![address, r.text, since, crate::store::stamp(r.at)],
                |x| x.get(0),
            )
            .optional()?;
        let confirms = repeat_of.is_none()
            && people.is_some()
            && tx
                .prepare_cached(
                    "SELECT count(*) FROM respond_answer WHERE address = ?1 AND text = ?2
                       AND held IS NOT NULL AND at >= ?3 AND at <= ?4",
                )?
                .query_row(
                    params![
                        address,
                        r.text,
                        crate::store::stamp(r.at - CONFIRM_WINDOW),
                        crate::store::stamp(r.at)
                    ],
                    |x| x.get::<_, i64>(0),
                )?
                > 0;
        tx.prepare_cached("INSERT OR IGNORE INTO respond_answer
               (at, channel, inbound, address, person, lineage, version, kind, people, shelter, note, text, repeat_of)
             VALUES (?1, 'sms', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")?.execute(
            params![
                crate::store::stamp(r.at),
                r.id,
                address,
                last.as_ref().map(|l| &l.person),
                last.as_ref().map(|l| &l.lineage),
                last.as_ref().map(|l| l.version),
                kind,
                people,
                shelter,
                note,
                r.text,
                repeat_of
            ],
        )?;
        let answer = tx.last_insert_rowid()?;
        crate::store::audit::append(
            tx,
            &crate::store::audit::Entry {
                at: r.at.to_zoned(jiff::tz::TimeZone::UTC),
                actor: "respond".into(),
                kind: format!("answer.{kind}"),
                subject: last
                    .as_ref()
                    .map_or_else(|| address.clone(), |l| l.person.clone()),
                detail: serde_json::json!({
                    "channel": "sms", "text": r.text, "lineage": last.as_ref().map(|l| &l.lineage),
                    "people": people, "repeat_of": repeat_of,
                    "incomplete": r.incomplete,
                }),
            },
        )?;
        if repeat_of.is_some() {
            out.repeats += 1;
            continue;
        }
        let Some(last) = last else {
            out.strangers += 1;
            tracing::warn!(number = %address, text = %r.text, "a reply from a number no warning went to: kept for the duty officer");
            continue;
        };
        if kind == "unknown" {
            out.messages += answer_back(
                tx,
                (&last, &address),
                &format!("sms/codes.{lang}"),
                minijinja::context! { office => &policy.office, exercise => policy.exercise },
                format!("codes:{answer}"),
                r.at,
            )?;
            tracing::warn!(person = %last.person, text = %r.text, "a reply that was not understood: kept for the duty officer, the codes sent back");
            // Still an answer: the person is awake.
        } else {
            out.understood += 1;
        }
        // A reply answers the warnings the person's last text carried (several, when that
        // text merged them), and no other.
        let mut about: Vec<String> = outbox::carried(tx, last.message)?
            .into_iter()
            .filter(|c| c.person == last.person)
            .map(|c| c.lineage)
            .collect();
        if about.is_empty() {
            about.push(last.lineage.clone());
        }
        about.sort();
        about.dedup();
        let done = act(
            tx,
            &Acted {
                kind,
                people,
                shelter: shelter.as_deref(),
                refused: None,
                note: note.as_deref(),
                mobile: &address,
                about: &about,
                confirmed: confirms,
                place: None,
            },
            &last,
            answer,
            r.at,
            (reg, settings, policy),
        )?;
        out.closed += done.closed;
        out.messages += done.messages;
        if let Some(why) = done.unbooked {
            let places: Vec<String> = match &why {
                Unbooked::Which(p) => p.iter().map(|p| p.1.clone()).collect(),
                Unbooked::NotLifted => Vec::new(),
            };
            out.messages += answer_back(
                tx,
                (&last, &address),
                &format!("sms/unbooked.{lang}"),
                minijinja::context! {
                    office => &policy.office, exercise => policy.exercise, kind => kind,
                    reason => why.as_str(), places => places, people => people,
                },
                format!("unbooked:{answer}"),
                r.at,
            )?;
        }
        if let Some(held) = done.held {
            out.messages += answer_back(
                tx,
                (&last, &address),
                &format!("sms/confirm.{lang}"),
                minijinja::context! {
                    office => &policy.office, exercise => policy.exercise, kind => kind,
                    people => held.people,
                    place => &held.place, registered => held.registered,
                },
                format!("confirm:{answer}"),
                r.at,
            )?;
        }
    }
    if let Some(r) = replies.last() {
        super::advance(tx, CURSOR, r.id)?;
    }
    Ok(out)
}

/// What a key pressed on a call means, as `templates/voice/prompt.{lang}.j2` tells the
/// person: 1 received, 2 at my post, 3 I need help. Any other key is kept for the office as
/// not understood (the person is awake all the same).
pub fn key_meaning(key: &str) -> &'static str {
    match key {
        "1" => "ack",
        "2" => "post",
        "3" => "help",
        _ => "unknown",
    }
}

const KEYS_CURSOR: &str = "dispatch_call";

/// Read up to `limit` keys pressed on calls since the last pass and act on them, in `tx`: each
/// is an answer (channel `call`) to the warning its call was about, and to no other, with the
/// same effects as an SMS reply of the same meaning (calls closed; help to the town and
/// county).
pub fn keys_once(
    tx: &Tx<'_>,
    limit: usize,
    reg: &Registry,
    settings: &RespondSettings,
    policy: &Policy,
) -> anyhow::Result<Intake> {
    let mut out = Intake::default();
    let after = super::cursor(tx, KEYS_CURSOR)?;
    let keys = outbox::keys_after(tx, after, limit)?;
    for k in &keys {
        out.read += 1;
        let kind = key_meaning(&k.key);
        let last = &k.about;
        tx.prepare_cached(
            "INSERT INTO respond_answer (at, channel, address, person, lineage, version, kind, text)
             VALUES (?1, 'call', ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            crate::store::stamp(k.at),
            k.address,
            last.person,
            last.lineage,
            last.version,
            kind,
            k.key
        ])?;
        let answer = tx.last_insert_rowid()?;
        crate::store::audit::append(
            tx,
            &crate::store::audit::Entry {
                at: k.at.to_zoned(jiff::tz::TimeZone::UTC),
                actor: "respond".into(),
                kind: format!("answer.{kind}"),
                subject: last.person.clone(),
                detail: serde_json::json!({
                    "channel": "call", "key": k.key, "lineage": last.lineage,
                    "message": last.message, "ring": k.id,
                }),
            },
        )?;
        if kind == "unknown" {
            tracing::warn!(person = %last.person, key = %k.key, "a key on a call that means nothing: kept for the duty officer");
        } else {
            out.understood += 1;
        }
        let done = act(
            tx,
            &Acted {
                kind,
                people: None,
                shelter: None,
                refused: None,
                note: None,
                mobile: &k.address,
                about: std::slice::from_ref(&last.lineage),
                confirmed: false,
                place: None,
            },
            last,
            answer,
            k.at,
            (reg, settings, policy),
        )?;
        out.closed += done.closed;
        out.messages += done.messages;
    }
    if let Some(k) = keys.last() {
        super::advance(tx, KEYS_CURSOR, k.id)?;
    }
    Ok(out)
}

/// A text back to the sender alone (the codes, a number to confirm, why a report was not
/// counted), about the warning their last text carried, rendered from `template`; it ranks
/// with the codes sent back. Returns the messages queued (0 or 1).
fn answer_back(
    tx: &Tx<'_>,
    (last, address): (&outbox::LastSent, &str),
    template: &str,
    ctx: minijinja::Value,
    purpose: String,
    at: Timestamp,
) -> anyhow::Result<usize> {
    let text = crate::templates::env()?
        .get_template(template)?
        .render(ctx)?;
    let n = notice_about(
        last,
        Tier::Blue,
        (&last.person, address),
        text.trim(),
        purpose,
        true,
    );
    Ok(usize::from(outbox::notice(tx, &n, at)?.is_some()))
}

/// What an understood answer said, for [`act`].
struct Acted<'a> {
    kind: &'a str,
    people: Option<u32>,
    shelter: Option<&'a str>,
    refused: Option<u32>,
    note: Option<&'a str>,
    /// The number it came from (or the person's, for a link).
    mobile: &'a str,
    /// The warnings it answers: a link's own; for an SMS reply, those the person's last text
    /// carried (ARCHITECTURE.md, "An answer acts only on what it answers").
    about: &'a [String],
    /// The sender confirmed a number beyond the place's registered figure.
    confirmed: bool,
    /// The place the report is for, when the sender named it (a link's place field).
    place: Option<&'a str>,
}

/// What an answer did.
struct Done {
    /// Calls closed.
    closed: usize,
    /// Messages queued.
    messages: usize,
    /// The number was beyond the registered figure and waits for its confirmation.
    held: Option<Held>,
    /// The report was kept but booked for no place, and why.
    unbooked: Option<Unbooked>,
}

/// Why a report of people was kept and not booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unbooked {
    /// People back home, reported while the warning is still in force.
    NotLifted,
    /// A town or county officer did not say which place (or named one that is not theirs
    /// under this warning): the places they may name.
    Which(Vec<(String, String)>),
}

impl Unbooked {
    fn as_str(&self) -> &'static str {
        match self {
            Unbooked::NotLifted => "not_lifted",
            Unbooked::Which(_) => "which_place",
        }
    }
}

/// Where a report of people goes.
enum Placing<'a> {
    /// The person has no call for this warning.
    None,
    /// Kept, not booked.
    Unbooked(Unbooked),
    /// Booked for this place, with the shelter named (an officer's SMS names the place first).
    Place {
        target: String,
        shelter: Option<&'a str>,
    },
}

/// The place a report of people is for. A lead reports for the place of their own duty under
/// the warning (the broadest target: their village before its groups and sites, since a
/// village lead's figure counts them); a lead holding several villages under it, and a town or
/// county officer (for a place inside their unit), name it: on the page they choose it, by
/// SMS they write its name first (`3 35 溪口村 溪口小学`); with one such place it needs no
/// naming. Never for a unit code, which is no place anybody moves from.
fn report_place<'a>(
    tx: &Tx<'_>,
    reg: &Registry,
    lineage: &str,
    person: &str,
    named: Option<&str>,
    shelter: Option<&'a str>,
) -> anyhow::Result<Placing<'a>> {
    let own: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT target, level FROM respond_call WHERE lineage = ?1 AND person = ?2
             GROUP BY target, level
             ORDER BY CASE level WHEN 'village' THEN 0 WHEN 'group' THEN 1 WHEN 'site' THEN 2
                      WHEN 'town' THEN 3 ELSE 4 END, target",
        )?
        .query_map(params![lineage, person], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    // By SMS the place's name comes first, the shelter after it.
    let (word, rest) = match (named, shelter) {
        (Some(n), _) => (Some(n.trim()), shelter),
        (None, Some(s)) => {
            let s = s.trim();
            match s.split_once(char::is_whitespace) {
                Some((w, r)) => (Some(w), Some(r.trim()).filter(|r| !r.is_empty())),
                None => (Some(s), None),
            }
        }
        (None, None) => (None, None),
    };
    let leads: Vec<&str> = own
        .iter()
        .filter(|(_, level)| matches!(level.as_str(), "village" | "group" | "site"))
        .map(|(t, _)| t.as_str())
        .collect();
    if let Some(first) = leads.first() {
        // The places of their own duty, as ledger rows: with one, the report is for it (its
        // broadest target: the village before its groups and sites); with several, they say
        // which, as an officer does.
        let mut rows: Vec<String> = leads
            .iter()
            .map(|t| super::ledger::row_of(reg, t))
            .collect();
        rows.sort();
        rows.dedup();
        if rows.len() <= 1 {
            let chosen = leads
                .iter()
                .find(|t| {
                    named.is_some_and(|n| n.trim() == **t || n.trim() == super::place_name(reg, t))
                })
                .unwrap_or(first);
            // `3 35 溪口村` from the lead of 溪口村 names their own place, not a shelter.
            let own_place = word.is_some_and(|w| {
                rows.iter()
                    .chain(
                        leads
                            .iter()
                            .map(|t| t.to_string())
                            .collect::<Vec<_>>()
                            .iter(),
                    )
                    .any(|r| w == r.as_str() || w == super::place_name(reg, r))
            });
            return Ok(Placing::Place {
                target: chosen.to_string(),
                shelter: if own_place && named.is_none() {
                    rest
                } else {
                    shelter
                },
            });
        }
        let hit = word.and_then(|w| {
            leads
                .iter()
                .find(|t| w == **t || w == super::place_name(reg, t))
                .copied()
                .or_else(|| {
                    rows.iter()
                        .find(|r| w == r.as_str() || w == super::place_name(reg, r))
                        .and_then(|r| leads.iter().find(|t| super::ledger::row_of(reg, t) == *r))
                        .copied()
                })
        });
        return Ok(match hit {
            Some(t) => Placing::Place {
                target: t.to_string(),
                shelter: rest,
            },
            None => Placing::Unbooked(Unbooked::Which(
                rows.into_iter()
                    .map(|r| {
                        let name = super::place_name(reg, &r);
                        (r, name)
                    })
                    .collect(),
            )),
        });
    }
    let units: Vec<&str> = own.iter().map(|(t, _)| t.as_str()).collect();
    if units.is_empty() {
        return Ok(Placing::None);
    }
    let places = places_under(tx, reg, lineage, &units)?;
    if let Some(w) = word
        && let Some((id, _)) = places.iter().find(|(id, name)| w == id || w == name)
    {
        return Ok(Placing::Place {
            target: id.clone(),
            shelter: rest,
        });
    }
    if places.len() == 1 && named.is_none() {
        return Ok(Placing::Place {
            target: places[0].0.clone(),
            shelter,
        });
    }
    Ok(Placing::Unbooked(Unbooked::Which(places)))
}

/// The places a person must name when reporting people under `lineage` (id, name): a lead's
/// several villages, an officer's places; empty when their report needs no place named.
pub fn places_to_name(
    c: &Conn<'_>,
    reg: &Registry,
    lineage: &str,
    person: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let calls: Vec<(String, String)> = c
        .prepare_cached(
            "SELECT DISTINCT target, level FROM respond_call WHERE lineage = ?1 AND person = ?2",
        )?
        .query_map(params![lineage, person], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    if !calls.is_empty()
        && calls
            .iter()
            .all(|(_, l)| matches!(l.as_str(), "town" | "county"))
    {
        let units: Vec<&str> = calls.iter().map(|(t, _)| t.as_str()).collect();
        let places = places_under(c, reg, lineage, &units)?;
        return Ok(if places.len() > 1 { places } else { Vec::new() });
    }
    Ok(lead_rows(reg, &calls))
}

/// A lead's places under a warning as ledger rows (id, name), when they hold more than one
/// (the page then asks which); empty with one.
pub(crate) fn lead_rows(reg: &Registry, calls: &[(String, String)]) -> Vec<(String, String)> {
    let mut rows: Vec<String> = calls
        .iter()
        .filter(|(_, level)| matches!(level.as_str(), "village" | "group" | "site"))
        .map(|(t, _)| super::ledger::row_of(reg, t))
        .collect();
    rows.sort();
    rows.dedup();
    if rows.len() < 2 {
        return Vec::new();
    }
    rows.into_iter()
        .map(|r| {
            let name = super::place_name(reg, &r);
            (r, name)
        })
        .collect()
}

/// The places (ledger rows: villages, and sites in no village) a warning called leads for
/// inside `units` (town or county codes), with their names: what an officer may report for.
pub(crate) fn places_under(
    c: &Conn<'_>,
    reg: &Registry,
    lineage: &str,
    units: &[&str],
) -> anyhow::Result<Vec<(String, String)>> {
    let targets: Vec<String> = c
        .prepare_cached(
            "SELECT DISTINCT target FROM respond_call
             WHERE lineage = ?1 AND level IN ('village', 'group', 'site')",
        )?
        .query_map(params![lineage], |r| r.get(0))?
        .collect::<crate::store::sql::Result<_>>()?;
    let mut rows: Vec<String> = targets
        .iter()
        .map(|t| super::ledger::row_of(reg, t))
        .filter(|row| {
            let code = reg
                .site(row)
                .and_then(|s| s.villages.first().cloned())
                .unwrap_or_else(|| row.clone());
            units.iter().any(|u| code.starts_with(u))
        })
        .collect();
    rows.sort();
    rows.dedup();
    Ok(rows
        .into_iter()
        .map(|r| {
            let name = super::place_name(reg, &r);
            (r, name)
        })
        .collect())
}

/// A number held back (see [`Done::held`]).
pub(crate) struct Held {
    pub people: u32,
    pub registered: u32,
    pub place: String,
}

/// The effects of an answer, the same whether it came by SMS or by link: the person's calls
/// closed; an evacuation or return report kept; a shelter crossing 90 % told to the town and
/// county; a help request sent to them. A number beyond the place's registered figure is held
/// until its sender confirms it (the calls are answered all the same: the person is awake),
/// and once confirmed it is counted and flagged for the office.
fn act(
    tx: &Tx<'_>,
    a: &Acted<'_>,
    last: &outbox::LastSent,
    answer: i64,
    at: Timestamp,
    (reg, settings, policy): (&Registry, &RespondSettings, &Policy),
) -> anyhow::Result<Done> {
    let closed = calls::answered(tx, &last.person, a.about, answer, at, settings)?;
    let mut messages = 0;
    let mut held = None;
    let mut unbooked = None;
    // Only a report of people moved or back home books people (a number posted with any
    // other answer is kept in the answer's record and acts on nothing).
    let people = a.people.filter(|_| matches!(a.kind, "moved" | "returned"));
    if let Some(n) = people {
        let lifted = crate::correlate::store::lifted(tx, &last.lineage)?;
        let placing = if a.kind == "returned" && !lifted {
            // People go home when the warning is lifted, not before (ARCHITECTURE.md, "The
            // evacuation ledger"): a return reported early is kept, answered, not booked.
            Placing::Unbooked(Unbooked::NotLifted)
        } else {
            report_place(tx, reg, &last.lineage, &last.person, a.place, a.shelter)?
        };
        match placing {
            Placing::None => {}
            Placing::Unbooked(why) => {
                tracing::warn!(
                    person = %last.person, kind = a.kind, people = n, reason = why.as_str(),
                    "a report not booked: kept for the duty officer, its sender told why"
                );
                unbooked = Some(why);
            }
            Placing::Place { target, shelter } => {
                let registered = super::registered_to_move(reg, &target);
                let beyond = (n > registered).then_some(registered);
                if beyond.is_some() && !a.confirmed {
                    tx.prepare_cached("UPDATE respond_answer SET held = ?2 WHERE id = ?1")?
                        .execute(params![answer, registered])?;
                    tracing::warn!(
                        person = %last.person, place = %target, people = n, registered,
                        "a report beyond the registered figure: held until its sender confirms it"
                    );
                    held = Some(Held {
                        people: n,
                        registered,
                        place: super::place_name(reg, &target),
                    });
                } else if a.kind == "returned" {
                    evacuation(
                        tx,
                        last,
                        &target,
                        Evacuated::Returned(n),
                        beyond,
                        answer,
                        at,
                    )?;
                } else {
                    evacuation(
                        tx,
                        last,
                        &target,
                        Evacuated::Moved(n, shelter, a.refused),
                        beyond,
                        answer,
                        at,
                    )?;
                    if let Some(s) = shelter {
                        messages += super::shelters::check(tx, reg, policy, last, s, at)?;
                    }
                }
            }
        }
    }
    if a.kind == "help" {
        messages += help(
            tx,
            reg,
            (settings, policy),
            last,
            a.mobile,
            a.note,
            answer,
            at,
        )?;
    }
    Ok(Done {
        closed,
        messages,
        held,
        unbooked,
    })
}

/// A text to (person, mobile) about the warning `last` belongs to.
fn notice_about(
    last: &outbox::LastSent,
    tier: Tier,
    (person, mobile): (&str, &str),
    text: &str,
    purpose: String,
    chase: bool,
) -> Notice {
    Notice {
        decision: last.decision,
        lineage: last.lineage.clone(),
        version: last.version as u32,
        hazard: last
            .lineage
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string(),
        tier,
        person: person.to_string(),
        mobile: mobile.to_string(),
        text: text.to_string(),
        purpose,
        chase,
    }
}

/// Text every duty person of the town and of the county over `place` (a village, site or
/// group), about the warning `last` belongs to; `purpose` (with each duty's role) keeps each
/// notice once. Returns the messages queued.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tell_units(
    tx: &Tx<'_>,
    reg: &Registry,
    last: &outbox::LastSent,
    place: &str,
    tier: Tier,
    text: &str,
    (purpose, chase): (&str, bool),
    at: Timestamp,
) -> anyhow::Result<usize> {
    let (town, county) = calls::units_over(reg, place);
    let mut sent = 0;
    for unit in [town, county].into_iter().flatten() {
        for (duty, person) in reg.duties_for(&unit) {
            let Some(p) = person else { continue };
            let n = notice_about(
                last,
                tier,
                (&p.id, &p.mobile),
                text,
                format!("{purpose}:{}", duty.role),
                chase,
            );
            sent += usize::from(outbox::notice(tx, &n, at)?.is_some());
        }
    }
    Ok(sent)
}

/// Need help: to every duty person of the town and the county over the person's places, at
/// most once per (person, warning) in `help_coalesce_mins` and for at most `help_per_hour`
/// persons per warning in an hour; every request is kept for the office either way (the
/// board lists them). Anyone holding a link can ask, so a request can never become a flood of
/// official texts: the notices rank below the warnings of their tier, the per-person cap holds
/// them, and the asker's own words are quoted only in a marked field, cut short, with long
/// digit runs masked (a text from the office must not carry a number as if the office gave
/// it). Returns the messages queued.
#[allow(clippy::too_many_arguments)]
fn help(
    tx: &Tx<'_>,
    reg: &Registry,
    (settings, policy): (&RespondSettings, &Policy),
    last: &outbox::LastSent,
    address: &str,
    note: Option<&str>,
    answer: i64,
    at: Timestamp,
) -> anyhow::Result<usize> {
    let lang = crate::templates::lang(&policy.lang);
    let (name, role, target, tier) = match own_call(tx, &last.lineage, &last.person)? {
        Some(c) => (c.name, c.role, c.target, c.tier),
        None => {
            let p = reg.person(&last.person);
            (
                p.map(|p| p.name.clone()).unwrap_or_default(),
                String::new(),
                p.map(|p| p.unit.clone()).unwrap_or_default(),
                "red".into(),
            )
        }
    };
    let place = super::place_name(reg, &target);
    let window = SignedDuration::from_mins(i64::from(settings.help_coalesce_mins));
    let earlier = help_notified(tx, &last.lineage, Some(&last.person), at - window)?;
    if earlier > 0 {
        tracing::warn!(person = %last.person, place = %place, "help asked again: kept for the office, the officers were told already");
        return Ok(0);
    }
    let hour = help_notified(tx, &last.lineage, None, at - SignedDuration::from_hours(1))?;
    if hour >= i64::from(settings.help_per_hour) {
        tracing::error!(person = %last.person, place = %place, "NEED HELP: kept for the office; {hour} requests about this warning were texted in the last hour already");
        return Ok(0);
    }
    let quote = note.map(crate::text::quote).filter(|q| !q.is_empty());
    let text = crate::templates::env()?
        .get_template(&format!("sms/assist.{lang}"))?
        .render(minijinja::context! {
            office => &policy.office, exercise => policy.exercise, name => &name, role => &role,
            place => &place, mobile => address, quote => quote,
        })?;
    let sent = tell_units(
        tx,
        reg,
        last,
        &target,
        Tier::parse(&tier).unwrap_or(Tier::Red),
        text.trim(),
        (&format!("help:{}", last.person), false),
        at,
    )?;
    if sent > 0 {
        mark_notified(tx, answer)?;
    }
    tracing::error!(person = %last.person, place = %place, note = ?note, "NEED HELP: sent to {sent} duty person(s) of the town and county");
    Ok(sent)
}

/// Help requests about `lineage` (by `person`, or by anyone) since `since` that were passed on
/// to the officers.
fn help_notified(
    tx: &Tx<'_>,
    lineage: &str,
    person: Option<&str>,
    since: Timestamp,
) -> anyhow::Result<i64> {
    Ok(tx
        .prepare_cached(
            "SELECT count(*) FROM respond_answer WHERE kind = 'help' AND notified = 1
           AND lineage = ?1 AND (CAST(?2 AS TEXT) IS NULL OR person = ?2) AND at >= ?3",
        )?
        .query_row(params![lineage, person, crate::store::stamp(since)], |r| {
            r.get(0)
        })?)
}

fn mark_notified(tx: &Tx<'_>, answer: i64) -> anyhow::Result<()> {
    tx.prepare_cached("UPDATE respond_answer SET notified = 1 WHERE id = ?1")?
        .execute(params![answer])?;
    Ok(())
}

/// An answer given on a check-in page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkAnswer {
    /// ack | post | moved | help | returned.
    pub kind: String,
    /// moved: how many so far.
    pub people: Option<u32>,
    /// moved: to which shelter.
    pub shelter: Option<String>,
    /// moved: how many refuse or cannot move.
    pub refused: Option<u32>,
    /// Free words (help, or anything added).
    pub note: Option<String>,
    /// post: where they are, when the phone said.
    pub location: Option<(f64, f64)>,
    /// moved, returned: the sender confirmed a number beyond the registered figure (the
    /// page's confirm step).
    pub confirmed: bool,
    /// moved, returned: the place reported for (a town or county officer chooses it).
    pub place: Option<String>,
}

/// What became of an answer from a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutcome {
    /// Recorded, with its id, and acted on.
    Recorded(i64),
    /// The same answer within ten minutes (a double tap): kept once.
    Repeat,
    /// The link's warning has been lifted: only people back home can be reported on it now.
    Lifted,
    /// The number is beyond what the place registered: recorded (the call answered) but not
    /// counted until the sender confirms it on the page's confirm step.
    Confirm {
        /// The number given.
        people: u32,
        /// The place's registered figure.
        registered: u32,
    },
    /// People back home, while the warning is still in force: recorded, not counted.
    NotLifted,
    /// An officer's report that names no place of theirs under this warning: recorded, not
    /// counted; the places they may choose from (id, name).
    Which(Vec<(String, String)>),
}

/// The answers a link may give.
pub const LINK_KINDS: [&str; 5] = ["ack", "post", "moved", "help", "returned"];

/// Record an answer from a check-in link (already checked: the token is valid and current),
/// with the same effects as the SMS reply — calls closed, evacuation, help to the officers —
/// on the link's own warning only. Once that warning is lifted, the link can still report
/// people back home, nothing else.
#[allow(clippy::too_many_arguments)]
pub fn from_link(
    tx: &Tx<'_>,
    link: &crate::dispatch::link::Link,
    a: &LinkAnswer,
    at: Timestamp,
    reg: &Registry,
    settings: &RespondSettings,
    policy: &Policy,
) -> anyhow::Result<LinkOutcome> {
    if !LINK_KINDS.contains(&a.kind.as_str()) {
        anyhow::bail!("unknown answer {:?}", a.kind);
    }
    if a.kind != "returned" && crate::correlate::store::lifted(tx, &link.lineage)? {
        return Ok(LinkOutcome::Lifted);
    }
    let mut text = a.kind.clone();
    if let Some(n) = a.people {
        text.push_str(&format!(" people={n}"));
    }
    if let Some(s) = &a.shelter {
        text.push_str(&format!(" shelter={s}"));
    }
    if let Some(r) = a.refused {
        text.push_str(&format!(" refused={r}"));
    }
    if let Some((lat, lon)) = a.location {
        text.push_str(&format!(" at={lat:.5},{lon:.5}"));
    }
    if let Some(p) = &a.place {
        text.push_str(&format!(" place={p}"));
    }
    if let Some(n) = &a.note {
        text.push_str(&format!(" note={n}"));
    }
    if a.confirmed {
        text.push_str(" confirmed");
    }
    let since = crate::store::stamp(at - REPEAT_WINDOW);
    let repeat: Option<(i64, Option<u32>)> = tx
        .query_row(
            "SELECT id, held FROM respond_answer WHERE channel = 'link' AND person = ?1 AND lineage = ?2
               AND text = ?3 AND at >= ?4 ORDER BY id LIMIT 1",
            params![link.person, link.lineage, text, since],
            |x| Ok((x.get(0)?, x.get(1)?)),
        )
        .optional()?;
    match (repeat, a.people) {
        // A double tap on a number still waiting for its confirmation: ask again.
        (Some((_, Some(registered))), Some(people)) => {
            return Ok(LinkOutcome::Confirm { people, registered });
        }
        (Some(_), _) => return Ok(LinkOutcome::Repeat),
        (None, _) => {}
    }
    tx.prepare_cached("INSERT INTO respond_answer (at, channel, person, lineage, version, kind, people, shelter, note, text)
         VALUES (?1, 'link', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?.execute(
        params![
            crate::store::stamp(at),
            link.person,
            link.lineage,
            link.version,
            a.kind,
            a.people,
            a.shelter,
            a.note,
            text
        ],
    )?;
    let answer = tx.last_insert_rowid()?;
    crate::store::audit::append(
        tx,
        &crate::store::audit::Entry {
            at: at.to_zoned(jiff::tz::TimeZone::UTC),
            actor: "respond".into(),
            kind: format!("answer.{}", a.kind),
            subject: link.person.clone(),
            detail: serde_json::json!({"channel": "link", "lineage": link.lineage, "text": text}),
        },
    )?;
    let mobile = own_call(tx, &link.lineage, &link.person)?
        .map(|c| c.mobile)
        .unwrap_or_default();
    let last = outbox::LastSent {
        message: link.message,
        person: link.person.clone(),
        decision: link.decision,
        lineage: link.lineage.clone(),
        version: link.version,
        at,
    };
    let done = act(
        tx,
        &Acted {
            kind: &a.kind,
            people: a.people,
            shelter: a.shelter.as_deref(),
            refused: a.refused,
            note: a.note.as_deref(),
            mobile: &mobile,
            about: std::slice::from_ref(&link.lineage),
            confirmed: a.confirmed,
            place: a.place.as_deref(),
        },
        &last,
        answer,
        at,
        (reg, settings, policy),
    )?;
    Ok(match (done.held, done.unbooked) {
        (Some(h), _) => LinkOutcome::Confirm {
            people: h.people,
            registered: h.registered,
        },
        (None, Some(Unbooked::NotLifted)) => LinkOutcome::NotLifted,
        (None, Some(Unbooked::Which(places))) => LinkOutcome::Which(places),
        (None, None) => LinkOutcome::Recorded(answer),
    })
}

/// An evacuation report as a page shows it: (people, shelter, refused).
pub type Moved = (i64, Option<String>, Option<i64>);

/// What a check-in page shows its person: the warning in words and what they reported.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PageState {
    /// The warning's words (places, shelters, tier, action).
    pub words: Option<outbox::Words>,
    /// Their name.
    pub name: String,
    /// The place they answer for (its name).
    pub place: String,
    /// Their call: open | answered | covered | superseded | lifted | silent.
    pub call: String,
    /// Their latest answers by kind (ack, post, moved, help).
    pub answered: Vec<String>,
    /// Their latest evacuation report: (people, shelter, refused).
    pub moved: Option<Moved>,
    /// The warning has been lifted: the page asks how many are back home (解除转移).
    pub lifted: bool,
    /// Their latest return report.
    pub returned: Option<i64>,
    /// A town or county officer's places under this warning (id, name): they report for the
    /// one they choose.
    pub places: Vec<(String, String)>,
}

/// Read the page state of a link's person and warning.
pub fn page_state(
    c: &crate::store::sql::Conn<'_>,
    link: &crate::dispatch::link::Link,
    reg: &Registry,
) -> anyhow::Result<PageState> {
    let mut st = PageState::default();
    if let Some(call) = own_call(c, &link.lineage, &link.person)? {
        st.place = super::place_name(reg, &call.target);
        st.name = call.name;
        st.call = call.state;
        st.words = serde_json::from_str(&call.words).ok();
    }
    let mut q = c.prepare_cached(
        "SELECT DISTINCT kind FROM respond_answer WHERE person = ?1 AND lineage = ?2 ORDER BY kind",
    )?;
    st.answered = q
        .query_map(params![link.person, link.lineage], |r| r.get(0))?
        .collect::<crate::store::sql::Result<_>>()?;
    let latest: Option<(Moved, Option<i64>)> = c
        .query_row(
            "SELECT people, shelter, refused, returned FROM respond_evacuation
             WHERE lineage = ?1 AND person = ?2 ORDER BY at DESC LIMIT 1",
            params![link.lineage, link.person],
            |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)),
        )
        .optional()?;
    st.moved = latest.as_ref().map(|l| l.0.clone()).filter(|m| m.0 > 0);
    st.returned = latest.and_then(|l| l.1);
    st.lifted = crate::correlate::store::lifted(c, &link.lineage)?;
    let levels: Vec<(String, String)> = c
        .prepare_cached(
            "SELECT DISTINCT target, level FROM respond_call WHERE lineage = ?1 AND person = ?2",
        )?
        .query_map(params![link.lineage, link.person], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<crate::store::sql::Result<_>>()?;
    if !levels.is_empty()
        && levels
            .iter()
            .all(|(_, l)| matches!(l.as_str(), "town" | "county"))
    {
        let units: Vec<&str> = levels.iter().map(|(t, _)| t.as_str()).collect();
        st.places = places_under(c, reg, &link.lineage, &units)?;
    } else {
        st.places = lead_rows(reg, &levels);
    }
    Ok(st)
}

/// A person's own call for a warning: the most specific place they answer for (site, group,
/// village, then town and county), the latest version.
struct OwnCall {
    target: String,
    name: String,
    role: String,
    tier: String,
    state: String,
    words: String,
    mobile: String,
}

fn own_call(
    c: &crate::store::sql::Conn<'_>,
    lineage: &str,
    person: &str,
) -> anyhow::Result<Option<OwnCall>> {
    Ok(c.prepare_cached(
        "SELECT target, name, role, tier, state, words, mobile FROM respond_call
         WHERE lineage = ?1 AND person = ?2
         ORDER BY CASE level WHEN 'site' THEN 0 WHEN 'group' THEN 1 WHEN 'village' THEN 2
                  WHEN 'town' THEN 3 ELSE 4 END, id DESC LIMIT 1",
    )?
    .query_row(params![lineage, person], |r| {
        Ok(OwnCall {
            target: r.get(0)?,
            name: r.get(1)?,
            role: r.get(2)?,
            tier: r.get(3)?,
            state: r.get(4)?,
            words: r.get(5)?,
            mobile: r.get(6)?,
        })
    })
    .optional()?)
}

/// What an evacuation report says: people moved (with the shelter and refusals, when given),
/// or after the lift, people back home.
enum Evacuated<'a> {
    Moved(u32, Option<&'a str>, Option<u32>),
    Returned(u32),
}

/// An evacuation or return report: the latest running total for the person's own place in
/// this warning (a report does not say which place; one person's report is counted once, a
/// repeat never twice).
fn evacuation(
    tx: &Tx<'_>,
    last: &outbox::LastSent,
    target: &str,
    e: Evacuated<'_>,
    beyond: Option<u32>,
    answer: i64,
    at: Timestamp,
) -> anyhow::Result<()> {
    let (moved, shelter, refused, returned) = match e {
        Evacuated::Moved(n, s, r) => (Some(n), s, r, None),
        Evacuated::Returned(n) => (None, None, None, Some(n)),
    };
    tx.prepare_cached(
        "INSERT INTO respond_evacuation
           (lineage, target, person, people, shelter, refused, returned, at, answer, beyond)
         VALUES (?1, ?2, ?3, ifnull(?4, 0), ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (lineage, target, person) DO UPDATE SET
           people = coalesce(?4, respond_evacuation.people),
           shelter = coalesce(?5, respond_evacuation.shelter),
           refused = coalesce(?6, respond_evacuation.refused),
           returned = coalesce(?7, respond_evacuation.returned),
           at = ?8, answer = ?9, beyond = ?10",
    )?
    .execute(params![
        last.lineage,
        target,
        last.person,
        moved,
        shelter,
        refused,
        returned,
        crate::store::stamp(at),
        answer,
        beyond
    ])?;
    Ok(())
}

/// One answer as the record of a drill shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRecord {
    /// Row id.
    pub id: i64,
    /// When (stored stamp).
    pub at: String,
    /// `sms` or `link`.
    pub channel: String,
    /// The number it came from (SMS).
    pub address: Option<String>,
    /// Who, when known.
    pub person: Option<String>,
    /// The warning it answers.
    pub lineage: Option<String>,
    /// Its version.
    pub version: Option<i64>,
    /// ack, post, moved, help, returned, unknown.
    pub kind: String,
    /// People (moved, returned).
    pub people: Option<i64>,
    /// Shelter named.
    pub shelter: Option<String>,
    /// Word for word.
    pub text: String,
    /// A repeat of this earlier answer (ignored).
    pub repeat_of: Option<i64>,
}

/// Every answer, in order.
pub fn all_answers(c: &Conn<'_>) -> anyhow::Result<Vec<AnswerRecord>> {
    Ok(c.prepare(
        "SELECT id, at, channel, address, person, lineage, version, kind, people, shelter, text,
                repeat_of
         FROM respond_answer ORDER BY id",
    )?
    .query_map((), |r| {
        Ok(AnswerRecord {
            id: r.get("id")?,
            at: r.get("at")?,
            channel: r.get("channel")?,
            address: r.get("address")?,
            person: r.get("person")?,
            lineage: r.get("lineage")?,
            version: r.get("version")?,
            kind: r.get("kind")?,
            people: r.get("people")?,
            shelter: r.get("shelter")?,
            text: r.get("text")?,
            repeat_of: r.get("repeat_of")?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the call's prompt tells the person is what their key is taken to mean, in every
    /// language the prompt is spoken in.
    #[test]
    fn the_prompt_and_the_keys_agree() {
        let zh = crate::dispatch::voice::prompt_words("zh-CN").unwrap();
        for (key, said) in [
            ("1", "收到请按1"),
            ("2", "已到岗请按2"),
            ("3", "需要帮助请按3"),
        ] {
            assert!(zh.contains(said), "{zh}");
            let meaning = key_meaning(key);
            assert_eq!(
                (
                    said.starts_with("收到"),
                    said.starts_with("已到岗"),
                    said.starts_with("需要帮助")
                ),
                (meaning == "ack", meaning == "post", meaning == "help"),
                "{key}"
            );
        }
        let en = crate::dispatch::voice::prompt_words("en").unwrap();
        assert!(
            en.contains("received this, press 1")
                && en.contains("post, press 2")
                && en.contains("help, press 3"),
            "{en}"
        );
        assert_eq!(key_meaning("9"), "unknown");
        assert_eq!(key_meaning("#"), "unknown");
    }
}
