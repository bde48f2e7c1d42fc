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

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventStoreAggregateContext, EventUpcaster, PersistedEventStore, SerializedEvent,
};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use ordertrail_domain::delivery::RequestDelivery;
use ordertrail_domain::order::PlaceOrder;
use ordertrail_domain::{
    Delivery, DeliveryCommand, DomainError, ErrorKind, Order, OrderCommand, OrderError,
    OrderStatus, Payment, PaymentCommand, PaymentProvider, PaymentServices,
};
use ordertrail_schemas::events::{DeliveryAddress, PaymentMethod};
use ordertrail_schemas::privacy::DropoffCodeKey;
use ordertrail_schemas::{
    Actor, AggregateKind, CustomerId, DeliveryId, EventMetadata, MenuItemId, Money, OrderId,
    PaymentId, RestaurantId,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::catalog::{self, CatalogError};
use crate::event_store::EventRepository;

/// Namespace of command ids derived from idempotency keys.
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7274_7261_696c_0000_0000_0002);

/// Who asks, and how to recognise the same request again.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub request_id: String,
    command_id: Uuid,
    idempotency: Option<IdempotencyKey>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
}

/// An `Idempotency-Key` with the fingerprint of the request that used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// Hash of what makes the request the same request (method, path, body).
    pub request_hash: String,
}

impl CommandContext {
    /// A one-off command with a random id.
    pub fn new(actor: Actor, request_id: impl Into<String>) -> Self {
        Self {
            actor,
            request_id: request_id.into(),
            command_id: Uuid::new_v4(),
            idempotency: None,
            correlation_id: None,
            causation_id: None,
        }
    }

    /// A request carrying an `Idempotency-Key`: the command id is derived from
    /// the actor and the key, so every retry is the same command.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        let name = format!(
            "{}\u{0}{}\u{0}{}",
            self.actor.role, self.actor.subject, key.key
        );
        self.command_id = Uuid::new_v5(&COMMAND_ID_NAMESPACE, name.as_bytes());
        self.idempotency = Some(key);
        self
    }

    /// A command whose id the caller determines (the saga derives it from the
    /// event that caused it), with that event's correlation and causation.
    pub fn caused_by(mut self, command_id: Uuid, correlation_id: Uuid, causation_id: Uuid) -> Self {
        self.command_id = command_id;
        self.correlation_id = Some(correlation_id);
        self.causation_id = Some(causation_id);
        self
    }

    pub fn command_id(&self) -> Uuid {
        self.command_id
    }

    /// An id derived from this command (e.g. the id of the order a
    /// `PlaceOrder` creates), stable across retries of the same command.
    pub fn derived_id(&self, what: &str) -> Uuid {
        Uuid::new_v5(&self.command_id, what.as_bytes())
    }

    fn is_repeatable(&self) -> bool {
        self.idempotency.is_some() || self.causation_id.is_some()
    }

    fn metadata(&self) -> EventMetadata {
        EventMetadata {
            command_id: self.command_id,
            correlation_id: self.correlation_id.unwrap_or(self.command_id),
            causation_id: self.causation_id.unwrap_or(self.command_id),
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// One event appended by a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppendedEvent {
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The event payload (see the JSON Schemas under `schemas/json/`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandOutcome {
    #[schema(value_type = String, example = "Order")]
    pub aggregate_type: AggregateKind,
    pub aggregate_id: String,
    /// The aggregate's version after the command (its last sequence).
    pub version: i64,
    pub events: Vec<AppendedEvent>,
    /// True when this answers a repeated command from the first execution.
    #[serde(default)]
    pub replayed: bool,
}

impl CommandOutcome {
    /// Whether the command appended an event of this type.
    pub fn has_event(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e.event_type == event_type)
    }
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A business rule said no (the domain error's code and kind).
    #[error("{message}")]
    Rejected {
        code: &'static str,
        kind: ErrorKind,
        message: String,
    },
    /// Another command changed the aggregate first; reload and decide again.
    #[error("the {aggregate_type} was changed concurrently; retry with its new state")]
    Conflict { aggregate_type: AggregateKind },
    /// The Idempotency-Key was used before with a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// The database cannot be reached.
    #[error("the event store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A fault of our own (bad stored data, unexpected database error).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CommandError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Rejected { code, .. } => code,
            CommandError::Conflict { .. } => "concurrency_conflict",
            CommandError::IdempotencyKeyReused => "idempotency_key_reused",
            CommandError::Unavailable(_) => "dependency_unavailable",
            CommandError::Internal(_) => "internal_error",
        }
    }

    /// The kind of failure, `None` for internal faults.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            CommandError::Rejected { kind, .. } => Some(*kind),
            CommandError::Conflict { .. } => Some(ErrorKind::Conflict),
            CommandError::IdempotencyKeyReused => Some(ErrorKind::Invalid),
            CommandError::Unavailable(_) => Some(ErrorKind::Unavailable),
            CommandError::Internal(_) => None,
        }
    }

    /// A rejection with a stable code and kind.
    pub fn rejected(code: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        CommandError::Rejected {
            code,
            kind,
            message: message.into(),
        }
    }

    fn from_domain<E: DomainError>(e: &E) -> Self {
        CommandError::Rejected {
            code: e.code(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<sqlx::Error> for CommandError {
    fn from(e: sqlx::Error) -> Self {
        if ordertrail_platform::db::is_unreachable(&e) {
            CommandError::Unavailable(Box::new(e))
        } else {
            CommandError::Internal(e.to_string())
        }
    }
}

impl From<CatalogError> for CommandError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Database(e) => e.into(),
            CatalogError::UnknownRestaurant(id) => CommandError::rejected(
                "restaurant_not_found",
                ErrorKind::NotFound,
                format!("restaurant {id} does not exist"),
            ),
            CatalogError::Invalid(m) => {
                CommandError::rejected("invalid_reference_data", ErrorKind::Invalid, m)
            }
        }
    }
}

