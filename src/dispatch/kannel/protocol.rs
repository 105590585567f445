//! Kannel's HTTP interface: one `sendsms` GET per message, and the delivery-report callback.
//!
//! Each message is one GET to `sendsms` with the text in UTF-8 (`charset=UTF-8&coding=2`: the
//! gateway encodes UCS-2 and splits into concatenated parts itself), asking for delivery
//! reports (`dlr-mask=3`: delivered and failed) on a URL of our own that carries the outbox
//! row id. The gateway answers 202 "Accepted for delivery" (queued at the gateway), and later
//! calls the DLR URL; that is matched to the row like an SMPP receipt. A gateway that does
//! not answer, or answers 5xx, leaves the message for a later attempt; 4xx fails it with the
//! gateway's words.

use std::sync::Arc;

use axum::extract::{Query, State};
use jiff::SignedDuration;
use serde::Deserialize;

use super::settings::KannelSettings;
use crate::dispatch::outbox::{self, Claimed, Outcome};
use crate::runtime::Clock;
use crate::store::Store;

/// The account name outbox rows sent this way carry.
pub const ACCOUNT: &str = "kannel";

/// The name of the secret delivery reports carry (`outbox::secret`).
pub(super) const SECRET: &str = "kannel-dlr";

/// What the report listener holds.
#[derive(Clone)]
struct Dlrs {
    store: Store,
    clock: Arc<dyn Clock>,
    secret: Arc<str>,
}

/// The delivery-report listener's routes.
pub(super) fn router(store: Store, clock: Arc<dyn Clock>, secret: Arc<str>) -> axum::Router {
    axum::Router::new()
        .route("/kannel/dlr", axum::routing::get(dlr))
        .with_state(Dlrs {
            store,
            clock,
            secret,
        })
}

pub(super) async fn send(
    client: &reqwest::Client,
    s: &KannelSettings,
    secret: &str,
    m: &Claimed,
) -> Outcome {
    // The report URL carries our row id and the secret: Kannel calls it back as given.
    let dlr_url = format!(
        "{}/kannel/dlr?id={}&k={secret}&status=%d&smsc=%i",
        s.dlr_base, m.id
    );
    let mut q = vec![
        ("username", s.username.as_str()),
        ("password", s.password.as_str()),
        ("from", s.source.as_str()),
        ("charset", "UTF-8"),
        ("coding", "2"),
        ("dlr-mask", "3"),
        ("dlr-url", dlr_url.as_str()),
        ("text", m.text.as_str()),
    ];
    let to = format!("86{}", m.address);
    q.push(("to", &to));
    if !s.smsc.is_empty() {
        q.push(("smsc", &s.smsc));
    }
    let retry = |reason: String, uncertain: bool| Outcome::Retry {
        account: Some(ACCOUNT.into()),
        reason,
        after: SignedDuration::from_secs(5),
        uncertain,
        counts: true,
        parts: Vec::new(),
    };
    let url = match reqwest::Url::parse_with_params(&s.sendsms_url, &q) {
        Ok(u) => u,
        Err(e) => {
            return Outcome::Failed {
                account: Some(ACCOUNT.into()),
                reason: format!("sendsms_url {}: {e}", s.sendsms_url),
            };
        }
    };
    let resp = match client.get(url).send().await {
        Ok(r) => r,
        // Connected and sent but no answer: the gateway may have queued it.
        Err(e) if e.is_timeout() => return retry(format!("gateway: {e}"), true),
        Err(e) => return retry(format!("gateway: {e}"), false),
    };
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Outcome::Accepted {
            account: ACCOUNT.into(),
            parts: vec![(1, 1, format!("K{}", m.id))],
            uncertain: false,
        }
    } else if status.is_server_error() {
        retry(format!("gateway {status}: {}", body.trim()), false)
    } else {
        Outcome::Failed {
            account: Some(ACCOUNT.into()),
            reason: format!("gateway refused ({status}): {}", body.trim()),
        }
    }
}

/// A delivery report's query.
#[derive(Debug, Deserialize)]
struct Dlr {
    id: i64,
    status: u32,
    /// The secret the report URL carried.
    #[serde(default)]
    k: String,
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Kannel DLR types: 1 delivered, 2 failed, 4 buffered, 8 accepted by the SMSC, 16 rejected.
fn stat_of(status: u32) -> &'static str {
    match status {
        1 => "DELIVRD",
        2 => "UNDELIV",
        16 => "REJECTD",
        _ => "ACCEPTD",
    }
}

async fn dlr(State(s): State<Dlrs>, Query(d): Query<Dlr>) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    // Only the gateway, which was given the URL, may report: anyone else who reaches the
    // listener could mark warnings delivered or failed.
    if !same(&d.k, &s.secret) {
        tracing::warn!(
            id = d.id,
            "kannel: a delivery report without the right secret, refused"
        );
        return (StatusCode::FORBIDDEN, "forbidden".into());
    }
    let stat = stat_of(d.status);
    let id = format!("K{}", d.id);
    let now = s.clock.now();
    let r = s
        .store
        .write(move |tx| {
            let (delivered, failed) = outbox::stat_meaning(stat);
            let known = outbox::receipt(tx, ACCOUNT, &id, stat, delivered, failed, now)?
                || outbox::recover(tx, Some(d.id), "", ACCOUNT, &id, stat, now)?;
            if !known && !outbox::sent_through(tx, d.id, ACCOUNT)? {
                // Not one of ours: nothing to keep (a report never adds rows without bound).
                return Ok(false);
            }
            if !known {
                outbox::inbound(
                    tx,
                    &outbox::Inbound {
                        kind: "orphan_receipt",
                        account: ACCOUNT,
                        source: "",
                        dest: "",
                        text: &format!("kannel dlr id={id} status={stat}"),
                        smsc_id: Some(&id),
                        stat: Some(stat),
                        ..outbox::Inbound::default()
                    },
                    now,
                )?;
            }
            Ok(true)
        })
        .await;
    match r {
        Ok(true) => (StatusCode::OK, "ok".into()),
        Ok(false) => (StatusCode::NOT_FOUND, "no such message".into()),
        // Kannel retries a failed DLR callback.
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
