//! One SMPP bind (a transceiver session) to an SMS centre.
//!
//! Three tasks share a TCP connection: the *writer* owns the write half and sends frames
//! handed to it; the *reader* owns the read half, matches responses to their requests by
//! sequence number, answers the SMSC's enquire_link and unbind, and hands deliver_sm
//! (receipts and replies from phones) up with an [`Ack`] that sends deliver_sm_resp only once
//! the caller has stored it — so a crash before that makes the SMSC deliver it again; the
//! *keeper* sends enquire_link when the link has been quiet and closes it when no answer comes.
//!
//! The window: at most `window` submit_sm wait for their response at once (a semaphore).
//!
//! **A late answer is an answer.** A submit whose response has not come within
//! `response_timeout` does not close the link (carriers' centres answer in seconds under load,
//! and one slow answer must not turn every other submit in flight into an unknown): the
//! keeper probes the link at once with enquire_link, and the submit carries on waiting, up to
//! `give_up`, for as long as the link answers. An answer that comes in that time is the
//! verdict, like any other (it is counted as late). Only a dead link (no enquire_link_resp
//! within `response_timeout`), a dropped connection or a protocol fault closes the session;
//! then every submit still waiting learns its outcome is unknown (`SubmitError::Unknown`), and
//! so does one that reaches `give_up` on a live link. The caller decides what an unknown
//! outcome means (the outbox counts it as a possible duplicate when it sends again). An answer
//! that comes after the submit gave up is still logged with its message id, and counted.
//! Reconnecting is the caller's job ([`super::Account`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::pdu::{self, Body, DeliverSm, Header, Pdu, SubmitSm, cmd, status};

/// Where and how to bind.
#[derive(Debug, Clone)]
pub struct BindSettings {
    /// host:port of the SMSC.
    pub address: String,
    /// system_id.
    pub system_id: String,
    /// password.
    pub password: String,
    /// system_type.
    pub system_type: String,
    /// Submits in flight at most.
    pub window: usize,
    /// How long a response may take.
    pub response_timeout: Duration,
    /// Send enquire_link after this long without traffic.
    pub enquire_every: Duration,
    /// How long a submit waits for its answer, past `response_timeout`, while the link
    /// proves alive (Kannel's `wait-ack` with "carry on waiting").
    pub give_up: Duration,
}

/// Why a bind failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// TCP connect failed.
    #[error("cannot connect to SMSC {address}: {source}")]
    Connect {
        /// Where.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The SMSC refused the bind.
    #[error("SMSC {address} refused the bind of {system_id}: {status}")]
    Refused {
        /// Where.
        address: String,
        /// As whom.
        system_id: String,
        /// Its status name.
        status: String,
    },
    /// No answer, or the link broke during the bind.
    #[error("SMSC {address} did not answer the bind: {why}")]
    NoAnswer {
        /// Where.
        address: String,
        /// What happened.
        why: String,
    },
}

/// Why a submit has no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The session was closed before the submit was written: the SMSC never saw it.
    #[error("session closed before sending")]
    NotSent,
    /// Written, but no response came (timeout or link lost): the SMSC may or may not have it.
    #[error("no response: {0}")]
    Unknown(String),
}

/// A submit_sm's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitResp {
    /// command_status.
    pub status: u32,
    /// The SMSC's message id (empty on error).
    pub message_id: String,
    /// It came after `response_timeout` (the link was kept).
    pub late: bool,
}

/// What a session has seen that a status page should show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Answers that came after `response_timeout`, in time to count.
    pub late: u64,
    /// Answers that came after the submit had given up (its text went again).
    pub too_late: u64,
}

/// A deliver_sm from the SMSC, to be acknowledged once stored.
#[derive(Debug)]
pub struct Incoming {
    /// The PDU.
    pub deliver: DeliverSm,
    /// Answers it.
    pub ack: Ack,
}

/// Sends deliver_sm_resp. Dropped without [`Ack::ok`], it answers ESME_RX_T_APPN (temporary
/// application error), which tells the SMSC to deliver again later.
#[derive(Debug)]
pub struct Ack {
    sequence: u32,
    out: mpsc::UnboundedSender<Vec<u8>>,
    done: bool,
}

/// ESME_RX_T_APPN.
const RX_T_APPN: u32 = 0x0000_0064;

impl Ack {
    /// Acknowledge: it is stored.
    pub fn ok(mut self) {
        self.done = true;
        let _ = self
            .out
            .send(pdu::deliver_sm_resp(status::OK, self.sequence));
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .out
                .send(pdu::deliver_sm_resp(RX_T_APPN, self.sequence));
        }
    }
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Pdu>>>>;

