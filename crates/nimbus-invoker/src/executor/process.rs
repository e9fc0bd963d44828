//! The process executor: Python, Node.js and `provided` functions in sandboxes, driven
//! through the Lambda Runtime API ([`nimbus_process`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_aws::apigw;
use nimbus_core::api::{InstanceCounts, Status};
use nimbus_core::clock::now_ms;
use nimbus_core::{ErrorType, FunctionKind, FunctionVersion, Trigger};
use nimbus_process::{Failure, FunctionPool, PoolConfig, ProcessRuntime};
use nimbus_store::ArtifactStore;
use tokio::sync::OnceCell;

use super::{
    BoxFuture, Completed, Executor, Instances, Job, PrepareError, Prepared, Ran, blocking,
};
use crate::request::{Body, FunctionError, HttpRequest, Output, Payload, ResponseBody};

/// Runs process functions.
pub struct ProcessExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    runtime: Arc<ProcessRuntime>,
    artifacts: ArtifactStore,
    /// The tenant's share of the node's memory budget, if it has one.
    budget: Option<Arc<nimbus_core::budget::MemoryBudget>>,
}

impl ProcessExecutor {
    /// An executor on `runtime`, unpacking code bundles from `artifacts`.
    pub fn new(runtime: Arc<ProcessRuntime>, artifacts: ArtifactStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                runtime,
                artifacts,
                budget: None,
            }),
        }
    }

    /// This executor with its sandboxes' memory charged to `budget` (a tenant's share).
    pub fn with_budget(self, budget: Option<Arc<nimbus_core::budget::MemoryBudget>>) -> Self {
        let shared = &self.shared;
        Self {
            shared: Arc::new(Shared {
                runtime: shared.runtime.clone(),
                artifacts: shared.artifacts.clone(),
                budget,
            }),
        }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<ProcessRuntime> {
        &self.shared.runtime
    }
}

impl Shared {
    /// Unpacks a version's code (once; idempotent) and creates its (empty) sandbox pool.
    async fn pool(&self, v: &FunctionVersion) -> Result<Arc<FunctionPool>, PrepareError> {
        let (runtime, artifacts, v) = (self.runtime.clone(), self.artifacts.clone(), v.clone());
        let budget = self.budget.clone();
        blocking(move || {
            let c = &v.config;
            let code_dir = runtime.prepare_code(
                &v.artifact_sha256,
                || std::fs::read(artifacts.path(&v.artifact_sha256)),
                c.runtime,
                c.handler.as_deref(),
            )?;
            Ok(runtime.pool(PoolConfig {
                function: v.function.clone(),
                version: v.id.clone(),
                runtime: c.runtime,
                handler: c.handler.clone(),
                memory_mb: c.memory_mb,
                timeout: Duration::from_millis(c.timeout_ms),
                env: c.env.clone(),
                egress: (!c.allowed_hosts.is_empty()).then(|| {
                    // The manifest was validated: an unparsable list allows nothing.
                    Arc::new(
                        nimbus_core::egress::EgressPolicy::parse(&c.allowed_hosts)
                            .unwrap_or_default(),
                    )
                }),
                code_dir,
                max_concurrency: c.max_concurrency(),
                min_instances: c.min_instances,
                budget,
            }))
        })
        .await?
    }
}

