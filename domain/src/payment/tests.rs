//! Given/when/then tests of the payment rules.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use cqrs_es::test::{AggregateResultValidator, TestFramework};
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;
use uuid::Uuid;

use super::*;
use crate::ErrorKind;
use crate::provider::{
    Authorization, PaymentProvider, ProviderError, ProviderReceipt, Refund, SimulatedProvider,
};
use crate::testing::*;

/// The payment these events fold to.
fn apply_all(events: Vec<PaymentEvent>) -> Payment {
    fold(events)
}

fn auth_reference() -> String {
    format!("sim_auth_{}", payment_id())
}

/// A provider that is down for everything.
struct DownProvider;

#[async_trait]
impl PaymentProvider for DownProvider {
    fn name(&self) -> &str {
        "down"
    }
    async fn authorize(
        &self,
        _: &str,
        _: Money,
        _: &str,
        _: &str,
    ) -> Result<Authorization, ProviderError> {
        Err(ProviderError::Unavailable {
            reason: "timeout".into(),
        })
    }
    async fn capture(&self, _: &str, _: Money, _: &str) -> Result<ProviderReceipt, ProviderError> {
        Err(ProviderError::Unavailable {
            reason: "timeout".into(),
        })
    }
    async fn void(&self, _: &str, _: Money, _: &str) -> Result<ProviderReceipt, ProviderError> {
        Err(ProviderError::Unavailable {
            reason: "timeout".into(),
        })
    }
    async fn refund(&self, _: &str, _: Money, _: &str, _: &str) -> Result<Refund, ProviderError> {
        Err(ProviderError::Unavailable {
            reason: "timeout".into(),
        })
    }
}

/// The provider down for every call.
fn provider_down() -> PaymentServices {
    PaymentServices::new(Arc::new(DownProvider))
}

/// The provider back up, for another command (so another key is offered).
fn provider_back() -> PaymentServices {
    PaymentServices::new(Arc::new(SimulatedProvider::new())).for_command(uuid::Uuid::nil())
}

/// The idempotency key of the `n`th call of `operation` (from 0).
fn call_key(operation: &str, n: u32) -> String {
    format!("{}-{operation}-{n}", payment_id())
}

/// An authorization the simulated provider did not issue: it refuses every
/// call on it.
fn foreign_authorization() -> PaymentAuthorized {
    PaymentAuthorized {
        provider_reference: "stripe_ch_1".into(),
        ..authorized()
    }
}

fn authorize(token: &str) -> AuthorizePayment {
    AuthorizePayment {
        payment_id: payment_id(),
        order_id: order_id(),
        restaurant_id: restaurant_id(),
        amount: eur(3_716),
        payment_method_ref: if token.trim().is_empty() {
            token.to_owned()
        } else {
            ordertrail_schemas::privacy::payment_method_ref(token)
        },
        now: at(1),
    }
}

fn authorized() -> PaymentAuthorized {
    PaymentAuthorized {
        payment_id: payment_id(),
        order_id: order_id(),
        restaurant_id: restaurant_id(),
        amount: eur(3_716),
        provider: "simulated".into(),
        provider_reference: auth_reference(),
        fee: eur(0),
        authorized_at: at(1),
    }
}

fn declined(code: &str) -> PaymentDeclined {
    PaymentDeclined {
        payment_id: payment_id(),
        order_id: order_id(),
        restaurant_id: restaurant_id(),
        amount: eur(3_716),
        provider: "simulated".into(),
        decline_code: code.into(),
        declined_at: at(1),
    }
}

fn captured() -> PaymentCaptured {
    // 1.4 % of 3 716 = 52.024 -> 52, + 25.
    PaymentCaptured {
        amount: eur(3_716),
        fee: eur(77),
        captured_at: at(40),
        override_reason: None,
    }
}

fn voided() -> PaymentVoided {
    PaymentVoided {
        amount: eur(3_716),
        fee: eur(0),
        voided_at: at(5),
    }
}

