//! Projection benchmark (see `bench/PROJECTIONS.md`): catch-up rate of each
//! projector from a backlog.
//!
//! A backlog of realistic envelopes (default 10,000 delivered card orders:
//! 6 order, 2 payment and 4 + `--reports` delivery events each) is produced
//! to fresh topics; then each projector is started from scratch on its own
//! fresh database and timed until its stored positions reach the end of its
//! topics. Events per second = messages on its topics / time.
//!
//! Runs against `DATABASE_URL` (fresh databases are created and dropped) and
//! `KAFKA_BROKERS`, or an in-process librdkafka mock cluster when unset.

use ordertrail_bench::{drop_database, fresh_database};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use ordertrail_projections::rider_etas::EtaSettings;
use ordertrail_projections::{ProjectorKind, RuntimeConfig};
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord, Producer};

use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL server (a role allowed to CREATE DATABASE).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Kafka bootstrap servers; an in-process mock cluster when unset.
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Orders in the backlog.
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// Rider location reports per delivery.
    #[arg(long, default_value_t = 4)]
    reports: usize,
    /// Partitions per topic. librdkafka's mock cluster keeps at most 5 MB
    /// per partition and drops the oldest records beyond that, so the
    /// default backlog needs 12 (checked after producing).
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Events per transaction.
    #[arg(long, default_value_t = 2_000)]
    batch_size: usize,
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::EUR)
}

fn metadata() -> EventMetadata {
    EventMetadata {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: Uuid::new_v4(),
        actor: Actor {
            subject: "bench".into(),
            role: ActorRole::System,
        },
        request_id: "bench".into(),
    }
}

struct Backlog {
    envelopes: Vec<EventEnvelope>,
    position: i64,
}

impl Backlog {
    fn push<E: serde::Serialize>(
        &mut self,
        kind: AggregateKind,
        id: Uuid,
        seq: &mut i64,
        (name, version): (&str, &str),
        event: &E,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        *seq += 1;
        self.position += 1;
        self.envelopes.push(EventEnvelope {
            event_id: Uuid::new_v4(),
            aggregate_type: kind,
            aggregate_id: id.to_string(),
            sequence: *seq,
            global_position: self.position,
            event_type: name.into(),
            event_version: version.into(),
            payload: serde_json::to_value(event)?,
            metadata: metadata(),
            recorded_at: at,
        });
        Ok(())
    }

    fn order(
        &mut self,
        id: OrderId,
        seq: &mut i64,
        e: impl Into<OrderEvent>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let e: OrderEvent = e.into();
        self.push(
            AggregateKind::Order,
            id.0,
            seq,
            (e.type_name(), e.version()),
            &e,
            at,
        )
    }

    fn payment(
        &mut self,
        id: PaymentId,
        seq: &mut i64,
        e: impl Into<PaymentEvent>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let e: PaymentEvent = e.into();
        self.push(
            AggregateKind::Payment,
            id.0,
            seq,
            (e.type_name(), e.version()),
            &e,
            at,
        )
    }

    fn delivery(
        &mut self,
        id: DeliveryId,
        seq: &mut i64,
        e: impl Into<DeliveryEvent>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let e: DeliveryEvent = e.into();
        self.push(
            AggregateKind::Delivery,
            id.0,
            seq,
            (e.type_name(), e.version()),
            &e,
            at,
        )
    }
}

