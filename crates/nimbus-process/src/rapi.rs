//! The AWS Lambda Runtime API, served to one sandbox on its own listener.
//!
//! Each sandbox gets a separate listener inside its own network namespace, so a runtime can only
//! ever fetch and answer the invocations of its own sandbox; request ids it does not hold are
//! rejected.
//!
//! - `GET  /2018-06-01/runtime/invocation/next` — blocks until the next invocation.
//! - `POST /2018-06-01/runtime/invocation/{id}/response`
//! - `POST /2018-06-01/runtime/invocation/{id}/error`
//! - `POST /2018-06-01/runtime/init/error`

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::mpsc;

/// Largest response or error body a runtime may post (Lambda's synchronous payload limit).
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// One invocation handed to a runtime.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// The event, JSON.
    pub payload: Bytes,
    /// `Lambda-Runtime-Deadline-Ms`: unix milliseconds.
    pub deadline_ms: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub function_arn: String,
    /// `Lambda-Runtime-Trace-Id`.
    pub trace_id: Option<String>,
    /// `Lambda-Runtime-Client-Context`: the caller's client context, decoded to JSON text.
    pub client_context: Option<String>,
}

/// What a runtime told the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// The runtime asked for its next invocation (after init: it is ready).
    Next,
    /// The handler returned.
    Response {
        /// Request id.
        id: String,
        /// The result, JSON.
        body: Bytes,
    },
    /// The handler failed.
    Error {
        /// Request id.
        id: String,
        /// `Lambda-Runtime-Function-Error-Type`, if sent.
        error_type: Option<String>,
        /// The error document (`errorMessage`, `errorType`, `stackTrace`).
        body: Bytes,
    },
    /// Initialisation failed (e.g. the handler module does not import).
    InitError {
        /// `Lambda-Runtime-Function-Error-Type`, if sent.
        error_type: Option<String>,
        /// The error document.
        body: Bytes,
    },
}

/// Where the runtime is in Lambda's state machine: initialising until its first `/next`, then
/// holding at most one invocation at a time.
#[derive(Default)]
struct Flight {
    /// The runtime has asked for work: init is over, `/init/error` no longer applies.
    started: bool,
    /// The invocation handed out and not yet answered.
    current: Option<String>,
    /// The invocation answered last: a second answer to it is a state error, not an unknown id.
    answered: Option<String>,
}

struct RapiState {
    invocations: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    flight: Mutex<Flight>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
}

/// The server half of one sandbox's Runtime API.
pub struct RuntimeApi {
    /// Where invocations are sent for the runtime to fetch.
    pub invocations: mpsc::Sender<Invocation>,
    /// What the runtime reports.
    pub events: mpsc::UnboundedReceiver<RuntimeEvent>,
    /// The HTTP application to serve on the sandbox's listener.
    pub router: Router,
}

/// Builds a Runtime API for one sandbox.
pub fn runtime_api() -> RuntimeApi {
    let (inv_tx, inv_rx) = mpsc::channel(1);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let state = Arc::new(RapiState {
        invocations: tokio::sync::Mutex::new(inv_rx),
        flight: Mutex::new(Flight::default()),
        events: ev_tx,
    });
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        // Responses are read (and oversized ones drained) by `read_body`.
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    RuntimeApi {
        invocations: inv_tx,
        events: ev_rx,
        router,
    }
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errorMessage": message, "errorType": error_type })),
    )
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" }))).into_response()
}

async fn next(State(s): State<Arc<RapiState>>) -> Response {
    if let Ok(mut f) = s.flight.lock() {
        f.started = true;
    }
    let _ = s.events.send(RuntimeEvent::Next);
    let Some(inv) = s.invocations.lock().await.recv().await else {
        return api_error(
            StatusCode::GONE,
            "SandboxShutdown",
            "the sandbox is shutting down",
        );
    };
    if let Ok(mut f) = s.flight.lock() {
        f.current = Some(inv.request_id.clone());
    }
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &inv.request_id);
    put("lambda-runtime-deadline-ms", &inv.deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &inv.function_arn);
    put("content-type", "application/json");
    if let Some(t) = &inv.trace_id {
        put("lambda-runtime-trace-id", t);
    }
    if let Some(c) = &inv.client_context {
        put("lambda-runtime-client-context", c);
    }
    (headers, inv.payload).into_response()
}

/// Why an answer for a request id was refused.
enum Refusal {
    /// Already answered: a state error (403 `InvalidStateTransition`).
    Answered,
    /// Never handed out here (400 `InvalidRequestID`).
    Unknown,
}

impl Refusal {
    fn response(self, id: &str) -> Response {
        match self {
            Refusal::Answered => {
                invalid_transition(&format!("invocation `{id}` was already answered"))
            }
            Refusal::Unknown => api_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                &format!("request id `{id}` is not an invocation in flight in this sandbox"),
            ),
        }
    }
}

