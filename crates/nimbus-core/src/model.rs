//! Domain types shared by every crate: function configuration, versions and invocation records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Smallest and largest `memory_mb` a function may configure.
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u32> = 1..=4096;
/// Longest `timeout` a function may configure (15 minutes, as on AWS Lambda).
pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
/// Default `memory_mb` when the manifest does not say.
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// Default `timeout` when the manifest does not say.
pub const DEFAULT_TIMEOUT_MS: u64 = 3_000;

/// How a function's code is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// A WebAssembly component run by wasmtime.
    Wasm,
    /// A Python handler (`module.function`) run by Nimbus's Python bootstrap in a sandbox.
    Python,
    /// A Node.js handler (`file.export`, CommonJS or ES module) run by Nimbus's Node bootstrap.
    Node,
    /// An executable `bootstrap` in the code directory that speaks the Lambda Runtime API itself.
    Provided,
}

impl Runtime {
    /// Every runtime, in manifest spelling order.
    pub const ALL: [Runtime; 4] = [
        Runtime::Wasm,
        Runtime::Python,
        Runtime::Node,
        Runtime::Provided,
    ];

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Wasm => "wasm",
            Runtime::Python => "python",
            Runtime::Node => "node",
            Runtime::Provided => "provided",
        }
    }

    /// Parses the manifest spelling.
    pub fn parse(s: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether functions of this runtime run as sandboxed processes speaking the Lambda
    /// Runtime API (everything but wasm).
    pub fn is_process(self) -> bool {
        self != Runtime::Wasm
    }
}

/// What a function's artifact exports, detected at deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// Exports `wasi:http/incoming-handler` (the proxy world): serves HTTP requests.
    Http,
    /// Exports `nimbus:function/handler`: takes an event, returns a result.
    Event,
}

impl FunctionKind {
    /// Lower-case name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Http => "http",
            FunctionKind::Event => "event",
        }
    }
}

/// The configuration of one function version. Part of the version's content address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// How the code runs.
    pub runtime: Runtime,
    /// Memory limit in MiB (the wasm linear-memory limit).
    pub memory_mb: u32,
    /// Wall-clock limit of one invocation, in milliseconds.
    pub timeout_ms: u64,
    /// Environment variables visible to the function; nothing else is.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secrets (variable → secret name): resolved when
    /// an instance starts, never stored with the version nor shown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Hosts (`host` or `host:port`) the function may call over outbound HTTP; empty = none.
    /// Process functions cannot be filtered per host: any entry gives them the host's network.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Process runtimes: the handler (`module.function` for Python, `file.export` for Node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Process runtimes: most sandboxes (concurrent invocations) at once; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Instances kept warm at all times, started at deploy (default 0: scale to zero). Process
    /// runtimes: sandboxes; wasm: 0 or 1 (the loaded component).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_instances: u32,
    /// Invocations one instance serves at once: always 1 for process runtimes; for wasm, how
    /// many the loaded component runs at once (default [`DEFAULT_WASM_CONCURRENCY_PER_INSTANCE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_per_instance: Option<u32>,
    /// Requests per second the function's HTTP routes take from all callers together (burst:
    /// one second's worth); past it, 429. Public routes are throttled here, before they can
    /// use the tenant's quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Requests per second the function's HTTP routes take from one client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_rate_limit: Option<u32>,
    /// Asynchronous invocation: retries, event age, destinations, dead-letter queue.
    #[serde(
        default,
        skip_serializing_if = "crate::events::AsyncPolicy::is_default"
    )]
    pub events: crate::events::AsyncPolicy,
    /// A durable function (`durable = { … }`): invoked as durable executions, each journaled and
    /// replayed by the AWS durable execution SDKs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<DurableSettings>,
}

/// A durable function's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableSettings {
    /// How long one execution may run, all its waits included (default 1 day, at most 1 year).
    pub execution_timeout_ms: u64,
    /// How many days an ended execution stays readable (default 14, 1–90).
    pub retention_days: u32,
}

/// A durable execution's default timeout.
pub const DEFAULT_EXECUTION_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// A durable execution's longest timeout.
pub const MAX_EXECUTION_TIMEOUT_MS: u64 = 366 * 24 * 3600 * 1000;
/// How long an ended execution stays by default.
pub const DEFAULT_RETENTION_DAYS: u32 = 14;

