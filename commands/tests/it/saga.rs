//! The saga end to end: real PostgreSQL, a real Kafka-protocol broker
//! (`KAFKA_BROKERS`, or the in-process librdkafka mock cluster), the real relay
//! and the saga's library entry point running as tasks. The tests act only as
//! the customer, the restaurant, the rider and ops would (through the command
//! service, as the API does); everything else is the saga's doing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::relay;
use ordertrail_commands::saga::{self, SagaConfig};
use ordertrail_commands::service::{CommandContext, CommandService};
use ordertrail_domain::delivery::{AssignRider, CompleteDelivery, ConfirmPickup, FailDelivery};
use ordertrail_domain::order::{AcceptOrder, CancelOrder, RejectOrder};
use ordertrail_domain::payment::AuthorizePayment;
use ordertrail_domain::provider::PaymentProvider;
use ordertrail_domain::{
    DeliveryCommand, DeliveryStatus, Order, OrderCommand, OrderStatus, Payment, PaymentCommand,
    PaymentStatus, SimulatedProvider,
};
use ordertrail_schemas::events::PaymentMethod;
use ordertrail_schemas::topics::all_topics;
use ordertrail_schemas::{
    Actor, ActorRole, CustomerId, DeliveryId, EventMetadata, OrderId, PaymentId, RiderId,
};
use ordertrail_testkit::eventually;
use ordertrail_testkit::kafka::TestKafka;
use ordertrail_testkit::pg::TestDatabase;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{
    PARTITIONS, Running, berlin_order, card, customer, ops, relay_config, restaurant, rider,
    rider_n, stopped,
};

const WAIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ harness

pub(crate) struct Env {
    pub(crate) db: TestDatabase,
    /// Kept alive: the mock cluster lives as long as this.
    _kafka: TestKafka,
    /// The clients' command service (customer, restaurant, rider, ops).
    pub(crate) service: CommandService,
    saga_config: SagaConfig,
    /// The saga's payment provider client, when a test chooses it
    /// (default: the recording simulated provider).
    saga_provider: Option<Arc<dyn PaymentProvider>>,
    _relay: Running<relay::RelayError>,
}

impl Env {
    pub(crate) async fn start(
        tune: impl FnOnce(&mut SagaConfig),
    ) -> (Self, Running<saga::SagaError>) {
        Self::start_with(tune, |_| None).await
    }

    /// [`Self::start`] with the saga's provider client chosen by `provider`
    /// (given the test database's pool).
    pub(crate) async fn start_with(
        tune: impl FnOnce(&mut SagaConfig),
        provider: impl FnOnce(&sqlx::PgPool) -> Option<Arc<dyn PaymentProvider>>,
    ) -> (Self, Running<saga::SagaError>) {
        ordertrail_testkit::init_test_logging();
        let db = TestDatabase::with_pool_size(20).await;
        ordertrail_launcher::seed::seed(&db.pool)
            .await
            .expect("seed");
        let kafka = TestKafka::start();
        kafka.create_topics(&all_topics(&kafka.prefix), PARTITIONS);
        let relay_config = relay_config(&kafka, Duration::from_millis(50), Duration::from_secs(5));
        let pool = db.pool.clone();
        let relay = Running::spawn(|signal| relay::run(relay_config, pool, stopped(signal)));
        let mut saga_config = SagaConfig::new(
            kafka.bootstrap.clone(),
            kafka.prefix.clone(),
            format!("{}-saga", kafka.prefix),
        );
        saga_config.accept_timeout = Duration::from_secs(3_600);
        saga_config.assign_timeout = Duration::from_secs(3_600);
        saga_config.payment_retry_limit = 3;
        saga_config.payment_retry_backoff = Duration::from_millis(50);
        saga_config.timer_poll_interval = Duration::from_millis(50);
        saga_config.max_backoff = Duration::from_millis(500);
        saga_config.pickup_timeout = Duration::from_secs(3_600);
        saga_config.completion_timeout = Duration::from_secs(3_600);
        saga_config.money_retry_backoff = Duration::from_millis(50);
        saga_config.max_retry_delay = Duration::from_millis(400);
        saga_config.instance = Some(format!("{}-saga-test", kafka.prefix));
        tune(&mut saga_config);
        let service = CommandService::new(db.pool.clone(), Arc::new(SimulatedProvider::new()));
        let saga_provider = provider(&db.pool);
        let env = Self {
            db,
            _kafka: kafka,
            service,
            saga_config,
            saga_provider,
            _relay: relay,
        };
        let saga = env.start_saga();
        (env, saga)
    }

    /// A saga process: its own command service and payment provider client.
    fn start_saga(&self) -> Running<saga::SagaError> {
        // The provider client records its operations (the simulation's ledger).
        let provider = self
            .saga_provider
            .clone()
            .unwrap_or_else(|| RecordingProvider::simulated(self.db.pool.clone()));
        let service = CommandService::new(self.db.pool.clone(), provider);
        let config = self.saga_config.clone();
        Running::spawn(|signal| saga::run(config, service, stopped(signal)))
    }

