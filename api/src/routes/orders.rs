//! Order commands: place, confirm, accept, reject, ready, picked up,
//! delivered, cancel, and cash collected on delivery. Each handler parses
//! the request, checks the role, runs one workflow
//! ([`ordertrail_commands::workflows`]) and answers.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use ordertrail_commands::card_payment_method;
use ordertrail_commands::service::CommandOutcome;
use ordertrail_commands::workflows::{
    AcceptOrder, CancelOrder, ConfirmOrder, MarkDelivered, MarkPickedUp, MarkReady, PlaceOrder,
    RecordCashCollected, RejectOrder,
};
use ordertrail_schemas::events::{DeliveryAddress, PaymentMethod};
use ordertrail_schemas::{GeoPoint, MenuItemId, OrderId, RestaurantId, RiderId};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{CommandResponse, NoBody, ReasonBody, run};
use crate::AppState;
use crate::auth::{Authorized, CustomerOrStaff, CustomerRole, RestaurantRole, RiderOrStaff, Staff};
use crate::error::{ApiError, CommandErrors};
use crate::extract::{ApiPath, CommandRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(place_order))
        .route("/v1/orders/{id}/confirm", post(confirm_order))
        .route("/v1/orders/{id}/accept", post(accept_order))
        .route("/v1/orders/{id}/reject", post(reject_order))
        .route("/v1/orders/{id}/ready", post(mark_ready))
        .route("/v1/orders/{id}/picked-up", post(mark_picked_up))
        .route("/v1/orders/{id}/delivered", post(mark_delivered))
        .route("/v1/orders/{id}/cancel", post(cancel_order))
        .route(
            "/v1/orders/{id}/cash-collected",
            post(record_cash_collected),
        )
}

/// A point in WGS84 degrees.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    #[schema(example = 52.52, minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(example = 13.405, minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
}

impl From<Location> for GeoPoint {
    fn from(l: Location) -> Self {
        GeoPoint {
            lat: l.lat,
            lon: l.lon,
        }
    }
}

/// One line of an order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemRequest {
    pub menu_item_id: Uuid,
    /// 1..=50.
    #[schema(example = 2, minimum = 1, maximum = 50)]
    pub quantity: u32,
}

/// Where the order goes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryAddressRequest {
    /// 1..=200 characters, no control characters.
    #[schema(
        example = "Oranienstraße 25",
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub street: String,
    /// 1..=100 characters, no control characters.
    #[schema(
        example = "Berlin",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub city: String,
    /// 1..=16 characters, no control characters.
    #[schema(
        example = "10999",
        min_length = 1,
        max_length = 16,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub postal_code: String,
    pub location: Location,
}

/// How the customer pays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentMethodRequest {
    /// A card, as the payment provider's token (simulated: `tok_visa`, `tok_declined`, ...),
    /// 1..=255 characters. The token is handed to the provider and never
    /// stored: events and answers carry an opaque `payment_method_ref` (`pm_...`).
    Card {
        /// Not only white space.
        #[schema(
            min_length = 1,
            max_length = 255,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )]
        card_token: String,
    },
    /// Cash collected by the rider on delivery.
    Cash,
}

/// `POST /v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    pub restaurant_id: Uuid,
    /// At least one line.
    #[schema(min_items = 1)]
    pub items: Vec<OrderItemRequest>,
    pub delivery_address: DeliveryAddressRequest,
    pub payment_method: PaymentMethodRequest,
    /// Tip in minor units of the restaurant's currency: 0..=10000 (100.00 in
    /// EUR, GBP, USD); the order's total is capped at 500000 (5 000.00).
    #[schema(minimum = 0, maximum = 10000)]
    pub tip_minor: Option<i64>,
}

/// `POST /v1/orders/{id}/accept`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptOrderRequest {
    /// The restaurant's estimate, 1..=180 minutes.
    #[schema(example = 15, minimum = 1, maximum = 180)]
    pub preparation_minutes: u32,
}

/// `POST /v1/orders/{id}/picked-up`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPickedUpRequest {
    pub rider_id: Uuid,
}

