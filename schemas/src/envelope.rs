//! The JSON envelope every Kafka message value carries.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::AggregateKind;
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
    pub metadata: EventMetadata,
    /// Commit time in the store.
    pub recorded_at: DateTime<Utc>,
}

impl EventEnvelope {
    /// Decode the payload as the event type of this aggregate.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        serde_json::from_value(self.payload.clone())
    }
}
