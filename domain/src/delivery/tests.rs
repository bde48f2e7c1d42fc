//! Given/when/then tests of the delivery rules.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::{AggregateResultValidator, TestFramework};
use ordertrail_schemas::events::*;
use ordertrail_schemas::privacy::DropoffCodeKey;
use ordertrail_schemas::*;

use super::*;
use crate::ErrorKind;
use crate::testing::*;
use crate::testing::{other_rider_id as other_rider, rider_id as rider};

/// The delivery these events fold to.
fn apply_all(events: Vec<DeliveryEvent>) -> Delivery {
    fold(events)
}

const PICKUP: GeoPoint = GeoPoint {
    lat: 52.52,
    lon: 13.405,
};
const DROPOFF: GeoPoint = GeoPoint {
    lat: 52.55,
    lon: 13.405,
};
/// ≈ 1 000.8 m north of [`PICKUP`].
const ONE_KM_NORTH: GeoPoint = GeoPoint {
    lat: 52.529,
    lon: 13.405,
};

fn request() -> RequestDelivery {
    RequestDelivery {
        delivery_id: delivery_id(),
        order_id: order_id(),
        restaurant_id: restaurant_id(),
        pickup: PICKUP,
        dropoff: DROPOFF,
        dropoff_code_hash: code_hash("4821"),
        ready_by: Some(at(22)),
        now: at(1),
    }
}

fn requested() -> DeliveryRequested {
    DeliveryRequested {
        delivery_id: delivery_id(),
        order_id: order_id(),
        restaurant_id: restaurant_id(),
        pickup: PICKUP,
        dropoff: DROPOFF,
        dropoff_code_hash: code_hash("4821"),
        ready_by: Some(at(22)),
        requested_at: at(1),
    }
}

fn assigned(rider_id: RiderId) -> RiderAssigned {
    RiderAssigned {
        rider_id,
        assigned_at: at(2),
    }
}

fn unassigned() -> RiderUnassigned {
    RiderUnassigned {
        rider_id: rider(),
        reason: "bike broke".into(),
        unassigned_at: at(3),
    }
}

fn located(location: GeoPoint, reported_at: DateTime<Utc>) -> RiderLocationReported {
    RiderLocationReported {
        rider_id: rider(),
        location,
        reported_at,
        accuracy_m: Some(8),
    }
}

fn picked_up() -> PickupConfirmed {
    PickupConfirmed {
        rider_id: rider(),
        picked_up_at: at(25),
    }
}

fn code_rejected(attempts: u32) -> DropoffCodeRejected {
    DropoffCodeRejected {
        rider_id: rider(),
        attempts,
        rejected_at: at(40),
    }
}

fn completed() -> DeliveryCompleted {
    DeliveryCompleted {
        rider_id: rider(),
        completed_at: at(40),
    }
}

fn failed() -> DeliveryFailed {
    DeliveryFailed {
        reason: "customer absent".into(),
        failed_at: at(50),
    }
}

fn cancelled() -> DeliveryCancelled {
    DeliveryCancelled {
        reason: "order cancelled".into(),
        cancelled_at: at(5),
    }
}

fn history(status: DeliveryStatus) -> Vec<DeliveryEvent> {
    let mut events: Vec<DeliveryEvent> = vec![requested().into()];
    let tail: Vec<DeliveryEvent> = match status {
        DeliveryStatus::Requested => vec![],
        DeliveryStatus::Assigned => vec![assigned(rider()).into()],
        DeliveryStatus::PickedUp => vec![assigned(rider()).into(), picked_up().into()],
        DeliveryStatus::Completed => vec![
            assigned(rider()).into(),
            picked_up().into(),
            completed().into(),
        ],
        DeliveryStatus::Failed => vec![
            assigned(rider()).into(),
            picked_up().into(),
            failed().into(),
        ],
        DeliveryStatus::Cancelled => vec![assigned(rider()).into(), cancelled().into()],
    };
    events.extend(tail);
    events
}

