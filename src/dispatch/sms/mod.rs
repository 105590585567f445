//! SMS over SMPP 3.4: accounts at one or more SMS centres, each with several binds, a rate
//! limit from the carrier contract, routing by number prefix and failover to a backup.
//!
//! The channel loop claims due messages from the outbox as long as there is room in some
//! bind's window, sends each (every part through one bind, each part paced by the account's
//! rate limiter), and hands the outcome to a recorder that commits outcomes in batches. A
//! separate task stores what the SMSCs deliver back — receipts onto their parts, replies from
//! phones into `dispatch_inbound` for the respond stage — and only then acknowledges them.

pub mod encode;
pub mod pdu;
pub mod session;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::outbox::{self, Claimed, Outcome, Policy};
use crate::feeds::clock::{Clock, SystemClock};
use crate::store::Store;
use pdu::{SubmitSm, Verdict, esm, tag};
use session::{BindSettings, Incoming, Session, SubmitError};

/// One account at an SMSC, as configured (`[[dispatch.sms.accounts]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// A name for logs and the outbox.
    pub name: String,
    /// host:port.
    pub address: String,
    /// system_id.
    pub system_id: String,
    /// password.
    pub password: String,
    /// system_type.
    #[serde(default)]
    pub system_type: String,
    /// Sender address (the office's short code).
    pub source: String,
    /// Binds to keep open.
    #[serde(default = "one")]
    pub binds: usize,
    /// Submits in flight per bind.
    #[serde(default = "ten")]
    pub window: usize,
    /// Messages per second the contract allows (parts count).
    pub tps: u32,
    /// Number prefixes it serves (e.g. China Mobile's 134–139, 147, 150–152, …); empty: all.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Only used when the accounts for a number are all down.
    #[serde(default)]
    pub backup: bool,
    /// Seconds a response may take.
    #[serde(default = "ten_secs")]
    pub response_timeout_secs: u64,
    /// Seconds of quiet before an enquire_link.
    #[serde(default = "thirty")]
    pub enquire_secs: u64,
}

fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}
fn ten_secs() -> u64 {
    10
}
fn thirty() -> u64 {
    30
}

/// A live account: its binds (re-bound by their own tasks), rate limiter and throttle state.
pub struct Account {
    /// Settings.
    pub settings: AccountSettings,
    binds: Vec<Mutex<Option<Session>>>,
    limiter: DefaultDirectRateLimiter,
    /// Until when the SMSC asked us to slow down, and how many times in a row.
    slow: Mutex<(Option<tokio::time::Instant>, u32)>,
}

impl Account {
    fn new(settings: AccountSettings) -> Account {
        let tps = NonZeroU32::new(settings.tps.max(1)).unwrap_or(NonZeroU32::MIN);
        Account {
            binds: (0..settings.binds.max(1))
                .map(|_| Mutex::new(None))
                .collect(),
            // A burst of 50 ms worth lets a late wake-up catch up instead of losing its slot
            // (with a burst of one the achieved rate falls a few per cent short); any one
            // second still carries at most `tps` plus that.
            limiter: RateLimiter::direct(
                Quota::per_second(tps)
                    .allow_burst(NonZeroU32::new(tps.get() / 20).unwrap_or(NonZeroU32::MIN)),
            ),
            slow: Mutex::new((None, 0)),
            settings,
        }
    }

    /// A live bind with the most room.
    fn session(&self) -> Option<Session> {
        self.binds
            .iter()
            .filter_map(|b| b.lock().ok().and_then(|s| s.clone()))
            .filter(|s| !s.is_closed())
            .min_by_key(|s| s.in_flight())
    }

    /// Whether any bind is up.
    pub fn is_up(&self) -> bool {
        self.session().is_some()
    }

    /// Room left in the windows of live binds.
    fn room(&self) -> usize {
        self.binds
            .iter()
            .filter_map(|b| b.lock().ok().and_then(|s| s.clone()))
            .filter(|s| !s.is_closed())
            .map(|s| self.settings.window.saturating_sub(s.in_flight()))
            .sum()
    }

    fn serves(&self, number: &str) -> usize {
        if self.settings.prefixes.is_empty() {
            return 1;
        }
        self.settings
            .prefixes
            .iter()
            .filter(|p| number.starts_with(p.as_str()))
            .map(|p| p.len() + 1)
            .max()
            .unwrap_or(0)
    }

    /// The SMSC said "slower": pause this account, longer each time in a row (to 30 s).
    fn slow_down(&self) -> Duration {
        let mut s = match self.slow.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let now = tokio::time::Instant::now();
        // The answers to one burst arrive together: one pause per burst, not one per answer.
        if let Some(until) = s.0
            && until > now
        {
            return until - now;
        }
        s.1 = (s.1 + 1).min(6);
        let pause = Duration::from_millis(250 << s.1).min(Duration::from_secs(30));
        s.0 = Some(now + pause);
        pause
    }

