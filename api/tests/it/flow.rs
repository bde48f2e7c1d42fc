//! Happy paths through the command endpoints.

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use ordertrail_launcher::seed::seed_ids;
use serde_json::json;
use uuid::Uuid;

use crate::support::{TestApp, TestResponse, berlin, card, cash, rider};

#[tokio::test]
async fn an_order_goes_from_placement_to_delivery() {
    let app = TestApp::new().await;
    let (customer_id, customer) = app.customer();

    let placed = app
        .place(&customer, crate::support::place_order_body(card()))
        .await;
    placed.assert(StatusCode::CREATED);
    assert_eq!(placed.event_types(), ["OrderPlaced"]);
    assert_eq!(placed.body["aggregate_type"], "Order");
    assert_eq!(placed.body["version"], 1);
    assert_eq!(
        placed.body["events"][0]["payload"]["customer_id"],
        customer_id.to_string()
    );
    assert!(placed.headers.get("x-request-id").is_some());
    let order = crate::support::order_id(&placed);
    let total = placed.body["events"][0]["payload"]["price"]["total"].clone();

    let paid = app.authorize(&customer, order).await;
    paid.assert(StatusCode::CREATED);
    assert_eq!(paid.event_types(), ["PaymentAuthorized"]);
    assert_eq!(
        paid.body["events"][0]["payload"]["amount"], total,
        "the order's total, not the client's"
    );
    let payment = paid.body["aggregate_id"].as_str().unwrap().to_owned();

    let ops = app.ops();
    let restaurant = app.restaurant(berlin());
    app.order_step(&ops, order, "confirm")
        .await
        .assert(StatusCode::OK);
    let accepted = app.accept_order(&restaurant, order, 15).await;
    accepted.assert(StatusCode::OK);
    assert_eq!(accepted.event_types(), ["OrderAccepted"]);

    let delivery = app.request_delivery(&restaurant, order).await;
    let code = app
        .commands
        .dropoff_code_for(ordertrail_schemas::OrderId(order));

    let me = rider(1);
    let rider_token = app.rider(me);
    let assigned = app.assign_rider(&rider_token, &delivery, me).await;
    assigned.assert(StatusCode::OK);
    assert_eq!(assigned.event_types(), ["RiderAssigned"]);

    let fix = json!({"lat": 52.4995, "lon": 13.4185, "reported_at": Utc::now() - Duration::seconds(5), "accuracy_m": 6});
    let located = app
        .delivery_step_with(&rider_token, &delivery, "locations", fix)
        .await;
    located.assert(StatusCode::OK);
    assert_eq!(located.event_types(), ["RiderLocationReported"]);

    app.order_step(&restaurant, order, "ready")
        .await
        .assert(StatusCode::OK);
    app.delivery_step(&rider_token, &delivery, "pickup")
        .await
        .assert(StatusCode::OK);
    app.order_step_with(&ops, order, "picked-up", json!({"rider_id": me}))
        .await
        .assert(StatusCode::OK);

    let wrong = if code == "0000" { "1111" } else { "0000" };
    let rejected = app.complete_delivery(&rider_token, &delivery, wrong).await;
    rejected.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "dropoff_code_invalid");
    assert_eq!(rejected.body["details"]["attempts_left"], 2);
    assert_eq!(
        rejected.body["details"]["outcome"]["events"][0]["event_type"],
        "DropoffCodeRejected"
    );

    let completed = app.complete_delivery(&rider_token, &delivery, code).await;
    completed.assert(StatusCode::OK);
    assert_eq!(completed.event_types(), ["DeliveryCompleted"]);
    app.order_step_with(&ops, order, "delivered", json!({}))
        .await
        .assert(StatusCode::OK);

    let captured = app
        .payment_step_with(&ops, &payment, "capture", json!({}))
        .await;
    captured.assert(StatusCode::OK);
    assert_eq!(captured.event_types(), ["PaymentCaptured"]);
    let refunded = app
        .payment_step_with(
            &ops,
            &payment,
            "refund",
            json!({"amount_minor": 100, "reason": "fries were cold"}),
        )
        .await;
    refunded.assert(StatusCode::OK);
    assert_eq!(refunded.event_types(), ["PaymentRefunded"]);

    // Event metadata carries the actor and the request id.
    let (actor_role, actor_subject, request_id): (String, String, String) = sqlx::query_as(
        "SELECT metadata->>'actor_role', metadata->>'actor_subject', metadata->>'request_id'
         FROM events WHERE event_type = 'RiderAssigned'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("metadata");
    assert_eq!(
        (actor_role.as_str(), actor_subject),
        ("rider", me.to_string())
    );
    assert_eq!(
        Some(request_id.as_str()),
        assigned
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
    );
}

