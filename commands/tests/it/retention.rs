//! Retention of the bookkeeping tables (commands/src/retention.rs) against a
//! real PostgreSQL: a retry inside the window still gets its first answer,
//! rows older than the window go, and nothing the saga could still need is
//! pruned.

use std::sync::Arc;
use std::time::Duration;

use ordertrail_commands::retention::{self, PolicyError, RetentionPolicy};
use ordertrail_commands::service::{
    CommandContext, CommandError, CommandOutcome, CommandService, IdempotencyKey,
};
use ordertrail_domain::SimulatedProvider;
use ordertrail_schemas::CustomerId;
use ordertrail_testkit::pg::TestDatabase;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{berlin_order, card, customer};

async fn service() -> (TestDatabase, CommandService) {
    let db = TestDatabase::new().await;
    ordertrail_launcher::seed::seed(&db.pool)
        .await
        .expect("seed");
    let service = CommandService::new(db.pool.clone(), Arc::new(SimulatedProvider::default()));
    (db, service)
}

/// A fresh service with one order placed under the command key "k".
async fn service_with_one_order() -> (TestDatabase, CommandService) {
    let (db, service) = service().await;
    place_keyed(&service, CustomerId::new_random(), "k")
        .await
        .expect("order");
    (db, service)
}

fn keyed(customer_id: CustomerId, key: &str) -> CommandContext {
    CommandContext::new(customer(customer_id), "req").with_idempotency_key(IdempotencyKey {
        key: key.into(),
        request_hash: "h".into(),
    })
}

/// `customer_id`'s Berlin card order, sent with the idempotency key `key`.
async fn place_keyed(
    service: &CommandService,
    customer_id: CustomerId,
    key: &str,
) -> Result<CommandOutcome, CommandError> {
    let order = berlin_order(customer_id, card("tok_visa"));
    service.run(&keyed(customer_id, key), order).await
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.expect(sql);
}

/// The saga has processed everything in the store: its store position is
/// the last event in commit order.
async fn saga_at_head(pool: &PgPool) {
    exec(
        pool,
        "INSERT INTO consumers (consumer, store_txid, store_position)
         SELECT 'saga', transaction_id, global_position FROM events
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1
         ON CONFLICT (consumer) DO UPDATE
         SET store_txid = EXCLUDED.store_txid, store_position = EXCLUDED.store_position",
    )
    .await;
}

/// One pruning run; no other instance holds the lock in these tests.
async fn prune(pool: &PgPool, policy: &RetentionPolicy) -> retention::Pruned {
    retention::prune_once(pool, policy)
        .await
        .expect("prune")
        .expect("no other instance holds the lock")
}

async fn command_of(pool: &PgPool, key: &str) -> Uuid {
    sqlx::query_scalar("SELECT command_id FROM idempotency_keys WHERE idempotency_key = $1")
        .bind(key)
        .fetch_one(pool)
        .await
        .expect("key row")
}

async fn logged(pool: &PgPool, command_id: Uuid) -> bool {
    sqlx::query_scalar("SELECT exists(SELECT 1 FROM command_log WHERE command_id = $1)")
        .bind(command_id)
        .fetch_one(pool)
        .await
        .expect("command_log")
}

#[tokio::test]
async fn a_retry_inside_the_window_gets_its_first_answer_and_older_rows_are_pruned() {
    let (db, service) = service().await;
    let pool = &db.pool;
    let old_customer = CustomerId::new_random();
    let recent_customer = CustomerId::new_random();
    let old = place_keyed(&service, old_customer, "old")
        .await
        .expect("old order");
    let recent = place_keyed(&service, recent_customer, "recent")
        .await
        .expect("recent order");
    let (old_command, recent_command) = (
        command_of(pool, "old").await,
        command_of(pool, "recent").await,
    );
    saga_at_head(pool).await;
    // The old request is older than both windows; the recent one is inside.
    exec(
        pool,
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE idempotency_key = 'old'",
    )
    .await;
    sqlx::query(
        "UPDATE command_log SET recorded_at = now() - interval '8 days' WHERE command_id = $1",
    )
    .bind(old_command)
    .execute(pool)
    .await
    .expect("age the old command");

    // One row per statement: the batching loop must walk to the end.
    let policy = RetentionPolicy::default().with_batch(1);
    let pruned = retention::prune_once(pool, &policy)
        .await
        .expect("prune")
        .expect("no other instance holds the lock");
    assert_eq!(pruned.idempotency_keys, 1);
    assert_eq!(pruned.command_log, 1);
    assert!(!logged(pool, old_command).await);
    assert!(logged(pool, recent_command).await);
    assert_eq!(
        scalar(
            pool,
            "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = 'recent'"
        )
        .await,
        1
    );

    // Inside the window: the same key gets the first answer, nothing appended.
    let events_before = scalar(pool, "SELECT count(*) FROM events").await;
    let again = place_keyed(&service, recent_customer, "recent")
        .await
        .expect("retry");
    assert!(again.replayed);
    assert_eq!(again.aggregate_id, recent.aggregate_id);
    assert_eq!(again.events, recent.events);
    assert_eq!(
        scalar(pool, "SELECT count(*) FROM events").await,
        events_before
    );

    // Past the window the key is forgotten and the command log no longer
    // answers: no first answer, but nothing appended twice either, because
    // the order id derives from the command id and the aggregate refuses a
    // second OrderPlaced (409).
    let late = place_keyed(&service, old_customer, "old").await;
    assert!(
        matches!(late, Err(CommandError::Conflict { .. })),
        "{late:?}"
    );
    assert_eq!(
        scalar(pool, "SELECT count(*) FROM events").await,
        events_before
    );
    let _ = old;

    // A second run finds nothing more to do.
    let pruned = prune(pool, &policy).await;
    assert_eq!(pruned, retention::Pruned::default());
}

