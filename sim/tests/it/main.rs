//! A short lunch rush against the real platform: the API served over TCP
//! (real rate limits, real token checks), the relay, the saga and the three
//! projectors in-process on a fresh PostgreSQL database and the testkit's
//! Kafka-protocol broker. The simulator must end with every order final or
//! waiting on a platform timer, consistent counts, no 5xx, and the same
//! picture in the order-history read model.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use ordertrail_api::limits::{Budget, RateLimits};
use ordertrail_api::{AppState, AuthConfig, app};
use ordertrail_commands::catalog;
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::relay::{self, RelayConfig, topics};
use ordertrail_commands::saga::{self, SagaConfig};
use ordertrail_commands::service::CommandService;
use ordertrail_projections::rider_etas::EtaSettings;
use ordertrail_projections::{ProjectorKind, RuntimeConfig};
use ordertrail_schemas::topics::all_topics;
use ordertrail_sim::SimConfig;
use ordertrail_testkit::kafka::TestKafka;
use ordertrail_testkit::pg::TestDatabase;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SECRET: &str = "test-secret-of-the-simulator-suite";
const PARTITIONS: i32 = 3;

/// The platform: API on a TCP port, relay, saga, projectors.
struct Platform {
    api_url: String,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

impl Platform {
    async fn start(pool: &PgPool, kafka: &TestKafka) -> Self {
        if let Some(mock) = kafka.mock() {
            topics::create_on_mock_cluster(mock, &all_topics(&kafka.prefix), PARTITIONS)
                .expect("create topics on the mock cluster");
        }
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)> = Vec::new();

        // The API with the server binary's rate limits, except a rider's
        // command budget: test riders report a fix every 250 ms.
        let limits = RateLimits {
            commands_per_subject: Budget { per_minute: 1_200 },
            queries_per_subject: Budget { per_minute: 600 },
            commands_per_address: Budget { per_minute: 600 },
            queries_per_address: Budget { per_minute: 3_000 },
            trust_forwarded_for: false,
        };
        let commands =
            CommandService::new(pool.clone(), RecordingProvider::simulated(pool.clone()));
        let state = AppState::new(commands, AuthConfig::new(SECRET.as_bytes(), None))
            .with_rate_limits(limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the API");
        let api_url = format!("http://{}", listener.local_addr().expect("address"));
        let s = shutdown();
        tasks.push((
            "api",
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app(state).into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(s)
                .await
                .map_err(|e| e.to_string())
            }),
        ));

        let mut relay_config = RelayConfig::new(kafka.bootstrap.clone(), kafka.prefix.clone());
        relay_config.topic_partitions = PARTITIONS;
        relay_config.topic_replication_factor = 1;
        relay_config.poll_interval = Duration::from_millis(50);
        let (p, s) = (pool.clone(), shutdown());
        tasks.push((
            "relay",
            tokio::spawn(async move {
                relay::run(relay_config, p, s)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
        for kind in [
            ProjectorKind::OrderHistory,
            ProjectorKind::RiderEtas(EtaSettings::default()),
            ProjectorKind::Settlements,
        ] {
            let name = kind.name();
            let mut config = RuntimeConfig::new(
                &kafka.bootstrap,
                &kafka.prefix,
                format!("{}-{name}", kafka.prefix),
            );
            config.heartbeat = Duration::from_millis(200);
            config.fence = Duration::from_millis(200);
            config.max_backoff = Duration::from_millis(500);
            let (p, s) = (pool.clone(), shutdown());
            tasks.push((
                name,
                tokio::spawn(async move {
                    ordertrail_projections::run(kind, config, p, s)
                        .await
                        .map_err(|e| e.to_string())
                }),
            ));
        }
        let mut config = SagaConfig::new(
            kafka.bootstrap.clone(),
            kafka.prefix.clone(),
            format!("{}-saga", kafka.prefix),
        );
        // Short platform timers, so the orders left to them end in the test.
        config.accept_timeout = Duration::from_secs(3);
        config.payment_retry_backoff = Duration::from_millis(100);
        config.timer_poll_interval = Duration::from_millis(100);
        config.max_backoff = Duration::from_millis(500);
        let service = CommandService::new(pool.clone(), RecordingProvider::simulated(pool.clone()));
        let s = shutdown();
        tasks.push((
            "saga",
            tokio::spawn(async move {
                saga::run(config, service, s)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));
        Self {
            api_url,
            stop,
            tasks,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            let result = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .unwrap_or_else(|_| panic!("{name} stops"));
            result
                .expect("task")
                .unwrap_or_else(|e| panic!("{name} failed: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lunch_rush_ends_with_every_order_final_or_on_a_platform_timer() {
    let db = TestDatabase::new().await;
    catalog::seed(&db.pool).await.expect("seed");
    let kafka = TestKafka::start();
    // The relay's metrics, for the lag in the view (one recorder per process).
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    ordertrail_platform::telemetry::serve_metrics(metrics_addr).expect("serve metrics");
    let relay_metrics = format!("http://{metrics_addr}/metrics");
    let platform = Platform::start(&db.pool, &kafka).await;

    // A compressed rush: ~15 orders in 6 s, kitchens 600× faster, riders at
    // 180 km/h within a few hundred metres, every misfortune more frequent.
    let config = SimConfig::parse_from([
        "ordertrail-sim",
        "--api-url",
        &platform.api_url,
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

    platform.stop().await;
}

#[test]
fn the_simulator_help_reads_like_every_binary() {
    use ordertrail_platform::process::{binaries_help_problems, heading};
    let problems =
        binaries_help_problems(&[(env!("CARGO_BIN_EXE_ordertrail-sim"), &[heading::LOGGING])]);
    assert_eq!(problems, Vec::<String>::new());
}
