//! Backoffice queries over the read models the projectors maintain: order
//! history, rider ETAs, settlement reports and the projectors' own lag.
//!
//! Each handler maps the caller's token to a [`Viewer`] (ops/admin/auditor see all; a
//! restaurant its own; a customer their own; a rider the deliveries assigned
//! to them) and calls the query function of `ordertrail_projections`, which
//! filters by it. Something the caller may not see is answered like something
//! that does not exist (404), never with a hint that it exists.
//!
//! Read models are eventually consistent: a command's effect shows here once
//! the relay has published it and the projector applied it (usually well
//! under a second; `GET /v1/projectors/status` shows the lag).

use std::collections::BTreeMap;

use axum::Json;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use ordertrail_projections::queries::{
    self, DeliveryEta, EtaAccuracyDay, EtaBounds, OrderDetail, OrderFilter, OrderSummary,
    PlatformDaySummary, ProjectorStatus, ProviderSettlementDay, QueryError,
    RestaurantSettlementDay, SortOrder, TimelineEntry, Viewer,
};
use ordertrail_schemas::{ActorRole, OrderId, OrderStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::visibility;
use crate::auth::{AuthUser, Authorized, RestaurantOrReader, RiderOrReader, StaffOrAuditor};
use crate::error::{ApiError, documented_errors};
use crate::extract::{ApiPath, ApiQuery};

/// The query routes' part of the OpenAPI document (merged in [`crate::docs`]).
#[derive(OpenApi)]
#[openapi(
    paths(
        list_orders,
        order_detail,
        order_eta,
        rider_etas,
        active_deliveries,
        eta_accuracy,
        restaurant_settlements,
        settlement_day,
        settlement_export,
        projector_status,
    ),
    components(schemas(
        OrderList,
        OrderSummary,
        OrderDetail,
        TimelineEntry,
        DeliveryEta,
        EtaList,
        EtaAccuracyDay,
        EtaAccuracyList,
        RestaurantSettlementDay,
        RestaurantSettlementList,
        ProviderSettlementDay,
        PlatformDaySummary,
        ProjectorStatus,
        ProjectorStatusList,
        OrderSort,
        OrderStatus,
    )),
    tags(
        (name = "queries", description = "Read models for the back office: order history, rider ETAs, \
settlements, projector lag. Eventually consistent with the commands (see `GET /v1/projectors/status`)."),
    )
)]
#[derive(Debug)]
pub struct QueryDoc;

/// Errors any query route can answer.
#[derive(Debug)]
pub struct QueryErrors;

impl utoipa::IntoResponses for QueryErrors {
    fn responses() -> BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        documented_errors(&[400, 401, 403, 404, 422, 429, 500, 503])
    }
}

/// What the token allows the caller to see.
fn viewer(user: &AuthUser) -> Result<Viewer, ApiError> {
    let own =
        |id: Option<Uuid>| id.ok_or_else(|| ApiError::forbidden("the token has no subject id"));
    Ok(match user.role {
        ActorRole::Ops | ActorRole::Admin | ActorRole::Auditor => Viewer::All,
        ActorRole::Restaurant => Viewer::Restaurant(own(user.restaurant_id().map(|r| r.0))?),
        ActorRole::Customer => Viewer::Customer(own(user.customer_id().map(|c| c.0))?),
        ActorRole::Rider => Viewer::Rider(own(user.rider_id().map(|r| r.0))?),
        ActorRole::System => return Err(ApiError::forbidden("the system role reads nothing here")),
    })
}

/// An order status filter must name a status, else 400 `invalid_query`
/// with the allowed names.
pub(crate) fn check_order_status(status: Option<&str>) -> Result<(), ApiError> {
    match status {
        Some(status) if OrderStatus::parse(status).is_none() => Err(ApiError::new(
            "invalid_query",
            format!("unknown order status {status:?}"),
        )
        .with_details(serde_json::json!({ "field": "status", "allowed": OrderStatus::names() }))),
        _ => Ok(()),
    }
}

/// A [`QueryError`] as the API answers it; `not_found` names what was asked for.
fn query_error(e: QueryError, not_found: &'static str) -> ApiError {
    match e {
        QueryError::Forbidden => {
            ApiError::forbidden("the token's role or subject may not see this")
        }
        QueryError::NotFound => {
            ApiError::new(not_found, "nothing with this id is visible to the caller")
        }
        QueryError::InvalidArgument { field, reason } => {
            let code = match field {
                "cursor" => "invalid_cursor",
                "limit" => "limit_out_of_range",
                _ => "invalid_range",
            };
            ApiError::new(code, format!("{field}: {reason}"))
                .with_details(serde_json::json!({ "field": field, "reason": reason }))
        }
        QueryError::Database(e) => e.into(),
    }
}

