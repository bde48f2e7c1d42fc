//! Fixtures shared by the commands crate's integration tests: actors, the
//! Berlin order every write-side test places, and the relay or saga running
//! as a task.

use std::future::Future;
use std::time::Duration;

use ordertrail_commands::relay::RelayConfig;
use ordertrail_commands::workflows::PlaceOrder;
use ordertrail_launcher::seed::{berlin_burger_order, seed_ids};
use ordertrail_schemas::events::PaymentMethod;
use ordertrail_schemas::{Actor, ActorRole, CustomerId, GeoPoint, RiderId};
use ordertrail_testkit::kafka::TestKafka;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Partitions of every test topic.
pub(crate) const PARTITIONS: i32 = 3;

/// The relay's configuration for `kafka`'s topics (`PARTITIONS` each, one
/// replica), polling the store every `poll_interval`, with short back-off.
pub(crate) fn relay_config(
    kafka: &TestKafka,
    poll_interval: Duration,
    delivery_timeout: Duration,
) -> RelayConfig {
    let mut c = RelayConfig::new(kafka.bootstrap.clone(), kafka.prefix.clone());
    c.topic_partitions = PARTITIONS;
    c.topic_replication_factor = 1;
    c.poll_interval = poll_interval;
    c.delivery_timeout = delivery_timeout;
    c.max_backoff = Duration::from_millis(500);
    c
}

/// How long a stopping relay or saga may take.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// A task running `relay::run` or `saga::run`, stoppable gracefully or
/// abortable (a crash: the future is dropped wherever it was).
pub(crate) struct Running<E> {
    stop: Option<oneshot::Sender<()>>,
    pub(crate) task: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug + Send + 'static> Running<E> {
    /// Spawn `run(shutdown)`; `shutdown` completes when [`Self::stop`] is called.
    pub(crate) fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        Self {
            stop: Some(stop),
            task: tokio::spawn(run(stopped)),
        }
    }

    pub(crate) async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(STOP_WAIT, self.task)
            .await
            .expect("task stops");
        result.expect("task joins").expect("task ran cleanly");
    }
}

/// The shutdown future of a [`Running`] task.
pub(crate) async fn stopped(signal: oneshot::Receiver<()>) {
    let _ = signal.await;
}

pub(crate) fn ops() -> Actor {
    Actor {
        subject: "ops-1".into(),
        role: ActorRole::Ops,
    }
}

pub(crate) fn customer(id: CustomerId) -> Actor {
    Actor {
        subject: id.to_string(),
        role: ActorRole::Customer,
    }
}

/// The seeded Berlin burger place.
pub(crate) fn restaurant() -> Actor {
    Actor {
        subject: seed_ids::BERLIN_BURGERS.to_string(),
        role: ActorRole::Restaurant,
    }
}

pub(crate) fn rider(id: RiderId) -> Actor {
    Actor {
        subject: id.to_string(),
        role: ActorRole::Rider,
    }
}

/// Seed rider `n` (1-based).
pub(crate) fn rider_n(n: u128) -> RiderId {
    RiderId(seed_ids::rider(n))
}

/// A card payment with the provider's test `token`.
pub(crate) fn card(token: &str) -> PaymentMethod {
    PaymentMethod::Card {
        payment_method_ref: ordertrail_schemas::privacy::payment_method_ref(token),
    }
}

/// The seed's Berlin burger order ([`berlin_burger_order`]) paid with
/// `payment_method`, with a 1.00 tip, delivered a few doors along
/// Oranienstraße.
pub(crate) fn berlin_order(customer_id: CustomerId, payment_method: PaymentMethod) -> PlaceOrder {
    let mut order = berlin_burger_order(customer_id, Some(100));
    order.payment_method = payment_method;
    order.delivery_address.street = "Oranienstraße 1".into();
    order.delivery_address.location = GeoPoint {
        lat: 52.5010,
        lon: 13.4190,
    };
    order
}
