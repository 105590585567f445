//! What a drill leaves behind for the after-action review: a folder anyone can read without
//! stormbell.
//!
//! ```text
//! cap/NNN-<identifier>.xml   every CAP message as issued (Alert, Update, Cancel), in order
//! dispatch.jsonl             one line per message: times, channel, recipient, text, state
//! responses.jsonl            every answer and every escalation step, in time order
//! summary.json               warnings by hazard and tier, messages by channel and state,
//!                            acknowledgement rates and times, evacuation totals
//! report.md                  the drill's after-action report (templates/report/drill.*)
//! reports/<lineage>.md       the after-action report of each warning
//! ```
//!
//! Everything is read back from the store, ordered by stable keys and written with sorted
//! JSON keys, so a deterministic run gives identical bytes. Link tokens are masked: they are
//! bearer secrets (and random), and the drill output is meant to be passed around.

use std::collections::BTreeMap;
use std::path::Path;

use crate::store::sql::Conn;
use serde::Serialize;
use serde_json::{Value, json};

use crate::registry::Registry;
use crate::store::Store;

use super::Drill;

/// The figures of a drill (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Simulated start and end (office time).
    pub start: String,
    /// End.
    pub end: String,
    /// Warnings: lineages by hazard, messages by hazard and tier, lifted, in force at the end.
    pub warnings: Warnings,
    /// Messages by channel, then state.
    pub messages: BTreeMap<String, BTreeMap<String, i64>>,
    /// Sends that may have gone twice (a restart mid-send with no receipt after).
    pub possible_duplicates: i64,
    /// Acknowledgement (叫应).
    pub acknowledgement: Acknowledgement,
    /// Escalation steps fired, by action.
    pub escalations: BTreeMap<String, i64>,
    /// Evacuation totals over every warning and place: to move, moved, refused, back home.
    pub evacuation: BTreeMap<String, i64>,
    /// Calls rung (a drill with calls), by how each ring ended; absent when none rang.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub calls: BTreeMap<String, i64>,
    /// Feed gap alarms raised.
    pub feed_gaps: i64,
}

/// Warnings issued.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warnings {
    /// Distinct warnings (lineages).
    pub total: i64,
    /// Alerts and updates issued (every tier, every hazard).
    pub issued: i64,
    /// Distinct warnings (lineages) by hazard.
    pub lineages: BTreeMap<String, i64>,
    /// Alerts and updates by hazard, then tier.
    pub messages: BTreeMap<String, BTreeMap<String, i64>>,
    /// Cancels (lifts).
    pub lifted: i64,
    /// Highest tier each hazard reached.
    pub highest: BTreeMap<String, String>,
    /// Lineages whose last message is not a Cancel when the drill ends.
    pub in_force_at_end: i64,
}

/// Who answered, and how fast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acknowledgement {
    /// (person, warning) pairs called.
    pub called: i64,
    /// Of which answered by the person themselves.
    pub answered: i64,
    /// Not answered by the person, but by another lead of the same place (their call was
    /// covered).
    pub covered: i64,
    /// (answered + covered) / called: the share of calls somebody answered.
    pub rate: f64,
    /// Called and answered by nobody: `called - answered - covered`.
    pub unanswered: i64,
    /// Of those, on the silent list at the end (the ladder ran out).
    pub silent: i64,
    /// Put on the silent list at some time (some answered after).
    pub listed: i64,
    /// Of `answered`, by the channel of the answer that closed the call (sms, link).
    pub by_channel: BTreeMap<String, i64>,
    /// Minutes from each call to the answer that closed it: median, 90th percentile, max.
    pub minutes: BTreeMap<String, f64>,
}

/// Write the output folder of a finished (or stopped) drill.
pub fn write(
    store: &Store,
    reg: &Registry,
    drill: &Drill,
    tz: &jiff::tz::TimeZone,
    link_base: Option<&str>,
    lang: &str,
    out: &Path,
) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(out.join("cap"))?;
    std::fs::create_dir_all(out.join("reports"))?;
    Ok(store.read_blocking(|c| write_from(c, reg, drill, tz, link_base, lang, out))?)
}

