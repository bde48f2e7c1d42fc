//! Scripted events, a Kafka producer and in-process projectors for the tests.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ordertrail_projections::{ProjectorKind, RuntimeConfig, RuntimeError};
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use ordertrail_testkit::eventually;
use ordertrail_testkit::kafka::TestKafka;
use ordertrail_testkit::pg::TestDatabase;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub(crate) const PARTITIONS: i32 = 3;

pub(crate) struct Env {
    pub db: TestDatabase,
    pub kafka: TestKafka,
    pub producer: FutureProducer,
    /// Messages produced per topic.
    pub produced: HashMap<String, i64>,
}

impl Env {
    pub(crate) async fn start() -> Self {
        ordertrail_testkit::init_test_logging();
        let db = TestDatabase::new().await;
        let kafka = TestKafka::start();
        let topics = topics::all_topics(&kafka.prefix);
        if kafka.is_mock() {
            kafka.create_topics(&topics, PARTITIONS);
        } else {
            let admin: AdminClient<_> = ClientConfig::new()
                .set("bootstrap.servers", &kafka.bootstrap)
                .create()
                .expect("admin client");
            let new: Vec<NewTopic<'_>> = topics
                .iter()
                .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
                .collect();
            admin
                .create_topics(&new, &AdminOptions::new())
                .await
                .expect("create topics");
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        Self {
            db,
            kafka,
            producer,
            produced: HashMap::new(),
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    pub(crate) fn config(&self, group: &str) -> RuntimeConfig {
        let mut c = RuntimeConfig::new(&self.kafka.bootstrap, &self.kafka.prefix, group);
        c.batch_size = 50;
        c
    }

    /// Produce envelopes in order (each to its aggregate's topic, keyed by id).
    pub(crate) async fn produce(&mut self, envelopes: &[EventEnvelope]) {
        for e in envelopes {
            let topic = topics::topic_for(&self.kafka.prefix, e.aggregate_type);
            let value = serde_json::to_vec(e).expect("serialize envelope");
            self.producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&e.aggregate_id)
                        .payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(err, _)| err)
                .expect("produce");
            *self.produced.entry(topic).or_default() += 1;
        }
    }

    /// Produce a raw value (for poison-message tests).
    pub(crate) async fn produce_raw(&mut self, kind: AggregateKind, key: &str, value: &[u8]) {
        let topic = topics::topic_for(&self.kafka.prefix, kind);
        self.producer
            .send(
                FutureRecord::to(&topic).key(key).payload(value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)
            .expect("produce");
        *self.produced.entry(topic).or_default() += 1;
    }

    /// Messages produced on the topics a projector reads.
    pub(crate) fn produced_for(&self, kinds: &[AggregateKind]) -> i64 {
        kinds
            .iter()
            .map(|k| {
                self.produced
                    .get(&topics::topic_for(&self.kafka.prefix, *k))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// `kind` running in-process in consumer group `group`, on this database.
    pub(crate) fn spawn(&self, kind: ProjectorKind, group: &str) -> Running {
        Running::spawn(kind, self.config(group), self.pool().clone())
    }

    /// `kind` running in consumer group `group`, once it has consumed
    /// everything produced on the topics it reads.
    pub(crate) async fn spawn_caught_up(&self, kind: ProjectorKind, group: &str) -> Running {
        let (name, kinds) = (kind.name(), topics_read_by(&kind));
        let running = self.spawn(kind, group);
        self.caught_up(name, kinds).await;
        running
    }

    /// Run `kind` in consumer group `group` until it has consumed everything
    /// produced on its topics, then stop it.
    pub(crate) async fn project(&self, kind: ProjectorKind, group: &str) {
        self.spawn_caught_up(kind, group).await.stop().await;
    }

    /// Wait until `projector` has consumed everything produced on its topics.
    pub(crate) async fn caught_up(&self, projector: &str, kinds: &[AggregateKind]) {
        let expected = self.produced_for(kinds);
        let pool = self.pool().clone();
        eventually(
            &format!("{projector} to consume {expected} messages"),
            Duration::from_secs(60),
            || {
                let pool = pool.clone();
                async move {
                    let n: Option<i64> = sqlx::query_scalar(
                        "SELECT sum(next_offset)::bigint FROM projector_offsets WHERE projector = $1",
                    )
                    .bind(projector)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                    (n == Some(expected)).then_some(())
                }
            },
        )
        .await;
    }
}

/// The aggregates whose topics a projector reads.
pub(crate) fn topics_read_by(kind: &ProjectorKind) -> &'static [AggregateKind] {
    match kind {
        ProjectorKind::OrderHistory => &AggregateKind::ALL,
        ProjectorKind::RiderEtas(_) => &[AggregateKind::Delivery],
        ProjectorKind::Settlements => &[AggregateKind::Order, AggregateKind::Payment],
    }
}

/// Append envelopes to the event store as the command service would have
/// (their event ids, global positions, versions and commit times kept), one
/// transaction. The tests produce straight to Kafka; where the store matters
/// too (the order detail reads each timeline entry's event from it,
/// reconciliation reads the store) they put the same events here.
pub(crate) async fn store_events(pool: &PgPool, envelopes: &[EventEnvelope]) {
    let column = |f: fn(&EventEnvelope) -> String| envelopes.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, event_id, recorded_at, global_position)
         OVERRIDING SYSTEM VALUE
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                              $6::jsonb[], $7::jsonb[], $8::uuid[], $9::timestamptz[],
                              $10::bigint[])",
    )
    .bind(column(|e| e.aggregate_type.as_str().to_owned()))
    .bind(column(|e| e.aggregate_id.clone()))
    .bind(envelopes.iter().map(|e| e.sequence).collect::<Vec<_>>())
    .bind(column(|e| e.event_type.clone()))
    .bind(column(|e| e.event_version.clone()))
    .bind(
        envelopes
            .iter()
            .map(|e| sqlx::types::Json(&e.payload))
            .collect::<Vec<_>>(),
    )
    .bind(
        envelopes
            .iter()
            .map(|e| sqlx::types::Json(e.metadata.to_map()))
            .collect::<Vec<_>>(),
    )
    .bind(envelopes.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(envelopes.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
    .bind(
        envelopes
            .iter()
            .map(|e| e.global_position)
            .collect::<Vec<_>>(),
    )
    .execute(pool)
    .await
    .expect("append events");
    // Later appends continue after the scripted positions.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('events', 'global_position'),
                       (SELECT max(global_position) FROM events))",
    )
    .execute(pool)
    .await
    .expect("advance the position sequence");
}

/// A projector running in-process until stopped.
pub(crate) struct Running {
    stop: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<Result<(), RuntimeError>>,
}

impl Running {
    pub(crate) fn spawn(kind: ProjectorKind, config: RuntimeConfig, pool: PgPool) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(ordertrail_projections::run(
            kind,
            config,
            pool,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            stop: Some(stop),
            handle,
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.handle
            .await
            .expect("projector task")
            .expect("projector ran cleanly");
    }
}

pub(crate) const EUR: Currency = Currency::EUR;

pub(crate) fn eur(amount: i64) -> Money {
    Money::new(amount, EUR)
}

pub(crate) fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid time")
}

/// Builds envelopes with per-aggregate sequences and a global position.
#[derive(Default)]
pub(crate) struct Script {
    sequences: HashMap<String, i64>,
    position: i64,
    pub envelopes: Vec<EventEnvelope>,
}

pub(crate) fn metadata(role: ActorRole) -> EventMetadata {
    EventMetadata {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: Uuid::new_v4(),
        actor: Actor {
            subject: "tester".into(),
            role,
        },
        request_id: "req-test".into(),
    }
}

/// `$method(id, event, at)` appends one event of the `$kind` aggregate `id`,
/// recorded at `at`.
macro_rules! script_appends {
    ($method:ident, $id:ty, $event:ty, $kind:expr) => {
        pub(crate) fn $method(
            &mut self,
            id: $id,
            ev: impl Into<$event>,
            at: DateTime<Utc>,
        ) -> EventEnvelope {
            let ev: $event = ev.into();
            let payload = serde_json::to_value(&ev).expect("payload");
            self.push($kind, id.0, ev.type_name(), ev.version(), payload, at)
        }
    };
}

impl Script {
    fn push(
        &mut self,
        kind: AggregateKind,
        id: Uuid,
        event_type: &str,
        event_version: &str,
        payload: serde_json::Value,
        recorded_at: DateTime<Utc>,
    ) -> EventEnvelope {
        let key = format!("{kind}:{id}");
        let seq = self.sequences.entry(key).or_default();
        *seq += 1;
        self.position += 1;
        let env = EventEnvelope {
            event_id: Uuid::new_v4(),
            aggregate_type: kind,
            aggregate_id: id.to_string(),
            sequence: *seq,
            global_position: self.position,
            event_type: event_type.into(),
            event_version: event_version.into(),
            payload,
            metadata: metadata(ActorRole::Ops),
            recorded_at,
        };
        self.envelopes.push(env.clone());
        env
    }

