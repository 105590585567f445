//! Geodesy, in one place: every distance and bearing stormbell computes is on one sphere
//! ([`EARTH_KM`]), so a village inside a wind circle by one measure is inside it by every
//! other. The spatial index, the registry's checks, the typhoon sweep and the fire rule all
//! use these.

/// Mean earth radius (km) used for every great-circle distance in stormbell.
pub const EARTH_KM: f64 = 6371.0;

/// A point as a unit vector on the sphere (x towards 0°E, z towards the north pole).
///
/// Straight-line (chord) distances between unit vectors order exactly as great-circle
/// distances do, and cost a square root instead of four trigonometric calls: what a
/// whole-country sweep (a typhoon against every village) needs.
pub fn unit_vector(lon: f64, lat: f64) -> [f64; 3] {
    let (p, l) = (lat.to_radians(), lon.to_radians());
    [p.cos() * l.cos(), p.cos() * l.sin(), p.sin()]
}

/// The chord (km, on the earth's scale) that spans `km` of great circle.
pub fn chord_of_km(km: f64) -> f64 {
    let half = (km / (2.0 * EARTH_KM)).min(std::f64::consts::FRAC_PI_2);
    2.0 * EARTH_KM * half.sin()
}

/// The great-circle km spanned by a chord (km, on the earth's scale).
pub fn km_of_chord(chord: f64) -> f64 {
    2.0 * EARTH_KM * (chord / (2.0 * EARTH_KM)).clamp(0.0, 1.0).asin()
}

/// Great-circle distance in km (haversine on a 6371 km sphere).
pub fn km_between(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_KM * a.sqrt().asin()
}

/// Initial bearing (degrees clockwise from north) from one point to another.
pub fn bearing(from_lat: f64, from_lon: f64, to_lat: f64, to_lon: f64) -> f64 {
    let (p1, p2) = (from_lat.to_radians(), to_lat.to_radians());
    let dl = (to_lon - from_lon).to_radians();
    let y = dl.sin() * p2.cos();
    let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}
