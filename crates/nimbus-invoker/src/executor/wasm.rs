//! The wasm executor: functions that are WebAssembly components, on [`nimbus_wasm`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use nimbus_core::api::{InstanceCounts, Status};
use nimbus_core::burst::StartRate;
use nimbus_core::keepalive::KeepAlive;
use nimbus_core::trace::{Phase, phase};
use nimbus_core::{ErrorType, EventAttributes, FunctionVersion};
use nimbus_store::ArtifactStore;
use nimbus_wasm::{
    BodyFailure, Completion, Event, GuestError, Limits, LoadedFunction, WasmInstance, WasmRuntime,
};

use super::{
    BoxFuture, Completed, Executor, Instances, Job, PrepareError, Prepared, Ran, blocking,
};
use crate::request::{BodyError, FunctionError, HttpRequest, Output, Payload, ResponseBody};

/// Request header carrying the invocation id to HTTP functions (and back in the response).
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";
/// Request headers carrying captured route parameters to HTTP functions.
pub const PARAM_HEADER_PREFIX: &str = "x-nimbus-param-";
/// Header carrying what a route's authorizer said of the caller (JSON: a JWT's `claims` and
/// `scopes`, or a function authorizer's `context`), set by Nimbus only.
pub const AUTHORIZER_HEADER: &str = "x-nimbus-authorizer";
/// Request header carrying the W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Runs wasm components.
pub struct WasmExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    runtime: Arc<WasmRuntime>,
    artifacts: ArtifactStore,
    /// The node's burst rate for instance starts (the same bucket the process runtime uses).
    start_rate: Option<Arc<StartRate>>,
    /// How long an idle instance stays loaded.
    keep_alive: Duration,
    /// The tenant's share of the node's memory budget, if it has one.
    budget: Option<Arc<nimbus_core::budget::MemoryBudget>>,
}

impl WasmExecutor {
    /// An executor on `runtime`, reading artifacts from `artifacts`; loads take a token of
    /// `start_rate`, and idle instances unload after `keep_alive`.
    pub fn new(
        runtime: Arc<WasmRuntime>,
        artifacts: ArtifactStore,
        start_rate: Option<Arc<StartRate>>,
        keep_alive: Duration,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                runtime,
                artifacts,
                start_rate,
                keep_alive,
                budget: None,
            }),
        }
    }

    /// This executor with its instances' memory charged to `budget` (a tenant's share).
    pub fn with_budget(self, budget: Option<Arc<nimbus_core::budget::MemoryBudget>>) -> Self {
        let s = &self.shared;
        Self {
            shared: Arc::new(Shared {
                runtime: s.runtime.clone(),
                artifacts: s.artifacts.clone(),
                start_rate: s.start_rate.clone(),
                keep_alive: s.keep_alive,
                budget,
            }),
        }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<WasmRuntime> {
        &self.shared.runtime
    }

    fn function(&self, version: &FunctionVersion, instance: Arc<WasmInstance>) -> WasmFunction {
        WasmFunction {
            shared: self.shared.clone(),
            function: version.function.clone(),
            limits: Limits {
                budget: self.shared.budget.clone(),
                ..Limits::from(&version.config)
            },
            instance,
        }
    }
}

impl Shared {
    /// Loads a function's component (a cold start): shared when another function holds it,
    /// else after a token of the burst rate, from the compiled cache or by compiling.
    async fn load(&self, artifact: &str) -> Result<Arc<LoadedFunction>, PrepareError> {
        if let Some(loaded) = self.runtime.shared(artifact) {
            return Ok(loaded);
        }
        if let Some(rate) = &self.start_rate {
            tokio::time::sleep(rate.reserve(Instant::now())).await;
        }
        let (runtime, artifacts, sha) = (
            self.runtime.clone(),
            self.artifacts.clone(),
            artifact.to_string(),
        );
        Ok(blocking(move || runtime.load(&sha, || std::fs::read(artifacts.path(&sha)))).await??)
    }
}

