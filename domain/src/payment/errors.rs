//! Why a payment command was refused.

use ordertrail_schemas::{Currency, Money, OrderId, PaymentStatus};

use crate::ErrorKind;

/// Why a payment command was refused. `code()` is stable; `kind()` says which
/// HTTP status family it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Payment not found (command `command`).
    #[error("payment not found (command {command})")]
    NotFound {
        /// The command that found no payment.
        command: &'static str,
    },
    /// Amount must be positive, got `amount`.
    #[error("amount must be positive, got {amount}")]
    InvalidAmount {
        /// The amount given.
        amount: Money,
    },
    /// `field` is in `found`, but the payment is in `expected`.
    #[error("{field} is in {found}, but the payment is in {expected}")]
    CurrencyMismatch {
        /// The field that was refused.
        field: &'static str,
        /// The currency required.
        expected: Currency,
        /// The currency given.
        found: Currency,
    },
    /// A card token is required.
    #[error("a card token is required")]
    CardTokenRequired {
        /// The order.
        order_id: OrderId,
    },
    /// Payment is already `status`.
    #[error("payment is already {status}")]
    AlreadyAuthorized {
        /// The payment's current status.
        status: PaymentStatus,
    },
    /// A payment already exists (status `status`).
    #[error("a payment already exists (status {status})")]
    AlreadyExists {
        /// The payment's current status.
        status: PaymentStatus,
    },
    /// Payment belongs to order `expected`, not `found`.
    #[error("payment belongs to order {expected}, not {found}")]
    OrderMismatch {
        /// The order the payment belongs to.
        expected: OrderId,
        /// The order named by the command.
        found: OrderId,
    },
    /// Payment in status `status` cannot be captured.
    #[error("payment in status {status} cannot be captured")]
    NotCapturable {
        /// The payment's current status.
        status: PaymentStatus,
    },
    /// A payment is captured only after its order is delivered, unless ops give an override reason.
    #[error(
        "a payment is captured only after its order is delivered, unless ops give an override reason"
    )]
    CaptureBeforeDelivery,
    /// Cannot capture `requested`: only `authorized` is authorized.
    #[error("cannot capture {requested}: only {authorized} is authorized")]
    CaptureExceedsAuthorized {
        /// The amount asked to capture.
        requested: Money,
        /// The authorized amount.
        authorized: Money,
    },
    /// Payment in status `status` cannot be voided.
    #[error("payment in status {status} cannot be voided")]
    NotVoidable {
        /// The payment's current status.
        status: PaymentStatus,
    },
    /// Payment in status `status` cannot be refunded.
    #[error("payment in status {status} cannot be refunded")]
    NotRefundable {
        /// The payment's current status.
        status: PaymentStatus,
    },
    /// Cannot refund `requested`: only `refundable` of the captured amount is left.
    #[error("cannot refund {requested}: only {refundable} of the captured amount is left")]
    RefundExceedsCaptured {
        /// The amount asked to refund.
        requested: Money,
        /// What may still be refunded.
        refundable: Money,
    },
    /// Cash payments do not support `operation`.
    #[error("cash payments do not support {operation}")]
    CashOperationUnsupported {
        /// The operation, e.g. `capture`.
        operation: &'static str,
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
    /// An amount of this payment is too large.
    #[error("an amount of this payment is too large")]
    AmountOverflow {
        /// The amount given.
        amount: Money,
    },
    /// Payment provider `provider` is unavailable: `reason`.
    #[error("payment provider {provider} is unavailable: {reason}")]
    ProviderUnavailable {
        /// The provider's name, e.g. `simulated`.
        provider: String,
        /// What went wrong reaching the provider.
        reason: String,
    },
    /// Payment provider `provider` refused to `operation`: `code`.
    #[error("payment provider {provider} refused to {operation}: {code}")]
    ProviderRejected {
        /// The provider's name, e.g. `simulated`.
        provider: String,
        /// The operation, e.g. `capture`.
        operation: &'static str,
        /// The provider's decline code.
        code: String,
    },
}

impl PaymentError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PaymentError::NotFound { .. } => "payment_not_found",
            PaymentError::InvalidAmount { .. } => "invalid_payment_amount",
            PaymentError::CurrencyMismatch { .. } => "currency_mismatch",
            PaymentError::CardTokenRequired { .. } => "card_token_required",
            PaymentError::AlreadyAuthorized { .. } => "payment_already_authorized",
            PaymentError::AlreadyExists { .. } => "payment_already_exists",
            PaymentError::OrderMismatch { .. } => "payment_order_mismatch",
            PaymentError::NotCapturable { .. } => "payment_not_capturable",
            PaymentError::CaptureBeforeDelivery => "capture_before_delivery",
            PaymentError::CaptureExceedsAuthorized { .. } => "capture_exceeds_authorized",
            PaymentError::NotVoidable { .. } => "payment_not_voidable",
            PaymentError::NotRefundable { .. } => "payment_not_refundable",
            PaymentError::RefundExceedsCaptured { .. } => "refund_exceeds_captured",
            PaymentError::CashOperationUnsupported { .. } => "cash_payment_operation_unsupported",
            PaymentError::ReasonRequired { .. } => "reason_required",
            PaymentError::InvalidText(e) => e.code(),
            PaymentError::AmountOverflow { .. } => "amount_overflow",
            PaymentError::ProviderUnavailable { .. } => "payment_provider_unavailable",
            PaymentError::ProviderRejected { .. } => "payment_provider_rejected",
        }
    }

    /// Kind of failure (HTTP status family).
    pub fn kind(&self) -> ErrorKind {
        match self {
            PaymentError::NotFound { .. } => ErrorKind::NotFound,
            PaymentError::InvalidAmount { .. }
            | PaymentError::CurrencyMismatch { .. }
            | PaymentError::CardTokenRequired { .. }
            | PaymentError::CaptureExceedsAuthorized { .. }
            | PaymentError::RefundExceedsCaptured { .. }
            | PaymentError::ReasonRequired { .. }
            | PaymentError::InvalidText(_)
            | PaymentError::AmountOverflow { .. } => ErrorKind::Invalid,
            PaymentError::AlreadyAuthorized { .. }
            | PaymentError::AlreadyExists { .. }
            | PaymentError::OrderMismatch { .. }
            | PaymentError::CaptureBeforeDelivery
            | PaymentError::NotCapturable { .. }
            | PaymentError::NotVoidable { .. }
            | PaymentError::NotRefundable { .. }
            | PaymentError::CashOperationUnsupported { .. }
            | PaymentError::ProviderRejected { .. } => ErrorKind::Conflict,
            PaymentError::ProviderUnavailable { .. } => ErrorKind::Unavailable,
        }
    }
}

domain_error!(PaymentError);
