//! The relay: publishes the event store on Kafka (DESIGN.md, "Kafka").
//!
//! - Reads `events` in commit order with [`ordertrail_platform::event_log`] and
//!   produces each event to its aggregate type's topic, key = aggregate id,
//!   value = the JSON [`ordertrail_schemas::EventEnvelope`] (payload upcast to
//!   the current version), the same facts in headers.
//! - Idempotent producer, `acks=all`. The checkpoint (`relay_checkpoints`)
//!   advances only after every delivery report of a batch was positive, so a
//!   crash republishes at most the unacknowledged batch and skips nothing.
//! - Broker down: the store is the outbox; the relay keeps its position, backs
//!   off, logs once per outage and catches up in order.
//! - One active relay per name: a PostgreSQL session advisory lock held on a
//!   dedicated connection, which also reads the events and writes the
//!   checkpoint. Standbys try the lock every `standby_interval`; PostgreSQL
//!   frees it the moment the active process's connection closes.
//! - Failover within seconds (DESIGN.md, issue 12): the lock session asks the
//!   server for TCP keepalives and `tcp_user_timeout`, so a half-open
//!   connection of a vanished active relay is dropped (and its lock freed)
//!   in about [`LOCK_SESSION_DEAD_AFTER`]; every statement on the lock
//!   connection is bounded by `db_timeout`; and the active relay holds a
//!   *lease*: when it cannot publish for `publish_lease` (broker unreachable
//!   from here, topics unconfirmed), it purges its producer and closes the
//!   lock session, so a standby that can reach Kafka takes over. It never
//!   publishes after giving the lock up, so two relays never publish at once.
//! - Long transactions: reading below the oldest open transaction means one
//!   idle `BEGIN` anywhere on the server holds publishing back. The lag
//!   metric counts every committed event not yet published (also those held
//!   back), and a metric plus a warning name the transaction holding it back
//!   (pid, age, database).
//! - Wakes on `NOTIFY ordertrail_events` (a hint only) and polls as a fallback.

pub mod checkpoint;
pub mod publisher;
pub mod topics;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordertrail_platform::event_log::{self, Position, StoredEvent};
use ordertrail_platform::retry::Backoff;
use ordertrail_schemas::topics::all_topics;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use publisher::RelayClientContext;

/// The channel the `events` trigger notifies on (migration 0003).
pub const NOTIFY_CHANNEL: &str = "ordertrail_events";

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topics are `<prefix>.orders`, `.payments`, `.deliveries`.
    pub topic_prefix: String,
    /// Partitions of each topic the relay creates.
    pub topic_partitions: i32,
    /// Replication factor of each topic the relay creates; -1 = broker default.
    pub topic_replication_factor: i32,
    /// At most this many events per batch (one checkpoint write per batch).
    pub batch_size: usize,
    /// Checkpoint and lock name; defaults to the topic prefix.
    pub relay_name: Option<String>,
    /// Polling fallback when no notification arrives.
    pub poll_interval: Duration,
    /// Once caught up, at least this long between reads of the store. At a
    /// thousand single-event commits per second a read per notification would
    /// cost the database more than the commits; this bounds reads to
    /// `1 / min_read_interval` per second and adds at most that much lag.
    pub min_read_interval: Duration,
    /// How soon to read again when the last read found nothing while
    /// committed events wait behind an older open transaction.
    pub held_back_recheck: Duration,
    /// How often a standby tries to become active.
    pub standby_interval: Duration,
    /// librdkafka `message.timeout.ms`: how long a batch may wait for the broker
    /// before it counts as failed and is produced again.
    pub delivery_timeout: Duration,
    /// librdkafka `linger.ms`.
    pub linger: Duration,
    /// Longest pause between retries while Kafka or PostgreSQL is down.
    pub max_backoff: Duration,
    /// How often lag is measured and a progress line is logged.
    pub report_interval: Duration,
    /// The active relay's lease: how long it keeps the lock while it cannot
    /// publish (a batch unacknowledged, topics unconfirmed) before it gives
    /// the lock up for a standby. Plus `standby_interval`, the longest a
    /// standby waits to take over from a relay that lost Kafka.
    pub publish_lease: Duration,
    /// Longest wait for one statement on the lock connection; past it the
    /// connection counts as lost (closing it frees the lock).
    pub db_timeout: Duration,
}

