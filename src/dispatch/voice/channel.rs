//! The voice channel: claims due calls from the outbox (channel `voice`), speaks each one's
//! words after the alert tone with the keys' prompt (espeak-ng, cached by content), rings the
//! person through the least busy trunk, and records every ring. The loop around it is
//! [`crate::dispatch::drive`]'s: a call in progress holds a window slot until its ring is
//! committed, so a stop mid-call leaves the row `submitting`, and the next start's
//! reconciliation queues it again, counted as uncertain (rung once more rather than never).

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;

use super::settings::VoiceSettings;
use super::{Outcome, Prompt, Refused, Trunk};
use crate::dispatch::Channel;
use crate::dispatch::broadcast::audio::Synth;
use crate::dispatch::outbox::{self, CallOutcome, Called, Claimed, Lane, Policy, Ring, RingRules};
use crate::runtime::{Clock, SystemClock};
use crate::store::Store;

/// The name the channel claims outbox rows by (`claimed_by`), and its stage's name.
pub const NAME: &str = "voice";

/// The voice channel.
pub struct VoiceChannel {
    trunks: Vec<Arc<Trunk>>,
    lane: Lane,
    synth: Synth,
    rules: RingRules,
    rounds: u32,
    linger: Duration,
}

impl VoiceChannel {
    /// A channel over these trunks, speaking with `synth`.
    pub fn new(
        settings: &VoiceSettings,
        store: Store,
        policy: Policy,
        synth: Synth,
    ) -> VoiceChannel {
        let secs = |s: u64| SignedDuration::from_secs(s.min(i64::MAX as u64) as i64);
        VoiceChannel {
            trunks: settings
                .trunks
                .iter()
                .map(|t| Arc::new(Trunk::new(t.clone())))
                .collect(),
            lane: Lane {
                store,
                policy,
                clock: Arc::new(SystemClock::new()),
                name: NAME,
                channel: "voice",
                swept: Default::default(),
            },
            synth,
            rules: RingRules {
                attempts: settings.attempts.max(1),
                busy: secs(settings.retry_busy_secs),
                no_answer: secs(settings.retry_no_answer_secs),
                unreachable: secs(settings.retry_unreachable_secs),
            },
            rounds: settings.rounds.max(1),
            linger: Duration::from_secs(settings.linger_secs),
        }
    }

    /// Stamp claims and rings with this clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> VoiceChannel {
        self.lane.clock = clock;
        self
    }

    /// The trunk with the most free lines.
    fn trunk(&self) -> Option<&Arc<Trunk>> {
        self.trunks
            .iter()
            .max_by_key(|t| t.settings.max_calls.saturating_sub(t.in_progress()))
    }

    /// The words, the prompt after them, as audio a phone plays.
    async fn prompt(&self, words: &str) -> anyhow::Result<Prompt> {
        let script = format!("{words} {}", super::prompt_words(&self.lane.policy.lang)?);
        let (synth, rounds, linger) = (self.synth.clone(), self.rounds, self.linger);
        // espeak-ng and the resampling are CPU work: off the async workers.
        tokio::task::spawn_blocking(move || {
            let audio = synth.render(&script)?;
            let wav = std::fs::read(&audio.path)?;
            Prompt::from_wav(&wav, rounds, linger)
        })
        .await?
    }
}

/// A call's outcome as a ring to record.
fn ring_of(trunk: &str, o: Outcome) -> Ring {
    let mut r = Ring {
        trunk: trunk.to_string(),
        outcome: CallOutcome::Failed,
        code: None,
        key: None,
        via: None,
        heard_ms: None,
        detail: None,
    };
    match o {
        Outcome::Acknowledged { key, after, via } => {
            r.outcome = CallOutcome::Acknowledged;
            r.key = Some(key);
            r.via = Some(via.into());
            r.heard_ms = Some(after.as_millis() as i64);
        }
        Outcome::AnsweredNoKey { heard, hung_up } => {
            r.outcome = CallOutcome::AnsweredNoKey;
            r.heard_ms = Some(heard.as_millis() as i64);
            r.detail = hung_up.then(|| "the person hung up before pressing a key".into());
        }
        Outcome::Busy { code } => {
            r.outcome = CallOutcome::Busy;
            r.code = Some(code);
        }
        Outcome::NoAnswer { code, rang } => {
            r.outcome = CallOutcome::NoAnswer;
            r.code = code;
            r.detail = Some(if rang {
                "rang, no answer".into()
            } else {
                "no answer (it never rang)".into()
            });
        }
        Outcome::Rejected { code } => {
            r.outcome = CallOutcome::Rejected;
            r.code = Some(code);
        }
        Outcome::Unreachable { code, reason } => {
            r.outcome = CallOutcome::Unreachable;
            r.code = code;
            r.detail = Some(reason);
        }
        Outcome::Failed { reason } => r.detail = Some(reason),
    }
    r
}

impl Channel for VoiceChannel {
    type Item = Claimed;
    type Outcome = (i64, Called);

    fn name(&self) -> &'static str {
        NAME
    }

    fn window(&self) -> usize {
        self.trunks
            .iter()
            .map(|t| t.settings.max_calls.max(1))
            .sum()
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        self.lane.reconcile().await
    }

    async fn start(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        shutdown: &crate::runtime::Shutdown,
    ) -> anyhow::Result<()> {
        for t in self.trunks.iter().filter(|t| t.settings.register) {
            tasks.spawn(super::register::keep_registered(
                t.settings.clone(),
                shutdown.clone(),
            ));
        }
        Ok(())
    }

    fn room(&self) -> Option<usize> {
        Some(
            self.trunks
                .iter()
                .map(|t| t.settings.max_calls.max(1).saturating_sub(t.in_progress()))
                .sum(),
        )
    }

    async fn claim(&self, n: usize) -> anyhow::Result<Vec<Claimed>> {
        self.lane.claim(n).await
    }

    async fn send(self: Arc<Self>, m: Claimed) -> (i64, Called) {
        let Some(trunk) = self.trunk().cloned() else {
            return (
                m.id,
                Called::NotPlaced {
                    reason: "no SIP trunk is configured".into(),
                    after: SignedDuration::from_mins(1),
                },
            );
        };
        let prompt = match self.prompt(&m.text).await {
            Ok(p) => p,
            Err(e) => {
                let r = ring_of(
                    &trunk.settings.name,
                    Outcome::Failed {
                        reason: format!("the call's audio could not be made: {e:#}"),
                    },
                );
                return (m.id, Called::Rang(r));
            }
        };
        match trunk.call(&m.address, &prompt).await {
            Ok(o) => (m.id, Called::Rang(ring_of(&trunk.settings.name, o))),
            Err(Refused::InCall(n)) => (
                m.id,
                Called::NotPlaced {
                    reason: format!("{n} is on another call of ours"),
                    after: SignedDuration::from_secs(30),
                },
            ),
        }
    }

    async fn record(&self, batch: Vec<(i64, Called)>) -> anyhow::Result<()> {
        let (rules, now) = (self.rules.clone(), self.lane.clock.now());
        Ok(self
            .lane
            .store
            .write(move |tx| outbox::record_rings(tx, &batch, now, &rules))
            .await?)
    }

    fn idle(&self, _room: usize) -> Duration {
        Duration::from_millis(500)
    }
}
