//! Reading a registry folder: CSV files as offices export them (UTF-8, or GBK/GB18030 from
//! Excel; English or Chinese headers) plus optional GeoJSON outlines.
//!
//! Every file and column is documented in `fixtures/README.md`. Reading never stops at the
//! first bad row: each problem becomes a [`Finding`] (`file:line: column: problem`) and the
//! rest of the file is still read, so one run shows the office everything to fix.

use std::collections::HashMap;
use std::path::Path;

use crate::cap::{Level as Severity, Point};

use super::model::*;

/// One problem in a registry folder, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    /// Error (refuses the import) or warning.
    pub level: Severity,
    /// A stable code, e.g. `registry.phone`.
    pub code: &'static str,
    /// File name within the folder.
    pub file: String,
    /// 1-based line, where known.
    pub line: Option<u32>,
    /// Column as headed in the file, or another locator (`feature 3`); may be empty.
    pub column: String,
    /// What is wrong.
    pub message: String,
}

impl Finding {
    /// `file:line: column: problem` (warnings marked as such).
    pub fn render(&self) -> String {
        let loc = match self.line {
            Some(l) => format!("{}:{l}", self.file),
            None => self.file.clone(),
        };
        let level = if self.level == Severity::Warning {
            "warning: "
        } else {
            ""
        };
        if self.column.is_empty() {
            format!("{loc}: {level}{}", self.message)
        } else {
            format!("{loc}: {}: {level}{}", self.column, self.message)
        }
    }

    /// Whether it refuses the import.
    pub fn is_error(&self) -> bool {
        self.level == Severity::Error
    }
}

/// At most this many findings of one kind in one file are listed; the rest are counted
/// ([`Findings::omitted`]). A file with a million broken rows then yields a readable list and
/// bounded memory, and the count still says how many.
pub const LISTED_PER_KIND: usize = 20;

/// Largest CSV file read, in bytes. A county's largest file (its persons) is a few MB, a
/// province's (600,000 persons, `bench/registry_province.sh`) about 51 MB; above this the file
/// is refused unread, naming its size, so a wrong file (a database dump, a 300 MB export)
/// cannot take the machine's memory.
pub const MAX_CSV_BYTES: u64 = 128 * 1024 * 1024;

/// Largest GeoJSON file read, in bytes (outlines of every village of a county fit well within).
pub const MAX_GEOJSON_BYTES: u64 = 64 * 1024 * 1024;

/// Collected findings: those listed, and a count of those beyond [`LISTED_PER_KIND`].
#[derive(Debug, Default, Clone)]
pub struct Findings(pub Vec<Finding>, Omitted);

/// Findings seen, by (file, code, is an error): those past [`LISTED_PER_KIND`] are not listed.
#[derive(Debug, Default, Clone)]
struct Omitted(std::collections::BTreeMap<(String, &'static str, bool), usize>);

impl Omitted {
    /// (file, code, is an error, how many not listed), for each kind with any.
    fn unlisted(&self) -> impl Iterator<Item = (&str, &'static str, bool, usize)> {
        self.0
            .iter()
            .filter(|(_, n)| **n > LISTED_PER_KIND)
            .map(|((f, c, e), n)| (f.as_str(), *c, *e, n - LISTED_PER_KIND))
    }
}

impl Findings {
    pub(crate) fn push(
        &mut self,
        level: Severity,
        code: &'static str,
        file: &str,
        line: Option<u32>,
        column: &str,
        message: impl Into<String>,
    ) {
        let seen = self
            .1
            .0
            .entry((file.to_string(), code, level == Severity::Error))
            .or_default();
        *seen += 1;
        if *seen > LISTED_PER_KIND {
            return;
        }
        self.0.push(Finding {
            level,
            code,
            file: file.to_string(),
            line,
            column: column.to_string(),
            message: message.into(),
        });
    }

    /// Whether any finding refuses the import.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Finding::is_error)
    }

    /// Errors in all, listed or not.
    pub fn errors(&self) -> usize {
        let unlisted: usize = self.1.unlisted().filter(|u| u.2).map(|u| u.3).sum();
        self.0.iter().filter(|f| f.is_error()).count() + unlisted
    }

    /// Warnings in all, listed or not.
    pub fn warnings(&self) -> usize {
        let unlisted: usize = self.1.unlisted().filter(|u| !u.2).map(|u| u.3).sum();
        self.0.iter().filter(|f| !f.is_error()).count() + unlisted
    }

    /// What was not listed, one line per file and kind: `persons.csv: 999,980 more
    /// registry.phone errors not listed`.
    pub fn omitted(&self) -> Vec<String> {
        self.1
            .unlisted()
            .map(|(file, code, error, n)| {
                format!(
                    "{file}: {n} more {code} {} not listed (the first {LISTED_PER_KIND} are)",
                    if error { "errors" } else { "warnings" }
                )
            })
            .collect()
    }
}

/// The bytes of a registry file, refused unread above `limit`. The limit is checked on the
/// file's size and again while reading (a file that grows meanwhile is not read past it).
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let too_large = |size: u64| {
        format!(
            "the file is {:.1} MB, over the {} MB a registry file may be: is it the right file?",
            size as f64 / 1_048_576.0,
            limit / 1_048_576
        )
    };
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// How the CSV files are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encoding {
    /// UTF-8 when the bytes are valid UTF-8, otherwise GB18030 (which covers GBK and GB2312).
    #[default]
    Auto,
    /// UTF-8 (a byte-order mark is allowed).
    Utf8,
    /// GBK / GB2312 / GB18030, as Excel in China saves "CSV".
    Gbk,
}

