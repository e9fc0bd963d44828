//! The invoker with fake executors: admission, finishing, typed errors, deploys.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{ErrorType, FunctionKind, InvocationRecord, Outcome, Trigger};
use tokio::sync::Notify;

use crate::testing::{FakeExecutor, FakeRun, TestNode};
use crate::*;

struct Fixture {
    dir: tempfile::TempDir,
    node: TestNode,
    wasm: Arc<FakeExecutor>,
}

impl std::ops::Deref for Fixture {
    type Target = TestNode;
    fn deref(&self) -> &TestNode {
        &self.node
    }
}

fn fixture(config: InvokerConfig, wasm: Arc<FakeExecutor>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::new(dir.path(), config, wasm.clone(), None);
    Fixture { dir, node, wasm }
}

/// Deploys `manifest` with `artifact`; whether anything changed.
async fn deploy(f: &Fixture, manifest: &str, artifact: &[u8]) -> Result<bool, DeployError> {
    f.node.deploy(manifest, artifact).await.map(|r| r.changed)
}

fn event(function: &str, data: &'static [u8]) -> InvocationRequest {
    InvocationRequest::new(
        function,
        Trigger::Invoke,
        Payload::data(Bytes::from_static(data)),
    )
}

/// Every record written so far (stops the writer).
async fn records(f: Fixture, function: &str) -> Vec<InvocationRecord> {
    f.node.records(function).await
}

const ONE: &str = "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n";

fn quick(config: InvokerConfig) -> InvokerConfig {
    InvokerConfig {
        throttle_wait: Duration::from_millis(50),
        ..config
    }
}

