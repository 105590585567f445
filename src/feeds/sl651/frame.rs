//! SL 651-2014 frames in the HEX/BCD encoding: what a rain gauge's RTU sends a county's
//! central station, and the centre's answer.
//!
//! ```text
//! 7E 7E | centre 1B | station 5B (BCD) | password 2B | function 1B | dir 4 bits + length 12 bits
//! | STX 02 (or SYN 16 + 3B packet count and number) | body | ETX 03 (ETB 17: more packets)
//! | CRC-16 2B, high byte first
//! ```
//!
//! The CRC is CRC-16 with the polynomial X16+X15+X2+1 in its reflected (Modbus) form
//! `0xA001`, initial value `0xFFFF`, over every byte from the first `7E` to the end character.
//! A downlink frame (the centre's answer) swaps the addresses — station before centre — sets
//! the direction bits to `8` and ends with `EOT` (04, link closed), `ESC` (1B, link kept) or
//! `NAK` (15, send again).
//!
//! The body of a report: serial number 2B, send time 6B BCD `YYMMDDhhmmss`, `F1 F1` station
//! address 5B, station type 1B (`50` P rain, `48` H river, `4B` K reservoir …), `F0 F0`
//! observation time 5B `YYMMDDhhmm`, then elements `<id> <definition> <value>`: the definition
//! byte's high 5 bits are the value's length in bytes, the low 3 its decimals; values are BCD,
//! a negative one prefixed `FF`, and all-`FF` (or `AA`) bytes mean no value. `F4` (five-minute
//! rain, 12 bytes) is one HEX byte per five minutes in 0.1 mm, `FF` = invalid. Another `F0 F0`
//! starts a new observation time within the same body. Times are local (Beijing) with a
//! two-digit year.

/// CRC-16 as SL 651 computes it.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut c: u16 = 0xFFFF;
    for &b in bytes {
        c ^= u16::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xA001
            } else {
                c >> 1
            };
        }
    }
    c
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a HEX/BCD frame (no `7E 7E`): ASCII frames start with `01` and are not read.
    #[error("not an SL 651 HEX frame (starts {0})")]
    NotAFrame(String),
    /// Shorter than its header or its stated length.
    #[error("truncated: {have} of {need} bytes")]
    Truncated {
        /// Bytes there.
        have: usize,
        /// Bytes the header says.
        need: usize,
    },
    /// The check sum does not match.
    #[error("CRC {sent:04X} sent, {computed:04X} computed")]
    Crc {
        /// As sent.
        sent: u16,
        /// As computed.
        computed: u16,
    },
    /// The framing characters are not where the header says.
    #[error("{0}")]
    Malformed(String),
}

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Central station address.
    pub centre: u8,
    /// Station address, as 10 digits (BCD).
    pub station: String,
    /// Password, as 4 hex digits.
    pub password: String,
    /// Function code (`0x32` timed report …).
    pub function: u8,
    /// Uplink (station to centre).
    pub up: bool,
    /// Start of body: `02` STX or `16` SYN.
    pub start: u8,
    /// End: `03` ETX, `17` ETB (more packets), or a downlink end character.
    pub end: u8,
}

/// One element of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Identifier (`0x26` PT …; `0xFFxx` for the extended ones).
    pub id: u16,
    /// The value; `None` when the station sent "no value".
    pub value: Option<f64>,
    /// `F4`: twelve five-minute amounts (mm; `None` = invalid).
    pub five_minutes: Vec<Option<f64>>,
}

/// Civil time as the frame gives it (two-digit year, local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTime {
    /// Two-digit year.
    pub yy: u8,
    /// Month.
    pub month: u8,
    /// Day.
    pub day: u8,
    /// Hour.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// Second (0 for observation times).
    pub second: u8,
}