impl Default for DurableSettings {
    fn default() -> Self {
        Self {
            execution_timeout_ms: DEFAULT_EXECUTION_TIMEOUT_MS,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Sandboxes a process function may run at once when `max_concurrency` is not set.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 10;
/// Invocations a wasm instance serves at once when `concurrency_per_instance` is not set
/// (the node's pool of wasm instance slots).
/// (a quarter of the node's default pool of 1000 wasm instances: one busy function never takes
/// the instances every other function needs; a node with another pool size uses a quarter of it).
pub const DEFAULT_WASM_CONCURRENCY_PER_INSTANCE: u32 = 250;

impl FunctionConfig {
    /// Most concurrent invocations (process sandboxes).
    pub fn max_concurrency(&self) -> u32 {
        self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY)
    }

    /// Invocations one instance serves at once (process runtimes: 1).
    pub fn concurrency_per_instance(&self) -> u32 {
        if self.runtime.is_process() {
            1
        } else {
            self.concurrency_per_instance
                .unwrap_or(DEFAULT_WASM_CONCURRENCY_PER_INSTANCE)
        }
    }

    /// Memory limit in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_mb) * 1024 * 1024
    }
}

/// One immutable, content-addressed version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    /// `sha256(artifact sha256 + canonical config)`, hex.
    pub id: String,
    /// Function name (unique per tenant).
    pub function: String,
    /// App the function belongs to.
    pub app: String,
    /// sha256 of the uploaded artifact, hex.
    pub artifact_sha256: String,
    /// Detected at deploy from the artifact's exports.
    pub kind: FunctionKind,
    /// Limits and environment.
    pub config: FunctionConfig,
    /// When this version was first deployed (unix ms).
    pub created_at_ms: i64,
}

impl FunctionVersion {
    /// The content address of `artifact_sha256` run with `config`.
    pub fn content_id(artifact_sha256: &str, config: &FunctionConfig) -> String {
        // serde_json writes struct fields in declaration order and BTreeMap keys sorted: canonical.
        let config = serde_json::to_string(config).unwrap_or_default();
        crate::sha256_hex(format!("{artifact_sha256}\n{config}").as_bytes())
    }

    /// First 12 hex digits of the id, for people.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// What started an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Trigger {
    /// An HTTP request matched a route, e.g. `GET /hello/{name}`.
    Http {
        /// The route as written in the manifest.
        route: String,
    },
    /// A direct call through `POST /v1/functions/{name}/invoke`.
    Invoke,
    /// An asynchronous invocation (its ledger id and attempt).
    Async {
        /// The ledger id.
        invocation: String,
        /// 1 for the first try.
        attempt: u32,
    },
    /// A batch from a queue trigger.
    Queue {
        /// The queue.
        queue: String,
    },
    /// A message published to a topic.
    Topic {
        /// The topic.
        topic: String,
    },
    /// A schedule tick.
    Schedule {
        /// The schedule.
        schedule: String,
    },
    /// An ingested CloudEvent.
    Event {
        /// Its `type`.
        ty: String,
    },
    /// A function authorizer deciding on a request to a route.
    Authorizer {
        /// The route as written in the manifest.
        route: String,
    },
    /// A durable execution's handler, run (or replayed) by the durable engine.
    Durable {
        /// The execution's ARN.
        execution: String,
    },
}

impl Trigger {
    /// The kind, as in the record's `type` field (`http`, `invoke`, `async`, `queue`, `topic`,
    /// `schedule`, `event`, `authorizer`, `durable`).
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Http { .. } => "http",
            Trigger::Invoke => "invoke",
            Trigger::Async { .. } => "async",
            Trigger::Queue { .. } => "queue",
            Trigger::Topic { .. } => "topic",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Event { .. } => "event",
            Trigger::Authorizer { .. } => "authorizer",
            Trigger::Durable { .. } => "durable",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Http { route } => write!(f, "http {route}"),
            Trigger::Invoke => f.write_str("invoke"),
            Trigger::Async {
                invocation,
                attempt,
            } => write!(f, "async {invocation} attempt {attempt}"),
            Trigger::Queue { queue } => write!(f, "queue {queue}"),
            Trigger::Topic { topic } => write!(f, "topic {topic}"),
            Trigger::Schedule { schedule } => write!(f, "schedule {schedule}"),
            Trigger::Event { ty } => write!(f, "cloudevent {ty}"),
            Trigger::Authorizer { route } => write!(f, "authorizer of {route}"),
            Trigger::Durable { execution } => write!(f, "durable execution {execution}"),
        }
    }
}

