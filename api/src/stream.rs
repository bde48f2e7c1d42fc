//! The live feed behind the Server-Sent Event streams
//! (`routes::streams`): one feeder task per API process follows the event
//! store in commit order (`ordertrail_platform::event_log`, the same reading
//! rule as the relay and the store-fed consumers) and fans every event out
//! through a `tokio::sync::broadcast` channel; each client filters it.
//!
//! **Resume without gaps or duplicates.** An SSE id is the event's
//! commit-order position (`<transaction_id>-<global_position>`). A client
//! first subscribes to the broadcast, then reads the store after its
//! `Last-Event-ID` (or, live-only, after the feeder's position) until it has
//! reached the readable head, then takes the broadcast, skipping what it has
//! already sent. The feeder broadcasts in strictly increasing positions and
//! the store read after subscribing covers everything it broadcast before,
//! so nothing is missed or sent twice. A client too slow for the channel
//! (lagged) reads the store again from its last position.
//!
//! **Enrichment.** Events are tagged with the order they belong to, its
//! restaurant and (order events) the order status they lead to, from the
//! first event of each aggregate (cached per process); rider positions carry
//! a straight-line ETA. Payloads and metadata are cut per client by the
//! visibility table before sending.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use ordertrail_platform::event_log::{self, Position, StoredEvent};
use ordertrail_platform::retry::Backoff;
use ordertrail_schemas::events::Event;
use ordertrail_schemas::visibility::{Audience, redact_metadata, redact_payload};
use ordertrail_schemas::{
    AggregateKind, DeliveryEvent, DeliveryId, GeoPoint, OrderId, OrderStatus, PaymentId,
};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, broadcast, mpsc, watch};
use utoipa::ToSchema;
use uuid::Uuid;

/// The channel the event store's insert trigger notifies (migration 0003).
const NOTIFY_CHANNEL: &str = "ordertrail_events";
/// Events read per store query.
const BATCH: i64 = 500;
/// The feeder reads at least this often without a notification (a
/// notification arrives at commit, but the event is readable only once no
/// older transaction is in flight).
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Pauses of the live feed while it cannot read the store: from 200 ms
/// (first failure), doubling, at most 6.4 s.
const LIVE_FEED_BACKOFF: Backoff =
    Backoff::exponential(Duration::from_millis(100), Duration::from_millis(6_400));
/// Events buffered per client in the broadcast before it counts as lagged.
const CHANNEL_CAPACITY: usize = 8192;
/// Aggregates whose facts are cached before the cache is cleared.
const FACT_CACHE_LIMIT: usize = 100_000;
/// Speed of the straight-line ETA, m/s (the rider-ETA read model refines it).
const ETA_SPEED_MPS: f64 = 4.5;

/// An SSE id: a commit-order position, `<transaction_id>-<global_position>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId(pub Position);

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0.transaction_id, self.0.global_position)
    }
}

impl FromStr for StreamId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (t, g) = s.split_once('-').ok_or(())?;
        let digits =
            |x: &str| !x.is_empty() && x.len() <= 19 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(t) || !digits(g) {
            return Err(());
        }
        let transaction_id = t.parse::<u64>().map_err(|_| ())?;
        let global_position = g.parse::<i64>().map_err(|_| ())?;
        Ok(Self(Position {
            transaction_id,
            global_position,
        }))
    }
}

/// A straight-line estimate for a rider position: distances and arrival
/// times at the stream's constant speed (never a pickup before the kitchen's
/// ready time).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamEta {
    /// Metres to the pickup; null once picked up.
    pub distance_to_pickup_m: Option<f64>,
    /// Metres left to the drop-off (via the pickup before it).
    pub distance_to_dropoff_m: Option<f64>,
    pub pickup_eta: Option<DateTime<Utc>>,
    pub dropoff_eta: Option<DateTime<Utc>>,
}

