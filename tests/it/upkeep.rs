//! Keeping a county's database for seasons, as its IT person does: backups taken while the
//! daemon writes and restored into a fresh folder; every schema the project has shipped
//! brought forward with data in it; retention that deletes the bulk and nothing a report or a
//! warning in force needs.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/scenarios")
        .join(name)
}

fn run(cmd: &mut Command) -> (Output, String) {
    let o = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, text)
}

fn ro(db: &Path) -> Connection {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, (), |r| r.get(0)).unwrap_or(0)
}

/// Every row of `table` (all columns, as text), ordered by its first column.
fn dump(c: &Connection, table: &str) -> Vec<Vec<String>> {
    dump_except(c, table, &[])
}

/// The same, without the columns named in `except` (ones the stage updates after the insert).
fn dump_except(c: &Connection, table: &str, except: &[&str]) -> Vec<Vec<String>> {
    let cols: Vec<String> = c
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<Vec<String>>>()
        .unwrap()
        .into_iter()
        .filter(|n| !except.contains(&n.as_str()))
        .collect();
    let mut stmt = c
        .prepare(&format!(
            "SELECT {} FROM {table} ORDER BY 1",
            cols.join(", ")
        ))
        .unwrap();
    let n = stmt.column_count();
    stmt.query_map((), |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_string(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                    rusqlite::types::ValueRef::Blob(b) => hex::encode(b),
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn audit_at(c: &Connection, seq: i64) -> String {
    c.query_row("SELECT hash FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
        .unwrap()
}

fn head_of(line: &str) -> (i64, String) {
    stormbell::store::checkpoint::parse_head(line).unwrap_or_else(|| panic!("head {line:?}"))
}

fn manifest_head(file: &Path) -> (i64, String) {
    let text = std::fs::read_to_string(format!("{}.manifest", file.display())).unwrap();
    let m = stormbell::store::backup::Manifest::parse(&text).unwrap();
    assert_eq!(m.chain, "intact", "{text}");
    head_of(&m.head)
}

fn only_backup(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn a_backup_taken_mid_storm_restores_into_a_fresh_folder_with_its_trail_and_records() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lekima");
    let db = out.join("drill.db");
    // The load: a typhoon drill writing warnings, texts, receipts and answers as fast as it can.
    let mut child = common::stormbell()
        .args(["replay", "--scenario"])
        .arg(scenario("lekima-2019"))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until("the drill's folder", 60, tmp.path(), || out.is_dir());
    common::wait_until(
        "texts delivered and answered in the drill",
        300,
        &out,
        || {
            assert!(child.try_wait().unwrap().is_none(), "the drill ended early");
            db.exists()
                && count(&ro(&db), "SELECT count(*) FROM respond_answer") > 50
                && count(
                    &ro(&db),
                    "SELECT count(*) FROM dispatch_message WHERE state = 'delivered'",
                ) > 50
        },
    );
    let under_load = tmp.path().join("backups-1");
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&db)
        .arg("backup")
        .arg(&under_load));
    assert!(o.status.success(), "{text}");
    // Still writing when the copy was done: it was taken under load.
    assert!(
        child.try_wait().unwrap().is_none(),
        "the drill had ended before the backup finished"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let backup = only_backup(&under_load);
    let (seq, hash) = manifest_head(&backup);
    assert!(text.contains(&format!("#{seq} sha256:{hash}")), "{text}");

    // Restored into a fresh folder (no database there yet).
    let fresh = tmp.path().join("fresh").join("stormbell.db");
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&fresh)
        .arg("restore")
        .arg(&backup));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("store.restored"), "{text}");
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&fresh)
        .args(["audit", "verify"]));
    assert!(o.status.success(), "{text}");

    // The restored trail is the original's, up to the backup's head, then the restore.
    let (orig, restored) = (ro(&db), ro(&fresh));
    assert_eq!(audit_at(&orig, seq), hash);
    assert_eq!(audit_at(&restored, seq), hash);
    let after: Vec<String> = restored
        .prepare("SELECT kind FROM audit WHERE seq > ?1 ORDER BY seq")
        .unwrap()
        .query_map([seq], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(after, ["store.restored"]);
    // Warnings and answers are written once (an answer's `held` and `notified` marks may be
    // set later): each restored row is the original's row.
    for (table, mutable) in [
        ("corr_warning", &[][..]),
        ("respond_answer", &["held", "notified"][..]),
    ] {
        let r = dump_except(&restored, table, mutable);
        let o = dump_except(&orig, table, mutable);
        assert!(!r.is_empty(), "{table} empty in the backup");
        assert_eq!(r[..], o[..r.len()], "{table}");
    }

    // At rest, a second backup restored over the first equals the original in full.
    let at_rest = tmp.path().join("backups-2");
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&db)
        .arg("backup")
        .arg(&at_rest));
    assert!(o.status.success(), "{text}");
    let second = only_backup(&at_rest);
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&fresh)
        .arg("restore")
        .arg(&second));
    assert!(o.status.success(), "{text}");
    // What it replaced is kept beside it, not deleted.
    let aside: Vec<_> = std::fs::read_dir(fresh.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("stormbell.db.before-restore-"))
        .collect();
    assert!(!aside.is_empty(), "nothing moved aside");
    let restored = ro(&fresh);
    for table in [
        "corr_warning",
        "dispatch_message",
        "dispatch_part",
        "respond_answer",
    ] {
        assert_eq!(dump(&restored, table), dump(&orig, table), "{table}");
    }
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&fresh)
        .args(["audit", "verify"]));
    assert!(o.status.success(), "{text}");
}

