//! The audit and reconciliation routes and the read-only `auditor` role.

use axum::http::StatusCode;
use chrono::{Days, Utc};
use ordertrail_testkit::eventually;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

use crate::docs::ROUTES;
use crate::support::{TestApp, berlin, rider};

fn concrete(path: &str) -> String {
    path.replace("{id}", &Uuid::new_v4().to_string())
        .replace("{date}", "2026-03-14")
        .replace("{kind}", "orders")
}

#[tokio::test]
async fn an_auditor_reads_everything_and_every_command_answers_403() {
    let app = TestApp::new().await;
    let auditor = app.token("auditor", "auditor-carol");
    let mut commands = 0;
    for (method, path) in ROUTES {
        let path = concrete(path);
        let response = match *method {
            "post" => app.post(&path),
            "put" => app.put(&path),
            _ => continue,
        }
        .token(&auditor)
        .key(&Uuid::new_v4().to_string())
        .json(json!({}))
        .send()
        .await;
        response.assert_error(StatusCode::FORBIDDEN, "forbidden");
        commands += 1;
    }
    assert!(commands >= 25, "only {commands} commands checked");
    let before = app.event_count().await;
    assert_eq!(before, 0, "the auditor appended nothing");

    // Every read route lets the auditor in (some want parameters: 400/422, never 401/403).
    // The never-ending SSE streams are checked in `streams`.
    for (method, path) in ROUTES
        .iter()
        .filter(|(m, p)| *m == "get" && !p.contains("stream"))
    {
        let response = app.get_as(&auditor, &concrete(path)).await;
        assert!(
            !matches!(
                response.status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ),
            "{method} {path}: {} {}",
            response.status,
            response.text
        );
    }
    let list = app.get_as(&auditor, "/v1/orders").await;
    list.assert(StatusCode::OK);
    app.get_as(&auditor, "/v1/settlements/days/2026-03-14")
        .await
        .assert(StatusCode::OK);
}

#[tokio::test]
async fn customers_restaurants_and_riders_get_403_on_audit_routes() {
    let app = TestApp::new().await;
    let (order, customer) = app.accepted_order().await;
    let audit_routes = [
        format!("/v1/audit/orders/{order}/events"),
        format!("/v1/audit/orders/{order}/state"),
        format!("/v1/audit/correlations/{order}"),
        "/v1/reconciliation/settlements?from=2026-03-14&to=2026-03-14".to_owned(),
    ];
    let tokens = [customer, app.restaurant(berlin()), app.rider(rider(1))];
    for path in &audit_routes {
        for token in &tokens {
            app.get_as(token, path)
                .await
                .assert_error(StatusCode::FORBIDDEN, "forbidden");
        }
        for token in [app.ops(), app.admin()] {
            app.get_as(&token, path).await.assert(StatusCode::OK);
        }
        app.get(path)
            .send()
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    }
}

