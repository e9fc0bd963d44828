//! The runtime against real components built from C (tests/fixtures, examples).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nimbus_core::{ErrorType, FunctionKind};
use nimbus_wasm::{Completion, Event, Limits, LoadedFunction, WasmConfig, WasmError, WasmRuntime};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(repo(path)).unwrap()
}

fn runtime(dir: &tempfile::TempDir) -> WasmRuntime {
    WasmRuntime::new(WasmConfig::new(dir.path())).unwrap()
}

fn limits(memory_mb: u64, timeout_ms: u64) -> Limits {
    Limits {
        memory_bytes: memory_mb * 1024 * 1024,
        timeout: Duration::from_millis(timeout_ms),
        env: vec![("GREETING".to_string(), "hi".to_string())].into(),
        egress: Default::default(),
        budget: None,
    }
}

async fn get(
    rt: &WasmRuntime,
    f: &LoadedFunction,
    limits: &Limits,
    path: &str,
) -> (Result<(u16, String), nimbus_wasm::GuestError>, Completion) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = http::Request::get(format!("http://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = rt
        .serve_http(f, limits, req, move |c| {
            let _ = tx.send(c);
        })
        .await;
    let res = match res {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
        Err(e) => Err(e),
    };
    (res, rx.await.unwrap())
}

#[tokio::test]
async fn hello_answers_and_its_output_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let f = rt
        .prepare("hello", &wasm("examples/hello-http/hello.wasm"))
        .unwrap();
    assert_eq!(f.kind(), FunctionKind::Http);
    let (res, done) = get(&rt, &f, &limits(32, 2000), "/hello/ada").await;
    assert_eq!(res.unwrap(), (200, "hello, ada\n".into()));
    assert_eq!(done.logs, "served /hello/ada\n");
    assert!(done.error.is_none());
    assert!(done.max_memory_bytes > 0);
}

#[tokio::test]
async fn a_guest_that_loops_forever_is_cut_at_its_timeout_and_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(runtime(&dir));
    let f = Arc::new(
        rt.prepare("sink", &wasm("tests/fixtures/sink.wasm"))
            .unwrap(),
    );
    let started = Instant::now();
    let looping = {
        let (rt, f) = (rt.clone(), f.clone());
        tokio::spawn(async move { get(&rt, &f, &limits(32, 500), "/sink/loop").await })
    };
    // While one guest spins, another request on the same (2-core) runtime is served.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (ok, _) = get(&rt, &f, &limits(32, 2000), "/sink/env").await;
    assert_eq!(ok.unwrap().0, 200);
    let (res, done) = looping.await.unwrap();
    let err = res.unwrap_err();
    assert_eq!(err.kind, ErrorType::Timeout);
    assert!(
        err.message.contains("timed out after 0.50 seconds"),
        "{}",
        err.message
    );
    assert_eq!(done.error.unwrap().kind, ErrorType::Timeout);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_guest_blocked_in_the_host_is_cut_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let f = rt
        .prepare("sink", &wasm("tests/fixtures/sink.wasm"))
        .unwrap();
    let (res, _) = get(&rt, &f, &limits(32, 300), "/sink/sleep").await;
    assert_eq!(res.unwrap_err().kind, ErrorType::Timeout);
}

#[tokio::test]
async fn memory_past_the_limit_fails_as_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let f = rt
        .prepare("sink", &wasm("tests/fixtures/sink.wasm"))
        .unwrap();
    let (res, done) = get(&rt, &f, &limits(16, 5000), "/sink/oom").await;
    let err = res.unwrap_err();
    assert_eq!(err.kind, ErrorType::OutOfMemory, "{err}");
    assert!(err.message.contains("16 MiB"));
    assert!(done.max_memory_bytes <= 16 * 1024 * 1024);
    // The same function with room to spare still works.
    let (ok, _) = get(&rt, &f, &limits(16, 5000), "/sink/env").await;
    assert_eq!(ok.unwrap().0, 200);
}

#[tokio::test]
async fn traps_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let f = rt
        .prepare("sink", &wasm("tests/fixtures/sink.wasm"))
        .unwrap();
    let err = get(&rt, &f, &limits(32, 2000), "/sink/trap")
        .await
        .0
        .unwrap_err();
    assert_eq!(err.kind, ErrorType::Trap);
    assert!(err.message.contains("unreachable"), "{}", err.message);
    let err = get(&rt, &f, &limits(32, 2000), "/sink/noresponse")
        .await
        .0
        .unwrap_err();
    assert_eq!(err.kind, ErrorType::NoResponse);
    // An error code through response-outparam::set: the caller and the record both see it.
    let (result, done) = get(&rt, &f, &limits(32, 2000), "/sink/error-code").await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorType::Handled);
    assert!(err.message.contains("InternalError"), "{}", err.message);
    assert_eq!(done.error.map(|e| e.kind), Some(ErrorType::Handled));
}

