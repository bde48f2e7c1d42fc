//! The saga binary: drives orders, payments and deliveries from events.
//! Thin: parses the configuration and runs [`ordertrail_commands::saga::run`]
//! until SIGTERM.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::retention::{self, RetentionPolicy};
use ordertrail_commands::saga::{self, SagaConfig};
use ordertrail_commands::service::CommandService;
use ordertrail_platform::process::ServiceArgs;
use ordertrail_platform::shutdown;
use ordertrail_schemas::privacy::DropoffCodeKey;

/// Drives orders, payments and deliveries from their events.
///
/// Consumes the order, payment and delivery topics (after catching up from
/// the event store) and sends the follow-up commands that take an order from
/// placement to delivered and paid; fires the stored timeouts. Run several
/// with the same group id to share the work. Database pool: 16 connections
/// unless `DATABASE_POOL_SIZE` says otherwise. Never migrates: waits until
/// the migrate job has brought the schema up to date.
#[derive(Parser)]
#[command(name = "ordertrail-saga", version)]
struct Config {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    saga: SagaArgs,
}

/// The saga's own options. Not `Debug`: it holds the drop-off code key.
#[derive(clap::Args)]
#[command(next_help_heading = "Saga")]
struct SagaArgs {
    /// Secret the drop-off codes are derived from and stored hashed with
    /// (HMAC-SHA256; at least 16 bytes; the same in the API and the saga;
    /// never logged).
    #[arg(long, env = "DROPOFF_CODE_KEY", hide_env_values = true)]
    dropoff_code_key: String,
    /// Kafka consumer group; also the key of the positions stored in PostgreSQL.
    #[arg(long, env, default_value = saga::DEFAULT_GROUP_ID)]
    group_id: String,
    /// Seconds a confirmed order may wait for the restaurant before it is cancelled.
    #[arg(long, env, default_value_t = 600)]
    accept_timeout_secs: u64,
    /// Seconds a requested delivery may wait for a rider before it is flagged for ops.
    #[arg(long, env, default_value_t = 300)]
    assign_timeout_secs: u64,
    /// Seconds after assignment within which the rider must pick the food up;
    /// then the rider is taken off the delivery, which waits for a rider again.
    #[arg(long, env, default_value_t = 1_800)]
    pickup_timeout_secs: u64,
    /// Seconds after assignment within which the delivery must be completed;
    /// then it is flagged for ops.
    #[arg(long, env, default_value_t = 5_400)]
    completion_timeout_secs: u64,
    /// Milliseconds before the first retry of a failed capture, void or
    /// refund; doubles per retry.
    #[arg(long, env, default_value_t = 30_000)]
    money_retry_backoff_ms: u64,
    /// Longest delay, in seconds, between two stored retries of a provider call.
    #[arg(long, env, default_value_t = 3_600)]
    max_retry_delay_secs: u64,
    /// Retries of a card authorization while the payment provider is
    /// unavailable; after the last one the order is cancelled.
    #[arg(long, env, default_value_t = 3)]
    payment_retry_limit: u32,
    /// Milliseconds before the first authorization retry; doubles per retry.
    #[arg(long, env, default_value_t = 5_000)]
    payment_retry_backoff_ms: u64,
    /// Milliseconds between two looks for due timers.
    #[arg(long, env, default_value_t = 1_000)]
    timer_poll_interval_ms: u64,
    /// Aggregates of a batch handled at the same time (each aggregate's
    /// events stay in order); 1 handles one event after the other. Give the
    /// database pool at least as many connections.
    #[arg(long, env = "SAGA_CONCURRENCY", default_value_t = saga::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    #[command(flatten)]
    retention: RetentionArgs,
}

/// Retention of the tables that grow with traffic (one saga instance at a
/// time prunes; see `ordertrail_commands::retention`).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Retention")]
struct RetentionArgs {
    /// Seconds between two pruning runs; 0 switches pruning off.
    #[arg(long, env, default_value_t = 3_600)]
    retention_interval_secs: u64,
    /// Seconds an Idempotency-Key is remembered: a retry within this window
    /// gets the first answer.
    #[arg(long, env, default_value_t = 86_400)]
    idempotency_window_secs: u64,
    /// Seconds the command log keeps a command; at least the idempotency
    /// window, because retries are answered from it.
    #[arg(long, env, default_value_t = 604_800)]
    command_log_window_secs: u64,
    /// Seconds a fired timer is kept.
    #[arg(long, env, default_value_t = 604_800)]
    fired_timer_window_secs: u64,
    /// Seconds a consumer's sequence guard of an aggregate is kept after its
    /// last applied event (older ones fall back to the store position).
    #[arg(long, env, default_value_t = 604_800)]
    sequence_guard_window_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.service.start("ordertrail-saga")?;
    let brokers = config.service.kafka.brokers()?.to_owned();
    // Commands (one per aggregate handled at the same time), positions and
    // timer claims each take a connection.
    let pool = config
        .service
        .database
        .connect_service(16)
        .await
        .context("connect to the event store")?;
    let topic_prefix = config.service.kafka.topic_prefix;
    let config = config.saga;
    let dropoff_code_key = DropoffCodeKey::new(config.dropoff_code_key.clone().into_bytes())
        .context("DROPOFF_CODE_KEY")?;
    let service = CommandService::new(pool.clone(), RecordingProvider::simulated(pool))
        .with_dropoff_code_key(dropoff_code_key);
    let mut saga_config = SagaConfig::new(brokers, topic_prefix, config.group_id);
    saga_config.accept_timeout = Duration::from_secs(config.accept_timeout_secs);
    saga_config.assign_timeout = Duration::from_secs(config.assign_timeout_secs);
    saga_config.pickup_timeout = Duration::from_secs(config.pickup_timeout_secs);
    saga_config.completion_timeout = Duration::from_secs(config.completion_timeout_secs);
    saga_config.money_retry_backoff = Duration::from_millis(config.money_retry_backoff_ms);
    saga_config.max_retry_delay = Duration::from_secs(config.max_retry_delay_secs.max(1));
    saga_config.payment_retry_limit = config.payment_retry_limit;
    saga_config.payment_retry_backoff = Duration::from_millis(config.payment_retry_backoff_ms);
    saga_config.timer_poll_interval = Duration::from_millis(config.timer_poll_interval_ms.max(10));
    saga_config.concurrency = config.concurrency.max(1);
    let retention = config.retention;
    let retention = if retention.retention_interval_secs == 0 {
        None
    } else {
        let policy = RetentionPolicy::new(
            Duration::from_secs(retention.idempotency_window_secs),
            Duration::from_secs(retention.command_log_window_secs),
            Duration::from_secs(retention.fired_timer_window_secs),
            Duration::from_secs(retention.sequence_guard_window_secs),
        )
        .context("retention windows")?;
        Some(tokio::spawn(retention::run(
            service.pool().clone(),
            policy,
            Duration::from_secs(retention.retention_interval_secs),
            shutdown::signal(),
        )))
    };
    let result = saga::run(saga_config, service, shutdown::signal()).await;
    if let Some(task) = retention {
        task.abort();
    }
    result.context("saga")?;
    Ok(())
}
