//! The harness itself and the store-level guarantees the migrations give.

use ordertrail_testkit::pg::TestDatabase;

async fn insert_event(
    pool: &sqlx::PgPool,
    id: &str,
    seq: i64,
    command_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Order', $1, $2, 'OrderPlaced', '1', '{}', $3)",
    )
    .bind(id)
    .bind(seq)
    .bind(serde_json::json!({ "command_id": command_id }))
    .execute(pool)
    .await
    .map(|_| ())
}

#[tokio::test]
async fn each_test_database_is_fresh_and_migrated() {
    let a = TestDatabase::new().await;
    let b = TestDatabase::new().await;
    assert_ne!(a.name, b.name);
    insert_event(&a.pool, "o1", 1, "00000000-0000-0000-0000-000000000001")
        .await
        .unwrap();
    let in_b: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&b.pool)
        .await
        .unwrap();
    assert_eq!(in_b, 0);
    let (pos, event_id_set): (i64, bool) =
        sqlx::query_as("SELECT global_position, event_id IS NOT NULL FROM events")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert!(pos >= 1 && event_id_set);
}

#[tokio::test]
async fn a_command_id_appends_in_one_transaction_only() {
    let db = TestDatabase::new().await;
    let cmd = "00000000-0000-0000-0000-0000000000aa";
    // Two events of one command in one transaction are fine.
    let mut tx = db.pool.begin().await.unwrap();
    for seq in [1, 2] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('Order', 'o1', $1, 'X', '1', '{}', $2)",
        )
        .bind(seq)
        .bind(serde_json::json!({ "command_id": cmd }))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    // The same command in a later transaction is a unique violation (23505),
    // which postgres-es reports as an optimistic-lock conflict.
    let err = insert_event(&db.pool, "o1", 3, cmd).await.unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("23505"));
    let (first, last): (i64, i64) = sqlx::query_as(
        "SELECT first_sequence, last_sequence FROM command_log WHERE command_id = $1::uuid",
    )
    .bind(cmd)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((first, last), (1, 2));
}
