//! Running one invocation: fresh store, limits, timeout, classification of how it ended.

use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::trace::{Phase, phase};
use nimbus_core::{ErrorType, EventAttributes};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::host::{Host, Limits};
use crate::{LoadedFunction, Pre, WasmRuntime};

/// A failed invocation, typed for the client and the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct GuestError {
    /// What kind of failure.
    pub kind: ErrorType,
    /// Safe to show to the function's caller.
    pub message: String,
}

impl GuestError {
    /// The node's pool of instances is full.
    pub(crate) fn pool_full(max_instances: u32) -> Self {
        Self::new(
            ErrorType::Throttled,
            format!(
                "the node's wasm instance pool ({max_instances} instances) is full; retry later"
            ),
        )
    }

    fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// How an invocation ended, for its record.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Wall-clock time from store creation to the end of the guest's work.
    pub duration: Duration,
    /// Peak linear memory, bytes.
    pub max_memory_bytes: u64,
    /// Captured stdout and stderr, interleaved, lossily decoded as UTF-8.
    pub logs: String,
    /// `None` on success.
    pub error: Option<GuestError>,
    /// Where the time went: `instantiate`, then `run` (if instantiation succeeded).
    pub phases: Vec<Phase>,
}

impl Completion {
    /// An invocation refused before its guest ran.
    fn refused(error: GuestError) -> Self {
        Self {
            duration: Duration::ZERO,
            max_memory_bytes: 0,
            logs: String::new(),
            error: Some(error),
            phases: Vec::new(),
        }
    }
}

/// An event for an event function: its CloudEvents 1.0 context and data.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// The context attributes.
    pub context: EventAttributes,
    /// The payload.
    pub data: Bytes,
}

/// Why an HTTP request body stopped arriving, as the guest learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// It went past the node's limit (bytes).
    TooLarge(u64),
    /// The connection failed.
    Terminated,
}

impl From<BodyFailure> for wasmtime_wasi_http::Error {
    fn from(f: BodyFailure) -> Self {
        match f {
            BodyFailure::TooLarge(limit) => {
                wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
            }
            BodyFailure::Terminated => wasmtime_wasi_http::Error::ConnectionTerminated,
        }
    }
}

/// Turns the end of a guest call into a typed outcome.
type GuestResponse = Result<
    http::Response<HyperOutgoingBody>,
    wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
>;

/// Passes the guest's response on to the waiting request, noting an error-code answer.
fn forward(
    response: Option<GuestResponse>,
    sender: &mut Option<tokio::sync::oneshot::Sender<GuestResponse>>,
    answered_with: &mut Option<GuestError>,
) {
    if let Some(Err(code)) = &response {
        *answered_with = Some(answer_error(code));
    }
    if let (Some(s), Some(r)) = (sender.take(), response) {
        let _ = s.send(r);
    }
}

/// A guest that answered through `response-outparam::set` with an error code.
fn answer_error(code: &wasmtime_wasi_http::p2::bindings::http::types::ErrorCode) -> GuestError {
    GuestError::new(
        ErrorType::Handled,
        format!("the function answered with an error: {code:?}"),
    )
}

fn classify<T>(
    result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    limits: &Limits,
    host: &Host,
) -> Result<T, GuestError> {
    match result {
        Err(_) => Err(GuestError::new(
            ErrorType::Timeout,
            format!(
                "Task timed out after {:.2} seconds",
                limits.timeout.as_secs_f64()
            ),
        )),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) if host.limiter.denied_by_node => Err(GuestError::new(
            ErrorType::Throttled,
            if limits.budget.as_ref().is_some_and(|b| b.is_share()) {
                "the tenant's memory budget (or the node's) is used up; retry later"
            } else {
                "the node's memory budget is used up; retry later"
            },
        )),
        Ok(Err(_)) if host.limiter.denied => Err(GuestError::new(
            ErrorType::OutOfMemory,
            format!(
                "memory limit of {} MiB exceeded",
                limits.memory_bytes / (1024 * 1024)
            ),
        )),
        // The pool ran out of a kind of slot its accounting does not count: never a trap.
        Ok(Err(e)) if format!("{e:#}").contains("maximum concurrent") => {
            Err(GuestError::new(ErrorType::Throttled, format!("{e:#}")))
        }
        Ok(Err(e)) => {
            let message = match e.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => format!("wasm trap: {trap}"),
                None => format!("{e:#}"),
            };
            Err(GuestError::new(ErrorType::Trap, message))
        }
    }
}

impl WasmRuntime {
    fn new_store(&self, limits: &Limits) -> (Store<Host>, MemoryOutputPipe) {
        let logs = MemoryOutputPipe::new(self.log_capacity);
        let budget = limits.budget.as_ref().unwrap_or(&self.memory_budget);
        let mut store = Store::new(&self.engine, Host::new(limits, &logs, budget));
        store.limiter(|h| &mut h.limiter);
        // Yield to the async runtime at every epoch tick: a busy guest never holds a worker
        // thread, and the surrounding `tokio::time::timeout` can cut it at its deadline.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        (store, logs)
    }

