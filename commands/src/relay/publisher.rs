//! Turning stored events into Kafka messages and producing a batch of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use ordertrail_platform::event_log::StoredEvent;
use ordertrail_schemas::EventEnvelope;
use ordertrail_schemas::topics::topic_for;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::RelayError;

/// One Kafka message, ready to produce.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The envelope of a stored event: payload upcast to the current version,
/// metadata decoded from the stored string map.
pub fn envelope(event: &StoredEvent) -> Result<EventEnvelope, RelayError> {
    event
        .envelope()
        .map_err(|reason| RelayError::Unpublishable {
            event_id: event.event_id,
            position: event.position(),
            reason,
        })
}

/// The message for a stored event on the topics under `prefix`.
pub fn message(prefix: &str, event: &StoredEvent) -> Result<OutgoingMessage, RelayError> {
    let envelope = envelope(event)?;
    let value = serde_json::to_vec(&envelope).map_err(|e| RelayError::Unpublishable {
        event_id: event.event_id,
        position: event.position(),
        reason: e.to_string(),
    })?;
    let headers = envelope.headers();
    Ok(OutgoingMessage {
        topic: topic_for(prefix, envelope.aggregate_type),
        key: envelope.aggregate_id,
        value,
        headers,
    })
}

/// librdkafka's own logs and errors go to tracing at debug level: a broker
/// outage makes it report every failed connection attempt, and the relay
/// reports outages itself, once each. The first client error of an outage is
/// still logged as a warning straight away, long before deliveries time out.
#[derive(Debug, Clone, Default)]
pub struct RelayClientContext {
    outage_reported: Arc<AtomicBool>,
}

impl RelayClientContext {
    /// Called when a batch was delivered: the next client error is news again.
    pub fn broker_reachable(&self) {
        self.outage_reported.store(false, Ordering::Relaxed);
    }

    /// Whether an outage has been reported (and not yet cleared).
    pub fn take_outage_report(&self) -> bool {
        !self.outage_reported.swap(true, Ordering::Relaxed)
    }
}

impl ClientContext for RelayClientContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", fac, "{log_message}");
            }
            _ => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.take_outage_report() {
            tracing::warn!(%error, reason, "Kafka client error; events stay in the store and the relay will retry");
        } else {
            tracing::debug!(%error, reason, "Kafka client error");
        }
    }
}

/// The relay's producer: idempotent, `acks=all`, ordered per partition, keyed
/// with Java's murmur2 partitioner so keys land where other Kafka clients
/// would put them. Nothing relies on broker auto-creation of topics.
pub fn producer(
    brokers: &str,
    delivery_timeout: Duration,
    linger: Duration,
    context: RelayClientContext,
) -> Result<FutureProducer<RelayClientContext>, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("allow.auto.create.topics", "false")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", linger.as_millis().to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .create_with_context(context)
}

/// Produce every message and wait for every delivery report. `Ok` only when
/// all were acknowledged; otherwise the first error (the caller keeps its
/// checkpoint and produces the whole batch again later).
pub async fn publish(
    producer: &FutureProducer<RelayClientContext>,
    messages: &[OutgoingMessage],
) -> Result<PublishReport, KafkaError> {
    let mut pending = Vec::with_capacity(messages.len());
    let mut first_error = None;
    for m in messages {
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (key, value) in &m.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        let mut record = FutureRecord::to(&m.topic)
            .key(&m.key)
            .payload(&m.value)
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    // The local queue is full: let librdkafka drain it.
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        if first_error.is_some() {
            break;
        }
    }
    let mut report = PublishReport::default();
    // Wait for every report, also after a failure, so nothing of this batch is
    // still in flight when the caller retries it.
    for delivery in futures::future::join_all(pending).await {
        match delivery {
            Ok(Ok(_)) => report.delivered += 1,
            Ok(Err((e, _))) => {
                first_error.get_or_insert(e);
            }
            Err(_canceled) => {
                first_error.get_or_insert(KafkaError::Canceled);
            }
        }
    }
    report.acked_at = Some(Utc::now());
    match first_error {
        None => Ok(report),
        Some(e) => Err(e),
    }
}

/// What a successful [`publish`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublishReport {
    pub delivered: u64,
    pub acked_at: Option<chrono::DateTime<Utc>>,
}
