//! Real SIP peers on 127.0.0.1: Debian's `kamailio` as the county's SIP proxy and registrar
//! (the trunk stormbell calls through, asking for digest credentials on every INVITE), and
//! `baresip` instances as the phones of the responsible persons (each its own process, its own
//! config folder, registered to the proxy under a mobile number).
//!
//! A phone is driven over baresip's `ctrl_tcp` (netstring JSON): its events (incoming,
//! established, closed) are recorded with the time they came, and a phone that is to press a
//! key sends it (`sndcode`) a moment after the call is established, as a person listening
//! would. What it hears is written to WAV by baresip's `sndfile` module.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1, free for UDP too.
fn free_port() -> u16 {
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() && p < 60000 {
            return p;
        }
    }
}

/// The password kamailio asks of the trunk user `office`.
pub const TRUNK_PASSWORD: &str = "fxb-trunk-2026";

/// A number the proxy declines for the person (603, as a PBX's do-not-disturb answers).
pub const DECLINING: &str = "13900000603";

/// A running kamailio; killed when dropped.
pub struct Kamailio {
    child: Child,
    /// Its SIP port (UDP and TCP).
    pub port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Kamailio {
    /// A proxy and registrar on a free port: phones register freely; the trunk user `office`
    /// registers, and sends every INVITE, with digest credentials ([`TRUNK_PASSWORD`]).
    pub fn start() -> Kamailio {
        assert!(
            std::path::Path::new("/usr/sbin/kamailio").is_file(),
            "kamailio is not installed: run ./scripts/test (Debian kamailio)"
        );
        // A port free when picked may be taken before kamailio binds it (tests run side by
        // side): then it is started again on another.
        let mut last = String::new();
        for _ in 0..3 {
            match Kamailio::start_on(free_port()) {
                Ok(k) => return k,
                Err(e) => last = e,
            }
        }
        panic!("kamailio did not start: {last}");
    }

    fn start_on(port: u16) -> Result<Kamailio, String> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
alias="127.0.0.1:{port}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "kex.so"
modparam("usrloc", "db_mode", 0)
modparam("tm", "fr_inv_timer", 120000)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("REGISTER")) {{
        if ($fU == "office") {{
            if (!pv_www_authenticate("$fd", "{TRUNK_PASSWORD}", "0")) {{
                www_challenge("$fd", "0");
                exit;
            }}
            consume_credentials();
        }}
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("INVITE")) {{
        if (!pv_proxy_authenticate("$fd", "{TRUNK_PASSWORD}", "0")) {{
            proxy_challenge("$fd", "0");
            exit;
        }}
        if ($au != "office") {{ sl_send_reply("403", "Forbidden"); exit; }}
        consume_credentials();
        if ($rU == "{DECLINING}") {{ sl_send_reply("603", "Decline"); exit; }}
        record_route();
    }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"#
        );
        let conf = dir.path().join("kamailio.cfg");
        std::fs::write(&conf, cfg).unwrap();
        let log = dir.path().join("kamailio.log");
        // In a process group of its own: kamailio forks its workers, and killing the main
        // process alone left them running after the test.
        let child = Command::new("/usr/sbin/kamailio")
            .process_group(0)
            .arg("-f")
            .arg(&conf)
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .args(["-l", &format!("udp:127.0.0.1:{port}")])
            .args(["-l", &format!("tcp:127.0.0.1:{port}")])
            .args(["-Y", &dir.path().display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio starts");
        let k = Kamailio {
            child,
            port,
            _dir: dir,
            log,
        };
        // Alive when it answers an OPTIONS (with anything, as kamailio: another program that
        // took the port would answer otherwise, or not at all).
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let me = s.local_addr().unwrap();
        let options = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe\r\n\
             From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: probe\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let mut buf = [0u8; 2048];
        loop {
            s.send_to(options.as_bytes(), ("127.0.0.1", port)).unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                let answer = String::from_utf8_lossy(&buf[..n]);
                if answer.contains("Server: kamailio") {
                    return Ok(k);
                }
                return Err(format!("something else answers on {port}: {answer}"));
            }
            if Instant::now() >= deadline {
                return Err(format!("no answer on {port}: {}", k.log()));
            }
        }
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SAFETY: signals the process group this value started (its id is the leader's).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// What a phone does when rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers at once; presses `key` (if any) once it has heard `after` of the call's audio
    /// (baresip 1.0 sends keys as RFC 4733 events only).
    Answer { key: Option<char>, after: Duration },
    /// Answers, listens to `after` of the audio, and hangs up without a key.
    HangUp { after: Duration },
    /// The person presses "hang up" while it rings (baresip answers an incoming call it hangs
    /// up with 486 Busy Here).
    Busy,
    /// Rings and is never picked up.
    Ring,
}

/// A baresip phone registered to the proxy; killed when dropped.
pub struct Phone {
    child: Child,
    /// The number it is registered as.
    pub number: String,
    dir: tempfile::TempDir,
    /// (event type, when) as the phone reported them, and a signal for each new one.
    log: Arc<Events>,
    ctrl: Arc<Mutex<TcpStream>>,
    _driver: std::thread::JoinHandle<()>,
}

impl Phone {
    /// A phone for `number` registered at `k`, behaving as `b`.
    pub fn start(k: &Kamailio, number: &str, b: Behaviour) -> Phone {
        assert!(
            std::path::Path::new("/usr/bin/baresip").is_file(),
            "baresip is not installed: run ./scripts/test (Debian baresip-core)"
        );
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("rec");
        std::fs::create_dir(&rec).unwrap();
        // What the phone says back (its microphone): quiet, as a listener's room; longer than
        // any call (baresip ends a call when its source file ends).
        let quiet = dir.path().join("quiet.wav");
        let mut w = hound::WavWriter::create(
            &quiet,
            hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
        )
        .unwrap();
        for _ in 0..8000 * 90 {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
        // Ports are free when picked, but another test may take one before baresip binds it
        // (and baresip also listens on the SIP port + 1): a phone that does not come up, or
        // does not register, is started again on new ports.
        let mut why = String::new();
        let mut up = None;
        for _ in 0..4 {
            match launch(&Launch {
                dir: dir.path(),
                kamailio: k.port,
                number,
                behaviour: b,
                rec: &rec,
                quiet: &quiet,
            }) {
                Ok(x) => {
                    up = Some(x);
                    break;
                }
                Err(e) => why = e,
            }
        }
        let Some((child, ctl2, mut reader)) = up else {
            panic!("baresip {number} did not come up: {why}");
        };
        // One writer for every command (the reader thread's and the test's).
        let ctl = Arc::new(Mutex::new(ctl2));
        let log: Arc<Events> = Arc::default();
        let (seen, to_phone, heard_in) = (log.clone(), ctl.clone(), rec.clone());
        let driver = std::thread::spawn(move || {
            // The recordings of the calls already over (a call's own is the new one; baresip
            // opens it before it reports the call).
            let mut before = recordings(&heard_in);
            while let Some(msg) = read_netstring(&mut reader) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&msg) else {
                    continue;
                };
                let Some(kind) = v["type"].as_str() else {
                    continue;
                };
                seen.0
                    .lock()
                    .unwrap()
                    .push((kind.to_string(), Instant::now()));
                seen.1.notify_all();
                if kind == "CALL_CLOSED" {
                    before = recordings(&heard_in);
                }
                if kind == "CALL_INCOMING" && b == Behaviour::Busy {
                    command(&mut to_phone.lock().unwrap(), "hangup", "");
                    continue;
                }
                let (what, after) = match (kind, b) {
                    (
                        "CALL_ESTABLISHED",
                        Behaviour::Answer {
                            key: Some(k),
                            after,
                        },
                    ) => (("sndcode", k.to_string()), after),
                    ("CALL_ESTABLISHED", Behaviour::HangUp { after }) => {
                        (("hangup", String::new()), after)
                    }
                    _ => continue,
                };
                // The person listens until the phone has recorded `after` of this call's
                // audio, then acts; meanwhile this thread goes on reading (the call may end
                // first: then the key never comes).
                let (to_phone, rec, before) = (to_phone.clone(), heard_in.clone(), before.clone());
                std::thread::spawn(move || {
                    let need = 44 + after.as_millis() as u64 * 16;
                    let mut mine: Option<PathBuf> = None;
                    let heard = common_changed_until(30, &rec, || {
                        if mine.is_none() {
                            mine = recordings(&rec).into_iter().find(|p| !before.contains(p));
                        }
                        mine.as_ref()
                            .is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= need))
                    });
                    if heard {
                        command(&mut to_phone.lock().unwrap(), what.0, &what.1);
                    }
                });
            }
        });
        Phone {
            child,
            number: number.into(),
            dir,
            log,
            ctrl: ctl,
            _driver: driver,
        }
    }

