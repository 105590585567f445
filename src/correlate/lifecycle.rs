//! The lifecycle of a warning lineage: from successive assessments to issue / update / lift.
//!
//! One lineage per (hazard, area). The rules here keep warnings from flapping while never
//! delaying bad news:
//! - an upgrade (the area or a place rises, or a new place comes under it) goes out at once;
//! - a place's downgrade waits until the lower tier has held for `downgrade_hold_mins`, and a
//!   place leaving the area waits `narrow_hold_mins`;
//! - the lineage's own tier never drops before it has stood `min_hold_mins[tier]`;
//! - the warning is lifted once every place has been below every threshold for
//!   `lift_hold_mins` (and the tier's minimum hold is over), or at once when the upstream
//!   alert it relays was cancelled or expired;
//! - a warning still in force is renewed (an Update) before its CAP `expires` passes.
//!
//! Thresholds themselves carry the hysteresis (see [`super::assess::Ctx::meets`]). This
//! module is pure: state in, state and decision out, so it is tested without a store.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::assess::{Assessment, PlaceKind, UpstreamRef};
use super::rules::Rules;
use super::tier::{Hazard, Tier};

/// A place as the lineage holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldPlace {
    /// Village or site.
    pub kind: PlaceKind,
    /// The tier it is warned at.
    pub tier: Tier,
    /// The latest reason.
    pub why: String,
    /// Since when the assessment has put it lower (or out: `lower_to` None), if it has.
    pub lower_since: Option<Timestamp>,
    /// The tier it would be lowered to (None: out of the area).
    pub lower_to: Option<Tier>,
}

impl HeldPlace {
    /// A place as an assessment names it, not lowering.
    pub fn new(p: &super::assess::Place) -> HeldPlace {
        HeldPlace {
            kind: p.kind,
            tier: p.tier,
            why: p.why.clone(),
            lower_since: None,
            lower_to: None,
        }
    }
}

/// A warning lineage in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The hazard.
    pub hazard: Hazard,
    /// The area key.
    pub area: String,
    /// The area in words.
    pub area_name: String,
    /// The tier in force (the highest of the places').
    pub tier: Tier,
    /// Since when this tier has stood.
    pub tier_since: Timestamp,
    /// The places under it.
    pub places: BTreeMap<String, HeldPlace>,
    /// When it was first issued.
    pub issued: Timestamp,
    /// When its last version was sent.
    pub last_sent: Timestamp,
    /// Version number of the last message (1 = the Alert).
    pub version: u32,
    /// Since when every place has been out, if they all are.
    pub all_out_since: Option<Timestamp>,
    /// Expected onset.
    pub onset: Option<Timestamp>,
    /// Officials only.
    pub restricted: bool,
    /// The upstream alert relayed, if any.
    pub upstream: Option<UpstreamRef>,
    /// The latest overall reason.
    pub reason: String,
    /// The places and tiers as the last message named them.
    pub sent: BTreeMap<String, Tier>,
    /// Since when minor changes (new or raised places) have been waiting to go out.
    pub pending_since: Option<Timestamp>,
}

impl Lineage {
    /// Whether two states differ only in their words (reasons), which need not be stored
    /// every minute: the next message takes the words of its own moment.
    pub fn same_but_words(&self, other: &Lineage) -> bool {
        self.tier == other.tier
            && self.tier_since == other.tier_since
            && self.version == other.version
            && self.last_sent == other.last_sent
            && self.all_out_since == other.all_out_since
            && self.pending_since == other.pending_since
            && self.restricted == other.restricted
            && self.sent == other.sent
            && self.places.len() == other.places.len()
            && self
                .places
                .iter()
                .zip(&other.places)
                .all(|((a, x), (b, y))| {
                    a == b
                        && x.tier == y.tier
                        && x.kind == y.kind
                        && x.lower_since == y.lower_since
                        && x.lower_to == y.lower_to
                })
    }

    /// The lineage key: `hazard:area`.
    pub fn key(&self) -> String {
        key(self.hazard, &self.area)
    }
}

/// The key of a lineage.
pub fn key(hazard: Hazard, area: &str) -> String {
    format!("{hazard}:{area}")
}

