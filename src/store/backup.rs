//! Backups the office can trust and restore: a consistent copy of the running database, with
//! the audit trail's head written beside it, and the way back.
//!
//! A backup is taken with `VACUUM INTO` on a read connection: one read transaction, so the copy
//! is the database as it stood at one instant even while the daemon writes (WAL lets the writer
//! go on), and compacted. The copy is written under a temporary name, synced and renamed, so a
//! backup folder never holds half a file under a backup's name. Beside it goes a manifest: when,
//! the schema version, the trail's head *read from the copy*, the chain's verdict and the
//! file's SHA-256, so the restore (or a person) can tell the file is the one that was taken.
//!
//! A restore never deletes: the database it replaces (with its WAL) and the checkpoint file
//! signed for the replaced trail are moved aside under a `.before-restore-…` name. The restored
//! trail then records the restore itself (`store.restored`: which backup, its head, and how far
//! the replaced trail had reached), so the gap between the backup and the restore is in the
//! trail, not hidden by it.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use sha2::Digest;

use super::audit::{self, Verification};

/// What [`take`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The database copy.
    pub file: PathBuf,
    /// Its manifest (`<file>.manifest`).
    pub manifest: PathBuf,
    /// What the manifest says.
    pub facts: Manifest,
}

/// The facts written beside a backup, read back by [`restore`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// When the copy was taken (RFC 3339, local offset).
    pub taken: String,
    /// The schema version of the copy (the migrations it has).
    pub schema: i64,
    /// The audit trail's head in the copy (`#SEQ sha256:HASH`), empty for an empty trail.
    pub head: String,
    /// Audit rows in the copy.
    pub entries: u64,
    /// The chain's verdict on the copy (`intact`, or why not).
    pub chain: String,
    /// SHA-256 of the copy's bytes.
    pub sha256: String,
    /// The copy's size in bytes.
    pub bytes: u64,
}

impl Manifest {
    fn render(&self) -> String {
        format!(
            "taken: {}\nschema: {}\naudit head: {}\naudit entries: {}\nchain: {}\nsha256: {}\n\
             bytes: {}\n",
            self.taken, self.schema, self.head, self.entries, self.chain, self.sha256, self.bytes
        )
    }

    /// Read a manifest as [`take`] wrote it; a line it does not know is an error, so a
    /// hand-edited or foreign file is not half-believed.
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let mut m = Manifest::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once(": ") else {
                anyhow::bail!("line {}: not `key: value`: {line:?}", n + 1);
            };
            let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("line {}: {k}: {e}", n + 1);
            match k {
                "taken" => m.taken = v.to_string(),
                "schema" => m.schema = v.parse().map_err(|e| bad(&e))?,
                "audit head" => m.head = v.to_string(),
                "audit entries" => m.entries = v.parse().map_err(|e| bad(&e))?,
                "chain" => m.chain = v.to_string(),
                "sha256" => m.sha256 = v.to_string(),
                "bytes" => m.bytes = v.parse().map_err(|e| bad(&e))?,
                _ => anyhow::bail!("line {}: unknown key {k:?}", n + 1),
            }
        }
        if m.sha256.len() != 64 {
            anyhow::bail!("no sha256 line");
        }
        Ok(m)
    }
}

/// The schema version of an open database: how many migrations it has (SQLite's
/// `user_version`, which the migrations keep; on PostgreSQL the highest version recorded in
/// `stormbell_schema`).
pub fn schema_version(conn: &super::sql::Conn<'_>) -> super::sql::Result<i64> {
    if conn.is_postgres() {
        return conn.query_row(
            "SELECT COALESCE(max(version), 0) FROM stormbell_schema",
            (),
            |r| r.get(0),
        );
    }
    conn.query_row("PRAGMA user_version", (), |r| r.get(0))
}

/// The schema version this program brings a database to.
pub fn latest_schema() -> i64 {
    super::migrations::count() as i64
}

