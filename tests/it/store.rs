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
    // Times carry the office's offset.
    let rows = store.read_blocking(|c| Ok(audit::since(c, 1, 1)?)).unwrap();
    assert!(rows[0].at.ends_with("+08:00"), "{}", rows[0].at);
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