    script_appends!(order, OrderId, OrderEvent, AggregateKind::Order);
    script_appends!(payment, PaymentId, PaymentEvent, AggregateKind::Payment);
    script_appends!(delivery, DeliveryId, DeliveryEvent, AggregateKind::Delivery);

    /// `spec`'s payment for its total authorized at `at` by the simulated
    /// provider, under `provider_reference` and for a fee of `fee_minor`.
    pub(crate) fn authorized(
        &mut self,
        spec: &OrderSpec,
        provider_reference: String,
        fee_minor: i64,
        at: DateTime<Utc>,
    ) {
        let authorized = PaymentAuthorized {
            payment_id: spec.payment_id(),
            order_id: spec.order,
            restaurant_id: spec.restaurant,
            amount: eur(spec.total()),
            provider: "simulated".into(),
            provider_reference,
            fee: eur(fee_minor),
            authorized_at: at,
        };
        self.payment(spec.payment_id(), authorized, at);
    }

    /// `order` cancelled by `by` for `reason` at `at`.
    pub(crate) fn order_cancelled(
        &mut self,
        order: OrderId,
        reason: &str,
        by: ActorRole,
        at: DateTime<Utc>,
    ) {
        let cancelled = OrderCancelled {
            reason: reason.into(),
            cancelled_by: by,
            cancelled_at: at,
        };
        self.order(order, cancelled, at);
    }