    // -------------------------------------------------------- client calls

    async fn place(&self, payment_method: PaymentMethod) -> OrderId {
        let customer_id = CustomerId::new_random();
        let input = berlin_order(customer_id, payment_method);
        let ctx = CommandContext::new(customer(customer_id), "req-place");
        let outcome = self.service.run(&ctx, input).await.expect("place order");
        outcome.aggregate_id.parse().expect("order id")
    }

    pub(crate) async fn place_card(&self, token: &str) -> OrderId {
        self.place(card(token)).await
    }

    /// A card order placed with `token`, once the saga has confirmed it.
    pub(crate) async fn confirmed_card_order(&self, token: &str) -> OrderId {
        let order_id = self.place_card(token).await;
        self.wait_order(order_id, OrderStatus::Confirmed).await;
        order_id
    }

    async fn order_cmd(&self, actor: Actor, order_id: OrderId, command: OrderCommand) {
        let ctx = CommandContext::new(actor, "req-order");
        self.service
            .execute(&ctx, order_id, command)
            .await
            .unwrap_or_else(|e| panic!("order command on {order_id}: {e}"));
    }

    async fn delivery_cmd(&self, actor: Actor, order_id: OrderId, command: DeliveryCommand) {
        let ctx = CommandContext::new(actor, "req-delivery");
        self.service
            .execute(&ctx, DeliveryId::for_order(order_id), command)
            .await
            .unwrap_or_else(|e| panic!("delivery command for {order_id}: {e}"));
    }

    async fn accept(&self, order_id: OrderId) {
        let command = AcceptOrder {
            preparation_minutes: 15,
            now: Utc::now(),
        };
        self.order_cmd(restaurant(), order_id, command.into()).await;
    }

    async fn assign(&self, order_id: OrderId, rider_id: RiderId) {
        let command = AssignRider {
            rider_id,
            now: Utc::now(),
        };
        self.delivery_cmd(rider(rider_id), order_id, command.into())
            .await;
    }

    async fn pick_up(&self, order_id: OrderId, rider_id: RiderId) {
        let command = ConfirmPickup {
            rider_id,
            now: Utc::now(),
        };
        self.delivery_cmd(rider(rider_id), order_id, command.into())
            .await;
    }

    async fn complete(&self, order_id: OrderId, rider_id: RiderId) {
        let code = self.dropoff_code(order_id);
        let command = CompleteDelivery {
            rider_id,
            dropoff_code_hashes: self
                .service
                .dropoff_code_hashes(DeliveryId::for_order(order_id), &code),
            dropoff_code: code,
            now: Utc::now(),
        };
        self.delivery_cmd(rider(rider_id), order_id, command.into())
            .await;
    }

    /// Restaurant accepts, the saga requests the delivery, a rider takes it,
    /// picks up (the saga marks the order picked up) and hands it over.
    pub(crate) async fn run_delivery(&self, order_id: OrderId, rider_id: RiderId) {
        self.accept_and_pick_up(order_id, rider_id).await;
        self.wait_order(order_id, OrderStatus::PickedUp).await;
        self.complete(order_id, rider_id).await;
    }

    /// Restaurant accepts; `rider_id` takes the delivery the saga requests
    /// and picks it up.
    async fn accept_and_pick_up(&self, order_id: OrderId, rider_id: RiderId) {
        self.accept(order_id).await;
        self.rider_takes(order_id, rider_id).await;
        self.pick_up(order_id, rider_id).await;
    }

    /// Once the saga has requested the delivery, `rider_id` takes it.
    async fn rider_takes(&self, order_id: OrderId, rider_id: RiderId) {
        self.wait_delivery(order_id, DeliveryStatus::Requested)
            .await;
        self.assign(order_id, rider_id).await;
    }

    // -------------------------------------------------------- observations

    async fn order(&self, order_id: OrderId) -> Order {
        self.service
            .load_order(order_id)
            .await
            .expect("load order")
            .expect("order exists")
            .0
    }

    async fn payment(&self, order_id: OrderId) -> Option<Payment> {
        self.service
            .load_payment(PaymentId::for_order(order_id))
            .await
            .expect("load payment")
            .map(|(p, _)| p)
    }

    pub(crate) async fn wait_order(&self, order_id: OrderId, status: OrderStatus) -> Order {
        eventually(&format!("order {order_id} {status}"), WAIT, || async {
            let order = self.order(order_id).await;
            (order.status() == Some(status)).then_some(order)
        })
        .await
    }

