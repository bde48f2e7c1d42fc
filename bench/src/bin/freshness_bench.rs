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

use ordertrail_bench::{
    ApiProcess, fresh_database, mint_token, ms, place_order_body, spawn_api, wait_ready,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use hdrhistogram::Histogram;
use ordertrail_launcher::Stack;
use ordertrail_launcher::seed::seed_ids;
use ordertrail_projections::ProjectorKind;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// Command → query-API freshness at a steady command rate.
#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL server (a role allowed to CREATE DATABASE).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Kafka bootstrap servers; an in-process mock cluster when unset.
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Commands per second, sent open-loop.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Warm-up seconds at the same rate before measuring.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
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
    /// Most commands in flight; a slot that finds this many is counted as missed.
    #[arg(long, default_value_t = 512)]
    max_in_flight: u64,
    /// The API binary (default: next to this one).
    #[arg(long)]
    api_bin: Option<std::path::PathBuf>,
    /// API database pool size.
    #[arg(long, default_value_t = 16)]
    db_pool_size: u32,
    /// Events per projector transaction.
    #[arg(long, default_value_t = 2_000)]
    batch_size: usize,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep_database: bool,
}

/// The steps of an order the load drives, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Place,
    Authorize,
    Confirm,
    Accept,
    Ready,
}

impl Step {
    fn next(self) -> Option<Step> {
        match self {
            Step::Place => Some(Step::Authorize),
            Step::Authorize => Some(Step::Confirm),
            Step::Confirm => Some(Step::Accept),
            Step::Accept => Some(Step::Ready),
            Step::Ready => None,
        }
    }

    /// Whether the order's read-model row shows this step's effect (or a
    /// later step's, which implies it: the next step may follow within ms).
    fn visible_in(self, order: &Value) -> bool {
        let rank = match order["status"].as_str() {
            Some("placed") => 0,
            Some("confirmed") => 1,
            Some("accepted") => 2,
            Some("ready_for_pickup") => 3,
            Some(_) => 4,
            None => return false,
        };
        match self {
            Step::Place => true,
            Step::Authorize => order["payment_status"].is_string(),
            Step::Confirm => rank >= 1,
            Step::Accept => rank >= 2,
            Step::Ready => rank >= 3,
        }
    }
}

/// An order in flight: what to send next.
#[derive(Debug, Clone)]
struct Due {
    order: Uuid,
    customer_token: Arc<str>,
    step: Step,
}

struct Shared {
    client: reqwest::Client,
    base: String,
    secret: String,
    /// Poll interval of a sampled command's order.
    poll: Duration,
    ops: String,
    restaurant: String,
    due: Mutex<VecDeque<Due>>,
    in_flight: AtomicU64,
    /// Sampled commands whose effect is still being polled for.
    polling: AtomicU64,
    measuring: std::sync::atomic::AtomicBool,
    ok: AtomicU64,
    errors: AtomicU64,
    missed: AtomicU64,
    timeouts: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    freshness: Mutex<Histogram<u64>>,
    freshness_by_step: Mutex<Vec<(Step, u64)>>,
}

