//! The county registry: reading offices' files, finding every bad row where it is, importing
//! all or nothing, re-imports as diffs with history, the roster health report, and the spatial
//! index.

use std::path::{Path, PathBuf};
use std::process::Command;

use stormbell::registry::{self, Encoding, ImportError, Level, Registry, SiteKind, db, health};
use stormbell::store::Store;

use crate::common::backend::{Backend, Place, on_both};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/county")
}

fn broken() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/county-broken")
}

/// A copy of the fixture county to modify.
fn copy_fixture(dir: &Path) -> PathBuf {
    crate::common::county::copy_files(&dir.join("county"))
}

fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    match std::str::from_utf8(&bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::GB18030.decode(&bytes).0.into_owned(),
    }
}

/// Edit persons.csv, keeping it GBK as the office's Excel wrote it.
fn edit_gbk(path: &Path, f: impl FnOnce(String) -> String) {
    let text = f(read_text(path));
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(&text);
    assert!(!unmappable);
    std::fs::write(path, bytes).unwrap();
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = f(read_text(path));
    std::fs::write(path, text).unwrap();
}

fn rendered(dir: &Path) -> Vec<String> {
    let (_, findings) = registry::check_dir(dir, Encoding::Auto);
    findings.0.iter().map(|f| f.render()).collect()
}

fn tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()
}

fn at(date: &str) -> jiff::Zoned {
    format!("{date}T10:00:00+08:00[Asia/Shanghai]")
        .parse()
        .unwrap()
}

fn import(store: &Store, dir: &Path, when: &str) -> db::ImportReport {
    let prepared = registry::prepare_import(dir, Encoding::Auto, &|_| {}).unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            match &e {
                ImportError::Refused(f) => f.0.iter().map(|x| x.render()).collect::<Vec<_>>(),
                _ => vec![],
            }
        )
    });
    prepared.commit(store, "test", at(when)).unwrap()
}

#[test]
fn the_fixture_county_is_clean_and_has_the_promised_shape() {
    let (loaded, findings) = registry::check_dir(&fixture(), Encoding::Auto);
    assert!(
        findings.0.is_empty(),
        "{:?}",
        findings.0.iter().map(|f| f.render()).collect::<Vec<_>>()
    );
    let d = &loaded.data;
    assert_eq!(
        d.units.iter().filter(|u| u.level == Level::County).count(),
        1
    );
    assert_eq!(d.units[0].code, "331098");
    assert_eq!(
        d.units.iter().filter(|u| u.level == Level::Town).count(),
        15
    );
    assert!(
        (240..=265).contains(&d.villages.len()),
        "{}",
        d.villages.len()
    );
    let kinds = |k| d.sites.iter().filter(|s| s.kind == k).count();
    assert_eq!(
        (
            kinds(SiteKind::FlashFlood),
            kinds(SiteKind::GeoHazard),
            kinds(SiteKind::Waterlogging),
            kinds(SiteKind::Forest)
        ),
        (60, 40, 10, 8)
    );
    assert_eq!(d.shelters.len(), 30);
    assert!(
        (1100..=1400).contains(&d.persons.len()),
        "{}",
        d.persons.len()
    );
    assert!(d.persons.iter().all(|p| registry::is_mobile(&p.mobile)));
    // Every village has a loudspeaker; some villages and zones have outlines.
    for v in &d.villages {
        assert!(
            d.terminals.iter().any(|t| t.village == v.code),
            "{} has no terminal",
            v.code
        );
    }
    assert!(d.villages.iter().filter(|v| v.polygon.is_some()).count() >= 20);
    assert!(d.sites.iter().filter(|s| s.polygon.is_some()).count() >= 60);
    // On the coast where Lekima (28.3°N 121.4°E) and Hagupit (28.3°N 120.8°E) came ashore.
    for v in &d.villages {
        assert!(
            (28.0..28.65).contains(&v.point.lat) && (120.75..121.5).contains(&v.point.lon),
            "{}",
            v.code
        );
    }
    // persons.csv is the office's Excel export: GBK with Chinese headers.
    assert!(
        loaded
            .files
            .iter()
            .any(|(f, e)| f == "persons.csv" && *e == "GB18030")
    );
}

