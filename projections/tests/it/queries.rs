//! Order-list filters, keyset pagination and visibility rules.

use chrono::Duration;
use ordertrail_projections::ProjectorKind;
use ordertrail_projections::queries::{self, OrderFilter, QueryError, SortOrder, Viewer};
use ordertrail_schemas::*;

use crate::support::*;

/// The default filter changed by `set`.
fn order_filter(set: impl FnOnce(&mut OrderFilter)) -> OrderFilter {
    let mut filter = OrderFilter::default();
    set(&mut filter);
    filter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pagination_and_visibility() {
    let mut env = Env::start().await;
    let r1 = RestaurantId::new_random();
    let r2 = RestaurantId::new_random();
    let alice = CustomerId::new_random();
    let bob = CustomerId::new_random();
    let rider = RiderId::new_random();
    let mut s = Script::default();
    let base = at(2025, 4, 1, 12, 0);
    // 7 orders: r1/alice delivered ×3, r1/bob placed ×2, r2/alice cancelled ×2.
    let mut r1_alice = Vec::new();
    for i in 0..3 {
        let spec = OrderSpec::new(r1, alice, "Europe/Berlin");
        let placed = base + Duration::minutes(i);
        s.delivered_card_order(&spec, rider, placed, placed + Duration::minutes(40));
        r1_alice.push(spec.order);
    }
    for i in 3..5 {
        let spec = OrderSpec::new(r1, bob, "Europe/Berlin");
        s.order(
            spec.order,
            spec.placed(base + Duration::minutes(i)),
            base + Duration::minutes(i),
        );
    }
    for i in 5..7 {
        let spec = OrderSpec::new(r2, alice, "Europe/Berlin");
        let placed = base + Duration::minutes(i);
        s.order(spec.order, spec.placed(placed), placed);
        s.order_cancelled(
            spec.order,
            "closed",
            ActorRole::Restaurant,
            placed + Duration::minutes(1),
        );
    }
    env.produce(&s.envelopes).await;
    env.project(ProjectorKind::OrderHistory, "q").await;
    store_events(env.pool(), &s.envelopes).await;
    let pool = env.pool();

    let list = |viewer: Viewer, filter: OrderFilter| async move {
        queries::orders::list_orders(pool, viewer, &filter)
            .await
            .unwrap_or_else(|e| panic!("list: {e}"))
    };
    let all = |filter| list(Viewer::All, filter);
    assert_eq!(all(OrderFilter::default()).await.orders.len(), 7);
    let delivered = all(order_filter(|f| f.status = Some("delivered".into()))).await;
    assert_eq!(delivered.orders.len(), 3);
    let by_r2 = all(order_filter(|f| f.restaurant_id = Some(r2.as_uuid()))).await;
    assert!(by_r2.orders.iter().all(|o| o.status == "cancelled") && by_r2.orders.len() == 2);
    let by_rider = all(order_filter(|f| f.rider_id = Some(rider.as_uuid()))).await;
    assert_eq!(by_rider.orders.len(), 3);
    let window = all(order_filter(|f| {
        f.placed_from = Some(base + Duration::minutes(2));
        f.placed_to = Some(base + Duration::minutes(5));
    }))
    .await;
    assert_eq!(window.orders.len(), 3);
    let by_customer = all(order_filter(|f| f.customer_id = Some(bob.as_uuid()))).await;
    assert_eq!(by_customer.orders.len(), 2);

    // Keyset pagination, newest first, pages of 3: 3 + 3 + 1, no overlap.
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = all(order_filter(|f| {
            f.limit = Some(3);
            f.cursor = cursor.clone();
        }))
        .await;
        pages += 1;
        seen.extend(page.orders.iter().map(|o| (o.placed_at, o.order_id)));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first"
    );
    let asc = all(order_filter(|f| {
        f.sort = SortOrder::Asc;
        f.limit = Some(7);
    }))
    .await;
    assert_eq!(asc.orders.first().map(|o| o.placed_at), Some(base));
    assert!(matches!(
        queries::orders::list_orders(
            pool,
            Viewer::All,
            &order_filter(|f| f.cursor = Some("zz".into()))
        )
        .await,
        Err(QueryError::InvalidArgument { .. })
    ));

    // Visibility: a customer sees only their own, a restaurant only its own.
    let mine = list(Viewer::Customer(bob.as_uuid()), OrderFilter::default()).await;
    assert_eq!(mine.orders.len(), 2);
    let sneaky = list(
        Viewer::Customer(bob.as_uuid()),
        order_filter(|f| f.customer_id = Some(alice.as_uuid())),
    )
    .await;
    assert!(sneaky.orders.is_empty());
    assert_eq!(
        list(Viewer::Restaurant(r2.as_uuid()), OrderFilter::default())
            .await
            .orders
            .len(),
        2
    );
    assert!(matches!(
        queries::orders::order_detail(pool, Viewer::Customer(bob.as_uuid()), r1_alice[0].as_uuid())
            .await,
        Err(QueryError::NotFound)
    ));
    assert!(
        queries::orders::order_detail(
            pool,
            Viewer::Customer(alice.as_uuid()),
            r1_alice[0].as_uuid()
        )
        .await
        .is_ok()
    );
    assert!(
        queries::orders::order_detail(pool, Viewer::Rider(rider.as_uuid()), r1_alice[0].as_uuid())
            .await
            .is_ok()
    );
    assert!(matches!(
        queries::settlements::day_summary(
            pool,
            Viewer::Customer(alice.as_uuid()),
            base.date_naive()
        )
        .await,
        Err(QueryError::Forbidden)
    ));
    assert!(matches!(
        queries::settlements::restaurant_days(
            pool,
            Viewer::Restaurant(r2.as_uuid()),
            r1.as_uuid(),
            base.date_naive(),
            base.date_naive()
        )
        .await,
        Err(QueryError::Forbidden)
    ));

    // Every projector is listed, with its lag.
    let status = queries::projector_status(pool).await.unwrap_or_default();
    let names: Vec<&str> = status.iter().map(|s| s.projector.as_str()).collect();
    assert_eq!(
        names,
        ["order_history", "rider_etas", "settlements", "saga"]
    );
    assert_eq!(status[0].events_applied, s.envelopes.len() as i64);
    assert_eq!(status[0].events_behind, 0);
}
