//! The relay binary: publishes the event store on Kafka. Thin: parses the
//! configuration and runs [`ordertrail_commands::relay::run`] until SIGTERM.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ordertrail_commands::relay::{self, RelayConfig};
use ordertrail_platform::process::ServiceArgs;
use ordertrail_platform::shutdown;

/// Publishes the event store on Kafka, in commit order, at least once.
///
/// Reads every event committed to the PostgreSQL event store in commit order
/// and publishes it on `<prefix>.orders`, `.payments` or `.deliveries`
/// (topics created at start-up), advancing its checkpoint only after the
/// broker acknowledged the whole batch. Run two for a hot standby: one holds
/// the lease, the other takes over within seconds. Database pool: 4
/// connections unless `DATABASE_POOL_SIZE` says otherwise. Never migrates:
/// waits until the migrate job has brought the schema up to date.
#[derive(Debug, Parser)]
#[command(name = "ordertrail-relay", version)]
struct Config {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    relay: RelayArgs,
}

/// The relay's own options.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Relay")]
struct RelayArgs {
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.service.start("ordertrail-relay")?;
    let brokers = config.service.kafka.brokers()?.to_owned();
    // The relay holds one dedicated connection (lock, reads, checkpoint) and
    // one for LISTEN; the rest serve lag queries and reconnects.
    let pool = config
        .service
        .database
        .connect_service(4)
        .await
        .context("connect to the event store")?;
    let relay_args = config.relay;
    let mut relay_config = RelayConfig::new(brokers, config.service.kafka.topic_prefix);
    relay_config.topic_partitions = relay_args.topic_partitions;
    relay_config.topic_replication_factor = relay_args.topic_replication_factor;
    relay_config.batch_size = relay_args.relay_batch_size;
    relay_config.delivery_timeout = Duration::from_millis(relay_args.relay_delivery_timeout_ms);
    relay::run(relay_config, pool, shutdown::signal())
        .await
        .context("relay")?;
    Ok(())
}