    fn completion(
        started: Instant,
        instantiated: Option<Instant>,
        store: &Store<Host>,
        logs: &MemoryOutputPipe,
        error: Option<GuestError>,
    ) -> Completion {
        let phases = match instantiated {
            Some(at) => vec![
                Phase {
                    name: phase::INSTANTIATE,
                    start: started,
                    duration: at - started,
                },
                Phase::since(phase::RUN, at),
            ],
            None => vec![Phase::since(phase::INSTANTIATE, started)],
        };
        Completion {
            duration: started.elapsed(),
            max_memory_bytes: store.data().limiter.peak as u64,
            logs: String::from_utf8_lossy(&logs.contents()).into_owned(),
            error,
            phases,
        }
    }

    /// Runs an event function on `event`. Returns its result payload (or error) and the completion.
    pub async fn invoke_event(
        &self,
        function: &LoadedFunction,
        limits: &Limits,
        event: Event,
    ) -> (Result<Vec<u8>, GuestError>, Completion) {
        let started = Instant::now();
        let refused = |e: GuestError| (Err(e.clone()), Completion::refused(e));
        let Pre::Event(pre) = &function.pre else {
            return refused(GuestError::new(ErrorType::Init, "not an event function"));
        };
        let _capacity = match self.take_capacity(function) {
            Ok(permit) => permit,
            Err(e) => return refused(e),
        };
        let (mut store, logs) = self.new_store(limits);
        let c = event.context;
        let wit_event = crate::bindings::nimbus::function::types::Event {
            id: c.id,
            source: c.source,
            type_: c.ty,
            subject: c.subject,
            time: c.time,
            datacontenttype: c.datacontenttype,
            data: event.data.to_vec(),
            extensions: c.extensions,
        };
        let mut instantiated = None;
        let result = tokio::time::timeout(limits.timeout, async {
            let instance = pre.instantiate_async(&mut store).await?;
            instantiated = Some(Instant::now());
            instance
                .nimbus_function_handler()
                .call_handle(&mut store, &wit_event)
                .await
        })
        .await;
        let result = classify(result, limits, store.data())
            .and_then(|r| r.map_err(|message| GuestError::new(ErrorType::Handled, message)));
        let completion = Self::completion(
            started,
            instantiated,
            &store,
            &logs,
            result.as_ref().err().cloned(),
        );
        (result, completion)
    }

    /// Serves one HTTP request with an HTTP function.
    ///
    /// Returns as soon as the guest has set its response head (the body may still stream).
    /// `on_complete` runs exactly once, when the guest has finished (or failed, or timed out).
    pub async fn serve_http<B>(
        &self,
        function: &LoadedFunction,
        limits: &Limits,
        request: http::Request<B>,
        on_complete: impl FnOnce(Completion) + Send + 'static,
    ) -> Result<http::Response<HyperOutgoingBody>, GuestError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let (to_task, mut from_guest) = tokio::sync::oneshot::channel();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // Everything that can refuse the invocation before its guest runs; a refusal still
        // completes it (its record says why).
        let setup = (|| {
            let Pre::Http(pre) = &function.pre else {
                return Err(GuestError::new(ErrorType::Init, "not an HTTP function"));
            };
            let capacity = self.take_capacity(function)?;
            let (mut store, logs) = self.new_store(limits);
            // The guest's response goes to `from_guest`; the task forwards it to `receiver`
            // and remembers whether the guest answered with an error code, for the record.
            let (req, out) = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, request)
                .and_then(|req| Ok((req, store.data_mut().http().new_response_outparam(to_task)?)))
                .map_err(|e| GuestError::new(ErrorType::Init, format!("{e:#}")))?;
            Ok((pre, capacity, store, logs, req, out))
        })();
        let (pre, capacity, mut store, logs, req, out) = match setup {
            Ok(s) => s,
            Err(e) => {
                on_complete(Completion::refused(e.clone()));
                return Err(e);
            }
        };
        let (pre, limits) = (pre.clone(), limits.clone());
        let task = tokio::spawn(async move {
            let mut sender = Some(sender);
            let mut answered_with: Option<GuestError> = None;
            let mut instantiated = None;
            let result = {
                let run = tokio::time::timeout(limits.timeout, async {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    instantiated = Some(Instant::now());
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                });
                tokio::pin!(run);
                loop {
                    tokio::select! {
                        result = &mut run => break result,
                        response = &mut from_guest, if sender.is_some() => {
                            forward(response.ok(), &mut sender, &mut answered_with);
                        }
                    }
                }
            };
            if sender.is_some() {
                forward(from_guest.try_recv().ok(), &mut sender, &mut answered_with);
            }
            let error = classify(result, &limits, store.data())
                .err()
                .or(answered_with);
            let completion = Self::completion(started, instantiated, &store, &logs, error.clone());
            drop(store);
            drop(capacity);
            on_complete(completion);
            error
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(answer_error(&code)),
            Err(_) => Err(match task.await {
                Ok(Some(error)) => error,
                Ok(None) => GuestError::new(
                    ErrorType::NoResponse,
                    "the function returned without setting a response",
                ),
                Err(join) => {
                    GuestError::new(ErrorType::Trap, format!("invocation task failed: {join}"))
                }
            }),
        }
    }
}