    /// The person hangs up whatever call the phone has (a line gone silent).
    pub fn hang_up(&self) {
        // On the driver's own connection: baresip's ctrl_tcp serves one at a time.
        command(&mut self.ctrl.lock().unwrap(), "hangup", "");
    }

    /// (event type, when) as the phone reported them so far.
    pub fn events(&self) -> Vec<(String, Instant)> {
        self.log_handle().events()
    }

    /// How many events of `kind` the phone reported.
    pub fn count(&self, kind: &str) -> usize {
        self.log_handle().count(kind)
    }

    /// Wait (up to `secs`) until the phone has reported `kind` `n` times.
    pub fn wait_for_n(&self, kind: &str, n: usize, secs: u64) {
        self.log_handle().wait_for_n(kind, n, secs)
    }

    /// Whether the phone reported an event of `kind`.
    pub fn saw(&self, kind: &str) -> bool {
        self.count(kind) > 0
    }

    /// Wait (up to `secs`) until the phone reports `kind`.
    pub fn wait_for(&self, kind: &str, secs: u64) {
        self.wait_for_n(kind, 1, secs)
    }

    /// The phone's events, to wait on from another thread.
    pub fn log_handle(&self) -> PhoneLog {
        PhoneLog {
            number: self.number.clone(),
            log: self.log.clone(),
        }
    }

