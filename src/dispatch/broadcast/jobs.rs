//! The broadcast tables (`broadcast_*`, migration 0006): a job per (warning version, route),
//! the terminals each must reach, terminal state, the link's heartbeat, and the alarms respond
//! chases.
//!
//! ```text
//! queued ──platform says 1──▶ sent ──every terminal reported──▶ done
//!   │  └─unreachable / HTTP error──▶ queued (later, attempts + 1; alarm once past the deadline)
//!   ├─refused (signature, content)──▶ failed + alarm
//!   ├─a newer version of the warning──▶ superseded
//!   └─a Cancel with nothing played before──▶ skipped
//! target: waiting ──▶ playing ──▶ played
//!                 └──▶ failed (offline, …) + alarm
//!                 └──deadline passes──▶ unconfirmed + alarm (a late report still marks it played)
//! ```
//!
//! Rows are written in the decision's transaction (`enqueue`, from the dispatch hook), so a
//! warning that was decided is never without its broadcast, even across a crash. A job keeps
//! its EBMID from the first attempt: a retry after a crash is the same broadcast to the
//! platform.

use std::collections::HashMap;

use crate::store::sql::{Conn, OptionalExtension, Tx};
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;
use serde::Serialize;

use crate::correlate::MessageKind;
use crate::correlate::Targets;
use crate::dispatch::outbox::Policy;
use crate::registry::model::TerminalKind;
use crate::store::stamp;

crate::store::sql_enum! {
    /// Where a broadcast job is (`broadcast_job.state`; the diagram at the top of this module).
    pub enum JobState {
        /// Waiting to be sent.
        Queued = "queued",
        /// Sent: terminals' reports awaited.
        Sent = "sent",
        /// Every terminal reported (or the deadline passed and was reported).
        Done = "done",
        /// Refused or never taken.
        Failed = "failed",
        /// A newer broadcast of the warning replaced it before it went.
        Superseded = "superseded",
        /// A Cancel with nothing played before.
        Skipped = "skipped",
    }
}

crate::store::sql_enum! {
    /// One terminal of one job (`broadcast_target.state`).
    pub enum TargetState {
        /// Not yet reported.
        Waiting = "waiting",
        /// Reported playing.
        Playing = "playing",
        /// Reported played.
        Played = "played",
        /// Reported failed.
        Failed = "failed",
        /// No confirmation by the deadline.
        Unconfirmed = "unconfirmed",
    }
}

/// Which routes this office has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Routes {
    /// A county emergency-broadcast platform (every kind of terminal).
    pub platform: bool,
    /// An Icecast server IP speakers pull from.
    pub icecast: bool,
}

impl Routes {
    /// The route for a terminal of this kind: IP speakers pull Icecast where there is one; the
    /// platform drives everything else (and IP speakers when there is no Icecast).
    pub fn route(&self, kind: TerminalKind) -> Option<&'static str> {
        match kind {
            TerminalKind::Ip if self.icecast => Some("icecast"),
            _ if self.platform => Some("platform"),
            _ => None,
        }
    }
}

/// What the dispatch hook needs to queue broadcasts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Configured routes.
    pub routes: Routes,
    /// Terminals must confirm play within this of the decision.
    pub deadline: SignedDuration,
    /// Office, language, drill flag (the script's words).
    pub policy: Policy,
}

/// What queueing one decision's broadcasts did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Jobs written.
    pub jobs: usize,
    /// Terminals they must reach.
    pub terminals: usize,
    /// Terminals with no route (said, and alarmed).
    pub no_route: Vec<String>,
    /// Older queued jobs replaced.
    pub superseded: usize,
    /// Cancels not sent because nothing had been broadcast.
    pub skipped: usize,
}

