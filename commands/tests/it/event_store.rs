//! The event store under the command service: metadata, optimistic
//! concurrency and idempotent appends, against a real PostgreSQL.

use std::sync::Arc;

use chrono::{Duration, Utc};
use ordertrail_commands::service::{
    CommandContext, CommandError, CommandOutcome, CommandService, IdempotencyKey,
};
use ordertrail_domain::delivery::{AssignRider, ReportLocation, RequestDelivery};
use ordertrail_domain::{DeliveryCommand, ErrorKind, SimulatedProvider};
use ordertrail_launcher::seed::seed_ids;
use ordertrail_schemas::{
    Actor, ActorRole, CustomerId, DeliveryId, EventMetadata, GeoPoint, MenuItemId, OrderId,
    RestaurantId, RiderId,
};
use ordertrail_testkit::pg::TestDatabase;

use crate::support::{berlin_order, card, customer, ops};

async fn service() -> (TestDatabase, CommandService) {
    let db = TestDatabase::with_pool_size(20).await;
    ordertrail_launcher::seed::seed(&db.pool)
        .await
        .expect("seed");
    let service = CommandService::new(db.pool.clone(), Arc::new(SimulatedProvider::default()));
    (db, service)
}

async fn count_events(db: &TestDatabase) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .expect("count")
}

/// A delivery with no rider yet, requested directly.
async fn requested_delivery(service: &CommandService) -> DeliveryId {
    let id = DeliveryId::new_random();
    let command = RequestDelivery {
        delivery_id: id,
        order_id: OrderId::new_random(),
        restaurant_id: RestaurantId(seed_ids::BERLIN_BURGERS),
        pickup: GeoPoint {
            lat: 52.4990,
            lon: 13.4180,
        },
        dropoff: GeoPoint {
            lat: 52.5010,
            lon: 13.4190,
        },
        dropoff_code_hash: ordertrail_schemas::privacy::DropoffCodeKey::for_tests()
            .hash(id, "4711"),
        ready_by: None,
        now: Utc::now(),
    };
    service
        .execute(
            &CommandContext::new(ops(), "req"),
            id,
            DeliveryCommand::RequestDelivery(command),
        )
        .await
        .expect("request delivery");
    id
}

#[tokio::test]
async fn every_event_carries_the_command_metadata_and_store_columns() {
    let (db, service) = service().await;
    let customer_id = CustomerId::new_random();
    let ctx = CommandContext::new(customer(customer_id), "req-meta");
    let outcome = service
        .run(&ctx, berlin_order(customer_id, card("tok_visa")))
        .await
        .expect("place");
    assert_eq!(outcome.version, 1);
    assert_eq!(outcome.events.len(), 1);
    assert_eq!(outcome.events[0].event_type, "OrderPlaced");
    // Server-side pricing: 2 × 990 + 450 = 2430 subtotal.
    assert_eq!(
        outcome.events[0].payload["price"]["subtotal"]["amount"],
        2_430
    );

    let (metadata, gp, tx_set, event_id_set): (serde_json::Value, i64, bool, bool) = sqlx::query_as(
        "SELECT metadata::jsonb, global_position, transaction_id IS NOT NULL, event_id IS NOT NULL
         FROM events WHERE aggregate_id = $1",
    )
    .bind(&outcome.aggregate_id)
    .fetch_one(&db.pool)
    .await
    .expect("stored event");
    let map = serde_json::from_value(metadata).expect("string map");
    let meta = EventMetadata::from_map(&map).expect("complete metadata");
    assert_eq!(meta.command_id, ctx.command_id());
    assert_eq!(meta.actor.role, ActorRole::Customer);
    assert_eq!(meta.actor.subject, customer_id.to_string());
    assert_eq!(meta.request_id, "req-meta");
    assert!(gp > 0 && tx_set && event_id_set);
}

