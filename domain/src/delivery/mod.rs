//! The `Delivery` aggregate: one order's trip from the restaurant to the
//! customer. Aggregate id = the delivery id, normally `DeliveryId::for_order`.
//!
//! ```text
//! Requested <-> Assigned -> PickedUp -> Completed
//!     \            \           \-----> Failed
//!      +------------+--> Cancelled (before pickup), Failed (before completion)
//! ```

mod aggregate;
mod commands;
mod errors;

pub use aggregate::{
    DROPOFF_CODE_INVALID, Delivery, MAX_DROPOFF_ATTEMPTS, MAX_LOCATION_LEAD_SECONDS,
    MAX_RIDER_SPEED_KMH, is_valid_dropoff_code,
};
pub use commands::{
    AssignRider, CancelDelivery, CompleteDelivery, ConfirmPickup, DeliveryCommand, FailDelivery,
    FlagDelivery, ReportLocation, RequestDelivery, UnassignRider,
};
pub use errors::DeliveryError;
pub use ordertrail_schemas::DeliveryStatus;

#[cfg(test)]
mod tests;
