//! How the event engine runs functions: a [`nimbus_events::Call`] becomes an
//! [`InvocationRequest`] for the invoker, and its outcome a result or a typed
//! [`CallFailure`].

use std::sync::Weak;

use bytes::Bytes;
use nimbus_core::trace::TraceParent;
use nimbus_events::{Call, CallFailure, CallFuture};

use crate::error::InvokeError;
use crate::executor::BoxFuture;
use crate::request::{Invocation, InvocationRequest, Output, Payload, TraceContext};

/// What runs an invocation for the engine (the invoker).
pub(crate) trait Invoke: Send + Sync + 'static {
    fn invoke(&self, req: InvocationRequest) -> BoxFuture<'_, Result<Invocation, InvokeError>>;
}

/// The engine's [`nimbus_events::Invoker`]. Holds the invoker weakly: the invoker owns the
/// engine, which owns this.
pub(crate) struct EngineInvoker {
    invoker: Weak<dyn Invoke>,
}

impl EngineInvoker {
    pub(crate) fn new(invoker: Weak<dyn Invoke>) -> Self {
        Self { invoker }
    }
}

/// The request an engine call makes.
fn request(call: Call) -> InvocationRequest {
    InvocationRequest {
        function: call.function,
        qualifier: call.qualifier,
        id: call.record_id,
        trigger: call.trigger,
        payload: Payload::Event {
            data: call.payload,
            attributes: call.attributes,
        },
        trace: TraceContext {
            parent: call.traceparent.as_deref().and_then(TraceParent::parse),
            xray: None,
            queued_since_ms: call.queued_since_ms,
        },
        client_context: None,
    }
}

impl nimbus_events::Invoker for EngineInvoker {
    fn call(&self, call: Call) -> CallFuture {
        let invoker = self.invoker.upgrade();
        Box::pin(async move {
            let invoker = invoker.ok_or_else(|| CallFailure {
                error_type: "ServiceUnavailable".into(),
                message: "the node is stopping".into(),
                doc: Bytes::new(),
            })?;
            match invoker.invoke(request(call)).await {
                Ok(invocation) => match invocation.output {
                    Ok(Output::Bytes(b)) => Ok(b),
                    Ok(other) => Err(CallFailure {
                        error_type: "InvalidResponse".into(),
                        message: format!("an event invocation answered {other:?}"),
                        doc: Bytes::new(),
                    }),
                    Err(e) => Err(CallFailure {
                        error_type: e.kind.as_str().to_string(),
                        message: e.message,
                        doc: e.doc,
                    }),
                },
                Err(e) => Err(CallFailure {
                    error_type: e.aws_type().to_string(),
                    message: e.to_string(),
                    doc: Bytes::new(),
                }),
            }
        })
    }
}
