//! The store: one writer, WAL, migrations, and the hash-chained audit trail.

use rusqlite::Connection;
use stormbell::store::{Store, StoreError, audit};

use crate::common::backend::{Backend, Place, on_both};

fn entry(i: usize) -> audit::Entry {
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    audit::Entry::now(
        &tz,
        "test",
        "sms.accepted",
        format!("person-{i}"),
        serde_json::json!({ "n": i, "text": "山洪灾害红色预警：请立即转移" }),
    )
}

fn fill(store: &Store, range: std::ops::Range<usize>) {
    for i in range {
        let e = entry(i);
        store
            .write_blocking(move |tx| Ok(audit::append(tx, &e)?))
            .unwrap();
    }
}

/// A store on `backend` holding `n` audit entries.
fn place_with(backend: Backend, n: usize) -> (Place, Store) {
    let place = Place::new(backend);
    let store = place.open();
    fill(&store, 0..n);
    (place, store)
}

fn verify(store: &Store) -> audit::Verification {
    store.read_blocking(|c| Ok(audit::verify(c)?)).unwrap()
}

on_both! {
    fn an_untouched_chain_verifies_and_reports_its_head(backend) {
        let (_p, store) = place_with(backend, 20);
        match verify(&store) {
            audit::Verification::Intact { entries, head } => {
                assert_eq!(entries, 20);
                let (seq, hash) = head.unwrap();
                assert_eq!(seq, 20);
                assert_eq!(hash.len(), 64);
            }
            other => panic!("{other:?}"),
        }
        // Times in the store's one fixed-width format (UTC to the millisecond), whatever zone
        // the entry was made in.
        let rows = store.read_blocking(|c| Ok(audit::since(c, 1, 1)?)).unwrap();
        assert!(
            rows[0].at.len() == 24 && rows[0].at.ends_with('Z'),
            "{}",
            rows[0].at
        );
    }
}

on_both! {
    fn the_schema_refuses_update_and_delete(backend) {
        let (place, store) = place_with(backend, 3);
        let e = place
            .raw("UPDATE audit SET actor = 'x' WHERE seq = 2", "UPDATE audit SET actor = 'x' WHERE seq = 2", &[])
            .unwrap_err();
        assert!(e.contains("append-only"), "{e}");
        let e = place
            .raw("DELETE FROM audit WHERE seq = 3", "DELETE FROM audit WHERE seq = 3", &[])
            .unwrap_err();
        assert!(e.contains("append-only"), "{e}");
        assert!(matches!(
            verify(&store),
            audit::Verification::Intact { entries: 3, .. }
        ));
    }
}

on_both! {
    fn an_altered_row_is_named(backend) {
        let (place, store) = place_with(backend, 10);
        place.disarm_audit(&["UPDATE"]);
        let sql = "UPDATE audit SET detail = '{\"n\":99}' WHERE seq = 6";
        place.raw(sql, sql, &[]).unwrap();
        match verify(&store) {
            audit::Verification::Broken {
                seq,
                reason,
                intact_before,
            } => {
                assert_eq!(seq, 6);
                assert!(reason.contains("altered"), "{reason}");
                assert_eq!(intact_before, 5);
            }
            other => panic!("tampering not detected: {other:?}"),
        }
    }
}

on_both! {
    fn a_removed_row_is_named(backend) {
        let (place, store) = place_with(backend, 10);
        place.disarm_audit(&["DELETE"]);
        let sql = "DELETE FROM audit WHERE seq = 4";
        place.raw(sql, sql, &[]).unwrap();
        match verify(&store) {
            audit::Verification::Broken { seq, reason, .. } => {
                assert_eq!(seq, 5);
                assert!(reason.contains("removed"), "{reason}");
            }
            other => panic!("removal not detected: {other:?}"),
        }
    }
}

on_both! {
    fn a_forged_row_with_its_own_valid_hash_still_breaks_the_next_link(backend) {
        let (place, store) = place_with(backend, 6);
        place.disarm_audit(&["UPDATE"]);
        // A forger rewrites row 3 and gives it a hash that is correct for its new contents…
        let mut row = store
            .read_blocking(|c| Ok(audit::since(c, 3, 1)?))
            .unwrap()
            .remove(0);
        row.actor = "forger".into();
        row.hash = audit::compute_hash(&row);
        place
            .raw(
                "UPDATE audit SET actor = ?1, hash = ?2 WHERE seq = 3",
                "UPDATE audit SET actor = $1, hash = $2 WHERE seq = 3",
                &[&row.actor, &row.hash],
            )
            .unwrap();
        // …but row 4 still links to the old hash of row 3.
        match verify(&store) {
            audit::Verification::Broken { seq, reason, .. } => {
                assert_eq!(seq, 4);
                assert!(reason.contains("link"), "{reason}");
            }
            other => panic!("forgery not detected: {other:?}"),
        }
    }
}

