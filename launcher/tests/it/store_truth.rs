//! The event store is the truth for every consumer: rebuild and verify from
//! the store, recovery when the broker lost its data or the topics were
//! recreated, and the platform started twice on one database with a fresh
//! broker each time. Everything runs in-process (the launcher's `Stack`)
//! against the real PostgreSQL and Kafka-protocol broker of the testkit.

use std::process::Stdio;
use std::sync::Arc;

use chrono::Utc;
use ordertrail_commands::service::{CommandContext, CommandService};
use ordertrail_domain::SimulatedProvider;
use ordertrail_domain::order::AcceptOrder;
use ordertrail_domain::payment::RefundPayment;
use ordertrail_launcher::all_projectors;
use ordertrail_launcher::seed::seed_ids;
use ordertrail_projections::ProjectorKind;
use ordertrail_projections::rider_etas::EtaSettings;
use ordertrail_schemas::{
    Actor, ActorRole, Currency, CustomerId, Money, OrderId, PaymentId, RestaurantId, RiderId,
};
use ordertrail_testkit::eventually;
use ordertrail_testkit::kafka::TestKafka;
use ordertrail_testkit::pg::{TestDatabase, dump};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{Platform, WAIT, binary, place_card_order, seeded_platform};

/// Every table of every read model, with the columns to sort a dump by.
const TABLES: [(&str, &str); 10] = [
    ("order_history", "order_id"),
    ("order_history_payments", "payment_id"),
    ("order_history_deliveries", "delivery_id"),
    ("order_timeline", "event_id"),
    ("rider_etas", "delivery_id"),
    ("settlement_orders", "order_id"),
    ("settlement_payments", "payment_id"),
    ("settlement_entries", "event_id"),
    (
        "restaurant_settlement_days",
        "restaurant_id, business_day, currency",
    ),
    ("provider_settlement_days", "provider, day, currency"),
];

/// Ops (`ops-store-truth`) sending request `request_id`.
fn ops_request(request_id: &str) -> CommandContext {
    CommandContext::new(
        Actor {
            subject: "ops-store-truth".into(),
            role: ActorRole::Ops,
        },
        request_id,
    )
}

/// Ops refund `amount_minor` EUR cents of `order`'s card payment, for `reason`.
async fn refund(
    service: &CommandService,
    request_id: &str,
    order: OrderId,
    amount_minor: i64,
    reason: &str,
) {
    let refund = RefundPayment {
        amount: Money::new(amount_minor, Currency::EUR),
        reason: reason.into(),
        order_price: None,
        now: Utc::now(),
    };
    let refunded = service
        .execute(
            &ops_request(request_id),
            PaymentId::for_order(order),
            refund.into(),
        )
        .await
        .expect("refund");
    assert!(refunded.has_event("PaymentRefunded"), "{refunded:?}");
}

async fn dump_all(pool: &PgPool) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (table, key) in TABLES {
        out.push(dump(pool, table, key).await);
    }
    out
}

