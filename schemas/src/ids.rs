//! Identifier newtypes. Every id is a UUID; the type says what it identifies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
    };
}

id_type!(
    /// An order placed by a customer at one restaurant.
    OrderId
);
id_type!(
    /// A payment for one order (card authorization or cash collection).
    PaymentId
);
id_type!(
    /// A delivery of one order by one rider.
    DeliveryId
);
id_type!(
    /// A customer (the `sub` of a customer token).
    CustomerId
);
id_type!(
    /// A restaurant or store (the `sub` of a restaurant token).
    RestaurantId
);
id_type!(
    /// A rider (the `sub` of a rider token).
    RiderId
);
id_type!(
    /// An item on a restaurant's menu.
    MenuItemId
);

/// Namespace for ids derived from other ids (uuid v5), so that the saga and
/// retried requests address the same aggregate every time.
pub const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7274_7261_696c_0000_0000_0001);

impl PaymentId {
    /// The payment of an order: one per order, derived from the order id.
    pub fn for_order(order: OrderId) -> Self {
        Self(Uuid::new_v5(&order.0, b"payment"))
    }
}

impl DeliveryId {
    /// The delivery of an order: one per order, derived from the order id.
    pub fn for_order(order: OrderId) -> Self {
        Self(Uuid::new_v5(&order.0, b"delivery"))
    }
}
