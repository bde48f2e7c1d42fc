//! `ordertrail-api`: the HTTP server of the write side. Parses its
//! configuration, connects the database (waiting until its schema is
//! current), and serves [`ordertrail_api::app`] until
//! SIGTERM or Ctrl-C. With `--migrate-only` it is instead the one-shot
//! migrate job: migrate, exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ordertrail_api::limits::{Budget, RateLimits, parse_origins};
use ordertrail_api::{AppState, AuthConfig, DEFAULT_MAX_BODY_BYTES, app};
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::service::CommandService;
use ordertrail_platform::process::{self, DatabaseArgs, LogArgs, MetricsArgs};
use ordertrail_schemas::privacy::DropoffCodeKey;

/// Ordertrail API server: commands, queries, streams and the OpenAPI document.
///
/// Serves the versioned JSON API under `/v1` (JWT bearer tokens, rate limits,
/// CORS allowlist), its OpenAPI document and Swagger UI, the SSE streams and
/// the web console. Database pool: 16 connections unless
/// `DATABASE_POOL_SIZE` says otherwise. Never migrates while serving: it
/// waits (not ready) until the schema is current. `--migrate-only` makes it
/// the migrate job instead: apply the migrations, then exit.
#[derive(Parser)]
#[command(name = "ordertrail-api", version)]
struct Config {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    api: ApiArgs,
}

/// The API's own options.
#[derive(clap::Args)]
#[command(next_help_heading = "API")]
struct ApiArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    listen_addr: SocketAddr,
    /// HS256 secret for local tokens (never logged); checks tokens without
    /// `kid`. Optional when `JWT_JWKS_FILE` names an identity provider's keys.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// A `kid` for the `JWT_SECRET`: tokens with this `kid` are checked with it too.
    #[arg(long, env = "JWT_SECRET_KID")]
    jwt_secret_kid: Option<String>,
    /// A JWKS file (`{"keys": [...]}`) of keys chosen by `kid`: RS256, EdDSA,
    /// ES256 public keys of an identity provider, or HS256 `oct` keys. Re-read
    /// every `JWT_JWKS_REFRESH_SECONDS`, so keys rotate without a restart.
    #[arg(long, env = "JWT_JWKS_FILE")]
    jwt_jwks_file: Option<PathBuf>,
    /// How often the JWKS file is re-read, seconds (0: never).
    #[arg(long, env = "JWT_JWKS_REFRESH_SECONDS", default_value_t = 60)]
    jwt_jwks_refresh_seconds: u64,
    /// Secret the drop-off codes are derived from and stored hashed with
    /// (HMAC-SHA256; at least 16 bytes; the same in the API and the saga;
    /// never logged).
    #[arg(long, env = "DROPOFF_CODE_KEY", hide_env_values = true)]
    dropoff_code_key: String,
    /// When set, tokens must carry this `iss`.
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    #[arg(long, env = "JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Longest accepted token lifetime, seconds (`exp - iat`, or `exp - now` without `iat`).
    #[arg(long, env = "JWT_MAX_LIFETIME_SECONDS", default_value_t = 86_400)]
    jwt_max_lifetime_seconds: u64,
    /// Commands (POST/PUT) a minute per token subject (0: unlimited). Per API replica.
    #[arg(long, env = "RATE_LIMIT_COMMANDS_PER_SUBJECT", default_value_t = 120)]
    rate_limit_commands_per_subject: u32,
    /// Queries (GET) a minute per token subject (0: unlimited). Per API replica.
    #[arg(long, env = "RATE_LIMIT_QUERIES_PER_SUBJECT", default_value_t = 600)]
    rate_limit_queries_per_subject: u32,
    /// Commands a minute per client address (0: unlimited). Per API replica.
    #[arg(long, env = "RATE_LIMIT_COMMANDS_PER_ADDRESS", default_value_t = 600)]
    rate_limit_commands_per_address: u32,
    /// Queries a minute per client address (0: unlimited). Per API replica.
    #[arg(long, env = "RATE_LIMIT_QUERIES_PER_ADDRESS", default_value_t = 3000)]
    rate_limit_queries_per_address: u32,
    /// Take the client address from the first `X-Forwarded-For` entry (only
    /// behind a proxy that sets it).
    #[arg(long, env = "TRUST_X_FORWARDED_FOR")]
    trust_x_forwarded_for: bool,
    /// Comma-separated origins browsers may call the API from
    /// (`https://backoffice.example,http://localhost:3000`); empty: none.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "")]
    cors_allowed_origins: String,
    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Deprecated, implied by `--migrate-only` (the API never migrates while
    /// serving).
    #[arg(long, hide = true)]
    migrate: bool,
    /// Be the migrate job: apply pending migrations (waiting out a database
    /// outage) and exit instead of serving. The demo data set is loaded by
    /// `ordertrail-local --prepare-only` (the `migrate` service in
    /// compose.yaml).
    #[arg(long)]
    migrate_only: bool,
}