async fn verify_clean(pool: &PgPool) {
    for kind in all_projectors() {
        let name = kind.name();
        let report = ordertrail_projections::verify(kind, pool, 7, 10, &mut |_| {})
            .await
            .unwrap_or_else(|e| panic!("verify {name}: {e}"));
        assert!(
            report.is_clean(),
            "{name} differs from a rebuild: {report:?}"
        );
        assert!(report.events > 0, "{name} verified nothing: {report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_equals_live_and_verify_reports_tampered_rows_precisely() {
    let (db, _kafka, stack, commands) = seeded_platform().await;
    let pool = db.pool.clone();
    let rider = RiderId(seed_ids::rider(1));
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(
            commands
                .delivered_card_order(CustomerId(Uuid::new_v4()), rider)
                .await,
        );
    }
    refund(
        &commands.service,
        "req-refund",
        orders[0],
        500,
        "cold fries",
    )
    .await;
    // A refused capture (PaymentCaptureFailed) is in the models too: the
    // provider refuses a capture whose idempotency key it saw with other
    // parameters.
    let provider = Arc::new(SimulatedProvider::new());
    let service = CommandService::new(pool.clone(), provider.clone());
    let refused = place_card_order(&service).await;
    let ops = || ops_request("req-capture");
    let payment = PaymentId::for_order(refused);
    let placed = service
        .load_order(refused)
        .await
        .expect("load")
        .expect("order")
        .0;
    let price = placed.price().expect("price").total;
    let authorized = service
        .execute(
            &ops(),
            payment,
            ordertrail_domain::payment::AuthorizePayment {
                payment_id: payment,
                order_id: refused,
                restaurant_id: RestaurantId(seed_ids::BERLIN_BURGERS),
                amount: price,
                payment_method_ref: ordertrail_schemas::privacy::payment_method_ref("tok_visa"),
                now: Utc::now(),
            }
            .into(),
        )
        .await
        .expect("authorize");
    assert!(authorized.has_event("PaymentAuthorized"), "{authorized:?}");
    let command_id = Uuid::new_v4();
    let capture_ctx = ops().caused_by(command_id, command_id, command_id);
    use ordertrail_domain::provider::PaymentProvider;
    provider
        .capture(
            &format!("sim_auth_{payment}"),
            Money::new(1, price.currency),
            &format!("ot-{command_id}"),
        )
        .await
        .expect("a capture under the key");
    let failed = service
        .execute(
            &capture_ctx,
            payment,
            ordertrail_domain::payment::CapturePayment {
                amount: None,
                order_delivered: false,
                override_reason: Some("test: capture early".into()),
                now: Utc::now(),
            }
            .into(),
        )
        .await
        .expect("capture recorded");
    assert!(failed.has_event("PaymentCaptureFailed"), "{failed:?}");
    stack.caught_up().await;

    // A clean model verifies clean, and a rebuild changes nothing.
    verify_clean(&pool).await;
    let before = dump_all(&pool).await;
    for kind in all_projectors() {
        let name = kind.name();
        let summary = ordertrail_projections::rebuild(kind, &pool, 5, &mut |_| {})
            .await
            .unwrap_or_else(|e| panic!("rebuild {name}: {e}"));
        assert!(summary.events > 0, "{summary:?}");
    }
    assert_eq!(
        dump_all(&pool).await,
        before,
        "a rebuild equals the live model"
    );
    // No shadow schema is left behind.
    let shadows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'replay\\_%'")
            .fetch_one(&pool)
            .await
            .expect("schemas");
    assert_eq!(shadows, 0);
    // The live projectors keep working on the swapped tables.
    let another = commands
        .delivered_card_order(CustomerId(Uuid::new_v4()), rider)
        .await;
    stack.caught_up().await;
    let status: String = sqlx::query_scalar("SELECT status FROM order_history WHERE order_id = $1")
        .bind(another.0)
        .fetch_one(&pool)
        .await
        .expect("the order placed after the swap is projected");
    assert_eq!(status, "delivered");

    // Tampered rows are reported with their key and the differing columns.
    let (restaurant, day, tips): (Uuid, chrono::NaiveDate, i64) = sqlx::query_as(
        "UPDATE restaurant_settlement_days SET tips_minor = tips_minor + 7
         WHERE restaurant_id = $1 RETURNING restaurant_id, business_day, tips_minor::bigint",
    )
    .bind(seed_ids::BERLIN_BURGERS)
    .fetch_one(&pool)
    .await
    .expect("tamper settlements");
    let removed: Uuid = sqlx::query_scalar(
        "DELETE FROM order_timeline WHERE event_id =
           (SELECT event_id FROM order_timeline ORDER BY global_position LIMIT 1)
         RETURNING event_id",
    )
    .fetch_one(&pool)
    .await
    .expect("tamper the timeline");

    let report =
        ordertrail_projections::verify(ProjectorKind::Settlements, &pool, 100, 10, &mut |_| {})
            .await
            .expect("verify settlements");
    assert_eq!(report.differences_total, 1, "{report:?}");
    let d = &report.differences[0];
    assert_eq!(d.table, "restaurant_settlement_days");
    assert_eq!(d.kind, "different");
    assert_eq!(d.key["restaurant_id"], serde_json::json!(restaurant));
    assert_eq!(d.key["business_day"], serde_json::json!(day));
    assert_eq!(d.columns.len(), 1, "{d:?}");
    assert_eq!(d.columns[0].column, "tips_minor");
    assert_eq!(d.columns[0].live, serde_json::json!(tips));
    assert_eq!(d.columns[0].rebuilt, serde_json::json!(tips - 7));

    let report =
        ordertrail_projections::verify(ProjectorKind::OrderHistory, &pool, 100, 10, &mut |_| {})
            .await
            .expect("verify order history");
    assert_eq!(report.differences_total, 1, "{report:?}");
    let d = &report.differences[0];
    assert_eq!(
        (d.table.as_str(), d.kind),
        ("order_timeline", "missing_in_live")
    );
    assert_eq!(d.key["event_id"], serde_json::json!(removed));

    // Rider ETAs were not touched: clean.
    let report = ordertrail_projections::verify(
        ProjectorKind::RiderEtas(EtaSettings::default()),
        &pool,
        100,
        10,
        &mut |_| {},
    )
    .await
    .expect("verify rider ETAs");
    assert!(report.is_clean(), "{report:?}");

    // A rebuild repairs what was tampered with.
    for kind in [ProjectorKind::Settlements, ProjectorKind::OrderHistory] {
        ordertrail_projections::rebuild(kind, &pool, 100, &mut |_| {})
            .await
            .expect("rebuild");
    }
    verify_clean(&pool).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_rebuild_leaves_the_live_model_untouched_and_a_rerun_completes() {
    let (db, _kafka, stack, commands) = seeded_platform().await;
    let pool = db.pool.clone();
    for _ in 0..2 {
        commands
            .delivered_card_order(CustomerId(Uuid::new_v4()), RiderId(seed_ids::rider(2)))
            .await;
    }
    stack.caught_up().await;
    let before = dump_all(&pool).await;

    // Hold the live projector's row so the rebuild stops right before its
    // swap, with its shadow tables full; kill it there.
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM consumers WHERE consumer = 'order_history' FOR SHARE")
        .execute(&mut *holder)
        .await
        .expect("hold the row");
    let binary = binary("ordertrail-order-history");
    let mut child = std::process::Command::new(&binary)
        .args(["rebuild", "--quiet", "--store-batch-size", "3"])
        .env("DATABASE_URL", &db.url)
        .env_remove("KAFKA_BROKERS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the rebuild");
    eventually("the rebuild waits to swap", WAIT, || async {
        let filled: Option<i64> =
            sqlx::query_scalar("SELECT count(*) FROM replay_order_history.order_timeline")
                .fetch_one(&pool)
                .await
                .ok();
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%' AND datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (filled.unwrap_or(0) > 0 && waiting > 0).then_some(())
    })
    .await;
    assert!(
        child.try_wait().expect("status").is_none(),
        "the rebuild is still running when killed"
    );
    child.kill().expect("kill -9");
    let status = child.wait().expect("reap");
    assert!(!status.success());
    holder.rollback().await.expect("release");
    assert_eq!(dump_all(&pool).await, before, "the live model is untouched");

    // Once the killed process's sessions are gone, a second run starts over
    // and completes.
    eventually("the killed rebuild's sessions end", WAIT, || async {
        let mut conn = pool.acquire().await.ok()?;
        let free: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext('ordertrail replay order_history'))",
        )
        .fetch_one(&mut *conn)
        .await
        .ok()?;
        if free {
            sqlx::query("SELECT pg_advisory_unlock(hashtext('ordertrail replay order_history'))")
                .execute(&mut *conn)
                .await
                .ok()?;
        }
        free.then_some(())
    })
    .await;
    // `ordertrail-order-history <command> --quiet --json` on the test database.
    let run = |command: &'static str| {
        tokio::process::Command::new(&binary)
            .args([command, "--quiet", "--json"])
            .env("DATABASE_URL", &db.url)
            .env_remove("KAFKA_BROKERS")
            .output()
    };
    let rerun = run("rebuild").await.expect("rerun");
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("summary");
    assert!(summary["events"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert_eq!(dump_all(&pool).await, before);
    // Verify from the binary: exit 0 on a clean model.
    let verify = run("verify").await.expect("verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    stack.stop().await;
}

/// Orders placed concurrently interleave in the store and each spans many
/// small batches of the bulk fill: every read model rebuilt this way (the
/// bulk path, `COPY` into the shadow) equals the live one, and verifies clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_rebuild_of_orders_spanning_many_batches_equals_the_live_model() {
    let (db, _kafka, stack, commands) = seeded_platform().await;
    let pool = db.pool.clone();
    let (a, b, c, d) = tokio::join!(
        commands.delivered_card_order(CustomerId(Uuid::new_v4()), RiderId(seed_ids::rider(1))),
        commands.delivered_card_order(CustomerId(Uuid::new_v4()), RiderId(seed_ids::rider(2))),
        commands.delivered_card_order(CustomerId(Uuid::new_v4()), RiderId(seed_ids::rider(1))),
        commands.delivered_card_order(CustomerId(Uuid::new_v4()), RiderId(seed_ids::rider(2))),
    );
    let orders = [a, b, c, d];
    // The orders' events interleave in commit order.
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'Order'
         ORDER BY transaction_id, global_position",
    )
    .fetch_all(&pool)
    .await
    .expect("store");
    let switches = owners.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches > orders.len(), "orders interleave: {owners:?}");
    stack.caught_up().await;
    let before = dump_all(&pool).await;

    for kind in all_projectors() {
        let name = kind.name();
        let summary = ordertrail_projections::rebuild(kind, &pool, 3, &mut |_| {})
            .await
            .unwrap_or_else(|e| panic!("rebuild {name}: {e}"));
        assert!(
            summary.events > 3 * 5 && summary.bulk_events == summary.events,
            "{name}: every event through the bulk fill, in many batches: {summary:?}"
        );
    }
    assert_eq!(
        dump_all(&pool).await,
        before,
        "a bulk rebuild equals the live model"
    );
    verify_clean(&pool).await;
    stack.stop().await;
}

