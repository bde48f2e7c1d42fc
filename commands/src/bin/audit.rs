//! `ordertrail-audit`: the audit reads of `/v1/audit` from the command line,
//! straight from the event store.
//!
//! ```text
//! ordertrail-audit events orders <id> [--limit N] [--cursor C] [--json]
//! ordertrail-audit state payments <id> [--version N | --at 2026-03-14T12:00:00Z] [--json]
//! ordertrail-audit correlation <correlation-id> [--json]
//! ```
//!
//! A human table by default; `--json` prints the API's JSON. Every read is
//! logged (target `audit`) with the operating-system user who ran it.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use ordertrail_commands::audit::{self, AsOf, AuditPage};
use ordertrail_platform::process::{self, DatabaseArgs, LogArgs, MetricsArgs};
use ordertrail_schemas::AggregateKind;
use uuid::Uuid;

/// Audit reads from the event store.
///
/// The full history of one order, payment or delivery with its metadata,
/// its state at a version or a time (folded by the domain aggregate), and
/// every event of one business flow in commit order — read from the event
/// store, never from a read model. A table by default, the API's JSON with
/// `--json`. Every read is logged (target `audit`) with the operating-system
/// user who ran it. Never migrates: refuses a schema behind this build.
#[derive(Debug, Parser)]
#[command(name = "ordertrail-audit", version)]
struct Args {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true, help_heading = "Audit")]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Orders,
    Payments,
    Deliveries,
}

impl From<Kind> for AggregateKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Orders => AggregateKind::Order,
            Kind::Payments => AggregateKind::Payment,
            Kind::Deliveries => AggregateKind::Delivery,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every event of one aggregate, with metadata, by sequence.
    Events {
        kind: Kind,
        id: Uuid,
        /// Page size, 1..=1000.
        #[arg(long)]
        limit: Option<i64>,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// The aggregate's state at a version or a time (latest without either).
    State {
        kind: Kind,
        id: Uuid,
        /// After the event with this sequence.
        #[arg(long, conflicts_with = "at")]
        version: Option<i64>,
        /// After every event recorded at or before this instant (RFC 3339).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Every event of one business flow, in commit order.
    Correlation {
        id: Uuid,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        cursor: Option<String>,
    },
}

fn meta(e: &serde_json::Value, key: &str) -> String {
    e.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or("-")
        .to_owned()
}

fn table(page: &AuditPage) -> String {
    let mut out = format!(
        "{:<9} {:>4} {:<32} {:<27} {:<28} {:<36} {:<36} {:<36} {}\n",
        "aggregate",
        "seq",
        "event",
        "recorded_at",
        "actor",
        "command_id",
        "correlation_id",
        "causation_id",
        "request_id"
    );
    for e in &page.items {
        out.push_str(&format!(
            "{:<9} {:>4} {:<32} {:<27} {:<28} {:<36} {:<36} {:<36} {}\n",
            e.aggregate_type,
            e.sequence,
            format!("{} v{}", e.event_type, e.event_version),
            e.recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            format!(
                "{}:{}",
                meta(&e.metadata, "actor_role"),
                meta(&e.metadata, "actor_subject")
            ),
            meta(&e.metadata, "command_id"),
            meta(&e.metadata, "correlation_id"),
            meta(&e.metadata, "causation_id"),
            meta(&e.metadata, "request_id"),
        ));
    }
    if let Some(c) = &page.next_cursor {
        out.push_str(&format!("more: --cursor {c}\n"));
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    process::start("ordertrail-audit", &args.log, &MetricsArgs::default())?;
    let pool = args
        .database
        .connect_tool(1)
        .await
        .context("connect to the event store")?;
    let caller = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    tracing::info!(target: "audit", subject = %caller, role = "cli", command = ?args.command, "audit read");
    match args.command {
        Command::Events {
            kind,
            id,
            limit,
            cursor,
        } => {
            let page = audit::history(
                &pool,
                kind.into(),
                &id.to_string(),
                cursor.as_deref(),
                limit,
            )
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print!("{}", table(&page));
            }
        }
        Command::Correlation { id, limit, cursor } => {
            let page = audit::correlation(&pool, id, cursor.as_deref(), limit).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print!("{}", table(&page));
            }
        }
        Command::State {
            kind,
            id,
            version,
            at,
        } => {
            let as_of = match (version, at) {
                (Some(v), _) => AsOf::Version(v),
                (None, Some(t)) => AsOf::Time(t),
                (None, None) => AsOf::Latest,
            };
            let state = audit::state_as_of(&pool, kind.into(), &id.to_string(), as_of).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                println!(
                    "{} {} at version {} (recorded {})\n{}",
                    state.aggregate_type,
                    state.aggregate_id,
                    state.version,
                    state
                        .at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    serde_json::to_string_pretty(&state.state)?
                );
            }
        }
    }
    Ok(())
}
