//! Stored timers (`saga_timers`): timeouts and payment retries that survive
//! restarts. The saga schedules them when it handles an event and fires them
//! from its poller.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::TIMER_NAMESPACE;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Authorize a card payment again (the provider was unavailable).
    AuthorizeRetry,
    /// Cancel a confirmed order no restaurant accepted in time.
    AcceptTimeout,
    /// Flag a requested delivery no rider took in time.
    AssignTimeout,
}

impl TimerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TimerKind::AuthorizeRetry => "authorize_retry",
            TimerKind::AcceptTimeout => "accept_timeout",
            TimerKind::AssignTimeout => "assign_timeout",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorize_retry" => Some(TimerKind::AuthorizeRetry),
            "accept_timeout" => Some(TimerKind::AcceptTimeout),
            "assign_timeout" => Some(TimerKind::AssignTimeout),
            _ => None,
        }
    }
}

impl fmt::Display for TimerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A timer to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTimer {
    pub kind: TimerKind,
    /// Order id, or delivery id for [`TimerKind::AssignTimeout`].
    pub aggregate_id: String,
    /// Retry number for [`TimerKind::AuthorizeRetry`] (from 1), else 0.
    pub attempt: i32,
    pub due_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
}

impl NewTimer {
    /// The timer's id: derived from kind, aggregate and attempt, so the same
    /// timer scheduled again is the same row.
    pub fn timer_id(&self) -> Uuid {
        timer_id(self.kind, &self.aggregate_id, self.attempt)
    }
}

/// The id of the timer `(kind, aggregate_id, attempt)`.
pub fn timer_id(kind: TimerKind, aggregate_id: &str, attempt: i32) -> Uuid {
    let name = format!("{kind}/{aggregate_id}/{attempt}");
    Uuid::new_v5(&TIMER_NAMESPACE, name.as_bytes())
}

/// A stored timer that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub timer_id: Uuid,
    pub kind: TimerKind,
    pub aggregate_id: String,
    pub attempt: i32,
    pub due_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
}

/// Store a timer; `false` when it was stored before (then nothing changes).
pub async fn schedule<'e>(
    executor: impl PgExecutor<'e>,
    timer: &NewTimer,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO saga_timers (timer_id, kind, aggregate_id, attempt, due_at, correlation_id, causation_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING",
    )
    .bind(timer.timer_id())
    .bind(timer.kind.as_str())
    .bind(&timer.aggregate_id)
    .bind(timer.attempt)
    .bind(timer.due_at)
    .bind(timer.correlation_id)
    .bind(timer.causation_id)
    .execute(executor)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

type TimerRow = (Uuid, String, String, i32, DateTime<Utc>, Uuid, Uuid);

/// Lock the earliest due timer that has not fired, for the rest of the
/// transaction; other saga instances skip it.
pub async fn claim_due(tx: &mut PgConnection) -> Result<Option<DueTimer>, ClaimError> {
    let row: Option<TimerRow> = sqlx::query_as(
        "SELECT timer_id, kind, aggregate_id, attempt, due_at, correlation_id, causation_id
         FROM saga_timers
         WHERE fired_at IS NULL AND due_at <= now()
         ORDER BY due_at
         LIMIT 1
         FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some((timer_id, kind, aggregate_id, attempt, due_at, correlation_id, causation_id)) = row
    else {
        return Ok(None);
    };
    let kind = TimerKind::parse(&kind).ok_or(ClaimError::UnknownKind { timer_id, kind })?;
    Ok(Some(DueTimer {
        timer_id,
        kind,
        aggregate_id,
        attempt,
        due_at,
        correlation_id,
        causation_id,
    }))
}

/// Mark a claimed timer as fired, with what it did.
pub async fn fired(
    tx: &mut PgConnection,
    timer_id: Uuid,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE saga_timers SET fired_at = now(), outcome = $2 WHERE timer_id = $1")
        .bind(timer_id)
        .bind(outcome)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Why a due timer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("timer {timer_id} has unknown kind {kind:?}")]
    UnknownKind { timer_id: Uuid, kind: String },
}