const FINAL: [DeliveryStatus; 3] = [
    DeliveryStatus::Completed,
    DeliveryStatus::Failed,
    DeliveryStatus::Cancelled,
];

fn given(
    events: Vec<DeliveryEvent>,
    command: impl Into<DeliveryCommand>,
) -> AggregateResultValidator<Delivery> {
    TestFramework::<Delivery>::with(())
        .given(events)
        .when(command.into())
}

/// `command` is refused as a conflict naming the status (`code`, `error`)
/// in each of `statuses`.
#[track_caller]
fn refused_in<C: Into<DeliveryCommand>>(
    statuses: &[DeliveryStatus],
    command: impl Fn() -> C,
    code: &str,
    error: fn(DeliveryStatus) -> DeliveryError,
) {
    conflict_in(
        statuses.iter().copied(),
        |status| given(history(status), command()),
        code,
        error,
    );
}

#[test]
fn type_is_the_aggregate_kind() {
    assert_eq!(Delivery::TYPE, AggregateKind::Delivery.as_str());
}

// ---------------------------------------------------------------- RequestDelivery

#[test]
fn request_a_delivery() {
    given(vec![], request()).then_expect_events(vec![requested().into()]);
}

#[test]
fn request_twice_is_a_conflict() {
    let error = expect_error(
        given(history(DeliveryStatus::Assigned), request()),
        "delivery_already_requested",
        ErrorKind::Conflict,
    );
    assert_eq!(
        error,
        DeliveryError::AlreadyRequested {
            delivery_id: delivery_id()
        }
    );
}

/// The keyed hash events store for `code` of the test delivery.
fn code_hash(code: &str) -> String {
    DropoffCodeKey::for_tests().hash(delivery_id(), code)
}

#[test]
fn a_delivery_is_requested_with_a_keyed_hash_never_a_code() {
    let legacy = ordertrail_schemas::privacy::legacy_dropoff_code_hash(delivery_id(), "4821");
    for hash in [
        "",
        "4821",
        "hmac-sha256:",
        "hmac-sha256:zz",
        legacy.as_str(),
    ] {
        let command = RequestDelivery {
            dropoff_code_hash: hash.into(),
            ..request()
        };
        expect_error(
            given(vec![], command),
            "invalid_dropoff_code_hash",
            ErrorKind::Invalid,
        );
    }
}

#[test]
fn dropoff_code_is_exactly_four_ascii_digits() {
    for code in ["", "123", "12345", "12a4", "١٢٣٤", " 123", "12 4"] {
        expect_error(
            given(history(DeliveryStatus::PickedUp), complete(code)),
            "invalid_dropoff_code",
            ErrorKind::Invalid,
        );
    }
    assert!(is_valid_dropoff_code("0000"));
    assert!(!is_valid_dropoff_code("١٢٣٤"));
}

#[test]
fn request_needs_valid_coordinates() {
    let bad = GeoPoint {
        lat: -91.0,
        lon: 0.0,
    };
    let error = expect_error(
        given(
            vec![],
            RequestDelivery {
                pickup: bad,
                ..request()
            },
        ),
        "invalid_coordinates",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        DeliveryError::InvalidCoordinates {
            field: "pickup",
            lat: -91.0,
            lon: 0.0
        }
    );
    let nan = GeoPoint {
        lat: 0.0,
        lon: f64::NAN,
    };
    expect_error(
        given(
            vec![],
            RequestDelivery {
                dropoff: nan,
                ..request()
            },
        ),
        "invalid_coordinates",
        ErrorKind::Invalid,
    );
}

