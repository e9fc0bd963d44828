//! Keep-alive policies: how long an idle function instance stays warm, and when to pre-warm one.
//! Pure decision logic, with a simulator that replays arrival traces through a policy.
//!
//! - [`KeepAlive::Fixed`]: keep an instance for a fixed time after each invocation (10 minutes by
//!   default, the platform's standard).
//! - [`KeepAlive::Hybrid`]: the hybrid histogram policy of "Serverless in the Wild" (Shahrad et
//!   al., USENIX ATC 2020). Each function's idle times (the gaps between invocations) go into a
//!   histogram of 1-minute bins up to a range (4 hours). When the histogram is representative —
//!   enough samples, few gaps past the range, and a concentrated shape (coefficient of variation of
//!   the bin counts above a threshold) — the instance is unloaded right after an invocation and
//!   pre-warmed just before the *head* of the idle-time distribution (5th percentile, minus a
//!   margin), then kept until its *tail* (99th percentile, plus a margin). Otherwise it falls back
//!   to the fixed keep-alive. One addition to the paper: a histogram whose window would be longer
//!   than the fixed keep-alive (idle times spread out, so the prediction is weak) also falls back;
//!   the policy departs from the default only where it is confident and cheaper.
//!
//! Times are milliseconds; nothing here reads a clock.

/// Width of a histogram bin.
pub const BIN_MS: i64 = 60_000;

/// A keep-alive policy.
#[derive(Debug, Clone, PartialEq)]
pub enum KeepAlive {
    /// Keep every instance this long after an invocation.
    Fixed {
        /// Keep-alive, ms.
        keep_ms: i64,
    },
    /// The hybrid histogram policy.
    Hybrid(HybridConfig),
}

/// Parameters of the hybrid histogram policy (the paper's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct HybridConfig {
    /// Histogram range, in bins (240 one-minute bins: 4 hours).
    pub bins: usize,
    /// Head percentile for the pre-warm window.
    pub head: f64,
    /// Tail percentile for the keep-alive window.
    pub tail: f64,
    /// Margin taken off the pre-warm window and added to the keep-alive window (0.1 = 10%).
    pub margin: f64,
    /// Samples needed before the histogram is trusted.
    pub min_samples: u32,
    /// Coefficient of variation of the bin counts above which the pattern counts as clear.
    pub cv_threshold: f64,
    /// Largest share of idle times past the range for the histogram to be used.
    pub max_out_of_range: f64,
    /// Keep-alive when the pattern is unclear.
    pub fallback_keep_ms: i64,
    /// Largest keep-alive window the histogram may choose: a wider one means the idle times are
    /// spread out (Poisson-like, or bursts far apart), where the prediction buys little; such
    /// functions use the fixed keep-alive.
    pub max_keep_ms: i64,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            bins: 240,
            head: 0.05,
            tail: 0.99,
            margin: 0.10,
            min_samples: 10,
            cv_threshold: 2.0,
            max_out_of_range: 0.5,
            fallback_keep_ms: 10 * 60_000,
            max_keep_ms: 10 * 60_000,
        }
    }
}

/// What to do with a function's instance after an invocation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Unload now and load again this long after the invocation ended (0: keep it loaded).
    pub prewarm_ms: i64,
    /// Then keep it warm this long.
    pub keep_ms: i64,
}

/// One function's idle-time history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdleHistogram {
    counts: Vec<u32>,
    out_of_range: u32,
    samples: u32,
}

impl IdleHistogram {
    /// Records an idle time (end of one invocation to the start of the next).
    pub fn record(&mut self, idle_ms: i64, bins: usize) {
        if self.counts.len() != bins {
            self.counts.resize(bins, 0);
        }
        self.samples += 1;
        let bin = (idle_ms.max(0) / BIN_MS) as usize;
        match self.counts.get_mut(bin) {
            Some(c) => *c += 1,
            None => self.out_of_range += 1,
        }
    }

