//! The durable outbox: every (warning version, person, channel) is a row before anything is
//! sent, and every state it passes through is a committed write.
//!
//! ```text
//! queued ──claim──▶ submitting ──SMSC ok──▶ accepted ──receipt──▶ delivered
//!   ▲  │                │   │                    ├──receipt──▶ failed (UNDELIV, …)
//!   │  │                │   │                    └──no receipt by the account's deadline──▶
//!   │  │                │   │                         delivery_unknown (a late receipt still
//!   │  │                │   │                         moves it on)
//!   │  │                │   └─permanent error──▶ failed (bad number: the reason is kept)
//!   │  │                └─throttled / no verdict / link down──▶ queued (later; `uncertain`
//!   │  │                                                          counts sends with no verdict;
//!   │  │                     the parts already accepted are kept, and the next claim sends
//!   │  │                     the same text from the first part not accepted)
//!   │  ├─a newer version for the same person──▶ superseded
//!   │  ├─carried inside another message──▶ merged (merged_into = the carrier; back to
//!   │  │                                    queued if the carrier goes back, failed with it)
//!   │  └─queued longer than `expire_after`──▶ expired
//!   └──── restart: rows left in submitting ──▶ reconciling ──a receipt proves it──▶ accepted
//!                                                  └──grace over──▶ queued, uncertain + 1
//! ```
//!
//! **The at-least-once window.** SMPP 3.4 cannot be asked "did you get my submit?" without
//! the message id the answer would have carried. A row whose submit_sm was written but whose
//! answer was not yet committed when stormbell died is `reconciling` after the restart: an
//! SMSC delivers receipts again to a new bind, and a receipt from that row's number proves
//! the message got through (`recover`) — it is not sent again. What no receipt proves within
//! `reconcile_grace` is sent again and counted in `uncertain`: at most (window × binds)
//! messages per account, because a window slot is freed only once its outcome is committed.
//! Re-sending is the right side to err on for a warning; the counts are reported, never
//! hidden.

use crate::store::sql::{OptionalExtension, Tx};
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;

use crate::correlate::MessageKind;
use crate::correlate::Targets;
use crate::correlate::Tier;
use crate::store::stamp;

mod claim;
mod enqueue;
mod ids;
mod lane;
pub mod link;
mod receipts;
mod records;
mod render;
mod replies;
mod rings;

pub use claim::*;
pub use enqueue::*;
pub use ids::*;
pub use lane::Lane;
pub use receipts::*;
pub use records::*;
pub use render::*;
pub use replies::*;
pub use rings::*;

crate::store::sql_enum! {
    /// Where a message is (`dispatch_message.state`; the diagram at the top of this module).
    pub enum MessageState {
        /// Waiting to be claimed.
        Queued = "queued",
        /// Claimed by a channel, being sent.
        Submitting = "submitting",
        /// Was mid-send at a restart: waits for a receipt proving it got through.
        Reconciling = "reconciling",
        /// Every part accepted by the SMS centre.
        Accepted = "accepted",
        /// A receipt says it reached the phone.
        Delivered = "delivered",
        /// Accepted, and no receipt came within the account's receipt deadline: "sent, no
        /// receipt". Final for every view (never counted as delivered); a receipt that comes
        /// later still moves it to delivered or failed.
        DeliveryUnknown = "delivery_unknown",
        /// Refused for good, or a receipt says it did not arrive.
        Failed = "failed",
        /// Still queued when the warning had moved on.
        Expired = "expired",
        /// A newer version for the same person, or the person was replaced.
        Superseded = "superseded",
        /// Carried inside another message.
        Merged = "merged",
        /// Never sendable (no valid number).
        Skipped = "skipped",
    }
}

crate::store::sql_enum! {
    /// What became of one part at the SMS centre (`dispatch_part.state`).
    pub enum PartState {
        /// The centre took it.
        Accepted = "accepted",
        /// Its receipt says delivered.
        Delivered = "delivered",
        /// Its receipt says it failed.
        Failed = "failed",
    }
}

impl PartState {
    /// A part's state after a receipt that says it was delivered, or failed for good, or
    /// neither (still on its way).
    pub fn after(delivered: bool, failed: bool) -> PartState {
        if delivered {
            PartState::Delivered
        } else if failed {
            PartState::Failed
        } else {
            PartState::Accepted
        }
    }
}

/// How the outbox treats people and time.
#[derive(Debug, Clone)]
pub struct Policy {
    /// At most this many messages to one person within `cap_window`, unless one raises the
    /// danger (those always go).
    pub cap_per_person: u32,
    /// The window of the cap.
    pub cap_window: SignedDuration,
    /// A message still queued after this long is expired (the warning has moved on).
    pub expire_after: SignedDuration,
    /// Attempts before a message fails for good.
    pub max_attempts: u32,
    /// After a restart, how long a message that was mid-send waits for a receipt that proves
    /// the SMSC had it, before it is sent again.
    pub reconcile_grace: SignedDuration,
    /// How long the parts of a long reply from a phone are waited for (see `replies`).
    pub reply_parts_wait: SignedDuration,
    /// Office name for the text.
    pub office: String,
    /// Drill: texts are marked so.
    pub exercise: bool,
    /// Text language: "zh-CN" or "en".
    pub lang: String,
    /// Base of the personal check-in links (`https://x.cn/r/`); `None`: texts carry no link.
    pub link_base: Option<String>,
    /// How long a check-in link works after its warning was decided.
    pub link_valid: SignedDuration,
    /// What each SMS account's centre does with receipts, by account name (the channels fill
    /// it from their settings); an account not named has the defaults.
    pub accounts: std::collections::BTreeMap<String, AccountRules>,
}

