//! Queues through the API (receive, delete, visibility, redrive, dead-lettering) and the
//! invocation ledger.

use super::*;

impl Engine {
    pub(super) fn queue_spec(&self, queue: &str) -> Result<QueueSpec> {
        self.topology()
            .queues
            .get(queue)
            .cloned()
            .ok_or_else(|| EventError::NotFound(format!("no queue named `{queue}`")))
    }

    /// Receives up to `max` messages, waiting up to `wait_ms` for the first.
    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: Option<u64>,
        wait_ms: u64,
    ) -> Result<Vec<Received>> {
        let spec = self.queue_spec(queue)?;
        let lease = visibility_ms.unwrap_or(spec.visibility_timeout_ms);
        check_visibility(lease)?;
        let lease = lease as i64;
        let key = q_key(queue);
        let waker = self.waker(&key);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let k = key.clone();
            let now = now_ms();
            let got = self
                .blocking(move |log| log.receive(&k, max, lease, now))
                .await?;
            let got = self.screen(queue, got).await?;
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got
                    .into_iter()
                    .map(|d| Received {
                        attributes: user_attributes(&d.attributes)
                            .into_iter()
                            .map(|(k, v)| (k, json!(v)))
                            .collect(),
                        id: d.id,
                        receipt: d.receipt,
                        body: String::from_utf8_lossy(&d.body).into_owned(),
                        receive_count: d.receive_count,
                        sent_ms: d.appended_ms,
                    })
                    .collect());
            }
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + IDLE_POLL),
                waker.notified(),
            )
            .await;
        }
    }

    /// Deletes received messages; per receipt, whether it was current.
    pub async fn delete(&self, queue: &str, receipts: Vec<String>) -> Result<Vec<bool>> {
        self.queue_spec(queue)?;
        let key = q_key(queue);
        let items = receipts
            .into_iter()
            .map(|receipt| Settle {
                receipt,
                outcome: None,
            })
            .collect();
        let now = now_ms();
        self.blocking(move |log| log.settle(&key, items, now)).await
    }

    /// Changes how long a received message stays invisible (0 = visible now).
    pub async fn change_visibility(&self, queue: &str, receipt: String, ms: u64) -> Result<()> {
        self.queue_spec(queue)?;
        check_visibility(ms)?;
        self.extend_lease(q_key(queue), receipt, ms as i64).await
    }

    /// A queue's settings and depth.
    pub async fn queue_info(&self, queue: &str) -> Result<QueueInfo> {
        let spec = self.queue_spec(queue)?;
        let key = q_key(queue);
        let now = now_ms();
        let stats = self.blocking(move |log| log.stats(&key, now)).await?;
        Ok(QueueInfo {
            spec,
            messages: stats.messages,
            in_flight: stats.in_flight,
            oldest_age_ms: if stats.messages == 0 {
                0
            } else {
                now - stats.oldest_ms
            },
        })
    }

    /// Deletes every message of a queue (when the queue is deleted).
    pub async fn purge(&self, queue: &str) -> Result<u64> {
        let key = q_key(queue);
        self.blocking(move |log| log.purge(&key)).await
    }

    /// Moves every message of dead-letter queue `queue` back where it came from (its source
    /// queue, or the async invocations of its function). Returns how many moved.
    pub async fn redrive(&self, queue: &str) -> Result<u64> {
        self.queue_spec(queue)?;
        if !self.topology().is_dead_letter_queue(queue) {
            // As SQS's StartMessageMoveTask: only a dead-letter queue is redriven.
            return Err(EventError::Invalid(format!(
                "`{queue}` is not a dead-letter queue: no queue or function names it as \
                 dead_letter, so its messages have nowhere to go back to"
            )));
        }
        let key = q_key(queue);
        let mut moved = 0u64;
        loop {
            let k = key.clone();
            let now = now_ms();
            let batch = self
                .blocking(move |log| log.receive(&k, 256, 60_000, now))
                .await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            let mut out = Vec::new();
            let mut settles = Vec::new();
            let mut stay = Vec::new();
            for d in batch {
                match attr(&d.attributes, ORIGIN) {
                    Some(origin) => {
                        let origin = origin.to_string();
                        let (m, settle) =
                            move_to(d, origin, |k| k == ORIGIN || k.starts_with("a:Error"));
                        out.push(m);
                        settles.push(settle);
                    }
                    // Sent here directly: it has nowhere to go back to. Leave it.
                    None => stay.push(d.receipt),
                }
            }
            moved += out.len() as u64;
            if !out.is_empty() {
                self.append(out).await?;
                let k = key.clone();
                self.blocking(move |log| log.settle(&k, settles, now))
                    .await?;
            }
            if !stay.is_empty() {
                // What stays is visible again at once; stop before receiving it again.
                for receipt in stay {
                    self.extend_lease(key.clone(), receipt, 0).await?;
                }
                return Ok(moved);
            }
        }
    }

    /// Moves deliveries of `queue` past its `max_receive_count` to its dead-letter queue and
    /// returns the rest.
    pub(super) async fn screen(
        &self,
        queue: &str,
        deliveries: Vec<Delivery>,
    ) -> Result<Vec<Delivery>> {
        let topo = self.topology();
        let Some(QueueSpec {
            max_receive_count: Some(max),
            dead_letter: Some(dlq),
            ..
        }) = topo.queues.get(queue)
        else {
            return Ok(deliveries);
        };
        let (poison, keep): (Vec<Delivery>, Vec<Delivery>) =
            deliveries.into_iter().partition(|d| d.receive_count > *max);
        if poison.is_empty() {
            return Ok(keep);
        }
        let mut out = Vec::new();
        let mut settles = Vec::new();
        for d in poison {
            let (mut m, settle) = move_to(d, q_key(dlq), |k| k == ORIGIN);
            m.attributes.push((ORIGIN.into(), q_key(queue)));
            out.push(m);
            settles.push(settle);
        }
        tracing::warn!(queue, dead_letter = %dlq, messages = out.len(), "moved poison messages to the dead-letter queue");
        for _ in 0..out.len() {
            self.observe(crate::DeliveryEvent::QueueDeadLettered, queue);
        }
        self.append(out).await?;
        let k = q_key(queue);
        let now = now_ms();
        self.blocking(move |log| log.settle(&k, settles, now))
            .await?;
        Ok(keep)
    }

    // ---- the ledger ----

    /// An async invocation's status, while queued or running and for the retention period after.
    pub async fn invocation(&self, id: &str) -> Result<Option<InvocationStatus>> {
        let lookup = id.to_string();
        let now = now_ms();
        let Some(info) = self.blocking(move |log| log.lookup(&lookup, now)).await? else {
            return Ok(None);
        };
        let Some(function) = info.queue.strip_prefix("fn:") else {
            return Ok(None);
        };
        let mut status = InvocationStatus {
            id: id.to_string(),
            function: function.to_string(),
            status: String::new(),
            attempts: info.receive_count,
            accepted_ms: info.appended_ms,
            finished_ms: None,
            next_attempt_ms: None,
            result: None,
            error: None,
            record: None,
        };
        match info.state {
            MessageState::Waiting { visible_ms } => {
                status.status = "queued".into();
                status.next_attempt_ms = (visible_ms > now).then_some(visible_ms);
            }
            MessageState::Leased { .. } => status.status = "running".into(),
            MessageState::Settled(o) => {
                status.status = o.status;
                status.finished_ms = Some(info.settled_ms);
                let detail: Value = serde_json::from_str(&o.detail).unwrap_or(Value::Null);
                status.result = detail.get("result").cloned();
                status.error = detail.get("error").cloned();
            }
        }
        Ok(Some(status))
    }
}

/// A leased message copied to `to` (without the attributes `drop` names), and the settle that
/// removes the original: append the first, then settle the second.
fn move_to(d: Delivery, to: String, drop: impl Fn(&str) -> bool) -> (NewMessage, Settle) {
    let attributes = d.attributes.into_iter().filter(|(k, _)| !drop(k)).collect();
    (
        NewMessage {
            queue: to,
            body: d.body,
            attributes,
            deliver_after_ms: 0,
            dedup_key: None,
        },
        Settle {
            receipt: d.receipt,
            outcome: None,
        },
    )
}

/// A visibility timeout within the one limit every endpoint shares.
fn check_visibility(ms: u64) -> Result<()> {
    if ms > nimbus_core::events::MAX_VISIBILITY_MS {
        return Err(EventError::Invalid(format!(
            "the visibility timeout is at most {} seconds (12 h)",
            nimbus_core::events::MAX_VISIBILITY_MS / 1000
        )));
    }
    Ok(())
}
