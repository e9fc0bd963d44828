//! Acceptance: resolving targets, filtering and fan-out, all appended in one commit.

use super::*;

impl Engine {
    pub(super) fn check_size(body: &[u8]) -> Result<()> {
        if body.len() > nimbus_core::events::MAX_MESSAGE_BYTES {
            return Err(EventError::TooLarge(format!(
                "message body is {} bytes; the limit is {} bytes",
                body.len(),
                nimbus_core::events::MAX_MESSAGE_BYTES
            )));
        }
        Ok(())
    }

    /// Messages delivering `m` to `target`, appended to `out`.
    pub(super) fn route(
        &self,
        topo: &Topology,
        target: &Target,
        m: Publication<'_>,
        out: &mut Vec<NewMessage>,
    ) -> Result<()> {
        let Publication {
            body,
            attributes,
            key,
            ..
        } = &m;
        let now = now_ms();
        match target {
            Target::Queue(q) => {
                let spec = topo
                    .queues
                    .get(q)
                    .ok_or_else(|| EventError::NotFound(format!("no queue named `{q}`")))?;
                out.push(NewMessage {
                    queue: q_key(q),
                    body: body.to_vec(),
                    attributes: attributes.clone(),
                    deliver_after_ms: now + spec.delay_ms as i64,
                    dedup_key: key.map(str::to_string),
                });
            }
            Target::Function(target) => {
                let (f, qualifier) = split_qualified(target);
                if !topo.functions.contains_key(f) {
                    return Err(EventError::NotFound(format!("no function named `{f}`")));
                }
                let mut attributes = attributes.clone();
                if attr(&attributes, KIND).is_none() {
                    attributes.push((KIND.into(), "async".into()));
                }
                if let Some(q) = qualifier {
                    attributes.retain(|(k, _)| k != QUALIFIER);
                    attributes.push((QUALIFIER.into(), q.into()));
                }
                out.push(NewMessage {
                    queue: fn_key(f),
                    body: body.to_vec(),
                    attributes,
                    deliver_after_ms: 0,
                    dedup_key: key.map(str::to_string),
                });
            }
            Target::Topic(t) => {
                self.fan_out(topo, t, m, out)?;
            }
        }
        Ok(())
    }

    /// One message per subscription of `topic` whose filter matches; returns the message id.
    pub(super) fn fan_out(
        &self,
        topo: &Topology,
        topic: &str,
        m: Publication<'_>,
        out: &mut Vec<NewMessage>,
    ) -> Result<String> {
        let Publication {
            body,
            attributes,
            subject,
            key,
        } = m;
        let resolved = topo
            .topics
            .get(topic)
            .ok_or_else(|| EventError::NotFound(format!("no topic named `{topic}`")))?;
        let id = match key {
            Some(k) => keyed_id(topic, k),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let attribute_doc = attribute_document(&attributes);
        let body_doc = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.as_object().cloned());
        for (sub, filter) in &resolved.subscriptions {
            if let Some(policy) = filter {
                let doc = match sub.filter_scope {
                    FilterScope::Attributes => Some(&attribute_doc),
                    FilterScope::Body => body_doc.as_ref(),
                };
                if !doc.is_some_and(|d| policy.matches(d)) {
                    continue;
                }
            }
            let mut attrs = attributes.clone();
            attrs.extend([
                (TOPIC.to_string(), topic.to_string()),
                (SUBSCRIPTION.to_string(), sub.name.clone()),
                (MESSAGE_ID.to_string(), id.clone()),
            ]);
            if let Some(s) = subject {
                attrs.push((SUBJECT.into(), s.to_string()));
            }
            let dedup = key.map(|k| format!("{topic}/{}/{k}", sub.name));
            let (queue, attrs) = match &sub.endpoint {
                Endpoint::Function(target) => {
                    // Whatever published it (an API client, a CloudEvent route, a schedule, a
                    // destination), the function gets a topic message.
                    let (f, qualifier) = split_qualified(target);
                    attrs.retain(|(k, _)| k != KIND && k != QUALIFIER);
                    attrs.push((KIND.into(), "topic".into()));
                    attrs.extend(qualifier.map(|q| (QUALIFIER.to_string(), q.to_string())));
                    (fn_key(f), attrs)
                }
                Endpoint::Queue(q) => (q_key(q), attrs),
                Endpoint::Webhook(_) => (format!("wh:{topic}/{}", sub.name), attrs),
            };
            out.push(NewMessage {
                queue,
                body: body.to_vec(),
                attributes: attrs,
                deliver_after_ms: 0,
                dedup_key: dedup,
            });
        }
        Ok(id)
    }

