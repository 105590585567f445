//! Registration with a trunk that wants it (RFC 3261 §10): REGISTER with digest credentials,
//! refreshed before it lapses, withdrawn (Expires: 0) on the way out. Carriers' IMS trunks and
//! many PBXs count a trunk as up only while it is registered; calls still go out on their own
//! sockets, authenticated per INVITE.

use std::time::Duration;

use tokio::time::Instant;

use super::call::{Link, T1, branch, status_reason};
use super::digest::Challenge;
use super::settings::TrunkSettings;
use super::sip::{self, Message};
use crate::runtime::Shutdown;

/// One registration's identity: kept across refreshes (RFC 3261 §10.2.4: same Call-ID, CSeq
/// counting up).
pub struct Registration {
    link: Link,
    call_id: String,
    from_tag: String,
    cseq: u32,
}

impl Registration {
    /// A registration of `s`'s user, from a socket of its own.
    pub async fn open(s: &TrunkSettings) -> anyhow::Result<Registration> {
        Ok(Registration {
            link: Link::open(s).await?,
            call_id: format!("{}@stormbell", sip::token()),
            from_tag: sip::token(),
            cseq: 0,
        })
    }

    /// Register for `expires` seconds (0: withdraw); the time the registrar granted. An error
    /// says what the registrar answered (a refused login names the user to check).
    pub async fn register(&mut self, s: &TrunkSettings, expires: u64) -> anyhow::Result<Duration> {
        let domain = s.domain().to_string();
        let uri = format!("sip:{domain}");
        let local = self.link.local()?;
        let proto = self.link.proto();
        let aor = format!("<sip:{}@{domain}>", s.user);
        let mut auth: Option<(String, String)> = None;
        for _ in 0..3 {
            self.cseq += 1;
            let mut m = Message::request("REGISTER", &uri)
                .with(
                    "Via",
                    format!("SIP/2.0/{proto} {local};branch={};rport", branch()),
                )
                .with("Max-Forwards", "70")
                .with("From", format!("{aor};tag={}", self.from_tag))
                .with("To", aor.clone())
                .with("Call-ID", self.call_id.clone())
                .with("CSeq", format!("{} REGISTER", self.cseq))
                .with(
                    "Contact",
                    format!(
                        "<sip:{}@{local};transport={}>",
                        s.user,
                        proto.to_ascii_lowercase()
                    ),
                )
                .with("Expires", expires.to_string())
                .with(
                    "User-Agent",
                    concat!("stormbell/", env!("CARGO_PKG_VERSION")),
                );
            if let Some((h, v)) = &auth {
                m = m.with(h, v.clone());
            }
            let answer = self.transact(&m, s).await?;
            let code = answer.code().unwrap_or(0);
            match code {
                200..=299 => {
                    // The registrar lists every binding of the user: ours is the one with
                    // our address (another node's or phone's may say otherwise).
                    let ours = local.to_string();
                    let granted = answer
                        .all("Contact")
                        .iter()
                        .filter(|c| sip::uri_of(c).contains(&ours))
                        .find_map(|c| sip::param(c, "expires"))
                        .or_else(|| answer.header("Expires").map(str::to_string))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(expires);
                    return Ok(Duration::from_secs(granted));
                }
                401 | 407 => {
                    let (ask, answer_h) = if code == 401 {
                        ("WWW-Authenticate", "Authorization")
                    } else {
                        ("Proxy-Authenticate", "Proxy-Authorization")
                    };
                    let challenge = answer.header(ask).unwrap_or_default();
                    let stale = challenge.to_ascii_lowercase().contains("stale=true");
                    if s.password.is_empty() {
                        anyhow::bail!(
                            "the trunk {} asks for a password to register and none is configured",
                            s.name
                        );
                    }
                    if auth.is_some() && !stale {
                        anyhow::bail!(
                            "the trunk {} refused our credentials to register ({code} {}): check its user {:?} and password",
                            s.name,
                            status_reason(&answer),
                            s.user
                        );
                    }
                    let ch = Challenge::parse(challenge).map_err(|e| anyhow::anyhow!("{e}"))?;
                    auth = Some((
                        answer_h.to_string(),
                        ch.answer(&s.user, &s.password, "REGISTER", &uri, &sip::token(), 1),
                    ));
                }
                _ => anyhow::bail!(
                    "the trunk {} refused the registration: {code} {}",
                    s.name,
                    status_reason(&answer)
                ),
            }
        }
        anyhow::bail!("the trunk {} kept challenging the registration", s.name)
    }

    /// Send a request and wait for its final answer (retransmitted over UDP at T1, doubling,
    /// for `answer_secs`).
    async fn transact(&mut self, m: &Message, s: &TrunkSettings) -> anyhow::Result<Message> {
        let until = Instant::now() + Duration::from_secs(s.answer_secs.max(1));
        let cseq = self.cseq;
        self.link.send(m, None).await?;
        let mut retx = T1;
        let mut next = Instant::now() + retx;
        loop {
            let wake = if self.link.reliable() {
                until
            } else {
                next.min(until)
            };
            tokio::select! {
                r = self.link.recv() => {
                    let a = r?;
                    if a.code().is_some_and(|c| c >= 200)
                        && a.header("Call-ID") == Some(self.call_id.as_str())
                        && a.cseq().is_some_and(|(n, meth)| n == cseq && meth == "REGISTER")
                    {
                        return Ok(a);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= until {
                        anyhow::bail!(
                            "no answer from the trunk {} to REGISTER within {} s",
                            s.proxy,
                            s.answer_secs
                        );
                    }
                    self.link.send(m, None).await?;
                    retx = (retx * 2).min(Duration::from_secs(4));
                    next = Instant::now() + retx;
                }
            }
        }
    }
}

/// Keep the trunk registered until `shutdown`: refresh at four fifths of what was granted;
/// after a failure (logged with the registrar's answer), try again in 30 s; withdraw on the
/// way out.
pub async fn keep_registered(s: TrunkSettings, mut shutdown: Shutdown) {
    let mut reg: Option<Registration> = None;
    let mut up = false;
    loop {
        let wait = {
            if reg.is_none() {
                match Registration::open(&s).await {
                    Ok(r) => reg = Some(r),
                    Err(e) => tracing::error!(trunk = %s.name, "cannot register: {e:#}"),
                }
            }
            match reg.as_mut() {
                Some(r) => match r.register(&s, s.register_secs).await {
                    Ok(granted) => {
                        if !up {
                            tracing::info!(trunk = %s.name, "registered for {} s", granted.as_secs());
                        }
                        up = true;
                        (granted * 4 / 5).max(Duration::from_secs(5))
                    }
                    Err(e) => {
                        tracing::error!(trunk = %s.name, "registration failed: {e:#}");
                        up = false;
                        reg = None;
                        Duration::from_secs(30)
                    }
                },
                None => Duration::from_secs(30),
            }
        };
        tokio::select! {
            _ = shutdown.recv() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if let (Some(r), true) = (reg.as_mut(), up) {
        let _ = r.register(&s, 0).await;
    }
}
