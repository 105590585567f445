//! The platform channel: each broadcast job becomes an EBM instruction to the county
//! emergency-broadcast platform, seen through to every terminal's report.
//!
//! Package the EBM (script, area codes, the MP3 as an auxiliary resource), sign it, POST it,
//! read the `EBDResponse`; then poll `EBMStateRequest` until every terminal has reported. A
//! heartbeat (`ConnectionCheck`) and a terminal-state report (`OMDRequest` for `EBRDTState`)
//! run on their own timer. Unreachable: retried with backoff; refused (signature, content):
//! failed and alarmed at once. Past a job's deadline, every terminal that has not confirmed
//! play is `unconfirmed` and an alarm waits in `broadcast_alarm` for respond. The loop around
//! it is [`crate::dispatch::drive`]'s; one instruction is in flight at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::SignedDuration;

use super::client::Platform;
use super::ebd::{self, Auxiliary, Ebm, MsgType, Reply};
use crate::dispatch::Channel;
use crate::dispatch::broadcast::jobs::{self, Due, Report};
use crate::dispatch::broadcast::{self, InFlight, audio::Synth};
use crate::runtime::{Clock, SystemClock};
use crate::store::Store;

/// The route's name in `broadcast_job`, and the channel's stage name.
pub const NAME: &str = "platform";

/// The platform channel.
pub struct PlatformChannel {
    platform: Arc<Platform>,
    store: Store,
    synth: Arc<Synth>,
    clock: Arc<dyn Clock>,
    /// Hazard → national event type code (`11B…`), from the warning rules.
    event_types: HashMap<String, String>,
    /// Jobs older than this are no longer tracked.
    keep: SignedDuration,
    /// End of play window written into the instruction.
    play_for: SignedDuration,
    /// A drill: instructions are marked as tests.
    exercise: bool,
    /// Jobs being sent now (a job stays `queued` until its send is recorded).
    in_flight: InFlight,
    /// When the next heartbeat is due.
    next_beat: Mutex<tokio::time::Instant>,
}

