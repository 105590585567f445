//! A PostgreSQL pair under Patroni (Debian's `patroni` and `etcd-server`), on loopback: one
//! etcd, two Patroni members with synchronous replication, as docs/deploy.md sets up an office
//! (there with three etcd members on three machines). Everything is stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// etcd and two Patroni members, each its PostgreSQL.
pub struct Pair {
    dir: tempfile::TempDir,
    etcd: Child,
    members: Vec<Option<Child>>,
    /// The members' PostgreSQL ports, pg1's first.
    pub ports: [u16; 2],
    rest: [u16; 2],
}

fn port() -> u16 {
    super::kannel::free_port()
}

/// The status code of `GET path` on 127.0.0.1:`port` (0: no answer).
fn status(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return 0;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

impl Pair {
    /// etcd, then pg1 until it is the primary, then pg2 until it is its synchronous standby.
    pub fn start() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (port(), port());
        let etcd = Command::new("etcd")
            .args(["--name", "e", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("e=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
            .spawn()
            .expect("etcd (Debian etcd-server; scripts/test installs it)");
        let ports = [port(), port()];
        let rest = [port(), port()];
        for n in 0..2 {
            std::fs::write(
                dir.path().join(format!("pg{}.yml", n + 1)),
                config(dir.path(), n + 1, client, ports[n], rest[n]),
            )
            .unwrap();
        }
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let mut pair = Pair {
            dir,
            etcd,
            members: vec![None, None],
            ports,
            rest,
        };
        pair.member(0);
        pair.wait(0, "/primary", "pg1 the primary");
        pair.member(1);
        pair.wait(1, "/sync", "pg2 pg1's synchronous standby");
        pair
    }

    fn member(&mut self, n: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("pg{}.log", n + 1))).unwrap();
        let child = super::postgres::as_postgres(Path::new("/usr/bin/patroni"))
            .arg(self.dir.path().join(format!("pg{}.yml", n + 1)))
            // A line at each loop (every second), written as it comes: the log folder's
            // changes are what wake the waits.
            .env("PYTHONUNBUFFERED", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("patroni (Debian patroni; scripts/test installs it)");
        self.members[n] = Some(child);
    }

    /// Wait (its log folder's changes waking the check) until member `n` answers 200 on its
    /// REST `path` (`/primary`, `/sync`, `/replica`).
    pub fn wait(&self, n: usize, path: &str, what: &str) {
        let port = self.rest[n];
        // What they said and which of them still run, read when the wait has failed (read
        // before, the logs were those of the moment the wait began).
        super::wait_until(
            super::Said(|| format!("{what}\n{}\n{}", self.processes(), self.logs())),
            90,
            self.dir.path(),
            || status(port, path) == 200,
        );
    }

    /// The Patroni, PostgreSQL and etcd processes running now, for a failure's message.
    fn processes(&self) -> String {
        let ps = Command::new("ps")
            .args(["-eo", "pid,stat,etime,time,args"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mine: Vec<&str> = ps
            .lines()
            .filter(|l| l.contains(&dir) || l.contains("patroni") || l.contains("etcd"))
            .collect();
        format!("--- processes\n{}", mine.join("\n"))
    }

    /// What Patroni and etcd said, for a failure's message.
    pub fn logs(&self) -> String {
        ["etcd.log", "pg1.log", "pg2.log"]
            .iter()
            .map(|f| {
                let t = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                format!(
                    "--- {f}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A new database on the primary; its URL naming both members, as an office's nodes do.
    pub fn database(&self, name: &str) -> String {
        let primary = format!("postgres://postgres@127.0.0.1:{}/postgres", self.ports[0]);
        super::postgres::client(&primary, |c| {
            c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap()
        });
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{name}?target_session_attrs=read-write&connect_timeout=2",
            self.ports[0], self.ports[1]
        )
    }

    /// Member `n` dies outright: its Patroni and its PostgreSQL killed with SIGKILL.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut c) = self.members[n].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // runuser's child: kill Patroni by its configuration file, then the postmaster.
        let yml = self.dir.path().join(format!("pg{}.yml", n + 1));
        let _ = Command::new("pkill")
            .args(["-9", "-f"])
            .arg(format!("patroni {}", yml.display()))
            .status();
        if let Some(pid) = std::fs::read_to_string(self.data(n).join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        {
            // SAFETY: a signal to a process id read from the server's own pid file.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    fn data(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("pg{}", n + 1))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for n in 0..2 {
            self.kill(n);
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

fn config(dir: &Path, n: usize, etcd: u16, pg: u16, rest: u16) -> String {
    format!(
        r#"scope: stormbell-test
name: pg{n}
restapi: {{listen: "127.0.0.1:{rest}", connect_address: "127.0.0.1:{rest}"}}
etcd3: {{hosts: "127.0.0.1:{etcd}"}}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    synchronous_mode: true
  initdb: [{{encoding: UTF8}}, {{locale: C}}, {{auth: trust}}]
  pg_hba: ["host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust", "local all all trust"]
postgresql:
  listen: "127.0.0.1:{pg}"
  connect_address: "127.0.0.1:{pg}"
  data_dir: {dir}/pg{n}
  bin_dir: {bin}
  pgpass: {dir}/pgpass{n}
  authentication:
    superuser: {{username: postgres, password: unused}}
    replication: {{username: postgres, password: unused}}
  parameters: {{unix_socket_directories: "{dir}"}}
"#,
        dir = dir.display(),
        bin = super::postgres::bin().display(),
    )
}
