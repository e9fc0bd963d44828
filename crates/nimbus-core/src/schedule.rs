//! Schedule expressions in Amazon EventBridge syntax, and their next fire times in a time zone.
//!
//! - `rate(5 minutes)`, `rate(1 hour)`, `rate(2 days)`: every interval, from a start time.
//! - `cron(Minutes Hours Day-of-month Month Day-of-week Year)`: six fields; exactly one of the
//!   day fields is `?`. Fields take `*`, lists (`1,15`), ranges (`MON-FRI`), steps (`0/15`,
//!   `*/10`), month and day names, `L` (last day of the month, or the last such weekday as
//!   `6L`) and `n#k` (the k-th weekday n of the month). Day-of-week counts 1 = Sunday, as on AWS.
//!   `W` (nearest weekday) is not supported and is rejected with a clear message.
//!
//! Times are computed in the schedule's time zone (wall clock, DST-aware) and returned as
//! instants; pure functions of their inputs, so they are tested without clocks.

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every `minutes` minutes.
    Rate {
        /// The interval in minutes.
        minutes: i64,
    },
    /// Wall-clock times matching the fields.
    Cron(Box<Cron>),
}

/// The fields of a `cron(...)` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: DayRule,
    months: Vec<bool>,
    years: Option<Vec<i16>>,
}

#[derive(Debug, Clone, PartialEq)]
enum DayRule {
    /// Day-of-month set (index 1..=31), or the last day.
    MonthDays {
        days: Vec<bool>,
        last: bool,
    },
    /// Weekday set (index 0 = Sunday), or a last weekday, or the n-th weekday.
    WeekDays(Vec<bool>),
    LastWeekday(u8),
    NthWeekday(u8, u8),
}

/// Why an expression is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule `{expression}`: {message}")]
pub struct ScheduleError {
    expression: String,
    message: String,
}

/// The longest rate: ten years (a longer one is refused: it could overflow time arithmetic).
pub const MAX_RATE_DAYS: i64 = 3650;
const MAX_RATE_MINUTES: i64 = MAX_RATE_DAYS * 24 * 60;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(token: &str, names: &[&str], base: u32) -> Option<u32> {
    token.parse::<u32>().ok().or_else(|| {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(token))
            .map(|i| i as u32 + base)
    })
}

/// Parses a field of `*`, lists, ranges and steps into a set over `min..=max`.
fn field(text: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<Vec<bool>, String> {
    let mut set = vec![false; max as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: bad step in `{part}`"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (
                    value(a, names, min).ok_or_else(|| format!("{what}: `{a}` is not a value"))?,
                    value(b, names, min).ok_or_else(|| format!("{what}: `{b}` is not a value"))?,
                ),
                None => {
                    let v = value(r, names, min)
                        .ok_or_else(|| format!("{what}: `{r}` is not a value"))?;
                    (v, if part.contains('/') { max } else { v })
                }
            },
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{what}: `{part}` is outside {min}-{max}"));
        }
        for v in (lo..=hi).step_by(step as usize) {
            set[v as usize] = true;
        }
    }
    Ok(set)
}

