//! The scheduler (ticks at most once, with the cursor in the same commit) and housekeeping.

use super::*;

impl Engine {
    pub(super) async fn scheduler(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {},
                () = self.stop.cancelled() => return,
            }
            let topo = self.topology();
            for s in &topo.schedules {
                if let Err(e) = self.tick(&topo, s).await {
                    tracing::error!(schedule = %s.name, error = %e, "schedule tick failed");
                }
            }
        }
    }

    pub(super) async fn tick(
        &self,
        topo: &Topology,
        s: &nimbus_core::events::ScheduleSpec,
    ) -> Result<()> {
        let (Ok(schedule), Ok(tz)) = (
            Schedule::parse(&s.expression),
            jiff::tz::TimeZone::get(&s.timezone),
        ) else {
            return Ok(());
        };
        let cursor_name = format!("schedule:{}", s.name);
        let name = cursor_name.clone();
        let cursor = self.blocking(move |log| log.cursor(&name)).await?;
        let now = now_ms();
        let catch_up = if s.enabled { s.catch_up } else { CatchUp::Skip };
        let plan = match policy::plan_tick(&schedule, &tz, cursor, now, catch_up) {
            // A disabled schedule moves its cursor without firing.
            TickPlan::Fire(t) if !s.enabled => TickPlan::Advance(t),
            p => p,
        };
        let (messages, value) = match plan {
            TickPlan::Idle => return Ok(()),
            TickPlan::Advance(t) => (Vec::new(), t),
            TickPlan::Fire(t) => {
                let id = keyed_id(&cursor_name, &t.to_string());
                let body = aws::scheduled_event(&self.config.region, &s.name, &id, t).to_string();
                let mut out = Vec::new();
                let m = Publication {
                    body: body.as_bytes(),
                    attributes: vec![
                        (KIND.into(), "schedule".into()),
                        (SCHEDULE.into(), s.name.clone()),
                    ],
                    subject: None,
                    key: Some(&id),
                };
                self.route(topo, &s.target, m, &mut out)?;
                tracing::info!(schedule = %s.name, tick_ms = t, "schedule fired");
                (out, t)
            }
        };
        let woken: HashSet<String> = messages.iter().map(|m| m.queue.clone()).collect();
        self.blocking(move |log| log.append_with_cursor(messages, (&cursor_name, value), now))
            .await?;
        for q in woken {
            self.waker(&q).notify_one();
        }
        Ok(())
    }

    pub(super) async fn housekeeping(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(60)) => {},
                () = self.stop.cancelled() => return,
            }
            let before = now_ms() - self.config.ledger_retention_ms;
            if let Err(e) = self.blocking(move |log| log.expire(before)).await {
                tracing::warn!(error = %e, "ledger expiry failed");
            }
        }
    }
}
