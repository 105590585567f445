//! `[dispatch.kannel]`: an HTTP SMS gateway (Kannel's `sendsms`) and where its delivery
//! reports come back.

use serde::{Deserialize, Serialize};

/// `[dispatch.kannel]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KannelSettings {
    /// The sendsms URL, e.g. `http://127.0.0.1:13013/cgi-bin/sendsms`.
    pub sendsms_url: String,
    /// sendsms user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Sender (`from`).
    pub source: String,
    /// Where we listen for delivery reports, e.g. `127.0.0.1:8471`.
    pub dlr_listen: String,
    /// How the gateway reaches that listener, e.g. `http://127.0.0.1:8471`.
    pub dlr_base: String,
    /// Requests in flight at most.
    #[serde(default = "twenty")]
    pub concurrency: usize,
    /// Route through this gateway SMSC id (`smsc=`), if set.
    #[serde(default)]
    pub smsc: String,
}

fn twenty() -> usize {
    20
}
