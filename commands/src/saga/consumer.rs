//! The saga's main loop: a Kafka consumer group over the three topics with
//! positions in PostgreSQL, and the poller of stored timers, in one task (so
//! an event and a timer of the same order are never handled at once by one
//! instance).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ordertrail_schemas::EventEnvelope;
use ordertrail_schemas::topics::all_topics;
use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::Offset;
use sqlx::PgPool;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;
use tracing::Instrument;

use super::dispatch::{Cause, Dispatcher};
use super::flow::{self, Flow, Handled};
use super::positions::{self, Positions};
use super::timers::{self, ClaimError};
use super::{Halt, SagaConfig, SagaError, db_retry, is_transient};
use crate::service::CommandService;

/// Timers fired per poll at most, so events keep flowing meanwhile.
const TIMERS_PER_POLL: usize = 100;

/// A change of the partitions this instance owns.
#[derive(Debug)]
enum Assignment {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Forwards rebalances to the loop.
struct SagaContext {
    assignments: UnboundedSender<Assignment>,
}

fn partitions_of(tpl: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for SagaContext {}

impl ConsumerContext for SagaContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let message = match rebalance {
            Rebalance::Assign(tpl) => Assignment::Assigned(partitions_of(tpl)),
            Rebalance::Revoke(tpl) => Assignment::Revoked(partitions_of(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        // The receiver only goes away when the loop stops.
        let _ = self.assignments.send(message);
    }
}

fn create_consumer(
    config: &SagaConfig,
    context: SagaContext,
) -> KafkaResult<StreamConsumer<SagaContext>> {
    ordertrail_platform::kafka::consumer_config(
        &config.brokers,
        &config.group_id,
        ordertrail_platform::kafka::DEFAULT_FETCH_WAIT,
    )
    .create_with_context(context)
}

/// A message copied out of librdkafka's buffer.
struct RawMessage {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    payload: Option<Vec<u8>>,
}

pub(super) struct SagaLoop {
    config: SagaConfig,
    pool: PgPool,
    flow: Flow,
    stop: watch::Receiver<bool>,
    consumer: StreamConsumer<SagaContext>,
    assignments: UnboundedReceiver<Assignment>,
    positions: Positions,
    /// Assigned partitions not yet moved to their stored position.
    pending_seeks: HashMap<(String, i32), i64>,
}

impl SagaLoop {
    pub(super) fn new(
        config: SagaConfig,
        service: CommandService,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, SagaError> {
        let (tx, assignments) = unbounded_channel();
        let consumer =
            create_consumer(&config, SagaContext { assignments: tx }).map_err(|source| {
                SagaError::Kafka {
                    context: "create consumer",
                    source,
                }
            })?;
        let pool = service.pool().clone();
        let dispatch = Dispatcher::new(service, stop.clone(), config.max_backoff);
        let flow = Flow::new(dispatch, pool.clone(), &config);
        let positions = Positions::new(config.group_id.clone());
        Ok(Self {
            config,
            pool,
            flow,
            stop,
            consumer,
            assignments,
            positions,
            pending_seeks: HashMap::new(),
        })
    }

    #[tracing::instrument(name = "saga", skip_all, fields(group = %self.config.group_id))]
    pub(super) async fn run(mut self) -> Result<(), SagaError> {
        let topics = all_topics(&self.config.topic_prefix);
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&refs)
            .map_err(|source| SagaError::Kafka {
                context: "subscribe",
                source,
            })?;
        tracing::info!(?topics, "saga started");
        let result = self.consume().await;
        match result {
            Ok(()) | Err(Halt::Stopped) => {
                // Positions of events without commands; losing them would
                // only mean handling those events again.
                if let Err(e) = self.positions.flush(&self.pool).await {
                    tracing::warn!(error = %e, "cannot store the last positions on shutdown");
                }
                tracing::info!("saga stopped");
                Ok(())
            }
            Err(Halt::Failed(e)) => Err(e),
        }
    }

    async fn consume(&mut self) -> Result<(), Halt> {
        let mut timer_tick = tokio::time::interval(self.config.timer_poll_interval);
        timer_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flush_tick = tokio::time::interval(self.config.position_flush_interval);
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.stop.clone();
        loop {
            let message = tokio::select! {
                biased;
                () = super::stopping(&mut stop) => return Ok(()),
                assignment = self.assignments.recv() => {
                    if let Some(assignment) = assignment {
                        self.on_assignment(assignment).await?;
                    }
                    continue;
                }
                _ = timer_tick.tick() => {
                    self.seek_pending();
                    self.fire_due_timers().await?;
                    continue;
                }
                _ = flush_tick.tick() => {
                    let (pool, positions) = (&self.pool, &mut self.positions);
                    if let Err(e) = positions.flush(pool).await {
                        if !is_transient(&e) {
                            return Err(Halt::Failed(SagaError::Database { context: "store positions", source: e }));
                        }
                        tracing::warn!(error = %e, "cannot store positions now; retrying later");
                    }
                    continue;
                }
                message = self.consumer.recv() => match message {
                    Ok(m) => RawMessage {
                        topic: Arc::from(m.topic()),
                        partition: m.partition(),
                        offset: m.offset(),
                        payload: m.payload().map(<[u8]>::to_vec),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consumer error");
                        continue;
                    }
                },
            };
            self.on_message(message).await?;
        }
    }

    async fn on_assignment(&mut self, assignment: Assignment) -> Result<(), Halt> {
        match assignment {
            Assignment::Assigned(partitions) => {
                tracing::info!(?partitions, "partitions assigned");
                let stored = db_retry(
                    &self.stop,
                    self.config.max_backoff,
                    "read positions",
                    || positions::load(&self.pool, &self.config.group_id, &partitions),
                )
                .await?;
                for p in &partitions {
                    let next = stored.get(p).copied().unwrap_or(0);
                    if next > 0 {
                        self.pending_seeks.insert(p.clone(), next);
                    }
                }
                self.positions.assigned(
                    partitions
                        .iter()
                        .map(|p| (p.clone(), stored.get(p).copied().unwrap_or(0))),
                );
                self.seek_pending();
            }
            Assignment::Revoked(partitions) => {
                tracing::info!(?partitions, "partitions revoked");
                if let Err(e) = self
                    .positions
                    .flush_partitions(&self.pool, &partitions)
                    .await
                {
                    tracing::warn!(error = %e, "cannot store positions of revoked partitions");
                }
                self.positions.revoked(&partitions);
                for p in &partitions {
                    self.pending_seeks.remove(p);
                }
            }
        }
        Ok(())
    }

    /// Move assigned partitions to their stored positions. librdkafka refuses
    /// until a partition is fetching; those are tried again on the next tick.
    /// Correctness never depends on it: messages below the stored position
    /// are skipped anyway.
    fn seek_pending(&mut self) {
        let consumer = &self.consumer;
        self.pending_seeks.retain(|(topic, partition), target| {
            match consumer.seek(topic, *partition, Offset::Offset(*target), Duration::from_millis(200)) {
                Ok(()) => {
                    tracing::info!(%topic, partition, offset = *target, "moved to the stored position");
                    false
                }
                Err(e) => {
                    tracing::debug!(%topic, partition, error = %e, "cannot seek yet; will retry");
                    true
                }
            }
        });
    }

    async fn on_message(&mut self, m: RawMessage) -> Result<(), Halt> {
        let next = {
            let mut retries = 0u32;
            loop {
                match self.positions.next(&self.pool, &m.topic, m.partition).await {
                    Ok(next) => break next,
                    Err(e) if is_transient(&e) => {
                        if retries == 0 {
                            tracing::warn!(error = %e, "database unavailable; retrying with backoff");
                        }
                        retries = retries.saturating_add(1);
                        super::pause(&self.stop, super::backoff(retries, self.config.max_backoff))
                            .await?;
                    }
                    Err(source) => {
                        return Err(Halt::Failed(SagaError::Database {
                            context: "read position",
                            source,
                        }));
                    }
                }
            }
        };
        let key = (m.topic.to_string(), m.partition);
        if self
            .pending_seeks
            .get(&key)
            .is_some_and(|target| m.offset + 1 >= *target)
        {
            self.pending_seeks.remove(&key);
        }
        if m.offset < next {
            metrics::counter!("ordertrail_saga_events_total", "event_type" => "any", "outcome" => "already_handled")
                .increment(1);
            return Ok(());
        }
        let at = format!(
            "topic {} partition {} offset {}",
            m.topic, m.partition, m.offset
        );
        let Some(payload) = m.payload else {
            return Err(undecodable(at, "the message has no value".to_owned()));
        };
        let envelope: EventEnvelope = serde_json::from_slice(&payload)
            .map_err(|e| undecodable(at.clone(), format!("not an event envelope: {e}")))?;
        let label = format!(
            "event {} ({} v{} of {} {} at {at})",
            envelope.event_id,
            envelope.event_type,
            envelope.event_version,
            envelope.aggregate_type,
            envelope.aggregate_id
        );
        let event = flow::decode(&envelope).map_err(|reason| undecodable(label.clone(), reason))?;
        let cause = Cause {
            origin: envelope.event_id,
            correlation_id: envelope.metadata.correlation_id,
            causation_id: envelope.event_id,
            label,
        };
        let span = tracing::info_span!(
            "saga_event",
            event_id = %envelope.event_id,
            event_type = %envelope.event_type,
            aggregate_id = %envelope.aggregate_id,
        );
        let handled = self
            .flow
            .on_event(&cause, &envelope.aggregate_id, event)
            .instrument(span)
            .await?;
        let outcome = match handled {
            Handled::Acted => "acted",
            Handled::Nothing => "nothing_to_do",
        };
        metrics::counter!("ordertrail_saga_events_total", "event_type" => envelope.event_type.clone(), "outcome" => outcome)
            .increment(1);
        let persist = handled == Handled::Acted;
        let mut retries = 0u32;
        loop {
            match self
                .positions
                .advance(&self.pool, &m.topic, m.partition, m.offset, persist)
                .await
            {
                Ok(()) => break,
                Err(e) if is_transient(&e) => {
                    if retries == 0 {
                        tracing::warn!(error = %e, "database unavailable; retrying with backoff");
                    }
                    retries = retries.saturating_add(1);
                    super::pause(&self.stop, super::backoff(retries, self.config.max_backoff))
                        .await?;
                }
                Err(source) => {
                    return Err(Halt::Failed(SagaError::Database {
                        context: "store position",
                        source,
                    }));
                }
            }
        }
        metrics::gauge!("ordertrail_saga_position", "topic" => m.topic.to_string(), "partition" => m.partition.to_string())
            .set((m.offset + 1) as f64);
        Ok(())
    }

    /// Fire due timers, each in its own transaction: claimed (locked), fired,
    /// marked fired, committed. A crash in between leaves it unfired; firing
    /// again sends the same command ids, which act once.
    async fn fire_due_timers(&mut self) -> Result<(), Halt> {
        for _ in 0..TIMERS_PER_POLL {
            let mut tx = match self.pool.begin().await {
                Ok(tx) => tx,
                Err(e) => return timer_db_failure("begin", e),
            };
            let timer = match timers::claim_due(&mut tx).await {
                Ok(Some(timer)) => timer,
                Ok(None) => return Ok(()),
                Err(ClaimError::Database(e)) => return timer_db_failure("claim a due timer", e),
                Err(e @ ClaimError::UnknownKind { .. }) => {
                    return Err(Halt::Failed(SagaError::Inconsistent {
                        cause: "timer poller".to_owned(),
                        reason: e.to_string(),
                    }));
                }
            };
            let span = tracing::info_span!(
                "saga_timer",
                timer_id = %timer.timer_id,
                kind = %timer.kind,
                aggregate_id = %timer.aggregate_id,
            );
            let outcome = self.flow.fire(&mut tx, &timer).instrument(span).await?;
            if let Err(e) = timers::fired(&mut tx, timer.timer_id, outcome).await {
                return timer_db_failure("mark a timer fired", e);
            }
            if let Err(e) = tx.commit().await {
                return timer_db_failure("commit a fired timer", e);
            }
            metrics::counter!("ordertrail_saga_timers_fired_total", "kind" => timer.kind.as_str(), "outcome" => outcome)
                .increment(1);
            tracing::info!(timer_id = %timer.timer_id, kind = %timer.kind, aggregate_id = %timer.aggregate_id, outcome, "timer fired");
        }
        Ok(())
    }
}

fn undecodable(at: String, reason: String) -> Halt {
    Halt::Failed(SagaError::Undecodable { at, reason })
}

/// A database failure while firing timers: transient ones are tried again at
/// the next poll (the timer stays unfired); others stop the saga.
fn timer_db_failure(context: &'static str, e: sqlx::Error) -> Result<(), Halt> {
    if is_transient(&e) {
        tracing::warn!(error = %e, context, "database unavailable while firing timers; trying again later");
        Ok(())
    } else {
        Err(Halt::Failed(SagaError::Database { context, source: e }))
    }
}
