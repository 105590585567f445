//! Shared by the benchmark programs: their arguments, a fresh store holding the synthetic
//! county, and a red warning over it calling `persons` responsible persons (synthetic names
//! and numbers), spread over its villages.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use stormbell::registry::{self, Encoding};
use stormbell::store::Store;

use stormbell::correlate::assess::PlaceKind;
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::{Contact, TargetPlace, TargetShelter, Targets};
use stormbell::registry::Registry;

/// The value after `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1).cloned())
}

/// A new store in `dir` with the synthetic county imported, and the registry.
pub fn county_store(dir: &Path) -> anyhow::Result<(Store, Arc<Registry>)> {
    registry_store(dir, None, None)
}

/// A new store holding the registry folder `folder` (default the synthetic county): a SQLite
/// file in `dir`, or the empty PostgreSQL database `db` names (`postgres://…`).
pub fn registry_store(
    dir: &Path,
    db: Option<&str>,
    folder: Option<&Path>,
) -> anyhow::Result<(Store, Arc<Registry>)> {
    let store = match db {
        Some(url) => Store::open_postgres(url)?,
        None => Store::open(dir.join("bench.db"))?,
    };
    let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county");
    let folder = folder.unwrap_or(&county);
    let prepared = registry::prepare_import(folder, Encoding::Auto, &|_| {})
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let reg = Arc::new(Registry::new(prepared.data.clone()));
    prepared.commit(&store, "bench", jiff::Zoned::now())?;
    Ok((store, reg))
}

/// The warning's targets.
pub fn county_targets(reg: &Registry, persons: usize) -> Targets {
    let villages: Vec<String> = reg.data.villages.iter().map(|v| v.code.clone()).collect();
    Targets {
        lineage: "flash_flood:BENCH".into(),
        version: 1,
        hazard: Hazard::FlashFlood,
        tier: Tier::Red,
        send: MessageKind::Alert,
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
        relayed: None,
    }
}
