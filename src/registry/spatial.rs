//! Where things are: an R-tree over villages (points) and zones (outlines or points), built once
//! when the registry is loaded, for the questions later stages ask — which villages does this
//! wind circle cover, which gauges are nearest, which zones contain this point.
//!
//! Coordinates are longitude/latitude degrees. Distances are great-circle kilometres; the tree
//! is searched with a degree box that is then refined by exact distance, so results are exact.

use geo::{BoundingRect, Contains, Coord, Intersects, MultiPolygon, Point as GeoPoint, Polygon};
use rstar::{AABB, PointDistance, RTree, RTreeObject};

use super::geo::{km_between, unit_vector};
use super::model::{Dataset, SiteKind};

/// A village in the tree.
#[derive(Debug, Clone)]
pub struct VillagePoint {
    /// Index in `Dataset::villages`.
    pub index: usize,
    lon: f64,
    lat: f64,
}

impl RTreeObject for VillagePoint {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        AABB::from_point([self.lon, self.lat])
    }
}

impl PointDistance for VillagePoint {
    fn distance_2(&self, p: &[f64; 2]) -> f64 {
        let (dx, dy) = (self.lon - p[0], self.lat - p[1]);
        dx * dx + dy * dy
    }
}

/// A zone (hazard site) in the tree: its outline's bounding box, or its point.
#[derive(Debug, Clone)]
pub struct ZoneBox {
    /// Index in `Dataset::sites`.
    pub index: usize,
    envelope: AABB<[f64; 2]>,
}

impl RTreeObject for ZoneBox {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

/// The spatial index of a registry.
#[derive(Debug)]
pub struct SpatialIndex {
    villages: RTree<VillagePoint>,
    zones: RTree<ZoneBox>,
    units: Vec<[f64; 3]>,
    cells: Vec<Cell>,
    by_cell: Vec<usize>,
}

/// A patch of villages close together (a half-degree grid square), with a ball on the unit
/// sphere that holds them all: lets a sweep dismiss hundreds of far villages at once.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Centre of the ball (unit vector).
    pub centre: [f64; 3],
    /// Radius of the ball (unit-sphere chord).
    pub radius: f64,
    /// The cell's villages: a range of [`SpatialIndex::villages_by_cell`].
    pub members: std::ops::Range<usize>,
}

/// Grid step of [`Cell`]s, degrees.
const CELL_DEG: f64 = 0.5;

/// Degrees of latitude per km, and of longitude per km at a latitude (generous at the edges).
fn degree_box(lon: f64, lat: f64, km: f64) -> AABB<[f64; 2]> {
    let dlat = km / 110.5;
    let coslat = lat.to_radians().cos().abs().max(0.01);
    let dlon = km / (111.0 * coslat);
    AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat])
}

