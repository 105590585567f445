//! The rules that keep the map true (ARCHITECTURE.md), checked on the source itself:
//!
//! - a table's name appears in SQL only in the module that owns it;
//! - the stages' imports run one way: feeds, registry, cap and store import nothing from a
//!   later stage, and no stage imports one after it;
//! - no state column holds a value its Rust enum does not name (the CHECK constraints and the
//!   enums list the same values);
//! - nothing in the repository reads or cites the shared folder beside the project (all it
//!   needs is in tests/data and docs/), and the docs carry no issue-number status text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends with one of `exts`, relative to the root.
fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    fn walk(d: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_dir() {
                if !matches!(name, "target" | "node_modules" | ".git" | "data" | ".venv") {
                    walk(&p, exts, out);
                }
            } else if exts.iter().any(|x| name.ends_with(x)) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), exts, &mut out);
    out.sort();
    out.into_iter()
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .collect()
}

/// The string literals of a Rust source (plain and raw), outside comments.
fn strings(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'\'' => {
                // A char literal ('"', '\'') or a lifetime: skip what cannot open a string.
                if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') {
                    i += 4;
                } else {
                    i += 1;
                }
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let start = j + 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let mut k = start;
                while k + close.len() <= b.len() && b[k..k + close.len()] != close[..] {
                    k += 1;
                }
                out.push(src[start..k.min(b.len())].to_string());
                i = k + close.len();
            }
            b'"' => {
                let start = i + 1;
                let mut k = start;
                while k < b.len() && b[k] != b'"' {
                    if b[k] == b'\\' {
                        k += 1;
                    }
                    k += 1;
                }
                out.push(src[start..k.min(b.len())].to_string());
                i = k + 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether a string literal is SQL (and not a message that names a table in passing).
fn is_sql(s: &str) -> bool {
    [
        "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "FROM", "JOIN",
    ]
    .iter()
    .any(|k| has_word(s, k))
}

fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !part(before) && !part(after)
    })
}

/// Which module owns each table: a path prefix under src/. (ARCHITECTURE.md, "A module owns
/// its tables".)
fn owners() -> Vec<(&'static str, &'static str)> {
    vec![
        ("audit", "src/store/audit.rs"),
        ("reg_import", "src/registry/db.rs"),
        ("reg_record", "src/registry/db.rs"),
        ("feed_state", "src/feeds/state.rs"),
        ("feed_seen", "src/feeds/state.rs"),
        ("feed_doc", "src/feeds/state.rs"),
        ("feed_cap", "src/feeds/state.rs"),
        ("feed_inbox", "src/feeds/state.rs"),
        ("feed_refused", "src/feeds/state.rs"),
        ("corr_lineage", "src/correlate/store.rs"),
        ("corr_decision", "src/correlate/store.rs"),
        ("corr_warning", "src/correlate/store.rs"),
        ("dispatch_message", "src/dispatch/outbox"),
        ("dispatch_part", "src/dispatch/outbox"),
        ("dispatch_inbound", "src/dispatch/outbox"),
        ("dispatch_bind", "src/dispatch/outbox"),
        ("dispatch_secret", "src/dispatch/outbox"),
        ("dispatch_id_form", "src/dispatch/outbox"),
        ("dispatch_mo_part", "src/dispatch/outbox"),
        ("dispatch_link", "src/dispatch/outbox"),
        ("dispatch_call", "src/dispatch/outbox"),
        ("broadcast_job", "src/dispatch/broadcast/jobs.rs"),
        ("broadcast_target", "src/dispatch/broadcast/jobs.rs"),
        ("broadcast_terminal", "src/dispatch/broadcast/jobs.rs"),
        ("broadcast_link", "src/dispatch/broadcast/jobs.rs"),
        ("broadcast_alarm", "src/dispatch/broadcast/jobs.rs"),
        ("respond_call", "src/respond/"),
        ("respond_step", "src/respond/"),
        ("respond_answer", "src/respond/"),
        ("respond_evacuation", "src/respond/"),
        ("respond_cursor", "src/respond/"),
        ("respond_shelter_alert", "src/respond/"),
        ("web_secret", "src/web/mod.rs"),
        ("web_user", "src/web/auth.rs"),
        ("web_session", "src/web/auth.rs"),
        ("drill_run", "src/drill/"),
        ("drill_receipt", "src/drill/"),
        ("drill_plan", "src/drill/"),
    ]
}

