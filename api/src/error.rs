//! The API's one error type and the one table that maps error codes to HTTP
//! statuses.
//!
//! Every error leaves the server as `{"code", "message", "details"}`. The
//! status is decided in exactly one place, [`status_for`]: first the API's
//! own codes in [`ERROR_CODES`], then the [`ErrorKind`] of a domain error.
//! Internal errors are logged (inside the request span, so with its request
//! id) and answered with a generic message: their text never reaches a client.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ordertrail_commands::catalog::CatalogError;
use ordertrail_commands::service::CommandError;
use ordertrail_schemas::ErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable snake_case code (see the table in the API description).
    #[schema(example = "order_not_acceptable")]
    pub code: String,
    /// Human-readable explanation; may change between releases.
    pub message: String,
    /// Structured detail (e.g. the JSON path of a bad field), or null.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// The API's own error codes: code, status, meaning. Domain error codes are
/// not listed: their status follows their [`ErrorKind`] (see [`status_for_kind`]).
#[rustfmt::skip]
pub const ERROR_CODES: &[(&str, StatusCode, &str)] = &[
    ("malformed_json", StatusCode::BAD_REQUEST, "the body is not well-formed JSON"),
    ("invalid_idempotency_key", StatusCode::BAD_REQUEST, "Idempotency-Key must be 1..=255 visible ASCII characters"),
    ("invalid_id", StatusCode::BAD_REQUEST, "an id in the path is not a UUID"),
    ("invalid_query", StatusCode::BAD_REQUEST, "a query parameter is missing, unknown or malformed (`details.reason`)"),
    ("invalid_cursor", StatusCode::BAD_REQUEST, "the cursor is not a `next_cursor` of this listing and sort"),
    ("invalid_date", StatusCode::BAD_REQUEST, "a date in the path is not `YYYY-MM-DD`"),
    ("invalid_last_event_id", StatusCode::BAD_REQUEST, "`Last-Event-ID` is not an id the stream sent (`<transaction>-<position>`)"),
    ("missing_token", StatusCode::UNAUTHORIZED, "no bearer token was sent"),
    ("invalid_token", StatusCode::UNAUTHORIZED, "the bearer token is malformed, forged, signed with an unknown `kid`, issued in the future, has the wrong `iss`/`aud`, or names an unknown role"),
    ("token_expired", StatusCode::UNAUTHORIZED, "the bearer token has expired"),
    ("token_not_yet_valid", StatusCode::UNAUTHORIZED, "the bearer token's `nbf` is still in the future"),
    ("token_lifetime_too_long", StatusCode::UNAUTHORIZED, "the bearer token's lifetime (`exp - iat`, or `exp - now`) exceeds the configured maximum (24 h by default)"),
    ("payment_declined", StatusCode::PAYMENT_REQUIRED, "the card was declined; the decline is recorded (`details.outcome`)"),
    ("payment_capture_failed", StatusCode::PAYMENT_REQUIRED, "the provider refused the capture; the failure is recorded (`details.outcome`)"),
    ("payment_void_failed", StatusCode::PAYMENT_REQUIRED, "the provider refused the void; the failure is recorded and the authorization is still held (`details.outcome`)"),
    ("payment_refund_failed", StatusCode::PAYMENT_REQUIRED, "the provider refused the refund; the failure is recorded and nothing was returned (`details.outcome`)"),
    ("forbidden", StatusCode::FORBIDDEN, "the token's role or subject may not do this"),
    ("route_not_found", StatusCode::NOT_FOUND, "no such route"),
    ("order_not_found", StatusCode::NOT_FOUND, "the order does not exist"),
    ("payment_not_found", StatusCode::NOT_FOUND, "the payment does not exist"),
    ("delivery_not_found", StatusCode::NOT_FOUND, "the delivery does not exist"),
    ("restaurant_not_found", StatusCode::NOT_FOUND, "the restaurant does not exist"),
    ("projector_not_found", StatusCode::NOT_FOUND, "no projector of that name"),
    ("verify_job_not_found", StatusCode::NOT_FOUND, "no verify job with this id"),
    ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED, "the route exists, but not for this method"),
    ("concurrency_conflict", StatusCode::CONFLICT, "another command changed the aggregate first; retry"),
    ("payment_method_mismatch", StatusCode::CONFLICT, "the order is not paid the way this command assumes"),
    ("payment_not_authorized", StatusCode::CONFLICT, "a card order can only be confirmed once its payment is authorized"),
    ("rider_inactive", StatusCode::CONFLICT, "the rider is not active"),
    ("rider_not_assigned", StatusCode::CONFLICT, "the delivery has no rider assigned"),
    ("verify_running", StatusCode::CONFLICT, "a verify of this projector is running; poll it"),
    ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE, "the body exceeds the configured limit"),
    ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be `application/json`"),
    ("invalid_body", StatusCode::UNPROCESSABLE_ENTITY, "the JSON does not fit the request type (`details.path`, `details.reason`)"),
    ("idempotency_key_reused", StatusCode::UNPROCESSABLE_ENTITY, "the Idempotency-Key was used before for a different request"),
    ("dropoff_code_invalid", StatusCode::UNPROCESSABLE_ENTITY, "wrong drop-off code; the attempt is recorded (`details.attempts_left`)"),
    ("text_control_character", StatusCode::UNPROCESSABLE_ENTITY, "a text holds a control character (only `\\n` and `\\t`, and only in free text such as reasons, are allowed; `details.path`)"),
    ("text_too_long", StatusCode::UNPROCESSABLE_ENTITY, "a text is longer than its documented maximum (reason 500, street 200, city 100, postal code 16, card token 255, names 200)"),
    ("text_required", StatusCode::UNPROCESSABLE_ENTITY, "a text is empty or blank"),
    ("invalid_reference_data", StatusCode::UNPROCESSABLE_ENTITY, "reference data failed validation"),
    ("limit_out_of_range", StatusCode::UNPROCESSABLE_ENTITY, "`limit` must be 1..=200"),
    ("invalid_range", StatusCode::UNPROCESSABLE_ENTITY, "a range is inverted (from after to, min above max) or too long (`details.field`)"),
    ("rider_not_found", StatusCode::UNPROCESSABLE_ENTITY, "the body names a rider that does not exist"),
    ("rate_limited", StatusCode::TOO_MANY_REQUESTS, "too many requests from this subject or address; retry after `Retry-After` seconds"),
    ("internal_error", StatusCode::INTERNAL_SERVER_ERROR, "a fault of ours; quote the x-request-id"),
    ("dependency_unavailable", StatusCode::SERVICE_UNAVAILABLE, "a dependency (database, payment provider) is down; retry after `Retry-After` seconds"),
];

