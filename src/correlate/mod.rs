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
pub(crate) mod feed_gap;
pub(crate) mod flash_flood;
pub mod fwi;
pub(crate) mod geo_hazard;
pub mod lifecycle;
pub mod rain;
pub(crate) mod rainstorm;
pub(crate) mod rules;
pub mod store;
pub mod tier;
pub mod typhoon;
pub(crate) mod upstream;
pub mod warning;
pub mod why;
pub(crate) mod wildfire;

// What the stages after correlate use of it: the warning event and its people, the kind of
// message, the hooks that run in a decision's transaction.
pub use assess::{Place, PlaceKind};
pub use engine::{DecisionHook, Engine, Retarget, RetargetHook};
pub use lifecycle::MessageKind;
pub use rules::{Rules, RulesError};
pub use tier::{Hazard, Tier};
pub use warning::{Contact, Issuer, TargetPlace, TargetShelter, Targets};
