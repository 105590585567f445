//! One call, from INVITE to BYE, as a SIP user agent client (RFC 3261) does it.
//!
//! ```text
//! INVITE ──100/18x──▶ ringing ──200──▶ ACK, play the prompt (twice), listen for keys ──▶ BYE
//!   │ └─401/407──▶ ACK, INVITE again with digest credentials (once per nonce)
//!   │                  ringing past `ring_secs` ──▶ CANCEL ──487──▶ ACK: no answer
//!   ├─486/600: busy   603: rejected   408/480/487: no answer
//!   ├─404/410/484/604, 5xx, no response within `answer_secs`: unreachable
//!   └─anything else (403, 488, an answer with no G.711): failed, with the reason
//! ```
//!
//! Each call has its own SIP socket (UDP, or a TCP connection to the proxy) and its own RTP
//! port, so answers never have to be sorted between calls. Audio goes out as 20 ms G.711
//! packets on a 20 ms clock; keys come back as RFC 4733 events on the RTP port or as SIP
//! INFO. The first key ends the call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::digest::Challenge;
use super::rtp::{self, FRAME};
use super::sdp;
use super::settings::{Transport, TrunkSettings};
use super::sip::{self, Message, ParseError};

/// What the phone hears once it answers: 8 kHz samples (the alert tone, the warning, the
/// prompt to press a key), played `rounds` times with a second of quiet between.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// 8 kHz mono samples.
    pub samples: Arc<Vec<i16>>,
    /// How many times it is played.
    pub rounds: u32,
    /// How long a key is still waited for after the last round.
    pub linger: Duration,
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered, and a key was pressed.
    Acknowledged {
        /// The key (`1`, `2`, `3`, …).
        key: char,
        /// From the answer to the key.
        after: Duration,
        /// How the key came: `rfc4733` or `info`.
        via: &'static str,
    },
    /// Answered; no key before the prompt ended (or the phone hung up).
    AnsweredNoKey {
        /// Audio played before the end.
        heard: Duration,
        /// Whether the phone hung up (else we did).
        hung_up: bool,
    },
    /// 486 Busy Here, 600 Busy Everywhere.
    Busy {
        /// The status code.
        code: u16,
    },
    /// Rang out: cancelled after `ring_secs`, or 408/480/487.
    NoAnswer {
        /// The status code, if the network gave one.
        code: Option<u16>,
        /// Whether it rang (a 180/183 came).
        rang: bool,
    },
    /// 603 Decline: the person pressed "reject".
    Rejected {
        /// The status code.
        code: u16,
    },
    /// The number or the trunk could not be reached (404, 410, 484, 604, 5xx, no response).
    Unreachable {
        /// The status code, if any.
        code: Option<u16>,
        /// What was seen.
        reason: String,
    },
    /// Anything else, with the reason (a refused login, no common codec, a broken answer).
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl Outcome {
    /// The outcome's name as stored and counted (`acknowledged`, `busy`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Acknowledged { .. } => "acknowledged",
            Outcome::AnsweredNoKey { .. } => "answered_no_key",
            Outcome::Busy { .. } => "busy",
            Outcome::NoAnswer { .. } => "no_answer",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Unreachable { .. } => "unreachable",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// The outcome a final response (300–699) to an INVITE means.
pub fn classify(code: u16, reason: &str) -> Outcome {
    match code {
        486 | 600 => Outcome::Busy { code },
        603 => Outcome::Rejected { code },
        408 | 480 | 487 => Outcome::NoAnswer {
            code: Some(code),
            rang: false,
        },
        404 | 410 | 484 | 604 | 500..=599 => Outcome::Unreachable {
            code: Some(code),
            reason: format!("{code} {reason}"),
        },
        _ => Outcome::Failed {
            reason: format!("the trunk answered {code} {reason}"),
        },
    }
}

/// RFC 3261's T1 and T2: retransmission intervals over UDP.
pub(super) const T1: Duration = Duration::from_millis(500);
pub(super) const T2: Duration = Duration::from_secs(4);
/// How long a BYE or CANCEL's answer is waited for before the call is left.
const GOODBYE_WAIT: Duration = Duration::from_secs(4);

/// Where SIP goes: a socket per call (and one for a trunk's registration).
pub(super) enum Link {
    Udp {
        sock: UdpSocket,
        proxy: SocketAddr,
        /// Where the last request to us came from (its answer goes back there).
        asker: Option<SocketAddr>,
        /// One datagram, kept: a receive is started at every 20 ms turn of a call.
        buf: Vec<u8>,
    },
    Tcp {
        stream: TcpStream,
        buf: Vec<u8>,
    },
}

impl Link {
    pub(super) async fn open(s: &TrunkSettings) -> anyhow::Result<Link> {
        let proxy = tokio::net::lookup_host(&s.proxy)
            .await
            .map_err(|e| {
                anyhow::anyhow!("the trunk's proxy {:?} cannot be resolved: {e}", s.proxy)
            })?
            .next()
            .ok_or_else(|| anyhow::anyhow!("the trunk's proxy {:?} has no address", s.proxy))?;
        let ip: std::net::IpAddr = s
            .local_ip
            .parse()
            .map_err(|_| anyhow::anyhow!("local_ip {:?} is not an address", s.local_ip))?;
        Ok(match s.transport {
            Transport::Udp => Link::Udp {
                sock: UdpSocket::bind((ip, 0)).await?,
                proxy,
                asker: None,
                buf: vec![0u8; sip::MAX_MESSAGE],
            },
            Transport::Tcp => {
                let sock = match ip {
                    std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                    std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                };
                sock.bind((ip, 0).into())?;
                let stream = tokio::time::timeout(
                    Duration::from_secs(s.answer_secs.max(1)),
                    sock.connect(proxy),
                )
                .await
                .map_err(|_| {
                    anyhow::anyhow!("no TCP connection to {proxy} within {} s", s.answer_secs)
                })?
                .map_err(|e| anyhow::anyhow!("no TCP connection to {proxy}: {e}"))?;
                stream.set_nodelay(true)?;
                Link::Tcp {
                    stream,
                    buf: Vec::new(),
                }
            }
        })
    }

    pub(super) fn local(&self) -> std::io::Result<SocketAddr> {
        match self {
            Link::Udp { sock, .. } => sock.local_addr(),
            Link::Tcp { stream, .. } => stream.local_addr(),
        }
    }

    pub(super) fn proto(&self) -> &'static str {
        match self {
            Link::Udp { .. } => "UDP",
            Link::Tcp { .. } => "TCP",
        }
    }

    pub(super) fn reliable(&self) -> bool {
        matches!(self, Link::Tcp { .. })
    }

    /// Send a request to `to` (UDP), or down the connection (TCP).
    pub(super) async fn send(
        &mut self,
        m: &Message,
        to: Option<SocketAddr>,
    ) -> std::io::Result<()> {
        let bytes = m.to_bytes();
        match self {
            Link::Udp { sock, proxy, .. } => {
                sock.send_to(&bytes, to.unwrap_or(*proxy)).await?;
            }
            Link::Tcp { stream, .. } => {
                use tokio::io::AsyncWriteExt;
                stream.write_all(&bytes).await?;
            }
        }
        Ok(())
    }

    /// Answer the last request received.
    pub(super) async fn reply(&mut self, m: &Message) -> std::io::Result<()> {
        let to = match self {
            Link::Udp { asker, .. } => *asker,
            Link::Tcp { .. } => None,
        };
        self.send(m, to).await
    }

    /// The next message. Over UDP a datagram that is not SIP is skipped with a warning (the
    /// port is open to anyone); over TCP a broken message ends the connection.
    pub(super) async fn recv(&mut self) -> anyhow::Result<Message> {
        match self {
            Link::Udp {
                sock, asker, buf, ..
            } => loop {
                let (n, from) = sock.recv_from(buf).await?;
                match Message::parse(&buf[..n]) {
                    Ok((m, _)) => {
                        if m.method().is_some() {
                            *asker = Some(from);
                        }
                        return Ok(m);
                    }
                    Err(e) => {
                        tracing::warn!(%from, "not a SIP message on the call's port: {e}")
                    }
                }
            },
            Link::Tcp { stream, buf } => {
                use tokio::io::AsyncReadExt;
                loop {
                    // Keep-alive CRLFs between messages (RFC 5626) are skipped.
                    while buf.starts_with(b"\r\n") {
                        buf.drain(..2);
                    }
                    match Message::parse(buf) {
                        Ok((m, used)) => {
                            if m.header("Content-Length").is_none() {
                                anyhow::bail!("a message on TCP without Content-Length");
                            }
                            buf.drain(..used);
                            return Ok(m);
                        }
                        Err(ParseError::Incomplete) => {}
                        Err(e) => anyhow::bail!("a broken SIP message from the trunk: {e}"),
                    }
                    let mut chunk = [0u8; 8192];
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        anyhow::bail!("the trunk closed the TCP connection");
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

/// The dialog's identifiers and where in-dialog requests go.
struct Dialog {
    call_id: String,
    from: String,
    to_uri: String,
    remote_tag: Option<String>,
    cseq: u32,
    remote_target: String,
    routes: Vec<String>,
    local: SocketAddr,
    proto: &'static str,
    user: String,
    domain: String,
    outbound_route: Option<String>,
}

impl Dialog {
    fn to(&self) -> String {
        match &self.remote_tag {
            Some(t) => format!("<{}>;tag={t}", self.to_uri),
            None => format!("<{}>", self.to_uri),
        }
    }

    fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.proto, self.local
        )
    }

    fn contact(&self) -> String {
        format!(
            "<sip:{}@{};transport={}>",
            self.user,
            self.local,
            self.proto.to_ascii_lowercase()
        )
    }

    /// A request outside the dialog's route set (INVITE, its ACK for a failure, CANCEL).
    fn initial(&self, method: &str, branch: &str, cseq: u32) -> Message {
        let mut m = Message::request(method, &self.to_uri)
            .with("Via", self.via(branch))
            .with("Max-Forwards", "70")
            .with("From", self.from.clone())
            .with("To", self.to())
            .with("Call-ID", self.call_id.clone())
            .with("CSeq", format!("{cseq} {method}"));
        if let Some(r) = &self.outbound_route {
            m = m.with("Route", r.clone());
        }
        m
    }

    /// A request inside the dialog (ACK for the 2xx, BYE): to the remote target, through the
    /// route set, and where it goes first (UDP).
    fn in_dialog(&self, method: &str, cseq: u32) -> (Message, Option<SocketAddr>) {
        let mut m = Message::request(method, &self.remote_target)
            .with("Via", self.via(&branch()))
            .with("Max-Forwards", "70")
            .with("From", self.from.clone())
            .with("To", self.to())
            .with("Call-ID", self.call_id.clone())
            .with("CSeq", format!("{cseq} {method}"));
        for r in &self.routes {
            m = m.with("Route", r.clone());
        }
        let first = self
            .routes
            .first()
            .map(|r| sip::uri_of(r).to_string())
            .unwrap_or_else(|| self.remote_target.clone());
        let to = sip::host_port(&first).and_then(|(h, p)| {
            h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, p))
        });
        (m, to)
    }
}

pub(super) fn branch() -> String {
    format!("z9hG4bK{}", sip::token())
}

/// The answer to a request received in the dialog.
fn answer_to(req: &Message, code: u16, reason: &str) -> Message {
    let mut m = Message::response(code, reason);
    for (k, v) in &req.headers {
        if ["Via", "From", "To", "Call-ID", "CSeq", "Record-Route"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            m.headers.push((k.clone(), v.clone()));
        }
    }
    m
}

/// Place one call to `number` through the trunk and play `prompt`. Never fails: what went
/// wrong is an outcome.
pub async fn place(s: &TrunkSettings, number: &str, prompt: &Prompt) -> Outcome {
    place_timed(s, number, prompt).await.0
}

/// [`place`], and how long the call took to set up (INVITE sent to the answer's 200), when
/// it was answered: what the trunk's benchmark measures.
pub async fn place_timed(
    s: &TrunkSettings,
    number: &str,
    prompt: &Prompt,
) -> (Outcome, Option<Duration>) {
    let mut setup = None;
    let o = match run(s, number, prompt, &mut setup).await {
        Ok(o) => o,
        Err(e) => Outcome::Failed {
            reason: format!("{e:#}"),
        },
    };
    (o, setup)
}

async fn run(
    s: &TrunkSettings,
    number: &str,
    prompt: &Prompt,
    setup: &mut Option<Duration>,
) -> anyhow::Result<Outcome> {
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'+') {
        anyhow::bail!("{number:?} is not a number that can be called");
    }
    let mut link = Link::open(s).await?;
    let local = link.local()?;
    let rtp_sock = UdpSocket::bind((local.ip(), 0)).await?;
    let rtp_local = rtp_sock.local_addr()?;
    let domain = s.domain().to_string();
    let caller = if s.caller_id.is_empty() {
        &s.user
    } else {
        &s.caller_id
    };
    let proxy_host = s.proxy.rsplit_once(':').map(|(h, _)| h).unwrap_or(&s.proxy);
    let mut d = Dialog {
        call_id: format!("{}@stormbell", sip::token()),
        from: format!("<sip:{caller}@{domain}>;tag={}", sip::token()),
        to_uri: format!("sip:{number}@{domain}"),
        remote_tag: None,
        cseq: 1,
        remote_target: String::new(),
        routes: Vec::new(),
        local,
        proto: link.proto(),
        user: s.user.clone(),
        domain: domain.clone(),
        outbound_route: (domain != proxy_host).then(|| format!("<sip:{};lr>", s.proxy)),
    };
    let offer = sdp::offer(rtp_local, u64::from(rand_u32()));
    let invite = |d: &Dialog, branch: &str, auth: Option<&(String, String)>| {
        let mut m = d
            .initial("INVITE", branch, d.cseq)
            .with("Contact", d.contact())
            .with("Allow", "INVITE, ACK, CANCEL, BYE, INFO, OPTIONS")
            .with(
                "User-Agent",
                concat!("stormbell/", env!("CARGO_PKG_VERSION")),
            );
        if !s.caller_id.is_empty() {
            m = m.with(
                "P-Asserted-Identity",
                format!("<sip:{}@{}>", s.caller_id, d.domain),
            );
        }
        if let Some((h, v)) = auth {
            m = m.with(h, v.clone());
        }
        let mut m = m.with("Content-Type", "application/sdp");
        m.body = offer.clone().into_bytes();
        m
    };

    let started = Instant::now();
    let ring_deadline = started + Duration::from_secs(s.ring_secs);
    let mut tx_branch = branch();
    let mut auth: Option<(String, String)> = None;
    let mut nonces_answered = 0u32;
    let mut sent = invite(&d, &tx_branch, None);
    link.send(&sent, None).await?;
    let mut sent_at = Instant::now();
    // When the current INVITE transaction began (a retransmission does not move it).
    let mut tx_started = sent_at;
    let mut retx = T1;
    let mut provisional = false;
    let mut rang = false;
    let mut cancelled: Option<Instant> = None;
    let answered: Message = loop {
        let next_retx = if link.reliable() || provisional {
            None
        } else {
            Some(sent_at + retx)
        };
        let give_up = if cancelled.is_some() {
            cancelled.map(|c| c + Duration::from_secs(32))
        } else if provisional {
            Some(ring_deadline)
        } else {
            Some(tx_started + Duration::from_secs(s.answer_secs))
        };
        let wake = [next_retx, give_up].into_iter().flatten().min();
        let got = tokio::select! {
            m = link.recv() => Some(m?),
            _ = sleep_until(wake) => None,
        };
        let Some(m) = got else {
            let now = Instant::now();
            if next_retx.is_some_and(|t| now >= t) {
                link.send(&sent, None).await?;
                retx = retx.saturating_mul(2);
                sent_at = now;
                continue;
            }
            if let Some(c) = cancelled {
                if now >= c + Duration::from_secs(32) {
                    return Ok(Outcome::NoAnswer { code: None, rang });
                }
                continue;
            }
            if provisional {
                // Rang out: CANCEL (same branch as the INVITE, RFC 3261 §9.1).
                let cancel = d.initial("CANCEL", &tx_branch, d.cseq);
                link.send(&cancel, None).await?;
                cancelled = Some(now);
                continue;
            }
            return Ok(Outcome::Unreachable {
                code: None,
                reason: format!(
                    "no answer from the trunk {} within {} s",
                    s.proxy, s.answer_secs
                ),
            });
        };
        if let Some(method) = m.method() {
            // A request before the answer (OPTIONS from a proxy): answered, or refused.
            let (code, reason) = if method == "OPTIONS" {
                (200, "OK")
            } else {
                (481, "Call/Transaction Does Not Exist")
            };
            if method != "ACK" {
                link.reply(&answer_to(&m, code, reason)).await?;
            }
            continue;
        }
        let Some(code) = m.code() else { continue };
        let Some((n, method)) = m.cseq() else {
            continue;
        };
        if m.header("Call-ID") != Some(d.call_id.as_str()) || method != "INVITE" || n != d.cseq {
            continue; // the CANCEL's 200, or a stray answer
        }
        match code {
            100..=199 => {
                provisional = true;
                rang |= code == 180 || code == 183;
            }
            200..=299 => {
                *setup = Some(started.elapsed());
                break m;
            }
            401 | 407 => {
                ack_failure(&mut link, &d, &tx_branch, &m).await?;
                let (ask, answer_h) = if code == 401 {
                    ("WWW-Authenticate", "Authorization")
                } else {
                    ("Proxy-Authenticate", "Proxy-Authorization")
                };
                let Some(ch) = m.header(ask) else {
                    return Ok(Outcome::Failed {
                        reason: format!("the trunk answered {code} without a {ask} challenge"),
                    });
                };
                let ch = Challenge::parse(ch).map_err(|e| anyhow::anyhow!("{e}"))?;
                let stale = sip::param(m.header(ask).unwrap_or_default(), "stale")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                    || m.header(ask)
                        .is_some_and(|h| h.to_ascii_lowercase().contains("stale=true"));
                if s.password.is_empty() {
                    return Ok(Outcome::Failed {
                        reason: format!(
                            "the trunk {} asks for a password (realm {:?}) and none is configured",
                            s.name, ch.realm
                        ),
                    });
                }
                if auth.is_some() && !stale || nonces_answered >= 3 {
                    return Ok(Outcome::Failed {
                        reason: format!(
                            "the trunk {} refused our credentials ({code} {}): check its user {:?} and password",
                            s.name,
                            status_reason(&m),
                            s.user
                        ),
                    });
                }
                nonces_answered += 1;
                let value = ch.answer(&s.user, &s.password, "INVITE", &d.to_uri, &sip::token(), 1);
                auth = Some((answer_h.to_string(), value));
                d.cseq += 1;
                tx_branch = branch();
                sent = invite(&d, &tx_branch, auth.as_ref());
                link.send(&sent, None).await?;
                sent_at = Instant::now();
                tx_started = sent_at;
                retx = T1;
                provisional = false;
            }
            _ => {
                ack_failure(&mut link, &d, &tx_branch, &m).await?;
                if cancelled.is_some() && code == 487 {
                    return Ok(Outcome::NoAnswer { code: None, rang });
                }
                let mut o = classify(code, &status_reason(&m));
                if let Outcome::NoAnswer { rang: r, .. } = &mut o {
                    *r = rang;
                }
                return Ok(o);
            }
        }
    };

    // Answered: the dialog is the 2xx's.
    d.remote_tag = m_tag(&answered);
    d.remote_target = answered
        .header("Contact")
        .map(|c| sip::uri_of(c).to_string())
        .unwrap_or_else(|| d.to_uri.clone());
    d.routes = answered.all("Record-Route").into_iter().rev().collect();
    let (ack, ack_to) = d.in_dialog("ACK", d.cseq);
    link.send(&ack, ack_to).await?;
    if cancelled.is_some() {
        // Answered just as it was cancelled: the call is ended at once.
        bye(&mut link, &mut d).await;
        return Ok(Outcome::NoAnswer { code: None, rang });
    }
    let answer = match sdp::answer(&answered.body) {
        Ok(a) => a,
        Err(e) => {
            bye(&mut link, &mut d).await;
            return Ok(Outcome::Failed {
                reason: format!("answered, but no audio can flow: {e}"),
            });
        }
    };
    let o = media(&mut link, &d, &rtp_sock, &answer, prompt, &ack, ack_to).await?;
    if !matches!(o, Outcome::AnsweredNoKey { hung_up: true, .. }) {
        bye(&mut link, &mut d).await;
    }
    Ok(o)
}

