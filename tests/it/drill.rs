//! `stormbell replay` over the shipped scenarios, as a drill officer runs it: the outputs are
//! the same byte for byte from run to run, every CAP file is valid (our validator with the
//! Google profile, and xmllint with the official XSD), each scenario's summary says what its
//! design says should happen, and a replay killed with SIGKILL mid-typhoon and started again
//! finishes with no warning or message lost or doubled.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn bin() -> Command {
    common::stormbell_bare()
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/scenarios")
        .join(name)
}

/// Run a replay to the end; its output folder.
fn replay(name: &str, out: &Path) {
    replay_on(name, out, None)
}

/// Run a replay to the end into `out` on SQLite and, beside it, on PostgreSQL (into a sibling
/// folder), side by side: the PostgreSQL run is the slower, a round trip a statement. Every
/// file the two write must be the same, byte for byte (which also says a replay is
/// deterministic: the two runs share nothing). Returns the files, by name.
fn replay_on_both(name: &str, out: &Path) -> BTreeMap<String, Vec<u8>> {
    let on_pg = out.with_extension("postgres");
    let url = common::postgres::database();
    std::thread::scope(|s| {
        s.spawn(|| replay(name, out));
        replay_on(name, &on_pg, Some(&url));
    });
    let (fa, fb) = (files(out), files(&on_pg));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(fb[k] == *v, "{k} differs between SQLite and PostgreSQL");
    }
    fa
}

/// Run a replay to the end on the database `db` names (a SQLite file or a PostgreSQL URL;
/// `None`: a file in the output folder).
fn replay_on(name: &str, out: &Path, db: Option<&str>) {
    let mut cmd = bin();
    cmd.args(["replay", "--scenario"])
        .arg(scenario(name))
        .arg("--out")
        .arg(out);
    if let Some(db) = db {
        cmd.args(["--db", db]);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn summary(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

fn jsonl(out: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(out.join(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every file under `dir` (relative path → bytes), the database and log left out.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if rel.starts_with("drill.") {
                continue;
            }
            out.insert(rel, std::fs::read(&p).unwrap());
        }
    }
    out
}

/// Every CAP file of a drill passes our validator with the Google profile and xmllint with
/// the official CAP 1.2 schema; returns how many there were.
fn cap_files_are_valid(out: &Path) -> usize {
    let mut caps: Vec<PathBuf> = std::fs::read_dir(out.join("cap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    caps.sort();
    assert!(!caps.is_empty(), "no CAP written");
    for chunk in caps.chunks(200) {
        let o = bin()
            .args(["cap", "validate", "--profile", "google"])
            .args(chunk)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.ends_with(": ok")).count(),
            chunk.len()
        );
        let o = Command::new("xmllint")
            .args(["--noout", "--nonet", "--schema"])
            .arg(common::external().join("schema/CAP-v1.2.xsd"))
            .args(chunk)
            .output()
            .expect("xmllint is not installed: run ./scripts/test");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Every one is marked as an exercise.
    for p in &caps {
        let xml = std::fs::read_to_string(p).unwrap();
        assert!(xml.contains("<status>Exercise</status>"), "{}", p.display());
    }
    caps.len()
}

/// What is true of every finished drill, whatever the storm.
fn finished_drill_holds_together(out: &Path) {
    let s = summary(out);
    // Each village once, its registered figure: with every village of the county warned, the
    // county's to-move is the registry's total (villages.csv `evacuate`), and moved never
    // exceeds it.
    let e = &s["evacuation"];
    let registered: i64 = {
        let county = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county/villages.csv");
        let mut r = csv::Reader::from_path(county).unwrap();
        let col = r
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "evacuate")
            .unwrap();
        r.records()
            .map(|x| x.unwrap()[col].parse::<i64>().unwrap())
            .sum()
    };
    if e["places"] == 251 {
        assert_eq!(e["to_move"], registered, "{e}");
    } else {
        assert!(e["to_move"].as_i64().unwrap() <= registered, "{e}");
    }
    assert!(
        e["moved"].as_i64().unwrap() <= e["to_move"].as_i64().unwrap(),
        "{e}"
    );
    // Nothing doubled: the drill's network accepts in the transaction that claims.
    assert_eq!(s["possible_duplicates"], 0);
    let lines = jsonl(out, "dispatch.jsonl");
    assert!(!lines.is_empty());
    let mut ids = BTreeSet::new();
    for l in &lines {
        assert!(ids.insert(l["id"].as_i64().unwrap()), "{l}");
        let state = l["state"].as_str().unwrap();
        // Nothing left half-way, except what was accepted in the drill's last minutes.
        assert!(
            [
                "delivered",
                "failed",
                "merged",
                "superseded",
                "expired",
                "skipped",
                "accepted"
            ]
            .contains(&state),
            "{l}"
        );
        let text = l["text"].as_str().unwrap();
        // Texts say they are a drill, and carry no live link token.
        assert!(
            text.contains("演练") || text.contains("DRILL") || text.contains("drill"),
            "{text}"
        );
        if let Some(i) = text.find("/r/") {
            assert!(text[i + 3..].starts_with('~'), "{text}");
        }
    }
    // Every answer names a person (their number is known).
    let answers: Vec<Value> = jsonl(out, "responses.jsonl")
        .into_iter()
        .filter(|r| r["type"] == "answer")
        .collect();
    assert!(!answers.is_empty());
    for a in &answers {
        assert!(a["person"].is_string(), "{a}");
    }
    // Times carry the office's zone, in order.
    let times: Vec<String> = jsonl(out, "responses.jsonl")
        .iter()
        .map(|r| r["at"].as_str().unwrap().to_string())
        .collect();
    assert!(
        times.iter().all(|t| t.ends_with("+08:00")),
        "{:?}",
        &times[..3]
    );
    let parsed: Vec<jiff::Timestamp> = times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.starts_with("# 演练总结"), "{report}");
    assert!(std::fs::read_dir(out.join("reports")).unwrap().count() > 0);
}

/// Gauges (code → lon, lat, greatest hourly total) from a scenario's rain snapshots.
fn gauges(dir: &Path) -> BTreeMap<String, (f64, f64, f64)> {
    let mut g: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("feeds/rain")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (lon, lat, mm): (f64, f64, f64) = (
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[5].parse().unwrap_or(0.0),
            );
            let e = g.entry(f[0].to_string()).or_insert((lon, lat, 0.0));
            e.2 = e.2.max(mm);
        }
    }
    g
}

