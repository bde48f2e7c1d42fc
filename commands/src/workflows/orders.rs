//! Order use cases, and recording cash collected for an order.

use chrono::{DateTime, Utc};
use ordertrail_domain::order as command;
use ordertrail_domain::payment::RecordCashCollected as RecordCash;
use ordertrail_domain::{ErrorKind, Order, OrderCommand, OrderStatus, PaymentStatus};
use ordertrail_schemas::events::{DeliveryAddress, PaymentMethod};
use ordertrail_schemas::{
    ActorRole, CustomerId, DeliveryId, MenuItemId, Money, OrderId, PaymentId, RestaurantId, RiderId,
};
use serde::{Deserialize, Serialize};

use super::{customer_may_act, restaurant_may_act};
use crate::catalog;
use crate::service::{
    CommandContext, CommandError, CommandOutcome, CommandService, Start, order_not_found,
};

/// Place an order: the restaurant and the menu items come from the catalog
/// (prices are never taken from the client). The order id derives from the
/// command id, so a retried request addresses the same order (and is refused
/// a second `OrderPlaced` even after its key and command log rows expired);
/// it is time-ordered when the command id is (no key, or a UUIDv7 key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub customer_id: CustomerId,
    pub restaurant_id: RestaurantId,
    pub items: Vec<(MenuItemId, u32)>,
    pub delivery_address: DeliveryAddress,
    pub payment_method: PaymentMethod,
    /// Tip in minor units of the restaurant's currency.
    pub tip_minor: Option<i64>,
}

impl PlaceOrder {
    pub(super) fn target(&self, ctx: &CommandContext) -> OrderId {
        OrderId(ctx.derived_id("order"))
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let order_id = self.target(ctx);
        let ids: Vec<MenuItemId> = self.items.iter().map(|(id, _)| *id).collect();
        let (restaurant, found) =
            catalog::restaurant_with_menu_items(s.pool(), self.restaurant_id, &ids)
                .await?
                .ok_or_else(|| {
                    CommandError::rejected(
                        "restaurant_not_found",
                        ErrorKind::NotFound,
                        format!("restaurant {} does not exist", self.restaurant_id),
                    )
                })?;
        let mut items = Vec::with_capacity(self.items.len());
        for (id, quantity) in &self.items {
            let item = found.iter().find(|m| m.id == *id).ok_or_else(|| {
                CommandError::rejected(
                    "menu_item_not_found",
                    ErrorKind::Invalid,
                    format!("menu item {id} does not exist"),
                )
            })?;
            items.push((item.snapshot(restaurant.currency), *quantity));
        }
        let place = command::PlaceOrder {
            order_id,
            customer_id: self.customer_id,
            restaurant: restaurant.snapshot(),
            items,
            delivery_address: self.delivery_address,
            payment_method: self.payment_method,
            tip: self.tip_minor.map(|t| Money::new(t, restaurant.currency)),
            now: Utc::now(),
        };
        // A new id: decided on the empty state without reading; should the
        // order exist after all, the append conflicts and the conflict path
        // answers from the command log.
        s.decide_on(ctx, order_id, Start::New, |_, _| Ok(place.into()))
            .await
    }
}

/// Workflows decided on an existing order alone: `decide` gets the order
/// after the not-found check.
macro_rules! on_order {
    ($($name:ident),+ $(,)?) => {$(
        impl $name {
            pub(super) fn target(&self, _: &CommandContext) -> OrderId {
                self.order_id
            }

            pub(super) async fn perform(
                self,
                s: &CommandService,
                ctx: &CommandContext,
            ) -> Result<CommandOutcome, CommandError> {
                let id = self.order_id;
                s.decide_on(ctx, id, Start::Load, |order, version| {
                    if version == 0 {
                        return Err(order_not_found(id));
                    }
                    self.decide(ctx, order)
                })
                .await
            }
        }
    )+};
}

on_order!(
    AcceptOrder,
    RejectOrder,
    MarkReady,
    MarkPickedUp,
    MarkDelivered,
    CancelOrder
);

/// Confirm an order for the restaurant: a card order only once its payment
/// is authorized (the saga's step after the authorization; staff by hand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmOrder {
    pub order_id: OrderId,
}

impl ConfirmOrder {
    pub(super) fn target(&self, _: &CommandContext) -> OrderId {
        self.order_id
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let id = self.order_id;
        // The order and its payment in one round trip.
        let (order, payment) = s.load_order_and_payment(id).await?;
        let payment = payment.aggregate;
        s.decide_on(ctx, id, Start::Loaded(order), move |order, version| {
            if version == 0 {
                return Err(order_not_found(id));
            }
            let payment_id = if order.is_card_payment() {
                if payment.status() != Some(PaymentStatus::Authorized) {
                    return Err(CommandError::rejected(
                        "payment_not_authorized",
                        ErrorKind::Conflict,
                        "the order's card payment is not authorized",
                    ));
                }
                Some(PaymentId::for_order(id))
            } else {
                None
            };
            Ok(command::ConfirmOrder {
                payment_id,
                now: Utc::now(),
            }
            .into())
        })
        .await
    }
}

/// The restaurant accepts one of its orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptOrder {
    pub order_id: OrderId,
    pub preparation_minutes: u32,
}

impl AcceptOrder {
    fn decide(self, ctx: &CommandContext, order: &Order) -> Result<OrderCommand, CommandError> {
        restaurant_may_act(&ctx.actor, self.order_id, order)?;
        Ok(command::AcceptOrder {
            preparation_minutes: self.preparation_minutes,
            now: Utc::now(),
        }
        .into())
    }
}

