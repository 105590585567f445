//! Typhoon tracks: analysis and forecast points with the 7-, 10- and 12-level wind radii per
//! quadrant, read from the three forms stormbell meets:
//!
//! * the JSON Chinese typhoon web services publish (e.g. the Zhejiang water department's
//!   service; DOMAIN.md §6): `points[]` with `radius7_quad{ne,se,sw,nw}` … in km, times in
//!   Beijing time, forecasts per agency;
//! * the CMA best-track text format (`66666` headers), for replays;
//! * IBTrACS CSV (NOAA NCEI), for replays of real storms, with CMA, JMA and JTWC columns.
//!
//! **Radii from other agencies.** China's 7/10/12-level circles are the radii of winds of at
//! least 13.9, 24.5 and 32.7 m/s (27, 48 and 64 kt). JMA publishes 30 kt and 50 kt radii, JTWC
//! 34, 50 and 64 kt. stormbell takes, in order of preference: the 7-level circle from JMA's
//! 30 kt radius (30 kt = 15.4 m/s lies in the level-7 band) or else JTWC's 34 kt radius (34 kt
//! = 17.5 m/s is already level 8: that circle is *smaller* than the 7-level one, and the track
//! says so in [`RadiusSource`]); the 10-level circle from the 50 kt radii (JTWC quadrants, else
//! JMA); the 12-level circle from JTWC's 64 kt radii. Nautical miles become km (× 1.852).
//! JMA gives a long and a short radius and the direction of the long one; the quadrants facing
//! that direction get the long radius, the others the short one.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::FeedError;

/// Tropical-cyclone grades of GB/T 19201-2006.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Grade {
    /// 热带低压 (10.8–17.1 m/s).
    TD,
    /// 热带风暴 (17.2–24.4 m/s).
    TS,
    /// 强热带风暴 (24.5–32.6 m/s).
    STS,
    /// 台风 (32.7–41.4 m/s).
    TY,
    /// 强台风 (41.5–50.9 m/s).
    STY,
    /// 超强台风 (≥ 51.0 m/s).
    SuperTY,
    /// Extratropical (变性).
    ET,
}

impl Grade {
    /// From the grade text Chinese services use ("台风(TY)", "强热带风暴", "STY" …).
    pub fn parse(s: &str) -> Option<Grade> {
        let s = s.trim();
        Some(
            if s.contains("超强台风") || s.contains("SuperTY") || s.contains("Super TY") {
                Grade::SuperTY
            } else if s.contains("强台风") || s.contains("STY") {
                Grade::STY
            } else if s.contains("强热带风暴") || s.contains("STS") {
                Grade::STS
            } else if s.contains("热带风暴") || s.contains("TS") {
                Grade::TS
            } else if s.contains("台风") || s.contains("TY") {
                Grade::TY
            } else if s.contains("热带低压") || s.contains("TD") {
                Grade::TD
            } else if s.contains("变性") || s.contains("ET") {
                Grade::ET
            } else {
                return None;
            },
        )
    }

    /// From the CMA best-track / IBTrACS `CMA_CAT` intensity category.
    pub fn from_cma_category(c: u8) -> Option<Grade> {
        Some(match c {
            1 => Grade::TD,
            2 => Grade::TS,
            3 => Grade::STS,
            4 => Grade::TY,
            5 => Grade::STY,
            6 => Grade::SuperTY,
            9 => Grade::ET,
            _ => return None,
        })
    }

    /// From the maximum sustained wind (m/s).
    pub fn from_wind(ms: f64) -> Option<Grade> {
        Some(match ms {
            x if x >= 51.0 => Grade::SuperTY,
            x if x >= 41.5 => Grade::STY,
            x if x >= 32.7 => Grade::TY,
            x if x >= 24.5 => Grade::STS,
            x if x >= 17.2 => Grade::TS,
            x if x >= 10.8 => Grade::TD,
            _ => return None,
        })
    }

