//! Reference data the decisions need: restaurants, menu items, riders.
//! Writes are admin-only; ops may read the admin listings; any signed-in
//! caller may read a restaurant's menu.

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use ordertrail_commands::catalog::{self, MenuItem, Restaurant, Rider};
use ordertrail_schemas::{Currency, MenuItemId, RestaurantId, RiderId};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{AdminRole, AuthUser, Authorized, StaffOrAuditor};
use crate::error::{ApiError, CommandErrors, ReadErrors};
use crate::extract::{ApiJson, ApiPath};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/restaurants", get(list_restaurants))
        .route("/v1/admin/restaurants/{id}", put(put_restaurant))
        .route("/v1/admin/restaurants/{id}/open", put(set_restaurant_open))
        .route("/v1/admin/menu-items/{id}", put(put_menu_item))
        .route("/v1/restaurants/{id}/menu", get(restaurant_menu))
        .route("/v1/admin/riders", get(list_riders))
        .route("/v1/admin/riders/{id}", put(put_rider))
}

/// `PUT /v1/admin/restaurants/{id}`: the whole restaurant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestaurantRequest {
    /// 1..=200 characters, not only white space, no control characters.
    #[schema(
        example = "Kreuzberg Burger Co.",
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        max_length = 200
    )]
    pub name: String,
    #[schema(example = 52.499, minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(example = 13.418, minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
    /// IANA time zone (the document lists every accepted name).
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
    /// ISO 4217 code: three upper-case letters.
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Platform commission on the subtotal, basis points (0..=10000).
    #[schema(example = 1500, minimum = 0, maximum = 10000)]
    pub commission_bps: i32,
    /// Tax on the subtotal, basis points (0..=10000).
    #[schema(example = 700, minimum = 0, maximum = 10000)]
    pub tax_bps: i32,
    pub is_open: bool,
}

/// `PUT /v1/admin/restaurants/{id}/open`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestaurantOpenRequest {
    pub is_open: bool,
}

/// `PUT /v1/admin/menu-items/{id}`: the whole menu item.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuItemRequest {
    pub restaurant_id: Uuid,
    /// 1..=200 characters, not only white space, no control characters.
    #[schema(
        example = "Classic Cheeseburger",
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        max_length = 200
    )]
    pub name: String,
    /// Price in minor units of the restaurant's currency, not negative.
    #[schema(example = 990, minimum = 0)]
    pub price_minor: i64,
    pub available: bool,
}

/// `PUT /v1/admin/riders/{id}`: the whole rider.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiderRequest {
    /// 1..=200 characters, not only white space, no control characters.
    #[schema(
        example = "Ada K.",
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        max_length = 200
    )]
    pub name: String,
    pub active: bool,
}

/// Create or replace a restaurant (admin).
#[utoipa::path(
    put, path = "/v1/admin/restaurants/{id}", tag = "reference data",
    params(("id" = Uuid, Path, description = "Restaurant id")),
    request_body = RestaurantRequest,
    responses((status = 200, description = "The restaurant as stored", body = Restaurant), CommandErrors),
    security(("bearer" = []))
)]
pub async fn put_restaurant(
    State(state): State<AppState>,
    _user: Authorized<AdminRole>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<RestaurantRequest>,
) -> Result<Json<Restaurant>, ApiError> {
    let currency = Currency::parse(&body.currency)
        .map_err(|e| ApiError::new("invalid_reference_data", format!("currency: {e}")))?;
    let restaurant = Restaurant {
        id: RestaurantId(id),
        name: body.name,
        lat: body.lat,
        lon: body.lon,
        time_zone: body.time_zone,
        currency,
        commission_bps: body.commission_bps,
        tax_bps: body.tax_bps,
        is_open: body.is_open,
    };
    catalog::upsert_restaurant(&state.pool, &restaurant).await?;
    Ok(Json(restaurant))
}

/// All restaurants (admin, ops).
#[utoipa::path(
    get, path = "/v1/admin/restaurants", tag = "reference data",
    responses((status = 200, description = "Every restaurant, by name", body = Vec<Restaurant>), ReadErrors),
    security(("bearer" = []))
)]
pub async fn list_restaurants(
    State(state): State<AppState>,
    _user: Authorized<StaffOrAuditor>,
) -> Result<Json<Vec<Restaurant>>, ApiError> {
    Ok(Json(catalog::list_restaurants(&state.pool).await?))
}

