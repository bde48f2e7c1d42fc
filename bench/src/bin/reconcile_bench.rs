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
use ordertrail_bench::backlog::{Backlog, CardOrder, card_order, load};
use ordertrail_bench::{drop_database, fresh_database};
use ordertrail_projections::reconcile::{self, StatementLine, statement};
use ordertrail_projections::runtime::{Origin, Projector, SourcedEvent};
use ordertrail_projections::settlements::Settlements;
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use sqlx::PgPool;

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

struct Day {
    events: Backlog,
    /// The provider's own record of what it did.
    ledger: Vec<StatementLine>,
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
        events: Backlog {
            envelopes: Vec::with_capacity(orders * 14),
            position: 0,
        },
        ledger: Vec::with_capacity(orders * 2),
    };
    let start = Utc.from_utc_datetime(&day.and_hms_opt(6, 0, 0).context("start")?);
    // 06:00–19:00 UTC keeps every order in one Berlin business day.
    let step_ms = (13 * 3_600_000 / orders.max(1)) as i64;
    for i in 0..orders {
        let order = OrderId::new_random();
        let pay = PaymentId::for_order(order);
        let subtotal = 1_500 + (i % 37) as i64 * 50;
        let mut o = CardOrder {
            order,
            restaurant: restaurants[i % restaurants.len()],
            placed: start + Duration::milliseconds(step_ms * i as i64),
            item: "Burger",
            subtotal,
            delivery_fee: 319,
            service_fee: subtotal / 20,
            tax: subtotal * 7 / 100,
            tip: (i % 4) as i64 * 50,
            commission: subtotal * 15 / 100,
            authorization_reference: format!("sim_auth_{pay}"),
            authorization_fee: 0,
            capture_fee: 0,
            reports: 0,
        };
        let total = o.total();
        o.capture_fee = (total * 140 + 5_000) / 10_000 + 25;
        let mut payment_sequence = card_order(&mut d.events, &o)?;
        let reference = o.authorization_reference;
        d.ledger.push(line(
            "authorization",
            reference.clone(),
            pay.to_string(),
            total,
            0,
            o.placed,
        ));
        let delivered = o.placed + Duration::minutes(30);
        d.ledger.push(line(
            "capture",
            reference,
            pay.to_string(),
            total,
            o.capture_fee,
            delivered,
        ));
        if i % 20 == 0 {
            let refund_ref = format!("sim_refund_{pay}_refund_1");
            let at = delivered + Duration::minutes(30);
            d.events.payment(
                pay,
                &mut payment_sequence,
                PaymentRefunded {
                    amount: eur(500),
                    fee: eur(0),
                    reason: "cold fries".into(),
                    provider_reference: refund_ref.clone(),
                    refunded_at: at,
                    allocation: None,
                },
                at,
            )?;
            d.ledger
                .push(line("refund", refund_ref, pay.to_string(), 500, 0, at));
        }
    }
    Ok(d)
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
        .events
        .envelopes
        .iter()
        .filter(|e| e.aggregate_type != AggregateKind::Delivery)
        .enumerate()
        .map(|(n, e)| SourcedEvent {
            origin: Origin::Kafka {
                topic: topic.clone(),
                partition: 0,
                offset: n as i64,
            },
            envelope: e.clone(),
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
    load(&pool, &generated.events.envelopes).await?;
    ledger(&pool, &generated).await?;
    println!(
        "set-up: {} orders, {} events, {} provider operations appended in {:.1} s",
        args.orders,
        generated.events.envelopes.len(),
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