/// A live bind.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    window: Semaphore,
    sequence: AtomicU32,
    closed: AtomicBool,
    /// Flips to true once, when the session closes: every task watches it.
    closing: watch::Sender<bool>,
    why: Mutex<Option<String>>,
    settings: BindSettings,
    /// Submits that gave up waiting, by sequence: an answer for one of them is logged, not
    /// taken for a fault.
    abandoned: Mutex<HashMap<u32, tokio::time::Instant>>,
    /// Wakes the keeper to probe the link now (a submit is overdue).
    probe: tokio::sync::Notify,
    late: std::sync::atomic::AtomicU64,
    too_late: std::sync::atomic::AtomicU64,
    /// Told each time a counter moves (see [`Session::until_counters`]).
    counted: watch::Sender<()>,
}

impl Inner {
    fn next_sequence(&self) -> u32 {
        // 1..=0x7FFFFFFF, wrapping (SMPP 3.4 §5.1.4).
        let s = self.sequence.fetch_add(1, Ordering::Relaxed) % 0x7FFF_FFFF;
        s + 1
    }

    /// Mark closed and fail everything pending as unknown.
    fn close(&self, why: &str) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Ok(mut w) = self.why.lock() {
            *w = Some(why.to_string());
        }
        if let Ok(mut p) = self.pending.lock() {
            // Dropping the senders wakes every waiter with an error.
            p.clear();
        }
        self.window.close();
        self.closing.send_replace(true);
    }
}

impl Session {
    /// Connect and bind as a transceiver; `incoming` receives receipts and replies.
    pub async fn bind(
        settings: BindSettings,
        incoming: mpsc::Sender<Incoming>,
    ) -> Result<Session, BindError> {
        let address = settings.address.clone();
        let stream = tokio::time::timeout(
            settings.response_timeout,
            TcpStream::connect(&settings.address),
        )
        .await
        .map_err(|_| BindError::NoAnswer {
            address: address.clone(),
            why: "connect timed out".into(),
        })?
        .map_err(|source| BindError::Connect {
            address: address.clone(),
            source,
        })?;
        let _ = stream.set_nodelay(true);
        let (mut rd, wr) = stream.into_split();
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let inner = Arc::new(Inner {
            out: out_tx,
            pending: Arc::new(Mutex::new(HashMap::new())),
            window: Semaphore::new(settings.window.max(1)),
            sequence: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            closing: watch::channel(false).0,
            why: Mutex::new(None),
            settings: settings.clone(),
            abandoned: Mutex::new(HashMap::new()),
            probe: tokio::sync::Notify::new(),
            late: Default::default(),
            too_late: Default::default(),
            counted: watch::channel(()).0,
        });
        tokio::spawn(writer(wr, out_rx, inner.clone()));

        // The bind itself, before the reader task exists. Every way out that is not a bind
        // closes the session, so the writer task ends with it.
        let handshake = async {
            let seq = inner.next_sequence();
            let _ = inner.out.send(pdu::bind_transceiver(
                seq,
                &settings.system_id,
                &settings.password,
                &settings.system_type,
            ));
            let resp = tokio::time::timeout(settings.response_timeout, read_pdu(&mut rd))
                .await
                .map_err(|_| BindError::NoAnswer {
                    address: address.clone(),
                    why: "no bind_transceiver_resp in time".into(),
                })?
                .map_err(|e| BindError::NoAnswer {
                    address: address.clone(),
                    why: e,
                })?;
            if resp.header.command != cmd::BIND_TRANSCEIVER_RESP
                && resp.header.command != cmd::GENERIC_NACK
            {
                return Err(BindError::NoAnswer {
                    address: address.clone(),
                    why: format!("answered the bind with {}", resp.header),
                });
            }
            if resp.header.status != status::OK || resp.header.command == cmd::GENERIC_NACK {
                return Err(BindError::Refused {
                    address: address.clone(),
                    system_id: settings.system_id.clone(),
                    status: pdu::status_name(resp.header.status),
                });
            }
            Ok(())
        };
        if let Err(e) = handshake.await {
            inner.close("bind failed");
            return Err(e);
        }
        let (traffic_tx, traffic_rx) = mpsc::channel::<()>(1);
        tokio::spawn(reader(rd, inner.clone(), incoming, traffic_tx));
        tokio::spawn(keeper(inner.clone(), traffic_rx));
        Ok(Session { inner })
    }

