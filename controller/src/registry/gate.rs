//! The gate every registry request passes: a concurrency window and priority queue per registry
//! (`admission.rs`, `slots.rs`), then a token of its rate limit and no back-off in force (`ratelimit.rs`). A
//! request needs a slot, then a token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::admission::{Priority, WindowConfig};
use super::policy::RegistryPolicy;
use super::ratelimit::{Backoff, BackoffPolicy, RateLimit, RateLimiter, Refusal, Throttle};
use super::slots::{Permit, Slots};

/// What one registry gets: requests per second, and requests at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegistryLimits {
    /// The token bucket.
    pub rate: RateLimit,
    /// The concurrency window.
    pub window: WindowConfig,
}

#[derive(Debug)]
struct HostState {
    limits: RegistryLimits,
    limiter: RateLimiter,
    backoff: Backoff,
}

/// How long a request holding a slot may wait for its token. Only slot holders reserve tokens, so at most
/// `window.max` reservations are outstanding and the last waits `window.max / rate`: that wait is allowed
/// (up to [`MAX_TOKEN_WAIT`]), so that Berth's own rate limit orders requests instead of failing them
/// `RateLimited` when the window is wider than the rate allows within `max_wait`.
fn token_patience(max_wait: Duration, limits: RegistryLimits) -> Duration {
    let queue = f64::from(limits.window.max) / limits.rate.per_second;
    let queue = Duration::try_from_secs_f64(queue).unwrap_or(MAX_TOKEN_WAIT);
    max_wait.max(queue.min(MAX_TOKEN_WAIT))
}

/// The longest a slot holder waits for a token: beyond it, Berth's own limit refuses with `RateLimited`.
pub const MAX_TOKEN_WAIT: Duration = Duration::from_secs(60);

/// A [`RateLimiter`], a [`Backoff`] and a concurrency window ([`Slots`]) per registry host, shared by all
/// resolves.
///
/// [`admit`](Self::admit) refuses at once while back-off holds; else it waits for a slot (by priority, for
/// as long as it takes: the window bounds what is in flight, the queue orders the rest, and a dropped
/// caller leaves the queue at once), then for a token, as long as the requests ahead of it in the window
/// need ([`token_patience`]). A reconcile never sleeps for minutes on a back-off: it gets an error with the
/// time left and requeues.
#[derive(Debug)]
pub struct RegistryGate {
    defaults: RegistryLimits,
    registries: RegistryPolicy,
    policy: BackoffPolicy,
    max_wait: Duration,
    hosts: Mutex<HashMap<String, HostState>>,
    slots: Slots,
}

impl RegistryGate {
    /// A gate with these limits for every registry, and the default concurrency window.
    pub fn new(limit: RateLimit, policy: BackoffPolicy, max_wait: Duration) -> Self {
        Self {
            defaults: RegistryLimits {
                rate: limit,
                window: WindowConfig::default(),
            },
            registries: RegistryPolicy::default(),
            policy,
            max_wait,
            hosts: Mutex::default(),
            slots: Slots::default(),
        }
    }

    /// The same gate with `window` as the default concurrency window, and the per-registry limits of
    /// `registries` (its `berth.registries`) for the registries it names.
    pub fn with_registry_limits(mut self, window: WindowConfig, registries: RegistryPolicy) -> Self {
        self.defaults.window = window;
        self.registries = registries;
        self
    }

    /// The slots of every registry (their load is what metrics show).
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    fn with_host<T>(&self, host: &str, f: impl FnOnce(&mut HostState, Instant) -> T) -> T {
        // tokio's clock, so that tests with paused time see time pass.
        let now = tokio::time::Instant::now().into_std();
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = hosts.entry(host.to_string()).or_insert_with(|| {
            let limits = self.registries.limits_for(host, self.defaults);
            HostState {
                limits,
                limiter: RateLimiter::new(limits.rate, now),
                backoff: Backoff::default(),
            }
        });
        f(state, now)
    }