#[test]
fn every_command_but_request_needs_a_delivery() {
    let commands: Vec<DeliveryCommand> = vec![
        AssignRider {
            rider_id: rider(),
            now: at(2),
        }
        .into(),
        UnassignRider {
            reason: "x".into(),
            now: at(2),
        }
        .into(),
        ReportLocation {
            rider_id: rider(),
            location: PICKUP,
            reported_at: at(2),
            accuracy_m: None,
            now: at(2),
        }
        .into(),
        ConfirmPickup {
            rider_id: rider(),
            now: at(2),
        }
        .into(),
        CompleteDelivery {
            rider_id: rider(),
            dropoff_code: "4821".into(),
            dropoff_code_hashes: vec![code_hash("4821")],
            now: at(2),
        }
        .into(),
        fail("x").into(),
        cancel("x").into(),
    ];
    not_found_for_each(
        commands,
        |command| given(vec![], command),
        DeliveryCommand::name,
        "delivery_not_found",
        |command| DeliveryError::NotFound { command },
    );
}

// ---------------------------------------------------------------- AssignRider

fn assign(rider_id: RiderId) -> AssignRider {
    AssignRider {
        rider_id,
        now: at(2),
    }
}

#[test]
fn assign_a_rider_to_a_requested_delivery() {
    given(history(DeliveryStatus::Requested), assign(rider()))
        .then_expect_events(vec![assigned(rider()).into()]);
}

#[test]
fn reassign_after_unassignment() {
    let events = vec![
        requested().into(),
        assigned(rider()).into(),
        unassigned().into(),
    ];
    given(events, assign(other_rider())).then_expect_events(vec![assigned(other_rider()).into()]);
}

#[test]
fn another_riders_delivery_cannot_be_taken() {
    for status in [DeliveryStatus::Assigned, DeliveryStatus::PickedUp] {
        let error = expect_error(
            given(history(status), assign(other_rider())),
            "delivery_already_assigned",
            ErrorKind::Conflict,
        );
        assert_eq!(error, DeliveryError::AlreadyAssigned { rider_id: rider() });
    }
}

#[test]
fn assigning_the_same_rider_again_is_a_conflict() {
    let error = expect_error(
        given(history(DeliveryStatus::Assigned), assign(rider())),
        "rider_already_assigned",
        ErrorKind::Conflict,
    );
    assert_eq!(
        error,
        DeliveryError::RiderAlreadyAssigned { rider_id: rider() }
    );
}

#[test]
fn finished_deliveries_are_not_assigned() {
    refused_in(
        &FINAL,
        || assign(other_rider()),
        "delivery_not_assignable",
        |status| DeliveryError::NotAssignable { status },
    );
    // Also when nobody held it.
    let events = vec![requested().into(), cancelled().into()];
    expect_error(
        given(events, assign(rider())),
        "delivery_not_assignable",
        ErrorKind::Conflict,
    );
}

// ---------------------------------------------------------------- UnassignRider

fn unassign() -> UnassignRider {
    UnassignRider {
        reason: "bike broke".into(),
        now: at(3),
    }
}

#[test]
fn unassign_before_pickup() {
    given(history(DeliveryStatus::Assigned), unassign())
        .then_expect_events(vec![unassigned().into()]);
}

#[test]
fn unassign_only_an_assigned_delivery_before_pickup() {
    refused_in(
        &[
            DeliveryStatus::Requested,
            DeliveryStatus::PickedUp,
            DeliveryStatus::Completed,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ],
        unassign,
        "delivery_not_unassignable",
        |status| DeliveryError::NotUnassignable { status },
    );
}

#[test]
fn unassign_needs_a_reason() {
    let command = UnassignRider {
        reason: "".into(),
        ..unassign()
    };
    expect_error(
        given(history(DeliveryStatus::Assigned), command),
        "reason_required",
        ErrorKind::Invalid,
    );
}

// ---------------------------------------------------------------- ReportLocation

fn report(location: GeoPoint, reported_at: DateTime<Utc>) -> ReportLocation {
    ReportLocation {
        rider_id: rider(),
        location,
        reported_at,
        accuracy_m: Some(8),
        now: reported_at,
    }
}

fn with_fix_at_pickup() -> Vec<DeliveryEvent> {
    let mut events = history(DeliveryStatus::Assigned);
    events.push(located(PICKUP, at_s(0)).into());
    events
}

