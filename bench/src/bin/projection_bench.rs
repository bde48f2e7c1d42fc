//! Projection benchmark (see `bench/PROJECTIONS.md`): catch-up rate of each
//! projector from a backlog.
//!
//! A backlog of realistic envelopes (default 10,000 delivered card orders:
//! 6 order, 2 payment and 4 + `--reports` delivery events each) is produced
//! to fresh topics; then each projector is started from scratch on its own
//! fresh database and timed until its stored positions reach the end of its
//! topics. Events per second = messages on its topics / time.
//!
//! Runs against `DATABASE_URL` (fresh databases are created and dropped) and
//! `KAFKA_BROKERS`, or an in-process librdkafka mock cluster when unset.

use ordertrail_bench::backlog::{Backlog, order};
use ordertrail_bench::{Servers, drop_database, fresh_database};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use clap::Parser;
use ordertrail_launcher::{Stack, all_projectors, mock};
use ordertrail_projections::ProjectorKind;
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    servers: Servers,
    /// Orders in the backlog.
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// Rider location reports per delivery.
    #[arg(long, default_value_t = 4)]
    reports: usize,
    /// Partitions per topic. librdkafka's mock cluster keeps at most 5 MB
    /// per partition and drops the oldest records beyond that, so the
    /// default backlog needs 12 (checked after producing).
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Events per transaction.
    #[arg(long, default_value_t = 2_000)]
    batch_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let prefix = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let topics = ordertrail_schemas::topics::all_topics(&prefix);
    let mock: Option<mock::Mock>;
    let brokers = match &args.servers.kafka_brokers {
        Some(b) if !b.is_empty() => {
            mock = None;
            let admin: rdkafka::admin::AdminClient<_> =
                ClientConfig::new().set("bootstrap.servers", b).create()?;
            let new: Vec<_> = topics
                .iter()
                .map(|t| {
                    rdkafka::admin::NewTopic::new(
                        t,
                        args.partitions,
                        rdkafka::admin::TopicReplication::Fixed(1),
                    )
                })
                .collect();
            admin
                .create_topics(&new, &rdkafka::admin::AdminOptions::new())
                .await?;
            b.clone()
        }
        _ => {
            let m = mock::host(3, &topics, args.partitions)?;
            let b = m.bootstrap_servers();
            mock = Some(m);
            b
        }
    };

    // The backlog.
    let restaurants: Vec<RestaurantId> = (0..50).map(|_| RestaurantId::new_random()).collect();
    let mut backlog = Backlog::default();
    for i in 0..args.orders {
        order(&mut backlog, i, args.reports, &restaurants)?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        // One request in flight per broker: the backlog must keep each
        // aggregate's order, as the relay guarantees.
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let started = Instant::now();
    let mut counts = std::collections::HashMap::new();
    let mut pending = Vec::with_capacity(backlog.envelopes.len());
    for e in &backlog.envelopes {
        let topic = ordertrail_schemas::topics::topic_for(&prefix, e.aggregate_type);
        let value = serde_json::to_vec(e)?;
        *counts.entry(e.aggregate_type).or_insert(0i64) += 1;
        let record = FutureRecord::to(&topic)
            .key(&e.aggregate_id)
            .payload(&value);
        let delivery = producer
            .send_result(record)
            .map_err(|(err, _)| err)
            .context("enqueue")?;
        pending.push(delivery);
    }
    for p in pending {
        if let Err((e, _)) = p.await? {
            bail!("produce failed: {e}");
        }
    }
    // A broker that already dropped the start of a partition (retention; the
    // mock cluster's 5 MB per partition) would make every projector stop at
    // the first sequence gap, rightly: fail here instead, saying why.
    for kind in AggregateKind::ALL {
        let topic = ordertrail_schemas::topics::topic_for(&prefix, kind);
        for partition in 0..args.partitions {
            let (low, _) = producer
                .client()
                .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                .with_context(|| format!("watermarks of {topic} [{partition}]"))?;
            if low > 0 {
                bail!(
                    "{topic} [{partition}] starts at offset {low}: the broker dropped the start of the backlog \
                     (the mock cluster keeps 5 MB per partition); use more --partitions or fewer --orders"
                );
            }
        }
    }
    println!(
        "backlog: {} orders, {} events produced in {:.1}s (orders {}, payments {}, deliveries {})",
        args.orders,
        backlog.envelopes.len(),
        started.elapsed().as_secs_f64(),
        counts.get(&AggregateKind::Order).copied().unwrap_or(0),
        counts.get(&AggregateKind::Payment).copied().unwrap_or(0),
        counts.get(&AggregateKind::Delivery).copied().unwrap_or(0),
    );

    for kind in all_projectors() {
        let kinds: &[AggregateKind] = match kind {
            ProjectorKind::OrderHistory => &AggregateKind::ALL,
            ProjectorKind::RiderEtas(_) => &[AggregateKind::Delivery],
            ProjectorKind::Settlements => &[AggregateKind::Order, AggregateKind::Payment],
        };
        let expected: i64 = kinds
            .iter()
            .map(|k| counts.get(k).copied().unwrap_or(0))
            .sum();
        let name = kind.name();
        let (db_name, _url, pool) = fresh_database(&args.servers.database_url, 4, false).await?;
        // The projector alone, in this process (the launcher's `Stack`).
        let batch_size = args.batch_size;
        let started = Instant::now();
        let stack = Stack::on_pool(pool.clone())
            .kafka(&brokers)
            .topic_prefix(&prefix)
            .partitions(args.partitions)
            .relay(false)
            .projectors(vec![kind])
            .projector_config(move |c| c.batch_size = batch_size)
            .start()
            .await?;
        let mut first_event = None;
        loop {
            let done: Option<i64> = sqlx::query_scalar(
                "SELECT sum(next_offset)::bigint FROM projector_offsets WHERE projector = $1",
            )
            .bind(name)
            .fetch_one(&pool)
            .await?;
            let done = done.unwrap_or(0);
            if done > 0 && first_event.is_none() {
                first_event = Some(started.elapsed());
            }
            if done >= expected {
                break;
            }
            stack.check_running()?;
            if started.elapsed() > Duration::from_secs(600) {
                bail!("projector {name} did not catch up in 10 minutes ({done}/{expected})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        stack.stop().await?;
        let warm = first_event.map(|f| took.saturating_sub(f)).unwrap_or(took);
        println!(
            "{name:>14}: {expected} events in {:.2}s = {:.0} events/s from start ({:.0} events/s after the first batch; group join {:.2}s)",
            took.as_secs_f64(),
            expected as f64 / took.as_secs_f64(),
            expected as f64 / warm.as_secs_f64().max(1e-3),
            first_event.map(|f| f.as_secs_f64()).unwrap_or(0.0),
        );
        pool.close().await;
        drop_database(&args.servers.database_url, &db_name).await?;
    }
    drop(mock);
    Ok(())
}
