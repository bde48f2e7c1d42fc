//! Payment use cases: authorize the order total on a card, capture, void,
//! refund. Amounts are minor units in the payment's own currency.

use chrono::Utc;
use ordertrail_domain::payment as command;
use ordertrail_domain::provider::card_payment_method;
use ordertrail_domain::{ErrorKind, Order, OrderStatus, Payment};
use ordertrail_schemas::events::PaymentMethod;
use ordertrail_schemas::{Currency, Money, OrderId, PaymentId};
use serde::{Deserialize, Serialize};

use super::customer_may_act;
use super::orders::restaurant_and_total;
use crate::service::{
    CommandContext, CommandError, CommandOutcome, CommandService, Start, not_found, order_not_found,
};

/// Authorize the order's total on its card: the card on file, or a new
/// card token (a retry after a decline). The order's customer, staff or the
/// saga.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizePayment {
    pub order_id: OrderId,
    /// A new card for this attempt; the order's card when absent.
    pub card_token: Option<String>,
}

/// The card token is a secret: never printed.
impl std::fmt::Debug for AuthorizePayment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizePayment")
            .field("order_id", &self.order_id)
            .field(
                "card_token",
                &self.card_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl AuthorizePayment {
    pub(super) fn target(&self, _: &CommandContext) -> PaymentId {
        PaymentId::for_order(self.order_id)
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let order_id = self.order_id;
        let payment_id = self.target(ctx);
        let new_card = match self.card_token.as_deref() {
            Some(token) => match card_payment_method(token)? {
                PaymentMethod::Card { payment_method_ref } => Some(payment_method_ref),
                PaymentMethod::Cash => None,
            },
            None => None,
        };
        // The order and its payment in one round trip.
        let (order, payment) = s.load_order_and_payment(order_id).await?;
        s.decide_on(ctx, payment_id, Start::Loaded(payment), move |_, _| {
            if order.current_sequence == 0 {
                return Err(order_not_found(order_id));
            }
            let order = &order.aggregate;
            customer_may_act(&ctx.actor, order_id, order)?;
            let Some(PaymentMethod::Card {
                payment_method_ref: on_file,
            }) = order.payment_method()
            else {
                return Err(CommandError::rejected(
                    "payment_method_mismatch",
                    ErrorKind::Conflict,
                    "the order is not paid by card",
                ));
            };
            let (restaurant_id, amount) = restaurant_and_total(order, order_id)?;
            Ok(command::AuthorizePayment {
                payment_id,
                order_id,
                restaurant_id,
                amount,
                payment_method_ref: new_card.unwrap_or_else(|| on_file.clone()),
                now: Utc::now(),
            }
            .into())
        })
        .await
    }
}

/// The payment and, when it belongs to an order, the order: the capture
/// needs to know whether it was delivered, the refund its price.
async fn payment_and_order(
    s: &CommandService,
    id: PaymentId,
) -> Result<(Payment, Currency, Option<Order>), CommandError> {
    let (payment, _) = s.load_payment(id).await?.ok_or_else(|| not_found(id))?;
    let currency = payment
        .authorized_amount()
        .or(payment.collected_amount())
        .map(|m| m.currency)
        .ok_or_else(|| CommandError::Internal(format!("payment {id} has no amount")))?;
    let order = match payment.order_id() {
        Some(order_id) => s.load_order(order_id).await?.map(|(order, _)| order),
        None => None,
    };
    Ok((payment, currency, order))
}

/// Capture an authorized payment: the whole authorization, or part of it;
/// before the order is delivered only with a reason (staff).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapturePayment {
    pub payment_id: PaymentId,
    /// The amount to capture; the authorized amount when absent.
    pub amount_minor: Option<i64>,
    /// Why a capture happens before delivery.
    pub override_reason: Option<String>,
}

impl CapturePayment {
    pub(super) fn target(&self, _: &CommandContext) -> PaymentId {
        self.payment_id
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let (_, currency, order) = payment_and_order(s, self.payment_id).await?;
        let capture = command::CapturePayment {
            amount: self.amount_minor.map(|a| Money::new(a, currency)),
            order_delivered: order.and_then(|o| o.status()) == Some(OrderStatus::Delivered),
            override_reason: self.override_reason,
            now: Utc::now(),
        };
        s.decide_on(ctx, self.payment_id, Start::Load, |_, _| Ok(capture.into()))
            .await
    }
}

/// Release an authorization that will not be captured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoidPayment {
    pub payment_id: PaymentId,
}

impl VoidPayment {
    pub(super) fn target(&self, _: &CommandContext) -> PaymentId {
        self.payment_id
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        s.decide_on(ctx, self.payment_id, Start::Load, |_, version| {
            if version == 0 {
                return Err(not_found(self.payment_id));
            }
            Ok(command::VoidPayment { now: Utc::now() }.into())
        })
        .await
    }
}

/// Give money back: at most what was captured and not yet refunded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundPayment {
    pub payment_id: PaymentId,
    pub amount_minor: i64,
    pub reason: String,
}

impl RefundPayment {
    pub(super) fn target(&self, _: &CommandContext) -> PaymentId {
        self.payment_id
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let (_, currency, order) = payment_and_order(s, self.payment_id).await?;
        let refund = command::RefundPayment {
            amount: Money::new(self.amount_minor, currency),
            reason: self.reason,
            order_price: order.and_then(|o| o.price().cloned()),
            now: Utc::now(),
        };
        s.decide_on(ctx, self.payment_id, Start::Load, |_, _| Ok(refund.into()))
            .await
    }
}
