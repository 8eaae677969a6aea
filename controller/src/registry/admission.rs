//! How many requests one registry gets at once, and in which order waiting requests go: pure state, the
//! caller passes the time in (the async side is in `slots.rs`).
//!
//! # The window
//! [`Window`] is the congestion window of a TCP sender applied to a registry (Jacobson, "Congestion
//! Avoidance and Control", 1988; RFC 5681), with the delay signal of TCP Vegas, following Netflix's
//! `concurrency-limits` library (`AIMDLimit`, and the gradient of `Gradient2Limit`):
//! - it starts at [`WindowConfig::initial`] in slow start (one more slot per answer, so it doubles per round
//!   trip) until the first sign of congestion, then grows by `1/window` per answer (one slot per round trip);
//! - it grows only while it is used (at least half of it in flight when an answer comes, as `AIMDLimit`
//!   does), so a quiet registry does not build a large window it never tested;
//! - it halves on a 429, a 5xx, a timeout or a connection failure, and when an answer took more than
//!   [`WindowConfig::latency_tolerance`] times the smallest latency recently seen (plus
//!   [`WindowConfig::latency_floor`], so that the jitter of a registry answering in a millisecond is not
//!   read as congestion): the registry is queueing requests before it fails them;
//! - it halves at most once per round trip, as TCP does: answers to requests sent before the last decrease
//!   saw the old window, and are not counted again;
//! - it stays within `[1, max]`: one request at a time always goes, as a sequential client would send it.
//!
//! The smallest latency is the minimum over the current and the previous period of
//! [`WindowConfig::min_latency_period`] (a windowed minimum, as BBR keeps its `min_rtt`), so a registry that
//! became slower for good sets a new baseline instead of holding the window at 1 forever; failed answers
//! (a 503 from a proxy comes fast) never set it.
//!
//! # The queue
//! [`Queue`] orders requests that wait for a slot: by [`Priority`], first in first out within one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Why a request is sent, which orders it in the queue of its registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Someone waits for it: a first import, a spec change, a registry push, a requested import.
    #[default]
    Prompt,
    /// A scheduled re-import (`importPolicy.scheduled`).
    Scheduled,
    /// A retry after a failed import.
    Retry,
}

impl Priority {
    /// Every priority, the most urgent first.
    pub const ALL: [Self; 3] = [Self::Prompt, Self::Scheduled, Self::Retry];

    /// The name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::Scheduled => "scheduled",
            Self::Retry => "retry",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a request to the registry ended, as the window reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The registry answered, whatever the answer (404 and 401 included), except 429 and 5xx.
    Answered,
    /// 429, 5xx, a timeout or a connection failure: the registry is overloaded or unreachable.
    Overloaded,
}

/// The bounds and sensitivity of a [`Window`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowConfig {
    /// The largest window: requests in flight to one registry at most.
    pub max: u32,
    /// The window before the first answer.
    pub initial: u32,
    /// An answer slower than this many times the smallest recent latency (plus the floor) halves the window.
    pub latency_tolerance: f64,
    /// Added to the latency threshold, for registries whose answers take a millisecond or two.
    pub latency_floor: Duration,
    /// The smallest latency is the minimum over this period and the one before it.
    pub min_latency_period: Duration,
}

impl Default for WindowConfig {
    /// At most 32 at once, starting at 4; congestion when an answer takes over twice the smallest latency
    /// plus 20 ms; the minimum kept over 30 to 60 s.
    fn default() -> Self {
        Self {
            max: 32,
            initial: 4,
            latency_tolerance: 2.0,
            latency_floor: Duration::from_millis(20),
            min_latency_period: Duration::from_secs(30),
        }
    }
}

/// The congestion window of one registry (see the module documentation).
#[derive(Clone, Debug)]
pub struct Window {
    config: WindowConfig,
    limit: f64,
    slow_start: bool,
    last_decrease: Option<Instant>,
    min_latency: Option<Duration>,
    period_min: Option<Duration>,
    period_start: Option<Instant>,
}

