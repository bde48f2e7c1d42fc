//! The one consumer runtime: the saga and every projector read events
//! through it (DESIGN.md, "Consumers").
//!
//! Two sources behind one interface:
//!
//! - **the event store**, read in commit order ([`crate::event_log`]): catch-up
//!   at start, rebuilds, and recovery whenever Kafka cannot be trusted;
//! - **Kafka** (live, scale-out): a consumer group whose positions live in
//!   PostgreSQL (`projector_offsets`), never in Kafka.
//!
//! A consumer first catches up from the store (from `consumers.store_*`),
//! then follows Kafka. The per-aggregate sequence guard
//! (`projector_sequences`) makes the hand-over exact: an event already applied
//! has no effect, and an event that arrives after a gap has the missing
//! events of its aggregate read from the store and applied first.
//!
//! - A projector ([`Handler::apply`]) applies a batch, its positions and its
//!   sequence guard in ONE transaction, so a crash at any point neither loses
//!   nor doubles an effect.
//! - A handler with effects outside the database ([`Handler::act`], the saga)
//!   acts first (its commands carry deterministic ids, so acting twice is
//!   harmless) and then records positions and guard.
//! - Kafka positions carry the broker cluster they point into
//!   (`consumers.kafka_cluster`). Positions of another cluster, or offsets
//!   beyond a partition's end (a topic deleted and recreated, a broker that
//!   lost data), are dropped and the consumer recovers from the store before
//!   following Kafka again. It never skips.
//! - While following Kafka a fence advances the store position over every
//!   event the guard shows applied, so a restart or a recovery only re-reads
//!   what may be missing, and lag is measured against the store's head.
//! - An event that cannot be applied is never skipped: the consumer stays
//!   up, shows as `stalled` naming the event (`consumer_instances`, metrics,
//!   an error log line) and retries periodically. A database outage is
//!   waited out with back-off; the process does not exit.

mod batch;
mod checkpoint;
mod instances;
mod kafka;
pub mod replay;
mod store;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ordertrail_schemas::{AggregateKind, EventEnvelope};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use uuid::Uuid;

use crate::event_log::Position;
use crate::retry::Backoff;

pub use checkpoint::{GUARD_PRUNE_CHUNK, StoredPosition, prune_guards};
pub use instances::ConsumerState;
pub use store::{StorePosition, lag, reset_kafka_positions, store_position};

/// What a rebuild's bulk fill knows across its batches
/// ([`Handler::apply_bulk`]): the keys of the rows it has written so far,
/// per shadow table. The fill is the only writer of its shadow, which starts
/// empty, so a key not recorded here is not in the table: there is nothing
/// to load for it, and its row is new (it can be copied, not upserted).
/// Keys are recorded as batches are applied; a batch that fails ends the
/// bulk fill, and nothing reads this afterwards.
#[derive(Debug, Default)]
pub struct Written {
    tables: std::collections::HashMap<&'static str, std::collections::HashSet<Uuid>>,
}

impl Written {
    /// Whether `table` holds a row with `key`.
    pub fn holds(&self, table: &str, key: &Uuid) -> bool {
        self.tables
            .get(table)
            .is_some_and(|keys| keys.contains(key))
    }

    /// Record that `table` holds a row with `key`; false if it already did.
    pub fn record(&mut self, table: &'static str, key: Uuid) -> bool {
        self.tables.entry(table).or_default().insert(key)
    }
}

