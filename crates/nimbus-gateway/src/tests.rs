//! Handler tests against an invoker with fake runtimes: no binary, no sockets. Each refusal
//! of the invoker reaches the client with its status, code and (for the Lambda API) AWS error
//! shape.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use nimbus_core::FunctionKind;
use nimbus_core::manifest::Problem;
use nimbus_invoker::testing::{FakeExecutor, FakeRun, TestNode};
use nimbus_invoker::{
    AdmissionError, BodyError, DeployError, EventsUnavailable, InvokeError, InvokerConfig,
    QuotaKind, ResourceError, ThrottleReason,
};
use serde_json::Value;
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::{ApiError, GatewayConfig};

const KEY: &str = "nmb_test";

async fn body_json(r: axum::response::Response) -> Value {
    serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[test]
fn every_invoke_error_has_its_status_and_code() {
    let throttled = || {
        InvokeError::Admission(AdmissionError::Throttled {
            function: "f".into(),
            reason: ThrottleReason::Function,
            waited: Duration::from_millis(10),
        })
    };
    let cases: Vec<(InvokeError, u16, &str)> = vec![
        (InvokeError::NotFound("f".into()), 404, "NotFound"),
        (
            InvokeError::VersionNotFound {
                function: "f".into(),
                qualifier: "7".into(),
                active: "abc".into(),
            },
            404,
            "NotFound",
        ),
        (
            InvokeError::NotAnEventFunction {
                function: "f".into(),
                routes: "GET /".into(),
            },
            400,
            "NotAnEventFunction",
        ),
        (
            InvokeError::NotAnHttpFunction("f".into()),
            400,
            "NotAnHttpFunction",
        ),
        (
            InvokeError::Admission(AdmissionError::Quota(QuotaKind::Requests(3))),
            429,
            "QuotaExceeded",
        ),
        (throttled(), 429, "Function.Throttled"),
        (
            InvokeError::PayloadTooLarge { limit: 10 },
            413,
            "PayloadTooLarge",
        ),
        (
            InvokeError::Body(BodyError::Read("reset".into())),
            400,
            "BadRequest",
        ),
        (
            InvokeError::Events(nimbus_events::EventError::NotFound("q".into())),
            404,
            "NotFound",
        ),
        (
            InvokeError::EventsUnavailable(EventsUnavailable),
            503,
            "EventsUnavailable",
        ),
        (InvokeError::Stopping, 503, "ServiceUnavailable"),
        (
            InvokeError::Prepare(nimbus_invoker::PrepareError::Other("disk".into())),
            500,
            "InternalError",
        ),
    ];
    for (e, status, code) in cases {
        let what = format!("{e:?}");
        let api = ApiError::from(e);
        assert_eq!(
            (api.status.as_u16(), api.code.as_str()),
            (status, code),
            "{what}"
        );
        if status == 500 {
            assert!(!api.message.contains("disk"), "internals stay in the log");
        }
    }
    let r = axum::response::IntoResponse::into_response(ApiError::from(throttled()));
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["x-nimbus-error-type"], "Function.Throttled");
}