impl Executor for ProcessExecutor {
    fn prepare<'a>(
        &'a self,
        version: &'a FunctionVersion,
    ) -> BoxFuture<'a, Result<Prepared, PrepareError>> {
        Box::pin(async move {
            let pool = self.shared.pool(version).await?;
            Ok(Prepared {
                kind: FunctionKind::Event,
                instances: Arc::new(ProcessFunction {
                    shared: self.shared.clone(),
                    version: version.clone(),
                    pool: OnceCell::new_with(Some(pool)),
                }),
            })
        })
    }

    fn restore(&self, version: &FunctionVersion) -> Arc<dyn Instances> {
        Arc::new(ProcessFunction {
            shared: self.shared.clone(),
            version: version.clone(),
            pool: OnceCell::new(),
        })
    }

    fn concurrency(&self, config: &nimbus_core::FunctionConfig) -> u32 {
        // One invocation per sandbox, at most max_concurrency sandboxes.
        config.max_concurrency()
    }

    fn buffers_http_bodies(&self) -> bool {
        true
    }

    fn isolation(&self) -> Option<String> {
        Some(self.shared.runtime.isolation().describe())
    }

    fn sweep(&self, keep: &std::collections::HashSet<String>) -> std::io::Result<usize> {
        self.shared.runtime.retain_code(keep)
    }

    fn report(&self, status: &mut Status) {
        status.isolation = self.shared.runtime.isolation().describe();
    }

    fn background(&self) -> Vec<(&'static str, BoxFuture<'static, ()>)> {
        let runtime = self.shared.runtime.clone();
        runtime.start();
        vec![("process reaper", Box::pin(runtime.run_reaper()))]
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.shared.runtime.shutdown())
    }
}

/// One process function version: its sandbox pool, created (and its code unpacked, if a
/// restart lost it) on first use.
struct ProcessFunction {
    shared: Arc<Shared>,
    version: FunctionVersion,
    pool: OnceCell<Arc<FunctionPool>>,
}

impl ProcessFunction {
    async fn pool(&self) -> Result<Arc<FunctionPool>, PrepareError> {
        self.pool
            .get_or_try_init(|| self.shared.pool(&self.version))
            .await
            .cloned()
    }

    async fn run_job(&self, job: Job) -> Ran {
        let pool = match self.pool().await {
            Ok(pool) => pool,
            Err(e) => {
                tracing::error!(function = %self.version.function, error = %e, "cannot prepare the function's code");
                let error = FunctionError::new(
                    ErrorType::Init,
                    "Sandbox.Error",
                    format!("the function's code could not be prepared: {e}"),
                );
                let logs = job
                    .finish
                    .complete(Completed::failed(error.clone(), Vec::new()));
                return Ran {
                    output: Err(error),
                    logs: Some(logs),
                };
            }
        };
        let region = self.shared.runtime.region().to_string();
        let timeout_ms = self.version.config.timeout_ms;
        // The caller's X-Ray header, or this invocation's span in X-Ray's spelling: what
        // Lambda runtimes expose as `_X_AMZN_TRACE_ID`.
        let xray = job.xray.clone().or_else(|| {
            let t = job.span?;
            Some(nimbus_aws::lambda::xray_trace_header(
                &t.trace_id,
                &t.span_id,
                t.sampled,
            ))
        });
        let Job {
            id,
            trigger,
            payload,
            client_context,
            finish,
            ..
        } = job;
        let (event, http) = match payload {
            Payload::Event { data, .. } => (data, false),
            Payload::Http(req) => (apigw_event(&id, &trigger, req), true),
        };
        // The invocation runs to its end in its own task: a caller that goes away does not
        // cut a sandbox's invocation short.
        let task = tokio::spawn(async move {
            let outcome = pool.invoke(id.clone(), event, xray, client_context).await;
            let result = outcome.result.map_err(|f| from_failure(f, timeout_ms));
            let logs = finish.complete(Completed {
                duration: outcome.duration,
                max_memory_bytes: outcome.max_memory_bytes,
                error: result.as_ref().err().cloned(),
                logs: outcome.logs,
                init: outcome.init,
                phases: outcome.phases,
            });
            (result, logs)
        });
        let (result, logs) = match task.await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(region, error = %e, "an invocation task failed");
                let error = FunctionError::new(
                    ErrorType::Init,
                    "Sandbox.Error",
                    "the invocation failed inside Nimbus; see the server log",
                );
                return Ran {
                    output: Err(error),
                    logs: None,
                };
            }
        };
        let output = result.map(|bytes| {
            if http {
                http_output(&bytes)
            } else {
                Output::Bytes(bytes)
            }
        });
        Ran {
            output,
            logs: Some(logs),
        }
    }
}

