//! `ordertrail-api`: the HTTP server of the write side. Parses its
//! configuration, connects the database (optionally migrating and seeding
//! it), and serves [`ordertrail_api::app`] until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use ordertrail_api::{AppState, AuthConfig, DEFAULT_MAX_BODY_BYTES, app};
use ordertrail_commands::catalog;
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::service::CommandService;

/// Ordertrail API server.
#[derive(Parser)]
#[command(version, about)]
struct Config {
    /// PostgreSQL URL of the event store and reference data.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    listen_addr: SocketAddr,
    /// HS256 secret bearer tokens are signed with (never logged).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// When set, tokens must carry this `iss`.
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Most database connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    db_pool_size: u32,
    /// Serve Prometheus metrics at http://METRICS_ADDR/metrics when set.
    #[arg(long, env = "METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Apply pending database migrations before serving.
    #[arg(long)]
    migrate: bool,
    /// Load the seed reference data (restaurants, menus, riders) before serving.
    #[arg(long)]
    seed: bool,
    /// Exit after `--migrate` / `--seed` instead of serving (a one-shot
    /// migration job, e.g. the `migrate` service in compose.yaml).
    #[arg(long)]
    migrate_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    ordertrail_platform::telemetry::init("ordertrail-api");
    if config.jwt_secret.len() < 16 {
        anyhow::bail!("JWT_SECRET must be at least 16 bytes");
    }
    if let Some(addr) = config.metrics_addr {
        ordertrail_platform::telemetry::serve_metrics(addr)
            .context("starting the metrics endpoint")?;
    }
    let pool = ordertrail_platform::db::connect(&config.database_url, config.db_pool_size)
        .await
        .context("connecting to the database")?;
    if config.migrate {
        ordertrail_platform::db::migrate(&pool)
            .await
            .context("applying migrations")?;
    }
    if config.seed {
        catalog::seed(&pool)
            .await
            .context("loading seed reference data")?;
    }
    if config.migrate_only {
        tracing::info!("migrations and seed data applied; exiting (--migrate-only)");
        return Ok(());
    }
    let commands = CommandService::new(pool.clone(), RecordingProvider::simulated(pool));
    let auth = AuthConfig::new(config.jwt_secret.as_bytes(), config.jwt_issuer.clone());
    let state = AppState::new(commands, auth).with_max_body_bytes(config.max_body_bytes);
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(addr = %local, docs = %format!("http://{local}/v1/docs"), "ordertrail-api listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(ordertrail_platform::shutdown::signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("ordertrail-api stopped");
    Ok(())
}