fn km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let dx = (b.0 - a.0) * 111.32 * ((a.1 + b.1) / 2.0).to_radians().cos();
    let dy = (b.1 - a.1) * 110.57;
    dx.hypot(dy)
}

#[test]
fn the_convective_cell_warns_only_under_the_cell_and_replays_byte_for_byte_on_both_engines() {
    // The same drill on SQLite and on PostgreSQL: every file it writes is the same, byte for
    // byte (which also says a replay is deterministic: the two runs share nothing).
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let fa = replay_on_both("cell-2024", &a);
    for k in [
        "summary.json",
        "dispatch.jsonl",
        "responses.jsonl",
        "report.md",
    ] {
        assert!(fa.contains_key(k), "{k} missing");
    }
    finished_drill_holds_together(&a);
    let n = cap_files_are_valid(&a);

    let s = summary(&a);
    let w = &s["warnings"];
    // Flash floods (and the rain and slopes that go with them); no typhoon, nothing relayed.
    assert_eq!(w["highest"]["flash_flood"], "red");
    for h in ["typhoon", "upstream", "wildfire"] {
        assert!(w["lineages"].get(h).is_none(), "{h}: {w}");
    }
    assert_eq!(
        w["in_force_at_end"], 0,
        "the drill runs until every warning is lifted"
    );
    assert_eq!(w["lifted"].as_i64().unwrap(), w["total"].as_i64().unwrap());
    assert_eq!(
        n as i64,
        w["issued"].as_i64().unwrap() + w["lifted"].as_i64().unwrap()
    );
    // Warned only where it rained hard: each flash-flood zone warned has, among its two
    // nearest gauges within 10 km (the rule's), one that measured at least its 1 h 准备转移
    // threshold; and no zone far from the cell's centre was warned.
    let g = gauges(&scenario("cell-2024"));
    let sites: BTreeMap<String, (f64, f64)> = csv::Reader::from_path(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/county/sites.csv"),
    )
    .unwrap()
    .records()
    .map(|r| {
        let r = r.unwrap();
        (
            r[0].to_string(),
            (r[4].parse().unwrap(), r[5].parse().unwrap()),
        )
    })
    .collect();
    let warned: BTreeSet<String> = jsonl(&a, "dispatch.jsonl")
        .iter()
        .filter_map(|l| {
            l["warning"]
                .as_str()?
                .strip_prefix("flash_flood:")
                .map(str::to_string)
        })
        .collect();
    assert!(warned.len() >= 5, "{warned:?}");
    let wettest = g.values().map(|x| x.2).fold(0.0, f64::max);
    for site in &warned {
        let at = sites[site];
        let mut near: Vec<(f64, f64)> = g
            .values()
            .map(|(lon, lat, mm)| (km(at, (*lon, *lat)), *mm))
            .filter(|(d, _)| *d <= 10.0)
            .collect();
        near.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert!(
            near.iter().take(2).any(|(_, mm)| *mm >= 35.0),
            "{site} warned without heavy rain at its gauges: {near:?}"
        );
    }
    assert!(wettest >= 60.0);
    // People were moved, no more than were to move, and back home after the lift.
    let e = &s["evacuation"];
    let (to_move, moved) = (e["to_move"].as_i64().unwrap(), e["moved"].as_i64().unwrap());
    assert!(moved > 0 && moved <= to_move, "{e}");
    assert_eq!(e["returned"], e["moved"], "{e}");
    // Answers came by both channels, and somebody answered nearly every call.
    let ack = &s["acknowledgement"];
    assert!(ack["by_channel"]["sms"].as_i64().unwrap() > 0, "{ack}");
    assert!(ack["by_channel"]["link"].as_i64().unwrap() > 0, "{ack}");
    assert!(ack["rate"].as_f64().unwrap() >= 0.8, "{ack}");
    // The silent ones were chased: re-sends climbed the ladder.
    assert!(s["escalations"]["resend"].as_i64().unwrap() > 0, "{s}");
    // Every Alert and Update says why in Chinese: the rule and the measured value
    // ("…1小时雨量52.4毫米（…雨量站）≥ 45毫米（立即转移指标）"), never English words.
    let mut updates = 0;
    for (name, bytes) in fa.iter().filter(|(k, _)| k.starts_with("cap/")) {
        let xml = String::from_utf8_lossy(bytes);
        if xml.contains("<msgType>Cancel</msgType>") {
            continue;
        }
        let zh = xml
            .split("<language>zh-CN</language>")
            .nth(1)
            .and_then(|i| i.split("<description>").nth(1))
            .and_then(|d| d.split("</description>").next())
            .unwrap_or_else(|| panic!("{name}: no Chinese description"));
        let basis = zh
            .split("依据：")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: {zh}"));
        assert!(
            basis.contains("小时雨量") && basis.contains("毫米") && basis.contains('≥'),
            "{name}: {basis}"
        );
        assert!(
            !basis.contains("mm in") && !basis.contains("gauge"),
            "{name}: {basis}"
        );
        updates += usize::from(xml.contains("<msgType>Update</msgType>"));
    }
    assert!(updates > 0);
    // The report of a flash-flood warning of the drill draws the rain its decisions name
    // (hourly, at their gauge, from the feed as received) on the timeline of its tiers.
    let rep = tmp.path().join("report");
    let o = bin()
        .arg("--db")
        .arg(a.join("drill.db"))
        .args(["report", "flash_flood:FF331098001", "--out"])
        .arg(&rep)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    let rain = html
        .split(r#"<figure id="rain">"#)
        .nth(1)
        .and_then(|f| f.split("</figure>").next())
        .expect("a rain chart");
    assert!(rain.contains("data-series="), "{rain}");
    assert!(rain.contains("预警依据的雨量站"), "{rain}");
}

#[test]
fn the_dry_spell_raises_fire_danger_day_by_day_and_the_rain_lifts_it_on_both_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("dry");
    replay_on_both("dry-2022", &out);
    finished_drill_holds_together(&out);
    cap_files_are_valid(&out);
    let s = summary(&out);
    let w = &s["warnings"];
    assert_eq!(
        w["lineages"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["wildfire"],
        "{w}"
    );
    assert_eq!(w["highest"]["wildfire"], "red", "{w}");
    assert_eq!(w["in_force_at_end"], 0, "{w}");
    // Danger builds: nothing in the first days of the spell; yellow before red.
    let lines = jsonl(&out, "dispatch.jsonl");
    let first: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["purpose"] == "warning")
        .map(|l| (l["queued"].as_str().unwrap(), l["tier"].as_str().unwrap()))
        .collect();
    let start = first.iter().map(|x| x.0).min().unwrap();
    assert!(
        start >= "2022-10-30",
        "warned on {start}, before the fuels dried"
    );
    let first_red = first
        .iter()
        .filter(|x| x.1 == "red")
        .map(|x| x.0)
        .min()
        .unwrap();
    let first_yellow = first
        .iter()
        .filter(|x| x.1 == "yellow")
        .map(|x| x.0)
        .min()
        .unwrap();
    assert!(first_yellow < first_red);
    // Lifted only after the cold front's rain (7 November).
    let lifts: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "Cancel")
        .map(|l| l["queued"].as_str().unwrap())
        .collect();
    assert!(!lifts.is_empty());
    assert!(lifts.iter().all(|t| *t >= "2022-11-07"), "{lifts:?}");
}

