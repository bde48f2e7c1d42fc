//! Given/when/then tests of the order rules.
#![allow(clippy::unwrap_used)]

use cqrs_es::Aggregate;
use cqrs_es::test::{AggregateResultValidator, TestFramework};
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use uuid::Uuid;

use super::*;
use crate::catalog::{MenuItemSnapshot, RestaurantSnapshot};
use crate::testing::*;
use crate::{DomainError, ErrorKind};

/// The order these events fold to.
fn apply_all(events: Vec<OrderEvent>) -> Order {
    fold(events)
}

type Framework = TestFramework<Order>;

fn burger_id() -> MenuItemId {
    MenuItemId(Uuid::from_u128(10))
}
fn fries_id() -> MenuItemId {
    MenuItemId(Uuid::from_u128(11))
}
const RESTAURANT_AT: GeoPoint = GeoPoint {
    lat: 52.52,
    lon: 13.405,
};

/// A point `degrees` of latitude north of the restaurant (0.01° ≈ 1.11 km).
fn north_of_restaurant(degrees: f64) -> GeoPoint {
    GeoPoint {
        lat: RESTAURANT_AT.lat + degrees,
        lon: RESTAURANT_AT.lon,
    }
}

fn restaurant() -> RestaurantSnapshot {
    RestaurantSnapshot {
        id: restaurant_id(),
        name: "Burger Bar".into(),
        location: RESTAURANT_AT,
        time_zone: "Europe/Berlin".into(),
        currency: Currency::EUR,
        commission_bps: 1_500,
        tax_bps: 700,
        is_open: true,
    }
}

fn burger() -> MenuItemSnapshot {
    MenuItemSnapshot {
        id: burger_id(),
        restaurant_id: restaurant_id(),
        name: "Cheeseburger".into(),
        price: eur(1_250),
        available: true,
    }
}

fn fries() -> MenuItemSnapshot {
    MenuItemSnapshot {
        id: fries_id(),
        restaurant_id: restaurant_id(),
        name: "Fries".into(),
        price: eur(399),
        available: true,
    }
}

fn address() -> DeliveryAddress {
    DeliveryAddress {
        street: "Invalidenstr. 1".into(),
        city: "Berlin".into(),
        postal_code: "10115".into(),
        // ≈ 3.34 km north of the restaurant. A literal, not 52.52 + 0.03: serde_json
        // (without `float_roundtrip`) may read the sum back one ulp off.
        location: GeoPoint {
            lat: 52.55,
            lon: 13.405,
        },
    }
}

fn card() -> PaymentMethod {
    PaymentMethod::Card {
        payment_method_ref: ordertrail_schemas::privacy::payment_method_ref("tok_visa"),
    }
}

fn place() -> PlaceOrder {
    PlaceOrder {
        order_id: order_id(),
        customer_id: customer_id(),
        restaurant: restaurant(),
        items: vec![(burger(), 2), (fries(), 1)],
        delivery_address: address(),
        payment_method: card(),
        tip: Some(eur(150)),
        now: at(0),
    }
}

fn placed() -> OrderPlaced {
    OrderPlaced {
        order_id: order_id(),
        customer_id: customer_id(),
        restaurant_id: restaurant_id(),
        restaurant_location: RESTAURANT_AT,
        restaurant_time_zone: "Europe/Berlin".into(),
        lines: vec![
            OrderLine {
                menu_item_id: burger_id(),
                name: "Cheeseburger".into(),
                unit_price: eur(1_250),
                quantity: 2,
                line_total: eur(2_500),
            },
            OrderLine {
                menu_item_id: fries_id(),
                name: "Fries".into(),
                unit_price: eur(399),
                quantity: 1,
                line_total: eur(399),
            },
        ],
        delivery_address: address(),
        payment_method: card(),
        price: PriceBreakdown {
            subtotal: eur(2_899),
            delivery_fee: eur(319), // 3.34 km: 2 started km beyond 2 km
            service_fee: eur(145),  // 5 % of 2 899 = 144.95
            tax: eur(203),          // 7 % = 202.93
            tip: eur(150),
            total: eur(3_716),
            commission: eur(435), // 15 % = 434.85
        },
        placed_at: at(0),
    }
}

fn cash_placed() -> OrderPlaced {
    OrderPlaced {
        payment_method: PaymentMethod::Cash,
        ..placed()
    }
}

