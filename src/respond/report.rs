//! The after-action report of one warning (`stormbell report WARNING_ID`): what was issued and
//! when, who was called and how long each level took to answer, who never answered, what the
//! ladder did about it, and how complete the evacuation was. Read from the store after the
//! fact (a lifted warning too): correlate's messages and decisions, dispatch's sends and
//! receipts (from the audit trail, where each is recorded with its warning), respond's calls,
//! steps, answers and evacuation reports.
//!
//! The words are in `templates/report/` (Markdown); [`persons_csv`] and [`timeline_csv`] give
//! the same facts as tables.

use std::collections::BTreeMap;

use crate::store::sql::Conn;
use rusqlite::params;
use serde::Serialize;

use crate::correlate::store as cstore;
use crate::registry::Registry;

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Local time, RFC 3339.
    pub at: String,
    /// issued | sms | answer | escalation | evacuation
    pub kind: String,
    /// Who (a person's name, or the office).
    pub who: String,
    /// What, in a few words (the CSV's column; the Markdown reports word it from the
    /// fields below, in their language).
    pub what: String,
    /// The message type (Alert, Update, Cancel), answer kind or ladder action.
    pub code: String,
    /// A number it carries (people, a version, a count of texts).
    pub n: Option<i64>,
    /// A tier it names.
    pub tier: Option<String>,
    /// The channel it came by (sms, link).
    pub channel: Option<String>,
    /// Words as somebody wrote them (an answer's text, a shelter, a step's detail).
    pub text: Option<String>,
}

/// The structured part of an [`Event`].
#[derive(Default)]
struct Said {
    code: String,
    n: Option<i64>,
    tier: Option<String>,
    channel: Option<String>,
    text: Option<String>,
}

/// One person called, over all versions of the warning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Person {
    /// Registry id.
    pub person: String,
    /// Name.
    pub name: String,
    /// county | town | village | group | site
    pub level: String,
    /// Their role.
    pub role: String,
    /// The place they answer for (name).
    pub place: String,
    /// First called (local).
    pub called: String,
    /// Their own first answer (local), if any.
    pub answered: Option<String>,
    /// Minutes from call to their answer.
    pub minutes: Option<f64>,
    /// How they answered first (sms | link).
    pub channel: Option<String>,
    /// answered | covered (a co-responsible answered for the place) | silent | open | lifted
    pub state: String,
    /// Escalation steps fired on their calls.
    pub steps: u32,
}

/// Time to acknowledge at one level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// county | town | village | group | site
    pub level: String,
    /// Persons called.
    pub called: u32,
    /// Answered themselves.
    pub answered: u32,
    /// Covered by a co-responsible.
    pub covered: u32,
    /// Never answered nor covered.
    pub never: u32,
    /// Minutes to answer: median, 90th percentile, longest.
    pub median: Option<f64>,
    /// 90th percentile (nearest rank).
    pub p90: Option<f64>,
    /// Longest.
    pub max: Option<f64>,
}

/// Evacuation of one place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evacuation {
    /// Village or site id.
    pub place: String,
    /// Name.
    pub name: String,
    /// People to move (as the warning last stood).
    pub to_move: u32,
    /// Reported moved.
    pub moved: u32,
    /// Reported refusing or unable.
    pub refused: u32,
    /// Reported back home after the lift.
    pub returned: u32,
    /// Reported beyond the registered figure (not in `moved`): to check.
    pub to_check: u32,
    /// Its town's name.
    pub town: String,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `hazard:area`.
    pub lineage: String,
    /// Hazard.
    pub hazard: String,
    /// The highest tier issued.
    pub tier: String,
    /// The area in words.
    pub area_name: String,
    /// When first issued, last message, whether lifted.
    pub issued: String,
    /// Last message.
    pub last: String,
    /// Lifted (a Cancel was issued).
    pub lifted: bool,
    /// Messages issued: (version, type, tier, sent, identifier).
    pub messages: Vec<(i64, String, String, String, String)>,
    /// SMS: (accepted, delivered, failed or undelivered, sent with no receipt by the
    /// deadline): the first three counted from the audit trail, the last as the outbox has it
    /// now (a receipt that came after the deadline moved its text on).
    pub sms: (u32, u32, u32, u32),
    /// Everything in order.
    pub timeline: Vec<Event>,
    /// Per level.
    pub levels: Vec<Level>,
    /// Everyone called.
    pub persons: Vec<Person>,
    /// Per place.
    pub evacuation: Vec<Evacuation>,
    /// Totals: (to move, moved, refused).
    pub evacuated: (u32, u32, u32),
    /// Charts (inline SVG, no words): acknowledgements per level, evacuation, the tier.
    pub charts: Charts,
    /// The audit trail's head when the report was made (seq, hash), to compare later.
    pub audit_head: Option<(i64, String)>,
    /// When the report was made.
    pub generated: String,
}

