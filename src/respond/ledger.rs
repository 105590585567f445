//! The evacuation ledger (应转尽转): the one definition of "to move", "moved", "refused",
//! "back home" and "to check" that the board, its API and CSV, the after-action report, the
//! drill's summary, `status` and `/metrics` all read. ARCHITECTURE.md ("The evacuation
//! ledger") states the rules; this module is the only code that applies them.
//!
//! - A row of the ledger is a **village** (its groups and the hazard sites that name it first
//!   are parts of it), or a hazard site that lies in no village. Each is counted once in any
//!   view, whatever number of warnings cover it.
//! - **To move** is the registry's figure, never a report: the village's own when a warning of
//!   the view covers the village (it counts its sites' people), otherwise the sum of its
//!   covered sites' figures.
//! - A report is a **running total for one place** (a village, a group or a site); the
//!   place's figure is its latest report, whoever sent it and under whichever warning of the
//!   view (the same people are not moved twice because two warnings cover them).
//! - A village's **reported** figure is the largest of: its own latest figure, the sum of its
//!   groups' latest figures, the sum of its sites' latest figures. Never their sum: a village
//!   lead's figure already counts the groups' people. A hazard site threatening several
//!   villages is counted on its first village's row; the other villages it threatens, when no
//!   warning of the view covers them otherwise, are folded into that row and their figures
//!   added (they are other people).
//! - **Moved** is reported capped at to move (a village lead's figure under a warning that
//!   covers only one of its sites counts up to that site's figure). **To check** (待核实) is
//!   what a report went beyond its own place's registered figure, once its sender confirmed
//!   it: shown to the office, never added to moved. **Refused** is capped at what is left to
//!   move. **Back home** is the most any report after the lift said (people home stay home),
//!   at most moved.

use std::collections::{BTreeSet, HashMap};

use crate::store::sql::Conn;
use rusqlite::params;
use serde::Serialize;

use crate::registry::Registry;

/// One ledger row's figures in one view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// People the registry says must move.
    pub to_move: u32,
    /// People reported moved, at most `to_move`.
    pub moved: u32,
    /// People reported refusing or unable to move, at most `to_move - moved`.
    pub refused: u32,
    /// People reported back home after the lift, at most `moved`.
    pub returned: u32,
    /// People reported beyond the registered figure: for the office to check (待核实).
    pub beyond: u32,
}

impl Figures {
    /// Add another row's figures (a town's or the county's total over distinct rows).
    pub fn add(&mut self, o: &Figures) {
        self.to_move = self.to_move.saturating_add(o.to_move);
        self.moved = self.moved.saturating_add(o.moved);
        self.refused = self.refused.saturating_add(o.refused);
        self.returned = self.returned.saturating_add(o.returned);
        self.beyond = self.beyond.saturating_add(o.beyond);
    }
}

/// What a view's warnings cover of one ledger row: the village itself, and which of its sites.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cover {
    /// The village itself is warned.
    pub itself: bool,
    /// Its warned hazard sites.
    pub sites: BTreeSet<String>,
}

impl Cover {
    /// Take in another warning's cover of the same row (the county view).
    pub fn merge(&mut self, o: &Cover) {
        self.itself |= o.itself;
        self.sites.extend(o.sites.iter().cloned());
    }

    /// The people to move for this cover (the registry's figures): the village's own when it
    /// is covered itself (its figure counts the people of its sites and groups: the registry
    /// says so of `Village::evacuate`), otherwise its covered sites' figures summed.
    pub fn to_move(&self, reg: &Registry, row: &str) -> u32 {
        // The registry's own to-move figures (`evacuate`): a village that registered nobody
        // to move has nobody to move (the population is only the bound a report is held to).
        let figure = |id: &str| {
            reg.village(id)
                .map(|v| v.evacuate)
                .or_else(|| reg.site(id).map(|s| s.evacuate))
                .unwrap_or(0)
        };
        if self.itself {
            return figure(row);
        }
        self.sites
            .iter()
            .map(|s| figure(s))
            .fold(0u32, u32::saturating_add)
    }
}

