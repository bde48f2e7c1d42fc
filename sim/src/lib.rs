//! `ordertrail-sim`: a lunch rush driven through the platform's public HTTP
//! API, as its users would drive it.
//!
//! Customers in the seed cities order from the open restaurants (cards that
//! succeed, decline or fail transiently, cash); restaurants accept with a
//! preparation time or reject; riders assign themselves, ride towards the
//! restaurant and then the customer while reporting GPS fixes, confirm the
//! pickup and hand over with the drop-off code the customer reads from their
//! own order (sometimes mistyped first). Some customers cancel, some
//! restaurants never answer (the platform's accept timeout takes over).
//!
//! Orders arrive along a rate curve that rises to a peak and falls back. A
//! live view shows throughput, latencies, lag and errors; a summary closes
//! the run. Every order the simulator places is followed until it is final
//! (`delivered`, `cancelled`, `rejected`) or left to one of the platform's
//! own timers, never abandoned half-way.
//!
//! Layout: [`config`] (flags), [`client`] (HTTP, tokens, retries),
//! [`world`] (reference data, places, riders), [`flow`] (one order's life),
//! [`stats`] (figures, live view, summary), [`run`] (the load curve).
//!
//! It depends on the wire contract (`ordertrail-schemas`, for the ids the
//! contract derives) and on the API crate only for token minting, so its
//! tokens are the platform's own; it never touches the database.

pub mod client;
pub mod config;
pub mod flow;
pub mod stats;
pub mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::task::JoinSet;

pub use config::SimConfig;
pub use stats::Summary;

use crate::client::Api;
use crate::stats::Stats;
use crate::world::World;

/// Why the simulator could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the API at {url} did not become ready within {secs} s")]
    ApiNotReady { url: String, secs: u64 },
    #[error("configuration: {0}")]
    Config(String),
    #[error("reference data: {0}")]
    ReferenceData(String),
}

/// The orders-per-second target `elapsed` into a cycle of `duration`:
/// a tenth of the peak at the start and end, the peak half-way
/// (`peak · (0.1 + 0.9 · sin²(π·t/T))`).
pub fn rate_at(peak: f64, elapsed: Duration, duration: Duration) -> f64 {
    let t = elapsed.as_secs_f64() / duration.as_secs_f64().max(0.001);
    let s = (std::f64::consts::PI * t.clamp(0.0, 1.0)).sin();
    peak * (0.1 + 0.9 * s * s)
}

/// Run the simulation until its cycles are done (or `shutdown` resolves),
/// then let every order in flight finish, and return the summary.
pub async fn run(
    config: SimConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Summary, SimError> {
    let config = Arc::new(config);
    let stats = Arc::new(Stats::new(&config));
    let api = Arc::new(Api::new(&config, stats.clone())?);
    api.wait_ready(Duration::from_secs(config.ready_timeout_secs))
        .await?;
    let world = Arc::new(World::load(&config, &api).await?);
    tracing::info!(
        cities = world.cities.len(),
        restaurants = world.restaurant_count(),
        riders = world.rider_count(),
        "simulation starting"
    );

    let closed = flow::close_earlier_runs(&api, &world).await;
    if closed > 0 {
        tracing::info!(
            orders = closed,
            "closed the orders an earlier run left in flight"
        );
    }
    stats.set_closed_from_earlier_runs(closed);

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.store(true, Ordering::SeqCst);
        });
    }
    let display = stats::spawn_display_with(
        config.clone(),
        stats.clone(),
        api.clone(),
        Some(world.clone()),
    );

    let ctx = Arc::new(flow::Ctx {
        config: config.clone(),
        api: api.clone(),
        world: world.clone(),
        stats: stats.clone(),
    });
    let mut orders: JoinSet<()> = JoinSet::new();
    let next_order = AtomicU64::new(0);
    let duration = Duration::from_secs_f64(config.duration_secs.max(1.0));
    let tick = Duration::from_millis(100);
    let mut cycle = 0u64;
    'cycles: while config.cycles == 0 || cycle < config.cycles {
        let started = Instant::now();
        let mut due = 0.0f64;
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while started.elapsed() < duration {
            interval.tick().await;
            if stop.load(Ordering::SeqCst) {
                break 'cycles;
            }
            let rate = rate_at(config.peak_rate, started.elapsed(), duration);
            stats.set_target_rate(rate);
            // Poisson-like arrivals: the expected count this tick, jittered.
            due += rate * tick.as_secs_f64() * rand::rng().random_range(0.5..1.5);
            while due >= 1.0 {
                due -= 1.0;
                while orders.try_join_next().is_some() {}
                if orders.len() >= config.max_in_flight {
                    stats.order_skipped();
                    continue;
                }
                let n = next_order.fetch_add(1, Ordering::Relaxed);
                orders.spawn(flow::run_order(ctx.clone(), n));
            }
        }
        cycle += 1;
    }
    stats.set_target_rate(0.0);
    stats.set_draining(true);
    // Let every order in flight reach its end; a second signal is not
    // waited for here (the binary exits on it).
    let drain = Duration::from_secs(config.drain_timeout_secs);
    let drained =
        tokio::time::timeout(drain, async { while orders.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        // Still running after the drain timeout: counted as abandoned, by
        // the stage each was in (the summary names them).
        tracing::warn!(
            remaining = orders.len(),
            "drain timeout: orders still in flight"
        );
        orders.abort_all();
        while orders.join_next().await.is_some() {}
    }
    display.finish().await;
    Ok(stats.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_rises_to_the_peak_half_way_and_falls_back() {
        let d = Duration::from_secs(100);
        let at = |s: u64| rate_at(4.0, Duration::from_secs(s), d);
        assert!(
            (at(0) - 0.4).abs() < 1e-9,
            "a tenth of the peak at the start"
        );
        assert!((at(50) - 4.0).abs() < 1e-9, "the peak half-way");
        assert!((at(100) - 0.4).abs() < 1e-9, "a tenth at the end");
        assert!(at(25) < at(40) && at(40) < at(50), "rising");
        assert!(at(50) > at(60) && at(60) > at(75), "falling");
        assert!((at(25) - at(75)).abs() < 1e-9, "symmetric");
    }
}
