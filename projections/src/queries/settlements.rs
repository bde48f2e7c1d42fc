//! Settlement queries: a restaurant's days, the platform-wide day summary and
//! the CSV export. Figures and formulas: see [`crate::settlements`].

use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{QueryError, Viewer};

/// A restaurant's figures for one business day, integer minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct RestaurantSettlementDay {
    pub restaurant_id: Uuid,
    /// Business day in the restaurant's time zone.
    pub business_day: NaiveDate,
    pub currency: String,
    /// Orders delivered.
    pub orders: i64,
    pub gross_sales_minor: i64,
    pub tax_minor: i64,
    pub delivery_fees_minor: i64,
    pub service_fees_minor: i64,
    pub tips_minor: i64,
    pub commission_minor: i64,
    pub provider_fees_minor: i64,
    pub refunds_minor: i64,
    pub cash_collected_minor: i64,
    /// gross_sales + tax − commission − provider_fees − refunds
    pub net_payable_minor: i64,
}

/// A payment provider's figures for one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct ProviderSettlementDay {
    pub provider: String,
    pub day: NaiveDate,
    pub currency: String,
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub voided_minor: i64,
    pub refunded_minor: i64,
    pub fees_minor: i64,
}

/// Every restaurant's figures for one business day, totals per currency, and
/// the providers' figures for the same (UTC) date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlatformDaySummary {
    pub date: NaiveDate,
    /// One row per currency, `restaurant_id` nil.
    pub totals: Vec<RestaurantSettlementDay>,
    pub restaurants: Vec<RestaurantSettlementDay>,
    pub providers: Vec<ProviderSettlementDay>,
}

/// The day columns are numeric (migration 0009: sums never overflow); read as
/// bigint, which the order caps keep them within.
const DAY_COLUMNS: &str = "restaurant_id, business_day, currency::text AS currency,
    orders::bigint AS orders, gross_sales_minor::bigint AS gross_sales_minor,
    tax_minor::bigint AS tax_minor, delivery_fees_minor::bigint AS delivery_fees_minor,
    service_fees_minor::bigint AS service_fees_minor, tips_minor::bigint AS tips_minor,
    commission_minor::bigint AS commission_minor,
    provider_fees_minor::bigint AS provider_fees_minor, refunds_minor::bigint AS refunds_minor,
    cash_collected_minor::bigint AS cash_collected_minor,
    net_payable_minor::bigint AS net_payable_minor";

fn restaurant_scope(viewer: Viewer) -> Result<Option<Uuid>, QueryError> {
    match viewer {
        Viewer::All => Ok(None),
        Viewer::Restaurant(id) => Ok(Some(id)),
        Viewer::Customer(_) | Viewer::Rider(_) => Err(QueryError::Forbidden),
    }
}