/// A rejection as stored for idempotent replay.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRejection {
    code: String,
    kind: ErrorKind,
    message: String,
}

enum Claim {
    /// First use of the key: nothing can have been appended for it yet.
    Fresh,
    /// An earlier use that never recorded its answer (still running, or its
    /// process died): the command log decides.
    Unfinished,
    /// The key's earlier request finished with this rejection.
    Rejected(StoredRejection),
    /// The key's earlier request finished with this outcome.
    Succeeded(CommandOutcome),
}

/// Everything a `PlaceOrder` request says; the service looks up the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrderInput {
    pub customer_id: CustomerId,
    pub restaurant_id: RestaurantId,
    pub items: Vec<(MenuItemId, u32)>,
    pub delivery_address: DeliveryAddress,
    pub payment_method: PaymentMethod,
    /// Tip in minor units of the restaurant's currency.
    pub tip_minor: Option<i64>,
}

type Store<A> = PersistedEventStore<EventRepository, A>;

/// Where a decision starts from.
enum Start<A: Aggregate> {
    /// Load the aggregate's events first.
    Load,
    /// The aggregate id is new (derived from this command's id): decide on
    /// the empty state without reading. Should it exist after all, the append
    /// at sequence 1 conflicts and the conflict path answers.
    New,
    /// Already loaded (together with another aggregate, in one round trip).
    Loaded(EventStoreAggregateContext<A>),
}

/// Executes commands against the PostgreSQL event store.
#[derive(Clone)]
pub struct CommandService {
    inner: Arc<Inner>,
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

    pub async fn execute_order(
        &self,
        ctx: &CommandContext,
        id: OrderId,
        command: OrderCommand,
    ) -> Result<CommandOutcome, CommandError> {
        let name = command.name();
        self.execute(&self.inner.orders, &(), ctx, (AggregateKind::Order, &id.to_string()), command)
            .instrument(tracing::info_span!("command", command = name, aggregate_id = %id, command_id = %ctx.command_id))
            .await
    }

    /// Build an order command from the order's current state and execute it,
    /// with one load: `build` checks what the caller may do with this order
    /// (ownership, preconditions on other aggregates) and returns the
    /// command, or the rejection. An order that does not exist is rejected
    /// with `order_not_found` before `build` runs.
    pub async fn execute_order_with(
        &self,
        ctx: &CommandContext,
        id: OrderId,
        name: &'static str,
        build: impl FnOnce(&Order) -> Result<OrderCommand, CommandError> + Send,
    ) -> Result<CommandOutcome, CommandError> {
        self.decide_order(ctx, id, name, false, |order, _| build(order))
            .await
    }

