//! The registry in the store: imports as versions, and the changes between them.
//!
//! An import compares the folder with the registry as it stands and writes only the
//! differences: a changed or removed record gets `valid_to` set, a new version is inserted.
//! The changes are reported in terms an office reads — a village's responsible person
//! replaced, a phone number changed, a threshold lowered, a site closed — and recorded in the
//! audit trail in the same transaction.

use std::collections::HashMap;

use crate::store::sql::{Conn, OptionalExtension, Tx};
use rusqlite::params;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::model::*;
use crate::store::audit;

/// One kind of record as stored.
trait Record: Serialize + DeserializeOwned {
    /// The `kind` column.
    const KIND: &'static str;
    /// Identity within the kind (stable across imports).
    fn key(&self) -> String;
    /// What it belongs to, for history lookups (a duty's target, a person's unit …).
    fn reference(&self) -> Option<&str>;
}

impl Record for Unit {
    const KIND: &'static str = "unit";
    fn key(&self) -> String {
        self.code.clone()
    }
    fn reference(&self) -> Option<&str> {
        self.parent.as_deref()
    }
}
impl Record for Village {
    const KIND: &'static str = "village";
    fn key(&self) -> String {
        self.code.clone()
    }
    fn reference(&self) -> Option<&str> {
        Some(&self.town)
    }
}
impl Record for Group {
    const KIND: &'static str = "group";
    fn key(&self) -> String {
        self.code.clone()
    }
    fn reference(&self) -> Option<&str> {
        Some(&self.village)
    }
}
impl Record for Site {
    const KIND: &'static str = "site";
    fn key(&self) -> String {
        self.id.clone()
    }
    fn reference(&self) -> Option<&str> {
        self.villages.first().map(String::as_str)
    }
}
impl Record for Threshold {
    const KIND: &'static str = "threshold";
    fn key(&self) -> String {
        format!("{}|{}|{}", self.site, self.minutes, self.soil.as_str())
    }
    fn reference(&self) -> Option<&str> {
        Some(&self.site)
    }
}
impl Record for Shelter {
    const KIND: &'static str = "shelter";
    fn key(&self) -> String {
        self.id.clone()
    }
    fn reference(&self) -> Option<&str> {
        Some(&self.village)
    }
}
impl Record for Terminal {
    const KIND: &'static str = "terminal";
    fn key(&self) -> String {
        self.id.clone()
    }
    fn reference(&self) -> Option<&str> {
        Some(&self.village)
    }
}
impl Record for Person {
    const KIND: &'static str = "person";
    fn key(&self) -> String {
        self.id.clone()
    }
    fn reference(&self) -> Option<&str> {
        Some(&self.unit)
    }
}
impl Record for Duty {
    const KIND: &'static str = "duty";
    fn key(&self) -> String {
        format!("{}|{}|{}", self.person, self.target, self.role)
    }
    fn reference(&self) -> Option<&str> {
        Some(&self.target)
    }
}

impl Record for Layer {
    const KIND: &'static str = "layer";
    fn key(&self) -> String {
        self.key.clone()
    }
    fn reference(&self) -> Option<&str> {
        None
    }
}

/// Counts for one kind of record in an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCount {
    /// The kind.
    pub kind: &'static str,
    /// Records after the import.
    pub total: usize,
    /// New.
    pub added: usize,
    /// Changed.
    pub changed: usize,
    /// Gone.
    pub removed: usize,
}

/// One change, as an office reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// What happened: `duty replaced`, `phone changed`, `person added`, `site closed` …
    pub what: String,
    /// The record it concerns.
    pub subject: String,
    /// Before → after, in words.
    pub detail: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The new import's number.
    pub import_id: i64,
    /// When (RFC 3339 with offset).
    pub at: String,
    /// SHA-256 over the files read.
    pub digest: String,
    /// The previous import, if any.
    pub previous: Option<i64>,
    /// Per kind.
    pub counts: Vec<KindCount>,
    /// Every change, grouped by kind.
    pub changes: Vec<Change>,
}

/// What changed for one kind. New records are borrowed from the dataset being imported (a
/// first import of a province adds a million of them: cloning them would double the memory);
/// old ones are read back from the store.
struct KindDiff<'a, T> {
    added: Vec<&'a T>,
    changed: Vec<(T, &'a T)>,
    removed: Vec<T>,
    total: usize,
}

