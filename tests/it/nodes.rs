//! Two stormbell nodes on one PostgreSQL, as a county runs a hot standby (双机热备): rain over
//! a flash-flood zone served over loopback HTTP, texts through the node-smpp SMSC. One node
//! leads and warns; the other stands by. The leader is killed with SIGKILL: the standby takes
//! the lease within the lease's length, carries on from the database without issuing the
//! warning again, and the audit trail verifies.

use crate::common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::server::{Reply, Server};
use common::smsc::Smsc;

const ZONE: &str = "flash_flood:FF331098001";

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One value from the shared database.
fn query(url: &str, sql: &str) -> i64 {
    common::postgres::query_one(url, sql)
}

/// An hour of rain ending now at the gauge beside the zone: 50 mm, over its 立即转移 line.
fn rain_now() -> String {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap());
    format!(
        "STCD,STNM,LGTD,LTTD,TM,DRP,INTV\n70499001,桃垟（合成）,120.945,28.19,{},50.0,1.00\n",
        now.strftime("%Y-%m-%d %H:%M:00")
    )
}

/// The nodes of one test, in one folder: their configuration, logs and audit checkpoints.
struct Nodes {
    dir: tempfile::TempDir,
    /// The shared database.
    url: String,
}

impl Nodes {
    /// A new database with the synthetic county's registry imported.
    fn new() -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let url = common::postgres::database();
        let county = common::county::copy_files(&dir.path().join("county"));
        let o = common::stormbell_bare()
            .args(["--db", &url, "registry", "import"])
            .arg(&county)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        Nodes { dir, url }
    }

    /// The folder the logs are written to (what the waits watch).
    fn logs(&self) -> std::path::PathBuf {
        self.dir.path().join("logs")
    }

    /// `stormbell run` as node `name` (lease 3 s) on the database `url` names, with the rest
    /// of its configuration `config`.
    fn start(&self, name: &str, config: &str, url: &str) -> Node {
        let cfg = self.dir.path().join(format!("{name}.toml"));
        // Its own local files (audit checkpoints and key) in the test's folder.
        let local = self.dir.path().join(format!("{name}.db"));
        std::fs::write(
            &cfg,
            format!(
                "[store]\nnode = \"{name}\"\nlease_secs = 3\npath = \"{}\"\n\n[web]\nlisten = \"\"\n\n{config}",
                local.display()
            ),
        )
        .unwrap();
        Node(
            common::stormbell_bare()
                .args(["--config", cfg.to_str().unwrap(), "--db", url])
                .args(["--log-format", "json", "run"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.logs().join(format!("{name}.log"))).unwrap())
                .spawn()
                .unwrap(),
        )
    }

    /// What node `name` has logged so far.
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Wait (up to `secs`) until node `name` has logged `what`.
    fn wait_for(&self, name: &str, what: &str, secs: u64) {
        common::wait_until(
            common::Said(|| format!("node {name} saying {what:?}\n{}", self.said())),
            secs,
            &self.logs(),
            || self.log(name).contains(what),
        );
    }

    /// Both nodes' logs, for a failure's message.
    fn said(&self) -> String {
        format!("a:\n{}\nb:\n{}", self.log("a"), self.log("b"))
    }
}