#[tokio::test]
async fn racing_riders_one_wins_the_others_conflict_and_nothing_is_overwritten() {
    let (db, service) = service().await;
    let delivery = requested_delivery(&service).await;
    let mut tasks = Vec::new();
    for n in 1..=8u128 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let rider = RiderId(seed_ids::rider(n));
            let ctx = CommandContext::new(
                Actor {
                    subject: rider.to_string(),
                    role: ActorRole::Rider,
                },
                "race",
            );
            service
                .execute(
                    &ctx,
                    delivery,
                    DeliveryCommand::AssignRider(AssignRider {
                        rider_id: rider,
                        now: Utc::now(),
                    }),
                )
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(outcome) => {
                won += 1;
                assert_eq!(outcome.version, 2);
            }
            // Lost the race at the store (concurrency_conflict) or loaded after
            // the winner and was told the delivery is taken: both are 409s.
            Err(e) => assert_eq!(
                e.kind(),
                Some(ErrorKind::Conflict),
                "unexpected {e:?} ({})",
                e.code()
            ),
        }
    }
    assert_eq!(won, 1);
    let assigned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'RiderAssigned'",
    )
    .bind(delivery.to_string())
    .fetch_one(&db.pool)
    .await
    .expect("count");
    assert_eq!(assigned, 1);
}

