//! Rules across files: every reference resolves, every id is unique, every active site has
//! someone who answers for it. Together with the per-row checks in [`super::load`], this is
//! what `stormbell registry check` reports and what `registry import` refuses on.

use std::collections::{HashMap, HashSet};

use crate::cap::Level as Severity;

use super::geo::km_between;
use super::load::{Findings, Lines, Loaded};
use super::model::*;

/// Check a loaded registry; findings are added to `out`. Each kind of rule is a function of
/// its own, in the order the report lists them.
pub fn check(loaded: &Loaded, out: &mut Findings) {
    let (d, l) = (&loaded.data, &loaded.lines);
    let keys = unique_keys(d, l, out);
    grid(d, l, &keys, out);
    sites_and_thresholds(d, l, &keys, out);
    shelters_and_terminals(d, l, &keys, out);
    persons_and_duties(d, l, &keys, out);
    far_villages(d, l, out);
}

fn err(out: &mut Findings, code: &'static str, file: &str, line: u32, col: &str, msg: String) {
    out.push(Severity::Error, code, file, Some(line), col, msg)
}

fn warn(out: &mut Findings, code: &'static str, file: &str, line: u32, col: &str, msg: String) {
    out.push(Severity::Warning, code, file, Some(line), col, msg)
}

/// Each file's keys, with the line each was first given on.
struct Keys<'a> {
    units: HashMap<&'a str, u32>,
    villages: HashMap<&'a str, u32>,
    groups: HashMap<&'a str, u32>,
    sites: HashMap<&'a str, u32>,
    persons: HashMap<&'a str, u32>,
}

fn dups<'a>(
    out: &mut Findings,
    file: &str,
    col: &str,
    keys: impl Iterator<Item = (&'a str, u32)>,
) -> HashMap<&'a str, u32> {
    let mut seen: HashMap<&'a str, u32> = HashMap::new();
    for (k, line) in keys {
        if let Some(first) = seen.get(k) {
            out.push(
                Severity::Error,
                "registry.duplicate",
                file,
                Some(line),
                col,
                format!("`{k}` is already used on line {first}"),
            );
        } else {
            seen.insert(k, line);
        }
    }
    seen
}

/// Unique keys, each file.
fn unique_keys<'a>(d: &'a Dataset, l: &Lines, out: &mut Findings) -> Keys<'a> {
    let units = dups(
        out,
        "units.csv",
        "code",
        d.units
            .iter()
            .map(|u| u.code.as_str())
            .zip(l.units.iter().copied()),
    );
    let villages = dups(
        out,
        "villages.csv",
        "code",
        d.villages
            .iter()
            .map(|v| v.code.as_str())
            .zip(l.villages.iter().copied()),
    );
    let groups = dups(
        out,
        "groups.csv",
        "code",
        d.groups
            .iter()
            .map(|g| g.code.as_str())
            .zip(l.groups.iter().copied()),
    );
    let sites = dups(
        out,
        "sites.csv",
        "id",
        d.sites
            .iter()
            .map(|s| s.id.as_str())
            .zip(l.sites.iter().copied()),
    );
    dups(
        out,
        "shelters.csv",
        "id",
        d.shelters
            .iter()
            .map(|s| s.id.as_str())
            .zip(l.shelters.iter().copied()),
    );
    dups(
        out,
        "terminals.csv",
        "id",
        d.terminals
            .iter()
            .map(|t| t.id.as_str())
            .zip(l.terminals.iter().copied()),
    );
    let persons = dups(
        out,
        "persons.csv",
        "id",
        d.persons
            .iter()
            .map(|p| p.id.as_str())
            .zip(l.persons.iter().copied()),
    );
    let mut threshold_keys: HashMap<(&str, u32, Soil), u32> = HashMap::new();
    for (t, &line) in d.thresholds.iter().zip(&l.thresholds) {
        if let Some(first) = threshold_keys.insert((t.site.as_str(), t.minutes, t.soil), line) {
            err(
                out,
                "registry.duplicate",
                "thresholds.csv",
                line,
                "duration",
                format!(
                    "{} {} for `{}` is already given on line {first}",
                    format_duration(t.minutes),
                    t.soil.as_str(),
                    t.site
                ),
            );
        }
    }
    Keys {
        units,
        villages,
        groups,
        sites,
        persons,
    }
}

