//! Tropical-cyclone text bulletins as the agencies send them over the WMO's telecommunication
//! system: CMA's `WTPQ20 BABJ` subjective forecasts and `WHCI40 BABJ` landfall messages
//! ([`cma`]), JMA's `WTPQ5x RJTD` RSMC advisories ([`jma`]) and JTWC's `WTxx3x PGTW`
//! warnings ([`jtwc`]). These are what every Chinese typhoon signal starts from; a county can
//! point a feed at its provincial bureau's copy of them.
//!
//! What the three share, handled here:
//!
//! * **Framing.** A file holds one or more bulletins, each starting at its abbreviated heading
//!   (`TTAAii CCCC YYGGgg [BBB]`); `ZCZC`, `NNNN`, the closing `=` and the last newline are
//!   optional (copies drop them), line ends may be CRLF, lines may carry trailing spaces.
//! * **Times.** Bulletins give `DDHHMM` in UTC only. The month and year come from a
//!   `YYYYMMDDHHMMSS` stamp in the file's name (CMA's FTP names carry one) or else from the
//!   time of receipt: of the previous, same and next month, the date nearest the reference
//!   (so a bulletin of 31 December read on 1 January belongs to the old year).
//! * **Corrections.** `CCA`, `CCB` … replace the bulletin they correct: the track carries the
//!   correction's rank and the typhoon rule keeps the highest for an analysis time.
//! * **Other products.** `TCPQ40 BABJ` (numeric groups without forecasts), `WSCI40 BABJ`
//!   (Chinese telegraph code for the provinces) and JTWC's `ABPW10` outlook are recognised
//!   and skipped with a note, never an error. A bulletin that cannot be read is refused with
//!   one line saying where; the others in the file are still read.

pub mod cma;
pub mod jma;
pub mod jtwc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::typhoon::{Grade, Track};
use super::{Document, FeedError, FeedKind, Item, Observation, Parsed};

/// The feed kind of tropical-cyclone bulletins.
pub struct BulletinFeed;

/// A WMO abbreviated heading: `WTPQ20 BABJ 241800 CCA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    /// Data type and area (`WTPQ20`).
    pub tt: String,
    /// The issuing centre's location indicator (`BABJ`).
    pub cccc: String,
    /// `DDHHMM`, UTC.
    pub time: String,
    /// `CCA`, `RRA`, `AAA` …, if any.
    pub bbb: Option<String>,
}

impl Heading {
    /// A heading line, or `None` if the line is not one.
    pub fn parse(line: &str) -> Option<Heading> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&f.len()) {
            return None;
        }
        let tt = f[0].as_bytes();
        let ok_tt = tt.len() == 6
            && tt[..4].iter().all(u8::is_ascii_uppercase)
            && tt[4..].iter().all(u8::is_ascii_digit);
        let ok_cccc = f[1].len() == 4 && f[1].bytes().all(|b| b.is_ascii_uppercase());
        let ok_time = f[2].len() == 6 && f[2].bytes().all(|b| b.is_ascii_digit());
        let bbb = f.get(3).map(|s| s.to_string());
        let ok_bbb = bbb
            .as_deref()
            .is_none_or(|b| b.len() == 3 && b.bytes().all(|c| c.is_ascii_uppercase()));
        (ok_tt && ok_cccc && ok_time && ok_bbb).then(|| Heading {
            tt: f[0].to_string(),
            cccc: f[1].to_string(),
            time: f[2].to_string(),
            bbb,
        })
    }

    /// 0 for an original, 1 for `CCA`, 2 for `CCB` …
    pub fn correction(&self) -> u8 {
        match self.bbb.as_deref().map(str::as_bytes) {
            Some([b'C', b'C', x]) if x.is_ascii_uppercase() => x - b'A' + 1,
            _ => 0,
        }
    }

    /// As written.
    pub fn line(&self) -> String {
        let mut s = format!("{} {} {}", self.tt, self.cccc, self.time);
        if let Some(b) = &self.bbb {
            s.push(' ');
            s.push_str(b);
        }
        s
    }
}

