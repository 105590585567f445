//! A city's office over two counties (a synthetic registry made by
//! `fixtures/county/generate.py --counties 2`, province code 99, which does not exist), with a
//! storm over every village: the office sees the lines by county first, then one county's
//! board on demand, and every figure is the whole board's (ARCHITECTURE.md, "The evacuation
//! ledger"): the summary's totals, each county's line, each county's places and towns.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stormbell::correlate::Rules;
use stormbell::correlate::engine::{self, Engine};
use stormbell::feeds::Observation;
use stormbell::feeds::rainfall::{RainBatch, RainReading};
use stormbell::registry::{self, Encoding, Registry};
use stormbell::respond::board::{self, Board, Filter, Scope};
use stormbell::store::Store;

/// The two-county registry, generated into `dir`.
fn city(dir: &Path) -> PathBuf {
    let out = dir.join("city");
    let o = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county/generate.py"))
        .arg("--out")
        .arg(&out)
        .args(["--counties", "2"])
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A stream crossing the county line: the first zone of the first county threatens a
    // village of the second as well (its people counted on the zone's row, the village shown
    // in its own county).
    let sites = std::fs::read_to_string(out.join("sites.csv")).unwrap();
    let villages = std::fs::read_to_string(out.join("villages.csv")).unwrap();
    let across = villages
        .lines()
        .find(|l| l.starts_with("990102"))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = sites.lines().map(String::from).collect();
    let first = lines
        .iter_mut()
        .find(|l| l.starts_with("FF990101"))
        .unwrap();
    let mut fields: Vec<String> = first.split(',').map(String::from).collect();
    fields[3] = format!("{};{across}", fields[3]);
    *first = fields.join(",");
    std::fs::write(out.join("sites.csv"), lines.join("\n") + "\n").unwrap();
    out
}

/// Rain over every village, 120 mm in the last hour, through the real correlate engine with
/// dispatch's and respond's hooks; then every other person called answers and every other
/// answering place reports 20 people moved.
fn storm(store: &Store, reg: &Arc<Registry>) {
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    let (policy, settings, tz) = (cfg.dispatch_policy(), cfg.respond.clone(), cfg.time_zone());
    let hook = stormbell::respond::chain(
        stormbell::dispatch::hook(policy.clone(), Arc::new(tokio::sync::Notify::new())),
        stormbell::respond::hook(settings.clone(), policy),
    );
    let mut e = Engine::new(Rules::national(), cfg.issuer(), reg.clone());
    let start: jiff::Timestamp = "2019-08-09T10:00:00+08:00".parse().unwrap();
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
        let ev = e.evaluate(now);
        let (tz, hook) = (tz.clone(), hook.clone());
        store
            .write_blocking(move |tx| engine::commit(tx, &ev, &[], now, &tz, Some(&hook)))
            .unwrap();
    }
    let answer_at = start + jiff::SignedDuration::from_mins(65);
    store
        .write_blocking(move |tx| {
            let rows: Vec<(String, String, String)> = {
                let mut q = tx.prepare(
                    "SELECT DISTINCT person, target, lineage FROM respond_call
                     WHERE level IN ('village', 'site') ORDER BY person, target, lineage",
                )?;
                let r = q.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                r.collect::<Result<_, _>>()?
            };
            let mut by: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
            for (p, t, l) in rows {
                by.entry((p, t)).or_default().push(l);
            }
            for (i, ((p, target), lineages)) in by.iter().step_by(2).enumerate() {
                stormbell::respond::calls::answered(
                    tx,
                    p,
                    lineages,
                    i as i64 + 1,
                    answer_at,
                    &settings,
                )?;
                if i % 2 == 0 {
                    tx.execute(
                        "INSERT INTO respond_evacuation (lineage, target, person, people, shelter, at, answer)
                         SELECT lineage, target, person, 20, NULL, ?3, ?4 FROM respond_call
                         WHERE person = ?1 AND target = ?2 LIMIT 1 ON CONFLICT DO NOTHING",
                        rusqlite::params![p, target, answer_at.to_string(), i as i64 + 1],
                    )?;
                }
            }
            Ok(())
        })
        .unwrap();
}