on_both! {
    async fn concurrent_async_writes_are_serialised_without_gaps(backend) {
        let place = Place::new(backend);
        let store = place.open();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let e = entry(i);
                s.write(move |tx| Ok(audit::append(tx, &e)?))
                    .await
                    .unwrap()
                    .seq
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
        let v = store.read(|c| Ok(audit::verify(c)?)).await.unwrap();
        assert!(matches!(
            v,
            audit::Verification::Intact { entries: 200, .. }
        ));
    }
}

on_both! {
    async fn failed_or_panicking_work_rolls_back_and_the_writer_carries_on(backend) {
        let place = Place::new(backend);
        let store = place.open();
        let e = entry(1);
        let err = store
            .write(move |tx| -> anyhow::Result<()> {
                audit::append(tx, &e)?;
                anyhow::bail!("SMSC refused the batch")
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Work(_)), "{err}");
        let e = entry(2);
        let err = store
            .write(move |tx| -> anyhow::Result<()> {
                audit::append(tx, &e)?;
                panic!("bug in a stage")
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Panicked(ref m) if m.contains("bug in a stage")),
            "{err}"
        );
        // Neither attempt left a row behind, and the writer still works.
        let e = entry(3);
        let rec = store
            .write(move |tx| Ok(audit::append(tx, &e)?))
            .await
            .unwrap();
        assert_eq!(rec.seq, 1);
    }
}

on_both! {
    async fn a_failing_job_in_a_batch_leaves_the_others_standing(backend) {
        // Many writers at once, so that jobs share batches; every third fails after writing
        // (and one statement fails outright, which on PostgreSQL aborts all but its savepoint).
        // Each appends twice: the second entry follows the head the first left (which
        // PostgreSQL's writer keeps within a job), and a failed job's head is not followed.
        let place = Place::new(backend);
        let store = place.open();
        let mut tasks = Vec::new();
        for i in 0..90usize {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let e = entry(i);
                s.write(move |tx| -> anyhow::Result<i64> {
                    let first = audit::append(tx, &e)?;
                    let rec = audit::append(tx, &e)?;
                    assert_eq!((rec.seq, &rec.prev_hash), (first.seq + 1, &first.hash));
                    if i % 3 == 0 {
                        tx.execute("INSERT INTO no_such_table VALUES (1)", ())?;
                    }
                    Ok(rec.seq)
                })
                .await
            }));
        }
        let mut kept = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(_) => {
                    assert!(i % 3 != 0, "job {i} should have failed");
                    kept += 1;
                }
                Err(e) => {
                    assert!(i % 3 == 0, "job {i} failed: {e}");
                    assert!(matches!(e, StoreError::Work(_)), "{e}");
                }
            }
        }
        assert_eq!(kept, 60);
        let v = store.read(|c| Ok(audit::verify(c)?)).await.unwrap();
        assert!(matches!(v, audit::Verification::Intact { entries: 120, .. }), "{v:?}");
    }
}

