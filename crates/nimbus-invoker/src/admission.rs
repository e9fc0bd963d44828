//! Admission: whether an invocation may run now. In order, each once per invocation:
//!
//! 1. the tenant's monthly quotas (requests, GB-seconds) — refused with
//!    [`AdmissionError::Quota`], never dropped silently;
//! 2. a slot of the function (its `max_concurrency`; a wasm instance's
//!    `concurrency_per_instance`), then one of the tenant (`--tenant-concurrency`), each waited
//!    for up to the node's throttle wait (capped at the function's timeout) —
//!    [`AdmissionError::Throttled`] when one stays full.
//!
//! The node-wide burst rate for instance starts is not here: only a runtime knows whether an
//! invocation starts an instance, so the runtimes take its tokens (the node lends them one
//! bucket).
//!
//! Quota usage comes from the records (the same numbers as `nimbus usage`), re-read at most
//! once a second; invocations admitted since the last read are counted in memory, so a burst
//! overshoots by at most what finishes unrecorded within a second. Async acceptance only
//! checks the quota ([`Admission::check_quota`]); the delivery is what counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_core::Store;
use nimbus_core::clock::now_ms;
use nimbus_core::usage::{Granularity, UsageQuery, month_start};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{AdmissionError, QuotaKind, ThrottleReason};
use crate::metrics::Metrics;

/// Monthly limits of the tenant; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    /// Invocations per month.
    pub monthly_requests: Option<u64>,
    /// GB-seconds per month.
    pub monthly_gb_seconds: Option<f64>,
}

impl Quota {
    fn is_unlimited(&self) -> bool {
        self.monthly_requests.is_none() && self.monthly_gb_seconds.is_none()
    }
}

#[derive(Debug, Default)]
struct Seen {
    at: Option<Instant>,
    requests: u64,
    mb_ms: u64,
}

const REFRESH: Duration = Duration::from_secs(1);

/// Admission of one node's invocations.
pub(crate) struct Admission {
    store: Arc<dyn Store>,
    quota: Quota,
    seen: Mutex<Seen>,
    admitted: AtomicU64,
    tenant_slots: Option<Arc<Semaphore>>,
    throttle_wait: Duration,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        quota: Quota,
        tenant_concurrency: Option<usize>,
        throttle_wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            quota,
            seen: Mutex::default(),
            admitted: AtomicU64::new(0),
            tenant_slots: tenant_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            throttle_wait,
            metrics,
        }
    }

    /// Admits one invocation of `function` (whose own slots are `slots`, and whose timeout is
    /// `timeout`): the quota, then its slots. The invocation holds the permits while it runs.
    pub(crate) async fn admit(
        &self,
        function: &str,
        slots: Option<&Arc<Semaphore>>,
        timeout: Duration,
    ) -> Result<Vec<OwnedSemaphorePermit>, AdmissionError> {
        self.check_quota().await?;
        let wait = self.throttle_wait.min(timeout);
        let deadline = tokio::time::Instant::now() + wait;
        let limits = [
            (slots, ThrottleReason::Function),
            (self.tenant_slots.as_ref(), ThrottleReason::Tenant),
        ];
        let mut held = Vec::new();
        for (slots, reason) in limits {
            let Some(slots) = slots else { continue };
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => Ok(p),
                Err(_) => tokio::time::timeout_at(deadline, slots.clone().acquire_owned())
                    .await
                    .map_err(|_| ())
                    .and_then(|r| r.map_err(|_| ())),
            };
            match permit {
                Ok(p) => held.push(p),
                Err(()) => {
                    self.metrics.throttled(function);
                    return Err(AdmissionError::Throttled {
                        function: function.to_string(),
                        reason,
                        waited: wait,
                    });
                }
            }
        }
        if !self.quota.is_unlimited() {
            self.admitted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(held)
    }

    /// Refuses when a monthly quota is used up; counts nothing.
    pub(crate) async fn check_quota(&self) -> Result<(), AdmissionError> {
        if self.quota.is_unlimited() {
            return Ok(());
        }
        let stale = self
            .seen
            .lock()
            .map(|s| s.at.is_none_or(|at| at.elapsed() >= REFRESH))
            .unwrap_or(true);
        if stale {
            self.refresh().await?;
        }
        let (requests, mb_ms) = self
            .seen
            .lock()
            .map(|s| (s.requests, s.mb_ms))
            .unwrap_or_default();
        verdict(
            &self.quota,
            requests + self.admitted.load(Ordering::Relaxed),
            mb_ms,
        )
    }

    async fn refresh(&self) -> Result<(), AdmissionError> {
        let now = now_ms();
        let store = self.store.clone();
        let query = UsageQuery {
            function: None,
            from_ms: month_start(now),
            to_ms: now + 1,
            granularity: Granularity::Total,
        };
        let rows = tokio::task::spawn_blocking(move || store.usage(&query))
            .await
            .map_err(|e| AdmissionError::Usage(nimbus_core::StoreError::backend(e)))?
            .map_err(AdmissionError::Usage)?;
        if let Ok(mut s) = self.seen.lock() {
            s.at = Some(Instant::now());
            s.requests = rows.iter().map(|r| r.requests).sum();
            s.mb_ms = rows.iter().map(|r| r.mb_ms).sum();
            self.admitted.store(0, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Whether usage of `requests` and `mb_ms` this month is within `quota`.
fn verdict(quota: &Quota, requests: u64, mb_ms: u64) -> Result<(), AdmissionError> {
    if let Some(limit) = quota.monthly_requests
        && requests >= limit
    {
        return Err(AdmissionError::Quota(QuotaKind::Requests(limit)));
    }
    if let Some(limit) = quota.monthly_gb_seconds
        && mb_ms as f64 / 1024.0 / 1000.0 >= limit
    {
        return Err(AdmissionError::Quota(QuotaKind::GbSeconds(limit)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_cut_off_at_their_limit() {
        let q = Quota {
            monthly_requests: Some(3),
            monthly_gb_seconds: Some(1.0),
        };
        assert!(verdict(&q, 2, 0).is_ok());
        assert!(matches!(
            verdict(&q, 3, 0),
            Err(AdmissionError::Quota(QuotaKind::Requests(3)))
        ));
        // 1 GB-s = 1024 MB × 1000 ms.
        assert!(verdict(&q, 0, 1024 * 1000 - 1).is_ok());
        assert!(matches!(
            verdict(&q, 0, 1024 * 1000),
            Err(AdmissionError::Quota(QuotaKind::GbSeconds(_)))
        ));
        assert!(verdict(&Quota::default(), u64::MAX, u64::MAX).is_ok());
    }
}
