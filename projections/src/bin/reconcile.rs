//! `ordertrail-reconcile`: money reconciliation from the command line.
//!
//! ```text
//! ordertrail-reconcile settlements --from 2026-03-14 --to 2026-03-14 \
//!     [--provider-statement statement.csv] [--json | --csv]
//! ordertrail-reconcile provider-statement --date 2026-03-14 > statement.csv
//! ```
//!
//! `settlements` prints a summary table and every break (or JSON, or the
//! breaks as CSV) and exits with 1 when there is any break, 0 when clean.
//! `provider-statement` prints the simulated provider's statement of one UTC
//! day (the simulation's own ledger, not our events) in the documented CSV.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use ordertrail_platform::process::{self, DatabaseArgs, LogArgs, MetricsArgs};
use ordertrail_projections::reconcile::{self, Report, statement};

/// Reconcile settlements and payments.
///
/// `settlements` recomputes the settlement figures from the events, by a
/// path independent of the projector, and compares them with the read model
/// to the cent; with a provider statement it also compares every payment
/// operation with the provider's line. Breaks are reported by kind; exit 1
/// when there is any, 0 when clean, 2 on an error. `provider-statement`
/// prints the simulated provider's statement of one UTC day. Never migrates:
/// refuses a schema behind this build.
#[derive(Debug, Parser)]
#[command(name = "ordertrail-reconcile", version)]
struct Args {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Settlements against the events and, with a statement, payments against the provider.
    Settlements {
        /// First day (`YYYY-MM-DD`): restaurant business days and provider UTC days.
        #[arg(long)]
        from: NaiveDate,
        /// Last day, included.
        #[arg(long)]
        to: NaiveDate,
        /// The provider's statement (CSV, see `provider-statement`).
        #[arg(long)]
        provider_statement: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print the breaks as CSV.
        #[arg(long)]
        csv: bool,
    },
    /// Print the simulated provider's statement of one UTC day as CSV.
    ProviderStatement {
        /// The day (`YYYY-MM-DD`, UTC).
        #[arg(long)]
        date: NaiveDate,
    },
}

fn table(report: &Report) -> String {
    let s = &report.summary;
    let mut out = format!(
        "Reconciliation {} .. {}\n\n{:<40} {:>12}\n",
        report.from, report.to, "what", "count"
    );
    let rows = [
        ("restaurant days from events", s.restaurant_days_from_events),
        (
            "restaurant days in read model",
            s.restaurant_days_in_read_model,
        ),
        ("provider days from events", s.provider_days_from_events),
        ("provider days in read model", s.provider_days_in_read_model),
        ("our provider operations", s.ledger_operations),
        ("provider statement lines", s.statement_lines),
    ];
    for (what, n) in rows {
        out.push_str(&format!("{what:<40} {n:>12}\n"));
    }
    for (currency, net) in &s.net_payable_from_events {
        out.push_str(&format!(
            "{:<40} {net:>12}\n",
            format!("net payable from events ({currency}, minor)")
        ));
    }
    out.push_str(&format!("\n{:<40} {:>12}\n", "break kind", "breaks"));
    for (kind, n) in &s.breaks_by_kind {
        out.push_str(&format!("{kind:<40} {n:>12}\n"));
    }
    out.push_str(&format!("{:<40} {:>12}\n", "total", s.breaks));
    if !report.breaks.is_empty() {
        out.push_str("\nBreaks:\n");
        for b in &report.breaks {
            let diffs: Vec<String> = b
                .diffs
                .iter()
                .map(|d| {
                    format!(
                        "{}: ours {} / theirs {}",
                        d.field,
                        d.ours.as_deref().unwrap_or("-"),
                        d.theirs.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            out.push_str(&format!(
                "  {:<26} {} {} {} ref={} payment={} side={} {}\n",
                b.kind.as_str(),
                b.subject,
                b.day.map(|d| d.to_string()).unwrap_or_default(),
                b.currency.as_deref().unwrap_or(""),
                b.provider_reference.as_deref().unwrap_or("-"),
                b.payment_id.as_deref().unwrap_or("-"),
                b.side.as_deref().unwrap_or("-"),
                diffs.join("; ")
            ));
        }
    }
    out
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let pool = args
        .database
        .connect_tool(2)
        .await
        .context("connect to the database")?;
    match args.command {
        Command::ProviderStatement { date } => {
            let lines = reconcile::simulated_statement(&pool, date, date)
                .await
                .context("read the simulated provider's ledger")?;
            print!("{}", statement::to_csv(&lines));
            Ok(ExitCode::SUCCESS)
        }
        Command::Settlements {
            from,
            to,
            provider_statement,
            json,
            csv,
        } => {
            let lines = match &provider_statement {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("read {}", path.display()))?;
                    Some(
                        statement::parse(&text)
                            .with_context(|| format!("parse {}", path.display()))?,
                    )
                }
                None => None,
            };
            let report = reconcile::reconcile(&pool, from, to, lines.as_deref())
                .await
                .context("reconcile")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if csv {
                print!("{}", report.breaks_csv());
            } else {
                print!("{}", table(&report));
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = process::start("ordertrail-reconcile", &args.log, &MetricsArgs::default()) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
