//! Paths: the JSONPath expressions of the States Language.
//!
//! A *reference path* (`$`, `$.a.b`, `$['a b'][0]`) names one node; it is what `ResultPath`
//! and a Choice rule's `Variable` take, and what a path selects as the value itself. Any other
//! path (`$.items[*].id`, `$..price`, `$.a[?(@.n > 1)]`) is a query, answered as an array of
//! what it matched (as the Jayway implementation AWS uses does for indefinite paths). A path
//! that starts with `$$` reads the context object instead of the input.

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

/// A parsed path.
#[derive(Debug, Clone)]
pub struct Path {
    text: String,
    context: bool,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Reference(Vec<Segment>),
    Query(JsonPath),
}

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member.
    Field(String),
    /// An array element.
    Index(usize),
}

impl Path {
    /// Parses any path: a reference path or a JSONPath query; `$$…` reads the context object.
    pub fn parse(text: &str) -> Result<Path, String> {
        let (context, body) = split_root(text)?;
        let kind = match reference(&body) {
            Some(segments) => Kind::Reference(segments),
            None => Kind::Query(
                JsonPath::parse(&body)
                    .map_err(|e| format!("'{text}' is not a valid JSONPath: {e}"))?,
            ),
        };
        Ok(Path {
            text: text.to_owned(),
            context,
            kind,
        })
    }

    /// Parses a reference path (one node, no wildcard, filter or descent), as `ResultPath`
    /// and Choice `Variable`s require.
    pub fn reference(text: &str) -> Result<Path, String> {
        let path = Path::parse(text)?;
        match path.kind {
            Kind::Reference(_) => Ok(path),
            Kind::Query(_) => Err(format!(
                "'{text}' is not a reference path (only fields and indexes, like $.a.b[0])"
            )),
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it reads the context object (`$$…`).
    pub fn is_context(&self) -> bool {
        self.context
    }

    /// The reference path's segments (`None` for a query).
    pub fn segments(&self) -> Option<&[Segment]> {
        match &self.kind {
            Kind::Reference(s) => Some(s),
            Kind::Query(_) => None,
        }
    }

    /// What the path selects: the node a reference path names (`None` when it is absent), or
    /// the array of a query's matches.
    pub fn select(&self, input: &Value, context: &Value) -> Option<Value> {
        let root = if self.context { context } else { input };
        match &self.kind {
            Kind::Reference(segments) => lookup(root, segments).cloned(),
            Kind::Query(query) => Some(Value::Array(
                query.query(root).all().into_iter().cloned().collect(),
            )),
        }
    }

    /// `target` with `value` placed where this reference path points: `$` replaces it whole;
    /// missing objects on the way are created. Fails (as `States.ResultPathMatchFailure`)
    /// when the way crosses something that is not an object, or an index past an array's end.
    pub fn put(&self, target: Value, value: Value) -> Result<Value, String> {
        let Kind::Reference(segments) = &self.kind else {
            return Err(format!("'{}' is not a reference path", self.text));
        };
        let mut target = target;
        let mut slot = &mut target;
        for segment in segments {
            let fits = match (segment, &*slot) {
                (Segment::Field(_), Value::Object(_) | Value::Null) => true,
                (Segment::Index(i), Value::Array(items)) => *i < items.len(),
                _ => false,
            };
            if !fits {
                let what = match segment {
                    Segment::Field(name) => format!("'{name}' cannot be set in"),
                    Segment::Index(i) => format!("no element {i} in"),
                };
                return Err(format!(
                    "Unable to apply ResultPath '{}': {what} a {}",
                    self.text,
                    kind_of(slot)
                ));
            }
            slot = match segment {
                Segment::Field(name) => {
                    if slot.is_null() {
                        *slot = Value::Object(Map::new());
                    }
                    let map = slot.as_object_mut().expect("an object, checked above");
                    map.entry(name.clone()).or_insert(Value::Null)
                }
                Segment::Index(i) => &mut slot[*i],
            };
        }
        *slot = value;
        Ok(target)
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The JSON type name of a value, as errors print it.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn lookup<'v>(mut node: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    for segment in segments {
        node = match segment {
            Segment::Field(name) => node.as_object()?.get(name)?,
            Segment::Index(i) => node.as_array()?.get(*i)?,
        };
    }
    Some(node)
}

/// Splits `$$…` (context) from `$…` (input); the body always starts with a single `$`.
fn split_root(text: &str) -> Result<(bool, String), String> {
    if let Some(rest) = text.strip_prefix("$$") {
        Ok((true, format!("${rest}")))
    } else if text.starts_with('$') {
        Ok((false, text.to_owned()))
    } else {
        Err(format!(
            "'{text}' is not a JSONPath: a path starts with '$'"
        ))
    }
}

/// The segments of `body` if it is a reference path; `None` if it needs the query engine.
fn reference(body: &str) -> Option<Vec<Segment>> {
    let mut chars = body.strip_prefix('$')?.chars().peekable();
    let mut segments = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    if matches!(c, '*' | '@' | '?' | '(' | ')' | ',' | ':' | '\'' | '"')
                        || c.is_whitespace()
                    {
                        return None;
                    }
                    name.push(c);
                    chars.next();
                }
                if name.is_empty() {
                    return None; // `..` (descent) or a trailing dot
                }
                segments.push(Segment::Field(name));
            }
            '[' => {
                let mut inner = String::new();
                let mut quote = None;
                loop {
                    let c = chars.next()?;
                    match quote {
                        Some(q) if c == q => quote = None,
                        Some(_) if c == '\\' => {
                            inner.push(c);
                            inner.push(chars.next()?);
                            continue;
                        }
                        Some(_) => {}
                        None if c == ']' => break,
                        None if c == '\'' || c == '"' => quote = Some(c),
                        None => {}
                    }
                    inner.push(c);
                }
                segments.push(bracket(&inner)?);
            }
            _ => return None,
        }
    }
    Some(segments)
}