    /// Submit one PDU and wait for its response. Waits for room in the window first.
    pub async fn submit(&self, m: &SubmitSm) -> Result<SubmitResp, SubmitError> {
        let _permit = self
            .inner
            .window
            .acquire()
            .await
            .map_err(|_| SubmitError::NotSent)?;
        let seq = self.inner.next_sequence();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.inner.pending.lock() {
            p.insert(seq, tx);
        }
        // Looked at after the waiter is in place, not before: `close` marks the session
        // closed and only then drops every waiter. Checked before, a close between the check
        // and the insert left this waiter behind the drop, with nobody to answer or drop it:
        // the submit waited out `give_up` (a minute) on a link already gone, and its text sat
        // in `submitting` meanwhile (seen in smsc_quirks' drop-every-37 test under load).
        if self.is_closed() {
            if let Ok(mut p) = self.inner.pending.lock() {
                p.remove(&seq);
            }
            return Err(SubmitError::NotSent);
        }
        if self.inner.out.send(pdu::submit_sm(seq, m)).is_err() {
            if let Ok(mut p) = self.inner.pending.lock() {
                p.remove(&seq);
            }
            return Err(SubmitError::NotSent);
        }
        let answer = |p: Pdu, late: bool| SubmitResp {
            status: p.header.status,
            message_id: match p.body {
                Body::SubmitResp(id) => id,
                _ => String::new(),
            },
            late,
        };
        let mut rx = rx;
        match tokio::time::timeout(self.inner.settings.response_timeout, &mut rx).await {
            Ok(Ok(p)) => return Ok(answer(p, false)),
            Ok(Err(_)) => return Err(SubmitError::Unknown(self.why())),
            Err(_) => {}
        }
        // Overdue: is the link alive? The keeper asks now; a dead link closes the session,
        // which wakes this wait with an error. A live one keeps it waiting.
        self.inner.probe.notify_one();
        let rest = self
            .inner
            .settings
            .give_up
            .saturating_sub(self.inner.settings.response_timeout);
        match tokio::time::timeout(rest, &mut rx).await {
            Ok(Ok(p)) => {
                self.inner.late.fetch_add(1, Ordering::Relaxed);
                self.inner.counted.send_replace(());
                tracing::info!(
                    smsc = %self.inner.settings.address,
                    "a submit_sm_resp came after {:?}: taken as the answer, the link kept",
                    self.inner.settings.response_timeout
                );
                Ok(answer(p, true))
            }
            Ok(Err(_)) => Err(SubmitError::Unknown(self.why())),
            Err(_) => {
                let gone = self
                    .inner
                    .pending
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&seq))
                    .is_some();
                if gone && let Ok(mut a) = self.inner.abandoned.lock() {
                    let now = tokio::time::Instant::now();
                    // Remembered for a while, not for ever.
                    a.retain(|_, t| now.duration_since(*t) < Duration::from_secs(3600));
                    a.insert(seq, now);
                }
                Err(SubmitError::Unknown(format!(
                    "no submit_sm_resp within {:?} on a live link",
                    self.inner.settings.give_up
                )))
            }
        }
    }

    /// Late and too-late answers seen on this bind.
    pub fn counters(&self) -> Counters {
        Counters {
            late: self.inner.late.load(Ordering::Relaxed),
            too_late: self.inner.too_late.load(Ordering::Relaxed),
        }
    }

    /// Wait until the counters satisfy `ok` (a status page's or a test's question), without
    /// polling: every change of a counter wakes the waiter to look again.
    pub async fn until_counters(&self, ok: impl Fn(&Counters) -> bool) {
        let mut changed = self.inner.counted.subscribe();
        while !ok(&self.counters()) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether the session is gone.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Why it closed.
    pub fn why(&self) -> String {
        self.inner
            .why
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .unwrap_or_else(|| "link lost".into())
    }

    /// Wait until the session closes.
    pub async fn closed(&self) {
        let mut stop = self.inner.closing.subscribe();
        let _ = stop.wait_for(|c| *c).await;
    }

    /// Submits waiting for their response now.
    pub fn in_flight(&self) -> usize {
        self.inner.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Close at once, without an unbind (the channel that owned it is gone): every submit
    /// still waiting learns its outcome is unknown, and the connection is shut.
    pub fn abort(&self, why: &str) {
        self.inner.close(why);
    }

    /// Unbind politely (waits briefly for unbind_resp), then close.
    pub async fn unbind(&self) {
        if self.is_closed() {
            return;
        }
        let seq = self.inner.next_sequence();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.inner.pending.lock() {
            p.insert(seq, tx);
        }
        let _ = self.inner.out.send(pdu::simple(cmd::UNBIND, 0, seq));
        let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        self.inner.close("unbound");
    }
}

/// Read one PDU (header, then body).
async fn read_pdu(rd: &mut tokio::net::tcp::OwnedReadHalf) -> Result<Pdu, String> {
    let mut h = [0u8; 16];
    rd.read_exact(&mut h).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the SMSC closed the connection".to_string(),
        _ => format!("read failed: {e}"),
    })?;
    let header = Header::parse(&h).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; header.length as usize - 16];
    rd.read_exact(&mut body)
        .await
        .map_err(|e| format!("read failed inside {header}: {e}"))?;
    pdu::decode(header, &body).map_err(|e| e.to_string())
}

