//! Kafka positions (`projector_offsets`) and the sequence guard
//! (`projector_sequences`), both keyed by consumer name (a projector or the
//! saga), read and written inside the batch transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::SourcedEvent;

/// A partition's position after a batch.
#[derive(Debug, Clone)]
pub struct StoredPosition {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    pub high_watermark: i64,
    /// Events applied from this partition by the batch.
    pub events_applied: i64,
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// Event id of the message at `next_offset - 1` (the last one read), by
    /// which the partition's incarnation is checked on assignment.
    pub last_event_id: Option<uuid::Uuid>,
}

/// Lock the positions of `partitions` (sorted, so instances never deadlock)
/// for the rest of the transaction and return them.
pub(super) async fn lock_positions(
    tx: &mut PgConnection,
    projector: &str,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, sqlx::Error> {
    let (topics, numbers) = partition_columns(partitions);
    // One statement: create unknown partitions at offset 0 and lock every
    // row (ON CONFLICT DO UPDATE locks the existing row like FOR UPDATE), in
    // sorted order so two instances never deadlock.
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "INSERT INTO projector_offsets AS o (projector, topic, partition)
         SELECT $1, t, p FROM unnest($2::text[], $3::int[]) AS x(t, p)
         ORDER BY t, p
         ON CONFLICT (projector, topic, partition) DO UPDATE SET next_offset = o.next_offset
         RETURNING o.topic, o.partition, o.next_offset",
    )
    .bind(projector)
    .bind(&topics)
    .bind(&numbers)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(|(t, p, n)| ((t, p), n)).collect())
}

/// Stored positions of the given partitions, outside any batch (for seeking).
pub(super) async fn read_positions(
    pool: &PgPool,
    projector: &str,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, sqlx::Error> {
    let (topics, numbers) = partition_columns(partitions);
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT o.topic, o.partition, o.next_offset
         FROM projector_offsets o
         JOIN unnest($2::text[], $3::int[]) AS x(t, p) ON o.topic = x.t AND o.partition = x.p
         WHERE o.projector = $1",
    )
    .bind(projector)
    .bind(&topics)
    .bind(&numbers)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(t, p, n)| ((t, p), n)).collect())
}

/// Stored positions of every partition of `consumer` with the event id of
/// the last message read from each (for the incarnation check).
pub(super) async fn positions_with_ids(
    pool: &PgPool,
    consumer: &str,
) -> Result<HashMap<(String, i32), (i64, Option<uuid::Uuid>)>, sqlx::Error> {
    let rows: Vec<(String, i32, i64, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT topic, partition, next_offset, last_event_id FROM projector_offsets
         WHERE projector = $1 AND next_offset > 0",
    )
    .bind(consumer)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, p, n, e)| ((t, p), (n, e)))
        .collect())
}

/// Write the positions reached by a batch.
pub(super) async fn store_positions(
    tx: &mut PgConnection,
    projector: &str,
    instance: &str,
    positions: &[StoredPosition],
) -> Result<(), sqlx::Error> {
    let topics: Vec<&str> = positions.iter().map(|p| p.topic.as_str()).collect();
    let numbers: Vec<i32> = positions.iter().map(|p| p.partition).collect();
    let next: Vec<i64> = positions.iter().map(|p| p.next_offset).collect();
    let high: Vec<i64> = positions.iter().map(|p| p.high_watermark).collect();
    let applied: Vec<i64> = positions.iter().map(|p| p.events_applied).collect();
    let recorded: Vec<Option<DateTime<Utc>>> =
        positions.iter().map(|p| p.last_recorded_at).collect();
    let last_ids: Vec<Option<uuid::Uuid>> = positions.iter().map(|p| p.last_event_id).collect();
    sqlx::query(
        "UPDATE projector_offsets o
         SET next_offset = greatest(o.next_offset, x.n),
             high_watermark = greatest(o.high_watermark, x.h),
             events_applied = o.events_applied + x.a,
             last_recorded_at = coalesce(x.r, o.last_recorded_at),
             instance = $8,
             last_event_id = CASE WHEN x.n >= o.next_offset THEN coalesce(x.e, o.last_event_id)
                                  ELSE o.last_event_id END,
             updated_at = now()
         FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[], $9::uuid[])
              AS x(t, p, n, h, a, r, e)
         WHERE o.projector = $1 AND o.topic = x.t AND o.partition = x.p",
    )
    .bind(projector)
    .bind(&topics)
    .bind(&numbers)
    .bind(&next)
    .bind(&high)
    .bind(&applied)
    .bind(&recorded)
    .bind(instance)
    .bind(&last_ids)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Partitions as two parallel arrays (topic, partition), for `unnest`.
