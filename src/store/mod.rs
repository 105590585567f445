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
//!
//! Group commit: the writer takes the jobs waiting (up to [`BATCH`]) into one transaction, each
//! inside its own savepoint, and commits once; every caller hears back only after that commit.
//! A job that fails or panics is rolled back to its savepoint and the others stand. A burst of
//! small writes (answers from a thousand phones, receipts from the SMSC) then costs one commit
//! and one fsync per batch rather than one each, and is exactly as durable.

pub mod audit;
pub mod backup;
pub mod checkpoint;
pub mod lease;
mod migrations;
mod pg;
pub mod sql;

/// Bring the database at `path` to schema `version` exactly (no further), as a stormbell of
/// that age would have left it: the upgrade tests build a database at every version the
/// project has shipped, fill it, and then let [`Store::open`] migrate it.
pub fn migrate_to(path: &Path, version: usize) -> Result<(), StoreError> {
    let mut conn = Connection::open(path).map_err(sqlite(path))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
        .map_err(sqlite(path))?;
    migrations::migrations()
        .to_version(&mut conn, version)
        .map_err(|e| StoreError::Migration {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

/// Where the database is: a SQLite file (the embedded default: one box, a drill, the demo), or
/// a PostgreSQL database several nodes share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A libpq URL (`postgres://…`, several hosts with `target_session_attrs=read-write`).
    Postgres(String),
}

impl Location {
    /// What a person typed for "the database": a `postgres://` or `postgresql://` URL is
    /// PostgreSQL, anything else a SQLite file's path.
    pub fn parse(s: &str) -> Location {
        let lower = s.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Location::Postgres(s.trim().to_string())
        } else {
            Location::Sqlite(PathBuf::from(s))
        }
    }

    /// Open the store there (creating a SQLite file, or the schema in an empty PostgreSQL
    /// database, if needed).
    pub fn open(&self) -> Result<Store, StoreError> {
        match self {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(url) => Store::open_postgres(url),
        }
    }

    /// Whether there is a database there to open (a PostgreSQL database is only known by
    /// connecting, so it is taken to be there).
    pub fn exists(&self) -> bool {
        match self {
            Location::Sqlite(path) => path.exists(),
            Location::Postgres(_) => true,
        }
    }
}

impl std::fmt::Display for Location {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&shown(url)),
        }
    }
}

/// The URL as messages may show it: the password removed.
pub(crate) fn shown(url: &str) -> String {
    // postgres://user:password@host/... and key=value forms alike.
    let mut out = url.to_string();
    if let Some(scheme) = out.find("://")
        && let Some(at) = out[scheme + 3..].find('@').map(|a| a + scheme + 3)
        && let Some(colon) = out[scheme + 3..at].find(':').map(|c| c + scheme + 3)
    {
        out.replace_range(colon..at, ":***");
    }
    if let Some(p) = out.find("password=") {
        let end = out[p..].find([' ', '&']).map_or(out.len(), |e| e + p);
        out.replace_range(p..end, "password=***");
    }
    out
}

/// The daemon's claim on its database: an advisory lock on `<database>.lock`, held for as long
/// as `stormbell run` runs. A second daemon on the same file, or a restore under a running
/// daemon, is refused with a clear message instead of two writers' clocks and ladders
/// interleaving (commands that only add, like `user add`, need no claim).
#[derive(Debug)]
pub struct Claim {
    _file: std::fs::File,
}

impl Claim {
    /// Take the claim, or say who holds it. Never waits.
    pub fn take(db: &Path) -> Result<Claim, StoreError> {
        use std::os::fd::AsRawFd;
        let lock = PathBuf::from(format!("{}.lock", db.display()));
        let fail = |message: String| StoreError::Claimed {
            path: db.display().to_string(),
            message,
        };
        if let Some(dir) = lock.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .or_else(|_| std::fs::File::open(&lock))
            .map_err(|e| fail(format!("cannot open {}: {e}", lock.display())))?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared with the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(fail(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                format!(
                    "a running stormbell holds {} (stop it first: systemctl stop stormbell)",
                    lock.display()
                )
            } else {
                format!("cannot lock {}: {err}", lock.display())
            }));
        }
        Ok(Claim { _file: file })
    }
}

