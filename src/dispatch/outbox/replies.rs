//! Long replies from phones, put back together before anyone reads them.
//!
//! A reply longer than one SMS reaches us as parts (a user data header or SAR parameters
//! naming a reference, the part count and the part's number), possibly out of order, possibly
//! over different binds, possibly with a part lost in the network. Each part is stored as it
//! comes (before the centre is told we have it, like every deliver_sm); when the last one is
//! in, the parts become one reply in `dispatch_inbound` and respond reads it whole — a help
//! request keeps its stretcher and its boat. A reply whose parts stop coming is handled after
//! `wait` with what came, marked `incomplete` (the gaps shown as "……"), never dropped and
//! never read as several replies.

use crate::store::sql::Tx;
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;

use super::*;

/// One part of a long reply, as it came.
#[derive(Debug, Clone)]
pub struct ReplyPart<'a> {
    /// The account it came in on.
    pub account: &'a str,
    /// The phone.
    pub source: &'a str,
    /// Our number.
    pub dest: &'a str,
    /// The reference its parts share.
    pub reference: u16,
    /// Parts in all.
    pub total: u8,
    /// This part (from 1).
    pub seq: u8,
    /// data_coding.
    pub coding: u8,
    /// Its text's octets, header removed.
    pub payload: &'a [u8],
}

/// Keep a part; when it completes its reply, store the whole reply and return its row id.
/// A part that came already (the centre delivered it again) changes nothing.
pub fn reply_part(tx: &Tx<'_>, p: &ReplyPart<'_>, now: Timestamp) -> anyhow::Result<Option<i64>> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO dispatch_mo_part
           (account, source, dest, ref, total, seq, coding, payload, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        p.account,
        p.source,
        p.dest,
        p.reference,
        p.total,
        p.seq,
        p.coding,
        p.payload,
        stamp(now)
    ])?;
    let have: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM dispatch_mo_part
             WHERE account = ?1 AND source = ?2 AND ref = ?3 AND total = ?4",
        )?
        .query_row(params![p.account, p.source, p.reference, p.total], |r| {
            r.get(0)
        })?;
    if have < i64::from(p.total) {
        return Ok(None);
    }
    assemble(tx, p.account, p.source, p.reference, p.total, false, now).map(Some)
}

/// Replies whose parts stopped coming: those whose first part is older than `wait` are
/// stored with what came, marked incomplete. Returns how many.
pub fn overdue_replies(tx: &Tx<'_>, now: Timestamp, wait: SignedDuration) -> anyhow::Result<usize> {
    let before = stamp(now.checked_sub(wait).unwrap_or(now));
    let late: Vec<(String, String, u16, u8)> = tx
        .prepare_cached(
            "SELECT account, source, ref, total FROM dispatch_mo_part
             GROUP BY account, source, ref, total HAVING min(at) <= ?1",
        )?
        .query_map(params![before], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    for (account, source, reference, total) in &late {
        assemble(tx, account, source, *reference, *total, true, now)?;
    }
    Ok(late.len())
}

/// Put the parts of one reply together into `dispatch_inbound` and forget them.
fn assemble(
    tx: &Tx<'_>,
    account: &str,
    source: &str,
    reference: u16,
    total: u8,
    overdue: bool,
    now: Timestamp,
) -> anyhow::Result<i64> {
    let parts: Vec<(u8, u8, Vec<u8>, String)> = tx
        .prepare_cached(
            "SELECT seq, coding, payload, dest FROM dispatch_mo_part
             WHERE account = ?1 AND source = ?2 AND ref = ?3 AND total = ?4 ORDER BY seq",
        )?
        .query_map(params![account, source, reference, total], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let dest = parts.first().map(|p| p.3.clone()).unwrap_or_default();
    // UCS-2 parts may split a character written as a surrogate pair: the octets of a run of
    // consecutive parts are decoded together. A missing part is a gap.
    let mut text = String::new();
    let mut run: Vec<u8> = Vec::new();
    let mut run_coding = None;
    let mut next = 1u8;
    let flush = |run: &mut Vec<u8>, coding: Option<u8>, text: &mut String| {
        if let Some(c) = coding {
            text.push_str(&crate::dispatch::sms::encode::decode(c, false, run));
        }
        run.clear();
    };
    for (seq, coding, payload, _) in &parts {
        if *seq != next || run_coding.is_some_and(|c| c != *coding) {
            flush(&mut run, run_coding, &mut text);
            if *seq != next {
                text.push_str("……");
            }
        }
        run_coding = Some(*coding);
        run.extend_from_slice(payload);
        next = seq.saturating_add(1);
    }
    flush(&mut run, run_coding, &mut text);
    let incomplete = parts.len() < usize::from(total);
    if incomplete && next <= total {
        text.push_str("……");
    }
    if incomplete && !overdue {
        anyhow::bail!("reply from {source} assembled with parts missing");
    }
    let id = inbound(
        tx,
        &Inbound {
            kind: "reply",
            account,
            source,
            dest: &dest,
            text: &text,
            incomplete,
            ..Inbound::default()
        },
        now,
    )?;
    tx.prepare_cached(
        "DELETE FROM dispatch_mo_part
         WHERE account = ?1 AND source = ?2 AND ref = ?3 AND total = ?4",
    )?
    .execute(params![account, source, reference, total])?;
    Ok(id)
}