#[tokio::test]
async fn a_cash_order_is_paid_when_the_assigned_rider_collects() {
    let (app, customer, order) = TestApp::with_order(cash()).await;
    let ops = app.ops();
    app.order_step(&ops, order, "confirm")
        .await
        .assert(StatusCode::OK);
    // A cash order cannot be authorized on a card.
    app.post("/v1/payments")
        .token(&customer)
        .json(json!({"order_id": order, "card_token": "tok_visa"}))
        .send()
        .await
        .assert_error(StatusCode::CONFLICT, "payment_method_mismatch");
    app.accept_order(&app.restaurant(berlin()), order, 5)
        .await
        .assert(StatusCode::OK);
    let delivery = app.request_delivery(&ops, order).await;
    app.assign_rider(&ops, &delivery, rider(2))
        .await
        .assert(StatusCode::OK);

    // Another rider may not record it (for them the order does not exist); the assigned one may.
    app.order_step(&app.rider(rider(3)), order, "cash-collected")
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    let collected = app
        .order_step(&app.rider(rider(2)), order, "cash-collected")
        .await;
    collected.assert(StatusCode::CREATED);
    assert_eq!(collected.event_types(), ["CashCollected"]);
    assert_eq!(collected.body["aggregate_type"], "Payment");
}

#[tokio::test]
async fn a_declined_card_is_recorded_and_answered_with_402() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let order = app
        .place_order(
            &customer,
            json!({"kind": "card", "card_token": "tok_declined"}),
        )
        .await;
    let before = app.event_count().await;
    let declined = app.authorize(&customer, order).await;
    declined.assert_error(StatusCode::PAYMENT_REQUIRED, "payment_declined");
    assert!(
        declined.body["details"]["decline_code"].is_string(),
        "{}",
        declined.text
    );
    assert_eq!(
        declined.body["details"]["outcome"]["events"][0]["event_type"],
        "PaymentDeclined"
    );
    assert_eq!(
        app.event_count().await,
        before + 1,
        "the decline is recorded"
    );
    // The order cannot be confirmed on a declined payment.
    app.order_step(&app.ops(), order, "confirm")
        .await
        .assert_error(StatusCode::CONFLICT, "payment_not_authorized");
    // Another card works.
    let retried = app
        .post("/v1/payments")
        .token(&customer)
        .json(json!({"order_id": order, "card_token": "tok_mastercard"}))
        .send()
        .await;
    retried.assert(StatusCode::CREATED);
    assert_eq!(retried.event_types(), ["PaymentAuthorized"]);
}

#[tokio::test]
async fn customers_cancel_before_acceptance_and_ops_after() {
    let (app, customer, order) = TestApp::with_order(card()).await;
    let cancelled = app.cancel_order(&customer, order, "changed my mind").await;
    cancelled.assert(StatusCode::OK);
    assert_eq!(cancelled.event_types(), ["OrderCancelled"]);

    let (order, customer) = app.accepted_order().await;
    let before = app.event_count().await;
    app.cancel_order(&customer, order, "too slow")
        .await
        .assert_error(StatusCode::FORBIDDEN, "cancellation_not_allowed_for_role");
    assert_eq!(app.event_count().await, before);
    app.cancel_order(&app.ops(), order, "kitchen fire")
        .await
        .assert(StatusCode::OK);
}

