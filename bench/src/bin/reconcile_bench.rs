//! Reconciliation benchmark (issue 11): one business day of `--orders`
//! (default 100,000) delivered card orders with their payments, reconciled
//! against the settlement read model and the simulated provider's statement.
//!
//! Set-up (not timed): a fresh database; per order the events of its whole
//! life (order placed, confirmed, accepted, picked up, delivered; payment
//! authorized and captured, every 20th refunded in part; delivery requested,
//! assigned, picked up, completed) appended to `events`, and the provider's
//! own ledger rows; then the settlement projector's `apply` builds the read
//! model from the order and payment events in batches, as the runtime would.
//!
//! Timed: exporting the statement (CSV) and parsing it back, and
//! `reconcile` (settlements recomputed from the events in SQL and compared,
//! ledger compared with the statement). Prints the figures and the summary.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use clap::Parser;
use cqrs_es::DomainEvent;
use ordertrail_bench::{drop_database, fresh_database};
use ordertrail_projections::reconcile::{self, StatementLine, statement};
use ordertrail_projections::runtime::{Origin, Projector, SourcedEvent};
use ordertrail_projections::settlements::Settlements;
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL server (a role allowed to CREATE DATABASE).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Orders in the day.
    #[arg(long, default_value_t = 100_000)]
    orders: usize,
    /// Restaurants the orders are spread over.
    #[arg(long, default_value_t = 50)]
    restaurants: usize,
    /// Keep the database afterwards (its name is printed).
    #[arg(long)]
    keep: bool,
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::EUR)
}

struct Row {
    kind: AggregateKind,
    id: String,
    seq: i64,
    event_type: String,
    payload: serde_json::Value,
}

struct Day {
    rows: Vec<Row>,
    /// The provider's own record of what it did.
    ledger: Vec<StatementLine>,
}

impl Day {
    fn push<E: Into<T>, T: serde::Serialize + DomainEvent>(
        &mut self,
        kind: AggregateKind,
        id: Uuid,
        seq: &mut i64,
        e: E,
    ) -> anyhow::Result<()> {
        *seq += 1;
        let e: T = e.into();
        self.rows.push(Row {
            kind,
            id: id.to_string(),
            seq: *seq,
            event_type: e.event_type(),
            payload: serde_json::to_value(&e)?,
        });
        Ok(())
    }
}

fn line(
    operation: &str,
    provider_reference: String,
    payment_id: String,
    amount_minor: i64,
    fee_minor: i64,
    occurred_at: DateTime<Utc>,
) -> StatementLine {
    StatementLine {
        operation: operation.to_owned(),
        provider_reference,
        payment_id,
        amount_minor,
        currency: "EUR".to_owned(),
        fee_minor,
        occurred_at,
    }
}

