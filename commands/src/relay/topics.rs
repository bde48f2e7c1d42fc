//! Topic creation at start-up through the Kafka admin API.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::ProducerContext;

use super::RelayError;

/// What happened to the topics at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicsOutcome {
    /// Created now or already there.
    Ready,
    /// The broker does not implement CreateTopics (librdkafka's mock cluster
    /// does not), but every topic already exists.
    AlreadyPresentWithoutAdminApi,
}

/// A start-up failure worth retrying (broker unreachable) or not.
#[derive(Debug)]
pub(crate) enum TopicsFailure {
    Unreachable(KafkaError),
    Fatal(RelayError),
}

fn admin_client(brokers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Checking for a topic must never create it.
        .set("allow.auto.create.topics", "false")
        .create()
}

/// Create `topics` with `partitions` partitions each; an existing topic is fine.
/// A broker without the CreateTopics API (the librdkafka mock cluster) is
/// accepted only when every topic already exists, created by whoever hosts it
/// (see [`create_on_mock_cluster`]); otherwise start-up fails with a clear error.
pub(crate) async fn ensure(
    brokers: &str,
    topics: &[String],
    partitions: i32,
    replication_factor: i32,
    timeout: Duration,
) -> Result<TopicsOutcome, TopicsFailure> {
    let admin = admin_client(brokers).map_err(|e| TopicsFailure::Fatal(RelayError::Kafka(e)))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication_factor)))
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let unsupported = match admin.create_topics(new.iter(), &options).await {
        Ok(results) => {
            let mut unsupported = false;
            for result in results {
                match result {
                    Ok(topic) => tracing::info!(%topic, partitions, "topic created"),
                    Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        tracing::debug!(%topic, "topic already exists");
                    }
                    Err((_, RDKafkaErrorCode::UnsupportedFeature))
                    | Err((_, RDKafkaErrorCode::UnsupportedVersion)) => unsupported = true,
                    Err((topic, code)) => {
                        return Err(TopicsFailure::Fatal(RelayError::Topics {
                            topics: vec![topic],
                            reason: code.to_string(),
                        }));
                    }
                }
            }
            unsupported
        }
        Err(KafkaError::AdminOp(
            RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion,
        )) => true,
        Err(e) => return Err(TopicsFailure::Unreachable(e)),
    };
    if !unsupported {
        return Ok(TopicsOutcome::Ready);
    }
    let metadata = admin
        .inner()
        .fetch_metadata(None, timeout)
        .map_err(TopicsFailure::Unreachable)?;
    let missing: Vec<String> = topics
        .iter()
        .filter(|t| {
            !metadata
                .topics()
                .iter()
                .any(|m| m.name() == t.as_str() && m.error().is_none())
        })
        .cloned()
        .collect();
    if missing.is_empty() {
        tracing::warn!(
            ?topics,
            "the broker does not support CreateTopics (librdkafka mock cluster?); using the topics \
             that already exist"
        );
        Ok(TopicsOutcome::AlreadyPresentWithoutAdminApi)
    } else {
        Err(TopicsFailure::Fatal(RelayError::Topics {
            topics: missing,
            reason: "the broker does not support the CreateTopics admin API (librdkafka's mock \
                     cluster does not implement it) and the topics do not exist; whoever hosts \
                     the mock cluster must create them first"
                .to_owned(),
        }))
    }
}

/// For the processes that host librdkafka's mock cluster (the local launcher
/// and the test harness): the mock implements no CreateTopics API, so the host
/// creates the relay's topics directly before starting the relay.
pub fn create_on_mock_cluster<C: ProducerContext>(
    mock: &MockCluster<'_, C>,
    topics: &[String],
    partitions: i32,
) -> Result<(), KafkaError> {
    for topic in topics {
        mock.create_topic(topic, partitions, 1)?;
    }
    Ok(())
}
