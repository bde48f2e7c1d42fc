//! State and rules of the `Payment` aggregate.

use std::sync::Arc;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use ordertrail_schemas::events::payment::{
    CAPTURE_ATTEMPTS_MAX, PROVIDER_UNAVAILABLE, REFUND_ATTEMPTS_MAX, VOID_ATTEMPTS_MAX,
};
use ordertrail_schemas::events::{
    CashCollected, PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured, PaymentDeclined,
    PaymentEvent, PaymentRefundFailed, PaymentRefunded, PaymentVoidFailed, PaymentVoided,
    RefundAllocation,
};
use ordertrail_schemas::{Money, OrderId, PaymentId, RestaurantId, RiderId};
use serde::{Deserialize, Serialize};

use super::commands::{
    AuthorizePayment, CapturePayment, PaymentCommand, RecordCashCollected, RefundPayment,
    VoidPayment,
};
use super::errors::PaymentError;
use crate::provider::{PaymentProvider, ProviderError, SimulatedProvider};

/// What the payment aggregate needs from the outside world.
#[derive(Clone)]
pub struct PaymentServices {
    /// The card payment provider the aggregate calls.
    pub provider: Arc<dyn PaymentProvider>,
    /// The idempotency key of this command's provider call: derived from the
    /// command id by the command service ([`Self::for_command`]). Without one
    /// (given/when/then tests) a key is derived from the payment and the
    /// operation.
    pub idempotency_key: Option<String>,
}

impl PaymentServices {
    /// Services calling `provider`, with no idempotency key of a command.
    pub fn new(provider: Arc<dyn PaymentProvider>) -> Self {
        Self {
            provider,
            idempotency_key: None,
        }
    }

    /// These services for one command: its provider calls carry a key
    /// derived from `command_id`, so a repeated command (a crash between the
    /// provider's answer and the append) is answered by the provider without
    /// acting twice.
    pub fn for_command(&self, command_id: impl std::fmt::Display) -> Self {
        Self {
            provider: self.provider.clone(),
            idempotency_key: Some(format!("ot-{command_id}")),
        }
    }

    /// Services backed by a fresh [`SimulatedProvider`].
    pub fn simulated() -> Self {
        Self::new(Arc::new(SimulatedProvider::new()))
    }
}

impl std::fmt::Debug for PaymentServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentServices")
            .field("provider", &self.provider.name())
            .finish()
    }
}

/// Card or cash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    /// Paid by card through the provider.
    Card,
    /// Paid in cash to the rider at the door.
    Cash,
}

pub use ordertrail_schemas::PaymentStatus;

/// A payment. `Default` is the payment before its first event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    state: Option<PaymentState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentState {
    payment_id: PaymentId,
    order_id: OrderId,
    restaurant_id: RestaurantId,
    kind: PaymentKind,
    status: PaymentStatus,
    /// Authorized (or last attempted) amount for cards; collected amount for cash.
    amount: Money,
    provider: Option<String>,
    provider_reference: Option<String>,
    decline_code: Option<String>,
    authorization_attempts: u32,
    captured: Option<Money>,
    refunded: Money,
    /// Number of refunds recorded (numbers the next refund's reference).
    refunds: u32,
    /// Running total of the refunds' allocations by component.
    #[serde(default)]
    refunded_allocation: Option<RefundAllocation>,
    fees: Money,
    collected_by: Option<RiderId>,
    /// Failed capture attempts so far (refused or unanswered).
    #[serde(default)]
    capture_attempts: u32,
    /// Refused captures so far (counted against [`CAPTURE_ATTEMPTS_MAX`]).
    #[serde(default)]
    capture_refusals: u32,
    /// The key of the last capture attempt the provider did not answer:
    /// the next attempt repeats it.
    #[serde(default)]
    unanswered_capture_key: Option<String>,
    /// The last failed capture's decline code.
    #[serde(default)]
    capture_failure: Option<String>,
    /// Failed attempts of the void.
    #[serde(default)]
    void_failures: FailedCalls,
    /// Failed attempts of the refund being asked for (cleared when a
    /// refund succeeds).
    #[serde(default)]
    refund_failures: FailedCalls,
}

