//! Events of the `Payment` aggregate. Provider fees are recorded on the events
//! that cause them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::event_enum;
use crate::{Money, OrderId, PaymentId, RestaurantId, RiderId};

/// The provider reserved the order's amount on the customer's card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentAuthorized {
    /// The payment.
    pub payment_id: PaymentId,
    /// The order it pays for.
    pub order_id: OrderId,
    /// The restaurant the order is from.
    pub restaurant_id: RestaurantId,
    /// The amount reserved: the order's total.
    pub amount: Money,
    /// Provider name, e.g. `simulated`.
    pub provider: String,
    /// The provider's reference for this authorization.
    pub provider_reference: String,
    /// Fee charged by the provider for the authorization.
    pub fee: Money,
    /// When the provider authorized.
    pub authorized_at: DateTime<Utc>,
}

/// The provider refused to authorize the order's amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentDeclined {
    /// The payment.
    pub payment_id: PaymentId,
    /// The order it was to pay for.
    pub order_id: OrderId,
    /// The restaurant the order is from.
    pub restaurant_id: RestaurantId,
    /// The amount that was refused.
    pub amount: Money,
    /// Provider name, e.g. `simulated`.
    pub provider: String,
    /// The provider's decline code, e.g. `insufficient_funds`.
    pub decline_code: String,
    /// When the provider declined.
    pub declined_at: DateTime<Utc>,
}

/// The authorized amount was taken from the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentCaptured {
    /// The amount captured.
    pub amount: Money,
    /// Fee charged by the provider for the capture.
    pub fee: Money,
    /// When the provider captured.
    pub captured_at: DateTime<Utc>,
    /// Why ops captured before the order was delivered; `None` for every
    /// capture after delivery (and every event first written as version 1).
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// A capture of an authorized payment did not happen: the provider refused
/// it (`answered`, with its decline code) or did not answer (`answered:
/// false`, code `provider_unavailable`; the outcome at the provider is
/// unknown, so the next attempt repeats `idempotency_key`). The payment stays
/// authorized. After [`CAPTURE_ATTEMPTS_MAX`] refusals the failure is
/// `final_attempt`: nothing retries it any more and operations must act
/// (capture with a reason, or void).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentCaptureFailed {
    /// The amount the capture asked for.
    pub amount: Money,
    /// Provider name, e.g. `simulated`.
    pub provider: String,
    /// The provider's decline code, or `provider_unavailable`.
    pub decline_code: String,
    /// Whether the provider answered (a refusal) or not (an outage).
    pub answered: bool,
    /// The key the call was made with (derived from the command id).
    pub idempotency_key: String,
    /// Which capture attempt of this payment failed (from 1).
    pub attempt: u32,
    /// Refused captures are not retried any more; operations must act.
    pub final_attempt: bool,
    /// When the attempt failed.
    pub failed_at: DateTime<Utc>,
}

/// Refused captures after which a payment's capture is given up to
/// operations (`PaymentCaptureFailed.final_attempt`). Outages (no answer) do
/// not count: the capture is retried until the provider answers.
pub const CAPTURE_ATTEMPTS_MAX: u32 = 3;

/// Decline code recorded when the provider did not answer a capture, a void
/// or a refund.
pub const PROVIDER_UNAVAILABLE: &str = "provider_unavailable";

/// A void (release) of an uncaptured authorization did not happen: the
/// provider refused it (`answered`, with its decline code) or did not answer
/// (`answered: false`, code `provider_unavailable`; the next attempt repeats
/// `idempotency_key`). The authorization stays held on the customer's card.
/// After [`VOID_ATTEMPTS_MAX`] refusals the failure is `final_attempt`: the
/// payment is `void_failed`, nothing retries it and operations must act
/// (void again, or settle with the customer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentVoidFailed {
    /// The authorized amount the void was to release (still held).
    pub amount: Money,
    /// Provider name, e.g. `simulated`.
    pub provider: String,
    /// The provider's decline code, or `provider_unavailable`.
    pub decline_code: String,
    /// Whether the provider answered (a refusal) or not (an outage).
    pub answered: bool,
    /// The key the call was made with (derived from the command id).
    pub idempotency_key: String,
    /// Which void attempt of this payment failed (from 1).
    pub attempt: u32,
    /// Refused voids are not retried any more; operations must act.
    pub final_attempt: bool,
    /// When the attempt failed.
    pub failed_at: DateTime<Utc>,
}