#[tokio::test]
async fn reference_data_is_managed_by_admins_and_read_by_everyone_signed_in() {
    let app = TestApp::new().await;
    let admin = app.admin();
    let id = Uuid::new_v4();
    let restaurant = json!({
        "name": "Neukölln Noodles", "lat": 52.48, "lon": 13.43, "time_zone": "Europe/Berlin",
        "currency": "EUR", "commission_bps": 1400, "tax_bps": 700, "is_open": true
    });
    let put = app
        .put(&format!("/v1/admin/restaurants/{id}"))
        .token(&admin)
        .json(restaurant.clone())
        .send()
        .await;
    put.assert(StatusCode::OK);
    assert_eq!(put.body["name"], "Neukölln Noodles");
    app.put(&format!("/v1/admin/restaurants/{id}"))
        .token(&app.ops())
        .json(restaurant)
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.put(&format!("/v1/admin/restaurants/{id}"))
        .token(&admin)
        .json(json!({"name": "X", "lat": 95.0, "lon": 13.43, "time_zone": "Europe/Berlin", "currency": "EUR", "commission_bps": 1, "tax_bps": 1, "is_open": true}))
        .send()
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference_data");

    let item = Uuid::new_v4();
    app.put(&format!("/v1/admin/menu-items/{item}"))
        .token(&admin)
        .json(json!({"restaurant_id": id, "name": "Dan Dan Noodles", "price_minor": 1150, "available": true}))
        .send()
        .await
        .assert(StatusCode::OK);
    app.put(&format!("/v1/admin/menu-items/{item}"))
        .token(&admin)
        .json(json!({"restaurant_id": Uuid::new_v4(), "name": "Ghost", "price_minor": 1, "available": true}))
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "restaurant_not_found");
    let (_, customer) = app.customer();
    let menu = app
        .get_as(&customer, &format!("/v1/restaurants/{id}/menu"))
        .await;
    menu.assert(StatusCode::OK);
    assert_eq!(menu.body.as_array().map(Vec::len), Some(1));
    app.get_as(
        &customer,
        &format!("/v1/restaurants/{}/menu", Uuid::new_v4()),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "restaurant_not_found");

    let closed = app
        .put(&format!("/v1/admin/restaurants/{id}/open"))
        .token(&admin)
        .json(json!({"is_open": false}))
        .send()
        .await;
    closed.assert(StatusCode::OK);
    assert_eq!(closed.body["is_open"], false);
    let listed = app.get_as(&app.ops(), "/v1/admin/restaurants").await;
    listed.assert(StatusCode::OK);
    assert_eq!(listed.body.as_array().map(Vec::len), Some(5));
    app.get_as(&customer, "/v1/admin/restaurants")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    let rider_id = Uuid::new_v4();
    app.put(&format!("/v1/admin/riders/{rider_id}"))
        .token(&admin)
        .json(json!({"name": "Ines V.", "active": false}))
        .send()
        .await
        .assert(StatusCode::OK);
    let riders = app.get_as(&app.ops(), "/v1/admin/riders").await;
    riders.assert(StatusCode::OK);
    assert_eq!(riders.body.as_array().map(Vec::len), Some(9));

    // An inactive rider cannot be assigned; an unknown one is rejected.
    let (_, delivery, _) = app.requested_delivery().await;
    app.assign_rider(&app.ops(), &delivery, rider_id)
        .await
        .assert_error(StatusCode::CONFLICT, "rider_inactive");
    app.assign_rider(&app.ops(), &delivery, Uuid::new_v4())
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "rider_not_found");
    let _ = seed_ids::BERLIN_MART;
}

