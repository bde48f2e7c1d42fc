//! Reference data the decisions need: restaurants, menu items, riders.
//! Writes are admin-only; ops may read the admin listings; any signed-in
//! caller may read a restaurant's menu.

use axum::Json;
use ordertrail_commands::catalog::{self, MenuItem, Restaurant, Rider};
use ordertrail_schemas::{Currency, MenuItemId, RestaurantId, RiderId};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{AdminRole, AuthUser, Authorized, StaffOrAuditor};
use crate::error::{ApiError, CommandErrors, ReadErrors};
use crate::extract::{ApiJson, ApiPath};

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

/// 404 `restaurant_not_found` for `id`.
fn restaurant_not_found(id: RestaurantId) -> ApiError {
    ApiError::new(
        "restaurant_not_found",
        format!("restaurant {id} does not exist"),
    )
}

api_routes! {
    tag = "reference data";

    /// Create or replace a restaurant (admin).
    put "/v1/admin/restaurants/{id}" params(("id" = Uuid, Path, description = "Restaurant id"))
        request_body = RestaurantRequest
        => (status = 200, description = "The restaurant as stored", body = Restaurant), CommandErrors;
    fn put_restaurant(
        state,
        _user: Authorized<AdminRole>,
        ApiPath(id): ApiPath<Uuid>,
        ApiJson(body): ApiJson<RestaurantRequest>
    ) -> Json<Restaurant> {
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
    get "/v1/admin/restaurants"
        => (status = 200, description = "Every restaurant, by name", body = Vec<Restaurant>), ReadErrors;
    fn list_restaurants(state, _user: Authorized<StaffOrAuditor>) -> Json<Vec<Restaurant>> {
        Ok(Json(catalog::list_restaurants(&state.pool).await?))
    }

    /// Open or close a restaurant (admin).
    put "/v1/admin/restaurants/{id}/open" params(("id" = Uuid, Path, description = "Restaurant id"))
        request_body = RestaurantOpenRequest
        => (status = 200, description = "The restaurant as stored", body = Restaurant), CommandErrors;
    fn set_restaurant_open(
        state,
        _user: Authorized<AdminRole>,
        ApiPath(id): ApiPath<Uuid>,
        ApiJson(body): ApiJson<RestaurantOpenRequest>
    ) -> Json<Restaurant> {
        let id = RestaurantId(id);
        if !catalog::set_restaurant_open(&state.pool, id, body.is_open).await? {
            return Err(restaurant_not_found(id));
        }
        Ok(Json(
            catalog::get_restaurant(&state.pool, id)
                .await?
                .ok_or_else(|| restaurant_not_found(id))?,
        ))
    }

    /// Create or replace a menu item (admin).
    put "/v1/admin/menu-items/{id}" params(("id" = Uuid, Path, description = "Menu item id"))
        request_body = MenuItemRequest
        => (status = 200, description = "The menu item as stored", body = MenuItem), CommandErrors;
    fn put_menu_item(
        state,
        _user: Authorized<AdminRole>,
        ApiPath(id): ApiPath<Uuid>,
        ApiJson(body): ApiJson<MenuItemRequest>
    ) -> Json<MenuItem> {
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
    get "/v1/restaurants/{id}/menu" params(("id" = Uuid, Path, description = "Restaurant id"))
        => (status = 200, description = "The menu, by name", body = Vec<MenuItem>), ReadErrors;
    fn restaurant_menu(state, _user: AuthUser, ApiPath(id): ApiPath<Uuid>) -> Json<Vec<MenuItem>> {
        let id = RestaurantId(id);
        if catalog::get_restaurant(&state.pool, id).await?.is_none() {
            return Err(restaurant_not_found(id));
        }
        Ok(Json(catalog::list_menu(&state.pool, id).await?))
    }

    /// Create or replace a rider (admin).
    put "/v1/admin/riders/{id}" params(("id" = Uuid, Path, description = "Rider id"))
        request_body = RiderRequest
        => (status = 200, description = "The rider as stored", body = Rider), CommandErrors;
    fn put_rider(
        state,
        _user: Authorized<AdminRole>,
        ApiPath(id): ApiPath<Uuid>,
        ApiJson(body): ApiJson<RiderRequest>
    ) -> Json<Rider> {
        let rider = Rider {
            id: RiderId(id),
            name: body.name,
            active: body.active,
        };
        catalog::upsert_rider(&state.pool, &rider).await?;
        Ok(Json(rider))
    }

    /// All riders (admin, ops).
    get "/v1/admin/riders"
        => (status = 200, description = "Every rider, by name", body = Vec<Rider>), ReadErrors;
    fn list_riders(state, _user: Authorized<StaffOrAuditor>) -> Json<Vec<Rider>> {
        Ok(Json(catalog::list_riders(&state.pool).await?))
    }
}