fn refunded(amount: i64, n: u32) -> PaymentRefunded {
    PaymentRefunded {
        amount: eur(amount),
        fee: eur(0),
        reason: "cold food".into(),
        provider_reference: format!("sim_refund_{}_refund_{n}", payment_id()),
        refunded_at: at(60),
        allocation: None,
    }
}

fn cash_collected() -> CashCollected {
    CashCollected {
        payment_id: payment_id(),
        order_id: order_id(),
        restaurant_id: restaurant_id(),
        amount: eur(3_716),
        rider_id: rider_id(),
        collected_at: at(40),
    }
}

fn record_cash() -> RecordCashCollected {
    RecordCashCollected {
        payment_id: payment_id(),
        order_id: order_id(),
        restaurant_id: restaurant_id(),
        amount: eur(3_716),
        rider_id: rider_id(),
        now: at(40),
    }
}

fn capture(amount: Option<Money>) -> CapturePayment {
    CapturePayment {
        amount,
        order_delivered: true,
        override_reason: None,
        now: at(40),
    }
}

fn refund(amount: i64) -> RefundPayment {
    RefundPayment {
        amount: eur(amount),
        reason: "cold food".into(),
        order_price: None,
        now: at(60),
    }
}

/// A canonical history that leaves a payment in `status` (a partial refund
/// of 100, a full refund of the whole 3,716).
fn history(status: PaymentStatus) -> Vec<PaymentEvent> {
    let mut events: Vec<PaymentEvent> = match status {
        PaymentStatus::Declined => return vec![declined("card_declined").into()],
        PaymentStatus::CashCollected => return vec![cash_collected().into()],
        _ => vec![authorized().into()],
    };
    match status {
        PaymentStatus::Captured => events.push(captured().into()),
        PaymentStatus::Voided => events.push(voided().into()),
        PaymentStatus::PartiallyRefunded => {
            events.extend([captured().into(), refunded(100, 1).into()]);
        }
        PaymentStatus::Refunded => {
            events.extend([captured().into(), refunded(3_716, 1).into()]);
        }
        PaymentStatus::Authorized => {}
        other => panic!("no canonical history for {other}"),
    }
    events
}

fn given(
    events: Vec<PaymentEvent>,
    command: impl Into<PaymentCommand>,
) -> AggregateResultValidator<Payment> {
    given_with(PaymentServices::simulated(), events, command)
}

fn given_with(
    services: PaymentServices,
    events: Vec<PaymentEvent>,
    command: impl Into<PaymentCommand>,
) -> AggregateResultValidator<Payment> {
    TestFramework::<Payment>::with(services)
        .given(events)
        .when(command.into())
}

#[test]
fn type_is_the_aggregate_kind() {
    assert_eq!(Payment::TYPE, AggregateKind::Payment.as_str());
}

// ---------------------------------------------------------------- AuthorizePayment

#[test]
fn authorize_with_a_good_card() {
    given(vec![], authorize("tok_visa")).then_expect_events(vec![authorized().into()]);
    given(vec![], authorize("tok_mastercard")).then_expect_events(vec![authorized().into()]);
}

#[test]
fn a_decline_is_recorded_and_the_command_succeeds() {
    given(vec![], authorize("tok_declined"))
        .then_expect_events(vec![declined("card_declined").into()]);
    given(vec![], authorize("tok_insufficient_funds"))
        .then_expect_events(vec![declined("insufficient_funds").into()]);
    given(vec![], authorize("tok_unknown"))
        .then_expect_events(vec![declined("invalid_token").into()]);
}

#[test]
fn provider_down_is_an_error_and_records_nothing() {
    let error = expect_error(
        given(vec![], authorize("tok_unavailable")),
        "payment_provider_unavailable",
        ErrorKind::Unavailable,
    );
    assert_eq!(
        error,
        PaymentError::ProviderUnavailable {
            provider: "simulated".into(),
            reason: "simulated outage".into()
        }
    );
}