    /// Lets one request to `host` through: a slot of its window (waiting behind more urgent and older
    /// requests), then a token if one comes within `max_wait`. The permit is the slot: finish it with the
    /// answer, or drop it.
    pub async fn admit(&self, host: &str, priority: Priority) -> Result<Permit, Refusal> {
        let limits = self.with_host(host, |state, now| match state.backoff.blocked(now) {
            Some((left, cause)) => Err(Refusal::Backoff(cause, left)),
            None => Ok(state.limits),
        })?;
        let permit = self.slots.acquire(host, limits.window, priority).await;
        let patience = token_patience(self.max_wait, limits);
        loop {
            // Back-off may have begun while this request waited for its slot: a short one is waited out
            // (holding the slot, which holds the registry's other requests back too), a long one refused.
            let decision = self.with_host(host, |state, now| {
                if let Some((left, cause)) = state.backoff.blocked(now) {
                    return Err(Refusal::Backoff(cause, left));
                }
                state.limiter.reserve(now, patience).map_err(Refusal::RateLimit)
            });
            match decision {
                Ok(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return Ok(permit);
                }
                Err(Refusal::Backoff(_, left)) if left <= self.max_wait => tokio::time::sleep(left).await,
                Err(refusal) => return Err(refusal),
            }
        }
    }

    /// Records that `host` answered 429 or 5xx (or was unreachable); returns the back-off delay.
    pub fn record_failure(&self, host: &str, cause: Throttle, retry_after: Option<Duration>) -> Duration {
        self.with_host(host, |state, now| {
            state
                .backoff
                .record_failure(&self.policy, now, cause, retry_after)
        })
    }

    /// Records that `host` answered normally.
    pub fn record_success(&self, host: &str) {
        self.with_host(host, |state, _| state.backoff.record_success());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn slot_holders_wait_for_their_token_as_long_as_the_window_needs() {
        let limits = |per_second, max| RegistryLimits {
            rate: RateLimit { per_second, burst: 1 },
            window: WindowConfig {
                max,
                ..WindowConfig::default()
            },
        };
        assert_eq!(token_patience(2 * S, limits(10.0, 32)), 3200 * MS);
        assert_eq!(token_patience(2 * S, limits(100.0, 32)), 2 * S);
        assert_eq!(token_patience(2 * S, limits(0.01, 32)), MAX_TOKEN_WAIT);
        assert_eq!(token_patience(2 * S, limits(0.0, 32)), MAX_TOKEN_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waiting_for_a_slot_waits_out_a_short_backoff_and_is_refused_a_long_one() {
        let one_at_a_time = WindowConfig {
            max: 1,
            initial: 1,
            ..WindowConfig::default()
        };
        let gate = RegistryGate::new(RateLimit::default(), BackoffPolicy::default(), 2 * S)
            .with_registry_limits(one_at_a_time, RegistryPolicy::default());
        for (retry_after, admitted) in [(S, true), (30 * S, false)] {
            let held = gate.admit("r.example", Priority::Prompt).await.unwrap();
            let mut waiting = Box::pin(gate.admit("r.example", Priority::Retry));
            assert!(
                futures::poll!(waiting.as_mut()).is_pending(),
                "the only slot is held"
            );
            gate.record_failure("r.example", Throttle::Unavailable, Some(retry_after));
            drop(held);
            let start = tokio::time::Instant::now();
            let result = waiting.await;
            assert_eq!(result.is_ok(), admitted, "{retry_after:?}: {result:?}");
            if admitted {
                assert!(start.elapsed() >= retry_after);
            }
            gate.record_success("r.example");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gate_waits_briefly_for_tokens_and_refuses_during_backoff() {
        let gate = RegistryGate::new(
            RateLimit {
                per_second: 1.0,
                burst: 1,
            },
            BackoffPolicy::default(),
            2 * S,
        );
        let start = tokio::time::Instant::now();
        drop(gate.admit("r.example", Priority::Prompt).await.unwrap());
        drop(gate.admit("r.example", Priority::Prompt).await.unwrap()); // waits ~1 s of paused (virtual) time for a token
        assert!(start.elapsed() >= S, "{:?}", start.elapsed());
        drop(gate.admit("other.example", Priority::Prompt).await.unwrap()); // registries have their own buckets

        gate.record_failure("r.example", Throttle::RateLimited, Some(30 * S));
        match gate.admit("r.example", Priority::Prompt).await {
            Err(Refusal::Backoff(Throttle::RateLimited, left)) => assert!(left <= 30 * S && left > 29 * S),
            other => panic!("{other:?}"),
        }
        gate.record_success("r.example");
        let slow = RegistryGate::new(
            RateLimit {
                per_second: 0.01,
                burst: 1,
            },
            BackoffPolicy::default(),
            2 * S,
        );
        drop(slow.admit("r.example", Priority::Prompt).await.unwrap());
        assert!(
            matches!(slow.admit("r.example", Priority::Prompt).await, Err(Refusal::RateLimit(wait)) if wait > 2 * S)
        );
    }
}
