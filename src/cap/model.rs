//! The CAP 1.2 data model.
//!
//! Every alert stormbell reads (OASIS CAP 1.0, 1.1, 1.2 or the Chinese national dialect) is
//! held in these types, and every alert it writes is built from them. The model is CAP 1.2:
//! older versions are upgraded on reading (see [`crate::cap::read`]), the Chinese dialect is
//! mapped onto it (see [`crate::cap::cn`]).
//!
//! Values that the standard constrains are typed (enumerations, date-times, coordinates);
//! free text stays text, exactly as received (XML `xs:string` keeps its whitespace).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One CAP alert message: the `<alert>` element and everything in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique id of this message, assigned by the sender (no spaces, commas, `<` or `&`).
    pub identifier: String,
    /// Globally unique id of the originator (an address, a URI or a national sender code).
    pub sender: String,
    /// When the message was sent, with its UTC offset.
    pub sent: CapDateTime,
    /// Actual, Exercise, System, Test or Draft.
    pub status: Status,
    /// Alert, Update, Cancel, Ack or Error.
    pub msg_type: MsgType,
    /// The particular source of the message (an operator or a device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Public, Restricted or Private.
    pub scope: Scope,
    /// Who may see a Restricted message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<String>,
    /// Recipients of a Private message, space-delimited, quoted where they contain spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<String>,
    /// Special-handling codes, e.g. a profile name such as `IPAWSv1.0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    /// Free-text note, e.g. the reason for a Cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Earlier messages this one updates, cancels, acknowledges or rejects.
    /// `None` when the element is absent; `Some(vec![])` when it is present but empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<Reference>>,
    /// Related incidents, space-delimited, as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incidents: Option<String>,
    /// One block per language or per event; may be empty (e.g. a Cancel or an Ack).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub infos: Vec<Info>,
    /// XML-DSig `<Signature>` elements, kept verbatim so a later step can verify them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
}

/// One `<info>` block: what happens, how bad, what to do, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// RFC 3066 language tag; absent means `en-US` by the standard's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// At least one category (Met, Geo, Fire …).
    pub categories: Vec<Category>,
    /// Short text naming the event, e.g. "台风" or "Flash Flood Warning".
    pub event: String,
    /// Recommended actions (Evacuate, Prepare …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_types: Vec<ResponseType>,
    /// How soon to act.
    pub urgency: Urgency,
    /// How bad it is.
    pub severity: Severity,
    /// How sure the sender is.
    pub certainty: Certainty,
    /// Intended audience, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// System-specific event codes (e.g. the national `11B03` code, or a SAME code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_codes: Vec<ValuePair>,
    /// When the information takes effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<CapDateTime>,
    /// Expected onset of the hazard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<CapDateTime>,
    /// When the information stops being valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<CapDateTime>,
    /// Human-readable name of the issuing agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// Brief human-readable headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// What happened / is expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What people should do (the defence guidance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    /// A URI with more information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<String>,
    /// Contact for follow-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// System-specific parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ValuePair>,
    /// Attached or referenced files (images, audio).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// Where the information applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub areas: Vec<Area>,
}

/// A `<valueName>`/`<value>` pair, used by eventCode, parameter and geocode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValuePair {
    /// The domain of the value (e.g. `SAME`, `CN:eventType`).
    pub value_name: String,
    /// The value itself (may be empty in real messages).
    pub value: String,
}

impl ValuePair {
    /// A pair from two strings.
    pub fn new(value_name: impl Into<String>, value: impl Into<String>) -> Self {
        ValuePair {
            value_name: value_name.into(),
            value: value.into(),
        }
    }
}

/// A `<resource>`: a file that belongs to the alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// What the file is.
    pub resource_desc: String,
    /// MIME type (required in CAP 1.2).
    pub mime_type: String,
    /// Approximate size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Where to get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The file itself, base64-encoded, for one-way links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deref_uri: Option<String>,
    /// SHA-1 digest of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// An `<area>`: a named region, as polygons, circles and/or geocodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Area {
    /// Text describing the area.
    pub area_desc: String,
    /// Closed rings of WGS 84 points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polygons: Vec<Polygon>,
    /// Circles (centre and radius in km).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub circles: Vec<Circle>,
    /// Geographic codes (e.g. 12-digit Chinese village codes, SAME/FIPS codes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub geocodes: Vec<ValuePair>,
    /// Lower altitude in feet above mean sea level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    /// Upper altitude in feet (only with an altitude).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<f64>,
}