/// Send one command; on success, queue the order's next step and, for a
/// sampled command, measure when its effect becomes visible.
async fn send(shared: Arc<Shared>, due: Option<Due>, sampled: bool) {
    let measuring = shared.measuring.load(Ordering::Relaxed);
    let (order, customer_token, step, request) = match due {
        None => {
            let customer = Uuid::new_v4();
            let Ok(t) = mint_token(&shared.secret, "customer", &customer.to_string()) else {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let request = shared
                .client
                .post(format!("{}/v1/orders", shared.base))
                .bearer_auth(&t)
                .json(&place_order_body());
            (None, Arc::<str>::from(t), Step::Place, request)
        }
        Some(d) => {
            let (path, bearer, body) = match d.step {
                Step::Authorize => (
                    "/v1/payments".to_owned(),
                    d.customer_token.to_string(),
                    json!({"order_id": d.order}),
                ),
                Step::Confirm => (
                    format!("/v1/orders/{}/confirm", d.order),
                    shared.ops.clone(),
                    json!({}),
                ),
                Step::Accept => (
                    format!("/v1/orders/{}/accept", d.order),
                    shared.restaurant.clone(),
                    json!({"preparation_minutes": 12}),
                ),
                // `Place` is never due (a new order is placed instead).
                Step::Ready | Step::Place => (
                    format!("/v1/orders/{}/ready", d.order),
                    shared.restaurant.clone(),
                    json!({}),
                ),
            };
            let request = shared
                .client
                .post(format!("{}{path}", shared.base))
                .bearer_auth(bearer)
                .json(&body);
            (Some(d.order), d.customer_token, d.step, request)
        }
    };
    let sent = Instant::now();
    let response = request.send().await;
    let answered = Instant::now();
    let order = match response {
        Ok(r) if r.status().is_success() => match order {
            Some(o) => Some(o),
            None => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|b| b["aggregate_id"].as_str().and_then(|s| s.parse().ok())),
        },
        Ok(r) => {
            tracing::warn!(status = %r.status(), ?step, "command failed");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, ?step, "command not answered");
            None
        }
    };
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    let Some(order) = order else {
        shared.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if measuring {
        shared.ok.fetch_add(1, Ordering::Relaxed);
        let micros = answered.duration_since(sent).as_micros() as u64;
        if let Ok(mut h) = shared.latency.lock() {
            let _ = h.record(micros.max(1));
        }
    }
    if let Some(next) = step.next()
        && let Ok(mut due) = shared.due.lock()
    {
        due.push_back(Due {
            order,
            customer_token,
            step: next,
        });
    }
    if sampled {
        shared.polling.fetch_add(1, Ordering::Relaxed);
        watch_visibility(&shared, order, step, answered, measuring).await;
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
    let url = format!("{}/v1/orders/{order}", shared.base);
    loop {
        if let Ok(r) = shared
            .client
            .get(&url)
            .bearer_auth(&shared.ops)
            .send()
            .await
            && r.status().is_success()
            && let Ok(body) = r.json::<Value>().await
            && step.visible_in(&body["order"])
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

/// Send at `rate` for `duration`, open-loop, ticking every 10 ms.
async fn drive(shared: &Arc<Shared>, args: &Args, duration: Duration, counter: &mut u64) {
    let tick = Duration::from_millis(10);
    let per_tick = f64::from(args.rate) / 100.0;
    let start = tokio::time::Instant::now();
    let mut owed = 0.0_f64;
    let mut next = start;
    while next.duration_since(start) < duration {
        tokio::time::sleep_until(next).await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            if shared.in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
                shared.missed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            *counter += 1;
            let sampled = (*counter).is_multiple_of(args.sample_every.max(1));
            let due = shared.due.lock().ok().and_then(|mut d| d.pop_front());
            shared.in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(send(Arc::clone(shared), due, sampled));
        }
        next += tick;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let (db_name, db_url, pool) = fresh_database(&args.database_url, 8, true).await?;

    // The relay and the order-history projector in this process (the
    // launcher's `Stack`), on a hosted one-broker mock unless KAFKA_BROKERS.
    let projector_batch = args.batch_size;
    let stack = Stack::on_pool(pool.clone())
        .kafka(args.kafka_brokers.clone().unwrap_or_default())
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

    let ApiProcess {
        child: mut api,
        base,
        secret,
    } = spawn_api(args.api_bin.as_deref(), &db_url, args.db_pool_size)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1_024)
        .timeout(Duration::from_secs(10))
        .build()?;
    wait_ready(&client, &base).await?;

    let shared = Arc::new(Shared {
        client,
        base,
        ops: mint_token(&secret, "ops", "ops-bench")?,
        restaurant: mint_token(&secret, "restaurant", &seed_ids::BERLIN_BURGERS.to_string())?,
        secret,
        poll: Duration::from_millis(args.poll_ms.max(1)),
        due: Mutex::new(VecDeque::new()),
        in_flight: AtomicU64::new(0),
        polling: AtomicU64::new(0),
        measuring: std::sync::atomic::AtomicBool::new(false),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        missed: AtomicU64::new(0),
        timeouts: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
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
        args.rate,
        args.duration_secs,
        args.warmup_secs,
        args.sample_every,
        args.poll_ms,
        args.partitions,
        args.batch_size,
    );
    let mut counter = 0_u64;
    drive(
        &shared,
        &args,
        Duration::from_secs(args.warmup_secs),
        &mut counter,
    )
    .await;
    shared.measuring.store(true, Ordering::Relaxed);
    shared.errors.store(0, Ordering::Relaxed);
    shared.missed.store(0, Ordering::Relaxed);
    let measured_from = Instant::now();
    let sent_before = counter;
    drive(
        &shared,
        &args,
        Duration::from_secs(args.duration_secs),
        &mut counter,
    )
    .await;
    let sent = counter - sent_before;
    let window = measured_from.elapsed();
    shared.measuring.store(false, Ordering::Relaxed);
    // Let the commands and polls of the window finish (a poll gives up after 10 s).
    let drain = Instant::now();
    while (shared.in_flight.load(Ordering::Relaxed) > 0
        || shared.polling.load(Ordering::Relaxed) > 0)
        && drain.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ok = shared.ok.load(Ordering::Relaxed);
    let latency = shared
        .latency
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let fresh = shared
        .freshness
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    println!(
        "commands: {sent} sent in {:.1} s = {:.0}/s; {ok} succeeded ({:.0}/s); errors {}; missed slots (>{} in flight) {}",
        window.as_secs_f64(),
        sent as f64 / window.as_secs_f64(),
        ok as f64 / window.as_secs_f64(),
        shared.errors.load(Ordering::Relaxed),
        args.max_in_flight,
        shared.missed.load(Ordering::Relaxed),
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
        for step in [
            Step::Place,
            Step::Authorize,
            Step::Confirm,
            Step::Accept,
            Step::Ready,
        ] {
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

    let _ = api.kill().await;
    if let Err(e) = stack.stop().await {
        eprintln!("{e}");
    }
    pool.close().await;
    if !args.keep_database {
        let mut admin = PgConnection::connect(&args.database_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}
