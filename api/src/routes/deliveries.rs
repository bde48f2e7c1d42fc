//! Delivery commands: request, assign, unassign, location reports, pickup,
//! complete with the drop-off code, fail, cancel.
//!
//! A wrong drop-off code is a fact, recorded as `DropoffCodeRejected`: the
//! answer is 422 `dropoff_code_invalid` with `details.attempts_left` and the
//! command outcome.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
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

use super::{CommandResponse, NoBody, ReasonBody, replayed_error, run};
use crate::AppState;
use crate::auth::{Authorized, RestaurantOrStaff, RiderOrStaff, RiderRole, Staff};
use crate::error::{ApiError, CommandErrors};
use crate::extract::{ApiPath, CommandRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/deliveries", post(request_delivery))
        .route("/v1/deliveries/{id}/assign", post(assign_rider))
        .route("/v1/deliveries/{id}/unassign", post(unassign_rider))
        .route("/v1/deliveries/{id}/locations", post(report_location))
        .route("/v1/deliveries/{id}/pickup", post(confirm_pickup))
        .route("/v1/deliveries/{id}/complete", post(complete_delivery))
        .route("/v1/deliveries/{id}/fail", post(fail_delivery))
        .route("/v1/deliveries/{id}/cancel", post(cancel_delivery))
}

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

/// Request the delivery of an accepted order (ops, admin, the order's
/// restaurant). The delivery id is derived from the order id.
#[utoipa::path(
    post, path = "/v1/deliveries", tag = "deliveries",
    request_body = RequestDeliveryRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, description = "Delivery requested", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn request_delivery(
    State(state): State<AppState>,
    user: Authorized<RestaurantOrStaff>,
    req: CommandRequest<RequestDeliveryRequest>,
) -> Result<CommandResponse, ApiError> {
    let request = RequestDelivery {
        order_id: OrderId(req.body.order_id),
    };
    Ok(CommandResponse::created(
        &user,
        run(&state, &user, &req, request).await?,
    ))
}

/// Assign a rider (ops, admin: any active rider; a rider: only themselves).
/// When two riders race, one wins and the other gets 409.
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/assign", tag = "deliveries",
    params(("id" = Uuid, Path, description = "Delivery id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = AssignRiderRequest,
    responses((status = 200, description = "Rider assigned", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn assign_rider(
    State(state): State<AppState>,
    user: Authorized<RiderOrStaff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<AssignRiderRequest>,
) -> Result<CommandResponse, ApiError> {
    let assign = AssignRider {
        delivery_id: DeliveryId(id),
        rider_id: RiderId(req.body.rider_id),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, assign).await?,
    ))
}

/// Take the delivery away from its rider, before pickup (ops, admin).
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/unassign", tag = "deliveries",
    params(("id" = Uuid, Path, description = "Delivery id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ReasonBody,
    responses((status = 200, description = "Rider unassigned", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn unassign_rider(
    State(state): State<AppState>,
    user: Authorized<Staff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<ReasonBody>,
) -> Result<CommandResponse, ApiError> {
    let unassign = UnassignRider {
        delivery_id: DeliveryId(id),
        reason: req.body.reason.clone(),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, unassign).await?,
    ))
}

/// A location fix from the assigned rider's device (the assigned rider only).
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/locations", tag = "deliveries",
    params(("id" = Uuid, Path, description = "Delivery id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ReportLocationRequest,
    responses((status = 200, description = "Location recorded", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn report_location(
    State(state): State<AppState>,
    user: Authorized<RiderRole>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<ReportLocationRequest>,
) -> Result<CommandResponse, ApiError> {
    let report = ReportLocation {
        delivery_id: DeliveryId(id),
        location: GeoPoint {
            lat: req.body.lat,
            lon: req.body.lon,
        },
        reported_at: req.body.reported_at,
        accuracy_m: req.body.accuracy_m,
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, report).await?,
    ))
}

/// The assigned rider has the food (the assigned rider only).
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/pickup", tag = "deliveries",
    params(("id" = Uuid, Path, description = "Delivery id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = NoBody, description = "Empty or `{}`"),
    responses((status = 200, description = "Pickup confirmed", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn confirm_pickup(
    State(state): State<AppState>,
    user: Authorized<RiderRole>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<NoBody>,
) -> Result<CommandResponse, ApiError> {
    let pickup = ConfirmPickup {
        delivery_id: DeliveryId(id),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, pickup).await?,
    ))
}

/// Hand over the food with the customer's drop-off code (the assigned rider only).
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/complete", tag = "deliveries",
    params(("id" = Uuid, Path, description = "Delivery id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = CompleteDeliveryRequest,
    responses(
        (status = 200, description = "Delivery completed", body = CommandOutcome),
        (status = 422, description = "Wrong code: `dropoff_code_invalid` with `details.attempts`, `details.attempts_left` and `details.outcome` (the recorded `DropoffCodeRejected`); or a validation error", body = crate::error::ErrorBody),
        CommandErrors
    ),
    security(("bearer" = []))
)]
pub async fn complete_delivery(
    State(state): State<AppState>,
    user: Authorized<RiderRole>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<CompleteDeliveryRequest>,
) -> Result<CommandResponse, ApiError> {
    let complete = CompleteDelivery {
        delivery_id: DeliveryId(id),
        dropoff_code: req.body.dropoff_code.clone(),
    };
    let outcome = run(&state, &user, &req, complete).await?;
    if let Some(rejected) = outcome
        .events
        .iter()
        .find(|e| e.event_type == "DropoffCodeRejected")
    {
        let attempts = rejected
            .payload
            .get("attempts")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let error = ApiError::new("dropoff_code_invalid", "the drop-off code is wrong")
            .with_details(serde_json::json!({
                "attempts": attempts,
                "attempts_left": u64::from(MAX_DROPOFF_ATTEMPTS).saturating_sub(attempts),
                "outcome": super::visibility::outcome(&user, outcome.clone()),
            }));
        return Err(replayed_error(error, &outcome));
    }
    Ok(CommandResponse::ok(&user, outcome))
}

/// Give up the delivery (the assigned rider, ops, admin).
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/fail", tag = "deliveries",
    params(("id" = Uuid, Path, description = "Delivery id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ReasonBody,
    responses((status = 200, description = "Delivery failed", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn fail_delivery(
    State(state): State<AppState>,
    user: Authorized<RiderOrStaff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<ReasonBody>,
) -> Result<CommandResponse, ApiError> {
    let fail = FailDelivery {
        delivery_id: DeliveryId(id),
        reason: req.body.reason.clone(),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, fail).await?,
    ))
}

/// The delivery is no longer needed, before pickup (ops, admin).
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/cancel", tag = "deliveries",
    params(("id" = Uuid, Path, description = "Delivery id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ReasonBody,
    responses((status = 200, description = "Delivery cancelled", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn cancel_delivery(
    State(state): State<AppState>,
    user: Authorized<Staff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<ReasonBody>,
) -> Result<CommandResponse, ApiError> {
    let cancel = CancelDelivery {
        delivery_id: DeliveryId(id),
        reason: req.body.reason.clone(),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, cancel).await?,
    ))
}