#[test]
fn a_restore_refuses_a_damaged_backup_and_a_running_daemon_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("live").join("stormbell.db");
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&db)
        .args(["registry", "import"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county")));
    assert!(o.status.success(), "{text}");
    let dir = tmp.path().join("b");
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&db)
        .arg("backup")
        .arg(&dir));
    assert!(o.status.success(), "{text}");
    let backup = only_backup(&dir);
    let before = std::fs::read(&db).unwrap();

    // A daemon holds the database: refused, and said why.
    let claim = stormbell::store::Claim::take(&db).unwrap();
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&db)
        .arg("restore")
        .arg(&backup));
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("a running stormbell holds"), "{text}");
    drop(claim);

    // A byte changed in the copy: refused against its manifest.
    let damaged = tmp.path().join("damaged.db");
    let mut bytes = std::fs::read(&backup).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&damaged, &bytes).unwrap();
    std::fs::copy(
        format!("{}.manifest", backup.display()),
        format!("{}.manifest", damaged.display()),
    )
    .unwrap();
    let (o, text) = run(common::stormbell()
        .arg("--db")
        .arg(&db)
        .arg("restore")
        .arg(&damaged));
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not the file its manifest describes"),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

/// Columns of `table` in `c`: (name, declared type, not null, has a default).
fn columns(c: &Connection, schema: &str, table: &str) -> Vec<(String, String, bool, bool)> {
    c.prepare(&format!("PRAGMA {schema}.table_info({table})"))
        .unwrap()
        .query_map((), |r| {
            Ok((
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<String>>(4)?.is_some(),
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn tables(c: &Connection) -> Vec<String> {
    c.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
         ORDER BY name",
    )
    .unwrap()
    .query_map((), |r| r.get(0))
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// Fill a database at an older schema with a finished drill's rows: every column both have,
/// and a plain value for a column only the old schema required. Rows the old schema refuses
/// (a state it did not know yet) are skipped. Returns rows copied per table.
fn fill(old: &Path, reference: &Path) -> BTreeMap<String, i64> {
    let c = Connection::open(old).unwrap();
    c.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
    c.execute("ATTACH DATABASE ?1 AS src", [reference.to_str().unwrap()])
        .unwrap();
    let src_tables: Vec<String> = c
        .prepare("SELECT name FROM src.sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut copied = BTreeMap::new();
    for table in tables(&c) {
        if !src_tables.contains(&table) {
            continue;
        }
        let theirs: Vec<String> = columns(&c, "src", &table)
            .into_iter()
            .map(|c| c.0)
            .collect();
        let mut names = Vec::new();
        let mut values = Vec::new();
        for (name, ty, not_null, default) in columns(&c, "main", &table) {
            if theirs.contains(&name) {
                names.push(name.clone());
                values.push(name);
            } else if not_null && !default {
                names.push(name);
                values.push(match ty.as_str() {
                    "INTEGER" | "REAL" => "0".to_string(),
                    "BLOB" => "x''".to_string(),
                    _ => "''".to_string(),
                });
            }
        }
        // The audit trail refuses some statements by trigger; INSERT it may take.
        let n = c
            .execute(
                &format!(
                    "INSERT OR IGNORE INTO main.{table} ({}) SELECT {} FROM src.{table}",
                    names.join(", "),
                    values.join(", ")
                ),
                [],
            )
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        copied.insert(table, n as i64);
    }
    c.execute_batch("DETACH DATABASE src;").unwrap();
    copied
}

/// A finished drill of the convective-cell scenario (run once for the tests that read it).
fn cell_drill() -> &'static Path {
    static DRILL: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, db) = DRILL.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("cell");
        let (o, text) = run(common::stormbell()
            .args(["replay", "--scenario"])
            .arg(scenario("cell-2024"))
            .arg("--out")
            .arg(&out));
        assert!(o.status.success(), "{text}");
        (tmp, out.join("drill.db"))
    });
    db
}

#[test]
fn every_schema_ever_shipped_migrates_forward_with_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = cell_drill().to_path_buf();
    let latest = stormbell::store::backup::latest_schema() as usize;
    let (o, text) = run(common::stormbell().arg("--version"));
    assert!(
        text.contains(&format!("database schema {latest}")),
        "{text}"
    );
    assert!(o.status.success());
    let full = {
        let c = ro(&reference);
        tables(&c)
            .into_iter()
            .map(|t| {
                let n = count(&c, &format!("SELECT count(*) FROM {t}"));
                (t, n)
            })
            .collect::<BTreeMap<_, _>>()
    };
    for version in 1..latest {
        let db = tmp.path().join(format!("v{version}.db"));
        stormbell::store::migrate_to(&db, version).unwrap();
        let copied = fill(&db, &reference);
        // Every table of that age that the drill filled got rows (not a vacuous upgrade).
        for (table, n) in &copied {
            if full.get(table).copied().unwrap_or(0) > 0 {
                assert!(*n > 0, "v{version}: no row of {table} fits the old schema");
            }
        }
        assert_eq!(
            stormbell::store::backup::schema_version(&stormbell::store::sql::Conn::lite(&ro(&db)))
                .unwrap(),
            version as i64
        );
        // Brought forward by opening it, as the daemon does at start.
        let store = stormbell::store::Store::open(&db)
            .unwrap_or_else(|e| panic!("v{version} does not migrate: {e}"));
        assert!(store.close(Duration::from_secs(30)));
        let c = ro(&db);
        assert_eq!(
            stormbell::store::backup::schema_version(&stormbell::store::sql::Conn::lite(&c))
                .unwrap(),
            latest as i64
        );
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "v{version}");
        let fk = count(&c, "SELECT count(*) FROM pragma_foreign_key_check");
        assert_eq!(fk, 0, "v{version}: foreign keys broken by the upgrade");
        // Nothing lost on the way.
        for (table, n) in &copied {
            let now = count(&c, &format!("SELECT count(*) FROM {table}"));
            assert!(now >= *n, "v{version}: {table} had {n} rows, has {now}");
        }
        match stormbell::store::audit::verify(&stormbell::store::sql::Conn::lite(&c)).unwrap() {
            stormbell::store::audit::Verification::Intact { entries, .. } => {
                assert_eq!(entries as i64, full["audit"], "v{version}")
            }
            broken => panic!("v{version}: {broken:?}"),
        }
        // And the status command reads it.
        let (o, text) = run(common::stormbell().arg("--db").arg(&db).arg("status"));
        assert!(o.status.success(), "v{version}: {text}");
        assert!(
            text.contains(&format!("schema:   {latest} (this stormbell: {latest})")),
            "{text}"
        );
    }
}

