//! The words of a text: a warning's own, several merged into one, rendered from `templates/sms/`.

use serde::Serialize;

use super::*;

/// What a warning asks of people: move now, prepare, or go to your post.
pub(super) fn action(t: &Targets) -> &'static str {
    if t.send == MessageKind::Cancel {
        return "lift";
    }
    match (t.evacuate > 0, t.tier) {
        (true, Tier::Orange | Tier::Red) => "now",
        (true, Tier::Yellow) => "prepare",
        _ => "post",
    }
}

/// The words of one warning, as the templates take them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Words {
    /// Hazard (typhoon, flash_flood, …).
    pub hazard: String,
    /// blue … red.
    pub tier: String,
    /// 蓝色 … 红色.
    pub tier_zh: String,
    /// Alert / Update / Cancel.
    pub send: String,
    /// now / prepare / post / lift.
    pub move_: String,
    /// The first few places.
    pub places: String,
    /// "等N处" when there are more.
    pub more_places: String,
    /// Shelters to go to.
    pub shelters: String,
    /// Every place's name (for merged texts, which name the first few of a group).
    #[serde(default)]
    pub names: Vec<String>,
    /// A relayed upstream warning's hazard, named in the text's language ("暴雨").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relayed: Option<String>,
}

impl Words {
    /// The hazard's name for the texts (a relayed warning's by its upstream event).
    pub fn event(&self, lang: &str) -> anyhow::Result<String> {
        crate::templates::event_name_of(&self.hazard, self.relayed.as_deref(), lang)
    }
}

/// The words of one warning for the text templates (SMS and broadcast alike).
pub fn words(t: &Targets, lang: &str) -> Words {
    let names: Vec<&str> = t.places.iter().map(|p| p.name.as_str()).collect();
    let shown = names.iter().take(3).copied().collect::<Vec<_>>();
    let sep = if lang == "en" { ", " } else { "、" };
    let more = if names.len() > 3 {
        if lang == "en" {
            format!(" and {} more", names.len() - 3)
        } else {
            format!("等{}处", names.len())
        }
    } else {
        String::new()
    };
    Words {
        hazard: t.hazard.as_str().to_string(),
        tier: t.tier.as_str().to_string(),
        tier_zh: t.tier.zh().to_string(),
        send: t.send.as_str().to_string(),
        move_: action(t).to_string(),
        places: shown.join(sep),
        more_places: more,
        names: names.iter().map(|n| n.to_string()).collect(),
        shelters: t
            .shelters
            .iter()
            .take(2)
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(sep),
        relayed: t.relayed.as_ref().and_then(|r| r.name(lang)),
    }
}

pub(super) fn lang_of(p: &Policy) -> &'static str {
    crate::templates::lang(&p.lang)
}

/// Render one warning's SMS for one person.
pub fn render_one(w: &Words, p: &Policy, link: Option<&str>) -> anyhow::Result<String> {
    let lang = lang_of(p);
    let text = crate::templates::env()?
        .get_template(&format!("sms/warning.{lang}"))?
        .render(minijinja::context! {
            office => &p.office, exercise => p.exercise, send => &w.send, hazard => &w.hazard,
            event => w.event(lang)?, tier => &w.tier, tier_zh => &w.tier_zh,
            move => &w.move_, places => &w.places, more_places => &w.more_places,
            shelters => &w.shelters, link => link,
        })?;
    Ok(text.trim().to_string())
}

/// Render several warnings for one person as one message, highest tier first.
pub fn render_merged(items: &[Words], p: &Policy, link: Option<&str>) -> anyhow::Result<String> {
    let lang = lang_of(p);
    let mut sorted: Vec<&Words> = items.iter().collect();
    sorted.sort_by_key(|w| {
        (
            std::cmp::Reverse(Tier::parse(&w.tier).map_or(0, |t| t as u8)),
            w.send == "Cancel",
        )
    });
    // One line per (hazard, tier, kind, action): a county officer warned for 25 zones by one
    // storm reads one line naming the first few, not 25 (and pays for 2 segments, not 12).
    let mut groups: Vec<(&Words, Vec<&str>)> = Vec::new();
    for w in sorted {
        // An Alert and an Update at the same tier say the same thing; a lift does not.
        let same = |g: &&mut (&Words, Vec<&str>)| {
            g.0.hazard == w.hazard
                && g.0.tier == w.tier
                && (g.0.send == "Cancel") == (w.send == "Cancel")
                && g.0.move_ == w.move_
        };
        let names: Vec<&str> = if w.names.is_empty() {
            vec![w.places.as_str()]
        } else {
            w.names.iter().map(String::as_str).collect()
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.1.extend(names),
            None => groups.push((w, names)),
        }
    }
    let sep = if lang == "en" { ", " } else { "、" };
    let ctx: Vec<minijinja::Value> = groups
        .iter()
        .map(|(w, names)| {
            let mut shown: Vec<&str> = Vec::new();
            for n in names {
                if !shown.contains(n) && shown.len() < 3 {
                    shown.push(n);
                }
            }
            let mut all = names.clone();
            all.sort_unstable();
            all.dedup();
            Ok(minijinja::context! {
                event => w.event(lang)?, tier => &w.tier, tier_zh => &w.tier_zh,
                send => &w.send, move => &w.move_, places => shown.join(sep),
                count => all.len(), shown => shown.len(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let text = crate::templates::env()?
        .get_template(&format!("sms/merged.{lang}"))?
        .render(minijinja::context! {
            office => &p.office, exercise => p.exercise, groups => ctx, total => items.len(),
            link => link,
        })?;
    Ok(text.trim().to_string())
}
