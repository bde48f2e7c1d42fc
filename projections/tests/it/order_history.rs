//! Order history rows and timelines from the scripted day.

use ordertrail_projections::ProjectorKind;
use ordertrail_projections::queries::{self, Viewer};
use ordertrail_schemas::*;

use crate::settlements::scripted_day;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_timelines_follow_orders_payments_and_deliveries() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let customer = CustomerId::new_random();
    let rider = RiderId::new_random();
    let (script, specs) = scripted_day(restaurant, customer, rider);
    env.produce(&script.envelopes).await;
    let running = Running::spawn(
        ProjectorKind::OrderHistory,
        env.config("history"),
        env.pool().clone(),
    );
    env.caught_up("order_history", &AggregateKind::ALL).await;
    running.stop().await;

    let detail = |id: OrderId| {
        let pool = env.pool().clone();
        async move {
            queries::orders::order_detail(&pool, Viewer::All, id.as_uuid())
                .await
                .unwrap_or_else(|e| panic!("detail: {e}"))
        }
    };
    let a = detail(specs[0].order).await;
    assert_eq!(a.order.status, "delivered");
    assert_eq!(a.order.payment_status.as_deref(), Some("captured"));
    assert_eq!(a.order.delivery_status.as_deref(), Some("completed"));
    assert_eq!(a.order.rider_id, Some(rider.as_uuid()));
    assert_eq!(a.order.total_minor, 3_716);
    assert_eq!(a.order.captured_minor, 3_716);
    assert_eq!(a.order.provider_fees_minor, Some(60));
    assert_eq!(a.order.placed_at, at(2025, 1, 10, 22, 30));
    assert_eq!(a.order.delivered_at, Some(at(2025, 1, 10, 22, 50)));
    assert_eq!(a.order.item_count, 3);
    // 6 order + 2 payment + 4 delivery events, in time order, with metadata.
    assert_eq!(a.timeline.len(), 12);
    assert_eq!(a.timeline[0].event_type, "OrderPlaced");
    assert!(
        a.timeline
            .windows(2)
            .all(|w| w[0].recorded_at <= w[1].recorded_at)
    );
    assert_eq!(a.timeline[0].metadata["request_id"], "req-test");

    let b = detail(specs[1].order).await;
    assert_eq!(
        b.order.payment_status.as_deref(),
        Some("partially_refunded")
    );
    assert_eq!(b.order.refunded_minor, 500);
    assert_eq!(b.order.last_refunded_at, Some(at(2025, 1, 12, 9, 0)));

    let c = detail(specs[2].order).await;
    assert_eq!(c.order.status, "cancelled");
    assert_eq!(
        c.order.reason.as_deref(),
        Some("customer changed their mind")
    );
    assert_eq!(c.order.payment_status.as_deref(), Some("voided"));
    assert_eq!(c.order.delivery_status, None);
    // The refused capture is on the timeline, between authorization and cancel.
    let types: Vec<&str> = c.timeline.iter().map(|t| t.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "PaymentAuthorized",
            "PaymentCaptureFailed",
            "OrderCancelled",
            "PaymentVoided"
        ]
    );

    let d = detail(specs[3].order).await;
    assert_eq!(d.order.payment_method, "cash");
    assert_eq!(d.order.payment_status.as_deref(), Some("cash_collected"));
    assert_eq!(d.order.cash_collected_minor, 2_899 + 319 + 145 + 203);
}
