//! The check-in page (`/r/{token}`): what a responsible person opens from their SMS on a
//! cheap phone over a weak link. Server-rendered, a few KB, no script; Chinese first with
//! English alongside. Four answers: 收到 acknowledge, 已到岗 at post (optional location),
//! 转移上报 people moved (running total, shelter, refusals), 需支援 need help.
//!
//! Security:
//! - the token is the key (128 random bits, one person and one warning version, expiring):
//!   unknown, malformed or expired tokens get nothing about anyone (404/410);
//! - every form carries a CSRF token, HMAC-SHA256 of the link token under a per-installation
//!   secret kept in the store; a POST without it, or from another origin, is refused (403);
//! - requests are rate-limited per client address and per token (governor; 429);
//! - pages say nothing about phone numbers, `no-store`, `same-origin` referrers (the token is
//!   in the URL: it never goes to another site; `no-referrer` would make Chromium send
//!   `Origin: null` with the page's own forms), a CSP that allows no script, no framing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;

use crate::dispatch::Policy;
use crate::dispatch::link;
use crate::registry::Shared;
use crate::respond::calls::RespondSettings;
use crate::respond::intake::{self, LinkAnswer};
use crate::store::Store;

/// What the check-in pages need.
#[derive(Clone)]
pub struct Checkin {
    store: Store,
    registry: Shared,
    settings: RespondSettings,
    policy: Policy,
    secret: Arc<[u8; 32]>,
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_token: Arc<DefaultKeyedRateLimiter<String>>,
    clock: Arc<dyn crate::runtime::clock::Clock>,
    /// Requests seen, to forget idle rate-limit keys now and then (guessed tokens must not
    /// grow the limiter without end).
    seen: Arc<std::sync::atomic::AtomicU64>,
}

/// Limits on requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per minute from one address (a village office behind one NAT sends many).
    pub per_ip_per_min: u32,
    /// Requests per minute on one token.
    pub per_token_per_min: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        // Mobile carriers put thousands of phones behind one address (carrier-grade NAT): the
        // per-address limit is only against floods; the token limit is the one that bites.
        Limits {
            per_ip_per_min: 20_000,
            per_token_per_min: 30,
        }
    }
}

