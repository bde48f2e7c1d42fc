//! Configuration and `main` body shared by the projector binaries:
//! `run` (the default: catch up from the store, then follow Kafka),
//! `rebuild` (rebuild the read model from the store and swap it in) and
//! `verify` (rebuild into shadow tables and compare with the live model).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ordertrail_platform::process::{DatabaseArgs, KafkaArgs, ServiceArgs};

use crate::replay::{Progress, VerifyReport};
use crate::{ProjectorKind, RuntimeConfig, rider_etas::EtaSettings};

/// A projector process: maintains one read model from the event store and
/// Kafka, and rebuilds or verifies it from the store.
///
/// `run` (the default) catches up from the event store in commit order, then
/// follows Kafka (or, without `KAFKA_BROKERS`, keeps polling the store);
/// instances with the same group split the partitions. `rebuild` rebuilds the
/// read model in shadow tables and swaps it in; `verify` compares a rebuild
/// with the live model. Database pool: 4 connections (at least 2) unless
/// `DATABASE_POOL_SIZE` says otherwise. Never migrates: `run` waits until the
/// migrate job has brought the schema up to date, `rebuild` and `verify`
/// refuse a schema behind this build.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct ProjectorArgs {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub projector: ProjectorOptions,
}

/// A projector's own options.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Projector")]
pub struct ProjectorOptions {
    /// Consumer group; instances with the same group split the partitions
    /// (default: `ordertrail-<projector>`).
    #[arg(long, env = "GROUP_ID", global = true)]
    pub group_id: Option<String>,
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
        self.projector
            .runtime_config(projector, &self.service.kafka)
    }

    pub fn eta_settings(&self) -> EtaSettings {
        self.projector.eta_settings()
    }
}

impl ProjectorOptions {
    fn runtime_config(&self, projector: &str, kafka: &KafkaArgs) -> RuntimeConfig {
        let group = self
            .group_id
            .clone()
            .unwrap_or_else(|| format!("ordertrail-{projector}"));
        let mut config = match &kafka.kafka_brokers {
            Some(brokers) => RuntimeConfig::new(brokers, &kafka.topic_prefix, group),
            None => RuntimeConfig::store_only(group),
        };
        config.batch_size = self.batch_size.max(1);
        config.store_batch_size = self.store_batch_size.max(1);
        config.batch_wait = Duration::from_millis(self.batch_wait_ms);
        config.fetch_wait = Duration::from_millis(self.fetch_wait_ms.max(1));
        config.stall_retry = Duration::from_secs(self.stall_retry_secs.max(1));
        config
    }

    fn eta_settings(&self) -> EtaSettings {
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
    args.service.start(name)?;
    let command = args.command.clone().unwrap_or(Command::Run);
    // A running projector waits out a database outage and a schema behind
    // it, however long; the one-shot commands (rebuild, verify) give up after
    // a while and refuse a schema behind them.
    let pool_size = args.service.database.pool_size(4).max(2);
    let database = DatabaseArgs {
        database_pool_size: Some(pool_size),
        ..args.service.database.clone()
    };
    let pool = if matches!(command, Command::Run) {
        database.connect_service(pool_size).await
    } else {
        database.connect_tool(pool_size).await
    }
    .context("connect to PostgreSQL")?;
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
            let summary = crate::rebuild(
                kind,
                &pool,
                args.projector.store_batch_size,
                &mut on_progress(&bar),
            )
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
                args.projector.store_batch_size,
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
