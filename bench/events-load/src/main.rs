//! Load generator for `bench/events.sh`.
//!
//! `events-load nimbus ...` publishes events to a Nimbus topic (fan-out to a function) or sends
//! them to a queue (consumed by a queue trigger), then reads the invocation records from the
//! node's SQLite file until every event has been delivered. Latency is acceptance → invocation
//! start: the ids of async deliveries (and of a batch's first message) are UUIDv7, whose first
//! 48 bits are the acceptance time in ms.
//!
//! `events-load nats ...` does the same publish + consume on a NATS JetStream stream (file
//! storage, explicit acks), timestamps in the payload.
//!
//! Each prints one line: `accepted_per_s delivered_per_s p50_ms p99_ms delivered`.
//!
//! `events-load burst --url URL --events N` (for `bench/scale.sh`) sends N HTTP GETs at once,
//! each on its own connection, and prints `total_s p50_ms p99_ms ok failed`: the time until
//! the last answer, and the latency percentiles of all N.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    peer: Peer,
    /// Events to send.
    #[arg(long, global = true, default_value_t = 100_000)]
    events: usize,
    /// Events per request (publish batch).
    #[arg(long, global = true, default_value_t = 100)]
    batch: usize,
    /// Concurrent publishers.
    #[arg(long, global = true, default_value_t = 4)]
    concurrency: usize,
    /// Publish at this many events/s (default: as fast as accepted).
    #[arg(long, global = true)]
    rate: Option<u64>,
}

