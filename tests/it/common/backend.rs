//! The store's two engines, for tests that must hold on both: a SQLite file in a temporary
//! folder, or a new database on the run's one PostgreSQL ([`super::postgres::shared`]).
//! [`on_both!`] writes such a test once and runs it twice (`<name>::sqlite`,
//! `<name>::postgres`).

use stormbell::store::Store;

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Its name, for what a test keeps of each run (screenshots, reports).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where a test's database lives, and its store.
pub struct Place {
    pub backend: Backend,
    /// SQLite: the file; PostgreSQL: the URL.
    pub at: String,
    _dir: Option<tempfile::TempDir>,
}

impl Place {
    /// A new, empty place on `backend`.
    pub fn new(backend: Backend) -> Place {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let at = dir.path().join("t.db").display().to_string();
                Place {
                    backend,
                    at,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Place {
                backend,
                at: super::postgres::database(),
                _dir: None,
            },
        }
    }

    /// A copy of the database as it is now, in a place of its own (a file copied; on
    /// PostgreSQL a database made from this one, which nobody may be connected to meanwhile).
    pub fn copy(&self) -> Place {
        match self.backend {
            Backend::Sqlite => {
                let to = Place::new(Backend::Sqlite);
                std::fs::copy(&self.at, &to.at).unwrap();
                to
            }
            Backend::Postgres => {
                let name = self.at.rsplit('/').next().unwrap();
                Place {
                    backend: self.backend,
                    at: super::postgres::database_like(Some(name)),
                    _dir: None,
                }
            }
        }
    }

    /// Let `ops` (UPDATE, DELETE) through the audit table's guards, as someone with the
    /// database's owner rights could.
    pub fn disarm_audit(&self, ops: &[&str]) {
        for op in ops {
            let trigger = format!("audit_refuse_{}", op.to_lowercase());
            self.raw(
                &format!("DROP TRIGGER {trigger}"),
                &format!("ALTER TABLE audit DISABLE TRIGGER {trigger}"),
                &[],
            )
            .unwrap();
        }
    }

    /// Open (or open again) the store there.
    pub fn open(&self) -> Store {
        match self.backend {
            Backend::Sqlite => Store::open(&self.at).unwrap(),
            Backend::Postgres => Store::open_postgres(&self.at).unwrap(),
        }
    }

    /// One whole number read behind the store's back (a count or a sum; none counts as 0).
    /// `sql` must read the same on both engines.
    pub fn count(&self, sql: &str) -> i64 {
        // A sum of bigints is a numeric on PostgreSQL: read every figure as a bigint.
        self.one(sql, &format!("SELECT ({sql})::bigint"))
            .unwrap_or(0)
    }

    /// One text read behind the store's back (none reads as empty). `sql` must read the same
    /// on both engines.
    pub fn text(&self, sql: &str) -> String {
        self.one(sql, sql).unwrap_or_default()
    }

