//! The projector runtime: a Kafka consumer group feeding one [`Projector`].
//!
//! - `enable.auto.commit=false`, `auto.offset.reset=earliest`: positions live
//!   in PostgreSQL (`projector_offsets`), never in Kafka.
//! - Messages are applied in batches; a batch's read-model changes, its
//!   per-partition positions and its per-aggregate sequence guard are written
//!   in ONE transaction, so a crash at any point neither loses nor doubles an
//!   effect.
//! - On partition assignment the consumer seeks to the stored positions. In the
//!   transaction, the stored positions are locked and every message below them
//!   is skipped, so prefetched or redelivered messages, and two instances
//!   briefly owning one partition during a rebalance, never double an effect.
//! - Events the relay published twice (at-least-once) are recognised by their
//!   per-aggregate sequence and have no effect; a sequence gap stops the
//!   projector.
//! - An event that cannot be applied stops the projector with an error naming
//!   topic, partition, offset and event id. Nothing is ever skipped.

mod checkpoint;
mod consumer;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ordertrail_schemas::{AggregateKind, EventEnvelope};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use uuid::Uuid;

use consumer::{Assignment, ProjectorContext};

pub use checkpoint::StoredPosition;

/// A read model fed by the runtime.
pub trait Projector: Send + Sync + 'static {
    /// Stable name: the key of its positions and its metrics label.
    fn name(&self) -> &'static str;

    /// The aggregate types (topics) it consumes.
    fn sources(&self) -> &'static [AggregateKind];

    /// Apply a batch of new events (duplicates already removed, in partition
    /// order) inside the runtime's transaction.
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        batch: &'a [SourcedEvent],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send + 'a;
}

/// An event together with where it was read from.
#[derive(Debug, Clone)]
pub struct SourcedEvent {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub envelope: EventEnvelope,
}

impl SourcedEvent {
    /// Where this event is, for error messages.
    pub fn at(&self) -> EventRef {
        EventRef {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            event_id: Some(self.envelope.event_id),
            event_type: Some(self.envelope.event_type.clone()),
            aggregate_id: Some(self.envelope.aggregate_id.clone()),
        }
    }

    /// Decode the payload, or name the event that could not be decoded.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, ProjectionError> {
        self.envelope
            .decode()
            .map_err(|e| self.reject(format!("cannot decode payload: {e}")))
    }

    /// An invariant of the read model does not hold for this event.
    pub fn reject(&self, reason: impl Into<String>) -> ProjectionError {
        ProjectionError::Rejected {
            event: Box::new(self.at()),
            reason: reason.into(),
        }
    }
}

/// Where an event sits on Kafka, and which event it is when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<String>,
}