on_both! {
    async fn readers_see_committed_writes_while_writing_goes_on(backend) {
        let place = Place::new(backend);
        let store = place.open();
        for i in 0..50 {
            let e = entry(i);
            store
                .write(move |tx| Ok(audit::append(tx, &e)?))
                .await
                .unwrap();
            let n: i64 = store
                .read(|c| Ok(c.query_row("SELECT count(*) FROM audit", (), |r| r.get(0))?))
                .await
                .unwrap();
            assert_eq!(n, i as i64 + 1);
        }
        if backend == Backend::Sqlite {
            let mode: String = store
                .read(|c| Ok(c.query_row("PRAGMA journal_mode", (), |r| r.get(0))?))
                .await
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }
}

on_both! {
    fn reopening_keeps_the_chain_and_applies_no_migration_twice(backend) {
        let (place, store) = place_with(backend, 5);
        drop(store);
        let store = place.open();
        let e = entry(6);
        let rec = store
            .write_blocking(move |tx| Ok(audit::append(tx, &e)?))
            .unwrap();
        assert_eq!(rec.seq, 6);
        assert!(matches!(
            verify(&store),
            audit::Verification::Intact { entries: 6, .. }
        ));
        let version = store
            .read_blocking(|c| Ok(stormbell::store::backup::schema_version(c)?))
            .unwrap();
        assert_eq!(version, stormbell::store::backup::latest_schema());
    }
}

on_both! {
    async fn two_nodes_writing_one_database_keep_one_chain(backend) {
        // Two stores on one database, as two stormbell nodes on one PostgreSQL (on SQLite, two
        // processes' writers on one file): their appends interleave into one chain.
        let place = Place::new(backend);
        let (a, b) = (place.open(), place.open());
        let mut tasks = Vec::new();
        for i in 0..120usize {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let e = entry(i);
                s.write(move |tx| Ok(audit::append(tx, &e)?)).await.unwrap().seq
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=120).collect::<Vec<i64>>());
        let v = b.read(|c| Ok(audit::verify(c)?)).await.unwrap();
        assert!(matches!(v, audit::Verification::Intact { entries: 120, .. }), "{v:?}");
    }
}