/// Takes the in-flight request id if it is `id`.
fn take_current(s: &RapiState, id: &str) -> Result<(), Refusal> {
    let Ok(mut f) = s.flight.lock() else {
        return Err(Refusal::Unknown);
    };
    if f.current.as_deref() == Some(id) {
        f.answered = f.current.take();
        Ok(())
    } else if f.answered.as_deref() == Some(id) {
        Err(Refusal::Answered)
    } else {
        Err(Refusal::Unknown)
    }
}

fn invalid_transition(message: &str) -> Response {
    api_error(StatusCode::FORBIDDEN, "InvalidStateTransition", message)
}

/// `Lambda-Runtime-Function-Response-Mode`: absent or `streaming` (the streamed body is taken
/// whole); anything else is refused as Lambda does.
fn response_mode_ok(headers: &HeaderMap) -> bool {
    headers
        .get("lambda-runtime-function-response-mode")
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"))
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Why a posted body was not taken.
enum BodyProblem {
    /// Past [`MAX_PAYLOAD_BYTES`]; the rest was read and dropped.
    TooLarge,
    /// The connection failed while reading it.
    Unreadable(String),
}

/// Reads a posted body of at most [`MAX_PAYLOAD_BYTES`]. A larger one is read to its end and
/// dropped, so the runtime's connection stays usable and it hears a clean 413.
async fn read_body(body: axum::body::Body) -> Result<Bytes, BodyProblem> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut kept = Vec::new();
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyProblem::Unreadable(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if too_large || kept.len() + data.len() > MAX_PAYLOAD_BYTES {
                too_large = true;
                kept = Vec::new();
            } else {
                kept.extend_from_slice(&data);
            }
        }
    }
    if too_large {
        Err(BodyProblem::TooLarge)
    } else {
        Ok(Bytes::from(kept))
    }
}

async fn response(
    State(s): State<Arc<RapiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body = read_body(body).await;
    if let Err(refused) = take_current(&s, &id) {
        return refused.response(&id);
    }
    if !response_mode_ok(&headers) {
        // The invocation fails (as on Lambda) and the runtime hears why.
        let doc = json!({
            "errorMessage": "Invalid function response mode",
            "errorType": "Runtime.InvalidResponseModeHeader",
        });
        let _ = s.events.send(RuntimeEvent::Error {
            id,
            error_type: Some("Runtime.InvalidResponseModeHeader".into()),
            body: Bytes::from(doc.to_string()),
        });
        return api_error(
            StatusCode::BAD_REQUEST,
            "InvalidFunctionResponseMode",
            "Invalid function response mode",
        );
    }
    match body {
        Ok(body) => {
            let _ = s.events.send(RuntimeEvent::Response { id, body });
            accepted()
        }
        Err(problem) => {
            // Too large (or unreadable): the invocation fails now rather than at its timeout.
            let (status, message) = match problem {
                BodyProblem::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."
                    ),
                ),
                BodyProblem::Unreadable(e) => (
                    StatusCode::BAD_REQUEST,
                    format!("the response could not be read: {e}"),
                ),
            };
            let doc =
                json!({ "errorMessage": message, "errorType": "Function.ResponseSizeTooLarge" });
            let _ = s.events.send(RuntimeEvent::Error {
                id,
                error_type: Some("Function.ResponseSizeTooLarge".into()),
                body: Bytes::from(doc.to_string()),
            });
            api_error(status, "RequestEntityTooLarge", &message)
        }
    }
}

async fn error(
    State(s): State<Arc<RapiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // An oversized error document is cut to a note; the invocation still fails as reported.
    let body = read_body(body).await.unwrap_or_else(|_| {
        Bytes::from_static(b"{\"errorMessage\":\"the error document was too large\"}")
    });
    if let Err(refused) = take_current(&s, &id) {
        return refused.response(&id);
    }
    let _ = s.events.send(RuntimeEvent::Error {
        id,
        error_type: error_type(&headers),
        body,
    });
    accepted()
}

async fn init_error(
    State(s): State<Arc<RapiState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body = read_body(body).await.unwrap_or_else(|_| {
        Bytes::from_static(b"{\"errorMessage\":\"the error document was too large\"}")
    });
    if s.flight.lock().is_ok_and(|f| f.started) {
        return invalid_transition(
            "init is over: report errors of an invocation with /invocation/{id}/error",
        );
    }
    let _ = s.events.send(RuntimeEvent::InitError {
        error_type: error_type(&headers),
        body,
    });
    accepted()
}

