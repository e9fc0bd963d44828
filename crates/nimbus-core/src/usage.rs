//! Metering and billing: usage aggregated from invocation records, and its cost under a price
//! sheet with a monthly free tier. Pure: the store aggregates, this module prices.
//!
//! Usage is exact integer arithmetic over the records: `requests` counts them, `billed_ms` sums
//! their billed milliseconds (1 ms granularity, rounded up per invocation), and `mb_ms` sums
//! memory configured (MiB) × billed ms, from which GB-seconds are derived
//! (`mb_ms / 1024 / 1000`), so totals always equal the sum of the records they come from.

use serde::{Deserialize, Serialize};

/// Prices, in `currency` units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceSheet {
    /// Currency label.
    pub currency: String,
    /// Per GB-second of configured memory × billed time.
    pub per_gb_second: f64,
    /// Per million requests.
    pub per_million_requests: f64,
    /// GB-seconds free each calendar month (UTC).
    pub free_gb_seconds_per_month: f64,
    /// Requests free each calendar month (UTC).
    pub free_requests_per_month: u64,
}

impl Default for PriceSheet {
    /// AWS Lambda's x86 list prices and free tier.
    fn default() -> Self {
        Self {
            currency: "USD".into(),
            per_gb_second: 0.000_016_666_7,
            per_million_requests: 0.20,
            free_gb_seconds_per_month: 400_000.0,
            free_requests_per_month: 1_000_000,
        }
    }
}

/// How usage is bucketed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Per hour (UTC).
    Hour,
    /// Per day (UTC).
    Day,
    /// One bucket for the whole range.
    Total,
}

impl Granularity {
    /// Bucket width in ms (`None`: the whole range).
    pub fn bucket_ms(self) -> Option<i64> {
        match self {
            Granularity::Hour => Some(3_600_000),
            Granularity::Day => Some(86_400_000),
            Granularity::Total => None,
        }
    }
}

/// What to aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// One function, or all.
    pub function: Option<String>,
    /// Records starting at or after this, unix ms.
    pub from_ms: i64,
    /// Records starting before this, unix ms.
    pub to_ms: i64,
    /// Buckets.
    pub granularity: Granularity,
}

/// Usage of one function in one time bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// Function.
    pub function: String,
    /// Bucket start, unix ms (the range start for [`Granularity::Total`]).
    pub period_start_ms: i64,
    /// Invocations.
    pub requests: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Of those, cold starts.
    pub cold_starts: u64,
    /// Billed milliseconds.
    pub billed_ms: u64,
    /// Memory configured (MiB) × billed ms.
    pub mb_ms: u64,
}

impl UsageRow {
    /// GB-seconds.
    pub fn gb_seconds(&self) -> f64 {
        self.mb_ms as f64 / 1024.0 / 1000.0
    }

    fn add(&mut self, other: &UsageRow) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.cold_starts += other.cold_starts;
        self.billed_ms += other.billed_ms;
        self.mb_ms += other.mb_ms;
    }
}

/// Usage and its cost over a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The rows, by period then function.
    pub rows: Vec<UsageRow>,
    /// Their sum (`function` is `*`).
    pub total: UsageRow,
    /// GB-seconds of the total.
    pub gb_seconds: f64,
    /// What it costs.
    pub cost: Cost,
}

/// A cost breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Currency label.
    pub currency: String,
    /// For compute (GB-seconds past the free tier).
    pub compute: f64,
    /// For requests (past the free tier).
    pub requests: f64,
    /// Sum.
    pub total: f64,
}

/// Parses a time for a usage range: unix milliseconds, a date (`2026-11-01`, midnight UTC), or an
/// RFC 3339 timestamp (`2026-11-01T12:00:00Z`).
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Some(t.as_millisecond());
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    Some(
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_millisecond(),
    )
}

/// The start (unix ms) of the calendar month (UTC) holding `unix_ms`.
pub fn month_start(unix_ms: i64) -> i64 {
    let m = month_of(unix_ms);
    let (year, month) = (m.div_euclid(12), m.rem_euclid(12) + 1);
    jiff::civil::date(year as i16, month as i8, 1)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_or(0, |z| z.timestamp().as_millisecond())
}