/// The status of a domain error of this kind.
pub fn status_for_kind(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The one mapping from an error code (and, for domain errors, its kind) to
/// an HTTP status. Unknown codes without a kind are internal errors.
pub fn status_for(code: &str, kind: Option<ErrorKind>) -> StatusCode {
    ERROR_CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, status, _)| *status)
        .or_else(|| kind.map(status_for_kind))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

const INTERNAL_MESSAGE: &str =
    "an internal error occurred; quote the x-request-id response header when reporting it";
const UNAVAILABLE_MESSAGE: &str = "a dependency is temporarily unavailable; retry later";

/// Seconds a client is asked to wait before retrying after a 503: long
/// enough for a PostgreSQL restart or a pool to drain, short enough that a
/// blip costs little.
pub const RETRY_AFTER_UNAVAILABLE_SECONDS: u32 = 2;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    details: Option<serde_json::Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with one of the API's own codes (its status from [`ERROR_CODES`]).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: status_for(code, None),
            code: Cow::Borrowed(code),
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    /// A domain error: its own code, the status of its kind.
    pub fn domain(code: &str, kind: ErrorKind, message: impl Into<String>) -> Self {
        let status = status_for(code, Some(kind));
        let mut message = message.into();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(code, message = %message, "dependency unavailable");
            message = UNAVAILABLE_MESSAGE.into();
        }
        Self {
            status,
            code: Cow::Owned(code.to_owned()),
            message,
            details: None,
            headers: Vec::new(),
        }
    }

    /// A fault of ours: logged with the request's span, answered generically.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new("internal_error", INTERNAL_MESSAGE)
    }

    /// A dependency is down: logged, answered with 503.
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %error, "dependency unavailable");
        Self::new("dependency_unavailable", UNAVAILABLE_MESSAGE)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("forbidden", message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// An extra response header (e.g. `Idempotent-Replayed`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.into_owned(),
            message: self.message,
            details: self.details,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        // Every 503 says when to come back.
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            && !response
                .headers()
                .contains_key(axum::http::header::RETRY_AFTER)
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER_UNAVAILABLE_SECONDS),
            );
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Rejected {
                code,
                kind,
                message,
            } => ApiError::domain(code, kind, message),
            e @ CommandError::Conflict { .. } => {
                ApiError::new("concurrency_conflict", e.to_string())
            }
            e @ CommandError::IdempotencyKeyReused => {
                ApiError::new("idempotency_key_reused", e.to_string())
            }
            CommandError::Unavailable(source) => {
                ordertrail_platform::db::mark_unavailable(&source);
                ApiError::unavailable(source)
            }
            CommandError::Internal(message) => ApiError::internal(message),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid(message) => ApiError::new("invalid_reference_data", message),
            e @ CatalogError::UnknownRestaurant(_) => {
                ApiError::new("restaurant_not_found", e.to_string())
            }
            CatalogError::Database(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if ordertrail_platform::db::is_unreachable(&e) {
            ordertrail_platform::db::mark_unavailable(&e);
            ApiError::unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

/// Parse a JSON body into `T`, telling a syntax error (400 `malformed_json`)
/// from JSON that does not fit `T` (422 `invalid_body`, with the JSON path).
///
/// A number with a zero fraction (`2.0`) is an integer, as JSON Schema says
/// (and so the OpenAPI document): it is read as `2` wherever `T` wants one.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| json_error(e, None))?;
    integral_floats_as_integers(&mut value);
    let parsed = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        json_error(e.into_inner(), Some(path))
    })?;
    reject_control_characters(bytes)?;
    Ok(parsed)
}

