//! Intrinsic functions: `States.Format('{} items', $.n)` and the rest, parsed once when the
//! definition is, evaluated against a state's input and the context object.
//!
//! Randomness (`States.UUID`, `States.MathRandom` without a seed) comes from the caller's
//! generator, so an interpreter run is a function of its inputs; the engine journals what
//! a state produced, and a replay never evaluates it again.

use base64::Engine as _;
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use serde_json::{Map, Value};
use sha2::Digest;

use crate::path::{Path, kind_of};

/// How deep intrinsic calls may nest (the documented limit).
pub const MAX_NESTING: usize = 10;
/// The longest string `States.Base64Encode`, `States.Base64Decode` and `States.Hash` take.
pub const MAX_STRING: usize = 10_000;
/// The most elements `States.ArrayRange` makes.
pub const MAX_RANGE: usize = 1_000;

/// A parsed intrinsic call or one of its arguments.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A quoted string (`'…'`), with where `States.Format` placeholders (`{}`) stand.
    Str(Literal),
    /// A number.
    Number(serde_json::Number),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A path into the input or (`$$`) the context object.
    Path(Path),
    /// A call of another intrinsic function.
    Call(Call),
}

/// A string literal.
#[derive(Debug, Clone)]
pub struct Literal {
    text: String,
    /// Byte offsets in `text` of the unescaped `{}` pairs.
    placeholders: Vec<usize>,
}

/// A call: the function and its arguments.
#[derive(Debug, Clone)]
pub struct Call {
    function: Function,
    args: Vec<Expr>,
}

macro_rules! functions {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The intrinsic functions of the States Language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Function { $($variant),* }

        impl Function {
            /// The function by its name (`States.Format`).
            pub fn named(name: &str) -> Option<Function> {
                match name { $($name => Some(Function::$variant),)* _ => None }
            }

            /// Its name.
            pub fn name(self) -> &'static str {
                match self { $(Function::$variant => $name),* }
            }
        }
    };
}

functions! {
    Format => "States.Format",
    StringToJson => "States.StringToJson",
    JsonToString => "States.JsonToString",
    Array => "States.Array",
    ArrayPartition => "States.ArrayPartition",
    ArrayContains => "States.ArrayContains",
    ArrayRange => "States.ArrayRange",
    ArrayGetItem => "States.ArrayGetItem",
    ArrayLength => "States.ArrayLength",
    ArrayUnique => "States.ArrayUnique",
    Base64Encode => "States.Base64Encode",
    Base64Decode => "States.Base64Decode",
    Hash => "States.Hash",
    JsonMerge => "States.JsonMerge",
    MathRandom => "States.MathRandom",
    MathAdd => "States.MathAdd",
    StringSplit => "States.StringSplit",
    Uuid => "States.UUID",
}

impl Function {
    /// How many arguments it takes: (least, most).
    fn arity(self) -> (usize, usize) {
        use Function::*;
        match self {
            Format => (1, usize::MAX),
            Array => (0, usize::MAX),
            StringToJson | JsonToString | ArrayLength | ArrayUnique | Base64Encode
            | Base64Decode => (1, 1),
            ArrayPartition | ArrayContains | ArrayGetItem | Hash | MathAdd | StringSplit => (2, 2),
            ArrayRange | JsonMerge => (3, 3),
            MathRandom => (2, 3),
            Uuid => (0, 0),
        }
    }
}

