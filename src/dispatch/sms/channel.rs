//! The SMS channel over SMPP 3.4: claims due messages from the outbox, sends each through the
//! account that serves its number (every part through one bind, each part paced by the
//! account's rate limit), and commits the outcomes; beside the sends, each bind is kept up by
//! its own task and what the SMSCs deliver back — receipts onto their parts, replies from
//! phones into `dispatch_inbound` for the respond stage — is stored before it is acknowledged.
//! The loop around it is [`crate::dispatch::drive`]'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Parts of claimed texts not yet past their turn at an account's rate.
    unsent: Arc<AtomicUsize>,
}

/// A claimed text, with its parts counted in the channel's `unsent` from the claim until each
/// has had its turn at the rate (or its send ends, or never starts, without getting there).
pub struct Paced {
    text: Claimed,
    unsent: Unsent,
}

/// The parts of a claimed text still to pass their turn at the rate.
struct Unsent {
    count: Arc<AtomicUsize>,
    left: usize,
}

impl Unsent {
    fn passed(&mut self) {
        if self.left > 0 {
            self.left -= 1;
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Unsent {
    fn drop(&mut self) {
        self.count.fetch_sub(self.left, Ordering::Relaxed);
    }
}

impl SmsChannel {
    /// A channel over these accounts.
    pub fn new(settings: Vec<AccountSettings>, store: Store, policy: Policy) -> SmsChannel {
        let mut policy = policy;
        for a in &settings {
            policy.accounts.insert(
                a.name.clone(),
                outbox::AccountRules {
                    ids: a.receipt_ids,
                    receipt_deadline: SignedDuration::from_secs(
                        a.receipt_deadline_secs.max(1) as i64
                    ),
                },
            );
        }
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
                channel: "sms",
                swept: Default::default(),
            },
            unsent: Default::default(),
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
    type Item = Paced;
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
            self.lane.policy.clone(),
        ));
        Ok(())
    }

    async fn turn(&self) -> anyhow::Result<()> {
        self.lane.sweep().await
    }

    /// The room left in the windows of live binds, but no more than keeps a fifth of a
    /// second of the accounts' rates (in parts) claimed and waiting for their turn. Claimed as
    /// the window freed, a rate-bound channel took one or two texts a claim (a transaction
    /// each: most of the store's work at a contract's pace) and held its whole window claimed
    /// but unsent: rows a crash leaves "submitting", to be taken back and counted as possibly
    /// sent. Now it claims about a tenth of a second's worth at a time (the loop looks again
    /// after [`Channel::idle`]) and holds about a fifth unsent (twice that with texts of
    /// several parts, as the room is counted in parts and claimed in texts). With `tps`
    /// beyond what the binds carry, it is the window's room as before.
    fn room(&self) -> Option<usize> {
        let up = self.accounts.iter().filter(|a| a.is_up());
        let lead: usize = up.map(|a| (a.settings.tps as usize / 5).max(1)).sum();
        let window: usize = self.accounts.iter().map(|a| a.room()).sum();
        Some(window.min(lead.saturating_sub(self.unsent.load(Ordering::Relaxed))))
    }

    async fn claim(&self, n: usize) -> anyhow::Result<Vec<Paced>> {
        let claimed = self.lane.claim(n).await?;
        Ok(claimed
            .into_iter()
            .map(|text| {
                // The parts it still has to send.
                let left = text.segments.saturating_sub(text.accepted_parts) as usize;
                self.unsent.fetch_add(left, Ordering::Relaxed);
                let count = self.unsent.clone();
                Paced {
                    text,
                    unsent: Unsent { count, left },
                }
            })
            .collect())
    }

    async fn send(self: Arc<Self>, item: Paced) -> (i64, Outcome) {
        let Paced { text, unsent } = item;
        let outcome = send(&self.accounts, &text, unsent).await;
        (text.id, outcome)
    }

    async fn record(&self, batch: Vec<(i64, Outcome)>) -> anyhow::Result<()> {
        self.lane.record(batch).await
    }

    fn idle(&self, room: usize) -> Duration {
        // No room (no bind up, or a fifth of a second's texts already waiting at the
        // accounts' rate): look again soon; nothing due: the wake or a timer (for retries and
        // held messages coming due).
        Duration::from_millis(if room == 0 { 100 } else { 250 })
    }