/// The administrative grid: one county for a county office, several for a city's.
fn grid(d: &Dataset, l: &Lines, keys: &Keys<'_>, out: &mut Findings) {
    let Keys {
        units, villages, ..
    } = keys;
    let counties: HashSet<&str> = d.counties().map(|u| u.code.as_str()).collect();
    if counties.is_empty() {
        out.push(
            Severity::Error,
            "registry.county",
            "units.csv",
            None,
            "level",
            "no county row (level `county`)",
        );
    }
    for (u, &line) in d.units.iter().zip(&l.units) {
        if u.level != Level::Town {
            continue;
        }
        match u.parent.as_deref() {
            Some(p) if counties.contains(p) => {
                if !u.code.starts_with(p) {
                    err(
                        out,
                        "registry.code",
                        "units.csv",
                        line,
                        "code",
                        format!("town `{}` is not inside its county `{p}`", u.code),
                    );
                }
            }
            Some(p) => err(
                out,
                "registry.parent",
                "units.csv",
                line,
                "parent",
                format!("unknown county code `{p}`"),
            ),
            None => err(
                out,
                "registry.parent",
                "units.csv",
                line,
                "parent",
                format!("town `{}` must name its county as parent", u.code),
            ),
        }
    }
    for (v, &line) in d.villages.iter().zip(&l.villages) {
        if !units.contains_key(v.town.as_str()) {
            err(
                out,
                "registry.unknown-ref",
                "villages.csv",
                line,
                "town",
                format!("unknown town code `{}`", v.town),
            );
        } else if !v.code.starts_with(&v.town) {
            err(
                out,
                "registry.code",
                "villages.csv",
                line,
                "code",
                format!("village `{}` is not inside its town `{}`", v.code, v.town),
            );
        }
    }
    for (g, &line) in d.groups.iter().zip(&l.groups) {
        if !villages.contains_key(g.village.as_str()) {
            err(
                out,
                "registry.unknown-ref",
                "groups.csv",
                line,
                "village",
                format!("unknown village code `{}`", g.village),
            );
        }
    }
}

/// Sites and thresholds: references, windows in order, flash-flood zones with a threshold.
fn sites_and_thresholds(d: &Dataset, l: &Lines, keys: &Keys<'_>, out: &mut Findings) {
    let villages = &keys.villages;
    let site_kind: HashMap<&str, SiteKind> =
        d.sites.iter().map(|s| (s.id.as_str(), s.kind)).collect();
    for (s, &line) in d.sites.iter().zip(&l.sites) {
        for v in &s.villages {
            if !villages.contains_key(v.as_str()) {
                err(
                    out,
                    "registry.unknown-ref",
                    "sites.csv",
                    line,
                    "villages",
                    format!("unknown village code `{v}`"),
                );
            }
        }
    }
    let mut has_threshold: HashSet<&str> = HashSet::new();
    for (t, &line) in d.thresholds.iter().zip(&l.thresholds) {
        match site_kind.get(t.site.as_str()) {
            None => err(
                out,
                "registry.unknown-ref",
                "thresholds.csv",
                line,
                "site",
                format!("unknown site `{}`", t.site),
            ),
            Some(SiteKind::Forest) => err(
                out,
                "registry.threshold",
                "thresholds.csv",
                line,
                "site",
                format!(
                    "`{}` is a forest area; rainfall thresholds apply to flood, landslide and waterlogging sites",
                    t.site
                ),
            ),
            Some(_) => {
                has_threshold.insert(t.site.as_str());
            }
        }
    }
    // Longer windows should not have lower thresholds than shorter ones.
    let mut by_site: HashMap<(&str, Soil), Vec<(&Threshold, u32)>> = HashMap::new();
    for (t, &line) in d.thresholds.iter().zip(&l.thresholds) {
        by_site
            .entry((t.site.as_str(), t.soil))
            .or_default()
            .push((t, line));
    }
    for list in by_site.values_mut() {
        list.sort_by_key(|(t, _)| t.minutes);
        for w in list.windows(2) {
            let ((a, _), (b, line)) = (w[0], w[1]);
            if b.prepare_mm < a.prepare_mm || b.move_mm < a.move_mm {
                warn(
                    out,
                    "registry.threshold-order",
                    "thresholds.csv",
                    line,
                    "duration",
                    format!(
                        "`{}` {}: {}/{} mm is lower than the {} thresholds {}/{} mm; rain over a longer window cannot be less",
                        b.site,
                        format_duration(b.minutes),
                        b.prepare_mm,
                        b.move_mm,
                        format_duration(a.minutes),
                        a.prepare_mm,
                        a.move_mm
                    ),
                );
            }
        }
    }
    for (s, &line) in d.sites.iter().zip(&l.sites) {
        if s.kind == SiteKind::FlashFlood
            && s.status == SiteStatus::Active
            && !has_threshold.contains(s.id.as_str())
        {
            warn(
                out,
                "registry.no-threshold",
                "sites.csv",
                line,
                "id",
                format!(
                    "flash-flood zone `{}` has no critical rainfall in thresholds.csv: it can only be warned by upstream alerts",
                    s.id
                ),
            );
        }
    }
}

/// Shelters and terminals: in known villages.
fn shelters_and_terminals(d: &Dataset, l: &Lines, keys: &Keys<'_>, out: &mut Findings) {
    let villages = &keys.villages;
    for (s, &line) in d.shelters.iter().zip(&l.shelters) {
        if !villages.contains_key(s.village.as_str()) {
            err(
                out,
                "registry.unknown-ref",
                "shelters.csv",
                line,
                "village",
                format!("unknown village code `{}`", s.village),
            );
        }
        for v in &s.serves {
            if !villages.contains_key(v.as_str()) {
                err(
                    out,
                    "registry.unknown-ref",
                    "shelters.csv",
                    line,
                    "serves",
                    format!("unknown village code `{v}`"),
                );
            }
        }
    }
    for (t, &line) in d.terminals.iter().zip(&l.terminals) {
        if !villages.contains_key(t.village.as_str()) {
            err(
                out,
                "registry.unknown-ref",
                "terminals.csv",
                line,
                "village",
                format!("unknown village code `{}`", t.village),
            );
        }
    }
}

