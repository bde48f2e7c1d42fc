//! Configuration and `main` body shared by the projector binaries.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::{ProjectorKind, RuntimeConfig, rider_etas::EtaSettings};

/// A projector process: consumes Kafka, maintains one read model.
#[derive(Debug, Clone, Parser)]
pub struct ProjectorArgs {
    /// PostgreSQL holding the read models and the positions.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// Topic prefix: `<prefix>.orders`, `<prefix>.payments`, `<prefix>.deliveries`.
    #[arg(long, env = "TOPIC_PREFIX", default_value = ordertrail_schemas::topics::DEFAULT_PREFIX)]
    pub topic_prefix: String,
    /// Consumer group; instances with the same group split the partitions
    /// (default: `ordertrail-<projector>`).
    #[arg(long, env = "GROUP_ID")]
    pub group_id: Option<String>,
    /// Where to serve Prometheus metrics (`/metrics`); none if unset.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Most events applied per transaction.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 2_000)]
    pub batch_size: usize,
    /// Milliseconds to keep filling a batch after its first event.
    #[arg(long, env = "BATCH_WAIT_MS", default_value_t = 10)]
    pub batch_wait_ms: u64,
    /// Most milliseconds the broker may hold a fetch that found nothing.
    #[arg(long, env = "FETCH_WAIT_MS", default_value_t = 10)]
    pub fetch_wait_ms: u64,
    /// Database pool size.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 4)]
    pub pool_size: u32,
    /// Rider ETAs only: speed assumed while a rider has too few reports, m/s.
    #[arg(long, env = "ETA_DEFAULT_SPEED_MPS", default_value_t = 4.5)]
    pub eta_default_speed_mps: f64,
    /// Rider ETAs only: reports needed before the rider's own speed is used.
    #[arg(long, env = "ETA_MIN_REPORTS", default_value_t = 3)]
    pub eta_min_reports: usize,
}

impl ProjectorArgs {
    pub fn runtime_config(&self, projector: &str) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(
            &self.kafka_brokers,
            &self.topic_prefix,
            self.group_id
                .clone()
                .unwrap_or_else(|| format!("ordertrail-{projector}")),
        );
        config.batch_size = self.batch_size.max(1);
        config.batch_wait = Duration::from_millis(self.batch_wait_ms);
        config.fetch_wait = Duration::from_millis(self.fetch_wait_ms.max(1));
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

/// The whole `main` of a projector binary: telemetry, metrics, database,
/// migrations, then the runtime until SIGTERM.
pub async fn main(kind: fn(&ProjectorArgs) -> ProjectorKind) -> anyhow::Result<()> {
    let args = ProjectorArgs::parse();
    let kind = kind(&args);
    let name = kind.name();
    ordertrail_platform::telemetry::init(name);
    if let Some(addr) = args.metrics_addr {
        ordertrail_platform::telemetry::serve_metrics(addr).context("serve metrics")?;
    }
    let pool = ordertrail_platform::db::connect(&args.database_url, args.pool_size)
        .await
        .context("connect to PostgreSQL")?;
    ordertrail_platform::db::migrate(&pool)
        .await
        .context("apply migrations")?;
    crate::run(
        kind,
        args.runtime_config(name),
        pool,
        ordertrail_platform::shutdown::signal(),
    )
    .await
    .with_context(|| format!("projector {name}"))
}