/// One change a decision makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// First issue.
    Issue {
        /// The tier.
        tier: Tier,
    },
    /// The lineage's tier rose.
    Upgrade {
        /// From.
        from: Tier,
        /// To.
        to: Tier,
    },
    /// The lineage's tier fell.
    Downgrade {
        /// From.
        from: Tier,
        /// To.
        to: Tier,
    },
    /// Places came under the warning.
    Extend {
        /// Their ids.
        places: Vec<String>,
    },
    /// Places left it.
    Narrow {
        /// Their ids.
        places: Vec<String>,
    },
    /// Places already under it changed tier.
    Retier {
        /// Id, from, to.
        places: Vec<(String, Tier, Tier)>,
    },
    /// Nothing changed, but the warning still stands: re-sent before it expires.
    Renew,
    /// Lifted.
    Lift {
        /// Why.
        why: String,
    },
}

/// What kind of CAP message a decision sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageKind {
    /// The first message.
    Alert,
    /// A new version.
    Update,
    /// The end.
    Cancel,
}

impl MessageKind {
    /// The CAP msgType word.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Alert => "Alert",
            MessageKind::Update => "Update",
            MessageKind::Cancel => "Cancel",
        }
    }
}

/// A decision to send something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What the message is.
    pub send: MessageKind,
    /// What changed.
    pub changes: Vec<Change>,
    /// Whether this raises the danger for anybody (upgrade, extend, raised places): such
    /// decisions go out at once and first.
    pub raises: bool,
}

/// The outcome of one step: the state to keep (None: no lineage) and what to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The lineage after the step.
    pub state: Option<Lineage>,
    /// A message to send, if any.
    pub decision: Option<Decision>,
}

fn mins(m: u32) -> SignedDuration {
    SignedDuration::from_mins(i64::from(m))
}

fn held_for(since: Timestamp, now: Timestamp, d: SignedDuration) -> bool {
    now.duration_since(since) >= d
}

