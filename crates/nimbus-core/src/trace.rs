//! The phases of one invocation, as runtimes measure them, and W3C trace context.
//!
//! Runtimes report what an invocation spent its time on (waiting for a slot, starting a
//! sandbox, instantiating a component, running) as [`Phase`]s; the gateway turns them into
//! the child spans of the invocation's trace. [`TraceParent`] reads and writes the W3C
//! `traceparent` header, which travels with events through asynchronous hops.

use std::time::{Duration, Instant};

/// One step of an invocation: a name from [`phase`] and when it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// What the time went to (one of the [`phase`] names).
    pub name: &'static str,
    /// When it began.
    pub start: Instant,
    /// How long it took.
    pub duration: Duration,
}

impl Phase {
    /// The phase `name` from `start` until now.
    pub fn since(name: &'static str, start: Instant) -> Self {
        Self {
            name,
            start,
            duration: start.elapsed(),
        }
    }
}

/// Names of the phases, stable: they are the span names of the cold-start breakdown.
pub mod phase {
    /// Waiting in a queue: for a concurrency slot, or (async events) in the durable log.
    pub const QUEUE_WAIT: &str = "queue_wait";
    /// Choosing where the invocation runs: a warm sandbox, or the decision to start one.
    pub const PLACEMENT: &str = "placement";
    /// Loading the artifact: compiling the component or loading it from the compile cache.
    pub const LOAD: &str = "load";
    /// Instantiating the wasm component for this invocation.
    pub const INSTANTIATE: &str = "instantiate";
    /// Starting a process sandbox (cgroup, namespaces, exec).
    pub const SANDBOX_START: &str = "sandbox_start";
    /// The process runtime's init, until it asks for its first event.
    pub const INIT: &str = "init";
    /// The function's own work.
    pub const RUN: &str = "run";
}

/// A W3C trace context `traceparent` (version 00): `00-{trace id}-{parent id}-{flags}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16-byte trace id, never all zeros.
    pub trace_id: [u8; 16],
    /// 8-byte id of the parent span, never all zeros.
    pub span_id: [u8; 8],
    /// The `sampled` flag.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` header value; `None` when it is not a valid one. Future versions
    /// are read by their version-00 prefix, as the specification asks.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut parts = value.splitn(5, '-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") || !is_lower_hex(version) {
            return None;
        }
        if version == "00" && rest.is_some() {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        if !(is_lower_hex(trace) && is_lower_hex(span) && is_lower_hex(flags)) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            u8::from(self.sampled)
        )
    }
}

impl serde::Serialize for TraceParent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TraceParent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TraceParent::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a W3C traceparent")))
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_example_round_trips() {
        let t = TraceParent::parse(EXAMPLE).expect("valid");
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(t.span_id), "00f067aa0ba902b7");
        assert!(t.sampled);
        assert_eq!(t.to_string(), EXAMPLE);
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.sampled);
    }

    #[test]
    fn invalid_values_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn it_travels_as_its_header_text() {
        let t = TraceParent::parse(EXAMPLE).expect("valid");
        let json = serde_json::to_string(&t).expect("serialises");
        assert_eq!(json, format!("\"{EXAMPLE}\""));
        assert_eq!(
            serde_json::from_str::<TraceParent>(&json).expect("parses"),
            t
        );
        assert!(serde_json::from_str::<TraceParent>("\"00-zz\"").is_err());
    }

    #[test]
    fn a_future_version_is_read_by_its_prefix() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceParent::parse(v).is_some());
    }
}
