//! Commands of the `Delivery` aggregate.

use chrono::{DateTime, Utc};
use ordertrail_schemas::{DeliveryId, GeoPoint, OrderId, RestaurantId, RiderId};
use serde::{Deserialize, Serialize};

/// Ask for a rider to bring an order from `pickup` to `dropoff`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestDelivery {
    /// The delivery to create.
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
    /// door (`hmac-sha256:...`, see `ordertrail_schemas::privacy`); the code
    /// itself never enters the aggregate or its events.
    pub dropoff_code_hash: String,
    /// When the food is expected to be ready; `None` when not known yet.
    pub ready_by: Option<DateTime<Utc>>,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// Give the delivery to a rider (only while nobody holds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignRider {
    /// The rider who takes the delivery.
    pub rider_id: RiderId,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// Take the delivery away from its rider (only before pickup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnassignRider {
    /// Why the rider is taken off.
    pub reason: String,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// A location fix from the assigned rider's device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportLocation {
    /// The rider whose device sent the fix (must be the assigned one).
    pub rider_id: RiderId,
    /// Where the rider is.
    pub location: GeoPoint,
    /// Device time of the fix.
    pub reported_at: DateTime<Utc>,
    /// Horizontal accuracy the device reports, metres (recorded as given).
    pub accuracy_m: Option<u32>,
    /// Server time.
    pub now: DateTime<Utc>,
}

/// The assigned rider has the food.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmPickup {
    /// The rider who has the food (must be the assigned one).
    pub rider_id: RiderId,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The assigned rider hands over the food, proven by the customer's code.
/// A wrong code is recorded (`DropoffCodeRejected`) and the command succeeds;
/// after [`MAX_DROPOFF_ATTEMPTS`](super::MAX_DROPOFF_ATTEMPTS) wrong codes
/// further attempts are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteDelivery {
    /// The rider handing over (must be the assigned one).
    pub rider_id: RiderId,
    /// What the rider typed (checked for shape: exactly 4 digits).
    pub dropoff_code: String,
    /// Every stored form that code may have (see
    /// `ordertrail_schemas::privacy::DropoffCodeKey::candidates`): the code
    /// is right when one of them is the requested delivery's hash.
    pub dropoff_code_hashes: Vec<String>,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The delivery cannot be completed (before completion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailDelivery {
    /// Why the delivery cannot be completed.
    pub reason: String,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// The delivery is no longer needed (before pickup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelDelivery {
    /// Why the delivery is no longer needed.
    pub reason: String,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

/// Flag a delivery for operations (issued by the saga's timeouts): nobody
/// took it in time (again after it lost its rider), or it is overdue after
/// pickup. Before completion, once per phase (waiting, assigned, picked up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagDelivery {
    /// Why operations should look at the delivery.
    pub reason: String,
    /// When the command is decided (server time); stamped on its event.
    pub now: DateTime<Utc>,
}

command_enum! {
    /// Everything that can be asked of a delivery.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    pub enum DeliveryCommand {
        /// Ask for a rider: see [`RequestDelivery`].
        RequestDelivery,
        /// Give the delivery to a rider: see [`AssignRider`].
        AssignRider,
        /// Take the delivery from its rider: see [`UnassignRider`].
        UnassignRider,
        /// A rider's location fix: see [`ReportLocation`].
        ReportLocation,
        /// The rider has the food: see [`ConfirmPickup`].
        ConfirmPickup,
        /// The rider hands the food over: see [`CompleteDelivery`].
        CompleteDelivery,
        /// The delivery cannot be completed: see [`FailDelivery`].
        FailDelivery,
        /// The delivery is no longer needed: see [`CancelDelivery`].
        CancelDelivery,
        /// Flag the delivery for operations: see [`FlagDelivery`].
        FlagDelivery,
    }
}
