//! The JSON envelope every Kafka message value carries.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{AggregateKind, DecodeError, Event};
use crate::metadata::EventMetadata;

/// One stored event as published on Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope {
    /// Unique id of the stored event (`events.event_id`).
    pub event_id: Uuid,
    /// `Order`, `Payment` or `Delivery`.
    pub aggregate_type: AggregateKind,
    /// The aggregate's id; also the Kafka message key.
    pub aggregate_id: String,
    /// 1-based position of the event within its aggregate.
    pub sequence: i64,
    /// Position in the store (`events.global_position`).
    pub global_position: i64,
    /// Event type, e.g. `OrderPlaced`.
    pub event_type: String,
    /// Event schema version, e.g. `1`.
    pub event_version: String,
    /// The event payload in its current version (upcast where needed).
    pub payload: serde_json::Value,
    /// Who caused the event and in which flow (command, correlation and causation ids, actor).
    pub metadata: EventMetadata,
    /// Commit time in the store.
    pub recorded_at: DateTime<Utc>,
}

impl EventEnvelope {
    /// The Kafka headers the relay sends with this envelope (DESIGN.md,
    /// "Envelope"): ids, positions, type and version, correlation, commit
    /// time — so a consumer can route or filter without parsing the value.
    /// The one mapping; the relay and its tests both use it.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        use crate::topics::headers;
        vec![
            (headers::EVENT_ID, self.event_id.to_string()),
            (headers::AGGREGATE_TYPE, self.aggregate_type.to_string()),
            (headers::AGGREGATE_ID, self.aggregate_id.clone()),
            (headers::SEQUENCE, self.sequence.to_string()),
            (headers::GLOBAL_POSITION, self.global_position.to_string()),
            (headers::EVENT_TYPE, self.event_type.clone()),
            (headers::EVENT_VERSION, self.event_version.clone()),
            (headers::COMMAND_ID, self.metadata.command_id.to_string()),
            (
                headers::CORRELATION_ID,
                self.metadata.correlation_id.to_string(),
            ),
            (
                headers::CAUSATION_ID,
                self.metadata.causation_id.to_string(),
            ),
            (headers::RECORDED_AT, self.recorded_at.to_rfc3339()),
        ]
    }

    /// The event, decoded and checked against the types and versions this
    /// build knows (see [`Event::decode`]).
    pub fn event(&self) -> Result<Event, DecodeError> {
        Event::decode(
            self.aggregate_type,
            &self.event_type,
            &self.event_version,
            &self.payload,
        )
    }
}