/// A WGS 84 point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Latitude in degrees, −90…90.
    pub lat: f64,
    /// Longitude in degrees, −180…180.
    pub lon: f64,
}

/// A polygon as CAP writes it: a ring of points, first equal to last.
///
/// An empty polygon is kept as such: real NWS messages carry `<polygon></polygon>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Polygon {
    /// The ring, in document order.
    pub points: Vec<Point>,
}

/// A circle: centre and radius in kilometres (CAP's unit; the Chinese dialect uses metres).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Circle {
    /// Centre of the circle.
    pub center: Point,
    /// Radius in km.
    pub radius_km: f64,
}

/// One entry of `<references>`: the `sender,identifier,sent` of an earlier message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reference {
    /// Sender of the referenced message.
    pub sender: String,
    /// Identifier of the referenced message.
    pub identifier: String,
    /// `sent` of the referenced message.
    pub sent: CapDateTime,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.sender, self.identifier, self.sent)
    }
}

/// A CAP date-time: a civil time plus its explicit UTC offset, at whole seconds.
///
/// CAP 1.2 requires the form `YYYY-MM-DDThh:mm:ss±hh:mm` (no `Z`, no fractions); the
/// offset is kept so that a warning issued at 03:00+08:00 is shown as 03:00, not 19:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapDateTime {
    civil: jiff::civil::DateTime,
    offset_seconds: i32,
}

impl CapDateTime {
    /// A date-time from its parts; the offset must be a whole number of minutes within ±14 h.
    pub fn new(civil: jiff::civil::DateTime, offset: jiff::tz::Offset) -> Result<Self, String> {
        let secs = offset.seconds();
        if secs % 60 != 0 || secs.abs() > 14 * 3600 {
            return Err(format!(
                "UTC offset {offset} is not whole minutes within ±14:00"
            ));
        }
        Ok(CapDateTime {
            civil: civil.with().subsec_nanosecond(0).build().unwrap_or(civil),
            offset_seconds: secs,
        })
    }

    /// The same instant shown at a given offset (e.g. +08:00 for Asia/Shanghai).
    pub fn from_timestamp(ts: jiff::Timestamp, offset: jiff::tz::Offset) -> Self {
        let civil = offset.to_datetime(ts);
        CapDateTime {
            civil: civil.with().subsec_nanosecond(0).build().unwrap_or(civil),
            offset_seconds: offset.seconds(),
        }
    }

