//! Audit reads (`ordertrail_commands::audit`) over a lifecycle driven by the
//! real saga (harness of [`crate::saga`]): the correlation view lists the
//! saga's reactions in commit order, past states equal what the write side
//! had, and the simulated provider's ledger records what it did.

use ordertrail_commands::audit::{self, AsOf, AuditError, AuditEvent};
use ordertrail_domain::{OrderStatus, PaymentStatus};
use ordertrail_schemas::{AggregateKind, DeliveryId, PaymentId};
use uuid::Uuid;

use crate::saga::Env;
use crate::support::rider_n;

fn meta(e: &AuditEvent, key: &str) -> String {
    e.metadata[key].as_str().unwrap_or_default().to_owned()
}

/// The correlation of the first event of `event_type` in `events`.
fn correlation_of(events: &[AuditEvent], event_type: &str) -> Uuid {
    let e = events
        .iter()
        .find(|e| e.event_type == event_type)
        .unwrap_or_else(|| panic!("no {event_type}"));
    meta(e, "correlation_id").parse().expect("correlation id")
}

#[tokio::test]
async fn the_correlation_view_lists_the_sagas_reactions_in_commit_order() {
    let (env, saga) = Env::start(|_| {}).await;
    let order = env.place_card("tok_visa").await;
    env.wait_order(order, OrderStatus::Confirmed).await;
    env.run_delivery(order, rider_n(1)).await;
    env.wait_order(order, OrderStatus::Delivered).await;
    env.wait_payment(order, PaymentStatus::Captured).await;
    env.wait_saga_caught_up().await;
    saga.stop().await;
    let pool = &env.db.pool;

    let order_events = audit::history(pool, AggregateKind::Order, &order.to_string(), None, None)
        .await
        .expect("order history")
        .items;
    let delivery_events = audit::history(
        pool,
        AggregateKind::Delivery,
        &DeliveryId::for_order(order).to_string(),
        None,
        None,
    )
    .await
    .expect("delivery history")
    .items;

    // Each client command starts a flow; the saga's reactions follow it.
    let flows = [
        (
            correlation_of(&order_events, "OrderPlaced"),
            vec![
                ("OrderPlaced", "customer"),
                ("PaymentAuthorized", "system"),
                ("OrderConfirmed", "system"),
            ],
        ),
        (
            correlation_of(&order_events, "OrderAccepted"),
            vec![
                ("OrderAccepted", "restaurant"),
                ("DeliveryRequested", "system"),
            ],
        ),
        (
            correlation_of(&delivery_events, "PickupConfirmed"),
            vec![("PickupConfirmed", "rider"), ("OrderPickedUp", "system")],
        ),
        (
            correlation_of(&delivery_events, "DeliveryCompleted"),
            vec![
                ("DeliveryCompleted", "rider"),
                ("OrderDelivered", "system"),
                ("PaymentCaptured", "system"),
            ],
        ),
    ];
    for (correlation, expected) in flows {
        let page = audit::correlation(pool, correlation, None, None)
            .await
            .expect("correlation");
        let got: Vec<(String, String)> = page
            .items
            .iter()
            .map(|e| (e.event_type.clone(), meta(e, "actor_role")))
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(t, r)| ((*t).to_owned(), (*r).to_owned()))
            .collect();
        assert_eq!(got, expected, "flow {correlation}");
        // Commit order, and each reaction is caused by the event before it.
        for pair in page.items.windows(2) {
            assert!(
                (pair[0].transaction_id, pair[0].global_position)
                    < (pair[1].transaction_id, pair[1].global_position)
            );
            assert_eq!(meta(&pair[1], "causation_id"), pair[0].event_id.to_string());
        }
        // Paging returns the same events.
        let first = audit::correlation(pool, correlation, None, Some(1))
            .await
            .expect("page 1");
        let rest = audit::correlation(pool, correlation, first.next_cursor.as_deref(), None)
            .await
            .expect("page 2");
        let paged: Vec<Uuid> = first
            .items
            .iter()
            .chain(&rest.items)
            .map(|e| e.event_id)
            .collect();
        let all: Vec<Uuid> = page.items.iter().map(|e| e.event_id).collect();
        assert_eq!(paged, all);
    }
    assert!(matches!(
        audit::correlation(pool, Uuid::new_v4(), Some("x"), None).await,
        Err(AuditError::InvalidCursor(_))
    ));

    // The simulated provider's ledger (its own record) matches the events.
    let payment = PaymentId::for_order(order).to_string();
    let ledger: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT operation, amount_minor, fee_minor FROM simulated_provider_operations
         WHERE payment_id = $1 ORDER BY id",
    )
    .bind(&payment)
    .fetch_all(pool)
    .await
    .expect("ledger");
    let payment_events = audit::history(pool, AggregateKind::Payment, &payment, None, None)
        .await
        .expect("payment history")
        .items;
    let ours: Vec<(String, i64, i64)> = payment_events
        .iter()
        .map(|e| {
            let op = match e.event_type.as_str() {
                "PaymentAuthorized" => "authorization",
                "PaymentCaptured" => "capture",
                other => other,
            };
            (
                op.to_owned(),
                e.payload["amount"]["amount"].as_i64().expect("amount"),
                e.payload["fee"]["amount"].as_i64().expect("fee"),
            )
        })
        .collect();
    assert_eq!(ledger, ours);
}

