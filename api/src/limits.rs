//! Abuse limits: request rate limits and the CORS allowlist.
//!
//! Rate limits are token buckets kept in this process, one per caller and
//! class of request:
//! - per subject (the `sub` of a valid bearer token) and per client address
//!   (the TCP peer, or the first `X-Forwarded-For` entry when the API runs
//!   behind a trusted proxy), each checked on every request;
//! - commands (`POST`, `PUT`, `PATCH`, `DELETE`) and queries (`GET`, `HEAD`)
//!   have separate budgets.
//!
//! A request over a budget is answered 429 `rate_limited` with `Retry-After`
//! (whole seconds) and appends nothing. The buckets live in one API replica:
//! with N replicas behind a load balancer a caller gets up to N times the
//! budget. Health checks and the docs are not limited.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::AppState;
use crate::error::ApiError;

/// One budget: `per_minute` requests a minute, refilled continuously, with
/// bursts of up to `per_minute`. Zero switches the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_minute: u32,
}

/// The four budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub commands_per_subject: Budget,
    pub queries_per_subject: Budget,
    pub commands_per_address: Budget,
    pub queries_per_address: Budget,
    /// Take the client address from the first `X-Forwarded-For` entry (only
    /// behind a proxy that sets it; otherwise clients could pick their own).
    pub trust_forwarded_for: bool,
}

impl RateLimits {
    /// No limits (the library default; the server binary sets real ones).
    pub const OFF: RateLimits = RateLimits {
        commands_per_subject: Budget { per_minute: 0 },
        queries_per_subject: Budget { per_minute: 0 },
        commands_per_address: Budget { per_minute: 0 },
        queries_per_address: Budget { per_minute: 0 },
        trust_forwarded_for: false,
    };

    fn is_off(&self) -> bool {
        [
            self.commands_per_subject,
            self.queries_per_subject,
            self.commands_per_address,
            self.queries_per_address,
        ]
        .iter()
        .all(|b| b.per_minute == 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Command,
    Query,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Caller {
    Subject(String),
    Address(IpAddr),
    /// No address known (in-process callers such as tests).
    UnknownAddress,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets kept before idle ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// A bucket idle this long is full again: forgetting it changes nothing.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Buckets {
    by_caller: HashMap<(Caller, Class), Bucket>,
    /// When idle buckets were last dropped (at most once per [`IDLE`], so a
    /// crowd of callers does not make every request scan the map).
    pruned: Instant,
}

/// The token buckets of one API replica.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Arc<Mutex<Buckets>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Arc::new(Mutex::new(Buckets {
                by_caller: HashMap::new(),
                pruned: Instant::now(),
            })),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Take one token from each bucket that applies; when one is empty,
    /// take none and return how long until it has one again.
    fn take(&self, keys: &[((Caller, Class), Budget)], now: Instant) -> Result<(), Duration> {
        let mut guard = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let state = &mut *guard;
        if state.by_caller.len() > PRUNE_ABOVE && now.duration_since(state.pruned) >= IDLE {
            state
                .by_caller
                .retain(|_, b| now.duration_since(b.updated) < IDLE);
            state.pruned = now;
        }
        let buckets = &mut state.by_caller;
        let mut wait = Duration::ZERO;
        let mut refilled = Vec::with_capacity(keys.len());
        for (key, budget) in keys {
            let capacity = f64::from(budget.per_minute);
            let per_second = capacity / 60.0;
            let mut bucket = buckets.get(key).copied().unwrap_or(Bucket {
                tokens: capacity,
                updated: now,
            });
            let elapsed = now.duration_since(bucket.updated).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
            bucket.updated = now;
            if bucket.tokens < 1.0 {
                wait = wait.max(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second));
            }
            refilled.push((key.clone(), bucket));
        }
        let allowed = wait.is_zero();
        for (key, mut bucket) in refilled {
            if allowed {
                bucket.tokens -= 1.0;
            }
            buckets.insert(key, bucket);
        }
        if allowed { Ok(()) } else { Err(wait) }
    }
}

fn class_of(method: &Method) -> Class {
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        Class::Query
    } else {
        Class::Command
    }
}

/// Paths no limit applies to: health checks and the API documentation.
fn exempt(path: &str) -> bool {
    path.starts_with("/health/") || path.starts_with("/v1/docs") || path == "/v1/openapi.json"
}

