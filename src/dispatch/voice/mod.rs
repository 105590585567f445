//! Voice calls (电话叫应): ringing the responsible person until they answer, playing the
//! warning, and hearing which key they press.
//!
//! A SIP user agent of our own over the county's trunk or PBX ([`call`]): digest
//! authentication ([`digest`]), an SDP offer of G.711 at 8 kHz with `telephone-event`
//! ([`sdp`]), RTP audio paced at 20 ms and RFC 4733 keys ([`rtp`]), SIP INFO keys as a
//! fallback. [`Trunk`] holds the contract's limits: calls in progress at once, new calls per
//! second, and never two calls at once to one number. A trunk that wants registration gets it
//! ([`register`]).
//!
//! What the phone hears is the loudspeaker's audio (the alert tone and the warning, from
//! espeak-ng) followed by the prompt of `templates/voice/prompt.{lang}.j2`, resampled to
//! 8 kHz ([`Prompt::from_wav`]).

pub mod call;
pub mod channel;
pub mod digest;
pub mod register;
pub mod rtp;
pub mod sdp;
pub mod settings;
pub mod sip;

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

pub use call::{Outcome, Prompt};
pub use channel::{NAME, VoiceChannel};
pub use settings::{Transport, TrunkSettings, VoiceSettings};

impl Prompt {
    /// The prompt from a 16-bit mono WAV at any rate (the broadcast audio), resampled to 8 kHz.
    /// CPU work: call it off the async workers (`spawn_blocking`).
    pub fn from_wav(wav: &[u8], rounds: u32, linger: Duration) -> anyhow::Result<Prompt> {
        let (rate, samples) = crate::dispatch::broadcast::audio::wav_samples(wav)
            .ok_or_else(|| anyhow::anyhow!("the call's audio is not a 16-bit mono PCM WAV"))?;
        Ok(Prompt {
            samples: Arc::new(rtp::to_8k(&samples, rate)),
            rounds,
            linger,
        })
    }

    /// How long one round lasts.
    pub fn length(&self) -> Duration {
        Duration::from_millis(self.samples.len() as u64 / 8)
    }
}

/// The words of the prompt after the warning, in `lang` (`templates/voice/prompt.{lang}.j2`).
pub fn prompt_words(lang: &str) -> anyhow::Result<String> {
    let lang = crate::templates::lang(lang);
    Ok(crate::templates::env()?
        .get_template(&format!("voice/prompt.{lang}"))?
        .render(minijinja::context! {})?
        .trim()
        .to_string())
}

/// Why a call was not placed at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// A call to this number is in progress: one person is never rung twice at once.
    #[error("a call to {0} is already in progress")]
    InCall(String),
}

/// One trunk and its limits, shared by every call placed through it.
pub struct Trunk {
    /// As configured.
    pub settings: TrunkSettings,
    slots: Semaphore,
    pace: DefaultDirectRateLimiter,
    calling: Mutex<HashSet<String>>,
}

impl Trunk {
    /// A trunk with its limits (at least one call, one call per second).
    pub fn new(settings: TrunkSettings) -> Trunk {
        let per_sec = NonZeroU32::new(settings.calls_per_sec).unwrap_or(NonZeroU32::MIN);
        Trunk {
            slots: Semaphore::new(settings.max_calls.max(1)),
            pace: RateLimiter::direct(Quota::per_second(per_sec)),
            calling: Mutex::new(HashSet::new()),
            settings,
        }
    }

    /// Calls in progress now.
    pub fn in_progress(&self) -> usize {
        self.settings.max_calls.max(1) - self.slots.available_permits()
    }

    /// Whether `number` is being rung (or talked to) now.
    pub fn calling(&self, number: &str) -> bool {
        let c = self.calling.lock().unwrap_or_else(|p| p.into_inner());
        c.contains(number)
    }

    /// Ring `number` and play `prompt`: waits for a free line and for the trunk's pace, then
    /// places the call. Refused at once if the number is already being rung.
    pub async fn call(&self, number: &str, prompt: &Prompt) -> Result<Outcome, Refused> {
        {
            let mut c = self.calling.lock().unwrap_or_else(|p| p.into_inner());
            if !c.insert(number.to_string()) {
                return Err(Refused::InCall(number.to_string()));
            }
        }
        // Taken off the list however the call ends (also when the future is dropped).
        struct Done<'a>(&'a Trunk, &'a str);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                let mut c = self.0.calling.lock().unwrap_or_else(|p| p.into_inner());
                c.remove(self.1);
            }
        }
        let _done = Done(self, number);
        let Ok(_line) = self.slots.acquire().await else {
            return Ok(Outcome::Failed {
                reason: "the trunk is closed".into(),
            });
        };
        self.pace.until_ready().await;
        Ok(call::place(&self.settings, number, prompt).await)
    }
}
