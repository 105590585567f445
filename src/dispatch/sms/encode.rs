//! Message text → SMS segments: the GSM 7-bit default alphabet when every character has a
//! place in it (English and digits), UCS-2 otherwise (Chinese), split into concatenated parts
//! with a user data header that phones reassemble.
//!
//! Limits (3GPP TS 23.040): one message holds 160 septets or 70 UCS-2 units; a part of a
//! concatenated message loses 6 octets to the header (`05 00 03 ref total seq`), leaving 153
//! septets or 67 units. An extension character (`€ [ ] { } ~ ^ \ |`) costs two septets and is
//! never split from its escape; a character outside the Basic Multilingual Plane takes two
//! UCS-2 units and is never split between parts. The count is known before anything is sent,
//! so the office sees the cost of a template and the outbox stores it.

/// GSM 03.38 default alphabet, by septet value.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', 'Δ', '_',
    'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', ' ', '!', '"', '#',
    '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', '0', '1', '2', '3', '4', '5', '6',
    '7', '8', '9', ':', ';', '<', '=', '>', '?', '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I',
    'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö',
    'Ñ', 'Ü', '§', '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The extension table: character → septet after the escape (0x1B).
const EXTENSION: [(char, u8); 10] = [
    ('\u{c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// The septets of one character, if the default alphabet has it.
fn gsm(c: char) -> Option<([u8; 2], usize)> {
    if c != '\u{1b}'
        && let Some(i) = BASIC.iter().position(|&b| b == c)
    {
        return Some(([i as u8, 0], 1));
    }
    EXTENSION
        .iter()
        .find(|(e, _)| *e == c)
        .map(|(_, s)| ([0x1B, *s], 2))
}

/// The alphabet a message goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Coding {
    /// GSM 7-bit default alphabet, one septet per octet (data_coding 0).
    Gsm7,
    /// UCS-2 / UTF-16BE (data_coding 8).
    Ucs2,
}

impl Coding {
    /// The data_coding octet.
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => 0,
            Coding::Ucs2 => 8,
        }
    }
}

/// A message ready for submit_sm: its parts' short_message octets (each with its header when
/// there are several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Alphabet.
    pub coding: Coding,
    /// One entry per part.
    pub parts: Vec<Vec<u8>>,
}

impl Encoded {
    /// Whether the parts carry a user data header (esm_class UDHI).
    pub fn concatenated(&self) -> bool {
        self.parts.len() > 1
    }
}

/// Units per single message and per part, for an alphabet.
fn limits(c: Coding) -> (usize, usize) {
    match c {
        Coding::Gsm7 => (160, 153),
        Coding::Ucs2 => (70, 67),
    }
}

/// Each character's units, in order (septets for GSM, UTF-16 units for UCS-2).
fn units(text: &str) -> (Coding, Vec<Vec<u8>>) {
    let gsm_units: Option<Vec<Vec<u8>>> = text
        .chars()
        .map(|c| gsm(c).map(|(b, n)| b[..n].to_vec()))
        .collect();
    match gsm_units {
        Some(u) => (Coding::Gsm7, u),
        None => (
            Coding::Ucs2,
            text.chars()
                .map(|c| {
                    let mut buf = [0u16; 2];
                    c.encode_utf16(&mut buf)
                        .iter()
                        .flat_map(|u| u.to_be_bytes())
                        .collect()
                })
                .collect(),
        ),
    }
}

/// Group characters into parts without splitting any character.
fn pack(coding: Coding, chars: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let unit = if coding == Coding::Ucs2 { 2 } else { 1 };
    let total: usize = chars.iter().map(|c| c.len() / unit).sum();
    let (single, part) = limits(coding);
    if total <= single {
        return vec![chars.concat()];
    }
    let mut parts: Vec<Vec<u8>> = vec![Vec::new()];
    let mut used = 0;
    for c in chars {
        let n = c.len() / unit;
        if used + n > part {
            parts.push(Vec::new());
            used = 0;
        }
        used += n;
        if let Some(p) = parts.last_mut() {
            p.extend_from_slice(&c);
        }
    }
    parts
}

/// The alphabet and number of parts a text needs: what sending it will cost.
pub fn segments(text: &str) -> (Coding, usize) {
    let (coding, chars) = units(text);
    let n = pack(coding, chars).len();
    (coding, n)
}

/// Encode a text; `reference` ties the parts of one concatenated message together (it must
/// differ between messages to the same phone sent close together).
///
/// A message needs at most 255 parts; longer texts are cut there (templates are far shorter;
/// `segments` shows the count before sending).
pub fn encode(text: &str, reference: u8) -> Encoded {
    let (coding, chars) = units(text);
    let mut parts = pack(coding, chars);
    parts.truncate(255);
    if parts.len() > 1 {
        let total = parts.len() as u8;
        for (i, p) in parts.iter_mut().enumerate() {
            let mut with = vec![0x05, 0x00, 0x03, reference, total, i as u8 + 1];
            with.append(p);
            *p = with;
        }
    }
    Encoded { coding, parts }
}

