//! The runtime: crash-restart, redelivery, two instances, and stopping on an
//! event it cannot apply.

use std::time::Duration;

use ordertrail_projections::ProjectorKind;
use ordertrail_projections::queries::{self, Viewer};
use ordertrail_schemas::*;
use ordertrail_testkit::eventually;
use ordertrail_testkit::pg::{TestDatabase, dump};
use sqlx::PgPool;

use crate::settlements::{expected_days, january_days, scripted_day};
use crate::support::*;

/// Many delivered orders of one restaurant, all on 2025-02-01 local time.
fn many_orders(n: usize, restaurant: RestaurantId) -> Script {
    let mut s = Script::default();
    let rider = RiderId::new_random();
    for i in 0..n {
        let spec = OrderSpec::new(restaurant, CustomerId::new_random(), "Europe/Berlin");
        let placed = at(2025, 2, 1, 10, 0) + chrono::Duration::seconds(i as i64);
        s.delivered_card_order(&spec, rider, placed, placed + chrono::Duration::minutes(30));
    }
    s
}

async fn settlement_orders_total(pool: &PgPool, restaurant: RestaurantId) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT coalesce(sum(orders), 0)::bigint, coalesce(sum(gross_sales_minor), 0)::bigint,
                coalesce(sum(provider_fees_minor), 0)::bigint
         FROM restaurant_settlement_days WHERE restaurant_id = $1",
    )
    .bind(restaurant.as_uuid())
    .fetch_one(pool)
    .await
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_stream_and_restart_loses_and_doubles_nothing() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let n = 80;
    let script = many_orders(n, restaurant);
    env.produce(&script.envelopes).await;
    let kinds = [AggregateKind::Order, AggregateKind::Payment];
    let total = env.produced_for(&kinds);
    let mut config = env.config("crash");
    config.batch_size = 20;
    let first = Running::spawn(
        ProjectorKind::Settlements,
        config.clone(),
        env.pool().clone(),
    );
    let pool = env.pool().clone();
    eventually("some progress", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move {
            let n: Option<i64> = sqlx::query_scalar(
                "SELECT sum(next_offset)::bigint FROM projector_offsets WHERE projector = 'settlements'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            n.filter(|n| *n > 0).map(|_| ())
        }
    })
    .await;
    // Crash: the task is dropped wherever it is, mid-transaction included.
    first.handle.abort();
    let _ = first.handle.await;
    let progress: i64 = sqlx::query_scalar(
        "SELECT sum(next_offset)::bigint FROM projector_offsets WHERE projector = 'settlements'",
    )
    .fetch_one(env.pool())
    .await
    .unwrap_or_default();
    assert!(
        progress < total,
        "the crash should happen mid-stream ({progress} of {total})"
    );

    let second = Running::spawn(ProjectorKind::Settlements, config, env.pool().clone());
    env.caught_up("settlements", &kinds).await;
    second.stop().await;
    let n = n as i64;
    assert_eq!(
        settlement_orders_total(env.pool(), restaurant).await,
        (n, n * 2_899, n * (25 + 35))
    );
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM settlement_entries")
        .fetch_one(env.pool())
        .await
        .unwrap_or_default();
    assert_eq!(
        entries,
        n * 3,
        "one delivery, one authorization, one capture per order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_republished_events_have_no_effect() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let customer = CustomerId::new_random();
    let (script, specs) = scripted_day(restaurant, customer, RiderId::new_random());
    // The relay is at-least-once: everything published twice, the second time
    // after the first copy of later events.
    env.produce(&script.envelopes).await;
    env.produce(&script.envelopes).await;
    let settle = env.spawn(ProjectorKind::Settlements, "dup-s");
    let history = env.spawn(ProjectorKind::OrderHistory, "dup-h");
    env.caught_up("settlements", topics_read_by(&ProjectorKind::Settlements))
        .await;
    env.caught_up("order_history", &AggregateKind::ALL).await;
    settle.stop().await;
    history.stop().await;
    let days = queries::settlements::restaurant_days(
        env.pool(),
        Viewer::All,
        restaurant.as_uuid(),
        chrono::NaiveDate::MIN,
        chrono::NaiveDate::MAX,
    )
    .await;
    // The range check refuses an unbounded range; ask for January instead.
    assert!(days.is_err());
    assert_eq!(
        january_days(env.pool(), restaurant).await,
        expected_days(restaurant)
    );
    store_events(env.pool(), &script.envelopes).await;
    let detail = queries::orders::order_detail(env.pool(), Viewer::All, specs[0].order.as_uuid())
        .await
        .unwrap_or_else(|e| panic!("detail: {e}"));
    assert_eq!(detail.timeline.len(), 12);
    assert_eq!(detail.order.provider_fees_minor, Some(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_partitions_and_build_the_same_model_as_one() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let script = many_orders(40, restaurant);
    env.produce(&script.envelopes).await;
    let kinds = AggregateKind::ALL;
    let mut config = env.config("pair");
    config.batch_size = 25;
    let mut config_b = config.clone();
    config.instance = "instance-a".into();
    config_b.instance = "instance-b".into();
    let a = Running::spawn(
        ProjectorKind::OrderHistory,
        config.clone(),
        env.pool().clone(),
    );
    let b = Running::spawn(ProjectorKind::OrderHistory, config_b, env.pool().clone());
    env.caught_up("order_history", &kinds).await;
    // Both instances applied batches: the group really split the partitions
    // (each partition's row names the instance that applied it last).
    let owners: Vec<(String, i64)> = sqlx::query_as(
        "SELECT instance, count(*) FROM projector_offsets
         WHERE projector = 'order_history' AND instance IS NOT NULL
         GROUP BY instance ORDER BY instance",
    )
    .fetch_all(env.pool())
    .await
    .expect("partition owners");
    assert_eq!(
        owners.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
        vec!["instance-a", "instance-b"],
        "partitions per instance: {owners:?}"
    );

    // One instance, same topics, its own database.
    let single = TestDatabase::new().await;
    let one = Running::spawn(
        ProjectorKind::OrderHistory,
        env.config("single"),
        single.pool.clone(),
    );
    let expected = env.produced_for(&kinds);
    let pool = single.pool.clone();
    eventually("single instance caught up", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move {
            let n: Option<i64> =
                sqlx::query_scalar("SELECT sum(next_offset)::bigint FROM projector_offsets")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (n == Some(expected)).then_some(())
        }
    })
    .await;
    one.stop().await;
    a.stop().await;
    b.stop().await;

    for (table, key) in [
        ("order_history", "order_id"),
        ("order_history_payments", "payment_id"),
        ("order_history_deliveries", "delivery_id"),
        ("order_timeline", "event_id"),
    ] {
        let pair = dump(env.pool(), table, key).await;
        let alone = dump(&single.pool, table, key).await;
        assert_eq!(pair, alone, "{table} differs");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_history")
        .fetch_one(env.pool())
        .await
        .unwrap_or_default();
    assert_eq!(rows, 40);
}

/// The status query's entry for one consumer, once `check` holds for it.
async fn status_where(
    pool: &PgPool,
    consumer: &str,
    what: &str,
    check: impl Fn(&queries::ProjectorStatus) -> bool,
) -> queries::ProjectorStatus {
    eventually(what, Duration::from_secs(60), || async {
        let all = queries::projector_status(pool).await.ok()?;
        all.into_iter()
            .find(|s| s.projector == consumer)
            .filter(|s| check(s))
    })
    .await
}

/// `kind` running in group `group` with a 100 ms heartbeat, once its status
/// shows it stalled.
async fn spawn_until_stalled(
    env: &Env,
    kind: ProjectorKind,
    group: &str,
) -> (Running, queries::ProjectorStatus) {
    let name = kind.name();
    let mut config = env.config(group);
    config.heartbeat = Duration::from_millis(100);
    let running = Running::spawn(kind, config, env.pool().clone());
    let stalled = format!("{name} stalled");
    let status = status_where(env.pool(), name, &stalled, |s| s.state == "stalled").await;
    (running, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_it_cannot_apply_stalls_the_projector_visibly_naming_it() {
    // The process's metrics (each nextest test is a process of its own).
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let (script, _specs) =
        scripted_day(restaurant, CustomerId::new_random(), RiderId::new_random());
    // An unknown event type on the orders topic, first on its partition.
    let mut bad = script.envelopes[0].clone();
    bad.event_type = "OrderTeleported".into();
    bad.payload = serde_json::json!({"type": "OrderTeleported"});
    env.produce(&[bad.clone()]).await;
    let (running, status) = spawn_until_stalled(&env, ProjectorKind::OrderHistory, "poison").await;
    let event = status
        .stalled_event
        .clone()
        .expect("the stalled event is named");
    assert_eq!(
        event["event_id"],
        serde_json::json!(bad.event_id),
        "{event}"
    );
    assert_eq!(event["event_type"], "OrderTeleported", "{event}");
    // Ops see it as a metric too (alert OrdertrailConsumerStalled).
    if let Some(metrics) = &metrics {
        let rendered = metrics.render();
        assert!(
            rendered
                .lines()
                .any(|l| l == "consumer_stalled{consumer=\"order_history\"} 1"),
            "consumer_stalled gauge: {rendered}"
        );
    }
    let origin = event["origin"].as_str().unwrap_or_default();
    assert!(
        origin.contains(&format!("{}.orders", env.kafka.prefix)) && origin.contains("offset 0"),
        "{origin}"
    );
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(&bad.event_id.to_string())),
        "{status:?}"
    );
    // It stays up, applies nothing past the event and does not skip it.
    assert!(!running.handle.is_finished(), "the projector keeps running");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM order_history")
        .fetch_one(env.pool())
        .await
        .unwrap_or_default();
    assert_eq!(applied, 0);
    let past: Option<i64> = sqlx::query_scalar(
        "SELECT max(next_offset) FROM projector_offsets WHERE projector = 'order_history'",
    )
    .fetch_one(env.pool())
    .await
    .unwrap_or_default();
    assert_eq!(
        past.unwrap_or(0),
        0,
        "its position did not move past the event"
    );
    running.stop().await;

    // An undecodable message stalls it too, naming where it sits.
    let mut env2 = Env::start().await;
    env2.produce_raw(AggregateKind::Payment, "k", b"not json")
        .await;
    let (running, status) = spawn_until_stalled(&env2, ProjectorKind::Settlements, "poison2").await;
    let event = status.stalled_event.clone().expect("stalled event");
    let reason = event["reason"].as_str().unwrap_or_default();
    let origin = event["origin"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot decode envelope") && origin.contains("payments"),
        "{event}"
    );
    running.stop().await;
}

/// Retention removes sequence-guard rows of aggregates the store position
/// has passed (`ordertrail_platform::consumer::prune_guards`). A duplicate
/// of any of their events (the relay re-publishing everything) must still
/// be dropped, through the fallback to the store position, and the guard
/// must not come back for events that were dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_sequence_guards_still_drop_old_duplicates() {
    let mut env = Env::start().await;
    let restaurant = RestaurantId::new_random();
    let n = 12;
    let script = many_orders(n, restaurant);
    crate::support::store_events(env.pool(), &script.envelopes).await;
    let kinds = [AggregateKind::Order, AggregateKind::Payment];
    let settle = Running::spawn(
        ProjectorKind::Settlements,
        env.config("prune"),
        env.pool().clone(),
    );
    // Caught up from the store: its store position is the last event of its types.
    let pool = env.pool().clone();
    eventually(
        "settlements to catch up from the store",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            async move {
                let done: bool = sqlx::query_scalar(
                    "SELECT coalesce((SELECT store_position FROM consumers WHERE consumer = 'settlements'), 0)
                            = (SELECT max(global_position) FROM events WHERE aggregate_type IN ('Order', 'Payment'))",
                )
                .fetch_one(&pool)
                .await
                .ok()?;
                done.then_some(())
            }
        },
    )
    .await;
    let n = n as i64;
    let expected = (n, n * 2_899, n * (25 + 35));
    assert_eq!(
        settlement_orders_total(env.pool(), restaurant).await,
        expected
    );

    let guards = "SELECT count(*) FROM projector_sequences WHERE projector = 'settlements'";
    let before: i64 = sqlx::query_scalar(guards)
        .fetch_one(env.pool())
        .await
        .unwrap_or_default();
    assert_eq!(before, n * 2, "one guard row per order and per payment");
    let pruned =
        ordertrail_platform::consumer::prune_guards(env.pool(), "settlements", Duration::ZERO)
            .await
            .expect("prune guards");
    assert_eq!(pruned as i64, before);

    // Everything again on Kafka, as a relay that lost its checkpoint would.
    env.produce(&script.envelopes).await;
    env.caught_up("settlements", &kinds).await;
    settle.stop().await;
    assert_eq!(
        settlement_orders_total(env.pool(), restaurant).await,
        expected
    );
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM settlement_entries")
        .fetch_one(env.pool())
        .await
        .unwrap_or_default();
    assert_eq!(entries, n * 3, "no entry applied twice");
    let after: i64 = sqlx::query_scalar(guards)
        .fetch_one(env.pool())
        .await
        .unwrap_or_default();
    assert_eq!(after, 0, "dropped duplicates write no guard");
}
