//! `[[dispatch.sms.accounts]]`: one account at an SMS centre, as the carrier's contract gives it.

use serde::{Deserialize, Serialize};

pub use crate::dispatch::outbox::ReceiptIds;

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
    /// Seconds a submit waits for its answer in all while the link answers enquire_link (an
    /// answer after `response_timeout_secs` is still the verdict; the link is kept).
    #[serde(default = "sixty")]
    pub give_up_secs: u64,
    /// How the centre writes a message id in its receipts, against its submit_sm_resp.
    #[serde(default)]
    pub receipt_ids: ReceiptIds,
    /// Seconds after acceptance without a receipt before a text is settled as "sent, no
    /// receipt" (`delivery_unknown`); a receipt that comes later still counts.
    #[serde(default = "half_hour")]
    pub receipt_deadline_secs: u64,
}

impl Default for AccountSettings {
    /// An account with the defaults of a config file (name, address, login and source empty):
    /// for building one in code, `AccountSettings { name, address, .., ..Default::default() }`.
    fn default() -> AccountSettings {
        AccountSettings {
            name: String::new(),
            address: String::new(),
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            source: String::new(),
            binds: one(),
            window: ten(),
            tps: 100,
            prefixes: Vec::new(),
            backup: false,
            response_timeout_secs: ten_secs(),
            enquire_secs: thirty(),
            give_up_secs: sixty(),
            receipt_ids: ReceiptIds::default(),
            receipt_deadline_secs: half_hour(),
        }
    }
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
fn sixty() -> u64 {
    60
}
fn half_hour() -> u64 {
    1800
}
