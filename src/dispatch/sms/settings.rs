//! `[[dispatch.sms.accounts]]`: one account at an SMS centre, as the carrier's contract gives it.

use serde::{Deserialize, Serialize};

/// One account at an SMSC, as configured (`[[dispatch.sms.accounts]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// A name for logs and the outbox.
    pub name: String,
    /// host:port.
    pub address: String,
    /// system_id.
    pub system_id: String,
    /// password.
    pub password: String,
    /// system_type.
    #[serde(default)]
    pub system_type: String,
    /// Sender address (the office's short code).
    pub source: String,
    /// Binds to keep open.
    #[serde(default = "one")]
    pub binds: usize,
    /// Submits in flight per bind.
    #[serde(default = "ten")]
    pub window: usize,
    /// Messages per second the contract allows (parts count).
    pub tps: u32,
    /// Number prefixes it serves (e.g. China Mobile's 134–139, 147, 150–152, …); empty: all.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Only used when the accounts for a number are all down.
    #[serde(default)]
    pub backup: bool,
    /// Seconds a response may take.
    #[serde(default = "ten_secs")]
    pub response_timeout_secs: u64,
    /// Seconds of quiet before an enquire_link.
    #[serde(default = "thirty")]
    pub enquire_secs: u64,
}

fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}
fn ten_secs() -> u64 {
    10
}
fn thirty() -> u64 {
    30
}
