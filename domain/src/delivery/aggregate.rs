//! State and rules of the `Delivery` aggregate.

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use ordertrail_schemas::DeliveryStatus;
use ordertrail_schemas::events::{
    DeliveryCancelled, DeliveryCompleted, DeliveryEvent, DeliveryFailed, DeliveryFlagged,
    DeliveryRequested, DropoffCodeRejected, PickupConfirmed, RiderAssigned, RiderLocationReported,
    RiderUnassigned,
};
use ordertrail_schemas::{DeliveryId, GeoPoint, OrderId, RestaurantId, RiderId};
use serde::{Deserialize, Serialize};

use super::commands::{
    AssignRider, CancelDelivery, CompleteDelivery, ConfirmPickup, DeliveryCommand, FailDelivery,
    FlagDelivery, ReportLocation, RequestDelivery, UnassignRider,
};
use super::errors::DeliveryError;

/// Wrong dropoff codes allowed before completion is refused.
pub const MAX_DROPOFF_ATTEMPTS: u32 = 3;
/// How far a location fix may be ahead of the server clock, seconds.
pub const MAX_LOCATION_LEAD_SECONDS: i64 = 120;
/// Fastest plausible rider movement between two fixes, km/h.
pub const MAX_RIDER_SPEED_KMH: u32 = 200;
/// The error code callers report when a `DropoffCodeRejected` was recorded.
pub const DROPOFF_CODE_INVALID: &str = "dropoff_code_invalid";

/// Whether `code` is a well-formed dropoff code: exactly 4 ASCII digits.
pub fn is_valid_dropoff_code(code: &str) -> bool {
    code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit())
}

/// A delivery. `Default` is the delivery before `RequestDelivery`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    state: Option<DeliveryState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeliveryState {
    requested: DeliveryRequested,
    status: DeliveryStatus,
    rider_id: Option<RiderId>,
    /// The assigned rider's last fix: location and device time.
    last_location: Option<(GeoPoint, DateTime<Utc>)>,
    failed_dropoff_attempts: u32,
    /// Flagged for operations in the current phase (waiting for a rider,
    /// assigned, picked up): cleared when a rider is assigned or lost and at
    /// pickup, so a delivery that loses its rider, or is overdue after
    /// pickup, can be flagged again.
    #[serde(default)]
    flagged: bool,
}

impl Delivery {
    /// `None` until the delivery is requested.
    pub fn status(&self) -> Option<DeliveryStatus> {
        self.state.as_ref().map(|s| s.status)
    }

    /// The delivery's id; `None` until requested.
    pub fn delivery_id(&self) -> Option<DeliveryId> {
        self.state.as_ref().map(|s| s.requested.delivery_id)
    }

    /// The order being delivered; `None` until requested.
    pub fn order_id(&self) -> Option<OrderId> {
        self.state.as_ref().map(|s| s.requested.order_id)
    }

    /// The restaurant the order is from; `None` until requested.
    pub fn restaurant_id(&self) -> Option<RestaurantId> {
        self.state.as_ref().map(|s| s.requested.restaurant_id)
    }

    /// Where the rider picks the order up; `None` until requested.
    pub fn pickup(&self) -> Option<GeoPoint> {
        self.state.as_ref().map(|s| s.requested.pickup)
    }

    /// Where the rider drops the order off; `None` until requested.
    pub fn dropoff(&self) -> Option<GeoPoint> {
        self.state.as_ref().map(|s| s.requested.dropoff)
    }

