//! The Kafka side: consumer configuration, the rebalance callback that hands
//! assignments to the runtime loop, high watermarks from librdkafka's
//! statistics, and seeking to stored positions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::Offset;
use sqlx::PgPool;
use tokio::sync::mpsc::UnboundedSender;

use super::{RuntimeConfig, RuntimeError, checkpoint};

/// A change of the partitions this instance owns.
#[derive(Debug)]
pub(super) enum Assignment {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// High watermark per partition, from librdkafka's statistics.
#[derive(Clone, Default)]
pub(super) struct Watermarks(Arc<Mutex<HashMap<(String, i32), i64>>>);

impl Watermarks {
    pub(super) fn snapshot(&self) -> HashMap<(String, i32), i64> {
        match self.0.lock() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, stats: &Statistics) {
        let mut map = match self.0.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal UA partition and unknown offsets.
                if *partition >= 0 && p.hi_offset >= 0 && p.desired {
                    map.insert((topic.clone(), *partition), p.hi_offset);
                }
            }
        }
    }
}

/// Consumer context: forwards rebalances to the runtime loop and keeps the
/// high watermarks.
pub(super) struct ProjectorContext {
    projector: &'static str,
    assignments: UnboundedSender<Assignment>,
    watermarks: Watermarks,
}

impl ProjectorContext {
    pub(super) fn new(projector: &'static str, assignments: UnboundedSender<Assignment>) -> Self {
        Self {
            projector,
            assignments,
            watermarks: Watermarks::default(),
        }
    }

    pub(super) fn watermarks(&self) -> Watermarks {
        self.watermarks.clone()
    }
}

fn partitions_of(tpl: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for ProjectorContext {
    fn stats(&self, statistics: Statistics) {
        self.watermarks.update(&statistics);
    }
}

impl ConsumerContext for ProjectorContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let message = match rebalance {
            Rebalance::Assign(tpl) => Assignment::Assigned(partitions_of(tpl)),
            Rebalance::Revoke(tpl) => Assignment::Revoked(partitions_of(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(projector = self.projector, error = %e, "rebalance error");
                return;
            }
        };
        // The receiver only goes away when the runtime stops.
        let _ = self.assignments.send(message);
    }
}

pub(super) fn create(
    config: &RuntimeConfig,
    context: ProjectorContext,
) -> KafkaResult<StreamConsumer<ProjectorContext>> {
    ordertrail_platform::kafka::consumer_config(
        &config.brokers,
        &config.group_id,
        config.fetch_wait,
    )
    .set("statistics.interval.ms", "1000")
    .create_with_context(context)
}

/// Partitions assigned but not yet positioned at their stored offset.
#[derive(Default)]
pub(super) struct PendingSeeks {
    pending: HashSet<(String, i32)>,
    /// Last offset received per partition.
    received: HashMap<(String, i32), i64>,
}

impl PendingSeeks {
    pub(super) fn assigned(&mut self, partitions: Vec<(String, i32)>) {
        for p in partitions {
            self.received.remove(&p);
            self.pending.insert(p);
        }
    }

    pub(super) fn revoked(&mut self, partitions: &[(String, i32)]) {
        for p in partitions {
            self.pending.remove(p);
            self.received.remove(p);
        }
    }

    pub(super) fn received(&mut self, topic: &str, partition: i32, offset: i64) {
        if self.pending.is_empty() {
            return;
        }
        let key = (topic.to_owned(), partition);
        if self.pending.contains(&key) {
            self.received.insert(key, offset);
        }
    }

    /// Seek every pending partition to its stored position. A seek that
    /// librdkafka refuses (partition not fetching yet) is retried later;
    /// correctness never depends on it, since messages below the stored
    /// position are skipped in the batch transaction.
    pub(super) async fn retry(
        &mut self,
        pool: &PgPool,
        projector: &'static str,
        consumer: &StreamConsumer<super::ProjectorContext>,
    ) -> Result<(), RuntimeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut partitions: Vec<(String, i32)> = self.pending.iter().cloned().collect();
        partitions.sort();
        let stored = checkpoint::read_positions(pool, projector, &partitions)
            .await
            .map_err(RuntimeError::db("read positions for seek"))?;
        for p in partitions {
            let target = stored.get(&p).copied().unwrap_or(0);
            let already = self.received.get(&p).is_some_and(|o| *o + 1 >= target);
            if target == 0 || already {
                self.pending.remove(&p);
                continue;
            }
            match consumer.seek(
                &p.0,
                p.1,
                Offset::Offset(target),
                Duration::from_millis(500),
            ) {
                Ok(()) => {
                    tracing::info!(projector, topic = %p.0, partition = p.1, offset = target, "seeked to stored position");
                    self.pending.remove(&p);
                }
                Err(e) => {
                    tracing::debug!(projector, topic = %p.0, partition = p.1, error = %e, "seek not possible yet; will retry");
                }
            }
        }
        Ok(())
    }
}
