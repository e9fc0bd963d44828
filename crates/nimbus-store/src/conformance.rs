//! The conformance suite every [`Store`] implementation must pass.
//!
//! Each check takes a fresh, empty store. A backend's tests call [`run_all`] with a factory, so
//! SQLite today and PostgreSQL later are held to the same behaviour.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use nimbus_core::model::{
    FunctionConfig, FunctionKind, InvocationRecord, Outcome, Runtime, Trigger,
};
use nimbus_core::store::{ActiveFunction, AppDeployment, StoreError};
use nimbus_core::{ErrorType, FunctionVersion, RouteSpec, Store};

/// Runs every check, each on a new store from `fresh`.
pub fn run_all<S: Store>(fresh: impl Fn() -> S) {
    deploy_activates_every_function_and_route(&fresh());
    redeploy_replaces_the_app_as_a_whole(&fresh());
    deployed_versions_stay_readable_after_a_redeploy(&fresh());
    function_names_are_owned_by_one_app(&fresh());
    removing_functions_and_apps(&fresh());
    records_round_trip_and_logs_follow_a_cursor(&fresh());
    api_keys_are_stored_by_hash(&fresh());
    event_resources_have_one_owner(&fresh());
    usage_sums_the_records_by_function_and_bucket(&fresh());
    versions_are_published_once_per_change_and_aliases_name_them(&fresh());
    secrets_are_set_listed_replaced_and_deleted(&fresh());
    keys_are_listed_and_revoked_and_the_audit_log_keeps_order(&fresh());
}

/// Tenants on one backend: `open_as(tenant)` gives a store of that tenant on the same (fresh)
/// database each call. Names are per tenant; deleting a tenant deletes what it owns and
/// nothing else; the node-wide artifact list covers every tenant.
pub fn run_tenants<S: Store>(open_as: impl Fn(&str) -> S) {
    use nimbus_core::tenant::{Tenant, TenantLimits};
    let operator = open_as(nimbus_core::DEFAULT_TENANT);
    let acme = open_as("acme");
    assert_eq!(acme.tenant(), "acme");
    let t = Tenant::new(
        "acme",
        &["api.acme.example".into()],
        TenantLimits::default(),
        5,
    )
    .unwrap();
    assert!(operator.insert_tenant(&t).unwrap());
    assert!(
        !acme
            .insert_tenant(&Tenant {
                created_ms: 9,
                ..t.clone()
            })
            .unwrap()
    );
    assert_eq!(acme.tenants().unwrap(), std::slice::from_ref(&t));

    // The same names in both tenants, different code.
    operator
        .deploy_app(&AppDeployment {
            events: Default::default(),
            app: "shop".into(),
            digest: "d".into(),
            functions: vec![sample_function("shop", "f", "default-code")],
            workflows: Vec::new(),
        })
        .unwrap();
    acme.deploy_app(&AppDeployment {
        events: Default::default(),
        app: "shop".into(),
        digest: "a".into(),
        functions: vec![sample_function("shop", "f", "acme-code")],
        workflows: Vec::new(),
    })
    .unwrap();
    acme.insert_records(&[sample_record("acme-1")]).unwrap();
    acme.put_secret("s", b"x").unwrap();
    assert_eq!(operator.app_digest("shop").unwrap().as_deref(), Some("d"));
    assert_eq!(acme.app_digest("shop").unwrap().as_deref(), Some("a"));
    assert!(operator.invocation("acme-1").unwrap().is_none());
    assert!(operator.secret("s").unwrap().is_none());
    let mut node = acme.node_artifacts().unwrap();
    node.sort();
    assert_eq!(node, ["acme-code", "default-code"]);

    assert!(operator.delete_tenant("acme").unwrap());
    assert!(!operator.delete_tenant("acme").unwrap());
    assert!(operator.tenants().unwrap().is_empty());
    assert!(acme.active_functions().unwrap().is_empty());
    assert!(acme.apps().unwrap().is_empty());
    assert!(acme.invocation("acme-1").unwrap().is_none());
    assert!(acme.secret("s").unwrap().is_none());
    assert_eq!(names(&operator), ["f"]);
    assert_eq!(operator.node_artifacts().unwrap(), ["default-code"]);

    // Rows written for a tenant that no longer exists (a call racing its removal) do not
    // reach a new tenant of that name.
    acme.put_secret("late", b"x").unwrap();
    assert!(operator.insert_tenant(&t).unwrap());
    assert!(acme.secret("late").unwrap().is_none());
}

