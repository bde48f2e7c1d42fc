//! Integration tests of the projections against a real PostgreSQL and a
//! Kafka-protocol broker (testkit): each read model from scripted events, the
//! runtime's crash-restart, redelivery and scale-out behaviour, and the
//! queries' filters, pagination and visibility.

mod end_to_end;
mod order_history;
mod process;
mod queries;
mod reconcile;
mod rider_etas;
mod runtime;
mod settlements;
mod store_truth;
mod support;
