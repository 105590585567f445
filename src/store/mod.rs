//! The store: one SQLite database (WAL), one writer, embedded migrations.
//!
//! Why one writer: SQLite allows one writing transaction at a time anyway; funnelling every
//! write through one thread makes the order of writes the order of events (the audit chain
//! depends on it), keeps `SQLITE_BUSY` out of the picture, and lets async code write without
//! blocking the runtime. Readers use their own connections, which WAL lets run beside the
//! writer.
//!
//! Every stage owns its tables (see `migrations/`); no stage reads or writes another's tables
//! except through that stage's functions.
//!
//! Durability: `synchronous = FULL`. A warning recorded here survives a crash or power loss
//! the moment [`Store::write`] returns.

pub mod audit;
mod migrations;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::{Connection, OpenFlags, Transaction};

/// A time as every table stores it: RFC 3339 with the zone's offset, to the millisecond
/// (`2019-08-09T18:30:00.000+08:00`). One format everywhere, so stored times compare as text
/// within one zone and read back exactly.
pub fn stamp(at: &jiff::Zoned) -> String {
    let t = at.timestamp();
    t.round(jiff::Unit::Millisecond)
        .unwrap_or(t)
        .display_with_offset(at.offset())
        .to_string()
}

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A migration failed.
    #[error("database {path}: migration failed: {message}")]
    Migration {
        /// The database file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The writer thread is gone (it only stops when the store is dropped, or after a panic in
    /// a closure handed to it, which is reported to that caller).
    #[error("database writer has stopped")]
    WriterGone,
    /// The work handed to the store panicked; the transaction was rolled back.
    #[error("database work panicked: {0}")]
    Panicked(String),
    /// The work handed to the store failed; the transaction was rolled back.
    #[error(transparent)]
    Work(#[from] anyhow::Error),
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 4;

/// A handle to the database. Cheap to clone; all clones share the one writer.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Set by the writer thread once its connection is closed (and the WAL checkpointed).
    closed: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

impl Store {
    /// Open (creating if needed) the database at `path`, bring its schema up to date, and start
    /// the writer thread.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Migration {
                path: path.display().to_string(),
                message: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        let mut conn = Connection::open(&path).map_err(sqlite(&path))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(sqlite(&path))?;
        migrations::migrations()
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Migration {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let (tx, rx) = mpsc::channel::<Job>();
        let closed = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let signal = closed.clone();
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                // Jobs run one after another; the loop ends when every Store handle is dropped.
                for job in rx {
                    job(&mut conn);
                }
                // Closing the last connection checkpoints the WAL into the database file.
                drop(conn);
                let (done, cv) = &*signal;
                if let Ok(mut d) = done.lock() {
                    *d = true;
                }
                cv.notify_all();
            })
            .map_err(|e| StoreError::Migration {
                path: path.display().to_string(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Store {
            path,
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            closed,
        })
    }

    /// Close this handle and wait until the database is closed: every write done, the WAL
    /// checkpointed into the file. Waits for the other handles too (the database closes when
    /// the last one goes), up to `timeout`; returns whether it closed in time.
    pub fn close(self, timeout: std::time::Duration) -> bool {
        let Store {
            writer,
            readers,
            closed,
            ..
        } = self;
        if let Ok(mut pool) = readers.lock() {
            pool.clear();
        }
        drop(readers);
        drop(writer);
        let (done, cv) = &*closed;
        let Ok(guard) = done.lock() else {
            return false;
        };
        match cv.wait_timeout_while(guard, timeout, |d| !*d) {
            Ok((d, _)) => *d,
            Err(_) => false,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `work` in one write transaction on the writer thread, from async code.
    ///
    /// The transaction commits when `work` returns `Ok` and rolls back when it returns `Err`
    /// or panics; either way the writer carries on with the next job.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(work, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// The same as [`Store::write`], for code that is not async (the command line).
    pub fn write_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        self.submit(work, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    fn submit<T, F>(
        &self,
        work: F,
        reply: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        let path = self.path.clone();
        let job: Job = Box::new(move |conn: &mut Connection| {
            let result = (|| {
                let txn = conn.transaction().map_err(sqlite(&path))?;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&txn)));
                match outcome {
                    Ok(Ok(value)) => {
                        txn.commit().map_err(sqlite(&path))?;
                        Ok(value)
                    }
                    Ok(Err(e)) => Err(StoreError::Work(e)),
                    Err(panic) => Err(StoreError::Panicked(panic_message(&panic))),
                }
                // Dropping an uncommitted transaction rolls it back.
            })();
            reply(result);
        });
        self.writer.send(job).map_err(|_| StoreError::WriterGone)
    }

    /// Run read-only `work` on a pooled reader connection, off the async runtime.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.read_blocking(work))
            .await
            .map_err(|e| StoreError::Panicked(e.to_string()))?
    }

    /// The same as [`Store::read`], for code that is not async.
    pub fn read_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> anyhow::Result<T>,
    {
        let conn = self.take_reader()?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&conn)));
        // Keep a few idle connections; a burst of concurrent reads must not leave dozens open
        // (each holds its own page cache).
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(conn);
        }
        match outcome {
            Ok(r) => r.map_err(StoreError::Work),
            Err(panic) => Err(StoreError::Panicked(panic_message(&panic))),
        }
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.readers.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(&self.path))?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            .map_err(sqlite(&self.path))?;
        Ok(conn)
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
