//! The open-loop order-lifecycle driver the freshness and SSE benchmarks
//! share: at a steady rate, each slot sends the next step of an order in
//! flight (authorize → confirm → accept → ready) or, when none is due, places
//! a new order, so the mix settles at one `PlaceOrder` to four follow-ups.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use ordertrail_launcher::seed::seed_ids;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{ApiProcess, mint_token, place_order_body, spawn_api, wait_ready};

/// The steps of an order the load drives, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `POST /v1/orders` (customer).
    Place,
    /// `POST /v1/payments` (customer).
    Authorize,
    /// `POST /v1/orders/{id}/confirm` (ops).
    Confirm,
    /// `POST /v1/orders/{id}/accept` (restaurant).
    Accept,
    /// `POST /v1/orders/{id}/ready` (restaurant).
    Ready,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 5] = [
        Step::Place,
        Step::Authorize,
        Step::Confirm,
        Step::Accept,
        Step::Ready,
    ];

    /// The step after this one, if the load drives it.
    pub fn next(self) -> Option<Step> {
        let at = Self::ALL.iter().position(|s| *s == self)?;
        Self::ALL.get(at + 1).copied()
    }
}

/// The open-loop load both lifecycle benchmarks drive, and the API they drive.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Commands per second, sent open-loop.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// Measured seconds.
    #[arg(long, default_value_t = 30)]
    pub duration_secs: u64,
    /// Warm-up seconds at the same rate before measuring.
    #[arg(long, default_value_t = 5)]
    pub warmup_secs: u64,
    /// Most commands in flight; a slot that finds this many is counted as missed.
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: u64,
    /// The API binary (default: next to this one).
    #[arg(long)]
    pub api_bin: Option<std::path::PathBuf>,
    /// API database pool size.
    #[arg(long, default_value_t = 16)]
    pub db_pool_size: u32,
}

/// An order in flight: what to send next.
#[derive(Debug, Clone)]
pub struct Due {
    /// The order.
    pub order: Uuid,
    /// Its customer's token.
    pub customer_token: Arc<str>,
    /// The step to send.
    pub step: Step,
}

/// One command the driver sent that succeeded.
#[derive(Debug)]
pub struct Sent {
    /// The order (from the due step, or from a placed order's answer).
    pub order: Uuid,
    /// Its customer's token.
    pub customer_token: Arc<str>,
    /// The step sent.
    pub step: Step,
    /// The answer's body.
    pub outcome: Value,
    /// When the answer arrived.
    pub answered: Instant,
    /// Whether it was sent inside the measured window.
    pub measured: bool,
}

/// The API, the tokens, and the queue of orders in flight.
#[derive(Debug)]
pub struct Driver {
    /// The HTTP client.
    pub client: reqwest::Client,
    /// `http://127.0.0.1:port`.
    pub base: String,
    secret: String,
    /// An ops token.
    pub ops: String,
    restaurant: String,
    due: Mutex<VecDeque<Due>>,
    /// Whether a step that succeeded queues the order's next step (off:
    /// every slot places a new order).
    follow_ups: bool,
    in_flight: AtomicU64,
    max_in_flight: u64,
    /// Whether commands sent now count (after the warm-up).
    pub measuring: AtomicBool,
    /// Commands that succeeded inside the measured window.
    pub ok: AtomicU64,
    /// Commands that failed or were not answered.
    pub errors: AtomicU64,
    /// Slots skipped because too many commands were in flight.
    pub missed: AtomicU64,
    /// Latency of the measured commands that succeeded, microseconds.
    pub latency: Mutex<Histogram<u64>>,
}