/// A restaurant's business days `from..=to`.
pub async fn restaurant_days(
    pool: &PgPool,
    viewer: Viewer,
    restaurant_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<RestaurantSettlementDay>, QueryError> {
    if let Some(own) = restaurant_scope(viewer)?
        && own != restaurant_id
    {
        return Err(QueryError::Forbidden);
    }
    Ok(sqlx::query_as(&format!(
        "SELECT {DAY_COLUMNS} FROM restaurant_settlement_days
         WHERE restaurant_id = $1 AND business_day BETWEEN $2 AND $3
         ORDER BY business_day, currency"
    ))
    .bind(restaurant_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?)
}

/// The platform-wide summary of one day (a restaurant sees only its own row
/// and no providers).
pub async fn day_summary(
    pool: &PgPool,
    viewer: Viewer,
    date: NaiveDate,
) -> Result<PlatformDaySummary, QueryError> {
    let scope = restaurant_scope(viewer)?;
    let restaurants: Vec<RestaurantSettlementDay> = sqlx::query_as(&format!(
        "SELECT {DAY_COLUMNS} FROM restaurant_settlement_days
         WHERE business_day = $1 AND ($2::uuid IS NULL OR restaurant_id = $2)
         ORDER BY restaurant_id, currency"
    ))
    .bind(date)
    .bind(scope)
    .fetch_all(pool)
    .await?;
    let totals: Vec<RestaurantSettlementDay> = sqlx::query_as(
        "SELECT '00000000-0000-0000-0000-000000000000'::uuid AS restaurant_id, business_day,
                currency::text AS currency, sum(orders)::bigint AS orders,
                sum(gross_sales_minor)::bigint AS gross_sales_minor, sum(tax_minor)::bigint AS tax_minor,
                sum(delivery_fees_minor)::bigint AS delivery_fees_minor,
                sum(service_fees_minor)::bigint AS service_fees_minor, sum(tips_minor)::bigint AS tips_minor,
                sum(commission_minor)::bigint AS commission_minor,
                sum(provider_fees_minor)::bigint AS provider_fees_minor,
                sum(refunds_minor)::bigint AS refunds_minor,
                sum(cash_collected_minor)::bigint AS cash_collected_minor,
                sum(net_payable_minor)::bigint AS net_payable_minor
         FROM restaurant_settlement_days
         WHERE business_day = $1 AND ($2::uuid IS NULL OR restaurant_id = $2)
         GROUP BY business_day, currency ORDER BY currency",
    )
    .bind(date)
    .bind(scope)
    .fetch_all(pool)
    .await?;
    let providers: Vec<ProviderSettlementDay> = if scope.is_none() {
        sqlx::query_as(
            "SELECT provider, day, currency::text AS currency,
                    authorized_minor::bigint AS authorized_minor,
                    captured_minor::bigint AS captured_minor, voided_minor::bigint AS voided_minor,
                    refunded_minor::bigint AS refunded_minor, fees_minor::bigint AS fees_minor
             FROM provider_settlement_days WHERE day = $1 ORDER BY provider, currency",
        )
        .bind(date)
        .fetch_all(pool)
        .await?
    } else {
        Vec::new()
    };
    Ok(PlatformDaySummary {
        date,
        totals,
        restaurants,
        providers,
    })
}

/// Header of [`export_csv`].
pub const CSV_HEADER: &str = "restaurant_id,business_day,currency,orders,gross_sales_minor,tax_minor,delivery_fees_minor,service_fees_minor,tips_minor,commission_minor,provider_fees_minor,refunds_minor,cash_collected_minor,net_payable_minor";

/// The restaurant days `from..=to` (one restaurant, or all the viewer may
/// see) as CSV, one line per restaurant, day and currency.
pub async fn export_csv(
    pool: &PgPool,
    viewer: Viewer,
    restaurant_id: Option<Uuid>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<String, QueryError> {
    let restaurant = match (restaurant_scope(viewer)?, restaurant_id) {
        (Some(own), Some(asked)) if own != asked => return Err(QueryError::Forbidden),
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let rows: Vec<RestaurantSettlementDay> = sqlx::query_as(&format!(
        "SELECT {DAY_COLUMNS} FROM restaurant_settlement_days
         WHERE business_day BETWEEN $1 AND $2 AND ($3::uuid IS NULL OR restaurant_id = $3)
         ORDER BY business_day, restaurant_id, currency"
    ))
    .bind(from)
    .bind(to)
    .bind(restaurant)
    .fetch_all(pool)
    .await?;
    let mut out = String::with_capacity(128 * (rows.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    for r in rows {
        // Only uuids, dates, currency codes and integers: nothing to quote.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.restaurant_id,
            r.business_day,
            r.currency,
            r.orders,
            r.gross_sales_minor,
            r.tax_minor,
            r.delivery_fees_minor,
            r.service_fees_minor,
            r.tips_minor,
            r.commission_minor,
            r.provider_fees_minor,
            r.refunds_minor,
            r.cash_collected_minor,
            r.net_payable_minor
        );
    }
    Ok(out)
}