/// A storm's landfall, as CMA's `WHCI40 BABJ` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Landfall {
    /// The issuing centre (`BABJ`).
    pub agency: String,
    /// The storm's number (`1808`).
    pub storm: String,
    /// Its name (`MARIA`).
    pub name: String,
    /// Its grade at landfall.
    pub grade: Option<Grade>,
    /// When it made landfall.
    pub time: Timestamp,
    /// Where (`FUJIAN LIANJIANG`).
    pub place: String,
    /// Maximum wind near the centre, m/s.
    pub wind_ms: Option<f64>,
}

/// What one bulletin of a file was.
#[derive(Debug, Clone, PartialEq)]
pub enum Bulletin {
    /// An analysis with its forecasts.
    Track(Track),
    /// A landfall.
    Landfall(Landfall),
    /// A product recognised and deliberately not used.
    Skipped {
        /// Its heading.
        heading: String,
        /// Why.
        why: String,
    },
}

/// What a file of bulletins yielded.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// The bulletins read or skipped, in file order (a correction after its original).
    pub bulletins: Vec<Bulletin>,
    /// Bulletins refused, and what reading noticed (elisions, missing quadrants).
    pub problems: Vec<String>,
}

/// The track one bulletin gives: its analysis and, if any, its own forecast, under the
/// bulletin's centre and correction rank.
fn bulletin_track(
    h: &Heading,
    storm: String,
    name_en: String,
    format: &str,
    analysis: super::typhoon::TrackPoint,
    ahead: Vec<super::typhoon::TrackPoint>,
) -> Track {
    let issued = analysis.time;
    Track {
        storm,
        name: String::new(),
        name_en,
        format: format.into(),
        agency: h.cccc.clone(),
        correction: h.correction(),
        points: vec![analysis],
        forecasts: if ahead.is_empty() {
            Vec::new()
        } else {
            vec![super::typhoon::Forecast {
                agency: h.cccc.clone(),
                issued,
                points: ahead,
            }]
        },
    }
}

