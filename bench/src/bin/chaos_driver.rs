//! `chaos_driver`: the independent client of `scripts/chaos.sh`. Places
//! orders at a steady rate through the public API and drives each one to
//! delivery the way its people would (the restaurant accepts and marks it
//! ready, ops assign a rider, the rider picks it up and completes it with the
//! code the customer reads from the order), while the script injects faults.
//!
//! Every command carries an `Idempotency-Key` fixed per order and step, and
//! is retried with the same key after a 503 (honouring `Retry-After`), a 429
//! or no answer at all — as a well-behaved client does, so a retry of a
//! command whose answer was lost appends nothing. Steps that are not possible
//! yet (the saga has not confirmed the order, not requested the delivery) are
//! tried again until a per-order deadline.
//!
//! While `--provider-outage-file` exists, new orders pay with
//! `tok_flaky_<n>` cards: the simulated provider is unavailable for their
//! first authorizations (most recover within the saga's retries; one in ten
//! outlasts them and the order is cancelled). The script points the
//! simulated provider's own fault switch (`ORDERTRAIL_PROVIDER_FAULT_FILE`)
//! at the same file, so captures, voids and refunds fail meanwhile too.
//!
//! So that voids and refunds happen at all: one order in seven is cancelled
//! by its customer once confirmed (the saga voids the authorization), and
//! one delivered order in five gets a partial refund from ops (retried with
//! a new key after a recorded failure, until the provider refunds).
//!
//! Prints (and writes as JSON with `--out`) orders placed, delivered,
//! cancelled with their reasons, unfinished with their last step, and every
//! HTTP answer by status. Asserts nothing; the script judges.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use ordertrail_bench::mint_token;
use ordertrail_launcher::seed::seed_ids;
use ordertrail_schemas::{DeliveryId, OrderId, PaymentId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "chaos_driver")]
struct Args {
    /// The API's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// HS256 secret the API checks tokens with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Seconds to place orders for.
    #[arg(long, default_value_t = 180)]
    duration_secs: u64,
    /// Orders placed per second.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Longest an order may take from placement to delivery before it is
    /// reported unfinished.
    #[arg(long, default_value_t = 240)]
    order_deadline_secs: u64,
    /// While this file exists, new orders pay with cards the provider fails for.
    #[arg(long)]
    provider_outage_file: Option<PathBuf>,
    /// Seed riders to assign (1..=8).
    #[arg(long, default_value_t = 8)]
    riders: u128,
    /// Write the summary as JSON here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    placed: u64,
    delivered: u64,
    cancelled: BTreeMap<String, u64>,
    unfinished: BTreeMap<String, u64>,
    http: BTreeMap<String, u64>,
    placed_order_ids: Vec<Uuid>,
    delivered_order_ids: Vec<Uuid>,
    /// Partial refunds ops asked for and got.
    refunded: u64,
}

struct Driver {
    client: reqwest::Client,
    base: String,
    secret: String,
    ops: String,
    restaurant: String,
    riders: u128,
    deadline: Duration,
    summary: Mutex<Summary>,
}

/// How one step ended.
enum Step {
    Done,
    /// The order ended (cancelled or rejected) with this reason.
    Ended(String),
    /// Gave up: the deadline passed or an answer that no retry can change.
    Failed(String),
}

impl Driver {
    async fn count(&self, what: String) {
        *self.summary.lock().await.http.entry(what).or_default() += 1;
    }

