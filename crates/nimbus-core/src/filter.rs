//! Subscription filter policies with the semantics of Amazon SNS filter policies.
//!
//! A policy is a JSON object. Every key must match (AND); a key's value is a list of conditions of
//! which one must match (OR); `"$or": [policy, ...]` matches when any of the sub-policies does.
//! A nested object matches a nested object of the document (payload-based filtering). Conditions:
//! an exact string or number, `{"prefix": s}`, `{"suffix": s}`, `{"equals-ignore-case": s}`,
//! `{"anything-but": value | [values] | {"prefix": s}}`, `{"numeric": [op, n, (op, n)]}` with
//! `=`, `<`, `<=`, `>`, `>=`, and `{"exists": bool}`. A key missing from the document matches
//! only `{"exists": false}`. When the document holds an array, the condition must match one of
//! its elements.
//!
//! The document is a JSON object: the message attributes (`{"type": "order"}`), or the payload.

use serde_json::{Map, Value};

/// A parsed filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    all: Vec<Rule>,
    any: Vec<FilterPolicy>,
}

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Key(String, Vec<Condition>),
    Nested(String, FilterPolicy),
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Exact(Value),
    Prefix(String),
    Suffix(String),
    IgnoreCase(String),
    AnythingBut(Vec<Value>),
    AnythingButPrefix(String),
    Numeric(Vec<(NumOp, f64)>),
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Why a policy is not valid, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter policy {key}: {message}")]
pub struct PolicyError {
    key: String,
    message: String,
}

fn err(key: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        key: if key.is_empty() {
            "(top level)".into()
        } else {
            format!("`{key}`")
        },
        message: message.into(),
    }
}

fn parse_condition(key: &str, v: &Value) -> Result<Condition, PolicyError> {
    let string = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| err(key, format!("{what} takes a string")))
    };
    match v {
        Value::String(_) | Value::Number(_) => Ok(Condition::Exact(v.clone())),
        Value::Object(o) if o.len() == 1 => {
            let (op, arg) = o.iter().next().ok_or_else(|| err(key, "empty condition"))?;
            match op.as_str() {
                "prefix" => Ok(Condition::Prefix(string(arg, "prefix")?)),
                "suffix" => Ok(Condition::Suffix(string(arg, "suffix")?)),
                "equals-ignore-case" => Ok(Condition::IgnoreCase(
                    string(arg, "equals-ignore-case")?.to_lowercase(),
                )),
                "exists" => arg
                    .as_bool()
                    .map(Condition::Exists)
                    .ok_or_else(|| err(key, "exists takes true or false")),
                "anything-but" => match arg {
                    Value::String(_) | Value::Number(_) => {
                        Ok(Condition::AnythingBut(vec![arg.clone()]))
                    }
                    Value::Array(items) if items.iter().all(|i| i.is_string() || i.is_number()) => {
                        Ok(Condition::AnythingBut(items.clone()))
                    }
                    Value::Object(p) if p.len() == 1 && p.contains_key("prefix") => Ok(
                        Condition::AnythingButPrefix(string(&p["prefix"], "prefix")?),
                    ),
                    _ => Err(err(
                        key,
                        "anything-but takes a string, a number, a list of them, or {\"prefix\": ...}",
                    )),
                },
                "numeric" => {
                    let items = arg
                        .as_array()
                        .filter(|a| !a.is_empty() && a.len() % 2 == 0 && a.len() <= 4)
                        .ok_or_else(|| err(key, "numeric takes [op, n] or [op, n, op, n]"))?;
                    let mut ops = Vec::new();
                    for pair in items.chunks(2) {
                        let op = match pair[0].as_str() {
                            Some("=") => NumOp::Eq,
                            Some("<") => NumOp::Lt,
                            Some("<=") => NumOp::Le,
                            Some(">") => NumOp::Gt,
                            Some(">=") => NumOp::Ge,
                            _ => return Err(err(key, "numeric operators are =, <, <=, >, >=")),
                        };
                        let n = pair[1]
                            .as_f64()
                            .ok_or_else(|| err(key, "numeric bounds must be numbers"))?;
                        ops.push((op, n));
                    }
                    Ok(Condition::Numeric(ops))
                }
                other => Err(err(key, format!("unknown operator `{other}`"))),
            }
        }
        _ => Err(err(
            key,
            "a condition is a string, a number, or a one-key operator object",
        )),
    }
}

impl FilterPolicy {
    /// Parses a policy, reporting the first invalid key.
    pub fn parse(policy: &Value) -> Result<Self, PolicyError> {
        Self::parse_at(policy, "")
    }

    fn parse_at(policy: &Value, path: &str) -> Result<Self, PolicyError> {
        let object = policy
            .as_object()
            .ok_or_else(|| err(path, "a policy is a JSON object"))?;
        let mut all = Vec::new();
        let mut any = Vec::new();
        for (k, v) in object {
            let key = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match (k.as_str(), v) {
                ("$or", Value::Array(alternatives)) if alternatives.len() >= 2 => {
                    for a in alternatives {
                        any.push(Self::parse_at(a, path)?);
                    }
                }
                ("$or", _) => return Err(err(&key, "$or takes a list of at least two policies")),
                (_, Value::Array(conditions)) if !conditions.is_empty() => {
                    let parsed = conditions
                        .iter()
                        .map(|c| parse_condition(&key, c))
                        .collect::<Result<_, _>>()?;
                    all.push(Rule::Key(k.clone(), parsed));
                }
                (_, Value::Object(_)) => {
                    all.push(Rule::Nested(k.clone(), Self::parse_at(v, &key)?))
                }
                _ => return Err(err(&key, "conditions are given as a non-empty list")),
            }
        }
        if all.is_empty() && any.is_empty() {
            return Err(err(path, "a policy needs at least one key"));
        }
        Ok(Self { all, any })
    }

