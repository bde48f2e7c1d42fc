//! `ordertrail-local`: the README's first command ends here.
//!
//! It migrates the database and loads the seed data, hosts librdkafka's mock
//! cluster as an embedded Kafka-protocol broker when `KAFKA_BROKERS` is not set
//! (and creates the topics on it, since the mock has no CreateTopics API), then
//! starts every service as its own process — API, relay, saga, projectors —
//! with the broker address and database URL in their environment, restarts a
//! process that dies, and stops them all on Ctrl-C / SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use clap::Parser;
use ordertrail_launcher::processes::{self, Processes, Service};
use ordertrail_launcher::{Prepared, Seed, Stack};
use tokio::process::Command;

/// Runs the Ordertrail platform locally.
#[derive(Parser)]
#[command(version)]
struct Config {
    /// PostgreSQL URL (scripts/run.sh provisions a private server and sets it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Kafka bootstrap servers; when unset an embedded broker is hosted here.
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Topic prefix shared by the relay and the consumers.
    #[arg(long, env = "TOPIC_PREFIX", default_value = ordertrail_schemas::topics::DEFAULT_PREFIX)]
    topic_prefix: String,
    /// Partitions per topic.
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 6)]
    topic_partitions: i32,
    /// Address the API listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    listen_addr: String,
    /// HS256 secret for API tokens; read from this file (created with a random
    /// secret when missing) so `scripts/token.sh` can mint tokens.
    #[arg(long, env = "JWT_SECRET_FILE", default_value = ".local/jwt-secret")]
    jwt_secret_file: PathBuf,
    /// Do not load the demo data set (`ordertrail_launcher::seed`).
    #[arg(long)]
    no_seed: bool,
    /// Be a migrate job: migrate, load the demo data set into an empty
    /// catalog (unless `--no-seed`), create the topics on the embedded broker
    /// when one is hosted, and exit instead of starting the services (the
    /// `migrate` service in compose.yaml, scripts/schemathesis.sh).
    #[arg(long)]
    prepare_only: bool,
    /// The lunch-rush simulator (`ordertrail-sim`, a gentle rush that
    /// repeats; its `SIM_*` variables tune it): `on` or `off`.
    #[arg(long, env = "ORDERTRAIL_SIM", default_value = "on", value_parser = ["on", "off"])]
    sim: String,
    /// Do not start the simulator (same as `--sim off`).
    #[arg(long)]
    no_sim: bool,
    /// Fault drills (scripts/chaos.sh): while this file exists, the embedded
    /// broker's brokers are down; removing it brings them back.
    #[arg(long, env = "ORDERTRAIL_BROKER_DOWN_FILE")]
    broker_down_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    ordertrail_platform::telemetry::init("ordertrail-local");
    let config = Config::parse();
    let bin_dir = processes::own_directory()?;

    let stack = Stack::connect(&config.database_url, 4)
        .kafka(config.kafka_brokers.clone().unwrap_or_default())
        .topic_prefix(&config.topic_prefix)
        .partitions(config.topic_partitions)
        .seed(if config.no_seed {
            Seed::Skip
        } else {
            Seed::IfEmpty
        });
    // Keep the embedded broker alive for the whole run.
    let Prepared {
        pool,
        brokers,
        mock,
    } = stack.prepare().await?;
    pool.close().await;
    if config.prepare_only {
        tracing::info!("migrated and seeded; exiting (--prepare-only)");
        drop(mock);
        return Ok(());
    }
    let secret = jwt_secret(&config.jwt_secret_file)?;
    // The drop-off code key: DROPOFF_CODE_KEY, or derived from the local
    // token secret one way (SHA-256), so the key never reveals the secret.
    let dropoff_code_key = std::env::var("DROPOFF_CODE_KEY")
        .ok()
        .filter(|k| k.len() >= 16)
        .unwrap_or_else(|| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(format!("dropoff-code-key\0{secret}")))
        });

    let common = vec![
        ("DATABASE_URL".to_owned(), config.database_url.clone()),
        ("KAFKA_BROKERS".to_owned(), brokers.clone()),
        ("TOPIC_PREFIX".to_owned(), config.topic_prefix.clone()),
        (
            "TOPIC_PARTITIONS".to_owned(),
            config.topic_partitions.to_string(),
        ),
    ];
    let with = |extra: &[(&str, String)]| {
        let mut env = common.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    let sim = config.sim == "on" && !config.no_sim;
    // With the simulator, the relay serves metrics so the simulator can show its lag.
    let relay_metrics = if sim {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free port for the relay's metrics")?
            .port();
        vec![("METRICS_ADDR", format!("127.0.0.1:{port}"))]
    } else {
        Vec::new()
    };
    let mut services = vec![
        Service {
            name: "api",
            binary: "ordertrail-api",
            env: with(&[
                ("LISTEN_ADDR", config.listen_addr.clone()),
                ("JWT_SECRET", secret.clone()),
                ("DROPOFF_CODE_KEY", dropoff_code_key.clone()),
            ]),
        },
        Service {
            name: "relay",
            binary: "ordertrail-relay",
            env: with(&relay_metrics),
        },
        Service {
            name: "saga",
            binary: "ordertrail-saga",
            env: with(&[("DROPOFF_CODE_KEY", dropoff_code_key.clone())]),
        },
        Service {
            name: "order-history",
            binary: "ordertrail-order-history",
            env: with(&[]),
        },
        Service {
            name: "rider-etas",
            binary: "ordertrail-rider-etas",
            env: with(&[]),
        },
        Service {
            name: "settlements",
            binary: "ordertrail-settlements",
            env: with(&[]),
        },
    ];
    if let Some((_, addr)) = relay_metrics.first() {
        // First, so Ctrl-C stops it while the API still answers.
        services.insert(
            0,
            Service {
                name: "sim",
                binary: "ordertrail-sim",
                env: with(&[
                    ("SIM_API_URL", format!("http://{}", config.listen_addr)),
                    ("JWT_SECRET", secret.clone()),
                    ("SIM_RELAY_METRICS_URL", format!("http://{addr}/metrics")),
                    ("SIM_CYCLES", env_or("SIM_CYCLES", "0")),
                    ("SIM_DISPLAY", env_or("SIM_DISPLAY", "lines")),
                    ("SIM_REPORT_SECS", env_or("SIM_REPORT_SECS", "30")),
                    // On Ctrl-C: 5 s for the orders in flight; the next start
                    // closes what is left.
                    (
                        "SIM_DRAIN_TIMEOUT_SECS",
                        env_or("SIM_DRAIN_TIMEOUT_SECS", "5"),
                    ),
                ]),
            },
        );
    }
    let children = Processes::spawn(&bin_dir, services)?;
    let console_token = mint_console_token(&bin_dir, &secret).await;
    println!();
    println!("Ordertrail is running.");
    println!("  API:      http://{}/v1", config.listen_addr);
    println!("  API docs: http://{}/v1/docs", config.listen_addr);
    match console_token {
        Some(token) => println!(
            "  Console:  http://{}/console/#token={token}   (one click: signed in as ops for 12 h)",
            config.listen_addr
        ),
        None => println!(
            "  Console:  http://{}/console/   (sign in with scripts/token.sh ops ops-1)",
            config.listen_addr
        ),
    }
    println!(
        "  Kafka:    {brokers}{}",
        if config.kafka_brokers.is_none() {
            " (embedded broker)"
        } else {
            ""
        }
    );
    println!(
        "  Tokens:   scripts/token.sh ops ops-1   (roles: customer restaurant rider ops admin)"
    );
    if sim {
        println!(
            "  Simulator: a gentle lunch rush (ordertrail-sim; --no-sim or ORDERTRAIL_SIM=off turns it off)"
        );
    }
    println!("Press Ctrl-C to stop.");

    children
        .supervise(
            ordertrail_platform::shutdown::signal(),
            mock.as_ref(),
            config.broker_down_file.as_deref(),
        )
        .await
}

/// An environment variable's value, or `default` when unset.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// An ops token for the console's one-click local sign-in, minted by the
/// API's own `mint-token` (so it follows the API's token rules).
async fn mint_console_token(bin_dir: &Path, secret: &str) -> Option<String> {
    let output = Command::new(bin_dir.join("mint-token"))
        .args(["--role", "ops", "--sub", "ops-console", "--ttl", "43200"])
        .env("JWT_SECRET", secret)
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    let token = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !token.is_empty()).then_some(token)
}

/// The local token secret: read from the file, or created there (mode 0600).
fn jwt_secret(path: &Path) -> Result<String> {
    if let Ok(secret) = std::env::var("JWT_SECRET")
        && !secret.is_empty()
    {
        return Ok(secret);
    }
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= 32 {
            return Ok(existing);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("read /dev/urandom")?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, &secret).with_context(|| format!("write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restrict {}", path.display()))?;
    }
    Ok(secret)
}