/// The largest float below 2^63 and above -2^63: every float in between
/// with a zero fraction converts to an `i64` exactly.
const I64_FLOAT_BOUND: f64 = 9_223_372_036_854_774_784.0;

fn integral_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && (-I64_FLOAT_BOUND..=I64_FLOAT_BOUND).contains(&f)
            {
                // Exact: f is integral and within i64's range.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *n = serde_json::Number::from(i);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// 422 `text_control_character` when any string (or key) of a JSON body
/// holds a control character other than `\n` and `\t`: whatever field it is,
/// it must never reach the event store (PostgreSQL refuses U+0000 in `jsonb`,
/// and a stored event nobody can apply stops its readers). Fields that are
/// not free text refuse `\n` and `\t` too, in the domain's text rules.
fn reject_control_characters(bytes: &[u8]) -> Result<(), ApiError> {
    // Control characters reach a JSON string only as `\u` (or `\n`, `\t`,
    // `\r`, `\b`, `\f`) escapes, or raw as U+007F (0x7F) and U+0080..=U+009F
    // (0xC2 0x80..=0x9F): bodies without any of these need no second look.
    let suspicious = bytes.windows(2).any(|w| {
        (w[0] == b'\\' && matches!(w[1], b'u' | b'r' | b'b' | b'f'))
            || w[0] == 0x7f
            || (w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1]))
    });
    if !suspicious {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    match find_control_character(&value, "") {
        None => Ok(()),
        Some((path, c)) => Err(ApiError::new(
            ordertrail_schemas::text::CONTROL_CHARACTER_CODE,
            format!(
                "{path} contains the control character U+{:04X}",
                u32::from(c)
            ),
        )
        .with_details(serde_json::json!({ "path": path, "code_point": u32::from(c) }))),
    }
}

fn find_control_character(value: &serde_json::Value, path: &str) -> Option<(String, char)> {
    use ordertrail_schemas::text::first_forbidden_char;
    match value {
        serde_json::Value::String(s) => {
            first_forbidden_char(s, true).map(|(_, c)| (display_path(path), c))
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_control_character(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            let here = format!("{path}.{k}");
            match first_forbidden_char(k, false) {
                Some((_, c)) => Some((display_path(&here), c)),
                None => find_control_character(v, &here),
            }
        }),
        _ => None,
    }
}

fn display_path(path: &str) -> String {
    let path = path.strip_prefix('.').unwrap_or(path);
    if path.is_empty() {
        ".".to_owned()
    } else {
        path.to_owned()
    }
}

fn json_error(e: serde_json::Error, path: Option<String>) -> ApiError {
    match e.classify() {
        serde_json::error::Category::Data => ApiError::new("invalid_body", format!("the body does not fit the request: {e}"))
            .with_details(serde_json::json!({ "path": path.unwrap_or_else(|| ".".into()), "reason": e.to_string() })),
        _ => ApiError::new("malformed_json", format!("the body is not valid JSON: {e}"))
            .with_details(serde_json::json!({ "line": e.line(), "column": e.column() })),
    }
}

/// Whether a `Content-Type` value says JSON (`application/json` or `application/*+json`).
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl From<ordertrail_schemas::text::TextError> for ApiError {
    fn from(error: ordertrail_schemas::text::TextError) -> Self {
        ApiError::domain(error.code(), ErrorKind::Invalid, error.to_string())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new("payload_too_large", "the body exceeds the size limit")
        } else {
            ApiError::new("malformed_json", "the body could not be read")
        }
    }
}