    /// The instant in time.
    pub fn timestamp(&self) -> jiff::Timestamp {
        let offset = self.offset();
        offset
            .to_timestamp(self.civil)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// The local civil time as written.
    pub fn civil(&self) -> jiff::civil::DateTime {
        self.civil
    }

    /// The UTC offset as written.
    pub fn offset(&self) -> jiff::tz::Offset {
        jiff::tz::Offset::from_seconds(self.offset_seconds).unwrap_or(jiff::tz::Offset::UTC)
    }

    /// Parse the strict CAP 1.2 lexical form `YYYY-MM-DDThh:mm:ss±hh:mm`.
    pub fn parse_cap12(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        let d = |i: usize| -> Option<i32> {
            let (x, y) = (b[i], b[i + 1]);
            (x.is_ascii_digit() && y.is_ascii_digit())
                .then(|| ((x - b'0') * 10 + (y - b'0')) as i32)
        };
        let bad = || format!("`{s}` is not a CAP date-time of the form YYYY-MM-DDThh:mm:ss±hh:mm");
        if b.len() != 25
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || !(b[19] == b'+' || b[19] == b'-')
            || b[22] != b':'
        {
            return Err(bad());
        }
        let (Some(c), Some(y), Some(mo), Some(da), Some(h), Some(mi), Some(se), Some(oh), Some(om)) =
            (d(0), d(2), d(5), d(8), d(11), d(14), d(17), d(20), d(23))
        else {
            return Err(bad());
        };
        if h == 24 {
            // 24:00:00 is legal xs:dateTime; let the general reader normalise it.
            return Self::parse_lenient(s).map(|(t, _)| t);
        }
        let date = jiff::civil::Date::new((c * 100 + y) as i16, mo as i8, da as i8)
            .map_err(|_| format!("`{s}` is not a real calendar date"))?;
        let time = jiff::civil::Time::new(h as i8, mi as i8, se as i8, 0)
            .map_err(|_| format!("`{s}` has an impossible time of day"))?;
        if oh > 14 || om > 59 || (oh == 14 && om > 0) {
            return Err(format!("`{s}` has an impossible UTC offset"));
        }
        let secs = if b[19] == b'-' { -1 } else { 1 } * (oh * 3600 + om * 60);
        let offset = jiff::tz::Offset::from_seconds(secs).map_err(|_| bad())?;
        CapDateTime::new(date.to_datetime(time), offset)
    }

    /// Parse any `xs:dateTime` (fractions, `Z`, or no zone at all), reporting what the strict
    /// CAP form would have needed. Returns the value (fractions dropped, `Z` read as +00:00)
    /// and a list of deviations from the CAP 1.2 form.
    pub fn parse_lenient(s: &str) -> Result<(Self, Vec<&'static str>), String> {
        let s = s.trim();
        let mut notes = Vec::new();
        let bad = || format!("`{s}` is not a valid date-time (expected YYYY-MM-DDThh:mm:ss±hh:mm)");
        let (main, zone) = split_zone(s);
        let (main, had_fraction) = match main.split_once('.') {
            Some((m, frac)) if !frac.is_empty() && frac.bytes().all(|c| c.is_ascii_digit()) => {
                (m, true)
            }
            Some(_) => return Err(bad()),
            None => (main, false),
        };
        if had_fraction {
            notes.push("fractional seconds (dropped)");
        }
        let b = main.as_bytes();
        if b.len() != 19
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(bad());
        }
        // Digits are read from bytes: slicing the text could split a multi-byte character.
        let num = |r: std::ops::Range<usize>| -> Result<i32, String> {
            let part = &b[r];
            if part.iter().all(u8::is_ascii_digit) {
                Ok(part
                    .iter()
                    .fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0')))
            } else {
                Err(bad())
            }
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let date = jiff::civil::Date::new(year as i16, month as i8, day as i8)
            .map_err(|_| format!("`{s}` is not a real calendar date"))?;
        let (civil, next_day) = if hour == 24 && minute == 0 && second == 0 {
            (date.to_datetime(jiff::civil::Time::midnight()), true)
        } else {
            let t = jiff::civil::Time::new(hour as i8, minute as i8, second as i8, 0)
                .map_err(|_| format!("`{s}` has an impossible time of day"))?;
            (date.to_datetime(t), false)
        };
        let civil = if next_day {
            civil
                .checked_add(jiff::Span::new().days(1))
                .map_err(|_| bad())?
        } else {
            civil
        };
        let offset = match zone {
            Zone::None => {
                notes.push("no UTC offset (CAP requires one; read as +00:00)");
                jiff::tz::Offset::UTC
            }
            Zone::Z => {
                notes.push("`Z` instead of an explicit offset (read as +00:00)");
                jiff::tz::Offset::UTC
            }
            Zone::Offset(sign, hh, mm) => {
                if hh > 14 || mm > 59 || (hh == 14 && mm > 0) {
                    return Err(format!("`{s}` has an impossible UTC offset"));
                }
                let secs = sign * (hh * 3600 + mm * 60);
                jiff::tz::Offset::from_seconds(secs).map_err(|_| bad())?
            }
            Zone::Bad => return Err(bad()),
        };
        Ok((CapDateTime::new(civil, offset)?, notes))
    }
}

enum Zone {
    None,
    Z,
    Offset(i32, i32, i32),
    Bad,
}

fn split_zone(s: &str) -> (&str, Zone) {
    if let Some(main) = s.strip_suffix('Z') {
        return (main, Zone::Z);
    }
    // Work on bytes: the text comes from outside and may hold multi-byte characters anywhere;
    // only an ASCII sign byte marks a place where it is safe to split.
    let b = s.as_bytes();
    if b.len() > 6 {
        let t = &b[b.len() - 6..];
        if (t[0] == b'+' || t[0] == b'-') && t[3] == b':' {
            let main = &s[..b.len() - 6];
            let digits = |x: u8, y: u8| -> Option<i32> {
                (x.is_ascii_digit() && y.is_ascii_digit())
                    .then(|| ((x - b'0') * 10 + (y - b'0')) as i32)
            };
            return match (digits(t[1], t[2]), digits(t[4], t[5])) {
                (Some(h), Some(m)) => (main, Zone::Offset(if t[0] == b'-' { -1 } else { 1 }, h, m)),
                _ => (main, Zone::Bad),
            };
        }
    }
    (s, Zone::None)
}

impl fmt::Display for CapDateTime {
    /// Writes the CAP 1.2 form, e.g. `2026-08-09T03:00:00+08:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.civil;
        let off = self.offset_seconds;
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.abs();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
            c.year(),
            c.month(),
            c.day(),
            c.hour(),
            c.minute(),
            c.second(),
            sign,
            off / 3600,
            (off % 3600) / 60
        )
    }
}

