//! Ordertrail's business rules.
//!
//! This crate holds the three event-sourced aggregates — [`order::Order`],
//! [`payment::Payment`] and [`delivery::Delivery`] (cqrs-es `Aggregate`s) —
//! with their commands and typed errors, and the pure policies they use:
//! [`pricing`] (fees, tax, commission), the [`provider`] interface a payment
//! provider client implements (plus a deterministic [`provider::SimulatedProvider`]),
//! and the [`catalog`] snapshots the command service looks up and passes in.
//!
//! Layout: one module per aggregate, each split into `aggregate.rs` (state,
//! `handle`/`apply`, given/when/then tests), `commands.rs` and `errors.rs`.
//! Event payloads and value types (`Money`, ids, `GeoPoint`) come from
//! `ordertrail-schemas`, the wire contract.
//!
//! Decisions are pure: every input a rule needs, including the current time
//! (`now`) and reference data (restaurant, menu items), travels in the
//! command. The only side effect is the payment provider call, reached through
//! the [`provider::PaymentProvider`] trait object in the payment services.
//!
//! May depend on `ordertrail-schemas`, `cqrs-es`, serde, chrono, chrono-tz,
//! thiserror and async-trait. Must never do I/O, SQL or HTTP, and never depend
//! on `commands`, `api` or `projections`.

#![warn(missing_docs)]

/// An aggregate's command enum: one variant per command struct of the same
/// name, its `name()` (for logs and metrics) and a `From` per command.
macro_rules! command_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $($(#[$variant_meta:meta])* $command:ident,)+
        }
    ) => {
        $(#[$meta])*
        pub enum $enum {
            $($(#[$variant_meta])* $command($command),)+
        }

        impl $enum {
            /// The command's name, e.g. `PlaceOrder` (for logs and metrics).
            pub fn name(&self) -> &'static str {
                match self {
                    $($enum::$command(_) => stringify!($command),)+
                }
            }
        }

        $(impl From<$command> for $enum {
            fn from(value: $command) -> Self {
                $enum::$command(value)
            }
        })+
    };
}

/// [`DomainError`] of an aggregate's error, by its own `code` and `kind`.
macro_rules! domain_error {
    ($error:ident) => {
        impl $crate::DomainError for $error {
            fn code(&self) -> &'static str {
                $error::code(self)
            }

            fn kind(&self) -> $crate::ErrorKind {
                $error::kind(self)
            }
        }
    };
}

pub mod catalog;
pub mod delivery;
pub mod order;
pub mod payment;
pub mod pricing;
pub mod provider;
#[cfg(test)]
mod testing;

pub use catalog::{MenuItemSnapshot, RestaurantSnapshot};
pub use delivery::{Delivery, DeliveryCommand, DeliveryError, DeliveryStatus};
pub use order::{Order, OrderCommand, OrderError, OrderStatus};
pub use ordertrail_schemas::error_kind::{DomainError, ErrorKind};
pub use ordertrail_schemas::text;
pub use payment::{Payment, PaymentCommand, PaymentError, PaymentServices, PaymentStatus};
pub use provider::{PaymentProvider, ProviderError, SimulatedProvider};
pub use text::{Reason, TextError, TextRule};
