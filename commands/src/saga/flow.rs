//! The reactions: which commands each event and each due timer leads to
//! (the table in the module documentation of [`super`]).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ordertrail_domain::delivery::{CancelDelivery, FlagDelivery};
use ordertrail_domain::order::{
    CancelOrder, CancelUndeliverableOrder, ConfirmOrder, MarkDelivered, MarkPickedUp,
};
use ordertrail_domain::payment::{
    AuthorizePayment, CapturePayment, RecordCashCollected, RefundPayment, VoidPayment,
};
use ordertrail_domain::{Delivery, DeliveryStatus, Order, OrderStatus, Payment, PaymentStatus};
use ordertrail_schemas::events::PaymentMethod;
use ordertrail_schemas::{
    ActorRole, AggregateKind, DeliveryEvent, DeliveryId, EventEnvelope, OrderEvent, OrderId,
    PaymentEvent, PaymentId,
};
use sqlx::{PgConnection, PgPool};

use super::dispatch::{Cause, Dispatcher, ProviderOutage, SagaCommand, Sent};
use super::timers::{self, DueTimer, NewTimer, TimerKind};
use super::{Halt, SagaConfig, SagaError, db_retry};

/// A decoded event of one of the three aggregate types.
#[derive(Debug, Clone)]
// One event lives at a time; `OrderPlaced` is large, as in the event enums.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SagaEvent {
    Order(OrderEvent),
    Payment(PaymentEvent),
    Delivery(DeliveryEvent),
}

/// Decode an envelope's payload; the event type and version must be ones
/// this saga knows.
pub(crate) fn decode(envelope: &EventEnvelope) -> Result<SagaEvent, String> {
    let known = |types: &[(&str, &str)]| {
        types
            .iter()
            .any(|(t, v)| *t == envelope.event_type && *v == envelope.event_version)
    };
    let known = match envelope.aggregate_type {
        AggregateKind::Order => known(OrderEvent::TYPES),
        AggregateKind::Payment => known(PaymentEvent::TYPES),
        AggregateKind::Delivery => known(DeliveryEvent::TYPES),
    };
    if !known {
        return Err(format!(
            "unknown {} event type {} version {}",
            envelope.aggregate_type, envelope.event_type, envelope.event_version
        ));
    }
    let event = match envelope.aggregate_type {
        AggregateKind::Order => envelope.decode().map(SagaEvent::Order),
        AggregateKind::Payment => envelope.decode().map(SagaEvent::Payment),
        AggregateKind::Delivery => envelope.decode().map(SagaEvent::Delivery),
    };
    event.map_err(|e| format!("cannot decode the payload: {e}"))
}

/// Whether handling an event sent commands or stored timers (its position is
/// then written at once) or did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    Acted,
    Nothing,
}

/// What an authorization attempt leads to.
enum Authorization {
    /// The provider answered: authorized or declined.
    Answered,
    /// The order no longer waits for payment, or the payment has an answer.
    NotNeeded,
    /// The provider was unavailable: try again at this timer.
    RetryAt(NewTimer),
    /// The provider was unavailable too often: the order was cancelled.
    GaveUp,
}

pub(crate) struct Flow {
    dispatch: Dispatcher,
    pool: PgPool,
    accept_timeout: Duration,
    assign_timeout: Duration,
    payment_retry_limit: u32,
    payment_retry_backoff: Duration,
    max_backoff: Duration,
}

/// Longest delay between two authorization attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(delta(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn parse_id<T: std::str::FromStr>(cause: &Cause, what: &str, id: &str) -> Result<T, Halt> {
    id.parse().map_err(|_| {
        Halt::Failed(SagaError::Inconsistent {
            cause: cause.label.clone(),
            reason: format!("{what} id {id:?} is not a UUID"),
        })
    })
}

impl Flow {
    pub fn new(dispatch: Dispatcher, pool: PgPool, config: &SagaConfig) -> Self {
        Self {
            dispatch,
            pool,
            accept_timeout: config.accept_timeout,
            assign_timeout: config.assign_timeout,
            payment_retry_limit: config.payment_retry_limit,
            payment_retry_backoff: config.payment_retry_backoff,
            max_backoff: config.max_backoff,
        }
    }

