//! Commands of the `Order` aggregate. Each carries everything its decision
//! needs, including the time (`now`) and looked-up reference data.

use chrono::{DateTime, Utc};
use ordertrail_schemas::events::{DeliveryAddress, PaymentMethod};
use ordertrail_schemas::{ActorRole, CustomerId, Money, OrderId, PaymentId, RiderId};
use serde::{Deserialize, Serialize};

use crate::catalog::{MenuItemSnapshot, RestaurantSnapshot};

/// One requested line: the menu item as looked up, and how many.
pub type OrderItem = (MenuItemSnapshot, u32);

/// A customer places an order at a restaurant.
///
/// Lines naming the same menu item are merged (quantities added) as long as
/// their snapshots are identical; the merged quantity must still be 1..=50.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub restaurant: RestaurantSnapshot,
    pub items: Vec<OrderItem>,
    pub delivery_address: DeliveryAddress,
    pub payment_method: PaymentMethod,
    pub tip: Option<Money>,
    pub now: DateTime<Utc>,
}

/// The order is paid for (card: authorized payment; cash: `None`) and goes to the restaurant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmOrder {
    pub payment_id: Option<PaymentId>,
    pub now: DateTime<Utc>,
}

/// The restaurant accepts a confirmed order and says how long it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptOrder {
    /// 1..=180.
    pub preparation_minutes: u32,
    pub now: DateTime<Utc>,
}

/// The restaurant refuses a confirmed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectOrder {
    pub reason: String,
    pub now: DateTime<Utc>,
}

/// The restaurant has the food ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkReadyForPickup {
    pub now: DateTime<Utc>,
}

/// A rider took the food (from Accepted or ReadyForPickup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkPickedUp {
    pub rider_id: RiderId,
    pub now: DateTime<Utc>,
}

/// The customer has the food.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkDelivered {
    pub now: DateTime<Utc>,
}

/// Someone cancels the order. Customers may cancel until the restaurant
/// accepts; ops, admin and the system until the food is picked up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub reason: String,
    pub by: ActorRole,
    pub now: DateTime<Utc>,
}

/// The order's delivery failed (issued by the saga on `DeliveryFailed`): the
/// order is cancelled by the system, also after pickup, when nobody else may
/// cancel it any more. Allowed from acceptance (when a delivery can exist)
/// until the order is final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelUndeliverableOrder {
    pub reason: String,
    pub now: DateTime<Utc>,
}

/// Everything that can be asked of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
// One command lives per request; boxing `PlaceOrder` would only cost ergonomics.
#[allow(clippy::large_enum_variant)]
pub enum OrderCommand {
    PlaceOrder(PlaceOrder),
    ConfirmOrder(ConfirmOrder),
    AcceptOrder(AcceptOrder),
    RejectOrder(RejectOrder),
    MarkReadyForPickup(MarkReadyForPickup),
    MarkPickedUp(MarkPickedUp),
    MarkDelivered(MarkDelivered),
    CancelOrder(CancelOrder),
    CancelUndeliverableOrder(CancelUndeliverableOrder),
}

impl OrderCommand {
    /// The command's name, e.g. `PlaceOrder` (for logs and metrics).
    pub fn name(&self) -> &'static str {
        match self {
            OrderCommand::PlaceOrder(_) => "PlaceOrder",
            OrderCommand::ConfirmOrder(_) => "ConfirmOrder",
            OrderCommand::AcceptOrder(_) => "AcceptOrder",
            OrderCommand::RejectOrder(_) => "RejectOrder",
            OrderCommand::MarkReadyForPickup(_) => "MarkReadyForPickup",
            OrderCommand::MarkPickedUp(_) => "MarkPickedUp",
            OrderCommand::MarkDelivered(_) => "MarkDelivered",
            OrderCommand::CancelOrder(_) => "CancelOrder",
            OrderCommand::CancelUndeliverableOrder(_) => "CancelUndeliverableOrder",
        }
    }
}

macro_rules! from_commands {
    ($($c:ident),+) => {$(
        impl From<$c> for OrderCommand {
            fn from(value: $c) -> Self {
                OrderCommand::$c(value)
            }
        }
    )+};
}
from_commands!(
    PlaceOrder,
    ConfirmOrder,
    AcceptOrder,
    RejectOrder,
    MarkReadyForPickup,
    MarkPickedUp,
    MarkDelivered,
    CancelOrder,
    CancelUndeliverableOrder
);
