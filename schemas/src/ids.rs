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

/// An id derived from `parent` and `name`: the same inputs give the same id,
/// so the saga and retried requests address the same aggregate or command
/// every time.
///
/// A time-ordered parent (UUIDv7) gives a time-ordered id: the parent's 48-bit
/// millisecond timestamp, then the name-based hash, laid out as a UUIDv7. The
/// index entries of an order's payment, delivery and saga commands then land
/// next to the order's, at the right edge of B-trees as large as the store,
/// instead of one random leaf each (a random leaf is a full-page image in the
/// WAL for nearly every insert once the index outgrows what a checkpoint
/// interval touches). Any other parent gives the plain UUIDv5 ids were always
/// derived as, so ids already stored keep their meaning.
pub fn derived_id(parent: Uuid, name: &[u8]) -> Uuid {
    with_time_of(parent, Uuid::new_v5(&parent, name))
}

/// `id` carrying the timestamp of `parent` when the parent is a UUIDv7 (the
/// other 74 bits stay `id`'s); `id` itself otherwise.
pub fn with_time_of(parent: Uuid, id: Uuid) -> Uuid {
    if parent.get_version_num() != 7 {
        return id;
    }
    let mut bytes = *id.as_bytes();
    bytes[..6].copy_from_slice(&parent.as_bytes()[..6]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

impl PaymentId {
    /// The payment of an order: one per order, derived from the order id.
    pub fn for_order(order: OrderId) -> Self {
        Self(derived_id(order.0, b"payment"))
    }
}

impl DeliveryId {
    /// The delivery of an order: one per order, derived from the order id.
    pub fn for_order(order: OrderId) -> Self {
        Self(derived_id(order.0, b"delivery"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v7_at(unix_ms: u64) -> Uuid {
        Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            unix_ms / 1000,
            (unix_ms % 1000) as u32 * 1_000_000,
        ))
    }

    #[test]
    fn ids_derived_from_a_time_ordered_parent_keep_its_time_and_stay_deterministic() {
        let order = OrderId(v7_at(1_764_000_000_123));
        let payment = PaymentId::for_order(order);
        let delivery = DeliveryId::for_order(order);
        for id in [payment.0, delivery.0] {
            assert_eq!(id.get_version_num(), 7, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(id.get_timestamp(), order.0.get_timestamp(), "{id}");
        }
        assert_ne!(payment.0, delivery.0);
        assert_ne!(payment.0, order.0);
        assert_eq!(
            PaymentId::for_order(order),
            payment,
            "the same order, the same payment"
        );
        assert_ne!(
            PaymentId::for_order(OrderId(v7_at(1_764_000_000_123))),
            payment,
            "another order of the same millisecond has another payment"
        );
        // Orders placed later sort after, and so do their payments.
        let later = OrderId(v7_at(1_764_000_000_124));
        assert!(PaymentId::for_order(later).0 > payment.0);
        assert!(DeliveryId::for_order(later).0 > delivery.0);
    }

    #[test]
    fn ids_derived_from_any_other_parent_are_the_uuid_v5_they_always_were() {
        let order = OrderId(Uuid::parse_str("6b8f7a52-3c1e-5d4a-9f0b-2a7c9e1d4b60").unwrap());
        assert_eq!(
            PaymentId::for_order(order).0,
            Uuid::new_v5(&order.0, b"payment")
        );
        assert_eq!(
            DeliveryId::for_order(order).0,
            Uuid::new_v5(&order.0, b"delivery")
        );
        let random = Uuid::new_v4();
        assert_eq!(with_time_of(random, Uuid::nil()), Uuid::nil());
    }
}
