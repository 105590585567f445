//! Emergency-broadcast terminals (应急广播, the loudspeaker on the pole): the last mile, and
//! what its two channels share.
//!
//! A warning's broadcast is a job per (warning version, route), written by the decision hook
//! in the decision's transaction ([`jobs`]); the spoken script comes from a template
//! ([`script`]) and its audio from espeak-ng's Mandarin voice after an alert tone, as MP3
//! ([`audio`]). Two channels carry jobs to terminals, each a folder of its own:
//! [`crate::dispatch::platform`] (the county emergency-broadcast platform, EBD/EBM) and
//! [`crate::dispatch::icecast`] (IP speakers pulling an Icecast mount).

pub mod audio;
pub mod jobs;
pub mod script;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::store::Store;
use audio::{Audio, Synth};

/// `[dispatch.broadcast]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BroadcastSettings {
    /// Terminals must confirm play within this many minutes of the decision.
    #[serde(default = "default_deadline")]
    pub deadline_mins: u32,
    /// Where audio is cached (default: `audio/` beside the store).
    #[serde(default)]
    pub audio_cache: Option<PathBuf>,
    /// `[dispatch.broadcast.platform]`: the county emergency-broadcast platform.
    #[serde(default)]
    pub platform: Option<crate::dispatch::platform::PlatformSettings>,
    /// `[dispatch.broadcast.icecast]`: IP speakers pulling Icecast mounts.
    #[serde(default)]
    pub icecast: Option<crate::dispatch::icecast::IcecastSettings>,
}

fn default_deadline() -> u32 {
    10
}

impl Default for BroadcastSettings {
    fn default() -> Self {
        BroadcastSettings {
            deadline_mins: default_deadline(),
            audio_cache: None,
            platform: None,
            icecast: None,
        }
    }
}

impl BroadcastSettings {
    /// The routes configured.
    pub fn routes(&self) -> jobs::Routes {
        jobs::Routes {
            platform: self.platform.is_some(),
            icecast: self.icecast.is_some(),
        }
    }
}

/// Render a job's audio (espeak-ng, then ffmpeg) off the async threads.
pub(crate) async fn render(synth: &Arc<Synth>, script: &str, kbps: u32) -> anyhow::Result<Audio> {
    let synth = synth.clone();
    let script = script.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Audio> {
        let wav = synth.render(&script)?;
        Ok(synth.mp3(&wav, kbps)?)
    })
    .await?
}

/// 2, 4, 8 … seconds, at most a minute.
pub(crate) fn backoff(attempts: i64) -> SignedDuration {
    SignedDuration::from_secs(2i64.saturating_mul(1 << attempts.clamp(0, 5)).min(60))
}

/// A route's housekeeping at every turn: jobs past `keep` retired, and terminals or
/// broadcasts past their deadline reported to respond (even while the route is down). One
/// write for both: it runs four times a second and mostly finds nothing.
pub(crate) async fn deadlines(
    store: &Store,
    route: &'static str,
    now: Timestamp,
    keep: SignedDuration,
) -> anyhow::Result<()> {
    let raised = store
        .write(move |tx| {
            jobs::retire(tx, route, now, keep)?;
            jobs::deadlines(tx, route, now)
        })
        .await?;
    if raised > 0 {
        tracing::warn!(
            route,
            raised,
            "broadcast: terminals or broadcasts past their deadline reported to respond"
        );
    }
    Ok(())
}

/// The jobs a channel is sending now: a job stays `queued` in the store until its send is
/// recorded, so a claim leaves out those already under way.
#[derive(Debug, Default)]
pub(crate) struct InFlight(Mutex<HashSet<i64>>);

impl InFlight {
    /// Of the due jobs, those not under way, now marked under way.
    pub(crate) fn take(&self, due: Vec<jobs::Due>) -> Vec<jobs::Due> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        due.into_iter().filter(|j| g.insert(j.id)).collect()
    }

    /// A job's send has ended (and written its outcome).
    pub(crate) fn done(&self, id: i64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_minute() {
        assert_eq!(backoff(0), SignedDuration::from_secs(2));
        assert_eq!(backoff(10), SignedDuration::from_secs(60));
    }
}
