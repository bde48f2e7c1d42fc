//! The Kafka side: consumer configuration, the rebalance callback that hands
//! assignments to the runtime loop, high watermarks from librdkafka's
//! statistics, seeking to stored positions, the incarnation checks (cluster
//! id, and the event at each stored position), and the follow loop.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ordertrail_schemas::{AggregateKind, EventEnvelope};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};
use sqlx::PgPool;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use uuid::Uuid;

use super::batch::{self, RawMessage};
use super::{Context, Failure, Handler, Pass, RuntimeConfig, Stop, checkpoint, failure, store};

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
pub(super) struct KafkaContext {
    consumer: &'static str,
    assignments: UnboundedSender<Assignment>,
    watermarks: Watermarks,
}

impl KafkaContext {
    pub(super) fn new(consumer: &'static str, assignments: UnboundedSender<Assignment>) -> Self {
        Self {
            consumer,
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

impl ClientContext for KafkaContext {
    fn stats(&self, statistics: Statistics) {
        self.watermarks.update(&statistics);
    }
}

impl ConsumerContext for KafkaContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let message = match rebalance {
            Rebalance::Assign(tpl) => Assignment::Assigned(partitions_of(tpl)),
            Rebalance::Revoke(tpl) => Assignment::Revoked(partitions_of(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(consumer = self.consumer, error = %e, "rebalance error");
                return;
            }
        };
        // The receiver only goes away when the runtime stops.
        let _ = self.assignments.send(message);
    }
}

pub(super) fn create(
    config: &RuntimeConfig,
    brokers: &str,
    context: KafkaContext,
) -> KafkaResult<StreamConsumer<KafkaContext>> {
    crate::kafka::consumer_config(brokers, &config.group_id, config.fetch_wait)
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
        consumer: &StreamConsumer<KafkaContext>,
    ) -> Result<(), sqlx::Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut partitions: Vec<(String, i32)> = self.pending.iter().cloned().collect();
        partitions.sort();
        let stored = checkpoint::read_positions(pool, projector, &partitions).await?;
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
                    tracing::info!(consumer = projector, topic = %p.0, partition = p.1, offset = target, "seeked to stored position");
                    self.pending.remove(&p);
                }
                Err(e) => {
                    tracing::debug!(consumer = projector, topic = %p.0, partition = p.1, error = %e, "seek not possible yet; will retry");
                }
            }
        }
        Ok(())
    }
}

/// Which broker cluster `consumer` talks to, if the broker says.
async fn cluster_id(consumer: &Arc<StreamConsumer<KafkaContext>>) -> Option<String> {
    let consumer = Arc::clone(consumer);
    tokio::task::spawn_blocking(move || consumer.client().fetch_cluster_id(Duration::from_secs(5)))
        .await
        .ok()
        .flatten()
}

/// Whether the stored positions still point into the topics the broker has
/// now: for every partition with a stored position, the message just before
/// it must be the event recorded there. A partition whose message is gone
/// or different (topic recreated, broker data lost, retention past it)
/// fails the check. Returns the partitions that failed.
async fn stale_partitions(
    brokers: &str,
    stored: HashMap<(String, i32), (i64, Option<Uuid>)>,
) -> KafkaResult<Vec<(String, i32)>> {
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    let brokers = brokers.to_owned();
    let checked = tokio::task::spawn_blocking(move || -> KafkaResult<Vec<(String, i32)>> {
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set(
                "group.id",
                format!("ordertrail-incarnation-{}", Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false")
            .create()?;
        // A stored position outside what the partition holds now is stale
        // without looking further; the rest are read back and compared.
        let mut stale = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), (next, _)) in &stored {
            let (low, high) = probe.fetch_watermarks(topic, *partition, Duration::from_secs(5))?;
            if next - 1 < low || *next > high {
                stale.push((topic.clone(), *partition));
            } else {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(next - 1))?;
            }
        }
        let stored: HashMap<(String, i32), (i64, Option<Uuid>)> = stored
            .into_iter()
            .filter(|(key, _)| !stale.contains(key))
            .collect();
        if stored.is_empty() {
            return Ok(stale);
        }
        probe.assign(&tpl)?;
        let mut seen: HashMap<(String, i32), Option<Uuid>> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < stored.len() && Instant::now() < deadline {
            match probe.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_owned(), m.partition());
                    let Some((next, _)) = stored.get(&key) else {
                        continue;
                    };
                    if seen.contains_key(&key) {
                        continue;
                    }
                    let id = (m.offset() == next - 1)
                        .then(|| m.payload())
                        .flatten()
                        .and_then(|p| serde_json::from_slice::<EventEnvelope>(p).ok())
                        .map(|e| e.event_id);
                    seen.insert(key, id);
                }
                Some(Err(e)) => {
                    // Offset out of range (auto.offset.reset=error) and the
                    // like: partitions never seen count as stale below.
                    tracing::debug!(error = %e, "incarnation probe error");
                }
                None => {}
            }
        }
        stale.extend(
            stored
                .into_iter()
                .filter(|(key, (_, expected))| match (seen.get(key), expected) {
                    // Positions written before event ids were recorded.
                    (Some(Some(_)), None) => false,
                    (Some(Some(found)), Some(expected)) => found != expected,
                    _ => true,
                })
                .map(|(key, _)| key),
        );
        Ok(stale)
    })
    .await;
    checked.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "incarnation probe task failed");
        Err(rdkafka::error::KafkaError::Canceled)
    })
}

