//! The demo data set: four restaurants in three currencies and time zones,
//! their menus, and eight riders, with fixed ids that scripts, docs, tests
//! and the benchmarks refer to. Development scaffolding: `ordertrail-local`
//! (and its `--prepare-only` migrate job) loads it, production reference data
//! comes through the admin endpoints.

use ordertrail_commands::catalog::{
    CatalogError, MenuItem, Restaurant, Rider, upsert_menu_item, upsert_restaurant, upsert_rider,
};
use ordertrail_commands::workflows::PlaceOrder;
use ordertrail_schemas::events::{DeliveryAddress, PaymentMethod};
use ordertrail_schemas::{Currency, CustomerId, GeoPoint, MenuItemId, RestaurantId, RiderId};
use sqlx::PgPool;
use uuid::Uuid;

/// Fixed ids of the seed data set, so scripts, docs and the benchmark can
/// refer to them.
pub mod seed_ids {
    use uuid::Uuid;
    pub const BERLIN_BURGERS: Uuid = Uuid::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0001);
    pub const LONDON_CURRY: Uuid = Uuid::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0002);
    pub const BROOKLYN_PIZZA: Uuid = Uuid::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0003);
    pub const BERLIN_MART: Uuid = Uuid::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0004);
    /// Menu item `n` (1-based) of restaurant `r` (1-based).
    pub const fn menu_item(r: u128, n: u128) -> Uuid {
        Uuid::from_u128(0x0000_0002_0000_4000_8000_0000_0000_0000 | (r << 16) | n)
    }
    /// Rider `n` (1-based).
    pub const fn rider(n: u128) -> Uuid {
        Uuid::from_u128(0x0000_0003_0000_4000_8000_0000_0000_0000 | n)
    }
}

/// Two burgers and fries from the seeded Berlin burger place, delivered in
/// Kreuzberg, paid with the test card `tok_visa`: the order the tests place
/// through the command service.
pub fn berlin_burger_order(customer: CustomerId, tip_minor: Option<i64>) -> PlaceOrder {
    PlaceOrder {
        customer_id: customer,
        restaurant_id: RestaurantId(seed_ids::BERLIN_BURGERS),
        items: vec![
            (MenuItemId(seed_ids::menu_item(1, 1)), 2),
            (MenuItemId(seed_ids::menu_item(1, 3)), 1),
        ],
        delivery_address: DeliveryAddress {
            street: "Oranienstraße 25".into(),
            city: "Berlin".into(),
            postal_code: "10999".into(),
            location: GeoPoint {
                lat: 52.5003,
                lon: 13.4215,
            },
        },
        payment_method: PaymentMethod::Card {
            payment_method_ref: ordertrail_schemas::privacy::payment_method_ref("tok_visa"),
        },
        tip_minor,
    }
}

/// [`seed`] only into an empty catalog (no restaurant and no rider yet):
/// what a deployment runs on every start, so changes ops made to the seed
/// restaurants and riders (a rider deactivated, a menu repriced) are never
/// overwritten. `true` when it seeded.
pub async fn seed_if_empty(pool: &PgPool) -> Result<bool, CatalogError> {
    let populated: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM restaurants) OR EXISTS (SELECT 1 FROM riders)",
    )
    .fetch_one(pool)
    .await?;
    if populated {
        return Ok(false);
    }
    seed(pool).await?;
    Ok(true)
}

/// Load the small, realistic seed data set (idempotent): four restaurants in
/// three currencies and time zones, their menus, and eight riders.
pub async fn seed(pool: &PgPool) -> Result<(), CatalogError> {
    use seed_ids::*;
    let restaurants = [
        (
            BERLIN_BURGERS,
            "Kreuzberg Burger Co.",
            52.4990,
            13.4180,
            "Europe/Berlin",
            Currency::EUR,
            1_500,
            700,
        ),
        (
            LONDON_CURRY,
            "Brick Lane Curry House",
            51.5215,
            -0.0717,
            "Europe/London",
            Currency::GBP,
            1_800,
            2_000,
        ),
        (
            BROOKLYN_PIZZA,
            "Williamsburg Slice",
            40.7142,
            -73.9614,
            "America/New_York",
            Currency::USD,
            2_000,
            888,
        ),
        (
            BERLIN_MART,
            "Mitte Quick Mart",
            52.5290,
            13.4010,
            "Europe/Berlin",
            Currency::EUR,
            1_200,
            700,
        ),
    ];
    for (id, name, lat, lon, tz, currency, commission_bps, tax_bps) in restaurants {
        upsert_restaurant(
            pool,
            &Restaurant {
                id: RestaurantId(id),
                name: name.into(),
                lat,
                lon,
                time_zone: tz.into(),
                currency,
                commission_bps,
                tax_bps,
                is_open: true,
            },
        )
        .await?;
    }
    // (restaurant number, restaurant id, [(item name, price in minor units)])
    type Menu<'a> = (u128, Uuid, &'a [(&'a str, i64)]);
    let menus: [Menu<'_>; 4] = [
        (
            1,
            BERLIN_BURGERS,
            &[
                ("Classic Cheeseburger", 990),
                ("Veggie Burger", 1_050),
                ("Sweet Potato Fries", 450),
                ("Club Mate", 350),
            ],
        ),
        (
            2,
            LONDON_CURRY,
            &[
                ("Chicken Tikka Masala", 1_295),
                ("Lamb Rogan Josh", 1_450),
                ("Garlic Naan", 350),
                ("Mango Lassi", 395),
            ],
        ),
        (
            3,
            BROOKLYN_PIZZA,
            &[
                ("Margherita Pie", 1_800),
                ("Pepperoni Slice", 450),
                ("Garlic Knots", 600),
                ("Seltzer", 250),
            ],
        ),
        (
            4,
            BERLIN_MART,
            &[
                ("Oat Milk 1l", 229),
                ("Sourdough Loaf", 389),
                ("Bananas 1kg", 179),
                ("Espresso Beans 250g", 799),
            ],
        ),
    ];
    for (r, restaurant, items) in menus {
        for (n, (name, price)) in items.iter().enumerate() {
            upsert_menu_item(
                pool,
                &MenuItem {
                    id: MenuItemId(menu_item(r, n as u128 + 1)),
                    restaurant_id: RestaurantId(restaurant),
                    name: (*name).into(),
                    price_minor: *price,
                    available: true,
                },
            )
            .await?;
        }
    }
    let riders = [
        "Ada K.",
        "Bilal M.",
        "Chen L.",
        "Dana R.",
        "Emeka O.",
        "Fatima S.",
        "Gustav P.",
        "Hana T.",
    ];
    for (n, name) in riders.iter().enumerate() {
        upsert_rider(
            pool,
            &Rider {
                id: RiderId(rider(n as u128 + 1)),
                name: (*name).into(),
                active: true,
            },
        )
        .await?;
    }
    Ok(())
}