    /// What the phone heard (the decoded audio it recorded), as 8 kHz samples, once its file
    /// is complete.
    pub fn heard(&self) -> Vec<i16> {
        let rec = self.dir.path().join("rec");
        let file = std::fs::read_dir(&rec)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| {
                panic!(
                    "phone {} recorded nothing in {}",
                    self.number,
                    rec.display()
                )
            });
        let mut r = hound::WavReader::open(&file).unwrap();
        assert_eq!(r.spec().sample_rate, 8000, "{}", file.display());
        r.samples::<i16>().map_while(Result::ok).collect()
    }
}

/// (event type, when) as a phone reported them, and a signal for each new one.
type Events = (Mutex<Vec<(String, Instant)>>, Condvar);

/// A phone's events, shared with the thread that reads them from baresip.
#[derive(Clone)]
pub struct PhoneLog {
    number: String,
    log: Arc<Events>,
}

impl PhoneLog {
    /// (event type, when) so far.
    pub fn events(&self) -> Vec<(String, Instant)> {
        self.log.0.lock().unwrap().clone()
    }

    /// How many events of `kind`.
    pub fn count(&self, kind: &str) -> usize {
        self.log
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == kind)
            .count()
    }

    /// Wait (up to `secs`) until the phone has reported `kind` `n` times: woken by each
    /// event as it arrives.
    pub fn wait_for_n(&self, kind: &str, n: usize, secs: u64) {
        let (events, arrived) = &*self.log;
        let (events, timeout) = arrived
            .wait_timeout_while(events.lock().unwrap(), Duration::from_secs(secs), |e| {
                e.iter().filter(|(k, _)| k == kind).count() < n
            })
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "phone {} reported {kind} fewer than {n} time(s); it reported {:?}",
            self.number,
            events.iter().map(|e| &e.0).collect::<Vec<_>>()
        );
    }

    /// Wait (up to `secs`) until the phone reports `kind`.
    pub fn wait_for(&self, kind: &str, secs: u64) {
        self.wait_for_n(kind, 1, secs)
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The phone's recordings of what it heard, one per call.
fn recordings(rec: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(rec)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
                .collect()
        })
        .unwrap_or_default()
}

use super::changed_until as common_changed_until;

