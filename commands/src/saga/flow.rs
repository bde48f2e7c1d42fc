//! The reactions: which commands each event and each due timer leads to
//! (the table in the module documentation of [`super`]).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ordertrail_domain::delivery::{CancelDelivery, FlagDelivery, UnassignRider};
use ordertrail_domain::order::CancelUndeliverableOrder;
use ordertrail_domain::payment::{RefundPayment, VoidPayment};
use ordertrail_domain::{Delivery, DeliveryStatus, Order, OrderStatus, Payment, PaymentStatus};
use ordertrail_schemas::events::{Event, PaymentMethod};
use ordertrail_schemas::{DeliveryEvent, DeliveryId, OrderEvent, OrderId, PaymentEvent, PaymentId};
use sqlx::PgPool;
use uuid::Uuid;

use super::dispatch::{Cause, Dispatcher, ProviderOutage, SagaCommand, Sent};
use super::timers::{self, DueTimer, NewTimer, TimerKind};
use super::{Halt, SagaConfig, SagaError, db_retry};
use crate::workflows::{
    AuthorizePayment, CancelOrder, CapturePayment, ConfirmOrder, MarkDelivered, MarkPickedUp,
    RecordCashCollected, RequestDelivery, Workflow,
};

/// Whether handling an event sent commands or stored timers (its position is
/// then written at once) or did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    Acted,
    Nothing,
}

/// A failed void or refund, as the saga reacts to it.
struct ReleaseFailure<'a> {
    /// `void` or `refund`.
    operation: &'static str,
    attempt: u32,
    answered: bool,
    final_attempt: bool,
    decline_code: &'a str,
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
    pickup_timeout: Duration,
    completion_timeout: Duration,
    payment_retry_limit: u32,
    payment_retry_backoff: Duration,
    money_retry_backoff: Duration,
    max_retry_delay: Duration,
    max_backoff: Duration,
}

