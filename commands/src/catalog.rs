//! Reference data: restaurants (location, time zone, currency, commission,
//! open or closed), menu items and riders. Plain tables, managed through the
//! admin endpoints; the command service reads them before a decision and passes
//! snapshots into the command, so events record the values that were used.

use chrono::{DateTime, Utc};
use ordertrail_domain::{MenuItemSnapshot, RestaurantSnapshot};
use ordertrail_schemas::{Currency, GeoPoint, MenuItemId, Money, RestaurantId, RiderId};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

/// Errors reading or writing reference data.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid reference data: {0}")]
    Invalid(String),
    #[error("restaurant {0} does not exist")]
    UnknownRestaurant(RestaurantId),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A restaurant or store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Restaurant {
    #[schema(value_type = String, format = Uuid)]
    pub id: RestaurantId,
    pub name: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// ISO 4217 currency of every price at this restaurant.
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
    /// Platform commission on the subtotal, basis points.
    pub commission_bps: i32,
    /// Tax on the subtotal, basis points.
    pub tax_bps: i32,
    pub is_open: bool,
}

/// An item on a restaurant's menu. The price is in the restaurant's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MenuItem {
    #[schema(value_type = String, format = Uuid)]
    pub id: MenuItemId,
    #[schema(value_type = String, format = Uuid)]
    pub restaurant_id: RestaurantId,
    pub name: String,
    /// Price in minor units of the restaurant's currency.
    pub price_minor: i64,
    pub available: bool,
}

/// A rider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rider {
    #[schema(value_type = String, format = Uuid)]
    pub id: RiderId,
    pub name: String,
    pub active: bool,
}

type RestaurantRow = (Uuid, String, f64, f64, String, String, i32, i32, bool);

fn restaurant_from_row(r: RestaurantRow) -> Result<Restaurant, CatalogError> {
    Ok(Restaurant {
        id: RestaurantId(r.0),
        name: r.1,
        lat: r.2,
        lon: r.3,
        time_zone: r.4,
        currency: Currency::parse(&r.5).map_err(|e| CatalogError::Invalid(e.to_string()))?,
        commission_bps: r.6,
        tax_bps: r.7,
        is_open: r.8,
    })
}

/// Names of restaurants, menu items and riders: the domain's text rule
/// (1..=200 characters, no control characters).
fn check_name(name: &str) -> Result<(), CatalogError> {
    ordertrail_domain::text::NAME
        .check(name)
        .map_err(|e| CatalogError::Invalid(e.to_string()))
}

impl Restaurant {
    /// Validate before writing: coordinates, time zone, basis points.
    pub fn validate(&self) -> Result<(), CatalogError> {
        check_name(&self.name)?;
        if !(GeoPoint {
            lat: self.lat,
            lon: self.lon,
        })
        .is_valid()
        {
            return Err(CatalogError::Invalid("lat/lon out of range".into()));
        }
        if self.time_zone.parse::<chrono_tz_check::Tz>().is_err() {
            return Err(CatalogError::Invalid(format!(
                "unknown time zone {:?}",
                self.time_zone
            )));
        }
        for (name, v) in [
            ("commission_bps", self.commission_bps),
            ("tax_bps", self.tax_bps),
        ] {
            if !(0..=10_000).contains(&v) {
                return Err(CatalogError::Invalid(format!("{name} must be 0..=10000")));
            }
        }
        Ok(())
    }

    /// The snapshot a command carries.
    pub fn snapshot(&self) -> RestaurantSnapshot {
        RestaurantSnapshot {
            id: self.id,
            name: self.name.clone(),
            location: GeoPoint {
                lat: self.lat,
                lon: self.lon,
            },
            time_zone: self.time_zone.clone(),
            currency: self.currency,
            commission_bps: i64::from(self.commission_bps),
            tax_bps: i64::from(self.tax_bps),
            is_open: self.is_open,
        }
    }
}

/// Time-zone validation lives behind a tiny shim so this module does not care
/// which tz database crate the workspace uses.
mod chrono_tz_check {
    pub(crate) use chrono_tz::Tz;
}

const RESTAURANT_COLUMNS: &str =
    "id, name, lat, lon, time_zone, currency, commission_bps, tax_bps, is_open";

