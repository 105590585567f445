//! Correlate: observations × registry → tiered warnings for named villages.
//!
//! The heart of stormbell. Rules are data (`config/rules/*.toml`); this module turns what the
//! feeds observed into the warning each village and site should be under, and keeps one
//! lineage per (hazard, area) so a warning is issued, updated and lifted rather than repeated.

pub mod fwi;
