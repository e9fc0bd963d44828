//! Event resources: queues, topics with subscriptions, schedules, queue triggers, CloudEvents
//! routes, and each function's asynchronous-invocation policy. Declared in `nimbus.toml` (and
//! deployed with the app) or created alone through the API; stored as JSON.
//!
//! ```toml
//! [functions.worker]
//! max_retries = 2                   # async invocations: retries after the first attempt (0..=10)
//! max_event_age = "6h"              # give up on events older than this (1m..=6h)
//! on_success = { queue = "done" }   # destinations: { queue | topic | function = "name" }
//! on_failure = { topic = "alerts" }
//! dead_letter = "worker-dlq"        # queue for events that failed every attempt
//! triggers = [{ queue = "orders", batch_size = 10, batching_window = "1s" }]
//!
//! [queues.orders]
//! visibility_timeout = "30s"        # default 30s
//! delay = "0s"                      # default delivery delay
//! max_receive_count = 5             # then the message moves to `dead_letter`
//! dead_letter = "orders-dlq"
//!
//! [topics.shop]
//! subscriptions = [
//!   { name = "orders", function = "worker", filter = { type = ["order"] } },
//!   { name = "audit", queue = "audit" },
//!   { name = "hook", webhook = "http://127.0.0.1:9000/hook", filter_scope = "body",
//!     filter = { total = [{ numeric = [">", 100] }] } },
//! ]
//!
//! [schedules.nightly]
//! expression = "cron(0 3 * * ? *)"  # or rate(5 minutes)
//! timezone = "Europe/Paris"         # default UTC
//! target = { function = "report" }
//! catch_up = "once"                 # after downtime: fire once (default) or "skip"
//! enabled = true
//!
//! [[cloudevents]]                   # routes for POST /v1/events
//! type = "com.example.order.*"      # exact, or a prefix ending in `*`
//! source = "/shop"                  # optional, exact
//! target = { topic = "shop" }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::filter::FilterPolicy;
use crate::manifest::{Problem, is_valid_name};
use crate::schedule::Schedule;

/// Default visibility timeout of a queue.
pub const DEFAULT_VISIBILITY_MS: u64 = 30_000;
/// Default retries of an async invocation after its first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default (and greatest) age of an async event before it is given up.
pub const MAX_EVENT_AGE_MS: u64 = 6 * 3600 * 1000;
/// Largest message body a queue or topic accepts (as SQS: 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Longest a received message stays invisible (as SQS: 12 hours), in every place one is set.
pub const MAX_VISIBILITY_MS: u64 = 12 * 3600 * 1000;
/// Longest delivery delay of a queue message (as SQS: 15 minutes).
pub const MAX_DELAY_MS: u64 = 15 * 60 * 1000;
/// Largest batch a queue trigger may ask for.
pub const MAX_BATCH_SIZE: u32 = 1000;

/// Where an event goes: a queue, a topic or a function (invoked asynchronously).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A queue.
    Queue(String),
    /// A topic.
    Topic(String),
    /// A function, invoked asynchronously.
    Function(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Queue(n) => write!(f, "queue `{n}`"),
            Target::Topic(n) => write!(f, "topic `{n}`"),
            Target::Function(n) => write!(f, "function `{n}`"),
        }
    }
}

/// A function's policy for asynchronous invocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Events older than this are not tried again.
    pub max_event_age_ms: u64,
    /// Where a success's result goes.
    pub on_success: Option<Target>,
    /// Where a final failure goes.
    pub on_failure: Option<Target>,
    /// Queue that receives events that failed every attempt (with or without `on_failure`).
    pub dead_letter: Option<String>,
}

impl AsyncPolicy {
    /// Whether this is the default policy (left out of stored configs).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for AsyncPolicy {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            max_event_age_ms: MAX_EVENT_AGE_MS,
            on_success: None,
            on_failure: None,
            dead_letter: None,
        }
    }
}

