//! The duty office's page for a whole county under warning ("the office page for 250
//! villages renders in under 100 ms server-side"). The synthetic county (251 villages), a
//! storm over every village (a synthetic gauge at each, 120 mm in the hour) through the real
//! correlate engine, whose decisions queue every text and register every call; half the
//! persons answered, some evacuation reported. Then the page is built `--runs` times as the
//! server builds it (read the board from the store, render table and map) and the times are
//! printed.
//!
//!     cargo run --release --example office_board -- --runs 200
//!         [--db postgres://…/empty_db] [--registry DIR (a province: bench/registry_province.sh)]
//!         [--scopes all,summary,county (what is timed: the whole board, the summary by
//!          county, the first county's board)]
//!         [--viewers N (N pages asking for the office's default part at once: with the
//!          office's shared reads, then as N separate reads)]
//!         [--keep DIR (SQLite: the stormed store is kept in DIR and, when it is there
//!          already, read again without the setup: for profiling the reads)]
//!
//! On PostgreSQL the registry's in-memory index and the page's rendering are the same; what
//! moves is the store: the import, the warnings' commit (texts queued, calls and their ladder
//! steps registered), the registry loaded back, and the board's reads. Each is timed.

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use stormbell::correlate::engine::{self, Engine};
use stormbell::correlate::{Rules, Tier};
use stormbell::feeds::Observation;
use stormbell::feeds::rainfall::{RainBatch, RainReading};
use stormbell::respond::board::{self, Filter, Scope};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = common::arg("--runs").map_or(Ok(200), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let db = common::arg("--db");
    let folder = common::arg("--registry").map(std::path::PathBuf::from);
    let keep = common::arg("--keep").map(std::path::PathBuf::from);
    anyhow::ensure!(
        keep.is_none() || db.is_none(),
        "--keep keeps a SQLite store: not with --db"
    );
    if let Some(kept) = keep.as_deref().filter(|k| k.join("bench.db").exists()) {
        let store = stormbell::store::Store::open(kept.join("bench.db"))?;
        let reg = Arc::new(stormbell::registry::Registry::load(&store)?);
        let tz = stormbell::config::Config::load(None, &Default::default())?.time_zone();
        return read_board(store, reg, tz, runs).await;
    }
    let t = Instant::now();
    let home = keep.as_deref().unwrap_or(dir.path());
    std::fs::create_dir_all(home)?;
    let (store, reg) = common::registry_store(home, db.as_deref(), folder.as_deref())?;
    println!("registry imported in {:.1} s", t.elapsed().as_secs_f64());
    // What a node does at its start: the registry read back from the store.
    let t = Instant::now();
    let loaded = stormbell::registry::Registry::load(&store)?;
    println!(
        "registry loaded from the store in {:.2} s ({} villages)",
        t.elapsed().as_secs_f64(),
        loaded.data.villages.len()
    );
    drop(loaded);
    let cfg = stormbell::config::Config::load(None, &Default::default())?;
    let (policy, settings, tz) = (cfg.dispatch_policy(), cfg.respond.clone(), cfg.time_zone());
    let hook = stormbell::respond::chain(
        stormbell::dispatch::hook(policy.clone(), Arc::new(tokio::sync::Notify::new())),
        stormbell::respond::hook(settings.clone(), policy.clone()),
    );
    let mut e = Engine::new(Rules::national(), cfg.issuer(), reg.clone());
    let start: jiff::Timestamp = "2019-08-09T10:00:00+08:00".parse()?;
    let t0 = Instant::now();
    let mut commit = std::time::Duration::ZERO;
    for step in 0..=6 {
        let now = start + jiff::SignedDuration::from_mins(step * 10);
        if step == 6 {
            let readings = reg
                .data
                .villages
                .iter()
                .map(|v| RainReading {
                    station: format!("B{}", v.code),
                    name: Some(format!("{}（合成）", v.name)),
                    lon: Some(v.point.lon),
                    lat: Some(v.point.lat),
                    end: now,
                    minutes: 60,
                    mm: Some(120.0),
                    flag: None,
                })
                .collect();
            e.observe(&Observation::Rain(RainBatch { readings }), step);
        }
        let ev = Arc::new(e.evaluate(now));
        let (tz2, hook2) = (tz.clone(), hook.clone());
        let t = Instant::now();
        store
            .write(move |tx| engine::commit(tx, &ev, &[], now, &tz2, Some(&hook2)))
            .await?;
        commit += t.elapsed();
    }
    // Half the persons answer; every other answering village reports people moved.
    let rows: Vec<(String, String, String)> = store
        .read(|c| {
            let mut q = c.prepare(
                "SELECT DISTINCT person, target, lineage FROM respond_call
                 WHERE level IN ('village', 'site') ORDER BY person, target, lineage",
            )?;
            let r = q.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(r.collect::<Result<Vec<(String, String, String)>, _>>()?)
        })
        .await?;
    // (person, target) with the lineages that called them there.
    let mut persons: Vec<(String, String, Vec<String>)> = Vec::new();
    for (p, t, l) in rows {
        match persons.last_mut() {
            Some(last) if last.0 == p && last.1 == t => last.2.push(l),
            _ => persons.push((p, t, vec![l])),
        }
    }
    let answer_at = start + jiff::SignedDuration::from_mins(65);
    let s2 = settings.clone();
    let answering: Vec<(String, String, Vec<String>)> =
        persons.iter().step_by(2).cloned().collect();
    let n_answer = answering.len();
    store
        .write(move |tx| {
            for (i, (p, target, lineages)) in answering.iter().enumerate() {
                stormbell::respond::calls::answered(tx, p, lineages, i as i64 + 1, answer_at, &s2)?;
                if i % 2 == 0 {
                    tx.execute(
                        "INSERT INTO respond_evacuation (lineage, target, person, people, shelter, at, answer)
                         SELECT lineage, target, person, 20, NULL, ?3, ?4 FROM respond_call
                         WHERE person = ?1 AND target = ?2 LIMIT 1 ON CONFLICT DO NOTHING",
                        rusqlite::params![p, target, answer_at.to_string(), i as i64 + 1],
                    )?;
                }
            }
            Ok::<_, anyhow::Error>(())
        })
        .await?;
    let setup = t0.elapsed();
    println!(
        "setup {:.1} s (the warnings' commits {:.1} s): {} persons called, {} answered",
        setup.as_secs_f64(),
        commit.as_secs_f64(),
        persons.len(),
        n_answer,
    );
    read_board(store, reg, tz, runs).await
}

