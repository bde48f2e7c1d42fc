//! State and rules of the `Order` aggregate.

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use ordertrail_schemas::OrderStatus;
use ordertrail_schemas::events::{
    OrderAccepted, OrderCancelled, OrderConfirmed, OrderDelivered, OrderEvent, OrderLine,
    OrderPickedUp, OrderPlaced, OrderReadyForPickup, OrderRejected, PaymentMethod, PriceBreakdown,
};
use ordertrail_schemas::{
    ActorRole, CustomerId, Money, MoneyError, OrderId, PaymentId, RestaurantId, RiderId,
};
use serde::{Deserialize, Serialize};

use super::commands::{
    AcceptOrder, CancelOrder, CancelUndeliverableOrder, ConfirmOrder, MarkDelivered, MarkPickedUp,
    MarkReadyForPickup, OrderCommand, OrderItem, PlaceOrder, RejectOrder,
};
use super::errors::OrderError;
use crate::catalog::{MenuItemSnapshot, RestaurantSnapshot};
use crate::{pricing, text};

/// Most units of one menu item in one order.
pub const MAX_QUANTITY_PER_LINE: u32 = 50;
/// Shortest preparation estimate a restaurant may give, minutes.
pub const MIN_PREPARATION_MINUTES: u32 = 1;
/// Longest preparation estimate a restaurant may give, minutes.
pub const MAX_PREPARATION_MINUTES: u32 = 180;

/// Whether `role` may cancel an order in `status`.
pub(crate) fn cancellable_by(status: OrderStatus, role: ActorRole) -> bool {
    use OrderStatus::*;
    match role {
        ActorRole::Customer => matches!(status, Placed | Confirmed),
        ActorRole::Ops | ActorRole::Admin | ActorRole::System => {
            matches!(status, Placed | Confirmed | Accepted | ReadyForPickup)
        }
        ActorRole::Restaurant | ActorRole::Rider | ActorRole::Auditor => false,
    }
}

/// An order. `Default` is the order before `PlaceOrder`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    state: Option<OrderState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderState {
    placed: OrderPlaced,
    status: OrderStatus,
    payment_id: Option<PaymentId>,
    ready_by: Option<DateTime<Utc>>,
    rider_id: Option<RiderId>,
    cancelled_by: Option<ActorRole>,
}

impl Order {
    /// `None` until the order is placed.
    pub fn status(&self) -> Option<OrderStatus> {
        self.state.as_ref().map(|s| s.status)
    }

    /// The placement as recorded: lines, address, payment method, price, times.
    pub fn placed(&self) -> Option<&OrderPlaced> {
        self.state.as_ref().map(|s| &s.placed)
    }

    /// The order's id; `None` until placed.
    pub fn order_id(&self) -> Option<OrderId> {
        self.placed().map(|p| p.order_id)
    }

