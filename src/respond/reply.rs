//! The SMS reply language: what a village lead can answer from any phone when data networks
//! are down. It is printed in the warning text, short enough to type on a keypad:
//!
//! | reply | means |
//! |---|---|
//! | `1`, `收到` | acknowledged (收到) |
//! | `2`, `到岗` | at my post (已到岗) |
//! | `3 35`, `已转移35人`, `转移三十五人` | 35 people moved **so far** (a running total: sent twice, it still says 35) |
//! | `3 35 溪口小学` | …and where they are |
//! | `4`, `需支援`, `4 桥断了` | need help: straight to the town and county duty officers |
//! | `5 30`, `已返回30人` | after the lift: 30 people back home **so far** (解除转移; a running total) |
//! | `5 30 溪口村`, `3 35 溪口村 溪口小学` | …for the place named (one holding several names it first) |
//!
//! Full-width digits and spaces (what a Chinese keypad types), surrounding punctuation and
//! a trailing 人 are accepted. Anything else is `Unknown` and kept, word for word, for a human.

/// What a reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 收到: the warning reached me.
    Ack,
    /// 到岗: I am at my post.
    AtPost,
    /// People moved so far, and where to (when said).
    Moved {
        /// How many, in all so far.
        people: u32,
        /// The shelter or place named.
        shelter: Option<String>,
    },
    /// 需支援: need help, with whatever else was said.
    Help(Option<String>),
    /// After the lift, people back home so far (解除转移).
    Returned {
        /// How many, in all so far.
        people: u32,
        /// The place named after it (a lead or officer holding several names one).
        place: Option<String>,
    },
    /// Not understood.
    Unknown,
}

/// Full-width digits to ASCII, the ideographic space to a space (what a Chinese keypad types);
/// everything else is kept as the person wrote it.
fn narrow(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect()
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '。' | '.' | '!' | '！' | '，' | ',' | '、' | '~' | '～' | '：' | ':'
            )
    })
}

/// A number in Arabic digits or simple Chinese numerals (up to 9999: 三十五, 一百零二, 两百).
pub fn number(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().filter(|n| *n <= 100_000);
    }
    let digit = |c: char| {
        Some(match c {
            '零' | '〇' => 0,
            '一' => 1,
            '二' | '两' => 2,
            '三' => 3,
            '四' => 4,
            '五' => 5,
            '六' => 6,
            '七' => 7,
            '八' => 8,
            '九' => 9,
            _ => return None,
        })
    };
    let mut total = 0u32;
    let mut cur: Option<u32> = None;
    let mut seen = false;
    // Units only go down (千 then 百 then 十): "九千九千…" or "十十" is not a number, and the
    // total can never overflow, whatever length a form or a message sends.
    let mut last_unit = u32::MAX;
    for c in s.chars() {
        let unit = match c {
            '十' => 10,
            '百' => 100,
            '千' => 1000,
            _ => {
                let d = digit(c)?;
                if cur.is_some() && d != 0 {
                    return None; // two digits in a row: not a Chinese numeral
                }
                cur = if d == 0 { None } else { Some(d) };
                seen = true;
                continue;
            }
        };
        if unit >= last_unit {
            return None;
        }
        last_unit = unit;
        // 十 alone at the start means ten.
        total += cur.unwrap_or(1) * unit;
        cur = None;
        seen = true;
    }
    seen.then(|| total + cur.unwrap_or(0))
}

/// Split "35人 溪口小学" into (35, Some("溪口小学")); the number may be Chinese.
fn count_and_place(rest: &str) -> Option<(u32, Option<String>)> {
    let rest = trim(rest);
    let end = rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || "零〇一二两三四五六七八九十百千".contains(*c)))
        .map_or(rest.len(), |(i, _)| i);
    let n = number(&rest[..end])?;
    let after = rest[end..].trim_start_matches('人');
    let place = trim(after.trim_start_matches(['到', '至', '去', '在']));
    Some((n, (!place.is_empty()).then(|| place.to_string())))
}

