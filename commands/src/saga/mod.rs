//! The saga: the process manager that drives an order from placement to
//! delivery and payment by reacting to events with commands (issue 4).
//!
//! It consumes the three topics the relay publishes and sends follow-up
//! commands through the same [`CommandService`] the API uses, as actor
//! `{subject: "saga", role: system}`.
//!
//! # Flow
//!
//! | event | commands |
//! |---|---|
//! | `OrderPlaced`, card | `AuthorizePayment` (payment id `PaymentId::for_order`, amount = order total, the order's card token). Provider unavailable → stored retry (`authorize_retry` timer, exponential backoff) up to `payment_retry_limit` retries, then `CancelOrder` |
//! | `OrderPlaced`, cash | `ConfirmOrder(None)` |
//! | `PaymentAuthorized` | `ConfirmOrder(payment id)`; if the order is already cancelled/rejected: release the money (`VoidPayment`) |
//! | `PaymentDeclined` | `CancelOrder` with reason `payment declined: <code>` |
//! | `OrderConfirmed` | schedules the `accept_timeout` timer |
//! | `OrderAccepted` | `RequestDelivery` (the `workflows::RequestDelivery` use case: restaurant → customer address) |
//! | `OrderRejected`, `OrderCancelled` | money released: `VoidPayment` if authorized and uncaptured, `RefundPayment` of what is left if captured; `CancelDelivery` if the delivery exists and is requested/assigned. A void or refund the provider refuses or does not answer is recorded by the payment (`PaymentVoidFailed` / `PaymentRefundFailed`, below) |
//! | `DeliveryRequested` | schedules the `assign_timeout` timer |
//! | `RiderAssigned` | schedules `pickup_timeout` and `completion_timeout` (from `assigned_at`), both watching this assignment |
//! | `RiderUnassigned` | schedules a new `assign_timeout` from `unassigned_at` (a delivery that lost its rider is flagged again if none comes) |
//! | `PickupConfirmed` | `MarkPickedUp` (the delivery's rider) |
//! | `DeliveryCompleted` | `MarkDelivered` |
//! | `OrderDelivered` | card: `CapturePayment` of the order total; cash: `RecordCashCollected` of the order total by the delivery's rider |
//! | `PaymentCaptureFailed` | not final: schedules `capture_retry` (attempt n, `money_retry_backoff`·2ⁿ⁻¹ up to `max_retry_delay`); final (3rd refusal): nothing — the payment is `capture_failed`, metric `ordertrail_payment_captures_given_up_total`, alert `PaymentCaptureGivenUp` (`deploy/alerts/money.yml`) |
//! | `PaymentVoidFailed`, `PaymentRefundFailed` | not final and the order cancelled/rejected: schedules `release_retry` (attempt n, `money_retry_backoff`·2ⁿ⁻¹ up to `max_retry_delay`; its commands' ids derive from the failure event); final (3rd refusal): nothing — the payment is `void_failed` / `refund_failed`, metric `ordertrail_payment_releases_given_up_total{operation}`, alert `PaymentReleaseGivenUp` |
//! | `DeliveryFailed` | `CancelUndeliverableOrder` (see the policy below) |
//! | timer `accept_timeout` | order still confirmed: `CancelOrder` (by system); the `OrderCancelled` releases the money |
//! | timer `assign_timeout` | delivery still waiting for a rider since the event that scheduled it (request, or the last lost rider) and not flagged: `FlagDelivery` (`DeliveryFlagged`, listed by the backoffice) |
//! | timer `pickup_timeout` | the watched assignment is current and the food not picked up: `UnassignRider` (reason `not picked up within …`); the delivery waits for a rider again |
//! | timer `completion_timeout` | the watched assignment is current, assigned or picked up, not flagged: `FlagDelivery` (reason `not completed within …`); the rider keeps the delivery (they may hold the food) |
//! | timer `capture_retry` | order delivered and payment still authorized: `CapturePayment` (new command id; after an unanswered attempt the payment repeats its idempotency key) |
//! | timer `release_retry` | order cancelled/rejected: release again (new command ids; an unanswered call's key is repeated by the payment); a payment given up (`void_failed`, `refund_failed`) is left to ops |
//!
//! # Money under provider faults
//!
//! - **Idempotency keys.** Every provider call carries a key derived from the
//!   command id (`ot-<command id>`, `PaymentServices::for_command`). The
//!   simulated provider (and its ledger, shared by the API and the saga)
//!   answers a repeated key with the first answer and acts once, and refuses
//!   the key with other parameters. A retry of a call whose answer was lost
//!   repeats the key: authorize retries reuse the first attempt's command
//!   id (the timer's `origin`); a capture, void or refund after an
//!   unanswered one reuses that attempt's key (kept on its
//!   `PaymentCaptureFailed` / `PaymentVoidFailed` / `PaymentRefundFailed`).
//! - **Capture failures are events.** A refused or unanswered capture is
//!   `PaymentCaptureFailed` (reason, attempt, answered, final); the payment
//!   stays authorized until captured, or becomes `capture_failed` after
//!   `CAPTURE_ATTEMPTS_MAX` refusals. So no payment stays authorized past
//!   delivery without an event saying why.
//! - **Void and refund failures are events** too: `PaymentVoidFailed` /
//!   `PaymentRefundFailed` (reason, attempt, answered, final), retried from
//!   `release_retry` timers while the order is cancelled/rejected; after
//!   `VOID_ATTEMPTS_MAX` / `REFUND_ATTEMPTS_MAX` refusals the payment is
//!   `void_failed` / `refund_failed` (order history, reconciliation break
//!   `authorization_held` / `refund_outstanding`). So no order ends
//!   cancelled with an authorization held or a capture not refunded without
//!   an event saying why.
//! - **Isolation.** No provider outage is waited out in the consume loop:
//!   payment commands are sent with `ProviderOutage::Report` and
//!   an outage becomes a stored per-order timer; the loop moves on to other
//!   orders' events at once.
//! - **Per-order order.** The retried steps (capture after `OrderDelivered`,
//!   void/refund after `OrderCancelled`/`OrderRejected`, authorize after
//!   `OrderPlaced`) are each the last step of the saga's flow for that order
//!   or gate the next one: no later event of the same order leads the saga
//!   to a reaction that depends on their outcome (an order that waits for
//!   its authorization gets no `OrderConfirmed`; a delivered or ended order
//!   gets no further saga reactions but the payment's own events). Every
//!   retry re-reads the order and payment first, so one that finds the work
//!   done by someone else (ops captured, the customer paid with another
//!   card) does nothing.
//!
//! Every reaction looks at the current state of the aggregates before it
//! acts, so it is correct whichever order events of different aggregates
//! arrive in (for example an authorization that lands after the customer
//! cancelled is voided).
//!
//! # Failed delivery policy
//!
//! A failed delivery (before or after pickup) cancels the order as the
//! system, with reason `delivery failed: <reason>`. The customer is not
//! charged: the card authorization is voided (a captured payment — which the
//! flow never has before delivery — would be refunded in full); a cash order
//! has collected nothing. What the restaurant is owed for food already
//! prepared is for settlement, not for the saga.
//!
//! # Guarantees
//!
//! - **Effectively once.** Every command carries a command id derived from
//!   what caused it (`derived_id(event_id, action)`, or from the timer id),
//!   that event's correlation id, and causation id = the event id. The command
//!   log answers a repeated command id with its first result, so a redelivered
//!   event never acts twice.
//! - **One consumer runtime** ([`ordertrail_platform::consumer`], consumer
//!   name [`SAGA_CONSUMER`]): the saga catches up from the event store, then
//!   follows Kafka; its positions and per-aggregate sequence guard are in
//!   PostgreSQL and recorded after an event's commands are done. A broker
//!   that lost its data, or a topic recreated, is recognised and the saga
//!   recovers from the store (its command ids make re-handling harmless). A
//!   `kill -9` at any moment re-handles at most the events in flight, whose
//!   commands replay.
//! - **Stored timers** (`saga_timers`): timeouts and payment retries survive
//!   restarts; a poller in this process fires them; their commands derive
//!   their ids from the timer (or its `origin`), so a double fire acts once.
//!   A due timer is claimed with a lease (`claimed_until`) in one short
//!   statement and fired with no transaction open: no transaction of ours
//!   spans a command or a provider call. A claim whose holder died runs out
//!   (`timer_lease`) and the timer fires again.
//! - **Failures.** A command the domain refuses because the world moved on
//!   (conflict, not found, …) is a normal outcome: logged at info, the saga
//!   moves on. A store outage or a concurrency conflict is retried in place
//!   with backoff (the event's position does not advance meanwhile; a store
//!   outage stops every order alike). A payment-provider outage is never
//!   retried in place (see above). An internal error, or an event the
//!   saga cannot decode, stalls the saga on that event: it stays up, shows as
//!   `stalled` naming the event (status query, metrics, error log) and tries
//!   again periodically; it never skips one.