#[test]
fn check_in_links_of_the_old_link_table_move_onto_their_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("v24.db");
    // The last schema with a link table of its own, filled from a real drill.
    stormbell::store::migrate_to(&db, 24).unwrap();
    fill(&db, cell_drill());
    let c = Connection::open(&db).unwrap();
    let messages = count(&c, "SELECT count(*) FROM dispatch_message");
    assert!(messages >= 3, "{messages}");
    // Links for three messages, as the schema of that age stored them (created with the
    // message, expiring a day later).
    c.execute_batch(
        "INSERT INTO dispatch_link (token, message, decision, lineage, version, person, created, expires)
         SELECT printf('tok%019d', id), id, decision, lineage, version, person, created,
                '2030-01-01T00:00:00Z'
         FROM dispatch_message ORDER BY id LIMIT 3",
    )
    .unwrap();
    let links: Vec<(String, i64, String)> = c
        .prepare("SELECT token, message, person FROM dispatch_link ORDER BY message")
        .unwrap()
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(c);
    let store = stormbell::store::Store::open(&db).unwrap();
    for (token, message, person) in &links {
        let t = token.clone();
        let l = store
            .read_blocking(move |c| stormbell::dispatch::link::lookup(c, &t))
            .unwrap()
            .unwrap_or_else(|| panic!("{token} lost by the upgrade"));
        assert_eq!((&l.message, &l.person), (message, person));
        assert_eq!(l.expires, "2030-01-01T00:00:00Z".parse().unwrap());
    }
    let carried = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM dispatch_message WHERE token IS NOT NULL",
                (),
                |r| r.get::<_, i64>(0),
            )?)
        })
        .unwrap();
    assert_eq!(carried, 3, "only the messages that had a link carry one");
    assert!(store.close(Duration::from_secs(30)));
}