impl Schedule {
    /// Parses `rate(VALUE UNIT)` (at most [`MAX_RATE_DAYS`] days) or
    /// `cron(minutes hours day-of-month month day-of-week year)`.
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let fail = |message: String| ScheduleError {
            expression: expression.to_string(),
            message,
        };
        let e = expression.trim();
        if let Some(inner) = e.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            let (n, unit) = inner
                .trim()
                .split_once(' ')
                .ok_or_else(|| fail("write rate(VALUE UNIT), e.g. rate(5 minutes)".into()))?;
            let n: i64 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| fail(format!("`{n}` is not a positive whole number")))?;
            let per = match (unit.trim(), n) {
                ("minute", 1) | ("minutes", 2..) => 1,
                ("hour", 1) | ("hours", 2..) => 60,
                ("day", 1) | ("days", 2..) => 24 * 60,
                (u, _) => {
                    return Err(fail(format!(
                        "`{u}`: the unit is minute(s), hour(s) or day(s), singular for 1"
                    )));
                }
            };
            let minutes = n
                .checked_mul(per)
                .filter(|m| *m <= MAX_RATE_MINUTES)
                .ok_or_else(|| fail(format!("`{inner}` is longer than {MAX_RATE_DAYS} days")))?;
            return Ok(Schedule::Rate { minutes });
        }
        let inner = e
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| fail("write rate(...) or cron(...)".into()))?;
        let f: Vec<&str> = inner.split_whitespace().collect();
        let [minute, hour, dom, month, dow, year] = f[..] else {
            return Err(fail(format!(
                "cron takes 6 fields (minutes hours day-of-month month day-of-week year), not {}",
                f.len()
            )));
        };
        let days = match (dom, dow) {
            _ if (dom == "?") == (dow == "?") => {
                return Err(fail(
                    "exactly one of day-of-month and day-of-week must be `?`".into(),
                ));
            }
            (_, _) if dom.contains('W') || dow.contains('W') => {
                return Err(fail("`W` (nearest weekday) is not supported".into()));
            }
            ("L", "?") => DayRule::MonthDays {
                days: vec![false; 32],
                last: true,
            },
            (d, "?") => DayRule::MonthDays {
                days: field(d, 1, 31, &[], "day-of-month").map_err(fail)?,
                last: false,
            },
            ("?", w) if w.ends_with('L') => {
                let d = value(&w[..w.len() - 1], &DAYS, 1)
                    .filter(|d| (1..=7).contains(d))
                    .ok_or_else(|| fail(format!("day-of-week: `{w}` is not nL")))?;
                DayRule::LastWeekday(d as u8 - 1)
            }
            ("?", w) if w.contains('#') => {
                let (d, k) = w.split_once('#').unwrap_or((w, ""));
                let d = value(d, &DAYS, 1).filter(|d| (1..=7).contains(d));
                let k = k.parse::<u8>().ok().filter(|k| (1..=5).contains(k));
                match (d, k) {
                    (Some(d), Some(k)) => DayRule::NthWeekday(d as u8 - 1, k),
                    _ => return Err(fail(format!("day-of-week: `{w}` is not DAY#1-5"))),
                }
            }
            ("?", w) => {
                let set = field(w, 1, 7, &DAYS, "day-of-week").map_err(fail)?;
                DayRule::WeekDays(set[1..].to_vec())
            }
            _ => unreachable!("one day field is `?`"),
        };
        let years = match year {
            "*" => None,
            y => {
                let set = field(y, 1970, 2199, &[], "year").map_err(fail)?;
                Some(
                    set.iter()
                        .enumerate()
                        .filter(|(_, on)| **on)
                        .map(|(y, _)| y as i16)
                        .collect(),
                )
            }
        };
        Ok(Schedule::Cron(Box::new(Cron {
            minutes: field(minute, 0, 59, &[], "minutes").map_err(fail)?,
            hours: field(hour, 0, 23, &[], "hours").map_err(fail)?,
            days,
            months: field(month, 1, 12, &MONTHS, "month").map_err(fail)?,
            years,
        })))
    }

    /// The first fire time strictly after `after`. Rates count from `start`; cron times are wall
    /// clock times in `tz` (a time skipped by a DST change fires at the next valid instant).
    pub fn next_after(
        &self,
        start: Timestamp,
        after: Timestamp,
        tz: &TimeZone,
    ) -> Option<Timestamp> {
        match self {
            Schedule::Rate { minutes } => {
                let period = minutes * 60;
                let elapsed = after.as_second() - start.as_second();
                let n = if elapsed < 0 { 0 } else { elapsed / period + 1 };
                Timestamp::from_second(start.as_second() + n * period).ok()
            }
            Schedule::Cron(c) => c.next_after(after, tz),
        }
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.to_sunday_zero_offset() as usize
}

impl Cron {
    fn day_matches(&self, d: Date) -> bool {
        match &self.days {
            DayRule::MonthDays { days, last } => {
                if *last {
                    d.day() == d.days_in_month()
                } else {
                    days[d.day() as usize]
                }
            }
            DayRule::WeekDays(set) => set[weekday_index(d.weekday())],
            DayRule::LastWeekday(w) => {
                weekday_index(d.weekday()) == *w as usize && d.day() + 7 > d.days_in_month()
            }
            DayRule::NthWeekday(w, k) => {
                weekday_index(d.weekday()) == *w as usize && (d.day() - 1) / 7 + 1 == *k as i8
            }
        }
    }

    fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        // Start at the next whole minute.
        let mut t = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = t.checked_add(5.years()).ok()?;
        while t < limit {
            let date = t.date();
            let year_ok = self
                .years
                .as_ref()
                .is_none_or(|ys| ys.contains(&date.year()));
            if !year_ok || !self.months[date.month() as usize] || !self.day_matches(date) {
                t = DateTime::from(date.tomorrow().ok()?);
                continue;
            }
            if !self.hours[t.hour() as usize] {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes[t.minute() as usize] {
                let fired = tz.to_ambiguous_zoned(t).compatible().ok()?.timestamp();
                if fired > after {
                    return Some(fired);
                }
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(expr: &str, after: &str, tz: &str) -> String {
        let tz = TimeZone::get(tz).unwrap();
        Schedule::parse(expr)
            .unwrap()
            .next_after(ts("2026-01-01T00:00:00Z"), ts(after), &tz)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn rates_longer_than_ten_years_are_refused_not_overflowed() {
        assert!(Schedule::parse("rate(3650 days)").is_ok());
        for long in [
            "rate(3651 days)",
            "rate(072000000771245297 days)",
            "rate(9223372036854775807 hours)",
        ] {
            let e = Schedule::parse(long).unwrap_err();
            assert!(e.to_string().contains("longer than 3650 days"), "{e}");
        }
    }

    #[test]
    fn rates_count_from_the_start() {
        assert_eq!(
            Schedule::parse("rate(5 minutes)").unwrap(),
            Schedule::Rate { minutes: 5 }
        );
        assert_eq!(
            Schedule::parse("rate(1 day)").unwrap(),
            Schedule::Rate { minutes: 1440 }
        );
        assert_eq!(
            next("rate(5 minutes)", "2026-01-01T00:07:00Z", "UTC"),
            "2026-01-01T00:10:00Z"
        );
        assert_eq!(
            next("rate(1 hour)", "2025-12-31T00:00:00Z", "UTC"),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            next("rate(5 minutes)", "2026-01-01T00:10:00Z", "UTC"),
            "2026-01-01T00:15:00Z"
        );
    }

    #[test]
    fn next_fire_times() {
        // (expression, after, time zone, next fire time)
        let table = [
            // Every 15 minutes on weekdays: Friday night rolls over to Monday.
            (
                "cron(0/15 * ? * MON-FRI *)",
                "2026-11-20T23:50:00Z",
                "UTC",
                "2026-11-23T00:00:00Z",
            ),
            // Noon on the 1st and 15th.
            (
                "cron(0 12 1,15 * ? *)",
                "2026-03-01T12:00:00Z",
                "UTC",
                "2026-03-15T12:00:00Z",
            ),
            // Last day of February, in a leap year.
            (
                "cron(0 0 L 2 ? *)",
                "2027-03-01T00:00:00Z",
                "UTC",
                "2028-02-29T00:00:00Z",
            ),
            // The last Friday (6L) and the second Tuesday (3#2) of the month.
            (
                "cron(30 9 ? * 6L *)",
                "2026-11-01T00:00:00Z",
                "UTC",
                "2026-11-27T09:30:00Z",
            ),
            (
                "cron(0 8 ? * 3#2 *)",
                "2026-11-01T00:00:00Z",
                "UTC",
                "2026-11-10T08:00:00Z",
            ),
            // A year list that has passed never fires again.
            ("cron(0 0 1 1 ? 2025)", "2026-01-01T00:00:00Z", "UTC", ""),
            // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
            (
                "cron(0 9 * * ? *)",
                "2026-01-10T12:00:00Z",
                "Europe/Berlin",
                "2026-01-11T08:00:00Z",
            ),
            (
                "cron(0 9 * * ? *)",
                "2026-07-10T12:00:00Z",
                "Europe/Berlin",
                "2026-07-11T07:00:00Z",
            ),
            // 02:30 does not exist on 2026-03-29 in Berlin (02:00 -> 03:00): it fires at the
            // instant the clock passes it.
            (
                "cron(30 2 * * ? *)",
                "2026-03-28T12:00:00Z",
                "Europe/Berlin",
                "2026-03-29T01:30:00Z",
            ),
        ];
        for (expr, after, tz, expected) in table {
            assert_eq!(
                next(expr, after, tz),
                expected,
                "{expr} after {after} in {tz}"
            );
        }
    }

    #[test]
    fn bad_expressions_say_why() {
        for (expr, says) in [
            ("every 5 minutes", "rate(...) or cron(...)"),
            ("rate(5 minute)", "singular for 1"),
            ("rate(0 minutes)", "positive"),
            ("rate(1 minutes)", "singular for 1"),
            ("cron(0 12 * * *)", "6 fields"),
            ("cron(0 12 * * * *)", "exactly one"),
            ("cron(0 12 ? * ? *)", "exactly one"),
            ("cron(61 12 * * ? *)", "outside 0-59"),
            ("cron(0 12 15W * ? *)", "not supported"),
            ("cron(0 12 ? * FUNDAY *)", "not a value"),
            ("cron(0/0 12 * * ? *)", "bad step"),
        ] {
            let e = Schedule::parse(expr).unwrap_err().to_string();
            assert!(e.contains(says), "{expr}: {e}");
        }
    }
}