/// The ledger row a place (village, group, site) belongs to: a village itself, a group's
/// village (its code's first 12 digits), a site's first village; a site in no village, or
/// anything the registry does not know, is its own row.
pub fn row_of(reg: &Registry, place: &str) -> String {
    if reg.village(place).is_some() {
        return place.to_string();
    }
    if let Some(s) = reg.site(place) {
        return s
            .villages
            .first()
            .cloned()
            .unwrap_or_else(|| place.to_string());
    }
    if place.len() == 15
        && place.bytes().all(|b| b.is_ascii_digit())
        && let Some(v) = place.get(..12)
        && reg.village(v).is_some()
    {
        return v.to_string();
    }
    place.to_string()
}

/// The latest report of one place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Latest {
    moved: u32,
    refused: u32,
    returned: u32,
    /// How far the report went beyond its own place's registered figure (confirmed by its
    /// sender: `respond_evacuation.beyond`).
    beyond: u32,
}

/// A row's reports, by part.
#[derive(Debug, Clone, Copy, Default)]
struct Parts {
    own: Latest,
    groups: Latest,
    sites: Latest,
    /// Other villages a covered site of this row threatens (their people, not this one's).
    folded: Latest,
}

/// A row's figure: the largest of its own, its groups' and its sites' (each counts the same
/// people), plus the villages folded into it (other people).
fn largest(p: &Parts, f: impl Fn(&Latest) -> u32) -> u32 {
    f(&p.own)
        .max(f(&p.groups))
        .max(f(&p.sites))
        .saturating_add(f(&p.folded))
}

/// The reports of a view (the latest per place over its warnings), grouped by ledger row.
#[derive(Debug, Clone, Default)]
pub struct Reports {
    rows: HashMap<String, Parts>,
    /// Rows with a report made under the view's own warnings.
    own: std::collections::HashSet<String>,
}

impl Reports {
    /// Read the latest report of every place over `lineages`.
    pub fn read(c: &Conn<'_>, reg: &Registry, lineages: &[String]) -> anyhow::Result<Reports> {
        Reports::read_in(c, reg, lineages, None)
    }

