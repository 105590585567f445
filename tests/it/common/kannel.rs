//! A real Kannel (Debian `kannel`: bearerbox + smsbox) bound over SMPP to the node-smpp test
//! SMSC, for the HTTP gateway channel.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::smsc::Smsc;

/// A free port on 127.0.0.1 (for a listener the code under test binds itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Kannel {
    bearerbox: Child,
    smsbox: Child,
    /// smsbox's sendsms port.
    pub sendsms: u16,
}

impl Kannel {
    /// The gateway channel's settings for this Kannel, taking delivery reports on `dlr_port`.
    pub fn settings(&self, dlr_port: u16) -> stormbell::dispatch::kannel::KannelSettings {
        stormbell::dispatch::kannel::KannelSettings {
            sendsms_url: format!("http://127.0.0.1:{}/cgi-bin/sendsms", self.sendsms),
            username: "stormbell".into(),
            password: "pw".into(),
            source: "12379".into(),
            dlr_listen: format!("127.0.0.1:{dlr_port}"),
            dlr_base: format!("http://127.0.0.1:{dlr_port}"),
            dlr_remote: false,
            concurrency: 4,
            smsc: String::new(),
        }
    }
}

impl Drop for Kannel {
    fn drop(&mut self) {
        let _ = self.smsbox.kill();
        let _ = self.bearerbox.kill();
        let _ = self.smsbox.wait();
        let _ = self.bearerbox.wait();
    }
}

pub fn start_kannel(smsc: &Smsc, dir: &std::path::Path) -> Kannel {
    let (admin, boxes, sendsms) = (free_port(), free_port(), free_port());
    let (host, port) = smsc.smpp.split_once(':').unwrap();
    let conf = dir.join("kannel.conf");
    std::fs::write(
        &conf,
        format!(
            r#"group = core
admin-port = {admin}
admin-password = admin
status-password = status
admin-allow-ip = "127.0.0.1"
smsbox-port = {boxes}
box-allow-ip = "127.0.0.1"
log-file = "{dir}/bearerbox.log"
log-level = 1
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = node
host = {host}
port = {port}
transceiver-mode = true
smsc-username = county
smsc-password = secret
system-type = ""
source-addr-ton = 5
source-addr-npi = 0
dest-addr-ton = 1
dest-addr-npi = 1
enquire-link-interval = 30
reconnect-delay = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {boxes}
sendsms-port = {sendsms}
log-file = "{dir}/smsbox.log"
log-level = 1

group = sendsms-user
username = stormbell
password = pw
concatenation = true
max-messages = 10
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    let spawn = |bin: &str| {
        Command::new(bin)
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (Debian kannel is installed by ./scripts/test)"))
    };
    let bearerbox = spawn("/usr/sbin/bearerbox");
    // bearerbox first; smsbox once it listens for boxes.
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", boxes)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "bearerbox did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let smsbox = spawn("/usr/sbin/smsbox");
    let k = Kannel {
        bearerbox,
        smsbox,
        sendsms,
    };
    smsc.wait_for(15, "Kannel's bind", |s| {
        s["binds"].as_u64().unwrap_or(0) >= 1
    });
    while std::net::TcpStream::connect(("127.0.0.1", sendsms)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "smsbox did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    k
}
