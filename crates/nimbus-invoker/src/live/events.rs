//! The event-resource control plane: the event engine on this node, the topology it runs
//! (rebuilt from the store and the live snapshot on every change), queues, topics and
//! schedules created alone (not by an app's manifest), reference checks, and the status of an
//! invocation (the ledger joined with the record).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use nimbus_core::api::InvocationStatus;
use nimbus_core::events::{
    AsyncPolicy, EventResources, ResourceKind, check_references, resource_from_json,
};
use nimbus_core::manifest::Problem;
use nimbus_core::model::Outcome as RecordOutcome;
use nimbus_core::{InvocationRecord, StoreError};
use nimbus_events::{Engine, EngineConfig, EventError, FunctionTarget, Topology};
use nimbus_log::MessageLog;
use serde_json::{Value, json};

use super::Live;
use crate::engine::{EngineInvoker, Invoke};
use crate::error::{EventsUnavailable, ResourceError};

/// Most concurrent async invocations of one wasm function.
const WASM_ASYNC_CONCURRENCY: usize = 128;

/// Whether a resource was created or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// It did not exist.
    Created,
    /// It replaced one of the same name.
    Replaced,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StoreError::backend)?
}

fn label(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Queue => "queue",
        ResourceKind::Topic => "topic",
        ResourceKind::Schedule => "schedule",
    }
}

/// Removes the resource `name` of `kind` from `set`; whether it was there.
fn remove_named(set: &mut EventResources, kind: ResourceKind, name: &str) -> bool {
    let before = (set.queues.len(), set.topics.len(), set.schedules.len());
    match kind {
        ResourceKind::Queue => set.queues.retain(|q| q.name != name),
        ResourceKind::Topic => set.topics.retain(|t| t.name != name),
        ResourceKind::Schedule => set.schedules.retain(|s| s.name != name),
    }
    before != (set.queues.len(), set.topics.len(), set.schedules.len())
}

impl Live {
    /// Starts the event engine on `log`, running functions through `invoker`. Call once.
    pub(crate) async fn start_events(
        &self,
        invoker: Weak<dyn Invoke>,
        log: Arc<dyn MessageLog>,
        config: EngineConfig,
    ) -> Result<(), ResourceError> {
        let invoker = Arc::new(EngineInvoker::new(invoker));
        let engine =
            tokio::task::spawn_blocking(move || Engine::new(log, invoker, config)).await??;
        if self.engine.set(engine).is_err() {
            return Err(ResourceError::Events(EventError::Invalid(
                "the event engine was started twice".into(),
            )));
        }
        Ok(self.refresh_events().await?)
    }

    /// The event engine.
    pub(crate) fn engine(&self) -> Result<&Arc<Engine>, EventsUnavailable> {
        self.engine.get().ok_or(EventsUnavailable)
    }

    /// Functions that can take events, as the engine consumes them.
    fn event_functions(&self) -> HashMap<String, FunctionTarget> {
        self.snapshot
            .load()
            .functions
            .iter()
            .filter(|(_, d)| d.takes_events())
            .map(|(name, d)| {
                let c = &d.active.version.config;
                let concurrency = if c.runtime.is_process() {
                    c.max_concurrency() as usize
                } else {
                    WASM_ASYNC_CONCURRENCY
                };
                (
                    name.clone(),
                    FunctionTarget {
                        process: c.runtime.is_process(),
                        timeout_ms: c.timeout_ms,
                        concurrency,
                        policy: c.events.clone(),
                    },
                )
            })
            .collect()
    }

    /// Rebuilds the engine's topology from the live snapshot and the stored resources.
    pub(crate) async fn refresh_events(&self) -> Result<(), StoreError> {
        let Some(engine) = self.engine.get() else {
            return Ok(());
        };
        let store = self.store.clone();
        let resources = blocking(move || store.event_resources()).await?;
        engine.apply(Topology::new(self.event_functions(), &resources));
        Ok(())
    }

    /// Problems with references from `events` (owned by `owner`, with `policies` of the
    /// functions being deployed, `new_functions` of which take events) to functions, queues and
    /// topics that would not exist.
    pub(crate) async fn check_event_references(
        &self,
        owner: &str,
        events: &EventResources,
        policies: &[(String, AsyncPolicy)],
        new_functions: &[String],
    ) -> Result<Vec<Problem>, StoreError> {
        let store = self.store.clone();
        let others: Vec<EventResources> = blocking(move || store.event_resources())
            .await?
            .into_iter()
            .filter(|(o, _)| o != owner)
            .map(|(_, r)| r)
            .collect();
        let snapshot = self.snapshot.load();
        let function_ok = |f: &str| {
            new_functions.iter().any(|n| n == f)
                || snapshot
                    .functions
                    .get(f)
                    .is_some_and(|d| d.takes_events() && d.active.version.app != owner)
        };
        let queue_ok = |q: &str| others.iter().any(|r| r.queues.iter().any(|s| s.name == q));
        let topic_ok = |t: &str| others.iter().any(|r| r.topics.iter().any(|s| s.name == t));
        Ok(check_references(
            events,
            policies,
            &function_ok,
            &queue_ok,
            &topic_ok,
        ))
    }