    /// As [`Reports::read`], and people moved reported under any other warning between
    /// `during.0` and `during.1` (a warning's life): the same people, whichever warning their
    /// lead answered.
    pub fn read_in(
        c: &Conn<'_>,
        reg: &Registry,
        lineages: &[String],
        during: Option<(jiff::Timestamp, jiff::Timestamp)>,
    ) -> anyhow::Result<Reports> {
        let keys = serde_json::to_string(lineages)?;
        let (from, to) = during.map_or((None, None), |(a, b)| {
            (Some(crate::store::stamp(a)), Some(crate::store::stamp(b)))
        });
        let mut q = c.prepare_cached(
            "SELECT target, people, refused, returned, lineage IN (SELECT value FROM json_each(?1)),
                    beyond
             FROM respond_evacuation
             WHERE lineage IN (SELECT value FROM json_each(?1)) OR (at >= ?2 AND at <= ?3)
             ORDER BY at, answer",
        )?;
        let rows = q.query_map(params![keys, from, to], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
        let n = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
        let mut latest: HashMap<String, Latest> = HashMap::new();
        let mut own_rows = std::collections::HashSet::new();
        for row in rows {
            let (target, people, refused, returned, own, registered) = row?;
            if own {
                own_rows.insert(row_of(reg, &target));
            }
            let l = latest.entry(target).or_default();
            // A return report keeps the moved figure it came after (people is 0 there).
            if returned.is_none() || people > 0 {
                l.moved = n(people);
                l.refused = refused.map_or(l.refused, n);
                l.beyond = registered.map_or(0, |r| n(people).saturating_sub(n(r)));
            }
            // Back home only as reported after this view's own lifts; the most any report
            // said (people home stay home: a lead who saw fewer does not send them back).
            if let (Some(b), true) = (returned, own) {
                l.returned = l.returned.max(n(b));
            }
        }
        let mut r = Reports::from_latest(reg, latest);
        r.own = own_rows;
        Ok(r)
    }

    fn from_latest(reg: &Registry, latest: HashMap<String, Latest>) -> Reports {
        let mut rows: HashMap<String, Parts> = HashMap::new();
        for (target, l) in latest {
            let row = row_of(reg, &target);
            let parts = rows.entry(row.clone()).or_default();
            let part = if target == row {
                &mut parts.own
            } else if reg.site(&target).is_some() {
                &mut parts.sites
            } else {
                &mut parts.groups
            };
            part.moved = part.moved.saturating_add(l.moved);
            part.refused = part.refused.saturating_add(l.refused);
            part.returned = part.returned.saturating_add(l.returned);
            part.beyond = part.beyond.saturating_add(l.beyond);
        }
        Reports {
            rows,
            own: Default::default(),
        }
    }

    /// A row's figures against `to_move` (from its [`Cover`]).
    pub fn figures(&self, row: &str, to_move: u32) -> Figures {
        let Some(p) = self.rows.get(row) else {
            return Figures {
                to_move,
                ..Figures::default()
            };
        };
        let reported = largest(p, |l| l.moved);
        let moved = reported.min(to_move);
        let refused = largest(p, |l| l.refused).min(to_move - moved);
        Figures {
            to_move,
            moved,
            refused,
            returned: largest(p, |l| l.returned).min(moved),
            beyond: largest(p, |l| l.beyond),
        }
    }

    /// The reports as a view with `covers` counts them: a village a covered hazard site
    /// threatens, but that is not covered itself nor holds a covered site, is part of that
    /// site's row (the site's people live in several villages; their leads report by
    /// village). Without this its reports would sit on a row with nothing to move.
    pub fn folded(
        &self,
        reg: &Registry,
        covers: &std::collections::BTreeMap<String, Cover>,
    ) -> Reports {
        Reports::fold(self.clone(), reg, covers)
    }

    /// [`Reports::folded`] for a caller that asks only about `rows` and `covers`' rows (one
    /// warning's rows on the board): the same figures for those rows, from a copy of just the
    /// reports that can count on them (those rows and the villages the covered sites
    /// threaten), not of every report in force — once per warning, that copy was quadratic
    /// over a province.
    pub fn folded_for<'r>(
        &self,
        reg: &Registry,
        covers: &std::collections::BTreeMap<String, Cover>,
        rows: impl IntoIterator<Item = &'r str>,
    ) -> Reports {
        let mut out = Reports::default();
        let mut keep = |id: &str| {
            if let Some(p) = self.rows.get(id) {
                out.rows.insert(id.to_string(), *p);
            }
            if self.own.contains(id) {
                out.own.insert(id.to_string());
            }
        };
        for row in rows {
            keep(row);
        }
        for (row, cover) in covers {
            keep(row);
            for site in &cover.sites {
                for v in reg
                    .site(site)
                    .map(|s| s.villages.as_slice())
                    .unwrap_or_default()
                {
                    keep(v);
                }
            }
        }
        Reports::fold(out, reg, covers)
    }

    /// Fold into each covered row the villages its covered sites threaten (see
    /// [`Reports::folded`]), in `out`.
    fn fold(
        mut out: Reports,
        reg: &Registry,
        covers: &std::collections::BTreeMap<String, Cover>,
    ) -> Reports {
        for (row, cover) in covers {
            for site in &cover.sites {
                let Some(s) = reg.site(site) else { continue };
                for v in &s.villages {
                    if v == row || covers.contains_key(v) {
                        continue;
                    }
                    let Some(p) = out.rows.remove(v) else {
                        continue;
                    };
                    let into = &mut out.rows.entry(row.clone()).or_default().folded;
                    into.moved = into.moved.saturating_add(largest(&p, |l| l.moved));
                    into.refused = into.refused.saturating_add(largest(&p, |l| l.refused));
                    into.returned = into.returned.saturating_add(largest(&p, |l| l.returned));
                    into.beyond = into.beyond.saturating_add(largest(&p, |l| l.beyond));
                    if out.own.remove(v) {
                        out.own.insert(row.clone());
                    }
                }
            }
        }
        out
    }

