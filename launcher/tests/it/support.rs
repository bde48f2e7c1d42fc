//! Fixtures of the launcher's end-to-end tests: the platform (the `Stack`)
//! on a test database and broker, the write side driven as the API drives it,
//! and read-model dumps.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ordertrail_commands::service::{CommandContext, CommandOutcome, CommandService};
use ordertrail_commands::workflows::RequestDelivery;
use ordertrail_domain::SimulatedProvider;
use ordertrail_domain::delivery::{AssignRider, CompleteDelivery, ConfirmPickup, ReportLocation};
use ordertrail_domain::order::{
    AcceptOrder, ConfirmOrder, MarkDelivered, MarkPickedUp, MarkReadyForPickup,
};
use ordertrail_domain::payment::{AuthorizePayment, CapturePayment};
use ordertrail_domain::{DeliveryCommand, OrderCommand, PaymentCommand};
use ordertrail_launcher::seed::{berlin_burger_order, seed_ids};
use ordertrail_launcher::{RunningStack, Stack};
use ordertrail_schemas::topics::all_topics;
use ordertrail_schemas::{
    Actor, ActorRole, Currency, CustomerId, DeliveryId, GeoPoint, MenuItemId, Money, OrderId,
    PaymentId, RestaurantId, RiderId,
};
use ordertrail_testkit::kafka::TestKafka;
use ordertrail_testkit::pg::TestDatabase;
use sqlx::PgPool;
use uuid::Uuid;

pub(crate) const PARTITIONS: i32 = 3;
pub(crate) const WAIT: Duration = Duration::from_secs(90);

/// The launcher's `Stack` on a test database and `kafka`: the relay, the
/// three projectors and (optionally) the saga as tasks, with short timers.
pub(crate) struct Platform {
    stack: RunningStack,
}

impl Platform {
    pub(crate) async fn start(pool: &PgPool, kafka: &TestKafka, with_saga: bool) -> Self {
        kafka.create_topics(&all_topics(&kafka.prefix), PARTITIONS);
        let mut stack = Stack::on_pool(pool.clone())
            .kafka(&kafka.bootstrap)
            .topic_prefix(&kafka.prefix)
            .partitions(PARTITIONS)
            .saga(with_saga);
        if with_saga {
            stack = stack.saga_service(CommandService::new(
                pool.clone(),
                Arc::new(SimulatedProvider::new()),
            ));
        }
        let stack = stack.test_timings().start().await.expect("start the stack");
        Self { stack }
    }

    /// Every projector has applied every event in the store (lag measured
    /// against the store's head, not against Kafka).
    pub(crate) async fn caught_up(&self) {
        self.stack
            .caught_up(WAIT)
            .await
            .expect("every projector applied every stored event");
    }

    pub(crate) async fn stop(self) {
        self.stack.stop().await.expect("the stack stops cleanly");
    }
}

/// A seeded test database, the platform (no saga) on a broker of its own,
/// and the write side.
pub(crate) async fn seeded_platform() -> (TestDatabase, TestKafka, Platform, Commands) {
    ordertrail_testkit::init_test_logging();
    let db = TestDatabase::new().await;
    ordertrail_launcher::seed::seed(&db.pool)
        .await
        .expect("seed");
    let kafka = TestKafka::start();
    let platform = Platform::start(&db.pool, &kafka, false).await;
    let commands = Commands::new(&db.pool);
    (db, kafka, platform, commands)
}

/// A workspace binary (`scripts/test.sh` builds them all; alone:
/// `cargo build -p ordertrail-projections --bins`).
pub(crate) fn binary(name: &str) -> std::path::PathBuf {
    let path = std::env::current_exe()
        .ok()
        .and_then(|test| Some(test.parent()?.parent()?.join(name)))
        .expect("the target directory");
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first",
        path.display()
    );
    path
}

pub(crate) fn ctx(role: ActorRole, subject: impl ToString) -> CommandContext {
    CommandContext::new(
        Actor {
            subject: subject.to_string(),
            role,
        },
        format!("req-e2e-{}", Uuid::new_v4()),
    )
}

pub(crate) fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::EUR)
}

pub(crate) fn succeeded(outcome: &CommandOutcome, event_type: &str) {
    assert!(
        outcome.has_event(event_type),
        "expected {event_type}: {outcome:?}"
    );
}

/// The write side as the API drives it, one actor per step.
pub(crate) struct Commands {
    pub(crate) service: CommandService,
    ops: CommandContext,
}

impl Commands {
    pub(crate) fn new(pool: &PgPool) -> Self {
        Self {
            service: CommandService::new(pool.clone(), Arc::new(SimulatedProvider::new())),
            ops: ctx(ActorRole::Ops, "ops-e2e"),
        }
    }

    pub(crate) fn ops(&self) -> CommandContext {
        ctx(self.ops.actor.role, &self.ops.actor.subject)
    }

    /// Execute `step` on the order's aggregate (or its payment's or
    /// delivery's) and require `event` in the outcome.
    async fn run(&self, ctx: &CommandContext, order: OrderId, step: Step, event: &str) {
        let s = &self.service;
        let outcome = match step {
            Step::Order(c) => s.execute(ctx, order, c).await,
            Step::Payment(c) => s.execute(ctx, PaymentId::for_order(order), c).await,
            Step::Delivery(c) => s.execute(ctx, DeliveryId::for_order(order), c).await,
        }
        .unwrap_or_else(|e| panic!("{event}: {e}"));
        succeeded(&outcome, event);
    }

