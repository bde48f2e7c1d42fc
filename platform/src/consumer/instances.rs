//! What each running instance of a consumer is doing (`consumer_instances`):
//! state, heartbeat, last error, and the event a stalled consumer cannot
//! apply. Written by a heartbeat task; read by the status query.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;

use super::EventRef;

/// What an instance is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    Starting,
    /// Reading the event store in commit order.
    CatchingUp,
    /// Following Kafka (or the store, without a broker).
    Following,
    /// Kafka could not be trusted; about to catch up from the store.
    Recovering,
    /// Stopped on an event it cannot apply; retrying, never skipping.
    Stalled,
    /// Shut down.
    Stopped,
}

impl ConsumerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsumerState::Starting => "starting",
            ConsumerState::CatchingUp => "catching_up",
            ConsumerState::Following => "following",
            ConsumerState::Recovering => "recovering",
            ConsumerState::Stalled => "stalled",
            ConsumerState::Stopped => "stopped",
        }
    }

    const ALL: [ConsumerState; 6] = [
        ConsumerState::Starting,
        ConsumerState::CatchingUp,
        ConsumerState::Following,
        ConsumerState::Recovering,
        ConsumerState::Stalled,
        ConsumerState::Stopped,
    ];
}

struct Inner {
    state: ConsumerState,
    last_error: Option<(String, DateTime<Utc>)>,
    stalled_event: Option<serde_json::Value>,
}

/// The instance's status, shared by the runtime loop and the heartbeat task.
#[derive(Clone)]
pub(super) struct Status {
    consumer: &'static str,
    instance: String,
    inner: Arc<Mutex<Inner>>,
}

impl Status {
    pub(super) fn new(consumer: &'static str, instance: &str) -> Self {
        let status = Self {
            consumer,
            instance: instance.to_owned(),
            inner: Arc::new(Mutex::new(Inner {
                state: ConsumerState::Starting,
                last_error: None,
                stalled_event: None,
            })),
        };
        status.publish(ConsumerState::Starting);
        status
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn publish(&self, state: ConsumerState) {
        for s in ConsumerState::ALL {
            metrics::gauge!("consumer_state", "consumer" => self.consumer, "state" => s.as_str())
                .set(if s == state { 1.0 } else { 0.0 });
        }
        metrics::gauge!("consumer_stalled", "consumer" => self.consumer).set(
            if state == ConsumerState::Stalled {
                1.0
            } else {
                0.0
            },
        );
    }

    /// A new state; leaving `Stalled` clears the stalled event.
    pub(super) fn set(&self, state: ConsumerState) {
        {
            let mut inner = self.lock();
            if inner.state == state {
                return;
            }
            inner.state = state;
            if state != ConsumerState::Stalled {
                inner.stalled_event = None;
            }
        }
        self.publish(state);
    }

    /// A batch went through: the consumer is healthy again.
    pub(super) fn progressed(&self) {
        let stalled = self.lock().state == ConsumerState::Stalled;
        if stalled {
            self.set(ConsumerState::CatchingUp);
        }
    }

    pub(super) fn error(&self, reason: &str) {
        self.lock().last_error = Some((reason.to_owned(), Utc::now()));
    }

    pub(super) fn stalled(&self, event: &EventRef, reason: &str) {
        {
            let mut inner = self.lock();
            inner.last_error = Some((format!("cannot apply {event}: {reason}"), Utc::now()));
            inner.stalled_event = serde_json::to_value(event).ok().map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.insert("reason".into(), reason.into());
                }
                v
            });
            inner.state = ConsumerState::Stalled;
        }
        self.publish(ConsumerState::Stalled);
    }

    async fn write(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let (state, error, error_at, stalled) = {
            let inner = self.lock();
            (
                inner.state,
                inner.last_error.as_ref().map(|(e, _)| e.clone()),
                inner.last_error.as_ref().map(|(_, at)| *at),
                inner.stalled_event.clone(),
            )
        };
        sqlx::query(
            "INSERT INTO consumer_instances
                 (consumer, instance, state, heartbeat_at, last_error, last_error_at, stalled_event)
             VALUES ($1, $2, $3, now(), $4, $5, $6)
             ON CONFLICT (consumer, instance) DO UPDATE
             SET state = EXCLUDED.state, heartbeat_at = now(), last_error = EXCLUDED.last_error,
                 last_error_at = EXCLUDED.last_error_at, stalled_event = EXCLUDED.stalled_event",
        )
        .bind(self.consumer)
        .bind(&self.instance)
        .bind(state.as_str())
        .bind(error)
        .bind(error_at)
        .bind(stalled)
        .execute(pool)
        .await?;
        metrics::gauge!("consumer_heartbeat_timestamp_seconds", "consumer" => self.consumer)
            .set(Utc::now().timestamp() as f64);
        Ok(())
    }
}

/// Write the instance's status every `every` until shutdown, then once more
/// (as stopped). Rows of instances silent for a day are removed.
pub(super) async fn heartbeat(
    pool: PgPool,
    status: Status,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), sqlx::Error> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned = false;
    loop {
        tokio::select! {
            () = super::stopping(&mut stop) => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = status.write(&pool).await {
            if crate::db::is_unreachable(&e) {
                crate::db::mark_unavailable(&e);
            }
            tracing::debug!(consumer = status.consumer, error = %e, "cannot write the heartbeat now");
            continue;
        }
        crate::db::mark_available();
        if !pruned {
            pruned = sqlx::query(
                "DELETE FROM consumer_instances
                 WHERE consumer = $1 AND heartbeat_at < now() - interval '1 day'",
            )
            .bind(status.consumer)
            .execute(&pool)
            .await
            .is_ok();
        }
    }
    status.set(ConsumerState::Stopped);
    status.write(&pool).await
}
