//! A real HTTP server on 127.0.0.1 (axum/hyper) that serves what a test tells it to, and
//! misbehaves on request: error statuses, a connection that never answers, bodies far too
//! large, with or without a Content-Length. It records every request it sees.

use std::collections::HashMap;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What the server answers at one path.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A document, honouring conditional requests against its validators.
    Body {
        bytes: Vec<u8>,
        content_type: &'static str,
        etag: Option<String>,
        last_modified: Option<String>,
        /// Compress when the client accepts gzip.
        gzip: bool,
    },
    /// Just a status.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// Stream `total` bytes; with or without announcing the length.
    Endless { total: u64, with_length: bool },
}

impl Reply {
    /// A plain document without validators.
    pub fn doc(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Body {
            bytes: bytes.into(),
            content_type: "application/xml",
            etag: None,
            last_modified: None,
            gzip: false,
        }
    }

    /// A document with an ETag and a Last-Modified.
    pub fn tagged(bytes: impl Into<Vec<u8>>, etag: &str, last_modified: &str) -> Reply {
        Reply::Body {
            bytes: bytes.into(),
            content_type: "application/xml",
            etag: Some(etag.to_string()),
            last_modified: Some(last_modified.to_string()),
            gzip: false,
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub headers: HeaderMap,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    routes: HashMap<String, Reply>,
    seen: HashMap<String, Vec<Seen>>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    streamed: Arc<AtomicU64>,
    /// Told at every request recorded, for [`Server::until_hits`].
    hit: Arc<tokio::sync::Notify>,
}

/// The running server.
pub struct Server {
    pub base: String,
    shared: Shared,
}

impl Server {
    /// Start on an ephemeral loopback port, on the current tokio runtime.
    pub async fn start() -> Server {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner::default())),
            streamed: Arc::new(AtomicU64::new(0)),
            hit: Arc::new(tokio::sync::Notify::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { base, shared }
    }

    /// The absolute URL of `path` (which starts with `/`, and may carry a query).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answer `path` with `reply` from now on.
    pub fn set(&self, path: &str, reply: Reply) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), reply);
    }

    /// Requests seen at `path`.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .seen
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// How many requests `path` received.
    pub fn hits(&self, path: &str) -> usize {
        self.seen(path).len()
    }

    /// Wait (up to `secs`) until `path` has received `n` requests, woken by each request.
    pub async fn until_hits(&self, path: &str, n: usize, secs: u64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            // Listen before looking, so a request in between is not missed.
            let told = self.shared.hit.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            let got = self.hits(path);
            if got >= n {
                return;
            }
            let on_time = tokio::time::timeout_at(deadline, told).await.is_ok();
            assert!(on_time, "{path}: {got} of {n} requests within {secs} s");
        }
    }

    /// Bytes handed to the network by [`Reply::Endless`] bodies so far.
    pub fn streamed(&self) -> u64 {
        self.shared.streamed.load(Ordering::Relaxed)
    }
}

async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let key = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let reply = shared.inner.lock().unwrap().routes.get(&key).cloned();
    let (status, response) = match reply {
        None => (404, StatusCode::NOT_FOUND.into_response()),
        Some(Reply::Status(code)) => {
            let s = StatusCode::from_u16(code).unwrap();
            (code, s.into_response())
        }
        Some(Reply::Hang) => {
            record(&shared, &key, headers, 0);
            std::future::pending::<()>().await;
            unreachable!()
        }
        Some(Reply::Endless { total, with_length }) => {
            let body = Endless {
                remaining: total,
                total,
                with_length,
                counter: shared.streamed.clone(),
            };
            (200, Response::new(Body::new(body)))
        }
        Some(Reply::Body {
            bytes,
            content_type,
            etag,
            last_modified,
            gzip,
        }) => {
            let inm = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            let ims = headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok());
            let fresh = match (inm, &etag) {
                (Some(i), Some(e)) => i == e,
                (Some(_), None) => false,
                (None, _) => ims.is_some() && ims == last_modified.as_deref(),
            };
            let mut h = HeaderMap::new();
            if let Some(e) = &etag {
                h.insert(header::ETAG, HeaderValue::from_str(e).unwrap());
            }
            if let Some(l) = &last_modified {
                h.insert(header::LAST_MODIFIED, HeaderValue::from_str(l).unwrap());
            }
            if fresh {
                (304, (StatusCode::NOT_MODIFIED, h).into_response())
            } else {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                let accepts_gzip = headers
                    .get(header::ACCEPT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("gzip"));
                let body = if gzip && accepts_gzip {
                    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    enc.write_all(&bytes).unwrap();
                    enc.finish().unwrap()
                } else {
                    bytes
                };
                (200, (StatusCode::OK, h, body).into_response())
            }
        }
    };
    record(&shared, &key, headers, status);
    response
}

fn record(shared: &Shared, key: &str, headers: HeaderMap, status: u16) {
    shared
        .inner
        .lock()
        .unwrap()
        .seen
        .entry(key.to_string())
        .or_default()
        .push(Seen { headers, status });
    shared.hit.notify_waiters();
}

/// A body of `total` bytes, produced 64 KiB at a time as the client reads.
struct Endless {
    remaining: u64,
    total: u64,
    with_length: bool,
    counter: Arc<AtomicU64>,
}

impl http_body::Body for Endless {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(64 * 1024);
        self.remaining -= n;
        self.counter.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(
            vec![b'<'; n as usize],
        )))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.with_length {
            http_body::SizeHint::with_exact(self.total)
        } else {
            http_body::SizeHint::default()
        }
    }
}
