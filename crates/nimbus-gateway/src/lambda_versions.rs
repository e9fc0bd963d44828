//! Lambda's versions, aliases and resource-policy API: `PublishVersion`,
//! `ListVersionsByFunction`, `CreateAlias`, `GetAlias`, `UpdateAlias`, `DeleteAlias`,
//! `ListAliases`, `AddPermission`, `GetPolicy`, `RemovePermission`, in the service model's
//! shapes (`FunctionConfiguration`, `AliasConfiguration`, policy JSON), SigV4 as the rest.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http_body_util::BodyExt;
use nimbus_aws::lambda;
use nimbus_core::api::FunctionInfo;
use nimbus_core::store::{Alias, PublishedVersion};
use nimbus_invoker::{AliasWrite, VersionError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::lambda::{aws_error, configuration, control_read, verify, version_error};

/// The `AliasConfiguration` of `alias`.
fn alias_json(g: &Gateway, alias: &Alias) -> Value {
    let mut v = json!({
        "AliasArn": format!("{}:{}", lambda::function_arn(g.invoker.region(), &alias.function), alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.version.to_string(),
        "Description": alias.description,
    });
    if let Some((version, weight)) = alias.additional {
        v["RoutingConfig"] = json!({ "AdditionalVersionWeights": { version.to_string(): weight } });
    }
    v
}

fn published_json(g: &Gateway, p: &PublishedVersion) -> Value {
    let mut c = configuration(g, &FunctionInfo::from(&p.version), &p.number.to_string());
    c["Description"] = json!(p.description);
    c
}

/// A signed write's JSON body (Lambda calls send `{}` or nothing when there is no input); the
/// caller needs `functions:deploy`.
async fn signed_json<T: for<'de> Deserialize<'de> + Default>(
    g: &Gateway,
    request: Request,
) -> Result<T, Box<Response>> {
    let (parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
        .map_err(|_| {
            Box::new(aws_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                "the request body is over 64 KiB",
            ))
        })?
        .to_bytes();
    verify(
        g,
        &parts,
        &body,
        (nimbus_core::keys::Permission::FunctionsDeploy, None),
    )?;
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| {
        Box::new(aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            &format!("Could not parse request body into json: {e}"),
        ))
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct PublishInput {
    #[serde(default)]
    description: String,
}

/// `POST /2015-03-31/functions/{name}/versions`: `PublishVersion` (201).
pub(crate) async fn publish(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let input: PublishInput = match signed_json(&g, request).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let (function, _) = lambda::parse_function_name(&name);
    match g
        .invoker
        .publish_version(function, &input.description)
        .await
    {
        Ok(p) => (StatusCode::CREATED, axum::Json(published_json(&g, &p))).into_response(),
        Err(e) => version_error(e),
    }
}

/// `GET /2015-03-31/functions/{name}/versions`: `ListVersionsByFunction`: `$LATEST`, then the
/// published versions.
pub(crate) async fn list_versions(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = control_read(&g, request).await {
        return *refused;
    }
    let (function, _) = lambda::parse_function_name(&name);
    let (Some(latest), Ok(published)) = (
        g.invoker.function(function),
        g.invoker.published_versions(function).await,
    ) else {
        return not_found(&g, function);
    };
    let mut versions = vec![configuration(&g, &latest, "$LATEST")];
    versions.extend(published.iter().map(|p| published_json(&g, p)));
    axum::Json(json!({ "Versions": versions })).into_response()
}

fn not_found(g: &Gateway, function: &str) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!(
            "Function not found: {}",
            lambda::function_arn(g.invoker.region(), function)
        ),
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct AliasInput {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RoutingConfig {
    #[serde(default)]
    additional_version_weights: HashMap<String, f64>,
}

/// An alias from a Create/UpdateAlias input over `base` (the current alias, for updates).
fn alias_of(
    function: &str,
    name: &str,
    input: AliasInput,
    base: Option<Alias>,
) -> Result<Alias, VersionError> {
    let number = |s: &str| {
        s.parse::<u32>().map_err(|_| {
            VersionError::Invalid(format!(
                "FunctionVersion `{s}`: an alias points at a published version number"
            ))
        })
    };
    let version = match (input.function_version.as_deref(), &base) {
        (Some(v), _) => number(v)?,
        (None, Some(b)) => b.version,
        (None, None) => return Err(VersionError::Invalid("FunctionVersion is required".into())),
    };
    let additional = match input.routing_config {
        Some(r) => {
            let mut weights = r.additional_version_weights.into_iter();
            let first = weights.next();
            if weights.next().is_some() {
                return Err(VersionError::Invalid(
                    "AdditionalVersionWeights takes one version".into(),
                ));
            }
            first
                .map(|(v, w)| Ok::<_, VersionError>((number(&v)?, w)))
                .transpose()?
        }
        None => base.as_ref().and_then(|b| b.additional),
    };
    Ok(Alias {
        function: function.to_string(),
        name: name.to_string(),
        version,
        additional,
        description: input
            .description
            .or_else(|| base.map(|b| b.description))
            .unwrap_or_default(),
    })
}

/// `POST /2015-03-31/functions/{name}/aliases`: `CreateAlias` (201).
pub(crate) async fn create_alias(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let mut input: AliasInput = match signed_json(&g, request).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let (function, _) = lambda::parse_function_name(&name);
    let alias_name = input.name.take().unwrap_or_default();
    let result = async {
        let alias = alias_of(function, &alias_name, input, None)?;
        g.invoker.put_alias(alias, AliasWrite::Create).await
    };
    match result.await {
        Ok(alias) => (StatusCode::CREATED, axum::Json(alias_json(&g, &alias))).into_response(),
        Err(e) => version_error(e),
    }
}

async fn find_alias(g: &Gateway, function: &str, name: &str) -> Result<Alias, VersionError> {
    g.invoker
        .aliases(function)
        .await?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            VersionError::NotFound(format!(
                "Cannot find alias arn: {}:{name}",
                lambda::function_arn(g.invoker.region(), function)
            ))
        })
}

/// `GET /2015-03-31/functions/{name}/aliases`: `ListAliases`.
pub(crate) async fn list_aliases(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = control_read(&g, request).await {
        return *refused;
    }
    let (function, _) = lambda::parse_function_name(&name);
    match g.invoker.aliases(function).await {
        Ok(aliases) => {
            let list: Vec<Value> = aliases.iter().map(|a| alias_json(&g, a)).collect();
            axum::Json(json!({ "Aliases": list })).into_response()
        }
        Err(e) => version_error(e),
    }
}

/// `GET /2015-03-31/functions/{name}/aliases/{alias}`: `GetAlias`.
pub(crate) async fn get_alias(
    State(g): State<Arc<Gateway>>,
    Path((name, alias)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Err(refused) = control_read(&g, request).await {
        return *refused;
    }
    let (function, _) = lambda::parse_function_name(&name);
    match find_alias(&g, function, &alias).await {
        Ok(a) => axum::Json(alias_json(&g, &a)).into_response(),
        Err(e) => version_error(e),
    }
}

/// `PUT /2015-03-31/functions/{name}/aliases/{alias}`: `UpdateAlias` (roll forward or back,
/// shift traffic).
pub(crate) async fn update_alias(
    State(g): State<Arc<Gateway>>,
    Path((name, alias)): Path<(String, String)>,
    request: Request,
) -> Response {
    let input: AliasInput = match signed_json(&g, request).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let (function, _) = lambda::parse_function_name(&name);
    let result = async {
        let base = find_alias(&g, function, &alias).await?;
        let updated = alias_of(function, &alias, input, Some(base))?;
        g.invoker.put_alias(updated, AliasWrite::Update).await
    };
    match result.await {
        Ok(a) => axum::Json(alias_json(&g, &a)).into_response(),
        Err(e) => version_error(e),
    }
}

/// `DELETE /2015-03-31/functions/{name}/aliases/{alias}`: `DeleteAlias` (204).
pub(crate) async fn delete_alias(
    State(g): State<Arc<Gateway>>,
    Path((name, alias)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Err(refused) = control_read(&g, request).await {
        return *refused;
    }
    let (function, _) = lambda::parse_function_name(&name);
    match g.invoker.delete_alias(function, &alias).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => version_error(e),
    }
}

/// A function's resource-policy statement as Lambda shows it.
fn statement_json(g: &Gateway, function: &str, s: &nimbus_core::keys::PolicyStatement) -> Value {
    json!({
        "Sid": s.sid,
        "Effect": "Allow",
        "Principal": { "AWS": s.principal },
        "Action": "lambda:InvokeFunction",
        "Resource": lambda::function_arn(g.invoker.region(), function),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct PermissionInput {
    #[serde(default)]
    statement_id: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    principal: String,
}

/// `POST /2015-03-31/functions/{name}/policy`: `AddPermission` — lets a key (its id or its AWS
/// access key id as `Principal`) invoke the function whatever its role.
pub(crate) async fn add_permission(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let input: PermissionInput = match signed_json(&g, request).await {
        Ok(i) => i,
        Err(refused) => return *refused,
    };
    if !matches!(input.action.as_str(), "lambda:InvokeFunction" | "lambda:*") {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!(
                "Action `{}` is not supported: Nimbus policies grant lambda:InvokeFunction",
                input.action
            ),
        );
    }
    let (function, _) = lambda::parse_function_name(&name);
    match g
        .invoker
        .add_permission(function, &input.statement_id, &input.principal)
        .await
    {
        Ok(s) => (
            StatusCode::CREATED,
            axum::Json(json!({ "Statement": statement_json(&g, function, &s).to_string() })),
        )
            .into_response(),
        Err(e) => version_error(e),
    }
}

/// `GET /2015-03-31/functions/{name}/policy`: `GetPolicy`.
pub(crate) async fn get_policy(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = control_read(&g, request).await {
        return *refused;
    }
    let (function, _) = lambda::parse_function_name(&name);
    match g.invoker.function_policy(function).await {
        Ok(statements) if statements.is_empty() => aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "The resource you requested does not exist.",
        ),
        Ok(statements) => {
            let policy = json!({
                "Version": "2012-10-17",
                "Id": "default",
                "Statement": statements
                    .iter()
                    .map(|s| statement_json(&g, function, s))
                    .collect::<Vec<_>>(),
            })
            .to_string();
            let revision = nimbus_core::sha256_hex(policy.as_bytes());
            axum::Json(json!({ "Policy": policy, "RevisionId": revision })).into_response()
        }
        Err(e) => version_error(e),
    }
}

/// `DELETE /2015-03-31/functions/{name}/policy/{sid}`: `RemovePermission`.
pub(crate) async fn remove_permission(
    State(g): State<Arc<Gateway>>,
    Path((name, sid)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Err(refused) = signed_json::<Value>(&g, request).await {
        return *refused;
    }
    let (function, _) = lambda::parse_function_name(&name);
    match g.invoker.remove_permission(function, &sid).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => version_error(e),
    }
}
