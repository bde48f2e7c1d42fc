//! Who asks ([`CommandContext`]) and what a command did ([`CommandOutcome`]).

use ordertrail_schemas::{Actor, AggregateKind, EventMetadata};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of command ids derived from idempotency keys.
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7274_7261_696c_0000_0000_0002);

/// Who asks, and how to recognise the same request again.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub request_id: String,
    command_id: Uuid,
    pub(super) idempotency: Option<IdempotencyKey>,
    correlation_id: Uuid,
    pub(super) causation_id: Option<Uuid>,
}

/// An `Idempotency-Key` with the fingerprint of the request that used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// Hash of what makes the request the same request (method, path, body).
    pub request_hash: String,
}

impl CommandContext {
    /// A one-off command with a fresh, time-ordered id (UUIDv7: the
    /// `command_log` primary key takes it at its right edge).
    pub fn new(actor: Actor, request_id: impl Into<String>) -> Self {
        Self {
            actor,
            request_id: request_id.into(),
            command_id: Uuid::now_v7(),
            idempotency: None,
            // A new business flow: time-ordered (UUIDv7), so the audit index
            // `events_correlation` takes a flow's events near its right edge
            // (flows live minutes) instead of on a random leaf of an index as
            // large as the store.
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        }
    }

    /// A request carrying an `Idempotency-Key`: the command id is derived from
    /// the actor and the key, so every retry is the same command. A key that
    /// is a UUIDv7 (what our clients send) lends the id its timestamp
    /// ([`ordertrail_schemas::with_time_of`]), so the command's `command_log`
    /// entry lands at the index's right edge; any other key gives a random
    /// place.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        let name = format!(
            "{}\u{0}{}\u{0}{}",
            self.actor.role, self.actor.subject, key.key
        );
        let hashed = Uuid::new_v5(&COMMAND_ID_NAMESPACE, name.as_bytes());
        self.command_id = Uuid::try_parse(&key.key)
            .map_or(hashed, |k| ordertrail_schemas::with_time_of(k, hashed));
        self.idempotency = Some(key);
        self
    }

    /// A command whose id the caller determines (the saga derives it from the
    /// event that caused it), with that event's correlation and causation.
    pub fn caused_by(mut self, command_id: Uuid, correlation_id: Uuid, causation_id: Uuid) -> Self {
        self.command_id = command_id;
        self.correlation_id = correlation_id;
        self.causation_id = Some(causation_id);
        self
    }

    pub fn command_id(&self) -> Uuid {
        self.command_id
    }

    /// An id derived from this command (e.g. the id of the order a
    /// `PlaceOrder` creates), stable across retries of the same command and
    /// time-ordered when the command id is
    /// ([`ordertrail_schemas::derived_id`]).
    pub fn derived_id(&self, what: &str) -> Uuid {
        ordertrail_schemas::derived_id(self.command_id, what.as_bytes())
    }

    pub(super) fn is_repeatable(&self) -> bool {
        self.idempotency.is_some() || self.causation_id.is_some()
    }

    pub(super) fn metadata(&self) -> EventMetadata {
        EventMetadata {
            command_id: self.command_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id.unwrap_or(self.command_id),
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// One event appended by a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppendedEvent {
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The event payload (see the JSON Schemas under `schemas/json/`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandOutcome {
    #[schema(value_type = String, example = "Order")]
    pub aggregate_type: AggregateKind,
    pub aggregate_id: String,
    /// The aggregate's version after the command (its last sequence).
    pub version: i64,
    pub events: Vec<AppendedEvent>,
    /// True when this answers a repeated command from the first execution.
    #[serde(default)]
    pub replayed: bool,
}

impl CommandOutcome {
    /// Whether the command appended an event of this type.
    pub fn has_event(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e.event_type == event_type)
    }
}

#[cfg(test)]
mod tests {
    use ordertrail_schemas::ActorRole;

    use super::*;

    fn keyed(subject: &str, key: &str) -> Uuid {
        let actor = Actor {
            subject: subject.into(),
            role: ActorRole::Customer,
        };
        CommandContext::new(actor, "req")
            .with_idempotency_key(IdempotencyKey {
                key: key.into(),
                request_hash: "h".into(),
            })
            .command_id()
    }

    #[test]
    fn a_time_ordered_key_gives_a_time_ordered_command_id_and_any_key_a_stable_one() {
        let key = Uuid::now_v7().to_string();
        let id = keyed("c1", &key);
        assert_eq!(id, keyed("c1", &key), "a retry is the same command");
        assert_ne!(
            id,
            keyed("c2", &key),
            "another actor's key is another command"
        );
        assert_eq!(id.get_version_num(), 7, "{id}");
        assert_eq!(
            id.get_timestamp(),
            Uuid::parse_str(&key).unwrap().get_timestamp()
        );

        let free_form = keyed("c1", "order-42-attempt");
        assert_eq!(free_form, keyed("c1", "order-42-attempt"));
        assert_eq!(free_form.get_version_num(), 5, "{free_form}");
        let random = keyed("c1", &Uuid::new_v4().to_string());
        assert_eq!(random.get_version_num(), 5, "{random}");
    }
}