/// A state column's values as a Rust enum: written and read by name (`ToSql`/`FromSql`), so a
/// misspelt state cannot compile, and held to the same list by the table's CHECK constraint
/// (migration 0018; `tests/it/store.rs` compares the two). The module that owns the table
/// declares its enum with this.
macro_rules! sql_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $var:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $var ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$var ),+ ];

            /// As stored.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$var => $text ),+ }
            }

            /// From its stored name.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $( $text => Some($name::$var), )+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                $name::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("{s:?} is not a {}", stringify!($name)).into(),
                    )
                })
            }
        }
    };
}
pub(crate) use sql_enum;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::{Connection, OpenFlags, Transaction};

/// A time as every table stores it: RFC 3339 in UTC to the millisecond, always 24 characters
/// (`2019-08-09T10:30:00.000Z`). One fixed-width format everywhere, so that ordering stored
/// times as text is ordering them in time — in SQL (`ORDER BY at`, `due <= ?`) and in code.
/// (Variable widths broke that: `…:00.3Z` sorts before `…:00Z`, and `+08:00` beside `Z` sorts
/// by wall clock, not by time.) People see local times: readers convert with the office's
/// zone. Migration 0018 rewrote the times stored before it.
pub fn stamp(t: jiff::Timestamp) -> String {
    let t = t.round(jiff::Unit::Millisecond).unwrap_or(t);
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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
    /// PostgreSQL refused the connection, or the URL is not one.
    #[error("database {url}: {}", sql::pg_message(.source))]
    Postgres {
        /// The database's URL, without its password.
        url: String,
        /// What the client said.
        source: ::postgres::Error,
    },
    /// A migration failed.
    #[error("database {path}: migration failed: {message}")]
    Migration {
        /// The database file.
        path: String,
        /// What failed.
        message: String,
    },
    /// Another process holds the daemon's claim on the database ([`Claim`]), or it cannot be
    /// taken.
    #[error("database {path}: {message}")]
    Claimed {
        /// The database file.
        path: String,
        /// Who holds it, or why it cannot be taken.
        message: String,
    },
    /// The leader lease could not be kept (or this node no longer holds it).
    #[error("leader lease: {0}")]
    Lease(String),
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
    /// The work succeeded but the batch it was in could not be committed (or SQLite rolled the
    /// batch back under another job: a full disk, an I/O error); nothing of it was kept.
    #[error("database {path}: not committed: {why}")]
    NotCommitted {
        /// The database file.
        path: String,
        /// Why.
        why: String,
    },
}

/// What a job leaves to do once its batch is decided: tell its caller (`None`: committed).
type Done = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// A write waiting for the writer thread.
trait Job: Send {
    /// Run in the batch's transaction; whether to keep its writes, and how to reply.
    fn run(self: Box<Self>, txn: sql::Tx<'_>) -> (bool, Done);
    /// Not run (the batch broke before it): tell the caller why.
    fn abandon(self: Box<Self>, why: StoreError);
}

struct Write<F, R> {
    work: F,
    reply: R,
}

impl<T, F, R> Job for Write<F, R>
where
    T: Send + 'static,
    F: FnOnce(&sql::Tx<'_>) -> anyhow::Result<T> + Send + 'static,
    R: FnOnce(Result<T, StoreError>) + Send + 'static,
{
    fn run(self: Box<Self>, txn: sql::Tx<'_>) -> (bool, Done) {
        let Write { work, reply } = *self;
        let started = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&txn)));
        let took = started.elapsed();
        if took > std::time::Duration::from_millis(20) {
            // A write that holds everyone else up: name it (the closure's type names the
            // function that made it).
            tracing::warn!(
                job = std::any::type_name::<F>(),
                ms = took.as_millis() as u64,
                "slow write"
            );
        }
        match outcome {
            // The value goes back once the batch is committed; if the commit fails, its error.
            Ok(Ok(value)) => (
                true,
                Box::new(move |failed: Option<StoreError>| {
                    reply(match failed {
                        None => Ok(value),
                        Some(e) => Err(e),
                    })
                }),
            ),
            Ok(Err(e)) => (false, Box::new(move |_| reply(Err(StoreError::Work(e))))),
            Err(panic) => {
                let msg = panic_message(&panic);
                (
                    false,
                    Box::new(move |_| reply(Err(StoreError::Panicked(msg)))),
                )
            }
        }
    }

    fn abandon(self: Box<Self>, why: StoreError) {
        (self.reply)(Err(why));
    }
}