/// `base` doubled per earlier retry (`retry` from 1), at most `max`.
fn retry_delay(base: Duration, retry: u32, max: Duration) -> Duration {
    base.saturating_mul(1u32 << retry.saturating_sub(1).min(16))
        .min(max)
}

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
    pub(crate) fn new(dispatch: Dispatcher, pool: PgPool, config: &SagaConfig) -> Self {
        Self {
            dispatch,
            pool,
            accept_timeout: config.accept_timeout,
            assign_timeout: config.assign_timeout,
            pickup_timeout: config.pickup_timeout,
            completion_timeout: config.completion_timeout,
            payment_retry_limit: config.payment_retry_limit,
            payment_retry_backoff: config.payment_retry_backoff,
            money_retry_backoff: config.money_retry_backoff,
            max_retry_delay: config.max_retry_delay,
            max_backoff: config.max_backoff,
        }
    }

    // ------------------------------------------------------------ events

    /// React to one event of aggregate `aggregate_id`.
    pub(crate) async fn on_event(
        &self,
        cause: &Cause,
        aggregate_id: &str,
        event: Event,
    ) -> Result<Handled, Halt> {
        match event {
            Event::Order(e) => {
                let order_id: OrderId = parse_id(cause, "order", aggregate_id)?;
                self.on_order_event(cause, order_id, e).await
            }
            Event::Payment(e) => {
                let payment_id: PaymentId = parse_id(cause, "payment", aggregate_id)?;
                self.on_payment_event(cause, payment_id, e).await
            }
            Event::Delivery(e) => {
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
                    self.run(cause, "confirm_order", ConfirmOrder { order_id })
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
                    origin: None,
                };
                self.schedule(cause, &timer).await?;
            }
            OrderEvent::OrderAccepted(_) => {
                let order = self.order(cause, order_id).await?;
                if order.status().is_some_and(|s| s.is_final()) {
                    tracing::info!(%cause, %order_id, status = ?order.status(), "order already ended; no delivery requested");
                    return Ok(Handled::Nothing);
                }
                self.run(cause, "request_delivery", RequestDelivery { order_id })
                    .await?;
            }
            OrderEvent::OrderRejected(rejected) => {
                let reason = format!("order rejected by the restaurant: {}", rejected.reason);
                self.release(cause, order_id, &reason, 0).await?;
            }
            OrderEvent::OrderCancelled(cancelled) => {
                let reason = format!("order cancelled: {}", cancelled.reason);
                self.release(cause, order_id, &reason, 0).await?;
            }
            OrderEvent::OrderDelivered(_) => {
                self.take_payment(cause, order_id).await?;
            }
            OrderEvent::OrderReadyForPickup(_) | OrderEvent::OrderPickedUp(_) => {
                return Ok(Handled::Nothing);
            }
        }
        Ok(Handled::Acted)
    }

    async fn on_payment_event(
        &self,
        cause: &Cause,
        payment_id: PaymentId,
        event: PaymentEvent,
    ) -> Result<Handled, Halt> {
        match event {
            PaymentEvent::PaymentAuthorized(authorized) => {
                let order_id = authorized.order_id;
                let sent = self
                    .run(cause, "confirm_order", ConfirmOrder { order_id })
                    .await?;
                if let Sent::Refused { .. } = sent {
                    // The order ended while the card was authorized: release it.
                    let order = self.order(cause, order_id).await?;
                    if matches!(
                        order.status(),
                        Some(OrderStatus::Cancelled | OrderStatus::Rejected)
                    ) {
                        self.release(cause, order_id, "order ended while authorizing", 0)
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
                    order_id: declined.order_id,
                    reason: format!("payment declined: {}", declined.decline_code),
                };
                self.run(cause, "cancel_order", cancel).await?;
            }
            PaymentEvent::PaymentCaptureFailed(failed) => {
                let answered = if failed.answered {
                    "refused"
                } else {
                    "unanswered"
                };
                metrics::counter!("ordertrail_payment_capture_failures_total", "answer" => answered, "final" => if failed.final_attempt { "true" } else { "false" })
                    .increment(1);
                let payment = self.payment(cause, payment_id).await?;
                let Some(order_id) = payment.as_ref().and_then(Payment::order_id) else {
                    return Err(inconsistent(
                        cause,
                        "capture failed on a payment that does not exist",
                    ));
                };
                if failed.final_attempt {
                    metrics::counter!("ordertrail_payment_captures_given_up_total").increment(1);
                    tracing::warn!(%cause, %order_id, %payment_id, attempt = failed.attempt, code = %failed.decline_code, "capture refused too often; given up to ops (payment status capture_failed)");
                    return Ok(Handled::Nothing);
                }
                let timer = self.money_retry(
                    cause,
                    TimerKind::CaptureRetry,
                    order_id,
                    failed.attempt.max(1),
                    None,
                );
                tracing::info!(%cause, %order_id, attempt = failed.attempt, code = %failed.decline_code, answered = failed.answered, due_at = %timer.due_at, "capture failed; retry stored");
                self.schedule(cause, &timer).await?;
            }
            PaymentEvent::PaymentVoidFailed(failed) => {
                let failure = ReleaseFailure {
                    operation: "void",
                    attempt: failed.attempt,
                    answered: failed.answered,
                    final_attempt: failed.final_attempt,
                    decline_code: &failed.decline_code,
                };
                return self.on_release_failed(cause, payment_id, failure).await;
            }
            PaymentEvent::PaymentRefundFailed(failed) => {
                let failure = ReleaseFailure {
                    operation: "refund",
                    attempt: failed.attempt,
                    answered: failed.answered,
                    final_attempt: failed.final_attempt,
                    decline_code: &failed.decline_code,
                };
                return self.on_release_failed(cause, payment_id, failure).await;
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
                    origin: None,
                };
                self.schedule(cause, &timer).await?;
            }
            DeliveryEvent::RiderAssigned(assigned) => {
                // Both watch this assignment (origin = this event): the rider
                // must pick up, then complete, in time.
                for (kind, timeout) in [
                    (TimerKind::PickupTimeout, self.pickup_timeout),
                    (TimerKind::CompletionTimeout, self.completion_timeout),
                ] {
                    let timer = NewTimer {
                        kind,
                        aggregate_id: delivery_id.to_string(),
                        attempt: 0,
                        due_at: after(assigned.assigned_at, timeout),
                        correlation_id: cause.correlation_id,
                        causation_id: cause.causation_id,
                        origin: Some(cause.origin),
                    };
                    self.schedule(cause, &timer).await?;
                }
            }
            DeliveryEvent::RiderUnassigned(unassigned) => {
                // The delivery lost its rider and waits again: a new
                // assignment timeout, counted from now.
                let timer = NewTimer {
                    kind: TimerKind::AssignTimeout,
                    aggregate_id: delivery_id.to_string(),
                    attempt: 0,
                    due_at: after(unassigned.unassigned_at, self.assign_timeout),
                    correlation_id: cause.correlation_id,
                    causation_id: cause.causation_id,
                    origin: Some(cause.origin),
                };
                self.schedule(cause, &timer).await?;
            }
            DeliveryEvent::PickupConfirmed(pickup) => {
                let order_id = self.order_of(cause, delivery_id).await?;
                let command = MarkPickedUp {
                    order_id,
                    rider_id: pickup.rider_id,
                    at: Some(pickup.picked_up_at),
                };
                self.run(cause, "mark_picked_up", command).await?;
            }
            DeliveryEvent::DeliveryCompleted(completed) => {
                let order_id = self.order_of(cause, delivery_id).await?;
                // Business time: the order was delivered when the rider
                // completed the hand-over, not when the saga got to it (the
                // settlement day follows `delivered_at`).
                let command = MarkDelivered {
                    order_id,
                    at: Some(completed.completed_at),
                };
                self.run(cause, "mark_delivered", command).await?;
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
            DeliveryEvent::RiderLocationReported(_)
            | DeliveryEvent::DropoffCodeRejected(_)
            | DeliveryEvent::DeliveryCancelled(_)
            | DeliveryEvent::DeliveryFlagged(_) => return Ok(Handled::Nothing),
        }
        Ok(Handled::Acted)
    }

    /// A void or refund failed (`PaymentVoidFailed` / `PaymentRefundFailed`).
    /// Not final, and the order ended without delivery: a `release_retry`
    /// timer (attempt n, `money_retry_backoff`·2ⁿ⁻¹ up to
    /// `max_retry_delay`) releases again with new command ids derived from
    /// this failure (an unanswered call's key is repeated by the payment).
    /// Final: given up to ops (metric, alert); nothing retries it. A
    /// failure of a void or refund ops asked for on a live order is theirs
    /// to retry (the API answered them with it).
    async fn on_release_failed(
        &self,
        cause: &Cause,
        payment_id: PaymentId,
        failure: ReleaseFailure<'_>,
    ) -> Result<Handled, Halt> {
        let ReleaseFailure {
            operation,
            attempt,
            answered,
            final_attempt,
            decline_code,
        } = failure;
        let answer = if answered { "refused" } else { "unanswered" };
        let is_final = if final_attempt { "true" } else { "false" };
        metrics::counter!("ordertrail_payment_release_failures_total", "operation" => operation, "answer" => answer, "final" => is_final)
            .increment(1);
        let payment = self.payment(cause, payment_id).await?;
        let Some(order_id) = payment.as_ref().and_then(Payment::order_id) else {
            return Err(inconsistent(
                cause,
                "a void or refund failed on a payment that does not exist",
            ));
        };
        if final_attempt {
            metrics::counter!("ordertrail_payment_releases_given_up_total", "operation" => operation)
                .increment(1);
            tracing::warn!(%cause, %order_id, %payment_id, operation, attempt, code = decline_code, "{operation} refused too often; given up to ops (payment status {operation}_failed)");
            return Ok(Handled::Nothing);
        }
        let order = self.order(cause, order_id).await?;
        if !matches!(
            order.status(),
            Some(OrderStatus::Cancelled | OrderStatus::Rejected)
        ) {
            tracing::info!(%cause, %order_id, operation, status = ?order.status(), "a void or refund failed on an order that did not end; not retried by the saga");
            return Ok(Handled::Nothing);
        }
        metrics::counter!("ordertrail_saga_retries_total", "command" => "release_payment", "reason" => if answered { "provider_refused_stored" } else { "provider_unavailable_stored" })
            .increment(1);
        // The retry's commands derive their ids from this failure: a new
        // provider call (the payment repeats an unanswered call's key).
        let timer = self.money_retry(
            cause,
            TimerKind::ReleaseRetry,
            order_id,
            attempt.max(1),
            Some(cause.origin),
        );
        tracing::info!(%cause, %order_id, operation, attempt, code = decline_code, answered, due_at = %timer.due_at, "releasing the money failed; retry stored");
        self.schedule(cause, &timer).await?;
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
        if !order.is_card_payment() {
            return Ok(Authorization::NotNeeded);
        }
        // The order's card and total, as the workflow takes them from the order.
        let command = AuthorizePayment {
            order_id,
            card_token: None,
        };
        let sent = self
            .dispatch
            .send(
                cause,
                "authorize_payment",
                SagaCommand::Workflow(command.into()),
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
            let delay = retry_delay(self.payment_retry_backoff, retry, self.max_retry_delay);
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
                // Every attempt repeats the first one's command id: the
                // provider sees one idempotency key until it answers.
                origin: Some(cause.origin),
            }));
        }
        let attempts = retries.saturating_add(1);
        tracing::warn!(%cause, %order_id, attempts, "payment provider unavailable on every attempt; cancelling the order");
        let cancel = CancelOrder {
            order_id,
            reason: format!("payment provider unavailable after {attempts} attempts"),
        };
        self.run(cause, "cancel_order", cancel).await?;
        Ok(Authorization::GaveUp)
    }

    /// Release the money and the delivery of an order that ended without
    /// delivery: void an authorization, refund what was captured, cancel a
    /// delivery that has not been picked up. A void or refund the provider
    /// refuses or does not answer is recorded by the payment
    /// (`PaymentVoidFailed` / `PaymentRefundFailed`), which schedules the
    /// next attempt (see [`Self::on_release_failed`]); nothing is waited for
    /// here. (Should a payment ever report an outage instead of recording
    /// it, a `release_retry` repeating the same command id is stored.)
    /// Returns what it did (a timer's outcome).
    async fn release(
        &self,
        cause: &Cause,
        order_id: OrderId,
        reason: &str,
        retries: u32,
    ) -> Result<&'static str, Halt> {
        let payment_id = PaymentId::for_order(order_id);
        let mut outcome = "released";
        if let Some(payment) = self.payment(cause, payment_id).await? {
            let sent = match payment.status() {
                Some(PaymentStatus::Authorized | PaymentStatus::CaptureFailed) => Some(
                    self.send_payment(
                        cause,
                        "void_payment",
                        payment_id,
                        VoidPayment { now: Utc::now() }.into(),
                    )
                    .await?,
                ),
                Some(PaymentStatus::Captured | PaymentStatus::PartiallyRefunded) => {
                    match payment.refundable_amount().filter(|m| m.amount > 0) {
                        Some(amount) => {
                            let order = self.order(cause, order_id).await?;
                            let refund = RefundPayment {
                                amount,
                                reason: reason.to_owned(),
                                order_price: order.price().cloned(),
                                now: Utc::now(),
                            };
                            Some(
                                self.send_payment(
                                    cause,
                                    "refund_payment",
                                    payment_id,
                                    refund.into(),
                                )
                                .await?,
                            )
                        }
                        None => None,
                    }
                }
                Some(PaymentStatus::VoidFailed | PaymentStatus::RefundFailed) => {
                    // Given up after repeated refusals: only ops act now
                    // (the failure events and the payment status say why).
                    tracing::info!(%cause, %order_id, status = ?payment.status(), "releasing the money was given up to ops; not retried");
                    outcome = "given_up_to_ops";
                    None
                }
                status => {
                    tracing::debug!(%cause, %order_id, ?status, "no money to release");
                    None
                }
            };
            if sent == Some(Sent::ProviderUnavailable) {
                let retry = retries.saturating_add(1);
                metrics::counter!("ordertrail_saga_retries_total", "command" => "release_payment", "reason" => "provider_unavailable_stored")
                    .increment(1);
                let timer = self.money_retry(
                    cause,
                    TimerKind::ReleaseRetry,
                    order_id,
                    retry,
                    Some(cause.origin),
                );
                tracing::warn!(%cause, %order_id, retry, due_at = %timer.due_at, "payment provider unavailable releasing the money; retry stored");
                self.schedule(cause, &timer).await?;
                outcome = "retry_scheduled";
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
            self.send_delivery(cause, "cancel_delivery", delivery_id, cancel.into())
                .await?;
        }
        Ok(outcome)
    }

    /// The order was delivered: capture the card payment, or record the cash
    /// the delivery's rider collected — the order total either way. A capture
    /// the provider refuses or does not answer is recorded by the payment as
    /// `PaymentCaptureFailed`, which schedules the next attempt (see
    /// [`Self::on_payment_event`]). Returns what it did (a timer's outcome).
    async fn take_payment(&self, cause: &Cause, order_id: OrderId) -> Result<&'static str, Halt> {
        let order = self.order(cause, order_id).await?;
        if order.status() != Some(OrderStatus::Delivered) {
            tracing::info!(%cause, %order_id, status = ?order.status(), "order not delivered; no payment taken");
            return Ok("no_longer_needed");
        }
        let placed = order
            .placed()
            .ok_or_else(|| inconsistent(cause, "delivered order without placement"))?;
        let total = placed.price.total;
        match &placed.payment_method {
            PaymentMethod::Card { .. } => {
                let payment_id = order.payment_id().unwrap_or(PaymentId::for_order(order_id));
                let payment = self.payment(cause, payment_id).await?;
                let status = payment.as_ref().and_then(Payment::status);
                if status != Some(PaymentStatus::Authorized) {
                    tracing::info!(%cause, %order_id, ?status, "payment not waiting for capture");
                    return Ok("no_longer_needed");
                }
                let capture = CapturePayment {
                    payment_id,
                    amount_minor: Some(total.amount),
                    override_reason: None,
                };
                let sent = self
                    .dispatch
                    .send(
                        cause,
                        "capture_payment",
                        SagaCommand::Workflow(capture.into()),
                        ProviderOutage::Report,
                    )
                    .await?;
                Ok(match sent {
                    Sent::Applied { .. } => "capture_sent",
                    Sent::Refused { .. } => "no_longer_needed",
                    // The payment records an unanswered capture as an
                    // event; this is only reached if that ever changes.
                    Sent::ProviderUnavailable => {
                        return Err(inconsistent(
                            cause,
                            "capture reported the provider unavailable instead of recording it",
                        ));
                    }
                })
            }
            PaymentMethod::Cash => {
                // The workflow names the delivery's rider.
                let sent = self
                    .dispatch
                    .send(
                        cause,
                        "record_cash_collected",
                        SagaCommand::Workflow(RecordCashCollected { order_id }.into()),
                        // Never waited out in the consume loop.
                        ProviderOutage::Report,
                    )
                    .await?;
                if let Sent::Refused {
                    code: "rider_not_assigned",
                    ..
                } = sent
                {
                    return Err(inconsistent(cause, "cash order delivered without a rider"));
                }
                Ok("cash_recorded")
            }
        }
    }

    // ------------------------------------------------------------ timers

    /// Fire a due timer (claimed; no transaction open); returns what it did
    /// (stored as the timer's outcome).
    pub(crate) async fn fire(&self, timer: &DueTimer) -> Result<&'static str, Halt> {
        let cause = Cause {
            origin: timer.command_origin(),
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
                    order_id,
                    reason: format!(
                        "not accepted by the restaurant within {} s",
                        self.accept_timeout.as_secs()
                    ),
                };
                let sent = self.run(cause, "cancel_order", cancel).await?;
                Ok(outcome(sent, "order_cancelled"))
            }
            TimerKind::AssignTimeout => {
                let delivery_id: DeliveryId = parse_id(cause, "delivery", &timer.aggregate_id)?;
                let Some(delivery) = self.delivery(cause, delivery_id).await? else {
                    return Err(inconsistent(cause, "the delivery does not exist"));
                };
                if delivery.status() != Some(DeliveryStatus::Requested) || delivery.is_flagged() {
                    return Ok("no_longer_needed");
                }
                // Only the timer of the current wait flags: the one the
                // request started (no origin) or the last lost rider's.
                let wait_started = self
                    .last_delivery_event(
                        cause,
                        delivery_id,
                        &["DeliveryRequested", "RiderUnassigned"],
                    )
                    .await?;
                let current = match timer.origin {
                    None => wait_started.is_some_and(|(_, t)| t == "DeliveryRequested"),
                    Some(origin) => wait_started.is_some_and(|(id, _)| id == origin),
                };
                if !current {
                    return Ok("no_longer_needed");
                }
                let lost = timer.origin.is_some();
                tracing::info!(%cause, %delivery_id, lost_rider = lost, "no rider assigned in time; flagging for ops");
                let reason = if lost {
                    format!(
                        "lost its rider and no rider assigned within {} s",
                        self.assign_timeout.as_secs()
                    )
                } else {
                    format!(
                        "no rider assigned within {} s",
                        self.assign_timeout.as_secs()
                    )
                };
                self.flag(cause, delivery_id, reason).await
            }
            TimerKind::PickupTimeout | TimerKind::CompletionTimeout => {
                let delivery_id: DeliveryId = parse_id(cause, "delivery", &timer.aggregate_id)?;
                let Some(delivery) = self.delivery(cause, delivery_id).await? else {
                    return Err(inconsistent(cause, "the delivery does not exist"));
                };
                // Only while the assignment the timer watches is the current one.
                let assignment = self
                    .last_delivery_event(cause, delivery_id, &["RiderAssigned"])
                    .await?;
                if timer.origin.is_none() || assignment.map(|(id, _)| id) != timer.origin {
                    return Ok("no_longer_needed");
                }
                match (timer.kind, delivery.status()) {
                    (TimerKind::PickupTimeout, Some(DeliveryStatus::Assigned)) => {
                        tracing::info!(%cause, %delivery_id, rider_id = ?delivery.assigned_rider(), "food not picked up in time; taking the delivery from the rider");
                        let unassign = UnassignRider {
                            reason: format!(
                                "not picked up within {} s of assignment",
                                self.pickup_timeout.as_secs()
                            ),
                            now: Utc::now(),
                        };
                        let sent = self
                            .send_delivery(cause, "unassign_rider", delivery_id, unassign.into())
                            .await?;
                        Ok(outcome(sent, "rider_unassigned"))
                    }
                    (
                        TimerKind::CompletionTimeout,
                        Some(DeliveryStatus::Assigned | DeliveryStatus::PickedUp),
                    ) if !delivery.is_flagged() => {
                        tracing::info!(%cause, %delivery_id, "delivery not completed in time; flagging for ops");
                        let reason = format!(
                            "not completed within {} s of assignment",
                            self.completion_timeout.as_secs()
                        );
                        self.flag(cause, delivery_id, reason).await
                    }
                    _ => Ok("no_longer_needed"),
                }
            }
            TimerKind::AuthorizeRetry => {
                let order_id: OrderId = parse_id(cause, "order", &timer.aggregate_id)?;
                let retries = u32::try_from(timer.attempt).unwrap_or(0);
                match self.authorize(cause, order_id, retries).await? {
                    Authorization::Answered => Ok("provider_answered"),
                    Authorization::NotNeeded => Ok("no_longer_needed"),
                    Authorization::GaveUp => Ok("order_cancelled"),
                    Authorization::RetryAt(next) => {
                        self.schedule(cause, &next).await?;
                        Ok("retry_scheduled")
                    }
                }
            }
            TimerKind::CaptureRetry => {
                let order_id: OrderId = parse_id(cause, "order", &timer.aggregate_id)?;
                self.take_payment(cause, order_id).await
            }
            TimerKind::ReleaseRetry => {
                let order_id: OrderId = parse_id(cause, "order", &timer.aggregate_id)?;
                let order = self.order(cause, order_id).await?;
                if !matches!(
                    order.status(),
                    Some(OrderStatus::Cancelled | OrderStatus::Rejected)
                ) {
                    return Ok("no_longer_needed");
                }
                let retries = u32::try_from(timer.attempt).unwrap_or(0);
                self.release(
                    cause,
                    order_id,
                    "order ended: money released after a provider outage",
                    retries,
                )
                .await
            }
        }
    }

    /// Flag a delivery for ops.
    async fn flag(
        &self,
        cause: &Cause,
        delivery_id: DeliveryId,
        reason: String,
    ) -> Result<&'static str, Halt> {
        let flag = FlagDelivery {
            reason,
            now: Utc::now(),
        };
        let sent = self
            .send_delivery(cause, "flag_delivery", delivery_id, flag.into())
            .await?;
        Ok(outcome(sent, "delivery_flagged"))
    }

    /// The id and type of the last event of `delivery_id` among `types`.
    async fn last_delivery_event(
        &self,
        _cause: &Cause,
        delivery_id: DeliveryId,
        types: &[&str],
    ) -> Result<Option<(Uuid, String)>, Halt> {
        let id = delivery_id.to_string();
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        db_retry(
            self.dispatch.stop(),
            self.max_backoff,
            "read a delivery's last event",
            || {
                sqlx::query_as::<_, (Uuid, String)>(
                    "SELECT event_id, event_type FROM events
                     WHERE aggregate_type = 'Delivery' AND aggregate_id = $1 AND event_type = ANY($2)
                     ORDER BY sequence DESC LIMIT 1",
                )
                .bind(&id)
                .bind(&types)
                .fetch_optional(&self.pool)
            },
        )
        .await
    }

    // ------------------------------------------------------------ helpers

    /// The stored retry `retry` (from 1) of an order's capture or release:
    /// due after `money_retry_backoff`·2ⁿ⁻¹, at most `max_retry_delay`.
    fn money_retry(
        &self,
        cause: &Cause,
        kind: TimerKind,
        order_id: OrderId,
        retry: u32,
        origin: Option<Uuid>,
    ) -> NewTimer {
        let delay = retry_delay(self.money_retry_backoff, retry, self.max_retry_delay);
        NewTimer {
            kind,
            aggregate_id: order_id.to_string(),
            attempt: i32::try_from(retry).unwrap_or(i32::MAX),
            due_at: after(Utc::now(), delay),
            correlation_id: cause.correlation_id,
            causation_id: cause.causation_id,
            origin,
        }
    }

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

    /// Run a use case for `cause` (outages of the store and the provider
    /// waited out).
    async fn run(
        &self,
        cause: &Cause,
        action: &str,
        workflow: impl Into<Workflow>,
    ) -> Result<Sent, Halt> {
        self.dispatch
            .send(
                cause,
                action,
                SagaCommand::Workflow(workflow.into()),
                ProviderOutage::Wait,
            )
            .await
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

    async fn send_delivery(
        &self,
        cause: &Cause,
        action: &str,
        delivery_id: DeliveryId,
        command: ordertrail_domain::DeliveryCommand,
    ) -> Result<Sent, Halt> {
        self.dispatch
            .send(
                cause,
                action,
                SagaCommand::Delivery(delivery_id, command),
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
                // Never waited out in the consume loop: callers store a retry.
                ProviderOutage::Report,
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

/// A timer's outcome after sending its command: `done` when it was applied,
/// `no_longer_needed` when the domain refused it (the world moved on).
fn outcome(sent: Sent, done: &'static str) -> &'static str {
    match sent {
        Sent::Applied { .. } => done,
        Sent::Refused { .. } | Sent::ProviderUnavailable => "no_longer_needed",
    }
}

fn inconsistent(cause: &Cause, reason: &str) -> Halt {
    Halt::Failed(SagaError::Inconsistent {
        cause: cause.label.clone(),
        reason: reason.to_owned(),
    })
}