    /// Rows with reports made under the view's own warnings (a report for a row none of them
    /// covers still shows).
    pub fn rows(&self) -> impl Iterator<Item = &str> {
        self.own.iter().map(String::as_str)
    }
}

/// The county view of the warnings in force: each row once, with the union of its covers.
pub fn county(
    c: &Conn<'_>,
    reg: &Registry,
) -> anyhow::Result<std::collections::BTreeMap<String, Figures>> {
    let lineages = crate::correlate::store::lineages(c)?;
    let keys: Vec<String> = lineages.iter().map(|l| l.key()).collect();
    let mut covers: std::collections::BTreeMap<String, Cover> = Default::default();
    for l in &lineages {
        for (row, cover) in covers_of(reg, l.places.iter().map(|(id, h)| (id.as_str(), h.kind))) {
            covers.entry(row).or_default().merge(&cover);
        }
    }
    let reports = Reports::read(c, reg, &keys)?.folded(reg, &covers);
    Ok(rows_of(reg, covers, &reports, std::iter::empty()))
}

/// The rows a warning's places make, with what it covers of each.
pub fn covers_of<'a>(
    reg: &Registry,
    places: impl Iterator<Item = (&'a str, crate::correlate::PlaceKind)>,
) -> std::collections::BTreeMap<String, Cover> {
    use crate::correlate::PlaceKind;
    let mut out: std::collections::BTreeMap<String, Cover> = Default::default();
    for (id, kind) in places {
        match kind {
            PlaceKind::Village => out.entry(id.to_string()).or_default().itself = true,
            PlaceKind::Site => {
                out.entry(row_of(reg, id))
                    .or_default()
                    .sites
                    .insert(id.to_string());
            }
            PlaceKind::Unit => {}
        }
    }
    out
}

/// The view's totals report by report, for a chart: each (time, place, people moved or
/// back home) in time order replaces that place's latest figure, and the totals are taken
/// as the ledger takes them. Returns (time, totals) after each report.
pub fn replay(
    reg: &Registry,
    covers: &std::collections::BTreeMap<String, Cover>,
    events: &[(jiff::Timestamp, String, Option<u32>, Option<u32>)],
) -> Vec<(jiff::Timestamp, Figures)> {
    let mut latest: HashMap<String, Latest> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for (at, target, moved, returned) in events {
        let l = latest.entry(target.clone()).or_default();
        if let Some(m) = moved {
            l.moved = *m;
        }
        if let Some(b) = returned {
            l.returned = l.returned.max(*b);
        }
        let reports = Reports::from_latest(reg, latest.clone()).folded(reg, covers);
        let t = total(
            covers
                .iter()
                .map(|(row, c)| reports.figures(row, c.to_move(reg, row)))
                .collect::<Vec<_>>()
                .iter(),
        );
        out.push((*at, t));
    }
    out
}

