//! Getting a feed's bytes: over HTTP, or from a recorded scenario ([`super::replay`]).
//!
//! The poller only knows [`Fetcher`]; both implementations honour the same contract —
//! conditional requests with the validators of the last response, and a hard cap on the body
//! size — so a replayed storm exercises exactly the code a live one does.

use std::future::Future;
use std::pin::Pin;

pub use crate::http::{Conditional, FetchError, Validators};

/// A boxed fetch, so [`Fetcher`] stays object-safe.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Conditional, FetchError>> + Send + 'a>>;

/// Where a feed's documents come from.
pub trait Fetcher: Send + Sync + 'static {
    /// Fetch `url`, conditionally on `validators`, refusing bodies over `max_bytes`.
    fn fetch<'a>(
        &'a self,
        url: &'a str,
        validators: &'a Validators,
        max_bytes: usize,
    ) -> FetchFuture<'a>;
}

/// Fetching over HTTP with the client built from `[http]` (User-Agent, connect and whole-request
/// timeouts, gzip).
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl HttpFetcher {
    /// A fetcher using `client`.
    pub fn new(client: reqwest::Client) -> HttpFetcher {
        HttpFetcher { client }
    }
}

impl Fetcher for HttpFetcher {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
        validators: &'a Validators,
        max_bytes: usize,
    ) -> FetchFuture<'a> {
        Box::pin(crate::http::get_conditional(
            &self.client,
            url,
            validators,
            max_bytes,
        ))
    }
}