#[test]
fn deploy_and_resource_errors_have_their_status_and_code() {
    let problem = || Problem {
        key: "queues.q".into(),
        message: "bad".into(),
    };
    let deploys: Vec<(DeployError, u16, &str)> = vec![
        (
            DeployError::MissingArtifact {
                function: "f".into(),
                source_path: "f.wasm".into(),
            },
            400,
            "MissingArtifact",
        ),
        (
            DeployError::InvalidArtifact {
                function: "f".into(),
                source: nimbus_invoker::PrepareError::Other("no".into()),
            },
            400,
            "InvalidArtifact",
        ),
        (
            DeployError::RouteConflict(nimbus_core::route::RouteConflict {
                route: "GET /a".into(),
                existing: "GET /a".into(),
            }),
            409,
            "RouteConflict",
        ),
        (
            DeployError::References(vec![problem()]),
            400,
            "InvalidManifest",
        ),
        (
            DeployError::Store(nimbus_core::StoreError::Conflict("taken".into())),
            409,
            "Conflict",
        ),
    ];
    for (e, status, code) in deploys {
        let api = ApiError::from(e);
        assert_eq!((api.status.as_u16(), api.code.as_str()), (status, code));
    }
    let resources: Vec<(ResourceError, u16, &str)> = vec![
        (
            ResourceError::Invalid(vec![problem()]),
            400,
            "InvalidResource",
        ),
        (
            ResourceError::NotFound {
                kind: "queue",
                name: "q".into(),
            },
            404,
            "NotFound",
        ),
        (
            ResourceError::DeclaredByApp {
                kind: "queue",
                name: "q".into(),
            },
            409,
            "Conflict",
        ),
    ];
    for (e, status, code) in resources {
        let api = ApiError::from(e);
        assert_eq!((api.status.as_u16(), api.code.as_str()), (status, code));
    }
}

struct App {
    _dir: tempfile::TempDir,
    node: TestNode,
    router: axum::Router,
}

async fn app(config: InvokerConfig, wasm: Arc<FakeExecutor>, manifest: &str) -> App {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::new(dir.path(), config, wasm, Some(KEY));
    node.deploy(manifest, b"component").await.unwrap();
    let router = crate::router(
        node.invoker.clone(),
        GatewayConfig {
            max_body_bytes: 64,
            ..GatewayConfig::default()
        },
    );
    App {
        _dir: dir,
        node,
        router,
    }
}

async fn send(app: &App, request: Request<Body>) -> axum::response::Response {
    app.router.clone().oneshot(request).await.unwrap()
}

const WEB: &str = "app = \"a\"\n[functions.web]\nruntime = \"wasm\"\nsource = \"w.wasm\"\n\
                   triggers = [{ http = \"GET /items/{id}\" }]\n";

#[tokio::test]
async fn routes_answer_through_the_invoker_and_refuse_what_matches_nothing() {
    let app = app(
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Http),
        WEB,
    )
    .await;
    let r = send(&app, Request::get("/items/7").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-nimbus-invocation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let r = send(&app, Request::post("/items/7").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let r = send(&app, Request::get("/nothing").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), 404);
    assert_eq!(body_json(r).await["error"]["code"], "NotFound");
    let big = Request::get("/items/7")
        .header("content-length", "65")
        .body(Body::from(vec![0u8; 65]))
        .unwrap();
    assert_eq!(send(&app, big).await.status(), 413);
    let records = app.node.records("web").await;
    assert_eq!(records.len(), 1, "refused requests leave no record");
    assert_eq!(records[0].id, id);
}

#[tokio::test]
async fn the_invoke_api_needs_the_key_and_maps_refusals() {
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let wasm = FakeExecutor::new(FunctionKind::Event, move |job| match &job.payload {
        nimbus_invoker::Payload::Event { data, .. } if data.as_ref() == b"hold" => {
            FakeRun::WaitFor(r.clone(), Bytes::new())
        }
        nimbus_invoker::Payload::Event { data, attributes } => {
            let ty = attributes
                .as_ref()
                .map(|a| a.ty.clone())
                .unwrap_or_default();
            FakeRun::Answer(Bytes::from(format!(
                "{{\"type\":\"{ty}\",\"data\":{}}}",
                String::from_utf8_lossy(data)
            )))
        }
        _ => FakeRun::Answer(Bytes::new()),
    });
    let app = app(
        InvokerConfig {
            throttle_wait: Duration::from_millis(20),
            ..InvokerConfig::default()
        },
        wasm,
        "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"f.wasm\"\nmax_concurrency = 1\n",
    )
    .await;
    let invoke = |body: &'static str, key: Option<&str>| {
        let mut b = Request::post("/v1/functions/f/invoke").header("ce-type", "order.created");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Body::from(body)).unwrap()
    };
    assert_eq!(send(&app, invoke("1", None)).await.status(), 401);
    assert_eq!(send(&app, invoke("1", Some("wrong"))).await.status(), 401);
    let r = send(&app, invoke("{\"n\":1}", Some(KEY))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v = body_json(r).await;
    assert_eq!(
        (v["type"].as_str(), &v["data"]["n"]),
        (Some("order.created"), &Value::from(1))
    );
    let held = tokio::spawn(send_owned(app.router.clone(), invoke("hold", Some(KEY))));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = send(&app, invoke("1", Some(KEY))).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(body_json(r).await["error"]["code"], "Function.Throttled");
    release.notify_one();
    assert_eq!(held.await.unwrap().status(), 200);
    let r = send(
        &app,
        Request::post("/v1/functions/ghost/invoke")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), 404);
    // Without an event engine on the node, async mode says so.
    let r = send(
        &app,
        Request::post("/v1/functions/f/invoke?mode=async")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), 503);
}