impl FrameTime {
    /// As a time in `tz`, in the century that puts it nearest `reference`; `None` when it is
    /// not a real date.
    pub fn at(
        &self,
        tz: &jiff::tz::TimeZone,
        reference: jiff::Timestamp,
    ) -> Option<jiff::Timestamp> {
        let ref_year = i32::from(reference.to_zoned(tz.clone()).year());
        let century = ref_year - ref_year.rem_euclid(100);
        [century - 100, century, century + 100]
            .iter()
            .filter_map(|c| {
                let y = i16::try_from(c + i32::from(self.yy)).ok()?;
                let d = jiff::civil::Date::new(y, self.month as i8, self.day as i8).ok()?;
                let t = jiff::civil::Time::new(
                    self.hour as i8,
                    self.minute as i8,
                    self.second as i8,
                    0,
                )
                .ok()?;
                d.to_datetime(t)
                    .to_zoned(tz.clone())
                    .ok()
                    .map(|z| z.timestamp())
            })
            .min_by_key(|t| t.duration_since(reference).abs())
    }
}

/// One observation time and its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// When.
    pub time: FrameTime,
    /// What.
    pub elements: Vec<Element>,
}

/// A report read from a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The header.
    pub header: Header,
    /// Serial number.
    pub serial: u16,
    /// Send time.
    pub sent: Option<FrameTime>,
    /// Station type (`b'P'` rain …), if the body has one.
    pub station_type: Option<u8>,
    /// Observations.
    pub observed: Vec<Observed>,
    /// The frame's bytes, as received.
    pub len: usize,
}

fn bcd_digit_pair(b: u8) -> Option<u8> {
    let (h, l) = (b >> 4, b & 0x0F);
    (h <= 9 && l <= 9).then_some(h * 10 + l)
}

fn bcd_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn time(bytes: &[u8]) -> Option<FrameTime> {
    let v: Vec<u8> = bytes
        .iter()
        .map(|b| bcd_digit_pair(*b))
        .collect::<Option<_>>()?;
    Some(FrameTime {
        yy: *v.first()?,
        month: *v.get(1)?,
        day: *v.get(2)?,
        hour: *v.get(3)?,
        minute: *v.get(4)?,
        second: v.get(5).copied().unwrap_or(0),
    })
}

/// A BCD value with `decimals`; `None` for "no value" (all `FF` or `AA`).
fn bcd_value(bytes: &[u8], decimals: u8) -> Result<Option<f64>, String> {
    if bytes.iter().all(|b| *b == 0xFF) || bytes.iter().all(|b| *b == 0xAA) {
        return Ok(None);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((0xFF, rest)) => (true, rest),
        _ => (false, bytes),
    };
    let mut v: u64 = 0;
    for b in digits {
        let d = bcd_digit_pair(*b).ok_or_else(|| format!("byte {b:02X} is not BCD"))?;
        v = v * 100 + u64::from(d);
    }
    let x = v as f64 / 10f64.powi(i32::from(decimals));
    Ok(Some(if negative { -x } else { x }))
}

/// Cut one frame off the front of `buf`: its length when a whole frame is there, `Ok(None)`
/// when more bytes are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] != 0x7E || buf[1] != 0x7E {
        return Err(FrameError::NotAFrame(bcd_string(&buf[..buf.len().min(4)])));
    }
    if buf.len() < 14 {
        return Ok(None);
    }
    let body = usize::from(u16::from_be_bytes([buf[11], buf[12]]) & 0x0FFF);
    let head = if buf[13] == 0x16 { 17 } else { 14 };
    let need = head + body + 1 + 2;
    Ok((buf.len() >= need).then_some(need))
}