impl PaymentState {
    /// The state a payment's first event (an authorization, a decline, cash)
    /// starts: nothing captured, refunded or failed yet, no fees.
    fn first(
        (payment_id, order_id, restaurant_id): (PaymentId, OrderId, RestaurantId),
        kind: PaymentKind,
        status: PaymentStatus,
        amount: Money,
    ) -> Self {
        let zero = Money::zero(amount.currency);
        PaymentState {
            payment_id,
            order_id,
            restaurant_id,
            kind,
            status,
            amount,
            provider: None,
            provider_reference: None,
            decline_code: None,
            authorization_attempts: 0,
            captured: None,
            refunded: zero,
            refunds: 0,
            refunded_allocation: None,
            fees: zero,
            collected_by: None,
            capture_attempts: 0,
            capture_refusals: 0,
            unanswered_capture_key: None,
            capture_failure: None,
            void_failures: FailedCalls::default(),
            refund_failures: FailedCalls::default(),
        }
    }
}

/// Failed provider calls of one operation (void, refund): counted against
/// its refusal budget, with the key an unanswered call must be repeated with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FailedCalls {
    /// Failed attempts (refused or unanswered).
    attempts: u32,
    /// Refused attempts.
    refusals: u32,
    /// The key of the last attempt the provider did not answer: the next
    /// attempt repeats it (the operation may have happened).
    unanswered_key: Option<String>,
    /// The last failure's decline code.
    last_code: Option<String>,
}

impl FailedCalls {
    /// The key of the next attempt: the unanswered one's, else `key`.
    fn next_key(&self, key: String) -> String {
        self.unanswered_key.clone().unwrap_or(key)
    }

    /// Records one failed attempt.
    fn record(&mut self, attempt: u32, answered: bool, key: String, code: String) {
        self.attempts = attempt.max(self.attempts);
        if answered {
            self.refusals = self.refusals.saturating_add(1);
            self.unanswered_key = None;
        } else {
            self.unanswered_key = Some(key);
        }
        self.last_code = Some(code);
    }
}

/// A provider error of a follow-up call as recorded on its failure event:
/// decline code and whether the provider answered.
fn failure(error: ProviderError) -> (String, bool) {
    match error {
        ProviderError::Declined { code } => (code, true),
        ProviderError::Unavailable { .. } => (PROVIDER_UNAVAILABLE.to_owned(), false),
    }
}

impl Payment {
    /// `None` until the first authorization attempt or cash collection.
    pub fn status(&self) -> Option<PaymentStatus> {
        self.state.as_ref().map(|s| s.status)
    }

    /// Card or cash; `None` until the payment exists.
    pub fn kind(&self) -> Option<PaymentKind> {
        self.state.as_ref().map(|s| s.kind)
    }

    /// The payment's id; `None` until it exists.
    pub fn payment_id(&self) -> Option<PaymentId> {
        self.state.as_ref().map(|s| s.payment_id)
    }

    /// The order it pays for; `None` until it exists.
    pub fn order_id(&self) -> Option<OrderId> {
        self.state.as_ref().map(|s| s.order_id)
    }

    /// The restaurant the order is from; `None` until it exists.
    pub fn restaurant_id(&self) -> Option<RestaurantId> {
        self.state.as_ref().map(|s| s.restaurant_id)
    }

    /// The amount authorized on the card (kept after capture, refund or void).
    pub fn authorized_amount(&self) -> Option<Money> {
        self.state
            .as_ref()
            .filter(|s| s.kind == PaymentKind::Card && s.status != PaymentStatus::Declined)
            .map(|s| s.amount)
    }

    /// The amount captured; `None` before capture.
    pub fn captured_amount(&self) -> Option<Money> {
        self.state.as_ref().and_then(|s| s.captured)
    }

    /// Sum of all refunds (zero before any).
    pub fn refunded_amount(&self) -> Option<Money> {
        self.state.as_ref().map(|s| s.refunded)
    }