/// The database of a running replay, read on the side.
fn reached(db: &Path) -> Option<jiff::Timestamp> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    c.busy_timeout(Duration::from_secs(2)).ok()?;
    let s: String = c
        .query_row("SELECT reached FROM drill_run", [], |r| r.get(0))
        .ok()?;
    s.parse().ok()
}

#[test]
fn a_typhoon_drill_killed_mid_storm_finishes_after_a_restart_with_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lekima");
    let db = out.join("drill.db");
    let mut child = bin()
        .args(["replay", "--scenario"])
        .arg(scenario("lekima-2019"))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it the evening before landfall, with the red warnings going out.
    let kill_after: jiff::Timestamp = "2019-08-09T20:00:00+08:00".parse().unwrap();
    common::wait_until("the replay's folder", 60, tmp.path(), || out.exists());
    common::wait_until(
        format!("the replay never got to {kill_after}"),
        600,
        &out,
        || {
            let ended = child.try_wait().unwrap().is_some();
            assert!(!ended, "the replay ended before it could be killed");
            reached(&db).is_some_and(|t| t >= kill_after)
        },
    );
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    child.wait().unwrap();
    let stopped = reached(&db).unwrap();
    assert!(stopped < "2019-08-11T00:00:00Z".parse().unwrap());

    // Started again on the same folder, it resumes and finishes.
    let o = bin()
        .args(["replay", "--scenario"])
        .arg(scenario("lekima-2019"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("resumed"), "{text}");
    finished_drill_holds_together(&out);
    cap_files_are_valid(&out);

    let c = rusqlite::Connection::open(&db).unwrap();
    let finished: Option<String> = c
        .query_row("SELECT finished FROM drill_run", [], |r| r.get(0))
        .unwrap();
    assert!(finished.is_some());
    // No warning lost: every decision that named people has its texts queued.
    let orphans: i64 = c
        .query_row(
            "SELECT count(*) FROM corr_decision d
             WHERE json_array_length(d.targets, '$.contacts') > 0
               AND NOT EXISTS (SELECT 1 FROM dispatch_message m WHERE m.decision = d.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    // Nothing half-sent, nothing answered twice, nobody's step done twice.
    let stuck: i64 = c
        .query_row(
            "SELECT count(*) FROM dispatch_message
             WHERE state IN ('queued', 'submitting', 'reconciling') AND created < '2019-08-10T23:00:00Z'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stuck, 0);
    // Each thing a simulated person did is in respond's answers exactly once: every SMS
    // reply one row; a tap one row, or none when it repeats the same tap on the same warning
    // within ten minutes (raises come close together in a typhoon).
    let count = |sql: &str| -> i64 { c.query_row(sql, (), |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM respond_answer WHERE channel = 'sms'"),
        count("SELECT count(*) FROM drill_plan WHERE channel = 'sms'")
    );
    let (taps, tapped) = (
        count("SELECT count(*) FROM respond_answer WHERE channel = 'link'"),
        count("SELECT count(*) FROM drill_plan WHERE channel = 'link'"),
    );
    assert!(taps > 0 && taps <= tapped, "{taps} of {tapped}");
    // The ladder rang the silent (call_after_mins): every key pressed is one answer, across
    // the kill; no ring is recorded twice for one attempt of one call.
    let keys = count("SELECT count(*) FROM dispatch_call WHERE key IS NOT NULL");
    assert!(keys > 0);
    assert_eq!(
        count("SELECT count(*) FROM respond_answer WHERE channel = 'call'"),
        keys
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM (SELECT message, attempt FROM dispatch_call GROUP BY message, attempt HAVING count(*) > 1)"
        ),
        0
    );
    let resumed: i64 = c
        .query_row(
            "SELECT count(*) FROM audit WHERE kind = 'drill.resumed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(resumed, 1);
    // The chain of the whole drill, across the kill, is intact.
    let o = bin()
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // And the storm did what Lekima did: the county's signals went to red and were lifted,
    // the typhoon rule reached red, the rain service's outage raised the gap alarm.
    let s = summary(&out);
    let w = &s["warnings"];
    assert_eq!(w["highest"]["typhoon"], "red", "{w}");
    assert_eq!(w["highest"]["upstream"], "red", "{w}");
    assert!(w["lineages"]["flash_flood"].as_i64().unwrap() > 0, "{w}");
    assert!(s["feed_gaps"].as_i64().unwrap() >= 1, "{s}");
    let upstream_lifted = jsonl(&out, "dispatch.jsonl")
        .iter()
        .any(|l| l["type"] == "Cancel" && l["warning"].as_str().unwrap().starts_with("upstream:"));
    assert!(upstream_lifted);
    assert!(s["evacuation"]["moved"].as_i64().unwrap() > 0);
    // Calls beside texts and links, in the summary and the report.
    let rang: i64 = s["calls"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_i64().unwrap())
        .sum();
    assert_eq!(rang, count("SELECT count(*) FROM dispatch_call"), "{s}");
    assert!(
        s["acknowledgement"]["by_channel"]["call"].as_i64().unwrap() > 0,
        "{s}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains(&format!("电话叫应：共拨打 {rang} 次")),
        "{report}"
    );
    assert!(report.contains("电话按键") && report.contains("叫应链接") && report.contains("短信"));
}

/// One value from a PostgreSQL database another process is writing, or `None` while it cannot
/// be read (the table not made yet).
fn pg_value<T>(url: &str, sql: &str) -> Option<T>
where
    T: for<'a> postgres::types::FromSql<'a> + Send,
{
    common::postgres::client(url, |c| {
        c.query_opt(sql, &[]).ok().flatten().map(|r| r.get(0))
    })
}

/// Two nodes replay one drill on one PostgreSQL, as a county drills its hot standby (双机热备):
/// node a leads and is killed with SIGKILL mid-storm; node b, standing by, takes the lease
/// within 15 s, resumes the drill where it stood and finishes it — the same warnings as the
/// drill run whole on SQLite, no message lost or left half-way, texts sent twice counted and
/// no more than were in flight at the kill, every answer once, the audit chain whole.
#[test]
fn two_nodes_replay_one_drill_and_the_standby_finishes_it_when_the_leader_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, out_a, out_b) = (
        tmp.path().join("whole"),
        tmp.path().join("a"),
        tmp.path().join("b"),
    );
    let url = common::postgres::database();
    let wal = common::postgres::shared().wal();
    let node = |name: &str, out: &Path| cell_node(&url, tmp.path(), out, name, 3, name);
    let said = |name: &str| said(tmp.path(), name);
    std::thread::scope(|s| {
        // The same drill run whole, on SQLite, beside: what the two nodes must add up to.
        let reference = s.spawn(|| replay("cell-2024", &whole));
        let mut a = node("a", &out_a);
        common::wait_until("node a leading", 60, &wal, || {
            assert!(a.try_wait().unwrap().is_none(), "a ended: {}", said("a"));
            pg_value::<String>(
                &url,
                "SELECT holder FROM stormbell_lease WHERE name = 'leader'",
            )
            .is_some_and(|h| h == "a")
        });
        let mut b = node("b", &out_b);
        common::wait_until("node b standing by", 60, &wal, || {
            pg_value::<String>(&url, "SELECT role FROM stormbell_node WHERE node = 'b'")
                .is_some_and(|r| r == "standby")
        });
        until_the_cell_is_red(&url, &mut a, &|| said("a"));
        a.kill().unwrap(); // SIGKILL: no shutdown, no lease given up
        a.wait().unwrap();
        let killed = jiff::Timestamp::now();
        let in_flight: i64 = common::postgres::query_one(
            &url,
            "SELECT count(*) FROM dispatch_message WHERE state IN ('submitting', 'reconciling')",
        );
        let stopped: String = common::postgres::query_one(&url, "SELECT reached FROM drill_run");
        assert!(stopped.as_str() < "2024-06-17T00:00:00Z", "{stopped}");
        common::wait_until("node b finishing the drill", 600, &wal, || {
            b.try_wait().unwrap().is_some()
        });
        let status = b.wait().unwrap();
        assert!(status.success(), "{}", said("b"));
        assert!(said("b").contains("resumed"), "{}", said("b"));
        reference.join().unwrap();

        // b took over within 15 s of the kill, under a later epoch.
        let leading: Vec<(String, i64, String)> = common::postgres::client(&url, |c| {
            c.query(
                "SELECT CAST(detail AS json) ->> 'node', CAST(CAST(detail AS json) ->> 'epoch' AS BIGINT), at
                 FROM audit WHERE kind = 'drill.leading' ORDER BY seq",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
        });
        // (a started the drill: not recorded; b took it over: recorded, under a later epoch.)
        assert_eq!(leading.len(), 1, "{leading:?}");
        assert_eq!(leading[0].0, "b");
        assert!(leading[0].1 >= 2, "{leading:?}");
        let took: jiff::Timestamp = leading[0].2.parse().unwrap();
        let after = took.duration_since(killed).as_secs_f64();
        assert!(after <= 15.0, "b led {after:.1} s after the kill");
        finished_on_postgres(&url, &whole, &out_b, in_flight);
    });
}

/// A county with one node on PostgreSQL: the node is killed with SIGKILL mid-storm and its
/// service manager starts it again under its own name. It leads again at once, under a later
/// epoch, not after the lease the dead process held runs out (30 s here: the office would be
/// without warnings for that long), resumes the drill and finishes it with nothing lost.
#[test]
fn a_lone_node_on_postgresql_killed_mid_storm_leads_again_at_its_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, out) = (tmp.path().join("whole"), tmp.path().join("a"));
    let url = common::postgres::database();
    let wal = common::postgres::shared().wal();
    let run = |round: &str| cell_node(&url, tmp.path(), &out, "a", 30, round);
    let said = |round: &str| said(tmp.path(), round);
    let lease = || -> Option<(String, i64)> {
        common::postgres::client(&url, |c| {
            c.query_opt(
                "SELECT holder, epoch FROM stormbell_lease WHERE name = 'leader'",
                &[],
            )
            .ok()
            .flatten()
            .map(|r| (r.get(0), r.get(1)))
        })
    };
    std::thread::scope(|s| {
        let reference = s.spawn(|| replay("cell-2024", &whole));
        let mut first = run("first");
        until_the_cell_is_red(&url, &mut first, &|| said("first"));
        first.kill().unwrap(); // SIGKILL: the lease is not given up
        first.wait().unwrap();
        let in_flight: i64 = common::postgres::query_one(
            &url,
            "SELECT count(*) FROM dispatch_message WHERE state IN ('submitting', 'reconciling')",
        );
        let (holder, epoch) = lease().unwrap();
        assert_eq!(holder, "a");
        // The dead process's lease still has most of its 30 s to run.
        let left: f64 = common::postgres::query_one(
            &url,
            "SELECT CAST(EXTRACT(EPOCH FROM expires - now()) AS DOUBLE PRECISION)
             FROM stormbell_lease WHERE name = 'leader'",
        );
        assert!(left > 15.0, "{left:.1} s of the lease left at the kill");
        let restarted = jiff::Timestamp::now();
        let mut again = run("again");
        common::wait_until("the restarted node leading", 60, &wal, || {
            lease().is_some_and(|(h, e)| h == "a" && e > epoch)
        });
        let led = jiff::Timestamp::now()
            .duration_since(restarted)
            .as_secs_f64();
        assert!(
            led < left,
            "led {led:.1} s after the restart, the old lease had {left:.1} s"
        );
        common::wait_until("the restarted node finishing the drill", 600, &wal, || {
            again.try_wait().unwrap().is_some()
        });
        let status = again.wait().unwrap();
        assert!(status.success(), "{}", said("again"));
        assert!(said("again").contains("resumed"), "{}", said("again"));
        reference.join().unwrap();
        finished_on_postgres(&url, &whole, &out, in_flight);
    });
}

