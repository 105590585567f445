//! The duty office's view (一图一表): one map and one table of every warning in force, village
//! by village, live; a JSON API and a CSV export of the same board (`respond::board`).
//!
//! Routes (all but sign-in need a session):
//! - `GET /office` — the page; `?filter=silent` (silent or still waiting) or `?filter=unmoved`;
//!   `?county=331098` one county's places, `?county=summary` the lines by county (what an
//!   office over several counties sees first), `?county=all` everything;
//!   `GET /office/board` — the page's board part alone, which the page's script swaps in when
//!   `GET /office/events` (server-sent events) says the board changed. Without script the page
//!   refreshes itself every 30 s.
//! - `GET|POST /office/login`, `POST /office/logout` — forms with CSRF values.
//! - `GET /api/v1/board` (JSON), `GET /api/v1/board.csv`; `POST /api/v1/session` with a JSON
//!   body `{"user":…,"password":…}` returns a bearer token for scripts. Documented in
//!   `docs/api.md`.
//!
//! Security: argon2id passwords and hashed session ids (`auth.rs`); sign-in rate-limited per
//! address, per (name, address) and, higher, per name; the login form's CSRF value is bound to a pre-session cookie, every
//! signed-in form's to the session; `SameSite=Strict`, `HttpOnly` cookies; pages are
//! `no-store`, framed by nobody, and run only the page's own script (CSP).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::auth::{self, Session};
use crate::registry::{Registry, Shared};
use crate::respond::board::{self, Board, Filter, Scope};
use crate::store::Store;

const SESSION_COOKIE: &str = "sb_session";
const PRE_COOKIE: &str = "sb_pre";

/// What the office pages need.
#[derive(Clone)]
pub struct Office {
    store: Store,
    registry: Shared,
    tz: jiff::tz::TimeZone,
    title: String,
    secure: bool,
    secret: Arc<[u8; 32]>,
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_pair: Arc<DefaultKeyedRateLimiter<(String, IpAddr)>>,
    per_user: Arc<DefaultKeyedRateLimiter<String>>,
    /// The base maps drawn for the registry they were drawn from (redrawn when a new import
    /// is in force): the whole registry's (key "") and each county's asked for (its code).
    map: Arc<std::sync::Mutex<(Arc<Registry>, Maps)>>,
    /// Board reads in progress, shared by the requests for the same part that queue behind
    /// them (every open page asks at once after a change).
    reads: Arc<super::shared_read::SharedReads<Board>>,
    changes: tokio::sync::watch::Receiver<u64>,
    /// Turns true when the server begins to shut down: live streams end then, or the
    /// graceful shutdown would wait on them for ever.
    closing: Option<crate::runtime::Shutdown>,
    /// The run's clock: the board says "as of" on it (a drill's simulated time in a drill).
    clock: Option<(Arc<dyn crate::runtime::clock::Clock>, bool)>,
}

/// Base maps by county code ("" for the whole registry).
type Maps = HashMap<String, Arc<super::map::BaseMap>>;

/// How often the board is re-read for live pages (only while somebody is watching).
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

impl Office {
    /// Set up: the form secret from the store, the county's base map drawn once, and the
    /// watcher that tells live pages when the board changed (it stops when the server does).
    /// `base` is the public URL: an `https` one makes the cookies `Secure`.
    pub async fn new(
        store: Store,
        registry: impl Into<Shared>,
        tz: jiff::tz::TimeZone,
        title: &str,
        base: &str,
    ) -> anyhow::Result<Office> {
        let registry: Shared = registry.into();
        let reg = registry.current();
        let secret = super::secret(&store, "office").await?;
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        let (tx, changes) = tokio::sync::watch::channel(0u64);
        let office = Office {
            map: Arc::new(std::sync::Mutex::new((reg.clone(), Maps::new()))),
            reads: Arc::default(),
            store,
            registry,
            tz,
            title: title.to_string(),
            secure: base.starts_with("https://"),
            secret: Arc::new(secret),
            // Sign-in: a whole office behind one address may sign in at shift change, but
            // nobody guesses passwords at speed. Guesses at one name from one address are
            // bound by the pair, so a stranger elsewhere cannot use up the name's own, higher
            // bound (which holds guesses spread over many addresses) and lock the officer out.
            per_ip: Arc::new(RateLimiter::keyed(q(60))),
            per_pair: Arc::new(RateLimiter::keyed(q(10))),
            per_user: Arc::new(RateLimiter::keyed(q(30))),
            changes,
            closing: None,
            clock: None,
        };
        tokio::spawn(watch(office.clone_for_watch(), tx));
        Ok(office)
    }

