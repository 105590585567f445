//! How big a county's database grows over a flood season of quiet feed polling, and what
//! retention gives back a year later.
//!
//! A season (default 1 May – 31 October, 184 days) of the feeds a county polls, written
//! through the real paths: each document parsed by its feed kind, its items accepted (seen
//! keys, the inbox), the document kept, the inbox entry consumed, as the poller and correlate
//! do. The rain table is the county hydrology service's hourly table in its real column
//! layout (STCD, STNM, LGTD, LTTD, TM, DRP, INTV; `fixtures/feeds/rain-hourly.csv`) for
//! `--gauges` stations, a new table each hour; the province's CAP feed brings `--cap-per-day`
//! alerts a day (the real 12379 sample, its identifier varied). Then retention sweeps as of
//! 400 days after the season's end, and the file, its free pages and a compact copy are
//! measured. Storms' own records (warnings, texts, answers: kept for ever) are measured by the
//! drills and reported beside these in bench/README.md.
//!
//! `cargo bench --bench season_size -- [--gauges 120] [--days 184] [--cap-per-day 6]`

#[path = "common.rs"]
mod common;

use std::time::Instant;

use sha2::Digest;
use stormbell::feeds::{self, Document};
use stormbell::store::{Store, stamp};

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// The database's bytes: the file and its write-ahead log.
fn file_size(p: &std::path::Path) -> u64 {
    let wal = std::path::PathBuf::from(format!("{}-wal", p.display()));
    [p, wal.as_path()]
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum()
}

fn pragma(store: &Store, sql: &'static str) -> i64 {
    store
        .read_blocking(move |c| Ok(c.query_row(sql, (), |r| r.get::<_, i64>(0))?))
        .unwrap_or(0)
}

