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

use crate::store::sql::Conn;
use rusqlite::params;
use serde::Serialize;

use super::ledger::county_of;
use crate::correlate::PlaceKind;
use crate::correlate::store as cstore;
use crate::dispatch::broadcast::jobs;
use crate::dispatch::outbox;
use crate::registry::Registry;
use crate::registry::model::county_code;

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
    /// Of those sent, whose text passed its receipt deadline with no receipt ("sent, no
    /// receipt"; not in delivered).
    pub no_receipt: u32,
    /// Of those, whose phone was rung by the ladder's `call` step (电话叫应).
    pub rung: u32,
    /// Of those rung, who picked up.
    pub picked_up: u32,
    /// Of those who picked up, who pressed a key.
    pub pressed: u32,
    /// Of those, who answered (or were covered by a co-responsible's answer).
    pub answered: u32,
    /// Of those, on the silent list (and not answered since).
    pub silent: u32,
    /// Persons who reported at their post (到岗).
    pub at_post: u32,
    /// How the place stands.
    pub answer: Answer,
    /// People who must move ([`ledger`](super::ledger): the registry's figure for what the
    /// view covers of the place).
    pub to_move: u32,
    /// People moved (the ledger: the place's latest report, at most `to_move`).
    pub moved: u32,
    /// People refusing or unable to move.
    pub refused: u32,
    /// People reported beyond the registered figure: not in `moved`, for the office to check
    /// with the village (超登记待核实).
    pub to_check: u32,
    /// Loudspeakers.
    pub plays: Plays,
    /// First answer, if any (local, readable).
    pub first_answer: Option<String>,
    /// A village threatened by a warned hazard site of another village's row: its people
    /// and reports are counted on that row (id, name), not here.
    pub counted_in: Option<(String, String)>,
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
    /// First issued (local, readable: `08-09 18:02`).
    pub issued: String,
    /// First issued (RFC 3339, local), for programs.
    pub issued_at: String,
    /// Officials only.
    pub restricted: bool,
    /// Whose forecast a typhoon warning follows (`BABJ` CMA, `RJTD` JMA, `PGTW` JTWC), from
    /// its reason; `None` for other hazards.
    pub agency: Option<String>,
    /// Villages and sites the filter keeps, worst answer first, then by tier.
    pub places: Vec<Place>,
    /// Town and county officers called: (called, answered, silent).
    pub officers: (u32, u32, u32),
    /// Totals over the places the filter keeps.
    pub totals: Totals,
}

/// Sums over places, each counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Places.
    pub places: u32,
    /// Places on the silent list (nobody answered, the ladder ran out).
    pub silent: u32,
    /// Places called where nobody answered yet and the ladder still climbs.
    pub waiting: u32,
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
    /// People reported beyond the registered figures (not in `moved`).
    pub to_check: u32,
}

impl Totals {
    /// Add another line's totals: lines whose places are distinct (towns of a county,
    /// counties of a city) add up to the line over them.
    pub fn add(&mut self, o: &Totals) {
        self.places += o.places;
        self.silent += o.silent;
        self.waiting += o.waiting;
        self.answered += o.answered;
        self.at_post += o.at_post;
        self.to_move += o.to_move;
        self.moved += o.moved;
        self.refused += o.refused;
        self.to_check += o.to_check;
    }
}

/// One line of a summary at the top of the board: a town's, or on a board over several
/// counties (a city's or a province's office) a county's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Town {
    /// Its code (9 digits for a town, 6 for a county; empty for places in no known unit).
    pub code: String,
    /// Its name.
    pub name: String,
    /// Over its places, each once.
    pub totals: Totals,
    /// Its shelters with people in them: (occupants, capacity).
    pub shelters: (u32, u32),
}

/// The warnings in force of one hazard, counted by tier: what a summary over several
/// counties lists instead of each warning (a province's storm is thousands of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kinds {
    /// The hazard (snake_case).
    pub hazard: String,
    /// Warnings in force at red.
    pub red: u32,
    /// At orange.
    pub orange: u32,
    /// At yellow.
    pub yellow: u32,
    /// At blue.
    pub blue: u32,
    /// Over their places (a place under two warnings counted under each).
    pub places: u32,
}

/// A place that needs a phone call now, and whom to ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallNow {
    /// The place (ledger row).
    pub place: String,
    /// Its name.
    pub name: String,
    /// Its town's name.
    pub town: String,
    /// `silent` (on the silent list), `help` (asked for help, not yet dealt with),
    /// `to_check` (reported beyond the registered figure).
    pub reason: &'static str,
    /// Whom to ring: (name, role, mobile).
    pub persons: Vec<(String, String, String)>,
    /// What they said (help), cut short.
    pub note: Option<String>,
    /// Since when (local, readable).
    pub since: Option<String>,
}

