//! Time for the pollers, real or simulated.
//!
//! Two kinds of time matter and they must not be confused. *Wall* time ([`Clock::now`]) is what
//! is written down: when a document arrived, when a feed last succeeded. It can jump — an NTP
//! correction, a hand-set clock, a replay that starts in 2019. *Monotonic* time
//! ([`Clock::elapsed`]) only moves forward and is what schedules polls and measures silence for
//! the gap alarm, so a wall clock jumping forward an hour never raises a false alarm, and one
//! jumping back never hides a real one.
//!
//! [`SystemClock`] is the machine's. [`SimClock`] is driven by hand (tests) or at a chosen speed
//! (replays and drills); pollers cannot tell the difference.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// A boxed future, so [`Clock`] stays object-safe.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The time source of a poller.
pub trait Clock: Send + Sync + 'static {
    /// Wall time, for the record.
    fn now(&self) -> Timestamp;
    /// Monotonic time since the clock started, for scheduling and silence.
    fn elapsed(&self) -> Duration;
    /// Resolve once [`Clock::elapsed`] has reached `deadline`.
    fn sleep_until(&self, deadline: Duration) -> Sleep;
}

/// The machine's clock.
#[derive(Debug, Clone)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock whose monotonic time starts now.
    pub fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    fn sleep_until(&self, deadline: Duration) -> Sleep {
        let at = tokio::time::Instant::from_std(self.start + deadline);
        Box::pin(tokio::time::sleep_until(at))
    }
}

#[derive(Debug)]
struct SimState {
    /// Simulated monotonic time.
    mono: Duration,
    /// Wall time at `mono == 0`, moved by [`SimClock::jump_wall`].
    wall_origin: Timestamp,
}

/// A simulated clock: time stands still until [`SimClock::advance`] moves it (or
/// [`SimClock::run_at`] does, continuously). Sleepers wake when their deadline passes.
#[derive(Debug, Clone)]
pub struct SimClock {
    state: Arc<Mutex<SimState>>,
    tick: Arc<tokio::sync::watch::Sender<Duration>>,
}

impl SimClock {
    /// A clock whose wall time starts at `start`.
    pub fn new(start: Timestamp) -> SimClock {
        let (tx, _) = tokio::sync::watch::channel(Duration::ZERO);
        SimClock {
            state: Arc::new(Mutex::new(SimState {
                mono: Duration::ZERO,
                wall_origin: start,
            })),
            tick: Arc::new(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        // The state is two plain values; a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Move time forward by `by` (both monotonic and wall), waking every sleeper whose
    /// deadline has passed.
    pub fn advance(&self, by: Duration) {
        let mono = {
            let mut s = self.lock();
            s.mono += by;
            s.mono
        };
        self.tick.send_replace(mono);
    }

    /// Move time forward to wall time `to` (no-op if it is not ahead).
    pub fn advance_to(&self, to: Timestamp) {
        let now = self.now();
        if let Ok(d) = Duration::try_from(to.duration_since(now))
            && !d.is_zero()
        {
            self.advance(d);
        }
    }

    /// Make the wall clock jump (forward or back) without monotonic time moving: what an NTP
    /// step or a hand-set clock does.
    pub fn jump_wall(&self, by: SignedDuration) {
        let mut s = self.lock();
        s.wall_origin = s.wall_origin.saturating_add(by).unwrap_or(s.wall_origin);
    }

    /// Drive the clock continuously at `speed` × real time (3600 = an hour per second) in
    /// steps of at most `step` simulated time, until the returned handle is dropped or
    /// aborted. Used by replays and drills.
    pub fn run_at(&self, speed: f64, step: Duration) -> tokio::task::JoinHandle<()> {
        let clock = self.clone();
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        let real_step = step.div_f64(speed).max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut last = tokio::time::Instant::now();
            let mut ticker = tokio::time::interval(real_step);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = tokio::time::Instant::now();
                clock.advance((now - last).mul_f64(speed));
                last = now;
            }
        })
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        let s = self.lock();
        let mono = SignedDuration::try_from(s.mono).unwrap_or(SignedDuration::MAX);
        s.wall_origin.saturating_add(mono).unwrap_or(s.wall_origin)
    }
    fn elapsed(&self) -> Duration {
        self.lock().mono
    }
    fn sleep_until(&self, deadline: Duration) -> Sleep {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever wake this sleeper.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sim_sleepers_wake_in_order_and_wall_jumps_leave_monotonic_alone() {
        let start: Timestamp = "2019-08-09T10:00:00Z".parse().unwrap();
        let c = SimClock::new(start);
        let a = tokio::spawn(c.sleep_until(Duration::from_secs(10)));
        let b = tokio::spawn(c.sleep_until(Duration::from_secs(20)));
        tokio::task::yield_now().await;
        c.advance(Duration::from_secs(15));
        tokio::time::timeout(Duration::from_secs(5), a)
            .await
            .unwrap()
            .unwrap();
        assert!(!b.is_finished());
        c.jump_wall(SignedDuration::from_hours(-3));
        assert_eq!(c.elapsed(), Duration::from_secs(15));
        assert_eq!(
            c.now(),
            "2019-08-09T07:00:15Z".parse::<Timestamp>().unwrap()
        );
        c.advance_to("2019-08-09T07:00:20Z".parse().unwrap());
        tokio::time::timeout(Duration::from_secs(5), b)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn run_at_speed_moves_simulated_time_faster() {
        let c = SimClock::new("2019-08-09T10:00:00Z".parse().unwrap());
        let real = Instant::now();
        let driver = c.run_at(3600.0, Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(300)).await;
        driver.abort();
        let e = c.elapsed();
        // Simulated time is real time × 3600, give or take one step.
        let bound = real.elapsed().mul_f64(3600.0) + Duration::from_secs(60);
        assert!(
            e >= Duration::from_secs(900) && e <= bound,
            "{e:?} vs {bound:?}"
        );
    }
}
