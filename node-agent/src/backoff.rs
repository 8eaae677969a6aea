//! Restart and pull back-off: 10 s doubling to 300 s, as the kubelet.

use std::time::Duration;

/// The first back-off delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The largest back-off delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran at least this long restarts with the initial delay again.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// The delay before retry number `failures` (1 for the first failure): 10 s, 20 s, 40 s, ...
/// capped at 300 s.
pub fn delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    INITIAL.saturating_mul(1u32 << exp).min(MAX)
}

/// The delay before restarting a container that exited after running `ran` as its
/// `attempt`-th start (attempt 0 is the first): a long run resets the back-off.
pub fn restart_delay(attempt: u32, ran: Duration) -> Duration {
    if ran >= RESET_AFTER {
        INITIAL
    } else {
        delay(attempt + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_ten_seconds_to_five_minutes() {
        let secs: Vec<u64> = (1..=7).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(delay(0), INITIAL);
        assert_eq!(delay(u32::MAX), MAX);
    }

    #[test]
    fn restart_delay_grows_and_resets() {
        assert_eq!(restart_delay(0, Duration::from_secs(1)), Duration::from_secs(10));
        assert_eq!(restart_delay(2, Duration::from_secs(1)), Duration::from_secs(40));
        assert_eq!(restart_delay(9, Duration::from_secs(3600)), INITIAL);
    }
}