    /// What may still be refunded: captured minus refunded.
    pub fn refundable_amount(&self) -> Option<Money> {
        let state = self.state.as_ref()?;
        state
            .captured
            .map(|c| Money::new(c.amount.saturating_sub(state.refunded.amount), c.currency))
    }

    /// Cash collected by the rider (cash payments).
    pub fn collected_amount(&self) -> Option<Money> {
        self.state
            .as_ref()
            .filter(|s| s.kind == PaymentKind::Cash)
            .map(|s| s.amount)
    }

    /// The rider who collected cash (cash payments).
    pub fn collected_by(&self) -> Option<RiderId> {
        self.state.as_ref().and_then(|s| s.collected_by)
    }

    /// Sum of the provider fees recorded so far.
    pub fn fees_total(&self) -> Option<Money> {
        self.state.as_ref().map(|s| s.fees)
    }

    /// The provider that handled the card, e.g. `simulated`.
    pub fn provider(&self) -> Option<&str> {
        self.state.as_ref().and_then(|s| s.provider.as_deref())
    }

    /// The provider's reference of the authorization.
    pub fn provider_reference(&self) -> Option<&str> {
        self.state
            .as_ref()
            .and_then(|s| s.provider_reference.as_deref())
    }

    /// The decline code of the last attempt, while the payment is declined.
    pub fn decline_code(&self) -> Option<&str> {
        self.state.as_ref().and_then(|s| s.decline_code.as_deref())
    }

    /// How many authorization attempts reached a final answer (authorized or declined).
    pub fn authorization_attempts(&self) -> u32 {
        self.state.as_ref().map_or(0, |s| s.authorization_attempts)
    }

    /// Failed capture attempts so far (refused or unanswered).
    pub fn capture_attempts(&self) -> u32 {
        self.state.as_ref().map_or(0, |s| s.capture_attempts)
    }

    /// The decline code of the last failed capture, if any.
    pub fn capture_failure(&self) -> Option<&str> {
        self.state
            .as_ref()
            .and_then(|s| s.capture_failure.as_deref())
    }

    /// The decline code of the last failed void or refund, if any.
    pub fn release_failure(&self) -> Option<&str> {
        let state = self.state.as_ref()?;
        state
            .refund_failures
            .last_code
            .as_deref()
            .or(state.void_failures.last_code.as_deref())
    }

    /// Failed attempts of the void so far.
    pub fn void_attempts(&self) -> u32 {
        self.state.as_ref().map_or(0, |s| s.void_failures.attempts)
    }

    /// Failed attempts of the current refund so far.
    pub fn refund_attempts(&self) -> u32 {
        self.state
            .as_ref()
            .map_or(0, |s| s.refund_failures.attempts)
    }

    /// The decision: validates the command on this state, calls the provider
    /// where needed and returns the one event to record, or why not.
    pub async fn decide(
        &self,
        command: PaymentCommand,
        provider: &dyn PaymentProvider,
    ) -> Result<PaymentEvent, PaymentError> {
        self.decide_with_key(command, provider, None).await
    }