    fn sped_up(&self) {
        if let Ok(mut s) = self.slow.lock() {
            s.1 = 0;
        }
    }

    async fn pace(&self) {
        let until = self.slow.lock().ok().and_then(|s| s.0);
        if let Some(u) = until {
            tokio::time::sleep_until(u).await;
        }
        self.limiter.until_ready().await;
    }
}

/// The accounts for a number: the best prefix match among those up, else any backup that is up.
pub fn route<'a>(accounts: &'a [Arc<Account>], number: &str) -> Option<&'a Arc<Account>> {
    let best = accounts
        .iter()
        .filter(|a| !a.settings.backup && a.is_up())
        .max_by_key(|a| a.serves(number))
        .filter(|a| a.serves(number) > 0);
    best.or_else(|| {
        accounts
            .iter()
            .filter(|a| a.settings.backup && a.is_up())
            .max_by_key(|a| a.serves(number))
    })
}

/// The SMS channel.
pub struct SmsChannel {
    accounts: Vec<Arc<Account>>,
    store: Store,
    policy: Policy,
    clock: Arc<dyn Clock>,
}

impl SmsChannel {
    /// A channel over these accounts.
    pub fn new(settings: Vec<AccountSettings>, store: Store, policy: Policy) -> SmsChannel {
        SmsChannel {
            accounts: settings
                .into_iter()
                .map(|s| Arc::new(Account::new(s)))
                .collect(),
            store,
            policy,
            clock: Arc::new(SystemClock::new()),
        }
    }