fn confirmed() -> OrderConfirmed {
    OrderConfirmed {
        payment_id: Some(payment_id()),
        confirmed_at: at(1),
    }
}

fn accepted() -> OrderAccepted {
    OrderAccepted {
        preparation_minutes: 20,
        ready_by: at(22),
        accepted_at: at(2),
    }
}

fn ready() -> OrderReadyForPickup {
    OrderReadyForPickup { ready_at: at(20) }
}

fn picked_up() -> OrderPickedUp {
    OrderPickedUp {
        rider_id: rider_id(),
        picked_up_at: at(25),
    }
}

fn delivered() -> OrderDelivered {
    OrderDelivered {
        delivered_at: at(40),
    }
}

fn rejected() -> OrderRejected {
    OrderRejected {
        reason: "kitchen closed".into(),
        rejected_at: at(2),
    }
}

fn cancelled() -> OrderCancelled {
    OrderCancelled {
        reason: "changed my mind".into(),
        cancelled_by: ActorRole::Customer,
        cancelled_at: at(1),
    }
}

/// The events that lead to each status.
/// The restaurant accepts, `minutes` to prepare, at minute `now`.
fn accept(minutes: u32, now: i64) -> AcceptOrder {
    AcceptOrder {
        preparation_minutes: minutes,
        now: at(now),
    }
}

/// The restaurant refuses, for `reason`, at minute `now`.
fn reject(reason: &str, now: i64) -> RejectOrder {
    RejectOrder {
        reason: reason.into(),
        now: at(now),
    }
}

/// The rider takes the food at minute `now`.
fn pick_up(now: i64) -> MarkPickedUp {
    MarkPickedUp {
        rider_id: rider_id(),
        now: at(now),
    }
}

fn history(status: OrderStatus) -> Vec<OrderEvent> {
    let mut events: Vec<OrderEvent> = vec![placed().into()];
    let tail: Vec<OrderEvent> = match status {
        OrderStatus::Placed => vec![],
        OrderStatus::Confirmed => vec![confirmed().into()],
        OrderStatus::Accepted => vec![confirmed().into(), accepted().into()],
        OrderStatus::ReadyForPickup => vec![confirmed().into(), accepted().into(), ready().into()],
        OrderStatus::PickedUp => vec![
            confirmed().into(),
            accepted().into(),
            ready().into(),
            picked_up().into(),
        ],
        OrderStatus::Delivered => {
            vec![
                confirmed().into(),
                accepted().into(),
                ready().into(),
                picked_up().into(),
                delivered().into(),
            ]
        }
        OrderStatus::Rejected => vec![confirmed().into(), rejected().into()],
        OrderStatus::Cancelled => vec![cancelled().into()],
    };
    events.extend(tail);
    events
}

const ALL_STATUSES: [OrderStatus; 8] = [
    OrderStatus::Placed,
    OrderStatus::Confirmed,
    OrderStatus::Accepted,
    OrderStatus::ReadyForPickup,
    OrderStatus::PickedUp,
    OrderStatus::Delivered,
    OrderStatus::Rejected,
    OrderStatus::Cancelled,
];

fn given(
    events: Vec<OrderEvent>,
    command: impl Into<OrderCommand>,
) -> AggregateResultValidator<Order> {
    Framework::with(()).given(events).when(command.into())
}

/// `command` is refused as a conflict naming the status (`code`, `error`)
/// in every status but `allowed`.
#[track_caller]
fn only_in<C: Into<OrderCommand>>(
    allowed: &[OrderStatus],
    command: impl Fn() -> C,
    code: &str,
    error: fn(OrderStatus) -> OrderError,
) {
    conflict_in(
        ALL_STATUSES.into_iter().filter(|s| !allowed.contains(s)),
        |status| given(history(status), command()),
        code,
        error,
    );
}

#[track_caller]
fn place_fails(cmd: PlaceOrder, code: &str, kind: ErrorKind) -> OrderError {
    expect_error(given(vec![], cmd), code, kind)
}

// ---------------------------------------------------------------- PlaceOrder

#[test]
fn type_is_the_aggregate_kind() {
    assert_eq!(Order::TYPE, AggregateKind::Order.as_str());
}

