//! Rebuild benchmark (issue 10): rebuild, verify and store catch-up of each
//! read model from an event store of at least a million events.
//!
//! 1. A fresh database gets a store of realistic order lifecycles (default
//!    80,000 delivered card orders of 13 events each, about 1.04M events),
//!    written straight into `events` in commit order, 5,000 rows per
//!    transaction.
//! 2. For each projector its binary runs `rebuild`, then `verify` (each
//!    timed, peak resident memory read from `/proc/<pid>/status` VmHWM);
//! 3. then the order-history projector is started fresh with no broker and
//!    timed until its store position reaches the head: the catch-up rate of
//!    a new consumer from a store backlog.
//!
//! Prints figures; asserts nothing. Runs against `DATABASE_URL` (a fresh
//! database is created and dropped); the projector binaries are looked for
//! beside this one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ordertrail_bench::backlog::{Backlog, load, order};
use ordertrail_bench::{drop_database, fresh_database, projector_binary};
use ordertrail_schemas::RestaurantId;

#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL server (a role allowed to CREATE DATABASE).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Orders in the store (13 events each with the default reports).
    #[arg(long, default_value_t = 80_000)]
    orders: usize,
    /// Rider location reports per delivery.
    #[arg(long, default_value_t = 4)]
    reports: usize,
    /// Events per rebuild transaction.
    #[arg(long, default_value_t = 5_000)]
    batch_size: usize,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
}

/// Peak resident memory of a process so far, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Run a projector subcommand; its wall time, peak memory and stdout.
async fn timed(
    bin: &PathBuf,
    args: &[&str],
    url: &str,
    batch: usize,
) -> anyhow::Result<(Duration, u64, String, bool)> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .args(["--store-batch-size", &batch.to_string()])
        .env("DATABASE_URL", url)
        .env_remove("KAFKA_BROKERS")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let pid = child.id().context("pid")?;
    let mut peak = 0;
    let mut stdout = child.stdout.take().context("stdout")?;
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out).await;
        out
    });
    let status = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        match tokio::time::timeout(Duration::from_millis(50), child.wait()).await {
            Ok(status) => break status?,
            Err(_) => continue,
        }
    };
    let took = started.elapsed();
    let out = String::from_utf8_lossy(&reader.await?).into_owned();
    Ok((took, peak, out, status.success()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (name, url, pool) = fresh_database(&args.database_url, 8, false).await?;

    let restaurants: Vec<RestaurantId> = (0..50).map(|_| RestaurantId::new_random()).collect();
    let mut backlog = Backlog::default();
    for i in 0..args.orders {
        order(&mut backlog, i, args.reports, &restaurants)?;
    }
    let events = backlog.envelopes.len();
    let started = Instant::now();
    load(&pool, &backlog.envelopes).await?;
    drop(backlog);
    sqlx::query("ANALYZE events").execute(&pool).await?;
    println!(
        "store: {events} events of {} orders loaded in {:.1} s",
        args.orders,
        started.elapsed().as_secs_f64()
    );
    let size: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('events')")
        .fetch_one(&pool)
        .await?;
    println!(
        "events table with indexes: {:.0} MiB, {:.0} bytes per event",
        size as f64 / 1_048_576.0,
        size as f64 / events as f64
    );

    println!(
        "\n| read model | events | rebuild s | events/s | peak MiB | verify s | verify/rebuild | verify peak MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for projector in ["order-history", "rider-etas", "settlements"] {
        let bin = projector_binary(projector)?;
        let (rebuild, rebuild_peak, out, ok) = timed(
            &bin,
            &["rebuild", "--json", "--quiet"],
            &url,
            args.batch_size,
        )
        .await?;
        if !ok {
            bail!("{projector} rebuild failed: {out}");
        }
        let summary: serde_json::Value = serde_json::from_str(&out).context("rebuild summary")?;
        let applied = summary["events"].as_u64().unwrap_or(0);
        let (verify, verify_peak, out, clean) = timed(
            &bin,
            &["verify", "--json", "--quiet"],
            &url,
            args.batch_size,
        )
        .await?;
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        println!(
            "| {projector} | {applied} | {:.1} | {:.0} | {:.0} | {:.1} | {:.2} | {:.0} |{}",
            rebuild.as_secs_f64(),
            applied as f64 / rebuild.as_secs_f64(),
            rebuild_peak as f64 / 1024.0,
            verify.as_secs_f64(),
            verify.as_secs_f64() / rebuild.as_secs_f64(),
            verify_peak as f64 / 1024.0,
            if clean {
                String::new()
            } else {
                format!(" verify found differences: {report}")
            }
        );
    }

    // A fresh consumer catching up from a store backlog (no broker): the
    // order-history projector with its model and positions emptied.
    for statement in [
        "TRUNCATE order_history, order_history_payments, order_history_deliveries, order_timeline",
        "DELETE FROM projector_sequences WHERE projector = 'order_history'",
        "DELETE FROM consumers WHERE consumer = 'order_history'",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    let bin = projector_binary("order-history")?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .arg("run")
        .env("DATABASE_URL", &url)
        .env_remove("KAFKA_BROKERS")
        .env("RUST_LOG", "warn")
        .spawn()?;
    let pid = child.id().context("pid")?;
    let mut peak = 0;
    loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        let (lag, _) = ordertrail_platform::consumer::lag(
            &pool,
            "order_history",
            &["Order", "Payment", "Delivery"],
        )
        .await?;
        let started_reading: Option<i64> = sqlx::query_scalar(
            "SELECT store_position FROM consumers WHERE consumer = 'order_history'",
        )
        .fetch_optional(&pool)
        .await?;
        if lag == 0 && started_reading.is_some_and(|p| p > 0) {
            break;
        }
        if started.elapsed() > Duration::from_secs(1_800) {
            bail!("catch-up did not finish in 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let _ = child.kill().await;
    println!(
        "\nfresh order-history consumer from the store: {events} events in {:.1} s = {:.0} events/s (from process start), peak {:.0} MiB",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        peak as f64 / 1024.0
    );

    pool.close().await;
    if !args.keep {
        drop_database(&args.database_url, &name).await?;
    }
    Ok(())
}
