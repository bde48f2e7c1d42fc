//! Why a delivery command was refused.

use chrono::{DateTime, Utc};
use ordertrail_schemas::{DeliveryId, RiderId};

use crate::{DomainError, ErrorKind};
use ordertrail_schemas::DeliveryStatus;

/// Why a delivery command was refused. `code()` is stable; `kind()` says
/// which HTTP status family it belongs to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    #[error("delivery not found (command {command})")]
    NotFound { command: &'static str },
    #[error("delivery {delivery_id} has already been requested")]
    AlreadyRequested { delivery_id: DeliveryId },
    #[error("{field} has invalid coordinates ({lat}, {lon})")]
    InvalidCoordinates {
        field: &'static str,
        lat: f64,
        lon: f64,
    },
    #[error("a dropoff code is exactly 4 digits (got {length} characters)")]
    InvalidDropoffCode { length: usize },
    #[error(
        "a delivery is requested with a keyed drop-off code hash (`hmac-sha256:` + 64 hex digits)"
    )]
    InvalidDropoffCodeHash,
    #[error("delivery in status {status} cannot be assigned")]
    NotAssignable { status: DeliveryStatus },
    #[error("delivery is already assigned to another rider")]
    AlreadyAssigned { rider_id: RiderId },
    #[error("rider {rider_id} is already assigned to this delivery")]
    RiderAlreadyAssigned { rider_id: RiderId },
    #[error("delivery in status {status} cannot be unassigned")]
    NotUnassignable { status: DeliveryStatus },
    #[error("rider {rider_id} is not assigned to this delivery")]
    RiderNotAssigned { rider_id: RiderId },
    #[error("delivery in status {status} takes no location reports")]
    NotTrackable { status: DeliveryStatus },
    #[error("location reported at {reported_at} is before the previous report at {previous}")]
    LocationTimestampRegressed {
        reported_at: DateTime<Utc>,
        previous: DateTime<Utc>,
    },
    #[error("location reported at {reported_at} is more than {max_lead_seconds} s ahead of {now}")]
    LocationTimestampInFuture {
        reported_at: DateTime<Utc>,
        now: DateTime<Utc>,
        max_lead_seconds: i64,
    },
    #[error("rider moved {distance_m} m in {elapsed_ms} ms, faster than {max_kmh} km/h")]
    ImplausibleLocation {
        distance_m: u64,
        elapsed_ms: i64,
        max_kmh: u32,
    },
    #[error("delivery in status {status} is not awaiting pickup")]
    NotAwaitingPickup { status: DeliveryStatus },
    #[error("delivery in status {status} cannot be completed")]
    NotCompletable { status: DeliveryStatus },
    #[error("dropoff code was wrong {attempts} times; no more attempts")]
    DropoffAttemptsExhausted { attempts: u32 },
    #[error("delivery in status {status} cannot fail")]
    NotFailable { status: DeliveryStatus },
    #[error("delivery in status {status} cannot be cancelled")]
    NotCancellable { status: DeliveryStatus },
    #[error("delivery in status {status} cannot be flagged")]
    NotFlaggable { status: DeliveryStatus },
    #[error("delivery is already flagged for operations")]
    AlreadyFlagged,
    #[error("a reason is required to {action}")]
    ReasonRequired { action: &'static str },
    #[error(transparent)]
    InvalidText(#[from] crate::text::TextError),
}

impl DeliveryError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryError::NotFound { .. } => "delivery_not_found",
            DeliveryError::AlreadyRequested { .. } => "delivery_already_requested",
            DeliveryError::InvalidCoordinates { .. } => "invalid_coordinates",
            DeliveryError::InvalidDropoffCode { .. } => "invalid_dropoff_code",
            DeliveryError::InvalidDropoffCodeHash => "invalid_dropoff_code_hash",
            DeliveryError::NotAssignable { .. } => "delivery_not_assignable",
            DeliveryError::AlreadyAssigned { .. } => "delivery_already_assigned",
            DeliveryError::RiderAlreadyAssigned { .. } => "rider_already_assigned",
            DeliveryError::NotUnassignable { .. } => "delivery_not_unassignable",
            DeliveryError::RiderNotAssigned { .. } => "rider_not_assigned",
            DeliveryError::NotTrackable { .. } => "delivery_not_trackable",
            DeliveryError::LocationTimestampRegressed { .. } => "location_timestamp_regressed",
            DeliveryError::LocationTimestampInFuture { .. } => "location_timestamp_in_future",
            DeliveryError::ImplausibleLocation { .. } => "implausible_location",
            DeliveryError::NotAwaitingPickup { .. } => "delivery_not_awaiting_pickup",
            DeliveryError::NotCompletable { .. } => "delivery_not_completable",
            DeliveryError::DropoffAttemptsExhausted { .. } => "dropoff_attempts_exhausted",
            DeliveryError::NotFailable { .. } => "delivery_not_failable",
            DeliveryError::NotCancellable { .. } => "delivery_not_cancellable",
            DeliveryError::NotFlaggable { .. } => "delivery_not_flaggable",
            DeliveryError::AlreadyFlagged => "delivery_already_flagged",
            DeliveryError::ReasonRequired { .. } => "reason_required",
            DeliveryError::InvalidText(e) => e.code(),
        }
    }

    /// Kind of failure (HTTP status family).
    pub fn kind(&self) -> ErrorKind {
        match self {
            DeliveryError::NotFound { .. } => ErrorKind::NotFound,
            DeliveryError::InvalidCoordinates { .. }
            | DeliveryError::InvalidDropoffCode { .. }
            | DeliveryError::InvalidDropoffCodeHash
            | DeliveryError::LocationTimestampRegressed { .. }
            | DeliveryError::LocationTimestampInFuture { .. }
            | DeliveryError::ImplausibleLocation { .. }
            | DeliveryError::ReasonRequired { .. }
            | DeliveryError::InvalidText(_) => ErrorKind::Invalid,
            DeliveryError::RiderNotAssigned { .. } => ErrorKind::Forbidden,
            DeliveryError::AlreadyRequested { .. }
            | DeliveryError::NotAssignable { .. }
            | DeliveryError::AlreadyAssigned { .. }
            | DeliveryError::RiderAlreadyAssigned { .. }
            | DeliveryError::NotUnassignable { .. }
            | DeliveryError::NotTrackable { .. }
            | DeliveryError::NotAwaitingPickup { .. }
            | DeliveryError::NotCompletable { .. }
            | DeliveryError::DropoffAttemptsExhausted { .. }
            | DeliveryError::NotFailable { .. }
            | DeliveryError::NotCancellable { .. }
            | DeliveryError::NotFlaggable { .. }
            | DeliveryError::AlreadyFlagged => ErrorKind::Conflict,
        }
    }
}

impl DomainError for DeliveryError {
    fn code(&self) -> &'static str {
        DeliveryError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        DeliveryError::kind(self)
    }
}