impl Driver {
    /// Start the API binary (`--api-bin`, or the one next to this
    /// executable) against `database_url`, wait until it is ready, and return the
    /// process with a driver against it.
    pub async fn start(
        load: &LoadArgs,
        database_url: &str,
    ) -> Result<(tokio::process::Child, Self)> {
        let ApiProcess {
            child,
            base,
            secret,
        } = spawn_api(load.api_bin.as_deref(), database_url, load.db_pool_size)?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1_024)
            .timeout(Duration::from_secs(10))
            .build()?;
        wait_ready(&client, &base).await?;
        Ok((child, Self::new(client, base, secret, load.max_in_flight)?))
    }

    /// A driver against the API at `base` whose tokens are signed with `secret`.
    pub fn new(
        client: reqwest::Client,
        base: String,
        secret: String,
        max_in_flight: u64,
    ) -> Result<Self> {
        Ok(Self {
            ops: mint_token(&secret, "ops", "ops-bench")?,
            restaurant: mint_token(&secret, "restaurant", &seed_ids::BERLIN_BURGERS.to_string())?,
            client,
            base,
            secret,
            due: Mutex::new(VecDeque::new()),
            follow_ups: true,
            in_flight: AtomicU64::new(0),
            max_in_flight,
            measuring: AtomicBool::new(false),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        })
    }

    /// Only place orders: the steps after `Place` are left to the platform
    /// (the saga authorizes and confirms card orders).
    pub fn places_only(mut self) -> Self {
        self.follow_ups = false;
        self
    }

    /// Commands sent and not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Call `slot` with the next due step (or `None`: place a new order)
    /// `rate` times a second for `duration`, open-loop, ticking every 10 ms;
    /// a slot that finds `max_in_flight` commands in flight is counted as
    /// missed instead. `slot` must end with [`Driver::send`].
    pub async fn drive(&self, rate: u32, duration: Duration, mut slot: impl FnMut(Option<Due>)) {
        let tick = Duration::from_millis(10);
        let per_tick = f64::from(rate) / 100.0;
        let start = tokio::time::Instant::now();
        let mut owed = 0.0_f64;
        let mut next = start;
        while next.duration_since(start) < duration {
            tokio::time::sleep_until(next).await;
            owed += per_tick;
            while owed >= 1.0 {
                owed -= 1.0;
                if self.in_flight() >= self.max_in_flight {
                    self.missed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let due = self.due.lock().ok().and_then(|mut d| d.pop_front());
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                slot(due);
            }
            next += tick;
        }
    }

    /// Start the measured window: errors and missed slots counted so far
    /// (the warm-up's) are forgotten.
    pub fn start_measuring(&self) {
        self.errors.store(0, Ordering::Relaxed);
        self.missed.store(0, Ordering::Relaxed);
        self.measuring.store(true, Ordering::Relaxed);
    }

    /// Send `due`'s step (or place a new order), count it, and queue the
    /// order's next step when it succeeded; `None` when it failed.
    pub async fn send(&self, due: Option<Due>) -> Option<Sent> {
        let measured = self.measuring.load(Ordering::Relaxed);
        let sent = self.send_step(due, measured).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some((sent, latency)) = sent else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if measured {
            self.ok.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut h) = self.latency.lock() {
                let _ = h.record((latency.as_micros() as u64).max(1));
            }
        }
        if self.follow_ups
            && let Some(next) = sent.step.next()
            && let Ok(mut due) = self.due.lock()
        {
            due.push_back(Due {
                order: sent.order,
                customer_token: Arc::clone(&sent.customer_token),
                step: next,
            });
        }
        Some(sent)
    }

    async fn send_step(&self, due: Option<Due>, measured: bool) -> Option<(Sent, Duration)> {
        let (order, customer_token, step, path, bearer, body) = match due {
            None => {
                let token =
                    mint_token(&self.secret, "customer", &Uuid::new_v4().to_string()).ok()?;
                let token = Arc::<str>::from(token);
                let bearer = token.to_string();
                let path = "/v1/orders".to_owned();
                (None, token, Step::Place, path, bearer, place_order_body())
            }
            Some(d) => {
                let (path, bearer, body) = match d.step {
                    Step::Authorize => (
                        "/v1/payments".to_owned(),
                        d.customer_token.to_string(),
                        json!({"order_id": d.order}),
                    ),
                    Step::Confirm => (
                        format!("/v1/orders/{}/confirm", d.order),
                        self.ops.clone(),
                        json!({}),
                    ),
                    Step::Accept => (
                        format!("/v1/orders/{}/accept", d.order),
                        self.restaurant.clone(),
                        json!({"preparation_minutes": 12}),
                    ),
                    // `Place` is never due (a new order is placed instead).
                    Step::Ready | Step::Place => (
                        format!("/v1/orders/{}/ready", d.order),
                        self.restaurant.clone(),
                        json!({}),
                    ),
                };
                (Some(d.order), d.customer_token, d.step, path, bearer, body)
            }
        };
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body);
        let sent_at = Instant::now();
        let response = request.send().await;
        let answered = Instant::now();
        let outcome = match response {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.ok()?,
            Ok(r) => {
                tracing::warn!(status = %r.status(), ?step, "command failed");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, ?step, "command not answered");
                return None;
            }
        };
        // A placed order is known by its answer; the authorization answers
        // with the payment, and its order is the one that was due.
        let order = match order {
            Some(o) => o,
            None => outcome["aggregate_id"].as_str()?.parse().ok()?,
        };
        let sent = Sent {
            order,
            customer_token,
            step,
            outcome,
            answered,
            measured,
        };
        Some((sent, answered.duration_since(sent_at)))
    }
}
