//! Loudspeakers through the county emergency-broadcast platform (应急广播平台): EBD packages
//! carrying EBM instructions, SM2-signed, tracked per terminal.
//!
//! The folder has the shape of every channel: `settings.rs` (`[dispatch.broadcast.platform]`),
//! `channel.rs` (what [`crate::dispatch::drive`] runs), and the protocol: `ebd.rs` (the
//! EBD/EBM family and its tar packages, read through the CAP codec's hardened XML reader),
//! `sign.rs` (SM2/SM3 signatures, or none) and `client.rs` (one package POSTed, its answer
//! read).

mod channel;
mod client;
pub mod ebd;
mod settings;
pub mod sign;

pub use channel::{NAME, PlatformChannel};
pub use client::{Platform, PlatformError, Sequence};
pub use settings::PlatformSettings;
