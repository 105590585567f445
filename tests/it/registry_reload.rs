//! A roster change reaches the running daemon: `stormbell run` has a red flash-flood warning in
//! force over the synthetic county (rain served over loopback HTTP, texts through the node-smpp
//! SMSC); the county imports a new roster beside it with `stormbell registry import`, in which
//! the danger zone's and the village's lead has been replaced and the zone's monitor has a new
//! phone. Within ten seconds the new lead's phone has the warning and their calls are on the
//! ladder, the old lead is no longer chased, the monitor's next text goes to the new number,
//! and the audit trail says which import the daemon took up.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{Reply, Server};
use common::smsc::Smsc;

const ZONE: &str = "flash_flood:FF331098001";
/// The lead replaced (the zone's 防汛责任人 and 桃垟村's 村防汛责任人).
const OLD_LEAD: &str = "P33109800824";
/// Their successor, new in the roster.
const NEW_LEAD: &str = "P33109899001";
const NEW_LEAD_PHONE: &str = "13799990001";
/// The zone's monitor, whose phone changes.
const MONITOR: &str = "P33109800826";
const MONITOR_NEW_PHONE: &str = "13799990002";

fn bin() -> Command {
    common::stormbell_bare()
}

/// The roster after the change: the lead replaced on both duties, the monitor renumbered.
/// (persons.csv is GBK, as offices keep it; it is written back as UTF-8, which the import
/// reads as well.)
fn change_roster(dir: &Path) {
    let gbk = std::fs::read(dir.join("persons.csv")).unwrap();
    let (persons, _, bad) = encoding_rs::GBK.decode(&gbk);
    assert!(!bad);
    let mut persons: String = persons
        .lines()
        .map(|l| {
            if l.starts_with(MONITOR) {
                l.replace("13800000826", MONITOR_NEW_PHONE)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    persons.push_str(&format!(
        "\n{NEW_LEAD},新任责任人（合成）,{NEW_LEAD_PHONE},村级,331098108208,村防汛责任人,P33109800825,是,2026-12-01\n"
    ));
    std::fs::write(dir.join("persons.csv"), persons).unwrap();
    let duties = std::fs::read_to_string(dir.join("duties.csv")).unwrap();
    let duties = duties.replace(
        &format!("{OLD_LEAD},331098108208,"),
        &format!("{NEW_LEAD},331098108208,"),
    );
    let duties = duties.replace(
        &format!("{OLD_LEAD},FF331098001,"),
        &format!("{NEW_LEAD},FF331098001,"),
    );
    std::fs::write(dir.join("duties.csv"), duties).unwrap();
}

/// An hour of rain ending now at the gauge beside the zone: 50 mm, over its 立即转移 line.
fn rain_now() -> String {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap());
    format!(
        "STCD,STNM,LGTD,LTTD,TM,DRP,INTV\n70499001,桃垟（合成）,120.945,28.19,{},50.0,1.00\n",
        now.strftime("%Y-%m-%d %H:%M:00")
    )
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

on_both! {
fn a_roster_imported_beside_the_running_daemon_retargets_the_warning_in_force(backend) {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let county = common::county::copy_files(&dir.path().join("county"));
    // The store, for the import as for the daemon: in the configuration.
    let cfg = dir.path().join("stormbell.toml");
    std::fs::write(&cfg, place.store_toml(dir.path())).unwrap();
    let o = bin()
        .args(["--config", cfg.to_str().unwrap(), "registry", "import"])
        .arg(&county)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start());
    server.set("/rain.csv", Reply::doc(rain_now()));
    let smsc = Smsc::start(20);
    std::fs::write(
        &cfg,
        format!(
            r#"{store}
[registry]
reload_secs = 1

[web]
listen = ""

[[feeds.source]]
id = "rain"
kind = "rainfall"
url = "{url}"
interval_secs = 5

{account}"#,
            store = place.store_toml(dir.path()),
            url = server.url("/rain.csv"),
            account = smsc.account_toml("tps = 500")
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let _daemon = Daemon(
        bin()
            .args(["--config", cfg.to_str().unwrap()])
            .args(["--log-format", "json", "run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // What the daemon said, for a failure's message.
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    let to = |phone: &str| -> usize {
        let phone = format!("86{phone}");
        smsc.phones()
            .iter()
            .filter(|p| p["dest"] == phone.as_str())
            .count()
    };
    // The warning is in force and the old lead was texted.
    common::wait_until(
        "the red warning texted to the old lead",
        60,
        smsc.log.path(),
        || to("13800000824") >= 1,
    );
    let old_calls = format!(
        "SELECT count(*) FROM respond_call WHERE lineage = '{ZONE}' AND person = '{OLD_LEAD}' AND state = 'open'"
    );
    assert!(place.count(&old_calls) >= 1);

    // The new roster, imported by the office beside the running daemon.
    change_roster(&county);
    let o = bin()
        .args(["--config", cfg.to_str().unwrap(), "registry", "import"])
        .arg(&county)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let imported = Instant::now();

    // Taken up within ten seconds: the new lead has the warning on their phone.
    common::wait_until(
        common::Said(|| format!("the warning on the new lead's phone\n{}", said())),
        10,
        smsc.log.path(),
        || to(NEW_LEAD_PHONE) >= 1,
    );
    assert!(imported.elapsed() < Duration::from_secs(10));
    // Audited: which import the daemon took up, and what it changed for the zone.
    let applied = place.text(
        "SELECT detail FROM audit WHERE kind = 'registry.applied' ORDER BY seq DESC LIMIT 1",
    );
    let applied: serde_json::Value = serde_json::from_str(&applied).unwrap();
    assert_eq!(applied["import"], 2, "{applied}");
    let zone = applied["retargeted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["lineage"] == ZONE)
        .unwrap_or_else(|| panic!("{applied}"));
    assert!(zone["added"].as_array().unwrap().contains(&NEW_LEAD.into()));
    assert!(
        zone["removed"]
            .as_array()
            .unwrap()
            .contains(&OLD_LEAD.into())
    );
    assert!(
        zone["renumbered"]
            .as_array()
            .unwrap()
            .contains(&MONITOR.into())
    );
    // The new lead is on the ladder, for both places they now answer for.
    let new_calls = place.count(
        &format!(
            "SELECT count(DISTINCT c.target) FROM respond_call c JOIN respond_step s ON s.call = c.id
             WHERE c.lineage = '{ZONE}' AND c.person = '{NEW_LEAD}' AND c.state = 'open'
               AND s.state = 'pending'"
        ),
    );
    assert_eq!(new_calls, 2);
    // The old lead is no longer chased: no open call, no step left to fire.
    assert_eq!(place.count(&old_calls), 0);
    let old_steps = place.count(
        &format!(
            "SELECT count(*) FROM respond_step s JOIN respond_call c ON c.id = s.call
             WHERE c.lineage = '{ZONE}' AND c.person = '{OLD_LEAD}' AND s.state = 'pending'"
        ),
    );
    assert_eq!(old_steps, 0);
    let replaced = place.count(
        &format!(
            "SELECT count(*) FROM respond_call WHERE lineage = '{ZONE}' AND person = '{OLD_LEAD}' AND state = 'replaced'"
        ),
    );
    assert!(replaced >= 1);
    // The monitor's ladder texts go to the new number; nothing waits for the old one.
    let monitor_numbers = |which: &str| {
        place.text(&format!(
            "SELECT {which}(mobile) FROM respond_call
             WHERE lineage = '{ZONE}' AND person = '{MONITOR}' AND state IN ('open', 'silent')"
        ))
    };
    assert_eq!(monitor_numbers("min"), MONITOR_NEW_PHONE);
    assert_eq!(monitor_numbers("max"), MONITOR_NEW_PHONE);
    let waiting_old = place.count(
        "SELECT count(*) FROM dispatch_message WHERE address = '13800000826' AND state = 'queued'",
    );
    assert_eq!(waiting_old, 0);
    // The old lead got nothing more after the import; the new one got the warning once.
    assert_eq!(to(NEW_LEAD_PHONE), 1);
    drop(server);
}
}
