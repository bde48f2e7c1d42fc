//! Delivery use cases: request, assign and unassign a rider, location
//! reports, pickup, completion with the drop-off code, failure,
//! cancellation.

use chrono::{DateTime, Utc};
use ordertrail_domain::delivery as command;
use ordertrail_domain::{Delivery, DeliveryCommand, ErrorKind};
use ordertrail_schemas::{DeliveryId, GeoPoint, OrderId, RiderId};
use serde::{Deserialize, Serialize};

pub use ordertrail_domain::delivery::MAX_DROPOFF_ATTEMPTS;

use super::orders::accepted;
use super::{restaurant_may_act, rider_may_act};
use crate::catalog;
use crate::service::{
    CommandContext, CommandError, CommandOutcome, CommandService, Start, not_found, order_not_found,
};

/// Decide on an existing delivery the caller may act on (a rider: only the
/// one assigned); `build` gets the delivery.
async fn on_delivery(
    s: &CommandService,
    ctx: &CommandContext,
    id: DeliveryId,
    build: impl FnOnce(&Delivery) -> Result<DeliveryCommand, CommandError>,
) -> Result<CommandOutcome, CommandError> {
    s.decide_on(ctx, id, Start::Load, |delivery, version| {
        if version == 0 {
            return Err(not_found(id));
        }
        rider_may_act(&ctx.actor, id, delivery)?;
        build(delivery)
    })
    .await
}

/// Workflows decided on an existing delivery the caller may act on, from
/// the request alone (see [`on_delivery`]).
macro_rules! on_delivery {
    ($($name:ident),+ $(,)?) => {$(
        impl $name {
            pub(super) fn target(&self, _: &CommandContext) -> DeliveryId {
                self.delivery_id
            }

            pub(super) async fn perform(
                self,
                s: &CommandService,
                ctx: &CommandContext,
            ) -> Result<CommandOutcome, CommandError> {
                on_delivery(s, ctx, self.delivery_id, |_| self.decide(s, ctx)).await
            }
        }
    )+};
}

on_delivery!(
    UnassignRider,
    ReportLocation,
    ConfirmPickup,
    CompleteDelivery,
    FailDelivery,
    CancelDelivery
);

/// The rider acting: only the assigned rider reports, picks up, completes.
fn acting_rider(ctx: &CommandContext, what: &str) -> Result<RiderId, CommandError> {
    ctx.actor.rider_id().ok_or_else(|| {
        CommandError::rejected(
            "forbidden",
            ErrorKind::Forbidden,
            format!("only the assigned rider {what}"),
        )
    })
}

/// Request the delivery of an accepted order: pickup at the restaurant,
/// drop-off at the customer's address, a 4-digit drop-off code derived from
/// the delivery id with the service's key (the same code on every retry).
/// The order's restaurant, staff or the saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestDelivery {
    pub order_id: OrderId,
}

impl RequestDelivery {
    pub(super) fn target(&self, _: &CommandContext) -> DeliveryId {
        DeliveryId::for_order(self.order_id)
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let order_id = self.order_id;
        let delivery_id = self.target(ctx);
        let (order, _) = s
            .load_order(order_id)
            .await?
            .ok_or_else(|| order_not_found(order_id))?;
        restaurant_may_act(&ctx.actor, order_id, &order)?;
        accepted(&order, order_id)?;
        let placed = order
            .placed()
            .ok_or_else(|| CommandError::Internal(format!("order {order_id} has no placement")))?;
        let key = s.dropoff_code_key();
        let request = command::RequestDelivery {
            delivery_id,
            order_id,
            restaurant_id: placed.restaurant_id,
            pickup: placed.restaurant_location,
            dropoff: placed.delivery_address.location,
            dropoff_code_hash: key.hash(delivery_id, &key.code_for(delivery_id)),
            ready_by: order.ready_by(),
            now: Utc::now(),
        };
        s.decide_on(ctx, delivery_id, Start::Load, |_, _| Ok(request.into()))
            .await
    }
}

/// Assign a rider: staff name any active rider, a rider only themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignRider {
    pub delivery_id: DeliveryId,
    pub rider_id: RiderId,
}

