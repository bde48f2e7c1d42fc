//! Optimistic concurrency through the API: a lost race is a 409, never an overwrite.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{TestApp, rider};

#[tokio::test]
async fn two_riders_racing_for_one_delivery_one_wins_one_gets_409() {
    let app = TestApp::new().await;
    for round in 0..3 {
        let (_, delivery, _) = app.requested_delivery().await;
        let (ada, bilal) = (rider(1 + round * 2), rider(2 + round * 2));
        let (ta, tb) = (app.rider(ada), app.rider(bilal));
        let assign = |token: &str, me| {
            app.post(&format!("/v1/deliveries/{delivery}/assign"))
                .token(token)
                .json(json!({"rider_id": me}))
                .send()
        };
        let (a, b) = tokio::join!(assign(&ta, ada), assign(&tb, bilal));
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "a: {} b: {}",
            a.text,
            b.text
        );
        let loser = if a.status == StatusCode::CONFLICT {
            &a
        } else {
            &b
        };
        assert!(
            [
                "concurrency_conflict",
                "delivery_already_assigned",
                "delivery_not_assignable"
            ]
            .contains(&loser.code()),
            "{}",
            loser.text
        );
        let assigned: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type = 'RiderAssigned' AND aggregate_id = $1",
        )
        .bind(delivery.to_string())
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
        assert_eq!(assigned, 1, "round {round}");
    }
}
