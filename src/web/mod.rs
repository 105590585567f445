//! The daemon's HTTP face (axum): the CAP Atom feed of the warnings in force
//! (`/cap/feed.atom`) and each alert (`/cap/{identifier}.xml`), the same written as files to a
//! directory, the personal check-in pages (`/r/{token}`, `checkin.rs`), and the duty office's
//! page, API and CSV (`office.rs`, signed in through `auth.rs`, its map drawn by `map.rs`).
//! `/metrics` (`metrics.rs`) gives the daemon's figures to Prometheus.
//!
//! Restricted warnings (officials only) are never published here.

pub(crate) mod atom;
pub mod auth;
pub mod checkin;

pub(crate) mod map;
pub mod metrics;
pub mod office;
mod shared_read;

use std::path::Path;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::correlate::store::{self as cstore, StoredWarning};
use crate::store::{Store, StoreError};

/// What the web stage needs to know.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Feed title (the office's name).
    pub title: String,
    /// CAP sender of the office.
    pub sender: String,
    /// Public base URL.
    pub base: String,
}

#[derive(Clone)]
struct App {
    store: Store,
    settings: WebSettings,
    /// The registry in force, for the evacuation figures of `/metrics` (none: not exported).
    registry: Option<crate::registry::Shared>,
    /// Where `/metrics` last left the audit chain verified.
    chain: std::sync::Arc<metrics::ChainWatch>,
}

/// The routes.
pub fn router(store: Store, settings: WebSettings) -> Router {
    router_with(store, settings, None)
}

/// The routes, `/metrics` with the ledger's figures read against `registry`.
pub fn router_with(
    store: Store,
    settings: WebSettings,
    registry: Option<crate::registry::Shared>,
) -> Router {
    Router::new()
        .route("/cap/feed.atom", get(feed))
        .route("/cap/{file}", get(alert))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .with_state(App {
            store,
            settings,
            registry,
            chain: Default::default(),
        })
}

/// The current public warnings, newest first.
pub fn current_public(
    conn: &crate::store::sql::Conn<'_>,
) -> crate::store::sql::Result<Vec<StoredWarning>> {
    Ok(cstore::current(conn)?
        .into_iter()
        .filter(|w| !w.restricted)
        .collect())
}

/// The feed document.
pub fn feed_document(settings: &WebSettings, entries: &[StoredWarning]) -> String {
    let updated = entries
        .iter()
        .map(|w| w.sent.clone())
        .max()
        .unwrap_or_else(|| "1970-01-01T00:00:00+00:00".into());
    atom::feed(
        &settings.title,
        &settings.sender,
        &settings.base,
        &updated,
        entries,
    )
}

/// A per-installation secret named `name` (32 random bytes), made at first use and kept in the
/// store, so forms opened before a restart can still be sent. Keys the CSRF values.
pub(crate) async fn secret(store: &Store, name: &'static str) -> anyhow::Result<[u8; 32]> {
    store
        .write(move |tx| {
            let found: Option<Vec<u8>> =
                crate::store::sql::OptionalExtension::optional(tx.query_row(
                    "SELECT value FROM web_secret WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                ))?;
            let v = match found {
                Some(v) if v.len() == 32 => v,
                _ => {
                    let mut b = [0u8; 32];
                    getrandom::getrandom(&mut b)
                        .map_err(|e| anyhow::anyhow!("no randomness for the {name} secret: {e}"))?;
                    tx.execute(
                        "INSERT INTO web_secret (name, value) VALUES (?1, ?2)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        rusqlite::params![name, b.to_vec()],
                    )?;
                    b.to_vec()
                }
            };
            let mut out = [0u8; 32];
            out.copy_from_slice(&v);
            Ok::<_, anyhow::Error>(out)
        })
        .await
        .map_err(Into::into)
}

/// HMAC-SHA256 of `purpose` and `value` under `secret`, 128 bits in base64url: a form's CSRF
/// value, bound to what the form is for.
pub(crate) fn mac(secret: &[u8; 32], purpose: &str, value: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let Ok(mut m) = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&secret[..]) else {
        return String::new();
    };
    m.update(purpose.as_bytes());
    m.update(b":");
    m.update(value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&m.finalize().into_bytes()[..16])
}

/// Compare two secrets in time that does not depend on where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    !a.is_empty()
        && a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a form's `Origin` header names a host other than the one the request was addressed
/// to (a cross-site POST). No header, or `null` (what browsers send from privacy modes and
/// under strict referrer policies), is not taken as foreign: the form's CSRF value, which no
/// other site can know, is what decides; this check only adds to it.
pub(crate) fn foreign_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()),
        host,
    ) {
        (Some("null"), _) | (None, _) => false,
        (Some(origin), Some(host)) => origin.split("://").nth(1).unwrap_or(origin) != host,
        (Some(_), None) => true,
    }
}