/// Persons and duties: references, deputies, and someone answering for every site and village.
fn persons_and_duties(d: &Dataset, l: &Lines, keys: &Keys<'_>, out: &mut Findings) {
    let Keys {
        units,
        villages,
        groups,
        sites,
        persons,
    } = keys;
    let unit_exists = |code: &str| {
        units.contains_key(code) || villages.contains_key(code) || groups.contains_key(code)
    };
    for (p, &line) in d.persons.iter().zip(&l.persons) {
        if !unit_exists(&p.unit) {
            err(
                out,
                "registry.unknown-ref",
                "persons.csv",
                line,
                "unit",
                format!("unknown {} code `{}`", p.level, p.unit),
            );
        }
        if let Some(dep) = &p.deputy {
            if dep == &p.id {
                err(
                    out,
                    "registry.deputy",
                    "persons.csv",
                    line,
                    "deputy",
                    "a person cannot be their own deputy (AB角)".into(),
                );
            } else if !persons.contains_key(dep.as_str()) {
                err(
                    out,
                    "registry.unknown-ref",
                    "persons.csv",
                    line,
                    "deputy",
                    format!("unknown person `{dep}`"),
                );
            }
        }
    }
    let mut answered: HashSet<&str> = HashSet::new();
    let mut seen_duty: HashMap<(&str, &str, &str), u32> = HashMap::new();
    for (u, &line) in d.duties.iter().zip(&l.duties) {
        if let Some(first) = seen_duty.insert(
            (u.person.as_str(), u.target.as_str(), u.role.as_str()),
            line,
        ) {
            warn(
                out,
                "registry.duplicate",
                "duties.csv",
                line,
                "person",
                format!("the same duty is already on line {first}"),
            );
        }
        if !persons.contains_key(u.person.as_str()) {
            err(
                out,
                "registry.unknown-ref",
                "duties.csv",
                line,
                "person",
                format!("unknown person `{}`", u.person),
            );
        }
        let known = if let Some(level) = Level::of_code(&u.target) {
            let found = unit_exists(&u.target);
            if !found {
                err(
                    out,
                    "registry.unknown-ref",
                    "duties.csv",
                    line,
                    "target",
                    format!("unknown {level} code `{}`", u.target),
                );
            }
            found
        } else {
            let found = sites.contains_key(u.target.as_str());
            if !found {
                err(
                    out,
                    "registry.unknown-ref",
                    "duties.csv",
                    line,
                    "target",
                    format!(
                        "`{}` is neither a unit, village or group code nor a site id",
                        u.target
                    ),
                );
            }
            found
        };
        if known && persons.contains_key(u.person.as_str()) {
            answered.insert(u.target.as_str());
        }
    }
    for (s, &line) in d.sites.iter().zip(&l.sites) {
        if s.status == SiteStatus::Active && !answered.contains(s.id.as_str()) {
            err(
                out,
                "registry.no-responsible",
                "sites.csv",
                line,
                "id",
                format!(
                    "site `{}` ({}) has no responsible person in duties.csv",
                    s.id, s.name
                ),
            );
        }
    }
    for (v, &line) in d.villages.iter().zip(&l.villages) {
        if !answered.contains(v.code.as_str()) {
            warn(
                out,
                "registry.no-responsible",
                "villages.csv",
                line,
                "code",
                format!(
                    "village `{}` ({}) has no responsible person in duties.csv",
                    v.code, v.name
                ),
            );
        }
    }
}

/// A village far from its town's other villages is usually a typo in a coordinate.
fn far_villages(d: &Dataset, l: &Lines, out: &mut Findings) {
    let mut towns: HashMap<&str, Vec<(f64, f64)>> = HashMap::new();
    for v in d
        .villages
        .iter()
        .filter(|v| super::load::in_china(&v.point))
    {
        towns
            .entry(v.town.as_str())
            .or_default()
            .push((v.point.lon, v.point.lat));
    }
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let centres: HashMap<&str, (f64, f64)> = towns
        .iter()
        .filter(|(_, pts)| pts.len() >= 3)
        .map(|(t, pts)| {
            (
                *t,
                (
                    median(pts.iter().map(|p| p.0).collect()),
                    median(pts.iter().map(|p| p.1).collect()),
                ),
            )
        })
        .collect();
    for (v, &line) in d.villages.iter().zip(&l.villages) {
        if !super::load::in_china(&v.point) {
            continue; // already an error
        }
        if let Some(&(clon, clat)) = centres.get(v.town.as_str()) {
            let km = km_between(v.point.lon, v.point.lat, clon, clat);
            if km > 50.0 {
                warn(
                    out,
                    "registry.far",
                    "villages.csv",
                    line,
                    "lon",
                    format!(
                        "{:.0} km from the other villages of its town: a typo in the coordinates?",
                        km
                    ),
                );
            }
        }
    }
}