/// A queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    /// Queue name.
    pub name: String,
    /// How long a received message stays invisible before it is delivered again.
    pub visibility_timeout_ms: u64,
    /// Default delivery delay of new messages.
    pub delay_ms: u64,
    /// Deliveries after which a message moves to `dead_letter` (needs `dead_letter`).
    pub max_receive_count: Option<u32>,
    /// Dead-letter queue.
    pub dead_letter: Option<String>,
}

impl QueueSpec {
    /// A queue with default settings.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            visibility_timeout_ms: DEFAULT_VISIBILITY_MS,
            delay_ms: 0,
            max_receive_count: None,
            dead_letter: None,
        }
    }
}

/// Where a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// Invoke a function asynchronously.
    Function(String),
    /// Send to a queue.
    Queue(String),
    /// POST to a URL, signed with the subscription's secret, retried.
    Webhook(String),
}

/// What a filter policy is matched against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterScope {
    /// The message attributes.
    #[default]
    Attributes,
    /// The message body (JSON).
    Body,
}

/// A topic subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    /// Name, unique within the topic.
    pub name: String,
    /// Where matching messages go.
    pub endpoint: Endpoint,
    /// SNS-style filter policy (JSON text), if any.
    pub filter: Option<String>,
    /// What the filter sees.
    pub filter_scope: FilterScope,
}

impl SubscriptionSpec {
    /// The parsed filter policy (validated when the subscription was accepted).
    pub fn policy(&self) -> Option<FilterPolicy> {
        let text = self.filter.as_deref()?;
        FilterPolicy::parse(&serde_json::from_str(text).ok()?).ok()
    }
}

/// A topic and its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Subscriptions.
    pub subscriptions: Vec<SubscriptionSpec>,
}

/// After downtime, what a schedule does about ticks it missed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Fire once for all missed ticks (as the latest one), then resume.
    #[default]
    Once,
    /// Skip missed ticks.
    Skip,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Schedule name.
    pub name: String,
    /// `rate(...)` or `cron(...)`.
    pub expression: String,
    /// IANA time zone for cron fields.
    pub timezone: String,
    /// What each tick triggers.
    pub target: Target,
    /// Whether it fires.
    pub enabled: bool,
    /// Missed-tick policy.
    pub catch_up: CatchUp,
}

/// A queue trigger: a function invoked with batches from a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTrigger {
    /// The function.
    pub function: String,
    /// The queue.
    pub queue: String,
    /// Most messages per invocation.
    pub batch_size: u32,
    /// How long to wait to fill a batch.
    pub window_ms: u64,
    /// The published version or alias the batches go to (`None`: `$LATEST`), as an event
    /// source mapping on an alias ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
}

/// A CloudEvents route: events whose type (and source) match go to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRoute {
    /// Exact type, or a prefix ending in `*`.
    pub type_pattern: String,
    /// Exact source, if any.
    pub source: Option<String>,
    /// Where matching events go.
    pub target: Target,
}

impl EventRoute {
    /// Whether an event of `ty` from `source` takes this route.
    pub fn matches(&self, ty: &str, source: &str) -> bool {
        let type_ok = match self.type_pattern.strip_suffix('*') {
            Some(prefix) => ty.starts_with(prefix),
            None => ty == self.type_pattern,
        };
        type_ok && self.source.as_deref().is_none_or(|s| s == source)
    }
}

/// Every event resource of an app (or of the standalone set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResources {
    /// Queues.
    #[serde(default)]
    pub queues: Vec<QueueSpec>,
    /// Topics.
    #[serde(default)]
    pub topics: Vec<TopicSpec>,
    /// Schedules.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// Queue triggers.
    #[serde(default)]
    pub triggers: Vec<QueueTrigger>,
    /// CloudEvents routes.
    #[serde(default)]
    pub routes: Vec<EventRoute>,
}

impl EventResources {
    /// Whether there is nothing.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
            && self.topics.is_empty()
            && self.schedules.is_empty()
            && self.triggers.is_empty()
            && self.routes.is_empty()
    }
}