#[test]
fn the_assigned_rider_reports_locations_before_and_after_pickup() {
    for status in [DeliveryStatus::Assigned, DeliveryStatus::PickedUp] {
        given(history(status), report(PICKUP, at(30)))
            .then_expect_events(vec![located(PICKUP, at(30)).into()]);
    }
}

#[test]
fn only_the_assigned_rider_reports() {
    let command = ReportLocation {
        rider_id: other_rider(),
        ..report(PICKUP, at(3))
    };
    let error = expect_error(
        given(history(DeliveryStatus::Assigned), command.clone()),
        "rider_not_assigned",
        ErrorKind::Forbidden,
    );
    assert_eq!(
        error,
        DeliveryError::RiderNotAssigned {
            rider_id: other_rider()
        }
    );
    expect_error(
        given(history(DeliveryStatus::Requested), report(PICKUP, at(3))),
        "rider_not_assigned",
        ErrorKind::Forbidden,
    );
}

#[test]
fn finished_deliveries_take_no_locations() {
    refused_in(
        &FINAL,
        || report(PICKUP, at(60)),
        "delivery_not_trackable",
        |status| DeliveryError::NotTrackable { status },
    );
}

#[test]
fn location_must_be_a_valid_coordinate() {
    let bad = GeoPoint {
        lat: 0.0,
        lon: 181.0,
    };
    expect_error(
        given(history(DeliveryStatus::Assigned), report(bad, at(3))),
        "invalid_coordinates",
        ErrorKind::Invalid,
    );
}

#[test]
fn location_time_may_not_go_backwards() {
    let error = expect_error(
        given(with_fix_at_pickup(), report(PICKUP, at_s(-1))),
        "location_timestamp_regressed",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        DeliveryError::LocationTimestampRegressed {
            reported_at: at_s(-1),
            previous: at_s(0)
        }
    );
    // The same time and place again is fine (a duplicate fix).
    given(with_fix_at_pickup(), report(PICKUP, at_s(0)))
        .then_expect_events(vec![located(PICKUP, at_s(0)).into()]);
}

#[test]
fn location_time_may_be_at_most_two_minutes_ahead() {
    let ahead = |seconds| ReportLocation {
        now: at(3),
        ..report(PICKUP, at(3) + TimeDelta::seconds(seconds))
    };
    given(history(DeliveryStatus::Assigned), ahead(120)).then_expect_events(vec![
        located(PICKUP, at(3) + TimeDelta::seconds(120)).into(),
    ]);
    let error = expect_error(
        given(history(DeliveryStatus::Assigned), ahead(121)),
        "location_timestamp_in_future",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        DeliveryError::LocationTimestampInFuture {
            reported_at: at(3) + TimeDelta::seconds(121),
            now: at(3),
            max_lead_seconds: 120
        }
    );
}

#[test]
fn riders_move_at_most_200_km_per_hour() {
    // 1 000.8 m at 200 km/h takes 18.01 s.
    given(with_fix_at_pickup(), report(ONE_KM_NORTH, at_s(19)))
        .then_expect_events(vec![located(ONE_KM_NORTH, at_s(19)).into()]);
    let error = expect_error(
        given(with_fix_at_pickup(), report(ONE_KM_NORTH, at_s(18))),
        "implausible_location",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        DeliveryError::ImplausibleLocation {
            distance_m: 1_001,
            elapsed_ms: 18_000,
            max_kmh: 200
        }
    );
    // Moving without time passing is implausible too.
    expect_error(
        given(with_fix_at_pickup(), report(ONE_KM_NORTH, at_s(0))),
        "implausible_location",
        ErrorKind::Invalid,
    );
}

#[test]
fn a_new_rider_starts_without_a_previous_fix() {
    let mut events = with_fix_at_pickup();
    events.push(unassigned().into());
    events.push(assigned(other_rider()).into());
    // Far away and earlier than the previous rider's fix: no speed or order check.
    let command = ReportLocation {
        rider_id: other_rider(),
        ..report(DROPOFF, at_s(-30))
    };
    given(events, command).then_expect_events(vec![
        RiderLocationReported {
            rider_id: other_rider(),
            location: DROPOFF,
            reported_at: at_s(-30),
            accuracy_m: Some(8),
        }
        .into(),
    ]);
}

