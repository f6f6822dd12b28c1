//! When to try a failed delivery again, and when to stop and ask a human.
//!
//! Pure: the caller passes the number of failed attempts and `now`; nothing here reads
//! a clock or draws random numbers, so the schedule is the same in every process and
//! in tests. The backoff doubles from `initial_delay` up to `max_delay`; after
//! `max_attempts` failures the delivery is reported as needing attention and is no
//! longer retried automatically (`tally deliveries retry` makes it due again). Rejections ([`super::Rejection`]) need attention at once: no
//! retry can fix them.
//!
//! There is no jitter: deliveries are already spread by the sync batch size and the
//! parallelism bound, and a deterministic schedule is easier to reason about in an
//! audit. The store's lease (`sync_buffer_period`) still applies: a retry is never
//! picked up before the account's lease expires.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::DeliveryError;

/// The backoff schedule of failed deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    initial_delay: Duration,
    max_delay: Duration,
    max_attempts: u32,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try the same delivery (same idempotency key) again at this time.
    RetryAt(DateTime<Utc>),
    /// Stop retrying automatically and report the delivery as failed, needing
    /// attention. The account stays dirty.
    NeedsAttention,
}

/// A policy that would never retry sensibly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRetryPolicy {
    #[error("retry policy: initial_delay must be greater than zero")]
    ZeroInitialDelay,
    #[error("retry policy: max_delay ({max_delay:?}) must not be smaller than initial_delay ({initial_delay:?})")]
    CapBelowInitialDelay {
        initial_delay: Duration,
        max_delay: Duration,
    },
    #[error("retry policy: max_attempts must be at least 1")]
    ZeroAttempts,
}

impl Default for RetryPolicy {
    /// 10 minutes (the default `sync_buffer_period`, below which the lease would
    /// delay the retry anyway), doubling to at most 6 hours, reported after 10 failed
    /// attempts: 10, 20, 40, 80, 160, 320, 360, 360, 360 minutes, i.e. about 28 hours
    /// of trying before someone is asked to look.
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_secs(600),
            max_delay: Duration::from_secs(6 * 3600),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    pub fn new(
        initial_delay: Duration,
        max_delay: Duration,
        max_attempts: u32,
    ) -> Result<RetryPolicy, InvalidRetryPolicy> {
        if initial_delay.is_zero() {
            return Err(InvalidRetryPolicy::ZeroInitialDelay);
        }
        if max_delay < initial_delay {
            return Err(InvalidRetryPolicy::CapBelowInitialDelay {
                initial_delay,
                max_delay,
            });
        }
        if max_attempts == 0 {
            return Err(InvalidRetryPolicy::ZeroAttempts);
        }
        Ok(RetryPolicy {
            initial_delay,
            max_delay,
            max_attempts,
        })
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait after the `failed_attempts`-th failure: `initial × 2^(n−1)`, capped.
    /// `failed_attempts` 0 is read as 1 (the attempt that just failed).
    pub fn delay_after(&self, failed_attempts: u32) -> Duration {
        let doublings = failed_attempts.max(1) - 1;
        let factor = 2u32.checked_pow(doublings);
        match factor.and_then(|factor| self.initial_delay.checked_mul(factor)) {
            Some(delay) => delay.min(self.max_delay),
            None => self.max_delay,
        }
    }

    /// When to try again after `failed_attempts` failures (counting the one that just
    /// happened), or that it is time to report it.
    pub fn next_attempt_at(&self, failed_attempts: u32, now: DateTime<Utc>) -> RetryDecision {
        if failed_attempts >= self.max_attempts {
            return RetryDecision::NeedsAttention;
        }
        let delay = TimeDelta::from_std(self.delay_after(failed_attempts)).unwrap_or(TimeDelta::MAX);
        RetryDecision::RetryAt(now.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC))
    }

