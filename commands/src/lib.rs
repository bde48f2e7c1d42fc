//! Ordertrail's write side.
//!
//! - [`service::CommandService`]: executes domain commands on the cqrs-es
//!   aggregates persisted by postgres-es, with event metadata, `Idempotency-Key`
//!   handling and optimistic concurrency. [`event_store::EventRepository`]
//!   appends a command's events in one statement. The API, the benchmark and the saga
//!   all go through it.
//! - [`catalog`]: reference data (restaurants, menus, riders) in plain tables,
//!   looked up before a decision and passed into the command.
//! - [`audit`]: an aggregate's history, its state as of a version or a time
//!   (folded by the domain aggregate itself) and a correlation's events, read
//!   from the store (API audit routes and `ordertrail-audit`).
//! - [`provider_ledger`]: the simulated payment provider's own record of its
//!   operations (the simulation's side of the reconciliation).
//! - [`retention`]: pruning of the bookkeeping tables that grow with traffic
//!   (Idempotency-Keys, command log, fired timers, sequence guards), run by
//!   the saga process.
//! - The relay (store → Kafka) and the saga (events → follow-up commands) live
//!   in their own modules with thin binaries under `src/bin/`.
//!
//! May depend on `domain`, `schemas` and `platform`; never on `api` or
//! `projections`.

pub mod audit;
pub mod catalog;
pub mod event_store;
pub mod provider_ledger;
pub mod relay;
pub mod retention;
pub mod saga;
pub mod service;
pub mod workflows;

/// The payment method events carry for a card token a client sent (an opaque
/// reference, never the token).
pub use ordertrail_domain::provider::card_payment_method;
