//! Verify a read model against the event store, for ops: a job that
//! rebuilds the model into shadow tables and compares it row by row with the
//! live one (`ordertrail-<projector> verify`), started here and polled.
//!
//! Jobs are rows of `verify_jobs`, so any API replica answers the poll; the
//! job runs in the replica that accepted it. One job per projector runs at a
//! time.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ordertrail_projections::ProjectorKind;
use ordertrail_projections::rider_etas::EtaSettings;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Authorized, Staff, StaffOrAuditor};
use crate::error::{ApiError, CommandErrors};
use crate::extract::{ApiPath, CommandRequest};
use crate::routes::NoBody;
use crate::routes::queries::QueryErrors;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/projectors/{name}/verify", post(start_verify))
        .route("/v1/projectors/verify/{job_id}", get(verify_job))
}

/// The verify routes' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(start_verify, verify_job),
    components(schemas(VerifyJob)),
    tags((name = "replay", description = "Verify read models against the event store."))
)]
#[derive(Debug)]
pub struct ReplayDoc;

/// A verify job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifyJob {
    pub job_id: Uuid,
    pub projector: String,
    /// `running`, `clean`, `differences` or `failed`.
    pub state: String,
    /// The subject who started it.
    pub requested_by: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The report (`differences_total`, the first differences with key and
    /// columns, rows compared, `guard_differences`), or `{ "error": … }`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

fn projector_kind(name: &str) -> Option<ProjectorKind> {
    match name {
        ordertrail_projections::order_history::NAME => Some(ProjectorKind::OrderHistory),
        ordertrail_projections::rider_etas::NAME => {
            Some(ProjectorKind::RiderEtas(EtaSettings::default()))
        }
        ordertrail_projections::settlements::NAME => Some(ProjectorKind::Settlements),
        _ => None,
    }
}

/// Differences listed in a job's result at most.
const MAX_DIFFERENCES: usize = 50;

/// Start verifying one read model (ops, admin). Answers 202 with the job;
/// poll `GET /v1/projectors/verify/{job_id}`.
#[utoipa::path(
    post, path = "/v1/projectors/{name}/verify", tag = "replay",
    params(("name" = String, Path, description = "`order_history`, `rider_etas` or `settlements`"), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = NoBody, description = "Empty or `{}`"),
    responses(
        (status = 202, description = "Verify started", body = VerifyJob),
        CommandErrors,
    ),
    security(("bearer" = []))
)]
pub async fn start_verify(
    State(state): State<AppState>,
    user: Authorized<Staff>,
    ApiPath(name): ApiPath<String>,
    _body: CommandRequest<NoBody>,
) -> Result<(StatusCode, Json<VerifyJob>), ApiError> {
    let Some(kind) = projector_kind(&name) else {
        return Err(ApiError::new(
            "projector_not_found",
            "no projector of that name",
        ));
    };
    let job_id = Uuid::new_v4();
    let requested_by = user.subject.clone();
    let inserted = sqlx::query_as::<_, (DateTime<Utc>,)>(
        "INSERT INTO verify_jobs (job_id, projector, state, requested_by)
         VALUES ($1, $2, 'running', $3) RETURNING started_at",
    )
    .bind(job_id)
    .bind(&name)
    .bind(&requested_by)
    .fetch_one(&state.pool)
    .await;
    let started_at = match inserted {
        Ok((at,)) => at,
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            return Err(ApiError::new(
                "verify_running",
                "a verify of this projector is running",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(%job_id, projector = %name, subject = %requested_by, "verify started");
    let pool = state.pool.clone();
    tokio::spawn(async move {
        let outcome =
            ordertrail_projections::verify(kind, &pool, 5_000, MAX_DIFFERENCES, &mut |_| {}).await;
        let (job_state, result) = match outcome {
            Ok(report) => (
                if report.is_clean() {
                    "clean"
                } else {
                    "differences"
                },
                serde_json::to_value(&report).unwrap_or_default(),
            ),
            Err(e) => {
                tracing::error!(%job_id, error = %e, "verify failed");
                ("failed", serde_json::json!({ "error": e.to_string() }))
            }
        };
        if let Err(e) = sqlx::query(
            "UPDATE verify_jobs SET state = $2, result = $3, finished_at = now() WHERE job_id = $1",
        )
        .bind(job_id)
        .bind(job_state)
        .bind(&result)
        .execute(&pool)
        .await
        {
            tracing::error!(%job_id, error = %e, "cannot record the verify result");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(VerifyJob {
            job_id,
            projector: name,
            state: "running".into(),
            requested_by,
            started_at,
            finished_at: None,
            result: None,
        }),
    ))
}

type JobRow = (
    Uuid,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<serde_json::Value>,
);

/// A verify job and, once finished, its report (ops, admin, auditor).
#[utoipa::path(
    get, path = "/v1/projectors/verify/{job_id}", tag = "replay",
    params(("job_id" = Uuid, Path, description = "From `POST /v1/projectors/{name}/verify`")),
    responses(
        (status = 200, description = "The job", body = VerifyJob),
        QueryErrors,
    ),
    security(("bearer" = []))
)]
pub async fn verify_job(
    State(state): State<AppState>,
    _user: Authorized<StaffOrAuditor>,
    ApiPath(job_id): ApiPath<Uuid>,
) -> Result<Json<VerifyJob>, ApiError> {
    let row: Option<JobRow> = sqlx::query_as(
        "SELECT job_id, projector, state, requested_by, started_at, finished_at, result
         FROM verify_jobs WHERE job_id = $1",
    )
    .bind(job_id)
    .fetch_optional(&state.pool)
    .await?;
    let Some((job_id, projector, state, requested_by, started_at, finished_at, result)) = row
    else {
        return Err(ApiError::new(
            "verify_job_not_found",
            "no verify job with this id",
        ));
    };
    Ok(Json(VerifyJob {
        job_id,
        projector,
        state,
        requested_by,
        started_at,
        finished_at,
        result,
    }))
}
