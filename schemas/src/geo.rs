//! Geographic points (WGS84 degrees).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A point on earth in WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GeoPoint {
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lon: f64,
}

/// Mean earth radius in metres used for great-circle distances.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

impl GeoPoint {
    /// Whether both coordinates are finite and within range.
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }

    /// Great-circle (haversine) distance in metres.
    pub fn distance_m(&self, other: &GeoPoint) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_a_known_distance() {
        // Berlin Hbf to Alexanderplatz is about 2.9 km.
        let hbf = GeoPoint {
            lat: 52.5251,
            lon: 13.3694,
        };
        let alex = GeoPoint {
            lat: 52.5219,
            lon: 13.4132,
        };
        let d = hbf.distance_m(&alex);
        assert!((2_900.0..3_100.0).contains(&d), "{d}");
        assert!(
            !GeoPoint {
                lat: 91.0,
                lon: 0.0
            }
            .is_valid()
        );
        assert!(
            !GeoPoint {
                lat: f64::NAN,
                lon: 0.0
            }
            .is_valid()
        );
    }
}