#[test]
fn every_table_is_named_in_sql_only_by_the_module_that_owns_it() {
    // Every table the migrations create has an owner here.
    let mut created = Vec::new();
    for f in files("src/store/migrations", &[".sql"]) {
        let sql = std::fs::read_to_string(root().join(&f)).unwrap();
        for line in sql.lines() {
            if let Some(rest) = line.trim().strip_prefix("CREATE TABLE ") {
                let name = rest.split_whitespace().next().unwrap_or("");
                if !name.ends_with("_new") {
                    created.push(name.to_string());
                }
            }
        }
    }
    let owners = owners();
    for t in &created {
        assert!(
            owners.iter().any(|(o, _)| o == t),
            "table {t} has no owner in the tidy test (and ARCHITECTURE.md)"
        );
    }
    let mut trespass: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files("src", &[".rs"]) {
        let path = f.to_string_lossy().to_string();
        let src = std::fs::read_to_string(root().join(&f)).unwrap();
        // A module's own unit tests may look into any table.
        let src = src.split("#[cfg(test)]").next().unwrap_or("");
        for s in strings(src).iter().filter(|s| is_sql(s)) {
            for (table, owner) in &owners {
                if has_word(s, table) && !path.starts_with(owner) {
                    trespass
                        .entry(path.clone())
                        .or_default()
                        .push(table.to_string());
                }
            }
        }
    }
    for v in trespass.values_mut() {
        v.sort();
        v.dedup();
    }
    assert!(
        trespass.is_empty(),
        "tables named in SQL outside the module that owns them (use its functions): {trespass:#?}"
    );
}

/// The stages in the order data flows through them. A module may import those before it
/// (and itself), never one after: `config` composes everything for the command line, `daemon`
/// wires the stages, `drill` runs the daemon's pipeline.
fn ranks() -> Vec<(&'static str, u32)> {
    vec![
        ("runtime", 0),
        ("store", 0),
        ("text", 0),
        ("cap", 1),
        ("templates", 1),
        ("http", 1),
        ("registry", 2),
        ("feeds", 3),
        ("correlate", 4),
        ("dispatch", 5),
        ("respond", 6),
        ("web", 7),
        ("supervise", 7),
        ("retention", 7),
        ("daemon", 8),
        ("drill", 9),
        ("config", 10),
    ]
}