#[test]
fn place_order_prices_and_snapshots_the_lines() {
    given(vec![], place()).then_expect_events(vec![placed().into()]);
}

#[test]
fn place_order_without_tip_charges_no_tip() {
    let cmd = PlaceOrder {
        tip: None,
        ..place()
    };
    let mut expected = placed();
    expected.price.tip = eur(0);
    expected.price.total = eur(3_566);
    given(vec![], cmd).then_expect_events(vec![expected.into()]);
}

#[test]
fn place_order_accepts_cash() {
    let cmd = PlaceOrder {
        payment_method: PaymentMethod::Cash,
        ..place()
    };
    given(vec![], cmd).then_expect_events(vec![cash_placed().into()]);
}

#[test]
fn place_order_twice_is_a_conflict() {
    let error = expect_error(
        given(history(OrderStatus::Placed), place()),
        "order_already_placed",
        ErrorKind::Conflict,
    );
    assert_eq!(
        error,
        OrderError::AlreadyPlaced {
            order_id: order_id()
        }
    );
    expect_error(
        given(history(OrderStatus::Delivered), place()),
        "order_already_placed",
        ErrorKind::Conflict,
    );
}

#[test]
fn place_order_at_a_closed_restaurant_is_refused() {
    let cmd = PlaceOrder {
        restaurant: RestaurantSnapshot {
            is_open: false,
            ..restaurant()
        },
        ..place()
    };
    let error = place_fails(cmd, "restaurant_closed", ErrorKind::Conflict);
    assert_eq!(
        error,
        OrderError::RestaurantClosed {
            restaurant_id: restaurant_id()
        }
    );
}

#[test]
fn place_order_needs_items() {
    place_fails(
        PlaceOrder {
            items: vec![],
            ..place()
        },
        "empty_order",
        ErrorKind::Invalid,
    );
}

#[test]
fn place_order_quantity_must_be_1_to_50() {
    let error = place_fails(
        PlaceOrder {
            items: vec![(burger(), 0)],
            ..place()
        },
        "invalid_quantity",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        OrderError::InvalidQuantity {
            menu_item_id: burger_id(),
            quantity: 0,
            max: 50
        }
    );
    place_fails(
        PlaceOrder {
            items: vec![(burger(), 51)],
            ..place()
        },
        "invalid_quantity",
        ErrorKind::Invalid,
    );
    place_fails(
        PlaceOrder {
            items: vec![(burger(), u32::MAX)],
            ..place()
        },
        "invalid_quantity",
        ErrorKind::Invalid,
    );
    let events = given(
        vec![],
        PlaceOrder {
            items: vec![(burger(), 50)],
            ..place()
        },
    )
    .inspect_result()
    .unwrap();
    let OrderEvent::OrderPlaced(placed) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(placed.lines[0].quantity, 50);
    assert_eq!(placed.lines[0].line_total, eur(62_500));
    assert_eq!(placed.price.service_fee, eur(299)); // capped
}

#[test]
fn place_order_merges_duplicate_lines() {
    let cmd = PlaceOrder {
        items: vec![(burger(), 1), (fries(), 1), (burger(), 1)],
        ..place()
    };
    given(vec![], cmd).then_expect_events(vec![placed().into()]);
}

#[test]
fn place_order_merged_quantity_must_stay_within_50() {
    let cmd = PlaceOrder {
        items: vec![(burger(), 30), (burger(), 21)],
        ..place()
    };
    let error = place_fails(cmd, "invalid_quantity", ErrorKind::Invalid);
    assert_eq!(
        error,
        OrderError::InvalidQuantity {
            menu_item_id: burger_id(),
            quantity: 51,
            max: 50
        }
    );
}

#[test]
fn place_order_refuses_duplicate_lines_with_different_snapshots() {
    let cheaper = MenuItemSnapshot {
        price: eur(1_000),
        ..burger()
    };
    let cmd = PlaceOrder {
        items: vec![(burger(), 1), (cheaper, 1)],
        ..place()
    };
    place_fails(cmd, "conflicting_menu_item_lines", ErrorKind::Invalid);
}

#[test]
fn place_order_refuses_unavailable_items() {
    let sold_out = MenuItemSnapshot {
        available: false,
        ..fries()
    };
    let cmd = PlaceOrder {
        items: vec![(burger(), 1), (sold_out, 1)],
        ..place()
    };
    let error = place_fails(cmd, "menu_item_unavailable", ErrorKind::Conflict);
    assert_eq!(
        error,
        OrderError::MenuItemUnavailable {
            menu_item_id: fries_id()
        }
    );
}

