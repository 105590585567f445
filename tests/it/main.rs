//! stormbell's integration tests, as one crate: one binary that links the library once,
//! instead of one binary per file each linking the whole tree (the cold build, and the disk
//! the target folder takes, were dominated by linking those). Each module is one subject;
//! `cargo test MODULE::` (or `./scripts/test MODULE::`) runs one of them.
//!
//! They run against real material (`tests/data`, provenance in its SOURCES.md) and real
//! peers (docs/test-peers.md), on 127.0.0.1 only.

mod common;

mod broadcast_audio;
mod broadcast_e2e;
mod broadcast_icecast;
mod broadcast_platform;
mod cap_bad_input;
mod cap_cn;
mod cap_corpus;
mod cap_roundtrip_prop;
mod cap_xsd;
mod cli;
mod correlate;
mod correlate_replay;
mod dispatch_crash;
mod dispatch_e2e;
mod dispatch_kannel;
mod dispatch_outbox;
mod dispatch_restart;
mod dispatch_sms;
mod drill;
mod feeds_formats;
mod feeds_parse;
mod feeds_poll;
mod feeds_replay;
mod fwi;
mod hostile;
mod ledger_prop;
mod metrics;
mod nodes;
mod office_browser;
mod office_city;
mod office_http;
mod package;
mod registry;
mod registry_reload;
mod respond_calls;
mod respond_checkin;
mod respond_return;
mod respond_sms;
mod sl323;
mod sl651;
mod smsc_quirks;
mod store;
mod tidy;
mod upkeep;
mod voice_calls;
mod web;
mod windfield;
