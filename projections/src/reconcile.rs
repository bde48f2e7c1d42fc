//! Money reconciliation (DESIGN.md, "Replay, audit, reconciliation").
//!
//! Two checks, each reporting its breaks by kind:
//!
//! 1. **Settlements against the events.** Every restaurant-day and
//!    provider-day figure of `restaurant_settlement_days` and
//!    `provider_settlement_days` is recomputed straight from the order and
//!    payment events by one set-based SQL statement over `events`
//!    ([`RECOMPUTE`]), independent of the settlement projector's code path,
//!    and compared to the cent. The rules are the projector's (see
//!    [`crate::settlements`]): sales on `OrderDelivered` at the price of the
//!    order's `OrderPlaced`, provider fees on authorize/capture/void/refund,
//!    refunds (the restaurant's share: `allocation.items + allocation.tax`, commission given back; the whole amount for refunds without an allocation) and cash on their own events, each on the date of the event's
//!    business timestamp in the restaurant's time zone; provider figures on
//!    the UTC date.
//! 2. **Ledger against the provider.** Our provider operations, derived from
//!    the payment events (authorization = `PaymentAuthorized` with its
//!    reference; capture and void = `PaymentCaptured` / `PaymentVoided` under
//!    the authorization's reference; refund = `PaymentRefunded` with its own
//!    reference), compared with the provider's statement (CSV, [`statement`]),
//!    matched on `(operation, provider_reference)`. `PaymentCaptureFailed`
//!    is no operation on our side: a capture the provider performed whose
//!    answer was lost shows as missing on our side until the retry (same
//!    idempotency key) records its `PaymentCaptured`.
//!
//! 3. **Money an ended order still holds.** A cancelled or rejected order
//!    whose card authorization was neither voided nor captured
//!    (`authorization_held`), or whose capture was not refunded in full
//!    (`refund_outstanding`), ended on or before `to`: one break each, with
//!    the amount and the last `PaymentVoidFailed` / `PaymentRefundFailed`
//!    (or `none` while nothing said why yet). Such money is reported until it
//!    is released, never balanced away ([`HELD`]).
//!
//! Money is integer minor units throughout. Both sides pick the days by
//! their own timestamps (our event's business time, the provider's
//! `occurred_at`), so an operation a few milliseconds either side of UTC
//! midnight can appear on adjacent days of the two accounts: reconcile such
//! days together (`--from`/`--to` spanning both).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

pub mod statement;

pub use statement::{StatementError, StatementLine};

/// Longest range one reconciliation covers (the API answers synchronously).
pub const MAX_DAYS: i64 = 92;

/// Why a reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("invalid range: {0}")]
    InvalidRange(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What differs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// A restaurant day whose read-model figures differ from the events'.
    RestaurantDayMismatch,
    /// A restaurant day the events produce but the read model lacks.
    RestaurantDayMissing,
    /// A restaurant day in the read model the events do not produce.
    RestaurantDayUnexpected,
    /// A provider day whose read-model figures differ from the events'.
    ProviderDayMismatch,
    /// A provider day the events produce but the read model lacks.
    ProviderDayMissing,
    /// A provider day in the read model the events do not produce.
    ProviderDayUnexpected,
    /// The provider did an operation our payment events do not record.
    MissingOnOurSide,
    /// Our payment events record an operation the provider's statement lacks.
    MissingAtProvider,
    AmountMismatch,
    CurrencyMismatch,
    FeeMismatch,
    /// The same operation and reference twice on one side.
    Duplicate,
    /// A cancelled or rejected order's authorization is still held (not
    /// voided, not captured).
    AuthorizationHeld,
    /// A cancelled or rejected order's capture is not refunded in full.
    RefundOutstanding,
}

