//! The back-office web console at `/console`: plain HTML, CSS and JavaScript
//! compiled into the binary (`api/console/`), nothing fetched from any other
//! host. It signs in with a pasted token (ops, admin or auditor; kept in the
//! tab's `sessionStorage`) and calls the same `/v1` routes as everyone else,
//! so every page is subject to the API's roles.
//!
//! Also `GET /v1/relay/status`, the relay's checkpoint and lag, for the
//! console's health page.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use ordertrail_platform::event_log::{self, Position};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::queries::QueryErrors;
use crate::AppState;
use crate::auth::{Authorized, StaffOrAuditor};
use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("../../console/index.html");
const CONSOLE_JS: &str = include_str!("../../console/console.js");
const CONSOLE_CSS: &str = include_str!("../../console/console.css");

/// Only this origin, no inline script or style, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }),
        )
        .route("/v1/relay/status", get(relay_status))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Debug, OpenApi)]
#[openapi(paths(relay_status), components(schemas(RelayStatus, RelayStatusList)))]
pub struct ConsoleDoc;

/// One relay's checkpoint and how far it is behind the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct RelayStatus {
    /// The checkpoint's name (the topic prefix unless configured otherwise).
    pub relay_name: String,
    /// Published up to this commit-order position (`<transaction>-<position>`).
    pub position: String,
    /// When the checkpoint last moved.
    pub updated_at: DateTime<Utc>,
    /// Committed events after the checkpoint.
    pub events_behind: i64,
    /// Age of the oldest of those events, seconds.
    pub seconds_behind: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RelayStatusList {
    pub items: Vec<RelayStatus>,
}

/// Every relay's checkpoint and lag behind the event store (ops, admin, auditor).
#[utoipa::path(
    get, path = "/v1/relay/status", tag = "queries",
    responses((status = 200, description = "Relay checkpoints and lag", body = RelayStatusList), QueryErrors),
    security(("bearer" = []))
)]
pub async fn relay_status(
    State(state): State<AppState>,
    _user: Authorized<StaffOrAuditor>,
) -> Result<Json<RelayStatusList>, ApiError> {
    let rows: Vec<(String, i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT relay_name, transaction_id::text::bigint, global_position, updated_at
         FROM relay_checkpoints ORDER BY relay_name",
    )
    .fetch_all(&state.pool)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for (relay_name, transaction_id, global_position, updated_at) in rows {
        let position = Position {
            transaction_id: transaction_id.unsigned_abs(),
            global_position,
        };
        let lag = event_log::lag(&state.pool, position).await?;
        items.push(RelayStatus {
            relay_name,
            position: format!("{}-{}", position.transaction_id, position.global_position),
            updated_at,
            events_behind: lag.events,
            seconds_behind: lag.seconds,
        });
    }
    Ok(Json(RelayStatusList { items }))
}
