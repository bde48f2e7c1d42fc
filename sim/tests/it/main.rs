//! A short lunch rush against the real platform: the API served over TCP
//! (real rate limits, real token checks), the relay, the saga and the three
//! projectors in-process on a fresh PostgreSQL database and the testkit's
//! Kafka-protocol broker. The simulator must end with every order final or
//! waiting on a platform timer, consistent counts, no 5xx, and the same
//! picture in the order-history read model.

use std::time::Duration;

use clap::Parser;
use ordertrail_api::limits::{Budget, RateLimits};
use ordertrail_api::{AppState, AuthConfig, app};
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::service::CommandService;
use ordertrail_launcher::{RunningStack, Stack};
use ordertrail_schemas::topics::all_topics;
use ordertrail_sim::SimConfig;
use ordertrail_testkit::kafka::TestKafka;
use ordertrail_testkit::pg::TestDatabase;
use sqlx::PgPool;

const SECRET: &str = "test-secret-of-the-simulator-suite";
const PARTITIONS: i32 = 3;

/// The platform (the launcher's `Stack`): API on a TCP port, relay, saga,
/// projectors.
async fn start_platform(pool: &PgPool, kafka: &TestKafka) -> RunningStack {
    kafka.create_topics(&all_topics(&kafka.prefix), PARTITIONS);
    // The API with the server binary's rate limits, except a rider's
    // command budget: test riders report a fix every 250 ms.
    let limits = RateLimits {
        commands_per_subject: Budget { per_minute: 1_200 },
        queries_per_subject: Budget { per_minute: 600 },
        commands_per_address: Budget { per_minute: 600 },
        queries_per_address: Budget { per_minute: 3_000 },
        trust_forwarded_for: false,
    };
    let commands = CommandService::new(pool.clone(), RecordingProvider::simulated(pool.clone()));
    let state =
        AppState::new(commands, AuthConfig::new(SECRET.as_bytes(), None)).with_rate_limits(limits);
    Stack::on_pool(pool.clone())
        .kafka(&kafka.bootstrap)
        .topic_prefix(&kafka.prefix)
        .partitions(PARTITIONS)
        .api(app(state))
        .saga_config(|config| {
            // Short platform timers, so the orders left to them end in the test.
            config.accept_timeout = Duration::from_secs(3);
            config.payment_retry_backoff = Duration::from_millis(100);
        })
        .test_timings()
        .start()
        .await
        .expect("start the platform")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lunch_rush_ends_with_every_order_final_or_on_a_platform_timer() {
    let db = TestDatabase::new().await;
    ordertrail_launcher::seed::seed(&db.pool)
        .await
        .expect("seed");
    let kafka = TestKafka::start();
    // The relay's metrics, for the lag in the view (one recorder per process).
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    ordertrail_platform::telemetry::serve_metrics(metrics_addr).expect("serve metrics");
    let relay_metrics = format!("http://{metrics_addr}/metrics");
    let platform = start_platform(&db.pool, &kafka).await;

    // A compressed rush: ~15 orders in 6 s, kitchens 600× faster, riders at
    // 180 km/h within a few hundred metres, every misfortune more frequent.
    let config = SimConfig::parse_from([
        "ordertrail-sim",
        "--api-url",
        platform.api_url().expect("the API is served"),
        "--jwt-secret",
        SECRET,
        "--peak-rate",
        "4",
        "--duration-secs",
        "6",
        "--time-scale",
        "600",
        "--rider-kmh",
        "180",
        "--gps-interval-secs",
        "0.25",
        "--radius-m",
        "300",
        "--riders-per-city",
        "20",
        "--customers-per-city",
        "40",
        "--cash-pct",
        "20",
        "--decline-pct",
        "12",
        "--flaky-pct",
        "12",
        "--cancel-pct",
        "8",
        "--reject-pct",
        "10",
        "--ignore-pct",
        "5",
        "--wrong-code-pct",
        "25",
        "--code-lost-pct",
        "5",
        "--confirm-poll-ms",
        "50",
        "--poll-ms",
        "100",
        // Generous for a loaded CI machine; a normal run takes ~15 s in all.
        "--stage-timeout-secs",
        "60",
        "--drain-timeout-secs",
        "90",
        "--relay-metrics-url",
        &relay_metrics,
        "--display",
        "lines",
        "--report-secs",
        "2",
    ]);
    let summary = tokio::time::timeout(
        Duration::from_secs(180),
        ordertrail_sim::run(config, std::future::pending()),
    )
    .await
    .expect("the simulation ends")
    .expect("the simulation runs");
    println!("{}", summary.render());

    let (delivered, cancelled, rejected, waiting) = (
        summary.count("delivered"),
        summary.count("cancelled"),
        summary.count("rejected"),
        summary.count("waiting"),
    );
    assert!(summary.placed >= 5, "too few orders: {summary:#?}");
    assert!(delivered > 0, "nothing delivered: {summary:#?}");
    assert_eq!(
        summary.placed,
        delivered + cancelled + rejected + waiting,
        "every placed order is final or waits on a timer: {summary:#?}"
    );
    assert_eq!(summary.count("stuck"), 0, "{summary:#?}");
    assert_eq!(summary.abandoned_count(), 0, "{summary:#?}");
    assert_eq!(summary.server_errors(), 0, "{summary:#?}");
    assert!(summary.not_placed.is_empty(), "{summary:#?}");
    assert!(summary.placed_to_confirmed.count > 0, "{summary:#?}");
    assert!(
        summary.lag.projectors.is_some() && summary.lag.saga.is_some(),
        "projector and saga lag read from /v1/projectors/status: {summary:#?}"
    );
    assert!(
        summary.lag.relay.is_some(),
        "relay lag from its metrics: {summary:#?}"
    );

    // The read model tells the same story, order by order.
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM order_history GROUP BY status")
            .fetch_all(&db.pool)
            .await
            .expect("order history");
    let count = |s: &str| {
        by_status
            .iter()
            .find(|(status, _)| status == s)
            .map_or(0, |(_, n)| *n as u64)
    };
    let total: u64 = by_status.iter().map(|(_, n)| *n as u64).sum();
    assert_eq!(total, summary.placed, "{by_status:?}");
    assert_eq!(count("delivered"), delivered, "{by_status:?}");
    assert_eq!(count("rejected"), rejected, "{by_status:?}");
    assert_eq!(
        count("cancelled") + count("placed") + count("confirmed"),
        cancelled + waiting,
        "{by_status:?}"
    );
    // Riders reported their way: fixes are in the store.
    let fixes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'RiderLocationReported'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("count fixes");
    assert!(fixes as u64 >= delivered * 2, "{fixes} fixes");

    platform.stop().await.expect("the platform stops cleanly");
}

#[test]
fn the_simulator_help_reads_like_every_binary() {
    use ordertrail_platform::process::{binaries_help_problems, heading};
    let problems =
        binaries_help_problems(&[(env!("CARGO_BIN_EXE_ordertrail-sim"), &[heading::LOGGING])]);
    assert_eq!(problems, Vec::<String>::new());
}
