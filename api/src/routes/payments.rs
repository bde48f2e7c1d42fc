//! Payment commands: authorize (the order's total, never an amount from the
//! client), capture, void, refund.
//!
//! A decline is a fact, recorded as a `PaymentDeclined` event: the answer is
//! 402 `payment_declined` with the decline code and the command outcome in
//! `details` (a retry with the same `Idempotency-Key` gets the same 402).
//! A failed capture, void or refund is a fact too, recorded as
//! `PaymentCaptureFailed` / `PaymentVoidFailed` / `PaymentRefundFailed`: 402
//! `payment_capture_failed` / `payment_void_failed` / `payment_refund_failed`
//! when the provider refused it, 503 `payment_provider_unavailable` when it
//! did not answer (the next attempt repeats the call's idempotency key), with
//! the decline code, whether the failure was final and the outcome in
//! `details` (a retry with the same `Idempotency-Key` gets the same answer;
//! a new key tries the provider again).

use ordertrail_commands::service::{CommandOutcome, ErrorKind};
use ordertrail_commands::workflows::{
    AuthorizePayment, CapturePayment, RefundPayment, VoidPayment,
};
use ordertrail_schemas::{OrderId, PaymentId};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use axum::http::StatusCode;

use super::{Answer, CommandResponse, NoBody, answer_or_refusal};
use crate::auth::{AuthUser, CustomerOrStaff, Staff};
use crate::error::ApiError;

/// `POST /v1/payments`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizePaymentRequest {
    pub order_id: Uuid,
    /// The card token (1..=255 characters, not only white space, never
    /// stored); defaults to the card the order was placed with.
    #[schema(
        example = "tok_visa",
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub card_token: Option<String>,
}

/// The card token is a secret: never printed.
impl std::fmt::Debug for AuthorizePaymentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizePaymentRequest")
            .field("order_id", &self.order_id)
            .field(
                "card_token",
                &self.card_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `POST /v1/payments/{id}/capture`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapturePaymentRequest {
    /// Minor units to capture (at most the authorized amount); absent captures all of it.
    #[schema(minimum = 1)]
    pub amount_minor: Option<i64>,
    /// Required to capture before the order is delivered (409
    /// `capture_before_delivery` without it); recorded on the event.
    /// 1..=500 characters, no control characters but `\n` and `\t`.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub override_reason: Option<String>,
}

/// `POST /v1/payments/{id}/refund`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundPaymentRequest {
    /// Minor units to refund; all refunds add up to at most the captured amount.
    #[schema(example = 500, minimum = 1)]
    pub amount_minor: i64,
    /// Free text, 1..=500 characters, not only white space; no control
    /// characters but `\n` and `\t`.
    #[schema(
        example = "cold food",
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"
    )]
    pub reason: String,
}

command_routes! {
    tag = "payments", id = "Payment id";

    /// Authorize the order's total on a card (the order's customer, ops, admin).
    /// The payment id is derived from the order id.
    post "/v1/payments" => 201 "Payment authorized",
        (status = 402, description = "Declined: code `payment_declined`, `details.decline_code` and `details.outcome` (the recorded `PaymentDeclined`)", body = crate::error::ErrorBody);
    fn authorize_payment(user: CustomerOrStaff, body: AuthorizePaymentRequest) -> answer_authorized {
        AuthorizePayment {
            order_id: OrderId(body.order_id),
            card_token: body.card_token.clone(),
        }
    }

    /// Capture an authorization, all or part of it (ops, admin).
    post "/v1/payments/{id}/capture" => 200 "Payment captured",
        (status = 402, description = "Capture refused by the provider: code `payment_capture_failed`, `details.decline_code`, `details.final_attempt` and `details.outcome` (the recorded `PaymentCaptureFailed`)", body = crate::error::ErrorBody);
    fn capture_payment(user: Staff, body: CapturePaymentRequest, id: Uuid) -> Operation::CAPTURE {
        CapturePayment {
            payment_id: PaymentId(id),
            amount_minor: body.amount_minor,
            override_reason: body.override_reason.clone(),
        }
    }

    /// Release an uncaptured authorization (ops, admin).
    post "/v1/payments/{id}/void" => 200 "Authorization voided",
        (status = 402, description = "Void refused by the provider (the authorization is still held): code `payment_void_failed`, `details.decline_code`, `details.final_attempt` and `details.outcome` (the recorded `PaymentVoidFailed`)", body = crate::error::ErrorBody);
    fn void_payment(user: Staff, _: NoBody, id: Uuid) -> Operation::VOID {
        VoidPayment { payment_id: PaymentId(id) }
    }

    /// Refund part or all of a captured payment (ops, admin).
    post "/v1/payments/{id}/refund" => 200 "Refund recorded",
        (status = 402, description = "Refund refused by the provider (nothing returned): code `payment_refund_failed`, `details.decline_code`, `details.final_attempt` and `details.outcome` (the recorded `PaymentRefundFailed`)", body = crate::error::ErrorBody);
    fn refund_payment(user: Staff, body: RefundPaymentRequest, id: Uuid) -> Operation::REFUND {
        RefundPayment {
            payment_id: PaymentId(id),
            amount_minor: body.amount_minor,
            reason: body.reason.clone(),
        }
    }
}