    /// When the food is expected to be ready, if known.
    pub fn ready_by(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|s| s.requested.ready_by)
    }

    /// The rider holding the delivery (kept after completion or failure).
    pub fn assigned_rider(&self) -> Option<RiderId> {
        self.state.as_ref().and_then(|s| s.rider_id)
    }

    /// The assigned rider's last reported location and its device time.
    pub fn last_location(&self) -> Option<(GeoPoint, DateTime<Utc>)> {
        self.state.as_ref().and_then(|s| s.last_location)
    }

    /// Wrong drop-off codes entered so far (zero before any).
    pub fn failed_dropoff_attempts(&self) -> u32 {
        self.state.as_ref().map_or(0, |s| s.failed_dropoff_attempts)
    }

    /// Whether the delivery was flagged for operations.
    pub fn is_flagged(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.flagged)
    }

    /// The pure decision: the event a command produces on this state, or why not.
    pub fn decide(&self, command: DeliveryCommand) -> Result<DeliveryEvent, DeliveryError> {
        let name = command.name();
        if let DeliveryCommand::RequestDelivery(cmd) = command {
            return match &self.state {
                Some(state) => Err(DeliveryError::AlreadyRequested {
                    delivery_id: state.requested.delivery_id,
                }),
                None => request(cmd),
            };
        }
        let state = self
            .state
            .as_ref()
            .ok_or(DeliveryError::NotFound { command: name })?;
        match command {
            DeliveryCommand::RequestDelivery(_) => Err(DeliveryError::AlreadyRequested {
                delivery_id: state.requested.delivery_id,
            }),
            DeliveryCommand::AssignRider(cmd) => state.assign(cmd),
            DeliveryCommand::UnassignRider(cmd) => state.unassign(cmd),
            DeliveryCommand::ReportLocation(cmd) => state.report_location(cmd),
            DeliveryCommand::ConfirmPickup(cmd) => state.confirm_pickup(cmd),
            DeliveryCommand::CompleteDelivery(cmd) => state.complete(cmd),
            DeliveryCommand::FailDelivery(cmd) => state.fail(cmd),
            DeliveryCommand::CancelDelivery(cmd) => state.cancel(cmd),
            DeliveryCommand::FlagDelivery(cmd) => state.flag(cmd),
        }
    }
}

fn check_point(field: &'static str, point: GeoPoint) -> Result<(), DeliveryError> {
    if point.is_valid() {
        Ok(())
    } else {
        Err(DeliveryError::InvalidCoordinates {
            field,
            lat: point.lat,
            lon: point.lon,
        })
    }
}

fn require_reason(reason: &str, action: &'static str) -> Result<(), DeliveryError> {
    if reason.trim().is_empty() {
        return Err(DeliveryError::ReasonRequired { action });
    }
    Ok(crate::text::REASON.check(reason)?)
}

fn request(cmd: RequestDelivery) -> Result<DeliveryEvent, DeliveryError> {
    check_point("pickup", cmd.pickup)?;
    check_point("dropoff", cmd.dropoff)?;
    if !cmd
        .dropoff_code_hash
        .strip_prefix(ordertrail_schemas::privacy::KEYED_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(DeliveryError::InvalidDropoffCodeHash);
    }
    Ok(DeliveryRequested {
        delivery_id: cmd.delivery_id,
        order_id: cmd.order_id,
        restaurant_id: cmd.restaurant_id,
        pickup: cmd.pickup,
        dropoff: cmd.dropoff,
        dropoff_code_hash: cmd.dropoff_code_hash,
        ready_by: cmd.ready_by,
        requested_at: cmd.now,
    }
    .into())
}

impl DeliveryState {
    /// The rider must be the one holding the delivery.
    fn require_rider(&self, rider_id: RiderId) -> Result<(), DeliveryError> {
        if self.rider_id == Some(rider_id) {
            Ok(())
        } else {
            Err(DeliveryError::RiderNotAssigned { rider_id })
        }
    }

    fn assign(&self, cmd: AssignRider) -> Result<DeliveryEvent, DeliveryError> {
        if self.status.is_final() {
            return Err(DeliveryError::NotAssignable {
                status: self.status,
            });
        }
        match self.rider_id {
            Some(holder) if holder == cmd.rider_id => {
                Err(DeliveryError::RiderAlreadyAssigned { rider_id: holder })
            }
            Some(holder) => Err(DeliveryError::AlreadyAssigned { rider_id: holder }),
            None => Ok(RiderAssigned {
                rider_id: cmd.rider_id,
                assigned_at: cmd.now,
            }
            .into()),
        }
    }