#[test]
fn place_order_refuses_items_of_another_restaurant() {
    let elsewhere = RestaurantId(Uuid::from_u128(99));
    let foreign = MenuItemSnapshot {
        restaurant_id: elsewhere,
        ..fries()
    };
    let cmd = PlaceOrder {
        items: vec![(foreign, 1)],
        ..place()
    };
    let error = place_fails(cmd, "menu_item_not_from_restaurant", ErrorKind::Invalid);
    assert_eq!(
        error,
        OrderError::MenuItemNotFromRestaurant {
            menu_item_id: fries_id(),
            item_restaurant_id: elsewhere,
            restaurant_id: restaurant_id()
        }
    );
}

#[test]
fn place_order_refuses_items_in_another_currency() {
    let dollars = MenuItemSnapshot {
        price: Money::new(399, Currency::USD),
        ..fries()
    };
    let error = place_fails(
        PlaceOrder {
            items: vec![(dollars, 1)],
            ..place()
        },
        "currency_mismatch",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        OrderError::CurrencyMismatch {
            field: "menu item price",
            expected: Currency::EUR,
            found: Currency::USD
        }
    );
}

#[test]
fn place_order_refuses_negative_prices() {
    let negative = MenuItemSnapshot {
        price: eur(-1),
        ..fries()
    };
    place_fails(
        PlaceOrder {
            items: vec![(negative, 1)],
            ..place()
        },
        "invalid_item_price",
        ErrorKind::Invalid,
    );
}

#[test]
fn place_order_refuses_a_tip_in_another_currency() {
    let cmd = PlaceOrder {
        tip: Some(Money::new(100, Currency::GBP)),
        ..place()
    };
    let error = place_fails(cmd, "currency_mismatch", ErrorKind::Invalid);
    assert_eq!(
        error,
        OrderError::CurrencyMismatch {
            field: "tip",
            expected: Currency::EUR,
            found: Currency::GBP
        }
    );
}

#[test]
fn place_order_refuses_a_negative_tip() {
    let error = place_fails(
        PlaceOrder {
            tip: Some(eur(-1)),
            ..place()
        },
        "invalid_tip",
        ErrorKind::Invalid,
    );
    assert_eq!(error, OrderError::NegativeTip { tip: eur(-1) });
}

#[test]
fn place_order_refuses_invalid_coordinates() {
    for location in [
        GeoPoint {
            lat: 91.0,
            lon: 13.0,
        },
        GeoPoint {
            lat: 52.0,
            lon: -180.5,
        },
        GeoPoint {
            lat: f64::NAN,
            lon: 13.0,
        },
        GeoPoint {
            lat: 52.0,
            lon: f64::INFINITY,
        },
    ] {
        let cmd = PlaceOrder {
            delivery_address: DeliveryAddress {
                location,
                ..address()
            },
            ..place()
        };
        place_fails(cmd, "invalid_coordinates", ErrorKind::Invalid);
    }
}

#[test]
fn place_order_refuses_addresses_beyond_15_km() {
    // 0.14° of latitude ≈ 15.57 km.
    let far = DeliveryAddress {
        location: north_of_restaurant(0.14),
        ..address()
    };
    let error = place_fails(
        PlaceOrder {
            delivery_address: far,
            ..place()
        },
        "delivery_address_out_of_range",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        OrderError::DeliveryAddressTooFar {
            distance_m: 15_567,
            max_m: 15_000
        }
    );
}

#[test]
fn place_order_delivers_up_to_15_km_at_the_capped_fee() {
    // 0.13° of latitude ≈ 14.46 km.
    let far = DeliveryAddress {
        location: north_of_restaurant(0.13),
        ..address()
    };
    let events = given(
        vec![],
        PlaceOrder {
            delivery_address: far,
            ..place()
        },
    )
    .inspect_result()
    .unwrap();
    let OrderEvent::OrderPlaced(placed) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(placed.price.delivery_fee, eur(699));
}

