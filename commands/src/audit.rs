//! Audit reads straight from the event store, never from a read model
//! (DESIGN.md, "Replay, audit, reconciliation"):
//!
//! - [`history`]: every event of one order, payment or delivery, with its
//!   metadata (actor, command, correlation and causation ids, request id) and
//!   `recorded_at`, keyset-paged by sequence;
//! - [`state_as_of`]: the aggregate as it stood at a version or a time,
//!   folded by the domain aggregate's own `apply` after upcasting — exactly
//!   the path the command service rebuilds aggregates with, so it cannot drift
//!   from the write side;
//! - [`correlation`]: every event of one business flow across the three
//!   aggregate types, in commit order.
//!
//! Everything reads through `ordertrail_platform::event_log`, the one reading
//! path. Used by the API's `/v1/audit` routes and by `ordertrail-audit`.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::persist::SerializedEvent;
use ordertrail_domain::{Delivery, DomainError, Order, Payment};
use ordertrail_platform::event_log::{self, Position, StoredEvent};
use ordertrail_schemas::AggregateKind;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::service::rebuild;

/// Largest page an audit read returns.
pub const MAX_PAGE: i64 = 1000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: i64 = 100;
/// Events read per round trip while folding a state.
const FOLD_BATCH: i64 = 500;

/// Why an audit read gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The aggregate does not exist (at that version or time).
    #[error("{kind} {id} has no events at or before the requested point")]
    NotFound { kind: AggregateKind, id: String },
    /// A paging cursor that no audit read handed out.
    #[error("invalid cursor {0:?}")]
    InvalidCursor(String),
    /// A stored event the aggregate cannot be folded with.
    #[error("cannot fold {kind} {id}: {reason}")]
    Fold {
        kind: AggregateKind,
        id: String,
        reason: String,
    },
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
}

/// One stored event as an auditor sees it: the payload as stored (in the
/// version it was written in) and the metadata map as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub event_id: Uuid,
    /// `Order`, `Payment` or `Delivery`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_position: i64,
    /// The inserting transaction (`xid8`); with `global_position` the commit order.
    pub transaction_id: u64,
    pub event_type: String,
    pub event_version: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// `command_id`, `correlation_id`, `causation_id`, `actor_subject`,
    /// `actor_role`, `request_id`.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl From<StoredEvent> for AuditEvent {
    fn from(e: StoredEvent) -> Self {
        Self {
            event_id: e.event_id,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            global_position: e.global_position,
            transaction_id: e.transaction_id,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
            metadata: e.metadata,
            recorded_at: e.recorded_at,
        }
    }
}

/// One page of events; `next_cursor` is null on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// The point a state is folded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After the event with this sequence (1 is the first event).
    Version(i64),
    /// After every event recorded at or before this time.
    Time(DateTime<Utc>),
    /// After the last event.
    Latest,
}

/// An aggregate's state at a point, and the point it stands at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditState {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The sequence of the last event folded in.
    pub version: i64,
    /// `recorded_at` of that event.
    pub at: DateTime<Utc>,
    /// The domain aggregate, serialized as the write side holds it.
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
}

fn clamp(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

/// Every event of one aggregate after sequence `after` (keyset paging: the
/// cursor is the last sequence of the previous page).
pub async fn history(
    pool: &PgPool,
    kind: AggregateKind,
    id: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<AuditPage, AuditError> {
    let after = match cursor {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| AuditError::InvalidCursor(c.to_owned()))?,
    };
    let limit = clamp(limit);
    let rows = event_log::read_aggregate(pool, kind.as_str(), id, after, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|e| e.sequence.to_string()))
        .flatten();
    Ok(AuditPage {
        items: rows.into_iter().map(AuditEvent::from).collect(),
        next_cursor,
    })
}

fn position_cursor(p: Position) -> String {
    format!("{}.{}", p.transaction_id, p.global_position)
}

fn parse_position(c: &str) -> Option<Position> {
    let (t, g) = c.split_once('.')?;
    Some(Position {
        transaction_id: t.parse().ok()?,
        global_position: g.parse().ok()?,
    })
}

/// Every event of one business flow (its correlation id) across orders,
/// payments and deliveries, in commit order; the cursor is the commit
/// position of the last event of the previous page.
pub async fn correlation(
    pool: &PgPool,
    correlation_id: Uuid,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<AuditPage, AuditError> {
    let after = match cursor {
        None => Position::START,
        Some(c) => parse_position(c).ok_or_else(|| AuditError::InvalidCursor(c.to_owned()))?,
    };
    let limit = clamp(limit);
    let rows = event_log::read_correlation(pool, correlation_id, after, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|e| position_cursor(e.position())))
        .flatten();
    Ok(AuditPage {
        items: rows.into_iter().map(AuditEvent::from).collect(),
        next_cursor,
    })
}

/// The aggregate as it stood at `as_of`, folded by the domain aggregate.
pub async fn state_as_of(
    pool: &PgPool,
    kind: AggregateKind,
    id: &str,
    as_of: AsOf,
) -> Result<AuditState, AuditError> {
    match kind {
        AggregateKind::Order => fold::<Order>(pool, kind, id, as_of).await,
        AggregateKind::Payment => fold::<Payment>(pool, kind, id, as_of).await,
        AggregateKind::Delivery => fold::<Delivery>(pool, kind, id, as_of).await,
    }
}

async fn fold<A>(
    pool: &PgPool,
    kind: AggregateKind,
    id: &str,
    as_of: AsOf,
) -> Result<AuditState, AuditError>
where
    A: Aggregate,
    A::Error: DomainError,
{
    let fold_error = |reason: String| AuditError::Fold {
        kind,
        id: id.to_owned(),
        reason,
    };
    let within = |e: &StoredEvent| match as_of {
        AsOf::Version(v) => e.sequence <= v,
        AsOf::Time(t) => e.recorded_at <= t,
        AsOf::Latest => true,
    };
    let mut events = Vec::new();
    let mut last: Option<(i64, DateTime<Utc>)> = None;
    let mut after = 0;
    'read: loop {
        let page = event_log::read_aggregate(pool, kind.as_str(), id, after, FOLD_BATCH).await?;
        let full = page.len() as i64 == FOLD_BATCH;
        for e in page {
            if !within(&e) {
                break 'read;
            }
            after = e.sequence;
            last = Some((e.sequence, e.recorded_at));
            let sequence = usize::try_from(e.sequence)
                .map_err(|_| fold_error(format!("negative sequence {}", e.sequence)))?;
            events.push(SerializedEvent {
                aggregate_id: e.aggregate_id,
                sequence,
                aggregate_type: e.aggregate_type,
                event_type: e.event_type,
                event_version: e.event_version,
                payload: e.payload,
                metadata: e.metadata,
            });
        }
        if !full {
            break;
        }
    }
    let Some((version, at)) = last else {
        return Err(AuditError::NotFound {
            kind,
            id: id.to_owned(),
        });
    };
    if let AsOf::Version(v) = as_of
        && v != version
    {
        // The aggregate never reached that version.
        return Err(AuditError::NotFound {
            kind,
            id: id.to_owned(),
        });
    }
    let upcasters = ordertrail_schemas::upcasters::all();
    let context =
        rebuild::<A>(kind, id, events, &upcasters).map_err(|e| fold_error(e.to_string()))?;
    let state = serde_json::to_value(&context.aggregate).map_err(|e| fold_error(e.to_string()))?;
    Ok(AuditState {
        aggregate_type: kind.as_str().to_owned(),
        aggregate_id: id.to_owned(),
        version,
        at,
        state,
    })
}
