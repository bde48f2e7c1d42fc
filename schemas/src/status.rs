//! The life cycles' vocabulary: the statuses an order, a payment and a
//! delivery go through, with their stable names. The domain decides on them, the read
//! models store their names, the API filters and streams by them: one list.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `ALL`, `parse`, `as_str` and `Display` of a status enum, from one list of
/// its variants and their stable snake_case names (the serde names too; a
/// test checks they agree).
macro_rules! status_names {
    ($(#[doc = $all_doc:literal])* $status:ident[$count:literal] {
        $($variant:ident => $name:literal,)+
    }) => {
        impl $status {
            $(#[doc = $all_doc])*
            pub const ALL: [$status; $count] = [$($status::$variant,)+];

            /// The status named `s` (its `as_str`).
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|status| status.as_str() == s)
            }

            /// The stable snake_case name (API, read models, metrics).
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($status::$variant => $name,)+
                }
            }
        }

        impl std::fmt::Display for $status {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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

status_names! {
    /// Every status, in the order of an order's life (finals last).
    OrderStatus[8] {
        Placed => "placed",
        Confirmed => "confirmed",
        Accepted => "accepted",
        ReadyForPickup => "ready_for_pickup",
        PickedUp => "picked_up",
        Delivered => "delivered",
        Rejected => "rejected",
        Cancelled => "cancelled",
    }
}

impl OrderStatus {
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

    /// Every status's name, for "allowed" lists in error details.
    pub fn names() -> [&'static str; 8] {
        Self::ALL.map(|s| s.as_str())
    }

    /// Whether nothing more can happen to the order.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OrderStatus::Delivered | OrderStatus::Rejected | OrderStatus::Cancelled
        )
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

status_names! {
    /// Every status, in the order of a delivery's life (finals last).
    DeliveryStatus[6] {
        Requested => "requested",
        Assigned => "assigned",
        PickedUp => "picked_up",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

impl DeliveryStatus {
    /// Whether nothing more can happen to the delivery.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            DeliveryStatus::Completed | DeliveryStatus::Failed | DeliveryStatus::Cancelled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status's name parses back to it and is its serde name.
    fn assert_names_round_trip<S>(all: &[S], parse: fn(&str) -> Option<S>, as_str: fn(&S) -> &str)
    where
        S: Copy + PartialEq + std::fmt::Debug + Serialize,
    {
        for status in all {
            assert_eq!(parse(as_str(status)), Some(*status), "{status:?}");
            let json = serde_json::to_value(status).expect("serialize");
            assert_eq!(json, serde_json::json!(as_str(status)), "{status:?}");
        }
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        assert_names_round_trip(&OrderStatus::ALL, OrderStatus::parse, OrderStatus::as_str);
        assert_names_round_trip(
            &DeliveryStatus::ALL,
            DeliveryStatus::parse,
            DeliveryStatus::as_str,
        );
        assert_names_round_trip(
            &PaymentStatus::ALL,
            PaymentStatus::parse,
            PaymentStatus::as_str,
        );
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

status_names! {
    /// Every status (finals and given-up states last).
    PaymentStatus[10] {
        Declined => "declined",
        Authorized => "authorized",
        Captured => "captured",
        PartiallyRefunded => "partially_refunded",
        Refunded => "refunded",
        Voided => "voided",
        CashCollected => "cash_collected",
        CaptureFailed => "capture_failed",
        VoidFailed => "void_failed",
        RefundFailed => "refund_failed",
    }
}