    fn unassign(&self, cmd: UnassignRider) -> Result<DeliveryEvent, DeliveryError> {
        let (DeliveryStatus::Assigned, Some(rider_id)) = (self.status, self.rider_id) else {
            return Err(DeliveryError::NotUnassignable {
                status: self.status,
            });
        };
        require_reason(&cmd.reason, "unassign a rider")?;
        Ok(RiderUnassigned {
            rider_id,
            reason: cmd.reason,
            unassigned_at: cmd.now,
        }
        .into())
    }

    fn report_location(&self, cmd: ReportLocation) -> Result<DeliveryEvent, DeliveryError> {
        if self.status.is_final() {
            return Err(DeliveryError::NotTrackable {
                status: self.status,
            });
        }
        self.require_rider(cmd.rider_id)?;
        check_point("location", cmd.location)?;
        let lead = cmd.reported_at.signed_duration_since(cmd.now);
        if lead > TimeDelta::seconds(MAX_LOCATION_LEAD_SECONDS) {
            return Err(DeliveryError::LocationTimestampInFuture {
                reported_at: cmd.reported_at,
                now: cmd.now,
                max_lead_seconds: MAX_LOCATION_LEAD_SECONDS,
            });
        }
        if let Some((previous_location, previous)) = self.last_location {
            if cmd.reported_at < previous {
                return Err(DeliveryError::LocationTimestampRegressed {
                    reported_at: cmd.reported_at,
                    previous,
                });
            }
            let elapsed_ms = cmd
                .reported_at
                .signed_duration_since(previous)
                .num_milliseconds();
            let distance_m = previous_location.distance_m(&cmd.location);
            // distance / elapsed > max speed, without dividing by a zero interval.
            let max_m_per_ms = f64::from(MAX_RIDER_SPEED_KMH) / 3_600.0;
            if distance_m > max_m_per_ms * elapsed_ms as f64 {
                return Err(DeliveryError::ImplausibleLocation {
                    distance_m: distance_m.round() as u64,
                    elapsed_ms,
                    max_kmh: MAX_RIDER_SPEED_KMH,
                });
            }
        }
        Ok(RiderLocationReported {
            rider_id: cmd.rider_id,
            location: cmd.location,
            reported_at: cmd.reported_at,
            accuracy_m: cmd.accuracy_m,
        }
        .into())
    }

    fn confirm_pickup(&self, cmd: ConfirmPickup) -> Result<DeliveryEvent, DeliveryError> {
        if self.status.is_final() || self.status == DeliveryStatus::PickedUp {
            return Err(DeliveryError::NotAwaitingPickup {
                status: self.status,
            });
        }
        self.require_rider(cmd.rider_id)?;
        Ok(PickupConfirmed {
            rider_id: cmd.rider_id,
            picked_up_at: cmd.now,
        }
        .into())
    }

    fn complete(&self, cmd: CompleteDelivery) -> Result<DeliveryEvent, DeliveryError> {
        if self.status.is_final() {
            return Err(DeliveryError::NotCompletable {
                status: self.status,
            });
        }
        self.require_rider(cmd.rider_id)?;
        if self.status != DeliveryStatus::PickedUp {
            return Err(DeliveryError::NotCompletable {
                status: self.status,
            });
        }
        if self.failed_dropoff_attempts >= MAX_DROPOFF_ATTEMPTS {
            return Err(DeliveryError::DropoffAttemptsExhausted {
                attempts: self.failed_dropoff_attempts,
            });
        }
        // A malformed code is bad input, not a guess: it does not use up an attempt.
        if !is_valid_dropoff_code(&cmd.dropoff_code) {
            return Err(DeliveryError::InvalidDropoffCode {
                length: cmd.dropoff_code.chars().count(),
            });
        }
        if !cmd
            .dropoff_code_hashes
            .contains(&self.requested.dropoff_code_hash)
        {
            return Ok(DropoffCodeRejected {
                rider_id: cmd.rider_id,
                attempts: self.failed_dropoff_attempts.saturating_add(1),
                rejected_at: cmd.now,
            }
            .into());
        }
        Ok(DeliveryCompleted {
            rider_id: cmd.rider_id,
            completed_at: cmd.now,
        }
        .into())
    }

