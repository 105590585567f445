//! stormbell: warns villages before typhoons, flash floods, landslides and wildfires reach them,
//! and makes sure somebody answered.
//!
//! The crate is a pipeline — feeds → correlate → cap → dispatch → respond — with the store
//! underneath. See `ARCHITECTURE.md` for the map and its invariants. This library is what the
//! `stormbell` binary (`src/main.rs`) drives; every stage is usable on its own.

#![warn(missing_docs)]

pub mod cap;
pub mod config;
pub mod correlate;
pub mod daemon;
pub mod dispatch;
pub mod drill;
pub mod feeds;
pub mod http;
pub mod registry;
pub mod respond;
pub mod retention;
pub mod runtime;
pub mod store;
pub mod supervise;
pub mod templates;
pub mod text;
pub mod web;