/// Default pool size of the API.
const POOL_SIZE: u32 = 16;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Config {
        database,
        metrics,
        log,
        api: config,
    } = Config::parse();
    process::start("ordertrail-api", &log, &metrics)?;
    if config.migrate_only {
        return migrate_job(&database).await;
    }
    if config.migrate {
        anyhow::bail!(
            "the API no longer migrates while serving: run the migrate job \
             (`ordertrail-api --migrate-only`) first, then start it without --migrate"
        );
    }
    let auth = auth_config(&config)?;
    let cors_origins = parse_origins(&config.cors_allowed_origins)
        .map_err(anyhow::Error::msg)
        .context("reading CORS_ALLOWED_ORIGINS")?;
    let pool = database
        .connect_service(POOL_SIZE)
        .await
        .context("connecting to the database")?;
    let dropoff_code_key = DropoffCodeKey::new(config.dropoff_code_key.clone().into_bytes())
        .context("DROPOFF_CODE_KEY")?;
    let commands = CommandService::new(pool.clone(), RecordingProvider::simulated(pool))
        .with_dropoff_code_key(dropoff_code_key);
    if let Some(path) = config.jwt_jwks_file.clone()
        && config.jwt_jwks_refresh_seconds > 0
    {
        tokio::spawn(refresh_jwks(
            auth.clone(),
            path,
            Duration::from_secs(config.jwt_jwks_refresh_seconds),
        ));
    }
    let limits = RateLimits {
        commands_per_subject: Budget {
            per_minute: config.rate_limit_commands_per_subject,
        },
        queries_per_subject: Budget {
            per_minute: config.rate_limit_queries_per_subject,
        },
        commands_per_address: Budget {
            per_minute: config.rate_limit_commands_per_address,
        },
        queries_per_address: Budget {
            per_minute: config.rate_limit_queries_per_address,
        },
        trust_forwarded_for: config.trust_x_forwarded_for,
    };
    let state = AppState::new(commands, auth)
        .with_max_body_bytes(config.max_body_bytes)
        .with_rate_limits(limits)
        .with_cors_origins(cors_origins);
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(addr = %local, docs = %format!("http://{local}/v1/docs"), "ordertrail-api listening");
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(ordertrail_platform::shutdown::signal())
    .await
    .context("serving HTTP")?;
    tracing::info!("ordertrail-api stopped");
    Ok(())
}

/// The migrate job: wait for the server, apply the migrations (an outage
/// meanwhile is waited out), exit.
async fn migrate_job(database: &DatabaseArgs) -> anyhow::Result<()> {
    let pool = database
        .connect_migrate_job(2)
        .await
        .context("connecting to the database")?;
    ordertrail_platform::db::migrate_service(&pool)
        .await
        .context("applying migrations")?;
    tracing::info!("migrations applied; exiting (--migrate-only)");
    Ok(())
}

/// The token rules from the configuration: the local secret and/or a JWKS file.
fn auth_config(config: &ApiArgs) -> anyhow::Result<AuthConfig> {
    let issuer = config.jwt_issuer.clone();
    let auth = match &config.jwt_secret {
        Some(secret) if secret.len() < 16 => anyhow::bail!("JWT_SECRET must be at least 16 bytes"),
        Some(secret) => AuthConfig::new(secret.as_bytes(), issuer),
        None if config.jwt_jwks_file.is_some() => AuthConfig::without_secret(issuer),
        None => anyhow::bail!(
            "set JWT_SECRET (local tokens) or JWT_JWKS_FILE (an identity provider's keys)"
        ),
    }
    .with_signing_kid(config.jwt_secret_kid.clone())
    .with_audience(config.jwt_audience.clone())
    .with_max_lifetime(Duration::from_secs(config.jwt_max_lifetime_seconds));
    match &config.jwt_jwks_file {
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading JWT_JWKS_FILE {}", path.display()))?;
            auth.with_jwks(&json)
                .with_context(|| format!("loading JWT_JWKS_FILE {}", path.display()))
        }
        None => Ok(auth),
    }
}

/// Re-read the JWKS file now and then; a file that cannot be read or parsed
/// keeps the keys in force (and is logged).
async fn refresh_jwks(auth: AuthConfig, path: PathBuf, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let loaded = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| e.to_string())
            .and_then(|json| auth.reload_jwks(&json).map_err(|e| e.to_string()));
        match loaded {
            Ok(keys) => tracing::debug!(keys, path = %path.display(), "JWKS reloaded"),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "JWKS reload failed; keeping the keys in force");
            }
        }
    }
}
