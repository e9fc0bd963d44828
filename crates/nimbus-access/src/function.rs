//! Function authorizers (API Gateway HTTP API, payload format 2.0): the event a deciding
//! function receives, and the reading of its answer — the simple `{"isAuthorized": ..}` form
//! or an IAM policy. Pure.

use nimbus_core::access::{FunctionAuthorizer, IdentitySource};
use serde_json::{Value, json};

/// What an authorizer function said.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Whether the caller may go on.
    pub allowed: bool,
    /// Passed to the route's function as `requestContext.authorizer.lambda`.
    pub context: Value,
}

impl Decision {
    /// What the route's function is told.
    pub fn authorizer_context(&self) -> Value {
        json!({ "lambda": self.context })
    }
}

/// Why an authorizer's answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the authorizer function's answer is not a decision: {0}")]
pub struct DecisionError(pub String);

/// The caller's identity: each source's value, in order; `None` when one is missing (the
/// caller is refused without calling the function).
pub fn identity(
    authorizer: &FunctionAuthorizer,
    header: impl Fn(&str) -> Option<String>,
    query: impl Fn(&str) -> Option<String>,
) -> Option<Vec<String>> {
    authorizer
        .identity_sources
        .iter()
        .map(|s| {
            match s {
                IdentitySource::Header(name) => header(name),
                IdentitySource::Query(name) => query(name),
            }
            .filter(|v| !v.is_empty())
        })
        .collect()
}

/// The authorizer event: the request's API Gateway event (without its body) plus `type`,
/// `routeArn` and `identitySource`.
pub fn event(mut request_event: Value, route_arn: &str, identity: &[String]) -> Value {
    if let Some(e) = request_event.as_object_mut() {
        e.remove("body");
        e.remove("isBase64Encoded");
        e.insert("type".into(), json!("REQUEST"));
        e.insert("routeArn".into(), json!(route_arn));
        e.insert("identitySource".into(), json!(identity));
    }
    request_event
}

/// Reads an authorizer's answer.
pub fn decision(answer: &[u8]) -> Result<Decision, DecisionError> {
    let v: Value = serde_json::from_slice(answer).map_err(|e| DecisionError(e.to_string()))?;
    let context = match v.get("context") {
        None | Some(Value::Null) => json!({}),
        Some(c @ Value::Object(_)) => c.clone(),
        Some(_) => return Err(DecisionError("`context` must be an object".into())),
    };
    if let Some(a) = v.get("isAuthorized") {
        let allowed = a
            .as_bool()
            .ok_or_else(|| DecisionError("`isAuthorized` must be true or false".into()))?;
        return Ok(Decision { allowed, context });
    }
    let statements = v
        .pointer("/policyDocument/Statement")
        .ok_or_else(|| DecisionError("expected `isAuthorized` or a `policyDocument`".into()))?;
    let statements = match statements {
        Value::Array(list) => list.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => return Err(DecisionError("`Statement` must be a list".into())),
    };
    let invokes = |s: &Value| {
        let action = |a: &Value| {
            a.as_str()
                .is_some_and(|a| a == "*" || a.eq_ignore_ascii_case("execute-api:Invoke"))
        };
        match s.get("Action") {
            Some(Value::Array(list)) => list.iter().any(action),
            Some(a) => action(a),
            None => false,
        }
    };
    let effect = |s: &Value, e: &str| {
        s.get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|x| x.eq_ignore_ascii_case(e))
    };
    // An explicit Deny wins over any Allow, as in IAM.
    let denied = statements.iter().any(|s| invokes(s) && effect(s, "Deny"));
    let allowed = !denied && statements.iter().any(|s| invokes(s) && effect(s, "Allow"));
    Ok(Decision { allowed, context })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_answers_and_their_context() {
        let d = decision(br#"{"isAuthorized": true, "context": {"user": "u1"}}"#).unwrap();
        assert!(d.allowed);
        assert_eq!(d.authorizer_context()["lambda"]["user"], "u1");
        assert!(!decision(br#"{"isAuthorized": false}"#).unwrap().allowed);
        assert!(decision(br#"{"isAuthorized": "yes"}"#).is_err());
        assert!(decision(b"{}").is_err());
        assert!(decision(b"nope").is_err());
    }

    #[test]
    fn iam_policies_allow_unless_denied() {
        let allow = br#"{"principalId": "u", "policyDocument": {"Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}]}}"#;
        assert!(decision(allow).unwrap().allowed);
        let both = br#"{"policyDocument": {"Statement": [
            {"Action": ["execute-api:Invoke"], "Effect": "Allow", "Resource": "*"},
            {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": "*"}]}}"#;
        assert!(!decision(both).unwrap().allowed);
        let other = br#"{"policyDocument": {"Statement": [
            {"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"}]}}"#;
        assert!(!decision(other).unwrap().allowed);
    }

    #[test]
    fn identity_needs_every_source() {
        let a = FunctionAuthorizer {
            name: "gate".into(),
            function: "authz".into(),
            identity_sources: vec![
                IdentitySource::Header("authorization".into()),
                IdentitySource::Query("tenant".into()),
            ],
            ttl_ms: 1000,
        };
        let header = |n: &str| (n == "authorization").then(|| "t".to_string());
        assert_eq!(
            identity(&a, header, |n| (n == "tenant").then(|| "a".into())),
            Some(vec!["t".into(), "a".into()])
        );
        assert_eq!(identity(&a, header, |_| None), None);
        assert_eq!(identity(&a, header, |_| Some(String::new())), None);
        let e = event(
            json!({"version": "2.0", "body": "x", "isBase64Encoded": false}),
            "arn:r",
            &["t".into()],
        );
        assert_eq!(e["type"], "REQUEST");
        assert_eq!(e["identitySource"][0], "t");
        assert!(e.get("body").is_none());
    }
}
