//! The query routes over read models built by the real pipeline: commands
//! through `app()`, the relay publishing the store to a Kafka-protocol broker
//! (testkit), and the three projectors consuming it, all in-process. Covers
//! filters, keyset pagination, visibility per role, ETAs, settlements and
//! their CSV, projector status, and the stable codes of bad parameters.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{Days, Utc};
use ordertrail_launcher::seed::seed_ids;
use ordertrail_launcher::{RunningStack, Stack};
use ordertrail_projections::PROJECTORS;
use ordertrail_projections::queries::settlements::CSV_HEADER;
use ordertrail_schemas::topics::all_topics;
use ordertrail_schemas::{OrderId, PaymentId};
use ordertrail_testkit::eventually;
use ordertrail_testkit::kafka::TestKafka;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{TestApp, berlin, card, place_order_body, rider};

const PARTITIONS: i32 = 3;

/// The launcher's `Stack` (relay and the three projectors, as tasks) on the
/// test's database and `TestKafka`.
struct Pipeline {
    stack: RunningStack,
    _kafka: TestKafka,
}

impl Pipeline {
    async fn start(pool: &PgPool) -> Self {
        let kafka = TestKafka::start();
        kafka.create_topics(&all_topics(&kafka.prefix), PARTITIONS);
        let stack = Stack::on_pool(pool.clone())
            .kafka(&kafka.bootstrap)
            .topic_prefix(&kafka.prefix)
            .partitions(PARTITIONS)
            .relay_config(|c| {
                c.poll_interval = Duration::from_millis(100);
                c.standby_interval = Duration::from_millis(200);
            })
            .projector_config(|c| c.batch_size = 100)
            .start()
            .await
            .expect("start the stack");
        Self {
            stack,
            _kafka: kafka,
        }
    }

    /// Wait until every projector has applied every event in the store,
    /// failing fast when a service stopped.
    async fn caught_up(&self) {
        self.stack
            .caught_up(Duration::from_secs(60))
            .await
            .expect("the projectors consume every stored event");
    }

    async fn stop(self) {
        self.stack.stop().await.expect("the stack stops cleanly");
    }
}

fn ids(body: &Value) -> Vec<Uuid> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn customer_of(app: &TestApp, token: &str) -> Uuid {
    app.auth.verify(token).unwrap().subject.parse().unwrap()
}

impl TestApp {
    async fn ok(&self, path: &str, token: &str) -> Value {
        let r = self.get_as(token, path).await;
        r.assert(StatusCode::OK);
        r.body
    }

    /// An accepted order taken through delivery, delivered, captured and
    /// refunded 1.00; returns (order, customer token).
    async fn delivered_order(&self, me: Uuid) -> (Uuid, String) {
        let (order, customer) = self.accepted_order().await;
        let restaurant = self.restaurant(berlin());
        let ops = self.ops();
        let rider_token = self.rider(me);
        let delivery = self.request_delivery(&restaurant, order).await;
        let code = self
            .commands
            .dropoff_code_for(ordertrail_schemas::OrderId(order));
        let steps: [(&str, &str, Value); 8] = [
            ("assign", rider_token.as_str(), json!({"rider_id": me})),
            (
                "locations",
                rider_token.as_str(),
                json!({"lat": 52.5150, "lon": 13.4100, "reported_at": Utc::now(), "accuracy_m": 5}),
            ),
            ("ready", restaurant.as_str(), json!({})),
            ("pickup", rider_token.as_str(), json!({})),
            ("picked-up", ops.as_str(), json!({"rider_id": me})),
            (
                "complete",
                rider_token.as_str(),
                json!({"dropoff_code": code}),
            ),
            ("delivered", ops.as_str(), json!({})),
            ("capture", ops.as_str(), json!({})),
        ];
        for (step, token, body) in steps {
            let path = match step {
                "ready" | "picked-up" | "delivered" => format!("/v1/orders/{order}/{step}"),
                "capture" => format!(
                    "/v1/payments/{}/capture",
                    PaymentId::for_order(OrderId(order))
                ),
                _ => format!("/v1/deliveries/{delivery}/{step}"),
            };
            self.post(&path)
                .token(token)
                .json(body)
                .send()
                .await
                .assert(StatusCode::OK);
        }
        self.post(&format!(
            "/v1/payments/{}/refund",
            PaymentId::for_order(OrderId(order))
        ))
        .token(&ops)
        .json(json!({"amount_minor": 100, "reason": "fries were cold"}))
        .send()
        .await
        .assert(StatusCode::OK);
        (order, customer)
    }
}