async fn metrics_page(State(app): State<App>) -> Response {
    let reg = app.registry.as_ref().map(|r| r.current());
    let (chain, db) = (app.chain.clone(), app.store.path().to_path_buf());
    match app
        .store
        .read(move |c| {
            let mut body = metrics::render(c, reg.as_deref())?;
            body.push_str(&metrics::render_upkeep(
                c,
                &chain,
                &db,
                jiff::Timestamp::now(),
            )?);
            Ok(body)
        })
        .await
    {
        Ok(body) => {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (h, body).into_response()
        }
        Err(e) => failure(e),
    }
}

/// For the supervisor, the proxy and the monitoring: 200 when the database reads and its one
/// writer takes a job within five seconds (a writer stuck behind a full disk or a lock is the
/// failure that silences everything else), 503 saying which otherwise.
async fn healthz(State(app): State<App>) -> Response {
    let read = app
        .store
        .read(|c| Ok(crate::store::backup::schema_version(c)?))
        .await;
    let schema = match read {
        Ok(v) => v,
        Err(e) => return failure(e),
    };
    let write = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.store.write(|_| Ok(())),
    )
    .await;
    match write {
        Ok(Ok(())) => {
            let mut h = HeaderMap::new();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (h, format!("ok\nschema {schema}\n")).into_response()
        }
        Ok(Err(e)) => failure(e),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store writer has not answered in 5 s\n",
        )
            .into_response(),
    }
}

fn failure(e: StoreError) -> Response {
    tracing::error!("web: {e}");
    (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
}

async fn feed(State(app): State<App>) -> Response {
    match app.store.read(|c| Ok(current_public(c)?)).await {
        Ok(entries) => {
            let body = feed_document(&app.settings, &entries);
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/atom+xml; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            (h, body).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn alert(State(app): State<App>, UrlPath(file): UrlPath<String>) -> Response {
    let Some(identifier) = file.strip_suffix(".xml").map(str::to_string) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    match app
        .store
        .read(move |c| Ok(cstore::by_identifier(c, &identifier)?))
        .await
    {
        Ok(Some(w)) if !w.restricted => {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/cap+xml; charset=utf-8"),
            );
            // An issued message never changes.
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400, immutable"),
            );
            (h, w.cap).into_response()
        }
        Ok(_) => (StatusCode::NOT_FOUND, "no such alert\n").into_response(),
        Err(e) => failure(e),
    }
}

/// Write the feed and every public alert not yet written to `dir`, each atomically (a
/// temporary file renamed into place), so a web server never serves half a file.
pub fn publish_files(
    conn: &crate::store::sql::Conn<'_>,
    dir: &Path,
    settings: &WebSettings,
) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let entries = current_public(conn)?;
    let mut written = 0;
    let mut after = 0;
    loop {
        let batch = cstore::issued_since(conn, after, 500)?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        for w in batch.iter().filter(|w| !w.restricted) {
            let path = dir.join(format!("{}.xml", w.identifier));
            if !path.exists() {
                write_atomically(&path, w.cap.as_bytes())?;
                written += 1;
            }
        }
    }
    write_atomically(
        &dir.join("feed.atom"),
        feed_document(settings, &entries).as_bytes(),
    )?;
    Ok(written)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Serve until `shutdown` fires: the CAP feed, and the check-in and office pages when given,
/// within the default [`crate::runtime::listen::Limits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    settings: WebSettings,
    checkin: Option<checkin::Checkin>,
    office: Option<office::Office>,
    shutdown: crate::runtime::Shutdown,
) -> std::io::Result<()> {
    serve_limited(
        listener,
        store,
        settings,
        checkin,
        office,
        crate::runtime::listen::Limits::default(),
        shutdown,
    )
    .await
}

/// [`serve`] within `limits` (`[web.limits]`).
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    store: Store,
    settings: WebSettings,
    checkin: Option<checkin::Checkin>,
    office: Option<office::Office>,
    limits: crate::runtime::listen::Limits,
    shutdown: crate::runtime::Shutdown,
) -> std::io::Result<()> {
    let registry = checkin
        .as_ref()
        .map(checkin::Checkin::registry)
        .or_else(|| office.as_ref().map(office::Office::registry));
    let mut app = router_with(store, settings, registry);
    if let Some(c) = checkin {
        app = app.merge(checkin::router(c));
    }
    // Live office pages hold their connections open: they are told to end when shutdown
    // begins, so the graceful shutdown does not wait on them for ever.
    if let Some(o) = office {
        app = app.merge(office::router(o.closing_on(shutdown.clone())));
    }
    // Every answer says what it is and may not be read as anything else.
    let app = app.layer(axum::middleware::map_response(
        |mut r: axum::response::Response| async move {
            r.headers_mut()
                .entry(header::X_CONTENT_TYPE_OPTIONS)
                .or_insert(HeaderValue::from_static("nosniff"));
            r
        },
    ));
    crate::runtime::listen::serve(listener, app, limits, shutdown).await
}