    /// Like [`Self::execute_order_with`], for commands that also depend on
    /// the order's payment (confirming a card order needs it authorized):
    /// both are loaded in one round trip.
    pub async fn execute_order_with_payment(
        &self,
        ctx: &CommandContext,
        id: OrderId,
        name: &'static str,
        build: impl FnOnce(&Order, &Payment) -> Result<OrderCommand, CommandError> + Send,
    ) -> Result<CommandOutcome, CommandError> {
        self.decide_order(ctx, id, name, true, |order, payment| {
            build(order, payment.unwrap_or(&Payment::default()))
        })
        .await
    }

    /// Preflight, then decide on the order (loaded alone, or together with
    /// its payment when `with_payment`).
    async fn decide_order(
        &self,
        ctx: &CommandContext,
        id: OrderId,
        name: &'static str,
        with_payment: bool,
        build: impl FnOnce(&Order, Option<&Payment>) -> Result<OrderCommand, CommandError> + Send,
    ) -> Result<CommandOutcome, CommandError> {
        let run = async {
            if let Some(answer) = self.preflight(ctx).await? {
                return answer;
            }
            let (start, payment) = if with_payment {
                let (order, payment) = self.load_order_and_payment(id).await?;
                (Start::Loaded(order), Some(payment.aggregate))
            } else {
                (Start::Load, None)
            };
            let build = move |order: &Order, version: i64| {
                if version == 0 {
                    return Err(order_not_found(id));
                }
                build(order, payment.as_ref())
            };
            self.decide(
                &self.inner.orders,
                &(),
                ctx,
                (AggregateKind::Order, &id.to_string()),
                start,
                build,
            )
            .await
        };
        run.instrument(tracing::info_span!("command", command = name, aggregate_id = %id, command_id = %ctx.command_id))
            .await
    }

    pub async fn execute_payment(
        &self,
        ctx: &CommandContext,
        id: PaymentId,
        command: PaymentCommand,
    ) -> Result<CommandOutcome, CommandError> {
        let name = command.name();
        // Provider calls carry a key derived from the command id.
        let services = self.inner.payment_services.for_command(ctx.command_id);
        self.execute(
            &self.inner.payments,
            &services,
            ctx,
            (AggregateKind::Payment, &id.to_string()),
            command,
        )
        .instrument(tracing::info_span!("command", command = name, aggregate_id = %id, command_id = %ctx.command_id))
        .await
    }

    /// Build the order's payment command from the order's current state and
    /// execute it, with one load of the order and its payment (authorizing
    /// needs the order's amount, method and owner). An order that does not
    /// exist is rejected with `order_not_found` before `build` runs.
    pub async fn execute_payment_for_order(
        &self,
        ctx: &CommandContext,
        order_id: OrderId,
        name: &'static str,
        build: impl FnOnce(&Order) -> Result<PaymentCommand, CommandError> + Send,
    ) -> Result<CommandOutcome, CommandError> {
        let payment_id = PaymentId::for_order(order_id);
        let run = async {
            if let Some(answer) = self.preflight(ctx).await? {
                return answer;
            }
            let (order, payment) = self.load_order_and_payment(order_id).await?;
            let build = move |_: &Payment, _: i64| {
                if order.current_sequence == 0 {
                    return Err(order_not_found(order_id));
                }
                build(&order.aggregate)
            };
            let services = self.inner.payment_services.for_command(ctx.command_id);
            self.decide(
                &self.inner.payments,
                &services,
                ctx,
                (AggregateKind::Payment, &payment_id.to_string()),
                Start::Loaded(payment),
                build,
            )
            .await
        };
        run.instrument(tracing::info_span!("command", command = name, aggregate_id = %payment_id, command_id = %ctx.command_id))
            .await
    }

