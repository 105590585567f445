//! The store: one writer, WAL, migrations, and the hash-chained audit trail.

use rusqlite::Connection;
use stormbell::store::{Store, StoreError, audit};

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

fn store_with(n: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("t.db")).unwrap();
    for i in 0..n {
        let e = entry(i);
        store
            .write_blocking(move |tx| Ok(audit::append(tx, &e)?))
            .unwrap();
    }
    (dir, store)
}

fn verify(store: &Store) -> audit::Verification {
    store.read_blocking(|c| Ok(audit::verify(c)?)).unwrap()
}

/// Open the file behind the store's back, as someone with shell access could.
fn raw(store: &Store) -> Connection {
    Connection::open(store.path()).unwrap()
}

#[test]
fn an_untouched_chain_verifies_and_reports_its_head() {
    let (_d, store) = store_with(20);
    match verify(&store) {
        audit::Verification::Intact { entries, head } => {
            assert_eq!(entries, 20);
            let (seq, hash) = head.unwrap();
            assert_eq!(seq, 20);
            assert_eq!(hash.len(), 64);
        }
        other => panic!("{other:?}"),
    }
    // Times in the store's one fixed-width format (UTC to the millisecond), whatever zone the
    // entry was made in.
    let rows = store.read_blocking(|c| Ok(audit::since(c, 1, 1)?)).unwrap();
    assert!(
        rows[0].at.len() == 24 && rows[0].at.ends_with('Z'),
        "{}",
        rows[0].at
    );
}

#[test]
fn the_schema_refuses_update_and_delete() {
    let (_d, store) = store_with(3);
    let c = raw(&store);
    let e = c
        .execute("UPDATE audit SET actor = 'x' WHERE seq = 2", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = c
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    assert!(matches!(
        verify(&store),
        audit::Verification::Intact { entries: 3, .. }
    ));
}

#[test]
fn an_altered_row_is_named() {
    let (_d, store) = store_with(10);
    let c = raw(&store);
    c.execute_batch("DROP TRIGGER audit_refuse_update").unwrap();
    c.execute("UPDATE audit SET detail = '{\"n\":99}' WHERE seq = 6", [])
        .unwrap();
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

#[test]
fn a_removed_row_is_named() {
    let (_d, store) = store_with(10);
    let c = raw(&store);
    c.execute_batch("DROP TRIGGER audit_refuse_delete").unwrap();
    c.execute("DELETE FROM audit WHERE seq = 4", []).unwrap();
    match verify(&store) {
        audit::Verification::Broken { seq, reason, .. } => {
            assert_eq!(seq, 5);
            assert!(reason.contains("removed"), "{reason}");
        }
        other => panic!("removal not detected: {other:?}"),
    }
}

#[test]
fn a_forged_row_with_its_own_valid_hash_still_breaks_the_next_link() {
    let (_d, store) = store_with(6);
    let c = raw(&store);
    c.execute_batch("DROP TRIGGER audit_refuse_update").unwrap();
    // A forger rewrites row 3 and gives it a hash that is correct for its new contents…
    let mut row = store
        .read_blocking(|c| Ok(audit::since(c, 3, 1)?))
        .unwrap()
        .remove(0);
    row.actor = "forger".into();
    row.hash = audit::compute_hash(&row);
    c.execute(
        "UPDATE audit SET actor = ?1, hash = ?2 WHERE seq = 3",
        [&row.actor, &row.hash],
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_async_writes_are_serialised_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("t.db")).unwrap();
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

#[tokio::test]
async fn failed_or_panicking_work_rolls_back_and_the_writer_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("t.db")).unwrap();
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

#[tokio::test]
async fn readers_see_committed_writes_while_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("t.db")).unwrap();
    for i in 0..50 {
        let e = entry(i);
        store
            .write(move |tx| Ok(audit::append(tx, &e)?))
            .await
            .unwrap();
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, i as i64 + 1);
    }
    let mode: String = store
        .read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn reopening_keeps_the_chain_and_applies_no_migration_twice() {
    let (dir, store) = store_with(5);
    drop(store);
    let store = Store::open(dir.path().join("t.db")).unwrap();
    let e = entry(6);
    let rec = store
        .write_blocking(move |tx| Ok(audit::append(tx, &e)?))
        .unwrap();
    assert_eq!(rec.seq, 6);
    assert!(matches!(
        verify(&store),
        audit::Verification::Intact { entries: 6, .. }
    ));
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
            .query_map([], |r| r.get(0))
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
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
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
                    st.execute([])?;
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