// ---------------------------------------------------------------- ConfirmPickup

#[test]
fn the_assigned_rider_confirms_pickup() {
    given(
        history(DeliveryStatus::Assigned),
        ConfirmPickup {
            rider_id: rider(),
            now: at(25),
        },
    )
    .then_expect_events(vec![picked_up().into()]);
}

#[test]
fn only_the_assigned_rider_confirms_pickup() {
    for status in [DeliveryStatus::Assigned, DeliveryStatus::Requested] {
        expect_error(
            given(
                history(status),
                ConfirmPickup {
                    rider_id: other_rider(),
                    now: at(25),
                },
            ),
            "rider_not_assigned",
            ErrorKind::Forbidden,
        );
    }
}

#[test]
fn pickup_only_once_and_before_the_end() {
    conflict_in(
        [
            DeliveryStatus::PickedUp,
            DeliveryStatus::Completed,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ],
        |status| {
            given(
                history(status),
                ConfirmPickup {
                    rider_id: rider(),
                    now: at(30),
                },
            )
        },
        "delivery_not_awaiting_pickup",
        |status| DeliveryError::NotAwaitingPickup { status },
    );
}

// ---------------------------------------------------------------- CompleteDelivery

fn complete(code: &str) -> CompleteDelivery {
    CompleteDelivery {
        rider_id: rider(),
        dropoff_code: code.into(),
        dropoff_code_hashes: DropoffCodeKey::for_tests().candidates(delivery_id(), code),
        now: at(40),
    }
}

#[test]
fn complete_with_the_right_code() {
    given(history(DeliveryStatus::PickedUp), complete("4821"))
        .then_expect_events(vec![completed().into()]);
}

#[test]
fn a_wrong_code_is_recorded_and_counted() {
    given(history(DeliveryStatus::PickedUp), complete("1111"))
        .then_expect_events(vec![code_rejected(1).into()]);
    let mut events = history(DeliveryStatus::PickedUp);
    events.extend([code_rejected(1).into(), code_rejected(2).into()]);
    given(events, complete("1111")).then_expect_events(vec![code_rejected(3).into()]);
}

#[test]
fn the_right_code_still_works_after_two_wrong_ones() {
    let mut events = history(DeliveryStatus::PickedUp);
    events.extend([code_rejected(1).into(), code_rejected(2).into()]);
    given(events, complete("4821")).then_expect_events(vec![completed().into()]);
}

#[test]
fn after_three_wrong_codes_no_more_attempts() {
    let mut events = history(DeliveryStatus::PickedUp);
    events.extend([
        code_rejected(1).into(),
        code_rejected(2).into(),
        code_rejected(3).into(),
    ]);
    for code in ["4821", "1111"] {
        let error = expect_error(
            given(events.clone(), complete(code)),
            "dropoff_attempts_exhausted",
            ErrorKind::Conflict,
        );
        assert_eq!(
            error,
            DeliveryError::DropoffAttemptsExhausted { attempts: 3 }
        );
    }
    // Ops can still fail the delivery.
    given(events, fail("customer absent")).then_expect_events(vec![failed().into()]);
}

#[test]
fn a_delivery_requested_before_hashing_completes_with_its_old_code() {
    // A version 1 event, upcast: the hash is the unkeyed legacy form.
    let mut events = history(DeliveryStatus::PickedUp);
    if let Some(DeliveryEvent::DeliveryRequested(r)) = events.first_mut() {
        r.dropoff_code_hash =
            ordertrail_schemas::privacy::legacy_dropoff_code_hash(delivery_id(), "4821");
    }
    given(events.clone(), complete("4821")).then_expect_events(vec![completed().into()]);
    given(events, complete("1111")).then_expect_events(vec![code_rejected(1).into()]);
}

