//! Growth benchmark (issue 16, "cost flat as the store grows"): the same
//! figures against an empty store and against a store of `--events` events
//! (default 10,000,000), and their ratio (target <= 1.2x).
//!
//! For each of the two stores, in a fresh database (seeded reference data):
//!
//! 1. realistic delivered card orders (the backlog every store-fed benchmark
//!    uses: placed, authorized, confirmed, accepted, delivered, captured)
//!    written straight into `events`, 5,000 rows per statement, until
//!    `--events` (grown) or `--baseline-events` (empty: a few thousand
//!    orders, so both stores hold orders of the same shape) is reached; then
//!    `VACUUM (ANALYZE)` and `CHECKPOINT`, the steady state of a store that
//!    grew over weeks (again after the rebuild of step 4). The relay's
//!    checkpoint is put at the head: the history was published long ago;
//! 2. the relay (the launcher's `Stack`, embedded broker unless
//!    `KAFKA_BROKERS`) and the real `ordertrail-api` binary start;
//! 3. PlaceOrder p99 through the API at `--concurrency` for `--seconds`
//!    (after a 2 s warm-up), the shared load generator;
//! 4. the order-history read model is built by its projector's `rebuild`
//!    (the whole store), then `GET /v1/orders` filtered by restaurant and
//!    status (the busiest restaurant's delivered orders), and
//!    `GET /v1/orders/{id}` of random delivered orders, `--reads` each, one
//!    client, p99;
//! 5. relay publish lag p99 at `--relay-rate` for `--relay-seconds`;
//! 6. disk per stored event: `pg_total_relation_size('events')` (table,
//!    TOAST and indexes) divided by its rows.
//!
//! Prints a table with the ratio per figure. Asserts nothing. The databases
//! are dropped unless `--keep`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use ordertrail_bench::backlog::{Backlog, load, order};
use ordertrail_bench::load::run_load;
use ordertrail_bench::relay_lag::steady_lag;
use ordertrail_bench::{
    Servers, database_url, drop_database, fresh_database, mint_token, ms, projector_binary,
    spawn_api, wait_ready,
};
use ordertrail_launcher::Stack;
use ordertrail_schemas::RestaurantId;
use sqlx::PgPool;
use uuid::Uuid;

/// Compares latencies and disk of an empty store with a grown one.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    servers: Servers,
    /// Events in the grown store (9 per order with `--reports 0`).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Events of the same delivered orders in the empty store (about 100
    /// orders per restaurant, so a list page is as full as in the grown
    /// store): the two stores differ in size only, not in what an order
    /// looks like.
    #[arg(long, default_value_t = 45_000)]
    baseline_events: u64,
    /// Rider location reports per delivery in the generated orders (13
    /// events per order with 4).
    #[arg(long, default_value_t = 0)]
    reports: usize,
    /// Concurrent PlaceOrder clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds of PlaceOrder load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of unmeasured PlaceOrder load first (the grown store's hot
    /// index pages come back into the buffers).
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// Requests per read figure.
    #[arg(long, default_value_t = 1_000)]
    reads: usize,
    /// Events per second for the relay lag.
    #[arg(long, default_value_t = 500)]
    relay_rate: u64,
    /// Seconds of relay lag measurement.
    #[arg(long, default_value_t = 5)]
    relay_seconds: u64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The API's database pool.
    #[arg(long, default_value_t = 16)]
    api_pool: u32,
    /// Keep the databases afterwards.
    #[arg(long)]
    keep: bool,
    /// Measure a grown store a `--keep` run left (its database name on the
    /// same server) instead of writing and rebuilding a new one; it is kept.
    /// For re-measuring a large store under another server setting.
    #[arg(long)]
    grown_database: Option<String>,
}

/// The figures of one store.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    events: i64,
    place_p99: f64,
    list_p99: f64,
    detail_p99: f64,
    relay_p99: f64,
    bytes_per_event: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let empty = measure(&args, false).await.context("empty store")?;
    let grown = measure(&args, true).await.context("grown store")?;
    println!(
        "\n| figure | empty store ({} events) | grown store ({} events) | grown / empty |",
        empty.events, grown.events
    );
    println!("|---|---|---|---|");
    let row = |name: &str, unit: &str, e: f64, g: f64| {
        let ratio = if e > 0.0 { g / e } else { f64::NAN };
        println!(
            "| {name} | {e:.2} {unit} | {g:.2} {unit} | {ratio:.2}x{} |",
            if unit == "ms" && ratio > 1.2 {
                " (over 1.2x)"
            } else {
                ""
            }
        );
    };
    row("PlaceOrder p99", "ms", empty.place_p99, grown.place_p99);
    row(
        "GET /v1/orders (restaurant + status) p99",
        "ms",
        empty.list_p99,
        grown.list_p99,
    );
    row(
        "GET /v1/orders/{id} p99",
        "ms",
        empty.detail_p99,
        grown.detail_p99,
    );
    row(
        "relay publish lag p99",
        "ms",
        empty.relay_p99,
        grown.relay_p99,
    );
    row(
        "disk per stored event",
        "bytes",
        empty.bytes_per_event,
        grown.bytes_per_event,
    );
    Ok(())
}

