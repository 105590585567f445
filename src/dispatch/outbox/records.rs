//! Reads for the stages and views after dispatch (the board, status, metrics, a drill's
//! records), so that no one else names the outbox's tables.

use std::collections::{BTreeMap, HashMap};

use crate::store::sql::{Conn, OptionalExtension, Tx};
use jiff::Timestamp;
use rusqlite::params;
use serde::Serialize;

use super::*;

/// What became of a person's warning texts of one lineage (any of them; not notices), for the
/// office's board. A text carried inside another counts as that one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The centre accepted one ("sent").
    pub sent: bool,
    /// A receipt says one reached the handset.
    pub delivered: bool,
    /// Sent, none delivered, and one passed its receipt deadline with no receipt ("sent, no
    /// receipt": never counted as delivered).
    pub no_receipt: bool,
}

/// Per warning lineage of `lineages`, per person: see [`Delivery`]. One statement for all of
/// them ([`query_in`](crate::store::sql::query_in): the board reads every warning in force at
/// once). The channel is compared as `channel || ''` so that the messages are found by their
/// lineage: SQLite cannot count a list's keys and would otherwise walk every text by channel.
pub fn delivery_by_lineage(
    c: &Conn<'_>,
    lineages: &[String],
) -> anyhow::Result<HashMap<String, HashMap<String, Delivery>>> {
    let rows = crate::store::sql::query_in(
        c,
        lineages,
        |list| {
            format!(
                "SELECT m.lineage, m.person,
                    max(CASE WHEN coalesce(k.state, m.state) IN ('accepted', 'delivered', 'delivery_unknown') THEN 1 ELSE 0 END),
                    max(CASE WHEN coalesce(k.state, m.state) = 'delivered' THEN 1 ELSE 0 END),
                    max(CASE WHEN coalesce(k.state, m.state) = 'delivery_unknown' THEN 1 ELSE 0 END)
             FROM dispatch_message m LEFT JOIN dispatch_message k ON k.id = m.merged_into
             WHERE m.lineage IN ({list}) AND (m.channel || '') = 'sms' AND m.send != 'Notice'
             GROUP BY m.lineage, m.person"
            )
        },
        |r| {
            let delivered = r.get::<_, bool>(3)?;
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                Delivery {
                    sent: r.get(2)?,
                    delivered,
                    no_receipt: r.get::<_, bool>(4)? && !delivered,
                },
            ))
        },
    )?;
    let mut out: HashMap<String, HashMap<String, Delivery>> = HashMap::new();
    for (lineage, person, d) in rows {
        out.entry(lineage).or_default().insert(person, d);
    }
    Ok(out)
}

/// Messages of one warning lineage that were sent and settled with no receipt (the report's
/// "sent, no receipt"), the carriers of merged texts counted once.
pub fn no_receipt_count(c: &Conn<'_>, lineage: &str) -> anyhow::Result<i64> {
    Ok(c.prepare_cached(
        "SELECT count(DISTINCT coalesce(k.id, m.id))
         FROM dispatch_message m LEFT JOIN dispatch_message k ON k.id = m.merged_into
         WHERE m.lineage = ?1 AND m.channel = 'sms'
           AND coalesce(k.state, m.state) = 'delivery_unknown'",
    )?
    .query_row(params![lineage], |r| r.get(0))?)
}

/// One SMS centre bind as the channel last knew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bind {
    /// Account name.
    pub account: String,
    /// Which of its binds (0-based).
    pub slot: i64,
    /// bound | down | stopped.
    pub state: String,
    /// Since when (UTC RFC 3339).
    pub since: String,
    /// The SMSC's address, or why it is down.
    pub detail: Option<String>,
}

/// Record a bind's state (the SMPP channel, when a bind comes up, drops, fails or stops).
pub fn set_bind(
    tx: &Tx<'_>,
    account: &str,
    slot: usize,
    state: &str,
    detail: Option<&str>,
    now: Timestamp,
) -> anyhow::Result<()> {
    tx.prepare_cached("INSERT INTO dispatch_bind (account, slot, state, since, detail) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (account, slot) DO UPDATE SET state = ?3, since = ?4, detail = ?5")?.execute(
        params![account, slot as i64, state, stamp(now), detail],
    )?;
    Ok(())
}

