//! JWT bearer authentication and role checks.
//!
//! Every `/v1` command and reference-data route takes an [`AuthUser`] (any
//! valid token) or an [`Authorized<R>`] (a valid token whose role is in `R`).
//! Tokens carry `{sub, role, exp}` and optionally `iat`, `nbf`, `iss`, `aud`.
//! For customers, restaurants and riders `sub` is their UUID (`CustomerId`,
//! `RestaurantId`, `RiderId`), which ownership checks compare. Neither tokens
//! nor keys are ever logged.
//!
//! What a token must satisfy ([`AuthConfig::verify`]):
//! - a signature by a configured key: the key is chosen by the header's `kid`
//!   (several keys may be active at once, so keys rotate without downtime); a
//!   token without `kid` is checked with the default key (the local HS256
//!   secret), if there is one. The key fixes the algorithm: a token cannot
//!   pick another one (no `alg` confusion). HS256 serves local use; RS256,
//!   EdDSA and ES256 public keys come from a JWKS document, so a real
//!   identity provider can issue tokens.
//! - `exp` (required) not passed, `nbf` (when present) reached, `iat` (when
//!   present) not in the future, all with [`LEEWAY_SECONDS`] of clock skew;
//! - a lifetime no longer than the configured maximum (24 h by default):
//!   `exp - iat`, and `exp - now` for tokens without `iat`;
//! - `iss` and `aud` equal to the configured ones, when configured (then required).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ordertrail_schemas::{Actor, ActorRole};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// The longest token lifetime accepted unless configured otherwise: 24 hours.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string or an array of strings (checked by the JWT library).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
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
    #[error("this configuration has no HS256 secret to sign with")]
    NoSigningKey,
    #[error("cannot sign the token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Errors loading verification keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the JWKS document is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JWKS key #{index} has no `kid` (every key needs one to be chosen by)")]
    MissingKid { index: usize },
    #[error("JWKS key {kid:?} appears twice, or is the `kid` of a local key")]
    DuplicateKid { kid: String },
    #[error("JWKS key {kid:?}: {reason}")]
    Unsupported { kid: String, reason: String },
}

/// One key a token may be verified with, and the one algorithm it allows.
#[derive(Clone)]
struct VerifyingKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

/// The keys tokens are verified with. Swapped as a whole when a JWKS is reloaded.
#[derive(Clone, Default)]
struct KeyRing {
    /// The local HS256 secret: checks tokens without `kid` (and with
    /// `kid` = the configured signing kid, when there is one).
    default: Option<VerifyingKey>,
    /// Keys from a JWKS document and extra HS256 keys, by `kid`.
    by_kid: HashMap<String, VerifyingKey>,
    /// The `kid`s loaded from the JWKS (replaced on reload).
    jwks_kids: Vec<String>,
}

/// The keys and rules tokens are checked with. `Debug` never shows a key.
#[derive(Clone)]
pub struct AuthConfig {
    keys: Arc<RwLock<Arc<KeyRing>>>,
    /// The HS256 secret tokens are minted with (local use), and its `kid`.
    signing: Option<(EncodingKey, Option<String>)>,
    issuer: Option<String>,
    audience: Option<String>,
    max_lifetime: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        let mut kids: Vec<&String> = ring.by_kid.keys().collect();
        kids.sort();
        f.debug_struct("AuthConfig")
            .field("secret", &"<redacted>")
            .field("default_key", &ring.default.is_some())
            .field("kids", &kids)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

fn hs256(secret: &[u8]) -> VerifyingKey {
    VerifyingKey {
        key: DecodingKey::from_secret(secret),
        algorithm: Algorithm::HS256,
    }
}

/// The algorithms a JWKS key may name (others are refused at load time).
const JWKS_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::EdDSA,
    Algorithm::ES256,
];

