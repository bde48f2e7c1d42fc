//! Rider ETAs (`rider_etas`, from the deliveries topic): for every delivery,
//! the rider's last position, the great-circle distance left to the pickup and
//! to the drop-off, and the estimated arrival at both.
//!
//! - **Speed**: the mean speed over the rider's last [`EtaSettings::window`]
//!   fixes on this delivery (distance between consecutive fixes / time between
//!   the first and the last), clamped to [`EtaSettings::min_speed_mps`,
//!   `max_speed_mps`]; [`EtaSettings::default_speed_mps`] while there are
//!   fewer than [`EtaSettings::min_reports`] fixes.
//! - **Heading to pickup** (assigned, position known): pickup ETA = the fix's
//!   time + distance to pickup / speed, but never before the restaurant's
//!   `ready_by`; drop-off ETA = pickup ETA + pickup→drop-off / speed.
//! - **Picked up**: drop-off ETA = the fix's time (the pickup time and place
//!   until a newer fix) + distance to drop-off / speed.
//! - Recomputed on every location report, assignment, unassignment, pickup
//!   and completion. Completed, failed and cancelled deliveries leave the
//!   active set.
//! - **Accuracy**: the pickup ETA computed at the rider's first fix after
//!   assignment and the drop-off ETA computed at pickup are kept as
//!   predictions and compared with the actual pickup and completion times.
//!
//! Everything is computed from the delivery's own events, so the model does
//! not depend on how partitions are spread over instances.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use ordertrail_schemas::{AggregateKind, DeliveryEvent, DeliveryStatus, GeoPoint};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::rows::{CopyRows, Store, Table, aggregate_uuid, apply_by_store, changed_rows, copy_row};
use crate::runtime::{ProjectionError, Projector, ReadModelTable, SourcedEvent, Written};

pub const NAME: &str = "rider_etas";

/// How speeds are estimated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EtaSettings {
    /// Speed assumed while the rider has reported too few fixes, m/s.
    pub default_speed_mps: f64,
    /// Fixes needed before the rider's own speed is used.
    pub min_reports: usize,
    /// Fixes kept per delivery for the speed estimate.
    pub window: usize,
    /// Lower bound of an estimated speed (a waiting rider still arrives), m/s.
    pub min_speed_mps: f64,
    /// Upper bound of an estimated speed (GPS jumps), m/s.
    pub max_speed_mps: f64,
}

impl Default for EtaSettings {
    fn default() -> Self {
        Self {
            default_speed_mps: 4.5,
            min_reports: 3,
            window: 6,
            min_speed_mps: 1.0,
            max_speed_mps: 25.0,
        }
    }
}

/// The rider-ETA projector.
#[derive(Debug, Clone, Default)]
pub struct RiderEtas {
    pub settings: EtaSettings,
}

impl RiderEtas {
    pub fn new(settings: EtaSettings) -> Self {
        Self { settings }
    }
}

const ETAS: Table = Table {
    name: "rider_etas",
    key: "delivery_id",
    columns: &[
        "delivery_id",
        "order_id",
        "restaurant_id",
        "status",
        "active",
        "rider_id",
        "pickup_lat",
        "pickup_lon",
        "dropoff_lat",
        "dropoff_lon",
        "ready_by",
        "requested_at",
        "assigned_at",
        "rider_lat",
        "rider_lon",
        "rider_reported_at",
        "recent_reports",
        "speed_mps",
        "speed_from_reports",
        "distance_to_pickup_m",
        "distance_to_dropoff_m",
        "pickup_eta",
        "dropoff_eta",
        "predicted_pickup_at",
        "predicted_dropoff_at",
        "picked_up_at",
        "completed_at",
        "ended_at",
        "updated_at",
    ],
};

/// One position fix.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Fix {
    lat: f64,
    lon: f64,
    at: DateTime<Utc>,
}