/// A node replaying the cell-2024 drill on PostgreSQL `url` into `out`, under the name `node`
/// with a lease of `lease_secs`; what it prints goes to `dir/{log}.out` and `.err` ([`said`]).
fn cell_node(
    url: &str,
    dir: &Path,
    out: &Path,
    node: &str,
    lease_secs: u32,
    log: &str,
) -> std::process::Child {
    bin()
        .args(["--db", url, "replay", "--scenario"])
        .arg(scenario("cell-2024"))
        .arg("--out")
        .arg(out)
        .env("STORMBELL_STORE__NODE", node)
        .env("STORMBELL_STORE__LEASE_SECS", lease_secs.to_string())
        .stdout(std::fs::File::create(dir.join(format!("{log}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{log}.err"))).unwrap())
        .spawn()
        .unwrap()
}

/// What a [`cell_node`] printed so far.
fn said(dir: &Path, log: &str) -> String {
    let read =
        |ext: &str| std::fs::read_to_string(dir.join(format!("{log}.{ext}"))).unwrap_or_default();
    format!("{}\n{}", read("out"), read("err"))
}

/// Wait until the cell-2024 drill on `url` reaches its third hour, red warnings going out (the
/// moment the tests kill its leader), failing if `leader` ends first (with `said()`, its
/// output).
fn until_the_cell_is_red(url: &str, leader: &mut std::process::Child, said: &dyn Fn() -> String) {
    let kill_after: jiff::Timestamp = "2024-06-16T17:00:00+08:00".parse().unwrap();
    common::wait_until(
        format!("the drill reaching {kill_after}"),
        600,
        &common::postgres::shared().wal(),
        || {
            assert!(leader.try_wait().unwrap().is_none(), "it ended: {}", said());
            pg_value::<String>(url, "SELECT reached FROM drill_run")
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t >= kill_after)
        },
    );
}

