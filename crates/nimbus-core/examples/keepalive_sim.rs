//! Replays synthetic invocation traces shaped like the Azure Functions trace of "Serverless in
//! the Wild" (most functions rare, many on timers, a few very hot) through the fixed 10-minute
//! keep-alive and the hybrid histogram policy, and prints cold starts and idle instance time.
//!
//! `cargo run --release -p nimbus-core --example keepalive_sim -- [FUNCTIONS] [DAYS] [SEED]`
#![allow(clippy::unwrap_used)]

use nimbus_core::keepalive::{HybridConfig, KeepAlive, SimResult, simulate};
use rand::{Rng, SeedableRng, rngs::StdRng};

const MIN: i64 = 60_000;

/// Poisson arrivals with mean gap `mean_ms` until `end`.
fn poisson(rng: &mut StdRng, mean_ms: f64, end: i64) -> Vec<i64> {
    let mut t = 0.0;
    let mut out = Vec::new();
    loop {
        t += -mean_ms * (1.0 - rng.random::<f64>()).ln();
        if t as i64 >= end {
            return out;
        }
        out.push(t as i64);
    }
}

fn trace(rng: &mut StdRng, end: i64) -> (&'static str, Vec<i64>) {
    let kind = rng.random::<f64>();
    if kind < 0.40 {
        // Timers: a fixed period with up to a minute of jitter.
        let period = [15, 30, 60, 120, 180][rng.random_range(0..5)] * MIN;
        let phase = rng.random_range(0..period);
        let mut t = phase;
        let mut out = Vec::new();
        while t < end {
            out.push(t + rng.random_range(0..MIN));
            t += period;
        }
        ("timer", out)
    } else if kind < 0.65 {
        let mean = rng.random_range(30.0..360.0) * MIN as f64;
        ("rare", poisson(rng, mean, end))
    } else if kind < 0.85 {
        let mean = rng.random_range(1.0..10.0) * MIN as f64;
        ("medium", poisson(rng, mean, end))
    } else if kind < 0.95 {
        // Bursts of calls every 1-3 hours.
        let mut out = Vec::new();
        let mut t = 0;
        while t < end {
            t += rng.random_range(60..180) * MIN;
            for _ in 0..rng.random_range(5..20) {
                out.push(t + rng.random_range(0..MIN));
            }
        }
        out.retain(|&x| x < end);
        out.sort_unstable();
        ("bursty", out)
    } else {
        let mean = rng.random_range(1.0..10.0) * 1000.0;
        ("hot", poisson(rng, mean, end))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let functions: usize = args.get(1).map_or(1000, |a| a.parse().unwrap());
    let days: i64 = args.get(2).map_or(7, |a| a.parse().unwrap());
    let seed: u64 = args.get(3).map_or(2020, |a| a.parse().unwrap());
    let end = days * 24 * 60 * MIN;
    let mut rng = StdRng::seed_from_u64(seed);
    let policies = [
        ("fixed 10 min", KeepAlive::Fixed { keep_ms: 10 * MIN }),
        (
            "hybrid histogram",
            KeepAlive::Hybrid(HybridConfig::default()),
        ),
    ];
    let mut totals = [SimResult::default(), SimResult::default()];
    let mut kinds = std::collections::BTreeMap::<&str, [SimResult; 2]>::new();
    for _ in 0..functions {
        let (kind, arrivals) = trace(&mut rng, end);
        for (i, (_, p)) in policies.iter().enumerate() {
            let r = simulate(&arrivals, 1_000, p, 240);
            totals[i].add(r);
            kinds.entry(kind).or_default()[i].add(r);
        }
    }
    println!("{functions} functions, {days} days, seed {seed}; 1 s invocations, one instance each");
    println!(
        "{:<18} {:>12} {:>10} {:>18}",
        "policy", "invocations", "cold %", "idle instance-h"
    );
    for (i, (name, _)) in policies.iter().enumerate() {
        let t = totals[i];
        println!(
            "{name:<18} {:>12} {:>9.2}% {:>18.1}",
            t.invocations,
            t.cold_percent(),
            t.idle_instance_seconds / 3600.0
        );
    }
    for (kind, r) in &kinds {
        println!(
            "  {kind:<8} cold {:>6.2}% -> {:>6.2}%   idle {:>9.1} h -> {:>9.1} h",
            r[0].cold_percent(),
            r[1].cold_percent(),
            r[0].idle_instance_seconds / 3600.0,
            r[1].idle_instance_seconds / 3600.0
        );
    }
    let (f, h) = (totals[0], totals[1]);
    println!(
        "hybrid/fixed: cold starts {:.2}x, idle instance time {:.2}x",
        h.cold_starts as f64 / f.cold_starts as f64,
        h.idle_instance_seconds / f.idle_instance_seconds
    );
}
