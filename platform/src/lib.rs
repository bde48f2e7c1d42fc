//! Process plumbing shared by every Ordertrail binary (API, relay, saga,
//! projectors): one telemetry builder, the Prometheus metrics endpoint, the
//! database pool with the project's migrations, and the shutdown signal.
//!
//! Also the commit-order reader of the event store ([`event_log`]) shared by the
//! relay and replay.
//!
//! Holds no business logic; may depend on tokio, sqlx, serde_json, chrono, uuid,
//! tracing and metrics only.

pub mod db;
pub mod event_log;
pub mod shutdown;
pub mod telemetry;