#[test]
fn flaky_provider_succeeds_on_a_later_attempt() {
    let services = PaymentServices::simulated();
    expect_error(
        given_with(services.clone(), vec![], authorize("tok_flaky_2")),
        "payment_provider_unavailable",
        ErrorKind::Unavailable,
    );
    expect_error(
        given_with(services.clone(), vec![], authorize("tok_flaky_2")),
        "payment_provider_unavailable",
        ErrorKind::Unavailable,
    );
    given_with(services, vec![], authorize("tok_flaky_2"))
        .then_expect_events(vec![authorized().into()]);
}

#[test]
fn a_declined_payment_may_be_authorized_again_with_another_card() {
    given(
        vec![declined("card_declined").into()],
        AuthorizePayment {
            now: at(3),
            ..authorize("tok_visa")
        },
    )
    .then_expect_events(vec![
        PaymentAuthorized {
            authorized_at: at(3),
            ..authorized()
        }
        .into(),
    ]);
    given(
        vec![declined("card_declined").into()],
        authorize("tok_insufficient_funds"),
    )
    .then_expect_events(vec![declined("insufficient_funds").into()]);
}

#[test]
fn a_declined_payment_stays_with_its_order() {
    let other = OrderId(Uuid::from_u128(77));
    let command = AuthorizePayment {
        order_id: other,
        ..authorize("tok_visa")
    };
    let error = expect_error(
        given(vec![declined("card_declined").into()], command),
        "payment_order_mismatch",
        ErrorKind::Conflict,
    );
    assert_eq!(
        error,
        PaymentError::OrderMismatch {
            expected: order_id(),
            found: other
        }
    );
}

#[test]
fn authorizing_twice_is_a_conflict() {
    conflict_in(
        [
            PaymentStatus::Authorized,
            PaymentStatus::Captured,
            PaymentStatus::Voided,
            PaymentStatus::PartiallyRefunded,
            PaymentStatus::Refunded,
        ],
        |status| given(history(status), authorize("tok_visa")),
        "payment_already_authorized",
        |status| PaymentError::AlreadyAuthorized { status },
    );
}

#[test]
fn authorize_needs_a_positive_amount_and_a_token() {
    for amount in [0, -5] {
        let command = AuthorizePayment {
            amount: eur(amount),
            ..authorize("tok_visa")
        };
        expect_error(
            given(vec![], command),
            "invalid_payment_amount",
            ErrorKind::Invalid,
        );
    }
    expect_error(
        given(vec![], authorize("")),
        "card_token_required",
        ErrorKind::Invalid,
    );
}

#[test]
fn cash_payments_are_not_authorized() {
    let error = expect_error(
        given(vec![cash_collected().into()], authorize("tok_visa")),
        "cash_payment_operation_unsupported",
        ErrorKind::Conflict,
    );
    assert_eq!(
        error,
        PaymentError::CashOperationUnsupported {
            operation: "authorization"
        }
    );
}

// ---------------------------------------------------------------- CapturePayment

#[test]
fn capture_the_full_authorization_with_the_provider_fee() {
    given(vec![authorized().into()], capture(None)).then_expect_events(vec![captured().into()]);
    given(vec![authorized().into()], capture(Some(eur(3_716))))
        .then_expect_events(vec![captured().into()]);
}

#[test]
fn capture_less_than_authorized() {
    // 1.4 % of 2 000 = 28, + 25.
    given(vec![authorized().into()], capture(Some(eur(2_000)))).then_expect_events(vec![
        PaymentCaptured {
            amount: eur(2_000),
            fee: eur(53),
            captured_at: at(40),
            override_reason: None,
        }
        .into(),
    ]);
}

#[test]
fn capture_at_most_the_authorized_amount() {
    let error = expect_error(
        given(vec![authorized().into()], capture(Some(eur(3_717)))),
        "capture_exceeds_authorized",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        PaymentError::CaptureExceedsAuthorized {
            requested: eur(3_717),
            authorized: eur(3_716)
        }
    );
}

#[test]
fn capture_amount_must_be_positive_and_in_the_payment_currency() {
    expect_error(
        given(vec![authorized().into()], capture(Some(eur(0)))),
        "invalid_payment_amount",
        ErrorKind::Invalid,
    );
    let error = expect_error(
        given(
            vec![authorized().into()],
            capture(Some(Money::new(100, Currency::USD))),
        ),
        "currency_mismatch",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        PaymentError::CurrencyMismatch {
            field: "amount",
            expected: Currency::EUR,
            found: Currency::USD
        }
    );
}