/// Check the stored positions against the broker the consumer is about to
/// follow. Positions of another cluster, or pointing at other events than
/// the ones recorded, are dropped: the caller recovers from the store.
async fn check_incarnation<H: Handler>(
    cx: &Context<'_, H>,
    brokers: &str,
    consumer: &Arc<StreamConsumer<KafkaContext>>,
) -> Result<Option<String>, Failure> {
    let name = cx.handler.name();
    let unavailable = |e: sqlx::Error| Failure::Unavailable(format!("database: {e}"));
    let stored = store::store_position(&cx.pool, name)
        .await
        .map_err(unavailable)?;
    let cluster = cluster_id(consumer).await;
    let positions = checkpoint::positions_with_ids(&cx.pool, name)
        .await
        .map_err(unavailable)?;
    if let Some(cluster) = &cluster
        && stored.kafka_cluster.as_deref() != Some(cluster.as_str())
    {
        let had = !positions.is_empty();
        store::reset_kafka_positions(&cx.pool, name, Some(cluster))
            .await
            .map_err(unavailable)?;
        if had {
            return Ok(Some(format!(
                "stored Kafka positions point into cluster {:?}, the broker is cluster {cluster:?}",
                stored.kafka_cluster
            )));
        }
        return Ok(None);
    }
    if cluster.is_none() {
        tracing::warn!(
            consumer = name,
            "the broker did not say which cluster it is; checking positions by their events only"
        );
    }
    let stale = stale_partitions(brokers, positions)
        .await
        .map_err(|e| Failure::Unavailable(format!("kafka: incarnation check: {e}")))?;
    if stale.is_empty() {
        return Ok(None);
    }
    store::reset_kafka_positions(&cx.pool, name, cluster.as_deref())
        .await
        .map_err(unavailable)?;
    Ok(Some(format!(
        "stored Kafka positions of {stale:?} do not point at the events recorded there (topic recreated or broker data lost)"
    )))
}

