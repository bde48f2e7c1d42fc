//! Order commands: place, confirm, accept, reject, ready, picked up,
//! delivered, cancel, and cash collected on delivery. Each handler parses
//! the request, checks the role, runs one workflow
//! ([`ordertrail_commands::workflows`]) and answers.

use ordertrail_commands::card_payment_method;
use ordertrail_commands::workflows::{
    AcceptOrder, CancelOrder, ConfirmOrder, MarkDelivered, MarkPickedUp, MarkReady, PlaceOrder,
    RecordCashCollected, RejectOrder,
};
use ordertrail_schemas::events::{DeliveryAddress, PaymentMethod};
use ordertrail_schemas::{GeoPoint, MenuItemId, OrderId, RestaurantId, RiderId};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{NoBody, ReasonBody};
use crate::auth::{CustomerOrStaff, CustomerRole, RestaurantRole, RiderOrStaff, Staff};
use crate::error::ApiError;

/// A point in WGS84 degrees.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    #[schema(example = 52.52, minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(example = 13.405, minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
}

impl From<Location> for GeoPoint {
    fn from(l: Location) -> Self {
        GeoPoint {
            lat: l.lat,
            lon: l.lon,
        }
    }
}

/// One line of an order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemRequest {
    pub menu_item_id: Uuid,
    /// 1..=50.
    #[schema(example = 2, minimum = 1, maximum = 50)]
    pub quantity: u32,
}

/// Where the order goes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryAddressRequest {
    /// 1..=200 characters, no control characters.
    #[schema(
        example = "Oranienstraße 25",
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub street: String,
    /// 1..=100 characters, no control characters.
    #[schema(
        example = "Berlin",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub city: String,
    /// 1..=16 characters, no control characters.
    #[schema(
        example = "10999",
        min_length = 1,
        max_length = 16,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub postal_code: String,
    pub location: Location,
}

/// How the customer pays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentMethodRequest {
    /// A card, as the payment provider's token (simulated: `tok_visa`, `tok_declined`, ...),
    /// 1..=255 characters. The token is handed to the provider and never
    /// stored: events and answers carry an opaque `payment_method_ref` (`pm_...`).
    Card {
        /// Not only white space.
        #[schema(
            min_length = 1,
            max_length = 255,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )]
        card_token: String,
    },
    /// Cash collected by the rider on delivery.
    Cash,
}

/// `POST /v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    pub restaurant_id: Uuid,
    /// At least one line.
    #[schema(min_items = 1)]
    pub items: Vec<OrderItemRequest>,
    pub delivery_address: DeliveryAddressRequest,
    pub payment_method: PaymentMethodRequest,
    /// Tip in minor units of the restaurant's currency: 0..=10000 (100.00 in
    /// EUR, GBP, USD); the order's total is capped at 500000 (5 000.00).
    #[schema(minimum = 0, maximum = 10000)]
    pub tip_minor: Option<i64>,
}

/// `POST /v1/orders/{id}/accept`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptOrderRequest {
    /// The restaurant's estimate, 1..=180 minutes.
    #[schema(example = 15, minimum = 1, maximum = 180)]
    pub preparation_minutes: u32,
}

/// `POST /v1/orders/{id}/picked-up`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPickedUpRequest {
    pub rider_id: Uuid,
}

command_routes! {
    tag = "orders", id = "Order id";

    /// A customer caller who did not place this order is told it does not
    /// exist (404 `order_not_found`, as for an unknown id).
    post "/v1/orders" => 201 "Order placed";
    fn place_order(user: CustomerRole, body: PlaceOrderRequest) {
        let customer_id = user
            .customer_id()
            .ok_or_else(|| ApiError::forbidden("only customers place orders"))?;
        PlaceOrder {
            customer_id,
            restaurant_id: RestaurantId(body.restaurant_id),
            items: body
                .items
                .iter()
                .map(|i| (MenuItemId(i.menu_item_id), i.quantity))
                .collect(),
            delivery_address: DeliveryAddress {
                street: body.delivery_address.street.clone(),
                city: body.delivery_address.city.clone(),
                postal_code: body.delivery_address.postal_code.clone(),
                location: body.delivery_address.location.into(),
            },
            payment_method: match &body.payment_method {
                PaymentMethodRequest::Card { card_token } => card_payment_method(card_token)?,
                PaymentMethodRequest::Cash => PaymentMethod::Cash,
            },
            tip_minor: body.tip_minor,
        }
    }

    /// Confirm an order (ops, admin): a card order needs its payment authorized
    /// (`POST /v1/payments`); a cash order is confirmed as is.
    post "/v1/orders/{id}/confirm" => 200 "Order confirmed";
    fn confirm_order(user: Staff, _: NoBody, id: Uuid) {
        ConfirmOrder { order_id: OrderId(id) }
    }

    /// Accept a confirmed order with a preparation estimate (the order's restaurant).
    post "/v1/orders/{id}/accept" => 200 "Order accepted";
    fn accept_order(user: RestaurantRole, body: AcceptOrderRequest, id: Uuid) {
        AcceptOrder {
            order_id: OrderId(id),
            preparation_minutes: body.preparation_minutes,
        }
    }

    /// Refuse a confirmed order (the order's restaurant).
    post "/v1/orders/{id}/reject" => 200 "Order rejected";
    fn reject_order(user: RestaurantRole, body: ReasonBody, id: Uuid) {
        RejectOrder {
            order_id: OrderId(id),
            reason: body.reason.clone(),
        }
    }

    /// The food is ready for pickup (the order's restaurant).
    post "/v1/orders/{id}/ready" => 200 "Order ready for pickup";
    fn mark_ready(user: RestaurantRole, _: NoBody, id: Uuid) {
        MarkReady { order_id: OrderId(id) }
    }

    /// A rider took the food (ops, admin).
    post "/v1/orders/{id}/picked-up" => 200 "Order picked up";
    fn mark_picked_up(user: Staff, body: MarkPickedUpRequest, id: Uuid) {
        MarkPickedUp {
            order_id: OrderId(id),
            rider_id: RiderId(body.rider_id),
            at: None,
        }
    }

    /// The customer has the food (ops, admin).
    post "/v1/orders/{id}/delivered" => 200 "Order delivered";
    fn mark_delivered(user: Staff, _: NoBody, id: Uuid) {
        MarkDelivered { order_id: OrderId(id), at: None }
    }

    /// Cancel an order: its customer (until the restaurant accepts), ops or admin
    /// (until pickup). The domain decides which states allow which role.
    post "/v1/orders/{id}/cancel" => 200 "Order cancelled";
    fn cancel_order(user: CustomerOrStaff, body: ReasonBody, id: Uuid) {
        CancelOrder {
            order_id: OrderId(id),
            reason: body.reason.clone(),
        }
    }

    /// The rider collected cash for a cash order (the rider assigned to the
    /// order's delivery, ops, admin). The amount is the order's total; this
    /// creates the order's payment.
    post "/v1/orders/{id}/cash-collected" => 201 "Cash collection recorded on the order's payment";
    fn record_cash_collected(user: RiderOrStaff, _: NoBody, id: Uuid) {
        RecordCashCollected { order_id: OrderId(id) }
    }
}
