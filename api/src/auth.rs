//! JWT bearer authentication (HS256) and role checks.
//!
//! Every `/v1` command and reference-data route takes an [`AuthUser`] (any
//! valid token) or an [`Authorized<R>`] (a valid token whose role is in `R`).
//! Tokens carry `{sub, role, exp, iat}` and optionally `iss`; `exp` is
//! required. For customers, restaurants and riders `sub` is their UUID
//! (`CustomerId`, `RestaurantId`, `RiderId`), which ownership checks compare.
//! Neither tokens nor the secret are ever logged.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ordertrail_schemas::{Actor, ActorRole, CustomerId, RestaurantId, RiderId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

/// Clock skew tolerated on `exp`, seconds.
const LEEWAY_SECONDS: u64 = 30;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: a UUID for customers, restaurants and riders.
    pub sub: String,
    /// `customer`, `restaurant`, `rider`, `ops`, `admin` or `auditor`.
    pub role: String,
    /// Expiry, seconds since the epoch (required).
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// Errors minting a token.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(
        "role {0:?} cannot be given to a token (customer, restaurant, rider, ops, admin, auditor)"
    )]
    UnknownRole(String),
    #[error("a {0} token needs a UUID subject")]
    SubjectNotUuid(ActorRole),
    #[error("cannot sign the token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// The key and rules tokens are checked with. `Debug` never shows the secret.
#[derive(Clone)]
pub struct AuthConfig {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    issuer: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl AuthConfig {
    /// Tokens signed with `secret` (HS256); when `issuer` is set, `iss` must equal it.
    pub fn new(secret: &[u8], issuer: Option<String>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        if let Some(iss) = &issuer {
            validation.set_issuer(&[iss]);
            validation.set_required_spec_claims(&["exp", "iss"]);
        }
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
            issuer,
        }
    }

    /// Sign a token for `role`/`subject`, valid for `ttl_seconds` from now
    /// (negative values mint expired tokens, for tests).
    pub fn mint(&self, role: &str, subject: &str, ttl_seconds: i64) -> Result<String, MintError> {
        let parsed = parse_role(role).ok_or_else(|| MintError::UnknownRole(role.to_owned()))?;
        if needs_uuid_subject(parsed) && Uuid::parse_str(subject).is_err() {
            return Err(MintError::SubjectNotUuid(parsed));
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            role: parsed.as_str().to_owned(),
            exp: now.saturating_add(ttl_seconds),
            iat: now,
            iss: self.issuer.clone(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Check a token: signature, expiry, issuer, role and subject shape.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                JwtErrorKind::ExpiredSignature => {
                    ApiError::new("token_expired", "the bearer token has expired")
                }
                _ => ApiError::new("invalid_token", "the bearer token is not valid"),
            })?;
        let claims = data.claims;
        let role = parse_role(&claims.role).ok_or_else(|| {
            ApiError::new("invalid_token", "the bearer token names an unknown role")
        })?;
        if needs_uuid_subject(role) && Uuid::parse_str(&claims.sub).is_err() {
            return Err(ApiError::new(
                "invalid_token",
                "the bearer token's subject must be a UUID for this role",
            ));
        }
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(ApiError::new(
                "invalid_token",
                "the bearer token's subject is empty or too long",
            ));
        }
        Ok(AuthUser {
            subject: claims.sub,
            role,
        })
    }
}

/// Roles a token may carry (`system` is the platform's own and never in a token).
fn parse_role(role: &str) -> Option<ActorRole> {
    ActorRole::parse(role).filter(|r| *r != ActorRole::System)
}

fn needs_uuid_subject(role: ActorRole) -> bool {
    matches!(
        role,
        ActorRole::Customer | ActorRole::Restaurant | ActorRole::Rider
    )
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub subject: String,
    pub role: ActorRole,
}

impl AuthUser {
    /// The actor recorded in event metadata.
    pub fn actor(&self) -> Actor {
        Actor {
            subject: self.subject.clone(),
            role: self.role,
        }
    }

    /// Ops or admin: the back office.
    pub fn is_staff(&self) -> bool {
        matches!(self.role, ActorRole::Ops | ActorRole::Admin)
    }

    fn subject_uuid(&self, role: ActorRole) -> Option<Uuid> {
        (self.role == role)
            .then(|| Uuid::parse_str(&self.subject).ok())
            .flatten()
    }