    /// A cash order placed and confirmed at `placed`, delivered at
    /// `delivered` (its cash collection is the caller's).
    pub(crate) fn delivered_cash_order(
        &mut self,
        spec: &OrderSpec,
        placed: DateTime<Utc>,
        delivered: DateTime<Utc>,
    ) {
        self.order(spec.order, spec.placed(placed), placed);
        let confirmed = OrderConfirmed {
            payment_id: None,
            confirmed_at: placed,
        };
        self.order(spec.order, confirmed, placed);
        let delivered_event = OrderDelivered {
            delivered_at: delivered,
        };
        self.order(spec.order, delivered_event, delivered);
    }

    /// The full happy path of a card order placed at `placed`, delivered by
    /// `rider` at `delivered`.
    pub(crate) fn delivered_card_order(
        &mut self,
        spec: &OrderSpec,
        rider: RiderId,
        placed: DateTime<Utc>,
        delivered: DateTime<Utc>,
    ) {
        let m = chrono::Duration::minutes;
        let pay = spec.payment_id();
        let del = spec.delivery_id();
        self.order(spec.order, spec.placed(placed), placed);
        self.authorized(spec, "auth-1".into(), 25, placed + m(1));
        self.order(
            spec.order,
            OrderConfirmed {
                payment_id: Some(pay),
                confirmed_at: placed + m(1),
            },
            placed + m(1),
        );
        self.order(
            spec.order,
            OrderAccepted {
                preparation_minutes: 15,
                ready_by: placed + m(17),
                accepted_at: placed + m(2),
            },
            placed + m(2),
        );
        self.delivery_requested(
            spec.order,
            spec.restaurant,
            Some(placed + m(17)),
            placed + m(2),
        );
        self.rider_assigned(del, rider, placed + m(3));
        self.order(
            spec.order,
            OrderReadyForPickup {
                ready_at: placed + m(17),
            },
            placed + m(17),
        );
        self.delivery(
            del,
            PickupConfirmed {
                rider_id: rider,
                picked_up_at: placed + m(18),
            },
            placed + m(18),
        );
        self.order(
            spec.order,
            OrderPickedUp {
                rider_id: rider,
                picked_up_at: placed + m(18),
            },
            placed + m(18),
        );
        self.delivery(
            del,
            DeliveryCompleted {
                rider_id: rider,
                completed_at: delivered,
            },
            delivered,
        );
        self.order(
            spec.order,
            OrderDelivered {
                delivered_at: delivered,
            },
            delivered,
        );
        self.payment(
            pay,
            PaymentCaptured {
                amount: eur(spec.total()),
                fee: eur(35),
                captured_at: delivered,
                override_reason: None,
            },
            delivered,
        );
    }

    /// The delivery of `order` requested at `at`, from [`BERLIN_RESTAURANT`]
    /// to [`BERLIN_DROPOFF`].
    pub(crate) fn delivery_requested(
        &mut self,
        order: OrderId,
        restaurant: RestaurantId,
        ready_by: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) {
        let delivery_id = DeliveryId::for_order(order);
        let requested = DeliveryRequested {
            delivery_id,
            order_id: order,
            restaurant_id: restaurant,
            pickup: BERLIN_RESTAURANT,
            dropoff: BERLIN_DROPOFF,
            dropoff_code_hash: placeholder_code_hash(),
            ready_by,
            requested_at: at,
        };
        self.delivery(delivery_id, requested, at);
    }