    // ------------------------------------------------------------ events

    /// React to one event of aggregate `aggregate_id`.
    pub async fn on_event(
        &self,
        cause: &Cause,
        aggregate_id: &str,
        event: SagaEvent,
    ) -> Result<Handled, Halt> {
        match event {
            SagaEvent::Order(e) => {
                let order_id: OrderId = parse_id(cause, "order", aggregate_id)?;
                self.on_order_event(cause, order_id, e).await
            }
            SagaEvent::Payment(e) => self.on_payment_event(cause, e).await,
            SagaEvent::Delivery(e) => {
                let delivery_id: DeliveryId = parse_id(cause, "delivery", aggregate_id)?;
                self.on_delivery_event(cause, delivery_id, e).await
            }
        }
    }

    async fn on_order_event(
        &self,
        cause: &Cause,
        order_id: OrderId,
        event: OrderEvent,
    ) -> Result<Handled, Halt> {
        match event {
            OrderEvent::OrderPlaced(placed) => match placed.payment_method {
                PaymentMethod::Card { .. } => match self.authorize(cause, order_id, 0).await? {
                    Authorization::RetryAt(timer) => self.schedule(cause, &timer).await?,
                    Authorization::Answered | Authorization::NotNeeded | Authorization::GaveUp => {}
                },
                PaymentMethod::Cash => {
                    let confirm = ConfirmOrder {
                        payment_id: None,
                        now: Utc::now(),
                    };
                    self.send_order(cause, "confirm_order", order_id, confirm.into())
                        .await?;
                }
            },
            OrderEvent::OrderConfirmed(confirmed) => {
                let timer = NewTimer {
                    kind: TimerKind::AcceptTimeout,
                    aggregate_id: order_id.to_string(),
                    attempt: 0,
                    due_at: after(confirmed.confirmed_at, self.accept_timeout),
                    correlation_id: cause.correlation_id,
                    causation_id: cause.causation_id,
                };
                self.schedule(cause, &timer).await?;
            }
            OrderEvent::OrderAccepted(_) => {
                let order = self.order(cause, order_id).await?;
                if order.status().is_some_and(|s| s.is_final()) {
                    tracing::info!(%cause, %order_id, status = ?order.status(), "order already ended; no delivery requested");
                    return Ok(Handled::Nothing);
                }
                self.dispatch
                    .send(
                        cause,
                        "request_delivery",
                        SagaCommand::RequestDelivery(order_id),
                        ProviderOutage::Wait,
                    )
                    .await?;
            }
            OrderEvent::OrderRejected(rejected) => {
                let reason = format!("order rejected by the restaurant: {}", rejected.reason);
                self.release(cause, order_id, &reason).await?;
            }
            OrderEvent::OrderCancelled(cancelled) => {
                let reason = format!("order cancelled: {}", cancelled.reason);
                self.release(cause, order_id, &reason).await?;
            }
            OrderEvent::OrderDelivered(_) => self.take_payment(cause, order_id).await?,
            OrderEvent::OrderReadyForPickup(_) | OrderEvent::OrderPickedUp(_) => {
                return Ok(Handled::Nothing);
            }
        }
        Ok(Handled::Acted)
    }