    /// End the live streams when `closing` fires (`web::serve` does this with its
    /// shutdown).
    pub fn closing_on(mut self, closing: crate::runtime::Shutdown) -> Office {
        self.closing = Some(closing);
        self
    }

    /// The registry the pages read with.
    pub(crate) fn registry(&self) -> Shared {
        self.registry.clone()
    }

    /// Read the board on `clock` (`drill`: a drill's simulated clock, named as such on the
    /// page) instead of the wall clock.
    pub fn on_clock(mut self, clock: Arc<dyn crate::runtime::clock::Clock>, drill: bool) -> Office {
        self.clock = Some((clock, drill));
        self
    }

    /// The moment the board is read at.
    fn asof(&self) -> board::AsOf {
        match &self.clock {
            Some((c, drill)) => board::AsOf {
                now: c.now(),
                drill: *drill,
            },
            None => board::AsOf::wall(),
        }
    }

    /// The parts the watcher needs, without a receiver of its own (so the watcher ends when
    /// the last page's receiver is gone).
    fn clone_for_watch(&self) -> Watched {
        Watched {
            store: self.store.clone(),
            reg: self.registry.clone(),
            tz: self.tz.clone(),
            per_ip: self.per_ip.clone(),
            per_pair: self.per_pair.clone(),
            per_user: self.per_user.clone(),
        }
    }

