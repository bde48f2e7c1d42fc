//! Topic creation at start-up through the Kafka admin API.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::RelayError;

/// What happened to the topics at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicsOutcome {
    /// Every topic already existed.
    Existing,
    /// The missing ones were created through the admin API.
    Created(Vec<String>),
}

/// A start-up failure worth retrying (broker unreachable or not answering) or not.
#[derive(Debug)]
pub(crate) enum TopicsFailure {
    Retry(KafkaError),
    Fatal(RelayError),
}

fn admin_client(brokers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Looking a topic up must never create it.
        .set("allow.auto.create.topics", "false")
        .create()
}

/// Make sure `topics` exist: look them up, and create the missing ones with
/// `partitions` partitions through the admin API (an existing topic, also one
/// created concurrently by another relay, is fine).
///
/// librdkafka's mock cluster does not implement CreateTopics: the request is
/// never answered and times out. Whoever hosts the mock therefore creates the
/// topics first (the launcher's `Stack`, the testkit); the lookup then finds
/// them and no admin request is made.
pub(crate) async fn ensure(
    brokers: &str,
    topics: &[String],
    partitions: i32,
    replication_factor: i32,
    timeout: Duration,
) -> Result<TopicsOutcome, TopicsFailure> {
    // The metadata request blocks its thread (up to `timeout` while the
    // broker is unreachable): off the runtime, so time-outs around this
    // future (the relay's lease) and other tasks keep running.
    let wanted = topics.to_vec();
    let brokers = brokers.to_owned();
    let (admin, missing) = tokio::task::spawn_blocking(move || {
        let admin =
            admin_client(&brokers).map_err(|e| TopicsFailure::Fatal(RelayError::Kafka(e)))?;
        let metadata = admin
            .inner()
            .fetch_metadata(None, timeout)
            .map_err(TopicsFailure::Retry)?;
        let missing: Vec<String> = wanted
            .into_iter()
            .filter(|t| {
                !metadata
                    .topics()
                    .iter()
                    .any(|m| m.name() == t.as_str() && m.error().is_none())
            })
            .collect();
        Ok::<_, TopicsFailure>((admin, missing))
    })
    .await
    .map_err(|_| TopicsFailure::Retry(KafkaError::Canceled))??;
    if missing.is_empty() {
        tracing::debug!(?topics, "topics exist");
        return Ok(TopicsOutcome::Existing);
    }
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication_factor)))
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = match admin.create_topics(new.iter(), &options).await {
        Ok(results) => results,
        Err(e) => {
            tracing::warn!(
                error = %e,
                ?missing,
                "the broker is reachable but did not create the missing topics (librdkafka's mock \
                 cluster does not implement CreateTopics: its host must create them); retrying"
            );
            return Err(TopicsFailure::Retry(e));
        }
    };
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(topic) => {
                tracing::info!(%topic, partitions, "topic created");
                created.push(topic);
            }
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(%topic, "topic already exists");
            }
            Err((topic, code)) => {
                return Err(TopicsFailure::Fatal(RelayError::Topics {
                    topics: vec![topic],
                    reason: code.to_string(),
                }));
            }
        }
    }
    Ok(TopicsOutcome::Created(created))
}
