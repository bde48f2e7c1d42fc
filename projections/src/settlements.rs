//! Settlement reports (from the orders and payments topics). Every figure is
//! an integer amount of minor units of the restaurant's currency.
//!
//! ## Restaurant figures, per restaurant per business day
//!
//! The business day of a figure is the date, in the restaurant's IANA time
//! zone (`OrderPlaced.restaurant_time_zone`), of the business timestamp carried
//! by the event that puts it there:
//!
//! | event | day of | figures |
//! |---|---|---|
//! | `OrderDelivered` | `delivered_at` | orders +1; gross item sales += subtotal; tax += tax; delivery fees += delivery fee; service fees += service fee; tips += tip; commission += commission (all from the order's `OrderPlaced` price) |
//! | `PaymentAuthorized` | `authorized_at` | provider fees += fee |
//! | `PaymentCaptured` | `captured_at` | provider fees += fee |
//! | `PaymentVoided` | `voided_at` | provider fees += fee |
//! | `PaymentRefunded` | `refunded_at` | refunds += the restaurant's share (`allocation.items + allocation.tax`); commission −= `allocation.commission_reversed`; provider fees += fee. Events without an allocation (first written as v1): refunds += amount |
//! | `CashCollected` | `collected_at` | cash collected += amount |
//! | `PaymentCaptureFailed` | – | none: no money moved (the payment stays authorized) |
//! | `PaymentVoidFailed`, `PaymentRefundFailed` | – | none: no money moved. The authorization still held, or the capture not refunded, of a cancelled or rejected order is reported by the reconciliation (`authorization_held`, `refund_outstanding`), never balanced away here |
//!
//! Sales are recognised only when an order is delivered: a cancelled or
//! rejected order adds no sales, but the provider fees its payment caused
//! (authorization, void) stay on the days they were charged. A refund lands on
//! the refund's day, whatever day the sale was. A refund is allocated by
//! component when it is recorded (`PaymentRefunded.allocation`, see
//! `ordertrail_domain::pricing::allocate_refund`): delivery fee, service fee
//! and tip shares are the platform's and the rider's, not the restaurant's.
//!
//! **Net payable to the restaurant** = gross item sales + tax − commission −
//! provider fees − refunds. Delivery fees and service fees are the platform's,
//! tips are the rider's; cash collected is held by the platform's riders and
//! reported for reconciliation only, so none of them enter the net.
//!
//! ## Provider figures, per payment provider per UTC day
//!
//! Authorized (`PaymentAuthorized.amount`), captured, voided (the released
//! authorization), refunded, and fees (every provider fee), each on the UTC
//! date of the event's business timestamp. Cash is not a provider.
//!
//! ## Tables
//!
//! `settlement_entries` is the ledger (one row per event that moves a
//! restaurant figure); `restaurant_settlement_days` and
//! `provider_settlement_days` are its running sums. A payment event can be
//! consumed before its order's `OrderPlaced` (another topic): its entry waits
//! with no business day until the time zone is known, then joins its day.
//! Per-order advisory locks make that hand-over safe between instances.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use ordertrail_schemas::{AggregateKind, Money, OrderEvent, PaymentEvent};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::rows::{CopyRows, Store, Table, aggregate_uuid, apply_by_store, copy_row};
use crate::runtime::{ProjectionError, Projector, ReadModelTable, SourcedEvent, Written};

pub const NAME: &str = "settlements";

/// The settlement projector.
#[derive(Debug, Clone, Default)]
pub struct Settlements;

const ORDERS: Table = Table {
    name: "settlement_orders",
    key: "order_id",
    columns: &[
        "order_id",
        "restaurant_id",
        "time_zone",
        "currency",
        "subtotal_minor",
        "tax_minor",
        "delivery_fee_minor",
        "service_fee_minor",
        "tip_minor",
        "commission_minor",
    ],
};

