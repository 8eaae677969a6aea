//! Keeping registries happy: a token bucket per registry, and back-off after 429 and 5xx answers that
//! honours `Retry-After`.
//!
//! [`RateLimiter`] and [`Backoff`] are pure: the caller passes the time in, so they are tested without
//! sleeping. The gate (`gate.rs`) holds one of each per registry host for the resolver, beside the registry's
//! concurrency window and priority queue.

use std::time::{Duration, Instant};

/// How many requests per second a registry gets from this controller, with bursts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (tokens added per second).
    pub per_second: f64,
    /// Bucket size: how many requests may go at once after a quiet period.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 10 requests per second, bursts of 20: far below what public registries allow per client.
    fn default() -> Self {
        Self {
            per_second: 10.0,
            burst: 20,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            updated: now,
        }
    }

    /// Takes a token if there is one; else says how long until there will be.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst.max(1)));
        self.updated = now.max(self.updated);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.limit.per_second <= 0.0 {
            Err(Duration::MAX)
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.limit.per_second,
            ))
        }
    }

    /// Takes a token now or, when one comes within `max_wait`, reserves it and says how long to wait for it
    /// (the bucket goes below zero, so those who reserve later wait longer: first come, first served). When
    /// the token would come later than `max_wait`, nothing is reserved and the wait is the error.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let wait = match self.try_acquire(now) {
            Ok(()) => return Ok(Duration::ZERO),
            Err(wait) => wait,
        };
        if wait > max_wait {
            return Err(wait);
        }
        self.tokens -= 1.0;
        Ok(wait)
    }
}

/// How back-off grows when the registry gives no `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay Berth chooses itself.
    pub max: Duration,
    /// The longest `Retry-After` honoured (a registry asking for a day is capped to this).
    pub max_retry_after: Duration,
}

impl Default for BackoffPolicy {
    /// 1 s doubling to 5 min; `Retry-After` honoured up to 1 h.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

/// Why requests to a registry are held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The registry answered 429.
    RateLimited,
    /// The registry answered 5xx, or could not be reached.
    Unavailable,
}

/// Back-off state of one registry.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
    until: Option<(Instant, Throttle)>,
}

impl Backoff {
    /// Records a 429 or 5xx (or a connection failure) at `now`; returns the delay before the next request.
    /// A `Retry-After` is honoured as given (capped by the policy); without one the delay doubles with each
    /// consecutive failure.
    pub fn record_failure(
        &mut self,
        policy: &BackoffPolicy,
        now: Instant,
        cause: Throttle,
        retry_after: Option<Duration>,
    ) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = match retry_after {
            Some(after) => after.min(policy.max_retry_after),
            None => {
                let doublings = self.failures.saturating_sub(1).min(30);
                policy.initial.saturating_mul(1 << doublings).min(policy.max)
            }
        };
        self.until = Some((now + delay, cause));
        delay
    }

    /// Records an answer that was not a 429 or 5xx: back-off ends.
    pub fn record_success(&mut self) {
        *self = Self::default();
    }

    /// Whether requests are held back at `now`, for how much longer and why.
    pub fn blocked(&self, now: Instant) -> Option<(Duration, Throttle)> {
        let (until, cause) = self.until?;
        (until > now).then(|| (until - now, cause))
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`,
/// counted from `now`; a date in the past means no wait).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    let secs = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits beyond u64 are as good as "forever": capped like any other long wait.
        value.parse::<u64>().unwrap_or(u64::MAX)
    } else {
        let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
        u64::try_from(at.as_second().saturating_sub(now.as_second())).unwrap_or(0)
    };
    // Capped here, before anyone adds it to a clock.
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)))
}

/// The longest wait a `Retry-After` can ask for as parsed (a day); the back-off policy caps it further.
pub const MAX_RETRY_AFTER_SECS: u64 = 86_400;

/// Why the gate did not let a request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Back-off after the registry's 429 or 5xx still holds, for this long.
    Backoff(Throttle, Duration),
    /// Berth's own rate limit would make the request wait longer than it may; a token comes after this.
    RateLimit(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn token_bucket_bursts_then_paces() {
        let t0 = Instant::now();
        let mut bucket = RateLimiter::new(
            RateLimit {
                per_second: 2.0,
                burst: 3,
            },
            t0,
        );
        for _ in 0..3 {
            assert_eq!(bucket.try_acquire(t0), Ok(()));
        }
        assert_eq!(bucket.try_acquire(t0), Err(Duration::from_millis(500)));
        assert_eq!(
            bucket.try_acquire(t0 + Duration::from_millis(250)),
            Err(Duration::from_millis(250))
        );
        assert_eq!(bucket.try_acquire(t0 + Duration::from_millis(500)), Ok(()));
        // A long quiet period refills to the burst size, not beyond.
        let later = t0 + 100 * S;
        for _ in 0..3 {
            assert_eq!(bucket.try_acquire(later), Ok(()));
        }
        assert!(bucket.try_acquire(later).is_err());
    }

    #[test]
    fn reservations_are_served_in_order_within_the_longest_wait() {
        let t0 = Instant::now();
        let limit = RateLimit {
            per_second: 10.0,
            burst: 1,
        };
        let mut bucket = RateLimiter::new(limit, t0);
        let waits: Vec<_> = (0..4).map(|_| bucket.reserve(t0, 250 * MS)).collect();
        assert_eq!(
            waits,
            [Ok(Duration::ZERO), Ok(100 * MS), Ok(200 * MS), Err(300 * MS)]
        );
        // The refused one reserved nothing: the next still waits 300 ms.
        assert_eq!(bucket.reserve(t0, S), Ok(300 * MS));
        assert_eq!(bucket.reserve(t0 + S, S), Ok(Duration::ZERO));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let policy = BackoffPolicy {
            initial: S,
            max: 5 * S,
            max_retry_after: 60 * S,
        };
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.blocked(t0), None);
        let delays: Vec<_> = (0..5)
            .map(|_| {
                b.record_failure(&policy, t0, Throttle::Unavailable, None)
                    .as_secs()
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(b.blocked(t0 + 2 * S), Some((3 * S, Throttle::Unavailable)));
        assert_eq!(b.blocked(t0 + 5 * S), None);
        b.record_success();
        assert_eq!(b.record_failure(&policy, t0, Throttle::Unavailable, None), S);
    }

    #[test]
    fn backoff_honours_retry_after_up_to_the_cap() {
        let policy = BackoffPolicy {
            initial: S,
            max: 5 * S,
            max_retry_after: 60 * S,
        };
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(
            b.record_failure(&policy, t0, Throttle::RateLimited, Some(30 * S)),
            30 * S
        );
        assert_eq!(b.blocked(t0 + 10 * S), Some((20 * S, Throttle::RateLimited)));
        assert_eq!(
            b.record_failure(&policy, t0, Throttle::RateLimited, Some(86_400 * S)),
            60 * S
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now: jiff::Timestamp = "2015-10-21T07:27:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("120", now), Some(120 * S));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(60 * S)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "past"
        );
        assert_eq!(parse_retry_after("18446744073709551615", now), Some(86_400 * S));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(86_400 * S)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT", now),
            Some(86_400 * S)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }
}
