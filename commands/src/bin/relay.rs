//! The relay binary: publishes the event store on Kafka. Thin: parses the
//! configuration and runs [`ordertrail_commands::relay::run`] until SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ordertrail_commands::relay::{self, RelayConfig};
use ordertrail_platform::{db, shutdown, telemetry};

/// Publishes every event committed to the PostgreSQL event store on Kafka, in
/// commit order, at least once. Run two for a hot standby.
#[derive(Debug, Parser)]
#[command(name = "relay", version)]
struct Config {
    /// PostgreSQL URL of the event store (may hold a password: never shown).
    #[arg(long, env, hide_env_values = true)]
    database_url: String,
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    #[arg(long, env)]
    kafka_brokers: String,
    /// Topic prefix: events go to `<prefix>.orders`, `.payments`, `.deliveries`.
    #[arg(long, env, default_value = ordertrail_schemas::topics::DEFAULT_PREFIX)]
    topic_prefix: String,
    /// Partitions of each topic the relay creates at start-up.
    #[arg(long, env, default_value_t = 6)]
    topic_partitions: i32,
    /// Replication factor of each topic the relay creates; -1 = broker default.
    #[arg(long, env, default_value_t = -1, allow_hyphen_values = true)]
    topic_replication_factor: i32,
    /// Most events published per batch (one checkpoint write per batch).
    #[arg(long, env, default_value_t = 2_000)]
    relay_batch_size: usize,
    /// Milliseconds a batch may wait for broker acknowledgements before it is
    /// produced again (librdkafka `message.timeout.ms`).
    #[arg(long, env, default_value_t = 30_000)]
    relay_delivery_timeout_ms: u64,
    /// Where to serve Prometheus metrics (`/metrics`); none when unset.
    #[arg(long, env)]
    metrics_addr: Option<SocketAddr>,
    /// Apply pending database migrations at start-up.
    #[arg(long, env, default_value_t = true, action = clap::ArgAction::Set)]
    run_migrations: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init("relay");
    if let Some(addr) = config.metrics_addr {
        telemetry::serve_metrics(addr).context("serve metrics")?;
    }
    // The relay holds one dedicated connection (lock, reads, checkpoint) and
    // one for LISTEN; the rest serve lag queries and reconnects.
    let pool = db::connect_service(&config.database_url, 4)
        .await
        .context("connect to the event store")?;
    if config.run_migrations {
        db::migrate_service(&pool)
            .await
            .context("apply migrations")?;
    }
    let mut relay_config = RelayConfig::new(config.kafka_brokers, config.topic_prefix);
    relay_config.topic_partitions = config.topic_partitions;
    relay_config.topic_replication_factor = config.topic_replication_factor;
    relay_config.batch_size = config.relay_batch_size;
    relay_config.delivery_timeout = Duration::from_millis(config.relay_delivery_timeout_ms);
    relay::run(relay_config, pool, shutdown::signal())
        .await
        .context("relay")?;
    Ok(())
}
