//! When a tag is imported: on a spec change, on request, when never imported, on its schedule, and after a
//! failure with back-off. Pure functions of the tag and of what this controller remembers of its last check.
//!
//! Scheduled imports are spread over the interval: each tag has a fixed phase (a hash of its uid), and is due
//! once per interval at that phase, so ten thousand tags with the same interval do not fire together, and a
//! restarted controller does not import everything at once: it waits for each tag's next slot.
//!
//! # Retries, and what OpenShift does
//! OpenShift's image stream controller (openshift-controller-manager, `pkg/image/controller/
//! imagestream_controller.go`) imports a tag once per tag generation: a failed import, whatever the cause
//! (a missing tag, a refused pull, a 5xx alike), is written as `ImportSuccess=False` with that generation, and
//! then `tagNeedsImport` is false: nothing retries it until the spec changes. Only tags with
//! `importPolicy.scheduled` are imported again, by the scheduled import controller
//! (`scheduled_image_controller.go`, `scheduler.go`), every `ScheduledImageImportMinimumIntervalSeconds`
//! (900 s by default) under one token bucket of `MaxScheduledImageImportsPerMinute` (60 by default) for the
//! whole cluster. Only a failure of the `ImageStreamImport` API call itself goes back through client-go's
//! rate-limited work queue.
//!
//! Berth retries, so that an image pushed later or a pull secret fixed later is seen without a spec change
//! (a push notification imports at once anyway), but by class ([`Failure`]):
//! - transient failures (`RateLimited`, `RegistryUnavailable`: 429, 5xx, timeouts, unreachable) retry after
//!   [`Pacing::retry`] (10 s) doubling up to the interval, or the registry's `Retry-After` if longer;
//! - lasting ones (`NotFound`, `Unauthorized`, `Forbidden`, and every other answer that a retry alone does
//!   not change) retry after [`Pacing::retry_lasting`] (1 min) quadrupling up to the interval: 1, 4, then
//!   every 15 min, OpenShift's scheduled pace, from the third failure on. Two thousand missing tags then cost
//!   about 3 requests each in their first 15 minutes instead of 7.
//!
//! Whatever the class, a retry waits in its registry's queue behind first imports, spec changes, pushes,
//! requested imports and scheduled re-imports ([`priority`]).

use std::time::Duration;

use berth_api::image::{IMPORT_REQUESTED_ANNOTATION, IMPORT_SUCCESS, ImageStreamTag};
use sha2::{Digest, Sha256};

use crate::registry::Priority;

/// The reason of a retry after a failed import.
pub const RETRY: &str = "retry after failure";
/// The reason of a scheduled re-import.
pub const SCHEDULED: &str = "scheduled";

/// How eagerly a failed import is retried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Failure {
    /// The registry was overloaded or unreachable: it may answer in seconds.
    #[default]
    Transient,
    /// The registry answered, and a retry alone will not change the answer soon.
    Lasting,
}

impl Failure {
    /// The class of an import that failed with the condition reason `reason`.
    pub fn of(reason: &str) -> Self {
        match reason {
            "RateLimited" | "RegistryUnavailable" => Self::Transient,
            _ => Self::Lasting,
        }
    }
}

/// Where an import with this reason (from [`reason_to_import`], or `registry push`) stands in its registry's
/// queue: retries last, scheduled re-imports before them, everything someone waits for first.
pub fn priority(reason: &str) -> Priority {
    match reason {
        RETRY => Priority::Retry,
        SCHEDULED => Priority::Scheduled,
        _ => Priority::Prompt,
    }
}

/// What this controller remembers of a tag's last check (in memory only: after a restart every tag waits for
/// its next slot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastCheck {
    /// Seconds since the epoch of the last import attempt.
    pub at: i64,
    /// Failures in a row.
    pub failures: u32,
    /// What the registry asked for with `Retry-After` on the last failure.
    pub retry_after: Option<Duration>,
    /// The class of the last failure (when `failures > 0`).
    pub failure: Failure,
}

/// How imports are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// The interval of scheduled imports.
    pub interval: Duration,
    /// The first retry after a transient failure; it doubles up to `interval`.
    pub retry: Duration,
    /// The first retry after a lasting failure (`NotFound`, `Unauthorized`, ...); it quadruples up to
    /// `interval`.
    pub retry_lasting: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15 * 60),
            retry: Duration::from_secs(10),
            retry_lasting: Duration::from_secs(60),
        }
    }
}

/// Whether to import now, and when to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Import now.
    pub import_now: bool,
    /// Look at the tag again after this long, if nothing else makes it change first.
    pub recheck_in: Option<Duration>,
}

