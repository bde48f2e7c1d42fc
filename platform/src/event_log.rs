//! The event store read in commit order (DESIGN.md, "Commit order").
//!
//! `global_position` is assigned at insert, not at commit: a transaction that
//! inserted position 7 may commit after one that inserted position 8, so a
//! reader that follows `global_position` alone and has already moved past 8
//! never sees 7. Readers here follow `(transaction_id, global_position)` and
//! only read rows whose inserting transaction is below the oldest transaction
//! still in flight (`pg_snapshot_xmin(pg_current_snapshot())`): every such
//! transaction has finished, so no row can ever appear behind the position a
//! reader has reached. The relay uses this, and so will replay and store-fed
//! projectors; their checkpoint is a [`Position`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ordertrail_schemas::{AggregateKind, EventEnvelope, EventMetadata, upcasters};
use serde::Deserialize;
use sqlx::PgExecutor;
use uuid::Uuid;

/// A reader's place in the commit-ordered log: everything up to and including
/// this pair has been read. [`Position::START`] is before the first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// The inserting transaction (`events.transaction_id`, an `xid8`).
    pub transaction_id: u64,
    /// `events.global_position` within that transaction.
    pub global_position: i64,
}

impl Position {
    /// Before the first event.
    pub const START: Position = Position {
        transaction_id: 0,
        global_position: 0,
    };
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.transaction_id, self.global_position)
    }
}

/// One row of `events`, with the columns postgres-es does not know about;
/// `J` is how its JSON columns are held: parsed (the default), or as text
/// ([`UnparsedEvent`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent<J = serde_json::Value> {
    pub transaction_id: u64,
    pub global_position: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload as stored (in the version it was written in).
    pub payload: J,
    /// The flat string map of `EventMetadata::to_map`.
    pub metadata: J,
    pub recorded_at: DateTime<Utc>,
}

/// A stored event whose payload and metadata are still JSON text: what a
/// reader fetches when it parses them elsewhere ([`UnparsedEvent::parse`];
/// a rebuild parses one batch while the next is fetched).
pub type UnparsedEvent = StoredEvent<Box<serde_json::value::RawValue>>;

impl UnparsedEvent {
    /// Parse the payload and metadata.
    pub fn parse(self) -> Result<StoredEvent, serde_json::Error> {
        Ok(StoredEvent {
            payload: serde_json::from_str(self.payload.get())?,
            metadata: serde_json::from_str(self.metadata.get())?,
            transaction_id: self.transaction_id,
            global_position: self.global_position,
            event_id: self.event_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            recorded_at: self.recorded_at,
        })
    }
}

impl<J> StoredEvent<J> {
    /// The reader position just after this event.
    pub fn position(&self) -> Position {
        Position {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }
}

/// How far a reader is behind the readable head of the log.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lag {
    /// Committed, readable events after the reader's position.
    pub events: i64,
    /// Age of the oldest of those events (`now() - recorded_at`), 0 when none.
    pub seconds: f64,
}

/// A row of [`select_events!`], its JSON columns decoded as `J`.
type Row<J = serde_json::Value> = (
    i64,
    i64,
    Uuid,
    String,
    String,
    i64,
    String,
    String,
    J,
    J,
    DateTime<Utc>,
);

/// The columns every reader selects, in [`Row`] order. `xid8` has no sqlx
/// type: it travels as text and is compared as `xid8`.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT e.transaction_id::text::bigint AS txid, e.global_position, e.event_id, e.aggregate_type,
       e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at
FROM events e
",
            $rest
        )
    };
}

/// Served by the `events_commit_order (transaction_id, global_position)` index
/// without a sort: ORDER BY names the table's columns (qualified), not the
/// bigint cast in the select list, which would share the name and force a
/// sort of every remaining row.
const READ_AFTER: &str = select_events!(
    "WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2)
  AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.transaction_id, e.global_position
LIMIT $3"
);

/// One aggregate's events by sequence (the primary key serves it).
const READ_AGGREGATE: &str = select_events!(
    "WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence > $3
ORDER BY e.sequence
LIMIT $4"
);