#[test]
fn place_order_nearby_pays_the_base_delivery_fee() {
    let near = DeliveryAddress {
        location: north_of_restaurant(0.01),
        ..address()
    }; // ≈ 1.1 km
    let events = given(
        vec![],
        PlaceOrder {
            delivery_address: near,
            ..place()
        },
    )
    .inspect_result()
    .unwrap();
    let OrderEvent::OrderPlaced(placed) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(placed.price.delivery_fee, eur(199));
}

#[test]
fn place_order_needs_a_card_token_for_card_payments() {
    let cmd = PlaceOrder {
        payment_method: PaymentMethod::Card {
            payment_method_ref: " ".into(),
        },
        ..place()
    };
    place_fails(cmd, "card_token_required", ErrorKind::Invalid);
}

#[test]
fn place_order_refuses_broken_restaurant_data() {
    let cases = [
        RestaurantSnapshot {
            time_zone: "Mars/Olympus".into(),
            ..restaurant()
        },
        RestaurantSnapshot {
            tax_bps: -1,
            ..restaurant()
        },
        RestaurantSnapshot {
            commission_bps: 10_001,
            ..restaurant()
        },
        RestaurantSnapshot {
            location: GeoPoint {
                lat: 100.0,
                lon: 0.0,
            },
            ..restaurant()
        },
    ];
    for restaurant in cases {
        place_fails(
            PlaceOrder {
                restaurant,
                ..place()
            },
            "invalid_restaurant_snapshot",
            ErrorKind::Invalid,
        );
    }
}

#[test]
fn place_order_reports_overflow_instead_of_panicking() {
    let absurd = MenuItemSnapshot {
        price: eur(i64::MAX / 10),
        ..burger()
    };
    place_fails(
        PlaceOrder {
            items: vec![(absurd, 20)],
            ..place()
        },
        "amount_overflow",
        ErrorKind::Invalid,
    );
}

// ---------------------------------------------------------------- not found

#[test]
fn every_command_but_place_needs_an_order() {
    let commands: Vec<OrderCommand> = vec![
        ConfirmOrder {
            payment_id: None,
            now: at(1),
        }
        .into(),
        accept(10, 1).into(),
        reject("no", 1).into(),
        MarkReadyForPickup { now: at(1) }.into(),
        pick_up(1).into(),
        MarkDelivered { now: at(1) }.into(),
        CancelOrder {
            reason: "no".into(),
            by: ActorRole::Admin,
            now: at(1),
        }
        .into(),
    ];
    not_found_for_each(
        commands,
        |command| given(vec![], command),
        OrderCommand::name,
        "order_not_found",
        |command| OrderError::NotFound { command },
    );
}

// ---------------------------------------------------------------- ConfirmOrder

#[test]
fn confirm_card_order_with_its_payment() {
    given(
        history(OrderStatus::Placed),
        ConfirmOrder {
            payment_id: Some(payment_id()),
            now: at(1),
        },
    )
    .then_expect_events(vec![confirmed().into()]);
}

#[test]
fn confirm_cash_order_without_payment() {
    given(
        vec![cash_placed().into()],
        ConfirmOrder {
            payment_id: None,
            now: at(1),
        },
    )
    .then_expect_events(vec![
        OrderConfirmed {
            payment_id: None,
            confirmed_at: at(1),
        }
        .into(),
    ]);
}

#[test]
fn confirm_card_order_needs_a_payment_id() {
    let result = given(
        history(OrderStatus::Placed),
        ConfirmOrder {
            payment_id: None,
            now: at(1),
        },
    );
    expect_error(result, "payment_id_required", ErrorKind::Invalid);
}

#[test]
fn confirm_cash_order_refuses_a_payment_id() {
    let result = given(
        vec![cash_placed().into()],
        ConfirmOrder {
            payment_id: Some(payment_id()),
            now: at(1),
        },
    );
    expect_error(result, "payment_id_not_allowed", ErrorKind::Invalid);
}

#[test]
fn confirm_only_placed_orders() {
    only_in(
        &[OrderStatus::Placed],
        || ConfirmOrder {
            payment_id: Some(payment_id()),
            now: at(3),
        },
        "order_not_confirmable",
        |status| OrderError::NotConfirmable { status },
    );
}

// ---------------------------------------------------------------- AcceptOrder

#[test]
fn accept_sets_ready_by_from_preparation_time() {
    given(history(OrderStatus::Confirmed), accept(20, 2))
        .then_expect_events(vec![accepted().into()]);
}