/// Queue the broadcasts of one decision, inside its transaction.
pub fn enqueue(
    tx: &Tx<'_>,
    decision: i64,
    t: &Targets,
    now: Timestamp,
    plan: &Plan,
) -> anyhow::Result<Enqueued> {
    let mut out = Enqueued::default();
    if t.terminals.is_empty() || (!plan.routes.platform && !plan.routes.icecast) {
        return Ok(out);
    }
    let at = stamp(now);
    let terms = crate::registry::db::terminals(tx, &t.terminals)?;
    let mut by_route: std::collections::BTreeMap<&str, Vec<(String, String)>> = Default::default();
    for term in &terms {
        match plan.routes.route(term.kind) {
            Some(r) => by_route
                .entry(r)
                .or_default()
                .push((term.id.clone(), term.village.clone())),
            None => {
                out.no_route.push(term.id.clone());
                tx.execute(
                    "INSERT OR IGNORE INTO broadcast_alarm (at, job, lineage, terminal, village, kind, detail)
                     VALUES (?1, 0, ?2, ?3, ?4, 'no_route', ?5)",
                    params![
                        at,
                        t.lineage,
                        term.id,
                        term.village,
                        format!(
                            "terminal {} ({}) is a {:?} terminal and no broadcast route reaches it: configure [dispatch.broadcast.platform]",
                            term.id, term.name, term.kind
                        )
                    ],
                )?;
            }
        }
    }
    if by_route.is_empty() {
        return Ok(out);
    }
    let script = super::script::script(t, &plan.policy)?;
    let title = super::script::title(t, &plan.policy)?;
    for (route, targets) in by_route {
        out.superseded += tx.execute(
            "UPDATE broadcast_job SET state = 'superseded', updated = ?1
             WHERE lineage = ?2 AND route = ?3 AND state = 'queued' AND version < ?4",
            params![at, t.lineage, route, t.version],
        )?;
        let mut state = JobState::Queued;
        let mut err: Option<String> = None;
        if t.send == MessageKind::Cancel {
            let played: i64 = tx.query_row(
                "SELECT count(*) FROM broadcast_job WHERE lineage = ?1 AND route = ?2
                   AND state IN ('sent', 'done', 'failed') AND version < ?3",
                params![t.lineage, route, t.version],
                |r| r.get(0),
            )?;
            if played == 0 {
                state = JobState::Skipped;
                err = Some("nothing was broadcast for this warning to stop".into());
                out.skipped += 1;
            }
        }
        let mut areas: Vec<&str> = targets.iter().map(|(_, v)| v.as_str()).collect();
        areas.sort_unstable();
        areas.dedup();
        let n = tx.execute(
            "INSERT OR IGNORE INTO broadcast_job
               (decision, lineage, version, send, hazard, tier, route, title, script, areas, state,
                not_before, deadline, last_error, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?12, ?12)",
            params![
                decision,
                t.lineage,
                t.version,
                t.send.as_str(),
                t.hazard.as_str(),
                t.tier.as_str(),
                route,
                title,
                script,
                serde_json::to_string(&areas)?,
                state,
                at,
                stamp(now + plan.deadline),
                err,
            ],
        )?;
        if n == 0 {
            continue;
        }
        let job = tx.last_insert_rowid()?;
        out.jobs += 1;
        // A lift is not tracked per terminal: the platform stops the broadcast, an Icecast mount
        // plays the lift once.
        if state == JobState::Queued && t.send != MessageKind::Cancel {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO broadcast_target (job, terminal, village, state, updated)
                 VALUES (?1, ?2, ?3, 'waiting', ?4)",
            )?;
            for (term, village) in &targets {
                out.terminals += ins.execute(params![job, term, village, at])?;
            }
        }
    }
    Ok(out)
}

/// A job due to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// Job id.
    pub id: i64,
    /// hazard:area.
    pub lineage: String,
    /// Version.
    pub version: i64,
    /// Alert / Update / Cancel.
    pub send: String,
    /// Hazard.
    pub hazard: String,
    /// Tier.
    pub tier: String,
    /// Title.
    pub title: String,
    /// Spoken text.
    pub script: String,
    /// Village codes.
    pub areas: Vec<String>,
    /// Attempts so far.
    pub attempts: i64,
    /// Its EBMID when an earlier attempt assigned one.
    pub ebm_id: Option<String>,
    /// The EBMID of the latest earlier broadcast of this warning on the route (replaced or
    /// stopped by this one).
    pub related: Option<String>,
    /// Terminals: (id, village).
    pub terminals: Vec<(String, String)>,
    /// Deadline.
    pub deadline: Timestamp,
}