impl PlatformChannel {
    /// A channel driving a county platform.
    pub fn new(
        platform: Platform,
        store: Store,
        synth: Synth,
        keep: SignedDuration,
    ) -> PlatformChannel {
        PlatformChannel {
            platform: Arc::new(platform),
            store,
            synth: Arc::new(synth),
            clock: Arc::new(SystemClock::new()),
            event_types: HashMap::new(),
            keep,
            play_for: keep,
            exercise: false,
            in_flight: InFlight::default(),
            next_beat: Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Stamp records with this clock (a replay's simulated one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> PlatformChannel {
        self.clock = clock;
        self
    }

    /// Mark instructions as a drill (`TestType` 1), as the texts are.
    pub fn with_exercise(mut self, exercise: bool) -> PlatformChannel {
        self.exercise = exercise;
        self
    }

    /// National event type codes per hazard (for the instruction's `EventType`).
    pub fn with_event_types(mut self, codes: HashMap<String, String>) -> PlatformChannel {
        self.event_types = codes;
        self
    }

    fn beat_due(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut next = self.next_beat.lock().unwrap_or_else(|p| p.into_inner());
        if now < *next {
            return false;
        }
        *next = now + Duration::from_secs(self.platform.settings.heartbeat_secs.max(1));
        true
    }

    async fn heartbeat(&self) -> anyhow::Result<()> {
        let p = &self.platform;
        let check = p.exchange(ebd::connection_check, &[]).await;
        let now = self.clock.now();
        let verdict: Result<(), String> = match check {
            Ok(Reply::Response { code, .. }) if code == "1" => Ok(()),
            Ok(other) => Err(format!("heartbeat answered {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &verdict {
            tracing::warn!("broadcast platform heartbeat: {e}");
        }
        let v = verdict.clone();
        self.store
            .write(move |tx| {
                jobs::link(
                    tx,
                    "platform",
                    v.as_ref().map(|_| ()).map_err(String::as_str),
                    now,
                )
            })
            .await?;
        if verdict.is_ok()
            && let Ok(Reply::Terminals(states)) = p.exchange(ebd::terminal_state_request, &[]).await
        {
            let offline = states.iter().filter(|s| !s.online).count();
            if offline > 0 {
                tracing::warn!(
                    offline,
                    "broadcast terminals offline by the platform's report"
                );
            }
            self.store
                .write(move |tx| jobs::terminal_states(tx, &states, now))
                .await?;
        }
        Ok(())
    }

    async fn send_platform(&self, job: Due) -> anyhow::Result<()> {
        let p = &self.platform;
        let id = job.id;
        let ebm_id = match &job.ebm_id {
            Some(e) => e.clone(),
            None => {
                let e = p.new_ebm_id();
                let e2 = e.clone();
                self.store
                    .write(move |tx| jobs::assign_ebm(tx, id, &e2))
                    .await?;
                e
            }
        };
        let cancel = job.send == "Cancel";
        let audio = if p.settings.audio && !cancel {
            match broadcast::render(&self.synth, &job.script, p.settings.kbps).await {
                Ok(a) => Some(a),
                Err(e) => {
                    // No audio is no reason to stay silent: the platform speaks the text.
                    tracing::error!(
                        job = id,
                        "broadcast audio failed, sending the text for the platform to speak: {e:#}"
                    );
                    None
                }
            }
        } else {
            None
        };
        let bytes = match &audio {
            Some(a) => Some(tokio::fs::read(&a.path).await?),
            None => None,
        };
        let file = audio
            .as_ref()
            .map(|a| format!("EBDI_{}_{}.mp3", ebm_id, &a.sha256[..16]));
        let now = self.clock.now();
        let ebm = Ebm {
            ebm_id: ebm_id.clone(),
            related: job.related.clone(),
            msg_type: if cancel { MsgType::Stop } else { MsgType::Play },
            test: self.exercise,
            severity: severity(&job.tier),
            event_type: self
                .event_types
                .get(&job.hazard)
                .cloned()
                .unwrap_or_default(),
            title: job.title.clone(),
            text: job.script.clone(),
            areas: job.areas.clone(),
            start: now,
            end: now + self.play_for,
            audio: match (&file, &bytes) {
                (Some(f), Some(b)) => Some(Auxiliary::of(f.clone(), b)),
                _ => None,
            },
        };
        let files: Vec<(&str, &[u8])> = match (&file, &bytes) {
            (Some(f), Some(b)) => vec![(f.as_str(), b.as_slice())],
            _ => vec![],
        };
        let reply = p
            .exchange(|ep, ebd, at| ebd::ebm_document(ep, ebd, &ebm, at), &files)
            .await;
        let now = self.clock.now();
        let sha = audio.as_ref().map(|a| a.sha256.clone());
        let poll = now + SignedDuration::from_secs(p.settings.poll_secs.max(1) as i64);
        match reply {
            Ok(Reply::Response { code, desc }) if code == "1" => {
                tracing::info!(job = id, ebm = %ebm_id, areas = job.areas.len(), "broadcast accepted by the platform");
                let result = format!("{code} {desc}");
                self.store
                    .write(move |tx| {
                        jobs::sent(tx, id, sha.as_deref(), &result, now, poll)?;
                        if cancel {
                            jobs::reported(tx, id, &[], &result, None, now, now)?;
                        }
                        Ok::<_, anyhow::Error>(())
                    })
                    .await?;
            }
            Ok(Reply::Response { code, desc }) if code == "5" && cancel => {
                let result = format!("{code} {desc} (nothing to stop)");
                self.store
                    .write(move |tx| {
                        jobs::sent(tx, id, None, &result, now, now)?;
                        jobs::reported(tx, id, &[], &result, None, now, now)
                    })
                    .await?;
            }
            Ok(Reply::Response { code, desc }) => {
                let why = format!("the platform refused broadcast {ebm_id}: code {code} {desc}");
                tracing::error!(job = id, "{why}");
                self.store
                    .write(move |tx| jobs::refused(tx, id, &why, now))
                    .await?;
            }
            Ok(other) => {
                let why = format!("the platform answered an instruction with {other:?}");
                self.store
                    .write(move |tx| jobs::refused(tx, id, &why, now))
                    .await?;
            }
            Err(e) => {
                let wait = broadcast::backoff(job.attempts);
                let why = e.to_string();
                tracing::warn!(
                    job = id,
                    attempt = job.attempts + 1,
                    "broadcast not delivered to the platform, again in {wait:?}: {why}"
                );
                self.store
                    .write(move |tx| jobs::retry(tx, id, &why, now, now + wait))
                    .await?;
            }
        }
        Ok(())
    }

    async fn poll_platform(&self) -> anyhow::Result<()> {
        let p = &self.platform;
        let now = self.clock.now();
        let tracked = self
            .store
            .read(move |c| jobs::to_poll(c, "platform", now))
            .await?;
        for t in tracked {
            let Some(ebm_id) = t.ebm_id.clone() else {
                continue;
            };
            let reply = p
                .exchange(|ep, ebd, at| ebd::state_request(ep, ebd, &ebm_id, at), &[])
                .await;
            let now = self.clock.now();
            let past = now >= t.deadline;
            // Before the deadline, poll at the configured pace; after it, slower (a late
            // report still turns an unconfirmed terminal into a played one).
            let pace = if past {
                p.settings.poll_secs.max(1) * 6
            } else {
                p.settings.poll_secs.max(1)
            };
            let next = now + SignedDuration::from_secs(pace as i64);
            let id = t.id;
            match reply {
                Ok(Reply::State {
                    code,
                    desc,
                    coverage,
                    terminals,
                }) => {
                    let reports: Vec<Report> = terminals
                        .into_iter()
                        .map(|x| Report {
                            terminal: x.ebrid,
                            code: x.code,
                            desc: x.desc,
                        })
                        .collect();
                    let result = format!("{code} {desc}");
                    self.store
                        .write(move |tx| {
                            jobs::reported(tx, id, &reports, &result, coverage, now, next)
                        })
                        .await?;
                }
                Ok(Reply::Response { code, desc }) => {
                    let why = format!("state of {ebm_id}: code {code} {desc}");
                    if code == "5" {
                        self.store
                            .write(move |tx| jobs::refused(tx, id, &why, now))
                            .await?;
                    } else {
                        self.store
                            .write(move |tx| jobs::poll_later(tx, id, Some(&why), now, next))
                            .await?;
                    }
                }
                Ok(other) => {
                    let why = format!("state request answered {other:?}");
                    self.store
                        .write(move |tx| jobs::poll_later(tx, id, Some(&why), now, next))
                        .await?;
                }
                Err(e) => {
                    let why = e.to_string();
                    self.store
                        .write(move |tx| jobs::poll_later(tx, id, Some(&why), now, next))
                        .await?;
                }
            }
        }
        Ok(())
    }
}

impl Channel for PlatformChannel {
    type Item = Due;
    type Outcome = anyhow::Result<()>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn window(&self) -> usize {
        // One instruction at a time: the platform answers each before the next.
        1
    }

    async fn turn(&self) -> anyhow::Result<()> {
        // Deadlines first: a terminal silent past its deadline is reported even while the
        // platform is unreachable.
        broadcast::deadlines(&self.store, NAME, self.clock.now(), self.keep).await?;
        if self.beat_due() {
            self.heartbeat().await?;
        }
        self.poll_platform().await
    }

    async fn claim(&self, n: usize) -> anyhow::Result<Vec<Due>> {
        let now = self.clock.now();
        let due = self.store.read(move |c| jobs::due(c, NAME, now, n)).await?;
        Ok(self.in_flight.take(due))
    }

    async fn send(self: Arc<Self>, job: Due) -> anyhow::Result<()> {
        let id = job.id;
        let r = self.send_platform(job).await;
        self.in_flight.done(id);
        r
    }

    async fn record(&self, batch: Vec<anyhow::Result<()>>) -> anyhow::Result<()> {
        // Each send wrote its own outcome; a failed write fails the run.
        batch.into_iter().collect()
    }
}

/// The instruction's severity: 1 (red) … 4 (blue).
fn severity(tier: &str) -> u8 {
    match tier {
        "red" => 1,
        "orange" => 2,
        "yellow" => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_unique_and_sixteen_digits() {
        let s = super::super::client::Sequence::default();
        let a: Vec<i64> = (0..1000).map(|_| s.next()).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(b.len(), 1000);
        assert!(a.iter().all(|n| format!("{n:016}").len() == 16));
        assert_eq!(severity("red"), 1);
    }
}