fn load_current<T: Record>(
    tx: &Conn<'_>,
) -> crate::store::sql::Result<HashMap<String, (i64, String)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT rowid, key, data FROM reg_record WHERE kind = ?1 AND valid_to IS NULL",
    )?;
    let rows = stmt.query_map([T::KIND], |r| {
        Ok((r.get::<_, String>(1)?, (r.get(0)?, r.get(2)?)))
    })?;
    rows.collect()
}

fn sync<'a, T: Record>(
    tx: &Tx<'_>,
    import: i64,
    records: &'a [T],
) -> anyhow::Result<KindDiff<'a, T>> {
    let mut current = load_current::<T>(tx)?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO reg_record (kind, key, ref, data, valid_from) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut close = tx.prepare_cached("UPDATE reg_record SET valid_to = ?1 WHERE rowid = ?2")?;
    let mut diff = KindDiff {
        added: Vec::new(),
        changed: Vec::new(),
        removed: Vec::new(),
        total: records.len(),
    };
    for rec in records {
        let key = rec.key();
        let data = serde_json::to_string(rec)?;
        match current.remove(&key) {
            Some((_, old)) if old == data => {}
            Some((rowid, old)) => {
                close.execute(params![import, rowid])?;
                insert.execute(params![T::KIND, key, rec.reference(), data, import])?;
                diff.changed.push((serde_json::from_str(&old)?, rec));
            }
            None => {
                insert.execute(params![T::KIND, key, rec.reference(), data, import])?;
                diff.added.push(rec);
            }
        }
    }
    for (_, (rowid, old)) in current {
        close.execute(params![import, rowid])?;
        diff.removed.push(serde_json::from_str(&old)?);
    }
    Ok(diff)
}

fn count<T>(kind: &'static str, d: &KindDiff<'_, T>) -> KindCount {
    KindCount {
        kind,
        total: d.total,
        added: d.added.len(),
        changed: d.changed.len(),
        removed: d.removed.len(),
    }
}

