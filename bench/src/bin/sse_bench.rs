//! SSE push-latency benchmark: time from a command's HTTP response to the
//! event reaching Server-Sent Event clients, at a steady command rate with
//! many clients connected.
//!
//! 1. Creates a fresh migrated and seeded database and starts the real
//!    `ordertrail-api` binary (its live feed follows the event store; no
//!    broker is involved in the streams).
//! 2. Connects `--clients` SSE clients to `GET /v1/stream/ops` (ops token)
//!    and waits until every one is streaming.
//! 3. Drives the command API open-loop at `--rate` commands/s: each slot sends
//!    the next step of an order in flight (authorize → confirm → accept →
//!    ready) or, when none is due, places a new order (one `PlaceOrder` to
//!    four follow-ups; the authorization is a payment event, which the ops
//!    stream does not carry).
//! 4. For the orders whose id ends in `0` (one in 16), the time each order
//!    command was answered is kept by `(order, version)`; every client notes
//!    when it received the event with that `(order, sequence)`. Push latency
//!    = receipt − response (0 when the event arrived before the response),
//!    over every sampled event at every client.
//!
//! Prints the achieved command rate, command latency, push latency
//! p50/p90/p99/max and how many events each client received.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use ordertrail_bench::lifecycle::{Driver, Due, LoadArgs, Step};
use ordertrail_bench::{fresh_database, init_tracing, ms, snapshot};

/// Command response → SSE client push latency.
#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL server (a role allowed to CREATE DATABASE).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    load: LoadArgs,
    /// Connected SSE clients.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep_database: bool,
}

/// An order whose events are timed (one in 16, by its id).
fn sampled(order_id: &str) -> bool {
    order_id.ends_with('0')
}

struct Shared {
    driver: Driver,
    /// When each sampled order command was answered, by (order, version).
    answered: Mutex<HashMap<(String, i64), Instant>>,
}

/// Send one command; note when a sampled order command of the measured
/// window was answered.
async fn send(shared: Arc<Shared>, due: Option<Due>) {
    let Some(sent) = shared.driver.send(due).await else {
        return;
    };
    let (Some(aggregate_id), Some(version)) = (
        sent.outcome["aggregate_id"].as_str(),
        sent.outcome["version"].as_i64(),
    ) else {
        shared.driver.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // The authorization is a payment event, which the ops stream does not
    // carry.
    if sent.measured
        && sent.step != Step::Authorize
        && sampled(aggregate_id)
        && let Ok(mut a) = shared.answered.lock()
    {
        a.insert((aggregate_id.to_owned(), version), sent.answered);
    }
}

async fn drive(shared: &Arc<Shared>, args: &Args, duration: Duration) {
    shared
        .driver
        .drive(args.load.rate, duration, |due| {
            tokio::spawn(send(Arc::clone(shared), due));
        })
        .await;
}

/// What one SSE client saw.
#[derive(Default)]
struct ClientLog {
    events: u64,
    /// Receipt times of sampled events, by (order, sequence).
    sampled: Vec<(String, i64, Instant)>,
}

/// `"field":"value"` or `"field":123` out of a JSON text, without parsing it.
fn field<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":");
    let at = data.find(&key)? + key.len();
    let rest = &data[at..];
    if let Some(s) = rest.strip_prefix('"') {
        s.find('"').map(|end| &s[..end])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(&rest[..end])
    }
}

