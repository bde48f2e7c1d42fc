//! Order commands: place, confirm, accept, reject, ready, picked up,
//! delivered, cancel, and cash collected on delivery.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use chrono::Utc;
use ordertrail_commands::service::{CommandError, CommandOutcome, PlaceOrderInput};
use ordertrail_domain::order::{
    AcceptOrder, CancelOrder, ConfirmOrder, MarkDelivered, MarkPickedUp, MarkReadyForPickup,
    RejectOrder,
};
use ordertrail_domain::payment::RecordCashCollected;
use ordertrail_domain::provider::card_payment_method;
use ordertrail_domain::{ErrorKind, Order, OrderCommand, PaymentStatus};
use ordertrail_schemas::events::{DeliveryAddress, PaymentMethod};
use ordertrail_schemas::{
    ActorRole, DeliveryId, GeoPoint, MenuItemId, OrderId, PaymentId, RestaurantId, RiderId,
};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{CommandResponse, NoBody, ReasonBody, load_order, restaurant_and_total};
use crate::AppState;
use crate::auth::{
    AuthUser, Authorized, CustomerOrStaff, CustomerRole, RestaurantRole, RiderOrStaff, Staff,
};
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
pub(crate) fn ensure_customer_owns(user: &AuthUser, order: &Order) -> Result<(), CommandError> {
    if user.role == ActorRole::Customer
        && (user.customer_id().is_none() || user.customer_id() != order.customer_id())
    {
        return Err(hidden_order(order));
    }
    Ok(())
}

/// A restaurant caller that is not the order's restaurant (and any caller of
/// another role here, which the route's roles already exclude) is told the
/// order does not exist.
pub(crate) fn ensure_restaurant_owns(user: &AuthUser, order: &Order) -> Result<(), CommandError> {
    if user.restaurant_id().is_none() || user.restaurant_id() != order.restaurant_id() {
        return Err(hidden_order(order));
    }
    Ok(())
}

/// The answer for an order the caller may not see: exactly the one for an
/// order that does not exist, message included.
fn hidden_order(order: &Order) -> CommandError {
    let message = match order.order_id() {
        Some(id) => format!("order {id} does not exist"),
        None => "the order does not exist".to_owned(),
    };
    CommandError::rejected("order_not_found", ErrorKind::NotFound, message)
}

/// [`hidden_order`] as an API error.
pub(crate) fn not_visible(id: OrderId) -> ApiError {
    ApiError::new("order_not_found", format!("order {id} does not exist"))
}

async fn order_command(
    state: &AppState,
    user: &AuthUser,
    req: &CommandRequest<impl Sized>,
    id: OrderId,
    command: impl Into<OrderCommand>,
) -> Result<CommandResponse, ApiError> {
    let outcome = state
        .commands
        .execute_order(&req.context(user), id, command.into())
        .await?;
    Ok(CommandResponse::ok(user, outcome))
}

/// Execute the order command `build` makes from the order's current state
/// (ownership checks included): one load of the order, see
/// `CommandService::execute_order_with`.
async fn checked_order_command<C: Into<OrderCommand>>(
    state: &AppState,
    user: &AuthUser,
    req: &CommandRequest<impl Sized>,
    id: OrderId,
    name: &'static str,
    build: impl FnOnce(&Order) -> Result<C, CommandError> + Send,
) -> Result<CommandResponse, ApiError> {
    let outcome = state
        .commands
        .execute_order_with(&req.context(user), id, name, |order| {
            build(order).map(Into::into)
        })
        .await?;
    Ok(CommandResponse::ok(user, outcome))
}

