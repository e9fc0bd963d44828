//! The behaviour every [`MessageLog`] must show. Call [`run_all`] from an implementation's tests
//! with a factory of fresh, empty logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{LogError, MessageLog, MessageState, NewMessage, Outcome, Settle};

fn msg(queue: &str, body: &str) -> NewMessage {
    NewMessage {
        queue: queue.into(),
        body: body.as_bytes().to_vec(),
        ..NewMessage::default()
    }
}

/// Runs every check, each on a fresh log from `fresh` (which may return a guard to keep alive).
pub fn run_all<G, L: MessageLog>(fresh: impl Fn() -> (G, L)) {
    let (_g, log) = fresh();
    delivers_in_order_once_per_lease(&log);
    let (_g, log) = fresh();
    unacked_messages_come_back_after_the_lease(&log);
    let (_g, log) = fresh();
    receipts_are_per_delivery(&log);
    let (_g, log) = fresh();
    delays_dedup_attributes_and_stats(&log);
    let (_g, log) = fresh();
    settled_outcomes_are_looked_up_until_expired(&log);
    let (_g, log) = fresh();
    cursors_move_with_their_appends_and_leases_can_be_released(&log);
    let (_g, log) = fresh();
    the_next_visible_time_is_the_earliest_delay_or_lease_end(&log);
    let (_g, log) = fresh();
    concurrent_appends_all_land(log);
}

/// An idle consumer sleeps until the next delay or lease ends: the log says when that is.
pub fn the_next_visible_time_is_the_earliest_delay_or_lease_end(log: &impl MessageLog) {
    assert_eq!(log.next_visible("q", 1_000).unwrap(), None, "empty queue");
    let mut later = msg("q", "later");
    later.deliver_after_ms = 9_000;
    log.append(vec![later], 1_000).unwrap();
    assert_eq!(log.next_visible("q", 1_000).unwrap(), Some(9_000));
    log.append(vec![msg("q", "now")], 1_000).unwrap();
    assert_eq!(log.next_visible("q", 1_000).unwrap(), Some(1_000));
    let leased = log.receive("q", 1, 5_000, 1_000).unwrap();
    assert_eq!(leased.len(), 1);
    // The lease ends at 6 000, before the delay at 9 000.
    assert_eq!(log.next_visible("q", 1_000).unwrap(), Some(6_000));
    assert_eq!(log.next_visible("other", 1_000).unwrap(), None);
    // Past both: deliverable now.
    assert_eq!(log.next_visible("q", 10_000).unwrap(), Some(10_000));
}

/// Oldest first; a leased message is not delivered again; queues are separate.
pub fn delivers_in_order_once_per_lease(log: &impl MessageLog) {
    let ids = log
        .append(vec![msg("a", "1"), msg("a", "2"), msg("b", "x")], 1_000)
        .unwrap();
    assert_eq!(ids.len(), 3);
    let got = log.receive("a", 10, 30_000, 1_000).unwrap();
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.body.as_slice()).collect();
    assert_eq!(bodies, [b"1", b"2"]);
    assert_eq!(got[0].id, ids[0]);
    assert_eq!(got[0].receive_count, 1);
    assert!(log.receive("a", 10, 30_000, 2_000).unwrap().is_empty());
    for d in &got {
        log.ack("a", &d.receipt).unwrap();
    }
    assert_eq!(log.stats("a", 2_000).unwrap().messages, 0);
    assert_eq!(log.receive("b", 1, 30_000, 2_000).unwrap()[0].body, b"x");
}

/// At-least-once: a lease that lapses makes the message deliverable again, counted.
pub fn unacked_messages_come_back_after_the_lease(log: &impl MessageLog) {
    log.append(vec![msg("q", "m")], 0).unwrap();
    let first = log.receive("q", 1, 1_000, 0).unwrap();
    assert_eq!(first.len(), 1);
    assert!(log.receive("q", 1, 1_000, 999).unwrap().is_empty());
    let second = log.receive("q", 1, 1_000, 1_000).unwrap();
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].receive_count, 2);
    // Extending keeps it; releasing (0) makes it visible at once.
    log.extend("q", &second[0].receipt, 5_000, 1_500).unwrap();
    assert!(log.receive("q", 1, 1_000, 6_000).unwrap().is_empty());
    log.extend("q", &second[0].receipt, 0, 6_000).unwrap();
    let third = log.receive("q", 1, 1_000, 6_000).unwrap();
    assert_eq!(third[0].receive_count, 3);
}