/// A shelter's load over all warnings in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shelter {
    /// Registry id (empty for a name the registry does not know).
    pub id: String,
    /// Name as reported.
    pub name: String,
    /// Its town's code (empty when unknown).
    pub town: String,
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
    /// When it was lifted (local, readable).
    pub lifted: String,
    /// (place id, name, moved, returned), places with people still away first.
    pub places: Vec<(String, String, u32, u32)>,
    /// Moved in all.
    pub moved: u32,
    /// Back home in all.
    pub returned: u32,
}

/// The moment a board is read at, and on which clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOf {
    /// The run's time (a drill's simulated time in a drill).
    pub now: jiff::Timestamp,
    /// Whether it is a drill's clock.
    pub drill: bool,
}

impl AsOf {
    /// Now, on the wall clock.
    pub fn wall() -> AsOf {
        AsOf {
            now: jiff::Timestamp::now(),
            drill: false,
        }
    }
}

/// The whole board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Board {
    /// When it was read (local, readable), on `clock`.
    pub generated: String,
    /// When it was read (RFC 3339, local), for programs.
    pub generated_at: String,
    /// `drill` (the drill's simulated clock) or `live`.
    pub clock: &'static str,
    /// What was read: `all` (every place), `summary` (the lines by county and town and the
    /// warnings' totals, no places) or `county` (one county's places).
    pub scope: &'static str,
    /// The county a `county` board is of: (code, name).
    pub county: Option<(String, String)>,
    /// Per county, over the places the filter keeps, each once (one line for a county
    /// office; a city's or a province's office reads these first).
    pub counties: Vec<Town>,
    /// Per town, over the places the filter keeps, each once.
    pub towns: Vec<Town>,
    /// Places that need a phone call now.
    pub call_now: Vec<CallNow>,
    /// The warnings in force with places the filter keeps, most serious first.
    pub warnings: Vec<Warning>,
    /// The same warnings counted by hazard and tier, the most serious hazard first.
    pub kinds: Vec<Kinds>,
    /// Shelters with anyone reported in them, fullest first.
    pub shelters: Vec<Shelter>,
    /// Warnings lifted in the last 72 hours whose people are not all reported home.
    pub returning: Vec<Returning>,
    /// The county: every place the filter keeps, each once, whatever number of warnings
    /// cover it.
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
    /// Places nobody answered: on the silent list, or still waiting for an answer.
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

    /// The query value (empty for every place).
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::All => "",
            Filter::Silent => "silent",
            Filter::NotMoved => "unmoved",
        }
    }

    /// Whether the filter keeps a place.
    pub fn keeps(self, p: &Place) -> bool {
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
    cover: super::ledger::Cover,
    sites: Vec<(String, String, String)>,
    /// Person → (answered or covered on any of their calls here, silent on one).
    persons: BTreeMap<String, (bool, bool)>,
    first_answer: Option<String>,
}

fn row<'a>(rows: &'a mut BTreeMap<String, Row>, village: &str) -> &'a mut Row {
    rows.entry(village.to_string()).or_default()
}

/// A current call (a superseded one was asked again by a newer version), as the board
/// counts it: its state and level read as what they decide.
struct CallRow {
    target: String,
    person: String,
    /// A town's or the county's officer (counted per warning, not on a place's row).
    officer: bool,
    /// Answered, or covered by a deputy's answer.
    answered: bool,
    /// The ladder ran out.
    silent: bool,
    /// When it was answered (read only for the place rows that show it).
    answered_at: Option<String>,
}

/// The current calls of every lineage of `lineages`, by lineage (one statement for all of
/// them: [`query_in`](crate::store::sql::query_in), not one per warning). At a
/// province's storm these are most of what a summary reads (900,000 calls at 400 counties):
/// the columns are those of the index `respond_call_open` (migration 0028), so the calls'
/// rows (each with its warning's words) are not read, and `with_times` says whether the
/// answer times are wanted at all.
fn calls_by_lineage(
    c: &Conn<'_>,
    lineages: &[String],
    with_times: bool,
) -> anyhow::Result<HashMap<String, Vec<CallRow>>> {
    let rows = crate::store::sql::query_in(
        c,
        lineages,
        |list| calls_sql(list, with_times),
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                CallRow {
                    target: r.get(1)?,
                    person: r.get(2)?,
                    officer: r.get::<_, i64>(3)? == 1,
                    answered: r.get::<_, i64>(4)? == 1,
                    silent: r.get::<_, i64>(5)? == 1,
                    answered_at: r.get(6)?,
                },
            ))
        },
    )?;
    let mut out: HashMap<String, Vec<CallRow>> = HashMap::new();
    for (lineage, call) in rows {
        out.entry(lineage).or_default().push(call);
    }
    Ok(out)
}

