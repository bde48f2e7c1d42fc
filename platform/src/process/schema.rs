//! The schema-version check every service runs at start instead of
//! migrating: the versions recorded in `_sqlx_migrations` against the
//! migrations embedded in this build ([`crate::db::MIGRATOR`]).
//!
//! A database *ahead* of the build (migrations added by a newer release) is
//! current: migrations only add, so an older binary keeps working during a
//! rolling upgrade. A database *behind* it is waited for
//! ([`wait_until_current`]): the gauge `ordertrail_schema_current` is 0, a
//! warning names the first missing migration, and the process goes on only
//! once the migrate job has run.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use sqlx::PgPool;

use crate::db::{self, MIGRATOR};
use crate::retry::Backoff;

/// Pauses between two looks at a schema that is behind: from 200 ms, at most 5 s.
pub const SCHEMA_BACKOFF: Backoff = Backoff::database(Duration::from_secs(5));

/// One migration of this build that the database has not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingMigration {
    /// Its version (the number in `migrations/NNNN_*.sql`).
    pub version: i64,
    /// Its description (the rest of the file name).
    pub description: String,
}

impl fmt::Display for MissingMigration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04} {}", self.version, self.description)
    }
}

/// The database's schema against this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// Every migration of this build is applied (the database may have more).
    Current,
    /// These migrations of this build are not applied, lowest first.
    Behind(Vec<MissingMigration>),
}

/// A schema behind this build, as an error (command-line tools refuse it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the database schema is behind this build: migration {} is not applied ({} missing); run the migrate job (`ordertrail-api --migrate-only`) or the launcher first",
    .missing.first().map(ToString::to_string).unwrap_or_default(),
    .missing.len()
)]
pub struct SchemaBehind {
    /// The migrations not applied, lowest first.
    pub missing: Vec<MissingMigration>,
}

impl SchemaStatus {
    /// `Ok` when current, else the [`SchemaBehind`] error.
    pub fn into_result(self) -> Result<(), SchemaBehind> {
        match self {
            SchemaStatus::Current => Ok(()),
            SchemaStatus::Behind(missing) => Err(SchemaBehind { missing }),
        }
    }
}

/// Compare `_sqlx_migrations` (successful rows) with this build's migrations.
/// A database without the table has applied nothing.
pub async fn check(pool: &PgPool) -> Result<SchemaStatus, sqlx::Error> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(versions) => versions,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e),
        };
    let applied: HashSet<i64> = applied.into_iter().collect();
    let mut missing: Vec<MissingMigration> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| MissingMigration {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect();
    missing.sort_by_key(|m| m.version);
    Ok(if missing.is_empty() {
        SchemaStatus::Current
    } else {
        SchemaStatus::Behind(missing)
    })
}

/// Wait until the schema is current: while it is behind, the gauge
/// `ordertrail_schema_current` is 0 and a warning names the first missing
/// migration (again whenever that changes); a database outage meanwhile is
/// waited out like any other. Only a fault (a statement that fails for
/// another reason) ends it early.
pub async fn wait_until_current(pool: &PgPool) -> Result<(), sqlx::Error> {
    wait_until_current_reporting(pool, |_| {}).await
}

/// [`wait_until_current`], calling `on_behind` with what is missing each
/// time it looks and finds the schema behind (tests watch it).
pub async fn wait_until_current_reporting(
    pool: &PgPool,
    mut on_behind: impl FnMut(&SchemaBehind),
) -> Result<(), sqlx::Error> {
    let mut attempt = 0u32;
    let mut reported: Option<i64> = None;
    loop {
        match check(pool).await {
            Ok(SchemaStatus::Current) => {
                metrics::gauge!("ordertrail_schema_current").set(1.0);
                if reported.is_some() {
                    tracing::info!("database schema is current; starting");
                }
                return Ok(());
            }
            Ok(SchemaStatus::Behind(missing)) => {
                metrics::gauge!("ordertrail_schema_current").set(0.0);
                let first = missing.first().map(|m| m.version);
                let error = SchemaBehind { missing };
                on_behind(&error);
                if first != reported {
                    reported = first;
                    tracing::warn!(
                        missing_version = first,
                        "not ready: {error}; waiting for it (this process never migrates)"
                    );
                }
            }
            Err(e) if db::is_unreachable(&e) => db::mark_unavailable(&e),
            Err(e) => return Err(e),
        }
        SCHEMA_BACKOFF.sleep(attempt).await;
        attempt = attempt.saturating_add(1);
    }
}
