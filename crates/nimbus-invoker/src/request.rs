//! What an invocation is asked with ([`InvocationRequest`]) and what it answers
//! ([`Invocation`]). The request is serialisable, so a node can hand it to another node; a
//! streaming HTTP body must be collected first ([`Body::collect`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use nimbus_core::trace::TraceParent;
use nimbus_core::{ErrorType, EventAttributes, Trigger};
use serde::{Deserialize, Serialize};

/// A boxed error, for response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of an HTTP function's response; it may still be streaming when the invocation
/// returns.
pub enum ResponseBody {
    /// Streamed by a wasm guest as it writes.
    Guest(nimbus_wasm::HyperOutgoingBody),
    /// Whole (taken when sent).
    Full(Option<Bytes>),
}

impl ResponseBody {
    /// A whole body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Guest(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Guest(b) => b.is_end_stream(),
            ResponseBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Guest(b) => b.size_hint(),
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// One invocation of one function, as any caller asks for it: an HTTP route, the invoke APIs,
/// the event engine, a durable execution, another node.
#[derive(Debug, Serialize, Deserialize)]
pub struct InvocationRequest {
    /// The function's name.
    pub function: String,
    /// `None` or `$LATEST`: the active version; otherwise a version id or a prefix of it (at
    /// least 8 hex digits).
    #[serde(default)]
    pub qualifier: Option<String>,
    /// The invocation id: the record's id (a retry of an async invocation has its own).
    pub id: String,
    /// What started it.
    pub trigger: Trigger,
    /// What the function gets.
    pub payload: Payload,
    /// Trace context carried from the caller.
    #[serde(default)]
    pub trace: TraceContext,
    /// The caller's client context (`X-Amz-Client-Context`), handed to process runtimes.
    #[serde(default)]
    pub client_context: Option<String>,
}

impl InvocationRequest {
    /// A request with a new invocation id (UUIDv7) and no trace or client context.
    pub fn new(function: impl Into<String>, trigger: Trigger, payload: Payload) -> Self {
        Self {
            function: function.into(),
            qualifier: None,
            id: new_id(),
            trigger,
            payload,
            trace: TraceContext::default(),
            client_context: None,
        }
    }
}

/// A new invocation id (UUIDv7: unique and time-ordered).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Trace context carried from the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The caller's W3C trace context: the invocation's trace continues it.
    #[serde(default)]
    pub parent: Option<TraceParent>,
    /// The caller's X-Ray header (`X-Amzn-Trace-Id`): process runtimes see it as
    /// `_X_AMZN_TRACE_ID` (else they see the invocation's own span in X-Ray's spelling).
    #[serde(default)]
    pub xray: Option<String>,
    /// When the invocation began waiting, unix ms, if that was before the request was made:
    /// an event's acceptance into the log. The trace's `queue_wait` starts there.
    #[serde(default)]
    pub queued_since_ms: Option<i64>,
}

/// What a function is given.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Payload {
    /// An event. Process functions get `data` as their whole event; wasm event functions get a
    /// CloudEvent: `attributes`, or made-up ones (`id` = the invocation id, `source`
    /// `/v1/functions/NAME`, `type` `nimbus.invoke`) when there are none.
    Event {
        /// The event data.
        data: Bytes,
        /// The event's CloudEvents context, if it has one.
        #[serde(default)]
        attributes: Option<EventAttributes>,
    },
    /// An HTTP request matched to one of the function's routes. Wasm HTTP functions get it as
    /// it is (streamed); process functions get it as an API Gateway HTTP API (2.0) event and
    /// answer with an API Gateway response.
    Http(HttpRequest),
}

impl Payload {
    /// An event payload without CloudEvents attributes.
    pub fn data(data: impl Into<Bytes>) -> Self {
        Self::Event {
            data: data.into(),
            attributes: None,
        }
    }
}

/// An HTTP request for a function.
#[derive(Debug, Serialize, Deserialize)]
pub struct HttpRequest {
    /// Method.
    #[serde(with = "http_serde::method")]
    pub method: http::Method,
    /// The request target (path and query).
    #[serde(with = "http_serde::uri")]
    pub uri: http::Uri,
    /// Headers as received.
    #[serde(with = "http_serde::header_map")]
    pub headers: http::HeaderMap,
    /// Parameters the route captured, e.g. `("id", "42")` for `/users/{id}`.
    pub params: Vec<(String, String)>,
    /// The client's address, when known.
    #[serde(default)]
    pub client: Option<std::net::SocketAddr>,
    /// The body.
    pub body: Body,
    /// What the route's authorizer said of the caller (`None`: an open route): process
    /// functions see it as `requestContext.authorizer`, wasm functions as a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer: Option<serde_json::Value>,
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Past the node's size limit.
    #[error("the request body is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// The connection failed while reading it.
    #[error("reading the request body failed: {0}")]
    Read(String),
}

