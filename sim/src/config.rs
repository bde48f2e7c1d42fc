//! The simulator's flags (each also an environment variable).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use ordertrail_platform::process::LogArgs;

/// How the figures are shown while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Display {
    /// A live view redrawn in place on a terminal, else one line per interval.
    Auto,
    /// The live view, redrawn in place.
    Live,
    /// One line per interval.
    Lines,
    /// Nothing while running (the summary is still printed).
    Off,
}

/// Drives a lunch rush through the Ordertrail API.
///
/// Customers place orders, restaurants accept and prepare them, riders pick
/// them up and deliver them, all through the public API with minted tokens,
/// at a rate that rises to a peak and falls again; prints live figures and a
/// summary (exit 1 if any answer was a server error). The first Ctrl-C stops
/// new orders and lets the ones in flight finish; a second one exits at once.
#[derive(Debug, Clone, Parser)]
#[command(name = "ordertrail-sim", version, next_help_heading = "Simulation")]
pub struct SimConfig {
    #[command(flatten)]
    pub log: LogArgs,
    /// Base URL of the API (without `/v1`).
    #[arg(long, env = "SIM_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api_url: String,
    /// HS256 secret the API verifies tokens with (as for `mint-token`).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// File holding the secret when `JWT_SECRET` is unset (the local stack's).
    #[arg(long, env = "JWT_SECRET_FILE", default_value = ".local/jwt-secret")]
    pub jwt_secret_file: PathBuf,
    /// The issuer the API expects, if any.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The audience the API expects, if any.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The `kid` the API knows the secret by, if any.
    #[arg(long, env = "JWT_SECRET_KID")]
    pub jwt_secret_kid: Option<String>,