#[test]
fn capture_only_once_and_only_authorized_payments() {
    conflict_in(
        [
            PaymentStatus::Declined,
            PaymentStatus::Captured,
            PaymentStatus::Voided,
            PaymentStatus::PartiallyRefunded,
        ],
        |status| given(history(status), capture(None)),
        "payment_not_capturable",
        |status| PaymentError::NotCapturable { status },
    );
}

#[test]
fn cash_is_never_captured_voided_or_refunded() {
    for (command, operation) in [
        (PaymentCommand::from(capture(None)), "capture"),
        (VoidPayment { now: at(41) }.into(), "void"),
        (refund(100).into(), "refund"),
    ] {
        let error = expect_error(
            given(vec![cash_collected().into()], command),
            "cash_payment_operation_unsupported",
            ErrorKind::Conflict,
        );
        assert_eq!(error, PaymentError::CashOperationUnsupported { operation });
    }
}

fn capture_failed(
    code: &str,
    answered: bool,
    key: &str,
    attempt: u32,
    final_attempt: bool,
) -> PaymentCaptureFailed {
    PaymentCaptureFailed {
        amount: captured().amount,
        provider: "simulated".into(),
        decline_code: code.into(),
        answered,
        idempotency_key: key.into(),
        attempt,
        final_attempt,
        failed_at: at(40),
    }
}

#[test]
fn capture_when_the_provider_is_down_is_recorded_and_the_next_attempt_repeats_its_key() {
    let services = provider_down();
    let key = call_key("capture", 0);
    given_with(services, vec![authorized().into()], capture(None)).then_expect_events(vec![
        PaymentCaptureFailed {
            provider: "down".into(),
            ..capture_failed("provider_unavailable", false, &key, 1, false)
        }
        .into(),
    ]);
    // The provider recovers: the next attempt carries the unanswered key
    // (with a new command's key offered), so a capture that did happen is
    // answered again instead of charged twice.
    let services = provider_back();
    let failed = capture_failed("provider_unavailable", false, &key, 1, false);
    given_with(
        services,
        vec![authorized().into(), failed.into()],
        capture(None),
    )
    .then_expect_events(vec![captured().into()]);
}

#[test]
fn refused_captures_are_recorded_and_the_third_gives_up_to_ops() {
    let foreign = foreign_authorization();
    let key = |n| call_key("capture", n);
    given(vec![foreign.clone().into()], capture(None)).then_expect_events(vec![
        capture_failed("unknown_reference", true, &key(0), 1, false).into(),
    ]);
    let history = vec![
        foreign.clone().into(),
        capture_failed("unknown_reference", true, &key(0), 1, false).into(),
        capture_failed("unknown_reference", true, &key(1), 2, false).into(),
    ];
    given(history.clone(), capture(None)).then_expect_events(vec![
        capture_failed("unknown_reference", true, &key(2), 3, true).into(),
    ]);
    let mut payment = Payment::default();
    for e in history {
        payment.apply(e);
    }
    payment.apply(capture_failed("unknown_reference", true, &key(2), 3, true).into());
    assert_eq!(payment.status(), Some(PaymentStatus::CaptureFailed));
    assert_eq!(payment.capture_attempts(), 3);
    assert_eq!(payment.capture_failure(), Some("unknown_reference"));
    // Then only ops act: a capture without a reason is refused; a void is allowed.
    let mut final_history: Vec<PaymentEvent> = vec![authorized().into()];
    for n in 0..3 {
        final_history
            .push(capture_failed("unknown_reference", true, &key(n), n + 1, n == 2).into());
    }
    expect_error(
        given(final_history.clone(), capture(None)),
        "payment_not_capturable",
        ErrorKind::Conflict,
    );
    given(final_history, VoidPayment { now: at(50) }).then_expect_events(vec![
        PaymentVoided {
            amount: captured().amount,
            fee: Money::zero(captured().amount.currency),
            voided_at: at(50),
        }
        .into(),
    ]);
}