/// Write a checked dataset as a new import inside `tx`, with its audit entry.
pub fn import(
    tx: &Tx<'_>,
    data: &Dataset,
    source: &str,
    digest: &str,
    at: &jiff::Zoned,
    actor: &str,
) -> anyhow::Result<ImportReport> {
    let at_text = crate::store::stamp(at.timestamp());
    let previous: Option<i64> = tx
        .query_row("SELECT max(id) FROM reg_import", (), |r| r.get(0))
        .optional()?
        .flatten();
    tx.execute(
        "INSERT INTO reg_import (at, source, digest, summary) VALUES (?1, ?2, ?3, '{}')",
        params![at_text, source, digest],
    )?;
    let import_id = tx.last_insert_rowid()?;

    let units = sync(tx, import_id, &data.units)?;
    let villages = sync(tx, import_id, &data.villages)?;
    let groups = sync(tx, import_id, &data.groups)?;
    let sites = sync(tx, import_id, &data.sites)?;
    let thresholds = sync(tx, import_id, &data.thresholds)?;
    let shelters = sync(tx, import_id, &data.shelters)?;
    let terminals = sync(tx, import_id, &data.terminals)?;
    let persons = sync(tx, import_id, &data.persons)?;
    let duties = sync(tx, import_id, &data.duties)?;
    // Base-map layers: kept with the import (the map of the registry in force), not counted
    // among the roster's changes.
    sync(tx, import_id, &data.layers)?;

    let names: HashMap<&str, &str> = data
        .persons
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .chain(
            persons
                .removed
                .iter()
                .map(|p| (p.id.as_str(), p.name.as_str())),
        )
        .collect();
    let place: HashMap<&str, &str> = data
        .villages
        .iter()
        .map(|v| (v.code.as_str(), v.name.as_str()))
        .chain(
            data.units
                .iter()
                .map(|u| (u.code.as_str(), u.name.as_str())),
        )
        .chain(data.sites.iter().map(|s| (s.id.as_str(), s.name.as_str())))
        .collect();
    let who = |id: &str| match names.get(id) {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    };
    let target = |t: &str| match place.get(t) {
        Some(n) => format!("{n} {t}"),
        None => t.to_string(),
    };

    let mut changes = Vec::new();
    // Duties first: a village's responsible person replaced is the change that matters most.
    let mut removed_duties: Vec<&Duty> = duties.removed.iter().collect();
    for added in &duties.added {
        if let Some(i) = removed_duties
            .iter()
            .position(|r| r.target == added.target && r.role == added.role)
        {
            let old = removed_duties.remove(i);
            changes.push(Change {
                what: "duty replaced".into(),
                subject: format!("{} {}", target(&added.target), added.role),
                detail: format!("{} → {}", who(&old.person), who(&added.person)),
            });
        } else {
            changes.push(Change {
                what: "duty added".into(),
                subject: format!("{} {}", target(&added.target), added.role),
                detail: who(&added.person),
            });
        }
    }
    for old in removed_duties {
        changes.push(Change {
            what: "duty removed".into(),
            subject: format!("{} {}", target(&old.target), old.role),
            detail: format!("{} no longer answers for it", who(&old.person)),
        });
    }
    for p in &persons.added {
        changes.push(Change {
            what: "person added".into(),
            subject: who(&p.id),
            detail: format!("{} {} {}", p.role, p.unit, p.mobile),
        });
    }
    for p in &persons.removed {
        changes.push(Change {
            what: "person removed".into(),
            subject: who(&p.id),
            detail: format!("was {} {}", p.role, p.unit),
        });
    }
    for (old, new) in &persons.changed {
        if old.mobile != new.mobile {
            changes.push(Change {
                what: "phone changed".into(),
                subject: who(&new.id),
                detail: format!("{} → {}", old.mobile, new.mobile),
            });
        }
        let mut other = Vec::new();
        if old.name != new.name {
            other.push(format!("name {} → {}", old.name, new.name));
        }
        if old.role != new.role || old.unit != new.unit || old.level != new.level {
            other.push(format!(
                "post {} {} → {} {}",
                old.role, old.unit, new.role, new.unit
            ));
        }
        if old.deputy != new.deputy {
            other.push(format!(
                "deputy {} → {}",
                old.deputy
                    .as_deref()
                    .map(who)
                    .unwrap_or_else(|| "none".into()),
                new.deputy
                    .as_deref()
                    .map(who)
                    .unwrap_or_else(|| "none".into())
            ));
        }
        if old.on_duty != new.on_duty {
            other.push(format!("on duty {} → {}", old.on_duty, new.on_duty));
        }
        if old.confirmed_on != new.confirmed_on {
            other.push(format!(
                "confirmed {} → {}",
                old.confirmed_on.map(|d| d.to_string()).unwrap_or_default(),
                new.confirmed_on.map(|d| d.to_string()).unwrap_or_default()
            ));
        }
        if !other.is_empty() {
            changes.push(Change {
                what: "person changed".into(),
                subject: who(&new.id),
                detail: other.join("; "),
            });
        }
    }
    for (old, new) in &thresholds.changed {
        changes.push(Change {
            what: "threshold changed".into(),
            subject: format!(
                "{} {} {}",
                target(&new.site),
                format_duration(new.minutes),
                new.soil.as_str()
            ),
            detail: format!(
                "准备转移 {} → {} mm, 立即转移 {} → {} mm",
                old.prepare_mm, new.prepare_mm, old.move_mm, new.move_mm
            ),
        });
    }
    for t in &thresholds.added {
        changes.push(Change {
            what: "threshold added".into(),
            subject: format!(
                "{} {} {}",
                target(&t.site),
                format_duration(t.minutes),
                t.soil.as_str()
            ),
            detail: format!("准备转移 {} mm, 立即转移 {} mm", t.prepare_mm, t.move_mm),
        });
    }
    for t in &thresholds.removed {
        changes.push(Change {
            what: "threshold removed".into(),
            subject: format!(
                "{} {} {}",
                t.site,
                format_duration(t.minutes),
                t.soil.as_str()
            ),
            detail: format!(
                "was 准备转移 {} mm, 立即转移 {} mm",
                t.prepare_mm, t.move_mm
            ),
        });
    }
    for (old, new) in &sites.changed {
        match (&old.status, &new.status) {
            (SiteStatus::Active, SiteStatus::Closed { on, reason }) => changes.push(Change {
                what: "site closed".into(),
                subject: format!("{} {}", new.id, new.name),
                detail: format!(
                    "销号{}{}",
                    on.map(|d| format!(" {d}")).unwrap_or_default(),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                ),
            }),
            (SiteStatus::Closed { .. }, SiteStatus::Active) => changes.push(Change {
                what: "site reopened".into(),
                subject: format!("{} {}", new.id, new.name),
                detail: "active again".into(),
            }),
            _ => changes.push(Change {
                what: "site changed".into(),
                subject: format!("{} {}", new.id, new.name),
                detail: describe_site_change(old, new),
            }),
        }
    }
    for s in &sites.added {
        changes.push(Change {
            what: "site added".into(),
            subject: format!("{} {}", s.id, s.name),
            detail: format!("{} in {}", s.kind.as_str(), s.villages.join(", ")),
        });
    }
    for s in &sites.removed {
        changes.push(Change {
            what: "site removed".into(),
            subject: format!("{} {}", s.id, s.name),
            detail: "no longer in the registry (closing it with status closed keeps the reason)"
                .into(),
        });
    }
    simple_changes(&mut changes, "village", &villages, |v| {
        format!("{} {}", v.code, v.name)
    });
    simple_changes(&mut changes, "group", &groups, |g| {
        format!("{} {}", g.code, g.name)
    });
    simple_changes(&mut changes, "unit", &units, |u| {
        format!("{} {}", u.code, u.name)
    });
    for (old, new) in &shelters.changed {
        changes.push(Change {
            what: "shelter changed".into(),
            subject: format!("{} {}", new.id, new.name),
            detail: if old.capacity != new.capacity {
                format!("capacity {} → {}", old.capacity, new.capacity)
            } else {
                "details changed".into()
            },
        });
    }
    simple_added_removed(&mut changes, "shelter", &shelters, |s| {
        format!("{} {}", s.id, s.name)
    });
    simple_changes(&mut changes, "terminal", &terminals, |t| {
        format!("{} {}", t.id, t.name)
    });

    let counts = vec![
        count("units", &units),
        count("villages", &villages),
        count("groups", &groups),
        count("sites", &sites),
        count("thresholds", &thresholds),
        count("shelters", &shelters),
        count("terminals", &terminals),
        count("persons", &persons),
        count("duties", &duties),
    ];
    let report = ImportReport {
        import_id,
        at: at_text,
        digest: digest.to_string(),
        previous,
        counts,
        changes,
    };
    let summary = serde_json::json!({ "counts": report.counts, "changes": report.changes.len() });
    tx.execute(
        "UPDATE reg_import SET summary = ?1 WHERE id = ?2",
        params![summary.to_string(), import_id],
    )?;
    let by_what = report
        .changes
        .iter()
        .fold(HashMap::<&str, usize>::new(), |mut m, c| {
            *m.entry(c.what.as_str()).or_default() += 1;
            m
        });
    audit::append(
        tx,
        &audit::Entry {
            at: at.clone(),
            actor: actor.to_string(),
            kind: "registry.imported".into(),
            subject: source.to_string(),
            detail: serde_json::json!({
                "import": import_id,
                "previous": previous,
                "digest": digest,
                "counts": report.counts,
                "changes": by_what,
            }),
        },
    )?;
    Ok(report)
}