/// What reads events through the runtime: a projector or the saga.
pub trait Handler: Send + Sync + 'static {
    /// Stable name: the key of its positions, guard and status, and its
    /// metrics label.
    fn name(&self) -> &'static str;

    /// The aggregate types (topics) it consumes.
    fn sources(&self) -> &'static [AggregateKind];

    /// The read-model tables it owns (rebuilt and verified by
    /// [`replay`]); none for a handler without a read model.
    fn tables(&self) -> &'static [ReadModelTable] {
        &[]
    }

    /// Tables among [`Handler::tables`] whose keys (primary key, unique
    /// constraints) a rebuild may build after its bulk fill, in one pass,
    /// instead of maintaining them row by row: tables that
    /// [`Handler::apply_bulk`] only inserts into without conflicts (e.g. by
    /// `COPY`) and never reads. None by default.
    fn keyed_after_fill(&self) -> &'static [&'static str] {
        &[]
    }

    /// Apply a batch of new events (duplicates removed, gaps filled from the
    /// store, in order per aggregate) inside the runtime's transaction.
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        batch: &'a [SourcedEvent],
    ) -> impl Future<Output = Result<(), ApplyError>> + Send + 'a;

    /// Apply a batch during a rebuild's bulk fill ([`replay`]): the same
    /// events→rows logic as [`Handler::apply`], into shadow tables that only
    /// this fill writes, read from the store's start, so every event is new
    /// and comes once, in order per aggregate. A handler may store its rows
    /// more cheaply on that promise (e.g. `COPY` into insert-only tables);
    /// anything it cannot apply this way is an error, and the rebuild falls
    /// back to [`Handler::apply`] under the guard. `written` lasts for the
    /// whole fill: the keys of the rows this fill has written so far, per
    /// table ([`Written`]). By default: `apply`.
    fn apply_bulk<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        batch: &'a [SourcedEvent],
        written: &'a mut Written,
    ) -> impl Future<Output = Result<(), ApplyError>> + Send + 'a {
        let _ = written;
        self.apply(tx, batch)
    }

    /// Act on a batch outside any transaction, before its positions are
    /// recorded (effects elsewhere, idempotent by construction). Only called
    /// when [`Handler::ACTS`] is true.
    fn act<'a>(
        &'a self,
        _batch: &'a [SourcedEvent],
    ) -> impl Future<Output = Result<(), ApplyError>> + Send + 'a {
        async { Ok(()) }
    }

    /// Whether the handler acts outside the transaction ([`Handler::act`]).
    const ACTS: bool = false;

    /// Periodic work between batches (the saga's timers), every
    /// [`RuntimeConfig::tick`].
    fn tick(&self) -> impl Future<Output = Result<(), ApplyError>> + Send + '_ {
        async { Ok(()) }
    }
}

/// A table of a read model and the columns that record processing time
/// (not derived from events), which verify does not compare.
#[derive(Debug, Clone, Copy)]
pub struct ReadModelTable {
    pub name: &'static str,
    pub processing_time_columns: &'static [&'static str],
}

impl ReadModelTable {
    /// A table whose every column is derived from events.
    pub const fn derived(name: &'static str) -> Self {
        Self {
            name,
            processing_time_columns: &[],
        }
    }
}

/// Where an event was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The event store, at this commit-order position.
    Store(Position),
    /// A Kafka topic partition and offset.
    Kafka {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Store(p) => write!(f, "store position {p}"),
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => write!(f, "topic {topic} partition {partition} offset {offset}"),
        }
    }
}

/// An event together with where it was read from.
#[derive(Debug, Clone)]
pub struct SourcedEvent {
    pub origin: Origin,
    pub envelope: EventEnvelope,
}

impl SourcedEvent {
    /// Which event this is and where it was read, for errors and status.
    pub fn at(&self) -> EventRef {
        EventRef {
            origin: self.origin.to_string(),
            event_id: Some(self.envelope.event_id),
            event_type: Some(self.envelope.event_type.clone()),
            aggregate_type: Some(self.envelope.aggregate_type.as_str().to_owned()),
            aggregate_id: Some(self.envelope.aggregate_id.clone()),
            sequence: Some(self.envelope.sequence),
        }
    }

    /// The event, decoded and checked against the known types and versions
    /// ([`ordertrail_schemas::EventEnvelope::event`]), or the rejection
    /// naming the event that could not be decoded.
    pub fn event(&self) -> Result<ordertrail_schemas::events::Event, ApplyError> {
        self.envelope
            .event()
            .map_err(|e| self.reject(e.to_string()))
    }