    async fn finish(&self) {
        for a in &self.accounts {
            a.unbind_all().await;
        }
    }
}

/// Send one message: route, encode, every part through one bind while it is up. A part the
/// bind could not take (it closed) goes on another bind of the account at once, from that
/// part on; when none is up, the parts accepted so far are kept and the next attempt resumes
/// after them. Every part carries the message's concatenation reference, so however its
/// parts travelled the phone shows one text.
async fn send(accounts: &[Arc<Account>], m: &Claimed, mut unsent: Unsent) -> Outcome {
    let retry = |account: Option<String>,
                 reason: String,
                 uncertain: bool,
                 counts: bool,
                 after: u64,
                 parts: Vec<(u32, u32, String)>| Outcome::Retry {
        account,
        reason,
        after: SignedDuration::from_secs(after as i64),
        uncertain,
        counts,
        parts,
    };
    let Some(account) = route(accounts, &m.address) else {
        return retry(
            None,
            "no SMSC account is up for this number".into(),
            false,
            false,
            2,
            Vec::new(),
        );
    };
    let Some(mut session) = account.session() else {
        return retry(
            None,
            "the bind went down".into(),
            false,
            false,
            1,
            Vec::new(),
        );
    };
    let name = account.settings.name.clone();
    let enc = encode::encode(&m.text, (m.id & 0xFF) as u8);
    let total = enc.parts.len() as u32;
    let mut parts = Vec::new();
    // A part sent with no verdict and sent again (a possible duplicate part).
    let mut uncertain = false;
    // Binds tried for the current part: one more than the account has, then wait.
    let mut hops = 0;
    let mut i = (m.accepted_parts as usize).min(enc.parts.len());
    while i < enc.parts.len() {
        let octets = &enc.parts[i];
        account.pace().await;
        // Past its turn: the channel may claim another.
        unsent.passed();
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
        let failed = match session.submit(&sm).await {
            Ok(r) => match pdu::verdict(r.status) {
                Verdict::Accepted => {
                    account.sped_up();
                    parts.push((i as u32 + 1, total, r.message_id));
                    i += 1;
                    hops = 0;
                    continue;
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
                        // Every part so far got a verdict: none can reach a phone twice.
                        // Only a submit without a verdict is a possible duplicate.
                        uncertain,
                        false,
                        pause.as_secs().max(1),
                        parts,
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
                    return retry(
                        Some(name),
                        pdu::status_name(r.status),
                        uncertain,
                        true,
                        5,
                        parts,
                    );
                }
            },
            Err(e) => e,
        };
        // The bind took the part and closed without a verdict (Unknown), or closed before
        // taking it (NotSent): the same part on another bind of the account, if one is up.
        let no_verdict = matches!(failed, SubmitError::Unknown(_));
        uncertain |= no_verdict;
        hops += 1;
        let other = account.session().filter(|_| hops <= account.bind_count());
        match (other, &failed) {
            (Some(s), _) if !no_verdict || session.is_closed() => {
                session = s;
            }
            (_, SubmitError::NotSent) => {
                return retry(
                    Some(name),
                    format!("the bind closed before sending part {}/{total}", i + 1),
                    uncertain,
                    false,
                    0,
                    parts,
                );
            }
            (_, SubmitError::Unknown(why)) => {
                return retry(
                    Some(name),
                    format!("no answer from the SMSC for part {}/{total}: {why}", i + 1),
                    uncertain,
                    true,
                    1,
                    parts,
                );
            }
        }
    }
    Outcome::Accepted {
        account: name,
        parts,
        uncertain,
    }
}

/// What came in, ready to store: the fields the transaction needs, owned.
struct Arrived {
    account: String,
    source: String,
    dest: String,
    text: String,
    receipt: Option<Option<pdu::Receipt>>,
    /// A part of a long reply: where it belongs, its coding and its octets.
    part: Option<(pdu::Concat, u8, Vec<u8>)>,
}

/// How often, at most, the id forms are tried on one account's kept receipts.
const LEARN_EVERY: Duration = Duration::from_secs(5);

