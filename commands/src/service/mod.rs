//! The command service: every state change goes through here.
//!
//! `execute_*` loads the aggregate from the postgres-es store, lets the pure
//! domain decide, and commits the resulting events in one transaction with the
//! event metadata DESIGN.md requires. On top of cqrs-es it adds:
//!
//! - **Command ids.** Every command has an id: derived from the actor and the
//!   `Idempotency-Key` for HTTP retries, given by the saga (derived from the
//!   causing event), or random. It is stored in each event's metadata; the
//!   `command_log` trigger (migrations/0001) lets one transaction only append
//!   for a command id, so a duplicate — a retry, a racing twin, a retry after a
//!   crash between append and response, a redelivered saga event — can never
//!   append twice. The duplicate sees a unique violation, which postgres-es
//!   reports as a conflict, and is answered with the first append.
//! - **Idempotency keys.** A key is claimed with its request fingerprint; a key
//!   reused with another body is rejected; a retry of a rejected command gets
//!   the same rejection without running again.
//! - **Optimistic concurrency.** A lost race on `(aggregate_type, aggregate_id,
//!   sequence)` that is not a duplicate is reported as [`CommandError::Conflict`],
//!   never retried silently and never an overwrite.

mod context;
mod errors;
mod executing;
mod idempotency;
mod loading;

use std::sync::Arc;

use cqrs_es::Aggregate;
use cqrs_es::persist::{EventUpcaster, PersistedEventStore};
use ordertrail_domain::{Delivery, DomainError, Order, Payment, PaymentProvider, PaymentServices};
use ordertrail_schemas::privacy::DropoffCodeKey;
use ordertrail_schemas::{AggregateKind, DeliveryId, OrderId, PaymentId};
use sqlx::PgPool;
use tracing::Instrument;

pub use context::{AppendedEvent, CommandContext, CommandOutcome, IdempotencyKey};
pub use errors::CommandError;
pub use ordertrail_domain::ErrorKind;

pub(crate) use errors::{not_found, order_not_found};
pub(crate) use executing::Start;
pub(crate) use loading::{Store, rebuild};

use crate::event_store::EventRepository;

/// Executes commands against the PostgreSQL event store.
#[derive(Clone)]
pub struct CommandService {
    inner: Arc<Inner>,
}

/// Shows no key: the drop-off code key and the provider stay out of logs.
impl std::fmt::Debug for CommandService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandService")
            .field("pool", &self.inner.pool)
            .finish_non_exhaustive()
    }
}

struct Inner {
    pool: PgPool,
    /// Idempotency-key bookkeeping commits asynchronously
    /// (`synchronous_commit = off`): the durable, atomic record of an applied
    /// command is the `command_log` row written in the event transaction, so a
    /// key row lost in a crash only costs a retry one command-log look-up, and
    /// a request waits for one WAL flush instead of three.
    bookkeeping: PgPool,
    orders: Store<Order>,
    payments: Store<Payment>,
    deliveries: Store<Delivery>,
    payment_services: PaymentServices,
    /// For loads of two aggregates in one round trip (the stores above load
    /// one at a time), and the upcasters the stores apply.
    events: EventRepository,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    /// Derives and hashes drop-off codes (`DROPOFF_CODE_KEY`).
    dropoff_code_key: DropoffCodeKey,
}

impl CommandService {
    pub fn new(pool: PgPool, provider: Arc<dyn PaymentProvider>) -> Self {
        let repo = || EventRepository::new(pool.clone());
        Self {
            inner: Arc::new(Inner {
                orders: PersistedEventStore::new_event_store(repo())
                    .with_upcasters(ordertrail_schemas::upcasters::all()),
                payments: PersistedEventStore::new_event_store(repo())
                    .with_upcasters(ordertrail_schemas::upcasters::all()),
                deliveries: PersistedEventStore::new_event_store(repo())
                    .with_upcasters(ordertrail_schemas::upcasters::all()),
                payment_services: PaymentServices::new(provider),
                events: repo(),
                upcasters: ordertrail_schemas::upcasters::all(),
                dropoff_code_key: DropoffCodeKey::for_tests(),
                bookkeeping: ordertrail_platform::db::pool_options(
                    pool.options().get_max_connections(),
                )
                .connect_lazy_with(
                    (*pool.connect_options())
                        .clone()
                        .options([("synchronous_commit", "off")]),
                ),
                pool,
            }),
        }
    }

