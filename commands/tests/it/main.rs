//! The commands crate's one integration-test binary (one link on 2 cores):
//! real PostgreSQL from `DATABASE_URL`, real Kafka-protocol broker from
//! `KAFKA_BROKERS` or the in-process mock cluster.

mod audit;
mod event_store;
mod process;
mod relay;
mod retention;
mod saga;
mod support;
