//! The duty office's board (一图一表): for every warning in force, village by village and site
//! by site, who was told, who answered, who is at their post, how many must move and how many
//! have, which loudspeakers played, and how full the shelters are. The office page, its JSON
//! API, its CSV export and the after-action report all read this one structure, so the figures
//! they show cannot disagree.
//!
//! It is read-only and built from each stage's published functions (correlate's lineages,
//! dispatch's delivery per person, broadcast's plays per village) and respond's own tables.
//! It takes a handful of grouped queries per warning, not one per village: 250 villages render
//! in a few milliseconds (bench/README.md).

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::correlate::PlaceKind;
use crate::correlate::store as cstore;
use crate::dispatch::broadcast::jobs;
use crate::dispatch::outbox;
use crate::registry::Registry;

/// How a place stands on answering, worst first (the order the office wants to read them in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// Its ladder ran out with nobody answering: on the county's silent list.
    Silent,
    /// Called, nobody has answered yet, the ladder is still climbing.
    Waiting,
    /// Somebody responsible for it answered.
    Answered,
    /// Nobody there was called (no roster, or a routine update that does not ask again).
    Uncalled,
}

impl Answer {
    /// The word the office reads (templates carry the rest).
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Silent => "silent",
            Answer::Waiting => "waiting",
            Answer::Answered => "answered",
            Answer::Uncalled => "uncalled",
        }
    }
}

pub use crate::dispatch::broadcast::jobs::Plays;

/// One village under a warning: warned itself, or holding warned hazard sites, or with
/// responsible persons called. Sites are folded into the village they lie in (the first one a
/// site names), so a county map of villages shows everything and nobody is counted twice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Place {
    /// Village code (a site's id when the registry places it in no village).
    pub id: String,
    /// `village`, or `site` for a site in no village.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Warned hazard sites in it: (id, name, tier).
    pub sites: Vec<(String, String, String)>,
    /// Its town's code (9 digits).
    pub town: String,
    /// Its own tier.
    pub tier: String,
    /// Where it is, WGS 84 (lat, lon), for the map.
    pub point: Option<(f64, f64)>,
    /// Responsible persons called for it (or for its sites, groups).
    pub called: u32,
    /// Of those, whose warning SMS the SMSC accepted.
    pub sent: u32,
    /// Of those, whose handset confirmed delivery.
    pub delivered: u32,
    /// Of those, who answered (or were covered by a co-responsible's answer).
    pub answered: u32,
    /// Of those, on the silent list (and not answered since).
    pub silent: u32,
    /// Persons who reported at their post (到岗).
    pub at_post: u32,
    /// How the place stands.
    pub answer: Answer,
    /// People who must move (registry): the village's when it is warned itself, else those of
    /// its warned sites.
    pub to_move: u32,
    /// People reported moved (the latest running total of each person, summed).
    pub moved: u32,
    /// People reported refusing or unable to move.
    pub refused: u32,
    /// Reports here confirmed beyond the registered figure: counted, for the office to check
    /// with the village (待核实).
    pub to_check: u32,
    /// Loudspeakers.
    pub plays: Plays,
    /// First answer, if any (RFC 3339).
    pub first_answer: Option<String>,
}

impl Place {
    /// Whether people who must move have not all been reported moved.
    pub fn not_moved(&self) -> bool {
        self.moved + self.refused < self.to_move
    }
}

/// One warning in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// `hazard:area`.
    pub lineage: String,
    /// The hazard (snake_case).
    pub hazard: String,
    /// Tier in force.
    pub tier: String,
    /// The area in words.
    pub area_name: String,
    /// Version of the last message.
    pub version: u32,
    /// First issued (RFC 3339, local).
    pub issued: String,
    /// Officials only.
    pub restricted: bool,
    /// Villages and sites, worst answer first, then by tier.
    pub places: Vec<Place>,
    /// Town and county officers called: (called, answered, silent).
    pub officers: (u32, u32, u32),
    /// Totals over the places.
    pub totals: Totals,
}

