//! Token-bucket rate limiting, as both gateways do it (veloz-api.md §3).
//!
//! Design decisions:
//! - One bucket per key (`ip:<addr>`, `key:<id>` or a user id — the caller builds the key, so
//!   the profile decides). A new bucket starts full. Each request costs one token; tokens refill
//!   continuously at `refill_per_s` up to `capacity`.
//! - Time is passed in (`Instant` for the bucket arithmetic, Unix seconds for the reset
//!   header), so tests drive the clock and nothing here reads it.
//! - Idle buckets are dropped after `idle_ttl` (python: 600 s, C++: 30 min). The sweep runs
//!   inside `check` at most once per `min(idle_ttl, 60 s)`, so the map stays bounded without a
//!   background task. A bucket dropped for idleness would have been full anyway once
//!   `idle_ttl >= capacity / refill`, so dropping it does not change any answer.
//! - A `refill_per_s` that is zero, negative or not finite means "never refills": a drained
//!   bucket then comes back only when it is dropped for idleness, so `retry_after_s` is the
//!   idle TTL. A capacity of 0 is raised to 1 (a limiter that refuses everything is a fault to
//!   inject elsewhere, not a rate limit).
//! - The two `Retry-After` spellings are separate functions: python sends integer seconds,
//!   the C++ `rate_limiter.h` an ISO 8601 duration (`PT5.2S`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateDecision {
    /// Whether the request may proceed (it took a token).
    pub allowed: bool,
    /// The bucket capacity (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Whole tokens left after this request (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Unix seconds when the bucket will be full again, rounded up (`X-RateLimit-Reset`).
    pub reset_epoch_s: u64,
    /// Seconds until one token is available; 0 when allowed.
    pub retry_after_s: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<String, Bucket>,
    last_sweep: Option<Instant>,
}

/// A keyed token-bucket limiter, safe to share between connections.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: u32,
    refill_per_s: f64,
    idle_ttl: Duration,
    state: Mutex<State>,
}