/// A registry as read, with where each record came from.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The records.
    pub data: Dataset,
    /// Line of each record, parallel to the vectors in `data` (0 for records without one).
    pub lines: Lines,
    /// Files read, with their encodings, for the report.
    pub files: Vec<(String, &'static str)>,
}

/// Source lines of each record.
#[derive(Debug, Default)]
pub struct Lines {
    /// units.csv
    pub units: Vec<u32>,
    /// villages.csv
    pub villages: Vec<u32>,
    /// groups.csv
    pub groups: Vec<u32>,
    /// sites.csv
    pub sites: Vec<u32>,
    /// thresholds.csv
    pub thresholds: Vec<u32>,
    /// shelters.csv
    pub shelters: Vec<u32>,
    /// terminals.csv
    pub terminals: Vec<u32>,
    /// persons.csv
    pub persons: Vec<u32>,
    /// duties.csv
    pub duties: Vec<u32>,
}

/// A column: its canonical name and the headers it may appear under.
struct Col {
    name: &'static str,
    aliases: &'static [&'static str],
    required: bool,
}

const fn col(name: &'static str, aliases: &'static [&'static str], required: bool) -> Col {
    Col {
        name,
        aliases,
        required,
    }
}

const UNITS: &[Col] = &[
    col("code", &["代码", "行政区划代码", "编码"], true),
    col("name", &["名称", "单位名称"], true),
    col("level", &["级别", "层级"], true),
    col("parent", &["上级代码", "上级"], false),
];
const VILLAGES: &[Col] = &[
    col("code", &["村代码", "行政区划代码", "代码"], true),
    col("name", &["村名", "名称", "村名称"], true),
    col("town", &["乡镇代码", "所属乡镇"], true),
    col("lon", &["经度"], true),
    col("lat", &["纬度"], true),
    col("households", &["户数"], false),
    col("population", &["人口", "人数"], false),
    col("evacuate", &["需转移人数", "应转移人数", "转移人数"], false),
];
const GROUPS: &[Col] = &[
    col("code", &["组代码", "自然村代码", "代码"], true),
    col("village", &["村代码", "所属村"], true),
    col("name", &["名称", "组名"], true),
    col("households", &["户数"], false),
    col("population", &["人口", "人数"], false),
];
const SITES: &[Col] = &[
    col("id", &["编号", "隐患点编号"], true),
    col("kind", &["类型"], true),
    col("name", &["名称", "隐患点名称"], true),
    col("villages", &["村代码", "涉及村"], true),
    col("lon", &["经度"], false),
    col("lat", &["纬度"], false),
    col("hazard", &["灾害类型", "隐患类型"], false),
    col("households", &["威胁户数"], false),
    col("people", &["威胁人数"], false),
    col("property", &["威胁财产", "威胁财产(万元)"], false),
    col(
        "vulnerable",
        &["有老弱病残", "威胁对象是否有老弱病残"],
        false,
    ),
    col("evacuate", &["需转移人数", "应转移人数"], false),
    col("status", &["状态"], false),
    col("closed_on", &["销号时间"], false),
    col("closed_reason", &["销号原因"], false),
];
const THRESHOLDS: &[Col] = &[
    col("site", &["编号", "危险区编号"], true),
    col("duration", &["时段", "历时"], true),
    col("soil", &["土壤含水", "土壤含水量"], false),
    col("prepare_mm", &["准备转移", "准备转移雨量"], true),
    col("move_mm", &["立即转移", "立即转移雨量"], true),
];
const SHELTERS: &[Col] = &[
    col("id", &["编号"], true),
    col("name", &["名称"], true),
    col("village", &["村代码", "所在村"], true),
    col("lon", &["经度"], true),
    col("lat", &["纬度"], true),
    col("capacity", &["容纳人数", "容量"], true),
    col("serves", &["服务村", "安置村"], false),
];
const TERMINALS: &[Col] = &[
    col("id", &["编号", "资源编码"], true),
    col("village", &["村代码", "所在村"], true),
    col("name", &["名称"], false),
    col("kind", &["类型"], true),
    col("lon", &["经度"], false),
    col("lat", &["纬度"], false),
];
const PERSONS: &[Col] = &[
    col("id", &["编号", "人员编号"], true),
    col("name", &["姓名"], true),
    col("mobile", &["手机", "手机号", "电话", "联系电话"], true),
    col("level", &["层级", "级别"], true),
    col("unit", &["单位代码", "所属单位代码"], true),
    col("role", &["职务", "岗位"], true),
    col("deputy", &["AB角编号", "AB角", "替补"], false),
    col("on_duty", &["在岗", "值班在岗"], false),
    col("confirmed_on", &["核实日期", "确认日期"], false),
];
const DUTIES: &[Col] = &[
    col("person", &["人员编号", "编号"], true),
    col("target", &["责任对象", "对象编码"], true),
    col("role", &["责任", "职责"], true),
];

/// Read a registry folder. Structural problems (unreadable files, bad values) are returned as
/// findings; cross-file rules are [`super::check`]'s.
pub fn load_dir(dir: &Path, encoding: Encoding) -> (Loaded, Findings) {
    let mut out = Findings::default();
    let mut loaded = Loaded::default();
    if !dir.is_dir() {
        out.push(
            Severity::Error,
            "registry.dir",
            &dir.display().to_string(),
            None,
            "",
            "not a folder",
        );
        return (loaded, out);
    }
    let files: [(&str, &[Col], bool); 9] = [
        ("units.csv", UNITS, true),
        ("villages.csv", VILLAGES, true),
        ("groups.csv", GROUPS, false),
        ("sites.csv", SITES, false),
        ("thresholds.csv", THRESHOLDS, false),
        ("shelters.csv", SHELTERS, false),
        ("terminals.csv", TERMINALS, false),
        ("persons.csv", PERSONS, true),
        ("duties.csv", DUTIES, true),
    ];
    for (name, spec, required) in files {
        let path = dir.join(name);
        if !path.exists() {
            if required {
                out.push(
                    Severity::Error,
                    "registry.missing-file",
                    name,
                    None,
                    "",
                    "required file is missing",
                );
            }
            continue;
        }
        let Some(table) = Table::read(&path, name, spec, encoding, &mut out) else {
            continue;
        };
        loaded.files.push((name.to_string(), table.encoding));
        let d = &mut loaded.data;
        let l = &mut loaded.lines;
        match name {
            "units.csv" => table.each(&mut out, unit, &mut d.units, &mut l.units),
            "villages.csv" => table.each(&mut out, village, &mut d.villages, &mut l.villages),
            "groups.csv" => table.each(&mut out, group, &mut d.groups, &mut l.groups),
            "sites.csv" => table.each(&mut out, site, &mut d.sites, &mut l.sites),
            "thresholds.csv" => {
                table.each(&mut out, threshold, &mut d.thresholds, &mut l.thresholds)
            }
            "shelters.csv" => table.each(&mut out, shelter, &mut d.shelters, &mut l.shelters),
            "terminals.csv" => table.each(&mut out, terminal, &mut d.terminals, &mut l.terminals),
            "persons.csv" => table.each(&mut out, person, &mut d.persons, &mut l.persons),
            _ => table.each(&mut out, duty, &mut d.duties, &mut l.duties),
        }
    }
    for (name, key) in [("villages.geojson", "code"), ("sites.geojson", "id")] {
        let path = dir.join(name);
        if path.exists() {
            let shapes = super::geojson::read(&path, name, key, &mut out);
            loaded.files.push((name.to_string(), "UTF-8"));
            attach_shapes(&mut loaded, name, shapes, &mut out);
        }
    }
    // Base-map layers: optional, only drawn (fixtures/README.md).
    for (kind, name) in super::model::LayerKind::ALL {
        let path = dir.join(name);
        if path.exists() {
            let layers = super::geojson::read_layer(&path, name, kind, &mut out);
            loaded.files.push((name.to_string(), "UTF-8"));
            loaded.data.layers.extend(layers);
        }
    }
    (loaded, out)
}

fn attach_shapes(
    loaded: &mut Loaded,
    file: &str,
    shapes: Vec<super::geojson::Shape>,
    out: &mut Findings,
) {
    let d = &mut loaded.data;
    let index: HashMap<String, usize> = if file.starts_with("villages") {
        d.villages
            .iter()
            .enumerate()
            .map(|(i, v)| (v.code.clone(), i))
            .collect()
    } else {
        d.sites
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect()
    };
    for s in shapes {
        match index.get(&s.key) {
            Some(&i) => {
                if file.starts_with("villages") {
                    d.villages[i].polygon = Some(s.polygon);
                } else {
                    d.sites[i].polygon = Some(s.polygon);
                }
            }
            None => out.push(
                Severity::Error,
                "registry.unknown-ref",
                file,
                s.line,
                &s.locator,
                format!(
                    "outline for `{}`, which is not in {}",
                    s.key,
                    if file.starts_with("villages") {
                        "villages.csv"
                    } else {
                        "sites.csv"
                    }
                ),
            ),
        }
    }
}

/// One CSV file, decoded, with its header mapped to canonical column names.
struct Table {
    file: String,
    encoding: &'static str,
    headers: Vec<String>,
    index: HashMap<&'static str, usize>,
    rows: Vec<(u32, csv::StringRecord)>,
}

impl Table {
    fn read(
        path: &Path,
        file: &str,
        spec: &[Col],
        encoding: Encoding,
        out: &mut Findings,
    ) -> Option<Table> {
        let bytes = match read_bounded(path, MAX_CSV_BYTES) {
            Ok(b) => b,
            Err(e) => {
                out.push(Severity::Error, "registry.io", file, None, "", e);
                return None;
            }
        };
        let (text, enc) = match decode(&bytes, encoding) {
            Ok(x) => x,
            Err((line, msg)) => {
                out.push(Severity::Error, "registry.encoding", file, line, "", msg);
                return None;
            }
        };
        let text = crate::text::lf(&text);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers: Vec<String> = match reader.headers() {
            Ok(h) => h
                .iter()
                .map(|s| s.trim_start_matches('\u{feff}').to_string())
                .collect(),
            Err(e) => {
                out.push(
                    Severity::Error,
                    "registry.csv",
                    file,
                    Some(1),
                    "",
                    format!("unreadable header: {e}"),
                );
                return None;
            }
        };
        let mut index = HashMap::new();
        for (i, h) in headers.iter().enumerate() {
            match spec
                .iter()
                .find(|c| c.name == h || c.aliases.contains(&h.as_str()))
            {
                Some(c) => {
                    if index.insert(c.name, i).is_some() {
                        out.push(
                            Severity::Error,
                            "registry.header",
                            file,
                            Some(1),
                            h,
                            format!("column `{}` appears twice", c.name),
                        );
                    }
                }
                None if h.is_empty() => {}
                None => out.push(
                    Severity::Warning,
                    "registry.header",
                    file,
                    Some(1),
                    h,
                    format!(
                        "unknown column, ignored (expected: {})",
                        spec.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                    ),
                ),
            }
        }
        let mut ok = true;
        for c in spec.iter().filter(|c| c.required) {
            if !index.contains_key(c.name) {
                ok = false;
                out.push(
                    Severity::Error,
                    "registry.header",
                    file,
                    Some(1),
                    c.name,
                    format!(
                        "required column is missing (headed `{}`{})",
                        c.name,
                        if c.aliases.is_empty() {
                            String::new()
                        } else {
                            format!(" or `{}`", c.aliases.join("`, `"))
                        }
                    ),
                );
            }
        }
        if !ok {
            return None;
        }
        let mut rows = Vec::new();
        for rec in reader.records() {
            match rec {
                Ok(r) => {
                    let line = r.position().map(|p| p.line() as u32).unwrap_or(0);
                    if r.iter().all(str::is_empty) {
                        continue; // blank line, as spreadsheets leave at the end
                    }
                    if r.len() != headers.len() {
                        out.push(
                            Severity::Error,
                            "registry.csv",
                            file,
                            Some(line),
                            "",
                            format!(
                                "row has {} fields, the header has {}",
                                r.len(),
                                headers.len()
                            ),
                        );
                        continue;
                    }
                    rows.push((line, r));
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line() as u32);
                    out.push(
                        Severity::Error,
                        "registry.csv",
                        file,
                        line,
                        "",
                        format!("unreadable row: {e}"),
                    );
                }
            }
        }
        Some(Table {
            file: file.to_string(),
            encoding: enc,
            headers,
            index,
            rows,
        })
    }

    /// Parse every row with `f`, keeping the rows that parse (with their lines).
    fn each<T>(
        &self,
        out: &mut Findings,
        f: impl Fn(&mut Row<'_>) -> Option<T>,
        dest: &mut Vec<T>,
        lines: &mut Vec<u32>,
    ) {
        dest.reserve(self.rows.len());
        for (line, rec) in &self.rows {
            let mut row = Row {
                table: self,
                line: *line,
                rec,
                out,
                bad: false,
            };
            // A record with a bad value is kept when it could be built at all, so that
            // references to it still resolve: one bad phone number must not turn into "unknown
            // person" on every duty that names the person. (The import is refused anyway.)
            if let Some(v) = f(&mut row) {
                dest.push(v);
                lines.push(*line);
            }
        }
    }
}

fn decode(
    bytes: &[u8],
    encoding: Encoding,
) -> Result<(String, &'static str), (Option<u32>, String)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let utf8 = || match std::str::from_utf8(bytes) {
        Ok(s) => Ok((s.to_string(), "UTF-8")),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u32;
            Err((
                Some(line),
                "not valid UTF-8 here (if the file is GBK from Excel, say --encoding gbk)"
                    .to_string(),
            ))
        }
    };
    let gbk =
        || match encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(bytes) {
            Some(s) => Ok((s.into_owned(), "GB18030")),
            None => Err((None, "neither UTF-8 nor GBK/GB18030".to_string())),
        };
    match encoding {
        Encoding::Utf8 => utf8(),
        Encoding::Gbk => gbk(),
        Encoding::Auto => utf8().or_else(|_| gbk()),
    }
}

