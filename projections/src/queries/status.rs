//! The state and lag of every consumer: the three projectors and the saga.
//!
//! Lag is measured against the event store's readable head, not against a
//! consumer's own Kafka watermark: events after the consumer's store position
//! whose sequence its guard does not cover yet. A consumer reading a broker
//! that lost events, or one that is stopped, therefore shows behind, never
//! `0 behind`.

use chrono::{DateTime, Utc};
use ordertrail_schemas::AggregateKind;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::QueryError;
use crate::runtime::Projector;

/// An instance silent for longer than this is not running.
const ALIVE_SECS: f64 = 15.0;

/// One running (or recently running) process of a consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsumerProcess {
    /// `host:pid:suffix`.
    pub instance: String,
    /// `starting`, `catching_up`, `following`, `recovering`, `stalled`, `stopped`.
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_seconds: f64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// The event it is stalled on: id, type, aggregate, sequence, where it was
    /// read and why it cannot be applied.
    #[schema(value_type = Option<Object>)]
    pub stalled_event: Option<serde_json::Value>,
}

/// One consumer's state and lag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectorStatus {
    /// Projector name, or `saga`.
    pub projector: String,
    /// `following` (up to date, reading Kafka or the store), `catching_up`,
    /// `recovering`, `stalled` (stopped on an event it cannot apply, named in
    /// `stalled_event`), `stopped` (no live instance) or `not_started`.
    pub state: String,
    /// Events in the store it has not applied yet (counted up to a million).
    pub events_behind: i64,
    /// Age of the oldest of them, 0 when none.
    pub seconds_behind: f64,
    /// Seconds since the freshest heartbeat of any of its instances.
    pub heartbeat_age_seconds: Option<f64>,
    /// The newest error any instance reported.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub stalled_event: Option<serde_json::Value>,
    /// Kafka partitions it has positions for (0 before its first batch).
    pub partitions: i64,
    /// Events applied through Kafka.
    pub events_applied: i64,
    /// Messages between its Kafka positions and the high watermarks last seen.
    pub kafka_events_behind: i64,
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// When a batch or a watermark last updated its Kafka positions.
    pub updated_at: Option<DateTime<Utc>>,
    /// The instances that applied the latest batch of its partitions
    /// (`RuntimeConfig::instance`).
    pub instances: Vec<String>,
    /// Its processes, freshest first.
    pub processes: Vec<ConsumerProcess>,
}

/// Every consumer with the aggregate types it reads.
fn consumers() -> Vec<(&'static str, Vec<&'static str>)> {
    fn types(kinds: &[AggregateKind]) -> Vec<&'static str> {
        kinds.iter().map(|k| k.as_str()).collect()
    }
    vec![
        (
            crate::order_history::NAME,
            types(crate::order_history::OrderHistory.sources()),
        ),
        (
            crate::rider_etas::NAME,
            types(crate::rider_etas::RiderEtas::new(Default::default()).sources()),
        ),
        (
            crate::settlements::NAME,
            types(crate::settlements::Settlements.sources()),
        ),
        (
            SAGA,
            types(&[
                AggregateKind::Order,
                AggregateKind::Payment,
                AggregateKind::Delivery,
            ]),
        ),
    ]
}

/// The saga's consumer name (`ordertrail_commands::saga::SAGA_CONSUMER`).
pub const SAGA: &str = "saga";

type OffsetsRow = (
    i64,
    i64,
    i64,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Vec<String>,
);

type ProcessRow = (
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    f64,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<serde_json::Value>,
);

/// Every consumer, also those that have not run yet.
pub async fn projector_status(pool: &PgPool) -> Result<Vec<ProjectorStatus>, QueryError> {
    let mut out = Vec::new();
    for (name, types) in consumers() {
        let (events_behind, seconds_behind) =
            ordertrail_platform::consumer::lag(pool, name, &types).await?;
        let offsets: OffsetsRow = sqlx::query_as(
            "SELECT count(*)::bigint, coalesce(sum(events_applied), 0)::bigint,
                    coalesce(sum(greatest(high_watermark - next_offset, 0)), 0)::bigint,
                    max(last_recorded_at), max(updated_at),
                    coalesce(array_remove(array_agg(DISTINCT instance), NULL), '{}')
             FROM projector_offsets WHERE projector = $1",
        )
        .bind(name)
        .fetch_one(pool)
        .await?;
        let rows: Vec<ProcessRow> = sqlx::query_as(
            "SELECT instance, state, started_at, heartbeat_at,
                    extract(epoch FROM now() - heartbeat_at)::float8,
                    last_error, last_error_at, stalled_event
             FROM consumer_instances WHERE consumer = $1
             ORDER BY heartbeat_at DESC LIMIT 20",
        )
        .bind(name)
        .fetch_all(pool)
        .await?;
        let processes: Vec<ConsumerProcess> = rows
            .into_iter()
            .map(
                |(
                    instance,
                    state,
                    started_at,
                    heartbeat_at,
                    age,
                    last_error,
                    last_error_at,
                    stalled_event,
                )| {
                    ConsumerProcess {
                        instance,
                        state,
                        started_at,
                        heartbeat_at,
                        heartbeat_age_seconds: age.max(0.0),
                        last_error,
                        last_error_at,
                        stalled_event,
                    }
                },
            )
            .collect();
        let alive: Vec<&ConsumerProcess> = processes
            .iter()
            .filter(|p| p.heartbeat_age_seconds <= ALIVE_SECS && p.state != "stopped")
            .collect();
        let state = if processes.is_empty() {
            "not_started"
        } else if alive.is_empty() {
            "stopped"
        } else {
            [
                "stalled",
                "recovering",
                "catching_up",
                "starting",
                "following",
            ]
            .into_iter()
            .find(|s| alive.iter().any(|p| p.state == *s))
            .unwrap_or("following")
        };
        let stalled_event = alive
            .iter()
            .find(|p| p.state == "stalled")
            .and_then(|p| p.stalled_event.clone());
        let newest_error = processes
            .iter()
            .filter(|p| p.last_error_at.is_some())
            .max_by_key(|p| p.last_error_at);
        out.push(ProjectorStatus {
            projector: name.to_owned(),
            state: state.to_owned(),
            events_behind,
            seconds_behind,
            heartbeat_age_seconds: processes.first().map(|p| p.heartbeat_age_seconds),
            last_error: newest_error.and_then(|p| p.last_error.clone()),
            last_error_at: newest_error.and_then(|p| p.last_error_at),
            stalled_event,
            partitions: offsets.0,
            events_applied: offsets.1,
            kafka_events_behind: offsets.2,
            last_recorded_at: offsets.3,
            updated_at: offsets.4,
            instances: offsets.5,
            processes,
        });
    }
    Ok(out)
}
