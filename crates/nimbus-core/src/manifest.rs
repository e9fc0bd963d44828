//! The `nimbus.toml` app manifest: parsing and validation.
//!
//! ```toml
//! version = 1                      # manifest format version (optional, only 1 exists)
//! app = "shop"
//!
//! [functions.hello]
//! runtime = "wasm"                 # wasm | python | node | provided
//! source = "build/hello.wasm"      # relative to the manifest's directory: a .wasm component,
//!                                  # or for process runtimes a directory or a .zip
//! handler = "app.handler"          # python: module.function; node: file.export
//! min_instances = 1               # instances kept warm, started at deploy (default 0: scale
//!                                  # to zero); wasm: 0 or 1 (one loaded component per node)
//! max_concurrency = 10             # most invocations at once (process default 10 sandboxes;
//!                                  # wasm default: unlimited); beyond it: wait, then 429
//! concurrency_per_instance = 100   # invocations one instance serves at once: process
//!                                  # runtimes 1 (one event per runtime); wasm default a
//!                                  # quarter of the node's instance pool (250)
//! rate_limit = 100                 # HTTP routes: requests/s from everyone (default: none)
//! client_rate_limit = 10           # HTTP routes: requests/s from one client address
//! memory_mb = 128                  # default 128
//! timeout = "3s"                   # default 3s, at most 15m
//! env = { GREETING = "hi" }        # the only environment the function sees
//! allowed_hosts = ["api.example.com"]  # outbound HTTP allow-list (default: none)
//! triggers = [{ http = "GET /hello/{name}" }]
//! durable = { execution_timeout = "1d", retention_days = 14 }  # a durable function (AWS
//!                                  # durable execution SDKs); `durable = true` for the defaults
//! ```
//!
//! Queues, topics, schedules and CloudEvents routes are described in [`crate::events`];
//! state machines (`[workflows.NAME]`) in [`crate::workflow`].
//!
//! Validation reports every problem at once, each naming its key (`functions.hello.memory_mb`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::events::{Checker, EventResources, RawAsync, RawEvents, RawQueueTrigger};
use crate::model::{
    DEFAULT_EXECUTION_TIMEOUT_MS, DEFAULT_MAX_CONCURRENCY, DEFAULT_MEMORY_MB,
    DEFAULT_RETENTION_DAYS, DEFAULT_TIMEOUT_MS, DurableSettings, FunctionConfig,
    MAX_EXECUTION_TIMEOUT_MS, MAX_TIMEOUT_MS, MEMORY_MB_RANGE, Runtime,
};
use crate::route::RouteSpec;

/// The only manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// A validated app: what a deploy activates atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// App name.
    pub name: String,
    /// Functions, sorted by name.
    pub functions: Vec<FunctionSpec>,
    /// Queues, topics, schedules, queue triggers and CloudEvents routes.
    pub events: EventResources,
    /// State machines (`[workflows.NAME]`, see [`crate::workflow`]), sorted by name.
    pub workflows: Vec<crate::workflow::WorkflowSpec>,
}

/// One validated function of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Function name.
    pub name: String,
    /// Artifact path, relative to the manifest's directory.
    pub source: String,
    /// Runtime configuration.
    pub config: FunctionConfig,
    /// HTTP routes that invoke it.
    pub routes: Vec<RouteSpec>,
}

/// One problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `functions.hello.timeout`; empty for the whole file.
    pub key: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

/// A manifest that cannot be deployed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML, or fields of the wrong type or name.
    #[error("nimbus.toml: {0}")]
    Syntax(String),
    /// Well-formed, but with invalid values.
    #[error("nimbus.toml is invalid:\n{}", format_problems(.0))]
    Invalid(Vec<Problem>),
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<u32>,
    app: String,
    #[serde(default)]
    functions: BTreeMap<String, RawFunction>,
    #[serde(default)]
    queues: BTreeMap<String, crate::events::RawQueue>,
    #[serde(default)]
    topics: BTreeMap<String, crate::events::RawTopic>,
    #[serde(default)]
    schedules: BTreeMap<String, crate::events::RawSchedule>,
    #[serde(default)]
    cloudevents: Vec<crate::events::RawRoute>,
    #[serde(default)]
    http: crate::access::RawHttp,
    #[serde(default)]
    workflows: BTreeMap<String, crate::workflow::RawWorkflow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    runtime: String,
    source: String,
    memory_mb: Option<i64>,
    timeout: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, RawEnvValue>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    handler: Option<String>,
    max_concurrency: Option<i64>,
    min_instances: Option<i64>,
    concurrency_per_instance: Option<i64>,
    rate_limit: Option<i64>,
    client_rate_limit: Option<i64>,
    #[serde(default)]
    triggers: Vec<RawTrigger>,
    max_retries: Option<i64>,
    max_event_age: Option<String>,
    on_success: Option<crate::events::RawTarget>,
    on_failure: Option<crate::events::RawTarget>,
    dead_letter: Option<String>,
    durable: Option<RawDurable>,
}

