//! The accounts of the SMS channel: each with its binds (kept up by their own tasks), its
//! rate limit and throttle state, and routing of a number to the account that serves it.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;

use super::session::{BindSettings, Incoming, Session};
use super::settings::AccountSettings;
use crate::dispatch::outbox;
use crate::runtime::{Clock, Shutdown};
use crate::store::Store;

/// A live account: its binds (re-bound by their own tasks), rate limiter and throttle state.
pub struct Account {
    /// Settings.
    pub settings: AccountSettings,
    binds: Vec<Mutex<Option<Session>>>,
    limiter: DefaultDirectRateLimiter,
    /// Until when the SMSC asked us to slow down, and how many times in a row.
    slow: Mutex<(Option<tokio::time::Instant>, u32)>,
    /// When the latest `tps` parts went, oldest first: the contract's own count (none for a
    /// rate no contract sets, beyond [`COUNTED`]).
    sent: Option<Mutex<VecDeque<tokio::time::Instant>>>,
}

/// The span no more than `tps` parts may go in: a second, and a little for the network
/// delivering two parts a second apart closer together than they were sent.
const SPAN: Duration = Duration::from_millis(1_005);

/// Rates up to this are counted part by part ([`Account::pace`]); above it no carrier's
/// contract is meant (benchmarks set it to go as fast as the binds carry).
const COUNTED: u32 = 100_000;

impl Account {
    pub(super) fn new(settings: AccountSettings) -> Account {
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
            sent: (tps.get() <= COUNTED)
                .then(|| Mutex::new(VecDeque::with_capacity(tps.get() as usize))),
            settings,
        }
    }

    /// A live bind with the most room.
    pub(super) fn session(&self) -> Option<Session> {
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
    pub(super) fn room(&self) -> usize {
        self.binds
            .iter()
            .filter_map(|b| b.lock().ok().and_then(|s| s.clone()))
            .filter(|s| !s.is_closed())
            .map(|s| self.settings.window.saturating_sub(s.in_flight()))
            .sum()
    }

    /// Binds it keeps.
    pub(super) fn bind_count(&self) -> usize {
        self.binds.len()
    }

    /// The binds that are up now.
    fn live(&self) -> Vec<Session> {
        self.binds
            .iter()
            .filter_map(|b| b.lock().ok().and_then(|s| s.clone()))
            .filter(|s| !s.is_closed())
            .collect()
    }

    /// Unbind every bind politely (each waits briefly for its `unbind_resp`).
    pub(super) async fn unbind_all(&self) {
        for s in self.live() {
            s.unbind().await;
        }
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
    pub(super) fn slow_down(&self) -> Duration {
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

    pub(super) fn sped_up(&self) {
        if let Ok(mut s) = self.slow.lock() {
            s.1 = 0;
        }
    }

    /// Wait for this part's turn: after any pause the SMSC asked for, at the contract's rate,
    /// and never more than `tps` parts in any second. The rate limiter lets a late wake-up
    /// catch up (its burst, above), which after a quiet spell put the burst and the next
    /// second's share in one second: a strict centre counting each calendar second throttled
    /// the excess, and the account paused half a second at the start of a wave. Counting the
    /// parts themselves keeps every second within the contract. In steady sending the count
    /// holds back at most one part in two hundred (its span is a second and 5 ms).
    pub(super) async fn pace(&self) {
        let until = self.slow.lock().ok().and_then(|s| s.0);
        if let Some(u) = until {
            tokio::time::sleep_until(u).await;
        }
        self.limiter.until_ready().await;
        let Some(sent) = &self.sent else {
            return;
        };
        let tps = self.settings.tps.max(1) as usize;
        loop {
            let now = tokio::time::Instant::now();
            let next = {
                let mut sent = match sent.lock() {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                };
                while sent.front().is_some_and(|t| now.duration_since(*t) >= SPAN) {
                    sent.pop_front();
                }
                match sent.front() {
                    Some(oldest) if sent.len() >= tps => *oldest + SPAN,
                    _ => {
                        sent.push_back(now);
                        return;
                    }
                }
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

impl Drop for Account {
    /// However the channel ended (an error, a panic, an abort), its binds end with it: a
    /// restarted channel must not find the old binds still up beside its new ones (carriers
    /// cap binds per account, and an old bind's sends would run outside the new window).
    fn drop(&mut self) {
        for b in &self.binds {
            if let Ok(mut b) = b.lock()
                && let Some(s) = b.take()
            {
                s.abort("the channel ended");
            }
        }
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

/// Where a bind's state is written (`dispatch_bind`), only when it changes: a bind that keeps
/// failing writes once, not on every retry. Each node keeps its own binds: on a database nodes
/// share, the account is recorded as `account@node` ([`Store::qualified`]).
pub(super) struct BindLog {
    pub(super) store: Store,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) last: Option<(String, Option<String>)>,
}

impl BindLog {
    async fn set(&mut self, account: &str, slot: usize, state: &str, detail: Option<String>) {
        let now = (state.to_string(), detail.clone());
        if self.last.as_ref() == Some(&now) {
            return;
        }
        self.last = Some(now);
        let (account, state, at) = (
            self.store.qualified(account),
            state.to_string(),
            self.clock.now(),
        );
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
pub(super) async fn keep_bound(
    account: Arc<Account>,
    slot: usize,
    incoming: mpsc::Sender<(String, Incoming)>,
    mut log: BindLog,
    mut stop: Shutdown,
) {
    let s = &account.settings;
    let mut backoff = Duration::from_millis(200);
    loop {
        // A link that had been up a while and dropped is bound again at once (a centre that
        // closes links under load must not cost a pause each time); one that fails to bind,
        // or drops again within a second, waits, longer each time.
        let mut again_now = false;
        if stop.is_shutdown() {
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
            give_up: Duration::from_secs(s.give_up_secs.max(s.response_timeout_secs).max(1)),
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
                let up_since = tokio::time::Instant::now();
                tokio::select! {
                    _ = session.closed() => {
                        again_now = up_since.elapsed() >= Duration::from_secs(1);
                        tracing::warn!(account = %s.name, bind = slot, "SMSC link lost: {}", session.why());
                        log.set(&s.name, slot, "down", Some(format!("link lost: {}", session.why()))).await;
                    }
                    _ = stop.recv() => {
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
        if again_now {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.recv() => {
                log.set(&s.name, slot, "stopped", None).await;
                return;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_second_carries_more_than_the_contract_not_even_the_first_after_a_quiet_spell() {
        // The limiter's burst (5 parts at 100 a second) lets a late wake-up catch up; after a
        // quiet spell it put those 5 and the next second's 100 in one second. Parts paced one
        // after another for two seconds: every window of one second holds at most 100.
        let account = Account::new(AccountSettings {
            tps: 100,
            ..AccountSettings::default()
        });
        let mut at = Vec::new();
        for _ in 0..200 {
            account.pace().await;
            at.push(std::time::Instant::now());
        }
        let busiest = (0..at.len())
            .map(|i| {
                at[i..]
                    .iter()
                    .take_while(|t| t.duration_since(at[i]) < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(busiest <= 100, "{busiest} parts in one second");
    }
}