    /// The Chinese name.
    pub fn name_zh(self) -> &'static str {
        match self {
            Grade::TD => "热带低压",
            Grade::TS => "热带风暴",
            Grade::STS => "强热带风暴",
            Grade::TY => "台风",
            Grade::STY => "强台风",
            Grade::SuperTY => "超强台风",
            Grade::ET => "温带气旋",
        }
    }
}

/// Lower bounds (m/s) of the China wind-force levels 1–17 (GB/T 28591-2012).
const LEVEL_FLOOR: [f64; 18] = [
    0.0, 0.3, 1.6, 3.4, 5.5, 8.0, 10.8, 13.9, 17.2, 20.8, 24.5, 28.5, 32.7, 37.0, 41.5, 46.2, 51.0,
    56.1,
];

/// The China wind-force level of a wind speed (m/s).
pub fn wind_level(ms: f64) -> u8 {
    LEVEL_FLOOR.iter().rposition(|&f| ms >= f).unwrap_or(0) as u8
}

/// The lowest wind speed (m/s) of a level.
pub fn level_floor(level: u8) -> f64 {
    LEVEL_FLOOR
        .get(level as usize)
        .copied()
        .unwrap_or(f64::INFINITY)
}

/// Knots to m/s.
pub const KT_TO_MS: f64 = 0.514_444;
/// Nautical miles to km.
pub const NM_TO_KM: f64 = 1.852;

/// Where a wind radius came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RadiusSource {
    /// China's own level radius (Chinese services, CMA).
    China,
    /// JMA 30 kt radius, used for the 7-level circle (a close match).
    Jma30kt,
    /// JTWC 34 kt radius, used for the 7-level circle: 34 kt is level 8, so this circle is
    /// smaller than the true 7-level one.
    Jtwc34kt,
    /// JTWC 50 kt radius, for the 10-level circle.
    Jtwc50kt,
    /// JMA 50 kt radius, for the 10-level circle.
    Jma50kt,
    /// JTWC 64 kt radius, for the 12-level circle.
    Jtwc64kt,
    /// Not reported for this time: carried from the analysis by the wind profile
    /// ([`super::wind_profile::carry`]), as for CMA's forecast points.
    Carried,
}

/// A wind radius per quadrant, in km.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Radii {
    /// North-east quadrant (0–90°).
    pub ne: f64,
    /// South-east (90–180°).
    pub se: f64,
    /// South-west (180–270°).
    pub sw: f64,
    /// North-west (270–360°).
    pub nw: f64,
    /// Provenance.
    pub source: RadiusSource,
}

impl Radii {
    /// From quadrants (NE, SE, SW, NW; km); `None` when no quadrant has the wind.
    pub fn of(q: [f64; 4], source: RadiusSource) -> Option<Radii> {
        q.iter().any(|r| *r > 0.0).then_some(Radii {
            ne: q[0],
            se: q[1],
            sw: q[2],
            nw: q[3],
            source,
        })
    }

    /// The largest quadrant radius.
    pub fn max(&self) -> f64 {
        self.ne.max(self.se).max(self.sw).max(self.nw)
    }

    /// The radius (km) in a bearing (degrees clockwise from north).
    pub fn at_bearing(&self, deg: f64) -> f64 {
        match deg.rem_euclid(360.0) {
            b if b < 90.0 => self.ne,
            b if b < 180.0 => self.se,
            b if b < 270.0 => self.sw,
            _ => self.nw,
        }
    }
}

/// One point of a track: an analysis (observed) or a forecast position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackPoint {
    /// Valid time.
    pub time: Timestamp,
    /// Latitude of the centre.
    pub lat: f64,
    /// Longitude of the centre.
    pub lon: f64,
    /// Grade.
    pub grade: Option<Grade>,
    /// Maximum sustained wind near the centre, m/s.
    pub wind_ms: Option<f64>,
    /// That wind as a China wind-force level.
    pub level: Option<u8>,
    /// Central pressure, hPa.
    pub pressure_hpa: Option<f64>,
    /// Direction of motion, as given (e.g. 西北, or degrees).
    pub move_dir: Option<String>,
    /// Speed of motion, km/h.
    pub move_speed_kmh: Option<f64>,
    /// The 7-level (≥ 13.9 m/s) wind circle.
    pub r7: Option<Radii>,
    /// The 10-level (≥ 24.5 m/s) wind circle.
    pub r10: Option<Radii>,
    /// The 12-level (≥ 32.7 m/s) wind circle.
    pub r12: Option<Radii>,
}