    /// Whether the document (attributes or payload, a JSON object) passes the policy.
    pub fn matches(&self, document: &Map<String, Value>) -> bool {
        self.all.iter().all(|rule| match rule {
            Rule::Key(k, conditions) => conditions.iter().any(|c| c.matches(document.get(k))),
            Rule::Nested(k, policy) => document
                .get(k)
                .and_then(Value::as_object)
                .is_some_and(|inner| policy.matches(inner)),
        }) && (self.any.is_empty() || self.any.iter().any(|p| p.matches(document)))
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Condition {
    fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Condition::Exists(wanted), v) => *wanted == v.is_some(),
            (_, None) => false,
            (_, Some(Value::Array(items))) => items.iter().any(|i| self.matches_one(i)),
            (_, Some(v)) => self.matches_one(v),
        }
    }

    fn matches_one(&self, v: &Value) -> bool {
        let s = v.as_str();
        match self {
            Condition::Exact(want) => same(want, v),
            Condition::Prefix(p) => s.is_some_and(|s| s.starts_with(p.as_str())),
            Condition::Suffix(p) => s.is_some_and(|s| s.ends_with(p.as_str())),
            Condition::IgnoreCase(p) => s.is_some_and(|s| s.to_lowercase() == *p),
            Condition::AnythingBut(list) => !list.iter().any(|x| same(x, v)),
            Condition::AnythingButPrefix(p) => s.is_some_and(|s| !s.starts_with(p.as_str())),
            Condition::Numeric(ops) => v.as_f64().is_some_and(|n| {
                ops.iter().all(|(op, bound)| match op {
                    NumOp::Eq => n == *bound,
                    NumOp::Lt => n < *bound,
                    NumOp::Le => n <= *bound,
                    NumOp::Gt => n > *bound,
                    NumOp::Ge => n >= *bound,
                })
            }),
            Condition::Exists(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn semantics_table() {
        let order = json!({"type": "order", "price": 120.5, "store": "eu-west-2",
                           "tags": ["a", "vip"], "customer": {"tier": "gold", "age": 30}});
        // (policy, matches the order document?)
        let table = [
            (json!({"type": ["order"]}), true),
            (json!({"type": ["refund"]}), false),
            (json!({"type": ["refund", "order"]}), true),
            (json!({"type": ["order"], "price": [120.5]}), true),
            (json!({"price": [120.50]}), true),
            (json!({"store": [{"prefix": "eu-"}]}), true),
            (json!({"store": [{"prefix": "us-"}]}), false),
            (json!({"store": [{"suffix": "-2"}]}), true),
            (json!({"type": [{"equals-ignore-case": "ORDER"}]}), true),
            (
                json!({"type": [{"anything-but": ["refund", "cancel"]}]}),
                true,
            ),
            (json!({"type": [{"anything-but": "order"}]}), false),
            (
                json!({"store": [{"anything-but": {"prefix": "eu"}}]}),
                false,
            ),
            (json!({"price": [{"anything-but": [100]}]}), true),
            (json!({"price": [{"numeric": [">", 100, "<=", 200]}]}), true),
            (json!({"price": [{"numeric": ["<", 100]}]}), false),
            (json!({"price": [{"numeric": ["=", 120.5]}]}), true),
            (json!({"type": [{"numeric": [">", 0]}]}), false),
            (json!({"coupon": [{"exists": false}]}), true),
            (json!({"coupon": [{"exists": true}]}), false),
            (json!({"type": [{"exists": true}]}), true),
            (json!({"coupon": [{"anything-but": "x"}]}), false),
            (json!({"tags": ["vip"]}), true),
            (json!({"tags": ["gold"]}), false),
            (json!({"customer": {"tier": ["gold"]}}), true),
            (
                json!({"customer": {"age": [{"numeric": [">=", 40]}]}}),
                false,
            ),
            (
                json!({"type": ["order"], "$or": [{"price": [{"numeric": [">", 1000]}]},
                                               {"store": [{"prefix": "eu"}]}]}),
                true,
            ),
            (
                json!({"$or": [{"type": ["refund"]}, {"price": [{"numeric": ["<", 1]}]}]}),
                false,
            ),
        ];
        for (policy, expected) in table {
            let p = FilterPolicy::parse(&policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
            assert_eq!(p.matches(&doc(order.clone())), expected, "{policy}");
        }
    }

    #[test]
    fn invalid_policies_name_the_key() {
        for (policy, key) in [
            (json!("type"), "(top level)"),
            (json!({}), "(top level)"),
            (json!({"type": "order"}), "`type`"),
            (json!({"type": []}), "`type`"),
            (json!({"price": [{"numeric": [">"]}]}), "`price`"),
            (json!({"price": [{"numeric": ["~", 3]}]}), "`price`"),
            (json!({"type": [{"between": 1}]}), "`type`"),
            (json!({"type": [{"prefix": 3}]}), "`type`"),
            (json!({"type": [{"exists": "yes"}]}), "`type`"),
            (json!({"type": [true]}), "`type`"),
            (json!({"$or": [{"a": ["x"]}]}), "`$or`"),
            (json!({"c": {"tier": "gold"}}), "`c.tier`"),
        ] {
            let e = FilterPolicy::parse(&policy).unwrap_err();
            assert_eq!(e.key, key, "{policy}: {e}");
        }
    }
}