/// `durable = true` or `durable = { execution_timeout = "1d", retention_days = 14 }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDurable {
    On(bool),
    Settings(RawDurableSettings),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDurableSettings {
    execution_timeout: Option<String>,
    retention_days: Option<i64>,
}

/// An `env` value: text, or `{ secret = "NAME" }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawEnvValue {
    Text(String),
    Secret(RawSecretRef),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    http: Option<String>,
    queue: Option<String>,
    /// A published version or alias the trigger invokes (default `$LATEST`).
    qualifier: Option<String>,
    batch_size: Option<i64>,
    batching_window: Option<String>,
    /// `none` or an authorizer of `[http.authorizers]` (default: `[http] auth`).
    auth: Option<String>,
    /// Scopes a JWT must hold one of.
    #[serde(default)]
    scopes: Vec<String>,
    /// This route's requests per second from everyone.
    rate_limit: Option<i64>,
    /// This route's requests per second from one client address.
    client_rate_limit: Option<i64>,
}

/// Whether `name` is a valid app or function name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Whether `h` is a handler of the form `path/module.function`: a module part and an export
/// name, both non-empty, no `..`, no whitespace.
pub fn is_valid_handler(h: &str) -> bool {
    match h.rsplit_once('.') {
        Some((module, export)) => {
            !module.is_empty()
                && !export.is_empty()
                && !h.contains("..")
                && !h.starts_with('/')
                && !h.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Whether `name` is a valid secret name: 1-128 letters, digits, `-`, `_` or `.`.
pub fn is_valid_secret_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// What a secret name may be.
pub const SECRET_NAME_RULE: &str = "use 1-128 letters, digits, `-`, `_` or `.`";

const NAME_RULE: &str =
    "use 1-63 lower-case letters, digits, `-` or `_`, starting with a letter or digit";

/// A queue trigger found in a function's `triggers`, checked once the queues are known.
struct PendingTrigger {
    key: String,
    function: String,
    queue: String,
    qualifier: Option<String>,
    batch_size: Option<i64>,
    window: Option<String>,
}

impl AppSpec {
    /// Parses and validates manifest text. Every problem is reported at once, each naming its
    /// key; the sections are checked one by one ([`Checker`]).
    pub fn parse(text: &str) -> Result<AppSpec, ManifestError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string().trim().into()))?;
        let mut problems = Vec::new();
        let mut check = Checker {
            problems: &mut problems,
        };
        check.header(&raw);
        let http = check.http(raw.http);
        let mut functions = Vec::new();
        let mut queue_triggers = Vec::new();
        for (name, f) in raw.functions {
            functions.push(check.function(name, f, &http, &mut queue_triggers));
        }
        for (function, key) in http.authorizer_functions() {
            if !functions.iter().any(|f: &FunctionSpec| f.name == function) {
                check.problem(key, format!("no function `{function}` in this app"));
            }
        }
        let workflows = crate::workflow::check(raw.workflows, &mut |key, message| {
            check.problem(key, message)
        });
        let mut events = check.resources(RawEvents {
            queues: raw.queues,
            topics: raw.topics,
            schedules: raw.schedules,
            cloudevents: raw.cloudevents,
        });
        for t in &queue_triggers {
            let trigger = check.queue_trigger(
                &t.key,
                &t.function,
                RawQueueTrigger {
                    queue: &t.queue,
                    qualifier: t.qualifier.as_deref(),
                    batch_size: t.batch_size,
                    batching_window: t.window.as_deref(),
                },
            );
            events.triggers.push(trigger);
        }
        if problems.is_empty() {
            Ok(AppSpec {
                name: raw.app,
                functions,
                events,
                workflows,
            })
        } else {
            Err(ManifestError::Invalid(problems))
        }
    }
}

/// A bounded integer setting: `None` when absent, a problem (and `None`) when out of `range`.
fn bounded(
    check: &mut Checker<'_>,
    key: String,
    value: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
) -> Option<u32> {
    match value {
        None => None,
        Some(n) if range.contains(&n) => Some(n as u32),
        Some(n) => {
            check.problem(
                key,
                format!("{n} is out of range ({}..={})", range.start(), range.end()),
            );
            None
        }
    }
}