#[test]
fn accept_preparation_time_bounds() {
    for minutes in [1, 180] {
        let events = given(history(OrderStatus::Confirmed), accept(minutes, 2))
            .inspect_result()
            .unwrap();
        let expected = OrderAccepted {
            preparation_minutes: minutes,
            ready_by: at(2 + i64::from(minutes)),
            accepted_at: at(2),
        };
        assert_eq!(events, vec![OrderEvent::from(expected)]);
    }
    for minutes in [0, 181, u32::MAX] {
        let error = expect_error(
            given(history(OrderStatus::Confirmed), accept(minutes, 2)),
            "invalid_preparation_time",
            ErrorKind::Invalid,
        );
        assert_eq!(
            error,
            OrderError::InvalidPreparationTime {
                minutes,
                min: 1,
                max: 180
            }
        );
    }
}

#[test]
fn accept_only_confirmed_orders() {
    only_in(
        &[OrderStatus::Confirmed],
        || accept(10, 3),
        "order_not_acceptable",
        |status| OrderError::NotAcceptable { status },
    );
}

// ---------------------------------------------------------------- RejectOrder

#[test]
fn restaurant_rejects_a_confirmed_order() {
    given(history(OrderStatus::Confirmed), reject("kitchen closed", 2))
        .then_expect_events(vec![rejected().into()]);
}

#[test]
fn reject_needs_a_reason() {
    let result = given(history(OrderStatus::Confirmed), reject("  ", 2));
    expect_error(result, "reason_required", ErrorKind::Invalid);
}

#[test]
fn reject_only_confirmed_orders() {
    only_in(
        &[OrderStatus::Confirmed],
        || reject("no", 3),
        "order_not_rejectable",
        |status| OrderError::NotRejectable { status },
    );
}

// ---------------------------------------------------------------- MarkReadyForPickup

#[test]
fn mark_ready_after_acceptance() {
    given(
        history(OrderStatus::Accepted),
        MarkReadyForPickup { now: at(20) },
    )
    .then_expect_events(vec![ready().into()]);
}

#[test]
fn mark_ready_only_accepted_orders() {
    only_in(
        &[OrderStatus::Accepted],
        || MarkReadyForPickup { now: at(30) },
        "order_not_in_preparation",
        |status| OrderError::NotInPreparation { status },
    );
}

// ---------------------------------------------------------------- MarkPickedUp

#[test]
fn pick_up_when_ready_or_still_preparing() {
    given(history(OrderStatus::ReadyForPickup), pick_up(25))
        .then_expect_events(vec![picked_up().into()]);
    given(history(OrderStatus::Accepted), pick_up(25)).then_expect_events(vec![picked_up().into()]);
}

#[test]
fn pick_up_only_accepted_or_ready_orders() {
    only_in(
        &[OrderStatus::Accepted, OrderStatus::ReadyForPickup],
        || pick_up(30),
        "order_not_awaiting_pickup",
        |status| OrderError::NotAwaitingPickup { status },
    );
}

// ---------------------------------------------------------------- MarkDelivered

#[test]
fn deliver_a_picked_up_order() {
    given(
        history(OrderStatus::PickedUp),
        MarkDelivered { now: at(40) },
    )
    .then_expect_events(vec![delivered().into()]);
}

#[test]
fn deliver_only_picked_up_orders() {
    only_in(
        &[OrderStatus::PickedUp],
        || MarkDelivered { now: at(50) },
        "order_not_deliverable",
        |status| OrderError::NotDeliverable { status },
    );
}

// ---------------------------------------------------------------- CancelOrder

fn cancel(by: ActorRole) -> CancelOrder {
    CancelOrder {
        reason: "changed my mind".into(),
        by,
        now: at(5),
    }
}

fn cancelled_by(by: ActorRole) -> OrderEvent {
    OrderCancelled {
        reason: "changed my mind".into(),
        cancelled_by: by,
        cancelled_at: at(5),
    }
    .into()
}

#[test]
fn customer_cancels_before_the_restaurant_accepts() {
    for status in [OrderStatus::Placed, OrderStatus::Confirmed] {
        given(history(status), cancel(ActorRole::Customer))
            .then_expect_events(vec![cancelled_by(ActorRole::Customer)]);
    }
}

