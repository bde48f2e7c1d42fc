//! Lunch rush end to end (issue 16): the highest steady order rate at which,
//! for a whole step, placed → confirmed (the saga authorizes the card and
//! confirms) has p99 ≤ 250 ms, response → visible in `GET /v1/orders/{id}`
//! has p99 ≤ 250 ms, and no consumer falls behind.
//!
//! 1. Creates a fresh migrated and seeded database; the launcher's `Stack`
//!    hosts librdkafka's mock cluster in-process (or uses `KAFKA_BROKERS`)
//!    and runs the relay, the saga and the three projectors in this process,
//!    exactly as `ordertrail-local` does.
//! 2. Starts the real `ordertrail-api` binary as its own process.
//! 3. For each rate of `--rates`, places card orders open-loop at that rate
//!    for `--step-secs` (customers place; everything after is the platform's
//!    work), then waits until every consumer has caught up before the next
//!    rate.
//! 4. Measures per step:
//!    - PlaceOrder latency (HTTP, every order);
//!    - placed → confirmed of **every** order placed in the step, from the
//!      store: `OrderConfirmed.recorded_at − OrderPlaced.recorded_at` (an
//!      order not confirmed within `--grace-secs` after the step counts as
//!      never, so it cannot flatter the p99);
//!    - response → visible: one order in `--sample-every` is polled every
//!      `--poll-ms` through `GET /v1/orders/{id}` (an upper bound by up to
//!      one poll interval);
//!    - every consumer's lag (`GET /v1/projectors/status`'s query: events
//!      and seconds behind the store's head), sampled once a second.
//!
//! Prints one row per rate and the highest rate that met every target.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use ordertrail_bench::lifecycle::{Driver, LoadArgs};
use ordertrail_bench::{Servers, fresh_database, init_tracing, ms, snapshot, tear_down};
use ordertrail_launcher::{Stack, all_projectors};
use ordertrail_projections::queries::projector_status;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

/// The p99 targets, ms.
const P99_TARGET_MS: f64 = 250.0;
/// Seconds behind the store's head above which a consumer counts as
/// falling behind.
const BEHIND_TARGET_SECS: f64 = 1.0;

/// Lunch rush end to end: a sweep of order rates.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    servers: Servers,
    /// Order rates to try, orders/s, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,300,400,600,800,1000,1200,1500"
    )]
    rates: Vec<u32>,
    /// Seconds each rate is held.
    #[arg(long, default_value_t = 60)]
    step_secs: u64,
    /// Seconds after a step within which its orders may still be confirmed
    /// (later ones count as never).
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
    /// Go on after a rate that missed a target (default: stop after the
    /// second missed rate in a row).
    #[arg(long)]
    keep_going: bool,
    /// Seconds of load at the first rate before the sweep, not measured
    /// (consumers join their groups, pools and caches fill).
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// Watch the visibility of one order in this many.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Poll interval of a watched order's `GET /v1/orders/{id}`, ms.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Aggregates the saga handles at the same time (1: one event after the other).
    #[arg(long, default_value_t = ordertrail_commands::saga::DEFAULT_CONCURRENCY)]
    saga_concurrency: usize,
    /// Most events the saga handles per batch.
    #[arg(long, default_value_t = 200)]
    saga_batch_size: usize,
    /// Connections of this process's pool (relay, saga, projectors).
    #[arg(long, default_value_t = 32)]
    stack_pool_size: u32,
    /// Most PlaceOrder requests in flight; a slot that finds this many is missed.
    #[arg(long, default_value_t = 512)]
    max_in_flight: u64,
    /// The API binary (default: next to this one).
    #[arg(long)]
    api_bin: Option<std::path::PathBuf>,
    /// API database pool size.
    #[arg(long, default_value_t = 16)]
    db_pool_size: u32,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep_database: bool,
}

/// What one step measured.
struct Step {
    offered: u32,
    achieved: f64,
    errors: u64,
    missed: u64,
    place_p99: f64,
    placed: i64,
    unconfirmed: i64,
    confirm_p50: f64,
    confirm_p99: f64,
    visible_samples: u64,
    visible_timeouts: u64,
    visible_p99: f64,
    worst_behind: Option<(String, i64, f64)>,
    /// Cores busy on average during the step (every process of the machine).
    busy_cores: f64,
    /// Cores' time the hypervisor gave to other machines meanwhile.
    stolen_cores: f64,
}

