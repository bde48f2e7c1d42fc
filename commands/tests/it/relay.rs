//! The relay against a real PostgreSQL and a real Kafka-protocol broker
//! (`KAFKA_BROKERS`, or the in-process librdkafka mock cluster).
//!
//! Events are appended with plain SQL naming the seven columns postgres-es
//! writes (the store's own columns come from their defaults), with metadata
//! from `EventMetadata::to_map`, so every shape of concurrency can be staged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ordertrail_commands::relay::{self, RelayConfig};
use ordertrail_platform::event_log::{self, Position};
use ordertrail_schemas::events::delivery::{
    DeliveryCompleted, DeliveryRequested, PickupConfirmed, RiderAssigned, RiderLocationReported,
};
use ordertrail_schemas::events::order::{OrderCancelled, OrderDelivered};
use ordertrail_schemas::topics::{all_topics, headers};
use ordertrail_schemas::{
    Actor, ActorRole, AggregateKind, DeliveryEvent, DeliveryId, EventEnvelope, EventMetadata,
    GeoPoint, OrderEvent, OrderId, RestaurantId, RiderId, json_schema,
};
use ordertrail_testkit::eventually;
use ordertrail_testkit::kafka::TestKafka;
use ordertrail_testkit::pg::TestDatabase;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use sqlx::{Connection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::support::{PARTITIONS, Running, relay_config, stopped};

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    db: TestDatabase,
    kafka: TestKafka,
}

async fn setup() -> Setup {
    ordertrail_testkit::init_test_logging();
    let db = TestDatabase::new().await;
    let kafka = TestKafka::start();
    // The mock cluster has no CreateTopics API: its host creates the topics
    // (the relay checks they exist and says so when they do not).
    kafka.create_topics(&all_topics(&kafka.prefix), PARTITIONS);
    Setup { db, kafka }
}

impl Setup {
    fn config(&self) -> RelayConfig {
        let mut c = relay_config(
            &self.kafka,
            Duration::from_millis(100),
            Duration::from_secs(3),
        );
        c.batch_size = 50;
        c.standby_interval = Duration::from_millis(200);
        c.report_interval = Duration::from_secs(1);
        c
    }

    async fn checkpoint(&self) -> Position {
        let mut conn = self.db.pool.acquire().await.expect("connection");
        relay::checkpoint::load(&mut conn, &self.kafka.prefix)
            .await
            .expect("checkpoint")
    }
}

/// A relay running as a task: stop it gracefully or abort it (a crash: the
/// future is dropped at whatever await it was in, its connections close).
fn spawn_relay(config: RelayConfig, pool: PgPool) -> Running<relay::RelayError> {
    Running::spawn(|signal| relay::run(config, pool, stopped(signal)))
}

fn metadata() -> EventMetadata {
    let id = Uuid::new_v4();
    EventMetadata {
        command_id: id,
        correlation_id: Uuid::new_v4(),
        causation_id: id,
        actor: Actor {
            subject: "ops-test".into(),
            role: ActorRole::Ops,
        },
        request_id: format!("req-{id}"),
    }
}

/// Append one event row as postgres-es would (seven columns).
async fn append<'e>(
    executor: impl PgExecutor<'e>,
    kind: AggregateKind,
    aggregate_id: &str,
    sequence: i64,
    payload: &Value,
    version: &str,
) {
    let event_type = payload["type"].as_str().expect("payload has a type tag");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(kind.as_str())
    .bind(aggregate_id)
    .bind(sequence)
    .bind(event_type)
    .bind(version)
    .bind(payload)
    .bind(serde_json::to_value(metadata().to_map()).expect("metadata map"))
    .execute(executor)
    .await
    .expect("append event");
}

fn location_ping(rider: RiderId, n: i64) -> Value {
    serde_json::to_value(DeliveryEvent::RiderLocationReported(
        RiderLocationReported {
            rider_id: rider,
            location: GeoPoint {
                lat: 52.5 + n as f64 * 1e-4,
                lon: 13.4,
            },
            reported_at: Utc::now(),
            accuracy_m: Some(5),
        },
    ))
    .expect("payload")
}