/// The keys of a JWKS document, by `kid`.
fn parse_jwks(json: &str) -> Result<Vec<(String, VerifyingKey)>, KeyError> {
    let set: JwkSet = serde_json::from_str(json)?;
    let mut keys: Vec<(String, VerifyingKey)> = Vec::with_capacity(set.keys.len());
    for (index, jwk) in set.keys.iter().enumerate() {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or(KeyError::MissingKid { index })?;
        if keys.iter().any(|(k, _)| *k == kid) {
            return Err(KeyError::DuplicateKid { kid });
        }
        let unsupported = |reason: String| KeyError::Unsupported {
            kid: kid.clone(),
            reason,
        };
        // The key type decides the algorithm; an `alg` member must agree.
        let implied = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::EllipticCurve(p) => {
                return Err(unsupported(format!("curve {:?} is not supported", p.curve)));
            }
        };
        let algorithm = match jwk.common.key_algorithm {
            None => implied,
            Some(named) => named
                .to_string()
                .parse::<Algorithm>()
                .map_err(|e| unsupported(e.to_string()))?,
        };
        if algorithm != implied || !JWKS_ALGORITHMS.contains(&algorithm) {
            return Err(unsupported(format!(
                "algorithm {algorithm:?} is not supported for this key type (use RS256, EdDSA, ES256 or HS256)"
            )));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| unsupported(e.to_string()))?;
        keys.push((kid, VerifyingKey { key, algorithm }));
    }
    Ok(keys)
}

impl AuthConfig {
    /// Tokens signed with the HS256 `secret` (no `kid` needed); when `issuer`
    /// is set, `iss` must equal it. The maximum lifetime is
    /// [`DEFAULT_MAX_TOKEN_LIFETIME`].
    pub fn new(secret: &[u8], issuer: Option<String>) -> Self {
        let ring = KeyRing {
            default: Some(hs256(secret)),
            ..KeyRing::default()
        };
        Self {
            keys: Arc::new(RwLock::new(Arc::new(ring))),
            signing: Some((EncodingKey::from_secret(secret), None)),
            issuer,
            audience: None,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
        }
    }

    /// No local secret: only tokens whose `kid` names a key of a JWKS
    /// ([`AuthConfig::with_jwks`]) are accepted, and nothing can be minted.
    pub fn without_secret(issuer: Option<String>) -> Self {
        Self {
            keys: Arc::new(RwLock::new(Arc::new(KeyRing::default()))),
            signing: None,
            issuer,
            audience: None,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
        }
    }

    /// Tokens must carry this `aud` (a string, or an array containing it).
    pub fn with_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    /// The longest accepted lifetime (`exp - iat`, or `exp - now` without `iat`).
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Name the local secret `kid`: minted tokens carry it, and tokens with
    /// this `kid` are checked with the secret (tokens without `kid` still are).
    pub fn with_signing_kid(mut self, kid: Option<String>) -> Self {
        if let Some((_, current)) = &mut self.signing {
            current.clone_from(&kid);
            self.update(|ring| {
                if let (Some(kid), Some(default)) = (kid, ring.default.clone()) {
                    ring.by_kid.insert(kid, default);
                }
            });
        }
        self
    }

    /// Also accept tokens signed with this HS256 secret under `kid` (e.g. the
    /// previous secret while clients move to a new one).
    pub fn with_hs256_key(self, kid: &str, secret: &[u8]) -> Self {
        self.update(|ring| {
            ring.by_kid.insert(kid.to_owned(), hs256(secret));
        });
        self
    }

    /// Also accept tokens whose `kid` names a key of this JWKS document
    /// (`{"keys": [...]}`; RSA → RS256, OKP Ed25519 → EdDSA, EC P-256 →
    /// ES256, oct → HS256). Replaces the keys of a previously loaded JWKS.
    pub fn with_jwks(self, json: &str) -> Result<Self, KeyError> {
        self.reload_jwks(json)?;
        Ok(self)
    }

    /// Replace the JWKS keys with those of `json` (all or nothing): the
    /// rotation path. Returns how many keys the document has.
    pub fn reload_jwks(&self, json: &str) -> Result<usize, KeyError> {
        let keys = parse_jwks(json)?;
        let count = keys.len();
        // A JWKS key may not shadow the local secret's or an HS256 key's `kid`.
        let ring = self.ring();
        if let Some((kid, _)) = keys
            .iter()
            .find(|(kid, _)| ring.by_kid.contains_key(kid) && !ring.jwks_kids.contains(kid))
        {
            return Err(KeyError::DuplicateKid { kid: kid.clone() });
        }
        self.update(|ring| {
            for kid in std::mem::take(&mut ring.jwks_kids) {
                ring.by_kid.remove(&kid);
            }
            for (kid, key) in keys {
                ring.jwks_kids.push(kid.clone());
                ring.by_kid.insert(kid, key);
            }
        });
        Ok(count)
    }