#[tokio::test]
async fn state_as_of_a_version_or_a_time_is_what_the_write_side_had_then() {
    let (env, saga) = Env::start(|_| {}).await;
    let order = env.place_card("tok_visa").await;
    let pool = &env.db.pool;
    let id = order.to_string();

    // Snapshot the write side's own state after each step.
    let confirmed = env.wait_order(order, OrderStatus::Confirmed).await;
    let (_, confirmed_version) = env
        .service
        .load_order(order)
        .await
        .expect("load")
        .expect("exists");
    env.run_delivery(order, rider_n(2)).await;
    let delivered = env.wait_order(order, OrderStatus::Delivered).await;
    env.wait_payment(order, PaymentStatus::Captured).await;
    env.wait_saga_caught_up().await;
    saga.stop().await;

    let by_version = audit::state_as_of(
        pool,
        AggregateKind::Order,
        &id,
        AsOf::Version(confirmed_version),
    )
    .await
    .expect("state at version");
    assert_eq!(by_version.version, confirmed_version);
    assert_eq!(
        by_version.state,
        serde_json::to_value(&confirmed).expect("json")
    );

    let latest = audit::state_as_of(pool, AggregateKind::Order, &id, AsOf::Latest)
        .await
        .expect("latest");
    assert_eq!(
        latest.state,
        serde_json::to_value(&delivered).expect("json")
    );

    // As of the instant the confirmation was recorded: the confirmed order.
    let history = audit::history(pool, AggregateKind::Order, &id, None, None)
        .await
        .expect("history")
        .items;
    let confirmed_at = history
        .iter()
        .find(|e| e.sequence == confirmed_version)
        .expect("confirmation")
        .recorded_at;
    let by_time = audit::state_as_of(pool, AggregateKind::Order, &id, AsOf::Time(confirmed_at))
        .await
        .expect("state at time");
    assert_eq!(
        (by_time.version, by_time.at),
        (confirmed_version, confirmed_at)
    );
    assert_eq!(by_time.state, by_version.state);

    // Before the first event, and beyond the last version: not found.
    let before = history[0].recorded_at - chrono::Duration::milliseconds(1);
    for as_of in [AsOf::Time(before), AsOf::Version(latest.version + 1)] {
        assert!(matches!(
            audit::state_as_of(pool, AggregateKind::Order, &id, as_of).await,
            Err(AuditError::NotFound { .. })
        ));
    }
    // Keyset paging by sequence.
    let page = audit::history(pool, AggregateKind::Order, &id, None, Some(2))
        .await
        .expect("page");
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next_cursor.as_deref(), Some("2"));
    let next = audit::history(
        pool,
        AggregateKind::Order,
        &id,
        page.next_cursor.as_deref(),
        None,
    )
    .await
    .expect("next");
    assert_eq!(next.items[0].sequence, 3);
    assert_eq!(page.items.len() + next.items.len(), history.len());
}
