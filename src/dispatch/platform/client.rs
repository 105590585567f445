//! The platform's HTTP exchange: one signed EBD package POSTed, one answer package read.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use super::ebd::{self, Endpoint, Reply};
use super::settings::PlatformSettings;
use super::sign::Signer;

/// Ids that stay unique across restarts and databases: milliseconds since the epoch times a
/// thousand, plus a counter (16 digits until the year 2286).
#[derive(Debug, Default)]
pub struct Sequence(AtomicI64);

impl Sequence {
    /// The next id.
    pub fn next(&self) -> i64 {
        let base = jiff::Timestamp::now().as_millisecond() * 1000;
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let n = base.max(cur + 1);
            match self
                .0
                .compare_exchange(cur, n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return n % 10_000_000_000_000_000,
                Err(c) => cur = c,
            }
        }
    }
}

/// The most of a platform's answer read (an EBDResponse or state report is a few KB).
const ANSWER_LIMIT: usize = 4 * 1024 * 1024;

/// Why an exchange with the platform did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Not reached, timed out, or an HTTP error: try again.
    #[error("platform unreachable: {0}")]
    Unreachable(String),
    /// It answered something unreadable.
    #[error("platform answer unreadable: {0}")]
    Unreadable(String),
}

/// A county emergency-broadcast platform.
pub struct Platform {
    pub(super) settings: PlatformSettings,
    ep: Endpoint,
    signer: Box<dyn Signer>,
    http: reqwest::Client,
    seq: Sequence,
}

impl Platform {
    /// From settings (the signer's key is read now: a bad key stops start-up).
    pub fn new(
        settings: PlatformSettings,
        sender: &str,
        tz: jiff::tz::TimeZone,
    ) -> anyhow::Result<Platform> {
        for (key, v) in [("src", &settings.src), ("dest", &settings.dest)] {
            if !ebd::valid_ebrid(v) {
                anyhow::bail!(
                    "dispatch.broadcast.platform.{key} {v:?} is not an 18-digit resource code (EBRID)"
                );
            }
        }
        let signer = settings.signer.build()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .build()?;
        Ok(Platform {
            ep: Endpoint {
                src: settings.src.clone(),
                dest: settings.dest.clone(),
                sender: sender.into(),
                tz,
            },
            settings,
            signer,
            http,
            seq: Sequence::default(),
        })
    }

    /// A new EBMID.
    pub fn new_ebm_id(&self) -> String {
        ebd::ebm_id(&self.ep.src, self.seq.next())
    }

    /// POST one package and read the answer.
    pub(super) async fn exchange(
        &self,
        build: impl FnOnce(&Endpoint, &str, Timestamp) -> Vec<u8>,
        files: &[(&str, &[u8])],
    ) -> Result<Reply, PlatformError> {
        let now = Timestamp::now();
        let id = ebd::ebd_id(&self.ep.src, self.seq.next());
        let doc = build(&self.ep, &id, now);
        let tar = ebd::package(&id, &doc, self.signer.as_ref(), now, files)
            .map_err(|e| PlatformError::Unreadable(format!("packaging: {e:#}")))?;
        let resp = self
            .http
            .post(&self.settings.url)
            .header("Content-Type", "application/x-tar")
            .body(tar)
            .send()
            .await
            .map_err(|e| PlatformError::Unreachable(format!("{}: {e}", self.settings.url)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(PlatformError::Unreachable(format!(
                "{} answered HTTP {status}",
                self.settings.url
            )));
        }
        // An answer is a small tar of XML; anything larger is not one (and is not read whole).
        let body = crate::http::read_capped(resp, &self.settings.url, ANSWER_LIMIT)
            .await
            .map_err(|e| match e {
                crate::http::FetchError::TooLarge { .. } => {
                    PlatformError::Unreadable(e.to_string())
                }
                e => PlatformError::Unreachable(e.to_string()),
            })?;
        ebd::read_reply(&body, &self.ep).map_err(|e| PlatformError::Unreadable(format!("{e:#}")))
    }
}
