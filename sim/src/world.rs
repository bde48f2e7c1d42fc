//! The simulated world: the cities of the open restaurants (read through the
//! API's reference-data routes), their menus, customers' homes and the
//! riders of each city.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rand::Rng;
use rand::seq::IndexedRandom;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::SimError;
use crate::client::{Actor, Answer, Api};
use crate::config::SimConfig;

/// Names every id the simulator makes up (riders, customers).
const SIM_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7274_7261_696c_2d73_696d_0001);

/// A point in WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

const EARTH_RADIUS_M: f64 = 6_371_000.0;

impl Point {
    pub const fn new(lat: f64, lon: f64) -> Self {
        Self { lat, lon }
    }

    /// Great-circle distance in metres.
    pub fn distance_m(&self, other: &Point) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }

    /// The point `fraction` of the way to `to` (straight, fine for a city).
    pub fn towards(&self, to: &Point, fraction: f64) -> Point {
        let f = fraction.clamp(0.0, 1.0);
        Point::new(
            self.lat + (to.lat - self.lat) * f,
            self.lon + (to.lon - self.lon) * f,
        )
    }

    /// A random point at most `radius_m` away (uniform over the disc).
    pub fn random_within(&self, radius_m: f64, rng: &mut impl Rng) -> Point {
        let r = radius_m * rng.random::<f64>().sqrt();
        let bearing = rng.random_range(0.0..std::f64::consts::TAU);
        let dlat = (r * bearing.cos()) / EARTH_RADIUS_M;
        let dlon = (r * bearing.sin()) / (EARTH_RADIUS_M * self.lat.to_radians().cos());
        Point::new(self.lat + dlat.to_degrees(), self.lon + dlon.to_degrees())
    }
}

#[derive(Debug, Deserialize)]
struct RestaurantDto {
    id: Uuid,
    name: String,
    lat: f64,
    lon: f64,
    time_zone: String,
    is_open: bool,
}

#[derive(Debug, Deserialize)]
struct MenuItemDto {
    id: Uuid,
    available: bool,
}

#[derive(Debug)]
pub struct Restaurant {
    pub id: Uuid,
    pub name: String,
    pub location: Point,
    pub menu: Vec<Uuid>,
}

/// A rider of the simulation: where they are now.
#[derive(Debug, Clone)]
pub struct Rider {
    pub id: Uuid,
    pub position: Point,
}

#[derive(Debug)]
pub struct City {
    pub name: String,
    pub postal_code: &'static str,
    pub restaurants: Vec<Restaurant>,
    pub customers: Vec<Uuid>,
    free_riders: Mutex<Vec<Rider>>,
    rider_freed: Notify,
    rider_total: usize,
}

impl City {
    /// The free rider nearest to `near`, waiting for one to be released
    /// when all are out.
    pub async fn take_rider(&self, near: Point) -> Rider {
        loop {
            let freed = self.rider_freed.notified();
            {
                let mut free = self.free_riders.lock().unwrap_or_else(|p| p.into_inner());
                let nearest = free
                    .iter()
                    .enumerate()
                    .min_by(|(_, a), (_, b)| {
                        a.position
                            .distance_m(&near)
                            .total_cmp(&b.position.distance_m(&near))
                    })
                    .map(|(i, _)| i);
                if let Some(i) = nearest {
                    return free.swap_remove(i);
                }
            }
            freed.await;
        }
    }

    /// A rider is free again, where they are now.
    pub fn release_rider(&self, rider: Rider) {
        self.free_riders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rider);
        self.rider_freed.notify_one();
    }

    /// Riders out on a delivery.
    pub fn busy_riders(&self) -> usize {
        self.rider_total
            - self
                .free_riders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
    }
}

#[derive(Debug)]
pub struct World {
    pub cities: Vec<City>,
}

/// The city of a restaurant, by its time zone (the seed's three cities).
fn city_of(time_zone: &str) -> (String, &'static str) {
    match time_zone {
        "Europe/Berlin" => ("Berlin".into(), "10999"),
        "Europe/London" => ("London".into(), "E1 6QL"),
        "America/New_York" => ("New York".into(), "11211"),
        other => (
            other.rsplit('/').next().unwrap_or(other).replace('_', " "),
            "00000",
        ),
    }
}

/// `answer` if it is a success; otherwise the reference data could not be set up.
fn succeeded(answer: Answer, request: &str) -> Result<Answer, SimError> {
    if answer.ok() {
        return Ok(answer);
    }
    Err(SimError::ReferenceData(format!(
        "{request} answered {} {}",
        answer.status,
        answer.code()
    )))
}

