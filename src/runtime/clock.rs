//! Time for the pollers, real or simulated.
//!
//! Two kinds of time matter and they must not be confused. *Wall* time ([`Clock::now`]) is what
//! is written down: when a document arrived, when a feed last succeeded. It can jump — an NTP
//! correction, a hand-set clock, a replay that starts in 2019. *Monotonic* time
//! ([`Clock::elapsed`]) only moves forward and is what schedules polls and measures silence for
//! the gap alarm, so a wall clock jumping forward an hour never raises a false alarm, and one
//! jumping back never hides a real one.
//!
//! [`SystemClock`] is the machine's. [`SimClock`] is driven by hand (tests), at a chosen speed
//! (drills watched live), or event by event as fast as the work allows ([`SimClock::run_until`]:
//! replays and the demo); pollers cannot tell the difference. For the last, a task tells the
//! clock when it is busy ([`Clock::awake`]), so that simulated time only moves on once every
//! task is asleep — as in any discrete-event simulation — and a replay at any speed sees what
//! a live run at real speed would.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// A boxed future, so [`Clock`] stays object-safe. It resolves to the sleeper's [`Awake`]
/// guard: a task wakes up busy, with no moment in between where a simulated clock could
/// see everyone asleep and move on under it.
pub type Sleep = Pin<Box<dyn Future<Output = Awake> + Send + 'static>>;

/// What [`Clock::settled_but`] returns (boxed, so [`Clock`] stays object-safe).
pub type Settled<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The time source of a poller.
pub trait Clock: Send + Sync + 'static {
    /// Wall time, for the record.
    fn now(&self) -> Timestamp;
    /// Monotonic time since the clock started, for scheduling and silence.
    fn elapsed(&self) -> Duration;
    /// Resolve once [`Clock::elapsed`] has reached `deadline`. The sleeper counts as
    /// waiting from the moment this is called, and as busy from the moment it wakes until
    /// the returned guard is dropped.
    fn sleep_until(&self, deadline: Duration) -> Sleep;
    /// Declare the calling task busy until the guard is dropped. Only a simulated clock cares:
    /// it does not move on while anyone is busy.
    fn awake(&self) -> Awake {
        Awake(None)
    }
    /// Resolve once every other task is asleep and no sleeper is due, the caller holding
    /// `held` of the busy guards. A stage that acts on what several tasks hand it at one
    /// simulated instant (correlate, on the feeds' deliveries) waits for this first, so it
    /// acts once on all of them, as in every run of the same replay, and not on whatever part
    /// had arrived when the machine happened to schedule it. Resolves at once for the system
    /// clock, where nobody waits for anyone.
    fn settled_but(&self, _held: usize) -> Settled<'_> {
        Box::pin(std::future::ready(()))
    }
}

/// A task is busy while this lives (see [`Clock::awake`]).
#[derive(Debug)]
pub struct Awake(Option<Arc<Mutex<SimState>>>);

impl Awake {
    /// A guard that holds nothing (for code that may or may not hold a clock).
    pub fn none() -> Awake {
        Awake(None)
    }