    /// [`Self::decide`] with the idempotency key of the command's provider
    /// call (see [`PaymentServices::for_command`]).
    pub async fn decide_with_key(
        &self,
        command: PaymentCommand,
        provider: &dyn PaymentProvider,
        key: Option<&str>,
    ) -> Result<PaymentEvent, PaymentError> {
        let name = command.name();
        // Without a command's key: one derived from the payment's state, the
        // same for the same decision.
        let fallback = |op: &str, payment_id: &str, n: u32| format!("{payment_id}-{op}-{n}");
        match command {
            PaymentCommand::AuthorizePayment(cmd) => {
                let key = key.map_or_else(
                    || {
                        fallback(
                            "authorize",
                            &cmd.payment_id.to_string(),
                            self.authorization_attempts(),
                        )
                    },
                    str::to_owned,
                );
                self.authorize(cmd, provider, &key).await
            }
            PaymentCommand::RecordCashCollected(cmd) => self.record_cash(cmd),
            other => {
                let state = self
                    .state
                    .as_ref()
                    .ok_or(PaymentError::NotFound { command: name })?;
                let id = state.payment_id.to_string();
                let key =
                    |op: &str, n: u32| key.map_or_else(|| fallback(op, &id, n), str::to_owned);
                match other {
                    PaymentCommand::CapturePayment(cmd) => {
                        let key = key("capture", state.capture_attempts);
                        state.capture(cmd, provider, key).await
                    }
                    PaymentCommand::VoidPayment(cmd) => {
                        let key = key("void", state.void_failures.attempts);
                        state.void(cmd, provider, key).await
                    }
                    PaymentCommand::RefundPayment(cmd) => {
                        // The n-th refund's m-th attempt.
                        let n = state
                            .refunds
                            .saturating_mul(1_000)
                            .saturating_add(state.refund_failures.attempts);
                        state.refund(cmd, provider, key("refund", n)).await
                    }
                    PaymentCommand::AuthorizePayment(_)
                    | PaymentCommand::RecordCashCollected(_) => {
                        Err(PaymentError::NotFound { command: name })
                    }
                }
            }
        }
    }

    async fn authorize(
        &self,
        cmd: AuthorizePayment,
        provider: &dyn PaymentProvider,
        key: &str,
    ) -> Result<PaymentEvent, PaymentError> {
        if let Some(state) = &self.state {
            if state.kind == PaymentKind::Cash {
                return Err(PaymentError::CashOperationUnsupported {
                    operation: "authorization",
                });
            }
            if state.status != PaymentStatus::Declined {
                return Err(PaymentError::AlreadyAuthorized {
                    status: state.status,
                });
            }
            if state.order_id != cmd.order_id {
                return Err(PaymentError::OrderMismatch {
                    expected: state.order_id,
                    found: cmd.order_id,
                });
            }
        }
        if cmd.amount.amount <= 0 {
            return Err(PaymentError::InvalidAmount { amount: cmd.amount });
        }
        if cmd.payment_method_ref.trim().is_empty() {
            return Err(PaymentError::CardTokenRequired {
                order_id: cmd.order_id,
            });
        }
        let reference = cmd.payment_id.to_string();
        match provider
            .authorize(&cmd.payment_method_ref, cmd.amount, &reference, key)
            .await
        {
            Ok(authorization) => Ok(PaymentAuthorized {
                payment_id: cmd.payment_id,
                order_id: cmd.order_id,
                restaurant_id: cmd.restaurant_id,
                amount: cmd.amount,
                provider: provider.name().to_owned(),
                provider_reference: authorization.provider_reference,
                fee: authorization.fee,
                authorized_at: cmd.now,
            }
            .into()),
            Err(ProviderError::Declined { code }) => Ok(PaymentDeclined {
                payment_id: cmd.payment_id,
                order_id: cmd.order_id,
                restaurant_id: cmd.restaurant_id,
                amount: cmd.amount,
                provider: provider.name().to_owned(),
                decline_code: code,
                declined_at: cmd.now,
            }
            .into()),
            Err(ProviderError::Unavailable { reason }) => Err(PaymentError::ProviderUnavailable {
                provider: provider.name().to_owned(),
                reason,
            }),
        }
    }

    fn record_cash(&self, cmd: RecordCashCollected) -> Result<PaymentEvent, PaymentError> {
        if let Some(state) = &self.state {
            return Err(PaymentError::AlreadyExists {
                status: state.status,
            });
        }
        if cmd.amount.amount <= 0 {
            return Err(PaymentError::InvalidAmount { amount: cmd.amount });
        }
        Ok(CashCollected {
            payment_id: cmd.payment_id,
            order_id: cmd.order_id,
            restaurant_id: cmd.restaurant_id,
            amount: cmd.amount,
            rider_id: cmd.rider_id,
            collected_at: cmd.now,
        }
        .into())
    }
}

impl PaymentState {
    fn reference(&self) -> &str {
        // Set whenever the status is Authorized or later.
        self.provider_reference.as_deref().unwrap_or_default()
    }

