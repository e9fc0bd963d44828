//! Consumers: lease ahead, dispatch units to slots, settle in batches; and what each kind of
//! consumer does with a unit (async invocation, queue batch, webhook delivery).

use super::*;
use nimbus_core::EventAttributes;

impl Engine {
    pub(super) fn params(&self, key: &ConsumerKey) -> Option<ConsumerParams> {
        let topo = self.topology();
        match key {
            ConsumerKey::Async(f) => {
                let t = topo.functions.get(f)?;
                Some(ConsumerParams {
                    batch: 1,
                    window_ms: 0,
                    // Leased messages may wait in the buffer for up to two rounds of
                    // invocations, then run one.
                    lease_ms: 3 * t.timeout_ms as i64 + 10_000,
                    concurrency: t.concurrency,
                })
            }
            ConsumerKey::Trigger(f, q) => {
                let t = topo
                    .triggers
                    .iter()
                    .find(|t| &t.function == f && &t.queue == q)?;
                let timeout = topo.functions.get(f)?.timeout_ms;
                let visibility = topo.queues.get(q)?.visibility_timeout_ms;
                Some(ConsumerParams {
                    batch: t.batch_size as usize,
                    window_ms: t.window_ms,
                    lease_ms: visibility.max(timeout + 1_000) as i64,
                    concurrency: topo.functions.get(f)?.concurrency.clamp(1, 8),
                })
            }
            ConsumerKey::Webhook(..) => Some(ConsumerParams {
                batch: 1,
                window_ms: 0,
                lease_ms: 30_000,
                concurrency: 16,
            }),
        }
    }

