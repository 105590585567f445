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
//! The office's reverse proxy should not publish `/metrics` beyond the monitoring network.

use std::collections::BTreeMap;
use std::fmt::Write;

use rusqlite::Connection;

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
pub fn render(c: &Connection, reg: Option<&crate::registry::Registry>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(4096);
    if let Some(reg) = reg {
        // The same figures as the board's county line (ARCHITECTURE.md, "The evacuation
        // ledger").
        let b = crate::respond::board::read(
            c,
            reg,
            &jiff::tz::TimeZone::UTC,
            crate::respond::board::Filter::All,
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
        "stormbell_sms_receipts_unmatched",
        "gauge",
        "Receipts from an SMS centre that match no message sent, kept for more than a minute \
         (a centre writing ids in a form not understood: see receipt_ids).",
    );
    let now = jiff::Timestamp::now();
    for u in crate::dispatch::outbox::unmatched(c, now, jiff::SignedDuration::from_mins(1))? {
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

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