    /// Checks `amount` is positive and in the payment's currency.
    fn check_amount(&self, amount: Money) -> Result<(), PaymentError> {
        if amount.currency != self.amount.currency {
            return Err(PaymentError::CurrencyMismatch {
                field: "amount",
                expected: self.amount.currency,
                found: amount.currency,
            });
        }
        if amount.amount <= 0 {
            return Err(PaymentError::InvalidAmount { amount });
        }
        Ok(())
    }

    /// Capture; a refusal or an outage is recorded as `PaymentCaptureFailed`
    /// (the payment stays authorized). An attempt after an unanswered one
    /// repeats its idempotency key (`key` is this command's otherwise).
    async fn capture(
        &self,
        cmd: CapturePayment,
        provider: &dyn PaymentProvider,
        key: String,
    ) -> Result<PaymentEvent, PaymentError> {
        if self.kind == PaymentKind::Cash {
            return Err(PaymentError::CashOperationUnsupported {
                operation: "capture",
            });
        }
        let after_refusals = self.status == PaymentStatus::CaptureFailed;
        if self.status != PaymentStatus::Authorized
            && !(after_refusals && cmd.override_reason.is_some())
        {
            return Err(PaymentError::NotCapturable {
                status: self.status,
            });
        }
        let override_reason = match (cmd.order_delivered, cmd.override_reason) {
            (true, _) => None,
            (false, None) => return Err(PaymentError::CaptureBeforeDelivery),
            (false, Some(reason)) => {
                crate::text::REASON.check(&reason)?;
                Some(reason)
            }
        };
        let amount = cmd.amount.unwrap_or(self.amount);
        self.check_amount(amount)?;
        if amount.amount > self.amount.amount {
            return Err(PaymentError::CaptureExceedsAuthorized {
                requested: amount,
                authorized: self.amount,
            });
        }
        let key = self.unanswered_capture_key.clone().unwrap_or(key);
        let receipt = match provider.capture(self.reference(), amount, &key).await {
            Ok(receipt) => receipt,
            Err(error) => {
                let (decline_code, answered) = failure(error);
                let refusals = self.capture_refusals.saturating_add(u32::from(answered));
                return Ok(PaymentCaptureFailed {
                    amount,
                    provider: provider.name().to_owned(),
                    decline_code,
                    answered,
                    idempotency_key: key,
                    attempt: self.capture_attempts.saturating_add(1),
                    final_attempt: answered && refusals >= CAPTURE_ATTEMPTS_MAX,
                    failed_at: cmd.now,
                }
                .into());
            }
        };
        Ok(PaymentCaptured {
            amount,
            fee: receipt.fee,
            // Business time: the provider's capture time when it reports one.
            captured_at: receipt.processed_at.unwrap_or(cmd.now),
            override_reason,
        }
        .into())
    }

    /// Void; a refusal or an outage is recorded as `PaymentVoidFailed` (the
    /// authorization stays held). An attempt after an unanswered one repeats
    /// its idempotency key.
    async fn void(
        &self,
        cmd: VoidPayment,
        provider: &dyn PaymentProvider,
        key: String,
    ) -> Result<PaymentEvent, PaymentError> {
        if self.kind == PaymentKind::Cash {
            return Err(PaymentError::CashOperationUnsupported { operation: "void" });
        }
        if !matches!(
            self.status,
            PaymentStatus::Authorized | PaymentStatus::CaptureFailed | PaymentStatus::VoidFailed
        ) {
            return Err(PaymentError::NotVoidable {
                status: self.status,
            });
        }
        let key = self.void_failures.next_key(key);
        let receipt = match provider.void(self.reference(), self.amount, &key).await {
            Ok(receipt) => receipt,
            Err(error) => {
                let (decline_code, answered) = failure(error);
                let refusals = self
                    .void_failures
                    .refusals
                    .saturating_add(u32::from(answered));
                return Ok(PaymentVoidFailed {
                    amount: self.amount,
                    provider: provider.name().to_owned(),
                    decline_code,
                    answered,
                    idempotency_key: key,
                    attempt: self.void_failures.attempts.saturating_add(1),
                    final_attempt: answered && refusals >= VOID_ATTEMPTS_MAX,
                    failed_at: cmd.now,
                }
                .into());
            }
        };
        Ok(PaymentVoided {
            amount: self.amount,
            fee: receipt.fee,
            voided_at: cmd.now,
        }
        .into())
    }

