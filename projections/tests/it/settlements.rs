//! Settlement figures from a scripted day, crossing midnight in Berlin.

use chrono::{Duration, NaiveDate};
use ordertrail_projections::ProjectorKind;
use ordertrail_projections::queries::{self, RestaurantSettlementDay, Viewer};
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use sqlx::Row;

use crate::support::*;

pub(crate) const BERLIN: &str = "Europe/Berlin";

/// Four orders of one Berlin restaurant (CET = UTC+1):
/// A delivered 23:50 local on Jan 10; B delivered 00:20 local on Jan 11 and
/// partly refunded on Jan 12; C cancelled and voided on Jan 11; D cash,
/// delivered on Jan 11.
pub(crate) fn scripted_day(
    restaurant: RestaurantId,
    customer: CustomerId,
    rider: RiderId,
) -> (Script, Vec<OrderSpec>) {
    let mut s = Script::default();
    let a = OrderSpec::new(restaurant, customer, BERLIN);
    s.delivered_card_order(&a, rider, at(2025, 1, 10, 22, 30), at(2025, 1, 10, 22, 50));
    let b = OrderSpec::new(restaurant, customer, BERLIN);
    s.delivered_card_order(&b, rider, at(2025, 1, 10, 22, 55), at(2025, 1, 10, 23, 20));
    s.payment(
        b.payment_id(),
        PaymentRefunded {
            amount: eur(500),
            fee: eur(10),
            reason: "cold food".into(),
            provider_reference: "ref-1".into(),
            refunded_at: at(2025, 1, 12, 9, 0),
            allocation: None,
        },
        at(2025, 1, 12, 9, 0),
    );
    // C: authorized, then cancelled and voided.
    let c = OrderSpec::new(restaurant, customer, BERLIN);
    let placed = at(2025, 1, 11, 12, 0);
    s.order(c.order, c.placed(placed), placed);
    s.authorized(&c, "auth-c".into(), 25, placed + Duration::minutes(1));
    // An ops capture before delivery, refused by the provider: a fact on
    // the timeline that moves no money.
    s.payment(
        c.payment_id(),
        PaymentCaptureFailed {
            amount: eur(c.total()),
            provider: "simulated".into(),
            decline_code: "authorization_expired".into(),
            answered: true,
            idempotency_key: "ot-c-capture".into(),
            attempt: 1,
            final_attempt: false,
            failed_at: placed + Duration::minutes(2),
        },
        placed + Duration::minutes(2),
    );
    s.order_cancelled(
        c.order,
        "customer changed their mind",
        ActorRole::Customer,
        placed + Duration::minutes(5),
    );
    s.payment(
        c.payment_id(),
        PaymentVoided {
            amount: eur(c.total()),
            fee: eur(5),
            voided_at: placed + Duration::minutes(6),
        },
        placed + Duration::minutes(6),
    );
    // D: cash, no tip.
    let mut d = OrderSpec::new(restaurant, customer, BERLIN);
    d.cash = true;
    d.tip = 0;
    let placed = at(2025, 1, 11, 13, 0);
    s.delivered_cash_order(&d, placed, placed + Duration::minutes(30));
    s.payment(
        d.payment_id(),
        CashCollected {
            payment_id: d.payment_id(),
            order_id: d.order,
            restaurant_id: restaurant,
            amount: eur(d.total()),
            rider_id: rider,
            collected_at: placed + Duration::minutes(30),
        },
        placed + Duration::minutes(30),
    );
    (s, vec![a, b, c, d])
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, d).unwrap_or_default()
}

/// The stored days of `restaurant` in January 2025 (the month of
/// [`scripted_day`]).
pub(crate) async fn january_days(
    pool: &sqlx::PgPool,
    restaurant: RestaurantId,
) -> Vec<RestaurantSettlementDay> {
    queries::settlements::restaurant_days(pool, Viewer::All, restaurant.as_uuid(), day(1), day(31))
        .await
        .unwrap_or_default()
}