// ---- manifest syntax ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    queue: Option<String>,
    topic: Option<String>,
    function: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    visibility_timeout: Option<String>,
    delay: Option<String>,
    max_receive_count: Option<i64>,
    dead_letter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscription {
    name: String,
    function: Option<String>,
    queue: Option<String>,
    webhook: Option<String>,
    filter: Option<toml::Value>,
    filter_scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopic {
    #[serde(default)]
    subscriptions: Vec<RawSubscription>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    expression: String,
    timezone: Option<String>,
    target: RawTarget,
    enabled: Option<bool>,
    catch_up: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(rename = "type")]
    ty: String,
    source: Option<String>,
    target: RawTarget,
}

/// The event-related keys of a function in the manifest.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAsync {
    pub max_retries: Option<i64>,
    pub max_event_age: Option<String>,
    pub on_success: Option<RawTarget>,
    pub on_failure: Option<RawTarget>,
    pub dead_letter: Option<String>,
}

/// A queue trigger as written in a function's `triggers`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawQueueTrigger<'a> {
    pub queue: &'a str,
    pub qualifier: Option<&'a str>,
    pub batch_size: Option<i64>,
    pub batching_window: Option<&'a str>,
}

/// The event-related top-level tables of a manifest.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEvents {
    #[serde(default)]
    pub queues: BTreeMap<String, RawQueue>,
    #[serde(default)]
    pub topics: BTreeMap<String, RawTopic>,
    #[serde(default)]
    pub schedules: BTreeMap<String, RawSchedule>,
    #[serde(default)]
    pub cloudevents: Vec<RawRoute>,
}

