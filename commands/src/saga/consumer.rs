//! The saga as a handler of the one consumer runtime
//! ([`ordertrail_platform::consumer`]): it catches up from the event store,
//! then follows the three topics; positions and its sequence guard live in
//! PostgreSQL under the consumer name [`SAGA_CONSUMER`]. Each event's
//! commands are sent before its position is recorded (they carry
//! deterministic ids, so handling an event again acts once). Stored timers
//! fire on the runtime's tick.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use ordertrail_platform::consumer::{ApplyError, Handler, SourcedEvent};
use ordertrail_schemas::AggregateKind;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;

use super::dispatch::Cause;
use super::flow::{Flow, Handled};
use super::timers::{self, ClaimError};
use super::{Halt, SagaError, is_transient};

/// The saga's name in `consumers`, `projector_offsets`, `projector_sequences`
/// and the status query.
pub const SAGA_CONSUMER: &str = "saga";

/// Timers fired per poll at most, so events keep flowing meanwhile.
const TIMERS_PER_POLL: usize = 100;

pub(super) struct SagaHandler {
    pub(super) pool: PgPool,
    pub(super) flow: Flow,
    /// This instance's name, recorded on the timers it claims.
    pub(super) instance: String,
    /// How long a claimed timer is this instance's to fire.
    pub(super) timer_lease: Duration,
    /// Most aggregates of a batch handled at the same time.
    pub(super) concurrency: usize,
}

/// A saga failure as the runtime sees it: shutdown, something to wait out,
/// or an event the saga cannot handle (it stalls, naming it).
fn apply_error(halt: Halt, event: Option<&SourcedEvent>) -> ApplyError {
    match halt {
        Halt::Stopped => ApplyError::Stopped,
        Halt::Failed(SagaError::Database { context, source }) => {
            ApplyError::Unavailable(format!("database: {context}: {source}"))
        }
        Halt::Failed(e) => match event {
            Some(event) => event.reject(e.to_string()),
            None => ApplyError::Unavailable(e.to_string()),
        },
    }
}

impl SagaHandler {
    async fn on_event(&self, event: &SourcedEvent) -> Result<(), ApplyError> {
        let envelope = &event.envelope;
        let label = format!(
            "event {} ({} v{} of {} {} at {})",
            envelope.event_id,
            envelope.event_type,
            envelope.event_version,
            envelope.aggregate_type,
            envelope.aggregate_id,
            event.origin
        );
        let decoded = event.event()?;
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
            .on_event(&cause, &envelope.aggregate_id, decoded)
            .instrument(span)
            .await
            .map_err(|h| apply_error(h, Some(event)))?;
        let outcome = match handled {
            Handled::Acted => "acted",
            Handled::Nothing => "nothing_to_do",
        };
        metrics::counter!("ordertrail_saga_events_total", "event_type" => envelope.event_type.clone(), "outcome" => outcome)
            .increment(1);
        Ok(())
    }

    /// Fire due timers, one at a time: claimed with a lease (one short
    /// statement), fired with no transaction open (commands, provider calls),
    /// marked fired. A crash or failure in between leaves it unfired; its
    /// claim runs out and it fires again, sending the same command ids,
    /// which act once.
    async fn fire_due_timers(&self) -> Result<(), Halt> {
        for _ in 0..TIMERS_PER_POLL {
            let timer = match timers::claim_due(&self.pool, self.timer_lease, &self.instance).await
            {
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
            let outcome = match self.flow.fire(&timer).instrument(span).await {
                Ok(outcome) => outcome,
                Err(halt) => {
                    // Give the claim back so a retry need not wait for the lease.
                    if let Err(e) = timers::unclaim(&self.pool, timer.timer_id).await {
                        tracing::warn!(error = %e, timer_id = %timer.timer_id, "cannot give a timer's claim back; it is retried when the lease runs out");
                    }
                    return Err(halt);
                }
            };
            if let Err(e) = timers::fired(&self.pool, timer.timer_id, outcome).await {
                return timer_db_failure("mark a timer fired", e);
            }
            metrics::counter!("ordertrail_saga_timers_fired_total", "kind" => timer.kind.as_str(), "outcome" => outcome)
                .increment(1);
            tracing::info!(timer_id = %timer.timer_id, kind = %timer.kind, aggregate_id = %timer.aggregate_id, outcome, "timer fired");
        }
        Ok(())
    }
}

/// The batch split into lanes, one per aggregate, in order of first
/// appearance: each lane holds the positions of that aggregate's events, in
/// batch order.
fn lanes(batch: &[SourcedEvent]) -> Vec<Vec<usize>> {
    let mut by_aggregate: HashMap<(AggregateKind, &str), usize> = HashMap::new();
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    for (at, event) in batch.iter().enumerate() {
        let key = (
            event.envelope.aggregate_type,
            event.envelope.aggregate_id.as_str(),
        );
        let lane = *by_aggregate.entry(key).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[lane].push(at);
    }
    lanes
}

impl Handler for SagaHandler {
    fn name(&self) -> &'static str {
        SAGA_CONSUMER
    }