    /// Accepts an asynchronous invocation; returns its id (the same id for a repeated key).
    pub async fn invoke_async(
        &self,
        function: &str,
        qualifier: Option<&str>,
        payload: Bytes,
        idempotency_key: Option<String>,
        traceparent: Option<String>,
    ) -> Result<String> {
        let mut attributes = traced(Vec::new(), traceparent);
        attributes.extend(qualifier.map(|q| (QUALIFIER.to_string(), q.to_string())));
        let topo = self.topology();
        let mut out = Vec::with_capacity(1);
        self.route(
            &topo,
            &Target::Function(function.to_string()),
            Publication {
                body: &payload,
                attributes,
                subject: None,
                key: idempotency_key.as_deref(),
            },
            &mut out,
        )?;
        Ok(self.append(out).await?.remove(0))
    }

    /// Sends messages to a queue, all in one commit; returns their ids.
    pub async fn send(&self, queue: &str, messages: Vec<Outgoing>) -> Result<Vec<String>> {
        let topo = self.topology();
        let spec = topo
            .queues
            .get(queue)
            .ok_or_else(|| EventError::NotFound(format!("no queue named `{queue}`")))?;
        let now = now_ms();
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            Self::check_size(&m.body)?;
            let delay = m.delay_ms.unwrap_or(spec.delay_ms);
            if delay > nimbus_core::events::MAX_DELAY_MS {
                return Err(EventError::Invalid(
                    "delay must be at most 15 minutes".into(),
                ));
            }
            out.push(NewMessage {
                queue: q_key(queue),
                body: m.body,
                attributes: traced(with_types(&m.attributes, &m.data_types), m.traceparent),
                deliver_after_ms: now + delay as i64,
                dedup_key: m.idempotency_key,
            });
        }
        self.append(out).await
    }

    /// Publishes messages to a topic, all in one commit; returns their message ids.
    pub async fn publish(&self, topic: &str, messages: Vec<Outgoing>) -> Result<Vec<String>> {
        let topo = self.topology();
        let mut out = Vec::new();
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            Self::check_size(&m.body)?;
            ids.push(self.fan_out(
                &topo,
                topic,
                Publication {
                    body: &m.body,
                    attributes: traced(with_types(&m.attributes, &m.data_types), m.traceparent),
                    subject: m.subject.as_deref(),
                    key: m.idempotency_key.as_deref(),
                },
                &mut out,
            )?);
        }
        self.append(out).await?;
        Ok(ids)
    }

    /// Accepts CloudEvents, routing each by type and source, all in one commit. An event no
    /// route takes fails the whole request (nothing is accepted). A repeated `source` + `id`
    /// within the dedup window is accepted once.
    pub async fn ingest(&self, events: Vec<CloudEvent>) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        let topo = self.topology();
        let mut out = Vec::new();
        for e in &events {
            Self::check_size(&e.data)?;
            let targets: Vec<&Target> = topo
                .routes
                .iter()
                .filter(|r| r.matches(&e.ty, &e.source))
                .map(|r| &r.target)
                .collect();
            if targets.is_empty() {
                return Err(EventError::NotFound(format!(
                    "no CloudEvents route takes type `{}` from source `{}`; declare one under \
                     [[cloudevents]] in nimbus.toml",
                    e.ty, e.source
                )));
            }
            let key = format!("ce\n{}\n{}", e.source, e.id);
            for target in targets {
                let mut attrs = e.to_attributes();
                attrs.push((KIND.into(), "event".into()));
                // Its context attributes are also the message's attributes: what topic filter
                // policies see and what queue receivers get.
                let mut context = vec![
                    ("type".to_string(), e.ty.clone()),
                    ("source".to_string(), e.source.clone()),
                    ("id".to_string(), e.id.clone()),
                ];
                context.push(("specversion".to_string(), "1.0".to_string()));
                let optional = [
                    ("subject", &e.subject),
                    ("time", &e.time),
                    ("datacontenttype", &e.datacontenttype),
                    ("dataschema", &e.dataschema),
                ];
                for (k, v) in optional {
                    context.extend(v.iter().map(|v| (k.to_string(), v.clone())));
                }
                context.extend(e.extensions.iter().cloned());
                attrs.extend(prefixed(&context));
                let m = Publication {
                    body: &e.data,
                    attributes: attrs,
                    subject: None,
                    key: Some(&key),
                };
                self.route(&topo, target, m, &mut out)?;
            }
        }
        self.append(out).await?;
        Ok(events.len())
    }
}

/// `attributes` with the trace context they were accepted under, if any.
fn traced(
    mut attributes: Vec<(String, String)>,
    traceparent: Option<String>,
) -> Vec<(String, String)> {
    attributes.extend(traceparent.map(|t| (TRACEPARENT.to_string(), t)));
    attributes
}
