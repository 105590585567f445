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

use rusqlite::Connection;
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
    /// Put on the silent list (never answered, ladder exhausted).
    pub silent: i64,
    /// Answers by channel (sms, link).
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
    c: &Connection,
    reg: &Registry,
    drill: &Drill,
    tz: &jiff::tz::TimeZone,
    link_base: Option<&str>,
    lang: &str,
    out: &Path,
) -> anyhow::Result<Summary> {
    let local = |s: &str| crate::respond::local_time(s, tz);
    // cap/
    let mut st = c.prepare("SELECT id, identifier, cap FROM corr_warning ORDER BY id")?;
    let caps: Vec<(i64, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
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
    let mut st = c.prepare(
        "SELECT created, updated, channel, purpose, lineage, version, send, tier, person, address,
                coalesce(sent_text, text), state, attempts, uncertain, merged_into, last_error, id
         FROM dispatch_message ORDER BY id",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let person: String = r.get(8)?;
        let line = json!({
            "queued": local(&r.get::<_, String>(0)?),
            "at": local(&r.get::<_, String>(1)?),
            "channel": r.get::<_, String>(2)?,
            "purpose": r.get::<_, String>(3)?,
            "warning": r.get::<_, String>(4)?,
            "version": r.get::<_, i64>(5)?,
            "type": r.get::<_, String>(6)?,
            "tier": r.get::<_, String>(7)?,
            "recipient": {
                "person": person,
                "name": reg.person(&person).map(|p| p.name.clone()),
                "number": r.get::<_, String>(9)?,
            },
            "text": mask(&r.get::<_, String>(10)?),
            "state": r.get::<_, String>(11)?,
            "attempts": r.get::<_, i64>(12)?,
            "possible_duplicates": r.get::<_, i64>(13)?,
            "carried_by": r.get::<_, Option<i64>>(14)?,
            "error": r.get::<_, Option<String>>(15)?,
            "id": r.get::<_, i64>(16)?,
        });
        lines.push_str(&serde_json::to_string(&line)?);
        lines.push('\n');
    }
    drop(rows);
    std::fs::write(out.join("dispatch.jsonl"), lines)?;
    // Loudspeakers, when the drill had a route (one line per terminal and broadcast).
    // responses.jsonl: answers and escalation steps, by time.
    // (time, answers before steps at the same time, the row) — sorted below.
    let mut events: Vec<(Option<jiff::Timestamp>, i64, Value)> = Vec::new();
    let mut st = c.prepare(
        "SELECT at, channel, address, person, lineage, version, kind, people, shelter, text, repeat_of, id
         FROM respond_answer ORDER BY id",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let at: String = r.get(0)?;
        let person: Option<String> = r.get(3)?;
        events.push((
            at.parse().ok(),
            0,
            json!({
                "at": local(&at),
                "type": "answer",
                "channel": r.get::<_, String>(1)?,
                "from": r.get::<_, Option<String>>(2)?,
                "person": person,
                "name": person.as_deref().and_then(|p| reg.person(p)).map(|p| p.name.clone()),
                "warning": r.get::<_, Option<String>>(4)?,
                "version": r.get::<_, Option<i64>>(5)?,
                "kind": r.get::<_, String>(6)?,
                "people": r.get::<_, Option<i64>>(7)?,
                "shelter": r.get::<_, Option<String>>(8)?,
                "text": r.get::<_, String>(9)?,
                "repeat": r.get::<_, Option<i64>>(10)?.is_some(),
                "id": r.get::<_, i64>(11)?,
            }),
        ));
    }
    drop(rows);
    let mut st = c.prepare(
        "SELECT s.fired, s.action, s.detail, c.person, c.lineage, c.version, c.target, s.step, s.id
         FROM respond_step s JOIN respond_call c ON c.id = s.call
         WHERE s.state = 'fired' ORDER BY s.id",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let at: String = r.get::<_, Option<String>>(0)?.unwrap_or_default();
        let person: String = r.get(3)?;
        events.push((
            at.parse().ok(),
            1,
            json!({
                "at": local(&at),
                "type": "escalation",
                "action": r.get::<_, String>(1)?,
                "detail": r.get::<_, Option<String>>(2)?,
                "person": person,
                "name": reg.person(&person).map(|p| p.name.clone()),
                "warning": r.get::<_, String>(4)?,
                "version": r.get::<_, i64>(5)?,
                "place": r.get::<_, String>(6)?,
                "step": r.get::<_, i64>(7)?,
                "id": r.get::<_, i64>(8)?,
            }),
        ));
    }
    drop(rows);
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
    let generated = local(&drill.scenario.end.to_string());
    let lineages: Vec<String> = c
        .prepare("SELECT DISTINCT lineage FROM corr_warning ORDER BY lineage")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
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
        let called: u32 = r.levels.iter().map(|x| x.called).sum();
        each.push(json!({
            "lineage": l, "file": file, "event": event, "tier": r.tier, "area": r.area_name,
            "issued": r.issued, "last": r.last, "lifted": r.lifted, "messages": r.messages.len(),
            "called": called, "answered": answered,
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
    c: &Connection,
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
    let mut st = c.prepare("SELECT hazard, tier, msg_type FROM corr_warning ORDER BY id")?;
    let rows: Vec<(String, Option<String>, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (hazard, tier, msg_type) in rows {
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
    let mut st =
        c.prepare("SELECT hazard, count(DISTINCT lineage) FROM corr_warning GROUP BY hazard")?;
    w.lineages = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    w.total = w.lineages.values().sum();
    w.in_force_at_end = c.query_row(
        "SELECT count(*) FROM corr_warning w
         WHERE w.id = (SELECT max(id) FROM corr_warning x WHERE x.lineage = w.lineage)
           AND w.msg_type != 'Cancel'",
        [],
        |r| r.get(0),
    )?;
    // Messages.
    let mut messages: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut st =
        c.prepare("SELECT channel, state, count(*) FROM dispatch_message GROUP BY channel, state")?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (ch, state, n) = row?;
        messages.entry(ch).or_default().insert(state, n);
    }
    let mut st = c.prepare("SELECT state, count(*) FROM broadcast_target GROUP BY state")?;
    for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (state, n) = row?;
        if n > 0 {
            messages
                .entry("broadcast".into())
                .or_default()
                .insert(state, n);
        }
    }
    let possible_duplicates: i64 = c.query_row(
        "SELECT coalesce(sum(uncertain), 0) FROM dispatch_message",
        [],
        |r| r.get(0),
    )?;
    // Acknowledgement: per (person, warning), from the first call to the first own answer.
    // Per (person, warning): did they answer it themselves, or did another lead of the same
    // place answer for them (covered), or were they left on the silent list?
    let mut st = c.prepare(
        "SELECT max(state = 'answered'), max(state = 'covered'), max(state = 'silent')
         FROM respond_call GROUP BY person, lineage ORDER BY person, lineage",
    )?;
    let pairs: Vec<(bool, bool, bool)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let called = pairs.len() as i64;
    let (mut answered, mut covered, mut silent) = (0, 0, 0);
    for (a, cov, sil) in &pairs {
        if *a {
            answered += 1;
        } else if *cov {
            covered += 1;
        } else if *sil {
            silent += 1;
        }
    }
    // Per call: minutes from the call to its answer (or the answer that covered it).
    let mut st = c.prepare(
        "SELECT called, answered FROM respond_call
         WHERE state IN ('answered', 'covered') AND answered IS NOT NULL",
    )?;
    let mut mins: Vec<f64> = Vec::new();
    for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (a, b) = row?;
        if let (Ok(a), Ok(b)) = (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
            mins.push(b.duration_since(a).as_secs_f64() / 60.0);
        }
    }
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
    let mut st = c.prepare(
        "SELECT channel, count(*) FROM respond_answer WHERE repeat_of IS NULL GROUP BY channel",
    )?;
    let by_channel = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let ack = Acknowledgement {
        called,
        answered,
        rate: if called > 0 {
            (((answered + covered) as f64 / called as f64) * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        covered,
        silent,
        by_channel,
        minutes,
    };
    let mut st = c.prepare(
        "SELECT action, count(*) FROM respond_step WHERE state = 'fired' GROUP BY action",
    )?;
    let escalations = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    // Evacuation, per place (a village warned by the typhoon, the rain and its flash-flood
    // zone at once moves its people once): people to move at the places told to move now,
    // and the largest figures reported for each.
    let (moved, refused, returned): (i64, i64, i64) = c.query_row(
        "SELECT coalesce(sum(p), 0), coalesce(sum(r), 0), coalesce(sum(b), 0) FROM (
           SELECT max(people) AS p, max(coalesce(refused, 0)) AS r, max(coalesce(returned, 0)) AS b
           FROM respond_evacuation GROUP BY target)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let told: Vec<String> = c
        .prepare(
            "SELECT DISTINCT target FROM respond_call
             WHERE level IN ('village', 'site') AND json_extract(words, '$.move_') = 'now'
             ORDER BY target",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let to_move: i64 = told
        .iter()
        .map(|t| {
            i64::from(
                reg.village(t)
                    .map(|v| v.evacuate)
                    .or_else(|| reg.site(t).map(|s| s.evacuate))
                    .unwrap_or(0),
            )
        })
        .sum();
    let evacuation = BTreeMap::from([
        ("to_move".to_string(), to_move),
        ("moved".to_string(), moved),
        ("refused".to_string(), refused),
        ("returned".to_string(), returned),
    ]);
    let feed_gaps: i64 = c.query_row(
        "SELECT count(*) FROM feed_inbox
         WHERE json_extract(observation, '$.kind') = 'feed_alarm'
           AND json_extract(observation, '$.data.state') = 'gap'",
        [],
        |r| r.get(0),
    )?;
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