fn write_from(
    c: &Conn<'_>,
    reg: &Registry,
    drill: &Drill,
    tz: &jiff::tz::TimeZone,
    link_base: Option<&str>,
    lang: &str,
    out: &Path,
) -> anyhow::Result<Summary> {
    let local = |s: &str| crate::respond::local_time(s, tz);
    // cap/
    let caps = crate::correlate::store::all_issued(c)?;
    for (n, (_, identifier, xml)) in caps.iter().enumerate() {
        let safe: String = identifier
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || ch == '-' || ch == '.' {
                    ch
                } else {
                    '_'
                }
            })
            .collect();
        std::fs::write(
            out.join("cap").join(format!("{:03}-{safe}.xml", n + 1)),
            xml,
        )?;
    }
    // dispatch.jsonl
    let mask = |text: &str| -> String {
        match link_base {
            Some(base) if !base.is_empty() => mask_links(text, base),
            _ => text.to_string(),
        }
    };
    let mut lines = String::new();
    for m in crate::dispatch::outbox::all_messages(c)? {
        let line = json!({
            "queued": local(&m.created),
            "at": local(&m.updated),
            "channel": m.channel,
            "purpose": m.purpose,
            "warning": m.lineage,
            "version": m.version,
            "type": m.send,
            "tier": m.tier,
            "recipient": {
                "person": m.person,
                "name": reg.person(&m.person).map(|p| p.name.clone()),
                "number": m.address,
            },
            "text": mask(&m.text),
            "state": m.state.as_str(),
            "attempts": m.attempts,
            "possible_duplicates": m.uncertain,
            "carried_by": m.merged_into,
            "error": m.last_error,
            "id": m.id,
        });
        lines.push_str(&serde_json::to_string(&line)?);
        lines.push('\n');
    }
    std::fs::write(out.join("dispatch.jsonl"), lines)?;
    // Loudspeakers, when the drill had a route (one line per terminal and broadcast).
    // responses.jsonl: answers and escalation steps, by time.
    // (time, answers before steps at the same time, the row) — sorted below.
    let mut events: Vec<(Option<jiff::Timestamp>, i64, Value)> = Vec::new();
    for a in crate::respond::intake::all_answers(c)? {
        let name = a
            .person
            .as_deref()
            .and_then(|p| reg.person(p))
            .map(|p| p.name.clone());
        events.push((
            a.at.parse().ok(),
            0,
            json!({
                "at": local(&a.at),
                "type": "answer",
                "channel": a.channel,
                "from": a.address,
                "person": a.person,
                "name": name,
                "warning": a.lineage,
                "version": a.version,
                "kind": a.kind,
                "people": a.people,
                "shelter": a.shelter,
                "text": a.text,
                "repeat": a.repeat_of.is_some(),
                "id": a.id,
            }),
        ));
    }
    for s in crate::respond::calls::fired_steps(c)? {
        let at = s.fired.unwrap_or_default();
        events.push((
            at.parse().ok(),
            1,
            json!({
                "at": local(&at),
                "type": "escalation",
                "action": s.action,
                "detail": s.detail,
                "name": reg.person(&s.person).map(|p| p.name.clone()),
                "person": s.person,
                "warning": s.lineage,
                "version": s.version,
                "place": s.target,
                "step": s.step,
                "id": s.id,
            }),
        ));
    }
    events.sort_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then(a.2["id"].as_i64().cmp(&b.2["id"].as_i64()))
    });
    let mut lines = String::new();
    for (_, _, v) in &events {
        lines.push_str(&serde_json::to_string(v)?);
        lines.push('\n');
    }
    std::fs::write(out.join("responses.jsonl"), lines)?;

    let summary = summarise(c, reg, drill, &local)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;

    // The report of each warning, made as of the drill's end.
    let generated = crate::respond::readable_time(&drill.scenario.end.to_string(), tz);
    let lineages = crate::correlate::store::all_lineages(c)?;
    let mut each = Vec::new();
    for l in &lineages {
        let mut r = crate::respond::report::read(c, reg, tz, l)?;
        r.generated = generated.clone();
        let file = format!(
            "{}.md",
            l.chars()
                .map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' {
                    ch
                } else {
                    '_'
                })
                .collect::<String>()
        );
        std::fs::write(
            out.join("reports").join(&file),
            crate::respond::report::markdown(&r, lang)?,
        )?;
        let event = crate::templates::event_name(&r.hazard, crate::templates::lang(lang))
            .unwrap_or_else(|_| r.hazard.clone());
        let answered: u32 = r.levels.iter().map(|x| x.answered).sum();
        let covered: u32 = r.levels.iter().map(|x| x.covered).sum();
        let called: u32 = r.levels.iter().map(|x| x.called).sum();
        each.push(json!({
            "lineage": l, "file": file, "event": event, "tier": r.tier, "area": r.area_name,
            "issued": r.issued, "last": r.last, "lifted": r.lifted, "messages": r.messages.len(),
            "called": called, "answered": answered, "covered": covered,
            "to_move": r.evacuated.0, "moved": r.evacuated.1, "refused": r.evacuated.2,
        }));
    }
    let lang = crate::templates::lang(lang);
    let md = crate::templates::env()?
        .get_template(&format!("report/drill.{lang}"))?
        .render(minijinja::context! {
            s => minijinja::Value::from(minijinja::value::Serde(&summary)),
            description => drill.scenario.description.trim(),
            warnings => minijinja::Value::from(minijinja::value::Serde(&each)),
            generated => generated,
        })?;
    std::fs::write(out.join("report.md"), md)?;
    Ok(summary)
}