/// A `YYYYMMDDHHMMSS` stamp (UTC) in a file's name or address, as CMA's FTP names carry.
pub fn stamp_in_name(name: &str) -> Option<Timestamp> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let b = base.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let j = (i..b.len())
                .find(|&k| !b[k].is_ascii_digit())
                .unwrap_or(b.len());
            if j - i == 14 {
                let s = &base[i..j];
                let civil = format!(
                    "{}-{}-{}T{}:{}:{}",
                    &s[0..4],
                    &s[4..6],
                    &s[6..8],
                    &s[8..10],
                    &s[10..12],
                    &s[12..14]
                );
                if let Some(t) = civil
                    .parse::<jiff::civil::DateTime>()
                    .ok()
                    .and_then(|c| jiff::tz::Offset::UTC.to_timestamp(c).ok())
                {
                    return Some(t);
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}

/// `DDHHMM` (UTC) as a time: of the previous, same and next month of `reference`, the one
/// nearest to it.
pub fn day_time(ddhhmm: &str, reference: Timestamp) -> Option<Timestamp> {
    let d = ddhhmm.trim();
    if d.len() != 6 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| d[r].parse::<i8>().ok();
    let (day, hour, minute) = (num(0..2)?, num(2..4)?, num(4..6)?);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let r = reference.to_zoned(jiff::tz::TimeZone::UTC).date();
    [-1i32, 0, 1]
        .iter()
        .filter_map(|k| {
            let months = i32::from(r.year()) * 12 + i32::from(r.month()) - 1 + k;
            let (y, m) = (months.div_euclid(12), months.rem_euclid(12) + 1);
            let date = jiff::civil::Date::new(i16::try_from(y).ok()?, m as i8, day).ok()?;
            jiff::tz::Offset::UTC
                .to_timestamp(date.at(hour, minute, 0, 0))
                .ok()
        })
        .min_by_key(|t| t.duration_since(reference).abs())
}

/// A position field: `11.4N`, `9.0S`, `155.9E`, `80.2W`.
pub(crate) fn coord(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches('=');
    let (num, hemi) = s.split_at(s.len().checked_sub(1)?);
    let v: f64 = num.parse().ok()?;
    let v = match hemi {
        "N" | "E" => v,
        "S" | "W" => -v,
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// The number in a field with a unit suffix (`1000HPA`, `18M/S=`, `16KM/H`, `040`).
pub(crate) fn number_before(s: &str, unit: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches('=');
    let upper = s.to_ascii_uppercase();
    let n = upper.strip_suffix(&unit.to_ascii_uppercase())?;
    let v: f64 = n.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

/// One bulletin cut out of a file: its heading, the line it starts on and its body lines.
struct Cut<'a> {
    heading: Heading,
    line: usize,
    body: Vec<&'a str>,
}

fn cut(text: &str) -> (Vec<Cut<'_>>, usize) {
    let mut out: Vec<Cut<'_>> = Vec::new();
    let mut before = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim_end_matches(['\r', ' ', '\t']);
        let t = line.trim();
        if t == "ZCZC" || t == "NNNN" || t.starts_with("ZCZC ") {
            continue;
        }
        if let Some(h) = Heading::parse(t) {
            out.push(Cut {
                heading: h,
                line: i + 1,
                body: Vec::new(),
            });
            continue;
        }
        match out.last_mut() {
            Some(c) => c.body.push(line),
            None if !t.is_empty() => before += 1,
            None => {}
        }
    }
    (out, before)
}

/// Read a file of bulletins. `reference` supplies the month and year the bulletins lack.
pub fn parse(body: &[u8], reference: Timestamp) -> Result<Read, FeedError> {
    let text = std::str::from_utf8(body).map_err(|e| FeedError::Format {
        line: None,
        message: format!("not ASCII text (invalid at byte {})", e.valid_up_to()),
    })?;
    let (cuts, before) = cut(text.trim_start_matches('\u{feff}'));
    if cuts.is_empty() {
        return Err(FeedError::Format {
            line: Some(1),
            message: "no WMO heading (e.g. `WTPQ20 BABJ 241800`): not a bulletin".into(),
        });
    }
    let mut read = Read::default();
    if before > 0 {
        read.problems
            .push(format!("{before} line(s) before the first heading ignored"));
    }
    for c in cuts {
        let h = &c.heading;
        let at = |e: FeedError| match e {
            FeedError::Format { line, message } => format!(
                "bulletin {} (line {}): {}{message}",
                h.line(),
                c.line,
                line.map(|l| format!("line {}: ", c.line + l as usize))
                    .unwrap_or_default()
            ),
        };
        let tt = &h.tt[..4];
        let skip = |why: &str| {
            Ok((
                Bulletin::Skipped {
                    heading: h.line(),
                    why: why.to_string(),
                },
                Vec::new(),
            ))
        };
        let track =
            |r: Result<(Track, Vec<String>), FeedError>| r.map(|(t, n)| (Bulletin::Track(t), n));
        let outcome: Result<(Bulletin, Vec<String>), FeedError> = match (tt, h.cccc.as_str()) {
            ("WTPQ", "BABJ") => track(cma::forecast(h, &c.body, reference)),
            ("WHCI", "BABJ") => {
                cma::landfall(h, &c.body, reference).map(|l| (Bulletin::Landfall(l), Vec::new()))
            }
            ("TCPQ", "BABJ") => skip(
                "CMA TCPQ numeric groups: positions without forecasts or radii; the WTPQ20 \
                 bulletin of the same time is used",
            ),
            ("WSCI", "BABJ") => skip(
                "CMA WSCI Chinese telegraph code for the provincial centres: the WTPQ20 \
                 bulletin carries the same forecast",
            ),
            ("WTPQ", "RJTD") => track(jma::advisory(h, &c.body, reference)),
            (_, "PGTW") if tt.starts_with("WT") => track(jtwc::warning(h, &c.body, reference)),
            (_, "PGTW") if tt.starts_with("AB") => {
                skip("JTWC significant tropical weather advisory: outlook text, no track")
            }
            _ => skip("not a tropical-cyclone product stormbell reads"),
        };
        match outcome {
            Ok((b, notes)) => {
                let name = match &b {
                    Bulletin::Track(t) => format!("{} {}", t.agency, t.storm),
                    _ => h.line(),
                };
                read.problems
                    .extend(notes.into_iter().map(|n| format!("{name}: {n}")));
                read.bulletins.push(b);
            }
            Err(e) => read.problems.push(at(e)),
        }
    }
    if read.bulletins.is_empty() {
        return Err(FeedError::Format {
            line: None,
            message: read.problems.join("; "),
        });
    }
    Ok(read)
}

/// The reference time for a document: a stamp in its address, or when it arrived.
pub fn reference_of(doc: &Document<'_>) -> Timestamp {
    stamp_in_name(doc.url).unwrap_or(doc.received)
}

/// The key that identifies a track across polls: agency, storm, analysis time, correction.
pub fn track_key(t: &Track) -> String {
    format!(
        "{}|{}|{}|{}",
        t.agency,
        t.storm,
        t.points
            .first()
            .map(|p| p.time.to_string())
            .unwrap_or_default(),
        t.correction
    )
}

impl FeedKind for BulletinFeed {
    fn name(&self) -> &'static str {
        "bulletin"
    }
    fn parse(&self, doc: &Document<'_>) -> Result<Parsed, FeedError> {
        let read = parse(doc.body, reference_of(doc))?;
        let mut parsed = Parsed {
            problems: read.problems,
            ..Parsed::default()
        };
        for b in read.bulletins {
            match b {
                Bulletin::Track(t) => parsed.items.push(Item {
                    key: track_key(&t),
                    observation: Observation::Track(t),
                }),
                Bulletin::Landfall(l) => parsed.items.push(Item {
                    key: format!("landfall|{}|{}|{}", l.agency, l.storm, l.time),
                    observation: Observation::Landfall(l),
                }),
                Bulletin::Skipped { heading, why } => {
                    parsed.skipped.push(super::Skipped { what: heading, why })
                }
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn headings_and_corrections() {
        let h = Heading::parse("WTPQ20 BABJ 241800 CCA").unwrap();
        assert_eq!((h.cccc.as_str(), h.correction()), ("BABJ", 1));
        assert_eq!(
            Heading::parse("WTPQ20 BABJ 241800 CCB")
                .unwrap()
                .correction(),
            2
        );
        assert_eq!(
            Heading::parse("WTPQ20 BABJ 241800").unwrap().correction(),
            0
        );
        assert!(Heading::parse("SUBJECTIVE FORECAST").is_none());
        assert!(Heading::parse("00HR 11.4N 111.1E 1000HPA").is_none());
        assert!(Heading::parse("TS PABUK 2426 (2426)").is_none());
    }

    #[test]
    fn days_find_their_month_across_month_and_year_ends() {
        // Read on 1 January: the 31st is last year's.
        assert_eq!(
            day_time("312100", ts("2025-01-01T02:00:00Z")),
            Some(ts("2024-12-31T21:00:00Z"))
        );
        // Read at the end of a month: the 1st is next month's.
        assert_eq!(
            day_time("010000", ts("2024-11-30T23:10:00Z")),
            Some(ts("2024-12-01T00:00:00Z"))
        );
        assert_eq!(
            day_time("250300", ts("2024-12-25T03:20:00Z")),
            Some(ts("2024-12-25T03:00:00Z"))
        );
        // The 31st read in February: January's (February has none).
        assert_eq!(
            day_time("311200", ts("2025-02-03T00:00:00Z")),
            Some(ts("2025-01-31T12:00:00Z"))
        );
        assert_eq!(day_time("322400", ts("2025-02-03T00:00:00Z")), None);
        assert_eq!(day_time("12345", ts("2025-02-03T00:00:00Z")), None);
    }

    #[test]
    fn stamps_in_cma_file_names() {
        assert_eq!(
            stamp_in_name("/ftp/Z_SEVP_C_BABJ_20241225030000_P_CMA_WTPQ20.TXT"),
            Some(ts("2024-12-25T03:00:00Z"))
        );
        assert_eq!(
            stamp_in_name("cma_WTPQ20_BABJ_250300_TD_PABUK_2426.txt"),
            None
        );
    }
}
