//! Matching a receipt to the part it is about, across the ways centres write message ids.
//!
//! SMPP 3.4 leaves the id in a delivery receipt's text to the centre. Many answer submit_sm
//! with a hexadecimal id ("0001A2B3") and write the same id in decimal in the receipt
//! ("107187"); some pad with zeros on one side only. Matched on the raw string, every receipt
//! of such a centre is lost and every text stays "accepted" for ever. So a part is stored with
//! a *key*: its id read under the form its account's centre uses (the number, in decimal), and
//! a receipt is looked up by its own id read the same way.
//!
//! The form is configured per account (`receipt_ids`), or learnt (`auto`, the default): until
//! the receipts show otherwise, the key is the raw id. A receipt that matches nothing is kept
//! (`orphan_receipt`, with its key); once enough of them are kept, [`learn`] (called by the SMS
//! channel at most every few seconds per account) tries each form on them against the parts
//! that wait for a receipt, and adopts the one that matches most of
//! them (and clearly more than any other), writes it down with its evidence, re-keys the
//! account's waiting parts and kept receipts, and applies every receipt that now matches. A
//! receipt is never matched on a guess: only under the account's one form. What matches
//! nothing stays visible ([`unmatched`]: `status`, `/metrics`, the log).

use std::collections::HashMap;

use crate::store::sql::{Conn, OptionalExtension, Tx};
use jiff::Timestamp;
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::*;

/// How a centre's receipts name a message, against the id its submit_sm_resp gave (Kannel
/// calls this `msg-id-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiptIds {
    /// Learn it from the receipts: the same string until they show otherwise.
    #[default]
    Auto,
    /// The same string, byte for byte.
    Exact,
    /// Hexadecimal in the answer, decimal in the receipt.
    HexDecimal,
    /// Decimal in the answer, hexadecimal in the receipt.
    DecimalHex,
    /// Decimal in both, leading zeros not counting.
    Decimal,
    /// Hexadecimal in both, case and leading zeros not counting.
    Hex,
}

impl ReceiptIds {
    /// Its name in settings and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptIds::Auto => "auto",
            ReceiptIds::Exact => "exact",
            ReceiptIds::HexDecimal => "hex-decimal",
            ReceiptIds::DecimalHex => "decimal-hex",
            ReceiptIds::Decimal => "decimal",
            ReceiptIds::Hex => "hex",
        }
    }

    fn parse(s: &str) -> Option<ReceiptIds> {
        [
            ReceiptIds::Auto,
            ReceiptIds::Exact,
            ReceiptIds::HexDecimal,
            ReceiptIds::DecimalHex,
            ReceiptIds::Decimal,
            ReceiptIds::Hex,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }

    /// (base of the answer's id, base of the receipt's); `None`: compared as strings.
    fn bases(self) -> Option<(u32, u32)> {
        match self {
            ReceiptIds::Auto | ReceiptIds::Exact => None,
            ReceiptIds::HexDecimal => Some((16, 10)),
            ReceiptIds::DecimalHex => Some((10, 16)),
            ReceiptIds::Decimal => Some((10, 10)),
            ReceiptIds::Hex => Some((16, 16)),
        }
    }

    /// The key of an id from a submit_sm_resp.
    pub fn answer_key(self, id: &str) -> String {
        key(id, self.bases().map(|b| b.0))
    }

    /// The key of an id from a receipt.
    pub fn receipt_key(self, id: &str) -> String {
        key(id, self.bases().map(|b| b.1))
    }
}

/// An id read in `base` (its value in decimal), or the raw id when it is not a number in that
/// base (then only the same string matches it).
fn key(id: &str, base: Option<u32>) -> String {
    let t = id.trim();
    match base {
        Some(b) if !t.is_empty() && t.len() <= 32 => u128::from_str_radix(t, b)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| t.to_string()),
        _ => t.to_string(),
    }
}

/// The form in effect for `account`: configured, else learnt, else the raw string.
pub fn form_of(c: &Conn<'_>, policy: &Policy, account: &str) -> anyhow::Result<ReceiptIds> {
    let configured = policy.rules(account).ids;
    if configured != ReceiptIds::Auto {
        return Ok(configured);
    }
    let learnt: Option<String> = c
        .prepare_cached("SELECT form FROM dispatch_id_form WHERE account = ?1")?
        .query_row(params![account], |r| r.get(0))
        .optional()?;
    Ok(learnt
        .as_deref()
        .and_then(ReceiptIds::parse)
        .unwrap_or(ReceiptIds::Exact))
}