#[test]
fn the_stages_import_one_way() {
    let ranks = ranks();
    let rank = |m: &str| ranks.iter().find(|(n, _)| *n == m).map(|(_, r)| *r);
    let mut backwards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files("src", &[".rs"]) {
        let path = f.to_string_lossy().to_string();
        let Some(rest) = path.strip_prefix("src/") else {
            continue;
        };
        let module = rest
            .split(['/', '.'])
            .next()
            .unwrap_or_default()
            .to_string();
        let Some(own) = rank(&module) else {
            // main.rs, lib.rs, cli/: the binary may use everything.
            continue;
        };
        let src = std::fs::read_to_string(root().join(&f)).unwrap();
        let src = src.split("#[cfg(test)]").next().unwrap_or("");
        // Code only: a doc comment may point a reader anywhere.
        let src: String = src
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (at, _) in src.match_indices("crate::") {
            let name: String = src[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == module {
                continue;
            }
            if let Some(theirs) = rank(&name)
                && theirs >= own
            {
                backwards
                    .entry(path.clone())
                    .or_default()
                    .push(name.clone());
            }
        }
    }
    for v in backwards.values_mut() {
        v.sort();
        v.dedup();
    }
    assert!(
        backwards.is_empty(),
        "imports against the flow (a stage may use only those before it): {backwards:#?}"
    );
}

/// Every text file of the repository (not the copied material in tests/data, not built or
/// installed things).
fn repository_text() -> Vec<PathBuf> {
    let mut all = Vec::new();
    for dir in [
        "src",
        "tests",
        "bench",
        "scripts",
        "fixtures",
        "config",
        "docs",
        "templates",
        "fuzz",
        ".ci",
    ] {
        all.extend(files(
            dir,
            &[
                ".rs", ".md", ".toml", ".py", ".sh", ".js", ".j2", ".sql", ".json", ".csv", "run",
                "test", "demo",
            ],
        ));
    }
    for f in ["README.md", "ARCHITECTURE.md", "Cargo.toml"] {
        all.push(PathBuf::from(f));
    }
    all.retain(|f| !f.starts_with("tests/data"));
    all
}

#[test]
fn the_repository_reads_and_cites_nothing_beside_it() {
    let needle = ["..", "/shared"].concat();
    let offenders: Vec<String> = repository_text()
        .into_iter()
        .filter(|f| {
            std::fs::read(root().join(f))
                .map(|b| String::from_utf8_lossy(&b).contains(&needle))
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these read or cite {needle} (bring the material into tests/data or docs/): {offenders:?}"
    );
}

#[test]
fn docs_and_code_carry_no_issue_number_status_text() {
    let mut found = Vec::new();
    for f in repository_text() {
        let Ok(text) = std::fs::read_to_string(root().join(&f)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let l = line.to_ascii_lowercase();
            let numbered = |prefix: &str| {
                l.match_indices(prefix).any(|(at, _)| {
                    l[at + prefix.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit())
                })
            };
            if numbered("issue #") || numbered("issue ") && l.contains("issue #") || numbered("(#")
            {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "status by issue number belongs in the issues, not in the repository:\n{}",
        found.join("\n")
    );
}

// On both engines: a state added to an enum but not to one engine's schema would be refused
// there only, mid-storm.
crate::common::backend::on_both! {
    fn every_state_column_allows_exactly_its_enums_values(backend) {
        use stormbell::dispatch::broadcast::jobs::{JobState, TargetState};
        use stormbell::dispatch::outbox::{MessageState, PartState};
        use stormbell::respond::calls::{CallState, StepState};
        use crate::common::backend::{Backend, Place};
        let place = Place::new(backend);
        let store = place.open();
        let tables: Vec<(&str, Vec<&str>)> = vec![
            (
                "dispatch_message",
                MessageState::ALL.iter().map(|s| s.as_str()).collect(),
            ),
            (
                "dispatch_part",
                PartState::ALL.iter().map(|s| s.as_str()).collect(),
            ),
            (
                "respond_call",
                CallState::ALL.iter().map(|s| s.as_str()).collect(),
            ),
            (
                "respond_step",
                StepState::ALL.iter().map(|s| s.as_str()).collect(),
            ),
            (
                "broadcast_job",
                JobState::ALL.iter().map(|s| s.as_str()).collect(),
            ),
            (
                "broadcast_target",
                TargetState::ALL.iter().map(|s| s.as_str()).collect(),
            ),
        ];
        for (table, values) in tables {
            let mut allowed: Vec<String> = match backend {
                Backend::Sqlite => {
                    let sql: String = store
                        .read_blocking(move |c| {
                            Ok(c.query_row(
                                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                                [table],
                                |r| r.get(0),
                            )?)
                        })
                        .unwrap();
                    let check = sql
                        .split("CHECK (state IN (")
                        .nth(1)
                        .and_then(|s| s.split("))").next())
                        .unwrap_or_else(|| panic!("{table} has no CHECK on its state: {sql}"));
                    check
                        .split(',')
                        .map(|v| v.trim().trim_matches('\'').to_string())
                        .collect()
                }
                // CHECK ((state = ANY (ARRAY['queued'::text, 'submitting'::text, …])))
                Backend::Postgres => {
                    let def: String = store
                        .read_blocking(move |c| {
                            Ok(c.query_row(
                                "SELECT pg_get_constraintdef(oid) FROM pg_constraint
                                 WHERE conrelid = CAST(CAST(?1 AS text) AS regclass) AND contype = 'c'
                                   AND pg_get_constraintdef(oid) LIKE 'CHECK ((state %'",
                                [table],
                                |r| r.get(0),
                            )?)
                        })
                        .unwrap_or_else(|e| panic!("{table} has no CHECK on its state: {e}"));
                    def.split('\'').skip(1).step_by(2).map(str::to_string).collect()
                }
            };
            let mut named: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            allowed.sort();
            named.sort();
            assert_eq!(allowed, named, "{table}");
        }
        // And the constraint holds: a state no enum names is refused.
        let t = crate::common::dispatch::targets(
            "geo_hazard:331098101",
            1,
            stormbell::correlate::Hazard::GeoHazard,
            stormbell::correlate::Tier::Orange,
            stormbell::correlate::lifecycle::MessageKind::Alert,
            vec![crate::common::dispatch::contact(1, "13700000001")],
        );
        store
            .write_blocking(move |tx| {
                stormbell::dispatch::outbox::enqueue(
                    tx,
                    1,
                    &t,
                    jiff::Timestamp::now(),
                    &stormbell::dispatch::outbox::Policy::default(),
                )
            })
            .unwrap();
        let refused = store
            .write_blocking(|tx| Ok(tx.execute("UPDATE dispatch_message SET state = 'sent'", ())?));
        let why = refused
            .expect_err("a state outside the enum is refused")
            .to_string();
        assert!(why.to_lowercase().contains("check"), "{why}");
    }
}

#[test]
fn every_csv_the_project_writes_goes_through_the_formula_guard() {
    // One writer (`text::CsvOut`) guards every cell; a `csv::Writer` anywhere else would
    // write what people typed as live spreadsheet formulas.
    let offenders: Vec<String> = files("src", &[".rs"])
        .into_iter()
        .filter(|f| !f.ends_with("text.rs"))
        .filter(|f| {
            std::fs::read_to_string(root().join(f))
                .map(|s| s.contains("csv::Writer") || s.contains("csv::WriterBuilder"))
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "write CSV with stormbell::text::CsvOut: {offenders:?}"
    );
}

/// A string literal as the program sees it: `\"` and `\\` unescaped, a `\` at a line's end
/// joining the next line without its indentation.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\n') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[test]
fn every_statement_in_the_source_prepares_on_postgresql() {
    // The statements the stages run, as written (a format string's holes cannot be prepared
    // and are left to the tests that run them); the store's own SQLite housekeeping aside.
    // (sl323.rs reads a bureau's own database, not ours; sql.rs's literals are its tests;
    // migrations.rs runs its PostgreSQL batch itself.)
    let not_ours = [
        "src/store/mod.rs",
        "src/store/backup.rs",
        "src/store/sql.rs",
        "src/store/migrations.rs",
        "src/feeds/sl323.rs",
    ];
    let mut statements: Vec<(PathBuf, String)> = Vec::new();
    for f in files("src", &[".rs"]) {
        if not_ours.iter().any(|s| f == Path::new(s)) {
            continue;
        }
        let src = std::fs::read_to_string(root().join(&f)).unwrap();
        for s in strings(&src) {
            let sql = unescape(&s);
            // Keywords in capitals, as every statement here writes them (a message that begins
            // "Update and Cancel …" is not one).
            let head = sql.trim_start();
            let statement = ["SELECT ", "INSERT ", "UPDATE ", "DELETE ", "WITH "]
                .iter()
                .any(|k| head.starts_with(k));
            // (Several statements in one string are a batch sent as a simple query, never
            // prepared.)
            if statement && !sql.contains('{') && !sql.contains("sqlite_") && !sql.contains(';') {
                statements.push((f.clone(), sql));
            }
        }
    }
    assert!(
        statements.len() > 300,
        "only {} statements found",
        statements.len()
    );
    let place = crate::common::backend::Place::new(crate::common::backend::Backend::Postgres);
    drop(place.open());
    let url = place.at.clone();
    let refused = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        // SQLite's planner hint on a text column is one such: it must be refused here, not
        // translated away (see `sql::tests::a_unary_plus_is_left_as_written`).
        let hint = "SELECT id FROM dispatch_message WHERE +state = 'queued'";
        assert!(
            c.prepare(&stormbell::store::sql::translate(hint)).is_err(),
            "{hint}"
        );
        let mut refused = Vec::new();
        for (f, sql) in &statements {
            let translated = stormbell::store::sql::translate(sql);
            if let Err(e) = c.prepare(&translated) {
                let why = e
                    .as_db_error()
                    .map_or(e.to_string(), |d| d.message().to_string());
                let one_line = translated.split_whitespace().collect::<Vec<_>>().join(" ");
                refused.push(format!("{}: {why}\n    {one_line}", f.display()));
            }
        }
        refused
    })
    .join()
    .unwrap();
    assert!(
        refused.is_empty(),
        "{} statements PostgreSQL refuses:\n{}",
        refused.len(),
        refused.join("\n")
    );
}
