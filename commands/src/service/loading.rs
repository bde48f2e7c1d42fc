//! Loading aggregates: one at a time through postgres-es, or an order and
//! its payment in one round trip, rebuilt exactly the same way.

use cqrs_es::persist::{
    EventStoreAggregateContext, EventUpcaster, PersistedEventStore, SerializedEvent,
};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use ordertrail_domain::{Delivery, DomainError, Order, OrderError, Payment};
use ordertrail_schemas::{AggregateKind, DeliveryId, OrderId, PaymentId};

use super::errors::store_error;
use super::{CommandError, CommandService};
use crate::event_store::EventRepository;

pub(crate) type Store<A> = PersistedEventStore<EventRepository, A>;

impl CommandService {
    /// An order and its payment, loaded in one round trip and rebuilt exactly
    /// as the stores rebuild them (upcast, deserialize, apply).
    pub(crate) async fn load_order_and_payment(
        &self,
        id: OrderId,
    ) -> Result<
        (
            EventStoreAggregateContext<Order>,
            EventStoreAggregateContext<Payment>,
        ),
        CommandError,
    > {
        let (order_id, payment_id) = (id.to_string(), PaymentId::for_order(id).to_string());
        let (order_events, payment_events) = self
            .inner
            .events
            .get_events_of_two((Order::TYPE, &order_id), (Payment::TYPE, &payment_id))
            .await
            .map_err(|e| {
                store_error(AggregateKind::Order, AggregateError::<OrderError>::from(e))
            })?;
        Ok((
            rebuild(
                AggregateKind::Order,
                &order_id,
                order_events,
                &self.inner.upcasters,
            )?,
            rebuild(
                AggregateKind::Payment,
                &payment_id,
                payment_events,
                &self.inner.upcasters,
            )?,
        ))
    }

    /// The current state of an order, `None` when it does not exist.
    pub async fn load_order(&self, id: OrderId) -> Result<Option<(Order, i64)>, CommandError> {
        load(&self.inner.orders, &id.to_string()).await
    }

    pub async fn load_payment(
        &self,
        id: PaymentId,
    ) -> Result<Option<(Payment, i64)>, CommandError> {
        load(&self.inner.payments, &id.to_string()).await
    }

    pub async fn load_delivery(
        &self,
        id: DeliveryId,
    ) -> Result<Option<(Delivery, i64)>, CommandError> {
        load(&self.inner.deliveries, &id.to_string()).await
    }
}

async fn load<A: Aggregate>(store: &Store<A>, id: &str) -> Result<Option<(A, i64)>, CommandError>
where
    A::Error: DomainError,
{
    let kind = AggregateKind::parse(A::TYPE).unwrap_or(AggregateKind::Order);
    let context = store
        .load_aggregate(id)
        .await
        .map_err(|e| store_error(kind, e))?;
    if context.current_sequence == 0 {
        return Ok(None);
    }
    let version = i64::try_from(context.current_sequence).unwrap_or(i64::MAX);
    Ok(Some((context.aggregate, version)))
}

/// An aggregate from its stored events, as `PersistedEventStore::load_aggregate`
/// builds it: each event upcast, deserialized and applied in sequence order.
pub(crate) fn rebuild<A>(
    kind: AggregateKind,
    id: &str,
    events: Vec<SerializedEvent>,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<EventStoreAggregateContext<A>, CommandError>
where
    A: Aggregate,
    A::Error: DomainError,
{
    let mut context = EventStoreAggregateContext {
        aggregate_id: id.to_owned(),
        aggregate: A::default(),
        current_sequence: 0,
        current_snapshot: None,
    };
    for event in events {
        let event = upcasters.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        });
        let envelope = EventEnvelope::<A>::try_from(event)
            .map_err(|e| store_error(kind, AggregateError::<A::Error>::from(e)))?;
        context.current_sequence = envelope.sequence;
        context.aggregate.apply(envelope.payload);
    }
    Ok(context)
}
