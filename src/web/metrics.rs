//! `/metrics`: the daemon's figures in the Prometheus text format (version 0.0.4), read from
//! the store at each scrape (the store is the truth; no counters in memory to drift or to be
//! lost on restart). Nothing personal is exported: no names, numbers or feed addresses.
//!
//! - `stormbell_warnings_active{hazard,tier}`: warnings in force;
//! - `stormbell_messages{channel,state}`: the outbox;
//! - `stormbell_broadcast_terminals{route,state}`: loudspeaker targets;
//! - `stormbell_calls{state}`, `stormbell_escalation_steps{action,state}`: call and respond;
//! - `stormbell_ack_seconds`: histogram of time from call to the person's own answer;
//! - `stormbell_evacuation_people{figure}`, `stormbell_places{answer}`: the board's county
//!   line (the evacuation ledger), when the registry is at hand;
//! - `stormbell_feed_up{feed}`, `stormbell_feed_gap{feed}`, `stormbell_feed_failures{feed}`,
//!   `stormbell_feed_polls_total{feed}`: feed health; `stormbell_feed_refused_total{feed,reason}`:
//!   frames a listening feed refused.
//!
//! - `stormbell_smsc_binds{account,state}`, `stormbell_outbox_overdue_seconds{channel}`: the
//!   carriers' links and the backlog;
//! - `stormbell_audit_entries`, `stormbell_audit_chain_ok`: the trail, verified at each scrape
//!   from where the last one ended (and whole once an hour);
//! - `stormbell_store_bytes`, `stormbell_store_disk_free_bytes`,
//!   `stormbell_store_disk_size_bytes`: the database and the disk under it.
//!
//! The alert rules shipped beside the program (packaging/prometheus/) use these names.
//!
//! The office's reverse proxy should not publish `/metrics` beyond the monitoring network.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::store::sql::Conn;

/// Upper bounds of the acknowledgement histogram, seconds: a red warning's ladder works in
/// minutes (5, 10, 15), so the buckets do too.
pub const ACK_BUCKETS: [f64; 9] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
];

