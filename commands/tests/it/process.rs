//! The relay, saga and audit binaries on the process skeleton: their
//! `--help` reads the same way, and a service started on a schema behind its
//! build waits, naming the missing migration, instead of migrating.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ordertrail_platform::process::{binaries_help_problems, heading};
use ordertrail_testkit::pg::TestDatabase;

#[test]
fn every_binary_help_shows_the_shared_groups_and_env_names() {
    let problems = binaries_help_problems(&[
        (env!("CARGO_BIN_EXE_ordertrail-relay"), heading::SERVICE),
        (env!("CARGO_BIN_EXE_ordertrail-saga"), heading::SERVICE),
        (env!("CARGO_BIN_EXE_ordertrail-audit"), heading::TOOL),
    ]);
    assert_eq!(problems, Vec::<String>::new());
}

#[tokio::test]
async fn the_relay_waits_for_a_schema_behind_it_and_never_migrates() {
    let db = TestDatabase::new().await;
    let latest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .expect("latest");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(&db.pool)
        .await
        .expect("forget the latest migration");
    let mut relay = Command::new(env!("CARGO_BIN_EXE_ordertrail-relay"))
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BROKERS", "127.0.0.1:9")
        .env("RUST_LOG", "warn")
        .env_remove("LOG_FORMAT")
        .env_remove("METRICS_ADDR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the relay");
    let stderr = relay.stderr.take().expect("stderr");
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let wanted = format!("migration {latest:04} ");
    let line = loop {
        let line = line_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the relay says what it waits for");
        if line.contains(&wanted) {
            break line;
        }
    };
    assert!(
        line.contains("not ready") && line.contains("--migrate-only"),
        "{line}"
    );
    assert!(
        relay.try_wait().expect("status").is_none(),
        "a schema behind is waited for, not a crash"
    );
    relay.kill().expect("stop the relay");
    let _ = relay.wait();
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = $1")
            .bind(latest)
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!(recorded, 0, "the relay never migrates");
}