/// The CloudEvents 1.0 context attributes of an event handed to a function (event functions
/// receive them with the data; the `ce-*` binary-mode headers carry the same).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventAttributes {
    /// `id`.
    pub id: String,
    /// `source`.
    pub source: String,
    /// `type`.
    #[serde(rename = "type")]
    pub ty: String,
    /// `subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `time` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `datacontenttype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Extension attributes, as strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<(String, String)>,
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The function returned a result or a complete response.
    Success,
    /// See the record's error type.
    Error,
}

/// Why an invocation failed. The string form is stable and shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorType {
    /// The invocation ran past the function's `timeout`.
    #[serde(rename = "Function.Timeout")]
    Timeout,
    /// The function tried to grow its memory past `memory_mb` and then failed.
    #[serde(rename = "Function.OutOfMemory")]
    OutOfMemory,
    /// The function trapped (unreachable, out-of-bounds access, stack overflow, ...).
    #[serde(rename = "Function.Trap")]
    Trap,
    /// The function returned an error value.
    #[serde(rename = "Function.Error")]
    Handled,
    /// An HTTP function returned without setting a response.
    #[serde(rename = "Function.NoResponse")]
    NoResponse,
    /// The function could not be loaded or instantiated, or its init phase failed.
    #[serde(rename = "Function.InitError")]
    Init,
    /// A process function's sandbox exceeded its memory limit and was killed.
    #[serde(rename = "Runtime.OutOfMemory")]
    RuntimeOutOfMemory,
    /// A process function's runtime exited during an invocation.
    #[serde(rename = "Runtime.ExitError")]
    RuntimeExit,
    /// Every sandbox the function may run is busy and none freed up in time.
    #[serde(rename = "Function.Throttled")]
    Throttled,
    /// The invocation was stopped before it finished because its caller went away.
    #[serde(rename = "Function.Cancelled")]
    Cancelled,
}

impl ErrorType {
    /// Stable name, e.g. `Function.Timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Timeout => "Function.Timeout",
            ErrorType::OutOfMemory => "Function.OutOfMemory",
            ErrorType::Trap => "Function.Trap",
            ErrorType::Handled => "Function.Error",
            ErrorType::NoResponse => "Function.NoResponse",
            ErrorType::Init => "Function.InitError",
            ErrorType::RuntimeOutOfMemory => "Runtime.OutOfMemory",
            ErrorType::RuntimeExit => "Runtime.ExitError",
            ErrorType::Throttled => "Function.Throttled",
            ErrorType::Cancelled => "Function.Cancelled",
        }
    }

    /// The HTTP status a client sees for this failure.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorType::Timeout => 504,
            ErrorType::Throttled => 429,
            _ => 500,
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run of one function version: the unit of metering and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Unique, time-ordered id (UUIDv7); also the `x-nimbus-invocation-id` response header.
    pub id: String,
    /// Function name.
    pub function: String,
    /// Function version id.
    pub version: String,
    /// What started it.
    pub trigger: Trigger,
    /// Start time, unix milliseconds.
    pub start_ms: i64,
    /// Execution time in microseconds (excludes the cold-start init).
    pub duration_us: u64,
    /// Billed duration: execution rounded up to the next millisecond (at least 1).
    pub billed_ms: u64,
    /// Configured memory, MiB.
    pub memory_mb: u32,
    /// Peak linear memory the invocation used, bytes.
    pub max_memory_bytes: u64,
    /// Whether the invocation had to load the function first.
    pub cold_start: bool,
    /// Time spent loading the function on a cold start, microseconds (0 when warm).
    pub init_us: u64,
    /// Success or error.
    pub outcome: Outcome,
    /// Set when `outcome` is `Error`.
    pub error_type: Option<ErrorType>,
    /// Human-readable error, when `outcome` is `Error`.
    pub error_message: Option<String>,
    /// Captured stdout and stderr, interleaved, capped per invocation.
    pub logs: String,
}