    /// A card order placed, authorized, confirmed, accepted, delivered by
    /// `rider` with three location fixes, and captured.
    pub(crate) async fn delivered_card_order(
        &self,
        customer: CustomerId,
        rider: RiderId,
    ) -> OrderId {
        let s = &self.service;
        let restaurant = RestaurantId(seed_ids::BERLIN_BURGERS);
        // A fresh context (command id) per command: a reused one is a retry.
        let as_customer = || ctx(ActorRole::Customer, customer.0);
        let as_restaurant = || ctx(ActorRole::Restaurant, restaurant.0);
        let as_rider = || ctx(ActorRole::Rider, rider.0);
        let ops = || self.ops();

        let placed = s
            .run(&as_customer(), berlin_burger_order(customer, Some(150)))
            .await
            .expect("place order");
        succeeded(&placed, "OrderPlaced");
        let order = OrderId(placed.aggregate_id.parse().expect("order id"));
        let total = placed.events[0].payload["price"]["total"]["amount"]
            .as_i64()
            .expect("total");
        assert_eq!(
            total, 3_071,
            "2×9.90 + 4.50, fee 1.99, service 1.22, tax 1.70, tip 1.50"
        );
        let payment = PaymentId::for_order(order);
        let now = Utc::now;
        let authorize = AuthorizePayment {
            payment_id: payment,
            order_id: order,
            restaurant_id: restaurant,
            amount: eur(total),
            payment_method_ref: ordertrail_schemas::privacy::payment_method_ref("tok_visa"),
            now: now(),
        };
        self.run(
            &as_customer(),
            order,
            Step::Payment(authorize.into()),
            "PaymentAuthorized",
        )
        .await;
        let confirm = ConfirmOrder {
            payment_id: Some(payment),
            now: now(),
        };
        self.run(&ops(), order, Step::Order(confirm.into()), "OrderConfirmed")
            .await;
        let accept = AcceptOrder {
            preparation_minutes: 10,
            now: now(),
        };
        self.run(
            &as_restaurant(),
            order,
            Step::Order(accept.into()),
            "OrderAccepted",
        )
        .await;
        let requested = s
            .run(&as_restaurant(), RequestDelivery { order_id: order })
            .await
            .expect("request delivery");
        succeeded(&requested, "DeliveryRequested");
        let code = s.dropoff_code_for(order);
        let assign = AssignRider {
            rider_id: rider,
            now: now(),
        };
        self.run(
            &ops(),
            order,
            Step::Delivery(assign.into()),
            "RiderAssigned",
        )
        .await;
        // Three fixes approaching the restaurant (52.4990, 13.4180), 20 s apart.
        for (i, (lat, lon)) in [(52.5060, 13.4100), (52.5030, 13.4140), (52.5000, 13.4170)]
            .into_iter()
            .enumerate()
        {
            let back = chrono::Duration::seconds(40 - 20 * i as i64);
            let fix = ReportLocation {
                rider_id: rider,
                location: GeoPoint { lat, lon },
                reported_at: now() - back,
                accuracy_m: Some(5),
                now: now(),
            };
            self.run(
                &as_rider(),
                order,
                Step::Delivery(fix.into()),
                "RiderLocationReported",
            )
            .await;
        }
        let ready = MarkReadyForPickup { now: now() };
        self.run(
            &as_restaurant(),
            order,
            Step::Order(ready.into()),
            "OrderReadyForPickup",
        )
        .await;
        let pickup = ConfirmPickup {
            rider_id: rider,
            now: now(),
        };
        self.run(
            &as_rider(),
            order,
            Step::Delivery(pickup.into()),
            "PickupConfirmed",
        )
        .await;
        let picked_up = MarkPickedUp {
            rider_id: rider,
            now: now(),
        };
        self.run(
            &ops(),
            order,
            Step::Order(picked_up.into()),
            "OrderPickedUp",
        )
        .await;
        let delivery = DeliveryId::for_order(order);
        let complete = CompleteDelivery {
            rider_id: rider,
            dropoff_code_hashes: s.dropoff_code_hashes(delivery, &code),
            dropoff_code: code,
            now: now(),
        };
        self.run(
            &as_rider(),
            order,
            Step::Delivery(complete.into()),
            "DeliveryCompleted",
        )
        .await;
        let delivered = MarkDelivered { now: now() };
        self.run(
            &ops(),
            order,
            Step::Order(delivered.into()),
            "OrderDelivered",
        )
        .await;
        let capture = CapturePayment {
            amount: None,
            order_delivered: true,
            override_reason: None,
            now: now(),
        };
        self.run(
            &ops(),
            order,
            Step::Payment(capture.into()),
            "PaymentCaptured",
        )
        .await;
        order
    }
}

/// One command of a flow, on the aggregate it addresses.
enum Step {
    Order(OrderCommand),
    Payment(PaymentCommand),
    Delivery(DeliveryCommand),
}

pub(crate) fn customer_ctx(customer: CustomerId) -> CommandContext {
    CommandContext::new(
        Actor {
            subject: customer.0.to_string(),
            role: ActorRole::Customer,
        },
        format!("req-{}", Uuid::new_v4()),
    )
}

pub(crate) async fn place_card_order(service: &CommandService) -> OrderId {
    let customer = CustomerId(Uuid::new_v4());
    let mut input = berlin_burger_order(customer, None);
    input.items = vec![(MenuItemId(seed_ids::menu_item(1, 1)), 1)];
    let placed = service
        .run(&customer_ctx(customer), input)
        .await
        .expect("place order");
    OrderId(placed.aggregate_id.parse().expect("order id"))
}
