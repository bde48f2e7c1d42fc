//! One order's life, each step taken by the person who takes it in the
//! real business, with their own token, through the public API:
//!
//! 1. the **customer** places the order (card that succeeds, declines or
//!    fails transiently; or cash), sometimes cancels right away, and watches
//!    it get confirmed (the saga authorizes and confirms);
//! 2. the **restaurant** accepts with a preparation time, rejects, or (rarely)
//!    never answers and leaves it to the platform's accept timeout;
//! 3. the **kitchen** cooks for the preparation time and marks it ready;
//! 4. a **rider** of the city assigns themselves once the saga requested the
//!    delivery, rides to the restaurant reporting GPS fixes, waits for the
//!    food, confirms the pickup, rides to the customer;
//! 5. the **customer** reads the drop-off code from their own order and tells
//!    the rider, who types it (sometimes wrongly first; rarely never right,
//!    and then gives up: the delivery fails and the order is cancelled);
//! 6. the customer watches the order until it is final.
//!
//! An order that does not reach a final state within the stage timeout is
//! counted as `waiting` when one of the platform's timers owns its next step
//! (payment retry while `placed`, accept timeout while `confirmed`), and as
//! `stuck` otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ordertrail_schemas::{DeliveryId, OrderId};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::client::{Actor, Answer, Api, Unreachable};
use crate::config::SimConfig;
use crate::stats::Stats;
use crate::world::{City, Point, Restaurant, Rider, World};

/// What every order task shares.
pub struct Ctx {
    pub config: Arc<SimConfig>,
    pub api: Arc<Api>,
    pub world: Arc<World>,
    pub stats: Arc<Stats>,
}

/// Shows the world only: the configuration holds the JWT secret.
impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

/// How an order ended (or where it was left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `delivered`, `cancelled`, `rejected`, `waiting` or `stuck`.
    pub state: String,
    pub reason: String,
}

/// What the customer (or restaurant, or rider) sees of an order.
#[derive(Debug, Clone, Default)]
struct View {
    status: String,
    reason: Option<String>,
    delivery_status: Option<String>,
    dropoff_code: Option<String>,
}

impl View {
    fn from_body(body: &Value) -> Self {
        let order = &body["order"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        Self {
            status: text(&order["status"]).unwrap_or_default(),
            reason: text(&order["reason"]),
            delivery_status: text(&order["delivery_status"]),
            dropoff_code: text(&body["dropoff_code"]),
        }
    }

    fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "delivered" | "cancelled" | "rejected")
    }
}

enum PaymentKind {
    Card(&'static str),
    Cash,
}

impl PaymentKind {
    fn choose(config: &SimConfig, rng: &mut impl Rng) -> Self {
        let r = rng.random_range(0.0..100.0);
        let mut edge = config.cash_pct;
        if r < edge {
            return Self::Cash;
        }
        edge += config.decline_pct;
        if r < edge {
            return Self::Card(
                ["tok_declined", "tok_insufficient_funds"]
                    .choose(rng)
                    .copied()
                    .unwrap_or("tok_declined"),
            );
        }
        edge += config.flaky_pct;
        if r < edge {
            return Self::Card(if rng.random_bool(0.5) {
                "tok_flaky_1"
            } else {
                "tok_flaky_2"
            });
        }
        Self::Card(if rng.random_bool(0.7) {
            "tok_visa"
        } else {
            "tok_mastercard"
        })
    }

