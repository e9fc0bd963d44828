//! The [`Engine`]: acceptance (append before acknowledging) and the consumers.

mod accept;
mod consume;
mod queues;
mod schedule;

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

/// How often an API long-poll on an empty queue looks again.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Longest an idle consumer sleeps: it is woken by appends and lease changes, and knows when
/// the next delay or lease ends ([`MessageLog::next_visible`]); this bounds what a change
/// nothing announced (another process writing the log) can wait.
const IDLE_MAX: Duration = Duration::from_secs(30);
/// Attempts of a webhook delivery before it is given up.
const WEBHOOK_ATTEMPTS: u32 = 5;
/// Largest result kept in the ledger.
const MAX_LEDGER_RESULT: usize = 64 * 1024;

// Attribute names inside log messages. User attributes are prefixed `a:`, the engine's own
// `n:`; CloudEvents attributes use their binary-mode header names (`ce-*`, `content-type`).
use nimbus_core::events::split_qualified;

const USER: &str = "a:";
/// The SNS data type of user attribute `KEY` (`t:KEY`), when it is not `String`.
const DATA_TYPE: &str = "t:";
const KIND: &str = "n:kind";
const ORIGIN: &str = "n:origin";
const TOPIC: &str = "n:topic";
const SUBSCRIPTION: &str = "n:sub";
const MESSAGE_ID: &str = "n:msgid";
const SUBJECT: &str = "n:subject";
const SCHEDULE: &str = "n:schedule";
/// The W3C `traceparent` an event was accepted under, handed on to the invocation it causes.
const TRACEPARENT: &str = "n:traceparent";
/// The version or alias an async invocation asked for.
const QUALIFIER: &str = "n:qualifier";

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
    /// The disk is full: new events are refused until space is freed.
    #[error(
        "the node's disk is full: new events are refused until space is freed; receiving and deleting messages still work"
    )]
    Full,
    /// The log (or the task running it) failed.
    #[error("event log: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl From<LogError> for EventError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::StaleReceipt(q) => EventError::Invalid(format!(
                "the receipt is not a current lease in queue `{}` (deleted, expired or never issued)",
                q.trim_start_matches("q:")
            )),
            LogError::Backend(m) => EventError::Backend(m),
            LogError::Full => EventError::Full,
        }
    }
}

type Result<T, E = EventError> = std::result::Result<T, E>;

/// Settings of the engine.
#[derive(Clone)]
pub struct EngineConfig {
    /// Region in ARNs of AWS-shaped events.
    pub region: String,
    /// Master secret webhook subscription secrets derive from.
    pub master_secret: Vec<u8>,
    /// First retry backoff (doubles per retry, with jitter).
    pub retry_base_ms: u64,
    /// How long settled async invocations stay in the ledger.
    pub ledger_retention_ms: i64,
    /// Told about retries, dead letters and failed webhooks.
    pub observer: Option<Arc<dyn crate::DeliveryObserver>>,
}

/// A message to send to a queue or publish to a topic.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// Body.
    pub body: Vec<u8>,
    /// Attributes.
    pub attributes: Vec<(String, String)>,
    /// SNS data types (`Number`, `String.Array`, `Binary`, ...) of attributes that are not
    /// `String`.
    pub data_types: Vec<(String, String)>,
    /// Subject (topics).
    pub subject: Option<String>,
    /// Delivery delay (queues; default: the queue's).
    pub delay_ms: Option<u64>,
    /// Idempotency key: a repeat within the window is not accepted again.
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` the message was sent under; invocations it causes continue it.
    pub traceparent: Option<String>,
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

/// One message on its way to a target, before routing.
struct Publication<'a> {
    body: &'a [u8],
    /// Attributes in the log's namespaces (`a:` user, `n:` engine, `ce-` CloudEvents).
    attributes: Vec<(String, String)>,
    subject: Option<&'a str>,
    /// Idempotency key.
    key: Option<&'a str>,
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

use nimbus_core::clock::now_ms;

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

/// A message's user attributes in the log's namespaces: `a:KEY` values and `t:KEY` types.
fn with_types(attrs: &[(String, String)], types: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = prefixed(attrs);
    out.extend(
        types
            .iter()
            .filter(|(_, t)| t != "String")
            .map(|(k, t)| (format!("{DATA_TYPE}{k}"), t.clone())),
    );
    out
}

/// The data types recorded with a message's user attributes (`String` ones are not recorded).
fn data_types(attrs: &[(String, String)]) -> Vec<(String, String)> {
    attrs
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(DATA_TYPE)?.to_string(), v.clone())))
        .collect()
}

/// The document a filter policy's `attributes` scope sees: typed values, `Binary` left out.
fn attribute_document(attrs: &[(String, String)]) -> Map<String, Value> {
    let types = data_types(attrs);
    user_attributes(attrs)
        .into_iter()
        .filter_map(|(k, v)| {
            let ty = types
                .iter()
                .find(|(t, _)| *t == k)
                .map_or("String", |(_, t)| t.as_str());
            Some((k, nimbus_core::filter::attribute_value(ty, &v)?))
        })
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
            .map_err(|e| EventError::Backend(Arc::new(e)))?;
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

    fn observe(&self, event: crate::DeliveryEvent, target: &str) {
        if let Some(o) = &self.config.observer {
            o.observe(event, target);
        }
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
            .map_err(|e| EventError::Backend(Arc::new(e)))?
            .map_err(EventError::from)
    }

    /// Moves the end of a lease to `lease_ms` from now (0: visible now), then wakes the queue's
    /// consumer, which may be sleeping until a later time (see `fetch`).
    async fn extend_lease(&self, log_queue: String, receipt: String, lease_ms: i64) -> Result<()> {
        let (q, now) = (log_queue.clone(), now_ms());
        self.blocking(move |log| log.extend(&q, &receipt, lease_ms, now))
            .await?;
        self.waker(&log_queue).notify_one();
        Ok(())
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