#[test]
fn every_mistake_in_the_broken_fixture_is_found_where_it_is() {
    let lines = rendered(&broken());
    let expect = [
        "villages.csv:3: lon: 28.312,121.118 (lon,lat) is outside China; longitude and latitude look swapped",
        "villages.csv:4: code: `331098101201` is already used on line 2",
        "villages.csv:5: town: unknown town code `331098109`",
        "sites.csv:3: villages: unknown village code `331098101299`",
        "sites.csv:3: id: site `GH001` (石溪村后山滑坡) has no responsible person in duties.csv",
        "sites.geojson: feature 1 (id FF001): invalid outline: polygon at index 0 is invalid: exterior ring has a self-intersection",
        "thresholds.csv:3: move_mm: move-now threshold 50 mm is below the prepare threshold 60 mm (立即转移 must be ≥ 准备转移)",
        "shelters.csv:2: serves: unknown village code `331098101277`",
        "terminals.csv:3: row has 4 fields, the header has 6",
        "persons.csv:4: mobile: `1380000003` is not a mobile number (11 digits starting 13–19)",
        "persons.csv:6: id: `P004` is already used on line 5",
        "persons.csv:6: deputy: unknown person `P009`",
        "duties.csv:8: target: unknown village code `331098101288`",
    ];
    for e in expect {
        assert!(
            lines.iter().any(|l| l == e),
            "missing: {e}\nall:\n{}",
            lines.join("\n")
        );
    }
    let errors: Vec<_> = lines.iter().filter(|l| !l.contains("warning:")).collect();
    assert_eq!(
        errors.len(),
        expect.len(),
        "unexpected errors (a cascade?):\n{}",
        lines.join("\n")
    );
}

#[test]
fn each_kind_of_bad_row_in_the_real_fixture_is_reported_alone() {
    // (file, what to replace, replacement, the line it must report)
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "thresholds.csv",
            "FF331098001,3h,any,60,80",
            "FF331098001,3h,any,60,55",
            "thresholds.csv:3: move_mm: move-now threshold 55 mm is below the prepare threshold 60 mm",
        ),
        (
            "shelters.csv",
            "\nSH331098002,",
            "\nSH331098001,",
            "shelters.csv:3: id: `SH331098001` is already used on line 2",
        ),
        (
            "villages.csv",
            "331098001001,牛岭社区,331098001,121.335662,28.296815",
            "331098001001,牛岭社区,331098001,121.335662,0",
            "villages.csv:2: lon: 121.335662,0 (lon,lat) is outside China",
        ),
        (
            "terminals.csv",
            "060133109800100101,331098001001,",
            "060133109800100101,331098001999,",
            "terminals.csv:2: village: unknown village code `331098001999`",
        ),
    ];
    for (file, from, to, expected) in cases {
        let d = copy_fixture(&dir.path().join(file.replace('.', "_")));
        edit(&d.join(file), |t| {
            assert!(t.contains(from), "{from} not in {file}");
            t.replacen(from, to, 1)
        });
        let lines = rendered(&d);
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{file}: expected `{expected}`, got:\n{}",
            lines.join("\n")
        );
        assert_eq!(
            lines.iter().filter(|l| !l.contains("warning:")).count(),
            1,
            "{}",
            lines.join("\n")
        );
    }
}

#[test]
fn an_id_with_a_control_character_is_refused_where_it_is() {
    // A NUL pasted from another system: ids are matched everywhere, and PostgreSQL's text
    // cannot hold one (it would be stored as U+FFFD and no longer match itself).
    let dir = tempfile::tempdir().unwrap();
    let d = copy_fixture(dir.path());
    let mut line = 0;
    edit_gbk(&d.join("persons.csv"), |t| {
        let mut t = t.trim_end().to_string();
        line = t.lines().count() + 1;
        t.push_str("\nP33109899\u{0}99,测试员,13800009999,县级,331098,值班员,,否,2026-03-15\n");
        t
    });
    let lines = rendered(&d);
    let expected =
        format!("persons.csv:{line}: 编号: \"P33109899\\099\" contains a control character");
    assert!(
        lines.iter().any(|l| l.starts_with(&expected)),
        "expected `{expected}`, got:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        lines.iter().filter(|l| !l.contains("warning:")).count(),
        1,
        "{}",
        lines.join("\n")
    );
}