/// Only the current lease's receipt acks or extends.
pub fn receipts_are_per_delivery(log: &impl MessageLog) {
    log.append(vec![msg("q", "m")], 0).unwrap();
    let old = log.receive("q", 1, 100, 0).unwrap().remove(0);
    let new = log.receive("q", 1, 100, 200).unwrap().remove(0);
    assert_ne!(old.receipt, new.receipt);
    assert!(matches!(
        log.ack("q", &old.receipt),
        Err(LogError::StaleReceipt(_))
    ));
    assert!(matches!(
        log.ack("q", "never-issued"),
        Err(LogError::StaleReceipt(_))
    ));
    log.ack("q", &new.receipt).unwrap();
    assert!(matches!(
        log.ack("q", &new.receipt),
        Err(LogError::StaleReceipt(_))
    ));
}

/// Delayed messages wait; dedup keys return the first id; attributes and stats are kept.
pub fn delays_dedup_attributes_and_stats(log: &impl MessageLog) {
    let mut delayed = msg("q", "later");
    delayed.deliver_after_ms = 5_000;
    delayed.attributes = vec![("type".into(), "order".into())];
    let mut keyed = msg("q", "once");
    keyed.dedup_key = Some("k1".into());
    let ids = log.append(vec![delayed, keyed.clone()], 1_000).unwrap();
    let again = log.append(vec![keyed], 2_000).unwrap();
    assert_eq!(again[0], ids[1], "the duplicate returns the first id");
    let stats = log.stats("q", 2_000).unwrap();
    assert_eq!(
        (stats.messages, stats.in_flight, stats.oldest_ms),
        (2, 0, 1_000)
    );
    let now = log.receive("q", 10, 1_000, 2_000).unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].body, b"once");
    assert_eq!(log.stats("q", 2_000).unwrap().in_flight, 1);
    log.ack("q", &now[0].receipt).unwrap();
    let later = log.receive("q", 10, 1_000, 5_000).unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].body, b"later");
    assert_eq!(
        later[0].attributes,
        [("type".to_string(), "order".to_string())]
    );
}

/// Appends from many threads at once all land, each exactly once.
pub fn concurrent_appends_all_land<L: MessageLog>(log: L) {
    let log = std::sync::Arc::new(log);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    log.append(vec![msg("c", &format!("{t}-{i}"))], 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = log.receive("c", 1_000, 60_000, 2).unwrap();
    let mut bodies: Vec<Vec<u8>> = got.into_iter().map(|d| d.body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 400);
}

/// A message can be found while waiting, while leased and, with an outcome, after settling;
/// batches settle per item; purge empties one queue.
pub fn settled_outcomes_are_looked_up_until_expired(log: &impl MessageLog) {
    let ids = log
        .append(vec![msg("q", "a"), msg("q", "b"), msg("other", "c")], 1_000)
        .unwrap();
    assert_eq!(
        log.lookup(&ids[0], 1_000).unwrap().unwrap().state,
        MessageState::Waiting { visible_ms: 1_000 }
    );
    let got = log.receive("q", 2, 5_000, 1_000).unwrap();
    let info = log.lookup(&ids[0], 2_000).unwrap().unwrap();
    assert_eq!(info.state, MessageState::Leased { until_ms: 6_000 });
    assert_eq!((info.queue.as_str(), info.receive_count), ("q", 1));
    let outcome = Outcome {
        status: "succeeded".into(),
        detail: "{}".into(),
    };
    let settled = log
        .settle(
            "q",
            vec![
                Settle {
                    receipt: got[0].receipt.clone(),
                    outcome: Some(outcome.clone()),
                },
                Settle {
                    receipt: "stale".into(),
                    outcome: None,
                },
                Settle {
                    receipt: got[1].receipt.clone(),
                    outcome: None,
                },
            ],
            3_000,
        )
        .unwrap();
    assert_eq!(settled, [true, false, true]);
    let info = log.lookup(&ids[0], 3_000).unwrap().unwrap();
    assert_eq!(info.state, MessageState::Settled(outcome));
    assert_eq!(info.settled_ms, 3_000);
    assert_eq!(log.lookup(&ids[1], 3_000).unwrap(), None, "no outcome kept");
    log.expire(3_001).unwrap();
    assert_eq!(log.lookup(&ids[0], 3_001).unwrap(), None);
    assert_eq!(log.purge("other").unwrap(), 1);
    assert_eq!(log.stats("other", 3_001).unwrap().messages, 0);
}

/// A cursor is set in the same commit as its append; released leases are deliverable at once.
pub fn cursors_move_with_their_appends_and_leases_can_be_released(log: &impl MessageLog) {
    assert_eq!(log.cursor("tick").unwrap(), None);
    log.append_with_cursor(vec![msg("q", "t1")], ("tick", 60_000), 1_000)
        .unwrap();
    assert_eq!(log.cursor("tick").unwrap(), Some(60_000));
    let leased = log.receive("q", 1, 60_000, 1_000).unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(log.release_leases(2_000).unwrap(), 1);
    let again = log.receive("q", 1, 60_000, 2_000).unwrap();
    assert_eq!(again[0].id, leased[0].id);
    assert_eq!(again[0].receive_count, 2);
}