/// The restaurant rejects one of its orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectOrder {
    pub order_id: OrderId,
    pub reason: String,
}

impl RejectOrder {
    fn decide(self, ctx: &CommandContext, order: &Order) -> Result<OrderCommand, CommandError> {
        restaurant_may_act(&ctx.actor, self.order_id, order)?;
        Ok(command::RejectOrder {
            reason: self.reason,
            now: Utc::now(),
        }
        .into())
    }
}

/// The restaurant has one of its orders ready for pickup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkReady {
    pub order_id: OrderId,
}

impl MarkReady {
    fn decide(self, ctx: &CommandContext, order: &Order) -> Result<OrderCommand, CommandError> {
        restaurant_may_act(&ctx.actor, self.order_id, order)?;
        Ok(command::MarkReadyForPickup { now: Utc::now() }.into())
    }
}

/// The order left the restaurant with this rider (the saga, after the
/// delivery's pickup; staff by hand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkPickedUp {
    pub order_id: OrderId,
    pub rider_id: RiderId,
    /// Business time of the pickup; now when absent.
    pub at: Option<DateTime<Utc>>,
}

impl MarkPickedUp {
    fn decide(self, _: &CommandContext, _: &Order) -> Result<OrderCommand, CommandError> {
        Ok(command::MarkPickedUp {
            rider_id: self.rider_id,
            now: self.at.unwrap_or_else(Utc::now),
        }
        .into())
    }
}

/// The order reached the customer (the saga, after the delivery's
/// completion; staff by hand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkDelivered {
    pub order_id: OrderId,
    /// Business time of the hand-over (the settlement day follows it); now
    /// when absent.
    pub at: Option<DateTime<Utc>>,
}

impl MarkDelivered {
    fn decide(self, _: &CommandContext, _: &Order) -> Result<OrderCommand, CommandError> {
        Ok(command::MarkDelivered {
            now: self.at.unwrap_or_else(Utc::now),
        }
        .into())
    }
}

/// Cancel an order: its customer, staff or the saga; the domain decides which
/// states allow which role (the caller's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub order_id: OrderId,
    pub reason: String,
}

impl CancelOrder {
    fn decide(self, ctx: &CommandContext, order: &Order) -> Result<OrderCommand, CommandError> {
        customer_may_act(&ctx.actor, self.order_id, order)?;
        Ok(command::CancelOrder {
            reason: self.reason,
            by: ctx.actor.role,
            now: Utc::now(),
        }
        .into())
    }
}

/// The rider collected the order total in cash: creates the order's payment.
/// A rider may record it only for the delivery they are assigned to (any
/// other order is answered as not found, whatever its payment method);
/// staff and the saga name the delivery's rider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordCashCollected {
    pub order_id: OrderId,
}

impl RecordCashCollected {
    pub(super) fn target(&self, _: &CommandContext) -> PaymentId {
        PaymentId::for_order(self.order_id)
    }

    pub(super) async fn perform(
        self,
        s: &CommandService,
        ctx: &CommandContext,
    ) -> Result<CommandOutcome, CommandError> {
        let order_id = self.order_id;
        let (order, _) = s
            .load_order(order_id)
            .await?
            .ok_or_else(|| order_not_found(order_id))?;
        let assigned = s
            .load_delivery(DeliveryId::for_order(order_id))
            .await?
            .and_then(|(delivery, _)| delivery.assigned_rider());
        let rider_id = if ctx.actor.role == ActorRole::Rider {
            match (ctx.actor.rider_id(), assigned) {
                (Some(me), Some(assigned)) if me == assigned => Some(me),
                _ => return Err(order_not_found(order_id)),
            }
        } else {
            None
        };
        if order.payment_method() != Some(&PaymentMethod::Cash) {
            return Err(CommandError::rejected(
                "payment_method_mismatch",
                ErrorKind::Conflict,
                "the order is not paid in cash",
            ));
        }
        let rider_id = rider_id.or(assigned).or(order.rider_id()).ok_or_else(|| {
            CommandError::rejected(
                "rider_not_assigned",
                ErrorKind::Conflict,
                "no rider is assigned to this order's delivery",
            )
        })?;
        let (restaurant_id, amount) = restaurant_and_total(&order, order_id)?;
        let payment_id = self.target(ctx);
        let record = RecordCash {
            payment_id,
            order_id,
            restaurant_id,
            amount,
            rider_id,
            now: Utc::now(),
        };
        s.decide_on(ctx, payment_id, Start::Load, |_, _| Ok(record.into()))
            .await
    }
}

/// Who gets paid and how much for a placed order: the money commands
/// (authorize, record cash) take both from the order, never from the client.
pub(super) fn restaurant_and_total(
    order: &Order,
    order_id: OrderId,
) -> Result<(RestaurantId, Money), CommandError> {
    match (order.restaurant_id(), order.price()) {
        (Some(r), Some(price)) => Ok((r, price.total)),
        _ => Err(CommandError::Internal(format!(
            "placed order {order_id} has no restaurant or price"
        ))),
    }
}

/// The order must exist and be accepted (or ready) before its delivery is
/// requested.
pub(super) fn accepted(order: &Order, order_id: OrderId) -> Result<(), CommandError> {
    if matches!(
        order.status(),
        Some(OrderStatus::Accepted | OrderStatus::ReadyForPickup)
    ) {
        return Ok(());
    }
    Err(CommandError::rejected(
        "order_not_accepted",
        ErrorKind::Conflict,
        format!(
            "order {order_id} must be accepted by the restaurant before a delivery is requested"
        ),
    ))
}
