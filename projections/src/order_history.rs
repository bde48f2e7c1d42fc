//! Order history: one row per order (`order_history`, from the orders topic),
//! its payment (`order_history_payments`) and delivery
//! (`order_history_deliveries`), and the order's timeline (`order_timeline`:
//! every order, payment and delivery event, except rider location reports,
//! which live in the rider-ETA model). A timeline row lists and orders an
//! event (id, order, position, type, time); its payload and metadata stay in
//! `events` and the order-detail query reads them from there by event id.
//!
//! Each table is written by one topic only, so two instances owning different
//! partitions never write the same row, and the model is the same whatever the
//! relative order in which the three topics are consumed. Rows are loaded,
//! changed in memory event by event, and stored once per batch.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ordertrail_schemas::events::PaymentMethod;
use ordertrail_schemas::{
    AggregateKind, DeliveryEvent, DeliveryStatus, Money, OrderEvent, OrderStatus, PaymentEvent,
    PaymentStatus,
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::rows::{CopyRows, Store, Table, aggregate_uuid, apply_by_store, changed_rows, copy_row};
use crate::runtime::{ProjectionError, Projector, ReadModelTable, SourcedEvent, Written};

/// The order-history projector.
#[derive(Debug, Clone, Default)]
pub struct OrderHistory;

pub const NAME: &str = "order_history";

const ORDERS: Table = Table {
    name: "order_history",
    key: "order_id",
    columns: &[
        "order_id",
        "status",
        "customer_id",
        "restaurant_id",
        "restaurant_time_zone",
        "payment_method",
        "item_count",
        "currency",
        "subtotal_minor",
        "delivery_fee_minor",
        "service_fee_minor",
        "tax_minor",
        "tip_minor",
        "total_minor",
        "commission_minor",
        "payment_id",
        "ready_by",
        "pickup_rider_id",
        "reason",
        "placed_at",
        "confirmed_at",
        "accepted_at",
        "rejected_at",
        "ready_at",
        "picked_up_at",
        "delivered_at",
        "cancelled_at",
        "last_sequence",
        "updated_at",
    ],
};

const PAYMENTS: Table = Table {
    name: "order_history_payments",
    key: "payment_id",
    columns: &[
        "payment_id",
        "order_id",
        "status",
        "provider",
        "currency",
        "authorized_minor",
        "captured_minor",
        "refunded_minor",
        "cash_collected_minor",
        "provider_fees_minor",
        "authorized_at",
        "declined_at",
        "captured_at",
        "voided_at",
        "last_refunded_at",
        "cash_collected_at",
        "updated_at",
    ],
};

const DELIVERIES: Table = Table {
    name: "order_history_deliveries",
    key: "delivery_id",
    columns: &[
        "delivery_id",
        "order_id",
        "status",
        "rider_id",
        "requested_at",
        "assigned_at",
        "picked_up_at",
        "completed_at",
        "failed_at",
        "cancelled_at",
        "updated_at",
    ],
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderRow {
    order_id: Uuid,
    status: String,
    customer_id: Uuid,
    restaurant_id: Uuid,
    restaurant_time_zone: String,
    payment_method: String,
    item_count: i32,
    currency: String,
    subtotal_minor: i64,
    delivery_fee_minor: i64,
    service_fee_minor: i64,
    tax_minor: i64,
    tip_minor: i64,
    total_minor: i64,
    commission_minor: i64,
    payment_id: Option<Uuid>,
    ready_by: Option<DateTime<Utc>>,
    pickup_rider_id: Option<Uuid>,
    reason: Option<String>,
    placed_at: DateTime<Utc>,
    confirmed_at: Option<DateTime<Utc>>,
    accepted_at: Option<DateTime<Utc>>,
    rejected_at: Option<DateTime<Utc>>,
    ready_at: Option<DateTime<Utc>>,
    picked_up_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    last_sequence: i64,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentRow {
    payment_id: Uuid,
    order_id: Uuid,
    status: String,
    provider: Option<String>,
    currency: String,
    authorized_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    cash_collected_minor: i64,
    provider_fees_minor: i64,
    authorized_at: Option<DateTime<Utc>>,
    declined_at: Option<DateTime<Utc>>,
    captured_at: Option<DateTime<Utc>>,
    voided_at: Option<DateTime<Utc>>,
    last_refunded_at: Option<DateTime<Utc>>,
    cash_collected_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeliveryRow {
    delivery_id: Uuid,
    order_id: Uuid,
    status: String,
    rider_id: Option<Uuid>,
    requested_at: DateTime<Utc>,
    assigned_at: Option<DateTime<Utc>>,
    picked_up_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

copy_row! {
    OrderRow, order_id,
    fn copy_rest(&self, row: &mut CopyRows) {
        row.text(&self.status)
            .uuid(self.customer_id)
            .uuid(self.restaurant_id)
            .text(&self.restaurant_time_zone)
            .text(&self.payment_method)
            .int4(self.item_count)
            .text(&self.currency);
        for minor in [
            self.subtotal_minor,
            self.delivery_fee_minor,
            self.service_fee_minor,
            self.tax_minor,
            self.tip_minor,
            self.total_minor,
            self.commission_minor,
        ] {
            row.int8(minor);
        }
        row.opt(self.payment_id, CopyRows::uuid)
            .opt(self.ready_by, CopyRows::timestamptz)
            .opt(self.pickup_rider_id, CopyRows::uuid)
            .opt(self.reason.as_deref(), CopyRows::text)
            .timestamptz(self.placed_at);
        for at in [
            self.confirmed_at,
            self.accepted_at,
            self.rejected_at,
            self.ready_at,
            self.picked_up_at,
            self.delivered_at,
            self.cancelled_at,
        ] {
            row.opt(at, CopyRows::timestamptz);
        }
        row.int8(self.last_sequence).timestamptz(self.updated_at);
    }
}

copy_row! {
    PaymentRow, payment_id,
    fn copy_rest(&self, row: &mut CopyRows) {
        row.uuid(self.order_id)
            .text(&self.status)
            .opt(self.provider.as_deref(), CopyRows::text)
            .text(&self.currency);
        for minor in [
            self.authorized_minor,
            self.captured_minor,
            self.refunded_minor,
            self.cash_collected_minor,
            self.provider_fees_minor,
        ] {
            row.int8(minor);
        }
        for at in [
            self.authorized_at,
            self.declined_at,
            self.captured_at,
            self.voided_at,
            self.last_refunded_at,
            self.cash_collected_at,
        ] {
            row.opt(at, CopyRows::timestamptz);
        }
        row.timestamptz(self.updated_at);
    }
}

copy_row! {
    DeliveryRow, delivery_id,
    fn copy_rest(&self, row: &mut CopyRows) {
        row.uuid(self.order_id)
            .text(&self.status)
            .opt(self.rider_id, CopyRows::uuid)
            .timestamptz(self.requested_at);
        for at in [
            self.assigned_at,
            self.picked_up_at,
            self.completed_at,
            self.failed_at,
            self.cancelled_at,
        ] {
            row.opt(at, CopyRows::timestamptz);
        }
        row.timestamptz(self.updated_at);
    }
}

/// A timeline entry as stored: what lists and orders it. The event itself is
/// read from `events` by `event_id` (`queries::orders::order_detail`).
#[derive(Debug, Clone, Serialize)]
struct TimelineRow<'a> {
    event_id: Uuid,
    order_id: Uuid,
    global_position: i64,
    event_type: &'a str,
    recorded_at: DateTime<Utc>,
}

/// Add `amount` to a running total in `currency`, refusing other currencies.
fn add(
    event: &SourcedEvent,
    total: i64,
    currency: &str,
    amount: Money,
) -> Result<i64, ProjectionError> {
    if amount.currency.as_str() != currency {
        return Err(event.reject(format!(
            "amount {amount} is not in the payment's currency {currency}"
        )));
    }
    total
        .checked_add(amount.amount)
        .ok_or_else(|| event.reject("amount overflow"))
}

impl Projector for OrderHistory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sources(&self) -> &'static [AggregateKind] {
        &[
            AggregateKind::Order,
            AggregateKind::Payment,
            AggregateKind::Delivery,
        ]
    }

    fn tables(&self) -> &'static [ReadModelTable] {
        const {
            &[
                ReadModelTable::derived("order_history"),
                ReadModelTable::derived("order_history_payments"),
                ReadModelTable::derived("order_history_deliveries"),
                ReadModelTable::derived("order_timeline"),
            ]
        }
    }

    /// The bulk fill only copies timeline entries: its primary key (random
    /// event ids) is built once afterwards.
    fn keyed_after_fill(&self) -> &'static [&'static str] {
        &["order_timeline"]
    }

    apply_by_store!(apply_batch);
}

