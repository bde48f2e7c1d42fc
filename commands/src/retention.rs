//! Retention for the bookkeeping tables that only grow with traffic
//! (issue 16): Idempotency-Key rows, the command log, fired saga timers and
//! the consumers' per-aggregate sequence guards. The event store itself is
//! never pruned: it is the source of truth.
//!
//! | table | a row goes when | default window |
//! |---|---|---|
//! | `idempotency_keys` | created more than the idempotency window ago | 24 h |
//! | `command_log` | recorded more than the command-log window ago, **and** its transaction lies before the saga's store position, **and** it is older than the oldest unfired timer | 7 days |
//! | `saga_timers` | fired more than the timer window ago, **and** created before the event at the saga's store position (less an hour) | 7 days |
//! | `projector_sequences` | its aggregate's last applied event lies at or below the consumer's store position and was recorded more than the guard window ago | 7 days |
//!
//! Why these rules keep every answer exact:
//!
//! - A retry with the same `Idempotency-Key` finds its key row, whose
//!   command id is looked up in `command_log` to answer with the events the
//!   first request appended. So the command log must outlive the key rows:
//!   [`RetentionPolicy::new`] refuses a command-log window shorter than the
//!   idempotency window. Inside the idempotency window a retry gets its first
//!   answer; after it, the same key is a new request.
//! - `command_log` also makes a command id append at most once. The saga
//!   re-sends commands with deterministic ids when it re-processes events
//!   (recovery from the store, Kafka duplicates); it only ever re-processes
//!   events after its store position (`consumers` row `saga`). A follow-up
//!   command is appended by a transaction that started after its cause
//!   committed, so its `transaction_id` is above the cause's, which is at or
//!   above the saga's `store_txid`: rows below that txid can never be hit by
//!   a re-sent command. Without a saga row (the saga never ran, so it would
//!   start from the first event) nothing is pruned. Stored retries repeat
//!   their first attempt's command id; nothing newer than the oldest unfired
//!   timer is pruned, and retry chains are bounded by hours, far inside the
//!   window.
//! - A fired timer row stops the event that scheduled it from scheduling it
//!   again (its id is derived from that event). Only timers created before
//!   the saga's store position (with an hour's margin for transactions that
//!   commit late) are pruned, so their scheduling event is never re-processed.
//! - Sequence guards: see [`ordertrail_platform::consumer::prune_guards`]; a
//!   missing guard row falls back to the consumer's store position, so an
//!   old duplicate is still dropped.
//!
//! [`run`] is a small periodic task in the saga process. One instance at a
//! time prunes (a session advisory lock); every delete is a batch of at most
//! [`RetentionPolicy::batch`] rows, so no statement holds locks for long.
//! Metrics: `ordertrail_retention_pruned_total{table}` and
//! `ordertrail_retention_last_run_age_seconds`.

use std::future::Future;
use std::time::{Duration, Instant};

use ordertrail_platform::consumer::prune_guards;
use ordertrail_platform::retry::Backoff;
use sqlx::{PgConnection, PgPool};

use crate::saga::SAGA_CONSUMER;

/// Advisory-lock key of the pruning run ("ordertrail retention"): one
/// instance at a time.
pub const RETENTION_LOCK: i64 = 0x6f72_6474_7265_7465;

/// Default Idempotency-Key window: 24 hours.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Default command-log window: 7 days.
pub const DEFAULT_COMMAND_LOG_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default window for fired saga timers: 7 days.
pub const DEFAULT_TIMER_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default window for sequence guards: 7 days (longer than the topics'
/// retention, so a Kafka duplicate is nearly always caught by the row itself).
pub const DEFAULT_GUARD_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default rows per delete statement.
pub const DEFAULT_BATCH: i64 = 5_000;

/// How long each table keeps its rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetentionPolicy {
    idempotency: Duration,
    command_log: Duration,
    timers: Duration,
    guards: Duration,
    batch: i64,
}

/// A policy that would break an answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    /// A retry inside the idempotency window would find its key but not the
    /// command log row that answers it.
    #[error(
        "the command-log window ({command_log:?}) must be at least the idempotency window ({idempotency:?}): retries are answered from the command log"
    )]
    CommandLogShorterThanIdempotency {
        /// The command-log window asked for.
        command_log: Duration,
        /// The idempotency window asked for.
        idempotency: Duration,
    },
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            idempotency: DEFAULT_IDEMPOTENCY_WINDOW,
            command_log: DEFAULT_COMMAND_LOG_WINDOW,
            timers: DEFAULT_TIMER_WINDOW,
            guards: DEFAULT_GUARD_WINDOW,
            batch: DEFAULT_BATCH,
        }
    }
}

impl RetentionPolicy {
    /// A policy with these windows; the command log must be kept at least as
    /// long as Idempotency-Keys.
    pub fn new(
        idempotency: Duration,
        command_log: Duration,
        timers: Duration,
        guards: Duration,
    ) -> Result<Self, PolicyError> {
        if command_log < idempotency {
            return Err(PolicyError::CommandLogShorterThanIdempotency {
                command_log,
                idempotency,
            });
        }
        Ok(Self {
            idempotency,
            command_log,
            timers,
            guards,
            batch: DEFAULT_BATCH,
        })
    }

    /// The same policy deleting at most `rows` (at least 1) per statement.
    pub fn with_batch(self, rows: i64) -> Self {
        Self {
            batch: rows.max(1),
            ..self
        }
    }