    /// The customer who placed it; `None` until placed.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.placed().map(|p| p.customer_id)
    }

    /// The restaurant it is from; `None` until placed.
    pub fn restaurant_id(&self) -> Option<RestaurantId> {
        self.placed().map(|p| p.restaurant_id)
    }

    /// The price fixed at placement; `None` until placed.
    pub fn price(&self) -> Option<&PriceBreakdown> {
        self.placed().map(|p| &p.price)
    }

    /// How the customer pays; `None` until placed.
    pub fn payment_method(&self) -> Option<&PaymentMethod> {
        self.placed().map(|p| &p.payment_method)
    }

    /// Whether the order is paid by card (`false` for cash and before placement).
    pub fn is_card_payment(&self) -> bool {
        matches!(self.payment_method(), Some(PaymentMethod::Card { .. }))
    }

    /// The payment the order was confirmed with (card orders).
    pub fn payment_id(&self) -> Option<PaymentId> {
        self.state.as_ref().and_then(|s| s.payment_id)
    }

    /// When the restaurant expects the food to be ready (after acceptance).
    pub fn ready_by(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|s| s.ready_by)
    }

    /// The rider who picked the order up.
    pub fn rider_id(&self) -> Option<RiderId> {
        self.state.as_ref().and_then(|s| s.rider_id)
    }

    /// Who cancelled the order, if it was cancelled.
    pub fn cancelled_by(&self) -> Option<ActorRole> {
        self.state.as_ref().and_then(|s| s.cancelled_by)
    }

    /// The pure decision: the event a command produces on this state, or why not.
    pub fn decide(&self, command: OrderCommand) -> Result<OrderEvent, OrderError> {
        let name = command.name();
        if let OrderCommand::PlaceOrder(cmd) = command {
            return match &self.state {
                Some(state) => Err(OrderError::AlreadyPlaced {
                    order_id: state.placed.order_id,
                }),
                None => place(cmd),
            };
        }
        let state = self
            .state
            .as_ref()
            .ok_or(OrderError::NotFound { command: name })?;
        match command {
            OrderCommand::PlaceOrder(_) => Err(OrderError::AlreadyPlaced {
                order_id: state.placed.order_id,
            }),
            OrderCommand::ConfirmOrder(cmd) => state.confirm(cmd),
            OrderCommand::AcceptOrder(cmd) => state.accept(cmd),
            OrderCommand::RejectOrder(cmd) => state.reject(cmd),
            OrderCommand::MarkReadyForPickup(cmd) => state.mark_ready(cmd),
            OrderCommand::MarkPickedUp(cmd) => state.mark_picked_up(cmd),
            OrderCommand::MarkDelivered(cmd) => state.mark_delivered(cmd),
            OrderCommand::CancelOrder(cmd) => state.cancel(cmd),
            OrderCommand::CancelUndeliverableOrder(cmd) => state.cancel_undeliverable(cmd),
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "Order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrderCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrderError> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: OrderEvent) {
        if let OrderEvent::OrderPlaced(placed) = event {
            self.state = Some(OrderState {
                placed,
                status: OrderStatus::Placed,
                payment_id: None,
                ready_by: None,
                rider_id: None,
                cancelled_by: None,
            });
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match event {
            OrderEvent::OrderPlaced(_) => {}
            OrderEvent::OrderConfirmed(e) => {
                state.status = OrderStatus::Confirmed;
                state.payment_id = e.payment_id;
            }
            OrderEvent::OrderAccepted(e) => {
                state.status = OrderStatus::Accepted;
                state.ready_by = Some(e.ready_by);
            }
            OrderEvent::OrderRejected(_) => state.status = OrderStatus::Rejected,
            OrderEvent::OrderReadyForPickup(_) => state.status = OrderStatus::ReadyForPickup,
            OrderEvent::OrderPickedUp(e) => {
                state.status = OrderStatus::PickedUp;
                state.rider_id = Some(e.rider_id);
            }
            OrderEvent::OrderDelivered(_) => state.status = OrderStatus::Delivered,
            OrderEvent::OrderCancelled(e) => {
                state.status = OrderStatus::Cancelled;
                state.cancelled_by = Some(e.cancelled_by);
            }
        }
    }
}

fn place(cmd: PlaceOrder) -> Result<OrderEvent, OrderError> {
    let PlaceOrder {
        order_id,
        customer_id,
        restaurant,
        items,
        delivery_address,
        payment_method,
        tip,
        now,
    } = cmd;
    let currency = restaurant.currency;
    check_restaurant(&restaurant)?;
    if !restaurant.is_open {
        return Err(OrderError::RestaurantClosed {
            restaurant_id: restaurant.id,
        });
    }
    if items.is_empty() {
        return Err(OrderError::EmptyOrder {
            restaurant_id: restaurant.id,
        });
    }
    let lines = order_lines(&restaurant, &items, order_id)?;
    let tip = tip.unwrap_or(Money::zero(currency));
    if tip.currency != currency {
        return Err(OrderError::CurrencyMismatch {
            field: "tip",
            expected: currency,
            found: tip.currency,
        });
    }
    if tip.amount < 0 {
        return Err(OrderError::NegativeTip { tip });
    }
    let caps = pricing::caps(currency);
    if tip.amount > caps.max_tip {
        return Err(OrderError::TipTooLarge {
            tip,
            max: caps.max_tip,
        });
    }
    if let PaymentMethod::Card { payment_method_ref } = &payment_method {
        if payment_method_ref.trim().is_empty() {
            return Err(OrderError::CardTokenRequired { order_id });
        }
        text::CARD_TOKEN
            .named("payment_method.payment_method_ref")
            .check(payment_method_ref)?;
    }
    text::STREET.check(&delivery_address.street)?;
    text::CITY.check(&delivery_address.city)?;
    text::POSTAL_CODE.check(&delivery_address.postal_code)?;
    let dropoff = delivery_address.location;
    if !dropoff.is_valid() {
        return Err(OrderError::InvalidCoordinates {
            field: "delivery_address",
            lat: dropoff.lat,
            lon: dropoff.lon,
        });
    }
    let distance_m = restaurant.location.distance_m(&dropoff);
    if distance_m > pricing::MAX_DELIVERY_DISTANCE_M {
        return Err(OrderError::DeliveryAddressTooFar {
            distance_m: distance_m.round() as u64,
            max_m: pricing::MAX_DELIVERY_DISTANCE_M as u64,
        });
    }
    let price = pricing::price_order(
        currency,
        &lines,
        distance_m,
        restaurant.tax_bps,
        restaurant.commission_bps,
        tip,
    )
    .map_err(|e| money_error(e, order_id))?;
    if price.total.amount > caps.max_total {
        return Err(OrderError::TotalTooLarge {
            total: price.total,
            max: caps.max_total,
        });
    }
    Ok(OrderPlaced {
        order_id,
        customer_id,
        restaurant_id: restaurant.id,
        restaurant_location: restaurant.location,
        restaurant_time_zone: restaurant.time_zone,
        lines,
        delivery_address,
        payment_method,
        price,
        placed_at: now,
    }
    .into())
}

/// Reference data must be sane before anything is priced with it.
fn check_restaurant(restaurant: &RestaurantSnapshot) -> Result<(), OrderError> {
    let invalid = |reason: String| OrderError::InvalidRestaurantSnapshot {
        restaurant_id: restaurant.id,
        reason,
    };
    if !restaurant.location.is_valid() {
        return Err(invalid("location is not a valid coordinate".to_owned()));
    }
    if restaurant.time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(invalid(format!(
            "unknown time zone {:?}",
            restaurant.time_zone
        )));
    }
    for (name, bps) in [
        ("tax_bps", restaurant.tax_bps),
        ("commission_bps", restaurant.commission_bps),
    ] {
        if !(0..=10_000).contains(&bps) {
            return Err(invalid(format!("{name} {bps} is not within 0..=10000")));
        }
    }
    Ok(())
}