#[tokio::test]
async fn the_quota_is_checked_before_slots_and_each_invocation_counts_once() {
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let wasm = FakeExecutor::new(FunctionKind::Event, move |job| match &job.payload {
        Payload::Event { data, .. } if data.as_ref() == b"hold" => {
            FakeRun::WaitFor(r.clone(), Bytes::new())
        }
        _ => FakeRun::Answer(Bytes::from_static(b"ok")),
    });
    let f = fixture(
        quick(InvokerConfig {
            quota: Quota {
                monthly_requests: Some(3),
                monthly_gb_seconds: None,
            },
            ..InvokerConfig::default()
        }),
        wasm,
    );
    deploy(&f, &format!("{ONE}max_concurrency = 1\n"), b"x")
        .await
        .unwrap();
    let hold = || {
        let inv = f.invoker.clone();
        tokio::spawn(async move { inv.invoke(event("f", b"hold")).await })
    };
    let held = hold();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The slot is taken: throttled after the wait, and a throttled call uses no quota.
    let err = f.invoker.invoke(event("f", b"x")).await.unwrap_err();
    let InvokeError::Admission(a @ AdmissionError::Throttled { reason, .. }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*reason, ThrottleReason::Function);
    assert_eq!(a.retry_after(), Some(Duration::from_secs(1)));
    release.notify_one();
    held.await.unwrap().unwrap();
    f.invoker.invoke(event("f", b"x")).await.unwrap();
    let held = hold();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Three admitted, the last still holding the slot: the quota refuses at once, before
    // any slot is waited for.
    let started = std::time::Instant::now();
    let err = f.invoker.invoke(event("f", b"x")).await.unwrap_err();
    assert!(
        matches!(
            err,
            InvokeError::Admission(AdmissionError::Quota(QuotaKind::Requests(3)))
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(40));
    release.notify_one();
    held.await.unwrap().unwrap();
    assert_eq!(records(f, "f").await.len(), 3);
}

#[tokio::test]
async fn the_tenant_limit_is_shared_by_all_functions() {
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let wasm = FakeExecutor::new(FunctionKind::Event, move |job| {
        if job.id == "hog" {
            FakeRun::WaitFor(r.clone(), Bytes::new())
        } else {
            FakeRun::Answer(Bytes::new())
        }
    });
    let f = fixture(
        quick(InvokerConfig {
            tenant_concurrency: Some(1),
            ..InvokerConfig::default()
        }),
        wasm,
    );
    let two = "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n\
               [functions.g]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n";
    deploy(&f, two, b"x").await.unwrap();
    let inv = f.invoker.clone();
    let mut hog = event("f", b"");
    hog.id = "hog".into();
    let held = tokio::spawn(async move { inv.invoke(hog).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = f.invoker.invoke(event("g", b"")).await.unwrap_err();
    assert!(
        matches!(
            err,
            InvokeError::Admission(AdmissionError::Throttled {
                reason: ThrottleReason::Tenant,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("tenant is at its concurrency limit")
    );
    release.notify_one();
    held.await.unwrap().unwrap();
    f.invoker.invoke(event("g", b"")).await.unwrap();
}

#[tokio::test]
async fn every_admitted_attempt_leaves_exactly_one_record() {
    let wasm = FakeExecutor::new(FunctionKind::Event, |job| match &job.payload {
        Payload::Event { data, .. } if data.as_ref() == b"fail" => FakeRun::Fail(
            FunctionError::new(ErrorType::Handled, "Function.Error", "asked to fail"),
        ),
        Payload::Event { data, .. } if data.as_ref() == b"vanish" => FakeRun::Vanish,
        _ => FakeRun::Answer(Bytes::from_static(b"ok")),
    });
    let f = fixture(InvokerConfig::default(), wasm);
    deploy(&f, ONE, b"x").await.unwrap();
    let ok = f.invoker.invoke(event("f", b"fine")).await.unwrap();
    assert!(matches!(ok.output, Ok(Output::Bytes(ref b)) if b == "ok"));
    let logs = ok.logs.unwrap();
    assert!(
        logs.starts_with(&format!("START RequestId: {}", ok.id)),
        "{logs}"
    );
    assert!(logs.contains(&format!("ran {}", ok.id)), "{logs}");
    let failed = f.invoker.invoke(event("f", b"fail")).await.unwrap();
    assert_eq!(failed.output.unwrap_err().message, "asked to fail");
    f.invoker.invoke(event("f", b"vanish")).await.unwrap();
    // Refused before running: no record.
    assert!(f.invoker.invoke(event("nope", b"")).await.is_err());
    let records = records(f, "f").await;
    let summary: Vec<(Outcome, Option<ErrorType>, bool)> = records
        .iter()
        .map(|r| (r.outcome, r.error_type, r.cold_start))
        .collect();
    assert_eq!(
        summary,
        [
            (Outcome::Success, None, true),
            (Outcome::Error, Some(ErrorType::Handled), false),
            (Outcome::Error, Some(ErrorType::Cancelled), false),
        ]
    );
    assert_eq!(records[0].id, ok.id);
}

#[tokio::test]
async fn refusals_are_typed() {
    let f = fixture(
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Http),
    );
    deploy(
        &f,
        "app = \"a\"\n[functions.web]\nruntime = \"wasm\"\nsource = \"w.wasm\"\n\
         triggers = [{ http = \"GET /w\" }]\n",
        b"x",
    )
    .await
    .unwrap();
    let err = f.invoker.invoke(event("ghost", b"")).await.unwrap_err();
    assert!(matches!(err, InvokeError::NotFound(ref n) if n == "ghost"));
    assert_eq!(err.aws_type(), "ResourceNotFoundException");
    let err = f.invoker.invoke(event("web", b"{}")).await.unwrap_err();
    let InvokeError::NotAnEventFunction { routes, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(routes, "GET /w");
    let mut q = event("web", b"");
    q.qualifier = Some("0123456789".into());
    assert!(matches!(
        f.invoker.invoke(q).await.unwrap_err(),
        InvokeError::VersionNotFound { .. }
    ));
    let err = f
        .invoker
        .accept_async(AsyncRequest {
            function: "web".into(),
            qualifier: None,
            payload: Bytes::new(),
            idempotency_key: None,
            trace: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::NotAnEventFunction { .. }));
    assert_eq!(
        f.invoker.route("POST", "/w"),
        RouteLookup::MethodNotAllowed {
            allowed: vec!["GET".into()]
        }
    );
}

#[tokio::test]
async fn qualifiers_name_the_active_version_or_latest() {
    let f = fixture(
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Event),
    );
    deploy(&f, ONE, b"x").await.unwrap();
    let version = f.invoker.function("f").unwrap().version;
    let latest = f.invoker.invoke(event("f", b"1")).await.unwrap();
    assert_eq!(latest.executed_version, "$LATEST");
    let mut q = event("f", b"1");
    q.qualifier = Some(version[..10].to_string());
    assert_eq!(
        f.invoker.invoke(q).await.unwrap().executed_version,
        &version[..12]
    );
    // Too short to be a version: refused, not guessed.
    let mut q = event("f", b"1");
    q.qualifier = Some(version[..4].to_string());
    assert!(f.invoker.invoke(q).await.is_err());
}

#[tokio::test]
async fn async_acceptance_needs_the_engine_and_a_small_enough_event() {
    let f = fixture(
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Event),
    );
    deploy(&f, ONE, b"x").await.unwrap();
    let request = |payload: Bytes| AsyncRequest {
        function: "f".into(),
        qualifier: None,
        payload,
        idempotency_key: None,
        trace: None,
    };
    let big = Bytes::from(vec![b'x'; nimbus_core::events::MAX_MESSAGE_BYTES + 1]);
    assert!(matches!(
        f.invoker.accept_async(request(big)).await.unwrap_err(),
        InvokeError::PayloadTooLarge { .. }
    ));
    assert!(matches!(
        f.invoker
            .accept_async(request(Bytes::new()))
            .await
            .unwrap_err(),
        InvokeError::EventsUnavailable(_)
    ));
}

#[tokio::test]
async fn the_engine_runs_async_invocations_through_the_invoker() {
    let f = fixture(
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Event),
    );
    deploy(&f, ONE, b"x").await.unwrap();
    let log = nimbus_log::SqliteLog::open(&f.dir.path().join("events.db")).unwrap();
    f.invoker
        .start_events(
            Arc::new(log),
            nimbus_events::EngineConfig {
                region: "us-east-1".into(),
                master_secret: vec![0; 32],
                retry_base_ms: 10,
                ledger_retention_ms: 60_000,
                observer: None,
            },
        )
        .await
        .unwrap();
    let id = f
        .invoker
        .accept_async(AsyncRequest {
            function: "f".into(),
            qualifier: None,
            payload: Bytes::from_static(b"{\"n\":1}"),
            idempotency_key: None,
            trace: None,
        })
        .await
        .unwrap();
    let mut status = None;
    for _ in 0..200 {
        status = f.invoker.invocation_status(&id).await.unwrap();
        if status.as_ref().is_some_and(|s| s.status == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = status.unwrap();
    assert_eq!(status.status, "succeeded", "{status:?}");
    assert_eq!(status.result, Some(serde_json::json!({"n": 1})));
    f.invoker
        .engine()
        .unwrap()
        .shutdown(Duration::from_secs(1))
        .await;
    let records = records(f, "f").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, id);
    assert!(matches!(
        records[0].trigger,
        Trigger::Async { attempt: 1, .. }
    ));
}

#[tokio::test]
async fn a_deploy_prepares_only_what_changed_and_a_refused_one_changes_nothing() {
    let f = fixture(
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Event),
    );
    let two = "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n\
               [functions.g]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n";
    assert!(deploy(&f, two, b"x").await.unwrap());
    assert_eq!(f.wasm.prepared.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The same content again: nothing to do.
    assert!(!deploy(&f, two, b"x").await.unwrap());
    // One function's config changes: only it is prepared again.
    let changed = two.replacen(
        "source = \"f.wasm\"\n",
        "source = \"f.wasm\"\nmemory_mb = 64\n",
        1,
    );
    assert!(deploy(&f, &changed, b"x").await.unwrap());
    assert_eq!(f.wasm.prepared.load(std::sync::atomic::Ordering::SeqCst), 3);
    // A refused artifact: an error naming the function, and the old version stays.
    let before = f.invoker.functions();
    f.wasm
        .refuse
        .lock()
        .unwrap()
        .insert(nimbus_core::sha256_hex(b"bad"));
    let err = deploy(&f, two, b"bad").await.unwrap_err();
    assert!(
        matches!(&err, DeployError::InvalidArtifact { function, .. } if function == "f"),
        "{err:?}"
    );
    assert_eq!(f.invoker.functions(), before);
}

#[tokio::test]
async fn a_route_taken_by_another_app_is_a_conflict_and_changes_nothing() {
    let f = fixture(
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Http),
    );
    let app = |name: &str, function: &str| {
        format!(
            "app = \"{name}\"\n[functions.{function}]\nruntime = \"wasm\"\nsource = \"w.wasm\"\n\
             triggers = [{{ http = \"GET /same\" }}]\n"
        )
    };
    deploy(&f, &app("one", "a"), b"x").await.unwrap();
    let err = deploy(&f, &app("two", "b"), b"x").await.unwrap_err();
    assert!(matches!(err, DeployError::RouteConflict(_)), "{err:?}");
    assert!(f.invoker.function("b").is_none());
    assert!(matches!(
        f.invoker.route("GET", "/same"),
        RouteLookup::Found(ref hit) if hit.function == "a"
    ));
}

#[tokio::test]
async fn a_cold_wasm_function_starts_once_however_many_callers_wait() {
    use crate::executor::wasm::WasmExecutor;
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(
        nimbus_wasm::WasmRuntime::new(nimbus_wasm::WasmConfig::new(dir.path().join("compiled")))
            .unwrap(),
    );
    let executor = || -> Arc<dyn crate::Executor> {
        Arc::new(WasmExecutor::new(
            runtime.clone(),
            nimbus_store::ArtifactStore::open(dir.path().join("artifacts")).unwrap(),
            None,
            Duration::from_secs(600),
        ))
    };
    let echo = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/event-echo/echo.wasm"),
    )
    .unwrap();
    let node = TestNode::new(dir.path(), InvokerConfig::default(), executor(), None);
    node.deploy(ONE, &echo).await.unwrap();
    drop(node);
    // A restarted node: the function is deployed, its instance cold.
    let node = TestNode::new(dir.path(), InvokerConfig::default(), executor(), None);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let invoker = node.invoker.clone();
            tokio::spawn(async move { invoker.invoke(event("f", b"{}")).await })
        })
        .collect();
    for c in calls {
        let invocation = c.await.unwrap().unwrap();
        assert!(matches!(invocation.output, Ok(Output::Bytes(_))));
    }
    let records = node.records("f").await;
    assert_eq!(records.len(), 8);
    assert_eq!(
        records.iter().filter(|r| r.cold_start).count(),
        1,
        "one load, however many waited"
    );
}