    /// Rows per delete statement.
    pub fn batch(&self) -> i64 {
        self.batch
    }

    /// The Idempotency-Key window.
    pub fn idempotency(&self) -> Duration {
        self.idempotency
    }
}

/// Rows removed by one run, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// `idempotency_keys`.
    pub idempotency_keys: u64,
    /// `command_log`.
    pub command_log: u64,
    /// `saga_timers` (fired ones).
    pub saga_timers: u64,
    /// `projector_sequences`, every consumer.
    pub projector_sequences: u64,
}

/// One pruning run over every table. `None` when another instance holds the
/// run's advisory lock.
pub async fn prune_once(
    pool: &PgPool,
    policy: &RetentionPolicy,
) -> Result<Option<Pruned>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RETENTION_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(None);
    }
    let result = prune_locked(&mut conn, pool, policy).await;
    // A failed unlock is released with the session; close it rather than
    // hand a locked session back to the pool.
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(RETENTION_LOCK)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        let _ = conn.detach();
    }
    result.map(Some)
}

/// Keys older than the window (`$1` seconds), `$2` at a time.
const PRUNE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE ctid IN (
             SELECT ctid FROM idempotency_keys
             WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)";

/// Log rows older than the window that the saga (`$3`) has read past and no
/// unfired timer may still need.
const PRUNE_COMMAND_LOG: &str = "DELETE FROM command_log WHERE ctid IN (
             SELECT l.ctid FROM command_log l
             JOIN consumers c ON c.consumer = $3
             WHERE l.recorded_at < now() - make_interval(secs => $1)
               AND l.transaction_id < c.store_txid
               AND l.recorded_at < coalesce(
                     (SELECT min(t.created_at) FROM saga_timers t WHERE t.fired_at IS NULL), 'infinity')
             LIMIT $2)";

/// Timers fired before the window, created well before what the saga has
/// read (an hour's margin).
const PRUNE_SAGA_TIMERS: &str = "DELETE FROM saga_timers WHERE ctid IN (
             SELECT t.ctid FROM saga_timers t
             WHERE t.fired_at < now() - make_interval(secs => $1)
               AND t.created_at < (SELECT e.recorded_at - interval '1 hour'
                                   FROM consumers c JOIN events e ON e.global_position = c.store_position
                                   WHERE c.consumer = $3)
             LIMIT $2)";

async fn prune_locked(
    conn: &mut PgConnection,
    pool: &PgPool,
    policy: &RetentionPolicy,
) -> Result<Pruned, sqlx::Error> {
    let mut deleted = [0; 3];
    for (n, (table, sql, window)) in [
        (
            "idempotency_keys",
            PRUNE_IDEMPOTENCY_KEYS,
            policy.idempotency,
        ),
        ("command_log", PRUNE_COMMAND_LOG, policy.command_log),
        ("saga_timers", PRUNE_SAGA_TIMERS, policy.timers),
    ]
    .into_iter()
    .enumerate()
    {
        deleted[n] = delete_in_batches(conn, table, sql, window, policy.batch).await?;
    }
    let [idempotency_keys, command_log, saga_timers] = deleted;

    let consumers: Vec<String> = sqlx::query_scalar("SELECT consumer FROM consumers")
        .fetch_all(&mut *conn)
        .await?;
    let mut projector_sequences = 0;
    for consumer in consumers {
        projector_sequences += prune_guards(pool, &consumer, policy.guards).await?;
    }
    count("projector_sequences", projector_sequences);

    Ok(Pruned {
        idempotency_keys,
        command_log,
        saga_timers,
        projector_sequences,
    })
}

/// Run `sql` deleting from `table` (binds: window in seconds, batch size,
/// the saga's consumer name) until a batch deletes
/// fewer rows than the batch size.
async fn delete_in_batches(
    conn: &mut PgConnection,
    table: &'static str,
    sql: &'static str,
    window: Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let gone = sqlx::query(sql)
            .bind(window.as_secs_f64())
            .bind(batch)
            .bind(SAGA_CONSUMER)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        total += gone;
        if (gone as i64) < batch {
            count(table, total);
            return Ok(total);
        }
    }
}

fn count(table: &'static str, rows: u64) {
    metrics::counter!("ordertrail_retention_pruned_total", "table" => table).increment(rows);
}

/// Prune every `interval` until `shutdown` resolves. A failed run is retried
/// with the platform's database back-off; the age of the last successful run
/// is the gauge `ordertrail_retention_last_run_age_seconds`.
pub async fn run(
    pool: PgPool,
    policy: RetentionPolicy,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let started = Instant::now();
    let mut last_run: Option<Instant> = None;
    let backoff = Backoff::database(interval.max(Duration::from_secs(1)));
    let mut failures = 0u32;
    tokio::pin!(shutdown);
    loop {
        let wait = match prune_once(&pool, &policy).await {
            Ok(Some(pruned)) => {
                failures = 0;
                last_run = Some(Instant::now());
                tracing::info!(?pruned, "retention run finished");
                interval
            }
            Ok(None) => {
                failures = 0;
                tracing::debug!("another instance is pruning");
                interval
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention run failed; retrying");
                failures = failures.saturating_add(1);
                backoff.delay(failures - 1)
            }
        };
        let age = last_run.unwrap_or(started).elapsed().as_secs_f64();
        metrics::gauge!("ordertrail_retention_last_run_age_seconds").set(age);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut shutdown => return,
        }
    }
}