/// Decode a short message from a phone (a reply), with or without a header.
pub fn decode(data_coding: u8, udhi: bool, octets: &[u8]) -> String {
    let body = if udhi && !octets.is_empty() {
        let skip = usize::from(octets[0]) + 1;
        octets.get(skip..).unwrap_or_default()
    } else {
        octets
    };
    match data_coding {
        8 => {
            let u: Vec<u16> = body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&u)
        }
        // Default alphabet, one septet per octet (values above 127 are not septets: shown as
        // Latin-1, which is what SMSCs that mean "ISO-8859-1" by 0 send).
        0 => {
            let mut out = String::new();
            let mut esc = false;
            for &b in body {
                if esc {
                    esc = false;
                    if let Some((c, _)) = EXTENSION.iter().find(|(_, s)| *s == b) {
                        out.push(*c);
                    }
                } else if b == 0x1B {
                    esc = true;
                } else if let Some(c) = BASIC.get(usize::from(b)) {
                    out.push(*c);
                } else {
                    out.push(char::from(b));
                }
            }
            out
        }
        // 3 Latin-1.
        3 => body.iter().map(|&b| char::from(b)).collect(),
        // Anything else: best effort as UTF-8 (some SMSCs pass it through).
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_goes_in_the_default_alphabet() {
        let e = encode("Red flood warning: move now to Dongshan school.", 1);
        assert_eq!(e.coding, Coding::Gsm7);
        assert_eq!(e.parts.len(), 1);
        assert_eq!(e.parts[0][0], b'R');
        // @ is septet 0, € costs two.
        assert_eq!(encode("@€", 1).parts[0], vec![0x00, 0x1B, 0x65]);
        assert_eq!(segments(&"a".repeat(160)), (Coding::Gsm7, 1));
        assert_eq!(segments(&"a".repeat(161)), (Coding::Gsm7, 2));
        assert_eq!(segments(&"a".repeat(306)), (Coding::Gsm7, 2));
        assert_eq!(segments(&"a".repeat(307)), (Coding::Gsm7, 3));
    }

    #[test]
    fn chinese_goes_in_ucs2_and_splits_at_67() {
        let t = "【东溪县防汛办】红色山洪预警".to_string();
        let e = encode(&t, 9);
        assert_eq!(e.coding, Coding::Ucs2);
        assert_eq!(e.parts.len(), 1);
        assert_eq!(e.parts[0].len(), t.chars().count() * 2);
        assert_eq!(&e.parts[0][..2], &[0x30, 0x10]);
        assert_eq!(segments(&"雨".repeat(70)), (Coding::Ucs2, 1));
        assert_eq!(segments(&"雨".repeat(71)), (Coding::Ucs2, 2));
        let long = "立即转移".repeat(40); // 160 characters
        let e = encode(&long, 0xAB);
        assert_eq!(e.parts.len(), 3);
        for (i, p) in e.parts.iter().enumerate() {
            assert_eq!(&p[..6], &[5, 0, 3, 0xAB, 3, i as u8 + 1]);
            assert!(p.len() - 6 <= 134);
        }
        // Reassembled, the parts give the text back.
        let back: String = e.parts.iter().map(|p| decode(8, true, p)).collect();
        assert_eq!(back, long);
        // One Chinese character makes the whole message UCS-2.
        assert_eq!(segments("Move now 转移").0, Coding::Ucs2);
    }

    #[test]
    fn nothing_is_split_inside_a_character() {
        // An emoji (two UTF-16 units) straddling the 67-unit boundary moves whole.
        let t = format!("{}😀{}", "水".repeat(66), "水".repeat(10));
        let e = encode(&t, 1);
        assert_eq!(e.parts.len(), 2);
        assert_eq!(e.parts[0].len() - 6, 66 * 2);
        let back: String = e.parts.iter().map(|p| decode(8, true, p)).collect();
        assert_eq!(back, t);
        // An escape and its extension septet stay together at the 153 boundary.
        let t = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let e = encode(&t, 1);
        assert_eq!(e.parts[0].len() - 6, 152);
        assert_eq!(&e.parts[1][6..8], &[0x1B, 0x65]);
    }

    #[test]
    fn replies_decode_in_every_coding() {
        let u: Vec<u8> = "收到"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(decode(8, false, &u), "收到");
        assert_eq!(decode(0, false, b"1"), "1");
        assert_eq!(decode(0, false, &[0x1B, 0x65]), "€");
        assert_eq!(decode(3, false, &[0xE9]), "é");
        // A truncated UCS-2 body does not panic.
        assert_eq!(decode(8, false, &[0x4E]).chars().count(), 1);
    }
}
