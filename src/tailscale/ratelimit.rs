//! An async token bucket. One client talks to one tailnet, so one bucket per client is a
//! per-tailnet limit shared by every reconciler using that client.
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::config::RateLimit;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// `None` when limiting is disabled.
    rate: Option<f64>,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens available at `updated`. Negative: that many requests already hold reservations.
    tokens: f64,
    /// Time of the last refill. May lie in the future while the client is paused.
    updated: Instant,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let rate =
            (limit.per_second.is_finite() && limit.per_second > 0.0).then_some(limit.per_second);
        let burst = f64::from(limit.burst.max(1));
        RateLimiter {
            rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            }),
        }
    }

    /// Waits until the caller may send one request.
    pub(crate) async fn acquire(&self) {
        if let Some(ready_at) = self.reserve(Instant::now()) {
            tokio::time::sleep_until(ready_at).await;
        }
    }

    /// Takes a token (possibly one that will only exist later) and says when it is usable.
    /// Reserving under the lock and sleeping outside it keeps callers in arrival order
    /// without holding the lock across an await.
    fn reserve(&self, now: Instant) -> Option<Instant> {
        let rate = self.rate?;
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now > bucket.updated {
            let refill = (now - bucket.updated).as_secs_f64() * rate;
            bucket.tokens = (bucket.tokens + refill).min(self.burst);
            bucket.updated = now;
        }
        bucket.tokens -= 1.0;
        let start = bucket.updated.max(now);
        if bucket.tokens >= 0.0 {
            return (start > now).then_some(start);
        }
        Some(start + Duration::from_secs_f64(-bucket.tokens / rate))
    }

    /// The server answered 429: stop handing out tokens for `delay`, then restart with a
    /// single token so the tailnet is not hit by a full burst the moment the pause ends.
    /// Requests that already hold a reservation keep it.
    pub(crate) fn pause_for(&self, delay: Duration) {
        if self.rate.is_none() {
            return;
        }
        let resume_at = Instant::now() + delay;
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if resume_at > bucket.updated {
            bucket.updated = resume_at;
            bucket.tokens = bucket.tokens.min(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn limiter(per_second: f64, burst: u32) -> Arc<RateLimiter> {
        Arc::new(RateLimiter::new(RateLimit { per_second, burst }))
    }

    /// Times at which `n` immediately issued acquisitions complete, relative to the start.
    async fn completion_times(limiter: &Arc<RateLimiter>, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let limiter = Arc::clone(limiter);
                tokio::spawn(async move {
                    limiter.acquire().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();
        times
    }

    #[tokio::test(start_paused = true)]
    async fn burst_passes_at_once_then_requests_are_paced() {
        let limiter = limiter(10.0, 5);
        let times = completion_times(&limiter, 8).await;
        assert!(times[..5].iter().all(|t| *t == Duration::ZERO), "{times:?}");
        let ms: Vec<_> = times[5..].iter().map(|t| t.as_millis()).collect();
        assert_eq!(ms, [100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_up_to_the_burst_only() {
        let limiter = limiter(10.0, 3);
        completion_times(&limiter, 3).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let times = completion_times(&limiter, 5).await;
        let ms: Vec<_> = times.iter().map(|t| t.as_millis()).collect();
        assert_eq!(ms, [0, 0, 0, 100, 200]);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_new_requests_and_resumes_with_one_token() {
        let limiter = limiter(10.0, 20);
        limiter.pause_for(Duration::from_secs(2));
        let times = completion_times(&limiter, 3).await;
        let ms: Vec<_> = times.iter().map(|t| t.as_millis()).collect();
        assert_eq!(ms, [2000, 2100, 2200]);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_limit_never_waits() {
        for limit in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let limiter = limiter(limit, 1);
            limiter.pause_for(Duration::from_secs(5));
            let times = completion_times(&limiter, 50).await;
            assert!(times.iter().all(|t| *t == Duration::ZERO), "{limit}");
        }
    }
}
