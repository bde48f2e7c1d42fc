//! Services never migrate: with the schema current they start, with it behind
//! they wait (naming the missing migration) until the migrate job has run;
//! tools refuse a schema that is behind.

use std::time::Duration;

use ordertrail_platform::db::MIGRATOR;
use ordertrail_platform::process::DatabaseArgs;
use ordertrail_platform::process::schema::{self, SchemaStatus};
use ordertrail_testkit::pg::TestDatabase;
use sqlx::PgPool;

const BOUND: Duration = Duration::from_secs(30);

fn args_for(db: &TestDatabase) -> DatabaseArgs {
    DatabaseArgs {
        database_url: Some(db.url.clone()),
        database_pool_size: Some(2),
        database_idle_in_transaction_timeout_seconds: None,
    }
}

fn latest_version() -> i64 {
    MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .expect("the build has migrations")
}

/// Take the record of the latest migration out of `_sqlx_migrations` (the
/// schema then looks one migration behind), kept in `forgotten_migration`
/// for [`remember`]; returns its version.
async fn forget_latest(pool: &PgPool) -> i64 {
    let version = latest_version();
    sqlx::query(
        "CREATE TABLE forgotten_migration AS SELECT * FROM _sqlx_migrations WHERE version = $1",
    )
    .bind(version)
    .execute(pool)
    .await
    .expect("keep the row");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(version)
        .execute(pool)
        .await
        .expect("forget the migration");
    version
}

async fn remember(pool: &PgPool) {
    sqlx::query("INSERT INTO _sqlx_migrations SELECT * FROM forgotten_migration")
        .execute(pool)
        .await
        .expect("restore the migration record");
}

#[tokio::test]
async fn a_current_schema_lets_the_service_start() {
    let db = TestDatabase::new().await;
    assert_eq!(
        schema::check(&db.pool).await.expect("check"),
        SchemaStatus::Current
    );
    let pool = tokio::time::timeout(BOUND, args_for(&db).connect_service(4))
        .await
        .expect("a current schema does not wait")
        .expect("connect");
    assert_eq!(pool.options().get_max_connections(), 2);
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect("query");
    assert_eq!(one, 1);
}

#[tokio::test]
async fn a_schema_behind_keeps_the_service_waiting_until_the_migrate_job_ran() {
    let db = TestDatabase::new().await;
    let version = forget_latest(&db.pool).await;
    let status = schema::check(&db.pool).await.expect("check");
    let SchemaStatus::Behind(missing) = status else {
        panic!("expected behind, got {status:?}");
    };
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].version, version);

    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let pool = db.pool.clone();
    let waiting = tokio::spawn(async move {
        schema::wait_until_current_reporting(&pool, move |behind| {
            let _ = seen_tx.send(behind.to_string());
        })
        .await
    });
    // Two looks, both finding it behind: the service is still waiting.
    for _ in 0..2 {
        let message = tokio::time::timeout(BOUND, seen.recv())
            .await
            .expect("the waiting service looks again")
            .expect("still waiting");
        assert!(
            message.contains(&format!("migration {version:04} ")),
            "names the missing migration: {message}"
        );
        assert!(
            message.contains("--migrate-only"),
            "says what to run: {message}"
        );
    }
    assert!(
        !waiting.is_finished(),
        "a service never starts on a schema behind it"
    );

    // The migrate job ran: the service goes on.
    remember(&db.pool).await;
    tokio::time::timeout(BOUND, waiting)
        .await
        .expect("starts once the schema is current")
        .expect("task")
        .expect("no fault");
    // It never migrated by itself: only the restored record is there.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = $1")
        .bind(version)
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_tool_refuses_a_schema_behind_with_a_clear_error() {
    let db = TestDatabase::new().await;
    let version = forget_latest(&db.pool).await;
    let error = args_for(&db)
        .connect_tool(1)
        .await
        .expect_err("a tool refuses a schema behind its build")
        .to_string();
    assert!(
        error.contains(&format!("migration {version:04} ")) && error.contains("behind"),
        "{error}"
    );
    remember(&db.pool).await;
    args_for(&db)
        .connect_tool(1)
        .await
        .expect("current again: the tool connects");
}

#[tokio::test]
async fn a_missing_url_names_the_flag_and_the_variable() {
    let error = DatabaseArgs::default()
        .connect_service(2)
        .await
        .expect_err("no URL")
        .to_string();
    assert_eq!(error, "set --database-url or DATABASE_URL");
}