    /// The base map of the registry in force (drawn again after a new import), or of one
    /// of its counties, drawn once.
    fn base_map(&self, county: Option<&str>) -> Arc<super::map::BaseMap> {
        let reg = self.registry.current();
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&m.0, &reg) {
            *m = (reg.clone(), Maps::new());
        }
        m.1.entry(county.unwrap_or_default().to_string())
            .or_insert_with(|| Arc::new(super::map::BaseMap::of(&reg, county)))
            .clone()
    }

    /// The whole office page for a board, as served (public for the benchmark, which times
    /// reading the board and this). `county` is the query's value, kept in the page's links.
    pub fn page_html(
        &self,
        s: &Session,
        b: &Board,
        filter: &str,
        county: &str,
    ) -> anyhow::Result<String> {
        let part = self.board_html(b, filter, county)?;
        Ok(crate::templates::env()?
            .get_template("web/office.zh-CN")?
            .render(minijinja::context! {
                title => &self.title, user => &s.user, csrf => self.csrf(s), filter => filter,
                county => county, board_html => minijinja::Value::from_safe_string(part),
            })?)
    }

    /// The board's part of the page: what the page holds, and what a live page fetches again.
    fn board_html(&self, b: &Board, filter: &str, county: &str) -> anyhow::Result<String> {
        Ok(crate::templates::env()?
            .get_template("web/office_board.zh-CN")?
            .render(board_context(self, b, filter, county))?)
    }

    /// Read the board: `scope`, or the office's default (the whole board for one county,
    /// the summary for several). Requests for the same part that arrive while it is being
    /// read share the next read ([`super::shared_read`]). Public for the benchmark.
    pub async fn board(&self, filter: Filter, scope: Option<Scope>) -> anyhow::Result<Arc<Board>> {
        let scope = scope.unwrap_or_else(|| Scope::default_for(&self.registry.current()));
        let key = format!("{}|{}", filter.as_str(), scope.as_str());
        self.reads
            .get(key, || async move {
                // The registry and the time as the read begins: after every request sharing
                // it arrived.
                let (reg, tz, asof) = (self.registry.current(), self.tz.clone(), self.asof());
                Ok(self
                    .store
                    .read(move |c| board::read_scoped(c, &reg, &tz, filter, &scope, asof))
                    .await?)
            })
            .await
    }

    /// The session of a request: the cookie, or for scripts an `Authorization: Bearer` token.
    async fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let token = cookie(headers, SESSION_COOKIE).or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|v| v.trim().to_string())
        })?;
        let now = jiff::Timestamp::now();
        match self
            .store
            .read(move |c| auth::session(c, &token, now))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("office session lookup: {e}");
                None
            }
        }
    }

    fn csrf(&self, session: &Session) -> String {
        super::mac(&self.secret, "office", &session.id)
    }

    fn cookie(&self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// What the watcher holds.
struct Watched {
    store: Store,
    reg: Shared,
    tz: jiff::tz::TimeZone,
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_pair: Arc<DefaultKeyedRateLimiter<(String, IpAddr)>>,
    per_user: Arc<DefaultKeyedRateLimiter<String>>,
}

async fn watch(w: Watched, tx: tokio::sync::watch::Sender<u64>) {
    let Watched {
        store,
        reg,
        tz,
        per_ip,
        per_pair,
        per_user,
    } = w;
    let mut last = 0u64;
    // Everything the board shows changes with an audit entry (sends, receipts, answers,
    // steps, decisions, plays): the board is reread only when the trail has grown.
    let mut seen_head: Option<i64> = None;
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        // Names sprayed at the sign-in form must not grow the limiters without end.
        per_ip.retain_recent();
        per_pair.retain_recent();
        per_user.retain_recent();
        // The office's own receiver is one; read the board only when a page is listening.
        if tx.receiver_count() <= 1 {
            continue;
        }
        let head = match store
            .read(|c| Ok(crate::store::audit::head(c)?.map(|h| h.0)))
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("office board: {e}");
                continue;
            }
        };
        if seen_head.is_some() && seen_head == head {
            continue;
        }
        let (reg, tz) = (reg.current(), tz.clone());
        // An office over several counties: its pages show different parts (the summary, a
        // county), and reading the whole board of a province every two seconds would load
        // the store for nothing. Every change to the trail tells the pages to look again.
        if Scope::default_for(&reg) != Scope::All {
            seen_head = head;
            let d = head.map_or(0, |h| h as u64);
            if d != last {
                last = d;
                let _ = tx.send(d);
            }
            continue;
        }
        match store
            .read(move |c| board::read(c, &reg, &tz, Filter::All, board::AsOf::wall()))
            .await
        {
            Ok(b) => {
                seen_head = head;
                let d = b.digest();
                if d != last {
                    last = d;
                    let _ = tx.send(d);
                }
            }
            Err(e) => tracing::warn!("office board: {e}"),
        }
    }
}