    async fn on_payment_event(&self, cause: &Cause, event: PaymentEvent) -> Result<Handled, Halt> {
        match event {
            PaymentEvent::PaymentAuthorized(authorized) => {
                let order_id = authorized.order_id;
                let confirm = ConfirmOrder {
                    payment_id: Some(authorized.payment_id),
                    now: Utc::now(),
                };
                let sent = self
                    .send_order(cause, "confirm_order", order_id, confirm.into())
                    .await?;
                if let Sent::Refused { .. } = sent {
                    // The order ended while the card was authorized: release it.
                    let order = self.order(cause, order_id).await?;
                    if matches!(
                        order.status(),
                        Some(OrderStatus::Cancelled | OrderStatus::Rejected)
                    ) {
                        self.send_payment(
                            cause,
                            "void_payment",
                            authorized.payment_id,
                            VoidPayment { now: Utc::now() }.into(),
                        )
                        .await?;
                    }
                }
            }
            PaymentEvent::PaymentDeclined(declined) => {
                // The customer may have retried with another card since this
                // decline (POST /v1/payments): cancel only while the payment's
                // last answer is still this decline.
                let payment = self.payment(cause, declined.payment_id).await?;
                let status = payment.as_ref().and_then(Payment::status);
                if status != Some(PaymentStatus::Declined) {
                    tracing::info!(%cause, order_id = %declined.order_id, ?status, "payment no longer declined (a retry succeeded); not cancelling");
                    return Ok(Handled::Nothing);
                }
                let cancel = CancelOrder {
                    reason: format!("payment declined: {}", declined.decline_code),
                    by: ActorRole::System,
                    now: Utc::now(),
                };
                self.send_order(cause, "cancel_order", declined.order_id, cancel.into())
                    .await?;
            }
            PaymentEvent::PaymentCaptured(_)
            | PaymentEvent::PaymentVoided(_)
            | PaymentEvent::PaymentRefunded(_)
            | PaymentEvent::CashCollected(_) => return Ok(Handled::Nothing),
        }
        Ok(Handled::Acted)
    }

    async fn on_delivery_event(
        &self,
        cause: &Cause,
        delivery_id: DeliveryId,
        event: DeliveryEvent,
    ) -> Result<Handled, Halt> {
        match event {
            DeliveryEvent::DeliveryRequested(requested) => {
                let timer = NewTimer {
                    kind: TimerKind::AssignTimeout,
                    aggregate_id: delivery_id.to_string(),
                    attempt: 0,
                    due_at: after(requested.requested_at, self.assign_timeout),
                    correlation_id: cause.correlation_id,
                    causation_id: cause.causation_id,
                };
                self.schedule(cause, &timer).await?;
            }
            DeliveryEvent::PickupConfirmed(pickup) => {
                let order_id = self.order_of(cause, delivery_id).await?;
                let command = MarkPickedUp {
                    rider_id: pickup.rider_id,
                    now: pickup.picked_up_at,
                };
                self.send_order(cause, "mark_picked_up", order_id, command.into())
                    .await?;
            }
            DeliveryEvent::DeliveryCompleted(completed) => {
                let order_id = self.order_of(cause, delivery_id).await?;
                // Business time: the order was delivered when the rider
                // completed the hand-over, not when the saga got to it (the
                // settlement day follows `delivered_at`).
                let command = MarkDelivered {
                    now: completed.completed_at,
                };
                self.send_order(cause, "mark_delivered", order_id, command.into())
                    .await?;
            }
            DeliveryEvent::DeliveryFailed(failed) => {
                let order_id = self.order_of(cause, delivery_id).await?;
                let command = CancelUndeliverableOrder {
                    reason: format!("delivery failed: {}", failed.reason),
                    now: Utc::now(),
                };
                self.send_order(cause, "cancel_order", order_id, command.into())
                    .await?;
            }
            DeliveryEvent::RiderAssigned(_)
            | DeliveryEvent::RiderUnassigned(_)
            | DeliveryEvent::RiderLocationReported(_)
            | DeliveryEvent::DropoffCodeRejected(_)
            | DeliveryEvent::DeliveryCancelled(_)
            | DeliveryEvent::DeliveryFlagged(_) => return Ok(Handled::Nothing),
        }
        Ok(Handled::Acted)
    }

    // ------------------------------------------------------------ steps