on_both! {
    async fn two_nodes_writing_what_is_kept_in_order_never_fail_each_other(backend) {
        // Two stores on one database write batches that each append to the audit chain and
        // keep a reply (both kept in order across nodes), half in one order and half in the
        // other, grouped into batches as the writer groups them. Every write commits: none is
        // failed by the other node's (on PostgreSQL, taken in opposite orders, two such locks
        // would deadlock and the database would fail one of the batches).
        let place = Place::new(backend);
        let (a, b) = (place.open(), place.open());
        let now: jiff::Timestamp = "2026-08-09T03:00:00+08:00".parse().unwrap();
        let mut tasks = Vec::new();
        for i in 0..160usize {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let e = entry(i);
                let text = format!("1 第{i}条");
                s.write(move |tx| {
                    let reply = stormbell::dispatch::outbox::Inbound {
                        kind: "reply",
                        account: "main",
                        source: "13800000824",
                        dest: "12379",
                        text: &text,
                        ..Default::default()
                    };
                    if (i / 2) % 2 == 0 {
                        audit::append(tx, &e)?;
                        stormbell::dispatch::outbox::inbound(tx, &reply, now)?;
                    } else {
                        stormbell::dispatch::outbox::inbound(tx, &reply, now)?;
                        audit::append(tx, &e)?;
                    }
                    Ok(())
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let (v, replies) = b
            .read(|c| {
                Ok((
                    audit::verify(c)?,
                    c.query_row("SELECT count(*) FROM dispatch_inbound", (), |r| r.get::<_, i64>(0))?,
                ))
            })
            .await
            .unwrap();
        assert!(matches!(v, audit::Verification::Intact { entries: 160, .. }), "{v:?}");
        assert_eq!(replies, 160);
    }
}

on_both! {
    fn a_write_is_never_reported_kept_when_the_database_threw_it_away(backend) {
        // A job appends, then runs a statement that fails and carries on without the error.
        // SQLite keeps the rest of the transaction, and the append stands. PostgreSQL aborts
        // the whole transaction and answers COMMIT by rolling back, without an error: the
        // write must then be reported failed, never kept when it was not.
        let place = Place::new(backend);
        let store = place.open();
        let e = entry(1);
        let written = store.write_blocking(move |tx| {
            audit::append(tx, &e)?;
            let _ = tx.execute("INSERT INTO no_such_table (x) VALUES (1)", ());
            Ok(())
        });
        let kept = store
            .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM audit", (), |r| r.get::<_, i64>(0))?))
            .unwrap();
        match backend {
            Backend::Sqlite => {
                assert!(written.is_ok(), "{written:?}");
                assert_eq!(kept, 1);
            }
            Backend::Postgres => {
                let err = written.unwrap_err().to_string();
                assert!(err.contains("aborted"), "{err}");
                assert_eq!(kept, 0);
            }
        }
        // The connection is whole again: the next write is kept.
        let e = entry(2);
        store.write_blocking(move |tx| Ok(audit::append(tx, &e)?)).unwrap();
    }
}

#[test]
fn close_waits_until_the_file_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = Store::open(&path).unwrap();
    for i in 0..20 {
        let e = entry(i);
        store
            .write_blocking(move |tx| Ok(audit::append(tx, &e)?))
            .unwrap();
    }
    let other = store.clone();
    // Another handle is still open: close waits for it, up to the timeout.
    assert!(!store.close(std::time::Duration::from_millis(100)));
    assert!(other.close(std::time::Duration::from_secs(10)));
    // The WAL was checkpointed into the file and removed.
    assert!(!dir.path().join("t.db-wal").exists());
    let c = Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20);
}

/// A database as the release before migration 0018 left it: the schema of 0001–0017, with
/// times written in the three formats then in use.
fn database_at_0017(path: &std::path::Path) {
    let c = Connection::open(path).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in files.iter().take(17) {
        c.execute_batch(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    c.pragma_update(None, "user_version", 17).unwrap();
    // Local time with an offset, UTC without and with a fraction: as 0017 stored them.
    for (id, created, updated) in [
        (1, "2019-08-09T18:00:00+08:00", "2019-08-09T10:00:00.3Z"),
        (2, "2019-08-09T10:00:00Z", "2019-08-09T10:00:00Z"),
        (
            3,
            "2019-08-09T17:59:59.9+08:00",
            "2019-08-09T18:00:00.000+08:00",
        ),
    ] {
        c.execute(
            "INSERT INTO dispatch_message (id, decision, lineage, version, send, hazard, tier,
               raises, person, channel, address, priority, state, text, segments, words,
               not_before, created, updated)
             VALUES (?1, 1, 'flash_flood:FF1', 1, 'Alert', 'flash_flood', 'red', 1, 'P' || ?1, 'sms',
               '13700000001', 10, 'queued', 'x', 1, '{}', ?2, ?2, ?3)",
            rusqlite::params![id, created, updated],
        )
        .unwrap();
    }
}

#[test]
fn migration_0018_rewrites_every_stored_time_to_one_width_so_text_order_is_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    database_at_0017(&path);
    // Before: ordering the text is not ordering the times (1, the latest, comes first).
    let text_order = |c: &Connection| -> Vec<i64> {
        c.prepare("SELECT id FROM dispatch_message ORDER BY updated, id")
            .unwrap()
            .query_map((), |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(text_order(&Connection::open(&path).unwrap()), [1, 2, 3]);
    let store = Store::open(&path).unwrap();
    drop(store);
    let c = Connection::open(&path).unwrap();
    let rows: Vec<(i64, String, String)> = c
        .prepare("SELECT id, created, updated FROM dispatch_message ORDER BY id")
        .unwrap()
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            (
                1,
                "2019-08-09T10:00:00.000Z".into(),
                "2019-08-09T10:00:00.300Z".into()
            ),
            (
                2,
                "2019-08-09T10:00:00.000Z".into(),
                "2019-08-09T10:00:00.000Z".into()
            ),
            (
                3,
                "2019-08-09T09:59:59.900Z".into(),
                "2019-08-09T10:00:00.000Z".into()
            ),
        ]
    );
    // After: it is (2 and 3 at the same instant, then 1).
    assert_eq!(text_order(&c), [2, 3, 1]);
    // The rebuilt table kept its rows and now refuses a state its enum does not name.
    let err = c
        .execute(
            "UPDATE dispatch_message SET state = 'sending' WHERE id = 1",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
}

#[test]
fn the_after_action_timeline_puts_a_send_after_its_issue_whatever_the_width_of_their_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("r.db")).unwrap();
    let reg = crate::common::county::registry(&store);
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    let policy = cfg.dispatch_policy();
    let settings = cfg.respond.clone();
    let warned =
        crate::common::county::warn_zone(&store, reg.clone(), &cfg, &policy, &settings, 50.0);
    // The first text accepted 0.3 s after the warning was issued on a whole second.
    let sent = warned.at + jiff::SignedDuration::from_millis(300);
    let e = audit::Entry::utc(
        sent,
        "dispatch",
        "sms.accepted",
        "P1",
        serde_json::json!({ "lineage": crate::common::county::ZONE }),
    );
    store
        .write_blocking(move |tx| Ok(audit::append(tx, &e)?))
        .unwrap();
    let tz = cfg.time_zone();
    let report = store
        .read_blocking(move |c| {
            stormbell::respond::report::read(c, &reg, &tz, crate::common::county::ZONE)
        })
        .unwrap();
    let kinds: Vec<&str> = report.timeline.iter().map(|e| e.kind.as_str()).collect();
    let issued = kinds.iter().position(|k| *k == "issued").unwrap();
    let sms = kinds.iter().position(|k| *k == "sms").unwrap();
    assert!(issued < sms, "{kinds:?}");
}