fn partition_columns<'a>(
    partitions: impl IntoIterator<Item = &'a (String, i32)>,
) -> (Vec<&'a str>, Vec<i32>) {
    partitions
        .into_iter()
        .map(|(topic, partition)| (topic.as_str(), *partition))
        .unzip()
}

/// High watermarks by partition as three parallel arrays (topic, partition,
/// watermark), for `unnest`.
fn watermark_columns(watermarks: &HashMap<(String, i32), i64>) -> (Vec<&str>, Vec<i32>, Vec<i64>) {
    let (topics, numbers) = partition_columns(watermarks.keys());
    (topics, numbers, watermarks.values().copied().collect())
}

/// Record high watermarks seen by the consumer while idle, so the status view
/// shows lag even when no batch is running.
pub(super) async fn record_watermarks(
    pool: &PgPool,
    projector: &str,
    watermarks: &HashMap<(String, i32), i64>,
) -> Result<(), sqlx::Error> {
    if watermarks.is_empty() {
        return Ok(());
    }
    let (topics, numbers, high) = watermark_columns(watermarks);
    sqlx::query(
        "UPDATE projector_offsets o SET high_watermark = x.h
         FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, h)
         WHERE o.projector = $1 AND o.topic = x.t AND o.partition = x.p AND o.high_watermark < x.h",
    )
    .bind(projector)
    .bind(&topics)
    .bind(&numbers)
    .bind(&high)
    .execute(pool)
    .await?;
    Ok(())
}

/// Last applied sequence of every aggregate in the batch.
pub(super) async fn load_sequences(
    tx: &mut PgConnection,
    projector: &str,
    events: &[SourcedEvent],
) -> Result<HashMap<(String, String), i64>, sqlx::Error> {
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let mut keys: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.envelope.aggregate_type.as_str(),
                e.envelope.aggregate_id.as_str(),
            )
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let types: Vec<&str> = keys.iter().map(|(t, _)| *t).collect();
    let ids: Vec<&str> = keys.iter().map(|(_, i)| *i).collect();
    // One primary-key probe per aggregate of the batch. A join against the
    // unnested keys lets the planner hash-join the projector's whole
    // sequence table (every aggregate ever seen) on every batch; a scalar
    // subquery cannot be flattened into such a join.
    //
    // An aggregate without a guard row is either new or had its row pruned
    // by retention ([`prune_guards`]), which only removes a row whose last
    // event lies at or below the consumer's store position. Everything up
    // to that position is applied, so the aggregate's highest sequence up
    // to it is what the pruned row said: a duplicate of an old event is
    // still recognised and never re-applied. COALESCE evaluates the store
    // probe only for aggregates without a row (a primary-key range scan of
    // the aggregate's few events).
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT x.t, x.i,
                coalesce(
                  (SELECT s.last_sequence FROM projector_sequences s
                   WHERE s.projector = $1 AND s.aggregate_type = x.t AND s.aggregate_id = x.i),
                  (SELECT max(e.sequence) FROM events e, consumers c
                   WHERE c.consumer = $1 AND e.aggregate_type = x.t AND e.aggregate_id = x.i
                     AND (e.transaction_id, e.global_position) <= (c.store_txid, c.store_position)))
         FROM unnest($2::text[], $3::text[]) AS x(t, i)",
    )
    .bind(projector)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(t, i, s)| s.map(|s| ((t, i), s)))
        .collect())
}