/// The statement [`calls_by_lineage`] runs over the `IN (…)` list `list`: every column it
/// reads is one of the index's.
fn calls_sql(list: &str, with_times: bool) -> String {
    format!(
        "SELECT lineage, target, person,
                CASE WHEN level IN ('county', 'town') THEN 1 ELSE 0 END,
                CASE WHEN state IN ('answered', 'covered') THEN 1 ELSE 0 END,
                CASE WHEN state = 'silent' THEN 1 ELSE 0 END,
                {}
         FROM respond_call
         WHERE lineage IN ({list}) AND state NOT IN ('superseded', 'lifted', 'replaced')",
        if with_times { "answered" } else { "NULL" }
    )
}

/// A time as people read it on the board: the county's zone, `08-09 18:02`.
pub fn readable(t: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%m-%d %H:%M").to_string()
}

fn readable_str(s: &str, tz: &jiff::tz::TimeZone) -> String {
    s.parse::<jiff::Timestamp>()
        .map(|t| readable(t, tz))
        .unwrap_or_else(|_| s.to_string())
}

/// How much of the board to read. A county office reads it all. An office over several
/// counties (a city's, a province's: a hundred thousand villages) reads the summary first,
/// whose figures are the same as the whole board's but which skips what only the place rows
/// show (deliveries, rings and plays per person), then one county's places on demand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every warning in force, place by place.
    #[default]
    All,
    /// The lines by county and town and each warning's totals; no place rows, no list of
    /// places to ring.
    Summary,
    /// One county's places (its 6-digit code): the warnings in force that cover some, with
    /// only those places.
    County(String),
}

impl Scope {
    /// The scope an office sees unless it asks for one: the whole board for a registry of
    /// one county, the summary for one of several.
    pub fn default_for(reg: &Registry) -> Scope {
        if reg.data.counties().nth(1).is_some() {
            Scope::Summary
        } else {
            Scope::All
        }
    }

    /// From a query value: a county's 6-digit code, `all` or `summary`; `None` for anything
    /// else (the office's default then).
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "all" => Some(Scope::All),
            "summary" => Some(Scope::Summary),
            c if c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Scope::County(c.to_string()))
            }
            _ => None,
        }
    }

    /// The query value.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::All => "all",
            Scope::Summary => "summary",
            Scope::County(c) => c,
        }
    }

    /// What [`Board::scope`] says of it: `all`, `summary` or `county`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Summary => "summary",
            Scope::County(_) => "county",
        }
    }

    fn rows(&self) -> bool {
        !matches!(self, Scope::Summary)
    }
}

/// Whether a warned place lies in `county`: a village in it, a site threatening a village in
/// it (a stream can cross the county line), a town or county warned as a whole that is it or
/// inside it.
fn place_in(reg: &Registry, id: &str, kind: PlaceKind, county: &str) -> bool {
    match kind {
        PlaceKind::Unit => county_code(id) == county,
        PlaceKind::Village => county_of(reg, id) == county,
        PlaceKind::Site => {
            county_of(reg, &super::ledger::row_of(reg, id)) == county
                || reg
                    .site(id)
                    .is_some_and(|s| s.villages.iter().any(|v| county_of(reg, v) == county))
        }
    }
}

/// A county row while the board is gathered: the union over warnings.
struct CountyRow {
    cover: super::ledger::Cover,
    answer: Answer,
    posted: std::collections::BTreeSet<String>,
    town: String,
    name: String,
}

/// Build the whole board as it stands at `asof` (a county office's: [`Scope::All`]).
pub fn read(
    c: &Conn<'_>,
    reg: &Registry,
    tz: &jiff::tz::TimeZone,
    filter: Filter,
    asof: AsOf,
) -> anyhow::Result<Board> {
    read_scoped(c, reg, tz, filter, &Scope::All, asof)
}