/// The calendar month (UTC) of `unix_ms`, as `year * 12 + month0`.
fn month_of(unix_ms: i64) -> i64 {
    let days = unix_ms.div_euclid(86_400_000);
    // Civil-from-days (Howard Hinnant's algorithm), enough for months.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    year * 12 + (month - 1)
}

/// Prices `rows` (hourly or daily buckets, so that each falls in one month): the free tier is
/// taken off each calendar month's total, for the whole account, before pricing.
pub fn cost(rows: &[UsageRow], prices: &PriceSheet) -> Cost {
    let mut months: std::collections::BTreeMap<i64, UsageRow> = Default::default();
    for r in rows {
        months
            .entry(month_of(r.period_start_ms))
            .or_default()
            .add(r);
    }
    let (mut compute, mut requests) = (0.0, 0.0);
    for m in months.values() {
        compute +=
            (m.gb_seconds() - prices.free_gb_seconds_per_month).max(0.0) * prices.per_gb_second;
        let billable = m.requests.saturating_sub(prices.free_requests_per_month);
        requests += billable as f64 / 1_000_000.0 * prices.per_million_requests;
    }
    Cost {
        currency: prices.currency.clone(),
        compute,
        requests,
        total: compute + requests,
    }
}

/// A report of `rows`, priced from `daily` (the same range at day granularity).
pub fn report(rows: Vec<UsageRow>, daily: &[UsageRow], prices: &PriceSheet) -> UsageReport {
    let mut total = UsageRow {
        function: "*".into(),
        ..UsageRow::default()
    };
    for r in &rows {
        total.add(r);
    }
    total.period_start_ms = rows.iter().map(|r| r.period_start_ms).min().unwrap_or(0);
    UsageReport {
        gb_seconds: total.gb_seconds(),
        cost: cost(daily, prices),
        rows,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(period: i64, requests: u64, mb_ms: u64) -> UsageRow {
        UsageRow {
            function: "f".into(),
            period_start_ms: period,
            requests,
            mb_ms,
            billed_ms: mb_ms / 128,
            ..UsageRow::default()
        }
    }

    #[test]
    fn months_are_civil_utc_months() {
        assert_eq!(month_of(0), 1970 * 12);
        // 2024-02-29T23:59:59.999Z and 2024-03-01T00:00:00Z.
        assert_eq!(month_of(1_709_251_199_999), 2024 * 12 + 1);
        assert_eq!(month_of(1_709_251_200_000), 2024 * 12 + 2);
    }

    #[test]
    fn the_free_tier_is_taken_off_each_month_before_pricing() {
        let prices = PriceSheet {
            currency: "X".into(),
            per_gb_second: 1.0,
            per_million_requests: 1.0,
            free_gb_seconds_per_month: 1.0,
            free_requests_per_month: 1_000_000,
        };
        // 3 GB-s and 2.5M requests in January, 0.5 GB-s and 0.5M requests in February.
        let jan = 1_704_067_200_000; // 2024-01-01
        let feb = 1_706_745_600_000; // 2024-02-01
        let rows = [
            row(jan, 2_000_000, 3 * 1024 * 1000),
            row(jan + 86_400_000, 500_000, 0),
            row(feb, 500_000, 512 * 1000),
        ];
        let c = cost(&rows, &prices);
        assert!((c.compute - 2.0).abs() < 1e-9, "{c:?}");
        assert!((c.requests - 1.5).abs() < 1e-9, "{c:?}");
        assert!((c.total - 3.5).abs() < 1e-9);
    }

    #[test]
    fn range_times_parse_in_three_forms() {
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2024-03-01"), Some(1_709_251_200_000));
        assert_eq!(parse_time("2024-03-01T00:00:01Z"), Some(1_709_251_201_000));
        assert_eq!(parse_time("March"), None);
        assert_eq!(
            month_start(1_709_251_200_000 + 5 * 86_400_000),
            1_709_251_200_000
        );
    }

    #[test]
    fn totals_are_exact_sums() {
        let rows = vec![row(10, 3, 384), row(20, 4, 1024)];
        let r = report(rows.clone(), &rows, &PriceSheet::default());
        assert_eq!(r.total.requests, 7);
        assert_eq!(r.total.mb_ms, 1408);
        assert_eq!(r.total.period_start_ms, 10);
        assert_eq!(r.cost.total, 0.0, "inside the free tier");
    }
}