    /// The secret drop-off codes are derived from and hashed with. Every
    /// process that requests deliveries, completes them or shows the code to
    /// the customer (API, saga) must use the same key; without this call the
    /// public test key ([`DropoffCodeKey::for_tests`]) is used.
    pub fn with_dropoff_code_key(self, key: DropoffCodeKey) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => {
                tracing::error!(
                    "with_dropoff_code_key called on a shared service; key not changed"
                );
                return Self { inner: shared };
            }
        };
        inner.dropoff_code_key = key;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The drop-off code of an order's delivery, for the order's customer only.
    pub fn dropoff_code_for(&self, order_id: OrderId) -> String {
        self.inner
            .dropoff_code_key
            .code_for(DeliveryId::for_order(order_id))
    }

    /// Every stored form of `code` for this delivery (see
    /// [`DropoffCodeKey::candidates`]), for `CompleteDelivery`.
    pub fn dropoff_code_hashes(&self, delivery_id: DeliveryId, code: &str) -> Vec<String> {
        self.inner.dropoff_code_key.candidates(delivery_id, code)
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Execute one domain command on one aggregate, as it is: the entry for
    /// commands that need nothing but the aggregate itself (the saga's
    /// follow-ups, tests). Use cases that need more go through
    /// [`crate::workflows`].
    pub async fn execute<T: Target>(
        &self,
        ctx: &CommandContext,
        id: T,
        command: <T::Aggregate as Aggregate>::Command,
    ) -> Result<CommandOutcome, CommandError> {
        let name = T::command_name(&command);
        let decide = self.decide_on(ctx, id, Start::Load, move |_, _| Ok(command));
        self.answer(ctx, name, &id, decide).await
    }

    /// Every command's frame: in the command's span, claim the idempotency
    /// key and answer a repeat from the first answer; otherwise run `decide`
    /// and remember a rejection for retries, whichever step rejected (a
    /// lookup, an ownership check, the domain).
    pub(crate) async fn answer(
        &self,
        ctx: &CommandContext,
        name: &'static str,
        aggregate_id: &(dyn std::fmt::Display + Sync),
        decide: impl Future<Output = Result<CommandOutcome, CommandError>>,
    ) -> Result<CommandOutcome, CommandError> {
        let span = tracing::info_span!("command", command = name, aggregate_id = %aggregate_id, command_id = %ctx.command_id());
        async {
            if let Some(answer) = self.preflight(ctx).await? {
                return answer;
            }
            let result = decide.await;
            if let Err(error @ CommandError::Rejected { code, .. }) = &result {
                tracing::info!(code, "command rejected");
                self.remember_rejection(ctx, error).await;
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Decide on the aggregate `id` names (after [`Self::answer`]'s
    /// preflight).
    pub(crate) async fn decide_on<T: Target>(
        &self,
        ctx: &CommandContext,
        id: T,
        start: Start<T::Aggregate>,
        build: impl FnOnce(
            &T::Aggregate,
            i64,
        ) -> Result<<T::Aggregate as Aggregate>::Command, CommandError>,
    ) -> Result<CommandOutcome, CommandError> {
        let services = T::services(self, ctx);
        let id = id.to_string();
        self.decide(T::store(self), &services, ctx, (T::KIND, &id), start, build)
            .await
    }

    /// The key drop-off codes are derived from and hashed with.
    pub(crate) fn dropoff_code_key(&self) -> &DropoffCodeKey {
        &self.inner.dropoff_code_key
    }
}

/// An aggregate id the service decides on: its kind, its store and the
/// services its commands get.
pub trait Target: std::fmt::Display + Copy + Send + Sync + sealed::Sealed {
    /// The aggregate the id names.
    type Aggregate: Aggregate<Error = Self::Error>;
    /// Its domain error.
    type Error: DomainError;
    /// Its kind in the store.
    const KIND: AggregateKind;
    #[doc(hidden)]
    fn store(s: &CommandService) -> &Store<Self::Aggregate>;
    #[doc(hidden)]
    fn services(
        s: &CommandService,
        ctx: &CommandContext,
    ) -> <Self::Aggregate as Aggregate>::Services;
    #[doc(hidden)]
    fn command_name(command: &<Self::Aggregate as Aggregate>::Command) -> &'static str;
}

mod sealed {
    pub trait Sealed {}
}

/// `Target` for an aggregate's id: `id => Aggregate, Error, KIND, its store
/// field, and how its commands' services are built`.
macro_rules! target {
    ($(#[$doc:meta])* $id:ty => $aggregate:ty, $error:ty, $kind:expr, $store:ident,
        |$s:pat_param, $ctx:pat_param| $services:expr) => {
        impl sealed::Sealed for $id {}

        $(#[$doc])*
        impl Target for $id {
            type Aggregate = $aggregate;
            type Error = $error;
            const KIND: AggregateKind = $kind;
            fn store(s: &CommandService) -> &Store<$aggregate> {
                &s.inner.$store
            }
            fn services(
                $s: &CommandService,
                $ctx: &CommandContext,
            ) -> <$aggregate as Aggregate>::Services {
                $services
            }
            fn command_name(command: &<$aggregate as Aggregate>::Command) -> &'static str {
                command.name()
            }
        }
    };
}

target!(OrderId => Order, ordertrail_domain::OrderError, AggregateKind::Order, orders, |_, _| ());
target!(
    /// Provider calls carry a key derived from the command id.
    PaymentId => Payment, ordertrail_domain::PaymentError, AggregateKind::Payment, payments,
    |s, ctx| s.inner.payment_services.for_command(ctx.command_id())
);
target!(
    DeliveryId => Delivery, ordertrail_domain::DeliveryError, AggregateKind::Delivery, deliveries,
    |_, _| ()
);