/// Jobs of a route that are due to be sent, oldest first.
pub fn due(conn: &Conn<'_>, route: &str, now: Timestamp, limit: usize) -> anyhow::Result<Vec<Due>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, lineage, version, send, hazard, tier, title, script, areas, attempts, ebm_id, deadline
         FROM broadcast_job WHERE route = ?1 AND state = 'queued' AND not_before <= ?2
         ORDER BY id LIMIT ?3",
    )?;
    // Read by name into the job, then its areas and deadline parsed (a row whose stored JSON
    // or time cannot be read is an error naming it, not a half-filled job).
    struct Row {
        due: Due,
        areas: String,
        deadline: String,
    }
    let rows = stmt
        .query_map(params![route, stamp(now), limit as i64], |r| {
            Ok(Row {
                due: Due {
                    id: r.get("id")?,
                    lineage: r.get("lineage")?,
                    version: r.get("version")?,
                    send: r.get("send")?,
                    hazard: r.get("hazard")?,
                    tier: r.get("tier")?,
                    title: r.get("title")?,
                    script: r.get("script")?,
                    areas: Vec::new(),
                    attempts: r.get("attempts")?,
                    ebm_id: r.get("ebm_id")?,
                    related: None,
                    terminals: Vec::new(),
                    deadline: Timestamp::UNIX_EPOCH,
                },
                areas: r.get("areas")?,
                deadline: r.get("deadline")?,
            })
        })?
        .collect::<crate::store::sql::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for Row {
        mut due,
        areas,
        deadline,
    } in rows
    {
        let (id, lineage, version) = (due.id, due.lineage.clone(), due.version);
        let related: Option<String> = conn
            .query_row(
                "SELECT ebm_id FROM broadcast_job WHERE lineage = ?1 AND route = ?2 AND version < ?3
                   AND ebm_id IS NOT NULL AND state IN ('sent', 'done', 'failed')
                 ORDER BY version DESC LIMIT 1",
                params![lineage, route, version],
                |r| r.get(0),
            )
            .optional()?;
        let mut ts = conn.prepare_cached(
            "SELECT terminal, village FROM broadcast_target WHERE job = ?1 AND state = 'waiting'
             ORDER BY terminal",
        )?;
        let terminals = ts
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<crate::store::sql::Result<Vec<_>>>()?;
        due.areas = serde_json::from_str(&areas)
            .map_err(|e| anyhow::anyhow!("broadcast_job {id}: areas {areas:?}: {e}"))?;
        due.deadline = deadline
            .parse()
            .map_err(|e| anyhow::anyhow!("broadcast_job {id}: deadline {deadline:?}: {e}"))?;
        due.related = related;
        due.terminals = terminals;
        out.push(due);
    }
    Ok(out)
}

/// Give a job its EBMID before the first attempt (kept across retries and restarts).
pub fn assign_ebm(tx: &Tx<'_>, job: i64, ebm_id: &str) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE broadcast_job SET ebm_id = ?2 WHERE id = ?1 AND ebm_id IS NULL",
        params![job, ebm_id],
    )?;
    Ok(())
}

/// The route took it: poll for play from `poll_at`.
pub fn sent(
    tx: &Tx<'_>,
    job: i64,
    audio: Option<&str>,
    result: &str,
    now: Timestamp,
    poll_at: Timestamp,
) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE broadcast_job SET state = 'sent', audio = ?2, result = ?3, attempts = attempts + 1,
           not_before = ?4, last_error = NULL, updated = ?5 WHERE id = ?1",
        params![job, audio, result, stamp(poll_at), stamp(now)],
    )?;
    audit(
        tx,
        job,
        "broadcast.sent",
        None,
        now,
        serde_json::json!({ "audio": audio, "result": result }),
    )
}

/// Could not reach the route (or it answered with a passing failure): queued again, tried at
/// `retry_at` for the terminals still waiting.
pub fn retry(
    tx: &Tx<'_>,
    job: i64,
    why: &str,
    now: Timestamp,
    retry_at: Timestamp,
) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE broadcast_job SET state = 'queued', attempts = attempts + 1, last_error = ?2,
           not_before = ?3, updated = ?4 WHERE id = ?1",
        params![job, why, stamp(retry_at), stamp(now)],
    )?;
    Ok(())
}

/// The route refused the broadcast for good (signature, content): the job and every terminal
/// failed, and respond is told.
pub fn refused(tx: &Tx<'_>, job: i64, why: &str, now: Timestamp) -> anyhow::Result<()> {
    let at = stamp(now);
    tx.execute(
        "UPDATE broadcast_job SET state = 'failed', attempts = attempts + 1, last_error = ?2,
           result = ?2, updated = ?3 WHERE id = ?1",
        params![job, why, at],
    )?;
    tx.execute(
        "UPDATE broadcast_target SET state = 'failed', detail = ?2, updated = ?3
         WHERE job = ?1 AND state IN ('waiting', 'playing')",
        params![job, why, at],
    )?;
    alarm(tx, job, None, "refused", why, now)?;
    audit(
        tx,
        job,
        "broadcast.refused",
        None,
        now,
        serde_json::json!({ "why": why }),
    )
}