/// Read a reply.
pub fn parse(text: &str) -> Reply {
    let s = narrow(text);
    let s = trim(&s);
    if s.is_empty() {
        return Reply::Unknown;
    }
    // The numbered codes: the code, then a separator, then what goes with it.
    let (head, rest) =
        match s.find(|c: char| c.is_whitespace() || matches!(c, ',' | '，' | '#' | '*' | '、')) {
            Some(i) => (&s[..i], trim(&s[i..])),
            None => (s, ""),
        };
    match head {
        "1" if rest.is_empty() => return Reply::Ack,
        "2" if rest.is_empty() => return Reply::AtPost,
        "3" => {
            return match count_and_place(rest) {
                Some((people, shelter)) => Reply::Moved { people, shelter },
                None => Reply::Unknown,
            };
        }
        "4" => return Reply::Help((!rest.is_empty()).then(|| rest.to_string())),
        "5" => {
            return match count_and_place(rest) {
                Some((people, place)) => Reply::Returned { people, place },
                _ => Reply::Unknown,
            };
        }
        _ => {}
    }
    // The words.
    for w in ["已收到", "收到", "收"] {
        if s == w {
            return Reply::Ack;
        }
    }
    for w in ["已到岗", "到岗", "在岗"] {
        if s == w {
            return Reply::AtPost;
        }
    }
    for w in ["需要支援", "需支援", "求助", "求援"] {
        if let Some(r) = s.strip_prefix(w) {
            let r = trim(r);
            return Reply::Help((!r.is_empty()).then(|| r.to_string()));
        }
    }
    for w in ["已返回", "返回了", "已回家", "返回", "回家"] {
        if let Some(r) = s.strip_prefix(w)
            && let Some((people, place)) = count_and_place(r)
        {
            return Reply::Returned { people, place };
        }
    }
    for w in ["已转移", "转移了", "转移"] {
        if let Some(r) = s.strip_prefix(w)
            && let Some((people, shelter)) = count_and_place(r)
        {
            return Reply::Moved { people, shelter };
        }
    }
    Reply::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(n: u32, at: Option<&str>) -> Reply {
        Reply::Moved {
            people: n,
            shelter: at.map(String::from),
        }
    }

    #[test]
    fn the_printed_codes_and_their_words() {
        for (text, want) in [
            ("1", Reply::Ack),
            (" 1。", Reply::Ack),
            ("１", Reply::Ack),
            ("收到", Reply::Ack),
            ("收到！", Reply::Ack),
            ("2", Reply::AtPost),
            ("已到岗", Reply::AtPost),
            ("3 35", moved(35, None)),
            (
                "5 30",
                Reply::Returned {
                    people: 30,
                    place: None,
                },
            ),
            (
                "已返回30人",
                Reply::Returned {
                    people: 30,
                    place: None,
                },
            ),
            (
                "返回三十人",
                Reply::Returned {
                    people: 30,
                    place: None,
                },
            ),
            ("5", Reply::Unknown),
            // After the number, the place the return is for (one holding several names it).
            (
                "5 30 溪口村",
                Reply::Returned {
                    people: 30,
                    place: Some("溪口村".into()),
                },
            ),
            ("3,35", moved(35, None)),
            ("３　３５", moved(35, None)),
            ("3 35人", moved(35, None)),
            ("3 35 溪口镇中心小学", moved(35, Some("溪口镇中心小学"))),
            ("3 35人到溪口镇中心小学", moved(35, Some("溪口镇中心小学"))),
            ("已转移35人", moved(35, None)),
            ("已转移三十五人", moved(35, None)),
            ("转移了一百零二人到村委会", moved(102, Some("村委会"))),
            ("4", Reply::Help(None)),
            (
                "4 桥断了，车过不去",
                Reply::Help(Some("桥断了，车过不去".into())),
            ),
            ("需支援", Reply::Help(None)),
            (
                "需要支援：老人走不动",
                Reply::Help(Some("老人走不动".into())),
            ),
        ] {
            assert_eq!(parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn what_is_not_understood_is_unknown_not_guessed() {
        for text in [
            "", "好的", "11", "12", "3", "3 很多", "335", "1 2", "转移", "5", "谢谢",
        ] {
            assert_eq!(parse(text), Reply::Unknown, "{text:?}");
        }
    }

    #[test]
    fn chinese_numerals() {
        for (s, n) in [
            ("十", 10),
            ("十二", 12),
            ("二十", 20),
            ("三十五", 35),
            ("两百", 200),
            ("一百零二", 102),
            ("一千二百三十四", 1234),
            ("0", 0),
            ("007", 7),
        ] {
            assert_eq!(number(s), Some(n), "{s}");
        }
        assert_eq!(number("三五"), None);
        // Units out of order, or repeated without end (a hostile form field): no number, no
        // overflow.
        assert_eq!(number("十十"), None);
        assert_eq!(number("百千"), None);
        assert_eq!(number(&"九千".repeat(100_000)), None);
        assert_eq!(number("abc"), None);
        assert_eq!(number("999999"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_count_in_any_printed_form_is_read_back(n in 0u32..=100_000, form in 0usize..4) {
            let text = match form {
                0 => format!("3 {n}"),
                1 => format!("已转移{n}人"),
                2 => format!("3，{n}人"),
                _ => format!("３\u{3000}{}", n.to_string().chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap()).collect::<String>()),
            };
            proptest::prop_assert_eq!(parse(&text), Reply::Moved { people: n, shelter: None });
        }

        #[test]
        fn nothing_makes_it_panic(text in "\\PC{0,40}") {
            let _ = parse(&text);
        }
    }
}
