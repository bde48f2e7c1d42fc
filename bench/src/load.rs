//! The PlaceOrder load generator every benchmark shares: `POST /v1/orders`
//! at a fixed concurrency for a fixed time, latency in an HDR histogram.

use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;

use crate::{mint_token, place_order_body};

/// What one load run did.
#[derive(Debug)]
pub struct LoadResult {
    /// Orders placed (201).
    pub ok: u64,
    /// Other answers and failed requests.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of the placed orders, microseconds.
    pub hist: Histogram<u64>,
}

/// `POST /v1/orders` from `concurrency` workers (each its own customer,
/// each request its own time-ordered `Idempotency-Key`, a UUIDv7 as README
/// recommends to clients) for `duration`.
pub async fn run_load(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    concurrency: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let url = format!("{base}/v1/orders");
        // Each worker is its own customer.
        let token = mint_token(secret, "customer", &uuid::Uuid::new_v4().to_string())?;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut ok, mut errors) = (0u64, 0u64);
            let body = place_order_body();
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                    .json(&body)
                    .send()
                    .await;
                let micros = t.elapsed().as_micros() as u64;
                match response {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        ok += 1;
                        hist.record(micros.max(1))?;
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!(
                                "unexpected {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("request failed: {e}");
                        }
                    }
                }
            }
            anyhow::Ok((ok, errors, hist))
        }));
    }
    let mut total = LoadResult {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    for task in tasks {
        let (ok, errors, hist) = task.await??;
        total.ok += ok;
        total.errors += errors;
        total.hist.add(hist)?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