impl InvocationRecord {
    /// Wraps the captured output in Lambda-style lines, as `nimbus logs` and `X-Amz-Log-Result`
    /// show them: `START`, the output, `END`, and a `REPORT` with duration, billed duration,
    /// memory size, max memory used and (on cold starts) the init duration.
    pub fn frame_lambda_logs(&mut self) {
        let mut out = format!(
            "START RequestId: {} Version: {}\n",
            self.id,
            &self.version[..self.version.len().min(12)]
        );
        out.push_str(&self.logs);
        if !self.logs.is_empty() && !self.logs.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!(
            "END RequestId: {id}\nREPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\t\
             Memory Size: {} MB\tMax Memory Used: {} MB",
            self.duration_us as f64 / 1000.0,
            self.billed_ms,
            self.memory_mb,
            self.max_memory_bytes.div_ceil(1024 * 1024),
            id = self.id,
        ));
        if self.cold_start {
            out.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                self.init_us as f64 / 1000.0
            ));
        }
        out.push('\n');
        self.logs = out;
    }
}

/// Billed milliseconds for an execution of `duration_us`: rounded up, at least 1 ms.
pub fn billed_ms(duration_us: u64) -> u64 {
    duration_us.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FunctionConfig {
        FunctionConfig {
            runtime: Runtime::Wasm,
            memory_mb: 128,
            timeout_ms: 3000,
            env: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
            secrets: BTreeMap::new(),
            allowed_hosts: vec![],
            handler: None,
            max_concurrency: None,
            min_instances: 0,
            concurrency_per_instance: None,
            rate_limit: None,
            client_rate_limit: None,
            events: Default::default(),
            durable: None,
        }
    }

    #[test]
    fn billing_rounds_up_to_the_millisecond() {
        assert_eq!(billed_ms(0), 1);
        assert_eq!(billed_ms(1), 1);
        assert_eq!(billed_ms(1000), 1);
        assert_eq!(billed_ms(1001), 2);
        assert_eq!(billed_ms(2_500_000), 2500);
    }

    #[test]
    fn version_id_depends_on_artifact_and_every_config_field() {
        let base = FunctionVersion::content_id("abc", &config());
        assert_eq!(base, FunctionVersion::content_id("abc", &config()));
        assert_ne!(base, FunctionVersion::content_id("abd", &config()));
        let mut c = config();
        c.memory_mb = 256;
        assert_ne!(base, FunctionVersion::content_id("abc", &c));
        let mut c = config();
        c.env.insert("C".into(), "3".into());
        assert_ne!(base, FunctionVersion::content_id("abc", &c));
    }

    #[test]
    fn lambda_log_lines_frame_the_output() {
        let mut r = InvocationRecord {
            id: "r1".into(),
            function: "f".into(),
            version: "0123456789abcdef".into(),
            trigger: Trigger::Invoke,
            start_ms: 0,
            duration_us: 12_345,
            billed_ms: 13,
            memory_mb: 128,
            max_memory_bytes: 40 * 1024 * 1024 + 1,
            cold_start: true,
            init_us: 150_500,
            outcome: Outcome::Success,
            error_type: None,
            error_message: None,
            logs: "hello".into(),
        };
        r.frame_lambda_logs();
        assert_eq!(
            r.logs,
            "START RequestId: r1 Version: 0123456789ab\nhello\nEND RequestId: r1\n\
             REPORT RequestId: r1\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\t\
             Max Memory Used: 41 MB\tInit Duration: 150.50 ms\n"
        );
    }

    #[test]
    fn error_types_serialize_to_their_stable_names() {
        for t in [
            ErrorType::Timeout,
            ErrorType::OutOfMemory,
            ErrorType::Trap,
            ErrorType::Handled,
            ErrorType::NoResponse,
            ErrorType::Init,
            ErrorType::RuntimeOutOfMemory,
            ErrorType::RuntimeExit,
            ErrorType::Throttled,
            ErrorType::Cancelled,
        ] {
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        assert_eq!(ErrorType::Timeout.http_status(), 504);
        assert_eq!(ErrorType::Trap.http_status(), 500);
    }
}
