//! Why a command did not succeed, and how store and domain errors map onto
//! the stable codes.

use std::collections::HashMap;

use cqrs_es::AggregateError;
use ordertrail_domain::{DomainError, ErrorKind};
use ordertrail_schemas::{AggregateKind, OrderId};

use super::Target;
use crate::catalog::CatalogError;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A business rule said no (the domain error's code and kind).
    #[error("{message}")]
    Rejected {
        code: &'static str,
        kind: ErrorKind,
        message: String,
    },
    /// Another command changed the aggregate first; reload and decide again.
    #[error("the {aggregate_type} was changed concurrently; retry with its new state")]
    Conflict { aggregate_type: AggregateKind },
    /// The Idempotency-Key was used before with a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// The database cannot be reached.
    #[error("the event store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A fault of our own (bad stored data, unexpected database error).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CommandError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Rejected { code, .. } => code,
            CommandError::Conflict { .. } => "concurrency_conflict",
            CommandError::IdempotencyKeyReused => "idempotency_key_reused",
            CommandError::Unavailable(_) => "dependency_unavailable",
            CommandError::Internal(_) => "internal_error",
        }
    }

    /// The kind of failure, `None` for internal faults.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            CommandError::Rejected { kind, .. } => Some(*kind),
            CommandError::Conflict { .. } => Some(ErrorKind::Conflict),
            CommandError::IdempotencyKeyReused => Some(ErrorKind::Invalid),
            CommandError::Unavailable(_) => Some(ErrorKind::Unavailable),
            CommandError::Internal(_) => None,
        }
    }

    /// A rejection with a stable code and kind.
    pub fn rejected(code: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        CommandError::Rejected {
            code,
            kind,
            message: message.into(),
        }
    }

    pub(super) fn from_domain<E: DomainError>(e: &E) -> Self {
        CommandError::Rejected {
            code: e.code(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<sqlx::Error> for CommandError {
    fn from(e: sqlx::Error) -> Self {
        if ordertrail_platform::db::is_unreachable(&e) {
            CommandError::Unavailable(Box::new(e))
        } else {
            CommandError::Internal(e.to_string())
        }
    }
}

/// Text the domain's rules refuse (a card token, a reason).
impl From<ordertrail_domain::TextError> for CommandError {
    fn from(e: ordertrail_domain::TextError) -> Self {
        CommandError::rejected(e.code(), ErrorKind::Invalid, e.to_string())
    }
}

impl From<CatalogError> for CommandError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Database(e) => e.into(),
            CatalogError::UnknownRestaurant(id) => CommandError::rejected(
                "restaurant_not_found",
                ErrorKind::NotFound,
                format!("restaurant {id} does not exist"),
            ),
            CatalogError::Invalid(m) => {
                CommandError::rejected("invalid_reference_data", ErrorKind::Invalid, m)
            }
        }
    }
}

pub(crate) fn order_not_found(id: OrderId) -> CommandError {
    not_found(id)
}

/// The answer for an aggregate that does not exist, or that the caller may
/// not see (answered the same, so that ids cannot be probed).
pub(crate) fn not_found<T: Target>(id: T) -> CommandError {
    let (code, noun) = match T::KIND {
        AggregateKind::Order => ("order_not_found", "order"),
        AggregateKind::Payment => ("payment_not_found", "payment"),
        AggregateKind::Delivery => ("delivery_not_found", "delivery"),
    };
    CommandError::rejected(
        code,
        ErrorKind::NotFound,
        format!("{noun} {id} does not exist"),
    )
}

pub(super) fn store_error<E: DomainError>(
    kind: AggregateKind,
    e: AggregateError<E>,
) -> CommandError {
    match e {
        AggregateError::UserError(e) => CommandError::from_domain(&e),
        AggregateError::AggregateConflict => CommandError::Conflict {
            aggregate_type: kind,
        },
        AggregateError::DatabaseConnectionError(e) => {
            tracing::error!(error = %e, aggregate = %kind, "event store unreachable");
            CommandError::Unavailable(e)
        }
        AggregateError::DeserializationError(e) => {
            tracing::error!(error = %e, aggregate = %kind, "stored event cannot be read");
            CommandError::Internal(format!("stored {kind} event cannot be read: {e}"))
        }
        // postgres-es folds pool time-outs, lost connections and server
        // shutdowns into `UnknownError`: an outage, not a fault.
        AggregateError::UnexpectedError(e)
            if ordertrail_platform::db::is_unreachable_source(e.as_ref()) =>
        {
            tracing::warn!(error = %e, aggregate = %kind, "event store unreachable");
            CommandError::Unavailable(e)
        }
        AggregateError::UnexpectedError(e) => {
            tracing::error!(error = %e, aggregate = %kind, "event store error");
            CommandError::Internal(format!("event store error: {e}"))
        }
    }
}

/// Error codes are `&'static str`; a stored rejection's code is mapped back to
/// the static string (leaking at most once per distinct code, of which there
/// are a few dozen).
pub(super) struct DomainCodes;

impl DomainCodes {
    pub(super) fn intern(code: &str) -> &'static str {
        use std::sync::{Mutex, OnceLock};
        static CODES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
        let codes = CODES.get_or_init(|| Mutex::new(HashMap::new()));
        let mut guard = match codes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = guard.get(code) {
            return c;
        }
        let leaked: &'static str = Box::leak(code.to_owned().into_boxed_str());
        guard.insert(code.to_owned(), leaked);
        leaked
    }
}