    fn sources(&self) -> &'static [AggregateKind] {
        &[
            AggregateKind::Order,
            AggregateKind::Payment,
            AggregateKind::Delivery,
        ]
    }

    const ACTS: bool = true;

    async fn apply(
        &self,
        _tx: &mut PgConnection,
        _batch: &[SourcedEvent],
    ) -> Result<(), ApplyError> {
        Ok(())
    }

    /// Handles the batch's aggregates concurrently (at most
    /// [`SagaHandler::concurrency`] at a time), each aggregate's events one
    /// after the other in their order. The first failure in batch order is
    /// returned; the other aggregates may have acted meanwhile, which is
    /// harmless: the whole batch is handled again, and its commands carry
    /// deterministic ids.
    async fn act(&self, batch: &[SourcedEvent]) -> Result<(), ApplyError> {
        let lanes = lanes(batch);
        if self.concurrency <= 1 || lanes.len() <= 1 {
            for event in batch {
                self.on_event(event).await?;
            }
            return Ok(());
        }
        let results: Vec<Result<(), (usize, ApplyError)>> = stream::iter(lanes)
            .map(|lane| async move {
                for at in lane {
                    self.on_event(&batch[at]).await.map_err(|e| (at, e))?;
                }
                Ok(())
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        match results
            .into_iter()
            .filter_map(Result::err)
            .min_by_key(|(at, _)| *at)
        {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    async fn tick(&self) -> Result<(), ApplyError> {
        self.fire_due_timers()
            .await
            .map_err(|h| apply_error(h, None))?;
        self.report_timers().await;
        Ok(())
    }
}

impl SagaHandler {
    /// Gauges of the timers that are due and not fired, per kind: how many,
    /// and how long the oldest is overdue (stored money retries piling up,
    /// or a poller that does not get to them). Best effort.
    async fn report_timers(&self) {
        let rows: Result<Vec<(String, i64, f64)>, _> = sqlx::query_as(
            "SELECT kind, count(*), coalesce(extract(epoch FROM max(now() - due_at))::float8, 0)
             FROM saga_timers WHERE fired_at IS NULL AND due_at <= now() GROUP BY kind",
        )
        .fetch_all(&self.pool)
        .await;
        let Ok(rows) = rows else { return };
        for kind in TIMER_KINDS {
            let (due, overdue) = rows
                .iter()
                .find(|(k, _, _)| k == kind.as_str())
                .map_or((0, 0.0), |(_, n, age)| (*n, *age));
            metrics::gauge!("ordertrail_saga_timers_due", "kind" => kind.as_str()).set(due as f64);
            metrics::gauge!("ordertrail_saga_timers_overdue_seconds", "kind" => kind.as_str())
                .set(overdue);
        }
    }
}

const TIMER_KINDS: [timers::TimerKind; 7] = [
    timers::TimerKind::AuthorizeRetry,
    timers::TimerKind::AcceptTimeout,
    timers::TimerKind::AssignTimeout,
    timers::TimerKind::CaptureRetry,
    timers::TimerKind::ReleaseRetry,
    timers::TimerKind::PickupTimeout,
    timers::TimerKind::CompletionTimeout,
];

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

#[cfg(test)]
mod tests {
    use ordertrail_platform::consumer::{Origin, SourcedEvent};
    use serde_json::json;

    use super::lanes;

    fn event(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> SourcedEvent {
        let id = uuid::Uuid::new_v4();
        let envelope = serde_json::from_value(json!({
            "event_id": id,
            "aggregate_type": aggregate_type,
            "aggregate_id": aggregate_id,
            "sequence": sequence,
            "global_position": 1,
            "event_type": "OrderPlaced",
            "event_version": "1",
            "payload": {},
            "metadata": {
                "command_id": id, "correlation_id": id, "causation_id": id,
                "actor": { "subject": "saga", "role": "system" }, "request_id": "r"
            },
            "recorded_at": "2026-12-02T12:00:00Z"
        }))
        .expect("envelope");
        SourcedEvent {
            origin: Origin::Store(Default::default()),
            envelope,
        }
    }

    #[test]
    fn a_batch_splits_into_one_lane_per_aggregate_each_in_batch_order() {
        let batch = [
            event("Order", "a", 1),
            event("Payment", "a", 1),
            event("Order", "b", 1),
            event("Order", "a", 2),
            event("Order", "b", 2),
            event("Order", "a", 3),
        ];
        // The same id under another aggregate type is another aggregate.
        assert_eq!(lanes(&batch), vec![vec![0, 3, 5], vec![1], vec![2, 4]]);
        assert!(lanes(&[]).is_empty());
    }
}
