//! Deciding and committing: load (or start from a given state), let the
//! domain decide, append the events with their metadata in one transaction.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, DomainEvent, EventStore};
use ordertrail_domain::DomainError;
use ordertrail_schemas::AggregateKind;

use super::errors::store_error;
use super::{AppendedEvent, CommandContext, CommandError, CommandOutcome, CommandService, Store};

/// Where a decision starts from.
pub(crate) enum Start<A: Aggregate> {
    /// Load the aggregate's events first.
    Load,
    /// The aggregate id is new (derived from this command's id): decide on
    /// the empty state without reading. Should it exist after all, the append
    /// at sequence 1 conflicts and the conflict path answers.
    New,
    /// Already loaded (together with another aggregate, in one round trip).
    Loaded(EventStoreAggregateContext<A>),
}

impl CommandService {
    /// Load, decide and commit (inside [`Self::answer`]). `build` turns the
    /// loaded state and version into the command (most callers already have
    /// it) or rejects.
    pub(crate) async fn decide<A>(
        &self,
        store: &Store<A>,
        services: &A::Services,
        ctx: &CommandContext,
        (kind, aggregate_id): (AggregateKind, &str),
        start: Start<A>,
        build: impl FnOnce(&A, i64) -> Result<A::Command, CommandError>,
    ) -> Result<CommandOutcome, CommandError>
    where
        A: Aggregate,
        A::Error: DomainError,
    {
        let started = std::time::Instant::now();
        let mut context = match start {
            Start::Loaded(context) => context,
            Start::Load => store
                .load_aggregate(aggregate_id)
                .await
                .map_err(|e| store_error(kind, e))?,
            Start::New => EventStoreAggregateContext {
                aggregate_id: aggregate_id.to_owned(),
                aggregate: A::default(),
                current_sequence: 0,
                current_snapshot: None,
            },
        };
        let version_before = i64::try_from(context.current_sequence).unwrap_or(i64::MAX);
        let sink = EventSink::<A>::default();
        let decided = match build(context.aggregate(), version_before) {
            Ok(command) => context
                .aggregate()
                .handle(command, services, &sink)
                .await
                .map_err(|e| CommandError::from_domain(&e)),
            Err(e) => Err(e),
        };
        if let Err(error) = decided {
            // A racing twin of this very command may have committed between the
            // check above and the load: the state it left rejects the repeat,
            // but the answer is the twin's outcome.
            if ctx.is_repeatable()
                && let Some(outcome) = self.applied(ctx.command_id()).await?
            {
                self.remember_success(ctx, &outcome).await;
                return Ok(outcome);
            }
            return Err(error);
        }
        let events = sink.collect().await;
        if events.is_empty() {
            let outcome = CommandOutcome {
                aggregate_type: kind,
                aggregate_id: aggregate_id.to_owned(),
                version: version_before,
                events: vec![],
                replayed: false,
            };
            self.remember_success(ctx, &outcome).await;
            return Ok(outcome);
        }
        let appended: Vec<AppendedEvent> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                Ok(AppendedEvent {
                    sequence: version_before + 1 + i as i64,
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_value(event)
                        .map_err(|e| CommandError::Internal(e.to_string()))?,
                })
            })
            .collect::<Result<_, CommandError>>()?;
        match store.commit(events, context, ctx.metadata().to_map()).await {
            Ok(_) => {
                let outcome = CommandOutcome {
                    aggregate_type: kind,
                    aggregate_id: aggregate_id.to_owned(),
                    version: version_before + appended.len() as i64,
                    events: appended,
                    replayed: false,
                };
                metrics::histogram!("ordertrail_command_seconds", "aggregate" => kind.as_str())
                    .record(started.elapsed().as_secs_f64());
                self.remember_success(ctx, &outcome).await;
                Ok(outcome)
            }
            Err(AggregateError::AggregateConflict) => {
                // Either a duplicate of this very command won (answer with its
                // result) or another command did (a real conflict).
                if let Some(outcome) = self.applied(ctx.command_id()).await? {
                    self.remember_success(ctx, &outcome).await;
                    return Ok(outcome);
                }
                metrics::counter!("ordertrail_command_conflicts_total", "aggregate" => kind.as_str()).increment(1);
                Err(CommandError::Conflict {
                    aggregate_type: kind,
                })
            }
            Err(e) => Err(store_error(kind, e)),
        }
    }
}