/// How long a batch waits for another process's write lock (each try waits the busy timeout,
/// 5 s, itself) before its writes fail.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether `e` is SQLite saying another connection holds the lock.
fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// At most this many writes share one transaction.
pub const BATCH: usize = 256;

/// Run a batch of jobs in one transaction, each in a savepoint; commit; reply to each.
fn run_batch(
    conn: &mut Connection,
    path: &Path,
    lock_waits: &std::sync::atomic::AtomicU64,
    batch: Vec<Box<dyn Job>>,
) {
    let fail = |why: String| StoreError::NotCommitted {
        path: path.display().to_string(),
        why,
    };
    // IMMEDIATE: the write lock is taken at BEGIN, where the busy timeout applies. A deferred
    // transaction that read first and then wrote would fail at once with SQLITE_BUSY when
    // another process (a CLI command beside the daemon) had written in between.
    // Another process (an import, `user add`) may hold the lock longer than the busy timeout:
    // the batch waits for it, saying so, for up to `LOCK_PATIENCE`, rather than failing its
    // writes (an answer refused because of a lock is an answer lost to the lead who sent it).
    let waiting = std::time::Instant::now();
    let txn = loop {
        let e = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(t) => break t,
            Err(e) => e,
        };
        if !(is_locked(&e) && waiting.elapsed() < LOCK_PATIENCE) {
            for job in batch {
                job.abandon(fail(format!("cannot begin a transaction: {e}")));
            }
            return;
        }
        lock_waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            db = %path.display(),
            waited_secs = waiting.elapsed().as_secs(),
            "another process holds the database's write lock; {} writes wait",
            batch.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    run_jobs(Lite(txn), &path.display().to_string(), batch);
}

/// A batch's open transaction, on its engine: what [`run_jobs`] needs of it.
trait Batch: Sized {
    /// The transaction, as the jobs see it.
    fn tx(&self) -> sql::Tx<'_>;
    /// Run one savepoint statement.
    fn step(&self, sql: &str) -> Result<(), String>;
    /// Run savepoint statements in order, stopping at the first that fails (PostgreSQL sends
    /// them in one round trip).
    fn steps(&self, sqls: &[&str]) -> Result<(), String> {
        sqls.iter().try_for_each(|s| self.step(s))
    }
    /// Whether the engine rolled the whole transaction back under a job (SQLite does on a full
    /// disk or an I/O error).
    fn lost(&self) -> bool;
    /// Commit it.
    fn commit(self) -> Result<(), String>;
    /// Roll it back.
    fn rollback(self);
}

/// SQLite's transaction: savepoint statements through the statement cache (under load a
/// batch opens hundreds a second, and compiling each one again was a tenth of the writer's
/// time).
struct Lite<'c>(Transaction<'c>);

impl Batch for Lite<'_> {
    fn tx(&self) -> sql::Tx<'_> {
        sql::Tx::lite(&self.0)
    }
    fn step(&self, sql: &str) -> Result<(), String> {
        self.0
            .prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn lost(&self) -> bool {
        self.0.is_autocommit()
    }
    fn commit(self) -> Result<(), String> {
        self.0.commit().map_err(|e| e.to_string())
    }
    fn rollback(self) {}
}

