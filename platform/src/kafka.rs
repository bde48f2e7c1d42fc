//! The Kafka consumer settings every Ordertrail consumer group shares (the
//! projectors and the saga).

use std::time::Duration;

use rdkafka::ClientConfig;

/// How long the broker may hold a fetch that found nothing.
///
/// A real broker answers a held fetch as soon as data arrives (`fetch.min.bytes`
/// is 1), so this only sets how often an idle consumer asks: 100 times a
/// second at 10 ms, negligible for a broker. librdkafka's mock cluster, which
/// the tests and the local launcher host, instead holds every empty fetch for
/// the whole wait and does not deliver what is produced meanwhile, so there
/// this is added delivery latency.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_millis(10);

/// A consumer of `group_id` whose positions live in PostgreSQL, never in
/// Kafka: no auto-commit, no offset store, start from the earliest offset
/// when nothing is stored; fast session and metadata settings so a crashed
/// instance's partitions move within seconds.
pub fn consumer_config(brokers: &str, group_id: &str, fetch_wait: Duration) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set(
            "fetch.wait.max.ms",
            fetch_wait.as_millis().max(1).to_string(),
        );
    config
}
