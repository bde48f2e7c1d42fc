//! The skeleton every Ordertrail binary is built on: the shared command-line
//! argument groups, one environment name per setting, the start-up sequence
//! and the migration policy.
//!
//! - Argument groups, used with `#[command(flatten)]`: [`DatabaseArgs`]
//!   (help heading "Database"), [`KafkaArgs`] ("Kafka"), [`MetricsArgs`]
//!   ("Metrics"), [`LogArgs`] ("Logging"). A binary lists them first, in that
//!   order, then its own options under its own heading, so every `--help`
//!   reads the same way. Every setting has one environment name everywhere
//!   ([`env`]).
//! - [`start`]: logging, then the metrics endpoint.
//! - [`DatabaseArgs::connect_service`]: the pool for a long-running service
//!   (an outage is waited out with back-off), then [`schema::wait_until_current`].
//!   [`DatabaseArgs::connect_tool`]: the same for a command-line tool, which
//!   gives up after a while and refuses a schema that is behind.
//! - Migration policy: only the migrate job (`ordertrail-api --migrate-only`,
//!   compose's `migrate` service) and the launcher apply migrations
//!   ([`crate::db::migrate`]). Every other process checks the schema version
//!   at start ([`schema`]) and, while it is behind, waits (readiness false:
//!   `ordertrail_schema_current` 0, nothing served) with a log line naming
//!   the missing migration, instead of migrating or crashing.

mod args;
pub mod schema;

pub use args::{DatabaseArgs, KafkaArgs, LogArgs, LogFormat, MetricsArgs, ServiceArgs};

/// The environment name of every shared setting (one name per setting, the
/// same in every binary, compose.yaml, the launcher and the scripts).
pub mod env {
    /// PostgreSQL URL of the event store and read models.
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// Most connections in the process's pool.
    pub const DATABASE_POOL_SIZE: &str = "DATABASE_POOL_SIZE";
    /// The API's old name of [`DATABASE_POOL_SIZE`], still read when it is unset.
    pub const DATABASE_POOL_SIZE_DEPRECATED: &str = "DB_POOL_SIZE";
    /// Seconds a session may sit idle inside a transaction (0: no limit).
    pub const DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS: &str =
        crate::db::IDLE_IN_TRANSACTION_ENV;
    /// Kafka bootstrap servers.
    pub const KAFKA_BROKERS: &str = "KAFKA_BROKERS";
    /// Topic prefix (`<prefix>.orders`, ...).
    pub const TOPIC_PREFIX: &str = "TOPIC_PREFIX";
    /// Address of the Prometheus endpoint.
    pub const METRICS_ADDR: &str = "METRICS_ADDR";
    /// Log filter (tracing `EnvFilter` syntax).
    pub const RUST_LOG: &str = "RUST_LOG";
    /// Log format, `pretty` or `json`.
    pub const LOG_FORMAT: &str = "LOG_FORMAT";

    /// Every shared name, in help order: what a binary's `--help` must show
    /// for each group it uses.
    pub const DATABASE: &[&str] = &[
        DATABASE_URL,
        DATABASE_POOL_SIZE,
        DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS,
    ];
    /// The Kafka group's names.
    pub const KAFKA: &[&str] = &[KAFKA_BROKERS, TOPIC_PREFIX];
    /// The metrics group's names.
    pub const METRICS: &[&str] = &[METRICS_ADDR];
    /// The logging group's names.
    pub const LOGGING: &[&str] = &[RUST_LOG, LOG_FORMAT];
}

/// Help headings of the shared groups, in the order every binary lists them.
pub mod heading {
    /// [`super::DatabaseArgs`].
    pub const DATABASE: &str = "Database";
    /// [`super::KafkaArgs`].
    pub const KAFKA: &str = "Kafka";
    /// [`super::MetricsArgs`].
    pub const METRICS: &str = "Metrics";
    /// [`super::LogArgs`].
    pub const LOGGING: &str = "Logging";
    /// The groups of a long-running service ([`super::ServiceArgs`]).
    pub const SERVICE: &[&str] = &[DATABASE, KAFKA, METRICS, LOGGING];
    /// The groups of a database tool (audit, reconcile).
    pub const TOOL: &[&str] = &[DATABASE, LOGGING];
}

