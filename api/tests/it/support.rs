//! The test application, a request builder, and ready-made orders.

use std::fmt::Display;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use ordertrail_api::{AppState, AuthConfig, app};
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::service::CommandService;
use ordertrail_launcher::seed::seed_ids;
use ordertrail_schemas::OrderId;
use ordertrail_testkit::pg::TestDatabase;
use serde::Serialize;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

pub(crate) const SECRET: &[u8] = b"test-secret-of-the-api-suite";
/// A small body limit, so the oversized-body test stays small.
pub(crate) const MAX_BODY: usize = 16 * 1024;

pub(crate) struct TestApp {
    pub router: Router,
    pub db: TestDatabase,
    pub auth: AuthConfig,
    pub commands: CommandService,
}

pub(crate) struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    pub(crate) fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub(crate) fn assert(&self, status: StatusCode) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    #[track_caller]
    pub(crate) fn assert_error(&self, status: StatusCode, code: &str) -> &Self {
        self.assert_case_error("request", status, code)
    }

    /// [`Self::assert_error`] for one case of a table, named in the failure.
    #[track_caller]
    pub(crate) fn assert_case_error(&self, case: &str, status: StatusCode, code: &str) -> &Self {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{case}: body: {}",
            self.text
        );
        assert!(
            self.body["message"].is_string(),
            "{case}: error without message: {}",
            self.text
        );
        assert!(
            self.body.get("details").is_some(),
            "{case}: error without details: {}",
            self.text
        );
        self
    }

    /// The error's `details.path`: the body field it names.
    #[track_caller]
    pub(crate) fn assert_error_path(&self, path: &str) -> &Self {
        assert_eq!(self.body["details"]["path"], path, "{}", self.text);
        self
    }

    pub(crate) fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    pub(crate) fn event_types(&self) -> Vec<String> {
        self.body["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["event_type"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub(crate) struct Req<'a> {
    app: &'a TestApp,
    builder: axum::http::request::Builder,
    body: Body,
}

impl Req<'_> {
    pub(crate) fn token(mut self, token: &str) -> Self {
        self.builder = self
            .builder
            .header("authorization", format!("Bearer {token}"));
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    pub(crate) fn key(self, key: &str) -> Self {
        self.header("idempotency-key", key)
    }

    pub(crate) fn json(mut self, value: Value) -> Self {
        self.builder = self.builder.header("content-type", "application/json");
        self.body = Body::from(value.to_string());
        self
    }

    pub(crate) fn raw(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.builder = self.builder.header("content-type", content_type);
        self.body = body.into();
        self
    }

    pub(crate) async fn send(self) -> TestResponse {
        let request = self.builder.body(self.body).expect("request");
        send(&self.app.router, request).await
    }
}

/// Send `request` through `router` and read the whole answer.
pub(crate) async fn send(router: &Router, request: Request<Body>) -> TestResponse {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    TestResponse {
        status,
        headers,
        body,
        text,
    }
}

pub(crate) fn berlin() -> Uuid {
    seed_ids::BERLIN_BURGERS
}

pub(crate) fn rider(n: u128) -> Uuid {
    seed_ids::rider(n)
}

/// `$step(token, id, action)` sends `POST $prefix/{id}/{action}` without a
/// body as the bearer of `token`; `$step_with(token, id, action, body)` sends
/// `body` as JSON.
macro_rules! aggregate_steps {
    ($step:ident, $step_with:ident, $prefix:literal) => {
        pub(crate) async fn $step(
            &self,
            token: &str,
            id: impl Display,
            action: &str,
        ) -> TestResponse {
            self.step(token, format!(concat!($prefix, "/{}/{}"), id, action), None)
                .await
        }

        pub(crate) async fn $step_with(
            &self,
            token: &str,
            id: impl Display,
            action: &str,
            body: Value,
        ) -> TestResponse {
            self.step(
                token,
                format!(concat!($prefix, "/{}/{}"), id, action),
                Some(body),
            )
            .await
        }
    };
}

impl TestApp {
    pub(crate) async fn new() -> Self {
        Self::configured(|state| state).await
    }

    /// The test application with its state adjusted (rate limits, CORS, ...).
    pub(crate) async fn configured(configure: impl FnOnce(AppState) -> AppState) -> Self {
        ordertrail_testkit::init_test_logging();
        let db = TestDatabase::new().await;
        ordertrail_launcher::seed::seed(&db.pool)
            .await
            .expect("seed");
        // The provider client records its operations (the simulation's ledger).
        let commands = CommandService::new(
            db.pool.clone(),
            RecordingProvider::simulated(db.pool.clone()),
        );
        let auth = AuthConfig::new(SECRET, None);
        let state =
            configure(AppState::new(commands.clone(), auth.clone()).with_max_body_bytes(MAX_BODY));
        Self {
            router: app(state),
            db,
            auth,
            commands,
        }
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            app: self,
            builder: Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }

    pub(crate) fn post(&self, path: &str) -> Req<'_> {
        self.request(Method::POST, path)
    }

    pub(crate) fn get(&self, path: &str) -> Req<'_> {
        self.request(Method::GET, path)
    }

    /// `GET path` as the holder of `token`.
    pub(crate) async fn get_as(&self, token: &str, path: &str) -> TestResponse {
        self.get(path).token(token).send().await
    }

    pub(crate) fn put(&self, path: &str) -> Req<'_> {
        self.request(Method::PUT, path)
    }

    pub(crate) fn token(&self, role: &str, sub: &str) -> String {
        self.auth.mint(role, sub, 3600).expect("mint")
    }

    pub(crate) fn ops(&self) -> String {
        self.token("ops", "ops-alice")
    }

    pub(crate) fn admin(&self) -> String {
        self.token("admin", "admin-root")
    }

    pub(crate) fn restaurant(&self, id: Uuid) -> String {
        self.token("restaurant", &id.to_string())
    }

    pub(crate) fn rider(&self, id: Uuid) -> String {
        self.token("rider", &id.to_string())
    }

    /// A new customer: their id and token.
    pub(crate) fn customer(&self) -> (Uuid, String) {
        let id = Uuid::new_v4();
        (id, self.token("customer", &id.to_string()))
    }

    pub(crate) async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db.pool)
            .await
            .expect("count events")
    }

    pub(crate) async fn events_of_type(&self, event_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&self.db.pool)
            .await
            .expect("count events")
    }

    /// `POST /v1/orders` with `body` as the bearer of `token`.
    pub(crate) async fn place(&self, token: &str, body: Value) -> TestResponse {
        self.post("/v1/orders").token(token).json(body).send().await
    }

    /// `POST /v1/orders` with `body` and `Idempotency-Key: key`, as the bearer of `token`.
    pub(crate) async fn place_keyed(&self, token: &str, key: &str, body: Value) -> TestResponse {
        self.post("/v1/orders")
            .token(token)
            .key(key)
            .json(body)
            .send()
            .await
    }

    /// `POST /v1/payments` authorizing `order`'s payment, as the bearer of `token`.
    pub(crate) async fn authorize(&self, token: &str, order: impl Display) -> TestResponse {
        self.post("/v1/payments")
            .token(token)
            .json(json!({"order_id": order.to_string()}))
            .send()
            .await
    }

    aggregate_steps!(order_step, order_step_with, "/v1/orders");
    aggregate_steps!(delivery_step, delivery_step_with, "/v1/deliveries");
    aggregate_steps!(payment_step, payment_step_with, "/v1/payments");

    /// `POST /v1/orders/{order}/cancel` for `reason`, as the bearer of `token`.
    pub(crate) async fn cancel_order(
        &self,
        token: &str,
        order: impl Display,
        reason: impl Into<String>,
    ) -> TestResponse {
        let body = json!({"reason": reason.into()});
        self.order_step_with(token, order, "cancel", body).await
    }

    /// `POST /v1/orders/{order}/accept` with the restaurant's estimate.
    pub(crate) async fn accept_order(
        &self,
        token: &str,
        order: impl Display,
        preparation_minutes: i64,
    ) -> TestResponse {
        let body = json!({"preparation_minutes": preparation_minutes});
        self.order_step_with(token, order, "accept", body).await
    }

    /// `POST /v1/deliveries/{delivery}/assign` of `rider`.
    pub(crate) async fn assign_rider(
        &self,
        token: &str,
        delivery: impl Display,
        rider: impl Serialize,
    ) -> TestResponse {
        let body = json!({"rider_id": rider});
        self.delivery_step_with(token, delivery, "assign", body)
            .await
    }

    /// `POST /v1/deliveries/{delivery}/complete` with the drop-off `code`.
    pub(crate) async fn complete_delivery(
        &self,
        token: &str,
        delivery: impl Display,
        code: impl Serialize,
    ) -> TestResponse {
        let body = json!({"dropoff_code": code});
        self.delivery_step_with(token, delivery, "complete", body)
            .await
    }

    /// `POST path` as the bearer of `token`, with `body` as JSON when given.
    pub(crate) async fn step(
        &self,
        token: &str,
        path: String,
        body: Option<Value>,
    ) -> TestResponse {
        let request = self.post(&path).token(token);
        match body {
            Some(body) => request.json(body),
            None => request,
        }
        .send()
        .await
    }

    /// Place a card order at the Berlin burger place; returns its id.
    pub(crate) async fn place_order(&self, customer_token: &str, payment: Value) -> Uuid {
        let response = self.place(customer_token, place_order_body(payment)).await;
        response.assert(StatusCode::CREATED);
        order_id(&response)
    }

    /// The test application with one Berlin order placed by a new customer
    /// paying by `payment`: (app, customer token, order id).
    pub(crate) async fn with_order(payment: Value) -> (Self, String, Uuid) {
        let app = Self::new().await;
        let (_, customer) = app.customer();
        let order = app.place_order(&customer, payment).await;
        (app, customer, order)
    }

    /// A card order, authorized, confirmed and accepted; returns (order id, customer token).
    pub(crate) async fn accepted_order(&self) -> (Uuid, String) {
        let (_, customer) = self.customer();
        let order = self.place_order(&customer, card()).await;
        self.authorize(&customer, order)
            .await
            .assert(StatusCode::CREATED);
        self.order_step(&self.ops(), order, "confirm")
            .await
            .assert(StatusCode::OK);
        self.accept_order(&self.restaurant(berlin()), order, 12)
            .await
            .assert(StatusCode::OK);
        (order, customer)
    }

    /// Request the delivery of `order` as the caller of `token`; returns the delivery id.
    pub(crate) async fn request_delivery(&self, token: &str, order: Uuid) -> String {
        let response = self
            .post("/v1/deliveries")
            .token(token)
            .json(json!({"order_id": order}))
            .send()
            .await;
        response.assert(StatusCode::CREATED);
        response.body["aggregate_id"]
            .as_str()
            .expect("delivery id")
            .to_owned()
    }

    /// An accepted order with its delivery requested; returns (order id, delivery id, drop-off code).
    pub(crate) async fn requested_delivery(&self) -> (Uuid, Uuid, String) {
        let (order, _) = self.accepted_order().await;
        let delivery = self
            .request_delivery(&self.restaurant(berlin()), order)
            .await
            .parse()
            .expect("delivery id");
        let code = self.commands.dropoff_code_for(OrderId(order));
        (order, delivery, code)
    }
}

pub(crate) fn cash() -> Value {
    json!({"kind": "cash"})
}

pub(crate) fn card() -> Value {
    json!({"kind": "card", "card_token": "tok_visa"})
}

pub(crate) fn place_order_body(payment: Value) -> Value {
    json!({
        "restaurant_id": berlin(),
        "items": [
            {"menu_item_id": seed_ids::menu_item(1, 1), "quantity": 2},
            {"menu_item_id": seed_ids::menu_item(1, 3), "quantity": 1}
        ],
        "delivery_address": {
            "street": "Oranienstraße 25",
            "city": "Berlin",
            "postal_code": "10999",
            "location": {"lat": 52.5003, "lon": 13.4215}
        },
        "payment_method": payment,
        "tip_minor": 150
    })
}

pub(crate) fn order_id(response: &TestResponse) -> Uuid {
    response.body["aggregate_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("aggregate id")
}
