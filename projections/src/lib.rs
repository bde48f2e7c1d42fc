//! Ordertrail's read side: the projector runtime, the read models it builds
//! and the queries the API serves from them.
//!
//! - [`runtime`]: the platform's one consumer runtime: each projector catches
//!   up from the event store, then follows Kafka; batches of events are
//!   applied and positions advanced in one PostgreSQL transaction;
//!   duplicates are recognised and gaps filled from the store; an event that
//!   cannot be applied stalls the projector visibly, never skipped.
//! - [`replay`]: rebuild a read model from the store with an atomic swap, or
//!   verify it row by row ([`rebuild`], [`verify`]).
//! - One module per read model: [`order_history`], [`rider_etas`],
//!   [`settlements`] (each also has a thin binary under `src/bin/`).
//! - [`queries`]: the read-model queries, filtered by a [`queries::Viewer`].
//! - [`reconcile`]: settlements recomputed from the events by set-based SQL
//!   (independent of the projector) and compared with the read model; the
//!   payment ledger compared with the provider's statement
//!   (`ordertrail-reconcile`, `GET /v1/reconciliation/settlements`).
//! - [`cli`]: the configuration and `main` shared by the three binaries.
//!
//! May depend on `schemas` (the wire contract) and `platform` (process
//! plumbing) only; never on `domain`, `commands` or `api`.

pub mod cli;
pub mod order_history;
pub mod queries;
pub mod reconcile;
pub mod rider_etas;
mod rows;
pub mod runtime;
pub mod settlements;

use std::future::Future;

use sqlx::PgPool;

pub use runtime::{RuntimeConfig, RuntimeError, replay};

/// Names of every projector, as stored in `projector_offsets`.
pub const PROJECTORS: [&str; 3] = [order_history::NAME, rider_etas::NAME, settlements::NAME];

/// Which read model a runtime maintains.
#[derive(Debug, Clone)]
pub enum ProjectorKind {
    OrderHistory,
    RiderEtas(rider_etas::EtaSettings),
    Settlements,
}

impl ProjectorKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProjectorKind::OrderHistory => order_history::NAME,
            ProjectorKind::RiderEtas(_) => rider_etas::NAME,
            ProjectorKind::Settlements => settlements::NAME,
        }
    }
}

/// Run one projector until `shutdown` completes or an event cannot be applied.
/// Usable in-process by tests and a launcher.
pub async fn run(
    kind: ProjectorKind,
    config: RuntimeConfig,
    pool: PgPool,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RuntimeError> {
    match kind {
        ProjectorKind::OrderHistory => {
            runtime::run(order_history::OrderHistory, config, pool, shutdown).await
        }
        ProjectorKind::RiderEtas(settings) => {
            runtime::run(rider_etas::RiderEtas::new(settings), config, pool, shutdown).await
        }
        ProjectorKind::Settlements => {
            runtime::run(settlements::Settlements, config, pool, shutdown).await
        }
    }
}

/// Rebuild one read model from the event store and swap it in (see
/// [`replay`]).
pub async fn rebuild(
    kind: ProjectorKind,
    pool: &PgPool,
    batch_size: usize,
    progress: &mut (dyn FnMut(replay::Progress) + Send),
) -> Result<replay::RebuildSummary, replay::ReplayError> {
    match kind {
        ProjectorKind::OrderHistory => {
            replay::rebuild(order_history::OrderHistory, pool, batch_size, progress).await
        }
        ProjectorKind::RiderEtas(settings) => {
            replay::rebuild(
                rider_etas::RiderEtas::new(settings),
                pool,
                batch_size,
                progress,
            )
            .await
        }
        ProjectorKind::Settlements => {
            replay::rebuild(settlements::Settlements, pool, batch_size, progress).await
        }
    }
}

/// Rebuild one read model into shadow tables and compare it with the live
/// one (see [`replay`]).
pub async fn verify(
    kind: ProjectorKind,
    pool: &PgPool,
    batch_size: usize,
    max_differences: usize,
    progress: &mut (dyn FnMut(replay::Progress) + Send),
) -> Result<replay::VerifyReport, replay::ReplayError> {
    match kind {
        ProjectorKind::OrderHistory => {
            replay::verify(
                order_history::OrderHistory,
                pool,
                batch_size,
                max_differences,
                progress,
            )
            .await
        }
        ProjectorKind::RiderEtas(settings) => {
            replay::verify(
                rider_etas::RiderEtas::new(settings),
                pool,
                batch_size,
                max_differences,
                progress,
            )
            .await
        }
        ProjectorKind::Settlements => {
            replay::verify(
                settlements::Settlements,
                pool,
                batch_size,
                max_differences,
                progress,
            )
            .await
        }
    }
}