    /// Refund; a refusal or an outage is recorded as `PaymentRefundFailed`
    /// (nothing returned). An attempt after an unanswered one repeats its
    /// idempotency key (and its refund reference).
    async fn refund(
        &self,
        cmd: RefundPayment,
        provider: &dyn PaymentProvider,
        key: String,
    ) -> Result<PaymentEvent, PaymentError> {
        if self.kind == PaymentKind::Cash {
            return Err(PaymentError::CashOperationUnsupported {
                operation: "refund",
            });
        }
        let captured = match (self.status, self.captured) {
            (
                PaymentStatus::Captured
                | PaymentStatus::PartiallyRefunded
                | PaymentStatus::RefundFailed,
                Some(captured),
            ) => captured,
            _ => {
                return Err(PaymentError::NotRefundable {
                    status: self.status,
                });
            }
        };
        if cmd.reason.trim().is_empty() {
            return Err(PaymentError::ReasonRequired {
                action: "refund a payment",
            });
        }
        crate::text::REASON.check(&cmd.reason)?;
        self.check_amount(cmd.amount)?;
        let refundable = Money::new(
            captured.amount.saturating_sub(self.refunded.amount),
            captured.currency,
        );
        if cmd.amount.amount > refundable.amount {
            return Err(PaymentError::RefundExceedsCaptured {
                requested: cmd.amount,
                refundable,
            });
        }
        let allocation = cmd
            .order_price
            .as_ref()
            .map(|price| {
                crate::pricing::allocate_refund(
                    price,
                    self.refunded_allocation.as_ref(),
                    cmd.amount,
                )
            })
            .transpose()
            .map_err(|_| PaymentError::RefundExceedsCaptured {
                requested: cmd.amount,
                refundable,
            })?;
        let reference = format!(
            "{}_refund_{}",
            self.payment_id,
            self.refunds.saturating_add(1)
        );
        let key = self.refund_failures.next_key(key);
        let refund = match provider
            .refund(self.reference(), cmd.amount, &reference, &key)
            .await
        {
            Ok(refund) => refund,
            Err(error) => {
                let (decline_code, answered) = failure(error);
                let refusals = self
                    .refund_failures
                    .refusals
                    .saturating_add(u32::from(answered));
                return Ok(PaymentRefundFailed {
                    amount: cmd.amount,
                    reason: cmd.reason,
                    provider: provider.name().to_owned(),
                    decline_code,
                    answered,
                    idempotency_key: key,
                    attempt: self.refund_failures.attempts.saturating_add(1),
                    final_attempt: answered && refusals >= REFUND_ATTEMPTS_MAX,
                    failed_at: cmd.now,
                }
                .into());
            }
        };
        Ok(PaymentRefunded {
            amount: cmd.amount,
            fee: refund.fee,
            reason: cmd.reason,
            provider_reference: refund.provider_reference,
            refunded_at: cmd.now,
            allocation,
        }
        .into())
    }
}

/// Adds `b` to `a` in `a`'s currency; apply() cannot fail, so this saturates.
fn plus(a: Money, b: Money) -> Money {
    Money::new(a.amount.saturating_add(b.amount), a.currency)
}

impl Aggregate for Payment {
    const TYPE: &'static str = "Payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = PaymentServices;

