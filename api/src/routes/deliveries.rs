//! Delivery commands: request, assign, unassign, location reports, pickup,
//! complete with the drop-off code, fail, cancel.
//!
//! A wrong drop-off code is a fact, recorded as `DropoffCodeRejected`: the
//! answer is 422 `dropoff_code_invalid` with `details.attempts_left` and the
//! command outcome.

use chrono::{DateTime, Utc};
use ordertrail_commands::service::CommandOutcome;
use ordertrail_commands::workflows::{
    AssignRider, CancelDelivery, CompleteDelivery, ConfirmPickup, FailDelivery,
    MAX_DROPOFF_ATTEMPTS, ReportLocation, RequestDelivery, UnassignRider,
};
use ordertrail_schemas::{DeliveryId, GeoPoint, OrderId, RiderId};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use axum::http::StatusCode;

use super::{CommandResponse, NoBody, ReasonBody, answer_or_refusal};
use crate::auth::{AuthUser, RestaurantOrStaff, RiderOrStaff, RiderRole, Staff};
use crate::error::ApiError;

/// `POST /v1/deliveries`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestDeliveryRequest {
    pub order_id: Uuid,
}

/// `POST /v1/deliveries/{id}/assign`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRiderRequest {
    pub rider_id: Uuid,
}

/// `POST /v1/deliveries/{id}/locations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportLocationRequest {
    #[schema(example = 52.5, minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(example = 13.41, minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// Device time of the fix (RFC 3339, UTC); never earlier than the last one.
    pub reported_at: DateTime<Utc>,
    /// Horizontal accuracy the device reports, metres.
    #[schema(example = 8)]
    pub accuracy_m: Option<u32>,
}

/// `POST /v1/deliveries/{id}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteDeliveryRequest {
    /// The 4-digit code the customer gives the rider.
    #[schema(example = "0427", pattern = "^[0-9]{4}$")]
    pub dropoff_code: String,
}

command_routes! {
    tag = "deliveries", id = "Delivery id";

    /// Request the delivery of an accepted order (ops, admin, the order's
    /// restaurant). The delivery id is derived from the order id.
    post "/v1/deliveries" => 201 "Delivery requested";
    fn request_delivery(user: RestaurantOrStaff, body: RequestDeliveryRequest) {
        RequestDelivery {
            order_id: OrderId(body.order_id),
        }
    }

    /// Assign a rider (ops, admin: any active rider; a rider: only themselves).
    /// When two riders race, one wins and the other gets 409.
    post "/v1/deliveries/{id}/assign" => 200 "Rider assigned";
    fn assign_rider(user: RiderOrStaff, body: AssignRiderRequest, id: Uuid) {
        AssignRider {
            delivery_id: DeliveryId(id),
            rider_id: RiderId(body.rider_id),
        }
    }

    /// Take the delivery away from its rider, before pickup (ops, admin).
    post "/v1/deliveries/{id}/unassign" => 200 "Rider unassigned";
    fn unassign_rider(user: Staff, body: ReasonBody, id: Uuid) {
        UnassignRider {
            delivery_id: DeliveryId(id),
            reason: body.reason.clone(),
        }
    }

    /// A location fix from the assigned rider's device (the assigned rider only).
    post "/v1/deliveries/{id}/locations" => 200 "Location recorded";
    fn report_location(user: RiderRole, body: ReportLocationRequest, id: Uuid) {
        ReportLocation {
            delivery_id: DeliveryId(id),
            location: GeoPoint {
                lat: body.lat,
                lon: body.lon,
            },
            reported_at: body.reported_at,
            accuracy_m: body.accuracy_m,
        }
    }

    /// The assigned rider has the food (the assigned rider only).
    post "/v1/deliveries/{id}/pickup" => 200 "Pickup confirmed";
    fn confirm_pickup(user: RiderRole, _: NoBody, id: Uuid) {
        ConfirmPickup { delivery_id: DeliveryId(id) }
    }

    /// Hand over the food with the customer's drop-off code (the assigned rider only).
    post "/v1/deliveries/{id}/complete" => 200 "Delivery completed",
        (status = 422, description = "Wrong code: `dropoff_code_invalid` with `details.attempts`, `details.attempts_left` and `details.outcome` (the recorded `DropoffCodeRejected`); or a validation error", body = crate::error::ErrorBody);
    fn complete_delivery(user: RiderRole, body: CompleteDeliveryRequest, id: Uuid) -> answer_completed {
        CompleteDelivery {
            delivery_id: DeliveryId(id),
            dropoff_code: body.dropoff_code.clone(),
        }
    }

    /// Give up the delivery (the assigned rider, ops, admin).
    post "/v1/deliveries/{id}/fail" => 200 "Delivery failed";
    fn fail_delivery(user: RiderOrStaff, body: ReasonBody, id: Uuid) {
        FailDelivery {
            delivery_id: DeliveryId(id),
            reason: body.reason.clone(),
        }
    }

    /// The delivery is no longer needed, before pickup (ops, admin).
    post "/v1/deliveries/{id}/cancel" => 200 "Delivery cancelled";
    fn cancel_delivery(user: Staff, body: ReasonBody, id: Uuid) {
        CancelDelivery {
            delivery_id: DeliveryId(id),
            reason: body.reason.clone(),
        }
    }
}

/// 200 with the outcome, or 422 `dropoff_code_invalid` when the outcome is
/// a recorded `DropoffCodeRejected`.
fn answer_completed(user: &AuthUser, outcome: CommandOutcome) -> Result<CommandResponse, ApiError> {
    answer_or_refusal(
        user,
        outcome,
        StatusCode::OK,
        "DropoffCodeRejected",
        |rejected, outcome| {
            let attempts = rejected
                .get("attempts")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            ApiError::new("dropoff_code_invalid", "the drop-off code is wrong").with_details(
                serde_json::json!({
                    "attempts": attempts,
                    "attempts_left": u64::from(MAX_DROPOFF_ATTEMPTS).saturating_sub(attempts),
                    "outcome": outcome,
                }),
            )
        },
    )
}