/// Why a tag is imported now, if it is.
pub fn reason_to_import(
    tag: &ImageStreamTag,
    last: Option<LastCheck>,
    pacing: Pacing,
    now: i64,
) -> Option<&'static str> {
    let status = tag.status.as_ref();
    let imported = status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == IMPORT_SUCCESS));
    if !imported {
        return Some("never imported");
    }
    if status.and_then(|s| s.observed_generation) != tag.metadata.generation {
        return Some("spec changed");
    }
    let requested = tag
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(IMPORT_REQUESTED_ANNOTATION));
    if requested.is_some_and(|r| status.and_then(|s| s.observed_import_request.as_ref()) != Some(r)) {
        return Some("import requested");
    }
    let last = last?;
    if last.failures > 0 && now >= last.at + secs(retry_delay(last, pacing)) {
        return Some(RETRY);
    }
    if scheduled(tag) && slot(tag, pacing, now) > slot(tag, pacing, last.at) {
        return Some(SCHEDULED);
    }
    None
}

/// The plan for a tag that was just checked (or not: `last` is what is remembered now).
pub fn plan(tag: &ImageStreamTag, last: Option<LastCheck>, pacing: Pacing, now: i64) -> Plan {
    if reason_to_import(tag, last, pacing, now).is_some() {
        return Plan {
            import_now: true,
            recheck_in: None,
        };
    }
    let retry = last.filter(|l| l.failures > 0).map(|l| {
        let due = l.at + secs(retry_delay(l, pacing));
        Duration::from_secs(u64::try_from(due - now).unwrap_or(0).max(1))
    });
    let next_slot = scheduled(tag).then(|| until_next_slot(tag, pacing, now));
    let recheck_in = match (retry, next_slot) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Plan {
        import_now: false,
        recheck_in,
    }
}

/// The delay before retrying a failed import: the registry's `Retry-After` if longer, else, after a transient
/// failure, `retry` doubling with each failure, after a lasting one `retry_lasting` quadrupling; at most the
/// interval.
pub fn retry_delay(last: LastCheck, pacing: Pacing) -> Duration {
    let (first, factor_log2) = match last.failure {
        Failure::Transient => (pacing.retry, 1),
        Failure::Lasting => (pacing.retry_lasting, 2),
    };
    // 2^20 times any first delay is past any interval: a longer streak does not overflow.
    let steps = last
        .failures
        .saturating_sub(1)
        .saturating_mul(factor_log2)
        .min(20);
    let backoff = first.saturating_mul(1 << steps).min(pacing.interval);
    last.retry_after.map_or(backoff, |r| r.max(backoff))
}