    pub(crate) async fn wait_payment(&self, order_id: OrderId, status: PaymentStatus) -> Payment {
        eventually(&format!("payment of {order_id} {status}"), WAIT, || async {
            self.payment(order_id)
                .await
                .filter(|p| p.status() == Some(status))
        })
        .await
    }

    async fn wait_delivery(&self, order_id: OrderId, status: DeliveryStatus) {
        eventually(
            &format!("delivery of {order_id} {status}"),
            WAIT,
            || async {
                let delivery = self
                    .service
                    .load_delivery(DeliveryId::for_order(order_id))
                    .await
                    .expect("load delivery");
                delivery
                    .filter(|(d, _)| d.status() == Some(status))
                    .map(|_| ())
            },
        )
        .await
    }

    /// The code the customer's app shows (derived from the server's key;
    /// events carry only its keyed hash).
    fn dropoff_code(&self, order_id: OrderId) -> String {
        self.service.dropoff_code_for(order_id)
    }

    /// Event types of one aggregate, in order.
    async fn events_of(&self, aggregate_type: &str, aggregate_id: impl ToString) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT event_type FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id.to_string())
        .fetch_all(&self.db.pool)
        .await
        .expect("events")
    }

    /// `(order, payment, delivery)` event types of an order.
    async fn history(&self, order_id: OrderId) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            self.events_of("Order", order_id).await,
            self.events_of("Payment", PaymentId::for_order(order_id))
                .await,
            self.events_of("Delivery", DeliveryId::for_order(order_id))
                .await,
        )
    }

    /// Assert the event types of `order_id`'s order, payment and delivery, in order.
    async fn assert_history(
        &self,
        order_id: OrderId,
        order: &[&str],
        payment: &[&str],
        delivery: &[&str],
    ) {
        let (order_events, payment_events, delivery_events) = self.history(order_id).await;
        assert_eq!(order_events, order, "order events of {order_id}");
        assert_eq!(payment_events, payment, "payment events of {order_id}");
        assert_eq!(delivery_events, delivery, "delivery events of {order_id}");
    }

    /// The saga's cancellation of `order_id`: asserts its `reason` and that
    /// the system cancelled; returns the event's metadata.
    async fn cancelled_by_saga(&self, order_id: OrderId, reason: &str) -> EventMetadata {
        let (_, payload, meta) = self.event("Order", order_id, "OrderCancelled").await;
        assert_eq!(payload["reason"], reason, "{payload}");
        assert_eq!(payload["cancelled_by"], "system", "{payload}");
        meta
    }

    /// Wait until one of `orders` has reached `status`.
    async fn wait_any_order(&self, orders: &[OrderId], status: OrderStatus) {
        eventually(&format!("a first order {status}"), WAIT, || async {
            for order in orders {
                if self.order(*order).await.status() == Some(status) {
                    return Some(());
                }
            }
            None
        })
        .await;
    }

    /// One event's payload and metadata.
    async fn event(
        &self,
        aggregate_type: &str,
        aggregate_id: impl ToString,
        event_type: &str,
    ) -> (Uuid, Value, EventMetadata) {
        let (event_id, payload, metadata): (Uuid, Value, Value) = sqlx::query_as(
            "SELECT event_id, payload::jsonb, metadata::jsonb FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id.to_string())
        .bind(event_type)
        .fetch_one(&self.db.pool)
        .await
        .unwrap_or_else(|e| panic!("one {event_type} of {aggregate_type}: {e}"));
        let map: HashMap<String, String> = serde_json::from_value(metadata).expect("metadata map");
        (
            event_id,
            payload,
            EventMetadata::from_map(&map).expect("metadata"),
        )
    }

    async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }

    /// Sum of the saga's stored next offsets: every event is one message
    /// (the relay publishes each once when nothing crashes), so this equals
    /// the event count once the saga has handled everything.
    async fn saga_offsets_sum(&self) -> i64 {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT sum(next_offset)::bigint FROM projector_offsets WHERE projector = $1",
        )
        .bind(saga::SAGA_CONSUMER)
        .fetch_one(&self.db.pool)
        .await
        .expect("offsets")
        .unwrap_or(0)
    }

    pub(crate) async fn wait_saga_caught_up(&self) {
        eventually("the saga handled every event", WAIT, || async {
            let events = self.event_count().await;
            (self.saga_offsets_sum().await == events).then_some(())
        })
        .await;
    }

    /// Wait until the stored timers of one kind for an aggregate are exactly
    /// `want` (a timer is marked fired just after its commands commit), and
    /// fail naming what they are if they never get there.
    async fn wait_timers(
        &self,
        kind: &str,
        aggregate_id: impl ToString,
        want: &[(i32, Option<&str>)],
    ) {
        let id = aggregate_id.to_string();
        let want: Vec<(i32, Option<String>)> = want
            .iter()
            .map(|(attempt, outcome)| (*attempt, outcome.map(str::to_owned)))
            .collect();
        let reached = tokio::time::timeout(WAIT, async {
            loop {
                if self.timers(kind, &id).await == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if reached.is_err() {
            assert_eq!(self.timers(kind, &id).await, want, "{kind} timers of {id}");
        }
    }

    /// `(attempt, outcome)` of the stored timers of one kind for an aggregate.
    async fn timers(&self, kind: &str, aggregate_id: impl ToString) -> Vec<(i32, Option<String>)> {
        sqlx::query_as(
            "SELECT attempt, outcome FROM saga_timers WHERE kind = $1 AND aggregate_id = $2 ORDER BY attempt",
        )
        .bind(kind)
        .bind(aggregate_id.to_string())
        .fetch_all(&self.db.pool)
        .await
        .expect("timers")
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

const DELIVERED_ORDER: &[&str] = &[
    "OrderPlaced",
    "OrderConfirmed",
    "OrderAccepted",
    "OrderPickedUp",
    "OrderDelivered",
];
const COMPLETED_DELIVERY: &[&str] = &[
    "DeliveryRequested",
    "RiderAssigned",
    "PickupConfirmed",
    "DeliveryCompleted",
];
/// Payment histories.
const CAPTURED: &[&str] = &["PaymentAuthorized", "PaymentCaptured"];
const VOIDED: &[&str] = &["PaymentAuthorized", "PaymentVoided"];
const CASH: &[&str] = &["CashCollected"];
/// No events at all (no delivery was requested).
const NOTHING: &[&str] = &[];

// ------------------------------------------------------------------ happy paths

#[tokio::test]
async fn card_order_runs_to_delivered_and_captured() {
    let (env, saga) = Env::start(|_| {}).await;
    let order_id = env.place_card("tok_visa").await;
    let confirmed = env.wait_order(order_id, OrderStatus::Confirmed).await;
    assert_eq!(confirmed.payment_id(), Some(PaymentId::for_order(order_id)));
    let total = confirmed.price().expect("price").total;
    env.run_delivery(order_id, rider_n(1)).await;

    env.wait_order(order_id, OrderStatus::Delivered).await;
    let payment = env.wait_payment(order_id, PaymentStatus::Captured).await;
    assert_eq!(payment.authorized_amount(), Some(total));
    assert_eq!(payment.captured_amount(), Some(total));
    env.assert_history(order_id, DELIVERED_ORDER, CAPTURED, COMPLETED_DELIVERY)
        .await;

    // The saga's commands: actor saga/system, causation = the causing event,
    // correlation carried on, command id = derived_id(event id, action).
    let (placed_id, _, placed_meta) = env.event("Order", order_id, "OrderPlaced").await;
    let (authorized_id, _, auth_meta) = env
        .event(
            "Payment",
            PaymentId::for_order(order_id),
            "PaymentAuthorized",
        )
        .await;
    assert_eq!(
        auth_meta.actor,
        Actor {
            subject: "saga".into(),
            role: ActorRole::System
        }
    );
    assert_eq!(auth_meta.causation_id, placed_id);
    assert_eq!(auth_meta.correlation_id, placed_meta.correlation_id);
    assert_eq!(
        auth_meta.command_id,
        ordertrail_schemas::derived_id(placed_id, b"authorize_payment")
    );
    // Event ids are time-ordered, and so are the command ids derived from
    // them (the command log takes them at its right edge).
    assert_eq!(auth_meta.command_id.get_version_num(), 7);
    assert_eq!(
        auth_meta.command_id.get_timestamp(),
        placed_id.get_timestamp()
    );
    let (_, _, confirm_meta) = env.event("Order", order_id, "OrderConfirmed").await;
    assert_eq!(confirm_meta.causation_id, authorized_id);
    assert_eq!(confirm_meta.correlation_id, placed_meta.correlation_id);
    assert_eq!(
        confirm_meta.command_id,
        ordertrail_schemas::derived_id(authorized_id, b"confirm_order")
    );
    let (delivered_id, _, _) = env.event("Order", order_id, "OrderDelivered").await;
    let (_, _, capture_meta) = env
        .event("Payment", PaymentId::for_order(order_id), "PaymentCaptured")
        .await;
    assert_eq!(capture_meta.causation_id, delivered_id);
    assert_eq!(capture_meta.actor.role, ActorRole::System);
    saga.stop().await;
}

#[tokio::test]
async fn cash_order_runs_to_delivered_and_cash_collected() {
    let (env, saga) = Env::start(|_| {}).await;
    let order_id = env.place(PaymentMethod::Cash).await;
    let confirmed = env.wait_order(order_id, OrderStatus::Confirmed).await;
    assert_eq!(confirmed.payment_id(), None);
    let total = confirmed.price().expect("price").total;
    env.run_delivery(order_id, rider_n(2)).await;

    env.wait_order(order_id, OrderStatus::Delivered).await;
    let payment = env
        .wait_payment(order_id, PaymentStatus::CashCollected)
        .await;
    assert_eq!(payment.collected_amount(), Some(total));
    assert_eq!(payment.collected_by(), Some(rider_n(2)));
    env.assert_history(order_id, DELIVERED_ORDER, CASH, COMPLETED_DELIVERY)
        .await;
    saga.stop().await;
}

// ------------------------------------------------------------------ payment failures

#[tokio::test]
async fn declined_card_cancels_the_order_with_the_reason() {
    let (env, saga) = Env::start(|_| {}).await;
    let order_id = env.place_card("tok_declined").await;
    env.wait_order(order_id, OrderStatus::Cancelled).await;
    let meta = env
        .cancelled_by_saga(order_id, "payment declined: card_declined")
        .await;
    assert_eq!(meta.actor.subject, "saga");
    // Nothing was authorized, so nothing is held.
    env.assert_history(
        order_id,
        &["OrderPlaced", "OrderCancelled"],
        &["PaymentDeclined"],
        NOTHING,
    )
    .await;
    saga.stop().await;
}

#[tokio::test]
async fn flaky_provider_is_retried_from_stored_attempts_until_authorized() {
    let (env, saga) = Env::start(|_| {}).await;
    let order_id = env.confirmed_card_order("tok_flaky_2").await;
    env.wait_payment(order_id, PaymentStatus::Authorized).await;
    // First attempt on OrderPlaced, then two stored retries; the second succeeded.
    env.wait_timers(
        "authorize_retry",
        order_id,
        &[(1, Some("retry_scheduled")), (2, Some("provider_answered"))],
    )
    .await;
    let (_, payments, _) = env.history(order_id).await;
    assert_eq!(payments, strings(&["PaymentAuthorized"]));
    saga.stop().await;
}

#[tokio::test]
async fn unavailable_provider_cancels_the_order_after_the_retry_limit() {
    let (env, saga) = Env::start(|c| c.payment_retry_limit = 2).await;
    let order_id = env.place_card("tok_unavailable").await;
    env.wait_order(order_id, OrderStatus::Cancelled).await;
    env.cancelled_by_saga(order_id, "payment provider unavailable after 3 attempts")
        .await;
    // The timer that cancelled is marked fired after its command committed:
    // wait for that mark instead of racing it.
    env.wait_timers(
        "authorize_retry",
        order_id,
        &[(1, Some("retry_scheduled")), (2, Some("order_cancelled"))],
    )
    .await;
    let (order, payments, _) = env.history(order_id).await;
    assert_eq!(order, strings(&["OrderPlaced", "OrderCancelled"]));
    assert!(
        payments.is_empty(),
        "no answer from the provider, no payment: {payments:?}"
    );
    saga.stop().await;
}

// ------------------------------------------------------------------ order ends early

#[tokio::test]
async fn restaurant_rejection_voids_the_authorization() {
    let (env, saga) = Env::start(|_| {}).await;
    let order_id = env.confirmed_card_order("tok_visa").await;
    let reject = RejectOrder {
        reason: "kitchen closed early".into(),
        now: Utc::now(),
    };
    env.order_cmd(restaurant(), order_id, reject.into()).await;
    env.wait_payment(order_id, PaymentStatus::Voided).await;
    env.assert_history(
        order_id,
        &["OrderPlaced", "OrderConfirmed", "OrderRejected"],
        VOIDED,
        NOTHING,
    )
    .await;
    saga.stop().await;
}

#[tokio::test]
async fn cancellations_release_the_money_and_the_delivery() {
    let (env, saga) = Env::start(|_| {}).await;
    // The customer cancels before the restaurant accepts.
    let by_customer = env.place_card("tok_visa").await;
    // Ops cancel after acceptance, with a rider already on the way.
    let by_ops = env.place_card("tok_visa").await;
    env.wait_order(by_customer, OrderStatus::Confirmed).await;
    let customer_id = env
        .order(by_customer)
        .await
        .customer_id()
        .expect("customer");
    let cancel = CancelOrder {
        reason: "changed my mind".into(),
        by: ActorRole::Customer,
        now: Utc::now(),
    };
    env.order_cmd(customer(customer_id), by_customer, cancel.into())
        .await;

    env.wait_order(by_ops, OrderStatus::Confirmed).await;
    env.accept(by_ops).await;
    env.rider_takes(by_ops, rider_n(3)).await;
    let cancel = CancelOrder {
        reason: "restaurant out of stock".into(),
        by: ActorRole::Ops,
        now: Utc::now(),
    };
    env.order_cmd(ops(), by_ops, cancel.into()).await;

    env.wait_payment(by_customer, PaymentStatus::Voided).await;
    env.wait_payment(by_ops, PaymentStatus::Voided).await;
    env.wait_delivery(by_ops, DeliveryStatus::Cancelled).await;
    env.assert_history(
        by_customer,
        &["OrderPlaced", "OrderConfirmed", "OrderCancelled"],
        VOIDED,
        NOTHING,
    )
    .await;
    env.assert_history(
        by_ops,
        &[
            "OrderPlaced",
            "OrderConfirmed",
            "OrderAccepted",
            "OrderCancelled",
        ],
        VOIDED,
        &["DeliveryRequested", "RiderAssigned", "DeliveryCancelled"],
    )
    .await;
    let (_, payload, _) = env
        .event(
            "Delivery",
            DeliveryId::for_order(by_ops),
            "DeliveryCancelled",
        )
        .await;
    assert_eq!(
        payload["reason"],
        "order cancelled: restaurant out of stock"
    );
    saga.stop().await;
}

#[tokio::test]
async fn failed_delivery_after_pickup_cancels_the_order_and_voids_the_payment() {
    let (env, saga) = Env::start(|_| {}).await;
    let order_id = env.confirmed_card_order("tok_visa").await;
    env.accept_and_pick_up(order_id, rider_n(4)).await;
    env.wait_order(order_id, OrderStatus::PickedUp).await;
    let fail = FailDelivery {
        reason: "customer not at the address".into(),
        now: Utc::now(),
    };
    env.delivery_cmd(ops(), order_id, fail.into()).await;

    env.wait_order(order_id, OrderStatus::Cancelled).await;
    env.wait_payment(order_id, PaymentStatus::Voided).await;
    env.cancelled_by_saga(order_id, "delivery failed: customer not at the address")
        .await;
    env.assert_history(
        order_id,
        &[
            "OrderPlaced",
            "OrderConfirmed",
            "OrderAccepted",
            "OrderPickedUp",
            "OrderCancelled",
        ],
        VOIDED,
        &[
            "DeliveryRequested",
            "RiderAssigned",
            "PickupConfirmed",
            "DeliveryFailed",
        ],
    )
    .await;
    saga.stop().await;
}

// ------------------------------------------------------------------ timeouts

#[tokio::test]
async fn order_not_accepted_in_time_is_cancelled_even_across_a_restart() {
    let (env, saga) = Env::start(|c| c.accept_timeout = Duration::from_secs(2)).await;
    let order_id = env.confirmed_card_order("tok_visa").await;
    // The timeout is stored: a saga restarted meanwhile still fires it.
    eventually("the accept timeout stored", WAIT, || async {
        (env.timers("accept_timeout", order_id).await == vec![(0, None)]).then_some(())
    })
    .await;
    saga.stop().await;
    let saga = env.start_saga();

    env.wait_order(order_id, OrderStatus::Cancelled).await;
    env.wait_payment(order_id, PaymentStatus::Voided).await;
    let meta = env
        .cancelled_by_saga(order_id, "not accepted by the restaurant within 2 s")
        .await;
    assert_eq!(meta.actor.subject, "saga");
    env.wait_timers("accept_timeout", order_id, &[(0, Some("order_cancelled"))])
        .await;
    let (_, payments, _) = env.history(order_id).await;
    assert_eq!(payments, strings(&["PaymentAuthorized", "PaymentVoided"]));
    saga.stop().await;
}

#[tokio::test]
async fn delivery_without_rider_in_time_is_flagged_for_ops_and_can_still_be_taken() {
    let (env, saga) = Env::start(|c| c.assign_timeout = Duration::from_secs(1)).await;
    let order_id = env.confirmed_card_order("tok_visa").await;
    env.accept(order_id).await;
    let delivery_id = DeliveryId::for_order(order_id);
    eventually("the delivery flagged", WAIT, || async {
        env.events_of("Delivery", delivery_id)
            .await
            .contains(&"DeliveryFlagged".to_owned())
            .then_some(())
    })
    .await;
    let (_, payload, meta) = env.event("Delivery", delivery_id, "DeliveryFlagged").await;
    assert_eq!(payload["reason"], "no rider assigned within 1 s");
    assert_eq!(meta.actor.role, ActorRole::System);
    let (delivery, _) = env
        .service
        .load_delivery(delivery_id)
        .await
        .expect("load")
        .expect("delivery");
    assert!(delivery.is_flagged());
    assert_eq!(delivery.status(), Some(DeliveryStatus::Requested));

    // A rider takes it late: the order still ends delivered and paid.
    env.assign(order_id, rider_n(5)).await;
    env.pick_up(order_id, rider_n(5)).await;
    env.wait_order(order_id, OrderStatus::PickedUp).await;
    env.complete(order_id, rider_n(5)).await;
    env.wait_order(order_id, OrderStatus::Delivered).await;
    env.wait_payment(order_id, PaymentStatus::Captured).await;
    env.wait_timers(
        "assign_timeout",
        delivery_id,
        &[(0, Some("delivery_flagged"))],
    )
    .await;
    saga.stop().await;
}

// ------------------------------------------------------------------ redelivery and crashes

#[tokio::test]
async fn redelivering_every_event_appends_nothing() {
    let (env, saga) = Env::start(|_| {}).await;
    let card = env.place_card("tok_visa").await;
    let cash = env.place(PaymentMethod::Cash).await;
    let declined = env.place_card("tok_declined").await;
    let rejected = env.place_card("tok_visa").await;
    env.wait_order(card, OrderStatus::Confirmed).await;
    env.wait_order(cash, OrderStatus::Confirmed).await;
    env.wait_order(rejected, OrderStatus::Confirmed).await;
    env.run_delivery(card, rider_n(1)).await;
    env.run_delivery(cash, rider_n(2)).await;
    let reject = RejectOrder {
        reason: "too busy".into(),
        now: Utc::now(),
    };
    env.order_cmd(restaurant(), rejected, reject.into()).await;
    env.wait_payment(card, PaymentStatus::Captured).await;
    env.wait_payment(cash, PaymentStatus::CashCollected).await;
    env.wait_order(declined, OrderStatus::Cancelled).await;
    env.wait_payment(rejected, PaymentStatus::Voided).await;
    env.wait_saga_caught_up().await;
    saga.stop().await;

    let before: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT event_id, event_type FROM events ORDER BY global_position")
            .fetch_all(&env.db.pool)
            .await
            .expect("events");
    sqlx::query("UPDATE projector_offsets SET next_offset = 0 WHERE projector = $1")
        .bind(saga::SAGA_CONSUMER)
        .execute(&env.db.pool)
        .await
        .expect("reset offsets");
    assert_eq!(env.saga_offsets_sum().await, 0);

    let saga = env.start_saga();
    env.wait_saga_caught_up().await;
    saga.stop().await;
    let after: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT event_id, event_type FROM events ORDER BY global_position")
            .fetch_all(&env.db.pool)
            .await
            .expect("events");
    assert_eq!(after, before, "re-consuming every event appended nothing");
}

#[tokio::test]
async fn killing_the_saga_mid_flow_changes_nothing_in_the_outcome() {
    let (env, saga) = Env::start(|_| {}).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(env.place_card("tok_visa").await);
    }
    orders.push(env.place(PaymentMethod::Cash).await);
    // Kill it as soon as it has made some progress: the other orders are
    // somewhere in between.
    env.wait_any_order(&orders, OrderStatus::Confirmed).await;
    saga.kill().await;

    let saga = env.start_saga();
    for order in &orders {
        env.wait_order(*order, OrderStatus::Confirmed).await;
        env.accept(*order).await;
    }
    for (n, order) in orders.iter().enumerate() {
        let rider_id = rider_n(n as u128 + 1);
        env.rider_takes(*order, rider_id).await;
        env.pick_up(*order, rider_id).await;
        env.wait_order(*order, OrderStatus::PickedUp).await;
        env.complete(*order, rider_id).await;
    }
    // Kill it again as soon as one order is delivered, before or after its
    // payment was taken.
    env.wait_any_order(&orders, OrderStatus::Delivered).await;
    saga.kill().await;

    let saga = env.start_saga();
    for order in &orders[..3] {
        env.wait_order(*order, OrderStatus::Delivered).await;
        env.wait_payment(*order, PaymentStatus::Captured).await;
        env.assert_history(*order, DELIVERED_ORDER, CAPTURED, COMPLETED_DELIVERY)
            .await;
    }
    let cash = orders[3];
    env.wait_order(cash, OrderStatus::Delivered).await;
    env.wait_payment(cash, PaymentStatus::CashCollected).await;
    env.assert_history(cash, DELIVERED_ORDER, CASH, COMPLETED_DELIVERY)
        .await;
    // Once everything is handled, nothing more appears.
    env.wait_saga_caught_up().await;
    let events = env.event_count().await;
    saga.stop().await;
    assert_eq!(env.event_count().await, events);
}

#[tokio::test]
async fn an_event_it_cannot_decode_stalls_the_saga_visibly_naming_it_and_is_never_skipped() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let (env, saga) = Env::start(|_| {}).await;
    // A message as a newer writer might publish it: a type this saga does
    // not know.
    let order_id = OrderId::new_random();
    let event_id = Uuid::new_v4();
    let envelope = serde_json::json!({
        "event_id": event_id,
        "aggregate_type": "Order",
        "aggregate_id": order_id.to_string(),
        "sequence": 1,
        "global_position": 1,
        "event_type": "OrderTeleported",
        "event_version": "1",
        "payload": {"type": "OrderTeleported"},
        "metadata": {
            "command_id": Uuid::new_v4(),
            "correlation_id": Uuid::new_v4(),
            "causation_id": Uuid::new_v4(),
            "actor": {"subject": "x", "role": "ops"},
            "request_id": "r"
        },
        "recorded_at": Utc::now(),
    });
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &env.saga_config.brokers)
        .create()
        .expect("producer");
    let topic = format!("{}.orders", env.saga_config.topic_prefix);
    let value = envelope.to_string();
    let key = order_id.to_string();
    producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(&value),
            Duration::from_secs(10),
        )
        .await
        .expect("produce");

    // The saga stays up but stalls on the event: its status names it, and
    // its position does not move past the message.
    let (state, stalled): (String, serde_json::Value) =
        eventually("the saga shows as stalled on the event", WAIT, || async {
            sqlx::query_as::<_, (String, Option<serde_json::Value>)>(
                "SELECT state, stalled_event FROM consumer_instances WHERE consumer = $1",
            )
            .bind(saga::SAGA_CONSUMER)
            .fetch_optional(&env.db.pool)
            .await
            .ok()
            .flatten()
            .and_then(|(state, event)| Some((state, event?)))
            .filter(|(state, _)| state == "stalled")
        })
        .await;
    assert_eq!(state, "stalled");
    assert_eq!(
        stalled["event_id"],
        serde_json::json!(event_id),
        "{stalled}"
    );
    assert_eq!(stalled["event_type"], "OrderTeleported", "{stalled}");
    assert!(
        stalled["origin"]
            .as_str()
            .is_some_and(|o| o.contains(&topic)),
        "{stalled}"
    );
    assert!(!saga.task.is_finished(), "the saga keeps running");
    let past: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM projector_offsets WHERE projector = $1 AND topic = $2 AND next_offset > 0",
    )
    .bind(saga::SAGA_CONSUMER)
    .bind(&topic)
    .fetch_one(&env.db.pool)
    .await
    .expect("offsets");
    assert_eq!(past, 0);
    saga.stop().await;
}

