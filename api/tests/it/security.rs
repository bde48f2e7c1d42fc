//! Issue 13, the data half: input that would stop a reader never reaches the
//! store, amounts are capped, and secrets stay out of events and out of other
//! people's answers. Each test is a failure the issue reported.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{TestApp, berlin, card, cash, place_order_body, rider};

/// Every stored event's payload as text, for "the secret is nowhere" checks.
async fn stored_payloads(app: &TestApp) -> String {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload::text FROM events ORDER BY global_position")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(p,)| p)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_nul_in_the_street_is_422_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let before = app.event_count().await;
    let mut body = place_order_body(card());
    body["delivery_address"]["street"] = json!("Main St\u{0} 1");
    app.place(&customer, body)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "text_control_character")
        .assert_error_path("delivery_address.street");
    // Other control characters anywhere in the body, too; a newline is not
    // an address.
    for (field, value) in [
        ("city", "Ber\u{1b}lin"),
        ("postal_code", "10999\u{7f}"),
        ("street", "Main St\n1"),
    ] {
        let mut body = place_order_body(card());
        body["delivery_address"][field] = json!(value);
        app.place(&customer, body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "text_control_character");
    }
    assert_eq!(app.event_count().await, before, "nothing was appended");
}

#[tokio::test]
async fn a_nul_in_a_reason_is_422_and_a_newline_is_fine() {
    let (app, customer, order) = TestApp::with_order(cash()).await;
    let before = app.event_count().await;
    app.cancel_order(&customer, order, "changed\u{0} my mind")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "text_control_character");
    assert_eq!(app.event_count().await, before);
    app.cancel_order(&customer, order, "changed my mind\n\tsorry")
        .await
        .assert(StatusCode::OK);
}

#[tokio::test]
async fn a_reason_of_501_characters_is_422_and_500_pass() {
    let (app, customer, order) = TestApp::with_order(cash()).await;
    let before = app.event_count().await;
    let r = app.cancel_order(&customer, order, "x".repeat(501)).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "text_too_long");
    let r = app.cancel_order(&customer, order, "x".repeat(10_000)).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "text_too_long");
    assert_eq!(app.event_count().await, before);
    app.cancel_order(&customer, order, "ü".repeat(500))
        .await
        .assert(StatusCode::OK);
}

#[tokio::test]
async fn address_fields_have_length_limits() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let before = app.event_count().await;
    for (field, len) in [("street", 201), ("city", 101), ("postal_code", 17)] {
        let mut body = place_order_body(card());
        body["delivery_address"][field] = json!("a".repeat(len));
        app.place(&customer, body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "text_too_long");
    }
    assert_eq!(app.event_count().await, before);
    let mut body = place_order_body(card());
    body["delivery_address"]["street"] = json!("a".repeat(200));
    app.place(&customer, body).await.assert(StatusCode::CREATED);
}

#[tokio::test]
async fn huge_tips_are_422_and_the_cap_is_accepted() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let before = app.event_count().await;
    for tip in [9_000_000_000_000_000_000_i64, 10_001] {
        let mut body = place_order_body(card());
        body["tip_minor"] = json!(tip);
        app.place(&customer, body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "tip_too_large");
    }
    assert_eq!(app.event_count().await, before, "nothing was appended");
    let mut body = place_order_body(card());
    body["tip_minor"] = json!(10_000);
    let placed = app.place(&customer, body).await;
    placed.assert(StatusCode::CREATED);
    assert_eq!(
        placed.body["events"][0]["payload"]["price"]["tip"]["amount"],
        10_000
    );
}

#[tokio::test]
async fn the_card_token_is_in_no_event_and_no_answer() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let placed = app.place(&customer, place_order_body(card())).await;
    placed.assert(StatusCode::CREATED);
    assert!(!placed.text.contains("tok_visa"), "{}", placed.text);
    let method = &placed.body["events"][0]["payload"]["payment_method"];
    assert_eq!(method["kind"], "card");
    assert!(
        method["payment_method_ref"]
            .as_str()
            .unwrap()
            .starts_with("pm_"),
        "{method}"
    );
    // The simulated provider still knows what the reference stands for.
    let order = crate::support::order_id(&placed);
    app.authorize(&customer, order)
        .await
        .assert(StatusCode::CREATED);
    // A retry with another card: declined by its token's behaviour.
    let (_, other) = app.customer();
    let second = app.place_order(&other, card()).await;
    let declined = app
        .post("/v1/payments")
        .token(&other)
        .json(json!({"order_id": second, "card_token": "tok_declined"}))
        .send()
        .await;
    declined.assert_error(StatusCode::PAYMENT_REQUIRED, "payment_declined");
    assert!(!declined.text.contains("tok_declined"));
    let stored = stored_payloads(&app).await;
    assert!(!stored.contains("tok_visa") && !stored.contains("tok_declined"));
    assert!(!stored.contains("card_token"));
}

#[tokio::test]
async fn the_restaurant_reads_no_code_from_post_deliveries() {
    let app = TestApp::new().await;
    let (order, _) = app.accepted_order().await;
    let requested = app
        .post("/v1/deliveries")
        .token(&app.restaurant(berlin()))
        .json(json!({"order_id": order}))
        .send()
        .await;
    requested.assert(StatusCode::CREATED);
    let code = app
        .commands
        .dropoff_code_for(ordertrail_schemas::OrderId(order));
    let payload = &requested.body["events"][0]["payload"];
    assert_eq!(
        requested.body["events"][0]["event_type"],
        "DeliveryRequested"
    );
    assert!(payload.get("dropoff_code").is_none(), "{payload}");
    assert!(payload.get("dropoff_code_hash").is_none(), "{payload}");
    // Not in the store either: only the keyed hash.
    let stored = stored_payloads(&app).await;
    assert!(stored.contains("hmac-sha256:"));
    assert!(!stored.contains("\"dropoff_code\""));
    // Staff see the hash, never the code.
    let delivery = requested.body["aggregate_id"].as_str().unwrap().to_owned();
    let me = rider(1);
    let assigned = app.assign_rider(&app.ops(), &delivery, me).await;
    assigned.assert(StatusCode::OK);
    // The rider cannot finish without the code: a guess is recorded.
    let rider_token = app.rider(me);
    app.delivery_step(&rider_token, &delivery, "pickup")
        .await
        .assert(StatusCode::OK);
    let wrong = if code == "0000" { "0001" } else { "0000" };
    app.complete_delivery(&rider_token, &delivery, wrong)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "dropoff_code_invalid");
    app.complete_delivery(&rider_token, &delivery, code)
        .await
        .assert(StatusCode::OK);
}

#[tokio::test]
async fn staff_capture_only_after_delivery_unless_they_record_why() {
    let app = TestApp::new().await;
    let (order, _) = app.accepted_order().await;
    let payment = ordertrail_schemas::PaymentId::for_order(ordertrail_schemas::OrderId(order));
    let before = app.event_count().await;
    app.payment_step(&app.ops(), &payment, "capture")
        .await
        .assert_error(StatusCode::CONFLICT, "capture_before_delivery");
    assert_eq!(app.event_count().await, before);
    let captured = app
        .payment_step_with(
            &app.ops(),
            &payment,
            "capture",
            json!({"override_reason": "customer asked to be charged now"}),
        )
        .await;
    captured.assert(StatusCode::OK);
    assert_eq!(
        captured.body["events"][0]["payload"]["override_reason"],
        "customer asked to be charged now"
    );
}