    /// Runs one consumer: a fetcher leases messages ahead into a bounded buffer (so the next
    /// receive overlaps the current invocations), a dispatcher runs each unit (one message, or
    /// one batch for queue triggers) when a slot is free, and a settler acknowledges finished
    /// units in batches.
    pub(super) async fn consume(self: Arc<Self>, key: ConsumerKey, cancel: CancellationToken) {
        let Some(first) = self.params(&key) else {
            return;
        };
        let slots = Arc::new(Semaphore::new(first.concurrency.max(1)));
        let buffered = 2 * first.concurrency.max(1);
        let (units_tx, mut units_rx) = mpsc::channel::<Vec<Delivery>>(buffered);
        let (settle_tx, settle_rx) = mpsc::unbounded_channel::<Settle>();
        let log_queue = key.log_queue();
        let settler = tokio::spawn(self.clone().settler(log_queue, settle_rx));
        let fetcher = tokio::spawn(self.clone().fetch(key.clone(), units_tx, cancel.clone()));
        while let Some(unit) = units_rx.recv().await {
            let permit = match slots.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => break,
            };
            let (e, key, tx) = (self.clone(), key.clone(), settle_tx.clone());
            self.tasks.spawn(async move {
                for s in e.handle(&key, unit).await {
                    let _ = tx.send(s);
                }
                drop(permit);
            });
        }
        let _ = fetcher.await;
        drop(settle_tx);
        let _ = settler.await;
    }

    /// Leases messages for a consumer into `units` (see [`Engine::consume`]).
    pub(super) async fn fetch(
        self: Arc<Self>,
        key: ConsumerKey,
        units: mpsc::Sender<Vec<Delivery>>,
        cancel: CancellationToken,
    ) {
        let log_queue = key.log_queue();
        let waker = self.waker(&log_queue);
        let quarter = (units.max_capacity() / 4).max(1);
        while let Some(p) = self.params(&key) {
            // Lease only what the buffer has room for, and at least a quarter of it at a time.
            let room = units.capacity().max(quarter);
            let permits = tokio::select! {
                r = units.reserve_many(room) => match r { Ok(r) => r, Err(_) => return },
                () = cancel.cancelled() => return,
            };
            let max = (p.batch * room).min(1024);
            let q = log_queue.clone();
            let now = now_ms();
            let mut got = match self
                .blocking(move |log| log.receive(&q, max, p.lease_ms, now))
                .await
            {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(queue = %log_queue, error = %e, "receive failed");
                    Vec::new()
                }
            };
            if got.is_empty() {
                drop(permits);
                // Nothing deliverable: sleep until the next delay or lease ends (retries and
                // lapsed leases become visible with time), or an append or a lease change
                // wakes us. An idle function costs nothing between events.
                let q = log_queue.clone();
                let next = self
                    .blocking(move |log| log.next_visible(&q, now_ms()))
                    .await;
                let wait = match next {
                    Ok(Some(at)) => Duration::from_millis((at - now_ms()).max(1) as u64),
                    Ok(None) => IDLE_MAX,
                    Err(_) => IDLE_POLL,
                };
                tokio::select! {
                    () = waker.notified() => {},
                    () = tokio::time::sleep(wait.min(IDLE_MAX)) => {},
                    () = cancel.cancelled() => return,
                }
                continue;
            }
            if p.window_ms > 0 && got.len() < p.batch {
                tokio::time::sleep(Duration::from_millis(p.window_ms)).await;
                let (q, more) = (log_queue.clone(), p.batch - got.len());
                let now = now_ms();
                if let Ok(extra) = self
                    .blocking(move |log| log.receive(&q, more, p.lease_ms, now))
                    .await
                {
                    got.extend(extra);
                }
            }
            if let ConsumerKey::Trigger(_, q) = &key {
                got = match self.screen(q, got).await {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::error!(queue = %q, error = %e, "dead-lettering failed");
                        continue;
                    }
                };
            }
            let mut permits = permits;
            let mut rest = got;
            while !rest.is_empty() {
                let tail = rest.split_off(p.batch.min(rest.len()));
                let unit = std::mem::replace(&mut rest, tail);
                match permits.next() {
                    Some(permit) => permit.send(unit),
                    // More units than reserved (batches split unevenly): wait for room.
                    None => {
                        if units.send(unit).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    pub(super) async fn settler(
        self: Arc<Self>,
        queue: String,
        mut rx: mpsc::UnboundedReceiver<Settle>,
    ) {
        while let Some(first) = rx.recv().await {
            let mut items = vec![first];
            while items.len() < 1024 {
                match rx.try_recv() {
                    Ok(s) => items.push(s),
                    Err(_) => break,
                }
            }
            let q = queue.clone();
            let now = now_ms();
            if let Err(e) = self.blocking(move |log| log.settle(&q, items, now)).await {
                tracing::error!(queue, error = %e, "settle failed; the messages will be redelivered");
            }
        }
    }

    pub(super) async fn handle(&self, key: &ConsumerKey, unit: Vec<Delivery>) -> Vec<Settle> {
        match key {
            ConsumerKey::Async(f) => {
                let mut out = Vec::new();
                for d in unit {
                    out.extend(self.handle_async(f, d).await);
                }
                out
            }
            ConsumerKey::Trigger(f, q) => self.handle_batch(f, q, unit).await,
            ConsumerKey::Webhook(t, s) => {
                let mut out = Vec::new();
                for d in unit {
                    out.extend(self.handle_webhook(t, s, d).await);
                }
                out
            }
        }
    }

    /// Renders a function delivery as the call its runtime expects.
    pub(super) fn render(&self, function: &str, process: bool, d: &Delivery) -> Call {
        let kind = attr(&d.attributes, KIND).unwrap_or("async");
        let record_id = if d.receive_count <= 1 {
            d.id.clone()
        } else {
            format!("{}-{}", d.id, d.receive_count)
        };
        let mut call = Call {
            function: function.to_string(),
            qualifier: attr(&d.attributes, QUALIFIER).map(str::to_string),
            record_id,
            trigger: Trigger::Async {
                invocation: d.id.clone(),
                attempt: d.receive_count,
            },
            payload: Bytes::from(d.body.clone()),
            attributes: None,
            traceparent: trace_of(&d.attributes).map(str::to_string),
            queued_since_ms: (d.receive_count <= 1).then_some(d.appended_ms),
        };
        match kind {
            "topic" => {
                let topic = attr(&d.attributes, TOPIC).unwrap_or_default();
                let id = attr(&d.attributes, MESSAGE_ID).unwrap_or(&d.id);
                call.trigger = Trigger::Topic {
                    topic: topic.to_string(),
                };
                let user = user_attributes(&d.attributes);
                let types = data_types(&d.attributes);
                if process {
                    let event = aws::sns_event(
                        &self.config.region,
                        &aws::SnsMessage {
                            topic,
                            subscription: attr(&d.attributes, SUBSCRIPTION).unwrap_or_default(),
                            id,
                            subject: attr(&d.attributes, SUBJECT),
                            message: &d.body,
                            attributes: &user,
                            data_types: &types,
                            published_ms: d.appended_ms,
                        },
                    );
                    call.payload = Bytes::from(event.to_string());
                } else if let Some(e) = CloudEvent::from_attributes(&d.attributes, Vec::new()) {
                    // A CloudEvent published through a topic reaches wasm functions as itself.
                    call.attributes = Some(e.context());
                } else {
                    let mut context =
                        event_context(id, &format!("/topics/{topic}"), "nimbus.topic.message");
                    context.subject = attr(&d.attributes, SUBJECT).map(str::to_string);
                    context.extensions = user
                        .into_iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v))
                        .filter(|(k, _)| is_extension_name(k))
                        .collect();
                    call.attributes = Some(context);
                }
            }
            "schedule" => {
                let schedule = attr(&d.attributes, SCHEDULE).unwrap_or_default();
                call.trigger = Trigger::Schedule {
                    schedule: schedule.to_string(),
                };
                if !process {
                    let mut context = event_context(
                        &d.id,
                        &format!("/schedules/{schedule}"),
                        "nimbus.schedule.tick",
                    );
                    context.datacontenttype = Some("application/json".into());
                    call.attributes = Some(context);
                }
            }
            "event" => {
                let event = CloudEvent::from_attributes(&d.attributes, d.body.clone());
                if let Some(e) = event {
                    call.trigger = Trigger::Event { ty: e.ty.clone() };
                    if process {
                        call.payload = Bytes::from(e.to_json().to_string());
                    } else {
                        call.attributes = Some(e.context());
                    }
                }
            }
            _ => {}
        }
        call
    }

    pub(super) async fn handle_async(&self, function: &str, d: Delivery) -> Option<Settle> {
        let topo = self.topology();
        let target = topo.functions.get(function)?;
        let is_async = attr(&d.attributes, KIND).is_none_or(|k| k == "async");
        let now = now_ms();
        let age = (now - d.appended_ms).max(0) as u64;
        let failure = if age > target.policy.max_event_age_ms {
            Err((
                Condition::EventAgeExceeded,
                CallFailure {
                    error_type: "EventAgeExceeded".into(),
                    message: format!(
                        "the event is {} s old, past max_event_age ({} s)",
                        age / 1000,
                        target.policy.max_event_age_ms / 1000
                    ),
                    doc: Bytes::new(),
                },
            ))
        } else {
            let call = self.render(function, target.process, &d);
            match self.invoker.call(call).await {
                Ok(result) => Ok(result),
                Err(f) => {
                    let unit = rand::random::<f64>();
                    match policy::after_failure(
                        &target.policy,
                        d.receive_count,
                        age,
                        self.config.retry_base_ms,
                        unit,
                    ) {
                        Verdict::Retry { after_ms } => {
                            self.observe(crate::DeliveryEvent::Retried, function);
                            if let Err(e) = self
                                .extend_lease(fn_key(function), d.receipt.clone(), after_ms as i64)
                                .await
                            {
                                tracing::warn!(function, error = %e, "could not schedule a retry");
                            }
                            return None;
                        }
                        Verdict::GiveUp(c) => Err((c, f)),
                    }
                }
            }
        };
        let arn = nimbus_aws::lambda::function_arn(&self.config.region, function);
        let (condition, response, function_error) = match &failure {
            Ok(result) => (Condition::Success, result.to_vec(), None),
            Err((c, f)) => (
                *c,
                if f.doc.is_empty() {
                    f.message.clone().into_bytes()
                } else {
                    f.doc.to_vec()
                },
                Some("Unhandled"),
            ),
        };
        let destination = match &failure {
            Ok(_) => target.policy.on_success.clone(),
            Err(_) => target.policy.on_failure.clone(),
        };
        let mut out = Vec::new();
        if let Some(dest) = destination {
            let record = aws::destination_record(&aws::DestinationRecord {
                request_id: &d.id,
                function_arn: &arn,
                condition,
                attempts: d.receive_count,
                now_ms: now_ms(),
                request: &d.body,
                response: &response,
                function_error,
            });
            let record = record.to_string();
            let mut attributes = vec![(KIND.into(), "async".into())];
            attributes.extend(trace_of(&d.attributes).map(|t| (TRACEPARENT.into(), t.into())));
            let m = Publication {
                body: record.as_bytes(),
                attributes,
                subject: None,
                key: None,
            };
            if let Err(e) = self.route(&topo, &dest, m, &mut out) {
                tracing::warn!(function, error = %e, "destination unavailable");
            }
        }
        let dead_letter = match (&failure, &target.policy.dead_letter) {
            (Err((_, f)), Some(dlq)) if topo.queues.contains_key(dlq) => {
                let mut attributes: Vec<(String, String)> = d
                    .attributes
                    .iter()
                    .filter(|(k, _)| k != ORIGIN)
                    .cloned()
                    .collect();
                attributes.extend([
                    (ORIGIN.into(), fn_key(function)),
                    (format!("{USER}RequestID"), d.id.clone()),
                    (format!("{USER}ErrorCode"), f.error_type.clone()),
                    (format!("{USER}ErrorMessage"), f.message.clone()),
                ]);
                out.push(NewMessage {
                    queue: q_key(dlq),
                    body: d.body.clone(),
                    attributes,
                    deliver_after_ms: 0,
                    dedup_key: None,
                });
                true
            }
            _ => false,
        };
        if !out.is_empty()
            && let Err(e) = self.append(out).await
        {
            // Not settled: the event comes back and is handled again.
            tracing::error!(function, error = %e, "could not deliver to destinations");
            return None;
        }
        if let Err((_, f)) = &failure {
            tracing::info!(function, id = %d.id, attempts = d.receive_count, error = %f.message, "async invocation failed for good");
            self.observe(crate::DeliveryEvent::GaveUp, function);
            if dead_letter {
                self.observe(crate::DeliveryEvent::DeadLettered, function);
            }
        }
        let outcome = is_async.then(|| match &failure {
            Ok(result) => {
                let result = if result.len() > MAX_LEDGER_RESULT {
                    json!({"truncated": true, "bytes": result.len()})
                } else {
                    json_or_text(result)
                };
                Outcome {
                    status: "succeeded".into(),
                    detail: json!({ "result": result }).to_string(),
                }
            }
            Err((c, f)) => Outcome {
                status: if dead_letter {
                    "dead-lettered"
                } else {
                    "failed"
                }
                .into(),
                detail: json!({"error": {
                    "errorType": f.error_type, "errorMessage": f.message,
                    "condition": c.as_str(),
                }})
                .to_string(),
            },
        });
        Some(Settle {
            receipt: d.receipt,
            outcome,
        })
    }

    pub(super) async fn handle_batch(
        &self,
        function: &str,
        queue: &str,
        unit: Vec<Delivery>,
    ) -> Vec<Settle> {
        let topo = self.topology();
        let Some(target) = topo.functions.get(function) else {
            return Vec::new();
        };
        type Attributes = Vec<(String, String)>;
        let users: Vec<(Attributes, Attributes)> = unit
            .iter()
            .map(|d| (user_attributes(&d.attributes), data_types(&d.attributes)))
            .collect();
        let messages: Vec<aws::SqsMessage<'_>> = unit
            .iter()
            .zip(&users)
            .map(|(d, (attrs, types))| aws::SqsMessage {
                id: &d.id,
                receipt: &d.receipt,
                body: &d.body,
                attributes: attrs,
                data_types: types,
                receive_count: d.receive_count,
                sent_ms: d.appended_ms,
            })
            .collect();
        let event = aws::sqs_event(&self.config.region, queue, &messages, now_ms());
        let call = Call {
            function: function.to_string(),
            qualifier: topo
                .triggers
                .iter()
                .find(|t| t.function == function && t.queue == queue)
                .and_then(|t| t.qualifier.clone()),
            // Named after the batch's first message and its delivery: unique, and the UUIDv7
            // prefix dates the batch's oldest acceptance.
            record_id: format!("{}-b{}", unit[0].id, unit[0].receive_count),
            trigger: Trigger::Queue {
                queue: queue.to_string(),
            },
            payload: Bytes::from(event.to_string()),
            traceparent: unit
                .iter()
                .find_map(|d| trace_of(&d.attributes))
                .map(str::to_string),
            queued_since_ms: (unit[0].receive_count <= 1).then_some(unit[0].appended_ms),
            attributes: (!target.process).then(|| {
                let mut context = event_context(
                    &unit[0].id,
                    &format!("/queues/{queue}"),
                    "nimbus.queue.batch",
                );
                context.datacontenttype = Some("application/json".into());
                context
            }),
        };
        match self.invoker.call(call).await {
            Ok(result) => {
                let failed = aws::batch_item_failures(&result).unwrap_or_default();
                unit.into_iter()
                    .filter(|d| !failed.contains(&d.id))
                    .map(|d| Settle {
                        receipt: d.receipt,
                        outcome: None,
                    })
                    .collect()
            }
            // The whole batch comes back after the visibility timeout.
            Err(_) => Vec::new(),
        }
    }

    pub(super) async fn handle_webhook(
        &self,
        topic: &str,
        subscription: &str,
        d: Delivery,
    ) -> Option<Settle> {
        let topo = self.topology();
        let url = topo.topics.get(topic).and_then(|t| {
            t.subscriptions.iter().find_map(|(s, _)| match &s.endpoint {
                Endpoint::Webhook(url) if s.name == subscription => Some(url.clone()),
                _ => None,
            })
        })?;
        let secret = self.webhook_secret(topic, subscription);
        let now_s = now_ms() / 1000;
        let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&d.body).is_ok() {
            "application/json"
        } else {
            "application/octet-stream"
        };
        let mut request = self
            .http
            .post(&url)
            .header("content-type", content_type)
            .header(
                webhook::SIGNATURE_HEADER,
                webhook::sign(&secret, now_s, &d.body),
            )
            .header("x-nimbus-topic", topic)
            .header("x-nimbus-subscription", subscription)
            .header(
                "x-nimbus-message-id",
                attr(&d.attributes, MESSAGE_ID).unwrap_or(&d.id),
            )
            .header("x-nimbus-delivery-attempt", d.receive_count.to_string());
        if let Some(t) = trace_of(&d.attributes) {
            // The receiver continues the publisher's trace.
            request = request.header("traceparent", t);
        }
        for (k, v) in user_attributes(&d.attributes) {
            if http::HeaderName::try_from(format!("x-nimbus-attr-{k}")).is_ok() {
                request = request.header(format!("x-nimbus-attr-{k}"), v);
            }
        }
        let target = format!("{topic}/{subscription}");
        let delivered = match request.body(d.body.clone()).send().await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::warn!(topic, subscription, status = %r.status(), attempt = d.receive_count, "webhook refused a delivery");
                false
            }
            Err(e) => {
                tracing::warn!(topic, subscription, error = %e, attempt = d.receive_count, "webhook delivery failed");
                false
            }
        };
        if !delivered {
            self.observe(crate::DeliveryEvent::WebhookFailed, &target);
        }
        if delivered || d.receive_count >= WEBHOOK_ATTEMPTS {
            if !delivered {
                tracing::error!(topic, subscription, id = %d.id, "webhook delivery given up after {WEBHOOK_ATTEMPTS} attempts");
            }
            return Some(Settle {
                receipt: d.receipt,
                outcome: None,
            });
        }
        let after = policy::backoff_ms(
            d.receive_count,
            self.config.retry_base_ms,
            60_000,
            rand::random::<f64>(),
        );
        let _ = self
            .extend_lease(
                format!("wh:{topic}/{subscription}"),
                d.receipt,
                after as i64,
            )
            .await;
        None
    }
}

/// The trace context a message carries: the one it was accepted under, or its CloudEvent's
/// `traceparent` extension (distributed tracing extension).
fn trace_of(attributes: &[(String, String)]) -> Option<&str> {
    attr(attributes, TRACEPARENT).or_else(|| attr(attributes, "ce-traceparent"))
}

/// The context of an event Nimbus makes up (a topic message, a schedule tick, a queue batch).
fn event_context(id: &str, source: &str, ty: &str) -> EventAttributes {
    EventAttributes {
        id: id.to_string(),
        source: source.to_string(),
        ty: ty.to_string(),
        ..EventAttributes::default()
    }
}