/// Run a batch of jobs in the transaction `b`, each in a savepoint when there are several;
/// commit; reply to each. The same on both engines.
fn run_jobs(b: impl Batch, db: &str, mut batch: Vec<Box<dyn Job>>) {
    let fail = |why: String| StoreError::NotCommitted {
        path: db.to_string(),
        why,
    };
    // One job alone needs no savepoint: if it fails, the whole transaction is its own, and
    // rolls back. (A savepoint copies every page the job touches into a statement journal
    // first; under load most batches hold one job.)
    if batch.len() == 1
        && let Some(job) = batch.pop()
    {
        let (keep, reply) = job.run(b.tx());
        if !keep {
            b.rollback();
            reply(None);
            return;
        }
        match b.commit() {
            Ok(()) => reply(None),
            Err(why) => {
                tracing::error!(db, "a write did not commit: {why}");
                reply(Some(fail(why)));
            }
        }
        return;
    }
    let mut done: Vec<Done> = Vec::with_capacity(batch.len());
    let mut broken: Option<String> = None;
    // Each job in a savepoint of its own; the end of one and the start of the next are one
    // step (on PostgreSQL a step is a round trip).
    if let Err(e) = b.step("SAVEPOINT job") {
        broken = Some(format!("savepoint: {e}"));
    }
    let count = batch.len();
    for (i, job) in batch.into_iter().enumerate() {
        if let Some(why) = &broken {
            job.abandon(fail(why.clone()));
            continue;
        }
        let (keep, reply) = job.run(b.tx());
        let mut end = if keep {
            vec!["RELEASE SAVEPOINT job"]
        } else {
            vec!["ROLLBACK TO SAVEPOINT job", "RELEASE SAVEPOINT job"]
        };
        if i + 1 < count {
            end.push("SAVEPOINT job");
        }
        let end = b.steps(&end);
        if let Err(e) = end {
            broken = Some(format!("ending a savepoint: {e}"));
        } else if b.lost() {
            broken = Some("the database rolled the transaction back".into());
        }
        done.push(reply);
    }
    if let Some(why) = broken {
        b.rollback();
        tracing::error!(db, "a write batch was rolled back: {why}");
        for d in done {
            d(Some(fail(why.clone())));
        }
        return;
    }
    match b.commit() {
        Ok(()) => {
            for d in done {
                d(None);
            }
        }
        Err(why) => {
            tracing::error!(db, "a write batch did not commit: {why}");
            for d in done {
                d(Some(fail(why.clone())));
            }
        }
    }
}

/// The WAL's size past which the checkpointer copies it back (SQLite's own default limit,
/// 1,000 pages of 4 KB).
const CHECKPOINT_BYTES: u64 = 4 << 20;

/// The WAL's size past which the writer checkpoints after its commit after all, should the
/// checkpointer thread fall behind (or twice the largest transaction, if that is more).
const BACKSTOP_BYTES: i64 = 3 * CHECKPOINT_BYTES as i64;

thread_local! {
    /// Pages in the WAL after this thread's last commit ([`note_wal_pages`]): the writer's.
    static WAL_PAGES: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// SQLite's WAL hook on the writer's connection: it runs in the commit, on the writer thread.
fn note_wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(i64::from(pages));
    Ok(())
}

/// A thread with its own connection that checkpoints the WAL when the writer says it
/// committed and the WAL has grown past [`CHECKPOINT_BYTES`]. PASSIVE: it never waits for
/// readers or the writer; what it cannot copy now it copies next time.
struct Checkpointer {
    kick: mpsc::SyncSender<()>,
    /// Set after each pass: the writer then finishes the copy (see the writer's loop).
    swept: Arc<std::sync::atomic::AtomicBool>,
    /// Held by the thread while it copies: the writer takes it to wait for a pass to end.
    sweeping: Arc<Mutex<()>>,
    thread: thread::JoinHandle<()>,
}

impl Checkpointer {
    /// `None` if its connection or thread cannot be had: the writer then checkpoints in its
    /// commits, as SQLite does by default.
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open(path).ok()?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;").ok()?;
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let (kick, rx) = mpsc::sync_channel::<()>(1);
        let swept = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = swept.clone();
        let sweeping = Arc::new(Mutex::new(()));
        let held = sweeping.clone();
        let shown = path.display().to_string();
        let thread = thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                    if size < CHECKPOINT_BYTES {
                        continue;
                    }
                    let pass = held.lock();
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(db = %shown, "checkpoint: {e}");
                    }
                    drop(pass);
                    done.store(true, std::sync::atomic::Ordering::Release);
                }
            })
            .ok()?;
        Some(Checkpointer {
            kick,
            swept,
            sweeping,
            thread,
        })
    }

    /// Stop and wait for it (its connection closed).
    fn stop(self) {
        drop(self.kick);
        let _ = self.thread.join();
    }
}

/// The read connections, by engine.
enum Readers {
    /// SQLite: read-only connections to the file.
    Lite(Mutex<Vec<Connection>>),
    /// PostgreSQL: connections to the database the URL names.
    Pg {
        config: Box<::postgres::Config>,
        /// The URL without its password, for messages.
        label: String,
        pool: pg::Pool,
    },
}

/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 4;