/// 201 with the outcome, or 402 `payment_declined` when the outcome is a
/// recorded `PaymentDeclined`.
fn answer_authorized(
    user: &AuthUser,
    outcome: CommandOutcome,
) -> Result<CommandResponse, ApiError> {
    answer_or_refusal(
        user,
        outcome,
        StatusCode::CREATED,
        "PaymentDeclined",
        |declined, outcome| {
            let decline_code = declined.get("decline_code").cloned().unwrap_or_default();
            ApiError::new("payment_declined", "the card was declined").with_details(
                serde_json::json!({ "decline_code": decline_code, "outcome": outcome }),
            )
        },
    )
}

/// A provider call after authorization, and how its recorded failure is answered.
struct Operation {
    /// The failure event, e.g. `PaymentCaptureFailed`.
    failed_event: &'static str,
    /// The code of a refusal (402).
    refused_code: &'static str,
    refused: &'static str,
    unanswered: &'static str,
}

impl Operation {
    const CAPTURE: Operation = Operation {
        failed_event: "PaymentCaptureFailed",
        refused_code: "payment_capture_failed",
        refused: "the provider refused the capture; the failure is recorded",
        unanswered: "the provider did not answer the capture; the failure is recorded",
    };
    const VOID: Operation = Operation {
        failed_event: "PaymentVoidFailed",
        refused_code: "payment_void_failed",
        refused: "the provider refused the void; the failure is recorded and the authorization is still held",
        unanswered: "the provider did not answer the void; the failure is recorded",
    };
    const REFUND: Operation = Operation {
        failed_event: "PaymentRefundFailed",
        refused_code: "payment_refund_failed",
        refused: "the provider refused the refund; the failure is recorded and nothing was returned",
        unanswered: "the provider did not answer the refund; the failure is recorded",
    };
}

/// Answers a payment command: 200 with the outcome, or, when the outcome
/// is the operation's recorded failure, 402 (refused) or 503 (unanswered)
/// with `details.decline_code`, `details.final_attempt` and
/// `details.outcome`.
impl Answer for Operation {
    fn answer(
        &self,
        user: &AuthUser,
        outcome: CommandOutcome,
    ) -> Result<CommandResponse, ApiError> {
        answer_or_refusal(
            user,
            outcome,
            StatusCode::OK,
            self.failed_event,
            |failed, outcome| {
                let field = |name: &str| failed.get(name).cloned().unwrap_or_default();
                let details = serde_json::json!({
                    "decline_code": field("decline_code"),
                    "final_attempt": field("final_attempt"),
                    "outcome": outcome,
                });
                let error = if field("answered") == serde_json::Value::Bool(true) {
                    ApiError::new(self.refused_code, self.refused)
                } else {
                    ApiError::domain(
                        "payment_provider_unavailable",
                        ErrorKind::Unavailable,
                        self.unanswered,
                    )
                };
                error.with_details(details)
            },
        )
    }
}