/// Collects problems while validating.
pub(crate) struct Checker<'a> {
    pub problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    pub(crate) fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub(crate) fn duration(
        &mut self,
        key: &str,
        text: Option<&str>,
        range_ms: (u64, u64),
        default: u64,
    ) -> u64 {
        let Some(text) = text else { return default };
        match humantime::parse_duration(text) {
            // Compared whole: "15m 1ns" is past 15 minutes even if its milliseconds are not.
            Ok(d)
                if d >= std::time::Duration::from_millis(range_ms.0)
                    && d <= std::time::Duration::from_millis(range_ms.1) =>
            {
                d.as_millis() as u64
            }
            Ok(_) => {
                self.problem(
                    key,
                    format!(
                        "`{text}` is out of range ({} to {})",
                        humantime::format_duration(std::time::Duration::from_millis(range_ms.0)),
                        humantime::format_duration(std::time::Duration::from_millis(range_ms.1))
                    ),
                );
                default
            }
            Err(e) => {
                self.problem(
                    key,
                    format!("`{text}` is not a duration ({e}); write e.g. \"30s\""),
                );
                default
            }
        }
    }

    fn name(&mut self, key: &str, name: &str) {
        if !is_valid_name(name) {
            self.problem(
                key,
                format!(
                    "`{name}` is not a valid name: use 1-63 lower-case letters, digits, `-` or `_`"
                ),
            );
        }
    }

    /// A function target: a name, or `name:qualifier` (a published version or an alias).
    fn function_target(&mut self, key: &str, target: &str) {
        let (name, qualifier) = split_qualified(target);
        self.name(key, name);
        if let Some(q) = qualifier
            && !is_valid_qualifier(q)
        {
            self.problem(
                key,
                format!(
                    "`{q}` is not a version or alias: a number, or 1-128 letters, digits, `-` or `_`"
                ),
            );
        }
    }

    fn target(&mut self, key: &str, t: &RawTarget) -> Option<Target> {
        let target = match (&t.queue, &t.topic, &t.function) {
            (Some(q), None, None) => Target::Queue(q.clone()),
            (None, Some(t), None) => Target::Topic(t.clone()),
            (None, None, Some(f)) => Target::Function(f.clone()),
            _ => {
                self.problem(
                    key,
                    "name exactly one target: { queue = \"..\" }, { topic = \"..\" } or { function = \"..\" }",
                );
                return None;
            }
        };
        match &target {
            Target::Queue(n) | Target::Topic(n) => self.name(key, n),
            Target::Function(f) => self.function_target(key, f),
        }
        Some(target)
    }

    /// A function's async policy.
    pub fn async_policy(&mut self, prefix: &str, raw: &RawAsync) -> AsyncPolicy {
        let key = |k: &str| format!("{prefix}.{k}");
        let max_retries = match raw.max_retries {
            None => DEFAULT_MAX_RETRIES,
            Some(n) if (0..=10).contains(&n) => n as u32,
            Some(n) => {
                self.problem(key("max_retries"), format!("{n} is out of range (0..=10)"));
                DEFAULT_MAX_RETRIES
            }
        };
        let max_event_age_ms = self.duration(
            &key("max_event_age"),
            raw.max_event_age.as_deref(),
            (60_000, MAX_EVENT_AGE_MS),
            MAX_EVENT_AGE_MS,
        );
        let on_success = raw
            .on_success
            .as_ref()
            .and_then(|t| self.target(&key("on_success"), t));
        let on_failure = raw
            .on_failure
            .as_ref()
            .and_then(|t| self.target(&key("on_failure"), t));
        if let Some(q) = &raw.dead_letter {
            self.name(&key("dead_letter"), q);
        }
        AsyncPolicy {
            max_retries,
            max_event_age_ms,
            on_success,
            on_failure,
            dead_letter: raw.dead_letter.clone(),
        }
    }

    /// A queue trigger of `function`.
    pub fn queue_trigger(
        &mut self,
        key: &str,
        function: &str,
        raw: RawQueueTrigger<'_>,
    ) -> QueueTrigger {
        self.name(&format!("{key}.queue"), raw.queue);
        let batch_size = match raw.batch_size {
            None => 10,
            Some(n) if (1..=i64::from(MAX_BATCH_SIZE)).contains(&n) => n as u32,
            Some(n) => {
                self.problem(
                    format!("{key}.batch_size"),
                    format!("{n} is out of range (1..={MAX_BATCH_SIZE})"),
                );
                10
            }
        };
        let window_ms = self.duration(
            &format!("{key}.batching_window"),
            raw.batching_window,
            (0, 300_000),
            0,
        );
        if let Some(q) = raw.qualifier
            && !is_valid_qualifier(q)
        {
            self.problem(
                format!("{key}.qualifier"),
                format!("`{q}` is not a version or alias"),
            );
        }
        QueueTrigger {
            function: function.to_string(),
            queue: raw.queue.to_string(),
            batch_size,
            window_ms,
            qualifier: raw.qualifier.map(str::to_string),
        }
    }

    /// The top-level event tables.
    pub fn resources(&mut self, raw: RawEvents) -> EventResources {
        let mut out = EventResources::default();
        for (name, q) in raw.queues {
            let key = |k: &str| format!("queues.{name}.{k}");
            self.name(&format!("queues.{name}"), &name);
            let mut spec = QueueSpec::new(&name);
            spec.visibility_timeout_ms = self.duration(
                &key("visibility_timeout"),
                q.visibility_timeout.as_deref(),
                (0, MAX_VISIBILITY_MS),
                DEFAULT_VISIBILITY_MS,
            );
            spec.delay_ms = self.duration(&key("delay"), q.delay.as_deref(), (0, MAX_DELAY_MS), 0);
            spec.max_receive_count = match q.max_receive_count {
                None => None,
                Some(n) if (1..=1000).contains(&n) => Some(n as u32),
                Some(n) => {
                    self.problem(
                        key("max_receive_count"),
                        format!("{n} is out of range (1..=1000)"),
                    );
                    None
                }
            };
            if spec.max_receive_count.is_some() != q.dead_letter.is_some() {
                self.problem(
                    key("dead_letter"),
                    "max_receive_count and dead_letter go together: name the queue that takes \
                     messages after max_receive_count deliveries",
                );
            }
            if q.dead_letter.as_deref() == Some(name.as_str()) {
                self.problem(
                    key("dead_letter"),
                    "a queue cannot be its own dead-letter queue",
                );
            }
            spec.dead_letter = q.dead_letter;
            out.queues.push(spec);
        }
        for (name, t) in raw.topics {
            self.name(&format!("topics.{name}"), &name);
            let mut subs: Vec<SubscriptionSpec> = Vec::new();
            for (i, s) in t.subscriptions.into_iter().enumerate() {
                let key = format!("topics.{name}.subscriptions[{i}]");
                if let Some(sub) = self.subscription(&key, s) {
                    if subs.iter().any(|o| o.name == sub.name) {
                        self.problem(&key, format!("subscription `{}` is listed twice", sub.name));
                    }
                    subs.push(sub);
                }
            }
            out.topics.push(TopicSpec {
                name,
                subscriptions: subs,
            });
        }
        for (name, s) in raw.schedules {
            let key = |k: &str| format!("schedules.{name}.{k}");
            self.name(&format!("schedules.{name}"), &name);
            if let Err(e) = Schedule::parse(&s.expression) {
                self.problem(key("expression"), e.to_string());
            }
            let timezone = s.timezone.unwrap_or_else(|| "UTC".into());
            if jiff::tz::TimeZone::get(&timezone).is_err() {
                self.problem(
                    key("timezone"),
                    format!("`{timezone}` is not a known IANA time zone (e.g. \"Europe/Paris\")"),
                );
            }
            let catch_up = match s.catch_up.as_deref() {
                None | Some("once") => CatchUp::Once,
                Some("skip") => CatchUp::Skip,
                Some(other) => {
                    self.problem(
                        key("catch_up"),
                        format!("`{other}`: write \"once\" or \"skip\""),
                    );
                    CatchUp::Once
                }
            };
            if let Some(target) = self.target(&key("target"), &s.target) {
                out.schedules.push(ScheduleSpec {
                    name,
                    expression: s.expression,
                    timezone,
                    target,
                    enabled: s.enabled.unwrap_or(true),
                    catch_up,
                });
            }
        }
        for (i, r) in raw.cloudevents.into_iter().enumerate() {
            let key = format!("cloudevents[{i}]");
            if r.ty.is_empty() || r.ty[..r.ty.len() - 1].contains('*') {
                self.problem(
                    format!("{key}.type"),
                    "write an exact type or a prefix ending in `*`",
                );
            }
            if let Some(target) = self.target(&format!("{key}.target"), &r.target) {
                out.routes.push(EventRoute {
                    type_pattern: r.ty,
                    source: r.source,
                    target,
                });
            }
        }
        out
    }

    fn subscription(&mut self, key: &str, s: RawSubscription) -> Option<SubscriptionSpec> {
        self.name(&format!("{key}.name"), &s.name);
        let endpoint = match (s.function, s.queue, s.webhook) {
            (Some(f), None, None) => {
                self.function_target(&format!("{key}.function"), &f);
                Endpoint::Function(f)
            }
            (None, Some(q), None) => Endpoint::Queue(q),
            (None, None, Some(url)) => {
                let host = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"))
                    .and_then(|rest| rest.split('/').next());
                if host.is_none_or(str::is_empty) || url.contains(char::is_whitespace) {
                    self.problem(
                        format!("{key}.webhook"),
                        format!("`{url}` is not an http(s) URL"),
                    );
                }
                Endpoint::Webhook(url)
            }
            _ => {
                self.problem(key, "name exactly one endpoint: function, queue or webhook");
                return None;
            }
        };
        let filter_scope = match s.filter_scope.as_deref() {
            None | Some("attributes") => FilterScope::Attributes,
            Some("body") => FilterScope::Body,
            Some(other) => {
                self.problem(
                    format!("{key}.filter_scope"),
                    format!("`{other}`: write \"attributes\" or \"body\""),
                );
                FilterScope::Attributes
            }
        };
        let filter = match s.filter.map(serde_json::to_value) {
            None => None,
            Some(Ok(json)) => match FilterPolicy::parse(&json) {
                Ok(_) => Some(json.to_string()),
                Err(e) => {
                    self.problem(format!("{key}.filter"), e.to_string());
                    None
                }
            },
            Some(Err(e)) => {
                self.problem(format!("{key}.filter"), e.to_string());
                None
            }
        };
        Some(SubscriptionSpec {
            name: s.name,
            endpoint,
            filter,
            filter_scope,
        })
    }
}