/// Sums over places.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Places.
    pub places: u32,
    /// Places silent.
    pub silent: u32,
    /// Places answered.
    pub answered: u32,
    /// Persons at post.
    pub at_post: u32,
    /// People to move.
    pub to_move: u32,
    /// Moved.
    pub moved: u32,
    /// Refusing.
    pub refused: u32,
}

/// A shelter's load over all warnings in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shelter {
    /// Registry id (empty for a name the registry does not know).
    pub id: String,
    /// Name as reported.
    pub name: String,
    /// Capacity (0 when unknown).
    pub capacity: u32,
    /// People reported moved into it.
    pub occupants: u32,
    /// Over 90 % of capacity (or over capacity): find another one now.
    pub nearly_full: bool,
}

/// A lifted warning whose people are not all back home (解除转移), per reporting place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Returning {
    /// `hazard:area`.
    pub lineage: String,
    /// The hazard.
    pub hazard: String,
    /// When it was lifted (local).
    pub lifted: String,
    /// (place id, name, moved, returned), places with people still away first.
    pub places: Vec<(String, String, u32, u32)>,
    /// Moved in all.
    pub moved: u32,
    /// Back home in all.
    pub returned: u32,
}

/// The whole board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Board {
    /// When it was read (RFC 3339, local).
    pub generated: String,
    /// The warnings in force, most serious first.
    pub warnings: Vec<Warning>,
    /// Shelters with anyone reported in them, fullest first.
    pub shelters: Vec<Shelter>,
    /// Warnings lifted in the last 72 hours whose people are not all reported home.
    pub returning: Vec<Returning>,
    /// Totals over every warning.
    pub totals: Totals,
}

impl Board {
    /// A stable digest of what the office sees (not when it was read): the live page is told
    /// to refresh only when this changes.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let json = serde_json::to_string(&(&self.warnings, &self.shelters, &self.returning))
            .unwrap_or_default();
        json.hash(&mut h);
        h.finish()
    }
}

/// Which places to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Every place.
    #[default]
    All,
    /// Places on the silent list, or still waiting for an answer.
    Silent,
    /// Places where people must still move.
    NotMoved,
}

impl Filter {
    /// From a query value (`silent`, `unmoved`); anything else is every place.
    pub fn parse(s: &str) -> Filter {
        match s {
            "silent" => Filter::Silent,
            "unmoved" | "not_moved" => Filter::NotMoved,
            _ => Filter::All,
        }
    }

    fn keeps(self, p: &Place) -> bool {
        match self {
            Filter::All => true,
            Filter::Silent => matches!(p.answer, Answer::Silent | Answer::Waiting),
            Filter::NotMoved => p.not_moved(),
        }
    }
}

/// A village's row while the board is being gathered.
#[derive(Default)]
struct Row {
    tier: Option<crate::correlate::Tier>,
    warned_itself: bool,
    site_evacuate: u32,
    sites: Vec<(String, String, String)>,
    moved: u32,
    refused: u32,
    to_check: u32,
    /// Person → (answered or covered on any of their calls here, silent on one).
    persons: BTreeMap<String, (bool, bool)>,
    first_answer: Option<String>,
}

fn row<'a>(rows: &'a mut BTreeMap<String, Row>, village: &str) -> &'a mut Row {
    rows.entry(village.to_string()).or_default()
}

/// The village a call's or report's target lies in: a village itself, a site's first village,
/// a group's village (its code's first 12 digits).
pub(crate) fn village_of(reg: &Registry, target: &str) -> String {
    if reg.village(target).is_some() {
        return target.to_string();
    }
    if let Some(s) = reg.site(target) {
        return s
            .villages
            .first()
            .cloned()
            .unwrap_or_else(|| target.to_string());
    }
    if target.len() == 15
        && target.bytes().all(|b| b.is_ascii_digit())
        && let Some(v) = target.get(..12)
        && reg.village(v).is_some()
    {
        return v.to_string();
    }
    target.to_string()
}

