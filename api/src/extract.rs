//! Extractors that answer bad input with [`ApiError`]s instead of axum's
//! plain-text rejections.
//!
//! - [`CommandRequest<T>`]: a command's JSON body plus what idempotency needs
//!   (the `Idempotency-Key` header and a fingerprint of method, path and raw
//!   body) and the request id.
//! - [`ApiJson<T>`]: a JSON body alone (for non-command routes).
//! - [`ApiPath<T>`]: path parameters; a malformed id is 400 `invalid_id`.
//! - [`ApiQuery<T>`]: query-string parameters; a bad one is 400 `invalid_query`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use ordertrail_commands::service::{CommandContext, IdempotencyKey};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::auth::AuthUser;
use crate::error::{ApiError, is_json_content_type, parse_json};

/// The header carrying the client's idempotency key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set to `true` on responses that repeat the first answer to a key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The request id header (set by the server when the client sent none).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A command's body with its idempotency data and request id.
#[derive(Debug)]
pub struct CommandRequest<T> {
    pub body: T,
    pub request_id: String,
    pub idempotency: Option<IdempotencyKey>,
}

impl<T> CommandRequest<T> {
    /// The context the command service needs, for this caller.
    pub fn context(&self, user: &AuthUser) -> CommandContext {
        let ctx = CommandContext::new(user.actor(), self.request_id.clone());
        match &self.idempotency {
            Some(key) => ctx.with_idempotency_key(key.clone()),
            None => ctx,
        }
    }
}

/// The request id the request-id layer set (or the client sent).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// What makes two requests the same request: hex SHA-256 of method, path and raw body.
pub fn request_fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b"\n");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

/// The `Idempotency-Key` header, if any: 1..=255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(ApiError::new(
            "invalid_idempotency_key",
            format!(
                "Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// Read and parse a JSON body. An empty body is read as `{}`, so commands
/// without required fields may be sent bare; a non-empty body must say it
/// is JSON.
async fn json_body<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(T, Bytes), ApiError> {
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let bytes = Bytes::from_request(req, state).await?;
    if bytes.is_empty() && content_type.is_none() {
        return Ok((parse_json(b"{}")?, bytes));
    }
    let is_json = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_content_type);
    if !is_json {
        return Err(ApiError::new(
            "unsupported_media_type",
            "expected `Content-Type: application/json`",
        ));
    }
    Ok((parse_json(&bytes)?, bytes))
}

impl<T, S> FromRequest<S> for CommandRequest<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let request_id = request_id(req.headers());
        let key = idempotency_key(req.headers())?;
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (body, bytes) = json_body::<T, S>(req, state).await?;
        let idempotency = key.map(|key| IdempotencyKey {
            key,
            request_hash: request_fingerprint(method.as_str(), &path, &bytes),
        });
        Ok(Self {
            body,
            request_id,
            idempotency,
        })
    }
}

/// A JSON body; see [`crate::error::parse_json`] for how bad input is answered.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(json_body::<T, S>(req, state).await?.0))
    }
}

/// Declares `$name<T>`: axum's `$axum<T>` extractor with its rejection
/// answered as an [`ApiError`] (the `From` rejections in [`crate::error`]).
macro_rules! parts_extractor {
    ($(#[doc = $doc:tt])* $name:ident($axum:ident)) => {
        $(#[doc = $doc])*
        #[derive(Debug)]
        pub struct $name<T>(pub T);

        impl<T, S> FromRequestParts<S> for $name<T>
        where
            T: DeserializeOwned + Send,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
                let $axum(value) = $axum::<T>::from_request_parts(parts, state).await?;
                Ok(Self(value))
            }
        }
    };
}

parts_extractor! {
    /// Path parameters; a value that does not parse is 400 `invalid_id`.
    ApiPath(Path)
}

parts_extractor! {
    /// Query-string parameters; anything that does not parse (or is unknown)
    /// is 400 `invalid_query` with the reason in `details`.
    ApiQuery(Query)
}