/// Per channel, the earliest time a queued message was due (`not_before`): how long the
/// oldest waiting text has waited past its time is the outbox's backlog, for `/metrics`.
pub fn oldest_due(c: &Conn<'_>) -> anyhow::Result<Vec<(String, String)>> {
    Ok(c.prepare_cached(
        "SELECT channel, min(not_before) FROM dispatch_message WHERE state = 'queued'
         GROUP BY channel ORDER BY channel",
    )?
    .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect::<Result<_, _>>()?)
}

/// Where one message is: its state, the SMS account used last, the last error.
pub type Whereabouts = (MessageState, Option<String>, Option<String>);

/// Where one message is, for a person waiting on it (`stormbell send-test`).
pub fn message_state(c: &Conn<'_>, id: i64) -> anyhow::Result<Option<Whereabouts>> {
    use crate::store::sql::OptionalExtension;
    Ok(
        c.prepare_cached("SELECT state, account, last_error FROM dispatch_message WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?,
    )
}

/// Every bind's last known state, by account and slot.
pub fn binds(c: &Conn<'_>) -> anyhow::Result<Vec<Bind>> {
    Ok(c.prepare(
        "SELECT account, slot, state, since, detail FROM dispatch_bind ORDER BY account, slot",
    )?
    .query_map((), |r| {
        Ok(Bind {
            account: r.get(0)?,
            slot: r.get(1)?,
            state: r.get(2)?,
            since: r.get(3)?,
            detail: r.get(4)?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

/// The message a part belongs to, and where that message is: what a receipt for
/// (account, SMSC id) is about.
pub fn message_of_part(
    c: &Conn<'_>,
    account: &str,
    smsc_id: &str,
) -> anyhow::Result<Option<(i64, MessageState)>> {
    Ok(c.prepare_cached(
        "SELECT p.message, m.state FROM dispatch_part p
         JOIN dispatch_message m ON m.id = p.message
         WHERE p.account = ?1 AND p.smsc_id = ?2",
    )?
    .query_row(params![account, smsc_id], |x| Ok((x.get(0)?, x.get(1)?)))
    .optional()?)
}

/// How many times a message has been claimed for sending (the current attempt, once claimed).
pub fn attempts(c: &Conn<'_>, id: i64) -> anyhow::Result<i64> {
    Ok(
        c.prepare_cached("SELECT attempts FROM dispatch_message WHERE id = ?1")?
            .query_row(params![id], |x| x.get(0))?,
    )
}

/// A warning a text carried to a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    /// The person.
    pub person: String,
    /// The warning (`hazard:area`).
    pub lineage: String,
    /// The decision (warning version) it was queued for.
    pub decision: i64,
    /// The warning's words (JSON).
    pub words: String,
}

/// The warnings message `id` carried: its own and those merged into it.
pub fn carried(c: &Conn<'_>, id: i64) -> anyhow::Result<Vec<Carried>> {
    Ok(c.prepare_cached(
        "SELECT person, lineage, decision, words FROM dispatch_message
         WHERE (id = ?1 OR (merged_into = ?1 AND state = 'merged')) AND purpose = 'warning'
         ORDER BY id",
    )?
    .query_map(params![id], |x| {
        Ok(Carried {
            person: x.get("person")?,
            lineage: x.get("lineage")?,
            decision: x.get("decision")?,
            words: x.get("words")?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

/// The delivered message that carried a person's latest text of a warning (the carrier, when
/// it was merged into another), if any.
pub fn latest_delivered(c: &Conn<'_>, person: &str, lineage: &str) -> anyhow::Result<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT CASE WHEN m.state = 'merged' THEN m.merged_into ELSE m.id END
         FROM dispatch_message m
         LEFT JOIN dispatch_message car ON car.id = m.merged_into
         WHERE m.person = ?1 AND m.lineage = ?2 AND m.purpose = 'warning'
           AND (m.state = 'delivered' OR (m.state = 'merged' AND car.state = 'delivered'))
         ORDER BY m.version DESC, m.id DESC LIMIT 1",
    )?
    .query_row(params![person, lineage], |x| x.get(0))
    .optional()?
    .flatten())
}

/// One message as the record of a drill or an after-action file shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// Row id.
    pub id: i64,
    /// When it was queued (stored stamp).
    pub created: String,
    /// When it last changed.
    pub updated: String,
    /// Channel (`sms`).
    pub channel: String,
    /// `warning`, or the notice's purpose.
    pub purpose: String,
    /// `hazard:area`.
    pub lineage: String,
    /// Warning version.
    pub version: i64,
    /// Alert / Update / Cancel.
    pub send: String,
    /// Tier.
    pub tier: String,
    /// Registry person id.
    pub person: String,
    /// The number.
    pub address: String,
    /// What was sent (its own text if never claimed).
    pub text: String,
    /// Where it is.
    pub state: MessageState,
    /// Claims so far.
    pub attempts: i64,
    /// Sends with no verdict.
    pub uncertain: i64,
    /// The message that carried it, when merged.
    pub merged_into: Option<i64>,
    /// The last error.
    pub last_error: Option<String>,
}

/// Every message, in order.
pub fn all_messages(c: &Conn<'_>) -> anyhow::Result<Vec<MessageRecord>> {
    Ok(c.prepare(
        "SELECT id, created, updated, channel, purpose, lineage, version, send, tier, person,
                address, coalesce(sent_text, text) AS text, state, attempts, uncertain,
                merged_into, last_error
         FROM dispatch_message ORDER BY id",
    )?
    .query_map((), |r| {
        Ok(MessageRecord {
            id: r.get("id")?,
            created: r.get("created")?,
            updated: r.get("updated")?,
            channel: r.get("channel")?,
            purpose: r.get("purpose")?,
            lineage: r.get("lineage")?,
            version: r.get("version")?,
            send: r.get("send")?,
            tier: r.get("tier")?,
            person: r.get("person")?,
            address: r.get("address")?,
            text: r.get("text")?,
            state: r.get("state")?,
            attempts: r.get("attempts")?,
            uncertain: r.get("uncertain")?,
            merged_into: r.get("merged_into")?,
            last_error: r.get("last_error")?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

/// Sends that had no verdict and went again, in all (possible duplicates).
pub fn possible_duplicates(c: &Conn<'_>) -> anyhow::Result<i64> {
    Ok(
        c.prepare_cached("SELECT coalesce(sum(uncertain), 0) FROM dispatch_message")?
            .query_row((), |r| r.get(0))?,
    )
}

/// Messages by channel and state, for status and metrics.
pub fn counts(c: &Conn<'_>) -> anyhow::Result<BTreeMap<(String, String), i64>> {
    let mut st =
        c.prepare("SELECT channel, state, count(*) FROM dispatch_message GROUP BY channel, state")?;
    let rows = st.query_map((), |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sends whose outcome was never known (possible duplicates), by account.
pub fn uncertain(c: &Conn<'_>) -> anyhow::Result<HashMap<String, i64>> {
    let mut st = c.prepare(
        "SELECT coalesce(account, '-'), sum(uncertain) FROM dispatch_message
         WHERE uncertain > 0 GROUP BY account",
    )?;
    let rows = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A secret of the dispatch stage by name, made (128 random bits) the first time it is asked
/// for and the same ever after.
pub fn secret(tx: &Tx<'_>, name: &str) -> anyhow::Result<String> {
    let have: Option<String> = tx
        .query_row(
            "SELECT value FROM dispatch_secret WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(v) = have {
        return Ok(v);
    }
    let v = crate::dispatch::link::token()?;
    tx.prepare_cached("INSERT INTO dispatch_secret (name, value) VALUES (?1, ?2)")?
        .execute(params![name, v])?;
    Ok(v)
}

/// Whether message `id` exists and went, or goes, through `account` (a gateway's report may
/// name only our own messages).
pub fn sent_through(c: &Conn<'_>, id: i64, account: &str) -> anyhow::Result<bool> {
    Ok(c.prepare_cached(
        "SELECT count(*) FROM dispatch_message WHERE id = ?1 AND (account = ?2 OR account IS NULL)",
    )?
    .query_row(params![id, account], |r| r.get::<_, i64>(0))?
        > 0)
}