/// Append `per_aggregate` location pings to each of `deliveries`, one
/// transaction per ping, interleaving the aggregates; `from` is the first
/// sequence number.
/// Append `events` to the `kind` aggregate `aggregate_id`, from sequence 1,
/// each with its schema version (`version`).
async fn append_history<E: serde::Serialize>(
    pool: &PgPool,
    kind: AggregateKind,
    aggregate_id: &str,
    events: &[E],
    version: fn(&E) -> &'static str,
) {
    for (sequence, e) in (1..).zip(events) {
        let payload = serde_json::to_value(e).expect("json");
        append(pool, kind, aggregate_id, sequence, &payload, version(e)).await;
    }
}

async fn append_pings(pool: &PgPool, deliveries: &[String], from: i64, per_aggregate: i64) {
    let rider = RiderId::new_random();
    for seq in from..from + per_aggregate {
        for id in deliveries {
            append(
                pool,
                AggregateKind::Delivery,
                id,
                seq,
                &location_ping(rider, seq),
                "2",
            )
            .await;
        }
    }
}

fn deliveries(n: usize) -> Vec<String> {
    (0..n).map(|_| Uuid::new_v4().to_string()).collect()
}

/// One message read back from the topics.
#[derive(Debug, Clone)]
struct Received {
    topic: String,
    partition: i32,
    offset: i64,
    key: String,
    value: Value,
    headers: HashMap<String, String>,
}

impl Received {
    fn envelope(&self) -> EventEnvelope {
        serde_json::from_value(self.value.clone()).expect("value is an EventEnvelope")
    }
}

/// Reads every topic of the prefix from the beginning.
struct TopicReader {
    consumer: BaseConsumer,
    prefix: String,
    received: Vec<Received>,
}

impl TopicReader {
    fn new(kafka: &TestKafka) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap)
            .set("group.id", format!("{}-reader", kafka.prefix))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for topic in all_topics(&kafka.prefix) {
            for p in 0..PARTITIONS {
                assignment
                    .add_partition_offset(&topic, p, Offset::Beginning)
                    .expect("assign");
            }
        }
        consumer.assign(&assignment).expect("assign");
        Self {
            consumer,
            prefix: kafka.prefix.clone(),
            received: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(message) = self.consumer.poll(Duration::from_millis(10)) {
            // Broker errors (an outage) reach a consumer as messages: keep polling.
            let Ok(m) = message else { break };
            let mut headers = HashMap::new();
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    let value = header
                        .value
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                    headers.insert(header.key.to_owned(), value.unwrap_or_default());
                }
            }
            self.received.push(Received {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                value: serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON value"),
                headers,
            });
        }
    }

    fn distinct_event_ids(&self) -> HashSet<Uuid> {
        self.received
            .iter()
            .map(|r| r.envelope().event_id)
            .collect()
    }

    /// Read until every event id in `expected` has arrived and every partition
    /// has been read up to its high watermark (so duplicates are counted too).
    async fn read_until_all(&mut self, expected: &HashSet<Uuid>, timeout: Duration) {
        eventually("every stored event on Kafka", timeout, || {
            self.drain();
            let ids = self.distinct_event_ids();
            std::future::ready(expected.is_subset(&ids).then_some(()))
        })
        .await;
        let mut high = BTreeMap::new();
        for topic in all_topics(&self.prefix) {
            for p in 0..PARTITIONS {
                let (_, h) = self
                    .consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                high.insert((topic.clone(), p), h);
            }
        }
        eventually("every partition read to its end", timeout, || {
            self.drain();
            let done = high.iter().all(|((topic, p), h)| {
                *h == 0
                    || self
                        .received
                        .iter()
                        .any(|r| &r.topic == topic && r.partition == *p && r.offset + 1 >= *h)
            });
            std::future::ready(done.then_some(()))
        })
        .await;
    }
}

/// All committed events: id → (aggregate id, sequence, commit-order position).
/// Waits until the commit-order reader sees every committed row: the snapshot
/// xmin is cluster-wide, so a transaction in flight in any other database of
/// the test cluster (other tests) briefly holds the reader back.
async fn stored(pool: &PgPool) -> HashMap<Uuid, (String, i64, Position)> {
    let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("count");
    let all = eventually(
        "every committed event readable in commit order",
        WAIT,
        || async {
            let all = event_log::read_after(pool, Position::START, i64::MAX)
                .await
                .expect("read store");
            (all.len() as i64 == committed).then_some(all)
        },
    )
    .await;
    all.into_iter()
        .map(|e| {
            (
                e.event_id,
                (e.aggregate_id.clone(), e.sequence, e.position()),
            )
        })
        .collect()
}