fn table_bytes(db: &std::path::Path) -> Vec<(String, u64)> {
    let c = rusqlite::Connection::open(db).expect("open");
    let mut rows: Vec<(String, u64)> = c
        .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8")
        .and_then(|mut s| {
            s.query_map((), |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect()
        })
        .unwrap_or_default();
    rows.retain(|(_, b)| *b > 0);
    rows
}

/// One poll's outcome as the poller writes it: feed, time, digest, body, items.
type Polled = (String, String, String, Vec<u8>, Vec<feeds::Item>);

fn rain_table(gauges: usize, end: jiff::Zoned, hour: u64) -> String {
    let mut out = String::from("STCD,STNM,LGTD,LTTD,TM,DRP,INTV\n");
    let tm = end.strftime("%Y-%m-%d %H:%M:%S");
    for g in 0..gauges {
        // Mostly dry hours, some wet, as a season's gauges read.
        let wet = (g as u64 * 7919 + hour * 104_729) % 11 == 0;
        let mm = if wet {
            ((g as u64 + hour) % 37) as f64 / 2.0
        } else {
            0.0
        };
        out.push_str(&format!(
            "704{:05},合成雨量站{g},{:.4},{:.4},{tm},{mm:.1},1.00\n",
            g,
            120.8 + (g % 20) as f64 * 0.02,
            28.0 + (g / 20) as f64 * 0.02
        ));
    }
    out
}

fn main() -> anyhow::Result<()> {
    let gauges: usize = common::arg("--gauges").map_or(Ok(120), |s| s.parse())?;
    let days: i64 = common::arg("--days").map_or(Ok(184), |s| s.parse())?;
    let cap_per_day: i64 = common::arg("--cap-per-day").map_or(Ok(6), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let (store, _) = common::county_store(dir.path())?;
    let db = store.path().to_path_buf();
    let limits = stormbell::cap::Limits::default();
    let rain_kind = feeds::kind("rainfall", limits).expect("rainfall kind");
    let cap_kind = feeds::kind("cap", limits).expect("cap kind");
    let cap_sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/real-formats/04-cap-samples/cap_12379_henan_2020-02-05_gale_blue_update.xml"),
    )?;
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai")?;
    let start: jiff::Zoned = "2027-05-01T00:00:00+08:00[Asia/Shanghai]".parse()?;
    let before = file_size(&db);
    let t0 = Instant::now();
    let mut docs = 0u64;
    let mut doc_bytes = 0u64;
    for day in 0..days {
        // One write per simulated day: the bench measures bytes, not commit latency.
        let mut batch: Vec<Polled> = Vec::new();
        for h in 0..24 {
            let end = start.checked_add(jiff::Span::new().days(day).hours(h + 1))?;
            let body = rain_table(gauges, end.clone(), (day * 24 + h) as u64).into_bytes();
            let digest = hex::encode(sha2::Sha256::digest(&body));
            let at = end.timestamp() + jiff::SignedDuration::from_mins(3);
            let parsed = rain_kind.parse(&Document {
                feed: "county-rain",
                url: "https://sw.example.cn/rain/hourly.csv",
                body: &body,
                digest: &digest,
                received: at,
            })?;
            batch.push(("county-rain".into(), stamp(at), digest, body, parsed.items));
        }
        for n in 0..cap_per_day {
            let id = format!("synthetic-{day}-{n}");
            let body = cap_sample
                .replacen("<identifier>", &format!("<identifier>{id}-"), 1)
                .into_bytes();
            let digest = hex::encode(sha2::Sha256::digest(&body));
            let at = start.checked_add(jiff::Span::new().days(day).hours(2 + n * 3))?;
            let parsed = cap_kind.parse(&Document {
                feed: "province-cap",
                url: "https://cap.example.cn/atom.xml",
                body: &body,
                digest: &digest,
                received: at.timestamp(),
            })?;
            batch.push((
                "province-cap".into(),
                stamp(at.timestamp()),
                digest,
                body,
                parsed.items,
            ));
        }
        docs += batch.len() as u64;
        doc_bytes += batch.iter().map(|b| b.3.len() as u64).sum::<u64>();
        store.write_blocking(move |tx| {
            for (feed, at, digest, body, items) in batch {
                let new = feeds::state::accept(tx, &feed, &at, items)?;
                if !new.is_empty() {
                    feeds::state::keep_document(tx, &digest, &feed, "bench", &at, &body)?;
                }
                let ids: Vec<i64> = new.iter().map(|(id, _)| *id).collect();
                feeds::state::consume(tx, &ids, &at)?;
            }
            Ok(())
        })?;
    }
    let wrote = t0.elapsed();
    let inbox = pragma(&store, "SELECT count(*) FROM feed_inbox");
    if !store.close(std::time::Duration::from_secs(60)) {
        anyhow::bail!("the database did not close");
    }
    let season_end = start.checked_add(jiff::Span::new().days(days))?;
    // Closing the last connection checkpoints the WAL: the file is then the whole database.
    let after_season = file_size(&db);
    let tables = table_bytes(&db);

    // A year and a bit later, the daemon's sweep.
    let store = Store::open(&db)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sweep_at = season_end.timestamp() + jiff::SignedDuration::from_hours(400 * 24 + 24);
    let t1 = Instant::now();
    let swept = rt.block_on(stormbell::retention::sweep(
        &store,
        sweep_at,
        jiff::SignedDuration::from_hours(400 * 24),
    ))?;
    let sweep_time = t1.elapsed();
    let free_pages = pragma(&store, "PRAGMA freelist_count");
    let page = pragma(&store, "PRAGMA page_size");
    let backup = stormbell::store::backup::take(
        &db,
        &dir.path().join("backup"),
        &sweep_at.to_zoned(tz.clone()),
    )?;
    drop(store);

    println!("season: {days} days, {gauges} gauges (hourly table), {cap_per_day} CAP alerts/day");
    println!(
        "written: {docs} documents ({:.1} MB of bodies), {inbox} inbox entries, in {:.1} s",
        mb(doc_bytes),
        wrote.as_secs_f64()
    );
    println!(
        "database: {:.1} MB empty county → {:.1} MB after the season",
        mb(before),
        mb(after_season)
    );
    for (t, b) in &tables {
        println!("  {t:<28} {:>8.1} MB", mb(*b));
    }
    println!(
        "retention a year later: {} rows deleted in {:.2} s ({:?}); {:.1} MB of the file free \
         for reuse; a backup (compact) is {:.1} MB",
        swept.total(),
        sweep_time.as_secs_f64(),
        swept.deleted,
        mb((free_pages * page) as u64),
        mb(backup.facts.bytes)
    );
    Ok(())
}
