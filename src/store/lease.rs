//! Which node leads, when several stormbell nodes share one PostgreSQL database.
//!
//! One row, `stormbell_lease`, names the leader, the lease's end (the database's clock, so the
//! nodes' clocks need not agree) and an epoch that grows by one at every change of leader. A
//! node takes the lease when it has ended (or was its own), and renews it every third of its
//! length. The leader runs what must run once (feeds, correlate, the escalation timers, the
//! loudspeakers); every node, the leader too, runs the SMS channels and the web port, and a
//! standby takes over when the lease ends: a leader killed outright is replaced within one
//! lease. Each node's heartbeat (`stormbell_node`) says it is alive; the leader takes back
//! what a node that stopped or went silent left mid-send ([`gone`]).
//!
//! Fencing: once a store is fenced ([`super::Store::fence`]), every write batch of that node
//! first reads the lease row `FOR KEY SHARE` and goes ahead only if it still names this node
//! and epoch and has not ended. A new leader's takeover first locks that row `FOR UPDATE`,
//! which waits for the batches that hold it; so a paused old leader's writes either commit
//! before the takeover or not at all. The renewals, which change no key, do not wait for the
//! leader's own batches (a long decision cannot starve its lease). A leader that cannot renew
//! (its database unreachable, or the row taken) steps down at the lease's end by its own
//! clock, counted from before the last renewal it sent, so never later than the database lets
//! another node in.

use std::time::{Duration, Instant};

use super::StoreError;

/// The lease's rules for one node.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// This node's name (unique among the nodes; the host name by default).
    pub node: String,
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
}

/// This node leads, under `epoch`, until [`Leadership::lost`] says otherwise.
pub struct Leadership {
    /// The lease's epoch when this node took it.
    pub epoch: i64,
    lost: tokio::sync::watch::Receiver<Option<String>>,
    /// Dropped with this: the lease thread wakes at once and gives the lease up.
    _stop: std::sync::mpsc::Sender<()>,
}

impl Leadership {
    /// Resolves with the reason once this node is no longer the leader.
    pub async fn lost(&self) -> String {
        let mut rx = self.lost.clone();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return "the lease keeper stopped".into();
            }
        }
    }
}

/// The lease row, and each node's heartbeat (what `status` and `/metrics` show).
pub(crate) const TABLE: &str = "CREATE TABLE IF NOT EXISTS stormbell_lease (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    epoch   BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL,
    renewed TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS stormbell_node (
    node  TEXT PRIMARY KEY,
    role  TEXT NOT NULL,
    epoch BIGINT,
    seen  TIMESTAMPTZ NOT NULL
)";

const HEARTBEAT: &str = "INSERT INTO stormbell_node (node, role, epoch, seen)
     VALUES ($1, $2, $3, now())
     ON CONFLICT (node) DO UPDATE SET role = $2, epoch = $3, seen = now()";

/// A node as its last heartbeat left it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeState {
    /// Its name.
    pub node: String,
    /// leader | standby | stopped.
    pub role: String,
    /// The lease epoch it leads under (a leader).
    pub epoch: Option<i64>,
    /// Seconds since its last heartbeat (a leader's every third of the lease; a standby's at
    /// each try).
    pub seen_secs: f64,
}

/// Every node that has run against this database, by name. Empty on SQLite (one machine).
pub fn nodes(c: &super::sql::Conn<'_>) -> super::sql::Result<Vec<NodeState>> {
    if !c.is_postgres() {
        return Ok(Vec::new());
    }
    c.prepare(
        "SELECT node, role, epoch, CAST(EXTRACT(EPOCH FROM now() - seen) AS DOUBLE PRECISION)
         FROM stormbell_node ORDER BY node",
    )?
    .query_map((), |r| {
        Ok(NodeState {
            node: r.get(0)?,
            role: r.get(1)?,
            epoch: r.get(2)?,
            seen_secs: r.get(3)?,
        })
    })?
    .collect()
}

/// Say that node `node` is alive, standing by, before it starts anything that claims rows: a
/// node restarted under its old name is otherwise still `stopped` to the leader, which would
/// take back what it has only just claimed. (Its lease thread keeps the heartbeat after.)
pub fn announce(tx: &super::sql::Tx<'_>, node: &str) -> super::sql::Result<()> {
    if !tx.is_postgres() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO stormbell_node (node, role, epoch, seen) VALUES (?1, 'standby', NULL, now())
         ON CONFLICT (node) DO UPDATE SET role = 'standby', epoch = NULL, seen = now()",
        [node],
    )?;
    Ok(())
}

