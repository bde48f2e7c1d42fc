//! Test harness shared by every crate's integration tests.
//!
//! - [`pg::TestDatabase`]: a fresh PostgreSQL database per test, created from a
//!   migrated template on the cluster named by `DATABASE_URL` (the README's test
//!   command starts a private cluster and sets it).
//! - [`kafka::TestKafka`]: the broker named by `KAFKA_BROKERS`, or else an
//!   in-process librdkafka mock cluster; every test gets its own topic prefix.
//! - [`server::PrivateServer`]: a PostgreSQL server of one test's own, to
//!   stop and restart under load (fault tests).
//! - [`eventually`]: bounded polling, the only way tests wait.
//!
//! Depends only on sqlx, rdkafka and tokio; never on the crates under test.

pub mod kafka;
pub mod pg;
pub mod server;

use std::future::Future;
use std::time::{Duration, Instant};

/// Poll `check` until it returns `Some`, at most for `timeout`, every `every`.
/// Panics with `what` when the time is up: tests never sleep a fixed time.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let every = Duration::from_millis(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Route test logs to the test writer, silent unless `TEST_LOG` is set.
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