#[test]
fn a_site_nobody_answers_for_and_a_malformed_phone_in_the_gbk_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = copy_fixture(dir.path());
    // Remove every duty for one landslide site.
    edit(&d.join("duties.csv"), |t| {
        t.lines()
            .filter(|l| !l.contains(",GH331098003,"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    // And mistype a phone number in the GBK file.
    edit_gbk(&d.join("persons.csv"), |t| {
        t.replacen("13800000010", "138000-0001", 1)
    });
    let lines = rendered(&d);
    assert!(
        lines.iter().any(|l| l.contains("sites.csv:")
            && l.contains("site `GH331098003`")
            && l.contains("no responsible person")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("persons.csv:11: 手机: `138000-0001` is not a mobile number")),
        "{lines:?}"
    );
}

#[test]
fn encodings_headers_and_missing_pieces() {
    let dir = tempfile::tempdir().unwrap();
    // GBK read as UTF-8 when told to: a clear error with the line, not garbage.
    let (_, f) = registry::check_dir(&fixture(), Encoding::Utf8);
    let e =
        f.0.iter()
            .find(|x| x.file == "persons.csv")
            .expect("an encoding finding");
    assert_eq!(e.code, "registry.encoding");
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("--encoding gbk"));
    // Chinese headers work in any file; an unknown column is a warning; a missing required one
    // is an error naming the headers it may have.
    let d = copy_fixture(&dir.path().join("a"));
    edit(&d.join("villages.csv"), |t| {
        t.replacen(
            "code,name,town,lon,lat",
            "行政区划代码,村名,乡镇代码,经度,纬度",
            1,
        )
    });
    edit(&d.join("shelters.csv"), |t| {
        t.replacen("capacity", "remarks", 1)
    });
    let lines = rendered(&d);
    assert!(lines.iter().any(|l| l == "shelters.csv:1: remarks: warning: unknown column, ignored (expected: id, name, village, lon, lat, capacity, serves)"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with(
            "shelters.csv:1: capacity: required column is missing (headed `capacity` or `容纳人数`"
        )),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("villages.csv")),
        "{lines:?}"
    );
    // A required file missing.
    let d = copy_fixture(&dir.path().join("b"));
    std::fs::remove_file(d.join("duties.csv")).unwrap();
    assert!(
        rendered(&d)
            .iter()
            .any(|l| l == "duties.csv: required file is missing")
    );
}

on_both! {
/// On PostgreSQL, "byte for byte" is every row of every table.
fn a_refused_import_leaves_the_database_byte_for_byte_unchanged(backend) {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let store = place.open();
    import(&store, &fixture(), "2026-03-01");
    assert!(
        store.close(std::time::Duration::from_secs(10)),
        "the store did not close"
    );
    let before = place.digest();
    let mut c = Command::new(env!("CARGO_BIN_EXE_stormbell"));
    place.env(&mut c, dir.path());
    let o = c
        .args(["registry", "import", broken().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("nothing was imported (the database is unchanged)")
    );
    assert_eq!(place.digest(), before, "the database changed");
    let wal = format!("{}-wal", place.at);
    assert!(
        backend == Backend::Postgres
            || !Path::new(&wal).exists()
            || std::fs::metadata(&wal).unwrap().len() == 0
    );
}
}

on_both! {
    fn a_failure_while_writing_rolls_the_whole_import_back(backend) {
        let dir = tempfile::tempdir().unwrap();
        let place = Place::new(backend);
        let store = place.open();
        import(&store, &fixture(), "2026-03-01");
        let snapshot = |store: &Store| {
            store
                .read_blocking(|c| {
                    let q = |sql: &str| c.query_row(sql, (), |r| r.get::<_, i64>(0));
                    Ok((
                        q("SELECT count(*) FROM reg_import")?,
                        q("SELECT count(*) FROM reg_record")?,
                        q("SELECT count(*) FROM reg_record WHERE valid_to IS NOT NULL")?,
                        q("SELECT count(*) FROM audit")?,
                    ))
                })
                .unwrap()
        };
        let before = snapshot(&store);
        // The disk "fills" halfway through writing duties.
        place
            .raw(
                "CREATE TRIGGER fail_midway BEFORE INSERT ON reg_record WHEN NEW.kind = 'duty'
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
                "CREATE FUNCTION fail_midway() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device (disk is full)'; END $$;
                 CREATE TRIGGER fail_midway BEFORE INSERT ON reg_record FOR EACH ROW
                   WHEN (NEW.kind = 'duty') EXECUTE FUNCTION fail_midway();",
                &[],
            )
            .unwrap();
        let d = copy_fixture(dir.path());
        edit(&d.join("duties.csv"), |t| {
            t.replacen("监测员\n", "监测员（兼）\n", 1)
        });
        edit(&d.join("villages.csv"), |t| t.replacen(",350,", ",351,", 1));
        let prepared = registry::prepare_import(&d, Encoding::Auto, &|_| {}).unwrap();
        let err = prepared
            .commit(&store, "test", at("2026-07-01"))
            .unwrap_err();
        assert!(err.to_string().contains("disk is full"), "{err}");
        assert_eq!(snapshot(&store), before, "a failed import left traces");
    }
}

#[test]
fn a_reimport_shows_the_new_village_head_and_keeps_who_answered_before() {
    reimport_on(Backend::Sqlite)
}

#[test]
fn a_reimport_shows_the_new_village_head_and_keeps_who_answered_before_on_postgresql() {
    reimport_on(Backend::Postgres)
}

fn reimport_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let store = place.open();
    let first = import(&store, &fixture(), "2026-03-01");
    assert_eq!(first.previous, None);

    // After the village election (换届) one village has a new head; someone changed phones;
    // a threshold was lowered after a review; a landslide site was closed after works.
    let reg = Registry::load(&store).unwrap();
    let village = reg
        .data
        .villages
        .iter()
        .find(|v| v.town.ends_with("108"))
        .unwrap()
        .code
        .clone();
    let (old_duty, old_head) = reg
        .duties_for(&village)
        .find(|(d, _)| d.role == "村防汛责任人")
        .map(|(d, p)| (d.clone(), p.unwrap().clone()))
        .unwrap();
    let phone_person = reg.data.persons[5].clone();
    let d = copy_fixture(dir.path());
    edit_gbk(&d.join("persons.csv"), |t| {
        let mut out = String::new();
        for line in t.lines() {
            if line.starts_with(&format!("{},", old_head.id)) {
                out.push_str(&format!(
                    "P33109899001,林新民,13800009001,村级,{village},村防汛责任人,{},是,2026-06-20\n",
                    old_head.deputy.clone().unwrap_or_default()
                ));
            } else if line.starts_with(&format!("{},", phone_person.id)) {
                out.push_str(&line.replacen(&phone_person.mobile, "13900001234", 1));
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    });
    edit(&d.join("duties.csv"), |t| {
        t.replace(&format!("{},", old_head.id), "P33109899001,")
    });
    edit(&d.join("thresholds.csv"), |t| {
        t.replacen("FF331098001,3h,any,60,80", "FF331098001,3h,any,55,75", 1)
    });
    edit(&d.join("sites.csv"), |t| {
        t.lines()
            .map(|l| {
                if l.starts_with("GH331098011,") {
                    let mut f: Vec<&str> = l.split(',').collect();
                    f[12] = "closed";
                    f[13] = "2026-06-01";
                    f[14] = "搬迁避让完成";
                    f.join(",") + "\n"
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });
    let second = import(&store, &d, "2026-07-01");
    assert_eq!(second.previous, Some(first.import_id));
    let find = |what: &str| {
        second
            .changes
            .iter()
            .filter(|c| c.what == what)
            .collect::<Vec<_>>()
    };
    let replaced = find("duty replaced");
    assert!(
        replaced.iter().any(|c| c.subject.contains(&village)
            && c.subject.contains("村防汛责任人")
            && c.detail
                == format!(
                    "{} ({}) → 林新民 (P33109899001)",
                    old_head.name, old_head.id
                )),
        "{replaced:?}"
    );
    assert_eq!(find("person added").len(), 1);
    assert_eq!(find("person removed").len(), 1);
    let phones = find("phone changed");
    assert_eq!(phones.len(), 1);
    assert_eq!(
        phones[0].detail,
        format!("{} → 13900001234", phone_person.mobile)
    );
    let th = find("threshold changed");
    assert_eq!(th.len(), 1);
    assert!(
        th[0]
            .detail
            .contains("准备转移 60 → 55 mm, 立即转移 80 → 75 mm"),
        "{th:?}"
    );
    let closed = find("site closed");
    assert_eq!(closed.len(), 1);
    assert!(
        closed[0].subject.starts_with("GH331098011") && closed[0].detail.contains("2026-06-01"),
        "{closed:?}"
    );
    // Nothing else changed.
    let persons = second.counts.iter().find(|c| c.kind == "persons").unwrap();
    assert_eq!((persons.added, persons.changed, persons.removed), (1, 1, 1));

    // History: who answered for the village on a date before and after.
    let tz = tz();
    let tz2 = tz.clone();
    let before = store
        .read_blocking(move |c| db::import_on(c, "2026-05-01".parse()?, &tz))
        .unwrap();
    let after = store
        .read_blocking(move |c| db::import_on(c, "2026-08-01".parse()?, &tz2))
        .unwrap();
    assert_eq!(
        (before, after),
        (Some(first.import_id), Some(second.import_id))
    );
    let v2 = village.clone();
    let then = store
        .read_blocking(move |c| db::responsible(c, &v2, first.import_id))
        .unwrap();
    assert!(then.iter().any(|(d, p)| *d == old_duty
        && p.as_ref().map(|p| p.mobile.as_str()) == Some(old_head.mobile.as_str())));
    let v3 = village.clone();
    let now = store
        .read_blocking(move |c| db::responsible(c, &v3, second.import_id))
        .unwrap();
    assert!(
        now.iter().any(
            |(d, p)| d.role == "村防汛责任人" && p.as_ref().is_some_and(|p| p.name == "林新民")
        )
    );
    assert!(!now.iter().any(|(d, _)| d.person == old_head.id));

    // A third import of the same folder changes nothing.
    let third = import(&store, &d, "2026-07-02");
    assert!(third.changes.is_empty(), "{:?}", third.changes);
    // Each import is in the audit trail.
    let kinds: Vec<String> = store
        .read_blocking(|c| Ok(stormbell::store::audit::since(c, 1, 100)?))
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, ["registry.imported"; 3]);
}

#[test]
fn the_health_report_finds_exactly_the_fixtures_gaps() {
    let (loaded, _) = registry::check_dir(&fixture(), Encoding::Auto);
    let since: jiff::civil::Date = "2025-11-01".parse().unwrap();
    let gaps = health::report(&loaded.data, health::HealthLimits::default(), Some(since));
    let mut checks: Vec<&str> = gaps.iter().map(|g| g.check).collect();
    checks.sort();
    assert_eq!(
        checks,
        [
            "shared-phone",
            "shelter-short",
            "unconfirmed",
            "unconfirmed"
        ],
        "{gaps:#?}"
    );
    // And each kind of gap is found when it is there.
    let mut d = loaded.data.clone();
    d.duties.retain(|u| u.target != d.villages[3].code);
    let busy = d.persons[10].id.clone();
    for s in d.sites.iter().take(8) {
        d.duties.push(registry::Duty {
            person: busy.clone(),
            target: s.id.clone(),
            role: "监测人".into(),
        });
    }
    d.terminals.retain(|t| t.village != d.villages[7].code);
    let gaps = health::report(&d, health::HealthLimits::default(), None);
    for (check, needle) in [
        ("village-unanswered", d.villages[3].code.as_str()),
        ("overloaded-person", busy.as_str()),
        ("village-no-terminal", d.villages[7].code.as_str()),
    ] {
        assert!(
            gaps.iter()
                .any(|g| g.check == check && g.subject.contains(needle)),
            "{check}: {gaps:#?}"
        );
    }
}

#[test]
fn the_spatial_index_agrees_with_brute_force() {
    let (loaded, _) = registry::check_dir(&fixture(), Encoding::Auto);
    let reg = Registry::new(loaded.data);
    let d = &reg.data;
    assert_eq!(reg.index.village_count(), d.villages.len());
    let km = registry::geo::km_between;
    let mut seed = 7u64;
    let mut rnd = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..200 {
        let (lon, lat, r) = (120.7 + rnd() * 0.9, 27.95 + rnd() * 0.75, rnd() * 30.0);
        let mut got = reg.index.villages_within(d, lon, lat, r);
        got.sort();
        let want: Vec<usize> = (0..d.villages.len())
            .filter(|&i| km(d.villages[i].point.lon, d.villages[i].point.lat, lon, lat) <= r)
            .collect();
        assert_eq!(got, want, "circle {lon},{lat} r={r}");
        let near = reg.index.nearest_villages(lon, lat, 5);
        let mut all: Vec<(f64, usize)> = (0..d.villages.len())
            .map(|i| {
                (
                    km(d.villages[i].point.lon, d.villages[i].point.lat, lon, lat),
                    i,
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(near, all.iter().take(5).map(|x| x.1).collect::<Vec<_>>());
    }
    // A point inside a zone's outline finds that zone.
    for (i, s) in d
        .sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.polygon.is_some())
    {
        use geo::Centroid;
        let c = s.polygon.as_ref().unwrap().centroid().unwrap();
        assert!(
            reg.index.zones_at(d, c.x(), c.y(), 0.0).contains(&i),
            "{}",
            s.id
        );
    }
}

on_both! {
fn the_registry_commands_as_an_officer_uses_them(backend) {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let run = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stormbell"));
        place.env(&mut c, dir.path());
        c.args(args).output().unwrap()
    };
    let o = run(&["registry", "check", fixture().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let o = run(&["registry", "check", broken().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() >= 13);
    let o = run(&["registry", "import", fixture().to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("first import"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("villages") && l.contains("251")),
        "{out}"
    );
    let o = run(&["registry", "stats"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("flash_flood    60 active"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v = std::fs::read_to_string(fixture().join("sites.csv")).unwrap();
    let village = v
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(3)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let o = run(&["registry", "show", &village]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("村防汛责任人") && out.contains("准备转移") && out.contains("terminal"),
        "{out}"
    );
    let o = run(&["registry", "show", &village, "--on", "2020-01-01"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing had been imported by 2020-01-01"));
    let o = run(&["registry", "health"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("shared-phone (1)") && out.contains("shelter-short (1)"),
        "{out}"
    );
}
}

#[test]
fn a_city_office_registers_several_counties_but_every_town_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = copy_fixture(dir.path());
    edit(&d.join("units.csv"), |t| {
        t + "331099,西溟县,county,\n331099101,东山镇,town,331099\n331099102,北山镇,town,999999\n331099103,南山镇,town,331098\n"
    });
    let lines = rendered(&d);
    let errors: Vec<&String> = lines.iter().filter(|l| !l.contains("warning:")).collect();
    assert_eq!(
        errors,
        [
            "units.csv:20: parent: unknown county code `999999`",
            "units.csv:21: code: town `331099103` is not inside its county `331098`",
        ],
        "{lines:#?}"
    );
}

// Imported on either engine, the layers come back with the registry in force.
on_both! {
    fn base_map_layers_are_read_kept_with_the_import_and_a_broken_feature_is_named(backend) {
        let dir = tempfile::tempdir().unwrap();
        let county = crate::common::county::copy_files(&dir.path().join("county"));
        // One river feature broken (a point is no course), one outside China: both named as
        // warnings, the other rivers kept.
        let text = std::fs::read_to_string(county.join("rivers.geojson")).unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let features = doc["features"].as_array_mut().unwrap();
        let rivers = features.len();
        features.push(
            serde_json::json!({"type": "Feature", "properties": {"name": "断溪"},
            "geometry": {"type": "Point", "coordinates": [120.9, 28.2]}}),
        );
        features.push(
            serde_json::json!({"type": "Feature", "properties": {"name": "远河"},
            "geometry": {"type": "LineString", "coordinates": [[2.35, 48.85], [2.36, 48.86]]}}),
        );
        std::fs::write(county.join("rivers.geojson"), doc.to_string()).unwrap();
        let (loaded, findings) = registry::check_dir(&county, Encoding::Auto);
        let layer: Vec<_> = findings
            .0
            .iter()
            .filter(|f| f.code == "registry.layer")
            .collect();
        assert_eq!(layer.len(), 2, "{layer:?}");
        assert!(layer.iter().all(|f| f.file == "rivers.geojson"));
        assert!(
            layer
                .iter()
                .any(|f| f.column == format!("feature {}", rivers + 1))
        );
        assert!(layer.iter().any(|f| f.message.contains("outside China")));
        let kept = |kind: &str| {
            loaded
                .data
                .layers
                .iter()
                .filter(|l| l.kind.as_str() == kind)
                .count()
        };
        assert_eq!(kept("rivers"), rivers);
        assert!(kept("towns") >= 4 && kept("roads") >= 3 && kept("coast") == 1);
        // Imported, they come back with the registry in force.
        let place = Place::new(backend);
        let store = place.open();
        let reg = crate::common::county::registry(&store);
        let back = Registry::load(&store).unwrap();
        assert_eq!(back.data.layers, reg.data.layers);
        assert!(
            back.data
                .layers
                .iter()
                .any(|l| l.name.as_deref() == Some("东溟江"))
        );
    }
}
