//! Sending one command for an event or a timer, with the saga's identity and
//! failure policy: refusals are outcomes, outages are waited out, our own
//! faults stop the saga.

use std::fmt;
use std::time::Duration;

use ordertrail_domain::{DeliveryCommand, ErrorKind, OrderCommand, PaymentCommand};
use ordertrail_schemas::{Actor, ActorRole, DeliveryId, OrderId, PaymentId};
use tokio::sync::watch;
use uuid::Uuid;

use super::{Halt, SAGA_SUBJECT, SagaError, backoff, pause};
use crate::service::{CommandContext, CommandError, CommandOutcome, CommandService};
use crate::workflows::Workflow;

/// What a command is sent for: an event, or a stored timer.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// What command ids are derived from: the event id or the timer id.
    pub origin: Uuid,
    pub correlation_id: Uuid,
    /// The event that caused the command (for a timer: the event that
    /// scheduled it).
    pub causation_id: Uuid,
    /// For logs and errors, e.g. `event 1b… (OrderPlaced of 9f…)`.
    pub label: String,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl Cause {
    /// The deterministic id of the command this cause sends for `action`.
    pub(crate) fn command_id(&self, action: &str) -> Uuid {
        // Time-ordered like the (UUIDv7) event it derives from: the command's
        // `command_log` entry lands at the index's right edge.
        ordertrail_schemas::derived_id(self.origin, action.as_bytes())
    }

    fn context(&self, action: &str) -> CommandContext {
        let actor = Actor {
            subject: SAGA_SUBJECT.to_owned(),
            role: ActorRole::System,
        };
        CommandContext::new(actor, format!("saga:{}", self.origin)).caused_by(
            self.command_id(action),
            self.correlation_id,
            self.causation_id,
        )
    }
}

/// A command the saga sends, with the aggregate it addresses.
#[derive(Debug, Clone)]
pub(crate) enum SagaCommand {
    Order(OrderId, OrderCommand),
    Payment(PaymentId, PaymentCommand),
    Delivery(DeliveryId, DeliveryCommand),
    /// A use case that reads more than its aggregate ([`crate::workflows`]).
    Workflow(Workflow),
}

impl SagaCommand {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            SagaCommand::Order(_, c) => c.name(),
            SagaCommand::Payment(_, c) => c.name(),
            SagaCommand::Delivery(_, c) => c.name(),
            SagaCommand::Workflow(w) => w.name(),
        }
    }

    pub(crate) fn aggregate_id(&self, ctx: &CommandContext) -> String {
        match self {
            SagaCommand::Order(id, _) => id.to_string(),
            SagaCommand::Workflow(w) => w.aggregate_id(ctx),
            SagaCommand::Payment(id, _) => id.to_string(),
            SagaCommand::Delivery(id, _) => id.to_string(),
        }
    }

    async fn execute(
        &self,
        service: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        match self {
            SagaCommand::Order(id, c) => service.execute(ctx, *id, c.clone()).await,
            SagaCommand::Payment(id, c) => service.execute(ctx, *id, c.clone()).await,
            SagaCommand::Delivery(id, c) => service.execute(ctx, *id, c.clone()).await,
            SagaCommand::Workflow(w) => service.run(ctx, w.clone()).await,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Done now, or earlier (`replayed`: the command log answered).
    Applied { replayed: bool },
    /// The domain said no because the world moved on; nothing to retry.
    Refused { code: &'static str, kind: ErrorKind },
    /// The payment provider is unavailable (only with [`ProviderOutage::Report`]).
    ProviderUnavailable,
}

/// What to do when the payment provider is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProviderOutage {
    /// Return [`Sent::ProviderUnavailable`]; the caller stores a retry.
    Report,
    /// Retry in place with backoff until the provider answers.
    Wait,
}

/// Sends commands for the saga.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    service: CommandService,
    stop: watch::Receiver<bool>,
    max_backoff: Duration,
}

impl Dispatcher {
    pub(crate) fn new(
        service: CommandService,
        stop: watch::Receiver<bool>,
        max_backoff: Duration,
    ) -> Self {
        Self {
            service,
            stop,
            max_backoff,
        }
    }

