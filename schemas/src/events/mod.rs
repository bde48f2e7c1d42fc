//! Event payloads, one module per aggregate type.
//!
//! Each event is its own struct (so it has its own JSON Schema); the aggregate's
//! event enum is internally tagged with `"type"`, which is exactly the JSON
//! stored in `events.payload` and published as the envelope's `payload`.

pub mod delivery;
pub mod order;
pub mod payment;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use delivery::*;
pub use order::*;
pub use payment::*;

/// The three aggregate types, as stored in `events.aggregate_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AggregateKind {
    /// An order, from placement to delivery or its end.
    Order,
    /// A payment for one order: authorization, capture, void, refund.
    Payment,
    /// The delivery of one order by a rider.
    Delivery,
}

impl AggregateKind {
    /// Every aggregate type, in a fixed order.
    pub const ALL: [AggregateKind; 3] = [
        AggregateKind::Order,
        AggregateKind::Payment,
        AggregateKind::Delivery,
    ];

    /// The value of `events.aggregate_type` (the cqrs-es `Aggregate::TYPE`).
    pub fn as_str(&self) -> &'static str {
        match self {
            AggregateKind::Order => "Order",
            AggregateKind::Payment => "Payment",
            AggregateKind::Delivery => "Delivery",
        }
    }

    /// The aggregate type named by its `events.aggregate_type` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Order" => Some(AggregateKind::Order),
            "Payment" => Some(AggregateKind::Payment),
            "Delivery" => Some(AggregateKind::Delivery),
            _ => None,
        }
    }

    /// The topic suffix: `<prefix>.orders`, `.payments`, `.deliveries`.
    pub fn topic_suffix(&self) -> &'static str {
        match self {
            AggregateKind::Order => "orders",
            AggregateKind::Payment => "payments",
            AggregateKind::Delivery => "deliveries",
        }
    }
}

impl std::fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implements `cqrs_es::DomainEvent` plus `event_type`/`event_version` for an
/// internally tagged event enum whose variants wrap structs of the same name.
macro_rules! event_enum {
    ($(#[$doc:meta])* $enum:ident { $($variant:ident => $version:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(tag = "type")]
        // `OrderPlaced` is much larger than the other events; boxing it would
        // change the payload types every reader matches on, for no measurable gain.
        #[allow(clippy::large_enum_variant)]
        pub enum $enum {
            $(
                #[doc = concat!("The [`", stringify!($variant), "`] event.")]
                $variant($variant)
            ),+
        }

        impl $enum {
            /// Every `(event_type, current version)` pair of this enum.
            pub const TYPES: &'static [(&'static str, &'static str)] = &[$((stringify!($variant), $version)),+];

            /// The event type name of this variant, e.g. `OrderPlaced`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $($enum::$variant(_) => stringify!($variant)),+
                }
            }

            /// The payload version writers produce for this variant.
            pub fn version(&self) -> &'static str {
                match self {
                    $($enum::$variant(_) => $version),+
                }
            }

            /// The JSON Schema of every event type's payload in its current
            /// version, as stored and published (the struct plus the `"type"` tag).
            pub fn json_schemas() -> Vec<crate::json_schema::EventSchema> {
                vec![$(crate::json_schema::EventSchema::of::<$variant>(stringify!($variant), $version)),+]
            }
        }

        impl cqrs_es::DomainEvent for $enum {
            fn event_type(&self) -> String {
                self.type_name().to_owned()
            }

            fn event_version(&self) -> String {
                self.version().to_owned()
            }
        }

        $(
            impl From<$variant> for $enum {
                fn from(value: $variant) -> Self {
                    $enum::$variant(value)
                }
            }
        )+
    };
}
pub(crate) use event_enum;

/// Any stored event, decoded: the one typed decode the saga, the projectors
/// and the API share (from an [`crate::EventEnvelope`] with
/// [`crate::EventEnvelope::event`]).
#[derive(Debug, Clone, PartialEq)]
// One event lives at a time; `OrderPlaced` is large, as in the event enums.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// An event of an order.
    Order(OrderEvent),
    /// An event of a payment.
    Payment(PaymentEvent),
    /// An event of a delivery.
    Delivery(DeliveryEvent),
}

/// Why a stored event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A type or version this build does not know (a newer writer, or an
    /// upcaster missing): never guessed at.
    #[error("unknown {aggregate_type} event type {event_type} version {event_version}")]
    Unknown {
        /// The aggregate type the event was stored under.
        aggregate_type: AggregateKind,
        /// The stored event type.
        event_type: String,
        /// The stored event version.
        event_version: String,
    },
    /// A known type whose payload does not match its schema.
    #[error("cannot decode the {event_type} payload: {reason}")]
    Payload {
        /// The stored event type.
        event_type: String,
        /// What serde found wrong with the payload.
        reason: String,
    },
}