/// Issue 13: a customer's successful card retry after a decline is not
/// cancelled. The saga is down while the decline and the retry happen, so it
/// sees `PaymentDeclined` when the payment is already authorized: it must
/// look at the payment before cancelling.
#[tokio::test]
async fn a_successful_retry_after_a_decline_is_not_cancelled() {
    let (env, saga) = Env::start(|_| {}).await;
    saga.stop().await;
    let order_id = env
        .place(PaymentMethod::Card {
            payment_method_ref: ordertrail_schemas::privacy::payment_method_ref("tok_declined"),
        })
        .await;
    let order = env.order(order_id).await;
    let price = order.price().expect("price").total;
    let customer_actor = customer(order.customer_id().expect("customer"));
    let payment_id = PaymentId::for_order(order_id);
    for token in ["tok_declined", "tok_visa"] {
        let command = AuthorizePayment {
            payment_id,
            order_id,
            restaurant_id: order.restaurant_id().expect("restaurant"),
            amount: price,
            payment_method_ref: ordertrail_schemas::privacy::payment_method_ref(token),
            now: Utc::now(),
        };
        env.service
            .execute(
                &CommandContext::new(customer_actor.clone(), "req-retry"),
                payment_id,
                PaymentCommand::AuthorizePayment(command),
            )
            .await
            .expect("authorize");
    }
    let saga = env.start_saga();
    env.wait_order(order_id, OrderStatus::Confirmed).await;
    env.wait_saga_caught_up().await;
    let (order_events, payments, _) = env.history(order_id).await;
    assert_eq!(order_events, strings(&["OrderPlaced", "OrderConfirmed"]));
    assert_eq!(payments, strings(&["PaymentDeclined", "PaymentAuthorized"]));
    saga.stop().await;
}

/// Issue 13: business time is the time of the fact. The order is picked up
/// and delivered at the rider's pickup and completion times (which decide the
/// settlement day), not when the saga got to them.
#[tokio::test]
async fn pickup_and_delivery_times_are_the_riders_not_the_sagas() {
    let (env, saga) = Env::start(|_| {}).await;
    let order_id = env.place(PaymentMethod::Cash).await;
    env.wait_order(order_id, OrderStatus::Confirmed).await;
    env.run_delivery(order_id, rider_n(4)).await;
    env.wait_order(order_id, OrderStatus::Delivered).await;
    let delivery = DeliveryId::for_order(order_id);
    let (_, completed, _) = env.event("Delivery", delivery, "DeliveryCompleted").await;
    let (_, delivered, _) = env.event("Order", order_id, "OrderDelivered").await;
    assert_eq!(delivered["delivered_at"], completed["completed_at"]);
    let (_, pickup, _) = env.event("Delivery", delivery, "PickupConfirmed").await;
    let (_, picked_up, _) = env.event("Order", order_id, "OrderPickedUp").await;
    assert_eq!(picked_up["picked_up_at"], pickup["picked_up_at"]);
    saga.stop().await;
}

#[path = "saga_money.rs"]
mod money;