#[test]
fn every_command_but_authorize_and_cash_needs_a_payment() {
    let commands: Vec<PaymentCommand> = vec![
        capture(None).into(),
        VoidPayment { now: at(1) }.into(),
        refund(100).into(),
    ];
    not_found_for_each(
        commands,
        |command| given(vec![], command),
        PaymentCommand::name,
        "payment_not_found",
        |command| PaymentError::NotFound { command },
    );
}

// ---------------------------------------------------------------- VoidPayment

#[test]
fn void_an_uncaptured_authorization() {
    given(vec![authorized().into()], VoidPayment { now: at(5) })
        .then_expect_events(vec![voided().into()]);
}

#[test]
fn void_only_authorized_payments() {
    conflict_in(
        [
            PaymentStatus::Declined,
            PaymentStatus::Captured,
            PaymentStatus::Voided,
        ],
        |status| given(history(status), VoidPayment { now: at(5) }),
        "payment_not_voidable",
        |status| PaymentError::NotVoidable { status },
    );
}

fn void_failed(
    code: &str,
    answered: bool,
    key: &str,
    attempt: u32,
    final_attempt: bool,
) -> PaymentVoidFailed {
    PaymentVoidFailed {
        amount: eur(3_716),
        provider: "simulated".into(),
        decline_code: code.into(),
        answered,
        idempotency_key: key.into(),
        attempt,
        final_attempt,
        failed_at: at(5),
    }
}

#[test]
fn void_when_the_provider_is_down_is_recorded_and_the_next_attempt_repeats_its_key() {
    let services = provider_down();
    let key = call_key("void", 0);
    given_with(
        services,
        vec![authorized().into()],
        VoidPayment { now: at(5) },
    )
    .then_expect_events(vec![
        PaymentVoidFailed {
            provider: "down".into(),
            ..void_failed("provider_unavailable", false, &key, 1, false)
        }
        .into(),
    ]);
    // The provider is back: the retry (another command, another key
    // offered) repeats the unanswered key, so a void that did happen is
    // answered again, not done twice.
    let services = provider_back();
    let failed = void_failed("provider_unavailable", false, &key, 1, false);
    let payment = apply_all(vec![authorized().into(), failed.clone().into()]);
    assert_eq!(payment.status(), Some(PaymentStatus::Authorized));
    assert_eq!(payment.void_attempts(), 1);
    assert_eq!(payment.release_failure(), Some("provider_unavailable"));
    given_with(
        services,
        vec![authorized().into(), failed.into()],
        VoidPayment { now: at(5) },
    )
    .then_expect_events(vec![voided().into()]);
}

#[test]
fn refused_voids_are_recorded_and_the_third_gives_up_to_ops() {
    // The simulated provider refuses references it did not issue.
    let foreign = foreign_authorization();
    let key = |n| call_key("void", n);
    given(vec![foreign.clone().into()], VoidPayment { now: at(5) }).then_expect_events(vec![
        void_failed("unknown_reference", true, &key(0), 1, false).into(),
    ]);
    let history: Vec<PaymentEvent> = vec![
        foreign.clone().into(),
        void_failed("unknown_reference", true, &key(0), 1, false).into(),
        void_failed("unknown_reference", true, &key(1), 2, false).into(),
    ];
    given(history.clone(), VoidPayment { now: at(5) }).then_expect_events(vec![
        void_failed("unknown_reference", true, &key(2), 3, true).into(),
    ]);
    // An outage in between does not count against the budget.
    let mut with_outage = history.clone();
    with_outage.insert(
        2,
        void_failed("provider_unavailable", false, &key(1), 2, false).into(),
    );
    let payment = apply_all(with_outage);
    assert_eq!(payment.status(), Some(PaymentStatus::Authorized));
    let mut final_history = history;
    final_history.push(void_failed("unknown_reference", true, &key(2), 3, true).into());
    let payment = apply_all(final_history.clone());
    assert_eq!(payment.status(), Some(PaymentStatus::VoidFailed));
    assert_eq!(payment.status().map(|s| s.as_str()), Some("void_failed"));
    assert_eq!(payment.void_attempts(), 3);
    assert_eq!(payment.release_failure(), Some("unknown_reference"));
    // Given up: no capture; ops may void again.
    expect_error(
        given(final_history.clone(), capture(None)),
        "payment_not_capturable",
        ErrorKind::Conflict,
    );
    let mut real = final_history;
    real[0] = authorized().into();
    given(real, VoidPayment { now: at(5) }).then_expect_events(vec![voided().into()]);
}