/// The saga authorizes and confirms a card order; the restaurant accepts; the
/// saga requests the delivery. Then the order is in every read model.
async fn drive_and_see_everywhere(pool: &PgPool, service: &CommandService, order: OrderId) {
    eventually("the saga confirms the order", WAIT, || async {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM order_history WHERE order_id = $1")
                .bind(order.0)
                .fetch_optional(pool)
                .await
                .ok()?;
        (status.as_deref() == Some("confirmed")).then_some(())
    })
    .await;
    let accepted = service
        .execute(
            &CommandContext::new(
                Actor {
                    subject: seed_ids::BERLIN_BURGERS.to_string(),
                    role: ActorRole::Restaurant,
                },
                format!("req-{}", Uuid::new_v4()),
            ),
            order,
            AcceptOrder {
                preparation_minutes: 10,
                now: Utc::now(),
            }
            .into(),
        )
        .await
        .expect("accept");
    assert!(accepted.has_event("OrderAccepted"), "{accepted:?}");
    eventually("the order is in every read model", WAIT, || async {
        let (history, etas, settlement): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM order_history WHERE order_id = $1 AND status = 'accepted'),
                    (SELECT count(*) FROM rider_etas WHERE order_id = $1),
                    (SELECT count(*) FROM settlement_orders WHERE order_id = $1)",
        )
        .bind(order.0)
        .fetch_one(pool)
        .await
        .ok()?;
        (history == 1 && etas == 1 && settlement == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_started_twice_with_a_fresh_broker_each_time_drives_every_new_order() {
    ordertrail_testkit::init_test_logging();
    let probe = TestKafka::start();
    if !probe.is_mock() {
        eprintln!(
            "skipped: needs fresh brokers (the embedded one), KAFKA_BROKERS names a real one"
        );
        return;
    }
    drop(probe);
    let db = TestDatabase::new().await;
    ordertrail_launcher::seed::seed(&db.pool)
        .await
        .expect("seed");
    let pool = db.pool.clone();
    let service = CommandService::new(pool.clone(), Arc::new(SimulatedProvider::new()));
    let prefix = format!("restart{}", &Uuid::new_v4().simple().to_string()[..8]);

    for start in 0..3 {
        let kafka = TestKafka::start_with_prefix(&prefix);
        let stack = Platform::start(&pool, &kafka, true).await;
        for _ in 0..2 {
            let order = place_card_order(&service).await;
            drive_and_see_everywhere(&pool, &service, order).await;
        }
        stack.caught_up().await;
        let recovered: i64 = if start == 0 {
            0
        } else {
            sqlx::query_scalar("SELECT count(*) FROM consumers WHERE kafka_cluster IS NOT NULL")
                .fetch_one(&pool)
                .await
                .expect("consumers")
        };
        if start > 0 {
            assert_eq!(recovered, 4, "every consumer records the broker it follows");
        }
        stack.stop().await;
        drop(kafka);
    }
    verify_clean(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_offsets_point_past_the_end_of_recreated_topics_recovers_from_the_store() {
    let (db, _kafka, stack, commands) = seeded_platform().await;
    let pool = db.pool.clone();
    let first = commands
        .delivered_card_order(CustomerId(Uuid::new_v4()), RiderId(seed_ids::rider(3)))
        .await;
    stack.caught_up().await;
    // The topics as a recreated (or truncated) topic would leave them:
    // positions far beyond what the partitions now hold, pointing at events
    // the broker does not have there.
    let moved = sqlx::query(
        "UPDATE projector_offsets SET next_offset = next_offset + 1000, last_event_id = gen_random_uuid()
         WHERE next_offset > 0",
    )
    .execute(&pool)
    .await
    .expect("move positions")
    .rows_affected();
    assert!(moved >= 3, "every projector had positions to move");
    eventually("every consumer drops the positions", WAIT, || async {
        let beyond: i64 =
            sqlx::query_scalar("SELECT count(*) FROM projector_offsets WHERE next_offset > 1000")
                .fetch_one(&pool)
                .await
                .ok()?;
        (beyond == 0).then_some(())
    })
    .await;
    // New events, on the same partitions and on others, reach every model.
    refund(
        &commands.service,
        "req-refund-recreated",
        first,
        300,
        "late",
    )
    .await;
    let order = commands
        .delivered_card_order(CustomerId(Uuid::new_v4()), RiderId(seed_ids::rider(3)))
        .await;
    stack.caught_up().await;
    let status: String = sqlx::query_scalar("SELECT status FROM order_history WHERE order_id = $1")
        .bind(order.0)
        .fetch_one(&pool)
        .await
        .expect("projected");
    assert_eq!(status, "delivered");
    let refunded: i64 =
        sqlx::query_scalar("SELECT refunded_minor FROM order_history_payments WHERE order_id = $1")
            .bind(first.0)
            .fetch_one(&pool)
            .await
            .expect("payment row");
    assert_eq!(refunded, 300);
    verify_clean(&pool).await;
    stack.stop().await;
}