/// What one start of a phone needs.
struct Launch<'a> {
    dir: &'a std::path::Path,
    kamailio: u16,
    number: &'a str,
    behaviour: Behaviour,
    rec: &'a std::path::Path,
    quiet: &'a std::path::Path,
}

/// Start baresip on new ports and wait until its control port answers and it is registered;
/// what went wrong otherwise (the process killed).
fn launch(l: &Launch<'_>) -> Result<(Child, TcpStream, BufReader<TcpStream>), String> {
    // The SIP port with the one above it free too (baresip's TLS listener takes it).
    let sip = loop {
        let p = free_port();
        if p < 60000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let ctrl = loop {
        let p = free_port();
        if p != sip + 1 {
            break p;
        }
    };
    let rtp = free_port() & !1;
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{sip}\nsip_trans_def udp\n\
         audio_player aufile,/dev/null\naudio_source aufile,{quiet}\naudio_alert aufile,/dev/null\n\
         module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule sndfile.so\n\
         module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n\
         ctrl_tcp_listen 127.0.0.1:{ctrl}\nsnd_path {rec}\nrtp_ports {rtp}-{}\n\
         call_max_calls 4\n",
        rtp + 20,
        quiet = l.quiet.display(),
        rec = l.rec.display(),
    );
    std::fs::write(l.dir.join("config"), config).unwrap();
    let answer = match l.behaviour {
        Behaviour::Answer { .. } | Behaviour::HangUp { .. } => "auto",
        _ => "manual",
    };
    std::fs::write(
        l.dir.join("accounts"),
        format!(
            "<sip:{}@127.0.0.1:{};transport=udp>;regint=300;answermode={answer};audio_codecs=PCMA,PCMU\n",
            l.number, l.kamailio
        ),
    )
    .unwrap();
    let mut child = Command::new("/usr/bin/baresip")
        .arg("-f")
        .arg(l.dir)
        .args(["-t", "300"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(l.dir.join("out.log")).unwrap())
        .stderr(std::fs::File::create(l.dir.join("err.log")).unwrap())
        .spawn()
        .expect("baresip starts");
    let fail = |child: &mut Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(l.dir.join("out.log")).unwrap_or_default();
        Err(format!("{why}; its log: {log}"))
    };
    // Its control port, once it listens: looked at again each time baresip writes its log
    // (it loads its modules, ctrl_tcp among them, and says so), or once it has exited.
    let mut ctl = None;
    super::changed_until(10, l.dir, || {
        ctl = TcpStream::connect(("127.0.0.1", ctrl)).ok();
        ctl.is_some() || child.try_wait().ok().flatten().is_some()
    });
    let Some(ctl) = ctl else {
        return fail(&mut child, format!("ctrl_tcp did not listen on {ctrl}"));
    };
    let _ = ctl.set_read_timeout(Some(Duration::from_secs(5)));
    let mut ctl2 = ctl.try_clone().unwrap();
    // Registered: `reginfo` says OK, or (not yet when asked) the REGISTER_OK event comes.
    let mut reader = BufReader::new(ctl);
    command(&mut ctl2, "reginfo", "");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = read_netstring(&mut reader).unwrap_or_default();
        let answered = r.contains("\"response\":true") && r.contains("OK");
        if answered || r.contains("\"type\":\"REGISTER_OK\"") {
            break;
        }
        if r.contains("\"type\":\"REGISTER_FAIL\"") || Instant::now() >= deadline {
            return fail(&mut child, format!("not registered: {r}"));
        }
    }
    let _ = reader.get_ref().set_read_timeout(None);
    Ok((child, ctl2, reader))
}

fn command(s: &mut TcpStream, cmd: &str, params: &str) {
    let body = serde_json::json!({ "command": cmd, "params": params, "token": cmd }).to_string();
    let _ = s.write_all(format!("{}:{body},", body.len()).as_bytes());
}

fn read_netstring(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut len = Vec::new();
    r.read_until(b':', &mut len).ok()?;
    let n: usize = std::str::from_utf8(len.strip_suffix(b":")?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let mut body = vec![0u8; n + 1];
    r.read_exact(&mut body).ok()?;
    body.pop();
    String::from_utf8(body).ok()
}