/// One event on a stream (the `data` of an SSE message, JSON).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamEvent {
    /// The SSE id: commit-order position, `<transaction_id>-<global_position>`.
    #[schema(example = "7581-1204")]
    pub id: String,
    pub order_id: Option<Uuid>,
    pub restaurant_id: Option<Uuid>,
    /// `Order`, `Payment` or `Delivery`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The order status this event leads to (order events only).
    pub status: Option<String>,
    /// The rider a delivery event names (assignment, position, pickup ...).
    pub rider_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
    /// The payload as the caller may see it (visibility table).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Command, correlation and causation ids, actor, request id, as the caller may see them.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// For `RiderLocationReported`: a straight-line ETA.
    pub eta: Option<StreamEta>,
}

/// An event as the feeder broadcasts it: upcast and tagged, not yet redacted.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub position: Position,
    pub aggregate_type: AggregateKind,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    pub order_id: Option<Uuid>,
    pub restaurant_id: Option<Uuid>,
    pub status: Option<&'static str>,
    pub rider_id: Option<Uuid>,
    pub eta: Option<StreamEta>,
    /// The whole SSE message per audience, rendered once for every client
    /// of that audience.
    rendered: [OnceLock<Bytes>; Audience::ALL.len()],
}

impl FeedEvent {
    /// The SSE message of this event as `audience` may see it
    /// (`id`, `event` and one `data` line of compact JSON).
    pub fn to_sse(&self, audience: Audience) -> Bytes {
        self.rendered[audience.index()]
            .get_or_init(|| {
                Bytes::from(format!(
                    "id: {}\nevent: {}\ndata: {}\n\n",
                    StreamId(self.position),
                    self.kind(),
                    self.render(audience)
                ))
            })
            .clone()
    }

