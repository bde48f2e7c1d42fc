//! Process plumbing shared by every Ordertrail binary (API, relay, saga,
//! projectors, tools): the process skeleton ([`process`]: shared argument
//! groups and environment names, start-up, the migration policy and schema
//! check), one telemetry builder, the Prometheus metrics endpoint, the
//! database pool with the project's migrations, the one retry/back-off
//! policy ([`retry`]), the shared Kafka consumer settings, and the shutdown
//! signal.
//!
//! Also the commit-order reader of the event store ([`event_log`]) shared by the
//! relay and replay, and the one consumer runtime ([`consumer`]) that feeds
//! the saga and every projector from the store and from Kafka.
//!
//! Holds no business logic; may depend on `schemas` (the wire contract),
//! tokio, sqlx, rdkafka, serde, chrono, uuid, tracing, metrics, clap and
//! rand only.

pub mod consumer;
pub mod db;
pub mod event_log;
pub mod kafka;
pub mod process;
pub mod retry;
pub mod shutdown;
pub mod telemetry;

/// Every Ordertrail process allocates through mimalloc. Profiles of the API
/// under load showed glibc malloc/free/consolidate at about a fifth of its
/// CPU: requests allocate and free many small JSON and row buffers across
/// worker threads, which mimalloc's per-thread free lists handle in a
/// fraction of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
