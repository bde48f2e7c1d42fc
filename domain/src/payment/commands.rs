//! Commands of the `Payment` aggregate.

use chrono::{DateTime, Utc};
use ordertrail_schemas::events::PriceBreakdown;
use ordertrail_schemas::{Money, OrderId, PaymentId, RestaurantId, RiderId};
use serde::{Deserialize, Serialize};

/// Authorize the order total on a card. A decline is recorded as
/// `PaymentDeclined` (the command succeeds); a declined payment may be
/// authorized again, e.g. with another card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizePayment {
    /// The payment to create (or authorize again after a decline).
    pub payment_id: PaymentId,
    /// The order it pays for.
    pub order_id: OrderId,
    /// The restaurant the order is from.
    pub restaurant_id: RestaurantId,
    /// The order's total.
    pub amount: Money,
    /// The card as an opaque reference (`pm_...`, see
    /// [`crate::provider::card_payment_method`]), never the token.
    pub payment_method_ref: String,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// Capture an authorization, once: `None` captures the authorized amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePayment {
    /// The amount to take, at most the authorized amount; `None` takes all of it.
    pub amount: Option<Money>,
    /// Whether the order has been delivered (looked up by the caller).
    /// Captures happen only after delivery ...
    pub order_delivered: bool,
    /// ... unless ops override, with this reason (recorded on the event).
    pub override_reason: Option<String>,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// Release an uncaptured authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidPayment {
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// Give back part or all of a captured payment. Refunds add up to at most the captured amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPayment {
    /// The amount to give back.
    pub amount: Money,
    /// Why the money is given back.
    pub reason: String,
    /// The order's price (looked up by the caller): the refund is allocated
    /// by component against it (`pricing::allocate_refund`). `None` records
    /// no allocation (the whole amount then counts against the restaurant).
    pub order_price: Option<PriceBreakdown>,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The rider collected cash for a cash order; this creates the payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCashCollected {
    /// The payment to create.
    pub payment_id: PaymentId,
    /// The cash order it pays for.
    pub order_id: OrderId,
    /// The restaurant the order is from.
    pub restaurant_id: RestaurantId,
    /// The amount the rider collected: the order's total.
    pub amount: Money,
    /// The rider who collected it.
    pub rider_id: RiderId,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

command_enum! {
    /// Everything that can be asked of a payment.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    pub enum PaymentCommand {
        /// Reserve the order total on a card: see [`AuthorizePayment`].
        AuthorizePayment,
        /// Take the authorized money: see [`CapturePayment`].
        CapturePayment,
        /// Release the authorization: see [`VoidPayment`].
        VoidPayment,
        /// Give captured money back: see [`RefundPayment`].
        RefundPayment,
        /// Record cash collected at the door: see [`RecordCashCollected`].
        RecordCashCollected,
    }
}