/// For handlers that use `axum::Json` directly (the custom extractors in
/// [`crate::extract`] never produce a `JsonRejection`).
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                ApiError::new("invalid_body", "the body does not fit the request")
                    .with_details(serde_json::json!({ "reason": e.body_text() }))
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::new("malformed_json", "the body is not valid JSON")
                    .with_details(serde_json::json!({ "reason": e.body_text() }))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(e) => e.into(),
            other => ApiError::new("malformed_json", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new("invalid_id", "an id in the path is not a valid UUID")
            .with_details(serde_json::json!({ "reason": rejection.body_text() }))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new("invalid_query", "a query parameter is missing or malformed")
            .with_details(serde_json::json!({ "reason": rejection.body_text() }))
    }
}

/// Fallback for unknown routes: 404 `route_not_found`.
pub async fn route_not_found() -> ApiError {
    ApiError::new("route_not_found", "no such route")
}

/// Fallback for a known route with another method: 405 `method_not_allowed`.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        "method_not_allowed",
        "this route does not support the method",
    )
}

/// OpenAPI responses for a set of statuses, each described by the codes
/// that produce it (from the one table), all with the [`ErrorBody`] schema.
pub fn documented_errors(
    statuses: &[u16],
) -> BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    statuses
        .iter()
        .map(|status| {
            let mut codes: Vec<String> = ERROR_CODES
                .iter()
                .filter(|(_, s, _)| s.as_u16() == *status)
                .map(|(c, _, meaning)| format!("`{c}` ({meaning})"))
                .collect();
            match *status {
                404 => codes.push("a domain `*_not_found` code".into()),
                409 => codes
                    .push("a domain code for a transition the current state does not allow".into()),
                422 => codes.push("a domain validation code".into()),
                403 => codes.push("a domain code for a role the rule excludes".into()),
                503 => codes.push("`payment_provider_unavailable`".into()),
                _ => {}
            }
            let description = format!("Error. Codes: {}.", codes.join("; "));
            let mut response = ResponseBuilder::new().description(description);
            if *status == 429 || *status == 503 {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(1)),
                        )
                        .description(Some("Seconds until a retry can succeed"))
                        .build(),
                );
            }
            let response = response
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            (status.to_string(), response.into())
        })
        .collect()
}

/// Errors any command endpoint can answer.
#[derive(Debug)]
pub struct CommandErrors;

impl utoipa::IntoResponses for CommandErrors {
    fn responses() -> BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        documented_errors(&[400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503])
    }
}

/// Errors a reference-data read can answer.
#[derive(Debug)]
pub struct ReadErrors;

impl utoipa::IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        documented_errors(&[400, 401, 403, 404, 429, 500, 503])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_status_and_kinds_fall_back() {
        for (i, (code, _, _)) in ERROR_CODES.iter().enumerate() {
            assert!(
                ERROR_CODES[i + 1..].iter().all(|(c, _, _)| c != code),
                "duplicate {code}"
            );
        }
        assert_eq!(
            status_for("order_not_acceptable", Some(ErrorKind::Conflict)),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_for("idempotency_key_reused", Some(ErrorKind::Invalid)),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status_for("whatever", None),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn json_errors_are_classified() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            n: u32,
        }
        assert_eq!(
            parse_json::<Body>(b"{\"n\": ").unwrap_err().code(),
            "malformed_json"
        );
        assert_eq!(
            parse_json::<Body>(b"{\"n\": 1} x").unwrap_err().code(),
            "malformed_json"
        );
        assert_eq!(parse_json::<Body>(b"{\"n\": 2.0}").unwrap().n, 2);
        assert_eq!(
            parse_json::<Body>(b"{\"n\": 2.5}").unwrap_err().code(),
            "invalid_body"
        );
        let e = parse_json::<Body>(b"{\"n\": -1}").unwrap_err();
        assert_eq!(e.code(), "invalid_body");
        assert_eq!(
            e.details.as_ref().and_then(|d| d["path"].as_str()),
            Some("n")
        );
        assert_eq!(
            parse_json::<Body>(b"{\"n\": 1, \"m\": 2}")
                .unwrap_err()
                .code(),
            "invalid_body"
        );
        assert_eq!(
            parse_json::<Body>(b"{}").unwrap_err().code(),
            "invalid_body"
        );
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/problem+json"));
        assert!(!is_json_content_type("text/plain"));
    }
}
