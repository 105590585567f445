//! What every stage stands on: time, the word to stop, and the ports it listens on.
//!
//! Every stage of the pipeline — the poller, correlate, the channels, respond, the web port,
//! a drill's simulated world — waits on the same two things, so they live here, below the
//! stages, rather than in the first stage that needed them:
//!
//! - [`clock`]: wall time for the record and monotonic time for schedules and silence, from the
//!   machine ([`SystemClock`]) or simulated ([`SimClock`], for tests, drills and the demo).
//! - [`Shutdown`]: the one way a stage learns it must stop, fired by the [`Trigger`] the
//!   [`Pipeline`](crate::daemon::Pipeline) (or a test) holds. A trigger that is dropped counts
//!   as fired, so a stage whose owner is gone stops instead of spinning on a closed channel.
//! - [`listen`]: every listening port (the web port, a gateway's delivery reports) served
//!   within limits a hostile client cannot stretch.

pub mod clock;
pub mod listen;
mod shutdown;

pub use clock::{Awake, Clock, Settled, SimClock, Sleep, SystemClock};
pub use shutdown::{Shutdown, Trigger};