    /// The event as one aggregate's events (`OrderEvent`, `PaymentEvent`,
    /// `DeliveryEvent`), through the same typed decode as [`Self::event`];
    /// an event of another aggregate is a rejection.
    pub fn decode<E: TryFrom<ordertrail_schemas::events::Event>>(&self) -> Result<E, ApplyError> {
        E::try_from(self.event()?).map_err(|_| {
            self.reject(format!(
                "a {} event where another aggregate's was expected",
                self.envelope.aggregate_type.as_str()
            ))
        })
    }

    /// An invariant of the read model does not hold for this event.
    pub fn reject(&self, reason: impl Into<String>) -> ApplyError {
        ApplyError::Rejected {
            event: Box::new(self.at()),
            reason: reason.into(),
        }
    }
}

/// Which event, and where it was read, as far as known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRef {
    pub origin: String,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub sequence: Option<i64>,
}

impl EventRef {
    fn at(origin: &Origin) -> Self {
        EventRef {
            origin: origin.to_string(),
            event_id: None,
            event_type: None,
            aggregate_type: None,
            aggregate_id: None,
            sequence: None,
        }
    }
}

impl fmt::Display for EventRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(id) = self.event_id {
            write!(f, " event_id {id}")?;
        }
        if let Some(t) = &self.event_type {
            write!(f, " ({t}")?;
            if let Some(a) = &self.aggregate_id {
                write!(f, " of {a}")?;
            }
            if let Some(s) = self.sequence {
                write!(f, " #{s}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why a handler could not apply a batch.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event cannot be applied: unknown type, undecodable, or an
    /// invariant does not hold. The consumer stalls on it; it never skips.
    #[error("cannot apply event at {event}: {reason}")]
    Rejected {
        event: Box<EventRef>,
        reason: String,
    },
    /// A dependency is unavailable; the batch is tried again after back-off.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Shutdown was requested while the handler waited.
    #[error("stopped")]
    Stopped,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Why the runtime could not start. Once running it never returns an error:
/// failures show in status and metrics while it retries.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("database: {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// How a runtime connects and batches.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Kafka bootstrap servers; without them the consumer follows the store
    /// (polling), which needs no broker at all.
    pub brokers: Option<String>,
    /// Topic prefix (`<prefix>.orders`, ...).
    pub topic_prefix: String,
    /// Consumer group id; instances with the same id split the partitions.
    pub group_id: String,
    /// Most Kafka events applied in one transaction.
    pub batch_size: usize,
    /// Most store events applied in one transaction (catch-up).
    pub store_batch_size: usize,
    /// How long to keep filling a Kafka batch after its first message.
    pub batch_wait: Duration,
    /// librdkafka `fetch.wait.max.ms` (see [`crate::kafka::DEFAULT_FETCH_WAIT`]).
    pub fetch_wait: Duration,
    /// This instance's name, stored with its positions and its status:
    /// host, process id and a random suffix.
    pub instance: String,
    /// How often the instance writes its heartbeat.
    pub heartbeat: Duration,
    /// How often, while following Kafka, the store position is advanced over
    /// applied events (and lag measured).
    pub fence: Duration,
    /// How often [`Handler::tick`] runs.
    pub tick: Duration,
    /// How long a stalled consumer waits before trying its event again.
    pub stall_retry: Duration,
    /// Longest back-off after a failure (database or broker down).
    pub max_backoff: Duration,
    /// How often the store is polled when following it without Kafka.
    pub store_poll: Duration,
}

/// `host:pid:suffix`, unique even for several instances in one process.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    let suffix = Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}

impl RuntimeConfig {
    /// Defaults for a consumer of the broker at `brokers`.
    pub fn new(
        brokers: impl Into<String>,
        topic_prefix: impl Into<String>,
        group_id: impl Into<String>,
    ) -> Self {
        let mut config = Self::store_only(group_id);
        config.brokers = Some(brokers.into());
        config.topic_prefix = topic_prefix.into();
        config
    }

    /// Defaults for a consumer that follows the store only.
    pub fn store_only(group_id: impl Into<String>) -> Self {
        Self {
            brokers: None,
            topic_prefix: ordertrail_schemas::topics::DEFAULT_PREFIX.to_owned(),
            group_id: group_id.into(),
            batch_size: 2_000,
            store_batch_size: 5_000,
            batch_wait: Duration::from_millis(10),
            fetch_wait: crate::kafka::DEFAULT_FETCH_WAIT,
            instance: instance_name(),
            heartbeat: Duration::from_secs(2),
            fence: Duration::from_secs(1),
            tick: Duration::from_secs(1),
            stall_retry: Duration::from_secs(30),
            max_backoff: Duration::from_secs(10),
            store_poll: Duration::from_millis(100),
        }
    }
}

/// The runtime's own pool to the same database, planning every statement
/// for the tables as they are now. Read models start empty and grow fast (a
/// new deployment, a rebuild, a backlog), and a generic plan cached while a
/// table was tiny keeps sequentially scanning it until the next ANALYZE.
/// Custom plans are estimated from the table's current size; planning these
/// statements costs far less than one such scan.
pub fn custom_plans(pool: &PgPool) -> PgPool {
    crate::db::pool_options(pool.options().get_max_connections()).connect_lazy_with(
        (*pool.connect_options())
            .clone()
            .options([("plan_cache_mode", "force_custom_plan")]),
    )
}

/// What one pass over the sources ended with.
enum Pass {
    /// Shutdown requested.
    Stopped,
    /// Kafka cannot be trusted (another cluster, offsets beyond the end):
    /// catch up from the store again, then follow Kafka afresh.
    Recover(String),
}

/// A failure of one pass.
#[derive(Debug)]
enum Failure {
    /// An event cannot be applied; `batch` events were in the failed batch.
    Stalled {
        event: Box<EventRef>,
        reason: String,
    },
    /// A batch of several events failed on a data error: try again one
    /// event at a time to name the event.
    Narrow { reason: String },
    /// Something is down or failing; back off and try again.
    Unavailable(String),
}

/// Whether a database error is about the data of the batch (it will fail
/// the same way again) rather than the database being unavailable.
fn is_data_error(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

/// Turn a handler's error on a batch of `size` events into a failure.
fn failure(error: ApplyError, size: usize) -> Result<Failure, Stop> {
    Ok(match error {
        ApplyError::Rejected { event, reason } => Failure::Stalled { event, reason },
        ApplyError::Stopped => return Err(Stop),
        ApplyError::Unavailable(reason) => Failure::Unavailable(reason),
        ApplyError::Database(e) if is_data_error(&e) && size > 1 => Failure::Narrow {
            reason: e.to_string(),
        },
        ApplyError::Database(e) => Failure::Unavailable(format!("database: {e}")),
    })
}

/// Shutdown was requested.
#[derive(Debug)]
struct Stop;

/// Completes when shutdown is requested.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleep for `d` unless shutdown is requested first (then `Err(Stop)`).
async fn pause(stop: &watch::Receiver<bool>, d: Duration) -> Result<(), Stop> {
    let mut stop = stop.clone();
    tokio::select! {
        () = stopping(&mut stop) => Err(Stop),
        () = tokio::time::sleep(d) => Ok(()),
    }
}

/// Shared state of one running consumer.
struct Context<'h, H> {
    handler: &'h H,
    config: RuntimeConfig,
    pool: PgPool,
    status: instances::Status,
    stop: watch::Receiver<bool>,
    /// Store events to apply one per batch (after a data error, to name the
    /// event that causes it).
    narrow: usize,
    types: Vec<&'static str>,
}

/// Run `handler` until `shutdown` completes. Failures never end it: a
/// database or broker outage is waited out, an event that cannot be applied
/// stalls the consumer (visibly) until it can be.
pub async fn run<H: Handler>(
    handler: H,
    config: RuntimeConfig,
    pool: PgPool,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RuntimeError> {
    let pool = custom_plans(&pool);
    let name = handler.name();
    let (stop_tx, stop) = watch::channel(false);
    let status = instances::Status::new(name, &config.instance);
    let heartbeat = tokio::spawn(instances::heartbeat(
        pool.clone(),
        status.clone(),
        config.heartbeat,
        stop.clone(),
    ));
    let mut cx = Context {
        handler: &handler,
        types: handler.sources().iter().map(|k| k.as_str()).collect(),
        config,
        pool,
        status,
        stop,
        narrow: 0,
    };
    tracing::info!(consumer = name, instance = %cx.config.instance, "consumer started");
    tokio::pin!(shutdown);
    let work = async {
        let mut attempt = 0u32;
        loop {
            let result = match pass(&mut cx).await {
                Ok(result) => result,
                Err(Stop) => break,
            };
            match result {
                Ok(Pass::Stopped) => break,
                Ok(Pass::Recover(reason)) => {
                    attempt = 0;
                    tracing::warn!(consumer = name, %reason, "recovering from the event store");
                    cx.status.set(ConsumerState::Recovering);
                }
                Err(Failure::Stalled { event, reason }) => {
                    tracing::error!(
                        consumer = name,
                        event_id = ?event.event_id,
                        at = %event,
                        %reason,
                        "consumer stalled: cannot apply an event; it is not skipped, retrying in {:?}",
                        cx.config.stall_retry
                    );
                    metrics::counter!("consumer_stalls_total", "consumer" => name).increment(1);
                    cx.status.stalled(&event, &reason);
                    if pause(&cx.stop, cx.config.stall_retry).await.is_err() {
                        break;
                    }
                    cx.narrow = cx.config.store_batch_size;
                }
                Err(Failure::Narrow { reason }) => {
                    tracing::warn!(consumer = name, %reason, "a batch failed on its data; applying one event at a time to find it");
                    cx.status.error(&reason);
                    cx.narrow = cx.config.store_batch_size;
                }
                Err(Failure::Unavailable(reason)) => {
                    let wait = Backoff::database(cx.config.max_backoff).delay(attempt);
                    attempt = attempt.saturating_add(1);
                    if attempt == 1 {
                        tracing::warn!(consumer = name, %reason, "consumer cannot make progress; retrying with back-off");
                    }
                    if reason.starts_with("database") {
                        crate::db::mark_unavailable(&reason);
                    }
                    cx.status.error(&reason);
                    if pause(&cx.stop, wait).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = &mut shutdown => {}
    }
    let _ = stop_tx.send(true);
    cx.status.set(ConsumerState::Stopped);
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), heartbeat).await {
        tracing::debug!(consumer = name, error = %e, "heartbeat task ended abnormally");
    }
    tracing::info!(consumer = name, "consumer stopped");
    Ok(())
}

/// One pass: catch up from the store, then follow Kafka (or the store).
async fn pass<H: Handler>(cx: &mut Context<'_, H>) -> Result<Result<Pass, Failure>, Stop> {
    if let Err(e) = store::ensure_consumer(&cx.pool, cx.handler.name()).await {
        return Ok(Err(Failure::Unavailable(format!("database: {e}"))));
    }
    cx.status.set(ConsumerState::CatchingUp);
    if let Err(f) = store::catch_up(cx, None).await? {
        return Ok(Err(f));
    }
    cx.status.set(ConsumerState::Following);
    match cx.config.brokers.clone() {
        Some(brokers) => kafka::follow(cx, &brokers).await,
        None => store::follow(cx).await,
    }
}

/// Run the handler's periodic work, mapping its failure.
async fn tick<H: Handler>(cx: &Context<'_, H>) -> Result<Result<(), Failure>, Stop> {
    match cx.handler.tick().await {
        Ok(()) => Ok(Ok(())),
        Err(e) => failure(e, 1).map(Err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bulk fill loads only keys it wrote, per table, and copies the rest.
    #[test]
    fn written_keys_are_remembered_per_table() {
        let mut written = Written::default();
        let key = Uuid::new_v4();
        assert!(!written.holds("order_history", &key));
        assert!(written.record("order_history", key));
        assert!(written.holds("order_history", &key));
        assert!(!written.holds("order_history_payments", &key));
        assert!(!written.record("order_history", key), "recorded once");
    }
}
