//! Relay benchmark (see `bench/RELAY.md`):
//!
//! 1. catch-up: a backlog of stored events (default 200,000, realistic
//!    delivery and location payloads inserted with one `generate_series`
//!    statement) published by a relay started from scratch; events per second
//!    from relay start until its checkpoint reaches the store head;
//! 2. publish lag at a steady command rate (default 1,000 commands/s, one
//!    event per command, each its own transaction like the command service's
//!    appends): commit → message read back by a consumer, p50/p99/max. That is
//!    an upper bound of commit → broker acknowledgement.
//!
//! Runs against `DATABASE_URL` (a fresh database is created and dropped) and
//! `KAFKA_BROKERS`, or an in-process librdkafka mock cluster when unset.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ordertrail_bench::relay_lag::steady_lag;
use ordertrail_bench::{Servers, drop_database, fresh_database};
use ordertrail_commands::relay::checkpoint;
use ordertrail_launcher::{Stack, mock};
use ordertrail_platform::event_log;
use ordertrail_schemas::topics::all_topics;
use sqlx::PgPool;
use uuid::Uuid;

/// Measures relay catch-up throughput and publish lag.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    servers: Servers,
    /// Stored events to catch up on.
    #[arg(long, default_value_t = 200_000)]
    backlog: i64,
    /// Commands per second during the lag measurement.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds of steady load during the lag measurement.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Relay batch size.
    #[arg(long, default_value_t = 2_000)]
    batch_size: usize,
    /// Partitions per topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

const PARTITIONS_MOCK_BROKERS: i32 = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ordertrail_platform::telemetry::init("relay-bench");
    let (db_name, _url, pool) = fresh_database(&args.servers.database_url, 24, false).await?;
    let result = bench(&args, &pool).await;
    pool.close().await;
    drop_database(&args.servers.database_url, &db_name)
        .await
        .context("drop bench database")?;
    result
}

async fn bench(args: &Args, pool: &PgPool) -> anyhow::Result<()> {
    let prefix = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mock: Option<mock::Mock>;
    let brokers = match &args.servers.kafka_brokers {
        Some(b) if !b.trim().is_empty() => {
            mock = None;
            b.clone()
        }
        _ => {
            let m = mock::host(
                PARTITIONS_MOCK_BROKERS,
                &all_topics(&prefix),
                args.partitions,
            )?;
            let b = m.bootstrap_servers();
            mock = Some(m);
            b
        }
    };
    println!(
        "relay bench: broker {} ({}), backlog {}, batch {}, {} partitions/topic",
        brokers,
        if mock.is_some() {
            "in-process librdkafka mock cluster"
        } else {
            "KAFKA_BROKERS"
        },
        args.backlog,
        args.batch_size,
        args.partitions
    );

    // 1. Catch-up.
    let started = Instant::now();
    insert_backlog(pool, args.backlog).await?;
    let head = event_log::head(pool)
        .await?
        .context("backlog is readable")?;
    println!(
        "backlog: {} events inserted in {:.1}s",
        args.backlog,
        started.elapsed().as_secs_f64()
    );

    // The relay alone, in this process (the launcher's `Stack`).
    let batch_size = args.batch_size;
    let stack = Stack::on_pool(pool.clone())
        .kafka(&brokers)
        .topic_prefix(&prefix)
        .partitions(args.partitions)
        .projectors(Vec::new())
        .relay_config(move |c| c.batch_size = batch_size)
        .start()
        .await?;
    let started = Instant::now();
    loop {
        let mut conn = pool.acquire().await?;
        if checkpoint::load(&mut conn, &prefix).await? >= head {
            break;
        }
        stack.check_running().context("during catch-up")?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let catch_up = args.backlog as f64 / took;
    println!(
        "catch-up: {} events in {took:.2}s = {catch_up:.0} events/s (target >= 50000)",
        args.backlog
    );

    // 2. Lag at a steady rate.
    let (p50, p99, max, n) = steady_lag(
        pool,
        &brokers,
        &prefix,
        args.partitions,
        args.rate,
        args.seconds,
    )
    .await?;
    println!(
        "publish lag at {}/s for {}s ({n} commands): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms \
         (commit -> consumed; target p99 <= 50 ms)",
        args.rate, args.seconds
    );
    stack.stop().await?;
    drop(mock);
    Ok(())
}

/// Realistic rows: each delivery is requested, then reports its rider's
/// location nine times; metadata as `EventMetadata::to_map` writes it.
async fn insert_backlog(pool: &PgPool, n: i64) -> anyhow::Result<()> {
    sqlx::query(
        r#"
WITH g AS (
    SELECT i, (i / 10) AS d, (i % 10) + 1 AS seq,
           md5('delivery' || (i / 10))::uuid AS delivery_id,
           md5('rider' || (i / 10 % 500))::uuid AS rider_id,
           gen_random_uuid() AS command_id
    FROM generate_series(0, $1 - 1) AS i
)
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'Delivery', delivery_id::text, seq,
       CASE WHEN seq = 1 THEN 'DeliveryRequested' ELSE 'RiderLocationReported' END,
       '2',
       CASE WHEN seq = 1 THEN json_build_object(
                'type', 'DeliveryRequested', 'delivery_id', delivery_id,
                'order_id', md5('order' || d)::uuid, 'restaurant_id', md5('restaurant' || (d % 50))::uuid,
                'pickup', json_build_object('lat', 52.49 + (d % 100) * 0.0001, 'lon', 13.41),
                'dropoff', json_build_object('lat', 52.51, 'lon', 13.39 + (d % 100) * 0.0001),
                'dropoff_code_hash', 'hmac-sha256:' || repeat(md5(d::text), 2), 'ready_by', null,
                'requested_at', now())
            ELSE json_build_object(
                'type', 'RiderLocationReported', 'rider_id', rider_id,
                'location', json_build_object('lat', 52.49 + seq * 0.0003, 'lon', 13.41 - seq * 0.0002),
                'reported_at', now() + seq * interval '5 seconds', 'accuracy_m', 3 + seq)
       END,
       json_build_object('command_id', command_id, 'correlation_id', md5('order' || d)::uuid,
                         'causation_id', command_id, 'actor_subject', rider_id::text,
                         'actor_role', 'rider', 'request_id', 'req-' || i)
FROM g
"#,
    )
    .bind(n)
    .execute(pool)
    .await
    .context("insert backlog")?;
    Ok(())
}