impl RateLimiter {
    /// `capacity` tokens per bucket, refilled at `refill_per_s`; buckets idle for `idle_ttl`
    /// are forgotten.
    pub fn new(capacity: u32, refill_per_s: f64, idle_ttl: Duration) -> Self {
        let refill_per_s = if refill_per_s.is_finite() && refill_per_s > 0.0 {
            refill_per_s
        } else {
            0.0
        };
        RateLimiter {
            capacity: capacity.max(1),
            refill_per_s,
            idle_ttl,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Takes a token from `key`'s bucket if there is one.
    pub fn check(&self, key: &str, now: Instant, now_unix_s: f64) -> RateDecision {
        let capacity = f64::from(self.capacity);
        // A poisoned lock only means another thread panicked mid-check; the map is still a map.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.sweep(&mut state, now);

        // Work on a copy so the key is only allocated when a bucket is created.
        let mut bucket = state.buckets.get(key).copied().unwrap_or(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.refill_per_s).min(capacity);
        bucket.last = bucket.last.max(now);
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let tokens = bucket.tokens;
        match state.buckets.get_mut(key) {
            Some(slot) => *slot = bucket,
            None => {
                state.buckets.insert(key.to_owned(), bucket);
            }
        }
        drop(state);

        let retry_after_s = if allowed {
            0.0
        } else {
            self.seconds_to_gain(1.0 - tokens)
        };
        let to_full = self.seconds_to_gain(capacity - tokens);
        RateDecision {
            allowed,
            limit: self.capacity,
            remaining: tokens.max(0.0).floor() as u32,
            reset_epoch_s: (now_unix_s + to_full).max(0.0).ceil() as u64,
            retry_after_s,
        }
    }

    /// Seconds for a bucket to gain `tokens`.
    fn seconds_to_gain(&self, tokens: f64) -> f64 {
        if tokens <= 0.0 {
            0.0
        } else if self.refill_per_s > 0.0 {
            tokens / self.refill_per_s
        } else {
            self.idle_ttl.as_secs_f64()
        }
    }

    fn sweep(&self, state: &mut State, now: Instant) {
        let every = self.idle_ttl.min(Duration::from_secs(60));
        match state.last_sweep {
            Some(t) if now.saturating_duration_since(t) < every => return,
            None => {
                state.last_sweep = Some(now);
                return;
            }
            Some(_) => {}
        }
        state.last_sweep = Some(now);
        let ttl = self.idle_ttl;
        state
            .buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < ttl);
    }

    /// Number of live buckets (for tests and metrics).
    pub fn bucket_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

/// The python gateway's `Retry-After`: whole seconds, rounded up, at least 1.
pub fn retry_after_python(d: &RateDecision) -> String {
    let secs = d.retry_after_s.ceil().max(1.0);
    format!("{}", secs as u64)
}

/// The C++ gateway's `Retry-After`: an ISO 8601 duration in seconds with one decimal, rounded
/// up to the next tenth so that a client waiting exactly that long finds a token (`PT5.2S`).
pub fn retry_after_iso8601(d: &RateDecision) -> String {
    let tenths = (d.retry_after_s.max(0.0) * 10.0).ceil() as u64;
    format!("PT{}.{}S", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: f64 = 1_700_000_000.0;

    fn at(t0: Instant, secs: f64) -> Instant {
        t0 + Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_new_bucket_is_full_and_drains_one_token_per_request() {
        let rl = RateLimiter::new(3, 1.0, Duration::from_secs(600));
        let t0 = Instant::now();
        let rem: Vec<u32> = (0..3)
            .map(|_| rl.check("ip:a", t0, EPOCH).remaining)
            .collect();
        assert_eq!(rem, [2, 1, 0]);
        let denied = rl.check("ip:a", t0, EPOCH);
        assert!(!denied.allowed);
        assert_eq!(denied.limit, 3);
        assert_eq!(denied.remaining, 0);
        assert!((denied.retry_after_s - 1.0).abs() < 1e-9);
        assert_eq!(denied.reset_epoch_s, EPOCH as u64 + 3);
        // Another key has its own bucket.
        assert!(rl.check("ip:b", t0, EPOCH).allowed);
    }

    #[test]
    fn tokens_refill_continuously_up_to_capacity() {
        let rl = RateLimiter::new(2, 10.0, Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(rl.check("k", t0, EPOCH).allowed);
        assert!(rl.check("k", t0, EPOCH).allowed);
        let d = rl.check("k", at(t0, 0.05), EPOCH);
        assert!(!d.allowed, "half a token is not a token");
        assert!((d.retry_after_s - 0.05).abs() < 1e-6);
        assert!(rl.check("k", at(t0, 0.1), EPOCH).allowed);
        // A long pause refills to capacity, never beyond.
        let d = rl.check("k", at(t0, 100.0), EPOCH + 100.0);
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(d.retry_after_s, 0.0);
    }

    #[test]
    fn idle_buckets_are_dropped_after_the_ttl() {
        let rl = RateLimiter::new(5, 1.0, Duration::from_secs(600));
        let t0 = Instant::now();
        for i in 0..10 {
            rl.check(&format!("ip:{i}"), t0, EPOCH);
        }
        assert_eq!(rl.bucket_count(), 10);
        rl.check("ip:fresh", at(t0, 599.0), EPOCH);
        assert_eq!(rl.bucket_count(), 11, "nothing idle for 600 s yet");
        rl.check("ip:fresh", at(t0, 700.0), EPOCH);
        assert_eq!(
            rl.bucket_count(),
            1,
            "only the recently used bucket survives"
        );
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_mint_tokens() {
        let rl = RateLimiter::new(1, 1.0, Duration::from_secs(600));
        let t0 = Instant::now() + Duration::from_secs(10);
        assert!(rl.check("k", t0, EPOCH).allowed);
        assert!(!rl.check("k", t0 - Duration::from_secs(5), EPOCH).allowed);
        assert!(
            !rl.check("k", t0 + Duration::from_millis(500), EPOCH)
                .allowed
        );
    }

    #[test]
    fn zero_refill_waits_for_the_idle_ttl_and_zero_capacity_is_one() {
        let rl = RateLimiter::new(0, 0.0, Duration::from_secs(30));
        let t0 = Instant::now();
        let first = rl.check("k", t0, EPOCH);
        assert!(first.allowed);
        assert_eq!(first.limit, 1);
        let d = rl.check("k", at(t0, 1.0), EPOCH);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_s, 30.0);
        let nan = RateLimiter::new(1, f64::NAN, Duration::from_secs(30));
        nan.check("k", t0, EPOCH);
        assert_eq!(nan.check("k", t0, EPOCH).retry_after_s, 30.0);
    }

    #[test]
    fn retry_after_formats() {
        let mut d = RateDecision {
            allowed: false,
            limit: 100,
            remaining: 0,
            reset_epoch_s: 0,
            retry_after_s: 5.13,
        };
        assert_eq!(retry_after_python(&d), "6");
        assert_eq!(retry_after_iso8601(&d), "PT5.2S");
        d.retry_after_s = 0.1;
        assert_eq!(retry_after_python(&d), "1", "python never says 0");
        assert_eq!(retry_after_iso8601(&d), "PT0.1S");
        d.retry_after_s = 2.0;
        assert_eq!(retry_after_python(&d), "2");
        assert_eq!(retry_after_iso8601(&d), "PT2.0S");
        d.retry_after_s = 0.0;
        assert_eq!(retry_after_python(&d), "1");
        assert_eq!(retry_after_iso8601(&d), "PT0.0S");
    }

    #[test]
    fn python_default_limits_drain_after_100_requests() {
        // VELOZ_RATE_LIMIT_CAPACITY=100, VELOZ_RATE_LIMIT_REFILL=10.
        let rl = RateLimiter::new(100, 10.0, Duration::from_secs(600));
        let t0 = Instant::now();
        let allowed = (0..150)
            .filter(|_| rl.check("key:vk_1", t0, EPOCH).allowed)
            .count();
        assert_eq!(allowed, 100);
        let d = rl.check("key:vk_1", t0, EPOCH);
        assert_eq!(retry_after_python(&d), "1");
        assert_eq!(retry_after_iso8601(&d), "PT0.1S");
        assert_eq!(d.reset_epoch_s, EPOCH as u64 + 10);
    }
}
