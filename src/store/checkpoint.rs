//! Signed checkpoints of the audit trail's head, kept outside the database.
//!
//! The hash chain ([`super::audit`]) shows a row altered *inside* the chain, but someone who can
//! write the database file can rewrite a row and recompute every hash after it, or cut rows off
//! the end, and the chain still verifies. What stops that is a head written down somewhere the
//! database cannot reach:
//!
//! - a **checkpoint file**: one JSON line per checkpoint — sequence number, hash, time — each
//!   with an HMAC-SHA256 under a key kept outside the database. The daemon appends one every
//!   `audit.checkpoint_mins` when the trail has grown, and one at shutdown; each line also goes
//!   to the log (journald, and from there a remote syslog where the office has one);
//! - the **duty log**: the head `stormbell audit head` prints, written down at each shift
//!   change, checked with `stormbell audit verify --head`.
//!
//! [`check`] holds the trail to them: every checkpoint's row must still be there with the same
//! hash. A trail that ends before a checkpoint was cut; a row whose hash differs was rewritten
//! (and every row after it re-hashed). What a checkpoint cannot show is a change made after it,
//! by someone who can also read the key: that is what the duty log and a remote log are for.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::sql::Conn;
use hmac::Mac;

use super::audit::{Against, against};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Where checkpoints go and how often (from `[store]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The checkpoint file (appended to, one JSON line each).
    pub file: PathBuf,
    /// The key file.
    pub key: PathBuf,
    /// Time between checkpoints while the trail grows (`None`: only at shutdown).
    pub every: Option<std::time::Duration>,
}

/// The key that signs checkpoints: 32 random bytes in a file of its own (hex), outside the
/// database, so a copy or a rewrite of the database cannot forge them.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// Read the key at `path`; create it (mode 0600, in a new file that is never overwritten)
    /// when there is none yet. Two daemons starting at once on one data folder (two nodes
    /// of a drill) both find none: the key is written whole to a file of this process first
    /// and linked into place, so the one that comes second reads the first one's key, never
    /// a half-written file, and neither fails.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Key> {
        match Key::load(path) {
            Ok(k) => Ok(k),
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                let mut k = [0u8; 32];
                getrandom::getrandom(&mut k)
                    .map_err(|e| anyhow::anyhow!("no randomness for the audit key: {e}"))?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let mut own = path.as_os_str().to_owned();
                own.push(format!(".{}.{}", std::process::id(), hex::encode(&k[..4])));
                let own = PathBuf::from(own);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let written = opts.open(&own).and_then(|mut f| {
                    writeln!(f, "{}", hex::encode(k))?;
                    f.sync_all()
                });
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&own);
                    anyhow::bail!("{}: {e}", own.display());
                }
                let linked = std::fs::hard_link(&own, path);
                let _ = std::fs::remove_file(&own);
                match linked {
                    Ok(()) => Ok(Key(k)),
                    // Another daemon linked its key first: that one is the key.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Key::load(path),
                    Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Read the key at `path` (64 hex digits).
    pub fn load(path: &Path) -> anyhow::Result<Key> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let kind = e.kind();
            anyhow::Error::new(std::io::Error::new(
                kind,
                format!("{}: {e}", path.display()),
            ))
        })?;
        let bytes = hex::decode(text.trim())
            .map_err(|_| anyhow::anyhow!("{}: not an audit key (64 hex digits)", path.display()))?;
        let k: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{}: not an audit key (64 hex digits)", path.display()))?;
        Ok(Key(k))
    }

    fn mac(&self, seq: i64, hash: &str, at: &str) -> HmacSha256 {
        // `new_from_slice` takes any key length; a 32-byte key never fails.
        let mut m = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        m.update(b"stormbell-audit-checkpoint-v1\n");
        m.update(format!("{seq}\n{hash}\n{at}\n").as_bytes());
        m
    }
}

/// One checkpoint: the trail's head at a moment, signed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// When it was taken (UTC, as the store stamps times).
    pub at: String,
    /// The last row's sequence number.
    pub seq: i64,
    /// The last row's hash.
    pub hash: String,
    /// HMAC-SHA256 (hex) of the three above under the [`Key`].
    pub mac: String,
}

impl Checkpoint {
    /// Sign the head `(seq, hash)` as of `at`.
    pub fn sign(key: &Key, seq: i64, hash: &str, at: jiff::Timestamp) -> Checkpoint {
        let at = super::stamp(at);
        let mac = hex::encode(key.mac(seq, hash, &at).finalize().into_bytes());
        Checkpoint {
            at,
            seq,
            hash: hash.to_string(),
            mac,
        }
    }

    /// When it was taken, in `tz`, as people read it (`2019-08-09 18:30:00 +08:00`).
    pub fn local(&self, tz: &jiff::tz::TimeZone) -> String {
        self.at
            .parse::<jiff::Timestamp>()
            .map(|t| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %:z")
                    .to_string()
            })
            .unwrap_or_else(|_| self.at.clone())
    }

    /// Whether the signature is the key's (compared in constant time).
    pub fn signed_by(&self, key: &Key) -> bool {
        let Ok(mac) = hex::decode(&self.mac) else {
            return false;
        };
        key.mac(self.seq, &self.hash, &self.at)
            .verify_slice(&mac)
            .is_ok()
    }
}

/// Append `cp` to the checkpoint file at `path` (created, with its folder, if missing) and
/// flush it to disk.
pub fn append(path: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    let line = serde_json::to_string(cp).map_err(std::io::Error::other)?;
    writeln!(f, "{line}")?;
    f.sync_data()
}

/// The checkpoints in the file at `path`, in order, and a problem for each line that is not
/// one (with its line number). A missing file is no checkpoints.
pub fn read(path: &Path) -> std::io::Result<(Vec<Checkpoint>, Vec<String>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Checkpoint>(line) {
            Ok(cp) => out.push(cp),
            Err(e) => problems.push(format!(
                "{} line {}: not a checkpoint ({e})",
                path.display(),
                i + 1
            )),
        }
    }
    Ok((out, problems))
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Checked {
    /// Checkpoints whose signature and row both hold.
    pub holding: usize,
    /// The last checkpoint that holds, if any.
    pub last: Option<Checkpoint>,
    /// What does not hold, each naming the checkpoint (the first failure first).
    pub failures: Vec<String>,
}

/// Hold the trail to every checkpoint: each must be signed by `key` and its row still carry
/// its hash. The first failure is the earliest point the trail can no longer be trusted from.
///
/// Failures name each checkpoint by its number and its time in `tz`.
pub fn check(
    conn: &Conn<'_>,
    key: &Key,
    checkpoints: &[Checkpoint],
    tz: &jiff::tz::TimeZone,
) -> super::sql::Result<Checked> {
    let mut out = Checked::default();
    for cp in checkpoints {
        let at = cp.local(tz);
        if !cp.signed_by(key) {
            out.failures.push(format!(
                "checkpoint #{} of {at}: the signature is not the audit key's (forged or altered)",
                cp.seq
            ));
            continue;
        }
        match against(conn, cp.seq, &cp.hash)? {
            Against::Holds => {
                out.holding += 1;
                out.last = Some(cp.clone());
            }
            Against::Truncated { last } => out.failures.push(format!(
                "checkpoint #{} of {at}: the trail ends at #{last}; rows were cut off the end",
                cp.seq
            )),
            Against::Rewritten { found } => out.failures.push(format!(
                "checkpoint #{} of {at}: the row's hash is now {found}, not {}; the trail was \
                 rewritten at or before it",
                cp.seq, cp.hash
            )),
        }
    }
    Ok(out)
}

/// Parse a head as `audit head` prints it and people copy it: `#SEQ sha256:HASH`,
/// `SEQ:HASH` or `SEQ HASH`.
pub fn parse_head(s: &str) -> Option<(i64, String)> {
    let s = s.trim();
    let (seq, hash) = s
        .split_once(char::is_whitespace)
        .or_else(|| s.split_once(':'))?;
    let seq: i64 = seq.trim().trim_start_matches('#').parse().ok()?;
    let hash = hash.trim();
    let hash = hash.strip_prefix("sha256:").unwrap_or(hash);
    (seq > 0 && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (seq, hash.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemons_starting_at_once_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("county.audit-key");
        let start = std::sync::Barrier::new(8);
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        hex::encode(Key::load_or_create(&path).unwrap().0)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        assert_eq!(hex::encode(Key::load(&path).unwrap().0), keys[0]);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "no file of a creator is left behind");
    }

    #[test]
    fn a_signature_covers_every_field() {
        let key = Key([7; 32]);
        let at: jiff::Timestamp = "2019-08-09T18:30:00Z".parse().unwrap();
        let cp = Checkpoint::sign(&key, 12, &"ab".repeat(32), at);
        assert!(cp.signed_by(&key));
        assert!(!cp.signed_by(&Key([8; 32])));
        for changed in [
            Checkpoint {
                seq: 11,
                ..cp.clone()
            },
            Checkpoint {
                hash: "cd".repeat(32),
                ..cp.clone()
            },
            Checkpoint {
                at: "2019-08-09T18:31:00.000Z".into(),
                ..cp.clone()
            },
        ] {
            assert!(!changed.signed_by(&key), "{changed:?}");
        }
    }

    #[test]
    fn heads_are_read_as_people_copy_them() {
        let h = "0123456789abcdef".repeat(4);
        for s in [
            format!("#42 sha256:{h}"),
            format!("42:{h}"),
            format!(" 42 {} ", h.to_uppercase()),
        ] {
            assert_eq!(parse_head(&s), Some((42, h.clone())), "{s}");
        }
        assert_eq!(parse_head("#42 sha256:abc"), None);
        assert_eq!(parse_head(&format!("#0 {h}")), None);
        assert_eq!(parse_head("nonsense"), None);
    }
}
