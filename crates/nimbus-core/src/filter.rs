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

/// The base of an SNS message attribute data type (`String`, `String.Array`, `Number`,
/// `Binary`, or one of them with a custom suffix like `Number.float`), or `None`.
pub fn base_data_type(data_type: &str) -> Option<&'static str> {
    if data_type == "String.Array" {
        return Some("String.Array");
    }
    match data_type.split('.').next()? {
        "String" => Some("String"),
        "Number" => Some("Number"),
        "Binary" => Some("Binary"),
        _ => None,
    }
}

/// A message attribute as a filter policy sees it: a `Number` as a number, a `String.Array`
/// as its elements, a `String` as text; `Binary` attributes are not filtered on (`None`), as in
/// SNS. A value that does not parse as its type is taken as text.
pub fn attribute_value(data_type: &str, value: &str) -> Option<Value> {
    match base_data_type(data_type).unwrap_or("String") {
        "Binary" => None,
        "Number" => Some(
            value
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(value.into()), Value::Number),
        ),
        "String.Array" => Some(
            serde_json::from_str::<Value>(value)
                .ok()
                .filter(Value::is_array)
                .unwrap_or_else(|| Value::String(value.into())),
        ),
        _ => Some(Value::String(value.into())),
    }
}

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
    Wildcard(Wildcard),
    Cidr(Cidr),
    AnythingBut(Vec<Value>),
    /// `anything-but` with a string operator: matches strings the inner condition does not.
    AnythingButMatching(Box<Condition>),
    Numeric(Vec<(NumOp, f64)>),
    Exists(bool),
}

/// A `wildcard` pattern: `*` matches any run of characters; `\*` and `\\` are literal.
#[derive(Debug, Clone, PartialEq)]
struct Wildcard(Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(char),
    Star,
}

impl Wildcard {
    fn parse(pattern: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => pieces.push(Piece::Literal(e)),
                    _ => return Err("in a wildcard, `\\` escapes only `*` and `\\`".into()),
                },
                '*' if pieces.last() == Some(&Piece::Star) => {
                    return Err("a wildcard may not have consecutive `*`".into());
                }
                '*' => pieces.push(Piece::Star),
                c => pieces.push(Piece::Literal(c)),
            }
        }
        Ok(Self(pieces))
    }

    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        // Greedy glob with one backtrack point: linear for patterns without repeated stars.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.0.get(p) {
                Some(Piece::Literal(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                Some(Piece::Star) => {
                    star = Some((p, t));
                    p += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.0[p..].iter().all(|piece| *piece == Piece::Star)
    }
}

/// An IPv4 or IPv6 prefix (`10.0.0.0/24`, `2001:db8::/32`).
#[derive(Debug, Clone, PartialEq)]
struct Cidr {
    network: std::net::IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let (addr, bits) = text.split_once('/')?;
        let network: std::net::IpAddr = addr.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Self { network, bits })
    }

    fn contains(&self, text: &str) -> bool {
        use std::net::IpAddr;
        let Ok(ip) = text.parse::<IpAddr>() else {
            return false;
        };
        let (a, b, width) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Most keys a policy may have (SNS).
pub const MAX_KEYS: usize = 5;
/// Most value combinations a policy may have (SNS).
pub const MAX_COMBINATIONS: u64 = 150;

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
    // The string operators, also the forms `anything-but` takes.
    let string_operator = |op: &str, arg: &Value| -> Option<Result<Condition, PolicyError>> {
        Some(match op {
            "prefix" => string(arg, "prefix").map(Condition::Prefix),
            "suffix" => string(arg, "suffix").map(Condition::Suffix),
            "equals-ignore-case" => {
                string(arg, "equals-ignore-case").map(|s| Condition::IgnoreCase(s.to_lowercase()))
            }
            "wildcard" => string(arg, "wildcard").and_then(|p| {
                Wildcard::parse(&p)
                    .map(Condition::Wildcard)
                    .map_err(|m| err(key, m))
            }),
            _ => return None,
        })
    };
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
            Ok(Condition::Exact(v.clone()))
        }
        Value::Object(o) if o.len() == 1 => {
            let (op, arg) = o.iter().next().ok_or_else(|| err(key, "empty condition"))?;
            if let Some(c) = string_operator(op, arg) {
                return c;
            }
            match op.as_str() {
                "exists" => arg
                    .as_bool()
                    .map(Condition::Exists)
                    .ok_or_else(|| err(key, "exists takes true or false")),
                "cidr" => arg
                    .as_str()
                    .and_then(Cidr::parse)
                    .map(Condition::Cidr)
                    .ok_or_else(|| {
                        err(
                            key,
                            "cidr takes an IPv4 or IPv6 prefix, e.g. \"10.0.0.0/24\"",
                        )
                    }),
                "anything-but" => match arg {
                    Value::String(_) | Value::Number(_) => {
                        Ok(Condition::AnythingBut(vec![arg.clone()]))
                    }
                    Value::Array(items)
                        if !items.is_empty()
                            && items.iter().all(|i| i.is_string() || i.is_number()) =>
                    {
                        Ok(Condition::AnythingBut(items.clone()))
                    }
                    Value::Object(p) if p.len() == 1 => {
                        let (inner, arg) = p.iter().next().ok_or_else(|| err(key, "empty"))?;
                        match string_operator(inner, arg) {
                            Some(c) => Ok(Condition::AnythingButMatching(Box::new(c?))),
                            None => Err(err(key, format!("anything-but does not take `{inner}`"))),
                        }
                    }
                    _ => Err(err(
                        key,
                        "anything-but takes a string, a number, a list of them, or one of \
                         prefix, suffix, equals-ignore-case, wildcard",
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
                        let n = pair[1].as_f64().filter(|n| n.abs() <= 1e9).ok_or_else(|| {
                            err(key, "numeric bounds are numbers from -1e9 to 1e9")
                        })?;
                        ops.push((op, n));
                    }
                    Ok(Condition::Numeric(ops))
                }
                other => Err(err(key, format!("unknown operator `{other}`"))),
            }
        }
        _ => Err(err(
            key,
            "a condition is a string, a number, true, false, null, or a one-key operator object",
        )),
    }
}