/// Keys round-trip with their scope and sealed AWS secret; a revocation is once; the audit log
/// answers its newest entries, oldest first.
pub fn keys_are_listed_and_revoked_and_the_audit_log_keeps_order(store: &dyn Store) {
    use nimbus_core::keys::{KeyInfo, KeyScope, Role};
    use nimbus_core::store::{AuditEntry, StoredKey};
    let key = |id: &str, hash: &str| StoredKey {
        info: KeyInfo {
            id: id.into(),
            role: Role::Invoker,
            scope: KeyScope {
                functions: vec!["f".into()],
                ..KeyScope::default()
            },
            description: "ci".into(),
            created_ms: 1,
            expires_ms: Some(99),
            aws_access_key_id: Some(format!("AK{id}")),
            plan: Some(nimbus_core::keys::UsagePlan {
                rate: Some(5),
                burst: None,
                quota: Some(100),
                period: nimbus_core::keys::QuotaPeriod::Week,
            }),
        },
        hash: hash.into(),
        revoked_ms: None,
        sealed_aws_secret: Some(b"sealed".to_vec()),
    };
    store.insert_key(&key("k1", "h1")).unwrap();
    store.insert_key(&key("k2", "h2")).unwrap();
    assert!(
        store.insert_key(&key("k3", "h1")).is_err(),
        "hashes are unique"
    );
    let keys = store.keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], key("k1", "h1"));
    assert!(store.revoke_key("k1").unwrap());
    assert!(!store.revoke_key("k1").unwrap());
    assert!(!store.revoke_key("nope").unwrap());
    assert!(store.keys().unwrap()[0].revoked_ms.is_some());
    for i in 0..5 {
        store
            .append_audit(&AuditEntry {
                seq: 0,
                at_ms: i,
                key_id: "k2".into(),
                action: format!("POST /v1/apps {i}"),
                status: 200,
                detail: String::new(),
            })
            .unwrap();
    }
    let last = store.audit(2).unwrap();
    assert_eq!(
        last.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        [3, 4],
        "the newest two, oldest first"
    );
    // Function policies replace as a whole; an empty one is none.
    use nimbus_core::keys::PolicyStatement;
    assert!(store.function_policy("f").unwrap().is_empty());
    let grant = PolicyStatement {
        sid: "s1".into(),
        principal: "k2".into(),
    };
    store
        .put_function_policy("f", std::slice::from_ref(&grant))
        .unwrap();
    assert_eq!(store.function_policy("f").unwrap(), [grant]);
    assert!(store.function_policy("g").unwrap().is_empty());
    store.put_function_policy("f", &[]).unwrap();
    assert!(store.function_policy("f").unwrap().is_empty());
    // The audit log is kept as long as the records.
    store.purge_records(2).unwrap();
    let kept: Vec<i64> = store.audit(10).unwrap().iter().map(|e| e.at_ms).collect();
    assert_eq!(kept, [2, 3, 4]);
}

/// Secrets: a set replaces the sealed value, a listing shows names only, a delete is final.
pub fn secrets_are_set_listed_replaced_and_deleted(store: &dyn Store) {
    assert!(store.put_secret("db", b"sealed-1").unwrap());
    assert!(store.put_secret("api.token", b"sealed-a").unwrap());
    assert!(!store.put_secret("db", b"sealed-2").unwrap());
    assert_eq!(
        store.secret("db").unwrap().as_deref(),
        Some(&b"sealed-2"[..])
    );
    assert_eq!(store.secret("nope").unwrap(), None);
    let names: Vec<String> = store
        .secrets()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["api.token", "db"]);
    assert!(store.delete_secret("db").unwrap());
    assert!(!store.delete_secret("db").unwrap());
    assert_eq!(store.secret("db").unwrap(), None);
}