mod consumer;
mod dispatch;
mod flow;
pub mod timers;

pub use consumer::SAGA_CONSUMER;

use std::future::Future;
use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio::sync::watch;
use uuid::Uuid;

use ordertrail_platform::consumer::RuntimeConfig;
use ordertrail_platform::retry::Backoff;

use crate::service::{CommandError, CommandService};

/// Aggregates of a batch the saga handles at the same time by default.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The subject of the actor the saga sends commands as (role `system`).
pub const SAGA_SUBJECT: &str = "saga";

/// Default consumer group.
pub const DEFAULT_GROUP_ID: &str = "ordertrail-saga";

/// How the saga runs.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic prefix: `<prefix>.orders`, `.payments`, `.deliveries`.
    pub topic_prefix: String,
    /// Consumer group; also the key of the stored positions.
    pub group_id: String,
    /// A confirmed order not accepted within this time is cancelled.
    pub accept_timeout: Duration,
    /// A requested delivery without a rider after this time is flagged for
    /// ops (counted again from the moment it loses a rider).
    pub assign_timeout: Duration,
    /// A rider who has not picked the food up this long after assignment is
    /// taken off the delivery (`RiderUnassigned`), which waits for a rider
    /// again (and is flagged if none comes within `assign_timeout`).
    pub pickup_timeout: Duration,
    /// A delivery not completed this long after its assignment is flagged
    /// for ops (`DeliveryFlagged`); the rider keeps it (they hold the food).
    pub completion_timeout: Duration,
    /// Delay before the first retry of a failed capture, void or refund;
    /// doubles per retry up to `max_retry_delay`.
    pub money_retry_backoff: Duration,
    /// Longest delay between two stored retries of a provider call.
    pub max_retry_delay: Duration,
    /// How long a claimed timer belongs to this instance before another may
    /// fire it (a claim is given back early on failure).
    pub timer_lease: Duration,
    /// Retries of a card authorization after the provider was unavailable
    /// (besides the first attempt); then the order is cancelled.
    pub payment_retry_limit: u32,
    /// Delay before the first authorization retry; doubles per retry.
    pub payment_retry_backoff: Duration,
    /// How often due timers are looked for.
    pub timer_poll_interval: Duration,
    /// Longest pause between in-place retries (store or provider outage).
    pub max_backoff: Duration,
    /// Most events handled per batch (their positions are recorded after).
    pub batch_size: usize,
    /// Most aggregates of a batch handled at the same time (each
    /// aggregate's events stay in order); 1 handles the batch one event
    /// after the other.
    pub concurrency: usize,
    /// How long the saga waits before trying an event it cannot handle again.
    pub stall_retry: Duration,
    /// This instance's name in the status query (default: host, pid, suffix).
    pub instance: Option<String>,
}