/// One delivered card order with `reports` location fixes.
fn order(
    b: &mut Backlog,
    i: usize,
    reports: usize,
    restaurants: &[RestaurantId],
) -> anyhow::Result<()> {
    let m = chrono::Duration::minutes;
    let start = Utc
        .with_ymd_and_hms(2025, 1, 1, 8, 0, 0)
        .single()
        .context("start time")?;
    let placed = start + chrono::Duration::seconds(i as i64 * 3);
    let order = OrderId::new_random();
    let restaurant = restaurants[i % restaurants.len()];
    let pay = PaymentId::for_order(order);
    let del = DeliveryId::for_order(order);
    let rider = RiderId::new_random();
    let pickup = GeoPoint {
        lat: 52.52,
        lon: 13.405,
    };
    let dropoff = GeoPoint {
        lat: 52.53,
        lon: 13.43,
    };
    let total = 2_899 + 319 + 145 + 203 + 150;
    let (mut so, mut sp, mut sd) = (0, 0, 0);
    b.order(
        order,
        &mut so,
        OrderPlaced {
            order_id: order,
            customer_id: CustomerId::new_random(),
            restaurant_id: restaurant,
            restaurant_location: pickup,
            restaurant_time_zone: "Europe/Berlin".into(),
            lines: vec![OrderLine {
                menu_item_id: MenuItemId(Uuid::from_u128(1)),
                name: "Pizza".into(),
                unit_price: eur(2_899),
                quantity: 1,
                line_total: eur(2_899),
            }],
            delivery_address: DeliveryAddress {
                street: "Karl-Marx-Allee 1".into(),
                city: "Berlin".into(),
                postal_code: "10178".into(),
                location: dropoff,
            },
            payment_method: PaymentMethod::Card {
                payment_method_ref: "pm_0123456789abcdef0123456789abcdef".into(),
            },
            price: PriceBreakdown {
                subtotal: eur(2_899),
                delivery_fee: eur(319),
                service_fee: eur(145),
                tax: eur(203),
                tip: eur(150),
                total: eur(total),
                commission: eur(435),
            },
            placed_at: placed,
        },
        placed,
    )?;
    b.payment(
        pay,
        &mut sp,
        PaymentAuthorized {
            payment_id: pay,
            order_id: order,
            restaurant_id: restaurant,
            amount: eur(total),
            provider: "simulated".into(),
            provider_reference: "auth".into(),
            fee: eur(25),
            authorized_at: placed,
        },
        placed,
    )?;
    b.order(
        order,
        &mut so,
        OrderConfirmed {
            payment_id: Some(pay),
            confirmed_at: placed,
        },
        placed,
    )?;
    b.order(
        order,
        &mut so,
        OrderAccepted {
            preparation_minutes: 15,
            ready_by: placed + m(15),
            accepted_at: placed + m(1),
        },
        placed + m(1),
    )?;
    b.delivery(
        del,
        &mut sd,
        DeliveryRequested {
            delivery_id: del,
            order_id: order,
            restaurant_id: restaurant,
            pickup,
            dropoff,
            dropoff_code_hash: format!("hmac-sha256:{}", "0".repeat(64)),
            ready_by: Some(placed + m(15)),
            requested_at: placed + m(1),
        },
        placed + m(1),
    )?;
    b.delivery(
        del,
        &mut sd,
        RiderAssigned {
            rider_id: rider,
            assigned_at: placed + m(2),
        },
        placed + m(2),
    )?;
    for r in 0..reports {
        let at = placed + m(3) + chrono::Duration::seconds(r as i64 * 15);
        let location = GeoPoint {
            lat: 52.50 + r as f64 * 0.001,
            lon: 13.405,
        };
        b.delivery(
            del,
            &mut sd,
            RiderLocationReported {
                rider_id: rider,
                location,
                reported_at: at,
                accuracy_m: Some(8),
            },
            at,
        )?;
    }
    b.delivery(
        del,
        &mut sd,
        PickupConfirmed {
            rider_id: rider,
            picked_up_at: placed + m(16),
        },
        placed + m(16),
    )?;
    b.order(
        order,
        &mut so,
        OrderPickedUp {
            rider_id: rider,
            picked_up_at: placed + m(16),
        },
        placed + m(16),
    )?;
    b.delivery(
        del,
        &mut sd,
        DeliveryCompleted {
            rider_id: rider,
            completed_at: placed + m(30),
        },
        placed + m(30),
    )?;
    b.order(
        order,
        &mut so,
        OrderDelivered {
            delivered_at: placed + m(30),
        },
        placed + m(30),
    )?;
    b.payment(
        pay,
        &mut sp,
        PaymentCaptured {
            amount: eur(total),
            fee: eur(35),
            captured_at: placed + m(30),
            override_reason: None,
        },
        placed + m(30),
    )?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let prefix = format!("bench{}", &Uuid::new_v4().simple().to_string()[..8]);
    let topics = ordertrail_schemas::topics::all_topics(&prefix);
    let mock: Option<MockCluster<'static, DefaultProducerContext>>;
    let brokers = match &args.kafka_brokers {
        Some(b) if !b.is_empty() => {
            mock = None;
            let admin: rdkafka::admin::AdminClient<_> =
                ClientConfig::new().set("bootstrap.servers", b).create()?;
            let new: Vec<_> = topics
                .iter()
                .map(|t| {
                    rdkafka::admin::NewTopic::new(
                        t,
                        args.partitions,
                        rdkafka::admin::TopicReplication::Fixed(1),
                    )
                })
                .collect();
            admin
                .create_topics(&new, &rdkafka::admin::AdminOptions::new())
                .await?;
            b.clone()
        }
        _ => {
            let m = MockCluster::new(3)?;
            for t in &topics {
                m.create_topic(t, args.partitions, 1)?;
            }
            let b = m.bootstrap_servers();
            mock = Some(m);
            b
        }
    };

    // The backlog.
    let restaurants: Vec<RestaurantId> = (0..50).map(|_| RestaurantId::new_random()).collect();
    let mut backlog = Backlog {
        envelopes: Vec::new(),
        position: 0,
    };
    for i in 0..args.orders {
        order(&mut backlog, i, args.reports, &restaurants)?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        // One request in flight per broker: the backlog must keep each
        // aggregate's order, as the relay guarantees.
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let started = Instant::now();
    let mut counts = std::collections::HashMap::new();
    let mut pending = Vec::with_capacity(backlog.envelopes.len());
    for e in &backlog.envelopes {
        let topic = ordertrail_schemas::topics::topic_for(&prefix, e.aggregate_type);
        let value = serde_json::to_vec(e)?;
        *counts.entry(e.aggregate_type).or_insert(0i64) += 1;
        let record = FutureRecord::to(&topic)
            .key(&e.aggregate_id)
            .payload(&value);
        let delivery = producer
            .send_result(record)
            .map_err(|(err, _)| err)
            .context("enqueue")?;
        pending.push(delivery);
    }
    for p in pending {
        if let Err((e, _)) = p.await? {
            bail!("produce failed: {e}");
        }
    }
    // A broker that already dropped the start of a partition (retention; the
    // mock cluster's 5 MB per partition) would make every projector stop at
    // the first sequence gap, rightly: fail here instead, saying why.
    for kind in AggregateKind::ALL {
        let topic = ordertrail_schemas::topics::topic_for(&prefix, kind);
        for partition in 0..args.partitions {
            let (low, _) = producer
                .client()
                .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                .with_context(|| format!("watermarks of {topic} [{partition}]"))?;
            if low > 0 {
                bail!(
                    "{topic} [{partition}] starts at offset {low}: the broker dropped the start of the backlog \
                     (the mock cluster keeps 5 MB per partition); use more --partitions or fewer --orders"
                );
            }
        }
    }
    println!(
        "backlog: {} orders, {} events produced in {:.1}s (orders {}, payments {}, deliveries {})",
        args.orders,
        backlog.envelopes.len(),
        started.elapsed().as_secs_f64(),
        counts.get(&AggregateKind::Order).copied().unwrap_or(0),
        counts.get(&AggregateKind::Payment).copied().unwrap_or(0),
        counts.get(&AggregateKind::Delivery).copied().unwrap_or(0),
    );

    for kind in [
        ProjectorKind::OrderHistory,
        ProjectorKind::RiderEtas(EtaSettings::default()),
        ProjectorKind::Settlements,
    ] {
        let kinds: &[AggregateKind] = match kind {
            ProjectorKind::OrderHistory => &AggregateKind::ALL,
            ProjectorKind::RiderEtas(_) => &[AggregateKind::Delivery],
            ProjectorKind::Settlements => &[AggregateKind::Order, AggregateKind::Payment],
        };
        let expected: i64 = kinds
            .iter()
            .map(|k| counts.get(k).copied().unwrap_or(0))
            .sum();
        let name = kind.name();
        let (db_name, _url, pool) = fresh_database(&args.database_url, 4, false).await?;
        let mut config = RuntimeConfig::new(&brokers, &prefix, format!("bench-{name}-{db_name}"));
        config.batch_size = args.batch_size;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let task = tokio::spawn(ordertrail_projections::run(
            kind,
            config,
            pool.clone(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let mut first_event = None;
        loop {
            let done: Option<i64> = sqlx::query_scalar(
                "SELECT sum(next_offset)::bigint FROM projector_offsets WHERE projector = $1",
            )
            .bind(name)
            .fetch_one(&pool)
            .await?;
            let done = done.unwrap_or(0);
            if done > 0 && first_event.is_none() {
                first_event = Some(started.elapsed());
            }
            if done >= expected {
                break;
            }
            if task.is_finished() {
                let result = task.await?;
                bail!("projector {name} stopped early: {result:?}");
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("projector {name} did not catch up in 10 minutes ({done}/{expected})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        let _ = stop_tx.send(());
        task.await??;
        let warm = first_event.map(|f| took.saturating_sub(f)).unwrap_or(took);
        println!(
            "{name:>14}: {expected} events in {:.2}s = {:.0} events/s from start ({:.0} events/s after the first batch; group join {:.2}s)",
            took.as_secs_f64(),
            expected as f64 / took.as_secs_f64(),
            expected as f64 / warm.as_secs_f64().max(1e-3),
            first_event.map(|f| f.as_secs_f64()).unwrap_or(0.0),
        );
        pool.close().await;
        drop_database(&args.database_url, &db_name).await?;
    }
    drop(mock);
    Ok(())
}