impl Step {
    fn met(&self) -> bool {
        self.unconfirmed == 0
            && self.placed > 0
            && self.errors == 0
            && self.missed == 0
            && self.confirm_p99 <= P99_TARGET_MS
            && self.visible_timeouts == 0
            && self.visible_samples > 0
            && self.visible_p99 <= P99_TARGET_MS
            && self
                .worst_behind
                .as_ref()
                .is_none_or(|(_, _, secs)| *secs <= BEHIND_TARGET_SECS)
    }
}

/// The machine's CPU time so far, in clock ticks over every core
/// (`/proc/stat`): (busy, stolen by the hypervisor, total); zeros where there
/// is no such file. Busy is user, nice, system, irq and softirq time.
fn cpu_ticks() -> (u64, u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0, 0);
    };
    let Some(line) = stat.lines().next() else {
        return (0, 0, 0);
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let total: u64 = ticks.iter().take(8).sum();
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7), total)
}

/// Watched orders: response → visible.
struct Watch {
    driver: Driver,
    poll: Duration,
    polling: AtomicU64,
    timeouts: AtomicU64,
    visible: Mutex<Histogram<u64>>,
}

/// Place one order; for a watched one, poll its detail until it shows.
async fn place(shared: Arc<Watch>, watched: bool) {
    let Some(sent) = shared.driver.send(None).await else {
        return;
    };
    if !watched {
        return;
    }
    shared.polling.fetch_add(1, Ordering::Relaxed);
    let url = format!("{}/v1/orders/{}", shared.driver.base, sent.order);
    let visible = loop {
        if let Ok(r) = shared
            .driver
            .client
            .get(&url)
            .bearer_auth(&shared.driver.ops)
            .send()
            .await
            && r.status().is_success()
        {
            break Some(sent.answered.elapsed());
        }
        if sent.answered.elapsed() > Duration::from_secs(10) {
            break None;
        }
        tokio::time::sleep(shared.poll).await;
    };
    match visible {
        Some(d) => {
            if let Ok(mut h) = shared.visible.lock() {
                let _ = h.record((d.as_micros() as u64).max(1));
            }
        }
        None => {
            shared.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }
    shared.polling.fetch_sub(1, Ordering::Relaxed);
}

/// Sample every consumer's lag once a second until `stop`; the worst
/// (by seconds behind) per consumer.
async fn sample_lag(pool: PgPool, mut stop: watch::Receiver<bool>) -> BTreeMap<String, (i64, f64)> {
    let mut worst: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    loop {
        if let Ok(status) = projector_status(&pool).await {
            for s in status {
                let w = worst.entry(s.projector).or_insert((0, 0.0));
                w.0 = w.0.max(s.events_behind);
                w.1 = w.1.max(s.seconds_behind);
            }
        }
        tokio::select! {
            _ = stop.changed() => return worst,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Placed → confirmed of every order placed in `[from, to)` (store times),
/// ms: (placed, not confirmed, p50, p99); an unconfirmed order counts as an
/// hour.
async fn confirmations(
    pool: &PgPool,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<(i64, i64, f64, f64)> {
    let row: (i64, i64, Option<f64>, Option<f64>) = sqlx::query_as(
        "WITH placed AS (
             SELECT aggregate_id, recorded_at FROM events
             WHERE aggregate_type = 'Order' AND event_type = 'OrderPlaced'
               AND recorded_at >= $1 AND recorded_at < $2),
         latency AS (
             SELECT extract(epoch FROM c.recorded_at - p.recorded_at) * 1000 AS ms
             FROM placed p
             LEFT JOIN events c ON c.aggregate_type = 'Order' AND c.aggregate_id = p.aggregate_id
                               AND c.event_type = 'OrderConfirmed')
         SELECT count(*), count(*) FILTER (WHERE ms IS NULL),
                (percentile_disc(0.5) WITHIN GROUP (ORDER BY coalesce(ms, 3600000)))::float8,
                (percentile_disc(0.99) WITHIN GROUP (ORDER BY coalesce(ms, 3600000)))::float8
         FROM latency",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    Ok((row.0, row.1, row.2.unwrap_or(0.0), row.3.unwrap_or(0.0)))
}

/// Wait (polling, at most `timeout`) until every consumer is following with
/// nothing behind.
async fn settle(pool: &PgPool, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(status) = projector_status(pool).await
            && status.len() >= 4
            && status
                .iter()
                .all(|s| s.events_behind == 0 && s.state == "following")
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("the consumers did not catch up within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait (polling, at most `grace`) until every order placed since `from`
/// is confirmed.
async fn confirmed_since(pool: &PgPool, from: chrono::DateTime<chrono::Utc>, grace: Duration) {
    let start = Instant::now();
    while start.elapsed() < grace {
        let open: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM events p
             WHERE p.aggregate_type = 'Order' AND p.event_type = 'OrderPlaced' AND p.recorded_at >= $1
               AND NOT EXISTS (SELECT 1 FROM events c WHERE c.aggregate_type = 'Order'
                               AND c.aggregate_id = p.aggregate_id AND c.event_type = 'OrderConfirmed')",
        )
        .bind(from)
        .fetch_one(pool)
        .await;
        if matches!(open, Ok(0)) {
            return;
        }
        // Each look scans the step's orders: do not take the machine from
        // the saga it waits for.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run_step(
    shared: &Arc<Watch>,
    pool: &PgPool,
    args: &Args,
    rate: u32,
    seconds: u64,
) -> Result<Step> {
    let driver = &shared.driver;
    if let Ok(mut h) = driver.latency.lock() {
        h.reset();
    }
    if let Ok(mut h) = shared.visible.lock() {
        h.reset();
    }
    driver.ok.store(0, Ordering::Relaxed);
    shared.timeouts.store(0, Ordering::Relaxed);
    driver.start_measuring();
    let (stop_lag, lag_stop) = watch::channel(false);
    let lag = tokio::spawn(sample_lag(pool.clone(), lag_stop));
    let from: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?;
    let started = Instant::now();
    let cpu_before = cpu_ticks();
    let mut n = 0_u64;
    driver
        .drive(rate, Duration::from_secs(seconds), |_| {
            n += 1;
            let watched = n.is_multiple_of(args.sample_every.max(1));
            tokio::spawn(place(Arc::clone(shared), watched));
        })
        .await;
    let window = started.elapsed();
    let cpu_after = cpu_ticks();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let total = ((cpu_after.2 - cpu_before.2) as f64).max(1.0);
    let busy_cores = (cpu_after.0 - cpu_before.0) as f64 / total * cores;
    let stolen_cores = (cpu_after.1 - cpu_before.1) as f64 / total * cores;
    // Every request of the step answered (a request gives up after 10 s).
    while (driver.in_flight() > 0 || shared.polling.load(Ordering::Relaxed) > 0)
        && started.elapsed() < window + Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    driver.measuring.store(false, Ordering::Relaxed);
    let to: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?;
    let _ = stop_lag.send(true);
    let worst = lag.await?;
    confirmed_since(pool, from, Duration::from_secs(args.grace_secs)).await;
    let (placed, unconfirmed, confirm_p50, confirm_p99) = confirmations(pool, from, to).await?;
    let latency = snapshot(&driver.latency)?;
    let visible = snapshot(&shared.visible)?;
    let worst_behind = worst
        .into_iter()
        .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .map(|(name, (events, secs))| (name, events, secs));
    Ok(Step {
        offered: rate,
        achieved: driver.ok.load(Ordering::Relaxed) as f64 / window.as_secs_f64(),
        errors: driver.errors.load(Ordering::Relaxed),
        missed: driver.missed.load(Ordering::Relaxed),
        place_p99: ms(latency.value_at_quantile(0.99)),
        placed,
        unconfirmed,
        confirm_p50,
        confirm_p99,
        visible_samples: visible.len(),
        visible_timeouts: shared.timeouts.load(Ordering::Relaxed),
        visible_p99: ms(visible.value_at_quantile(0.99)),
        worst_behind,
        busy_cores,
        stolen_cores,
    })
}

fn print_row(s: &Step) {
    let behind = s.worst_behind.as_ref().map_or_else(
        || "-".to_owned(),
        |(name, events, secs)| format!("{name} {events} ev / {secs:.2} s"),
    );
    // CPU time of the whole machine per order placed (API, PostgreSQL,
    // relay, saga, projectors, broker and this load generator).
    let cpu_ms = s.busy_cores * 1000.0 / s.achieved.max(1e-9);
    println!(
        "| {:>5} | {:>7.0} | {:>6} | {:>6} | {:>6.1} | {:>7} | {:>6} | {:>7.0} | {:>7.0} | {:>7.0} ({}{}) | {} | {:.2} ({:.1} ms/order) | {:.2} | {} |",
        s.offered,
        s.achieved,
        s.errors,
        s.missed,
        s.place_p99,
        s.placed,
        s.unconfirmed,
        s.confirm_p50,
        s.confirm_p99,
        s.visible_p99,
        s.visible_samples,
        if s.visible_timeouts > 0 {
            format!(", {} not visible", s.visible_timeouts)
        } else {
            String::new()
        },
        behind,
        s.busy_cores,
        cpu_ms,
        s.stolen_cores,
        if s.met() { "met" } else { "MISSED" },
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    init_tracing("warn");
    let (db_name, db_url, pool) =
        fresh_database(&args.servers.database_url, args.stack_pool_size, true).await?;
    let (concurrency, saga_batch) = (args.saga_concurrency, args.saga_batch_size);
    let stack = Stack::on_pool(pool.clone())
        .kafka(args.servers.kafka_brokers.clone().unwrap_or_default())
        .mock_brokers(1)
        .topic_prefix(format!(
            "lunch{}",
            &Uuid::new_v4().simple().to_string()[..8]
        ))
        .partitions(args.partitions)
        .projectors(all_projectors())
        .saga(true)
        .saga_config(move |c| {
            c.concurrency = concurrency;
            c.batch_size = saga_batch;
        })
        .start()
        .await?;
    let load = LoadArgs {
        rate: 0,
        duration_secs: args.step_secs,
        warmup_secs: 0,
        max_in_flight: args.max_in_flight,
        api_bin: args.api_bin.clone(),
        db_pool_size: args.db_pool_size,
    };
    let (api, driver) = Driver::start(&load, &db_url).await?;
    let shared = Arc::new(Watch {
        driver: driver.places_only(),
        poll: Duration::from_millis(args.poll_ms.max(1)),
        polling: AtomicU64::new(0),
        timeouts: AtomicU64::new(0),
        visible: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
    });
    settle(&pool, Duration::from_secs(60)).await?;

    println!(
        "== Lunch rush end to end: card orders placed open-loop, the platform does the rest =="
    );
    println!(
        "machine: {} cores; {} s per rate; relay, saga (concurrency {}, batches of {}), 3 projectors in one process, \
         API its own process; {} partitions per topic; 1 order in {} watched, polled every {} ms",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        args.step_secs,
        args.saga_concurrency,
        args.saga_batch_size,
        args.partitions,
        args.sample_every,
        args.poll_ms,
    );
    println!(
        "targets per rate: placed -> confirmed p99 <= {P99_TARGET_MS} ms (every order, from the store), \
         response -> visible p99 <= {P99_TARGET_MS} ms, no consumer more than {BEHIND_TARGET_SECS} s behind"
    );
    println!(
        "| offered/s | achieved/s | errors | missed | place p99 ms | placed | unconfirmed | confirm p50 ms | confirm p99 ms | visible p99 ms (samples) | worst consumer lag | cores busy (CPU per order) | cores stolen | verdict |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    if let Some(&first) = args.rates.first()
        && args.warmup_secs > 0
    {
        run_step(&shared, &pool, &args, first, args.warmup_secs).await?;
        settle(&pool, Duration::from_secs(120)).await?;
    }
    let mut best: Option<u32> = None;
    let mut missed_in_a_row = 0;
    for &rate in &args.rates {
        let step = run_step(&shared, &pool, &args, rate, args.step_secs).await?;
        print_row(&step);
        if step.met() {
            best = Some(best.map_or(rate, |b| b.max(rate)));
            missed_in_a_row = 0;
        } else {
            missed_in_a_row += 1;
            if missed_in_a_row >= 2 && !args.keep_going {
                break;
            }
        }
        stack.check_running()?;
        if let Err(e) = settle(&pool, Duration::from_secs(300)).await {
            println!("{e}; stopping the sweep");
            break;
        }
    }
    match best {
        Some(rate) => println!(
            "highest rate that met every target: {rate} orders/s (target >= 1,500) -> {}",
            if rate >= 1_500 { "met" } else { "MISSED" }
        ),
        None => println!("no rate met every target (target >= 1,500 orders/s) -> MISSED"),
    }

    tear_down(
        api,
        stack,
        pool,
        &args.servers.database_url,
        &db_name,
        args.keep_database,
    )
    .await
}
