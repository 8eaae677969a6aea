//! When a failed reconcile runs again: exponential back-off per object, reset by a success.
//!
//! The schedule follows client-go's per-item rate limiter (`ItemExponentialFailureRateLimiter`, the default of
//! every controller built on client-go and controller-runtime): a delay that doubles with each consecutive
//! failure of the same object, from a small base, up to a cap.
//!
//! - [`Class::RetrySoon`] (a conflict) starts at [`SOON_BASE`], client-go's 5 ms: the newer version is
//!   usually in the cache by then, and a conflict that keeps coming back still backs off.
//! - [`Class::RetryLater`] (a busy, failing or unreachable server) starts at [`LATER_BASE`], 1 s (close to
//!   kube-runtime's watcher back-off, 800 ms): a server that answers 5xx or not at all is rarely back within
//!   milliseconds, and hundreds of tags failing together would otherwise hammer it with the first retries.
//! - Both double up to [`CAP`], 5 minutes (client-go goes to 1000 s; 5 minutes is the kubelet's
//!   CrashLoopBackOff cap, and a tag or Workload waiting longer after an outage ends would be noticed).
//! - [`Class::GiveUp`] does not back off: it waits [`GIVE_UP_RECHECK`] or the next change of the object,
//!   whichever comes first.
//!
//! No jitter, as in client-go: failures of many objects spread by themselves over their own streaks, and the
//! reconcile queue runs them a few at a time.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::Class;

/// The first delay after a conflict.
pub const SOON_BASE: Duration = Duration::from_millis(5);
/// The first delay after a transient failure.
pub const LATER_BASE: Duration = Duration::from_secs(1);
/// The longest delay of either back-off.
pub const CAP: Duration = Duration::from_secs(300);
/// How long a given-up object waits when it does not change: a permission granted, or an object fixed
/// elsewhere, is seen within this time (the default interval of scheduled imports).
pub const GIVE_UP_RECHECK: Duration = Duration::from_secs(15 * 60);
/// A streak not touched for this long is of an object that is gone (a failing object is retried at least every
/// [`GIVE_UP_RECHECK`]): it is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

/// The delay before the next try of an object that failed `failures` times in a row (this one included).
pub fn delay(class: Class, failures: u32) -> Duration {
    let base = match class {
        Class::RetrySoon => SOON_BASE,
        Class::RetryLater => LATER_BASE,
        Class::GiveUp => return GIVE_UP_RECHECK,
    };
    // 2^20 × 5 ms is already past the cap: a longer streak does not overflow.
    let doublings = failures.saturating_sub(1).min(20);
    base.saturating_mul(1 << doublings).min(CAP)
}

/// What the error policy does with one failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// The failure's class.
    pub class: Class,
    /// Failures in a row of this object, this one included.
    pub failures: u32,
    /// When to try again.
    pub after: Duration,
    /// Whether to log the failure: always when it is retried (the back-off bounds the rate), once per distinct
    /// error when it is given up.
    pub report: bool,
}

/// One object's failures since its last success.
#[derive(Debug)]
struct Streak {
    failures: u32,
    /// The error last reported as given up.
    given_up: Option<String>,
    last: Instant,
}

/// The failure streaks of the objects whose last reconcile failed, keyed by object.
#[derive(Debug)]
pub struct Streaks<K> {
    streaks: HashMap<K, Streak>,
}

