//! The SMS channel over SMPP 3.4: claims due messages from the outbox, sends each through the
//! account that serves its number (every part through one bind, each part paced by the
//! account's rate limit), and commits the outcomes; beside the sends, each bind is kept up by
//! its own task and what the SMSCs deliver back — receipts onto their parts, replies from
//! phones into `dispatch_inbound` for the respond stage — is stored before it is acknowledged.
//! The loop around it is [`crate::dispatch::drive`]'s.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::account::{Account, BindLog, keep_bound, route};
use super::encode;
use super::pdu::{self, SubmitSm, Verdict, esm, tag};
use super::session::{Incoming, SubmitError};
use super::settings::AccountSettings;
use crate::dispatch::Channel;
use crate::dispatch::outbox::{self, Claimed, Lane, Outcome, Policy};
use crate::runtime::{Clock, Shutdown, SystemClock};
use crate::store::Store;

/// The name the channel claims outbox rows by (`claimed_by`), and its stage's name.
pub const NAME: &str = "smpp";

/// The SMS channel.
pub struct SmsChannel {
    accounts: Vec<Arc<Account>>,
    lane: Lane,
}

impl SmsChannel {
    /// A channel over these accounts.
    pub fn new(settings: Vec<AccountSettings>, store: Store, policy: Policy) -> SmsChannel {
        SmsChannel {
            accounts: settings
                .into_iter()
                .map(|s| Arc::new(Account::new(s)))
                .collect(),
            lane: Lane {
                store,
                policy,
                clock: Arc::new(SystemClock::new()),
                name: NAME,
            },
        }
    }

    /// Stamp claims, outcomes and receipts with this clock (a replay's simulated one): the
    /// outbox compares them with the decisions' times, which come from the same clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> SmsChannel {
        self.lane.clock = clock;
        self
    }

    /// Its accounts (for status).
    pub fn accounts(&self) -> &[Arc<Account>] {
        &self.accounts
    }
}

impl Channel for SmsChannel {
    type Item = Claimed;
    type Outcome = (i64, Outcome);

    fn name(&self) -> &'static str {
        NAME
    }

    fn window(&self) -> usize {
        self.accounts
            .iter()
            .map(|a| a.settings.window * a.bind_count())
            .sum()
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        self.lane.reconcile().await
    }

    async fn start(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let (in_tx, in_rx) = mpsc::channel::<(String, Incoming)>(1024);
        for a in &self.accounts {
            for slot in 0..a.bind_count() {
                tasks.spawn(keep_bound(
                    a.clone(),
                    slot,
                    in_tx.clone(),
                    BindLog {
                        store: self.lane.store.clone(),
                        clock: self.lane.clock.clone(),
                        last: None,
                    },
                    shutdown.clone(),
                ));
            }
        }
        // Ends once every bind's forwarder has let go of its sender.
        drop(in_tx);
        tasks.spawn(store_inbound(
            self.lane.store.clone(),
            in_rx,
            self.lane.clock.clone(),
        ));
        Ok(())
    }

    fn room(&self) -> Option<usize> {
        Some(self.accounts.iter().map(|a| a.room()).sum())
    }

    async fn claim(&self, n: usize) -> anyhow::Result<Vec<Claimed>> {
        self.lane.claim(n).await
    }

    async fn send(self: Arc<Self>, m: Claimed) -> (i64, Outcome) {
        let outcome = send(&self.accounts, &m).await;
        (m.id, outcome)
    }

    async fn record(&self, batch: Vec<(i64, Outcome)>) -> anyhow::Result<()> {
        self.lane.record(batch).await
    }

    fn idle(&self, room: usize) -> Duration {
        // No bind up: look again soon; nothing due: the wake or a timer (for retries and held
        // messages coming due).
        Duration::from_millis(if room == 0 { 100 } else { 250 })
    }

    async fn finish(&self) {
        for a in &self.accounts {
            a.unbind_all().await;
        }
    }
}

