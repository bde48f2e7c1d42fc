//! End-to-end tests of the whole platform run by the launcher's `Stack`
//! against a real PostgreSQL and a Kafka-protocol broker (testkit): real
//! commands through the relay into every read model, and the event store as
//! the truth for every consumer (rebuild, verify, recovery, restarts).

mod end_to_end;
mod stack;
mod store_truth;
mod support;