async fn writer(
    wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    inner: Arc<Inner>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    let mut stop = inner.closing.subscribe();
    loop {
        let frame = tokio::select! {
            // What is queued goes first: an answer queued just before the close (the
            // unbind_resp to the centre's unbind) must not lose the race to the stop.
            biased;
            f = rx.recv() => f,
            _ = stop.wait_for(|c| *c) => None,
        };
        let Some(frame) = frame else {
            // Closing: whatever was queued before the close still goes out (answers the
            // centre is owed), then the link is shut.
            while let Ok(last) = rx.try_recv() {
                if w.write_all(&last).await.is_err() {
                    break;
                }
            }
            let _ = w.flush().await;
            break;
        };
        if w.write_all(&frame).await.is_err() {
            inner.close("write failed");
            break;
        }
        // Gather what is already queued into the same write, then flush.
        while let Ok(more) = rx.try_recv() {
            if w.write_all(&more).await.is_err() {
                inner.close("write failed");
                return;
            }
        }
        if w.flush().await.is_err() {
            inner.close("write failed");
            break;
        }
        if inner.closed.load(Ordering::SeqCst) {
            break;
        }
    }
    let _ = w.shutdown().await;
}

async fn reader(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    inner: Arc<Inner>,
    incoming: mpsc::Sender<Incoming>,
    traffic: mpsc::Sender<()>,
) {
    let mut stop = inner.closing.subscribe();
    loop {
        let p = tokio::select! {
            p = read_pdu(&mut rd) => p,
            _ = stop.wait_for(|c| *c) => return,
        };
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(smsc = %inner.settings.address, "SMPP link: {e}");
                inner.close(&e);
                return;
            }
        };
        let _ = traffic.try_send(());
        let h = p.header;
        match h.command {
            c if c & 0x8000_0000 != 0 => {
                let waiter = inner
                    .pending
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&h.sequence));
                match waiter {
                    Some(w) => {
                        let _ = w.send(p);
                    }
                    None if inner
                        .abandoned
                        .lock()
                        .ok()
                        .and_then(|mut a| a.remove(&h.sequence))
                        .is_some() =>
                    {
                        inner.too_late.fetch_add(1, Ordering::Relaxed);
                        inner.counted.send_replace(());
                        let id = match &p.body {
                            Body::SubmitResp(id) => id.as_str(),
                            _ => "",
                        };
                        tracing::warn!(
                            smsc = %inner.settings.address,
                            "an answer came after its submit gave up ({h}, message id {id:?}): \
                             the text was sent again and counted as a possible duplicate"
                        );
                    }
                    None if c == cmd::GENERIC_NACK => {
                        tracing::warn!(smsc = %inner.settings.address, "generic_nack: {h}");
                    }
                    None => {
                        tracing::warn!(smsc = %inner.settings.address, "a response nobody waits for: {h}");
                    }
                }
            }
            cmd::ENQUIRE_LINK => {
                let _ = inner
                    .out
                    .send(pdu::simple(cmd::ENQUIRE_LINK_RESP, 0, h.sequence));
            }
            cmd::UNBIND => {
                let _ = inner.out.send(pdu::simple(cmd::UNBIND_RESP, 0, h.sequence));
                inner.close("the SMSC unbound");
                return;
            }
            cmd::DELIVER_SM => {
                if let Body::Deliver(deliver) = p.body {
                    let ack = Ack {
                        sequence: h.sequence,
                        out: inner.out.clone(),
                        done: false,
                    };
                    // Never wait here: a reader stuck behind a slow store would stop reading
                    // submit_sm_resp too, and time every submit out. When the hand-off is
                    // full (or nobody listens), the Ack dropped with the message answers
                    // ESME_RX_T_APPN, and the SMSC delivers it again later.
                    let _ = incoming.try_send(Incoming { deliver, ack });
                }
            }
            _ => {
                let _ = inner.out.send(pdu::simple(
                    cmd::GENERIC_NACK,
                    status::RINVCMDID,
                    h.sequence,
                ));
            }
        }
    }
}

async fn keeper(inner: Arc<Inner>, mut traffic: mpsc::Receiver<()>) {
    let every = inner.settings.enquire_every;
    let mut stop = inner.closing.subscribe();
    loop {
        tokio::select! {
            _ = stop.wait_for(|c| *c) => return,
            t = traffic.recv() => {
                if t.is_none() {
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep(every) => {}
            // A submit is overdue: ask the link now whether it is alive.
            _ = inner.probe.notified() => {}
        }
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let seq = inner.next_sequence();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = inner.pending.lock() {
            p.insert(seq, tx);
        }
        let _ = inner.out.send(pdu::simple(cmd::ENQUIRE_LINK, 0, seq));
        match tokio::time::timeout(inner.settings.response_timeout, rx).await {
            Ok(Ok(_)) => {}
            _ => {
                inner.close("no answer to enquire_link");
                return;
            }
        }
    }
}
