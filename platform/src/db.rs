//! The PostgreSQL pool, the project's migrations, and how a process tells a
//! database outage (wait it out, answer "unavailable") from a fault.
//!
//! - [`connect`] waits a bounded time for the server (command-line tools);
//!   [`connect_service`] waits as long as it takes (long-running services:
//!   API, relay, saga, projectors), with back-off, a log line per outage and
//!   the `ordertrail_database_up` gauge at 0 meanwhile.
//! - Every session the platform opens sets `idle_in_transaction_session_timeout`
//!   (`DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS`, default 60, 0 = off): a
//!   transaction of ours left open by a bug is ended by the server instead of
//!   holding back the relay, which reads below the oldest open transaction.
//! - [`is_unreachable`] / [`is_unreachable_source`]: connection refused or
//!   reset, pool time-outs, administrator shutdown (`57P01`..`57P03`), too
//!   many connections: the caller answers 503 / backs off, never 500 / exits.

use std::error::Error as StdError;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::retry::Backoff;

/// All migrations under `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A connection idle for longer than this is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Environment variable: seconds a session of ours may sit idle inside a
/// transaction before the server ends it (0: no limit).
pub const IDLE_IN_TRANSACTION_ENV: &str = "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS";

/// The name [`IDLE_IN_TRANSACTION_ENV`] had before every database setting
/// was named `DATABASE_*`; still read when the new one is unset.
pub const IDLE_IN_TRANSACTION_ENV_DEPRECATED: &str = "DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS";

/// Default of [`IDLE_IN_TRANSACTION_ENV`].
pub const DEFAULT_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(60);

/// Pauses between two connection attempts while the server is down: from
/// 200 ms, at most 5 s.
pub const CONNECT_BACKOFF: Backoff = Backoff::database(Duration::from_secs(5));

/// The project's pool settings, at most `max_connections`.
///
/// sqlx pings every connection it hands out by default: one extra round trip
/// per acquire, and a command acquires up to three times (load, BEGIN+append,
/// bookkeeping). Under load connections are never idle for long, so only a
/// connection idle for over [`PING_IF_IDLE_FOR`] is pinged: that still
/// weeds out connections a server restart broke while they sat in the pool.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// The idle-in-transaction limit from [`IDLE_IN_TRANSACTION_ENV`] (or its
/// deprecated name), in seconds; [`DEFAULT_IDLE_IN_TRANSACTION`] when unset.
pub fn idle_in_transaction_seconds_from_env() -> u64 {
    [IDLE_IN_TRANSACTION_ENV, IDLE_IN_TRANSACTION_ENV_DEPRECATED]
        .into_iter()
        .find_map(|name| std::env::var(name).ok()?.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_IDLE_IN_TRANSACTION.as_secs())
}

/// The idle-in-transaction limit from the environment (`None`: no limit).
pub fn idle_in_transaction_timeout() -> Option<Duration> {
    let secs = idle_in_transaction_seconds_from_env();
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Connection options for `url` with the platform's session settings.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    Ok(with_session_settings(options))
}

/// Add the platform's session settings (see the module docs) to `options`.
pub fn with_session_settings(options: PgConnectOptions) -> PgConnectOptions {
    with_idle_in_transaction_limit(options, idle_in_transaction_timeout())
}

/// Set `idle_in_transaction_session_timeout` to `limit` (none: no limit).
pub fn with_idle_in_transaction_limit(
    options: PgConnectOptions,
    limit: Option<Duration>,
) -> PgConnectOptions {
    match limit {
        Some(limit) => options.options([(
            "idle_in_transaction_session_timeout",
            format!("{}ms", limit.as_millis()),
        )]),
        None => options,
    }
}

/// Connect a pool of at most `max_connections`, waiting up to 30 s for the
/// server to come up (command-line tools; services use [`connect_service`]).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    connect_within(
        connect_options(url)?,
        max_connections,
        Some(TOOL_CONNECT_WAIT),
    )
    .await
}

/// How long a command-line tool waits for the server before giving up.
pub const TOOL_CONNECT_WAIT: Duration = Duration::from_secs(30);

/// Connect a pool for a long-running service: waits for the server as long
/// as it takes (a PostgreSQL outage at start-up, or a start before the
/// database in compose), with back-off. Only a configuration fault (a bad
/// URL, a refused password, a missing database) ends it.
pub async fn connect_service(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    connect_within(connect_options(url)?, max_connections, None).await
}

