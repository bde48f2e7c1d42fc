//! The use cases: every command the API or the saga sends, by name.
//!
//! A workflow is plain data (ids, amounts, texts: the contract's vocabulary,
//! no domain types) that says what the caller wants. Running it gathers what
//! the decision needs — the aggregate, another aggregate it depends on,
//! reference data — checks what the caller ([`CommandContext::actor`]) may do
//! with it, builds the domain command and lets the aggregate decide. The API
//! parses, authorizes the role, runs one workflow and answers; the saga runs
//! the same workflows, so a rule lives in one place.
//!
//! Every workflow runs inside [`CommandService::answer`]: a repeated command
//! (same `Idempotency-Key`, same saga command id) gets the first answer, and
//! every rejection — a missing restaurant, an order that is not the caller's,
//! a card payment not yet authorized, a domain refusal — is remembered
//! against the key like any other answer.
//!
//! | workflow | aggregate | also reads |
//! |---|---|---|
//! | [`PlaceOrder`] | order (new) | restaurant and menu items |
//! | [`ConfirmOrder`] | order | the order's payment |
//! | [`AcceptOrder`], [`RejectOrder`], [`MarkReady`] | order | |
//! | [`MarkPickedUp`], [`MarkDelivered`], [`CancelOrder`] | order | |
//! | [`RecordCashCollected`] | payment (new) | the order, its delivery's rider |
//! | [`AuthorizePayment`] | payment | the order (amount, card, owner) |
//! | [`CapturePayment`], [`RefundPayment`] | payment | the order (delivered, price) |
//! | [`VoidPayment`] | payment | |
//! | [`RequestDelivery`] | delivery (new) | the order (addresses, readiness) |
//! | [`AssignRider`] | delivery | the rider (exists, active) |
//! | [`UnassignRider`], [`ReportLocation`], [`ConfirmPickup`] | delivery | |
//! | [`CompleteDelivery`], [`FailDelivery`], [`CancelDelivery`] | delivery | |

mod deliveries;
mod orders;
mod payments;

pub use deliveries::{
    AssignRider, CancelDelivery, CompleteDelivery, ConfirmPickup, FailDelivery,
    MAX_DROPOFF_ATTEMPTS, ReportLocation, RequestDelivery, UnassignRider,
};
pub use orders::{
    AcceptOrder, CancelOrder, ConfirmOrder, MarkDelivered, MarkPickedUp, MarkReady, PlaceOrder,
    RecordCashCollected, RejectOrder,
};
pub use payments::{AuthorizePayment, CapturePayment, RefundPayment, VoidPayment};

use ordertrail_domain::{Delivery, Order};
use ordertrail_schemas::{Actor, ActorRole, DeliveryId, OrderId};

use crate::service::{
    CommandContext, CommandError, CommandOutcome, CommandService, not_found, order_not_found,
};

macro_rules! workflows {
    ($($name:ident),+ $(,)?) => {
        /// One use case, as data: what the saga stores and retries, and what
        /// [`CommandService::run`] runs.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Workflow {
            $($name($name),)+
        }

        $(impl From<$name> for Workflow {
            fn from(w: $name) -> Self {
                Workflow::$name(w)
            }
        })+

        impl Workflow {
            /// The use case's name (logs, metrics, spans).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Workflow::$name(_) => stringify!($name),)+
                }
            }

            /// The id of the aggregate the command is decided on.
            pub fn aggregate_id(&self, ctx: &CommandContext) -> String {
                match self {
                    $(Workflow::$name(w) => w.target(ctx).to_string(),)+
                }
            }
        }

        impl CommandService {
            /// Run one use case (see the [module documentation](self)).
            pub async fn run(
                &self,
                ctx: &CommandContext,
                workflow: impl Into<Workflow>,
            ) -> Result<CommandOutcome, CommandError> {
                match workflow.into() {
                    $(Workflow::$name(w) => {
                        let target = w.target(ctx);
                        // Boxed: one small future whichever use case runs (the
                        // largest would otherwise size every caller's stack frame).
                        let perform = Box::pin(w.perform(self, ctx));
                        self.answer(ctx, stringify!($name), &target, perform).await
                    })+
                }
            }
        }
    };
}

