//! SMS through an HTTP SMS gateway (Kannel's `sendsms` interface), for offices whose carrier
//! link is run by a gateway rather than spoken to directly over SMPP.
//!
//! The folder has the shape of every channel: `settings.rs` (`[dispatch.kannel]`),
//! `channel.rs` (what [`crate::dispatch::drive`] runs), and the protocol in `protocol.rs`
//! (`sendsms` and the delivery-report callback).

mod channel;
mod protocol;
mod settings;

pub use channel::{KannelChannel, NAME};
pub use protocol::ACCOUNT;
pub use settings::KannelSettings;
