//! Configuration and `main` body shared by the projector binaries:
//! `run` (the default: catch up from the store, then follow Kafka),
//! `rebuild` (rebuild the read model from the store and swap it in) and
//! `verify` (rebuild into shadow tables and compare with the live model).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::replay::{Progress, VerifyReport};
use crate::{ProjectorKind, RuntimeConfig, rider_etas::EtaSettings};

/// A projector process: maintains one read model from the event store and
/// Kafka, and rebuilds or verifies it from the store.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct ProjectorArgs {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// PostgreSQL holding the event store, the read models and the positions.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Kafka bootstrap servers (`run`); without them the projector follows
    /// the event store by polling it.
    #[arg(long, env = "KAFKA_BROKERS", global = true)]
    pub kafka_brokers: Option<String>,
    /// Topic prefix: `<prefix>.orders`, `<prefix>.payments`, `<prefix>.deliveries`.
    #[arg(long, env = "TOPIC_PREFIX", default_value = ordertrail_schemas::topics::DEFAULT_PREFIX, global = true)]
    pub topic_prefix: String,
    /// Consumer group; instances with the same group split the partitions
    /// (default: `ordertrail-<projector>`).
    #[arg(long, env = "GROUP_ID", global = true)]
    pub group_id: Option<String>,
    /// Where to serve Prometheus metrics (`/metrics`); none if unset.
    #[arg(long, env = "METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
    /// Most Kafka events applied per transaction.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 2_000, global = true)]
    pub batch_size: usize,
    /// Most store events applied per transaction (catch-up, rebuild, verify).
    #[arg(long, env = "STORE_BATCH_SIZE", default_value_t = 5_000, global = true)]
    pub store_batch_size: usize,
    /// Milliseconds to keep filling a batch after its first event.
    #[arg(long, env = "BATCH_WAIT_MS", default_value_t = 10, global = true)]
    pub batch_wait_ms: u64,
    /// Most milliseconds the broker may hold a fetch that found nothing.
    #[arg(long, env = "FETCH_WAIT_MS", default_value_t = 10, global = true)]
    pub fetch_wait_ms: u64,
    /// Seconds a projector stalled on an event it cannot apply waits before
    /// trying it again.
    #[arg(long, env = "STALL_RETRY_SECS", default_value_t = 30, global = true)]
    pub stall_retry_secs: u64,
    /// Database pool size.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 4, global = true)]
    pub pool_size: u32,
    /// Apply pending database migrations at start-up.
    #[arg(long, env = "RUN_MIGRATIONS", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub run_migrations: bool,
    /// Rider ETAs only: speed assumed while a rider has too few reports, m/s.
    #[arg(
        long,
        env = "ETA_DEFAULT_SPEED_MPS",
        default_value_t = 4.5,
        global = true
    )]
    pub eta_default_speed_mps: f64,
    /// Rider ETAs only: reports needed before the rider's own speed is used.
    #[arg(long, env = "ETA_MIN_REPORTS", default_value_t = 3, global = true)]
    pub eta_min_reports: usize,
}

/// What the process does.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Maintain the read model: catch up from the event store, then follow
    /// Kafka (the default).
    Run,
    /// Rebuild the read model from the event store into shadow tables while
    /// the live model keeps serving, then pause the live projector, apply the
    /// tail and swap the tables, positions and sequence guard atomically.
    /// Never publishes to Kafka. Killed at any point, it leaves the live model
    /// as it was; run it again to start over.
    Rebuild {
        /// No progress bar (it is also off when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild into shadow tables and compare with the live model row by
    /// row, without swapping. Exits 1 if anything differs.
    Verify {
        /// Most differences printed (the total is always counted).
        #[arg(long, default_value_t = 20)]
        max_differences: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// No progress bar (it is also off when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
    },
}

impl ProjectorArgs {
    pub fn runtime_config(&self, projector: &str) -> RuntimeConfig {
        let group = self
            .group_id
            .clone()
            .unwrap_or_else(|| format!("ordertrail-{projector}"));
        let mut config = match &self.kafka_brokers {
            Some(brokers) => RuntimeConfig::new(brokers, &self.topic_prefix, group),
            None => RuntimeConfig::store_only(group),
        };
        config.batch_size = self.batch_size.max(1);
        config.store_batch_size = self.store_batch_size.max(1);
        config.batch_wait = Duration::from_millis(self.batch_wait_ms);
        config.fetch_wait = Duration::from_millis(self.fetch_wait_ms.max(1));
        config.stall_retry = Duration::from_secs(self.stall_retry_secs.max(1));
        config
    }