/// A customer caller who did not place this order is told it does not
/// exist (404 `order_not_found`, as for an unknown id).
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders",
    request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1..=255 visible ASCII characters")),
    responses((status = 201, description = "Order placed", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn place_order(
    State(state): State<AppState>,
    user: Authorized<CustomerRole>,
    req: CommandRequest<PlaceOrderRequest>,
) -> Result<CommandResponse, ApiError> {
    let customer_id = user
        .customer_id()
        .ok_or_else(|| ApiError::forbidden("only customers place orders"))?;
    let body = &req.body;
    let place = PlaceOrder {
        customer_id,
        restaurant_id: RestaurantId(body.restaurant_id),
        items: body
            .items
            .iter()
            .map(|i| (MenuItemId(i.menu_item_id), i.quantity))
            .collect(),
        delivery_address: DeliveryAddress {
            street: body.delivery_address.street.clone(),
            city: body.delivery_address.city.clone(),
            postal_code: body.delivery_address.postal_code.clone(),
            location: body.delivery_address.location.into(),
        },
        payment_method: match &body.payment_method {
            PaymentMethodRequest::Card { card_token } => card_payment_method(card_token)?,
            PaymentMethodRequest::Cash => PaymentMethod::Cash,
        },
        tip_minor: body.tip_minor,
    };
    let outcome = run(&state, &user, &req, place).await?;
    Ok(CommandResponse::created(&user, outcome))
}

/// Confirm an order (ops, admin): a card order needs its payment authorized
/// (`POST /v1/payments`); a cash order is confirmed as is.
#[utoipa::path(
    post, path = "/v1/orders/{id}/confirm", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = NoBody, description = "Empty or `{}`"),
    responses((status = 200, description = "Order confirmed", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn confirm_order(
    State(state): State<AppState>,
    user: Authorized<Staff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<NoBody>,
) -> Result<CommandResponse, ApiError> {
    let confirm = ConfirmOrder {
        order_id: OrderId(id),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, confirm).await?,
    ))
}

/// Accept a confirmed order with a preparation estimate (the order's restaurant).
#[utoipa::path(
    post, path = "/v1/orders/{id}/accept", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = AcceptOrderRequest,
    responses((status = 200, description = "Order accepted", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn accept_order(
    State(state): State<AppState>,
    user: Authorized<RestaurantRole>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<AcceptOrderRequest>,
) -> Result<CommandResponse, ApiError> {
    let accept = AcceptOrder {
        order_id: OrderId(id),
        preparation_minutes: req.body.preparation_minutes,
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, accept).await?,
    ))
}

/// Refuse a confirmed order (the order's restaurant).
#[utoipa::path(
    post, path = "/v1/orders/{id}/reject", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ReasonBody,
    responses((status = 200, description = "Order rejected", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn reject_order(
    State(state): State<AppState>,
    user: Authorized<RestaurantRole>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<ReasonBody>,
) -> Result<CommandResponse, ApiError> {
    let reject = RejectOrder {
        order_id: OrderId(id),
        reason: req.body.reason.clone(),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, reject).await?,
    ))
}

/// The food is ready for pickup (the order's restaurant).
#[utoipa::path(
    post, path = "/v1/orders/{id}/ready", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = NoBody, description = "Empty or `{}`"),
    responses((status = 200, description = "Order ready for pickup", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn mark_ready(
    State(state): State<AppState>,
    user: Authorized<RestaurantRole>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<NoBody>,
) -> Result<CommandResponse, ApiError> {
    let ready = MarkReady {
        order_id: OrderId(id),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, ready).await?,
    ))
}

/// A rider took the food (ops, admin).
#[utoipa::path(
    post, path = "/v1/orders/{id}/picked-up", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = MarkPickedUpRequest,
    responses((status = 200, description = "Order picked up", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn mark_picked_up(
    State(state): State<AppState>,
    user: Authorized<Staff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<MarkPickedUpRequest>,
) -> Result<CommandResponse, ApiError> {
    let picked_up = MarkPickedUp {
        order_id: OrderId(id),
        rider_id: RiderId(req.body.rider_id),
        at: None,
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, picked_up).await?,
    ))
}

/// The customer has the food (ops, admin).
#[utoipa::path(
    post, path = "/v1/orders/{id}/delivered", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = NoBody, description = "Empty or `{}`"),
    responses((status = 200, description = "Order delivered", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn mark_delivered(
    State(state): State<AppState>,
    user: Authorized<Staff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<NoBody>,
) -> Result<CommandResponse, ApiError> {
    let delivered = MarkDelivered {
        order_id: OrderId(id),
        at: None,
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, delivered).await?,
    ))
}

/// Cancel an order: its customer (until the restaurant accepts), ops or admin
/// (until pickup). The domain decides which states allow which role.
#[utoipa::path(
    post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = ReasonBody,
    responses((status = 200, description = "Order cancelled", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    user: Authorized<CustomerOrStaff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<ReasonBody>,
) -> Result<CommandResponse, ApiError> {
    let cancel = CancelOrder {
        order_id: OrderId(id),
        reason: req.body.reason.clone(),
    };
    Ok(CommandResponse::ok(
        &user,
        run(&state, &user, &req, cancel).await?,
    ))
}

/// The rider collected cash for a cash order (the rider assigned to the
/// order's delivery, ops, admin). The amount is the order's total; this
/// creates the order's payment.
#[utoipa::path(
    post, path = "/v1/orders/{id}/cash-collected", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = NoBody, description = "Empty or `{}`"),
    responses((status = 201, description = "Cash collection recorded on the order's payment", body = CommandOutcome), CommandErrors),
    security(("bearer" = []))
)]
pub async fn record_cash_collected(
    State(state): State<AppState>,
    user: Authorized<RiderOrStaff>,
    ApiPath(id): ApiPath<Uuid>,
    req: CommandRequest<NoBody>,
) -> Result<CommandResponse, ApiError> {
    let record = RecordCashCollected {
        order_id: OrderId(id),
    };
    Ok(CommandResponse::created(
        &user,
        run(&state, &user, &req, record).await?,
    ))
}
