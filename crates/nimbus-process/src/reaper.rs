//! The process reaper: keep-alive plans applied to every pool.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nimbus_core::keepalive;

use crate::ProcessRuntime;
use crate::pool::FunctionPool;

impl ProcessRuntime {
    /// Reaps every pool each reaper tick (`nimbus_core::keepalive::reaper_tick_ms` of the
    /// keep-alive) until the task is dropped or cancelled: stops sandboxes the keep-alive
    /// policy expires, never below `min_instances` (replacing warm ones that died), and starts
    /// one when the adaptive policy predicts an invocation.
    pub async fn run_reaper(self: Arc<Self>) {
        let tick = Duration::from_millis(keepalive::reaper_tick_ms(
            self.options.idle_timeout.as_millis() as u64,
        ));
        loop {
            self.reap_once().await;
            tokio::time::sleep(tick).await;
        }
    }

    async fn reap_once(&self) {
        let pools: Vec<Arc<FunctionPool>> = self
            .pools
            .lock()
            .map(|p| p.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        let policy = self.keep_alive().clone();
        let now = Instant::now();
        let now_ms = self.clock_ms(now);
        for pool in pools {
            let min = pool.config.min_instances as usize;
            // (Read before taking the idle lock: `stats` takes it too.)
            let busy = pool.stats().busy;
            let (expired, prewarm) = match pool.idle.lock() {
                Ok(mut idle) => {
                    let ages: Vec<i64> = idle
                        .iter()
                        .map(|s| now.saturating_duration_since(s.last_used).as_millis() as i64)
                        .collect();
                    let plan = pool
                        .activity
                        .lock()
                        .map(|a| a.plan(&policy, now_ms, &ages))
                        .unwrap_or_default();
                    let (mut old, mut keep) = (Vec::new(), Vec::new());
                    let verdicts = plan.expire.into_iter().chain(std::iter::repeat(false));
                    for (s, expire) in idle.drain(..).zip(verdicts) {
                        if expire { old.push(s) } else { keep.push(s) }
                    }
                    // Never below min_instances: keep the most recently used of the expired.
                    while keep.len() + busy < min
                        && let Some(s) = old.pop()
                    {
                        keep.push(s);
                    }
                    *idle = keep;
                    (old, plan.prewarm && busy == 0)
                }
                Err(_) => (Vec::new(), false),
            };
            for s in expired {
                s.destroy().await;
            }
            if min > 0 {
                // Replace warm sandboxes that died (timeouts, crashes, OOM).
                pool.prestart().await;
            } else if prewarm {
                // The adaptive policy expects an invocation soon.
                pool.start_warm().await;
            }
        }
    }
}