impl Window {
    /// A window at `config.initial` (within `[1, max]`).
    pub fn new(config: WindowConfig) -> Self {
        let max = config.max.max(1);
        Self {
            limit: f64::from(config.initial.clamp(1, max)),
            config: WindowConfig { max, ..config },
            slow_start: true,
            last_decrease: None,
            min_latency: None,
            period_min: None,
            period_start: None,
        }
    }

    /// How many requests may be in flight now.
    pub fn limit(&self) -> u32 {
        // Within [1, max] by construction; the cast truncates a fraction.
        (self.limit.floor() as u32).clamp(1, self.config.max)
    }

    /// The smallest latency recently seen, if any answer came.
    pub fn min_latency(&self) -> Option<Duration> {
        self.min_latency
    }

    /// Records the end of a request sent at `started`, that ended with `signal` after `latency`, while
    /// `in_flight` requests (this one included) were in flight.
    pub fn record(
        &mut self,
        signal: Signal,
        started: Instant,
        latency: Duration,
        in_flight: u32,
        now: Instant,
    ) {
        let congested = match signal {
            Signal::Overloaded => true,
            Signal::Answered => self.slower_than_usual(latency, now),
        };
        if congested {
            if self.last_decrease.is_some_and(|at| started < at) {
                return;
            }
            self.limit = (self.limit / 2.0).max(1.0);
            self.slow_start = false;
            self.last_decrease = Some(now);
        } else if f64::from(in_flight) * 2.0 >= self.limit {
            let step = if self.slow_start { 1.0 } else { 1.0 / self.limit };
            self.limit = (self.limit + step).min(f64::from(self.config.max));
        }
    }

    /// Keeps the windowed minimum and says whether `latency` is well above it.
    fn slower_than_usual(&mut self, latency: Duration, now: Instant) -> bool {
        let period_over = self
            .period_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.config.min_latency_period);
        if period_over {
            // The previous period's minimum and this sample: older minimums are forgotten.
            self.min_latency = Some(self.period_min.map_or(latency, |m| m.min(latency)));
            self.period_min = Some(latency);
            self.period_start = Some(now);
        } else {
            self.period_min = Some(self.period_min.map_or(latency, |m| m.min(latency)));
            self.min_latency = Some(self.min_latency.map_or(latency, |m| m.min(latency)));
        }
        let min = self.min_latency.unwrap_or(latency);
        latency > min.mul_f64(self.config.latency_tolerance) + self.config.latency_floor
    }
}

/// Requests waiting for a slot, by priority, first in first out within one; each known by an id.
#[derive(Debug, Default)]
pub struct Queue {
    classes: [VecDeque<u64>; 3],
}

impl Queue {
    /// Adds `id` at the end of its priority's line.
    pub fn push(&mut self, priority: Priority, id: u64) {
        self.classes[priority.index()].push_back(id);
    }

    /// The next request to go: the oldest of the most urgent priority.
    pub fn pop(&mut self) -> Option<u64> {
        self.classes.iter_mut().find_map(VecDeque::pop_front)
    }

    /// Takes `id` out of the queue (its caller went away); whether it was there.
    pub fn remove(&mut self, priority: Priority, id: u64) -> bool {
        let line = &mut self.classes[priority.index()];
        match line.iter().position(|&w| w == id) {
            Some(at) => line.remove(at).is_some(),
            None => false,
        }
    }