    /// Authorize the order total on the order's card, unless the order no
    /// longer waits for payment or the payment already has an answer.
    /// `retries` is how many retries came before this attempt.
    async fn authorize(
        &self,
        cause: &Cause,
        order_id: OrderId,
        retries: u32,
    ) -> Result<Authorization, Halt> {
        let order = self.order(cause, order_id).await?;
        if order.status() != Some(OrderStatus::Placed) {
            tracing::info!(%cause, %order_id, status = ?order.status(), "order no longer waits for payment; not authorizing");
            return Ok(Authorization::NotNeeded);
        }
        let payment_id = PaymentId::for_order(order_id);
        if let Some(payment) = self.payment(cause, payment_id).await? {
            tracing::info!(%cause, %order_id, status = ?payment.status(), "payment already has an answer; not authorizing again");
            return Ok(Authorization::NotNeeded);
        }
        let placed = order
            .placed()
            .ok_or_else(|| inconsistent(cause, "placed order without placement"))?;
        let PaymentMethod::Card { payment_method_ref } = &placed.payment_method else {
            return Ok(Authorization::NotNeeded);
        };
        let command = AuthorizePayment {
            payment_id,
            order_id,
            restaurant_id: placed.restaurant_id,
            amount: placed.price.total,
            payment_method_ref: payment_method_ref.clone(),
            now: Utc::now(),
        };
        let sent = self
            .dispatch
            .send(
                cause,
                "authorize_payment",
                SagaCommand::Payment(payment_id, command.into()),
                ProviderOutage::Report,
            )
            .await?;
        match sent {
            Sent::Applied { .. } => return Ok(Authorization::Answered),
            Sent::Refused { .. } => return Ok(Authorization::NotNeeded),
            Sent::ProviderUnavailable => {}
        }
        if retries < self.payment_retry_limit {
            let retry = retries.saturating_add(1);
            let delay = self
                .payment_retry_backoff
                .saturating_mul(1u32 << retries.min(16))
                .min(MAX_RETRY_DELAY);
            metrics::counter!("ordertrail_saga_retries_total", "command" => "AuthorizePayment", "reason" => "provider_unavailable_stored")
                .increment(1);
            tracing::info!(%cause, %order_id, retry, of = self.payment_retry_limit, delay_ms = delay.as_millis() as u64, "payment provider unavailable; authorization retry stored");
            return Ok(Authorization::RetryAt(NewTimer {
                kind: TimerKind::AuthorizeRetry,
                aggregate_id: order_id.to_string(),
                attempt: i32::try_from(retry).unwrap_or(i32::MAX),
                due_at: after(Utc::now(), delay),
                correlation_id: cause.correlation_id,
                causation_id: cause.causation_id,
            }));
        }
        let attempts = retries.saturating_add(1);
        tracing::warn!(%cause, %order_id, attempts, "payment provider unavailable on every attempt; cancelling the order");
        let cancel = CancelOrder {
            reason: format!("payment provider unavailable after {attempts} attempts"),
            by: ActorRole::System,
            now: Utc::now(),
        };
        self.send_order(cause, "cancel_order", order_id, cancel.into())
            .await?;
        Ok(Authorization::GaveUp)
    }

    /// Release the money and the delivery of an order that ended without
    /// delivery: void an authorization, refund what was captured, cancel a
    /// delivery that has not been picked up.
    async fn release(&self, cause: &Cause, order_id: OrderId, reason: &str) -> Result<(), Halt> {
        let payment_id = PaymentId::for_order(order_id);
        if let Some(payment) = self.payment(cause, payment_id).await? {
            match payment.status() {
                Some(PaymentStatus::Authorized) => {
                    self.send_payment(
                        cause,
                        "void_payment",
                        payment_id,
                        VoidPayment { now: Utc::now() }.into(),
                    )
                    .await?;
                }
                Some(PaymentStatus::Captured | PaymentStatus::PartiallyRefunded) => {
                    if let Some(amount) = payment.refundable_amount().filter(|m| m.amount > 0) {
                        let order = self.order(cause, order_id).await?;
                        let refund = RefundPayment {
                            amount,
                            reason: reason.to_owned(),
                            order_price: order.price().cloned(),
                            now: Utc::now(),
                        };
                        self.send_payment(cause, "refund_payment", payment_id, refund.into())
                            .await?;
                    }
                }
                status => {
                    tracing::debug!(%cause, %order_id, ?status, "no money to release");
                }
            }
        }
        let delivery_id = DeliveryId::for_order(order_id);
        if let Some(delivery) = self.delivery(cause, delivery_id).await?
            && matches!(
                delivery.status(),
                Some(DeliveryStatus::Requested | DeliveryStatus::Assigned)
            )
        {
            let cancel = CancelDelivery {
                reason: reason.to_owned(),
                now: Utc::now(),
            };
            self.dispatch
                .send(
                    cause,
                    "cancel_delivery",
                    SagaCommand::Delivery(delivery_id, cancel.into()),
                    ProviderOutage::Wait,
                )
                .await?;
        }
        Ok(())
    }

