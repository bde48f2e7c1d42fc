//! Tokens and ownership: who may do what, and that refusals append nothing.

use axum::http::StatusCode;
use chrono::Utc;
use ordertrail_api::AuthConfig;
use ordertrail_launcher::seed::seed_ids;
use serde_json::json;
use uuid::Uuid;

use crate::support::{SECRET, TestApp, berlin, card, cash, place_order_body, rider};

#[tokio::test]
async fn missing_malformed_forged_and_expired_tokens_are_401() {
    let app = TestApp::new().await;
    let customer_id = Uuid::new_v4().to_string();
    let before = app.event_count().await;

    app.post("/v1/orders")
        .json(place_order_body(card()))
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    app.post("/v1/orders")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(place_order_body(card()))
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let forged = AuthConfig::new(b"someone-elses-secret", None)
        .mint("customer", &customer_id, 3600)
        .unwrap();
    let expired = app.auth.mint("customer", &customer_id, -3600).unwrap();
    for (case, token, code) in [
        ("not a JWT", "not-a-jwt", "invalid_token"),
        (
            "signed with another secret",
            forged.as_str(),
            "invalid_token",
        ),
        ("expired", expired.as_str(), "token_expired"),
    ] {
        app.place(token, place_order_body(card()))
            .await
            .assert_case_error(case, StatusCode::UNAUTHORIZED, code);
    }

    // Well signed but not acceptable: unknown role, non-UUID subject for a customer, no exp.
    let raw = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    };
    let exp = Utc::now().timestamp() + 600;
    for claims in [
        json!({"sub": customer_id, "role": "system", "exp": exp, "iat": exp - 600}),
        json!({"sub": customer_id, "role": "superuser", "exp": exp, "iat": exp - 600}),
        json!({"sub": "bob", "role": "customer", "exp": exp, "iat": exp - 600}),
        json!({"sub": customer_id, "role": "customer", "iat": exp - 600}),
    ] {
        let r = app
            .place(&raw(claims.clone()), place_order_body(card()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "{claims}: {}",
            r.text
        );
    }

    // Tokens are checked before bodies: a bad body without a token is 401.
    app.post("/v1/orders")
        .raw("application/json", "{")
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    // Reads need a token too.
    app.get(&format!("/v1/restaurants/{}/menu", berlin()))
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");

    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn roles_are_checked_before_the_body_is_read() {
    let (app, customer, order) = TestApp::with_order(card()).await;
    let before = app.event_count().await;

    // Restaurants, riders and staff do not place orders.
    for token in [app.restaurant(berlin()), app.rider(rider(1)), app.ops()] {
        app.place(&token, place_order_body(card()))
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    // Customers do not confirm, accept or assign; riders do not cancel orders.
    app.order_step(&customer, order, "confirm")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.post(&format!("/v1/orders/{order}/accept"))
        .token(&customer)
        .raw("application/json", "{not json")
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.accept_order(&app.ops(), order, 10)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.cancel_order(&app.rider(rider(1)), order, "x")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.post("/v1/payments/00000000-0000-0000-0000-000000000000/refund")
        .token(&customer)
        .json(json!({"amount_minor": 1, "reason": "x"}))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.put(&format!("/v1/admin/riders/{}", Uuid::new_v4()))
        .token(&app.ops())
        .json(json!({"name": "x", "active": true}))
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn customers_act_only_on_their_own_orders() {
    let app = TestApp::new().await;
    let (_, alice) = app.customer();
    let (_, mallory) = app.customer();
    let order = app.place_order(&alice, card()).await;
    let before = app.event_count().await;

    app.cancel_order(&mallory, order, "mine now")
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    app.authorize(&mallory, order)
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    assert_eq!(app.event_count().await, before);

    // The order's own customer may.
    app.cancel_order(&alice, order, "oops")
        .await
        .assert(StatusCode::OK);
}

#[tokio::test]
async fn restaurants_act_only_on_their_own_orders() {
    let (app, _, order) = TestApp::with_order(cash()).await;
    app.order_step(&app.ops(), order, "confirm")
        .await
        .assert(StatusCode::OK);
    let before = app.event_count().await;

    let other = app.restaurant(seed_ids::LONDON_CURRY);
    app.accept_order(&other, order, 10)
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    app.order_step_with(&other, order, "reject", json!({"reason": "not ours"}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    app.post("/v1/deliveries")
        .token(&other)
        .json(json!({"order_id": order}))
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    assert_eq!(app.event_count().await, before);

    app.order_step_with(
        &app.restaurant(berlin()),
        order,
        "reject",
        json!({"reason": "out of buns"}),
    )
    .await
    .assert(StatusCode::OK);
}

#[tokio::test]
async fn riders_act_only_on_deliveries_assigned_to_them() {
    let app = TestApp::new().await;
    let (_, delivery, code) = app.requested_delivery().await;
    let (ada, bilal) = (rider(1), rider(2));
    let before = app.event_count().await;

    // A rider may not assign someone else; before being assigned, the
    // delivery does not exist for them (404, as for an unknown id).
    app.assign_rider(&app.rider(bilal), &delivery, ada)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.delivery_step(&app.rider(ada), &delivery, "pickup")
        .await
        .assert_error(StatusCode::NOT_FOUND, "delivery_not_found");
    assert_eq!(app.event_count().await, before);

    app.assign_rider(&app.rider(ada), &delivery, ada)
        .await
        .assert(StatusCode::OK);
    let assigned = app.event_count().await;

    // Assigned to Ada, the delivery does not exist for Bilal.
    let bilal_token = app.rider(bilal);
    let fix = json!({"lat": 52.4995, "lon": 13.4185, "reported_at": Utc::now()});
    for (action, body) in [
        ("locations", Some(fix)),
        ("pickup", None),
        ("complete", Some(json!({"dropoff_code": code}))),
        ("fail", Some(json!({"reason": "flat tyre"}))),
    ] {
        let path = format!("/v1/deliveries/{delivery}/{action}");
        app.step(&bilal_token, path, body).await.assert_case_error(
            action,
            StatusCode::NOT_FOUND,
            "delivery_not_found",
        );
    }
    // Unassigning and cancelling are for ops.
    app.delivery_step_with(
        &app.rider(ada),
        &delivery,
        "unassign",
        json!({"reason": "x"}),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(app.event_count().await, assigned);

    app.delivery_step_with(
        &app.ops(),
        &delivery,
        "unassign",
        json!({"reason": "rider went home"}),
    )
    .await
    .assert(StatusCode::OK);
    app.delivery_step_with(
        &app.ops(),
        &delivery,
        "cancel",
        json!({"reason": "order cancelled"}),
    )
    .await
    .assert(StatusCode::OK);
}