#[test]
fn customer_cannot_cancel_once_accepted() {
    for status in [OrderStatus::Accepted, OrderStatus::ReadyForPickup] {
        let error = expect_error(
            given(history(status), cancel(ActorRole::Customer)),
            "cancellation_not_allowed_for_role",
            ErrorKind::Forbidden,
        );
        assert_eq!(
            error,
            OrderError::CancellationNotAllowedForRole {
                role: ActorRole::Customer,
                status
            }
        );
    }
}

#[test]
fn ops_admin_and_system_cancel_until_pickup() {
    for role in [ActorRole::Ops, ActorRole::Admin, ActorRole::System] {
        for status in [
            OrderStatus::Placed,
            OrderStatus::Confirmed,
            OrderStatus::Accepted,
            OrderStatus::ReadyForPickup,
        ] {
            given(history(status), cancel(role)).then_expect_events(vec![cancelled_by(role)]);
        }
    }
}

#[test]
fn restaurants_and_riders_never_cancel() {
    for role in [ActorRole::Restaurant, ActorRole::Rider] {
        for status in [
            OrderStatus::Placed,
            OrderStatus::Confirmed,
            OrderStatus::Accepted,
            OrderStatus::ReadyForPickup,
        ] {
            expect_error(
                given(history(status), cancel(role)),
                "cancellation_not_allowed_for_role",
                ErrorKind::Forbidden,
            );
        }
    }
}

#[test]
fn nobody_cancels_after_pickup_or_at_the_end() {
    for role in [
        ActorRole::Customer,
        ActorRole::Ops,
        ActorRole::Admin,
        ActorRole::System,
        ActorRole::Restaurant,
    ] {
        conflict_in(
            [
                OrderStatus::PickedUp,
                OrderStatus::Delivered,
                OrderStatus::Rejected,
                OrderStatus::Cancelled,
            ],
            |status| given(history(status), cancel(role)),
            "order_not_cancellable",
            |status| OrderError::NotCancellable { status },
        );
    }
}

#[test]
fn cancel_needs_a_reason() {
    let command = CancelOrder {
        reason: String::new(),
        ..cancel(ActorRole::Ops)
    };
    expect_error(
        given(history(OrderStatus::Placed), command),
        "reason_required",
        ErrorKind::Invalid,
    );
}

// ---------------------------------------------------------------- CancelUndeliverableOrder

fn undeliverable() -> CancelUndeliverableOrder {
    CancelUndeliverableOrder {
        reason: "delivery failed: customer not at the address".into(),
        now: at(5),
    }
}

#[test]
fn the_system_cancels_an_order_whose_delivery_failed_also_after_pickup() {
    for status in [
        OrderStatus::Accepted,
        OrderStatus::ReadyForPickup,
        OrderStatus::PickedUp,
    ] {
        given(history(status), undeliverable()).then_expect_events(vec![
            OrderCancelled {
                reason: "delivery failed: customer not at the address".into(),
                cancelled_by: ActorRole::System,
                cancelled_at: at(5),
            }
            .into(),
        ]);
    }
}

#[test]
fn an_order_without_delivery_or_at_the_end_is_not_cancelled_as_undeliverable() {
    conflict_in(
        [
            OrderStatus::Placed,
            OrderStatus::Confirmed,
            OrderStatus::Delivered,
            OrderStatus::Rejected,
            OrderStatus::Cancelled,
        ],
        |status| given(history(status), undeliverable()),
        "order_not_cancellable",
        |status| OrderError::NotCancellable { status },
    );
    let command = CancelUndeliverableOrder {
        reason: String::new(),
        ..undeliverable()
    };
    expect_error(
        given(history(OrderStatus::PickedUp), command),
        "reason_required",
        ErrorKind::Invalid,
    );
}

// ---------------------------------------------------------------- state