/// One audit entry about a broadcast (or one of its terminals), in the transaction that
/// records it: the after-action review reads what each loudspeaker was asked and did.
fn audit(
    tx: &Tx<'_>,
    job: i64,
    kind: &str,
    terminal: Option<&str>,
    now: Timestamp,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let row: Option<(String, String, i64, String)> = tx
        .prepare_cached("SELECT lineage, route, version, send FROM broadcast_job WHERE id = ?1")?
        .query_row(params![job], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((lineage, route, version, send)) = row else {
        return Ok(());
    };
    let subject = terminal.map_or_else(|| format!("job:{job}"), String::from);
    let entry = crate::store::audit::Entry::utc(now, "dispatch", kind, subject, detail).with([
        ("job", job.into()),
        ("lineage", lineage.into()),
        ("route", route.into()),
        ("version", version.into()),
        ("send", send.into()),
    ]);
    crate::store::audit::append(tx, &entry)?;
    Ok(())
}

fn alarm(
    tx: &Tx<'_>,
    job: i64,
    terminal: Option<(&str, &str)>,
    kind: &str,
    detail: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO broadcast_alarm (at, job, lineage, terminal, village, kind, detail)
         SELECT ?1, id, lineage, ?2, ?3, ?4, ?5 FROM broadcast_job WHERE id = ?6",
        params![
            stamp(now),
            terminal.map(|t| t.0),
            terminal.map(|t| t.1),
            kind,
            detail,
            job
        ],
    )?;
    Ok(())
}

/// A job being tracked: (id, EBMID, deadline, expires).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// Job id.
    pub id: i64,
    /// Its EBMID (platform route).
    pub ebm_id: Option<String>,
    /// Terminals must have confirmed by then.
    pub deadline: Timestamp,
}

/// At start: Icecast jobs that were streaming when stormbell stopped go again from the start
/// (a message heard twice is better than one cut off mid-sentence). Returns how many.
pub fn resume_streams(tx: &Tx<'_>, now: Timestamp) -> anyhow::Result<usize> {
    Ok(tx.execute(
        "UPDATE broadcast_job SET state = 'queued', not_before = ?1, updated = ?1,
           last_error = 'interrupted by a restart while streaming'
         WHERE route = 'icecast' AND state = 'sent' AND result = 'streaming'",
        params![stamp(now)],
    )?)
}

/// Some streams of an Icecast job failed: queued again for the terminals still waiting (the
/// attempt was counted when streaming began).
pub fn requeue(
    tx: &Tx<'_>,
    job: i64,
    why: &str,
    now: Timestamp,
    retry_at: Timestamp,
) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE broadcast_job SET state = 'queued', last_error = ?2, not_before = ?3, updated = ?4
         WHERE id = ?1",
        params![job, why, stamp(retry_at), stamp(now)],
    )?;
    Ok(())
}

/// Every stream of an Icecast job went out: done.
pub fn finish(tx: &Tx<'_>, job: i64, audio: &str, now: Timestamp) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE broadcast_job SET state = 'done', audio = ?2, last_error = NULL, updated = ?3
         WHERE id = ?1",
        params![job, audio, stamp(now)],
    )?;
    Ok(())
}

/// A poll found nothing new (or could not reach the route): look again at `next`.
pub fn poll_later(
    tx: &Tx<'_>,
    job: i64,
    why: Option<&str>,
    now: Timestamp,
    next: Timestamp,
) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE broadcast_job SET not_before = ?2, last_error = coalesce(?3, last_error), updated = ?4
         WHERE id = ?1",
        params![job, stamp(next), why, stamp(now)],
    )?;
    Ok(())
}

/// Sent jobs of a route whose next poll is due.
pub fn to_poll(conn: &Conn<'_>, route: &str, now: Timestamp) -> anyhow::Result<Vec<Tracked>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ebm_id, deadline FROM broadcast_job
         WHERE route = ?1 AND state = 'sent' AND not_before <= ?2 ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![route, stamp(now)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<crate::store::sql::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(id, ebm_id, d)| {
            Ok(Tracked {
                id,
                ebm_id,
                deadline: d.parse()?,
            })
        })
        .collect()
}

