//! The `Payment` aggregate: one order's payment, either a card authorization
//! (authorize -> capture -> refunds, or void) through a [`PaymentProvider`],
//! or cash collected by the rider. Aggregate id = the payment id, normally
//! `PaymentId::for_order(order_id)`.
//!
//! Provider answers are recorded on the events (references, fees, decline
//! codes), so rebuilding a payment never calls the provider.
//!
//! [`PaymentProvider`]: crate::provider::PaymentProvider

mod aggregate;
mod commands;
mod errors;

pub use aggregate::{Payment, PaymentKind, PaymentServices, PaymentStatus};
pub use commands::{
    AuthorizePayment, CapturePayment, PaymentCommand, RecordCashCollected, RefundPayment,
    VoidPayment,
};
pub use errors::PaymentError;

#[cfg(test)]
mod tests;
