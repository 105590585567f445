//! Warning tiers and hazards: the vocabulary every rule, template and channel shares.

use serde::{Deserialize, Serialize};

/// The four tiers of a Chinese warning, lowest first: IV blue (一般), III yellow (较重),
/// II orange (严重), I red (特别严重). Ordered, so `max` is "the most serious".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// IV, 蓝色, general.
    Blue,
    /// III, 黄色, fairly serious.
    Yellow,
    /// II, 橙色, serious.
    Orange,
    /// I, 红色, extremely serious.
    Red,
}

impl Tier {
    /// All tiers, lowest first.
    pub const ALL: [Tier; 4] = [Tier::Blue, Tier::Yellow, Tier::Orange, Tier::Red];

    /// The English colour word, as in files and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Blue => "blue",
            Tier::Yellow => "yellow",
            Tier::Orange => "orange",
            Tier::Red => "red",
        }
    }

    /// The Chinese colour word (蓝色 … 红色), as warnings say it. Templates that can take the
    /// English word map it themselves; this is for texts assembled for them.
    pub fn zh(self) -> &'static str {
        match self {
            Tier::Blue => "蓝色",
            Tier::Yellow => "黄色",
            Tier::Orange => "橙色",
            Tier::Red => "红色",
        }
    }

    /// Roman numeral of the national scheme (IV … I).
    pub fn roman(self) -> &'static str {
        match self {
            Tier::Blue => "IV",
            Tier::Yellow => "III",
            Tier::Orange => "II",
            Tier::Red => "I",
        }
    }

    /// Colour as RGB hex, for Google's per-level colour parameter and the office page.
    pub fn rgb(self) -> &'static str {
        match self {
            Tier::Blue => "#1E6FD9",
            Tier::Yellow => "#F5C400",
            Tier::Orange => "#FF7F00",
            Tier::Red => "#E60000",
        }
    }

    /// OASIS severity per DOMAIN.md §4.4 (the national profile writes the colour instead).
    pub fn severity(self) -> crate::cap::model::Severity {
        use crate::cap::model::Severity;
        match self {
            Tier::Blue => Severity::Minor,
            Tier::Yellow => Severity::Moderate,
            Tier::Orange => Severity::Severe,
            Tier::Red => Severity::Extreme,
        }
    }

    /// Read a colour word (English or Chinese) or a roman numeral.
    pub fn parse(s: &str) -> Option<Tier> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "blue" | "蓝" | "蓝色" | "iv" | "4" => Tier::Blue,
            "yellow" | "黄" | "黄色" | "iii" | "3" => Tier::Yellow,
            "orange" | "橙" | "橙色" | "ii" | "2" => Tier::Orange,
            "red" | "红" | "红色" | "i" | "1" => Tier::Red,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a warning is about. One lineage per (hazard, area).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hazard {
    /// 台风: wind circles of a forecast track.
    Typhoon,
    /// 暴雨: rolling rainfall at the villages' gauges.
    Rainstorm,
    /// 山洪: critical rainfall of a flash-flood zone (准备转移 / 立即转移).
    FlashFlood,
    /// 地质灾害: upstream risk areas × hazard sites, and site rainfall triggers.
    GeoHazard,
    /// 森林火险: FWI danger level at forest areas.
    Wildfire,
    /// An upstream CAP alert relayed to the villages it covers.
    Upstream,
    /// A feed went silent: for the duty officer only.
    FeedGap,
}

impl Hazard {
    /// The word used in keys, files and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Hazard::Typhoon => "typhoon",
            Hazard::Rainstorm => "rainstorm",
            Hazard::FlashFlood => "flash_flood",
            Hazard::GeoHazard => "geo_hazard",
            Hazard::Wildfire => "wildfire",
            Hazard::Upstream => "upstream",
            Hazard::FeedGap => "feed_gap",
        }
    }

    /// Read the word back.
    pub fn parse(s: &str) -> Option<Hazard> {
        Some(match s {
            "typhoon" => Hazard::Typhoon,
            "rainstorm" => Hazard::Rainstorm,
            "flash_flood" => Hazard::FlashFlood,
            "geo_hazard" => Hazard::GeoHazard,
            "wildfire" => Hazard::Wildfire,
            "upstream" => Hazard::Upstream,
            "feed_gap" => Hazard::FeedGap,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Hazard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