/// A refund of a captured payment did not happen: the provider refused it
/// (`answered`) or did not answer (`answered: false`, code
/// `provider_unavailable`; the next attempt repeats `idempotency_key`). The
/// money stays with us, not returned to the customer. After
/// [`REFUND_ATTEMPTS_MAX`] refusals of one refund the failure is
/// `final_attempt`: the payment is `refund_failed`, nothing retries it and
/// operations must act (refund again, or pay the customer another way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefundFailed {
    /// The amount the refund was to return (not returned).
    pub amount: Money,
    /// Why the refund was asked for (as on `PaymentRefunded`).
    pub reason: String,
    /// Provider name, e.g. `simulated`.
    pub provider: String,
    /// The provider's decline code, or `provider_unavailable`.
    pub decline_code: String,
    /// Whether the provider answered (a refusal) or not (an outage).
    pub answered: bool,
    /// The key the call was made with (derived from the command id).
    pub idempotency_key: String,
    /// Which attempt of this refund failed (from 1; counted again after a
    /// refund succeeds).
    pub attempt: u32,
    /// Refused refunds are not retried any more; operations must act.
    pub final_attempt: bool,
    /// When the attempt failed.
    pub failed_at: DateTime<Utc>,
}

/// Refused voids after which releasing an authorization is given up to
/// operations (`PaymentVoidFailed.final_attempt`). Outages do not count.
pub const VOID_ATTEMPTS_MAX: u32 = 3;

/// Refused attempts of one refund after which it is given up to operations
/// (`PaymentRefundFailed.final_attempt`). Outages do not count.
pub const REFUND_ATTEMPTS_MAX: u32 = 3;

/// Earlier versions of payment events, kept so their schemas stay published.
/// Writers never produce these.
// The v1 types' `///` lines are part of their published schemas, which stay
// byte for byte what they were: no docs are added here.
#[allow(missing_docs)]
pub mod legacy_payment {
    use super::*;

    // `PaymentRefunded` version 1 (before `allocation`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[schemars(rename = "PaymentRefunded")]
    pub struct PaymentRefundedV1 {
        pub amount: Money,
        pub fee: Money,
        pub reason: String,
        pub provider_reference: String,
        pub refunded_at: DateTime<Utc>,
    }

    // `PaymentCaptured` version 1 (before `override_reason`); a `//` comment
    // so the published v1 schema stays byte for byte what it was.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[schemars(rename = "PaymentCaptured")]
    pub struct PaymentCapturedV1 {
        pub amount: Money,
        pub fee: Money,
        pub captured_at: DateTime<Utc>,
    }
}

/// The authorization was released without taking any money.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentVoided {
    /// The authorized amount released.
    pub amount: Money,
    /// Fee charged by the provider for the void.
    pub fee: Money,
    /// When the provider voided.
    pub voided_at: DateTime<Utc>,
}

/// What a refund takes back from each part of the order's price (see
/// `ordertrail_domain::pricing::allocate_refund`). `items + delivery_fee +
/// service_fee + tax + tip` is the refunded amount; the restaurant bears
/// `items + tax` and gets `commission_reversed` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefundAllocation {
    /// Refunded item sales.
    pub items: Money,
    /// Refunded delivery fee.
    pub delivery_fee: Money,
    /// Refunded service fee.
    pub service_fee: Money,
    /// Refunded tax.
    pub tax: Money,
    /// Refunded tip.
    pub tip: Money,
    /// Commission the platform gives back on the refunded item sales.
    pub commission_reversed: Money,
}

/// Captured money (all or part) was returned to the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefunded {
    /// The amount returned.
    pub amount: Money,
    /// Fee charged by the provider for the refund.
    pub fee: Money,
    /// Why the refund was made.
    pub reason: String,
    /// The provider's reference for this refund.
    pub provider_reference: String,
    /// When the provider refunded.
    pub refunded_at: DateTime<Utc>,
    /// The refund by component; `None` for events first written as version 1
    /// (the whole amount was then charged to the restaurant).
    #[serde(default)]
    pub allocation: Option<RefundAllocation>,
}

/// The rider collected a cash order's amount at the door.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CashCollected {
    /// The payment.
    pub payment_id: PaymentId,
    /// The order it pays for.
    pub order_id: OrderId,
    /// The restaurant the order is from.
    pub restaurant_id: RestaurantId,
    /// The amount collected: the order's total.
    pub amount: Money,
    /// The rider who collected it.
    pub rider_id: RiderId,
    /// When the rider collected it.
    pub collected_at: DateTime<Utc>,
}

event_enum!(
    /// Everything that can happen to a payment.
    PaymentEvent {
        PaymentAuthorized => "1",
        PaymentDeclined => "1",
        PaymentCaptured => "2",
        PaymentVoided => "1",
        PaymentRefunded => "2",
        CashCollected => "1",
        PaymentCaptureFailed => "1",
        PaymentVoidFailed => "1",
        PaymentRefundFailed => "1",
    }
);
