//! What a county's registry holds: the administrative grid, the villages and their hazard
//! sites with thresholds, shelters, broadcast terminals, and the responsible persons of every
//! level (定格定人定责). Field lists follow the records offices keep (DOMAIN.md §2–§3).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cap::Point;

/// A level of the grid, known from the length of an administrative code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// County (县): 6-digit code.
    County,
    /// Town, township or sub-district (乡镇/街道): 9-digit code.
    Town,
    /// Administrative village or community (村/社区): 12-digit code.
    Village,
    /// Natural village or group (自然村/组): 15-digit code.
    Group,
}

impl Level {
    /// The code length of this level.
    pub fn code_len(self) -> usize {
        match self {
            Level::County => 6,
            Level::Town => 9,
            Level::Village => 12,
            Level::Group => 15,
        }
    }

    /// The level of an all-digit code, by its length.
    pub fn of_code(code: &str) -> Option<Level> {
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match code.len() {
            6 => Some(Level::County),
            9 => Some(Level::Town),
            12 => Some(Level::Village),
            15 => Some(Level::Group),
            _ => None,
        }
    }

    /// Read a level as written in English or Chinese exports.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim() {
            "county" | "县" | "县级" | "区" | "县区" => Level::County,
            "town" | "镇" | "乡" | "乡镇" | "乡镇级" | "街道" | "镇级" => Level::Town,
            "village" | "村" | "村级" | "社区" | "村社区" => Level::Village,
            "group" | "组" | "组级" | "自然村" => Level::Group,
            _ => return None,
        })
    }

    /// The English word used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::County => "county",
            Level::Town => "town",
            Level::Village => "village",
            Level::Group => "group",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The county and its towns (villages and groups have their own records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// 6- or 9-digit administrative code.
    pub code: String,
    /// Name, e.g. 东溟县, 牛岭镇.
    pub name: String,
    /// County or town.
    pub level: Level,
    /// The county's code, for a town.
    pub parent: Option<String>,
}

/// An administrative village or community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Village {
    /// 12-digit code (GB/T 10114 / statistical division code).
    pub code: String,
    /// Name, e.g. 湖岭村.
    pub name: String,
    /// 9-digit code of its town.
    pub town: String,
    /// Location (village committee), WGS 84.
    pub point: Point,
    /// Households.
    pub households: u32,
    /// Registered population.
    pub population: u32,
    /// People who must move when the village is warned (in danger zones, old and weak first).
    pub evacuate: u32,
    /// Outline, when known (from `villages.geojson`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "outline")]
    pub polygon: Option<geo::MultiPolygon<f64>>,
}

/// A natural village or group inside a village.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// 15-digit code: the village code and three more digits.
    pub code: String,
    /// The village's 12-digit code.
    pub village: String,
    /// Name, e.g. 湖岭一组.
    pub name: String,
    /// Households.
    pub households: u32,
    /// People.
    pub population: u32,
}

/// The four kinds of hazard site an office registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// Flash-flood risk zone (山洪危险区 / 沿河村落), with critical rainfall.
    FlashFlood,
    /// Geological-hazard site (地质灾害隐患点): landslide, collapse, debris flow.
    GeoHazard,
    /// Urban waterlogging point (易涝点).
    Waterlogging,
    /// Forest area (林区), for fire danger.
    Forest,
}

impl SiteKind {
    /// Read a kind as written in English or Chinese exports.
    pub fn parse(s: &str) -> Option<SiteKind> {
        Some(match s.trim() {
            "flash_flood" | "山洪危险区" | "山洪" | "沿河村落" => SiteKind::FlashFlood,
            "geo_hazard" | "地质灾害隐患点" | "地灾" | "隐患点" => SiteKind::GeoHazard,
            "waterlogging" | "易涝点" | "内涝点" => SiteKind::Waterlogging,
            "forest" | "林区" | "森林" => SiteKind::Forest,
            _ => return None,
        })
    }

    /// The word used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::FlashFlood => "flash_flood",
            SiteKind::GeoHazard => "geo_hazard",
            SiteKind::Waterlogging => "waterlogging",
            SiteKind::Forest => "forest",
        }
    }
}

/// Whether a site is still watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SiteStatus {
    /// Watched.
    Active,
    /// Closed (销号), e.g. after mitigation works.
    Closed {
        /// When.
        on: Option<jiff::civil::Date>,
        /// Why.
        reason: String,
    },
}

/// A hazard site and what it threatens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// The office's id for the site.
    pub id: String,
    /// Which of the four kinds.
    pub kind: SiteKind,
    /// Name.
    pub name: String,
    /// The villages it threatens (12-digit codes).
    pub villages: Vec<String>,
    /// Location, where given.
    pub point: Option<Point>,
    /// Outline, when known (from `sites.geojson`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "outline")]
    pub polygon: Option<geo::MultiPolygon<f64>>,
    /// The hazard in words: 滑坡, 崩塌, 泥石流, 溪沟洪水, 城市内涝 …
    pub hazard: String,
    /// Households threatened.
    pub households: u32,
    /// People threatened.
    pub people: u32,
    /// Property threatened, in 万元 (10,000 yuan).
    pub property_wan: Option<f64>,
    /// Whether old, sick or disabled people are among those threatened (they move first).
    pub vulnerable: bool,
    /// People to move when the site is warned.
    pub evacuate: u32,
    /// Watched or closed.
    pub status: SiteStatus,
}

