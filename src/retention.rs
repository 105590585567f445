//! Retention: what the daemon deletes as it ages, so a county's database stays the size of
//! what it needs, season after season.
//!
//! Only the bulk that nothing reads again goes, each table by the module that owns it:
//! documents fetched from feeds, the keys of items already seen, inbox entries already
//! consumed, receipts and replies already handled, refusal tallies. The audit trail, every
//! warning, decision, message, answer and evacuation figure stay for ever: they are the record
//! a report and an inquiry read.
//!
//! Two bounds keep a prune from reaching into a live storm:
//! - nothing younger than the configured period (`store.retention_days`, 400 by default:
//!   past the next season) and nothing after the first message of a warning still in force;
//! - the rain a warning's report charts (`respond::report::rain_window`: from six hours before
//!   its first message to an hour after the last thing in its record) is kept whatever its age.
//!
//! Deletes go in chunks of [`CHUNK`] rows per table, one short write each, so the pipeline's
//! writes interleave with a first sweep over a year of rows.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::runtime::{Clock, Shutdown};
use crate::store::{Store, audit, stamp};

/// Rows per table per write.
pub const CHUNK: usize = 5_000;

/// How long rows are kept and how often the daemon sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Rows older than this may go.
    pub keep: SignedDuration,
    /// Time between sweeps (the first comes at start).
    pub every: Duration,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// The effective cutoff (a store stamp): nothing at or after it was touched.
    pub cutoff: String,
    /// Rows deleted per table (tables with none left out).
    pub deleted: Vec<(String, usize)>,
}

impl Swept {
    /// Rows deleted in all.
    pub fn total(&self) -> usize {
        self.deleted.iter().map(|(_, n)| n).sum()
    }
}

/// The cutoff and the spans to keep, as of `now`.
fn plan(
    c: &crate::store::sql::Conn<'_>,
    now: Timestamp,
    keep: SignedDuration,
) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let mut cutoff = now - keep;
    let mut spans = Vec::new();
    for (lineage, first, lifted) in crate::correlate::store::lifetimes(c)? {
        if lifted {
            if let Some(span) = crate::respond::report::rain_window(c, &lineage)? {
                spans.push(span);
            }
        } else {
            // In force: nothing from its start on is touched (nor the rain before it that
            // its report will chart).
            cutoff = cutoff.min(first - crate::respond::report::RAIN_BEFORE);
        }
    }
    spans.sort();
    let mut merged: Vec<(Timestamp, Timestamp)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(m) if a <= m.1 => m.1 = m.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ok((
        stamp(cutoff),
        merged
            .into_iter()
            .map(|(a, b)| (stamp(a), stamp(b)))
            .collect(),
    ))
}

/// Sweep once, as of `now`: delete what is past the period in every owner's tables, chunk by
/// chunk, and record the sweep in the audit trail when it deleted anything.
pub async fn sweep(store: &Store, now: Timestamp, keep: SignedDuration) -> anyhow::Result<Swept> {
    let (cutoff, spans) = store.read(move |c| plan(c, now, keep)).await?;
    let mut totals: std::collections::BTreeMap<String, usize> = Default::default();
    loop {
        let (cut, spans) = (cutoff.clone(), spans.clone());
        let round = store
            .write(move |tx| {
                let handled = crate::respond::intake::replies_handled(tx)?;
                let mut all = crate::feeds::state::prune(tx, &cut, &spans, CHUNK)?;
                all.extend(crate::dispatch::outbox::prune(tx, &cut, handled, CHUNK)?);
                Ok(all)
            })
            .await?;
        let mut more = false;
        for (table, n) in round {
            if n > 0 {
                *totals.entry(table.to_string()).or_default() += n;
            }
            more |= n >= CHUNK;
        }
        if !more {
            break;
        }
    }
    let swept = Swept {
        cutoff,
        deleted: totals.into_iter().collect(),
    };
    if swept.total() > 0 {
        let detail = serde_json::json!({
            "cutoff": swept.cutoff,
            "deleted": swept.deleted.iter().map(|(t, n)| (t.clone(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
        });
        let entry = audit::Entry::utc(now, "system", "store.pruned", "retention", detail);
        store
            .write(move |tx| Ok(audit::append(tx, &entry)?))
            .await?;
    }
    Ok(swept)
}

/// Sweep at start and then every `settings.every` until shutdown. A failed sweep is logged and
/// tried again at the next; it never stops the daemon.
pub async fn run(store: Store, settings: Settings, clock: Arc<dyn Clock>, mut shutdown: Shutdown) {
    loop {
        match sweep(&store, clock.now(), settings.keep).await {
            Ok(s) if s.total() > 0 => tracing::info!(
                cutoff = %s.cutoff,
                rows = s.total(),
                "retention: deleted {} rows older than the period ({:?})",
                s.total(),
                s.deleted
            ),
            Ok(_) => {}
            Err(e) => tracing::error!("retention: sweep failed: {e:#}"),
        }
        let next = clock.elapsed() + settings.every;
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = shutdown.recv() => return,
        }
    }
}
