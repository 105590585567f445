//! Shelters filling up: when evacuation reports put a shelter over 90 % of its capacity, the
//! duty persons of its town and of the county are told at once, by SMS, to open another. Once
//! per crossing: the mark goes when the load falls back under, so crossing again tells again.
//! The office's board shows the same flag (`board::Shelter::nearly_full`).

use crate::store::sql::{OptionalExtension, Tx};
use jiff::Timestamp;
use rusqlite::params;

use crate::correlate::Tier;
use crate::dispatch::outbox::{self, Policy};
use crate::registry::Registry;

/// After an evacuation report naming `reported` (a shelter's name or id): check its load over
/// the warnings in force, and tell the town and county if it just went over 90 %. Returns the
/// messages queued.
pub(crate) fn check(
    tx: &Tx<'_>,
    reg: &Registry,
    policy: &Policy,
    last: &outbox::LastSent,
    reported: &str,
    at: Timestamp,
) -> anyhow::Result<usize> {
    let reported = reported.trim();
    let Some(load) = super::board::shelter(tx, reg, reported)? else {
        return Ok(0);
    };
    let marked: bool = tx
        .query_row(
            "SELECT 1 FROM respond_shelter_alert WHERE shelter = ?1",
            [&load.id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !load.nearly_full {
        if marked {
            tx.prepare_cached("DELETE FROM respond_shelter_alert WHERE shelter = ?1")?
                .execute([&load.id])?;
        }
        return Ok(0);
    }
    if marked {
        return Ok(0);
    }
    tx.prepare_cached("INSERT INTO respond_shelter_alert (shelter, at, occupants, capacity) VALUES (?1, ?2, ?3, ?4)")?.execute(
        params![load.id, crate::store::stamp(at), load.occupants, load.capacity],
    )?;
    let lang = crate::templates::lang(&policy.lang);
    let percent = u64::from(load.occupants) * 100 / u64::from(load.capacity.max(1));
    let text = crate::templates::env()?
        .get_template(&format!("sms/shelter.{lang}"))?
        .render(minijinja::context! {
            office => &policy.office, exercise => policy.exercise, name => &load.name,
            occupants => load.occupants, capacity => load.capacity, percent => percent,
        })?;
    let village = reg
        .data
        .shelters
        .iter()
        .find(|s| s.id == load.id)
        .map(|s| s.village.clone())
        .unwrap_or_default();
    let sent = super::intake::tell_units(
        tx,
        reg,
        last,
        &village,
        Tier::Orange,
        text.trim(),
        (&format!("shelter:{}:{at}", load.id), true),
        at,
    )?;
    crate::store::audit::append(
        tx,
        &crate::store::audit::Entry::utc(
            at,
            "respond",
            "shelter.nearly_full",
            load.id.clone(),
            serde_json::json!({
                "name": load.name, "occupants": load.occupants, "capacity": load.capacity,
                "lineage": last.lineage, "told": sent,
            }),
        ),
    )?;
    tracing::warn!(shelter = %load.name, occupants = load.occupants, capacity = load.capacity, "shelter over 90 %: told {sent} duty person(s) of the town and county");
    Ok(sent)
}
