//! Typed client of the Nimbus `/v1` REST API, used by the CLI and the end-to-end tests.
//!
//! [`Client`] wraps one base URL and API key; every method maps to one endpoint and returns the
//! shared types of [`nimbus_core::api`]. Errors the server reports keep their status, code and
//! message ([`ClientError::Api`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use nimbus_core::InvocationRecord;
use nimbus_core::api::{
    DeployRequest, DeployResponse, ErrorBody, FunctionInfo, InvocationStatus, Status,
};
use nimbus_core::store::LogEntry;
pub use reqwest::Method;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} ({status}, {code})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Server's message.
        message: String,
    },
    /// No answer (server down, wrong URL, ...).
    #[error("cannot reach Nimbus at {url}: {source}")]
    Transport {
        /// Base URL.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// An answer that is not what the API describes.
    #[error("unexpected response from the server: {0}")]
    Decode(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ClientError>;

/// The result of invoking a function: its payload or its error, and the invocation id.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// HTTP status of the invoke call.
    pub status: u16,
    /// `x-nimbus-invocation-id`.
    pub id: Option<String>,
    /// Error type for failed invocations (`x-nimbus-error-type`).
    pub error_type: Option<String>,
    /// Result payload, or the error body.
    pub body: Bytes,
}

/// A client bound to one server and API key.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl Client {
    /// `base` like `http://127.0.0.1:8790`.
    pub fn new(base: &str, api_key: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            api_key,
        }
    }

    /// The node's address, as given.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    async fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let response = rb.send().await.map_err(|source| ClientError::Transport {
            url: self.base.clone(),
            source,
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => ClientError::Api {
                status: status.as_u16(),
                code: b.error.code,
                message: b.error.message,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: status.canonical_reason().unwrap_or("Error").into(),
                message: text,
            },
        })
    }

    async fn json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        self.send(rb)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status> {
        self.json(self.request(Method::GET, "/v1/status")).await
    }

    /// `PUT /v1/artifacts/{sha256}`; returns the sha256.
    pub async fn upload_artifact(&self, bytes: Vec<u8>) -> Result<String> {
        let sha = nimbus_core::sha256_hex(&bytes);
        self.send(
            self.request(Method::PUT, &format!("/v1/artifacts/{sha}"))
                .body(bytes),
        )
        .await?;
        Ok(sha)
    }

    /// `POST /v1/apps`.
    pub async fn deploy(
        &self,
        manifest: String,
        artifacts: BTreeMap<String, String>,
    ) -> Result<DeployResponse> {
        let body = DeployRequest {
            manifest,
            artifacts,
        };
        self.json(self.request(Method::POST, "/v1/apps").json(&body))
            .await
    }

    /// `GET /v1/functions`.
    pub async fn functions(&self) -> Result<Vec<FunctionInfo>> {
        self.json(self.request(Method::GET, "/v1/functions")).await
    }

    /// `GET /v1/functions/{name}`.
    pub async fn function(&self, name: &str) -> Result<FunctionInfo> {
        self.json(self.request(Method::GET, &format!("/v1/functions/{name}")))
            .await
    }

    /// `DELETE /v1/functions/{name}`.
    pub async fn remove_function(&self, name: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/functions/{name}")))
            .await?;
        Ok(())
    }

    /// `DELETE /v1/apps/{app}`.
    pub async fn remove_app(&self, app: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/apps/{app}")))
            .await?;
        Ok(())
    }

    /// `POST /v1/functions/{name}/invoke`. Function failures are returned, not raised.
    pub async fn invoke(
        &self,
        name: &str,
        qualifier: Option<&str>,
        data: Vec<u8>,
        event_type: Option<&str>,
    ) -> Result<Invocation> {
        let mut rb = self
            .request(
                Method::POST,
                &format!("/v1/functions/{name}/invoke{}", qualified("?", qualifier)),
            )
            .header("content-type", "application/json")
            .body(data);
        if let Some(t) = event_type {
            rb = rb.header("ce-type", t);
        }
        let response = rb.send().await.map_err(|source| ClientError::Transport {
            url: self.base.clone(),
            source,
        })?;
        let header = |k: &str| {
            response
                .headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (status, id, error_type) = (
            response.status(),
            header("x-nimbus-invocation-id"),
            header("x-nimbus-error-type"),
        );
        if !status.is_success() && error_type.is_none() {
            // Not a function failure (unknown function, bad key, ...): report it as an API error.
            let text = response.text().await.unwrap_or_default();
            let (code, message) = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| (b.error.code, b.error.message))
                .unwrap_or_else(|_| (status.to_string(), text));
            return Err(ClientError::Api {
                status: status.as_u16(),
                code,
                message,
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(Invocation {
            status: status.as_u16(),
            id,
            error_type,
            body,
        })
    }

    /// `GET /v1/functions/{name}/invocations`, newest first.
    pub async fn invocations(&self, name: &str, limit: usize) -> Result<Vec<InvocationRecord>> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/functions/{name}/invocations?limit={limit}"),
        ))
        .await
    }

    /// `GET /v1/invocations/{id}`: an async invocation's ledger entry, or a record.
    pub async fn invocation(&self, id: &str) -> Result<InvocationStatus> {
        self.json(self.request(Method::GET, &format!("/v1/invocations/{id}")))
            .await
    }

    /// `POST /v1/functions/{name}/invoke?mode=async`: queues an event; returns the invocation id.
    pub async fn invoke_async(
        &self,
        name: &str,
        qualifier: Option<&str>,
        data: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<String> {
        let mut rb = self
            .request(
                Method::POST,
                &format!(
                    "/v1/functions/{name}/invoke?mode=async{}",
                    qualified("&", qualifier)
                ),
            )
            .header("content-type", "application/json")
            .body(data);
        if let Some(k) = idempotency_key {
            rb = rb.header("idempotency-key", k);
        }
        let v: Value = self.json(rb).await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Decode(format!("no id in {v}")))
    }

    /// `GET /v1/usage`: usage and cost (`query` like `function=f&from=2026-11-01&by=day`).
    pub async fn usage(&self, query: &str) -> Result<nimbus_core::usage::UsageReport> {
        self.json(self.request(Method::GET, &format!("/v1/usage?{query}")))
            .await
    }

    /// Tenant `tenant`'s usage report (an operator call), as [`Client::usage`].
    pub async fn tenant_usage(
        &self,
        tenant: &str,
        query: &str,
    ) -> Result<nimbus_core::usage::UsageReport> {
        self.json(self.request(Method::GET, &format!("/v1/tenants/{tenant}/usage?{query}")))
            .await
    }

    /// A call to an AWS JSON 1.0 API the node serves at `/` (the Step Functions API:
    /// `target` `AWSStepFunctions.ListStateMachines`, say), with this client's API key; the
    /// answer's JSON. An error answer (`{"__type", "message"}`) is [`ClientError::Api`].
    pub async fn aws_json(&self, target: &str, body: Value) -> Result<Value> {
        let rb = self
            .request(Method::POST, "/")
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.0")
            .body(body.to_string());
        let response = rb.send().await.map_err(|source| ClientError::Transport {
            url: self.base.clone(),
            source,
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        Err(ClientError::Api {
            status: status.as_u16(),
            code: field("__type").unwrap_or_else(|| status.as_str().to_owned()),
            message: field("message").unwrap_or(text),
        })
    }

    /// A JSON call to an event endpoint (`/v1/queues/...`, `/v1/topics/...`, ...): the
    /// answer's JSON, or `null` for an empty answer.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let text = self
            .send(rb)
            .await?
            .text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /v1/functions/{name}/logs?after=`, oldest first.
    pub async fn logs(&self, name: &str, after: i64) -> Result<Vec<LogEntry>> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/functions/{name}/logs?after={after}"),
        ))
        .await
    }

    /// `POST /v1/functions/{name}/versions`: publishes the deployed code as the next version.
    pub async fn publish_version(&self, name: &str, description: &str) -> Result<Value> {
        self.json(
            self.request(Method::POST, &format!("/v1/functions/{name}/versions"))
                .json(&serde_json::json!({ "description": description })),
        )
        .await
    }

    /// `GET /v1/functions/{name}/versions`.
    pub async fn published_versions(&self, name: &str) -> Result<Vec<Value>> {
        self.json(self.request(Method::GET, &format!("/v1/functions/{name}/versions")))
            .await
    }

    /// `GET /v1/functions/{name}/aliases`.
    pub async fn aliases(&self, name: &str) -> Result<Vec<Value>> {
        self.json(self.request(Method::GET, &format!("/v1/functions/{name}/aliases")))
            .await
    }

    /// `PUT /v1/functions/{name}/aliases/{alias}` with `{version, additional?, description?}`.
    pub async fn put_alias(&self, name: &str, alias: &str, body: &Value) -> Result<Value> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/v1/functions/{name}/aliases/{alias}"),
            )
            .json(body),
        )
        .await
    }

    /// `DELETE /v1/functions/{name}/aliases/{alias}`.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/functions/{name}/aliases/{alias}"),
        ))
        .await
        .map(|_| ())
    }

    /// `PUT /v1/secrets/{name}`: sets a secret; true when it is new.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<bool> {
        let r = self
            .send(
                self.request(Method::PUT, &format!("/v1/secrets/{name}"))
                    .json(&serde_json::json!({ "value": value })),
            )
            .await?;
        Ok(r.status() == reqwest::StatusCode::CREATED)
    }

    /// `GET /v1/secrets`: names, times and users, never values.
    pub async fn secrets(&self) -> Result<Vec<Value>> {
        self.json(self.request(Method::GET, "/v1/secrets")).await
    }

    /// `DELETE /v1/secrets/{name}`.
    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/secrets/{name}")))
            .await
            .map(|_| ())
    }

    /// `GET /v1/functions/{name}/logs?limit=&since=`: the newest `limit` entries of invocations
    /// started at or after `since_ms`, oldest first.
    pub async fn recent_logs(
        &self,
        name: &str,
        limit: usize,
        since_ms: i64,
    ) -> Result<Vec<LogEntry>> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/functions/{name}/logs?limit={limit}&since={since_ms}"),
        ))
        .await
    }
}

/// `qualifier=Q` (percent-encoded) after `sep`, or nothing.
fn qualified(sep: &str, qualifier: Option<&str>) -> String {
    qualifier.map_or_else(String::new, |q| {
        let q = percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC);
        format!("{sep}qualifier={q}")
    })
}

impl ClientError {
    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => StatusCode::from_u16(*status).ok(),
            _ => None,
        }
    }
}
