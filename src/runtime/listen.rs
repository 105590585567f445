//! Every listening port of the daemon (the web port, Kannel's delivery reports) is served by
//! [`serve`], which holds each connection to limits a hostile client cannot stretch:
//!
//! - the request's headers must arrive within `header_secs` (a client that sends half a request
//!   and waits is closed), and an idle kept-alive connection waits for its next request no
//!   longer than that either;
//! - a request must be answered, its body read, within `request_secs` (a body trickled in a
//!   byte at a time is cut off with 408);
//! - at most `max_connections` connections at once, and at most `max_per_address` from one
//!   address: past either, a new connection is closed at once, so one client cannot take the
//!   file descriptors every other page, feed and SMS link needs.
//!
//! Behind the office's reverse proxy every connection comes from the proxy's address; the
//! per-address cap then bounds the proxy, and the proxy's own limits protect the rest (see
//! docs/deploy.md).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};

use crate::runtime::Shutdown;

/// `[web.limits]`: what one connection and one client may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Seconds for a request's headers to arrive (and for a kept-alive connection to bring its
    /// next request).
    pub header_secs: u64,
    /// Seconds to read a request's body and answer it.
    pub request_secs: u64,
    /// Connections at once, in all.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_per_address: usize,
    /// Reverse proxies in front of the port (the office's nginx): a request from one of them
    /// is taken to come from the client its `X-Forwarded-For` names, so the per-address limits
    /// here and on the pages (sign-in, check-in) count each client, not the proxy. Their own
    /// connections are held only to `max_connections`. A request from anywhere else is taken
    /// to come from where it came, whatever its headers say.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_secs: 10,
            request_secs: 30,
            max_connections: 512,
            max_per_address: 128,
            trusted_proxies: vec![
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ],
        }
    }
}

/// Who holds how many connections.
#[derive(Debug)]
struct Gate {
    limits: Limits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A connection admitted; its place is given back when dropped.
struct Admitted {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut g = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *g;
        let mine = by_ip.get(&ip).copied().unwrap_or(0);
        let proxy = self.limits.trusted_proxies.contains(&ip);
        if *total >= self.limits.max_connections || (!proxy && mine >= self.limits.max_per_address)
        {
            return None;
        }
        *total += 1;
        by_ip.insert(ip, mine + 1);
        Some(Admitted {
            gate: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut g = self.gate.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Serve `app` on `listener` until `shutdown` fires, within `limits`; then stop accepting and
/// let the connections in flight finish their requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: Limits,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let request = Duration::from_secs(limits.request_secs.max(1));
    let app = app.layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(request, next.run(req)).await {
                Ok(r) => r,
                Err(_) => too_slow(),
            }
        },
    ));
    let trusted: Arc<[IpAddr]> = limits.trusted_proxies.clone().into();
    let header_secs = limits.header_secs;
    let gate = Arc::new(Gate {
        limits,
        open: Mutex::new((0, HashMap::new())),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut refused: u64 = 0;
    loop {
        let (stream, addr) = tokio::select! {
            _ = shutdown.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or another passing error): say so, and give
                    // the connections that hold them a moment to end, instead of spinning.
                    tracing::error!("web: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = gate.admit(addr.ip()) else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    %addr,
                    refused,
                    "web: connection refused over the connection limits"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let trusted = trusted.clone();
        let svc = tower::ServiceExt::map_request(app.clone(), move |mut req: Request<_>| {
            let client = client_of(addr, req.headers(), &trusted);
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(client));
            req
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(header_secs.max(1)))
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(svc),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, "web connection: {e}");
            }
            drop(admitted);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Where a request comes from: the connection's address, unless that is a trusted proxy;
/// then the right-most address of `X-Forwarded-For` that is not itself a trusted proxy (the
/// one the proxies saw; those left of it were written by the client and prove nothing).
pub fn client_of(
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[IpAddr],
) -> SocketAddr {
    if !trusted.contains(&peer.ip()) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else {
            return peer;
        };
        hops.extend(v.split(',').map(str::trim));
    }
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return SocketAddr::new(ip, peer.port()),
            // Garbage in the chain: nothing to its left can be trusted either.
            Err(_) => return peer,
        }
    }
    peer
}

fn too_slow() -> Response {
    (StatusCode::REQUEST_TIMEOUT, "请求太慢 / request too slow\n").into_response()
}

/// Raise this process's open-file limit to what the system allows it (a soft limit of 1,024 is
/// common; every connection, database file and child process takes one).
pub fn raise_file_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                let before = lim.rlim_cur;
                lim.rlim_cur = lim.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    tracing::info!(from = before, to = lim.rlim_cur, "open-file limit raised");
                }
            }
        }
    }
}