#[test]
fn the_standby_takes_over_when_the_leader_is_killed_and_nothing_is_issued_twice() {
    let nodes = Nodes::new();
    let url = nodes.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start());
    server.set("/rain.csv", Reply::doc(rain_now()));
    let smsc = Smsc::start(20);
    let config = format!(
        r#"[[feeds.source]]
id = "rain"
kind = "rainfall"
url = "{rain}"
interval_secs = 5

[dispatch]
reconcile_grace_secs = 5

{account}"#,
        rain = server.url("/rain.csv"),
        account = smsc.account_toml("tps = 500\nresponse_timeout_secs = 60")
    );
    let said = || nodes.said();
    // The centre takes every text but answers 15 s late: what a node sends stays in flight
    // (the texts on the phones, no verdict stored) long enough to kill it mid-send.
    smsc.control("/late?every=1&ms=15000");

    let mut a = nodes.start("a", &config, &url);
    nodes.wait_for("a", "this node leads", 30);
    let b = nodes.start("b", &config, &url);
    nodes.wait_for("b", "standby", 30);
    // Every node runs the channels: the standby's own binds are up, beside the leader's.
    let bound = |node: &str| {
        query(
            &url,
            &format!(
                "SELECT count(*) FROM dispatch_bind WHERE account = 'main@{node}' AND state = 'bound'"
            ),
        )
    };
    common::wait_until(
        common::Said(|| format!("both nodes bound to the SMSC\n{}", said())),
        30,
        &nodes.logs(),
        || bound("a") >= 1 && bound("b") >= 1,
    );
    // The leader warns: the zone's lead has the red warning on their phone.
    let to_lead = || {
        smsc.phones()
            .iter()
            .filter(|p| p["dest"] == "8613800000824")
            .count()
    };
    common::wait_until(
        common::Said(|| format!("the warning on the lead's phone\n{}", said())),
        60,
        smsc.log.path(),
        || to_lead() >= 1,
    );
    let issued = format!("SELECT count(*) FROM corr_warning WHERE lineage = '{ZONE}'");
    assert_eq!(query(&url, &issued), 1);
    assert!(!nodes.log("b").contains("this node leads"), "{}", said());
    let in_flight_on_a = "SELECT count(*) FROM dispatch_message WHERE state = 'submitting' AND claimed_by = 'smpp@a'";
    common::wait_until(
        common::Said(|| format!("texts in flight on a\n{}", said())),
        30,
        &nodes.logs(),
        || query(&url, in_flight_on_a) >= 1,
    );

    // The leader dies outright, mid-storm.
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let killed = Instant::now();
    let left: Vec<i64> = common::postgres::client(&url, |c| {
        c.query(
            "SELECT id FROM dispatch_message WHERE state = 'submitting' AND claimed_by = 'smpp@a'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    });
    assert!(!left.is_empty(), "{}", said());
    smsc.control("/late?every=0");
    nodes.wait_for("b", "this node leads", 15);
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    // b carries on from what a left: it starts what only the leader runs (audited) and the
    // warning in force is not issued again.
    let leading = "SELECT count(*) FROM audit WHERE kind = 'daemon.leading'";
    common::wait_until(
        common::Said(|| format!("node b leading\n{}", said())),
        30,
        &nodes.logs(),
        || query(&url, leading) >= 2,
    );
    let epoch = query(
        &url,
        "SELECT epoch FROM stormbell_lease WHERE name = 'leader'",
    );
    assert_eq!(epoch, 2);
    assert_eq!(query(&url, &issued), 1, "{}", said());
    // Nothing is lost: whatever a left mid-send, b takes back once a is silent (three
    // leases), waits the grace for a receipt, and sends again. Every text reached a phone;
    // a phone got one twice only where that was counted as possible.
    // (Rows the ladder or the per-person cap hold for later are not due yet.)
    let open = || {
        query(
            &url,
            &format!(
                "SELECT count(*) FROM dispatch_message
                 WHERE state IN ('submitting', 'reconciling')
                    OR (state = 'queued' AND not_before <= '{}')",
                stormbell::store::stamp(jiff::Timestamp::now())
            ),
        )
    };
    common::wait_until(
        common::Said(|| format!("every text due settled\n{}", said())),
        90,
        &nodes.logs(),
        || open() == 0,
    );
    let sent = query(
        &url,
        "SELECT count(*) FROM dispatch_message WHERE state IN ('accepted', 'delivered', 'delivery_unknown')",
    );
    let counted = query(
        &url,
        "SELECT CAST(coalesce(sum(uncertain), 0) AS BIGINT) FROM dispatch_message",
    );
    let phones = smsc.phones().len() as i64;
    assert!(sent >= 1, "{}", said());
    // What a left mid-send was taken back by b, the new leader, and went out.
    let ids = left
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let settled = query(
        &url,
        &format!(
            "SELECT count(*) FROM dispatch_message WHERE id IN ({ids}) AND state IN ('accepted', 'delivered') AND claimed_by = 'smpp@b'"
        ),
    );
    assert_eq!(settled, left.len() as i64, "{}", said());
    assert!(nodes.log("b").contains("node a"), "{}", said());
    assert!(
        phones >= sent && phones <= sent + counted,
        "{phones} texts on phones for {sent} sent, {counted} counted as possibly twice\n{}",
        said()
    );
    // status names both nodes, b leading under the new epoch, a as it was last heard of.
    let o = common::stormbell_bare()
        .args(["--db", &url, "status"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&o.stdout);
    assert!(status.contains("node:     b — leader, epoch 2"), "{status}");
    assert!(status.contains("node:     a — leader, epoch 1"), "{status}");
    // The new leader stops as a service manager stops it: it signs the trail's head on the
    // way out, and the trail holds to that checkpoint (read with b's own configuration: the
    // checkpoints are named after the database, in its data folder).
    let mut b = b;
    let stopped = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", b.0.id())])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert_eq!(b.0.wait().unwrap().code(), Some(0), "{}", said());
    let o = common::stormbell_bare()
        .args([
            "--config",
            nodes.dir.path().join("b.toml").to_str().unwrap(),
        ])
        .args(["--db", &url, "audit", "verify"])
        .output()
        .unwrap();
    let verified = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{verified}");
    assert!(verified.contains("checkpoints: 1 hold"), "{verified}");
}

/// The time of the first log line (JSON) of `log` whose text contains `what`.
fn logged_at(log: &str, what: &str) -> Option<jiff::Timestamp> {
    log.lines()
        .filter(|l| l.contains(what))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["timestamp"].as_str()?.parse().ok())
}

#[test]
fn a_leader_cut_off_from_the_database_steps_down_before_its_lease_ends() {
    let nodes = Nodes::new();
    let url = nodes.url.clone();
    let said = || nodes.said();

    // a reaches the database through a relay the test can cut; b directly.
    let relay = common::postgres::Relay::start(common::postgres::shared().port);
    let mut a = nodes.start("a", "", &relay.url(&url));
    nodes.wait_for("a", "this node leads", 30);
    let _b = nodes.start("b", "", &url);
    nodes.wait_for("b", "standby", 30);

    relay.cut();
    // a cannot renew: it steps down by its own clock and exits with an error (for systemd
    // to start it again, as a standby); b takes the lease once it has ended.
    nodes.wait_for("a", "steps down", 30);
    nodes.wait_for("b", "this node leads", 30);
    let (down, up) = (
        logged_at(&nodes.log("a"), "steps down").unwrap(),
        logged_at(&nodes.log("b"), "this node leads").unwrap(),
    );
    assert!(
        down < up,
        "a stepped down at {down}, after b took over at {up}"
    );
    let status = a.0.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{}", said());
    // Nothing a did after losing the database reached it: not even its own stop.
    assert_eq!(
        query(
            &url,
            "SELECT count(*) FROM audit WHERE kind = 'daemon.stopped'"
        ),
        0,
        "{}",
        said()
    );
    assert_eq!(
        query(
            &url,
            "SELECT epoch FROM stormbell_lease WHERE name = 'leader'"
        ),
        2
    );
}

#[test]
fn postgresql_fails_over_under_patroni_and_no_acknowledged_write_is_lost() {
    // Writes go on while Patroni's primary dies outright: each write the store acknowledged
    // is in the database the new primary serves (synchronous replication), the chain is whole,
    // and the writes queued during the failover go through once the replica is promoted.
    let mut pair = common::patroni::Pair::start();
    let url = pair.database("storm");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(async { stormbell::store::Store::open_postgres(&url) })
        .unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i64, String)>::new()));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (s, a) = (store.clone(), acked.clone());
    let writer = rt.spawn(async move {
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let mut failed = 0usize;
        for i in 0.. {
            if *stopped.borrow_and_update() {
                break;
            }
            let e = stormbell::store::audit::Entry::now(
                &tz,
                "test",
                "sms.accepted",
                format!("person-{i}"),
                serde_json::json!({ "n": i }),
            );
            match s
                .write(move |tx| Ok(stormbell::store::audit::append(tx, &e)?))
                .await
            {
                Ok(r) => a.lock().unwrap().push((r.seq, r.hash)),
                // The write in flight when the primary died: its outcome is unknown to us.
                Err(_) => failed += 1,
            }
        }
        failed
    });
    let written = store.written();
    let count = |a: &std::sync::Mutex<Vec<(i64, String)>>| a.lock().unwrap().len();
    let wait_for = |pair: &common::patroni::Pair, n: usize, what: &str| {
        let mut w = written.clone();
        let acked = acked.clone();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(60), async {
                while count(&acked) < n {
                    let _ = w.changed().await;
                }
            })
            .await
        })
        .unwrap_or_else(|_| panic!("{what}: only {} writes\n{}", count(&acked), pair.logs()));
    };
    wait_for(&pair, 50, "writes before the failover");
    let before = count(&acked);
    pair.kill(0);
    pair.wait(1, "/primary", "pg2 promoted");
    wait_for(&pair, before + 50, "writes after the failover");
    stop.send(true).unwrap();
    let failed = rt.block_on(writer).unwrap();
    assert!(failed <= 1, "{failed} writes failed across one failover");
    let acked = acked.lock().unwrap().clone();
    let (stored, verdict) = rt
        .block_on(store.read(move |c| {
            let rows = stormbell::store::audit::since(c, 1, 1_000_000)?;
            Ok((rows, stormbell::store::audit::verify(c)?))
        }))
        .unwrap();
    assert!(
        matches!(
            verdict,
            stormbell::store::audit::Verification::Intact { .. }
        ),
        "{verdict:?}"
    );
    let by_seq: std::collections::HashMap<i64, String> =
        stored.into_iter().map(|r| (r.seq, r.hash)).collect();
    for (seq, hash) in &acked {
        assert_eq!(
            by_seq.get(seq),
            Some(hash),
            "acknowledged write #{seq} lost"
        );
    }
}