#[test]
fn state_follows_the_events() {
    assert_eq!(Order::default().status(), None);
    let order = apply_all(history(OrderStatus::Placed));
    assert_eq!(order.status(), Some(OrderStatus::Placed));
    assert_eq!(order.order_id(), Some(order_id()));
    assert_eq!(order.customer_id(), Some(customer_id()));
    assert_eq!(order.restaurant_id(), Some(restaurant_id()));
    assert_eq!(order.price().map(|p| p.total), Some(eur(3_716)));
    assert!(order.is_card_payment());

    for status in ALL_STATUSES {
        assert_eq!(apply_all(history(status)).status(), Some(status));
    }
    let delivered = apply_all(history(OrderStatus::Delivered));
    assert_eq!(delivered.payment_id(), Some(payment_id()));
    assert_eq!(delivered.ready_by(), Some(at(22)));
    assert_eq!(delivered.rider_id(), Some(rider_id()));
    assert_eq!(
        apply_all(history(OrderStatus::Cancelled)).cancelled_by(),
        Some(ActorRole::Customer)
    );
}

#[test]
fn state_survives_a_snapshot_round_trip() {
    let order = apply_all(history(OrderStatus::PickedUp));
    let json = serde_json::to_string(&order).unwrap();
    assert_eq!(serde_json::from_str::<Order>(&json).unwrap(), order);
}

#[test]
fn every_error_code_is_snake_case_and_usable_through_the_trait() {
    let error: Box<dyn DomainError> = Box::new(OrderError::NotFound {
        command: "MarkDelivered",
    });
    assert_eq!(error.code(), "order_not_found");
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert_eq!(error.to_string(), "order not found (command MarkDelivered)");
}

// ---------------------------------------------------------------- caps and text (issue 13)

#[test]
fn a_tip_above_the_cap_is_refused_and_the_cap_itself_is_fine() {
    let cmd = PlaceOrder {
        tip: Some(eur(9_000_000_000_000_000_000)),
        ..place()
    };
    let error = place_fails(cmd, "tip_too_large", ErrorKind::Invalid);
    assert_eq!(
        error,
        OrderError::TipTooLarge {
            tip: eur(9_000_000_000_000_000_000),
            max: 10_000
        }
    );
    place_fails(
        PlaceOrder {
            tip: Some(eur(10_001)),
            ..place()
        },
        "tip_too_large",
        ErrorKind::Invalid,
    );
    let event = Order::default()
        .decide(
            PlaceOrder {
                tip: Some(eur(10_000)),
                ..place()
            }
            .into(),
        )
        .unwrap();
    let OrderEvent::OrderPlaced(placed) = event else {
        panic!("placed")
    };
    assert_eq!(placed.price.tip, eur(10_000));
}

#[test]
fn an_order_whose_total_would_pass_the_cap_is_refused() {
    // 50 × 99.99 = 4 999.50, + 7 % tax alone passes 5 000.00.
    let dear = MenuItemSnapshot {
        price: eur(9_999),
        ..burger()
    };
    let error = place_fails(
        PlaceOrder {
            items: vec![(dear.clone(), 50)],
            tip: None,
            ..place()
        },
        "order_total_too_large",
        ErrorKind::Invalid,
    );
    assert!(matches!(
        error,
        OrderError::TotalTooLarge { max: 500_000, .. }
    ));
    // 40 × 99.99 = 3 999.60 (+ tax, fees, tip) stays below.
    Order::default()
        .decide(
            PlaceOrder {
                items: vec![(dear, 40)],
                ..place()
            }
            .into(),
        )
        .unwrap();
}

#[test]
fn address_text_is_checked_by_the_domain_for_every_caller() {
    for (street, code) in [
        ("Main St\u{0} 1", "text_control_character"),
        ("Main St\n1", "text_control_character"),
        ("", "text_required"),
    ] {
        let cmd = PlaceOrder {
            delivery_address: DeliveryAddress {
                street: street.into(),
                ..address()
            },
            ..place()
        };
        place_fails(cmd, code, ErrorKind::Invalid);
    }
    let cmd = PlaceOrder {
        delivery_address: DeliveryAddress {
            city: "x".repeat(101),
            ..address()
        },
        ..place()
    };
    place_fails(cmd, "text_too_long", ErrorKind::Invalid);
}

#[test]
fn reasons_are_at_most_500_characters_without_control_characters() {
    for (reason, code) in [
        ("x".repeat(501), "text_too_long"),
        ("no\u{0}pe".to_owned(), "text_control_character"),
    ] {
        let err = apply_all(vec![placed().into()])
            .decide(
                CancelOrder {
                    reason,
                    by: ActorRole::Customer,
                    now: at(1),
                }
                .into(),
            )
            .unwrap_err();
        assert_eq!(err.code(), code);
    }
}