    /// Send one command or query, retrying on 503, 429 and no answer with
    /// the same idempotency key. `None` when the deadline passed.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        key: Option<&str>,
        until: Instant,
    ) -> Option<(StatusCode, Value)> {
        loop {
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(token);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            let wait = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let body = response.json::<Value>().await.unwrap_or(Value::Null);
                    match body["code"].as_str() {
                        Some(code) if !status.is_success() => {
                            self.count(format!("{} {code}", status.as_u16())).await;
                        }
                        _ => self.count(status.as_u16().to_string()).await,
                    }
                    // A 503 with a recorded outcome (a provider call that
                    // went unanswered, recorded as a failure event) is the
                    // command's answer: its key replays it for ever.
                    let recorded = !body["details"]["outcome"].is_null();
                    if (status == StatusCode::SERVICE_UNAVAILABLE && !recorded)
                        || status == StatusCode::TOO_MANY_REQUESTS
                    {
                        if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_none() {
                            self.count("503 without Retry-After".into()).await;
                        }
                        Duration::from_secs(retry_after.unwrap_or(1).min(5))
                    } else {
                        return Some((status, body));
                    }
                }
                Err(_) => {
                    self.count("no answer".into()).await;
                    Duration::from_millis(500)
                }
            };
            if Instant::now() + wait > until {
                return None;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The order's status and reason in the read model, as ops see it.
    async fn order_state(&self, order: Uuid, until: Instant) -> Option<(String, Option<String>)> {
        let (status, body) = self
            .send(
                Method::GET,
                &format!("/v1/orders/{order}"),
                &self.ops,
                None,
                None,
                until,
            )
            .await?;
        status.is_success().then(|| {
            (
                body["order"]["status"].as_str().unwrap_or("").to_owned(),
                body["order"]["reason"].as_str().map(str::to_owned),
            )
        })
    }

    /// Try a command until it succeeds, the order ends, or the deadline.
    /// 404 and 409 mean "not yet" (the saga has not got there).
    async fn step(
        &self,
        order: Uuid,
        name: &str,
        path: &str,
        token: &str,
        body: &Value,
        until: Instant,
    ) -> Step {
        // A refusal (404, 409) is the command's answer and is kept for its
        // key: trying again later is a new command with a new key. A lost or
        // 503 answer is retried with the same key.
        let mut attempt = 0u32;
        loop {
            let key = format!("chaos-{order}-{name}-{attempt}");
            attempt += 1;
            let Some((status, answer)) = self
                .send(Method::POST, path, token, Some(body), Some(&key), until)
                .await
            else {
                return Step::Failed(format!("{name}: deadline"));
            };
            if status.is_success() {
                return Step::Done;
            }
            // A provider failure recorded as an event (refused: 402;
            // unanswered: 503 with the outcome) is tried again with a new key.
            let provider_failed = !answer["details"]["outcome"].is_null()
                && (status == StatusCode::PAYMENT_REQUIRED
                    || status == StatusCode::SERVICE_UNAVAILABLE);
            if status != StatusCode::NOT_FOUND && status != StatusCode::CONFLICT && !provider_failed
            {
                return Step::Failed(format!(
                    "{name}: {status} {}",
                    answer["code"].as_str().unwrap_or("")
                ));
            }
            if let Some((state, reason)) = self.order_state(order, until).await
                && matches!(state.as_str(), "cancelled" | "rejected")
            {
                return Step::Ended(reason.unwrap_or(state));
            }
            if Instant::now() > until {
                return Step::Failed(format!("{name}: deadline"));
            }
            // The provider is failing: give it a moment.
            let pause = if provider_failed { 2_000 } else { 300 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// Wait until the order is confirmed (its card authorized); the order's
    /// end when it ended first.
    async fn confirmed(&self, order: Uuid, until: Instant) -> Step {
        loop {
            match self.order_state(order, until).await {
                Some((state, _)) if state != "placed" && !state.is_empty() => {
                    return match state.as_str() {
                        "cancelled" | "rejected" => Step::Ended(state),
                        _ => Step::Done,
                    };
                }
                _ => {}
            }
            if Instant::now() > until {
                return Step::Failed("confirm: deadline".into());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The drop-off code as the customer reads it from the order.
    async fn dropoff_code(&self, order: Uuid, customer: &str, until: Instant) -> Option<String> {
        loop {
            if let Some((status, body)) = self
                .send(
                    Method::GET,
                    &format!("/v1/orders/{order}"),
                    customer,
                    None,
                    None,
                    until,
                )
                .await
                && status.is_success()
                && let Some(code) = body["dropoff_code"].as_str()
            {
                return Some(code.to_owned());
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn drive(self: Arc<Self>, n: u64, card: String) {
        let outcome = self.drive_order(n, &card).await;
        let mut s = self.summary.lock().await;
        match outcome {
            Ok(Some(order)) => {
                s.delivered += 1;
                s.delivered_order_ids.push(order);
            }
            Ok(None) => {}
            Err(Step::Ended(reason)) => *s.cancelled.entry(reason).or_default() += 1,
            Err(Step::Failed(why)) => *s.unfinished.entry(why).or_default() += 1,
            Err(Step::Done) => {}
        }
    }

    /// `Ok(Some(order))` delivered; `Ok(None)` never placed.
    async fn drive_order(&self, n: u64, card: &str) -> Result<Option<Uuid>, Step> {
        let until = Instant::now() + self.deadline;
        let customer_id = Uuid::new_v4();
        let customer = mint_token(&self.secret, "customer", &customer_id.to_string())
            .map_err(|e| Step::Failed(format!("mint: {e}")))?;
        let mut body = ordertrail_bench::place_order_body();
        body["payment_method"]["card_token"] = json!(card);
        let key = format!("chaos-place-{customer_id}");
        let Some((status, answer)) = self
            .send(
                Method::POST,
                "/v1/orders",
                &customer,
                Some(&body),
                Some(&key),
                until,
            )
            .await
        else {
            return Err(Step::Failed("place: deadline".into()));
        };
        if status != StatusCode::CREATED {
            return Err(Step::Failed(format!("place: {status}")));
        }
        let Some(order) = answer["aggregate_id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
        else {
            return Err(Step::Failed("place: no order id".into()));
        };
        {
            let mut s = self.summary.lock().await;
            s.placed += 1;
            s.placed_order_ids.push(order);
        }
        let delivery = DeliveryId::for_order(OrderId(order)).0;
        let ok = |step: Step| match step {
            Step::Done => Ok(()),
            other => Err(other),
        };
        if n % 7 == 3 {
            // The customer cancels once the card is authorized: the saga
            // voids the authorization (or records why not).
            ok(self.confirmed(order, until).await)?;
            ok(self
                .step(
                    order,
                    "cancel",
                    &format!("/v1/orders/{order}/cancel"),
                    &customer,
                    &json!({"reason": "changed my mind (chaos)"}),
                    until,
                )
                .await)?;
            return Err(Step::Ended("cancelled by the customer (chaos)".into()));
        }
        ok(self
            .step(
                order,
                "accept",
                &format!("/v1/orders/{order}/accept"),
                &self.restaurant,
                &json!({"preparation_minutes": 12}),
                until,
            )
            .await)?;
        ok(self
            .step(
                order,
                "ready",
                &format!("/v1/orders/{order}/ready"),
                &self.restaurant,
                &json!({}),
                until,
            )
            .await)?;
        let rider = seed_ids::rider(u128::from(n % 8) % self.riders.max(1) + 1);
        let rider_token = mint_token(&self.secret, "rider", &rider.to_string())
            .map_err(|e| Step::Failed(format!("mint: {e}")))?;
        ok(self
            .step(
                order,
                "assign",
                &format!("/v1/deliveries/{delivery}/assign"),
                &self.ops,
                &json!({"rider_id": rider}),
                until,
            )
            .await)?;
        ok(self
            .step(
                order,
                "pickup",
                &format!("/v1/deliveries/{delivery}/pickup"),
                &rider_token,
                &json!({}),
                until,
            )
            .await)?;
        let Some(code) = self.dropoff_code(order, &customer, until).await else {
            return Err(Step::Failed("dropoff code: deadline".into()));
        };
        ok(self
            .step(
                order,
                "complete",
                &format!("/v1/deliveries/{delivery}/complete"),
                &rider_token,
                &json!({"dropoff_code": code}),
                until,
            )
            .await)?;
        if n % 5 == 1 {
            // Ops refund part of it once the saga captured (409 until then).
            let payment = PaymentId::for_order(OrderId(order)).0;
            let refund = self
                .step(
                    order,
                    "refund",
                    &format!("/v1/payments/{payment}/refund"),
                    &self.ops,
                    &json!({"amount_minor": 300, "reason": "cold fries (chaos)"}),
                    until,
                )
                .await;
            let mut s = self.summary.lock().await;
            match refund {
                Step::Done => s.refunded += 1,
                // Delivered all the same; the refund is reported apart.
                Step::Ended(why) | Step::Failed(why) => {
                    *s.unfinished.entry(format!("delivered, {why}")).or_default() += 1;
                }
            }
        }
        Ok(Some(order))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let driver = Arc::new(Driver {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?,
        base: args.base.trim_end_matches('/').to_owned(),
        ops: mint_token(&args.jwt_secret, "ops", "ops-chaos")?,
        restaurant: mint_token(
            &args.jwt_secret,
            "restaurant",
            &seed_ids::BERLIN_BURGERS.to_string(),
        )?,
        secret: args.jwt_secret.clone(),
        riders: args.riders.clamp(1, 8),
        deadline: Duration::from_secs(args.order_deadline_secs),
        summary: Mutex::new(Summary::default()),
    });
    let started = Instant::now();
    let every = Duration::from_secs_f64(1.0 / args.rate.max(0.01));
    let mut tick = tokio::time::interval(every);
    let mut orders = Vec::new();
    let mut n = 0u64;
    let mut flaky = 0u64;
    while started.elapsed() < Duration::from_secs(args.duration_secs) {
        tick.tick().await;
        let outage = args
            .provider_outage_file
            .as_ref()
            .is_some_and(|f| f.exists());
        let card = if outage {
            flaky += 1;
            // Most recover within the saga's retries; one in ten does not.
            if flaky.is_multiple_of(10) {
                "tok_flaky_50".to_owned()
            } else {
                "tok_flaky_2".to_owned()
            }
        } else {
            "tok_visa".to_owned()
        };
        orders.push(tokio::spawn(Arc::clone(&driver).drive(n, card)));
        n += 1;
    }
    for o in orders {
        let _ = o.await;
    }
    let summary = driver.summary.lock().await;
    println!(
        "== chaos driver: {} s of orders at {}/s ==",
        args.duration_secs, args.rate
    );
    println!("orders placed:    {}", summary.placed);
    println!(
        "orders delivered: {} (partly refunded: {})",
        summary.delivered, summary.refunded
    );
    println!(
        "orders cancelled: {}",
        summary.cancelled.values().sum::<u64>()
    );
    for (reason, count) in &summary.cancelled {
        println!("  {count:>5}  {reason}");
    }
    println!(
        "orders unfinished: {}",
        summary.unfinished.values().sum::<u64>()
    );
    for (why, count) in &summary.unfinished {
        println!("  {count:>5}  {why}");
    }
    println!("HTTP answers by status:");
    for (status, count) in &summary.http {
        println!("  {status:>24}: {count}");
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&*summary)?)?;
    }
    Ok(())
}
