//! CloudEvents 1.0 over HTTP: binary and structured content modes (read with the official
//! `cloudevents-sdk`) and batch mode (`application/cloudevents-batch+json`), validated, and the
//! conversions Nimbus needs: to message attributes (`ce-*`, the binary-mode header names) and
//! back, and to the structured JSON document handed to process functions.

use cloudevents::event::{Data, ExtensionValue, SpecVersion};
use cloudevents::{AttributesReader, Event};
use http::HeaderMap;
use nimbus_core::EventAttributes;
use serde_json::{Map, Value, json};

/// Media type of batch mode.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// A validated CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    /// `id`.
    pub id: String,
    /// `source`.
    pub source: String,
    /// `type`.
    pub ty: String,
    /// `subject`.
    pub subject: Option<String>,
    /// `time` (RFC 3339).
    pub time: Option<String>,
    /// `datacontenttype`.
    pub datacontenttype: Option<String>,
    /// `dataschema`.
    pub dataschema: Option<String>,
    /// Extension attributes, as strings.
    pub extensions: Vec<(String, String)>,
    /// The extensions whose values are not strings: `integer` or `boolean`.
    pub extension_kinds: Vec<(String, ExtensionKind)>,
    /// The data.
    pub data: Vec<u8>,
    /// The data was a JSON string in structured mode: it stays a string when delivered as
    /// JSON, even if its text would parse as a number or an object.
    pub data_is_string: bool,
}

/// The type of a non-string extension attribute (the CloudEvents type system's Integer and
/// Boolean), kept so deliveries give it back as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionKind {
    /// A JSON integer.
    Integer,
    /// `true` / `false`.
    Boolean,
}

impl ExtensionKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Integer => "integer",
            Self::Boolean => "boolean",
        }
    }
}

/// Message attribute of a non-string extension's kind (`cetype-NAME`); not a `ce-` header.
const KIND_PREFIX: &str = "cetype-";
/// Message attribute marking string data (`cedata: string`).
const DATA_KIND: &str = "cedata";

/// Why a request does not hold valid CloudEvents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    /// Not a CloudEvent, or one missing a required attribute.
    #[error("not a valid CloudEvent: {0}")]
    Invalid(String),
    /// A spec version other than 1.0.
    #[error("specversion `{0}` is not supported: send CloudEvents 1.0")]
    Version(String),
}

fn convert(e: Event, binary: bool) -> Result<CloudEvent, CloudEventError> {
    if e.specversion() != SpecVersion::V10 {
        return Err(CloudEventError::Version(e.specversion().to_string()));
    }
    // In binary mode the header values were percent-encoded (and may be quoted).
    let text = |v: &str| {
        if binary {
            header_value(v)
        } else {
            v.to_string()
        }
    };
    let (id, source, ty) = (text(e.id()), text(e.source()), text(e.ty()));
    for (name, v) in [("id", &id), ("source", &source), ("type", &ty)] {
        if v.is_empty() {
            return Err(CloudEventError::Invalid(format!(
                "`{name}` must not be empty"
            )));
        }
    }
    if !is_uri_reference(&source) {
        return Err(CloudEventError::Invalid(format!(
            "`source` must be a URI-reference (RFC 3986); `{source}` is not"
        )));
    }
    let mut extensions = Vec::new();
    let mut extension_kinds = Vec::new();
    for (k, v) in e.iter_extensions() {
        if !is_attribute_name(k) {
            return Err(CloudEventError::Invalid(format!(
                "extension attribute `{k}`: names are lower-case letters and digits only"
            )));
        }
        match v {
            ExtensionValue::Integer(_) => {
                extension_kinds.push((k.to_string(), ExtensionKind::Integer))
            }
            ExtensionValue::Boolean(_) => {
                extension_kinds.push((k.to_string(), ExtensionKind::Boolean))
            }
            ExtensionValue::String(_) => {}
        }
        extensions.push((k.to_string(), text(&v.to_string())));
    }
    let mut data_is_string = false;
    let data = match e.data() {
        None => Vec::new(),
        Some(Data::Binary(b)) => b.clone(),
        Some(Data::String(s)) => s.clone().into_bytes(),
        // `"data": "text"` is text, not a JSON document.
        Some(Data::Json(Value::String(s))) => {
            data_is_string = !binary;
            s.clone().into_bytes()
        }
        Some(Data::Json(v)) => v.to_string().into_bytes(),
    };
    Ok(CloudEvent {
        id,
        source,
        ty,
        subject: e.subject().map(text),
        time: e.time().map(|t| t.to_rfc3339()),
        datacontenttype: e.datacontenttype().map(str::to_string),
        dataschema: e.dataschema().map(|u| text(u.as_ref())),
        extensions,
        extension_kinds,
        data,
        data_is_string,
    })
}