/// Receipts kept for an account before [`learn`] tries the forms on them: enough that a form
/// is adopted on evidence, not on one coincidence.
const LEARN_AFTER: i64 = 8;

/// What [`learn`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learnt {
    /// Not tried (the form is configured or already learnt, or too few receipts are kept).
    NotTried,
    /// Tried; no form explains the kept receipts (they may only be early).
    Nothing {
        /// Receipts of the account matching nothing.
        kept: i64,
        /// Of those, the ones kept for at least [`UNMATCHED_AFTER`] (not merely early).
        unmatched: i64,
    },
    /// Adopted `form`: `applied` receipts matched under it.
    Adopted {
        /// The form.
        form: ReceiptIds,
        /// Receipts applied now.
        applied: usize,
    },
}

/// Try the forms on an `auto` account's unmatched receipts (see the module's doc).
pub fn learn(
    tx: &Tx<'_>,
    policy: &Policy,
    account: &str,
    now: Timestamp,
) -> anyhow::Result<Learnt> {
    if policy.rules(account).ids != ReceiptIds::Auto {
        return Ok(Learnt::NotTried);
    }
    let learnt: Option<String> = tx
        .prepare_cached("SELECT form FROM dispatch_id_form WHERE account = ?1")?
        .query_row(params![account], |r| r.get(0))
        .optional()?;
    if learnt.is_some() {
        return Ok(Learnt::NotTried);
    }
    let kept: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM dispatch_inbound
             WHERE kind = 'orphan_receipt' AND account = ?1 AND smsc_id IS NOT NULL",
        )?
        .query_row(params![account], |r| r.get(0))?;
    if kept < LEARN_AFTER {
        return Ok(Learnt::NotTried);
    }
    let orphans: Vec<String> = tx
        .prepare_cached(
            "SELECT smsc_id FROM dispatch_inbound
             WHERE kind = 'orphan_receipt' AND account = ?1 AND smsc_id IS NOT NULL
             ORDER BY id DESC LIMIT 1000",
        )?
        .query_map(params![account], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let parts: Vec<String> = tx
        .prepare_cached(
            "SELECT smsc_id FROM dispatch_part WHERE account = ?1 AND state = 'accepted'
             ORDER BY at DESC LIMIT 20000",
        )?
        .query_map(params![account], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    // In order of preference when two explain the receipts equally (digits only on both
    // sides read the same in decimal and in hexadecimal).
    let forms = [
        ReceiptIds::Decimal,
        ReceiptIds::HexDecimal,
        ReceiptIds::DecimalHex,
        ReceiptIds::Hex,
    ];
    let mut scores: Vec<(ReceiptIds, usize)> = forms
        .iter()
        .map(|f| {
            let mut answers: HashMap<String, usize> = HashMap::new();
            for p in &parts {
                *answers.entry(f.answer_key(p)).or_default() += 1;
            }
            // A receipt counts when exactly one waiting part has its key under this form.
            let n = orphans
                .iter()
                .filter(|o| answers.get(&f.receipt_key(o)) == Some(&1))
                .count();
            (*f, n)
        })
        .collect();
    scores.sort_by_key(|s| std::cmp::Reverse(s.1));
    let (form, best) = scores[0];
    let runner_up = scores.get(1).map_or(0, |s| s.1);
    // Adopted when it explains at least LEARN_AFTER receipts and most of those kept, and
    // clearly more than any other form (a tie between decimal and hexadecimal on digit-only
    // ids explains the same receipts the same way: the first in order is taken).
    let same_reading = |a: ReceiptIds, b: ReceiptIds| {
        matches!(
            (a, b),
            (ReceiptIds::Decimal, ReceiptIds::Hex) | (ReceiptIds::Hex, ReceiptIds::Decimal)
        )
    };
    let clear = best > runner_up * 2 || (best == runner_up && same_reading(form, scores[1].0));
    if (best as i64) < LEARN_AFTER || best * 2 < orphans.len() || !clear {
        let before = stamp(now.checked_sub(UNMATCHED_AFTER).unwrap_or(now));
        let unmatched: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM dispatch_inbound
                 WHERE kind = 'orphan_receipt' AND account = ?1 AND smsc_id IS NOT NULL
                   AND at <= ?2",
            )?
            .query_row(params![account, before], |r| r.get(0))?;
        return Ok(Learnt::Nothing { kept, unmatched });
    }
    tx.prepare_cached(
        "INSERT INTO dispatch_id_form (account, form, since, evidence) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![account, form.as_str(), stamp(now), best as i64])?;
    let applied = rekey(tx, account, form, now)?;
    crate::store::audit::append(
        tx,
        &crate::store::audit::Entry::utc(
            now,
            "dispatch",
            "sms.receipt_ids",
            account.to_string(),
            serde_json::json!({
                "account": account, "form": form.as_str(), "evidence": best,
                "applied": applied,
            }),
        ),
    )?;
    Ok(Learnt::Adopted { form, applied })
}

/// Re-key an account's waiting parts and kept receipts under `form`, and apply every kept
/// receipt that now matches a part. Returns how many were applied.
fn rekey(tx: &Tx<'_>, account: &str, form: ReceiptIds, now: Timestamp) -> anyhow::Result<usize> {
    let parts: Vec<(i64, i64, String)> = tx
        .prepare_cached(
            "SELECT message, part, smsc_id FROM dispatch_part
             WHERE account = ?1 AND state = 'accepted'",
        )?
        .query_map(params![account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (message, part, id) in &parts {
        tx.prepare_cached("UPDATE dispatch_part SET id_key = ?1 WHERE message = ?2 AND part = ?3")?
            .execute(params![form.answer_key(id), message, part])?;
    }
    let kept: Vec<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT id, smsc_id, coalesce(stat, '') FROM dispatch_inbound
             WHERE kind = 'orphan_receipt' AND account = ?1 AND smsc_id IS NOT NULL",
        )?
        .query_map(params![account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut applied = 0;
    for (row, id, stat) in kept {
        let k = form.receipt_key(&id);
        tx.prepare_cached("UPDATE dispatch_inbound SET id_key = ?1 WHERE id = ?2")?
            .execute(params![k, row])?;
        let (delivered, failed) = stat_meaning(&stat);
        if receipt_by_key(tx, account, &k, &stat, delivered, failed, now)? {
            tx.prepare_cached("DELETE FROM dispatch_inbound WHERE id = ?1")?
                .execute(params![row])?;
            applied += 1;
        }
    }
    Ok(applied)
}

/// Receipts of one account that match nothing sent, kept longer than a fast centre's early
/// receipt would be: what `status`, `/metrics` and the log show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmatched {
    /// The account.
    pub account: String,
    /// How many.
    pub count: i64,
    /// One of their ids, as the centre wrote it (to compare with the answers' ids).
    pub example: String,
}

/// How long a receipt must have matched nothing before it counts as unmatched: a receipt can
/// come back before its submit's outcome is committed (a fast centre under load), and is
/// then applied on the next try, so a younger one is only early.
pub const UNMATCHED_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_mins(1);

/// Receipts that matched nothing for at least [`UNMATCHED_AFTER`], by account: the one
/// definition `status`, `/metrics` and the channel's warning use.
pub fn unmatched(c: &Conn<'_>, now: Timestamp) -> anyhow::Result<Vec<Unmatched>> {
    let before = stamp(now.checked_sub(UNMATCHED_AFTER).unwrap_or(now));
    let rows: Vec<(String, i64, String)> = c
        .prepare(
            "SELECT account, count(*), max(smsc_id) FROM dispatch_inbound
             WHERE kind = 'orphan_receipt' AND at <= ?1 GROUP BY account ORDER BY account",
        )?
        .query_map(params![before], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .map(|(account, count, example)| Unmatched {
            account,
            count,
            example,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_ids_in_the_centres_form() {
        let f = ReceiptIds::HexDecimal;
        assert_eq!(f.answer_key("0001A2B3"), f.receipt_key("107187"));
        assert_eq!(f.answer_key("1a2b3"), f.receipt_key("0107187"));
        assert_ne!(f.answer_key("0001A2B3"), f.receipt_key("107188"));
        let d = ReceiptIds::Decimal;
        assert_eq!(d.answer_key("000123"), d.receipt_key("123"));
        let x = ReceiptIds::DecimalHex;
        assert_eq!(x.answer_key("107187"), x.receipt_key("1A2B3"));
        // Not a number in the form: only the same string matches.
        assert_eq!(f.answer_key("M00000001"), f.receipt_key("M00000001"));
        assert_ne!(f.answer_key("M00000001"), f.receipt_key("00000001"));
        let e = ReceiptIds::Exact;
        assert_ne!(e.answer_key("00123"), e.receipt_key("123"));
        assert_eq!(ReceiptIds::parse("hex-decimal"), Some(f));
        // Too long to be a number: compared as text, never overflowing.
        let long = "F".repeat(40);
        assert_eq!(f.answer_key(&long), long);
    }

    /// A store with `parts` waiting for receipts and `receipts` kept unmatched, on account "a".
    fn kept(parts: &[String], receipts: &[String]) -> (tempfile::TempDir, crate::store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path().join("ids.db")).unwrap();
        let (parts, receipts) = (parts.to_vec(), receipts.to_vec());
        store
            .write_blocking(move |tx| {
                for (i, id) in parts.iter().enumerate() {
                    tx.prepare_cached(
                        "INSERT INTO dispatch_part (message, part, total, account, smsc_id, state,
                                                    at, id_key)
                         VALUES (?1, 1, 1, 'a', ?2, 'accepted', '2026-08-09T00:00:00.000Z', ?2)",
                    )?
                    .execute(params![i as i64 + 1, id])?;
                }
                for id in &receipts {
                    inbound(
                        tx,
                        &Inbound {
                            kind: "orphan_receipt",
                            account: "a",
                            smsc_id: Some(id),
                            stat: Some("DELIVRD"),
                            ..Inbound::default()
                        },
                        Timestamp::UNIX_EPOCH,
                    )?;
                }
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    fn try_learn(store: &crate::store::Store) -> Learnt {
        store
            .write_blocking(|tx| learn(tx, &Policy::default(), "a", Timestamp::UNIX_EPOCH))
            .unwrap()
    }

    #[test]
    fn a_form_is_learnt_from_evidence_never_from_a_coincidence() {
        // Hexadecimal answers, decimal receipts for most of them: learnt.
        let parts: Vec<String> = (0..30)
            .map(|i| format!("{:010X}", 0x1A2B_0000 + i))
            .collect();
        let receipts: Vec<String> = (0..20).map(|i| (0x1A2B_0000 + i).to_string()).collect();
        let (_d, store) = kept(&parts, &receipts);
        assert!(matches!(
            try_learn(&store),
            Learnt::Adopted {
                form: ReceiptIds::HexDecimal,
                ..
            }
        ));
        // Once learnt, not tried again.
        assert_eq!(try_learn(&store), Learnt::NotTried);

        // Receipts that merely came before their answers were recorded (a fast centre with
        // exact ids), and a few that happen to read as numbers: nothing is adopted.
        let parts: Vec<String> = (0..30).map(|i| format!("M{:08}", i)).collect();
        let receipts: Vec<String> = (100..120).map(|i| format!("M{:08}", i)).collect();
        let (_d, store) = kept(&parts, &receipts);
        let nothing = |kept, unmatched| Learnt::Nothing { kept, unmatched };
        // Just kept, they are only early; a minute on, they count as unmatched.
        assert_eq!(try_learn(&store), nothing(20, 0));
        let later = Timestamp::UNIX_EPOCH + UNMATCHED_AFTER;
        let l = store.write_blocking(move |tx| learn(tx, &Policy::default(), "a", later));
        assert_eq!(l.unwrap(), nothing(20, 20));
        // Decimal answers where a handful of unrelated decimal receipts happen to match some
        // under another reading, but not most: nothing is adopted.
        let parts: Vec<String> = (0..30).map(|i| format!("{}", 5000 + i)).collect();
        let mut receipts: Vec<String> = (0..3).map(|i| format!("{:X}", 5000 + i)).collect();
        receipts.extend((0..17).map(|i| format!("{}", 900_000 + i)));
        let (_d, store) = kept(&parts, &receipts);
        assert!(matches!(try_learn(&store), Learnt::Nothing { .. }));
        // Too few kept to judge: not tried.
        let (_d, store) = kept(&parts, &receipts[..3]);
        assert_eq!(try_learn(&store), Learnt::NotTried);
    }
}