impl FromStr for CapDateTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CapDateTime::parse_cap12(s)
    }
}

impl Serialize for CapDateTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CapDateTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CapDateTime::parse_cap12(&s).map_err(serde::de::Error::custom)
    }
}

/// Declares a CAP enumeration: its variants, their exact spelling, and parsing.
macro_rules! cap_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every value, in the order the standard lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The exact spelling CAP uses.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The value for an exact spelling.
            pub fn from_cap(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

cap_enum!(
    /// `<status>`: how to handle the message.
    Status {
        /// Actionable by all targeted recipients.
        Actual = "Actual",
        /// Actionable only by designated exercise participants.
        Exercise = "Exercise",
        /// For messages that support alert network internal functions.
        System = "System",
        /// Technical testing only; all recipients disregard.
        Test = "Test",
        /// A preliminary template or draft, not actionable.
        Draft = "Draft",
    }
);

cap_enum!(
    /// `<msgType>`: the nature of the message.
    MsgType {
        /// Initial information requiring attention.
        Alert = "Alert",
        /// Updates and supersedes the messages in `references`.
        Update = "Update",
        /// Cancels the messages in `references`.
        Cancel = "Cancel",
        /// Acknowledges the messages in `references`.
        Ack = "Ack",
        /// Rejects the messages in `references`.
        Error = "Error",
    }
);

cap_enum!(
    /// `<scope>`: who may see the message.
    Scope {
        /// Unrestricted.
        Public = "Public",
        /// Users with a known operational requirement (see `restriction`).
        Restricted = "Restricted",
        /// Specified addresses only (see `addresses`).
        Private = "Private",
    }
);

cap_enum!(
    /// `<category>`: the kind of event.
    Category {
        /// Geophysical (incl. landslide).
        Geo = "Geo",
        /// Meteorological (incl. flood).
        Met = "Met",
        /// General emergency and public safety.
        Safety = "Safety",
        /// Law enforcement, military, homeland and local/private security.
        Security = "Security",
        /// Rescue and recovery.
        Rescue = "Rescue",
        /// Fire suppression and rescue.
        Fire = "Fire",
        /// Medical and public health.
        Health = "Health",
        /// Pollution and other environmental.
        Env = "Env",
        /// Public and private transportation.
        Transport = "Transport",
        /// Utility, telecommunication, other non-transport infrastructure.
        Infra = "Infra",
        /// Chemical, biological, radiological, nuclear or high-yield explosive.
        Cbrne = "CBRNE",
        /// Other events.
        Other = "Other",
    }
);

cap_enum!(
    /// `<responseType>`: the recommended action.
    ResponseType {
        /// Take shelter in place.
        Shelter = "Shelter",
        /// Relocate.
        Evacuate = "Evacuate",
        /// Make preparations.
        Prepare = "Prepare",
        /// Execute a pre-planned activity.
        Execute = "Execute",
        /// Avoid the subject event.
        Avoid = "Avoid",
        /// Attend to information sources.
        Monitor = "Monitor",
        /// Evaluate the information.
        Assess = "Assess",
        /// The subject event no longer poses a threat.
        AllClear = "AllClear",
        /// No action recommended.
        None = "None",
    }
);

cap_enum!(
    /// `<urgency>`: how soon to act.
    Urgency {
        /// Act now.
        Immediate = "Immediate",
        /// Act soon (within the next hour).
        Expected = "Expected",
        /// Act in the near future.
        Future = "Future",
        /// No longer required.
        Past = "Past",
        /// Not known.
        Unknown = "Unknown",
    }
);

cap_enum!(
    /// `<severity>`: how bad. The Chinese colours map onto these (red = Extreme … blue = Minor).
    Severity {
        /// Extraordinary threat to life or property (red, level I).
        Extreme = "Extreme",
        /// Significant threat (orange, level II).
        Severe = "Severe",
        /// Possible threat (yellow, level III).
        Moderate = "Moderate",
        /// Minimal to no known threat (blue, level IV).
        Minor = "Minor",
        /// Not known.
        Unknown = "Unknown",
    }
);

cap_enum!(
    /// `<certainty>`: how sure.
    Certainty {
        /// Determined to have occurred or to be ongoing.
        Observed = "Observed",
        /// Likely (p > ~50%).
        Likely = "Likely",
        /// Possible but not likely (p <= ~50%).
        Possible = "Possible",
        /// Not expected to occur (p ~ 0).
        Unlikely = "Unlikely",
        /// Not known.
        Unknown = "Unknown",
    }
);

impl fmt::Display for Point {
    /// `lat,lon` as CAP writes it, with the shortest decimals that read back the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.lat, self.lon)
    }
}

