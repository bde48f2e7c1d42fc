//! The `Stack` on its own: what it prepares (migrations, seed, a hosted broker
//! with the topics) and the services it runs, in-process and as processes.

use std::sync::Arc;

use ordertrail_commands::service::CommandService;
use ordertrail_domain::SimulatedProvider;
use ordertrail_launcher::processes::{Processes, Service};
use ordertrail_launcher::{Seed, Stack};
use ordertrail_testkit::eventually;
use ordertrail_testkit::pg::TestDatabase;

use crate::support::{PARTITIONS, WAIT, place_card_order};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_on_a_url_seeds_hosts_its_broker_and_drives_an_order_through_the_saga() {
    ordertrail_testkit::init_test_logging();
    let db = TestDatabase::new().await;
    let stack = Stack::connect(&db.url, 8)
        .seed(Seed::Always)
        .partitions(PARTITIONS)
        .saga(true)
        .test_timings()
        .start()
        .await
        .expect("start the stack");
    let mock = stack.mock().expect("no broker given: the stack hosts one");
    assert_eq!(stack.brokers(), mock.bootstrap_servers());
    let (restaurants, riders): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM restaurants), (SELECT count(*) FROM riders)")
            .fetch_one(stack.pool())
            .await
            .expect("catalog");
    assert_eq!((restaurants, riders), (4, 8), "the demo seed is loaded");

    // The saga authorizes and confirms a card order; every projector sees it.
    let service = CommandService::new(stack.pool().clone(), Arc::new(SimulatedProvider::new()));
    let order = place_card_order(&service).await;
    eventually("the saga confirms the order", WAIT, || async {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM order_history WHERE order_id = $1")
                .bind(order.0)
                .fetch_optional(stack.pool())
                .await
                .ok()?;
        (status.as_deref() == Some("confirmed")).then_some(())
    })
    .await;
    stack.caught_up(WAIT).await.expect("caught up");
    stack.check_running().expect("every service still runs");
    stack.stop().await.expect("the stack stops cleanly");
}

#[tokio::test]
async fn child_processes_need_their_binaries() {
    let err = Processes::spawn(
        std::path::Path::new("/nonexistent-bin-dir"),
        vec![Service {
            name: "relay",
            binary: "ordertrail-relay",
            env: Vec::new(),
        }],
    )
    .expect_err("the binary is missing");
    assert!(
        err.to_string()
            .contains("/nonexistent-bin-dir/ordertrail-relay is missing"),
        "{err}"
    );
}