/// A binary-mode header value as the HTTP binding has it decoded: surrounding double quotes
/// removed, then percent-decoded (as UTF-8).
fn header_value(v: &str) -> String {
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `s` is an RFC 3986 URI-reference: only the characters a URI may hold, `%` only as a
/// `%XX` escape, and a scheme (if any) that starts with a letter.
fn is_uri_reference(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b) => {}
            _ => return false,
        }
        i += 1;
    }
    // `x:...` before any `/`, `?` or `#` is a scheme: it must start with a letter.
    let head = s.split(['/', '?', '#']).next().unwrap_or("");
    match head.split_once(':') {
        Some((scheme, _)) => {
            scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        }
        None => true,
    }
}

/// Whether `name` is a valid CloudEvents attribute name: lower-case ASCII letters and digits.
fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The media type of a `Content-Type` value, lower-cased (media types match case-insensitively).
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads the CloudEvents of an HTTP request in any content mode. An empty batch is valid and
/// holds no events.
pub fn from_http(headers: &HeaderMap, body: Vec<u8>) -> Result<Vec<CloudEvent>, CloudEventError> {
    let media = media_type(headers);
    if media == BATCH_CONTENT_TYPE {
        let values: Vec<Value> = serde_json::from_slice(&body)
            .map_err(|e| CloudEventError::Invalid(format!("batch is not a JSON array: {e}")))?;
        return values
            .into_iter()
            .enumerate()
            .map(|(i, v)| structured(v).map_err(|e| e.at(i)))
            .collect();
    }
    if media == "application/cloudevents+json" {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| CloudEventError::Invalid(format!("the body is not JSON: {e}")))?;
        return Ok(vec![structured(v)?]);
    }
    if let Some(v) = headers.get("ce-specversion")
        && v.as_bytes() != b"1.0"
    {
        return Err(CloudEventError::Version(
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        ));
    }
    let event = cloudevents::binding::http::to_event(headers, body)
        .map_err(|e| CloudEventError::Invalid(e.to_string()))?;
    Ok(vec![convert(event, true)?])
}

/// One event in the JSON event format (structured mode, or a batch's item).
fn structured(v: Value) -> Result<CloudEvent, CloudEventError> {
    check_version(&v)?;
    let event =
        serde_json::from_value::<Event>(v).map_err(|e| CloudEventError::Invalid(e.to_string()))?;
    convert(event, false)
}

impl CloudEventError {
    /// The error of a batch's item `i`.
    fn at(self, i: usize) -> Self {
        match self {
            CloudEventError::Invalid(m) => CloudEventError::Invalid(format!("event [{i}]: {m}")),
            other => other,
        }
    }
}

fn check_version(v: &Value) -> Result<(), CloudEventError> {
    match v.get("specversion").and_then(Value::as_str) {
        Some("1.0") => Ok(()),
        Some(other) => Err(CloudEventError::Version(other.to_string())),
        None => Err(CloudEventError::Invalid(
            "missing required attribute `specversion`".into(),
        )),
    }
}