async fn sse_client(
    client: reqwest::Client,
    url: String,
    token: String,
    connected: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<ClientLog> {
    let mut response = client
        .get(&url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(3600))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("stream refused: {}", response.status());
    }
    connected.fetch_add(1, Ordering::Relaxed);
    let mut log = ClientLog::default();
    let mut buffer = String::new();
    while !stop.load(Ordering::Relaxed) {
        let chunk = match tokio::time::timeout(Duration::from_millis(500), response.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => continue,
        };
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            {
                let block = &buffer[..end];
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    log.events += 1;
                    if let (Some(order), Some(sequence)) =
                        (field(data, "aggregate_id"), field(data, "sequence"))
                        && sampled(order)
                        && let Ok(sequence) = sequence.parse::<i64>()
                    {
                        log.sampled.push((order.to_owned(), sequence, now));
                    }
                }
            }
            buffer.drain(..end + 2);
        }
    }
    Ok(log)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    init_tracing("warn");
    let (db_name, db_url, _pool) = fresh_database(&args.database_url, 2, true).await?;
    let (mut api, driver) = Driver::start(&args.load, &db_url).await?;
    let ops = driver.ops.clone();
    let base = driver.base.clone();

    // The SSE clients, each on its own connection.
    let connected = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let sse_http = reqwest::Client::builder().build()?;
        clients.push(tokio::spawn(sse_client(
            sse_http,
            format!("{base}/v1/stream/ops"),
            ops.clone(),
            Arc::clone(&connected),
            Arc::clone(&stop),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected.load(Ordering::Relaxed) < args.clients as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} SSE clients connected",
                connected.load(Ordering::Relaxed),
                args.clients
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{} SSE clients connected to /v1/stream/ops; driving {} commands/s",
        args.clients, args.load.rate
    );

    let shared = Arc::new(Shared {
        driver,
        answered: Mutex::new(HashMap::new()),
    });
    drive(&shared, &args, Duration::from_secs(args.load.warmup_secs)).await;
    shared.driver.start_measuring();
    let started = Instant::now();
    drive(&shared, &args, Duration::from_secs(args.load.duration_secs)).await;
    shared.driver.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    // Let in-flight commands answer and their events arrive.
    let drain = Instant::now() + Duration::from_secs(10);
    while shared.driver.in_flight() > 0 && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);

    let answered = std::mem::take(
        &mut *shared
            .answered
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?,
    );
    let mut push = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut min_events, mut max_events, mut failed_clients) = (u64::MAX, 0u64, 0usize);
    let mut missing = 0u64;
    for c in clients {
        match c.await? {
            Ok(log) => {
                min_events = min_events.min(log.events);
                max_events = max_events.max(log.events);
                let mut got = 0u64;
                for (order, sequence, at) in &log.sampled {
                    if let Some(answered_at) = answered.get(&(order.clone(), *sequence)) {
                        let micros = at.saturating_duration_since(*answered_at).as_micros() as u64;
                        let _ = push.record(micros.max(1));
                        got += 1;
                    }
                }
                missing += (answered.len() as u64).saturating_sub(got);
            }
            Err(e) => {
                failed_clients += 1;
                tracing::warn!(error = %e, "SSE client failed");
            }
        }
    }
    let _ = api.kill().await;

    let ok = shared.driver.ok.load(Ordering::Relaxed);
    let lat = snapshot(&shared.driver.latency)?;
    println!(
        "commands: {ok} ok in {:.1} s = {:.0}/s (target {}), {} errors, {} slots missed",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        args.load.rate,
        shared.driver.errors.load(Ordering::Relaxed),
        shared.driver.missed.load(Ordering::Relaxed)
    );
    println!(
        "command latency ms: p50 {:.1}  p99 {:.1}  max {:.1}",
        ms(lat.value_at_quantile(0.5)),
        ms(lat.value_at_quantile(0.99)),
        ms(lat.max())
    );
    println!(
        "SSE clients: {} connected, {failed_clients} failed; events received per client: min {min_events}, max {max_events}",
        args.clients
    );
    println!(
        "push latency (command response -> SSE client), ms, over {} receipts of {} sampled events ({} sampled receipts missing): p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        push.len(),
        answered.len(),
        missing,
        ms(push.value_at_quantile(0.5)),
        ms(push.value_at_quantile(0.9)),
        ms(push.value_at_quantile(0.99)),
        ms(push.max())
    );
    let target = push.value_at_quantile(0.99) <= 250_000;
    println!(
        "target p99 <= 250 ms at {} commands/s with {} clients: {}",
        args.load.rate,
        args.clients,
        if target { "met" } else { "NOT met" }
    );
    if !args.keep_database {
        ordertrail_bench::drop_database(&args.database_url, &db_name).await?;
    }
    Ok(())
}