impl Fix {
    fn point(&self) -> GeoPoint {
        GeoPoint {
            lat: self.lat,
            lon: self.lon,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EtaRow {
    delivery_id: Uuid,
    order_id: Uuid,
    restaurant_id: Uuid,
    status: String,
    active: bool,
    rider_id: Option<Uuid>,
    pickup_lat: f64,
    pickup_lon: f64,
    dropoff_lat: f64,
    dropoff_lon: f64,
    ready_by: Option<DateTime<Utc>>,
    requested_at: DateTime<Utc>,
    assigned_at: Option<DateTime<Utc>>,
    rider_lat: Option<f64>,
    rider_lon: Option<f64>,
    rider_reported_at: Option<DateTime<Utc>>,
    recent_reports: Vec<Fix>,
    speed_mps: f64,
    speed_from_reports: bool,
    distance_to_pickup_m: Option<f64>,
    distance_to_dropoff_m: Option<f64>,
    pickup_eta: Option<DateTime<Utc>>,
    dropoff_eta: Option<DateTime<Utc>>,
    predicted_pickup_at: Option<DateTime<Utc>>,
    predicted_dropoff_at: Option<DateTime<Utc>>,
    picked_up_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl EtaRow {
    fn pickup(&self) -> GeoPoint {
        GeoPoint {
            lat: self.pickup_lat,
            lon: self.pickup_lon,
        }
    }

    fn dropoff(&self) -> GeoPoint {
        GeoPoint {
            lat: self.dropoff_lat,
            lon: self.dropoff_lon,
        }
    }

    fn position(&self) -> Option<Fix> {
        match (self.rider_lat, self.rider_lon, self.rider_reported_at) {
            (Some(lat), Some(lon), Some(at)) => Some(Fix { lat, lon, at }),
            _ => None,
        }
    }

    fn set_position(&mut self, fix: Option<Fix>) {
        self.rider_lat = fix.map(|f| f.lat);
        self.rider_lon = fix.map(|f| f.lon);
        self.rider_reported_at = fix.map(|f| f.at);
    }

    fn clear_estimates(&mut self) {
        self.distance_to_pickup_m = None;
        self.distance_to_dropoff_m = None;
        self.pickup_eta = None;
        self.dropoff_eta = None;
    }

    /// Recompute speed, distances and ETAs from the current state.
    fn recompute(&mut self, s: &EtaSettings) {
        let (speed, from_reports) = estimate_speed(&self.recent_reports, s);
        self.speed_mps = speed;
        self.speed_from_reports = from_reports;
        let leg = self.pickup().distance_m(&self.dropoff());
        match (self.status.as_str(), self.position()) {
            ("assigned", Some(fix)) => {
                let to_pickup = fix.point().distance_m(&self.pickup());
                let mut pickup_eta = fix.at + travel(to_pickup, speed);
                if let Some(ready_by) = self.ready_by {
                    pickup_eta = pickup_eta.max(ready_by);
                }
                self.distance_to_pickup_m = Some(to_pickup);
                self.distance_to_dropoff_m = Some(to_pickup + leg);
                self.pickup_eta = Some(pickup_eta);
                self.dropoff_eta = Some(pickup_eta + travel(leg, speed));
            }
            ("picked_up", Some(fix)) => {
                let to_dropoff = fix.point().distance_m(&self.dropoff());
                self.distance_to_pickup_m = Some(0.0);
                self.distance_to_dropoff_m = Some(to_dropoff);
                self.pickup_eta = None;
                self.dropoff_eta = Some(fix.at + travel(to_dropoff, speed));
            }
            ("completed" | "failed" | "cancelled", _) => {}
            _ => self.clear_estimates(),
        }
    }
}

/// Time to cover `metres` at `speed` m/s, to the millisecond.
fn travel(metres: f64, speed: f64) -> Duration {
    let ms = (metres / speed * 1_000.0).round();
    if (0.0..1.0e12).contains(&ms) {
        Duration::milliseconds(ms as i64)
    } else {
        Duration::zero()
    }
}

/// Mean speed over the fixes, or the default when there are too few.
fn estimate_speed(fixes: &[Fix], s: &EtaSettings) -> (f64, bool) {
    if fixes.len() < s.min_reports.max(2) {
        return (s.default_speed_mps, false);
    }
    let (Some(first), Some(last)) = (fixes.first(), fixes.last()) else {
        return (s.default_speed_mps, false);
    };
    let seconds = (last.at - first.at).num_milliseconds() as f64 / 1_000.0;
    if seconds <= 0.0 {
        return (s.default_speed_mps, false);
    }
    let metres: f64 = fixes
        .windows(2)
        .map(|w| w[0].point().distance_m(&w[1].point()))
        .sum();
    (
        (metres / seconds).clamp(s.min_speed_mps, s.max_speed_mps),
        true,
    )
}

impl Projector for RiderEtas {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sources(&self) -> &'static [AggregateKind] {
        &[AggregateKind::Delivery]
    }

    fn tables(&self) -> &'static [ReadModelTable] {
        const { &[ReadModelTable::derived("rider_etas")] }
    }

    apply_by_store!(|this, tx, batch, store| this.apply_batch(tx, batch, store));
}

impl RiderEtas {
    /// Apply a batch: rows loaded, changed in memory event by event, stored
    /// once.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        batch: &[SourcedEvent],
        mut store: Store<'_>,
    ) -> Result<(), ProjectionError> {
        let ids = batch
            .iter()
            .map(aggregate_uuid)
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows: BTreeMap<Uuid, EtaRow> = ETAS
            .load_by_key(tx, &ids, |r: &EtaRow| r.delivery_id, &store)
            .await?;
        let mut changed = BTreeSet::new();
        for (e, id) in batch.iter().zip(ids) {
            self.apply_one(e, id, &mut rows)?;
            changed.insert(id);
        }
        ETAS.upsert_in(tx, &changed_rows(&rows, &changed), &mut store)
            .await?;
        Ok(())
    }
}

copy_row! {
    EtaRow, delivery_id,
    fn copy_rest(&self, row: &mut CopyRows) {
        row.uuid(self.order_id)
            .uuid(self.restaurant_id)
            .text(&self.status)
            .bool(self.active)
            .opt(self.rider_id, CopyRows::uuid)
            .float8(self.pickup_lat)
            .float8(self.pickup_lon)
            .float8(self.dropoff_lat)
            .float8(self.dropoff_lon)
            .opt(self.ready_by, CopyRows::timestamptz)
            .timestamptz(self.requested_at)
            .opt(self.assigned_at, CopyRows::timestamptz)
            .opt(self.rider_lat, CopyRows::float8)
            .opt(self.rider_lon, CopyRows::float8)
            .opt(self.rider_reported_at, CopyRows::timestamptz)
            .jsonb(&self.recent_reports)
            .float8(self.speed_mps)
            .bool(self.speed_from_reports)
            .opt(self.distance_to_pickup_m, CopyRows::float8)
            .opt(self.distance_to_dropoff_m, CopyRows::float8);
        for at in [
            self.pickup_eta,
            self.dropoff_eta,
            self.predicted_pickup_at,
            self.predicted_dropoff_at,
            self.picked_up_at,
            self.completed_at,
            self.ended_at,
        ] {
            row.opt(at, CopyRows::timestamptz);
        }
        row.timestamptz(self.updated_at);
    }
}

impl RiderEtas {
    fn apply_one(
        &self,
        e: &SourcedEvent,
        id: Uuid,
        rows: &mut BTreeMap<Uuid, EtaRow>,
    ) -> Result<(), ProjectionError> {
        let s = &self.settings;
        let event: DeliveryEvent = e.decode()?;
        let now = e.envelope.recorded_at;
        if let DeliveryEvent::DeliveryRequested(r) = &event {
            if rows.contains_key(&id) {
                return Err(e.reject("delivery requested twice"));
            }
            rows.insert(
                id,
                EtaRow {
                    delivery_id: id,
                    order_id: r.order_id.as_uuid(),
                    restaurant_id: r.restaurant_id.as_uuid(),
                    status: DeliveryStatus::Requested.as_str().into(),
                    active: true,
                    rider_id: None,
                    pickup_lat: r.pickup.lat,
                    pickup_lon: r.pickup.lon,
                    dropoff_lat: r.dropoff.lat,
                    dropoff_lon: r.dropoff.lon,
                    ready_by: r.ready_by,
                    requested_at: r.requested_at,
                    assigned_at: None,
                    rider_lat: None,
                    rider_lon: None,
                    rider_reported_at: None,
                    recent_reports: Vec::new(),
                    speed_mps: s.default_speed_mps,
                    speed_from_reports: false,
                    distance_to_pickup_m: None,
                    distance_to_dropoff_m: None,
                    pickup_eta: None,
                    dropoff_eta: None,
                    predicted_pickup_at: None,
                    predicted_dropoff_at: None,
                    picked_up_at: None,
                    completed_at: None,
                    ended_at: None,
                    updated_at: now,
                },
            );
            return Ok(());
        }
        let Some(row) = rows.get_mut(&id) else {
            return Err(e.reject("event for a delivery that was never requested"));
        };
        row.updated_at = now;
        match event {
            DeliveryEvent::DeliveryRequested(_) => {}
            DeliveryEvent::RiderAssigned(a) => {
                row.status = DeliveryStatus::Assigned.as_str().into();
                row.rider_id = Some(a.rider_id.as_uuid());
                row.assigned_at = Some(a.assigned_at);
                row.recent_reports.clear();
                row.set_position(None);
                row.predicted_pickup_at = None;
            }
            DeliveryEvent::RiderUnassigned(_) => {
                row.status = DeliveryStatus::Requested.as_str().into();
                row.rider_id = None;
                row.assigned_at = None;
                row.recent_reports.clear();
                row.set_position(None);
                row.predicted_pickup_at = None;
            }
            DeliveryEvent::RiderLocationReported(r) => {
                if row.rider_id != Some(r.rider_id.as_uuid()) {
                    return Err(
                        e.reject("location reported by a rider not assigned to the delivery")
                    );
                }
                if !row.active {
                    return Err(e.reject("location reported for a finished delivery"));
                }
                let fix = Fix {
                    lat: r.location.lat,
                    lon: r.location.lon,
                    at: r.reported_at,
                };
                row.recent_reports.push(fix);
                let excess = row.recent_reports.len().saturating_sub(s.window.max(2));
                row.recent_reports.drain(..excess);
                row.set_position(Some(fix));
            }
            DeliveryEvent::PickupConfirmed(p) => {
                row.status = DeliveryStatus::PickedUp.as_str().into();
                row.picked_up_at = Some(p.picked_up_at);
                // At pickup the rider is at the restaurant.
                let newer = row.position().is_some_and(|f| f.at > p.picked_up_at);
                if !newer {
                    row.set_position(Some(Fix {
                        lat: row.pickup_lat,
                        lon: row.pickup_lon,
                        at: p.picked_up_at,
                    }));
                }
            }
            DeliveryEvent::DropoffCodeRejected(_) | DeliveryEvent::DeliveryFlagged(_) => {}
            DeliveryEvent::DeliveryCompleted(c) => {
                row.status = DeliveryStatus::Completed.as_str().into();
                row.active = false;
                row.completed_at = Some(c.completed_at);
                row.ended_at = Some(c.completed_at);
                row.set_position(Some(Fix {
                    lat: row.dropoff_lat,
                    lon: row.dropoff_lon,
                    at: c.completed_at,
                }));
                row.distance_to_pickup_m = Some(0.0);
                row.distance_to_dropoff_m = Some(0.0);
            }
            DeliveryEvent::DeliveryFailed(f) => {
                row.status = DeliveryStatus::Failed.as_str().into();
                row.active = false;
                row.ended_at = Some(f.failed_at);
            }
            DeliveryEvent::DeliveryCancelled(c) => {
                row.status = DeliveryStatus::Cancelled.as_str().into();
                row.active = false;
                row.ended_at = Some(c.cancelled_at);
            }
        }
        let was_picked_up_prediction = row.predicted_dropoff_at;
        row.recompute(s);
        // Predictions kept for the accuracy report.
        if row.status == DeliveryStatus::Assigned.as_str()
            && row.predicted_pickup_at.is_none()
            && row.pickup_eta.is_some()
        {
            row.predicted_pickup_at = row.pickup_eta;
        }
        if row.status == DeliveryStatus::PickedUp.as_str() && was_picked_up_prediction.is_none() {
            row.predicted_dropoff_at = row.dropoff_eta;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fix(lat: f64, lon: f64, secs: i64) -> Fix {
        Fix {
            lat,
            lon,
            at: DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
        }
    }

    #[test]
    fn speed_defaults_until_enough_fixes() {
        let s = EtaSettings::default();
        assert_eq!(estimate_speed(&[], &s), (4.5, false));
        assert_eq!(
            estimate_speed(&[fix(52.0, 13.0, 0), fix(52.001, 13.0, 10)], &s),
            (4.5, false)
        );
        // 0.001° latitude ≈ 111.2 m per 10 s, twice: ≈ 11.1 m/s.
        let (v, own) = estimate_speed(
            &[
                fix(52.0, 13.0, 0),
                fix(52.001, 13.0, 10),
                fix(52.002, 13.0, 20),
            ],
            &s,
        );
        assert!(own);
        assert!((v - 11.12).abs() < 0.05, "{v}");
    }

    #[test]
    fn speed_is_clamped() {
        let s = EtaSettings::default();
        let still = [fix(52.0, 13.0, 0), fix(52.0, 13.0, 10), fix(52.0, 13.0, 20)];
        assert_eq!(estimate_speed(&still, &s), (1.0, true));
    }
}