impl fmt::Display for Polygon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.points.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Circle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.center, self.radius_km)
    }
}

impl Point {
    /// Parse `lat,lon`; both must be finite numbers (range is checked by validation).
    pub fn parse(s: &str) -> Result<Point, String> {
        let (lat, lon) = s
            .split_once(',')
            .ok_or_else(|| format!("`{s}` is not a `lat,lon` pair"))?;
        let lat: f64 =
            parse_number(lat).ok_or_else(|| format!("latitude `{lat}` is not a number"))?;
        let lon: f64 =
            parse_number(lon).ok_or_else(|| format!("longitude `{lon}` is not a number"))?;
        Ok(Point { lat, lon })
    }

    /// Whether latitude is within −90…90 and longitude within −180…180.
    pub fn in_range(&self) -> bool {
        (-90.0..=90.0).contains(&self.lat) && (-180.0..=180.0).contains(&self.lon)
    }
}

/// Parse a decimal number the way CAP writes them (no exponent, no `inf`/`nan`).
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        || digits.bytes().filter(|&c| c == b'.').count() > 1
        || digits == "."
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

impl Polygon {
    /// Parse a whitespace-separated list of `lat,lon` pairs. Empty text gives an empty polygon.
    pub fn parse(s: &str) -> Result<Polygon, String> {
        let points = s
            .split_ascii_whitespace()
            .map(Point::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Polygon { points })
    }