async fn measure(args: &Args, grown: bool) -> Result<Figures> {
    let label = if grown { "grown" } else { "empty" };
    let reused = args.grown_database.as_deref().filter(|_| grown);
    let (name, url, pool) = match reused {
        Some(name) => {
            let url = database_url(&args.servers.database_url, name)?;
            let pool = ordertrail_platform::db::connect(&url, 8).await?;
            (name.to_owned(), url, pool)
        }
        None => fresh_database(&args.servers.database_url, 8, true).await?,
    };
    let result = measure_in(args, grown, label, &url, &pool).await;
    pool.close().await;
    if !args.keep && reused.is_none() {
        drop_database(&args.servers.database_url, &name).await?;
    } else {
        println!("[{label}] kept database {name}");
    }
    result
}

async fn measure_in(
    args: &Args,
    grown: bool,
    label: &str,
    url: &str,
    pool: &PgPool,
) -> Result<Figures> {
    let prefix = format!("growth{}", &Uuid::new_v4().simple().to_string()[..8]);
    let reused = grown && args.grown_database.is_some();
    if !reused {
        let started = Instant::now();
        let target = if grown {
            args.events
        } else {
            args.baseline_events
        };
        let (orders, events) = fill(pool, target, args.reports).await?;
        println!(
            "[{label}] store: {events} events of {orders} orders written in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    // Published long ago: the relay starts at the head.
    sqlx::query(
        "INSERT INTO relay_checkpoints (relay_name, transaction_id, global_position)
         SELECT $1, transaction_id, global_position FROM events
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .bind(&prefix)
    .execute(pool)
    .await?;
    settle(pool, label, "the fill").await?;

    let mut stack = Stack::on_pool(pool.clone())
        .topic_prefix(&prefix)
        .partitions(args.partitions)
        .projectors(Vec::new());
    if let Some(b) = args
        .servers
        .kafka_brokers
        .as_deref()
        .filter(|b| !b.trim().is_empty())
    {
        stack = stack.kafka(b);
    }
    let stack = stack.start().await?;
    let api = spawn_api(None, url, args.api_pool)?;
    let client = reqwest::Client::new();
    wait_ready(&client, &api.base).await?;

    let _ = run_load(
        &client,
        &api.base,
        &api.secret,
        args.concurrency,
        Duration::from_secs(args.warmup_secs),
    )
    .await?;
    let wal_before = Wal::read(pool).await?;
    let placed = run_load(
        &client,
        &api.base,
        &api.secret,
        args.concurrency,
        Duration::from_secs(args.seconds),
    )
    .await?;
    let place_p99 = ms(placed.hist.value_at_quantile(0.99));
    println!(
        "[{label}] PlaceOrder: {} placed in {:.1} s ({} errors), p50 {:.2} ms, p99 {place_p99:.2} ms",
        placed.ok,
        placed.elapsed.as_secs_f64(),
        placed.errors,
        ms(placed.hist.value_at_quantile(0.5))
    );
    Wal::read(pool)
        .await?
        .since(wal_before)
        .print(label, placed.ok);

    if !reused {
        let started = Instant::now();
        rebuild_order_history(url).await?;
        println!(
            "[{label}] order-history rebuilt in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        settle(pool, label, "the rebuild").await?;
    }
    let token = mint_token(&api.secret, "ops", "ops-growth")?;
    // Both stores are read through the generated delivered orders (payment,
    // delivery and a 9-event timeline each), not the placed-only orders of
    // the PlaceOrder load: the same shape of answer at both sizes. The list
    // asks for the busiest restaurant's delivered orders: the filter matches
    // as many rows as the store holds for one restaurant.
    let (restaurant, status): (Uuid, String) = sqlx::query_as(
        "SELECT restaurant_id, status FROM order_history WHERE status = 'delivered'
         GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .context("no orders in the read model")?;
    let list_url = format!(
        "{}/v1/orders?restaurant_id={restaurant}&status={status}&limit=50",
        api.base
    );
    let list_p99 = p99_of(&client, &token, args.reads, |_| list_url.clone()).await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT order_id FROM order_history WHERE status = 'delivered' ORDER BY random() LIMIT $1",
    )
    .bind(args.reads as i64)
    .fetch_all(pool)
    .await?;
    if ids.is_empty() {
        bail!("no orders to read");
    }
    let detail_p99 = p99_of(&client, &token, args.reads, |i| {
        format!("{}/v1/orders/{}", api.base, ids[i % ids.len()])
    })
    .await?;
    println!(
        "[{label}] GET /v1/orders p99 {list_p99:.2} ms, GET /v1/orders/{{id}} p99 {detail_p99:.2} ms"
    );

    let (_, relay_p99, _, _) = steady_lag(
        pool,
        stack.brokers(),
        &prefix,
        args.partitions,
        args.relay_rate,
        args.relay_seconds,
    )
    .await?;
    println!("[{label}] relay publish lag p99 {relay_p99:.2} ms");

    let (events, bytes): (i64, i64) =
        sqlx::query_as("SELECT count(*), pg_total_relation_size('events') FROM events")
            .fetch_one(pool)
            .await?;
    drop(api);
    stack.stop().await?;
    Ok(Figures {
        events,
        place_p99,
        list_p99,
        detail_p99,
        relay_p99,
        bytes_per_event: bytes as f64 / events.max(1) as f64,
    })
}

/// Write delivered card orders into `events` until `target` events; returns
/// orders and events written.
async fn fill(pool: &PgPool, target: u64, reports: usize) -> Result<(usize, u64)> {
    let restaurants: Vec<RestaurantId> = (0..50).map(|_| RestaurantId::new_random()).collect();
    let (mut orders, mut events) = (0usize, 0u64);
    let mut position = 0;
    let mut last_report = Instant::now();
    while events < target {
        let mut backlog = Backlog {
            position,
            ..Backlog::default()
        };
        while (backlog.envelopes.len() as u64) < 50_000
            && events + (backlog.envelopes.len() as u64) < target
        {
            order(&mut backlog, orders, reports, &restaurants)?;
            orders += 1;
        }
        load(pool, &backlog.envelopes).await?;
        events += backlog.envelopes.len() as u64;
        position = backlog.position;
        if last_report.elapsed() > Duration::from_secs(30) {
            println!("  ... {events} events");
            last_report = Instant::now();
        }
    }
    Ok((orders, events))
}

/// After a bulk write (the fill, the rebuild), bring the database to the
/// steady state a store that grew over weeks is in: vacuumed and analysed
/// (autovacuum would otherwise scan the new gigabytes during the
/// measurements) and checkpointed (no flush of the bulk write's dirty pages
/// under the measured commits). Both stores get the same treatment.
async fn settle(pool: &PgPool, label: &str, after: &str) -> Result<()> {
    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE)").execute(pool).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        println!("[{label}] CHECKPOINT not allowed for this role ({e}); measuring without it");
    }
    println!(
        "[{label}] vacuumed, analysed and checkpointed after {after} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The server's WAL counters (`pg_stat_wal`): what the commits under
/// measurement wrote, and how much of it was full-page images (the first
/// change to a page after a checkpoint logs the whole 8 KB page, so random
/// inserts into large indexes cost more WAL as the store grows).
#[derive(Debug, Clone, Copy)]
struct Wal {
    records: i64,
    full_pages: i64,
    bytes: i64,
}

impl Wal {
    async fn read(pool: &PgPool) -> Result<Self> {
        let (records, full_pages, bytes): (i64, i64, i64) =
            sqlx::query_as("SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal")
                .fetch_one(pool)
                .await?;
        Ok(Self {
            records,
            full_pages,
            bytes,
        })
    }

    fn since(self, before: Self) -> Self {
        Self {
            records: self.records - before.records,
            full_pages: self.full_pages - before.full_pages,
            bytes: self.bytes - before.bytes,
        }
    }

    fn print(self, label: &str, orders: u64) {
        let per = |n: i64| n as f64 / orders.max(1) as f64;
        println!(
            "[{label}] WAL per order placed (whole server): {:.1} records, {:.2} full-page images, {:.0} bytes",
            per(self.records),
            per(self.full_pages),
            per(self.bytes)
        );
    }
}

/// The order-history projector's own `rebuild` over the whole store.
async fn rebuild_order_history(url: &str) -> Result<()> {
    let bin = projector_binary("order-history")?;
    let out = tokio::process::Command::new(&bin)
        .args(["rebuild", "--json", "--quiet"])
        .env("DATABASE_URL", url)
        .env_remove("KAFKA_BROKERS")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .with_context(|| format!("run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "order-history rebuild failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `n` sequential GETs of `url(i)` as `token`; p99 in ms. Any answer but
/// 200 fails the run.
async fn p99_of(
    client: &reqwest::Client,
    token: &str,
    n: usize,
    url: impl Fn(usize) -> String,
) -> Result<f64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for i in 0..n {
        let target = url(i);
        let t = Instant::now();
        let response = client.get(&target).bearer_auth(token).send().await?;
        let status = response.status();
        let _ = response.bytes().await?;
        let micros = t.elapsed().as_micros() as u64;
        if !status.is_success() {
            bail!("GET {target}: {status}");
        }
        hist.record(micros.max(1))?;
    }
    Ok(ms(hist.value_at_quantile(0.99)))
}