/// The lock session's TCP settings (server side): keepalive probes after 2 s
/// idle, every second, 3 missed probes end the session; unacknowledged data
/// ends it after 5 s. A vanished active relay's lock is freed within about
/// [`LOCK_SESSION_DEAD_AFTER`].
const LOCK_SESSION_TCP: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "2"),
    ("tcp_keepalives_interval", "1"),
    ("tcp_keepalives_count", "3"),
    ("tcp_user_timeout", "5000"),
];

/// See [`LOCK_SESSION_TCP`].
pub const LOCK_SESSION_DEAD_AFTER: Duration = Duration::from_secs(5);

impl RelayConfig {
    pub fn new(brokers: impl Into<String>, topic_prefix: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: topic_prefix.into(),
            topic_partitions: 6,
            topic_replication_factor: -1,
            batch_size: 2_000,
            relay_name: None,
            poll_interval: Duration::from_millis(500),
            min_read_interval: Duration::from_millis(5),
            held_back_recheck: Duration::from_millis(5),
            standby_interval: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(1),
            max_backoff: Duration::from_secs(10),
            report_interval: Duration::from_secs(5),
            publish_lease: Duration::from_secs(6),
            db_timeout: Duration::from_secs(5),
        }
    }

    /// The checkpoint row and advisory-lock name.
    pub fn name(&self) -> &str {
        self.relay_name.as_deref().unwrap_or(&self.topic_prefix)
    }
}

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot create topics {topics:?}: {reason}")]
    Topics { topics: Vec<String>, reason: String },
    /// A statement on the lock connection took longer than `db_timeout`.
    #[error("event store did not answer within {0:?}")]
    DatabaseTimeout(Duration),
    /// The active relay could not publish for `publish_lease` and gave the
    /// lock up for a standby.
    #[error("could not publish for {0:?}; lease given up")]
    LeaseGivenUp(Duration),
    /// A stored event the relay cannot turn into a message. The relay never
    /// skips an event: it stops here until the row or the code is fixed.
    #[error("event {event_id} at {position} cannot be published: {reason}")]
    Unpublishable {
        event_id: Uuid,
        position: Position,
        reason: String,
    },
}

/// Run the relay until `shutdown` completes: stand by until this process holds
/// the relay's lock, then publish. Returns an error only for faults that
/// retrying cannot cure (an unpublishable event, topics that cannot exist);
/// PostgreSQL and Kafka outages are waited out.
pub async fn run(
    config: RelayConfig,
    pool: PgPool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let (stop_tx, stop) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let result = Relay::new(config, pool, stop)?.run().await;
    watcher.abort();
    result
}

struct Relay {
    config: RelayConfig,
    pool: PgPool,
    stop: watch::Receiver<bool>,
    context: RelayClientContext,
    /// Replaced by a fresh producer whenever the lease is given up: an
    /// idempotent producer whose in-flight messages were purged cannot be
    /// trusted to produce again.
    producer: std::sync::Mutex<FutureProducer<RelayClientContext>>,
    topics: Vec<String>,
}

/// The relay's back-off (the platform's database policy: from 200 ms) up to `max`.
fn backoff(attempt: u32, max: Duration) -> Duration {
    Backoff::database(max).delay(attempt)
}

enum Wait {
    Elapsed,
    Stop,
}

