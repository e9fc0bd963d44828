//! Choice rules: comparisons of a `Variable` against a literal or another path (`…Path`
//! operators), type tests (`IsNull`, `IsPresent`, …), `StringMatches` and the `And`/`Or`/`Not`
//! combinators. A comparison of a value of another type is false, never an error; a
//! `Variable` that names nothing (outside `IsPresent`) is a `States.Runtime` error.

use serde_json::Value;

use crate::path::Path;
use crate::{Diagnostic, Failure, errors};

/// A rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// All of them.
    And(Vec<Rule>),
    /// Any of them.
    Or(Vec<Rule>),
    /// Not it.
    Not(Box<Rule>),
    /// A test of one variable.
    Test {
        /// The value tested.
        variable: Path,
        /// The test.
        test: Test,
    },
}

/// A test of a variable.
#[derive(Debug, Clone)]
pub enum Test {
    /// `String…`, `Numeric…`, `Boolean…`, `Timestamp…` comparisons.
    Compare {
        /// What kind of values compare.
        kind: Kind,
        /// How.
        op: Op,
        /// Against what.
        operand: Operand,
    },
    /// `StringMatches` with a `*` wildcard pattern.
    Matches(String),
    /// `IsNull`, `IsPresent`, … and the expected answer.
    Is(Type, bool),
}

/// The value kinds comparisons are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

/// The comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
}

/// What a comparison compares against.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A literal of the comparison's kind.
    Literal(Value),
    /// Another path (the `…Path` operators).
    Path(Path),
}

/// The type tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Type {
    Null,
    Present,
    Numeric,
    String,
    Boolean,
    Timestamp,
}

const COMBINATORS: [&str; 3] = ["And", "Or", "Not"];

impl Rule {
    /// Compiles a rule object; `top` says whether it is one of `Choices` (which must have a
    /// `Next`, handled by the caller) or nested (which must not).
    pub fn compile(value: &Value, location: &str, top: bool) -> Result<Rule, Diagnostic> {
        let Some(map) = value.as_object() else {
            return Err(Diagnostic::schema(
                location,
                "A choice rule must be an object",
            ));
        };
        let at = |field: &str| format!("{location}/{field}");
        for key in map.keys() {
            let known = key == "Variable"
                || key == "Comment"
                || (top && key == "Next")
                || COMBINATORS.contains(&key.as_str())
                || operator(key).is_some();
            if !known {
                let message = if key == "Next" {
                    "A nested choice rule cannot have 'Next'".to_owned()
                } else {
                    format!("Field '{key}' is not supported in a choice rule")
                };
                return Err(Diagnostic::schema(at(key), message));
            }
        }
        let combinators: Vec<&str> = COMBINATORS
            .into_iter()
            .filter(|c| map.contains_key(*c))
            .collect();
        let operators: Vec<&String> = map.keys().filter(|k| operator(k).is_some()).collect();
        match (combinators.as_slice(), operators.as_slice()) {
            ([combinator], []) => {
                if map.contains_key("Variable") {
                    return Err(Diagnostic::schema(
                        at("Variable"),
                        format!("'{combinator}' takes no 'Variable'"),
                    ));
                }
                let value = &map[*combinator];
                if *combinator == "Not" {
                    return Ok(Rule::Not(Box::new(Rule::compile(
                        value,
                        &at("Not"),
                        false,
                    )?)));
                }
                let Some(items) = value.as_array().filter(|a| !a.is_empty()) else {
                    return Err(Diagnostic::schema(
                        at(combinator),
                        format!("'{combinator}' takes a non-empty array of rules"),
                    ));
                };
                let rules = items
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Rule::compile(r, &format!("{}/{i}", at(combinator)), false))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if *combinator == "And" {
                    Rule::And(rules)
                } else {
                    Rule::Or(rules)
                })
            }
            ([], [name]) => {
                let variable = map.get("Variable").and_then(Value::as_str).ok_or_else(|| {
                    Diagnostic::schema(
                        at("Variable"),
                        "A comparison needs a 'Variable' (a string path)",
                    )
                })?;
                let variable =
                    Path::parse(variable).map_err(|e| Diagnostic::schema(at("Variable"), e))?;
                let test = compile_test(name, &map[name.as_str()], &at(name))?;
                Ok(Rule::Test { variable, test })
            }
            ([], []) => Err(Diagnostic::schema(
                location,
                "A choice rule needs a comparison operator or And, Or or Not",
            )),
            _ => Err(Diagnostic::schema(
                location,
                "A choice rule has exactly one comparison operator or combinator",
            )),
        }
    }

    /// Whether the rule holds for `input`.
    pub fn eval(&self, input: &Value, context: &Value) -> Result<bool, Failure> {
        Ok(match self {
            Rule::And(rules) => {
                for rule in rules {
                    if !rule.eval(input, context)? {
                        return Ok(false);
                    }
                }
                true
            }
            Rule::Or(rules) => {
                for rule in rules {
                    if rule.eval(input, context)? {
                        return Ok(true);
                    }
                }
                false
            }
            Rule::Not(rule) => !rule.eval(input, context)?,
            Rule::Test { variable, test } => {
                let value = variable.select(input, context);
                if let Test::Is(Type::Present, expected) = test {
                    return Ok(value.is_some() == *expected);
                }
                let value = value.ok_or_else(|| invalid_path(variable))?;
                match test {
                    Test::Is(t, expected) => is(*t, &value) == *expected,
                    Test::Matches(pattern) => value.as_str().is_some_and(|s| matches(pattern, s)),
                    Test::Compare { kind, op, operand } => {
                        let other = match operand {
                            Operand::Literal(v) => v.clone(),
                            Operand::Path(p) => {
                                p.select(input, context).ok_or_else(|| invalid_path(p))?
                            }
                        };
                        compare(*kind, &value, &other).is_some_and(|ord| holds(*op, ord))
                    }
                }
            }
        })
    }
}