#[tokio::test]
async fn shutting_down_writes_every_finished_record_while_the_invoker_is_still_held() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::new(
        dir.path(),
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Event),
        None,
    );
    node.deploy(ONE, b"x").await.unwrap();
    for _ in 0..3 {
        node.invoker.invoke(event("f", b"1")).await.unwrap();
    }
    let TestNode {
        invoker,
        store,
        writer,
    } = node;
    let tenancy = Tenancy::open(invoker.clone(), TestNode::opener(dir.path()))
        .await
        .unwrap();
    let running = Node::start(
        tenancy,
        writer,
        PurgeConfig {
            retention: Duration::from_secs(86_400),
            every: Duration::from_secs(3600),
        },
    );
    running.shutdown(Duration::from_secs(5)).await;
    // `invoker` (and its record sink) is still alive: the writer did not wait for it.
    assert_eq!(store.invocations("f", 10).unwrap().len(), 3);
    assert!(invoker.function("f").is_some());
}

#[tokio::test]
async fn tenants_have_their_own_names_and_removing_one_deletes_what_it_owns() {
    use nimbus_core::tenant::{Tenant, TenantLimits};
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::new(
        dir.path(),
        InvokerConfig::default(),
        FakeExecutor::echo(FunctionKind::Event),
        None,
    );
    let tenancy = Tenancy::open(node.invoker.clone(), TestNode::opener(dir.path()))
        .await
        .unwrap();
    assert!(!tenancy.is_multi_tenant());
    let acme = Tenant::new(
        "acme",
        &["api.acme.example".into()],
        TenantLimits::default(),
        1,
    )
    .unwrap();
    tenancy.create(acme.clone()).await.unwrap();
    assert!(matches!(
        tenancy.create(acme.clone()).await,
        Err(TenancyError::Exists(_))
    ));
    let thief = Tenant::new(
        "thief",
        &["api.acme.example".into()],
        TenantLimits::default(),
        1,
    )
    .unwrap();
    assert!(matches!(
        tenancy.create(thief).await,
        Err(TenancyError::DomainTaken { .. })
    ));
    assert_eq!(tenancy.list(), std::slice::from_ref(&acme));
    assert_eq!(
        tenancy
            .resolve(Some("api.acme.example"), "/x")
            .tenant
            .as_deref(),
        Some("acme")
    );

    // The same function name in both tenants; each sees only its own.
    let acme_node = tenancy.get("acme").unwrap();
    let sha = nimbus_core::sha256_hex(b"acme");
    acme_node
        .put_artifact(sha.clone(), Bytes::from_static(b"acme"))
        .await
        .unwrap();
    acme_node
        .deploy(nimbus_core::api::DeployRequest {
            manifest: ONE.into(),
            artifacts: [("f.wasm".to_string(), sha)].into(),
        })
        .await
        .unwrap();
    assert!(matches!(
        node.invoker.invoke(event("f", b"1")).await,
        Err(InvokeError::NotFound(_))
    ));
    acme_node.invoke(event("f", b"1")).await.unwrap();
    node.deploy(ONE, b"default").await.unwrap();
    node.invoker.invoke(event("f", b"2")).await.unwrap();
    assert_eq!(tenancy.invokers().len(), 2);

    // Stored: a new tenancy on the same database opens acme again.
    let again = Tenancy::open(node.invoker.clone(), TestNode::opener(dir.path()))
        .await
        .unwrap();
    assert_eq!(again.list(), std::slice::from_ref(&acme));
    drop(again);

    tenancy
        .remove("acme", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(tenancy.get("acme").is_none());
    assert!(matches!(
        tenancy.remove("acme", Duration::from_secs(5)).await,
        Err(TenancyError::NotFound(_))
    ));
    assert!(!dir.path().join("tenants/acme").exists());
    let acme_store =
        nimbus_store::SqliteStore::open(&dir.path().join("nimbus.db"), "acme").unwrap();
    assert!(nimbus_core::Store::apps(&acme_store).unwrap().is_empty());
    assert!(nimbus_core::Store::tenants(&acme_store).unwrap().is_empty());
    // The default tenant's function is untouched.
    node.invoker.invoke(event("f", b"3")).await.unwrap();
}