/// Connect a pool of at most `max_connections` with `connect` options,
/// waiting out an unreachable server with [`CONNECT_BACKOFF`]: up to `wait`,
/// or as long as it takes when `None`.
pub async fn connect_within(
    connect: PgConnectOptions,
    max_connections: u32,
    wait: Option<Duration>,
) -> Result<PgPool, sqlx::Error> {
    let options = pool_options(max_connections);
    let deadline = wait.map(|w| Instant::now() + w);
    let mut attempt = 0u32;
    loop {
        match options.clone().connect_with(connect.clone()).await {
            Ok(pool) => {
                mark_available();
                return Ok(pool);
            }
            Err(e) if deadline.is_none_or(|d| Instant::now() < d) && is_unreachable(&e) => {
                mark_unavailable(&e);
                attempt = attempt.saturating_add(1);
                CONNECT_BACKOFF.sleep(attempt).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the database could not be reached or is going away (connection
/// refused, reset or lost, pool exhausted or closed, TLS failure, server
/// shutting down or starting up, too many connections, our session ended by
/// a time-out), as opposed to a statement that failed: the former is
/// answered "unavailable, retry", the latter is a fault.
pub fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(message) => {
            // A connection cut in the middle of a message.
            message.contains("unexpected end") || message.contains("connection")
        }
        sqlx::Error::Database(d) => d.code().is_some_and(|c| is_unavailable_code(&c)),
        _ => false,
    }
}

/// SQLSTATEs meaning the server, not the statement, is the problem.
fn is_unavailable_code(code: &str) -> bool {
    // 08: connection exception; 57P01 admin shutdown, 57P02 crash shutdown,
    // 57P03 cannot connect now, 57P05 idle session timeout; 53300 too many
    // connections; 25P03 idle-in-transaction timeout (our session was ended).
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "57P05" | "53300" | "25P03"
        )
}

/// [`is_unreachable`] for an error of any type: walks the source chain for
/// a `sqlx::Error` (postgres-es boxes pool time-outs and lost connections
/// into `PersistenceError::UnknownError`) or an I/O error.
pub fn is_unreachable_source(e: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(sqlx_error) = err.downcast_ref::<sqlx::Error>()
            && is_unreachable(sqlx_error)
        {
            return true;
        }
        if err.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        current = err.source();
    }
    false
}

static DOWN: AtomicBool = AtomicBool::new(false);
static DOWN_SINCE: Mutex<Option<Instant>> = Mutex::new(None);

/// Record that the database cannot be reached: the first call of an outage
/// logs a warning and sets `ordertrail_database_up` to 0; later calls only
/// count (`ordertrail_database_errors_total`).
pub fn mark_unavailable(error: &dyn std::fmt::Display) {
    metrics::counter!("ordertrail_database_errors_total").increment(1);
    metrics::gauge!("ordertrail_database_up").set(0.0);
    if !DOWN.swap(true, Ordering::Relaxed) {
        if let Ok(mut since) = DOWN_SINCE.lock() {
            *since = Some(Instant::now());
        }
        tracing::warn!(error = %error, "PostgreSQL unavailable; waiting it out with back-off");
    }
}

/// Record that the database answered: the first call after an outage logs
/// how long it lasted and sets `ordertrail_database_up` to 1.
pub fn mark_available() {
    if DOWN.swap(false, Ordering::Relaxed) {
        let lasted = DOWN_SINCE
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .map(|s| s.elapsed().as_secs_f64());
        tracing::info!(down_for_s = lasted, "PostgreSQL reachable again");
    }
    metrics::gauge!("ordertrail_database_up").set(1.0);
}

/// Whether this process last saw the database unavailable.
pub fn is_marked_unavailable() -> bool {
    DOWN.load(Ordering::Relaxed)
}

/// Apply pending migrations (idempotent; safe for concurrent starters since
/// sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// [`migrate`] for a service: a database outage while migrating is waited
/// out like any other.
pub async fn migrate_service(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut attempt = 0u32;
    loop {
        match MIGRATOR.run(pool).await {
            Err(sqlx::migrate::MigrateError::Execute(e)) if is_unreachable(&e) => {
                mark_unavailable(&e);
                attempt = attempt.saturating_add(1);
                CONNECT_BACKOFF.sleep(attempt).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] Box<dyn StdError + Send + Sync>);

    #[test]
    fn outages_are_told_from_faults_through_wrappers() {
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
        for code in ["57P01", "57P02", "57P03", "08006", "53300", "25P03"] {
            assert!(is_unavailable_code(code), "{code}");
        }
        assert!(!is_unavailable_code("23505"));
        assert!(!is_unavailable_code("42P01"));
        let wrapped = Wrapped(Box::new(sqlx::Error::PoolTimedOut));
        assert!(is_unreachable_source(&wrapped));
        let fault = Wrapped(Box::new(sqlx::Error::RowNotFound));
        assert!(!is_unreachable_source(&fault));
    }
}
