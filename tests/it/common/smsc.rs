//! The test SMS centre (tests/smsc/smsc.js, node-smpp) as a child process on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running SMSC; killed when dropped.
pub struct Smsc {
    child: Child,
    /// host:port of its SMPP listener.
    pub smpp: String,
    /// host:port of its control HTTP listener.
    pub control: String,
    /// Where it logs.
    pub log: tempfile::TempDir,
}

impl Smsc {
    /// Start one (with receipts after `receipt_ms`).
    pub fn start(receipt_ms: u32) -> Smsc {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let script = root.join("tests/smsc/smsc.js");
        assert!(
            root.join("tests/smsc/node_modules/smpp").is_dir(),
            "node-smpp is not installed: run ./scripts/test (npm ci --prefix tests/smsc)"
        );
        let log = tempfile::tempdir().unwrap();
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--log", log.path().to_str().unwrap()])
            .args(["--receipt-ms", &receipt_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node must be installed (Debian nodejs)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "smpp 127.0.0.1:P control 127.0.0.1:Q"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 4, "unexpected SMSC banner {line:?}");
        Smsc {
            child,
            smpp: words[1].to_string(),
            control: words[3].to_string(),
            log,
        }
    }

    /// The account the county uses on it (`county:secret`, one bind, window 10, 500/s), as the
    /// dispatch tests configure it.
    pub fn account(&self) -> stormbell::dispatch::sms::AccountSettings {
        stormbell::dispatch::sms::AccountSettings {
            name: "main".into(),
            address: self.smpp.clone(),
            system_id: "county".into(),
            password: "secret".into(),
            system_type: String::new(),
            source: "12379".into(),
            binds: 1,
            window: 10,
            tps: 500,
            prefixes: vec![],
            backup: false,
            response_timeout_secs: 5,
            enquire_secs: 30,
            ..Default::default()
        }
    }

    /// The same account as daemon configuration (`[[dispatch.sms.accounts]]`), with `extra`
    /// lines (binds, window, tps) after the connection's.
    pub fn account_toml(&self, extra: &str) -> String {
        format!(
            "[[dispatch.sms.accounts]]\nname = \"main\"\naddress = \"{}\"\nsystem_id = \"county\"\n\
             password = \"secret\"\nsource = \"12379\"\n{extra}\n",
            self.smpp
        )
    }

    /// A reply typed on the phone `mobile` (as the network gives it: 86…), delivered to us.
    pub fn reply_from(&self, mobile: &str, text: &str) {
        let n = stormbell::dispatch::outbox::normalise_mobile(mobile).unwrap();
        let text: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
        self.control(&format!("/mo?from=86{n}&text={text}"));
    }

    /// GET a control command; the JSON answer.
    pub fn control(&self, path: &str) -> serde_json::Value {
        control_at(&self.control, path)
    }

    /// Its counters.
    pub fn status(&self) -> serde_json::Value {
        self.control("/status")
    }

    fn lines(&self, file: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.log.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every submit_sm it saw, with its answer.
    pub fn submits(&self) -> Vec<serde_json::Value> {
        self.lines("submits.jsonl")
    }

    /// Every complete message as a handset shows it.
    pub fn phones(&self) -> Vec<serde_json::Value> {
        self.lines("phones.jsonl")
    }

    /// Wait until `f(status)` holds, up to `secs`; panics with the status otherwise.
    pub fn wait_for(&self, secs: u64, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
        wait_at(&self.control, secs, what, f)
    }
}

/// GET a control command of the SMSC whose control port is `control` (from a thread that
/// does not hold the [`Smsc`]); the JSON answer.
pub fn control_at(control: &str, path: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {resp}"))
}

/// [`Smsc::wait_for`] by control address.
pub fn wait_at(control: &str, secs: u64, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
    let start = Instant::now();
    loop {
        let s = control_at(control, "/status");
        if f(&s) {
            return;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("timed out waiting for {what}: {s}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
