//! The conformance suite every [`ExecutionStore`] must pass: each check takes a fresh store.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::journal::Journal;
use crate::model::OperationStatus;
use crate::store::{Created, ExecutionRecord, ExecutionStore};

/// Runs every check, each on a new store from `fresh`.
pub fn run_all<S: ExecutionStore>(fresh: impl Fn() -> S) {
    a_name_starts_one_execution(&fresh());
    saves_compare_revisions(&fresh());
    listings_filter_and_page_newest_first(&fresh());
    ended_executions_are_purged(&fresh());
}

pub fn record(function: &str, name: &str, start_ms: i64) -> ExecutionRecord {
    ExecutionRecord {
        arn: format!(
            "arn:aws:lambda:us-east-1:000000000000:function:{function}/durable-execution/{name}"
        ),
        function: function.into(),
        version: "v1".into(),
        name: name.into(),
        status: OperationStatus::Started,
        start_ms,
        end_ms: None,
        revision: 0,
        journal: Journal::start(Some(format!("{{\"name\":\"{name}\"}}")), start_ms),
        code: Some(format!("{function}-code")),
        parent: Some((format!("{function}-parent"), "op-1".into())),
    }
}

pub fn a_name_starts_one_execution(store: &dyn ExecutionStore) {
    let r = record("f", "order-1", 1);
    assert_eq!(store.create_execution(&r).unwrap(), Created::New);
    let mut again = record("f", "order-1", 2);
    again.arn.push_str("-other");
    match store.create_execution(&again).unwrap() {
        Created::Existing(found) => assert_eq!(*found, r),
        Created::New => panic!("a second execution of one name"),
    }
    assert!(store.execution(&again.arn).unwrap().is_none());
    // The same name on another function is another execution.
    assert_eq!(
        store.create_execution(&record("g", "order-1", 3)).unwrap(),
        Created::New
    );
    assert_eq!(store.execution(&r.arn).unwrap(), Some(r));
    assert!(store.execution("arn:nope").unwrap().is_none());
}

pub fn saves_compare_revisions(store: &dyn ExecutionStore) {
    let mut r = record("f", "a", 1);
    store.create_execution(&r).unwrap();
    r.status = OperationStatus::Succeeded;
    r.end_ms = Some(9);
    assert!(store.save_execution(&r, 0).unwrap());
    let stored = store.execution(&r.arn).unwrap().unwrap();
    assert_eq!(
        (stored.revision, stored.status, stored.end_ms),
        (1, OperationStatus::Succeeded, Some(9))
    );
    // A save from an older read loses and changes nothing.
    r.status = OperationStatus::Failed;
    assert!(!store.save_execution(&r, 0).unwrap());
    assert_eq!(
        store.execution(&r.arn).unwrap().unwrap().status,
        OperationStatus::Succeeded
    );
    assert!(store.running_executions().unwrap().is_empty());
}

pub fn listings_filter_and_page_newest_first(store: &dyn ExecutionStore) {
    for i in 0..5 {
        store
            .create_execution(&record("f", &format!("e{i}"), i))
            .unwrap();
    }
    store.create_execution(&record("other", "x", 10)).unwrap();
    let mut done = store.execution(&record("f", "e1", 1).arn).unwrap().unwrap();
    done.status = OperationStatus::Failed;
    done.end_ms = Some(20);
    assert!(store.save_execution(&done, 0).unwrap());
    let (page, more) = store.list_executions("f", None, None, 3).unwrap();
    let names: Vec<&str> = page.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["e4", "e3", "e2"]);
    assert!(more);
    let (rest, more) = store
        .list_executions("f", None, Some(&page[2].arn), 3)
        .unwrap();
    let names: Vec<&str> = rest.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["e1", "e0"]);
    assert!(!more);
    let (failed, _) = store
        .list_executions("f", Some(OperationStatus::Failed), None, 10)
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].end_ms, Some(20));
    let mut running = store.running_executions().unwrap();
    running.sort();
    assert_eq!(running.len(), 5);
}

pub fn ended_executions_are_purged(store: &dyn ExecutionStore) {
    let mut old = record("f", "old", 1);
    store.create_execution(&old).unwrap();
    store.create_execution(&record("f", "running", 1)).unwrap();
    old.status = OperationStatus::Succeeded;
    old.end_ms = Some(100);
    store.save_execution(&old, 0).unwrap();
    assert_eq!(store.purge_executions(None, 50).unwrap(), 0);
    assert_eq!(store.purge_executions(Some("another"), 101).unwrap(), 0);
    assert_eq!(store.purge_executions(None, 101).unwrap(), 1);
    assert!(store.execution(&old.arn).unwrap().is_none());
    assert_eq!(
        store.running_executions().unwrap().len(),
        1,
        "running ones stay"
    );
}
