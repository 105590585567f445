//! A silent loudspeaker is like a silent village head: broadcast alarms (a terminal that
//! failed or did not confirm play by its deadline, a broadcast refused or never taken) are read
//! from dispatch's `broadcast_alarm` queue with respond's own cursor and turned into people:
//! the persons called for that village and warning are told to warn by gong, siren or door to
//! door; with nobody called there, the town's duty persons; an alarm about a whole broadcast
//! goes to the county's.

use crate::store::sql::{OptionalExtension, Tx};
use jiff::Timestamp;
use rusqlite::params;

use crate::correlate::Tier;
use crate::dispatch::broadcast::jobs;
use crate::dispatch::outbox::{self, Notice, Policy};
use crate::registry::Registry;

const CURSOR: &str = "broadcast_alarm";

/// What one pass did: (alarms read, messages queued).
pub fn run_once(
    tx: &Tx<'_>,
    reg: &Registry,
    policy: &Policy,
    now: Timestamp,
) -> anyhow::Result<(usize, usize)> {
    let after = super::cursor(tx, CURSOR)?;
    let alarms = jobs::alarms(tx, after)?;
    let lang = crate::templates::lang(&policy.lang);
    let mut sent = 0;
    for a in &alarms {
        let hazard = a.lineage.split(':').next().unwrap_or_default().to_string();
        // The latest call for this warning gives the decision, tier and words.
        let call: Option<(i64, i64, String)> = tx
            .query_row(
                "SELECT decision, version, tier FROM respond_call WHERE lineage = ?1 ORDER BY id DESC LIMIT 1",
                params![a.lineage],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((decision, version, tier)) = call else {
            tracing::warn!(lineage = %a.lineage, "broadcast alarm for a warning nobody was called for: {}", a.detail);
            continue;
        };
        let tier = Tier::parse(&tier).unwrap_or(Tier::Red);
        // Whom to tell.
        let mut to: Vec<(String, String)> = Vec::new();
        if let Some(v) = &a.village {
            to = tx
                .prepare_cached(
                    "SELECT DISTINCT person, mobile FROM respond_call WHERE lineage = ?1 AND target = ?2
                       AND state IN ('open', 'answered', 'covered', 'silent')",
                )?
                .query_map(params![a.lineage, v], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<crate::store::sql::Result<_>>()?;
            if to.is_empty() {
                to = reg
                    .duties_for(v.get(..9).unwrap_or(v))
                    .filter_map(|(_, p)| p.map(|p| (p.id.clone(), p.mobile.clone())))
                    .collect();
            }
        } else if let Some(county) = reg.data.units.iter().find(|u| u.parent.is_none()) {
            to = reg
                .duties_for(&county.code)
                .filter_map(|(_, p)| p.map(|p| (p.id.clone(), p.mobile.clone())))
                .collect();
        }
        let place = a
            .village
            .as_deref()
            .map_or_else(|| a.lineage.clone(), |v| super::place_name(reg, v));
        let text = crate::templates::env()?
            .get_template(&format!("sms/terminal.{lang}"))?
            .render(minijinja::context! {
                office => &policy.office, exercise => policy.exercise,
                event => crate::templates::event_name(&hazard, lang)?, tier => tier.as_str(),
                tier_zh => tier.zh(), place => &place,
                terminal => a.terminal.as_deref().unwrap_or(""), detail => &a.detail,
            })?;
        for (person, mobile) in &to {
            let n = Notice {
                decision,
                lineage: a.lineage.clone(),
                version: version as u32,
                hazard: hazard.clone(),
                tier,
                person: person.clone(),
                mobile: mobile.clone(),
                text: text.trim().to_string(),
                purpose: format!("terminal:{}", a.id),
                chase: true,
            };
            sent += usize::from(outbox::notice(tx, &n, now)?.is_some());
        }
        crate::store::audit::append(
            tx,
            &crate::store::audit::Entry {
                at: now.to_zoned(jiff::tz::TimeZone::UTC),
                actor: "respond".into(),
                kind: format!("terminal.{}", a.kind),
                subject: a.terminal.clone().unwrap_or_else(|| a.lineage.clone()),
                detail: serde_json::json!({
                    "alarm": a.id, "lineage": a.lineage, "village": a.village, "detail": a.detail,
                    "told": to.iter().map(|t| &t.0).collect::<Vec<_>>(),
                }),
            },
        )?;
    }
    if let Some(last) = alarms.last() {
        super::advance(tx, CURSOR, last.id)?;
    }
    Ok((alarms.len(), sent))
}