    /// The order was delivered: capture the card payment, or record the cash
    /// the delivery's rider collected — the order total either way.
    async fn take_payment(&self, cause: &Cause, order_id: OrderId) -> Result<(), Halt> {
        let order = self.order(cause, order_id).await?;
        if order.status() != Some(OrderStatus::Delivered) {
            tracing::info!(%cause, %order_id, status = ?order.status(), "order not delivered; no payment taken");
            return Ok(());
        }
        let placed = order
            .placed()
            .ok_or_else(|| inconsistent(cause, "delivered order without placement"))?;
        let total = placed.price.total;
        match &placed.payment_method {
            PaymentMethod::Card { .. } => {
                let payment_id = order.payment_id().unwrap_or(PaymentId::for_order(order_id));
                let capture = CapturePayment {
                    amount: Some(total),
                    order_delivered: true,
                    override_reason: None,
                    now: Utc::now(),
                };
                self.send_payment(cause, "capture_payment", payment_id, capture.into())
                    .await?;
            }
            PaymentMethod::Cash => {
                let delivery = self
                    .delivery(cause, DeliveryId::for_order(order_id))
                    .await?;
                let rider_id = delivery
                    .and_then(|d| d.assigned_rider())
                    .or(order.rider_id())
                    .ok_or_else(|| inconsistent(cause, "cash order delivered without a rider"))?;
                let payment_id = PaymentId::for_order(order_id);
                let record = RecordCashCollected {
                    payment_id,
                    order_id,
                    restaurant_id: placed.restaurant_id,
                    amount: total,
                    rider_id,
                    now: Utc::now(),
                };
                self.send_payment(cause, "record_cash_collected", payment_id, record.into())
                    .await?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ timers

    /// Fire a due timer inside the transaction that claimed it; returns what
    /// it did (stored as the timer's outcome).
    pub async fn fire(
        &self,
        tx: &mut PgConnection,
        timer: &DueTimer,
    ) -> Result<&'static str, Halt> {
        let cause = Cause {
            origin: timer.timer_id,
            correlation_id: timer.correlation_id,
            causation_id: timer.causation_id,
            label: format!(
                "timer {} ({} #{} of {}, due {})",
                timer.timer_id, timer.kind, timer.attempt, timer.aggregate_id, timer.due_at
            ),
        };
        let cause = &cause;
        match timer.kind {
            TimerKind::AcceptTimeout => {
                let order_id: OrderId = parse_id(cause, "order", &timer.aggregate_id)?;
                let order = self.order(cause, order_id).await?;
                if order.status() != Some(OrderStatus::Confirmed) {
                    return Ok("no_longer_needed");
                }
                tracing::info!(%cause, %order_id, "order not accepted in time; cancelling");
                let cancel = CancelOrder {
                    reason: format!(
                        "not accepted by the restaurant within {} s",
                        self.accept_timeout.as_secs()
                    ),
                    by: ActorRole::System,
                    now: Utc::now(),
                };
                Ok(
                    match self
                        .send_order(cause, "cancel_order", order_id, cancel.into())
                        .await?
                    {
                        Sent::Applied { .. } => "order_cancelled",
                        Sent::Refused { .. } | Sent::ProviderUnavailable => "no_longer_needed",
                    },
                )
            }
            TimerKind::AssignTimeout => {
                let delivery_id: DeliveryId = parse_id(cause, "delivery", &timer.aggregate_id)?;
                let Some(delivery) = self.delivery(cause, delivery_id).await? else {
                    return Err(inconsistent(cause, "the delivery does not exist"));
                };
                if delivery.status() != Some(DeliveryStatus::Requested) || delivery.is_flagged() {
                    return Ok("no_longer_needed");
                }
                tracing::info!(%cause, %delivery_id, "no rider assigned in time; flagging for ops");
                let flag = FlagDelivery {
                    reason: format!(
                        "no rider assigned within {} s",
                        self.assign_timeout.as_secs()
                    ),
                    now: Utc::now(),
                };
                let sent = self
                    .dispatch
                    .send(
                        cause,
                        "flag_delivery",
                        SagaCommand::Delivery(delivery_id, flag.into()),
                        ProviderOutage::Wait,
                    )
                    .await?;
                Ok(match sent {
                    Sent::Applied { .. } => "delivery_flagged",
                    Sent::Refused { .. } | Sent::ProviderUnavailable => "no_longer_needed",
                })
            }
            TimerKind::AuthorizeRetry => {
                let order_id: OrderId = parse_id(cause, "order", &timer.aggregate_id)?;
                let retries = u32::try_from(timer.attempt).unwrap_or(0);
                match self.authorize(cause, order_id, retries).await? {
                    Authorization::Answered => Ok("provider_answered"),
                    Authorization::NotNeeded => Ok("no_longer_needed"),
                    Authorization::GaveUp => Ok("order_cancelled"),
                    Authorization::RetryAt(next) => {
                        timers::schedule(&mut *tx, &next).await.map_err(|source| {
                            Halt::Failed(SagaError::Database {
                                context: "schedule the next authorization retry",
                                source,
                            })
                        })?;
                        Ok("retry_scheduled")
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ helpers

    async fn schedule(&self, cause: &Cause, timer: &NewTimer) -> Result<(), Halt> {
        let new = db_retry(
            self.dispatch.stop(),
            self.max_backoff,
            "store a timer",
            || timers::schedule(&self.pool, timer),
        )
        .await?;
        if new {
            tracing::info!(%cause, kind = %timer.kind, aggregate_id = %timer.aggregate_id, attempt = timer.attempt, due_at = %timer.due_at, "timer stored");
        }
        Ok(())
    }

    async fn send_order(
        &self,
        cause: &Cause,
        action: &str,
        order_id: OrderId,
        command: ordertrail_domain::OrderCommand,
    ) -> Result<Sent, Halt> {
        self.dispatch
            .send(
                cause,
                action,
                SagaCommand::Order(order_id, command),
                ProviderOutage::Wait,
            )
            .await
    }

    async fn send_payment(
        &self,
        cause: &Cause,
        action: &str,
        payment_id: PaymentId,
        command: ordertrail_domain::PaymentCommand,
    ) -> Result<Sent, Halt> {
        self.dispatch
            .send(
                cause,
                action,
                SagaCommand::Payment(payment_id, command),
                ProviderOutage::Wait,
            )
            .await
    }

    /// The order, which must exist.
    async fn order(&self, cause: &Cause, order_id: OrderId) -> Result<Order, Halt> {
        let service = self.dispatch.service();
        self.dispatch
            .read(cause, "order", || service.load_order(order_id))
            .await?
            .map(|(order, _)| order)
            .ok_or_else(|| inconsistent(cause, &format!("order {order_id} does not exist")))
    }

    async fn payment(&self, cause: &Cause, payment_id: PaymentId) -> Result<Option<Payment>, Halt> {
        let service = self.dispatch.service();
        Ok(self
            .dispatch
            .read(cause, "payment", || service.load_payment(payment_id))
            .await?
            .map(|(payment, _)| payment))
    }

    async fn delivery(
        &self,
        cause: &Cause,
        delivery_id: DeliveryId,
    ) -> Result<Option<Delivery>, Halt> {
        let service = self.dispatch.service();
        Ok(self
            .dispatch
            .read(cause, "delivery", || service.load_delivery(delivery_id))
            .await?
            .map(|(delivery, _)| delivery))
    }

    /// The order a delivery is for.
    async fn order_of(&self, cause: &Cause, delivery_id: DeliveryId) -> Result<OrderId, Halt> {
        self.delivery(cause, delivery_id)
            .await?
            .and_then(|d| d.order_id())
            .ok_or_else(|| inconsistent(cause, &format!("delivery {delivery_id} does not exist")))
    }
}

fn inconsistent(cause: &Cause, reason: &str) -> Halt {
    Halt::Failed(SagaError::Inconsistent {
        cause: cause.label.clone(),
        reason: reason.to_owned(),
    })
}
