//! Rider ETA queries: by order, by rider, all active deliveries (optionally in
//! a bounding box), and the ETA error per day.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{QueryError, Viewer};

/// A delivery's rider position, distances (metres) and ETAs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct DeliveryEta {
    pub delivery_id: Uuid,
    pub order_id: Uuid,
    pub restaurant_id: Uuid,
    /// requested, assigned, picked_up, completed, failed, cancelled
    pub status: String,
    pub active: bool,
    pub rider_id: Option<Uuid>,
    pub rider_lat: Option<f64>,
    pub rider_lon: Option<f64>,
    pub rider_reported_at: Option<DateTime<Utc>>,
    pub speed_mps: f64,
    /// Whether the speed comes from the rider's own recent reports (else the default).
    pub speed_from_reports: bool,
    pub distance_to_pickup_m: Option<f64>,
    pub distance_to_dropoff_m: Option<f64>,
    pub ready_by: Option<DateTime<Utc>>,
    pub pickup_eta: Option<DateTime<Utc>>,
    pub dropoff_eta: Option<DateTime<Utc>>,
    pub predicted_pickup_at: Option<DateTime<Utc>>,
    pub predicted_dropoff_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A bounding box in degrees; a delivery is inside when its rider's last
/// position (or, before any, its pickup point) is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EtaBounds {
    pub min_lat: f64,
    pub min_lon: f64,
    pub max_lat: f64,
    pub max_lon: f64,
}

/// ETA error of the deliveries completed on one UTC day, seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct EtaAccuracyDay {
    pub day: NaiveDate,
    /// Completed deliveries with a drop-off prediction (made at pickup).
    pub deliveries: i64,
    pub dropoff_mean_abs_error_s: Option<f64>,
    pub dropoff_p90_abs_error_s: Option<f64>,
    /// Deliveries with a pickup prediction (made at the rider's first fix).
    pub pickups: i64,
    pub pickup_mean_abs_error_s: Option<f64>,
    pub pickup_p90_abs_error_s: Option<f64>,
}

const SELECT: &str =
    "SELECT e.delivery_id, e.order_id, e.restaurant_id, e.status, e.active, e.rider_id,
       e.rider_lat, e.rider_lon, e.rider_reported_at, e.speed_mps, e.speed_from_reports,
       e.distance_to_pickup_m, e.distance_to_dropoff_m, e.ready_by, e.pickup_eta, e.dropoff_eta,
       e.predicted_pickup_at, e.predicted_dropoff_at, e.picked_up_at, e.completed_at, e.updated_at
FROM rider_etas e WHERE true";

fn push_visibility(q: &mut QueryBuilder<'_, Postgres>, viewer: Viewer) {
    match viewer {
        Viewer::All => {}
        Viewer::Restaurant(id) => {
            q.push(" AND e.restaurant_id = ").push_bind(id);
        }
        Viewer::Customer(id) => {
            q.push(" AND EXISTS (SELECT 1 FROM order_history o WHERE o.order_id = e.order_id AND o.customer_id = ")
                .push_bind(id)
                .push(")");
        }
        Viewer::Rider(id) => {
            q.push(" AND e.rider_id = ").push_bind(id);
        }
    }
}

/// The ETA of an order's delivery.
pub async fn eta_by_order(
    pool: &PgPool,
    viewer: Viewer,
    order_id: Uuid,
) -> Result<DeliveryEta, QueryError> {
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    push_visibility(&mut q, viewer);
    q.push(" AND e.order_id = ").push_bind(order_id);
    q.push(" ORDER BY e.requested_at DESC LIMIT 1");
    q.build_query_as()
        .fetch_optional(pool)
        .await?
        .ok_or(QueryError::NotFound)
}

/// The active deliveries of a rider.
pub async fn etas_by_rider(
    pool: &PgPool,
    viewer: Viewer,
    rider_id: Uuid,
) -> Result<Vec<DeliveryEta>, QueryError> {
    if matches!(viewer, Viewer::Customer(_)) {
        return Err(QueryError::Forbidden);
    }
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    push_visibility(&mut q, viewer);
    q.push(" AND e.active AND e.rider_id = ")
        .push_bind(rider_id);
    q.push(" ORDER BY e.requested_at, e.delivery_id");
    Ok(q.build_query_as().fetch_all(pool).await?)
}

/// Every active delivery, optionally within a bounding box.
pub async fn active_deliveries(
    pool: &PgPool,
    viewer: Viewer,
    bounds: Option<EtaBounds>,
) -> Result<Vec<DeliveryEta>, QueryError> {
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    push_visibility(&mut q, viewer);
    q.push(" AND e.active");
    if let Some(b) = bounds {
        // An inverted box holds no point: an empty list, not an error.
        if b.min_lat > b.max_lat || b.min_lon > b.max_lon {
            return Ok(Vec::new());
        }
        q.push(" AND coalesce(e.rider_lat, e.pickup_lat) BETWEEN ")
            .push_bind(b.min_lat)
            .push(" AND ")
            .push_bind(b.max_lat)
            .push(" AND coalesce(e.rider_lon, e.pickup_lon) BETWEEN ")
            .push_bind(b.min_lon)
            .push(" AND ")
            .push_bind(b.max_lon);
    }
    q.push(" ORDER BY e.requested_at, e.delivery_id");
    Ok(q.build_query_as().fetch_all(pool).await?)
}

/// Mean and p90 absolute ETA error per UTC day of completion, `from..=to`.
pub async fn eta_accuracy(
    pool: &PgPool,
    viewer: Viewer,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<EtaAccuracyDay>, QueryError> {
    let restaurant = match viewer {
        Viewer::All => None,
        Viewer::Restaurant(id) => Some(id),
        Viewer::Customer(_) | Viewer::Rider(_) => return Err(QueryError::Forbidden),
    };
    // An inverted range holds no day: an empty list, not an error.
    if from > to {
        return Ok(Vec::new());
    }
    let rows = sqlx::query_as(
        "WITH done AS (
            SELECT (completed_at AT TIME ZONE 'UTC')::date AS day,
                   abs(extract(epoch FROM completed_at - predicted_dropoff_at))::double precision AS dropoff_err,
                   abs(extract(epoch FROM picked_up_at - predicted_pickup_at))::double precision AS pickup_err
            FROM rider_etas
            WHERE completed_at IS NOT NULL
              AND completed_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
              AND completed_at < (($2::date) + 1)::timestamp AT TIME ZONE 'UTC'
              AND ($3::uuid IS NULL OR restaurant_id = $3)
         )
         SELECT day,
                count(dropoff_err) AS deliveries,
                avg(dropoff_err) AS dropoff_mean_abs_error_s,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY dropoff_err) AS dropoff_p90_abs_error_s,
                count(pickup_err) AS pickups,
                avg(pickup_err) AS pickup_mean_abs_error_s,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY pickup_err) AS pickup_p90_abs_error_s
         FROM done GROUP BY day ORDER BY day",
    )
    .bind(from)
    .bind(to)
    .bind(restaurant)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