/// Replace every check-in link token after `base` with `~` of the same length.
pub fn mask_links(text: &str, base: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(base) {
        let (head, tail) = rest.split_at(i + base.len());
        out.push_str(head);
        let n = tail
            .bytes()
            .take(crate::dispatch::link::TOKEN_LEN)
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count();
        out.push_str(&"~".repeat(n));
        rest = &tail[n..];
    }
    out.push_str(rest);
    out
}

fn summarise(
    c: &Conn<'_>,
    reg: &Registry,
    drill: &Drill,
    local: &dyn Fn(&str) -> String,
) -> anyhow::Result<Summary> {
    let rank = |t: &str| match t {
        "red" => 4,
        "orange" => 3,
        "yellow" => 2,
        "blue" => 1,
        _ => 0,
    };
    // Warnings.
    let mut w = Warnings {
        total: 0,
        issued: 0,
        lineages: BTreeMap::new(),
        messages: BTreeMap::new(),
        lifted: 0,
        highest: BTreeMap::new(),
        in_force_at_end: 0,
    };
    for (hazard, tier, msg_type) in crate::correlate::store::message_kinds(c)? {
        if msg_type == "Cancel" {
            w.lifted += 1;
            continue;
        }
        let tier = tier.unwrap_or_default();
        w.issued += 1;
        *w.messages
            .entry(hazard.clone())
            .or_default()
            .entry(tier.clone())
            .or_default() += 1;
        let top = w.highest.entry(hazard).or_default();
        if rank(&tier) > rank(top) {
            *top = tier;
        }
    }
    w.lineages = crate::correlate::store::lineages_by_hazard(c)?;
    w.total = w.lineages.values().sum();
    w.in_force_at_end = crate::correlate::store::unlifted(c)?;
    // Messages.
    let mut messages: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for ((ch, state), n) in crate::dispatch::outbox::counts(c)? {
        messages.entry(ch).or_default().insert(state, n);
    }
    for (state, n) in crate::dispatch::broadcast::jobs::target_states(c)? {
        if n > 0 {
            messages
                .entry("broadcast".into())
                .or_default()
                .insert(state.as_str().to_string(), n);
        }
    }
    let possible_duplicates = crate::dispatch::outbox::possible_duplicates(c)?;
    // Acknowledgement: per (person, warning), from the first call to the first own answer.
    // Per (person, warning): did they answer it themselves, or did another lead of the same
    // place answer for them (covered), or were they left on the silent list?
    let pairs = crate::respond::calls::outcomes(c)?;
    let called = pairs.len() as i64;
    let (mut answered, mut covered, mut silent, mut listed) = (0, 0, 0, 0);
    for (a, cov, sil, list) in &pairs {
        listed += i64::from(*list);
        if *a {
            answered += 1;
        } else if *cov {
            covered += 1;
        } else if *sil {
            silent += 1;
        }
    }
    // Per call: minutes from the call to its answer (or the answer that covered it).
    let mut mins = crate::respond::calls::answer_minutes(c)?;
    mins.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| -> Option<f64> {
        if mins.is_empty() {
            return None;
        }
        let i = ((mins.len() as f64 - 1.0) * q).round() as usize;
        Some((mins[i.min(mins.len() - 1)] * 10.0).round() / 10.0)
    };
    let mut minutes = BTreeMap::new();
    for (k, q) in [("median", 0.5), ("p90", 0.9), ("max", 1.0)] {
        if let Some(v) = pick(q) {
            minutes.insert(k.to_string(), v);
        }
    }
    let by_channel = crate::respond::calls::answered_by_channel(c)?;
    let ack = Acknowledgement {
        called,
        answered,
        rate: if called > 0 {
            (((answered + covered) as f64 / called as f64) * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        covered,
        unanswered: called - answered - covered,
        silent,
        listed,
        by_channel,
        minutes,
    };
    let escalations = crate::respond::calls::escalations(c)?;
    // Evacuation over the whole storm, from the ledger: each place once, however many
    // warnings covered it (ARCHITECTURE.md, "The evacuation ledger").
    let storm = crate::respond::ledger::storm(c, reg)?;
    let t = crate::respond::ledger::total(storm.values());
    let evacuation = BTreeMap::from([
        ("to_move".to_string(), i64::from(t.to_move)),
        ("moved".to_string(), i64::from(t.moved)),
        ("refused".to_string(), i64::from(t.refused)),
        ("returned".to_string(), i64::from(t.returned)),
        ("to_check".to_string(), i64::from(t.beyond)),
        ("places".to_string(), storm.len() as i64),
    ]);
    let feed_gaps = crate::feeds::state::gap_alarms(c)?;
    let calls: BTreeMap<String, i64> = crate::dispatch::outbox::ring_counts(c)?
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(o, n)| (o.as_str().to_string(), n))
        .collect();
    Ok(Summary {
        scenario: drill.scenario.name.clone(),
        start: local(&drill.scenario.start.to_string()),
        end: local(&drill.scenario.end.to_string()),
        warnings: w,
        messages,
        possible_duplicates,
        acknowledgement: ack,
        escalations,
        evacuation,
        calls,
        feed_gaps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_after_the_link_base_are_masked_and_nothing_else() {
        let base = "https://x.cn/r/";
        let t = "【演练】红色预警 https://x.cn/r/AbCdEfGhIjKlMnOpQrStUv 回复1 https://x.cn/r/ZZZZZZZZZZZZZZZZZZZZZZ。";
        let m = mask_links(t, base);
        assert_eq!(
            m,
            "【演练】红色预警 https://x.cn/r/~~~~~~~~~~~~~~~~~~~~~~ 回复1 https://x.cn/r/~~~~~~~~~~~~~~~~~~~~~~。"
        );
        assert_eq!(mask_links("no link here", base), "no link here");
    }
}
