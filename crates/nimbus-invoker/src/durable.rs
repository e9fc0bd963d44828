//! Durable executions: the engine that drives `nimbus-durable`'s journal with this tenant's
//! invoker, execution store and event log.
//!
//! Every wake-up of an execution is a message in the tenant's durable event log (queue
//! `durable`): a run of its handler, a timer (a wait's end, a step's next attempt, a callback's
//! timeouts), the execution's timeout, a chained invoke. Each change follows one order under the
//! execution's lock: the journal changes in memory, the wake-ups it causes are appended (durable),
//! then the journal is saved. A crash in between leaves a wake-up whose change was not saved —
//! it finds nothing to do — never a saved change without its wake-up. A run's message is acked
//! only once the handler's answer is settled, so a crash mid-invocation runs it again (the SDK
//! replays from the journal). At start-up every running execution is woken once more.
//!
//! One handler invocation per execution runs at a time (`driving`); a wake-up that arrives
//! meanwhile is folded into the running one's next turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use nimbus_core::clock::now_ms;
use nimbus_core::{StoreError, Trigger};
use nimbus_durable::journal::{CheckpointError, Effect, Journal, Next, TimerKind};
use nimbus_durable::model::{ErrorObject, InvocationOutput, Operation, OperationUpdate};
use nimbus_durable::store::{Created, ExecutionRecord, ExecutionStore, ExecutionSummary};
use nimbus_durable::{token, wire};
use nimbus_log::{Delivery, LogError, MessageLog, NewMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod integrations;
pub mod workflows;

use crate::error::InvokeError;
use crate::invoker::Invoker;
use crate::request::{InvocationRequest, Output, Payload};

/// The log queue of wake-ups.
const QUEUE: &str = "durable";
/// A wake-up's lease: longer than the longest invocation (15 minutes).
const LEASE_MS: i64 = 16 * 60 * 1000;
/// Wake-ups handled at once.
const CONCURRENCY: usize = 64;
/// Operations the invocation input carries; the SDK pages the rest in.
const INPUT_PAGE: usize = 500;
/// Invocations that end without a durable answer (a crash, a timeout) before the execution fails.
const MAX_INVOCATION_ATTEMPTS: u32 = 4;
/// How long a removed function's ended executions are kept (the longest `retention_days`).
const MAX_RETENTION_DAYS: i64 = 90;
/// When a wake-up that failed (the store or the log did) comes back.
const RETRY_MS: i64 = 1000;
/// Longest an idle consumer sleeps without being woken.
const IDLE_MAX: Duration = Duration::from_secs(5);

/// Why a durable call failed; the HTTP edge names the documented exception.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// No such execution, function or callback.
    #[error("{0}")]
    NotFound(String),
    /// A bad request (a malformed ARN, token or name; a function that is not durable).
    #[error("{0}")]
    Invalid(String),
    /// A checkpoint or callback the journal refused (nothing changed).
    #[error(transparent)]
    Journal(#[from] CheckpointError),
    /// The callback timed out before this answer.
    #[error("callback `{0}` timed out")]
    CallbackTimedOut(String),
    /// An execution of that name exists with another input.
    #[error("{0}")]
    AlreadyStarted(String),
    /// The function could not be resolved or invoked.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The execution store failed.
    #[error("durable execution store: {0}")]
    Store(#[from] StoreError),
    /// The event log failed.
    #[error("durable execution log: {0}")]
    Log(#[from] LogError),
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopping,
}

type Result<T, E = DurableError> = std::result::Result<T, E>;

/// One wake-up of an execution, as stored in the log.
#[derive(Debug, Serialize, Deserialize)]
struct Wake {
    arn: String,
    #[serde(flatten)]
    kind: WakeKind,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "wake", rename_all = "snake_case")]
enum WakeKind {
    /// Invoke the handler if the journal needs it (always, from the second attempt).
    Run {
        #[serde(default)]
        attempt: u32,
    },
    Timer {
        op: String,
        kind: TimerKind,
    },
    Timeout {
        /// How many times the execution had been redriven when this timeout was set.
        #[serde(default)]
        generation: u32,
    },
    Chain {
        op: String,
        function: String,
        payload: Option<String>,
    },
    /// A child execution (`arn`) ended: its parent's chained invoke finishes with its outcome.
    ChildEnded,
    /// The workflow whose `.sync` task waits for this nested execution (`arn`) ended: it stops.
    ParentEnded,
}

/// A started execution.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its ARN.
    pub arn: String,
    /// Whether it was started now (false: one of that name and input existed).
    pub new: bool,
}

/// What a successful checkpoint answers.
#[derive(Debug, Clone)]
pub struct CheckpointAnswer {
    /// The next checkpoint token.
    pub token: String,
    /// The operations the checkpoint changed.
    pub operations: Vec<Operation>,
}

/// The durable execution engine of one tenant.
pub struct Durable {
    store: Arc<dyn ExecutionStore>,
    log: Arc<dyn MessageLog>,
    invoker: Weak<Invoker>,
    secret: Vec<u8>,
    region: String,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// State machines (workflows run as executions of this engine), once given.
    machines: std::sync::OnceLock<Arc<dyn nimbus_asl::store::MachineStore>>,
    /// The last saved record of each running execution this engine saved, so a turn needs no
    /// read and parse of its journal (every write of the tenant's executions goes through
    /// this engine, under the execution's lock). Dropped when the execution ends.
    records: Mutex<HashMap<String, ExecutionRecord>>,
    /// Parsed workflow definitions by their text's hash.
    definitions: Mutex<HashMap<String, Arc<nimbus_asl::definition::Definition>>>,
    /// Executions whose handler runs now, and whether a wake-up came meanwhile.
    driving: Mutex<HashMap<String, bool>>,
    /// Chained invokes of workflows that ended, waiting for the next turn to record them (one
    /// save for all that ended together); each told once it is saved.
    finished: Mutex<HashMap<String, Vec<Finished>>>,
    appended: Notify,
    ended: Notify,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// How a chained invoke ended: its result, or its error.
type ChainOutcome = std::result::Result<Option<String>, ErrorObject>;

/// A workflow's chained invoke that ended, for its next turn to record.
struct Finished {
    op: String,
    outcome: ChainOutcome,
    /// Told once the turn that recorded it is saved.
    saved: tokio::sync::oneshot::Sender<()>,
}

/// Runs blocking store or log work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| DurableError::Stopping)?
}

fn message(wake: &Wake, at_ms: i64) -> NewMessage {
    NewMessage {
        queue: QUEUE.into(),
        body: serde_json::to_vec(wake).unwrap_or_default(),
        deliver_after_ms: at_ms,
        ..NewMessage::default()
    }
}

/// The wake-up that times `arn` out at `at_ms` (`generation`: how many times it had been
/// redriven).
fn timeout_wake(arn: &str, generation: u32, at_ms: i64) -> NewMessage {
    message(
        &Wake {
            arn: arn.to_owned(),
            kind: WakeKind::Timeout { generation },
        },
        at_ms,
    )
}

/// The wake-ups a journal change causes.
fn wakes(arn: &str, effects: Vec<Effect>) -> Vec<NewMessage> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Timer { id, kind, at_ms } => Some(message(
                &Wake {
                    arn: arn.to_string(),
                    kind: WakeKind::Timer { op: id, kind },
                },
                at_ms,
            )),
            Effect::Invoke {
                id,
                function,
                payload,
            } => Some(message(
                &Wake {
                    arn: arn.to_string(),
                    kind: WakeKind::Chain {
                        op: id,
                        function,
                        payload,
                    },
                },
                0,
            )),
            Effect::Finished(_) => None,
        })
        .collect()
}