    /// Stamp claims, outcomes and receipts with this clock (a replay's simulated one): the
    /// outbox compares them with the decisions' times, which come from the same clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> SmsChannel {
        self.clock = clock;
        self
    }

    /// Its accounts (for status).
    pub fn accounts(&self) -> &[Arc<Account>] {
        &self.accounts
    }

    /// Run until `stop` turns true: bind, claim, send, record; in-flight submits are finished
    /// (or recorded as unknown) before it returns.
    pub async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        wake: Arc<tokio::sync::Notify>,
    ) -> anyhow::Result<()> {
        let (in_tx, in_rx) = mpsc::channel::<(String, Incoming)>(1024);
        let mut keepers = Vec::new();
        for a in &self.accounts {
            for slot in 0..a.binds.len() {
                keepers.push(tokio::spawn(keep_bound(
                    a.clone(),
                    slot,
                    in_tx.clone(),
                    BindLog {
                        store: self.store.clone(),
                        clock: self.clock.clone(),
                        last: None,
                    },
                    stop.clone(),
                )));
            }
        }
        drop(in_tx);
        let inbound = tokio::spawn(store_inbound(self.store.clone(), in_rx, self.clock.clone()));
        // Each outcome travels with its window slot, released only once the outcome is
        // committed: so rows in `submitting` never exceed the total window, which bounds
        // what a crash can leave uncertain.
        let (res_tx, res_rx) = mpsc::unbounded_channel::<(i64, Outcome, OwnedSemaphorePermit)>();
        let recorder = tokio::spawn(record_outcomes(
            self.store.clone(),
            res_rx,
            self.policy.clone(),
            self.clock.clone(),
        ));
        let total_window: usize = self
            .accounts
            .iter()
            .map(|a| a.settings.window * a.binds.len())
            .sum();
        let slots = Arc::new(Semaphore::new(total_window.max(1)));
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            // Wait for a free slot (a committed outcome frees one) rather than polling.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stop.changed() => continue,
            };
            let up: usize = self.accounts.iter().map(|a| a.room()).sum();
            let room = up.min(slots.available_permits() + 1);
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
                drop(first);
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = wake.notified() => {}
                    // No bind up: look again soon; nothing due: the wake or a timer (for
                    // retries and held messages coming due).
                    _ = tokio::time::sleep(Duration::from_millis(if up == 0 { 100 } else { 250 })) => {}
                }
                continue;
            }
            let mut first = Some(first);
            for m in claimed {
                let permit = match first.take() {
                    Some(p) => p,
                    None => match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let accounts = self.accounts.clone();
                let res = res_tx.clone();
                tokio::spawn(async move {
                    let outcome = send(&accounts, &m).await;
                    let _ = res.send((m.id, outcome, permit));
                });
            }
        }
        // Let in-flight sends finish (each ends by its own response timeout at worst).
        let _ = slots.acquire_many(total_window.max(1) as u32).await;
        drop(res_tx);
        let _ = recorder.await;
        for a in &self.accounts {
            for b in &a.binds {
                let s = b.lock().ok().and_then(|s| s.clone());
                if let Some(s) = s {
                    s.unbind().await;
                }
            }
        }
        for k in keepers {
            let _ = k.await;
        }
        let _ = inbound.await;
        Ok(())
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
                        i > 0,
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
                    return retry(Some(name), pdu::status_name(r.status), i > 0, true, 5);
                }
            },
            Err(SubmitError::NotSent) => {
                return retry(
                    Some(name),
                    "the bind closed before sending".into(),
                    i > 0,
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

/// Where a bind's state is written (`dispatch_bind`), only when it changes: a bind that keeps
/// failing writes once, not on every retry.
struct BindLog {
    store: Store,
    clock: Arc<dyn Clock>,
    last: Option<(String, Option<String>)>,
}

impl BindLog {
    async fn set(&mut self, account: &str, slot: usize, state: &str, detail: Option<String>) {
        let now = (state.to_string(), detail.clone());
        if self.last.as_ref() == Some(&now) {
            return;
        }
        self.last = Some(now);
        let (account, state, at) = (account.to_string(), state.to_string(), self.clock.now());
        let written = self
            .store
            .write(move |tx| outbox::set_bind(tx, &account, slot, &state, detail.as_deref(), at))
            .await;
        if let Err(e) = written {
            // The bind itself goes on; only the status page is behind.
            tracing::error!("cannot record a bind's state: {e}");
        }
    }
}

/// Keep one bind of an account up: bind, wait until it drops, back off, bind again.
async fn keep_bound(
    account: Arc<Account>,
    slot: usize,
    incoming: mpsc::Sender<(String, Incoming)>,
    mut log: BindLog,
    mut stop: watch::Receiver<bool>,
) {
    let s = &account.settings;
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow_and_update() {
            log.set(&s.name, slot, "stopped", None).await;
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Incoming>(256);
        let settings = BindSettings {
            address: s.address.clone(),
            system_id: s.system_id.clone(),
            password: s.password.clone(),
            system_type: s.system_type.clone(),
            window: s.window,
            response_timeout: Duration::from_secs(s.response_timeout_secs.max(1)),
            enquire_every: Duration::from_secs(s.enquire_secs.max(1)),
        };
        match Session::bind(settings, tx).await {
            Ok(session) => {
                tracing::info!(account = %s.name, bind = slot, "bound to SMSC {}", s.address);
                log.set(&s.name, slot, "bound", Some(s.address.clone()))
                    .await;
                backoff = Duration::from_millis(200);
                if let Some(b) = account.binds.get(slot)
                    && let Ok(mut b) = b.lock()
                {
                    *b = Some(session.clone());
                }
                let name = s.name.clone();
                let fwd = incoming.clone();
                let forward = tokio::spawn(async move {
                    while let Some(i) = rx.recv().await {
                        if fwd.send((name.clone(), i)).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::select! {
                    _ = session.closed() => {
                        tracing::warn!(account = %s.name, bind = slot, "SMSC link lost: {}", session.why());
                        log.set(&s.name, slot, "down", Some(format!("link lost: {}", session.why()))).await;
                    }
                    _ = crate::feeds::poller::stopped(&mut stop) => {
                        // The channel unbinds once in-flight sends are done.
                        session.closed().await;
                        let _ = tokio::time::timeout(Duration::from_secs(5), forward).await;
                        log.set(&s.name, slot, "stopped", None).await;
                        return;
                    }
                }
                // Hand on what the link delivered before it dropped (the reader's sender goes
                // with it, which ends the forwarder); never abort it holding a receipt.
                let _ = tokio::time::timeout(Duration::from_secs(5), forward).await;
            }
            Err(e) => {
                tracing::warn!(account = %s.name, bind = slot, "{e}");
                log.set(&s.name, slot, "down", Some(e.to_string())).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::feeds::poller::stopped(&mut stop) => {
                log.set(&s.name, slot, "stopped", None).await;
                return;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Batch outcomes into transactions (whatever has arrived, up to 500), then free their slots.
async fn record_outcomes(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<(i64, Outcome, OwnedSemaphorePermit)>,
    policy: Policy,
    clock: Arc<dyn Clock>,
) {
    while let Some((id, outcome, permit)) = rx.recv().await {
        let mut batch = vec![(id, outcome)];
        let mut permits = vec![permit];
        while batch.len() < 500 {
            match rx.try_recv() {
                Ok((id, o, p)) => {
                    batch.push((id, o));
                    permits.push(p);
                }
                Err(_) => break,
            }
        }
        let policy = policy.clone();
        let n = batch.len();
        let now = clock.now();
        let r = store
            .write(move |tx| outbox::record(tx, &batch, now, &policy))
            .await;
        if let Err(e) = r {
            // The rows stay in `submitting`: the next start re-queues them as uncertain.
            tracing::error!("cannot record {n} send outcomes: {e}");
        }
        drop(permits);
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
