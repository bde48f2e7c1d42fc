//! Audit and reconciliation routes, read from the event store (never from a
//! read model) for ops, admin and the read-only auditor; everyone else gets
//! 403. Every read is logged with the caller (subject and role, never the
//! token) under the `audit` target.
//!
//! - `GET /v1/audit/{orders|payments|deliveries}/{id}/events`: the aggregate's
//!   events with metadata, keyset-paged by sequence.
//! - `GET /v1/audit/{…}/{id}/state?version=N` or `?at=<RFC 3339>`: the state
//!   folded by the domain aggregate, with the version and time it stands at.
//! - `GET /v1/audit/correlations/{correlation_id}`: one business flow's
//!   events across aggregates in commit order.
//! - `GET /v1/reconciliation/settlements?from&to`: settlements against the
//!   events and (with `provider_statement=true`) the payment events against
//!   the simulated provider's statement of those days.

use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use ordertrail_commands::audit::{self, AsOf, AuditError, AuditPage, AuditState};
use ordertrail_projections::reconcile::{self, ReconcileError, Report};
use ordertrail_schemas::AggregateKind;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};
use uuid::Uuid;

use crate::auth::{Authorized, StaffOrAuditor};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::queries::QueryErrors;

/// The audit routes' part of the OpenAPI document (merged in [`crate::docs`]).
#[derive(OpenApi)]
#[openapi(
    paths(
        aggregate_events,
        aggregate_state,
        correlation_events,
        reconcile_settlements
    ),
    components(schemas(AuditPage, AuditState, Report))
)]
#[derive(Debug)]
pub struct AuditDoc;

fn kind_of(segment: &str) -> Result<AggregateKind, ApiError> {
    match segment {
        "orders" => Ok(AggregateKind::Order),
        "payments" => Ok(AggregateKind::Payment),
        "deliveries" => Ok(AggregateKind::Delivery),
        _ => Err(ApiError::new(
            "route_not_found",
            "audit routes are /v1/audit/{orders|payments|deliveries}/{id}/…",
        )),
    }
}

fn audit_error(e: AuditError, kind: Option<AggregateKind>) -> ApiError {
    match e {
        AuditError::NotFound { .. } => {
            let code = match kind {
                Some(AggregateKind::Order) => "order_not_found",
                Some(AggregateKind::Payment) => "payment_not_found",
                Some(AggregateKind::Delivery) => "delivery_not_found",
                None => "route_not_found",
            };
            ApiError::new(code, e.to_string())
        }
        AuditError::InvalidCursor(_) => ApiError::new(
            "invalid_cursor",
            "the cursor is not a `next_cursor` of this listing",
        ),
        AuditError::Database(e) => e.into(),
        AuditError::Fold { .. } => {
            tracing::error!(error = %e, "audit fold failed");
            ApiError::new("internal_error", "the aggregate could not be folded")
        }
    }
}

fn log_read(user: &Authorized<StaffOrAuditor>, what: &str, target: &str) {
    tracing::info!(target: "audit", subject = %user.subject, role = %user.role, what, target, "audit read");
}

/// Paging of an audit listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (the last sequence read).
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// Paging of a correlation's events (cursor: a commit position).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CorrelationPageParams {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (`<transaction>.<position>`).
    #[param(pattern = "^[0-9]{1,18}[.][0-9]{1,18}$")]
    pub cursor: Option<String>,
}

fn limit(limit: Option<u32>) -> Result<Option<i64>, ApiError> {
    match limit {
        Some(l) if !(1..=audit::MAX_PAGE as u32).contains(&l) => Err(ApiError::new(
            "limit_out_of_range",
            format!("limit must be 1..={}", audit::MAX_PAGE),
        )),
        l => Ok(l.map(i64::from)),
    }
}

/// `…/state` parameters: at most one of them; neither means the latest state.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// The state after the event with this sequence (1 = the first event).
    pub version: Option<i64>,
    /// The state after every event recorded at or before this instant (RFC 3339).
    pub at: Option<DateTime<Utc>>,
}

/// `GET /v1/reconciliation/settlements` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReconcileParams {
    /// First day (`YYYY-MM-DD`).
    pub from: NaiveDate,
    /// Last day, included: on or after `from` and at most 91 days after it
    /// (92 days at once); otherwise 422 `invalid_range`.
    pub to: NaiveDate,
    /// Also compare the payment events with the simulated provider's
    /// statement of these days (default false).
    pub provider_statement: Option<bool>,
}

