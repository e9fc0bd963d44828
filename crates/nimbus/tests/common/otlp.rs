//! A minimal OTLP/HTTP trace receiver the end-to-end tests point `--otlp-endpoint` at,
//! decoding with the OpenTelemetry protocol's own types.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A minimal OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf body.
pub async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).unwrap();
            let mut spans = store.lock().unwrap();
            for rs in request.resource_spans {
                let service = rs.resource.iter().flat_map(|r| &r.attributes).any(|kv| {
                    kv.key == "service.name"
                        && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                                    Some(Value::StringValue(s)) if s == "nimbus")
                });
                assert!(service, "spans come from the nimbus service");
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
            (
                [("content-type", "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}