    /// The first column of the first row, read behind the store's back: `sqlite` on SQLite,
    /// `postgres` on PostgreSQL.
    fn one<T>(&self, sqlite: &str, postgres: &str) -> Option<T>
    where
        T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a> + Send,
    {
        match self.backend {
            Backend::Sqlite => {
                let c = rusqlite::Connection::open_with_flags(
                    &self.at,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap();
                c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                c.query_row(sqlite, (), |r| r.get::<_, Option<T>>(0))
                    .unwrap()
            }
            Backend::Postgres => super::postgres::query_one::<Option<T>>(&self.at, postgres),
        }
    }

    /// Point a `stormbell` command at this place through its environment (as an office's
    /// service file would); `data` is the folder for PostgreSQL's audit checkpoints.
    pub fn env(&self, cmd: &mut std::process::Command, data: &std::path::Path) {
        match self.backend {
            Backend::Sqlite => cmd.env("STORMBELL_STORE__PATH", &self.at),
            Backend::Postgres => cmd
                .env("STORMBELL_STORE__BACKEND", "postgres")
                .env("STORMBELL_STORE__URL", &self.at)
                .env("STORMBELL_STORE__PATH", data.join("stormbell.db")),
        };
    }

    /// A digest of everything the database holds: SQLite's file, byte for byte; on
    /// PostgreSQL every row of every table of the schema, in order.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        match self.backend {
            Backend::Sqlite => hex::encode(sha2::Sha256::digest(std::fs::read(&self.at).unwrap())),
            Backend::Postgres => super::postgres::client(&self.at, |c| {
                let tables: Vec<String> = c
                    .query(
                        "SELECT table_name::text FROM information_schema.tables
                         WHERE table_schema = 'public' ORDER BY 1",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut h = sha2::Sha256::new();
                for t in tables {
                    let rows: Option<String> = c
                        .query_one(
                            &format!(
                                "SELECT string_agg(r::text, chr(10) ORDER BY r::text) FROM {t} r"
                            ),
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    h.update(format!("{t}\n{}\n", rows.unwrap_or_default()));
                }
                hex::encode(h.finalize())
            }),
        }
    }

    /// Wait until `done()` holds while another process writes here, up to `secs`; fail
    /// naming `what`. Looked at again at each change in `also` (a log, a peer's files) and at
    /// each write of the database: SQLite's to its folder, PostgreSQL's to the server's
    /// write-ahead log (every commit writes there).
    pub fn wait_until(
        &self,
        what: impl std::fmt::Display,
        secs: u64,
        also: &std::path::Path,
        done: impl FnMut() -> bool,
    ) {
        let db = match (&self._dir, self.backend) {
            (Some(dir), Backend::Sqlite) => dir.path().to_path_buf(),
            _ => super::postgres::shared().wal(),
        };
        let held = super::watched_until(secs, &[also, &db], done);
        assert!(held, "{what}: not within {secs} s");
    }

    /// The `[store]` section of a daemon's configuration for this place; `data` is the
    /// folder where, on PostgreSQL, the audit checkpoints and their key go.
    pub fn store_toml(&self, data: &std::path::Path) -> String {
        match self.backend {
            Backend::Sqlite => format!("[store]\npath = {:?}\n", self.at),
            Backend::Postgres => format!(
                "[store]\nbackend = \"postgres\"\nurl = {:?}\npath = {:?}\n",
                self.at,
                data.join("stormbell.db").display().to_string()
            ),
        }
    }

    /// Run SQL behind the store's back, as someone with a shell on the database could:
    /// `sqlite` on SQLite, `postgres` on PostgreSQL (`$N` placeholders there), with `params`
    /// as text. Returns rows changed, or the engine's error.
    pub fn raw(&self, sqlite: &str, postgres: &str, params: &[&str]) -> Result<u64, String> {
        match self.backend {
            Backend::Sqlite => {
                let c = rusqlite::Connection::open(&self.at).unwrap();
                let n = if params.is_empty() {
                    c.execute_batch(sqlite).map(|_| 0)
                } else {
                    c.execute(sqlite, rusqlite::params_from_iter(params.iter()))
                        .map(|n| n as u64)
                };
                n.map_err(|e| e.to_string())
            }
            Backend::Postgres => super::postgres::client(&self.at, |c| {
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|s| s as _).collect();
                let n = if params.is_empty() {
                    c.batch_execute(postgres).map(|_| 0)
                } else {
                    c.execute(postgres, &p)
                };
                n.map_err(|e| match e.as_db_error() {
                    Some(db) => db.message().to_string(),
                    None => e.to_string(),
                })
            }),
        }
    }
}

/// A test written once, run on SQLite and on PostgreSQL: `fn name(backend) { … }` becomes
/// the tests `name::sqlite` and `name::postgres`; `async fn` runs on a two-worker runtime.
macro_rules! on_both {
    ($(#[$m:meta])* fn $name:ident($b:ident) $body:block) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run($b: crate::common::backend::Backend) $body
            #[test]
            fn sqlite() {
                run(crate::common::backend::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                run(crate::common::backend::Backend::Postgres)
            }
        }
    };
    ($(#[$m:meta])* async fn $name:ident($b:ident) $body:block) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($b: crate::common::backend::Backend) $body
            fn on(b: crate::common::backend::Backend) {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(run(b))
            }
            #[test]
            fn sqlite() {
                on(crate::common::backend::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                on(crate::common::backend::Backend::Postgres)
            }
        }
    };
}
pub(crate) use on_both;