/// One row being parsed: field access that records problems at `file:line: column`.
struct Row<'t> {
    table: &'t Table,
    line: u32,
    rec: &'t csv::StringRecord,
    out: &'t mut Findings,
    /// Set when a value is wrong (its problem already reported).
    bad: bool,
}

impl Row<'_> {
    fn header(&self, col: &str) -> String {
        self.table
            .index
            .get(col)
            .map(|&i| self.table.headers[i].clone())
            .unwrap_or_else(|| col.to_string())
    }

    fn problem(
        &mut self,
        level: Severity,
        code: &'static str,
        col: &str,
        message: impl Into<String>,
    ) {
        let h = self.header(col);
        self.out
            .push(level, code, &self.table.file, Some(self.line), &h, message);
        if level == Severity::Error {
            self.bad = true;
        }
    }

    /// The trimmed value, "" when the column is absent.
    fn get(&self, col: &str) -> &str {
        self.table
            .index
            .get(col)
            .and_then(|&i| self.rec.get(i))
            .unwrap_or("")
    }

    fn text(&mut self, col: &str) -> String {
        self.get(col).to_string()
    }

    fn required(&mut self, col: &str) -> String {
        let v = self.get(col).to_string();
        if v.is_empty() {
            self.problem(
                Severity::Error,
                "registry.empty",
                col,
                "required value is empty",
            );
        }
        v
    }

    fn opt(&mut self, col: &str) -> Option<String> {
        let v = self.get(col);
        (!v.is_empty()).then(|| v.to_string())
    }

    /// A non-negative whole number; empty means 0.
    fn count(&mut self, col: &str) -> u32 {
        let v = self.get(col).to_string();
        if v.is_empty() {
            return 0;
        }
        match v.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                self.problem(
                    Severity::Error,
                    "registry.number",
                    col,
                    format!("`{v}` is not a whole number ≥ 0"),
                );
                0
            }
        }
    }

    fn number(&mut self, col: &str) -> Option<f64> {
        let v = self.get(col).to_string();
        if v.is_empty() {
            return None;
        }
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                self.problem(
                    Severity::Error,
                    "registry.number",
                    col,
                    format!("`{v}` is not a number"),
                );
                None
            }
        }
    }

    fn code(&mut self, col: &str, level: Level) -> String {
        let v = self.required(col);
        if !v.is_empty() && Level::of_code(&v) != Some(level) {
            self.problem(
                Severity::Error,
                "registry.code",
                col,
                format!("`{v}` is not a {}-digit {} code", level.code_len(), level),
            );
        }
        v
    }

    fn point(&mut self, required: bool) -> Option<Point> {
        let (lon, lat) = (self.number("lon"), self.number("lat"));
        match (lon, lat) {
            (Some(lon), Some(lat)) => {
                let p = Point { lat, lon };
                if !in_china(&p) {
                    let swapped = in_china(&Point { lat: lon, lon: lat });
                    self.problem(
                        Severity::Error,
                        "registry.coordinates",
                        "lon",
                        format!(
                            "{lon},{lat} (lon,lat) is outside China{}",
                            if swapped {
                                "; longitude and latitude look swapped"
                            } else {
                                ""
                            }
                        ),
                    );
                }
                Some(p)
            }
            (None, None) if !required => None,
            _ => {
                let missing = if lon.is_none() { "lon" } else { "lat" };
                if self.get(missing).is_empty() {
                    self.problem(
                        Severity::Error,
                        "registry.empty",
                        missing,
                        "required value is empty",
                    );
                }
                None
            }
        }
    }

    fn boolean(&mut self, col: &str, default: bool) -> bool {
        match self.get(col) {
            "" => default,
            "yes" | "y" | "true" | "1" | "是" | "有" => true,
            "no" | "n" | "false" | "0" | "否" | "无" => false,
            other => {
                let other = other.to_string();
                self.problem(
                    Severity::Error,
                    "registry.bool",
                    col,
                    format!("`{other}` is not yes/no (是/否)"),
                );
                default
            }
        }
    }

    fn date(&mut self, col: &str) -> Option<jiff::civil::Date> {
        let v = self.get(col).to_string();
        if v.is_empty() {
            return None;
        }
        let norm = v.replace(['/', '.'], "-");
        match norm.parse::<jiff::civil::Date>() {
            Ok(d) => Some(d),
            Err(_) => {
                self.problem(
                    Severity::Error,
                    "registry.date",
                    col,
                    format!("`{v}` is not a date (YYYY-MM-DD)"),
                );
                None
            }
        }
    }

    fn list(&mut self, col: &str) -> Vec<String> {
        self.get(col)
            .split([';', '；', '、', '|'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn id(&mut self, col: &str) -> String {
        let v = self.required(col);
        if v.chars().any(char::is_whitespace) {
            self.problem(
                Severity::Error,
                "registry.id",
                col,
                format!("`{v}` contains spaces"),
            );
        } else if v.chars().any(char::is_control) {
            // A NUL or an escape pasted from another system: an id is matched everywhere (and
            // PostgreSQL's text cannot hold a NUL, so it would not match itself once stored).
            self.problem(
                Severity::Error,
                "registry.id",
                col,
                format!("{v:?} contains a control character"),
            );
        }
        v
    }
}

/// Whether a point is within China's extent (a generous box: it catches zeros, swapped axes and
/// dropped digits, not border details).
pub fn in_china(p: &Point) -> bool {
    (3.5..=53.6).contains(&p.lat) && (73.4..=135.1).contains(&p.lon)
}

fn unit(r: &mut Row<'_>) -> Option<Unit> {
    let code = r.required("code");
    let level_text = r.required("level");
    let level = match Level::parse(&level_text) {
        Some(l @ (Level::County | Level::Town)) => l,
        _ => {
            r.problem(
                Severity::Error,
                "registry.level",
                "level",
                format!("`{level_text}` is not county or town"),
            );
            Level::County
        }
    };
    if Level::of_code(&code) != Some(level) && !r.bad {
        r.problem(
            Severity::Error,
            "registry.code",
            "code",
            format!("`{code}` is not a {}-digit {level} code", level.code_len()),
        );
    }
    let parent = r.opt("parent");
    Some(Unit {
        code,
        name: r.required("name"),
        level,
        parent,
    })
}

fn village(r: &mut Row<'_>) -> Option<Village> {
    let code = r.code("code", Level::Village);
    let town = r.code("town", Level::Town);
    let name = r.required("name");
    let point = r.point(true);
    let households = r.count("households");
    let population = r.count("population");
    let evacuate = r.count("evacuate");
    if population > 0 && evacuate > population {
        r.problem(
            Severity::Warning,
            "registry.evacuate",
            "evacuate",
            format!("{evacuate} people to move, more than the population of {population}"),
        );
    }
    Some(Village {
        code,
        name,
        town,
        point: point?,
        households,
        population,
        evacuate,
        polygon: None,
    })
}

fn group(r: &mut Row<'_>) -> Option<Group> {
    let code = r.code("code", Level::Group);
    let village = r.code("village", Level::Village);
    if !code.is_empty() && !village.is_empty() && !code.starts_with(&village) {
        r.problem(
            Severity::Error,
            "registry.code",
            "code",
            format!("group `{code}` does not extend its village code `{village}`"),
        );
    }
    Some(Group {
        code,
        village,
        name: r.required("name"),
        households: r.count("households"),
        population: r.count("population"),
    })
}

fn site(r: &mut Row<'_>) -> Option<Site> {
    let id = r.id("id");
    let kind_text = r.required("kind");
    let kind = SiteKind::parse(&kind_text);
    if kind.is_none() && !kind_text.is_empty() {
        r.problem(
            Severity::Error,
            "registry.kind",
            "kind",
            format!("`{kind_text}` is not flash_flood, geo_hazard, waterlogging or forest"),
        );
    }
    let name = r.required("name");
    let villages = r.list("villages");
    if villages.is_empty() {
        r.problem(
            Severity::Error,
            "registry.empty",
            "villages",
            "a site must name the villages it threatens",
        );
    }
    for v in &villages {
        if Level::of_code(v) != Some(Level::Village) {
            r.problem(
                Severity::Error,
                "registry.code",
                "villages",
                format!("`{v}` is not a 12-digit village code"),
            );
        }
    }
    let point = r.point(false);
    let status = match r.get("status") {
        "" | "active" | "在册" | "正常" => SiteStatus::Active,
        "closed" | "销号" | "已销号" => SiteStatus::Closed {
            on: r.date("closed_on"),
            reason: r.text("closed_reason"),
        },
        other => {
            let other = other.to_string();
            r.problem(
                Severity::Error,
                "registry.status",
                "status",
                format!("`{other}` is not active or closed (销号)"),
            );
            SiteStatus::Active
        }
    };
    let people = r.count("people");
    let evacuate = match r.get("evacuate") {
        "" => people,
        _ => r.count("evacuate"),
    };
    Some(Site {
        id,
        kind: kind?,
        name,
        villages,
        point,
        polygon: None,
        hazard: r.text("hazard"),
        households: r.count("households"),
        people,
        property_wan: r.number("property"),
        vulnerable: r.boolean("vulnerable", false),
        evacuate,
        status,
    })
}

fn threshold(r: &mut Row<'_>) -> Option<Threshold> {
    let site = r.required("site");
    let d = r.required("duration");
    let minutes = parse_duration(&d);
    match minutes {
        Some(m) if DURATIONS.contains(&m) => {}
        Some(m) => r.problem(
            Severity::Error,
            "registry.duration",
            "duration",
            format!(
                "{} is not one of 0.5h, 1h, 3h, 6h, 12h, 24h",
                format_duration(m)
            ),
        ),
        None if !d.is_empty() => r.problem(
            Severity::Error,
            "registry.duration",
            "duration",
            format!("`{d}` is not a duration (e.g. 1h, 3h)"),
        ),
        None => {}
    }
    let soil_text = r.text("soil");
    let soil = Soil::parse(&soil_text);
    if soil.is_none() {
        r.problem(
            Severity::Error,
            "registry.soil",
            "soil",
            format!("`{soil_text}` is not any, dry, normal or wet (较干/一般/较湿)"),
        );
    }
    let prepare = r.number("prepare_mm");
    let move_now = r.number("move_mm");
    if let (Some(p), Some(m)) = (prepare, move_now) {
        if p <= 0.0 || m <= 0.0 {
            r.problem(
                Severity::Error,
                "registry.threshold",
                "prepare_mm",
                "thresholds must be above 0 mm",
            );
        } else if m < p {
            r.problem(
                Severity::Error,
                "registry.threshold",
                "move_mm",
                format!("move-now threshold {m} mm is below the prepare threshold {p} mm (立即转移 must be ≥ 准备转移)"),
            );
        } else if m > 1000.0 {
            r.problem(
                Severity::Error,
                "registry.threshold",
                "move_mm",
                format!("{m} mm is beyond any rain gauge"),
            );
        }
    } else {
        for (c, v) in [("prepare_mm", prepare), ("move_mm", move_now)] {
            if v.is_none() && r.get(c).is_empty() {
                r.problem(
                    Severity::Error,
                    "registry.empty",
                    c,
                    "required value is empty",
                );
            }
        }
    }
    Some(Threshold {
        site,
        minutes: minutes?,
        soil: soil?,
        prepare_mm: prepare?,
        move_mm: move_now?,
    })
}

fn shelter(r: &mut Row<'_>) -> Option<Shelter> {
    let id = r.id("id");
    let name = r.required("name");
    let village = r.code("village", Level::Village);
    let point = r.point(true);
    let capacity = r.count("capacity");
    if capacity == 0 {
        r.problem(
            Severity::Error,
            "registry.capacity",
            "capacity",
            "a shelter must hold at least one person",
        );
    }
    let serves = r.list("serves");
    for v in &serves {
        if Level::of_code(v) != Some(Level::Village) {
            r.problem(
                Severity::Error,
                "registry.code",
                "serves",
                format!("`{v}` is not a 12-digit village code"),
            );
        }
    }
    Some(Shelter {
        id,
        name,
        village,
        point: point?,
        capacity,
        serves,
    })
}

fn terminal(r: &mut Row<'_>) -> Option<Terminal> {
    let id = r.id("id");
    let village = r.code("village", Level::Village);
    let kind_text = r.required("kind");
    let kind = TerminalKind::parse(&kind_text);
    if kind.is_none() && !kind_text.is_empty() {
        r.problem(
            Severity::Error,
            "registry.kind",
            "kind",
            format!("`{kind_text}` is not ip, fm or cellular"),
        );
    }
    let point = r.point(false);
    Some(Terminal {
        id,
        village,
        name: r.text("name"),
        kind: kind?,
        point,
    })
}

fn person(r: &mut Row<'_>) -> Option<Person> {
    let id = r.id("id");
    let name = r.required("name");
    let raw = r.required("mobile");
    let mobile = normalise_mobile(&raw);
    if !raw.is_empty() && !is_mobile(&mobile) {
        r.problem(
            Severity::Error,
            "registry.phone",
            "mobile",
            format!("`{raw}` is not a mobile number (11 digits starting 13–19)"),
        );
    }
    let level_text = r.required("level");
    let level = Level::parse(&level_text);
    if level.is_none() && !level_text.is_empty() {
        r.problem(
            Severity::Error,
            "registry.level",
            "level",
            format!("`{level_text}` is not county, town, village or group"),
        );
    }
    let unit = r.required("unit");
    if let Some(l) = level
        && !unit.is_empty()
        && Level::of_code(&unit) != Some(l)
    {
        r.problem(
            Severity::Error,
            "registry.code",
            "unit",
            format!(
                "`{unit}` is not a {}-digit {l} code, as level `{level_text}` needs",
                l.code_len()
            ),
        );
    }
    Some(Person {
        id,
        name,
        mobile,
        level: level?,
        unit,
        role: r.required("role"),
        deputy: r.opt("deputy"),
        on_duty: r.boolean("on_duty", true),
        confirmed_on: r.date("confirmed_on"),
    })
}

fn duty(r: &mut Row<'_>) -> Option<Duty> {
    Some(Duty {
        person: r.required("person"),
        target: r.required("target"),
        role: r.required("role"),
    })
}