#[tokio::test]
async fn health_endpoints_answer_without_a_token() {
    let app = TestApp::new().await;
    let live = app.get("/health/live").send().await;
    live.assert(StatusCode::OK);
    let ready = app.get("/health/ready").send().await;
    ready.assert(StatusCode::OK);
    assert_eq!(ready.body["status"], "ready");
    app.db.pool.close().await;
    let down = app.get("/health/ready").send().await;
    down.assert_error(StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable");
    assert_eq!(
        down.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2"),
        "a 503 says when to retry"
    );
}

/// A card order placed and authorized by its customer; its payment id.
async fn authorized_card_order(app: &TestApp) -> String {
    let (_, customer) = app.customer();
    let order = app.place_order(&customer, card()).await;
    let paid = app.authorize(&customer, order).await;
    paid.assert(StatusCode::CREATED);
    paid.body["aggregate_id"].as_str().unwrap().to_owned()
}

/// The provider's ledger holds the provider key of ops' command sent with
/// `Idempotency-Key: key`, from a call with other parameters: the provider
/// refuses that command's `operation` (`idempotency_key_reused`).
async fn provider_saw_key_before(app: &TestApp, key: &str, operation: &str) {
    use ordertrail_commands::service::{CommandContext, IdempotencyKey};
    use ordertrail_schemas::{Actor, ActorRole};

    let command_id = CommandContext::new(
        Actor {
            subject: "ops-alice".into(),
            role: ActorRole::Ops,
        },
        "req",
    )
    .with_idempotency_key(IdempotencyKey {
        key: key.into(),
        request_hash: String::new(),
    })
    .command_id();
    sqlx::query(
        "INSERT INTO simulated_provider_operations
           (operation, provider_reference, payment_id, amount_minor, currency, fee_minor, occurred_at,
            idempotency_key, request_fingerprint)
         VALUES ($2, 'sim_other', 'other', 1, 'EUR', 0, now(), $1, 'other parameters')",
    )
    .bind(format!("ot-{command_id}"))
    .bind(operation)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

/// Ops send `action` on `payment` with `body`: twice with an
/// `Idempotency-Key` whose provider key the provider saw before with other
/// parameters (it refuses the call: 402 `code`, the outcome recording
/// `failed_event`), then with a new key, which succeeds with
/// `succeeded_event`. Returns the first and the repeated refusal.
async fn refused_then_retried(
    app: &TestApp,
    payment: &str,
    action: &str,
    body: serde_json::Value,
    (code, failed_event, succeeded_event): (&str, &str, &str),
) -> (TestResponse, TestResponse) {
    let key = format!("{action}-refused-1");
    provider_saw_key_before(app, &key, action).await;
    let ops = app.ops();
    let send = |key: String, body: serde_json::Value| {
        app.post(&format!("/v1/payments/{payment}/{action}"))
            .token(&ops)
            .key(&key)
            .json(body)
            .send()
    };
    let refused = send(key.clone(), body.clone()).await;
    refused.assert_error(StatusCode::PAYMENT_REQUIRED, code);
    assert_eq!(
        refused.body["details"]["decline_code"],
        "idempotency_key_reused"
    );
    assert_eq!(refused.body["details"]["final_attempt"], false);
    assert_eq!(
        refused.body["details"]["outcome"]["events"][0]["event_type"],
        failed_event
    );
    let again = send(key, body.clone()).await;
    again.assert_error(StatusCode::PAYMENT_REQUIRED, code);
    let succeeded = send(format!("{action}-refused-2"), body).await;
    succeeded.assert(StatusCode::OK);
    assert_eq!(succeeded.event_types(), [succeeded_event]);
    (refused, again)
}

/// A capture the provider refuses is recorded (`PaymentCaptureFailed`) and
/// answered 402 `payment_capture_failed` with the outcome; a retry with the
/// same `Idempotency-Key` gets the same answer, a new attempt captures.
#[tokio::test]
async fn a_refused_capture_is_recorded_and_answered_402() {
    let app = TestApp::new().await;
    let payment = authorized_card_order(&app).await;
    let body = json!({"override_reason": "customer asked to be charged now"});
    let expected = (
        "payment_capture_failed",
        "PaymentCaptureFailed",
        "PaymentCaptured",
    );
    refused_then_retried(&app, &payment, "capture", body, expected).await;
}

/// A refund the provider refuses is recorded (`PaymentRefundFailed`) and
/// answered 402 `payment_refund_failed` with the outcome; a retry with the
/// same `Idempotency-Key` gets the same answer (replayed), a new key refunds.
#[tokio::test]
async fn a_refused_refund_is_recorded_and_answered_402_the_same_on_retry() {
    let app = TestApp::new().await;
    let payment = authorized_card_order(&app).await;
    let capture = json!({"override_reason": "customer asked to be charged now"});
    app.payment_step_with(&app.ops(), &payment, "capture", capture)
        .await
        .assert(StatusCode::OK);

    let body = json!({"amount_minor": 500, "reason": "cold food"});
    let expected = (
        "payment_refund_failed",
        "PaymentRefundFailed",
        "PaymentRefunded",
    );
    let (refused, again) = refused_then_retried(&app, &payment, "refund", body, expected).await;
    let event = &refused.body["details"]["outcome"]["events"][0];
    assert_eq!(event["payload"]["amount"]["amount"], 500);
    assert!(!refused.replayed());
    assert!(again.replayed(), "the same answer, replayed");
    assert_eq!(
        again.body["details"]["outcome"]["events"],
        refused.body["details"]["outcome"]["events"]
    );
    assert_eq!(again.body["details"]["outcome"]["replayed"], true);
}
