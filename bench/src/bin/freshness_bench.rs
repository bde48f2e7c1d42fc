//! Freshness benchmark: time from a command's HTTP response to its effect
//! being visible through the query API, at a steady command rate.
//!
//! 1. Creates a fresh migrated and seeded database; the launcher's `Stack`
//!    hosts librdkafka's mock cluster in-process (or uses `KAFKA_BROKERS`)
//!    with the three topics.
//! 2. Starts the real `ordertrail-api` binary as its own process, and runs the
//!    relay and the order-history projector in this process (the launcher's
//!    `Stack`), exactly as in production: the API appends, the relay publishes
//!    on LISTEN/NOTIFY, the projector applies in batches.
//! 3. Drives the command API open-loop at `--rate` commands/s: each slot sends
//!    the next step of an order in flight (authorize → confirm → accept →
//!    ready) or, when none is due, places a new order, so the mix settles at
//!    one `PlaceOrder` to four follow-ups.
//! 4. For one command in `--sample-every`, polls `GET /v1/orders/{id}` every
//!    `--poll-ms` from the moment the command's response arrived until the
//!    order shows the command's effect (status, or payment status for the
//!    authorization); that interval is the freshness. Polling only a sample
//!    keeps the query load from swamping the 2-core machine; the figure is an
//!    upper bound by up to one poll interval.
//!
//! Prints the achieved command rate, command latency, and freshness p50/p90/
//! p99/max, plus the projector status at the end.

use ordertrail_bench::lifecycle::{Driver, Due, LoadArgs, Step};
use ordertrail_bench::{Servers, fresh_database, init_tracing, ms, snapshot, tear_down};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use hdrhistogram::Histogram;
use ordertrail_launcher::Stack;
use ordertrail_projections::ProjectorKind;
use serde_json::Value;
use uuid::Uuid;

/// Command → query-API freshness at a steady command rate.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    servers: Servers,
    #[command(flatten)]
    load: LoadArgs,
    /// Measure the freshness of one command in this many (each sampled
    /// command costs about ten GETs while it is polled).
    #[arg(long, default_value_t = 20)]
    sample_every: u64,
    /// Poll interval of a sampled command's `GET /v1/orders/{id}`, ms.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Events per projector transaction.
    #[arg(long, default_value_t = 2_000)]
    batch_size: usize,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep_database: bool,
}

/// Whether the order's read-model row shows this step's effect (or a
/// later step's, which implies it: the next step may follow within ms).
fn visible_in(step: Step, order: &Value) -> bool {
    let rank = match order["status"].as_str() {
        Some("placed") => 0,
        Some("confirmed") => 1,
        Some("accepted") => 2,
        Some("ready_for_pickup") => 3,
        Some(_) => 4,
        None => return false,
    };
    match step {
        Step::Place => true,
        Step::Authorize => order["payment_status"].is_string(),
        Step::Confirm => rank >= 1,
        Step::Accept => rank >= 2,
        Step::Ready => rank >= 3,
    }
}

struct Shared {
    driver: Driver,
    /// Poll interval of a sampled command's order.
    poll: Duration,
    /// Sampled commands whose effect is still being polled for.
    polling: AtomicU64,
    timeouts: AtomicU64,
    freshness: Mutex<Histogram<u64>>,
    freshness_by_step: Mutex<Vec<(Step, u64)>>,
}

