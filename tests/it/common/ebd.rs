//! The test emergency-broadcast platform (tests/ebd_platform/platform.py: Python standard
//! library + the openssl command, independent of stormbell's EBD code) as a child process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The platform's resource code in the tests.
pub const PLATFORM: &str = "010233100000000001";
/// Ours (a county platform of 331098, synthetic).
pub const COUNTY: &str = "010333109800000001";

/// A running platform; killed when dropped.
pub struct EbdPlatform {
    child: Child,
    /// `http://127.0.0.1:P/` where packages go.
    pub url: String,
    /// host:port of its control listener.
    pub control: String,
    /// Where it logs.
    pub log: tempfile::TempDir,
}

impl EbdPlatform {
    /// Start one serving the fixture county's terminals; `pubkey`: require SM2 signatures by
    /// this key and certificate serial number.
    pub fn start(pubkey: Option<(&Path, &str)>, play_ms: u32) -> EbdPlatform {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let log = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(root.join("tests/ebd_platform/platform.py"))
            .args(["--ebrid", PLATFORM, "--peer", COUNTY])
            .arg("--terminals")
            .arg(root.join("fixtures/county/terminals.csv"))
            .args(["--play-ms", &play_ms.to_string()])
            .arg("--log")
            .arg(log.path());
        if let Some((key, sn)) = pubkey {
            cmd.arg("--pubkey").arg(key).args(["--cert-sn", sn]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 must be installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 4, "unexpected platform banner {line:?}");
        EbdPlatform {
            child,
            url: format!("http://{}/", words[1]),
            control: words[3].to_string(),
            log,
        }
    }

    /// GET a control command; the JSON answer.
    pub fn control(&self, path: &str) -> serde_json::Value {
        let mut s = TcpStream::connect(&self.control).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {resp}"))
    }

    /// Every package it received, with its verdict.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.control("/status")["received"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for EbdPlatform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh SM2 key pair made by openssl (an implementation independent of ours): (private
/// PKCS#8 PEM, public PEM).
pub fn sm2_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "SM2", "-out"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey SM2");
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey -pubout");
    (key, public)
}
