//! Order list (filters, sort by placed time, keyset pagination) and order
//! detail with the timeline.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ordertrail_platform::event_log::{self, StoredEvent};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{QueryError, Viewer};

/// Largest page.
pub const MAX_LIMIT: u32 = 200;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 50;

/// Sort by placed time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Newest first.
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// Filters of the order list; all optional, combined with AND.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OrderFilter {
    pub status: Option<String>,
    pub restaurant_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub rider_id: Option<Uuid>,
    /// Placed at or after.
    pub placed_from: Option<DateTime<Utc>>,
    /// Placed strictly before.
    pub placed_to: Option<DateTime<Utc>>,
    #[serde(default)]
    pub sort: SortOrder,
    /// Page size, 1..=200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One order with its payment and delivery state. Money in minor units.
///
/// Fields marked *restricted* are absent for callers the visibility table
/// (`docs/visibility.md`) does not show them to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct OrderSummary {
    pub order_id: Uuid,
    /// placed, confirmed, accepted, rejected, ready_for_pickup, picked_up, delivered, cancelled
    pub status: String,
    /// Restricted: not shown to riders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<Uuid>,
    pub restaurant_id: Uuid,
    pub rider_id: Option<Uuid>,
    pub payment_method: String,
    pub payment_id: Option<Uuid>,
    /// authorized, declined, captured, partially_refunded, refunded, voided, cash_collected
    pub payment_status: Option<String>,
    /// Restricted: staff only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_provider: Option<String>,
    /// requested, assigned, picked_up, completed, failed, cancelled
    pub delivery_status: Option<String>,
    pub item_count: i32,
    pub currency: String,
    pub subtotal_minor: i64,
    pub delivery_fee_minor: i64,
    pub service_fee_minor: i64,
    pub tax_minor: i64,
    pub tip_minor: i64,
    pub total_minor: i64,
    /// Restricted: the restaurant and staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission_minor: Option<i64>,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub cash_collected_minor: i64,
    /// Restricted: the restaurant and staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_fees_minor: Option<i64>,
    pub reason: Option<String>,
    pub ready_by: Option<DateTime<Utc>>,
    pub placed_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub rider_assigned_at: Option<DateTime<Utc>>,
    pub payment_captured_at: Option<DateTime<Utc>>,
    pub last_refunded_at: Option<DateTime<Utc>>,
}

/// One page of orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One event of an order, its payment or its delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct TimelineEntry {
    pub event_id: Uuid,
    /// Order, Payment or Delivery.
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// command_id, correlation_id, causation_id, actor, request_id
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// An order with its timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderDetail {
    pub order: OrderSummary,
    pub timeline: Vec<TimelineEntry>,
    /// The drop-off code the customer tells the rider at the door: only in
    /// the order's customer's own view, once the order is accepted and until
    /// it is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropoff_code: Option<String>,
}

const SELECT: &str = "SELECT o.order_id, o.status, o.customer_id, o.restaurant_id, d.rider_id,
       o.payment_method, o.payment_id, p.status AS payment_status, p.provider AS payment_provider,
       d.status AS delivery_status, o.item_count, o.currency::text AS currency,
       o.subtotal_minor, o.delivery_fee_minor, o.service_fee_minor, o.tax_minor, o.tip_minor,
       o.total_minor, o.commission_minor,
       coalesce(p.captured_minor, 0) AS captured_minor, coalesce(p.refunded_minor, 0) AS refunded_minor,
       coalesce(p.cash_collected_minor, 0) AS cash_collected_minor,
       coalesce(p.provider_fees_minor, 0) AS provider_fees_minor,
       o.reason, o.ready_by, o.placed_at, o.confirmed_at, o.accepted_at, o.rejected_at, o.ready_at,
       o.picked_up_at, o.delivered_at, o.cancelled_at, d.assigned_at AS rider_assigned_at,
       p.captured_at AS payment_captured_at, p.last_refunded_at
FROM order_history o
LEFT JOIN order_history_payments p ON p.order_id = o.order_id
LEFT JOIN order_history_deliveries d ON d.order_id = o.order_id
WHERE true";

fn push_visibility(q: &mut QueryBuilder<'_, Postgres>, viewer: Viewer) {
    match viewer {
        Viewer::All => {}
        Viewer::Restaurant(id) => {
            q.push(" AND o.restaurant_id = ").push_bind(id);
        }
        Viewer::Customer(id) => {
            q.push(" AND o.customer_id = ").push_bind(id);
        }
        Viewer::Rider(id) => {
            q.push(" AND d.rider_id = ").push_bind(id);
        }
    }
}

/// What every cursor looks like (stated in the OpenAPI document): the last
/// row's `placed_at` in microseconds since the epoch, a dot, and its order
/// id as 32 hex digits. Every string of this shape is a position, valid for
/// either sort direction (the page continues after it in the chosen order).
pub const CURSOR_PATTERN: &str = "^[0-9]{1,16}[.][0-9a-f]{32}$";

