//! The burst rate for starting instances: a token bucket shared by every function on a node,
//! so that one function scaling out cannot take the whole machine for its cold starts.
//!
//! Starting an instance (a process sandbox, or loading a wasm component) takes a token.
//! The bucket holds up to `burst` tokens and refills at `per_second`. A start that finds it
//! empty still gets its turn, in order: [`StartRate::reserve`] books the next token and
//! returns how long the caller must wait for it. Nothing here sleeps or reads a clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket for instance starts.
#[derive(Debug)]
pub struct StartRate {
    per_second: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens at `at`; negative when starts are booked ahead.
    tokens: f64,
    at: Option<Instant>,
}

impl StartRate {
    /// At most `burst` starts at once, then `per_second` a second. `per_second` must be > 0.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                at: None,
            }),
        }
    }

    /// Books one start at `now`; returns how long to wait before starting (zero when a token
    /// is there).
    pub fn reserve(&self, now: Instant) -> Duration {
        let Ok(mut b) = self.state.lock() else {
            return Duration::ZERO;
        };
        let elapsed =
            b.at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = Some(b.at.map_or(now, |at| at.max(now)));
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / self.per_second)
        }
    }

    /// Starts allowed per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Starts allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst as u32
    }
}

/// A token bucket that refuses rather than books: up to `per_second` tokens (one second's
/// burst), refilled at `per_second`. Rate limits of public routes use it.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `per_second` (at least 1).
    pub fn new(per_second: u32) -> Self {
        Self::with_burst(per_second, per_second)
    }

    /// A full bucket of `burst` tokens (at least 1), refilled at `per_second` (at least 1).
    pub fn with_burst(per_second: u32, burst: u32) -> Self {
        let capacity = f64::from(burst.max(1));
        Self {
            per_second: f64::from(per_second.max(1)),
            capacity,
            tokens: capacity,
            at: None,
        }
    }

    /// The rate it refills at.
    pub fn per_second(&self) -> u32 {
        self.per_second as u32
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = self
            .at
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }

    /// Whether, at `now`, it has been full long enough to be forgotten (it would be full again).
    pub fn is_idle(&self, now: Instant) -> bool {
        let refill = Duration::from_secs_f64(self.capacity / self.per_second);
        self.at.is_none_or(|at| {
            now.saturating_duration_since(at) >= refill.max(Duration::from_secs(1))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bucket_refuses_past_its_rate_and_says_when_to_retry() {
        let mut b = super::TokenBucket::new(2);
        let t0 = Instant::now();
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert_eq!(b.take(t0), Err(ms(500)));
        // Half a second later one token is back.
        assert!(b.take(t0 + ms(500)).is_ok());
        assert!(b.take(t0 + ms(500)).is_err());
        assert!(!b.is_idle(t0 + ms(600)));
        assert!(b.is_idle(t0 + ms(1600)));
    }

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_goes_at_once_then_starts_are_paced() {
        let r = StartRate::new(10.0, 3);
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..6).map(|_| r.reserve(t0)).collect();
        assert_eq!(waits[..3], [Duration::ZERO; 3]);
        // The 4th, 5th and 6th wait for tokens 100 ms apart, in order.
        assert_eq!(waits[3], ms(100));
        assert_eq!(waits[4], ms(200));
        assert_eq!(waits[5], ms(300));
    }

    #[test]
    fn the_bucket_refills_but_never_past_the_burst() {
        let r = StartRate::new(10.0, 2);
        let t0 = Instant::now();
        assert_eq!(r.reserve(t0), Duration::ZERO);
        assert_eq!(r.reserve(t0), Duration::ZERO);
        assert_eq!(r.reserve(t0), ms(100));
        // 10 s later the bucket is full again (2), not 100 tokens.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(r.reserve(later), Duration::ZERO);
        assert_eq!(r.reserve(later), Duration::ZERO);
        assert_eq!(r.reserve(later), ms(100));
    }

    #[test]
    fn booked_starts_are_paid_back_before_new_ones() {
        let r = StartRate::new(2.0, 1);
        let t0 = Instant::now();
        assert_eq!(r.reserve(t0), Duration::ZERO);
        assert_eq!(r.reserve(t0), ms(500));
        assert_eq!(r.reserve(t0), ms(1000));
        // 600 ms on, one token came back but two were booked ahead: the next waits 900 ms.
        assert_eq!(r.reserve(t0 + ms(600)), ms(900));
    }
}