/// Apply a batch: rows loaded, changed in memory event by event, stored once.
async fn apply_batch(
    tx: &mut PgConnection,
    batch: &[SourcedEvent],
    mut store: Store<'_>,
) -> Result<(), ProjectionError> {
    {
        // Load every row the batch may touch.
        let mut ids: [Vec<Uuid>; 3] = Default::default();
        for e in batch {
            let slot = match e.envelope.aggregate_type {
                AggregateKind::Order => 0,
                AggregateKind::Payment => 1,
                AggregateKind::Delivery => 2,
            };
            ids[slot].push(aggregate_uuid(e)?);
        }
        let mut orders: BTreeMap<Uuid, OrderRow> = ORDERS
            .load_by_key(tx, &ids[0], |r: &OrderRow| r.order_id, &store)
            .await?;
        let mut payments: BTreeMap<Uuid, PaymentRow> = PAYMENTS
            .load_by_key(tx, &ids[1], |r: &PaymentRow| r.payment_id, &store)
            .await?;
        let mut deliveries: BTreeMap<Uuid, DeliveryRow> = DELIVERIES
            .load_by_key(tx, &ids[2], |r: &DeliveryRow| r.delivery_id, &store)
            .await?;
        let mut changed: [BTreeSet<Uuid>; 3] = Default::default();
        let mut timeline = Vec::with_capacity(batch.len());

        for e in batch {
            let id = aggregate_uuid(e)?;
            let order_id = match e.envelope.aggregate_type {
                AggregateKind::Order => {
                    apply_order(e, id, &mut orders)?;
                    changed[0].insert(id);
                    Some(id)
                }
                AggregateKind::Payment => {
                    let row = apply_payment(e, id, &mut payments)?;
                    changed[1].insert(id);
                    Some(row)
                }
                AggregateKind::Delivery => {
                    let row = apply_delivery(e, id, &mut deliveries)?;
                    changed[2].insert(id);
                    row
                }
            };
            if let Some(order_id) = order_id {
                let env = &e.envelope;
                timeline.push(TimelineRow {
                    event_id: env.event_id,
                    order_id,
                    global_position: env.global_position,
                    event_type: &env.event_type,
                    recorded_at: env.recorded_at,
                });
            }
        }

        ORDERS
            .upsert_in(tx, &changed_rows(&orders, &changed[0]), &mut store)
            .await?;
        PAYMENTS
            .upsert_in(tx, &changed_rows(&payments, &changed[1]), &mut store)
            .await?;
        DELIVERIES
            .upsert_in(tx, &changed_rows(&deliveries, &changed[2]), &mut store)
            .await?;
        if store.is_bulk() {
            copy_timeline(tx, &timeline).await?;
        } else {
            insert_timeline(tx, &timeline).await?;
        }
        Ok(())
    }
}