fn bracket(inner: &str) -> Option<Segment> {
    let inner = inner.trim();
    if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
        return inner.parse().ok().map(Segment::Index);
    }
    let quote = inner.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = inner.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut name = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => name.push(chars.next()?),
            c if c == quote => return None, // two names: a union
            c => name.push(c),
        }
    }
    Some(Segment::Field(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn select(path: &str, input: Value) -> Option<Value> {
        Path::parse(path)
            .unwrap()
            .select(&input, &json!({"Execution": {"Id": "x"}}))
    }

    #[test]
    fn reference_paths_select_the_node_itself() {
        let input = json!({"a": {"b": [10, {"c d": 3}]}, "e": null});
        assert_eq!(select("$", input.clone()), Some(input.clone()));
        assert_eq!(select("$.a.b[0]", input.clone()), Some(json!(10)));
        assert_eq!(select("$.a.b[1]['c d']", input.clone()), Some(json!(3)));
        assert_eq!(select("$['a'][\"b\"][0]", input.clone()), Some(json!(10)));
        assert_eq!(select("$.e", input.clone()), Some(Value::Null));
        assert_eq!(select("$.missing", input.clone()), None);
        assert_eq!(select("$.a.b[7]", input.clone()), None);
        assert_eq!(select("$.a.b.c", input), None);
        assert_eq!(select("$$.Execution.Id", json!({})), Some(json!("x")));
        assert!(Path::parse("$$.Execution.Id").unwrap().is_context());
    }

    #[test]
    fn queries_answer_an_array_of_matches() {
        let input = json!({"items": [{"id": 1, "n": 5}, {"id": 2, "n": 0}], "x": {"price": 3}});
        assert_eq!(select("$.items[*].id", input.clone()), Some(json!([1, 2])));
        assert_eq!(
            select("$.items[?(@.n > 1)].id", input.clone()),
            Some(json!([1]))
        );
        assert_eq!(select("$..price", input.clone()), Some(json!([3])));
        assert_eq!(
            select("$.items[0:1]", input.clone()),
            Some(json!([{"id": 1, "n": 5}]))
        );
        assert_eq!(select("$.nothing[*]", input), Some(json!([])));
    }

    #[test]
    fn bad_paths_are_refused_with_the_path_named() {
        let e = Path::parse("a.b").unwrap_err();
        assert!(e.contains("'a.b'"), "{e}");
        assert!(Path::parse("$.a[").is_err());
        let e = Path::reference("$.a[*]").unwrap_err();
        assert!(e.contains("not a reference path"), "{e}");
        assert!(Path::reference("$..a").is_err());
        assert!(Path::reference("$.a.b[2]").is_ok());
    }

    #[test]
    fn put_places_a_value_creating_objects_on_the_way() {
        let path = Path::reference("$.result.value").unwrap();
        assert_eq!(
            path.put(json!({"in": 1}), json!(42)).unwrap(),
            json!({"in": 1, "result": {"value": 42}})
        );
        let root = Path::reference("$").unwrap();
        assert_eq!(
            root.put(json!({"in": 1}), json!("all")).unwrap(),
            json!("all")
        );
        let index = Path::reference("$.list[1]").unwrap();
        assert_eq!(
            index.put(json!({"list": [0, 0]}), json!(5)).unwrap(),
            json!({"list": [0, 5]})
        );
        let e = index.put(json!({"list": [0]}), json!(5)).unwrap_err();
        assert!(e.contains("no element 1"), "{e}");
        let e = path.put(json!({"result": "text"}), json!(1)).unwrap_err();
        assert!(e.contains("string"), "{e}");
        let e = path.put(json!([1]), json!(1)).unwrap_err();
        assert!(e.contains("array"), "{e}");
    }
}