/// A handle to the database. Cheap to clone; all clones share the one writer.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    writer: mpsc::Sender<Box<dyn Job>>,
    /// On PostgreSQL, the thread that runs writes apart ([`Store::write_apart`]) on a
    /// connection of its own, beside the writer's batches; on SQLite, none (the one writer
    /// runs them).
    apart: Option<mpsc::Sender<Box<dyn Job>>>,
    readers: Arc<Readers>,
    /// Set by the writer thread once its connection is closed (and the WAL checkpointed).
    closed: Arc<(Mutex<bool>, std::sync::Condvar)>,
    /// Times the writer found another process holding the write lock past the busy timeout
    /// and tried again ([`Store::lock_waits`]).
    lock_waits: Arc<std::sync::atomic::AtomicU64>,
    /// Moves on after each batch the writer finishes ([`Store::written`]).
    written: tokio::sync::watch::Receiver<u64>,
    /// The lease this node's writes are fenced by ([`Store::fence`]): (node, epoch).
    fence: Arc<Mutex<Option<(String, i64)>>>,
    /// Set once this node has stepped down ([`Store::revoke`]): every write is refused.
    revoked: Arc<std::sync::atomic::AtomicBool>,
    /// This node's name among the nodes sharing the database ([`Store::name_node`]).
    node: Arc<std::sync::OnceLock<String>>,
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
    /// Connect to the PostgreSQL database `url` names (libpq's URL or key=value form; several
    /// hosts with `target_session_attrs=read-write` follow the primary), bring its schema up to
    /// date, and start the writer thread.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        pg::open(url)
    }

    /// From now on, write only while `node` holds the leader lease under `epoch`: each write
    /// batch first checks the lease row (and holds it, so a takeover waits for the batch), and
    /// a batch of a node that lost the lease is refused whole. On SQLite, which one machine
    /// holds, this does nothing.
    pub fn fence(&self, node: &str, epoch: i64) {
        if let Ok(mut f) = self.fence.lock() {
            *f = Some((node.to_string(), epoch));
        }
    }

    /// Name this node among the nodes sharing a PostgreSQL database (`store.node`): what it
    /// claims outbox rows and records its SMSC binds under ([`Store::qualified`]), so the
    /// rows a node left mid-send when it died can be told from another node's rows still in
    /// flight. Set once; later calls change nothing.
    pub fn name_node(&self, node: &str) {
        let _ = self.node.set(node.to_string());
    }

    /// This node's name, on a database that nodes share (named by [`Store::name_node`]).
    pub fn node(&self) -> Option<&str> {
        if self.is_postgres() {
            self.node.get().map(String::as_str)
        } else {
            None
        }
    }

    /// `name` as this node holds it: `name@node` on a shared database, `name` on SQLite (one
    /// machine, one of each). Outbox claims (`claimed_by`) and bind states are kept so.
    pub fn qualified(&self, name: &str) -> String {
        match self.node() {
            Some(node) => format!("{name}@{node}"),
            None => name.to_string(),
        }
    }

    /// This node has stepped down: refuse every write from now on, at once (no waiting for a
    /// database it may not reach: another node leads).
    pub fn revoke(&self) {
        self.revoked
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether this store is on PostgreSQL (several nodes may share it).
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.readers, Readers::Pg { .. })
    }

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
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -65536;",
        )
        .map_err(sqlite(&path))?;
        // The writer runs the same few hundred statements over and over (each stage's hot
        // path); with rusqlite's default of 16 cached statements they evicted each other and
        // were compiled again on every use.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrations::migrations()
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Migration {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        // Checkpoints run on their own thread and connection, not inside the commit that
        // happens to cross the WAL's size limit: copying a few megabytes back into the file
        // and syncing it took 10-30 ms, and every answer queued behind that commit waited.
        let checkpointer = Checkpointer::start(&path);
        let mut backstop_pages = i64::MAX;
        if checkpointer.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
                .map_err(sqlite(&path))?;
            let page_size: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(sqlite(&path))?;
            backstop_pages = BACKSTOP_BYTES / page_size.max(512);
            conn.wal_hook(Some(note_wal_pages));
        }
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let writer_path = path.clone();
        let closed = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let signal = closed.clone();
        let lock_waits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let waits = lock_waits.clone();
        let (batches, written) = tokio::sync::watch::channel(0u64);
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                // Jobs run one after another, those already waiting together in one transaction
                // (group commit); the loop ends when every Store handle is dropped.
                let (mut last_pages, mut largest) = (0i64, 0i64);
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&mut conn, &writer_path, &waits, batch);
                    // After the commit: whoever is told sees its writes.
                    batches.send_modify(|n| *n = n.wrapping_add(1));
                    // Full or not, the checkpointer looks (it runs only past a size).
                    if let Some(c) = &checkpointer {
                        let _ = c.kick.try_send(());
                        // It has copied the bulk; the writer copies what was committed since
                        // (a few pages), so the WAL is whole in the file and the next
                        // transaction starts it again from the beginning. Without this, under
                        // writes that never pause, the copy never catches up and the WAL grows.
                        let swept = c.swept.swap(false, std::sync::atomic::Ordering::AcqRel);
                        // The thread has fallen behind (a machine so loaded that it is not
                        // scheduled): the writer waits for its pass and copies the rest itself,
                        // as SQLite would in the commit, so the WAL stays bounded.
                        let pages = WAL_PAGES.get();
                        // A single large transaction (a county's red warning) is not falling
                        // behind: the WAL may hold twice the largest one seen.
                        largest = largest.max(pages - last_pages);
                        last_pages = pages;
                        let behind = pages > backstop_pages.max(largest.saturating_mul(2));
                        let pass = behind.then(|| c.sweeping.lock());
                        if (swept || behind)
                            && let Err(e) =
                                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::warn!(db = %writer_path.display(), "checkpoint: {e}");
                        }
                        drop(pass);
                    }
                }
                // The checkpointer closes first: closing the last connection checkpoints the
                // WAL into the database file and removes it.
                if let Some(c) = checkpointer {
                    c.stop();
                }
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
            apart: None,
            readers: Arc::new(Readers::Lite(Mutex::new(Vec::new()))),
            closed,
            lock_waits,
            written,
            fence: Arc::default(),
            revoked: Arc::default(),
            node: Arc::default(),
        })
    }

    /// A signal that moves on after every write batch this store's writer has finished
    /// (committed or rolled back), told after the commit so that a reader then sees it: what a
    /// caller waiting on this process's writes (a test waiting for a state) watches instead of
    /// polling. Writes by other processes sharing the file are not signalled.
    pub fn written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.written.clone()
    }

    /// How many times the writer has waited out another process's write lock (each wait is
    /// one busy timeout, then a new try). A number that grows says something beside the
    /// daemon holds the database for long.
    pub fn lock_waits(&self) -> u64 {
        self.lock_waits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Close this handle and wait until the database is closed: every write done, the WAL
    /// checkpointed into the file. Waits for the other handles too (the database closes when
    /// the last one goes), up to `timeout`; returns whether it closed in time.
    pub fn close(self, timeout: std::time::Duration) -> bool {
        let Store {
            writer,
            apart,
            readers,
            closed,
            ..
        } = self;
        match &*readers {
            Readers::Lite(pool) => {
                if let Ok(mut pool) = pool.lock() {
                    pool.clear();
                }
            }
            Readers::Pg { pool, .. } => {
                let idle = std::mem::take(&mut *pool.0.lock().unwrap_or_else(|p| p.into_inner()));
                drop(pg::Pool(Mutex::new(idle)));
            }
        }
        drop(readers);
        drop(apart);
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

    /// The database file (on PostgreSQL, its URL without the password: what messages name).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `work` in one write transaction on the writer thread, from async code.
    ///
    /// `work`'s writes are committed when it returns `Ok` (with the other writes of its batch,
    /// before this returns) and rolled back when it returns `Err` or panics; either way the
    /// writer carries on with the next job.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sql::Tx<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(work, false, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// [`Store::write`] for work that never waits for a row another transaction has locked
    /// (every row it locks, it locks `FOR UPDATE SKIP LOCKED`) and keeps nothing in line (no
    /// audit entry, no cursor: [`sql::Conn::serialise`] refuses): a claim on the outbox. On
    /// PostgreSQL it runs in a transaction of its own without the store's write lock, on a
    /// thread and connection of its own (beside this node's other batches), so
    /// that one node's claims go on while another node's batch holds the lock (the lock
    /// made every node's writes one queue). It cannot close a deadlock: it waits for no row
    /// and takes no advisory lock (a fenced leader's lease check aside, which waits only for
    /// a takeover that itself waits for nothing it holds), while others may wait for the rows
    /// it took until it commits. Rows it took are seen taken by every statement that runs
    /// after its commit (a newer version's supersede waits for them, then finds them sent).
    /// On SQLite, the same as [`Store::write`].
    pub async fn write_apart<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sql::Tx<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(work, true, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// The same as [`Store::write`], for code that is not async (the command line).
    pub fn write_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sql::Tx<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        self.submit(work, false, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    fn submit<T, F>(
        &self,
        work: F,
        apart: bool,
        reply: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sql::Tx<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        let job: Box<dyn Job> = Box::new(Write { work, reply });
        // On PostgreSQL a write apart goes to the thread that runs them without the write
        // lock; on SQLite the one writer runs every write.
        match &self.apart {
            Some(thread) if apart => thread.send(job),
            _ => self.writer.send(job),
        }
        .map_err(|_| StoreError::WriterGone)
    }

    /// Run read-only `work` on a pooled reader connection, off the async runtime.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sql::Conn<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        let me = self.clone();
        // A blocking task's thread is outside the runtime: the work runs right there, on
        // either engine.
        tokio::task::spawn_blocking(move || me.read_here(work))
            .await
            .map_err(|e| StoreError::Panicked(e.to_string()))?
    }

    /// The same as [`Store::read`], for code that is not async.
    pub fn read_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send,
        F: FnOnce(&sql::Conn<'_>) -> anyhow::Result<T> + Send,
    {
        match &*self.readers {
            // The caller may be inside the runtime, where PostgreSQL's synchronous client
            // cannot run.
            Readers::Pg {
                config,
                label,
                pool,
            } => pg::read(config, label, pool, work),
            Readers::Lite(_) => self.read_here(work),
        }
    }

    /// Run read-only `work` on this thread.
    fn read_here<T>(
        &self,
        work: impl FnOnce(&sql::Conn<'_>) -> anyhow::Result<T>,
    ) -> Result<T, StoreError> {
        let pool = match &*self.readers {
            Readers::Lite(pool) => pool,
            Readers::Pg {
                config,
                label,
                pool,
            } => return pg::read_here(config, label, pool, work),
        };
        let conn = self.take_reader(pool)?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            work(&sql::Conn::lite(&conn))
        }));
        // Keep a few idle connections; a burst of concurrent reads must not leave dozens open
        // (each holds its own page cache).
        if let Ok(mut pool) = pool.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(conn);
        }
        match outcome {
            Ok(r) => r.map_err(StoreError::Work),
            Err(panic) => Err(StoreError::Panicked(panic_message(&panic))),
        }
    }

    fn take_reader(&self, pool: &Mutex<Vec<Connection>>) -> Result<Connection, StoreError> {
        if let Some(c) = pool.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(&self.path))?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            .map_err(sqlite(&self.path))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }
}

