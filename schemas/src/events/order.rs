//! Events of the `Order` aggregate.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::event_enum;
use crate::{
    ActorRole, CustomerId, GeoPoint, MenuItemId, Money, OrderId, PaymentId, RestaurantId, RiderId,
};

/// One priced line of an order, snapshotted from the menu at placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    pub menu_item_id: MenuItemId,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
    pub line_total: Money,
}

/// Where the order goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryAddress {
    pub street: String,
    pub city: String,
    pub postal_code: String,
    pub location: GeoPoint,
}

/// How the customer pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentMethod {
    /// A card, as an opaque payment-method reference (`pm_...`, see
    /// [`crate::privacy::payment_method_ref`]); never the card token.
    Card { payment_method_ref: String },
    /// Cash collected by the rider on delivery.
    Cash,
}

/// The server-computed price of an order, all in the restaurant's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PriceBreakdown {
    pub subtotal: Money,
    pub delivery_fee: Money,
    pub service_fee: Money,
    pub tax: Money,
    pub tip: Money,
    /// subtotal + delivery_fee + service_fee + tax + tip
    pub total: Money,
    /// Platform commission on the subtotal (basis points of the restaurant's rate).
    pub commission: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub restaurant_id: RestaurantId,
    /// Where the restaurant is (the delivery's pickup point).
    pub restaurant_location: GeoPoint,
    /// IANA time zone of the restaurant (its business day).
    pub restaurant_time_zone: String,
    pub lines: Vec<OrderLine>,
    pub delivery_address: DeliveryAddress,
    pub payment_method: PaymentMethod,
    pub price: PriceBreakdown,
    pub placed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderConfirmed {
    /// The authorized payment; `None` for cash orders.
    pub payment_id: Option<PaymentId>,
    pub confirmed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderAccepted {
    /// The restaurant's preparation estimate.
    pub preparation_minutes: u32,
    /// accepted_at + preparation_minutes
    pub ready_by: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRejected {
    pub reason: String,
    pub rejected_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderReadyForPickup {
    pub ready_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPickedUp {
    pub rider_id: RiderId,
    pub picked_up_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderDelivered {
    pub delivered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    pub reason: String,
    pub cancelled_by: ActorRole,
    pub cancelled_at: DateTime<Utc>,
}

/// Earlier versions of order events, kept so their schemas stay published and
/// their fixtures stay tested. Writers never produce these.
pub mod legacy_order {
    use super::*;

    // The v1 types keep the v1 documentation (`///` lines end up in the
    // published schema, which must not change).

    /// How the customer pays.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    #[schemars(rename = "PaymentMethod")]
    pub enum PaymentMethodV1 {
        /// A card, represented by the payment provider's token.
        Card { card_token: String },
        /// Cash collected by the rider on delivery.
        Cash,
    }

    // `OrderPlaced` version 1: the card token in clear.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[schemars(rename = "OrderPlaced")]
    pub struct OrderPlacedV1 {
        pub order_id: OrderId,
        pub customer_id: CustomerId,
        pub restaurant_id: RestaurantId,
        /// Where the restaurant is (the delivery's pickup point).
        pub restaurant_location: GeoPoint,
        /// IANA time zone of the restaurant (its business day).
        pub restaurant_time_zone: String,
        pub lines: Vec<OrderLine>,
        pub delivery_address: DeliveryAddress,
        pub payment_method: PaymentMethodV1,
        pub price: PriceBreakdown,
        pub placed_at: DateTime<Utc>,
    }
}

event_enum!(
    /// Everything that can happen to an order.
    OrderEvent {
        OrderPlaced => "2",
        OrderConfirmed => "1",
        OrderAccepted => "1",
        OrderRejected => "1",
        OrderReadyForPickup => "1",
        OrderPickedUp => "1",
        OrderDelivered => "1",
        OrderCancelled => "1",
    }
);
