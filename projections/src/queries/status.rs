//! Lag of every projector.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::QueryError;

/// One projector's position and lag, summed over its partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct ProjectorStatus {
    pub projector: String,
    /// Partitions it has positions for (0 before its first batch).
    pub partitions: i64,
    pub events_applied: i64,
    /// Messages between its positions and the high watermarks last seen.
    pub events_behind: i64,
    /// now − recorded_at of the last event applied, when behind; else 0.
    pub seconds_behind: f64,
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// When a batch or a watermark last updated its positions.
    pub updated_at: Option<DateTime<Utc>>,
    /// The instances that applied the latest batch of its partitions
    /// (`RuntimeConfig::instance`); an idle partition keeps the name of
    /// whoever applied it last.
    pub instances: Vec<String>,
}

/// Every known projector, also those that have not applied anything yet.
pub async fn projector_status(pool: &PgPool) -> Result<Vec<ProjectorStatus>, QueryError> {
    let known: Vec<&str> = crate::PROJECTORS.to_vec();
    Ok(sqlx::query_as(
        "SELECT n.projector, coalesce(s.partitions, 0) AS partitions,
                coalesce(s.events_applied, 0) AS events_applied,
                coalesce(s.events_behind, 0) AS events_behind,
                coalesce(s.seconds_behind, 0) AS seconds_behind,
                s.last_recorded_at, s.updated_at,
                coalesce(s.instances, '{}') AS instances
         FROM (SELECT unnest($1::text[]) AS projector
               UNION SELECT projector FROM projector_status) n
         LEFT JOIN projector_status s ON s.projector = n.projector
         ORDER BY n.projector",
    )
    .bind(&known)
    .fetch_all(pool)
    .await?)
}
