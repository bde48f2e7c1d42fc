//! Upcasters: stored events of an earlier version turned into the current one.
//!
//! The command service registers [`all`] with its cqrs-es event store (aggregates
//! load old events in the current shape); the relay and replay call [`upcast`]
//! so the topics and rebuilt read models only ever see current versions.
//! Upcasters are applied in the order [`all`] lists them, oldest version first.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

/// `RiderLocationReported` v1 → v2: adds `accuracy_m: null` (unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct RiderLocationReportedV1ToV2;

impl EventUpcaster for RiderLocationReportedV1ToV2 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "RiderLocationReported" && event_version == "1"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Value::Object(payload) = &mut event.payload {
            payload.entry("accuracy_m").or_insert(Value::Null);
        }
        event.event_version = "2".to_owned();
        event
    }
}

/// Every upcaster, in the order they must be applied.
pub fn all() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(RiderLocationReportedV1ToV2)]
}

/// Apply every upcaster that matches, in order; current events pass unchanged.
pub fn upcast(mut event: SerializedEvent) -> SerializedEvent {
    for upcaster in all() {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event
}

/// [`upcast`] for a bare payload: returns the current version and payload.
pub fn upcast_payload(event_type: &str, event_version: String, payload: Value) -> (String, Value) {
    // Cheap: only the two strings are built, the payload is moved.
    let event = upcast(SerializedEvent {
        aggregate_id: String::new(),
        sequence: 0,
        aggregate_type: String::new(),
        event_type: event_type.to_owned(),
        event_version,
        payload,
        metadata: Value::Null,
    });
    (event.event_version, event.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeliveryEvent;
    use crate::events::delivery::legacy::RiderLocationReportedV1;

    /// The stored v1 fixture (an `events` row) as written before v2 existed.
    fn fixture() -> Value {
        serde_json::from_str(include_str!("../fixtures/RiderLocationReported.v1.json"))
            .expect("fixture is JSON")
    }

    #[test]
    fn a_stored_v1_rider_location_reads_as_v2() {
        let row = fixture();
        assert_eq!(row["event_version"], "1");
        let v1: RiderLocationReportedV1 =
            serde_json::from_value(row["payload"].clone()).expect("fixture is a v1 payload");
        let (version, payload) = upcast_payload(
            "RiderLocationReported",
            "1".to_owned(),
            row["payload"].clone(),
        );
        assert_eq!(version, "2");
        assert_eq!(payload["accuracy_m"], Value::Null);
        match serde_json::from_value::<DeliveryEvent>(payload).expect("v2 payload") {
            DeliveryEvent::RiderLocationReported(e) => {
                assert_eq!(
                    (e.rider_id, e.location, e.reported_at),
                    (v1.rider_id, v1.location, v1.reported_at)
                );
                assert_eq!(e.accuracy_m, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn current_events_pass_unchanged() {
        let payload = serde_json::json!({"type": "RiderLocationReported", "accuracy_m": 7});
        let (version, out) =
            upcast_payload("RiderLocationReported", "2".to_owned(), payload.clone());
        assert_eq!((version.as_str(), out), ("2", payload));
        assert!(!RiderLocationReportedV1ToV2.can_upcast("OrderPlaced", "1"));
    }
}