/// Every stored event is on Kafka; per key, the first occurrences come in
/// sequence order; every duplicate is an event after `acknowledged` (the
/// checkpoint when the relay was interrupted), and there are at most
/// `max_duplicates`.
fn assert_published_in_order(
    stored: &HashMap<Uuid, (String, i64, Position)>,
    received: &[Received],
    acknowledged: Position,
    max_duplicates: usize,
) {
    let mut seen = HashSet::new();
    let mut duplicates = Vec::new();
    // Messages of one key are in one partition; read them in offset order.
    let mut by_partition: BTreeMap<(String, i32), Vec<&Received>> = BTreeMap::new();
    for r in received {
        by_partition
            .entry((r.topic.clone(), r.partition))
            .or_default()
            .push(r);
    }
    let mut last_sequence: HashMap<String, i64> = HashMap::new();
    for messages in by_partition.values_mut() {
        messages.sort_by_key(|r| r.offset);
        for r in messages.iter() {
            let envelope = r.envelope();
            assert_eq!(r.key, envelope.aggregate_id, "key is the aggregate id");
            let (aggregate_id, sequence, position) =
                stored.get(&envelope.event_id).unwrap_or_else(|| {
                    panic!("published event {} is not in the store", envelope.event_id)
                });
            assert_eq!(
                (aggregate_id, *sequence),
                (&envelope.aggregate_id, envelope.sequence)
            );
            if !seen.insert(envelope.event_id) {
                assert!(
                    *position > acknowledged,
                    "event at {position} was republished although the checkpoint {acknowledged} covered it"
                );
                duplicates.push(envelope.event_id);
                continue;
            }
            let last = last_sequence
                .entry(envelope.aggregate_id.clone())
                .or_insert(0);
            assert_eq!(
                envelope.sequence,
                *last + 1,
                "aggregate {} out of order or with a gap",
                envelope.aggregate_id
            );
            *last = envelope.sequence;
        }
    }
    let missing: Vec<_> = stored.keys().filter(|id| !seen.contains(id)).collect();
    assert!(missing.is_empty(), "not published: {missing:?}");
    assert!(
        duplicates.len() <= max_duplicates,
        "{} duplicates, more than the unacknowledged tail of {max_duplicates}",
        duplicates.len()
    );
}

/// A reader that follows `global_position` alone, as a counter-example.
async fn naive_read_after(pool: &PgPool, after: i64) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT global_position FROM events WHERE global_position > $1 ORDER BY global_position",
    )
    .bind(after)
    .fetch_all(pool)
    .await
    .expect("naive read")
}

#[tokio::test]
async fn overlapping_transactions_committing_out_of_position_order_are_all_published() {
    let s = setup().await;
    let (early, late) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let rider = RiderId::new_random();

    // Transaction A inserts first (lower global_position, lower xid) but
    // commits last; transaction B inserts after it and commits first.
    let mut a = s.db.pool.begin().await.expect("begin A");
    append(
        &mut *a,
        AggregateKind::Delivery,
        &early,
        1,
        &location_ping(rider, 1),
        "2",
    )
    .await;
    let mut b = s.db.pool.begin().await.expect("begin B");
    append(
        &mut *b,
        AggregateKind::Delivery,
        &late,
        1,
        &location_ping(rider, 2),
        "2",
    )
    .await;
    b.commit().await.expect("commit B");

    // A reader following global_position alone sees B's row now, advances its
    // checkpoint past A's position, and never sees A's row once A commits:
    // this is the failure the commit-order reader exists to prevent.
    let naive_first = naive_read_after(&s.db.pool, 0).await;
    assert_eq!(naive_first.len(), 1, "only B's row is visible");
    let naive_checkpoint = naive_first[0];

    // The commit-order reader holds back: B's transaction is above the oldest
    // one in flight (A), so nothing is readable yet.
    let readable = event_log::read_after(&s.db.pool, Position::START, 100)
        .await
        .expect("read");
    assert!(
        readable.is_empty(),
        "nothing readable while A is in flight: {readable:?}"
    );

    let relay = spawn_relay(s.config(), s.db.pool.clone());
    a.commit().await.expect("commit A");

    let expected: HashSet<Uuid> = stored(&s.db.pool).await.into_keys().collect();
    assert_eq!(expected.len(), 2);
    let mut reader = TopicReader::new(&s.kafka);
    reader.read_until_all(&expected, WAIT).await;
    assert_published_in_order(
        &stored(&s.db.pool).await,
        &reader.received,
        Position::START,
        0,
    );

    // The naive reader would have lost A's event for good.
    assert!(
        naive_read_after(&s.db.pool, naive_checkpoint)
            .await
            .is_empty(),
        "a global_position reader skips the late-committing row"
    );
    relay.stop().await;
    let checkpoint = s.checkpoint().await;
    let head = event_log::head(&s.db.pool).await.expect("head");
    assert_eq!(
        Some(checkpoint),
        head,
        "checkpoint at the head after the relay stopped"
    );
}