/// Each warning's report, by lineage, without when it was made and the trail's head then
/// (the sweep itself adds to the trail).
fn reports(
    store: &stormbell::store::Store,
) -> BTreeMap<String, stormbell::respond::report::Report> {
    let reg = stormbell::registry::Registry::load(store).unwrap();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    store
        .read_blocking(move |c| {
            let lineages: Vec<String> = c
                .prepare("SELECT DISTINCT lineage FROM corr_warning ORDER BY 1")?
                .query_map((), |r| r.get(0))?
                .collect::<stormbell::store::sql::Result<_>>()?;
            let mut out = BTreeMap::new();
            for l in lineages {
                let mut r = stormbell::respond::report::read(c, &reg, &tz, &l)?;
                r.generated.clear();
                r.audit_head = None;
                out.insert(l, r);
            }
            Ok(out)
        })
        .unwrap()
}

fn stamp_of(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// A season after the cell drill, with what it keeps: a sweep's `now` and retention period,
/// and a runtime to sweep on.
fn season_later() -> (
    tokio::runtime::Runtime,
    jiff::Timestamp,
    jiff::SignedDuration,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = "2026-12-03T08:00:00+08:00".parse().unwrap();
    (rt, now, jiff::SignedDuration::from_hours(400 * 24))
}

/// A copy of the cell drill's database at `db`, with the quiet weeks after the storm: the
/// gauge feed kept polling, hourly, and correlate consumed each batch (copies of the storm's
/// own batches, a fortnight on). Returns how many inbox rows that added.
fn cell_drill_and_quiet_weeks(db: &Path) -> usize {
    std::fs::copy(cell_drill(), db).unwrap();
    let n = Connection::open(db)
        .unwrap()
        .execute(
            "INSERT INTO feed_inbox (feed, key, received, observation, consumed)
             SELECT feed, key || '+14d',
                    strftime('%Y-%m-%dT%H:%M:%fZ', received, '+14 days'),
                    observation, strftime('%Y-%m-%dT%H:%M:%fZ', received, '+14 days')
               FROM feed_inbox",
            [],
        )
        .unwrap();
    assert!(n > 0);
    n
}

/// Retention on PostgreSQL, over the same record as on SQLite: the convective cell's drill
/// replayed on each engine, a fortnight of quiet polling after it, then a sweep a season
/// later. The same rows go, table by table, with the same cutoff; every report reads the same
/// after as before (and the same on both engines); the trail holds and says what went; a
/// second sweep finds nothing. Then, on a copy of the replay, the latest warning never
/// lifted: it is in force, and nothing from six hours before its first message on is
/// touched (as the SQLite test checks on its engine).
#[test]
fn retention_on_postgresql_deletes_what_it_deletes_on_sqlite_and_keeps_every_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (rt, now, keep) = season_later();
    let url = common::postgres::database();
    let (o, text) = run(common::stormbell()
        .args(["replay", "--scenario"])
        .arg(scenario("cell-2024"))
        .arg("--out")
        .arg(tmp.path().join("pg"))
        .args(["--db", &url]));
    assert!(o.status.success(), "{text}");
    let in_force = common::postgres::database_like(url.rsplit('/').next());
    let db = tmp.path().join("season.db");
    // The quiet weeks after the storm, on each engine in its own words.
    let quiet = cell_drill_and_quiet_weeks(&db);
    let later = "to_char((CAST(received AS timestamptz) + interval '14 days') AT TIME ZONE 'UTC',
                         'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
    let quiet_pg = common::postgres::client(&url, |c| {
        c.execute(
            &format!(
                "INSERT INTO feed_inbox (feed, key, received, observation, consumed)
                 SELECT feed, key || '+14d', {later}, observation, {later} FROM feed_inbox"
            ),
            &[],
        )
        .unwrap()
    });
    assert_eq!(quiet_pg, quiet as u64);
    let (lite, pg) = (
        stormbell::store::Store::open(&db).unwrap(),
        stormbell::store::Store::open_postgres(&url).unwrap(),
    );
    let before = reports(&pg);
    let same = |a: &BTreeMap<String, stormbell::respond::report::Report>,
                b: &BTreeMap<String, stormbell::respond::report::Report>| {
        serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
    };
    assert!(
        same(&before, &reports(&lite)),
        "the two engines' reports differ"
    );

    let on_lite = rt
        .block_on(stormbell::retention::sweep(&lite, now, keep))
        .unwrap();
    let on_pg = rt
        .block_on(stormbell::retention::sweep(&pg, now, keep))
        .unwrap();
    assert!(on_lite.total() > 0, "{on_lite:?}");
    assert_eq!(on_pg, on_lite);
    assert!(
        same(&reports(&pg), &before),
        "a report changed on PostgreSQL"
    );
    let (kind, verified) = pg
        .read_blocking(|c| {
            let kind: String = c.query_row(
                "SELECT kind FROM audit ORDER BY seq DESC LIMIT 1",
                (),
                |r| r.get(0),
            )?;
            Ok((kind, stormbell::store::audit::verify(c)?))
        })
        .unwrap();
    assert_eq!(kind, "store.pruned");
    assert!(matches!(
        verified,
        stormbell::store::audit::Verification::Intact { .. }
    ));
    let again = rt
        .block_on(stormbell::retention::sweep(&pg, now, keep))
        .unwrap();
    assert_eq!(again.total(), 0);
    assert!(lite.close(Duration::from_secs(30)));
    assert!(pg.close(Duration::from_secs(30)));

    // The copy: the latest-starting warning's cancels taken out, and a month of polling
    // before the storm.
    let month_before = |col: &str| {
        format!(
            "to_char((CAST({col} AS timestamptz) - interval '30 days') AT TIME ZONE 'UTC',
                     'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
    let (lineage, first): (String, String) = common::postgres::client(&in_force, |c| {
        let row = c
            .query_one(
                "SELECT lineage, min(sent) FROM corr_warning GROUP BY lineage
                 ORDER BY min(sent) DESC LIMIT 1",
                &[],
            )
            .unwrap();
        let (lineage, first): (String, String) = (row.get(0), row.get(1));
        c.execute(
            "DELETE FROM corr_warning WHERE lineage = $1 AND msg_type = 'Cancel'",
            &[&lineage],
        )
        .unwrap();
        c.batch_execute(&format!(
            "INSERT INTO feed_seen (feed, key, first_seen)
               SELECT feed, key || '-30d', {seen} FROM feed_seen;
             INSERT INTO feed_inbox (feed, key, received, observation, consumed)
               SELECT feed, key || '-30d', {received}, observation, {received} FROM feed_inbox;",
            seen = month_before("first_seen"),
            received = month_before("received"),
        ))
        .unwrap();
        (lineage, first)
    });
    let bound = stormbell::store::stamp(stamp_of(&first) - jiff::SignedDuration::from_hours(6));
    let tables = [
        ("feed_doc", "received"),
        ("feed_seen", "first_seen"),
        ("feed_inbox", "received"),
        ("dispatch_inbound", "at"),
    ];
    let counts = |newer: bool| -> Vec<i64> {
        common::postgres::client(&in_force, |c| {
            tables
                .iter()
                .map(|(t, col)| {
                    let cmp = if newer { ">=" } else { "<" };
                    c.query_one(
                        &format!("SELECT count(*) FROM {t} WHERE {col} {cmp} $1"),
                        &[&bound],
                    )
                    .unwrap()
                    .get::<_, i64>(0)
                })
                .collect()
        })
    };
    let kept_before = counts(true);
    assert!(kept_before.iter().sum::<i64>() > 0);
    assert!(
        counts(false).iter().sum::<i64>() > 0,
        "{lineage}: nothing older than its start to prune"
    );
    let store = stormbell::store::Store::open_postgres(&in_force).unwrap();
    let swept = rt
        .block_on(stormbell::retention::sweep(&store, now, keep))
        .unwrap();
    assert!(swept.cutoff <= bound, "{} > {bound}", swept.cutoff);
    assert!(swept.total() > 0, "{swept:?}");
    assert_eq!(counts(true), kept_before, "{lineage} is in force");
    assert_eq!(counts(false).iter().sum::<i64>(), 0);
    assert!(store.close(Duration::from_secs(30)));
}

#[test]
fn retention_deletes_the_bulk_and_keeps_every_report_and_all_after_a_warning_in_force() {
    let tmp = tempfile::tempdir().unwrap();
    let (rt, now, keep) = season_later();

    // A season later: every warning of the storm is lifted, everything is past the period.
    let db = tmp.path().join("season.db");
    cell_drill_and_quiet_weeks(&db);
    let store = stormbell::store::Store::open(&db).unwrap();
    let before = reports(&store);
    assert!(before.len() > 3, "{:?}", before.keys());
    let rain_charts = before
        .values()
        .filter(|r| !r.charts.rain.is_empty())
        .count();
    assert!(
        rain_charts > 0,
        "no report charts rain: the kept spans go unchecked"
    );
    let c = ro(&db);
    let inbox_before = count(&c, "SELECT count(*) FROM feed_inbox");
    // Rain a report charts: inbox rows from six hours before a warning's first message to an
    // hour after the last thing in its record (counted here on our own).
    let spans: Vec<(jiff::Timestamp, jiff::Timestamp)> = c
        .prepare(
            "SELECT min(w.sent), max(w.sent),
                    (SELECT max(at) FROM respond_answer a WHERE a.lineage = w.lineage),
                    (SELECT max(called) FROM respond_call k WHERE k.lineage = w.lineage)
               FROM corr_warning w GROUP BY w.lineage",
        )
        .unwrap()
        .query_map((), |r| {
            let times: Vec<Option<String>> = (0..4).map(|i| r.get(i)).collect::<Result<_, _>>()?;
            Ok(times)
        })
        .unwrap()
        .map(|r| {
            let t: Vec<jiff::Timestamp> = r
                .unwrap()
                .into_iter()
                .flatten()
                .map(|s| stamp_of(&s))
                .collect();
            (
                t[0] - jiff::SignedDuration::from_hours(6),
                *t.iter().max().unwrap() + jiff::SignedDuration::from_hours(1),
            )
        })
        .collect();
    let received: Vec<jiff::Timestamp> = c
        .prepare("SELECT received FROM feed_inbox")
        .unwrap()
        .query_map((), |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| stamp_of(&r.unwrap()))
        .collect();
    let charted = received
        .iter()
        .filter(|t| spans.iter().any(|(a, b)| *t >= a && *t <= b))
        .count() as i64;
    assert!(
        charted < inbox_before,
        "every inbox row is charted: nothing to prune"
    );
    let replies = count(&c, "SELECT count(*) FROM dispatch_inbound");
    assert!(replies > 0);
    drop(c);

    let swept = rt
        .block_on(stormbell::retention::sweep(&store, now, keep))
        .unwrap();
    let c = ro(&db);
    assert_eq!(count(&c, "SELECT count(*) FROM feed_doc"), 0);
    assert_eq!(count(&c, "SELECT count(*) FROM feed_seen"), 0);
    assert_eq!(count(&c, "SELECT count(*) FROM feed_inbox"), charted);
    assert_eq!(count(&c, "SELECT count(*) FROM dispatch_inbound"), 0);
    let deleted: BTreeMap<String, usize> = swept.deleted.iter().cloned().collect();
    assert_eq!(deleted["feed_inbox"] as i64, inbox_before - charted);
    assert_eq!(deleted["dispatch_inbound"] as i64, replies);
    // The record stays: every report reads the same, the trail holds and says what went.
    let after = reports(&store);
    for (lineage, r) in &before {
        let (a, b) = (
            serde_json::to_value(r).unwrap(),
            serde_json::to_value(&after[lineage]).unwrap(),
        );
        let changed: Vec<String> = a
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| format!("{k}: {v} → {}", b[k.as_str()]))
            .collect();
        assert!(
            changed.is_empty(),
            "the report of {lineage} changed: {changed:?}"
        );
    }
    let last: (String, String) = c
        .query_row(
            "SELECT kind, detail FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(last.0, "store.pruned", "{last:?}");
    assert!(matches!(
        stormbell::store::audit::verify(&stormbell::store::sql::Conn::lite(&c)).unwrap(),
        stormbell::store::audit::Verification::Intact { .. }
    ));
    // A second sweep finds nothing and writes nothing.
    let seq = count(&c, "SELECT max(seq) FROM audit");
    let again = rt
        .block_on(stormbell::retention::sweep(&store, now, keep))
        .unwrap();
    assert_eq!(again.total(), 0);
    assert_eq!(count(&c, "SELECT max(seq) FROM audit"), seq);
    drop(c);
    assert!(store.close(Duration::from_secs(30)));

    // The same record with the latest-starting warning never lifted (its cancels taken out):
    // it is in force, so nothing from six hours before its first message on is touched.
    let db = tmp.path().join("in-force.db");
    std::fs::copy(cell_drill(), &db).unwrap();
    let (lineage, first): (String, String) = {
        let c = Connection::open(&db).unwrap();
        let row: (String, String) = c
            .query_row(
                "SELECT lineage, min(sent) FROM corr_warning GROUP BY lineage
                 ORDER BY min(sent) DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        c.execute(
            "DELETE FROM corr_warning WHERE lineage = ?1 AND msg_type = 'Cancel'",
            [&row.0],
        )
        .unwrap();
        // And a month of polling before the storm.
        c.execute_batch(
            "INSERT INTO feed_seen (feed, key, first_seen)
               SELECT feed, key || '-30d', strftime('%Y-%m-%dT%H:%M:%fZ', first_seen, '-30 days')
                 FROM feed_seen;
             INSERT INTO feed_inbox (feed, key, received, observation, consumed)
               SELECT feed, key || '-30d', strftime('%Y-%m-%dT%H:%M:%fZ', received, '-30 days'),
                      observation, strftime('%Y-%m-%dT%H:%M:%fZ', received, '-30 days')
                 FROM feed_inbox;",
        )
        .unwrap();
        row
    };
    let bound = stormbell::store::stamp(stamp_of(&first) - jiff::SignedDuration::from_hours(6));
    let after_bound = |c: &Connection| {
        [
            ("feed_doc", "received"),
            ("feed_seen", "first_seen"),
            ("feed_inbox", "received"),
            ("dispatch_inbound", "at"),
        ]
        .map(|(t, col)| {
            c.query_row(
                &format!("SELECT count(*) FROM {t} WHERE {col} >= ?1"),
                [&bound],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        })
    };
    let c = ro(&db);
    let kept_before = after_bound(&c);
    let older = |c: &Connection| {
        count(
            c,
            &format!(
                "SELECT (SELECT count(*) FROM feed_seen WHERE first_seen < '{bound}')
                      + (SELECT count(*) FROM feed_inbox WHERE received < '{bound}')"
            ),
        )
    };
    assert!(
        older(&c) > 0,
        "{lineage}: nothing older than its start to prune"
    );
    assert!(kept_before.iter().sum::<i64>() > 0);
    drop(c);
    let store = stormbell::store::Store::open(&db).unwrap();
    let swept = rt
        .block_on(stormbell::retention::sweep(&store, now, keep))
        .unwrap();
    assert!(swept.cutoff <= bound, "{} > {bound}", swept.cutoff);
    let c = ro(&db);
    assert_eq!(after_bound(&c), kept_before, "{lineage} is in force");
    assert_eq!(older(&c), 0);
    drop(c);
    assert!(store.close(Duration::from_secs(30)));
}

// The first day's test text: `stormbell send-test` to one's own phone goes through the running
// daemon's SMS account to a real SMS centre (node-smpp), is followed to its receipt, is in
// the audit trail, and a reply to it answers no warning.
crate::common::backend::on_both! {
    fn a_test_text_to_oneself_goes_through_the_daemon_and_answers_nothing(backend) {
        use std::process::Stdio;
        let smsc = common::smsc::Smsc::start(50);
        let place = crate::common::backend::Place::new(backend);
        drop(place.open());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("stormbell.toml");
        std::fs::write(
            &config,
            format!(
                "{store}[web]\nlisten = \"\"\n{account}",
                store = place.store_toml(dir.path()),
                account = smsc.account_toml("binds = 1\nwindow = 10\ntps = 100")
            ),
        )
        .unwrap();
        let cli = |args: &[&str]| {
            let mut c = common::stormbell();
            c.arg("--config").arg(&config).args(args);
            c
        };
        let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
        let (o, text) =
            super::run(cli(&["registry", "import", county.to_str().unwrap()]).stdout(Stdio::piped()));
        assert!(o.status.success(), "{text}");
        // A number that is not one is refused, and nothing is queued.
        let (o, text) = super::run(&mut cli(&["send-test", "12345", "--wait", "0"]));
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(text.contains("is not a mobile number"), "{text}");

        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut daemon = cli(&["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let (o, text) = super::run(&mut cli(&["send-test", "13800138000", "--wait", "60"]));
        // The phone answers "1", as a lead would a warning; respond reads it and finds nothing
        // it answers.
        if o.status.success() {
            smsc.reply_from("8613800138000", "1");
            place.wait_until("the reply read by respond", 60, &log_path, || {
                place.count(
                    "SELECT count(*) FROM dispatch_inbound i JOIN respond_cursor r
                       ON r.name = 'dispatch_inbound' AND r.last >= i.id",
                ) >= 1
            });
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
        assert!(
            o.status.success(),
            "{text}\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        assert!(text.contains("state:    delivered"), "{text}");
        let got: Vec<String> = smsc
            .phones()
            .iter()
            .filter(|p| p["dest"] == "8613800138000")
            .map(|p| p["text"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("预警系统测试短信"), "{got:?}");
        // The detail is the JSON serde writes (no spaces), read alike by both engines.
        assert_eq!(
            place.count(
                r#"SELECT count(*) FROM audit WHERE kind = 'dispatch.test_queued'
                     AND detail LIKE '%"address":"13800138000"%'"#
            ),
            1
        );
        assert_eq!(
            place.count("SELECT count(*) FROM dispatch_message WHERE lineage = 'test'"),
            1
        );
        assert_eq!(
            place.count(
                "SELECT count(*) FROM respond_answer WHERE lineage IS NOT NULL OR person IS NOT NULL"
            ),
            0
        );
    }
}