    /// Idle times recorded.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// The bin holding percentile `p` of the in-range samples.
    fn percentile_bin(&self, p: f64) -> usize {
        let in_range: u32 = self.counts.iter().sum();
        let target = ((f64::from(in_range) * p).ceil() as u32).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return i;
            }
        }
        self.counts.len().saturating_sub(1)
    }

    /// Coefficient of variation of the bin counts: high when idle times cluster in few bins.
    fn cv(&self) -> f64 {
        let n = self.counts.len() as f64;
        if n == 0.0 {
            return 0.0;
        }
        let mean = self.counts.iter().map(|&c| f64::from(c)).sum::<f64>() / n;
        if mean == 0.0 {
            return 0.0;
        }
        let var = self
            .counts
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / n;
        var.sqrt() / mean
    }
}

impl KeepAlive {
    /// The window for an instance of a function with idle-time history `h`.
    pub fn window(&self, h: &IdleHistogram) -> Window {
        let c = match self {
            KeepAlive::Fixed { keep_ms } => {
                return Window {
                    prewarm_ms: 0,
                    keep_ms: *keep_ms,
                };
            }
            KeepAlive::Hybrid(c) => c,
        };
        let fallback = Window {
            prewarm_ms: 0,
            keep_ms: c.fallback_keep_ms,
        };
        if h.samples < c.min_samples
            || f64::from(h.out_of_range) / f64::from(h.samples) > c.max_out_of_range
            || h.cv() < c.cv_threshold
        {
            return fallback;
        }
        let head = h.percentile_bin(c.head) as i64 * BIN_MS;
        let tail = (h.percentile_bin(c.tail) as i64 + 1) * BIN_MS;
        let prewarm_ms = (head as f64 * (1.0 - c.margin)) as i64;
        let keep_ms = (((tail - prewarm_ms) as f64 * (1.0 + c.margin)) as i64).max(BIN_MS);
        if keep_ms > c.max_keep_ms {
            return fallback;
        }
        Window {
            prewarm_ms,
            keep_ms,
        }
    }
}

impl KeepAlive {
    /// The hybrid policy with the paper's parameters around a fixed keep-alive of `keep_ms`
    /// (the fallback, and the longest window the histogram may choose).
    pub fn hybrid_around(keep_ms: i64) -> Self {
        KeepAlive::Hybrid(HybridConfig {
            fallback_keep_ms: keep_ms,
            max_keep_ms: keep_ms,
            ..HybridConfig::default()
        })
    }

    /// Histogram bins this policy uses (for [`Activity::arrive`]).
    pub fn bins(&self) -> usize {
        match self {
            KeepAlive::Fixed { .. } => HybridConfig::default().bins,
            KeepAlive::Hybrid(c) => c.bins,
        }
    }
}

/// One function's activity as a runtime sees it: invocations in flight, when it last went
/// idle, and its idle-time history. Times are milliseconds on any monotonic clock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    running: usize,
    idle_since: Option<i64>,
    history: IdleHistogram,
}

/// What to do with a function's instances now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// For each idle instance given, whether to stop it.
    pub expire: Vec<bool>,
    /// Whether to start one instance ahead of the predicted next invocation.
    pub prewarm: bool,
}

impl Activity {
    /// An invocation starts. If the function was idle, the gap is an idle time.
    pub fn arrive(&mut self, now_ms: i64, bins: usize) {
        if self.running == 0
            && let Some(since) = self.idle_since
        {
            self.history.record(now_ms - since, bins);
        }
        self.running += 1;
    }

    /// An invocation ends.
    pub fn depart(&mut self, now_ms: i64) {
        self.running = self.running.saturating_sub(1);
        if self.running == 0 {
            self.idle_since = Some(now_ms);
        }
    }

    /// Idle times recorded.
    pub fn history(&self) -> &IdleHistogram {
        &self.history
    }

    /// Decides, at `now_ms`, which idle instances (each idle for the given ms) to stop and
    /// whether to pre-warm one, under `policy`. With no pre-warm, an instance stays its
    /// keep-alive after its last use. With one, instances are stopped as the function goes
    /// idle, and one is started when the warm window opens (`prewarm_ms` after the function
    /// went idle) and kept until it closes. While invocations run, spare instances get the
    /// plain keep-alive.
    pub fn plan(&self, policy: &KeepAlive, now_ms: i64, idle_instances: &[i64]) -> Plan {
        let w = policy.window(&self.history);
        let by_age = |idle: &i64| *idle >= w.keep_ms;
        match self.idle_since {
            Some(since) if self.running == 0 && w.prewarm_ms > 0 => {
                let gap = now_ms - since;
                let open = gap >= w.prewarm_ms && gap < w.prewarm_ms + w.keep_ms;
                Plan {
                    expire: idle_instances.iter().map(|_| !open).collect(),
                    prewarm: open && idle_instances.is_empty(),
                }
            }
            _ => Plan {
                expire: idle_instances.iter().map(by_age).collect(),
                prewarm: false,
            },
        }
    }
}