/// The WAL is copied back into the database file by the checkpointer thread while the store
/// is open (commits no longer do it), and it is reused, not left to grow: 40 MB written in
/// 1 MB commits never leaves a WAL several times the checkpoint size.
#[test]
fn the_wal_is_checkpointed_beside_the_writer_and_does_not_grow() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let store = Store::open(&db).unwrap();
    store
        .write_blocking(|tx| Ok(tx.execute_batch("CREATE TABLE filler (b BLOB NOT NULL)")?))
        .unwrap();
    let wal = dir.path().join("t.db-wal");
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut largest_wal = 0;
    for _ in 0..40 {
        store
            .write_blocking(|tx| {
                let mut st = tx.prepare("INSERT INTO filler (b) VALUES (zeroblob(65536))")?;
                for _ in 0..16 {
                    st.execute(())?;
                }
                Ok(())
            })
            .unwrap();
        largest_wal = largest_wal.max(size(&wal));
    }
    // Everything written is in the file itself before the store closes.
    crate::common::wait_until(
        "the checkpointer copied the WAL back",
        30,
        dir.path(),
        || size(&db) >= 39 << 20,
    );
    assert!(
        largest_wal < 16 << 20,
        "the WAL grew to {largest_wal} bytes: it is not being checkpointed and reused"
    );
    assert!(store.close(std::time::Duration::from_secs(10)));
    assert_eq!(size(&wal), 0, "closing leaves no WAL behind");
}

/// The schema as the engine reports it: per table, its columns as `name type null|not null`,
/// and the names of the indexes made with CREATE INDEX.
type Shape = (
    std::collections::BTreeMap<String, Vec<String>>,
    std::collections::BTreeSet<String>,
);