#[tokio::test]
async fn the_command_log_stays_while_the_saga_could_still_resend_its_commands() {
    let (db, service) = service_with_one_order().await;
    let pool = &db.pool;
    exec(
        pool,
        "UPDATE command_log SET recorded_at = now() - interval '30 days'",
    )
    .await;
    // A later command, so the saga's position can lie past the first one.
    let later = CustomerId::new_random();
    place_keyed(&service, later, "later")
        .await
        .expect("later order");
    let policy = RetentionPolicy::default();

    // The saga never ran: it would start from the first event, so every
    // command id it could send must stay.
    let pruned = prune(pool, &policy).await;
    assert_eq!(pruned.command_log, 0);

    // The saga's store position is before the command: it may still
    // re-process the cause and re-send it.
    exec(pool, "INSERT INTO consumers (consumer) VALUES ('saga')").await;
    let pruned = prune(pool, &policy).await;
    assert_eq!(pruned.command_log, 0);

    // An unfired timer older than the row keeps it too (stored retries repeat
    // their first attempt's command id).
    saga_at_head(pool).await;
    exec(
        pool,
        "INSERT INTO saga_timers (timer_id, kind, aggregate_id, due_at, correlation_id, causation_id, created_at)
         VALUES (gen_random_uuid(), 'accept_timeout', 'o', now(), gen_random_uuid(), gen_random_uuid(),
                 now() - interval '31 days')",
    )
    .await;
    let pruned = prune(pool, &policy).await;
    assert_eq!(pruned.command_log, 0);

    // Past the saga and no timer waiting: the row goes.
    exec(pool, "UPDATE saga_timers SET fired_at = now()").await;
    let pruned = prune(pool, &policy).await;
    assert_eq!(pruned.command_log, 1);
    assert_eq!(scalar(pool, "SELECT count(*) FROM command_log").await, 1);
}

#[tokio::test]
async fn only_old_fired_timers_behind_the_saga_are_pruned() {
    let (db, _service) = service_with_one_order().await;
    let pool = &db.pool;
    saga_at_head(pool).await;
    exec(
        pool,
        "INSERT INTO saga_timers (timer_id, kind, aggregate_id, due_at, correlation_id, causation_id, created_at, fired_at, outcome)
         VALUES
           -- fired long ago: goes
           (gen_random_uuid(), 'accept_timeout', 'old-fired', now(), gen_random_uuid(), gen_random_uuid(),
            now() - interval '9 days', now() - interval '8 days', 'cancelled'),
           -- fired recently: stays
           (gen_random_uuid(), 'accept_timeout', 'recent-fired', now(), gen_random_uuid(), gen_random_uuid(),
            now() - interval '2 hours', now() - interval '1 hour', 'cancelled'),
           -- never fired: stays whatever its age
           (gen_random_uuid(), 'assign_timeout', 'waiting', now(), gen_random_uuid(), gen_random_uuid(),
            now() - interval '9 days', NULL, NULL)",
    )
    .await;
    let pruned = retention::prune_once(pool, &RetentionPolicy::default())
        .await
        .expect("prune")
        .expect("lock");
    assert_eq!(pruned.saga_timers, 1);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT aggregate_id FROM saga_timers ORDER BY aggregate_id")
            .fetch_all(pool)
            .await
            .expect("timers");
    assert_eq!(left, ["recent-fired", "waiting"]);
}

#[tokio::test]
async fn one_instance_prunes_at_a_time() {
    let (db, _service) = service().await;
    let pool = &db.pool;
    let mut holder = pool.acquire().await.expect("conn");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(retention::RETENTION_LOCK)
        .execute(&mut *holder)
        .await
        .expect("lock");
    let busy = retention::prune_once(pool, &RetentionPolicy::default())
        .await
        .expect("prune");
    assert!(busy.is_none());
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(retention::RETENTION_LOCK)
        .execute(&mut *holder)
        .await
        .expect("unlock");
    drop(holder);
    let ran = retention::prune_once(pool, &RetentionPolicy::default())
        .await
        .expect("prune");
    assert!(ran.is_some());
}

#[test]
fn the_command_log_window_cannot_be_shorter_than_the_idempotency_window() {
    let day = Duration::from_secs(86_400);
    assert_eq!(
        RetentionPolicy::new(day, day / 2, day, day),
        Err(PolicyError::CommandLogShorterThanIdempotency {
            command_log: day / 2,
            idempotency: day,
        })
    );
    assert!(RetentionPolicy::new(day, day, day, day).is_ok());
}
