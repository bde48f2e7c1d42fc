//! Rider ETAs: speed from reports, the ready_by floor, the active set and the
//! accuracy report.

use chrono::{Duration, NaiveDate};
use ordertrail_projections::ProjectorKind;
use ordertrail_projections::queries::{self, EtaBounds, Viewer};
use ordertrail_projections::rider_etas::EtaSettings;
use ordertrail_schemas::events::*;
use ordertrail_schemas::*;

use crate::support::*;

fn ms(d: Duration) -> i64 {
    d.num_milliseconds()
}

/// A new rider, order and the order's delivery.
fn new_trip() -> (RiderId, OrderId, DeliveryId) {
    let order = OrderId::new_random();
    (RiderId::new_random(), order, DeliveryId::for_order(order))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etas_follow_reports_and_keep_predicted_versus_actual() {
    let mut env = Env::start().await;
    let (rider, order, delivery) = new_trip();
    let restaurant = RestaurantId::new_random();
    let t0 = at(2025, 3, 3, 12, 0);
    let ready_by = t0 + Duration::minutes(20);
    let (pickup, dropoff) = (BERLIN_RESTAURANT, BERLIN_DROPOFF);
    let mut s = Script::default();
    s.delivery_requested(order, restaurant, Some(ready_by), t0);
    s.rider_assigned(delivery, rider, t0);
    // Three fixes 30 s apart moving north towards the restaurant.
    let fixes = [52.5000, 52.5020, 52.5040];
    for (i, lat) in fixes.iter().enumerate() {
        let when = t0 + Duration::seconds(30 * (i as i64 + 1));
        let location = GeoPoint {
            lat: *lat,
            lon: 13.4050,
        };
        s.rider_reported(delivery, rider, location, None, when);
    }
    env.produce(&s.envelopes).await;
    let running = env
        .spawn_caught_up(ProjectorKind::RiderEtas(EtaSettings::default()), "etas")
        .await;
    let kinds = [AggregateKind::Delivery];

    let eta = queries::etas::eta_by_order(env.pool(), Viewer::All, order.as_uuid())
        .await
        .unwrap_or_else(|e| panic!("eta: {e}"));
    let last = GeoPoint {
        lat: 52.5040,
        lon: 13.4050,
    };
    let speed = (GeoPoint {
        lat: 52.5000,
        lon: 13.4050,
    }
    .distance_m(&last))
        / 60.0;
    assert!(eta.speed_from_reports);
    assert!(
        (eta.speed_mps - speed).abs() < 1e-6,
        "{} vs {speed}",
        eta.speed_mps
    );
    let to_pickup = last.distance_m(&pickup);
    assert!((eta.distance_to_pickup_m.unwrap_or_default() - to_pickup).abs() < 1e-6);
    // The rider would arrive in about 5 minutes, but the food is ready later.
    assert_eq!(eta.pickup_eta, Some(ready_by));
    let leg = pickup.distance_m(&dropoff);
    let expected_dropoff = ready_by + Duration::milliseconds((leg / speed * 1000.0).round() as i64);
    assert_eq!(eta.dropoff_eta.map(|d| ms(d - expected_dropoff)), Some(0));
    assert_eq!(eta.predicted_pickup_at, Some(ready_by));

    // Visible in the active set, by rider, inside a box around Berlin only.
    let active = queries::etas::active_deliveries(env.pool(), Viewer::All, None)
        .await
        .unwrap_or_default();
    assert_eq!(active.len(), 1);
    let berlin = EtaBounds {
        min_lat: 52.0,
        min_lon: 13.0,
        max_lat: 53.0,
        max_lon: 14.0,
    };
    let paris = EtaBounds {
        min_lat: 48.0,
        min_lon: 2.0,
        max_lat: 49.0,
        max_lon: 3.0,
    };
    assert_eq!(
        queries::etas::active_deliveries(env.pool(), Viewer::All, Some(berlin))
            .await
            .unwrap_or_default()
            .len(),
        1
    );
    assert!(
        queries::etas::active_deliveries(env.pool(), Viewer::All, Some(paris))
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(
        queries::etas::etas_by_rider(env.pool(), Viewer::Rider(rider.as_uuid()), rider.as_uuid())
            .await
            .unwrap_or_default()
            .len(),
        1
    );
    assert!(
        queries::etas::etas_by_rider(
            env.pool(),
            Viewer::Rider(RiderId::new_random().as_uuid()),
            rider.as_uuid()
        )
        .await
        .unwrap_or_default()
        .is_empty()
    );

    // Pickup at ready_by + 1 min, completion 2 minutes later than predicted.
    let picked = ready_by + Duration::minutes(1);
    let predicted = picked + Duration::milliseconds((leg / speed * 1000.0).round() as i64);
    let completed = predicted + Duration::minutes(2);
    let more = vec![
        s.delivery(
            delivery,
            PickupConfirmed {
                rider_id: rider,
                picked_up_at: picked,
            },
            picked,
        ),
        s.delivery(
            delivery,
            DeliveryCompleted {
                rider_id: rider,
                completed_at: completed,
            },
            completed,
        ),
    ];
    env.produce(&more).await;
    env.caught_up("rider_etas", &kinds).await;
    running.stop().await;

    let done = queries::etas::eta_by_order(env.pool(), Viewer::All, order.as_uuid())
        .await
        .unwrap_or_else(|e| panic!("eta: {e}"));
    assert!(!done.active);
    assert_eq!(done.predicted_dropoff_at, Some(predicted));
    assert_eq!(done.completed_at, Some(completed));
    assert!(
        queries::etas::active_deliveries(env.pool(), Viewer::All, None)
            .await
            .unwrap_or_default()
            .is_empty()
    );

    let day = NaiveDate::from_ymd_opt(2025, 3, 3).unwrap_or_default();
    let accuracy = queries::etas::eta_accuracy(env.pool(), Viewer::All, day, day)
        .await
        .unwrap_or_default();
    assert_eq!(accuracy.len(), 1);
    assert_eq!(accuracy[0].deliveries, 1);
    assert_eq!(accuracy[0].dropoff_mean_abs_error_s, Some(120.0));
    assert_eq!(accuracy[0].dropoff_p90_abs_error_s, Some(120.0));
    assert_eq!(accuracy[0].pickup_mean_abs_error_s, Some(60.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_speed_until_enough_reports() {
    let mut env = Env::start().await;
    let (rider, order, delivery) = new_trip();
    let t0 = at(2025, 3, 3, 12, 0);
    let mut s = Script::default();
    s.delivery_requested(order, RestaurantId::new_random(), None, t0);
    s.rider_assigned(delivery, rider, t0);
    let here = GeoPoint {
        lat: 52.5000,
        lon: 13.4050,
    };
    s.rider_reported(delivery, rider, here, Some(5), t0 + Duration::seconds(10));
    env.produce(&s.envelopes).await;
    let settings = EtaSettings {
        default_speed_mps: 5.0,
        ..EtaSettings::default()
    };
    env.project(ProjectorKind::RiderEtas(settings), "etas")
        .await;
    let eta = queries::etas::eta_by_order(env.pool(), Viewer::All, order.as_uuid())
        .await
        .unwrap_or_else(|e| panic!("eta: {e}"));
    assert!(!eta.speed_from_reports);
    assert_eq!(eta.speed_mps, 5.0);
    let d = here.distance_m(&BERLIN_RESTAURANT);
    let expected =
        t0 + Duration::seconds(10) + Duration::milliseconds((d / 5.0 * 1000.0).round() as i64);
    assert_eq!(eta.pickup_eta, Some(expected));
}
