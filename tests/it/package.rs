//! The Debian package, as a county's IT person meets it: built by scripts/package-deb,
//! installed with apt on this machine, the service started as its unit says (by systemd when
//! it runs here, otherwise the unit's ExecStart under the service account), the fixture
//! registry imported as that account, and the daemon answering `/healthz`, `/metrics` and
//! `status`; then Debian's nginx in front of it with the packaged example configuration (the
//! check-in links from anywhere, the office page only from the office range), the packaged
//! alert rules checked by promtool, and a purge that keeps the county's records.
//!
//! It installs a package system-wide, so it runs as root (CI does) and refuses to touch a
//! machine where stormbell is installed already.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> (Output, String) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, text)
}

fn ok(cmd: &mut Command) -> String {
    let (o, text) = run(cmd);
    assert!(o.status.success(), "{cmd:?}: {text}");
    text
}

/// The installed program as the service account, with the packaged configuration.
fn as_service(args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "stormbell", "--", "/usr/bin/stormbell"])
        .args(["--config", "/etc/stormbell/stormbell.toml"])
        .args(args)
        .env_remove("RUST_LOG");
    c
}

fn mode_and_owner(path: &str) -> String {
    ok(Command::new("stat").args(["-c", "%a %U:%G", path]))
        .trim()
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl`, an independent client: (status, body); status 0 when nothing answered. `from`
/// picks the source address.
fn curl(url: &str, from: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sk", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(ip) = from {
        c.args(["--interface", ip]);
    }
    let (o, _) = run(c.arg(url));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Undoes the install whatever happens: purges the package, and removes the account and the
/// data folder when this test made them.
struct Installed {
    made_user: bool,
    made_data: bool,
    /// The daemon and nginx, stopped with SIGTERM (nginx's master then stops its workers;
    /// SIGKILL would leave them behind).
    children: Vec<Child>,
}

/// SIGTERM, then its exit waited for up to ten seconds, then SIGKILL.
fn stop(mut c: Child) -> Option<std::process::ExitStatus> {
    let pid = c.id() as i32;
    // SAFETY: kill sends a signal to a child this test started and has not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(c.wait());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(status)) => Some(status),
        _ => {
            // SAFETY: as above; the waiting thread reaps it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(10));
            None
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for c in self.children.drain(..) {
            stop(c);
        }
        let _ = Command::new("apt-get")
            .args(["purge", "-y", "-q", "stormbell"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
        if self.made_data {
            let _ = std::fs::remove_dir_all("/var/lib/stormbell");
        }
        if self.made_user {
            let _ = Command::new("userdel").arg("stormbell").output();
            let _ = Command::new("groupdel").arg("stormbell").output();
        }
    }
}

/// The unit's ExecStart, WorkingDirectory and Environment= lines.
fn unit(path: &Path) -> (Vec<String>, String, Vec<(String, String)>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut exec = Vec::new();
    let mut dir = String::from("/");
    let mut env = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ExecStart=") {
            exec = v.split_whitespace().map(String::from).collect();
        } else if let Some(v) = line.strip_prefix("WorkingDirectory=") {
            dir = v.to_string();
        } else if let Some(v) = line.strip_prefix("Environment=")
            && let Some((k, v)) = v.split_once('=')
        {
            env.push((k.to_string(), v.to_string()));
        }
    }
    assert!(!exec.is_empty(), "no ExecStart in {}", path.display());
    (exec, dir, env)
}

/// Wait for `done`, checked again each time a file in `dir` changes (the daemon's log, nginx's
/// pid file: each written once its port is bound).
fn wait_for(what: &str, dir: &Path, mut done: impl FnMut() -> bool, mut child: Option<&mut Child>) {
    crate::common::wait_until(what, 90, dir, || {
        if let Some(c) = child.as_deref_mut() {
            assert!(
                c.try_wait().unwrap().is_none(),
                "the daemon exited while waiting for {what}"
            );
        }
        done()
    });
}

/// The packaged nginx example made to run here: its listen ports, certificate, daemon address
/// and office range replaced, nothing else.
fn nginx_conf(example: &str, dir: &Path, http: u16, https: u16, daemon: u16) -> String {
    let site = example
        .replace("    listen [::]:80;\n", "")
        .replace("    listen [::]:443 ssl http2;\n", "")
        .replace("listen 80;", &format!("listen 127.0.0.1:{http};"))
        .replace(
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{https} ssl http2;"),
        )
        .replace("127.0.0.1:8470", &format!("127.0.0.1:{daemon}"))
        .replace(
            "/etc/ssl/certs/fxb.example.gov.cn.pem",
            &dir.join("cert.pem").display().to_string(),
        )
        .replace(
            "/etc/ssl/private/fxb.example.gov.cn.key",
            &dir.join("key.pem").display().to_string(),
        )
        .replace("10.20.0.0/16", "127.0.0.2");
    for (from, what) in [
        (format!("127.0.0.1:{http}"), "HTTP port"),
        (format!("127.0.0.1:{https}"), "HTTPS port"),
        (format!("127.0.0.1:{daemon}"), "upstream"),
        ("127.0.0.2".to_string(), "office range"),
    ] {
        assert!(site.contains(&from), "the example has no {what} to set");
    }
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n{site}\n}}\n"
    )
}

#[test]
fn the_debian_package_installs_starts_answers_and_serves_behind_nginx() {
    // SAFETY: geteuid reads this process's effective user id; it has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "installing the package needs root (CI runs the tests as root)"
    );
    let (o, _) = run(Command::new("dpkg").args(["-s", "stormbell"]));
    assert!(
        !o.status.success(),
        "stormbell is installed on this machine already; this test would replace it"
    );
    let tmp = tempfile::tempdir().unwrap();
    let deb = ok(Command::new(root().join("scripts/package-deb"))
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_stormbell"),
            "--fast",
            "--out",
        ])
        .arg(tmp.path()));
    let deb = PathBuf::from(deb.trim().lines().last().unwrap().trim());
    assert!(deb.exists(), "{}", deb.display());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("stormbell_{version}_")),
        "{}",
        deb.display()
    );
    let info = ok(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for dep in ["espeak-ng", "ffmpeg"] {
        assert!(info.contains(dep), "Depends lacks {dep}: {info}");
    }
    let contents = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for f in [
        "./usr/bin/stormbell",
        "./etc/stormbell/stormbell.toml",
        "./lib/systemd/system/stormbell.service",
        "./usr/share/stormbell/rules/national.toml",
        "./usr/share/stormbell/prometheus/stormbell-alerts.yml",
        "./usr/share/doc/stormbell/deploy.md",
        "./usr/share/doc/stormbell/examples/nginx-stormbell.conf",
    ] {
        assert!(contents.contains(f), "the package lacks {f}");
    }

    let mut installed = Installed {
        made_user: !ok(Command::new("getent").arg("passwd"))
            .lines()
            .any(|l| l.starts_with("stormbell:")),
        made_data: !Path::new("/var/lib/stormbell").exists(),
        children: Vec::new(),
    };
    ok(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(Path::new("/usr/bin/stormbell").exists());
    assert_eq!(
        mode_and_owner("/var/lib/stormbell"),
        "750 stormbell:stormbell"
    );
    assert_eq!(
        mode_and_owner("/etc/stormbell/stormbell.toml"),
        "640 root:stormbell"
    );
    assert_eq!(
        mode_and_owner("/etc/stormbell/audit.key"),
        "440 root:stormbell"
    );
    let text = ok(&mut as_service(&["--version"]));
    assert!(
        text.contains(&format!("stormbell {version} (database schema")),
        "{text}"
    );
    let text = ok(&mut as_service(&[
        "config",
        "check",
        "/etc/stormbell/stormbell.toml",
    ]));
    assert!(text.contains(": ok"), "{text}");

    // The fixture county, imported as the service account from a folder it can read.
    let county = tmp.path().join("county");
    std::fs::create_dir(&county).unwrap();
    for e in std::fs::read_dir(root().join("fixtures/county")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), county.join(e.file_name())).unwrap();
    }
    ok(Command::new("chmod").args(["-R", "a+rX"]).arg(tmp.path()));
    let text = ok(&mut as_service(&[
        "registry",
        "import",
        county.to_str().unwrap(),
    ]));
    assert!(text.contains("import #1"), "{text}");

    // Started as the unit says.
    let port = free_port();
    let (exec, dir, env) = unit(Path::new("/lib/systemd/system/stormbell.service"));
    assert_eq!(exec[0], "/usr/bin/stormbell");
    let systemd = Path::new("/run/systemd/system").exists();
    if systemd {
        std::fs::create_dir_all("/run/systemd/system/stormbell.service.d").unwrap();
        std::fs::write(
            "/run/systemd/system/stormbell.service.d/test-port.conf",
            format!("[Service]\nEnvironment=STORMBELL_WEB__LISTEN=127.0.0.1:{port}\n"),
        )
        .unwrap();
        ok(Command::new("systemctl").arg("daemon-reload"));
        ok(Command::new("systemctl").args(["start", "stormbell"]));
    } else {
        // No systemd here: the unit's command under its account (setpriv execs it, so the
        // child is the daemon itself and gets the SIGTERM systemd would send).
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=stormbell",
            "--regid=stormbell",
            "--init-groups",
            "--",
        ])
        .args(&exec)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("STORMBELL_WEB__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("daemon.log")).unwrap());
        for (k, v) in &env {
            c.env(k, v);
        }
        installed.children.push(c.spawn().unwrap());
    }
    let base = format!("http://127.0.0.1:{port}");
    // The daemon's log gets its "CAP feed at …" line once the web port is bound (under
    // systemd the log is the journal; its database folder changes as it starts).
    let started = if systemd {
        PathBuf::from("/var/lib/stormbell")
    } else {
        tmp.path().to_path_buf()
    };
    wait_for(
        "/healthz",
        &started,
        || curl(&format!("{base}/healthz"), None).0 == 200,
        installed.children.first_mut(),
    );
    let (_, health) = curl(&format!("{base}/healthz"), None);
    let schema = stormbell::store::backup::latest_schema();
    assert_eq!(health, format!("ok\nschema {schema}\n"));
    let (code, metrics) = curl(&format!("{base}/metrics"), None);
    assert_eq!(code, 200);
    let scraped = tmp.path().join("metrics.txt");
    std::fs::write(&scraped, &metrics).unwrap();
    ok(Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", scraped.display())));
    assert!(metrics.contains("stormbell_audit_chain_ok 1"), "{metrics}");

    // The packaged alert rules: valid, their own tests pass, and every figure they watch is
    // one the daemon exports.
    let prom = Path::new("/usr/share/stormbell/prometheus");
    ok(Command::new("promtool")
        .args(["check", "rules", "stormbell-alerts.yml"])
        .current_dir(prom));
    ok(Command::new("promtool")
        .args(["test", "rules", "stormbell-alerts.test.yml"])
        .current_dir(prom));
    let rules = std::fs::read_to_string(prom.join("stormbell-alerts.yml")).unwrap();
    let mut watched: Vec<&str> = rules
        .match_indices("stormbell_")
        .map(|(i, _)| {
            let rest = &rules[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| name.len() > "stormbell_".len())
        .collect();
    watched.sort();
    watched.dedup();
    assert!(watched.len() >= 8, "{watched:?}");
    for name in watched {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "the alert rules watch {name}, which /metrics does not export"
        );
    }

    // The drill before the season, as the service account, from the packaged examples.
    let drill = "/var/lib/stormbell/drill-before-season";
    let text = ok(&mut as_service(&[
        "replay",
        "--scenario",
        "/usr/share/stormbell/examples/scenarios/cell-2024",
        "--out",
        drill,
    ]));
    assert!(Path::new(drill).join("report.md").exists(), "{text}");

    let text = ok(&mut as_service(&["status"]));
    assert!(
        text.contains(&format!("schema:   {schema} (this stormbell: {schema})")),
        "{text}"
    );
    assert!(text.contains("registry: import #1"), "{text}");
    assert!(text.contains("audit:    intact"), "{text}");

    // nginx in front, with the packaged example.
    let ngx = tmp.path().join("nginx");
    std::fs::create_dir(&ngx).unwrap();
    ok(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=fxb.example.gov.cn"])
        .arg("-keyout")
        .arg(ngx.join("key.pem"))
        .arg("-out")
        .arg(ngx.join("cert.pem")));
    let example =
        std::fs::read_to_string("/usr/share/doc/stormbell/examples/nginx-stormbell.conf").unwrap();
    let (http, https) = (free_port(), free_port());
    let conf = ngx.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&example, &ngx, http, https, port)).unwrap();
    ok(Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(&ngx)
        .arg("-c")
        .arg(&conf));
    let proxy = Command::new("nginx")
        .arg("-p")
        .arg(&ngx)
        .arg("-c")
        .arg(&conf)
        .spawn()
        .unwrap();
    installed.children.push(proxy);
    let front = format!("https://127.0.0.1:{https}");
    wait_for(
        "nginx",
        &ngx,
        || curl(&format!("{front}/nowhere"), None).0 == 404,
        None,
    );
    // A check-in link, from anywhere: the daemon's own answer comes back through the proxy.
    let (code, body) = curl(&format!("{front}/r/AAAAAAAAAAAAAAAAAAAAAA"), None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("没有这个链接"), "{body}");
    // Typed without https: sent there.
    let (code, _) = curl(&format!("http://127.0.0.1:{http}/r/x"), None);
    assert_eq!(code, 301);
    // The office page and the figures: not from outside the office range …
    for path in [
        "/office",
        "/office/login",
        "/api/v1/board",
        "/metrics",
        "/healthz",
    ] {
        let (code, _) = curl(&format!("{front}{path}"), None);
        assert_eq!(code, 403, "{path} reachable from outside the office range");
    }
    // … and served from inside it.
    let (code, body) = curl(&format!("{front}/office/login"), Some("127.0.0.2"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<form"), "{body}");
    let (code, body) = curl(&format!("{front}/metrics"), Some("127.0.0.2"));
    assert_eq!(code, 200);
    assert!(body.contains("stormbell_audit_entries"), "{body}");

    // Stopped as systemd stops it: SIGTERM, a clean exit, the stop in the trail.
    if systemd {
        ok(Command::new("systemctl").args(["stop", "stormbell"]));
        let _ = std::fs::remove_file("/run/systemd/system/stormbell.service.d/test-port.conf");
    } else {
        let status = stop(installed.children.remove(0));
        assert!(
            status.is_some_and(|s| s.success()),
            "the daemon's exit on SIGTERM: {status:?}"
        );
    }
    let text = ok(&mut as_service(&["audit", "verify"]));
    assert!(!text.contains("BROKEN"), "{text}");

    // Removed and purged: the program and its configuration go, the county's records stay.
    ok(Command::new("apt-get")
        .args(["purge", "-y", "-q", "stormbell"])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(!Path::new("/usr/bin/stormbell").exists());
    assert!(!Path::new("/etc/stormbell/stormbell.toml").exists());
    assert!(Path::new("/var/lib/stormbell/stormbell.db").exists());
    drop(installed);
}
