//! A decision becomes CAP 1.2 messages and one typed [`Targets`] event for dispatch.
//!
//! Words come from `templates/cap/*.j2` (Chinese `<info>` first, English alongside); times
//! carry the office's offset (+08:00). Google shows one contiguous area per alert, so a
//! lineage whose places fall apart into separate clusters is published as one message per
//! cluster (`…-p1`, `…-p2`); each version references every message of the lineage before
//! it, and a Cancel (which Google lets go without `<info>`) names no area.

use std::collections::{BTreeMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::assess::PlaceKind;
use super::lifecycle::{Change, Decision, Lineage, MessageKind};
use super::rules::Rules;
use super::tier::{Hazard, Tier};
use crate::cap::model::{
    Alert, Area, CapDateTime, Category, Certainty, Circle, Info, MsgType, Point, Reference,
    ResponseType, Scope, Status, Urgency, ValuePair,
};
use crate::registry::Registry;
use crate::registry::geo::km_between;

/// Radius of the circle standing for a village or site without an outline, km.
pub const PLACE_RADIUS_KM: f64 = 2.0;

/// Places whose circles come closer than this (km) are published as one area: one circle
/// around them all, with each village named by its geocode. Farther apart, they are separate
/// messages (Google shows one contiguous area per alert).
pub const LINK_KM: f64 = 8.0;

/// One circle enclosing some circles (lon, lat, radius km): centred on their mean, reaching
/// the farthest edge.
fn enclosing(circles: &[(f64, f64, f64)]) -> Option<Circle> {
    if circles.is_empty() {
        return None;
    }
    let n = circles.len() as f64;
    let lon = circles.iter().map(|c| c.0).sum::<f64>() / n;
    let lat = circles.iter().map(|c| c.1).sum::<f64>() / n;
    let r = circles
        .iter()
        .map(|c| km_between(lon, lat, c.0, c.1) + c.2)
        .fold(0.0, f64::max);
    Some(Circle {
        center: Point {
            lat: round6(lat),
            lon: round6(lon),
        },
        radius_km: (r * 10.0).ceil() / 10.0,
    })
}

/// The office-wide settings a warning needs.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// CAP `<sender>`.
    pub sender: String,
    /// 14-digit national sender code, the identifier prefix.
    pub sender_code: String,
    /// Office name, Chinese.
    pub name: String,
    /// Office name, English.
    pub name_en: String,
    /// Time zone for `sent` and the words.
    pub tz: jiff::tz::TimeZone,
    /// `Actual`, or `Exercise` for drills and replays.
    pub status: Status,
}

