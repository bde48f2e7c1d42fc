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
use ordertrail_commands::catalog;
use ordertrail_commands::service::CommandOutcome;
use ordertrail_domain::delivery::{
    AssignRider, CancelDelivery, CompleteDelivery, ConfirmPickup, FailDelivery,
    MAX_DROPOFF_ATTEMPTS, ReportLocation, UnassignRider,
};
use ordertrail_domain::{Delivery, DeliveryCommand};
use ordertrail_schemas::{ActorRole, DeliveryId, GeoPoint, OrderId, RiderId};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::orders::ensure_restaurant_owns;
use super::{CommandResponse, NoBody, ReasonBody, load_delivery, load_order, replayed_error};
use crate::AppState;
use crate::auth::{AuthUser, Authorized, RestaurantOrStaff, RiderOrStaff, RiderRole, Staff};
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

/// The delivery, if the caller is its assigned rider (staff pass); for any
/// other rider it does not exist (404 `delivery_not_found`, as for an unknown id).
async fn delivery_for(
    state: &AppState,
    user: &AuthUser,
    id: DeliveryId,
) -> Result<(Delivery, Option<RiderId>), ApiError> {
    let delivery = load_delivery(&state.commands, id).await?;
    if user.is_staff() {
        return Ok((delivery, None));
    }
    match (user.rider_id(), delivery.assigned_rider()) {
        (Some(me), Some(assigned)) if me == assigned => Ok((delivery, Some(me))),
        _ => Err(ApiError::new(
            "delivery_not_found",
            format!("delivery {id} does not exist"),
        )),
    }
}

async fn delivery_command(
    state: &AppState,
    user: &AuthUser,
    req: &CommandRequest<impl Sized>,
    id: DeliveryId,
    command: impl Into<DeliveryCommand>,
) -> Result<CommandOutcome, ApiError> {
    Ok(state
        .commands
        .execute_delivery(&req.context(user), id, command.into())
        .await?)
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
    let order_id = OrderId(req.body.order_id);
    let order = load_order(&state.commands, order_id).await?;
    if user.role == ActorRole::Restaurant {
        ensure_restaurant_owns(&user, &order)?;
    }
    let outcome = state
        .commands
        .request_delivery_for_order(&req.context(&user), order_id)
        .await?;
    Ok(CommandResponse::created(&user, outcome))
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
    let id = DeliveryId(id);
    let rider_id = RiderId(req.body.rider_id);
    if !user.is_staff() && user.rider_id() != Some(rider_id) {
        return Err(ApiError::forbidden("a rider may only assign themselves"));
    }
    load_delivery(&state.commands, id).await?;
    let rider = catalog::get_rider(&state.pool, rider_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                "rider_not_found",
                format!("rider {rider_id} does not exist"),
            )
        })?;
    if !rider.active {
        return Err(ApiError::new(
            "rider_inactive",
            format!("rider {rider_id} is not active"),
        ));
    }
    let command = AssignRider {
        rider_id,
        now: Utc::now(),
    };
    Ok(CommandResponse::ok(
        &user,
        delivery_command(&state, &user, &req, id, command).await?,
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
    let command = UnassignRider {
        reason: req.body.reason.clone(),
        now: Utc::now(),
    };
    Ok(CommandResponse::ok(
        &user,
        delivery_command(&state, &user, &req, DeliveryId(id), command).await?,
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
    let id = DeliveryId(id);
    let (_, rider) = delivery_for(&state, &user, id).await?;
    let rider_id =
        rider.ok_or_else(|| ApiError::forbidden("only the assigned rider reports locations"))?;
    let command = ReportLocation {
        rider_id,
        location: GeoPoint {
            lat: req.body.lat,
            lon: req.body.lon,
        },
        reported_at: req.body.reported_at,
        accuracy_m: req.body.accuracy_m,
        now: Utc::now(),
    };
    Ok(CommandResponse::ok(
        &user,
        delivery_command(&state, &user, &req, id, command).await?,
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
    let id = DeliveryId(id);
    let (_, rider) = delivery_for(&state, &user, id).await?;
    let rider_id =
        rider.ok_or_else(|| ApiError::forbidden("only the assigned rider confirms pickup"))?;
    let command = ConfirmPickup {
        rider_id,
        now: Utc::now(),
    };
    Ok(CommandResponse::ok(
        &user,
        delivery_command(&state, &user, &req, id, command).await?,
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
    let id = DeliveryId(id);
    let (_, rider) = delivery_for(&state, &user, id).await?;
    let rider_id =
        rider.ok_or_else(|| ApiError::forbidden("only the assigned rider completes a delivery"))?;
    let command = CompleteDelivery {
        rider_id,
        dropoff_code: req.body.dropoff_code.clone(),
        dropoff_code_hashes: state
            .commands
            .dropoff_code_hashes(id, &req.body.dropoff_code),
        now: Utc::now(),
    };
    let outcome = delivery_command(&state, &user, &req, id, command).await?;
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
    let id = DeliveryId(id);
    delivery_for(&state, &user, id).await?;
    let command = FailDelivery {
        reason: req.body.reason.clone(),
        now: Utc::now(),
    };
    Ok(CommandResponse::ok(
        &user,
        delivery_command(&state, &user, &req, id, command).await?,
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
    let command = CancelDelivery {
        reason: req.body.reason.clone(),
        now: Utc::now(),
    };
    Ok(CommandResponse::ok(
        &user,
        delivery_command(&state, &user, &req, DeliveryId(id), command).await?,
    ))
}