const TIMELINE_COLUMNS: &[&str] = &[
    "event_id",
    "order_id",
    "global_position",
    "event_type",
    "recorded_at",
];

/// Copy timeline entries into a table that cannot hold them yet (a bulk
/// fill's shadow).
async fn copy_timeline(
    tx: &mut PgConnection,
    rows: &[TimelineRow<'_>],
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = CopyRows::new("order_timeline", TIMELINE_COLUMNS);
    for r in rows {
        copy.row()
            .uuid(r.event_id)
            .uuid(r.order_id)
            .int8(r.global_position)
            .text(r.event_type)
            .timestamptz(r.recorded_at);
    }
    copy.copy(tx).await?;
    Ok(())
}

/// Insert timeline entries, ignoring any already there. Typed arrays rather
/// than one JSON document: this is the read model's most frequent write.
async fn insert_timeline(
    tx: &mut PgConnection,
    rows: &[TimelineRow<'_>],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO order_timeline (event_id, order_id, global_position, event_type, recorded_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::timestamptz[])
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.order_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.global_position).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_type).collect::<Vec<&str>>())
    .bind(rows.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn apply_order(
    e: &SourcedEvent,
    id: Uuid,
    orders: &mut BTreeMap<Uuid, OrderRow>,
) -> Result<(), ProjectionError> {
    let event: OrderEvent = e.decode()?;
    let seq = e.envelope.sequence;
    let now = e.envelope.recorded_at;
    if let OrderEvent::OrderPlaced(p) = &event {
        if orders.contains_key(&id) {
            return Err(e.reject("order placed twice"));
        }
        if p.order_id.as_uuid() != id {
            return Err(e.reject("OrderPlaced.order_id differs from the aggregate id"));
        }
        let item_count: u32 = p.lines.iter().map(|l| l.quantity).sum();
        orders.insert(
            id,
            OrderRow {
                order_id: id,
                status: OrderStatus::Placed.as_str().into(),
                customer_id: p.customer_id.as_uuid(),
                restaurant_id: p.restaurant_id.as_uuid(),
                restaurant_time_zone: p.restaurant_time_zone.clone(),
                payment_method: match p.payment_method {
                    PaymentMethod::Card { .. } => "card".into(),
                    PaymentMethod::Cash => "cash".into(),
                },
                item_count: i32::try_from(item_count)
                    .map_err(|_| e.reject("item count overflow"))?,
                currency: p.price.total.currency.to_string(),
                subtotal_minor: p.price.subtotal.amount,
                delivery_fee_minor: p.price.delivery_fee.amount,
                service_fee_minor: p.price.service_fee.amount,
                tax_minor: p.price.tax.amount,
                tip_minor: p.price.tip.amount,
                total_minor: p.price.total.amount,
                commission_minor: p.price.commission.amount,
                payment_id: None,
                ready_by: None,
                pickup_rider_id: None,
                reason: None,
                placed_at: p.placed_at,
                confirmed_at: None,
                accepted_at: None,
                rejected_at: None,
                ready_at: None,
                picked_up_at: None,
                delivered_at: None,
                cancelled_at: None,
                last_sequence: seq,
                updated_at: now,
            },
        );
        return Ok(());
    }
    let Some(row) = orders.get_mut(&id) else {
        return Err(e.reject("event for an order that was never placed"));
    };
    row.last_sequence = seq;
    row.updated_at = now;
    match event {
        OrderEvent::OrderPlaced(_) => {}
        OrderEvent::OrderConfirmed(c) => {
            row.status = OrderStatus::Confirmed.as_str().into();
            row.payment_id = c.payment_id.map(|p| p.as_uuid());
            row.confirmed_at = Some(c.confirmed_at);
        }
        OrderEvent::OrderAccepted(a) => {
            row.status = OrderStatus::Accepted.as_str().into();
            row.ready_by = Some(a.ready_by);
            row.accepted_at = Some(a.accepted_at);
        }
        OrderEvent::OrderRejected(r) => {
            row.status = OrderStatus::Rejected.as_str().into();
            row.reason = Some(r.reason);
            row.rejected_at = Some(r.rejected_at);
        }
        OrderEvent::OrderReadyForPickup(r) => {
            row.status = OrderStatus::ReadyForPickup.as_str().into();
            row.ready_at = Some(r.ready_at);
        }
        OrderEvent::OrderPickedUp(p) => {
            row.status = OrderStatus::PickedUp.as_str().into();
            row.pickup_rider_id = Some(p.rider_id.as_uuid());
            row.picked_up_at = Some(p.picked_up_at);
        }
        OrderEvent::OrderDelivered(d) => {
            row.status = OrderStatus::Delivered.as_str().into();
            row.delivered_at = Some(d.delivered_at);
        }
        OrderEvent::OrderCancelled(c) => {
            row.status = OrderStatus::Cancelled.as_str().into();
            row.reason = Some(c.reason);
            row.cancelled_at = Some(c.cancelled_at);
        }
    }
    Ok(())
}

/// Returns the payment's order id.
fn apply_payment(
    e: &SourcedEvent,
    id: Uuid,
    payments: &mut BTreeMap<Uuid, PaymentRow>,
) -> Result<Uuid, ProjectionError> {
    let event: PaymentEvent = e.decode()?;
    let now = e.envelope.recorded_at;
    let new_row =
        |order_id: Uuid, status: &str, provider: Option<String>, currency: String| PaymentRow {
            payment_id: id,
            order_id,
            status: status.into(),
            provider,
            currency,
            authorized_minor: 0,
            captured_minor: 0,
            refunded_minor: 0,
            cash_collected_minor: 0,
            provider_fees_minor: 0,
            authorized_at: None,
            declined_at: None,
            captured_at: None,
            voided_at: None,
            last_refunded_at: None,
            cash_collected_at: None,
            updated_at: now,
        };
    match event {
        PaymentEvent::PaymentAuthorized(a) => {
            let row = payments.entry(id).or_insert_with(|| {
                new_row(
                    a.order_id.as_uuid(),
                    "authorized",
                    Some(a.provider.clone()),
                    a.amount.currency.to_string(),
                )
            });
            if row.order_id != a.order_id.as_uuid() {
                return Err(e.reject("payment authorized for another order"));
            }
            row.status = "authorized".into();
            row.provider = Some(a.provider);
            row.currency = a.amount.currency.to_string();
            row.authorized_minor = a.amount.amount;
            row.provider_fees_minor = add(e, row.provider_fees_minor, &row.currency, a.fee)?;
            row.authorized_at = Some(a.authorized_at);
            row.updated_at = now;
            Ok(row.order_id)
        }
        PaymentEvent::PaymentDeclined(d) => {
            let row = payments.entry(id).or_insert_with(|| {
                new_row(
                    d.order_id.as_uuid(),
                    PaymentStatus::Declined.as_str(),
                    Some(d.provider.clone()),
                    d.amount.currency.to_string(),
                )
            });
            row.status = PaymentStatus::Declined.as_str().into();
            row.declined_at = Some(d.declined_at);
            row.updated_at = now;
            Ok(row.order_id)
        }
        PaymentEvent::CashCollected(c) => {
            if payments.contains_key(&id) {
                return Err(e.reject("cash collected for an existing payment"));
            }
            let mut row = new_row(
                c.order_id.as_uuid(),
                PaymentStatus::CashCollected.as_str(),
                None,
                c.amount.currency.to_string(),
            );
            row.cash_collected_minor = c.amount.amount;
            row.cash_collected_at = Some(c.collected_at);
            let order_id = row.order_id;
            payments.insert(id, row);
            Ok(order_id)
        }
        other => {
            let Some(row) = payments.get_mut(&id) else {
                return Err(e.reject("event for a payment that was never authorized"));
            };
            row.updated_at = now;
            match other {
                PaymentEvent::PaymentCaptured(c) => {
                    row.status = PaymentStatus::Captured.as_str().into();
                    row.captured_minor = add(e, row.captured_minor, &row.currency, c.amount)?;
                    row.provider_fees_minor =
                        add(e, row.provider_fees_minor, &row.currency, c.fee)?;
                    row.captured_at = Some(c.captured_at);
                }
                PaymentEvent::PaymentVoided(v) => {
                    row.status = PaymentStatus::Voided.as_str().into();
                    row.provider_fees_minor =
                        add(e, row.provider_fees_minor, &row.currency, v.fee)?;
                    row.voided_at = Some(v.voided_at);
                }
                PaymentEvent::PaymentRefunded(r) => {
                    row.refunded_minor = add(e, row.refunded_minor, &row.currency, r.amount)?;
                    if row.refunded_minor > row.captured_minor {
                        return Err(e.reject("refunds exceed the captured amount"));
                    }
                    row.provider_fees_minor =
                        add(e, row.provider_fees_minor, &row.currency, r.fee)?;
                    row.status = if row.refunded_minor == row.captured_minor {
                        PaymentStatus::Refunded.as_str().into()
                    } else {
                        PaymentStatus::PartiallyRefunded.as_str().into()
                    };
                    row.last_refunded_at = Some(r.refunded_at);
                }
                PaymentEvent::PaymentCaptureFailed(f) => {
                    // Timeline entry only, until the capture is given up
                    // to ops; no money moved.
                    if f.final_attempt {
                        row.status = PaymentStatus::CaptureFailed.as_str().into();
                    }
                }
                // The same for a void (the authorization stays held) and a
                // refund (the money is not returned): ops see the final
                // state in the payment status.
                PaymentEvent::PaymentVoidFailed(f) => {
                    if f.final_attempt {
                        row.status = PaymentStatus::VoidFailed.as_str().into();
                    }
                }
                PaymentEvent::PaymentRefundFailed(f) => {
                    if f.final_attempt {
                        row.status = PaymentStatus::RefundFailed.as_str().into();
                    }
                }
                PaymentEvent::PaymentAuthorized(_)
                | PaymentEvent::PaymentDeclined(_)
                | PaymentEvent::CashCollected(_) => {}
            }
            Ok(row.order_id)
        }
    }
}

/// Returns the delivery's order id, or `None` for events kept out of the
/// timeline (location reports).
fn apply_delivery(
    e: &SourcedEvent,
    id: Uuid,
    deliveries: &mut BTreeMap<Uuid, DeliveryRow>,
) -> Result<Option<Uuid>, ProjectionError> {
    let event: DeliveryEvent = e.decode()?;
    let now = e.envelope.recorded_at;
    if let DeliveryEvent::DeliveryRequested(r) = &event {
        if deliveries.contains_key(&id) {
            return Err(e.reject("delivery requested twice"));
        }
        deliveries.insert(
            id,
            DeliveryRow {
                delivery_id: id,
                order_id: r.order_id.as_uuid(),
                status: DeliveryStatus::Requested.as_str().into(),
                rider_id: None,
                requested_at: r.requested_at,
                assigned_at: None,
                picked_up_at: None,
                completed_at: None,
                failed_at: None,
                cancelled_at: None,
                updated_at: now,
            },
        );
        return Ok(Some(r.order_id.as_uuid()));
    }
    let Some(row) = deliveries.get_mut(&id) else {
        return Err(e.reject("event for a delivery that was never requested"));
    };
    row.updated_at = now;
    match event {
        DeliveryEvent::DeliveryRequested(_) => {}
        DeliveryEvent::RiderAssigned(a) => {
            row.status = DeliveryStatus::Assigned.as_str().into();
            row.rider_id = Some(a.rider_id.as_uuid());
            row.assigned_at = Some(a.assigned_at);
        }
        DeliveryEvent::RiderUnassigned(_) => {
            row.status = DeliveryStatus::Requested.as_str().into();
            row.rider_id = None;
            row.assigned_at = None;
        }
        DeliveryEvent::RiderLocationReported(_) => return Ok(None),
        DeliveryEvent::PickupConfirmed(p) => {
            row.status = DeliveryStatus::PickedUp.as_str().into();
            row.picked_up_at = Some(p.picked_up_at);
        }
        DeliveryEvent::DropoffCodeRejected(_) | DeliveryEvent::DeliveryFlagged(_) => {}
        DeliveryEvent::DeliveryCompleted(c) => {
            row.status = DeliveryStatus::Completed.as_str().into();
            row.completed_at = Some(c.completed_at);
        }
        DeliveryEvent::DeliveryFailed(f) => {
            row.status = DeliveryStatus::Failed.as_str().into();
            row.failed_at = Some(f.failed_at);
        }
        DeliveryEvent::DeliveryCancelled(c) => {
            row.status = DeliveryStatus::Cancelled.as_str().into();
            row.cancelled_at = Some(c.cancelled_at);
        }
    }
    Ok(Some(row.order_id))
}
