//! The [`Engine`]: acceptance (append before acknowledging) and the consumers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use nimbus_aws::events::{self as aws, Condition};
use nimbus_core::Trigger;
use nimbus_core::api::InvocationStatus;
use nimbus_core::events::{CatchUp, Endpoint, FilterScope, QueueSpec, Target};
use nimbus_core::schedule::Schedule;
use nimbus_log::{Delivery, LogError, MessageLog, MessageState, NewMessage, Outcome, Settle};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cloudevent::{CloudEvent, is_extension_name};
use crate::policy::{self, TickPlan, Verdict};
use crate::topology::Topology;
use crate::{Call, CallFailure, Invoker, webhook};

/// How often an idle consumer looks again (delayed messages, retries and expired leases
/// become visible with time, not with an append).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Attempts of a webhook delivery before it is given up.
const WEBHOOK_ATTEMPTS: u32 = 5;
/// Largest result kept in the ledger.
const MAX_LEDGER_RESULT: usize = 64 * 1024;

// Attribute names inside log messages. User attributes are prefixed `a:`, the engine's own
// `n:`; CloudEvents attributes use their binary-mode header names (`ce-*`, `content-type`).
const USER: &str = "a:";
const KIND: &str = "n:kind";
const ORIGIN: &str = "n:origin";
const TOPIC: &str = "n:topic";
const SUBSCRIPTION: &str = "n:sub";
const MESSAGE_ID: &str = "n:msgid";
const SUBJECT: &str = "n:subject";
const SCHEDULE: &str = "n:schedule";

/// Errors of event operations, each meant for the caller.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No such function, queue or topic.
    #[error("{0}")]
    NotFound(String),
    /// Malformed input.
    #[error("{0}")]
    Invalid(String),
    /// Over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The log failed.
    #[error("event log: {0}")]
    Backend(String),
}

impl From<LogError> for EventError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::StaleReceipt(q) => EventError::Invalid(format!(
                "the receipt is not a current lease in queue `{}` (deleted, expired or never issued)",
                q.trim_start_matches("q:")
            )),
            LogError::Backend(m) => EventError::Backend(m),
        }
    }
}

type Result<T, E = EventError> = std::result::Result<T, E>;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Region in ARNs of AWS-shaped events.
    pub region: String,
    /// Master secret webhook subscription secrets derive from.
    pub master_secret: Vec<u8>,
    /// First retry backoff (doubles per retry, with jitter).
    pub retry_base_ms: u64,
    /// How long settled async invocations stay in the ledger.
    pub ledger_retention_ms: i64,
}

/// A message to send to a queue or publish to a topic.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// Body.
    pub body: Vec<u8>,
    /// Attributes.
    pub attributes: Vec<(String, String)>,
    /// Subject (topics).
    pub subject: Option<String>,
    /// Delivery delay (queues; default: the queue's).
    pub delay_ms: Option<u64>,
    /// Idempotency key: a repeat within the window is not accepted again.
    pub idempotency_key: Option<String>,
}

/// A message received from a queue through the API.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// Message id.
    pub id: String,
    /// Receipt for delete/visibility changes.
    pub receipt: String,
    /// Body (UTF-8 lossy).
    pub body: String,
    /// Attributes.
    pub attributes: Map<String, Value>,
    /// Deliveries so far, this one included.
    pub receive_count: u32,
    /// When it was sent, unix ms.
    pub sent_ms: i64,
}

/// A queue with its depth.
#[derive(Debug, Clone, Serialize)]
pub struct QueueInfo {
    /// Settings.
    #[serde(flatten)]
    pub spec: QueueSpec,
    /// Messages not yet deleted.
    pub messages: u64,
    /// Of those, received and invisible.
    pub in_flight: u64,
    /// Age of the oldest message, ms.
    pub oldest_age_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ConsumerKey {
    Async(String),
    Trigger(String, String),
    Webhook(String, String),
}

impl ConsumerKey {
    fn log_queue(&self) -> String {
        match self {
            ConsumerKey::Async(f) => fn_key(f),
            ConsumerKey::Trigger(_, q) => q_key(q),
            ConsumerKey::Webhook(t, s) => format!("wh:{t}/{s}"),
        }
    }
}

struct ConsumerParams {
    batch: usize,
    window_ms: u64,
    lease_ms: i64,
    concurrency: usize,
}

fn q_key(q: &str) -> String {
    format!("q:{q}")
}

fn fn_key(f: &str) -> String {
    format!("fn:{f}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The user attributes of a message, unprefixed.
fn user_attributes(attrs: &[(String, String)]) -> Vec<(String, String)> {
    attrs
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(USER)?.to_string(), v.clone())))
        .collect()
}

