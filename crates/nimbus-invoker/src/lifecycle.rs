//! A node's background duties and the order they stop in.
//!
//! [`Node::start`] spawns every duty under one supervisor (a cancellation token and a task
//! tracker): each runtime's (the wasm reaper; the process reaper and its standby sandbox) and
//! the record purge (of every tenant; ended durable executions past their retention too). Each tenant's event engine supervises its own
//! consumers. [`Node::shutdown`] stops them in this order, after the HTTP server has drained:
//!
//! 1. the event engines: consumers stop taking work; what they hold settles (or comes back
//!    after a restart); the other tenants' record writers finish;
//! 2. the supervised duties: reapers and the purge are cancelled and awaited;
//! 3. the runtimes: idle sandboxes stop, their cgroups and directories are removed;
//! 4. the record writer: every record finished so far is written, whoever still holds a sink;
//! 5. the trace exporter: its last batch is sent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nimbus_core::clock::now_ms;
use nimbus_store::group_commit::RecordWriter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::invoker::Invoker;
use crate::tenancy::Tenancy;

/// How long invocation records (and their logs) are kept.
#[derive(Debug, Clone, Copy)]
pub struct PurgeConfig {
    /// Records older than this are deleted.
    pub retention: Duration,
    /// How often the purge runs.
    pub every: Duration,
}

/// A running node: the invoker and its supervised background duties.
pub struct Node {
    invoker: Arc<Invoker>,
    tenancy: Arc<Tenancy>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    records: RecordWriter,
}

impl Node {
    /// Starts the node's background duties; `records` is the default tenant's writer. Call
    /// within a Tokio runtime.
    pub fn start(tenancy: Arc<Tenancy>, records: RecordWriter, purge: PurgeConfig) -> Self {
        let node = Self {
            invoker: tenancy.default_invoker().clone(),
            tenancy,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            records,
        };
        for executor in node.invoker.executors().all() {
            for (name, duty) in executor.background() {
                node.supervise(name, duty);
            }
        }
        let tenancy = node.tenancy.clone();
        node.supervise("record purge", async move {
            let mut every = tokio::time::interval(purge.every);
            loop {
                every.tick().await;
                let before = now_ms() - purge.retention.as_millis() as i64;
                for invoker in tenancy.invokers() {
                    if let Some(durable) = invoker.durable() {
                        match durable.purge_ended(now_ms()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(
                                executions = n,
                                "deleted durable executions past their retention"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "durable execution retention failed")
                            }
                        }
                    }
                    let store = invoker.store().clone();
                    let tenant = store.tenant().to_string();
                    match tokio::task::spawn_blocking(move || store.purge_records(before)).await {
                        Ok(Ok(0)) => {}
                        Ok(Ok(n)) => {
                            tracing::info!(
                                tenant,
                                records = n,
                                "deleted invocation records past the retention"
                            )
                        }
                        Ok(Err(e)) => tracing::warn!(tenant, error = %e, "record retention failed"),
                        Err(e) => tracing::warn!(tenant, error = %e, "record retention failed"),
                    }
                }
            }
        });
        node
    }

    /// Runs `duty` until the node stops.
    fn supervise(&self, name: &'static str, duty: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = duty => tracing::warn!(duty = name, "a background duty ended by itself"),
            }
        });
    }

    /// The node's tenants.
    pub fn tenancy(&self) -> &Arc<Tenancy> {
        &self.tenancy
    }

    /// The default tenant's invoker.
    pub fn invoker(&self) -> &Arc<Invoker> {
        &self.invoker
    }

    /// Stops the node in the order the module documentation states, giving running work up
    /// to `grace` at each step that waits for it.
    pub async fn shutdown(self, grace: Duration) {
        for invoker in self.tenancy.invokers() {
            invoker.shutdown_durable(grace).await;
        }
        if let Ok(engine) = self.invoker.engine() {
            engine.shutdown(grace).await;
        }
        self.tenancy.shutdown_tenants(grace).await;
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background duties did not stop within {grace:?}");
        }
        for executor in self.invoker.executors().all() {
            executor.shutdown().await;
        }
        let writer = self.records;
        match tokio::time::timeout(grace, tokio::task::spawn_blocking(move || writer.finish()))
            .await
        {
            Ok(_) => {}
            Err(_) => tracing::warn!("the record writer did not finish within {grace:?}"),
        }
        let telemetry = self.invoker.config.telemetry.clone();
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    }
}
