//! When to retry and how long to wait: exponential backoff with full jitter, overridden by
//! the server's `Retry-After` when it sends one.
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::config::RetryPolicy;

/// What the retry loop should do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Give up and return the error.
    GiveUp,
}

/// Decides about the next attempt after `failed_attempts` attempts (1 after the first) failed
/// with a retryable error. `jitter` is a uniform random number in `[0, 1)`.
pub(crate) fn decide(
    policy: &RetryPolicy,
    failed_attempts: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> RetryDecision {
    if failed_attempts >= policy.max_attempts.max(1) {
        return RetryDecision::GiveUp;
    }
    match retry_after {
        // The server said when: waiting less would only earn another 429, and waiting longer
        // than max_delay would stall the caller, which can requeue on `retry_after` instead.
        Some(after) if after > policy.max_delay => RetryDecision::GiveUp,
        Some(after) => RetryDecision::RetryAfter(after_with_spread(policy, after, jitter)),
        None => RetryDecision::RetryAfter(backoff_delay(policy, failed_attempts, jitter)),
    }
}

/// Full jitter: a uniform delay in `[0, min(max_delay, base_delay * 2^(failed_attempts-1)))`.
/// Full rather than partial jitter because many reconcilers share one tailnet limit, and
/// spreading their retries matters more than any single retry being prompt.
pub(crate) fn backoff_delay(policy: &RetryPolicy, failed_attempts: u32, jitter: f64) -> Duration {
    backoff_ceiling(policy, failed_attempts).mul_f64(jitter.clamp(0.0, 1.0))
}

/// The upper bound of the jittered delay after `failed_attempts` failures.
pub(crate) fn backoff_ceiling(policy: &RetryPolicy, failed_attempts: u32) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(31);
    policy
        .base_delay
        .checked_mul(1u32 << doublings)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

/// `Retry-After` is a lower bound; a little spread on top keeps callers that were told the
/// same instant from all returning together. Never beyond `max_delay`, never below `after`.
fn after_with_spread(policy: &RetryPolicy, after: Duration, jitter: f64) -> Duration {
    let spread = policy.base_delay.mul_f64(jitter.clamp(0.0, 1.0));
    (after + spread).min(policy.max_delay).max(after)
}

/// Parses a `Retry-After` header: delta seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`). Dates in the past mean "now".
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate, the form HTTP servers send, is valid RFC 2822.
    let date = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }

    #[test]
    fn ceiling_doubles_from_the_base_and_is_capped() {
        let p = policy();
        let ceilings: Vec<_> = (1..=8)
            .map(|n| backoff_ceiling(&p, n).as_millis())
            .collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        // Absurd attempt counts neither overflow nor exceed the cap.
        assert_eq!(backoff_ceiling(&p, u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let p = policy();
        assert_eq!(backoff_delay(&p, 3, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(&p, 3, 0.5), Duration::from_secs(1));
        assert!(backoff_delay(&p, 3, 0.999_999) < Duration::from_secs(2));
        for _ in 0..1000 {
            let delay = backoff_delay(&p, 4, fastrand::f64());
            assert!(delay < Duration::from_secs(4), "{delay:?}");
        }
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = policy();
        assert!(matches!(
            decide(&p, 4, None, 0.5),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(decide(&p, 5, None, 0.5), RetryDecision::GiveUp);
        let once = RetryPolicy {
            max_attempts: 0,
            ..p
        };
        assert_eq!(decide(&once, 1, None, 0.5), RetryDecision::GiveUp);
    }

    #[test]
    fn retry_after_is_a_lower_bound_within_max_delay() {
        let p = policy();
        let after = Duration::from_secs(3);
        for jitter in [0.0, 0.5, 0.999] {
            let RetryDecision::RetryAfter(wait) = decide(&p, 1, Some(after), jitter) else {
                panic!("should retry");
            };
            assert!(wait >= after && wait <= after + p.base_delay, "{wait:?}");
        }
        // Right at the cap, the spread is cut off rather than exceeding max_delay.
        assert_eq!(
            decide(&p, 1, Some(p.max_delay), 0.9),
            RetryDecision::RetryAfter(p.max_delay)
        );
    }

    #[test]
    fn retry_after_beyond_max_delay_is_left_to_the_caller() {
        assert_eq!(
            decide(&policy(), 1, Some(Duration::from_secs(31)), 0.5),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn parses_retry_after_seconds() {
        let now = Utc::now();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn parses_retry_after_http_dates() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        // A date already past means retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }
}