/// The events at the given global positions (the `events_global_position`
/// unique index finds each), in no particular order. Positions grow with
/// time, so the events of one order sit on a few neighbouring index and heap
/// pages, where random event ids would touch one index page each.
const READ_BY_POSITIONS: &str = select_events!("WHERE e.global_position = ANY($1)");

/// One correlation's events in commit order (served by the
/// `events_correlation` index of migration 0008).
const READ_CORRELATION: &str = select_events!(
    "WHERE (e.metadata ->> 'correlation_id') = $1
  AND (e.transaction_id, e.global_position) > ($2::text::xid8, $3)
  AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.transaction_id, e.global_position
LIMIT $4"
);

/// Up to `limit` events after `after`, in commit order, only from transactions
/// that finished before the oldest one still in flight.
pub async fn read_after<'e, E: PgExecutor<'e>>(
    executor: E,
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let query = after_query(READ_AFTER, after, limit);
    fetch_events(executor, query).await
}

/// Whether committed events after `after` are held back from
/// [`read_after`]: written by a transaction that started after the oldest
/// one still in flight (any database of the server). A reader that found
/// nothing to read while this is true should look again soon rather than
/// wait for the next notification: the notification of those commits has
/// already come.
pub async fn held_back_after<'e, E: PgExecutor<'e>>(
    executor: E,
    after: Position,
) -> Result<bool, sqlx::Error> {
    // Not `EXISTS`: it drops the ORDER BY, and the planner, taking a third
    // of the table to match, scans it from the start (the rows after a
    // position are at its end); the ordered scan of the commit-order index
    // finds the first row at once, whatever the store's size.
    sqlx::query_scalar(
        "SELECT (SELECT global_position FROM events
                 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
                 ORDER BY transaction_id, global_position LIMIT 1) IS NOT NULL",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .fetch_one(executor)
    .await
}

/// Like [`READ_AFTER`], only events of the given aggregate types.
const READ_AFTER_OF_TYPES: &str = select_events!(
    "WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2)
  AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  AND e.aggregate_type = ANY($4)
ORDER BY e.transaction_id, e.global_position
LIMIT $3"
);

/// Up to `limit` events of `aggregate_types` after `after`, in commit order,
/// only from transactions that finished before the oldest one still in
/// flight (what a consumer of some aggregate types reads).
pub async fn read_after_of_types<'e, E: PgExecutor<'e>>(
    executor: E,
    after: Position,
    aggregate_types: &[&str],
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let query = after_query(READ_AFTER_OF_TYPES, after, limit).bind(aggregate_types);
    fetch_events(executor, query).await
}

/// [`read_after_of_types`], the payload and metadata left as JSON text.
pub async fn read_after_of_types_unparsed<'e, E: PgExecutor<'e>>(
    executor: E,
    after: Position,
    aggregate_types: &[&str],
    limit: i64,
) -> Result<Vec<UnparsedEvent>, sqlx::Error> {
    let rows: Vec<Row<sqlx::types::Json<Box<serde_json::value::RawValue>>>> =
        after_query(READ_AFTER_OF_TYPES, after, limit)
            .bind(aggregate_types)
            .fetch_all(executor)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(t, g, id, at, ai, seq, et, ev, payload, metadata, rec)| {
            stored_event((t, g, id, at, ai, seq, et, ev, payload.0, metadata.0, rec))
        })
        .collect())
}

/// Like [`READ_AFTER`], only the events of the given aggregates (type and id
/// pairs, in two parallel arrays); the primary key finds each aggregate.
const READ_AGGREGATES_AFTER: &str = select_events!(
    "WHERE (e.aggregate_type, e.aggregate_id) IN (SELECT * FROM unnest($4::text[], $5::text[]))
  AND (e.transaction_id, e.global_position) > ($1::text::xid8, $2)
  AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.transaction_id, e.global_position
LIMIT $3"
);

