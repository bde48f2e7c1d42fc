//! Relay publish lag at a steady command rate, shared by the relay and the
//! growth benchmarks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use hdrhistogram::Histogram;
use ordertrail_schemas::topics::all_topics;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::PgPool;
use uuid::Uuid;

/// Steady commands while a relay publishes `prefix`'s topics: `rate` events
/// per second for `seconds`, each its own transaction (one event per command,
/// like the command service's appends), read back by a consumer from the end
/// of every partition. Returns commit → consumed p50, p99, max in ms and the
/// count.
pub async fn steady_lag(
    pool: &PgPool,
    brokers: &str,
    prefix: &str,
    partitions: i32,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(f64, f64, f64, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{prefix}-lag"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.error.backoff.ms", "5")
        .create()?;
    // Every partition from its current end, as an explicit offset: `End`
    // is resolved by the consumer in the background, and a command
    // published before it resolves was never read back (20 of 2,500 in a
    // growth run).
    let mut assignment = TopicPartitionList::new();
    for topic in all_topics(prefix) {
        for p in 0..partitions {
            let (_, end) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
            assignment.add_partition_offset(&topic, p, Offset::Offset(end))?;
        }
    }
    consumer.assign(&assignment)?;
    let commits: Arc<Mutex<HashMap<Uuid, SystemTime>>> = Arc::default();
    // Eight writers at `rate / 8` each: 500/s writes 62 × 8 = 496 a second.
    let writers = 8u64;
    let per_writer = (rate / writers).max(1);
    let expected = per_writer * writers * seconds;
    let reader = {
        let commits = commits.clone();
        std::thread::spawn(move || -> anyhow::Result<Vec<(Uuid, SystemTime)>> {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while (seen.len() as u64) < expected && Instant::now() < deadline {
                if let Some(m) = consumer.poll(Duration::from_millis(50)) {
                    let m = m?;
                    let now = SystemTime::now();
                    let v: serde_json::Value =
                        serde_json::from_slice(m.payload().unwrap_or_default())?;
                    if let Some(id) = v["event_id"].as_str().and_then(|s| s.parse().ok()) {
                        seen.push((id, now));
                    }
                }
            }
            drop(commits);
            Ok(seen)
        })
    };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let pool = pool.clone();
        let commits = commits.clone();

        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_writer as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let rider = Uuid::new_v4();
            let delivery = Uuid::now_v7().to_string();
            for seq in 1..=(per_writer * seconds) as i64 {
                tick.tick().await;
                // Time-ordered ids, as the command path gives them.
                let command_id = Uuid::now_v7();
                let mut tx = pool.begin().await?;
                let event_id: Uuid = sqlx::query_scalar(
                    "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                     VALUES ($5, 'Delivery', $1, $2, 'RiderLocationReported', '2', $3, $4) RETURNING event_id",
                )
                .bind(&delivery)
                .bind(seq)
                .bind(serde_json::json!({
                    "type": "RiderLocationReported", "rider_id": rider,
                    "location": {"lat": 52.5 + seq as f64 * 1e-5, "lon": 13.4},
                    "reported_at": chrono::Utc::now(), "accuracy_m": 5, "w": w
                }))
                .bind(serde_json::json!({
                    "command_id": command_id, "correlation_id": command_id, "causation_id": command_id,
                    "actor_subject": rider, "actor_role": "rider", "request_id": format!("req-{command_id}")
                }))
                .bind(Uuid::now_v7())
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                let at = SystemTime::now();
                if let Ok(mut c) = commits.lock() {
                    c.insert(event_id, at);
                }
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let seen = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    let commits = commits
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for (id, received) in &seen {
        if let Some(committed) = commits.get(id) {
            let us = received
                .duration_since(*committed)
                .unwrap_or_default()
                .as_micros() as u64;
            hist.record(us.max(1))?;
        }
    }
    if hist.len() < expected {
        bail!("only {} of {expected} commands were read back", hist.len());
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok((ms(0.5), ms(0.99), hist.max() as f64 / 1000.0, hist.len()))
}
