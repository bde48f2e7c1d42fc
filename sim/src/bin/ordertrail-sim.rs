//! `ordertrail-sim`: a lunch rush against a running Ordertrail API.
//!
//! ```text
//! ordertrail-sim --peak-rate 2 --duration-secs 300     # JWT_SECRET or .local/jwt-secret
//! ```
//!
//! The first Ctrl-C stops new orders and lets the ones in flight finish;
//! a second one exits at once.

use anyhow::Context;
use clap::Parser;
use ordertrail_platform::process::{self, MetricsArgs};
use ordertrail_sim::SimConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = SimConfig::parse();
    process::start("ordertrail-sim", &config.log, &MetricsArgs::default())?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        ordertrail_platform::shutdown::signal().await;
        eprintln!("stopping: no new orders; the ones in flight finish (Ctrl-C again to quit now)");
        let _ = first_tx.send(());
        ordertrail_platform::shutdown::signal().await;
        std::process::exit(130);
    });
    let summary = ordertrail_sim::run(config, async move {
        let _ = first_rx.await;
    })
    .await
    .context("running the simulation")?;
    println!();
    print!("{}", summary.render());
    if summary.server_errors() > 0 {
        anyhow::bail!(
            "{} answers were server errors (5xx)",
            summary.server_errors()
        );
    }
    Ok(())
}
