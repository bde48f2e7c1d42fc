//! A Kafka-protocol broker for tests: `KAFKA_BROKERS` when set, otherwise an
//! in-process librdkafka mock cluster (3 brokers). Each test gets its own topic
//! prefix so tests sharing a real broker never see each other's messages.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct TestKafka {
    /// Bootstrap address to hand to every client and binary.
    pub bootstrap: String,
    /// Topic prefix unique to this test.
    pub prefix: String,
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
}

impl std::fmt::Debug for TestKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKafka")
            .field("bootstrap", &self.bootstrap)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Brokers in the mock cluster.
pub const MOCK_BROKERS: i32 = 3;

impl TestKafka {
    pub fn start() -> Self {
        Self::start_with_prefix(&format!(
            "t{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ))
    }

    /// A broker (a fresh mock cluster unless `KAFKA_BROKERS` names one)
    /// with a given topic prefix: a platform restarted on a new broker.
    pub fn start_with_prefix(prefix: &str) -> Self {
        let prefix = prefix.to_owned();
        match std::env::var("KAFKA_BROKERS") {
            Ok(bootstrap) if !bootstrap.trim().is_empty() => Self {
                bootstrap,
                prefix,
                mock: None,
            },
            _ => {
                let mock = MockCluster::new(MOCK_BROKERS).expect("start librdkafka mock cluster");
                Self {
                    bootstrap: mock.bootstrap_servers(),
                    prefix,
                    mock: Some(mock),
                }
            }
        }
    }

    /// Whether this is the in-process mock cluster (outage tests need it).
    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// The mock cluster, for tests that need to create topics or inject faults.
    pub fn mock(&self) -> Option<&MockCluster<'static, DefaultProducerContext>> {
        self.mock.as_ref()
    }

    /// Create `topics` with `partitions` partitions on the mock cluster (it
    /// has no CreateTopics API: its host creates them). A real broker is left
    /// alone: the relay creates its topics there through the admin API.
    pub fn create_topics(&self, topics: &[String], partitions: i32) {
        if let Some(mock) = &self.mock {
            for topic in topics {
                mock.create_topic(topic, partitions, 1)
                    .expect("create a topic on the mock cluster");
            }
        }
    }

    /// Take every broker down (mock only): clients see an outage.
    pub fn stop_brokers(&self) {
        if let Some(mock) = &self.mock {
            for id in 1..=MOCK_BROKERS {
                mock.broker_down(id).expect("broker down");
            }
        }
    }

    /// Bring every broker back (mock only).
    pub fn start_brokers(&self) {
        if let Some(mock) = &self.mock {
            for id in 1..=MOCK_BROKERS {
                mock.broker_up(id).expect("broker up");
            }
        }
    }
}
