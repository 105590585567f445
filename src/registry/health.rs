//! The roster health report: the gaps that leave a village unwarned though the data "imports".
//!
//! Lists change every spring and after every election (换届); the failure to prevent is a new
//! village head who was never entered, a phone that rings on the wrong person's table, a
//! shelter too small for the villages sent to it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::model::*;

/// Limits for the report (from configuration).
#[derive(Debug, Clone, Copy)]
pub struct HealthLimits {
    /// More sites than this for one person is too many to watch in a storm.
    pub max_sites_per_person: usize,
    /// With no earlier import to compare with, persons not confirmed within this many days are
    /// listed.
    pub confirm_within_days: i64,
}

impl Default for HealthLimits {
    fn default() -> Self {
        HealthLimits {
            max_sites_per_person: 5,
            confirm_within_days: 365,
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// Which check: `village-unanswered`, `site-unanswered`, `overloaded-person`,
    /// `shared-phone`, `unconfirmed`, `shelter-short`, `village-no-terminal`, `no-deputy`.
    pub check: &'static str,
    /// What it concerns.
    pub subject: String,
    /// Why it is listed.
    pub detail: String,
}

/// Run every check. `confirmed_since`: persons confirmed before this date are listed (the date
/// of the previous import, or a year before the last one).
pub fn report(
    d: &Dataset,
    limits: HealthLimits,
    confirmed_since: Option<jiff::civil::Date>,
) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let persons: HashMap<&str, &Person> = d.persons.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut answered: HashMap<&str, Vec<&Duty>> = HashMap::new();
    for u in &d.duties {
        if persons.contains_key(u.person.as_str()) {
            answered.entry(u.target.as_str()).or_default().push(u);
        }
    }
    let who = |id: &str| match persons.get(id) {
        Some(p) => format!("{} ({}, {})", p.name, id, p.mobile),
        None => id.to_string(),
    };

    // Villages whose own level has nobody: the village-level responsible person is the one who
    // wakes the village.
    for v in &d.villages {
        let village_level = answered
            .get(v.code.as_str())
            .map(|ds| {
                ds.iter().any(|u| {
                    persons
                        .get(u.person.as_str())
                        .is_some_and(|p| p.level == Level::Village)
                })
            })
            .unwrap_or(false);
        if !village_level {
            gaps.push(Gap {
                check: "village-unanswered",
                subject: format!("{} {}", v.code, v.name),
                detail: "no village-level responsible person".into(),
            });
        }
    }
    for s in d.sites.iter().filter(|s| s.status == SiteStatus::Active) {
        if !answered.contains_key(s.id.as_str()) {
            gaps.push(Gap {
                check: "site-unanswered",
                subject: format!("{} {}", s.id, s.name),
                detail: "no responsible person".into(),
            });
        }
    }

    // People answering for too many sites.
    let active: HashSet<&str> = d
        .sites
        .iter()
        .filter(|s| s.status == SiteStatus::Active)
        .map(|s| s.id.as_str())
        .collect();
    let mut per_person: HashMap<&str, HashSet<&str>> = HashMap::new();
    for u in &d.duties {
        if active.contains(u.target.as_str()) {
            per_person
                .entry(u.person.as_str())
                .or_default()
                .insert(u.target.as_str());
        }
    }
    let mut overloaded: Vec<(&str, usize)> = per_person
        .iter()
        .filter(|(_, s)| s.len() > limits.max_sites_per_person)
        .map(|(p, s)| (*p, s.len()))
        .collect();
    overloaded.sort();
    for (p, n) in overloaded {
        gaps.push(Gap {
            check: "overloaded-person",
            subject: who(p),
            detail: format!(
                "answers for {n} sites (more than {})",
                limits.max_sites_per_person
            ),
        });
    }

    // One phone, several people: a warning meant for one reaches the other.
    let mut phones: HashMap<&str, Vec<&Person>> = HashMap::new();
    for p in &d.persons {
        phones.entry(p.mobile.as_str()).or_default().push(p);
    }
    let mut shared: Vec<(&str, Vec<&Person>)> =
        phones.into_iter().filter(|(_, ps)| ps.len() > 1).collect();
    shared.sort_by_key(|(m, _)| *m);
    for (mobile, ps) in shared {
        gaps.push(Gap {
            check: "shared-phone",
            subject: mobile.to_string(),
            detail: ps
                .iter()
                .map(|p| format!("{} ({}, {})", p.name, p.id, p.role))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }

    // Not confirmed since the last roster update.
    if let Some(since) = confirmed_since {
        for p in &d.persons {
            let stale = p.confirmed_on.is_none_or(|c| c < since);
            if stale {
                gaps.push(Gap {
                    check: "unconfirmed",
                    subject: who(&p.id),
                    detail: match p.confirmed_on {
                        Some(c) => {
                            format!("{} {}: last confirmed {c}, before {since}", p.role, p.unit)
                        }
                        None => format!("{} {}: never confirmed", p.role, p.unit),
                    },
                });
            }
        }
    }

    // A lead without a deputy (AB角): nobody takes the call when the lead cannot.
    for p in &d.persons {
        let is_lead = p.role.contains("防汛责任人") && !p.role.contains("副");
        if is_lead && p.deputy.is_none() {
            gaps.push(Gap {
                check: "no-deputy",
                subject: who(&p.id),
                detail: format!("{} {} has no deputy (AB角)", p.role, p.unit),
            });
        }
    }

    // Shelters too small for the people assigned to them. A village served by several
    // shelters sends its people in proportion to their capacity.
    let villages: HashMap<&str, &Village> =
        d.villages.iter().map(|v| (v.code.as_str(), v)).collect();
    let mut capacity_for: HashMap<&str, u64> = HashMap::new();
    for s in &d.shelters {
        for v in &s.serves {
            *capacity_for.entry(v.as_str()).or_default() += u64::from(s.capacity);
        }
    }
    for s in &d.shelters {
        let assigned: f64 = s
            .serves
            .iter()
            .filter_map(|v| villages.get(v.as_str()).map(|vil| (v, vil)))
            .map(|(v, vil)| {
                let total = capacity_for.get(v.as_str()).copied().unwrap_or(0).max(1) as f64;
                f64::from(vil.evacuate) * f64::from(s.capacity) / total
            })
            .sum();
        if assigned > f64::from(s.capacity) {
            gaps.push(Gap {
                check: "shelter-short",
                subject: format!("{} {}", s.id, s.name),
                detail: format!(
                    "capacity {} for about {:.0} people assigned",
                    s.capacity,
                    assigned.ceil()
                ),
            });
        }
    }
    // Villages with people to move and no shelter to move them to.
    let served: HashSet<&str> = d
        .shelters
        .iter()
        .flat_map(|s| s.serves.iter().map(String::as_str))
        .collect();
    for v in d
        .villages
        .iter()
        .filter(|v| v.evacuate > 0 && !served.contains(v.code.as_str()))
    {
        gaps.push(Gap {
            check: "village-no-shelter",
            subject: format!("{} {}", v.code, v.name),
            detail: format!("{} people to move and no shelter assigned", v.evacuate),
        });
    }
    // Villages no loudspeaker reaches.
    let with_terminal: HashSet<&str> = d.terminals.iter().map(|t| t.village.as_str()).collect();
    for v in d
        .villages
        .iter()
        .filter(|v| !with_terminal.contains(v.code.as_str()))
    {
        gaps.push(Gap {
            check: "village-no-terminal",
            subject: format!("{} {}", v.code, v.name),
            detail: "no broadcast terminal".into(),
        });
    }
    gaps
}