    /// [`Self::next_attempt_at`] for a given failure: rejections are reported at once.
    pub fn after_failure(&self, error: &DeliveryError, failed_attempts: u32, now: DateTime<Utc>) -> RetryDecision {
        match error {
            DeliveryError::Retryable(_) => self.next_attempt_at(failed_attempts, now),
            DeliveryError::Rejected(_) => RetryDecision::NeedsAttention,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bookkeepers::{Rejection, RetryableError};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .expect("valid timestamp")
            .with_timezone(&Utc)
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    fn check(policy: &RetryPolicy, failed_attempts: u32, expected: Option<&str>) {
        let expected = match expected {
            Some(at) => RetryDecision::RetryAt(
                DateTime::parse_from_rfc3339(at)
                    .expect("valid timestamp")
                    .with_timezone(&Utc),
            ),
            None => RetryDecision::NeedsAttention,
        };
        assert_eq!(
            policy.next_attempt_at(failed_attempts, now()),
            expected,
            "after {failed_attempts} failed attempts"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_asks_for_attention() {
        let policy = RetryPolicy::new(secs(60), secs(600), 7).expect("valid policy");
        check(&policy, 0, Some("2026-11-23T12:01:00Z"));
        check(&policy, 1, Some("2026-11-23T12:01:00Z"));
        check(&policy, 2, Some("2026-11-23T12:02:00Z"));
        check(&policy, 3, Some("2026-11-23T12:04:00Z"));
        check(&policy, 4, Some("2026-11-23T12:08:00Z"));
        check(&policy, 5, Some("2026-11-23T12:10:00Z"));
        check(&policy, 6, Some("2026-11-23T12:10:00Z"));
        check(&policy, 7, None);
        check(&policy, 8, None);
        check(&policy, u32::MAX, None);
    }

    #[test]
    fn the_default_policy_reports_after_ten_failures_and_waits_at_most_six_hours() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..=9)
            .map(|attempt| policy.delay_after(attempt).as_secs() / 60)
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 360, 360, 360]);
        check(&policy, 9, Some("2026-11-23T18:00:00Z"));
        check(&policy, 10, None);
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap_instead_of_overflowing() {
        let policy = RetryPolicy::new(secs(1), secs(3600), u32::MAX).expect("valid policy");
        for attempt in [31, 32, 33, 64, 1000, u32::MAX - 1] {
            assert_eq!(policy.delay_after(attempt), secs(3600), "attempt {attempt}");
        }
        let huge = RetryPolicy::new(secs(1), Duration::MAX, u32::MAX).expect("valid policy");
        assert_eq!(
            huge.next_attempt_at(u32::MAX - 1, now()),
            RetryDecision::RetryAt(DateTime::<Utc>::MAX_UTC)
        );
    }

    #[test]
    fn a_single_attempt_policy_never_retries() {
        let policy = RetryPolicy::new(secs(1), secs(1), 1).expect("valid policy");
        check(&policy, 1, None);
    }

    #[test]
    fn rejections_need_attention_at_once_and_retryable_errors_back_off() {
        let policy = RetryPolicy::default();
        let rejected = DeliveryError::from(Rejection::InvalidRequest { reason: "bad".into() });
        let retryable = DeliveryError::from(RetryableError::UnexpectedStatus {
            url: "http://x".into(),
            status: 500,
        });
        assert_eq!(policy.after_failure(&rejected, 1, now()), RetryDecision::NeedsAttention);
        assert_eq!(
            policy.after_failure(&retryable, 1, now()),
            policy.next_attempt_at(1, now())
        );
    }

    #[test]
    fn nonsensical_policies_are_refused() {
        assert_eq!(
            RetryPolicy::new(Duration::ZERO, secs(1), 1),
            Err(InvalidRetryPolicy::ZeroInitialDelay)
        );
        assert!(matches!(
            RetryPolicy::new(secs(2), secs(1), 1),
            Err(InvalidRetryPolicy::CapBelowInitialDelay { .. })
        ));
        assert_eq!(
            RetryPolicy::new(secs(1), secs(1), 0),
            Err(InvalidRetryPolicy::ZeroAttempts)
        );
    }
}