/// Open or close a restaurant (admin).
#[utoipa::path(
    put, path = "/v1/admin/restaurants/{id}/open", tag = "reference data",
    params(("id" = Uuid, Path, description = "Restaurant id")),
    request_body = RestaurantOpenRequest,
    responses((status = 200, description = "The restaurant as stored", body = Restaurant), CommandErrors),
    security(("bearer" = []))
)]
pub async fn set_restaurant_open(
    State(state): State<AppState>,
    _user: Authorized<AdminRole>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<RestaurantOpenRequest>,
) -> Result<Json<Restaurant>, ApiError> {
    let id = RestaurantId(id);
    let not_found = || {
        ApiError::new(
            "restaurant_not_found",
            format!("restaurant {id} does not exist"),
        )
    };
    if !catalog::set_restaurant_open(&state.pool, id, body.is_open).await? {
        return Err(not_found());
    }
    Ok(Json(
        catalog::get_restaurant(&state.pool, id)
            .await?
            .ok_or_else(not_found)?,
    ))
}

/// Create or replace a menu item (admin).
#[utoipa::path(
    put, path = "/v1/admin/menu-items/{id}", tag = "reference data",
    params(("id" = Uuid, Path, description = "Menu item id")),
    request_body = MenuItemRequest,
    responses((status = 200, description = "The menu item as stored", body = MenuItem), CommandErrors),
    security(("bearer" = []))
)]
pub async fn put_menu_item(
    State(state): State<AppState>,
    _user: Authorized<AdminRole>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<MenuItemRequest>,
) -> Result<Json<MenuItem>, ApiError> {
    let item = MenuItem {
        id: MenuItemId(id),
        restaurant_id: RestaurantId(body.restaurant_id),
        name: body.name,
        price_minor: body.price_minor,
        available: body.available,
    };
    catalog::upsert_menu_item(&state.pool, &item).await?;
    Ok(Json(item))
}

/// A restaurant's menu (any signed-in caller).
#[utoipa::path(
    get, path = "/v1/restaurants/{id}/menu", tag = "reference data",
    params(("id" = Uuid, Path, description = "Restaurant id")),
    responses((status = 200, description = "The menu, by name", body = Vec<MenuItem>), ReadErrors),
    security(("bearer" = []))
)]
pub async fn restaurant_menu(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<MenuItem>>, ApiError> {
    let id = RestaurantId(id);
    if catalog::get_restaurant(&state.pool, id).await?.is_none() {
        return Err(ApiError::new(
            "restaurant_not_found",
            format!("restaurant {id} does not exist"),
        ));
    }
    Ok(Json(catalog::list_menu(&state.pool, id).await?))
}

/// Create or replace a rider (admin).
#[utoipa::path(
    put, path = "/v1/admin/riders/{id}", tag = "reference data",
    params(("id" = Uuid, Path, description = "Rider id")),
    request_body = RiderRequest,
    responses((status = 200, description = "The rider as stored", body = Rider), CommandErrors),
    security(("bearer" = []))
)]
pub async fn put_rider(
    State(state): State<AppState>,
    _user: Authorized<AdminRole>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<RiderRequest>,
) -> Result<Json<Rider>, ApiError> {
    let rider = Rider {
        id: RiderId(id),
        name: body.name,
        active: body.active,
    };
    catalog::upsert_rider(&state.pool, &rider).await?;
    Ok(Json(rider))
}

/// All riders (admin, ops).
#[utoipa::path(
    get, path = "/v1/admin/riders", tag = "reference data",
    responses((status = 200, description = "Every rider, by name", body = Vec<Rider>), ReadErrors),
    security(("bearer" = []))
)]
pub async fn list_riders(
    State(state): State<AppState>,
    _user: Authorized<StaffOrAuditor>,
) -> Result<Json<Vec<Rider>>, ApiError> {
    Ok(Json(catalog::list_riders(&state.pool).await?))
}