impl BreakKind {
    pub const ALL: [BreakKind; 14] = [
        BreakKind::RestaurantDayMismatch,
        BreakKind::RestaurantDayMissing,
        BreakKind::RestaurantDayUnexpected,
        BreakKind::ProviderDayMismatch,
        BreakKind::ProviderDayMissing,
        BreakKind::ProviderDayUnexpected,
        BreakKind::MissingOnOurSide,
        BreakKind::MissingAtProvider,
        BreakKind::AmountMismatch,
        BreakKind::CurrencyMismatch,
        BreakKind::FeeMismatch,
        BreakKind::Duplicate,
        BreakKind::AuthorizationHeld,
        BreakKind::RefundOutstanding,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            BreakKind::RestaurantDayMismatch => "restaurant_day_mismatch",
            BreakKind::RestaurantDayMissing => "restaurant_day_missing",
            BreakKind::RestaurantDayUnexpected => "restaurant_day_unexpected",
            BreakKind::ProviderDayMismatch => "provider_day_mismatch",
            BreakKind::ProviderDayMissing => "provider_day_missing",
            BreakKind::ProviderDayUnexpected => "provider_day_unexpected",
            BreakKind::MissingOnOurSide => "missing_on_our_side",
            BreakKind::MissingAtProvider => "missing_at_provider",
            BreakKind::AmountMismatch => "amount_mismatch",
            BreakKind::CurrencyMismatch => "currency_mismatch",
            BreakKind::FeeMismatch => "fee_mismatch",
            BreakKind::Duplicate => "duplicate",
            BreakKind::AuthorizationHeld => "authorization_held",
            BreakKind::RefundOutstanding => "refund_outstanding",
        }
    }
}

/// One figure that differs: what the events (or our ledger) say, and what
/// the read model (or the provider) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldDiff {
    pub field: String,
    /// From the events / our payment events; null when absent there.
    pub ours: Option<String>,
    /// From the read model / the provider's statement; null when absent there.
    pub theirs: Option<String>,
}

/// One break, with the references to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Break {
    pub kind: BreakKind,
    /// `restaurant_id` or provider name (settlement breaks), `operation` (ledger breaks).
    pub subject: String,
    /// The business day (restaurant days) or UTC day.
    pub day: Option<NaiveDate>,
    pub currency: Option<String>,
    pub provider_reference: Option<String>,
    pub payment_id: Option<String>,
    /// For duplicates: `ours` or `provider`.
    pub side: Option<String>,
    pub diffs: Vec<FieldDiff>,
}

/// Counts of what was compared and of the breaks by kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    pub restaurant_days_from_events: usize,
    pub restaurant_days_in_read_model: usize,
    pub provider_days_from_events: usize,
    pub provider_days_in_read_model: usize,
    /// Our provider operations in the range (0 without a statement).
    pub ledger_operations: usize,
    /// Lines of the provider statement (0 without a statement).
    pub statement_lines: usize,
    /// Net payable over every restaurant day, per currency, from the events.
    pub net_payable_from_events: BTreeMap<String, i64>,
    /// Every break kind with its count (zeros included).
    pub breaks_by_kind: BTreeMap<String, usize>,
    pub breaks: usize,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Whether a provider statement was compared.
    pub provider_statement: bool,
    pub summary: Summary,
    pub breaks: Vec<Break>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.breaks.is_empty()
    }

    /// The breaks as CSV: one line per break (and per differing field).
    pub fn breaks_csv(&self) -> String {
        let mut out = String::from(
            "kind,subject,day,currency,provider_reference,payment_id,side,field,ours,theirs\n",
        );
        for b in &self.breaks {
            let head = [
                b.kind.as_str().to_owned(),
                b.subject.clone(),
                b.day.map(|d| d.to_string()).unwrap_or_default(),
                b.currency.clone().unwrap_or_default(),
                b.provider_reference.clone().unwrap_or_default(),
                b.payment_id.clone().unwrap_or_default(),
                b.side.clone().unwrap_or_default(),
            ]
            .map(|f| statement::csv_field(&f))
            .join(",");
            if b.diffs.is_empty() {
                out.push_str(&head);
                out.push_str(",,,\n");
            }
            for d in &b.diffs {
                out.push_str(&format!(
                    "{head},{},{},{}\n",
                    statement::csv_field(&d.field),
                    statement::csv_field(d.ours.as_deref().unwrap_or("")),
                    statement::csv_field(d.theirs.as_deref().unwrap_or("")),
                ));
            }
        }
        out
    }
}