#[tokio::test]
async fn a_killed_relay_restarts_and_republishes_at_most_the_unacknowledged_tail() {
    let s = setup().await;
    let config = s.config();
    let batch = config.batch_size;
    let aggregates = deliveries(20);
    append_pings(&s.db.pool, &aggregates, 1, 10).await;

    // Commands keep appending while the relay runs, is killed and restarts.
    let writer = {
        let pool = s.db.pool.clone();
        let aggregates = aggregates.clone();
        tokio::spawn(async move { append_pings(&pool, &aggregates, 11, 20).await })
    };
    let first = spawn_relay(config.clone(), s.db.pool.clone());
    eventually("the relay to have published some batches", WAIT, || async {
        (s.checkpoint().await.global_position >= 150).then_some(())
    })
    .await;
    first.kill().await;
    let acknowledged = s.checkpoint().await;

    let second = spawn_relay(config, s.db.pool.clone());
    writer.await.expect("writer");
    let store = stored(&s.db.pool).await;
    assert_eq!(store.len(), 20 * 30);
    let mut reader = TopicReader::new(&s.kafka);
    reader
        .read_until_all(&store.keys().copied().collect(), WAIT)
        .await;
    second.stop().await;
    // Only the batch in flight at the kill can appear twice.
    assert_published_in_order(&store, &reader.received, acknowledged, batch);
}

#[tokio::test]
async fn a_broker_outage_during_a_stream_of_commands_is_caught_up_in_order() {
    let s = setup().await;
    if !s.kafka.is_mock() {
        eprintln!("skipped: broker outages can only be staged on the in-process mock cluster");
        return;
    }
    let aggregates = deliveries(10);
    let relay = spawn_relay(s.config(), s.db.pool.clone());
    append_pings(&s.db.pool, &aggregates, 1, 5).await;
    let mut reader = TopicReader::new(&s.kafka);
    reader
        .read_until_all(&stored(&s.db.pool).await.keys().copied().collect(), WAIT)
        .await;
    let before_outage = s.checkpoint().await;

    s.kafka.stop_brokers();
    // The store is the outbox: appends keep succeeding while Kafka is down.
    append_pings(&s.db.pool, &aggregates, 6, 10).await;
    // Let the relay hit the outage: its delivery timeout expires and it backs off.
    eventually(
        "the relay to be publishing into the outage",
        WAIT,
        || async {
            let lag = event_log::lag(&s.db.pool, s.checkpoint().await)
                .await
                .expect("lag");
            (lag.events == 100 && lag.seconds > 3.5).then_some(())
        },
    )
    .await;
    append_pings(&s.db.pool, &aggregates, 16, 5).await;
    s.kafka.start_brokers();
    append_pings(&s.db.pool, &aggregates, 21, 5).await;

    let store = stored(&s.db.pool).await;
    assert_eq!(store.len(), 10 * 25);
    reader
        .read_until_all(&store.keys().copied().collect(), WAIT)
        .await;
    relay.stop().await;
    // Batches that timed out during the outage are produced again; nothing
    // acknowledged before the outage is.
    assert_published_in_order(&store, &reader.received, before_outage, 200);
}