/// Soil moisture before the rain, for thresholds that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Soil {
    /// Any state (one threshold for all).
    Any,
    /// 较干.
    Dry,
    /// 一般.
    Normal,
    /// 较湿.
    Wet,
}

impl Soil {
    /// Read a soil state as written in English or Chinese.
    pub fn parse(s: &str) -> Option<Soil> {
        Some(match s.trim() {
            "" | "any" | "不分" | "全部" => Soil::Any,
            "dry" | "较干" | "干" => Soil::Dry,
            "normal" | "一般" => Soil::Normal,
            "wet" | "较湿" | "湿" => Soil::Wet,
            _ => return None,
        })
    }

    /// The word used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Soil::Any => "any",
            Soil::Dry => "dry",
            Soil::Normal => "normal",
            Soil::Wet => "wet",
        }
    }
}

/// Critical rainfall for one site, duration and soil state: 准备转移 (prepare to move) and
/// 立即转移 (move now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The site's id.
    pub site: String,
    /// Accumulation window in minutes (30, 60, 180, 360, 720, 1440).
    pub minutes: u32,
    /// Soil state it applies to.
    pub soil: Soil,
    /// Rain (mm) over the window at which people prepare to move.
    pub prepare_mm: f64,
    /// Rain (mm) over the window at which people move now.
    pub move_mm: f64,
}

/// The accumulation windows thresholds may use, in minutes.
pub const DURATIONS: &[u32] = &[30, 60, 180, 360, 720, 1440];

/// Read a duration written as `1h`, `0.5h`, `3小时`, `30min` or a plain number of hours.
pub fn parse_duration(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, unit_minutes) = if let Some(n) = s.strip_suffix("min") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("分钟") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('h').or_else(|| s.strip_suffix("小时")) {
        (n, 60.0)
    } else {
        (s, 60.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    let minutes = v * unit_minutes;
    (minutes.fract() == 0.0 && minutes > 0.0 && minutes <= 10_080.0).then_some(minutes as u32)
}

/// Show a duration the way offices write it (`0.5h`, `3h`).
pub fn format_duration(minutes: u32) -> String {
    if minutes % 60 == 0 {
        format!("{}h", minutes / 60)
    } else if minutes % 30 == 0 {
        format!("{}h", minutes as f64 / 60.0)
    } else {
        format!("{minutes}min")
    }
}

/// A shelter (避灾安置场所).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shelter {
    /// The office's id.
    pub id: String,
    /// Name, e.g. 湖岭村文化礼堂.
    pub name: String,
    /// The village it stands in.
    pub village: String,
    /// Location.
    pub point: Point,
    /// People it can take.
    pub capacity: u32,
    /// Villages whose people go there.
    pub serves: Vec<String>,
}

/// How a broadcast terminal is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalKind {
    /// IP loudspeaker (IP音柱), driven over the network.
    Ip,
    /// FM receiver (调频).
    Fm,
    /// 4G/cellular loudspeaker.
    Cellular,
}

impl TerminalKind {
    /// Read a kind as written in English or Chinese.
    pub fn parse(s: &str) -> Option<TerminalKind> {
        Some(match s.trim() {
            "ip" | "IP" | "IP音柱" | "ip音柱" => TerminalKind::Ip,
            "fm" | "FM" | "调频" => TerminalKind::Fm,
            "cellular" | "4g" | "4G" | "4G音柱" => TerminalKind::Cellular,
            _ => return None,
        })
    }

    /// The word used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalKind::Ip => "ip",
            TerminalKind::Fm => "fm",
            TerminalKind::Cellular => "cellular",
        }
    }
}

/// A village loudspeaker (应急广播终端 / 大喇叭).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Terminal {
    /// Resource code (EBRID-like) or the office's id.
    pub id: String,
    /// The village it serves.
    pub village: String,
    /// Name.
    pub name: String,
    /// How it is reached.
    pub kind: TerminalKind,
    /// Location, where given.
    pub point: Option<Point>,
}

/// A responsible person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// The office's id for the person (stable across re-imports).
    pub id: String,
    /// Name.
    pub name: String,
    /// Mobile number (11 digits, 1[3-9]…).
    pub mobile: String,
    /// Grid level.
    pub level: Level,
    /// Code of the unit at that level (county, town, village or group).
    pub unit: String,
    /// Post, e.g. 村防汛责任人, 监测员.
    pub role: String,
    /// The deputy who acts when this person cannot (AB角).
    pub deputy: Option<String>,
    /// Whether on duty (值班在岗) now.
    pub on_duty: bool,
    /// When the office last confirmed the person's details.
    pub confirmed_on: Option<jiff::civil::Date>,
}