/// The nodes other than `except` that are gone: stopped, or not heard of for `silent_for`
/// (a node's heartbeat comes every third of its lease, leader or standby). The leader takes
/// back the rows such a node left mid-send. Empty on SQLite.
pub fn gone(
    c: &super::sql::Conn<'_>,
    except: &str,
    silent_for: Duration,
) -> super::sql::Result<Vec<String>> {
    if !c.is_postgres() {
        return Ok(Vec::new());
    }
    c.prepare(
        "SELECT node FROM stormbell_node
         WHERE node <> ?1
           AND (role = 'stopped'
                OR seen < now() - CAST(?2 AS DOUBLE PRECISION) * interval '1 millisecond')
         ORDER BY node",
    )?
    .query_map(
        rusqlite::params![except, silent_for.as_millis() as f64],
        |r| r.get(0),
    )?
    .collect()
}

const TAKE: &str = "INSERT INTO stormbell_lease (name, holder, epoch, expires, renewed)
     VALUES ('leader', $1, 1, now() + $2 * interval '1 millisecond', now())
     ON CONFLICT (name) DO UPDATE
       SET holder = $1, epoch = stormbell_lease.epoch + 1,
           expires = now() + $2 * interval '1 millisecond', renewed = now()
       WHERE stormbell_lease.expires < now() OR stormbell_lease.holder = $1
     RETURNING epoch";

const RENEW: &str = "UPDATE stormbell_lease
     SET expires = now() + $3 * interval '1 millisecond', renewed = now()
     WHERE name = 'leader' AND holder = $1 AND epoch = $2 AND expires > now()";

const GIVE_UP: &str = "UPDATE stormbell_lease SET expires = now()
     WHERE name = 'leader' AND holder = $1 AND epoch = $2";

/// The fencing check a fenced writer runs first in each batch. `FOR KEY SHARE`: the leader's
/// renewals (an UPDATE of columns other than the key) go on beside its batches, however long
/// one runs, while a takeover, which first locks the row `FOR UPDATE` ([`LOCK`]), waits for
/// every batch in flight.
pub(crate) const FENCE: &str = "SELECT 1 FROM stormbell_lease
     WHERE name = 'leader' AND holder = $1 AND epoch = $2 AND expires > now() FOR KEY SHARE";

/// Whether the lease may be taken by `$1` now (ended, or its own), read without a lock: a
/// standby's tries lock the row only when it may take it.
const TAKEABLE: &str = "SELECT 1 FROM stormbell_lease
     WHERE name = 'leader' AND (expires < now() OR holder = $1)
     UNION ALL SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM stormbell_lease WHERE name = 'leader')";

/// A takeover's first step: wait for the batches fenced by the old lease to end.
const LOCK: &str = "SELECT 1 FROM stormbell_lease WHERE name = 'leader' FOR UPDATE";

/// Who holds the lease now: (holder, epoch, seconds since renewed, seconds until it ends).
pub(crate) const HOLDER: &str = "SELECT holder, epoch,
       CAST(EXTRACT(EPOCH FROM now() - renewed) AS DOUBLE PRECISION),
       CAST(EXTRACT(EPOCH FROM expires - now()) AS DOUBLE PRECISION)
     FROM stormbell_lease WHERE name = 'leader'";