/// One terminal's report, in the platform's codes plus one of ours.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Terminal id.
    pub terminal: String,
    /// 0 failed, 1 playing, 2 done; 3 (ours) played with no confirmation (an Icecast mount
    /// with fewer listeners than speakers).
    pub code: u8,
    /// The route's words.
    pub desc: String,
}

/// What polling a job found: per-terminal reports, the platform's words and coverage. Marks
/// terminals, records plays on `broadcast_terminal`, alarms failures, and finishes the job
/// when every terminal has a final answer (else polls again at `next`).
pub fn reported(
    tx: &Tx<'_>,
    job: i64,
    reports: &[Report],
    result: &str,
    coverage: Option<f64>,
    now: Timestamp,
    next: Timestamp,
) -> anyhow::Result<()> {
    let at = stamp(now);
    {
        let mut village_of = tx.prepare_cached(
            "SELECT village, state FROM broadcast_target WHERE job = ?1 AND terminal = ?2",
        )?;
        let mut set = tx.prepare_cached(
            "UPDATE broadcast_target SET state = ?3, detail = ?4, updated = ?5
             WHERE job = ?1 AND terminal = ?2",
        )?;
        let mut played = tx.prepare_cached(
            "INSERT INTO broadcast_terminal (id, seen, played_job, played_at) VALUES (?1, ?2, ?3, ?2)
             ON CONFLICT (id) DO UPDATE SET seen = ?2, played_job = ?3, played_at = ?2",
        )?;
        for r in reports {
            let Some((village, before)) = village_of
                .query_row(params![job, r.terminal], |x| {
                    Ok((x.get::<_, String>(0)?, x.get::<_, TargetState>(1)?))
                })
                .optional()?
            else {
                tracing::warn!(job, terminal = %r.terminal, "the platform reported on a terminal this broadcast did not target");
                continue;
            };
            let state = match r.code {
                2 => TargetState::Played,
                1 => TargetState::Playing,
                3 => TargetState::Unconfirmed,
                _ => TargetState::Failed,
            };
            if before == state || before == TargetState::Played {
                continue;
            }
            set.execute(params![job, r.terminal, state, r.desc, at])?;
            if state != TargetState::Playing {
                audit(
                    tx,
                    job,
                    &format!("broadcast.{state}"),
                    Some(&r.terminal),
                    now,
                    serde_json::json!({ "village": village, "detail": r.desc }),
                )?;
            }
            match state {
                TargetState::Played => {
                    played.execute(params![r.terminal, at, job])?;
                }
                TargetState::Failed => alarm(
                    tx,
                    job,
                    Some((&r.terminal, &village)),
                    "failed",
                    &format!("terminal {} did not play: {}", r.terminal, r.desc),
                    now,
                )?,
                TargetState::Unconfirmed => alarm(
                    tx,
                    job,
                    Some((&r.terminal, &village)),
                    "unconfirmed",
                    &format!("terminal {} did not confirm play: {}", r.terminal, r.desc),
                    now,
                )?,
                _ => {}
            }
        }
    }
    let open: i64 = tx.query_row(
        "SELECT count(*) FROM broadcast_target WHERE job = ?1 AND state IN ('waiting', 'playing', 'unconfirmed')",
        params![job],
        |r| r.get(0),
    )?;
    let state = if open == 0 {
        JobState::Done
    } else {
        JobState::Sent
    };
    tx.execute(
        "UPDATE broadcast_job SET state = ?2, result = ?3, coverage = coalesce(?4, coverage),
           not_before = ?5, updated = ?6 WHERE id = ?1",
        params![job, state, result, coverage, stamp(next), at],
    )?;
    Ok(())
}