    pub fn eta_settings(&self) -> EtaSettings {
        EtaSettings {
            default_speed_mps: self.eta_default_speed_mps,
            min_reports: self.eta_min_reports,
            ..EtaSettings::default()
        }
    }
}

fn progress_bar(name: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} events, {per_sec}, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(name.to_owned());
    bar
}

fn on_progress(bar: &ProgressBar) -> impl FnMut(Progress) + Send + '_ {
    move |p: Progress| {
        bar.set_length(p.total.max(p.events));
        bar.set_position(p.events);
        bar.set_message(format!("at {}", p.position));
    }
}

/// Print a verify report for people: a summary line, then each difference.
pub fn print_verify_report(report: &VerifyReport) {
    println!(
        "verify {}: {} events in {:.1} s; {} differing rows; {} aggregates not yet applied by the live model",
        report.projector,
        report.events,
        report.seconds,
        report.differences_total,
        report.guard_differences
    );
    for (table, rows) in &report.rows {
        println!("  {table}: {rows} rows rebuilt");
    }
    for d in &report.differences {
        println!("  {} {} {}", d.table, d.key, d.kind);
        for c in &d.columns {
            println!("    {}: live {} / rebuilt {}", c.column, c.live, c.rebuilt);
        }
    }
    let listed = report.differences.len() as u64;
    if report.differences_total > listed {
        println!(
            "  … and {} more differing rows",
            report.differences_total - listed
        );
    }
}

/// The whole `main` of a projector binary.
pub async fn main(kind: fn(&ProjectorArgs) -> ProjectorKind) -> anyhow::Result<ExitCode> {
    let args = ProjectorArgs::parse();
    let kind = kind(&args);
    let name = kind.name();
    ordertrail_platform::telemetry::init(name);
    if let Some(addr) = args.metrics_addr {
        ordertrail_platform::telemetry::serve_metrics(addr).context("serve metrics")?;
    }
    let Some(url) = &args.database_url else {
        bail!("--database-url (DATABASE_URL) is required");
    };
    let command = args.command.clone().unwrap_or(Command::Run);
    // A running projector waits out a database outage, however long; the
    // one-shot commands (rebuild, verify) give up after a while.
    let serving = matches!(command, Command::Run);
    let pool = if serving {
        ordertrail_platform::db::connect_service(url, args.pool_size.max(2)).await
    } else {
        ordertrail_platform::db::connect(url, args.pool_size.max(2)).await
    }
    .context("connect to PostgreSQL")?;
    if args.run_migrations {
        if serving {
            ordertrail_platform::db::migrate_service(&pool).await
        } else {
            ordertrail_platform::db::migrate(&pool).await
        }
        .context("apply migrations")?;
    }
    match command {
        Command::Run => {
            crate::run(
                kind,
                args.runtime_config(name),
                pool,
                ordertrail_platform::shutdown::signal(),
            )
            .await
            .with_context(|| format!("projector {name}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild { quiet, json } => {
            let bar = progress_bar(name, quiet);
            let summary =
                crate::rebuild(kind, &pool, args.store_batch_size, &mut on_progress(&bar))
                    .await
                    .with_context(|| format!("rebuild {name}"))?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "rebuilt {}: {} events in {:.1} s ({:.0} events/s); live projector paused {:.3} s for {} tail events",
                    summary.projector,
                    summary.events,
                    summary.seconds,
                    summary.events_per_second,
                    summary.paused_seconds,
                    summary.tail_events
                );
                for (table, rows) in &summary.rows {
                    println!("  {table}: {rows} rows");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            max_differences,
            json,
            quiet,
        } => {
            let bar = progress_bar(name, quiet);
            let report = crate::verify(
                kind,
                &pool,
                args.store_batch_size,
                max_differences,
                &mut on_progress(&bar),
            )
            .await
            .with_context(|| format!("verify {name}"))?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_verify_report(&report);
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
