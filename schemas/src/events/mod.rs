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
    Order,
    Payment,
    Delivery,
}

impl AggregateKind {
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
            $($variant($variant)),+
        }

        impl $enum {
            /// Every `(event_type, current version)` pair of this enum.
            pub const TYPES: &'static [(&'static str, &'static str)] = &[$((stringify!($variant), $version)),+];

            pub fn type_name(&self) -> &'static str {
                match self {
                    $($enum::$variant(_) => stringify!($variant)),+
                }
            }

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