    /// Whether the ring is closed: first point equal to last.
    pub fn is_closed(&self) -> bool {
        match (self.points.first(), self.points.last()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

impl Circle {
    /// Parse `lat,lon radius` (radius in km, ≥ 0).
    pub fn parse(s: &str) -> Result<Circle, String> {
        let mut parts = s.split_ascii_whitespace();
        let (Some(center), Some(radius), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("`{}` is not `lat,lon radius`", s.trim()));
        };
        let center = Point::parse(center)?;
        let radius_km =
            parse_number(radius).ok_or_else(|| format!("radius `{radius}` is not a number"))?;
        Ok(Circle { center, radius_km })
    }
}

impl Reference {
    /// Parse one `sender,identifier,sent` triplet.
    pub fn parse(s: &str) -> Result<Reference, String> {
        let mut parts = s.split(',');
        let (Some(sender), Some(identifier), Some(sent), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("`{s}` is not a `sender,identifier,sent` triplet"));
        };
        if sender.is_empty() || identifier.is_empty() {
            return Err(format!("`{s}` has an empty sender or identifier"));
        }
        let sent =
            CapDateTime::parse_cap12(sent).map_err(|e| format!("in reference `{s}`: {e}"))?;
        Ok(Reference {
            sender: sender.to_string(),
            identifier: identifier.to_string(),
            sent,
        })
    }
}

impl Alert {
    /// The key CAP uses to name a message everywhere: `(sender, identifier, sent)`.
    pub fn key(&self) -> Reference {
        Reference {
            sender: self.sender.clone(),
            identifier: self.identifier.clone(),
            sent: self.sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_date_time_round_trips_with_its_offset() {
        let t = CapDateTime::parse_cap12("2019-08-10T01:45:00+08:00").unwrap();
        assert_eq!(t.to_string(), "2019-08-10T01:45:00+08:00");
        assert_eq!(t.timestamp().to_string(), "2019-08-09T17:45:00Z");
        let t = CapDateTime::parse_cap12("2012-05-02T23:21:04-00:00").unwrap();
        assert_eq!(t.to_string(), "2012-05-02T23:21:04+00:00");
    }

    #[test]
    fn strict_form_rejects_z_fractions_and_missing_offsets() {
        for bad in [
            "2019-08-10T01:45:00Z",
            "2019-08-10T01:45:00.5+08:00",
            "2019-08-10T01:45:00",
            "2019-08-10 01:45:00+08:00",
            "2019-02-30T01:45:00+08:00",
            "2019-08-10T25:45:00+08:00",
        ] {
            assert!(CapDateTime::parse_cap12(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn lenient_form_reads_xs_date_time_and_says_what_was_off() {
        let (t, notes) = CapDateTime::parse_lenient("2019-08-10T01:45:00.25Z").unwrap();
        assert_eq!(t.to_string(), "2019-08-10T01:45:00+00:00");
        assert_eq!(notes.len(), 2);
        let (t, _) = CapDateTime::parse_lenient("2019-08-10T24:00:00+08:00").unwrap();
        assert_eq!(t.to_string(), "2019-08-11T00:00:00+08:00");
    }

    #[test]
    fn non_ascii_text_in_a_time_is_an_error_not_a_panic() {
        // Found by fuzzing: byte offsets inside multi-byte characters.
        for bad in [
            "2012-10-14T22:40:56ß00:00",
            "2ß12-10-14T22:40:56+00:00",
            "台风台风台风台风台风台风台风台风台",
        ] {
            assert!(CapDateTime::parse_lenient(bad).is_err(), "{bad}");
            assert!(CapDateTime::parse_cap12(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn geometry_parses_and_prints_back() {
        let p = Polygon::parse("38.47,-120.14 38.34,-119.95 38.52,-119.74 38.47,-120.14").unwrap();
        assert!(p.is_closed());
        assert_eq!(Polygon::parse(&p.to_string()).unwrap(), p);
        let c = Circle::parse("32.9525,-115.5527 0").unwrap();
        assert_eq!(c.radius_km, 0.0);
        assert!(Circle::parse("32.9525,-115.5527").is_err());
        assert!(
            Point::parse("1e3,5").is_err(),
            "exponents are not CAP decimals"
        );
        assert!(Point::parse("abc,5").is_err());
    }

    #[test]
    fn references_need_three_parts_and_a_cap_time() {
        let r =
            Reference::parse("cap@ec.gc.ca,2.49.0.1.124.a3f342a4.2012,2012-05-02T21:45:05-00:00")
                .unwrap();
        assert_eq!(r.identifier, "2.49.0.1.124.a3f342a4.2012");
        assert!(Reference::parse("only,two").is_err());
        assert!(Reference::parse("a,b,yesterday").is_err());
    }
}