/// Store the last applied sequence of every aggregate the batch touched.
pub(super) async fn store_sequences(
    tx: &mut PgConnection,
    projector: &str,
    touched: &HashMap<(String, String), i64>,
) -> Result<(), sqlx::Error> {
    if touched.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(&str, &str, i64)> = touched
        .iter()
        .map(|((t, i), s)| (t.as_str(), i.as_str(), *s))
        .collect();
    rows.sort_unstable();
    let types: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.2).collect();
    sqlx::query(
        "INSERT INTO projector_sequences (projector, aggregate_type, aggregate_id, last_sequence)
         SELECT $1, t, i, s FROM unnest($2::text[], $3::text[], $4::bigint[]) AS x(t, i, s)
         ON CONFLICT (projector, aggregate_type, aggregate_id)
         DO UPDATE SET last_sequence = greatest(projector_sequences.last_sequence, EXCLUDED.last_sequence)",
    )
    .bind(projector)
    .bind(&types)
    .bind(&ids)
    .bind(&seqs)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Partitions whose stored position lies beyond the high watermark the
/// broker reports now: the topic was recreated or the broker lost data.
pub(super) async fn beyond_end(
    pool: &PgPool,
    consumer: &str,
    watermarks: &HashMap<(String, i32), i64>,
) -> Result<Vec<(String, i32)>, sqlx::Error> {
    if watermarks.is_empty() {
        return Ok(Vec::new());
    }
    let (topics, numbers, high) = watermark_columns(watermarks);
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT o.topic, o.partition FROM projector_offsets o
         JOIN unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, h)
           ON o.topic = x.t AND o.partition = x.p
         WHERE o.projector = $1 AND o.next_offset > x.h",
    )
    .bind(consumer)
    .bind(&topics)
    .bind(&numbers)
    .bind(&high)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Guard rows of one consumer examined per statement by [`prune_guards`].
pub const GUARD_PRUNE_CHUNK: i64 = 10_000;

/// Retention for the per-aggregate sequence guard of `consumer`: delete the
/// rows whose last applied event lies at or below the consumer's store
/// position (commit order) and was recorded more than `older_than` ago.
///
/// Safe because the guard then says nothing the store position does not:
/// every event up to that position is applied, and [`load_sequences`]
/// falls back to the aggregate's highest sequence up to it when a row is
/// missing, so a late duplicate (Kafka, a relay retry, a recovery) is still
/// dropped and a later event of the aggregate (a refund weeks after
/// delivery) is applied exactly once. The fence and the lag only look at
/// events after the store position, which a pruned row never covered.
/// Walks the consumer's rows in key order, [`GUARD_PRUNE_CHUNK`] per
/// statement, so no statement holds locks for long. Returns the rows removed.
pub async fn prune_guards(
    pool: &PgPool,
    consumer: &str,
    older_than: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    let mut after = (String::new(), String::new());
    let mut pruned = 0u64;
    loop {
        let (gone, last_type, last_id): (i64, Option<String>, Option<String>) = sqlx::query_as(
            "WITH c AS (SELECT store_txid, store_position FROM consumers WHERE consumer = $1),
                  chunk AS (SELECT s.aggregate_type, s.aggregate_id FROM projector_sequences s
                            WHERE s.projector = $1 AND (s.aggregate_type, s.aggregate_id) > ($2, $3)
                            ORDER BY s.aggregate_type, s.aggregate_id
                            LIMIT $4),
                  gone AS (DELETE FROM projector_sequences s
                           USING chunk k, events e, c
                           WHERE s.projector = $1
                             AND s.aggregate_type = k.aggregate_type AND s.aggregate_id = k.aggregate_id
                             AND e.aggregate_type = s.aggregate_type AND e.aggregate_id = s.aggregate_id
                             AND e.sequence = s.last_sequence
                             AND (e.transaction_id, e.global_position) <= (c.store_txid, c.store_position)
                             AND e.recorded_at < now() - make_interval(secs => $5)
                           RETURNING 1),
                  last AS (SELECT aggregate_type, aggregate_id FROM chunk
                           ORDER BY aggregate_type DESC, aggregate_id DESC LIMIT 1)
             SELECT (SELECT count(*) FROM gone),
                    (SELECT aggregate_type FROM last), (SELECT aggregate_id FROM last)",
        )
        .bind(consumer)
        .bind(&after.0)
        .bind(&after.1)
        .bind(GUARD_PRUNE_CHUNK)
        .bind(older_than.as_secs_f64())
        .fetch_one(pool)
        .await?;
        pruned += gone.max(0) as u64;
        match (last_type, last_id) {
            (Some(t), Some(i)) => after = (t, i),
            _ => return Ok(pruned),
        }
    }
}