impl Issuer {
    /// Whether this office may issue for the registry's counties. One county: the sender
    /// code's area (its first six digits) must be the county's code and the office's name
    /// must name the county; a registry for another county with the default (fixture)
    /// configuration would otherwise send that county's warnings under 东溟县's name and
    /// code. Several (a city's or a province's office): every county must lie in the sender
    /// code's area (`331000`, a city: codes `3310…`; `330000`, a province: `33…`). An empty
    /// registry passes.
    pub fn check_county(&self, reg: &crate::registry::Registry) -> Result<(), String> {
        let counties: Vec<&crate::registry::model::Unit> = reg.data.counties().collect();
        let area = self.sender_code.get(..6).unwrap_or("");
        match counties.as_slice() {
            [] => Ok(()),
            [county] if area != county.code || !self.name.contains(county.name.trim()) => {
                Err(format!(
                    "the configuration's [office] is {} (sender code {}, area {area}) but the \
                     registry is county {} {}: set office.name, office.name_en, office.cap_sender \
                     and office.sender_code for the county the registry describes (docs/deploy.md)",
                    self.name, self.sender_code, county.code, county.name
                ))
            }
            [_] => Ok(()),
            several => {
                // The area an administrative code names: a province's ends in 0000, a city's
                // in 00.
                let within = if area.len() < 6 {
                    area
                } else if area.ends_with("0000") {
                    &area[..2]
                } else if area.ends_with("00") {
                    &area[..4]
                } else {
                    area
                };
                match several
                    .iter()
                    .find(|c| within.is_empty() || !c.code.starts_with(within))
                {
                    Some(outside) => Err(format!(
                        "the configuration's [office] is {} (sender code {}, area {area}) but the \
                         registry's county {} {} is not in that area: an office over several \
                         counties issues under its city's or province's code (docs/deploy.md)",
                        self.name, self.sender_code, outside.code, outside.name
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

/// One CAP message as issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issued {
    /// CAP identifier.
    pub identifier: String,
    /// `sender,identifier,sent` for later references.
    pub reference: String,
    /// When.
    pub sent: Timestamp,
    /// CAP `expires` of its infos.
    pub expires: Option<Timestamp>,
    /// Alert / Update / Cancel.
    pub msg_type: String,
    /// The XML.
    pub xml: String,
}

/// A person to call for a warning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// Registry id.
    pub person: String,
    /// Name.
    pub name: String,
    /// Mobile number.
    pub mobile: String,
    /// Level of the grid (county, town, village, group, site).
    pub level: String,
    /// Their duty for this target.
    pub role: String,
    /// The village or site they answer for.
    pub target: String,
    /// Their A/B deputy, if any.
    pub deputy: Option<String>,
}

/// A place in the targets, with what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetPlace {
    /// Village or site.
    pub kind: PlaceKind,
    /// Code or id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its own tier.
    pub tier: Tier,
    /// People to move from it.
    pub evacuate: u32,
}

/// A shelter to open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetShelter {
    /// Registry id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Capacity.
    pub capacity: u32,
}

/// Everything dispatch needs for one warning version, as one typed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// `hazard:area`.
    pub lineage: String,
    /// Version (1 = the Alert).
    pub version: u32,
    /// Hazard.
    pub hazard: Hazard,
    /// Tier in force (for a Cancel: the tier lifted).
    pub tier: Tier,
    /// Alert / Update / Cancel.
    pub send: MessageKind,
    /// Whether it raises the danger for anyone (sent first, never held back).
    pub raises: bool,
    /// Officials only.
    pub restricted: bool,
    /// CAP identifiers of this version's messages.
    pub identifiers: Vec<String>,
    /// Villages and sites.
    pub places: Vec<TargetPlace>,
    /// People to move, in all.
    pub evacuate: u32,
    /// Responsible persons to call, village/site level first, then up the ladder.
    pub contacts: Vec<Contact>,
    /// Broadcast terminals to sound.
    pub terminals: Vec<String>,
    /// Shelters to open.
    pub shelters: Vec<TargetShelter>,
    /// Places the registry does not know or that have nobody responsible (said, not hidden).
    pub gaps: Vec<String>,
    /// For a relayed upstream warning, the event it is about: the texts name that hazard
    /// ("暴雨红色预警"), not only "a warning".
    #[serde(default)]
    pub relayed: Option<RelayedEvent>,
}

/// The upstream event a relayed warning is about, as the upstream alert gave it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RelayedEvent {
    /// Its `event` text.
    pub event: String,
    /// The national event-type code it carried, if any.
    pub code: Option<String>,
}

impl RelayedEvent {
    /// The hazard's name in `lang` (see [`crate::cap::cn::hazard_name`]).
    pub fn name(&self, lang: &str) -> Option<String> {
        crate::cap::cn::hazard_name(&self.event, self.code.as_deref(), lang)
    }
}

fn place_name(reg: &Registry, kind: PlaceKind, id: &str) -> Option<String> {
    match kind {
        PlaceKind::Village => reg.village(id).map(|v| v.name.clone()),
        PlaceKind::Site => reg.site(id).map(|s| s.name.clone()),
        PlaceKind::Unit => reg.unit(id).map(|u| u.name.clone()),
    }
}

/// Where a place is: a point and a radius.
fn place_circle(reg: &Registry, kind: PlaceKind, id: &str) -> Option<(f64, f64, f64)> {
    match kind {
        PlaceKind::Village => reg
            .village(id)
            .map(|v| (v.point.lon, v.point.lat, PLACE_RADIUS_KM)),
        PlaceKind::Site => reg
            .site_point(reg.site(id)?)
            .map(|(lon, lat)| (lon, lat, PLACE_RADIUS_KM)),
        PlaceKind::Unit => None,
    }
}

/// Split places into clusters whose circles chain together (Google: one contiguous area per
/// alert). Returns lists of place ids.
pub fn clusters(reg: &Registry, l: &Lineage) -> Vec<Vec<String>> {
    let located: Vec<(String, (f64, f64, f64))> = l
        .places
        .iter()
        .filter_map(|(id, h)| place_circle(reg, h.kind, id).map(|c| (id.clone(), c)))
        .collect();
    let n = located.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (located[i].1, located[j].1);
            // Places closer than the linking distance belong to one area.
            if km_between(a.0, a.1, b.0, b.1) < LINK_KM + a.2 + b.2 {
                let (x, y) = (find(&mut parent, i), find(&mut parent, j));
                if x != y {
                    parent[x] = y;
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, (id, _)) in located.iter().enumerate() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(id.clone());
    }
    let mut out: Vec<Vec<String>> = groups.into_values().collect();
    // Largest (then highest-tier) cluster first, for stable part numbers.
    out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    out
}

/// A CAP identifier part made safe (no spaces, commas or `<&`): long or odd keys are hashed.
fn safe(s: &str) -> String {
    if s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        s.to_string()
    } else {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(s.as_bytes())[..6])
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Build the messages of one decision. `before` are the references of every message the
/// lineage has had (oldest first).
pub fn build(
    reg: &Registry,
    rules: &Rules,
    issuer: &Issuer,
    l: &Lineage,
    d: &Decision,
    before: &[String],
    now: Timestamp,
) -> anyhow::Result<Vec<Issued>> {
    let offset = issuer.tz.to_offset(now);
    let sent = CapDateTime::from_timestamp(now, offset);
    let local = |t: Timestamp| {
        t.to_zoned(issuer.tz.clone())
            .strftime("%Y年%m月%d日%H时%M分")
            .to_string()
    };
    let references: Option<Vec<Reference>> = if before.is_empty() {
        None
    } else {
        Some(
            before
                .iter()
                .filter_map(|r| {
                    let mut it = r.splitn(3, ',');
                    let (s, i, t) = (it.next()?, it.next()?, it.next()?);
                    Some(Reference {
                        sender: s.to_string(),
                        identifier: i.to_string(),
                        sent: CapDateTime::parse_cap12(t).ok()?,
                    })
                })
                .collect(),
        )
    };
    let stamp = now
        .to_zoned(issuer.tz.clone())
        .strftime("%Y%m%d%H%M%S")
        .to_string();
    let base = format!(
        "{}_{}_{}_{}_v{}",
        issuer.sender_code,
        stamp,
        l.hazard,
        safe(&l.area),
        l.version
    );
    let msg_type = match d.send {
        MessageKind::Alert => MsgType::Alert,
        MessageKind::Update => MsgType::Update,
        MessageKind::Cancel => MsgType::Cancel,
    };
    let scope = if l.restricted {
        Scope::Restricted
    } else {
        Scope::Public
    };
    let restriction = l
        .restricted
        .then(|| "仅限防汛责任人及相关部门 / officials only".to_string());
    let alert_shell = |identifier: String, infos: Vec<Info>| Alert {
        identifier,
        sender: issuer.sender.clone(),
        sent,
        status: issuer.status,
        msg_type,
        source: Some("stormbell".into()),
        scope,
        restriction: restriction.clone(),
        addresses: None,
        codes: Vec::new(),
        note: Some(format!("lineage {}", l.key())),
        references: references.clone(),
        incidents: None,
        infos,
        signatures: Vec::new(),
    };
    if d.send == MessageKind::Cancel {
        let identifier = base.clone();
        let alert = alert_shell(identifier.clone(), Vec::new());
        let xml = crate::cap::build::build(&alert)?;
        return Ok(vec![Issued {
            reference: format!("{},{},{}", issuer.sender, identifier, sent),
            identifier,
            sent: now,
            expires: None,
            msg_type: "Cancel".into(),
            xml,
        }]);
    }

    let env = crate::templates::env()?;
    let upgraded = d
        .changes
        .iter()
        .any(|c| matches!(c, Change::Upgrade { .. }));
    let downgraded = d
        .changes
        .iter()
        .any(|c| matches!(c, Change::Downgrade { .. }));
    let expires = now
        .checked_add(SignedDuration::from_hours(i64::from(
            rules.lifecycle.expires_hours,
        )))
        .unwrap_or(now);
    let [urgency, certainty] = rules
        .cap
        .tier
        .get(&l.tier)
        .cloned()
        .unwrap_or_else(|| ["Expected".into(), "Likely".into()]);
    let urgency = Urgency::from_cap(&urgency).unwrap_or(Urgency::Expected);
    let certainty = Certainty::from_cap(&certainty).unwrap_or(Certainty::Likely);
    let (category, event_code) = match l.hazard {
        Hazard::Typhoon => (Category::Met, rules.typhoon.event_code.as_str()),
        Hazard::Rainstorm => (Category::Met, rules.rainstorm.event_code.as_str()),
        Hazard::FlashFlood => (Category::Met, rules.flash_flood.event_code.as_str()),
        Hazard::GeoHazard => (Category::Geo, rules.geo_hazard.event_code.as_str()),
        Hazard::Wildfire => (Category::Fire, rules.wildfire.event_code.as_str()),
        Hazard::Upstream | Hazard::FeedGap => (Category::Met, ""),
    };
    let move_tier = match l.hazard {
        Hazard::GeoHazard => rules.geo_hazard.move_tier,
        _ => rules.flash_flood.move_tier,
    };
    let response = match (l.hazard, l.tier) {
        (Hazard::FlashFlood | Hazard::GeoHazard, t) if t >= move_tier => ResponseType::Evacuate,
        (_, Tier::Red | Tier::Orange) if l.hazard == Hazard::Typhoon => ResponseType::Shelter,
        (Hazard::Wildfire, _) => ResponseType::Avoid,
        _ => ResponseType::Prepare,
    };

    let parts = clusters(reg, l);
    let n = parts.len();
    let mut out = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let identifier = if n > 1 {
            format!("{base}-p{}", k + 1)
        } else {
            base.clone()
        };
        let mut places: Vec<(&String, &super::lifecycle::HeldPlace)> = part
            .iter()
            .filter_map(|id| l.places.get(id).map(|h| (id, h)))
            .collect();
        places.sort_by(|a, b| b.1.tier.cmp(&a.1.tier).then(a.0.cmp(b.0)));
        let evacuate: u32 = places
            .iter()
            .map(|(id, h)| match h.kind {
                PlaceKind::Village => reg.village(id).map_or(0, |v| v.evacuate),
                PlaceKind::Site => reg.site(id).map_or(0, |s| s.evacuate),
                PlaceKind::Unit => 0,
            })
            .sum();
        let shelters: Vec<minijinja::Value> = shelters_for(reg, l, part)
            .into_iter()
            .map(|s| minijinja::context! { name => s.name, capacity => s.capacity })
            .collect();
        let kind = places.first().map_or("village", |p| {
            if p.1.kind == PlaceKind::Site {
                "site"
            } else {
                "village"
            }
        });
        let area_name = if n > 1 {
            format!("{}（{}/{}）", l.area_name, k + 1, n)
        } else {
            l.area_name.clone()
        };
        let area_code_like = l.area.bytes().all(|b| b.is_ascii_alphanumeric());
        let area_name_en = if area_code_like {
            format!("{} ({})", l.area_name, l.area)
        } else {
            l.area_name.clone()
        };
        let place_values: Vec<minijinja::Value> = places
            .iter()
            .map(|(id, h)| {
                minijinja::context! {
                    code => id.as_str(),
                    name => place_name(reg, h.kind, id).unwrap_or_else(|| id.to_string()),
                    tier => h.tier.as_str(),
                    tier_zh => h.tier.zh(),
                    why => h.why.clone(),
                }
            })
            .collect();
        let mut infos = Vec::new();
        for lang in ["zh-CN", "en"] {
            // The upstream's event by its hazard's name ("暴雨", not "暴雨红色预警").
            let upstream = l.upstream.as_ref().map(|u| {
                let event = crate::cap::cn::hazard_name(&u.event, u.event_code.as_deref(), lang)
                    .unwrap_or_else(|| u.event.clone());
                minijinja::context! { event => event, headline => u.headline.clone(), sender => u.sender.clone() }
            });
            let event_ctx =
                minijinja::context! { hazard => l.hazard.as_str(), upstream => upstream.clone() };
            let event = env
                .get_template(&format!("cap/event.{lang}"))?
                .render(&event_ctx)?;
            let ctx = minijinja::context! {
                hazard => l.hazard.as_str(),
                tier => l.tier.as_str(),
                tier_zh => l.tier.zh(),
                roman => l.tier.roman(),
                send => format!("{:?}", d.send),
                upgraded => upgraded,
                downgraded => downgraded,
                event => event.clone(),
                office => issuer.name.clone(),
                office_en => issuer.name_en.clone(),
                area_name => area_name.clone(),
                area_name_en => area_name_en.clone(),
                kind => kind,
                places => place_values.clone(),
                place_count => places.len(),
                evacuate => evacuate,
                shelters => shelters.clone(),
                upstream => upstream.clone(),
                move_tier => move_tier.as_str(),
                reason => super::why::words(&l.reason, lang),
                sent_local => local(now),
                onset_local => l.onset.filter(|o| *o > now).map(local),
            };
            let field = |name: &str| -> anyhow::Result<String> {
                let text = env
                    .get_template(&format!("cap/{name}.{lang}"))?
                    .render(&ctx)?;
                Ok(text.trim().to_string())
            };
            let mut areas = Vec::new();
            let mut located = Vec::new();
            let mut geocodes = Vec::new();
            for (id, h) in &places {
                if let Some(c) = place_circle(reg, h.kind, id) {
                    located.push(c);
                }
                match h.kind {
                    PlaceKind::Unit => {}
                    PlaceKind::Village => {
                        geocodes.push(ValuePair::new("GB/T 2260-10114", id.as_str()))
                    }
                    PlaceKind::Site => {
                        if let Some(s) = reg.site(id) {
                            for v in &s.villages {
                                let gc = ValuePair::new("GB/T 2260-10114", v.as_str());
                                if !geocodes.contains(&gc) {
                                    geocodes.push(gc);
                                }
                            }
                        }
                    }
                }
            }
            let desc: String = area_name.chars().take(48).collect();
            areas.push(Area {
                area_desc: desc,
                polygons: Vec::new(),
                circles: enclosing(&located).into_iter().collect(),
                geocodes,
                altitude: None,
                ceiling: None,
            });
            let mut event_codes = Vec::new();
            if !event_code.is_empty() {
                event_codes.push(ValuePair::new("CN-11B", event_code));
            }
            infos.push(Info {
                language: Some(lang.to_string()),
                categories: vec![category],
                event: event.clone(),
                response_types: vec![response],
                urgency,
                severity: l.tier.severity(),
                certainty,
                audience: l
                    .restricted
                    .then(|| "防汛责任人 / flood-control officials".to_string()),
                event_codes,
                effective: Some(sent),
                onset: l
                    .onset
                    .filter(|o| *o > now)
                    .map(|o| CapDateTime::from_timestamp(o, issuer.tz.to_offset(o))),
                expires: Some(CapDateTime::from_timestamp(
                    expires,
                    issuer.tz.to_offset(expires),
                )),
                sender_name: Some(if lang == "en" {
                    issuer.name_en.clone()
                } else {
                    issuer.name.clone()
                }),
                headline: Some(field("headline")?),
                description: Some(field("description")?),
                instruction: Some(field("instruction")?),
                web: None,
                contact: None,
                parameters: vec![
                    ValuePair::new("stormbell:tier", l.tier.as_str()),
                    ValuePair::new("stormbell:lineage", l.key()),
                    ValuePair::new("color", l.tier.rgb()),
                ],
                resources: Vec::new(),
                areas,
            });
        }
        let alert = alert_shell(identifier.clone(), infos);
        let xml = crate::cap::build::build(&alert)?;
        out.push(Issued {
            reference: format!("{},{},{}", issuer.sender, identifier, sent),
            identifier,
            sent: now,
            expires: Some(expires),
            msg_type: format!("{:?}", d.send),
            xml,
        });
    }
    // A lineage with no place the registry can locate still goes out, to the county.
    if out.is_empty() {
        anyhow::bail!(
            "lineage {}: none of its {} place(s) is in the registry, so it has no area",
            l.key(),
            l.places.len()
        );
    }
    Ok(out)
}