/// Past their deadline: terminals that have not confirmed play are `unconfirmed` and alarmed,
/// and a job the route never took is alarmed as unreachable (it keeps retrying). Once per job.
/// Returns the alarms raised.
pub fn deadlines(tx: &Tx<'_>, route: &str, now: Timestamp) -> anyhow::Result<usize> {
    let at = stamp(now);
    let jobs: Vec<(i64, String, Option<String>)> = tx
        .prepare_cached(
            "SELECT id, state, last_error FROM broadcast_job WHERE route = ?1 AND alarmed = 0
               AND state IN ('queued', 'sent') AND deadline <= ?2",
        )?
        .query_map(params![route, at], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<crate::store::sql::Result<_>>()?;
    let mut raised = 0;
    for (job, state, err) in jobs {
        if state == "queued" {
            let why = format!(
                "the {route} route has not taken this broadcast by its deadline: {}",
                err.as_deref().unwrap_or("not yet attempted")
            );
            alarm(tx, job, None, "unreachable", &why, now)?;
            raised += 1;
        }
        let silent: Vec<(String, String, String)> = tx
            .prepare_cached(
                "SELECT terminal, village, state FROM broadcast_target
                 WHERE job = ?1 AND state IN ('waiting', 'playing')",
            )?
            .query_map(params![job], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<crate::store::sql::Result<_>>()?;
        for (term, village, was) in silent {
            let why = format!("terminal {term} did not confirm play by the deadline (last: {was})");
            tx.execute(
                "UPDATE broadcast_target SET state = 'unconfirmed', detail = ?3, updated = ?4
                 WHERE job = ?1 AND terminal = ?2",
                params![job, term, why, at],
            )?;
            alarm(tx, job, Some((&term, &village)), "unconfirmed", &why, now)?;
            audit(
                tx,
                job,
                "broadcast.unconfirmed",
                Some(&term),
                now,
                serde_json::json!({ "village": village, "detail": why }),
            )?;
            raised += 1;
        }
        tx.execute(
            "UPDATE broadcast_job SET alarmed = 1, updated = ?2 WHERE id = ?1",
            params![job, at],
        )?;
    }
    Ok(raised)
}

/// Stop tracking sent jobs older than `keep` (a late report is no longer awaited).
pub fn retire(
    tx: &Tx<'_>,
    route: &str,
    now: Timestamp,
    keep: SignedDuration,
) -> anyhow::Result<usize> {
    Ok(tx.execute(
        "UPDATE broadcast_job SET state = 'done', updated = ?3
         WHERE route = ?1 AND state = 'sent' AND created <= ?2",
        params![route, stamp(now - keep), stamp(now)],
    )?)
}

/// The heartbeat's verdict.
pub fn link(tx: &Tx<'_>, route: &str, ok: Result<(), &str>, now: Timestamp) -> anyhow::Result<()> {
    let at = stamp(now);
    tx.execute(
        "INSERT INTO broadcast_link (route, ok, last_ok, last_error, checked)
         VALUES (?1, ?2, CASE WHEN CAST(?2 AS BIGINT) = 1 THEN ?4 END, ?3, ?4)
         ON CONFLICT (route) DO UPDATE SET ok = ?2,
           last_ok = CASE WHEN CAST(?2 AS BIGINT) = 1 THEN ?4 ELSE broadcast_link.last_ok END,
           last_error = coalesce(?3, broadcast_link.last_error), checked = ?4",
        params![route, ok.is_ok(), ok.err(), at],
    )?;
    Ok(())
}

/// Terminal states as the platform reported them.
pub fn terminal_states(
    tx: &Tx<'_>,
    states: &[crate::dispatch::platform::ebd::TerminalState],
    now: Timestamp,
) -> anyhow::Result<usize> {
    let at = stamp(now);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO broadcast_terminal (id, online, state_desc, seen) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET online = ?2, state_desc = ?3, seen = ?4",
    )?;
    for s in states {
        stmt.execute(params![s.ebrid, s.online, s.desc, at])?;
    }
    Ok(states.len())
}

/// An alarm for respond.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    /// Id (increasing).
    pub id: i64,
    /// When.
    pub at: String,
    /// Job (0: no job could be made).
    pub job: i64,
    /// hazard:area.
    pub lineage: String,
    /// The terminal, or none for the whole job.
    pub terminal: Option<String>,
    /// Its village.
    pub village: Option<String>,
    /// unconfirmed | failed | refused | unreachable | no_route.
    pub kind: String,
    /// What happened, in words.
    pub detail: String,
}

