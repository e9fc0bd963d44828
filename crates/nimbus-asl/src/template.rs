//! Payload templates: `Parameters`, `ResultSelector` and `ItemSelector`. A field whose name
//! ends in `.$` takes its value from a path or an intrinsic call (and loses the suffix); every
//! other field is copied as written, objects and arrays templated all the way down.

use rand::RngCore;
use serde_json::{Map, Value};

use crate::intrinsic::{self, Call};
use crate::path::Path;
use crate::{Diagnostic, Failure, errors};

/// A compiled payload template.
#[derive(Debug, Clone)]
pub enum Template {
    /// A value with no `.$` field anywhere in it.
    Literal(Value),
    /// An object with at least one templated field somewhere.
    Object(Vec<(String, Field)>),
    /// An array with a templated object somewhere in it.
    Array(Vec<Template>),
}

/// One field of a templated object.
#[derive(Debug, Clone)]
pub enum Field {
    /// Written out (templated itself if it holds objects).
    Plain(Template),
    /// `name.$: "$.path"`.
    Path(Path),
    /// `name.$: "States.Format(…)"`.
    Call(Call),
}

impl Template {
    /// Compiles a template; `location` is its JSON pointer in the definition.
    pub fn compile(value: &Value, location: &str) -> Result<Template, Diagnostic> {
        if !has_dynamic(value) {
            return Ok(Template::Literal(value.clone()));
        }
        match value {
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (key, value) in map {
                    let at = format!("{location}/{}", key.replace('~', "~0").replace('/', "~1"));
                    let Some(name) = key.strip_suffix(".$") else {
                        fields.push((key.clone(), Field::Plain(Template::compile(value, &at)?)));
                        continue;
                    };
                    let Some(text) = value.as_str() else {
                        return Err(Diagnostic::schema(
                            at,
                            format!(
                                "The value for the field '{key}' must be a STRING that contains a JSONPath or an intrinsic function, not a {}",
                                crate::path::kind_of(value)
                            ),
                        ));
                    };
                    let field = if intrinsic::is_call(text) {
                        Field::Call(Call::parse(text).map_err(|e| Diagnostic::schema(&at, e))?)
                    } else {
                        Field::Path(Path::parse(text).map_err(|e| Diagnostic::schema(&at, e))?)
                    };
                    fields.push((name.to_owned(), field));
                }
                Ok(Template::Object(fields))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Template::compile(item, &format!("{location}/{i}")))
                .collect::<Result<_, _>>()
                .map(Template::Array),
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// The payload for `input`: a path that finds nothing fails with
    /// `States.ParameterPathFailure`, an intrinsic with `States.IntrinsicFailure`.
    pub fn render(
        &self,
        input: &Value,
        context: &Value,
        rng: &mut dyn RngCore,
    ) -> Result<Value, Failure> {
        match self {
            Template::Literal(value) => Ok(value.clone()),
            Template::Array(items) => items
                .iter()
                .map(|t| t.render(input, context, rng))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Template::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (name, field) in fields {
                    let value = match field {
                        Field::Plain(t) => t.render(input, context, rng)?,
                        Field::Path(path) => path.select(input, context).ok_or_else(|| {
                            let source = if path.is_context() { context } else { input };
                            Failure::new(
                                errors::PARAMETER_PATH_FAILURE,
                                format!(
                                    "The JSONPath '{path}' specified for the field '{name}.$' could not be found in the input '{source}'"
                                ),
                            )
                        })?,
                        Field::Call(call) => call
                            .eval(input, context, rng)
                            .map_err(|e| Failure::new(errors::INTRINSIC_FAILURE, e))?,
                    };
                    out.insert(name.clone(), value);
                }
                Ok(Value::Object(out))
            }
        }
    }
}

fn has_dynamic(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| k.ends_with(".$") || has_dynamic(v)),
        Value::Array(items) => items.iter().any(has_dynamic),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};
    use serde_json::json;

    fn render(template: Value, input: Value) -> Result<Value, Failure> {
        Template::compile(&template, "/States/S/Parameters")
            .unwrap()
            .render(
                &input,
                &json!({"Execution": {"Id": "arn:x"}}),
                &mut StdRng::seed_from_u64(1),
            )
    }

    #[test]
    fn the_guide_example_of_parameters() {
        let template = json!({
            "comment": "Example for Parameters.",
            "product": {
                "details": {"color": "blue", "size": "small", "material": "cotton"},
                "availability": "in stock",
                "sku": "2317",
                "cost": "$23"
            },
            "product.$": "$.product",
            "execution.$": "$$.Execution.Id",
            "items": [{"id.$": "$.id"}, 7]
        });
        let out = render(template, json!({"product": "shirt", "id": 3})).unwrap();
        assert_eq!(out["execution"], json!("arn:x"));
        assert_eq!(out["items"], json!([{"id": 3}, 7]));
        assert_eq!(out["comment"], json!("Example for Parameters."));
        assert_eq!(
            out["product"],
            json!("shirt"),
            "the .$ field wins over the literal of the same name"
        );
    }

    #[test]
    fn failures_carry_the_documented_names() {
        let f = render(json!({"x.$": "$.missing"}), json!({"a": 1})).unwrap_err();
        assert_eq!(f.error, errors::PARAMETER_PATH_FAILURE);
        assert!(
            f.cause
                .unwrap()
                .contains("'$.missing' specified for the field 'x.$'")
        );
        let f = render(
            json!({"x.$": "States.ArrayGetItem($.a, 3)"}),
            json!({"a": [1]}),
        )
        .unwrap_err();
        assert_eq!(f.error, errors::INTRINSIC_FAILURE);
        let d = Template::compile(&json!({"deep": {"x.$": 5}}), "/P").unwrap_err();
        assert_eq!(d.location, "/P/deep/x.$");
        assert!(d.message.contains("must be a STRING"));
        let d = Template::compile(&json!({"x.$": "States.Nope()"}), "/P").unwrap_err();
        assert!(d.message.contains("unknown function"));
        assert!(Template::compile(&json!({"x.$": "nope"}), "/P").is_err());
    }
}
