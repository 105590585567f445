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

/// Most positions a layer file may hold in all (a county's rivers and roads, simplified, are
/// tens of thousands): beyond it the rest of the file is left out, said once.
pub const MAX_LAYER_POSITIONS: usize = 400_000;

/// Read a base-map layer: every LineString, MultiLineString, Polygon or MultiPolygon feature
/// as polylines (rings for areas), named by `properties.name` when given. A broken feature is a
/// finding (warning: a layer is only drawn), the rest are returned.
pub fn read_layer(
    path: &Path,
    file: &str,
    kind: super::model::LayerKind,
    out: &mut Findings,
) -> Vec<super::model::Layer> {
    let warn = |out: &mut Findings, locator: &str, msg: String| {
        out.push(
            Severity::Warning,
            "registry.layer",
            file,
            None,
            locator,
            msg,
        )
    };
    let text = match super::load::read_bounded(path, super::load::MAX_GEOJSON_BYTES)
        .and_then(|b| String::from_utf8(b).map_err(|e| format!("cannot read as UTF-8: {e}")))
    {
        Ok(t) => t,
        Err(e) => {
            warn(out, "", e);
            return Vec::new();
        }
    };
    let doc: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            warn(out, "", format!("not JSON: {e}"));
            return Vec::new();
        }
    };
    let Some(features) = doc.get("features").and_then(Value::as_array) else {
        warn(
            out,
            "",
            "not a GeoJSON FeatureCollection (no `features`)".into(),
        );
        return Vec::new();
    };
    let mut layers = Vec::new();
    let mut positions = 0usize;
    for (i, f) in features.iter().enumerate() {
        let locator = format!("feature {}", i + 1);
        let name = f
            .get("properties")
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(40).collect::<String>());
        let Some(g) = f.get("geometry") else {
            warn(out, &locator, "no geometry".into());
            continue;
        };
        match geometry_lines(g) {
            Ok(lines) => {
                if let Some(p) = lines.iter().flatten().find(|p| {
                    !super::load::in_china(&Point {
                        lon: p[0],
                        lat: p[1],
                    })
                }) {
                    warn(
                        out,
                        &locator,
                        format!("position {},{} (lon,lat) is outside China", p[0], p[1]),
                    );
                    continue;
                }
                positions += lines.iter().map(Vec::len).sum::<usize>();
                if positions > MAX_LAYER_POSITIONS {
                    warn(
                        out,
                        &locator,
                        format!(
                            "more than {MAX_LAYER_POSITIONS} positions in all: this feature and the rest are left out (simplify the file)"
                        ),
                    );
                    break;
                }
                layers.push(super::model::Layer {
                    kind,
                    key: format!("{}|{}", kind.as_str(), i + 1),
                    name,
                    lines,
                });
            }
            Err(msg) => warn(out, &locator, msg),
        }
    }
    layers
}

fn positions(v: &Value) -> Result<Vec<[f64; 2]>, String> {
    v.as_array()
        .ok_or("a line is not an array of positions")?
        .iter()
        .map(|p| {
            let a = p.as_array().ok_or("a position is not an array")?;
            match (
                a.first().and_then(Value::as_f64),
                a.get(1).and_then(Value::as_f64),
            ) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok([x, y]),
                _ => Err("a position is not [longitude, latitude]".to_string()),
            }
        })
        .collect()
}

/// A geometry's lines: a LineString's one, a MultiLineString's, a polygon's rings.
fn geometry_lines(g: &Value) -> Result<Vec<Vec<[f64; 2]>>, String> {
    let coords = g.get("coordinates").ok_or("geometry without coordinates")?;
    let list = |v: &Value| -> Result<Vec<Vec<[f64; 2]>>, String> {
        v.as_array()
            .ok_or("coordinates are not an array")?
            .iter()
            .map(positions)
            .collect()
    };
    let lines = match g.get("type").and_then(Value::as_str) {
        Some("LineString") => vec![positions(coords)?],
        Some("MultiLineString") | Some("Polygon") => list(coords)?,
        Some("MultiPolygon") => {
            let mut all = Vec::new();
            for poly in coords.as_array().ok_or("coordinates are not an array")? {
                all.extend(list(poly)?);
            }
            all
        }
        Some(other) => {
            return Err(format!(
                "geometry type {other}; a layer holds lines or areas"
            ));
        }
        None => return Err("geometry without a type".into()),
    };
    if lines.iter().any(|l| l.len() < 2) {
        return Err("a line needs at least 2 positions".into());
    }
    Ok(lines)
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