/// Statements each connection keeps compiled.
const STATEMENT_CACHE: usize = 256;

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod stamp_tests {
    use super::stamp;

    #[test]
    fn stored_times_are_fixed_width_utc_so_text_order_is_time_order() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            stamp(at("2019-08-09T10:00:00Z")),
            "2019-08-09T10:00:00.000Z"
        );
        assert_eq!(
            stamp(at("2019-08-09T18:00:00.3+08:00")),
            "2019-08-09T10:00:00.300Z"
        );
        assert_eq!(
            stamp(at("2019-08-09T10:00:00.0004Z")),
            "2019-08-09T10:00:00.000Z"
        );
        assert_eq!(
            stamp(at("2019-08-09T10:00:00.9996Z")),
            "2019-08-09T10:00:01.000Z"
        );
        // The order of the text is the order of the times, whatever zone they came in.
        let mut times = [
            "2019-08-09T10:00:00.3Z",
            "2019-08-09T18:00:00+08:00",
            "2019-08-09T09:59:59.999Z",
            "2019-08-09T17:00:00.5-00:00",
        ]
        .map(at);
        let mut text = times.map(stamp);
        times.sort();
        text.sort();
        assert_eq!(text, times.map(stamp));
        assert!(text.iter().all(|t| t.len() == 24));
    }
}