#[tokio::test]
async fn a_standby_relay_takes_over_within_seconds_when_the_active_one_dies() {
    let s = setup().await;
    let aggregates = deliveries(5);
    let active = spawn_relay(s.config(), s.db.pool.clone());
    append_pings(&s.db.pool, &aggregates, 1, 4).await;
    let mut reader = TopicReader::new(&s.kafka);
    reader
        .read_until_all(&stored(&s.db.pool).await.keys().copied().collect(), WAIT)
        .await;

    let standby = spawn_relay(s.config(), s.db.pool.clone());
    append_pings(&s.db.pool, &aggregates, 5, 4).await;
    reader
        .read_until_all(&stored(&s.db.pool).await.keys().copied().collect(), WAIT)
        .await;
    // Exactly one session holds the relay lock although two relays run.
    let holders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&s.db.pool)
    .await
    .expect("locks");
    assert_eq!(holders, 1);
    assert!(!standby.task.is_finished());

    let acknowledged = s.checkpoint().await;
    active.kill().await;
    let died = Instant::now();
    append_pings(&s.db.pool, &aggregates, 9, 4).await;
    let store = stored(&s.db.pool).await;
    reader
        .read_until_all(&store.keys().copied().collect(), Duration::from_secs(10))
        .await;
    let took_over = died.elapsed();
    assert!(
        took_over < Duration::from_secs(5),
        "standby took {took_over:?}"
    );
    standby.stop().await;
    assert_published_in_order(&store, &reader.received, acknowledged, 50);
}

fn validator(path: &Path) -> jsonschema::Validator {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("checked-in schema {} missing: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:?}\n{instance:#}"
    );
}

fn v1_fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/fixtures/RiderLocationReported.v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