/// Why a process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting the process needs was not given.
    #[error("set --{flag} or {env}")]
    Missing {
        /// The command-line flag, without `--`.
        flag: &'static str,
        /// Its environment name.
        env: &'static str,
    },
    /// The metrics endpoint could not be served.
    #[error(transparent)]
    Metrics(#[from] crate::telemetry::MetricsError),
    /// The database refused us (bad URL, password, missing database) or a
    /// tool gave up waiting for it.
    #[error("connect to PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    /// A tool found the schema behind this build.
    #[error(transparent)]
    SchemaBehind(#[from] schema::SchemaBehind),
}

/// Start-up of every binary: logging (`service` names the process in the
/// first log line), then the Prometheus endpoint when an address is set.
pub fn start(
    service: &'static str,
    log: &LogArgs,
    metrics: &MetricsArgs,
) -> Result<(), StartError> {
    crate::telemetry::init_with(service, &log.log_filter, log.log_format == LogFormat::Json);
    if let Some(addr) = metrics.metrics_addr {
        crate::telemetry::serve_metrics(addr)?;
    }
    tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
    Ok(())
}

/// Checks a binary's `--help` text: the one-line about and a longer
/// description come first; every shared group the binary uses (`groups`,
/// from [`heading`]) appears under its heading, in the fixed order, showing
/// the environment name of each of its settings; no other shared group
/// appears. Returns what is wrong, one line each (empty: uniform).
pub fn help_problems(help: &str, groups: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: Vec<&str> = help.lines().collect();
    let about = lines.first().is_some_and(|l| !l.trim().is_empty());
    let description = lines.get(1).is_some_and(|l| l.trim().is_empty())
        && lines
            .get(2)
            .is_some_and(|l| !l.trim().is_empty() && !l.starts_with("Usage:"));
    if !about {
        problems.push("no one-line about on the first line".to_owned());
    }
    if !description {
        problems.push("no longer description after the about line".to_owned());
    }
    // Sections: a heading line ("Database:") and the lines up to the next one.
    let mut sections: Vec<(&str, String)> = Vec::new();
    for line in &lines {
        let is_heading = !line.starts_with(' ') && line.ends_with(':') && !line.contains(' ');
        if is_heading {
            sections.push((line.trim_end_matches(':'), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let order = [
        (heading::DATABASE, env::DATABASE),
        (heading::KAFKA, env::KAFKA),
        (heading::METRICS, env::METRICS),
        (heading::LOGGING, env::LOGGING),
    ];
    let mut last = None;
    for (name, names) in order {
        let found = sections.iter().position(|(h, _)| *h == name);
        match (groups.contains(&name), found) {
            (false, Some(_)) => problems.push(format!("unexpected group {name}")),
            (false, None) => {}
            (true, None) => problems.push(format!("no {name} group")),
            (true, Some(at)) => {
                if last.is_some_and(|l| at < l) {
                    problems.push(format!("group {name} out of order"));
                }
                last = Some(at);
                let body = &sections[at].1;
                for env_name in names {
                    let shown = body.contains(&format!("[env: {env_name}]"))
                        || body.contains(&format!("[env: {env_name}="));
                    if !shown {
                        problems.push(format!("{name} group does not show env {env_name}"));
                    }
                }
            }
        }
    }
    problems
}

/// The long `--help` of the binary at `path`, run without any of the shared
/// environment variables set (tests of every crate's binaries check it with
/// [`help_problems`]).
pub fn long_help_of(path: &str) -> std::io::Result<String> {
    let mut command = std::process::Command::new(path);
    command.arg("--help");
    for names in [env::DATABASE, env::KAFKA, env::METRICS, env::LOGGING] {
        for name in names {
            command.env_remove(name);
        }
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "{path} --help exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// [`help_problems`] of each binary's [`long_help_of`], each problem prefixed
/// with the binary's path (empty: every binary reads the same way).
pub fn binaries_help_problems(binaries: &[(&str, &[&str])]) -> Vec<String> {
    let mut problems = Vec::new();
    for (binary, groups) in binaries {
        match long_help_of(binary) {
            Ok(help) => problems.extend(
                help_problems(&help, groups)
                    .into_iter()
                    .map(|p| format!("{binary}: {p}")),
            ),
            Err(e) => problems.push(format!("{binary}: {e}")),
        }
    }
    problems
}
