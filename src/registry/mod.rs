//! The county registry: villages, hazard sites and their thresholds, shelters, broadcast
//! terminals, and the responsible persons of every level of the grid (定格定人定责).
//!
//! A warning is only as good as the list it is matched against. This module reads the lists
//! offices keep (a folder of CSV files, see `fixtures/README.md`), checks them across files,
//! imports them as a new version that keeps the old ones (so an audit can say who answered for
//! a village on any past date), reports the roster's gaps, and gives later stages the registry
//! in memory with a spatial index.
//!
//! Layout: [`model`] (the records), [`load`] (files → records, per-row problems), [`check`]
//! (cross-file rules), [`db`] (imports, history, changes), [`health`] (roster gaps),
//! [`spatial`] (R-tree).

pub(crate) mod check;
pub mod db;
pub mod geo;
mod geojson;
pub mod health;
pub(crate) mod load;
pub mod model;
mod shared;
pub(crate) mod spatial;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use load::{Encoding, Finding, Findings, Loaded};
pub use model::*;
pub use shared::{Publisher, Shared, follow};
pub use spatial::SpatialIndex;

use crate::store::{Store, StoreError};

/// `[registry]`: the roster checks, and how a running daemon takes up a new import.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// More sites than this for one person is listed as overloaded.
    pub max_sites_per_person: usize,
    /// Without a previous import, persons not confirmed within this many days are listed.
    pub confirm_within_days: i64,
    /// A running daemon looks for a new import this often (seconds; 0: never, the registry
    /// read at start stays in force until a restart).
    pub reload_secs: u64,
}

/// Read and check a registry folder without writing anything.
pub fn check_dir(dir: &Path, encoding: Encoding) -> (Loaded, Findings) {
    let (loaded, mut findings) = load::load_dir(dir, encoding);
    check::check(&loaded, &mut findings);
    findings.0.sort_by(|a, b| {
        file_order(&a.file)
            .cmp(&file_order(&b.file))
            .then(a.file.cmp(&b.file))
            .then(a.line.cmp(&b.line))
    });
    (loaded, findings)
}

fn file_order(f: &str) -> usize {
    const ORDER: &[&str] = &[
        "units.csv",
        "villages.csv",
        "villages.geojson",
        "groups.csv",
        "sites.csv",
        "sites.geojson",
        "thresholds.csv",
        "shelters.csv",
        "terminals.csv",
        "persons.csv",
        "duties.csv",
    ];
    ORDER.iter().position(|o| *o == f).unwrap_or(ORDER.len())
}

