//! The evacuation ledger's invariants over random report sequences (ARCHITECTURE.md, "The
//! evacuation ledger"): several leads and places, warnings that overlap, repeats, corrections
//! and returns, on the fixture county (synthetic).
//!
//! - every row: moved + refused ≤ to move, back home ≤ moved;
//! - the county's totals are the sum over its distinct rows, whatever number of warnings
//!   cover a row (the same warnings twice give the same figures);
//! - a report repeated changes nothing; the latest report of a place stands.

use std::collections::BTreeMap;

use crate::common::backend::{Place, on_both};
use proptest::prelude::*;
use stormbell::correlate::PlaceKind;
use stormbell::registry::Registry;
use stormbell::respond::ledger::{self, Cover, Figures, Reports};
use stormbell::store::Store;

/// One report: (warning, place, person, people, refused, back home).
type Report = (usize, usize, usize, u32, u32, Option<u32>);

/// The places reports may name: villages with their sites, a group, a site of each.
fn places(reg: &Registry) -> Vec<(String, PlaceKind)> {
    let mut out = Vec::new();
    for s in reg
        .data
        .sites
        .iter()
        .filter(|s| !s.villages.is_empty())
        .take(4)
    {
        out.push((s.id.clone(), PlaceKind::Site));
        for v in &s.villages {
            out.push((v.clone(), PlaceKind::Village));
        }
    }
    if let Some(g) = reg.data.groups.first() {
        out.push((g.village.clone(), PlaceKind::Village));
    }
    out.dedup();
    out
}

fn write(store: &Store, reports: &[Report], targets: &[String]) {
    /// (warning, place, person, people, refused, back home, at, answer)
    type Row = (String, String, String, u32, u32, Option<u32>, String, i64);
    let rows: Vec<Row> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                format!("flash_flood:L{}", r.0),
                targets[r.1 % targets.len()].clone(),
                format!("P{}", r.2),
                r.3,
                r.4,
                r.5,
                format!("2019-08-09T{:02}:{:02}:00.000Z", 2 + i / 60, i % 60),
                i as i64 + 1,
            )
        })
        .collect();
    store
        .write_blocking(move |tx| {
            tx.execute("DELETE FROM respond_evacuation", ())?;
            for (lineage, target, person, people, refused, returned, at, answer) in &rows {
                // As intake keeps them: the latest per (warning, place, person).
                tx.execute(
                    "INSERT INTO respond_evacuation
                       (lineage, target, person, people, refused, returned, at, answer)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (lineage, target, person) DO UPDATE SET people = ?4,
                       refused = ?5, returned = coalesce(?6, respond_evacuation.returned), at = ?7,
                       answer = ?8",
                    rusqlite::params![
                        lineage, target, person, people, refused, returned, at, answer
                    ],
                )?;
            }
            Ok(())
        })
        .unwrap();
}

/// The county view of `warnings` (each a set of places), as the board computes it.
fn view(
    store: &Store,
    reg: &std::sync::Arc<Registry>,
    warnings: &[Vec<(String, PlaceKind)>],
) -> BTreeMap<String, Figures> {
    // Every report was made under a warning in force.
    let keys: Vec<String> = (0..3).map(|i| format!("flash_flood:L{i}")).collect();
    let mut covers: BTreeMap<String, Cover> = BTreeMap::new();
    for w in warnings {
        for (row, c) in ledger::covers_of(reg, w.iter().map(|(id, k)| (id.as_str(), *k))) {
            covers.entry(row).or_default().merge(&c);
        }
    }
    let read = {
        let r = reg.clone();
        store
            .read_blocking(move |c| Reports::read(c, &r, &keys))
            .unwrap()
    };
    let reports = read.folded(reg, &covers);
    // The board's fold of one warning's rows only (copying just what can count on them)
    // gives those rows the same figures as the fold of everything — asked also about rows
    // outside the covers (the rows of people called), with something to move or nothing.
    let asked: Vec<String> = reg
        .data
        .groups
        .iter()
        .map(|g| ledger::row_of(reg, &g.code))
        .chain(
            warnings
                .iter()
                .flatten()
                .map(|(id, _)| ledger::row_of(reg, id)),
        )
        .collect();
    let only = read.folded_for(reg, &covers, asked.iter().map(String::as_str));
    for row in covers.keys().chain(asked.iter()) {
        for to_move in [0, 50, covers.get(row).map_or(0, |c| c.to_move(reg, row))] {
            assert_eq!(
                only.figures(row, to_move),
                reports.figures(row, to_move),
                "{row}, {to_move} to move"
            );
        }
    }
    covers
        .iter()
        .map(|(row, c)| (row.clone(), reports.figures(row, c.to_move(reg, row))))
        .collect()
}

on_both! {
fn the_ledger_counts_each_place_once_and_never_beyond_what_must_move(backend) {
    let place = Place::new(backend);
    let store = place.open();
    let reg = crate::common::county::registry(&store);
    let places = places(&reg);
    assert!(places.len() >= 5, "{places:?}");
    let targets: Vec<String> = places
        .iter()
        .map(|p| p.0.clone())
        .chain(reg.data.groups.first().map(|g| g.code.clone()))
        .collect();
    let n = places.len();
    let config = ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        covers in proptest::collection::vec(proptest::collection::vec(0..n, 1..5), 1..4),
        reports in proptest::collection::vec(
            (0..3usize, 0..16usize, 0..4usize, 0..400u32, 0..30u32, proptest::option::of(0..400u32)),
            0..40,
        ),
    )| {
        let warnings: Vec<Vec<(String, PlaceKind)>> = covers
            .iter()
            .map(|w| w.iter().map(|i| places[*i].clone()).collect())
            .collect();
        write(&store, &reports, &targets);
        let rows = view(&store, &reg, &warnings);
        for (row, f) in &rows {
            prop_assert!(f.moved + f.refused <= f.to_move, "{row}: {f:?}");
            prop_assert!(f.returned <= f.moved, "{row}: {f:?}");
        }
        // The county's total is the sum over distinct rows, and the same warnings twice over
        // (every place under two warnings) count nothing twice.
        let total = ledger::total(rows.values());
        let doubled: Vec<_> = warnings.iter().chain(warnings.iter()).cloned().collect();
        let again = view(&store, &reg, &doubled);
        prop_assert_eq!(&rows, &again);
        prop_assert_eq!(total, ledger::total(again.values()));
        let registered: u32 = rows
            .keys()
            .map(|r| {
                let mut c = Cover::default();
                for w in &warnings {
                    if let Some(x) = ledger::covers_of(&reg, w.iter().map(|(id, k)| (id.as_str(), *k))).get(r) {
                        c.merge(x);
                    }
                }
                c.to_move(&reg, r)
            })
            .sum();
        prop_assert_eq!(total.to_move, registered);
        // A report sent again (an SMSC redelivery, a double tap) changes nothing.
        if let Some(last) = reports.last() {
            let mut twice = reports.clone();
            twice.push(*last);
            write(&store, &twice, &targets);
            prop_assert_eq!(&view(&store, &reg, &warnings), &rows);
        }
    });
}
}