#[tokio::test]
async fn queries_serve_the_read_models_with_filters_pagination_and_visibility() {
    let app = TestApp::new().await;
    let pipeline = Pipeline::start(&app.db.pool).await;
    let ops = app.ops();

    // Customer A: three placed orders at the burger place.
    let (a, a_token) = app.customer();
    let mut a_orders = Vec::new();
    for _ in 0..3 {
        a_orders.push(app.place_order(&a_token, card()).await);
    }
    // Customer B: a delivered order, and one placed at the mart.
    let (delivered, b_token) = app.delivered_order(rider(1)).await;
    let b = customer_of(&app, &b_token);
    let mut mart_body = place_order_body(card());
    mart_body["restaurant_id"] = json!(seed_ids::BERLIN_MART);
    mart_body["items"] = json!([{"menu_item_id": seed_ids::menu_item(4, 1), "quantity": 3}]);
    let placed = app.place(&b_token, mart_body).await;
    placed.assert(StatusCode::CREATED);
    let mart_order: Uuid = placed.body["aggregate_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Customer C: an accepted order whose delivery rider 2 is on.
    let (on_the_way, c_token) = app.accepted_order().await;
    let delivery = app
        .request_delivery(&app.restaurant(berlin()), on_the_way)
        .await;
    let rider2 = app.rider(rider(2));
    app.assign_rider(&rider2, &delivery, rider(2))
        .await
        .assert(StatusCode::OK);
    app.delivery_step_with(
        &rider2,
        &delivery,
        "locations",
        json!({"lat": 52.5100, "lon": 13.4000, "reported_at": Utc::now(), "accuracy_m": 5}),
    )
    .await
    .assert(StatusCode::OK);

    pipeline.caught_up().await;
    let all: HashSet<Uuid> = a_orders
        .iter()
        .copied()
        .chain([delivered, mart_order, on_the_way])
        .collect();

    // Ops see every order, newest first.
    let page = app.ok("/v1/orders", &ops).await;
    assert_eq!(ids(&page).into_iter().collect::<HashSet<_>>(), all);
    assert!(page["next_cursor"].is_null());
    let placed_at: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["placed_at"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = placed_at.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(placed_at, sorted, "newest first");

    // A cursor walk in pages of 2 returns every order exactly once, both ways.
    for sort in ["placed_desc", "placed_asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let path = match &cursor {
                Some(c) => format!("/v1/orders?limit=2&sort={sort}&cursor={c}"),
                None => format!("/v1/orders?limit=2&sort={sort}"),
            };
            let page = app.ok(&path, &ops).await;
            let items = ids(&page);
            assert!(items.len() <= 2);
            seen.extend(items);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), all.len(), "{sort}: each order once: {seen:?}");
        assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), all);
        if sort == "placed_asc" {
            assert_eq!(
                seen.first(),
                a_orders.first(),
                "oldest first when ascending"
            );
        }
    }

    // Filters.
    let count = |body: Value| ids(&body).len();
    assert_eq!(count(app.ok("/v1/orders?status=placed", &ops).await), 4);
    let only = app.ok("/v1/orders?status=delivered", &ops).await;
    assert_eq!(ids(&only), [delivered]);
    assert_eq!(count(app.ok("/v1/orders?status=accepted", &ops).await), 1);
    let mart = app
        .ok(
            &format!("/v1/orders?restaurant_id={}", seed_ids::BERLIN_MART),
            &ops,
        )
        .await;
    assert_eq!(ids(&mart), [mart_order]);
    let of_a = app.ok(&format!("/v1/orders?customer_id={a}"), &ops).await;
    assert_eq!(
        ids(&of_a).into_iter().collect::<HashSet<_>>(),
        a_orders.iter().copied().collect()
    );
    let of_rider = app
        .ok(&format!("/v1/orders?rider_id={}", rider(1)), &ops)
        .await;
    assert_eq!(ids(&of_rider), [delivered]);
    let combined = app
        .ok(
            &format!("/v1/orders?customer_id={b}&status=placed&sort=placed_asc"),
            &ops,
        )
        .await;
    assert_eq!(ids(&combined), [mart_order]);
    // placed_from is inclusive, placed_to exclusive.
    let oldest_first = app.ok("/v1/orders?sort=placed_asc", &ops).await;
    let second = oldest_first["items"][1]["placed_at"].as_str().unwrap();
    let enc = |t: &str| t.replace('+', "%2B");
    assert_eq!(
        count(
            app.ok(&format!("/v1/orders?placed_from={}", enc(second)), &ops)
                .await
        ),
        all.len() - 1
    );
    assert_eq!(
        count(
            app.ok(&format!("/v1/orders?placed_to={}", enc(second)), &ops)
                .await
        ),
        1
    );

    // A customer sees only their own orders, whatever the filter says.
    let mine = app.ok("/v1/orders", &a_token).await;
    assert_eq!(
        ids(&mine).into_iter().collect::<HashSet<_>>(),
        a_orders.iter().copied().collect()
    );
    assert_eq!(
        count(
            app.ok(&format!("/v1/orders?customer_id={b}"), &a_token)
                .await
        ),
        0
    );
    app.get_as(&a_token, &format!("/v1/orders/{delivered}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    app.get_as(&ops, &format!("/v1/orders/{}", Uuid::new_v4()))
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    // A restaurant sees only its own.
    let mart_token = app.restaurant(seed_ids::BERLIN_MART);
    assert_eq!(ids(&app.ok("/v1/orders", &mart_token).await), [mart_order]);
    app.get_as(&mart_token, &format!("/v1/orders/{delivered}"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "order_not_found");
    assert_eq!(
        count(app.ok("/v1/orders", &app.restaurant(berlin())).await),
        5
    );
    // A rider sees the orders they deliver.
    assert_eq!(
        ids(&app.ok("/v1/orders", &app.rider(rider(1))).await),
        [delivered]
    );

    // Detail: the history row and the timeline with metadata.
    let detail = app.ok(&format!("/v1/orders/{delivered}"), &b_token).await;
    let order = &detail["order"];
    assert_eq!(order["status"], "delivered");
    assert_eq!(order["customer_id"], json!(b));
    assert_eq!(order["rider_id"], json!(rider(1)));
    assert_eq!(order["delivery_status"], "completed");
    assert_eq!(order["payment_status"], "partially_refunded");
    assert_eq!(order["refunded_minor"], 100);
    assert_eq!(order["captured_minor"], order["total_minor"]);
    let timeline = detail["timeline"].as_array().unwrap();
    let types: Vec<&str> = timeline
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for expected in [
        "OrderPlaced",
        "PaymentAuthorized",
        "OrderConfirmed",
        "OrderAccepted",
        "DeliveryRequested",
        "RiderAssigned",
        "DeliveryCompleted",
        "OrderDelivered",
        "PaymentCaptured",
        "PaymentRefunded",
    ] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }
    assert_eq!(types[0], "OrderPlaced");
    // Metadata: the actor role for everyone, request ids for staff only
    // (docs/visibility.md).
    assert_eq!(timeline[0]["metadata"]["actor"]["role"], "customer");
    assert!(timeline[0]["metadata"]["actor"].get("subject").is_none());
    assert!(timeline[0]["metadata"].get("request_id").is_none());
    let staff_view = app.ok(&format!("/v1/orders/{delivered}"), &ops).await;
    assert!(staff_view["timeline"][0]["metadata"]["request_id"].is_string());

    // ETAs: by order (visibility as for the order), by rider, active set.
    let eta = app
        .ok(&format!("/v1/orders/{on_the_way}/eta"), &c_token)
        .await;
    assert_eq!(eta["status"], "assigned");
    assert_eq!(eta["active"], true);
    assert_eq!(eta["rider_id"], json!(rider(2)));
    assert!(eta["pickup_eta"].is_string() && eta["dropoff_eta"].is_string());
    app.get_as(&a_token, &format!("/v1/orders/{on_the_way}/eta"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "delivery_not_found");
    app.get_as(&ops, &format!("/v1/orders/{}/eta", a_orders[0]))
        .await
        .assert_error(StatusCode::NOT_FOUND, "delivery_not_found");
    let done = app.ok(&format!("/v1/orders/{delivered}/eta"), &ops).await;
    assert_eq!(
        (done["status"].as_str(), done["active"].as_bool()),
        (Some("completed"), Some(false))
    );
    let own = app
        .ok(&format!("/v1/riders/{}/etas", rider(2)), &rider2)
        .await;
    assert_eq!(own["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.ok(&format!("/v1/riders/{}/etas", rider(1)), &ops).await["items"],
        json!([])
    );
    app.get_as(
        &app.rider(rider(1)),
        &format!("/v1/riders/{}/etas", rider(2)),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let active = app.ok("/v1/deliveries/active", &ops).await;
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    assert_eq!(active["items"][0]["order_id"], json!(on_the_way));
    let berlin_box = "min_lat=52.4&min_lon=13.3&max_lat=52.6&max_lon=13.5";
    let london_box = "min_lat=51.4&min_lon=-0.3&max_lat=51.6&max_lon=0.1";
    assert_eq!(
        count_items(
            &app.ok(&format!("/v1/deliveries/active?{berlin_box}"), &ops)
                .await
        ),
        1
    );
    assert_eq!(
        count_items(
            &app.ok(&format!("/v1/deliveries/active?{london_box}"), &ops)
                .await
        ),
        0
    );
    app.get_as(&rider2, "/v1/deliveries/active")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let today = Utc::now().date_naive();
    let (from, to) = (
        today.checked_sub_days(Days::new(1)).unwrap(),
        today.checked_add_days(Days::new(1)).unwrap(),
    );
    let accuracy = app
        .ok(&format!("/v1/eta-accuracy?from={from}&to={to}"), &ops)
        .await;
    assert!(accuracy["items"].is_array());

    // Settlements: the delivered order, captured and refunded 1.00.
    let days = app
        .ok(
            &format!(
                "/v1/settlements/restaurants/{}?from={from}&to={to}",
                berlin()
            ),
            &app.restaurant(berlin()),
        )
        .await;
    let days = days["items"].as_array().unwrap().clone();
    assert_eq!(days.len(), 1, "{days:?}");
    let day = &days[0];
    assert_eq!(day["orders"], 1);
    // The 1.00 refund is allocated by component; the restaurant bears its
    // items and tax share and gets the commission on the items back.
    let refund = staff_view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "PaymentRefunded")
        .expect("refund in the timeline");
    let allocation = &refund["payload"]["allocation"];
    let share = |f: &str| allocation[f]["amount"].as_i64().unwrap();
    assert_eq!(
        ["items", "delivery_fee", "service_fee", "tax", "tip"]
            .iter()
            .map(|f| share(f))
            .sum::<i64>(),
        100
    );
    assert_eq!(day["refunds_minor"], share("items") + share("tax"));
    assert!(share("commission_reversed") > 0);
    assert_eq!(day["tips_minor"], order["tip_minor"]);
    assert_eq!(
        day["provider_fees_minor"],
        staff_view["order"]["provider_fees_minor"]
    );
    let business_day = day["business_day"].as_str().unwrap().to_owned();
    app.get_as(
        &mart_token,
        &format!(
            "/v1/settlements/restaurants/{}?from={from}&to={to}",
            berlin()
        ),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.get_as(
        &a_token,
        &format!(
            "/v1/settlements/restaurants/{}?from={from}&to={to}",
            berlin()
        ),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let summary = app
        .ok(&format!("/v1/settlements/days/{business_day}"), &ops)
        .await;
    assert_eq!(summary["restaurants"][0]["restaurant_id"], json!(berlin()));
    assert_eq!(
        summary["totals"][0]["net_payable_minor"],
        day["net_payable_minor"]
    );
    // Provider figures are per UTC day, which is not Berlin's business day
    // between 22:00/23:00 and midnight UTC: look them up on the UTC dates of
    // the capture and the refund.
    let utc_day = |field: &str| {
        order[field]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc).date_naive())
            .unwrap_or_else(|| panic!("order.{field} is not a timestamp: {order}"))
    };
    let provider_on = |summary: &serde_json::Value, field: &str| {
        summary["providers"][0][field]
            .as_i64()
            .unwrap_or_else(|| panic!("no provider {field} in {summary}"))
    };
    let captured_day = app
        .ok(
            &format!("/v1/settlements/days/{}", utc_day("payment_captured_at")),
            &ops,
        )
        .await;
    assert!(
        provider_on(&captured_day, "captured_minor") > 0,
        "{captured_day}"
    );
    let refunded_day = app
        .ok(
            &format!("/v1/settlements/days/{}", utc_day("last_refunded_at")),
            &ops,
        )
        .await;
    assert_eq!(provider_on(&refunded_day, "refunded_minor"), 100);
    app.get_as(
        &app.restaurant(berlin()),
        &format!("/v1/settlements/days/{business_day}"),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");

    // The CSV export: content type, header, one line per restaurant day.
    let csv = app
        .get_as(
            &ops,
            &format!("/v1/settlements/export.csv?from={from}&to={to}"),
        )
        .await;
    csv.assert(StatusCode::OK);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(lines.len(), 2, "{}", csv.text);
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(fields[0], berlin().to_string());
    assert_eq!(fields[1], business_day);
    assert_eq!(fields[3], "1");
    assert_eq!(fields[11], day["refunds_minor"].to_string());
    assert_eq!(fields[13], day["net_payable_minor"].to_string());
    // The mart sees only its own (nothing delivered yet), and may not ask for others.
    let own_csv = app
        .get_as(
            &mart_token,
            &format!("/v1/settlements/export.csv?from={from}&to={to}"),
        )
        .await;
    own_csv.assert(StatusCode::OK);
    assert_eq!(own_csv.text.lines().collect::<Vec<_>>(), [CSV_HEADER]);
    app.get_as(
        &mart_token,
        &format!(
            "/v1/settlements/export.csv?from={from}&to={to}&restaurant_id={}",
            berlin()
        ),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");

    // Projector status lists all three with what they applied.
    let status = app.ok("/v1/projectors/status", &app.admin()).await;
    let names: Vec<&str> = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["projector"].as_str().unwrap())
        .collect();
    let mut expected = PROJECTORS.to_vec();
    expected.sort_unstable();
    expected.push("saga");
    assert_eq!(names, expected);
    for p in status["items"].as_array().unwrap() {
        if p["projector"] == "saga" {
            // Not running in this pipeline: said so, and behind the store.
            assert_eq!(p["state"], "not_started", "{p}");
            assert!(p["events_behind"].as_i64().unwrap() > 0, "{p}");
            continue;
        }
        assert_eq!(p["state"], "following", "{p}");
        assert!(p["heartbeat_age_seconds"].as_f64().is_some(), "{p}");
        assert!(p["events_applied"].as_i64().unwrap() > 0, "{p}");
        assert!(p["events_behind"].is_i64() && p["seconds_behind"].is_number());
        // One instance of each runs here, and it names itself host:pid:suffix.
        let instances = p["instances"].as_array().unwrap();
        assert_eq!(instances.len(), 1, "{p}");
        assert_eq!(instances[0].as_str().unwrap().split(':').count(), 3, "{p}");
    }
    app.get_as(&a_token, "/v1/projectors/status")
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    // Ops verify a read model against the store: a job they start and poll.
    let job = app
        .post("/v1/projectors/settlements/verify")
        .token(&app.ops())
        .send()
        .await;
    job.assert(StatusCode::ACCEPTED);
    let job_id = job.body["job_id"].as_str().expect("job id").to_owned();
    let done = eventually(
        "the verify job finishes",
        Duration::from_secs(60),
        || async {
            let job = app
                .get_as(&app.ops(), &format!("/v1/projectors/verify/{job_id}"))
                .await;
            (job.body["state"] != "running").then_some(job.body)
        },
    )
    .await;
    assert_eq!(done["state"], "clean", "{done}");
    assert_eq!(done["result"]["differences_total"], 0, "{done}");
    assert!(done["result"]["events"].as_u64().unwrap_or(0) > 0, "{done}");
    app.post("/v1/projectors/bookkeeping/verify")
        .token(&app.ops())
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "projector_not_found");
    app.get_as(
        &app.ops(),
        &format!("/v1/projectors/verify/{}", Uuid::new_v4()),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "verify_job_not_found");
    app.post("/v1/projectors/settlements/verify")
        .token(&a_token)
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    pipeline.stop().await;
}

fn count_items(body: &Value) -> usize {
    body["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn bad_query_parameters_are_answered_with_stable_codes() {
    let app = TestApp::new().await;
    let ops = app.ops();
    let cases: &[(&str, StatusCode, &str)] = &[
        (
            "/v1/orders?limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_out_of_range",
        ),
        (
            "/v1/orders?limit=201",
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_out_of_range",
        ),
        (
            "/v1/orders?limit=ten",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders?cursor=zz",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        // Not of the documented pattern (an older hex cursor format).
        (
            "/v1/orders?sort=placed_asc&cursor=643a303a30303030303030302d303030302d303030302d303030302d303030303030303030303030",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "/v1/orders?sort=newest",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders?status=lost",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders?colour=red",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders?customer_id=42",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders?placed_from=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders/not-a-uuid",
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            "/v1/orders/not-a-uuid/eta",
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            "/v1/eta-accuracy?from=2026-13-01&to=2026-12-31",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/eta-accuracy?from=2026-03-01",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/settlements/days/2026-02-30",
            StatusCode::BAD_REQUEST,
            "invalid_date",
        ),
        (
            "/v1/settlements/days/yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_date",
        ),
        (
            "/v1/settlements/export.csv?from=2026-03-01&to=2026-03-02&restaurant_id=x",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/deliveries/active?min_lat=100&min_lon=0&max_lat=101&max_lon=1",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ];
    for (path, status, code) in cases {
        let r = app.get_as(&ops, path).await;
        assert_eq!((r.status, r.code()), (*status, *code), "{path}: {}", r.text);
        assert!(r.body["message"].is_string(), "{path}");
    }

    // What the OpenAPI document allows is accepted: inverted ranges and boxes
    // are empty, long ranges and partial boxes are fine, any string of the
    // cursor's documented pattern is a position.
    for path in [
        "/v1/orders?placed_from=2026-03-02T00:00:00Z&placed_to=2026-03-01T00:00:00Z",
        "/v1/orders?cursor=0.00000000000000000000000000000000&sort=placed_asc",
        "/v1/orders?cursor=9999999999999999.ffffffffffffffffffffffffffffffff",
        "/v1/eta-accuracy?from=2026-03-02&to=2026-03-01",
        "/v1/eta-accuracy?from=0001-01-01&to=9999-12-31",
        "/v1/settlements/restaurants/00000001-0000-4000-8000-000000000001?from=2024-01-01&to=2026-01-01",
        "/v1/settlements/restaurants/00000001-0000-4000-8000-000000000001?from=2026-03-02&to=2026-03-01",
        "/v1/deliveries/active?min_lat=52",
        "/v1/deliveries/active?min_lat=53&min_lon=13&max_lat=52&max_lon=14",
    ] {
        let r = app.get_as(&ops, path).await;
        r.assert(StatusCode::OK);
        let empty = r.body["items"].as_array().is_some_and(Vec::is_empty);
        assert!(empty, "{path}: {}", r.text);
    }
    let r = app
        .get_as(
            &ops,
            "/v1/settlements/export.csv?from=2026-03-02&to=2026-03-01",
        )
        .await;
    r.assert(StatusCode::OK);
    assert_eq!(r.text.lines().count(), 1, "header only: {}", r.text);
    app.get_as(&ops, "/v1/orders?cursor=00.zz")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_cursor");

    // Empty read models answer with empty lists, not errors.
    let empty = app.ok("/v1/orders", &ops).await;
    assert_eq!(empty, json!({"items": [], "next_cursor": null}));
    // Auth: no token, and roles that may not use a route.
    app.get("/v1/orders")
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    let (_, customer) = app.customer();
    for path in [
        "/v1/deliveries/active",
        "/v1/eta-accuracy?from=2026-03-01&to=2026-03-02",
        "/v1/settlements/days/2026-03-01",
        "/v1/settlements/export.csv?from=2026-03-01&to=2026-03-02",
        "/v1/projectors/status",
    ] {
        app.get_as(&customer, path)
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    // `/v1/orders` keeps its POST next to the new GET; other methods are 405.
    app.request(Method::DELETE, "/v1/orders")
        .token(&ops)
        .send()
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let order = app.place_order(&customer, card()).await;
    assert_ne!(order, Uuid::nil());

    // The OpenAPI document has both operations on `/v1/orders` and the
    // query routes with bearer security and their error responses.
    let doc = app.get("/v1/openapi.json").send().await.body;
    let orders = &doc["paths"]["/v1/orders"];
    assert!(
        orders["get"].is_object() && orders["post"].is_object(),
        "{orders}"
    );
    for path in [
        "/v1/orders/{id}",
        "/v1/orders/{id}/eta",
        "/v1/riders/{id}/etas",
        "/v1/deliveries/active",
        "/v1/eta-accuracy",
        "/v1/settlements/restaurants/{id}",
        "/v1/settlements/days/{date}",
        "/v1/settlements/export.csv",
        "/v1/projectors/status",
    ] {
        let get = &doc["paths"][path]["get"];
        assert_eq!(get["security"], json!([{"bearer": []}]), "{path}");
        for status in ["400", "401", "403", "422"] {
            assert!(get["responses"][status].is_object(), "{path} {status}");
        }
    }
    assert!(
        doc["paths"]["/v1/settlements/export.csv"]["get"]["responses"]["200"]["content"]["text/csv"]
            .is_object()
    );
}

/// Issue 13: what the order's timeline shows each role (docs/visibility.md).
/// The assigned rider, before the hand-over, and the restaurant read no
/// drop-off code (nor its hash) and no card data; the customer reads the
/// code in their own view only.
#[tokio::test]
async fn the_timeline_shows_each_role_only_its_fields() {
    let app = TestApp::new().await;
    let pipeline = Pipeline::start(&app.db.pool).await;
    let (order, delivery, code) = app.requested_delivery().await;
    let me = rider(3);
    let rider_token = app.rider(me);
    app.assign_rider(&rider_token, &delivery, me)
        .await
        .assert(StatusCode::OK);
    pipeline.caught_up().await;
    let customer = app.token(
        "customer",
        &app.commands
            .load_order(OrderId(order))
            .await
            .unwrap()
            .unwrap()
            .0
            .customer_id()
            .unwrap()
            .to_string(),
    );
    let detail = |token: String| {
        let app = &app;
        async move { app.ok(&format!("/v1/orders/{order}"), &token).await }
    };
    let entry = |view: &Value, event_type: &str| -> Value {
        view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_type"] == event_type)
            .unwrap_or_else(|| panic!("{event_type} in {view}"))
            .clone()
    };
    for (role, view) in [
        ("rider", detail(rider_token.clone()).await),
        ("restaurant", detail(app.restaurant(berlin())).await),
    ] {
        let text = view.to_string();
        assert!(view.get("dropoff_code").is_none(), "{role}: {text}");
        let requested = entry(&view, "DeliveryRequested");
        assert!(requested["payload"].get("dropoff_code").is_none(), "{role}");
        assert!(
            requested["payload"].get("dropoff_code_hash").is_none(),
            "{role}"
        );
        assert!(!text.contains("hmac-sha256"), "{role}");
        let placed = entry(&view, "OrderPlaced");
        assert_eq!(
            placed["payload"]["payment_method"],
            json!({"kind": "card"}),
            "{role}"
        );
        assert!(
            !text.contains("tok_visa") && !text.contains("pm_"),
            "{role}: {text}"
        );
        assert!(
            placed["metadata"]["actor"].get("subject").is_none(),
            "{role}"
        );
        assert!(view["order"].get("payment_provider").is_none(), "{role}");
    }
    let rider_view = detail(rider_token).await;
    assert!(rider_view["order"].get("commission_minor").is_none());
    assert!(rider_view["order"].get("customer_id").is_none());
    let restaurant_view = detail(app.restaurant(berlin())).await;
    assert!(
        entry(&restaurant_view, "OrderPlaced")["payload"]
            .get("delivery_address")
            .is_none()
    );
    assert!(restaurant_view["order"]["commission_minor"].is_i64());

    // The customer: the code, and which card paid.
    let own = detail(customer).await;
    assert_eq!(own["dropoff_code"], json!(code));
    let placed = entry(&own, "OrderPlaced");
    assert!(
        placed["payload"]["payment_method"]["payment_method_ref"]
            .as_str()
            .unwrap()
            .starts_with("pm_")
    );
    assert!(placed["payload"]["price"].get("commission").is_none());
    // Ops: the hash (never the code), metadata in full.
    let staff = detail(app.ops()).await;
    assert!(staff.get("dropoff_code").is_none());
    assert!(
        entry(&staff, "DeliveryRequested")["payload"]["dropoff_code_hash"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert!(!staff.to_string().contains(&format!("\"{code}\"")));
    assert!(entry(&staff, "OrderPlaced")["metadata"]["actor"]["subject"].is_string());
    pipeline.stop().await;
}