/// The restaurant figures in `restaurant_settlement_days` column order.
const RESTAURANT_FIELDS: [&str; 11] = [
    "orders",
    "gross_sales_minor",
    "tax_minor",
    "delivery_fees_minor",
    "service_fees_minor",
    "tips_minor",
    "commission_minor",
    "provider_fees_minor",
    "refunds_minor",
    "cash_collected_minor",
    "net_payable_minor",
];

/// The provider figures in `provider_settlement_days` column order.
const PROVIDER_FIELDS: [&str; 5] = [
    "authorized_minor",
    "captured_minor",
    "voided_minor",
    "refunded_minor",
    "fees_minor",
];

/// Every restaurant day and provider day of `$1..=$2`, recomputed from the
/// events in one statement. Restaurant rows have `scope = 'restaurant'`,
/// `subject` = restaurant id and the eleven restaurant figures in `v`;
/// provider rows `scope = 'provider'`, `subject` = provider name and the five
/// provider figures. Time zones bound the scan: a business date in the range
/// needs a UTC instant within 14 hours of it.
pub const RECOMPUTE: &str = r#"
WITH ev AS MATERIALIZED (
    SELECT e.aggregate_id, e.event_type, e.payload::jsonb AS p
    FROM events e
    WHERE e.aggregate_type IN ('Order', 'Payment')
      AND e.event_type IN ('OrderPlaced', 'OrderDelivered', 'PaymentAuthorized', 'PaymentDeclined',
                           'PaymentCaptured', 'PaymentVoided', 'PaymentRefunded', 'CashCollected')
),
placed AS (
    SELECT aggregate_id AS order_id, p ->> 'restaurant_id' AS restaurant_id,
           p ->> 'restaurant_time_zone' AS tz, p -> 'price' AS price
    FROM ev WHERE event_type = 'OrderPlaced'
),
-- Payment -> order, restaurant, provider, currency: from its first event.
facts AS (
    SELECT DISTINCT ON (aggregate_id)
           aggregate_id AS payment_id, p ->> 'order_id' AS order_id, p ->> 'restaurant_id' AS restaurant_id,
           CASE WHEN event_type = 'CashCollected' THEN NULL ELSE p ->> 'provider' END AS provider,
           p -> 'amount' ->> 'currency' AS currency
    FROM ev WHERE event_type IN ('PaymentAuthorized', 'PaymentDeclined', 'CashCollected')
    ORDER BY aggregate_id, (event_type = 'PaymentDeclined')
),
moves AS (
    SELECT f.payment_id, f.order_id, f.restaurant_id, f.provider, f.currency, m.event_type,
           (m.p ->> CASE m.event_type
                WHEN 'PaymentAuthorized' THEN 'authorized_at'
                WHEN 'PaymentCaptured' THEN 'captured_at'
                WHEN 'PaymentVoided' THEN 'voided_at'
                WHEN 'PaymentRefunded' THEN 'refunded_at'
                ELSE 'collected_at' END)::timestamptz AS at,
           (m.p -> 'amount' ->> 'amount')::bigint AS amount,
           coalesce((m.p -> 'fee' ->> 'amount')::bigint, 0) AS fee,
           -- A refund's share borne by the restaurant (items + tax) and the
           -- commission given back (PaymentRefunded.allocation); a refund
           -- recorded without an allocation (version 1) is borne in full.
           CASE WHEN jsonb_typeof(m.p -> 'allocation') = 'object'
                THEN (m.p -> 'allocation' -> 'items' ->> 'amount')::bigint
                     + (m.p -> 'allocation' -> 'tax' ->> 'amount')::bigint
                ELSE (m.p -> 'amount' ->> 'amount')::bigint END AS restaurant_refund,
           coalesce((m.p -> 'allocation' -> 'commission_reversed' ->> 'amount')::bigint, 0) AS commission_back
    FROM ev m JOIN facts f ON f.payment_id = m.aggregate_id
    WHERE m.event_type IN ('PaymentAuthorized', 'PaymentCaptured', 'PaymentVoided', 'PaymentRefunded', 'CashCollected')
),
restaurant_moves AS (
    SELECT pl.restaurant_id, (d.p ->> 'delivered_at')::timestamptz AS at, pl.tz,
           pl.price -> 'total' ->> 'currency' AS currency,
           1::bigint AS orders,
           (pl.price -> 'subtotal' ->> 'amount')::bigint AS gross,
           (pl.price -> 'tax' ->> 'amount')::bigint AS tax,
           (pl.price -> 'delivery_fee' ->> 'amount')::bigint AS delivery_fees,
           (pl.price -> 'service_fee' ->> 'amount')::bigint AS service_fees,
           (pl.price -> 'tip' ->> 'amount')::bigint AS tips,
           (pl.price -> 'commission' ->> 'amount')::bigint AS commission,
           0::bigint AS provider_fees, 0::bigint AS refunds, 0::bigint AS cash
    FROM ev d JOIN placed pl ON pl.order_id = d.aggregate_id
    WHERE d.event_type = 'OrderDelivered'
    UNION ALL
    SELECT m.restaurant_id, m.at, pl.tz, m.currency, 0, 0, 0, 0, 0, 0,
           CASE WHEN m.event_type = 'PaymentRefunded' THEN -m.commission_back ELSE 0 END,
           CASE WHEN m.event_type = 'CashCollected' THEN 0 ELSE m.fee END,
           CASE WHEN m.event_type = 'PaymentRefunded' THEN m.restaurant_refund ELSE 0 END,
           CASE WHEN m.event_type = 'CashCollected' THEN m.amount ELSE 0 END
    FROM moves m JOIN placed pl ON pl.order_id = m.order_id
),
restaurant_days AS (
    SELECT 'restaurant'::text AS scope, restaurant_id AS subject, (at AT TIME ZONE tz)::date AS day, currency,
           ARRAY[sum(orders), sum(gross), sum(tax), sum(delivery_fees), sum(service_fees), sum(tips),
                 sum(commission), sum(provider_fees), sum(refunds), sum(cash),
                 sum(gross) + sum(tax) - sum(commission) - sum(provider_fees) - sum(refunds)]::bigint[] AS v
    FROM restaurant_moves
    WHERE at >= ($1::date - interval '14 hours') AT TIME ZONE 'UTC'
      AND at < ($2::date + interval '38 hours') AT TIME ZONE 'UTC'
      AND (at AT TIME ZONE tz)::date BETWEEN $1 AND $2
    GROUP BY 1, 2, 3, 4
),
provider_days AS (
    SELECT 'provider'::text AS scope, provider AS subject, (at AT TIME ZONE 'UTC')::date AS day, currency,
           ARRAY[sum(CASE WHEN event_type = 'PaymentAuthorized' THEN amount ELSE 0 END),
                 sum(CASE WHEN event_type = 'PaymentCaptured' THEN amount ELSE 0 END),
                 sum(CASE WHEN event_type = 'PaymentVoided' THEN amount ELSE 0 END),
                 sum(CASE WHEN event_type = 'PaymentRefunded' THEN amount ELSE 0 END),
                 sum(fee)]::bigint[] AS v
    FROM moves
    WHERE provider IS NOT NULL AND event_type <> 'CashCollected'
      AND (at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2
    GROUP BY 1, 2, 3, 4
)
SELECT scope, subject, day, currency, v FROM restaurant_days
UNION ALL
SELECT scope, subject, day, currency, v FROM provider_days
"#;

/// Our provider operations of `$1..=$2` (UTC dates of the business
/// timestamps), derived from the payment events.
pub const OUR_OPERATIONS: &str = r#"
WITH ev AS MATERIALIZED (
    SELECT e.aggregate_id, e.event_type, e.payload::jsonb AS p
    FROM events e
    WHERE e.aggregate_type = 'Payment'
      AND e.event_type IN ('PaymentAuthorized', 'PaymentCaptured', 'PaymentVoided', 'PaymentRefunded')
),
auth AS (
    SELECT DISTINCT ON (aggregate_id) aggregate_id AS payment_id, p ->> 'provider_reference' AS reference
    FROM ev WHERE event_type = 'PaymentAuthorized' ORDER BY aggregate_id
),
ops AS (
    SELECT CASE ev.event_type
               WHEN 'PaymentAuthorized' THEN 'authorization'
               WHEN 'PaymentCaptured' THEN 'capture'
               WHEN 'PaymentVoided' THEN 'void'
               ELSE 'refund' END AS operation,
           CASE WHEN ev.event_type IN ('PaymentAuthorized', 'PaymentRefunded') THEN ev.p ->> 'provider_reference'
                ELSE a.reference END AS provider_reference,
           ev.aggregate_id AS payment_id,
           (ev.p -> 'amount' ->> 'amount')::bigint AS amount_minor,
           ev.p -> 'amount' ->> 'currency' AS currency,
           (ev.p -> 'fee' ->> 'amount')::bigint AS fee_minor,
           (ev.p ->> CASE ev.event_type
                WHEN 'PaymentAuthorized' THEN 'authorized_at'
                WHEN 'PaymentCaptured' THEN 'captured_at'
                WHEN 'PaymentVoided' THEN 'voided_at'
                ELSE 'refunded_at' END)::timestamptz AS occurred_at
    FROM ev LEFT JOIN auth a ON a.payment_id = ev.aggregate_id
)
SELECT operation, coalesce(provider_reference, '') AS provider_reference, payment_id, amount_minor,
       currency, fee_minor, occurred_at
FROM ops
WHERE (occurred_at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2
"#;

/// The card payments of orders cancelled or rejected on or before `$1` (UTC
/// date of the business time) that still hold money: order, payment, the
/// UTC day the order ended, currency, authorization reference, authorized,
/// captured and refunded amounts, whether voided, and the last failed void
/// or refund (`type code attempt final`).
pub const HELD: &str = r#"
WITH ended AS (
    SELECT aggregate_id AS order_id,
           min((payload::jsonb ->> CASE event_type WHEN 'OrderCancelled' THEN 'cancelled_at'
                                                   ELSE 'rejected_at' END)::timestamptz) AS ended_at
    FROM events
    WHERE aggregate_type = 'Order' AND event_type IN ('OrderCancelled', 'OrderRejected')
    GROUP BY 1
),
pay AS (
    SELECT DISTINCT aggregate_id AS payment_id, payload::jsonb ->> 'order_id' AS order_id
    FROM events WHERE aggregate_type = 'Payment' AND event_type = 'PaymentAuthorized'
),
money AS (
    SELECT p.payment_id, p.order_id,
           max(e.payload::jsonb -> 'amount' ->> 'currency') FILTER (WHERE e.event_type = 'PaymentAuthorized') AS currency,
           max(e.payload::jsonb ->> 'provider_reference') FILTER (WHERE e.event_type = 'PaymentAuthorized') AS reference,
           coalesce(max((e.payload::jsonb -> 'amount' ->> 'amount')::bigint) FILTER (WHERE e.event_type = 'PaymentAuthorized'), 0) AS authorized,
           coalesce(sum((e.payload::jsonb -> 'amount' ->> 'amount')::bigint) FILTER (WHERE e.event_type = 'PaymentCaptured'), 0)::bigint AS captured,
           coalesce(sum((e.payload::jsonb -> 'amount' ->> 'amount')::bigint) FILTER (WHERE e.event_type = 'PaymentRefunded'), 0)::bigint AS refunded,
           bool_or(e.event_type = 'PaymentVoided') AS voided,
           (array_agg(e.event_type || ' ' || (e.payload::jsonb ->> 'decline_code') || ' attempt '
                      || (e.payload::jsonb ->> 'attempt')
                      || CASE WHEN (e.payload::jsonb ->> 'final_attempt')::boolean THEN ' final' ELSE '' END
                      ORDER BY e.sequence DESC)
              FILTER (WHERE e.event_type IN ('PaymentVoidFailed', 'PaymentRefundFailed')))[1] AS last_failure
    FROM pay p JOIN events e ON e.aggregate_type = 'Payment' AND e.aggregate_id = p.payment_id
    GROUP BY 1, 2
)
SELECT en.order_id, m.payment_id, (en.ended_at AT TIME ZONE 'UTC')::date AS day, m.currency,
       m.reference, m.authorized, m.captured, m.refunded, m.voided, m.last_failure
FROM money m JOIN ended en ON en.order_id = m.order_id
WHERE (en.ended_at AT TIME ZONE 'UTC')::date <= $1
  AND ((m.captured = 0 AND NOT m.voided) OR m.captured > m.refunded)
ORDER BY en.ended_at, m.payment_id
"#;

/// One row of [`HELD`].
#[derive(Debug, sqlx::FromRow)]
struct HeldRow {
    order_id: String,
    payment_id: String,
    day: NaiveDate,
    currency: Option<String>,
    reference: Option<String>,
    authorized: i64,
    captured: i64,
    refunded: i64,
    last_failure: Option<String>,
}

impl HeldRow {
    fn into_break(self) -> Break {
        let (kind, held) = if self.captured > 0 {
            (
                BreakKind::RefundOutstanding,
                self.captured.saturating_sub(self.refunded),
            )
        } else {
            (BreakKind::AuthorizationHeld, self.authorized)
        };
        let said = |field: &str, ours: String, theirs: &str| FieldDiff {
            field: field.to_owned(),
            ours: Some(ours),
            theirs: Some(theirs.to_owned()),
        };
        Break {
            kind,
            subject: if self.captured > 0 { "refund" } else { "void" }.to_owned(),
            day: Some(self.day),
            currency: self.currency,
            provider_reference: self.reference,
            payment_id: Some(self.payment_id),
            side: None,
            diffs: vec![
                // Held by the events' account; an ended order should hold 0.
                said("held_minor", held.to_string(), "0"),
                said("order_id", self.order_id, ""),
                said(
                    "last_failure",
                    self.last_failure.unwrap_or_else(|| "none".to_owned()),
                    "",
                ),
            ],
        }
    }
}

type DayKey = (String, String, NaiveDate, String);

/// Reconcile `from..=to`: settlements against the events, and, when a
/// statement is given, our payment ledger against it.
pub async fn reconcile(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
    provider_statement: Option<&[StatementLine]>,
) -> Result<Report, ReconcileError> {
    if to < from {
        return Err(ReconcileError::InvalidRange(format!(
            "from {from} is after to {to}"
        )));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ReconcileError::InvalidRange(format!(
            "at most {MAX_DAYS} days at once"
        )));
    }
    let mut summary = Summary::default();
    let mut breaks = Vec::new();

    // 1. Settlements against the events.
    // The two scans of the events run side by side (two connections).
    let recompute = sqlx::query_as::<_, (String, String, NaiveDate, String, Vec<i64>)>(RECOMPUTE)
        .bind(from)
        .bind(to)
        .fetch_all(pool);
    let our_operations = async {
        match provider_statement {
            Some(_) => sqlx::query_as::<_, StatementLine>(OUR_OPERATIONS)
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let (recomputed, ours) = tokio::try_join!(recompute, our_operations)?;
    let mut events_days: BTreeMap<DayKey, Vec<i64>> = BTreeMap::new();
    for (scope, subject, day, currency, v) in recomputed {
        if scope == "restaurant" {
            summary.restaurant_days_from_events += 1;
            let net = v.get(10).copied().unwrap_or(0);
            let slot = summary
                .net_payable_from_events
                .entry(currency.clone())
                .or_default();
            *slot = slot.saturating_add(net);
        } else {
            summary.provider_days_from_events += 1;
        }
        events_days.insert((scope, subject, day, currency), v);
    }
    let restaurant_rows: Vec<(Uuid, NaiveDate, String, Vec<i64>)> = sqlx::query_as(
        "SELECT restaurant_id, business_day, currency::text,
                ARRAY[orders, gross_sales_minor, tax_minor, delivery_fees_minor, service_fees_minor,
                      tips_minor, commission_minor, provider_fees_minor, refunds_minor,
                      cash_collected_minor, net_payable_minor]::bigint[]
         FROM restaurant_settlement_days WHERE business_day BETWEEN $1 AND $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let provider_rows: Vec<(String, NaiveDate, String, Vec<i64>)> = sqlx::query_as(
        "SELECT provider, day, currency::text,
                ARRAY[authorized_minor, captured_minor, voided_minor, refunded_minor, fees_minor]::bigint[]
         FROM provider_settlement_days WHERE day BETWEEN $1 AND $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    summary.restaurant_days_in_read_model = restaurant_rows.len();
    summary.provider_days_in_read_model = provider_rows.len();
    let mut model_days: BTreeMap<DayKey, Vec<i64>> = BTreeMap::new();
    for (r, day, currency, v) in restaurant_rows {
        model_days.insert(("restaurant".into(), r.to_string(), day, currency), v);
    }
    for (p, day, currency, v) in provider_rows {
        model_days.insert(("provider".into(), p, day, currency), v);
    }
    compare_days(&events_days, &model_days, &mut breaks);

    // 2. Our ledger against the provider's statement.
    if let (Some(lines), Some(ours)) = (provider_statement, ours) {
        summary.ledger_operations = ours.len();
        summary.statement_lines = lines.len();
        compare_ledger(&ours, lines, &mut breaks);
    }

    // 3. Money ended orders still hold.
    let held: Vec<HeldRow> = sqlx::query_as(HELD).bind(to).fetch_all(pool).await?;
    breaks.extend(held.into_iter().map(HeldRow::into_break));

    for kind in BreakKind::ALL {
        summary.breaks_by_kind.insert(kind.as_str().to_owned(), 0);
    }
    for b in &breaks {
        *summary
            .breaks_by_kind
            .entry(b.kind.as_str().to_owned())
            .or_default() += 1;
    }
    summary.breaks = breaks.len();
    Ok(Report {
        from,
        to,
        provider_statement: provider_statement.is_some(),
        summary,
        breaks,
    })
}

fn figures_diff(fields: &[&str], ours: Option<&[i64]>, theirs: Option<&[i64]>) -> Vec<FieldDiff> {
    fields
        .iter()
        .enumerate()
        .filter_map(|(i, field)| {
            let a = ours.and_then(|v| v.get(i)).copied();
            let b = theirs.and_then(|v| v.get(i)).copied();
            (a != b).then(|| FieldDiff {
                field: (*field).to_owned(),
                ours: a.map(|x| x.to_string()),
                theirs: b.map(|x| x.to_string()),
            })
        })
        .collect()
}

fn compare_days(
    events: &BTreeMap<DayKey, Vec<i64>>,
    model: &BTreeMap<DayKey, Vec<i64>>,
    breaks: &mut Vec<Break>,
) {
    let mut keys: Vec<&DayKey> = events.keys().chain(model.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (scope, subject, day, currency) = key;
        let restaurant = scope == "restaurant";
        let fields: &[&str] = if restaurant {
            &RESTAURANT_FIELDS
        } else {
            &PROVIDER_FIELDS
        };
        let ours = events.get(key).map(Vec::as_slice);
        let theirs = model.get(key).map(Vec::as_slice);
        let kind = match (ours, theirs, restaurant) {
            (Some(a), Some(b), _) if a == b => continue,
            (Some(_), Some(_), true) => BreakKind::RestaurantDayMismatch,
            (Some(_), Some(_), false) => BreakKind::ProviderDayMismatch,
            (Some(_), None, true) => BreakKind::RestaurantDayMissing,
            (Some(_), None, false) => BreakKind::ProviderDayMissing,
            (None, _, true) => BreakKind::RestaurantDayUnexpected,
            (None, _, false) => BreakKind::ProviderDayUnexpected,
        };
        breaks.push(Break {
            kind,
            subject: subject.clone(),
            day: Some(*day),
            currency: Some(currency.clone()),
            provider_reference: None,
            payment_id: None,
            side: None,
            diffs: figures_diff(fields, ours, theirs),
        });
    }
}

fn ledger_break(kind: BreakKind, line: &StatementLine) -> Break {
    Break {
        kind,
        subject: line.operation.clone(),
        day: Some(line.occurred_at.date_naive()),
        currency: Some(line.currency.clone()),
        provider_reference: Some(line.provider_reference.clone()),
        payment_id: Some(line.payment_id.clone()),
        side: None,
        diffs: Vec::new(),
    }
}

fn compare_ledger(ours: &[StatementLine], provider: &[StatementLine], breaks: &mut Vec<Break>) {
    fn index(lines: &[StatementLine]) -> HashMap<(&str, &str), Vec<&StatementLine>> {
        let mut m: HashMap<(&str, &str), Vec<&StatementLine>> = HashMap::new();
        for l in lines {
            m.entry((l.operation.as_str(), l.provider_reference.as_str()))
                .or_default()
                .push(l);
        }
        m
    }
    let ours_by_key = index(ours);
    let theirs_by_key = index(provider);
    let mut keys: Vec<(&str, &str)> = ours_by_key
        .keys()
        .chain(theirs_by_key.keys())
        .copied()
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let diff = |field: &str, a: String, b: String| FieldDiff {
        field: field.to_owned(),
        ours: Some(a),
        theirs: Some(b),
    };
    for key in keys {
        let a = ours_by_key.get(&key).map(Vec::as_slice).unwrap_or_default();
        let b = theirs_by_key
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (side, lines) in [("ours", a), ("provider", b)] {
            if let [first, _, ..] = lines {
                let mut dup = ledger_break(BreakKind::Duplicate, first);
                dup.side = Some(side.to_owned());
                dup.diffs.push(FieldDiff {
                    field: "count".to_owned(),
                    ours: (side == "ours").then(|| lines.len().to_string()),
                    theirs: (side == "provider").then(|| lines.len().to_string()),
                });
                breaks.push(dup);
            }
        }
        match (a.first(), b.first()) {
            (Some(o), Some(t)) => {
                let checks = [
                    (
                        BreakKind::CurrencyMismatch,
                        "currency",
                        o.currency.clone(),
                        t.currency.clone(),
                    ),
                    (
                        BreakKind::AmountMismatch,
                        "amount_minor",
                        o.amount_minor.to_string(),
                        t.amount_minor.to_string(),
                    ),
                    (
                        BreakKind::FeeMismatch,
                        "fee_minor",
                        o.fee_minor.to_string(),
                        t.fee_minor.to_string(),
                    ),
                ];
                for (kind, field, ours, theirs) in checks {
                    if ours != theirs {
                        let mut x = ledger_break(kind, o);
                        x.diffs.push(diff(field, ours, theirs));
                        breaks.push(x);
                    }
                }
            }
            (Some(o), None) => breaks.push(ledger_break(BreakKind::MissingAtProvider, o)),
            (None, Some(t)) => breaks.push(ledger_break(BreakKind::MissingOnOurSide, t)),
            (None, None) => {}
        }
    }
}

/// The simulated provider's statement of `from..=to` (UTC days), from the
/// simulation's own ledger (`simulated_provider_operations`), in provider order.
pub async fn simulated_statement(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<StatementLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT operation, provider_reference, payment_id, amount_minor, currency::text AS currency,
                fee_minor, occurred_at
         FROM simulated_provider_operations
         WHERE occurred_at >= $1::date::timestamp AT TIME ZONE 'UTC'
           AND occurred_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
         ORDER BY occurred_at, id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}