/// Unix milliseconds `ms_from_now` from now, for `Lambda-Runtime-Deadline-Ms`.
pub fn deadline_ms(ms_from_now: u64) -> u64 {
    nimbus_core::clock::now_ms() as u64 + ms_from_now
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    async fn call(router: &Router, method: &str, uri: &str, body: &'static str) -> Response {
        router
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    /// Queues invocation `id` and has the runtime fetch it.
    async fn hand_out(api: &RuntimeApi, id: &str) -> Response {
        api.invocations.send(invocation(id)).await.unwrap();
        call(
            &api.router,
            "GET",
            "/2018-06-01/runtime/invocation/next",
            "",
        )
        .await
    }

    fn invocation(id: &str) -> Invocation {
        Invocation {
            request_id: id.into(),
            payload: Bytes::from_static(b"{\"k\":1}"),
            deadline_ms: 42,
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            trace_id: Some("Root=1-abc".into()),
            client_context: None,
        }
    }

    #[tokio::test]
    async fn next_delivers_the_invocation_with_lambda_headers() {
        let mut api = runtime_api();
        api.invocations.send(invocation("r1")).await.unwrap();
        let r = call(
            &api.router,
            "GET",
            "/2018-06-01/runtime/invocation/next",
            "",
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["lambda-runtime-aws-request-id"], "r1");
        assert_eq!(r.headers()["lambda-runtime-deadline-ms"], "42");
        assert_eq!(r.headers()["lambda-runtime-trace-id"], "Root=1-abc");
        assert!(
            r.headers()["lambda-runtime-invoked-function-arn"]
                .to_str()
                .unwrap()
                .ends_with(":function:f")
        );
        assert_eq!(api.events.recv().await, Some(RuntimeEvent::Next));

        let r = call(
            &api.router,
            "POST",
            "/2018-06-01/runtime/invocation/r1/response",
            "7",
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(
            api.events.recv().await,
            Some(RuntimeEvent::Response {
                id: "r1".into(),
                body: Bytes::from_static(b"7")
            })
        );
    }

    #[tokio::test]
    async fn ids_not_in_flight_are_rejected() {
        let mut api = runtime_api();
        let r = call(
            &api.router,
            "POST",
            "/2018-06-01/runtime/invocation/x/response",
            "1",
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        hand_out(&api, "r2").await;
        let r = call(
            &api.router,
            "POST",
            "/2018-06-01/runtime/invocation/other/error",
            "{}",
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let ok = call(
            &api.router,
            "POST",
            "/2018-06-01/runtime/invocation/r2/error",
            "{}",
        )
        .await;
        assert_eq!(ok.status(), StatusCode::ACCEPTED);
        // Answered once: a second answer is a state error.
        let again = call(
            &api.router,
            "POST",
            "/2018-06-01/runtime/invocation/r2/response",
            "1",
        )
        .await;
        assert_eq!(again.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(again.into_body(), 1024).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("InvalidStateTransition"));
        assert_eq!(api.events.recv().await, Some(RuntimeEvent::Next));
        assert!(matches!(
            api.events.recv().await,
            Some(RuntimeEvent::Error { .. })
        ));
    }

    #[tokio::test]
    async fn oversized_responses_fail_the_invocation_at_once() {
        let mut api = runtime_api();
        hand_out(&api, "big").await;
        let r = api
            .router
            .clone()
            .oneshot(
                Request::post("/2018-06-01/runtime/invocation/big/response")
                    .body(Body::from(vec![b'x'; MAX_PAYLOAD_BYTES + 1]))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(api.events.recv().await, Some(RuntimeEvent::Next));
        let Some(RuntimeEvent::Error { id, error_type, .. }) = api.events.recv().await else {
            panic!("expected the invocation to fail");
        };
        assert_eq!(id, "big");
        assert_eq!(error_type.as_deref(), Some("Function.ResponseSizeTooLarge"));
    }

    #[tokio::test]
    async fn invalid_response_modes_fail_the_invocation() {
        let mut api = runtime_api();
        hand_out(&api, "m").await;
        let r = api
            .router
            .clone()
            .oneshot(
                Request::post("/2018-06-01/runtime/invocation/m/response")
                    .header("lambda-runtime-function-response-mode", "buffered-ish")
                    .body(Body::from("1"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(api.events.recv().await, Some(RuntimeEvent::Next));
        let Some(RuntimeEvent::Error { error_type, .. }) = api.events.recv().await else {
            panic!("expected the invocation to fail");
        };
        assert_eq!(
            error_type.as_deref(),
            Some("Runtime.InvalidResponseModeHeader")
        );
        // `streaming` is a valid mode.
        hand_out(&api, "s").await;
        let r = api
            .router
            .clone()
            .oneshot(
                Request::post("/2018-06-01/runtime/invocation/s/response")
                    .header("lambda-runtime-function-response-mode", "streaming")
                    .body(Body::from("2"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn init_errors_after_the_first_next_are_state_errors() {
        let mut api = runtime_api();
        hand_out(&api, "r").await;
        let r = call(&api.router, "POST", "/2018-06-01/runtime/init/error", "{}").await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(api.events.recv().await, Some(RuntimeEvent::Next));
        assert!(
            api.events.try_recv().is_err(),
            "not reported as an init error"
        );
    }

    #[tokio::test]
    async fn init_errors_are_reported() {
        let mut api = runtime_api();
        let r = api
            .router
            .clone()
            .oneshot(
                Request::post("/2018-06-01/runtime/init/error")
                    .header(
                        "lambda-runtime-function-error-type",
                        "Runtime.ImportModuleError",
                    )
                    .body(Body::from("{\"errorMessage\":\"no module\"}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let Some(RuntimeEvent::InitError { error_type, .. }) = api.events.recv().await else {
            panic!("expected an init error");
        };
        assert_eq!(error_type.as_deref(), Some("Runtime.ImportModuleError"));
    }
}