/// The routes.
pub fn router(o: Office) -> Router {
    Router::new()
        .route("/office", get(page))
        .route("/office/board", get(fragment))
        .route("/office/events", get(events))
        .route("/office/app.js", get(script))
        .route("/office/login", get(login_page).post(login))
        .route("/office/logout", post(logout))
        .route("/api/v1/board", get(api_board))
        .route("/api/v1/board.csv", get(api_csv))
        .route("/api/v1/session", post(api_session))
        .with_state(o)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn secure_headers(r: &mut Response, content_type: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    secure_headers(&mut r, "text/html; charset=utf-8");
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    secure_headers(&mut r, "text/plain; charset=utf-8");
    r
}

fn render(name: &str, ctx: minijinja::Value) -> Response {
    made(
        name,
        crate::templates::env().and_then(|e| Ok(e.get_template(name)?.render(ctx)?)),
    )
}

/// A page that was made (200), or a 500 that names nothing (the error logged as `what`'s).
fn made(what: &str, body: anyhow::Result<String>) -> Response {
    match body {
        Ok(body) => html(StatusCode::OK, body),
        Err(e) => {
            tracing::error!("{what}: {e:#}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "页面出错 / page error")
        }
    }
}

/// The board's template context.
fn board_context(o: &Office, b: &Board, filter: &str, county: &str) -> minijinja::Value {
    // A summary over several counties has no places to mark: no map (a province's base
    // is a hundred thousand villages); one county's is drawn to its own villages.
    let svg = match b.scope {
        "summary" => String::new(),
        _ => o.base_map(b.county.as_ref().map(|c| c.0.as_str())).draw(b),
    };
    minijinja::context! {
        board => minijinja::Value::from(minijinja::value::Serde(b)), filter => filter,
        county => county, map => minijinja::Value::from_safe_string(svg),
    }
}

/// What a page or API request asks for: the filter and the scope, as parsed, and their
/// query values as given (kept in the page's links; an unknown one is dropped).
fn asked(q: &HashMap<String, String>) -> (Filter, &str, Option<Scope>, &str) {
    let filter = q.get("filter").map(String::as_str).unwrap_or("");
    let county = q.get("county").map(String::as_str).unwrap_or("");
    let scope = Scope::parse(county);
    let f = Filter::parse(filter);
    (
        f,
        f.as_str(),
        scope.clone(),
        if scope.is_some() { county } else { "" },
    )
}

async fn page(
    State(o): State<Office>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(s) = o.session(&headers).await else {
        return Redirect::to("/office/login").into_response();
    };
    board_page(o, &q, "office page", move |o, b, filter, county| {
        o.page_html(&s, b, filter, county)
    })
    .await
}

async fn fragment(
    State(o): State<Office>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if o.session(&headers).await.is_none() {
        return plain(StatusCode::UNAUTHORIZED, "请登录 / sign in");
    }
    board_page(o, &q, "office board part", |o, b, filter, county| {
        o.board_html(b, filter, county)
    })
    .await
}

/// The board a request asks for (its filter and scope), made into HTML by `make` off the
/// async workers (`make` gets the filter and county as the page's links keep them); a 503
/// when the store cannot be read, a 500 when the page cannot be made.
async fn board_page(
    o: Office,
    q: &HashMap<String, String>,
    what: &'static str,
    make: impl FnOnce(&Office, &Board, &str, &str) -> anyhow::Result<String> + Send + 'static,
) -> Response {
    let (f, filter, scope, county) = asked(q);
    let b = match o.board(f, scope).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("office board: {e:#}");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "请稍后再试 / try again");
        }
    };
    let (filter, county) = (filter.to_string(), county.to_string());
    made(
        what,
        off_workers(move || make(&o, &b, &filter, &county)).await,
    )
}

/// Run `make` off the async workers: drawing a county's map, rendering a page or writing a
/// board out as JSON or CSV is a second of CPU for a province's whole board, which would
/// hold up every other request on that worker meanwhile.
async fn off_workers<T: Send + 'static>(
    make: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(make)
        .await
        .map_err(|e| anyhow::anyhow!("the page's work stopped: {e}"))?
}

/// Resolves when `closing` fires; never, when nobody can close it (an office not served by
/// `web::serve`).
async fn until_closing(closing: &mut Option<crate::runtime::Shutdown>) {
    match closing {
        Some(c) => c.recv().await,
        None => std::future::pending::<()>().await,
    }
}

