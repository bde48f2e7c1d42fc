//! Route modules, one per resource. Each exposes `router()`; [`crate::app`]
//! merges them.

pub mod audit;
pub mod console;
pub mod deliveries;
pub mod health;
pub mod orders;
pub mod payments;
pub mod queries;
pub mod reference_data;
pub mod replay;
pub mod streams;
pub mod visibility;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ordertrail_commands::service::CommandOutcome;
use ordertrail_commands::workflows::Workflow;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{CommandRequest, IDEMPOTENT_REPLAYED};

/// A command's answer: the outcome as JSON, 201 when the command created the
/// aggregate, else 200; `Idempotent-Replayed: true` when it repeats the
/// first answer to an `Idempotency-Key`.
#[derive(Debug)]
pub struct CommandResponse {
    pub status: StatusCode,
    pub outcome: CommandOutcome,
}

impl CommandResponse {
    /// 201 with the outcome as `user` may see it ([`visibility::outcome`]).
    pub fn created(user: &AuthUser, outcome: CommandOutcome) -> Self {
        Self {
            status: StatusCode::CREATED,
            outcome: visibility::outcome(user, outcome),
        }
    }

    /// 200 with the outcome as `user` may see it ([`visibility::outcome`]).
    pub fn ok(user: &AuthUser, outcome: CommandOutcome) -> Self {
        Self {
            status: StatusCode::OK,
            outcome: visibility::outcome(user, outcome),
        }
    }
}

impl IntoResponse for CommandResponse {
    fn into_response(self) -> Response {
        let replayed = self.outcome.replayed;
        let mut response = (self.status, axum::Json(self.outcome)).into_response();
        if replayed {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}

/// Mark an error that answers a replayed command like a replayed success.
pub(crate) fn replayed_error(error: ApiError, outcome: &CommandOutcome) -> ApiError {
    if outcome.replayed {
        error.with_header(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"))
    } else {
        error
    }
}

/// A body for commands that take no input: `{}` or nothing at all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

/// A body that carries only a reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Free text, 1..=500 characters, not only white space; no control
    /// characters but `\n` and `\t`.
    #[schema(
        example = "customer changed their mind",
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub reason: String,
}

/// Run one use case for this request, as its caller (the token's actor,
/// request id and `Idempotency-Key`).
pub(crate) async fn run(
    state: &crate::AppState,
    user: &AuthUser,
    req: &CommandRequest<impl Sized>,
    workflow: impl Into<Workflow>,
) -> Result<CommandOutcome, ApiError> {
    Ok(state.commands.run(&req.context(user), workflow).await?)
}