const PAYMENTS: Table = Table {
    name: "settlement_payments",
    key: "payment_id",
    columns: &[
        "payment_id",
        "order_id",
        "restaurant_id",
        "provider",
        "currency",
    ],
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderFacts {
    order_id: Uuid,
    restaurant_id: Uuid,
    time_zone: String,
    currency: String,
    subtotal_minor: i64,
    tax_minor: i64,
    delivery_fee_minor: i64,
    service_fee_minor: i64,
    tip_minor: i64,
    commission_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentFacts {
    payment_id: Uuid,
    order_id: Uuid,
    restaurant_id: Uuid,
    provider: Option<String>,
    currency: String,
}

/// Figures (`i64`, one event's) and their day sum (`i128`, with `add`),
/// from one list of fields.
macro_rules! figures_and_day_sum {
    (
        $(#[$figures_meta:meta])* $vis:vis struct $figures:ident;
        $(#[$sum_meta:meta])* struct $sum:ident;
        { $($field_vis:vis $field:ident),+ $(,)? }
    ) => {
        $(#[$figures_meta])*
        $vis struct $figures {
            $($field_vis $field: i64,)+
        }

        impl $figures {
            /// The figures' column names, in column order.
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];

            /// The figures, in column order.
            #[allow(dead_code, reason = "only the ledger's figures are copied")]
            fn values(&self) -> [i64; [$(stringify!($field)),+].len()] {
                [$(self.$field),+]
            }
        }

        $(#[$sum_meta])*
        struct $sum {
            $($field: i128,)+
        }

        impl $sum {
            fn add(&mut self, f: &$figures) {
                $(self.$field = self.$field.saturating_add(i128::from(f.$field));)+
            }
        }
    };
}

figures_and_day_sum! {
    /// The restaurant figures; the same columns in the ledger and the day table.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) struct Figures;
    /// A batch's sum of [`Figures`] for one restaurant day, in `i128`: a sum of
    /// `i64`s that cannot overflow (the day table's columns are numeric,
    /// migration 0009), so no batch of orders, however large their amounts, can
    /// stop the projector.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
    struct DayFigures;
    {
        pub orders,
        pub gross_sales_minor,
        pub tax_minor,
        pub delivery_fees_minor,
        pub service_fees_minor,
        pub tips_minor,
        pub commission_minor,
        pub provider_fees_minor,
        pub refunds_minor,
        pub cash_collected_minor,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    event_id: Uuid,
    event_type: String,
    restaurant_id: Uuid,
    order_id: Uuid,
    occurred_at: DateTime<Utc>,
    business_day: Option<NaiveDate>,
    currency: String,
    #[serde(flatten)]
    figures: Figures,
}

impl Figures {
    /// An event's figures when all it costs the restaurant is a provider fee.
    fn provider_fees(fees: i64) -> Self {
        Figures {
            provider_fees_minor: fees,
            ..Figures::default()
        }
    }
}

impl DayFigures {
    /// gross sales + tax − commission − provider fees − refunds.
    fn net_payable(&self) -> i128 {
        self.gross_sales_minor
            .saturating_add(self.tax_minor)
            .saturating_sub(self.commission_minor)
            .saturating_sub(self.provider_fees_minor)
            .saturating_sub(self.refunds_minor)
    }
}

#[derive(Debug, Serialize)]
struct DayRow {
    restaurant_id: Uuid,
    business_day: NaiveDate,
    currency: String,
    #[serde(flatten)]
    figures: DayFigures,
    net_payable_minor: i128,
}

figures_and_day_sum! {
    #[derive(Debug, Clone, Copy, Default)]
    struct ProviderFigures;
    /// A batch's sum of [`ProviderFigures`] for one provider day (`i128`, see [`DayFigures`]).
    #[derive(Debug, Clone, Copy, Default)]
    struct ProviderDayFigures;
    { authorized, captured, voided, refunded, fees }
}

#[derive(Debug, Serialize)]
struct ProviderDayRow<'a> {
    provider: &'a str,
    day: NaiveDate,
    currency: &'a str,
    authorized_minor: i128,
    captured_minor: i128,
    voided_minor: i128,
    refunded_minor: i128,
    fees_minor: i128,
}

fn parse_tz(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// Advisory-lock key of an order (class, hash) for the pending hand-over.
const LOCK_CLASS: i32 = 0x5e77;
fn lock_key(order: Uuid) -> i32 {
    let v = order.as_u128();
    let folded = (v as u64) ^ ((v >> 64) as u64);
    ((folded as u32) ^ ((folded >> 32) as u32)) as i32
}

enum Decoded {
    Order(Box<OrderEvent>),
    Payment(PaymentEvent),
}

fn expect_currency(e: &SourcedEvent, currency: &str, m: &Money) -> Result<i64, ProjectionError> {
    if m.currency.as_str() == currency {
        Ok(m.amount)
    } else {
        Err(e.reject(format!(
            "amount {m} is not in the order's currency {currency}"
        )))
    }
}

impl Projector for Settlements {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sources(&self) -> &'static [AggregateKind] {
        &[AggregateKind::Order, AggregateKind::Payment]
    }

    fn tables(&self) -> &'static [ReadModelTable] {
        const {
            &[
                ReadModelTable::derived("settlement_orders"),
                ReadModelTable::derived("settlement_payments"),
                ReadModelTable::derived("settlement_entries"),
                ReadModelTable::derived("restaurant_settlement_days"),
                ReadModelTable::derived("provider_settlement_days"),
            ]
        }
    }

    apply_by_store!(apply_batch);
}

/// Apply a batch: facts loaded, entries and day sums computed in memory,
/// stored once.
async fn apply_batch(
    tx: &mut PgConnection,
    batch: &[SourcedEvent],
    mut store: Store<'_>,
) -> Result<(), ProjectionError> {
    {
        // Decode, and load what the batch refers to.
        let mut decoded = Vec::with_capacity(batch.len());
        let mut order_ids = Vec::new();
        let mut payment_ids = Vec::new();
        for e in batch {
            let id = aggregate_uuid(e)?;
            match e.envelope.aggregate_type {
                AggregateKind::Order => {
                    let ev: OrderEvent = e.decode()?;
                    if matches!(ev, OrderEvent::OrderDelivered(_)) {
                        order_ids.push(id);
                    }
                    decoded.push((e, id, Decoded::Order(Box::new(ev))));
                }
                AggregateKind::Payment => {
                    let ev: PaymentEvent = e.decode()?;
                    payment_ids.push(id);
                    decoded.push((e, id, Decoded::Payment(ev)));
                }
                AggregateKind::Delivery => {
                    return Err(e.reject("settlements do not consume deliveries"));
                }
            }
        }
        let mut orders: HashMap<Uuid, OrderFacts> = ORDERS
            .load_by_key(tx, &order_ids, |o: &OrderFacts| o.order_id, &store)
            .await?;
        let mut payments: BTreeMap<Uuid, PaymentFacts> = PAYMENTS
            .load_by_key(tx, &payment_ids, |p: &PaymentFacts| p.payment_id, &store)
            .await?;

        let mut new_orders: Vec<Uuid> = Vec::new();
        let mut changed_payments: Vec<Uuid> = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut provider_days: BTreeMap<(String, NaiveDate, String), ProviderDayFigures> =
            BTreeMap::new();

        for (e, id, ev) in decoded {
            let event_id = e.envelope.event_id;
            let event_type = e.envelope.event_type.clone();
            let ev = match ev {
                Decoded::Order(order) => Ok(*order),
                Decoded::Payment(payment) => Err(payment),
            };
            match ev {
                Ok(OrderEvent::OrderPlaced(p)) => {
                    if parse_tz(&p.restaurant_time_zone).is_none() {
                        return Err(e.reject(format!(
                            "unknown restaurant time zone {:?}",
                            p.restaurant_time_zone
                        )));
                    }
                    let currency = p.price.total.currency.to_string();
                    let price = &p.price;
                    let amount = |m: &Money| expect_currency(e, &currency, m);
                    let facts = OrderFacts {
                        order_id: id,
                        restaurant_id: p.restaurant_id.as_uuid(),
                        time_zone: p.restaurant_time_zone.clone(),
                        subtotal_minor: amount(&price.subtotal)?,
                        tax_minor: amount(&price.tax)?,
                        delivery_fee_minor: amount(&price.delivery_fee)?,
                        service_fee_minor: amount(&price.service_fee)?,
                        tip_minor: amount(&price.tip)?,
                        commission_minor: amount(&price.commission)?,
                        currency,
                    };
                    orders.insert(id, facts);
                    new_orders.push(id);
                }
                Ok(OrderEvent::OrderDelivered(d)) => {
                    let Some(o) = orders.get(&id) else {
                        return Err(e.reject("order delivered but never placed"));
                    };
                    entries.push(Entry {
                        event_id,
                        event_type,
                        restaurant_id: o.restaurant_id,
                        order_id: id,
                        occurred_at: d.delivered_at,
                        business_day: None,
                        currency: o.currency.clone(),
                        figures: Figures {
                            orders: 1,
                            gross_sales_minor: o.subtotal_minor,
                            tax_minor: o.tax_minor,
                            delivery_fees_minor: o.delivery_fee_minor,
                            service_fees_minor: o.service_fee_minor,
                            tips_minor: o.tip_minor,
                            commission_minor: o.commission_minor,
                            ..Figures::default()
                        },
                    });
                }
                Ok(_) => {}
                Err(ev) => {
                    let mut provider_figures = ProviderFigures::default();
                    let (facts, occurred_at, figures) = match ev {
                        PaymentEvent::PaymentAuthorized(a) => {
                            let facts = PaymentFacts {
                                payment_id: id,
                                order_id: a.order_id.as_uuid(),
                                restaurant_id: a.restaurant_id.as_uuid(),
                                provider: Some(a.provider.clone()),
                                currency: a.amount.currency.to_string(),
                            };
                            payments.insert(id, facts.clone());
                            changed_payments.push(id);
                            provider_figures.authorized = a.amount.amount;
                            provider_figures.fees = expect_currency(e, &facts.currency, &a.fee)?;
                            (
                                facts,
                                a.authorized_at,
                                Figures::provider_fees(provider_figures.fees),
                            )
                        }
                        PaymentEvent::PaymentDeclined(d) => {
                            payments.entry(id).or_insert_with(|| PaymentFacts {
                                payment_id: id,
                                order_id: d.order_id.as_uuid(),
                                restaurant_id: d.restaurant_id.as_uuid(),
                                provider: Some(d.provider.clone()),
                                currency: d.amount.currency.to_string(),
                            });
                            changed_payments.push(id);
                            continue;
                        }
                        PaymentEvent::CashCollected(c) => {
                            let facts = PaymentFacts {
                                payment_id: id,
                                order_id: c.order_id.as_uuid(),
                                restaurant_id: c.restaurant_id.as_uuid(),
                                provider: None,
                                currency: c.amount.currency.to_string(),
                            };
                            payments.insert(id, facts.clone());
                            changed_payments.push(id);
                            let figures = Figures {
                                cash_collected_minor: c.amount.amount,
                                ..Figures::default()
                            };
                            (facts, c.collected_at, figures)
                        }
                        other => {
                            let Some(facts) = payments.get(&id).cloned() else {
                                return Err(
                                    e.reject("event for a payment that was never authorized")
                                );
                            };
                            let cur = facts.currency.clone();
                            match other {
                                PaymentEvent::PaymentCaptured(c) => {
                                    provider_figures.captured =
                                        expect_currency(e, &cur, &c.amount)?;
                                    provider_figures.fees = expect_currency(e, &cur, &c.fee)?;
                                    (
                                        facts,
                                        c.captured_at,
                                        Figures::provider_fees(provider_figures.fees),
                                    )
                                }
                                PaymentEvent::PaymentVoided(v) => {
                                    provider_figures.voided = expect_currency(e, &cur, &v.amount)?;
                                    provider_figures.fees = expect_currency(e, &cur, &v.fee)?;
                                    (
                                        facts,
                                        v.voided_at,
                                        Figures::provider_fees(provider_figures.fees),
                                    )
                                }
                                PaymentEvent::PaymentRefunded(r) => {
                                    provider_figures.refunded =
                                        expect_currency(e, &cur, &r.amount)?;
                                    provider_figures.fees = expect_currency(e, &cur, &r.fee)?;
                                    // The restaurant bears its share only:
                                    // the refunded items and tax, less the
                                    // commission given back (see the table).
                                    let (refunds_minor, commission_minor) = match &r.allocation {
                                        Some(a) => {
                                            let items = expect_currency(e, &cur, &a.items)?;
                                            let tax = expect_currency(e, &cur, &a.tax)?;
                                            let reversed =
                                                expect_currency(e, &cur, &a.commission_reversed)?;
                                            (items.saturating_add(tax), reversed.saturating_neg())
                                        }
                                        None => (provider_figures.refunded, 0),
                                    };
                                    let f = Figures {
                                        provider_fees_minor: provider_figures.fees,
                                        refunds_minor,
                                        commission_minor,
                                        ..Figures::default()
                                    };
                                    (facts, r.refunded_at, f)
                                }
                                // A failed capture moves no money.
                                PaymentEvent::PaymentAuthorized(_)
                                | PaymentEvent::PaymentDeclined(_)
                                | PaymentEvent::PaymentCaptureFailed(_)
                                | PaymentEvent::PaymentVoidFailed(_)
                                | PaymentEvent::PaymentRefundFailed(_)
                                | PaymentEvent::CashCollected(_) => continue,
                            }
                        }
                    };
                    if let Some(provider) = &facts.provider {
                        let key = (
                            provider.clone(),
                            occurred_at.date_naive(),
                            facts.currency.clone(),
                        );
                        provider_days.entry(key).or_default().add(&provider_figures);
                    }
                    entries.push(Entry {
                        event_id,
                        event_type,
                        restaurant_id: facts.restaurant_id,
                        order_id: facts.order_id,
                        occurred_at,
                        business_day: None,
                        currency: facts.currency,
                        figures,
                    });
                }
            }
        }

        // Time zones of the orders the payment entries belong to.
        let unknown: Vec<Uuid> = {
            let mut u: Vec<Uuid> = entries
                .iter()
                .map(|en| en.order_id)
                .filter(|o| !orders.contains_key(o))
                .collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        for o in ORDERS.load::<OrderFacts>(tx, &unknown, &store).await? {
            orders.insert(o.order_id, o);
        }
        // Serialise with other instances on the orders whose time zone is
        // still unknown and on the orders placed in this batch. A bulk fill
        // is the only writer of its shadow: nothing to serialise with.
        let mut lock: Vec<i32> = unknown
            .iter()
            .filter(|o| !orders.contains_key(o))
            .chain(new_orders.iter())
            .map(|o| lock_key(*o))
            .collect();
        lock.sort_unstable();
        lock.dedup();
        if !lock.is_empty() && !store.is_bulk() {
            sqlx::query(
                "SELECT pg_advisory_xact_lock($1, k) FROM (SELECT k FROM unnest($2::int[]) AS k ORDER BY k) AS s",
            )
            .bind(LOCK_CLASS)
            .bind(&lock)
            .execute(&mut *tx)
            .await?;
            let still: Vec<Uuid> = unknown
                .iter()
                .copied()
                .filter(|o| !orders.contains_key(o))
                .collect();
            for o in ORDERS.load::<OrderFacts>(tx, &still, &store).await? {
                orders.insert(o.order_id, o);
            }
        }

        // Business days of the new entries.
        let mut days: BTreeMap<(Uuid, NaiveDate, String), DayFigures> = BTreeMap::new();
        let mut add_to_day = |en: &Entry, day: NaiveDate| {
            days.entry((en.restaurant_id, day, en.currency.clone()))
                .or_default()
                .add(&en.figures);
        };
        let first = batch.first().ok_or_else(|| {
            ProjectionError::Database(sqlx::Error::Protocol("empty batch".into()))
        })?;
        for en in &mut entries {
            if let Some(o) = orders.get(&en.order_id) {
                if o.restaurant_id != en.restaurant_id || o.currency != en.currency {
                    let at = batch
                        .iter()
                        .find(|b| b.envelope.event_id == en.event_id)
                        .unwrap_or(first);
                    return Err(
                        at.reject("payment's restaurant or currency differs from its order's")
                    );
                }
                let tz = parse_tz(&o.time_zone)
                    .ok_or_else(|| first.reject("stored time zone unknown"))?;
                let day = en.occurred_at.with_timezone(&tz).date_naive();
                en.business_day = Some(day);
                add_to_day(en, day);
            }
        }

        // Entries that waited for the orders placed in this batch.
        if !new_orders.is_empty() {
            let rows: Vec<(Json<Entry>,)> = sqlx::query_as(
                "SELECT to_jsonb(e) FROM settlement_entries e
                 WHERE e.business_day IS NULL AND e.order_id = ANY($1)
                 ORDER BY e.event_id FOR UPDATE",
            )
            .bind(&new_orders)
            .fetch_all(&mut *tx)
            .await?;
            let mut resolved_ids = Vec::with_capacity(rows.len());
            let mut resolved_days = Vec::with_capacity(rows.len());
            for (Json(en),) in rows {
                let Some(o) = orders.get(&en.order_id) else {
                    continue;
                };
                let tz = parse_tz(&o.time_zone)
                    .ok_or_else(|| first.reject("stored time zone unknown"))?;
                let day = en.occurred_at.with_timezone(&tz).date_naive();
                add_to_day(&en, day);
                resolved_ids.push(en.event_id);
                resolved_days.push(day);
            }
            if !resolved_ids.is_empty() {
                sqlx::query(
                    "UPDATE settlement_entries e SET business_day = x.d
                     FROM unnest($1::uuid[], $2::date[]) AS x(i, d) WHERE e.event_id = x.i",
                )
                .bind(&resolved_ids)
                .bind(&resolved_days)
                .execute(&mut *tx)
                .await?;
            }
        }

        // Store.
        let placed: Vec<&OrderFacts> = new_orders.iter().filter_map(|o| orders.get(o)).collect();
        ORDERS.insert_new_in(tx, &placed, &mut store).await?;
        changed_payments.sort_unstable();
        changed_payments.dedup();
        let pays: Vec<&PaymentFacts> = changed_payments
            .iter()
            .filter_map(|p| payments.get(p))
            .collect();
        PAYMENTS.upsert_in(tx, &pays, &mut store).await?;
        if !entries.is_empty() {
            if store.is_bulk() {
                copy_entries(tx, &entries).await?;
            } else {
                insert_json(
                    tx,
                    "INSERT INTO settlement_entries SELECT * FROM jsonb_populate_recordset(NULL::settlement_entries, $1)",
                    &entries,
                )
                .await?;
            }
        }
        let day_rows: Vec<DayRow> = days
            .into_iter()
            .map(
                |((restaurant_id, business_day, currency), figures)| DayRow {
                    restaurant_id,
                    business_day,
                    currency,
                    net_payable_minor: figures.net_payable(),
                    figures,
                },
            )
            .collect();
        insert_json(tx, &ADD_RESTAURANT_DAYS, &day_rows).await?;
        let provider_rows: Vec<ProviderDayRow<'_>> = provider_days
            .iter()
            .map(|((provider, day, currency), f)| ProviderDayRow {
                provider,
                day: *day,
                currency,
                authorized_minor: f.authorized,
                captured_minor: f.captured,
                voided_minor: f.voided,
                refunded_minor: f.refunded,
                fees_minor: f.fees,
            })
            .collect();
        insert_json(tx, &ADD_PROVIDER_DAYS, &provider_rows).await?;
        Ok(())
    }
}

/// Add a batch's restaurant day sums to the stored days.
static ADD_RESTAURANT_DAYS: LazyLock<String> = LazyLock::new(|| {
    add_to_days(
        "restaurant_settlement_days",
        "restaurant_id, business_day, currency",
        Figures::COLUMNS
            .iter()
            .chain(&["net_payable_minor"])
            .map(|c| c.to_string()),
    )
});

/// Add a batch's provider day sums to the stored days.
static ADD_PROVIDER_DAYS: LazyLock<String> = LazyLock::new(|| {
    add_to_days(
        "provider_settlement_days",
        "provider, day, currency",
        ProviderFigures::COLUMNS
            .iter()
            .map(|c| format!("{c}_minor")),
    )
});

/// Insert day rows into `table` in `key` order; a day that exists gets the
/// rows' `figures` added to its own.
fn add_to_days(table: &str, key: &str, figures: impl Iterator<Item = String>) -> String {
    let set: Vec<String> = figures
        .map(|c| format!("{c} = t.{c} + EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} AS t
         SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1)
         ORDER BY {key}
         ON CONFLICT ({key}) DO UPDATE SET {}",
        set.join(", ")
    )
}

/// Run `sql` with `rows` as its JSON array `$1`; nothing when there are no
/// rows.
async fn insert_json<T: Serialize + Sync>(
    tx: &mut PgConnection,
    sql: &str,
    rows: &[T],
) -> Result<(), sqlx::Error> {
    if !rows.is_empty() {
        sqlx::query(sql).bind(Json(rows)).execute(&mut *tx).await?;
    }
    Ok(())
}

copy_row! {
    OrderFacts, order_id,
    fn copy_rest(&self, row: &mut CopyRows) {
        row.uuid(self.restaurant_id)
            .text(&self.time_zone)
            .text(&self.currency);
        for v in [
            self.subtotal_minor,
            self.tax_minor,
            self.delivery_fee_minor,
            self.service_fee_minor,
            self.tip_minor,
            self.commission_minor,
        ] {
            row.int8(v);
        }
    }
}

copy_row! {
    PaymentFacts, payment_id,
    fn copy_rest(&self, row: &mut CopyRows) {
        row.uuid(self.order_id)
            .uuid(self.restaurant_id)
            .opt(self.provider.as_deref(), CopyRows::text)
            .text(&self.currency);
    }
}

/// The ledger's columns: the entry's own, then its figures.
static ENTRY_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    [
        "event_id",
        "event_type",
        "restaurant_id",
        "order_id",
        "occurred_at",
        "business_day",
        "currency",
    ]
    .into_iter()
    .chain(Figures::COLUMNS.iter().copied())
    .collect()
});

/// Copy ledger entries into a table that cannot hold them yet (a bulk
/// fill's shadow).
async fn copy_entries(tx: &mut PgConnection, entries: &[Entry]) -> Result<(), sqlx::Error> {
    let mut copy = CopyRows::new("settlement_entries", &ENTRY_COLUMNS);
    for en in entries {
        copy.row()
            .uuid(en.event_id)
            .text(&en.event_type)
            .uuid(en.restaurant_id)
            .uuid(en.order_id)
            .timestamptz(en.occurred_at)
            .date(en.business_day)
            .text(&en.currency);
        for v in en.figures.values() {
            copy.int8(v);
        }
    }
    copy.copy(tx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_payable_is_sales_plus_tax_minus_commission_fees_and_refunds() {
        let f = DayFigures {
            orders: 1,
            gross_sales_minor: 2_899,
            tax_minor: 203,
            delivery_fees_minor: 319,
            service_fees_minor: 145,
            tips_minor: 150,
            commission_minor: 435,
            provider_fees_minor: 60,
            refunds_minor: 500,
            cash_collected_minor: 0,
        };
        assert_eq!(f.net_payable(), 2_899 + 203 - 435 - 60 - 500);
    }

    #[test]
    fn day_sums_of_the_largest_orders_cannot_overflow() {
        // Two orders at the old i64 limit on one day: the sum is kept (the
        // day columns are numeric, migration 0009), nothing is rejected.
        let huge = Figures {
            orders: 1,
            tips_minor: i64::MAX,
            gross_sales_minor: i64::MAX,
            ..Figures::default()
        };
        let mut day = DayFigures::default();
        day.add(&huge);
        day.add(&huge);
        assert_eq!(day.tips_minor, 2 * i128::from(i64::MAX));
        assert_eq!(day.orders, 2);
        assert_eq!(day.net_payable(), 2 * i128::from(i64::MAX));
    }
}
