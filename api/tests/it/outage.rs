//! A PostgreSQL restart under load: a server of the test's own is stopped
//! (sessions ended with 57P01, then connections refused) and started again
//! while customers place orders. Every answer is 2xx or 503
//! `dependency_unavailable` with `Retry-After`, never 500; readiness is false
//! while the server is down; a projector rides the outage out (it does not
//! return) and afterwards shows every order that was answered 201.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ordertrail_api::{AppState, AuthConfig, app};
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::service::CommandService;
use ordertrail_projections::{ProjectorKind, RuntimeConfig};
use ordertrail_testkit::eventually;
use ordertrail_testkit::server::PrivateServer;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::support::{SECRET, card, place_order_body, send};

#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, u64>,
    placed: Vec<Uuid>,
    faults: Vec<String>,
}

async fn place(router: &axum::Router, token: &str) -> (StatusCode, Option<String>, String) {
    let request = Request::post("/v1/orders")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", Uuid::new_v4().to_string())
        .body(Body::from(place_order_body(card()).to_string()))
        .expect("request");
    let response = send(router, request).await;
    let retry_after = response
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status, retry_after, response.text)
}

async fn ready(router: &axum::Router) -> StatusCode {
    let request = Request::get("/health/ready")
        .body(Body::empty())
        .expect("request");
    send(router, request).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_load_is_503_never_500_and_nothing_is_lost() {
    ordertrail_testkit::init_test_logging();
    let server = PrivateServer::start();
    let pool = ordertrail_platform::db::connect_service(&server.url(), 8)
        .await
        .expect("connect");
    ordertrail_platform::db::migrate(&pool)
        .await
        .expect("migrate");
    ordertrail_launcher::seed::seed(&pool).await.expect("seed");
    let commands = CommandService::new(pool.clone(), RecordingProvider::simulated(pool.clone()));
    let auth = AuthConfig::new(SECRET, None);
    let router = app(AppState::new(commands, auth.clone()));

    // A projector following the store, on a pool of its own.
    let projector_pool = ordertrail_platform::db::connect_service(&server.url(), 4)
        .await
        .expect("connect projector");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut config = RuntimeConfig::store_only("outage-test");
    config.max_backoff = Duration::from_millis(500);
    let projector = tokio::spawn(ordertrail_projections::run(
        ProjectorKind::OrderHistory,
        config,
        projector_pool.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));

    let tally = Arc::new(Mutex::new(Tally::default()));
    let running = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let router = router.clone();
        let tally = Arc::clone(&tally);
        let running = Arc::clone(&running);
        let customer = Uuid::new_v4();
        let token = auth
            .mint("customer", &customer.to_string(), 3600)
            .expect("mint");
        clients.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let (status, retry_after, body) = place(&router, &token).await;
                let mut t = tally.lock().await;
                *t.by_status.entry(status.as_u16()).or_default() += 1;
                match status {
                    StatusCode::CREATED => {
                        let v: serde_json::Value = serde_json::from_str(&body).expect("json body");
                        t.placed.push(
                            v["aggregate_id"]
                                .as_str()
                                .and_then(|s| s.parse().ok())
                                .expect("order id"),
                        );
                    }
                    StatusCode::SERVICE_UNAVAILABLE
                        if retry_after.is_some() && body.contains("dependency_unavailable") => {}
                    other => t
                        .faults
                        .push(format!("{other} retry-after={retry_after:?}: {body}")),
                }
                drop(t);
            }
        }));
    }
    let count = |status: u16| {
        let tally = Arc::clone(&tally);
        async move {
            tally
                .lock()
                .await
                .by_status
                .get(&status)
                .copied()
                .unwrap_or(0)
        }
    };
    eventually(
        "orders placed before the outage",
        Duration::from_secs(30),
        || async { (count(201).await >= 10).then_some(()) },
    )
    .await;

    server.stop();
    eventually(
        "503 answers while PostgreSQL is down",
        Duration::from_secs(60),
        || async { (count(503).await >= 4).then_some(()) },
    )
    .await;
    assert_eq!(ready(&router).await, StatusCode::SERVICE_UNAVAILABLE);
    server.start_again();

    // Waits until `more` orders beyond those placed so far have been placed.
    let orders_flow_again = async |what: &'static str, more: u64| {
        let before = count(201).await;
        eventually(what, Duration::from_secs(60), || async {
            (count(201).await >= before + more).then_some(())
        })
        .await;
    };
    orders_flow_again("orders placed after the restart", 10).await;
    eventually("ready again", Duration::from_secs(30), || async {
        (ready(&router).await == StatusCode::OK).then_some(())
    })
    .await;

    // Sessions killed by an administrator in the middle of their work (57P01
    // on a busy connection), a few times over.
    for _ in 0..5 {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&projector_pool)
        .await
        .ok();
        orders_flow_again("orders placed after terminated sessions", 5).await;
    }

    running.store(false, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let tally = Arc::try_unwrap(tally)
        .ok()
        .expect("clients done")
        .into_inner();
    assert!(
        tally.faults.is_empty(),
        "answers other than 201 or 503 with Retry-After: {:#?}",
        tally.faults
    );
    assert!(!tally.by_status.contains_key(&500), "{:?}", tally.by_status);

    // Every order answered 201 is in the store exactly once and reaches the
    // projector, which never stopped.
    assert!(!projector.is_finished(), "the projector gave up");
    for order in &tally.placed {
        let placed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'OrderPlaced'",
        )
        .bind(order.to_string())
        .fetch_one(&pool)
        .await
        .expect("count");
        assert_eq!(placed, 1, "order {order}");
    }
    let expected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'")
            .fetch_one(&pool)
            .await
            .expect("count placed");
    assert!(expected >= tally.placed.len() as i64);
    eventually(
        "the projector caught up",
        Duration::from_secs(60),
        || async {
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_history")
                .fetch_one(&pool)
                .await
                .ok()?;
            (rows == expected).then_some(())
        },
    )
    .await;
    let _ = stop_tx.send(());
    projector
        .await
        .expect("projector task")
        .expect("projector stops cleanly");
}