fn scheduled(tag: &ImageStreamTag) -> bool {
    tag.spec.import_policy.as_ref().is_some_and(|p| p.scheduled)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The tag's fixed offset within the interval, from its uid (or name when it has none yet).
fn phase(tag: &ImageStreamTag, pacing: Pacing) -> i64 {
    let key = tag
        .metadata
        .uid
        .as_deref()
        .or(tag.metadata.name.as_deref())
        .unwrap_or_default();
    let hash = Sha256::digest(key.as_bytes());
    let n = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
    i64::try_from(n % pacing.interval.as_secs().max(1)).expect("below the interval")
}

/// The number of the tag's slot that contains `t`.
fn slot(tag: &ImageStreamTag, pacing: Pacing, t: i64) -> i64 {
    (t - phase(tag, pacing)).div_euclid(secs(pacing.interval).max(1))
}

fn until_next_slot(tag: &ImageStreamTag, pacing: Pacing, now: i64) -> Duration {
    let interval = secs(pacing.interval).max(1);
    let into = (now - phase(tag, pacing)).rem_euclid(interval);
    Duration::from_secs(u64::try_from(interval - into).expect("positive"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures::{NS, TagFixture, digest, istag};
    use kube::ResourceExt;

    /// An imported tag with `uid` (its phase), scheduled or not.
    fn tag(uid: &str, scheduled: bool) -> ImageStreamTag {
        istag(NS, "demo", "v1")
            .stored(uid, 1)
            .import_policy(false, scheduled)
            .imported(&digest('1'))
    }

    /// What is remembered of a successful check at `at`.
    fn checked(at: i64) -> Option<LastCheck> {
        Some(LastCheck {
            at,
            ..Default::default()
        })
    }

    const PACING: Pacing = Pacing {
        interval: Duration::from_secs(900),
        retry: Duration::from_secs(10),
        retry_lasting: Duration::from_secs(60),
    };

    #[test]
    fn new_changed_and_requested_tags_import_now() {
        let mut t = tag("a", false);
        t.status = None;
        assert_eq!(reason_to_import(&t, None, PACING, 0), Some("never imported"));
        let mut t = tag("a", false);
        t.metadata.generation = Some(2);
        assert_eq!(reason_to_import(&t, None, PACING, 0), Some("spec changed"));
        let mut t = tag("a", false);
        t.annotations_mut()
            .insert(IMPORT_REQUESTED_ANNOTATION.into(), "x".into());
        assert_eq!(reason_to_import(&t, None, PACING, 0), Some("import requested"));
        t.status.as_mut().unwrap().observed_import_request = Some("x".into());
        assert_eq!(reason_to_import(&t, None, PACING, 0), None);
    }

    #[test]
    fn an_unscheduled_imported_tag_waits_for_a_change() {
        let t = tag("a", false);
        let p = plan(&t, checked(0), PACING, 100_000);
        assert_eq!(
            p,
            Plan {
                import_now: false,
                recheck_in: None
            }
        );
    }

    #[test]
    fn a_scheduled_tag_is_due_once_per_interval_at_its_phase() {
        let t = tag("a", true);
        let now = 1_800_000_000;
        let wait = plan(&t, checked(now), PACING, now).recheck_in.unwrap();
        assert!(wait <= PACING.interval && wait > Duration::ZERO);
        let at_slot = now + secs(wait);
        let last = checked(now);
        assert_eq!(reason_to_import(&t, last, PACING, at_slot - 1), None);
        assert_eq!(reason_to_import(&t, last, PACING, at_slot), Some("scheduled"));
        // After a restart nothing is remembered: the tag waits for its slot instead of importing at once.
        assert_eq!(reason_to_import(&t, None, PACING, now), None);
    }

    #[test]
    fn ten_thousand_tags_spread_over_the_interval() {
        let now = 1_800_000_000;
        let mut per_minute = [0u32; 15];
        for i in 0..10_000 {
            let t = tag(&format!("uid-{i}"), true);
            let wait = plan(&t, checked(now), PACING, now).recheck_in.unwrap();
            per_minute[usize::try_from(wait.as_secs().saturating_sub(1) / 60).unwrap()] += 1;
        }
        // Evenly spread is 667 a minute; no minute gets more than 1.3 times that.
        assert!(per_minute.iter().all(|&n| n > 500 && n < 870), "{per_minute:?}");
    }

    #[test]
    fn failures_back_off_doubling_and_honour_retry_after() {
        let l = |failures, retry_after| LastCheck {
            at: 0,
            failures,
            retry_after,
            failure: Failure::Transient,
        };
        assert_eq!(retry_delay(l(1, None), PACING), Duration::from_secs(10));
        assert_eq!(retry_delay(l(3, None), PACING), Duration::from_secs(40));
        assert_eq!(retry_delay(l(30, None), PACING), PACING.interval);
        assert_eq!(
            retry_delay(l(1, Some(Duration::from_secs(120))), PACING),
            Duration::from_secs(120)
        );
        let t = tag("a", false);
        assert_eq!(
            plan(&t, Some(l(2, None)), PACING, 5).recheck_in,
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            reason_to_import(&t, Some(l(2, None)), PACING, 20),
            Some("retry after failure")
        );
    }

    #[test]
    fn lasting_failures_are_retried_far_less_eagerly_than_transient_ones() {
        let after = |reason: &str, failures| {
            retry_delay(
                LastCheck {
                    at: 0,
                    failures,
                    retry_after: None,
                    failure: Failure::of(reason),
                },
                PACING,
            )
            .as_secs()
        };
        let series = |reason| (1..=6).map(|n| after(reason, n)).collect::<Vec<_>>();
        assert_eq!(series("RegistryUnavailable"), [10, 20, 40, 80, 160, 320]);
        assert_eq!(series("RateLimited"), [10, 20, 40, 80, 160, 320]);
        for lasting in ["NotFound", "Unauthorized", "Forbidden", "DigestMismatch"] {
            assert_eq!(series(lasting), [60, 240, 900, 900, 900, 900], "{lasting}");
        }
        assert_eq!(after("NotFound", u32::MAX), 900);
        // Attempts in the first 12 minutes of a tag that keeps failing, the first import included.
        let attempts = |reason| {
            let (mut at, mut n) = (0, 0);
            while at <= 720 {
                n += 1;
                at += after(reason, n);
            }
            n
        };
        assert_eq!((attempts("RegistryUnavailable"), attempts("NotFound")), (7, 3));
    }

    #[test]
    fn retries_go_last_and_scheduled_imports_before_them() {
        assert_eq!(priority(RETRY), Priority::Retry);
        assert_eq!(priority(SCHEDULED), Priority::Scheduled);
        for prompt in [
            "never imported",
            "spec changed",
            "import requested",
            "registry push",
        ] {
            assert_eq!(priority(prompt), Priority::Prompt, "{prompt}");
        }
        let l = LastCheck {
            at: 0,
            failures: 1,
            retry_after: None,
            failure: Failure::Lasting,
        };
        let t = tag("a", true);
        assert_eq!(reason_to_import(&t, Some(l), PACING, 59), None);
        assert_eq!(reason_to_import(&t, Some(l), PACING, 60), Some(RETRY));
    }
}