fn invalid_path(path: &Path) -> Failure {
    Failure::new(
        errors::RUNTIME,
        format!(
            "Invalid path '{path}': The choice state's condition path references an invalid value."
        ),
    )
}

/// `(kind, op, takes a path)` for an operator name, or the type test.
fn operator(name: &str) -> Option<Result<(Kind, Op, bool), Type>> {
    let types = [
        ("IsNull", Type::Null),
        ("IsPresent", Type::Present),
        ("IsNumeric", Type::Numeric),
        ("IsString", Type::String),
        ("IsBoolean", Type::Boolean),
        ("IsTimestamp", Type::Timestamp),
    ];
    if let Some((_, t)) = types.iter().find(|(n, _)| *n == name) {
        return Some(Err(*t));
    }
    if name == "StringMatches" {
        return Some(Ok((Kind::String, Op::Equals, false)));
    }
    let (name, path) = match name.strip_suffix("Path") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let (kind, rest) = [
        ("String", Kind::String),
        ("Numeric", Kind::Numeric),
        ("Boolean", Kind::Boolean),
        ("Timestamp", Kind::Timestamp),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| name.strip_prefix(prefix).map(|rest| (kind, rest)))?;
    let op = match rest {
        "Equals" => Op::Equals,
        "LessThan" => Op::LessThan,
        "GreaterThan" => Op::GreaterThan,
        "LessThanEquals" => Op::LessThanEquals,
        "GreaterThanEquals" => Op::GreaterThanEquals,
        _ => return None,
    };
    if kind == Kind::Boolean && op != Op::Equals {
        return None;
    }
    Some(Ok((kind, op, path)))
}

fn compile_test(name: &str, value: &Value, location: &str) -> Result<Test, Diagnostic> {
    let wrong = |expected: &str| Diagnostic::schema(location, format!("'{name}' takes {expected}"));
    match operator(name).ok_or_else(|| wrong("nothing: it is not an operator"))? {
        Err(t) => value
            .as_bool()
            .map(|b| Test::Is(t, b))
            .ok_or_else(|| wrong("a boolean")),
        Ok(_) if name == "StringMatches" => value
            .as_str()
            .map(|s| Test::Matches(s.to_owned()))
            .ok_or_else(|| wrong("a string pattern")),
        Ok((kind, op, true)) => {
            let path = value.as_str().ok_or_else(|| wrong("a path"))?;
            let path = Path::parse(path).map_err(|e| Diagnostic::schema(location, e))?;
            Ok(Test::Compare {
                kind,
                op,
                operand: Operand::Path(path),
            })
        }
        Ok((kind, op, false)) => {
            let fits = match kind {
                Kind::String => value.is_string(),
                Kind::Numeric => value.is_number(),
                Kind::Boolean => value.is_boolean(),
                Kind::Timestamp => value.as_str().is_some_and(|s| timestamp(s).is_some()),
            };
            if !fits {
                return Err(wrong(match kind {
                    Kind::String => "a string",
                    Kind::Numeric => "a number",
                    Kind::Boolean => "a boolean",
                    Kind::Timestamp => "an RFC 3339 timestamp string",
                }));
            }
            Ok(Test::Compare {
                kind,
                op,
                operand: Operand::Literal(value.clone()),
            })
        }
    }
}