impl Relay {
    fn new(
        config: RelayConfig,
        pool: PgPool,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, RelayError> {
        let context = RelayClientContext::default();
        let producer = publisher::producer(
            &config.brokers,
            config.delivery_timeout,
            config.linger,
            context.clone(),
        )?;
        let topics = all_topics(&config.topic_prefix);
        Ok(Self {
            config,
            pool,
            stop,
            context,
            producer: std::sync::Mutex::new(producer),
            topics,
        })
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn sleep(&self, d: Duration) -> Wait {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => Wait::Stop,
            () = tokio::time::sleep(d) => Wait::Elapsed,
        }
    }

    #[tracing::instrument(name = "relay", skip_all, fields(relay = %self.config.name()))]
    async fn run(self) -> Result<(), RelayError> {
        let mut db_failures = 0u32;
        let mut standby: Option<PgConnection> = None;
        loop {
            let Some(mut lock) = self.become_active(&mut db_failures, &mut standby).await else {
                return Ok(());
            };
            metrics::gauge!("ordertrail_relay_active").set(1.0);
            tracing::info!("active: this relay publishes");
            let result = self.publish_loop(&mut lock).await;
            metrics::gauge!("ordertrail_relay_active").set(0.0);
            match result {
                Ok(()) => {
                    // Release the lock at once so a standby takes over now.
                    let _ = tokio::time::timeout(
                        self.config.db_timeout,
                        sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut lock),
                    )
                    .await;
                    tracing::info!("stopped");
                    return Ok(());
                }
                Err(RelayError::LeaseGivenUp(after)) => {
                    // Nothing of ours is queued any more (purged): closing the
                    // session frees the lock for a standby that can publish.
                    drop(lock);
                    metrics::counter!("ordertrail_relay_leases_given_up_total").increment(1);
                    tracing::warn!(
                        cannot_publish_for_s = after.as_secs_f64(),
                        "cannot publish; gave the relay lock up so a standby can take over"
                    );
                    // Leave the standbys time to take the lock before trying again.
                    if let Wait::Stop = self.sleep(self.config.standby_interval * 3).await {
                        return Ok(());
                    }
                }
                Err(e @ (RelayError::Database(_) | RelayError::DatabaseTimeout(_))) => {
                    drop(lock);
                    db_failures += 1;
                    ordertrail_platform::db::mark_unavailable(&e);
                    tracing::warn!(error = %e, "lost the event store connection; standing by again");
                    if let Wait::Stop = self
                        .sleep(backoff(db_failures, self.config.max_backoff))
                        .await
                    {
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "relay stopped");
                    return Err(e);
                }
            }
        }
    }

    /// Wait until this process holds the advisory lock; `None` on shutdown.
    /// A standby keeps one connection and tries the lock on it.
    async fn become_active(
        &self,
        db_failures: &mut u32,
        standby: &mut Option<PgConnection>,
    ) -> Option<PgConnection> {
        let mut announced = false;
        loop {
            if self.stopping() {
                return None;
            }
            match self.try_lock(standby).await {
                Ok(true) => {
                    *db_failures = 0;
                    ordertrail_platform::db::mark_available();
                    return standby.take();
                }
                Ok(false) => {
                    *db_failures = 0;
                    ordertrail_platform::db::mark_available();
                    if !announced {
                        tracing::info!("another relay is active; standing by");
                        announced = true;
                    }
                    if let Wait::Stop = self.sleep(self.config.standby_interval).await {
                        return None;
                    }
                }
                Err(e) => {
                    *standby = None;
                    *db_failures += 1;
                    ordertrail_platform::db::mark_unavailable(&e);
                    if *db_failures == 1 {
                        tracing::warn!(error = %e, "event store unreachable; retrying");
                    }
                    if let Wait::Stop = self
                        .sleep(backoff(*db_failures, self.config.max_backoff))
                        .await
                    {
                        return None;
                    }
                }
            }
        }
    }