fn client_address(req: &Request, trust_forwarded_for: bool) -> Caller {
    if trust_forwarded_for
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return Caller::Address(ip);
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(Caller::UnknownAddress, |c| Caller::Address(c.0.ip()))
}

/// The middleware: verifies the bearer token once (the [`crate::AuthUser`]
/// extractor reuses the result), then charges the caller's buckets.
pub async fn rate_limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let limiter = &state.rate_limiter;
    if limiter.limits.is_off() || exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let class = class_of(req.method());
    let limits = limiter.limits;
    let (per_subject, per_address) = match class {
        Class::Command => (limits.commands_per_subject, limits.commands_per_address),
        Class::Query => (limits.queries_per_subject, limits.queries_per_address),
    };
    let mut keys = Vec::with_capacity(2);
    if per_address.per_minute > 0 {
        keys.push((
            (client_address(&req, limits.trust_forwarded_for), class),
            per_address,
        ));
    }
    if let Ok(user) = state.auth.user_of(req.headers()) {
        if per_subject.per_minute > 0 {
            keys.push(((Caller::Subject(user.subject.clone()), class), per_subject));
        }
        req.extensions_mut().insert(user);
    }
    match limiter.take(&keys, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let seconds = wait.as_secs().saturating_add(1);
            tracing::info!(retry_after = seconds, "rate limited");
            ApiError::new(
                "rate_limited",
                "too many requests; retry after `Retry-After` seconds",
            )
            .with_details(serde_json::json!({ "retry_after_seconds": seconds }))
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
            .into_response()
        }
    }
}

/// The CORS policy: browsers on these origins may call the API (with a
/// bearer token, never cookies); every other origin gets no CORS headers,
/// so browsers refuse it. An empty list allows no cross-origin caller.
pub fn cors(allowed_origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed_origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("idempotent-replayed"),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600))
}

/// Parse a comma-separated origin list (`https://a.example,https://b.example`).
pub fn parse_origins(list: &str) -> Result<Vec<HeaderValue>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let valid = (o.starts_with("https://") || o.starts_with("http://"))
                && !o.ends_with('/')
                && o != "*";
            if !valid {
                return Err(format!(
                    "CORS origin {o:?} must be `scheme://host[:port]` without a trailing slash"
                ));
            }
            HeaderValue::from_str(o).map_err(|e| format!("CORS origin {o:?}: {e}"))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_tell_how_long_to_wait() {
        let limiter = RateLimiter::new(RateLimits::OFF);
        let key = (
            (Caller::Subject("alice".into()), Class::Command),
            Budget { per_minute: 6 },
        );
        let t0 = Instant::now();
        for _ in 0..6 {
            assert!(limiter.take(std::slice::from_ref(&key), t0).is_ok());
        }
        let wait = limiter.take(std::slice::from_ref(&key), t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        // One token every 10 s.
        assert!(
            limiter
                .take(std::slice::from_ref(&key), t0 + Duration::from_secs(10))
                .is_ok()
        );
        assert!(
            limiter
                .take(std::slice::from_ref(&key), t0 + Duration::from_secs(10))
                .is_err()
        );
        // Another caller and another class have their own buckets.
        let other = (
            (Caller::Subject("bob".into()), Class::Command),
            Budget { per_minute: 6 },
        );
        assert!(limiter.take(std::slice::from_ref(&other), t0).is_ok());
        let query = (
            (Caller::Subject("alice".into()), Class::Query),
            Budget { per_minute: 6 },
        );
        assert!(limiter.take(std::slice::from_ref(&query), t0).is_ok());
        // A refused request takes from no bucket.
        let both = [other.clone(), key.clone()];
        assert!(limiter.take(&both, t0 + Duration::from_secs(10)).is_err());
        for _ in 0..5 {
            assert!(limiter.take(std::slice::from_ref(&other), t0).is_ok());
        }
    }

    #[test]
    fn origins_parse_strictly() {
        assert_eq!(
            parse_origins("https://a.example, http://localhost:3000")
                .unwrap()
                .len(),
            2
        );
        assert!(parse_origins("").unwrap().is_empty());
        assert!(parse_origins("*").is_err());
        assert!(parse_origins("https://a.example/").is_err());
        assert!(parse_origins("a.example").is_err());
    }
}