/// What trying the id forms came to: logged, and remembered for the next try.
fn learnt(
    account: &str,
    l: outbox::Learnt,
    tried: &mut std::collections::HashMap<String, tokio::time::Instant>,
    pending: &mut std::collections::BTreeSet<String>,
    logged: &mut std::collections::HashMap<String, i64>,
) {
    if l != outbox::Learnt::NotTried {
        tried.insert(account.to_string(), tokio::time::Instant::now());
    }
    match l {
        outbox::Learnt::Adopted { form, applied } => {
            pending.remove(account);
            tracing::warn!(
                account = %account,
                "the SMS centre writes receipt ids as {}: learnt from its receipts, \
                 {applied} kept receipt(s) applied (set receipt_ids to fix it)",
                form.as_str()
            )
        }
        outbox::Learnt::Nothing { unmatched, .. } => {
            pending.insert(account.to_string());
            // Only receipts kept past the grace (as status and /metrics count them): a fast
            // centre's receipts are often back before their submit's outcome is committed.
            let mark = 10_i64.pow(unmatched.max(1).ilog10());
            if unmatched >= 10 && logged.get(account).is_none_or(|m| *m < mark) {
                logged.insert(account.to_string(), mark);
                tracing::warn!(
                    account = %account,
                    "{unmatched} receipt(s) from the SMS centre have matched no message sent \
                     for a minute or more (ids in a form not understood? see receipt_ids)"
                );
            }
        }
        outbox::Learnt::NotTried => {
            pending.remove(account);
        }
    }
}

