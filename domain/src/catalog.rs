//! Reference data the command service looks up (restaurants, menus) and
//! passes into commands, so that decisions stay pure and the values used are
//! snapshotted on the events.

use ordertrail_schemas::{Currency, GeoPoint, MenuItemId, Money, RestaurantId};
use serde::{Deserialize, Serialize};

/// A restaurant (or store) as it is when the command is decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestaurantSnapshot {
    /// The restaurant.
    pub id: RestaurantId,
    /// Its name as customers see it.
    pub name: String,
    /// Where it is: the pickup point of its deliveries.
    pub location: GeoPoint,
    /// IANA time zone, e.g. `Europe/Berlin`; defines its business day.
    pub time_zone: String,
    /// Every price at this restaurant is in this currency.
    pub currency: Currency,
    /// Platform commission on the subtotal, basis points (0..=10 000).
    pub commission_bps: i64,
    /// Tax on the subtotal, basis points (0..=10 000).
    pub tax_bps: i64,
    /// Whether it takes orders right now.
    pub is_open: bool,
}

/// A menu item as it is when the order is placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MenuItemSnapshot {
    /// The menu item.
    pub id: MenuItemId,
    /// The restaurant whose menu it is on.
    pub restaurant_id: RestaurantId,
    /// Its name on the menu.
    pub name: String,
    /// Its price, in the restaurant's currency.
    pub price: Money,
    /// Whether it can be ordered right now.
    pub available: bool,
}