impl std::fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepAlive::Fixed { keep_ms } => {
                write!(f, "fixed: idle instances stop after {}", minutes(*keep_ms))
            }
            KeepAlive::Hybrid(c) => write!(
                f,
                "adaptive (hybrid histogram of idle times; fixed {} until a pattern is clear)",
                minutes(c.fallback_keep_ms)
            ),
        }
    }
}

/// How often a reaper looks for idle instances under a keep-alive of `keep_ms`: a quarter of
/// it, between 50 ms and 5 s (so an instance outlives its keep-alive by at most a quarter).
/// Both runtimes' reapers tick by this.
pub fn reaper_tick_ms(keep_ms: u64) -> u64 {
    (keep_ms / 4).clamp(50, 5_000)
}

/// The policy as it applies to one function now, for `nimbus show`.
pub fn describe(policy: &KeepAlive, activity: &Activity) -> String {
    let KeepAlive::Hybrid(c) = policy else {
        return policy.to_string();
    };
    let h = activity.history();
    let w = policy.window(h);
    if h.samples() < c.min_samples {
        format!(
            "adaptive: learning ({} of {} idle times seen); fixed {} until then",
            h.samples(),
            c.min_samples,
            minutes(c.fallback_keep_ms)
        )
    } else if w.prewarm_ms == 0 && w.keep_ms == c.fallback_keep_ms {
        format!(
            "adaptive: no clear pattern in {} idle times; fixed {}",
            h.samples(),
            minutes(w.keep_ms)
        )
    } else {
        format!(
            "adaptive: pre-warm {}, keep {} ({} idle times)",
            minutes(w.prewarm_ms),
            minutes(w.keep_ms),
            h.samples()
        )
    }
}

/// `90s`, `10m`, `2m30s`.
fn minutes(ms: i64) -> String {
    let s = ms / 1000;
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// What a policy cost on a trace.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimResult {
    /// Invocations.
    pub invocations: u64,
    /// Of those, cold starts (no warm instance at arrival).
    pub cold_starts: u64,
    /// Instance-seconds spent warm but idle (memory held for nothing).
    pub idle_instance_seconds: f64,
}

impl SimResult {
    /// Cold starts as a percentage of invocations.
    pub fn cold_percent(&self) -> f64 {
        if self.invocations == 0 {
            0.0
        } else {
            self.cold_starts as f64 * 100.0 / self.invocations as f64
        }
    }

    /// Adds another function's result.
    pub fn add(&mut self, other: SimResult) {
        self.invocations += other.invocations;
        self.cold_starts += other.cold_starts;
        self.idle_instance_seconds += other.idle_instance_seconds;
    }
}