impl Checker<'_> {
    /// `version`, `app`, and that there is a function.
    fn header(&mut self, raw: &RawManifest) {
        if let Some(v) = raw.version
            && v != MANIFEST_VERSION
        {
            self.problem(
                "version",
                format!(
                    "unsupported manifest version {v} (this Nimbus reads version {MANIFEST_VERSION})"
                ),
            );
        }
        if !is_valid_name(&raw.app) {
            self.problem(
                "app",
                format!("`{}` is not a valid app name: {NAME_RULE}", raw.app),
            );
        }
        if raw.functions.is_empty() {
            self.problem("functions", "an app needs at least one function");
        }
    }

    /// One `[functions.NAME]` section; queue triggers are set aside for later.
    fn function(
        &mut self,
        name: String,
        f: RawFunction,
        http: &crate::access::HttpAccess,
        queue_triggers: &mut Vec<PendingTrigger>,
    ) -> FunctionSpec {
        let key = |field: &str| format!("functions.{name}.{field}");
        if !is_valid_name(&name) {
            self.problem(
                format!("functions.{name}"),
                format!("not a valid function name: {NAME_RULE}"),
            );
        }
        let runtime = self.runtime(&key("runtime"), &f.runtime);
        self.handler(&key("handler"), runtime, f.handler.as_deref());
        let max_concurrency = bounded(self, key("max_concurrency"), f.max_concurrency, 1..=1000);
        self.source(&key("source"), &f.source);
        let concurrency_per_instance = self.concurrency_per_instance(
            &key("concurrency_per_instance"),
            runtime,
            f.concurrency_per_instance,
        );
        let min_instances = self.min_instances(
            &key("min_instances"),
            runtime,
            f.min_instances,
            max_concurrency,
        );
        let memory_mb = self.memory_mb(&key("memory_mb"), f.memory_mb);
        let timeout_ms = self.timeout(&key("timeout"), f.timeout.as_deref());
        let (env, secrets) = self.environment(&key("env"), f.env);
        self.allowed_hosts(&key("allowed_hosts"), &f.allowed_hosts);
        let policy = self.async_policy(
            &format!("functions.{name}"),
            &RawAsync {
                max_retries: f.max_retries,
                max_event_age: f.max_event_age,
                on_success: f.on_success,
                on_failure: f.on_failure,
                dead_letter: f.dead_letter,
            },
        );
        let routes = self.triggers(&name, &f.triggers, http, queue_triggers);
        let durable = self.durable(&key("durable"), runtime, f.durable);
        let rate_limit = bounded(self, key("rate_limit"), f.rate_limit, 1..=1_000_000);
        let client_rate_limit = bounded(
            self,
            key("client_rate_limit"),
            f.client_rate_limit,
            1..=1_000_000,
        );
        FunctionSpec {
            name,
            source: f.source,
            config: FunctionConfig {
                runtime,
                memory_mb,
                timeout_ms,
                env,
                secrets,
                allowed_hosts: f.allowed_hosts,
                handler: f.handler,
                max_concurrency,
                min_instances,
                concurrency_per_instance,
                rate_limit,
                client_rate_limit,
                events: policy,
                durable,
            },
            routes,
        }
    }

    /// A path inside the app's directory: relative, no `..`.
    fn source(&mut self, key: &str, source: &str) {
        let path = std::path::Path::new(source);
        if source.trim().is_empty() {
            self.problem(key, "must name the function's artifact file");
        } else if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            self.problem(
                key,
                format!(
                    "`{source}` is outside the app's directory: write a path relative to \
                     nimbus.toml, without `..`"
                ),
            );
        }
    }

    fn runtime(&mut self, key: &str, text: &str) -> Runtime {
        Runtime::parse(text).unwrap_or_else(|| {
            self.problem(
                key,
                format!("unknown runtime `{text}` (supported: wasm, python, node, provided)"),
            );
            Runtime::Wasm
        })
    }

    fn handler(&mut self, key: &str, runtime: Runtime, handler: Option<&str>) {
        match (runtime, handler) {
            (Runtime::Python | Runtime::Node, None) => self.problem(
                key,
                format!(
                    "a {} function needs a handler, e.g. handler = \"{}\"",
                    runtime.as_str(),
                    if runtime == Runtime::Python {
                        "app.handler"
                    } else {
                        "index.handler"
                    }
                ),
            ),
            (Runtime::Wasm, Some(_)) => self.problem(
                key,
                "wasm functions have no handler: the component's export is the entry point",
            ),
            // Lambda takes any string for a custom runtime: its bootstrap reads `_HANDLER`.
            (Runtime::Provided, Some(h)) if h.is_empty() || h.len() > 128 => self.problem(
                key,
                "a provided runtime's handler is any string of 1 to 128 characters",
            ),
            (Runtime::Provided, Some(_)) => {}
            (_, Some(h)) if !is_valid_handler(h) => self.problem(
                key,
                format!("`{h}` is not a handler: write `module.function` (e.g. `app.handler`)"),
            ),
            _ => {}
        }
    }

    fn concurrency_per_instance(
        &mut self,
        key: &str,
        runtime: Runtime,
        value: Option<i64>,
    ) -> Option<u32> {
        match value {
            Some(n) if n != 1 && runtime.is_process() => {
                self.problem(
                    key,
                    format!(
                        "{n}: a {} sandbox runs one invocation at a time (its runtime takes \
                         one event at a time from the Lambda Runtime API); only 1 is possible",
                        runtime.as_str()
                    ),
                );
                None
            }
            other => bounded(self, key.to_string(), other, 1..=1000),
        }
    }

    fn min_instances(
        &mut self,
        key: &str,
        runtime: Runtime,
        value: Option<i64>,
        max_concurrency: Option<u32>,
    ) -> u32 {
        match value {
            None => 0,
            Some(n @ 0..=1) if runtime == Runtime::Wasm => n as u32,
            Some(n) if runtime == Runtime::Wasm => {
                self.problem(
                    key,
                    format!(
                        "{n}: a wasm function has one instance per node (its loaded \
                         component, serving up to concurrency_per_instance invocations at \
                         once); write 0 (scale to zero) or 1 (keep it loaded)"
                    ),
                );
                0
            }
            Some(n)
                if n >= 0 && n <= i64::from(max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY)) =>
            {
                n as u32
            }
            Some(n) => {
                self.problem(key, format!("{n} is out of range (0..=max_concurrency)"));
                0
            }
        }
    }

    fn memory_mb(&mut self, key: &str, value: Option<i64>) -> u32 {
        match value {
            None => DEFAULT_MEMORY_MB,
            Some(m)
                if m >= i64::from(*MEMORY_MB_RANGE.start())
                    && m <= i64::from(*MEMORY_MB_RANGE.end()) =>
            {
                m as u32
            }
            Some(m) => {
                self.problem(
                    key,
                    format!(
                        "{m} is out of range ({}..={} MiB)",
                        MEMORY_MB_RANGE.start(),
                        MEMORY_MB_RANGE.end()
                    ),
                );
                DEFAULT_MEMORY_MB
            }
        }
    }

    /// The `durable` setting: only process runtimes (the durable execution SDKs are Python and
    /// Node libraries).
    fn durable(
        &mut self,
        key: &str,
        runtime: Runtime,
        raw: Option<RawDurable>,
    ) -> Option<DurableSettings> {
        let settings = match raw? {
            RawDurable::On(false) => return None,
            RawDurable::On(true) => DurableSettings::default(),
            RawDurable::Settings(s) => DurableSettings {
                execution_timeout_ms: self.duration(
                    &format!("{key}.execution_timeout"),
                    s.execution_timeout.as_deref(),
                    (1000, MAX_EXECUTION_TIMEOUT_MS),
                    DEFAULT_EXECUTION_TIMEOUT_MS,
                ),
                retention_days: bounded(
                    self,
                    format!("{key}.retention_days"),
                    s.retention_days,
                    1..=90,
                )
                .unwrap_or(DEFAULT_RETENTION_DAYS),
            },
        };
        if runtime == Runtime::Wasm {
            self.problem(
                key,
                "durable functions run the AWS durable execution SDKs: use a process runtime \
                 (python, node or provided)",
            );
        }
        Some(settings)
    }

    fn timeout(&mut self, key: &str, text: Option<&str>) -> u64 {
        match text.map(humantime::parse_duration) {
            None => DEFAULT_TIMEOUT_MS,
            // Compared whole: "15m 1ns" is past 15 minutes even if its milliseconds are not.
            Some(Ok(d))
                if !d.is_zero() && d <= std::time::Duration::from_millis(MAX_TIMEOUT_MS) =>
            {
                (d.as_millis() as u64).max(1)
            }
            Some(Ok(_)) => {
                self.problem(key, "must be more than 0 and at most 15m");
                DEFAULT_TIMEOUT_MS
            }
            Some(Err(e)) => {
                self.problem(
                    key,
                    format!(
                        "`{}` is not a duration ({e}); write e.g. \"3s\" or \"500ms\"",
                        text.unwrap_or_default()
                    ),
                );
                DEFAULT_TIMEOUT_MS
            }
        }
    }

    /// `env`: plain values, and the variables whose values are secrets.
    fn environment(
        &mut self,
        key: &str,
        env: BTreeMap<String, RawEnvValue>,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let (mut plain, mut secrets) = (BTreeMap::new(), BTreeMap::new());
        for (var, value) in env {
            match value {
                RawEnvValue::Text(v) => {
                    plain.insert(var, v);
                }
                RawEnvValue::Secret(r) => {
                    if !is_valid_secret_name(&r.secret) {
                        self.problem(
                            format!("{key}.{var}"),
                            format!(
                                "`{}` is not a valid secret name: {SECRET_NAME_RULE}",
                                r.secret
                            ),
                        );
                    }
                    secrets.insert(var, r.secret);
                }
            }
        }
        for var in plain.keys().chain(secrets.keys()) {
            if var.is_empty() || var.contains(['=', '\0']) {
                self.problem(
                    key,
                    format!("`{var}` is not a valid environment variable name"),
                );
            } else if var.starts_with("AWS_LAMBDA_") || var == "_HANDLER" {
                self.problem(
                    key,
                    format!("`{var}` is reserved: the runtime sets it (as on Lambda)"),
                );
            }
        }
        (plain, secrets)
    }

    fn allowed_hosts(&mut self, key: &str, hosts: &[String]) {
        if let Err(e) = crate::egress::EgressPolicy::parse(hosts) {
            self.problem(key, e);
        }
    }

    /// The function's HTTP routes; queue triggers go to `queue_triggers`.
    fn triggers(
        &mut self,
        function: &str,
        triggers: &[RawTrigger],
        http: &crate::access::HttpAccess,
        queue_triggers: &mut Vec<PendingTrigger>,
    ) -> Vec<RouteSpec> {
        let mut routes = Vec::new();
        for (i, t) in triggers.iter().enumerate() {
            let key = format!("functions.{function}.triggers[{i}]");
            if let (None, Some(queue)) = (&t.http, &t.queue) {
                if t.auth.is_some()
                    || !t.scopes.is_empty()
                    || t.rate_limit.is_some()
                    || t.client_rate_limit.is_some()
                {
                    self.problem(
                        &key,
                        "`auth`, `scopes` and rate limits apply to HTTP triggers only",
                    );
                }
                queue_triggers.push(PendingTrigger {
                    key,
                    function: function.to_string(),
                    queue: queue.clone(),
                    qualifier: t.qualifier.clone(),
                    batch_size: t.batch_size,
                    window: t.batching_window.clone(),
                });
                continue;
            }
            if t.batch_size.is_some() || t.batching_window.is_some() || t.queue.is_some() {
                self.problem(
                    key,
                    "a trigger is either { http = \"..\" } or { queue = \"..\", batch_size = .., batching_window = \"..\" }",
                );
                continue;
            }
            if let Some(q) = &t.qualifier
                && !crate::events::is_valid_qualifier(q)
            {
                self.problem(
                    format!("{key}.qualifier"),
                    format!("`{q}` is not a version or alias"),
                );
            }
            match &t.http {
                Some(spec) => match RouteSpec::parse(spec) {
                    Ok(r)
                        if routes
                            .iter()
                            .any(|o: &RouteSpec| o.method == r.method && o.path == r.path) =>
                    {
                        self.problem(
                            format!("{key}.http"),
                            format!("route `{r}` is listed twice"),
                        )
                    }
                    Ok(r) => {
                        let access = crate::access::RouteAccess {
                            rate_limit: bounded(
                                self,
                                format!("{key}.rate_limit"),
                                t.rate_limit,
                                1..=1_000_000,
                            ),
                            client_rate_limit: bounded(
                                self,
                                format!("{key}.client_rate_limit"),
                                t.client_rate_limit,
                                1..=1_000_000,
                            ),
                            ..http.route(self, &key, t.auth.as_deref(), &t.scopes)
                        };
                        routes.push(RouteSpec {
                            qualifier: t.qualifier.clone(),
                            access,
                            ..r
                        })
                    }
                    Err(e) => self.problem(format!("{key}.http"), e.to_string()),
                },
                None => self.problem(key, "a trigger needs a kind, e.g. { http = \"GET /path\" }"),
            }
        }
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DEFAULT_WASM_CONCURRENCY_PER_INSTANCE;

    const GOOD: &str = r#"
        app = "shop"
        [functions.hello]
        runtime = "wasm"
        source = "hello.wasm"
        memory_mb = 64
        timeout = "500ms"
        env = { GREETING = "hi" }
        triggers = [{ http = "GET /hello/{name}" }, { http = "/hi" }]
        [functions.worker]
        runtime = "wasm"
        source = "worker.wasm"
    "#;

    #[test]
    fn parses_a_good_manifest_with_defaults() {
        let app = AppSpec::parse(GOOD).unwrap();
        assert_eq!(app.name, "shop");
        let hello = &app.functions[0];
        assert_eq!(hello.name, "hello");
        assert_eq!(hello.config.memory_mb, 64);
        assert_eq!(hello.config.timeout_ms, 500);
        assert_eq!(hello.config.env["GREETING"], "hi");
        assert_eq!(hello.routes.len(), 2);
        let worker = &app.functions[1];
        assert_eq!(worker.config.memory_mb, DEFAULT_MEMORY_MB);
        assert_eq!(worker.config.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(worker.routes.is_empty());
    }

    #[test]
    fn durable_functions_take_defaults_bounds_and_process_runtimes_only() {
        let base = "app = \"a\"\n[functions.f]\nruntime = \"python\"\nsource = \"f\"\n\
                    handler = \"app.handler\"\n";
        let config = |extra: &str| {
            AppSpec::parse(&format!("{base}{extra}")).map(|a| a.functions[0].config.durable)
        };
        assert_eq!(config("").unwrap(), None);
        assert_eq!(config("durable = false").unwrap(), None);
        assert_eq!(
            config("durable = true").unwrap(),
            Some(DurableSettings::default())
        );
        assert_eq!(
            config("durable = { execution_timeout = \"2h\", retention_days = 3 }").unwrap(),
            Some(DurableSettings {
                execution_timeout_ms: 2 * 3600 * 1000,
                retention_days: 3
            })
        );
        for (bad, key) in [
            (
                "durable = { execution_timeout = \"400d\" }",
                "functions.f.durable.execution_timeout",
            ),
            (
                "durable = { retention_days = 0 }",
                "functions.f.durable.retention_days",
            ),
        ] {
            let ManifestError::Invalid(problems) = config(bad).unwrap_err() else {
                panic!("{bad}: expected Invalid");
            };
            assert_eq!(problems[0].key, key, "{bad}");
        }
        let wasm = "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n\
                    durable = true\n";
        let ManifestError::Invalid(problems) = AppSpec::parse(wasm).unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(problems[0].key, "functions.f.durable");
    }

    #[test]
    fn syntax_errors_name_the_field() {
        let err = AppSpec::parse(
            "app = \"a\"\n[functions.f]\nruntime=\"wasm\"\nsource=\"f.wasm\"\nmemroy_mb = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("memroy_mb"), "{err}");
        assert!(AppSpec::parse("app = ").is_err());
        let err = AppSpec::parse("[functions.f]\nruntime=\"wasm\"\nsource=\"x\"").unwrap_err();
        assert!(err.to_string().contains("app"), "{err}");
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_key() {
        let text = r#"
            version = 7
            app = "Bad App"
            [functions.f]
            runtime = "cobol"
            source = ""
            memory_mb = 0
            timeout = "forever"
            allowed_hosts = ["http://x/y"]
            triggers = [{ http = "FETCH /x" }, {}]
        "#;
        let ManifestError::Invalid(problems) = AppSpec::parse(text).unwrap_err() else {
            panic!("expected Invalid");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "version",
                "app",
                "functions.f.runtime",
                "functions.f.source",
                "functions.f.memory_mb",
                "functions.f.timeout",
                "functions.f.allowed_hosts",
                "functions.f.triggers[0].http",
                "functions.f.triggers[1]",
            ]
        );
    }

    #[test]
    fn limits_are_bounded() {
        let base = "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n";
        assert!(AppSpec::parse(&format!("{base}timeout = \"16m\"")).is_err());
        assert!(AppSpec::parse(&format!("{base}timeout = \"15m\"")).is_ok());
        // Compared as durations: a nanosecond past 15 minutes is past it.
        assert!(AppSpec::parse(&format!("{base}timeout = \"15m 1ns\"")).is_err());
        assert!(AppSpec::parse(&format!("{base}memory_mb = 4097")).is_err());
        assert!(
            AppSpec::parse(&format!(
                "{base}triggers = [{{ http = \"GET /a\" }}, {{ http = \"GET /a\" }}]"
            ))
            .is_err()
        );
        assert!(
            AppSpec::parse("app = \"a\"").is_err(),
            "an app without functions"
        );
    }

    #[test]
    fn sources_stay_inside_the_app_directory() {
        let with = |source: &str| {
            AppSpec::parse(&format!(
                "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"{source}\"\n"
            ))
        };
        assert!(with("build/f.wasm").is_ok());
        assert!(with("./f.wasm").is_ok());
        for bad in ["/etc/shadow", "../secret.wasm", "build/../../x.wasm"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.contains("functions.f.source") && err.contains("outside"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn process_runtimes_need_a_handler() {
        let app = AppSpec::parse(
            "app = \"a\"\n[functions.p]\nruntime = \"python\"\nsource = \"src\"\n\
             handler = \"app.handler\"\nmax_concurrency = 4\n",
        )
        .unwrap();
        let p = &app.functions[0].config;
        assert_eq!(p.runtime, Runtime::Python);
        assert_eq!(p.handler.as_deref(), Some("app.handler"));
        assert_eq!(p.max_concurrency(), 4);
        let provided = "app = \"a\"\n[functions.p]\nruntime = \"provided\"\nsource = \"d\"\n";
        assert!(
            AppSpec::parse(provided).is_ok(),
            "provided needs no handler"
        );
        for reserved in ["AWS_LAMBDA_FUNCTION_VERSION", "_HANDLER"] {
            let p = format!("{provided}env = {{ {reserved} = \"x\" }}\n");
            assert!(AppSpec::parse(&p).is_err(), "{reserved} is reserved");
        }
        for handler in ["bootstrap", "function.handler", "my handler"] {
            let p = format!("{provided}handler = \"{handler}\"\n");
            assert!(
                AppSpec::parse(&p).is_ok(),
                "provided takes any handler: {handler}"
            );
        }
        for (body, key) in [
            (
                "runtime = \"node\"\nsource = \"d\"\n",
                "functions.p.handler",
            ),
            (
                "runtime = \"python\"\nsource = \"d\"\nhandler = \"nodot\"\n",
                "functions.p.handler",
            ),
            (
                "runtime = \"wasm\"\nsource = \"d\"\nhandler = \"a.b\"\n",
                "functions.p.handler",
            ),
            (
                "runtime = \"provided\"\nsource = \"d\"\nmax_concurrency = 0\n",
                "functions.p.max_concurrency",
            ),
            (
                "runtime = \"provided\"\nsource = \"d\"\nconcurrency_per_instance = 2\n",
                "functions.p.concurrency_per_instance",
            ),
            (
                "runtime = \"wasm\"\nsource = \"d\"\nconcurrency_per_instance = 0\n",
                "functions.p.concurrency_per_instance",
            ),
            (
                "runtime = \"wasm\"\nsource = \"d\"\nmin_instances = 2\n",
                "functions.p.min_instances",
            ),
        ] {
            let ManifestError::Invalid(problems) =
                AppSpec::parse(&format!("app = \"a\"\n[functions.p]\n{body}")).unwrap_err()
            else {
                panic!("expected Invalid for {body}");
            };
            assert_eq!(problems[0].key, key, "{body}");
        }
    }

    #[test]
    fn concurrency_per_instance_is_one_for_processes_and_many_for_wasm() {
        let app = AppSpec::parse(
            "app = \"a\"\n[functions.w]\nruntime = \"wasm\"\nsource = \"w.wasm\"\n\
             concurrency_per_instance = 50\nmin_instances = 1\n\
             [functions.d]\nruntime = \"wasm\"\nsource = \"w.wasm\"\n\
             [functions.p]\nruntime = \"provided\"\nsource = \"d\"\nconcurrency_per_instance = 1\n",
        )
        .unwrap();
        let by_name = |n: &str| &app.functions.iter().find(|f| f.name == n).unwrap().config;
        assert_eq!(by_name("w").concurrency_per_instance(), 50);
        assert_eq!(by_name("w").min_instances, 1);
        assert_eq!(
            by_name("d").concurrency_per_instance(),
            DEFAULT_WASM_CONCURRENCY_PER_INSTANCE
        );
        assert_eq!(by_name("p").concurrency_per_instance(), 1);
    }

    #[test]
    fn names_follow_the_rule() {
        assert!(is_valid_name("hello-world_2"));
        assert!(!is_valid_name("Hello"));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(64)));
    }

    const EVENTS: &str = r#"
        app = "shop"
        [functions.worker]
        runtime = "wasm"
        source = "w.wasm"
        max_retries = 0
        max_event_age = "1h"
        on_failure = { topic = "alerts" }
        dead_letter = "dlq"
        triggers = [{ queue = "orders", batch_size = 5, batching_window = "200ms" }]
        [queues.orders]
        visibility_timeout = "10s"
        max_receive_count = 3
        dead_letter = "dlq"
        [queues.dlq]
        [topics.alerts]
        subscriptions = [
          { name = "to-worker", function = "worker", filter = { type = ["order"] } },
          { name = "hook", webhook = "http://127.0.0.1:9/h", filter_scope = "body" },
        ]
        [schedules.tick]
        expression = "rate(1 minute)"
        target = { queue = "orders" }
        catch_up = "skip"
        [[cloudevents]]
        type = "com.example.*"
        target = { topic = "alerts" }
    "#;

    #[test]
    fn parses_event_resources_and_async_policy() {
        use crate::events::{CatchUp, Endpoint, Target};
        let app = AppSpec::parse(EVENTS).unwrap();
        let policy = &app.functions[0].config.events;
        assert_eq!(policy.max_retries, 0);
        assert_eq!(policy.max_event_age_ms, 3_600_000);
        assert_eq!(policy.on_failure, Some(Target::Topic("alerts".into())));
        assert_eq!(policy.dead_letter.as_deref(), Some("dlq"));
        let e = &app.events;
        assert_eq!(e.triggers[0].batch_size, 5);
        assert_eq!(e.triggers[0].window_ms, 200);
        let orders = e.queues.iter().find(|q| q.name == "orders").unwrap();
        assert_eq!(orders.visibility_timeout_ms, 10_000);
        assert_eq!(orders.max_receive_count, Some(3));
        let subs = &e.topics[0].subscriptions;
        assert_eq!(subs[0].endpoint, Endpoint::Function("worker".into()));
        assert!(subs[0].policy().is_some());
        assert_eq!(subs[1].filter, None);
        assert_eq!(e.schedules[0].catch_up, CatchUp::Skip);
        assert_eq!(e.schedules[0].timezone, "UTC");
        assert!(e.routes[0].matches("com.example.x", "/any"));
    }

    #[test]
    fn bad_event_resources_name_each_key() {
        let text = EVENTS
            .replace("batch_size = 5", "batch_size = 0")
            .replace("rate(1 minute)", "rate(0 minutes)")
            .replace(
                "{ type = [\"order\"] }",
                "{ type = [{ numeric = [\"!\", 1] }] }",
            )
            .replace("max_retries = 0", "max_retries = 11")
            .replace("[queues.dlq]", "[queues.dlq]\nmax_receive_count = 2");
        let err = AppSpec::parse(&text).unwrap_err().to_string();
        for key in [
            "functions.worker.triggers[0].batch_size",
            "schedules.tick.expression",
            "topics.alerts.subscriptions[0].filter",
            "functions.worker.max_retries",
            "queues.dlq.dead_letter",
        ] {
            assert!(err.contains(key), "{key} missing from {err}");
        }
    }

    const HTTP: &str = r#"
        app = "shop"
        [http]
        auth = "users"
        [http.cors]
        allow_origins = ["https://app.example.com"]
        allow_methods = ["put"]
        allow_headers = ["Authorization"]
        allow_credentials = true
        max_age = 60
        [http.authorizers.users]
        type = "jwt"
        issuer = "https://auth.example.com/"
        audiences = ["shop"]
        jwks_url = "https://auth.example.com/jwks.json"
        [http.authorizers.gate]
        type = "function"
        function = "authz"
        [functions.authz]
        runtime = "python"
        handler = "a.h"
        source = "a"
        [functions.api]
        runtime = "wasm"
        source = "api.wasm"
        triggers = [
            { http = "GET /orders", scopes = ["orders:read"] },
            { http = "GET /public", auth = "none" },
            { http = "GET /gated", auth = "gate" },
        ]
    "#;

    #[test]
    fn routes_resolve_their_authorizer_and_carry_the_app_cors() {
        let app = AppSpec::parse(HTTP).unwrap();
        let api = app.functions.iter().find(|f| f.name == "api").unwrap();
        let access = |path: &str| &api.routes.iter().find(|r| r.path == path).unwrap().access;
        match &access("/orders").auth {
            crate::access::RouteAuth::Jwt { authorizer, scopes } => {
                assert_eq!(authorizer.name, "users");
                assert_eq!(authorizer.audiences, ["shop"]);
                assert_eq!(scopes, &["orders:read"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(access("/public").auth.is_none());
        match &access("/gated").auth {
            crate::access::RouteAuth::Function { authorizer } => {
                assert_eq!(authorizer.function, "authz");
                assert_eq!(authorizer.ttl_ms, 300_000);
                assert_eq!(
                    authorizer.identity_sources,
                    [crate::access::IdentitySource::Header(
                        "authorization".into()
                    )]
                );
            }
            other => panic!("{other:?}"),
        }
        let cors = access("/public").cors.as_ref().unwrap();
        assert_eq!(cors.allow_methods, ["PUT"]);
        assert_eq!(cors.allow_headers, ["authorization"]);
        assert_eq!(cors.max_age_s, Some(60));
    }

    #[test]
    fn http_access_mistakes_name_their_keys() {
        for (from, to, key) in [
            (r#"auth = "users""#, r#"auth = "nobody""#, "http.auth"),
            (
                r#"function = "authz""#,
                r#"function = "ghost""#,
                "http.authorizers.gate.function",
            ),
            ("allow_credentials = true", "", ""),
            (
                r#"["https://app.example.com"]"#,
                r#"["*"]"#,
                "http.cors.allow_credentials",
            ),
            (
                r#"["https://app.example.com"]"#,
                r#"["app.example.com"]"#,
                "http.cors.allow_origins",
            ),
            (
                r#"jwks_url = "https://auth.example.com/jwks.json""#,
                r#"jwks = '{"keys":[]}'"#,
                "http.authorizers.users.jwks",
            ),
            (
                r#"jwks_url = "https://auth.example.com/jwks.json""#,
                "",
                "http.authorizers.users",
            ),
            (
                r#"audiences = ["shop"]"#,
                "",
                "http.authorizers.users.audiences",
            ),
            (
                r#"type = "function""#,
                r#"type = "lambda""#,
                "http.authorizers.gate.type",
            ),
            (
                r#"auth = "none" }"#,
                r#"auth = "none", scopes = ["x"] }"#,
                "functions.api.triggers[1].scopes",
            ),
            (
                r#"auth = "gate" }"#,
                r#"auth = "gate", scopes = ["x"] }"#,
                "functions.api.triggers[2].scopes",
            ),
            ("max_age = 60", "max_age = 100000", "http.cors.max_age"),
            (
                r#"audiences = ["shop"]"#,
                r#"audiences = ["shop"]
                identity_source = "cookie.session""#,
                "http.authorizers.users.identity_source",
            ),
            (
                r#"audiences = ["shop"]"#,
                r#"audiences = ["shop"]
                identity_source = "$request.header.X-Token""#,
                "",
            ),
            (
                r#"auth = "none" }"#,
                r#"auth = "none", rate_limit = 0 }"#,
                "functions.api.triggers[1].rate_limit",
            ),
            (
                r#"auth = "none" }"#,
                r#"auth = "none", rate_limit = 5, client_rate_limit = 1 }"#,
                "",
            ),
        ] {
            assert!(HTTP.contains(from), "{from}");
            let text = HTTP.replacen(from, to, 1);
            match AppSpec::parse(&text) {
                Ok(_) => assert!(key.is_empty(), "{to} should be refused"),
                Err(ManifestError::Invalid(problems)) => {
                    assert!(!key.is_empty(), "{to}: {problems:?}");
                    assert!(problems.iter().any(|p| p.key == key), "{key}: {problems:?}");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}
