//! Why a payment command was refused.

use ordertrail_schemas::{Currency, Money, OrderId, PaymentStatus};

use crate::{DomainError, ErrorKind};

/// Why a payment command was refused. `code()` is stable; `kind()` says which
/// HTTP status family it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment not found (command {command})")]
    NotFound { command: &'static str },
    #[error("amount must be positive, got {amount}")]
    InvalidAmount { amount: Money },
    #[error("{field} is in {found}, but the payment is in {expected}")]
    CurrencyMismatch {
        field: &'static str,
        expected: Currency,
        found: Currency,
    },
    #[error("a card token is required")]
    CardTokenRequired { order_id: OrderId },
    #[error("payment is already {status}")]
    AlreadyAuthorized { status: PaymentStatus },
    #[error("a payment already exists (status {status})")]
    AlreadyExists { status: PaymentStatus },
    #[error("payment belongs to order {expected}, not {found}")]
    OrderMismatch { expected: OrderId, found: OrderId },
    #[error("payment in status {status} cannot be captured")]
    NotCapturable { status: PaymentStatus },
    #[error(
        "a payment is captured only after its order is delivered, unless ops give an override reason"
    )]
    CaptureBeforeDelivery,
    #[error("cannot capture {requested}: only {authorized} is authorized")]
    CaptureExceedsAuthorized { requested: Money, authorized: Money },
    #[error("payment in status {status} cannot be voided")]
    NotVoidable { status: PaymentStatus },
    #[error("payment in status {status} cannot be refunded")]
    NotRefundable { status: PaymentStatus },
    #[error("cannot refund {requested}: only {refundable} of the captured amount is left")]
    RefundExceedsCaptured { requested: Money, refundable: Money },
    #[error("cash payments do not support {operation}")]
    CashOperationUnsupported { operation: &'static str },
    #[error("a reason is required to {action}")]
    ReasonRequired { action: &'static str },
    #[error(transparent)]
    InvalidText(#[from] crate::text::TextError),
    #[error("an amount of this payment is too large")]
    AmountOverflow { amount: Money },
    #[error("payment provider {provider} is unavailable: {reason}")]
    ProviderUnavailable { provider: String, reason: String },
    #[error("payment provider {provider} refused to {operation}: {code}")]
    ProviderRejected {
        provider: String,
        operation: &'static str,
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

impl DomainError for PaymentError {
    fn code(&self) -> &'static str {
        PaymentError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        PaymentError::kind(self)
    }
}