/// Whether a `.$` field's value is an intrinsic call rather than a path.
pub fn is_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl Call {
    /// Parses one call, as a `.$` field holds it.
    pub fn parse(text: &str) -> Result<Call, String> {
        let mut parser = Parser { src: text, pos: 0 };
        let call = parser
            .call(1)
            .map_err(|e| format!("invalid intrinsic function '{text}': {e}"))?;
        parser.skip_space();
        if parser.pos != text.len() {
            return Err(format!(
                "invalid intrinsic function '{text}': unexpected '{}' after the call",
                &text[parser.pos..]
            ));
        }
        Ok(call)
    }

    /// The function called.
    pub fn function(&self) -> Function {
        self.function
    }

    /// Evaluates the call; an error is the message of a `States.IntrinsicFailure`.
    pub fn eval(
        &self,
        input: &Value,
        context: &Value,
        rng: &mut dyn RngCore,
    ) -> Result<Value, String> {
        let mut args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            args.push(match arg {
                Expr::Str(l) => Value::String(l.text.clone()),
                Expr::Number(n) => Value::Number(n.clone()),
                Expr::Bool(b) => Value::Bool(*b),
                Expr::Null => Value::Null,
                Expr::Path(p) => p.select(input, context).ok_or_else(|| {
                    format!(
                        "{}: the path '{p}' matches nothing in the input",
                        self.function.name()
                    )
                })?,
                Expr::Call(c) => c.eval(input, context, rng)?,
            });
        }
        self.apply(args, rng)
            .map_err(|e| format!("{}: {e}", self.function.name()))
    }

    fn apply(&self, args: Vec<Value>, rng: &mut dyn RngCore) -> Result<Value, String> {
        use Function::*;
        let arg = |i: usize| &args[i];
        Ok(match self.function {
            Format => {
                let Some(Expr::Str(template)) = self.args.first() else {
                    return Err("the first argument must be a string literal".into());
                };
                let values = &args[1..];
                if values.len() != template.placeholders.len() {
                    return Err(format!(
                        "the template has {} placeholders but {} arguments follow it",
                        template.placeholders.len(),
                        values.len()
                    ));
                }
                let mut out = String::new();
                let mut from = 0;
                for (at, value) in template.placeholders.iter().zip(values) {
                    out.push_str(&template.text[from..*at]);
                    match value {
                        Value::String(s) => out.push_str(s),
                        Value::Array(_) | Value::Object(_) => {
                            return Err(format!(
                                "an argument is a {}; only strings, numbers, booleans and null can be formatted",
                                kind_of(value)
                            ));
                        }
                        other => out.push_str(&other.to_string()),
                    }
                    from = at + 2;
                }
                out.push_str(&template.text[from..]);
                Value::String(out)
            }
            StringToJson => serde_json::from_str(string(arg(0))?)
                .map_err(|e| format!("the string is not JSON: {e}"))?,
            JsonToString => Value::String(arg(0).to_string()),
            Array => Value::Array(args),
            ArrayPartition => {
                let size = integer(arg(1))?;
                if size <= 0 {
                    return Err("the chunk size must be a positive integer".into());
                }
                Value::Array(
                    array(arg(0))?
                        .chunks(size as usize)
                        .map(|c| Value::Array(c.to_vec()))
                        .collect(),
                )
            }
            ArrayContains => Value::Bool(array(arg(0))?.contains(arg(1))),
            ArrayRange => {
                let (start, end, step) = (integer(arg(0))?, integer(arg(1))?, integer(arg(2))?);
                if step == 0 {
                    return Err("the step must not be 0".into());
                }
                let mut out = Vec::new();
                let mut n = start;
                while (step > 0 && n <= end) || (step < 0 && n >= end) {
                    if out.len() == MAX_RANGE {
                        return Err(format!("the range has more than {MAX_RANGE} elements"));
                    }
                    out.push(Value::from(n));
                    n += step;
                }
                Value::Array(out)
            }
            ArrayGetItem => {
                let index = integer(arg(1))?;
                let items = array(arg(0))?;
                usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        format!("index {index} is outside the array of {}", items.len())
                    })?
            }
            ArrayLength => Value::from(array(arg(0))?.len()),
            ArrayUnique => {
                let mut out: Vec<Value> = Vec::new();
                for item in array(arg(0))? {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            Base64Encode => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(bounded(arg(0))?))
            }
            Base64Decode => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(bounded(arg(0))?)
                    .map_err(|e| format!("the string is not base64: {e}"))?;
                Value::String(
                    String::from_utf8(bytes).map_err(|_| "the decoded bytes are not UTF-8 text")?,
                )
            }
            Hash => {
                let data = match arg(0) {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if data.chars().count() > MAX_STRING {
                    return Err(format!("the data is longer than {MAX_STRING} characters"));
                }
                let data = data.as_bytes();
                Value::String(match string(arg(1))? {
                    "MD5" => hex::encode(md5::Md5::digest(data)),
                    "SHA-1" => hex::encode(sha1::Sha1::digest(data)),
                    "SHA-256" => hex::encode(sha2::Sha256::digest(data)),
                    "SHA-384" => hex::encode(sha2::Sha384::digest(data)),
                    "SHA-512" => hex::encode(sha2::Sha512::digest(data)),
                    other => {
                        return Err(format!(
                            "unknown algorithm '{other}' (MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
                        ));
                    }
                })
            }
            JsonMerge => {
                if arg(2) != &Value::Bool(false) {
                    return Err(
                        "only a shallow merge is supported: the third argument must be false"
                            .into(),
                    );
                }
                let (Value::Object(a), Value::Object(b)) = (arg(0), arg(1)) else {
                    return Err("both arguments must be objects".into());
                };
                let mut merged: Map<String, Value> = a.clone();
                merged.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(merged)
            }
            MathRandom => {
                let (start, end) = (integer(arg(0))?, integer(arg(1))?);
                if start >= end {
                    return Err(format!("the start ({start}) must be below the end ({end})"));
                }
                match args.get(2) {
                    Some(seed) => {
                        StdRng::seed_from_u64(integer(seed)? as u64).random_range(start..end)
                    }
                    None => rng.random_range(start..end),
                }
                .into()
            }
            MathAdd => {
                let sum = integer(arg(0))?
                    .checked_add(integer(arg(1))?)
                    .ok_or("the sum overflows")?;
                Value::from(sum)
            }
            StringSplit => {
                let delimiters = string(arg(1))?;
                Value::Array(
                    string(arg(0))?
                        .split(|c| delimiters.contains(c))
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                )
            }
            Uuid => {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                Value::String(
                    uuid::Builder::from_random_bytes(bytes)
                        .into_uuid()
                        .to_string(),
                )
            }
        })
    }
}