/// Store a delivery whose third event is the checked-in v1 fixture, as
/// written before `RiderLocationReported` v2 existed.
async fn store_delivery_with_v1_location(pool: &PgPool) -> (String, DateTime<Utc>) {
    let fixture = v1_fixture();
    let id = fixture["aggregate_id"].as_str().expect("id").to_owned();
    let rider: RiderId = fixture["payload"]["rider_id"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("rider id");
    let reported_at: DateTime<Utc> = fixture["payload"]["reported_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("reported_at");
    let requested = DeliveryEvent::DeliveryRequested(DeliveryRequested {
        delivery_id: id.parse::<DeliveryId>().expect("delivery id"),
        order_id: OrderId::new_random(),
        restaurant_id: RestaurantId::new_random(),
        pickup: GeoPoint {
            lat: 52.52,
            lon: 13.40,
        },
        dropoff: GeoPoint {
            lat: 52.53,
            lon: 13.41,
        },
        dropoff_code_hash: ordertrail_schemas::privacy::DropoffCodeKey::for_tests()
            .hash(id.parse::<DeliveryId>().expect("delivery id"), "4711"),
        ready_by: None,
        requested_at: reported_at - chrono::Duration::minutes(10),
    });
    let assigned = DeliveryEvent::RiderAssigned(RiderAssigned {
        rider_id: rider,
        assigned_at: reported_at - chrono::Duration::minutes(5),
    });
    let kind = AggregateKind::Delivery;
    append(
        pool,
        kind,
        &id,
        1,
        &serde_json::to_value(requested).expect("json"),
        "1",
    )
    .await;
    append(
        pool,
        kind,
        &id,
        2,
        &serde_json::to_value(assigned).expect("json"),
        "1",
    )
    .await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(fixture["aggregate_type"].as_str())
    .bind(&id)
    .bind(fixture["sequence"].as_i64())
    .bind(fixture["event_type"].as_str())
    .bind(fixture["event_version"].as_str())
    .bind(&fixture["payload"])
    .bind(&fixture["metadata"])
    .execute(pool)
    .await
    .expect("store the v1 fixture");
    (id, reported_at)
}

#[tokio::test]
async fn consumers_get_envelopes_and_headers_matching_the_checked_in_schemas() {
    let s = setup().await;
    let (v1_delivery, _) = store_delivery_with_v1_location(&s.db.pool).await;
    let order = OrderId::new_random().to_string();
    let rider = RiderId::new_random();
    let now = Utc::now();
    let order_events = [
        OrderEvent::OrderDelivered(OrderDelivered { delivered_at: now }),
        OrderEvent::OrderCancelled(OrderCancelled {
            reason: "customer changed their mind".into(),
            cancelled_by: ActorRole::Customer,
            cancelled_at: now,
        }),
    ];
    append_history(
        &s.db.pool,
        AggregateKind::Order,
        &order,
        &order_events,
        OrderEvent::version,
    )
    .await;
    let delivery = DeliveryId::new_random().to_string();
    let delivery_events = [
        DeliveryEvent::PickupConfirmed(PickupConfirmed {
            rider_id: rider,
            picked_up_at: now,
        }),
        DeliveryEvent::DeliveryCompleted(DeliveryCompleted {
            rider_id: rider,
            completed_at: now,
        }),
    ];
    append_history(
        &s.db.pool,
        AggregateKind::Delivery,
        &delivery,
        &delivery_events,
        DeliveryEvent::version,
    )
    .await;

    let relay = spawn_relay(s.config(), s.db.pool.clone());
    let store = stored(&s.db.pool).await;
    let mut reader = TopicReader::new(&s.kafka);
    reader
        .read_until_all(&store.keys().copied().collect(), WAIT)
        .await;
    relay.stop().await;
    assert_published_in_order(&store, &reader.received, Position::START, 0);

    let dir = json_schema::schema_dir();
    let envelope_schema = validator(&dir.join("envelope.json"));
    for r in &reader.received {
        assert_valid(&envelope_schema, &r.value, "envelope");
        let envelope = r.envelope();
        assert_eq!(
            r.topic,
            ordertrail_schemas::topics::topic_for(&s.kafka.prefix, envelope.aggregate_type)
        );
        let payload_schema = validator(&dir.join(json_schema::event_schema_path(
            envelope.aggregate_type,
            &envelope.event_type,
            &envelope.event_version,
        )));
        assert_valid(&payload_schema, &envelope.payload, &envelope.event_type);
        let expected_headers = envelope.headers();
        assert_eq!(r.headers.len(), expected_headers.len(), "{:?}", r.headers);
        for (name, value) in expected_headers {
            assert_eq!(r.headers.get(name), Some(&value), "header {name}");
        }
        let recorded: DateTime<Utc> = r.headers[headers::RECORDED_AT]
            .parse()
            .expect("recorded_at header");
        assert_eq!(recorded, envelope.recorded_at);
    }

    // The v1 fixture is published in the v2 shape, and validates as v2.
    let upcast = reader
        .received
        .iter()
        .map(Received::envelope)
        .find(|e| e.aggregate_id == v1_delivery && e.event_type == "RiderLocationReported")
        .expect("the v1 event is published");
    assert_eq!(upcast.event_version, "2");
    assert_eq!(upcast.payload["accuracy_m"], Value::Null);
    assert_eq!(
        upcast.payload["rider_id"],
        v1_fixture()["payload"]["rider_id"]
    );
    let decoded: DeliveryEvent = upcast
        .event()
        .expect("decodes as the current DeliveryEvent")
        .try_into()
        .expect("a delivery event");
    assert!(matches!(
        decoded,
        DeliveryEvent::RiderLocationReported(RiderLocationReported {
            accuracy_m: None,
            ..
        })
    ));
    // The v1 document stays checked in and still describes the stored row.
    assert_valid(
        &validator(&dir.join("delivery/RiderLocationReported.v1.json")),
        &v1_fixture()["payload"],
        "stored v1 fixture",
    );
    let _ = json!(null);
}

#[tokio::test]
async fn a_stored_v1_rider_location_loads_and_replays_as_v2() {
    use cqrs_es::persist::PersistedEventStore;
    use cqrs_es::{Aggregate, EventStore};
    use ordertrail_domain::delivery::{DeliveryCommand, ReportLocation};
    use ordertrail_domain::{Delivery, DeliveryError, DeliveryStatus};
    use postgres_es::PostgresEventRepository;

    let db = TestDatabase::new().await;
    let (id, v1_reported_at) = store_delivery_with_v1_location(&db.pool).await;
    let store: PersistedEventStore<PostgresEventRepository, Delivery> =
        PersistedEventStore::new_event_store(PostgresEventRepository::new(db.pool.clone()))
            .with_upcasters(ordertrail_schemas::upcasters::all());
    let loaded = store.load_aggregate(&id).await.expect("v1 events load");
    assert_eq!(loaded.current_sequence, 3);
    assert_eq!(loaded.aggregate.status(), Some(DeliveryStatus::Assigned));
    let events = store.load_events(&id).await.expect("events");
    match &events[2].payload {
        DeliveryEvent::RiderLocationReported(e) => assert_eq!(e.accuracy_m, None),
        other => panic!("unexpected {other:?}"),
    }

    // Replayed state includes the v1 fix: a report older than it is refused.
    let rider: RiderId = v1_fixture()["payload"]["rider_id"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("rider");
    let older = ReportLocation {
        rider_id: rider,
        location: GeoPoint {
            lat: 52.5208,
            lon: 13.4094,
        },
        reported_at: v1_reported_at - chrono::Duration::seconds(30),
        accuracy_m: Some(4),
        now: v1_reported_at,
    };
    let mut aggregate = loaded.aggregate;
    let sink = cqrs_es::event_sink::EventSink::default();
    let refused = aggregate
        .handle(DeliveryCommand::ReportLocation(older), &(), &sink)
        .await;
    assert!(
        matches!(
            refused,
            Err(DeliveryError::LocationTimestampRegressed { .. })
        ),
        "{refused:?}"
    );
}

/// The process's Prometheus recorder (one per test process; nextest runs
/// each test in a process of its own).
fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("install the metrics recorder")
    })
}