fn prefixed(attrs: &[(String, String)]) -> Vec<(String, String)> {
    attrs
        .iter()
        .map(|(k, v)| (format!("{USER}{k}"), v.clone()))
        .collect()
}

fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A deterministic message id for an idempotent publish: the same key gives the same id.
fn keyed_id(scope: &str, key: &str) -> String {
    let digest = nimbus_core::sha256_hex(format!("{scope}\n{key}").as_bytes());
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digest[i * 2..i * 2 + 2], 16).unwrap_or(0);
    }
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The engine. Create with [`Engine::new`], feed it a [`Topology`] with [`Engine::apply`].
pub struct Engine {
    log: Arc<dyn MessageLog>,
    invoker: Arc<dyn Invoker>,
    config: EngineConfig,
    topology: ArcSwap<Topology>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    consumers: Mutex<HashMap<ConsumerKey, CancellationToken>>,
    stop: CancellationToken,
    tasks: TaskTracker,
    http: reqwest::Client,
}

impl Engine {
    /// An engine on `log`, running functions through `invoker`. Leases left by an earlier run
    /// are released (this node is the only consumer). Start it with [`Engine::apply`].
    pub fn new(
        log: Arc<dyn MessageLog>,
        invoker: Arc<dyn Invoker>,
        config: EngineConfig,
    ) -> Result<Arc<Self>> {
        let released = log.release_leases(now_ms())?;
        if released > 0 {
            tracing::info!(released, "redelivering messages leased before a restart");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| EventError::Backend(e.to_string()))?;
        let engine = Arc::new(Self {
            log,
            invoker,
            config,
            topology: ArcSwap::from_pointee(Topology::default()),
            wakers: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            http,
        });
        let e = engine.clone();
        engine.tasks.spawn(async move { e.scheduler().await });
        let e = engine.clone();
        engine.tasks.spawn(async move { e.housekeeping().await });
        Ok(engine)
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    /// Makes `topology` current and starts/stops consumers to match it.
    pub fn apply(self: &Arc<Self>, topology: Topology) {
        let mut wanted: HashSet<ConsumerKey> = topology
            .functions
            .keys()
            .map(|f| ConsumerKey::Async(f.clone()))
            .collect();
        for t in &topology.triggers {
            wanted.insert(ConsumerKey::Trigger(t.function.clone(), t.queue.clone()));
        }
        for (name, topic) in &topology.topics {
            for (s, _) in &topic.subscriptions {
                if let Endpoint::Webhook(_) = s.endpoint {
                    wanted.insert(ConsumerKey::Webhook(name.clone(), s.name.clone()));
                }
            }
        }
        self.topology.store(Arc::new(topology));
        let mut running = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|key, token| {
            let keep = wanted.contains(key);
            if !keep {
                token.cancel();
            }
            keep
        });
        for key in wanted {
            if running.contains_key(&key) || self.stop.is_cancelled() {
                continue;
            }
            let token = self.stop.child_token();
            running.insert(key.clone(), token.clone());
            let e = self.clone();
            self.tasks.spawn(async move { e.consume(key, token).await });
        }
    }

