//! Correlate: observations × registry → tiered warnings for named villages.
//!
//! The heart of stormbell. Rules are data (`config/rules/*.toml`); each hazard is one module
//! implementing [`assess::Rule`]: it takes in observations and says which areas are at risk
//! at which tier. The [`lifecycle`] turns successive assessments into decisions — issue,
//! upgrade, downgrade, extend, narrow, renew, lift — with hysteresis and holds, one lineage
//! per (hazard, area). The [`engine`] runs the rules over the inbox, records every decision
//! with its cause, and builds each warning as CAP 1.2 ([`warning`]).

pub mod assess;
pub mod engine;
pub mod feed_gap;
pub mod flash_flood;
pub mod fwi;
pub mod geo_hazard;
pub mod lifecycle;
pub mod rain;
pub mod rainstorm;
pub mod rules;
pub mod store;
pub mod tier;
pub mod typhoon;
pub mod upstream;
pub mod warning;
pub mod wildfire;

pub use engine::DecisionHook;
pub use rules::Rules;
pub use tier::{Hazard, Tier};