/// An agency's WMO location indicator from the name a service gives it (the Zhejiang
/// service's 中国, 日本, 美国, 中国香港, 中国台湾); an indicator stays as it is.
pub fn agency_code(name: &str) -> &str {
    match name.trim() {
        "中国" | "中央气象台" => "BABJ",
        "日本" => "RJTD",
        "美国" => "PGTW",
        "中国香港" => "VHHH",
        "中国台湾" => "RCTP",
        other => other,
    }
}

/// One agency's forecast, issued at an analysis time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The agency (中国, 日本, 美国, …).
    pub agency: String,
    /// The analysis time it was issued from.
    pub issued: Timestamp,
    /// Forecast positions, in time order.
    pub points: Vec<TrackPoint>,
}

/// A storm's track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Storm id (the Chinese number, e.g. 201909, or the IBTrACS SID).
    pub storm: String,
    /// Chinese name, e.g. 利奇马.
    pub name: String,
    /// English name, e.g. LEKIMA.
    pub name_en: String,
    /// Which form it was read from.
    pub format: String,
    /// The agency whose analysis the points are, as its WMO location indicator (`BABJ` CMA,
    /// `RJTD` JMA, `PGTW` JTWC); empty when the source mixes agencies (IBTrACS, best tracks).
    #[serde(default)]
    pub agency: String,
    /// 0 for an original bulletin, 1 for its first correction (`CCA`), 2 for `CCB` …: a
    /// correction replaces the bulletin it corrects, never the other way round.
    #[serde(default)]
    pub correction: u8,
    /// Analysis points, in time order.
    pub points: Vec<TrackPoint>,
    /// Forecasts.
    pub forecasts: Vec<Forecast>,
}

fn bad(line: Option<u32>, message: impl Into<String>) -> FeedError {
    FeedError::Format {
        line,
        message: message.into(),
    }
}

/// Read a track document in whichever of the three forms it is.
pub fn parse(body: &[u8]) -> Result<Vec<Track>, FeedError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| bad(None, format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        parse_cn_json(t)
    } else if t.starts_with("SID,") {
        parse_ibtracs(t)
    } else if t.starts_with("66666") {
        parse_cma_bst(t)
    } else {
        Err(bad(
            Some(1),
            "not a track: expected typhoon JSON, IBTrACS CSV or CMA best-track text",
        ))
    }
}

// ---- Chinese typhoon web-service JSON --------------------------------------------------------

/// Missing values arrive as null, "", "--", -999 …: missing is not zero, and a real zero is kept.
pub(crate) fn num(v: Option<&serde_json::Value>) -> Option<f64> {
    let v = v?;
    let x = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || s == "--" || s == "null" {
                return None;
            }
            s.parse::<f64>().ok()?
        }
        _ => return None,
    };
    (x.is_finite() && x > -900.0).then_some(x)
}

/// A text field (numbers as their text); blank and `"null"` are missing.
pub(crate) fn text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.trim().is_empty() && s != "null" => {
            Some(s.trim().to_string())
        }
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn quad(v: Option<&serde_json::Value>, total: Option<f64>) -> Option<Radii> {
    let q = v.filter(|q| q.is_object());
    let radii = match q {
        Some(q) => Radii {
            ne: num(q.get("ne")).unwrap_or(0.0),
            se: num(q.get("se")).unwrap_or(0.0),
            sw: num(q.get("sw")).unwrap_or(0.0),
            nw: num(q.get("nw")).unwrap_or(0.0),
            source: RadiusSource::China,
        },
        // Only the overall radius: the same in every quadrant.
        None => {
            let r = total?;
            Radii {
                ne: r,
                se: r,
                sw: r,
                nw: r,
                source: RadiusSource::China,
            }
        }
    };
    (radii.max() > 0.0).then_some(radii)
}

