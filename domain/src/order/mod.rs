//! The `Order` aggregate: an order from placement to delivery (or its end by
//! rejection or cancellation). Aggregate id = the order id.
//!
//! ```text
//! Placed -> Confirmed -> Accepted -> ReadyForPickup -> PickedUp -> Delivered
//!             |             \___________________________/^
//!             +-> Rejected (restaurant)
//! Cancelled: customer while Placed/Confirmed; ops, admin, system until PickedUp.
//! ```

mod aggregate;
mod commands;
mod errors;

pub use aggregate::{
    MAX_PREPARATION_MINUTES, MAX_QUANTITY_PER_LINE, MIN_PREPARATION_MINUTES, Order,
};
pub use commands::{
    AcceptOrder, CancelOrder, CancelUndeliverableOrder, ConfirmOrder, MarkDelivered, MarkPickedUp,
    MarkReadyForPickup, OrderCommand, OrderItem, PlaceOrder, RejectOrder,
};
pub use errors::OrderError;
pub use ordertrail_schemas::OrderStatus;

#[cfg(test)]
mod tests;