    /// An order and its payment, loaded in one round trip and rebuilt exactly
    /// as the stores rebuild them (upcast, deserialize, apply).
    async fn load_order_and_payment(
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

    pub async fn execute_delivery(
        &self,
        ctx: &CommandContext,
        id: DeliveryId,
        command: DeliveryCommand,
    ) -> Result<CommandOutcome, CommandError> {
        let name = command.name();
        self.execute(&self.inner.deliveries, &(), ctx, (AggregateKind::Delivery, &id.to_string()), command)
            .instrument(tracing::info_span!("command", command = name, aggregate_id = %id, command_id = %ctx.command_id))
            .await
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

    /// Place an order: look up the restaurant and menu items, then decide. The
    /// order id is derived from the command id, so a retried request addresses
    /// the same order.
    pub async fn place_order(
        &self,
        ctx: &CommandContext,
        input: PlaceOrderInput,
    ) -> Result<CommandOutcome, CommandError> {
        let order_id = OrderId(ctx.derived_id("order"));
        // Claim first: a repeat is answered from the first append, whatever
        // the catalog says now.
        if let Some(answer) = self.preflight(ctx).await? {
            return answer;
        }
        let command = match self.price_from_catalog(order_id, input).await {
            Ok(command) => command,
            Err(e) => return Err(self.reject(ctx, e).await),
        };
        let command = OrderCommand::PlaceOrder(command);
        self.decide(&self.inner.orders, &(), ctx, (AggregateKind::Order, &order_id.to_string()), Start::New, |_: &Order, _| Ok(command))
            .instrument(tracing::info_span!("command", command = "PlaceOrder", aggregate_id = %order_id, command_id = %ctx.command_id))
            .await
    }

    /// Look up the restaurant and menu items a `PlaceOrder` decision needs.
    async fn price_from_catalog(
        &self,
        order_id: OrderId,
        input: PlaceOrderInput,
    ) -> Result<PlaceOrder, CommandError> {
        let pool = &self.inner.pool;
        let ids: Vec<MenuItemId> = input.items.iter().map(|(id, _)| *id).collect();
        let (restaurant, found) =
            catalog::restaurant_with_menu_items(pool, input.restaurant_id, &ids)
                .await?
                .ok_or_else(|| {
                    CommandError::rejected(
                        "restaurant_not_found",
                        ErrorKind::NotFound,
                        format!("restaurant {} does not exist", input.restaurant_id),
                    )
                })?;
        let mut items = Vec::with_capacity(input.items.len());
        for (id, quantity) in &input.items {
            let item = found.iter().find(|m| m.id == *id).ok_or_else(|| {
                CommandError::rejected(
                    "menu_item_not_found",
                    ErrorKind::Invalid,
                    format!("menu item {id} does not exist"),
                )
            })?;
            items.push((item.snapshot(restaurant.currency), *quantity));
        }
        Ok(PlaceOrder {
            order_id,
            customer_id: input.customer_id,
            restaurant: restaurant.snapshot(),
            items,
            delivery_address: input.delivery_address,
            payment_method: input.payment_method,
            tip: input.tip_minor.map(|t| Money::new(t, restaurant.currency)),
            now: Utc::now(),
        })
    }

    /// Request the delivery of an accepted order: pickup at the restaurant,
    /// drop-off at the customer's address, a 4-digit drop-off code derived
    /// from the command id (so a retried request keeps its code).
    pub async fn request_delivery_for_order(
        &self,
        ctx: &CommandContext,
        order_id: OrderId,
    ) -> Result<CommandOutcome, CommandError> {
        if let Some(answer) = self.preflight(ctx).await? {
            return answer;
        }
        let delivery_id = DeliveryId::for_order(order_id);
        let command = match self.delivery_request_for(order_id, delivery_id).await {
            Ok(command) => command,
            Err(e) => return Err(self.reject(ctx, e).await),
        };
        self.decide(
            &self.inner.deliveries,
            &(),
            ctx,
            (AggregateKind::Delivery, &delivery_id.to_string()),
            Start::Load,
            |_: &Delivery, _| Ok(DeliveryCommand::RequestDelivery(command)),
        )
        .instrument(tracing::info_span!("command", command = "RequestDelivery", aggregate_id = %delivery_id, command_id = %ctx.command_id))
        .await
    }

    async fn delivery_request_for(
        &self,
        order_id: OrderId,
        delivery_id: DeliveryId,
    ) -> Result<RequestDelivery, CommandError> {
        let (order, _) = self.load_order(order_id).await?.ok_or_else(|| {
            CommandError::rejected(
                "order_not_found",
                ErrorKind::NotFound,
                format!("order {order_id} does not exist"),
            )
        })?;
        if !matches!(
            order.status(),
            Some(OrderStatus::Accepted | OrderStatus::ReadyForPickup)
        ) {
            return Err(CommandError::rejected(
                "order_not_accepted",
                ErrorKind::Conflict,
                format!(
                    "order {order_id} must be accepted by the restaurant before a delivery is requested"
                ),
            ));
        }
        let placed = order
            .placed()
            .ok_or_else(|| CommandError::Internal(format!("order {order_id} has no placement")))?;
        let key = &self.inner.dropoff_code_key;
        let dropoff_code_hash = key.hash(delivery_id, &key.code_for(delivery_id));
        Ok(RequestDelivery {
            delivery_id,
            order_id,
            restaurant_id: placed.restaurant_id,
            pickup: placed.restaurant_location,
            dropoff: placed.delivery_address.location,
            dropoff_code_hash,
            ready_by: order.ready_by(),
            now: Utc::now(),
        })
    }

    async fn execute<A>(
        &self,
        store: &Store<A>,
        services: &A::Services,
        ctx: &CommandContext,
        target: (AggregateKind, &str),
        command: A::Command,
    ) -> Result<CommandOutcome, CommandError>
    where
        A: Aggregate,
        A::Error: DomainError,
    {
        if let Some(answer) = self.preflight(ctx).await? {
            return answer;
        }
        self.decide(store, services, ctx, target, Start::Load, |_: &A, _| {
            Ok(command)
        })
        .await
    }

    /// Before deciding: claim the idempotency key and find out whether this
    /// command was already answered or applied. `Some` is the answer to give.
    async fn preflight(
        &self,
        ctx: &CommandContext,
    ) -> Result<Option<Result<CommandOutcome, CommandError>>, CommandError> {
        let mut maybe_applied = ctx.is_repeatable();
        if let Some(key) = &ctx.idempotency {
            match self.claim(ctx, key).await? {
                Claim::Fresh => maybe_applied = ctx.causation_id.is_some(),
                Claim::Unfinished => {}
                Claim::Succeeded(mut outcome) => {
                    outcome.replayed = true;
                    return Ok(Some(Ok(outcome)));
                }
                Claim::Rejected(r) => {
                    let code = DomainCodes::intern(&r.code);
                    return Ok(Some(Err(CommandError::Rejected {
                        code,
                        kind: r.kind,
                        message: r.message,
                    })));
                }
            }
        }
        if maybe_applied && let Some(outcome) = self.applied(ctx.command_id).await? {
            self.remember_success(ctx, &outcome).await;
            return Ok(Some(Ok(outcome)));
        }
        Ok(None)
    }

    /// Load, decide and commit (after [`Self::preflight`]). `build` turns the
    /// loaded state and version into the command (most callers already have
    /// it) or rejects.
    async fn decide<A>(
        &self,
        store: &Store<A>,
        services: &A::Services,
        ctx: &CommandContext,
        (kind, aggregate_id): (AggregateKind, &str),
        start: Start<A>,
        build: impl FnOnce(&A, i64) -> Result<A::Command, CommandError>,
    ) -> Result<CommandOutcome, CommandError>
    where
        A: Aggregate,
        A::Error: DomainError,
    {
        let started = std::time::Instant::now();
        let mut context = match start {
            Start::Loaded(context) => context,
            Start::Load => store
                .load_aggregate(aggregate_id)
                .await
                .map_err(|e| store_error(kind, e))?,
            Start::New => EventStoreAggregateContext {
                aggregate_id: aggregate_id.to_owned(),
                aggregate: A::default(),
                current_sequence: 0,
                current_snapshot: None,
            },
        };
        let version_before = i64::try_from(context.current_sequence).unwrap_or(i64::MAX);
        let sink = EventSink::<A>::default();
        let decided = match build(context.aggregate(), version_before) {
            Ok(command) => context
                .aggregate()
                .handle(command, services, &sink)
                .await
                .map_err(|e| {
                    tracing::info!(code = e.code(), "command rejected");
                    CommandError::from_domain(&e)
                }),
            Err(e) => {
                tracing::info!(code = e.code(), "command rejected");
                Err(e)
            }
        };
        if let Err(error) = decided {
            // A racing twin of this very command may have committed between the
            // check above and the load: the state it left rejects the repeat,
            // but the answer is the twin's outcome.
            if ctx.is_repeatable()
                && let Some(outcome) = self.applied(ctx.command_id).await?
            {
                self.remember_success(ctx, &outcome).await;
                return Ok(outcome);
            }
            self.remember_rejection(ctx, &error).await;
            return Err(error);
        }
        let events = sink.collect().await;
        if events.is_empty() {
            let outcome = CommandOutcome {
                aggregate_type: kind,
                aggregate_id: aggregate_id.to_owned(),
                version: version_before,
                events: vec![],
                replayed: false,
            };
            self.remember_success(ctx, &outcome).await;
            return Ok(outcome);
        }
        let appended: Vec<AppendedEvent> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                Ok(AppendedEvent {
                    sequence: version_before + 1 + i as i64,
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_value(event)
                        .map_err(|e| CommandError::Internal(e.to_string()))?,
                })
            })
            .collect::<Result<_, CommandError>>()?;
        match store.commit(events, context, ctx.metadata().to_map()).await {
            Ok(_) => {
                let outcome = CommandOutcome {
                    aggregate_type: kind,
                    aggregate_id: aggregate_id.to_owned(),
                    version: version_before + appended.len() as i64,
                    events: appended,
                    replayed: false,
                };
                metrics::histogram!("ordertrail_command_seconds", "aggregate" => kind.as_str())
                    .record(started.elapsed().as_secs_f64());
                self.remember_success(ctx, &outcome).await;
                Ok(outcome)
            }
            Err(AggregateError::AggregateConflict) => {
                // Either a duplicate of this very command won (answer with its
                // result) or another command did (a real conflict).
                if let Some(outcome) = self.applied(ctx.command_id).await? {
                    self.remember_success(ctx, &outcome).await;
                    return Ok(outcome);
                }
                metrics::counter!("ordertrail_command_conflicts_total", "aggregate" => kind.as_str()).increment(1);
                Err(CommandError::Conflict {
                    aggregate_type: kind,
                })
            }
            Err(e) => Err(store_error(kind, e)),
        }
    }

