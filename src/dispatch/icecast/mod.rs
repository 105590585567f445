//! Loudspeakers that are IP speakers pulling an Icecast mount: stormbell is the mount's source.
//!
//! The folder has the shape of every channel: `settings.rs` (`[dispatch.broadcast.icecast]`),
//! `channel.rs` (what [`crate::dispatch::drive`] runs), and the protocol in `stream.rs` (an
//! Icecast 2.4 source client: HTTP `PUT`, paced, listeners counted).

mod channel;
mod settings;
pub mod stream;

pub use channel::{IcecastChannel, NAME};
pub use settings::IcecastSettings;
pub use stream::{IcecastError, stream};
