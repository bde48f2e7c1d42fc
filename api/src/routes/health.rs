//! Liveness and readiness, outside `/v1` and without auth.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can serve: the database answers `SELECT 1`.
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, description = "`dependency_unavailable` (with `Retry-After`): the database does not answer", body = ErrorBody))
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, sqlx::query("SELECT 1").execute(&state.pool)).await {
        Ok(Ok(_)) => {
            ordertrail_platform::db::mark_available();
            Ok(Json(Health { status: "ready" }))
        }
        Ok(Err(e)) => {
            ordertrail_platform::db::mark_unavailable(&e);
            Err(ApiError::unavailable(format!("readiness check: {e}")))
        }
        Err(_) => {
            ordertrail_platform::db::mark_unavailable(&"no answer within the readiness time-out");
            Err(ApiError::unavailable(
                "readiness check: database did not answer in time",
            ))
        }
    }
}