/// The API Gateway HTTP API (2.0) event of an HTTP request (the invoker read its body whole).
pub(crate) fn apigw_event(id: &str, trigger: &Trigger, req: HttpRequest) -> Bytes {
    let body = match req.body {
        Body::Full(b) => b,
        Body::Stream(_) => Bytes::new(),
    };
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = req.method;
    parts.uri = req.uri;
    parts.headers = req.headers;
    let route = match trigger {
        Trigger::Http { route } => route.as_str(),
        _ => "",
    };
    let event = apigw::event(&apigw::HttpRequest {
        request: nimbus_aws::RawRequest::from_parts(&parts, &body),
        route_key: route,
        path_parameters: &req.params,
        request_id: id,
        source_ip: &req
            .client
            .map_or_else(|| "127.0.0.1".to_string(), |c| c.ip().to_string()),
        time_ms: now_ms(),
        authorizer: req.authorizer.as_ref(),
    });
    Bytes::from(event.to_string())
}

/// The HTTP response of an API Gateway-style result.
fn http_output(result: &[u8]) -> Output {
    match apigw::response(result) {
        Ok(r) => {
            let mut response = http::Response::new(ResponseBody::full(r.body));
            *response.status_mut() = r.status;
            *response.headers_mut() = r.headers;
            Output::Http(response)
        }
        Err(e) => Output::BadHttpResponse(e.to_string()),
    }
}

/// A process function's failure, in Lambda's words.
fn from_failure(f: Failure, timeout_ms: u64) -> FunctionError {
    // `KeyError: 'Records'`, as the traceback's last line says it: the message alone can be
    // meaningless (`'Records'`).
    let message_of = |body: &Bytes, fallback: &str| {
        let doc = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
        let text = |k: &str| doc.get(k).and_then(|v| v.as_str());
        match (text("errorType"), text("errorMessage")) {
            (Some(t), Some(m)) if !t.is_empty() && !m.starts_with(t) => format!("{t}: {m}"),
            (_, Some(m)) => m.to_string(),
            _ => fallback.to_string(),
        }
    };
    match f {
        Failure::Handled { error_type, body } => FunctionError {
            kind: ErrorType::Handled,
            message: message_of(&body, &error_type),
            doc: body,
        },
        Failure::Init { error_type, body } => FunctionError {
            kind: ErrorType::Init,
            message: message_of(&body, &error_type),
            doc: body,
        },
        Failure::Timeout => FunctionError::new(
            ErrorType::Timeout,
            "Sandbox.Timedout",
            nimbus_aws::lambda::timeout_message(timeout_ms),
        ),
        Failure::OutOfMemory => FunctionError::new(
            ErrorType::RuntimeOutOfMemory,
            "Runtime.OutOfMemory",
            "Runtime exited with error: signal: killed (the memory limit was reached)",
        ),
        Failure::Exit(how) => FunctionError::new(
            ErrorType::RuntimeExit,
            "Runtime.ExitError",
            format!("Runtime exited with error: {how}"),
        ),
        Failure::Sandbox(m) => FunctionError::new(ErrorType::Init, "Sandbox.Error", m),
        Failure::Capacity(m) => {
            FunctionError::new(ErrorType::Throttled, "TooManyRequestsException", m)
        }
    }
}

impl Instances for ProcessFunction {
    fn run(&self, job: Job) -> BoxFuture<'_, Ran> {
        Box::pin(self.run_job(job))
    }

    fn counts(&self) -> Option<InstanceCounts> {
        self.pool.get().map(|p| p.stats().into())
    }

    fn keep_alive(&self) -> String {
        match self.pool.get() {
            Some(pool) => pool.keep_alive(),
            None => self.shared.runtime.keep_alive().to_string(),
        }
    }

    fn prestart(&self) -> BoxFuture<'_, Result<(), PrepareError>> {
        Box::pin(async move {
            if self.version.config.min_instances > 0 {
                self.pool().await?.prestart().await;
            }
            Ok(())
        })
    }
}