/// One warning's covers (as its last message before a lift named its places), threatened
/// villages included.
pub fn covers_of_lineage(
    c: &Conn<'_>,
    reg: &Registry,
    lineage: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Cover>> {
    let mut covers = last_covers(c, reg, lineage)?;
    with_threatened(reg, &mut covers);
    Ok(covers)
}

/// What a warning's last message before any lift covered.
fn last_covers(
    c: &Conn<'_>,
    reg: &Registry,
    lineage: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Cover>> {
    let targets = crate::correlate::store::last_targets(c, lineage)?;
    Ok(covers_of(
        reg,
        targets
            .iter()
            .flat_map(|t| t.places.iter())
            .map(|p| (p.id.as_str(), p.kind)),
    ))
}

/// A view's rows and their figures: what `covers` covers, the villages its sites threaten,
/// and the rows in `reported` (reported on under the view's own warnings, covered or not).
fn rows_of<'a>(
    reg: &Registry,
    mut covers: std::collections::BTreeMap<String, Cover>,
    reports: &Reports,
    reported: impl Iterator<Item = &'a str>,
) -> std::collections::BTreeMap<String, Figures> {
    with_threatened(reg, &mut covers);
    for row in reported {
        covers.entry(row.to_string()).or_default();
    }
    covers
        .into_iter()
        .map(|(row, cover)| {
            let f = reports.figures(&row, cover.to_move(reg, &row));
            (row, f)
        })
        .collect()
}

/// Add the villages a covered site threatens that nothing covers themselves: rows with
/// nothing of their own to move (their people and reports count on the site's row, see
/// [`Reports::folded`]), but places whose leads were called all the same.
pub fn with_threatened(reg: &Registry, covers: &mut std::collections::BTreeMap<String, Cover>) {
    let threatened: Vec<String> = covers
        .values()
        .flat_map(|c| c.sites.iter())
        .filter_map(|s| reg.site(s))
        .flat_map(|s| s.villages.iter().cloned())
        .collect();
    for v in threatened {
        covers.entry(v).or_default();
    }
}

/// The county a row is in: the first six digits of its village's town (empty for a site in
/// no village). An office over several counties sums its rows by this (the board's county
/// lines, `status`).
pub fn county_of<'a>(reg: &'a Registry, row: &str) -> &'a str {
    reg.village(row)
        .map(|v| crate::registry::model::county_code(&v.town))
        .unwrap_or_default()
}

/// The rows' figures summed by county ([`county_of`]): (code, name as the board names it,
/// rows, figures), by code.
pub fn by_county(
    reg: &Registry,
    rows: &std::collections::BTreeMap<String, Figures>,
) -> Vec<(String, String, usize, Figures)> {
    let mut out: std::collections::BTreeMap<&str, (usize, Figures)> = Default::default();
    for (row, f) in rows {
        let e = out.entry(county_of(reg, row)).or_default();
        e.0 += 1;
        e.1.add(f);
    }
    out.into_iter()
        .map(|(code, (n, f))| (code.to_string(), super::place_name(reg, code), n, f))
        .collect()
}

/// Sum of figures over rows.
pub fn total<'a>(rows: impl Iterator<Item = &'a Figures>) -> Figures {
    let mut t = Figures::default();
    for f in rows {
        t.add(f);
    }
    t
}

/// One warning's own view, in force or lifted (the after-action report, the return home):
/// its rows as its last message before any lift covered them, with the reports made under it
/// or, for people moved, under any warning during its life (issue to lift);
/// a row reported on that it did not cover is listed with nothing to move (so what was
/// reported there shows as to check, never in a total).
pub fn lineage(
    c: &Conn<'_>,
    reg: &Registry,
    lineage: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Figures>> {
    let store = crate::correlate::store::of_lineage(c, lineage)?;
    let life = store
        .first()
        .and_then(|m| m.sent.parse::<jiff::Timestamp>().ok())
        .map(|from| {
            let to = crate::correlate::store::lifted_at(c, lineage)
                .ok()
                .flatten()
                .unwrap_or(jiff::Timestamp::MAX);
            (from, to)
        });
    let covers = last_covers(c, reg, lineage)?;
    let reports = Reports::read_in(c, reg, &[lineage.to_string()], life)?.folded(reg, &covers);
    Ok(rows_of(reg, covers, &reports, reports.rows()))
}

/// The whole storm (a drill's summary, `status` after the fact): every warning ever issued,
/// each row once over the union of what their last messages before a lift covered, with
/// every report made under any of them.
pub fn storm(
    c: &Conn<'_>,
    reg: &Registry,
) -> anyhow::Result<std::collections::BTreeMap<String, Figures>> {
    let keys = crate::correlate::store::all_lineages(c)?;
    let mut covers: std::collections::BTreeMap<String, Cover> = Default::default();
    for key in &keys {
        if let Some(t) = crate::correlate::store::last_targets(c, key)? {
            for (row, cover) in covers_of(reg, t.places.iter().map(|p| (p.id.as_str(), p.kind))) {
                covers.entry(row).or_default().merge(&cover);
            }
        }
    }
    let reports = Reports::read(c, reg, &keys)?.folded(reg, &covers);
    Ok(rows_of(reg, covers, &reports, reports.rows()))
}