/// Parses an RFC 3339 timestamp as the States Language takes them.
pub fn timestamp(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

fn is(t: Type, value: &Value) -> bool {
    match t {
        Type::Null => value.is_null(),
        Type::Present => true,
        Type::Numeric => value.is_number(),
        Type::String => value.is_string(),
        Type::Boolean => value.is_boolean(),
        Type::Timestamp => value.as_str().is_some_and(|s| timestamp(s).is_some()),
    }
}

fn compare(kind: Kind, a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match kind {
        Kind::String => Some(a.as_str()?.cmp(b.as_str()?)),
        Kind::Numeric => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        },
        Kind::Boolean => (a.as_bool()? == b.as_bool()?).then_some(std::cmp::Ordering::Equal),
        Kind::Timestamp => Some(timestamp(a.as_str()?)?.cmp(&timestamp(b.as_str()?)?)),
    }
}

fn holds(op: Op, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Equals => ord == Equal,
        Op::LessThan => ord == Less,
        Op::GreaterThan => ord == Greater,
        Op::LessThanEquals => ord != Greater,
        Op::GreaterThanEquals => ord != Less,
    }
}

/// `StringMatches`: `*` stands for any run of characters; `\*` and `\\` are a literal star
/// and backslash.
fn matches(pattern: &str, text: &str) -> bool {
    // The pattern as literal pieces between unescaped stars.
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => piece.push(chars.next().unwrap_or('\\')),
            '*' => pieces.push(std::mem::take(&mut piece)),
            c => piece.push(c),
        }
    }
    pieces.push(piece);
    let (first, rest) = pieces.split_first().expect("at least one piece");
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for piece in middle {
        match remaining.find(piece.as_str()) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: Value, input: Value) -> Result<bool, Failure> {
        Rule::compile(&rule, "/States/C/Choices/0", true)
            .unwrap()
            .eval(&input, &json!({}))
    }

    #[test]
    fn the_guide_examples() {
        let rule =
            json!({"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"});
        assert!(holds(rule.clone(), json!({"type": "Public"})).unwrap());
        assert!(!holds(rule, json!({"type": "Private"})).unwrap());
        let range = json!({"And": [
            {"Variable": "$.value", "NumericGreaterThanEquals": 20},
            {"Variable": "$.value", "NumericLessThan": 30}
        ], "Next": "ValueInTwenties"});
        assert!(holds(range.clone(), json!({"value": 20})).unwrap());
        assert!(holds(range.clone(), json!({"value": 29.5})).unwrap());
        assert!(!holds(range, json!({"value": 30})).unwrap());
        let ts = json!({"Variable": "$.rating", "TimestampLessThan": "2016-03-14T01:59:00Z"});
        assert!(holds(ts.clone(), json!({"rating": "2016-03-14T01:58:00Z"})).unwrap());
        assert!(!holds(ts.clone(), json!({"rating": "2016-03-14T01:59:00Z"})).unwrap());
        assert!(
            !holds(ts, json!({"rating": "yesterday"})).unwrap(),
            "not a timestamp: false, not an error"
        );
        let present = json!({"And": [
            {"Variable": "$.value", "IsPresent": true},
            {"Variable": "$.value", "IsNumeric": true},
            {"Variable": "$.value", "NumericGreaterThan": 10}
        ]});
        assert!(
            !holds(present.clone(), json!({})).unwrap(),
            "IsPresent short-circuits the rest"
        );
        assert!(!holds(present.clone(), json!({"value": "11"})).unwrap());
        assert!(holds(present, json!({"value": 11})).unwrap());
    }

    #[test]
    fn every_operator_with_literals_and_paths() {
        let input = json!({"s": "b", "n": 2, "t": true, "ts": "2020-01-01T00:00:00Z", "z": null,
                           "other": {"s": "c", "n": 2.0, "t": true, "ts": "2021-01-01T00:00:00+01:00"}});
        let cases = [
            (json!({"Variable": "$.s", "StringEquals": "b"}), true),
            (json!({"Variable": "$.s", "StringLessThan": "c"}), true),
            (json!({"Variable": "$.s", "StringGreaterThan": "c"}), false),
            (
                json!({"Variable": "$.s", "StringLessThanEquals": "b"}),
                true,
            ),
            (
                json!({"Variable": "$.s", "StringGreaterThanEquals": "a"}),
                true,
            ),
            (
                json!({"Variable": "$.s", "StringLessThanPath": "$.other.s"}),
                true,
            ),
            (json!({"Variable": "$.n", "NumericEquals": 2}), true),
            (
                json!({"Variable": "$.n", "NumericEqualsPath": "$.other.n"}),
                true,
            ),
            (json!({"Variable": "$.n", "NumericLessThan": 1.5}), false),
            (
                json!({"Variable": "$.n", "NumericGreaterThanPath": "$.other.n"}),
                false,
            ),
            (
                json!({"Variable": "$.n", "NumericLessThanEqualsPath": "$.other.n"}),
                true,
            ),
            (json!({"Variable": "$.s", "NumericEquals": 2}), false),
            (json!({"Variable": "$.t", "BooleanEquals": true}), true),
            (
                json!({"Variable": "$.t", "BooleanEqualsPath": "$.other.t"}),
                true,
            ),
            (
                json!({"Variable": "$.ts", "TimestampEquals": "2020-01-01T01:00:00+01:00"}),
                true,
            ),
            (
                json!({"Variable": "$.ts", "TimestampGreaterThanPath": "$.other.ts"}),
                false,
            ),
            (
                json!({"Variable": "$.ts", "TimestampLessThanEqualsPath": "$.other.ts"}),
                true,
            ),
            (json!({"Variable": "$.z", "IsNull": true}), true),
            (json!({"Variable": "$.s", "IsNull": false}), true),
            (json!({"Variable": "$.missing", "IsPresent": false}), true),
            (json!({"Variable": "$.n", "IsNumeric": true}), true),
            (json!({"Variable": "$.s", "IsString": true}), true),
            (json!({"Variable": "$.t", "IsBoolean": true}), true),
            (json!({"Variable": "$.ts", "IsTimestamp": true}), true),
            (json!({"Variable": "$.s", "IsTimestamp": true}), false),
            (
                json!({"Or": [{"Variable": "$.n", "NumericEquals": 9}, {"Variable": "$.s", "StringEquals": "b"}]}),
                true,
            ),
        ];
        for (rule, expected) in cases {
            assert_eq!(
                holds(rule.clone(), input.clone()).unwrap(),
                expected,
                "{rule}"
            );
        }
    }

    #[test]
    fn string_matches_wildcards_and_escapes() {
        for (pattern, text, expected) in [
            ("log-*.txt", "log-2024.txt", true),
            ("log-*.txt", "log-.txt", true),
            ("log-*.txt", "log-1.csv", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("*ab", "ab", true),
            ("ab*ab", "ab", false),
            (r"a\*", "a*", true),
            (r"a\*", "ab", false),
            (r"a\\*", r"a\anything", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn a_missing_variable_is_a_runtime_error() {
        let f = holds(
            json!({"Variable": "$.nope", "StringEquals": "x"}),
            json!({}),
        )
        .unwrap_err();
        assert_eq!(f.error, errors::RUNTIME);
        assert!(f.cause.unwrap().contains("Invalid path '$.nope'"));
        let f = holds(
            json!({"Variable": "$.s", "StringEqualsPath": "$.nope"}),
            json!({"s": "x"}),
        )
        .unwrap_err();
        assert_eq!(f.error, errors::RUNTIME);
    }

    #[test]
    fn malformed_rules_are_located() {
        let err = |rule: Value| Rule::compile(&rule, "/C", true).unwrap_err();
        assert_eq!(
            err(json!({"Variable": "$.a", "NumericEquals": "1"})).location,
            "/C/NumericEquals"
        );
        assert_eq!(
            err(json!({"Variable": "$.a", "StringEqualz": "1"})).location,
            "/C/StringEqualz"
        );
        assert!(
            err(json!({"Variable": "$.a"}))
                .message
                .contains("needs a comparison")
        );
        assert!(
            err(json!({"Variable": "$.a", "IsNull": true, "IsString": true}))
                .message
                .contains("exactly one")
        );
        assert_eq!(
            err(json!({"And": [{"Variable": "$.a", "IsNull": true, "Next": "X"}]})).location,
            "/C/And/0/Next"
        );
        assert!(err(json!({"And": []})).message.contains("non-empty"));
        assert!(
            err(json!({"Variable": "$.a", "TimestampEquals": "noon"}))
                .message
                .contains("RFC 3339")
        );
        assert!(
            err(json!({"Variable": "a", "IsNull": true}))
                .message
                .contains("starts with '$'")
        );
        assert!(
            err(json!({"Variable": "$.a", "BooleanLessThan": true}))
                .message
                .contains("not supported")
        );
    }
}