/// Server-sent events: `board` with the board's digest each time it changes (and once on
/// connecting), a comment every 15 s so proxies keep the stream open.
async fn events(State(o): State<Office>, headers: HeaderMap) -> Response {
    if o.session(&headers).await.is_none() {
        return plain(StatusCode::UNAUTHORIZED, "请登录 / sign in");
    }
    let mut rx = o.changes.clone();
    rx.mark_changed();
    let stream = futures_util::stream::unfold(
        (rx, o.closing.clone()),
        |(mut rx, mut closing)| async move {
            tokio::select! {
                changed = rx.changed() => changed.ok()?,
                _ = until_closing(&mut closing) => return None,
            }
            let d = *rx.borrow_and_update();
            Some((
                Ok::<_, Infallible>(Event::default().event("board").data(format!("{d:x}"))),
                (rx, closing),
            ))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn script() -> Response {
    let mut r = include_str!("office.js").into_response();
    secure_headers(&mut r, "text/javascript; charset=utf-8");
    r
}

async fn login_page(State(o): State<Office>, headers: HeaderMap) -> Response {
    login_form(&o, &headers, None, StatusCode::OK)
}

/// The sign-in form, with a pre-session cookie its CSRF value is bound to.
fn login_form(
    o: &Office,
    headers: &HeaderMap,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let pre = cookie(headers, PRE_COOKIE)
        .filter(|v| v.len() == 22)
        .or_else(|| {
            let mut b = [0u8; 16];
            getrandom::getrandom(&mut b).ok()?;
            Some(base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                b,
            ))
        });
    let Some(pre) = pre else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "请稍后再试 / try again");
    };
    let mut r = render(
        "web/office_login.zh-CN",
        minijinja::context! {
            title => &o.title, csrf => super::mac(&o.secret, "login", &pre), error => error,
        },
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::SET_COOKIE, o.cookie(PRE_COOKIE, &pre, 3600));
    r
}

/// Check a name and password: rate limits, then argon2 off the async threads; the attempt is
/// written to the audit trail either way. `Ok(session cookie)` or the status to answer.
async fn sign_in(
    o: &Office,
    ip: IpAddr,
    user: &str,
    password: &str,
    via: &'static str,
) -> Result<String, StatusCode> {
    // What a stranger posts bounds the work: names are at most 64 characters (longer ones
    // exist nowhere, and keyed the limiter by megabytes), passwords at most 1 KB of hashing.
    let user: String = user.trim().chars().take(65).collect();
    // In this order: what the pair has used up never reaches the name's bound.
    if o.per_ip.check_key(&ip).is_err()
        || o.per_pair.check_key(&(user.clone(), ip)).is_err()
        || o.per_user.check_key(&user).is_err()
    {
        return Err(StatusCode::TOO_MANY_REQUESTS);
    }
    let password = if user.chars().count() > 64 || password.len() > 1024 {
        ""
    } else {
        password
    };
    let u = user.clone();
    let stored = o
        .store
        .read(move |c| auth::credentials(c, &u))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let pw = password.to_string();
    let role = tokio::task::spawn_blocking(move || auth::check(stored, &pw))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let now = jiff::Timestamp::now();
    let ok = role.is_some();
    let (u, tz) = (user.clone(), o.tz.clone());
    let result = o
        .store
        .write(move |tx| {
            let cookie = if ok {
                Some(auth::start(tx, &u, now)?)
            } else {
                None
            };
            crate::store::audit::append(
                tx,
                &crate::store::audit::Entry {
                    at: now.to_zoned(tz),
                    actor: format!("officer:{u}"),
                    kind: if ok {
                        "office.signed_in".into()
                    } else {
                        "office.sign_in_refused".into()
                    },
                    subject: u.clone(),
                    detail: serde_json::json!({ "address": ip.to_string(), "via": via }),
                },
            )?;
            Ok::<_, anyhow::Error>(cookie)
        })
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    result.ok_or(StatusCode::UNAUTHORIZED)
}