fn generate(orders: usize, restaurants: &[RestaurantId], day: NaiveDate) -> anyhow::Result<Day> {
    let mut d = Day {
        rows: Vec::with_capacity(orders * 12),
        ledger: Vec::with_capacity(orders * 2),
    };
    let start = Utc.from_utc_datetime(&day.and_hms_opt(6, 0, 0).context("start")?);
    // 06:00–19:00 UTC keeps every order in one Berlin business day.
    let step_ms = (13 * 3_600_000 / orders.max(1)) as i64;
    let m = Duration::minutes;
    for i in 0..orders {
        let placed = start + Duration::milliseconds(step_ms * i as i64);
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
        let tip = (i % 4) as i64 * 50;
        let subtotal = 1_500 + (i % 37) as i64 * 50;
        let (delivery_fee, service_fee) = (319, subtotal / 20);
        let tax = subtotal * 7 / 100;
        let commission = subtotal * 15 / 100;
        let total = subtotal + delivery_fee + service_fee + tax + tip;
        let (mut so, mut sp, mut sd) = (0, 0, 0);
        let o = AggregateKind::Order;
        let p = AggregateKind::Payment;
        let dk = AggregateKind::Delivery;
        d.push::<_, OrderEvent>(
            o,
            order.0,
            &mut so,
            OrderPlaced {
                order_id: order,
                customer_id: CustomerId::new_random(),
                restaurant_id: restaurant,
                restaurant_location: pickup,
                restaurant_time_zone: "Europe/Berlin".into(),
                lines: vec![OrderLine {
                    menu_item_id: MenuItemId(Uuid::from_u128(1)),
                    name: "Burger".into(),
                    unit_price: eur(subtotal),
                    quantity: 1,
                    line_total: eur(subtotal),
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
                    subtotal: eur(subtotal),
                    delivery_fee: eur(delivery_fee),
                    service_fee: eur(service_fee),
                    tax: eur(tax),
                    tip: eur(tip),
                    total: eur(total),
                    commission: eur(commission),
                },
                placed_at: placed,
            },
        )?;
        let reference = format!("sim_auth_{pay}");
        d.push::<_, PaymentEvent>(
            p,
            pay.0,
            &mut sp,
            PaymentAuthorized {
                payment_id: pay,
                order_id: order,
                restaurant_id: restaurant,
                amount: eur(total),
                provider: "simulated".into(),
                provider_reference: reference.clone(),
                fee: eur(0),
                authorized_at: placed,
            },
        )?;
        d.ledger.push(line(
            "authorization",
            reference.clone(),
            pay.to_string(),
            total,
            0,
            placed,
        ));
        d.push::<_, OrderEvent>(
            o,
            order.0,
            &mut so,
            OrderConfirmed {
                payment_id: Some(pay),
                confirmed_at: placed,
            },
        )?;
        d.push::<_, OrderEvent>(
            o,
            order.0,
            &mut so,
            OrderAccepted {
                preparation_minutes: 15,
                ready_by: placed + m(16),
                accepted_at: placed + m(1),
            },
        )?;
        d.push::<_, DeliveryEvent>(
            dk,
            del.0,
            &mut sd,
            DeliveryRequested {
                delivery_id: del,
                order_id: order,
                restaurant_id: restaurant,
                pickup,
                dropoff,
                dropoff_code_hash: format!("hmac-sha256:{}", "0".repeat(64)),
                ready_by: Some(placed + m(16)),
                requested_at: placed + m(1),
            },
        )?;
        d.push::<_, DeliveryEvent>(
            dk,
            del.0,
            &mut sd,
            RiderAssigned {
                rider_id: rider,
                assigned_at: placed + m(2),
            },
        )?;
        d.push::<_, DeliveryEvent>(
            dk,
            del.0,
            &mut sd,
            PickupConfirmed {
                rider_id: rider,
                picked_up_at: placed + m(17),
            },
        )?;
        d.push::<_, OrderEvent>(
            o,
            order.0,
            &mut so,
            OrderPickedUp {
                rider_id: rider,
                picked_up_at: placed + m(17),
            },
        )?;
        let delivered = placed + m(35);
        d.push::<_, DeliveryEvent>(
            dk,
            del.0,
            &mut sd,
            DeliveryCompleted {
                rider_id: rider,
                completed_at: delivered,
            },
        )?;
        d.push::<_, OrderEvent>(
            o,
            order.0,
            &mut so,
            OrderDelivered {
                delivered_at: delivered,
            },
        )?;
        let fee = (total * 140 + 5_000) / 10_000 + 25;
        d.push::<_, PaymentEvent>(
            p,
            pay.0,
            &mut sp,
            PaymentCaptured {
                amount: eur(total),
                fee: eur(fee),
                captured_at: delivered,
                override_reason: None,
            },
        )?;
        d.ledger.push(line(
            "capture",
            reference.clone(),
            pay.to_string(),
            total,
            fee,
            delivered,
        ));
        if i % 20 == 0 {
            let refund_ref = format!("sim_refund_{pay}_refund_1");
            let at = delivered + m(30);
            d.push::<_, PaymentEvent>(
                p,
                pay.0,
                &mut sp,
                PaymentRefunded {
                    amount: eur(500),
                    fee: eur(0),
                    reason: "cold fries".into(),
                    provider_reference: refund_ref.clone(),
                    refunded_at: at,
                    allocation: None,
                },
            )?;
            d.ledger
                .push(line("refund", refund_ref, pay.to_string(), 500, 0, at));
        }
    }
    Ok(d)
}

async fn append(pool: &PgPool, rows: &[Row]) -> anyhow::Result<()> {
    let metadata = serde_json::to_string(
        &EventMetadata {
            command_id: Uuid::nil(),
            correlation_id: Uuid::nil(),
            causation_id: Uuid::nil(),
            actor: Actor {
                subject: "bench".into(),
                role: ActorRole::System,
            },
            request_id: "bench".into(),
        }
        .to_map(),
    )?;
    for chunk in rows.chunks(10_000) {
        let kinds: Vec<&str> = chunk.iter().map(|r| r.kind.as_str()).collect();
        let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
        let seqs: Vec<i64> = chunk.iter().map(|r| r.seq).collect();
        let types: Vec<&str> = chunk.iter().map(|r| r.event_type.as_str()).collect();
        let payloads: Vec<String> = chunk.iter().map(|r| r.payload.to_string()).collect();
        // Each event its own command id (the command_log trigger needs one per append).
        let commands: Vec<Uuid> = chunk.iter().map(|_| Uuid::new_v4()).collect();
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT k, i, s, t, '1', p::json, (($6::jsonb) || jsonb_build_object('command_id', c::text))::json
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $7::uuid[]) AS x(k, i, s, t, p, c)",
        )
        .bind(&kinds)
        .bind(&ids)
        .bind(&seqs)
        .bind(&types)
        .bind(&payloads)
        .bind(&metadata)
        .bind(&commands)
        .execute(pool)
        .await?;
    }
    Ok(())
}

