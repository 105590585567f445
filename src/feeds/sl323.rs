//! Rain tables in the SL 323 shape (the national real-time rain and water database:
//! `ST_PPTN_R` with `STCD` station, `TM` time, `DRP` period rain in mm, `INTV` period as
//! `hh.mm`; stations in `ST_STBPRP_B` with `STNM`, `LGTD`, `LTTD`), read from the PostgreSQL
//! database a county's hydrological system already keeps.
//!
//! The feed's `url` is the database's connection string (libpq form,
//! `postgres://reader@10.1.2.3/sq?connect_timeout=10`) and its `query` the SELECT that gives
//! the rows; `$1` stands for the time from which rows are wanted (a Beijing-time
//! `timestamp` literal stormbell writes itself). The default query joins the rain table to the
//! station table for names and positions. Real installations drift (wider `STCD`, extra
//! columns, vendors' renames): the county adjusts the query; every column is read as text, so
//! `numeric`, `decimal`, `char(8)` and `varchar` all do.
//!
//! **Which rows.** The first poll reads the last 48 hours; each later poll re-reads from three
//! hours before the newest `TM` seen, so a row corrected after it was first read is read
//! again. Rows become rain readings as the `rainfall` kind reads an `ST_PPTN_R` export, and
//! the correlate stage keeps one value per (station, time): the latest read wins.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::fetch::{Conditional, FetchError, Validators};
use super::{Document, FeedError, FeedKind, Item, Observation, Parsed, rainfall};

/// The query used when a feed gives none.
pub const DEFAULT_QUERY: &str = "SELECT p.stcd, b.stnm, b.lgtd, b.lttd, p.tm, p.drp, p.intv \
     FROM st_pptn_r p LEFT JOIN st_stbprp_b b ON b.stcd = p.stcd \
     WHERE p.tm > $1 ORDER BY p.tm, p.stcd";

/// How far back the first poll reads.
const FIRST: SignedDuration = SignedDuration::from_hours(48);
/// How far before the newest time seen each later poll reads again.
const REREAD: SignedDuration = SignedDuration::from_hours(3);
/// Connecting and querying, at most.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Rows per poll, at most (a season of one county's gauges is far less per three hours).
const MAX_ROWS: usize = 200_000;

/// The feed kind: the rows, as CSV, read as the rainfall kind reads an SL 323 export.
pub struct Sl323Feed {
    /// The SELECT, with `$1` for the time from which rows are wanted.
    pub query: String,
}

impl FeedKind for Sl323Feed {
    fn name(&self) -> &'static str {
        "sl323"
    }
    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError> {
        let batch = rainfall::parse(doc.body)?;
        if batch.readings.is_empty() {
            return Ok(Parsed::default());
        }
        Ok(Parsed {
            items: vec![Item {
                key: doc.digest.to_string(),
                observation: Observation::Rain(batch),
            }],
            ..Parsed::default()
        })
    }
    fn sql_query(&self) -> Option<&str> {
        Some(&self.query)
    }
}

fn beijing(t: Timestamp) -> String {
    t.to_zoned(super::sl651::beijing())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Run the feed's query: the rows as CSV (header from the column names), and the newest `TM`
/// seen as the validator for the next poll.
pub async fn fetch(
    conn: &str,
    query: &str,
    validators: &Validators,
    now: Timestamp,
    max_bytes: usize,
) -> Result<Conditional, FetchError> {
    let fail = |message: String| FetchError::Transport {
        url: "postgres (sl323)".into(),
        message,
    };
    let since = validators
        .etag
        .as_deref()
        .and_then(super::beijing_time)
        .map(|t| t - REREAD)
        .unwrap_or(now - FIRST);
    // A literal we write ourselves from a timestamp: nothing from outside goes into the SQL.
    let sql = query.replace("$1", &format!("'{}'::timestamp", beijing(since)));
    let work = async {
        let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let driver = tokio::spawn(connection);
        let out = client
            .simple_query(&sql)
            .await
            .map_err(|e| fail(format!("the query failed: {e}")));
        drop(client);
        let _ = driver.await;
        out
    };
    let messages = tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| fail(format!("no answer within {} s", TIMEOUT.as_secs())))??;
    let mut csv = String::new();
    let mut newest: Option<Timestamp> = None;
    let mut rows = 0;
    for m in messages {
        let tokio_postgres::SimpleQueryMessage::Row(row) = m else {
            continue;
        };
        if csv.is_empty() {
            let names: Vec<String> = row.columns().iter().map(|c| csv_field(c.name())).collect();
            csv.push_str(&names.join(","));
            csv.push('\n');
        }
        let tm = row
            .columns()
            .iter()
            .position(|c| c.name().eq_ignore_ascii_case("tm"));
        if let Some(t) = tm.and_then(|i| row.get(i)).and_then(super::beijing_time) {
            newest = Some(newest.map_or(t, |n: Timestamp| n.max(t)));
        }
        let fields: Vec<String> = (0..row.len())
            .map(|i| csv_field(row.get(i).unwrap_or("").trim()))
            .collect();
        csv.push_str(&fields.join(","));
        csv.push('\n');
        rows += 1;
        if rows > MAX_ROWS || csv.len() > max_bytes {
            return Err(fail(format!(
                "more than {MAX_ROWS} rows or {max_bytes} bytes since {}: narrow the query",
                beijing(since)
            )));
        }
    }
    if csv.is_empty() {
        csv.push_str("stcd,tm,drp\n");
    }
    Ok(Conditional::Body {
        bytes: csv.into_bytes(),
        validators: Validators {
            etag: newest
                .map(|t| t.to_string())
                .or_else(|| validators.etag.clone()),
            last_modified: None,
        },
    })
}