    /// The customer this token speaks for, if it is a customer token.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.subject_uuid(ActorRole::Customer).map(CustomerId)
    }

    /// The restaurant this token speaks for, if it is a restaurant token.
    pub fn restaurant_id(&self) -> Option<RestaurantId> {
        self.subject_uuid(ActorRole::Restaurant).map(RestaurantId)
    }

    /// The rider this token speaks for, if it is a rider token.
    pub fn rider_id(&self) -> Option<RiderId> {
        self.subject_uuid(ActorRole::Rider).map(RiderId)
    }

    /// 403 unless the role is one of `roles`.
    pub fn require(&self, roles: &[ActorRole]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AuthConfig: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::new("missing_token", "send `Authorization: Bearer <token>`")
        })?;
        let value = header.to_str().map_err(|_| {
            ApiError::new(
                "invalid_token",
                "the Authorization header is not a bearer token",
            )
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    "invalid_token",
                    "the Authorization header is not a bearer token",
                )
            })?;
        let user = AuthConfig::from_ref(state).verify(token)?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// A set of roles allowed on a route, named as a type so the check runs in
/// the extractor, before the body is read.
pub trait Roles: Send + Sync + 'static {
    const ALLOWED: &'static [ActorRole];
}

macro_rules! roles {
    ($($(#[$doc:meta])* $name:ident => [$($role:ident),+];)+) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl Roles for $name {
            const ALLOWED: &'static [ActorRole] = &[$(ActorRole::$role),+];
        }
    )+};
}

roles! {
    /// Customers only.
    CustomerRole => [Customer];
    /// Restaurants only.
    RestaurantRole => [Restaurant];
    /// Riders only.
    RiderRole => [Rider];
    /// Ops and admin.
    Staff => [Ops, Admin];
    /// Admin only.
    AdminRole => [Admin];
    /// Ops, admin and the read-only auditor: back-office reads and audit routes.
    StaffOrAuditor => [Ops, Admin, Auditor];
    /// A restaurant (for its own things), ops, admin or auditor: reads only.
    RestaurantOrReader => [Restaurant, Ops, Admin, Auditor];
    /// A rider (for their own things), ops, admin or auditor: reads only.
    RiderOrReader => [Rider, Ops, Admin, Auditor];
    /// A customer (for their own things), ops or admin.
    CustomerOrStaff => [Customer, Ops, Admin];
    /// A restaurant (for its own things), ops or admin.
    RestaurantOrStaff => [Restaurant, Ops, Admin];
    /// A rider (for their own things), ops or admin.
    RiderOrStaff => [Rider, Ops, Admin];
}

/// An [`AuthUser`] whose role is in `R`: 401 without a valid token, 403 with
/// another role.
#[derive(Debug)]
pub struct Authorized<R: Roles> {
    pub user: AuthUser,
    _roles: PhantomData<R>,
}

impl<R: Roles> Deref for Authorized<R> {
    type Target = AuthUser;
    fn deref(&self) -> &AuthUser {
        &self.user
    }
}

impl<S, R> FromRequestParts<S> for Authorized<R>
where
    S: Send + Sync,
    AuthConfig: FromRef<S>,
    R: Roles,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require(R::ALLOWED)?;
        Ok(Self {
            user,
            _roles: PhantomData,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_told_apart() {
        let auth = AuthConfig::new(b"secret", None);
        let sub = Uuid::new_v4().to_string();
        let token = auth.mint("customer", &sub, 60).unwrap();
        let user = auth.verify(&token).unwrap();
        assert_eq!(user.role, ActorRole::Customer);
        assert_eq!(
            user.customer_id().map(|c| c.0.to_string()),
            Some(sub.clone())
        );
        assert_eq!(user.rider_id(), None);

        let expired = auth.mint("customer", &sub, -3600).unwrap();
        assert_eq!(auth.verify(&expired).unwrap_err().code(), "token_expired");
        let forged = AuthConfig::new(b"other", None)
            .mint("admin", "root", 60)
            .unwrap();
        assert_eq!(auth.verify(&forged).unwrap_err().code(), "invalid_token");
        assert_eq!(
            auth.verify("not.a.jwt").unwrap_err().code(),
            "invalid_token"
        );
        assert!(matches!(
            auth.mint("system", "x", 60),
            Err(MintError::UnknownRole(_))
        ));
        assert!(matches!(
            auth.mint("rider", "bob", 60),
            Err(MintError::SubjectNotUuid(_))
        ));

        let with_iss = AuthConfig::new(b"secret", Some("ordertrail".into()));
        assert_eq!(with_iss.verify(&token).unwrap_err().code(), "invalid_token");
        let good = with_iss.mint("ops", "alice", 60).unwrap();
        assert!(with_iss.verify(&good).is_ok());
    }
}