    /// `rider` of `delivery` reported at `location` at `at`.
    pub(crate) fn rider_reported(
        &mut self,
        delivery: DeliveryId,
        rider: RiderId,
        location: GeoPoint,
        accuracy_m: Option<u32>,
        at: DateTime<Utc>,
    ) {
        let reported = RiderLocationReported {
            rider_id: rider,
            location,
            reported_at: at,
            accuracy_m,
        };
        self.delivery(delivery, reported, at);
    }

    /// `rider` assigned to `delivery` at `at`.
    pub(crate) fn rider_assigned(
        &mut self,
        delivery: DeliveryId,
        rider: RiderId,
        at: DateTime<Utc>,
    ) {
        let assigned = RiderAssigned {
            rider_id: rider,
            assigned_at: at,
        };
        self.delivery(delivery, assigned, at);
    }
}

/// A drop-off code hash of the right shape (the projectors never check it).
pub(crate) fn placeholder_code_hash() -> String {
    format!("hmac-sha256:{}", "0".repeat(64))
}

pub(crate) const BERLIN_RESTAURANT: GeoPoint = GeoPoint {
    lat: 52.5200,
    lon: 13.4050,
};

/// Where the scripted deliveries drop off.
pub(crate) const BERLIN_DROPOFF: GeoPoint = GeoPoint {
    lat: 52.5300,
    lon: 13.4300,
};

/// An order as the command side prices it: 2 × 12.50 + 1 × 3.99, delivery
/// fee 3.19, service fee 1.45, tax 2.03 (7 %), commission 4.35 (15 %).
pub(crate) struct OrderSpec {
    pub order: OrderId,
    pub customer: CustomerId,
    pub restaurant: RestaurantId,
    pub time_zone: &'static str,
    pub tip: i64,
    pub cash: bool,
}

impl OrderSpec {
    pub(crate) fn new(
        restaurant: RestaurantId,
        customer: CustomerId,
        time_zone: &'static str,
    ) -> Self {
        Self {
            order: OrderId::new_random(),
            customer,
            restaurant,
            time_zone,
            tip: 150,
            cash: false,
        }
    }

    pub(crate) fn price(&self) -> PriceBreakdown {
        let subtotal = 2_899;
        let (delivery_fee, service_fee, tax, commission) = (319, 145, 203, 435);
        PriceBreakdown {
            subtotal: eur(subtotal),
            delivery_fee: eur(delivery_fee),
            service_fee: eur(service_fee),
            tax: eur(tax),
            tip: eur(self.tip),
            total: eur(subtotal + delivery_fee + service_fee + tax + self.tip),
            commission: eur(commission),
        }
    }

    pub(crate) fn total(&self) -> i64 {
        self.price().total.amount
    }

    pub(crate) fn placed(&self, placed_at: DateTime<Utc>) -> OrderPlaced {
        OrderPlaced {
            order_id: self.order,
            customer_id: self.customer,
            restaurant_id: self.restaurant,
            restaurant_location: BERLIN_RESTAURANT,
            restaurant_time_zone: self.time_zone.into(),
            lines: vec![
                OrderLine {
                    menu_item_id: MenuItemId(Uuid::from_u128(1)),
                    name: "Pizza".into(),
                    unit_price: eur(1_250),
                    quantity: 2,
                    line_total: eur(2_500),
                },
                OrderLine {
                    menu_item_id: MenuItemId(Uuid::from_u128(2)),
                    name: "Lemonade".into(),
                    unit_price: eur(399),
                    quantity: 1,
                    line_total: eur(399),
                },
            ],
            delivery_address: DeliveryAddress {
                street: "Karl-Marx-Allee 1".into(),
                city: "Berlin".into(),
                postal_code: "10178".into(),
                location: GeoPoint {
                    lat: 52.5300,
                    lon: 13.4300,
                },
            },
            payment_method: if self.cash {
                PaymentMethod::Cash
            } else {
                PaymentMethod::Card {
                    payment_method_ref: ordertrail_schemas::privacy::payment_method_ref("tok_visa"),
                }
            },
            price: self.price(),
            placed_at,
        }
    }

    pub(crate) fn payment_id(&self) -> PaymentId {
        PaymentId::for_order(self.order)
    }

    pub(crate) fn delivery_id(&self) -> DeliveryId {
        DeliveryId::for_order(self.order)
    }
}