/// Follow Kafka until shutdown, or until Kafka cannot be trusted.
pub(super) async fn follow<H: Handler>(
    cx: &mut Context<'_, H>,
    brokers: &str,
) -> Result<Result<Pass, Failure>, Stop> {
    let name = cx.handler.name();
    let topic_kinds: HashMap<String, AggregateKind> = cx
        .handler
        .sources()
        .iter()
        .map(|k| {
            (
                ordertrail_schemas::topics::topic_for(&cx.config.topic_prefix, *k),
                *k,
            )
        })
        .collect();
    let topics: Vec<&str> = topic_kinds.keys().map(String::as_str).collect();
    let (assign_tx, mut assign_rx) = unbounded_channel();
    let context = KafkaContext::new(name, assign_tx);
    let watermarks = context.watermarks();
    let consumer = match create(&cx.config, brokers, context) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            return Ok(Err(Failure::Unavailable(format!(
                "kafka: create consumer: {e}"
            ))));
        }
    };
    match check_incarnation(cx, brokers, &consumer).await {
        Ok(None) => {}
        Ok(Some(reason)) => return Ok(Ok(Pass::Recover(reason))),
        Err(f) => return Ok(Err(f)),
    }
    if let Err(e) = consumer.subscribe(&topics) {
        return Ok(Err(Failure::Unavailable(format!("kafka: subscribe: {e}"))));
    }
    tracing::info!(consumer = name, ?topics, group = %cx.config.group_id, "following Kafka");

    let mut seeks = PendingSeeks::default();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fence = tokio::time::interval(cx.config.fence);
    fence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(cx.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = cx.stop.clone();
    let unavailable = |context: &str, e: sqlx::Error| {
        Ok(Err(Failure::Unavailable(format!(
            "database: {context}: {e}"
        ))))
    };

    loop {
        let first = tokio::select! {
            biased;
            () = super::stopping(&mut stop) => return Ok(Ok(Pass::Stopped)),
            assignment = assign_rx.recv() => {
                match assignment {
                    Some(Assignment::Assigned(partitions)) => {
                        tracing::info!(consumer = name, ?partitions, "partitions assigned");
                        seeks.assigned(partitions);
                        if let Err(e) = seeks.retry(&cx.pool, name, &consumer).await {
                            return unavailable("seek", e);
                        }
                    }
                    Some(Assignment::Revoked(partitions)) => {
                        tracing::info!(consumer = name, ?partitions, "partitions revoked");
                        seeks.revoked(&partitions);
                    }
                    None => {}
                }
                continue;
            }
            _ = tick.tick() => {
                if let Err(f) = super::tick(cx).await? {
                    return Ok(Err(f));
                }
                continue;
            }
            _ = fence.tick() => {
                if let Err(e) = store::fence(&cx.pool, name, &cx.types).await {
                    return unavailable("advance the store position", e);
                }
                if let Err(e) = store::measure_lag(&cx.pool, name, &cx.types).await {
                    tracing::debug!(consumer = name, error = %e, "cannot measure lag now");
                }
                continue;
            }
            _ = second.tick() => {
                if let Err(e) = seeks.retry(&cx.pool, name, &consumer).await {
                    return unavailable("seek", e);
                }
                let hw = watermarks.snapshot();
                if let Err(e) = checkpoint::record_watermarks(&cx.pool, name, &hw).await {
                    return unavailable("record high watermarks", e);
                }
                match checkpoint::beyond_end(&cx.pool, name, &hw).await {
                    Ok(beyond) if beyond.is_empty() => {}
                    Ok(beyond) => {
                        // The statistics' watermarks can be a second old while
                        // the consumer has read past them: confirm against the
                        // broker itself (fresh watermarks and the event at
                        // each stored position) before recovering.
                        let stored = match checkpoint::positions_with_ids(&cx.pool, name).await {
                            Ok(p) => p.into_iter().filter(|(k, _)| beyond.contains(k)).collect(),
                            Err(e) => return unavailable("read positions", e),
                        };
                        let beyond = match stale_partitions(brokers, stored).await {
                            Ok(stale) if stale.is_empty() => {
                                tracing::debug!(consumer = name, "statistics lagged behind the stored offsets; the broker confirms them");
                                continue;
                            }
                            Ok(stale) => stale,
                            Err(e) => {
                                tracing::warn!(consumer = name, error = %e, "cannot confirm offsets beyond the statistics' high watermarks now");
                                continue;
                            }
                        };
                        if let Err(e) = store::reset_kafka_positions(&cx.pool, name, None).await {
                            return unavailable("reset positions", e);
                        }
                        return Ok(Ok(Pass::Recover(format!(
                            "stored offsets beyond the end of {beyond:?}: the topics were recreated or the broker lost data"
                        ))));
                    }
                    Err(e) => return unavailable("compare offsets with high watermarks", e),
                }
                continue;
            }
            message = consumer.recv() => message,
        };
        let mut messages = Vec::with_capacity(cx.config.batch_size);
        match first {
            Ok(m) => messages.push(copy(&m)),
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "kafka consumer error");
                continue;
            }
        }
        let limit = if cx.narrow > 0 {
            1
        } else {
            cx.config.batch_size.max(1)
        };
        let deadline = tokio::time::Instant::now() + cx.config.batch_wait;
        while messages.len() < limit {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => messages.push(copy(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(consumer = name, error = %e, "kafka consumer error");
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        for m in &messages {
            seeks.received(&m.topic, m.partition, m.offset);
        }
        let size = messages.len();
        let started = Instant::now();
        match batch::apply_kafka(cx, &topic_kinds, &watermarks.snapshot(), messages).await {
            Ok(applied) => {
                cx.narrow = cx.narrow.saturating_sub(size);
                cx.status.progressed();
                metrics::counter!("consumer_events_applied_total", "consumer" => name, "source" => "kafka")
                    .increment(applied.events);
                let secs = started.elapsed().as_secs_f64().max(1e-6);
                metrics::gauge!("consumer_apply_rate", "consumer" => name)
                    .set(applied.events as f64 / secs);
                for p in &applied.positions {
                    let labels = [
                        ("consumer", name.to_owned()),
                        ("topic", p.topic.clone()),
                        ("partition", p.partition.to_string()),
                    ];
                    metrics::gauge!("consumer_kafka_position", &labels).set(p.next_offset as f64);
                    metrics::gauge!("consumer_kafka_lag_events", &labels)
                        .set((p.high_watermark - p.next_offset).max(0) as f64);
                }
            }
            Err(e) => return failure(e, size).map(Err),
        }
    }
}

fn copy(m: &rdkafka::message::BorrowedMessage<'_>) -> RawMessage {
    RawMessage {
        topic: Arc::from(m.topic()),
        partition: m.partition(),
        offset: m.offset(),
        payload: m.payload().map(<[u8]>::to_vec),
    }
}