    /// A precondition checked outside the aggregate failed: remember it for
    /// retries like any rejection.
    async fn reject(&self, ctx: &CommandContext, error: CommandError) -> CommandError {
        self.remember_rejection(ctx, &error).await;
        error
    }

    /// Claim an idempotency key, or find what its first use did.
    async fn claim(
        &self,
        ctx: &CommandContext,
        key: &IdempotencyKey,
    ) -> Result<Claim, CommandError> {
        let scope = scope(&ctx.actor);
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, command_id)
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, idempotency_key) DO NOTHING",
        )
        .bind(&scope)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(ctx.command_id)
        .execute(&self.inner.bookkeeping)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Fresh);
        }
        let (hash, status, response): (String, Option<i32>, Option<serde_json::Value>) = sqlx::query_as(
            "SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(&scope)
        .bind(&key.key)
        .fetch_one(&self.inner.bookkeeping)
        .await?;
        if hash != key.request_hash {
            return Err(CommandError::IdempotencyKeyReused);
        }
        match (status, response) {
            (Some(200), Some(body)) => serde_json::from_value(body)
                .map(Claim::Succeeded)
                .map_err(|e| CommandError::Internal(format!("stored idempotent response: {e}"))),
            (Some(_), Some(body)) => serde_json::from_value(body)
                .map(Claim::Rejected)
                .map_err(|e| CommandError::Internal(format!("stored idempotent rejection: {e}"))),
            // In progress elsewhere, or its process died: the command log decides.
            _ => Ok(Claim::Unfinished),
        }
    }

    /// The outcome of a command that already appended, from the command log.
    async fn applied(&self, command_id: Uuid) -> Result<Option<CommandOutcome>, CommandError> {
        let rows: Vec<(String, String, i64, String, String, serde_json::Value)> = sqlx::query_as(
            "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::jsonb
             FROM command_log c
             JOIN events e ON e.aggregate_type = c.aggregate_type AND e.aggregate_id = c.aggregate_id
                          AND e.sequence BETWEEN c.first_sequence AND c.last_sequence
             WHERE c.command_id = $1
             ORDER BY e.sequence",
        )
        .bind(command_id)
        .fetch_all(&self.inner.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let aggregate_type = AggregateKind::parse(&first.0)
            .ok_or_else(|| CommandError::Internal(format!("unknown aggregate type {}", first.0)))?;
        let aggregate_id = first.1.clone();
        let version = rows.last().map(|r| r.2).unwrap_or_default();
        let events = rows
            .into_iter()
            .map(
                |(_, _, sequence, event_type, event_version, payload)| AppendedEvent {
                    sequence,
                    event_type,
                    event_version,
                    payload,
                },
            )
            .collect();
        Ok(Some(CommandOutcome {
            aggregate_type,
            aggregate_id,
            version,
            events,
            replayed: true,
        }))
    }

    async fn remember_success(&self, ctx: &CommandContext, outcome: &CommandOutcome) {
        let Some(key) = &ctx.idempotency else { return };
        // A command that appended is answered from the command log, which is
        // written atomically with its events: storing the response again would
        // only cost a statement per command. Only outcomes that appended
        // nothing need remembering here.
        if !outcome.events.is_empty() {
            return;
        }
        match serde_json::to_value(outcome) {
            Ok(body) => self.remember(ctx, key, 200, body).await,
            Err(e) => tracing::error!(error = %e, "cannot serialise idempotent response"),
        }
    }

    async fn remember_rejection(&self, ctx: &CommandContext, error: &CommandError) {
        let (
            Some(key),
            CommandError::Rejected {
                code,
                kind,
                message,
            },
        ) = (&ctx.idempotency, error)
        else {
            return;
        };
        // Unavailable dependencies are worth retrying: do not pin them.
        if *kind == ErrorKind::Unavailable {
            return;
        }
        let stored = StoredRejection {
            code: (*code).to_owned(),
            kind: *kind,
            message: message.clone(),
        };
        match serde_json::to_value(&stored) {
            Ok(body) => self.remember(ctx, key, 400, body).await,
            Err(e) => tracing::error!(error = %e, "cannot serialise idempotent rejection"),
        }
    }

    /// Best effort: if this fails, the command log still answers retries.
    async fn remember(
        &self,
        ctx: &CommandContext,
        key: &IdempotencyKey,
        status: i32,
        body: serde_json::Value,
    ) {
        let result = sqlx::query(
            "UPDATE idempotency_keys SET status_code = $3, response = $4, completed_at = now()
             WHERE scope = $1 AND idempotency_key = $2 AND status_code IS NULL",
        )
        .bind(scope(&ctx.actor))
        .bind(&key.key)
        .bind(status)
        .bind(body)
        .execute(&self.inner.bookkeeping)
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record idempotent response; the command log still covers retries");
        }
    }
}