async fn login(
    State(o): State<Office>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let pre = cookie(&headers, PRE_COOKIE).unwrap_or_default();
    if super::foreign_origin(&headers)
        || pre.is_empty()
        || !super::same(&super::mac(&o.secret, "login", &pre), field("csrf"))
    {
        return login_form(
            &o,
            &headers,
            Some("表单已过期，请重新登录 / the form expired, sign in again"),
            StatusCode::FORBIDDEN,
        );
    }
    match sign_in(&o, addr.ip(), field("user"), field("password"), "form").await {
        Ok(session) => {
            let mut r = Redirect::to("/office").into_response();
            r.headers_mut().append(
                header::SET_COOKIE,
                o.cookie(SESSION_COOKIE, &session, auth::SESSION_HOURS * 3600),
            );
            r.headers_mut()
                .append(header::SET_COOKIE, o.cookie(PRE_COOKIE, "", 0));
            r
        }
        Err(StatusCode::TOO_MANY_REQUESTS) => login_form(
            &o,
            &headers,
            Some("尝试次数过多，请一分钟后再试 / too many tries, wait a minute"),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(StatusCode::UNAUTHORIZED) => login_form(
            &o,
            &headers,
            Some("用户名或密码错误 / wrong name or password"),
            StatusCode::UNAUTHORIZED,
        ),
        Err(s) => plain(s, "请稍后再试 / try again"),
    }
}

async fn logout(
    State(o): State<Office>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(s) = o.session(&headers).await else {
        return Redirect::to("/office/login").into_response();
    };
    if super::foreign_origin(&headers)
        || !super::same(
            &o.csrf(&s),
            form.get("csrf").map(String::as_str).unwrap_or(""),
        )
    {
        return plain(
            StatusCode::FORBIDDEN,
            "请刷新页面后重试 / reload and try again",
        );
    }
    let id = s.id.clone();
    let now = jiff::Timestamp::now();
    if let Err(e) = o.store.write(move |tx| auth::end(tx, &id, now)).await {
        tracing::error!("sign out: {e}");
    }
    let mut r = Redirect::to("/office/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, o.cookie(SESSION_COOKIE, "", 0));
    r
}

/// The board for the API, or the answer to give instead (no session: 401; store trouble: 503).
async fn api_read(
    o: &Office,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Arc<Board>, Response> {
    if o.session(headers).await.is_none() {
        return Err(plain(
            StatusCode::UNAUTHORIZED,
            "sign in: POST /api/v1/session\n",
        ));
    }
    let (filter, _, scope, _) = asked(q);
    o.board(filter, scope).await.map_err(|e| {
        tracing::error!("office board: {e:#}");
        plain(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
    })
}

async fn api_board(
    State(o): State<Office>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match api_read(&o, &headers, &q).await {
        Ok(b) => typed(
            off_workers(move || Ok(serde_json::to_string(&*b)?)).await,
            "application/json",
            None,
        ),
        Err(r) => r,
    }
}

async fn api_csv(
    State(o): State<Office>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match api_read(&o, &headers, &q).await {
        Ok(b) => typed(
            off_workers(move || board::csv(&b)).await,
            "text/csv; charset=utf-8",
            Some("attachment; filename=\"board.csv\""),
        ),
        Err(r) => r,
    }
}

/// A body of the given type (with the pages' security headers), or a 500 naming nothing.
fn typed(
    body: anyhow::Result<String>,
    content_type: &'static str,
    disposition: Option<&'static str>,
) -> Response {
    match body {
        Ok(body) => {
            let mut r = body.into_response();
            secure_headers(&mut r, content_type);
            if let Some(d) = disposition {
                r.headers_mut()
                    .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(d));
            }
            r
        }
        Err(e) => {
            tracing::error!("office API ({content_type}): {e:#}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "error\n")
        }
    }
}

/// `POST /api/v1/session` with `{"user": …, "password": …}` as `application/json` (a type no
/// plain HTML form can send, so another site cannot make a browser do it).
async fn api_session(
    State(o): State<Office>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !json_type {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: application/json\n",
        );
    }
    #[derive(serde::Deserialize)]
    struct Req {
        user: String,
        password: String,
    }
    let Ok(req) = serde_json::from_slice::<Req>(&body) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "expected {\"user\": \"…\", \"password\": \"…\"}\n",
        );
    };
    match sign_in(&o, addr.ip(), &req.user, &req.password, "api").await {
        Ok(token) => typed(
            Ok(serde_json::json!({
                "token": token,
                "expires_in": auth::SESSION_HOURS * 3600,
            })
            .to_string()),
            "application/json",
            None,
        ),
        Err(StatusCode::UNAUTHORIZED) => {
            plain(StatusCode::UNAUTHORIZED, "wrong name or password\n")
        }
        Err(StatusCode::TOO_MANY_REQUESTS) => {
            plain(StatusCode::TOO_MANY_REQUESTS, "too many tries\n")
        }
        Err(s) => plain(s, "try again\n"),
    }
}
