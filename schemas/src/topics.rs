//! Kafka topic names: one topic per aggregate type, `<prefix>.<plural>`.

use crate::events::AggregateKind;

/// Default topic prefix.
pub const DEFAULT_PREFIX: &str = "ordertrail";

/// The topic an aggregate type's events are published on.
pub fn topic_for(prefix: &str, kind: AggregateKind) -> String {
    format!("{prefix}.{}", kind.topic_suffix())
}

/// All topics under a prefix, in a fixed order.
pub fn all_topics(prefix: &str) -> Vec<String> {
    AggregateKind::ALL
        .iter()
        .map(|k| topic_for(prefix, *k))
        .collect()
}

/// Kafka header names carrying the envelope's facts.
pub mod headers {
    /// The event's unique id (UUID).
    pub const EVENT_ID: &str = "event_id";
    /// `order`, `payment` or `delivery`.
    pub const AGGREGATE_TYPE: &str = "aggregate_type";
    /// The aggregate's id (UUID); also the message key.
    pub const AGGREGATE_ID: &str = "aggregate_id";
    /// 1-based position of the event within its aggregate.
    pub const SEQUENCE: &str = "sequence";
    /// Position of the event in the store (`events.global_position`).
    pub const GLOBAL_POSITION: &str = "global_position";
    /// Event type, e.g. `OrderPlaced`.
    pub const EVENT_TYPE: &str = "event_type";
    /// Event schema version, e.g. `1`.
    pub const EVENT_VERSION: &str = "event_version";
    /// Id shared by everything one business flow caused.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// Id of the message that caused the command.
    pub const CAUSATION_ID: &str = "causation_id";
    /// Id of the command that appended the event.
    pub const COMMAND_ID: &str = "command_id";
    /// Commit time in the store (RFC 3339).
    pub const RECORDED_AT: &str = "recorded_at";
}