/// Up to `limit` events of the given aggregates (`(aggregate_type,
/// aggregate_id)` pairs) after `after`, in commit order, with the same
/// visibility rule as [`read_after`] (what one order's live stream replays).
pub async fn read_aggregates_after<'e, E: PgExecutor<'e>>(
    executor: E,
    aggregates: &[(&str, &str)],
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let types: Vec<&str> = aggregates.iter().map(|(t, _)| *t).collect();
    let ids: Vec<&str> = aggregates.iter().map(|(_, id)| *id).collect();
    let query = after_query(READ_AGGREGATES_AFTER, after, limit)
        .bind(&types)
        .bind(&ids);
    fetch_events(executor, query).await
}

/// A query for whole event rows.
type EventsQuery<'q, R = Row> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments>;

/// `sql` with the commit-order position and the limit bound as `$1`, `$2`
/// and `$3`: the start of every read in commit order.
fn after_query<R>(sql: &str, after: Position, limit: i64) -> EventsQuery<'_, R>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    sqlx::query_as(sql)
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(limit)
}

/// Run `query` and decode its rows.
async fn fetch_events<'e, E: PgExecutor<'e>>(
    executor: E,
    query: EventsQuery<'_>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = query.fetch_all(executor).await?;
    Ok(rows.into_iter().map(stored_event).collect())
}

fn stored_event<J>(
    (
        transaction_id,
        global_position,
        event_id,
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        event_version,
        payload,
        metadata,
        recorded_at,
    ): Row<J>,
) -> StoredEvent<J> {
    StoredEvent {
        // xid8 is a 64-bit epoch-extended xid; real values stay far below i64::MAX.
        transaction_id: transaction_id.unsigned_abs(),
        global_position,
        event_id,
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        event_version,
        payload,
        metadata,
        recorded_at,
    }
}

impl StoredEvent {
    /// The wire envelope of this event: payload upcast to the current
    /// version, metadata decoded from the stored string map. The relay
    /// publishes exactly this; store-fed consumers apply exactly this.
    pub fn envelope(&self) -> Result<EventEnvelope, String> {
        self.clone().into_envelope().map_err(|(reason, _)| reason)
    }

    /// [`StoredEvent::envelope`], taking the event: its payload and strings
    /// are moved, not copied (the store-fed consumers and rebuilds decode
    /// every event this way). A failure gives the event back.
    pub fn into_envelope(self) -> Result<EventEnvelope, (String, Box<StoredEvent>)> {
        let Some(kind) = AggregateKind::parse(&self.aggregate_type) else {
            let reason = format!("unknown aggregate type {:?}", self.aggregate_type);
            return Err((reason, Box::new(self)));
        };
        let metadata = match HashMap::<String, String>::deserialize(&self.metadata) {
            Err(e) => return Err((format!("metadata is not a string map: {e}"), Box::new(self))),
            Ok(map) => match EventMetadata::from_map(&map) {
                Ok(metadata) => metadata,
                Err(e) => return Err((e.to_string(), Box::new(self))),
            },
        };
        let (event_version, payload) =
            upcasters::upcast_payload(&self.event_type, self.event_version, self.payload);
        Ok(EventEnvelope {
            event_id: self.event_id,
            aggregate_type: kind,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            global_position: self.global_position,
            event_type: self.event_type,
            event_version,
            payload,
            metadata,
            recorded_at: self.recorded_at,
        })
    }
}

/// Up to `limit` events of one aggregate with a sequence above
/// `after_sequence`, by sequence (keyset paging: pass the last sequence read).
/// Sequences of one aggregate are appended under optimistic concurrency, so a
/// committed sequence is never followed by a lower one committing later.
pub async fn read_aggregate<'e, E: PgExecutor<'e>>(
    executor: E,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let query = sqlx::query_as(READ_AGGREGATE)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .bind(limit);
    fetch_events(executor, query).await
}

/// The stored events at the given global positions, in no particular order;
/// positions not in the store are left out. What a read model that keeps
/// only where an event is (order history's timeline) reads the event with.
pub async fn read_by_positions<'e, E: PgExecutor<'e>>(
    executor: E,
    positions: &[i64],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let query = sqlx::query_as(READ_BY_POSITIONS).bind(positions);
    fetch_events(executor, query).await
}

