//! API integration tests: the real router (`ordertrail_api::app`) driven
//! with `tower::ServiceExt::oneshot` against a fresh, seeded PostgreSQL
//! database per test (`DATABASE_URL` names the cluster).

#![allow(clippy::unwrap_used)]

mod abuse;
mod audit;
mod auth;
mod bad_input;
mod concurrency;
mod docs;
mod flow;
mod idempotency;
mod outage;
mod process;
mod queries;
mod security;
mod streams;
mod support;
