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
    /// Where we listen for delivery reports. On the loopback by default, where the gateway
    /// beside us reaches it; another address needs `dlr_remote = true`.
    #[serde(default = "default_listen")]
    pub dlr_listen: String,
    /// How the gateway reaches that listener.
    #[serde(default = "default_base")]
    pub dlr_base: String,
    /// Allow `dlr_listen` off the loopback (a gateway on another machine). Reports are
    /// authenticated either way: each carries a secret only the gateway was given.
    #[serde(default)]
    pub dlr_remote: bool,
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

fn default_listen() -> String {
    "127.0.0.1:8471".into()
}

fn default_base() -> String {
    "http://127.0.0.1:8471".into()
}

impl KannelSettings {
    /// Why these settings cannot be used, if they cannot: a report listener off the loopback
    /// without `dlr_remote`.
    pub fn problem(&self) -> Option<String> {
        let host = self
            .dlr_listen
            .rsplit_once(':')
            .map_or(self.dlr_listen.as_str(), |(h, _)| h)
            .trim_matches(['[', ']']);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        (!loopback && !self.dlr_remote).then(|| {
            format!(
                "{} is not a loopback address: delivery reports would be open to the network; \
                 listen on 127.0.0.1 (the gateway beside stormbell), or set dlr_remote = true",
                self.dlr_listen
            )
        })
    }
}