/// The value of an unlabelled gauge in the rendered metrics.
fn gauge(name: &str) -> Option<f64> {
    metrics().render().lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// A relay checkpoint on any pool.
async fn checkpoint_of(pool: &PgPool, name: &str) -> Position {
    let mut conn = pool.acquire().await.expect("connection");
    relay::checkpoint::load(&mut conn, name)
        .await
        .expect("checkpoint")
}

#[tokio::test]
async fn an_idle_transaction_holds_publishing_back_visibly_and_everything_is_published_once_it_ends()
 {
    metrics();
    // The oldest open transaction is server-wide: stage it on a server of
    // this test's own, not the suite's shared one.
    let server = ordertrail_testkit::server::PrivateServer::start();
    let pool = ordertrail_platform::db::connect(&server.url(), 6)
        .await
        .expect("connect");
    ordertrail_platform::db::migrate(&pool)
        .await
        .expect("migrate");
    let s = setup().await;
    // No polling fallback within the test's time: after the blocker ends,
    // no commit notifies the relay again, so it must look again by itself.
    let mut config = s.config();
    config.poll_interval = Duration::from_secs(3_600);
    let relay = spawn_relay(config, pool.clone());
    let aggregates = deliveries(4);
    append_pings(&pool, &aggregates, 1, 2).await;
    let mut reader = TopicReader::new(&s.kafka);
    reader
        .read_until_all(&stored(&pool).await.keys().copied().collect(), WAIT)
        .await;

    // Someone opens a transaction, takes a transaction id and goes idle.
    let mut idle = sqlx::PgConnection::connect(&server.url())
        .await
        .expect("idle session");
    sqlx::query("BEGIN")
        .execute(&mut idle)
        .await
        .expect("begin");
    let (idle_pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut idle)
        .await
        .expect("pid");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut idle)
        .await
        .expect("take an xid");
    let held = checkpoint_of(&pool, &s.kafka.prefix).await;
    // Commands keep committing meanwhile.
    append_pings(&pool, &aggregates, 3, 3).await;

    // The lag counts the 12 committed events, all held back, and the blocker
    // is named.
    eventually("the relay to report the held-back events", WAIT, || async {
        (gauge("ordertrail_relay_lag_events") == Some(12.0)
            && gauge("ordertrail_relay_held_back_events") == Some(12.0)
            && gauge("ordertrail_relay_blocking_transaction_pid") == Some(f64::from(idle_pid)))
        .then_some(())
    })
    .await;
    let backlog = event_log::backlog(&pool, held).await.expect("backlog");
    assert_eq!((backlog.committed, backlog.held_back), (12, 12));
    let blocker = event_log::oldest_transaction(&pool)
        .await
        .expect("oldest transaction")
        .expect("a blocker");
    assert_eq!(blocker.pid, idle_pid);
    assert_eq!(blocker.database.as_deref(), Some("ordertrail"));
    assert_eq!(blocker.state.as_deref(), Some("idle in transaction"));
    // Nothing after the blocker was published.
    assert_eq!(checkpoint_of(&pool, &s.kafka.prefix).await, held);

    // The idle transaction ends: everything is published, with no further
    // commit to wake the relay.
    sqlx::query("ROLLBACK")
        .execute(&mut idle)
        .await
        .expect("rollback");
    let store = stored(&pool).await;
    assert_eq!(store.len(), 4 * 5);
    reader
        .read_until_all(&store.keys().copied().collect(), WAIT)
        .await;
    // The relay's checkpoint is at the head: nothing left behind it. (Its
    // lag gauges are refreshed between reads, and this test leaves it no
    // poll to read on: the relay tests of the gauges run with polling.)
    eventually(
        "the relay's checkpoint at the store's head",
        WAIT,
        || async {
            let at = checkpoint_of(&pool, &s.kafka.prefix).await;
            let backlog = event_log::backlog(&pool, at).await.expect("backlog");
            (backlog.committed == 0).then_some(())
        },
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn our_sessions_end_a_transaction_left_idle_past_the_limit() {
    let db = TestDatabase::new().await;
    let options = ordertrail_platform::db::connect_options(&db.url)
        .expect("options")
        .options([("idle_in_transaction_session_timeout", "300ms")]);
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .expect("connect");
    let default_limit: String = {
        let mut plain = sqlx::PgConnection::connect_with(
            &ordertrail_platform::db::connect_options(&db.url).expect("options"),
        )
        .await
        .expect("connect");
        sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
            .fetch_one(&mut plain)
            .await
            .expect("show")
    };
    assert_eq!(default_limit, "1min", "the platform's default limit");
    sqlx::query("BEGIN")
        .execute(&mut conn)
        .await
        .expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut conn)
        .await
        .expect("xid");
    eventually("the server to end the idle transaction", WAIT, || async {
        let (alive,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state = 'idle in transaction'",
        )
        .fetch_one(&db.pool)
        .await
        .ok()?;
        (alive == 0).then_some(())
    })
    .await;
    let error = sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect_err("the session was ended");
    assert!(
        ordertrail_platform::db::is_unreachable(&error),
        "an ended session counts as unavailable: {error}"
    );
}

#[tokio::test]
async fn an_active_relay_that_cannot_reach_kafka_gives_its_lease_to_a_standby_within_10_s() {
    let s = setup().await;
    // The active relay's broker address leads nowhere.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    let mut cut_off = s.config();
    cut_off.brokers = nowhere.to_string();
    cut_off.publish_lease = Duration::from_secs(4);
    let active = spawn_relay(cut_off, s.db.pool.clone());
    let lock_holders = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = \
             (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&s.db.pool)
        .await
        .expect("locks")
    };
    eventually("the cut-off relay to hold the lock", WAIT, || async {
        (lock_holders().await == 1).then_some(())
    })
    .await;
    let aggregates = deliveries(3);
    append_pings(&s.db.pool, &aggregates, 1, 3).await;

    let standby = spawn_relay(s.config(), s.db.pool.clone());
    let started = Instant::now();
    let mut reader = TopicReader::new(&s.kafka);
    let store = stored(&s.db.pool).await;
    reader
        .read_until_all(&store.keys().copied().collect(), Duration::from_secs(10))
        .await;
    let took_over = started.elapsed();
    assert!(took_over < Duration::from_secs(10), "took {took_over:?}");
    // The cut-off relay stands by (it does not exit) and never published.
    assert!(!active.task.is_finished());
    assert_eq!(lock_holders().await, 1);
    assert_published_in_order(&store, &reader.received, Position::START, 0);
    standby.stop().await;
    active.stop().await;
}

