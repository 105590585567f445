//! Outgoing HTTP, done the same careful way everywhere: an honest User-Agent, connect and
//! whole-request timeouts, gzip, and a hard cap on how many bytes a response may bring.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[http]`: outgoing HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// User-Agent header.
    pub user_agent: String,
    /// Connect timeout, seconds.
    pub connect_timeout_secs: u64,
    /// Whole-request timeout, seconds.
    pub timeout_secs: u64,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not http(s).
    #[error("{0}: only http and https URLs can be fetched")]
    Scheme(String),
    /// Transport failure (DNS, connect, TLS, timeout, broken body).
    #[error("{url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server answered with a non-success status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body was larger than allowed; reading stopped at the cap.
    #[error("{url}: response larger than {limit} bytes; refused")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: usize,
    },
}

/// A client configured from `[http]`.
pub fn client(cfg: &HttpSettings) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .user_agent(cfg.user_agent.clone())
        .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
        .timeout(Duration::from_secs(cfg.timeout_secs))
        .gzip(true)
        .build()
        .map_err(|e| FetchError::Transport {
            url: String::new(),
            message: format!("cannot build the HTTP client: {e}"),
        })
}

/// Validators from a previous response, for a conditional GET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// The `ETag` the server gave (sent back as `If-None-Match`).
    pub etag: Option<String>,
    /// The `Last-Modified` the server gave (sent back verbatim as `If-Modified-Since`; never
    /// compared with our own clock, which may disagree with the server's).
    pub last_modified: Option<String>,
}

impl Validators {
    /// Whether there is anything to send.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// The outcome of a conditional GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// 304: nothing changed since the validators were issued.
    NotModified,
    /// A new body, with the validators to send next time.
    Body {
        /// The bytes (decompressed).
        bytes: Vec<u8>,
        /// Validators from this response.
        validators: Validators,
    },
}

/// GET `url`, reading at most `limit` bytes of body.
pub async fn get_bounded(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    match get_conditional(client, url, &Validators::default(), limit).await? {
        Conditional::Body { bytes, .. } => Ok(bytes),
        // Only reachable if a server answers 304 to an unconditional request.
        Conditional::NotModified => Err(FetchError::Status {
            url: url.to_string(),
            status: 304,
        }),
    }
}

/// Describe a transport error with its causes: reqwest's own message ("error sending request")
/// hides the part that matters ("connection refused", "operation timed out").
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out (no complete answer within the configured time)".to_string();
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        source = s.source();
    }
    msg
}

/// GET `url` with `If-None-Match` / `If-Modified-Since` from `validators`, reading at most
/// `limit` bytes of (decompressed) body: a larger `Content-Length` is refused before reading,
/// and a body without one is cut off at the cap.
pub async fn get_conditional(
    client: &reqwest::Client,
    url: &str,
    validators: &Validators,
    limit: usize,
) -> Result<Conditional, FetchError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(FetchError::Scheme(url.to_string()));
    }
    let transport = |e: reqwest::Error| FetchError::Transport {
        url: url.to_string(),
        message: describe(&e),
    };
    let mut req = client.get(url);
    if let Some(etag) = &validators.etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = &validators.last_modified {
        req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
    }
    let resp = req.send().await.map_err(transport)?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED && !validators.is_empty() {
        return Ok(Conditional::NotModified);
    }
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    let header = |name: reqwest::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let got = Validators {
        etag: header(reqwest::header::ETAG),
        last_modified: header(reqwest::header::LAST_MODIFIED),
    };
    Ok(Conditional::Body {
        bytes: read_capped(resp, url, limit).await?,
        validators: got,
    })
}

/// The body of a response, at most `limit` bytes: a larger `Content-Length` is refused before
/// reading, a body without one is cut off at the cap. For every answer from outside that is
/// read whole (feeds, the broadcast platform, Icecast's status page).
pub async fn read_capped(
    mut resp: reqwest::Response,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Transport {
        url: url.to_string(),
        message: describe(&e),
    })? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
