//! JSON Schema documents of the wire contract, generated from the Rust types.
//!
//! Every event type in every version it was ever written in has one document,
//! `json/<aggregate>/<EventType>.v<version>.json`, describing the payload as
//! stored in `events.payload` and published as the envelope's `payload` (the
//! event's fields plus the `"type"` tag). The envelope has `json/envelope.json`.
//! The documents are checked in; `cargo run -p ordertrail-schemas --bin
//! generate-schemas` rewrites them and a test fails when they drift from the code.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::events::delivery::legacy;
use crate::events::order::legacy_order as order_legacy;
use crate::{AggregateKind, DeliveryEvent, EventEnvelope, OrderEvent, PaymentEvent};

/// The schema of one event type in one version.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// The event type, e.g. `OrderPlaced`.
    pub event_type: &'static str,
    /// The payload version this schema describes, e.g. `2`.
    pub version: &'static str,
    /// The JSON Schema document (draft 2020-12) of the payload.
    pub schema: Value,
}

fn root_schema<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

impl EventSchema {
    /// The schema of payload struct `T` published as `event_type` v`version`.
    pub fn of<T: JsonSchema>(event_type: &'static str, version: &'static str) -> Self {
        let mut schema = root_schema::<T>();
        if let Value::Object(doc) = &mut schema {
            doc.insert("title".into(), json!(event_type));
            doc.insert("x-event-type".into(), json!(event_type));
            doc.insert("x-event-version".into(), json!(version));
            if let Some(Value::Object(props)) = doc.get_mut("properties") {
                props.insert(
                    "type".into(),
                    json!({ "description": "The event type tag.", "const": event_type }),
                );
            }
            match doc.get_mut("required") {
                Some(Value::Array(required)) => required.insert(0, json!("type")),
                _ => {
                    doc.insert("required".into(), json!(["type"]));
                }
            }
        }
        Self {
            event_type,
            version,
            schema,
        }
    }
}

/// The folder of an aggregate type's event schemas under `json/`.
pub fn aggregate_dir(kind: AggregateKind) -> &'static str {
    match kind {
        AggregateKind::Order => "order",
        AggregateKind::Payment => "payment",
        AggregateKind::Delivery => "delivery",
    }
}

/// Every event schema, current and earlier versions, by aggregate type.
pub fn event_schemas() -> Vec<(AggregateKind, EventSchema)> {
    let mut all = Vec::new();
    let current = [
        (AggregateKind::Order, OrderEvent::json_schemas()),
        (AggregateKind::Payment, PaymentEvent::json_schemas()),
        (AggregateKind::Delivery, DeliveryEvent::json_schemas()),
    ];
    for (kind, schemas) in current {
        all.extend(schemas.into_iter().map(|s| (kind, s)));
    }
    // Versions no writer produces any more; stored events may still carry them.
    all.push((
        AggregateKind::Delivery,
        EventSchema::of::<legacy::RiderLocationReportedV1>("RiderLocationReported", "1"),
    ));
    all.push((
        AggregateKind::Delivery,
        EventSchema::of::<legacy::DeliveryRequestedV1>("DeliveryRequested", "1"),
    ));
    all.push((
        AggregateKind::Order,
        EventSchema::of::<order_legacy::OrderPlacedV1>("OrderPlaced", "1"),
    ));
    all.push((
        AggregateKind::Payment,
        EventSchema::of::<crate::events::payment::legacy_payment::PaymentCapturedV1>(
            "PaymentCaptured",
            "1",
        ),
    ));
    all.push((
        AggregateKind::Payment,
        EventSchema::of::<crate::events::payment::legacy_payment::PaymentRefundedV1>(
            "PaymentRefunded",
            "1",
        ),
    ));
    all
}

/// The envelope's schema (its `payload` is any event payload, see above).
pub fn envelope_schema() -> Value {
    let mut schema = root_schema::<EventEnvelope>();
    if let Value::Object(doc) = &mut schema {
        doc.insert("title".into(), json!("EventEnvelope"));
    }
    schema
}

/// Path of an event schema relative to [`schema_dir`].
pub fn event_schema_path(kind: AggregateKind, event_type: &str, version: &str) -> PathBuf {
    Path::new(aggregate_dir(kind)).join(format!("{event_type}.v{version}.json"))
}

/// Every document with its path relative to [`schema_dir`], in a fixed order.
pub fn documents() -> Vec<(PathBuf, Value)> {
    let mut docs = vec![(PathBuf::from("envelope.json"), envelope_schema())];
    for (kind, s) in event_schemas() {
        docs.push((event_schema_path(kind, s.event_type, s.version), s.schema));
    }
    docs
}

/// A document as checked in: pretty JSON with a final newline.
pub fn render(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_default();
    text.push('\n');
    text
}

/// `schemas/json` in this source tree.
pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("json")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn checked_in(dir: &Path, base: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read schemas/json") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                checked_in(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.insert(path.strip_prefix(base).expect("under base").to_path_buf());
            }
        }
    }

    /// Fails when the checked-in documents differ from what the code generates:
    /// run `cargo run -p ordertrail-schemas --bin generate-schemas` and review
    /// the diff (a changed schema of a published version is a breaking change).
    #[test]
    fn checked_in_json_schemas_match_the_code() {
        let dir = schema_dir();
        let docs = documents();
        let mut stale = Vec::new();
        for (path, doc) in &docs {
            let on_disk = std::fs::read_to_string(dir.join(path)).unwrap_or_default();
            if on_disk != render(doc) {
                stale.push(path.display().to_string());
            }
        }
        let generated: BTreeSet<PathBuf> = docs.iter().map(|(p, _)| p.clone()).collect();
        let mut on_disk = BTreeSet::new();
        checked_in(&dir, &dir, &mut on_disk);
        let orphans: Vec<_> = on_disk.difference(&generated).collect();
        assert!(
            stale.is_empty() && orphans.is_empty(),
            "schemas/json drifted from the code: changed or missing {stale:?}, not generated \
             {orphans:?}; run `cargo run -p ordertrail-schemas --bin generate-schemas`"
        );
    }

    #[test]
    fn every_event_type_and_version_has_a_schema() {
        let schemas = event_schemas();
        let has = |t: &str, v: &str| {
            schemas
                .iter()
                .any(|(_, s)| s.event_type == t && s.version == v)
        };
        for (t, v) in OrderEvent::TYPES
            .iter()
            .chain(PaymentEvent::TYPES)
            .chain(DeliveryEvent::TYPES)
        {
            assert!(has(t, v), "{t} v{v}");
        }
        assert!(has("RiderLocationReported", "1"));
        assert!(has("RiderLocationReported", "2"));
    }
}
