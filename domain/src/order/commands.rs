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
    /// The order to create.
    pub order_id: OrderId,
    /// The customer placing it.
    pub customer_id: CustomerId,
    /// The restaurant as looked up now (open, currency, fees, tax).
    pub restaurant: RestaurantSnapshot,
    /// What the customer asks for, as looked up on the menu.
    pub items: Vec<OrderItem>,
    /// Where the order goes.
    pub delivery_address: DeliveryAddress,
    /// How the customer pays.
    pub payment_method: PaymentMethod,
    /// The customer's tip for the rider, in the restaurant's currency.
    pub tip: Option<Money>,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The order is paid for (card: authorized payment; cash: `None`) and goes to the restaurant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmOrder {
    /// The authorized card payment; `None` for a cash order.
    pub payment_id: Option<PaymentId>,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The restaurant accepts a confirmed order and says how long it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptOrder {
    /// 1..=180.
    pub preparation_minutes: u32,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The restaurant refuses a confirmed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectOrder {
    /// Why the restaurant refuses.
    pub reason: String,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The restaurant has the food ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkReadyForPickup {
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// A rider took the food (from Accepted or ReadyForPickup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkPickedUp {
    /// The rider who took the food.
    pub rider_id: RiderId,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The customer has the food.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkDelivered {
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// Someone cancels the order. Customers may cancel until the restaurant
/// accepts; ops, admin and the system until the food is picked up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    /// Why the order is cancelled.
    pub reason: String,
    /// The role of who cancels (decides whether it is still allowed).
    pub by: ActorRole,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The order's delivery failed (issued by the saga on `DeliveryFailed`): the
/// order is cancelled by the system, also after pickup, when nobody else may
/// cancel it any more. Allowed from acceptance (when a delivery can exist)
/// until the order is final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelUndeliverableOrder {
    /// Why the delivery failed.
    pub reason: String,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

command_enum! {
    /// Everything that can be asked of an order.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    // One command lives per request; boxing `PlaceOrder` would only cost ergonomics.
    #[allow(clippy::large_enum_variant)]
    pub enum OrderCommand {
        /// Place a new order: see [`PlaceOrder`].
        PlaceOrder,
        /// Send the paid order to the restaurant: see [`ConfirmOrder`].
        ConfirmOrder,
        /// The restaurant accepts: see [`AcceptOrder`].
        AcceptOrder,
        /// The restaurant refuses: see [`RejectOrder`].
        RejectOrder,
        /// The food is ready: see [`MarkReadyForPickup`].
        MarkReadyForPickup,
        /// A rider took the food: see [`MarkPickedUp`].
        MarkPickedUp,
        /// The customer has the food: see [`MarkDelivered`].
        MarkDelivered,
        /// Someone cancels: see [`CancelOrder`].
        CancelOrder,
        /// The system cancels after a failed delivery: see [`CancelUndeliverableOrder`].
        CancelUndeliverableOrder,
    }
}
