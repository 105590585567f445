//! Call audio: 8 kHz G.711 (A-law and μ-law, ITU-T G.711), RTP packets (RFC 3550) of 20 ms,
//! and the keys a phone presses as RFC 4733 events.

use super::sdp::Law;

/// Samples in one 20 ms packet at 8 kHz.
pub const FRAME: usize = 160;

/// One 16-bit sample in A-law (the segment search of ITU-T G.711's reference coder).
pub fn alaw(s: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut pcm = i32::from(s) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let Some(seg) = SEG_END.iter().position(|&e| pcm <= e) else {
        return (0x7F ^ mask) as u8;
    };
    let mant = if seg < 2 {
        (pcm >> 1) & 0xF
    } else {
        (pcm >> seg) & 0xF
    };
    ((((seg as i32) << 4) | mant) ^ mask) as u8
}

/// One 16-bit sample in μ-law.
pub fn ulaw(s: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut pcm = i32::from(s) >> 2;
    let mask = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(8159) + (0x84 >> 2);
    let Some(seg) = SEG_END.iter().position(|&e| pcm <= e) else {
        return (0x7F ^ mask) as u8;
    };
    ((((seg as i32) << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask) as u8
}

/// An A-law byte back to 16 bits (to check what was sent).
pub fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// A μ-law byte back to 16 bits.
pub fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let mut t = (i32::from(u & 0x0F) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// Samples at `rate` Hz as 8 kHz samples, low-passed below 3.6 kHz first (a windowed-sinc
/// filter, so espeak-ng's 22 kHz speech does not alias into the telephone band). CPU work:
/// run it off the async workers.
pub fn to_8k(samples: &[i16], rate: u32) -> Vec<i16> {
    if rate == 8000 || samples.is_empty() || rate == 0 {
        return samples.to_vec();
    }
    let ratio = f64::from(rate) / 8000.0;
    let cutoff = 3600.0 / f64::from(rate); // cycles per input sample
    let half = (8.0 * ratio).ceil() as i64; // taps each side
    let n_out = ((samples.len() as f64) / ratio).floor() as usize;
    let mut out = Vec::with_capacity(n_out);
    for n in 0..n_out {
        let centre = n as f64 * ratio;
        let first = (centre.floor() as i64 - half).max(0);
        let last = (centre.floor() as i64 + half).min(samples.len() as i64 - 1);
        let (mut acc, mut norm) = (0.0, 0.0);
        for i in first..=last {
            let x = i as f64 - centre;
            let sinc = if x.abs() < 1e-9 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
            };
            let w = 0.5 + 0.5 * (std::f64::consts::PI * x / (half as f64 + 1.0)).cos();
            acc += f64::from(samples[i as usize]) * sinc * w;
            norm += sinc * w;
        }
        let v = if norm.abs() > 1e-9 { acc / norm } else { 0.0 };
        out.push(v.round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

/// 8 kHz samples in `law`, a byte per sample.
pub fn encode(samples: &[i16], law: Law) -> Vec<u8> {
    match law {
        Law::A => samples.iter().map(|s| alaw(*s)).collect(),
        Law::Mu => samples.iter().map(|s| ulaw(*s)).collect(),
    }
}

/// The sender's side of one RTP stream.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Payload type (8 or 0).
    pub pt: u8,
    /// Our synchronisation source.
    pub ssrc: u32,
    /// Next sequence number.
    pub seq: u16,
    /// Next timestamp (8 kHz units).
    pub ts: u32,
    /// Whether the next packet starts a talkspurt (the marker bit).
    pub marker: bool,
}

impl Stream {
    /// A stream with random starting numbers (RFC 3550 §5.1).
    pub fn new(pt: u8) -> Stream {
        let mut b = [0u8; 10];
        let _ = getrandom::getrandom(&mut b);
        Stream {
            pt,
            ssrc: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            seq: u16::from_le_bytes([b[4], b[5]]),
            ts: u32::from_le_bytes([b[6], b[7], b[8], b[9]]),
            marker: true,
        }
    }

    /// The next packet carrying `payload` (one frame of G.711).
    pub fn packet(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(self.pt | if self.marker { 0x80 } else { 0 });
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(payload.len() as u32);
        p
    }
}

/// An RTP packet's payload type, timestamp and payload; `None` for what is not RTP version 2
/// or is cut short (junk on the port is ignored, never trusted).
pub fn parse(p: &[u8]) -> Option<(u8, u32, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(p[0] & 0x0F);
    let mut at = 12 + 4 * cc;
    if p[0] & 0x10 != 0 {
        let len = usize::from(u16::from_be_bytes([*p.get(at + 2)?, *p.get(at + 3)?]));
        at += 4 + 4 * len;
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        let pad = usize::from(*p.last()?);
        end = end.checked_sub(pad)?;
    }
    let payload = p.get(at..end)?;
    let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    Some((p[1] & 0x7F, ts, payload))
}

/// The key of an RFC 4733 event payload (0–9, `*`, `#`, A–D), if it is one.
pub fn event_key(payload: &[u8]) -> Option<char> {
    let e = *payload.first()?;
    if payload.len() < 4 {
        return None;
    }
    match e {
        0..=9 => char::from_digit(u32::from(e), 10),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + (e - 12))),
        _ => None,
    }
}

/// The key of a SIP INFO body (`application/dtmf-relay`'s `Signal=1`, or `application/dtmf`'s
/// bare key), if it carries one.
pub fn info_key(content_type: &str, body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let ct = content_type.to_ascii_lowercase();
    let raw = if ct.starts_with("application/dtmf-relay") {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if ct.starts_with("application/dtmf") {
        text.trim()
    } else {
        return None;
    };
    let mut chars = raw.chars();
    let c = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        return match raw {
            "10" => Some('*'),
            "11" => Some('#'),
            _ => None,
        };
    }
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_round_trips_within_its_step() {
        for s in (-32768i32..=32767).step_by(97) {
            let s = s as i16;
            let a = alaw_decode(alaw(s));
            let u = ulaw_decode(ulaw(s));
            let tol = |x: i16| (i32::from(x.unsigned_abs()) / 16).max(16);
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= tol(s) * 2,
                "A-law {s} -> {a}"
            );
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= tol(s) * 2,
                "μ-law {s} -> {u}"
            );
        }
        // The codes of silence every G.711 implementation writes.
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(ulaw(0), 0xFF);
    }

    #[test]
    fn resampling_keeps_a_speech_band_tone_and_its_length() {
        let rate = 22_050;
        let tone: Vec<i16> = (0..rate)
            .map(|i| {
                ((i as f64 * 2.0 * std::f64::consts::PI * 1000.0 / rate as f64).sin() * 10_000.0)
                    as i16
            })
            .collect();
        let out = to_8k(&tone, rate as u32);
        assert_eq!(out.len(), 8000);
        let rms = (out[100..7900]
            .iter()
            .map(|s| f64::from(*s).powi(2))
            .sum::<f64>()
            / 7800.0)
            .sqrt();
        assert!((rms - 7071.0).abs() < 500.0, "1 kHz tone lost: rms {rms}");
        // 5 kHz is above the telephone band: filtered out rather than folded to 3 kHz.
        let high: Vec<i16> = (0..rate)
            .map(|i| {
                ((i as f64 * 2.0 * std::f64::consts::PI * 5000.0 / rate as f64).sin() * 10_000.0)
                    as i16
            })
            .collect();
        let out = to_8k(&high, rate as u32);
        let rms = (out[100..7900]
            .iter()
            .map(|s| f64::from(*s).powi(2))
            .sum::<f64>()
            / 7800.0)
            .sqrt();
        assert!(rms < 800.0, "5 kHz folded into the band: rms {rms}");
    }

    #[test]
    fn packets_read_back_and_keys_are_recognised() {
        let mut s = Stream::new(8);
        let p = s.packet(&[0xD5; FRAME]);
        let (pt, ts, payload) = parse(&p).unwrap();
        assert_eq!((pt, payload.len()), (8, FRAME));
        let q = s.packet(&[0xD5; FRAME]);
        assert_eq!(parse(&q).unwrap().1, ts.wrapping_add(FRAME as u32));
        assert_eq!(p[1] & 0x80, 0x80, "the first packet marks the talkspurt");
        assert_eq!(q[1] & 0x80, 0);
        assert_eq!(parse(&[0x40; 20]), None, "not version 2");
        assert_eq!(parse(&p[..8]), None);
        assert_eq!(event_key(&[1, 0x0A, 0, 160]), Some('1'));
        assert_eq!(event_key(&[11, 0x8A, 3, 32]), Some('#'));
        assert_eq!(event_key(&[16, 0, 0, 0]), None);
        assert_eq!(
            info_key("application/dtmf-relay", b"Signal=2\r\nDuration=160\r\n"),
            Some('2')
        );
        assert_eq!(info_key("application/dtmf", b"3"), Some('3'));
        assert_eq!(info_key("text/plain", b"3"), None);
        assert_eq!(info_key("application/dtmf-relay", b"Signal=xyz"), None);
    }
}