fn scope(actor: &Actor) -> String {
    format!("{}:{}", actor.role, actor.subject)
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

fn order_not_found(id: OrderId) -> CommandError {
    CommandError::rejected(
        "order_not_found",
        ErrorKind::NotFound,
        format!("order {id} does not exist"),
    )
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

fn store_error<E: DomainError>(kind: AggregateKind, e: AggregateError<E>) -> CommandError {
    match e {
        AggregateError::UserError(e) => CommandError::from_domain(&e),
        AggregateError::AggregateConflict => CommandError::Conflict {
            aggregate_type: kind,
        },
        AggregateError::DatabaseConnectionError(e) => {
            tracing::error!(error = %e, aggregate = %kind, "event store unreachable");
            CommandError::Unavailable(e)
        }
        AggregateError::DeserializationError(e) => {
            tracing::error!(error = %e, aggregate = %kind, "stored event cannot be read");
            CommandError::Internal(format!("stored {kind} event cannot be read: {e}"))
        }
        // postgres-es folds pool time-outs, lost connections and server
        // shutdowns into `UnknownError`: an outage, not a fault.
        AggregateError::UnexpectedError(e)
            if ordertrail_platform::db::is_unreachable_source(e.as_ref()) =>
        {
            tracing::warn!(error = %e, aggregate = %kind, "event store unreachable");
            CommandError::Unavailable(e)
        }
        AggregateError::UnexpectedError(e) => {
            tracing::error!(error = %e, aggregate = %kind, "event store error");
            CommandError::Internal(format!("event store error: {e}"))
        }
    }
}

/// Error codes are `&'static str`; a stored rejection's code is mapped back to
/// the static string (leaking at most once per distinct code, of which there
/// are a few dozen).
struct DomainCodes;

impl DomainCodes {
    fn intern(code: &str) -> &'static str {
        use std::sync::{Mutex, OnceLock};
        static CODES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
        let codes = CODES.get_or_init(|| Mutex::new(HashMap::new()));
        let mut guard = match codes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = guard.get(code) {
            return c;
        }
        let leaked: &'static str = Box::leak(code.to_owned().into_boxed_str());
        guard.insert(code.to_owned(), leaked);
        leaked
    }
}
