//! The broadcast script of a warning: what the loudspeaker says, from
//! `templates/broadcast/warning.{lang}.j2` (short sentences, the tier and the action said
//! twice, the shelter named).

use crate::correlate::warning::Targets;
use crate::dispatch::outbox::{Policy, event_name, words};

const TEMPLATES: &[(&str, &str)] = &[
    (
        "warning.zh-CN",
        include_str!("../../../templates/broadcast/warning.zh-CN.j2"),
    ),
    (
        "warning.en",
        include_str!("../../../templates/broadcast/warning.en.j2"),
    ),
];

fn env() -> anyhow::Result<&'static minijinja::Environment<'static>> {
    static ENV: std::sync::OnceLock<Result<minijinja::Environment<'static>, String>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for (name, src) in TEMPLATES {
            env.add_template(name, src).map_err(|e| format!("{e:#}"))?;
        }
        Ok(env)
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("broadcast templates: {e}"))
}

/// The script for one warning version, in the policy's language.
pub fn script(t: &Targets, policy: &Policy) -> anyhow::Result<String> {
    let lang = if policy.lang == "en" { "en" } else { "zh-CN" };
    let w = words(t, lang);
    let text = env()?
        .get_template(&format!("warning.{lang}"))?
        .render(minijinja::context! {
            office => &policy.office, exercise => policy.exercise, send => &w.send,
            event => event_name(&w.hazard, lang)?, tier => &w.tier, tier_zh => &w.tier_zh,
            move => &w.move_, places => &w.places, more_places => &w.more_places,
            shelters => &w.shelters,
        })?;
    Ok(text.trim().to_string())
}