impl FilterPolicy {
    /// Parses a policy, reporting the first invalid key. SNS's limits hold: at most five keys
    /// and at most 150 combinations of values (the product of each key's number of values).
    pub fn parse(policy: &Value) -> Result<Self, PolicyError> {
        let parsed = Self::parse_at(policy, "")?;
        let (keys, combinations) = parsed.size();
        if keys > MAX_KEYS {
            return Err(err(
                "",
                format!("a policy has at most {MAX_KEYS} keys ({keys} here)"),
            ));
        }
        if combinations > MAX_COMBINATIONS {
            return Err(err(
                "",
                format!(
                    "a policy has at most {MAX_COMBINATIONS} combinations of values \
                     ({combinations} here: the product of each key's number of values)"
                ),
            ));
        }
        Ok(parsed)
    }

    /// Keys (leaf keys, counted once) and value combinations (products along AND, sums along
    /// `$or`).
    fn size(&self) -> (usize, u64) {
        let mut keys = 0;
        let mut combinations: u64 = 1;
        for rule in &self.all {
            let (k, c) = match rule {
                Rule::Key(_, conditions) => (1, conditions.len() as u64),
                Rule::Nested(_, inner) => inner.size(),
            };
            keys += k;
            combinations = combinations.saturating_mul(c);
        }
        if !self.any.is_empty() {
            let mut alternatives: u64 = 0;
            for p in &self.any {
                let (k, c) = p.size();
                keys += k;
                alternatives = alternatives.saturating_add(c);
            }
            combinations = combinations.saturating_mul(alternatives);
        }
        (keys, combinations)
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

    /// Whether the document (attributes or payload, a JSON object) passes the policy. An empty
    /// document matches nothing, not even `{"exists": false}` (as SNS documents).
    pub fn matches(&self, document: &Map<String, Value>) -> bool {
        !document.is_empty() && self.matches_in(document)
    }

    fn matches_in(&self, document: &Map<String, Value>) -> bool {
        self.all.iter().all(|rule| match rule {
            Rule::Key(k, conditions) => conditions.iter().any(|c| c.matches(document.get(k))),
            Rule::Nested(k, policy) => document
                .get(k)
                .and_then(Value::as_object)
                .is_some_and(|inner| policy.matches_in(inner)),
        }) && (self.any.is_empty() || self.any.iter().any(|p| p.matches_in(document)))
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
            // A key "exists" with a non-null, non-empty value.
            (Condition::Exists(wanted), v) => {
                let present = v.is_some_and(|v| {
                    !(v.is_null()
                        || v.as_str() == Some("")
                        || v.as_array().is_some_and(Vec::is_empty))
                });
                *wanted == present
            }
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
            Condition::Wildcard(w) => s.is_some_and(|s| w.matches(s)),
            Condition::Cidr(c) => s.is_some_and(|s| c.contains(s)),
            Condition::AnythingBut(list) => !list.iter().any(|x| same(x, v)),
            Condition::AnythingButMatching(inner) => s.is_some() && !inner.matches_one(v),
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

    /// The message of the SNS developer guide's filter examples, as message attributes (typed)
    /// and as a body.
    fn guide_attributes() -> Map<String, Value> {
        [
            (
                "customer_interests",
                "String.Array",
                "[\"soccer\", \"rugby\", \"hockey\"]",
            ),
            ("store", "String", "example_corp"),
            ("event", "String", "order_placed"),
            ("price_usd", "Number", "210.75"),
            ("source_ip", "String", "10.0.0.42"),
            ("thumbnail", "Binary", "aGk="),
        ]
        .into_iter()
        .filter_map(|(k, t, v)| Some((k.to_string(), attribute_value(t, v)?)))
        .collect()
    }

    #[test]
    fn sns_developer_guide_examples() {
        let attributes = guide_attributes();
        let body = doc(json!({"customer_interests": ["soccer", "rugby", "hockey"],
            "store": "example_corp", "event": "order_placed", "price_usd": 210.75,
            "source_ip": "10.0.0.42", "gift": true, "coupon": null, "note": "",
            "delivery": {"city": "Seattle", "zip": 98101}}));
        // (policy, matches the attributes?, matches the body?)
        let table = [
            (
                json!({"store": ["example_corp"], "event": [{"anything-but": "order_cancelled"}],
                       "customer_interests": ["rugby", "football", "baseball"],
                       "price_usd": [{"numeric": [">=", 100]}]}),
                true,
                true,
            ),
            (
                json!({"customer_interests": ["rugby", "tennis"]}),
                true,
                true,
            ),
            (json!({"customer_interests": ["baseball"]}), false, false),
            (
                json!({"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}),
                true,
                true,
            ),
            (
                json!({"event": [{"anything-but": {"prefix": "order"}}]}),
                false,
                false,
            ),
            (
                json!({"event": [{"anything-but": {"suffix": "_placed"}}]}),
                false,
                false,
            ),
            (
                json!({"event": [{"anything-but": {"suffix": "_cancelled"}}]}),
                true,
                true,
            ),
            (
                json!({"store": [{"anything-but": {"wildcard": "*corp"}}]}),
                false,
                false,
            ),
            (
                json!({"store": [{"anything-but": {"equals-ignore-case": "EXAMPLE_CORP"}}]}),
                false,
                false,
            ),
            (
                json!({"store": [{"equals-ignore-case": "EXAMPLE_Corp"}]}),
                true,
                true,
            ),
            (json!({"store": [{"prefix": "exa"}]}), true, true),
            (json!({"store": [{"suffix": "_corp"}]}), true, true),
            (json!({"store": [{"wildcard": "ex*_c*p"}]}), true, true),
            (json!({"store": [{"wildcard": "*shop"}]}), false, false),
            (json!({"source_ip": [{"cidr": "10.0.0.0/24"}]}), true, true),
            (
                json!({"source_ip": [{"cidr": "10.1.0.0/16"}]}),
                false,
                false,
            ),
            (
                json!({"price_usd": [{"numeric": [">", 0, "<=", 250]}]}),
                true,
                true,
            ),
            (
                json!({"price_usd": [{"numeric": ["<", 200]}]}),
                false,
                false,
            ),
            (
                json!({"price_usd": [{"numeric": ["=", 210.75]}]}),
                true,
                true,
            ),
            (json!({"price_usd": [210.75]}), true, true),
            // A string that looks like a number is not a number.
            (json!({"store": [{"numeric": [">", 0]}]}), false, false),
            (json!({"store": [{"exists": true}]}), true, true),
            (json!({"coupon": [{"exists": true}]}), false, false),
            (json!({"coupon": [{"exists": false}]}), true, true),
            (json!({"note": [{"exists": true}]}), false, false),
            (json!({"missing": [{"exists": false}]}), true, true),
            // Binary attributes are not filtered on.
            (json!({"thumbnail": [{"exists": true}]}), false, false),
            (json!({"gift": [true]}), false, true),
            (json!({"coupon": [null]}), false, true),
            (json!({"delivery": {"city": ["Seattle"]}}), false, true),
            (
                json!({"delivery": {"zip": [{"numeric": [">=", 98000, "<", 99000]}]}}),
                false,
                true,
            ),
        ];
        for (policy, on_attributes, on_body) in table {
            let p = FilterPolicy::parse(&policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
            assert_eq!(
                p.matches(&attributes),
                on_attributes,
                "attributes: {policy}"
            );
            assert_eq!(p.matches(&body), on_body, "body: {policy}");
        }
        // `exists: false` needs at least one attribute: an empty set matches nothing.
        let p = FilterPolicy::parse(&json!({"store": [{"exists": false}]})).unwrap();
        assert!(!p.matches(&Map::new()));
    }

    #[test]
    fn attribute_types_follow_sns() {
        assert_eq!(attribute_value("Number", "3.015e2"), Some(json!(301.5)));
        assert_eq!(attribute_value("Number.float", "1"), Some(json!(1.0)));
        assert_eq!(
            attribute_value("String.Array", "[\"a\", 1]"),
            Some(json!(["a", 1]))
        );
        assert_eq!(attribute_value("String.Array", "nope"), Some(json!("nope")));
        assert_eq!(attribute_value("Binary", "aGk="), None);
        assert_eq!(attribute_value("String", "7"), Some(json!("7")));
        assert_eq!(base_data_type("Custom"), None);
    }

    #[test]
    fn wildcards_and_cidrs() {
        let w = |p: &str, t: &str| Wildcard::parse(p).unwrap().matches(t);
        assert!(w("*", ""));
        assert!(w("a*c", "abbbc"));
        assert!(w("*.png", "dir/x.png"));
        assert!(!w("*.png", "x.png.txt"));
        assert!(w("a\\*b", "a*b"));
        assert!(!w("a\\*b", "axb"));
        assert!(w("*a*b*", "xxaxxbxx"));
        let c = |p: &str, ip: &str| Cidr::parse(p).unwrap().contains(ip);
        assert!(c("10.0.0.0/24", "10.0.0.255"));
        assert!(!c("10.0.0.0/24", "10.0.1.0"));
        assert!(c("0.0.0.0/0", "192.0.2.1"));
        assert!(c("2001:db8::/32", "2001:db8::1"));
        assert!(!c("2001:db8::/32", "10.0.0.1"));
        assert!(!c("10.0.0.0/8", "not an ip"));
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
            (json!({"type": [[1]]}), "`type`"),
            (json!({"ip": [{"cidr": "10.0.0.0/33"}]}), "`ip`"),
            (json!({"ip": [{"cidr": "10.0.0.0"}]}), "`ip`"),
            (json!({"w": [{"wildcard": "a**b"}]}), "`w`"),
            (
                json!({"t": [{"anything-but": {"numeric": [">", 1]}}]}),
                "`t`",
            ),
            (json!({"t": [{"anything-but": []}]}), "`t`"),
            (json!({"p": [{"numeric": [">", 2e9]}]}), "`p`"),
            (
                json!({"a": ["1"], "b": ["1"], "c": ["1"], "d": ["1"], "e": ["1"], "f": ["1"]}),
                "(top level)",
            ),
            (
                json!({"a": ["1","2","3","4","5","6"], "b": ["1","2","3","4","5"],
                       "c": ["1","2","3","4","5","6"]}),
                "(top level)",
            ),
            (json!({"$or": [{"a": ["x"]}]}), "`$or`"),
            (json!({"c": {"tier": "gold"}}), "`c.tier`"),
        ] {
            let e = FilterPolicy::parse(&policy).unwrap_err();
            assert_eq!(e.key, key, "{policy}: {e}");
        }
    }
}
