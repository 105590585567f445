//! `[dispatch.broadcast.icecast]`: the Icecast server a county's IP speakers pull from.

use serde::{Deserialize, Serialize};

/// `[dispatch.broadcast.icecast]`: the Icecast server the IP speakers pull from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IcecastSettings {
    /// Base URL of the server, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    /// The source password (`<source-password>`).
    pub password: String,
    /// Mount per village; `{village}` is replaced by its 12-digit code (`/{village}.mp3`). A
    /// fixed name sends every village the same stream.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// MP3 bit rate in kbit/s (speech: 32 is plenty).
    #[serde(default = "default_kbps")]
    pub kbps: u32,
    /// Seconds to wait for the server to accept the source before giving up.
    #[serde(default = "default_connect")]
    pub connect_secs: u64,
}

fn default_mount() -> String {
    "/{village}.mp3".into()
}
fn default_kbps() -> u32 {
    32
}
fn default_connect() -> u64 {
    10
}

impl IcecastSettings {
    /// The mount for a village.
    pub fn mount_for(&self, village: &str) -> String {
        let m = self.mount.replace("{village}", village);
        if m.starts_with('/') {
            m
        } else {
            format!("/{m}")
        }
    }
}
