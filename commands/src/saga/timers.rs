//! Stored timers (`saga_timers`): timeouts and payment retries that survive
//! restarts. The saga schedules them when it handles an event and fires them
//! from its poller.
//!
//! No transaction spans a firing: a due timer is **claimed** with a lease in
//! one short statement ([`claim_due`]), fired with no transaction open
//! (commands, provider calls), then marked [`fired`]. A claim whose holder
//! died runs out and the timer is claimed again; its commands derive their
//! ids from the timer (or its origin), so firing twice acts once.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::TIMER_NAMESPACE;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Authorize a card payment again (the provider was unavailable).
    AuthorizeRetry,
    /// Cancel a confirmed order no restaurant accepted in time.
    AcceptTimeout,
    /// Flag a requested delivery no rider took in time (again after it lost
    /// its rider).
    AssignTimeout,
    /// Capture again after a `PaymentCaptureFailed` that was not final.
    CaptureRetry,
    /// Void or refund again after a `PaymentVoidFailed` /
    /// `PaymentRefundFailed` that was not final.
    ReleaseRetry,
    /// Take a delivery from a rider who did not pick it up in time.
    PickupTimeout,
    /// Flag a delivery not completed in time after its assignment.
    CompletionTimeout,
}

impl TimerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TimerKind::AuthorizeRetry => "authorize_retry",
            TimerKind::AcceptTimeout => "accept_timeout",
            TimerKind::AssignTimeout => "assign_timeout",
            TimerKind::CaptureRetry => "capture_retry",
            TimerKind::ReleaseRetry => "release_retry",
            TimerKind::PickupTimeout => "pickup_timeout",
            TimerKind::CompletionTimeout => "completion_timeout",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorize_retry" => Some(TimerKind::AuthorizeRetry),
            "accept_timeout" => Some(TimerKind::AcceptTimeout),
            "assign_timeout" => Some(TimerKind::AssignTimeout),
            "capture_retry" => Some(TimerKind::CaptureRetry),
            "release_retry" => Some(TimerKind::ReleaseRetry),
            "pickup_timeout" => Some(TimerKind::PickupTimeout),
            "completion_timeout" => Some(TimerKind::CompletionTimeout),
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
    /// Order id, or delivery id for the delivery timeouts.
    pub aggregate_id: String,
    /// Retry number for retries (from 1), else 0.
    pub attempt: i32,
    pub due_at: DateTime<Utc>,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    /// What the timer's commands derive their ids from instead of the timer
    /// id: a provider retry repeats its first attempt's command (so the
    /// provider sees the same idempotency key); a delivery timeout names the
    /// event that started what it watches (`RiderAssigned`,
    /// `RiderUnassigned`).
    pub origin: Option<Uuid>,
}

impl NewTimer {
    /// The timer's id: derived from kind, aggregate, attempt and origin, so
    /// the same timer scheduled again is the same row.
    pub fn timer_id(&self) -> Uuid {
        timer_id(self.kind, &self.aggregate_id, self.attempt, self.origin)
    }
}

/// The id of the timer `(kind, aggregate_id, attempt, origin)`.
pub fn timer_id(kind: TimerKind, aggregate_id: &str, attempt: i32, origin: Option<Uuid>) -> Uuid {
    let name = match origin {
        None => format!("{kind}/{aggregate_id}/{attempt}"),
        Some(origin) => format!("{kind}/{aggregate_id}/{attempt}/{origin}"),
    };
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
    pub origin: Option<Uuid>,
}

impl DueTimer {
    /// What its commands derive their ids from: the origin, else the timer.
    pub fn command_origin(&self) -> Uuid {
        self.origin.unwrap_or(self.timer_id)
    }
}

/// Store a timer; `false` when it was stored before (then nothing changes).
pub async fn schedule<'e>(
    executor: impl PgExecutor<'e>,
    timer: &NewTimer,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO saga_timers (timer_id, kind, aggregate_id, attempt, due_at, correlation_id, causation_id, origin)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT DO NOTHING",
    )
    .bind(timer.timer_id())
    .bind(timer.kind.as_str())
    .bind(&timer.aggregate_id)
    .bind(timer.attempt)
    .bind(timer.due_at)
    .bind(timer.correlation_id)
    .bind(timer.causation_id)
    .bind(timer.origin)
    .execute(executor)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

type TimerRow = (
    Uuid,
    String,
    String,
    i32,
    DateTime<Utc>,
    Uuid,
    Uuid,
    Option<Uuid>,
);

/// Claim the earliest due timer that has not fired and is not claimed by a
/// live holder: one short statement (its own transaction) sets the lease
/// `claimed_until = now() + lease` for `instance`. Nothing stays locked while
/// it fires.
pub async fn claim_due(
    pool: &PgPool,
    lease: Duration,
    instance: &str,
) -> Result<Option<DueTimer>, ClaimError> {
    let row: Option<TimerRow> = sqlx::query_as(
        "UPDATE saga_timers t
         SET claimed_until = now() + make_interval(secs => $1), claimed_by = $2
         WHERE t.timer_id = (
             SELECT timer_id FROM saga_timers
             WHERE fired_at IS NULL AND due_at <= now()
               AND (claimed_until IS NULL OR claimed_until <= now())
             ORDER BY due_at
             LIMIT 1
             FOR UPDATE SKIP LOCKED)
         RETURNING t.timer_id, t.kind, t.aggregate_id, t.attempt, t.due_at, t.correlation_id,
                   t.causation_id, t.origin",
    )
    .bind(lease.as_secs_f64())
    .bind(instance)
    .fetch_optional(pool)
    .await?;
    let Some((timer_id, kind, aggregate_id, attempt, due_at, correlation_id, causation_id, origin)) =
        row
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
        origin,
    }))
}

/// Mark a claimed timer as fired, with what it did.
pub async fn fired(pool: &PgPool, timer_id: Uuid, outcome: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE saga_timers SET fired_at = now(), outcome = $2, claimed_until = NULL
         WHERE timer_id = $1",
    )
    .bind(timer_id)
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}

/// Give a claim back early (the firing could not finish for a reason worth
/// retrying soon, e.g. the store is down), so the next poll may take it.
pub async fn unclaim(pool: &PgPool, timer_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE saga_timers SET claimed_until = NULL WHERE timer_id = $1 AND fired_at IS NULL",
    )
    .bind(timer_id)
    .execute(pool)
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
