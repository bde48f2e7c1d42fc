//! The store side: the consumer's store position (`consumers`), catch-up in
//! commit order, following the store without a broker, and the fence that
//! advances the store position over events applied through Kafka.

use sqlx::{PgConnection, PgPool};

use super::batch::{self, Batch};
use super::{Context, Failure, Handler, Pass, Stop, failure};
use crate::event_log::{self, Position};

/// A consumer's store position and the broker cluster its Kafka offsets
/// point into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePosition {
    pub position: Position,
    pub kafka_cluster: Option<String>,
}

/// Create the consumer's row if it has none.
pub(super) async fn ensure_consumer(pool: &PgPool, consumer: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO consumers (consumer) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(consumer)
        .execute(pool)
        .await?;
    Ok(())
}

/// The consumer's store position (START when it has none).
pub async fn store_position<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    consumer: &str,
) -> Result<StorePosition, sqlx::Error> {
    let row: Option<(i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT store_txid::text::bigint, store_position, kafka_cluster FROM consumers WHERE consumer = $1",
    )
    .bind(consumer)
    .fetch_optional(executor)
    .await?;
    Ok(match row {
        Some((t, g, cluster)) => StorePosition {
            position: Position {
                transaction_id: t.unsigned_abs(),
                global_position: g,
            },
            kafka_cluster: cluster,
        },
        None => StorePosition {
            position: Position::START,
            kafka_cluster: None,
        },
    })
}

/// Take the consumer's row FOR SHARE for the rest of the transaction: every
/// batch does, so a rebuild's swap (FOR UPDATE) pauses the live consumer.
pub(super) async fn share_lock(tx: &mut PgConnection, consumer: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM consumers WHERE consumer = $1 FOR SHARE")
        .bind(consumer)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Move the store position forward to `to` (never backwards).
pub(super) async fn advance<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    consumer: &str,
    to: Position,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE consumers SET store_txid = $2::text::xid8, store_position = $3, updated_at = now()
         WHERE consumer = $1 AND (store_txid, store_position) < ($2::text::xid8, $3)",
    )
    .bind(consumer)
    .bind(to.transaction_id.to_string())
    .bind(to.global_position)
    .execute(executor)
    .await?;
    Ok(())
}

