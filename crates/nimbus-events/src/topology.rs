//! The resolved event resources the engine runs on, rebuilt and swapped whole on every change.

use std::collections::HashMap;

use nimbus_core::events::{
    AsyncPolicy, EventResources, EventRoute, QueueSpec, QueueTrigger, ScheduleSpec,
    SubscriptionSpec,
};
use nimbus_core::filter::FilterPolicy;

/// What the engine needs to know of a deployed function.
#[derive(Debug, Clone)]
pub struct FunctionTarget {
    /// Runs as a process (gets AWS event shapes) rather than a wasm component (gets CloudEvents).
    pub process: bool,
    /// Its timeout (leases must outlast it).
    pub timeout_ms: u64,
    /// Most async invocations at once.
    pub concurrency: usize,
    /// Async policy.
    pub policy: AsyncPolicy,
}

/// A topic's subscriptions with their parsed filters.
#[derive(Debug, Clone)]
pub struct ResolvedTopic {
    /// Subscriptions and filters, in declaration order.
    pub subscriptions: Vec<(SubscriptionSpec, Option<FilterPolicy>)>,
}

/// Everything the engine routes by.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Deployed functions.
    pub functions: HashMap<String, FunctionTarget>,
    /// Queues.
    pub queues: HashMap<String, QueueSpec>,
    /// Topics.
    pub topics: HashMap<String, ResolvedTopic>,
    /// Schedules.
    pub schedules: Vec<ScheduleSpec>,
    /// Queue triggers.
    pub triggers: Vec<QueueTrigger>,
    /// CloudEvents routes, in order.
    pub routes: Vec<EventRoute>,
}

impl Topology {
    /// Whether `queue` is some queue's or some function's dead-letter queue.
    pub fn is_dead_letter_queue(&self, queue: &str) -> bool {
        let q = Some(queue);
        self.queues.values().any(|s| s.dead_letter.as_deref() == q)
            || self
                .functions
                .values()
                .any(|f| f.policy.dead_letter.as_deref() == q)
    }

    /// Builds the topology of `functions` and every owner's resources.
    pub fn new(
        functions: HashMap<String, FunctionTarget>,
        resources: &[(String, EventResources)],
    ) -> Self {
        let mut t = Topology {
            functions,
            ..Topology::default()
        };
        for (_, r) in resources {
            for q in &r.queues {
                t.queues.insert(q.name.clone(), q.clone());
            }
            for topic in &r.topics {
                let subscriptions = topic
                    .subscriptions
                    .iter()
                    .map(|s| (s.clone(), s.policy()))
                    .collect();
                t.topics
                    .insert(topic.name.clone(), ResolvedTopic { subscriptions });
            }
            t.schedules.extend(r.schedules.iter().cloned());
            t.triggers.extend(r.triggers.iter().cloned());
            t.routes.extend(r.routes.iter().cloned());
        }
        t
    }
}