    async fn handle(
        &mut self,
        command: PaymentCommand,
        services: &PaymentServices,
        sink: &EventSink<Self>,
    ) -> Result<(), PaymentError> {
        let event = self
            .decide_with_key(
                command,
                services.provider.as_ref(),
                services.idempotency_key.as_deref(),
            )
            .await?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: PaymentEvent) {
        let attempts = self.authorization_attempts().saturating_add(1);
        match event {
            PaymentEvent::PaymentAuthorized(e) => {
                let mut state = PaymentState::first(
                    (e.payment_id, e.order_id, e.restaurant_id),
                    PaymentKind::Card,
                    PaymentStatus::Authorized,
                    e.amount,
                );
                state.provider = Some(e.provider);
                state.provider_reference = Some(e.provider_reference);
                state.authorization_attempts = attempts;
                state.fees = e.fee;
                self.state = Some(state);
            }
            PaymentEvent::PaymentDeclined(e) => {
                let mut state = PaymentState::first(
                    (e.payment_id, e.order_id, e.restaurant_id),
                    PaymentKind::Card,
                    PaymentStatus::Declined,
                    e.amount,
                );
                state.provider = Some(e.provider);
                state.decline_code = Some(e.decline_code);
                state.authorization_attempts = attempts;
                self.state = Some(state);
            }
            PaymentEvent::CashCollected(e) => {
                let mut state = PaymentState::first(
                    (e.payment_id, e.order_id, e.restaurant_id),
                    PaymentKind::Cash,
                    PaymentStatus::CashCollected,
                    e.amount,
                );
                state.collected_by = Some(e.rider_id);
                self.state = Some(state);
            }
            PaymentEvent::PaymentCaptureFailed(e) => {
                if let Some(state) = self.state.as_mut() {
                    state.capture_attempts = e.attempt.max(state.capture_attempts);
                    if e.answered {
                        state.capture_refusals = state.capture_refusals.saturating_add(1);
                        state.unanswered_capture_key = None;
                    } else {
                        state.unanswered_capture_key = Some(e.idempotency_key);
                    }
                    if e.final_attempt {
                        state.status = PaymentStatus::CaptureFailed;
                    }
                    state.capture_failure = Some(e.decline_code);
                }
            }
            PaymentEvent::PaymentCaptured(e) => {
                if let Some(state) = self.state.as_mut() {
                    state.unanswered_capture_key = None;
                    state.status = PaymentStatus::Captured;
                    state.captured = Some(e.amount);
                    state.fees = plus(state.fees, e.fee);
                }
            }
            PaymentEvent::PaymentVoidFailed(e) => {
                if let Some(state) = self.state.as_mut() {
                    state.void_failures.record(
                        e.attempt,
                        e.answered,
                        e.idempotency_key,
                        e.decline_code,
                    );
                    if e.final_attempt {
                        state.status = PaymentStatus::VoidFailed;
                    }
                }
            }
            PaymentEvent::PaymentRefundFailed(e) => {
                if let Some(state) = self.state.as_mut() {
                    state.refund_failures.record(
                        e.attempt,
                        e.answered,
                        e.idempotency_key,
                        e.decline_code,
                    );
                    if e.final_attempt {
                        state.status = PaymentStatus::RefundFailed;
                    }
                }
            }
            PaymentEvent::PaymentVoided(e) => {
                if let Some(state) = self.state.as_mut() {
                    state.void_failures.unanswered_key = None;
                    state.status = PaymentStatus::Voided;
                    state.fees = plus(state.fees, e.fee);
                }
            }
            PaymentEvent::PaymentRefunded(e) => {
                if let Some(state) = self.state.as_mut() {
                    state.refunded = plus(state.refunded, e.amount);
                    state.refunds = state.refunds.saturating_add(1);
                    state.refund_failures = FailedCalls::default();
                    if let Some(allocation) = &e.allocation {
                        state.refunded_allocation = Some(match &state.refunded_allocation {
                            Some(before) => crate::pricing::add_allocations(before, allocation),
                            None => *allocation,
                        });
                    }
                    state.fees = plus(state.fees, e.fee);
                    let captured = state.captured.map_or(0, |c| c.amount);
                    state.status = if state.refunded.amount >= captured {
                        PaymentStatus::Refunded
                    } else {
                        PaymentStatus::PartiallyRefunded
                    };
                }
            }
        }
    }
}
