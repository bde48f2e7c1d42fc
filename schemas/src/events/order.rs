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
    /// The menu item ordered.
    pub menu_item_id: MenuItemId,
    /// The item's name on the menu at placement.
    pub name: String,
    /// The item's price at placement.
    pub unit_price: Money,
    /// How many of the item were ordered.
    pub quantity: u32,
    /// unit_price × quantity
    pub line_total: Money,
}

/// Where the order goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryAddress {
    /// Street and house number.
    pub street: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// Where the rider drops the order off.
    pub location: GeoPoint,
}

/// How the customer pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentMethod {
    /// A card, as an opaque payment-method reference (`pm_...`, see
    /// [`crate::privacy::payment_method_ref`]); never the card token.
    Card {
        /// The opaque reference of the customer's card at the provider.
        payment_method_ref: String,
    },
    /// Cash collected by the rider on delivery.
    Cash,
}

/// The server-computed price of an order, all in the restaurant's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PriceBreakdown {
    /// Sum of the order lines.
    pub subtotal: Money,
    /// Fee for the delivery, charged to the customer.
    pub delivery_fee: Money,
    /// The platform's service fee, charged to the customer.
    pub service_fee: Money,
    /// Tax on the items, included in the total.
    pub tax: Money,
    /// The customer's tip for the rider.
    pub tip: Money,
    /// subtotal + delivery_fee + service_fee + tax + tip
    pub total: Money,
    /// Platform commission on the subtotal (basis points of the restaurant's rate).
    pub commission: Money,
}

/// A customer placed an order with a restaurant, priced by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPlaced {
    /// The order placed.
    pub order_id: OrderId,
    /// The customer who placed it.
    pub customer_id: CustomerId,
    /// The restaurant it is from.
    pub restaurant_id: RestaurantId,
    /// Where the restaurant is (the delivery's pickup point).
    pub restaurant_location: GeoPoint,
    /// IANA time zone of the restaurant (its business day).
    pub restaurant_time_zone: String,
    /// What was ordered, priced at placement.
    pub lines: Vec<OrderLine>,
    /// Where the order goes.
    pub delivery_address: DeliveryAddress,
    /// How the customer pays.
    pub payment_method: PaymentMethod,
    /// The price the customer pays, by component.
    pub price: PriceBreakdown,
    /// When the order was placed.
    pub placed_at: DateTime<Utc>,
}

/// The order is paid for (or cash) and goes to the restaurant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderConfirmed {
    /// The authorized payment; `None` for cash orders.
    pub payment_id: Option<PaymentId>,
    /// When the order was confirmed.
    pub confirmed_at: DateTime<Utc>,
}

/// The restaurant accepted the order and will prepare it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderAccepted {
    /// The restaurant's preparation estimate.
    pub preparation_minutes: u32,
    /// accepted_at + preparation_minutes
    pub ready_by: DateTime<Utc>,
    /// When the restaurant accepted.
    pub accepted_at: DateTime<Utc>,
}

/// The restaurant refused the order; it ends here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRejected {
    /// Why the restaurant refused.
    pub reason: String,
    /// When the restaurant refused.
    pub rejected_at: DateTime<Utc>,
}

/// The food is ready for the rider to pick up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderReadyForPickup {
    /// When the restaurant marked it ready.
    pub ready_at: DateTime<Utc>,
}

/// The rider picked the order up at the restaurant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPickedUp {
    /// The rider who picked it up.
    pub rider_id: RiderId,
    /// When the rider picked it up.
    pub picked_up_at: DateTime<Utc>,
}

/// The order reached the customer; it ends here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderDelivered {
    /// When the order was delivered.
    pub delivered_at: DateTime<Utc>,
}

/// The order was cancelled before delivery; it ends here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    /// Why the order was cancelled.
    pub reason: String,
    /// The role of who cancelled it (customer, ops, admin or the system).
    pub cancelled_by: ActorRole,
    /// When the order was cancelled.
    pub cancelled_at: DateTime<Utc>,
}

/// Earlier versions of order events, kept so their schemas stay published and
/// their fixtures stay tested. Writers never produce these.
// The v1 types' `///` lines are part of their published schemas, which stay
// byte for byte what they were: no docs are added here.
#[allow(missing_docs)]
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
