//! `[[dispatch.voice.trunks]]`: one SIP trunk or PBX account, as the carrier or the county's
//! telephone office gives it.

use serde::{Deserialize, Serialize};

/// How SIP travels to the trunk.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SIP over UDP (RFC 3261 §17 retransmissions): what most trunks take.
    #[default]
    Udp,
    /// SIP over TCP: one connection per call, no retransmissions.
    Tcp,
}

/// One SIP trunk, as configured (`[[dispatch.voice.trunks]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrunkSettings {
    /// A name for logs and the outbox.
    pub name: String,
    /// Where requests go (the outbound proxy or the PBX), `host:port`.
    pub proxy: String,
    /// The domain in the numbers called (`sip:138…@domain`) and in our own address; empty:
    /// the proxy's host.
    #[serde(default)]
    pub domain: String,
    /// UDP or TCP.
    #[serde(default)]
    pub transport: Transport,
    /// The user the trunk knows us by (From, and digest authentication).
    pub user: String,
    /// The digest password; empty: the trunk does not ask for one.
    #[serde(default)]
    pub password: String,
    /// The caller id shown on the phones (the duty office's number); empty: `user`.
    #[serde(default)]
    pub caller_id: String,
    /// Our own address on the trunk's network (SIP and RTP are bound to it).
    #[serde(default = "loopback")]
    pub local_ip: String,
    /// Calls in progress at once on this trunk at most (the contract's channels).
    #[serde(default = "four")]
    pub max_calls: usize,
    /// New calls per second at most.
    #[serde(default = "two")]
    pub calls_per_sec: u32,
    /// Seconds a phone may ring before the call is cancelled (no answer).
    #[serde(default = "forty_five")]
    pub ring_secs: u64,
    /// Seconds a request may go unanswered before the trunk counts as unreachable (RFC 3261's
    /// Timer B is 32).
    #[serde(default = "thirty_two")]
    pub answer_secs: u64,
    /// Register with the trunk (REGISTER with the same credentials), as carriers' IMS trunks
    /// and many PBXs require before they count the trunk up.
    #[serde(default)]
    pub register: bool,
    /// Seconds a registration is asked to last (refreshed at four fifths of what is granted).
    #[serde(default = "ten_mins")]
    pub register_secs: u64,
}

impl Default for TrunkSettings {
    /// A trunk with a config file's defaults (name, proxy and user empty).
    fn default() -> TrunkSettings {
        TrunkSettings {
            name: String::new(),
            proxy: String::new(),
            domain: String::new(),
            transport: Transport::Udp,
            user: String::new(),
            password: String::new(),
            caller_id: String::new(),
            local_ip: loopback(),
            max_calls: four(),
            calls_per_sec: two(),
            ring_secs: forty_five(),
            answer_secs: thirty_two(),
            register: false,
            register_secs: ten_mins(),
        }
    }
}

impl TrunkSettings {
    /// The domain named in URIs: `domain`, or the proxy's host.
    pub fn domain(&self) -> &str {
        if self.domain.is_empty() {
            self.proxy
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(&self.proxy)
        } else {
            &self.domain
        }
    }
}

fn loopback() -> String {
    "127.0.0.1".into()
}
fn four() -> usize {
    4
}
fn two() -> u32 {
    2
}
fn forty_five() -> u64 {
    45
}
fn thirty_two() -> u64 {
    32
}
fn ten_mins() -> u64 {
    600
}

/// `[dispatch.voice]`: the trunks, and how calls are retried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VoiceSettings {
    /// `[[dispatch.voice.trunks]]`: none means calls wait in the outbox.
    #[serde(default)]
    pub trunks: Vec<TrunkSettings>,
    /// Rings of one call before it fails for good.
    #[serde(default = "three")]
    pub attempts: u32,
    /// Seconds before a busy person is rung again.
    #[serde(default = "two_mins")]
    pub retry_busy_secs: u64,
    /// Seconds before a person who did not answer is rung again.
    #[serde(default = "three_mins")]
    pub retry_no_answer_secs: u64,
    /// Seconds before a number that could not be reached (or a failed call) is tried again.
    #[serde(default = "five_mins")]
    pub retry_unreachable_secs: u64,
    /// Times the warning and the prompt are played.
    #[serde(default = "two_rounds")]
    pub rounds: u32,
    /// Seconds a key is still waited for after the last round.
    #[serde(default = "five")]
    pub linger_secs: u64,
}

impl Default for VoiceSettings {
    fn default() -> VoiceSettings {
        VoiceSettings {
            trunks: Vec::new(),
            attempts: three(),
            retry_busy_secs: two_mins(),
            retry_no_answer_secs: three_mins(),
            retry_unreachable_secs: five_mins(),
            rounds: two_rounds(),
            linger_secs: five(),
        }
    }
}

impl VoiceSettings {
    /// What is wrong with it, as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, t) in self.trunks.iter().enumerate() {
            let key = |f: &str| format!("dispatch.voice.trunks[{i}].{f}");
            if t.name.is_empty() {
                out.push((key("name"), "empty".into()));
            }
            if t.proxy
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                out.push((key("proxy"), format!("{:?} is not host:port", t.proxy)));
            }
            if t.user.is_empty() {
                out.push((key("user"), "empty".into()));
            }
            if t.local_ip.parse::<std::net::IpAddr>().is_err() {
                out.push((
                    key("local_ip"),
                    format!("{:?} is not an address", t.local_ip),
                ));
            }
            if t.max_calls == 0 || t.calls_per_sec == 0 {
                out.push((
                    key("max_calls"),
                    "max_calls and calls_per_sec must be at least 1".into(),
                ));
            }
        }
        if self.attempts == 0 {
            out.push((
                "dispatch.voice.attempts".into(),
                "must be at least 1".into(),
            ));
        }
        out
    }
}

fn three() -> u32 {
    3
}
fn two_mins() -> u64 {
    120
}
fn three_mins() -> u64 {
    180
}
fn five_mins() -> u64 {
    300
}
fn two_rounds() -> u32 {
    2
}
fn five() -> u64 {
    5
}
