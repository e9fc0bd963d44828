//! The decisions of the event engine, pure and clock-free: retry backoff with jitter, whether a
//! failed async event is tried again, and which schedule tick (if any) fires now.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use nimbus_aws::events::Condition;
use nimbus_core::events::{AsyncPolicy, CatchUp};
use nimbus_core::schedule::Schedule;

/// Backoff before retry number `attempt` (1 = the first retry): exponential from `base_ms`,
/// capped at `cap_ms`, with "equal jitter": half fixed, half random (`unit` in `[0, 1)`), so
/// retries of many events spread out instead of arriving together.
pub fn backoff_ms(attempt: u32, base_ms: u64, cap_ms: u64, unit: f64) -> u64 {
    let exp = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(cap_ms);
    let half = exp / 2;
    half + (half as f64 * unit.clamp(0.0, 1.0)) as u64
}

/// What to do after an async attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this long.
    Retry {
        /// Delay, ms.
        after_ms: u64,
    },
    /// Stop: the event goes to the failure destination / dead-letter queue.
    GiveUp(Condition),
}

/// After `attempts` failed attempts of an event `age_ms` old.
pub fn after_failure(
    policy: &AsyncPolicy,
    attempts: u32,
    age_ms: u64,
    base_ms: u64,
    unit: f64,
) -> Verdict {
    if attempts > policy.max_retries {
        return Verdict::GiveUp(Condition::RetriesExhausted);
    }
    let after_ms = backoff_ms(attempts, base_ms, 5 * 60 * 1000, unit);
    if age_ms.saturating_add(after_ms) > policy.max_event_age_ms {
        return Verdict::GiveUp(Condition::EventAgeExceeded);
    }
    Verdict::Retry { after_ms }
}

/// What a schedule should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickPlan {
    /// Nothing is due.
    Idle,
    /// Fire for this scheduled time (unix ms) and move the cursor to it.
    Fire(i64),
    /// Fire nothing but move the cursor here (first sight, or skipped ticks).
    Advance(i64),
}

/// How late a tick may fire and still count as on time (for [`CatchUp::Skip`]).
pub const ON_TIME_MS: i64 = 60_000;

/// Decides the tick of `schedule` at `now_ms`, given the `cursor` (the last tick handled, or
/// `None` for a schedule never seen). Ticks in `(cursor, now]` are due; only the latest is
/// fired, once, so downtime never causes a burst. With [`CatchUp::Skip`] a tick later than
/// [`ON_TIME_MS`] is skipped. Rates count from the Unix epoch, so tick times are the same
/// across restarts.
pub fn plan_tick(
    schedule: &Schedule,
    tz: &TimeZone,
    cursor: Option<i64>,
    now_ms: i64,
    catch_up: CatchUp,
) -> TickPlan {
    let Some(cursor) = cursor else {
        return TickPlan::Advance(now_ms);
    };
    let (Ok(mut at), Ok(now)) = (
        Timestamp::from_millisecond(cursor),
        Timestamp::from_millisecond(now_ms),
    ) else {
        return TickPlan::Advance(now_ms);
    };
    let mut latest = None;
    for _ in 0..100_000 {
        match schedule.next_after(Timestamp::UNIX_EPOCH, at, tz) {
            Some(t) if t <= now => {
                latest = Some(t);
                at = t;
            }
            _ => break,
        }
    }
    match (latest, catch_up) {
        (None, _) => TickPlan::Idle,
        (Some(t), CatchUp::Skip) if now_ms - t.as_millisecond() > ON_TIME_MS => {
            TickPlan::Advance(t.as_millisecond())
        }
        (Some(t), _) => TickPlan::Fire(t.as_millisecond()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        assert_eq!(backoff_ms(1, 1000, 60_000, 0.0), 500);
        assert_eq!(backoff_ms(1, 1000, 60_000, 0.999), 999);
        assert_eq!(backoff_ms(3, 1000, 60_000, 0.0), 2000);
        assert_eq!(backoff_ms(30, 1000, 60_000, 0.0), 30_000);
        assert_eq!(backoff_ms(200, 1000, 60_000, 1.0), 60_000);
    }

    #[test]
    fn failures_retry_until_the_policy_says_stop() {
        let policy = AsyncPolicy {
            max_retries: 2,
            max_event_age_ms: 60_000,
            ..AsyncPolicy::default()
        };
        assert_eq!(
            after_failure(&policy, 1, 0, 1000, 0.0),
            Verdict::Retry { after_ms: 500 }
        );
        assert!(matches!(
            after_failure(&policy, 2, 0, 1000, 0.0),
            Verdict::Retry { .. }
        ));
        assert_eq!(
            after_failure(&policy, 3, 0, 1000, 0.0),
            Verdict::GiveUp(Condition::RetriesExhausted)
        );
        assert_eq!(
            after_failure(&policy, 1, 59_800, 1000, 0.0),
            Verdict::GiveUp(Condition::EventAgeExceeded)
        );
        let none = AsyncPolicy {
            max_retries: 0,
            ..AsyncPolicy::default()
        };
        assert_eq!(
            after_failure(&none, 1, 0, 1000, 0.0),
            Verdict::GiveUp(Condition::RetriesExhausted)
        );
    }

    const MIN: i64 = 60_000;

    #[test]
    fn a_new_schedule_starts_from_now_and_fires_each_tick_once() {
        let every = Schedule::parse("rate(5 minutes)").unwrap();
        let utc = TimeZone::UTC;
        let t0 = 1_000 * MIN + 7;
        assert_eq!(
            plan_tick(&every, &utc, None, t0, CatchUp::Once),
            TickPlan::Advance(t0)
        );
        assert_eq!(
            plan_tick(&every, &utc, Some(t0), t0 + MIN, CatchUp::Once),
            TickPlan::Idle
        );
        let tick = 1_005 * MIN;
        assert_eq!(
            plan_tick(&every, &utc, Some(t0), tick, CatchUp::Once),
            TickPlan::Fire(tick)
        );
        // After firing, the cursor is the tick: the same tick never fires again.
        assert_eq!(
            plan_tick(&every, &utc, Some(tick), tick + 1_000, CatchUp::Once),
            TickPlan::Idle
        );
    }

    #[test]
    fn downtime_fires_once_or_skips() {
        let every = Schedule::parse("cron(0 * * * ? *)").unwrap();
        let utc = TimeZone::UTC;
        let cursor = 60 * MIN * 10;
        let now = 60 * MIN * 15 + 5 * MIN;
        assert_eq!(
            plan_tick(&every, &utc, Some(cursor), now, CatchUp::Once),
            TickPlan::Fire(60 * MIN * 15)
        );
        assert_eq!(
            plan_tick(&every, &utc, Some(cursor), now, CatchUp::Skip),
            TickPlan::Advance(60 * MIN * 15)
        );
        // On time (within a minute), skip still fires.
        assert_eq!(
            plan_tick(
                &every,
                &utc,
                Some(cursor),
                60 * MIN * 15 + 1_000,
                CatchUp::Skip
            ),
            TickPlan::Fire(60 * MIN * 15)
        );
    }
}