fn shelters_for(reg: &Registry, l: &Lineage, part: &[String]) -> Vec<TargetShelter> {
    let mut villages: Vec<&str> = Vec::new();
    for id in part {
        match l.places.get(id).map(|h| h.kind) {
            Some(PlaceKind::Village) => villages.push(id.as_str()),
            Some(PlaceKind::Site) => {
                if let Some(s) = reg.site(id) {
                    villages.extend(s.villages.iter().map(String::as_str));
                }
            }
            Some(PlaceKind::Unit) | None => {}
        }
    }
    let mut out: Vec<TargetShelter> = reg
        .data
        .shelters
        .iter()
        .filter(|s| s.serves.iter().any(|v| villages.contains(&v.as_str())))
        .map(|s| TargetShelter {
            id: s.id.clone(),
            name: s.name.clone(),
            capacity: s.capacity,
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

/// The targets of a decision: places, people to move, who to call up the ladder, terminals,
/// shelters. For a Cancel, the places of the lineage as it stood (`l` before the lift).
pub fn targets(reg: &Registry, l: &Lineage, d: &Decision, identifiers: Vec<String>) -> Targets {
    let mut places = Vec::new();
    let mut contacts: Vec<Contact> = Vec::new();
    let mut terminals = Vec::new();
    let mut gaps = Vec::new();
    let mut evacuate = 0;
    let mut ladder: Vec<String> = Vec::new();
    // Membership beside each list, which keeps its order: a warning over a province names
    // tens of thousands of places, and a linear search per item made it quadratic.
    let mut called: HashSet<(String, String)> = HashSet::new();
    let mut seen_terminals: HashSet<String> = HashSet::new();
    let mut seen_towns: HashSet<String> = HashSet::new();
    let mut seen_counties: HashSet<String> = HashSet::new();
    let call = |target: &str,
                contacts: &mut Vec<Contact>,
                called: &mut HashSet<(String, String)>|
     -> usize {
        let mut n = 0;
        for (duty, person) in reg.duties_for(target) {
            if let Some(p) = person {
                n += 1;
                if !called.insert((p.id.clone(), target.to_string())) {
                    continue;
                }
                contacts.push(Contact {
                    person: p.id.clone(),
                    name: p.name.clone(),
                    mobile: p.mobile.clone(),
                    level: p.level.as_str().to_string(),
                    role: duty.role.clone(),
                    target: target.to_string(),
                    deputy: p.deputy.clone(),
                });
            }
        }
        n
    };
    for (id, h) in &l.places {
        let (name, people, villages): (Option<String>, u32, Vec<String>) = match h.kind {
            PlaceKind::Village => match reg.village(id) {
                Some(v) => (Some(v.name.clone()), v.evacuate, vec![v.code.clone()]),
                None => (None, 0, Vec::new()),
            },
            PlaceKind::Site => match reg.site(id) {
                Some(s) => (Some(s.name.clone()), s.evacuate, s.villages.clone()),
                None => (None, 0, Vec::new()),
            },
            PlaceKind::Unit => (place_name(reg, h.kind, id), 0, Vec::new()),
        };
        let Some(name) = name else {
            gaps.push(format!("{id}: not in the registry"));
            continue;
        };
        evacuate += people;
        if call(id, &mut contacts, &mut called) == 0 && h.kind != PlaceKind::Village {
            gaps.push(format!("{name} ({id}): nobody answers for it"));
        }
        for v in &villages {
            if call(v, &mut contacts, &mut called) == 0 {
                gaps.push(format!("{v}: nobody answers for the village"));
            }
            for t in reg.terminals_of(v) {
                if seen_terminals.insert(t.id.clone()) {
                    terminals.push(t.id.clone());
                }
            }
            if let Some(v) = reg.village(v)
                && seen_towns.insert(v.town.clone())
            {
                ladder.push(v.town.clone());
            }
        }
        places.push(TargetPlace {
            kind: h.kind,
            id: id.clone(),
            name,
            tier: h.tier,
            evacuate: people,
        });
    }
    // Up the ladder: the towns, then the county (parents of the towns).
    let mut counties = Vec::new();
    for town in &ladder {
        call(town, &mut contacts, &mut called);
        if let Some(parent) = reg.unit(town).and_then(|u| u.parent.clone())
            && seen_counties.insert(parent.clone())
        {
            counties.push(parent);
        }
    }
    for c in &counties {
        call(c, &mut contacts, &mut called);
    }
    let all: Vec<String> = l.places.keys().cloned().collect();
    let shelters = if d.send == MessageKind::Cancel {
        Vec::new()
    } else {
        shelters_for(reg, l, &all)
    };
    Targets {
        lineage: l.key(),
        version: l.version,
        hazard: l.hazard,
        tier: l.tier,
        send: d.send,
        raises: d.raises,
        restricted: l.restricted,
        identifiers,
        places,
        evacuate,
        contacts,
        terminals,
        shelters,
        gaps,
        relayed: l.upstream.as_ref().map(|u| RelayedEvent {
            event: u.event.clone(),
            code: u.event_code.clone(),
        }),
    }
}

#[cfg(test)]
mod office_tests {
    use crate::registry::model::{Dataset, Level, Unit};

    fn issuer(sender_code: &str, name: &str) -> super::Issuer {
        super::Issuer {
            sender: "fx@example.cn".into(),
            sender_code: sender_code.into(),
            name: name.into(),
            name_en: String::new(),
            tz: jiff::tz::TimeZone::UTC,
            status: super::Status::Exercise,
        }
    }

    fn registry(counties: &[(&str, &str)]) -> crate::registry::Registry {
        crate::registry::Registry::new(Dataset {
            units: counties
                .iter()
                .map(|(code, name)| Unit {
                    code: code.to_string(),
                    name: name.to_string(),
                    level: Level::County,
                    parent: None,
                })
                .collect(),
            ..Dataset::default()
        })
    }

    #[test]
    fn a_county_office_issues_for_its_county_and_a_city_office_for_its_counties() {
        let may = |code: &str, name: &str, reg| issuer(code, name).check_county(reg);
        let one = registry(&[("331098", "东溟县")]);
        assert!(may("33109800000000", "东溟县防汛办", &one).is_ok());
        assert!(may("33109900000000", "东溟县防汛办", &one).is_err());
        assert!(may("33109800000000", "西溟县防汛办", &one).is_err());
        // A city's office (area 331000) over two of its counties; a county's or another
        // city's code cannot issue for both; a province's can.
        let two = registry(&[("331098", "东溟县"), ("331099", "西溟县")]);
        assert!(may("33100000000000", "合成市防汛办", &two).is_ok());
        assert!(may("33000000000000", "合成省防汛办", &two).is_ok());
        let e = may("33109800000000", "东溟县防汛办", &two).unwrap_err();
        assert!(e.contains("331099"), "{e}");
        assert!(may("33020000000000", "另一市防汛办", &two).is_err());
        assert!(may("", "合成市防汛办", &two).is_err());
    }
}