impl World {
    /// Read the open restaurants and their menus, and make sure each city
    /// has its riders (created or re-activated through the admin API).
    pub async fn load(config: &SimConfig, api: &Api) -> Result<Self, SimError> {
        let unreachable = |e: crate::client::Unreachable| SimError::ReferenceData(e.0);
        let ops = Actor::ops();
        let answer = api
            .get(&ops, "/v1/admin/restaurants")
            .await
            .map_err(unreachable)?;
        let answer = succeeded(answer, "GET /v1/admin/restaurants")?;
        let restaurants: Vec<RestaurantDto> = serde_json::from_value(answer.body)
            .map_err(|e| SimError::ReferenceData(format!("restaurants: {e}")))?;
        let mut by_city: BTreeMap<String, (&'static str, Vec<Restaurant>)> = BTreeMap::new();
        for r in restaurants.into_iter().filter(|r| r.is_open) {
            let answer = api
                .get(&ops, &format!("/v1/restaurants/{}/menu", r.id))
                .await
                .map_err(unreachable)?;
            let menu: Vec<MenuItemDto> = serde_json::from_value(answer.body).unwrap_or_default();
            let menu: Vec<Uuid> = menu
                .into_iter()
                .filter(|m| m.available)
                .map(|m| m.id)
                .collect();
            if menu.is_empty() {
                continue;
            }
            let (city, postal_code) = city_of(&r.time_zone);
            by_city
                .entry(city)
                .or_insert_with(|| (postal_code, Vec::new()))
                .1
                .push(Restaurant {
                    id: r.id,
                    name: r.name,
                    location: Point::new(r.lat, r.lon),
                    menu,
                });
        }
        if by_city.is_empty() {
            return Err(SimError::ReferenceData(
                "no open restaurant with an available menu item (load the seed data)".into(),
            ));
        }
        let admin = Actor::admin();
        let mut rng = rand::rng();
        let mut cities = Vec::new();
        for (name, (postal_code, restaurants)) in by_city {
            let mut riders = Vec::new();
            for n in 1..=config.riders_per_city {
                let id = Uuid::new_v5(&SIM_NAMESPACE, format!("rider/{name}/{n}").as_bytes());
                let answer = api
                    .command(
                        &admin,
                        reqwest::Method::PUT,
                        &format!("/v1/admin/riders/{id}"),
                        json!({ "name": format!("Sim rider {name} {n}"), "active": true }),
                    )
                    .await
                    .map_err(unreachable)?;
                succeeded(answer, &format!("PUT /v1/admin/riders/{id}"))?;
                let home = restaurants
                    .choose(&mut rng)
                    .map(|r| r.location)
                    .unwrap_or(Point::new(0.0, 0.0));
                riders.push(Rider {
                    id,
                    position: home.random_within(config.radius_m / 2.0, &mut rng),
                });
            }
            let customers = (0..config.customers_per_city.max(1))
                .map(|n| Uuid::new_v5(&SIM_NAMESPACE, format!("customer/{name}/{n}").as_bytes()))
                .collect();
            cities.push(City {
                name,
                postal_code,
                restaurants,
                customers,
                rider_total: riders.len(),
                free_riders: Mutex::new(riders),
                rider_freed: Notify::new(),
            });
        }
        Ok(Self { cities })
    }

    pub fn restaurant_count(&self) -> usize {
        self.cities.iter().map(|c| c.restaurants.len()).sum()
    }

    pub fn rider_count(&self) -> usize {
        self.cities.iter().map(|c| c.rider_total).sum()
    }

    pub fn busy_riders(&self) -> usize {
        self.cities.iter().map(City::busy_riders).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KREUZBERG: Point = Point::new(52.499, 13.418);

    #[test]
    fn distances_are_great_circle_metres() {
        // Kreuzberg to Mitte, about 3.3 km.
        let mitte = Point::new(52.5255, 13.4031);
        let d = KREUZBERG.distance_m(&mitte);
        assert!((3_000.0..3_500.0).contains(&d), "{d}");
        assert_eq!(KREUZBERG.distance_m(&KREUZBERG), 0.0);
    }

    #[test]
    fn a_step_towards_a_point_covers_its_fraction_of_the_way() {
        let to = Point::new(52.509, 13.428);
        let total = KREUZBERG.distance_m(&to);
        let half = KREUZBERG.towards(&to, 0.5);
        assert!((KREUZBERG.distance_m(&half) - total / 2.0).abs() < 1.0);
        assert_eq!(KREUZBERG.towards(&to, 1.5), to, "never past the target");
    }

    #[test]
    fn random_homes_stay_within_the_radius() {
        let mut rng = rand::rng();
        for _ in 0..1_000 {
            let p = KREUZBERG.random_within(2_000.0, &mut rng);
            assert!(KREUZBERG.distance_m(&p) <= 2_000.5);
        }
    }

    #[test]
    fn cities_come_from_the_restaurants_time_zones() {
        assert_eq!(city_of("Europe/Berlin").0, "Berlin");
        assert_eq!(city_of("America/New_York").0, "New York");
        assert_eq!(city_of("Asia/Ho_Chi_Minh").0, "Ho Chi Minh");
    }
}
