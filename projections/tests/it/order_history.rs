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
    env.project(ProjectorKind::OrderHistory, "history").await;
    store_events(env.pool(), &script.envelopes).await;

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

/// The timeline keeps only what lists and orders an entry; the order detail
/// reads each event from the store by its global position. Every entry still carries the
/// event's type, version, payload and metadata exactly as the projector was
/// given it, and an event stored in an older version is shown upcast, as the
/// relay publishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_detail_reads_each_timeline_event_from_the_store() {
    let mut env = Env::start().await;
    let (script, specs) = scripted_day(
        RestaurantId::new_random(),
        CustomerId::new_random(),
        RiderId::new_random(),
    );
    env.produce(&script.envelopes).await;
    env.project(ProjectorKind::OrderHistory, "history-store")
        .await;
    // The capture as a v1 writer stored it (no `override_reason`).
    let mut stored = script.envelopes.clone();
    let captured = stored
        .iter_mut()
        .find(|e| e.event_type == "PaymentCaptured")
        .expect("a capture in the script");
    let captured_id = captured.event_id;
    assert_eq!(captured.event_version, "2");
    let removed = captured
        .payload
        .as_object_mut()
        .and_then(|p| p.remove("override_reason"));
    assert_eq!(removed, Some(serde_json::Value::Null));
    captured.event_version = "1".into();
    store_events(env.pool(), &stored).await;

    // The table holds no copy of the event.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_name = 'order_timeline' AND table_schema = current_schema()
         ORDER BY ordinal_position",
    )
    .fetch_all(env.pool())
    .await
    .expect("columns");
    assert_eq!(
        columns,
        [
            "event_id",
            "order_id",
            "global_position",
            "event_type",
            "recorded_at"
        ]
    );

    let mut shown = 0;
    for spec in &specs {
        let detail = queries::orders::order_detail(env.pool(), Viewer::All, spec.order.as_uuid())
            .await
            .unwrap_or_else(|e| panic!("detail: {e}"));
        assert!(!detail.timeline.is_empty());
        for entry in &detail.timeline {
            let sent = script
                .envelopes
                .iter()
                .find(|e| e.event_id == entry.event_id)
                .expect("an entry is a produced event");
            let expected = queries::orders::TimelineEntry {
                event_id: sent.event_id,
                aggregate_type: sent.aggregate_type.as_str().to_owned(),
                aggregate_id: sent.aggregate_id.clone(),
                sequence: sent.sequence,
                event_type: sent.event_type.clone(),
                event_version: sent.event_version.clone(),
                payload: sent.payload.clone(),
                metadata: serde_json::to_value(&sent.metadata).expect("metadata"),
                recorded_at: sent.recorded_at,
            };
            assert_eq!(*entry, expected);
            if entry.event_id == captured_id {
                assert_eq!(entry.event_version, "2");
                assert_eq!(entry.payload["override_reason"], serde_json::Value::Null);
            }
            shown += 1;
        }
    }
    let listed = script
        .envelopes
        .iter()
        .filter(|e| e.event_type != "RiderLocationReported")
        .count();
    assert_eq!(shown, listed, "every listed event of every order is shown");

    // The entry finds its event by position; a position that holds another
    // event is damage, reported, never shown as this order's event.
    let order = specs[0].order.as_uuid();
    sqlx::query(
        "UPDATE order_timeline SET global_position = global_position + 1
         WHERE event_id = (SELECT event_id FROM order_timeline WHERE order_id = $1
                           ORDER BY recorded_at, global_position LIMIT 1)",
    )
    .bind(order)
    .execute(env.pool())
    .await
    .expect("move an entry");
    let damaged = queries::orders::order_detail(env.pool(), Viewer::All, order).await;
    let message = damaged.expect_err("a moved entry is damage").to_string();
    assert!(
        message.contains("is not in the store at position"),
        "{message}"
    );
}