fn json_point(p: &serde_json::Value, where_: &str) -> Result<TrackPoint, FeedError> {
    let time = text(p.get("time"))
        .as_deref()
        .and_then(super::beijing_time)
        .ok_or_else(|| bad(None, format!("{where_}: missing or unreadable `time`")))?;
    let lat = num(p.get("lat").or_else(|| p.get("latitude")))
        .ok_or_else(|| bad(None, format!("{where_}: missing `lat`")))?;
    let lon = num(p
        .get("lng")
        .or_else(|| p.get("lon"))
        .or_else(|| p.get("longitude")))
    .ok_or_else(|| bad(None, format!("{where_}: missing `lng`")))?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(bad(
            None,
            format!("{where_}: position {lat},{lon} is not on Earth"),
        ));
    }
    let wind = num(p.get("speed"));
    let level = num(p.get("power"))
        .map(|l| l as u8)
        .or(wind.map(wind_level));
    Ok(TrackPoint {
        time,
        lat,
        lon,
        grade: text(p.get("strong"))
            .as_deref()
            .and_then(Grade::parse)
            .or(wind.and_then(Grade::from_wind)),
        wind_ms: wind,
        level,
        pressure_hpa: num(p.get("pressure")),
        move_dir: text(p.get("move_dir")),
        move_speed_kmh: num(p.get("move_speed")),
        r7: quad(p.get("radius7_quad"), num(p.get("radius7"))),
        r10: quad(p.get("radius10_quad"), num(p.get("radius10"))),
        r12: quad(p.get("radius12_quad"), num(p.get("radius12"))),
    })
}

fn parse_cn_json(body: &str) -> Result<Vec<Track>, FeedError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| bad(Some(e.line() as u32), format!("not JSON: {e}")))?;
    let storms: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Array(a) => a.iter().collect(),
        obj => vec![obj],
    };
    let mut tracks = Vec::new();
    for (i, s) in storms.iter().enumerate() {
        let storm = text(s.get("tfbh"))
            .or_else(|| text(s.get("id")))
            .unwrap_or_else(|| format!("#{}", i + 1));
        let points = s
            .get("points")
            .and_then(|p| p.as_array())
            .ok_or_else(|| bad(None, format!("storm {storm}: no `points` array")))?;
        let mut track = Track {
            storm: storm.clone(),
            name: text(s.get("name")).unwrap_or_default(),
            name_en: text(s.get("ename")).unwrap_or_default(),
            format: "cn-json".into(),
            // The Chinese services' analysis is CMA's.
            agency: "BABJ".into(),
            correction: 0,
            points: Vec::new(),
            forecasts: Vec::new(),
        };
        for (j, p) in points.iter().enumerate() {
            let point = json_point(p, &format!("storm {storm} point {}", j + 1))?;
            if let Some(fs) = p.get("forecast").and_then(|f| f.as_array()) {
                for f in fs {
                    let agency = text(f.get("sets")).unwrap_or_else(|| "?".into());
                    let mut fpoints = Vec::new();
                    for (k, fp) in f
                        .get("points")
                        .and_then(|x| x.as_array())
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        fpoints.push(json_point(
                            fp,
                            &format!("storm {storm} point {} forecast {agency} {}", j + 1, k + 1),
                        )?);
                    }
                    fpoints.sort_by_key(|p| p.time);
                    track.forecasts.push(Forecast {
                        agency,
                        issued: point.time,
                        points: fpoints,
                    });
                }
            }
            track.points.push(point);
        }
        track.points.sort_by_key(|p| p.time);
        tracks.push(track);
    }
    Ok(tracks)
}

// ---- CMA best track ---------------------------------------------------------------------------