/// Cursor: the last row's (placed_at, order_id).
fn encode_cursor(placed_at: DateTime<Utc>, order_id: Uuid) -> String {
    format!(
        "{}.{}",
        placed_at.timestamp_micros().max(0),
        order_id.simple()
    )
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), QueryError> {
    let bad = || QueryError::invalid("cursor", "not a cursor of this listing");
    let (micros, id) = cursor.split_once('.').ok_or_else(bad)?;
    let well_formed = (1..=16).contains(&micros.len())
        && micros.bytes().all(|b| b.is_ascii_digit())
        && id.len() == 32
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(bad());
    }
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok((at, id))
}

/// Orders visible to `viewer` matching `filter`, one page.
pub async fn list_orders(
    pool: &PgPool,
    viewer: Viewer,
    filter: &OrderFilter,
) -> Result<OrderPage, QueryError> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(QueryError::invalid(
            "limit",
            format!("must be 1..={MAX_LIMIT}"),
        ));
    }
    // An inverted range holds no order: an empty page, not an error.
    if let (Some(from), Some(to)) = (filter.placed_from, filter.placed_to)
        && from > to
    {
        return Ok(OrderPage {
            orders: Vec::new(),
            next_cursor: None,
        });
    }
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    push_visibility(&mut q, viewer);
    if let Some(s) = &filter.status {
        q.push(" AND o.status = ").push_bind(s.clone());
    }
    if let Some(id) = filter.restaurant_id {
        q.push(" AND o.restaurant_id = ").push_bind(id);
    }
    if let Some(id) = filter.customer_id {
        q.push(" AND o.customer_id = ").push_bind(id);
    }
    if let Some(id) = filter.rider_id {
        q.push(" AND d.rider_id = ").push_bind(id);
    }
    if let Some(t) = filter.placed_from {
        q.push(" AND o.placed_at >= ").push_bind(t);
    }
    if let Some(t) = filter.placed_to {
        q.push(" AND o.placed_at < ").push_bind(t);
    }
    let (cmp, dir) = match filter.sort {
        SortOrder::Desc => ("<", "DESC"),
        SortOrder::Asc => (">", "ASC"),
    };
    if let Some(cursor) = &filter.cursor {
        let (at, id) = decode_cursor(cursor)?;
        q.push(" AND (o.placed_at, o.order_id) ")
            .push(cmp)
            .push(" (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(format!(
        " ORDER BY o.placed_at {dir}, o.order_id {dir} LIMIT "
    ))
    .push_bind(i64::from(limit) + 1);
    let mut orders: Vec<OrderSummary> = q.build_query_as().fetch_all(pool).await?;
    let next_cursor = if orders.len() > limit as usize {
        orders.truncate(limit as usize);
        orders
            .last()
            .map(|o| encode_cursor(o.placed_at, o.order_id))
    } else {
        None
    };
    Ok(OrderPage {
        orders,
        next_cursor,
    })
}

/// One order with its timeline, if visible to `viewer`.
pub async fn order_detail(
    pool: &PgPool,
    viewer: Viewer,
    order_id: Uuid,
) -> Result<OrderDetail, QueryError> {
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    push_visibility(&mut q, viewer);
    q.push(" AND o.order_id = ").push_bind(order_id);
    let order: OrderSummary = q
        .build_query_as()
        .fetch_optional(pool)
        .await?
        .ok_or(QueryError::NotFound)?;
    let timeline = read_timeline(pool, order_id).await?;
    Ok(OrderDetail {
        order,
        timeline,
        dropoff_code: None,
    })
}

/// An order's timeline: its entries in order from `order_timeline`, each
/// event (payload, metadata, version) read from the store by its global
/// position and upcast exactly as the relay and replay upcast it, so the
/// entry is what the projector was given.
async fn read_timeline(pool: &PgPool, order_id: Uuid) -> Result<Vec<TimelineEntry>, QueryError> {
    let entries: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT event_id, global_position FROM order_timeline WHERE order_id = $1
         ORDER BY recorded_at, global_position, event_id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    let positions: Vec<i64> = entries.iter().map(|(_, position)| *position).collect();
    let mut events: HashMap<i64, StoredEvent> = event_log::read_by_positions(pool, &positions)
        .await?
        .into_iter()
        .map(|e| (e.global_position, e))
        .collect();
    let mut timeline = Vec::with_capacity(entries.len());
    for (id, position) in entries {
        // The projector wrote the entry after the event committed, and the
        // store keeps every event: a missing, different or undecodable one
        // is damage.
        let event = events
            .remove(&position)
            .filter(|e| e.event_id == id)
            .ok_or_else(|| {
                sqlx::Error::Decode(
                    format!("timeline event {id} is not in the store at position {position}")
                        .into(),
                )
            })?;
        let env = event.into_envelope().map_err(|(reason, _)| {
            sqlx::Error::Decode(format!("timeline event {id}: {reason}").into())
        })?;
        timeline.push(TimelineEntry {
            event_id: env.event_id,
            aggregate_type: env.aggregate_type.as_str().to_owned(),
            aggregate_id: env.aggregate_id,
            sequence: env.sequence,
            event_type: env.event_type,
            event_version: env.event_version,
            payload: env.payload,
            metadata: serde_json::to_value(&env.metadata)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            recorded_at: env.recorded_at,
        });
    }
    Ok(timeline)
}