/// The kinds of event resources that can be created alone through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A queue.
    Queue,
    /// A topic.
    Topic,
    /// A schedule.
    Schedule,
}

/// Parses one resource sent as JSON to the API (the same fields as in `nimbus.toml`, e.g.
/// `{"visibility_timeout": "30s"}` for a queue) into resources holding just it.
pub fn resource_from_json(
    kind: ResourceKind,
    name: &str,
    body: serde_json::Value,
) -> Result<EventResources, Vec<Problem>> {
    let syntax = |e: serde_json::Error| {
        vec![Problem {
            key: String::new(),
            message: e.to_string(),
        }]
    };
    let body = if body.is_null() {
        serde_json::json!({})
    } else {
        body
    };
    let mut raw = RawEvents::default();
    match kind {
        ResourceKind::Queue => {
            raw.queues
                .insert(name.into(), serde_json::from_value(body).map_err(syntax)?);
        }
        ResourceKind::Topic => {
            raw.topics
                .insert(name.into(), serde_json::from_value(body).map_err(syntax)?);
        }
        ResourceKind::Schedule => {
            raw.schedules
                .insert(name.into(), serde_json::from_value(body).map_err(syntax)?);
        }
    }
    let mut problems = Vec::new();
    let resources = Checker {
        problems: &mut problems,
    }
    .resources(raw);
    if problems.is_empty() {
        Ok(resources)
    } else {
        Err(problems)
    }
}

