//! Fixtures shared by the aggregates' given/when/then tests: the clock, the
//! ids of the one order every test is about, and the error and replay checks
//! each aggregate's tests use alike.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::AggregateResultValidator;
use ordertrail_schemas::*;
use uuid::Uuid;

use crate::{DomainError, ErrorKind};

/// `minutes` after noon of the tests' day.
pub(crate) fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + TimeDelta::minutes(minutes)
}

/// `seconds` after noon of the tests' day.
pub(crate) fn at_s(seconds: i64) -> DateTime<Utc> {
    at(0) + TimeDelta::seconds(seconds)
}

pub(crate) fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::EUR)
}

pub(crate) fn order_id() -> OrderId {
    OrderId(Uuid::from_u128(1))
}
pub(crate) fn customer_id() -> CustomerId {
    CustomerId(Uuid::from_u128(2))
}
pub(crate) fn restaurant_id() -> RestaurantId {
    RestaurantId(Uuid::from_u128(3))
}
pub(crate) fn rider_id() -> RiderId {
    RiderId(Uuid::from_u128(20))
}
pub(crate) fn other_rider_id() -> RiderId {
    RiderId(Uuid::from_u128(21))
}
pub(crate) fn payment_id() -> PaymentId {
    PaymentId::for_order(order_id())
}
pub(crate) fn delivery_id() -> DeliveryId {
    DeliveryId::for_order(order_id())
}

/// The command was refused with `code` and `kind`; the error, for further checks.
#[track_caller]
pub(crate) fn expect_error<A>(
    result: AggregateResultValidator<A>,
    code: &str,
    kind: ErrorKind,
) -> A::Error
where
    A: Aggregate,
    A::Error: DomainError,
{
    match result.inspect_result() {
        Ok(events) => panic!("expected {code}, got events {events:?}"),
        Err(error) => {
            assert_eq!((error.code(), error.kind()), (code, kind), "{error}");
            error
        }
    }
}

/// `when(status)` is refused as a conflict with `code`, naming the status
/// (`error(status)`), in each of `statuses`.
#[track_caller]
pub(crate) fn conflict_in<A, S>(
    statuses: impl IntoIterator<Item = S>,
    when: impl Fn(S) -> AggregateResultValidator<A>,
    code: &str,
    error: impl Fn(S) -> A::Error,
) where
    A: Aggregate,
    A::Error: DomainError + PartialEq,
    S: Copy + std::fmt::Display,
{
    for status in statuses {
        let refused = expect_error(when(status), code, ErrorKind::Conflict);
        assert_eq!(refused, error(status), "in status {status}");
    }
}

/// Each of `commands`, on an aggregate that does not exist (`when`), is
/// refused as not found (`code`), naming the command (`error(name)`).
#[track_caller]
pub(crate) fn not_found_for_each<A, C>(
    commands: Vec<C>,
    when: impl Fn(C) -> AggregateResultValidator<A>,
    name: fn(&C) -> &'static str,
    code: &str,
    error: impl Fn(&'static str) -> A::Error,
) where
    A: Aggregate,
    A::Error: DomainError + PartialEq,
{
    for command in commands {
        let name = name(&command);
        let refused = expect_error(when(command), code, ErrorKind::NotFound);
        assert_eq!(refused, error(name), "{name}");
    }
}

/// The aggregate these events fold to.
pub(crate) fn fold<A: Aggregate>(events: Vec<A::Event>) -> A {
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(event);
    }
    aggregate
}