// ---------------------------------------------------------------- RefundPayment

#[test]
fn refund_part_then_the_rest() {
    given(vec![authorized().into(), captured().into()], refund(1_000))
        .then_expect_events(vec![refunded(1_000, 1).into()]);
    given(
        vec![
            authorized().into(),
            captured().into(),
            refunded(1_000, 1).into(),
        ],
        refund(2_716),
    )
    .then_expect_events(vec![refunded(2_716, 2).into()]);
}

#[test]
fn refunds_never_exceed_the_captured_amount() {
    let error = expect_error(
        given(vec![authorized().into(), captured().into()], refund(3_717)),
        "refund_exceeds_captured",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        PaymentError::RefundExceedsCaptured {
            requested: eur(3_717),
            refundable: eur(3_716)
        }
    );
    let error = expect_error(
        given(
            vec![
                authorized().into(),
                captured().into(),
                refunded(3_000, 1).into(),
            ],
            refund(717),
        ),
        "refund_exceeds_captured",
        ErrorKind::Invalid,
    );
    assert_eq!(
        error,
        PaymentError::RefundExceedsCaptured {
            requested: eur(717),
            refundable: eur(716)
        }
    );
}

#[test]
fn refund_of_a_partial_capture_is_bounded_by_the_capture() {
    let partial = PaymentCaptured {
        amount: eur(2_000),
        fee: eur(53),
        captured_at: at(40),
        override_reason: None,
    };
    expect_error(
        given(vec![authorized().into(), partial.into()], refund(2_001)),
        "refund_exceeds_captured",
        ErrorKind::Invalid,
    );
}

#[test]
fn refund_only_after_capture_and_while_something_is_left() {
    conflict_in(
        [
            PaymentStatus::Declined,
            PaymentStatus::Authorized,
            PaymentStatus::Voided,
            PaymentStatus::Refunded,
        ],
        |status| given(history(status), refund(100)),
        "payment_not_refundable",
        |status| PaymentError::NotRefundable { status },
    );
}

#[test]
fn refund_needs_a_reason_a_positive_amount_and_the_currency() {
    let history = || -> Vec<PaymentEvent> { vec![authorized().into(), captured().into()] };
    let no_reason = RefundPayment {
        reason: " ".into(),
        ..refund(100)
    };
    expect_error(
        given(history(), no_reason),
        "reason_required",
        ErrorKind::Invalid,
    );
    expect_error(
        given(history(), refund(0)),
        "invalid_payment_amount",
        ErrorKind::Invalid,
    );
    let dollars = RefundPayment {
        amount: Money::new(100, Currency::USD),
        ..refund(100)
    };
    expect_error(
        given(history(), dollars),
        "currency_mismatch",
        ErrorKind::Invalid,
    );
}

fn refund_failed(
    code: &str,
    answered: bool,
    key: &str,
    attempt: u32,
    final_attempt: bool,
) -> PaymentRefundFailed {
    PaymentRefundFailed {
        amount: eur(100),
        reason: "cold food".into(),
        provider: "simulated".into(),
        decline_code: code.into(),
        answered,
        idempotency_key: key.into(),
        attempt,
        final_attempt,
        failed_at: at(60),
    }
}