/// What a cell-2024 drill resumed on PostgreSQL after a kill must show once it has finished:
/// the warnings of the same drill run whole on SQLite (`whole`), every decision that named
/// people with its texts, no message left half-way, texts sent twice counted and no more than
/// the `in_flight` at the kill, every SMS answer once, one resumption, and the trail whole.
fn finished_on_postgres(url: &str, whole: &Path, out: &Path, in_flight: i64) {
    let count = |sql: &str| -> i64 { common::postgres::query_one(url, sql) };
    assert_eq!(
        count("SELECT count(*) FROM drill_run WHERE finished IS NOT NULL"),
        1
    );
    let (w_whole, w_out) = (
        summary(whole)["warnings"].clone(),
        summary(out)["warnings"].clone(),
    );
    assert_eq!(w_out, w_whole);
    assert_eq!(
        count(
            "SELECT count(*) FROM corr_decision d
             WHERE json_array_length(CAST(d.targets AS json) -> 'contacts') > 0
               AND NOT EXISTS (SELECT 1 FROM dispatch_message m WHERE m.decision = d.id)"
        ),
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM dispatch_message
             WHERE state IN ('queued', 'submitting', 'reconciling')
               AND created < '2024-06-17T23:00:00Z'"
        ),
        0
    );
    let twice = count("SELECT CAST(coalesce(sum(uncertain), 0) AS BIGINT) FROM dispatch_message");
    assert!(
        twice <= in_flight,
        "{twice} sent twice, {in_flight} in flight at the kill"
    );
    assert_eq!(
        count("SELECT count(*) FROM respond_answer WHERE channel = 'sms'"),
        count("SELECT count(*) FROM drill_plan WHERE channel = 'sms'")
    );
    assert_eq!(
        count("SELECT count(*) FROM audit WHERE kind = 'drill.resumed'"),
        1
    );
    finished_drill_holds_together(out);
    cap_files_are_valid(out);
    let o = bin()
        .args(["audit", "verify", "--db", url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