    /// Bound a statement on the lock connection by `db_timeout`.
    async fn bounded<T>(
        &self,
        statement: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, RelayError> {
        match tokio::time::timeout(self.config.db_timeout, statement).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RelayError::DatabaseTimeout(self.config.db_timeout)),
        }
    }

    /// Try the relay's session advisory lock on the standby connection
    /// (opened with [`LOCK_SESSION_TCP`] when there is none).
    async fn try_lock(&self, standby: &mut Option<PgConnection>) -> Result<bool, RelayError> {
        let mut conn = match standby.take() {
            Some(conn) => conn,
            None => {
                let options = (*self.pool.connect_options())
                    .clone()
                    .options(LOCK_SESSION_TCP);
                self.bounded(PgConnection::connect_with(&options)).await?
            }
        };
        let locked: bool = self
            .bounded(
                sqlx::query_scalar(
                    "SELECT pg_try_advisory_lock(hashtextextended('ordertrail.relay:' || $1, 0))",
                )
                .bind(self.config.name())
                .fetch_one(&mut conn),
            )
            .await?;
        if locked {
            // Checkpoints are saved on this connection after every batch. A
            // checkpoint lost in a database crash only means republishing
            // acknowledged events (at-least-once allows it), so the relay does
            // not wait for a WAL flush per batch.
            self.bounded(sqlx::query("SET synchronous_commit = off").execute(&mut conn))
                .await?;
        }
        *standby = Some(conn);
        Ok(locked)
    }

    /// Make sure the topics exist. `Ok(false)` on shutdown; gives the lease up
    /// when they cannot be confirmed for `publish_lease`.
    async fn ensure_topics(&self) -> Result<bool, RelayError> {
        let mut attempt = 0;
        let since = Instant::now();
        loop {
            let remaining = self.config.publish_lease.saturating_sub(since.elapsed());
            let ensured = tokio::time::timeout(
                remaining.max(Duration::from_millis(1)),
                topics::ensure(
                    &self.config.brokers,
                    &self.topics,
                    self.config.topic_partitions,
                    self.config.topic_replication_factor,
                    Duration::from_secs(10),
                ),
            )
            .await;
            let failure = match ensured {
                Ok(Ok(_)) => return Ok(true),
                Ok(Err(topics::TopicsFailure::Fatal(e))) => return Err(e),
                Ok(Err(topics::TopicsFailure::Retry(e))) => e.to_string(),
                Err(_) => "the broker did not answer".to_owned(),
            };
            if since.elapsed() >= self.config.publish_lease {
                return Err(RelayError::LeaseGivenUp(since.elapsed()));
            }
            attempt += 1;
            if attempt == 1 {
                tracing::warn!(error = %failure, "cannot make sure the topics exist; retrying");
            }
            if let Wait::Stop = self.sleep(backoff(attempt, self.config.max_backoff)).await {
                return Ok(false);
            }
        }
    }

    /// LISTEN for new events on a connection of its own, in a task that turns
    /// any number of notifications into one stored wake-up: while the relay
    /// reads or publishes, the commits of that time cost one read afterwards,
    /// not one read each. `None`: polling only.
    async fn listen(&self) -> Option<Hints> {
        let listener = async {
            let mut l = PgListener::connect_with(&self.pool).await?;
            l.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match listener.await {
            Ok(mut l) => {
                let wake = Arc::new(Notify::new());
                let forward = Arc::clone(&wake);
                let task = tokio::spawn(async move {
                    let mut failures = 0u32;
                    loop {
                        match l.try_recv().await {
                            Ok(Some(_)) => {
                                failures = 0;
                                forward.notify_one();
                            }
                            // The connection was lost and sqlx reconnects on
                            // the next call; events may have been missed.
                            Ok(None) => forward.notify_one(),
                            Err(e) => {
                                failures += 1;
                                if failures == 1 {
                                    tracing::warn!(error = %e, "LISTEN connection lost; polling until it is back");
                                }
                                tokio::time::sleep(backoff(failures, Duration::from_secs(5))).await;
                            }
                        }
                    }
                });
                Some(Hints { wake, task })
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for new events; polling only");
                None
            }
        }
    }

    /// Wait for a notification, the poll interval or shutdown; then keep at
    /// least `min_read_interval` after the previous read, so a steady stream
    /// of single-event commits is read in small batches.
    async fn wait_for_events(&self, hints: Option<&Hints>, last_read: Instant) -> Wait {
        let mut stop = self.stop.clone();
        let hint = async {
            match hints {
                Some(h) => h.wake.notified().await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Wait::Stop,
            () = hint => {}
            () = tokio::time::sleep(self.config.poll_interval) => {}
        }
        let pace =
            (last_read + self.config.min_read_interval).saturating_duration_since(Instant::now());
        if pace.is_zero() {
            Wait::Elapsed
        } else {
            self.sleep(pace).await
        }
    }

    /// Give the lease up: nothing of this relay may reach the broker after
    /// it lets the lock go, so every queued and in-flight message is purged.
    fn give_up_lease(&self, since: Instant) -> Result<RelayError, RelayError> {
        use rdkafka::producer::{Producer, PurgeConfig};
        let fresh = publisher::producer(
            &self.config.brokers,
            self.config.delivery_timeout,
            self.config.linger,
            self.context.clone(),
        )?;
        let old = {
            let mut producer = self
                .producer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::replace(&mut *producer, fresh)
        };
        old.purge(PurgeConfig::default().queue().inflight());
        // Dropping a producer blocks its thread (flush, client teardown).
        tokio::task::spawn_blocking(move || drop(old));
        Ok(RelayError::LeaseGivenUp(since.elapsed()))
    }

    fn producer(&self) -> FutureProducer<RelayClientContext> {
        self.producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn publish_loop(&self, lock: &mut PgConnection) -> Result<(), RelayError> {
        if !self.ensure_topics().await? {
            return Ok(());
        }
        let name = self.config.name().to_owned();
        let limit = i64::try_from(self.config.batch_size.max(1)).unwrap_or(i64::MAX);
        let mut position = self.bounded(checkpoint::load(&mut *lock, &name)).await?;
        tracing::info!(%position, topics = ?self.topics, "publishing from checkpoint");
        let hints = self.listen().await;
        let mut progress = Progress::new(position);
        let mut outage: Option<(Instant, u32)> = None;
        let mut prefetched: Option<Vec<StoredEvent>> = None;
        let mut last_read = Instant::now();
        loop {
            if self.stopping() {
                return Ok(());
            }
            if progress.due(self.config.report_interval) {
                let backlog = self
                    .bounded(event_log::backlog(&mut *lock, position))
                    .await?;
                let blocker = if backlog.held_back > 0 {
                    self.bounded(event_log::oldest_transaction(&mut *lock))
                        .await?
                } else {
                    None
                };
                progress.report(position, backlog, blocker);
            }
            let batch = match prefetched.take() {
                Some(b) => b,
                None => {
                    last_read = Instant::now();
                    self.bounded(event_log::read_after(&mut *lock, position, limit))
                        .await?
                }
            };
            let Some(last) = batch.last().map(StoredEvent::position) else {
                // Commits behind an older open transaction were notified
                // already: look again shortly instead of waiting for the
                // next commit (at a low rate, up to the poll interval).
                let wait = if self
                    .bounded(event_log::held_back_after(&mut *lock, position))
                    .await?
                {
                    self.sleep(self.config.held_back_recheck).await
                } else {
                    self.wait_for_events(hints.as_ref(), last_read).await
                };
                if let Wait::Stop = wait {
                    return Ok(());
                }
                continue;
            };
            let messages = batch
                .iter()
                .map(|e| publisher::message(&self.config.topic_prefix, e))
                .collect::<Result<Vec<_>, _>>()?;
            // While the broker acknowledges this batch, read the next one.
            // The lease bounds how long a batch may stay unacknowledged.
            let full = batch.len() as i64 >= limit;
            let started = Instant::now();
            let producer = self.producer();
            let lease_left = match outage {
                Some((since, _)) => self.config.publish_lease.saturating_sub(since.elapsed()),
                None => self.config.publish_lease,
            };
            let (published, next) = tokio::join!(
                tokio::time::timeout(
                    lease_left.max(Duration::from_millis(1)),
                    publisher::publish(&producer, &messages)
                ),
                async {
                    if full {
                        Some(
                            self.bounded(event_log::read_after(&mut *lock, last, limit))
                                .await,
                        )
                    } else {
                        None
                    }
                }
            );
            let published = match published {
                Ok(result) => result,
                Err(_) => {
                    let since = outage.map_or(started, |(since, _)| since);
                    return Err(self.give_up_lease(since)?);
                }
            };
            match published {
                Ok(report) => {
                    self.bounded(checkpoint::save(&mut *lock, &name, last))
                        .await?;
                    position = last;
                    prefetched = next.transpose()?;
                    if let Some((since, retries)) = outage.take() {
                        tracing::info!(
                            down_for_s = since.elapsed().as_secs_f64(),
                            retries,
                            "Kafka reachable again; catching up"
                        );
                    }
                    self.context.broker_reachable();
                    progress.published(&batch, report);
                }
                Err(e) => {
                    metrics::counter!("ordertrail_relay_publish_failures_total").increment(1);
                    let (since, retries) = outage.get_or_insert((started, 0));
                    *retries += 1;
                    if *retries == 1 {
                        if self.context.take_outage_report() {
                            tracing::warn!(error = %e, %position, "cannot publish to Kafka; events stay in the store, retrying with backoff");
                        } else {
                            // The client already reported this outage.
                            tracing::debug!(error = %e, %position, "batch not acknowledged; retrying with backoff");
                        }
                    } else {
                        tracing::debug!(error = %e, retries = *retries, down_for_s = since.elapsed().as_secs_f64(), "publish retry failed");
                    }
                    if since.elapsed() >= self.config.publish_lease {
                        let since = *since;
                        return Err(self.give_up_lease(since)?);
                    }
                    let pause = backoff(*retries, self.config.max_backoff)
                        .min(self.config.publish_lease.saturating_sub(since.elapsed()));
                    if let Wait::Stop = self.sleep(pause).await {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The LISTEN task's wake-ups; the task ends with the relay's publish loop.
struct Hints {
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hints {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Metrics and the periodic progress line.
struct Progress {
    last_report: Instant,
    published_since_report: u64,
    position: Position,
    /// The transaction last reported as holding the relay back.
    blocker_pid: Option<i32>,
    blocker_warned: Instant,
}

impl Progress {
    fn new(position: Position) -> Self {
        Self::set_position(position);
        Self {
            // Report (and measure lag) on the first iteration.
            last_report: Instant::now()
                .checked_sub(Duration::from_secs(3600))
                .unwrap_or_else(Instant::now),
            published_since_report: 0,
            position,
            blocker_pid: None,
            blocker_warned: Instant::now(),
        }
    }

    fn set_position(position: Position) {
        metrics::gauge!("ordertrail_relay_position_global").set(position.global_position as f64);
        metrics::gauge!("ordertrail_relay_position_transaction")
            .set(position.transaction_id as f64);
    }

    fn due(&self, every: Duration) -> bool {
        self.last_report.elapsed() >= every
    }

    fn published(&mut self, batch: &[StoredEvent], report: publisher::PublishReport) {
        let n = batch.len() as u64;
        self.published_since_report += n;
        metrics::counter!("ordertrail_relay_events_published_total").increment(n);
        metrics::counter!("ordertrail_relay_batches_total").increment(1);
        if let Some(acked) = report.acked_at {
            let lag = metrics::histogram!("ordertrail_relay_publish_lag_seconds");
            for e in batch {
                lag.record((acked - e.recorded_at).as_seconds_f64().max(0.0));
            }
        }
        if let Some(last) = batch.last() {
            self.position = last.position();
            Self::set_position(self.position);
        }
    }

    fn report(
        &mut self,
        position: Position,
        backlog: event_log::Backlog,
        blocker: Option<event_log::OldestTransaction>,
    ) {
        // Every committed event not yet published counts, also those an open
        // transaction holds back (the reader cannot see them yet).
        metrics::gauge!("ordertrail_relay_lag_events").set(backlog.committed as f64);
        metrics::gauge!("ordertrail_relay_lag_seconds").set(backlog.oldest_seconds);
        metrics::gauge!("ordertrail_relay_held_back_events").set(backlog.held_back as f64);
        metrics::gauge!("ordertrail_relay_blocking_transaction_age_seconds")
            .set(blocker.as_ref().map_or(0.0, |b| b.age_seconds));
        metrics::gauge!("ordertrail_relay_blocking_transaction_pid")
            .set(blocker.as_ref().map_or(0.0, |b| f64::from(b.pid)));
        // A command's own transaction is open for milliseconds; one open for
        // longer than a report interval is worth a warning.
        if let Some(b) = blocker.as_ref().filter(|b| b.age_seconds >= 5.0) {
            let new_blocker = self.blocker_pid != Some(b.pid);
            if new_blocker || self.blocker_warned.elapsed() >= Duration::from_secs(30) {
                tracing::warn!(
                    pid = b.pid,
                    age_s = b.age_seconds.round(),
                    database = b.database.as_deref().unwrap_or("?"),
                    user = b.user.as_deref().unwrap_or("?"),
                    application = b.application.as_deref().unwrap_or(""),
                    state = b.state.as_deref().unwrap_or("?"),
                    held_back_events = backlog.held_back,
                    "an open transaction holds the relay back: committed events wait until it ends (pg_terminate_backend({}) ends it)",
                    b.pid
                );
                self.blocker_warned = Instant::now();
            }
        }
        self.blocker_pid = blocker.as_ref().map(|b| b.pid);
        let lag = event_log::Lag {
            events: backlog.committed,
            seconds: backlog.oldest_seconds,
        };
        let secs = self.last_report.elapsed().as_secs_f64();
        if self.published_since_report > 0 || lag.events > 0 {
            let rate = if secs < 3600.0 {
                self.published_since_report as f64 / secs
            } else {
                0.0
            };
            tracing::info!(
                %position,
                published = self.published_since_report,
                rate_per_s = rate.round(),
                lag_events = lag.events,
                held_back_events = backlog.held_back,
                lag_seconds = lag.seconds,
                "relay progress"
            );
        }
        self.published_since_report = 0;
        self.last_report = Instant::now();
    }
}