fn describe_site_change(old: &Site, new: &Site) -> String {
    let mut parts = Vec::new();
    if old.people != new.people || old.households != new.households {
        parts.push(format!(
            "threatened {} households/{} people → {}/{}",
            old.households, old.people, new.households, new.people
        ));
    }
    if old.evacuate != new.evacuate {
        parts.push(format!("to move {} → {}", old.evacuate, new.evacuate));
    }
    if old.villages != new.villages {
        parts.push(format!(
            "villages {} → {}",
            old.villages.join(","),
            new.villages.join(",")
        ));
    }
    if parts.is_empty() {
        parts.push("details changed".into());
    }
    parts.join("; ")
}

fn simple_added_removed<T>(
    changes: &mut Vec<Change>,
    what: &str,
    d: &KindDiff<T>,
    name: impl Fn(&T) -> String,
) {
    for r in &d.added {
        changes.push(Change {
            what: format!("{what} added"),
            subject: name(r),
            detail: String::new(),
        });
    }
    for r in &d.removed {
        changes.push(Change {
            what: format!("{what} removed"),
            subject: name(r),
            detail: String::new(),
        });
    }
}

fn simple_changes<T>(
    changes: &mut Vec<Change>,
    what: &str,
    d: &KindDiff<T>,
    name: impl Fn(&T) -> String,
) {
    for (_, new) in &d.changed {
        changes.push(Change {
            what: format!("{what} changed"),
            subject: name(new),
            detail: "details changed".into(),
        });
    }
    simple_added_removed(changes, what, d, name);
}