impl fmt::Display for EventRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "topic {} partition {} offset {}",
            self.topic, self.partition, self.offset
        )?;
        if let Some(id) = self.event_id {
            write!(f, " event_id {id}")?;
        }
        if let Some(t) = &self.event_type {
            write!(f, " ({t}")?;
            if let Some(a) = &self.aggregate_id {
                write!(f, " of {a}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why a projector could not apply a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event cannot be applied: unknown type, undecodable, or a read-model
    /// invariant does not hold. The projector stops.
    #[error("cannot apply event at {event}: {reason}")]
    Rejected {
        event: Box<EventRef>,
        reason: String,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Why the runtime stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("database: {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("projector {projector} stopped: {source}")]
    Projection {
        projector: &'static str,
        #[source]
        source: ProjectionError,
    },
}

impl RuntimeError {
    fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> RuntimeError {
        move |source| RuntimeError::Database { context, source }
    }
}

/// How a runtime connects and batches.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic prefix (`<prefix>.orders`, ...).
    pub topic_prefix: String,
    /// Consumer group id; instances with the same id split the partitions.
    pub group_id: String,
    /// Most events applied in one transaction.
    pub batch_size: usize,
    /// How long to keep filling a batch after its first message.
    pub batch_wait: Duration,
    /// librdkafka `fetch.wait.max.ms` (see
    /// [`ordertrail_platform::kafka::DEFAULT_FETCH_WAIT`]).
    pub fetch_wait: Duration,
    /// This instance's name, stored with every partition position it writes
    /// (`projector_offsets.instance`): host, process id and a random suffix.
    pub instance: String,
}

/// `host:pid:suffix`, unique even for several instances in one process.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}

impl RuntimeConfig {
    pub fn new(
        brokers: impl Into<String>,
        topic_prefix: impl Into<String>,
        group_id: impl Into<String>,
    ) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: topic_prefix.into(),
            group_id: group_id.into(),
            batch_size: 2_000,
            batch_wait: Duration::from_millis(10),
            fetch_wait: ordertrail_platform::kafka::DEFAULT_FETCH_WAIT,
            instance: instance_name(),
        }
    }
}

/// Events applied from one partition and the newest recorded_at among them.
type PartitionTally = (i64, Option<chrono::DateTime<Utc>>);

/// A message copied out of librdkafka's buffer.
struct RawMessage {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    payload: Option<Vec<u8>>,
}

/// The runtime's own pool to the same database, planning every statement
/// for the tables as they are now. Read models start empty and grow fast (a
/// new deployment, a rebuild, a backlog), and a generic plan cached while a
/// table was tiny keeps sequentially scanning it until the next ANALYZE: the
/// per-batch lookups of the order history became full scans of a table
/// growing by thousands of rows. Custom plans are estimated from the table's
/// current size; planning these statements costs far less than one such scan.
fn custom_plans(pool: &PgPool) -> PgPool {
    ordertrail_platform::db::pool_options(pool.options().get_max_connections()).connect_lazy_with(
        (*pool.connect_options())
            .clone()
            .options([("plan_cache_mode", "force_custom_plan")]),
    )
}

/// Run `projector` until `shutdown` completes (Ok) or an event cannot be
/// applied (Err naming the event).
pub async fn run<P: Projector>(
    projector: P,
    config: RuntimeConfig,
    pool: PgPool,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RuntimeError> {
    let pool = custom_plans(&pool);
    let name = projector.name();
    let topics: Vec<String> = projector
        .sources()
        .iter()
        .map(|k| ordertrail_schemas::topics::topic_for(&config.topic_prefix, *k))
        .collect();
    let topic_kinds: HashMap<String, AggregateKind> = projector
        .sources()
        .iter()
        .map(|k| {
            (
                ordertrail_schemas::topics::topic_for(&config.topic_prefix, *k),
                *k,
            )
        })
        .collect();
    let (assign_tx, mut assign_rx) = mpsc::unbounded_channel();
    let context = ProjectorContext::new(name, assign_tx);
    let watermarks = context.watermarks();
    let consumer: StreamConsumer<ProjectorContext> =
        consumer::create(&config, context).map_err(|source| RuntimeError::Kafka {
            context: "create consumer",
            source,
        })?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|source| RuntimeError::Kafka {
            context: "subscribe",
            source,
        })?;
    tracing::info!(projector = name, ?topics, group = %config.group_id, "projector started");

    let mut seeks = consumer::PendingSeeks::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rate = ApplyRate::default();
    tokio::pin!(shutdown);

    loop {
        let first = tokio::select! {
            biased;
            () = &mut shutdown => break,
            assignment = assign_rx.recv() => {
                if let Some(assignment) = assignment {
                    handle_assignment(&pool, name, &consumer, &mut seeks, assignment).await?;
                }
                continue;
            }
            _ = tick.tick() => {
                seeks.retry(&pool, name, &consumer).await?;
                checkpoint::record_watermarks(&pool, name, &watermarks.snapshot())
                    .await
                    .map_err(RuntimeError::db("record high watermarks"))?;
                continue;
            }
            message = consumer.recv() => message,
        };
        let mut batch = Vec::with_capacity(config.batch_size);
        match first {
            Ok(m) => batch.push(copy(&m)),
            Err(e) => {
                tracing::warn!(projector = name, error = %e, "kafka consumer error");
                continue;
            }
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + config.batch_wait;
        while batch.len() < config.batch_size {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(copy(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(projector = name, error = %e, "kafka consumer error");
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        for m in &batch {
            seeks.received(&m.topic, m.partition, m.offset);
        }
        let applied = apply_batch(
            &projector,
            &pool,
            &topic_kinds,
            &watermarks,
            &config.instance,
            batch,
        )
        .await?;
        rate.record(applied.events, started.elapsed());
        applied.publish_metrics(name, &watermarks, rate.per_second());
    }
    tracing::info!(projector = name, "projector stopped");
    Ok(())
}

async fn handle_assignment(
    pool: &PgPool,
    name: &'static str,
    consumer: &StreamConsumer<ProjectorContext>,
    seeks: &mut consumer::PendingSeeks,
    assignment: Assignment,
) -> Result<(), RuntimeError> {
    match assignment {
        Assignment::Assigned(partitions) => {
            tracing::info!(projector = name, ?partitions, "partitions assigned");
            seeks.assigned(partitions);
            seeks.retry(pool, name, consumer).await
        }
        Assignment::Revoked(partitions) => {
            tracing::info!(projector = name, ?partitions, "partitions revoked");
            seeks.revoked(&partitions);
            Ok(())
        }
    }
}

fn copy(m: &rdkafka::message::BorrowedMessage<'_>) -> RawMessage {
    RawMessage {
        topic: Arc::from(m.topic()),
        partition: m.partition(),
        offset: m.offset(),
        payload: m.payload().map(<[u8]>::to_vec),
    }
}

/// What one batch did, for metrics.
struct Applied {
    events: u64,
    positions: Vec<StoredPosition>,
    last_recorded_at: Option<chrono::DateTime<Utc>>,
}

impl Applied {
    fn publish_metrics(&self, name: &'static str, watermarks: &consumer::Watermarks, rate: f64) {
        metrics::counter!("projector_events_applied_total", "projector" => name)
            .increment(self.events);
        metrics::gauge!("projector_apply_rate", "projector" => name).set(rate);
        let hw = watermarks.snapshot();
        let mut behind_total = 0i64;
        for p in &self.positions {
            let labels = [
                ("projector", name.to_owned()),
                ("topic", p.topic.clone()),
                ("partition", p.partition.to_string()),
            ];
            metrics::gauge!("projector_position", &labels).set(p.next_offset as f64);
            let high = hw
                .get(&(p.topic.clone(), p.partition))
                .copied()
                .unwrap_or(p.next_offset);
            let behind = (high - p.next_offset).max(0);
            behind_total += behind;
            metrics::gauge!("projector_lag_events", &labels).set(behind as f64);
        }
        metrics::gauge!("projector_batch_lag_events", "projector" => name).set(behind_total as f64);
        if let Some(at) = self.last_recorded_at {
            let seconds = (Utc::now() - at).num_milliseconds().max(0) as f64 / 1_000.0;
            metrics::gauge!("projector_lag_seconds", "projector" => name).set(seconds);
        }
    }
}

/// Exponentially smoothed events per second.
#[derive(Default)]
struct ApplyRate {
    value: f64,
}

impl ApplyRate {
    fn record(&mut self, events: u64, took: Duration) {
        let secs = took.as_secs_f64().max(1e-6);
        let sample = events as f64 / secs;
        self.value = if self.value == 0.0 {
            sample
        } else {
            0.8 * self.value + 0.2 * sample
        };
    }

    fn per_second(&self) -> f64 {
        self.value
    }
}

/// Apply one batch in one transaction: lock positions, drop messages below
/// them, drop duplicates by aggregate sequence, apply, advance.
async fn apply_batch<P: Projector>(
    projector: &P,
    pool: &PgPool,
    topic_kinds: &HashMap<String, AggregateKind>,
    watermarks: &consumer::Watermarks,
    instance: &str,
    batch: Vec<RawMessage>,
) -> Result<Applied, RuntimeError> {
    let name = projector.name();
    let mut tx = pool.begin().await.map_err(RuntimeError::db("begin"))?;
    let partitions: Vec<(String, i32)> = {
        let mut p: Vec<(String, i32)> = batch
            .iter()
            .map(|m| (m.topic.to_string(), m.partition))
            .collect();
        p.sort();
        p.dedup();
        p
    };
    let mut next = checkpoint::lock_positions(&mut tx, name, &partitions)
        .await
        .map_err(RuntimeError::db("lock positions"))?;
    let stop = |source: ProjectionError| RuntimeError::Projection {
        projector: name,
        source,
    };

    // Messages not applied yet, in partition order, decoded.
    let mut fresh = Vec::with_capacity(batch.len());
    for m in batch {
        let key = (m.topic.to_string(), m.partition);
        let Some(position) = next.get_mut(&key) else {
            continue;
        };
        if m.offset < *position {
            continue;
        }
        *position = m.offset + 1;
        let at = EventRef {
            topic: m.topic.to_string(),
            partition: m.partition,
            offset: m.offset,
            event_id: None,
            event_type: None,
            aggregate_id: None,
        };
        let Some(payload) = m.payload else {
            return Err(stop(ProjectionError::Rejected {
                event: Box::new(at),
                reason: "message has no value".into(),
            }));
        };
        let envelope: EventEnvelope = serde_json::from_slice(&payload).map_err(|e| {
            stop(ProjectionError::Rejected {
                event: Box::new(at.clone()),
                reason: format!("cannot decode envelope: {e}"),
            })
        })?;
        let event = SourcedEvent {
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
            envelope,
        };
        if topic_kinds.get(event.topic.as_ref()) != Some(&event.envelope.aggregate_type) {
            return Err(stop(event.reject(format!(
                "aggregate type {} does not belong on this topic",
                event.envelope.aggregate_type
            ))));
        }
        fresh.push(event);
    }

    // Per-aggregate sequence guard against events published twice.
    let mut last = checkpoint::load_sequences(&mut tx, name, &fresh)
        .await
        .map_err(RuntimeError::db("load sequences"))?;
    let mut accepted = Vec::with_capacity(fresh.len());
    let mut touched: HashMap<(String, String), i64> = HashMap::new();
    for event in fresh {
        let key = (
            event.envelope.aggregate_type.as_str().to_owned(),
            event.envelope.aggregate_id.clone(),
        );
        let seen = last.get(&key).copied().unwrap_or(0);
        let seq = event.envelope.sequence;
        if seq <= seen {
            tracing::debug!(projector = name, at = %event.at(), seq, seen, "duplicate event skipped");
            continue;
        }
        if seq != seen + 1 {
            return Err(stop(event.reject(format!(
                "sequence gap: expected {} after {seen}, got {seq}",
                seen + 1
            ))));
        }
        last.insert(key.clone(), seq);
        touched.insert(key, seq);
        accepted.push(event);
    }

    if !accepted.is_empty() {
        projector.apply(&mut tx, &accepted).await.map_err(stop)?;
    }
    checkpoint::store_sequences(&mut tx, name, &touched)
        .await
        .map_err(RuntimeError::db("store sequences"))?;

    let mut applied_per_partition: HashMap<(String, i32), PartitionTally> = HashMap::new();
    let mut last_recorded_at = None;
    for e in &accepted {
        let entry = applied_per_partition
            .entry((e.topic.to_string(), e.partition))
            .or_insert((0, None));
        entry.0 += 1;
        entry.1 = Some(
            entry
                .1
                .map_or(e.envelope.recorded_at, |t: chrono::DateTime<Utc>| {
                    t.max(e.envelope.recorded_at)
                }),
        );
        last_recorded_at = Some(
            last_recorded_at.map_or(e.envelope.recorded_at, |t: chrono::DateTime<Utc>| {
                t.max(e.envelope.recorded_at)
            }),
        );
    }
    let hw = watermarks.snapshot();
    let positions: Vec<StoredPosition> = next
        .into_iter()
        .map(|((topic, partition), next_offset)| {
            let (events, recorded) = applied_per_partition
                .get(&(topic.clone(), partition))
                .copied()
                .unwrap_or((0, None));
            let high_watermark = hw
                .get(&(topic.clone(), partition))
                .copied()
                .unwrap_or(next_offset)
                .max(next_offset);
            StoredPosition {
                topic,
                partition,
                next_offset,
                high_watermark,
                events_applied: events,
                last_recorded_at: recorded,
            }
        })
        .collect();
    checkpoint::store_positions(&mut tx, name, instance, &positions)
        .await
        .map_err(RuntimeError::db("store positions"))?;
    tx.commit().await.map_err(RuntimeError::db("commit"))?;
    Ok(Applied {
        events: accepted.len() as u64,
        positions,
        last_recorded_at,
    })
}