#[test]
fn a_malformed_code_is_bad_input_and_uses_no_attempt() {
    let error = expect_error(
        given(history(DeliveryStatus::PickedUp), complete("48")),
        "invalid_dropoff_code",
        ErrorKind::Invalid,
    );
    assert_eq!(error, DeliveryError::InvalidDropoffCode { length: 2 });
}

#[test]
fn only_the_assigned_rider_completes() {
    let command = CompleteDelivery {
        rider_id: other_rider(),
        ..complete("4821")
    };
    expect_error(
        given(history(DeliveryStatus::PickedUp), command),
        "rider_not_assigned",
        ErrorKind::Forbidden,
    );
}

#[test]
fn complete_only_after_pickup_and_before_the_end() {
    refused_in(
        &[
            DeliveryStatus::Assigned,
            DeliveryStatus::Completed,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ],
        || complete("4821"),
        "delivery_not_completable",
        |status| DeliveryError::NotCompletable { status },
    );
    // Nobody holds a merely requested delivery.
    expect_error(
        given(history(DeliveryStatus::Requested), complete("4821")),
        "rider_not_assigned",
        ErrorKind::Forbidden,
    );
}

// ---------------------------------------------------------------- FailDelivery / CancelDelivery

fn fail(reason: &str) -> FailDelivery {
    FailDelivery {
        reason: reason.into(),
        now: at(50),
    }
}

fn cancel(reason: &str) -> CancelDelivery {
    CancelDelivery {
        reason: reason.into(),
        now: at(5),
    }
}

/// `command(reason)` ends the delivery with `ended` in each of `allowed`,
/// is refused as a conflict (`code`, `error`) in every other status, and
/// needs a reason that is not blank.
#[track_caller]
fn ends_only_in<C: Into<DeliveryCommand>>(
    allowed: &[DeliveryStatus],
    command: impl Fn(&str) -> C,
    (reason, ended): (&str, DeliveryEvent),
    code: &str,
    error: fn(DeliveryStatus) -> DeliveryError,
) {
    for &status in allowed {
        given(history(status), command(reason)).then_expect_events(vec![ended.clone()]);
        for blank in ["", " "] {
            expect_error(
                given(history(status), command(blank)),
                "reason_required",
                ErrorKind::Invalid,
            );
        }
    }
    let refused: Vec<DeliveryStatus> = DeliveryStatus::ALL
        .into_iter()
        .filter(|s| !allowed.contains(s))
        .collect();
    refused_in(&refused, || command("x"), code, error);
}

#[test]
fn fail_any_time_before_the_end() {
    ends_only_in(
        &[
            DeliveryStatus::Requested,
            DeliveryStatus::Assigned,
            DeliveryStatus::PickedUp,
        ],
        fail,
        ("customer absent", failed().into()),
        "delivery_not_failable",
        |status| DeliveryError::NotFailable { status },
    );
}

#[test]
fn cancel_only_before_pickup() {
    ends_only_in(
        &[DeliveryStatus::Requested, DeliveryStatus::Assigned],
        cancel,
        ("order cancelled", cancelled().into()),
        "delivery_not_cancellable",
        |status| DeliveryError::NotCancellable { status },
    );
}

// ---------------------------------------------------------------- state