impl SpatialIndex {
    /// Build the index (bulk-loaded: O(n log n)).
    pub fn build(d: &Dataset) -> SpatialIndex {
        let villages = RTree::bulk_load(
            d.villages
                .iter()
                .enumerate()
                .map(|(index, v)| VillagePoint {
                    index,
                    lon: v.point.lon,
                    lat: v.point.lat,
                })
                .collect(),
        );
        let zones = RTree::bulk_load(
            d.sites
                .iter()
                .enumerate()
                .filter_map(|(index, s)| {
                    let envelope = match (&s.polygon, &s.point) {
                        (Some(mp), _) => mp.bounding_rect().map(|r| {
                            AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y])
                        })?,
                        (None, Some(p)) => AABB::from_point([p.lon, p.lat]),
                        (None, None) => return None,
                    };
                    Some(ZoneBox { index, envelope })
                })
                .collect(),
        );
        let units: Vec<[f64; 3]> = d
            .villages
            .iter()
            .map(|v| unit_vector(v.point.lon, v.point.lat))
            .collect();
        let (cells, by_cell) = cells_of(d, &units);
        // Stored in cell order: a sweep over a cell reads its villages from one stretch.
        let units = by_cell.iter().map(|&i| units[i]).collect();
        SpatialIndex {
            villages,
            zones,
            units,
            cells,
            by_cell,
        }
    }

    /// The villages grouped in [`Cell`]s; each cell's `members` index both
    /// [`Self::villages_by_cell`] and [`Self::village_units`].
    pub fn village_cells(&self) -> &[Cell] {
        &self.cells
    }

    /// Village indices (into `Dataset::villages`) in cell order: each cell's `members`.
    pub fn villages_by_cell(&self) -> &[usize] {
        &self.by_cell
    }

    /// Every village as a unit vector (see [`unit_vector`]), in cell order: entry `k` is the
    /// village `villages_by_cell()[k]`.
    pub fn village_units(&self) -> &[[f64; 3]] {
        &self.units
    }

    /// Villages within `radius_km` of a point, as indices into `Dataset::villages`.
    pub fn villages_within(&self, d: &Dataset, lon: f64, lat: f64, radius_km: f64) -> Vec<usize> {
        self.villages
            .locate_in_envelope(&degree_box(lon, lat, radius_km))
            .filter(|v| km_between(v.lon, v.lat, lon, lat) <= radius_km)
            .map(|v| v.index)
            .filter(|&i| i < d.villages.len())
            .collect()
    }

    /// Villages within `radius_km` of a point, with their distance in km.
    pub fn villages_within_km(
        &self,
        d: &Dataset,
        lon: f64,
        lat: f64,
        radius_km: f64,
    ) -> Vec<(usize, f64)> {
        self.villages
            .locate_in_envelope(&degree_box(lon, lat, radius_km))
            .map(|v| (v.index, km_between(v.lon, v.lat, lon, lat)))
            .filter(|(i, km)| *km <= radius_km && *i < d.villages.len())
            .collect()
    }

    /// Villages whose point lies inside a polygon (lon/lat).
    pub fn villages_in(&self, poly: &Polygon<f64>) -> Vec<usize> {
        let Some(r) = poly.bounding_rect() else {
            return Vec::new();
        };
        let bbox = AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]);
        self.villages
            .locate_in_envelope(&bbox)
            .filter(|v| poly.intersects(&GeoPoint::new(v.lon, v.lat)))
            .map(|v| v.index)
            .collect()
    }

    /// The `n` villages nearest to a point, nearest first.
    pub fn nearest_villages(&self, lon: f64, lat: f64, n: usize) -> Vec<usize> {
        // Degree distance orders well enough within a county; refine by true distance.
        let mut near: Vec<(f64, usize)> = self
            .villages
            .nearest_neighbor_iter(&[lon, lat])
            .take(n * 2 + 4)
            .map(|v| (km_between(v.lon, v.lat, lon, lat), v.index))
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        near.into_iter().take(n).map(|(_, i)| i).collect()
    }

    /// Zones (sites) whose outline contains the point, or whose point is within `tolerance_km`.
    pub fn zones_at(&self, d: &Dataset, lon: f64, lat: f64, tolerance_km: f64) -> Vec<usize> {
        let p = GeoPoint::new(lon, lat);
        self.zones
            .locate_in_envelope_intersecting(&degree_box(lon, lat, tolerance_km))
            .filter(|z| {
                let s = &d.sites[z.index];
                match (&s.polygon, &s.point) {
                    (Some(mp), _) => mp.contains(&p) || within_km(mp, lon, lat, tolerance_km),
                    (None, Some(sp)) => km_between(sp.lon, sp.lat, lon, lat) <= tolerance_km,
                    (None, None) => false,
                }
            })
            .map(|z| z.index)
            .collect()
    }

    /// Zones of one kind whose box meets a polygon (for e.g. forest areas under a fire warning).
    pub fn zones_meeting(
        &self,
        d: &Dataset,
        poly: &Polygon<f64>,
        kind: Option<SiteKind>,
    ) -> Vec<usize> {
        let Some(r) = poly.bounding_rect() else {
            return Vec::new();
        };
        let bbox = AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]);
        self.zones
            .locate_in_envelope_intersecting(&bbox)
            .filter(|z| kind.is_none_or(|k| d.sites[z.index].kind == k))
            .filter(|z| {
                let s = &d.sites[z.index];
                match (&s.polygon, &s.point) {
                    (Some(mp), _) => mp.intersects(poly),
                    (None, Some(p)) => poly.intersects(&GeoPoint::new(p.lon, p.lat)),
                    (None, None) => false,
                }
            })
            .map(|z| z.index)
            .collect()
    }

    /// Number of villages indexed.
    pub fn village_count(&self) -> usize {
        self.villages.size()
    }

    /// Number of zones indexed.
    pub fn zone_count(&self) -> usize {
        self.zones.size()
    }
}

/// Group villages by grid square and bound each group with a ball.
fn cells_of(d: &Dataset, units: &[[f64; 3]]) -> (Vec<Cell>, Vec<usize>) {
    let key = |i: usize| {
        let p = &d.villages[i].point;
        (
            (p.lon / CELL_DEG).floor() as i64,
            (p.lat / CELL_DEG).floor() as i64,
        )
    };
    let mut by_cell: Vec<usize> = (0..d.villages.len()).collect();
    by_cell.sort_by_key(|&i| (key(i), i));
    let mut cells = Vec::new();
    let mut start = 0;
    while start < by_cell.len() {
        let k = key(by_cell[start]);
        let end = by_cell[start..]
            .iter()
            .position(|&i| key(i) != k)
            .map_or(by_cell.len(), |n| start + n);
        let members = &by_cell[start..end];
        let mut c = [0.0; 3];
        for &i in members {
            for (c, x) in c.iter_mut().zip(units[i]) {
                *c += x;
            }
        }
        let norm = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt();
        let centre = if norm > 0.0 {
            c.map(|x| x / norm)
        } else {
            units[members[0]]
        };
        let radius = members
            .iter()
            .map(|&i| {
                let u = units[i];
                ((u[0] - centre[0]).powi(2)
                    + (u[1] - centre[1]).powi(2)
                    + (u[2] - centre[2]).powi(2))
                .sqrt()
            })
            .fold(0.0, f64::max);
        cells.push(Cell {
            centre,
            // Rounding must never make a member fall outside its ball.
            radius: radius * (1.0 + 1e-9) + 1e-12,
            members: start..end,
        });
        start = end;
    }
    (cells, by_cell)
}

fn within_km(mp: &MultiPolygon<f64>, lon: f64, lat: f64, km: f64) -> bool {
    if km <= 0.0 {
        return false;
    }
    mp.iter()
        .flat_map(|p| p.exterior().coords())
        .any(|c: &Coord<f64>| km_between(c.x, c.y, lon, lat) <= km)
}