/// The report's charts on one time axis, from the warning's first call to its last event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Charts {
    /// Persons who answered themselves, cumulative, one line per level (series keys: the
    /// levels).
    pub ack: String,
    /// The ledger over time: to_move, moved, returned.
    pub evacuation: String,
    /// The tier in force (1 blue … 4 red, 0 lifted) as each message was issued.
    pub tier: String,
    /// Hourly rain at the gauges the warning's reasons name (empty when they name none).
    pub rain: String,
    /// The series' keys and colours, for the legend: (chart, key, colour).
    pub legend: Vec<(String, String, String)>,
}

/// Find a warning by its lineage key (`flash_flood:FF331098001`) or by the CAP identifier of
/// any of its messages.
pub fn lineage_of(c: &Conn<'_>, id: &str) -> anyhow::Result<Option<String>> {
    if let Some(w) = cstore::by_identifier(c, id)? {
        return Ok(Some(w.lineage));
    }
    Ok((!cstore::of_lineage(c, id)?.is_empty()).then(|| id.to_string()))
}

fn minutes(from: &str, to: &str) -> Option<f64> {
    let a: jiff::Timestamp = from.parse().ok()?;
    let b: jiff::Timestamp = to.parse().ok()?;
    Some((b.as_second() - a.as_second()) as f64 / 60.0)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// The timeline as it is gathered: ordered by time itself, not by the text of the times
/// (messages carry their CAP times, +08:00, the other events the store's stamps; ordered as
/// text, a send at …:00.3Z came before its own issue at …:00Z).
struct Timeline<'a> {
    tz: &'a jiff::tz::TimeZone,
    events: Vec<(Option<jiff::Timestamp>, Event)>,
}

impl Timeline<'_> {
    fn push(&mut self, at: &str, kind: &str, who: String, what: String, said: Said) {
        self.events.push((
            at.parse::<jiff::Timestamp>().ok(),
            Event {
                at: super::readable_time(at, self.tz),
                kind: kind.into(),
                who,
                what,
                code: said.code,
                n: said.n,
                tier: said.tier,
                channel: said.channel,
                text: said.text,
            },
        ));
    }

    /// Stable: events at the same instant keep the order they were gathered in (the issue
    /// before what it caused).
    fn sorted(mut self) -> Vec<Event> {
        self.events.sort_by_key(|e| e.0);
        self.events.into_iter().map(|(_, e)| e).collect()
    }
}

/// One person called, over all versions of the warning, as the calls record them.
struct Acc {
    name: String,
    level: String,
    role: String,
    target: String,
    called: String,
    answered: Option<String>,
    states: Vec<String>,
}