/// A function target's name and qualifier: `name:live` → (`name`, `live`).
pub fn split_qualified(target: &str) -> (&str, Option<&str>) {
    match target.split_once(':') {
        Some((name, q)) => (name, Some(q)),
        None => (target, None),
    }
}

/// Whether `q` can be a qualifier: a version number, `$LATEST`, or an alias name.
pub fn is_valid_qualifier(q: &str) -> bool {
    q == "$LATEST"
        || (!q.is_empty()
            && q.len() <= 128
            && q.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Checks that everything named by `resources` and the functions' policies exists, given the
/// names of functions and of queues/topics outside the app.
pub fn check_references(
    resources: &EventResources,
    policies: &[(String, AsyncPolicy)],
    functions: &dyn Fn(&str) -> bool,
    queues: &dyn Fn(&str) -> bool,
    topics: &dyn Fn(&str) -> bool,
) -> Vec<Problem> {
    let queue_ok = |q: &str| queues(q) || resources.queues.iter().any(|s| s.name == q);
    let topic_ok = |t: &str| topics(t) || resources.topics.iter().any(|s| s.name == t);
    let target_ok = |t: &Target| match t {
        Target::Queue(q) => queue_ok(q),
        Target::Topic(n) => topic_ok(n),
        Target::Function(f) => functions(split_qualified(f).0),
    };
    let mut problems = Vec::new();
    let mut missing = |key: String, what: String| {
        problems.push(Problem {
            key,
            message: format!("{what} does not exist"),
        })
    };
    for q in &resources.queues {
        if let Some(d) = &q.dead_letter
            && !queue_ok(d)
        {
            missing(
                format!("queues.{}.dead_letter", q.name),
                format!("queue `{d}`"),
            );
        }
    }
    for t in &resources.topics {
        for s in &t.subscriptions {
            let key = format!("topics.{}.subscriptions.{}", t.name, s.name);
            match &s.endpoint {
                Endpoint::Function(f) if !functions(split_qualified(f).0) => {
                    missing(key, format!("function `{f}`"))
                }
                Endpoint::Queue(q) if !queue_ok(q) => missing(key, format!("queue `{q}`")),
                _ => {}
            }
        }
    }
    for s in &resources.schedules {
        if !target_ok(&s.target) {
            missing(format!("schedules.{}.target", s.name), s.target.to_string());
        }
    }
    for (i, r) in resources.routes.iter().enumerate() {
        if !target_ok(&r.target) {
            missing(format!("cloudevents[{i}].target"), r.target.to_string());
        }
    }
    for t in &resources.triggers {
        if !queue_ok(&t.queue) {
            missing(
                format!("functions.{}.triggers", t.function),
                format!("queue `{}`", t.queue),
            );
        }
    }
    for (f, p) in policies {
        for (k, t) in [("on_success", &p.on_success), ("on_failure", &p.on_failure)] {
            if let Some(t) = t
                && !target_ok(t)
            {
                missing(format!("functions.{f}.{k}"), t.to_string());
            }
        }
        if let Some(d) = &p.dead_letter
            && !queue_ok(d)
        {
            missing(format!("functions.{f}.dead_letter"), format!("queue `{d}`"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exact_types_prefixes_and_sources() {
        let r = EventRoute {
            type_pattern: "com.example.order.*".into(),
            source: Some("/shop".into()),
            target: Target::Topic("t".into()),
        };
        assert!(r.matches("com.example.order.created", "/shop"));
        assert!(!r.matches("com.example.order.created", "/other"));
        assert!(!r.matches("com.example.user", "/shop"));
        let exact = EventRoute {
            type_pattern: "a.b".into(),
            source: None,
            target: Target::Queue("q".into()),
        };
        assert!(exact.matches("a.b", "anything"));
        assert!(!exact.matches("a.bc", "anything"));
    }

    #[test]
    fn resources_parse_from_api_json() {
        let q = resource_from_json(
            ResourceKind::Queue,
            "jobs",
            serde_json::json!({"visibility_timeout": "5s"}),
        )
        .unwrap();
        assert_eq!(q.queues[0].visibility_timeout_ms, 5_000);
        let t = resource_from_json(
            ResourceKind::Topic,
            "t",
            serde_json::json!({"subscriptions": [
                {"name": "s", "queue": "jobs", "filter": {"type": ["order"]}}]}),
        )
        .unwrap();
        assert!(t.topics[0].subscriptions[0].policy().is_some());
        let bad = resource_from_json(
            ResourceKind::Schedule,
            "s",
            serde_json::json!({"expression": "rate(1 minute)", "target": {"queue": "jobs"},
                               "timezone": "Mars/Olympus"}),
        )
        .unwrap_err();
        assert_eq!(bad[0].key, "schedules.s.timezone");
        assert!(
            resource_from_json(ResourceKind::Queue, "q", serde_json::json!({"nope": 1})).is_err()
        );
    }

    #[test]
    fn references_to_missing_things_are_named() {
        let mut r = EventResources::default();
        r.queues.push(QueueSpec {
            dead_letter: Some("nope".into()),
            max_receive_count: Some(3),
            ..QueueSpec::new("q")
        });
        r.schedules.push(ScheduleSpec {
            name: "s".into(),
            expression: "rate(1 minute)".into(),
            timezone: "UTC".into(),
            target: Target::Function("ghost".into()),
            enabled: true,
            catch_up: CatchUp::Once,
        });
        let policy = AsyncPolicy {
            on_failure: Some(Target::Topic("standalone".into())),
            ..AsyncPolicy::default()
        };
        let problems = check_references(
            &r,
            &[("f".into(), policy)],
            &|f| f == "f",
            &|_| false,
            &|t| t == "standalone",
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["queues.q.dead_letter", "schedules.s.target"]);
    }
}