    /// Changes the resources created alone, checks the result, stores it, refreshes the
    /// topology; nothing changes when `change` or the check fails.
    async fn change_standalone(
        &self,
        change: impl FnOnce(&mut EventResources) -> Result<(), ResourceError>,
    ) -> Result<(), ResourceError> {
        let _guard = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let mut standalone = blocking(move || store.event_resources())
            .await?
            .into_iter()
            .find(|(owner, _)| owner.is_empty())
            .map(|(_, r)| r)
            .unwrap_or_default();
        change(&mut standalone)?;
        let problems = self
            .check_event_references("", &standalone, &[], &[])
            .await?;
        if !problems.is_empty() {
            return Err(ResourceError::Invalid(problems));
        }
        let store = self.store.clone();
        blocking(move || store.put_events("", &standalone)).await?;
        Ok(self.refresh_events().await?)
    }

    /// Creates (or replaces) the resource `name` of `kind` from its JSON definition.
    pub(crate) async fn put_resource(
        &self,
        kind: ResourceKind,
        name: &str,
        definition: Value,
    ) -> Result<Put, ResourceError> {
        let parsed = resource_from_json(kind, name, definition).map_err(ResourceError::Invalid)?;
        let mut replaced = false;
        self.change_standalone(|set| {
            replaced = remove_named(set, kind, name);
            set.queues.extend(parsed.queues);
            set.topics.extend(parsed.topics);
            set.schedules.extend(parsed.schedules);
            Ok(())
        })
        .await?;
        Ok(if replaced {
            Put::Replaced
        } else {
            Put::Created
        })
    }

    /// Deletes a resource created alone (a queue's messages go with it).
    pub(crate) async fn delete_resource(
        &self,
        kind: ResourceKind,
        name: &str,
    ) -> Result<(), ResourceError> {
        let topo = self.engine()?.topology();
        let exists = match kind {
            ResourceKind::Queue => topo.queues.contains_key(name),
            ResourceKind::Topic => topo.topics.contains_key(name),
            ResourceKind::Schedule => topo.schedules.iter().any(|s| s.name == name),
        };
        let not_found = || ResourceError::NotFound {
            kind: label(kind),
            name: name.to_string(),
        };
        if !exists {
            return Err(not_found());
        }
        self.change_standalone(|set| {
            if remove_named(set, kind, name) {
                Ok(())
            } else {
                Err(ResourceError::DeclaredByApp {
                    kind: label(kind),
                    name: name.to_string(),
                })
            }
        })
        .await?;
        if kind == ResourceKind::Queue {
            self.engine()?.purge(name).await?;
        }
        Ok(())
    }

    /// Enables or disables a schedule of any owner (an app's next deploy sets it back to its
    /// manifest).
    pub(crate) async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<(), ResourceError> {
        let _guard = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let all = blocking(move || store.event_resources()).await?;
        let (owner, mut set) = all
            .into_iter()
            .find(|(_, r)| r.schedules.iter().any(|s| s.name == name))
            .ok_or_else(|| ResourceError::NotFound {
                kind: "schedule",
                name: name.to_string(),
            })?;
        for s in &mut set.schedules {
            if s.name == name {
                s.enabled = enabled;
            }
        }
        let store = self.store.clone();
        blocking(move || store.put_events(&owner, &set)).await?;
        Ok(self.refresh_events().await?)
    }

    /// An invocation's status: the ledger of async invocations (with the record of the last
    /// attempt), else the record of a synchronous one. `None` when neither knows it.
    pub(crate) async fn invocation_status(
        &self,
        id: &str,
    ) -> Result<Option<InvocationStatus>, ResourceError> {
        let ledger = match self.engine() {
            Ok(e) => e.invocation(id).await?,
            Err(_) => None,
        };
        let record_id = match &ledger {
            Some(s) if s.attempts > 1 => format!("{id}-{}", s.attempts),
            _ => id.to_string(),
        };
        let store = self.store.clone();
        let record: Option<InvocationRecord> =
            blocking(move || store.invocation(&record_id)).await?;
        Ok(match (ledger, record) {
            (Some(mut s), record) => {
                s.record = record;
                Some(s)
            }
            (None, Some(r)) => Some(InvocationStatus {
                id: r.id.clone(),
                function: r.function.clone(),
                status: match r.outcome {
                    RecordOutcome::Success => "succeeded",
                    _ => "failed",
                }
                .into(),
                attempts: 1,
                accepted_ms: r.start_ms,
                finished_ms: Some(r.start_ms + (r.duration_us / 1000) as i64),
                next_attempt_ms: None,
                result: None,
                error: r
                    .error_type
                    .map(|t| json!({"errorType": t.as_str(), "errorMessage": r.error_message})),
                record: Some(r),
            }),
            (None, None) => None,
        })
    }
}
