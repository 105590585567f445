//! The broadcast script of a warning: what the loudspeaker says, from
//! `templates/broadcast/warning.{lang}.j2` (short sentences, the tier and the action said
//! twice, the shelter named).

use crate::correlate::Targets;
use crate::dispatch::outbox::{Policy, words};

/// The script for one warning version, in the policy's language.
pub fn script(t: &Targets, policy: &Policy) -> anyhow::Result<String> {
    let lang = crate::templates::lang(&policy.lang);
    let w = words(t, lang);
    let text = crate::templates::env()?
        .get_template(&format!("broadcast/warning.{lang}"))?
        .render(minijinja::context! {
            office => &policy.office, exercise => policy.exercise, send => &w.send,
            event => w.event(lang)?, tier => &w.tier, tier_zh => &w.tier_zh,
            move => &w.move_, places => &w.places, more_places => &w.more_places,
            shelters => &w.shelters,
        })?;
    Ok(text.trim().to_string())
}

/// The broadcast's title (a platform's `MsgTitle`), from `templates/broadcast/title.{lang}.j2`.
pub fn title(t: &Targets, policy: &Policy) -> anyhow::Result<String> {
    let lang = crate::templates::lang(&policy.lang);
    let w = words(t, lang);
    let text = crate::templates::env()?
        .get_template(&format!("broadcast/title.{lang}"))?
        .render(minijinja::context! {
            office => &policy.office, exercise => policy.exercise, send => &w.send,
            event => w.event(lang)?, tier => &w.tier, tier_zh => &w.tier_zh,
        })?;
    Ok(text.trim().to_string())
}