/// Usage rows are exact sums of the records in range, per function and bucket.
pub fn usage_sums_the_records_by_function_and_bucket(store: &dyn Store) {
    use nimbus_core::usage::{Granularity, UsageQuery};
    let hour = 3_600_000;
    let at = |id: &str, f: &str, start: i64, billed: u64, mb: u32, ok: bool| InvocationRecord {
        start_ms: start,
        billed_ms: billed,
        memory_mb: mb,
        cold_start: !ok,
        outcome: if ok { Outcome::Success } else { Outcome::Error },
        ..record(id, f, "")
    };
    store
        .insert_records(&[
            at("u1", "a", hour, 3, 128, true),
            at("u2", "a", hour + 10, 5, 128, false),
            at("u3", "b", hour + 20, 7, 256, true),
            at("u4", "a", 2 * hour + 1, 1, 1024, true),
            at("u5", "a", 3 * hour, 100, 128, true), // outside the range below
        ])
        .unwrap();
    let query = |function: Option<&str>, granularity| UsageQuery {
        function: function.map(str::to_string),
        from_ms: hour,
        to_ms: 3 * hour,
        granularity,
    };
    let hourly = store.usage(&query(None, Granularity::Hour)).unwrap();
    let summary: Vec<(&str, i64, u64, u64, u64, u64, u64)> = hourly
        .iter()
        .map(|r| {
            (
                r.function.as_str(),
                r.period_start_ms,
                r.requests,
                r.errors,
                r.cold_starts,
                r.billed_ms,
                r.mb_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a", hour, 2, 1, 1, 8, 8 * 128),
            ("b", hour, 1, 0, 0, 7, 7 * 256),
            ("a", 2 * hour, 1, 0, 0, 1, 1024),
        ]
    );
    let total = store.usage(&query(Some("a"), Granularity::Total)).unwrap();
    assert_eq!(total.len(), 1);
    // Retention: records before a time go, with their usage.
    assert_eq!(store.purge_records(2 * hour).unwrap(), 3);
    assert_eq!(store.invocation("u1").unwrap(), None);
    assert!(store.invocation("u4").unwrap().is_some());
    assert_eq!(
        (total[0].period_start_ms, total[0].requests, total[0].mb_ms),
        (hour, 3, 8 * 128 + 1024)
    );
}

/// Event resources deploy with their app, names are owned once, and go with the app.
pub fn event_resources_have_one_owner(store: &dyn Store) {
    use nimbus_core::events::{EventResources, QueueSpec};
    let with_queue = |name: &str| EventResources {
        queues: vec![QueueSpec::new(name)],
        ..EventResources::default()
    };
    store
        .deploy_app(&AppDeployment {
            app: "a".into(),
            digest: "d1".into(),
            functions: vec![sample_function("a", "f", "sha-a")],
            events: with_queue("orders"),
            workflows: Vec::new(),
        })
        .unwrap();
    assert!(matches!(
        store.put_events("", &with_queue("orders")),
        Err(StoreError::Conflict(_))
    ));
    store.put_events("", &with_queue("alone")).unwrap();
    let clash = store.deploy_app(&AppDeployment {
        app: "b".into(),
        digest: "d2".into(),
        functions: vec![sample_function("b", "g", "sha-b")],
        events: with_queue("alone"),
        workflows: Vec::new(),
    });
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    assert!(
        store
            .active_functions()
            .unwrap()
            .iter()
            .all(|f| f.version.function != "g")
    );
    let all = store.event_resources().unwrap();
    let owners: Vec<(&str, &str)> = all
        .iter()
        .map(|(app, e)| (app.as_str(), e.queues[0].name.as_str()))
        .collect();
    assert_eq!(owners, [("", "alone"), ("a", "orders")]);
    store.remove_app("a").unwrap();
    assert_eq!(store.event_resources().unwrap().len(), 1);
}

pub fn sample_function(app: &str, name: &str, artifact: &str) -> ActiveFunction {
    let config = FunctionConfig {
        runtime: Runtime::Wasm,
        memory_mb: 64,
        timeout_ms: 1000,
        env: BTreeMap::from([("K".into(), "V".into())]),
        secrets: BTreeMap::new(),
        allowed_hosts: vec![],
        handler: None,
        max_concurrency: None,
        min_instances: 0,
        concurrency_per_instance: None,
        rate_limit: None,
        client_rate_limit: None,
        events: Default::default(),
        durable: None,
    };
    ActiveFunction {
        version: FunctionVersion {
            id: FunctionVersion::content_id(artifact, &config),
            function: name.into(),
            app: app.into(),
            artifact_sha256: artifact.into(),
            kind: FunctionKind::Http,
            config,
            created_at_ms: 1,
        },
        routes: vec![RouteSpec::parse(&format!("GET /{name}")).unwrap()],
    }
}

/// Deploys `app` with one sample function per name, digest = names joined.
pub fn deploy_sample(store: &impl Store, app: &str, names: &[&str]) {
    store
        .deploy_app(&AppDeployment {
            events: Default::default(),
            app: app.into(),
            digest: names.join(","),
            functions: names
                .iter()
                .map(|n| sample_function(app, n, "a1"))
                .collect(),
            workflows: Vec::new(),
        })
        .unwrap();
}

fn names(store: &impl Store) -> Vec<String> {
    store
        .active_functions()
        .unwrap()
        .into_iter()
        .map(|f| f.version.function)
        .collect()
}

pub fn deploy_activates_every_function_and_route(store: &impl Store) {
    assert_eq!(store.app_digest("shop").unwrap(), None);
    deploy_sample(store, "shop", &["a", "b"]);
    let active = store.active_functions().unwrap();
    assert_eq!(active.len(), 2);
    assert_eq!(active[0], sample_function("shop", "a", "a1"));
    assert_eq!(store.app_digest("shop").unwrap().as_deref(), Some("a,b"));
    assert_eq!(store.apps().unwrap(), ["shop"]);
}

pub fn redeploy_replaces_the_app_as_a_whole(store: &impl Store) {
    deploy_sample(store, "shop", &["a", "b"]);
    deploy_sample(store, "other", &["z"]);
    deploy_sample(store, "shop", &["b", "c"]);
    assert_eq!(names(store), ["b", "c", "z"]);
}

/// A version once deployed is still there after a redeploy replaced it (a durable execution
/// started on it runs on it); it is found by its function and whole id only.
pub fn deployed_versions_stay_readable_after_a_redeploy(store: &impl Store) {
    let first = sample_function("shop", "f", "code-1").version;
    let deploy = |f: ActiveFunction| {
        store
            .deploy_app(&AppDeployment {
                events: Default::default(),
                app: "shop".into(),
                digest: f.version.id.clone(),
                functions: vec![f],
                workflows: Vec::new(),
            })
            .unwrap()
    };
    deploy(sample_function("shop", "f", "code-1"));
    deploy(sample_function("shop", "f", "code-2"));
    assert_ne!(store.active_functions().unwrap()[0].version, first);
    assert_eq!(store.version("f", &first.id).unwrap(), Some(first.clone()));
    assert_eq!(store.version("g", &first.id).unwrap(), None);
    assert_eq!(store.version("f", &first.id[..8]).unwrap(), None);
}

pub fn function_names_are_owned_by_one_app(store: &impl Store) {
    deploy_sample(store, "shop", &["a"]);
    let before = store.active_functions().unwrap();
    let err = store
        .deploy_app(&AppDeployment {
            events: Default::default(),
            app: "other".into(),
            digest: "x".into(),
            functions: vec![
                sample_function("other", "fresh", "a2"),
                sample_function("other", "a", "a2"),
            ],
            workflows: Vec::new(),
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("shop")),
        "{err}"
    );
    assert_eq!(
        store.active_functions().unwrap(),
        before,
        "a failed deploy changes nothing"
    );
    assert_eq!(store.app_digest("other").unwrap(), None);
}

pub fn removing_functions_and_apps(store: &impl Store) {
    deploy_sample(store, "shop", &["a", "b"]);
    assert!(store.remove_function("a").unwrap());
    assert!(!store.remove_function("a").unwrap());
    assert_eq!(names(store), ["b"]);
    assert_eq!(
        store.app_digest("shop").unwrap(),
        None,
        "a partial app is not its manifest"
    );
    assert!(store.remove_app("shop").unwrap());
    assert!(!store.remove_app("shop").unwrap());
    assert!(names(store).is_empty());
    assert!(store.apps().unwrap().is_empty());
}

pub fn sample_record(id: &str) -> InvocationRecord {
    record(id, "f", "")
}

fn record(id: &str, function: &str, logs: &str) -> InvocationRecord {
    InvocationRecord {
        id: id.into(),
        function: function.into(),
        version: "v".into(),
        trigger: Trigger::Http {
            route: "GET /a".into(),
        },
        start_ms: 5,
        duration_us: 1500,
        billed_ms: 2,
        memory_mb: 64,
        max_memory_bytes: 65536,
        cold_start: true,
        init_us: 300,
        outcome: Outcome::Error,
        error_type: Some(ErrorType::Timeout),
        error_message: Some("late".into()),
        logs: logs.into(),
    }
}

pub fn records_round_trip_and_logs_follow_a_cursor(store: &impl Store) {
    let batch = vec![
        record("i1", "a", "one\n"),
        record("i2", "a", ""),
        record("i3", "b", "other\n"),
        record("i4", "a", "four\n"),
    ];
    store.insert_records(&batch).unwrap();
    store.insert_records(&batch[..1]).unwrap(); // a replayed record is not duplicated
    assert_eq!(store.invocation("i1").unwrap(), Some(batch[0].clone()));
    assert_eq!(store.invocation("nope").unwrap(), None);
    let ids: Vec<String> = store
        .invocations("a", 10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["i4", "i2", "i1"]);
    assert_eq!(store.invocations("a", 1).unwrap().len(), 1);
    let logs = store.logs("a", 0, 10).unwrap();
    assert_eq!(
        logs.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["one\n", "four\n"]
    );
    let after = store.logs("a", logs[0].seq, 10).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].invocation_id, "i4");
    assert!(store.logs("a", logs[1].seq, 10).unwrap().is_empty());
    // The newest first picked, shown oldest first; `since` cuts by start time.
    let tail = store.recent_logs("a", 0, 1).unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].invocation_id, "i4");
    let both = store.recent_logs("a", 0, 10).unwrap();
    assert_eq!(both, logs);
    assert!(
        store.recent_logs("a", 6, 10).unwrap().is_empty(),
        "all started at 5"
    );
}