/// SHA-256 over the files read (names and bytes, in a fixed order), so an import can be
/// traced to exactly what was imported.
pub fn digest(dir: &Path, files: &[(String, &'static str)]) -> std::io::Result<String> {
    let mut names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    names.sort();
    let mut h = Sha256::new();
    for n in names {
        h.update(n.as_bytes());
        h.update([0]);
        let bytes = std::fs::read(dir.join(n))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The folder has errors; nothing was written.
    #[error("the registry has {} error(s); nothing was imported", .0.0.iter().filter(|f| f.is_error()).count())]
    Refused(Findings),
    /// The folder could not be read.
    #[error("cannot read the registry folder: {0}")]
    Io(#[from] std::io::Error),
    /// The store failed; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stages of an import, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading and parsing the files.
    Reading,
    /// Checking across files.
    Checking,
    /// Writing the new version.
    Writing,
}

/// A checked folder, ready to be written.
#[derive(Debug)]
pub struct Prepared {
    /// The records.
    pub data: Dataset,
    /// The folder.
    pub source: String,
    /// SHA-256 over the files read.
    pub digest: String,
    /// Warnings found (there are no errors, or it would not be prepared).
    pub findings: Findings,
}

/// Read and check a folder for import. The database is not involved: a folder with errors is
/// refused here, before anything is opened.
pub fn prepare_import(
    dir: &Path,
    encoding: Encoding,
    progress: &dyn Fn(Stage),
) -> Result<Prepared, ImportError> {
    progress(Stage::Reading);
    let (loaded, mut findings) = load::load_dir(dir, encoding);
    progress(Stage::Checking);
    check::check(&loaded, &mut findings);
    if findings.has_errors() {
        return Err(ImportError::Refused(findings));
    }
    let digest = digest(dir, &loaded.files)?;
    Ok(Prepared {
        data: loaded.data,
        source: dir.display().to_string(),
        digest,
        findings,
    })
}

impl Prepared {
    /// Write the new version in one transaction (with its audit entry): all or nothing.
    pub fn commit(
        self,
        store: &Store,
        actor: &str,
        at: jiff::Zoned,
    ) -> Result<db::ImportReport, StoreError> {
        let actor = actor.to_string();
        let Prepared {
            data,
            source,
            digest,
            ..
        } = self;
        store.write_blocking(move |tx| db::import(tx, &data, &source, &digest, &at, &actor))
    }
}

/// The registry in memory, with lookups and the spatial index: what later stages use.
#[derive(Debug)]
pub struct Registry {
    /// The records.
    pub data: Dataset,
    /// Where things are.
    pub index: SpatialIndex,
    village_at: HashMap<String, usize>,
    site_at: HashMap<String, usize>,
    person_at: HashMap<String, usize>,
    duties_of: HashMap<String, Vec<usize>>,
    thresholds_at: HashMap<String, Vec<usize>>,
    terminals_at: HashMap<String, Vec<usize>>,
    unit_at: HashMap<String, usize>,
    /// Village indices sorted by code, for prefix (town, county) lookups.
    by_code: Vec<usize>,
    /// The distinct threshold windows in hours, ascending.
    windows: Vec<f64>,
    /// The import this is the registry of (`None`: built from records, not from the store).
    pub import: Option<i64>,
}

impl Registry {
    /// Build lookups and the spatial index over a dataset.
    pub fn new(data: Dataset) -> Registry {
        let index = SpatialIndex::build(&data);
        let village_at = data
            .villages
            .iter()
            .enumerate()
            .map(|(i, v)| (v.code.clone(), i))
            .collect();
        let site_at = data
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        let person_at = data
            .persons
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        let mut duties_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in data.duties.iter().enumerate() {
            duties_of.entry(d.target.clone()).or_default().push(i);
        }
        let mut thresholds_at: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, t) in data.thresholds.iter().enumerate() {
            thresholds_at.entry(t.site.clone()).or_default().push(i);
        }
        // A warning over a province names tens of thousands of villages: each one's terminals
        // and each town's parent are looked up, not searched for.
        let mut terminals_at: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, t) in data.terminals.iter().enumerate() {
            terminals_at.entry(t.village.clone()).or_default().push(i);
        }
        let unit_at = data
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.code.clone(), i))
            .collect();
        let mut by_code: Vec<usize> = (0..data.villages.len()).collect();
        by_code.sort_by(|a, b| data.villages[*a].code.cmp(&data.villages[*b].code));
        let mut minutes: Vec<u32> = data.thresholds.iter().map(|t| t.minutes).collect();
        minutes.sort_unstable();
        minutes.dedup();
        let windows = minutes.into_iter().map(|m| f64::from(m) / 60.0).collect();
        Registry {
            import: None,
            by_code,
            windows,
            thresholds_at,
            terminals_at,
            unit_at,
            data,
            index,
            village_at,
            site_at,
            person_at,
            duties_of,
        }
    }

    /// The current registry from the store (empty if nothing was imported yet).
    pub fn load(store: &Store) -> Result<Registry, StoreError> {
        let (import, data) =
            store.read_blocking(|c| Ok((db::latest_import(c)?, db::load(c, None)?)))?;
        let mut reg = Registry::new(data);
        reg.import = import;
        Ok(reg)
    }

    /// A village by its 12-digit code.
    pub fn village(&self, code: &str) -> Option<&Village> {
        self.village_at.get(code).map(|&i| &self.data.villages[i])
    }

    /// A village's position in `Dataset::villages`, by its 12-digit code.
    pub fn village_index(&self, code: &str) -> Option<usize> {
        self.village_at.get(code).copied()
    }

    /// A site by id.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.site_at.get(id).map(|&i| &self.data.sites[i])
    }

    /// A person by id.
    pub fn person(&self, id: &str) -> Option<&Person> {
        self.person_at.get(id).map(|&i| &self.data.persons[i])
    }

    /// The broadcast terminals of a village, in registry order.
    pub fn terminals_of(&self, village: &str) -> impl Iterator<Item = &model::Terminal> {
        self.terminals_at
            .get(village)
            .into_iter()
            .flatten()
            .map(|&i| &self.data.terminals[i])
    }

    /// An administrative unit (county, town) by its code.
    pub fn unit(&self, code: &str) -> Option<&model::Unit> {
        self.unit_at.get(code).map(|&i| &self.data.units[i])
    }

    /// Who answers for a target (a unit, village or group code, or a site id).
    pub fn duties_for(&self, target: &str) -> impl Iterator<Item = (&Duty, Option<&Person>)> {
        self.duties_of.get(target).into_iter().flatten().map(|&i| {
            let d = &self.data.duties[i];
            (d, self.person(&d.person))
        })
    }

    /// The sites that threaten a village.
    pub fn sites_of(&self, village: &str) -> impl Iterator<Item = &Site> {
        self.data
            .sites
            .iter()
            .filter(move |s| s.villages.iter().any(|v| v == village))
    }

    /// Indices of the villages whose code starts with `prefix` (a county's or town's code),
    /// by binary search over the sorted codes.
    pub fn villages_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = usize> + 'a {
        let start = self
            .by_code
            .partition_point(|&i| self.data.villages[i].code.as_str() < prefix);
        self.by_code[start..]
            .iter()
            .copied()
            .take_while(move |&i| self.data.villages[i].code.starts_with(prefix))
    }

    /// The distinct windows (hours) the registry's thresholds use, ascending.
    pub fn threshold_windows(&self) -> &[f64] {
        &self.windows
    }

    /// Where a site is: its own point, else its first known village's.
    pub fn site_point(&self, site: &Site) -> Option<(f64, f64)> {
        site.point.as_ref().map(|p| (p.lon, p.lat)).or_else(|| {
            site.villages
                .iter()
                .find_map(|v| self.village(v).map(|v| (v.point.lon, v.point.lat)))
        })
    }

    /// The thresholds of a site.
    pub fn thresholds_of(&self, site: &str) -> impl Iterator<Item = &Threshold> {
        self.thresholds_at
            .get(site)
            .into_iter()
            .flatten()
            .map(|&i| &self.data.thresholds[i])
    }
}