#[tokio::test]
async fn concurrent_commands_on_one_aggregate_never_lose_or_overwrite_events() {
    let (db, service) = service().await;
    let delivery = requested_delivery(&service).await;
    let rider = RiderId(seed_ids::rider(1));
    let rider_actor = Actor {
        subject: rider.to_string(),
        role: ActorRole::Rider,
    };
    service
        .execute(
            &CommandContext::new(rider_actor.clone(), "assign"),
            delivery,
            DeliveryCommand::AssignRider(AssignRider {
                rider_id: rider,
                now: Utc::now(),
            }),
        )
        .await
        .expect("assign");
    let base = Utc::now() - Duration::seconds(60);
    let mut tasks = Vec::new();
    for i in 0..16i64 {
        let service = service.clone();
        let actor = rider_actor.clone();
        tasks.push(tokio::spawn(async move {
            let command = ReportLocation {
                rider_id: rider,
                location: GeoPoint {
                    lat: 52.4990 + i as f64 * 1e-5,
                    lon: 13.4180,
                },
                // Far enough apart that any arrival order is a plausible track.
                reported_at: base + Duration::seconds(i),
                accuracy_m: None,
                now: Utc::now(),
            };
            service
                .execute(
                    &CommandContext::new(actor, "loc"),
                    delivery,
                    DeliveryCommand::ReportLocation(command),
                )
                .await
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => succeeded += 1,
            Err(CommandError::Conflict { .. }) => {}
            // A report older than one that won is correctly refused.
            Err(CommandError::Rejected {
                code: "location_timestamp_regressed",
                ..
            }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert!(succeeded >= 1);
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(delivery.to_string())
            .fetch_all(&db.pool)
            .await
            .expect("sequences");
    // Requested + assigned + exactly one event per successful report, no gaps.
    assert_eq!(sequences.len() as i64, 2 + succeeded);
    assert_eq!(sequences, (1..=sequences.len() as i64).collect::<Vec<_>>());
    assert_eq!(count_events(&db).await, 2 + succeeded);
}

fn keyed(actor: Actor, key: &str, hash: &str) -> CommandContext {
    CommandContext::new(actor, "req").with_idempotency_key(IdempotencyKey {
        key: key.into(),
        request_hash: hash.into(),
    })
}

/// `customer_id` places the Berlin order under idempotency key `key` with
/// request hash `hash`.
async fn place_keyed(
    service: &CommandService,
    customer_id: CustomerId,
    key: &str,
    hash: &str,
) -> Result<CommandOutcome, CommandError> {
    service
        .run(
            &keyed(customer(customer_id), key, hash),
            berlin_order(customer_id, card("tok_visa")),
        )
        .await
}

#[tokio::test]
async fn a_retried_command_returns_the_first_result_and_appends_nothing() {
    let (db, service) = service().await;
    let customer_id = CustomerId::new_random();
    let first = place_keyed(&service, customer_id, "k1", "h1")
        .await
        .expect("first");
    let again = place_keyed(&service, customer_id, "k1", "h1")
        .await
        .expect("retry");
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(first.aggregate_id, again.aggregate_id);
    assert_eq!(first.events, again.events);
    assert_eq!(count_events(&db).await, 1);

    let reused = place_keyed(&service, customer_id, "k1", "other-body").await;
    assert!(matches!(reused, Err(CommandError::IdempotencyKeyReused)));
    // The same key from another customer is another command.
    let other = CustomerId::new_random();
    let theirs = place_keyed(&service, other, "k1", "h1")
        .await
        .expect("other");
    assert_ne!(theirs.aggregate_id, first.aggregate_id);
    assert_eq!(count_events(&db).await, 2);
}

#[tokio::test]
async fn identical_requests_racing_append_once() {
    let (db, service) = service().await;
    let customer_id = CustomerId::new_random();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            place_keyed(&service, customer_id, "race-key", "h").await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let outcome = task
            .await
            .expect("join")
            .expect("every twin gets the first result");
        ids.insert(outcome.aggregate_id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(count_events(&db).await, 1);
}

/// Places the Berlin order under `key`, lets `crash` undo in the store what a
/// crash can lose, and retries: the retry gets the first order and appends
/// nothing. Returns the first outcome.
async fn retried_after(crash: &str, key: &str) -> CommandOutcome {
    let (db, service) = service().await;
    let customer_id = CustomerId::new_random();
    let first = place_keyed(&service, customer_id, key, "h")
        .await
        .expect("first");
    sqlx::query(crash)
        .execute(&db.pool)
        .await
        .expect("what the crash lost");
    let retry = place_keyed(&service, customer_id, key, "h")
        .await
        .expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry.aggregate_id, first.aggregate_id);
    assert_eq!(retry.version, first.version);
    assert_eq!(retry.events, first.events);
    assert_eq!(count_events(&db).await, 1);
    first
}

#[tokio::test]
async fn a_retry_after_a_crash_between_append_and_response_appends_nothing() {
    // The process died after the commit and before it recorded the response:
    // the key row is still "in progress".
    retried_after(
        "UPDATE idempotency_keys SET status_code = NULL, response = NULL, completed_at = NULL",
        "crash-key",
    )
    .await;
}

#[tokio::test]
async fn a_retry_whose_key_row_was_lost_gets_the_first_order_and_appends_nothing() {
    // Key rows commit asynchronously: a crash can lose one whose events are
    // durable. The retry then claims the key afresh, decides on the same
    // order, is refused the append and answered with the first order.
    // A time-ordered key (what our clients send) gives a time-ordered order id.
    let key = uuid::Uuid::now_v7();
    let first = retried_after("DELETE FROM idempotency_keys", &key.to_string()).await;
    let order_id = uuid::Uuid::parse_str(&first.aggregate_id).expect("order id");
    assert_eq!(order_id.get_version_num(), 7, "{order_id}");
    assert_eq!(order_id.get_timestamp(), key.get_timestamp());
}

#[tokio::test]
async fn a_retried_rejection_gets_the_same_rejection() {
    let (db, service) = service().await;
    let customer_id = CustomerId::new_random();
    let mut input = berlin_order(customer_id, card("tok_visa"));
    input.items = vec![];
    let ctx = keyed(customer(customer_id), "empty", "h");
    let first = service
        .run(&ctx, input.clone())
        .await
        .expect_err("empty order");
    let again = service.run(&ctx, input).await.expect_err("still empty");
    assert_eq!(first.code(), again.code());
    assert_eq!(first.kind(), Some(ErrorKind::Invalid));
    assert_eq!(count_events(&db).await, 0);
}

#[tokio::test]
async fn unknown_references_are_rejected_before_anything_is_appended() {
    let (db, service) = service().await;
    let customer_id = CustomerId::new_random();
    let mut input = berlin_order(customer_id, card("tok_visa"));
    input.restaurant_id = RestaurantId::new_random();
    let e = service
        .run(&CommandContext::new(customer(customer_id), "r"), input)
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), "restaurant_not_found");
    let mut input = berlin_order(customer_id, card("tok_visa"));
    input.items.push((MenuItemId::new_random(), 1));
    let e = service
        .run(&CommandContext::new(customer(customer_id), "r"), input)
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), "menu_item_not_found");
    assert_eq!(count_events(&db).await, 0);
}

fn serialized(
    aggregate_id: &str,
    sequence: usize,
    event_type: &str,
    command: uuid::Uuid,
) -> cqrs_es::persist::SerializedEvent {
    cqrs_es::persist::SerializedEvent::new(
        aggregate_id.to_owned(),
        sequence,
        "Delivery".to_owned(),
        event_type.to_owned(),
        "1".to_owned(),
        serde_json::json!({ "n": sequence }),
        serde_json::json!({ "command_id": command.to_string() }),
    )
}

#[tokio::test]
async fn one_statement_append_keeps_order_and_is_all_or_nothing() {
    use cqrs_es::persist::{PersistedEventRepository, PersistenceError};
    use ordertrail_commands::event_store::EventRepository;
    use ordertrail_domain::Delivery;

    let (db, _service) = service().await;
    let repo = EventRepository::new(db.pool.clone());
    let id = uuid::Uuid::new_v4().to_string();
    let first = uuid::Uuid::new_v4();
    let events: Vec<_> = (1..=3)
        .map(|n| serialized(&id, n, &format!("E{n}"), first))
        .collect();
    repo.persist::<Delivery>(&events, None)
        .await
        .expect("append");

    let rows: Vec<(i64, String, i64, uuid::Uuid)> = sqlx::query_as(
        "SELECT sequence, event_type, global_position, event_id FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&db.pool)
    .await
    .expect("rows");
    assert_eq!(
        rows.iter().map(|r| (r.0, r.1.as_str())).collect::<Vec<_>>(),
        vec![(1, "E1"), (2, "E2"), (3, "E3")]
    );
    assert!(
        rows.windows(2).all(|w| w[0].2 < w[1].2),
        "global positions follow the sequence: {rows:?}"
    );
    // Event ids are time-ordered (UUIDv7) and, within a commit, grow with the
    // position: `events_event_id` takes appends at its right edge.
    assert!(
        rows.iter().all(|r| r.3.get_version_num() == 7),
        "UUIDv7 event ids: {rows:?}"
    );
    assert!(
        rows.windows(2).all(|w| w[0].3 < w[1].3),
        "event ids grow with the position: {rows:?}"
    );
    let logged: (i64, i64) = sqlx::query_as(
        "SELECT first_sequence, last_sequence FROM command_log WHERE command_id = $1",
    )
    .bind(first)
    .fetch_one(&db.pool)
    .await
    .expect("command log");
    assert_eq!(logged, (1, 3));

    // A batch whose second event takes a used sequence conflicts and leaves
    // nothing behind, not even its first event.
    let second = uuid::Uuid::new_v4();
    let clash = vec![
        serialized(&id, 4, "E4", second),
        serialized(&id, 3, "E3bis", second),
    ];
    let err = repo
        .persist::<Delivery>(&clash, None)
        .await
        .expect_err("conflict");
    assert!(
        matches!(err, PersistenceError::OptimisticLockError),
        "{err:?}"
    );
    // The same command id appending again is a conflict too (command_log).
    let again = vec![serialized(&id, 4, "E4", first)];
    let err = repo
        .persist::<Delivery>(&again, None)
        .await
        .expect_err("duplicate command");
    assert!(
        matches!(err, PersistenceError::OptimisticLockError),
        "{err:?}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(count, 3);
    let loaded = repo.get_events::<Delivery>(&id).await.expect("load");
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded[2].payload, serde_json::json!({ "n": 3 }));
}

#[tokio::test]
async fn two_aggregates_load_in_one_query_exactly_as_one_at_a_time() {
    use cqrs_es::persist::PersistedEventRepository;
    use ordertrail_commands::event_store::EventRepository;
    use ordertrail_domain::Delivery;

    let (db, _service) = service().await;
    let repo = EventRepository::new(db.pool.clone());
    let [a, b, other] = [(); 3].map(|_| uuid::Uuid::new_v4().to_string());
    // Interleave the appends so global positions alternate between the
    // aggregates: each must still come back in its own sequence order.
    for n in 1..=3 {
        for (id, upto) in [(&a, 3), (&b, 2), (&other, 3)] {
            if n <= upto {
                repo.persist::<Delivery>(
                    &[serialized(id, n, &format!("E{n}"), uuid::Uuid::new_v4())],
                    None,
                )
                .await
                .expect("append");
            }
        }
    }

    let (first, second) = repo
        .get_events_of_two(("Delivery", &a), ("Delivery", &b))
        .await
        .expect("load two");
    assert_eq!(
        first,
        repo.get_events::<Delivery>(&a).await.expect("load a")
    );
    assert_eq!(
        second,
        repo.get_events::<Delivery>(&b).await.expect("load b")
    );
    assert_eq!(
        first.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(second.len(), 2);
    assert!(first.iter().chain(&second).all(|e| e.aggregate_id != other));

    // An aggregate that does not exist comes back empty, the other intact.
    let missing = uuid::Uuid::new_v4().to_string();
    let (first, none) = repo
        .get_events_of_two(("Delivery", &a), ("Payment", &missing))
        .await
        .expect("load with a missing one");
    assert_eq!(first.len(), 3);
    assert!(none.is_empty());
}
