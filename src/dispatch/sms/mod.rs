//! SMS over SMPP 3.4, spoken by stormbell itself: accounts at one or more SMS centres, each
//! with several binds, a rate limit from the carrier contract, routing by number prefix and
//! failover to a backup.
//!
//! The folder has the shape of every channel: `settings.rs` (`[[dispatch.sms.accounts]]`),
//! `channel.rs` (what [`crate::dispatch::drive`] runs: claim, send, record, and what runs
//! beside the sends), and the protocol: `pdu.rs` (the codec), `encode.rs` (GSM 7-bit / UCS-2
//! and concatenation), `session.rs` (one bind), `account.rs` (an account's binds, pace and
//! routing).

mod account;
mod channel;
pub mod encode;
pub mod pdu;
pub mod session;
mod settings;

pub use account::{Account, route};
pub use channel::{NAME, SmsChannel};
pub use settings::{AccountSettings, ReceiptIds};