/// The registry as it stands after import `import` (the latest when `None`).
pub fn load(conn: &Conn<'_>, import: Option<i64>) -> anyhow::Result<Dataset> {
    let mut d = Dataset::default();
    fn all<T: Record>(conn: &Conn<'_>, import: Option<i64>) -> anyhow::Result<Vec<T>> {
        // In the order they were imported (the rows of the office's files), on every engine: a
        // list whose order decides something (which of a site's thresholds is named as the
        // reason) must not depend on how an engine scans a table.
        let mut stmt = match import {
            None => conn.prepare_cached("SELECT data FROM reg_record WHERE kind = ?1 AND valid_to IS NULL AND CAST(?2 AS BIGINT) IS NULL ORDER BY rowid")?,
            Some(_) => conn.prepare_cached(
                "SELECT data FROM reg_record WHERE kind = ?1 AND valid_from <= ?2 AND (valid_to IS NULL OR valid_to > ?2)
                 ORDER BY rowid",
            )?,
        };
        let rows = stmt.query_map(params![T::KIND, import], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for data in rows {
            out.push(serde_json::from_str(&data?)?);
        }
        Ok(out)
    }
    d.units = all(conn, import)?;
    d.villages = all(conn, import)?;
    d.groups = all(conn, import)?;
    d.sites = all(conn, import)?;
    d.thresholds = all(conn, import)?;
    d.shelters = all(conn, import)?;
    d.terminals = all(conn, import)?;
    d.persons = all(conn, import)?;
    d.duties = all(conn, import)?;
    d.layers = all(conn, import)?;
    Ok(d)
}

/// An import, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ImportInfo {
    /// Number.
    pub id: i64,
    /// When.
    pub at: String,
    /// From where.
    pub source: String,
    /// Digest of the files.
    pub digest: String,
}

/// The newest import's number (none yet: `None`).
pub fn latest_import(conn: &Conn<'_>) -> crate::store::sql::Result<Option<i64>> {
    conn.query_row("SELECT max(id) FROM reg_import", (), |r| r.get(0))
}

/// Every import, oldest first.
pub fn imports(conn: &Conn<'_>) -> crate::store::sql::Result<Vec<ImportInfo>> {
    let mut stmt = conn.prepare("SELECT id, at, source, digest FROM reg_import ORDER BY id")?;
    let rows = stmt.query_map((), |r| {
        Ok(ImportInfo {
            id: r.get(0)?,
            at: r.get(1)?,
            source: r.get(2)?,
            digest: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// The import in effect at the end of `date` in time zone `tz`: the last one made on or before
/// that day.
pub fn import_on(
    conn: &Conn<'_>,
    date: jiff::civil::Date,
    tz: &jiff::tz::TimeZone,
) -> anyhow::Result<Option<i64>> {
    let end = date.tomorrow()?.to_zoned(tz.clone())?.timestamp();
    let mut best = None;
    for i in imports(conn)? {
        let at: jiff::Timestamp = i.at.parse()?;
        if at < end {
            best = Some(i.id);
        }
    }
    Ok(best)
}

/// Who answered for a target (village, group, unit or site) after a given import: the duties
/// and the persons holding them, as they stood then.
pub fn responsible(
    conn: &Conn<'_>,
    target: &str,
    import: i64,
) -> anyhow::Result<Vec<(Duty, Option<Person>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT data FROM reg_record WHERE kind = 'duty' AND ref = ?1
         AND valid_from <= ?2 AND (valid_to IS NULL OR valid_to > ?2)",
    )?;
    let duties: Vec<Duty> = stmt
        .query_map(params![target, import], |r| r.get::<_, String>(0))?
        .map(|d| Ok(serde_json::from_str(&d?)?))
        .collect::<anyhow::Result<_>>()?;
    let mut pstmt = conn.prepare_cached(
        "SELECT data FROM reg_record WHERE kind = 'person' AND key = ?1
         AND valid_from <= ?2 AND (valid_to IS NULL OR valid_to > ?2)",
    )?;
    let mut out = Vec::new();
    for d in duties {
        let p: Option<String> = pstmt
            .query_row(params![d.person, import], |r| r.get(0))
            .optional()?;
        let person = match p {
            Some(text) => Some(serde_json::from_str(&text)?),
            None => None,
        };
        out.push((d, person));
    }
    out.sort_by(|a, b| a.0.role.cmp(&b.0.role).then(a.0.person.cmp(&b.0.person)));
    Ok(out)
}

/// The current records of these broadcast terminals (those the registry knows; unknown ids
/// are left out, for the caller to report). Dispatch routes each by its kind and village.
pub fn terminals(conn: &Conn<'_>, ids: &[String]) -> anyhow::Result<Vec<Terminal>> {
    let mut stmt = conn.prepare_cached(
        "SELECT data FROM reg_record WHERE kind = 'terminal' AND key = ?1 AND valid_to IS NULL",
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(d) = stmt
            .query_row(params![id], |r| r.get::<_, String>(0))
            .optional()?
        {
            out.push(serde_json::from_str(&d)?);
        }
    }
    Ok(out)
}