#[test]
fn refund_when_the_provider_is_down_is_recorded_and_the_next_attempt_repeats_its_key() {
    let services = provider_down();
    let key = call_key("refund", 0);
    given_with(
        services,
        vec![authorized().into(), captured().into()],
        refund(100),
    )
    .then_expect_events(vec![
        PaymentRefundFailed {
            provider: "down".into(),
            ..refund_failed("provider_unavailable", false, &key, 1, false)
        }
        .into(),
    ]);
    let services = provider_back();
    let failed = refund_failed("provider_unavailable", false, &key, 1, false);
    let history: Vec<PaymentEvent> = vec![authorized().into(), captured().into(), failed.into()];
    let payment = apply_all(history.clone());
    assert_eq!(payment.status(), Some(PaymentStatus::Captured));
    assert_eq!(payment.refund_attempts(), 1);
    assert_eq!(payment.refunded_amount(), Some(eur(0)));
    // The retry is the same refund (reference number 1), under the same key.
    given_with(services, history, refund(100)).then_expect_events(vec![refunded(100, 1).into()]);
}

#[test]
fn refused_refunds_are_recorded_the_third_gives_up_and_ops_may_refund_again() {
    let foreign = foreign_authorization();
    let key = |n| call_key("refund", n);
    let start: Vec<PaymentEvent> = vec![foreign.clone().into(), captured().into()];
    given(start.clone(), refund(100)).then_expect_events(vec![
        refund_failed("unknown_reference", true, &key(0), 1, false).into(),
    ]);
    let mut history = start;
    history.push(refund_failed("unknown_reference", true, &key(0), 1, false).into());
    history.push(refund_failed("unknown_reference", true, &key(1), 2, false).into());
    given(history.clone(), refund(100)).then_expect_events(vec![
        refund_failed("unknown_reference", true, &key(2), 3, true).into(),
    ]);
    history.push(refund_failed("unknown_reference", true, &key(2), 3, true).into());
    let payment = apply_all(history.clone());
    assert_eq!(payment.status(), Some(PaymentStatus::RefundFailed));
    assert_eq!(payment.status().map(|s| s.as_str()), Some("refund_failed"));
    assert_eq!(payment.refundable_amount(), Some(eur(3_716)));
    assert_eq!(payment.release_failure(), Some("unknown_reference"));
    // Ops refund again (the provider accepts this time): the refund is
    // recorded, the status follows the amounts and the failures are cleared.
    history[0] = authorized().into();
    given(history.clone(), refund(100)).then_expect_events(vec![refunded(100, 1).into()]);
    history.push(refunded(100, 1).into());
    let payment = apply_all(history);
    assert_eq!(payment.status(), Some(PaymentStatus::PartiallyRefunded));
    assert_eq!(payment.refund_attempts(), 0);
}

// ---------------------------------------------------------------- RecordCashCollected

#[test]
fn record_cash_creates_a_cash_payment() {
    given(vec![], record_cash()).then_expect_events(vec![cash_collected().into()]);
}

#[test]
fn record_cash_only_once_and_never_on_a_card_payment() {
    conflict_in(
        [
            PaymentStatus::CashCollected,
            PaymentStatus::Authorized,
            PaymentStatus::Declined,
        ],
        |status| given(history(status), record_cash()),
        "payment_already_exists",
        |status| PaymentError::AlreadyExists { status },
    );
}

#[test]
fn record_cash_needs_a_positive_amount() {
    let command = RecordCashCollected {
        amount: eur(0),
        ..record_cash()
    };
    expect_error(
        given(vec![], command),
        "invalid_payment_amount",
        ErrorKind::Invalid,
    );
}

// ---------------------------------------------------------------- state