    /// The SSE event name.
    fn kind(&self) -> &'static str {
        match (self.aggregate_type, self.event_type.as_str()) {
            (AggregateKind::Order, _) => "order_status",
            (AggregateKind::Delivery, "RiderLocationReported") => "rider_position",
            (AggregateKind::Delivery, _) => "delivery",
            (AggregateKind::Payment, _) => "payment",
        }
    }

    fn render(&self, audience: Audience) -> String {
        let mut payload = self.payload.clone();
        redact_payload(audience, &self.event_type, &mut payload);
        let mut metadata = self.metadata.clone();
        redact_metadata(audience, &mut metadata);
        let data = StreamEvent {
            id: StreamId(self.position).to_string(),
            order_id: self.order_id,
            restaurant_id: self.restaurant_id,
            aggregate_type: self.aggregate_type.as_str().to_owned(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            event_type: self.event_type.clone(),
            event_version: self.event_version.clone(),
            status: self.status.map(str::to_owned),
            rider_id: self.rider_id,
            recorded_at: self.recorded_at,
            payload,
            metadata,
            eta: self.eta.clone(),
        };
        serde_json::to_string(&data).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// What never changes about an aggregate (from its first event), plus what
/// the feeder learns of a delivery as it goes.
#[derive(Debug, Clone, Default)]
struct Facts {
    order_id: Option<Uuid>,
    restaurant_id: Option<Uuid>,
    pickup: Option<GeoPoint>,
    dropoff: Option<GeoPoint>,
    ready_by: Option<DateTime<Utc>>,
    picked_up: bool,
}

impl Facts {
    /// From an aggregate's first event (decoded with the contract's one
    /// typed decode; an event this build cannot decode tells nothing).
    fn from_first_event(event: Option<&Event>) -> Self {
        let mut facts = Facts::default();
        if let Some((order_id, restaurant_id)) = event.and_then(Event::order_and_restaurant) {
            facts.order_id = Some(order_id.as_uuid());
            facts.restaurant_id = Some(restaurant_id.as_uuid());
        }
        if let Some(Event::Delivery(DeliveryEvent::DeliveryRequested(r))) = event {
            facts.pickup = Some(r.pickup);
            facts.dropoff = Some(r.dropoff);
            facts.ready_by = r.ready_by;
        }
        facts
    }
}

fn eta(facts: &Facts, location: GeoPoint, at: DateTime<Utc>, picked_up: bool) -> Option<StreamEta> {
    let (pickup, dropoff) = (facts.pickup?, facts.dropoff?);
    let travel = |m: f64| {
        // Bounded: distances on earth are below 2e7 m.
        #[allow(clippy::cast_possible_truncation)]
        let ms = (m / ETA_SPEED_MPS * 1000.0).round() as i64;
        chrono::Duration::milliseconds(ms)
    };
    if picked_up {
        let d = location.distance_m(&dropoff);
        return Some(StreamEta {
            distance_to_pickup_m: None,
            distance_to_dropoff_m: Some(d.round()),
            pickup_eta: None,
            dropoff_eta: Some(at + travel(d)),
        });
    }
    let to_pickup = location.distance_m(&pickup);
    let leg = pickup.distance_m(&dropoff);
    let mut pickup_eta = at + travel(to_pickup);
    if let Some(ready) = facts.ready_by {
        pickup_eta = pickup_eta.max(ready);
    }
    Some(StreamEta {
        distance_to_pickup_m: Some(to_pickup.round()),
        distance_to_dropoff_m: Some((to_pickup + leg).round()),
        pickup_eta: Some(pickup_eta),
        dropoff_eta: Some(pickup_eta + travel(leg)),
    })
}

/// A failure of the feed (the database).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("stored event {0} cannot be read: {1}")]
    Unreadable(Uuid, String),
}

struct Live {
    events: broadcast::Sender<Arc<FeedEvent>>,
    /// The position the feeder has broadcast up to.
    position: watch::Receiver<Position>,
}

struct FeedInner {
    pool: PgPool,
    live: OnceCell<Live>,
    facts: Mutex<HashMap<(AggregateKind, String), Facts>>,
}

/// The process's live event feed (cheap to clone). The feeder starts with
/// the first subscriber, at the store's readable head.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<FeedInner>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

impl Feed {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(FeedInner {
                pool,
                live: OnceCell::new(),
                facts: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    async fn live(&self) -> Result<&Live, FeedError> {
        self.inner
            .live
            .get_or_try_init(|| async {
                let head = event_log::head(&self.inner.pool)
                    .await?
                    .unwrap_or(Position::START);
                let (events, _) = broadcast::channel(CHANNEL_CAPACITY);
                let (position_tx, position) = watch::channel(head);
                tokio::spawn(feeder(self.clone(), events.clone(), position_tx, head));
                Ok::<_, FeedError>(Live { events, position })
            })
            .await
    }

    /// A receiver of every event broadcast from now on, and the position the
    /// feeder had reached when it was taken.
    pub async fn subscribe(
        &self,
    ) -> Result<(broadcast::Receiver<Arc<FeedEvent>>, Position), FeedError> {
        let live = self.live().await?;
        let rx = live.events.subscribe();
        let position = *live.position.borrow();
        Ok((rx, position))
    }

    /// The facts of an aggregate, from its first event (cached).
    async fn facts(&self, kind: AggregateKind, id: &str) -> Result<Facts, FeedError> {
        let key = (kind, id.to_owned());
        if let Some(f) = self.lock_facts().get(&key) {
            return Ok(f.clone());
        }
        let first = event_log::read_aggregate(&self.inner.pool, kind.as_str(), id, 0, 1).await?;
        let facts = match first.first() {
            Some(e) => {
                let env = e
                    .envelope()
                    .map_err(|reason| FeedError::Unreadable(e.event_id, reason))?;
                Facts::from_first_event(env.event().ok().as_ref())
            }
            None => Facts::default(),
        };
        let mut cache = self.lock_facts();
        if cache.len() >= FACT_CACHE_LIMIT {
            cache.clear();
        }
        cache.entry(key).or_insert_with(|| facts.clone());
        Ok(facts)
    }

    fn remember(&self, kind: AggregateKind, id: &str, facts: &Facts) {
        let mut cache = self.lock_facts();
        if cache.len() >= FACT_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert((kind, id.to_owned()), facts.clone());
    }

    fn lock_facts(&self) -> std::sync::MutexGuard<'_, HashMap<(AggregateKind, String), Facts>> {
        // A poisoned cache only holds facts read from the store; keep using it.
        self.inner
            .facts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Upcast and tag a stored event. `learn`: the feeder (reading in commit
    /// order, at the head) records what deliveries go through.
    async fn enrich(&self, stored: StoredEvent, learn: bool) -> Result<FeedEvent, FeedError> {
        let env = stored
            .envelope()
            .map_err(|reason| FeedError::Unreadable(stored.event_id, reason))?;
        let kind = env.aggregate_type;
        let event = env.event().ok();
        let mut facts = if env.sequence == 1 {
            Facts::from_first_event(event.as_ref())
        } else {
            self.facts(kind, &env.aggregate_id).await?
        };
        if kind == AggregateKind::Order && facts.order_id.is_none() {
            facts.order_id = Uuid::parse_str(&env.aggregate_id).ok();
        }
        if learn && env.sequence == 1 {
            self.remember(kind, &env.aggregate_id, &facts);
        }
        let rider_id = event
            .as_ref()
            .and_then(Event::rider_id)
            .map(|r| r.as_uuid());
        let mut eta_now = None;
        match &event {
            Some(Event::Delivery(DeliveryEvent::PickupConfirmed(_))) if learn => {
                facts.picked_up = true;
                self.remember(kind, &env.aggregate_id, &facts);
            }
            Some(Event::Delivery(DeliveryEvent::RiderLocationReported(r))) => {
                eta_now = eta(&facts, r.location, r.reported_at, facts.picked_up);
            }
            _ => {}
        }
        let status = if kind == AggregateKind::Order {
            OrderStatus::after(&env.event_type).map(|s| s.as_str())
        } else {
            None
        };
        Ok(FeedEvent {
            position: stored.position(),
            aggregate_type: kind,
            aggregate_id: env.aggregate_id,
            sequence: env.sequence,
            event_type: env.event_type,
            event_version: env.event_version,
            metadata: serde_json::to_value(&env.metadata).unwrap_or(serde_json::Value::Null),
            payload: env.payload,
            recorded_at: env.recorded_at,
            order_id: facts.order_id,
            restaurant_id: facts.restaurant_id,
            status,
            rider_id,
            eta: eta_now,
            rendered: Default::default(),
        })
    }
}

/// The feeder: follows the store in commit order from `from`, broadcasting
/// each event; wakes on the insert trigger's notification or every
/// [`POLL_INTERVAL`]. Database failures are waited out with back-off.
async fn feeder(
    feed: Feed,
    events: broadcast::Sender<Arc<FeedEvent>>,
    position: watch::Sender<Position>,
    from: Position,
) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let listener = {
        let wake = Arc::clone(&wake);
        let pool = feed.pool().clone();
        tokio::spawn(async move {
            loop {
                let connected = async {
                    let mut l = PgListener::connect_with(&pool).await?;
                    l.listen(NOTIFY_CHANNEL).await?;
                    Ok::<_, sqlx::Error>(l)
                }
                .await;
                let Ok(mut l) = connected else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                while l.try_recv().await.is_ok() {
                    wake.notify_one();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let _stop_listener = AbortOnDrop(listener);
    let mut after = from;
    let mut failures = 0u32;
    loop {
        match event_log::read_after(feed.pool(), after, BATCH).await {
            Ok(batch) => {
                failures = 0;
                let full = batch.len() as i64 == BATCH;
                for stored in batch {
                    let at = stored.position();
                    match feed.enrich(stored, true).await {
                        Ok(event) => {
                            // No receiver is fine: nobody is listening now.
                            let _ = events.send(Arc::new(event));
                        }
                        Err(e) => tracing::warn!(error = %e, "live feed: event not broadcast"),
                    }
                    after = at;
                    position.send_replace(after);
                }
                if full {
                    continue;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "live feed cannot read the event store; retrying");
                }
                LIVE_FEED_BACKOFF.sleep(failures).await;
                continue;
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which events a client gets.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One order: its order, payment and delivery aggregates.
    Order(OrderId),
    /// Order status changes and delivery events (rider positions), optionally
    /// of one restaurant, or only changes into one order status.
    Ops {
        restaurant_id: Option<Uuid>,
        status: Option<String>,
    },
}

impl Scope {
    fn matches(&self, event: &FeedEvent) -> bool {
        match self {
            Scope::Order(id) => event.order_id == Some(id.0),
            Scope::Ops {
                restaurant_id,
                status,
            } => {
                event.aggregate_type != AggregateKind::Payment
                    && restaurant_id.is_none_or(|r| event.restaurant_id == Some(r))
                    && status.as_deref().is_none_or(|s| event.status == Some(s))
            }
        }
    }

    async fn read_after(
        &self,
        pool: &PgPool,
        after: Position,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        match self {
            Scope::Order(id) => {
                let order = id.to_string();
                let payment = PaymentId::for_order(*id).to_string();
                let delivery = DeliveryId::for_order(*id).to_string();
                event_log::read_aggregates_after(
                    pool,
                    &[
                        (AggregateKind::Order.as_str(), order.as_str()),
                        (AggregateKind::Payment.as_str(), payment.as_str()),
                        (AggregateKind::Delivery.as_str(), delivery.as_str()),
                    ],
                    after,
                    BATCH,
                )
                .await
            }
            Scope::Ops { .. } => {
                event_log::read_after_of_types(
                    pool,
                    after,
                    &[
                        AggregateKind::Order.as_str(),
                        AggregateKind::Delivery.as_str(),
                    ],
                    BATCH,
                )
                .await
            }
        }
    }
}

/// One client's stream: the subscription is taken (so a dependency outage
/// is answered with 503 before streaming starts), then [`pump`] runs in a
/// task of its own until the client goes away.
pub async fn open(
    feed: &Feed,
    scope: Scope,
    audience: Audience,
    resume_after: Option<Position>,
) -> Result<mpsc::Receiver<Bytes>, FeedError> {
    let (rx, feeder_at) = feed.subscribe().await?;
    let (tx, out) = mpsc::channel(256);
    let after = resume_after.unwrap_or(feeder_at);
    tokio::spawn(pump(feed.clone(), scope, audience, after, rx, tx));
    Ok(out)
}

async fn pump(
    feed: Feed,
    scope: Scope,
    audience: Audience,
    mut after: Position,
    mut rx: broadcast::Receiver<Arc<FeedEvent>>,
    tx: mpsc::Sender<Bytes>,
) {
    loop {
        // Catch up from the store.
        loop {
            let batch = match scope.read_after(feed.pool(), after).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "stream cannot read the event store; closing it");
                    return;
                }
            };
            let full = batch.len() as i64 == BATCH;
            for stored in batch {
                let at = stored.position();
                let event = match feed.enrich(stored, false).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "stream cannot read an event; closing it");
                        return;
                    }
                };
                if scope.matches(&event) && tx.send(event.to_sse(audience)).await.is_err() {
                    return;
                }
                after = at;
            }
            if !full {
                break;
            }
        }
        // Then live, from the broadcast.
        loop {
            let event = tokio::select! {
                received = rx.recv() => received,
                () = tx.closed() => return,
            };
            match event {
                Ok(event) => {
                    if event.position <= after {
                        continue;
                    }
                    after = event.position;
                    if scope.matches(&event) && tx.send(event.to_sse(audience)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    rx = rx.resubscribe();
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_and_reject_garbage() {
        let id = StreamId(Position {
            transaction_id: 7581,
            global_position: 1204,
        });
        assert_eq!(id.to_string(), "7581-1204");
        assert_eq!("7581-1204".parse::<StreamId>(), Ok(id));
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "a-1",
            "1-1-1",
            "1 -2",
            "99999999999999999999-1",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }
}