    /// Stops every consumer and waits (up to `grace`) for running work to settle.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
    }

    /// The secret webhook deliveries of `topic`/`subscription` are signed with.
    pub fn webhook_secret(&self, topic: &str, subscription: &str) -> String {
        webhook::secret(&self.config.master_secret, topic, subscription)
    }

    fn waker(&self, log_queue: &str) -> Arc<Notify> {
        self.wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(log_queue.to_string())
            .or_default()
            .clone()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn MessageLog) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T> {
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || f(log.as_ref()))
            .await
            .map_err(|e| EventError::Backend(e.to_string()))?
            .map_err(EventError::from)
    }

    /// Appends durably, then wakes the consumers of the queues written.
    async fn append(&self, messages: Vec<NewMessage>) -> Result<Vec<String>> {
        let queues: HashSet<String> = messages.iter().map(|m| m.queue.clone()).collect();
        let now = now_ms();
        let ids = self.blocking(move |log| log.append(messages, now)).await?;
        for q in queues {
            self.waker(&q).notify_one();
        }
        Ok(ids)
    }

    // ---- acceptance ----

    fn check_size(body: &[u8]) -> Result<()> {
        if body.len() > nimbus_core::events::MAX_MESSAGE_BYTES {
            return Err(EventError::TooLarge(format!(
                "message body is {} bytes; the limit is {} bytes",
                body.len(),
                nimbus_core::events::MAX_MESSAGE_BYTES
            )));
        }
        Ok(())
    }

    /// Messages delivering `body` to `target`, appended to `out`.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        topo: &Topology,
        target: &Target,
        body: &[u8],
        attributes: Vec<(String, String)>,
        subject: Option<&str>,
        key: Option<&str>,
        out: &mut Vec<NewMessage>,
    ) -> Result<()> {
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
                    attributes,
                    deliver_after_ms: now + spec.delay_ms as i64,
                    dedup_key: key.map(str::to_string),
                });
            }
            Target::Function(f) => {
                if !topo.functions.contains_key(f) {
                    return Err(EventError::NotFound(format!("no function named `{f}`")));
                }
                let mut attributes = attributes;
                if attr(&attributes, KIND).is_none() {
                    attributes.push((KIND.into(), "async".into()));
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
                self.fan_out(topo, t, body, attributes, subject, key, out)?;
            }
        }
        Ok(())
    }

    /// One message per subscription of `topic` whose filter matches; returns the message id.
    #[allow(clippy::too_many_arguments)]
    fn fan_out(
        &self,
        topo: &Topology,
        topic: &str,
        body: &[u8],
        attributes: Vec<(String, String)>,
        subject: Option<&str>,
        key: Option<&str>,
        out: &mut Vec<NewMessage>,
    ) -> Result<String> {
        let resolved = topo
            .topics
            .get(topic)
            .ok_or_else(|| EventError::NotFound(format!("no topic named `{topic}`")))?;
        let id = match key {
            Some(k) => keyed_id(topic, k),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let user = user_attributes(&attributes);
        let attribute_doc: Map<String, Value> =
            user.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
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
                Endpoint::Function(f) => {
                    // Whatever published it (an API client, a CloudEvent route, a schedule, a
                    // destination), the function gets a topic message.
                    attrs.retain(|(k, _)| k != KIND);
                    attrs.push((KIND.into(), "topic".into()));
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
        payload: Bytes,
        idempotency_key: Option<String>,
    ) -> Result<String> {
        let topo = self.topology();
        let mut out = Vec::with_capacity(1);
        self.route(
            &topo,
            &Target::Function(function.to_string()),
            &payload,
            Vec::new(),
            None,
            idempotency_key.as_deref(),
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
            if delay > 900_000 {
                return Err(EventError::Invalid(
                    "delay must be at most 15 minutes".into(),
                ));
            }
            out.push(NewMessage {
                queue: q_key(queue),
                body: m.body,
                attributes: prefixed(&m.attributes),
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
                &m.body,
                prefixed(&m.attributes),
                m.subject.as_deref(),
                m.idempotency_key.as_deref(),
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
                context.extend(e.subject.iter().map(|s| ("subject".to_string(), s.clone())));
                attrs.extend(prefixed(&context));
                self.route(&topo, target, &e.data, attrs, None, Some(&key), &mut out)?;
            }
        }
        self.append(out).await?;
        Ok(events.len())
    }

    // ---- queues through the API ----

    fn queue_spec(&self, queue: &str) -> Result<QueueSpec> {
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
        let lease = visibility_ms.unwrap_or(spec.visibility_timeout_ms) as i64;
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
        let key = q_key(queue);
        let now = now_ms();
        self.blocking(move |log| log.extend(&key, &receipt, ms as i64, now))
            .await?;
        self.waker(&q_key(queue)).notify_one();
        Ok(())
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
            for d in batch {
                match attr(&d.attributes, ORIGIN) {
                    Some(origin) => {
                        let attributes = d
                            .attributes
                            .iter()
                            .filter(|(k, _)| k != ORIGIN && !k.starts_with("a:Error"))
                            .cloned()
                            .collect();
                        out.push(NewMessage {
                            queue: origin.to_string(),
                            body: d.body,
                            attributes,
                            deliver_after_ms: 0,
                            dedup_key: None,
                        });
                        settles.push(Settle {
                            receipt: d.receipt,
                            outcome: None,
                        });
                    }
                    None => {
                        // Sent here directly: it has nowhere to go back to. Leave it.
                        let (k, r) = (key.clone(), d.receipt);
                        self.blocking(move |log| log.extend(&k, &r, 0, now)).await?;
                        return Ok(moved);
                    }
                }
            }
            moved += out.len() as u64;
            self.append(out).await?;
            let k = key.clone();
            self.blocking(move |log| log.settle(&k, settles, now))
                .await?;
        }
    }

    /// Moves deliveries of `queue` past its `max_receive_count` to its dead-letter queue and
    /// returns the rest.
    async fn screen(&self, queue: &str, deliveries: Vec<Delivery>) -> Result<Vec<Delivery>> {
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
            let mut attributes = d.attributes;
            attributes.retain(|(k, _)| k != ORIGIN);
            attributes.push((ORIGIN.into(), q_key(queue)));
            out.push(NewMessage {
                queue: q_key(dlq),
                body: d.body,
                attributes,
                deliver_after_ms: 0,
                dedup_key: None,
            });
            settles.push(Settle {
                receipt: d.receipt,
                outcome: None,
            });
        }
        tracing::warn!(queue, dead_letter = %dlq, messages = out.len(), "moved poison messages to the dead-letter queue");
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

    // ---- consumers ----

    fn params(&self, key: &ConsumerKey) -> Option<ConsumerParams> {
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
    async fn consume(self: Arc<Self>, key: ConsumerKey, cancel: CancellationToken) {
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
    async fn fetch(
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
                // Nothing deliverable: wait for an append, or look again (delays, retries and
                // lapsed leases become visible with time).
                tokio::select! {
                    () = waker.notified() => {},
                    () = tokio::time::sleep(IDLE_POLL) => {},
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

    async fn settler(self: Arc<Self>, queue: String, mut rx: mpsc::UnboundedReceiver<Settle>) {
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

    async fn handle(&self, key: &ConsumerKey, unit: Vec<Delivery>) -> Vec<Settle> {
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
    fn render(&self, function: &str, process: bool, d: &Delivery) -> Call {
        let kind = attr(&d.attributes, KIND).unwrap_or("async");
        let record_id = if d.receive_count <= 1 {
            d.id.clone()
        } else {
            format!("{}-{}", d.id, d.receive_count)
        };
        let mut call = Call {
            function: function.to_string(),
            record_id,
            trigger: Trigger::Async {
                invocation: d.id.clone(),
                attempt: d.receive_count,
            },
            payload: Bytes::from(d.body.clone()),
            headers: Vec::new(),
        };
        match kind {
            "topic" => {
                let topic = attr(&d.attributes, TOPIC).unwrap_or_default();
                let id = attr(&d.attributes, MESSAGE_ID).unwrap_or(&d.id);
                call.trigger = Trigger::Topic {
                    topic: topic.to_string(),
                };
                let user = user_attributes(&d.attributes);
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
                            published_ms: d.appended_ms,
                        },
                    );
                    call.payload = Bytes::from(event.to_string());
                } else if let Some(e) = CloudEvent::from_attributes(&d.attributes, Vec::new()) {
                    // A CloudEvent published through a topic reaches wasm functions as itself.
                    call.headers = e.to_attributes();
                } else {
                    call.headers = vec![
                        ("ce-id".into(), id.to_string()),
                        ("ce-source".into(), format!("/topics/{topic}")),
                        ("ce-type".into(), "nimbus.topic.message".into()),
                    ];
                    if let Some(s) = attr(&d.attributes, SUBJECT) {
                        call.headers.push(("ce-subject".into(), s.to_string()));
                    }
                    for (k, v) in user {
                        let k = k.to_ascii_lowercase();
                        if is_extension_name(&k) {
                            call.headers.push((format!("ce-{k}"), v));
                        }
                    }
                }
            }
            "schedule" => {
                let schedule = attr(&d.attributes, SCHEDULE).unwrap_or_default();
                call.trigger = Trigger::Schedule {
                    schedule: schedule.to_string(),
                };
                call.headers = vec![
                    ("ce-id".into(), d.id.clone()),
                    ("ce-source".into(), format!("/schedules/{schedule}")),
                    ("ce-type".into(), "nimbus.schedule.tick".into()),
                    ("content-type".into(), "application/json".into()),
                ];
            }
            "event" => {
                let event = CloudEvent::from_attributes(&d.attributes, d.body.clone());
                if let Some(e) = event {
                    call.trigger = Trigger::Event { ty: e.ty.clone() };
                    if process {
                        call.payload = Bytes::from(e.to_json().to_string());
                    } else {
                        call.headers = e.to_attributes();
                    }
                }
            }
            _ => {}
        }
        call
    }

    async fn handle_async(&self, function: &str, d: Delivery) -> Option<Settle> {
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
                            let (q, r) = (fn_key(function), d.receipt.clone());
                            let now = now_ms();
                            if let Err(e) = self
                                .blocking(move |log| log.extend(&q, &r, after_ms as i64, now))
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
            if let Err(e) = self.route(
                &topo,
                &dest,
                record.to_string().as_bytes(),
                vec![(KIND.into(), "async".into())],
                None,
                None,
                &mut out,
            ) {
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

    async fn handle_batch(&self, function: &str, queue: &str, unit: Vec<Delivery>) -> Vec<Settle> {
        let topo = self.topology();
        let Some(target) = topo.functions.get(function) else {
            return Vec::new();
        };
        let users: Vec<Vec<(String, String)>> = unit
            .iter()
            .map(|d| user_attributes(&d.attributes))
            .collect();
        let messages: Vec<aws::SqsMessage<'_>> = unit
            .iter()
            .zip(&users)
            .map(|(d, attrs)| aws::SqsMessage {
                id: &d.id,
                receipt: &d.receipt,
                body: &d.body,
                attributes: attrs,
                receive_count: d.receive_count,
                sent_ms: d.appended_ms,
            })
            .collect();
        let event = aws::sqs_event(&self.config.region, queue, &messages, now_ms());
        let call = Call {
            function: function.to_string(),
            // Named after the batch's first message and its delivery: unique, and the UUIDv7
            // prefix dates the batch's oldest acceptance.
            record_id: format!("{}-b{}", unit[0].id, unit[0].receive_count),
            trigger: Trigger::Queue {
                queue: queue.to_string(),
            },
            payload: Bytes::from(event.to_string()),
            headers: if target.process {
                Vec::new()
            } else {
                vec![
                    ("ce-id".into(), unit[0].id.clone()),
                    ("ce-source".into(), format!("/queues/{queue}")),
                    ("ce-type".into(), "nimbus.queue.batch".into()),
                    ("content-type".into(), "application/json".into()),
                ]
            },
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

    async fn handle_webhook(&self, topic: &str, subscription: &str, d: Delivery) -> Option<Settle> {
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
        for (k, v) in user_attributes(&d.attributes) {
            if http::HeaderName::try_from(format!("x-nimbus-attr-{k}")).is_ok() {
                request = request.header(format!("x-nimbus-attr-{k}"), v);
            }
        }
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
        let (q, r) = (format!("wh:{topic}/{subscription}"), d.receipt);
        let now = now_ms();
        let _ = self
            .blocking(move |log| log.extend(&q, &r, after as i64, now))
            .await;
        None
    }

    // ---- schedules and housekeeping ----

    async fn scheduler(self: Arc<Self>) {
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

    async fn tick(&self, topo: &Topology, s: &nimbus_core::events::ScheduleSpec) -> Result<()> {
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
                self.route(
                    topo,
                    &s.target,
                    body.as_bytes(),
                    vec![
                        (KIND.into(), "schedule".into()),
                        (SCHEDULE.into(), s.name.clone()),
                    ],
                    None,
                    Some(&id),
                    &mut out,
                )?;
                tracing::info!(schedule = %s.name, tick_ms = t, "schedule fired");
                (out, t)
            }
        };
        let queues: HashSet<String> = messages.iter().map(|m| m.queue.clone()).collect();
        self.blocking(move |log| log.append_with_cursor(messages, (&cursor_name, value), now))
            .await?;
        for q in queues {
            self.waker(&q).notify_one();
        }
        Ok(())
    }

    async fn housekeeping(self: Arc<Self>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_ids_are_stable_per_scope_and_key() {
        assert_eq!(keyed_id("t", "k"), keyed_id("t", "k"));
        assert_ne!(keyed_id("t", "k"), keyed_id("t", "k2"));
        assert_ne!(keyed_id("t", "k"), keyed_id("u", "k"));
        assert!(uuid::Uuid::parse_str(&keyed_id("t", "k")).is_ok());
    }

    #[test]
    fn user_attributes_are_namespaced() {
        let attrs = prefixed(&[("type".into(), "order".into())]);
        let mut all = attrs.clone();
        all.push((KIND.into(), "topic".into()));
        assert_eq!(user_attributes(&all), [("type".into(), "order".into())]);
    }
}