#[tokio::test]
async fn audit_routes_show_history_state_and_flow_from_the_store() {
    let app = TestApp::new().await;
    let (order, _) = app.accepted_order().await;
    let auditor = app.token("auditor", "auditor-carol");

    let events = app
        .get_as(&auditor, &format!("/v1/audit/orders/{order}/events"))
        .await;
    events.assert(StatusCode::OK);
    let items = events.body["items"].as_array().expect("items");
    let seen: Vec<(&str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap_or(""),
                e["metadata"]["actor_role"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("OrderPlaced", "customer"),
            ("OrderConfirmed", "ops"),
            ("OrderAccepted", "restaurant")
        ]
    );
    for e in items {
        for key in [
            "command_id",
            "correlation_id",
            "causation_id",
            "request_id",
            "actor_subject",
        ] {
            assert!(e["metadata"][key].is_string(), "{key} in {e}");
        }
        assert!(e["recorded_at"].is_string());
    }
    let page = app
        .get_as(
            &auditor,
            &format!("/v1/audit/orders/{order}/events?limit=2"),
        )
        .await;
    assert_eq!(page.body["next_cursor"], "2");
    let rest = app
        .get_as(
            &auditor,
            &format!("/v1/audit/orders/{order}/events?cursor=2"),
        )
        .await;
    assert_eq!(rest.body["items"][0]["event_type"], "OrderAccepted");
    assert!(rest.body["next_cursor"].is_null());

    // State as of version 2 is the confirmed order; as of the placement time, the placed one.
    let (current, version) = app
        .commands
        .load_order(ordertrail_schemas::OrderId(order))
        .await
        .unwrap()
        .unwrap();
    let latest = app
        .get_as(&auditor, &format!("/v1/audit/orders/{order}/state"))
        .await;
    latest.assert(StatusCode::OK);
    assert_eq!(latest.body["version"], version);
    assert_eq!(
        latest.body["state"],
        serde_json::to_value(&current).unwrap()
    );
    let v2 = app
        .get_as(
            &auditor,
            &format!("/v1/audit/orders/{order}/state?version=2"),
        )
        .await;
    assert_eq!(v2.body["version"], 2);
    assert_eq!(v2.body["at"], items[1]["recorded_at"]);
    let placed_at = items[0]["recorded_at"].as_str().unwrap();
    let at = app
        .get_as(
            &auditor,
            &format!(
                "/v1/audit/orders/{order}/state?at={}",
                placed_at.replace('+', "%2B")
            ),
        )
        .await;
    at.assert(StatusCode::OK);
    assert_eq!(at.body["version"], 1);
    assert_ne!(at.body["state"], v2.body["state"]);

    app.get_as(
        &auditor,
        &format!("/v1/audit/orders/{order}/state?version=9"),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    app.get_as(
        &auditor,
        &format!("/v1/audit/orders/{order}/state?version=1&at=2026-01-01T00:00:00Z"),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    app.get_as(&auditor, &format!("/v1/audit/invoices/{order}/events"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "route_not_found");
    app.get_as(
        &auditor,
        &format!("/v1/audit/orders/{order}/events?limit=0"),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "limit_out_of_range");

    // The placement's flow: the order placed by the customer. A flow is read
    // in commit order, below the oldest transaction still open anywhere on
    // the server (DESIGN.md): another database's long write can hold a
    // just-committed event back for a moment, so wait for it, bounded.
    let correlation = items[0]["metadata"]["correlation_id"].as_str().unwrap();
    let path = format!("/v1/audit/correlations/{correlation}");
    let flow = eventually(
        "the placement's flow to be readable",
        Duration::from_secs(30),
        || async {
            let flow = app.get_as(&auditor, &path).await;
            flow.assert(StatusCode::OK);
            flow.body["items"][0].is_object().then_some(flow)
        },
    )
    .await;
    assert_eq!(flow.body["items"][0]["event_type"], "OrderPlaced");
}

#[tokio::test]
async fn reconciliation_compares_the_events_with_the_read_model_and_the_provider() {
    let app = TestApp::new().await;
    app.accepted_order().await;
    let today = Utc::now().date_naive();
    let (from, to) = (today - Days::new(1), today + Days::new(1));
    let report = app
        .get_as(
            &app.token("auditor", "auditor-carol"),
            &format!("/v1/reconciliation/settlements?from={from}&to={to}&provider_statement=true"),
        )
        .await;
    report.assert(StatusCode::OK);
    let s = &report.body["summary"];
    // One authorization, recorded by the provider and by our events alike.
    assert_eq!(
        (
            s["ledger_operations"].as_u64(),
            s["statement_lines"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // No settlement projector runs here: its days are missing from the read model.
    let kinds = &s["breaks_by_kind"];
    assert_eq!(kinds["restaurant_day_missing"], 1, "{}", report.text);
    assert_eq!(kinds["provider_day_missing"], 1, "{}", report.text);
    assert_eq!(s["breaks"], 2, "{}", report.text);
    let subjects: Vec<&str> = report.body["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["subject"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(subjects, ["simulated", berlin().to_string().as_str()]);

    app.get_as(
        &app.ops(),
        "/v1/reconciliation/settlements?from=2026-03-14&to=2026-01-01",
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_range");
}
