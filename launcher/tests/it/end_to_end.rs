//! End to end through the real write side: commands executed by the
//! `CommandService` append to the event store, the relay publishes the store
//! to the Kafka-protocol broker (testkit), and the three projectors consume it
//! — every part running in-process (the launcher's `Stack`) as in production,
//! none of it scripted. Two card orders at the seeded Berlin burger place are
//! delivered and captured; the second is then refunded in full. The read
//! models must hold the hand-computed figures.

use chrono::{Days, Utc};
use ordertrail_domain::payment::RefundPayment;
use ordertrail_launcher::seed::seed_ids;
use ordertrail_projections::queries::{self, Viewer};
use ordertrail_schemas::{CustomerId, DeliveryId, PaymentId, RiderId};
use uuid::Uuid;

use crate::support::{eur, seeded_platform, succeeded};

#[tokio::test]
async fn real_commands_through_the_relay_build_all_three_read_models() {
    let (db, _kafka, pipeline, commands) = seeded_platform().await;
    let pool = db.pool.clone();

    let customer = CustomerId(Uuid::new_v4());
    let rider = RiderId(seed_ids::rider(1));
    let kept = commands.delivered_card_order(customer, rider).await;
    let refunded = commands.delivered_card_order(customer, rider).await;
    let o = commands
        .service
        .execute(
            &commands.ops(),
            PaymentId::for_order(refunded),
            RefundPayment {
                amount: eur(3_071),
                reason: "order arrived cold".into(),
                order_price: None,
                now: Utc::now(),
            }
            .into(),
        )
        .await
        .expect("refund");
    succeeded(&o, "PaymentRefunded");

    pipeline.caught_up().await;

    // Order history: the row and the timeline.
    let detail = queries::orders::order_detail(&pool, Viewer::Customer(customer.0), kept.0)
        .await
        .expect("order detail");
    let row = &detail.order;
    assert_eq!(row.status, "delivered");
    assert_eq!(row.customer_id, Some(customer.0));
    assert_eq!(row.restaurant_id, seed_ids::BERLIN_BURGERS);
    assert_eq!(row.rider_id, Some(rider.0));
    assert_eq!(row.payment_method, "card");
    assert_eq!(row.payment_status.as_deref(), Some("captured"));
    assert_eq!(row.payment_provider.as_deref(), Some("simulated"));
    assert_eq!(row.delivery_status.as_deref(), Some("completed"));
    assert_eq!(row.item_count, 3);
    assert_eq!(row.currency, "EUR");
    // 2 × 9.90 + 4.50 = 24.30; fee 1.99 (< 2 km); service 5 % = 1.215 → 1.22;
    // tax 7 % = 1.701 → 1.70; tip 1.50; commission 15 % = 3.645 → 3.65.
    assert_eq!(
        (
            row.subtotal_minor,
            row.delivery_fee_minor,
            row.service_fee_minor,
            row.tax_minor,
            row.tip_minor,
            row.total_minor,
            row.commission_minor,
        ),
        (2_430, 199, 122, 170, 150, 3_071, Some(365))
    );
    // Capture fee: 1.4 % of 30.71 = 0.43, + 0.25.
    assert_eq!(
        (
            row.captured_minor,
            row.refunded_minor,
            row.provider_fees_minor
        ),
        (3_071, 0, Some(68))
    );
    for (what, at) in [
        ("confirmed", row.confirmed_at),
        ("accepted", row.accepted_at),
        ("ready", row.ready_at),
        ("picked up", row.picked_up_at),
        ("delivered", row.delivered_at),
        ("rider assigned", row.rider_assigned_at),
        ("captured", row.payment_captured_at),
    ] {
        assert!(at.is_some(), "{what} time recorded");
    }
    assert!(row.placed_at <= row.confirmed_at.unwrap_or_default());
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = ANY($1) AND event_type <> 'RiderLocationReported'")
            .bind(vec![
                kept.to_string(),
                PaymentId::for_order(kept).to_string(),
                DeliveryId::for_order(kept).to_string(),
            ])
            .fetch_one(&pool)
            .await
            .expect("count events");
    // Every event once, except location fixes (kept out of the timeline).
    assert_eq!(detail.timeline.len() as i64, stored);
    assert_eq!(stored, 12);
    assert_eq!(detail.timeline[0].event_type, "OrderPlaced");
    assert!(detail.timeline.iter().all(|e| {
        e.metadata["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("req-e2e-"))
    }));

    let refunded_row = queries::orders::order_detail(&pool, Viewer::All, refunded.0)
        .await
        .expect("refunded order")
        .order;
    assert_eq!(refunded_row.status, "delivered");
    assert_eq!(refunded_row.payment_status.as_deref(), Some("refunded"));
    assert_eq!(
        (refunded_row.captured_minor, refunded_row.refunded_minor),
        (3_071, 3_071)
    );
    assert!(refunded_row.last_refunded_at.is_some());

    // Rider ETAs: the delivery left the active set with its predictions
    // and the actual times kept.
    let eta = queries::etas::eta_by_order(&pool, Viewer::Rider(rider.0), kept.0)
        .await
        .expect("eta");
    assert_eq!(eta.status, "completed");
    assert!(!eta.active);
    assert_eq!(eta.rider_id, Some(rider.0));
    assert!(
        eta.speed_from_reports,
        "three fixes give the rider's own speed"
    );
    assert!(eta.predicted_pickup_at.is_some() && eta.predicted_dropoff_at.is_some());
    assert!(eta.picked_up_at.is_some() && eta.completed_at.is_some());
    assert!(
        queries::etas::active_deliveries(&pool, Viewer::All, None)
            .await
            .expect("active")
            .is_empty()
    );

    // Settlements, summed over the days around now (a run across Berlin's
    // midnight splits the figures over two business days, not their sums).
    let today = Utc::now().date_naive();
    let (from, to) = (
        today.checked_sub_days(Days::new(1)).expect("date"),
        today.checked_add_days(Days::new(1)).expect("date"),
    );
    let days = queries::settlements::restaurant_days(
        &pool,
        Viewer::Restaurant(seed_ids::BERLIN_BURGERS),
        seed_ids::BERLIN_BURGERS,
        from,
        to,
    )
    .await
    .expect("restaurant days");
    assert!(!days.is_empty());
    let sum = |f: fn(&queries::RestaurantSettlementDay) -> i64| days.iter().map(f).sum::<i64>();
    let figures = [
        sum(|d| d.orders),
        sum(|d| d.gross_sales_minor),
        sum(|d| d.tax_minor),
        sum(|d| d.delivery_fees_minor),
        sum(|d| d.service_fees_minor),
        sum(|d| d.tips_minor),
        sum(|d| d.commission_minor),
        sum(|d| d.provider_fees_minor),
        sum(|d| d.refunds_minor),
        sum(|d| d.cash_collected_minor),
        sum(|d| d.net_payable_minor),
    ];
    // Two orders; the refund (30.71) lands on the refund's day. Net =
    // 48.60 + 3.40 − 7.30 − 1.36 − 30.71 = 12.63.
    assert_eq!(
        figures,
        [2, 4_860, 340, 398, 244, 300, 730, 136, 3_071, 0, 1_263]
    );
    let providers: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT provider, sum(authorized_minor)::bigint, sum(captured_minor)::bigint,
                sum(voided_minor)::bigint, sum(refunded_minor)::bigint, sum(fees_minor)::bigint
         FROM provider_settlement_days GROUP BY provider",
    )
    .fetch_all(&pool)
    .await
    .expect("provider days");
    assert_eq!(
        providers,
        [("simulated".to_owned(), 6_142, 6_142, 0, 3_071, 136)]
    );
    let csv = queries::settlements::export_csv(&pool, Viewer::All, None, from, to)
        .await
        .expect("csv");
    assert_eq!(csv.lines().count(), 1 + days.len());

    // Every projector applied events and is nothing behind the store; the
    // saga (not part of this pipeline) has not started.
    let status = queries::projector_status(&pool).await.expect("status");
    assert_eq!(status.len(), 4);
    for p in status.iter().filter(|p| p.projector != "saga") {
        assert!(p.events_applied > 0, "{p:?}");
        assert_eq!(p.events_behind, 0, "{p:?}");
        assert_eq!(p.state, "following", "{p:?}");
    }
    let saga = status.iter().find(|p| p.projector == "saga").expect("saga");
    assert_eq!(saga.state, "not_started");
    assert!(
        saga.events_behind > 0,
        "the saga is behind the store: {saga:?}"
    );

    pipeline.stop().await;
}