/// How the outbox treats the receipts of one SMS account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRules {
    /// How its receipts write the message id.
    pub ids: ReceiptIds,
    /// How long an accepted text waits for its receipt before it is "sent, no receipt".
    pub receipt_deadline: SignedDuration,
}

impl Default for AccountRules {
    fn default() -> AccountRules {
        AccountRules {
            ids: ReceiptIds::Auto,
            receipt_deadline: SignedDuration::from_mins(30),
        }
    }
}

impl Policy {
    /// The rules of account `name`.
    pub fn rules(&self, name: &str) -> AccountRules {
        self.accounts.get(name).copied().unwrap_or_default()
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            cap_per_person: 6,
            cap_window: SignedDuration::from_hours(1),
            expire_after: SignedDuration::from_hours(6),
            max_attempts: 8,
            reconcile_grace: SignedDuration::from_secs(20),
            reply_parts_wait: SignedDuration::from_secs(60),
            office: "防汛办".into(),
            exercise: false,
            lang: "zh-CN".into(),
            link_base: None,
            link_valid: SignedDuration::from_hours(72),
            accounts: Default::default(),
        }
    }
}

/// A Chinese mobile number in its 11-digit form, from what a roster says ("+86 138-0000-0001",
/// "8613800000001", "138 0000 0001"); `None` when it is not one.
pub fn normalise_mobile(raw: &str) -> Option<String> {
    let digits: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '\u{3000}'))
        .collect();
    let d = digits.strip_prefix('+').unwrap_or(&digits);
    let d = if d.len() == 13 {
        d.strip_prefix("86").unwrap_or(d)
    } else {
        d
    };
    let ok = d.len() == 11
        && d.starts_with('1')
        && d.as_bytes()
            .get(1)
            .is_some_and(|c| (b'3'..=b'9').contains(c))
        && d.bytes().all(|c| c.is_ascii_digit());
    ok.then(|| d.to_string())
}

/// Priority: red before blue; a raise before a same-tier update; a Cancel after everything
/// (so it never overtakes the Alert it cancels).
pub fn priority(send: MessageKind, tier: Tier, raises: bool) -> i64 {
    if send == MessageKind::Cancel {
        return 1;
    }
    let t = match tier {
        Tier::Blue => 1,
        Tier::Yellow => 2,
        Tier::Orange => 3,
        Tier::Red => 4,
    };
    t * 10 + if raises { 5 } else { 0 }
}

fn parse_ts(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// One audit entry about one message, in the transaction that changed it: the after-action
/// review reads who was sent what, and when the network said it arrived, from the trail.
fn audit(
    tx: &Tx<'_>,
    message: i64,
    kind: &str,
    now: Timestamp,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let row: Option<(String, String, i64, String)> = tx
        .prepare_cached(
            "SELECT person, lineage, version, send FROM dispatch_message WHERE id = ?1",
        )?
        .query_row(params![message], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((person, lineage, version, send)) = row else {
        return Ok(());
    };
    audit_about(
        tx,
        message,
        &About {
            person,
            lineage,
            version,
            send,
        },
        kind,
        now,
        detail,
    )
}

/// Whom and what a message is about, for its audit entries.
struct About {
    person: String,
    lineage: String,
    version: i64,
    send: String,
}

impl About {
    /// Read from four columns of `r` from `at` on: person, lineage, version, send.
    fn read(r: &crate::store::sql::Row<'_>, at: usize) -> crate::store::sql::Result<About> {
        Ok(About {
            person: r.get(at)?,
            lineage: r.get(at + 1)?,
            version: r.get(at + 2)?,
            send: r.get(at + 3)?,
        })
    }
}

/// [`audit`] when the caller has read the message's particulars already.
fn audit_about(
    tx: &Tx<'_>,
    message: i64,
    about: &About,
    kind: &str,
    now: Timestamp,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    crate::store::audit::append(tx, &about_entry(message, about, kind, now, detail))?;
    Ok(())
}

/// The audit entry of `kind` about message `message` (its person, warning and version, and
/// the particulars in `detail`), for [`audit_about`] and for batches appended at once.
fn about_entry(
    message: i64,
    about: &About,
    kind: &str,
    now: Timestamp,
    detail: serde_json::Value,
) -> crate::store::audit::Entry {
    let About {
        person,
        lineage,
        version,
        send,
    } = about;
    crate::store::audit::Entry::utc(now, "dispatch", kind, person.clone(), detail).with([
        ("message", message.into()),
        ("lineage", lineage.clone().into()),
        ("version", (*version).into()),
        ("send", send.clone().into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_or_refused() {
        assert_eq!(
            normalise_mobile("+86 138-0000-0001").as_deref(),
            Some("13800000001")
        );
        assert_eq!(
            normalise_mobile("8613800000001").as_deref(),
            Some("13800000001")
        );
        assert_eq!(
            normalise_mobile("13800000001").as_deref(),
            Some("13800000001")
        );
        assert_eq!(normalise_mobile("12800000001"), None);
        assert_eq!(normalise_mobile("0571-8888888"), None);
        assert_eq!(normalise_mobile("1380000000"), None);
        assert_eq!(normalise_mobile(""), None);
    }

    #[test]
    fn red_goes_before_blue_and_cancels_go_last() {
        assert!(
            priority(MessageKind::Alert, Tier::Red, true)
                > priority(MessageKind::Alert, Tier::Blue, true)
        );
        assert!(
            priority(MessageKind::Update, Tier::Orange, true)
                > priority(MessageKind::Update, Tier::Orange, false)
        );
        assert!(
            priority(MessageKind::Cancel, Tier::Red, false)
                < priority(MessageKind::Alert, Tier::Blue, false)
        );
    }
}