/// Who answers for what: a person's duty for a unit, village, group or site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Duty {
    /// The person's id.
    pub person: String,
    /// A code (6/9/12/15 digits) or a site id.
    pub target: String,
    /// The responsibility, e.g. 村防汛责任人, 防灾责任人, 监测人.
    pub role: String,
}

/// A complete registry as read from files: what an import brings.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// County and towns.
    pub units: Vec<Unit>,
    /// Villages.
    pub villages: Vec<Village>,
    /// Natural villages and groups.
    pub groups: Vec<Group>,
    /// Hazard sites.
    pub sites: Vec<Site>,
    /// Critical rainfall.
    pub thresholds: Vec<Threshold>,
    /// Shelters.
    pub shelters: Vec<Shelter>,
    /// Broadcast terminals.
    pub terminals: Vec<Terminal>,
    /// Responsible persons.
    pub persons: Vec<Person>,
    /// Who answers for what.
    pub duties: Vec<Duty>,
    /// Base-map layers (optional files): drawn under the places, nothing decided from them.
    pub layers: Vec<Layer>,
}

impl Dataset {
    /// The counties it registers (one for a county office, several for a city's or a
    /// province's).
    pub fn counties(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().filter(|u| u.level == Level::County)
    }
}

/// The county an administrative code lies in (a town's, a village's, a group's): its first
/// six digits; empty for a shorter code.
pub fn county_code(code: &str) -> &str {
    code.get(..6).unwrap_or_default()
}

/// The kinds of base-map layer a registry folder may carry (`towns.geojson`,
/// `rivers.geojson`, `roads.geojson`, `coast.geojson`), so an officer can orient on the office
/// map without any tile server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// Town (乡镇) boundaries.
    Towns,
    /// Rivers and streams.
    Rivers,
    /// Roads.
    Roads,
    /// Coastline.
    Coast,
}

impl LayerKind {
    /// Every kind, in drawing order (bottom first), with its file.
    pub const ALL: [(LayerKind, &'static str); 4] = [
        (LayerKind::Towns, "towns.geojson"),
        (LayerKind::Coast, "coast.geojson"),
        (LayerKind::Rivers, "rivers.geojson"),
        (LayerKind::Roads, "roads.geojson"),
    ];

    /// Its name (the CSS class the map draws it with).
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Towns => "towns",
            LayerKind::Rivers => "rivers",
            LayerKind::Roads => "roads",
            LayerKind::Coast => "coast",
        }
    }
}

/// One feature of a base-map layer: its name (a town's, a river's) and its lines (a
/// boundary's rings, a river's course), WGS 84 (lon, lat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Which layer.
    pub kind: LayerKind,
    /// Its place in the file (`towns|3`): features need no id of their own.
    pub key: String,
    /// Its name, when the file gives one (`properties.name`).
    pub name: Option<String>,
    /// Polylines of (lon, lat).
    pub lines: Vec<Vec<[f64; 2]>>,
}

/// Outlines are stored as GeoJSON geometry text.
mod outline {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<geo::MultiPolygon<f64>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(mp) => s.serialize_str(&super::super::geojson::to_geojson(mp)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<geo::MultiPolygon<f64>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::super::geojson::parse_geometry(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// Whether a number is a Chinese mobile number: 11 digits, `1[3-9]…`.
pub fn is_mobile(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

/// Normalise a phone number as people type them (spaces, dashes, +86).
pub fn normalise_mobile(s: &str) -> String {
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    match digits.strip_prefix("86") {
        Some(rest) if rest.len() == 11 => rest.to_string(),
        _ => digits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_from_code_lengths_and_words() {
        assert_eq!(Level::of_code("331098"), Some(Level::County));
        assert_eq!(Level::of_code("331098101201"), Some(Level::Village));
        assert_eq!(Level::of_code("33109810120"), None);
        assert_eq!(Level::parse("村级"), Some(Level::Village));
        assert_eq!(Level::parse("乡镇级"), Some(Level::Town));
    }

    #[test]
    fn durations_as_offices_write_them() {
        assert_eq!(parse_duration("1h"), Some(60));
        assert_eq!(parse_duration("0.5h"), Some(30));
        assert_eq!(parse_duration("3小时"), Some(180));
        assert_eq!(parse_duration("24"), Some(1440));
        assert_eq!(parse_duration("30min"), Some(30));
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(format_duration(30), "0.5h");
        assert_eq!(format_duration(360), "6h");
    }

    #[test]
    fn mobile_numbers() {
        assert!(is_mobile("13800138000"));
        assert!(!is_mobile("12800138000"));
        assert!(!is_mobile("1380013800"));
        assert_eq!(normalise_mobile("+86 138-0013-8000"), "13800138000");
    }
}