/// Read one whole frame (as cut by [`frame_len`], or a frame on its own).
pub fn read(frame: &[u8]) -> Result<Report, FrameError> {
    let need = match frame_len(frame)? {
        Some(n) => n,
        None => {
            let body = frame
                .get(11..13)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]) & 0x0FFF));
            return Err(FrameError::Truncated {
                have: frame.len(),
                need: body.map_or(14, |b| 17 + b),
            });
        }
    };
    let frame = &frame[..need];
    let sent = u16::from_be_bytes([frame[need - 2], frame[need - 1]]);
    let computed = crc16(&frame[..need - 2]);
    if sent != computed {
        return Err(FrameError::Crc { sent, computed });
    }
    let up = frame[11] >> 4 == 0;
    let (centre, station) = if up {
        (frame[2], bcd_string(&frame[3..8]))
    } else {
        (frame[7], bcd_string(&frame[2..7]))
    };
    let start = frame[13];
    if start != 0x02 && start != 0x16 {
        return Err(FrameError::Malformed(format!(
            "start character {start:02X} is neither STX 02 nor SYN 16"
        )));
    }
    let head = if start == 0x16 { 17 } else { 14 };
    let end = frame[need - 3];
    if up && end != 0x03 && end != 0x17 {
        return Err(FrameError::Malformed(format!(
            "end character {end:02X} where the length puts ETX 03 or ETB 17"
        )));
    }
    let header = Header {
        centre,
        station,
        password: bcd_string(&frame[8..10]),
        function: frame[10],
        up,
        start,
        end,
    };
    let body = &frame[head..need - 3];
    let mut report = Report {
        header,
        serial: 0,
        sent: None,
        station_type: None,
        observed: Vec::new(),
        len: need,
    };
    if body.len() < 8 {
        return Ok(report);
    }
    report.serial = u16::from_be_bytes([body[0], body[1]]);
    report.sent = time(&body[2..8]);
    let mut i = 8;
    let bad = |i: usize, m: String| FrameError::Malformed(format!("body byte {i}: {m}"));
    while i < body.len() {
        let id = body[i];
        if id == 0xF1 && body.get(i + 1) == Some(&0xF1) {
            // Station address again, then its type.
            report.station_type = body.get(i + 7).copied();
            i += 8;
            continue;
        }
        if id == 0xF0 && body.get(i + 1) == Some(&0xF0) {
            let t = body
                .get(i + 2..i + 7)
                .and_then(time)
                .ok_or_else(|| bad(i, "observation time is not BCD".into()))?;
            report.observed.push(Observed {
                time: t,
                elements: Vec::new(),
            });
            i += 7;
            continue;
        }
        // Extended identifiers: FF xx.
        let (eid, def_at) = if id == 0xFF {
            (0xFF00 | u16::from(*body.get(i + 1).unwrap_or(&0)), i + 2)
        } else {
            (u16::from(id), i + 1)
        };
        let def = *body
            .get(def_at)
            .ok_or_else(|| bad(i, format!("element {eid:02X} without its definition byte")))?;
        let (n, decimals) = (usize::from(def >> 3), def & 0x07);
        let value = body.get(def_at + 1..def_at + 1 + n).ok_or_else(|| {
            bad(
                i,
                format!("element {eid:02X} wants {n} bytes, the body ends first"),
            )
        })?;
        let obs = match report.observed.last_mut() {
            Some(o) => o,
            None => return Err(bad(i, "an element before any F0F0 observation time".into())),
        };
        let element = if eid == 0xF4 {
            Element {
                id: eid,
                value: None,
                five_minutes: value
                    .iter()
                    .map(|b| (*b != 0xFF).then(|| f64::from(*b) / 10.0))
                    .collect(),
            }
        } else {
            Element {
                id: eid,
                value: bcd_value(value, decimals)
                    .map_err(|e| bad(i, format!("element {eid:02X}: {e}")))?,
                five_minutes: Vec::new(),
            }
        };
        obs.elements.push(element);
        i = def_at + 1 + n;
    }
    Ok(report)
}

/// The centre's answer to an uplink frame: the same function, the report's serial number and
/// the centre's time, ending with `end` (04 EOT: done; 1B ESC: stay connected; 15 NAK: send
/// again).
pub fn answer(h: &Header, serial: u16, now: FrameTime, end: u8) -> Vec<u8> {
    let mut f = vec![0x7E, 0x7E];
    for k in 0..5 {
        f.push(
            u8::from_str_radix(h.station.get(2 * k..2 * k + 2).unwrap_or("00"), 16).unwrap_or(0),
        );
    }
    f.push(h.centre);
    for k in 0..2 {
        f.push(
            u8::from_str_radix(h.password.get(2 * k..2 * k + 2).unwrap_or("00"), 16).unwrap_or(0),
        );
    }
    f.push(h.function);
    let body_len: u16 = 8;
    f.extend_from_slice(&(0x8000 | body_len).to_be_bytes());
    f.push(0x02);
    f.extend_from_slice(&serial.to_be_bytes());
    for v in [now.yy, now.month, now.day, now.hour, now.minute, now.second] {
        f.push(((v / 10) << 4) | (v % 10));
    }
    f.push(end);
    let c = crc16(&f);
    f.extend_from_slice(&c.to_be_bytes());
    f
}