    fn json(&self) -> Value {
        match self {
            Self::Card(token) => json!({ "kind": "card", "card_token": token }),
            Self::Cash => json!({ "kind": "cash" }),
        }
    }
}

/// The decisions of the people around one order, drawn up front.
struct Script {
    customer_cancels: bool,
    restaurant_ignores: bool,
    restaurant_rejects: bool,
    preparation_minutes: u32,
    wrong_codes: WrongCodes,
}

/// How the customer and rider get on with the drop-off code.
#[derive(Debug, Clone, Copy)]
enum WrongCodes {
    Never,
    /// One mistyped code, then the right one.
    Once,
    /// Never the right one: the rider gives up when the API says no tries are left.
    EveryTime,
}

impl Script {
    fn draw(config: &SimConfig, rng: &mut impl Rng) -> Self {
        let pct = |p: f64, rng: &mut dyn rand::RngCore| rng.random_range(0.0..100.0) < p;
        let restaurant_ignores = pct(config.ignore_pct, rng);
        let code_lost = pct(config.code_lost_pct, rng);
        Self {
            customer_cancels: pct(config.cancel_pct, rng),
            restaurant_ignores,
            restaurant_rejects: !restaurant_ignores && pct(config.reject_pct, rng),
            preparation_minutes: rng.random_range(8..=20),
            wrong_codes: if code_lost {
                WrongCodes::EveryTime
            } else if pct(config.wrong_code_pct, rng) {
                WrongCodes::Once
            } else {
                WrongCodes::Never
            },
        }
    }
}

const REJECT_REASONS: [&str; 3] = [
    "kitchen is overloaded",
    "out of ingredients",
    "closing early today",
];

/// Live one order from placement to its end; the outcome goes to the stats.
pub async fn run_order(ctx: Arc<Ctx>, n: u64) {
    ctx.stats.stage(n, "placing");
    let outcome = match OrderFlow::place(&ctx, n).await {
        Ok(Some(flow)) => flow.live().await,
        Ok(None) => {
            ctx.stats.forget(n);
            return;
        }
        Err(Unreachable(e)) => {
            tracing::warn!(error = %e, "placing an order failed");
            ctx.stats.place_failed("unreachable");
            ctx.stats.forget(n);
            return;
        }
    };
    ctx.stats.finish(n, &outcome);
}

struct OrderFlow<'a> {
    ctx: &'a Ctx,
    n: u64,
    order_id: Uuid,
    placed_at: Instant,
    city: &'a City,
    restaurant: &'a Restaurant,
    customer: Actor,
    dropoff: Point,
    script: Script,
}