impl<K> Default for Streaks<K> {
    fn default() -> Self {
        Self {
            streaks: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> Streaks<K> {
    /// Records a failure of `key` at `now` with the error `message` of `class`, and says what to do.
    pub fn failed(&mut self, key: K, class: Class, message: &str, now: Instant) -> Retry {
        if !self.streaks.contains_key(&key) && self.streaks.len() % 256 == 255 {
            self.forget_stale(now);
        }
        let streak = self.streaks.entry(key).or_insert(Streak {
            failures: 0,
            given_up: None,
            last: now,
        });
        streak.failures = streak.failures.saturating_add(1);
        streak.last = now;
        let report = match class {
            Class::GiveUp if streak.given_up.as_deref() == Some(message) => false,
            Class::GiveUp => {
                streak.given_up = Some(message.to_owned());
                true
            }
            Class::RetrySoon | Class::RetryLater => true,
        };
        Retry {
            class,
            failures: streak.failures,
            after: delay(class, streak.failures),
            report,
        }
    }

    /// Forgets the streak of `key` after a successful reconcile: its next failure starts from the base again.
    pub fn succeeded(&mut self, key: &K) {
        self.streaks.remove(key);
    }

    /// How many objects have a streak.
    pub fn len(&self) -> usize {
        self.streaks.len()
    }

    /// Whether no object has a streak.
    pub fn is_empty(&self) -> bool {
        self.streaks.is_empty()
    }

    fn forget_stale(&mut self, now: Instant) {
        self.streaks
            .retain(|_, s| now.saturating_duration_since(s.last) < FORGET_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn conflicts_back_off_from_5ms() {
        let delays: Vec<_> = (1..=5).map(|n| delay(Class::RetrySoon, n)).collect();
        assert_eq!(delays, [5 * MS, 10 * MS, 20 * MS, 40 * MS, 80 * MS]);
        assert_eq!(delay(Class::RetrySoon, 17), 300 * S); // 5 ms × 2^16 = 327 s, capped
    }

    #[test]
    fn transient_failures_back_off_from_1s_to_5_minutes() {
        let delays: Vec<_> = (1..=10).map(|n| delay(Class::RetryLater, n)).collect();
        assert_eq!(
            delays,
            [
                1 * S,
                2 * S,
                4 * S,
                8 * S,
                16 * S,
                32 * S,
                64 * S,
                128 * S,
                256 * S,
                300 * S
            ]
        );
        assert_eq!(delay(Class::RetryLater, u32::MAX), CAP);
        assert_eq!(delay(Class::RetryLater, 0), 1 * S);
    }

    #[test]
    fn given_up_objects_wait_a_long_interval_without_back_off() {
        assert_eq!(delay(Class::GiveUp, 1), GIVE_UP_RECHECK);
        assert_eq!(delay(Class::GiveUp, 30), GIVE_UP_RECHECK);
    }

    #[test]
    fn each_object_backs_off_on_its_own_and_a_success_resets_it() {
        let now = Instant::now();
        let mut streaks = Streaks::default();
        let after = |r: Retry| r.after;
        assert_eq!(after(streaks.failed("a", Class::RetryLater, "503", now)), 1 * S);
        assert_eq!(after(streaks.failed("a", Class::RetryLater, "503", now)), 2 * S);
        assert_eq!(after(streaks.failed("b", Class::RetryLater, "503", now)), 1 * S);
        assert_eq!(after(streaks.failed("a", Class::RetryLater, "503", now)), 4 * S);
        // A conflict in the middle of an outage keeps the streak: it counts, but from its own base.
        assert_eq!(after(streaks.failed("a", Class::RetrySoon, "409", now)), 40 * MS);
        streaks.succeeded(&"a");
        assert_eq!(streaks.len(), 1);
        let retry = streaks.failed("a", Class::RetryLater, "503", now);
        assert_eq!((retry.failures, retry.after), (1, 1 * S));
    }

    #[test]
    fn a_given_up_error_is_reported_once_until_it_changes_or_the_object_recovers() {
        let now = Instant::now();
        let mut streaks = Streaks::default();
        let first = streaks.failed("a", Class::GiveUp, "403 forbidden", now);
        assert_eq!(
            first,
            Retry {
                class: Class::GiveUp,
                failures: 1,
                after: GIVE_UP_RECHECK,
                report: true
            }
        );
        assert!(!streaks.failed("a", Class::GiveUp, "403 forbidden", now).report);
        assert!(streaks.failed("a", Class::GiveUp, "422 invalid", now).report);
        // Retried failures are always logged (their back-off bounds the rate).
        assert!(streaks.failed("a", Class::RetryLater, "503", now).report);
        assert!(streaks.failed("a", Class::RetryLater, "503", now).report);
        streaks.succeeded(&"a");
        assert!(streaks.failed("a", Class::GiveUp, "422 invalid", now).report);
    }

    #[test]
    fn streaks_of_objects_gone_for_an_hour_are_forgotten() {
        let start = Instant::now();
        let mut streaks = Streaks::default();
        for n in 0..255 {
            streaks.failed(n, Class::GiveUp, "404", start);
        }
        streaks.failed(1000, Class::GiveUp, "404", start + FORGET_AFTER / 2);
        assert_eq!(streaks.len(), 256);
        for n in 1001..1256 {
            streaks.failed(n, Class::RetryLater, "503", start + FORGET_AFTER);
        }
        // The 512th object found the first 255 an hour old, and only those went.
        streaks.failed(2000, Class::RetryLater, "503", start + FORGET_AFTER);
        assert_eq!(streaks.len(), 257);
        assert!(!streaks.is_empty());
    }
}
