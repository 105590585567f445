//! Village and zone outlines from GeoJSON (`villages.geojson`, `sites.geojson`): a
//! FeatureCollection whose features carry the record's key (`code` or `id`) and a Polygon or
//! MultiPolygon in WGS 84 longitude/latitude.

use std::path::Path;

use geo::{Coord, LineString, MultiPolygon, Polygon, Validation};
use serde_json::Value;

use super::load::{Findings, in_china};
use crate::cap::{Level as Severity, Point};

/// One outline read from a file.
pub struct Shape {
    /// The record it belongs to (village code or site id).
    pub key: String,
    /// The outline.
    pub polygon: MultiPolygon<f64>,
    /// Line in the file, when the file is laid out one feature per line or so.
    pub line: Option<u32>,
    /// `feature N`, for messages.
    pub locator: String,
}

/// Read the outlines of a file; every broken feature is a finding, the rest are returned.
pub fn read(path: &Path, file: &str, key: &str, out: &mut Findings) -> Vec<Shape> {
    let text = match super::load::read_bounded(path, super::load::MAX_GEOJSON_BYTES)
        .and_then(|b| String::from_utf8(b).map_err(|e| format!("cannot read as UTF-8: {e}")))
    {
        Ok(t) => t,
        Err(e) => {
            out.push(Severity::Error, "registry.io", file, None, "", e);
            return Vec::new();
        }
    };
    let doc: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            out.push(
                Severity::Error,
                "registry.geojson",
                file,
                Some(e.line() as u32),
                "",
                format!("not JSON: {e}"),
            );
            return Vec::new();
        }
    };
    let Some(features) = doc.get("features").and_then(Value::as_array) else {
        out.push(
            Severity::Error,
            "registry.geojson",
            file,
            None,
            "",
            "not a GeoJSON FeatureCollection (no `features`)",
        );
        return Vec::new();
    };
    let mut shapes = Vec::new();
    for (i, f) in features.iter().enumerate() {
        let locator = format!("feature {}", i + 1);
        let k = f.get("properties").and_then(|p| p.get(key)).and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        });
        let Some(k) = k else {
            out.push(
                Severity::Error,
                "registry.geojson",
                file,
                None,
                &locator,
                format!("no `properties.{key}` naming its record"),
            );
            continue;
        };
        let locator = format!("feature {} ({key} {k})", i + 1);
        let Some(geometry) = f.get("geometry") else {
            out.push(
                Severity::Error,
                "registry.geojson",
                file,
                None,
                &locator,
                "no geometry",
            );
            continue;
        };
        match geometry_to_multipolygon(geometry) {
            Ok(mp) => {
                let mut ok = true;
                for p in mp.iter().flat_map(|poly| poly.exterior().coords()) {
                    if !in_china(&Point { lat: p.y, lon: p.x }) {
                        out.push(
                            Severity::Error,
                            "registry.coordinates",
                            file,
                            None,
                            &locator,
                            format!("position {},{} (lon,lat) is outside China", p.x, p.y),
                        );
                        ok = false;
                        break;
                    }
                }
                for e in mp.validation_errors() {
                    out.push(
                        Severity::Error,
                        "registry.polygon",
                        file,
                        None,
                        &locator,
                        format!("invalid outline: {e}"),
                    );
                    ok = false;
                }
                if ok {
                    shapes.push(Shape {
                        key: k,
                        polygon: mp,
                        line: None,
                        locator,
                    });
                }
            }
            Err(msg) => out.push(
                Severity::Error,
                "registry.geojson",
                file,
                None,
                &locator,
                msg,
            ),
        }
    }
    shapes
}

fn ring(v: &Value) -> Result<LineString<f64>, String> {
    let positions = v.as_array().ok_or("a ring is not an array of positions")?;
    let mut coords = Vec::with_capacity(positions.len());
    for p in positions {
        let a = p.as_array().ok_or("a position is not an array")?;
        match (
            a.first().and_then(Value::as_f64),
            a.get(1).and_then(Value::as_f64),
        ) {
            (Some(x), Some(y)) => coords.push(Coord { x, y }),
            _ => return Err("a position is not [longitude, latitude]".into()),
        }
    }
    if coords.len() < 4 {
        return Err(format!(
            "a ring needs at least 4 positions, this one has {}",
            coords.len()
        ));
    }
    if coords.first() != coords.last() {
        return Err("a ring is not closed: its first and last positions differ".into());
    }
    Ok(LineString::new(coords))
}

fn polygon(v: &Value) -> Result<Polygon<f64>, String> {
    let rings = v
        .as_array()
        .ok_or("polygon coordinates are not an array of rings")?;
    let mut it = rings.iter();
    let exterior = ring(it.next().ok_or("a polygon without rings")?)?;
    let holes = it.map(ring).collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, holes))
}

/// A GeoJSON Polygon or MultiPolygon geometry as a `MultiPolygon`.
pub fn geometry_to_multipolygon(g: &Value) -> Result<MultiPolygon<f64>, String> {
    let coords = g.get("coordinates").ok_or("geometry without coordinates")?;
    match g.get("type").and_then(Value::as_str) {
        Some("Polygon") => Ok(MultiPolygon::new(vec![polygon(coords)?])),
        Some("MultiPolygon") => Ok(MultiPolygon::new(
            coords
                .as_array()
                .ok_or("MultiPolygon coordinates are not an array")?
                .iter()
                .map(polygon)
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Some(other) => Err(format!(
            "geometry type {other}; an outline must be a Polygon or MultiPolygon"
        )),
        None => Err("geometry without a type".into()),
    }
}

/// The GeoJSON text of a `MultiPolygon` (for storage; reads back with [`parse_geometry`]).
pub fn to_geojson(mp: &MultiPolygon<f64>) -> String {
    let polys: Vec<Value> = mp
        .iter()
        .map(|p| {
            let rings: Vec<Value> = std::iter::once(p.exterior())
                .chain(p.interiors())
                .map(|r| Value::Array(r.coords().map(|c| serde_json::json!([c.x, c.y])).collect()))
                .collect();
            Value::Array(rings)
        })
        .collect();
    serde_json::json!({ "type": "MultiPolygon", "coordinates": polys }).to_string()
}

/// Read back what [`to_geojson`] wrote.
pub fn parse_geometry(text: &str) -> Result<MultiPolygon<f64>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    geometry_to_multipolygon(&v)
}