/// Sort of the order list, by placed time.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderSort {
    /// Oldest first.
    PlacedAsc,
    /// Newest first (default).
    #[default]
    PlacedDesc,
}

/// `GET /v1/orders` parameters; all optional, combined with AND.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    /// placed, confirmed, accepted, rejected, ready_for_pickup, picked_up, delivered, cancelled
    #[param(value_type = Option<OrderStatus>, inline)]
    pub status: Option<String>,
    pub restaurant_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub rider_id: Option<Uuid>,
    /// Placed at or after (RFC 3339, e.g. `2026-03-01T00:00:00Z`).
    pub placed_from: Option<DateTime<Utc>>,
    /// Placed strictly before (RFC 3339).
    pub placed_to: Option<DateTime<Utc>>,
    /// `placed_desc` (default) or `placed_asc`.
    #[param(inline)]
    pub sort: Option<OrderSort>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (same filters): a position,
    /// the page continues after it in the chosen sort.
    #[param(pattern = "^[0-9]{1,16}[.][0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// One page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    pub items: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A list of delivery ETAs.
#[derive(Debug, Serialize, ToSchema)]
pub struct EtaList {
    pub items: Vec<DeliveryEta>,
}

/// `GET /v1/deliveries/active` parameters: a bounding box in degrees. A
/// missing corner is the edge of the map (`min_lat` -90, `max_lat` 90,
/// `min_lon` -180, `max_lon` 180); an inverted box holds nothing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BoundsParams {
    /// South edge, -90..=90 (default -90).
    #[param(minimum = -90.0, maximum = 90.0)]
    pub min_lat: Option<f64>,
    /// West edge, -180..=180 (default -180).
    #[param(minimum = -180.0, maximum = 180.0)]
    pub min_lon: Option<f64>,
    /// North edge, -90..=90 (default 90).
    #[param(minimum = -90.0, maximum = 90.0)]
    pub max_lat: Option<f64>,
    /// East edge, -180..=180 (default 180).
    #[param(minimum = -180.0, maximum = 180.0)]
    pub max_lon: Option<f64>,
}

/// A date range, both ends included (`YYYY-MM-DD`); `to` before `from` is
/// an empty range (an empty answer, not an error).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DateRangeParams {
    /// First day (`YYYY-MM-DD`).
    pub from: NaiveDate,
    /// Last day, included (`YYYY-MM-DD`).
    pub to: NaiveDate,
}

/// ETA error per day.
#[derive(Debug, Serialize, ToSchema)]
pub struct EtaAccuracyList {
    pub items: Vec<EtaAccuracyDay>,
}

/// A restaurant's settlement days.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestaurantSettlementList {
    pub items: Vec<RestaurantSettlementDay>,
}

/// `GET /v1/settlements/export.csv` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// First business day (`YYYY-MM-DD`).
    pub from: NaiveDate,
    /// Last business day, included.
    pub to: NaiveDate,
    /// Only this restaurant (a restaurant token always gets only its own).
    pub restaurant_id: Option<Uuid>,
}

/// Every projector's lag.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectorStatusList {
    pub items: Vec<ProjectorStatus>,
}

