//! Logging and metrics set-up, one builder for every binary.

use std::net::SocketAddr;

use tracing_subscriber::EnvFilter;

/// The log filter when `RUST_LOG` is unset or cannot be parsed.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,rdkafka=warn";

/// Log format chosen by `LOG_FORMAT` (`json` or `pretty`, default pretty).
/// Level from `RUST_LOG` (default [`DEFAULT_FILTER`]). Logs go to stderr.
/// Binaries with the shared arguments use [`crate::process::start`], which
/// takes the same settings from [`crate::process::LogArgs`].
pub fn init(service: &'static str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_default();
    let json = std::env::var("LOG_FORMAT")
        .map(|f| f.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    init_with(service, &filter, json);
}

/// Install the one subscriber: `filter` in `RUST_LOG` syntax ([`DEFAULT_FILTER`]
/// when empty or unparsable), JSON lines or pretty text, to stderr. A second
/// call in the same process (tests) is a no-op.
pub fn init_with(service: &'static str, filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter)
        .ok()
        .filter(|_| !filter.trim().is_empty())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}

/// Errors installing the Prometheus exporter.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct MetricsError {
    addr: SocketAddr,
    source: metrics_exporter_prometheus::BuildError,
}

/// Serve Prometheus metrics at `http://addr/metrics` and install the global
/// recorder. Call once per process, from inside a tokio runtime.
pub fn serve_metrics(addr: SocketAddr) -> Result<(), MetricsError> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|source| MetricsError { addr, source })
}