fn string(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, got a {}", kind_of(value)))
}

fn bounded(value: &Value) -> Result<&str, String> {
    let s = string(value)?;
    if s.chars().count() > MAX_STRING {
        return Err(format!("the string is longer than {MAX_STRING} characters"));
    }
    Ok(s)
}

fn array(value: &Value) -> Result<&Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("expected an array, got a {}", kind_of(value)))
}

fn integer(value: &Value) -> Result<i64, String> {
    if let Some(i) = value.as_i64() {
        return Ok(i);
    }
    match value.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(format!("expected an integer, got {value}")),
    }
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
}

impl<'s> Parser<'s> {
    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn call(&mut self, depth: usize) -> Result<Call, String> {
        if depth > MAX_NESTING {
            return Err(format!("calls nest deeper than {MAX_NESTING}"));
        }
        self.skip_space();
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .unwrap_or(self.rest().len());
        let name = &self.rest()[..len];
        let function = Function::named(name).ok_or_else(|| format!("unknown function '{name}'"))?;
        self.pos += len;
        if !self.eat('(') {
            return Err(format!("'(' expected after {name}"));
        }
        let mut args = Vec::new();
        if !self.eat(')') {
            loop {
                args.push(self.arg(depth)?);
                if self.eat(')') {
                    break;
                }
                if !self.eat(',') {
                    return Err(format!("',' or ')' expected at '{}'", self.rest()));
                }
            }
        }
        let (least, most) = function.arity();
        if args.len() < least || args.len() > most {
            return Err(match (least, most) {
                (l, m) if l == m => format!("{name} takes {l} arguments, not {}", args.len()),
                (l, usize::MAX) => format!("{name} takes at least {l} arguments"),
                (l, m) => format!("{name} takes {l} to {m} arguments, not {}", args.len()),
            });
        }
        if function == Function::Format && !matches!(args.first(), Some(Expr::Str(_))) {
            return Err("States.Format's first argument must be a string literal".into());
        }
        Ok(Call { function, args })
    }

    fn arg(&mut self, depth: usize) -> Result<Expr, String> {
        self.skip_space();
        let rest = self.rest();
        if rest.starts_with('\'') {
            return self.literal().map(Expr::Str);
        }
        if rest.starts_with("States.") {
            return self.call(depth + 1).map(Expr::Call);
        }
        if rest.starts_with('$') {
            let len = path_len(rest);
            let path = Path::parse(rest[..len].trim_end())?;
            self.pos += len;
            return Ok(Expr::Path(path));
        }
        let len = rest.find([',', ')']).unwrap_or(rest.len());
        let word = rest[..len].trim();
        let expr = match word {
            "true" => Expr::Bool(true),
            "false" => Expr::Bool(false),
            "null" => Expr::Null,
            _ => match serde_json::from_str::<Value>(word) {
                Ok(Value::Number(n)) => Expr::Number(n),
                _ => return Err(format!("unexpected argument '{word}'")),
            },
        };
        self.pos += len;
        Ok(expr)
    }