    fn fail(&self, cmd: FailDelivery) -> Result<DeliveryEvent, DeliveryError> {
        if self.status.is_final() {
            return Err(DeliveryError::NotFailable {
                status: self.status,
            });
        }
        require_reason(&cmd.reason, "fail a delivery")?;
        Ok(DeliveryFailed {
            reason: cmd.reason,
            failed_at: cmd.now,
        }
        .into())
    }

    fn cancel(&self, cmd: CancelDelivery) -> Result<DeliveryEvent, DeliveryError> {
        if !matches!(
            self.status,
            DeliveryStatus::Requested | DeliveryStatus::Assigned
        ) {
            return Err(DeliveryError::NotCancellable {
                status: self.status,
            });
        }
        require_reason(&cmd.reason, "cancel a delivery")?;
        Ok(DeliveryCancelled {
            reason: cmd.reason,
            cancelled_at: cmd.now,
        }
        .into())
    }

    fn flag(&self, cmd: FlagDelivery) -> Result<DeliveryEvent, DeliveryError> {
        if !matches!(
            self.status,
            DeliveryStatus::Requested | DeliveryStatus::Assigned | DeliveryStatus::PickedUp
        ) {
            return Err(DeliveryError::NotFlaggable {
                status: self.status,
            });
        }
        if self.flagged {
            return Err(DeliveryError::AlreadyFlagged);
        }
        require_reason(&cmd.reason, "flag a delivery")?;
        Ok(DeliveryFlagged {
            reason: cmd.reason,
            flagged_at: cmd.now,
        }
        .into())
    }
}

impl Aggregate for Delivery {
    const TYPE: &'static str = "Delivery";
    type Command = DeliveryCommand;
    type Event = DeliveryEvent;
    type Error = DeliveryError;
    type Services = ();

    async fn handle(
        &mut self,
        command: DeliveryCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DeliveryError> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: DeliveryEvent) {
        if let DeliveryEvent::DeliveryRequested(requested) = event {
            self.state = Some(DeliveryState {
                requested,
                status: DeliveryStatus::Requested,
                rider_id: None,
                last_location: None,
                failed_dropoff_attempts: 0,
                flagged: false,
            });
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match event {
            DeliveryEvent::DeliveryRequested(_) => {}
            DeliveryEvent::RiderAssigned(e) => {
                state.status = DeliveryStatus::Assigned;
                state.rider_id = Some(e.rider_id);
                state.last_location = None;
                state.flagged = false;
            }
            DeliveryEvent::RiderUnassigned(_) => {
                state.status = DeliveryStatus::Requested;
                state.rider_id = None;
                state.last_location = None;
                state.flagged = false;
            }
            DeliveryEvent::RiderLocationReported(e) => {
                state.last_location = Some((e.location, e.reported_at))
            }
            DeliveryEvent::PickupConfirmed(_) => {
                state.status = DeliveryStatus::PickedUp;
                state.flagged = false;
            }
            DeliveryEvent::DropoffCodeRejected(e) => state.failed_dropoff_attempts = e.attempts,
            DeliveryEvent::DeliveryCompleted(_) => state.status = DeliveryStatus::Completed,
            DeliveryEvent::DeliveryFailed(_) => state.status = DeliveryStatus::Failed,
            DeliveryEvent::DeliveryCancelled(_) => state.status = DeliveryStatus::Cancelled,
            DeliveryEvent::DeliveryFlagged(_) => state.flagged = true,
        }
    }
}