/// The board read as an office reads it: the whole page once, then each scope of `--scopes`
/// `runs` times, then `--viewers` pages at once.
async fn read_board(
    store: stormbell::store::Store,
    reg: Arc<stormbell::registry::Registry>,
    tz: jiff::tz::TimeZone,
    runs: usize,
) -> anyhow::Result<()> {
    let office = stormbell::web::office::Office::new(
        store.clone(),
        reg.clone(),
        tz.clone(),
        "东溟县防汛办",
        "http://127.0.0.1",
    )
    .await?;
    let session = stormbell::web::auth::Session {
        id: "bench".into(),
        user: "duty".into(),
        role: "officer".into(),
    };
    let first = office.board(Filter::All, Some(Scope::All)).await?;
    let places: usize = first.warnings.iter().map(|w| w.places.len()).sum();
    let page = office.page_html(&session, &first, "", "all")?;
    println!(
        "{} warnings, {} villages on the board ({} red); whole page {} KB",
        first.warnings.len(),
        places,
        first
            .warnings
            .iter()
            .flat_map(|w| w.places.iter())
            .filter(|p| p.tier == Tier::Red.as_str())
            .count(),
        page.len() / 1024
    );
    drop((first, page));
    // Each part of the board an office reads: `--scopes all,summary,county` (county: the
    // registry's first county with places on the board).
    let first_county = reg
        .data
        .villages
        .first()
        .and_then(|v| v.town.get(..6))
        .unwrap_or_default()
        .to_string();
    let scopes = common::arg("--scopes").unwrap_or_else(|| "all".into());
    for name in scopes.split(',') {
        let scope = match name {
            "county" => Scope::County(first_county.clone()),
            other => Scope::parse(other).ok_or_else(|| anyhow::anyhow!("no scope {other}"))?,
        };
        let mut read_ms = Vec::with_capacity(runs);
        let mut total_ms = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let b = office.board(Filter::All, Some(scope.clone())).await?;
            let r = t.elapsed();
            let html = office.page_html(&session, &b, "", scope.as_str())?;
            size = html.len();
            std::hint::black_box(html);
            read_ms.push(r.as_secs_f64() * 1e3);
            total_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for v in [&mut read_ms, &mut total_ms] {
            v.sort_by(f64::total_cmp);
        }
        let q = |v: &[f64], p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
        println!(
            "{name} ({}): board read: median {:.1} ms, p95 {:.1} ms; read + render: median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({runs} runs); page {} KB",
            scope.as_str(),
            q(&read_ms, 0.5),
            q(&read_ms, 0.95),
            q(&total_ms, 0.5),
            q(&total_ms, 0.95),
            q(&total_ms, 1.0),
            size / 1024
        );
    }
    // Pages open in the office, all told of a change at once: `--viewers N` asks for the
    // office's default part N times at once through the office (the requests that queue
    // behind a read share the next one), then as N separate reads at once (as before).
    let viewers: usize = common::arg("--viewers").map_or(Ok(0), |s| s.parse())?;
    if viewers > 0 {
        let scope = Scope::default_for(&reg);
        let t = Instant::now();
        let asks: Vec<_> = (0..viewers)
            .map(|_| {
                let (o, s) = (office.clone(), scope.clone());
                tokio::spawn(async move { o.board(Filter::All, Some(s)).await.map(|_| ()) })
            })
            .collect();
        for a in asks {
            a.await??;
        }
        let shared = t.elapsed();
        let t = Instant::now();
        let asks: Vec<_> = (0..viewers)
            .map(|_| {
                let (st, r, s, tz) = (store.clone(), reg.clone(), scope.clone(), tz.clone());
                tokio::spawn(async move {
                    st.read(move |c| {
                        board::read_scoped(c, &r, &tz, Filter::All, &s, board::AsOf::wall())
                    })
                    .await
                    .map(|_| ())
                })
            })
            .collect();
        for a in asks {
            a.await??;
        }
        let separate = t.elapsed();
        println!(
            "{viewers} pages asking for the {} at once: {:.0} ms with shared reads, {:.0} ms as separate reads ({:.1}x)",
            scope.as_str(),
            shared.as_secs_f64() * 1e3,
            separate.as_secs_f64() * 1e3,
            separate.as_secs_f64() / shared.as_secs_f64()
        );
    }
    Ok(())
}
