//! Shared pieces of the benchmark binaries under `src/bin/`: tokens, the
//! standard order request, free ports, waiting for the API, and throw-away
//! databases. Benchmarks print figures; they assert nothing.
//!
//! May depend on every workspace crate; nothing depends on it.

pub mod backlog;
pub mod lifecycle;
pub mod load;
pub mod relay_lag;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ordertrail_launcher::seed::seed_ids;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};

/// Environment that switches the API's rate limits off: a benchmark sends
/// far more from one address and subject than any real caller may.
pub const API_WITHOUT_RATE_LIMITS: [(&str, &str); 4] = [
    ("RATE_LIMIT_COMMANDS_PER_SUBJECT", "0"),
    ("RATE_LIMIT_QUERIES_PER_SUBJECT", "0"),
    ("RATE_LIMIT_COMMANDS_PER_ADDRESS", "0"),
    ("RATE_LIMIT_QUERIES_PER_ADDRESS", "0"),
];

/// Where a benchmark runs: the PostgreSQL server it makes its own database
/// on, and the Kafka cluster (an in-process mock when unset).
#[derive(Debug, clap::Args)]
pub struct Servers {
    /// PostgreSQL server (a role allowed to CREATE DATABASE); the benchmark
    /// creates and drops its own database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Kafka bootstrap servers; an in-process mock cluster when unset.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
}

/// An HS256 token for `role`/`sub`, valid for a day.
pub fn mint_token(secret: &str, role: &str, sub: &str) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": sub, "role": role, "iat": now, "exp": now + 24 * 3600 });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// The `POST /v1/orders` body every benchmark places: two burgers and fries
/// at the seed Berlin restaurant, paid by card, with a tip.
pub fn place_order_body() -> Value {
    json!({
        "restaurant_id": seed_ids::BERLIN_BURGERS,
        "items": [
            { "menu_item_id": seed_ids::menu_item(1, 1), "quantity": 2 },
            { "menu_item_id": seed_ids::menu_item(1, 3), "quantity": 1 }
        ],
        "delivery_address": {
            "street": "Oranienstraße 25", "city": "Berlin", "postal_code": "10999",
            "location": { "lat": 52.5003, "lon": 13.4215 }
        },
        "payment_method": { "kind": "card", "card_token": "tok_visa" },
        "tip_minor": 150
    })
}

/// The real `ordertrail-api` binary as a child process on a free loopback
/// port, rate limits off, killed when dropped.
pub struct ApiProcess {
    /// The process.
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Its token secret (for [`mint_token`]).
    pub secret: String,
}

/// Never shows the token secret.
impl std::fmt::Debug for ApiProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiProcess")
            .field("child", &self.child)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Start the API binary (`api_bin`, or the one next to this executable)
/// against `database_url` with a pool of `pool_size`.
pub fn spawn_api(
    api_bin: Option<&std::path::Path>,
    database_url: &str,
    pool_size: u32,
) -> Result<ApiProcess> {
    let secret = format!("bench-secret-{}", uuid::Uuid::new_v4().simple());
    let port = free_port()?;
    let api_bin = match api_bin {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("ordertrail-api"),
    };
    let child = tokio::process::Command::new(&api_bin)
        .env("DATABASE_URL", database_url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", &secret)
        .env("DROPOFF_CODE_KEY", format!("dropoff-{secret}"))
        .env("DATABASE_POOL_SIZE", pool_size.to_string())
        .env("RUST_LOG", "warn")
        .envs(API_WITHOUT_RATE_LIMITS)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", api_bin.display()))?;
    Ok(ApiProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
        secret,
    })
}

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Poll `/health/ready` until the API answers, at most 30 s.
pub async fn wait_ready(client: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API did not become ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A new migrated database next to the one `server` names (optionally with the
/// seed data): `(name, url, pool)`.
pub async fn fresh_database(
    server: &str,
    pool_size: u32,
    seed: bool,
) -> Result<(String, String, PgPool)> {
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(server)
        .await
        .context("connect to DATABASE_URL")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let url = database_url(server, &name)?;
    let pool = ordertrail_platform::db::connect(&url, pool_size).await?;
    ordertrail_platform::db::migrate(&pool).await?;
    if seed {
        ordertrail_launcher::seed::seed(&pool).await?;
    }
    Ok((name, url, pool))
}

/// The URL of database `name` on the server `server` (a `DATABASE_URL`) points at.
pub fn database_url(server: &str, name: &str) -> Result<String> {
    let cut = server.rfind('/').context("DATABASE_URL has no database")?;
    Ok(format!("{}/{name}", &server[..cut]))
}

/// Drop a database made by [`fresh_database`].
pub async fn drop_database(server: &str, name: &str) -> Result<()> {
    let mut admin = PgConnection::connect(server).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// End a benchmark that ran the API binary and a [`ordertrail_launcher::Stack`]
/// on a database of its own: kill the API, stop the stack (a failure is
/// printed, not fatal), close the pool, and drop the database unless `keep`.
pub async fn tear_down(
    mut api: tokio::process::Child,
    stack: ordertrail_launcher::RunningStack,
    pool: PgPool,
    server: &str,
    db_name: &str,
    keep: bool,
) -> Result<()> {
    let _ = api.kill().await;
    if let Err(e) = stack.stop().await {
        eprintln!("{e}");
    }
    pool.close().await;
    if !keep {
        drop_database(server, db_name).await?;
    }
    Ok(())
}

/// Microseconds as milliseconds, for printing.
pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The binary `ordertrail-<name>` beside the running one (same profile).
pub fn projector_binary(name: &str) -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("binary directory")?
        .join(format!("ordertrail-{name}"));
    if !path.exists() {
        bail!(
            "{} not found: build the projector binaries in the same profile",
            path.display()
        );
    }
    Ok(path)
}

/// Log to stderr at `default` level unless `RUST_LOG` says otherwise.
pub fn init_tracing(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .init();
}

/// A copy of a histogram the load tasks record into.
pub fn snapshot(
    histogram: &std::sync::Mutex<hdrhistogram::Histogram<u64>>,
) -> Result<hdrhistogram::Histogram<u64>> {
    Ok(histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone())
}