/// The `figures` (a select list) of `restaurant`'s stored `day`.
async fn stored_day(
    pool: &sqlx::PgPool,
    restaurant: RestaurantId,
    figures: &str,
    day: &str,
) -> sqlx::postgres::PgRow {
    let sql = format!(
        "SELECT {figures} FROM restaurant_settlement_days
         WHERE restaurant_id = $1 AND business_day = '{day}'"
    );
    sqlx::query(&sql)
        .bind(restaurant.as_uuid())
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("day {day}: {e}"))
}

/// The hand-computed figures of [`scripted_day`].
pub(crate) fn expected_days(restaurant: RestaurantId) -> Vec<RestaurantSettlementDay> {
    let r = restaurant.as_uuid();
    let row = |d: u32| RestaurantSettlementDay {
        restaurant_id: r,
        business_day: day(d),
        currency: "EUR".into(),
        orders: 0,
        gross_sales_minor: 0,
        tax_minor: 0,
        delivery_fees_minor: 0,
        service_fees_minor: 0,
        tips_minor: 0,
        commission_minor: 0,
        provider_fees_minor: 0,
        refunds_minor: 0,
        cash_collected_minor: 0,
        net_payable_minor: 0,
    };
    vec![
        // A delivered (23:50 local); A auth 25 + capture 35; B auth 25 (23:56 local).
        RestaurantSettlementDay {
            orders: 1,
            gross_sales_minor: 2_899,
            tax_minor: 203,
            delivery_fees_minor: 319,
            service_fees_minor: 145,
            tips_minor: 150,
            commission_minor: 435,
            provider_fees_minor: 85,
            net_payable_minor: 2_899 + 203 - 435 - 85,
            ..row(10)
        },
        // B delivered 00:20 local + capture 35; C auth 25 + void 5; D cash.
        RestaurantSettlementDay {
            orders: 2,
            gross_sales_minor: 5_798,
            tax_minor: 406,
            delivery_fees_minor: 638,
            service_fees_minor: 290,
            tips_minor: 150,
            commission_minor: 870,
            provider_fees_minor: 65,
            cash_collected_minor: 2_899 + 319 + 145 + 203,
            net_payable_minor: 5_798 + 406 - 870 - 65,
            ..row(11)
        },
        // B's refund on its own day.
        RestaurantSettlementDay {
            provider_fees_minor: 10,
            refunds_minor: 500,
            net_payable_minor: -510,
            ..row(12)
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restaurant_and_provider_days_match_hand_computed_figures() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let (script, _) = scripted_day(restaurant, CustomerId::new_random(), RiderId::new_random());
    let kinds = [AggregateKind::Order, AggregateKind::Payment];
    // Payments first, so their entries wait for the orders' time zones.
    let payments: Vec<EventEnvelope> = script
        .envelopes
        .iter()
        .filter(|e| e.aggregate_type == AggregateKind::Payment)
        .cloned()
        .collect();
    let orders: Vec<EventEnvelope> = script
        .envelopes
        .iter()
        .filter(|e| e.aggregate_type == AggregateKind::Order)
        .cloned()
        .collect();
    env.produce(&payments).await;
    let running = env
        .spawn_caught_up(ProjectorKind::Settlements, "settle")
        .await;
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM settlement_entries WHERE business_day IS NULL")
            .fetch_one(env.pool())
            .await
            .unwrap_or_default();
    assert_eq!(pending, 8, "payment entries wait for their orders");
    env.produce(&orders).await;
    env.caught_up("settlements", &kinds).await;
    running.stop().await;

    let days = january_days(env.pool(), restaurant).await;
    assert_eq!(days, expected_days(restaurant));

    let summary = queries::settlements::day_summary(env.pool(), Viewer::All, day(10)).await;
    let summary = summary.unwrap_or_else(|e| panic!("day summary: {e}"));
    let p = &summary.providers;
    assert_eq!(p.len(), 1);
    // A and B authorized and captured on Jan 10 UTC (B at 23:20 UTC).
    assert_eq!(
        (
            p[0].authorized_minor,
            p[0].captured_minor,
            p[0].voided_minor,
            p[0].refunded_minor,
            p[0].fees_minor
        ),
        (2 * 3_716, 2 * 3_716, 0, 0, 25 + 35 + 25 + 35)
    );
    let jan11 = queries::settlements::day_summary(env.pool(), Viewer::All, day(11)).await;
    let jan11 = jan11.unwrap_or_else(|e| panic!("day summary: {e}"));
    assert_eq!(
        (
            jan11.providers[0].authorized_minor,
            jan11.providers[0].voided_minor,
            jan11.providers[0].fees_minor
        ),
        (3_716, 3_716, 30)
    );
    assert_eq!(jan11.totals[0].orders, 2);
    let jan12 = queries::settlements::day_summary(env.pool(), Viewer::All, day(12)).await;
    let jan12 = jan12.unwrap_or_else(|e| panic!("day summary: {e}"));
    assert_eq!(
        (
            jan12.providers[0].refunded_minor,
            jan12.providers[0].fees_minor
        ),
        (500, 10)
    );

    // Consistent with the money events to the cent: every fee and refund
    // recorded on a payment event is in exactly one restaurant day.
    let fees: i64 = days.iter().map(|d| d.provider_fees_minor).sum();
    assert_eq!(fees, 25 + 35 + 25 + 35 + 10 + 25 + 5);

    let csv = queries::settlements::export_csv(
        env.pool(),
        Viewer::Restaurant(restaurant.as_uuid()),
        None,
        day(1),
        day(31),
    )
    .await
    .unwrap_or_default();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(lines[0], queries::settlements::CSV_HEADER);
    assert_eq!(
        lines[1],
        format!(
            "{},2025-01-10,EUR,1,2899,203,319,145,150,435,85,0,0,2582",
            restaurant.as_uuid()
        )
    );
}

/// Issue 13: the restaurant bears only its share of an allocated refund
/// (items and tax, commission given back), and no sum of tips can stop the
/// projector: two orders with tips of 9·10^18 stored before the caps existed
/// are applied to one day (numeric sums), next to a refund.
#[tokio::test]
async fn allocated_refunds_and_huge_sums_on_one_day() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let customer = CustomerId::new_random();
    let rider = RiderId::new_random();
    let mut s = Script::default();
    let a = OrderSpec::new(restaurant, customer, BERLIN);
    s.delivered_card_order(&a, rider, at(2025, 2, 3, 10, 0), at(2025, 2, 3, 10, 40));
    // The worked example of `pricing::allocate_refund`: 10.00 of 37.16.
    s.payment(
        a.payment_id(),
        PaymentRefunded {
            amount: eur(1_000),
            fee: eur(0),
            reason: "cold food".into(),
            provider_reference: "ref-a".into(),
            refunded_at: at(2025, 2, 4, 9, 0),
            allocation: Some(RefundAllocation {
                items: eur(780),
                delivery_fee: eur(86),
                service_fee: eur(39),
                tax: eur(55),
                tip: eur(40),
                commission_reversed: eur(117),
            }),
        },
        at(2025, 2, 4, 9, 0),
    );
    // Two cash orders with huge tips (as stored before the caps), one day.
    for hour in [11, 12] {
        let mut huge = OrderSpec::new(restaurant, customer, BERLIN);
        huge.cash = true;
        huge.tip = 9_000_000_000_000_000_000 - 4_000;
        let placed = at(2025, 2, 5, hour, 0);
        s.delivered_cash_order(&huge, placed, placed + Duration::minutes(30));
    }
    env.produce(&s.envelopes).await;
    env.project(ProjectorKind::Settlements, "settle-13").await;

    let refund_day = stored_day(
        env.pool(),
        restaurant,
        "refunds_minor::text, commission_minor::text, net_payable_minor::text",
        "2025-02-04",
    )
    .await;
    let refund_day: (String, String, String) =
        (refund_day.get(0), refund_day.get(1), refund_day.get(2));
    // Items 7.80 + tax 0.55 charged, commission 1.17 given back: −7.18.
    assert_eq!(
        refund_day,
        ("835".to_owned(), "-117".to_owned(), "-718".to_owned())
    );
    let huge_day = stored_day(
        env.pool(),
        restaurant,
        "orders::text, tips_minor::text",
        "2025-02-05",
    )
    .await;
    let huge_day: (String, String) = (huge_day.get(0), huge_day.get(1));
    assert_eq!(
        huge_day,
        ("2".to_owned(), "17999999999999992000".to_owned())
    );
}
