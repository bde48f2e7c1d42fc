//! Server-Sent Event streams, fed by the process's live feed
//! ([`crate::stream`]): one order (customers, its restaurant, its rider,
//! staff) and the ops stream (order status changes and rider positions).
//!
//! Authorized like the queries: a customer only gets their own order (any
//! other is 404 `order_not_found`, exactly like an unknown one), a
//! restaurant its own, a rider an order it delivers; ops, admin and the
//! read-only auditor get every order and the ops stream. Payloads and
//! metadata are cut by the visibility table per role. Both streams resume
//! after `Last-Event-ID` from the event store, with no gap and no duplicate.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ordertrail_schemas::{ActorRole, OrderId};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, RefOr, Required, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses, OpenApi};
use uuid::Uuid;

use super::queries::{QueryErrors, check_order_status};
use super::visibility;
use crate::AppState;
use crate::auth::{AuthUser, Authorized, StaffOrAuditor};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::stream::{self, FeedError, Scope, StreamEta, StreamEvent, StreamId};
use ordertrail_schemas::OrderStatus;

/// The pattern of `Last-Event-ID` (an SSE id this API sent).
pub const LAST_EVENT_ID_PATTERN: &str = "^[0-9]{1,19}-[0-9]{1,19}$";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders/{id}/events/stream", get(order_stream))
        .route("/v1/stream/ops", get(ops_stream))
}

#[derive(OpenApi)]
#[openapi(
    paths(order_stream, ops_stream),
    components(schemas(StreamEvent, StreamEta)),
    tags((name = "streams", description = "Server-Sent Events: live order status, rider positions and ETAs. \
Each message's `id` is the event's commit-order position; reconnect with `Last-Event-ID` to get exactly \
what was missed. Event names: `order_status`, `payment`, `delivery`, `rider_position`; `data` is a \
`StreamEvent` (JSON)."))
)]
#[derive(Debug)]
pub struct StreamDoc;

/// Largest body chunk: messages ready at once go out in one write.
const MAX_CHUNK: usize = 64 * 1024;
/// A comment line this often keeps idle connections (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The `Last-Event-ID` header (an SSE id this API sent), if any; anything
/// else is 400 `invalid_last_event_id`. Documents itself as that header.
#[derive(Debug)]
pub struct LastEventId(pub Option<StreamId>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("last-event-id") else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<StreamId>().ok())
            .map(|id| Self(Some(id)))
            .ok_or_else(|| {
                ApiError::new(
                    "invalid_last_event_id",
                    "Last-Event-ID is not an id this stream sent (`<transaction>-<position>`)",
                )
            })
    }
}

impl IntoParams for LastEventId {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .pattern(Some(LAST_EVENT_ID_PATTERN));
        vec![
            ParameterBuilder::new()
                .name("Last-Event-ID")
                .parameter_in(ParameterIn::Header)
                .description(Some(
                    "Resume after this event id (sent by the browser on reconnect)",
                ))
                .required(Required::False)
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// A stream's answers: 200 with a never-ending `text/event-stream`, or an error.
struct StreamResponses;

impl IntoResponses for StreamResponses {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let stream = ResponseBuilder::new()
            .description(
                "`text/event-stream` of `StreamEvent`s (never ends; keep-alive comments every 15 s)",
            )
            .content(
                "text/event-stream",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            )
            .build();
        let mut responses = QueryErrors::responses();
        responses.insert("200".to_owned(), stream.into());
        responses
    }
}

fn feed_error(e: FeedError) -> ApiError {
    match e {
        FeedError::Database(e) => e.into(),
        e @ FeedError::Unreadable(..) => ApiError::internal(e),
    }
}

async fn open(
    state: &AppState,
    scope: Scope,
    user: &AuthUser,
    resume: Option<StreamId>,
) -> Result<Response, ApiError> {
    let rx = stream::open(
        &state.feed,
        scope,
        visibility::audience(user),
        resume.map(|id| id.0),
    )
    .await
    .map_err(feed_error)?;
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Every message ready at once goes out in one chunk: one write per
    // client per wake-up, not one per event.
    let body = futures::stream::unfold((rx, keep_alive), |(mut rx, mut keep_alive)| async move {
        let chunk = tokio::select! {
            first = rx.recv() => {
                let first = first?;
                let mut chunk = Vec::with_capacity(first.len() * 2);
                chunk.extend_from_slice(&first);
                while chunk.len() < MAX_CHUNK {
                    match rx.try_recv() {
                        Ok(more) => chunk.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                keep_alive.reset();
                Bytes::from(chunk)
            }
            _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok::<_, Infallible>(chunk), (rx, keep_alive)))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// May `user` see order `id`? Decided on the order's events in the store
/// (not a read model, which may lag a just-placed order). Not allowed is
/// answered like unknown.
async fn ensure_visible(state: &AppState, user: &AuthUser, id: OrderId) -> Result<(), ApiError> {
    if user.role == ActorRole::System {
        return Err(ApiError::forbidden("the system role reads nothing here"));
    }
    if state.commands.may_see_order(&user.actor(), id).await? {
        Ok(())
    } else {
        Err(ApiError::new(
            "order_not_found",
            format!("order {id} does not exist"),
        ))
    }
}

/// Live events of one order: status changes, payment, delivery, rider
/// positions with a straight-line ETA. Without `Last-Event-ID` it starts with
/// the order's whole history, then follows live. 404 for an order the caller
/// may not see.
#[utoipa::path(
    get, path = "/v1/orders/{id}/events/stream", tag = "streams",
    params(("id" = Uuid, Path, description = "Order id"), LastEventId),
    responses(StreamResponses),
    security(("bearer" = []))
)]
pub async fn order_stream(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    LastEventId(resume): LastEventId,
) -> Result<Response, ApiError> {
    let id = OrderId(id);
    ensure_visible(&state, &user, id).await?;
    let from_start = StreamId(ordertrail_platform::event_log::Position::START);
    open(
        &state,
        Scope::Order(id),
        &user,
        Some(resume.unwrap_or(from_start)),
    )
    .await
}

/// `GET /v1/stream/ops` filters; both optional.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OpsStreamParams {
    /// Only this restaurant's orders and deliveries.
    pub restaurant_id: Option<Uuid>,
    /// Only order status changes into this status (no delivery events).
    #[param(value_type = Option<OrderStatus>, inline)]
    pub status: Option<String>,
}

/// Live order status changes and delivery events (rider positions with a
/// straight-line ETA) of every order, from now on, or after `Last-Event-ID`.
/// Ops, admin and auditor.
#[utoipa::path(
    get, path = "/v1/stream/ops", tag = "streams",
    params(OpsStreamParams, LastEventId),
    responses(StreamResponses),
    security(("bearer" = []))
)]
pub async fn ops_stream(
    State(state): State<AppState>,
    user: Authorized<StaffOrAuditor>,
    ApiQuery(params): ApiQuery<OpsStreamParams>,
    LastEventId(resume): LastEventId,
) -> Result<Response, ApiError> {
    check_order_status(params.status.as_deref())?;
    let scope = Scope::Ops {
        restaurant_id: params.restaurant_id,
        status: params.status,
    };
    open(&state, scope, &user, resume).await
}
