//! Integration tests of the projections against a real PostgreSQL and a
//! Kafka-protocol broker (testkit): each read model from scripted events, the
//! runtime's crash-restart, redelivery and scale-out behaviour, and the
//! queries' filters, pagination and visibility. The end-to-end tests (real
//! commands through the relay, the store as the truth) run the launcher's
//! `Stack`: they live in `launcher/tests/it`.

mod order_history;
mod process;
mod queries;
mod reconcile;
mod rider_etas;
mod runtime;
mod settlements;
mod support;
