//! Why a delivery command was refused.

use chrono::{DateTime, Utc};
use ordertrail_schemas::{DeliveryId, RiderId};

use crate::ErrorKind;
use ordertrail_schemas::DeliveryStatus;

/// Why a delivery command was refused. `code()` is stable; `kind()` says
/// which HTTP status family it belongs to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Delivery not found (command `command`).
    #[error("delivery not found (command {command})")]
    NotFound {
        /// The command that found no delivery.
        command: &'static str,
    },
    /// Delivery `delivery_id` has already been requested.
    #[error("delivery {delivery_id} has already been requested")]
    AlreadyRequested {
        /// The delivery.
        delivery_id: DeliveryId,
    },
    /// `field` has invalid coordinates (`lat`, `lon`).
    #[error("{field} has invalid coordinates ({lat}, {lon})")]
    InvalidCoordinates {
        /// The field that was refused.
        field: &'static str,
        /// Latitude given.
        lat: f64,
        /// Longitude given.
        lon: f64,
    },
    /// A dropoff code is exactly 4 digits (got `length` characters).
    #[error("a dropoff code is exactly 4 digits (got {length} characters)")]
    InvalidDropoffCode {
        /// Characters given.
        length: usize,
    },
    /// A delivery is requested with a keyed drop-off code hash (`hmac-sha256:` + 64 hex digits).
    #[error(
        "a delivery is requested with a keyed drop-off code hash (`hmac-sha256:` + 64 hex digits)"
    )]
    InvalidDropoffCodeHash,
    /// Delivery in status `status` cannot be assigned.
    #[error("delivery in status {status} cannot be assigned")]
    NotAssignable {
        /// The delivery's current status.
        status: DeliveryStatus,
    },
    /// Delivery is already assigned to another rider.
    #[error("delivery is already assigned to another rider")]
    AlreadyAssigned {
        /// The rider holding the delivery.
        rider_id: RiderId,
    },
    /// Rider `rider_id` is already assigned to this delivery.
    #[error("rider {rider_id} is already assigned to this delivery")]
    RiderAlreadyAssigned {
        /// The rider named by the command.
        rider_id: RiderId,
    },
    /// Delivery in status `status` cannot be unassigned.
    #[error("delivery in status {status} cannot be unassigned")]
    NotUnassignable {
        /// The delivery's current status.
        status: DeliveryStatus,
    },
    /// Rider `rider_id` is not assigned to this delivery.
    #[error("rider {rider_id} is not assigned to this delivery")]
    RiderNotAssigned {
        /// The rider named by the command.
        rider_id: RiderId,
    },
    /// Delivery in status `status` takes no location reports.
    #[error("delivery in status {status} takes no location reports")]
    NotTrackable {
        /// The delivery's current status.
        status: DeliveryStatus,
    },
    /// Location reported at `reported_at` is before the previous report at `previous`.
    #[error("location reported at {reported_at} is before the previous report at {previous}")]
    LocationTimestampRegressed {
        /// Device time of this report.
        reported_at: DateTime<Utc>,
        /// Device time of the previous report.
        previous: DateTime<Utc>,
    },
    /// Location reported at `reported_at` is more than `max_lead_seconds` s ahead of `now`.
    #[error("location reported at {reported_at} is more than {max_lead_seconds} s ahead of {now}")]
    LocationTimestampInFuture {
        /// Device time of this report.
        reported_at: DateTime<Utc>,
        /// Server time.
        now: DateTime<Utc>,
        /// How far ahead of server time a fix may be, seconds.
        max_lead_seconds: i64,
    },
    /// Rider moved `distance_m` m in `elapsed_ms` ms, faster than `max_kmh` km/h.
    #[error("rider moved {distance_m} m in {elapsed_ms} ms, faster than {max_kmh} km/h")]
    ImplausibleLocation {
        /// The distance, metres.
        distance_m: u64,
        /// Device time between the two fixes, milliseconds.
        elapsed_ms: i64,
        /// The fastest plausible speed, km/h.
        max_kmh: u32,
    },
    /// Delivery in status `status` is not awaiting pickup.
    #[error("delivery in status {status} is not awaiting pickup")]
    NotAwaitingPickup {
        /// The delivery's current status.
        status: DeliveryStatus,
    },
    /// Delivery in status `status` cannot be completed.
    #[error("delivery in status {status} cannot be completed")]
    NotCompletable {
        /// The delivery's current status.
        status: DeliveryStatus,
    },
    /// Dropoff code was wrong `attempts` times; no more attempts.
    #[error("dropoff code was wrong {attempts} times; no more attempts")]
    DropoffAttemptsExhausted {
        /// Wrong codes entered so far.
        attempts: u32,
    },
    /// Delivery in status `status` cannot fail.
    #[error("delivery in status {status} cannot fail")]
    NotFailable {
        /// The delivery's current status.
        status: DeliveryStatus,
    },
    /// Delivery in status `status` cannot be cancelled.
    #[error("delivery in status {status} cannot be cancelled")]
    NotCancellable {
        /// The delivery's current status.
        status: DeliveryStatus,
    },
    /// Delivery in status `status` cannot be flagged.
    #[error("delivery in status {status} cannot be flagged")]
    NotFlaggable {
        /// The delivery's current status.
        status: DeliveryStatus,
    },
    /// Delivery is already flagged for operations.
    #[error("delivery is already flagged for operations")]
    AlreadyFlagged,
    /// A reason is required to `action`.
    #[error("a reason is required to {action}")]
    ReasonRequired {
        /// What the reason was needed for.
        action: &'static str,
    },
    /// A reason or other text was refused (see [`TextError`](crate::text::TextError)).
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

domain_error!(DeliveryError);