impl Event {
    /// Decode `payload` as the event `event_type` at `event_version` of
    /// `aggregate_type`; the type and version must be ones this build knows.
    pub fn decode(
        aggregate_type: AggregateKind,
        event_type: &str,
        event_version: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        let types = match aggregate_type {
            AggregateKind::Order => OrderEvent::TYPES,
            AggregateKind::Payment => PaymentEvent::TYPES,
            AggregateKind::Delivery => DeliveryEvent::TYPES,
        };
        if !types
            .iter()
            .any(|(t, v)| *t == event_type && *v == event_version)
        {
            return Err(DecodeError::Unknown {
                aggregate_type,
                event_type: event_type.to_owned(),
                event_version: event_version.to_owned(),
            });
        }
        let payload_error = |e: serde_json::Error| DecodeError::Payload {
            event_type: event_type.to_owned(),
            reason: e.to_string(),
        };
        Ok(match aggregate_type {
            AggregateKind::Order => {
                Event::Order(OrderEvent::deserialize(payload).map_err(payload_error)?)
            }
            AggregateKind::Payment => {
                Event::Payment(PaymentEvent::deserialize(payload).map_err(payload_error)?)
            }
            AggregateKind::Delivery => {
                Event::Delivery(DeliveryEvent::deserialize(payload).map_err(payload_error)?)
            }
        })
    }

    /// The event's type name, e.g. `OrderPlaced`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Order(e) => e.type_name(),
            Event::Payment(e) => e.type_name(),
            Event::Delivery(e) => e.type_name(),
        }
    }

    /// The rider the event names: who picked up, collected cash, was
    /// assigned or unassigned, reported a position, handed over.
    pub fn rider_id(&self) -> Option<crate::RiderId> {
        match self {
            Event::Order(OrderEvent::OrderPickedUp(e)) => Some(e.rider_id),
            Event::Payment(PaymentEvent::CashCollected(e)) => Some(e.rider_id),
            Event::Delivery(DeliveryEvent::RiderAssigned(e)) => Some(e.rider_id),
            Event::Delivery(DeliveryEvent::RiderUnassigned(e)) => Some(e.rider_id),
            Event::Delivery(DeliveryEvent::RiderLocationReported(e)) => Some(e.rider_id),
            Event::Delivery(DeliveryEvent::PickupConfirmed(e)) => Some(e.rider_id),
            Event::Delivery(DeliveryEvent::DropoffCodeRejected(e)) => Some(e.rider_id),
            Event::Delivery(DeliveryEvent::DeliveryCompleted(e)) => Some(e.rider_id),
            _ => None,
        }
    }

    /// The order and restaurant an aggregate's first event names (an order's
    /// placement, a payment's first attempt or cash, a delivery's request).
    pub fn order_and_restaurant(&self) -> Option<(crate::OrderId, crate::RestaurantId)> {
        match self {
            Event::Order(OrderEvent::OrderPlaced(e)) => Some((e.order_id, e.restaurant_id)),
            Event::Payment(PaymentEvent::PaymentAuthorized(e)) => {
                Some((e.order_id, e.restaurant_id))
            }
            Event::Payment(PaymentEvent::PaymentDeclined(e)) => Some((e.order_id, e.restaurant_id)),
            Event::Payment(PaymentEvent::CashCollected(e)) => Some((e.order_id, e.restaurant_id)),
            Event::Delivery(DeliveryEvent::DeliveryRequested(e)) => {
                Some((e.order_id, e.restaurant_id))
            }
            _ => None,
        }
    }
}

/// One aggregate's events out of [`Event`]: `Err` gives back an event of
/// another aggregate.
macro_rules! narrow {
    ($($variant:ident => $ty:ty),+ $(,)?) => {$(
        impl TryFrom<Event> for $ty {
            type Error = Event;
            fn try_from(event: Event) -> Result<Self, Event> {
                match event {
                    Event::$variant(e) => Ok(e),
                    other => Err(other),
                }
            }
        }
    )+};
}

narrow!(Order => OrderEvent, Payment => PaymentEvent, Delivery => DeliveryEvent);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_events_decode_and_anything_else_is_named() {
        let payload = serde_json::json!({
            "type": "OrderReadyForPickup",
            "ready_at": "2026-12-01T12:00:00Z",
        });
        let event = Event::decode(AggregateKind::Order, "OrderReadyForPickup", "1", &payload);
        assert!(
            matches!(event, Ok(Event::Order(OrderEvent::OrderReadyForPickup(_)))),
            "{event:?}"
        );
        assert_eq!(event.map(|e| e.type_name()), Ok("OrderReadyForPickup"));

        let unknown = Event::decode(AggregateKind::Order, "OrderTeleported", "1", &payload);
        assert!(
            matches!(unknown, Err(DecodeError::Unknown { .. })),
            "{unknown:?}"
        );
        let newer = Event::decode(AggregateKind::Order, "OrderReadyForPickup", "9", &payload);
        assert!(
            matches!(newer, Err(DecodeError::Unknown { .. })),
            "{newer:?}"
        );
        let wrong_aggregate =
            Event::decode(AggregateKind::Payment, "OrderReadyForPickup", "1", &payload);
        assert!(matches!(wrong_aggregate, Err(DecodeError::Unknown { .. })));
        let broken = Event::decode(
            AggregateKind::Order,
            "OrderReadyForPickup",
            "1",
            &serde_json::json!({"type": "OrderReadyForPickup"}),
        );
        assert!(
            matches!(broken, Err(DecodeError::Payload { .. })),
            "{broken:?}"
        );
    }
}