/// A request body: whole, or streaming from the client.
pub enum Body {
    /// The whole body.
    Full(Bytes),
    /// A body still arriving; errors say why it stopped.
    Stream(UnsyncBoxBody<Bytes, BodyError>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

impl Body {
    /// A streaming body.
    pub fn stream<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = BodyError> + Send + 'static,
    {
        Self::Stream(UnsyncBoxBody::new(body))
    }

    /// Reads the whole body.
    pub async fn collect(self) -> Result<Bytes, BodyError> {
        match self {
            Body::Full(b) => Ok(b),
            Body::Stream(s) => Ok(s.collect().await?.to_bytes()),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Full(b) if b.is_empty() => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(b))))),
            Body::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_empty(),
            Body::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.len() as u64),
            Body::Stream(s) => s.size_hint(),
        }
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Body::Full(b) => b.serialize(s),
            Body::Stream(_) => Err(serde::ser::Error::custom(
                "a streaming body cannot be serialised; collect it first",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Bytes::deserialize(d).map(Body::Full)
    }
}

/// A finished (or, for a streaming HTTP response, answered) invocation.
#[derive(Debug)]
pub struct Invocation {
    /// The invocation id.
    pub id: String,
    /// The version that ran, as Lambda reports it (`$LATEST`, or the short version id when
    /// a qualifier named it).
    pub executed_version: std::borrow::Cow<'static, str>,
    /// What the function returned, or how it failed.
    pub output: Result<Output, FunctionError>,
    /// The invocation's log, framed Lambda-style (START … REPORT), when it had finished by
    /// the time the invocation returned (every event invocation; not a streaming response).
    pub logs: Option<String>,
}

/// What a function returned.
pub enum Output {
    /// An event function's result.
    Bytes(Bytes),
    /// An HTTP response; its body may still be streaming.
    Http(http::Response<ResponseBody>),
    /// A process function answered an HTTP route with something that is not an API Gateway
    /// response (the gateway answers 502).
    BadHttpResponse(String),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Bytes(b) => write!(f, "Output::Bytes({} bytes)", b.len()),
            Output::Http(r) => write!(f, "Output::Http({})", r.status()),
            Output::BadHttpResponse(m) => write!(f, "Output::BadHttpResponse({m})"),
        }
    }
}

/// A function that ran and failed: the typed error, a message, and the error document its
/// callers get (`{"errorMessage", "errorType", ...}`, as Lambda reports it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct FunctionError {
    /// What kind of failure.
    pub kind: ErrorType,
    /// Safe to show to the function's caller.
    pub message: String,
    /// The error document.
    pub doc: Bytes,
}

impl FunctionError {
    /// An error of `kind` whose document names `error_type` (Lambda's spelling).
    pub fn new(kind: ErrorType, error_type: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let doc = nimbus_aws::lambda::function_error(error_type, &message).to_string();
        Self {
            kind,
            message,
            doc: doc.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_json_for_forwarding() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-a", http::HeaderValue::from_static("1"));
        let mut req = InvocationRequest::new(
            "f",
            Trigger::Http {
                route: "GET /x".into(),
            },
            Payload::Http(HttpRequest {
                method: http::Method::POST,
                uri: "/x?y=1".parse().expect("uri"),
                headers,
                params: vec![("id".into(), "7".into())],
                client: "127.0.0.1:5000".parse().ok(),
                body: Body::Full(Bytes::from_static(b"hi")),
                authorizer: Some(serde_json::json!({"jwt": {"claims": {"sub": "u"}}})),
            }),
        );
        req.trace.parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let json = serde_json::to_string(&req).expect("serialises");
        let back: InvocationRequest = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.id, req.id);
        assert_eq!(back.trace, req.trace);
        let Payload::Http(h) = back.payload else {
            panic!("an HTTP payload")
        };
        assert_eq!(h.method, http::Method::POST);
        assert_eq!(h.uri, "/x?y=1");
        assert_eq!(h.headers["x-a"], "1");
        assert!(matches!(h.body, Body::Full(b) if b == "hi"));
    }

    #[test]
    fn a_streaming_body_is_not_serialised_half_read() {
        let body = Body::stream(
            http_body_util::Full::new(Bytes::from_static(b"x")).map_err(|e| match e {}),
        );
        let err = serde_json::to_string(&body).expect_err("refused");
        assert!(err.to_string().contains("collect it first"));
    }

    #[tokio::test]
    async fn collecting_a_body_stops_at_its_error() {
        let limited =
            http_body_util::Limited::new(http_body_util::Full::new(Bytes::from(vec![0u8; 10])), 4)
                .map_err(|_| BodyError::TooLarge { limit: 4 });
        assert_eq!(
            Body::stream(limited).collect().await,
            Err(BodyError::TooLarge { limit: 4 })
        );
        assert_eq!(
            Body::Full(Bytes::from_static(b"ok")).collect().await,
            Ok(Bytes::from_static(b"ok"))
        );
    }
}