    /// How many wait with `priority`.
    pub fn len(&self, priority: Priority) -> usize {
        self.classes[priority.index()].len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.classes.iter().all(VecDeque::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config(max: u32, initial: u32) -> WindowConfig {
        WindowConfig {
            max,
            initial,
            ..WindowConfig::default()
        }
    }

    /// `n` fast answers with the window full, one millisecond apart from `t`.
    fn fast_answers(w: &mut Window, t: Instant, n: u32) -> Instant {
        let mut now = t;
        for _ in 0..n {
            now += MS;
            let full = w.limit();
            w.record(Signal::Answered, now - 10 * MS, 10 * MS, full, now);
        }
        now
    }

    #[test]
    fn slow_start_doubles_then_growth_is_additive_up_to_the_max() {
        let t = Instant::now();
        let mut w = Window::new(config(64, 4));
        let now = fast_answers(&mut w, t, 4);
        assert_eq!(w.limit(), 8, "one more slot per answer in slow start");
        // A congestion signal ends slow start: halved, then about one slot per window of answers.
        w.record(Signal::Overloaded, now, 10 * MS, 8, now);
        assert_eq!(w.limit(), 4);
        let now = fast_answers(&mut w, now + MS, 5);
        assert_eq!(w.limit(), 5, "4 + 1/4 + 1/4.25 + ...");
        fast_answers(&mut w, now, 10_000);
        assert_eq!(w.limit(), 64, "never above the max");
    }

    #[test]
    fn an_idle_window_does_not_grow() {
        let t = Instant::now();
        let mut w = Window::new(config(64, 8));
        for i in 1..100 {
            w.record(Signal::Answered, t, 10 * MS, 3, t + i * MS);
        }
        assert_eq!(w.limit(), 8, "3 in flight of 8 is not using the window");
    }

    #[test]
    fn overload_halves_once_per_round_trip_and_never_below_one() {
        let t = Instant::now();
        let mut w = Window::new(config(64, 32));
        // 32 requests sent together all fail: one halving, not 32.
        for i in 0..32 {
            w.record(Signal::Overloaded, t, 100 * MS, 32 - i, t + 100 * MS);
        }
        assert_eq!(w.limit(), 16);
        // Requests sent after that decrease count again.
        let mut now = t + 100 * MS;
        for _ in 0..10 {
            now += 200 * MS;
            w.record(Signal::Overloaded, now - 100 * MS, 100 * MS, 1, now);
        }
        assert_eq!(w.limit(), 1);
    }

    #[test]
    fn rising_latency_halves_the_window() {
        let t = Instant::now();
        let mut w = Window::new(config(64, 16));
        let now = fast_answers(&mut w, t, 16);
        assert_eq!(w.limit(), 32);
        assert_eq!(w.min_latency(), Some(10 * MS));
        // 2 × 10 ms + 20 ms is still usual; 41 ms is not.
        w.record(Signal::Answered, now, 40 * MS, 32, now + 40 * MS);
        assert_eq!(w.limit(), 33);
        w.record(Signal::Answered, now, 41 * MS, 32, now + 41 * MS);
        assert_eq!(w.limit(), 16);
    }

    #[test]
    fn the_minimum_latency_follows_a_registry_that_became_slower_for_good() {
        let t = Instant::now();
        let period = WindowConfig::default().min_latency_period;
        let mut w = Window::new(config(64, 4));
        w.record(Signal::Answered, t, 10 * MS, 4, t);
        // From now on the registry answers in 200 ms, whatever the load.
        let mut now = t;
        for _ in 0..200 {
            now += period / 50;
            w.record(Signal::Answered, now - 200 * MS, 200 * MS, 1, now);
        }
        assert_eq!(w.min_latency(), Some(200 * MS));
        let before = w.limit();
        w.record(Signal::Answered, now, 200 * MS, before, now + 200 * MS);
        assert!(w.limit() >= before, "200 ms is the new usual");
        // Failed answers never set the minimum.
        w.record(Signal::Overloaded, now + MS, MS, 1, now + 2 * MS);
        assert_eq!(w.min_latency(), Some(200 * MS));
    }

    #[test]
    fn bounds_hold_for_odd_configurations() {
        let w = Window::new(config(0, 0));
        assert_eq!(w.limit(), 1);
        let w = Window::new(config(8, 100));
        assert_eq!(w.limit(), 8);
    }

    #[test]
    fn the_queue_serves_by_priority_then_in_order() {
        let mut q = Queue::default();
        q.push(Priority::Retry, 1);
        q.push(Priority::Scheduled, 2);
        q.push(Priority::Retry, 3);
        q.push(Priority::Prompt, 4);
        q.push(Priority::Prompt, 5);
        assert_eq!(q.len(Priority::Retry), 2);
        assert!(q.remove(Priority::Retry, 3));
        assert!(!q.remove(Priority::Retry, 3));
        assert!(!q.remove(Priority::Prompt, 1), "removed from its own line only");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [4, 5, 2, 1]);
        assert!(q.is_empty());
    }
}