    /// Orders per second at the peak of the rush.
    #[arg(long, env = "SIM_PEAK_RATE", default_value_t = 0.5)]
    pub peak_rate: f64,
    /// Seconds of one rush: a tenth of the peak at its start and end, the
    /// peak half-way.
    #[arg(long, env = "SIM_DURATION_SECS", default_value_t = 600.0)]
    pub duration_secs: f64,
    /// Rushes to run one after the other; 0 runs until stopped.
    #[arg(long, env = "SIM_CYCLES", default_value_t = 1)]
    pub cycles: u64,
    /// Simulated minutes per real minute for kitchens and people (a 15-minute
    /// preparation takes 90 s at 10). Riders move at `--rider-kmh` in real time.
    #[arg(long, env = "SIM_TIME_SCALE", default_value_t = 10.0)]
    pub time_scale: f64,
    /// Rider speed in real km/h (the platform refuses fixes implying more than 200).
    #[arg(long, env = "SIM_RIDER_KMH", default_value_t = 90.0,
          value_parser = parse_speed)]
    pub rider_kmh: f64,
    /// Seconds between a moving rider's GPS fixes.
    #[arg(long, env = "SIM_GPS_INTERVAL_SECS", default_value_t = 3.0)]
    pub gps_interval_secs: f64,
    /// Customers live within this many metres of the restaurant they order from.
    #[arg(long, env = "SIM_RADIUS_M", default_value_t = 2_000.0)]
    pub radius_m: f64,
    /// Riders per city (created through the admin API as "Sim rider …").
    #[arg(long, env = "SIM_RIDERS_PER_CITY", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub riders_per_city: u32,
    /// Customers per city (each order picks one at random).
    #[arg(long, env = "SIM_CUSTOMERS_PER_CITY", default_value_t = 300)]
    pub customers_per_city: u32,

    /// Percent of orders paid in cash.
    #[arg(long, env = "SIM_CASH_PCT", default_value_t = 15.0)]
    pub cash_pct: f64,
    /// Percent of orders with a card the provider declines.
    #[arg(long, env = "SIM_DECLINE_PCT", default_value_t = 6.0)]
    pub decline_pct: f64,
    /// Percent of orders with a card that fails transiently once or twice.
    #[arg(long, env = "SIM_FLAKY_PCT", default_value_t = 6.0)]
    pub flaky_pct: f64,
    /// Percent of customers who cancel right after ordering.
    #[arg(long, env = "SIM_CANCEL_PCT", default_value_t = 4.0)]
    pub cancel_pct: f64,
    /// Percent of orders the restaurant rejects.
    #[arg(long, env = "SIM_REJECT_PCT", default_value_t = 5.0)]
    pub reject_pct: f64,
    /// Percent of orders the restaurant never answers (the platform's
    /// accept timeout cancels them).
    #[arg(long, env = "SIM_IGNORE_PCT", default_value_t = 1.0)]
    pub ignore_pct: f64,
    /// Percent of hand-overs where the rider first types a wrong drop-off code.
    #[arg(long, env = "SIM_WRONG_CODE_PCT", default_value_t = 8.0)]
    pub wrong_code_pct: f64,
    /// Percent of hand-overs where every attempt is wrong and the rider
    /// gives up (the delivery fails, the order is cancelled).
    #[arg(long, env = "SIM_CODE_LOST_PCT", default_value_t = 1.0)]
    pub code_lost_pct: f64,

    /// Milliseconds between a customer's looks at a new order (placed →
    /// confirmed is measured with this resolution).
    #[arg(long, env = "SIM_CONFIRM_POLL_MS", default_value_t = 200)]
    pub confirm_poll_ms: u64,
    /// Milliseconds between other looks at an order.
    #[arg(long, env = "SIM_POLL_MS", default_value_t = 1_000)]
    pub poll_ms: u64,
    /// Seconds to wait for an order to reach a state the flow expects
    /// (confirmation, a delivery to assign, the final state) before the
    /// order is counted as waiting on the platform's timers.
    #[arg(long, env = "SIM_STAGE_TIMEOUT_SECS", default_value_t = 900)]
    pub stage_timeout_secs: u64,
    /// Seconds, after the last rush, for the orders in flight to finish.
    #[arg(long, env = "SIM_DRAIN_TIMEOUT_SECS", default_value_t = 1_800)]
    pub drain_timeout_secs: u64,
    /// Most orders in flight at once (arrivals beyond are skipped and counted).
    #[arg(long, env = "SIM_MAX_IN_FLIGHT", default_value_t = 5_000)]
    pub max_in_flight: usize,
    /// Seconds to wait for the API to answer `/health/ready` at start.
    #[arg(long, env = "SIM_READY_TIMEOUT_SECS", default_value_t = 120)]
    pub ready_timeout_secs: u64,
    /// When the API is on a loopback address, spread the simulated users over
    /// this many source addresses (127.0.0.x), as their phones would have;
    /// 1 sends everything from one address (and meets the per-address limits).
    #[arg(long, env = "SIM_SOURCE_ADDRESSES", default_value_t = 32)]
    pub source_addresses: u8,

    /// The relay's Prometheus endpoint (`http://host:port/metrics`), for its lag.
    #[arg(long, env = "SIM_RELAY_METRICS_URL")]
    pub relay_metrics_url: Option<String>,
    /// Live view, lines, or nothing while running.
    #[arg(long, env = "SIM_DISPLAY", value_enum, default_value_t = Display::Auto)]
    pub display: Display,
    /// Seconds between two updates of the view (or two lines).
    #[arg(long, env = "SIM_REPORT_SECS", default_value_t = 1.0)]
    pub report_secs: f64,
}

/// A secret flag value: its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (1.0..=180.0).contains(&v) {
        Ok(v)
    } else {
        Err("rider speed must be 1..=180 km/h (the platform refuses more than 200)".into())
    }
}

impl SimConfig {
    /// The token secret: the flag / `JWT_SECRET`, else the secret file.
    pub fn secret(&self) -> Result<String, String> {
        if let Some(s) = self
            .jwt_secret
            .as_ref()
            .map(Secret::expose)
            .filter(|s| !s.is_empty())
        {
            return Ok(s.to_owned());
        }
        std::fs::read_to_string(&self.jwt_secret_file)
            .map(|s| s.trim().to_owned())
            .map_err(|e| {
                format!(
                    "no JWT_SECRET and cannot read {}: {e}",
                    self.jwt_secret_file.display()
                )
            })
    }

    /// Real time for `minutes` of simulated kitchen or human time.
    pub fn sim_minutes(&self, minutes: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64((minutes * 60.0 / self.time_scale.max(0.01)).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::SimConfig;

    #[test]
    fn debug_never_shows_the_jwt_secret() {
        let config =
            SimConfig::try_parse_from(["ordertrail-sim", "--jwt-secret", "s3cret-value"]).unwrap();
        assert_eq!(config.secret().unwrap(), "s3cret-value");
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret-value"), "{printed}");
        assert!(
            printed.contains("jwt_secret: Some(<redacted>)"),
            "{printed}"
        );
    }
}