impl Executor for WasmExecutor {
    fn prepare<'a>(
        &'a self,
        version: &'a FunctionVersion,
    ) -> BoxFuture<'a, Result<Prepared, PrepareError>> {
        Box::pin(async move {
            let sha = version.artifact_sha256.clone();
            let loaded = match self.shared.runtime.shared(&sha) {
                Some(loaded) => loaded,
                None => {
                    let (runtime, artifacts) =
                        (self.shared.runtime.clone(), self.shared.artifacts.clone());
                    blocking(move || {
                        let wasm = artifacts.read(&sha)?;
                        Ok::<_, PrepareError>(runtime.prepare(&sha, &wasm)?)
                    })
                    .await??
                }
            };
            let kind = loaded.kind();
            let keep = version.config.min_instances > 0;
            let instance =
                self.shared
                    .runtime
                    .instance(&version.artifact_sha256, Some(loaded), keep);
            Ok(Prepared {
                kind,
                instances: Arc::new(self.function(version, instance)),
            })
        })
    }

    fn restore(&self, version: &FunctionVersion) -> Arc<dyn Instances> {
        let keep = version.config.min_instances > 0;
        let instance = self
            .shared
            .runtime
            .instance(&version.artifact_sha256, None, keep);
        Arc::new(self.function(version, instance))
    }

    fn concurrency(&self, config: &nimbus_core::FunctionConfig) -> u32 {
        // One instance per node serves at most concurrency_per_instance at once; by default a
        // quarter of the node's pool.
        let per_instance = config
            .concurrency_per_instance
            .unwrap_or_else(|| self.shared.runtime.default_concurrency());
        config
            .max_concurrency
            .map_or(per_instance, |m| m.min(per_instance))
    }

    fn buffers_http_bodies(&self) -> bool {
        false
    }

    fn isolation(&self) -> Option<String> {
        None
    }

    fn sweep(&self, keep: &std::collections::HashSet<String>) -> std::io::Result<usize> {
        self.shared.runtime.retain_compiled(keep)
    }

    fn report(&self, status: &mut Status) {
        let stats = self.shared.runtime.stats();
        status.compiled = stats.compiled;
        status.loaded_from_cache = stats.loaded_from_cache;
    }

    fn background(&self) -> Vec<(&'static str, BoxFuture<'static, ()>)> {
        let reaper = self
            .shared
            .runtime
            .clone()
            .run_reaper(self.shared.keep_alive);
        vec![("wasm reaper", Box::pin(reaper))]
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        // Instances hold only memory; they go with the node.
        Box::pin(async {})
    }
}

/// One wasm function version's instance.
struct WasmFunction {
    shared: Arc<Shared>,
    function: String,
    limits: Limits,
    instance: Arc<WasmInstance>,
}

impl From<GuestError> for FunctionError {
    fn from(e: GuestError) -> Self {
        FunctionError::new(e.kind, e.kind.as_str(), e.message)
    }
}

fn completed(c: Completion, init: Option<Duration>, load: Option<Phase>) -> Completed {
    let mut phases = c.phases;
    if let Some(load) = load {
        phases.insert(0, load);
    }
    Completed {
        duration: c.duration,
        max_memory_bytes: c.max_memory_bytes,
        error: c.error.map(FunctionError::from),
        logs: c.logs,
        init,
        phases,
    }
}

/// The CloudEvents context a wasm event function gets when its caller gave none.
pub fn default_event_context(function: &str, id: &str) -> EventAttributes {
    EventAttributes {
        id: id.to_string(),
        source: format!("/v1/functions/{function}"),
        ty: "nimbus.invoke".into(),
        ..EventAttributes::default()
    }
}