#[test]
fn state_follows_the_events() {
    assert_eq!(Delivery::default().status(), None);
    for status in [
        DeliveryStatus::Requested,
        DeliveryStatus::Assigned,
        DeliveryStatus::PickedUp,
        DeliveryStatus::Completed,
        DeliveryStatus::Failed,
        DeliveryStatus::Cancelled,
    ] {
        assert_eq!(apply_all(history(status)).status(), Some(status));
    }
    let mut events = with_fix_at_pickup();
    events.extend([picked_up().into(), code_rejected(1).into()]);
    let delivery = apply_all(events);
    assert_eq!(delivery.delivery_id(), Some(delivery_id()));
    assert_eq!(delivery.order_id(), Some(order_id()));
    assert_eq!(delivery.restaurant_id(), Some(restaurant_id()));
    assert_eq!(delivery.pickup(), Some(PICKUP));
    assert_eq!(delivery.dropoff(), Some(DROPOFF));
    assert_eq!(delivery.ready_by(), Some(at(22)));
    assert_eq!(delivery.assigned_rider(), Some(rider()));
    assert_eq!(delivery.last_location(), Some((PICKUP, at_s(0))));
    assert_eq!(delivery.failed_dropoff_attempts(), 1);
    let json = serde_json::to_string(&delivery).unwrap();
    assert_eq!(serde_json::from_str::<Delivery>(&json).unwrap(), delivery);

    let unassigned = apply_all(vec![
        requested().into(),
        assigned(rider()).into(),
        unassigned().into(),
    ]);
    assert_eq!(unassigned.status(), Some(DeliveryStatus::Requested));
    assert_eq!(unassigned.assigned_rider(), None);
}

// ---------------------------------------------------------------- FlagDelivery

fn flag() -> FlagDelivery {
    FlagDelivery {
        reason: "no rider assigned within 600 s".into(),
        now: at(10),
    }
}

fn flagged() -> DeliveryFlagged {
    DeliveryFlagged {
        reason: "no rider assigned within 600 s".into(),
        flagged_at: at(10),
    }
}

#[test]
fn a_delivery_waiting_for_a_rider_is_flagged_once() {
    given(history(DeliveryStatus::Requested), flag()).then_expect_events(vec![flagged().into()]);
    let mut events = history(DeliveryStatus::Requested);
    events.push(flagged().into());
    let error = expect_error(
        given(events.clone(), flag()),
        "delivery_already_flagged",
        ErrorKind::Conflict,
    );
    assert_eq!(error, DeliveryError::AlreadyFlagged);
    let delivery = apply_all(events);
    assert!(delivery.is_flagged());
    assert_eq!(delivery.status(), Some(DeliveryStatus::Requested));
    assert!(!apply_all(history(DeliveryStatus::Requested)).is_flagged());
}

#[test]
fn a_flagged_delivery_can_still_be_assigned() {
    let mut events = history(DeliveryStatus::Requested);
    events.push(flagged().into());
    given(events, assign(rider())).then_expect_events(vec![assigned(rider()).into()]);
}

#[test]
fn a_delivery_that_loses_its_rider_or_is_overdue_after_pickup_is_flagged_again() {
    let mut events = history(DeliveryStatus::Requested);
    events.push(flagged().into());
    events.push(assigned(rider()).into());
    // Assigned (e.g. completion overdue) may be flagged ...
    given(events.clone(), flag()).then_expect_events(vec![flagged().into()]);
    // ... and after losing the rider it waits again, unflagged.
    let mut lost = events.clone();
    lost.push(
        RiderUnassigned {
            rider_id: rider(),
            reason: "not picked up in time".into(),
            unassigned_at: at(9),
        }
        .into(),
    );
    assert!(!apply_all(lost.clone()).is_flagged());
    given(lost, flag()).then_expect_events(vec![flagged().into()]);
    for status in [DeliveryStatus::Assigned, DeliveryStatus::PickedUp] {
        given(history(status), flag()).then_expect_events(vec![flagged().into()]);
    }
}

#[test]
fn only_a_delivery_not_yet_ended_is_flagged() {
    refused_in(
        &[
            DeliveryStatus::Completed,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ],
        flag,
        "delivery_not_flaggable",
        |status| DeliveryError::NotFlaggable { status },
    );
    expect_error(
        given(vec![], flag()),
        "delivery_not_found",
        ErrorKind::NotFound,
    );
}

#[test]
fn flagging_needs_a_reason() {
    let command = FlagDelivery {
        reason: " ".into(),
        ..flag()
    };
    expect_error(
        given(history(DeliveryStatus::Requested), command),
        "reason_required",
        ErrorKind::Invalid,
    );
}