#[derive(Subcommand)]
enum Peer {
    Nimbus {
        #[arg(long)]
        url: String,
        #[arg(long)]
        key: String,
        /// The node's nimbus.db.
        #[arg(long)]
        db: String,
        /// The function that receives the events.
        #[arg(long)]
        function: String,
        /// Publish to this topic...
        #[arg(long)]
        topic: Option<String>,
        /// ...or send to this queue (with a trigger to the function).
        #[arg(long)]
        queue: Option<String>,
    },
    Nats {
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        url: String,
    },
    /// N concurrent GETs to one URL, all released at once.
    Burst {
        #[arg(long)]
        url: String,
    },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Acceptance time (unix ms) of a UUIDv7 id (`xxxxxxxx-xxxx-7...`).
fn uuid7_ms(id: &str) -> Option<i64> {
    let hex = format!("{}{}", id.get(0..8)?, id.get(9..13)?);
    i64::from_str_radix(&hex, 16).ok()
}

async fn publish_all(
    events: usize,
    batch: usize,
    concurrency: usize,
    rate: Option<u64>,
    send: impl Fn(Vec<usize>) -> futures_util::future::BoxFuture<'static, anyhow::Result<()>>
    + Send
    + Sync
    + 'static,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let send = Arc::new(send);
    let started = Instant::now();
    // With a rate, batches are released on a fixed schedule; publishers take them in turn.
    let paced = rate.map(|r| {
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
        let every = Duration::from_secs_f64(batch as f64 / r as f64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                tick.tick().await;
                if tx.send(()).await.is_err() {
                    return;
                }
            }
        });
        Arc::new(tokio::sync::Mutex::new(rx))
    });
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, send, paced) = (next.clone(), send.clone(), paced.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                if let Some(p) = &paced {
                    p.lock().await.recv().await;
                }
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= events {
                    return Ok::<_, anyhow::Error>(());
                }
                send((from..(from + batch).min(events)).collect()).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

async fn nimbus(
    args: &Args,
    url: String,
    key: String,
    db: String,
    function: String,
    topic: Option<String>,
    queue: Option<String>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let path = match (&topic, &queue) {
        (Some(t), None) => format!("{url}/v1/topics/{t}/messages"),
        (None, Some(q)) => format!("{url}/v1/queues/{q}/messages"),
        _ => bail!("name --topic or --queue"),
    };
    let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .context("opening the node's database")?;
    let before: i64 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM invocations",
        [],
        |r| r.get(0),
    )?;
    let t0 = now_ms();
    let (h, p, k) = (http.clone(), path.clone(), key.clone());
    let took = publish_all(args.events, args.batch, args.concurrency, args.rate, move |ids| {
        let (h, p, k) = (h.clone(), p.clone(), k.clone());
        Box::pin(async move {
            let body: Vec<serde_json::Value> = ids
                .iter()
                .map(|i| serde_json::json!({"body": format!("{{\"i\":{i}}}")}))
                .collect();
            let r = h.post(&p).bearer_auth(&k).json(&body).send().await?;
            if r.status() != 202 {
                bail!("send failed: {} {}", r.status(), r.text().await?);
            }
            Ok(())
        })
    })
    .await?;
    let accepted = args.events as f64 / took.as_secs_f64();

    // Delivered: for a topic, one invocation per event; for a queue, the queue is empty.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = match &queue {
            None => {
                let n: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM invocations WHERE seq > ?1 AND function = ?2",
                    rusqlite::params![before, function],
                    |r| r.get(0),
                )?;
                n as usize >= args.events
            }
            Some(q) => {
                let v: serde_json::Value = http
                    .get(format!("{url}/v1/queues/{q}"))
                    .bearer_auth(&key)
                    .send()
                    .await?
                    .json()
                    .await?;
                v["messages"] == 0
            }
        };
        if done {
            break;
        }
        if Instant::now() > deadline {
            bail!("not everything was delivered within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Records are group-committed shortly after each invocation: let the last ones land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stmt = conn.prepare(
        "SELECT id, start_ms, duration_us, outcome FROM invocations WHERE seq > ?1 AND function = ?2",
    )?;
    let rows = stmt
        .query_map(rusqlite::params![before, function], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let failed = rows.iter().filter(|r| r.3 != "success").count();
    if failed > 0 {
        bail!("{failed} invocations failed");
    }
    let mut latencies: Vec<f64> = rows
        .iter()
        .filter_map(|(id, start, _, _)| Some((start - uuid7_ms(id)?) as f64))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let end = rows
        .iter()
        .map(|(_, start, us, _)| start + us / 1000)
        .max()
        .unwrap_or(t0);
    let delivered_events = match &queue {
        None => rows.len(),
        Some(_) => args.events,
    };
    let delivered = delivered_events as f64 / ((end - t0).max(1) as f64 / 1000.0);
    println!(
        "{accepted:.0} {delivered:.0} {:.1} {:.1} {delivered_events}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}

async fn nats(args: &Args, url: String) -> anyhow::Result<()> {
    let client = async_nats::connect(&url).await.context("connecting to NATS")?;
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream("NIMBUS_BENCH").await;
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "NIMBUS_BENCH".into(),
            subjects: vec!["nimbus.bench".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?;
    let events = args.events;
    let t0 = Instant::now();
    let consume = tokio::spawn(async move {
        let mut messages = consumer.messages().await?;
        let mut latencies = Vec::with_capacity(events);
        while latencies.len() < events {
            let Some(m) = messages.next().await else { break };
            let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
            let sent: i64 = std::str::from_utf8(&m.payload)?.split(',').next().unwrap_or("0").parse()?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64;
            latencies.push((now - sent) as f64 / 1000.0);
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok::<_, anyhow::Error>((latencies, t0.elapsed()))
    });
    let js2 = js.clone();
    let took = publish_all(args.events, args.batch, args.concurrency, args.rate, move |ids| {
        let js = js2.clone();
        Box::pin(async move {
            let mut acks = Vec::with_capacity(ids.len());
            for i in ids {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
                let payload = bytes::Bytes::from(format!("{now},{{\"i\":{i}}}"));
                acks.push(js.publish("nimbus.bench", payload).await?);
            }
            for a in acks {
                a.await?;
            }
            Ok(())
        })
    })
    .await?;
    let (mut latencies, all) = consume.await??;
    latencies.sort_by(f64::total_cmp);
    println!(
        "{:.0} {:.0} {:.1} {:.1} {}",
        args.events as f64 / took.as_secs_f64(),
        latencies.len() as f64 / all.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len()
    );
    let _ = js.delete_stream("NIMBUS_BENCH").await;
    Ok(())
}

async fn burst(n: usize, url: String) -> anyhow::Result<()> {
    let gate = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (gate, url) = (gate.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            // One connection per request.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(120))
                .build()?;
            gate.wait().await;
            let t0 = Instant::now();
            let ok = client
                .get(&url)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            Ok::<_, anyhow::Error>((t0, t0.elapsed(), ok))
        }));
    }
    gate.wait().await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    let (mut ok, mut failed) = (0, 0);
    let mut last = started;
    for t in tasks {
        let (t0, took, good) = t.await??;
        last = last.max(t0 + took);
        latencies.push(took.as_secs_f64() * 1000.0);
        if good {
            ok += 1
        } else {
            failed += 1
        }
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{:.3} {:.1} {:.1} {ok} {failed}",
        (last - started).as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.peer {
        Peer::Burst { url } => return burst(args.events, url.clone()).await,
        Peer::Nimbus {
            url,
            key,
            db,
            function,
            topic,
            queue,
        } => {
            let (u, k, d, f, t, q) = (
                url.clone(),
                key.clone(),
                db.clone(),
                function.clone(),
                topic.clone(),
                queue.clone(),
            );
            nimbus(&args, u, k, d, f, t, q).await
        }
        Peer::Nats { url } => nats(&args, url.clone()).await,
    }
}
