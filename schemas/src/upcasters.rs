//! Upcasters: stored events of an earlier version turned into the current one.
//!
//! The command service registers [`all`] with its cqrs-es event store (aggregates
//! load old events in the current shape); the relay and replay call [`upcast`]
//! so the topics and rebuilt read models only ever see current versions.
//! Upcasters are applied in the order [`all`] lists them, oldest version first.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

use crate::DeliveryId;
use crate::privacy::{LEGACY_PREFIX, legacy_dropoff_code_hash, payment_method_ref};

/// Version 1 → 2 of an event that gained one optional field: the field is
/// added as `null` (unknown / not recorded then).
#[derive(Debug, Clone, Copy)]
pub struct AddedOptionalField {
    /// The event type this upcaster applies to.
    pub event_type: &'static str,
    /// The field version 2 added.
    pub field: &'static str,
}

impl EventUpcaster for AddedOptionalField {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == self.event_type && event_version == "1"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Value::Object(payload) = &mut event.payload {
            payload.entry(self.field).or_insert(Value::Null);
        }
        event.event_version = "2".to_owned();
        event
    }
}

/// `RiderLocationReported` v1 → v2: adds `accuracy_m: null` (unknown).
pub const RIDER_LOCATION_REPORTED_V1_TO_V2: AddedOptionalField = AddedOptionalField {
    event_type: "RiderLocationReported",
    field: "accuracy_m",
};
/// `PaymentCaptured` v1 → v2: adds `override_reason: null` (captured after delivery).
pub const PAYMENT_CAPTURED_V1_TO_V2: AddedOptionalField = AddedOptionalField {
    event_type: "PaymentCaptured",
    field: "override_reason",
};
/// `PaymentRefunded` v1 → v2: adds `allocation: null` (not allocated by component).
pub const PAYMENT_REFUNDED_V1_TO_V2: AddedOptionalField = AddedOptionalField {
    event_type: "PaymentRefunded",
    field: "allocation",
};

/// `DeliveryRequested` v1 → v2: the drop-off code in clear becomes
/// `dropoff_code_hash` = [`legacy_dropoff_code_hash`] (the key is a server
/// secret an upcaster does not have; the clear code was in these events
/// already, so the unkeyed form loses nothing). The clear code is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryRequestedV1ToV2;

impl EventUpcaster for DeliveryRequestedV1ToV2 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "DeliveryRequested" && event_version == "1"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Value::Object(payload) = &mut event.payload {
            let delivery_id = payload
                .get("delivery_id")
                .cloned()
                .and_then(|v| serde_json::from_value::<DeliveryId>(v).ok());
            let code = payload.remove("dropoff_code");
            let hash = match (delivery_id, code) {
                (Some(id), Some(Value::String(code))) => legacy_dropoff_code_hash(id, &code),
                // Unreadable: no code can match it.
                _ => format!("{LEGACY_PREFIX}unknown"),
            };
            payload.insert("dropoff_code_hash".to_owned(), Value::String(hash));
        }
        event.event_version = "2".to_owned();
        event
    }
}

/// `OrderPlaced` v1 → v2: `payment_method.card_token` becomes
/// `payment_method.payment_method_ref` = [`payment_method_ref`] of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderPlacedV1ToV2;

impl EventUpcaster for OrderPlacedV1ToV2 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "OrderPlaced" && event_version == "1"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Some(Value::Object(method)) = event.payload.get_mut("payment_method")
            && let Some(Value::String(token)) = method.remove("card_token")
        {
            method.insert(
                "payment_method_ref".to_owned(),
                Value::String(payment_method_ref(&token)),
            );
        }
        event.event_version = "2".to_owned();
        event
    }
}

/// Every upcaster, in the order they must be applied.
pub fn all() -> Vec<Box<dyn EventUpcaster>> {
    vec![
        Box::new(RIDER_LOCATION_REPORTED_V1_TO_V2),
        Box::new(DeliveryRequestedV1ToV2),
        Box::new(OrderPlacedV1ToV2),
        Box::new(PAYMENT_CAPTURED_V1_TO_V2),
        Box::new(PAYMENT_REFUNDED_V1_TO_V2),
    ]
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

    fn stored(name: &str) -> Value {
        let text = match name {
            "DeliveryRequested" => include_str!("../fixtures/DeliveryRequested.v1.json"),
            "OrderPlaced" => include_str!("../fixtures/OrderPlaced.v1.json"),
            "PaymentCaptured" => include_str!("../fixtures/PaymentCaptured.v1.json"),
            "PaymentRefunded" => include_str!("../fixtures/PaymentRefunded.v1.json"),
            other => panic!("no v1 fixture of {other}"),
        };
        serde_json::from_str(text).expect("fixture is JSON")
    }

    /// The payload of the stored v1 `event_type`, upcast to version 2.
    fn upcast_v1(event_type: &str) -> Value {
        let row = stored(event_type);
        let (version, payload) = upcast_payload(event_type, "1".to_owned(), row["payload"].clone());
        assert_eq!(version, "2", "{event_type}");
        payload
    }

    #[test]
    fn a_stored_v1_delivery_request_reads_as_v2_without_the_code() {
        let row = stored("DeliveryRequested");
        let v1: crate::events::delivery::legacy::DeliveryRequestedV1 =
            serde_json::from_value(row["payload"].clone()).expect("fixture is a v1 payload");
        let payload = upcast_v1("DeliveryRequested");
        assert!(payload.get("dropoff_code").is_none());
        assert!(!payload.to_string().contains(&v1.dropoff_code));
        match serde_json::from_value::<DeliveryEvent>(payload).expect("v2 payload") {
            DeliveryEvent::DeliveryRequested(e) => {
                assert_eq!(
                    e.dropoff_code_hash,
                    legacy_dropoff_code_hash(v1.delivery_id, &v1.dropoff_code)
                );
                assert_eq!((e.order_id, e.requested_at), (v1.order_id, v1.requested_at));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_stored_v1_order_placed_reads_as_v2_without_the_card_token() {
        let payload = upcast_v1("OrderPlaced");
        assert!(!payload.to_string().contains("tok_visa"));
        match serde_json::from_value::<crate::OrderEvent>(payload).expect("v2 payload") {
            crate::OrderEvent::OrderPlaced(e) => assert_eq!(
                e.payment_method,
                crate::events::PaymentMethod::Card {
                    payment_method_ref: payment_method_ref("tok_visa")
                }
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_stored_v1_capture_reads_as_v2_without_override() {
        let payload = upcast_v1("PaymentCaptured");
        match serde_json::from_value::<crate::PaymentEvent>(payload).expect("v2 payload") {
            crate::PaymentEvent::PaymentCaptured(e) => {
                assert_eq!(e.override_reason, None);
                assert_eq!(e.amount.amount, 3_099);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_stored_v1_refund_reads_as_v2_without_allocation() {
        let payload = upcast_v1("PaymentRefunded");
        match serde_json::from_value::<crate::PaymentEvent>(payload).expect("v2 payload") {
            crate::PaymentEvent::PaymentRefunded(e) => {
                assert_eq!(e.allocation, None);
                assert_eq!(e.amount.amount, 500);
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
        assert!(!RIDER_LOCATION_REPORTED_V1_TO_V2.can_upcast("OrderPlaced", "1"));
    }
}