workflows!(
    PlaceOrder,
    ConfirmOrder,
    AcceptOrder,
    RejectOrder,
    MarkReady,
    MarkPickedUp,
    MarkDelivered,
    CancelOrder,
    RecordCashCollected,
    AuthorizePayment,
    CapturePayment,
    VoidPayment,
    RefundPayment,
    RequestDelivery,
    AssignRider,
    UnassignRider,
    ReportLocation,
    ConfirmPickup,
    CompleteDelivery,
    FailDelivery,
    CancelDelivery,
);

// ------------------------------------------------------------ who may act

/// A customer acts only on their own orders; other roles are checked by the
/// API's role rules (and the domain's, for cancellation).
fn customer_may_act(actor: &Actor, id: OrderId, order: &Order) -> Result<(), CommandError> {
    let (own, owner) = (actor.customer_id(), order.customer_id());
    owner_may_act(actor, ActorRole::Customer, own, owner, || {
        order_not_found(id)
    })
}

/// A restaurant acts only on its own orders.
fn restaurant_may_act(actor: &Actor, id: OrderId, order: &Order) -> Result<(), CommandError> {
    let (own, owner) = (actor.restaurant_id(), order.restaurant_id());
    owner_may_act(actor, ActorRole::Restaurant, own, owner, || {
        order_not_found(id)
    })
}

/// A rider acts only on the delivery they are assigned to; staff and the
/// saga on any.
fn rider_may_act(actor: &Actor, id: DeliveryId, delivery: &Delivery) -> Result<(), CommandError> {
    let (own, owner) = (actor.rider_id(), delivery.assigned_rider());
    owner_may_act(actor, ActorRole::Rider, own, owner, || not_found(id))
}

/// An actor of `role` acts only where its own id (`own`) is the one the
/// aggregate names (`owner`); anything else is answered as `not_found`, so it
/// learns nothing of other parties' orders. Actors of other roles pass.
fn owner_may_act<T: PartialEq>(
    actor: &Actor,
    role: ActorRole,
    own: Option<T>,
    owner: Option<T>,
    not_found: impl FnOnce() -> CommandError,
) -> Result<(), CommandError> {
    if actor.role == role && (own.is_none() || own != owner) {
        return Err(not_found());
    }
    Ok(())
}

impl CommandService {
    /// May `actor` see order `id`? Decided on the order's events in the store
    /// (not a read model, which may lag a just-placed order) by the same rules
    /// the workflows apply: staff and auditors see every order, a customer
    /// their own, a restaurant its own, a rider the one they deliver. `false`
    /// for an order that does not exist, and for the system role.
    pub async fn may_see_order(&self, actor: &Actor, id: OrderId) -> Result<bool, CommandError> {
        let Some((order, _)) = self.load_order(id).await? else {
            return Ok(false);
        };
        Ok(match actor.role {
            ActorRole::Ops | ActorRole::Admin | ActorRole::Auditor => true,
            ActorRole::Customer => {
                actor.customer_id().is_some() && customer_may_act(actor, id, &order).is_ok()
            }
            ActorRole::Restaurant => {
                actor.restaurant_id().is_some() && restaurant_may_act(actor, id, &order).is_ok()
            }
            ActorRole::Rider => {
                let delivery_id = DeliveryId::for_order(id);
                actor.rider_id().is_some()
                    && self
                        .load_delivery(delivery_id)
                        .await?
                        .is_some_and(|(d, _)| rider_may_act(actor, delivery_id, &d).is_ok())
            }
            ActorRole::System => false,
        })
    }
}