    /// A single-quoted string: `\'`, `\\`, `\{` and `\}` escape; unescaped `{}` are
    /// placeholders.
    fn literal(&mut self) -> Result<Literal, String> {
        let mut chars = self.rest().char_indices().skip(1);
        let mut text = String::new();
        let mut placeholders = Vec::new();
        let mut open = None;
        loop {
            let Some((at, c)) = chars.next() else {
                return Err("a string is not closed with '".into());
            };
            match c {
                '\'' => {
                    self.pos += at + 1;
                    return Ok(Literal { text, placeholders });
                }
                '\\' => {
                    let (_, escaped) = chars.next().ok_or("a string ends with a lone '\\'")?;
                    text.push(escaped);
                    open = None;
                }
                '{' => {
                    open = Some(text.len());
                    text.push(c);
                }
                '}' => {
                    if let Some(start) = open.take() {
                        placeholders.push(start);
                    }
                    text.push(c);
                }
                c => {
                    text.push(c);
                    open = None;
                }
            }
        }
    }
}

/// How long the path at the start of `rest` is: up to a `,` or `)` outside brackets and quotes.
fn path_len(rest: &str) -> usize {
    let mut depth = 0usize;
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' | '(' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ')' if depth > 0 => depth -= 1,
            ',' | ')' if depth == 0 => return i,
            _ => {}
        }
    }
    rest.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(text: &str, input: Value) -> Result<Value, String> {
        let mut rng = StdRng::seed_from_u64(7);
        let call = Call::parse(text)?;
        call.eval(&input, &json!({"Execution": {"Name": "run-1"}}), &mut rng)
    }

    #[test]
    fn the_documented_examples() {
        assert_eq!(
            eval(
                "States.Format('Hello, my name is {}.', $.name)",
                json!({"name": "Arnav"})
            )
            .unwrap(),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            eval(
                "States.StringToJson($.someString)",
                json!({"someString": "{\"number\": 20}"})
            )
            .unwrap(),
            json!({"number": 20})
        );
        assert_eq!(
            eval(
                "States.JsonToString($.someJson)",
                json!({"someJson": {"name": "Foo", "year": 2020}})
            )
            .unwrap(),
            json!("{\"name\":\"Foo\",\"year\":2020}")
        );
        assert_eq!(
            eval("States.Array($.Id)", json!({"Id": 123456})).unwrap(),
            json!([123456])
        );
        assert_eq!(
            eval(
                "States.ArrayPartition($.inputArray, 4)",
                json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]})
            )
            .unwrap(),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(
            eval(
                "States.ArrayContains($.inputArray, $.lookingFor)",
                json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "lookingFor": 5})
            )
            .unwrap(),
            json!(true)
        );
        assert_eq!(
            eval("States.ArrayRange(1, 9, 2)", json!({})).unwrap(),
            json!([1, 3, 5, 7, 9])
        );
        assert_eq!(
            eval(
                "States.ArrayGetItem($.inputArray, $.index)",
                json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "index": 5})
            )
            .unwrap(),
            json!(6)
        );
        assert_eq!(
            eval(
                "States.ArrayLength($.inputArray)",
                json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]})
            )
            .unwrap(),
            json!(9)
        );
        assert_eq!(
            eval(
                "States.ArrayUnique($.inputArray)",
                json!({"inputArray": [1, 2, 3, 3, 3, 3, 3, 3, 4]})
            )
            .unwrap(),
            json!([1, 2, 3, 4])
        );
        assert_eq!(
            eval(
                "States.Base64Encode($.input)",
                json!({"input": "Data to encode"})
            )
            .unwrap(),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(
            eval(
                "States.Base64Decode($.base64)",
                json!({"base64": "RGF0YSB0byBlbmNvZGU="})
            )
            .unwrap(),
            json!("Data to encode")
        );
        assert_eq!(
            eval(
                "States.Hash($.Data, $.Algorithm)",
                json!({"Data": "input data", "Algorithm": "SHA-1"})
            )
            .unwrap(),
            json!("aaff4a450a104cd177d28d18d74485e8cae074b7")
        );
        assert_eq!(
            eval("States.JsonMerge($.json1, $.json2, false)", json!({"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}})).unwrap(),
            json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3})
        );
        assert_eq!(
            eval(
                "States.MathAdd($.value1, $.step)",
                json!({"value1": 111, "step": -1})
            )
            .unwrap(),
            json!(110)
        );
        assert_eq!(
            eval(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "1,2,3,4,5", "splitter": ","})
            )
            .unwrap(),
            json!(["1", "2", "3", "4", "5"])
        );
        assert_eq!(
            eval(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "This.is+a,test=string", "splitter": ".+,="})
            )
            .unwrap(),
            json!(["This", "is", "a", "test", "string"])
        );
    }

    #[test]
    fn nested_calls_context_paths_and_escapes() {
        let input = json!({"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:111122223333:image-recipe/recipe-1.0.1/1.0.1"}});
        // The guide's nine-deep example, with as many placeholders as arguments.
        let nested = "States.Format('{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))";
        assert_eq!(eval(nested, input).unwrap(), json!("1.0"));
        assert_eq!(
            eval("States.Format('run {}', $$.Execution.Name)", json!({})).unwrap(),
            json!("run run-1")
        );
        assert_eq!(
            eval(r"States.Format('it\'s \{\} {} \\', $.n)", json!({"n": 3})).unwrap(),
            json!(r"it's {} 3 \")
        );
        assert_eq!(
            eval(
                "States.Format('{} {} {}', $.a, true, null)",
                json!({"a": 1.5})
            )
            .unwrap(),
            json!("1.5 true null")
        );
        assert_eq!(
            eval("States.Array($['a,b'], 'x, y', 2)", json!({"a,b": 1})).unwrap(),
            json!([1, "x, y", 2])
        );
        assert_eq!(
            eval("States.ArrayLength($.l[?(@ > 1)])", json!({"l": [1, 2, 3]})).unwrap(),
            json!(2)
        );
    }

    #[test]
    fn randomness_comes_from_the_caller_or_the_seed() {
        let uuid = eval("States.UUID()", json!({})).unwrap();
        let parsed = uuid::Uuid::parse_str(uuid.as_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(
            uuid,
            eval("States.UUID()", json!({})).unwrap(),
            "same generator, same value"
        );
        let seeded = |seed: u64| {
            let call = Call::parse("States.MathRandom(1, 999, $.seed)").unwrap();
            call.eval(
                &json!({"seed": seed}),
                &json!({}),
                &mut StdRng::seed_from_u64(rand::random()),
            )
            .unwrap()
        };
        assert_eq!(seeded(42), seeded(42));
        for _ in 0..200 {
            let n = eval("States.MathRandom(1, 3)", json!({}))
                .unwrap()
                .as_i64()
                .unwrap();
            assert!((1..3).contains(&n));
        }
    }

    #[test]
    fn mistakes_are_named() {
        let parse = |t: &str| Call::parse(t).unwrap_err();
        assert!(parse("States.Nope(1)").contains("unknown function 'States.Nope'"));
        assert!(parse("States.ArrayLength()").contains("takes 1 arguments, not 0"));
        assert!(parse("States.Format($.a)").contains("string literal"));
        assert!(parse("States.Array('open)").contains("not closed"));
        assert!(parse("States.Array(1) trailing").contains("after the call"));
        let deep = format!("{}1{}", "States.Array(".repeat(11), ")".repeat(11));
        assert!(parse(&deep).contains("deeper than 10"));
        let run = |t: &str, input: Value| eval(t, input).unwrap_err();
        assert!(
            run("States.Format('{} {}', $.a)", json!({"a": 1}))
                .contains("2 placeholders but 1 arguments")
        );
        assert!(
            run("States.ArrayGetItem($.a, 5)", json!({"a": [1]})).contains("index 5 is outside")
        );
        assert!(run("States.ArrayLength($.missing)", json!({})).contains("matches nothing"));
        assert!(run("States.Hash('x', 'CRC')", json!({})).contains("unknown algorithm"));
        assert!(run("States.JsonMerge($.a, $.a, true)", json!({"a": {}})).contains("shallow"));
        assert!(run("States.StringToJson('{')", json!({})).contains("not JSON"));
        assert!(run("States.ArrayRange(0, 5000, 1)", json!({})).contains("more than 1000"));
        assert!(run("States.MathAdd(1.5, 1)", json!({})).contains("integer"));
        assert!(
            run("States.Base64Encode($.s)", json!({"s": "x".repeat(10_001)}))
                .contains("longer than")
        );
    }
}
