//! CloudEvents 1.0 over HTTP: binary and structured content modes (read with the official
//! `cloudevents-sdk`) and batch mode (`application/cloudevents-batch+json`), validated, and the
//! conversions Nimbus needs: to message attributes (`ce-*`, the binary-mode header names) and
//! back, and to the structured JSON document handed to process functions.

use cloudevents::event::{Data, SpecVersion};
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
    /// The data.
    pub data: Vec<u8>,
}

/// Why a request does not hold valid CloudEvents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    /// Not a CloudEvent, or one missing a required attribute.
    #[error("not a valid CloudEvent: {0}")]
    Invalid(String),
    /// A spec version other than 1.0.
    #[error("specversion `{0}` is not supported: send CloudEvents 1.0")]
    Version(String),
    /// A batch with nothing in it.
    #[error("the batch is empty")]
    EmptyBatch,
}

fn convert(e: Event) -> Result<CloudEvent, CloudEventError> {
    if e.specversion() != SpecVersion::V10 {
        return Err(CloudEventError::Version(e.specversion().to_string()));
    }
    let required = |name: &str, v: &str| {
        if v.is_empty() {
            Err(CloudEventError::Invalid(format!(
                "`{name}` must not be empty"
            )))
        } else {
            Ok(())
        }
    };
    required("id", e.id())?;
    required("source", e.source())?;
    required("type", e.ty())?;
    let extensions = e
        .iter_extensions()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let data = match e.data() {
        None => Vec::new(),
        Some(Data::Binary(b)) => b.clone(),
        Some(Data::String(s)) => s.clone().into_bytes(),
        // `"data": "text"` is text, not a JSON document.
        Some(Data::Json(Value::String(s))) => s.clone().into_bytes(),
        Some(Data::Json(v)) => v.to_string().into_bytes(),
    };
    Ok(CloudEvent {
        id: e.id().to_string(),
        source: e.source().to_string(),
        ty: e.ty().to_string(),
        subject: e.subject().map(str::to_string),
        time: e.time().map(|t| t.to_rfc3339()),
        datacontenttype: e.datacontenttype().map(str::to_string),
        dataschema: e.dataschema().map(ToString::to_string),
        extensions,
        data,
    })
}

/// Reads the CloudEvents of an HTTP request in any content mode.
pub fn from_http(headers: &HeaderMap, body: Vec<u8>) -> Result<Vec<CloudEvent>, CloudEventError> {
    let batch = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(BATCH_CONTENT_TYPE));
    if batch {
        let values: Vec<Value> = serde_json::from_slice(&body)
            .map_err(|e| CloudEventError::Invalid(format!("batch is not a JSON array: {e}")))?;
        if values.is_empty() {
            return Err(CloudEventError::EmptyBatch);
        }
        return values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                check_version(&v)?;
                serde_json::from_value::<Event>(v)
                    .map_err(|e| CloudEventError::Invalid(format!("event [{i}]: {e}")))
                    .and_then(convert)
            })
            .collect();
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&body)
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/cloudevents+json"))
    {
        check_version(&v)?;
    } else if let Some(v) = headers.get("ce-specversion")
        && v.as_bytes() != b"1.0"
    {
        return Err(CloudEventError::Version(
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        ));
    }
    let event = cloudevents::binding::http::to_event(headers, body)
        .map_err(|e| CloudEventError::Invalid(e.to_string()))?;
    Ok(vec![convert(event)?])
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
            data,
        })
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
            doc.insert(k.clone(), json!(v));
        }
        if !self.data.is_empty() {
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
            Err(CloudEventError::EmptyBatch)
        );
        let bad_item = br#"[{"specversion":"1.0","id":"a","source":"s","type":"t"},{"id":"b"}]"#;
        assert!(from_http(&batch, bad_item.to_vec()).is_err());
    }
}