/// Send one message: route, encode, every part through one bind.
async fn send(accounts: &[Arc<Account>], m: &Claimed) -> Outcome {
    let retry =
        |account: Option<String>, reason: String, uncertain: bool, counts: bool, after: u64| {
            Outcome::Retry {
                account,
                reason,
                after: SignedDuration::from_secs(after as i64),
                uncertain,
                counts,
            }
        };
    let Some(account) = route(accounts, &m.address) else {
        return retry(
            None,
            "no SMSC account is up for this number".into(),
            false,
            false,
            2,
        );
    };
    let Some(session) = account.session() else {
        return retry(None, "the bind went down".into(), false, false, 1);
    };
    let name = account.settings.name.clone();
    let enc = encode::encode(&m.text, (m.id & 0xFF) as u8);
    let total = enc.parts.len() as u32;
    let mut parts = Vec::new();
    for (i, octets) in enc.parts.iter().enumerate() {
        account.pace().await;
        let sm = SubmitSm {
            source_ton: 5,
            source_npi: 0,
            source: account.settings.source.clone(),
            dest_ton: 1,
            dest_npi: 1,
            dest: format!("86{}", m.address),
            esm_class: if enc.concatenated() { esm::UDHI } else { 0 },
            registered_delivery: 1,
            data_coding: enc.coding.data_coding(),
            short_message: octets.clone(),
            tlvs: vec![pdu::Tlv {
                tag: tag::USER_MESSAGE_REFERENCE,
                value: ((m.id & 0xFFFF) as u16).to_be_bytes().to_vec(),
            }],
            ..SubmitSm::default()
        };
        match session.submit(&sm).await {
            Ok(r) => match pdu::verdict(r.status) {
                Verdict::Accepted => {
                    account.sped_up();
                    parts.push((i as u32 + 1, total, r.message_id));
                }
                Verdict::SlowDown => {
                    let pause = account.slow_down();
                    return retry(
                        Some(name),
                        format!(
                            "{} (part {}/{total}); paused {pause:?}",
                            pdu::status_name(r.status),
                            i + 1
                        ),
                        // Every part so far got a verdict: none can reach a phone twice
                        // (parts sent again keep the message's reference; the phone shows
                        // one text). Only a submit without a verdict is a possible duplicate.
                        false,
                        false,
                        pause.as_secs().max(1),
                    );
                }
                Verdict::Permanent => {
                    return Outcome::Failed {
                        account: Some(name),
                        reason: format!(
                            "the SMSC refused {}: {}",
                            m.address,
                            pdu::status_name(r.status)
                        ),
                    };
                }
                Verdict::Transient => {
                    return retry(Some(name), pdu::status_name(r.status), false, true, 5);
                }
            },
            Err(SubmitError::NotSent) => {
                return retry(
                    Some(name),
                    "the bind closed before sending".into(),
                    false,
                    false,
                    1,
                );
            }
            Err(SubmitError::Unknown(why)) => {
                return retry(
                    Some(name),
                    format!("no answer from the SMSC: {why}"),
                    true,
                    true,
                    2,
                );
            }
        }
    }
    Outcome::Accepted {
        account: name,
        parts,
    }
}

/// What came in, ready to store: the fields the transaction needs, owned.
struct Arrived {
    account: String,
    source: String,
    dest: String,
    text: String,
    receipt: Option<Option<pdu::Receipt>>,
}

/// Store receipts and replies in batches (whatever has arrived, up to 500, in one
/// transaction), then acknowledge each: an SMSC sends receipts as fast as it accepts messages,
/// and one commit per receipt would throttle everything else the store does.
async fn store_inbound(
    store: Store,
    mut rx: mpsc::Receiver<(String, Incoming)>,
    clock: Arc<dyn Clock>,
) {
    while let Some(first) = rx.recv().await {
        let mut acks = Vec::new();
        let mut rows = Vec::new();
        let mut next = Some(first);
        while let Some((account, i)) = next.take() {
            let d = &i.deliver;
            let receipt = d.is_receipt().then(|| pdu::parse_receipt(d));
            let text = if d.is_receipt() {
                String::from_utf8_lossy(&d.short_message).into_owned()
            } else {
                encode::decode(
                    d.data_coding,
                    d.esm_class & esm::UDHI != 0,
                    &d.short_message,
                )
            };
            rows.push(Arrived {
                account,
                source: d.source.clone(),
                dest: d.dest.clone(),
                text,
                receipt,
            });
            acks.push(i.ack);
            if rows.len() < 500 {
                next = rx.try_recv().ok();
            }
        }
        let now = clock.now();
        let n = rows.len();
        let r = store
            .write(move |tx| {
                for a in &rows {
                    let mut row = outbox::Inbound {
                        kind: "reply",
                        account: &a.account,
                        source: &a.source,
                        dest: &a.dest,
                        text: &a.text,
                        smsc_id: None,
                        stat: None,
                    };
                    match &a.receipt {
                        Some(Some(rc)) => {
                            let (delivered, failed) = outbox::stat_meaning(&rc.stat);
                            let matched = outbox::receipt(
                                tx, &a.account, &rc.id, &rc.stat, delivered, failed, now,
                            )?;
                            // Or the proof that a message mid-send at a restart got through.
                            if matched
                                || outbox::recover(
                                    tx, None, &a.source, &a.account, &rc.id, &rc.stat, now,
                                )?
                            {
                                continue;
                            }
                            // Not (yet) recorded: kept, and applied if its part shows up.
                            row.kind = "orphan_receipt";
                            row.smsc_id = Some(&rc.id);
                            row.stat = Some(&rc.stat);
                        }
                        Some(None) => {
                            tracing::warn!(account = %a.account, "unreadable receipt: {:?}", a.text);
                            row.kind = "orphan_receipt";
                        }
                        None => {}
                    }
                    outbox::inbound(tx, &row, now)?;
                }
                Ok(())
            })
            .await;
        match r {
            Ok(()) => acks.into_iter().for_each(|a| a.ok()),
            // Not stored: dropping the Acks asks the SMSC to deliver them again.
            Err(e) => tracing::error!("cannot store {n} things the SMSC delivered: {e}"),
        }
    }
}