/// Forget the consumer's Kafka offsets and remember `cluster` as the one its
/// offsets will point into: it recovers from the store and reads the topics
/// from their start (the sequence guard drops what it has applied).
pub async fn reset_kafka_positions(
    pool: &PgPool,
    consumer: &str,
    cluster: Option<&str>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM projector_offsets WHERE projector = $1")
        .bind(consumer)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE consumers SET kafka_cluster = $2, updated_at = now() WHERE consumer = $1")
        .bind(consumer)
        .bind(cluster)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Apply everything readable in the store after the consumer's store
/// position, batch by batch, until a read comes back short (caught up).
/// `progress` is told the events read and the position reached per batch.
pub(super) async fn catch_up<H: Handler>(
    cx: &mut Context<'_, H>,
    mut progress: Option<&mut (dyn FnMut(usize, Position) + Send)>,
) -> Result<Result<(), Failure>, Stop> {
    let name = cx.handler.name();
    let mut position = match store_position(&cx.pool, name).await {
        Ok(p) => p.position,
        Err(e) => return Ok(Err(Failure::Unavailable(format!("database: {e}")))),
    };
    loop {
        if *cx.stop.borrow() {
            return Err(Stop);
        }
        let limit = if cx.narrow > 0 {
            1
        } else {
            cx.config.store_batch_size.max(1)
        };
        let events =
            match event_log::read_after_of_types(&cx.pool, position, &cx.types, limit as i64).await
            {
                Ok(events) => events,
                Err(e) => return Ok(Err(Failure::Unavailable(format!("database: {e}")))),
            };
        let Some(last) = events.last().map(|e| e.position()) else {
            return Ok(Ok(()));
        };
        let read = events.len();
        let batch = match Batch::from_store(events) {
            Ok(b) => b,
            Err(e) => return failure(e, 1).map(Err),
        };
        let size = batch.len();
        match batch::apply(cx, batch, batch::Advance::Store(last)).await {
            Ok(()) => {}
            Err(e) => return failure(e, size).map(Err),
        }
        cx.narrow = cx.narrow.saturating_sub(read);
        cx.status.progressed();
        position = last;
        if let Some(p) = progress.as_mut() {
            p(read, last);
        }
        if read < limit {
            return Ok(Ok(()));
        }
    }
}

/// Without a broker: poll the store for new events until shutdown.
pub(super) async fn follow<H: Handler>(
    cx: &mut Context<'_, H>,
) -> Result<Result<Pass, Failure>, Stop> {
    let mut poll = tokio::time::interval(cx.config.store_poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(cx.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = cx.stop.clone();
    loop {
        tokio::select! {
            biased;
            () = super::stopping(&mut stop) => return Ok(Ok(Pass::Stopped)),
            _ = tick.tick() => {
                if let Err(f) = super::tick(cx).await? {
                    return Ok(Err(f));
                }
            }
            _ = poll.tick() => {
                if let Err(f) = catch_up(cx, None).await? {
                    return Ok(Err(f));
                }
                if let Err(e) = measure_lag(&cx.pool, cx.handler.name(), &cx.types).await {
                    tracing::debug!(consumer = cx.handler.name(), error = %e, "cannot measure lag now");
                }
            }
        }
    }
}

/// Rows the fence looks at per round.
///
/// The fence and [`lag`] read the consumer's store position first and pass
/// it to their scan as a value, and filter by aggregate type outside that
/// ordered scan of the commit-order index. With the position joined in from
/// `consumers`, the planner could not estimate how many rows lie past it
/// and took a third of the table; with the type filter inside, it also
/// ANDed a bitmap of the primary key's `aggregate_type` (every row of the
/// store). Either way each call cost time in proportion to the store's size
/// (32–93 ms at 50,000–100,000 events, once a second per consumer and per
/// status request) instead of to what lies past the position.
const FENCE_CHUNK: i64 = 50_000;

/// Advance the store position over every event (in commit order) that the
/// sequence guard shows applied, stopping before the first one that is not.
/// Correct with any number of instances: it relies only on the guard, which
/// is written in the same transaction as the effect.
pub(super) async fn fence(
    pool: &PgPool,
    consumer: &str,
    types: &[&str],
) -> Result<(), sqlx::Error> {
    for _ in 0..8 {
        let from = store_position(pool, consumer).await?.position;
        let rows: Vec<(i64, i64, bool)> = sqlx::query_as(
            "WITH r AS (SELECT e.transaction_id, e.global_position, e.aggregate_type, e.aggregate_id, e.sequence
                        FROM events e
                        WHERE (e.transaction_id, e.global_position) > ($4::text::xid8, $5)
                          AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                        ORDER BY e.transaction_id, e.global_position
                        LIMIT $3)
             SELECT r.transaction_id::text::bigint, r.global_position,
                    r.aggregate_type <> ALL($2)
                    OR coalesce((SELECT s.last_sequence FROM projector_sequences s
                                 WHERE s.projector = $1 AND s.aggregate_type = r.aggregate_type
                                   AND s.aggregate_id = r.aggregate_id) >= r.sequence, false)
             FROM r ORDER BY r.transaction_id, r.global_position",
        )
        .bind(consumer)
        .bind(types)
        .bind(FENCE_CHUNK)
        .bind(from.transaction_id.to_string())
        .bind(from.global_position)
        .fetch_all(pool)
        .await?;
        let mut reached = None;
        for (t, g, applied) in &rows {
            if !applied {
                break;
            }
            reached = Some(Position {
                transaction_id: t.unsigned_abs(),
                global_position: *g,
            });
        }
        let Some(to) = reached else {
            return Ok(());
        };
        advance(pool, consumer, to).await?;
        let whole_chunk_applied =
            rows.len() as i64 == FENCE_CHUNK && rows.last().is_some_and(|r| r.2);
        if !whole_chunk_applied {
            return Ok(());
        }
    }
    Ok(())
}

/// Events and seconds the consumer is behind the store's head, counted from
/// its store position (at most a million are counted), as metrics.
pub(super) async fn measure_lag(
    pool: &PgPool,
    consumer: &'static str,
    types: &[&str],
) -> Result<(), sqlx::Error> {
    let (events, seconds) = lag(pool, consumer, types).await?;
    metrics::gauge!("consumer_lag_events", "consumer" => consumer).set(events as f64);
    metrics::gauge!("consumer_lag_seconds", "consumer" => consumer).set(seconds);
    Ok(())
}

/// Events after the consumer's store position whose sequence the guard does
/// not cover yet (counted among the next million events), and the age of
/// the oldest.
/// Every committed event counts, also those above the server's oldest open
/// transaction that commit-order reading cannot hand out yet: a consumer
/// held back by a long transaction anywhere on the server is behind, and
/// says so.
pub async fn lag(pool: &PgPool, consumer: &str, types: &[&str]) -> Result<(i64, f64), sqlx::Error> {
    let from = store_position(pool, consumer).await?.position;
    let (events, seconds): (i64, Option<f64>) = sqlx::query_as(
        "WITH r AS (SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.recorded_at
                    FROM events e
                    WHERE (e.transaction_id, e.global_position) > ($3::text::xid8, $4)
                    ORDER BY e.transaction_id, e.global_position
                    LIMIT 1000000)
         SELECT count(*), extract(epoch FROM now() - min(r.recorded_at))::float8
         FROM r
         WHERE r.aggregate_type = ANY($2)
           AND coalesce((SELECT s.last_sequence FROM projector_sequences s
                         WHERE s.projector = $1 AND s.aggregate_type = r.aggregate_type
                           AND s.aggregate_id = r.aggregate_id) < r.sequence, true)",
    )
    .bind(consumer)
    .bind(types)
    .bind(from.transaction_id.to_string())
    .bind(from.global_position)
    .fetch_one(pool)
    .await?;
    Ok((events, seconds.unwrap_or(0.0).max(0.0)))
}