fn connect(url: &str) -> Result<postgres::Client, StoreError> {
    let shown = super::shown(url);
    let mut config: postgres::Config = url.parse().map_err(|source| StoreError::Postgres {
        url: shown.clone(),
        source,
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name("stormbell lease");
    let mut c = config
        .connect(postgres::NoTls)
        .map_err(|source| StoreError::Postgres {
            url: shown.clone(),
            source,
        })?;
    c.batch_execute(TABLE)
        .map_err(|source| StoreError::Postgres { url: shown, source })?;
    Ok(c)
}

/// Take the lease if it may be taken: its epoch, or `None` while another node holds it.
fn take(c: &mut postgres::Client, node: &str, ttl_ms: f64) -> Result<Option<i64>, postgres::Error> {
    if c.query_opt(TAKEABLE, &[&node])?.is_none() {
        return Ok(None);
    }
    let mut t = c.transaction()?;
    t.query_opt(LOCK, &[])?;
    let row = t.query_opt(TAKE, &[&node, &ttl_ms])?;
    t.commit()?;
    Ok(row.map(|r| r.get::<_, i64>(0)))
}

/// Wait until this node holds the lease (saying who holds it meanwhile, once per holder), then
/// keep renewing it on a thread of its own. Runs on its own thread; await it from async code.
pub async fn acquire(url: &str, settings: &LeaseSettings) -> Result<Leadership, StoreError> {
    let (url, s) = (url.to_string(), settings.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = std::sync::mpsc::channel();
    let (lost_tx, lost) = tokio::sync::watch::channel(None);
    std::thread::Builder::new()
        .name("store-lease".into())
        .spawn(move || keep(&url, &s, tx, lost_tx, &stopped))
        .map_err(|e| StoreError::Lease(format!("cannot start the lease thread: {e}")))?;
    let epoch = rx.await.map_err(|_| StoreError::WriterGone)??;
    Ok(Leadership {
        epoch,
        lost,
        _stop: stop,
    })
}

/// The lease thread: take, then renew until lost or stopped.
fn keep(
    url: &str,
    s: &LeaseSettings,
    taken: tokio::sync::oneshot::Sender<Result<i64, StoreError>>,
    lost: tokio::sync::watch::Sender<Option<String>>,
    stop: &std::sync::mpsc::Receiver<()>,
) {
    // Waits between tries; true once the holder is gone (stop at once).
    let pause = |d: Duration| {
        !matches!(
            stop.recv_timeout(d),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        )
    };
    let ttl_ms = s.ttl.as_millis() as f64;
    let every = s.ttl / 3;
    let mut client: Option<postgres::Client> = None;
    let mut seen_holder = String::new();
    // Take it.
    // No longer waiting to lead (the node is stopping): said, so the leader need not wait
    // out its silence to take back what it left mid-send.
    let stopping = |client: &mut Option<postgres::Client>| {
        if let Some(c) = client.as_mut() {
            let _ = c.execute(HEARTBEAT, &[&s.node, &"stopped", &None::<i64>]);
        }
    };
    let epoch = loop {
        if taken.is_closed() {
            return stopping(&mut client);
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match connect(url) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!("leader lease: {e}");
                    if pause(every) {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let _ = c.execute(HEARTBEAT, &[&s.node, &"standby", &None::<i64>]);
        match take(c, &s.node, ttl_ms) {
            Ok(Some(epoch)) => break epoch,
            Ok(None) => {
                if let Ok(Some(r)) = c.query_opt(HOLDER, &[]) {
                    let holder: String = r.get(0);
                    if holder != seen_holder {
                        tracing::info!(
                            leader = %holder,
                            epoch = r.get::<_, i64>(1),
                            "standby: another node leads; waiting for its lease to end"
                        );
                        seen_holder = holder;
                    }
                }
            }
            Err(e) => tracing::warn!("leader lease: {}", super::sql::pg_message(&e)),
        }
        if pause(every) {
            return stopping(&mut client);
        }
    };
    if let Some(c) = client.as_mut() {
        let _ = c.execute(HEARTBEAT, &[&s.node, &"leader", &Some(epoch)]);
    }
    tracing::info!(node = %s.node, epoch, "this node leads");
    // Counted from before the renewal was sent: never later than the database's own end.
    let mut until = Instant::now() + s.ttl;
    if taken.send(Ok(epoch)).is_err() {
        return;
    }
    loop {
        if pause(every) {
            if let Some(c) = client.as_mut() {
                let _ = c.execute(GIVE_UP, &[&s.node, &epoch]);
                let _ = c.execute(HEARTBEAT, &[&s.node, &"stopped", &None::<i64>]);
            }
            return;
        }
        let sent = Instant::now();
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = connect(url).ok();
        }
        let renewed = client
            .as_mut()
            .map(|c| c.execute(RENEW, &[&s.node, &epoch, &ttl_ms]));
        match renewed {
            Some(Ok(1)) => {
                until = sent + s.ttl;
                if let Some(c) = client.as_mut() {
                    let _ = c.execute(HEARTBEAT, &[&s.node, &"leader", &Some(epoch)]);
                }
            }
            Some(Ok(_)) => {
                let _ = lost.send(Some(format!(
                    "the leader lease (epoch {epoch}) was taken by another node or had ended"
                )));
                return;
            }
            Some(Err(e)) => {
                tracing::warn!(
                    "leader lease: renewal failed: {}",
                    super::sql::pg_message(&e)
                );
            }
            None => tracing::warn!("leader lease: the database cannot be reached"),
        }
        if Instant::now() + every >= until {
            // The next try would come after the lease may have ended: step down now.
            let _ = lost.send(Some(format!(
                "the leader lease (epoch {epoch}) could not be renewed before it ended"
            )));
            return;
        }
    }
}