fn parse_cma_bst(text: &str) -> Result<Vec<Track>, FeedError> {
    let mut tracks: Vec<Track> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u32 + 1;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f[0] == "66666" {
            // 66666 BBBB CCC DDDD EEEE F G NAME DATE
            let id = f.get(1).copied().unwrap_or("");
            let name = f.get(7).copied().unwrap_or("").to_string();
            tracks.push(Track {
                storm: id.to_string(),
                name: String::new(),
                name_en: name,
                format: "cma-bst".into(),
                agency: String::new(),
                correction: 0,
                points: Vec::new(),
                forecasts: Vec::new(),
            });
            continue;
        }
        let Some(track) = tracks.last_mut() else {
            return Err(bad(Some(n), "data line before any 66666 header"));
        };
        if f.len() < 6 {
            return Err(bad(
                Some(n),
                format!("expected YYYYMMDDHH I LAT LON PRES WND, found `{line}`"),
            ));
        }
        let t = f[0];
        if t.len() != 10 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(Some(n), format!("`{t}` is not YYYYMMDDHH")));
        }
        let civil = format!("{}-{}-{}T{}:00:00", &t[0..4], &t[4..6], &t[6..8], &t[8..10]);
        let time = civil
            .parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|c| jiff::tz::Offset::UTC.to_timestamp(c).ok())
            .ok_or_else(|| bad(Some(n), format!("`{t}` is not a real time")))?;
        let int = |s: &str, what: &str| -> Result<f64, FeedError> {
            s.parse::<f64>()
                .map_err(|_| bad(Some(n), format!("{what} `{s}` is not a number")))
        };
        let cat = f[1].parse::<u8>().ok();
        let lat = int(f[2], "latitude")? / 10.0;
        let lon = int(f[3], "longitude")? / 10.0;
        let pres = int(f[4], "pressure")?;
        let wind = int(f[5], "wind")?;
        track.points.push(TrackPoint {
            time,
            lat,
            lon,
            grade: cat
                .and_then(Grade::from_cma_category)
                .or(Grade::from_wind(wind)),
            wind_ms: (wind > 0.0).then_some(wind),
            level: (wind > 0.0).then_some(wind_level(wind)),
            pressure_hpa: (pres > 0.0).then_some(pres),
            move_dir: None,
            move_speed_kmh: None,
            r7: None,
            r10: None,
            r12: None,
        });
    }
    if tracks.is_empty() {
        return Err(bad(Some(1), "no 66666 header"));
    }
    Ok(tracks)
}

// ---- IBTrACS ----------------------------------------------------------------------------------

/// JMA gives the direction of the longest radius (1 NE, 2 E, 3 SE, 4 S, 5 SW, 6 W, 7 NW, 8 N,
/// 9 symmetric) with a long and a short radius: quadrants facing that direction get the long one.
fn jma_quadrants(
    dir: Option<f64>,
    long: Option<f64>,
    short: Option<f64>,
    source: RadiusSource,
) -> Option<Radii> {
    let long = long? * NM_TO_KM;
    let short = short.map(|s| s * NM_TO_KM).unwrap_or(long);
    if long <= 0.0 {
        return None;
    }
    // Quadrants (NE, SE, SW, NW) that face each direction code.
    let facing: [bool; 4] = match dir.map(|d| d as u8) {
        Some(1) => [true, false, false, false],
        Some(2) => [true, true, false, false],
        Some(3) => [false, true, false, false],
        Some(4) => [false, true, true, false],
        Some(5) => [false, false, true, false],
        Some(6) => [false, false, true, true],
        Some(7) => [false, false, false, true],
        Some(8) => [true, false, false, true],
        _ => [true, true, true, true],
    };
    let r = |i: usize| if facing[i] { long } else { short };
    Some(Radii {
        ne: r(0),
        se: r(1),
        sw: r(2),
        nw: r(3),
        source,
    })
}

