//! The PostgreSQL pool and the project's migrations.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

/// All migrations under `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A connection idle for longer than this is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

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

/// Connect a pool of at most `max_connections`, waiting up to 30 s for the
/// server to come up (start-up ordering in compose or the local launcher).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = pool_options(max_connections);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match options.clone().connect(url).await {
            Ok(pool) => return Ok(pool),
            Err(e) if tokio::time::Instant::now() < deadline && is_transient(&e) => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the database could not be reached (connection lost, pool
/// exhausted or closed, TLS failure), as opposed to a statement that failed:
/// the former is answered "unavailable, retry", the latter is a fault.
pub fn is_unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    )
}

fn is_transient(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        || e.as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "57P03")
}

/// Apply pending migrations (idempotent; safe for concurrent starters since
/// sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