    pub(crate) fn service(&self) -> &CommandService {
        &self.service
    }

    pub(crate) fn stop(&self) -> &watch::Receiver<bool> {
        &self.stop
    }

    /// Send `command` for `cause` under the id derived from `action`.
    pub(crate) async fn send(
        &self,
        cause: &Cause,
        action: &str,
        command: SagaCommand,
        outage: ProviderOutage,
    ) -> Result<Sent, Halt> {
        let ctx = cause.context(action);
        let name = command.name();
        let aggregate_id = command.aggregate_id(&ctx);
        let mut retries = 0u32;
        loop {
            let result = command.execute(&self.service, &ctx).await;
            let reason = match result {
                Ok(outcome) => {
                    let result = if outcome.replayed {
                        "replayed"
                    } else {
                        "applied"
                    };
                    metrics::counter!("ordertrail_saga_commands_total", "command" => name, "result" => result)
                        .increment(1);
                    tracing::info!(
                        %cause,
                        command = name,
                        %aggregate_id,
                        command_id = %ctx.command_id(),
                        replayed = outcome.replayed,
                        events = ?outcome.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
                        "command sent"
                    );
                    return Ok(Sent::Applied {
                        replayed: outcome.replayed,
                    });
                }
                Err(CommandError::Rejected {
                    kind: ErrorKind::Unavailable,
                    code,
                    message,
                }) => {
                    if outage == ProviderOutage::Report {
                        metrics::counter!("ordertrail_saga_commands_total", "command" => name, "result" => "provider_unavailable")
                            .increment(1);
                        tracing::info!(%cause, command = name, %aggregate_id, code, %message, "payment provider unavailable");
                        return Ok(Sent::ProviderUnavailable);
                    }
                    if retries == 0 {
                        tracing::warn!(%cause, command = name, %aggregate_id, code, %message, "payment provider unavailable; retrying with backoff");
                    }
                    "provider_unavailable"
                }
                Err(CommandError::Rejected {
                    code,
                    kind,
                    message,
                }) => {
                    metrics::counter!("ordertrail_saga_commands_total", "command" => name, "result" => "refused")
                        .increment(1);
                    tracing::info!(%cause, command = name, %aggregate_id, code, %kind, %message, "command refused; the world moved on");
                    return Ok(Sent::Refused { code, kind });
                }
                Err(CommandError::Conflict { .. }) => {
                    tracing::debug!(%cause, command = name, %aggregate_id, "concurrent change; deciding again");
                    "concurrency_conflict"
                }
                Err(CommandError::Unavailable(e)) => {
                    if retries == 0 {
                        tracing::warn!(%cause, command = name, %aggregate_id, error = %e, "event store unavailable; retrying with backoff");
                    }
                    "store_unavailable"
                }
                Err(e @ (CommandError::IdempotencyKeyReused | CommandError::Internal(_))) => {
                    return Err(Halt::Failed(SagaError::Command {
                        cause: cause.label.clone(),
                        command: name,
                        aggregate_id,
                        source: e,
                    }));
                }
            };
            retries = retries.saturating_add(1);
            metrics::counter!("ordertrail_saga_retries_total", "command" => name, "reason" => reason)
                .increment(1);
            pause(&self.stop, backoff(retries, self.max_backoff)).await?;
        }
    }

    /// Run a read through the service, waiting out store outages.
    pub(crate) async fn read<T, F, Fut>(
        &self,
        cause: &Cause,
        what: &'static str,
        mut read: F,
    ) -> Result<T, Halt>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CommandError>>,
    {
        let mut retries = 0u32;
        loop {
            match read().await {
                Ok(v) => return Ok(v),
                Err(CommandError::Unavailable(e)) => {
                    if retries == 0 {
                        tracing::warn!(%cause, what, error = %e, "event store unavailable; retrying with backoff");
                    }
                }
                Err(e) => {
                    return Err(Halt::Failed(SagaError::Inconsistent {
                        cause: cause.label.clone(),
                        reason: format!("cannot load the {what}: {e}"),
                    }));
                }
            }
            retries = retries.saturating_add(1);
            pause(&self.stop, backoff(retries, self.max_backoff)).await?;
        }
    }
}