fn parse_ibtracs(text: &str) -> Result<Vec<Track>, FeedError> {
    let text = crate::text::lf(text);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| bad(Some(1), format!("unreadable header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let need = |name: &str| {
        col(name).ok_or_else(|| bad(Some(1), format!("IBTrACS column {name} is missing")))
    };
    let (c_sid, c_name, c_time) = (need("SID")?, need("NAME")?, need("ISO_TIME")?);
    let (c_lat, c_lon) = (need("LAT")?, need("LON")?);
    let mut tracks: Vec<Track> = Vec::new();
    for rec in rdr.records() {
        let rec = super::csv_record(rec)?;
        let line = rec.position().map(|p| p.line() as u32).unwrap_or(0);
        let get = |c: Option<usize>| {
            c.and_then(|i| rec.get(i))
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let f = |name: &str| get(col(name)).and_then(|s| s.parse::<f64>().ok());
        let sid = rec.get(c_sid).unwrap_or("").trim();
        // The second line of an IBTrACS CSV holds units, not data.
        if sid.is_empty()
            || rec.get(c_time).is_some_and(|t| {
                t.trim().is_empty() || !t.trim().starts_with(|c: char| c.is_ascii_digit())
            })
        {
            continue;
        }
        let time = rec
            .get(c_time)
            .and_then(|t| {
                t.trim()
                    .replace(' ', "T")
                    .parse::<jiff::civil::DateTime>()
                    .ok()
            })
            .and_then(|c| jiff::tz::Offset::UTC.to_timestamp(c).ok())
            .ok_or_else(|| bad(Some(line), "unreadable ISO_TIME"))?;
        // Position, wind and pressure as CMA gave them where it did; otherwise the WMO ones.
        let lat = f("CMA_LAT").or(get(Some(c_lat)).and_then(|s| s.parse().ok()));
        let lon = f("CMA_LON").or(get(Some(c_lon)).and_then(|s| s.parse().ok()));
        let (Some(lat), Some(lon)) = (lat, lon) else {
            return Err(bad(Some(line), "no position"));
        };
        let wind_kt = f("CMA_WIND").or(f("WMO_WIND"));
        let wind_ms = wind_kt.map(|k| (k * KT_TO_MS * 10.0).round() / 10.0);
        let quads = |prefix: &str, source: RadiusSource| -> Option<Radii> {
            let q = |s: &str| f(&format!("{prefix}_{s}")).map(|v| v * NM_TO_KM);
            match (q("NE"), q("SE"), q("SW"), q("NW")) {
                (None, None, None, None) => None,
                (ne, se, sw, nw) => {
                    let r = Radii {
                        ne: ne.unwrap_or(0.0),
                        se: se.unwrap_or(0.0),
                        sw: sw.unwrap_or(0.0),
                        nw: nw.unwrap_or(0.0),
                        source,
                    };
                    (r.max() > 0.0).then_some(r)
                }
            }
        };
        let r7 = jma_quadrants(
            f("TOKYO_R30_DIR"),
            f("TOKYO_R30_LONG"),
            f("TOKYO_R30_SHORT"),
            RadiusSource::Jma30kt,
        )
        .or_else(|| quads("USA_R34", RadiusSource::Jtwc34kt));
        let r10 = quads("USA_R50", RadiusSource::Jtwc50kt).or_else(|| {
            jma_quadrants(
                f("TOKYO_R50_DIR"),
                f("TOKYO_R50_LONG"),
                f("TOKYO_R50_SHORT"),
                RadiusSource::Jma50kt,
            )
        });
        let r12 = quads("USA_R64", RadiusSource::Jtwc64kt);
        let point = TrackPoint {
            time,
            lat,
            lon,
            grade: f("CMA_CAT")
                .and_then(|c| Grade::from_cma_category(c as u8))
                .or(wind_ms.and_then(Grade::from_wind)),
            wind_ms,
            level: wind_ms.map(wind_level),
            pressure_hpa: f("CMA_PRES").or(f("WMO_PRES")),
            move_dir: f("STORM_DIR").map(|d| format!("{d}°")),
            move_speed_kmh: f("STORM_SPEED").map(|k| (k * NM_TO_KM * 10.0).round() / 10.0),
            r7,
            r10,
            r12,
        };
        match tracks.last_mut() {
            Some(t) if t.storm == sid => t.points.push(point),
            _ => tracks.push(Track {
                storm: sid.to_string(),
                name: String::new(),
                name_en: rec.get(c_name).unwrap_or("").trim().to_string(),
                format: "ibtracs".into(),
                agency: String::new(),
                correction: 0,
                points: vec![point],
                forecasts: Vec::new(),
            }),
        }
    }
    if tracks.is_empty() {
        return Err(bad(None, "no track rows"));
    }
    for t in &mut tracks {
        t.points.sort_by_key(|p| p.time);
    }
    Ok(tracks)
}

/// The typhoon-track feed kind (see [`super::FeedKind`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TyphoonFeed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wind_levels_follow_the_china_scale() {
        assert_eq!(wind_level(13.9), 7);
        assert_eq!(wind_level(17.1), 7);
        assert_eq!(wind_level(17.2), 8);
        assert_eq!(wind_level(32.7), 12);
        assert_eq!(wind_level(60.0), 17);
        assert_eq!(wind_level(0.1), 0);
        // 30 kt lies in level 7; 34 kt is already level 8; 64 kt is level 12.
        assert_eq!(wind_level(30.0 * KT_TO_MS), 7);
        assert_eq!(wind_level(34.0 * KT_TO_MS), 8);
        assert_eq!(wind_level(64.0 * KT_TO_MS), 12);
    }

    #[test]
    fn grades_from_text_category_and_wind() {
        assert_eq!(Grade::parse("台风(TY)"), Some(Grade::TY));
        assert_eq!(Grade::parse("强热带风暴"), Some(Grade::STS));
        assert_eq!(Grade::parse("超强台风(SuperTY)"), Some(Grade::SuperTY));
        assert_eq!(Grade::from_cma_category(4), Some(Grade::TY));
        assert_eq!(Grade::from_wind(45.0), Some(Grade::STY));
    }

    #[test]
    fn cma_best_track_sample_lines_from_the_format_page() {
        let text = "66666 0000   46 0002 0601 0 6 Chanchu                            20070808\n2006050806 1  87 1353 1000      15\n2006050812 1  86 1345 1000      15\n";
        let t = parse(text.as_bytes()).unwrap();
        assert_eq!(t[0].name_en, "Chanchu");
        assert_eq!(t[0].points.len(), 2);
        assert_eq!(t[0].points[0].lat, 8.7);
        assert_eq!(t[0].points[0].lon, 135.3);
        assert_eq!(t[0].points[0].time.to_string(), "2006-05-08T06:00:00Z");
        assert_eq!(t[0].points[1].grade, Some(Grade::TD));
        assert!(parse(b"2006050806 1 87 1353 1000 15\n").is_err());
    }

    #[test]
    fn jma_long_and_short_radii_become_quadrants() {
        let r = jma_quadrants(Some(2.0), Some(300.0), Some(250.0), RadiusSource::Jma30kt).unwrap();
        assert_eq!((r.ne, r.se), (300.0 * NM_TO_KM, 300.0 * NM_TO_KM));
        assert_eq!((r.sw, r.nw), (250.0 * NM_TO_KM, 250.0 * NM_TO_KM));
        let sym =
            jma_quadrants(Some(9.0), Some(100.0), Some(100.0), RadiusSource::Jma50kt).unwrap();
        assert!((sym.max() - 185.2).abs() < 1e-9, "{}", sym.max());
    }

    #[test]
    fn chinese_json_missing_is_not_zero() {
        let json = r#"{"tfbh":"201909","name":"利奇马","ename":"Lekima","points":[
          {"time":"2019-08-09 23:00:00","lng":121.4,"lat":28.3,"strong":"超强台风(SuperTY)","power":16,"speed":52,
           "move_dir":"西北","move_speed":15,"pressure":930,"radius7":"--","radius7_quad":null,
           "radius10":0,"radius12":-999,"forecast":null}]}"#;
        let t = parse(json.as_bytes()).unwrap();
        let p = &t[0].points[0];
        assert_eq!(p.time.to_string(), "2019-08-09T15:00:00Z", "Beijing time");
        assert_eq!(p.r7, None);
        assert_eq!(p.r10, None);
        assert_eq!(p.level, Some(16));
        assert_eq!(p.grade, Some(Grade::SuperTY));
    }
}