/// Up to `limit` events whose metadata names `correlation_id`, after `after`,
/// in commit order, across every aggregate type (same visibility rule as
/// [`read_after`]).
pub async fn read_correlation<'e, E: PgExecutor<'e>>(
    executor: E,
    correlation_id: Uuid,
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let query = sqlx::query_as(READ_CORRELATION)
        .bind(correlation_id.to_string())
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(limit);
    fetch_events(executor, query).await
}

/// The position of the last readable event (commit order), if any.
pub async fn head<'e, E: PgExecutor<'e>>(executor: E) -> Result<Option<Position>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT e.transaction_id::text::bigint AS txid, e.global_position FROM events e
         WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1",
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|(t, g)| Position {
        transaction_id: t.unsigned_abs(),
        global_position: g,
    }))
}

/// How far `after` is behind the readable head: a count over the commit-order
/// index (cheap enough every few seconds, not per batch) and the age of the
/// next unread event.
pub async fn lag<'e, E: PgExecutor<'e>>(executor: E, after: Position) -> Result<Lag, sqlx::Error> {
    let (events, seconds): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*),
                extract(epoch FROM now() - min(recorded_at))::float8
         FROM events
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .fetch_one(executor)
    .await?;
    Ok(Lag {
        events,
        seconds: seconds.unwrap_or(0.0).max(0.0),
    })
}

/// Committed events a commit-order reader at `after` has not read yet,
/// including those it cannot read yet because an older transaction is still
/// open somewhere on the server ([`read_after`] only reads below the oldest
/// one). Every row this statement sees is committed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Backlog {
    /// Committed events after `after`.
    pub committed: i64,
    /// Of those, events not yet readable: written by a transaction that
    /// started after the oldest still-open transaction.
    pub held_back: i64,
    /// Age of the oldest committed event after `after`, 0 when none.
    pub oldest_seconds: f64,
}

/// See [`Backlog`].
pub async fn backlog<'e, E: PgExecutor<'e>>(
    executor: E,
    after: Position,
) -> Result<Backlog, sqlx::Error> {
    let (committed, held_back, seconds): (i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())),
                extract(epoch FROM now() - min(recorded_at))::float8
         FROM events
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2)",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .fetch_one(executor)
    .await?;
    Ok(Backlog {
        committed,
        held_back,
        oldest_seconds: seconds.unwrap_or(0.0).max(0.0),
    })
}

/// The open transaction that holds commit-order readers back: the one with
/// the oldest transaction id on the whole server (any database), which is
/// what `pg_snapshot_xmin(pg_current_snapshot())` stops at.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OldestTransaction {
    pub pid: i32,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    /// `active`, `idle in transaction`, ...
    pub state: Option<String>,
    /// Seconds since the transaction started.
    pub age_seconds: f64,
    /// Its transaction id (`xid`, as text).
    pub xid: String,
}

/// See [`OldestTransaction`]; `None` when no other session holds a
/// transaction id. Prepared (two-phase) transactions are reported with pid 0.
pub async fn oldest_transaction<'e, E: PgExecutor<'e>>(
    executor: E,
) -> Result<Option<OldestTransaction>, sqlx::Error> {
    type Row = (
        i32,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<f64>,
        String,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT pid, db, usr, app, state, age_s, xid FROM (
             SELECT pid, datname::text AS db, usename::text AS usr, application_name AS app,
                    state, extract(epoch FROM now() - xact_start)::float8 AS age_s,
                    backend_xid::text AS xid
             FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
             UNION ALL
             SELECT 0, database::text, owner::text, 'prepared transaction ' || gid, 'prepared',
                    extract(epoch FROM now() - prepared)::float8, transaction::text
             FROM pg_prepared_xacts
         ) t
         ORDER BY age(xid::xid) DESC
         LIMIT 1",
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(
        |(pid, database, user, application, state, age, xid)| OldestTransaction {
            pid,
            database,
            user,
            application,
            state,
            age_seconds: age.unwrap_or(0.0).max(0.0),
            xid,
        },
    ))
}
