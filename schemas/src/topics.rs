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
    pub const EVENT_ID: &str = "event_id";
    pub const AGGREGATE_TYPE: &str = "aggregate_type";
    pub const AGGREGATE_ID: &str = "aggregate_id";
    pub const SEQUENCE: &str = "sequence";
    pub const GLOBAL_POSITION: &str = "global_position";
    pub const EVENT_TYPE: &str = "event_type";
    pub const EVENT_VERSION: &str = "event_version";
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const CAUSATION_ID: &str = "causation_id";
    pub const COMMAND_ID: &str = "command_id";
    pub const RECORDED_AT: &str = "recorded_at";
}