fn read(store: &Store, reg: &Arc<Registry>, scope: Scope) -> Board {
    let (reg, tz) = (
        reg.clone(),
        jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
    );
    store
        .read_blocking(move |c| {
            board::read_scoped(c, &reg, &tz, Filter::All, &scope, board::AsOf::wall())
        })
        .unwrap()
}

/// Each warning's places by (warning, place), for comparing one board's rows with another's.
fn rows(b: &Board) -> BTreeMap<(String, String), board::Place> {
    b.warnings
        .iter()
        .flat_map(|w| {
            w.places
                .iter()
                .map(|p| ((w.lineage.clone(), p.id.clone()), p.clone()))
        })
        .collect()
}

on_both! {
    async fn a_city_office_reads_the_counties_first_and_each_county_adds_up(backend) {
        let dir = tempfile::tempdir().unwrap();
        let folder = city(dir.path());
        let place = Place::new(backend);
        let store = place.open();
        let prepared = registry::prepare_import(&folder, Encoding::Auto, &|_| {}).unwrap();
        let reg = Arc::new(Registry::new(prepared.data.clone()));
        prepared.commit(&store, "test", jiff::Zoned::now()).unwrap();
        assert_eq!(Scope::default_for(&reg), Scope::Summary);
        let (s2, r2) = (store.clone(), reg.clone());
        tokio::task::spawn_blocking(move || storm(&s2, &r2))
            .await
            .unwrap();

        let (s2, r2) = (store.clone(), reg.clone());
        let (all, summary) = tokio::task::spawn_blocking(move || {
            (read(&s2, &r2, Scope::All), read(&s2, &r2, Scope::Summary))
        })
        .await
        .unwrap();
        // A storm over both counties, with people answering and moving in both.
        let codes: Vec<String> = all.counties.iter().map(|c| c.code.clone()).collect();
        assert_eq!(codes, ["990101", "990102"], "{:?}", all.counties);
        for c in &all.counties {
            assert!(
                c.totals.places > 10 && c.totals.answered > 0 && c.totals.moved > 0,
                "{c:?}"
            );
        }
        // The zone across the line is warned: one of its villages is shown in each county.
        let across: Vec<&board::Place> = all
            .warnings
            .iter()
            .filter(|w| w.lineage == "flash_flood:FF990101001")
            .flat_map(|w| w.places.iter())
            .collect();
        let towns: std::collections::BTreeSet<&str> =
            across.iter().map(|p| &p.town[..6]).collect();
        assert_eq!(towns.len(), 2, "{across:?}");
        // The summary: the same figures, no place rows.
        assert_eq!(summary.scope, "summary");
        assert_eq!(summary.totals, all.totals);
        assert_eq!(summary.counties, all.counties);
        assert_eq!(summary.towns, all.towns);
        assert_eq!(summary.warnings.len(), all.warnings.len());
        for (s, a) in summary.warnings.iter().zip(&all.warnings) {
            assert_eq!((&s.lineage, &s.totals), (&a.lineage, &a.totals));
            assert!(s.places.is_empty());
        }
        assert!(summary.call_now.is_empty());
        let counted: u32 = summary.kinds.iter().map(|k| k.red + k.orange + k.yellow + k.blue).sum();
        assert_eq!(counted as usize, summary.warnings.len());
        // Each county's line is the sum of its towns', the total the sum of the counties'.
        let mut total = board::Totals::default();
        for c in &all.counties {
            let mut towns = board::Totals::default();
            for t in all.towns.iter().filter(|t| t.code.starts_with(&c.code)) {
                towns.add(&t.totals);
            }
            assert_eq!(towns, c.totals, "{}", c.code);
            total.add(&c.totals);
        }
        assert_eq!(total, all.totals);

        // One county's board: its line's figures, its towns, and exactly the whole board's
        // rows that lie in it, with the same figures.
        let whole = rows(&all);
        for c in &all.counties {
            let (s2, r2, code) = (store.clone(), reg.clone(), c.code.clone());
            let one = tokio::task::spawn_blocking(move || read(&s2, &r2, Scope::County(code)))
                .await
                .unwrap();
            assert_eq!(one.scope, "county");
            assert_eq!(one.county.as_ref().map(|c| c.0.as_str()), Some(c.code.as_str()));
            assert_eq!(one.totals, c.totals, "{}", c.code);
            assert_eq!(one.counties.len(), 1);
            let towns: Vec<_> = all
                .towns
                .iter()
                .filter(|t| t.code.starts_with(&c.code))
                .cloned()
                .collect();
            assert_eq!(one.towns, towns);
            let mine: BTreeMap<_, _> = whole
                .iter()
                .filter(|(_, p)| p.town.starts_with(&c.code))
                .map(|(k, p)| (k.clone(), p.clone()))
                .collect();
            assert!(!mine.is_empty());
            let got = rows(&one);
            let differ: std::collections::BTreeSet<_> = got
                .keys()
                .chain(mine.keys())
                .filter(|k| got.get(*k) != mine.get(*k))
                .collect();
            assert!(
                differ.is_empty(),
                "{}: rows unlike the whole board's: {differ:?}",
                c.code
            );
        }

        // `stormbell status` says the same per county.
        let mut status = common::stormbell_bare();
        place.env(&mut status, dir.path());
        let o = status.arg("status").output().unwrap();
        let said = String::from_utf8_lossy(&o.stdout).into_owned();
        for c in &all.counties {
            let t = &c.totals;
            let line = format!(
                "  {} {}: {} place(s): to move {}, moved {}, refused {}",
                c.name, c.code, t.places, t.to_move, t.moved, t.refused
            );
            assert!(said.contains(&line), "{line}\n{said}");
        }

        // Over HTTP, as the office and a script see it.
        let now = jiff::Timestamp::now();
        let token = store
            .write_blocking(move |tx| {
                stormbell::web::auth::put_user(
                    tx,
                    &stormbell::web::auth::NewUser::new("duty", "市防汛办 值班 2019", "officer")?,
                    now,
                )?;
                stormbell::web::auth::start(tx, "duty", now)
            })
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let office = stormbell::web::office::Office::new(
            store.clone(),
            reg.clone(),
            jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
            "合成市防汛办（合成）",
            &base,
        )
        .await
        .unwrap();
        let (server, stop) = common::serve_web(listener, &store, None, Some(office));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let get = |path: &str| {
            http.get(format!("{base}{path}"))
                .header("Authorization", format!("Bearer {token}"))
                .send()
        };
        // The office page opens on the counties, each a link to its board; no map, no rows.
        let page = get("/office").await.unwrap().text().await.unwrap();
        // Kept for a look (not checked against anything).
        let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
        std::fs::create_dir_all(&kept).ok();
        std::fs::write(kept.join(format!("city-{}.html", backend.name())), &page).ok();
        assert!(page.contains("各县（市、区）汇总"), "{page}");
        for c in &all.counties {
            assert!(page.contains(&format!("href=\"/office?county={}\"", c.code)), "{page}");
        }
        assert!(!page.contains("<svg") && !page.contains("data-place="), "no rows, no map");
        assert!(page.contains(&format!("data-places=\"{}\"", all.totals.places)));
        // A county's page: its name, its map, its rows, the way back.
        let c = &all.counties[1];
        let page = get(&format!("/office?county={}", c.code))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        std::fs::write(kept.join(format!("city-county-{}.html", backend.name())), &page).ok();
        assert!(page.contains(&format!("<b id=\"county-name\">{}</b>", c.name)), "{page}");
        assert!(page.contains("<svg") && page.contains("id=\"to-summary\""));
        assert!(page.contains(&format!("data-places=\"{}\"", c.totals.places)));
        assert!(page.contains(&format!("data-county=\"{}\"", c.code)));
        // The API reads the same figures; a county code of the wrong shape is the default.
        let api = get("/api/v1/board?county=99010")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let api: serde_json::Value = serde_json::from_str(&api).unwrap();
        assert_eq!(api["scope"], "summary");
        assert_eq!(api["totals"]["moved"], all.totals.moved);
        // The CSV of the summary: a line per county with its code, then the total.
        let csv = get("/api/v1/board.csv?county=summary")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lines: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
        let kinds: Vec<(&str, &str)> = lines.iter().map(|l| (l[4], l[3])).collect();
        assert_eq!(
            kinds,
            [("county", "990101"), ("county", "990102"), ("total", "")],
            "{csv}"
        );
        // `moved` is the 22nd column.
        assert_eq!(lines[2][21], all.totals.moved.to_string(), "{csv}");
        stop.fire();
        server.await.unwrap().unwrap();
    }
}