impl<'a> OrderFlow<'a> {
    async fn place(ctx: &'a Ctx, n: u64) -> Result<Option<OrderFlow<'a>>, Unreachable> {
        let config = &ctx.config;
        let (city, restaurant, customer, body, dropoff, script) = {
            let mut rng = rand::rng();
            let city = &ctx.world.cities[rng.random_range(0..ctx.world.cities.len())];
            let restaurant = &city.restaurants[rng.random_range(0..city.restaurants.len())];
            let customer = *city.customers.choose(&mut rng).unwrap_or(&Uuid::nil());
            let dropoff = restaurant.location.random_within(config.radius_m, &mut rng);
            let mut menu = restaurant.menu.clone();
            menu.shuffle(&mut rng);
            let lines = rng.random_range(1..=3usize).min(menu.len());
            let items: Vec<Value> = menu[..lines]
                .iter()
                .map(|id| json!({ "menu_item_id": id, "quantity": rng.random_range(1..=2) }))
                .collect();
            let tip = if rng.random_bool(0.6) {
                rng.random_range(50..=400)
            } else {
                0
            };
            let body = json!({
                "restaurant_id": restaurant.id,
                "items": items,
                "delivery_address": {
                    "street": format!("{} Sim Street", rng.random_range(1..=250)),
                    "city": city.name,
                    "postal_code": city.postal_code,
                    "location": { "lat": dropoff.lat, "lon": dropoff.lon },
                },
                "payment_method": PaymentKind::choose(config, &mut rng).json(),
                "tip_minor": tip,
            });
            let script = Script::draw(config, &mut rng);
            (city, restaurant, customer, body, dropoff, script)
        };
        let customer = Actor::customer(customer);
        let answer = ctx.api.post(&customer, "/v1/orders", body).await?;
        let order_id = answer.body["aggregate_id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok());
        let Some(order_id) = order_id.filter(|_| answer.ok()) else {
            ctx.stats.place_failed(&code_of(&answer));
            return Ok(None);
        };
        ctx.stats.placed();
        Ok(Some(OrderFlow {
            ctx,
            n,
            order_id,
            placed_at: Instant::now(),
            city,
            restaurant,
            customer,
            dropoff,
            script,
        }))
    }

    fn stage(&self, stage: &'static str) {
        self.ctx.stats.stage(self.n, stage);
    }

    fn poll(&self) -> Duration {
        Duration::from_millis(self.ctx.config.poll_ms.max(10))
    }

    fn stage_timeout(&self) -> Duration {
        Duration::from_secs(self.ctx.config.stage_timeout_secs)
    }

    /// Look at the order as `actor` until `done` holds, the order is final,
    /// or `timeout` passes; the last view seen (None: never visible yet).
    async fn watch(
        &self,
        actor: &Actor,
        every: Duration,
        timeout: Duration,
        done: impl Fn(&View) -> bool,
    ) -> Result<Option<View>, Unreachable> {
        let deadline = Instant::now() + timeout;
        let path = format!("/v1/orders/{}", self.order_id);
        let mut last = None;
        loop {
            let answer = self.ctx.api.get(actor, &path).await?;
            if answer.ok() {
                let view = View::from_body(&answer.body);
                if done(&view) || view.is_final() {
                    return Ok(Some(view));
                }
                last = Some(view);
            }
            // 404 until the order history projector has the order.
            if Instant::now() >= deadline {
                return Ok(last);
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn live(self) -> Outcome {
        match self.steps().await {
            Ok(outcome) => outcome,
            Err(Unreachable(e)) => Outcome {
                state: "stuck".into(),
                reason: format!("API unreachable: {e}"),
            },
        }
    }

    async fn steps(&self) -> Result<Outcome, Unreachable> {
        let config = &self.ctx.config;
        let api = &self.ctx.api;
        let order = self.order_id;
        if self.script.customer_cancels {
            self.stage("customer cancelling");
            let delay = config.sim_minutes(uniform(0.1, 1.0));
            tokio::time::sleep(delay).await;
            let cancelled = api
                .post(
                    &self.customer,
                    &format!("/v1/orders/{order}/cancel"),
                    json!({ "reason": "customer changed their mind" }),
                )
                .await?;
            if cancelled.ok() {
                // The read model may still show it confirmed for a moment.
                return self.settle().await;
            }
        }

        self.stage("awaiting confirmation");
        let every = Duration::from_millis(config.confirm_poll_ms.max(10));
        let seen = self
            .watch(&self.customer, every, self.stage_timeout(), |v| {
                v.status != "placed"
            })
            .await?;
        let Some(seen) = seen.filter(|v| v.status != "placed") else {
            return self.settle().await;
        };
        if seen.is_final() {
            return self.settle().await;
        }
        if !self.script.customer_cancels {
            self.ctx.stats.confirmed_after(self.placed_at.elapsed());
        }
        if seen.status != "confirmed" {
            return self.settle().await;
        }

        // The restaurant's turn.
        let restaurant = Actor::restaurant(self.restaurant.id);
        if self.script.restaurant_ignores {
            self.stage("restaurant not answering");
            return self.settle().await;
        }
        self.stage("restaurant deciding");
        let delay = config.sim_minutes(uniform(0.5, 3.0));
        tokio::time::sleep(delay).await;
        if self.script.restaurant_rejects {
            let reason = *REJECT_REASONS
                .choose(&mut rand::rng())
                .unwrap_or(&REJECT_REASONS[0]);
            api.post(
                &restaurant,
                &format!("/v1/orders/{order}/reject"),
                json!({ "reason": reason }),
            )
            .await?;
            return self.settle().await;
        }
        let prep = self.script.preparation_minutes;
        let accepted = api
            .post(
                &restaurant,
                &format!("/v1/orders/{order}/accept"),
                json!({ "preparation_minutes": prep }),
            )
            .await?;
        if !accepted.ok() {
            return self.settle().await;
        }

        // Kitchen and rider side by side; the rider waits for the food.
        let (ready_tx, ready_rx) = watch::channel(false);
        let cook = config.sim_minutes(f64::from(prep) * uniform(0.8, 1.1));
        let food_due = Instant::now() + cook;
        let kitchen = async {
            tokio::time::sleep(cook).await;
            let marked = api
                .post(&restaurant, &format!("/v1/orders/{order}/ready"), json!({}))
                .await;
            let _ = ready_tx.send(true);
            marked.map(|_| ())
        };
        let (cooked, delivered) = tokio::join!(kitchen, self.deliver(food_due, ready_rx));
        cooked?;
        delivered?;
        self.settle().await
    }

    /// The rider's part: assign, ride, pick up, ride, hand over.
    async fn deliver(
        &self,
        food_due: Instant,
        mut food_ready: watch::Receiver<bool>,
    ) -> Result<(), Unreachable> {
        let api = &self.ctx.api;
        let delivery = DeliveryId::for_order(OrderId(self.order_id)).0;
        self.stage("awaiting delivery request");
        let seen = self
            .watch(&self.customer, self.poll(), self.stage_timeout(), |v| {
                v.delivery_status.is_some()
            })
            .await?;
        if seen.is_none_or(|v| v.delivery_status.as_deref() != Some("requested")) {
            return Ok(());
        }
        // Dispatch as a real one would: a rider is sent when they would reach
        // the kitchen about when the food is due (a typical ride: half the
        // delivery radius), not the moment the order is accepted.
        let typical_ride = Duration::from_secs_f64(
            self.ctx.config.radius_m / 2.0 / (self.ctx.config.rider_kmh / 3.6),
        );
        if let Some(wait) = food_due.checked_duration_since(Instant::now() + typical_ride) {
            self.stage("awaiting dispatch");
            tokio::time::sleep(wait).await;
        }
        self.stage("awaiting a rider");
        let mut rider = self.city.take_rider(self.restaurant.location).await;
        let result = async {
            let me = Actor::rider(rider.id);
            self.stage("assigning");
            let assigned = api
                .post(
                    &me,
                    &format!("/v1/deliveries/{delivery}/assign"),
                    json!({ "rider_id": rider.id }),
                )
                .await?;
            if !assigned.ok() {
                return Ok(());
            }
            self.stage("riding to the restaurant");
            self.ride(&me, delivery, &mut rider, self.restaurant.location)
                .await?;
            self.stage("waiting for the food");
            let gps = self.gps_interval();
            while !*food_ready.borrow() {
                let _ = tokio::time::timeout(gps, food_ready.changed()).await;
                self.report(&me, delivery, rider.position).await?;
            }
            self.stage("picking up");
            let picked = api
                .post(&me, &format!("/v1/deliveries/{delivery}/pickup"), json!({}))
                .await?;
            if !picked.ok() {
                return Ok(());
            }
            self.stage("riding to the customer");
            self.ride(&me, delivery, &mut rider, self.dropoff).await?;
            self.stage("handing over");
            self.hand_over(&me, delivery).await
        }
        .await;
        self.city.release_rider(rider);
        result
    }

    /// At the door: the customer reads the code from their order; the rider types it.
    async fn hand_over(&self, me: &Actor, delivery: Uuid) -> Result<(), Unreachable> {
        let api = &self.ctx.api;
        let seen = self
            .watch(&self.customer, self.poll(), self.stage_timeout(), |v| {
                v.dropoff_code.is_some()
            })
            .await?;
        let Some(code) = seen.and_then(|v| v.dropoff_code) else {
            return Ok(());
        };
        let path = format!("/v1/deliveries/{delivery}/complete");
        let wrong = |code: &str| {
            let n: u32 = code.parse().unwrap_or(0);
            let off = 1 + uniform(0.0, 9_000.0) as u32;
            format!("{:04}", (n + off) % 10_000)
        };
        let mut wrong_left = match self.script.wrong_codes {
            WrongCodes::Never => 0,
            WrongCodes::Once => 1,
            WrongCodes::EveryTime => u32::MAX,
        };
        while wrong_left > 0 {
            wrong_left -= 1;
            let typed = wrong(&code);
            let answer = api
                .post(me, &path, json!({ "dropoff_code": typed }))
                .await?;
            if answer.ok() {
                return Ok(());
            }
            // The API says how many tries are left; none: the rider gives up.
            let attempts_left = answer.body["details"]["attempts_left"].as_u64();
            if answer.code() != "dropoff_code_invalid" {
                return Ok(());
            }
            if attempts_left == Some(0) {
                api.post(
                    me,
                    &format!("/v1/deliveries/{delivery}/fail"),
                    json!({ "reason": "customer could not give the drop-off code" }),
                )
                .await?;
                return Ok(());
            }
            let pause = self.ctx.config.sim_minutes(0.5);
            tokio::time::sleep(pause).await;
        }
        api.post(me, &path, json!({ "dropoff_code": code })).await?;
        Ok(())
    }

    fn gps_interval(&self) -> Duration {
        Duration::from_secs_f64(self.ctx.config.gps_interval_secs.max(0.05))
    }

    /// Ride in a straight line at the configured speed, one fix per interval;
    /// each step is the distance the elapsed device time allows, so the
    /// platform's plausibility check always holds.
    async fn ride(
        &self,
        me: &Actor,
        delivery: Uuid,
        rider: &mut Rider,
        to: Point,
    ) -> Result<(), Unreachable> {
        let speed = self.ctx.config.rider_kmh / 3.6;
        let mut last = Utc::now();
        self.report_at(me, delivery, rider.position, last).await?;
        loop {
            let remaining = rider.position.distance_m(&to);
            if remaining < 1.0 {
                return Ok(());
            }
            let pause = self
                .gps_interval()
                .min(Duration::from_secs_f64(remaining / speed));
            tokio::time::sleep(pause).await;
            let now = Utc::now();
            let elapsed = (now - last).as_seconds_f64().max(0.0);
            let step = speed * elapsed;
            rider.position = if step >= remaining {
                to
            } else {
                rider.position.towards(&to, step / remaining)
            };
            last = now;
            self.report_at(me, delivery, rider.position, now).await?;
        }
    }

    async fn report(&self, me: &Actor, delivery: Uuid, at: Point) -> Result<Answer, Unreachable> {
        self.report_at(me, delivery, at, Utc::now()).await
    }

    async fn report_at(
        &self,
        me: &Actor,
        delivery: Uuid,
        at: Point,
        when: chrono::DateTime<Utc>,
    ) -> Result<Answer, Unreachable> {
        let accuracy = rand::rng().random_range(3..=15);
        self.ctx
            .api
            .post(
                me,
                &format!("/v1/deliveries/{delivery}/locations"),
                json!({
                    "lat": at.lat,
                    "lon": at.lon,
                    "reported_at": when,
                    "accuracy_m": accuracy,
                }),
            )
            .await
    }

    /// Watch the order as its customer until it is final; else it waits on
    /// a platform timer or is stuck.
    async fn settle(&self) -> Result<Outcome, Unreachable> {
        self.stage("awaiting the final state");
        let seen = self
            .watch(&self.customer, self.poll(), self.stage_timeout(), |v| {
                v.is_final()
            })
            .await?;
        Ok(match seen {
            Some(v) if v.is_final() => Outcome {
                reason: match v.status.as_str() {
                    "delivered" => String::new(),
                    _ => short_reason(v.reason.as_deref().unwrap_or("")),
                },
                state: v.status,
            },
            Some(v) if v.status == "placed" => Outcome {
                state: "waiting".into(),
                reason: "placed: payment retry timer".into(),
            },
            Some(v) if v.status == "confirmed" => Outcome {
                state: "waiting".into(),
                reason: "confirmed: accept timeout".into(),
            },
            Some(v) => Outcome {
                state: "stuck".into(),
                reason: v.status,
            },
            None => Outcome {
                state: "stuck".into(),
                reason: "never visible to its customer".into(),
            },
        })
    }
}

/// A uniform draw from `[low, high)`, the generator dropped at once (it
/// must not live across an `.await` of a task that moves between threads).
fn uniform(low: f64, high: f64) -> f64 {
    rand::rng().random_range(low..high)
}

/// Reasons grouped for the summary: `payment declined: card_declined`
/// stays, ids and free text after a second colon are dropped.
fn short_reason(reason: &str) -> String {
    let mut parts = reason.splitn(3, ": ");
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}: {b}"),
        (Some(a), None) => a.to_owned(),
        _ => String::new(),
    }
}

fn code_of(answer: &Answer) -> String {
    match answer.code() {
        "" => format!("http_{}", answer.status.as_u16()),
        code => code.to_owned(),
    }
}

/// Close the orders an earlier run left half-way (the simulator was
/// stopped with orders in flight): ops cancel those not yet picked up, and
/// fail the deliveries of those picked up (the saga then cancels the order
/// and releases the money). Only the simulator's own customers' orders are
/// touched. Returns how many were closed.
pub async fn close_earlier_runs(api: &Api, world: &World) -> u64 {
    let ours: std::collections::HashSet<Uuid> = world
        .cities
        .iter()
        .flat_map(|c| c.customers.iter().copied())
        .collect();
    let ops = Actor::ops();
    let mut closed = 0;
    for status in [
        "placed",
        "confirmed",
        "accepted",
        "ready_for_pickup",
        "picked_up",
    ] {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/orders?status={status}&limit=200&sort=placed_asc");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let Ok(page) = api.get(&ops, &path).await else {
                return closed;
            };
            let items = page.body["items"].as_array().cloned().unwrap_or_default();
            for item in items {
                let (Some(order), Some(customer)) = (
                    item["order_id"]
                        .as_str()
                        .and_then(|s| s.parse::<Uuid>().ok()),
                    item["customer_id"]
                        .as_str()
                        .and_then(|s| s.parse::<Uuid>().ok()),
                ) else {
                    continue;
                };
                if !ours.contains(&customer) {
                    continue;
                }
                let answer = if status == "picked_up" {
                    let delivery = DeliveryId::for_order(OrderId(order)).0;
                    api.post(
                        &ops,
                        &format!("/v1/deliveries/{delivery}/fail"),
                        json!({ "reason": "simulation stopped during the delivery" }),
                    )
                    .await
                } else {
                    api.post(
                        &ops,
                        &format!("/v1/orders/{order}/cancel"),
                        json!({ "reason": "simulation stopped before pickup" }),
                    )
                    .await
                };
                if answer.is_ok_and(|a| a.ok()) {
                    closed += 1;
                }
            }
            cursor = page.body["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
    }
    closed
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn reasons_are_grouped_without_their_free_text_tail() {
        assert_eq!(
            short_reason("payment declined: card_declined"),
            "payment declined: card_declined"
        );
        assert_eq!(
            short_reason("delivery failed: customer could not give the drop-off code: extra"),
            "delivery failed: customer could not give the drop-off code"
        );
        assert_eq!(
            short_reason("customer changed their mind"),
            "customer changed their mind"
        );
    }

    #[test]
    fn the_payment_mix_follows_the_percentages() {
        let config = SimConfig::parse_from([
            "sim",
            "--cash-pct",
            "20",
            "--decline-pct",
            "10",
            "--flaky-pct",
            "10",
        ]);
        let mut rng = rand::rng();
        let (mut cash, mut declined, mut flaky) = (0, 0, 0);
        for _ in 0..10_000 {
            match PaymentKind::choose(&config, &mut rng) {
                PaymentKind::Cash => cash += 1,
                PaymentKind::Card(t) if t.starts_with("tok_flaky") => flaky += 1,
                PaymentKind::Card("tok_declined" | "tok_insufficient_funds") => declined += 1,
                PaymentKind::Card(t) => assert!(t == "tok_visa" || t == "tok_mastercard"),
            }
        }
        assert!((1_700..2_300).contains(&cash), "{cash}");
        assert!((800..1_200).contains(&declined), "{declined}");
        assert!((800..1_200).contains(&flaky), "{flaky}");
    }
}