fn m_tag(m: &Message) -> Option<String> {
    m.header("To").and_then(|t| sip::param(t, "tag"))
}

pub(super) fn status_reason(m: &Message) -> String {
    match &m.start {
        sip::Start::Response(s) => s.reason.clone(),
        sip::Start::Request(_) => String::new(),
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::getrandom(&mut b);
    u32::from_le_bytes(b)
}

/// The ACK of a failure answer: part of the INVITE's transaction (same branch, the answer's
/// To tag).
async fn ack_failure(
    link: &mut Link,
    d: &Dialog,
    branch: &str,
    answer: &Message,
) -> std::io::Result<()> {
    let mut ack = d.initial("ACK", branch, d.cseq);
    if let Some(to) = answer.header("To") {
        for h in ack.headers.iter_mut() {
            if h.0 == "To" {
                h.1 = to.to_string();
            }
        }
    }
    link.send(&ack, None).await
}

/// Play the prompt and listen for a key.
async fn media(
    link: &mut Link,
    d: &Dialog,
    rtp_sock: &UdpSocket,
    answer: &sdp::Answer,
    prompt: &Prompt,
    ack: &Message,
    ack_to: Option<SocketAddr>,
) -> anyhow::Result<Outcome> {
    let answered = Instant::now();
    // The rounds with a second of quiet between them, read a packet at a time (never copied
    // or encoded whole: a hundred calls would hold their prompts twice over).
    const GAP: usize = 8000;
    let len = prompt.samples.len();
    let rounds = prompt.rounds.max(1) as usize;
    let total = rounds * len + (rounds - 1) * GAP;
    let sample = |i: usize| -> i16 {
        let o = i % (len + GAP);
        if o < len { prompt.samples[o] } else { 0 }
    };
    let mut next_sample = 0usize;
    let mut stream = rtp::Stream::new(answer.audio_pt);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut played = 0usize;
    let mut ended: Option<Instant> = None;
    let mut seen_events: Vec<u32> = Vec::new();
    let mut latched: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match (next_sample < total).then_some(next_sample) {
                    Some(from) if !answer.deaf => {
                        // The last packet is padded with quiet to a whole one.
                        let pcm: Vec<i16> = (from..from + FRAME)
                            .map(|i| if i < total { sample(i) } else { 0 })
                            .collect();
                        let frame = rtp::encode(&pcm, answer.law);
                        rtp_sock.send_to(&stream.packet(&frame), answer.rtp).await?;
                        next_sample += FRAME;
                        played += 1;
                    }
                    Some(_) => {
                        next_sample += FRAME;
                        played += 1;
                    }
                    None => {
                        let e = *ended.get_or_insert_with(Instant::now);
                        if e.elapsed() >= prompt.linger {
                            return Ok(Outcome::AnsweredNoKey {
                                heard: Duration::from_millis(played as u64 * 20),
                                hung_up: false,
                            });
                        }
                    }
                }
            }
            r = rtp_sock.recv_from(&mut buf) => {
                let (n, from) = r?;
                let Some((pt, ts, payload)) = rtp::parse(&buf[..n]) else { continue };
                // Only the phone's own stream can answer: the first source that sends RTP is
                // latched (phones behind NAT, or with several addresses, send from another
                // address than their SDP names), and nothing from anywhere else counts.
                if *latched.get_or_insert(from) != from {
                    continue;
                }
                if Some(pt) != answer.events_pt || seen_events.contains(&ts) {
                    continue;
                }
                seen_events.push(ts);
                if let Some(key) = rtp::event_key(payload) {
                    return Ok(Outcome::Acknowledged { key, after: answered.elapsed(), via: "rfc4733" });
                }
            }
            m = link.recv() => {
                let m = m?;
                // A request acts only on this call: its Call-ID, and the phone's tag as the
                // sender (anything else that reaches the port is refused, never obeyed).
                if m.method().is_some_and(|x| x != "ACK") && !of_dialog(&m, d) {
                    link.reply(&answer_to(&m, 481, "Call/Transaction Does Not Exist")).await?;
                    continue;
                }
                match m.method() {
                    Some("BYE") => {
                        link.reply(&answer_to(&m, 200, "OK")).await?;
                        return Ok(Outcome::AnsweredNoKey {
                            heard: Duration::from_millis(played as u64 * 20),
                            hung_up: true,
                        });
                    }
                    Some("INFO") => {
                        link.reply(&answer_to(&m, 200, "OK")).await?;
                        let ct = m.header("Content-Type").unwrap_or_default();
                        if let Some(key) = rtp::info_key(ct, &m.body) {
                            return Ok(Outcome::Acknowledged { key, after: answered.elapsed(), via: "info" });
                        }
                    }
                    Some("ACK") => {}
                    Some("OPTIONS") => link.reply(&answer_to(&m, 200, "OK")).await?,
                    Some(_) => link.reply(&answer_to(&m, 488, "Not Acceptable Here")).await?,
                    // The 2xx again: our ACK was lost.
                    None if m.code().is_some_and(|c| (200..300).contains(&c))
                        && m.cseq().is_some_and(|(_, meth)| meth == "INVITE") =>
                    {
                        link.send(ack, ack_to).await?;
                    }
                    None => {}
                }
            }
        }
    }
}