#[tokio::test]
async fn a_relay_whose_lock_session_is_killed_stands_by_and_a_standby_takes_over() {
    let s = setup().await;
    let aggregates = deliveries(3);
    let first = spawn_relay(s.config(), s.db.pool.clone());
    append_pings(&s.db.pool, &aggregates, 1, 2).await;
    let mut reader = TopicReader::new(&s.kafka);
    reader
        .read_until_all(&stored(&s.db.pool).await.keys().copied().collect(), WAIT)
        .await;
    let second = spawn_relay(s.config(), s.db.pool.clone());
    // The database loses the active relay's session (a network cut, an
    // administrator): the lock goes with it.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted AND l.database =
               (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&s.db.pool)
    .await
    .expect("terminate");
    assert_eq!(killed, vec![true]);
    let acknowledged = s.checkpoint().await;
    let cut = Instant::now();
    append_pings(&s.db.pool, &aggregates, 3, 2).await;
    let store = stored(&s.db.pool).await;
    reader
        .read_until_all(&store.keys().copied().collect(), Duration::from_secs(10))
        .await;
    assert!(cut.elapsed() < Duration::from_secs(10));
    // Both relays still run: one active, one standing by.
    assert!(!first.task.is_finished() && !second.task.is_finished());
    first.stop().await;
    second.stop().await;
    assert_published_in_order(&store, &reader.received, acknowledged, 20);
}