/// Label values escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition; with the registry, the evacuation ledger's county figures too.
pub fn render(c: &Conn<'_>, reg: Option<&crate::registry::Registry>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(4096);
    // Nodes sharing a PostgreSQL store: each one's role and the age of its last heartbeat.
    let nodes = crate::store::lease::nodes(c)?;
    if !nodes.is_empty() {
        family(
            &mut out,
            "stormbell_node_heartbeat_age_seconds",
            "gauge",
            "Seconds since each node's last heartbeat, by node and role (leader, standby, stopped).",
        );
        for n in &nodes {
            let _ = writeln!(
                out,
                "stormbell_node_heartbeat_age_seconds{{node=\"{}\",role=\"{}\"}} {:.3}",
                label(&n.node),
                label(&n.role),
                n.seen_secs
            );
        }
    }
    if let Some(reg) = reg {
        // The same figures as the board's county line (ARCHITECTURE.md, "The evacuation
        // ledger"), read as a summary: no place rows, which a scrape does not show.
        let b = crate::respond::board::read_scoped(
            c,
            reg,
            &jiff::tz::TimeZone::UTC,
            crate::respond::board::Filter::All,
            &crate::respond::board::Scope::Summary,
            crate::respond::board::AsOf::wall(),
        )?;
        let t = &b.totals;
        family(
            &mut out,
            "stormbell_evacuation_people",
            "gauge",
            "People under the warnings in force, each place once: to_move, moved, refused, to_check.",
        );
        for (figure, n) in [
            ("to_move", t.to_move),
            ("moved", t.moved),
            ("refused", t.refused),
            ("to_check", t.to_check),
        ] {
            let _ = writeln!(
                out,
                "stormbell_evacuation_people{{figure=\"{figure}\"}} {n}"
            );
        }
        family(
            &mut out,
            "stormbell_places",
            "gauge",
            "Places under the warnings in force by answer: silent (ladder ran out), waiting, answered.",
        );
        for (answer, n) in [
            ("silent", t.silent),
            ("waiting", t.waiting),
            ("answered", t.answered),
            ("uncalled", t.places - t.silent - t.waiting - t.answered),
        ] {
            let _ = writeln!(out, "stormbell_places{{answer=\"{answer}\"}} {n}");
        }
    }

    let mut active: BTreeMap<(String, String), i64> = BTreeMap::new();
    for l in crate::correlate::store::lineages(c)? {
        *active
            .entry((l.hazard.to_string(), l.tier.as_str().to_string()))
            .or_default() += 1;
    }
    family(
        &mut out,
        "stormbell_warnings_active",
        "gauge",
        "Warnings in force, by hazard and tier.",
    );
    for ((hazard, tier), n) in &active {
        let _ = writeln!(
            out,
            "stormbell_warnings_active{{hazard=\"{}\",tier=\"{}\"}} {n}",
            label(hazard),
            label(tier)
        );
    }

    family(
        &mut out,
        "stormbell_messages",
        "gauge",
        "Outbox messages by channel and state.",
    );
    for ((channel, state), n) in crate::dispatch::outbox::counts(c)? {
        let _ = writeln!(
            out,
            "stormbell_messages{{channel=\"{}\",state=\"{}\"}} {n}",
            label(&channel),
            label(&state)
        );
    }

    family(
        &mut out,
        "stormbell_voice_rings_total",
        "counter",
        "Calls rung through the SIP trunks, by how each ring ended.",
    );
    for (outcome, n) in crate::dispatch::outbox::ring_counts(c)? {
        let _ = writeln!(
            out,
            "stormbell_voice_rings_total{{outcome=\"{}\"}} {n}",
            outcome.as_str()
        );
    }

    family(
        &mut out,
        "stormbell_sms_receipts_unmatched",
        "gauge",
        "Receipts from an SMS centre that match no message sent, kept for more than a minute \
         (a centre writing ids in a form not understood: see receipt_ids).",
    );
    let now = jiff::Timestamp::now();
    for u in crate::dispatch::outbox::unmatched(c, now)? {
        let _ = writeln!(
            out,
            "stormbell_sms_receipts_unmatched{{account=\"{}\"}} {}",
            label(&u.account),
            u.count
        );
    }

    family(
        &mut out,
        "stormbell_feed_refused_total",
        "counter",
        "What a listening feed (SL 651 telemetry) refused, by reason: crc, truncated, malformed, \
         unknown_station, clock, not_a_frame.",
    );
    for (feed, reason, n, _) in crate::feeds::state::refusals(c)? {
        let _ = writeln!(
            out,
            "stormbell_feed_refused_total{{feed=\"{}\",reason=\"{}\"}} {n}",
            label(&feed),
            label(&reason)
        );
    }

    family(
        &mut out,
        "stormbell_broadcast_terminals",
        "gauge",
        "Loudspeaker targets of broadcasts, by route and state.",
    );
    for (route, state, n) in crate::dispatch::broadcast::jobs::counts(c)? {
        let _ = writeln!(
            out,
            "stormbell_broadcast_terminals{{route=\"{}\",state=\"{}\"}} {n}",
            label(&route),
            label(&state)
        );
    }

    let f = crate::respond::calls::figures(c)?;
    family(
        &mut out,
        "stormbell_calls",
        "gauge",
        "Calls to responsible persons, by state.",
    );
    for (state, n) in &f.calls {
        let _ = writeln!(out, "stormbell_calls{{state=\"{}\"}} {n}", label(state));
    }
    family(
        &mut out,
        "stormbell_escalation_steps",
        "gauge",
        "Escalation ladder steps, by action and state.",
    );
    for (action, state, n) in &f.steps {
        let _ = writeln!(
            out,
            "stormbell_escalation_steps{{action=\"{}\",state=\"{}\"}} {n}",
            label(action),
            label(state)
        );
    }
    family(
        &mut out,
        "stormbell_ack_seconds",
        "histogram",
        "Seconds from a call to the person's own answer.",
    );
    for le in ACK_BUCKETS {
        let cumulative = f.ack_secs.iter().filter(|s| **s <= le).count();
        let _ = writeln!(
            out,
            "stormbell_ack_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "stormbell_ack_seconds_bucket{{le=\"+Inf\"}} {}",
        f.ack_secs.len()
    );
    let _ = writeln!(
        out,
        "stormbell_ack_seconds_sum {}",
        f.ack_secs.iter().sum::<f64>()
    );
    let _ = writeln!(out, "stormbell_ack_seconds_count {}", f.ack_secs.len());

    let feeds = crate::feeds::state::all_health(c)?;
    family(
        &mut out,
        "stormbell_feed_up",
        "gauge",
        "1 when the feed's last poll succeeded.",
    );
    for h in &feeds {
        let up = h.failures == 0 && h.last_success.is_some();
        let _ = writeln!(
            out,
            "stormbell_feed_up{{feed=\"{}\"}} {}",
            label(&h.feed),
            u8::from(up)
        );
    }
    family(
        &mut out,
        "stormbell_feed_gap",
        "gauge",
        "1 while the feed's gap alarm is raised.",
    );
    for h in &feeds {
        let _ = writeln!(
            out,
            "stormbell_feed_gap{{feed=\"{}\"}} {}",
            label(&h.feed),
            u8::from(h.gap_since.is_some())
        );
    }
    family(
        &mut out,
        "stormbell_feed_failures",
        "gauge",
        "Consecutive failed polls of the feed.",
    );
    for h in &feeds {
        let _ = writeln!(
            out,
            "stormbell_feed_failures{{feed=\"{}\"}} {}",
            label(&h.feed),
            h.failures
        );
    }
    family(
        &mut out,
        "stormbell_feed_polls_total",
        "counter",
        "Polls made of the feed.",
    );
    for h in &feeds {
        let _ = writeln!(
            out,
            "stormbell_feed_polls_total{{feed=\"{}\"}} {}",
            label(&h.feed),
            h.polls
        );
    }
    Ok(out)
}

/// The audit chain as the last scrape left it verified: each scrape checks the rows added
/// since, and that the last verified row still has its hash; the whole chain is verified again
/// once an hour (and at the first scrape), so a rewrite deep in the trail shows within the hour.
#[derive(Debug, Default)]
pub struct ChainWatch {
    last: std::sync::Mutex<Option<Watched>>,
}

#[derive(Debug, Clone)]
struct Watched {
    seq: i64,
    hash: String,
    ok: bool,
    whole_at: std::time::Instant,
}

const WHOLE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

impl ChainWatch {
    /// (whether the chain holds, rows in it).
    fn check(&self, c: &Conn<'_>) -> anyhow::Result<(bool, i64)> {
        use crate::store::audit::{self, Against, Verification};
        let mut last = self
            .last
            .lock()
            .map_err(|_| anyhow::anyhow!("audit watch poisoned"))?;
        let prior = last
            .clone()
            .filter(|w| w.ok && w.whole_at.elapsed() < WHOLE_EVERY);
        let (from, hash, whole_at) = match &prior {
            Some(w) => {
                if audit::against(c, w.seq, &w.hash)? != Against::Holds {
                    *last = Some(Watched {
                        ok: false,
                        ..w.clone()
                    });
                    return Ok((false, audit::head(c)?.map_or(0, |(s, _)| s)));
                }
                (w.seq, w.hash.clone(), w.whole_at)
            }
            None => (0, audit::GENESIS.to_string(), std::time::Instant::now()),
        };
        let next = match audit::verify_after(c, from, &hash)? {
            Verification::Intact { head, .. } => {
                let (seq, hash) = head.unwrap_or((0, audit::GENESIS.to_string()));
                Watched {
                    seq,
                    hash,
                    ok: true,
                    whole_at,
                }
            }
            Verification::Broken { .. } => Watched {
                seq: from,
                hash,
                ok: false,
                whole_at,
            },
        };
        let entries = audit::head(c)?.map_or(0, |(s, _)| s);
        let ok = next.ok;
        *last = Some(next);
        Ok((ok, entries))
    }
}

/// Free and total bytes of the filesystem holding `path`.
fn disk(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` a buffer of the type statvfs fills; it is
    // read only after the call reports success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let frag = st.f_frsize;
    Some((
        st.f_bavail.saturating_mul(frag),
        st.f_blocks.saturating_mul(frag),
    ))
}

/// The figures about the daemon's upkeep (carrier links, backlog, audit chain, disk), after
/// [`render`]'s: the ones its alert rules watch.
pub fn render_upkeep(
    c: &Conn<'_>,
    watch: &ChainWatch,
    db: &std::path::Path,
    now: jiff::Timestamp,
) -> anyhow::Result<String> {
    let mut out = String::with_capacity(1024);
    family(
        &mut out,
        "stormbell_smsc_binds",
        "gauge",
        "SMS centre binds by account and state (bound, down, stopped).",
    );
    let mut binds: BTreeMap<(String, String), u32> = BTreeMap::new();
    for b in crate::dispatch::outbox::binds(c)? {
        *binds.entry((b.account, b.state)).or_default() += 1;
    }
    for ((account, state), n) in &binds {
        let _ = writeln!(
            out,
            "stormbell_smsc_binds{{account=\"{}\",state=\"{}\"}} {n}",
            label(account),
            label(state)
        );
    }
    family(
        &mut out,
        "stormbell_outbox_overdue_seconds",
        "gauge",
        "How long the oldest queued message has waited past its time, by channel (0: none).",
    );
    for (channel, due) in crate::dispatch::outbox::oldest_due(c)? {
        let secs = due
            .parse::<jiff::Timestamp>()
            .map(|t| now.duration_since(t).as_secs_f64().max(0.0))
            .unwrap_or(0.0);
        let _ = writeln!(
            out,
            "stormbell_outbox_overdue_seconds{{channel=\"{}\"}} {secs:.0}",
            label(&channel)
        );
    }
    let (ok, entries) = watch.check(c)?;
    family(
        &mut out,
        "stormbell_audit_entries",
        "gauge",
        "Rows in the audit trail.",
    );
    let _ = writeln!(out, "stormbell_audit_entries {entries}");
    family(
        &mut out,
        "stormbell_audit_chain_ok",
        "gauge",
        "1 while the audit trail's hash chain verifies.",
    );
    let _ = writeln!(out, "stormbell_audit_chain_ok {}", u8::from(ok));
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    family(
        &mut out,
        "stormbell_store_bytes",
        "gauge",
        "Bytes of the database file and its write-ahead log.",
    );
    let _ = writeln!(out, "stormbell_store_bytes {}", size(db) + size(&wal));
    if let Some((free, total)) = disk(db) {
        family(
            &mut out,
            "stormbell_store_disk_free_bytes",
            "gauge",
            "Bytes free to the daemon on the filesystem holding the database.",
        );
        let _ = writeln!(out, "stormbell_store_disk_free_bytes {free}");
        family(
            &mut out,
            "stormbell_store_disk_size_bytes",
            "gauge",
            "Size of the filesystem holding the database.",
        );
        let _ = writeln!(out, "stormbell_store_disk_size_bytes {total}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
