//! Shared by the benchmark programs: a red warning over the synthetic county calling `persons`
//! responsible persons (synthetic names and numbers), spread over its villages.

use stormbell::correlate::assess::PlaceKind;
use stormbell::correlate::lifecycle::Send;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::{Contact, TargetPlace, TargetShelter, Targets};
use stormbell::registry::Registry;

/// The warning's targets.
pub fn county_targets(reg: &Registry, persons: usize) -> Targets {
    let villages: Vec<String> = reg.data.villages.iter().map(|v| v.code.clone()).collect();
    Targets {
        lineage: "flash_flood:BENCH".into(),
        version: 1,
        hazard: Hazard::FlashFlood,
        tier: Tier::Red,
        send: Send::Alert,
        raises: true,
        restricted: false,
        identifiers: vec!["bench-1".into()],
        places: villages
            .iter()
            .take(3)
            .map(|v| TargetPlace {
                kind: PlaceKind::Village,
                id: v.clone(),
                name: reg.village(v).map(|x| x.name.clone()).unwrap_or_default(),
                tier: Tier::Red,
                evacuate: 40,
            })
            .collect(),
        evacuate: 40,
        contacts: (0..persons)
            .map(|i| Contact {
                person: format!("B{i:06}"),
                name: format!("责任人{i}"),
                mobile: format!("139{:08}", 10_000_000 + i),
                level: "village".into(),
                role: "村级责任人".into(),
                target: villages[i % villages.len()].clone(),
                deputy: None,
            })
            .collect(),
        terminals: vec![],
        shelters: vec![TargetShelter {
            id: "S01".into(),
            name: "溪口镇中心小学".into(),
            capacity: 300,
        }],
        gaps: vec![],
    }
}