/// Gather the report of one lineage.
pub fn read(
    c: &Conn<'_>,
    reg: &Registry,
    tz: &jiff::tz::TimeZone,
    lineage: &str,
) -> anyhow::Result<Report> {
    let local = |s: &str| super::readable_time(s, tz);
    let msgs = cstore::of_lineage(c, lineage)?;
    let Some(first) = msgs.first() else {
        anyhow::bail!("no warning {lineage}");
    };
    let last_targets = cstore::last_targets(c, lineage)?;
    let tier = msgs
        .iter()
        .filter_map(|m| m.tier.as_deref().and_then(crate::correlate::Tier::parse))
        .max()
        .map_or_else(String::new, |t| t.as_str().to_string());
    let mut timeline = Timeline {
        tz,
        events: Vec::new(),
    };
    for m in &msgs {
        timeline.push(
            &m.sent,
            "issued",
            String::new(),
            format!(
                "{} v{} {}",
                m.msg_type,
                m.version,
                m.tier.as_deref().unwrap_or("")
            ),
            Said {
                code: m.msg_type.clone(),
                n: Some(m.version),
                tier: m.tier.clone(),
                ..Said::default()
            },
        );
    }
    let people = calls_of(c, lineage)?;
    let channel_of = answers_of(c, lineage, &people, &mut timeline)?;
    let steps_of = steps_of(c, lineage, &mut timeline)?;
    let sms = sms_of(c, lineage, &mut timeline)?;
    let persons = persons_of(&people, &channel_of, &steps_of, reg, &local);
    let levels = levels_of(&persons);
    let evacuation = evacuation_of(c, reg, lineage)?;
    let charts = charts_of(c, reg, tz, lineage, &people, &msgs, &evacuation)?;
    let evacuated = evacuation.iter().fold((0, 0, 0), |t, e| {
        (t.0 + e.to_move, t.1 + e.moved, t.2 + e.refused)
    });
    let last = msgs.last().unwrap_or(first);
    Ok(Report {
        lineage: lineage.to_string(),
        hazard: first.hazard.clone(),
        tier,
        area_name: last_targets
            .as_ref()
            .and_then(|t| t.places.first().map(|p| p.name.clone()))
            .unwrap_or_default(),
        issued: local(&first.sent),
        last: local(&last.sent),
        lifted: msgs.iter().any(|m| m.msg_type == "Cancel"),
        messages: msgs
            .iter()
            .map(|m| {
                (
                    m.version,
                    m.msg_type.clone(),
                    m.tier.clone().unwrap_or_default(),
                    local(&m.sent),
                    m.identifier.clone(),
                )
            })
            .collect(),
        sms,
        timeline: timeline.sorted(),
        levels,
        persons,
        evacuation,
        evacuated,
        charts,
        audit_head: crate::store::audit::head(c)?,
        generated: jiff::Zoned::now()
            .with_time_zone(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
    })
}

/// Calls, all versions: each person's first call, own answer, and the states their calls
/// ended in.
fn calls_of(c: &Conn<'_>, lineage: &str) -> anyhow::Result<BTreeMap<String, Acc>> {
    let mut people: BTreeMap<String, Acc> = BTreeMap::new();
    {
        let mut q = c.prepare_cached(
            "SELECT person, name, level, role, target, called, state, answered FROM respond_call
             WHERE lineage = ?1 ORDER BY id",
        )?;
        struct Row {
            person: String,
            name: String,
            level: String,
            role: String,
            target: String,
            called: String,
            state: String,
            answered: Option<String>,
        }
        let rows = q.query_map(params![lineage], |r| {
            Ok(Row {
                person: r.get("person")?,
                name: r.get("name")?,
                level: r.get("level")?,
                role: r.get("role")?,
                target: r.get("target")?,
                called: r.get("called")?,
                state: r.get("state")?,
                answered: r.get("answered")?,
            })
        })?;
        for row in rows {
            let Row {
                person,
                name,
                level,
                role,
                target,
                called,
                state,
                answered,
            } = row?;
            let a = people.entry(person).or_insert(Acc {
                name,
                level,
                role,
                target,
                called: called.clone(),
                answered: None,
                states: Vec::new(),
            });
            if called < a.called {
                a.called = called;
            }
            if state == "answered"
                && let Some(t) = answered
                && a.answered.as_ref().is_none_or(|x| t < *x)
            {
                a.answered = Some(t);
            }
            a.states.push(state);
        }
    }
    Ok(people)
}

/// Their answers, by channel, in order (each on the timeline); returns each person's first
/// channel.
fn answers_of(
    c: &Conn<'_>,
    lineage: &str,
    people: &BTreeMap<String, Acc>,
    timeline: &mut Timeline<'_>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut channel_of: BTreeMap<String, String> = BTreeMap::new();
    {
        let mut q = c.prepare_cached(
            "SELECT at, channel, person, kind, people, shelter, text FROM respond_answer
             WHERE lineage = ?1 AND repeat_of IS NULL ORDER BY at, id",
        )?;
        struct Row {
            at: String,
            channel: String,
            person: Option<String>,
            kind: String,
            people: Option<i64>,
            shelter: Option<String>,
            text: String,
        }
        let rows = q.query_map(params![lineage], |r| {
            Ok(Row {
                at: r.get("at")?,
                channel: r.get("channel")?,
                person: r.get("person")?,
                kind: r.get("kind")?,
                people: r.get("people")?,
                shelter: r.get("shelter")?,
                text: r.get("text")?,
            })
        })?;
        for row in rows {
            let Row {
                at,
                channel,
                person,
                kind,
                people: n,
                shelter,
                text,
            } = row?;
            let who = person
                .as_ref()
                .and_then(|p| people.get(p).map(|a| a.name.clone()))
                .unwrap_or_default();
            if let Some(p) = &person {
                channel_of
                    .entry(p.clone())
                    .or_insert_with(|| channel.clone());
            }
            let what = match (kind.as_str(), n) {
                ("moved", Some(n)) => format!(
                    "moved {n}{} ({channel})",
                    shelter
                        .as_ref()
                        .map(|s| format!(" → {s}"))
                        .unwrap_or_default()
                ),
                _ => format!("{kind} ({channel}): {text}"),
            };
            let moved = kind == "moved";
            timeline.push(
                &at,
                if moved { "evacuation" } else { "answer" },
                who,
                what,
                Said {
                    code: kind,
                    n,
                    channel: Some(channel),
                    text: if moved { shelter } else { Some(text) },
                    ..Said::default()
                },
            );
        }
    }
    Ok(channel_of)
}

/// Escalation steps that fired (each on the timeline); returns the count per person.
fn steps_of(
    c: &Conn<'_>,
    lineage: &str,
    timeline: &mut Timeline<'_>,
) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut steps_of: BTreeMap<String, u32> = BTreeMap::new();
    {
        let mut q = c.prepare_cached(
            "SELECT s.fired, s.action, s.detail, k.person, k.name FROM respond_call k
             JOIN respond_step s ON s.call = k.id
             WHERE k.lineage = ?1 AND s.state = 'fired' ORDER BY s.fired, s.id",
        )?;
        let rows = q.query_map(params![lineage], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        for row in rows {
            let (fired, action, detail, person, name) = row?;
            *steps_of.entry(person).or_default() += 1;
            timeline.push(
                &fired,
                "escalation",
                name,
                format!("{action}: {}", detail.as_deref().unwrap_or_default()),
                Said {
                    code: action,
                    text: detail,
                    ..Said::default()
                },
            );
        }
    }
    Ok(steps_of)
}

/// Sends and receipts, from the audit trail (each entry names its warning): (accepted,
/// delivered, failed, no receipt); the first accepted is on the timeline.
fn sms_of(
    c: &Conn<'_>,
    lineage: &str,
    timeline: &mut Timeline<'_>,
) -> anyhow::Result<(u32, u32, u32, u32)> {
    let mut sms = (0, 0, 0, 0);
    {
        let rows = crate::store::audit::kinds_about(c, "sms.", lineage)?;
        for (kind, n, first_at) in rows {
            match kind.as_str() {
                "sms.accepted" => {
                    sms.0 += n;
                    timeline.push(
                        &first_at,
                        "sms",
                        String::new(),
                        format!("first of {n} SMS accepted by the SMSC"),
                        Said {
                            code: "accepted".into(),
                            n: Some(i64::from(n)),
                            ..Said::default()
                        },
                    );
                }
                "sms.delivered" => sms.1 += n,
                "sms.failed" | "sms.undelivered" => sms.2 += n,
                _ => {}
            }
        }
    }
    sms.3 = u32::try_from(crate::dispatch::outbox::no_receipt_count(c, lineage)?).unwrap_or(0);
    Ok(sms)
}

/// Each person's line: their first call, own answer (when, how fast, by what), the state
/// they ended in, and the steps that chased them.
fn persons_of(
    people: &BTreeMap<String, Acc>,
    channel_of: &BTreeMap<String, String>,
    steps_of: &BTreeMap<String, u32>,
    reg: &Registry,
    local: &dyn Fn(&str) -> String,
) -> Vec<Person> {
    let place_name = |id: &str| super::place_name(reg, id);
    people
        .iter()
        .map(|(id, a)| {
            let state = if a.answered.is_some() {
                "answered"
            } else if a.states.iter().any(|s| s == "covered") {
                "covered"
            } else if a.states.iter().any(|s| s == "silent") {
                "silent"
            } else {
                a.states.last().map_or("open", String::as_str)
            };
            Person {
                person: id.clone(),
                name: a.name.clone(),
                level: a.level.clone(),
                role: a.role.clone(),
                place: place_name(&a.target),
                called: local(&a.called),
                answered: a.answered.as_deref().map(&local),
                minutes: a.answered.as_deref().and_then(|t| minutes(&a.called, t)),
                channel: a.answered.as_ref().and(channel_of.get(id).cloned()),
                state: state.to_string(),
                steps: steps_of.get(id).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// Time to acknowledge per level (nearest-rank percentiles).
fn levels_of(persons: &[Person]) -> Vec<Level> {
    let mut levels = Vec::new();
    for level in ["site", "group", "village", "town", "county"] {
        let of: Vec<&Person> = persons.iter().filter(|p| p.level == level).collect();
        if of.is_empty() {
            continue;
        }
        let mut mins: Vec<f64> = of.iter().filter_map(|p| p.minutes).collect();
        mins.sort_by(f64::total_cmp);
        levels.push(Level {
            level: level.into(),
            called: of.len() as u32,
            answered: of.iter().filter(|p| p.state == "answered").count() as u32,
            covered: of.iter().filter(|p| p.state == "covered").count() as u32,
            never: of
                .iter()
                .filter(|p| p.state != "answered" && p.state != "covered")
                .count() as u32,
            median: percentile(&mins, 50.0),
            p90: percentile(&mins, 90.0),
            max: mins.last().copied(),
        });
    }
    levels
}

/// Evacuation: the warning's own view of the ledger ([`super::ledger::lineage`]), one row
/// per village (its groups and sites folded in), the same rows and figures the board shows.
fn evacuation_of(c: &Conn<'_>, reg: &Registry, lineage: &str) -> anyhow::Result<Vec<Evacuation>> {
    Ok(super::ledger::lineage(c, reg, lineage)?
        .into_iter()
        .map(|(row, f)| Evacuation {
            name: super::place_name(reg, &row),
            town: super::place_name(
                reg,
                &reg.village(&super::ledger::row_of(reg, &row))
                    .map(|v| v.town.clone())
                    .unwrap_or_default(),
            ),
            place: row,
            to_move: f.to_move,
            moved: f.moved,
            refused: f.refused,
            returned: f.returned,
            to_check: f.beyond,
        })
        .collect())
}

const LEVEL_COLOURS: [(&str, &str); 5] = [
    ("county", "#7b3294"),
    ("town", "#1e6fd9"),
    ("village", "#0a0"),
    ("group", "#c60"),
    ("site", "#b00"),
];

/// The three charts of a report.
fn charts_of(
    c: &Conn<'_>,
    reg: &Registry,
    tz: &jiff::tz::TimeZone,
    lineage: &str,
    people: &BTreeMap<String, Acc>,
    msgs: &[crate::correlate::store::StoredWarning],
    evacuation: &[Evacuation],
) -> anyhow::Result<Charts> {
    use super::charts::{Series, steps};
    let ts = |s: &str| s.parse::<jiff::Timestamp>().ok();
    // Acknowledgements, per level.
    let mut ack: Vec<Series> = Vec::new();
    let mut times: Vec<jiff::Timestamp> = Vec::new();
    for (level, colour) in LEVEL_COLOURS {
        let mut answered: Vec<jiff::Timestamp> = people
            .values()
            .filter(|a| a.level == level)
            .filter_map(|a| a.answered.as_deref().and_then(ts))
            .collect();
        times.extend(people.values().filter_map(|a| ts(&a.called)));
        if people.values().all(|a| a.level != level) {
            continue;
        }
        answered.sort();
        times.extend(answered.iter().copied());
        ack.push(Series {
            key: level.into(),
            colour,
            points: answered
                .iter()
                .enumerate()
                .map(|(i, t)| (*t, (i + 1) as f64))
                .collect(),
        });
    }
    // The evacuation ledger, report by report (people moved reported under any warning in
    // this one's life, returns under this one), ending on the table's figures.
    let life_from = msgs.first().and_then(|m| ts(&m.sent));
    let lifted = crate::correlate::store::lifted_at(c, lineage)?;
    let covers = super::ledger::covers_of_lineage(c, reg, lineage)?;
    type Ev = (jiff::Timestamp, String, Option<u32>, Option<u32>);
    let mut events: Vec<Ev> = Vec::new();
    {
        let mut q = c.prepare_cached(
            "SELECT a.at, a.kind, a.people, a.lineage,
                    (SELECT e.target FROM respond_evacuation e
                     WHERE e.lineage = a.lineage AND e.person = a.person ORDER BY e.at DESC LIMIT 1)
             FROM respond_answer a
             WHERE a.kind IN ('moved', 'returned') AND a.held IS NULL AND a.repeat_of IS NULL
               AND a.people IS NOT NULL ORDER BY a.at, a.id",
        )?;
        let rows = q.query_map((), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        for row in rows {
            let (at, kind, n, of, target) = row?;
            let (Some(at), Some(target)) = (ts(&at), target) else {
                continue;
            };
            let n = n.clamp(0, i64::from(u32::MAX)) as u32;
            let own = of.as_deref() == Some(lineage);
            let in_life = life_from.is_some_and(|f| at >= f) && lifted.is_none_or(|l| at <= l);
            match kind.as_str() {
                "moved" if own || in_life => events.push((at, target, Some(n), None)),
                "returned" if own => events.push((at, target, None, Some(n))),
                _ => {}
            }
        }
    }
    let replayed = super::ledger::replay(reg, &covers, &events);
    times.extend(replayed.iter().map(|r| r.0));
    times.extend(msgs.iter().filter_map(|m| ts(&m.sent)));
    let (Some(from), Some(to)) = (times.iter().min().copied(), times.iter().max().copied()) else {
        return Ok(Charts::default());
    };
    let end = evacuation.iter().fold((0u32, 0u32, 0u32), |t, e| {
        (t.0 + e.to_move, t.1 + e.moved, t.2 + e.returned)
    });
    let series =
        |key: &str, colour: &'static str, f: &dyn Fn(&super::ledger::Figures) -> u32, last: u32| {
            let mut points: Vec<(jiff::Timestamp, f64)> = vec![(from, 0.0)];
            points.extend(replayed.iter().map(|(t, x)| (*t, f64::from(f(x)))));
            points.push((to, f64::from(last)));
            Series {
                key: key.into(),
                colour,
                points,
            }
        };
    let evac = vec![
        Series {
            key: "to_move".into(),
            colour: "#777",
            points: vec![(from, f64::from(end.0))],
        },
        series("moved", "#0a0", &|x| x.moved, end.1),
        series("returned", "#1e6fd9", &|x| x.returned, end.2),
    ];
    let tier = vec![Series {
        key: "tier".into(),
        colour: "#b00",
        points: msgs
            .iter()
            .filter_map(|m| {
                let level = if m.msg_type == "Cancel" {
                    0.0
                } else {
                    m.tier
                        .as_deref()
                        .and_then(crate::correlate::Tier::parse)
                        .map_or(0.0, |t| f64::from(t as u8 + 1))
                };
                ts(&m.sent).map(|t| (t, level))
            })
            .collect(),
    }];
    let rain = rain_series(c, lineage, from, to)?;
    let mut legend = Vec::new();
    for (chart, list) in [
        ("ack", &ack),
        ("evacuation", &evac),
        ("tier", &tier),
        ("rain", &rain),
    ] {
        for s in list {
            legend.push((chart.to_string(), s.key.clone(), s.colour.to_string()));
        }
    }
    Ok(Charts {
        ack: steps(&ack, from, to, tz),
        evacuation: steps(&evac, from, to, tz),
        tier: steps(&tier, from, to, tz),
        rain: if rain.is_empty() {
            String::new()
        } else {
            steps(&rain, from, to, tz)
        },
        legend,
    })
}

/// Hourly rain, as the feeds reported it, at the gauges the warning's decisions give as their
/// reason (at most three), over [`from`, `to`]: the rainfall against the warnings issued.
/// How far before a warning's first event its report charts rain.
pub const RAIN_BEFORE: jiff::SignedDuration = jiff::SignedDuration::from_hours(6);
/// How long after a warning's last event a rain batch received still counts for its report
/// (a gauge's late batch).
pub const RAIN_LATE: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// The span of feed receipts a warning's report reads rain from: from [`RAIN_BEFORE`] its
/// first message to [`RAIN_LATE`] after the last thing in its record (message, call or
/// answer). The report reads within it, and retention keeps it whatever its age: one
/// definition for both.
pub fn rain_window(
    c: &Conn<'_>,
    lineage: &str,
) -> anyhow::Result<Option<(jiff::Timestamp, jiff::Timestamp)>> {
    let ts = |s: &str| s.parse::<jiff::Timestamp>().ok();
    let msgs = cstore::of_lineage(c, lineage)?;
    let sent: Vec<jiff::Timestamp> = msgs.iter().filter_map(|m| ts(&m.sent)).collect();
    let (Some(first), Some(mut last)) = (sent.iter().min().copied(), sent.iter().max().copied())
    else {
        return Ok(None);
    };
    for sql in [
        "SELECT max(at) FROM respond_answer WHERE lineage = ?1",
        "SELECT max(called) FROM respond_call WHERE lineage = ?1",
    ] {
        let t: Option<String> = c.prepare_cached(sql)?.query_row([lineage], |r| r.get(0))?;
        if let Some(t) = t.as_deref().and_then(ts) {
            last = last.max(t);
        }
    }
    Ok(Some((first - RAIN_BEFORE, last + RAIN_LATE)))
}

fn rain_series(
    c: &Conn<'_>,
    lineage: &str,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> anyhow::Result<Vec<super::charts::Series>> {
    const COLOURS: [&str; 3] = ["#1e6fd9", "#0aa", "#7b3294"];
    let mut gauges: Vec<String> = Vec::new();
    for d in cstore::decisions(c, lineage)? {
        let w = crate::correlate::why::read(&d.reason);
        for g in [w.get("gauge"), w.get("top").and_then(|t| t.get("gauge"))]
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
        {
            if !gauges.iter().any(|x| x == g) && gauges.len() < COLOURS.len() {
                gauges.push(g.to_string());
            }
        }
    }
    if gauges.is_empty() {
        return Ok(Vec::new());
    }
    let (since, until) = (
        crate::store::stamp(from - RAIN_BEFORE),
        crate::store::stamp(to + RAIN_LATE),
    );
    let (entries, _) = crate::feeds::state::received_between(c, &since, &until)?;
    let mut by_gauge: BTreeMap<String, BTreeMap<jiff::Timestamp, f64>> = BTreeMap::new();
    for e in entries {
        let crate::feeds::Observation::Rain(batch) = e.observation else {
            continue;
        };
        for r in batch.readings {
            let named = gauges
                .iter()
                .find(|g| **g == r.station || r.name.as_deref() == Some(g.as_str()));
            if let (Some(g), Some(mm), 60) = (named, r.mm, r.minutes)
                && r.end >= from
                && r.end <= to
            {
                by_gauge.entry(g.clone()).or_default().insert(r.end, mm);
            }
        }
    }
    Ok(gauges
        .iter()
        .zip(COLOURS)
        .filter_map(|(g, colour)| {
            let points: Vec<(jiff::Timestamp, f64)> = by_gauge.remove(g)?.into_iter().collect();
            Some(super::charts::Series {
                key: g.clone(),
                colour,
                points,
            })
        })
        .collect())
}

/// The report as a page to read or print (`templates/report/warning_html.{lang}`): the same
/// figures as the Markdown, with the charts.
pub fn html(r: &Report, lang: &str) -> anyhow::Result<String> {
    let lang = crate::templates::lang(lang);
    let event = crate::templates::event_name(&r.hazard, lang).unwrap_or_else(|_| r.hazard.clone());
    Ok(crate::templates::env()?
        .get_template(&format!("report/warning_html.{lang}"))?
        .render(minijinja::context! {
            r => minijinja::Value::from(minijinja::value::Serde(r)), event => event,
            ack => minijinja::Value::from_safe_string(r.charts.ack.clone()),
            evacuation => minijinja::Value::from_safe_string(r.charts.evacuation.clone()),
            tier => minijinja::Value::from_safe_string(r.charts.tier.clone()),
            rain => minijinja::Value::from_safe_string(r.charts.rain.clone()),
        })?)
}

/// The report in Markdown (`templates/report/warning.{lang}`).
pub fn markdown(r: &Report, lang: &str) -> anyhow::Result<String> {
    let lang = crate::templates::lang(lang);
    let event = crate::templates::event_name(&r.hazard, lang).unwrap_or_else(|_| r.hazard.clone());
    Ok(crate::templates::env()?
        .get_template(&format!("report/warning.{lang}"))?
        .render(minijinja::context! { r => minijinja::Value::from(minijinja::value::Serde(r)), event => event })?)
}

/// Everyone called, one row each.
pub fn persons_csv(r: &Report) -> anyhow::Result<String> {
    let mut w = crate::text::CsvOut::in_memory();
    w.row([
        "person",
        "name",
        "level",
        "role",
        "place",
        "called",
        "answered",
        "minutes",
        "channel",
        "state",
        "escalation_steps",
    ])?;
    for p in &r.persons {
        w.row([
            p.person.as_str(),
            &p.name,
            &p.level,
            &p.role,
            &p.place,
            &p.called,
            p.answered.as_deref().unwrap_or(""),
            &p.minutes.map(|m| format!("{m:.1}")).unwrap_or_default(),
            p.channel.as_deref().unwrap_or(""),
            &p.state,
            &p.steps.to_string(),
        ])?;
    }
    w.into_string()
}

/// The timeline, one row per event.
pub fn timeline_csv(r: &Report) -> anyhow::Result<String> {
    let mut w = crate::text::CsvOut::in_memory();
    w.row(["at", "kind", "who", "what"])?;
    for e in &r.timeline {
        w.row([e.at.as_str(), &e.kind, &e.who, &e.what])?;
    }
    w.into_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_are_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(super::percentile(&v, 50.0), Some(5.0));
        assert_eq!(super::percentile(&v, 90.0), Some(9.0));
        assert_eq!(super::percentile(&[4.0], 90.0), Some(4.0));
        assert_eq!(super::percentile(&[], 50.0), None);
    }
}
