//! The shared argument groups. Every argument is `global` so that binaries
//! with subcommands (the projectors' `rebuild` / `verify`, audit, reconcile)
//! accept it before or after the subcommand; a setting a binary cannot run
//! without is therefore checked when it is used ([`DatabaseArgs::url`],
//! [`KafkaArgs::brokers`]), with an error naming the flag and the variable.

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::PgPool;

use super::{StartError, env, schema};
use crate::db;

/// PostgreSQL settings (help heading "Database").
#[derive(Clone, Default, clap::Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseArgs {
    /// PostgreSQL URL of the event store and the read models (may hold a
    /// password: never shown or logged).
    #[arg(long, env = env::DATABASE_URL, hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Most connections in the pool [default: per binary, shown in its
    /// description; `DB_POOL_SIZE` is read as a deprecated alias].
    #[arg(long, env = env::DATABASE_POOL_SIZE, global = true)]
    pub database_pool_size: Option<u32>,
    /// Seconds a session of ours may sit idle inside a transaction before the
    /// server ends it; 0: no limit [default: 60; `DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS`
    /// is read as a deprecated alias].
    #[arg(long, env = env::DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS, global = true)]
    pub database_idle_in_transaction_timeout_seconds: Option<u64>,
}

/// Never shows the URL: it may hold a password.
impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("database_pool_size", &self.database_pool_size)
            .field(
                "database_idle_in_transaction_timeout_seconds",
                &self.database_idle_in_transaction_timeout_seconds,
            )
            .finish()
    }
}

impl DatabaseArgs {
    /// The URL, or an error naming `--database-url` / `DATABASE_URL`.
    pub fn url(&self) -> Result<&str, StartError> {
        self.database_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .ok_or(StartError::Missing {
                flag: "database-url",
                env: env::DATABASE_URL,
            })
    }

    /// The pool size: `--database-pool-size` / `DATABASE_POOL_SIZE`, else the
    /// deprecated `DB_POOL_SIZE`, else `default`; at least 1.
    pub fn pool_size(&self, default: u32) -> u32 {
        let deprecated = || {
            let size = std::env::var(env::DATABASE_POOL_SIZE_DEPRECATED)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            tracing::warn!(
                "{} is deprecated; set {} instead",
                env::DATABASE_POOL_SIZE_DEPRECATED,
                env::DATABASE_POOL_SIZE
            );
            Some(size)
        };
        self.database_pool_size
            .or_else(deprecated)
            .unwrap_or(default)
            .max(1)
    }

    /// The idle-in-transaction limit (`None`: no limit).
    pub fn idle_in_transaction_timeout(&self) -> Option<Duration> {
        let secs = self
            .database_idle_in_transaction_timeout_seconds
            .unwrap_or_else(db::idle_in_transaction_seconds_from_env);
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    fn connect_options(&self) -> Result<sqlx::postgres::PgConnectOptions, StartError> {
        let options = self.url()?.parse()?;
        Ok(db::with_idle_in_transaction_limit(
            options,
            self.idle_in_transaction_timeout(),
        ))
    }

    /// The pool of a long-running service (at most `default_pool` connections
    /// unless configured): waits for the server as long as it takes, then
    /// until the schema is current ([`schema::wait_until_current`]). Only a
    /// configuration fault (bad URL, refused password, missing database) ends it.
    pub async fn connect_service(&self, default_pool: u32) -> Result<PgPool, StartError> {
        let pool =
            db::connect_within(self.connect_options()?, self.pool_size(default_pool), None).await?;
        schema::wait_until_current(&pool).await?;
        Ok(pool)
    }

    /// The pool of the migrate job: waits for the server as long as it takes
    /// and does not look at the schema (bringing it up to date is the job's
    /// work: [`db::migrate_service`]).
    pub async fn connect_migrate_job(&self, default_pool: u32) -> Result<PgPool, StartError> {
        Ok(db::connect_within(self.connect_options()?, self.pool_size(default_pool), None).await?)
    }

    /// The pool of a command-line tool: waits up to [`db::TOOL_CONNECT_WAIT`]
    /// for the server, and refuses a schema behind this build (the tool
    /// never migrates: run the migrate job first).
    pub async fn connect_tool(&self, default_pool: u32) -> Result<PgPool, StartError> {
        let pool = db::connect_within(
            self.connect_options()?,
            self.pool_size(default_pool),
            Some(db::TOOL_CONNECT_WAIT),
        )
        .await?;
        schema::check(&pool).await?.into_result()?;
        Ok(pool)
    }
}

/// Kafka settings (help heading "Kafka").
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    #[arg(long, env = env::KAFKA_BROKERS, global = true)]
    pub kafka_brokers: Option<String>,
    /// Topic prefix: events travel on `<prefix>.orders`, `<prefix>.payments`
    /// and `<prefix>.deliveries`.
    #[arg(long, env = env::TOPIC_PREFIX, default_value = ordertrail_schemas::topics::DEFAULT_PREFIX, global = true)]
    pub topic_prefix: String,
}

impl KafkaArgs {
    /// The bootstrap servers, or an error naming `--kafka-brokers` / `KAFKA_BROKERS`.
    pub fn brokers(&self) -> Result<&str, StartError> {
        self.configured_brokers().ok_or(StartError::Missing {
            flag: "kafka-brokers",
            env: env::KAFKA_BROKERS,
        })
    }

    /// The bootstrap servers when set and not blank.
    pub fn configured_brokers(&self) -> Option<&str> {
        self.kafka_brokers
            .as_deref()
            .filter(|b| !b.trim().is_empty())
    }
}

/// Prometheus settings (help heading "Metrics").
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at `http://<addr>/metrics`; none when unset.
    #[arg(long, env = env::METRICS_ADDR, global = true)]
    pub metrics_addr: Option<SocketAddr>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Pretty,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Logging settings (help heading "Logging"). Logs go to stderr.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Which log lines to write, in tracing's `EnvFilter` syntax
    /// (`info`, `warn,ordertrail=debug`).
    #[arg(long = "log-filter", env = env::RUST_LOG, default_value = crate::telemetry::DEFAULT_FILTER, global = true)]
    pub log_filter: String,
    /// Log format.
    #[arg(long, env = env::LOG_FORMAT, value_enum, ignore_case = true, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
}

/// The four shared groups of a long-running service (relay, saga,
/// projectors), flattened in help order: Database, Kafka, Metrics, Logging.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl ServiceArgs {
    /// [`super::start`] with these settings.
    pub fn start(&self, service: &'static str) -> Result<(), StartError> {
        super::start(service, &self.log, &self.metrics)
    }
}
