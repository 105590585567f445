//! SMS through an HTTP SMS gateway (Kannel's `sendsms` interface), for offices whose carrier
//! link is run by a gateway rather than spoken to directly over SMPP.
//!
//! Each message is one GET to `sendsms` with the text in UTF-8 (`charset=UTF-8&coding=2`: the
//! gateway encodes UCS-2 and splits into concatenated parts itself), asking for delivery
//! reports (`dlr-mask=3`: delivered and failed) on a URL of our own that carries the outbox
//! row id. The gateway answers 202 "Accepted for delivery" (queued at the gateway), and later
//! calls the DLR URL; that is matched to the row like an SMPP receipt. A gateway that does
//! not answer, or answers 5xx, leaves the message for a later attempt; 4xx fails it with the
//! gateway's words.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, watch};

use super::outbox::{self, Claimed, Outcome, Policy};
use crate::feeds::clock::{Clock, SystemClock};
use crate::store::Store;

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
    /// Where we listen for delivery reports, e.g. `127.0.0.1:8471`.
    pub dlr_listen: String,
    /// How the gateway reaches that listener, e.g. `http://127.0.0.1:8471`.
    pub dlr_base: String,
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

/// The account name outbox rows sent this way carry.
pub const ACCOUNT: &str = "kannel";

/// The HTTP gateway channel.
pub struct KannelChannel {
    settings: KannelSettings,
    store: Store,
    policy: Policy,
    clock: Arc<dyn Clock>,
}

impl KannelChannel {
    /// A channel through this gateway.
    pub fn new(settings: KannelSettings, store: Store, policy: Policy) -> KannelChannel {
        KannelChannel {
            settings,
            store,
            policy,
            clock: Arc::new(SystemClock::new()),
        }
    }

    /// Stamp claims, outcomes and reports with this clock (see `SmsChannel::with_clock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> KannelChannel {
        self.clock = clock;
        self
    }

    /// Run until `stop`: serve delivery reports, claim and send.
    pub async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(&self.settings.dlr_listen)
            .await
            .map_err(|e| anyhow::anyhow!("kannel dlr_listen {}: {e}", self.settings.dlr_listen))?;
        let app = axum::Router::new()
            .route("/kannel/dlr", axum::routing::get(dlr))
            .with_state((self.store.clone(), self.clock.clone()));
        let mut stop_web = stop.clone();
        let web = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    crate::feeds::poller::stopped(&mut stop_web).await;
                })
                .await
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let settings = Arc::new(self.settings.clone());
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let room = slots.available_permits();
            let claimed = if room == 0 {
                Vec::new()
            } else {
                let policy = self.policy.clone();
                let now = self.clock.now();
                self.store
                    .write(move |tx| outbox::claim(tx, "sms", room, now, &policy))
                    .await?
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(if room == 0 { 20 } else { 250 })) => {}
                }
                continue;
            }
            for m in claimed {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (client, settings, store, policy, clock) = (
                    client.clone(),
                    settings.clone(),
                    self.store.clone(),
                    self.policy.clone(),
                    self.clock.clone(),
                );
                tokio::spawn(async move {
                    let outcome = send(&client, &settings, &m).await;
                    let results = vec![(m.id, outcome)];
                    let now = clock.now();
                    if let Err(e) = store
                        .write(move |tx| outbox::record(tx, &results, now, &policy))
                        .await
                    {
                        tracing::error!("cannot record a gateway outcome: {e}");
                    }
                    drop(permit);
                });
            }
        }
        let _ = slots
            .acquire_many(self.settings.concurrency.max(1) as u32)
            .await;
        let _ = web.await;
        Ok(())
    }
}

async fn send(client: &reqwest::Client, s: &KannelSettings, m: &Claimed) -> Outcome {
    let dlr_url = format!("{}/kannel/dlr?id={}&status=%d&smsc=%i", s.dlr_base, m.id);
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

async fn dlr(
    State((store, clock)): State<(Store, Arc<dyn Clock>)>,
    Query(d): Query<Dlr>,
) -> (axum::http::StatusCode, String) {
    let stat = stat_of(d.status);
    let id = format!("K{}", d.id);
    let now = clock.now();
    let r = store
        .write(move |tx| {
            let (delivered, failed) = outbox::stat_meaning(stat);
            let known = outbox::receipt(tx, ACCOUNT, &id, stat, delivered, failed, now)?
                || outbox::recover(tx, Some(d.id), "", ACCOUNT, &id, stat, now)?;
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
                    },
                    now,
                )?;
            }
            Ok(())
        })
        .await;
    match r {
        Ok(()) => (axum::http::StatusCode::OK, "ok".into()),
        // Kannel retries a failed DLR callback.
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