impl AssignRider {
    pub(super) fn target(&self, _: &CommandContext) -> DeliveryId {
        self.delivery_id
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let (id, rider_id) = (self.delivery_id, self.rider_id);
        if ctx.actor.rider_id().is_some_and(|me| me != rider_id) {
            return Err(CommandError::rejected(
                "forbidden",
                ErrorKind::Forbidden,
                "a rider may only assign themselves",
            ));
        }
        let rider = catalog::get_rider(s.pool(), rider_id).await?;
        s.decide_on(ctx, id, Start::Load, |_, version| {
            if version == 0 {
                return Err(not_found(id));
            }
            match rider {
                None => Err(CommandError::rejected(
                    "rider_not_found",
                    ErrorKind::Invalid,
                    format!("rider {rider_id} does not exist"),
                )),
                Some(rider) if !rider.active => Err(CommandError::rejected(
                    "rider_inactive",
                    ErrorKind::Conflict,
                    format!("rider {rider_id} is not active"),
                )),
                Some(_) => Ok(command::AssignRider {
                    rider_id,
                    now: Utc::now(),
                }
                .into()),
            }
        })
        .await
    }
}

/// Take the rider off a delivery (staff, the saga).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnassignRider {
    pub delivery_id: DeliveryId,
    pub reason: String,
}

impl UnassignRider {
    fn decide(
        self,
        _: &CommandService,
        _: &CommandContext,
    ) -> Result<DeliveryCommand, CommandError> {
        Ok(command::UnassignRider {
            reason: self.reason,
            now: Utc::now(),
        }
        .into())
    }
}

/// The assigned rider reports where they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportLocation {
    pub delivery_id: DeliveryId,
    pub location: GeoPoint,
    pub reported_at: DateTime<Utc>,
    pub accuracy_m: Option<u32>,
}

impl ReportLocation {
    fn decide(
        self,
        _: &CommandService,
        ctx: &CommandContext,
    ) -> Result<DeliveryCommand, CommandError> {
        Ok(command::ReportLocation {
            rider_id: acting_rider(ctx, "reports locations")?,
            location: self.location,
            reported_at: self.reported_at,
            accuracy_m: self.accuracy_m,
            now: Utc::now(),
        }
        .into())
    }
}

/// The assigned rider picked the order up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmPickup {
    pub delivery_id: DeliveryId,
}

impl ConfirmPickup {
    fn decide(
        self,
        _: &CommandService,
        ctx: &CommandContext,
    ) -> Result<DeliveryCommand, CommandError> {
        Ok(command::ConfirmPickup {
            rider_id: acting_rider(ctx, "confirms pickup")?,
            now: Utc::now(),
        }
        .into())
    }
}

/// The assigned rider hands the order over, proven by the customer's
/// drop-off code (a wrong code is recorded as `DropoffCodeRejected`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteDelivery {
    pub delivery_id: DeliveryId,
    pub dropoff_code: String,
}

impl CompleteDelivery {
    fn decide(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<DeliveryCommand, CommandError> {
        Ok(command::CompleteDelivery {
            rider_id: acting_rider(ctx, "completes a delivery")?,
            dropoff_code_hashes: s.dropoff_code_hashes(self.delivery_id, &self.dropoff_code),
            dropoff_code: self.dropoff_code,
            now: Utc::now(),
        }
        .into())
    }
}

/// The delivery cannot be completed (its rider, staff).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailDelivery {
    pub delivery_id: DeliveryId,
    pub reason: String,
}

impl FailDelivery {
    fn decide(
        self,
        _: &CommandService,
        _: &CommandContext,
    ) -> Result<DeliveryCommand, CommandError> {
        Ok(command::FailDelivery {
            reason: self.reason,
            now: Utc::now(),
        }
        .into())
    }
}

/// The delivery is no longer needed, before pickup (staff, the saga).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelDelivery {
    pub delivery_id: DeliveryId,
    pub reason: String,
}

impl CancelDelivery {
    fn decide(
        self,
        _: &CommandService,
        _: &CommandContext,
    ) -> Result<DeliveryCommand, CommandError> {
        Ok(command::CancelDelivery {
            reason: self.reason,
            now: Utc::now(),
        }
        .into())
    }
}