/// Validates the requested items and merges lines naming the same menu item.
fn order_lines(
    restaurant: &RestaurantSnapshot,
    items: &[OrderItem],
    order_id: OrderId,
) -> Result<Vec<OrderLine>, OrderError> {
    let mut merged: Vec<(&MenuItemSnapshot, u64)> = Vec::with_capacity(items.len());
    for (item, quantity) in items {
        if !(1..=MAX_QUANTITY_PER_LINE).contains(quantity) {
            return Err(OrderError::InvalidQuantity {
                menu_item_id: item.id,
                quantity: u64::from(*quantity),
                max: MAX_QUANTITY_PER_LINE,
            });
        }
        if item.restaurant_id != restaurant.id {
            return Err(OrderError::MenuItemNotFromRestaurant {
                menu_item_id: item.id,
                item_restaurant_id: item.restaurant_id,
                restaurant_id: restaurant.id,
            });
        }
        if !item.available {
            return Err(OrderError::MenuItemUnavailable {
                menu_item_id: item.id,
            });
        }
        if item.price.currency != restaurant.currency {
            return Err(OrderError::CurrencyMismatch {
                field: "menu item price",
                expected: restaurant.currency,
                found: item.price.currency,
            });
        }
        if item.price.amount < 0 {
            return Err(OrderError::InvalidItemPrice {
                menu_item_id: item.id,
                price: item.price,
            });
        }
        match merged.iter_mut().find(|(seen, _)| seen.id == item.id) {
            Some((seen, total)) => {
                if *seen != item {
                    return Err(OrderError::ConflictingMenuItemLines {
                        menu_item_id: item.id,
                    });
                }
                *total += u64::from(*quantity);
            }
            None => merged.push((item, u64::from(*quantity))),
        }
    }
    merged
        .into_iter()
        .map(|(item, total)| {
            let quantity = u32::try_from(total)
                .ok()
                .filter(|q| *q <= MAX_QUANTITY_PER_LINE)
                .ok_or(OrderError::InvalidQuantity {
                    menu_item_id: item.id,
                    quantity: total,
                    max: MAX_QUANTITY_PER_LINE,
                })?;
            Ok(OrderLine {
                menu_item_id: item.id,
                name: item.name.clone(),
                unit_price: item.price,
                quantity,
                line_total: pricing::line_total(item.price, quantity)
                    .map_err(|e| money_error(e, order_id))?,
            })
        })
        .collect()
}

fn money_error(error: MoneyError, order_id: OrderId) -> OrderError {
    match error {
        MoneyError::CurrencyMismatch { left, right } => OrderError::CurrencyMismatch {
            field: "amount",
            expected: left,
            found: right,
        },
        MoneyError::Overflow | MoneyError::InvalidCurrency(_) => {
            OrderError::AmountOverflow { order_id }
        }
    }
}

fn require_reason(reason: &str, action: &'static str) -> Result<(), OrderError> {
    if reason.trim().is_empty() {
        return Err(OrderError::ReasonRequired { action });
    }
    Ok(crate::text::REASON.check(reason)?)
}