/// Send one command; for a sampled command that succeeded, measure when
/// its effect becomes visible.
async fn send(shared: Arc<Shared>, due: Option<Due>, sampled: bool) {
    let Some(sent) = shared.driver.send(due).await else {
        return;
    };
    if sampled {
        shared.polling.fetch_add(1, Ordering::Relaxed);
        watch_visibility(&shared, sent.order, sent.step, sent.answered, sent.measured).await;
        shared.polling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Poll the order's detail until `step`'s effect shows (at most 10 s).
async fn watch_visibility(
    shared: &Shared,
    order: Uuid,
    step: Step,
    answered: Instant,
    measuring: bool,
) {
    let url = format!("{}/v1/orders/{order}", shared.driver.base);
    loop {
        if let Ok(r) = shared
            .driver
            .client
            .get(&url)
            .bearer_auth(&shared.driver.ops)
            .send()
            .await
            && r.status().is_success()
            && let Ok(body) = r.json::<Value>().await
            && visible_in(step, &body["order"])
        {
            if measuring {
                let micros = answered.elapsed().as_micros() as u64;
                if let Ok(mut h) = shared.freshness.lock() {
                    let _ = h.record(micros.max(1));
                }
                if let Ok(mut v) = shared.freshness_by_step.lock() {
                    v.push((step, micros));
                }
            }
            return;
        }
        if answered.elapsed() > Duration::from_secs(10) {
            if measuring {
                shared.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        tokio::time::sleep(shared.poll).await;
    }
}

/// Send at `rate` for `duration`, open-loop; one command in
/// `--sample-every` is sampled.
async fn drive(shared: &Arc<Shared>, args: &Args, duration: Duration, counter: &mut u64) {
    shared
        .driver
        .drive(args.load.rate, duration, |due| {
            *counter += 1;
            let sampled = (*counter).is_multiple_of(args.sample_every.max(1));
            tokio::spawn(send(Arc::clone(shared), due, sampled));
        })
        .await;
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    init_tracing("warn");
    let (db_name, db_url, pool) = fresh_database(&args.servers.database_url, 8, true).await?;

    // The relay and the order-history projector in this process (the
    // launcher's `Stack`), on a hosted one-broker mock unless KAFKA_BROKERS.
    let projector_batch = args.batch_size;
    let stack = Stack::on_pool(pool.clone())
        .kafka(args.servers.kafka_brokers.clone().unwrap_or_default())
        .mock_brokers(1)
        .topic_prefix(format!(
            "fresh{}",
            &Uuid::new_v4().simple().to_string()[..8]
        ))
        .partitions(args.partitions)
        .projectors(vec![ProjectorKind::OrderHistory])
        .projector_config(move |c| c.batch_size = projector_batch)
        .start()
        .await?;

    let (api, driver) = Driver::start(&args.load, &db_url).await?;

    let shared = Arc::new(Shared {
        driver,
        poll: Duration::from_millis(args.poll_ms.max(1)),
        polling: AtomicU64::new(0),
        timeouts: AtomicU64::new(0),
        freshness: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        freshness_by_step: Mutex::new(Vec::new()),
    });

    println!("== Freshness: command response -> visible through GET /v1/orders/{{id}} ==");
    println!(
        "machine: {} cores; rate {} commands/s open-loop; {} s measured after {} s warm-up; \
         1 in {} commands sampled, polled every {} ms; {} partitions per topic; projector batch {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        args.load.rate,
        args.load.duration_secs,
        args.load.warmup_secs,
        args.sample_every,
        args.poll_ms,
        args.partitions,
        args.batch_size,
    );
    let mut counter = 0_u64;
    drive(
        &shared,
        &args,
        Duration::from_secs(args.load.warmup_secs),
        &mut counter,
    )
    .await;
    shared.driver.start_measuring();
    let measured_from = Instant::now();
    let sent_before = counter;
    drive(
        &shared,
        &args,
        Duration::from_secs(args.load.duration_secs),
        &mut counter,
    )
    .await;
    let sent = counter - sent_before;
    let window = measured_from.elapsed();
    shared.driver.measuring.store(false, Ordering::Relaxed);
    // Let the commands and polls of the window finish (a poll gives up after 10 s).
    let drain = Instant::now();
    while (shared.driver.in_flight() > 0 || shared.polling.load(Ordering::Relaxed) > 0)
        && drain.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ok = shared.driver.ok.load(Ordering::Relaxed);
    let latency = snapshot(&shared.driver.latency)?;
    let fresh = snapshot(&shared.freshness)?;
    println!(
        "commands: {sent} sent in {:.1} s = {:.0}/s; {ok} succeeded ({:.0}/s); errors {}; missed slots (>{} in flight) {}",
        window.as_secs_f64(),
        sent as f64 / window.as_secs_f64(),
        ok as f64 / window.as_secs_f64(),
        shared.driver.errors.load(Ordering::Relaxed),
        args.load.max_in_flight,
        shared.driver.missed.load(Ordering::Relaxed),
    );
    println!(
        "command latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.90)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max()),
    );
    println!(
        "freshness ({} samples, {} not visible within 10 s): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        fresh.len(),
        shared.timeouts.load(Ordering::Relaxed),
        ms(fresh.value_at_quantile(0.50)),
        ms(fresh.value_at_quantile(0.90)),
        ms(fresh.value_at_quantile(0.99)),
        ms(fresh.max()),
    );
    if let Ok(by_step) = shared.freshness_by_step.lock() {
        for step in Step::ALL {
            let mut v: Vec<u64> = by_step
                .iter()
                .filter(|(s, _)| *s == step)
                .map(|(_, m)| *m)
                .collect();
            v.sort_unstable();
            if let (Some(p50), Some(p99)) = (v.get(v.len() / 2), v.get(v.len() * 99 / 100)) {
                println!(
                    "  {step:?}: {} samples, p50 {:.1} ms, p99 {:.1} ms",
                    v.len(),
                    ms(*p50),
                    ms(*p99)
                );
            }
        }
    }
    for s in ordertrail_projections::queries::projector_status(&pool).await? {
        if s.events_applied > 0 {
            println!(
                "projector {}: {} events applied, {} behind, {:.2} s behind",
                s.projector, s.events_applied, s.events_behind, s.seconds_behind
            );
        }
    }
    println!(
        "target: freshness p99 <= 250 ms at 1,000 commands/s -> {}",
        if ms(fresh.value_at_quantile(0.99)) <= 250.0 && !fresh.is_empty() {
            "met"
        } else {
            "MISSED"
        }
    );

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