/// Whether a request received belongs to the dialog: its Call-ID, and the phone's tag in From.
fn of_dialog(m: &Message, d: &Dialog) -> bool {
    m.header("Call-ID") == Some(d.call_id.as_str())
        && m.header("From").and_then(|f| sip::param(f, "tag")) == d.remote_tag
}

/// End the call: BYE, and its answer waited for a little (retransmitted over UDP).
async fn bye(link: &mut Link, d: &mut Dialog) {
    d.cseq += 1;
    let (m, to) = d.in_dialog("BYE", d.cseq);
    let until = Instant::now() + GOODBYE_WAIT;
    let mut retx = T1;
    if link.send(&m, to).await.is_err() {
        return;
    }
    loop {
        let next = if link.reliable() {
            until
        } else {
            (Instant::now() + retx).min(until)
        };
        tokio::select! {
            r = link.recv() => match r {
                Ok(a) if a.code().is_some_and(|c| c >= 200)
                    && a.cseq().is_some_and(|(n, meth)| n == d.cseq && meth == "BYE") => return,
                Ok(a) if a.method().is_some_and(|x| x != "ACK") => {
                    let _ = link.reply(&answer_to(&a, 200, "OK")).await;
                }
                Ok(_) => {}
                Err(_) => return,
            },
            _ = tokio::time::sleep_until(next) => {
                if Instant::now() >= until {
                    tracing::warn!(call_id = %d.call_id, "the BYE had no answer within {GOODBYE_WAIT:?}");
                    return;
                }
                let _ = link.send(&m, to).await;
                retx = (retx * 2).min(T2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_are_classified_as_the_issue_lists_them() {
        assert_eq!(classify(486, "Busy Here").name(), "busy");
        assert_eq!(classify(600, "Busy Everywhere").name(), "busy");
        assert_eq!(classify(603, "Decline").name(), "rejected");
        for c in [408, 480, 487] {
            assert_eq!(classify(c, "x").name(), "no_answer", "{c}");
        }
        for c in [404, 410, 484, 500, 503, 604] {
            assert_eq!(classify(c, "x").name(), "unreachable", "{c}");
        }
        let Outcome::Failed { reason } = classify(488, "Not Acceptable Here") else {
            panic!("488 is a failure");
        };
        assert!(reason.contains("488 Not Acceptable Here"), "{reason}");
    }
}