/// Store receipts and replies in batches (whatever has arrived, up to 500, in one
/// transaction), then acknowledge each: an SMSC sends receipts as fast as it accepts messages,
/// and one commit per receipt would throttle everything else the store does. Every few
/// seconds, long replies whose parts stopped coming are handled with what came.
async fn store_inbound(
    store: Store,
    mut rx: mpsc::Receiver<(String, Incoming)>,
    clock: Arc<dyn Clock>,
    policy: Policy,
) {
    let policy = Arc::new(policy);
    let wait = policy.reply_parts_wait;
    // Looked at a few times per wait (and at least every 5 s).
    let every = Duration::from_millis((wait.as_millis() / 4).clamp(200, 5000) as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Per account, the unmatched receipts last logged (a line at 10, 100, 1000, …).
    let mut logged: std::collections::HashMap<String, i64> = Default::default();
    // Per account, when the id forms were last tried on its kept receipts: at most every few
    // seconds (a fast centre's receipts often come before their answers are recorded, and are
    // kept for a moment; trying the forms on every batch would load the writer for nothing).
    let mut tried: std::collections::HashMap<String, tokio::time::Instant> = Default::default();
    // Accounts whose last try explained nothing: tried again on the tick, so receipts that
    // all came in one burst before their answers were recorded are not kept for ever.
    let mut pending: std::collections::BTreeSet<String> = Default::default();
    loop {
        let first = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => return,
            },
            _ = tick.tick() => {
                let now = clock.now();
                let r = store
                    .write(move |tx| outbox::overdue_replies(tx, now, wait))
                    .await;
                match r {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        "{n} long repl(ies) from phones handled with parts missing (they did \
                         not come within {} s)",
                        wait.as_secs()
                    ),
                    Err(e) => tracing::error!("cannot handle overdue parts of replies: {e}"),
                }
                let due: Vec<String> = pending
                    .iter()
                    .filter(|a| tried.get(*a).is_none_or(|t| t.elapsed() >= LEARN_EVERY))
                    .cloned()
                    .collect();
                for account in due {
                    let pol = policy.clone();
                    let who = account.clone();
                    match store.write(move |tx| outbox::learn(tx, &pol, &who, now)).await {
                        Ok(l) => learnt(&account, l, &mut tried, &mut pending, &mut logged),
                        Err(e) => tracing::error!(account = %account, "cannot try the receipt id forms: {e}"),
                    }
                }
                continue;
            }
        };
        let mut acks = Vec::new();
        let mut rows = Vec::new();
        let mut next = Some(first);
        while let Some((account, i)) = next.take() {
            let d = &i.deliver;
            let receipt = d.is_receipt().then(|| pdu::parse_receipt(d));
            let (concat, body) = d.concat();
            let part = match concat {
                Some(c) if !d.is_receipt() && c.total > 1 => {
                    Some((c, d.data_coding, body.to_vec()))
                }
                _ => None,
            };
            let text = if d.is_receipt() {
                String::from_utf8_lossy(&d.short_message).into_owned()
            } else {
                encode::decode(d.data_coding, false, body)
            };
            rows.push(Arrived {
                account,
                source: d.source.clone(),
                dest: d.dest.clone(),
                text,
                receipt,
                part,
            });
            acks.push(i.ack);
            if rows.len() < 500 {
                next = rx.try_recv().ok();
            }
        }
        let now = clock.now();
        let n = rows.len();
        let pol = policy.clone();
        let may_learn: std::collections::HashSet<String> = rows
            .iter()
            .map(|a| a.account.clone())
            .filter(|a| tried.get(a).is_none_or(|t| t.elapsed() >= LEARN_EVERY))
            .collect();
        let r = store
            .write(move |tx| {
                let mut forms = std::collections::HashMap::new();
                let mut orphaned = std::collections::BTreeSet::new();
                // The receipts' keys, under their accounts' forms, and all matched first in
                // one go (set-based on PostgreSQL: a centre's burst is hundreds).
                let mut keys = Vec::with_capacity(rows.len());
                for a in &rows {
                    keys.push(match &a.receipt {
                        Some(Some(rc)) if a.part.is_none() => {
                            let form = match forms.get(&a.account) {
                                Some(f) => *f,
                                None => {
                                    let f = outbox::form_of(tx, &pol, &a.account)?;
                                    forms.insert(a.account.clone(), f);
                                    f
                                }
                            };
                            Some(form.receipt_key(&rc.id))
                        }
                        _ => None,
                    });
                }
                let keyed: Vec<outbox::Keyed<'_>> = rows
                    .iter()
                    .zip(&keys)
                    .filter_map(|(a, k)| match (&a.receipt, k) {
                        (Some(Some(rc)), Some(key)) => Some(outbox::Keyed {
                            account: &a.account,
                            key,
                            stat: &rc.stat,
                        }),
                        _ => None,
                    })
                    .collect();
                let mut matches = outbox::receipts_by_key(tx, &keyed, now)?.into_iter();
                for (a, key) in rows.iter().zip(&keys) {
                    if let Some((c, coding, payload)) = &a.part {
                        outbox::reply_part(
                            tx,
                            &outbox::ReplyPart {
                                account: &a.account,
                                source: &a.source,
                                dest: &a.dest,
                                reference: c.reference,
                                total: c.total,
                                seq: c.seq,
                                coding: *coding,
                                payload,
                            },
                            now,
                        )?;
                        continue;
                    }
                    let mut row = outbox::Inbound {
                        kind: "reply",
                        account: &a.account,
                        source: &a.source,
                        dest: &a.dest,
                        text: &a.text,
                        ..outbox::Inbound::default()
                    };
                    match (&a.receipt, key) {
                        (Some(Some(rc)), Some(key)) => {
                            let matched = matches.next().unwrap_or(false);
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
                            row.id_key = Some(key);
                            orphaned.insert(a.account.clone());
                        }
                        (Some(_), _) => {
                            tracing::warn!(account = %a.account, "unreadable receipt: {:?}", a.text);
                            row.kind = "orphan_receipt";
                        }
                        (None, _) => {}
                    }
                    outbox::inbound(tx, &row, now)?;
                }
                // Receipts kept unmatched: perhaps the centre writes ids another way.
                let mut learnt = Vec::new();
                for account in orphaned.into_iter().filter(|a| may_learn.contains(a)) {
                    let l = outbox::learn(tx, &pol, &account, now)?;
                    learnt.push((account, l));
                }
                Ok(learnt)
            })
            .await;
        match r {
            Ok(done) => {
                acks.into_iter().for_each(|a| a.ok());
                for (account, l) in done {
                    learnt(&account, l, &mut tried, &mut pending, &mut logged);
                }
            }
            // Not stored: dropping the Acks asks the SMSC to deliver them again.
            Err(e) => tracing::error!("cannot store {n} things the SMSC delivered: {e}"),
        }
    }
}