/// Replays one function's invocation start times (sorted, ms) through `policy`, with invocations
/// lasting `exec_ms` and one instance (the paper's model). Idle time counts from the end of an
/// invocation (or the pre-warm) until the next invocation or the end of the keep-alive window.
pub fn simulate(arrivals: &[i64], exec_ms: i64, policy: &KeepAlive, bins: usize) -> SimResult {
    let mut result = SimResult::default();
    let mut history = IdleHistogram::default();
    // The warm interval the previous invocation left behind: [from, until).
    let mut warm: Option<(i64, i64)> = None;
    let mut last_end: Option<i64> = None;
    for &t in arrivals {
        result.invocations += 1;
        // Warm if the instance is still running the previous invocation, or in its window.
        let running = last_end.is_some_and(|end| t < end);
        let hot = running || warm.is_some_and(|(from, until)| t >= from && t < until);
        if !hot {
            result.cold_starts += 1;
        }
        if let Some((from, until)) = warm {
            // Memory held from `from` until the arrival or the window's end, whichever first.
            let held = (until.min(t) - from).max(0);
            result.idle_instance_seconds += held as f64 / 1000.0;
        }
        if let Some(end) = last_end {
            history.record(t - end, bins);
        }
        // An arrival while running extends the run (one instance, invocations back to back).
        let end = last_end.map_or(t, |e| e.max(t)) + exec_ms;
        let w = policy.window(&history);
        warm = Some((end + w.prewarm_ms, end + w.prewarm_ms + w.keep_ms));
        // With no pre-warm the instance stays loaded from the end; with one, it is unloaded.
        if w.prewarm_ms == 0 {
            warm = Some((end, end + w.keep_ms));
        }
        last_end = Some(end);
    }
    if let Some((from, until)) = warm {
        result.idle_instance_seconds += (until - from).max(0) as f64 / 1000.0;
    }
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn reapers_tick_at_a_quarter_of_the_keep_alive_within_bounds() {
        assert_eq!(super::reaper_tick_ms(600_000), 5_000);
        assert_eq!(super::reaper_tick_ms(1_000), 250);
        assert_eq!(super::reaper_tick_ms(100), 50);
    }

    use super::*;

    const MIN: i64 = 60_000;

    fn periodic(period: i64, n: i64) -> Vec<i64> {
        (0..n).map(|i| i * period).collect()
    }

    #[test]
    fn fixed_keeps_for_its_time_and_never_prewarms() {
        let p = KeepAlive::Fixed { keep_ms: 10 * MIN };
        assert_eq!(
            p.window(&IdleHistogram::default()),
            Window {
                prewarm_ms: 0,
                keep_ms: 10 * MIN
            }
        );
    }

    #[test]
    fn hybrid_falls_back_until_the_pattern_is_clear() {
        let c = HybridConfig::default();
        let p = KeepAlive::Hybrid(c.clone());
        let mut h = IdleHistogram::default();
        for _ in 0..5 {
            h.record(30 * MIN, c.bins);
        }
        assert_eq!(p.window(&h).keep_ms, c.fallback_keep_ms, "too few samples");
        for _ in 0..20 {
            h.record(30 * MIN, c.bins);
        }
        let w = p.window(&h);
        // Head and tail are both the 30-minute bin: unload, pre-warm at 27 min, keep ~3.3 min.
        assert_eq!(w.prewarm_ms, 27 * MIN);
        assert_eq!(w.keep_ms, ((31 * MIN - 27 * MIN) as f64 * 1.1) as i64);
        // Idle times spread evenly over the range: unclear pattern, fixed fallback.
        let mut flat = IdleHistogram::default();
        for i in 0..240 {
            flat.record(i * MIN, c.bins);
        }
        assert_eq!(p.window(&flat).prewarm_ms, 0);
        // Mostly past the range: fallback too.
        let mut far = IdleHistogram::default();
        for _ in 0..20 {
            far.record(10 * 60 * MIN, c.bins);
        }
        assert_eq!(p.window(&far).keep_ms, c.fallback_keep_ms);
        // Clustered, but in two places far apart (bursts): the window would be long, fallback.
        let mut bursts = IdleHistogram::default();
        for _ in 0..15 {
            bursts.record(10_000, c.bins);
            bursts.record(100 * MIN, c.bins);
        }
        assert_eq!(p.window(&bursts), fallback_window(&c));
    }

    fn fallback_window(c: &HybridConfig) -> Window {
        Window {
            prewarm_ms: 0,
            keep_ms: c.fallback_keep_ms,
        }
    }

    #[test]
    fn a_timer_every_30_minutes_is_cold_every_time_with_fixed_10_min_but_not_with_hybrid() {
        let trace = periodic(30 * MIN, 48);
        let fixed = simulate(&trace, 1_000, &KeepAlive::Fixed { keep_ms: 10 * MIN }, 240);
        assert_eq!(fixed.cold_starts, 48);
        let hybrid = simulate(
            &trace,
            1_000,
            &KeepAlive::Hybrid(HybridConfig::default()),
            240,
        );
        // Cold until the histogram has enough samples, warm after.
        assert!(hybrid.cold_starts <= 12, "{hybrid:?}");
        assert!(
            hybrid.idle_instance_seconds < fixed.idle_instance_seconds,
            "{hybrid:?} vs {fixed:?}"
        );
    }

    #[test]
    fn a_hot_function_stays_warm_under_both() {
        let trace = periodic(5_000, 1000);
        for p in [
            KeepAlive::Fixed { keep_ms: 10 * MIN },
            KeepAlive::Hybrid(HybridConfig::default()),
        ] {
            let r = simulate(&trace, 100, &p, 240);
            assert_eq!(r.cold_starts, 1, "{p:?}");
        }
    }

    #[test]
    fn activity_records_idle_gaps_only_between_busy_periods() {
        let mut a = Activity::default();
        a.arrive(0, 240);
        a.arrive(10, 240); // overlapping: not an idle gap
        a.depart(100);
        a.depart(200);
        assert_eq!(a.history().samples(), 0);
        a.arrive(200 + 30 * MIN, 240);
        assert_eq!(a.history().samples(), 1);
    }

    #[test]
    fn the_fixed_plan_stops_instances_past_the_keep_alive() {
        let p = KeepAlive::Fixed { keep_ms: 10 * MIN };
        let mut a = Activity::default();
        a.arrive(0, 240);
        a.depart(1_000);
        let plan = a.plan(&p, 20 * MIN, &[5 * MIN, 10 * MIN, 11 * MIN]);
        assert_eq!(plan.expire, [false, true, true]);
        assert!(!plan.prewarm);
    }

    #[test]
    fn the_hybrid_plan_unloads_then_prewarms_in_the_window() {
        let p = KeepAlive::hybrid_around(10 * MIN);
        let mut a = Activity::default();
        // A timer every 30 minutes, 1 s each: idle times fall in the 29-minute bin, so the
        // window opens 26m6s after going idle and lasts 4m17s.
        let mut t = 0;
        for _ in 0..20 {
            a.arrive(t, 240);
            a.depart(t + 1_000);
            t += 30 * MIN;
        }
        let idle_at = t - 30 * MIN + 1_000;
        // Just after the last invocation: its warm instance is stopped, nothing pre-warmed.
        let now = idle_at + 5_000;
        assert_eq!(a.plan(&p, now, &[5_000]).expire, [true]);
        assert!(!a.plan(&p, now, &[]).prewarm);
        // 28 minutes on: inside the window, one instance is pre-warmed, then kept.
        let now = idle_at + 28 * MIN;
        assert!(a.plan(&p, now, &[]).prewarm);
        let plan = a.plan(&p, now, &[MIN]);
        assert_eq!((plan.expire, plan.prewarm), (vec![false], false));
        // Past the window: stopped.
        assert_eq!(a.plan(&p, idle_at + 40 * MIN, &[13 * MIN]).expire, [true]);
        assert!(
            describe(&p, &a).starts_with("adaptive: pre-warm 26m6s, keep 4m17s"),
            "{}",
            describe(&p, &a)
        );
        // While an invocation runs, spare instances get the plain keep-alive.
        a.arrive(t, 240);
        let plan = a.plan(&p, t + 1_000, &[1_000]);
        assert_eq!((plan.expire, plan.prewarm), (vec![false], false));
    }

    #[test]
    fn describe_says_what_the_policy_does_now() {
        let a = Activity::default();
        assert_eq!(
            describe(&KeepAlive::Fixed { keep_ms: 10 * MIN }, &a),
            "fixed: idle instances stop after 10m"
        );
        assert_eq!(
            describe(&KeepAlive::hybrid_around(90_000), &a),
            "adaptive: learning (0 of 10 idle times seen); fixed 1m30s until then"
        );
    }

    #[test]
    fn idle_time_is_counted_until_the_next_arrival_or_the_window_end() {
        let p = KeepAlive::Fixed { keep_ms: 10 * MIN };
        // Two invocations 2 minutes apart, 1 s each: 119 s idle between them, then 600 s at the end.
        let r = simulate(&[0, 2 * MIN], 1_000, &p, 240);
        assert_eq!((r.invocations, r.cold_starts), (2, 1));
        assert!((r.idle_instance_seconds - 719.0).abs() < 1e-9, "{r:?}");
    }
}