api_routes! {
    tag = "queries";

    // `/v1/orders` also has `POST` (orders::router); axum merges the
    // method routers of one path when the routers are merged.
    /// Orders visible to the caller (ops/admin: all; restaurant: its own;
    /// customer: their own; rider: those they deliver), newest first by default,
    /// keyset-paginated.
    get "/v1/orders" params(OrderListParams)
        => (status = 200, description = "One page of orders", body = OrderList), QueryErrors;
    fn list_orders(
        state,
        user: AuthUser,
        ApiQuery(params): ApiQuery<OrderListParams>
    ) -> Json<OrderList> {
        let viewer = viewer(&user)?;
        check_order_status(params.status.as_deref())?;
        let filter = OrderFilter {
            status: params.status,
            restaurant_id: params.restaurant_id,
            customer_id: params.customer_id,
            rider_id: params.rider_id,
            placed_from: params.placed_from,
            placed_to: params.placed_to,
            sort: match params.sort.unwrap_or_default() {
                OrderSort::PlacedAsc => SortOrder::Asc,
                OrderSort::PlacedDesc => SortOrder::Desc,
            },
            limit: params.limit,
            cursor: params.cursor,
        };
        let mut page = queries::orders::list_orders(&state.pool, viewer, &filter)
            .await
            .map_err(|e| query_error(e, "order_not_found"))?;
        let audience = visibility::audience(&user);
        for order in &mut page.orders {
            visibility::summary(audience, order);
        }
        Ok(Json(OrderList {
            items: page.orders,
            next_cursor: page.next_cursor,
        }))
    }

    /// One order with its payment and delivery state and the timeline of its
    /// events (with metadata). 404 when the caller may not see it.
    get "/v1/orders/{id}" params(("id" = Uuid, Path, description = "Order id"))
        => (status = 200, description = "The order and its timeline", body = OrderDetail), QueryErrors;
    fn order_detail(state, user: AuthUser, ApiPath(id): ApiPath<Uuid>) -> Json<OrderDetail> {
        let viewer = viewer(&user)?;
        let mut detail = queries::orders::order_detail(&state.pool, viewer, id)
            .await
            .map_err(|e| query_error(e, "order_not_found"))?;
        visibility::detail(&user, &mut detail, || {
            state.commands.dropoff_code_for(OrderId(id))
        });
        Ok(Json(detail))
    }

    /// The ETA of an order's delivery: the rider's last position, distances and
    /// arrival estimates (404 before a delivery is requested, or when the caller
    /// may not see the order).
    get "/v1/orders/{id}/eta" params(("id" = Uuid, Path, description = "Order id"))
        => (status = 200, description = "The delivery's ETA", body = DeliveryEta), QueryErrors;
    fn order_eta(state, user: AuthUser, ApiPath(id): ApiPath<Uuid>) -> Json<DeliveryEta> {
        let viewer = viewer(&user)?;
        queries::etas::eta_by_order(&state.pool, viewer, id)
            .await
            .map(Json)
            .map_err(|e| query_error(e, "delivery_not_found"))
    }

    /// A rider's active deliveries with their ETAs (ops, admin, or that rider).
    get "/v1/riders/{id}/etas" params(("id" = Uuid, Path, description = "Rider id"))
        => (status = 200, description = "The rider's active deliveries", body = EtaList), QueryErrors;
    fn rider_etas(
        state,
        user: Authorized<RiderOrReader>,
        ApiPath(id): ApiPath<Uuid>
    ) -> Json<EtaList> {
        let viewer = viewer(&user)?;
        if let Viewer::Rider(own) = viewer
            && own != id
        {
            return Err(ApiError::forbidden(
                "a rider sees only their own deliveries",
            ));
        }
        let items = queries::etas::etas_by_rider(&state.pool, viewer, id)
            .await
            .map_err(|e| query_error(e, "rider_not_found"))?;
        Ok(Json(EtaList { items }))
    }

    /// Every active delivery (ops, admin), optionally only those whose rider (or,
    /// before the first fix, whose pickup) is inside a bounding box.
    get "/v1/deliveries/active" params(BoundsParams)
        => (status = 200, description = "Active deliveries", body = EtaList), QueryErrors;
    fn active_deliveries(
        state,
        user: Authorized<StaffOrAuditor>,
        ApiQuery(p): ApiQuery<BoundsParams>
    ) -> Json<EtaList> {
        let bounds = match (p.min_lat, p.min_lon, p.max_lat, p.max_lon) {
            (None, None, None, None) => None,
            (min_lat, min_lon, max_lat, max_lon) => {
                let b = EtaBounds {
                    min_lat: min_lat.unwrap_or(-90.0),
                    min_lon: min_lon.unwrap_or(-180.0),
                    max_lat: max_lat.unwrap_or(90.0),
                    max_lon: max_lon.unwrap_or(180.0),
                };
                let within = |v: f64, edge: f64| v.is_finite() && v.abs() <= edge;
                if !(within(b.min_lat, 90.0)
                    && within(b.max_lat, 90.0)
                    && within(b.min_lon, 180.0)
                    && within(b.max_lon, 180.0))
                {
                    return Err(ApiError::new(
                        "invalid_query",
                        "latitudes must be within ±90, longitudes within ±180",
                    ));
                }
                Some(b)
            }
        };
        let items = queries::etas::active_deliveries(&state.pool, viewer(&user)?, bounds)
            .await
            .map_err(|e| query_error(e, "delivery_not_found"))?;
        Ok(Json(EtaList { items }))
    }

    /// Predicted versus actual arrival of completed deliveries: mean and p90
    /// absolute error per UTC day (ops, admin).
    get "/v1/eta-accuracy" params(DateRangeParams)
        => (status = 200, description = "ETA error per day", body = EtaAccuracyList), QueryErrors;
    fn eta_accuracy(
        state,
        user: Authorized<StaffOrAuditor>,
        ApiQuery(range): ApiQuery<DateRangeParams>
    ) -> Json<EtaAccuracyList> {
        let items = queries::etas::eta_accuracy(&state.pool, viewer(&user)?, range.from, range.to)
            .await
            .map_err(|e| query_error(e, "route_not_found"))?;
        Ok(Json(EtaAccuracyList { items }))
    }

    /// A restaurant's settlement figures per business day (its time zone),
    /// `from..=to` (ops, admin, or that restaurant). Days without activity have
    /// no row.
    get "/v1/settlements/restaurants/{id}" params(("id" = Uuid, Path, description = "Restaurant id"), DateRangeParams)
        => (status = 200, description = "One row per business day and currency", body = RestaurantSettlementList), QueryErrors;
    fn restaurant_settlements(
        state,
        user: Authorized<RestaurantOrReader>,
        ApiPath(id): ApiPath<Uuid>,
        ApiQuery(range): ApiQuery<DateRangeParams>
    ) -> Json<RestaurantSettlementList> {
        let items = queries::settlements::restaurant_days(
            &state.pool,
            viewer(&user)?,
            id,
            range.from,
            range.to,
        )
        .await
        .map_err(|e| query_error(e, "restaurant_not_found"))?;
        Ok(Json(RestaurantSettlementList { items }))
    }

    /// The platform-wide settlement summary of one day (ops, admin): totals per
    /// currency, every restaurant's business day, and each payment provider's
    /// authorized, captured, voided, refunded and fee figures for that UTC date.
    get "/v1/settlements/days/{date}" params(("date" = NaiveDate, Path, description = "The day, `YYYY-MM-DD`"))
        => (status = 200, description = "The day's summary", body = PlatformDaySummary), QueryErrors;
    fn settlement_day(
        state,
        user: Authorized<StaffOrAuditor>,
        ApiPath(date): ApiPath<String>
    ) -> Json<PlatformDaySummary> {
        let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .map_err(|_| ApiError::new("invalid_date", "the date in the path must be YYYY-MM-DD"))?;
        queries::settlements::day_summary(&state.pool, viewer(&user)?, date)
            .await
            .map(Json)
            .map_err(|e| query_error(e, "route_not_found"))
    }

    /// The restaurant settlement days `from..=to` as CSV (header line, then one
    /// line per business day, restaurant and currency; integer minor units).
    /// Ops and admin get every restaurant (or the one asked for); a restaurant
    /// only its own.
    get "/v1/settlements/export.csv" params(ExportParams)
        => (status = 200, description = "CSV", content_type = "text/csv", body = String), QueryErrors;
    fn settlement_export(
        state,
        user: Authorized<RestaurantOrReader>,
        ApiQuery(p): ApiQuery<ExportParams>
    ) -> Response {
        let csv = queries::settlements::export_csv(
            &state.pool,
            viewer(&user)?,
            p.restaurant_id,
            p.from,
            p.to,
        )
        .await
        .map_err(|e| query_error(e, "restaurant_not_found"))?;
        let filename = format!(
            "attachment; filename=\"settlements-{}-{}.csv\"",
            p.from, p.to
        );
        Ok((
            [
                (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (CONTENT_DISPOSITION, filename),
            ],
            csv,
        )
            .into_response())
    }

    /// Each projector's position and lag, in events and seconds behind (ops, admin).
    get "/v1/projectors/status"
        => (status = 200, description = "Every projector, also those not started yet", body = ProjectorStatusList), QueryErrors;
    fn projector_status(state, _user: Authorized<StaffOrAuditor>) -> Json<ProjectorStatusList> {
        let items = queries::projector_status(&state.pool)
            .await
            .map_err(|e| query_error(e, "route_not_found"))?;
        Ok(Json(ProjectorStatusList { items }))
    }
}
