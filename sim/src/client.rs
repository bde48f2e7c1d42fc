//! The HTTP side: one token per simulated person, requests with retries
//! that are safe (a command keeps its `Idempotency-Key` across retries),
//! and every answer counted by status and error code.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ordertrail_api::AuthConfig;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::SimError;
use crate::config::SimConfig;
use crate::stats::Stats;

/// Who is calling: the token's role and subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    pub role: &'static str,
    pub subject: String,
}

impl Actor {
    pub fn customer(id: Uuid) -> Self {
        Self {
            role: "customer",
            subject: id.to_string(),
        }
    }
    pub fn restaurant(id: Uuid) -> Self {
        Self {
            role: "restaurant",
            subject: id.to_string(),
        }
    }
    pub fn rider(id: Uuid) -> Self {
        Self {
            role: "rider",
            subject: id.to_string(),
        }
    }
    pub fn ops() -> Self {
        Self {
            role: "ops",
            subject: "sim-ops".into(),
        }
    }
    pub fn admin() -> Self {
        Self {
            role: "admin",
            subject: "sim-admin".into(),
        }
    }
}

/// An answer from the API.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The error `code`, or empty for a success.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// The API could not be reached (or kept answering 429/503) for too long.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

const TOKEN_TTL_SECS: i64 = 3_600;
/// Re-mint a token this long before it expires.
const TOKEN_REFRESH: Duration = Duration::from_secs(600);
/// How long one request keeps being retried (transport errors, 429, 503).
const RETRY_FOR: Duration = Duration::from_secs(120);

pub struct Api {
    base: String,
    clients: Vec<Client>,
    auth: AuthConfig,
    tokens: Mutex<HashMap<Actor, (String, Instant)>>,
    stats: Arc<Stats>,
}

/// Shows the base URL only: never the signing key or the minted tokens.
impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(config: &SimConfig, stats: Arc<Stats>) -> Result<Self, SimError> {
        let secret = config.secret().map_err(SimError::Config)?;
        if secret.len() < 16 {
            return Err(SimError::Config(
                "the JWT secret must be at least 16 bytes".into(),
            ));
        }
        let auth = AuthConfig::new(secret.as_bytes(), config.jwt_issuer.clone())
            .with_audience(config.jwt_audience.clone())
            .with_signing_kid(config.jwt_secret_kid.clone());
        let base = config.api_url.trim_end_matches('/').to_owned();
        let builder = || {
            Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_idle_timeout(Duration::from_secs(30))
        };
        let build = |b: reqwest::ClientBuilder| {
            b.build()
                .map_err(|e| SimError::Config(format!("HTTP client: {e}")))
        };
        let mut clients = Vec::new();
        if config.source_addresses > 1 && is_loopback(&base) {
            for i in 0..config.source_addresses {
                let addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10u8.saturating_add(i)));
                clients.push(build(builder().local_address(addr))?);
            }
        } else {
            clients.push(build(builder())?);
        }
        Ok(Self {
            base,
            clients,
            auth,
            tokens: Mutex::new(HashMap::new()),
            stats,
        })
    }

    /// Wait until `/health/ready` answers 200. When the spread source
    /// addresses cannot connect (not Linux loopback), fall back to one.
    pub async fn wait_ready(self: &Arc<Self>, timeout: Duration) -> Result<(), SimError> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/health/ready", self.base);
        loop {
            let mut any = false;
            for client in &self.clients {
                if let Ok(r) = client.get(&url).send().await
                    && r.status().is_success()
                {
                    any = true;
                    break;
                }
            }
            if any {
                // Check every spread address once; an unusable one means none are.
                let mut all = true;
                for client in &self.clients {
                    all &= client.get(&url).send().await.is_ok();
                }
                if !all {
                    return Err(SimError::Config(
                        "cannot connect from 127.0.0.x source addresses: pass --source-addresses 1"
                            .into(),
                    ));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SimError::ApiNotReady {
                    url: self.base.clone(),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn token(&self, actor: &Actor) -> Result<String, Unreachable> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, minted)) = tokens.get(actor)
            && minted.elapsed() + TOKEN_REFRESH < Duration::from_secs(TOKEN_TTL_SECS as u64)
        {
            return Ok(token.clone());
        }
        let token = self
            .auth
            .mint(actor.role, &actor.subject, TOKEN_TTL_SECS)
            .map_err(|e| Unreachable(format!("minting a {} token: {e}", actor.role)))?;
        tokens.insert(actor.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }

    fn client_for(&self, actor: &Actor) -> &Client {
        let hash = actor
            .subject
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.clients[hash % self.clients.len()]
    }

    /// A command (`POST`/`PUT`) with its own `Idempotency-Key`, kept across retries.
    pub async fn command(
        &self,
        actor: &Actor,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Answer, Unreachable> {
        let key = Uuid::now_v7().to_string();
        self.send(actor, method, path, Some((body, key))).await
    }

    /// `POST` a command.
    pub async fn post(
        &self,
        actor: &Actor,
        path: &str,
        body: Value,
    ) -> Result<Answer, Unreachable> {
        self.command(actor, Method::POST, path, body).await
    }

    /// A query (`GET`).
    pub async fn get(&self, actor: &Actor, path: &str) -> Result<Answer, Unreachable> {
        self.send(actor, Method::GET, path, None).await
    }

    async fn send(
        &self,
        actor: &Actor,
        method: Method,
        path: &str,
        body: Option<(Value, String)>,
    ) -> Result<Answer, Unreachable> {
        let url = format!("{}{path}", self.base);
        let is_command = body.is_some();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let token = self.token(actor)?;
            let mut request = self
                .client_for(actor)
                .request(method.clone(), &url)
                .bearer_auth(token);
            if let Some((json, key)) = &body {
                request = request.header("idempotency-key", key).json(json);
            }
            let sent = Instant::now();
            let result = request.send().await;
            let (retry_after, outcome) = match result {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let bytes = response.bytes().await.unwrap_or_default();
                    let elapsed = sent.elapsed();
                    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let answer = Answer { status, body };
                    self.stats.answer(is_command, &answer, elapsed);
                    if status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::SERVICE_UNAVAILABLE
                    {
                        (
                            Some(Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 10))),
                            Ok(answer),
                        )
                    } else {
                        return Ok(answer);
                    }
                }
                Err(e) => {
                    self.stats.transport_error();
                    (None, Err(Unreachable(format!("{method} {path}: {e}"))))
                }
            };
            if started.elapsed() > RETRY_FOR {
                return outcome;
            }
            let pause = retry_after.unwrap_or(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            tokio::time::sleep(pause).await;
        }
    }

    /// The relay's lag (events, seconds) from its Prometheus endpoint.
    pub async fn relay_lag(&self, metrics_url: &str) -> Option<(f64, f64)> {
        let text = self.clients[0]
            .get(metrics_url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let value = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        Some((
            value("ordertrail_relay_lag_events")?,
            value("ordertrail_relay_lag_seconds").unwrap_or(0.0),
        ))
    }
}

fn is_loopback(base: &str) -> bool {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or(base)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "localhost" || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_urls_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://localhost:8080/"));
        assert!(!is_loopback("http://10.0.0.5:8080"));
        assert!(!is_loopback("https://api.example.com"));
    }
}
