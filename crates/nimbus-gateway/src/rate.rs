//! Rate limits of public routes (a function's `rate_limit` and `client_rate_limit`): token
//! buckets per function and per function and client address, checked before the request
//! becomes an invocation — so anonymous callers cannot spend the tenant's quota faster than
//! the function's owner allows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nimbus_core::burst::TokenBucket;

/// Client buckets kept before idle ones are forgotten.
const MAX_CLIENTS: usize = 100_000;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// The function's routes, all callers together.
    Route(u32),
    /// One client address.
    Client(u32),
}

#[derive(Default)]
pub(crate) struct RouteLimiter {
    functions: Mutex<HashMap<String, TokenBucket>>,
    clients: Mutex<HashMap<(String, IpAddr), TokenBucket>>,
}

/// Takes a token from `key`'s bucket of `per_second` (a new bucket when the rate changed).
fn take<K: std::hash::Hash + Eq>(
    buckets: &mut HashMap<K, TokenBucket>,
    key: K,
    per_second: u32,
    now: Instant,
) -> Result<(), Duration> {
    let bucket = buckets
        .entry(key)
        .or_insert_with(|| TokenBucket::new(per_second));
    if bucket.per_second() != per_second {
        *bucket = TokenBucket::new(per_second);
    }
    bucket.take(now)
}

impl RouteLimiter {
    /// Admits one request to `function`'s routes from `client`, or says which limit refused
    /// it and when to retry.
    pub(crate) fn check(
        &self,
        function: &str,
        rate_limit: Option<u32>,
        client_rate_limit: Option<u32>,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), (Limited, Duration)> {
        if let (Some(per_second), Some(ip)) = (client_rate_limit, client) {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if clients.len() >= MAX_CLIENTS {
                clients.retain(|_, b| !b.is_idle(now));
            }
            take(&mut clients, (function.to_string(), ip), per_second, now)
                .map_err(|wait| (Limited::Client(per_second), wait))?;
        }
        if let Some(per_second) = rate_limit {
            let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
            take(&mut functions, function.to_string(), per_second, now)
                .map_err(|wait| (Limited::Route(per_second), wait))?;
        }
        Ok(())
    }
}

/// Why an API key's request is refused by its usage plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanLimited {
    /// Past its rate (and burst).
    Rate(u32),
    /// Past its quota for the period.
    Quota(u64),
}

/// The usage plans of API keys on routes that take them: a token bucket per key (its rate and
/// burst) and a count per key and period (its quota). Counts live in memory: a restart starts
/// the period's count again.
#[derive(Default)]
pub(crate) struct KeyLimiter {
    buckets: Mutex<HashMap<String, TokenBucket>>,
    quotas: Mutex<HashMap<String, (i64, u64)>>,
}

impl KeyLimiter {
    /// Admits one request of `key_id` under `plan` at `now` (`now_ms` for quota periods), or
    /// says which limit refused it and when to retry.
    pub(crate) fn check(
        &self,
        key_id: &str,
        plan: &nimbus_core::keys::UsagePlan,
        now: Instant,
        now_ms: i64,
    ) -> Result<(), (PlanLimited, Duration)> {
        if let Some(rate) = plan.rate {
            let burst = plan.burst.unwrap_or(rate);
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            if buckets.len() >= MAX_CLIENTS {
                buckets.retain(|_, b| !b.is_idle(now));
            }
            let bucket = buckets
                .entry(key_id.to_string())
                .or_insert_with(|| TokenBucket::with_burst(rate, burst));
            bucket
                .take(now)
                .map_err(|wait| (PlanLimited::Rate(rate), wait))?;
        }
        if let Some(quota) = plan.quota {
            let (period, next_ms) = plan.period.at(now_ms);
            let mut quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
            let count = quotas.entry(key_id.to_string()).or_insert((period, 0));
            if count.0 != period {
                *count = (period, 0);
            }
            if count.1 >= quota {
                let wait = Duration::from_millis(next_ms.saturating_sub(now_ms).max(0) as u64);
                return Err((PlanLimited::Quota(quota), wait));
            }
            count.1 += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_plans_take_a_burst_then_the_rate_and_count_a_quota_per_period() {
        use nimbus_core::keys::{QuotaPeriod, UsagePlan};
        let l = KeyLimiter::default();
        let now = Instant::now();
        let day_ms = 86_400_000;
        let plan = UsagePlan {
            rate: Some(1),
            burst: Some(3),
            quota: None,
            period: QuotaPeriod::Day,
        };
        for _ in 0..3 {
            assert!(l.check("k", &plan, now, 0).is_ok());
        }
        assert!(matches!(
            l.check("k", &plan, now, 0),
            Err((PlanLimited::Rate(1), _))
        ));
        assert!(l.check("k", &plan, now + Duration::from_secs(1), 0).is_ok());
        let quota = UsagePlan {
            rate: None,
            burst: None,
            quota: Some(2),
            period: QuotaPeriod::Day,
        };
        assert!(l.check("q", &quota, now, 10).is_ok());
        assert!(l.check("q", &quota, now, 20).is_ok());
        let (limited, wait) = l.check("q", &quota, now, day_ms - 1000).unwrap_err();
        assert_eq!(limited, PlanLimited::Quota(2));
        assert_eq!(wait, Duration::from_secs(1));
        // A new day, a new count; another key its own.
        assert!(l.check("q", &quota, now, day_ms).is_ok());
        assert!(l.check("other", &quota, now, 20).is_ok());
    }

    #[test]
    fn clients_are_limited_apart_and_the_route_as_a_whole() {
        let l = RouteLimiter::default();
        let now = Instant::now();
        let a = IpAddr::from([127, 0, 0, 1]);
        let b = IpAddr::from([127, 0, 0, 2]);
        assert!(l.check("f", Some(3), Some(2), Some(a), now).is_ok());
        assert!(l.check("f", Some(3), Some(2), Some(a), now).is_ok());
        assert!(matches!(
            l.check("f", Some(3), Some(2), Some(a), now),
            Err((Limited::Client(2), _))
        ));
        // Another client has its own allowance, until the route's is spent.
        assert!(l.check("f", Some(3), Some(2), Some(b), now).is_ok());
        assert!(matches!(
            l.check("f", Some(3), Some(2), Some(b), now),
            Err((Limited::Route(3), _))
        ));
        // Unlimited functions are never refused.
        assert!(l.check("g", None, None, Some(a), now).is_ok());
    }
}
