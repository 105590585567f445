//! A real Icecast 2.4 server (Debian `icecast2`) as a child process on 127.0.0.1.
//!
//! Icecast refuses to run as root: as root it is started as the `icecast2` user the Debian
//! package creates, with its config and log directory readable and writable by that user.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Icecast; killed when dropped.
pub struct Icecast {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// host:port.
    pub addr: String,
    /// The source password.
    pub password: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Icecast {
    /// Start one with room for `sources` mounts.
    pub fn start(sources: u32) -> Icecast {
        assert!(
            std::path::Path::new("/usr/bin/icecast2").is_file(),
            "icecast2 is not installed: run ./scripts/test (Debian icecast2)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let password = "stormbell-test-source".to_string();
        let logdir = dir.path().join("log");
        std::fs::create_dir(&logdir).unwrap();
        std::fs::set_permissions(&logdir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let config = format!(
            r#"<icecast>
  <location>test</location><admin>test@localhost</admin>
  <limits>
    <clients>600</clients><sources>{sources}</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size>
  </limits>
  <authentication>
    <source-password>{password}</source-password><relay-password>{password}</relay-password>
    <admin-user>admin</admin-user><admin-password>{password}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>{log}</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
    <alias source="/" destination="/status.xsl"/>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot></security>
</icecast>
"#,
            log = logdir.display()
        );
        let conf = dir.path().join("icecast.xml");
        std::fs::write(&conf, config).unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
        let root = unsafe { libc::geteuid() } == 0;
        let mut cmd = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "icecast2", "--", "/usr/bin/icecast2", "-c"]);
            c
        } else {
            let mut c = Command::new("/usr/bin/icecast2");
            c.arg("-c");
            c
        };
        let child = cmd
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("icecast2 starts");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "icecast2 did not listen on {addr}; its log: {}",
                std::fs::read_to_string(logdir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Icecast {
            child,
            url: format!("http://{addr}"),
            addr,
            password,
            dir,
        }
    }

    /// Its error log (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/error.log")).unwrap_or_default()
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        // runuser passes the signal on to icecast2.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // As root, the child is runuser: make sure icecast2 itself is gone too.
        let _ = Command::new("pkill")
            .args([
                "-f",
                &format!("{}", self.dir.path().join("icecast.xml").display()),
            ])
            .status();
    }
}
