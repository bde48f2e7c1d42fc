//! Every class of bad input gets its own 4xx, and nothing is appended.

use axum::http::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::support::{MAX_BODY, TestApp, berlin, card, cash, place_order_body};

#[tokio::test]
async fn bad_bodies_are_told_apart_and_append_nothing() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let before = app.event_count().await;

    let malformed = app
        .post("/v1/orders")
        .token(&customer)
        .raw("application/json", "{\"restaurant_id\": ")
        .send()
        .await;
    malformed.assert_error(StatusCode::BAD_REQUEST, "malformed_json");

    let mut wrong_type = place_order_body(card());
    wrong_type["items"][0]["quantity"] = json!("two");
    app.place(&customer, wrong_type)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        .assert_error_path("items[0].quantity");

    let mut negative = place_order_body(card());
    negative["items"][0]["quantity"] = json!(-1);
    app.place(&customer, negative)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    let mut missing = place_order_body(card());
    missing.as_object_mut().unwrap().remove("delivery_address");
    let missing = app.place(&customer, missing).await;
    missing.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert!(
        missing.body["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("delivery_address"),
        "{}",
        missing.text
    );

    let mut unknown = place_order_body(card());
    unknown["discount_minor"] = json!(500);
    let unknown = app.place(&customer, unknown).await;
    unknown.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert!(
        unknown.body["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("discount_minor"),
        "{}",
        unknown.text
    );

    let mut unknown_nested =
        place_order_body(json!({"kind": "card", "card_token": "tok_visa", "cvv": "123"}));
    unknown_nested["tip_minor"] = json!(0);
    app.place(&customer, unknown_nested)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    let mut bad_kind = place_order_body(json!({"kind": "crypto"}));
    bad_kind["tip_minor"] = json!(0);
    app.place(&customer, bad_kind)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    app.post("/v1/orders")
        .token(&customer)
        .raw("text/plain", place_order_body(card()).to_string())
        .send()
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    app.post("/v1/orders")
        .token(&customer)
        .raw("application/x-www-form-urlencoded", "restaurant_id=1")
        .send()
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let mut huge = place_order_body(card());
    huge["delivery_address"]["street"] = json!("x".repeat(MAX_BODY + 1));
    app.place(&customer, huge)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // An empty body where fields are required is a missing-field error.
    app.post("/v1/orders")
        .token(&customer)
        .send()
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    // Domain validation: unknown restaurant, unknown menu item, bad quantity.
    let mut ghost = place_order_body(card());
    ghost["restaurant_id"] = json!(Uuid::new_v4());
    app.place(&customer, ghost)
        .await
        .assert_error(StatusCode::NOT_FOUND, "restaurant_not_found");
    let mut zero = place_order_body(card());
    zero["items"][0]["quantity"] = json!(0);
    app.place(&customer, zero)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_quantity");

    app.place_keyed(&customer, "", place_order_body(card()))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key");
    app.place_keyed(&customer, &"k".repeat(256), place_order_body(card()))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key");

    assert_eq!(app.event_count().await, before, "bad input appended events");
}

#[tokio::test]
async fn unknown_ids_routes_and_methods() {
    let app = TestApp::new().await;
    let ops = app.ops();
    let before = app.event_count().await;
    let nobody = Uuid::new_v4();

    // Unknown ids: 404 with the code of the aggregate not found.
    let assign = json!({"rider_id": crate::support::rider(1)});
    let cancel = json!({"reason": "x"});
    for (aggregates, action, body, code) in [
        ("orders", "confirm", None, "order_not_found"),
        ("orders", "delivered", None, "order_not_found"),
        ("payments", "void", None, "payment_not_found"),
        ("deliveries", "assign", Some(assign), "delivery_not_found"),
        ("deliveries", "cancel", Some(cancel), "delivery_not_found"),
    ] {
        let path = format!("/v1/{aggregates}/{nobody}/{action}");
        app.step(&ops, path.clone(), body).await.assert_case_error(
            &path,
            StatusCode::NOT_FOUND,
            code,
        );
    }
    app.authorize(&ops, nobody)
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");

    app.post("/v1/orders/not-a-uuid/confirm")
        .token(&ops)
        .send()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
    app.get_as(&ops, "/v1/no-such-thing")
        .await
        .assert_error(StatusCode::NOT_FOUND, "route_not_found");
    // `/v1/orders` has GET (the list) and POST; DELETE is not a method of it.
    app.request(Method::DELETE, "/v1/orders")
        .token(&ops)
        .send()
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    app.get("/v1/docs/assets/")
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "route_not_found");

    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn invalid_transitions_are_409_with_their_own_code_and_append_nothing() {
    let (app, _, order) = TestApp::with_order(cash()).await;
    let restaurant = app.restaurant(berlin());
    let before = app.event_count().await;

    // Not confirmed yet: the restaurant cannot accept or mark it ready.
    app.accept_order(&restaurant, order, 10)
        .await
        .assert_error(StatusCode::CONFLICT, "order_not_acceptable");
    app.order_step(&restaurant, order, "ready")
        .await
        .assert_error(StatusCode::CONFLICT, "order_not_in_preparation");
    app.order_step(&app.ops(), order, "delivered")
        .await
        .assert_error(StatusCode::CONFLICT, "order_not_deliverable");

    // A wrong preparation estimate is a validation error.
    app.order_step(&app.ops(), order, "confirm")
        .await
        .assert(StatusCode::OK);
    let confirmed_at = app.event_count().await;
    app.accept_order(&restaurant, order, 0)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_preparation_time");
    app.order_step(&app.ops(), order, "confirm")
        .await
        .assert_error(StatusCode::CONFLICT, "order_not_confirmable");
    assert_eq!(app.event_count().await, confirmed_at);
    assert_eq!(confirmed_at, before + 1);
}

#[tokio::test]
async fn internal_errors_are_logged_not_returned() {
    let (app, _, order) = TestApp::with_order(cash()).await;
    sqlx::query("UPDATE events SET payload = '{\"type\": \"SecretInternalShape\"}'::jsonb WHERE aggregate_id = $1")
        .bind(order.to_string())
        .execute(&app.db.pool)
        .await
        .expect("corrupt the stored event");
    let broken = app.order_step(&app.ops(), order, "confirm").await;
    broken.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert!(
        !broken.text.contains("SecretInternalShape") && !broken.text.contains("variant"),
        "{}",
        broken.text
    );
    assert!(broken.headers.get("x-request-id").is_some());
}