/// Advance a lineage by one assessment (`None`: the rule no longer names the area).
pub fn step(prev: Option<&Lineage>, a: Option<&Assessment>, now: Timestamp, rules: &Rules) -> Step {
    let lc = &rules.lifecycle;
    let Some(prev) = prev else {
        // Nothing in force: issue if anything is at risk.
        return match a
            .filter(|a| !a.ended)
            .and_then(|a| a.tier().map(|t| (a, t)))
        {
            Some((a, tier)) => {
                let places = a
                    .places
                    .iter()
                    .map(|p| (p.id.clone(), HeldPlace::new(p)))
                    .collect();
                Step {
                    state: Some(Lineage {
                        hazard: a.hazard,
                        area: a.area.clone(),
                        area_name: a.area_name.clone(),
                        tier,
                        tier_since: now,
                        places,
                        issued: now,
                        last_sent: now,
                        version: 1,
                        all_out_since: None,
                        onset: a.onset,
                        restricted: a.restricted,
                        upstream: a.upstream.clone(),
                        reason: a.reason.clone(),
                        sent: a.places.iter().map(|p| (p.id.clone(), p.tier)).collect(),
                        pending_since: None,
                    }),
                    decision: Some(Decision {
                        send: MessageKind::Alert,
                        changes: vec![Change::Issue { tier }],
                        raises: true,
                    }),
                }
            }
            None => Step {
                state: None,
                decision: None,
            },
        };
    };

    // The upstream alert ended: lift at once.
    if a.is_some_and(|a| a.ended) {
        return Step {
            state: None,
            decision: Some(Decision {
                send: MessageKind::Cancel,
                changes: vec![Change::Lift {
                    why: a.map(|a| a.reason.clone()).unwrap_or_default(),
                }],
                raises: false,
            }),
        };
    }

    let mut next = prev.clone();
    let now_places: BTreeMap<&str, &super::assess::Place> = a
        .map(|a| a.places.iter().map(|p| (p.id.as_str(), p)).collect())
        .unwrap_or_default();
    if let Some(a) = a {
        next.reason = a.reason.clone();
        if a.onset.is_some() {
            next.onset = a.onset;
        }
        if a.upstream.is_some() {
            next.upstream = a.upstream.clone();
        }
        next.area_name = a.area_name.clone();
    }

    // Raises take effect at once (whether they are sent at once is decided below).
    for (id, p) in &now_places {
        match next.places.get_mut(*id) {
            None => {
                next.places.insert(id.to_string(), HeldPlace::new(p));
            }
            Some(h) => {
                h.why = p.why.clone();
                if p.tier > h.tier {
                    h.tier = p.tier;
                    h.lower_since = None;
                    h.lower_to = None;
                } else if p.tier == h.tier {
                    h.lower_since = None;
                    h.lower_to = None;
                } else if h.lower_to != Some(p.tier) || h.lower_since.is_none() {
                    // Lower now; the clock starts (or restarts at a new lower tier, keeping
                    // the earlier start: it has been lower all along).
                    h.lower_since = Some(h.lower_since.unwrap_or(now));
                    h.lower_to = Some(p.tier);
                }
            }
        }
    }
    for (id, h) in next.places.iter_mut() {
        if !now_places.contains_key(id.as_str())
            && (h.lower_to.is_some() || h.lower_since.is_none())
        {
            h.lower_since = Some(h.lower_since.unwrap_or(now));
            h.lower_to = None;
        }
    }

    // Lowering waits for its holds, and never takes the lineage's tier down early.
    let tier_hold_over = held_for(prev.tier_since, now, rules.min_hold(prev.tier));
    let mut lowered = Vec::new();
    let mut narrowed = Vec::new();
    let ids: Vec<String> = next.places.keys().cloned().collect();
    let all_out = !next.places.is_empty()
        && next
            .places
            .values()
            .all(|h| h.lower_since.is_some() && h.lower_to.is_none());
    next.all_out_since = if all_out {
        Some(prev.all_out_since.unwrap_or(now))
    } else {
        None
    };
    if all_out {
        // The whole area is below every threshold: lift after the lift hold.
        let since = next.all_out_since.unwrap_or(now);
        if held_for(since, now, mins(lc.lift_hold_mins)) && tier_hold_over {
            return Step {
                state: None,
                decision: Some(Decision {
                    send: MessageKind::Cancel,
                    changes: vec![Change::Lift {
                        why: format!(
                            "below every threshold for {} min",
                            now.duration_since(since).as_mins()
                        ),
                    }],
                    raises: false,
                }),
            };
        }
    } else {
        for id in ids {
            let Some(h) = next.places.get(&id) else {
                continue;
            };
            let Some(since) = h.lower_since else { continue };
            match h.lower_to {
                Some(to) if held_for(since, now, mins(lc.downgrade_hold_mins)) => {
                    lowered.push((id.clone(), h.tier, to));
                }
                None if held_for(since, now, mins(lc.narrow_hold_mins)) => {
                    narrowed.push(id.clone());
                }
                _ => {}
            }
        }
        // Would these take the lineage's tier down before its minimum hold? Then not yet.
        let after = next
            .places
            .iter()
            .filter(|(id, _)| !narrowed.contains(id))
            .map(|(id, h)| {
                lowered
                    .iter()
                    .find(|(l, _, _)| l == id)
                    .map_or(h.tier, |(_, _, to)| *to)
            })
            .max();
        if after.is_some_and(|t| t < prev.tier) && !tier_hold_over {
            lowered.clear();
            narrowed.clear();
        }
        for (id, _, to) in &lowered {
            if let Some(h) = next.places.get_mut(id) {
                h.tier = *to;
                h.lower_since = None;
                h.lower_to = None;
            }
        }
        for id in &narrowed {
            next.places.remove(id);
        }
    }

    let new_tier = next
        .places
        .values()
        .map(|h| h.tier)
        .max()
        .unwrap_or(prev.tier);
    if new_tier != prev.tier {
        next.tier = new_tier;
        next.tier_since = now;
    }
    // What the people named in the last message have not been told yet: the difference
    // between the places now and those sent, since the last message.
    let mut extended = Vec::new();
    let mut retiered = Vec::new();
    for (id, h) in &next.places {
        match prev.sent.get(id) {
            None => extended.push(id.clone()),
            Some(t) if *t != h.tier => retiered.push((id.clone(), *t, h.tier)),
            Some(_) => {}
        }
    }
    let narrowed: Vec<String> = prev
        .sent
        .keys()
        .filter(|id| !next.places.contains_key(*id))
        .cloned()
        .collect();
    let mut changes = Vec::new();
    if new_tier > prev.tier {
        changes.push(Change::Upgrade {
            from: prev.tier,
            to: new_tier,
        });
    } else if new_tier < prev.tier {
        changes.push(Change::Downgrade {
            from: prev.tier,
            to: new_tier,
        });
    }
    let raised_any = retiered.iter().any(|(_, from, to)| to > from);
    let raises = new_tier > prev.tier || !extended.is_empty() || raised_any;
    // Red for a place goes out at once, as does any change of the warning's own tier and
    // any narrowing (which has waited its hold already). Other new or raised places of a
    // warning already in force are gathered for up to `coalesce_mins`, so a storm's circle
    // sweeping village by village across a town makes one update, not one a minute.
    let urgent = new_tier != prev.tier
        || !narrowed.is_empty()
        || extended
            .iter()
            .any(|id| next.places.get(id).is_some_and(|h| h.tier == Tier::Red))
        || retiered
            .iter()
            .any(|(_, from, to)| *to == Tier::Red && *from != Tier::Red);
    let minor = !extended.is_empty() || !retiered.is_empty();
    if !extended.is_empty() {
        changes.push(Change::Extend { places: extended });
    }
    if !narrowed.is_empty() {
        changes.push(Change::Narrow { places: narrowed });
    }
    if !retiered.is_empty() {
        changes.push(Change::Retier { places: retiered });
    }
    if !urgent && minor {
        let since = prev.pending_since.unwrap_or(now);
        if !held_for(since, now, mins(lc.coalesce_mins)) {
            next.pending_since = Some(since);
            return Step {
                state: Some(next),
                decision: None,
            };
        }
    }
    if changes.is_empty()
        && held_for(
            prev.last_sent,
            now,
            SignedDuration::from_mins(i64::from(lc.expires_hours) * 60 * 3 / 4),
        )
    {
        changes.push(Change::Renew);
    }
    if changes.is_empty() {
        return Step {
            state: Some(next),
            decision: None,
        };
    }
    next.version += 1;
    next.last_sent = now;
    next.pending_since = None;
    next.sent = next
        .places
        .iter()
        .map(|(id, h)| (id.clone(), h.tier))
        .collect();
    Step {
        state: Some(next),
        decision: Some(Decision {
            send: MessageKind::Update,
            changes,
            raises,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::assess::Place;

    fn at(m: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH
            .checked_add(SignedDuration::from_mins(m))
            .unwrap()
    }

    fn assess(places: &[(&str, Tier)]) -> Assessment {
        Assessment {
            hazard: Hazard::Rainstorm,
            area: "331098001".into(),
            area_name: "上溪街道".into(),
            places: places
                .iter()
                .map(|(id, t)| Place {
                    kind: PlaceKind::Village,
                    id: id.to_string(),
                    tier: *t,
                    why: String::new(),
                })
                .collect(),
            onset: None,
            ended: false,
            reason: String::new(),
            cause: None,
            upstream: None,
            restricted: false,
        }
    }

    /// Run a sequence of (minute, places) and return (minute, send, changes) of each decision.
    fn run(seq: &[(i64, &[(&str, Tier)])]) -> Vec<(i64, MessageKind, Vec<Change>)> {
        let rules = Rules::national();
        let mut state: Option<Lineage> = None;
        let mut out = Vec::new();
        for (m, places) in seq {
            let a = assess(places);
            let a = (!places.is_empty()).then_some(&a);
            let s = step(state.as_ref(), a, at(*m), &rules);
            if let Some(d) = s.decision {
                out.push((*m, d.send, d.changes));
            }
            state = s.state;
        }
        out
    }

    #[test]
    fn upgrades_go_at_once_downgrades_wait_and_lifts_wait_longer() {
        use Tier::*;
        let v1 = "331098001001";
        let got = run(&[
            (0, &[(v1, Blue)]),
            (10, &[(v1, Orange)]),
            (20, &[(v1, Yellow)]),  // lower: waits
            (70, &[(v1, Yellow)]),  // 50 min lower, and orange has stood only 60 min
            (135, &[(v1, Yellow)]), // orange stood 125 min ≥ 120, lower for 115 ≥ 60
            (140, &[]),             // out: lift waits 180 min
            (300, &[]),
            (321, &[]),
        ]);
        let sends: Vec<(i64, MessageKind)> = got.iter().map(|g| (g.0, g.1)).collect();
        assert_eq!(
            sends,
            vec![
                (0, MessageKind::Alert),
                (10, MessageKind::Update),
                (135, MessageKind::Update),
                (321, MessageKind::Cancel)
            ],
            "{got:?}"
        );
        assert_eq!(
            got[1].2[0],
            Change::Upgrade {
                from: Blue,
                to: Orange
            }
        );
        assert_eq!(
            got[2].2[0],
            Change::Downgrade {
                from: Orange,
                to: Yellow
            }
        );
    }

    #[test]
    fn a_value_that_dips_and_returns_does_not_flap() {
        use Tier::*;
        let v1 = "331098001001";
        let got = run(&[
            (0, &[(v1, Red)]),
            (30, &[]),
            (60, &[(v1, Red)]),
            (100, &[]),
            (150, &[(v1, Red)]),
        ]);
        assert_eq!(got.len(), 1, "{got:?}");
    }

    #[test]
    fn new_places_are_gathered_briefly_red_goes_at_once_and_leaving_ones_narrow_after_the_hold() {
        use Tier::*;
        let lc = Rules::national().lifecycle;
        let (c, n) = (i64::from(lc.coalesce_mins), i64::from(lc.narrow_hold_mins));
        let (v1, v2, v3) = ("331098001001", "331098001002", "331098001003");
        let one: &[(&str, Tier)] = &[(v1, Yellow)];
        let two: &[(&str, Tier)] = &[(v1, Yellow), (v2, Blue)];
        let three: &[(&str, Tier)] = &[(v1, Yellow), (v2, Blue), (v3, Red)];
        let back: &[(&str, Tier)] = &[(v1, Yellow), (v3, Red)];
        let got = run(&[
            (0, one),
            (5, two),
            (4 + c, two),
            (5 + c, two),
            (6 + c, three),
            (10 + c, back),
            (9 + c + n, back),
            (10 + c + n, back),
        ]);
        let sends: Vec<i64> = got.iter().map(|g| g.0).collect();
        // v2 (blue, below the warning's yellow) waits out the gathering window; v3 at red is
        // the warning's own upgrade and goes at once; v2 leaves and is dropped after the
        // narrowing hold.
        assert_eq!(sends, vec![0, 5 + c, 6 + c, 10 + c + n], "{got:?}");
        assert_eq!(
            got[1].2,
            vec![Change::Extend {
                places: vec![v2.into()]
            }]
        );
        assert_eq!(
            got[2].2[0],
            Change::Upgrade {
                from: Yellow,
                to: Red
            }
        );
        assert_eq!(
            got[3].2,
            vec![Change::Narrow {
                places: vec![v2.into()]
            }]
        );
    }

    #[test]
    fn a_standing_warning_is_renewed_before_it_expires_and_an_ended_upstream_lifts_at_once() {
        use Tier::*;
        let v1 = "331098001001";
        let got = run(&[
            (0, &[(v1, Blue)]),
            (17 * 60, &[(v1, Blue)]),
            (18 * 60, &[(v1, Blue)]),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], (18 * 60, MessageKind::Update, vec![Change::Renew]));
        let rules = Rules::national();
        let first = step(None, Some(&assess(&[(v1, Red)])), at(0), &rules);
        let mut ended = assess(&[]);
        ended.ended = true;
        let s = step(first.state.as_ref(), Some(&ended), at(1), &rules);
        assert_eq!(s.state, None);
        assert_eq!(s.decision.unwrap().send, MessageKind::Cancel);
    }
}