/// The name SL 651 gives an element (`PT`, `P1` …), for the rain elements and a few others.
pub fn element_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0x1A => "P1",
        0x1B => "P2",
        0x1C => "P3",
        0x1D => "P6",
        0x1E => "P12",
        0x1F => "PD",
        0x20 => "PJ",
        0x21 => "PN01",
        0x22 => "PN05",
        0x23 => "PN10",
        0x24 => "PN30",
        0x25 => "PR",
        0x26 => "PT",
        0x38 => "VT",
        0x39 => "Z",
        0x3B => "ZU",
        0xF4 => "DRP",
        _ => return None,
    })
}

/// Minutes covered by a period-rain element (`None` for cumulative ones: PJ, PT).
pub fn rain_minutes(id: u16) -> Option<u32> {
    Some(match id {
        0x1A => 60,
        0x1B => 120,
        0x1C => 180,
        0x1D => 360,
        0x1E => 720,
        0x1F => 1440,
        0x21 => 1,
        0x22 => 5,
        0x23 => 10,
        0x24 => 30,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn an_answer_reads_back_as_a_downlink_frame() {
        let h = Header {
            centre: 1,
            station: "0040803540".into(),
            password: "0000".into(),
            function: 0x32,
            up: true,
            start: 2,
            end: 3,
        };
        let t = FrameTime {
            yy: 24,
            month: 7,
            day: 9,
            hour: 8,
            minute: 5,
            second: 0,
        };
        let a = answer(&h, 0xFCA7, t, 0x04);
        let r = read(&a).unwrap();
        assert!(!r.header.up);
        assert_eq!(
            (r.header.station.as_str(), r.header.centre, r.header.end),
            ("0040803540", 1, 0x04)
        );
        assert_eq!(r.serial, 0xFCA7);
        assert_eq!(r.sent, Some(t));
    }

    #[test]
    fn negative_and_missing_values_and_five_minute_rain() {
        assert_eq!(bcd_value(&[0xFF, 0x01, 0x25], 2).unwrap(), Some(-1.25));
        assert_eq!(bcd_value(&[0xFF, 0xFF, 0xFF], 1).unwrap(), None);
        assert!(bcd_value(&[0x1A], 0).is_err());
        // A uniform-interval rain report: F4 with twelve five-minute bytes, FF invalid.
        let mut body = hex("0001240709080500F1F1001122334450F0F02407090800");
        body.extend(hex("F460"));
        body.extend([0, 5, 10, 0xFF, 0, 0, 0, 0, 0, 0, 0, 12]);
        // PJ 12.3, PT 1314.3, P1 2.5, PD 12.3.
        body.extend(hex("20190001232619013143"));
        body.extend(hex("1A190000251F19000123"));
        let mut f = hex("7E7E01001122334400003100");
        f.push(0);
        f.push(2);
        f.extend(&body);
        f.push(3);
        let n = (body.len() as u16).to_be_bytes();
        f[11] = n[0];
        f[12] = n[1];
        let c = crc16(&f);
        f.extend(c.to_be_bytes());
        let r = read(&f).unwrap();
        let e = &r.observed[0].elements;
        assert_eq!(e[0].id, 0xF4);
        assert_eq!(
            e[0].five_minutes[..4],
            [Some(0.0), Some(0.5), Some(1.0), None]
        );
        assert_eq!(e[1].value, Some(12.3));
        assert_eq!(e[3].value, Some(2.5));
        assert_eq!(e[4].value, Some(12.3));
    }
}