/// Build the part of the board `scope` names as it stands at `asof`. Every figure a summary
/// or a county shows is the whole board's: each place counted once over the warnings that
/// cover it, with the same ledger.
pub fn read_scoped(
    c: &Conn<'_>,
    reg: &Registry,
    tz: &jiff::tz::TimeZone,
    filter: Filter,
    scope: &Scope,
    asof: AsOf,
) -> anyhow::Result<Board> {
    let mut lineages = cstore::lineages(c)?;
    // The ledger over every warning in force, whatever the scope: a place's figures are its
    // own, whichever warning a report came under, and which row a report counts on depends
    // on every warning covering its place (a village covered itself counts its own reports;
    // one only threatened by a site across the county line counts them on the site's row).
    let in_force: Vec<String> = lineages.iter().map(|l| l.key()).collect();
    let reports = super::ledger::Reports::read(c, reg, &in_force)?;
    let mut county_covers: BTreeMap<String, super::ledger::Cover> = BTreeMap::new();
    for l in &lineages {
        let places = l.places.iter().map(|(id, h)| (id.as_str(), h.kind));
        for (row, cover) in super::ledger::covers_of(reg, places) {
            county_covers.entry(row).or_default().merge(&cover);
        }
    }
    // One county: only the warnings that cover some of it are read further.
    let only = match scope {
        Scope::County(code) => Some(code.as_str()),
        _ => None,
    };
    if let Some(code) = only {
        lineages.retain(|l| {
            l.places
                .iter()
                .any(|(id, h)| place_in(reg, id, h.kind, code))
        });
    }
    let keys: Vec<String> = lineages.iter().map(|l| l.key()).collect();
    let county_reports = reports.folded(reg, &county_covers);
    // What each warning's rows need, read for all of them at once (on PostgreSQL a statement
    // per warning was a round trip per warning, 360 for a county's storm).
    // A summary shows no place rows: what only they show is not read.
    let mut posts = at_post_by_lineage(c, &keys)?;
    let (mut deliveries, mut rings, mut plays_of) = if scope.rows() {
        (
            outbox::delivery_by_lineage(c, &keys)?,
            outbox::rings_by_lineage(c, &keys)?,
            jobs::plays_by_lineage(c, &keys)?,
        )
    } else {
        Default::default()
    };
    let mut calls_of = calls_by_lineage(c, &keys, scope.rows())?;
    let mut warnings = Vec::new();
    let mut county: BTreeMap<String, CountyRow> = BTreeMap::new();
    for l in &lineages {
        if l.places.is_empty() {
            continue;
        }
        let key = l.key();
        let post = posts.remove(&key).unwrap_or_default();
        let delivery = deliveries.remove(&key).unwrap_or_default();
        let rang = rings.remove(&key).unwrap_or_default();
        let plays = plays_of.remove(&key).unwrap_or_default();
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        // The warned places.
        for (id, held) in &l.places {
            match held.kind {
                PlaceKind::Village => {
                    let r = row(&mut rows, id);
                    r.tier = r.tier.max(Some(held.tier));
                    r.cover.itself = true;
                }
                PlaceKind::Site => {
                    let name = reg.site(id).map_or_else(|| id.clone(), |s| s.name.clone());
                    let r = row(&mut rows, &super::ledger::row_of(reg, id));
                    r.tier = r.tier.max(Some(held.tier));
                    r.cover.sites.insert(id.clone());
                    r.sites
                        .push((id.clone(), name, held.tier.as_str().to_string()));
                }
                PlaceKind::Unit => {}
            }
        }
        // Whom the warning called, by where they answer for.
        let mut officers = (0, 0, 0);
        for call in calls_of.remove(&key).unwrap_or_default() {
            let (answered, silent) = (call.answered, call.silent);
            if call.officer {
                if only.is_some_and(|code| county_code(&call.target) != code) {
                    continue;
                }
                officers.0 += 1;
                officers.1 += u32::from(answered);
                officers.2 += u32::from(silent);
                continue;
            }
            // Counted in persons: one person called for a site and its village is one.
            let r = row(&mut rows, &super::ledger::row_of(reg, &call.target));
            if let Some(a) = call.answered_at
                && r.first_answer.as_ref().is_none_or(|f| a < *f)
            {
                r.first_answer = Some(a);
            }
            let e = r.persons.entry(call.person).or_default();
            e.0 |= answered;
            e.1 |= silent;
        }
        let tier_all = l.tier;
        let covers: BTreeMap<String, super::ledger::Cover> = rows
            .iter()
            .filter(|(_, r)| r.cover != Default::default())
            .map(|(id, r)| (id.clone(), r.cover.clone()))
            .collect();
        // Only this warning's rows are asked about below: its covered rows, the rows of the
        // people it called, and the villages its sites threaten.
        let reports = reports.folded_for(reg, &covers, rows.keys().map(String::as_str));
        // Villages a covered site threatens that are not covered themselves: counted on the
        // site's row.
        let mut folded_into: BTreeMap<String, String> = BTreeMap::new();
        for (row, cover) in &covers {
            for site in &cover.sites {
                for v in reg
                    .site(site)
                    .map(|s| s.villages.as_slice())
                    .unwrap_or_default()
                {
                    if v != row && !covers.contains_key(v) {
                        folded_into.entry(v.clone()).or_insert_with(|| row.clone());
                    }
                }
            }
        }
        // Threatened villages are places of the warning, called or not (the ledger counts
        // them; their people are on the site's row).
        for v in folded_into.keys() {
            rows.entry(v.clone()).or_default();
        }
        // One county: its places only (a warning over two counties shows this one's).
        if let Some(code) = only {
            rows.retain(|id, _| county_of(reg, id) == code);
        }
        let mut places = Vec::new();
        for (id, r) in rows {
            let (mut sent, mut delivered, mut no_receipt) = (0, 0, 0);
            let (mut rung, mut picked_up, mut pressed) = (0, 0, 0);
            let (mut answered, mut silent) = (0, 0);
            let mut posted = std::collections::BTreeSet::new();
            for (p, (a, q)) in &r.persons {
                if let Some(d) = delivery.get(p) {
                    sent += u32::from(d.sent);
                    delivered += u32::from(d.delivered);
                    no_receipt += u32::from(d.no_receipt);
                }
                if let Some(k) = rang.get(p) {
                    rung += u32::from(k.rung);
                    picked_up += u32::from(k.picked_up);
                    pressed += u32::from(k.pressed);
                }
                if post.contains_key(p) {
                    posted.insert(p.clone());
                }
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
            let figures = reports.figures(&id, r.cover.to_move(reg, &id));
            let town = v.map(|v| v.town.clone()).unwrap_or_default();
            let name = v.map_or_else(
                || r.sites.first().map_or_else(|| id.clone(), |s| s.1.clone()),
                |v| v.name.clone(),
            );
            let cr = county.entry(id.clone()).or_insert_with(|| CountyRow {
                cover: Default::default(),
                answer: Answer::Uncalled,
                posted: Default::default(),
                town: town.clone(),
                name: name.clone(),
            });
            cr.cover.merge(&r.cover);
            cr.answer = county_answer(cr.answer, answer);
            cr.posted.extend(posted.iter().cloned());
            places.push(Place {
                kind: if v.is_some() || r.sites.is_empty() {
                    "village"
                } else {
                    "site"
                },
                name,
                town,
                point: v.map(|v| (v.point.lat, v.point.lon)).or_else(|| {
                    r.sites
                        .first()
                        .and_then(|s| reg.site(&s.0))
                        .and_then(|s| reg.site_point(s))
                        .map(|(lon, lat)| (lat, lon))
                }),
                tier: r.tier.unwrap_or(tier_all).as_str().to_string(),
                to_move: figures.to_move,
                called,
                sent,
                delivered,
                no_receipt,
                rung,
                picked_up,
                pressed,
                answered,
                silent,
                at_post: posted.len() as u32,
                answer,
                moved: figures.moved,
                refused: figures.refused,
                to_check: figures.beyond,
                plays: plays.get(&id).cloned().unwrap_or_default(),
                first_answer: r.first_answer.as_deref().map(|s| readable_str(s, tz)),
                counted_in: folded_into
                    .get(&id)
                    .map(|into| (into.clone(), super::place_name(reg, into))),
                sites: r.sites,
                id,
            });
        }
        places.retain(|p| filter.keeps(p));
        if places.is_empty() && filter != Filter::All {
            continue;
        }
        let mut w_totals = Totals::default();
        for p in &places {
            add(&mut w_totals, p);
        }
        if !scope.rows() {
            places.clear();
        }
        places.sort_by(|a, b| {
            a.answer
                .cmp(&b.answer)
                .then(b.tier_rank().cmp(&a.tier_rank()))
                .then(a.id.cmp(&b.id))
        });
        warnings.push(Warning {
            lineage: key,
            hazard: l.hazard.to_string(),
            tier: l.tier.as_str().to_string(),
            area_name: l.area_name.clone(),
            version: l.version,
            issued: readable(l.issued, tz),
            issued_at: l
                .issued
                .to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            restricted: l.restricted,
            agency: agency_of(&l.reason),
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
    // The county: each place once, its figures over the union of what covers it.
    let shelters = shelters(c, reg)?;
    let mut towns: BTreeMap<String, Town> = BTreeMap::new();
    // The counties, each place in its own (a county's line is the sum of its towns').
    let mut counties: BTreeMap<String, Town> = BTreeMap::new();
    let mut totals = Totals::default();
    for (id, cr) in &county {
        let f = county_reports.figures(id, cr.cover.to_move(reg, id));
        let p = Place {
            id: id.clone(),
            kind: "village",
            name: cr.name.clone(),
            sites: Vec::new(),
            town: cr.town.clone(),
            tier: String::new(),
            point: None,
            called: 0,
            sent: 0,
            delivered: 0,
            no_receipt: 0,
            rung: 0,
            picked_up: 0,
            pressed: 0,
            answered: 0,
            silent: 0,
            at_post: cr.posted.len() as u32,
            answer: cr.answer,
            to_move: f.to_move,
            moved: f.moved,
            refused: f.refused,
            to_check: f.beyond,
            plays: Plays::default(),
            first_answer: None,
            counted_in: None,
        };
        if !filter.keeps(&p) {
            continue;
        }
        add(&mut totals, &p);
        let t = towns.entry(cr.town.clone()).or_insert_with(|| Town {
            name: super::place_name(reg, &cr.town),
            code: cr.town.clone(),
            totals: Totals::default(),
            shelters: (0, 0),
        });
        add(&mut t.totals, &p);
        let code = county_of(reg, id);
        let c = counties.entry(code.to_string()).or_insert_with(|| Town {
            name: super::place_name(reg, code),
            code: code.to_string(),
            totals: Totals::default(),
            shelters: (0, 0),
        });
        add(&mut c.totals, &p);
    }
    for s in &shelters {
        let county = county_code(&s.town);
        for t in [towns.get_mut(&s.town), counties.get_mut(county)]
            .into_iter()
            .flatten()
        {
            t.shelters.0 += s.occupants;
            t.shelters.1 += s.capacity;
        }
    }
    let call_now = if scope.rows() {
        call_now(c, reg, tz, &county, &county_reports, &keys, only)?
    } else {
        Vec::new()
    };
    let mut kinds: Vec<Kinds> = Vec::new();
    for w in &warnings {
        let k = match kinds.iter_mut().position(|k| k.hazard == w.hazard) {
            Some(i) => &mut kinds[i],
            None => {
                kinds.push(Kinds {
                    hazard: w.hazard.clone(),
                    ..Kinds::default()
                });
                let last = kinds.len() - 1;
                &mut kinds[last]
            }
        };
        match w.tier.as_str() {
            "red" => k.red += 1,
            "orange" => k.orange += 1,
            "yellow" => k.yellow += 1,
            _ => k.blue += 1,
        }
        k.places += w.totals.places;
    }
    // One county: its shelters only.
    let shelters = match only {
        Some(code) => shelters
            .into_iter()
            .filter(|s| county_code(&s.town) == code)
            .collect(),
        None => shelters,
    };
    Ok(Board {
        scope: scope.kind(),
        county: only.map(|code| (code.to_string(), super::place_name(reg, code))),
        counties: counties.into_values().collect(),
        generated: readable(asof.now, tz),
        generated_at: asof
            .now
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        clock: if asof.drill { "drill" } else { "live" },
        towns: towns.into_values().collect(),
        call_now,
        warnings,
        kinds,
        shelters,
        returning: returning(c, reg, tz, only)?,
        totals,
    })
}

/// A county row's answer over its warnings: the worst that is still open (a place silent
/// under one warning is silent, whatever another warning's call got).
fn county_answer(a: Answer, b: Answer) -> Answer {
    a.min(b)
}

/// Places that need a phone call now: those on the silent list (whom to ring: the silent
/// persons), those that asked for help and nobody has dealt with it yet, and those reported
/// beyond their registered figure.
fn call_now(
    c: &Conn<'_>,
    reg: &Registry,
    tz: &jiff::tz::TimeZone,
    county: &BTreeMap<String, CountyRow>,
    reports: &super::ledger::Reports,
    keys: &[String],
    only: Option<&str>,
) -> anyhow::Result<Vec<CallNow>> {
    let in_force = serde_json::to_string(keys)?;
    let town_name = |row: &str| {
        county
            .get(row)
            .map(|r| super::place_name(reg, &r.town))
            .unwrap_or_default()
    };
    let mut out: Vec<CallNow> = Vec::new();
    // Silent persons, by place.
    let silent: Vec<(String, String, String, String, Option<String>)> = c
        .prepare_cached(
            // Each silent person once per place, as their first silent call names them.
            "SELECT target, name, role, mobile, called FROM (
               SELECT target, name, role, mobile, called, row_number() OVER (
                        PARTITION BY target, person ORDER BY called, id) AS n
               FROM respond_call
               WHERE state = 'silent' AND level NOT IN ('town', 'county')
                 AND lineage IN (SELECT value FROM json_each(?1))) AS first
             WHERE n = 1 ORDER BY target, name",
        )?
        .query_map(params![in_force], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<crate::store::sql::Result<_>>()?;
    let mut by_row: BTreeMap<String, CallNow> = BTreeMap::new();
    for (target, name, role, mobile, since) in silent {
        let row = super::ledger::row_of(reg, &target);
        if county.get(&row).is_none_or(|r| r.answer != Answer::Silent) {
            continue;
        }
        let e = by_row.entry(row.clone()).or_insert_with(|| CallNow {
            name: super::place_name(reg, &row),
            town: town_name(&row),
            place: row.clone(),
            reason: "silent",
            persons: Vec::new(),
            note: None,
            since: since.as_deref().map(|s| readable_str(s, tz)),
        });
        // One line per person (a person holding two duties there is rung once).
        if !e.persons.iter().any(|q| q.2 == mobile) {
            e.persons.push((name, role, mobile));
        }
    }
    out.extend(by_row.into_values());
    // Help asked, not dealt with.
    let help: Vec<(String, String, String, String, Option<String>, String)> = c
        .prepare_cached(
            // Each person once, with their latest call for help.
            "SELECT target, name, role, mobile, note, at FROM (
               SELECT c.target AS target, c.name AS name, c.role AS role, c.mobile AS mobile,
                      a.note AS note, a.at AS at, row_number() OVER (
                        PARTITION BY a.person ORDER BY a.at DESC, a.id DESC, c.id) AS n
               FROM respond_answer a
               JOIN respond_call c ON c.lineage = a.lineage AND c.person = a.person
               WHERE a.kind = 'help' AND a.handled IS NULL AND a.repeat_of IS NULL
                 AND a.lineage IN (SELECT value FROM json_each(?1))) AS latest
             WHERE n = 1 ORDER BY at DESC",
        )?
        .query_map(params![in_force], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<crate::store::sql::Result<_>>()?;
    for (target, name, role, mobile, note, at) in help {
        let row = super::ledger::row_of(reg, &target);
        if only.is_some_and(|code| county_of(reg, &row) != code) {
            continue;
        }
        out.push(CallNow {
            name: super::place_name(reg, &row),
            town: town_name(&row),
            place: row,
            reason: "help",
            persons: vec![(name, role, mobile)],
            note: note.map(|n| crate::text::quote(&n)),
            since: Some(readable_str(&at, tz)),
        });
    }
    // Reported beyond the registry.
    for (row, cr) in county {
        let f = reports.figures(row, cr.cover.to_move(reg, row));
        if f.beyond > 0 {
            out.push(CallNow {
                name: cr.name.clone(),
                town: super::place_name(reg, &cr.town),
                place: row.clone(),
                reason: "to_check",
                persons: Vec::new(),
                note: None,
                since: None,
            });
        }
    }
    Ok(out)
}

fn add(t: &mut Totals, p: &Place) {
    t.places += 1;
    t.silent += u32::from(p.answer == Answer::Silent);
    t.waiting += u32::from(p.answer == Answer::Waiting);
    t.answered += u32::from(p.answer == Answer::Answered);
    t.at_post += p.at_post;
    t.to_move += p.to_move;
    t.moved += p.moved;
    t.refused += p.refused;
    t.to_check += p.to_check;
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

/// Per lineage of `lineages`, the persons who reported at their post for it (and when,
/// first).
fn at_post_by_lineage(
    c: &Conn<'_>,
    lineages: &[String],
) -> anyhow::Result<HashMap<String, HashMap<String, String>>> {
    let rows = crate::store::sql::query_in(
        c,
        lineages,
        |list| {
            format!(
                "SELECT lineage, person, min(at) FROM respond_answer
                 WHERE lineage IN ({list}) AND kind = 'post' AND person IS NOT NULL
                 GROUP BY lineage, person"
            )
        },
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        },
    )?;
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    for (lineage, person, at) in rows {
        out.entry(lineage).or_default().insert(person, at);
    }
    Ok(out)
}

/// Shelter loads over the warnings in force: each place's latest report naming the shelter,
/// counted once (the same people reported under two warnings, or by two of a place's leads,
/// are the same people).
pub(crate) fn shelters(c: &Conn<'_>, reg: &Registry) -> anyhow::Result<Vec<Shelter>> {
    let in_force = cstore::in_force_keys(c)?;
    let mut q = c.prepare_cached(
        "SELECT shelter, sum(people) FROM (
            SELECT e.shelter AS shelter, e.people AS people,
                   row_number() OVER (PARTITION BY e.target, e.shelter ORDER BY e.at DESC, e.answer DESC) AS n
            FROM respond_evacuation e
            WHERE e.lineage IN (SELECT value FROM json_each(?1))
              AND e.shelter IS NOT NULL AND e.shelter != '') AS latest
         WHERE n = 1 GROUP BY shelter",
    )?;
    let rows: Vec<(String, i64)> = q
        .query_map(params![in_force], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    Ok(loads(reg, rows))
}

/// One shelter's load, named by its registry id or name (what an evacuation report says):
/// the same sum as [`shelters`], reading only that shelter's reports (an index, not every
/// report in the store: it runs in the writer on every report that names a shelter).
pub(crate) fn shelter(
    c: &Conn<'_>,
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
            SELECT e.shelter AS shelter, e.people AS people,
                   row_number() OVER (PARTITION BY e.target, e.shelter ORDER BY e.at DESC, e.answer DESC) AS n
            FROM respond_evacuation e
            WHERE e.shelter IN (?1, ?2) AND e.lineage IN (SELECT value FROM json_each(?3))) AS latest
         WHERE n = 1 GROUP BY shelter",
    )?;
    let rows: Vec<(String, i64)> = q
        .query_map(params![known.id, known.name, in_force], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<crate::store::sql::Result<_>>()?;
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
        let (id, name, capacity, town) = match known {
            Some(s) => (
                s.id.clone(),
                s.name.clone(),
                s.capacity,
                s.village.get(..9).unwrap_or_default().to_string(),
            ),
            None => (String::new(), reported.trim().to_string(), 0, String::new()),
        };
        let key = if id.is_empty() {
            name.clone()
        } else {
            id.clone()
        };
        let e = by_shelter.entry(key).or_insert(Shelter {
            id,
            name,
            town,
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
    c: &Conn<'_>,
    reg: &Registry,
    tz: &jiff::tz::TimeZone,
    only: Option<&str>,
) -> anyhow::Result<Vec<Returning>> {
    // Recent is measured on the warnings' own clock (the newest message issued), so that a
    // replayed storm's lift shows while a drill runs, and old storms drop off in real life.
    let since = cstore::newest_sent(c)?
        .and_then(|t| t.checked_sub(jiff::SignedDuration::from_hours(72)).ok());
    let mut v = Vec::new();
    for (lineage, hazard, sent) in cstore::lifted_since(c, since)? {
        let mut r = Returning {
            lineage: lineage.clone(),
            hazard,
            lifted: readable_str(&sent, tz),
            places: Vec::new(),
            moved: 0,
            returned: 0,
        };
        for (row, f) in super::ledger::lineage(c, reg, &lineage)? {
            if f.moved == 0 || only.is_some_and(|code| county_of(reg, &row) != code) {
                continue;
            }
            r.moved += f.moved;
            r.returned += f.returned;
            r.places.push((
                row.clone(),
                super::place_name(reg, &row),
                f.moved,
                f.returned,
            ));
        }
        if r.returned < r.moved {
            r.places
                .sort_by_key(|p| (std::cmp::Reverse(p.2.saturating_sub(p.3)), p.0.clone()));
            v.push(r);
        }
    }
    v.sort_by(|a, b| b.lifted.cmp(&a.lifted));
    Ok(v)
}

/// The board as CSV, one row per place and warning (for spreadsheets and the after-action
/// file), then one row per town and one for the county (`kind` town / county; `called` holds
/// their number of places, `answered` and `silent` count places), each place once. A board
/// over several counties (a summary) has no place rows and no town rows: a row per county
/// (`kind` county, with its code), then the total (`kind` total).
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
        "no_receipt",
        "rung",
        "picked_up",
        "pressed",
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
                &p.no_receipt.to_string(),
                &p.rung.to_string(),
                &p.picked_up.to_string(),
                &p.pressed.to_string(),
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
    // The towns and the county, each place once (what the board's summary shows and what a
    // county hands upward; a place under two warnings has two rows above).
    let several = board.scope == "summary" || board.counties.len() > 1;
    let towns = board
        .towns
        .iter()
        .filter(|_| board.scope != "summary")
        .map(|t| ("town", t.code.as_str(), t.name.as_str(), &t.totals));
    let counties = board
        .counties
        .iter()
        .filter(|_| several)
        .map(|t| ("county", t.code.as_str(), t.name.as_str(), &t.totals));
    let total = if several { "total" } else { "county" };
    let summary = towns
        .chain(counties)
        .chain(std::iter::once((total, "", "", &board.totals)));
    for (kind, code, name, t) in summary {
        w.row([
            "",
            "",
            "",
            code,
            kind,
            name,
            "",
            if kind == "town" { code } else { "" },
            "",
            "",
            &t.places.to_string(),
            "",
            "",
            "",
            "",
            "",
            "",
            &t.answered.to_string(),
            &t.silent.to_string(),
            &t.at_post.to_string(),
            &t.to_move.to_string(),
            &t.moved.to_string(),
            &t.refused.to_string(),
            &t.to_check.to_string(),
            "",
            "",
            "",
            "",
        ])?;
    }
    w.into_string()
}

/// The agency a warning's reason names (the typhoon rule writes whose track it followed).
fn agency_of(reason: &str) -> Option<String> {
    crate::correlate::why::read(reason)
        .get("agency")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod agency_tests {
    #[test]
    fn the_agency_comes_from_the_reason() {
        let r = crate::correlate::why::said(
            "typhoon_area",
            serde_json::json!({"count": 3, "tier": "red", "agency": "BABJ"}),
        );
        assert_eq!(super::agency_of(&r).as_deref(), Some("BABJ"));
        assert_eq!(super::agency_of("free text"), None);
    }
}

#[cfg(test)]
mod plan_tests {
    /// The board's read of the calls stays within the index: a column added to the statement
    /// but not to `respond_call_open` would read each call's row (and its warning's words)
    /// again, 3 GB for a province's storm.
    #[test]
    fn the_boards_calls_are_read_from_the_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path().join("plan.db")).unwrap();
        for with_times in [false, true] {
            let plan: Vec<String> = store
                .read_blocking(move |c| {
                    let sql = format!(
                        "EXPLAIN QUERY PLAN {}",
                        super::calls_sql("SELECT value FROM json_each(?1)", with_times)
                    );
                    let mut q = c.prepare(&sql)?;
                    let r = q
                        .query_map(["[\"a:1\", \"b:2\"]"], |r| r.get(3))?
                        .collect::<crate::store::sql::Result<Vec<String>>>()?;
                    Ok(r)
                })
                .unwrap();
            assert!(
                plan.iter()
                    .any(|d| d.contains("USING COVERING INDEX respond_call_open")),
                "with_times {with_times}: {plan:?}"
            );
        }
    }
}
