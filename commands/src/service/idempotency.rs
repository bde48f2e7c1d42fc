//! Idempotency: claiming an `Idempotency-Key`, answering repeats from the
//! first answer or the command log, remembering rejections.

use ordertrail_domain::ErrorKind;
use ordertrail_schemas::{Actor, AggregateKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::errors::DomainCodes;
use super::{
    AppendedEvent, CommandContext, CommandError, CommandOutcome, CommandService, IdempotencyKey,
};

/// A rejection as stored for idempotent replay.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRejection {
    code: String,
    kind: ErrorKind,
    message: String,
}

enum Claim {
    /// First use of the key: nothing can have been appended for it yet.
    Fresh,
    /// An earlier use that never recorded its answer (still running, or its
    /// process died): the command log decides.
    Unfinished,
    /// The key's earlier request finished with this rejection.
    Rejected(StoredRejection),
    /// The key's earlier request finished with this outcome.
    Succeeded(CommandOutcome),
}

impl CommandService {
    /// Before deciding: claim the idempotency key and find out whether this
    /// command was already answered or applied. `Some` is the answer to give.
    pub(crate) async fn preflight(
        &self,
        ctx: &CommandContext,
    ) -> Result<Option<Result<CommandOutcome, CommandError>>, CommandError> {
        let mut maybe_applied = ctx.is_repeatable();
        if let Some(key) = &ctx.idempotency {
            match self.claim(ctx, key).await? {
                Claim::Fresh => maybe_applied = ctx.causation_id.is_some(),
                Claim::Unfinished => {}
                Claim::Succeeded(mut outcome) => {
                    outcome.replayed = true;
                    return Ok(Some(Ok(outcome)));
                }
                Claim::Rejected(r) => {
                    let code = DomainCodes::intern(&r.code);
                    return Ok(Some(Err(CommandError::Rejected {
                        code,
                        kind: r.kind,
                        message: r.message,
                    })));
                }
            }
        }
        if maybe_applied && let Some(outcome) = self.applied(ctx.command_id()).await? {
            self.remember_success(ctx, &outcome).await;
            return Ok(Some(Ok(outcome)));
        }
        Ok(None)
    }

    /// Claim an idempotency key, or find what its first use did.
    async fn claim(
        &self,
        ctx: &CommandContext,
        key: &IdempotencyKey,
    ) -> Result<Claim, CommandError> {
        let scope = scope(&ctx.actor);
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, command_id)
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, idempotency_key) DO NOTHING",
        )
        .bind(&scope)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(ctx.command_id())
        .execute(&self.inner.bookkeeping)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Fresh);
        }
        let (hash, status, response): (String, Option<i32>, Option<serde_json::Value>) = sqlx::query_as(
            "SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(&scope)
        .bind(&key.key)
        .fetch_one(&self.inner.bookkeeping)
        .await?;
        if hash != key.request_hash {
            return Err(CommandError::IdempotencyKeyReused);
        }
        match (status, response) {
            (Some(200), Some(body)) => serde_json::from_value(body)
                .map(Claim::Succeeded)
                .map_err(|e| CommandError::Internal(format!("stored idempotent response: {e}"))),
            (Some(_), Some(body)) => serde_json::from_value(body)
                .map(Claim::Rejected)
                .map_err(|e| CommandError::Internal(format!("stored idempotent rejection: {e}"))),
            // In progress elsewhere, or its process died: the command log decides.
            _ => Ok(Claim::Unfinished),
        }
    }

    /// The outcome of a command that already appended, from the command log.
    pub(super) async fn applied(
        &self,
        command_id: Uuid,
    ) -> Result<Option<CommandOutcome>, CommandError> {
        let rows: Vec<(String, String, i64, String, String, serde_json::Value)> = sqlx::query_as(
            "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::jsonb
             FROM command_log c
             JOIN events e ON e.aggregate_type = c.aggregate_type AND e.aggregate_id = c.aggregate_id
                          AND e.sequence BETWEEN c.first_sequence AND c.last_sequence
             WHERE c.command_id = $1
             ORDER BY e.sequence",
        )
        .bind(command_id)
        .fetch_all(&self.inner.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let aggregate_type = AggregateKind::parse(&first.0)
            .ok_or_else(|| CommandError::Internal(format!("unknown aggregate type {}", first.0)))?;
        let aggregate_id = first.1.clone();
        let version = rows.last().map(|r| r.2).unwrap_or_default();
        let events = rows
            .into_iter()
            .map(
                |(_, _, sequence, event_type, event_version, payload)| AppendedEvent {
                    sequence,
                    event_type,
                    event_version,
                    payload,
                },
            )
            .collect();
        Ok(Some(CommandOutcome {
            aggregate_type,
            aggregate_id,
            version,
            events,
            replayed: true,
        }))
    }

    pub(super) async fn remember_success(&self, ctx: &CommandContext, outcome: &CommandOutcome) {
        let Some(key) = &ctx.idempotency else { return };
        // A command that appended is answered from the command log, which is
        // written atomically with its events: storing the response again would
        // only cost a statement per command. Only outcomes that appended
        // nothing need remembering here.
        if !outcome.events.is_empty() {
            return;
        }
        match serde_json::to_value(outcome) {
            Ok(body) => self.remember(ctx, key, 200, body).await,
            Err(e) => tracing::error!(error = %e, "cannot serialise idempotent response"),
        }
    }

    pub(super) async fn remember_rejection(&self, ctx: &CommandContext, error: &CommandError) {
        let (
            Some(key),
            CommandError::Rejected {
                code,
                kind,
                message,
            },
        ) = (&ctx.idempotency, error)
        else {
            return;
        };
        // Unavailable dependencies are worth retrying: do not pin them.
        if *kind == ErrorKind::Unavailable {
            return;
        }
        let stored = StoredRejection {
            code: (*code).to_owned(),
            kind: *kind,
            message: message.clone(),
        };
        match serde_json::to_value(&stored) {
            Ok(body) => self.remember(ctx, key, 400, body).await,
            Err(e) => tracing::error!(error = %e, "cannot serialise idempotent rejection"),
        }
    }

    /// Best effort: if this fails, the command log still answers retries.
    async fn remember(
        &self,
        ctx: &CommandContext,
        key: &IdempotencyKey,
        status: i32,
        body: serde_json::Value,
    ) {
        let result = sqlx::query(
            "UPDATE idempotency_keys SET status_code = $3, response = $4, completed_at = now()
             WHERE scope = $1 AND idempotency_key = $2 AND status_code IS NULL",
        )
        .bind(scope(&ctx.actor))
        .bind(&key.key)
        .bind(status)
        .bind(body)
        .execute(&self.inner.bookkeeping)
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record idempotent response; the command log still covers retries");
        }
    }
}

fn scope(actor: &Actor) -> String {
    format!("{}:{}", actor.role, actor.subject)
}
