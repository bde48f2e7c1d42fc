//! librdkafka's mock cluster as the embedded Kafka-protocol broker of local
//! runs, benchmarks and tests. Development scaffolding: production talks to a
//! real Kafka, where the relay creates its topics through the admin API.

use anyhow::{Context, Result};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, ProducerContext};

/// Brokers of the embedded cluster the launcher hosts.
pub const MOCK_BROKERS: i32 = 3;

/// An embedded broker owned by its host process (its ports are ephemeral:
/// the host hands [`MockCluster::bootstrap_servers`] on).
pub type Mock = MockCluster<'static, DefaultProducerContext>;

/// Host a mock cluster of `brokers` brokers with `topics` created on it.
pub fn host(brokers: i32, topics: &[String], partitions: i32) -> Result<Mock> {
    let mock = MockCluster::new(brokers).context("start the embedded Kafka-protocol broker")?;
    create_topics(&mock, topics, partitions).context("create topics on the embedded broker")?;
    Ok(mock)
}

/// The mock implements no CreateTopics API (the relay's admin request would
/// never be answered), so whoever hosts it creates the relay's topics
/// directly, before the relay starts.
pub fn create_topics<C: ProducerContext>(
    mock: &MockCluster<'_, C>,
    topics: &[String],
    partitions: i32,
) -> Result<(), KafkaError> {
    for topic in topics {
        mock.create_topic(topic, partitions, 1)?;
    }
    Ok(())
}

/// Take every broker of `mock` down, or bring them back (fault drills).
pub fn set_down<C: ProducerContext>(
    mock: &MockCluster<'_, C>,
    brokers: i32,
    down: bool,
) -> Result<(), KafkaError> {
    for id in 1..=brokers {
        if down {
            mock.broker_down(id)?;
        } else {
            mock.broker_up(id)?;
        }
    }
    Ok(())
}
