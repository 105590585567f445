//! A real PostgreSQL (Debian's postgresql, as docs/test-peers.md says), started in a temporary
//! folder on a loopback port for one test and stopped with it. PostgreSQL refuses to run as
//! root: the server runs as the `postgres` user when the tests do run as root.

use std::path::PathBuf;
use std::process::Command;

/// A running server; stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

pub fn bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (Debian postgresql; scripts/test installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL with pg_ctl")
}

pub fn as_postgres(program: &std::path::Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// initdb, then start, waiting until it accepts connections.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // The server's user must own its folder.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let bin = bin();
        let out = as_postgres(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::kannel::free_port();
        let out = as_postgres(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
                dir.path().display()
            ))
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        Postgres { dir, bin, port }
    }

    /// A libpq URL to the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's write-ahead log folder: every commit writes a file in it, so a test waiting
    /// for a state another process commits watches it ([`super::wait_until`]).
    pub fn wal(&self) -> PathBuf {
        self.dir.path().join("data/pg_wal")
    }

    /// Run SQL with psql, failing the test on error.
    pub fn sql(&self, sql: &str) {
        let out = Command::new("psql")
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-d"])
            .arg(self.url())
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The run's one PostgreSQL for the store tests, started at first use and stopped when the
/// test process exits; each test takes its own database in it ([`database`]).
pub fn shared() -> &'static Postgres {
    static SERVER: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let pg = Postgres::start();
        // Statics are never dropped: stop the server when the harness exits.
        STOP.get_or_init(|| {
            (
                pg.bin.join("pg_ctl"),
                pg.dir.path().join("data"),
                pg.dir.path().to_path_buf(),
            )
        });
        extern "C" fn stop() {
            if let Some((pg_ctl, data, dir)) = STOP.get() {
                let _ = as_postgres(pg_ctl)
                    .arg("-D")
                    .arg(data)
                    .args(["-m", "immediate", "-w", "stop"])
                    .output();
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a plain function with no captured state to run at exit.
        unsafe { libc::atexit(stop) };
        pg
    })
}

static STOP: std::sync::OnceLock<(PathBuf, PathBuf, PathBuf)> = std::sync::OnceLock::new();

/// A new, empty database on the shared server; its URL.
pub fn database() -> String {
    database_like(None)
}

/// A new database on the shared server: empty, or a copy of the database `template` (by its
/// name; nobody may be connected to it meanwhile). Its URL.
pub fn database_like(template: Option<&str>) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let pg = shared();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let like = template.map_or(String::new(), |t| format!(" TEMPLATE {t}"));
    client(&pg.url(), |c| {
        c.batch_execute(&format!("CREATE DATABASE {name}{like}"))
            .unwrap()
    });
    format!("postgres://postgres@127.0.0.1:{}/{name}", pg.port)
}

/// Run `work` with a connection to `url`, on a thread of its own: the synchronous client
/// starts a runtime, which cannot start inside an async test's.
pub fn client<T: Send>(url: &str, work: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| work(&mut postgres::Client::connect(url, postgres::NoTls).unwrap()))
            .join()
            .unwrap()
    })
}

/// The plan PostgreSQL would run `statement` (the store's SQL, `?N` placeholders) with once it
/// settles on a generic plan (a prepared statement's, from its sixth run): forced, and
/// explained with `args` for the parameters of `types`. What a plan test reads.
pub fn generic_plan(url: &str, statement: &str, types: &str, args: &str) -> String {
    client(url, |c| {
        c.batch_execute("SET plan_cache_mode = force_generic_plan")
            .unwrap();
        let sql = statement.replace('?', "$");
        c.batch_execute(&format!("PREPARE planned({types}) AS {sql}"))
            .unwrap();
        c.query(&format!("EXPLAIN EXECUTE planned({args})"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// One value from the database at `url`.
pub fn query_one<T>(url: &str, sql: &str) -> T
where
    T: for<'a> postgres::types::FromSql<'a> + Send,
{
    client(url, |c| c.query_one(sql, &[]).unwrap().get(0))
}

/// A TCP relay between a client and PostgreSQL that a test can cut, as a switch failing
/// between one machine and the database: every connection through it is closed and new ones
/// are refused.
pub struct Relay {
    /// Its port on 127.0.0.1.
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    /// A relay to PostgreSQL's port `to`.
    pub fn start(to: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if c.load(Ordering::Acquire) {
                    continue; // dropped: refused
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let mut kept = o.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        kept.push(s);
                    }
                }
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, cut, open }
    }

    /// Cut it: close every connection through it and refuse new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Release);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Join it again: new connections go through.
    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Release);
    }

    /// `url` (a database on the shared server) through this relay.
    pub fn url(&self, url: &str) -> String {
        url.replace(&format!(":{}/", shared().port), &format!(":{}/", self.port))
    }
}