/// Place an order at a restaurant (customers; the customer is the token's subject).
///
/// The server prices the order from the catalog. The order id is derived from
/// the command, so a retry with the same `Idempotency-Key` addresses the same order.
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
    let input = PlaceOrderInput {
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
    let outcome = state
        .commands
        .place_order(&req.context(&user), input)
        .await?;
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
    let id = OrderId(id);
    let payment_id = PaymentId::for_order(id);
    let outcome = state
        .commands
        .execute_order_with_payment(&req.context(&user), id, "ConfirmOrder", |order, payment| {
            let payment_id = if order.is_card_payment() {
                if payment.status() != Some(PaymentStatus::Authorized) {
                    return Err(CommandError::rejected(
                        "payment_not_authorized",
                        ErrorKind::Conflict,
                        "the order's card payment is not authorized",
                    ));
                }
                Some(payment_id)
            } else {
                None
            };
            Ok(ConfirmOrder {
                payment_id,
                now: Utc::now(),
            }
            .into())
        })
        .await?;
    Ok(CommandResponse::ok(&user, outcome))
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
    let preparation_minutes = req.body.preparation_minutes;
    checked_order_command(&state, &user, &req, OrderId(id), "AcceptOrder", |order| {
        ensure_restaurant_owns(&user, order)?;
        Ok(AcceptOrder {
            preparation_minutes,
            now: Utc::now(),
        })
    })
    .await
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
    let reason = req.body.reason.clone();
    checked_order_command(&state, &user, &req, OrderId(id), "RejectOrder", |order| {
        ensure_restaurant_owns(&user, order)?;
        Ok(RejectOrder {
            reason,
            now: Utc::now(),
        })
    })
    .await
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
    checked_order_command(
        &state,
        &user,
        &req,
        OrderId(id),
        "MarkReadyForPickup",
        |order| {
            ensure_restaurant_owns(&user, order)?;
            Ok(MarkReadyForPickup { now: Utc::now() })
        },
    )
    .await
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
    let command = MarkPickedUp {
        rider_id: RiderId(req.body.rider_id),
        now: Utc::now(),
    };
    order_command(&state, &user, &req, OrderId(id), command).await
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
    order_command(
        &state,
        &user,
        &req,
        OrderId(id),
        MarkDelivered { now: Utc::now() },
    )
    .await
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
    let reason = req.body.reason.clone();
    checked_order_command(&state, &user, &req, OrderId(id), "CancelOrder", |order| {
        ensure_customer_owns(&user, order)?;
        Ok(CancelOrder {
            reason,
            by: user.role,
            now: Utc::now(),
        })
    })
    .await
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
    let order_id = OrderId(id);
    let order = load_order(&state.commands, order_id).await?;
    let assigned = match state
        .commands
        .load_delivery(DeliveryId::for_order(order_id))
        .await?
    {
        Some((delivery, _)) => delivery.assigned_rider(),
        None => None,
    };
    // Who may see the order comes first: a rider not assigned to its
    // delivery gets the same 404 as for an order that does not exist,
    // whatever the order's payment method.
    let rider_id = if user.is_staff() {
        None
    } else {
        match (user.rider_id(), assigned) {
            (Some(me), Some(assigned)) if me == assigned => Some(me),
            _ => return Err(not_visible(order_id)),
        }
    };
    if order.payment_method() != Some(&PaymentMethod::Cash) {
        return Err(ApiError::new(
            "payment_method_mismatch",
            "the order is not paid in cash",
        ));
    }
    let rider_id = match rider_id {
        Some(me) => me,
        None => assigned.or(order.rider_id()).ok_or_else(|| {
            ApiError::new(
                "rider_not_assigned",
                "no rider is assigned to this order's delivery",
            )
        })?,
    };
    let (restaurant_id, amount) = restaurant_and_total(&order, order_id)?;
    let payment_id = PaymentId::for_order(order_id);
    let command = RecordCashCollected {
        payment_id,
        order_id,
        restaurant_id,
        amount,
        rider_id,
        now: Utc::now(),
    };
    let outcome = state
        .commands
        .execute_payment(&req.context(&user), payment_id, command.into())
        .await?;
    Ok(CommandResponse::created(&user, outcome))
}