async fn send_owned(router: axum::Router, request: Request<Body>) -> axum::response::Response {
    router.oneshot(request).await.unwrap()
}

#[tokio::test]
async fn the_lambda_api_answers_in_aws_shapes() {
    let app = app(
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Event),
        "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n",
    )
    .await;
    // Unsigned: refused before anything runs, with the AWS error type header.
    let r = send(
        &app,
        Request::post("/2015-03-31/functions/f/invocations")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().contains_key("x-amzn-errortype"));
    assert!(body_json(r).await["message"].is_string());
}

#[tokio::test]
async fn lambda_refusals_use_the_documented_error_types() {
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:f";
    let cases: Vec<(InvokeError, u16, &str)> = vec![
        (
            InvokeError::NotFound("f".into()),
            404,
            "ResourceNotFoundException",
        ),
        (
            InvokeError::Admission(AdmissionError::Throttled {
                function: "f".into(),
                reason: ThrottleReason::Tenant,
                waited: Duration::ZERO,
            }),
            429,
            "TooManyRequestsException",
        ),
        (
            InvokeError::Admission(AdmissionError::Quota(QuotaKind::GbSeconds(1.0))),
            429,
            "TooManyRequestsException",
        ),
        (
            InvokeError::PayloadTooLarge { limit: 1 },
            413,
            "RequestTooLargeException",
        ),
        (
            InvokeError::NotAnEventFunction {
                function: "f".into(),
                routes: String::new(),
            },
            400,
            "InvalidParameterValueException",
        ),
        (
            InvokeError::Prepare(nimbus_invoker::PrepareError::Other("secret path".into())),
            500,
            "ServiceException",
        ),
    ];
    for (e, status, aws_type) in cases {
        let r = crate::lambda::invoke_error(e, arn);
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.headers()["x-amzn-errortype"], aws_type);
        let retry_after = r.headers().get("retry-after").cloned();
        let body = body_json(r).await;
        // The model's spelling: `Message` for these two, `message` for the rest.
        let key = if matches!(status, 404 | 500) {
            "Message"
        } else {
            "message"
        };
        let message = body[key].as_str().unwrap();
        if aws_type == "TooManyRequestsException" {
            assert!(body["Reason"].is_string(), "{body}");
            assert_eq!(
                retry_after.is_some(),
                message.contains("slot"),
                "Retry-After only when a retry can succeed soon"
            );
        }
        assert!(!message.contains("secret path"), "{message}");
        if status == 404 {
            assert_eq!(message, format!("Function not found: {arn}"));
        }
    }
}

/// Every `/v1` route (and `/metrics`) the router serves needs a named permission: none falls
/// back to "admins only" by omission.
#[test]
fn every_api_route_has_a_permission() {
    let router = include_str!("lib.rs");
    let routes: Vec<&str> = router
        .split('"')
        .filter(|s| s.starts_with("/v1/") || *s == "/metrics")
        .collect();
    assert!(routes.len() > 20, "{routes:?}");
    for route in routes {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            assert!(
                nimbus_core::keys::permission(method, route).is_some(),
                "{method} {route} has no permission"
            );
        }
    }
}