    /// Whether this guard holds a clock (counts in [`Clock::settled_but`]'s `held`).
    pub fn holds(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Awake {
    fn drop(&mut self) {
        if let Some(state) = &self.0 {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.awake = s.awake.saturating_sub(1);
            // Not only at zero: a stage waits for all but its own guards
            // ([`Clock::settled_but`]).
            s.changed.notify_waiters();
        }
    }
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
        Box::pin(async move {
            tokio::time::sleep_until(at).await;
            Awake(None)
        })
    }
}

#[derive(Debug)]
struct SimState {
    /// Simulated monotonic time.
    mono: Duration,
    /// Wall time at `mono == 0`, moved by [`SimClock::jump_wall`].
    wall_origin: Timestamp,
    /// Deadlines of the sleepers not yet woken, by sleeper id.
    sleepers: std::collections::BTreeMap<u64, Duration>,
    next_sleeper: u64,
    /// Tasks that declared themselves busy.
    awake: usize,
    /// Told when a task goes to sleep or stops being busy (what [`SimClock::settle`] waits
    /// for), so a replay does not poll for idleness.
    changed: Arc<tokio::sync::Notify>,
}

/// Removes a sleeper's deadline when it wakes or is dropped.
struct Registered {
    state: Arc<Mutex<SimState>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.sleepers.remove(&self.id);
        s.changed.notify_waiters();
    }
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
                sleepers: std::collections::BTreeMap::new(),
                next_sleeper: 0,
                awake: 0,
                changed: Arc::new(tokio::sync::Notify::new()),
            })),
            tick: Arc::new(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        // Every update of the state is a single assignment or map operation; a panic
        // elsewhere cannot leave it half-written.
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

    /// Whether every task is asleep and no sleeper is due: the moment time may move on.
    pub fn is_idle(&self) -> bool {
        self.idle_but(0)
    }

    /// [`SimClock::is_idle`], but for `held` busy guards (the asker's own).
    fn idle_but(&self, held: usize) -> bool {
        let s = self.lock();
        s.awake <= held && s.sleepers.values().all(|d| *d > s.mono)
    }

    /// The earliest deadline any sleeper waits for.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.lock().sleepers.values().min().copied()
    }

    /// Wait (in real time) until [`SimClock::is_idle`].
    pub async fn settle(&self) {
        self.settle_but(0).await
    }

    async fn settle_but(&self, held: usize) {
        let changed = self.lock().changed.clone();
        loop {
            // Listen before looking, so a task that goes to sleep in between is not missed.
            let told = changed.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            if self.idle_but(held) {
                return;
            }
            // Mostly woken by the last busy task going to sleep; the timeout is a backstop.
            let _ = tokio::time::timeout(Duration::from_millis(20), told).await;
        }
    }

    /// Run simulated time forward to wall time `end`, event by event: each time every task is
    /// asleep, jump to the earliest deadline. As fast as the work allows, and exactly what the
    /// tasks would have done in real time (given work that takes no simulated time).
    pub async fn run_until(&self, end: Timestamp) {
        loop {
            self.settle().await;
            let now = self.now();
            if now >= end {
                return;
            }
            let to_end = Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO);
            let step = match self.next_deadline() {
                Some(d) => d.saturating_sub(self.elapsed()).min(to_end),
                None => to_end,
            };
            // A deadline already passed would mean a busy sleeper; settle() excludes it.
            self.advance(step.max(Duration::from_nanos(1)));
        }
    }

    /// Drive the clock at `speed` × real time (3600 = an hour per second), until the returned
    /// handle is dropped or aborted. Used by replays and drills.
    ///
    /// Time moves as in [`SimClock::run_until`] — only while every task is asleep, and from
    /// deadline to deadline, so a task woken at a deadline does its work at that simulated
    /// time — paced so that it does not run ahead of real time × `speed`. When the work is
    /// slower than that pace (a loaded machine), simulated time slows down with it instead of
    /// running ahead of the stages: a drill at any speed sees what the scenario holds, never a
    /// silence the machine's lag made (a feed "interrupted", an answer "late"). `step` bounds
    /// how far one move may go (rounded up to what a whole-millisecond tick is worth), and how
    /// much time owed by a stall is made up at once.
    pub fn run_at(&self, speed: f64, step: Duration) -> tokio::task::JoinHandle<()> {
        let clock = self.clone();
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        // Tokio's timer counts whole milliseconds: a tick is the step's real time rounded up,
        // and a tick's worth (not the smaller step) is what it may move, or every rounded-up
        // tick would lose the difference (at 3600× and 60 s steps, 2 % of the pace).
        let real_step =
            Duration::from_millis(step.div_f64(speed).as_micros().div_ceil(1000) as u64)
                .max(Duration::from_millis(1));
        let step = real_step.mul_f64(speed).max(step);
        tokio::spawn(async move {
            let mut last = tokio::time::Instant::now();
            let mut owed = Duration::ZERO;
            let mut ticker = tokio::time::interval(real_step);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = tokio::time::Instant::now();
                // What the pace allows since the last tick; a stall is not made up beyond
                // one step (that time is what the lag cost, and nobody is judged on it).
                owed = (owed + (now - last).mul_f64(speed)).min(step);
                last = now;
                while owed > Duration::ZERO {
                    clock.settle().await;
                    let until = clock
                        .next_deadline()
                        .map(|d| d.saturating_sub(clock.elapsed()));
                    let by = match until {
                        Some(u) if u > Duration::ZERO => owed.min(u),
                        Some(_) => Duration::from_nanos(1).min(owed),
                        None => owed,
                    };
                    clock.advance(by);
                    owed = owed.saturating_sub(by);
                }
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
        let registered = {
            let mut s = self.lock();
            let id = s.next_sleeper;
            s.next_sleeper += 1;
            s.sleepers.insert(id, deadline);
            Registered {
                state: self.state.clone(),
                id,
            }
        };
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= deadline {
                    // Leave the sleepers and join the busy in one step.
                    let mut s = registered.state.lock().unwrap_or_else(|p| p.into_inner());
                    s.sleepers.remove(&registered.id);
                    s.awake += 1;
                    drop(s);
                    return Awake(Some(registered.state.clone()));
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: nothing will ever wake this sleeper.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
    fn awake(&self) -> Awake {
        self.lock().awake += 1;
        Awake(Some(self.state.clone()))
    }
    fn settled_but(&self, held: usize) -> Settled<'_> {
        Box::pin(self.settle_but(held))
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
    async fn run_until_jumps_from_deadline_to_deadline_but_waits_for_busy_tasks() {
        let start: Timestamp = "2019-08-09T10:00:00Z".parse().unwrap();
        let c = SimClock::new(start);
        let seen = Arc::new(Mutex::new(Vec::new()));
        // A task that wakes every 600 s and then is busy (in real time) for 20 ms.
        let (cl, log) = (c.clone(), seen.clone());
        let busy = c.awake();
        tokio::spawn(async move {
            let mut guard = Some(busy);
            for i in 1..=5u64 {
                let sleep = cl.sleep_until(Duration::from_secs(600 * i));
                drop(guard.take());
                guard = Some(sleep.await);
                tokio::time::sleep(Duration::from_millis(20)).await;
                log.lock().unwrap().push(cl.elapsed().as_secs());
            }
            drop(guard);
        });
        c.run_until("2019-08-09T11:00:00Z".parse().unwrap()).await;
        // Every wake-up saw exactly its own time: the clock never ran ahead of busy work.
        assert_eq!(*seen.lock().unwrap(), vec![600, 1200, 1800, 2400, 3000]);
        assert_eq!(c.elapsed(), Duration::from_secs(3600));
    }

    /// Whether a future is ready when polled once now.
    fn ready(f: &mut Settled<'_>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.as_mut().poll(&mut cx).is_ready()
    }

    #[tokio::test]
    async fn settled_but_waits_for_every_other_guard_and_due_sleeper() {
        let c = SimClock::new("2019-08-09T10:00:00Z".parse().unwrap());
        let mine = c.awake();
        let other = c.awake();
        let due = c.sleep_until(Duration::from_secs(60));
        // Another task busy: not settled for the caller's one guard.
        let mut settled = c.settled_but(1);
        assert!(!ready(&mut settled));
        drop(other);
        assert!(ready(&mut settled));
        // A sleeper due but not yet woken is someone about to act.
        c.advance(Duration::from_secs(60));
        assert!(!ready(&mut c.settled_but(1)));
        let woke = due.await;
        assert!(woke.holds());
        assert!(!ready(&mut c.settled_but(1)));
        assert!(ready(&mut c.settled_but(2)));
        drop((woke, mine));
        assert!(c.is_idle());
    }

    // Tokio's time is paused: the 30 ms of work below is modelled (tokio's clock jumps when
    // every task waits), so the test takes no real time and cannot depend on the machine.
    #[tokio::test(start_paused = true)]
    async fn run_at_speed_never_runs_ahead_of_busy_work() {
        let start: Timestamp = "2019-08-09T10:00:00Z".parse().unwrap();
        let c = SimClock::new(start);
        let seen = Arc::new(Mutex::new(Vec::new()));
        // A task that wakes every 60 s and is then busy for 30 ms of (tokio) time: at 3600×,
        // 30 ms is 108 simulated seconds, longer than its own period.
        let (cl, log) = (c.clone(), seen.clone());
        let busy = c.awake();
        let task = tokio::spawn(async move {
            let mut guard = Some(busy);
            for i in 1..=5u64 {
                let sleep = cl.sleep_until(Duration::from_secs(60 * i));
                drop(guard.take());
                guard = Some(sleep.await);
                tokio::time::sleep(Duration::from_millis(30)).await;
                log.lock().unwrap().push(cl.elapsed().as_secs());
            }
            drop(guard);
        });
        let driver = c.run_at(3600.0, Duration::from_secs(30));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        driver.abort();
        // Every wake-up saw exactly its own time, however slow the work.
        assert_eq!(*seen.lock().unwrap(), vec![60, 120, 180, 240, 300]);
    }

    // Tokio's time is paused, so the pace is measured on tokio's clock, which jumps from
    // timer to timer: the result is the same on a loaded CI machine as on an idle one.
    #[tokio::test(start_paused = true)]
    async fn run_at_speed_moves_simulated_time_faster() {
        let c = SimClock::new("2019-08-09T10:00:00Z".parse().unwrap());
        let real = tokio::time::Instant::now();
        let driver = c.run_at(3600.0, Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let paced = real.elapsed().mul_f64(3600.0);
        driver.abort();
        let e = c.elapsed();
        // Simulated time is (tokio) time × 3600, give or take one step.
        assert!(
            e + Duration::from_secs(60) >= paced && e <= paced + Duration::from_secs(60),
            "{e:?} vs {paced:?}"
        );
        assert!(e >= Duration::from_secs(1000), "{e:?}");
    }
}