#[tokio::test]
async fn no_ambient_authority_only_configured_environment() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let f = rt
        .prepare("sink", &wasm("tests/fixtures/sink.wasm"))
        .unwrap();
    let (res, _) = get(&rt, &f, &limits(32, 2000), "/sink/env").await;
    assert_eq!(res.unwrap().1, "GREETING=hi HOME=(unset)\n");
    let (res, _) = get(&rt, &f, &limits(32, 2000), "/sink/file").await;
    assert_eq!(res.unwrap().1, "no filesystem\n");
}

#[tokio::test]
async fn event_functions_return_results_and_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let f = rt
        .prepare("faulty", &wasm("tests/fixtures/faulty.wasm"))
        .unwrap();
    assert_eq!(f.kind(), FunctionKind::Event);
    let event = |ty: &str| Event {
        context: nimbus_core::EventAttributes {
            id: "1".into(),
            source: "test".into(),
            ty: ty.into(),
            ..Default::default()
        },
        data: Bytes::from_static(b"{\"x\":1}"),
    };
    let l = limits(16, 500);
    let (res, done) = rt.invoke_event(&f, &l, event("echo")).await;
    assert_eq!(res.unwrap(), b"{\"x\":1}");
    assert_eq!(done.logs, "faulty got echo\n");
    let (res, _) = rt.invoke_event(&f, &l, event("fail")).await;
    assert_eq!(
        res.unwrap_err(),
        nimbus_wasm::GuestError {
            kind: ErrorType::Handled,
            message: "asked to fail".into()
        }
    );
    assert_eq!(
        rt.invoke_event(&f, &l, event("trap"))
            .await
            .0
            .unwrap_err()
            .kind,
        ErrorType::Trap
    );
    assert_eq!(
        rt.invoke_event(&f, &l, event("loop"))
            .await
            .0
            .unwrap_err()
            .kind,
        ErrorType::Timeout
    );
    assert_eq!(
        rt.invoke_event(&f, &l, event("oom"))
            .await
            .0
            .unwrap_err()
            .kind,
        ErrorType::OutOfMemory
    );
}

#[test]
fn bad_artifacts_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let err = rt.prepare("x", b"not wasm at all").err().unwrap();
    assert!(err.to_string().contains("magic bytes"), "{err}");
    // A core module, not a component.
    let err = rt.prepare("x", b"\0asm\x01\0\0\0").err().unwrap();
    assert!(err.to_string().contains("core wasm module"), "{err}");
    // A truncated component.
    let hello = wasm("examples/hello-http/hello.wasm");
    let err = rt.prepare("x", &hello[..hello.len() / 2]).err().unwrap();
    assert!(matches!(err, WasmError::Invalid(_)), "{err}");
    // A valid component that exports no handler.
    let err = rt.prepare("x", b"\0asm\x0d\0\x01\0").err().unwrap();
    assert!(matches!(err, WasmError::NoHandler(_)), "{err}");
}

#[test]
fn compiled_components_are_reused_across_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let hello = wasm("examples/hello-http/hello.wasm");
    {
        let rt = runtime(&dir);
        rt.prepare("hello-sha", &hello).unwrap();
        assert_eq!(rt.stats().compiled, 1);
    }
    let rt = runtime(&dir);
    let f = rt
        .load("hello-sha", || panic!("must not read the artifact"))
        .unwrap();
    assert_eq!(f.kind(), FunctionKind::Http);
    assert_eq!(rt.stats().compiled, 0);
    assert_eq!(rt.stats().loaded_from_cache, 1);
    // Unknown to the cache: compiled from the artifact.
    rt.load("other-sha", || Ok(hello.clone())).unwrap();
    assert_eq!(rt.stats().compiled, 1);
}

#[test]
fn functions_deployed_from_one_artifact_share_one_loaded_component() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let hello = wasm("examples/hello-http/hello.wasm");
    let a = rt.prepare("hello-sha", &hello).unwrap();
    let b = rt.prepare("hello-sha", &hello).unwrap();
    let c = rt.load("hello-sha", || panic!("shared: no read")).unwrap();
    assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c));
    assert_eq!(rt.stats().compiled, 1, "compiled once");
    // Once nothing holds it, it is gone from memory; the next load uses the compiled cache.
    drop((a, b, c));
    rt.load("hello-sha", || panic!("cached: no read")).unwrap();
    assert_eq!(rt.stats().loaded_from_cache, 1);
}

#[test]
fn the_reaper_unloads_idle_instances_unless_they_keep_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir);
    let loaded = rt
        .prepare("hello-sha", &wasm("examples/hello-http/hello.wasm"))
        .unwrap();
    let idle = rt.instance("hello-sha", Some(loaded.clone()), false);
    let kept = rt.instance("hello-sha", Some(loaded.clone()), true);
    let busy = rt.instance("hello-sha", Some(loaded), false);
    let running = busy.enter();
    assert_eq!(rt.reap_idle(Duration::ZERO), 1);
    assert!(idle.get().is_none(), "scaled to zero");
    assert!(kept.get().is_some(), "min_instances keeps it");
    assert!(busy.get().is_some(), "never unloaded while running");
    assert_eq!(busy.counts().busy, 1);
    drop(running);
    assert_eq!(rt.reap_idle(Duration::ZERO), 1);
    assert_eq!(idle.counts().started, 1);
}
