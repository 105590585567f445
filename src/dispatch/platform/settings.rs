//! `[dispatch.broadcast.platform]`: the county emergency-broadcast platform (its address, our
//! resource code and its, the pace of polls and heartbeats, how packages are signed).

use serde::{Deserialize, Serialize};

use super::sign::SignerSettings;

/// `[dispatch.broadcast.platform]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlatformSettings {
    /// Where packages are POSTed.
    pub url: String,
    /// Our resource code (EBRID, 18 digits).
    pub src: String,
    /// The platform's resource code.
    pub dest: String,
    /// Seconds between state polls of a broadcast in progress.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// Seconds between heartbeats (and terminal-state reports).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Seconds to wait for an answer.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Send the MP3 with the instruction (else the platform speaks the text itself).
    #[serde(default = "default_true")]
    pub audio: bool,
    /// MP3 bit rate (kbit/s).
    #[serde(default = "default_kbps")]
    pub kbps: u32,
    /// How packages are signed.
    #[serde(default = "default_signer")]
    pub signer: SignerSettings,
}

fn default_poll() -> u64 {
    5
}
fn default_heartbeat() -> u64 {
    60
}
fn default_timeout() -> u64 {
    10
}
fn default_true() -> bool {
    true
}
fn default_kbps() -> u32 {
    32
}
fn default_signer() -> SignerSettings {
    SignerSettings::None
}