pub async fn upsert_restaurant(pool: &PgPool, r: &Restaurant) -> Result<(), CatalogError> {
    r.validate()?;
    sqlx::query(
        "INSERT INTO restaurants (id, name, lat, lon, time_zone, currency, commission_bps, tax_bps, is_open)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
           time_zone = EXCLUDED.time_zone, currency = EXCLUDED.currency,
           commission_bps = EXCLUDED.commission_bps, tax_bps = EXCLUDED.tax_bps,
           is_open = EXCLUDED.is_open, updated_at = now()",
    )
    .bind(r.id.0)
    .bind(&r.name)
    .bind(r.lat)
    .bind(r.lon)
    .bind(&r.time_zone)
    .bind(r.currency.as_str())
    .bind(r.commission_bps)
    .bind(r.tax_bps)
    .bind(r.is_open)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get_restaurant(
    pool: &PgPool,
    id: RestaurantId,
) -> Result<Option<Restaurant>, CatalogError> {
    let row: Option<RestaurantRow> = sqlx::query_as(&format!(
        "SELECT {RESTAURANT_COLUMNS} FROM restaurants WHERE id = $1"
    ))
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    row.map(restaurant_from_row).transpose()
}

pub async fn list_restaurants(pool: &PgPool) -> Result<Vec<Restaurant>, CatalogError> {
    let rows: Vec<RestaurantRow> = sqlx::query_as(&format!(
        "SELECT {RESTAURANT_COLUMNS} FROM restaurants ORDER BY name, id"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(restaurant_from_row).collect()
}

/// Open or close a restaurant; `false` when it does not exist.
pub async fn set_restaurant_open(
    pool: &PgPool,
    id: RestaurantId,
    is_open: bool,
) -> Result<bool, CatalogError> {
    let done = sqlx::query("UPDATE restaurants SET is_open = $2, updated_at = now() WHERE id = $1")
        .bind(id.0)
        .bind(is_open)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn upsert_menu_item(pool: &PgPool, item: &MenuItem) -> Result<(), CatalogError> {
    check_name(&item.name)?;
    if item.price_minor < 0 {
        return Err(CatalogError::Invalid(
            "price_minor must not be negative".into(),
        ));
    }
    let done = sqlx::query(
        "INSERT INTO menu_items (id, restaurant_id, name, price_minor, available)
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM restaurants WHERE id = $2)
         ON CONFLICT (id) DO UPDATE SET restaurant_id = EXCLUDED.restaurant_id, name = EXCLUDED.name,
           price_minor = EXCLUDED.price_minor, available = EXCLUDED.available, updated_at = now()",
    )
    .bind(item.id.0)
    .bind(item.restaurant_id.0)
    .bind(&item.name)
    .bind(item.price_minor)
    .bind(item.available)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(CatalogError::UnknownRestaurant(item.restaurant_id));
    }
    Ok(())
}

type MenuRow = (Uuid, Uuid, String, i64, bool);

fn menu_from_row(r: MenuRow) -> MenuItem {
    MenuItem {
        id: MenuItemId(r.0),
        restaurant_id: RestaurantId(r.1),
        name: r.2,
        price_minor: r.3,
        available: r.4,
    }
}

pub async fn list_menu(
    pool: &PgPool,
    restaurant: RestaurantId,
) -> Result<Vec<MenuItem>, CatalogError> {
    let rows: Vec<MenuRow> = sqlx::query_as(
        "SELECT id, restaurant_id, name, price_minor, available FROM menu_items
         WHERE restaurant_id = $1 ORDER BY name, id",
    )
    .bind(restaurant.0)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(menu_from_row).collect())
}

/// A restaurant and those of `ids` that exist on any menu, in one round trip
/// (the `PlaceOrder` lookup); `None` when the restaurant does not exist.
pub async fn restaurant_with_menu_items(
    pool: &PgPool,
    restaurant: RestaurantId,
    ids: &[MenuItemId],
) -> Result<Option<(Restaurant, Vec<MenuItem>)>, CatalogError> {
    type Row = (
        Uuid,
        String,
        f64,
        f64,
        String,
        String,
        i32,
        i32,
        bool,
        Option<Uuid>,
        Option<Uuid>,
        Option<String>,
        Option<i64>,
        Option<bool>,
    );
    let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.id, r.name, r.lat, r.lon, r.time_zone, r.currency, r.commission_bps, r.tax_bps, r.is_open,
                m.id, m.restaurant_id, m.name, m.price_minor, m.available
           FROM restaurants r LEFT JOIN menu_items m ON m.id = ANY($2)
          WHERE r.id = $1",
    )
    .bind(restaurant.0)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let found = restaurant_from_row((
        first.0,
        first.1.clone(),
        first.2,
        first.3,
        first.4.clone(),
        first.5.clone(),
        first.6,
        first.7,
        first.8,
    ))?;
    let items = rows
        .into_iter()
        .filter_map(|r| match (r.9, r.10, r.11, r.12, r.13) {
            (Some(id), Some(restaurant_id), Some(name), Some(price), Some(available)) => {
                Some(menu_from_row((id, restaurant_id, name, price, available)))
            }
            _ => None,
        })
        .collect();
    Ok(Some((found, items)))
}

impl MenuItem {
    /// The snapshot a command carries, priced in the restaurant's currency.
    pub fn snapshot(&self, currency: Currency) -> MenuItemSnapshot {
        MenuItemSnapshot {
            id: self.id,
            restaurant_id: self.restaurant_id,
            name: self.name.clone(),
            price: Money::new(self.price_minor, currency),
            available: self.available,
        }
    }
}

pub async fn upsert_rider(pool: &PgPool, rider: &Rider) -> Result<(), CatalogError> {
    check_name(&rider.name)?;
    sqlx::query(
        "INSERT INTO riders (id, name, active) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, active = EXCLUDED.active, updated_at = now()",
    )
    .bind(rider.id.0)
    .bind(&rider.name)
    .bind(rider.active)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get_rider(pool: &PgPool, id: RiderId) -> Result<Option<Rider>, CatalogError> {
    let row: Option<(Uuid, String, bool)> =
        sqlx::query_as("SELECT id, name, active FROM riders WHERE id = $1")
            .bind(id.0)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|r| Rider {
        id: RiderId(r.0),
        name: r.1,
        active: r.2,
    }))
}

pub async fn list_riders(pool: &PgPool) -> Result<Vec<Rider>, CatalogError> {
    let rows: Vec<(Uuid, String, bool)> =
        sqlx::query_as("SELECT id, name, active FROM riders ORDER BY name, id")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| Rider {
            id: RiderId(r.0),
            name: r.1,
            active: r.2,
        })
        .collect())
}

/// When the row was last changed (for admin listings).
pub type UpdatedAt = DateTime<Utc>;