impl SagaConfig {
    pub fn new(
        brokers: impl Into<String>,
        topic_prefix: impl Into<String>,
        group_id: impl Into<String>,
    ) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: topic_prefix.into(),
            group_id: group_id.into(),
            accept_timeout: Duration::from_secs(600),
            assign_timeout: Duration::from_secs(300),
            pickup_timeout: Duration::from_secs(1_800),
            completion_timeout: Duration::from_secs(5_400),
            money_retry_backoff: Duration::from_secs(30),
            max_retry_delay: Duration::from_secs(3_600),
            timer_lease: Duration::from_secs(120),
            payment_retry_limit: 3,
            payment_retry_backoff: Duration::from_secs(5),
            timer_poll_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            batch_size: 200,
            concurrency: DEFAULT_CONCURRENCY,
            stall_retry: Duration::from_secs(30),
            instance: None,
        }
    }
}

/// Why the saga stopped.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("database: {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A message the saga cannot read. It never skips one.
    #[error("cannot handle the message at {at}: {reason}")]
    Undecodable { at: String, reason: String },
    /// A command failed for a reason of our own making.
    #[error("{cause}: command {command} on {aggregate_id} failed: {source}")]
    Command {
        cause: String,
        command: &'static str,
        aggregate_id: String,
        #[source]
        source: CommandError,
    },
    /// The stored state contradicts the flow (e.g. a delivery without order).
    #[error("{cause}: {reason}")]
    Inconsistent { cause: String, reason: String },
}