/// `value` as JSON text in ASCII (what a header carries): other characters as `\\u` escapes.
fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The request an HTTP function sees: the route's parameters and the invocation id as
/// headers (never the client's own spelling of them), and its own span as `traceparent`.
fn guest_request(
    job_id: &str,
    span: Option<String>,
    req: HttpRequest,
) -> http::Request<impl http_body::Body<Data = Bytes, Error = BodyFailure> + Send + 'static> {
    let HttpRequest {
        method,
        uri,
        mut headers,
        params,
        body,
        authorizer,
        ..
    } = req;
    let stale: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            k.as_str().starts_with(PARAM_HEADER_PREFIX)
                || k.as_str() == INVOCATION_ID_HEADER
                || k.as_str() == AUTHORIZER_HEADER
        })
        .cloned()
        .collect();
    for k in stale {
        headers.remove(k);
    }
    for (name, value) in params {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(format!(
                "{PARAM_HEADER_PREFIX}{}",
                name.to_ascii_lowercase()
            )),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(k, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(job_id) {
        headers.insert(INVOCATION_ID_HEADER, v);
    }
    if let Some(context) = authorizer
        && let Ok(v) = HeaderValue::from_str(&ascii_json(&context))
    {
        headers.insert(AUTHORIZER_HEADER, v);
    }
    if let Some(v) = span.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(TRACEPARENT_HEADER, v);
    }
    let body = body.map_err(|e| match e {
        BodyError::TooLarge { limit } => BodyFailure::TooLarge(limit),
        BodyError::Read(_) => BodyFailure::Terminated,
    });
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

impl WasmFunction {
    async fn run_job(&self, job: Job) -> Ran {
        let running = self.instance.enter();
        let loading = Instant::now();
        let loaded = self
            .instance
            .get_or_load(async || self.shared.load(self.instance.artifact()).await)
            .await;
        let (loaded, init) = match loaded {
            Ok(l) => l,
            Err(e) => {
                let error = FunctionError::new(
                    ErrorType::Init,
                    ErrorType::Init.as_str(),
                    format!("the function could not be loaded: {e}"),
                );
                tracing::error!(function = %self.function, error = %e, "loading a component failed");
                let phases = vec![Phase::since(phase::LOAD, loading)];
                let logs = job
                    .finish
                    .complete(Completed::failed(error.clone(), phases));
                return Ran {
                    output: Err(error),
                    logs: Some(logs),
                };
            }
        };
        let load = init.map(|_| Phase::since(phase::LOAD, loading));
        let Job {
            id,
            payload,
            span,
            finish,
            ..
        } = job;
        match payload {
            Payload::Http(req) => {
                let request = guest_request(&id, span.map(|s| s.to_string()), req);
                let served = self
                    .shared
                    .runtime
                    .serve_http(&loaded, &self.limits, request, move |c| {
                        drop(running);
                        finish.complete(completed(c, init, load));
                    })
                    .await;
                Ran {
                    output: served
                        .map(|r| Output::Http(r.map(ResponseBody::Guest)))
                        .map_err(FunctionError::from),
                    logs: None,
                }
            }
            Payload::Event { data, attributes } => {
                let context =
                    attributes.unwrap_or_else(|| default_event_context(&self.function, &id));
                let (result, c) = self
                    .shared
                    .runtime
                    .invoke_event(&loaded, &self.limits, Event { context, data })
                    .await;
                drop(running);
                let logs = finish.complete(completed(c, init, load));
                Ran {
                    output: result
                        .map(|b| Output::Bytes(Bytes::from(b)))
                        .map_err(FunctionError::from),
                    logs: Some(logs),
                }
            }
        }
    }
}

impl Instances for WasmFunction {
    fn run(&self, job: Job) -> BoxFuture<'_, Ran> {
        Box::pin(self.run_job(job))
    }

    fn counts(&self) -> Option<InstanceCounts> {
        Some(self.instance.counts())
    }

    fn keep_alive(&self) -> String {
        if self.instance.keeps_loaded() {
            "kept loaded (min_instances)".to_string()
        } else {
            KeepAlive::Fixed {
                keep_ms: self.shared.keep_alive.as_millis() as i64,
            }
            .to_string()
        }
    }

    fn prestart(&self) -> BoxFuture<'_, Result<(), PrepareError>> {
        Box::pin(async move {
            if self.instance.keeps_loaded() {
                self.instance
                    .get_or_load(async || self.shared.load(self.instance.artifact()).await)
                    .await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Body;

    fn request(authorizer: Option<serde_json::Value>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            AUTHORIZER_HEADER,
            HeaderValue::from_static("{\"forged\":1}"),
        );
        headers.insert("x-nimbus-param-id", HeaderValue::from_static("forged"));
        let req = HttpRequest {
            method: http::Method::GET,
            uri: "/x".parse().expect("uri"),
            headers,
            params: vec![("id".into(), "7".into())],
            client: None,
            body: Body::Full(Bytes::new()),
            authorizer,
        };
        guest_request("inv-1", None, req).headers().clone()
    }

    #[test]
    fn the_guest_sees_only_what_nimbus_says_of_the_caller() {
        let h = request(Some(
            serde_json::json!({"jwt": {"claims": {"name": "Zoë"}}}),
        ));
        assert_eq!(
            h[AUTHORIZER_HEADER],
            "{\"jwt\":{\"claims\":{\"name\":\"Zo\\u00eb\"}}}"
        );
        assert_eq!(h["x-nimbus-param-id"], "7");
        assert_eq!(h[INVOCATION_ID_HEADER], "inv-1");
        let h = request(None);
        assert!(h.get(AUTHORIZER_HEADER).is_none());
    }
}