    fn ring(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn update(&self, change: impl FnOnce(&mut KeyRing)) {
        let mut guard = match self.keys.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut ring = KeyRing::clone(&guard);
        change(&mut ring);
        *guard = Arc::new(ring);
    }

    /// Sign a token for `role`/`subject` with the local HS256 secret, valid
    /// for `ttl_seconds` from now (negative values mint expired tokens, for
    /// tests). It carries the configured `iss`, `aud` and signing `kid`.
    pub fn mint(&self, role: &str, subject: &str, ttl_seconds: i64) -> Result<String, MintError> {
        let parsed = parse_role(role).ok_or_else(|| MintError::UnknownRole(role.to_owned()))?;
        if needs_uuid_subject(parsed) && Uuid::parse_str(subject).is_err() {
            return Err(MintError::SubjectNotUuid(parsed));
        }
        let now = chrono::Utc::now().timestamp();
        self.sign(&Claims {
            sub: subject.to_owned(),
            role: parsed.as_str().to_owned(),
            exp: now.saturating_add(ttl_seconds),
            iat: Some(now),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
        })
    }

    /// Sign arbitrary claims with the local HS256 secret (and its `kid`).
    pub fn sign(&self, claims: &Claims) -> Result<String, MintError> {
        let (key, kid) = self.signing.as_ref().ok_or(MintError::NoSigningKey)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid.clone_from(kid);
        Ok(jsonwebtoken::encode(&header, claims, key)?)
    }

    /// Check a token: key by `kid`, signature, `exp`, `nbf`, `iat`,
    /// lifetime, issuer, audience, role and subject shape.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let invalid = |message: &str| ApiError::new("invalid_token", message.to_owned());
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the bearer token is not valid"))?;
        let ring = self.ring();
        let key = match &header.kid {
            Some(kid) => ring.by_kid.get(kid),
            None => ring.default.as_ref(),
        }
        .ok_or_else(|| invalid("the bearer token's key id is unknown"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(key.algorithm))
            .map_err(|e| match e.kind() {
                JwtErrorKind::ExpiredSignature => {
                    ApiError::new("token_expired", "the bearer token has expired")
                }
                JwtErrorKind::ImmatureSignature => ApiError::new(
                    "token_not_yet_valid",
                    "the bearer token is not valid yet (`nbf`)",
                ),
                JwtErrorKind::InvalidIssuer => invalid("the bearer token's issuer is not accepted"),
                JwtErrorKind::InvalidAudience => {
                    invalid("the bearer token's audience is not accepted")
                }
                JwtErrorKind::MissingRequiredClaim(_) => {
                    invalid("the bearer token lacks a required claim (exp, iss, aud)")
                }
                _ => invalid("the bearer token is not valid"),
            })?;
        let claims = data.claims;
        self.check_lifetime(&claims, chrono::Utc::now().timestamp())?;
        let role = parse_role(&claims.role)
            .ok_or_else(|| invalid("the bearer token names an unknown role"))?;
        if needs_uuid_subject(role) && Uuid::parse_str(&claims.sub).is_err() {
            return Err(invalid(
                "the bearer token's subject must be a UUID for this role",
            ));
        }
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(invalid("the bearer token's subject is empty or too long"));
        }
        Ok(AuthUser(Actor {
            subject: claims.sub,
            role,
        }))
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// `iat` not in the future; `exp - iat` and `exp - now` within the maximum lifetime.
    fn check_lifetime(&self, claims: &Claims, now: i64) -> Result<(), ApiError> {
        let leeway = i64::try_from(LEEWAY_SECONDS).unwrap_or(i64::MAX);
        let max = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        if let Some(iat) = claims.iat
            && iat > now.saturating_add(leeway)
        {
            return Err(ApiError::new(
                "invalid_token",
                "the bearer token was issued in the future (`iat`)",
            ));
        }
        let too_long = claims
            .iat
            .is_some_and(|iat| claims.exp.saturating_sub(iat) > max)
            || claims.exp.saturating_sub(now) > max.saturating_add(leeway);
        if too_long {
            return Err(ApiError::new(
                "token_lifetime_too_long",
                format!(
                    "the bearer token's lifetime exceeds the accepted maximum of {max} seconds"
                ),
            ));
        }
        Ok(())
    }

    /// The caller of a request, if its `Authorization` header holds a valid
    /// bearer token (used by the rate limiter; errors are answered by the
    /// [`AuthUser`] extractor).
    pub fn user_of(&self, headers: &HeaderMap) -> Result<AuthUser, ApiError> {
        self.verify(bearer_token(headers)?)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::new("missing_token", "send `Authorization: Bearer <token>`"))?;
    let not_bearer = || {
        ApiError::new(
            "invalid_token",
            "the Authorization header is not a bearer token",
        )
    };
    let value = header.to_str().map_err(|_| not_bearer())?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(not_bearer)
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

/// The authenticated caller: the actor its token names (subject and role;
/// the ownership helpers — `customer_id()`, `is_staff()`, … — are the
/// actor's, the same the workflows use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser(pub Actor);

impl std::ops::Deref for AuthUser {
    type Target = Actor;

    fn deref(&self) -> &Actor {
        &self.0
    }
}

impl AuthUser {
    /// The actor recorded in event metadata.
    pub fn actor(&self) -> Actor {
        self.0.clone()
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
        let user = AuthConfig::from_ref(state).user_of(&parts.headers)?;
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

    /// Test-only keys: RSA (PKCS#1 DER) and Ed25519 (PKCS#8 DER).
    const RSA_DER: &[u8] = include_bytes!("../tests/fixtures/test-rsa-private.der");
    const ED_DER: &[u8] = include_bytes!("../tests/fixtures/test-ed25519-private.der");

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(role: &str, sub: &str, iat: Option<i64>, exp: i64) -> Claims {
        Claims {
            sub: sub.into(),
            role: role.into(),
            exp,
            iat,
            nbf: None,
            iss: None,
            aud: None,
        }
    }

    fn sign_with(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Claims) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    /// The public halves of the test keys, as an identity provider publishes
    /// them (`kid`s `rsa-1` and `ed-1`).
    const JWKS: &str = include_str!("../tests/fixtures/test-jwks.json");

    /// [`JWKS`] with other `kid`s.
    fn jwks(rsa_kid: &str, ed_kid: &str) -> String {
        JWKS.replace("\"rsa-1\"", &format!("\"{rsa_kid}\""))
            .replace("\"ed-1\"", &format!("\"{ed_kid}\""))
    }

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
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let plain = AuthConfig::new(b"secret", None);
        let strict = AuthConfig::new(b"secret", Some("ordertrail".into()))
            .with_audience(Some("ordertrail-api".into()));
        // Refused by the strict configuration: neither iss nor aud, the right
        // issuer without audience, a wrong issuer, a wrong audience.
        for (what, iss, aud) in [
            ("neither iss nor aud", None, None),
            ("right issuer, no audience", Some("ordertrail"), None),
            ("wrong issuer", Some("someone-else"), Some("ordertrail-api")),
            ("wrong audience", Some("ordertrail"), Some("billing")),
        ] {
            let token = AuthConfig::new(b"secret", iss.map(Into::into))
                .with_audience(aud.map(Into::into))
                .mint("ops", "alice", 60)
                .unwrap();
            assert_eq!(
                strict.verify(&token).unwrap_err().code(),
                "invalid_token",
                "{what}"
            );
        }
        // Both right: accepted, also with aud as an array.
        let good = strict.mint("ops", "alice", 60).unwrap();
        assert!(strict.verify(&good).is_ok());
        let mut array = claims("ops", "alice", Some(now()), now() + 60);
        array.iss = Some("ordertrail".into());
        array.aud = Some(serde_json::json!(["other", "ordertrail-api"]));
        assert!(strict.verify(&strict.sign(&array).unwrap()).is_ok());
        // Without an audience configured, a token's aud is ignored.
        assert!(plain.verify(&good).is_ok());
    }

    #[test]
    fn nbf_in_the_future_is_refused_until_it_is_reached() {
        let auth = AuthConfig::new(b"secret", None);
        let mut later = claims("ops", "alice", Some(now()), now() + 3600);
        later.nbf = Some(now() + 600);
        assert_eq!(
            auth.verify(&auth.sign(&later).unwrap()).unwrap_err().code(),
            "token_not_yet_valid"
        );
        later.nbf = Some(now() - 5);
        assert!(auth.verify(&auth.sign(&later).unwrap()).is_ok());
        // Within the clock-skew leeway.
        later.nbf = Some(now() + 10);
        assert!(auth.verify(&auth.sign(&later).unwrap()).is_ok());
    }

    #[test]
    fn a_token_valid_until_the_year_3000_is_refused() {
        let auth = AuthConfig::new(b"secret", None);
        let year_3000 = 32_503_680_000; // 3000-01-01T00:00:00Z
        for iat in [Some(now()), None, Some(0)] {
            let token = auth.sign(&claims("admin", "root", iat, year_3000)).unwrap();
            let e = auth.verify(&token).unwrap_err();
            assert_eq!(
                (e.status().as_u16(), e.code()),
                (401, "token_lifetime_too_long"),
                "iat {iat:?}"
            );
        }
        // An iat in the future does not stretch the window.
        let token = auth
            .sign(&claims("admin", "root", Some(year_3000 - 60), year_3000))
            .unwrap();
        assert_eq!(auth.verify(&token).unwrap_err().code(), "invalid_token");
        // Exactly the maximum passes; one second more does not.
        let max = i64::try_from(DEFAULT_MAX_TOKEN_LIFETIME.as_secs()).unwrap();
        let t = now();
        assert!(
            auth.verify(&auth.sign(&claims("ops", "a", Some(t), t + max)).unwrap())
                .is_ok()
        );
        assert_eq!(
            auth.verify(
                &auth
                    .sign(&claims("ops", "a", Some(t), t + max + 1))
                    .unwrap()
            )
            .unwrap_err()
            .code(),
            "token_lifetime_too_long"
        );
        // The maximum is configurable.
        let short = AuthConfig::new(b"secret", None).with_max_lifetime(Duration::from_secs(600));
        let hour = short.mint("ops", "alice", 3600).unwrap();
        assert_eq!(
            short.verify(&hour).unwrap_err().code(),
            "token_lifetime_too_long"
        );
        assert!(
            short
                .verify(&short.mint("ops", "alice", 600).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn keys_are_chosen_by_kid_so_they_rotate_without_downtime() {
        // The server accepts the old and the new secret while clients move over.
        let server = AuthConfig::new(b"local-secret", None)
            .with_hs256_key("2026-11", b"old-secret-old-secret")
            .with_hs256_key("2026-12", b"new-secret-new-secret");
        let minted = |secret: &[u8], kid: &str| {
            AuthConfig::new(secret, None)
                .with_signing_kid(Some(kid.into()))
                .mint("ops", "a", 60)
                .unwrap()
        };
        assert!(
            server
                .verify(&minted(b"old-secret-old-secret", "2026-11"))
                .is_ok()
        );
        assert!(
            server
                .verify(&minted(b"new-secret-new-secret", "2026-12"))
                .is_ok()
        );
        // A kid names one key: the new secret under the old kid is refused.
        // An unknown kid is refused, even when the default secret signed it.
        for (secret, kid) in [
            (&b"new-secret-new-secret"[..], "2026-11"),
            (&b"local-secret"[..], "nope"),
        ] {
            assert_eq!(
                server.verify(&minted(secret, kid)).unwrap_err().code(),
                "invalid_token",
                "{kid}"
            );
        }
        // The local secret under its own kid works too.
        let named = AuthConfig::new(b"local-secret", None).with_signing_kid(Some("local".into()));
        assert!(named.verify(&named.mint("ops", "a", 60).unwrap()).is_ok());
        assert!(named.verify(&server.mint("ops", "a", 60).unwrap()).is_ok());
    }

    #[test]
    fn rs256_and_eddsa_tokens_verify_against_a_jwks() {
        let auth = AuthConfig::without_secret(Some("https://idp.example".into()))
            .with_audience(Some("ordertrail-api".into()))
            .with_jwks(&jwks("rsa-1", "ed-1"))
            .unwrap();
        let rider = Uuid::new_v4().to_string();
        let mut c = claims("rider", &rider, Some(now()), now() + 300);
        c.iss = Some("https://idp.example".into());
        c.aud = Some(serde_json::json!("ordertrail-api"));
        let rsa_key = EncodingKey::from_rsa_der(RSA_DER);
        let ed_key = EncodingKey::from_ed_der(ED_DER);

        let rs = sign_with(Algorithm::RS256, &rsa_key, Some("rsa-1"), &c);
        assert_eq!(auth.verify(&rs).unwrap().role, ActorRole::Rider);
        let ed = sign_with(Algorithm::EdDSA, &ed_key, Some("ed-1"), &c);
        assert_eq!(auth.verify(&ed).unwrap().subject, rider);

        // The kid decides the key and its algorithm: an EdDSA token under the
        // RSA kid, or a token without kid, is refused.
        let crossed = sign_with(Algorithm::EdDSA, &ed_key, Some("rsa-1"), &c);
        assert_eq!(auth.verify(&crossed).unwrap_err().code(), "invalid_token");
        let no_kid = sign_with(Algorithm::RS256, &rsa_key, None, &c);
        assert_eq!(auth.verify(&no_kid).unwrap_err().code(), "invalid_token");
        // No local secret: nothing can be minted, and an HS256 token signed
        // with the public key's bytes (alg confusion) is refused.
        assert!(matches!(
            auth.mint("ops", "a", 60),
            Err(MintError::NoSigningKey)
        ));
        let confused = sign_with(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_DER),
            Some("rsa-1"),
            &c,
        );
        assert_eq!(auth.verify(&confused).unwrap_err().code(), "invalid_token");
        // Lifetime and nbf rules hold for asymmetric tokens too.
        let mut long = c.clone();
        long.exp = 32_503_680_000;
        let long = sign_with(Algorithm::RS256, &rsa_key, Some("rsa-1"), &long);
        assert_eq!(
            auth.verify(&long).unwrap_err().code(),
            "token_lifetime_too_long"
        );

        // Reloading the JWKS rotates: the old kid stops working, the new one works.
        assert_eq!(auth.reload_jwks(&jwks("rsa-2", "ed-2")).unwrap(), 2);
        assert_eq!(auth.verify(&rs).unwrap_err().code(), "invalid_token");
        let rs2 = sign_with(Algorithm::RS256, &rsa_key, Some("rsa-2"), &c);
        assert!(auth.verify(&rs2).is_ok());
    }

    #[test]
    fn bad_jwks_documents_are_refused_whole() {
        let auth = AuthConfig::without_secret(None);
        assert!(matches!(auth.reload_jwks("{"), Err(KeyError::Json(_))));
        let no_kid = jwks("a", "b").replace("\"kid\": \"a\",", "");
        assert!(matches!(
            auth.reload_jwks(&no_kid),
            Err(KeyError::MissingKid { .. })
        ));
        let shadowing =
            AuthConfig::new(b"local-secret", None).with_signing_kid(Some("rsa-1".into()));
        assert!(matches!(
            shadowing.reload_jwks(&jwks("rsa-1", "ed-1")),
            Err(KeyError::DuplicateKid { .. })
        ));
        let twice = jwks("same", "same");
        assert!(matches!(
            auth.reload_jwks(&twice),
            Err(KeyError::DuplicateKid { .. })
        ));
        let mislabelled = jwks("a", "b").replace("\"alg\": \"RS256\"", "\"alg\": \"HS256\"");
        assert!(matches!(
            auth.reload_jwks(&mislabelled),
            Err(KeyError::Unsupported { .. })
        ));
    }
}