#[test]
fn the_postgres_baseline_has_every_table_column_type_and_index_of_the_sqlite_schema() {
    let lite_place = Place::new(Backend::Sqlite);
    drop(lite_place.open());
    let pg_place = Place::new(Backend::Postgres);
    drop(pg_place.open());

    let c = Connection::open(&lite_place.at).unwrap();
    let mut lite: Shape = Default::default();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in tables {
        let cols = c
            .prepare(&format!(
                "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{t}') ORDER BY cid"
            ))
            .unwrap()
            .query_map([], |r| {
                let (name, ty, notnull, pk): (String, String, bool, i64) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                let ty = match ty.as_str() {
                    "INTEGER" => "bigint",
                    "TEXT" => "text",
                    "REAL" => "double precision",
                    "BLOB" => "bytea",
                    other => panic!("{t}.{name}: type {other:?} has no PostgreSQL form here"),
                };
                let null = if notnull || pk > 0 {
                    "not null"
                } else {
                    "null"
                };
                Ok(format!("{name} {ty} {null}"))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        lite.0.insert(t, cols);
    }
    lite.1 = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();

    // (The tables named stormbell_* are PostgreSQL's own bookkeeping: the schema version, the
    // leader lease, the nodes' heartbeats.)
    let pg: Shape = crate::common::postgres::client(&pg_place.at, |c| {
        let mut shape: Shape = Default::default();
        for r in c
            .query(
                "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
                 FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name NOT LIKE 'stormbell\\_%'
                 ORDER BY table_name, ordinal_position",
                &[],
            )
            .unwrap()
        {
            let (t, name, ty, nullable): (String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if name == "rowid" {
                // SQLite's implicit row id: a column on PostgreSQL where the SQL names it.
                continue;
            }
            let null = if nullable == "YES" {
                "null"
            } else {
                "not null"
            };
            shape
                .0
                .entry(t)
                .or_default()
                .push(format!("{name} {ty} {null}"));
        }
        for r in c
            .query(
                "SELECT i.relname::text FROM pg_index x
                 JOIN pg_class i ON i.oid = x.indexrelid
                 JOIN pg_class t ON t.oid = x.indrelid
                 JOIN pg_namespace n ON n.oid = t.relnamespace
                 WHERE n.nspname = 'public' AND t.relname NOT LIKE 'stormbell\\_%'
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)",
                &[],
            )
            .unwrap()
        {
            shape.1.insert(r.get(0));
        }
        shape
    });
    assert_eq!(
        lite.0.keys().collect::<Vec<_>>(),
        pg.0.keys().collect::<Vec<_>>(),
        "tables"
    );
    for (t, cols) in &lite.0 {
        assert_eq!(cols, &pg.0[t], "columns of {t}");
    }
    assert_eq!(lite.1, pg.1, "indexes");
}

/// The lease row as the database has it: (holder, epoch).
fn lease_holder(place: &Place) -> Option<(String, i64)> {
    crate::common::postgres::client(&place.at, |c| {
        c.query_opt(
            "SELECT holder, epoch FROM stormbell_lease WHERE name = 'leader'",
            &[],
        )
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_the_lease_writes_nothing_more() {
    use stormbell::store::lease::{LeaseSettings, acquire};
    let place = Place::new(Backend::Postgres);
    let store = place.open();
    let a = LeaseSettings {
        node: "a".into(),
        ttl: std::time::Duration::from_secs(3),
    };
    let lead = acquire(&place.at, &a).await.unwrap();
    assert_eq!(lease_holder(&place), Some(("a".into(), lead.epoch)));
    store.fence("a", lead.epoch);
    let e = entry(1);
    store
        .write(move |tx| Ok(audit::append(tx, &e)?))
        .await
        .unwrap();
    // Another node takes the lease (as it would once a's lease ended unrenewed, a paused or
    // cut-off a still believing it leads).
    place
        .raw(
            "",
            "UPDATE stormbell_lease SET holder = 'b', epoch = epoch + 1, expires = now() + interval '1 minute'",
            &[],
        )
        .unwrap();
    let e = entry(2);
    let err = store
        .write(move |tx| Ok(audit::append(tx, &e)?))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no longer holds the leader lease"),
        "{err}"
    );
    // a hears it at its next renewal, and steps down.
    let why = tokio::time::timeout(std::time::Duration::from_secs(10), lead.lost())
        .await
        .expect("a never heard it lost the lease");
    assert!(why.contains("taken by another node"), "{why}");
    assert!(matches!(
        store.read(|c| Ok(audit::verify(c)?)).await.unwrap(),
        audit::Verification::Intact { entries: 1, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_the_lease_once_the_leader_stops_renewing_it() {
    use stormbell::store::lease::{LeaseSettings, acquire};
    let place = Place::new(Backend::Postgres);
    drop(place.open());
    let ttl = std::time::Duration::from_secs(3);
    let a = acquire(
        &place.at,
        &LeaseSettings {
            node: "a".into(),
            ttl,
        },
    )
    .await
    .unwrap();
    let first = a.epoch;
    let url = place.at.clone();
    let mut standby = tokio::spawn(async move {
        acquire(
            &url,
            &LeaseSettings {
                node: "b".into(),
                ttl,
            },
        )
        .await
    });
    // While a renews, b waits: for two lengths of the lease, a's renewals keep it out.
    assert!(
        tokio::time::timeout(ttl * 2, &mut standby).await.is_err(),
        "b took the lease while a renewed it"
    );
    assert_eq!(lease_holder(&place), Some(("a".into(), first)));
    // a stops (its renewals end, and it gives the lease up): b takes it, with a new epoch.
    drop(a);
    let b = tokio::time::timeout(ttl * 3, standby)
        .await
        .expect("b never took the lease over")
        .unwrap()
        .unwrap();
    assert!(b.epoch > first);
    assert_eq!(lease_holder(&place), Some(("b".into(), b.epoch)));
}

#[test]
fn the_nodes_gone_are_the_stopped_and_the_silent() {
    // What the leader takes back rows from: a node that said it stopped, or that has not been
    // heard of for the time given; never itself, never a node heard of lately.
    let place = Place::new(Backend::Postgres);
    let store = place.open();
    place
        .raw(
            "",
            "INSERT INTO stormbell_node (node, role, epoch, seen) VALUES
               ('a', 'leader', 3, now()),
               ('b', 'standby', NULL, now() - interval '20 seconds'),
               ('c', 'stopped', NULL, now()),
               ('d', 'standby', NULL, now() - interval '5 seconds')",
            &[],
        )
        .unwrap();
    let gone = |me: &'static str, secs: u64| -> Vec<String> {
        store
            .read_blocking(move |c| {
                Ok(stormbell::store::lease::gone(
                    c,
                    me,
                    std::time::Duration::from_secs(secs),
                )?)
            })
            .unwrap()
    };
    assert_eq!(gone("a", 9), ["b", "c"]);
    assert_eq!(gone("a", 3), ["b", "c", "d"]);
    assert_eq!(gone("b", 30), ["c"]);
    // c starts again under its name: it says so before it claims anything, and is not gone.
    store
        .write_blocking(|tx| Ok(stormbell::store::lease::announce(tx, "c")?))
        .unwrap();
    assert_eq!(gone("a", 9), ["b"]);
    // On SQLite, one machine: nobody else.
    let lite = Place::new(Backend::Sqlite);
    let none = lite
        .open()
        .read_blocking(|c| {
            Ok(stormbell::store::lease::gone(
                c,
                "a",
                std::time::Duration::from_secs(1),
            )?)
        })
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_while_the_database_is_unreachable_wait_for_it_and_are_kept() {
    // The store reaches PostgreSQL through a relay the test cuts, as a failover or a switch
    // restart cuts it: a write made meanwhile waits, and is committed once the way is back.
    let place = Place::new(Backend::Postgres);
    let relay = crate::common::postgres::Relay::start(crate::common::postgres::shared().port);
    let store = Store::open_postgres(&relay.url(&place.at)).unwrap();
    let e = entry(1);
    store
        .write(move |tx| Ok(audit::append(tx, &e)?))
        .await
        .unwrap();
    relay.cut();
    let s = store.clone();
    let mut pending = tokio::spawn(async move {
        let e = entry(2);
        s.write(move |tx| Ok(audit::append(tx, &e)?)).await
    });
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(2), &mut pending)
            .await
            .is_err(),
        "a write went through a cut connection"
    );
    relay.heal();
    let rec = tokio::time::timeout(std::time::Duration::from_secs(30), pending)
        .await
        .expect("the write never went through after the way was back")
        .unwrap()
        .unwrap();
    assert_eq!(rec.seq, 2);
    assert!(matches!(
        store.read(|c| Ok(audit::verify(c)?)).await.unwrap(),
        audit::Verification::Intact { entries: 2, .. }
    ));
}

on_both! {
    fn text_with_a_nul_is_stored_not_refused(backend) {
        // A reply or a feed field may carry NUL; PostgreSQL's text cannot: the row is kept
        // (the NUL as U+FFFD), never the whole write refused.
        let place = Place::new(backend);
        let store = place.open();
        let mut e = entry(1);
        e.subject = "13800000824\u{0}收到".into();
        let rec = store
            .write_blocking(move |tx| Ok(audit::append(tx, &e)?))
            .unwrap();
        let back = store
            .read_blocking(|c| Ok(audit::since(c, 1, 1)?))
            .unwrap()
            .remove(0);
        // The same on both engines, and what was hashed is what was stored.
        assert_eq!(back.subject, "13800000824\u{FFFD}收到");
        assert_eq!(rec.subject, back.subject);
        assert!(matches!(verify(&store), audit::Verification::Intact { entries: 1, .. }));
    }
}

on_both! {
    fn a_json_document_holding_a_nul_escape_does_not_break_queries_over_its_table(backend) {
        // A feed's field may carry `\u0000` (escaped in the stored JSON): queries that read a
        // key of such documents still run (PostgreSQL's jsonb would refuse the whole row).
        let place = Place::new(backend);
        let store = place.open();
        let doc = r#"{"kind":"rain","data":{"station":"x\u0000y","state":"gap"}}"#;
        // Written through the store, as the feeds stage writes its inbox.
        store
            .write_blocking(move |tx| {
                Ok(tx.execute(
                    "INSERT INTO feed_inbox (feed, key, received, observation)
                     VALUES ('f', 'k', '2026-12-03T00:00:00.000Z', ?1)",
                    [doc],
                )?)
            })
            .unwrap();
        let n: i64 = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM feed_inbox WHERE json_extract(observation, '$.data.state') = 'gap'",
                    (),
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(n, 1);
    }
}

on_both! {
    /// A warning's report counts the trail's entries about it (its texts accepted, delivered,
    /// failed) through an index on the lineage each names, not by reading the whole trail,
    /// which only ever grows; and counts them right, entries naming no lineage included in
    /// the trail.
    fn a_warnings_entries_are_counted_from_an_index_not_the_whole_trail(backend) {
        use std::collections::BTreeMap;
        let place = Place::new(backend);
        let store = place.open();
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let kinds = ["sms.accepted", "sms.delivered", "sms.failed", "broadcast.played", "sms.accepted"];
        let lineage = |i: usize| format!("flash_flood:FF3310980{:02}", i % 20);
        let entries: Vec<audit::Entry> = (0..5_000)
            .map(|i| {
                let detail = if i % 7 == 0 {
                    serde_json::json!({ "n": i })
                } else if i % 11 == 0 {
                    serde_json::json!("一段文字")
                } else {
                    serde_json::json!({ "lineage": lineage(i), "message": i })
                };
                audit::Entry::now(&tz, "system", kinds[i % kinds.len()], format!("m{i}"), detail)
            })
            .collect();
        let mut expected: BTreeMap<&str, u32> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            if e.detail.get("lineage").is_some() && lineage(i) == lineage(3) && e.kind.starts_with("sms.") {
                *expected.entry(kinds[i % kinds.len()]).or_default() += 1;
            }
        }
        store
            .write_blocking(move |tx| Ok(audit::append_all(tx, &entries)?))
            .unwrap();
        let target = lineage(3);
        let got = store
            .read_blocking(move |c| Ok(audit::kinds_about(c, "sms.", &target)?))
            .unwrap();
        let counts: BTreeMap<&str, u32> = got.iter().map(|(k, n, _)| (k.as_str(), *n)).collect();
        assert_eq!(counts, expected);
        assert!(got.iter().all(|(_, _, at)| at.parse::<jiff::Timestamp>().is_ok()));

        let plan = match backend {
            Backend::Sqlite => {
                let c = Connection::open(&place.at).unwrap();
                let mut stmt = c
                    .prepare(&format!("EXPLAIN QUERY PLAN {}", audit::KINDS_ABOUT))
                    .unwrap();
                stmt.query_map(rusqlite::params!["sms.", lineage(3)], |r| r.get::<_, String>(3))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Backend::Postgres => {
                // As autovacuum leaves it on a trail of any size.
                crate::common::postgres::client(&place.at, |c| c.batch_execute("ANALYZE audit").unwrap());
                crate::common::postgres::generic_plan(
                    &place.at,
                    &stormbell::store::sql::translate(audit::KINDS_ABOUT),
                    "text, text",
                    "'sms.', 'flash_flood:FF331098003'",
                )
            }
        };
        assert!(plan.contains("audit_lineage"), "{plan}");
        assert!(!plan.contains("SCAN audit") && !plan.contains("Seq Scan"), "{plan}");
    }
}

on_both! {
    /// The board asks for the rows of every warning in force at once (19,341 at a province's
    /// storm): one list of keys, of any length, in text a lineage may hold, gives each row it
    /// names once and nothing else.
    fn a_list_of_keys_of_any_length_gives_each_row_it_names_once(backend) {
        let place = Place::new(backend);
        let store = place.open();
        let keys: Vec<String> = (0..1500)
            .map(|i| format!("flash_flood:{i:012}「东溪村\"'\\」"))
            .collect();
        let rows = keys.clone();
        store
            .write_blocking(move |tx| {
                tx.execute_batch(
                    "CREATE TABLE list_probe (lineage TEXT NOT NULL, n BIGINT NOT NULL)",
                )?;
                for (n, k) in rows.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO list_probe (lineage, n) VALUES (?1, ?2)",
                        rusqlite::params![k, n as i64],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        // Every other key, and keys no row has.
        let mut asked: Vec<String> = keys.iter().step_by(2).cloned().collect();
        asked.extend((0..100).map(|i| format!("typhoon:{i}")));
        let got: Vec<(String, i64)> = store
            .read_blocking(move |c| {
                Ok(stormbell::store::sql::query_in(
                    c,
                    &asked,
                    |list| format!("SELECT lineage, n FROM list_probe WHERE lineage IN ({list})"),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        let mut got = got;
        got.sort_by_key(|(_, n)| *n);
        let want: Vec<(String, i64)> = keys
            .iter()
            .enumerate()
            .step_by(2)
            .map(|(n, k)| (k.clone(), n as i64))
            .collect();
        assert_eq!(got.len(), 750);
        assert_eq!(got, want);
    }
}
