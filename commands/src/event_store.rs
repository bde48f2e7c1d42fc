//! The event store repository behind every command: postgres-es for loading
//! and streaming aggregates, and an append that costs one round trip.
//!
//! postgres-es appends a command's events as `BEGIN`, one `INSERT` per
//! event and `COMMIT`: at least three round trips, each a wake-up of the
//! API and of a PostgreSQL backend. [`EventRepository::persist`] writes all
//! of a command's events with one multi-row `INSERT` in autocommit mode,
//! which is one transaction just the same: the `command_log` trigger, the
//! primary key that turns a lost race into an optimistic-lock conflict and
//! the `NOTIFY` for the relay all behave exactly as with postgres-es. Only
//! appends without a snapshot take this path (Ordertrail keeps no
//! snapshots); anything else is left to postgres-es.

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// postgres-es with a one-statement append.
pub struct EventRepository {
    postgres_es: PostgresEventRepository,
    pool: PgPool,
}

impl std::fmt::Debug for EventRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRepository")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl EventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self {
            postgres_es: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }

    async fn append(&self, events: &[SerializedEvent]) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut sequences = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        let mut event_ids = Vec::with_capacity(events.len());
        for e in events {
            if e.aggregate_type != first.aggregate_type || e.aggregate_id != first.aggregate_id {
                return Err(PersistenceError::UnknownError(
                    "one commit appends to one aggregate".into(),
                ));
            }
            sequences.push(i64::try_from(e.sequence).map_err(|e| {
                PersistenceError::UnknownError(format!("sequence out of range: {e}").into())
            })?);
            types.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(json_text(&e.payload)?);
            metadata.push(json_text(&e.metadata)?);
            // Time-ordered (UUIDv7): the unique index `events_event_id` then
            // grows at its right edge like the global position, instead of
            // taking each insert on a random leaf of an index as large as the
            // store (a page written, and after a checkpoint logged in full,
            // per event).
            event_ids.push(Uuid::now_v7());
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id)
             SELECT $1, $2, x.s, x.t, x.v, x.p::json, x.m::json, x.i
             FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[])
                  WITH ORDINALITY AS x(s, t, v, p, m, i, n)
             ORDER BY x.n",
        )
        .bind(&first.aggregate_type)
        .bind(&first.aggregate_id)
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(&event_ids)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(persistence_error)
    }

    /// The events of two aggregates in one round trip (a command on one that
    /// depends on the other's state: confirming an order needs its payment,
    /// authorizing a payment needs its order), each in sequence order.
    pub async fn get_events_of_two(
        &self,
        first: (&str, &str),
        second: (&str, &str),
    ) -> Result<(Vec<SerializedEvent>, Vec<SerializedEvent>), PersistenceError> {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
             FROM events
             WHERE (aggregate_type = $1 AND aggregate_id = $2)
                OR (aggregate_type = $3 AND aggregate_id = $4)
             ORDER BY aggregate_type, aggregate_id, sequence",
        )
        .bind(first.0)
        .bind(first.1)
        .bind(second.0)
        .bind(second.1)
        .fetch_all(&self.pool)
        .await
        .map_err(persistence_error)?;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for row in rows {
            let sequence: i64 = row.try_get("sequence").map_err(persistence_error)?;
            let event = SerializedEvent::new(
                row.try_get("aggregate_id").map_err(persistence_error)?,
                usize::try_from(sequence)
                    .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?,
                row.try_get("aggregate_type").map_err(persistence_error)?,
                row.try_get("event_type").map_err(persistence_error)?,
                row.try_get("event_version").map_err(persistence_error)?,
                row.try_get("payload").map_err(persistence_error)?,
                row.try_get("metadata").map_err(persistence_error)?,
            );
            if event.aggregate_type == first.0 && event.aggregate_id == first.1 {
                a.push(event);
            } else {
                b.push(event);
            }
        }
        Ok((a, b))
    }
}

/// The JSON text stored for a payload or metadata (the column type is
/// `json`, so PostgreSQL only validates it).
fn json_text(value: &Value) -> Result<String, PersistenceError> {
    serde_json::to_string(value).map_err(|e| PersistenceError::UnknownError(Box::new(e)))
}

/// The same mapping postgres-es applies: a unique violation (a taken
/// sequence, or a command id the `command_log` trigger has seen) is an
/// optimistic-lock conflict.
fn persistence_error(e: sqlx::Error) -> PersistenceError {
    let unique_violation = e
        .as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23505"));
    if unique_violation {
        PersistenceError::OptimisticLockError
    } else if ordertrail_platform::db::is_unreachable(&e) {
        PersistenceError::ConnectionError(Box::new(e))
    } else {
        PersistenceError::UnknownError(Box::new(e))
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.postgres_es.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.postgres_es
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.postgres_es.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match snapshot_update {
            None => self.append(events).await,
            Some(snapshot) => self.postgres_es.persist::<A>(events, Some(snapshot)).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.postgres_es.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.postgres_es.stream_all_events::<A>().await
    }
}