impl CloudEvent {
    /// The event's attributes under their binary-mode header names (`ce-id`, ..., and
    /// `content-type` for `datacontenttype`).
    pub fn to_attributes(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("ce-id".to_string(), self.id.clone()),
            ("ce-source".to_string(), self.source.clone()),
            ("ce-type".to_string(), self.ty.clone()),
        ];
        let optional = [
            ("ce-subject", &self.subject),
            ("ce-time", &self.time),
            ("content-type", &self.datacontenttype),
            ("ce-dataschema", &self.dataschema),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                out.push((k.to_string(), v.clone()));
            }
        }
        for (k, v) in &self.extensions {
            out.push((format!("ce-{k}"), v.clone()));
        }
        for (k, kind) in &self.extension_kinds {
            out.push((format!("{KIND_PREFIX}{k}"), kind.as_str().to_string()));
        }
        if self.data_is_string {
            out.push((DATA_KIND.to_string(), "string".to_string()));
        }
        out
    }

    /// The context attributes a function receives with the data (`dataschema`, which the
    /// function interface has no field for, travels as an extension).
    pub fn context(&self) -> EventAttributes {
        let mut extensions = self.extensions.clone();
        if let Some(s) = &self.dataschema {
            extensions.push(("dataschema".into(), s.clone()));
        }
        EventAttributes {
            id: self.id.clone(),
            source: self.source.clone(),
            ty: self.ty.clone(),
            subject: self.subject.clone(),
            time: self.time.clone(),
            datacontenttype: self.datacontenttype.clone(),
            extensions,
        }
    }

    /// Rebuilds an event from [`CloudEvent::to_attributes`] output and its data.
    pub fn from_attributes(attributes: &[(String, String)], data: Vec<u8>) -> Option<Self> {
        let get = |k: &str| {
            attributes
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        const KNOWN: [&str; 6] = ["id", "source", "type", "subject", "time", "dataschema"];
        Some(Self {
            id: get("ce-id")?,
            source: get("ce-source")?,
            ty: get("ce-type")?,
            subject: get("ce-subject"),
            time: get("ce-time"),
            datacontenttype: get("content-type"),
            dataschema: get("ce-dataschema"),
            extensions: attributes
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix("ce-")?;
                    (!KNOWN.contains(&name)).then(|| (name.to_string(), v.clone()))
                })
                .collect(),
            extension_kinds: attributes
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix(KIND_PREFIX)?;
                    let kind = match v.as_str() {
                        "integer" => ExtensionKind::Integer,
                        "boolean" => ExtensionKind::Boolean,
                        _ => return None,
                    };
                    Some((name.to_string(), kind))
                })
                .collect(),
            data,
            data_is_string: get(DATA_KIND).as_deref() == Some("string"),
        })
    }

    /// An extension's value as JSON: integers and booleans as they came, else a string.
    pub fn extension_json(&self, name: &str, value: &str) -> Value {
        match self.extension_kinds.iter().find(|(k, _)| k == name) {
            Some((_, ExtensionKind::Integer)) => value
                .parse::<i64>()
                .map_or_else(|_| json!(value), |n| json!(n)),
            Some((_, ExtensionKind::Boolean)) => value
                .parse::<bool>()
                .map_or_else(|_| json!(value), |b| json!(b)),
            None => json!(value),
        }
    }

    /// The structured-mode JSON document: `data` as JSON when the content type is JSON and the
    /// bytes parse, as a string when they are UTF-8 text, else `data_base64`.
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("specversion".into(), json!("1.0"));
        doc.insert("id".into(), json!(self.id));
        doc.insert("source".into(), json!(self.source));
        doc.insert("type".into(), json!(self.ty));
        for (k, v) in [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ] {
            if let Some(v) = v {
                doc.insert(k.into(), json!(v));
            }
        }
        for (k, v) in &self.extensions {
            doc.insert(k.clone(), self.extension_json(k, v));
        }
        if self.data_is_string {
            doc.insert("data".into(), json!(String::from_utf8_lossy(&self.data)));
        } else if !self.data.is_empty() {
            let is_json = self
                .datacontenttype
                .as_deref()
                .is_none_or(|t| t.contains("json"));
            match (is_json, serde_json::from_slice::<Value>(&self.data)) {
                (true, Ok(v)) => {
                    doc.insert("data".into(), v);
                }
                _ => match std::str::from_utf8(&self.data) {
                    Ok(s) => {
                        doc.insert("data".into(), json!(s));
                    }
                    Err(_) => {
                        use base64::Engine as _;
                        let b = base64::engine::general_purpose::STANDARD.encode(&self.data);
                        doc.insert("data_base64".into(), json!(b));
                    }
                },
            }
        }
        Value::Object(doc)
    }
}