/// The name a backup taken at `at` gets: sortable, readable, no characters a shell or a
/// Windows share would trip on.
pub fn file_name(at: &jiff::Zoned) -> String {
    format!("stormbell-{}.db", at.strftime("%Y%m%d-%H%M%S"))
}

/// Copy the database at `db` into `dir` (created if needed) as it stands now, consistently,
/// while the daemon may be writing; write the manifest beside it. Fails, leaving no file under
/// a backup's name, when the copy cannot be made.
pub fn take(db: &Path, dir: &Path, at: &jiff::Zoned) -> anyhow::Result<Taken> {
    use anyhow::Context;
    if !db.exists() {
        anyhow::bail!("no database at {}", db.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = file_name(at);
    let file = dir.join(&name);
    if file.exists() {
        anyhow::bail!("{} exists already; nothing was written", file.display());
    }
    let partial = dir.join(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&partial);
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(120))?;
    let target = partial
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", partial.display()))?;
    if let Err(e) = conn.execute("VACUUM INTO ?1", [target]) {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("copying {} failed", db.display()));
    }
    drop(conn);
    let facts = match describe(&partial, at) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    sync_file(&partial)?;
    std::fs::rename(&partial, &file)
        .with_context(|| format!("cannot rename the copy to {}", file.display()))?;
    let manifest = dir.join(format!("{name}.manifest"));
    write_synced(&manifest, facts.render().as_bytes())?;
    sync_dir(dir);
    Ok(Taken {
        file,
        manifest,
        facts,
    })
}

/// The manifest facts of a database copy at `file`.
fn describe(file: &Path, at: &jiff::Zoned) -> anyhow::Result<Manifest> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let schema = schema_version(&super::sql::Conn::lite(&conn))?;
    let (entries, head, chain) = match audit::verify(&super::sql::Conn::lite(&conn))? {
        Verification::Intact { entries, head } => (
            entries,
            head.map(|(s, h)| format!("#{s} sha256:{h}"))
                .unwrap_or_default(),
            "intact".to_string(),
        ),
        Verification::Broken {
            seq,
            reason,
            intact_before,
        } => (
            intact_before,
            String::new(),
            format!("BROKEN at #{seq}: {reason}"),
        ),
    };
    drop(conn);
    let (sha256, bytes) = digest(file)?;
    Ok(Manifest {
        taken: at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        schema,
        head,
        entries,
        chain,
        sha256,
        bytes,
    })
}

fn digest(file: &Path) -> anyhow::Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(file)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), bytes))
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Makes the renames durable; a filesystem that cannot sync a folder loses nothing by it.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What a restore checked and did, for the person running it and for the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The backup's manifest (`None`: there was none beside the file).
    pub manifest: Option<Manifest>,
    /// The restored copy's head before the restore was recorded.
    pub head: String,
    /// The schema version of the backup.
    pub schema_was: i64,
    /// Where the replaced database (and its WAL) went, if there was one.
    pub moved_db: Option<PathBuf>,
    /// How far the replaced trail had reached (`#SEQ sha256:HASH`).
    pub replaced_head: Option<String>,
    /// Where the replaced trail's checkpoint file went, if there was one.
    pub moved_checkpoints: Option<PathBuf>,
}

