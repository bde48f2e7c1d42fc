//! Applying one batch, from either source: the sequence guard (duplicates
//! dropped, gaps filled from the store), the handler, and the positions,
//! in one transaction for projectors; act-then-record for the saga.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ordertrail_schemas::{AggregateKind, EventEnvelope};
use sqlx::PgConnection;

use super::checkpoint::{self, StoredPosition};
use super::{ApplyError, Context, EventRef, Handler, Origin, SourcedEvent, store};
use crate::event_log::{self, Position, StoredEvent};

/// Decoded events of one batch, in the order read.
pub(super) struct Batch(Vec<SourcedEvent>);

impl Batch {
    /// Events read from the store, as the relay would publish them.
    pub(super) fn from_store(events: Vec<StoredEvent>) -> Result<Self, ApplyError> {
        events
            .into_iter()
            .map(from_store)
            .collect::<Result<Vec<_>, _>>()
            .map(Batch)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn into_events(self) -> Vec<SourcedEvent> {
        self.0
    }
}

fn from_store(event: StoredEvent) -> Result<SourcedEvent, ApplyError> {
    let origin = Origin::Store(event.position());
    match event.into_envelope() {
        Ok(envelope) => Ok(SourcedEvent { origin, envelope }),
        Err((reason, event)) => Err(ApplyError::Rejected {
            event: Box::new(EventRef {
                origin: origin.to_string(),
                event_id: Some(event.event_id),
                event_type: Some(event.event_type),
                aggregate_type: Some(event.aggregate_type),
                aggregate_id: Some(event.aggregate_id),
                sequence: Some(event.sequence),
            }),
            reason,
        }),
    }
}

/// What the batch moves forward besides the guard.
pub(super) enum Advance {
    /// The store position, to the last event read.
    Store(Position),
}

/// Events that pass the guard, and the sequence reached per aggregate.
struct Guarded {
    accepted: Vec<SourcedEvent>,
    touched: HashMap<(String, String), i64>,
}

/// Drop events the guard has seen; fill a gap before an event with the
/// missing events of its aggregate, read from the store (they exist there:
/// what follows them was appended after them). A gap the store cannot fill
/// rejects the event.
async fn guard(
    conn: &mut PgConnection,
    name: &str,
    events: Vec<SourcedEvent>,
) -> Result<Guarded, ApplyError> {
    let mut last = checkpoint::load_sequences(&mut *conn, name, &events).await?;
    let mut accepted = Vec::with_capacity(events.len());
    let mut touched: HashMap<(String, String), i64> = HashMap::new();
    for event in events {
        let key = (
            event.envelope.aggregate_type.as_str().to_owned(),
            event.envelope.aggregate_id.clone(),
        );
        let seen = last.get(&key).copied().unwrap_or(0);
        let seq = event.envelope.sequence;
        if seq <= seen {
            tracing::trace!(consumer = name, at = %event.at(), seq, seen, "duplicate event skipped");
            continue;
        }
        if seq != seen + 1 {
            let missing =
                event_log::read_aggregate(&mut *conn, &key.0, &key.1, seen, seq - seen - 1).await?;
            if missing.len() as i64 != seq - seen - 1 {
                return Err(event.reject(format!(
                    "sequence gap: expected {} after {seen}, got {seq}, and the event store does not hold the missing events",
                    seen + 1
                )));
            }
            tracing::info!(consumer = name, at = %event.at(), from = seen + 1, to = seq - 1, "filled a sequence gap from the event store");
            metrics::counter!("consumer_gap_fills_total", "consumer" => name.to_owned())
                .increment(missing.len() as u64);
            for m in missing {
                accepted.push(from_store(m)?);
            }
        }
        last.insert(key.clone(), seq);
        touched.insert(key, seq);
        accepted.push(event);
    }
    Ok(Guarded { accepted, touched })
}

/// Apply a batch read from the store and advance the store position.
pub(super) async fn apply<H: Handler>(
    cx: &Context<'_, H>,
    batch: Batch,
    advance: Advance,
) -> Result<(), ApplyError> {
    let name = cx.handler.name();
    let Advance::Store(to) = advance;
    let events = batch.0;
    let applied = if H::ACTS {
        let mut conn = cx.pool.acquire().await?;
        let guarded = guard(&mut conn, name, events).await?;
        drop(conn);
        if !guarded.accepted.is_empty() {
            cx.handler.act(&guarded.accepted).await?;
        }
        let mut tx = cx.pool.begin().await?;
        lock_for_store(&mut tx, name).await?;
        checkpoint::store_sequences(&mut tx, name, &guarded.touched).await?;
        store::advance(&mut *tx, name, to).await?;
        tx.commit().await?;
        guarded.accepted.len()
    } else {
        let mut tx = cx.pool.begin().await?;
        lock_for_store(&mut tx, name).await?;
        let guarded = guard(&mut tx, name, events).await?;
        if !guarded.accepted.is_empty() {
            cx.handler.apply(&mut tx, &guarded.accepted).await?;
        }
        checkpoint::store_sequences(&mut tx, name, &guarded.touched).await?;
        store::advance(&mut *tx, name, to).await?;
        tx.commit().await?;
        guarded.accepted.len()
    };
    metrics::counter!("consumer_events_applied_total", "consumer" => name, "source" => "store")
        .increment(applied as u64);
    metrics::gauge!("consumer_store_position", "consumer" => name).set(to.global_position as f64);
    Ok(())
}

/// Store batches move the consumer's row: lock it for that (conflicts with
/// a swap's FOR UPDATE and with Kafka batches' FOR SHARE).
async fn lock_for_store(tx: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM consumers WHERE consumer = $1 FOR NO KEY UPDATE")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A Kafka message copied out of librdkafka's buffer.
pub(super) struct RawMessage {
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) payload: Option<Vec<u8>>,
}

/// What a Kafka batch did, for metrics.
pub(super) struct KafkaApplied {
    pub(super) events: u64,
    pub(super) positions: Vec<StoredPosition>,
}

/// Events applied from one partition and the newest recorded_at among them.
type PartitionTally = (i64, Option<DateTime<Utc>>);

/// Apply a batch of Kafka messages: messages below the stored positions are
/// dropped, the rest decoded, guarded and applied; positions advance. One
/// transaction for projectors; act-then-record for handlers that act.
pub(super) async fn apply_kafka<H: Handler>(
    cx: &Context<'_, H>,
    topic_kinds: &HashMap<String, AggregateKind>,
    high_watermarks: &HashMap<(String, i32), i64>,
    messages: Vec<RawMessage>,
) -> Result<KafkaApplied, ApplyError> {
    let name = cx.handler.name();
    let partitions: Vec<(String, i32)> = {
        let mut p: Vec<(String, i32)> = messages
            .iter()
            .map(|m| (m.topic.to_string(), m.partition))
            .collect();
        p.sort();
        p.dedup();
        p
    };
    let (mut tx, next, events, guarded) = if H::ACTS {
        // Act outside any transaction; positions are read, not locked (a
        // second instance acting on the same events is harmless).
        let next = checkpoint::read_positions(&cx.pool, name, &partitions).await?;
        let (next, events) = fresh(next, messages, topic_kinds)?;
        let mut conn = cx.pool.acquire().await?;
        let guarded = guard(&mut conn, name, events.clone()).await?;
        drop(conn);
        if !guarded.accepted.is_empty() {
            cx.handler.act(&guarded.accepted).await?;
        }
        let mut tx = cx.pool.begin().await?;
        store::share_lock(&mut tx, name).await?;
        checkpoint::lock_positions(&mut tx, name, &partitions).await?;
        (tx, next, events, guarded)
    } else {
        let mut tx = cx.pool.begin().await?;
        store::share_lock(&mut tx, name).await?;
        let next = checkpoint::lock_positions(&mut tx, name, &partitions).await?;
        let (next, events) = fresh(next, messages, topic_kinds)?;
        let guarded = guard(&mut tx, name, events.clone()).await?;
        if !guarded.accepted.is_empty() {
            cx.handler.apply(&mut tx, &guarded.accepted).await?;
        }
        (tx, next, events, guarded)
    };
    checkpoint::store_sequences(&mut tx, name, &guarded.touched).await?;

    let mut last_ids: HashMap<(String, i32), uuid::Uuid> = HashMap::new();
    for e in &events {
        if let Origin::Kafka {
            topic, partition, ..
        } = &e.origin
        {
            last_ids.insert((topic.to_string(), *partition), e.envelope.event_id);
        }
    }
    let mut per_partition: HashMap<(String, i32), PartitionTally> = HashMap::new();
    for e in &events {
        if let Origin::Kafka {
            topic, partition, ..
        } = &e.origin
        {
            let entry = per_partition
                .entry((topic.to_string(), *partition))
                .or_insert((0, None));
            entry.0 += 1;
            entry.1 = Some(
                entry
                    .1
                    .map_or(e.envelope.recorded_at, |t| t.max(e.envelope.recorded_at)),
            );
        }
    }
    let positions: Vec<StoredPosition> = next
        .into_iter()
        .map(|((topic, partition), next_offset)| {
            let (events, recorded) = per_partition
                .get(&(topic.clone(), partition))
                .copied()
                .unwrap_or((0, None));
            let high_watermark = high_watermarks
                .get(&(topic.clone(), partition))
                .copied()
                .unwrap_or(next_offset)
                .max(next_offset);
            let last_event_id = last_ids.get(&(topic.clone(), partition)).copied();
            StoredPosition {
                topic,
                partition,
                next_offset,
                high_watermark,
                events_applied: events,
                last_recorded_at: recorded,
                last_event_id,
            }
        })
        .collect();
    checkpoint::store_positions(&mut tx, name, &cx.config.instance, &positions).await?;
    tx.commit().await?;
    Ok(KafkaApplied {
        events: guarded.accepted.len() as u64,
        positions,
    })
}

/// The messages at or after the stored positions, decoded, and the
/// positions after them.
#[allow(clippy::type_complexity)]
fn fresh(
    mut next: HashMap<(String, i32), i64>,
    messages: Vec<RawMessage>,
    topic_kinds: &HashMap<String, AggregateKind>,
) -> Result<(HashMap<(String, i32), i64>, Vec<SourcedEvent>), ApplyError> {
    let mut events = Vec::with_capacity(messages.len());
    for m in messages {
        let key = (m.topic.to_string(), m.partition);
        let position = next.entry(key).or_insert(0);
        if m.offset < *position {
            continue;
        }
        *position = m.offset + 1;
        let origin = Origin::Kafka {
            topic: m.topic.clone(),
            partition: m.partition,
            offset: m.offset,
        };
        let Some(payload) = m.payload else {
            return Err(ApplyError::Rejected {
                event: Box::new(EventRef::at(&origin)),
                reason: "message has no value".into(),
            });
        };
        let envelope: EventEnvelope =
            serde_json::from_slice(&payload).map_err(|e| ApplyError::Rejected {
                event: Box::new(EventRef::at(&origin)),
                reason: format!("cannot decode envelope: {e}"),
            })?;
        let event = SourcedEvent { origin, envelope };
        if topic_kinds.get(m.topic.as_ref()) != Some(&event.envelope.aggregate_type) {
            return Err(event.reject(format!(
                "aggregate type {} does not belong on this topic",
                event.envelope.aggregate_type
            )));
        }
        events.push(event);
    }
    Ok((next, events))
}
