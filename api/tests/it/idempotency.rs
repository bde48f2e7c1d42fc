//! `Idempotency-Key`: retries, racing twins, reuse with another body, and a
//! retry after the server died between the append and the response.

use axum::http::StatusCode;
use ordertrail_api::extract::request_fingerprint;
use ordertrail_commands::service::{CommandContext, IdempotencyKey};
use ordertrail_commands::workflows::ConfirmOrder;
use ordertrail_launcher::seed::berlin_burger_order;
use ordertrail_schemas::{Actor, ActorRole, CustomerId, OrderId};
use serde_json::json;
use uuid::Uuid;

use crate::support::{TestApp, card, cash, order_id, place_order_body};

#[tokio::test]
async fn a_retry_returns_the_first_response_and_appends_nothing() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    // The same card order under the key "order-1", placed by `token`.
    let place_order_1 = async |token: &str| {
        app.place_keyed(token, "order-1", place_order_body(card()))
            .await
    };
    let first = place_order_1(&customer).await;
    first.assert(StatusCode::CREATED);
    assert!(!first.replayed());
    let after_first = app.event_count().await;

    let retry = place_order_1(&customer).await;
    retry.assert(StatusCode::CREATED);
    assert!(retry.replayed(), "missing Idempotent-Replayed");
    assert_eq!(order_id(&retry), order_id(&first));
    assert_eq!(retry.body["events"], first.body["events"]);
    assert_eq!(retry.body["version"], first.body["version"]);
    assert_eq!(app.event_count().await, after_first);

    // The same key from another customer is another request.
    let (_, other) = app.customer();
    let theirs = place_order_1(&other).await;
    theirs.assert(StatusCode::CREATED);
    assert!(!theirs.replayed());
    assert_ne!(order_id(&theirs), order_id(&first));

    // A retried rejection is the same rejection, and still appends nothing.
    let order = order_id(&first);
    let restaurant = app.restaurant(crate::support::berlin());
    for _ in 0..2 {
        app.post(&format!("/v1/orders/{order}/accept"))
            .token(&restaurant)
            .key("accept-1")
            .json(json!({"preparation_minutes": 10}))
            .send()
            .await
            .assert_error(StatusCode::CONFLICT, "order_not_acceptable");
    }
    assert_eq!(app.event_count().await, after_first + 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    app.place_keyed(&customer, "k", place_order_body(card()))
        .await
        .assert(StatusCode::CREATED);
    let before = app.event_count().await;
    let mut other = place_order_body(card());
    other["tip_minor"] = json!(999);
    app.place_keyed(&customer, "k", other)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn two_identical_requests_racing_append_once() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let send = || {
        app.post("/v1/orders")
            .token(&customer)
            .key("race-1")
            .json(place_order_body(card()))
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    a.assert(StatusCode::CREATED);
    b.assert(StatusCode::CREATED);
    assert_eq!(order_id(&a), order_id(&b));
    assert_eq!(app.events_of_type("OrderPlaced").await, 1);
    assert!(
        a.replayed() || b.replayed(),
        "one of them must be the replay"
    );

    // Same for transitions on existing orders, over a few rounds: the twin
    // may load the state the winner left, and must still get the winner's answer.
    let ops = app.ops();
    for round in 0..5 {
        let order = app.place_order(&customer, card()).await;
        let key = format!("cancel-race-{round}");
        let cancel = || {
            app.post(&format!("/v1/orders/{order}/cancel"))
                .token(&ops)
                .key(&key)
                .json(json!({"reason": "duplicate"}))
                .send()
        };
        let (c, d) = tokio::join!(cancel(), cancel());
        c.assert(StatusCode::OK);
        d.assert(StatusCode::OK);
        assert_eq!(c.body["events"], d.body["events"]);
    }
    assert_eq!(app.events_of_type("OrderCancelled").await, 5);
}

#[tokio::test]
async fn a_retry_after_a_crash_between_append_and_response_appends_nothing() {
    let app = TestApp::new().await;
    let customer_id = Uuid::new_v4();
    let customer = app.token("customer", &customer_id.to_string());
    let body = place_order_body(card());
    let raw = body.to_string();

    // The first attempt appended, then the process died before answering:
    // run it through the service and forget the stored response.
    let key = IdempotencyKey {
        key: "crash-1".into(),
        request_hash: request_fingerprint("POST", "/v1/orders", raw.as_bytes()),
    };
    let actor = Actor {
        subject: customer_id.to_string(),
        role: ActorRole::Customer,
    };
    let ctx = CommandContext::new(actor, "req-before-crash").with_idempotency_key(key);
    let input = berlin_burger_order(CustomerId(customer_id), Some(150));
    let first = app.commands.run(&ctx, input).await.expect("first attempt");
    lose_responses(&app).await;
    let before = app.event_count().await;

    let retry = app
        .post("/v1/orders")
        .token(&customer)
        .key("crash-1")
        .raw("application/json", raw)
        .send()
        .await;
    retry.assert(StatusCode::CREATED);
    assert!(retry.replayed());
    assert_eq!(retry.body["aggregate_id"], first.aggregate_id);
    assert_eq!(retry.body["version"], first.version);
    assert_eq!(app.event_count().await, before);

    // The same for a transition (ops confirming a cash order).
    let order = app.place_order(&customer, cash()).await;
    let path = format!("/v1/orders/{order}/confirm");
    let key = IdempotencyKey {
        key: "confirm-1".into(),
        request_hash: request_fingerprint("POST", &path, b""),
    };
    let ops = Actor {
        subject: "ops-alice".into(),
        role: ActorRole::Ops,
    };
    let ctx = CommandContext::new(ops, "req-before-crash-2").with_idempotency_key(key);
    let first = app
        .commands
        .run(
            &ctx,
            ConfirmOrder {
                order_id: OrderId(order),
            },
        )
        .await
        .expect("confirm");
    lose_responses(&app).await;
    let before = app.event_count().await;
    let retry = app
        .post(&path)
        .token(&app.ops())
        .key("confirm-1")
        .send()
        .await;
    retry.assert(StatusCode::OK);
    assert!(retry.replayed());
    assert_eq!(retry.body["version"], first.version);
    assert_eq!(retry.event_types(), ["OrderConfirmed"]);
    assert_eq!(app.event_count().await, before);
}

/// Emulate a response lost with the process: the key is claimed, the events
/// are appended, but no response was recorded.
async fn lose_responses(app: &TestApp) {
    let lost = sqlx::query("UPDATE idempotency_keys SET status_code = NULL, response = NULL")
        .execute(&app.db.pool)
        .await
        .expect("forget responses");
    assert!(lost.rows_affected() >= 1);
}
