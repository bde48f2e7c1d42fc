//! Why an order command was refused.

use ordertrail_schemas::{
    ActorRole, Currency, MenuItemId, Money, OrderId, PaymentId, RestaurantId,
};

use crate::{DomainError, ErrorKind};
use ordertrail_schemas::OrderStatus;

/// Why an order command was refused. `code()` is stable; `kind()` says which
/// HTTP status family it belongs to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error("order not found (command {command})")]
    NotFound { command: &'static str },
    #[error("order {order_id} has already been placed")]
    AlreadyPlaced { order_id: OrderId },
    #[error("restaurant {restaurant_id} is closed")]
    RestaurantClosed { restaurant_id: RestaurantId },
    #[error("restaurant {restaurant_id} has invalid reference data: {reason}")]
    InvalidRestaurantSnapshot {
        restaurant_id: RestaurantId,
        reason: String,
    },
    #[error("an order needs at least one item")]
    EmptyOrder { restaurant_id: RestaurantId },
    #[error("quantity {quantity} of menu item {menu_item_id} is not within 1..={max}")]
    InvalidQuantity {
        menu_item_id: MenuItemId,
        quantity: u64,
        max: u32,
    },
    #[error("menu item {menu_item_id} is unavailable")]
    MenuItemUnavailable { menu_item_id: MenuItemId },
    #[error(
        "menu item {menu_item_id} belongs to restaurant {item_restaurant_id}, not {restaurant_id}"
    )]
    MenuItemNotFromRestaurant {
        menu_item_id: MenuItemId,
        item_restaurant_id: RestaurantId,
        restaurant_id: RestaurantId,
    },
    #[error("menu item {menu_item_id} has an invalid price {price}")]
    InvalidItemPrice {
        menu_item_id: MenuItemId,
        price: Money,
    },
    #[error("menu item {menu_item_id} appears in several lines with different details")]
    ConflictingMenuItemLines { menu_item_id: MenuItemId },
    #[error("{field} is in {found}, but the restaurant charges in {expected}")]
    CurrencyMismatch {
        field: &'static str,
        expected: Currency,
        found: Currency,
    },
    #[error("tip must not be negative, got {tip}")]
    NegativeTip { tip: Money },
    #[error("tip {tip} is above the cap of {max} minor units")]
    TipTooLarge { tip: Money, max: i64 },
    #[error("order total {total} is above the cap of {max} minor units")]
    TotalTooLarge { total: Money, max: i64 },
    #[error("{field} has invalid coordinates ({lat}, {lon})")]
    InvalidCoordinates {
        field: &'static str,
        lat: f64,
        lon: f64,
    },
    #[error(
        "delivery address is {distance_m} m from the restaurant; at most {max_m} m is delivered"
    )]
    DeliveryAddressTooFar { distance_m: u64, max_m: u64 },
    #[error("card payments need a card token")]
    CardTokenRequired { order_id: OrderId },
    #[error("an amount of this order is too large")]
    AmountOverflow { order_id: OrderId },
    #[error("order in status {status} cannot be confirmed")]
    NotConfirmable { status: OrderStatus },
    #[error("a card order is confirmed with its authorized payment id")]
    PaymentIdRequired { order_id: OrderId },
    #[error("a cash order is confirmed without a payment id, got {payment_id}")]
    PaymentIdNotAllowed { payment_id: PaymentId },
    #[error("order in status {status} cannot be accepted")]
    NotAcceptable { status: OrderStatus },
    #[error("preparation time {minutes} min is not within {min}..={max}")]
    InvalidPreparationTime { minutes: u32, min: u32, max: u32 },
    #[error("order in status {status} cannot be rejected")]
    NotRejectable { status: OrderStatus },
    #[error("order in status {status} cannot be marked ready for pickup")]
    NotInPreparation { status: OrderStatus },
    #[error("order in status {status} cannot be picked up")]
    NotAwaitingPickup { status: OrderStatus },
    #[error("order in status {status} cannot be marked delivered")]
    NotDeliverable { status: OrderStatus },
    #[error("order in status {status} cannot be cancelled")]
    NotCancellable { status: OrderStatus },
    #[error("role {role} may not cancel an order in status {status}")]
    CancellationNotAllowedForRole {
        role: ActorRole,
        status: OrderStatus,
    },
    #[error("a reason is required to {action}")]
    ReasonRequired { action: &'static str },
    #[error(transparent)]
    InvalidText(#[from] crate::text::TextError),
}

impl OrderError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            OrderError::NotFound { .. } => "order_not_found",
            OrderError::AlreadyPlaced { .. } => "order_already_placed",
            OrderError::RestaurantClosed { .. } => "restaurant_closed",
            OrderError::InvalidRestaurantSnapshot { .. } => "invalid_restaurant_snapshot",
            OrderError::EmptyOrder { .. } => "empty_order",
            OrderError::InvalidQuantity { .. } => "invalid_quantity",
            OrderError::MenuItemUnavailable { .. } => "menu_item_unavailable",
            OrderError::MenuItemNotFromRestaurant { .. } => "menu_item_not_from_restaurant",
            OrderError::InvalidItemPrice { .. } => "invalid_item_price",
            OrderError::ConflictingMenuItemLines { .. } => "conflicting_menu_item_lines",
            OrderError::CurrencyMismatch { .. } => "currency_mismatch",
            OrderError::NegativeTip { .. } => "invalid_tip",
            OrderError::TipTooLarge { .. } => "tip_too_large",
            OrderError::TotalTooLarge { .. } => "order_total_too_large",
            OrderError::InvalidCoordinates { .. } => "invalid_coordinates",
            OrderError::DeliveryAddressTooFar { .. } => "delivery_address_out_of_range",
            OrderError::CardTokenRequired { .. } => "card_token_required",
            OrderError::AmountOverflow { .. } => "amount_overflow",
            OrderError::NotConfirmable { .. } => "order_not_confirmable",
            OrderError::PaymentIdRequired { .. } => "payment_id_required",
            OrderError::PaymentIdNotAllowed { .. } => "payment_id_not_allowed",
            OrderError::NotAcceptable { .. } => "order_not_acceptable",
            OrderError::InvalidPreparationTime { .. } => "invalid_preparation_time",
            OrderError::NotRejectable { .. } => "order_not_rejectable",
            OrderError::NotInPreparation { .. } => "order_not_in_preparation",
            OrderError::NotAwaitingPickup { .. } => "order_not_awaiting_pickup",
            OrderError::NotDeliverable { .. } => "order_not_deliverable",
            OrderError::NotCancellable { .. } => "order_not_cancellable",
            OrderError::CancellationNotAllowedForRole { .. } => "cancellation_not_allowed_for_role",
            OrderError::ReasonRequired { .. } => "reason_required",
            OrderError::InvalidText(e) => e.code(),
        }
    }

    /// Kind of failure (HTTP status family).
    pub fn kind(&self) -> ErrorKind {
        match self {
            OrderError::NotFound { .. } => ErrorKind::NotFound,
            OrderError::AlreadyPlaced { .. }
            | OrderError::RestaurantClosed { .. }
            | OrderError::MenuItemUnavailable { .. }
            | OrderError::NotConfirmable { .. }
            | OrderError::NotAcceptable { .. }
            | OrderError::NotRejectable { .. }
            | OrderError::NotInPreparation { .. }
            | OrderError::NotAwaitingPickup { .. }
            | OrderError::NotDeliverable { .. }
            | OrderError::NotCancellable { .. } => ErrorKind::Conflict,
            OrderError::CancellationNotAllowedForRole { .. } => ErrorKind::Forbidden,
            OrderError::InvalidRestaurantSnapshot { .. }
            | OrderError::EmptyOrder { .. }
            | OrderError::InvalidQuantity { .. }
            | OrderError::MenuItemNotFromRestaurant { .. }
            | OrderError::InvalidItemPrice { .. }
            | OrderError::ConflictingMenuItemLines { .. }
            | OrderError::CurrencyMismatch { .. }
            | OrderError::NegativeTip { .. }
            | OrderError::TipTooLarge { .. }
            | OrderError::TotalTooLarge { .. }
            | OrderError::InvalidCoordinates { .. }
            | OrderError::DeliveryAddressTooFar { .. }
            | OrderError::CardTokenRequired { .. }
            | OrderError::AmountOverflow { .. }
            | OrderError::PaymentIdRequired { .. }
            | OrderError::PaymentIdNotAllowed { .. }
            | OrderError::InvalidPreparationTime { .. }
            | OrderError::ReasonRequired { .. }
            | OrderError::InvalidText(_) => ErrorKind::Invalid,
        }
    }
}

impl DomainError for OrderError {
    fn code(&self) -> &'static str {
        OrderError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        OrderError::kind(self)
    }
}
