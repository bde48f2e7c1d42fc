//! Logging and metrics set-up, one builder for every binary.

use std::net::SocketAddr;

use tracing_subscriber::EnvFilter;

/// Log format chosen by `LOG_FORMAT` (`json` or `pretty`, default pretty).
/// Level from `RUST_LOG` (default `info`). Logs go to stderr.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
    let json = std::env::var("LOG_FORMAT")
        .map(|f| f == "json")
        .unwrap_or(false);
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
