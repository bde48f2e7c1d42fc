//! Events of the `Delivery` aggregate.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::event_enum;
use crate::{DeliveryId, GeoPoint, OrderId, RestaurantId, RiderId};

/// A delivery of an order from the restaurant to the customer was requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryRequested {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The order to deliver.
    pub order_id: OrderId,
    /// The restaurant the order is from.
    pub restaurant_id: RestaurantId,
    /// Where the rider picks the order up (the restaurant).
    pub pickup: GeoPoint,
    /// Where the rider drops the order off (the customer's address).
    pub dropoff: GeoPoint,
    /// Keyed hash of the 4-digit code the customer tells the rider at the
    /// door (`hmac-sha256:<hex>`; `sha256:<hex>` for events first written as
    /// version 1). Never the code: see [`crate::privacy`].
    pub dropoff_code_hash: String,
    /// When the food is expected to be ready (drives the pickup ETA).
    pub ready_by: Option<DateTime<Utc>>,
    /// When the delivery was requested.
    pub requested_at: DateTime<Utc>,
}

/// A rider took the delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RiderAssigned {
    /// The rider now assigned.
    pub rider_id: RiderId,
    /// When the rider was assigned.
    pub assigned_at: DateTime<Utc>,
}

/// The assigned rider was taken off the delivery; it waits for another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RiderUnassigned {
    /// The rider taken off.
    pub rider_id: RiderId,
    /// Why the rider was taken off.
    pub reason: String,
    /// When the rider was taken off.
    pub unassigned_at: DateTime<Utc>,
}

/// A GPS fix from the assigned rider's device.
///
/// Version 2 added `accuracy_m`. Version 1 events (without it) are upcast to
/// version 2 when loaded and when published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RiderLocationReported {
    /// The rider whose device reported the fix.
    pub rider_id: RiderId,
    /// Where the rider was.
    pub location: GeoPoint,
    /// Device time of the fix; never goes backwards within a delivery.
    pub reported_at: DateTime<Utc>,
    /// Horizontal accuracy of the fix in metres (68% confidence radius) as the
    /// device reports it; absent when the device did not report one and in
    /// every event first written as version 1.
    #[serde(default)]
    pub accuracy_m: Option<u32>,
}

/// Earlier versions of delivery events, kept so their schemas stay published and
/// their fixtures stay tested. Writers never produce these.
// The v1 types' `///` lines are part of their published schemas, which stay
// byte for byte what they were: no docs are added here.
#[allow(missing_docs)]
pub mod legacy {
    use super::*;

    // `DeliveryRequested` version 1: the drop-off code in clear (a `//`
    // comment so the published v1 schema stays what it was).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[schemars(rename = "DeliveryRequested")]
    pub struct DeliveryRequestedV1 {
        pub delivery_id: DeliveryId,
        pub order_id: OrderId,
        pub restaurant_id: RestaurantId,
        pub pickup: GeoPoint,
        pub dropoff: GeoPoint,
        /// The 4-digit code the customer tells the rider at the door.
        pub dropoff_code: String,
        /// When the food is expected to be ready (drives the pickup ETA).
        pub ready_by: Option<DateTime<Utc>>,
        pub requested_at: DateTime<Utc>,
    }

    /// `RiderLocationReported` version 1 (before `accuracy_m`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[schemars(rename = "RiderLocationReported")]
    pub struct RiderLocationReportedV1 {
        pub rider_id: RiderId,
        pub location: GeoPoint,
        /// Device time of the fix; never goes backwards within a delivery.
        pub reported_at: DateTime<Utc>,
    }
}

/// The rider confirmed picking the order up at the restaurant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PickupConfirmed {
    /// The rider who picked it up.
    pub rider_id: RiderId,
    /// When the rider picked it up.
    pub picked_up_at: DateTime<Utc>,
}

/// The rider entered a wrong drop-off code at the door.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DropoffCodeRejected {
    /// The rider who entered it.
    pub rider_id: RiderId,
    /// Failed attempts so far, including this one.
    pub attempts: u32,
    /// When the code was refused.
    pub rejected_at: DateTime<Utc>,
}

/// The rider handed the order over with the right drop-off code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryCompleted {
    /// The rider who delivered.
    pub rider_id: RiderId,
    /// When the delivery was completed.
    pub completed_at: DateTime<Utc>,
}

/// The delivery could not be completed; it ends here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryFailed {
    /// Why the delivery failed.
    pub reason: String,
    /// When it failed.
    pub failed_at: DateTime<Utc>,
}

/// The delivery was called off before pickup; it ends here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryCancelled {
    /// Why the delivery was cancelled.
    pub reason: String,
    /// When it was cancelled.
    pub cancelled_at: DateTime<Utc>,
}

/// Nobody took the delivery in time: operations should look at it (the saga's
/// assignment timeout). Only a flag for the backoffice; the delivery stays
/// requested and can still be assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryFlagged {
    /// Why it needs attention, e.g. `no rider assigned within 600 s`.
    pub reason: String,
    /// When it was flagged.
    pub flagged_at: DateTime<Utc>,
}

event_enum!(
    /// Everything that can happen to a delivery.
    DeliveryEvent {
        DeliveryRequested => "2",
        RiderAssigned => "1",
        RiderUnassigned => "1",
        RiderLocationReported => "2",
        PickupConfirmed => "1",
        DropoffCodeRejected => "1",
        DeliveryCompleted => "1",
        DeliveryFailed => "1",
        DeliveryCancelled => "1",
        DeliveryFlagged => "1",
    }
);