/// A current call (a superseded one was asked again by a newer version).
struct CallRow {
    target: String,
    person: String,
    level: String,
    state: String,
    answered: Option<String>,
}

fn calls(c: &Connection, lineage: &str) -> anyhow::Result<Vec<CallRow>> {
    let mut q = c.prepare_cached(
        "SELECT target, person, level, state, answered FROM respond_call
         WHERE lineage = ?1 AND state NOT IN ('superseded', 'lifted', 'replaced')",
    )?;
    let rows = q.query_map(params![lineage], |r| {
        Ok(CallRow {
            target: r.get(0)?,
            person: r.get(1)?,
            level: r.get(2)?,
            state: r.get(3)?,
            answered: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Build the board as it stands.
pub fn read(
    c: &Connection,
    reg: &Registry,
    tz: &jiff::tz::TimeZone,
    filter: Filter,
) -> anyhow::Result<Board> {
    let local = |s: &str| super::local_time(s, tz);
    let mut warnings = Vec::new();
    let mut totals = Totals::default();
    for l in cstore::lineages(c)? {
        if l.places.is_empty() {
            continue;
        }
        let key = l.key();
        let post = at_post(c, &key)?;
        let delivery = outbox::delivery_by_person(c, &key)?;
        let plays = jobs::plays_by_village(c, &key)?;
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        // The warned places.
        for (id, held) in &l.places {
            match held.kind {
                PlaceKind::Village => {
                    let r = row(&mut rows, id);
                    r.tier = r.tier.max(Some(held.tier));
                    r.warned_itself = true;
                }
                PlaceKind::Site => {
                    let (village, name, evacuate) = match reg.site(id) {
                        Some(s) => (
                            s.villages.first().cloned().unwrap_or_else(|| id.clone()),
                            s.name.clone(),
                            s.evacuate,
                        ),
                        None => (id.clone(), id.clone(), 0),
                    };
                    let r = row(&mut rows, &village);
                    r.tier = r.tier.max(Some(held.tier));
                    r.site_evacuate += evacuate;
                    r.sites
                        .push((id.clone(), name, held.tier.as_str().to_string()));
                }
                PlaceKind::Unit => {}
            }
        }
        // Whom the warning called, by where they answer for.
        let mut officers = (0, 0, 0);
        for call in calls(c, &key)? {
            let (answered, silent) = (
                matches!(call.state.as_str(), "answered" | "covered"),
                call.state == "silent",
            );
            if matches!(call.level.as_str(), "county" | "town") {
                officers.0 += 1;
                officers.1 += u32::from(answered);
                officers.2 += u32::from(silent);
                continue;
            }
            // Counted in persons: one person called for a site and its village is one.
            let r = row(&mut rows, &village_of(reg, &call.target));
            if let Some(a) = call.answered
                && r.first_answer.as_ref().is_none_or(|f| a < *f)
            {
                r.first_answer = Some(a);
            }
            let e = r.persons.entry(call.person).or_default();
            e.0 |= answered;
            e.1 |= silent;
        }
        for (target, (moved, refused, to_check)) in evacuation(c, &key)? {
            let r = row(&mut rows, &village_of(reg, &target));
            r.moved += moved;
            r.refused += refused;
            r.to_check += to_check;
        }
        let tier_all = l.tier;
        let mut places = Vec::new();
        for (id, r) in rows {
            let (mut sent, mut delivered, mut posted) = (0, 0, 0);
            let (mut answered, mut silent) = (0, 0);
            for (p, (a, q)) in &r.persons {
                if let Some(d) = delivery.get(p) {
                    sent += u32::from(d.0);
                    delivered += u32::from(d.1);
                }
                posted += u32::from(post.contains_key(p));
                answered += u32::from(*a);
                silent += u32::from(*q && !*a);
            }
            let called = r.persons.len() as u32;
            let answer = if called == 0 {
                Answer::Uncalled
            } else if answered > 0 {
                Answer::Answered
            } else if silent > 0 {
                Answer::Silent
            } else {
                Answer::Waiting
            };
            let v = reg.village(&id);
            places.push(Place {
                kind: if v.is_some() || r.sites.is_empty() {
                    "village"
                } else {
                    "site"
                },
                name: v.map_or_else(
                    || r.sites.first().map_or_else(|| id.clone(), |s| s.1.clone()),
                    |v| v.name.clone(),
                ),
                town: v.map(|v| v.town.clone()).unwrap_or_default(),
                point: v.map(|v| (v.point.lat, v.point.lon)).or_else(|| {
                    r.sites
                        .first()
                        .and_then(|s| reg.site(&s.0))
                        .and_then(|s| reg.site_point(s))
                        .map(|(lon, lat)| (lat, lon))
                }),
                tier: r.tier.unwrap_or(tier_all).as_str().to_string(),
                to_move: if r.warned_itself {
                    v.map_or(0, |v| v.evacuate)
                } else {
                    r.site_evacuate
                },
                called,
                sent,
                delivered,
                answered,
                silent,
                at_post: posted,
                answer,
                moved: r.moved,
                refused: r.refused,
                to_check: r.to_check,
                plays: plays.get(&id).cloned().unwrap_or_default(),
                first_answer: r.first_answer.as_deref().map(&local),
                sites: r.sites,
                id,
            });
        }
        let mut w_totals = Totals::default();
        for p in &places {
            add(&mut w_totals, p);
        }
        places.retain(|p| filter.keeps(p));
        places.sort_by(|a, b| {
            a.answer
                .cmp(&b.answer)
                .then(b.tier_rank().cmp(&a.tier_rank()))
                .then(a.id.cmp(&b.id))
        });
        for (k, v) in [
            (&mut totals.places, w_totals.places),
            (&mut totals.silent, w_totals.silent),
            (&mut totals.answered, w_totals.answered),
            (&mut totals.at_post, w_totals.at_post),
            (&mut totals.to_move, w_totals.to_move),
            (&mut totals.moved, w_totals.moved),
            (&mut totals.refused, w_totals.refused),
        ] {
            *k += v;
        }
        warnings.push(Warning {
            lineage: key,
            hazard: l.hazard.to_string(),
            tier: l.tier.as_str().to_string(),
            area_name: l.area_name.clone(),
            version: l.version,
            issued: l
                .issued
                .to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            restricted: l.restricted,
            places,
            officers,
            totals: w_totals,
        });
    }
    warnings.sort_by(|a, b| {
        rank(&b.tier)
            .cmp(&rank(&a.tier))
            .then(a.lineage.cmp(&b.lineage))
    });
    Ok(Board {
        generated: jiff::Zoned::now()
            .with_time_zone(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        warnings,
        shelters: shelters(c, reg)?,
        returning: returning(c, reg, &local)?,
        totals,
    })
}

fn add(t: &mut Totals, p: &Place) {
    t.places += 1;
    t.silent += u32::from(p.answer == Answer::Silent);
    t.answered += u32::from(p.answer == Answer::Answered);
    t.at_post += p.at_post;
    t.to_move += p.to_move;
    t.moved += p.moved;
    t.refused += p.refused;
}

fn rank(tier: &str) -> u8 {
    crate::correlate::Tier::parse(tier).map_or(0, |t| t as u8 + 1)
}

impl Place {
    /// The tier as a number (red highest), for ordering.
    pub fn tier_rank(&self) -> u8 {
        rank(&self.tier)
    }
}

/// Persons who reported at their post for this warning (and when, first).
fn at_post(c: &Connection, lineage: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut q = c.prepare_cached(
        "SELECT person, min(at) FROM respond_answer
         WHERE lineage = ?1 AND kind = 'post' AND person IS NOT NULL GROUP BY person",
    )?;
    let rows = q.query_map(params![lineage], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// (moved, refused, reports beyond the registered figure) per place.
fn evacuation(c: &Connection, lineage: &str) -> anyhow::Result<HashMap<String, (u32, u32, u32)>> {
    let mut q = c.prepare_cached(
        "SELECT target, sum(people), sum(ifnull(refused, 0)), count(beyond) FROM respond_evacuation
         WHERE lineage = ?1 GROUP BY target",
    )?;
    let rows = q.query_map(params![lineage], |r| {
        Ok((
            r.get::<_, String>(0)?,
            (
                r.get::<_, i64>(1)?.clamp(0, u32::MAX as i64) as u32,
                r.get::<_, i64>(2)?.clamp(0, u32::MAX as i64) as u32,
                r.get::<_, i64>(3)?.clamp(0, u32::MAX as i64) as u32,
            ),
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Shelter loads over the warnings in force: each person's latest report counted once (the
/// same people reported under two warnings are the same people).
pub(crate) fn shelters(c: &Connection, reg: &Registry) -> anyhow::Result<Vec<Shelter>> {
    let in_force = cstore::in_force_keys(c)?;
    let mut q = c.prepare_cached(
        "SELECT shelter, sum(people) FROM (
            SELECT e.shelter AS shelter, max(e.people) AS people FROM respond_evacuation e
            WHERE e.lineage IN (SELECT value FROM json_each(?1))
              AND e.shelter IS NOT NULL AND e.shelter != ''
            GROUP BY e.target, e.person, e.shelter)
         GROUP BY shelter",
    )?;
    let rows: Vec<(String, i64)> = q
        .query_map(params![in_force], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(loads(reg, rows))
}

/// One shelter's load, named by its registry id or name (what an evacuation report says):
/// the same sum as [`shelters`], reading only that shelter's reports (an index, not every
/// report in the store: it runs in the writer on every report that names a shelter).
pub(crate) fn shelter(
    c: &Connection,
    reg: &Registry,
    named: &str,
) -> anyhow::Result<Option<Shelter>> {
    let named = named.trim();
    let Some(known) = reg
        .data
        .shelters
        .iter()
        .find(|s| s.id == named || s.name == named)
    else {
        return Ok(None);
    };
    let in_force = cstore::in_force_keys(c)?;
    let mut q = c.prepare_cached(
        "SELECT shelter, sum(people) FROM (
            SELECT e.shelter AS shelter, max(e.people) AS people FROM respond_evacuation e
            WHERE e.shelter IN (?1, ?2) AND e.lineage IN (SELECT value FROM json_each(?3))
            GROUP BY e.target, e.person, e.shelter)
         GROUP BY shelter",
    )?;
    let rows: Vec<(String, i64)> = q
        .query_map(params![known.id, known.name, in_force], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(loads(reg, rows).into_iter().find(|s| s.id == known.id))
}

/// Reported names and sums → shelters with capacity and the 90 % flag, fullest first.
fn loads(reg: &Registry, rows: Vec<(String, i64)>) -> Vec<Shelter> {
    let mut by_shelter: BTreeMap<String, Shelter> = BTreeMap::new();
    for (reported, people) in rows {
        let people = people.clamp(0, u32::MAX as i64) as u32;
        let known = reg
            .data
            .shelters
            .iter()
            .find(|s| s.id == reported || s.name == reported.trim());
        let (id, name, capacity) = match known {
            Some(s) => (s.id.clone(), s.name.clone(), s.capacity),
            None => (String::new(), reported.trim().to_string(), 0),
        };
        let key = if id.is_empty() {
            name.clone()
        } else {
            id.clone()
        };
        let e = by_shelter.entry(key).or_insert(Shelter {
            id,
            name,
            capacity,
            occupants: 0,
            nearly_full: false,
        });
        e.occupants += people;
    }
    let mut out: Vec<Shelter> = by_shelter
        .into_values()
        .map(|mut s| {
            // 90 %: in integers, occupants/capacity > 0.9.
            s.nearly_full =
                s.capacity > 0 && u64::from(s.occupants) * 10 > u64::from(s.capacity) * 9;
            s
        })
        .collect();
    out.sort_by(|a, b| {
        let load = |s: &Shelter| {
            if s.capacity == 0 {
                0.0
            } else {
                f64::from(s.occupants) / f64::from(s.capacity)
            }
        };
        load(b)
            .partial_cmp(&load(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.name.cmp(&b.name))
    });
    out
}

/// Lifted warnings (a Cancel in the last 72 hours, the lineage no longer in force) with people
/// moved and not all reported home.
fn returning(
    c: &Connection,
    reg: &Registry,
    local: &dyn Fn(&str) -> String,
) -> anyhow::Result<Vec<Returning>> {
    // Recent is measured on the warnings' own clock (the newest message issued), so that a
    // replayed storm's lift shows while a drill runs, and old storms drop off in real life.
    let since = cstore::newest_sent(c)?
        .and_then(|t| t.checked_sub(jiff::SignedDuration::from_hours(72)).ok());
    let lifted = cstore::lifted_since(c, since)?;
    let mut q = c.prepare_cached(
        "SELECT target, sum(people), sum(ifnull(returned, 0)) FROM respond_evacuation
         WHERE lineage = ?1 GROUP BY target",
    )?;
    let mut rows = Vec::new();
    for (lineage, hazard, sent) in lifted {
        let places: Vec<(String, i64, i64)> = q
            .query_map(params![lineage], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (target, moved, returned) in places {
            rows.push((
                (lineage.clone(), hazard.clone(), sent.clone()),
                (target, moved, returned),
            ));
        }
    }
    let mut out: BTreeMap<String, Returning> = BTreeMap::new();
    for ((lineage, hazard, sent), (target, moved, returned)) in rows {
        let (moved, returned) = (
            moved.clamp(0, i64::from(u32::MAX)) as u32,
            returned.clamp(0, i64::from(u32::MAX)) as u32,
        );
        let e = out.entry(lineage.clone()).or_insert(Returning {
            lineage,
            hazard,
            lifted: local(&sent),
            places: Vec::new(),
            moved: 0,
            returned: 0,
        });
        e.moved += moved;
        e.returned += returned;
        e.places.push((
            target.clone(),
            super::place_name(reg, &target),
            moved,
            returned,
        ));
    }
    let mut v: Vec<Returning> = out
        .into_values()
        .filter(|r| r.returned < r.moved)
        .map(|mut r| {
            r.places
                .sort_by_key(|p| (std::cmp::Reverse(p.2.saturating_sub(p.3)), p.0.clone()));
            r
        })
        .collect();
    v.sort_by(|a, b| b.lifted.cmp(&a.lifted));
    Ok(v)
}

/// The board as CSV, one row per place (for spreadsheets and the after-action file).
pub fn csv(board: &Board) -> anyhow::Result<String> {
    let mut w = crate::text::CsvOut::in_memory();
    w.row([
        "lineage",
        "hazard",
        "warning_tier",
        "place",
        "kind",
        "name",
        "sites",
        "town",
        "tier",
        "answer",
        "called",
        "sent",
        "delivered",
        "answered",
        "silent",
        "at_post",
        "to_move",
        "moved",
        "refused",
        "to_check",
        "terminals",
        "played",
        "terminals_failed",
        "first_answer",
    ])?;
    for wn in &board.warnings {
        for p in &wn.places {
            w.row([
                wn.lineage.as_str(),
                &wn.hazard,
                &wn.tier,
                &p.id,
                p.kind,
                &p.name,
                &p.sites
                    .iter()
                    .map(|s| s.1.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                &p.town,
                &p.tier,
                p.answer.as_str(),
                &p.called.to_string(),
                &p.sent.to_string(),
                &p.delivered.to_string(),
                &p.answered.to_string(),
                &p.silent.to_string(),
                &p.at_post.to_string(),
                &p.to_move.to_string(),
                &p.moved.to_string(),
                &p.refused.to_string(),
                &p.to_check.to_string(),
                &p.plays.total.to_string(),
                &p.plays.played.to_string(),
                &p.plays.failed.to_string(),
                p.first_answer.as_deref().unwrap_or(""),
            ])?;
        }
    }
    w.into_string()
}
