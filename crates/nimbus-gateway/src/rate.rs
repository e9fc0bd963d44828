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

#[cfg(test)]
mod tests {
    use super::*;

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
