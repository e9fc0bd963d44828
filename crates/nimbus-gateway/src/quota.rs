//! Monthly quotas (requests, GB-seconds) for the tenant. Past a quota, invocations are refused
//! with 429 `QuotaExceeded` (never dropped silently); the count restarts each calendar month (UTC).
//!
//! Usage comes from the records (the same numbers as `nimbus usage`), re-read at most once a
//! second; invocations admitted since the last read are counted in memory, so a burst overshoots
//! by at most what finishes unrecorded within a second.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use nimbus_core::usage::{Granularity, UsageQuery, month_start};

use crate::error::ApiError;
use crate::platform::{Platform, blocking, now_ms};

/// Monthly limits; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    /// Invocations per month.
    pub monthly_requests: Option<u64>,
    /// GB-seconds per month.
    pub monthly_gb_seconds: Option<f64>,
}

#[derive(Debug, Default)]
struct Seen {
    at: Option<Instant>,
    requests: u64,
    mb_ms: u64,
}

/// Admission against the quota.
#[derive(Debug, Default)]
pub(crate) struct QuotaGate {
    seen: Mutex<Seen>,
    admitted: AtomicU64,
}

const REFRESH: Duration = Duration::from_secs(1);

impl QuotaGate {
    /// Admits one invocation, or refuses it with 429 when a monthly quota is used up.
    pub(crate) async fn admit(&self, p: &Platform) -> Result<(), ApiError> {
        let quota = &p.config.quota;
        if quota.monthly_requests.is_none() && quota.monthly_gb_seconds.is_none() {
            return Ok(());
        }
        let stale = self
            .seen
            .lock()
            .map(|s| s.at.is_none_or(|at| at.elapsed() >= REFRESH))
            .unwrap_or(true);
        if stale {
            let now = now_ms();
            let store = p.store.clone();
            let query = UsageQuery {
                function: None,
                from_ms: month_start(now),
                to_ms: now + 1,
                granularity: Granularity::Total,
            };
            let rows = blocking(move || store.usage(&query)).await??;
            if let Ok(mut s) = self.seen.lock() {
                s.at = Some(Instant::now());
                s.requests = rows.iter().map(|r| r.requests).sum();
                s.mb_ms = rows.iter().map(|r| r.mb_ms).sum();
                self.admitted.store(0, Ordering::Relaxed);
            }
        }
        let (requests, mb_ms) = self
            .seen
            .lock()
            .map(|s| (s.requests, s.mb_ms))
            .unwrap_or_default();
        let requests = requests + self.admitted.load(Ordering::Relaxed);
        let refuse = |what: String| {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "QuotaExceeded",
                format!("{what}; it resets at the start of next month (UTC)"),
            ))
        };
        if let Some(limit) = quota.monthly_requests
            && requests >= limit
        {
            return refuse(format!("the monthly quota of {limit} requests is used up"));
        }
        if let Some(limit) = quota.monthly_gb_seconds
            && mb_ms as f64 / 1024.0 / 1000.0 >= limit
        {
            return refuse(format!(
                "the monthly quota of {limit} GB-seconds is used up"
            ));
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