/// Whether `name` may be a CloudEvents extension attribute name (`[a-z0-9]{1,20}`).
pub fn is_extension_name(name: &str) -> bool {
    (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn binary_mode_reads_headers_and_keeps_data() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/shop"),
            ("ce-type", "order.created"),
            ("ce-traceparent", "00-abc-def-01"),
            ("content-type", "application/json"),
        ]);
        let e = from_http(&h, br#"{"total":5}"#.to_vec()).unwrap().remove(0);
        assert_eq!((e.id.as_str(), e.ty.as_str()), ("1", "order.created"));
        assert_eq!(
            e.extensions,
            [("traceparent".into(), "00-abc-def-01".into())]
        );
        let back = CloudEvent::from_attributes(&e.to_attributes(), e.data.clone()).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.to_json()["data"]["total"], 5);
    }

    #[test]
    fn structured_and_batch_modes() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let body = br#"{"specversion":"1.0","id":"a","source":"s","type":"t","data":{"x":1}}"#;
        let e = from_http(&h, body.to_vec()).unwrap().remove(0);
        assert_eq!(e.data, br#"{"x":1}"#);
        let h = headers(&[("content-type", BATCH_CONTENT_TYPE)]);
        let batch = br#"[{"specversion":"1.0","id":"a","source":"s","type":"t"},
                         {"specversion":"1.0","id":"b","source":"s","type":"u","data":"hi"}]"#;
        let events = from_http(&h, batch.to_vec()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data, b"hi");
    }

    #[test]
    fn the_specs_must_rules_and_nothing_more() {
        let structured = headers(&[(
            "content-type",
            "Application/CloudEvents+JSON; charset=UTF-8",
        )]);
        let event = |extra: &str| {
            format!(r#"{{"specversion":"1.0","id":"a","source":"/s","type":"t"{extra}}}"#)
                .into_bytes()
        };
        // Media types match case-insensitively.
        assert!(from_http(&structured, event("")).is_ok());
        // source is a URI-reference: relative, absolute, URN, escaped — but not just any text.
        let with_source = |src: &str| {
            format!(r#"{{"specversion":"1.0","id":"a","source":"{src}","type":"t"}}"#).into_bytes()
        };
        for ok in [
            "/s",
            "https://example.com/x?y=1#z",
            "urn:uuid:6e8bc430",
            "a%20b",
            "s",
        ] {
            assert!(from_http(&structured, with_source(ok)).is_ok(), "{ok}");
        }
        for bad in ["has space", "bad%zz", "1ab:c", "<tag>"] {
            assert!(from_http(&structured, with_source(bad)).is_err(), "{bad}");
        }
        // Extension names: lower-case letters and digits, any length.
        assert!(
            from_http(
                &structured,
                event(r#","averyveryverylongextensionname1":"x""#)
            )
            .is_ok()
        );
        for bad in [r#","my-ext":"x""#, r#","MyExt":"x""#] {
            assert!(from_http(&structured, event(bad)).is_err(), "{bad}");
        }
        // Binary mode: ce- header values are percent-decoded, surrounding quotes dropped.
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "\"1\""),
            ("ce-source", "/s"),
            ("ce-type", "order%20created"),
            ("ce-subject", "caf%C3%A9"),
        ]);
        let e = from_http(&h, vec![]).unwrap().remove(0);
        assert_eq!((e.id.as_str(), e.ty.as_str()), ("1", "order created"));
        assert_eq!(e.subject.as_deref(), Some("café"));
    }

    #[test]
    fn deliveries_keep_integer_extensions_and_string_data() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let body = br#"{"specversion":"1.0","id":"a","source":"/s","type":"t",
            "datacontenttype":"application/json","count":42,"flag":true,"label":"x","data":"123"}"#;
        let e = from_http(&h, body.to_vec()).unwrap().remove(0);
        let back = CloudEvent::from_attributes(&e.to_attributes(), e.data.clone()).unwrap();
        assert_eq!(back, e);
        let doc = back.to_json();
        assert_eq!(doc["count"], json!(42));
        assert_eq!(doc["flag"], json!(true));
        assert_eq!(doc["label"], json!("x"));
        assert_eq!(doc["data"], json!("123"), "string data stays a string");
        assert_eq!(doc["datacontenttype"], "application/json");
    }

    #[test]
    fn invalid_events_say_what_is_wrong() {
        let structured = headers(&[("content-type", "application/cloudevents+json")]);
        let missing_type = br#"{"specversion":"1.0","id":"a","source":"s"}"#;
        let err = from_http(&structured, missing_type.to_vec()).unwrap_err();
        assert!(err.to_string().contains("type"), "{err}");
        let old = br#"{"specversion":"0.3","id":"a","source":"s","type":"t"}"#;
        assert!(matches!(
            from_http(&structured, old.to_vec()),
            Err(CloudEventError::Version(v)) if v == "0.3"
        ));
        let binary_no_id = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]);
        assert!(from_http(&binary_no_id, vec![]).is_err());
        assert!(from_http(&headers(&[]), b"plain".to_vec()).is_err());
        let batch = headers(&[("content-type", BATCH_CONTENT_TYPE)]);
        assert_eq!(
            from_http(&batch, b"[]".to_vec()),
            Ok(vec![]),
            "an empty batch is valid"
        );
        let bad_item = br#"[{"specversion":"1.0","id":"a","source":"s","type":"t"},{"id":"b"}]"#;
        assert!(from_http(&batch, bad_item.to_vec()).is_err());
    }
}
