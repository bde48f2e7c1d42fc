//! Server-Sent Event streams against a real PostgreSQL: events appended by
//! commands appear on the streams, resuming after `Last-Event-ID` gets
//! exactly the missed events, and a customer cannot watch another's order.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ordertrail_platform::event_log::{self, Position};
use ordertrail_testkit::eventually;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::support::{TestApp, card};

/// One SSE message.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    event: String,
    data: Value,
}

/// Reads SSE messages off a response body.
struct SseReader {
    body: Body,
    buffer: String,
}

const WAIT: Duration = Duration::from_secs(10);

impl SseReader {
    /// The next message (keep-alive comments skipped); panics after [`WAIT`].
    async fn next(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("an SSE message within the time limit")
    }

    async fn next_inner(&mut self) -> Message {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Message {
                    id,
                    event,
                    data: serde_json::from_str(&data).expect("JSON data"),
                };
            }
            let frame = self
                .body
                .frame()
                .await
                .expect("stream open")
                .expect("frame");
            if let Ok(bytes) = frame.into_data() {
                let bytes: Bytes = bytes;
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// Messages until `done` holds for one (that one included).
    async fn until(&mut self, mut done: impl FnMut(&Message) -> bool) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            let m = self.next().await;
            let stop = done(&m);
            seen.push(m);
            if stop {
                return seen;
            }
        }
    }
}

/// Open a stream; `Err` with the status and body when it is refused.
async fn open(
    app: &TestApp,
    path: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> Result<SseReader, (StatusCode, Value)> {
    let mut builder = Request::get(path).header("authorization", format!("Bearer {token}"));
    if let Some(id) = last_event_id {
        builder = builder.header("last-event-id", id);
    }
    let response = app
        .router
        .clone()
        .oneshot(builder.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        return Err((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ));
    }
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "an SSE content type"
    );
    Ok(SseReader {
        body: response.into_body(),
        buffer: String::new(),
    })
}

fn position(id: &str) -> Position {
    let (t, g) = id.split_once('-').expect("id t-g");
    Position {
        transaction_id: t.parse().unwrap(),
        global_position: g.parse().unwrap(),
    }
}

fn about(order: Uuid) -> impl Fn(&Message) -> bool {
    move |m| m.data["order_id"] == json!(order)
}

#[tokio::test]
async fn an_appended_event_appears_on_the_ops_stream_and_the_order_stream() {
    let app = TestApp::new().await;
    let mut ops = open(&app, "/v1/stream/ops", &app.ops(), None)
        .await
        .expect("ops stream");
    let (customer_id, customer) = app.customer();
    let order = app.place_order(&customer, card()).await;

    let seen = ops.until(about(order)).await;
    let placed = seen.last().unwrap();
    assert_eq!(placed.event, "order_status");
    assert_eq!(placed.data["event_type"], "OrderPlaced");
    assert_eq!(placed.data["status"], "placed");
    assert_eq!(placed.data["id"], json!(placed.id));
    assert_eq!(placed.data["payload"]["customer_id"], json!(customer_id));

    // The customer's own stream starts with the order's history.
    let mut own = open(
        &app,
        &format!("/v1/orders/{order}/events/stream"),
        &customer,
        None,
    )
    .await
    .expect("own order stream");
    let first = own.next().await;
    assert_eq!(first.data["event_type"], "OrderPlaced");
    assert_eq!(first.id, placed.id, "one id for one event on every stream");

    // The restaurant sees its order without the customer's address (visibility table).
    let mut restaurant = open(
        &app,
        &format!("/v1/orders/{order}/events/stream"),
        &app.restaurant(crate::support::berlin()),
        None,
    )
    .await
    .expect("restaurant's order stream");
    let first = restaurant.next().await;
    assert_eq!(first.data["event_type"], "OrderPlaced");
    assert!(first.data["payload"].get("delivery_address").is_none());
    assert!(
        first.data["payload"]["payment_method"]
            .get("payment_method_ref")
            .is_none()
    );
    assert!(first.data["metadata"]["actor"].get("subject").is_none());

    // A later command reaches the open stream live.
    app.authorize(&customer, order)
        .await
        .assert(StatusCode::CREATED);
    let live = own.next().await;
    assert_eq!(live.event, "payment");
    assert_eq!(live.data["event_type"], "PaymentAuthorized");
    assert_eq!(live.data["order_id"], json!(order));
    assert!(position(&live.id) > position(&first.id));
}

