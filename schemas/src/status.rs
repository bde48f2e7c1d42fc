//! The life cycles' vocabulary: the statuses an order, a payment and a
//! delivery go through, with their stable names. The domain decides on them, the read
//! models store their names, the API filters and streams by them: one list.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed by the customer, waiting for payment.
    Placed,
    /// Paid for (or cash), waiting for the restaurant.
    Confirmed,
    /// The restaurant is preparing it.
    Accepted,
    /// Ready at the restaurant.
    ReadyForPickup,
    /// On its way with a rider.
    PickedUp,
    /// Handed to the customer (final).
    Delivered,
    /// Refused by the restaurant (final).
    Rejected,
    /// Cancelled (final).
    Cancelled,
}

impl OrderStatus {
    /// Every status, in the order of an order's life (finals last).
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Placed,
        OrderStatus::Confirmed,
        OrderStatus::Accepted,
        OrderStatus::ReadyForPickup,
        OrderStatus::PickedUp,
        OrderStatus::Delivered,
        OrderStatus::Rejected,
        OrderStatus::Cancelled,
    ];

    /// The status an order event leads to (by event type; every order event
    /// but none of the others).
    pub fn after(event_type: &str) -> Option<Self> {
        Some(match event_type {
            "OrderPlaced" => OrderStatus::Placed,
            "OrderConfirmed" => OrderStatus::Confirmed,
            "OrderAccepted" => OrderStatus::Accepted,
            "OrderRejected" => OrderStatus::Rejected,
            "OrderReadyForPickup" => OrderStatus::ReadyForPickup,
            "OrderPickedUp" => OrderStatus::PickedUp,
            "OrderDelivered" => OrderStatus::Delivered,
            "OrderCancelled" => OrderStatus::Cancelled,
            _ => return None,
        })
    }

    /// The status named `s` (its `as_str`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Every status's name, for "allowed" lists in error details.
    pub fn names() -> [&'static str; 8] {
        Self::ALL.map(|s| s.as_str())
    }

    /// The stable snake_case name (API, read models, metrics).
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Accepted => "accepted",
            OrderStatus::ReadyForPickup => "ready_for_pickup",
            OrderStatus::PickedUp => "picked_up",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more can happen to the order.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OrderStatus::Delivered | OrderStatus::Rejected | OrderStatus::Cancelled
        )
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for a rider.
    Requested,
    /// A rider holds it, not picked up yet.
    Assigned,
    /// The rider has the food.
    PickedUp,
    /// Handed over with the right code (final).
    Completed,
    /// Given up (final).
    Failed,
    /// No longer needed (final).
    Cancelled,
}

impl DeliveryStatus {
    /// Every status, in the order of a delivery's life (finals last).
    pub const ALL: [DeliveryStatus; 6] = [
        DeliveryStatus::Requested,
        DeliveryStatus::Assigned,
        DeliveryStatus::PickedUp,
        DeliveryStatus::Completed,
        DeliveryStatus::Failed,
        DeliveryStatus::Cancelled,
    ];

    /// The status named `s` (its `as_str`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The stable snake_case name (API, read models, metrics).
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Requested => "requested",
            DeliveryStatus::Assigned => "assigned",
            DeliveryStatus::PickedUp => "picked_up",
            DeliveryStatus::Completed => "completed",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more can happen to the delivery.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            DeliveryStatus::Completed | DeliveryStatus::Failed | DeliveryStatus::Cancelled
        )
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).expect("serialize");
            assert_eq!(json, serde_json::json!(status.as_str()));
        }
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).expect("serialize");
            assert_eq!(json, serde_json::json!(status.as_str()));
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }

    #[test]
    fn every_order_event_type_leads_to_its_status() {
        for (event_type, _) in crate::OrderEvent::TYPES {
            assert!(
                OrderStatus::after(event_type).is_some(),
                "{event_type} has no status"
            );
        }
        assert_eq!(OrderStatus::after("PaymentAuthorized"), None);
    }
}

/// Where a payment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The last authorization attempt was declined; may be tried again.
    Declined,
    /// Card authorized, not captured yet.
    Authorized,
    /// Captured, nothing refunded.
    Captured,
    /// Captured, part of it refunded.
    PartiallyRefunded,
    /// Captured and refunded in full (final).
    Refunded,
    /// Authorization released without capture (final).
    Voided,
    /// Cash collected by the rider (final).
    CashCollected,
    /// Authorized, and the provider refused the capture
    /// `CAPTURE_ATTEMPTS_MAX` times: nothing retries it; operations capture
    /// (with a reason) or void.
    CaptureFailed,
    /// Authorized, and the provider refused the void `VOID_ATTEMPTS_MAX`
    /// times: the authorization is still held; nothing retries it;
    /// operations void again.
    VoidFailed,
    /// Captured, and the provider refused a refund `REFUND_ATTEMPTS_MAX`
    /// times: the money is not returned; nothing retries it; operations
    /// refund again.
    RefundFailed,
}

impl PaymentStatus {
    /// Every status (finals and given-up states last).
    pub const ALL: [PaymentStatus; 10] = [
        PaymentStatus::Declined,
        PaymentStatus::Authorized,
        PaymentStatus::Captured,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
        PaymentStatus::Voided,
        PaymentStatus::CashCollected,
        PaymentStatus::CaptureFailed,
        PaymentStatus::VoidFailed,
        PaymentStatus::RefundFailed,
    ];

    /// The status named `s` (its `as_str`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The stable snake_case name (API, read models, metrics).
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentStatus::Declined => "declined",
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::Captured => "captured",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Voided => "voided",
            PaymentStatus::CashCollected => "cash_collected",
            PaymentStatus::CaptureFailed => "capture_failed",
            PaymentStatus::VoidFailed => "void_failed",
            PaymentStatus::RefundFailed => "refund_failed",
        }
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