impl Checkin {
    /// Set up (reading or making the CSRF secret in the store).
    pub async fn new(
        store: Store,
        registry: impl Into<Shared>,
        settings: RespondSettings,
        policy: Policy,
        limits: Limits,
        clock: Arc<dyn crate::runtime::clock::Clock>,
    ) -> anyhow::Result<Checkin> {
        let secret = super::secret(&store, "csrf").await?;
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Ok(Checkin {
            store,
            registry: registry.into(),
            settings,
            policy,
            secret: Arc::new(secret),
            per_ip: Arc::new(RateLimiter::keyed(q(limits.per_ip_per_min))),
            per_token: Arc::new(RateLimiter::keyed(q(limits.per_token_per_min))),
            clock,
            seen: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// The CSRF value of a link's forms (`None` only if HMAC refused the key, which it does
    /// not for any length). Public for load generators that post without fetching the page.
    pub fn csrf(&self, token: &str) -> Option<String> {
        Some(super::mac(&self.secret, "checkin", token)).filter(|m| !m.is_empty())
    }

    fn csrf_ok(&self, token: &str, given: &str) -> bool {
        self.csrf(token)
            .is_some_and(|want| super::same(&want, given))
    }
}

/// The routes: `/r/{token}`.
pub fn router(c: Checkin) -> Router {
    Router::new()
        .route("/r/{token}", get(page).post(answer))
        .with_state(c)
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    r
}

/// The one answer for a token that is not a link: malformed, unknown or gone alike.
fn no_such_link() -> Response {
    plain(StatusCode::NOT_FOUND, "没有这个链接 / no such link")
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A number beyond the place's registered figure, asked back on the page before it counts.
#[derive(Debug, Clone, serde::Serialize)]
struct Confirming {
    kind: String,
    people: u32,
    registered: u32,
    shelter: Option<String>,
    refused: Option<u32>,
    place: Option<String>,
}

impl Checkin {
    /// The registry these pages answer with.
    pub(crate) fn registry(&self) -> Shared {
        self.registry.clone()
    }

    /// What every request on a link passes first, the rate limits and then the token's
    /// shape: the answer to give instead, if it does not pass.
    fn refused(&self, ip: IpAddr, token: &str) -> Option<Response> {
        if self.limited(ip, token) {
            return Some(plain(
                StatusCode::TOO_MANY_REQUESTS,
                "请稍后再试 / too many requests",
            ));
        }
        (!link::well_formed(token)).then(no_such_link)
    }

    /// [`Checkin::refused`], then the link, or the answer to give instead.
    async fn open(&self, ip: IpAddr, token: &str) -> Result<link::Link, Response> {
        if let Some(r) = self.refused(ip, token) {
            return Err(r);
        }
        self.link(token).await
    }

    /// The person's page as it stands (their answers read from the store).
    async fn show(
        &self,
        l: &link::Link,
        done: bool,
        error: Option<&str>,
        expired: bool,
        confirm: Option<&Confirming>,
    ) -> Response {
        let (l2, reg) = (l.clone(), self.registry.current());
        match self
            .store
            .read(move |conn| intake::page_state(conn, &l2, &reg))
            .await
        {
            Ok(st) => self.render(l, &st, done, error, expired, confirm),
            Err(e) => {
                tracing::error!("check-in page state: {e}");
                plain(StatusCode::SERVICE_UNAVAILABLE, "请稍后再试 / try again")
            }
        }
    }

    /// The page of the link `token`, with `error` on it (a form that could not be read).
    async fn show_token(&self, token: &str, error: &str) -> Response {
        match self.link(token).await {
            Ok(l) => self.show(&l, false, Some(error), false, None).await,
            Err(r) => r,
        }
    }

    fn limited(&self, ip: IpAddr, token: &str) -> bool {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 10_000 == 9_999 {
            self.per_ip.retain_recent();
            self.per_token.retain_recent();
        }
        self.per_ip.check_key(&ip).is_err() || self.per_token.check_key(&token.to_string()).is_err()
    }

    /// The link of a token that passed [`Checkin::refused`].
    async fn link(&self, token: &str) -> Result<link::Link, Response> {
        let t = token.to_string();
        match self.store.read(move |c| link::lookup(c, &t)).await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(no_such_link()),
            Err(e) => {
                tracing::error!("check-in lookup: {e}");
                Err(plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "请稍后再试 / try again",
                ))
            }
        }
    }

    fn render(
        &self,
        l: &link::Link,
        st: &intake::PageState,
        done: bool,
        error: Option<&str>,
        expired: bool,
        confirm: Option<&Confirming>,
    ) -> Response {
        let lang = crate::templates::lang(&self.policy.lang);
        let w = st.words.clone().unwrap_or_default();
        let sep = if lang == "en" { ", " } else { "、" };
        let shelter_list: Vec<String> = w
            .shelters
            .split(sep)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let event = w.event(lang).unwrap_or_default();
        let ctx = minijinja::context! {
            office => &self.policy.office, exercise => self.policy.exercise,
            title => format!("{}{}预警", event, w.tier_zh), event => event, tier => &w.tier,
            tier_zh => &w.tier_zh, move => &w.move_, places => &w.places,
            more_places => &w.more_places, shelters => &w.shelters, shelter_list => shelter_list,
            name => &st.name, place => &st.place, call => &st.call, answered => &st.answered,
            moved => &st.moved, lifted => st.lifted, returned => st.returned, report_places => &st.places,
            csrf => self.csrf(&l.token).unwrap_or_default(), done => done, error => error,
            expired => expired, confirm => confirm.map(|c| minijinja::Value::from(minijinja::value::Serde(c))),
        };
        match crate::templates::env()
            .and_then(|e| Ok(e.get_template("web/checkin.zh-CN")?.render(ctx)?))
        {
            Ok(body) => html(
                if expired {
                    StatusCode::GONE
                } else {
                    StatusCode::OK
                },
                body,
            ),
            Err(e) => {
                tracing::error!("check-in page: {e:#}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "页面出错 / page error")
            }
        }
    }
}

async fn page(
    State(c): State<Checkin>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let l = match c.open(addr.ip(), &token).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let expired = c.clock.now() > l.expires;
    c.show(&l, q.contains_key("ok"), None, expired, None).await
}

async fn answer(
    State(c): State<Checkin>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    // The link is read in the answer's own write (below), not in a read before it: one trip
    // to the store per answer, not two (under a storm's load the hand-offs between threads
    // cost more than the lookup). The paths that show a page read it themselves.
    if let Some(r) = c.refused(addr.ip(), &token) {
        return r;
    }
    if super::foreign_origin(&headers)
        || !c.csrf_ok(&token, form.get("csrf").map_or("", String::as_str))
    {
        // No such link says so; a real link with a bad form is refused.
        if let Err(r) = c.link(&token).await {
            return r;
        }
        return plain(
            StatusCode::FORBIDDEN,
            "请从短信中的链接重新打开 / open the link from your SMS again",
        );
    }
    let now: Timestamp = c.clock.now();
    let num = |k: &str| -> Result<Option<u32>, ()> {
        match form.get(k).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => crate::respond::reply::number(s).map(Some).ok_or(()),
        }
    };
    let text = |k: &str| {
        form.get(k)
            .map(|s| s.trim().chars().take(200).collect::<String>())
            .filter(|s| !s.is_empty())
    };
    let kind = form.get("kind").cloned().unwrap_or_default();
    if !intake::LINK_KINDS.contains(&kind.as_str()) {
        return plain(StatusCode::BAD_REQUEST, "无法识别的操作 / unknown answer");
    }
    let (people, refused) = match (num("people"), num("refused")) {
        (Ok(p), Ok(r)) => (p, r),
        _ => return c.show_token(&token, "人数请填数字 / numbers only").await,
    };
    if (kind == "moved" || kind == "returned") && people.is_none() {
        return c
            .show_token(&token, "请填写已转移人数 / how many people moved?")
            .await;
    }
    let location = text("location").and_then(|s| {
        let (a, b) = s.split_once([',', '，', ' '])?;
        let (lat, lon) = (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?);
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
    });
    // The confirm step repeats the number it confirms: a confirmation of another number (a
    // stale page) is no confirmation.
    let confirmed = people.is_some() && num("confirm").ok().flatten() == people;
    let a = LinkAnswer {
        kind: kind.clone(),
        people,
        shelter: text("shelter"),
        refused,
        note: text("note"),
        location,
        confirmed,
        place: text("place"),
    };
    let (t, reg, s, p) = (
        token.clone(),
        c.registry.current(),
        c.settings.clone(),
        c.policy.clone(),
    );
    let answered = c
        .store
        .write(move |tx| {
            let Some(l) = link::lookup(tx, &t)? else {
                return Ok(Answered::NoLink);
            };
            if now > l.expires {
                return Ok(Answered::Expired(l));
            }
            let outcome = intake::from_link(tx, &l, &a, now, &reg, &s, &p)?;
            Ok(Answered::Taken(l, outcome))
        })
        .await;
    let (l, answered) = match answered {
        Ok(Answered::NoLink) => return no_such_link(),
        Ok(Answered::Expired(l)) => {
            return c.render(&l, &intake::PageState::default(), false, None, true, None);
        }
        Ok(Answered::Taken(l, outcome)) => (l, outcome),
        // The answer was understood; it could not be kept now. Never tell a lead their
        // answer was not understood because the database was busy.
        Err(e) => {
            tracing::error!("check-in answer not stored: {e:#}");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "暂时无法保存，请稍后再点一次 / not saved, please try again in a moment",
            );
        }
    };
    match answered {
        intake::LinkOutcome::Recorded(_) | intake::LinkOutcome::Repeat => {
            Redirect::to(&format!("/r/{}?ok=1", l.token)).into_response()
        }
        intake::LinkOutcome::Confirm { people, registered } => {
            let ask = Confirming {
                kind,
                people,
                registered,
                shelter: text("shelter"),
                refused,
                place: text("place"),
            };
            c.show(&l, false, None, false, Some(&ask)).await
        }
        intake::LinkOutcome::NotLifted => {
            c.show(
                &l,
                false,
                Some("预警尚未解除，群众请勿返回；已返回人数暂未计入，解除后再报 / not lifted yet: people back home are not counted before the lift"),
                false,
                None,
            )
            .await
        }
        intake::LinkOutcome::Which(_) => {
            c.show(
                &l,
                false,
                Some("请选择报告的是哪个村（未计入）/ choose the place you report for (not counted)"),
                false,
                None,
            )
            .await
        }
        intake::LinkOutcome::Lifted => {
            c.show(
                &l,
                false,
                Some("该预警已解除，只能报告已返回人数 / the warning is lifted: only people back home can be reported"),
                false,
                None,
            )
            .await
        }
    }
}

/// What the answer's write found.
enum Answered {
    /// No link has that token.
    NoLink,
    /// The link has expired: nothing recorded.
    Expired(link::Link),
    /// Recorded (or understood): the link and what came of it.
    Taken(link::Link, intake::LinkOutcome),
}