async fn ledger(pool: &PgPool, day: &Day) -> anyhow::Result<()> {
    for chunk in day.ledger.chunks(20_000) {
        let ops: Vec<&str> = chunk.iter().map(|l| l.operation.as_str()).collect();
        let refs: Vec<&str> = chunk
            .iter()
            .map(|l| l.provider_reference.as_str())
            .collect();
        let pays: Vec<&str> = chunk.iter().map(|l| l.payment_id.as_str()).collect();
        let amounts: Vec<i64> = chunk.iter().map(|l| l.amount_minor).collect();
        let fees: Vec<i64> = chunk.iter().map(|l| l.fee_minor).collect();
        let ats: Vec<DateTime<Utc>> = chunk.iter().map(|l| l.occurred_at).collect();
        sqlx::query(
            "INSERT INTO simulated_provider_operations
               (operation, provider_reference, payment_id, amount_minor, currency, fee_minor, occurred_at)
             SELECT o, r, p, a, 'EUR', f, t
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[]) AS x(o, r, p, a, f, t)",
        )
        .bind(&ops)
        .bind(&refs)
        .bind(&pays)
        .bind(&amounts)
        .bind(&fees)
        .bind(&ats)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Build the settlement read model with the projector's own `apply`.
async fn project(pool: &PgPool, day: &Day) -> anyhow::Result<()> {
    let topic: Arc<str> = Arc::from("bench");
    let envelopes: Vec<SourcedEvent> = day
        .rows
        .iter()
        .filter(|r| r.kind != AggregateKind::Delivery)
        .enumerate()
        .map(|(n, r)| SourcedEvent {
            origin: Origin::Kafka {
                topic: topic.clone(),
                partition: 0,
                offset: n as i64,
            },
            envelope: EventEnvelope {
                event_id: Uuid::new_v4(),
                aggregate_type: r.kind,
                aggregate_id: r.id.clone(),
                sequence: r.seq,
                global_position: n as i64 + 1,
                event_type: r.event_type.clone(),
                event_version: "1".into(),
                payload: r.payload.clone(),
                metadata: EventMetadata {
                    command_id: Uuid::nil(),
                    correlation_id: Uuid::nil(),
                    causation_id: Uuid::nil(),
                    actor: Actor {
                        subject: "bench".into(),
                        role: ActorRole::System,
                    },
                    request_id: "bench".into(),
                },
                recorded_at: Utc::now(),
            },
        })
        .collect();
    for batch in envelopes.chunks(2_000) {
        let mut tx = pool.begin().await?;
        Settlements
            .apply(&mut tx, batch)
            .await
            .map_err(|e| anyhow::anyhow!("settlement projector: {e}"))?;
        tx.commit().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let day = NaiveDate::from_ymd_opt(2025, 6, 2).context("day")?;
    let (name, _url, pool) = fresh_database(&args.database_url, 4, false).await?;
    let restaurants: Vec<RestaurantId> = (0..args.restaurants.max(1))
        .map(|_| RestaurantId::new_random())
        .collect();

    let t = Instant::now();
    let generated = generate(args.orders, &restaurants, day)?;
    append(&pool, &generated.rows).await?;
    ledger(&pool, &generated).await?;
    println!(
        "set-up: {} orders, {} events, {} provider operations appended in {:.1} s",
        args.orders,
        generated.rows.len(),
        generated.ledger.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    project(&pool, &generated).await?;
    println!(
        "set-up: settlement read model projected in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    sqlx::query("ANALYZE").execute(&pool).await?;

    let t = Instant::now();
    let csv = statement::to_csv(&reconcile::simulated_statement(&pool, day, day).await?);
    let lines = statement::parse(&csv)?;
    let statement_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = reconcile::reconcile(&pool, day, day, Some(&lines)).await?;
    let reconcile_s = t.elapsed().as_secs_f64();
    let s = &report.summary;
    println!(
        "statement: {} lines ({} bytes) exported and parsed in {statement_s:.2} s",
        lines.len(),
        csv.len()
    );
    println!(
        "reconcile {day}: {reconcile_s:.2} s — {} restaurant days, {} provider days, {} ledger operations vs {} statement lines, {} breaks",
        s.restaurant_days_from_events,
        s.provider_days_from_events,
        s.ledger_operations,
        s.statement_lines,
        s.breaks
    );
    println!(
        "total (statement + reconcile): {:.2} s",
        statement_s + reconcile_s
    );
    if args.keep {
        println!("database kept: {name}");
    } else {
        drop_database(&args.database_url, &name).await?;
    }
    if !report.is_clean() {
        bail!(
            "the benchmark day did not reconcile: {:#?}",
            &report.breaks[..report.breaks.len().min(5)]
        );
    }
    Ok(())
}
