//! Why a place or a warning stands where it does, kept as data — a code and the measured
//! values (`{"why": "rain", "place": "溪口村", "mm": 58.0, "hours": 3, "limit": 40, …}`) — and
//! worded only when shown, by `templates/cap/why.{lang}`: a Chinese description says
//! "3小时雨量58.0毫米（溪口雨量站）≥ 40毫米", the English one "58.0 mm in 3 h at gauge 溪口
//! (≥ 40 mm)". The rules state the rule and the figure; no words in code.
//!
//! Stored reasons are JSON text (the decision log, a lineage's state); one from before this
//! shape (free text) is shown as it was.

use serde_json::{Map, Value};

/// A reason: `code` and its values, as stored.
pub fn said(code: &str, args: Value) -> String {
    let mut m = match args {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("why".into(), Value::from(code));
    Value::Object(m).to_string()
}

/// A stored reason read back: the object, or `{"why": "text", "text": …}` for free text.
pub fn read(s: &str) -> Value {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) if v.get("why").is_some() => v,
        _ => serde_json::json!({"why": "text", "text": s}),
    }
}

/// A stored reason in words, in `lang` (`zh-CN` or `en`).
pub fn words(s: &str, lang: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let lang = crate::templates::lang(lang);
    let w = read(s);
    crate::templates::env()
        .and_then(|env| {
            Ok(env.get_template(&format!("cap/why.{lang}"))?.render(
                minijinja::context! { w => minijinja::Value::from(minijinja::value::Serde(&w)) },
            )?)
        })
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|e: anyhow::Error| {
            tracing::warn!("a reason could not be worded ({e:#}): {s}");
            s.to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rain_reason_states_the_rule_and_the_figure_in_each_language() {
        let r = said(
            "rain",
            serde_json::json!({"place": "溪口村溪山洪危险区", "action": "move", "mm": 58.0,
                "hours": 3.0, "gauge": "溪口", "limit": 40.0, "soil": "any"}),
        );
        let zh = words(&r, "zh-CN");
        assert!(
            zh.contains("3小时")
                && zh.contains("58.0毫米")
                && zh.contains("≥ 40毫米")
                && zh.contains("溪口"),
            "{zh}"
        );
        assert!(zh.contains("立即转移"), "{zh}");
        assert!(
            !zh.chars().any(|c| c.is_ascii_alphabetic()),
            "no English in Chinese: {zh}"
        );
        let en = words(&r, "en");
        assert!(
            en.contains("58.0 mm in 3 h") && en.contains("40 mm"),
            "{en}"
        );
        assert_eq!(
            words("an old free-text reason", "zh-CN"),
            "an old free-text reason"
        );
    }
}