impl OrderState {
    fn confirm(&self, cmd: ConfirmOrder) -> Result<OrderEvent, OrderError> {
        if self.status != OrderStatus::Placed {
            return Err(OrderError::NotConfirmable {
                status: self.status,
            });
        }
        match (&self.placed.payment_method, cmd.payment_id) {
            (PaymentMethod::Card { .. }, None) => {
                return Err(OrderError::PaymentIdRequired {
                    order_id: self.placed.order_id,
                });
            }
            (PaymentMethod::Cash, Some(payment_id)) => {
                return Err(OrderError::PaymentIdNotAllowed { payment_id });
            }
            _ => {}
        }
        Ok(OrderConfirmed {
            payment_id: cmd.payment_id,
            confirmed_at: cmd.now,
        }
        .into())
    }

    fn accept(&self, cmd: AcceptOrder) -> Result<OrderEvent, OrderError> {
        if self.status != OrderStatus::Confirmed {
            return Err(OrderError::NotAcceptable {
                status: self.status,
            });
        }
        let invalid = || OrderError::InvalidPreparationTime {
            minutes: cmd.preparation_minutes,
            min: MIN_PREPARATION_MINUTES,
            max: MAX_PREPARATION_MINUTES,
        };
        if !(MIN_PREPARATION_MINUTES..=MAX_PREPARATION_MINUTES).contains(&cmd.preparation_minutes) {
            return Err(invalid());
        }
        let ready_by = cmd
            .now
            .checked_add_signed(TimeDelta::minutes(i64::from(cmd.preparation_minutes)))
            .ok_or_else(invalid)?;
        Ok(OrderAccepted {
            preparation_minutes: cmd.preparation_minutes,
            ready_by,
            accepted_at: cmd.now,
        }
        .into())
    }

    fn reject(&self, cmd: RejectOrder) -> Result<OrderEvent, OrderError> {
        if self.status != OrderStatus::Confirmed {
            return Err(OrderError::NotRejectable {
                status: self.status,
            });
        }
        require_reason(&cmd.reason, "reject an order")?;
        Ok(OrderRejected {
            reason: cmd.reason,
            rejected_at: cmd.now,
        }
        .into())
    }

    fn mark_ready(&self, cmd: MarkReadyForPickup) -> Result<OrderEvent, OrderError> {
        if self.status != OrderStatus::Accepted {
            return Err(OrderError::NotInPreparation {
                status: self.status,
            });
        }
        Ok(OrderReadyForPickup { ready_at: cmd.now }.into())
    }

    fn mark_picked_up(&self, cmd: MarkPickedUp) -> Result<OrderEvent, OrderError> {
        if !matches!(
            self.status,
            OrderStatus::Accepted | OrderStatus::ReadyForPickup
        ) {
            return Err(OrderError::NotAwaitingPickup {
                status: self.status,
            });
        }
        Ok(OrderPickedUp {
            rider_id: cmd.rider_id,
            picked_up_at: cmd.now,
        }
        .into())
    }

    fn mark_delivered(&self, cmd: MarkDelivered) -> Result<OrderEvent, OrderError> {
        if self.status != OrderStatus::PickedUp {
            return Err(OrderError::NotDeliverable {
                status: self.status,
            });
        }
        Ok(OrderDelivered {
            delivered_at: cmd.now,
        }
        .into())
    }

    fn cancel(&self, cmd: CancelOrder) -> Result<OrderEvent, OrderError> {
        if self.status.is_final() || self.status == OrderStatus::PickedUp {
            return Err(OrderError::NotCancellable {
                status: self.status,
            });
        }
        if !cancellable_by(self.status, cmd.by) {
            return Err(OrderError::CancellationNotAllowedForRole {
                role: cmd.by,
                status: self.status,
            });
        }
        require_reason(&cmd.reason, "cancel an order")?;
        Ok(OrderCancelled {
            reason: cmd.reason,
            cancelled_by: cmd.by,
            cancelled_at: cmd.now,
        }
        .into())
    }

    fn cancel_undeliverable(
        &self,
        cmd: CancelUndeliverableOrder,
    ) -> Result<OrderEvent, OrderError> {
        if !matches!(
            self.status,
            OrderStatus::Accepted | OrderStatus::ReadyForPickup | OrderStatus::PickedUp
        ) {
            return Err(OrderError::NotCancellable {
                status: self.status,
            });
        }
        require_reason(&cmd.reason, "cancel an order")?;
        Ok(OrderCancelled {
            reason: cmd.reason,
            cancelled_by: ActorRole::System,
            cancelled_at: cmd.now,
        }
        .into())
    }
}