/// Why a step did not finish: shutdown was requested while it waited, or the
/// saga must stop.
#[derive(Debug)]
pub(crate) enum Halt {
    Stopped,
    Failed(SagaError),
}

impl From<SagaError> for Halt {
    fn from(e: SagaError) -> Self {
        Halt::Failed(e)
    }
}

/// The saga's back-off (the platform's policy, from 100 ms) up to `max`.
pub(crate) fn backoff(attempt: u32, max: Duration) -> Duration {
    Backoff::exponential(Duration::from_millis(100), max).delay(attempt)
}

/// Completes when shutdown is requested (or its sender is gone).
pub(crate) async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = stop.wait_for(|s| *s).await.is_ok();
}

/// Sleep unless shutdown is requested first.
pub(crate) async fn pause(stop: &watch::Receiver<bool>, d: Duration) -> Result<(), Halt> {
    let mut stop = stop.clone();
    tokio::select! {
        () = stopping(&mut stop) => Err(Halt::Stopped),
        () = tokio::time::sleep(d) => Ok(()),
    }
}

/// Whether a database error is worth waiting out (connection trouble, a
/// server restarting) rather than a fault of ours.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // connection exception, admin shutdown / cannot connect now,
            // serialization failure, deadlock
            c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"
        }),
        _ => false,
    }
}

/// Run a bookkeeping query, waiting out transient database failures.
pub(crate) async fn db_retry<T, F, Fut>(
    stop: &watch::Receiver<bool>,
    max_backoff: Duration,
    context: &'static str,
    mut op: F,
) -> Result<T, Halt>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut retries = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) => {
                if retries == 0 {
                    tracing::warn!(error = %e, context, "database unavailable; retrying with backoff");
                }
            }
            Err(source) => return Err(Halt::Failed(SagaError::Database { context, source })),
        }
        retries = retries.saturating_add(1);
        metrics::counter!("ordertrail_saga_retries_total", "command" => "none", "reason" => "database_unavailable")
            .increment(1);
        pause(stop, backoff(retries, max_backoff)).await?;
    }
}

/// Run the saga until `shutdown` completes (`Ok`) or it must stop (`Err`
/// naming the event or timer). PostgreSQL and Kafka outages are waited out.
pub async fn run(
    config: SagaConfig,
    service: CommandService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SagaError> {
    let (stop_tx, stop) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let pool = service.pool().clone();
    let dispatch = dispatch::Dispatcher::new(service, stop.clone(), config.max_backoff);
    let flow = flow::Flow::new(dispatch, pool.clone(), &config);
    let mut runtime = RuntimeConfig::new(
        config.brokers.clone(),
        config.topic_prefix.clone(),
        config.group_id.clone(),
    );
    runtime.tick = config.timer_poll_interval;
    runtime.max_backoff = config.max_backoff;
    runtime.batch_size = config.batch_size;
    runtime.stall_retry = config.stall_retry;
    if let Some(instance) = &config.instance {
        runtime.instance = instance.clone();
    }
    let handler = consumer::SagaHandler {
        pool: pool.clone(),
        flow,
        instance: runtime.instance.clone(),
        timer_lease: config.timer_lease,
        concurrency: config.concurrency.max(1),
    };
    let mut stopped = stop.clone();
    let result = ordertrail_platform::consumer::run(handler, runtime, pool, async move {
        stopping(&mut stopped).await;
    })
    .await;
    watcher.abort();
    result.map_err(|e| match e {
        ordertrail_platform::consumer::RuntimeError::Database { context, source } => {
            SagaError::Database { context, source }
        }
    })
}

/// Namespace of the ids of stored timers.
const TIMER_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7274_7261_696c_0000_0000_0005);