pub fn versions_are_published_once_per_change_and_aliases_name_them(store: &impl Store) {
    use nimbus_core::store::Alias;
    deploy_sample(store, "app1", &["f1"]);
    assert!(matches!(
        store.publish_version("nope", ""),
        Err(StoreError::NotFound(_))
    ));
    let v1 = store.publish_version("f1", "first").unwrap();
    assert_eq!(v1.number, 1);
    assert_eq!(v1.description, "first");
    // Nothing changed: the same version again.
    assert_eq!(store.publish_version("f1", "again").unwrap().number, 1);
    // New code: version 2, and version 1 still runs the old code.
    let mut changed = sample_function("app1", "f1", "other-artifact");
    changed.version.id = "changed".into();
    store
        .deploy_app(&AppDeployment {
            app: "app1".into(),
            digest: "d2".into(),
            functions: vec![changed],
            events: Default::default(),
            workflows: Vec::new(),
        })
        .unwrap();
    let v2 = store.publish_version("f1", "").unwrap();
    assert_eq!(v2.number, 2);
    let all = store.published_versions("f1").unwrap();
    assert_eq!(all.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(all[0].version, v1.version);
    assert_ne!(
        all[0].version.artifact_sha256,
        all[1].version.artifact_sha256
    );
    let mut kept = store.published_artifacts().unwrap();
    kept.sort();
    assert_eq!(kept.len(), 2);
    // Aliases point at published versions only.
    let live = Alias {
        function: "f1".into(),
        name: "live".into(),
        version: 1,
        additional: Some((2, 0.1)),
        description: String::new(),
    };
    store.put_alias(&live).unwrap();
    assert!(matches!(
        store.put_alias(&Alias {
            version: 9,
            ..live.clone()
        }),
        Err(StoreError::NotFound(_))
    ));
    store
        .put_alias(&Alias {
            version: 2,
            additional: None,
            ..live.clone()
        })
        .unwrap();
    let aliases = store.aliases("f1").unwrap();
    assert_eq!(aliases.len(), 1);
    assert_eq!((aliases[0].version, aliases[0].additional), (2, None));
    assert!(store.delete_alias("f1", "live").unwrap());
    assert!(!store.delete_alias("f1", "live").unwrap());
    // Removing the function removes its versions and aliases.
    store.put_alias(&live).unwrap();
    assert!(store.remove_function("f1").unwrap());
    assert!(store.published_versions("f1").unwrap().is_empty());
    assert!(store.aliases("f1").unwrap().is_empty());
}

pub fn api_keys_are_stored_by_hash(store: &impl Store) {
    assert!(store.api_key_hashes().unwrap().is_empty());
    store.insert_api_key("h1").unwrap();
    store.insert_api_key("h1").unwrap();
    assert_eq!(store.api_key_hashes().unwrap(), ["h1"]);
}
