//! Outgoing HTTP, done the same careful way everywhere: an honest User-Agent, connect and
//! whole-request timeouts, gzip, and a hard cap on how many bytes a response may bring.

use std::time::Duration;

use crate::config::HttpConfig;

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
pub fn client(cfg: &HttpConfig) -> Result<reqwest::Client, FetchError> {
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

/// GET `url`, reading at most `limit` bytes of body.
pub async fn get_bounded(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(FetchError::Scheme(url.to_string()));
    }
    let transport = |e: reqwest::Error| FetchError::Transport {
        url: url.to_string(),
        message: e.to_string(),
    };
    let mut resp = client.get(url).send().await.map_err(transport)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    if resp.content_length().is_some_and(|n| n as usize > limit) {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