#[test]
fn card_state_tracks_amounts_and_fees() {
    assert_eq!(Payment::default().status(), None);
    let refused = apply_all(vec![declined("card_declined").into()]);
    assert_eq!(refused.status(), Some(PaymentStatus::Declined));
    assert_eq!(refused.decline_code(), Some("card_declined"));
    assert_eq!(refused.authorized_amount(), None);

    let payment = apply_all(vec![
        declined("card_declined").into(),
        authorized().into(),
        captured().into(),
        refunded(1_000, 1).into(),
    ]);
    assert_eq!(payment.status(), Some(PaymentStatus::PartiallyRefunded));
    assert_eq!(payment.kind(), Some(PaymentKind::Card));
    assert_eq!(payment.payment_id(), Some(payment_id()));
    assert_eq!(payment.order_id(), Some(order_id()));
    assert_eq!(payment.restaurant_id(), Some(restaurant_id()));
    assert_eq!(payment.authorization_attempts(), 2);
    assert_eq!(payment.decline_code(), None);
    assert_eq!(payment.provider(), Some("simulated"));
    assert_eq!(
        payment.provider_reference(),
        Some(auth_reference().as_str())
    );
    assert_eq!(payment.authorized_amount(), Some(eur(3_716)));
    assert_eq!(payment.captured_amount(), Some(eur(3_716)));
    assert_eq!(payment.refunded_amount(), Some(eur(1_000)));
    assert_eq!(payment.refundable_amount(), Some(eur(2_716)));
    assert_eq!(payment.fees_total(), Some(eur(77)));
    assert_eq!(payment.collected_amount(), None);

    let json = serde_json::to_string(&payment).unwrap();
    assert_eq!(serde_json::from_str::<Payment>(&json).unwrap(), payment);
}

#[test]
fn cash_state() {
    let payment = apply_all(vec![cash_collected().into()]);
    assert_eq!(payment.status(), Some(PaymentStatus::CashCollected));
    assert_eq!(payment.kind(), Some(PaymentKind::Cash));
    assert_eq!(payment.collected_amount(), Some(eur(3_716)));
    assert_eq!(payment.collected_by(), Some(rider_id()));
    assert_eq!(payment.authorized_amount(), None);
    assert_eq!(payment.captured_amount(), None);
}

// ---------------------------------------------------------------- capture after delivery (issue 13)

#[test]
fn no_capture_before_delivery_without_an_override_reason() {
    let early = CapturePayment {
        order_delivered: false,
        ..capture(None)
    };
    let error = expect_error(
        given(vec![authorized().into()], early),
        "capture_before_delivery",
        ErrorKind::Conflict,
    );
    assert_eq!(error, PaymentError::CaptureBeforeDelivery);
}

#[test]
fn ops_override_a_capture_before_delivery_with_a_recorded_reason() {
    let early = CapturePayment {
        order_delivered: false,
        override_reason: Some("customer asked to be charged now".into()),
        ..capture(None)
    };
    given(vec![authorized().into()], early).then_expect_events(vec![
        PaymentCaptured {
            override_reason: Some("customer asked to be charged now".into()),
            ..captured()
        }
        .into(),
    ]);
    let bad = CapturePayment {
        order_delivered: false,
        override_reason: Some("x".repeat(501)),
        ..capture(None)
    };
    expect_error(
        given(vec![authorized().into()], bad),
        "text_too_long",
        ErrorKind::Invalid,
    );
}

/// The simulated provider, except that it reports when a capture happened.
struct ClockedProvider(SimulatedProvider);

#[async_trait]
impl PaymentProvider for ClockedProvider {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn authorize(
        &self,
        r: &str,
        m: Money,
        id: &str,
        k: &str,
    ) -> Result<Authorization, ProviderError> {
        self.0.authorize(r, m, id, k).await
    }
    async fn capture(&self, r: &str, m: Money, k: &str) -> Result<ProviderReceipt, ProviderError> {
        let receipt = self.0.capture(r, m, k).await?;
        Ok(ProviderReceipt {
            processed_at: Some(at(35)),
            ..receipt
        })
    }
    async fn void(&self, r: &str, m: Money, k: &str) -> Result<ProviderReceipt, ProviderError> {
        self.0.void(r, m, k).await
    }
    async fn refund(&self, r: &str, m: Money, id: &str, k: &str) -> Result<Refund, ProviderError> {
        self.0.refund(r, m, id, k).await
    }
}

#[test]
fn a_capture_is_dated_by_the_provider_when_it_says_when() {
    let services = PaymentServices::new(Arc::new(ClockedProvider(SimulatedProvider::new())));
    // Sent at minute 40, captured by the provider at minute 35.
    given_with(services, vec![authorized().into()], capture(None)).then_expect_events(vec![
        PaymentCaptured {
            captured_at: at(35),
            ..captured()
        }
        .into(),
    ]);
}
