//! Read-model queries for the API. Every function takes a [`Viewer`] (what the
//! caller's token allows) and returns serde + `utoipa::ToSchema` structs.

pub mod etas;
pub mod orders;
pub mod settlements;
pub mod status;

use uuid::Uuid;

pub use etas::{DeliveryEta, EtaAccuracyDay, EtaBounds};
pub use orders::{OrderDetail, OrderFilter, OrderPage, OrderSummary, SortOrder, TimelineEntry};
pub use settlements::{PlatformDaySummary, ProviderSettlementDay, RestaurantSettlementDay};
pub use status::{ProjectorStatus, projector_status};

/// Whose data the caller may see; the API maps the token to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Ops and admin: everything.
    All,
    /// A restaurant: its own orders, deliveries and settlements.
    Restaurant(Uuid),
    /// A customer: their own orders and those orders' deliveries.
    Customer(Uuid),
    /// A rider: the deliveries assigned to them and those orders.
    Rider(Uuid),
}

/// Why a query gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The viewer may not see this at all (e.g. a customer asking for settlements).
    #[error("not allowed for this viewer")]
    Forbidden,
    /// Nothing visible to the viewer has this id.
    #[error("not found")]
    NotFound,
    /// A malformed argument (bad cursor, inverted range, ...).
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl QueryError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Forbidden => "forbidden",
            QueryError::NotFound => "not_found",
            QueryError::InvalidArgument { .. } => "invalid_argument",
            QueryError::Database(_) => "unavailable",
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        QueryError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}
