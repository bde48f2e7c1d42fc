//! Route modules, one per resource. Each exposes `router()`; [`crate::app`]
//! merges them. The command resources (orders, payments, deliveries) declare
//! their routes with [`command_routes!`]; queries, audit and reference data
//! with [`api_routes!`].

/// Declares a resource's command routes and its `router()`.
///
/// Every command route has the same shape: its OpenAPI operation (`POST`,
/// the resource's tag, the path id, the `Idempotency-Key` header, the
/// request body, the success answer, any extra documented failures, then
/// [`crate::error::CommandErrors`] and bearer security) and a handler that
/// parses the body and the path id, checks the token's role, runs the one
/// workflow its block builds ([`run`]) and answers. The answer is the
/// documented status with the outcome as the caller may see it, or another
/// [`Answer`] named after `->`. A block may use `?`; the handler's name is
/// the operation id.
///
/// ```ignore
/// command_routes! {
///     tag = "orders", id = "Order id";
///
///     /// Accept a confirmed order (the order's restaurant).
///     post "/v1/orders/{id}/accept" => 200 "Order accepted";
///     fn accept_order(user: RestaurantRole, body: AcceptOrderRequest, id: Uuid) {
///         AcceptOrder { order_id: OrderId(id), preparation_minutes: body.preparation_minutes }
///     }
///
///     /// A route without a path id, a body-less command and another answer:
///     post "/v1/payments" => 201 "Payment authorized", (status = 402, description = "...");
///     fn authorize_payment(user: CustomerOrStaff, _: NoBody) -> answer_authorized { ... }
/// }
/// ```
macro_rules! command_routes {
    (
        tag = $tag:tt, id = $id_desc:tt;
        $(
            $(#[doc = $doc:tt])*
            post $path:tt => $status:tt $desc:tt $(, $extra:tt)*;
            fn $name:ident($user:ident: $role:ty, $body:tt: $req:ident $(, $id:ident: Uuid)?)
                $(-> $answer:path)? $build:block
        )*
    ) => {
        pub fn router() -> ::axum::Router<$crate::AppState> {
            ::axum::Router::new()
                $(.route($path, ::axum::routing::post($name)))*
        }
        $(
            $crate::routes::command_routes! {
                @body [$($doc)*] $tag $path $status $desc [$($extra)*] $name $user $role,
                $body $req [$($id $id_desc)?] [$($answer)?] $build
            }
        )*
    };
    // The request body: `NoBody` is documented as "empty or `{}`".
    (@body $docs:tt $tag:tt $path:tt $status:tt $desc:tt $extra:tt $name:ident
        $user:ident $role:ty, $body:tt NoBody $($rest:tt)*) => {
        $crate::routes::command_routes! {
            @emit $docs $tag $path $status $desc $extra $name $user $role,
            [request_body(content = NoBody, description = "Empty or `{}`")] $body NoBody $($rest)*
        }
    };
    (@body $docs:tt $tag:tt $path:tt $status:tt $desc:tt $extra:tt $name:ident
        $user:ident $role:ty, $body:tt $req:ident $($rest:tt)*) => {
        $crate::routes::command_routes! {
            @emit $docs $tag $path $status $desc $extra $name $user $role,
            [request_body = $req] $body $req $($rest)*
        }
    };
    // The route: on an item when it has a path id, else on the collection.
    (@emit [$($doc:tt)*] $tag:tt $path:tt $status:tt $desc:tt [$($extra:tt)*]
        $name:ident $user:ident $role:ty, [$($request_body:tt)*] $body:tt $req:ident
        [$($id:ident $id_desc:tt)?] [$($answer:path)?] $build:block) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            post, path = $path, tag = $tag,
            params(
                $(("id" = ::uuid::Uuid, Path, description = $id_desc),)?
                ("Idempotency-Key" = Option<String>, Header)
            ),
            $($request_body)*,
            responses(
                (status = $status, description = $desc, body = ::ordertrail_commands::service::CommandOutcome),
                $($extra,)*
                $crate::error::CommandErrors
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(
            ::axum::extract::State(state): ::axum::extract::State<$crate::AppState>,
            $user: $crate::auth::Authorized<$role>,
            $($crate::extract::ApiPath($id): $crate::extract::ApiPath<::uuid::Uuid>,)?
            req: $crate::extract::CommandRequest<$req>,
        ) -> Result<$crate::routes::CommandResponse, $crate::error::ApiError> {
            let workflow = {
                let $body = &req.body;
                $build
            };
            let outcome = $crate::routes::run(&state, &$user, &req, workflow).await?;
            $crate::routes::Answer::answer(
                &$crate::routes::command_routes!(@answer $status $($answer)?),
                &$user,
                outcome,
            )
        }
    };
    (@answer $status:tt $answer:path) => { $answer };
    (@answer 200) => { ::axum::http::StatusCode::OK };
    (@answer 201) => { ::axum::http::StatusCode::CREATED };
}
pub(crate) use command_routes;

/// Declares a resource's other routes (queries, audit, reference data) and
/// its `router()`: each route's OpenAPI operation (method, path, the
/// resource's tag, its parameters and request body, the success answer, the
/// error set, bearer security) and its handler's signature (the state, the
/// token's role, the extractors) from one declaration; the block answers.
///
/// ```ignore
/// api_routes! {
///     tag = "queries";
///
///     /// Doc comment: the operation's summary.
///     get "/v1/orders/{id}" params(("id" = Uuid, Path, description = "Order id"))
///         => (status = 200, description = "The order", body = OrderDetail), QueryErrors;
///     fn order_detail(state, user: AuthUser, ApiPath(id): ApiPath<Uuid>) -> Json<OrderDetail> {
///         ...
///     }
/// }
/// ```
macro_rules! api_routes {
    (
        tag = $tag:tt;
        $(
            $(#[doc = $doc:tt])*
            $method:ident $path:tt $(params $params:tt)? $(request_body = $req:ident)?
                => $ok:tt, $errors:ident;
            fn $name:ident($state:ident, $user:ident: $role:ty $(, $ext:ident $inner:tt: $ext_ty:ty)*)
                -> $ret:ty $build:block
        )*
    ) => {
        pub fn router() -> ::axum::Router<$crate::AppState> {
            ::axum::Router::new()
                $(.route($path, ::axum::routing::$method($name)))*
        }
        $(
            $(#[doc = $doc])*
            #[utoipa::path(
                $method, path = $path, tag = $tag,
                $(params $params,)?
                $(request_body = $req,)?
                responses($ok, $errors),
                security(("bearer" = []))
            )]
            pub async fn $name(
                ::axum::extract::State($state): ::axum::extract::State<$crate::AppState>,
                $user: $role,
                $($ext $inner: $ext_ty,)*
            ) -> Result<$ret, $crate::error::ApiError> $build
        )*
    };
}

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

/// How a command route answers its workflow's outcome (see [`command_routes!`]).
pub(crate) trait Answer {
    fn answer(&self, user: &AuthUser, outcome: CommandOutcome)
    -> Result<CommandResponse, ApiError>;
}

/// The outcome, as `user` may see it ([`visibility::outcome`]), with this status.
impl Answer for StatusCode {
    fn answer(
        &self,
        user: &AuthUser,
        outcome: CommandOutcome,
    ) -> Result<CommandResponse, ApiError> {
        Ok(CommandResponse {
            status: *self,
            outcome: visibility::outcome(user, outcome),
        })
    }
}

/// An answer that looks at the outcome first (e.g. a recorded decline).
impl<F> Answer for F
where
    F: Fn(&AuthUser, CommandOutcome) -> Result<CommandResponse, ApiError>,
{
    fn answer(
        &self,
        user: &AuthUser,
        outcome: CommandOutcome,
    ) -> Result<CommandResponse, ApiError> {
        self(user, outcome)
    }
}

/// Answers `status` with the outcome, unless the outcome records a refusal
/// as a fact (an `event_type` event, e.g. `PaymentDeclined`): then the error
/// `refusal` makes of that event's payload and of the outcome as `user` may
/// see it — marked `Idempotent-Replayed` when the outcome is a replay, so a
/// retry with the same key gets the same answer.
pub(crate) fn answer_or_refusal(
    user: &AuthUser,
    outcome: CommandOutcome,
    status: StatusCode,
    event_type: &str,
    refusal: impl FnOnce(&serde_json::Value, CommandOutcome) -> ApiError,
) -> Result<CommandResponse, ApiError> {
    let Some(refused) = outcome.events.iter().find(|e| e.event_type == event_type) else {
        return status.answer(user, outcome);
    };
    let error = refusal(&refused.payload, visibility::outcome(user, outcome.clone()));
    if outcome.replayed {
        Err(error.with_header(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")))
    } else {
        Err(error)
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