/// Alarms after `after` (respond takes them in order).
pub fn alarms(conn: &Conn<'_>, after: i64) -> anyhow::Result<Vec<Alarm>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, job, lineage, terminal, village, kind, detail FROM broadcast_alarm
         WHERE id > ?1 ORDER BY id",
    )?;
    Ok(stmt
        .query_map(params![after], |r| {
            Ok(Alarm {
                id: r.get(0)?,
                at: r.get(1)?,
                job: r.get(2)?,
                lineage: r.get(3)?,
                terminal: r.get(4)?,
                village: r.get(5)?,
                kind: r.get(6)?,
                detail: r.get(7)?,
            })
        })?
        .collect::<crate::store::sql::Result<_>>()?)
}

/// Terminal targets by state, per route (for status).
pub fn counts(conn: &Conn<'_>) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT j.route, t.state, count(*) FROM broadcast_target t JOIN broadcast_job j ON j.id = t.job
         GROUP BY j.route, t.state ORDER BY j.route, t.state",
    )?;
    Ok(stmt
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::store::sql::Result<_>>()?)
}

/// A route's link as its last heartbeat found it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Link {
    /// platform | icecast.
    pub route: String,
    /// The last check succeeded.
    pub ok: bool,
    /// When one last did.
    pub last_ok: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was last checked.
    pub checked: String,
}

/// The broadcast picture for `stormbell status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Terminal targets by (route, state).
    pub targets: Vec<(String, String, i64)>,
    /// Alarms by kind (all, consumed or not).
    pub alarms: Vec<(String, i64)>,
    /// Each route's link.
    pub links: Vec<Link>,
    /// Terminals the platform last reported offline.
    pub offline: Vec<String>,
}
/// Terminals' outcomes over every broadcast: (state, how many).
pub fn target_states(conn: &Conn<'_>) -> anyhow::Result<Vec<(TargetState, i64)>> {
    Ok(conn
        .prepare_cached("SELECT state, count(*) FROM broadcast_target GROUP BY state")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::store::sql::Result<_>>()?)
}

/// Read the summary.
pub fn summary(conn: &Conn<'_>) -> anyhow::Result<Summary> {
    let alarms = conn
        .prepare_cached("SELECT kind, count(*) FROM broadcast_alarm GROUP BY kind ORDER BY kind")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    let links = conn
        .prepare_cached(
            "SELECT route, ok, last_ok, last_error, checked FROM broadcast_link ORDER BY route",
        )?
        .query_map((), |r| {
            Ok(Link {
                route: r.get(0)?,
                ok: r.get(1)?,
                last_ok: r.get(2)?,
                last_error: r.get(3)?,
                checked: r.get(4)?,
            })
        })?
        .collect::<crate::store::sql::Result<_>>()?;
    let offline = conn
        .prepare_cached("SELECT id FROM broadcast_terminal WHERE online = 0 ORDER BY id")?
        .query_map((), |r| r.get(0))?
        .collect::<crate::store::sql::Result<_>>()?;
    Ok(Summary {
        targets: counts(conn)?,
        alarms,
        links,
        offline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_cut_off_by_a_restart_plays_again_and_nothing_else_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path().join("t.db")).unwrap();
        let now: Timestamp = "2019-08-09T13:00:00Z".parse().unwrap();
        let n = store
            .write_blocking(move |tx| {
                for (id, route, state, result) in [
                    (1, "icecast", "sent", "streaming"),
                    (2, "icecast", "done", "streamed"),
                    (3, "platform", "sent", "1 执行成功"),
                ] {
                    tx.execute(
                        "INSERT INTO broadcast_job (id, decision, lineage, version, send, hazard, tier, route,
                           title, script, areas, state, result, not_before, deadline, created, updated)
                         VALUES (?1, ?1, 'x', 1, 'Alert', 'flash_flood', 'red', ?2, 't', 's', '[]', ?3, ?4,
                                 '', '', '', '')",
                        params![id, route, state, result],
                    )?;
                }
                resume_streams(tx, now)
            })
            .unwrap();
        assert_eq!(n, 1);
        let states: Vec<String> = store
            .read_blocking(|c| {
                let mut st = c.prepare("SELECT state FROM broadcast_job ORDER BY id")?;
                let r = st
                    .query_map((), |r| r.get(0))?
                    .collect::<crate::store::sql::Result<Vec<String>>>()?;
                Ok(r)
            })
            .unwrap();
        assert_eq!(states, vec!["queued", "done", "sent"]);
    }
}

/// Loudspeaker plays for a village, from the latest broadcast of each route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plays {
    /// Terminals asked to play.
    pub total: u32,
    /// Confirmed played.
    pub played: u32,
    /// Playing now.
    pub playing: u32,
    /// Failed or never confirmed (these raised alarms).
    pub failed: u32,
}