api_routes! {
    tag = "audit";

    /// Every event of one order, payment or delivery with its metadata (actor,
    /// command, correlation and causation ids, request id, recorded_at), by
    /// sequence, from the event store. Ops, admin, auditor.
    get "/v1/audit/{kind}/{id}/events" params(("kind" = String, Path, description = "`orders`, `payments` or `deliveries`"), ("id" = Uuid, Path, description = "The aggregate id"), PageParams)
        => (status = 200, description = "One page of events", body = AuditPage), QueryErrors;
    fn aggregate_events(
        state,
        user: Authorized<StaffOrAuditor>,
        ApiPath((kind, id)): ApiPath<(String, Uuid)>,
        ApiQuery(page): ApiQuery<PageParams>
    ) -> Json<AuditPage> {
        let kind = kind_of(&kind)?;
        log_read(&user, "events", &format!("{kind} {id}"));
        let limit = limit(page.limit)?;
        audit::history(
            &state.pool,
            kind,
            &id.to_string(),
            page.cursor.as_deref(),
            limit,
        )
        .await
        .map(Json)
        .map_err(|e| audit_error(e, Some(kind)))
    }

    /// The aggregate as it stood at a version or a time, folded by the same
    /// domain aggregate code the write side uses; the answer carries the version
    /// and `recorded_at` it stands at. 404 when it did not exist yet (or never
    /// reached that version). Ops, admin, auditor.
    get "/v1/audit/{kind}/{id}/state" params(("kind" = String, Path, description = "`orders`, `payments` or `deliveries`"), ("id" = Uuid, Path, description = "The aggregate id"), StateParams)
        => (status = 200, description = "The folded state", body = AuditState), QueryErrors;
    fn aggregate_state(
        state,
        user: Authorized<StaffOrAuditor>,
        ApiPath((kind, id)): ApiPath<(String, Uuid)>,
        ApiQuery(p): ApiQuery<StateParams>
    ) -> Json<AuditState> {
        let kind = kind_of(&kind)?;
        let as_of = match (p.version, p.at) {
            (Some(_), Some(_)) => {
                return Err(ApiError::new(
                    "invalid_query",
                    "give `version` or `at`, not both",
                ));
            }
            (Some(v), None) if v < 1 => {
                return Err(ApiError::new("invalid_query", "`version` starts at 1"));
            }
            (Some(v), None) => AsOf::Version(v),
            (None, Some(t)) => AsOf::Time(t),
            (None, None) => AsOf::Latest,
        };
        log_read(&user, "state", &format!("{kind} {id} {as_of:?}"));
        audit::state_as_of(&state.pool, kind, &id.to_string(), as_of)
            .await
            .map(Json)
            .map_err(|e| audit_error(e, Some(kind)))
    }

    /// Every event of one business flow (its correlation id, e.g. one order's
    /// whole story) across orders, payments and deliveries, in commit order:
    /// who did what, and what the saga did in reaction. Ops, admin, auditor.
    get "/v1/audit/correlations/{id}" params(("id" = Uuid, Path, description = "The correlation id"), CorrelationPageParams)
        => (status = 200, description = "One page of events", body = AuditPage), QueryErrors;
    fn correlation_events(
        state,
        user: Authorized<StaffOrAuditor>,
        ApiPath(id): ApiPath<Uuid>,
        ApiQuery(page): ApiQuery<CorrelationPageParams>
    ) -> Json<AuditPage> {
        log_read(&user, "correlation", &id.to_string());
        let limit = limit(page.limit)?;
        audit::correlation(&state.pool, id, page.cursor.as_deref(), limit)
            .await
            .map(Json)
            .map_err(|e| audit_error(e, None))
    }

    /// Settlement figures recomputed from the events and compared with the read
    /// model to the cent; optionally the payment events against the provider's
    /// statement. Breaks by kind; money in integer minor units. Ops, admin, auditor.
    get "/v1/reconciliation/settlements" params(ReconcileParams)
        => (status = 200, description = "The report (`summary.breaks` = 0 when clean)", body = Report), QueryErrors;
    fn reconcile_settlements(
        state,
        user: Authorized<StaffOrAuditor>,
        ApiQuery(p): ApiQuery<ReconcileParams>
    ) -> Json<Report> {
        log_read(&user, "reconciliation", &format!("{}..{}", p.from, p.to));
        let reconcile_error = |e: ReconcileError| match e {
            ReconcileError::InvalidRange(reason) => ApiError::new("invalid_range", reason)
                .with_details(serde_json::json!({ "field": "to" })),
            ReconcileError::Database(e) => e.into(),
        };
        if p.to < p.from || (p.to - p.from).num_days() >= reconcile::MAX_DAYS {
            return Err(reconcile_error(ReconcileError::InvalidRange(format!(
                "from..to must be 1..={} days",
                reconcile::MAX_DAYS
            ))));
        }
        let statement = if p.provider_statement.unwrap_or(false) {
            Some(reconcile::simulated_statement(&state.pool, p.from, p.to).await?)
        } else {
            None
        };
        reconcile::reconcile(&state.pool, p.from, p.to, statement.as_deref())
            .await
            .map(Json)
            .map_err(reconcile_error)
    }
}