#[tokio::test]
async fn resume_from_last_event_id_gets_exactly_the_missed_events() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let mut ops = open(&app, "/v1/stream/ops", &app.ops(), None)
        .await
        .unwrap();
    let first = app.place_order(&customer, card()).await;
    let last_seen = ops.until(about(first)).await.pop().unwrap();
    drop(ops);

    // Missed while disconnected: a whole order flow and another order.
    let (second, _) = app.accepted_order().await;
    let (third, _) = app.accepted_order().await;
    // Readers see what committed below the oldest running transaction of the
    // PostgreSQL cluster: a concurrent test's transaction may hold it back.
    let expected: Vec<String> = eventually(
        "the missed events below the readers' horizon",
        WAIT,
        || async {
            let events = event_log::read_after_of_types(
                &app.db.pool,
                position(&last_seen.id),
                &["Order", "Delivery"],
                1000,
            )
            .await
            .ok()?;
            (events.len() >= 6).then(|| {
                events
                    .iter()
                    .map(|e| format!("{}-{}", e.transaction_id, e.global_position))
                    .collect()
            })
        },
    )
    .await;

    let mut resumed = open(&app, "/v1/stream/ops", &app.ops(), Some(&last_seen.id))
        .await
        .unwrap();
    let mut replayed = Vec::new();
    for _ in 0..expected.len() {
        replayed.push(resumed.next().await);
    }
    let ids: Vec<String> = replayed.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, expected, "exactly the missed events, in commit order");
    for order in [second, third] {
        assert!(replayed.iter().any(|m| m.data["order_id"] == json!(order)));
    }
    // Then live, with nothing repeated.
    let fourth = app.place_order(&customer, card()).await;
    let next = resumed.next().await;
    assert_eq!(next.data["order_id"], json!(fourth));
    assert_eq!(next.data["event_type"], "OrderPlaced");

    // One order's stream resumes the same way.
    let path = format!("/v1/orders/{second}/events/stream");
    let mut own = open(&app, &path, &app.ops(), None).await.unwrap();
    let history = own.until(|m| m.data["event_type"] == "OrderAccepted").await;
    assert!(history.len() >= 3, "{history:?}");
    let mut again = open(&app, &path, &app.ops(), Some(&history[0].id))
        .await
        .unwrap();
    for expected in &history[1..] {
        assert_eq!(again.next().await.id, expected.id);
    }
}

#[tokio::test]
async fn a_customer_cannot_subscribe_to_another_customers_order() {
    let app = TestApp::new().await;
    let (_, alice) = app.customer();
    let (_, bob) = app.customer();
    let order = app.place_order(&alice, card()).await;
    let path = format!("/v1/orders/{order}/events/stream");

    let (status, body) = open(&app, &path, &bob, None).await.err().expect("refused");
    let unknown = format!("/v1/orders/{}/events/stream", Uuid::new_v4());
    let (unknown_status, unknown_body) = open(&app, &unknown, &bob, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "order_not_found");
    assert_eq!(
        (status, body["code"].clone()),
        (unknown_status, unknown_body["code"].clone()),
        "another's order looks unknown"
    );

    // Another restaurant and a rider not on the order: 404 too.
    let brick_lane = ordertrail_launcher::seed::seed_ids::LONDON_CURRY;
    for token in [
        app.restaurant(brick_lane),
        app.rider(crate::support::rider(1)),
    ] {
        let (status, body) = open(&app, &path, &token, None)
            .await
            .err()
            .expect("refused");
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("order_not_found"))
        );
    }
    // Customers and riders never get the ops stream.
    let (status, body) = open(&app, "/v1/stream/ops", &alice, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    // The auditor may read it; a malformed Last-Event-ID is a 400.
    let auditor = app.token("auditor", "carol");
    assert!(open(&app, "/v1/stream/ops", &auditor, None).await.is_ok());
    let (status, body) = open(&app, "/v1/stream/ops", &auditor, Some("not-an-id"))
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_last_event_id"))
    );
    // The owner gets their order.
    assert!(open(&app, &path, &alice, None).await.is_ok());
}

#[tokio::test]
async fn the_ops_stream_filters_by_status_and_rider_positions_carry_an_eta() {
    let app = TestApp::new().await;
    let mut accepted = open(&app, "/v1/stream/ops?status=accepted", &app.ops(), None)
        .await
        .unwrap();
    let mut everything = open(&app, "/v1/stream/ops", &app.ops(), None)
        .await
        .unwrap();
    let (order, delivery, _) = app.requested_delivery().await;
    let first = accepted.next().await;
    assert_eq!(
        (
            first.data["event_type"].as_str(),
            first.data["status"].as_str()
        ),
        (Some("OrderAccepted"), Some("accepted")),
        "only changes into the filtered status: {first:?}"
    );
    assert_eq!(first.data["order_id"], json!(order));

    let rider = crate::support::rider(2);
    app.assign_rider(&app.rider(rider), &delivery, rider)
        .await
        .assert(StatusCode::OK);
    app.delivery_step_with(
        &app.rider(rider),
        &delivery,
        "locations",
        json!({"lat": 52.5070, "lon": 13.3900, "reported_at": chrono::Utc::now()}),
    )
    .await
    .assert(StatusCode::OK);
    let seen = everything.until(|m| m.event == "rider_position").await;
    let position = seen.last().unwrap();
    assert_eq!(position.data["order_id"], json!(order));
    assert_eq!(position.data["rider_id"], json!(rider));
    let eta = &position.data["eta"];
    assert!(
        eta["distance_to_pickup_m"].as_f64().unwrap() > 500.0,
        "{eta}"
    );
    assert!(eta["dropoff_eta"].is_string(), "{eta}");
    // The delivery request on the ops stream carries the drop-off point for ops.
    let requested = seen
        .iter()
        .find(|m| m.data["event_type"] == "DeliveryRequested")
        .expect("the delivery request");
    assert!(requested.data["payload"]["dropoff"].is_object());
    assert!(requested.data["payload"].get("dropoff_code_hash").is_some());
    assert!(requested.data["payload"].get("dropoff_code").is_none());
}