/// Per warning lineage of `lineages`, per village: the loudspeakers of the lineage's latest
/// broadcast on each route that reached the village (a ladder's resound counts for its village
/// only): how many were asked to play, played, are playing, failed or never confirmed. For the
/// office's board, which reads every warning in force at once (one statement for all of them:
/// [`query_in`](crate::store::sql::query_in)).
pub fn plays_by_lineage(
    conn: &Conn<'_>,
    lineages: &[String],
) -> anyhow::Result<HashMap<String, HashMap<String, Plays>>> {
    let rows = crate::store::sql::query_in(
        conn,
        lineages,
        |list| {
            format!(
                "SELECT j.lineage, t.village, t.state, count(*) FROM broadcast_target t
             JOIN broadcast_job j ON j.id = t.job
             WHERE j.lineage IN ({list}) AND j.send != 'Cancel'
               AND t.job = (SELECT max(t2.job) FROM broadcast_target t2
                            JOIN broadcast_job j2 ON j2.id = t2.job
                            WHERE j2.lineage = j.lineage AND j2.route = j.route
                              AND j2.send != 'Cancel' AND t2.village = t.village)
             GROUP BY j.lineage, t.village, t.state"
            )
        },
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?;
    let mut out: HashMap<String, HashMap<String, Plays>> = HashMap::new();
    for (lineage, village, state, n) in rows {
        let n = n.clamp(0, i64::from(u32::MAX)) as u32;
        let p = out.entry(lineage).or_default().entry(village).or_default();
        p.total += n;
        match state.as_str() {
            "played" => p.played += n,
            "playing" => p.playing += n,
            "failed" | "unconfirmed" => p.failed += n,
            _ => {}
        }
    }
    Ok(out)
}

/// Sound one village's loudspeakers again with a warning's latest broadcast (a respond ladder
/// step, `terminal`): per route, a copy of the lineage's latest broadcast limited to that
/// village's terminals, queued now with the same time to confirm. Once per broadcast and
/// village however many steps ask. Returns the jobs queued (0: nothing was broadcast there).
pub fn resound(tx: &Tx<'_>, lineage: &str, village: &str, now: Timestamp) -> anyhow::Result<usize> {
    let at = stamp(now);
    let latest: Vec<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT id, deadline, created FROM broadcast_job WHERE id IN (
                SELECT max(id) FROM broadcast_job
                WHERE lineage = ?1 AND send != 'Cancel' AND resound IS NULL
                  AND state NOT IN ('skipped', 'superseded')
                GROUP BY route)",
        )?
        .query_map(params![lineage], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::store::sql::Result<_>>()?;
    let mut queued = 0;
    for (job, deadline, created) in latest {
        let terminals: Vec<String> = tx
            .prepare_cached(
                "SELECT terminal FROM broadcast_target WHERE job = ?1 AND village = ?2",
            )?
            .query_map(params![job, village], |r| r.get(0))?
            .collect::<crate::store::sql::Result<_>>()?;
        if terminals.is_empty() {
            continue;
        }
        let window = match (deadline.parse::<Timestamp>(), created.parse::<Timestamp>()) {
            (Ok(d), Ok(c)) => d.duration_since(c),
            _ => SignedDuration::from_mins(10),
        };
        let n = tx.execute(
            "INSERT OR IGNORE INTO broadcast_job
               (decision, lineage, version, send, hazard, tier, route, title, script, areas, state,
                not_before, deadline, created, updated, resound)
             SELECT decision, lineage, version, send, hazard, tier, route, title, script, ?2,
                    'queued', ?3, ?4, ?3, ?3, id
             FROM broadcast_job WHERE id = ?1",
            params![
                job,
                serde_json::to_string(&[village])?,
                at,
                stamp(now.checked_add(window).unwrap_or(now))
            ],
        )?;
        if n == 0 {
            continue;
        }
        let copy = tx.last_insert_rowid()?;
        let mut ins = tx.prepare_cached(
            "INSERT OR IGNORE INTO broadcast_target (job, terminal, village, state, updated)
             VALUES (?1, ?2, ?3, 'waiting', ?4)",
        )?;
        for t in &terminals {
            ins.execute(params![copy, t, village, at])?;
        }
        queued += 1;
    }
    Ok(queued)
}
