//! Ordertrail's HTTP API (axum): the write side's command endpoints under
//! `/v1`, the reference-data admin endpoints, JWT auth, the error contract,
//! the OpenAPI document and its docs page, and health checks.
//!
//! Thin by design: handlers parse the request, check the token's role, run
//! one use case from [`ordertrail_commands::workflows`] (which checks
//! ownership against the aggregate's state and lets the domain decide) and
//! answer. No business rule lives here.
//!
//! Layout:
//! - [`app`] builds the router shared by `main` and the tests.
//! - [`auth`]: tokens, [`auth::AuthUser`] and role-typed [`auth::Authorized`].
//! - [`error`]: [`error::ApiError`] and the one code → status table.
//! - [`extract`]: body/path extractors that answer bad input with `ApiError`s.
//! - [`routes`]: one module per resource; each exposes `router()`, merged in
//!   [`app`]. Query routes join the same way (one `.merge()` line).
//! - [`docs`]: the OpenAPI document and the self-hosted Swagger UI.
//! - [`limits`]: per-subject and per-address rate limits, the CORS allowlist.
//!
//! May depend on `commands`, `schemas` and `platform` (not on `domain`: the
//! workflows speak the contract's vocabulary); never on
//! `projections` internals beyond their public query functions.

pub mod auth;
pub mod docs;
pub mod error;
pub mod extract;
pub mod limits;
pub mod routes;
pub mod stream;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use limits::{RateLimiter, RateLimits};
use ordertrail_commands::service::CommandService;
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::{AuthConfig, AuthUser, Authorized};
pub use error::ApiError;

/// Default request body limit: 64 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a handler may use.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub commands: CommandService,
    pub pool: PgPool,
    pub auth: AuthConfig,
    /// Request bodies above this are answered with 413 `payload_too_large`.
    pub max_body_bytes: usize,
    /// This replica's rate limits (off unless configured).
    pub rate_limiter: RateLimiter,
    /// Origins browsers may call the API from (CORS); empty: none.
    pub cors_origins: Vec<HeaderValue>,
    /// The live event feed behind the SSE streams (started by the first subscriber).
    pub feed: stream::Feed,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("commands", &self.commands)
            .field("auth", &self.auth)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("rate_limiter", &self.rate_limiter)
            .field("cors_origins", &self.cors_origins)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(commands: CommandService, auth: AuthConfig) -> Self {
        let pool = commands.pool().clone();
        Self {
            commands,
            pool: pool.clone(),
            auth,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rate_limiter: RateLimiter::new(RateLimits::OFF),
            cors_origins: Vec::new(),
            feed: stream::Feed::new(pool.clone()),
        }
    }

    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limiter = RateLimiter::new(limits);
        self
    }

    pub fn with_cors_origins(mut self, origins: Vec<HeaderValue>) -> Self {
        self.cors_origins = origins;
        self
    }

    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let max_body = state.max_body_bytes;
    let cors = limits::cors(&state.cors_origins);
    let rate_limit = middleware::from_fn_with_state(state.clone(), limits::rate_limit);
    Router::new()
        .merge(routes::orders::router())
        .merge(routes::payments::router())
        .merge(routes::deliveries::router())
        .merge(routes::reference_data::router())
        .merge(routes::queries::router())
        .merge(routes::replay::router())
        .merge(routes::audit::router())
        .merge(routes::streams::router())
        .merge(routes::console::router())
        .merge(routes::health::router())
        .merge(docs::router())
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .merge(docs::assets())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(rate_limit)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!(
                        "http",
                        method = %req.method(),
                        path = %req.uri().path(),
                        request_id = %extract::request_id(req.headers()),
                        status = tracing::field::Empty,
                        latency_ms = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, span: &tracing::Span| {
                    span.record("status", res.status().as_u16());
                    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
                    tracing::info!("request finished");
                })
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(drop_unusable_request_id))
        .layer(cors)
}

/// Longest client-sent `x-request-id` kept (it is stored in event metadata).
const MAX_REQUEST_ID_LEN: usize = 128;

/// A client's `x-request-id` that is too long or not visible ASCII is
/// dropped, so the server assigns a fresh one.
async fn drop_unusable_request_id(mut req: Request, next: Next) -> Response {
    let usable = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter().all(|c| (0x21..=0x7e).contains(c))
    };
    if req
        .headers()
        .get(extract::REQUEST_ID)
        .is_some_and(|v| !usable(v))
    {
        req.headers_mut().remove(extract::REQUEST_ID);
    }
    next.run(req).await
}