/// Check the backup at `file`, then put it in place at `db`, moving whatever is there aside.
/// Refuses (changing nothing) a backup whose bytes differ from its manifest, that is not a
/// sound SQLite database, whose audit chain is broken, or that a newer stormbell made.
/// The caller opens the restored database (bringing its schema up to date) and records the
/// restore in its trail.
pub fn restore(
    file: &Path,
    db: &Path,
    checkpoints: Option<&Path>,
    at: &jiff::Zoned,
) -> anyhow::Result<Restored> {
    use anyhow::Context;
    let manifest_path = PathBuf::from(format!("{}.manifest", file.display()));
    let manifest = if manifest_path.exists() {
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?;
        let m = Manifest::parse(&text)
            .with_context(|| format!("{} is not a backup manifest", manifest_path.display()))?;
        let (sha, bytes) =
            digest(file).with_context(|| format!("cannot read {}", file.display()))?;
        if sha != m.sha256 || bytes != m.bytes {
            anyhow::bail!(
                "{} is not the file its manifest describes (sha256 {sha}, {bytes} bytes; the \
                 manifest says {}, {} bytes): changed or damaged since it was taken",
                file.display(),
                m.sha256,
                m.bytes
            );
        }
        Some(m)
    } else {
        None
    };
    let (schema_was, head) = {
        let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", file.display()))?;
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .with_context(|| format!("{} is not a SQLite database", file.display()))?;
        if check != "ok" {
            anyhow::bail!("{}: integrity check: {check}", file.display());
        }
        let schema = schema_version(&super::sql::Conn::lite(&conn))?;
        if schema > latest_schema() {
            anyhow::bail!(
                "{} has schema version {schema}; this stormbell knows up to {}: restore it with \
                 the stormbell that made it",
                file.display(),
                latest_schema()
            );
        }
        let head = match audit::verify(&super::sql::Conn::lite(&conn))? {
            Verification::Intact { head, .. } => head
                .map(|(s, h)| format!("#{s} sha256:{h}"))
                .unwrap_or_default(),
            Verification::Broken { seq, reason, .. } => anyhow::bail!(
                "{}: the audit chain is broken at #{seq} ({reason}); not restored",
                file.display()
            ),
        };
        (schema, head)
    };
    let stamp = at.strftime("%Y%m%d-%H%M%S").to_string();
    let aside = |p: &Path| PathBuf::from(format!("{}.before-restore-{stamp}", p.display()));
    let mut moved_db = None;
    let mut replaced_head = None;
    if db.exists() {
        {
            let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("cannot open {}", db.display()))?;
            replaced_head = audit::head(&super::sql::Conn::lite(&conn))
                .ok()
                .flatten()
                .map(|(s, h)| format!("#{s} sha256:{h}"));
        }
        let to = aside(db);
        std::fs::rename(db, &to).with_context(|| format!("cannot move {} aside", db.display()))?;
        for suffix in ["-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", db.display()));
            if from.exists() {
                let to = PathBuf::from(format!("{}{suffix}", to.display()));
                std::fs::rename(&from, &to)
                    .with_context(|| format!("cannot move {} aside", from.display()))?;
            }
        }
        moved_db = Some(to);
    }
    let mut moved_checkpoints = None;
    if let Some(cp) = checkpoints
        && cp.exists()
    {
        let to = aside(cp);
        std::fs::rename(cp, &to).with_context(|| format!("cannot move {} aside", cp.display()))?;
        moved_checkpoints = Some(to);
    }
    if let Some(dir) = db.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let partial = PathBuf::from(format!("{}.restoring", db.display()));
    std::fs::copy(file, &partial)
        .with_context(|| format!("cannot copy {} to {}", file.display(), partial.display()))?;
    sync_file(&partial)?;
    std::fs::rename(&partial, db)?;
    if let Some(dir) = db.parent() {
        sync_dir(dir);
    }
    Ok(Restored {
        manifest,
        head,
        schema_was,
        moved_db,
        replaced_head,
        moved_checkpoints,
    })
}

/// The trail's record of a restore, appended by the caller once the restored database is open.
pub fn restored_entry(r: &Restored, file: &Path, at: &jiff::Zoned) -> audit::Entry {
    let mut e = audit::Entry::utc(
        at.timestamp(),
        "admin",
        "store.restored",
        file.display().to_string(),
        serde_json::json!({
            "backup": file.display().to_string(),
            "taken": r.manifest.as_ref().map(|m| m.taken.clone()),
            "backup_head": r.head,
            "schema_was": r.schema_was,
            "replaced_head": r.replaced_head,
            "replaced_db": r.moved_db.as_ref().map(|p| p.display().to_string()),
            "replaced_checkpoints": r.moved_checkpoints.as_ref().map(|p| p.display().to_string()),
        }),
    );
    e.at = at.clone();
    e
}