fn run(arn: &str, attempt: u32, at_ms: i64) -> NewMessage {
    message(
        &Wake {
            arn: arn.to_string(),
            kind: WakeKind::Run { attempt },
        },
        at_ms,
    )
}

/// Whether `arn` is a workflow's execution (a state machine's, not a durable function's).
fn is_workflow(arn: &str) -> bool {
    arn.starts_with("arn:aws:states:")
}

/// Brings the record's status and end in line with its journal.
fn sync(record: &mut ExecutionRecord, now: i64) {
    record.status = record.journal.status();
    if record.status.is_final() && record.end_ms.is_none() {
        record.end_ms = Some(now);
    }
}

/// Whether `name` is a valid execution name (`[A-Za-z0-9_-]{1,64}`).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Durable {
    /// The engine over `store` and `log`, invoking through `invoker`; `secret` keys its tokens.
    pub(crate) fn new(
        store: Arc<dyn ExecutionStore>,
        log: Arc<dyn MessageLog>,
        invoker: Weak<Invoker>,
        secret: Vec<u8>,
        region: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            log,
            invoker,
            secret,
            region,
            locks: Mutex::default(),
            machines: std::sync::OnceLock::new(),
            definitions: Mutex::default(),
            records: Mutex::default(),
            driving: Mutex::default(),
            finished: Mutex::default(),
            appended: Notify::new(),
            ended: Notify::new(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    pub(crate) fn set_machines(&self, machines: Arc<dyn nimbus_asl::store::MachineStore>) {
        let _ = self.machines.set(machines);
    }

    fn invoker(&self) -> Result<Arc<Invoker>> {
        self.invoker.upgrade().ok_or(DurableError::Stopping)
    }

    /// The ARN of `function` (unqualified).
    pub fn function_arn(&self, function: &str) -> String {
        nimbus_aws::lambda::function_arn(&self.region, function)
    }

    /// The function an execution ARN names (checked against the documented pattern).
    pub fn function_of(arn: &str) -> Option<&str> {
        let rest = arn.strip_prefix("arn:aws:lambda:")?;
        let (_, rest) = rest.split_once(":function:")?;
        let (qualified, tail) = rest.split_once("/durable-execution/")?;
        let (function, _) = qualified.split_once(':')?;
        let (name, id) = tail.split_once('/')?;
        (valid_name(function) && valid_name(name) && valid_name(id)).then_some(function)
    }

    /// The execution a callback id belongs to (the id's tag checked).
    pub fn callback_execution(&self, callback_id: &str) -> Result<String> {
        token::callback_target(&self.secret, callback_id)
            .map(|(arn, _)| arn)
            .map_err(|e| DurableError::Invalid(format!("Invalid callback id: {e}")))
    }

    /// The durable settings' execution timeout of `function` as deployed.
    pub fn execution_timeout_ms(&self, function: &str) -> Option<u64> {
        let invoker = self.invoker().ok()?;
        let (d, _) = invoker.live.resolve(function, None).ok()?;
        d.active
            .version
            .config
            .durable
            .map(|s| s.execution_timeout_ms)
    }

    /// Whether `function` under `qualifier` is a durable function.
    pub fn is_durable(&self, function: &str, qualifier: Option<&str>) -> bool {
        self.invoker()
            .ok()
            .and_then(|i| i.live.resolve(function, qualifier).ok())
            .is_some_and(|(d, _)| d.active.version.config.durable.is_some())
    }

    async fn lock(&self, arn: &str) -> LockGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(arn.to_string()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        LockGuard {
            engine: self,
            arn: arn.to_string(),
            _guard: guard,
        }
    }

    async fn load(&self, arn: &str) -> Result<Option<ExecutionRecord>> {
        let cached = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(arn)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let store = self.store.clone();
        let arn = arn.to_string();
        blocking(move || Ok(store.execution(&arn)?)).await
    }

    async fn record(&self, arn: &str) -> Result<ExecutionRecord> {
        self.load(arn)
            .await?
            .ok_or_else(|| DurableError::NotFound(format!("durable execution {arn} not found")))
    }

    /// [`Durable::commit`] after an operation of the execution ended, with a run: the next
    /// turn (of a handler, or a workflow's replay) takes every change made meanwhile at once.
    async fn commit_woken(
        &self,
        record: ExecutionRecord,
        mut wakes: Vec<NewMessage>,
    ) -> Result<()> {
        wakes.push(run(&record.arn, 0, 0));
        self.commit(record, wakes).await
    }

    /// Appends `wakes`, then saves `record` (under its revision); call holding its lock.
    async fn commit(&self, mut record: ExecutionRecord, wakes: Vec<NewMessage>) -> Result<()> {
        let now = now_ms();
        let ending = record.end_ms.is_none() && record.journal.status().is_final();
        sync(&mut record, now);
        let (function, status) = (record.function.clone(), record.status);
        let mut wakes = wakes;
        if ending && record.parent.is_some() {
            // Before the save, like every wake-up: a child that did not end finds nothing.
            wakes.push(message(
                &Wake {
                    arn: record.arn.clone(),
                    kind: WakeKind::ChildEnded,
                },
                0,
            ));
        }
        let ended = record.status.is_final();
        if ending && is_workflow(&record.arn) {
            // The nested executions its `.sync` tasks wait for stop with it.
            for child in self.waited_children(&record) {
                wakes.push(message(
                    &Wake {
                        arn: child,
                        kind: WakeKind::ParentEnded,
                    },
                    0,
                ));
            }
        }
        let (store, log) = (self.store.clone(), self.log.clone());
        let woke = !wakes.is_empty();
        let arn = record.arn.clone();
        let mut saved = (!ended).then(|| record.clone());
        // Until the save is known, nothing is cached: a failed save leaves the store's copy.
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&arn);
        blocking(move || {
            if !wakes.is_empty() {
                log.append(wakes, now)?;
            }
            let expected = record.revision;
            if store.save_execution(&record, expected)? {
                Ok(())
            } else {
                Err(DurableError::Store(StoreError::backend(format!(
                    "execution {} changed under its lock",
                    record.arn
                ))))
            }
        })
        .await?;
        if let Some(mut saved) = saved.take() {
            saved.revision += 1;
            self.records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(arn, saved);
        }
        if woke {
            self.appended.notify_one();
        }
        if ended {
            self.ended.notify_waiters();
        }
        if ending {
            self.with_metrics(|m| m.durable_ended(&function, wire::execution_status(status)));
        }
        Ok(())
    }

    fn with_metrics(&self, f: impl FnOnce(&crate::metrics::Metrics)) {
        if let Some(invoker) = self.invoker.upgrade() {
            f(invoker.metrics());
        }
    }

    /// Counts the operations among `ops` that ended.
    fn count_ended(&self, function: &str, ops: &[Operation]) {
        self.with_metrics(|m| {
            for op in ops.iter().filter(|o| o.status.is_final()) {
                let kind = serde_json::to_value(op.kind).unwrap_or_default();
                let status = serde_json::to_value(op.status).unwrap_or_default();
                m.durable_operation(
                    function,
                    kind.as_str().unwrap_or_default(),
                    status.as_str().unwrap_or_default(),
                );
                if op.kind == nimbus_durable::model::OperationType::Wait
                    && let Some(end) = op.end_ms
                {
                    m.durable_waited(function, ((end - op.start_ms).max(0) / 1000) as u64);
                }
            }
        });
    }

    /// Starts an execution of `function` (as `qualifier` resolves) named `name` (a new id
    /// when `None`) with `input`; a start by an existing name with the same input is that
    /// execution.
    pub async fn start(
        &self,
        function: &str,
        qualifier: Option<&str>,
        name: Option<&str>,
        input: Option<String>,
    ) -> Result<Started> {
        self.start_with(function, qualifier, name, input, None)
            .await
    }

    /// [`Durable::start`], for a child execution when `parent` (an execution and its
    /// `CHAINED_INVOKE` operation) is given: the child reports its end there.
    async fn start_with(
        &self,
        function: &str,
        qualifier: Option<&str>,
        name: Option<&str>,
        input: Option<String>,
        parent: Option<(String, String)>,
    ) -> Result<Started> {
        let invoker = self.invoker()?;
        let (deployed, label) = invoker.live.resolve(function, qualifier)?;
        let Some(settings) = deployed.active.version.config.durable else {
            return Err(DurableError::Invalid(format!(
                "function {function} is not durable (set `durable` in its nimbus.toml section)"
            )));
        };
        let id = uuid::Uuid::now_v7().simple().to_string();
        let name = match name {
            Some(n) if valid_name(n) => n.to_string(),
            Some(n) => {
                return Err(DurableError::Invalid(format!(
                    "`{n}` is not a valid durable execution name: 1 to 64 letters, digits, `-` or `_`"
                )));
            }
            None => id.clone(),
        };
        let now = now_ms();
        let arn = format!(
            "{}:{label}/durable-execution/{name}/{id}",
            self.function_arn(function)
        );
        let record = ExecutionRecord {
            arn: arn.clone(),
            function: function.to_string(),
            version: label.to_string(),
            name: name.clone(),
            status: nimbus_durable::model::OperationStatus::Started,
            start_ms: now,
            end_ms: None,
            revision: 0,
            journal: Journal::start_as(&id, input.clone(), now),
            // Started on `$LATEST`: it runs on this deployed version to its end.
            code: (label == "$LATEST").then(|| deployed.active.version.id.clone()),
            parent,
        };
        let created = self
            .create(record, Some(now + settings.execution_timeout_ms as i64))
            .await?;
        match created {
            Created::New => {
                self.with_metrics(|m| m.durable_started(function));
                Ok(Started { arn, new: true })
            }
            Created::Existing(r) if r.journal.operations()[0].input == input => Ok(Started {
                arn: r.arn,
                new: false,
            }),
            Created::Existing(r) => Err(DurableError::AlreadyStarted(format!(
                "durable execution {name} of {function} already started ({}) with another input",
                r.arn
            ))),
        }
    }

    /// Stores a new execution (or finds the one of its name) after appending its first run
    /// and, at `timeout_at_ms`, its timeout.
    async fn create(&self, record: ExecutionRecord, timeout_at_ms: Option<i64>) -> Result<Created> {
        let arn = record.arn.clone();
        let mut wakes = vec![run(&arn, 0, 0)];
        wakes.extend(timeout_at_ms.map(|at| timeout_wake(&arn, 0, at)));
        let _lock = self.lock(&arn).await;
        let (store, log) = (self.store.clone(), self.log.clone());
        let now = record.start_ms;
        let created = blocking(move || {
            // Wake-ups first: an ARN nobody stored finds nothing to do.
            log.append(wakes, now)?;
            Ok(store.create_execution(&record)?)
        })
        .await?;
        self.appended.notify_one();
        Ok(created)
    }

    /// Starts an execution from an HTTP request to one of the function's routes: its input is
    /// the API Gateway HTTP API (2.0) event the handler would have got; the execution's name,
    /// a new id. The async HTTP pattern answers with [`Durable::status_token`]'s URL.
    pub async fn start_http(&self, mut req: InvocationRequest) -> Result<Started> {
        let Payload::Http(http) = &mut req.payload else {
            return Err(DurableError::Invalid("not an HTTP request".into()));
        };
        let body = std::mem::replace(
            &mut http.body,
            crate::request::Body::Full(Default::default()),
        );
        http.body = crate::request::Body::Full(body.collect().await.map_err(InvokeError::from)?);
        let Payload::Http(http) = req.payload else {
            return Err(DurableError::Invalid("not an HTTP request".into()));
        };
        let event = crate::executor::process::apigw_event(&req.id, &req.trigger, http);
        let input = String::from_utf8_lossy(&event).into_owned();
        self.start(&req.function, req.qualifier.as_deref(), None, Some(input))
            .await
    }

    /// The capability token of `arn`'s public status resource (whoever holds it may read the
    /// execution's status, answer its callbacks and stop it).
    pub fn status_token(&self, arn: &str) -> String {
        token::status_token(&self.secret, arn)
    }

    /// The execution a status token names.
    pub fn status_target(&self, status_token: &str) -> Result<String> {
        token::status_target(&self.secret, status_token)
            .map_err(|_| DurableError::NotFound("no such execution status".into()))
    }

    /// Waits until execution `arn` ends or `timeout` passes; its record as it then is.
    pub async fn wait_for_end(&self, arn: &str, timeout: Duration) -> Result<ExecutionRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ended = self.ended.notified();
            let record = self.record(arn).await?;
            if record.status.is_final() || tokio::time::Instant::now() >= deadline {
                return Ok(record);
            }
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_secs(1)),
                ended,
            )
            .await;
        }
    }

    fn seq(&self, arn: &str, checkpoint_token: &str) -> Result<u64> {
        token::checkpoint_seq(&self.secret, arn, checkpoint_token)
            .map_err(|e| DurableError::Invalid(format!("Invalid checkpoint token: {e}")))
    }

    /// `CheckpointDurableExecution`.
    pub async fn checkpoint(
        &self,
        arn: &str,
        checkpoint_token: &str,
        client_token: Option<&str>,
        updates: &[OperationUpdate],
    ) -> Result<CheckpointAnswer> {
        let seq = self.seq(arn, checkpoint_token)?;
        let _lock = self.lock(arn).await;
        let mut record = self.record(arn).await.map_err(|e| match e {
            // The operation's documented errors have no ResourceNotFoundException.
            DurableError::NotFound(m) => DurableError::Invalid(m),
            e => e,
        })?;
        let now = now_ms();
        let secret = &self.secret;
        let done = record
            .journal
            .checkpoint(seq, client_token, updates, now, &mut |op| {
                token::callback_id(secret, arn, op)
            })?;
        let wakes = wakes(arn, done.effects);
        let function = record.function.clone();
        self.commit(record, wakes).await?;
        self.count_ended(&function, &done.operations);
        Ok(CheckpointAnswer {
            token: token::checkpoint_token(&self.secret, arn, done.token),
            operations: done.operations,
        })
    }

    /// `GetDurableExecutionState`: a page of the operations from `marker`.
    pub async fn state(
        &self,
        arn: &str,
        checkpoint_token: &str,
        marker: usize,
        max: usize,
    ) -> Result<(Vec<Operation>, Option<usize>)> {
        self.seq(arn, checkpoint_token)?;
        let record = self.record(arn).await.map_err(|e| match e {
            DurableError::NotFound(m) => DurableError::Invalid(m),
            e => e,
        })?;
        let (ops, next) = record.journal.page(marker, max);
        Ok((ops.to_vec(), next))
    }

    /// `GetDurableExecution` (and history): the execution.
    pub async fn execution(&self, arn: &str) -> Result<ExecutionRecord> {
        self.record(arn).await
    }

    /// `ListDurableExecutionsByFunction`.
    pub async fn list(
        &self,
        function: &str,
        status: Option<nimbus_durable::model::OperationStatus>,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ExecutionSummary>, bool)> {
        let store = self.store.clone();
        let function = function.to_string();
        blocking(move || Ok(store.list_executions(&function, status, after.as_deref(), limit)?))
            .await
    }

    /// `StopDurableExecution`: when it stopped.
    pub async fn stop(&self, arn: &str, error: Option<ErrorObject>) -> Result<i64> {
        let _lock = self.lock(arn).await;
        let mut record = self.record(arn).await?;
        let now = now_ms();
        record.journal.stop(error, now)?;
        self.commit(record, Vec::new()).await?;
        Ok(now)
    }

    async fn callback_record(
        &self,
        callback_id: &str,
    ) -> Result<(String, LockGuard<'_>, ExecutionRecord)> {
        let (arn, _) = token::callback_target(&self.secret, callback_id)
            .map_err(|e| DurableError::Invalid(format!("Invalid callback id: {e}")))?;
        let lock = self.lock(&arn).await;
        let record = self.record(&arn).await?;
        Ok((arn, lock, record))
    }

    fn callback_refused(
        record: &ExecutionRecord,
        callback_id: &str,
        e: CheckpointError,
    ) -> DurableError {
        let timed_out = record.journal.operations().iter().any(|o| {
            o.callback_id.as_deref() == Some(callback_id)
                && o.status == nimbus_durable::model::OperationStatus::TimedOut
        });
        if timed_out {
            DurableError::CallbackTimedOut(callback_id.to_string())
        } else {
            DurableError::Journal(e)
        }
    }

    /// `SendDurableExecutionCallbackSuccess` / `Failure`.
    pub async fn complete_callback(
        &self,
        callback_id: &str,
        outcome: std::result::Result<Option<String>, ErrorObject>,
    ) -> Result<()> {
        let (_, _lock, mut record) = self.callback_record(callback_id).await?;
        if let Err(e) = record
            .journal
            .complete_callback(callback_id, outcome, now_ms())
        {
            return Err(Self::callback_refused(&record, callback_id, e));
        }
        let ended: Vec<Operation> = record
            .journal
            .operations()
            .iter()
            .filter(|o| o.callback_id.as_deref() == Some(callback_id))
            .cloned()
            .collect();
        let function = record.function.clone();
        self.commit_woken(record, Vec::new()).await?;
        self.count_ended(&function, &ended);
        Ok(())
    }

    /// `SendDurableExecutionCallbackHeartbeat`.
    pub async fn heartbeat(&self, callback_id: &str) -> Result<()> {
        let (arn, _lock, mut record) = self.callback_record(callback_id).await?;
        let effect = match record.journal.callback_heartbeat(callback_id, now_ms()) {
            Ok(e) => e,
            Err(e) => return Err(Self::callback_refused(&record, callback_id, e)),
        };
        self.commit(record, wakes(&arn, effect.into_iter().collect()))
            .await
    }

    // --- the consumer ------------------------------------------------------------------

    /// Starts consuming wake-ups, after waking every running execution once (start-up).
    pub(crate) async fn start_consuming(self: &Arc<Self>) -> Result<()> {
        let store = self.store.clone();
        let running = blocking(move || Ok(store.running_executions()?)).await?;
        if !running.is_empty() {
            let now = now_ms();
            let wakes: Vec<NewMessage> = running.iter().map(|arn| run(arn, 0, 0)).collect();
            let log = self.log.clone();
            blocking(move || Ok(log.append(wakes, now).map(|_| ())?)).await?;
            tracing::info!(executions = running.len(), "resuming durable executions");
        }
        let me = self.clone();
        self.tasks.spawn(async move { me.consume().await });
        Ok(())
    }

    async fn consume(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        loop {
            let free = slots.available_permits().max(1);
            let log = self.log.clone();
            let received =
                tokio::task::spawn_blocking(move || log.receive(QUEUE, free, LEASE_MS, now_ms()))
                    .await;
            let deliveries = match received {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "durable wake-ups cannot be received");
                    Vec::new()
                }
                Err(_) => return,
            };
            if deliveries.is_empty() {
                let log = self.log.clone();
                let next = tokio::task::spawn_blocking(move || log.next_visible(QUEUE, now_ms()))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten();
                let sleep = next
                    .map(|at| Duration::from_millis((at - now_ms()).clamp(1, 60_000) as u64))
                    .unwrap_or(IDLE_MAX)
                    .min(IDLE_MAX);
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = self.appended.notified() => {}
                    () = tokio::time::sleep(sleep) => {}
                }
                continue;
            }
            for d in deliveries {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let me = self.clone();
                self.tasks.spawn(async move {
                    me.handle(d).await;
                    drop(permit);
                });
            }
            if self.cancel.is_cancelled() {
                return;
            }
            // Wait for a free slot before receiving more.
            if slots.available_permits() == 0 {
                let Ok(p) = slots.clone().acquire_owned().await else {
                    return;
                };
                drop(p);
            }
        }
    }

    async fn handle(&self, d: Delivery) {
        let log = self.log.clone();
        let done = match serde_json::from_slice::<Wake>(&d.body) {
            Ok(wake) => match self.wake(wake).await {
                Ok(()) => true,
                Err(DurableError::Stopping) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "a durable wake-up failed; it comes back in 1 s");
                    // Not after its whole lease: a passing failure (a busy disk) delays little.
                    let receipt = d.receipt.clone();
                    let log = log.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        log.extend(QUEUE, &receipt, RETRY_MS, now_ms())
                    })
                    .await;
                    false
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "dropping an unreadable durable wake-up");
                true
            }
        };
        if done {
            let _ = tokio::task::spawn_blocking(move || log.ack(QUEUE, &d.receipt)).await;
        }
    }

    async fn wake(&self, wake: Wake) -> Result<()> {
        let arn = wake.arn;
        match wake.kind {
            WakeKind::Run { attempt } => self.drive(&arn, attempt).await,
            WakeKind::Timer { op, kind } => {
                let _lock = self.lock(&arn).await;
                let Some(mut record) = self.load(&arn).await? else {
                    return Ok(());
                };
                if record.journal.timer_fired(&op, kind, now_ms()) {
                    let ended: Vec<Operation> =
                        record.journal.operation(&op).cloned().into_iter().collect();
                    let function = record.function.clone();
                    self.commit_woken(record, Vec::new()).await?;
                    self.count_ended(&function, &ended);
                }
                Ok(())
            }
            WakeKind::Timeout { generation } => {
                let _lock = self.lock(&arn).await;
                let Some(mut record) = self.load(&arn).await? else {
                    return Ok(());
                };
                // A redriven workflow's earlier timeouts are not its own.
                if generation != record.journal.redriven().map_or(0, |(n, _)| n) {
                    return Ok(());
                }
                if record.journal.time_out(now_ms()).is_ok() {
                    self.commit(record, Vec::new()).await?;
                }
                Ok(())
            }
            WakeKind::ChildEnded => self.child_ended(&arn).await,
            WakeKind::ParentEnded => {
                let error = error_object("States.Aborted", "the parent execution ended");
                match self.stop(&arn, Some(error)).await {
                    // Ended already, or never started: nothing to stop.
                    Err(DurableError::Journal(_) | DurableError::NotFound(_)) | Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            WakeKind::Chain {
                op,
                function,
                payload,
            } if nimbus_asl::integration::Service::parse(&function).is_some() => {
                self.integrate(&arn, &op, &function, payload).await
            }
            WakeKind::Chain {
                op,
                function,
                payload,
            } if self.is_durable(&function, None) => {
                // A durable function: a child execution, named after this operation (a repeat
                // of this wake-up finds the same one), which reports its end.
                let name = &nimbus_core::sha256_hex(format!("{arn}\0{op}").as_bytes())[..32];
                let started = self
                    .start_with(
                        &function,
                        None,
                        Some(name),
                        payload,
                        Some((arn.clone(), op.clone())),
                    )
                    .await;
                match started {
                    // Ended already (a repeat of this wake-up): report it again.
                    Ok(s) if !s.new => self.child_ended(&s.arn).await,
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let error = error_object("ChainedInvokeFailed", &e.to_string());
                        self.finish_chained(&arn, &op, Err(error)).await
                    }
                }
            }
            WakeKind::Chain {
                op,
                function,
                payload,
            } => {
                let outcome = self.chained_invoke(&arn, &function, payload).await?;
                self.finish_chained(&arn, &op, outcome).await
            }
        }
    }

    /// Chained invoke `op` of `arn` ended with `outcome`: recorded, and the execution runs.
    /// A workflow's is handed to its next turn, which records every one that ended meanwhile
    /// in one save; this returns once that save is done (until then its wake-up stays, so a
    /// crash loses nothing but the invoke, which runs again).
    async fn finish_chained(&self, arn: &str, op: &str, outcome: ChainOutcome) -> Result<()> {
        if is_workflow(arn) {
            let (saved, told) = tokio::sync::oneshot::channel();
            self.finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(arn.to_owned())
                .or_default()
                .push(Finished {
                    op: op.to_owned(),
                    outcome,
                    saved,
                });
            self.drive(arn, 0).await?;
            return told.await.map_err(|_| {
                DurableError::Store(StoreError::backend(format!(
                    "the turn of {arn} that was to record {op} failed"
                )))
            });
        }
        let _lock = self.lock(arn).await;
        let Some(mut record) = self.load(arn).await? else {
            return Ok(());
        };
        if record
            .journal
            .chained_invoke_finished(op, outcome, now_ms())
            .is_ok()
        {
            self.commit_woken(record, Vec::new()).await?;
        }
        Ok(())
    }

    /// Child execution `child` ended (or may have): its parent's chained invoke finishes with
    /// the child's result or error, and the parent runs.
    async fn child_ended(&self, child: &str) -> Result<()> {
        let record = {
            let _lock = self.lock(child).await;
            self.load(child).await?
        };
        let Some(record) = record.filter(|r| r.status.is_final()) else {
            return Ok(());
        };
        let Some((parent, op)) = record.parent.clone() else {
            return Ok(());
        };
        let execution = &record.journal.operations()[0];
        let outcome = if is_workflow(child) {
            self.nested_outcome(&record)
        } else if record.status == nimbus_durable::model::OperationStatus::Succeeded {
            Ok(execution.result.clone())
        } else {
            Err(execution.error.clone().unwrap_or_else(|| {
                error_object(
                    wire::execution_status(record.status),
                    &format!(
                        "the chained execution {child} ended {}",
                        wire::execution_status(record.status)
                    ),
                )
            }))
        };
        self.finish_chained(&parent, &op, outcome).await
    }

    /// Runs a chained invoke: the function's answer, or its error.
    async fn chained_invoke(
        &self,
        arn: &str,
        function: &str,
        payload: Option<String>,
    ) -> Result<std::result::Result<Option<String>, ErrorObject>> {
        let invoker = self.invoker()?;
        let req = InvocationRequest::new(
            function,
            Trigger::Durable {
                execution: arn.to_string(),
            },
            Payload::Event {
                data: payload.unwrap_or_else(|| "{}".into()).into_bytes().into(),
                attributes: None,
            },
        );
        Ok(match invoker.invoke(req).await {
            Ok(inv) => match inv.output {
                Ok(Output::Bytes(b)) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
                Ok(_) => Err(error_object(
                    "InvalidResponse",
                    "the function answered HTTP",
                )),
                // The error the function raised by its own name (`ValueError`), its document
                // as the data (a workflow's `Cause`).
                Err(e) => {
                    let doc = serde_json::from_slice::<serde_json::Value>(&e.doc).ok();
                    let named = doc
                        .as_ref()
                        .and_then(|d| d.get("errorType"))
                        .and_then(|t| t.as_str())
                        .filter(|t| !t.is_empty());
                    let mut error = error_object(named.unwrap_or(e.kind.as_str()), &e.message);
                    error.error_data = doc.map(|d| d.to_string());
                    Err(error)
                }
            },
            Err(e) => Err(error_object(e.aws_type(), &e.to_string())),
        })
    }

    /// Invokes the handler of `arn` until it waits or ends.
    async fn drive(&self, arn: &str, attempt: u32) -> Result<()> {
        {
            let mut driving = self.driving.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(again) = driving.get_mut(arn) {
                *again = true;
                return Ok(());
            }
            driving.insert(arn.to_string(), false);
        }
        let result = loop {
            let result = if is_workflow(arn) {
                self.drive_workflow(arn).await
            } else {
                self.drive_turns(arn, attempt).await
            };
            // Leave only if no wake-up came meanwhile, checked and left in one step: a wake-up
            // that finds this drive running is never lost.
            if result.is_err() || !self.woken_else_leave(arn) {
                break result;
            }
        };
        if result.is_err() {
            self.driving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(arn);
            // Invokes that ended and were to be recorded by this drive are not: their
            // wake-ups come again.
            self.finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(arn);
        }
        result
    }

    /// Whether a wake-up of `arn` came while it was driven (then the flag is reset and the
    /// caller drives again); if not, the drive is over.
    fn woken_else_leave(&self, arn: &str) -> bool {
        self.take_wake(arn, true)
    }

    /// The chained invokes of `arn` that ended and wait to be recorded.
    fn take_finished(&self, arn: &str) -> Vec<Finished> {
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(arn)
            .unwrap_or_default()
    }

    /// Whether a wake-up of `arn` came while it was being driven (and forgets it: the caller
    /// takes another turn).
    fn woken_meanwhile(&self, arn: &str) -> bool {
        self.take_wake(arn, false)
    }

    /// Whether a wake-up of `arn` came while it was driven, the flag reset; with `leave`, when
    /// none came, the drive is over — checked and left under one lock, so a wake-up that finds
    /// the drive running is never lost.
    fn take_wake(&self, arn: &str, leave: bool) -> bool {
        let mut driving = self.driving.lock().unwrap_or_else(|e| e.into_inner());
        match driving.get_mut(arn) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                if leave {
                    driving.remove(arn);
                }
                false
            }
        }
    }

    async fn drive_turns(&self, arn: &str, mut attempt: u32) -> Result<()> {
        loop {
            // Under the lock: a start appends its first run before it stores the execution.
            let record = {
                let _lock = self.lock(arn).await;
                self.load(arn).await?
            };
            let Some(record) = record else {
                return Ok(());
            };
            if !(record.journal.needs_invocation() || attempt > 0 && !record.status.is_final()) {
                if self.woken_meanwhile(arn) {
                    continue;
                }
                return Ok(());
            }
            let told = record.journal.updated().to_vec();
            let input = wire::invocation_input(
                arn,
                &token::checkpoint_token(&self.secret, arn, record.journal.token()),
                &record.journal,
                &told,
                INPUT_PAGE,
            );
            let answer = self.invoke_handler(&record, &input).await?;
            let _lock = self.lock(arn).await;
            let Some(mut record) = self.load(arn).await? else {
                return Ok(());
            };
            let now = now_ms();
            let output = match answer {
                Ok(out) => {
                    record.journal.told(&told);
                    attempt = 0;
                    out
                }
                Err(error) if attempt + 1 >= MAX_INVOCATION_ATTEMPTS => {
                    InvocationOutput::Failed(error)
                }
                Err(error) => {
                    tracing::info!(execution = arn, attempt, error = ?error.error_message, "a durable invocation failed; retrying");
                    let delay = 1000i64 << attempt.min(6);
                    self.commit(record, vec![run(arn, attempt + 1, now + delay)])
                        .await?;
                    return Ok(());
                }
            };
            match record.journal.settle(output, now) {
                Next::InvokeNow => {
                    self.commit(record, Vec::new()).await?;
                }
                Next::Wait | Next::Finished(_) => {
                    self.commit(record, Vec::new()).await?;
                    if !self.woken_meanwhile(arn) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One invocation of the handler: its durable answer, or why there is none.
    async fn invoke_handler(
        &self,
        record: &ExecutionRecord,
        input: &serde_json::Value,
    ) -> Result<std::result::Result<InvocationOutput, ErrorObject>> {
        let invoker = self.invoker()?;
        invoker.metrics().durable_invoked(&record.function);
        let mut req = InvocationRequest::new(
            record.function.clone(),
            Trigger::Durable {
                execution: record.arn.clone(),
            },
            Payload::Event {
                data: serde_json::to_vec(input).unwrap_or_default().into(),
                attributes: None,
            },
        );
        req.qualifier = Some(
            record
                .code
                .clone()
                .unwrap_or_else(|| record.version.clone()),
        );
        // Every invocation of the execution in one trace.
        let (trace_id, span_id) = token::execution_trace(&record.arn);
        req.trace.parent = Some(nimbus_core::trace::TraceParent {
            trace_id,
            span_id,
            sampled: true,
        });
        Ok(match invoker.invoke(req).await {
            Ok(inv) => match inv.output {
                Ok(Output::Bytes(b)) => InvocationOutput::parse(&b).ok_or_else(|| {
                    error_object(
                        "InvalidDurableAnswer",
                        "the handler did not answer as a durable handler (wrap it with the durable execution SDK)",
                    )
                }),
                Ok(_) => Err(error_object("InvalidResponse", "the handler answered HTTP")),
                Err(e) => Err(error_object(e.kind.as_str(), &e.message)),
            },
            Err(InvokeError::NotFound(f)) => Err(error_object(
                "ResourceNotFoundException",
                &format!("function {f} no longer exists"),
            )),
            Err(e) => Err(error_object(e.aws_type(), &e.to_string())),
        })
    }

    /// Stops consuming; what runs gets `grace` to finish (the rest comes back at the next start).
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
    }

    /// Deletes the executions that ended longer ago than their function's `retention_days`
    /// (a removed function's: the longest retention); how many went.
    pub async fn purge_ended(&self, now_ms: i64) -> Result<u64> {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let invoker = self.invoker()?;
        let mut plan: Vec<(Option<String>, i64)> = Vec::new();
        for f in invoker.functions() {
            if let Ok((d, _)) = invoker.live.resolve(&f.name, None)
                && let Some(settings) = d.active.version.config.durable
            {
                plan.push((
                    Some(f.name),
                    now_ms - settings.retention_days as i64 * DAY_MS,
                ));
            }
        }
        plan.push((None, now_ms - MAX_RETENTION_DAYS * DAY_MS));
        let store = self.store.clone();
        blocking(move || {
            let mut gone = 0;
            for (function, before) in plan {
                gone += store.purge_executions(function.as_deref(), before)?;
            }
            Ok(gone)
        })
        .await
    }
}

fn error_object(ty: &str, message: &str) -> ErrorObject {
    ErrorObject {
        error_type: Some(ty.to_string()),
        error_message: Some(message.to_string()),
        ..ErrorObject::default()
    }
}

/// An execution's lock, dropped from the map when its last holder lets go.
struct LockGuard<'a> {
    engine: &'a Durable,
    arn: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.engine.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Ours, the map's, and this guard's own: nobody else waits for it.
        if locks
            .get(&self.arn)
            .is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            locks.remove(&self.arn);
        }
    }
}
