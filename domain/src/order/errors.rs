//! Why an order command was refused.

use ordertrail_schemas::{
    ActorRole, Currency, MenuItemId, Money, OrderId, PaymentId, RestaurantId,
};

use crate::ErrorKind;
use ordertrail_schemas::OrderStatus;

/// Why an order command was refused. `code()` is stable; `kind()` says which
/// HTTP status family it belongs to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    /// Order not found (command `command`).
    #[error("order not found (command {command})")]
    NotFound {
        /// The command that found no order.
        command: &'static str,
    },
    /// Order `order_id` has already been placed.
    #[error("order {order_id} has already been placed")]
    AlreadyPlaced {
        /// The order.
        order_id: OrderId,
    },
    /// Restaurant `restaurant_id` is closed.
    #[error("restaurant {restaurant_id} is closed")]
    RestaurantClosed {
        /// The restaurant.
        restaurant_id: RestaurantId,
    },
    /// Restaurant `restaurant_id` has invalid reference data: `reason`.
    #[error("restaurant {restaurant_id} has invalid reference data: {reason}")]
    InvalidRestaurantSnapshot {
        /// The restaurant.
        restaurant_id: RestaurantId,
        /// What is wrong with it.
        reason: String,
    },
    /// An order needs at least one item.
    #[error("an order needs at least one item")]
    EmptyOrder {
        /// The restaurant.
        restaurant_id: RestaurantId,
    },
    /// Quantity `quantity` of menu item `menu_item_id` is not within 1..=`max`.
    #[error("quantity {quantity} of menu item {menu_item_id} is not within 1..={max}")]
    InvalidQuantity {
        /// The menu item.
        menu_item_id: MenuItemId,
        /// The quantity given (after merging lines).
        quantity: u64,
        /// The largest quantity per line.
        max: u32,
    },
    /// Menu item `menu_item_id` is unavailable.
    #[error("menu item {menu_item_id} is unavailable")]
    MenuItemUnavailable {
        /// The menu item.
        menu_item_id: MenuItemId,
    },
    /// Menu item `menu_item_id` belongs to restaurant `item_restaurant_id`, not `restaurant_id`.
    #[error(
        "menu item {menu_item_id} belongs to restaurant {item_restaurant_id}, not {restaurant_id}"
    )]
    MenuItemNotFromRestaurant {
        /// The menu item.
        menu_item_id: MenuItemId,
        /// The restaurant whose menu the item is on.
        item_restaurant_id: RestaurantId,
        /// The restaurant.
        restaurant_id: RestaurantId,
    },
    /// Menu item `menu_item_id` has an invalid price `price`.
    #[error("menu item {menu_item_id} has an invalid price {price}")]
    InvalidItemPrice {
        /// The menu item.
        menu_item_id: MenuItemId,
        /// The price on the menu.
        price: Money,
    },
    /// Menu item `menu_item_id` appears in several lines with different details.
    #[error("menu item {menu_item_id} appears in several lines with different details")]
    ConflictingMenuItemLines {
        /// The menu item.
        menu_item_id: MenuItemId,
    },
    /// `field` is in `found`, but the restaurant charges in `expected`.
    #[error("{field} is in {found}, but the restaurant charges in {expected}")]
    CurrencyMismatch {
        /// The field that was refused.
        field: &'static str,
        /// The currency required.
        expected: Currency,
        /// The currency given.
        found: Currency,
    },
    /// Tip must not be negative, got `tip`.
    #[error("tip must not be negative, got {tip}")]
    NegativeTip {
        /// The tip given.
        tip: Money,
    },
    /// Tip `tip` is above the cap of `max` minor units.
    #[error("tip {tip} is above the cap of {max} minor units")]
    TipTooLarge {
        /// The tip given.
        tip: Money,
        /// The largest tip, minor units.
        max: i64,
    },
    /// Order total `total` is above the cap of `max` minor units.
    #[error("order total {total} is above the cap of {max} minor units")]
    TotalTooLarge {
        /// The order's total.
        total: Money,
        /// The largest order total, minor units.
        max: i64,
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
    /// Delivery address is `distance_m` m from the restaurant; at most `max_m` m is delivered.
    #[error(
        "delivery address is {distance_m} m from the restaurant; at most {max_m} m is delivered"
    )]
    DeliveryAddressTooFar {
        /// The distance, metres.
        distance_m: u64,
        /// The largest delivery distance, metres.
        max_m: u64,
    },
    /// Card payments need a card token.
    #[error("card payments need a card token")]
    CardTokenRequired {
        /// The order.
        order_id: OrderId,
    },
    /// An amount of this order is too large.
    #[error("an amount of this order is too large")]
    AmountOverflow {
        /// The order.
        order_id: OrderId,
    },
    /// Order in status `status` cannot be confirmed.
    #[error("order in status {status} cannot be confirmed")]
    NotConfirmable {
        /// The order's current status.
        status: OrderStatus,
    },
    /// A card order is confirmed with its authorized payment id.
    #[error("a card order is confirmed with its authorized payment id")]
    PaymentIdRequired {
        /// The order.
        order_id: OrderId,
    },
    /// A cash order is confirmed without a payment id, got `payment_id`.
    #[error("a cash order is confirmed without a payment id, got {payment_id}")]
    PaymentIdNotAllowed {
        /// The payment given.
        payment_id: PaymentId,
    },
    /// Order in status `status` cannot be accepted.
    #[error("order in status {status} cannot be accepted")]
    NotAcceptable {
        /// The order's current status.
        status: OrderStatus,
    },
    /// Preparation time `minutes` min is not within `min`..=`max`.
    #[error("preparation time {minutes} min is not within {min}..={max}")]
    InvalidPreparationTime {
        /// The preparation time given, minutes.
        minutes: u32,
        /// The smallest value allowed.
        min: u32,
        /// The largest value allowed.
        max: u32,
    },
    /// Order in status `status` cannot be rejected.
    #[error("order in status {status} cannot be rejected")]
    NotRejectable {
        /// The order's current status.
        status: OrderStatus,
    },
    /// Order in status `status` cannot be marked ready for pickup.
    #[error("order in status {status} cannot be marked ready for pickup")]
    NotInPreparation {
        /// The order's current status.
        status: OrderStatus,
    },
    /// Order in status `status` cannot be picked up.
    #[error("order in status {status} cannot be picked up")]
    NotAwaitingPickup {
        /// The order's current status.
        status: OrderStatus,
    },
    /// Order in status `status` cannot be marked delivered.
    #[error("order in status {status} cannot be marked delivered")]
    NotDeliverable {
        /// The order's current status.
        status: OrderStatus,
    },
    /// Order in status `status` cannot be cancelled.
    #[error("order in status {status} cannot be cancelled")]
    NotCancellable {
        /// The order's current status.
        status: OrderStatus,
    },
    /// Role `role` may not cancel an order in status `status`.
    #[error("role {role} may not cancel an order in status {status}")]
    CancellationNotAllowedForRole {
        /// The role that asked to cancel.
        role: ActorRole,
        /// The order's current status.
        status: OrderStatus,
    },
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

domain_error!(OrderError);
