//! Office users and sessions (migration 0012). The office page shows names, phone numbers and
//! who failed to answer: it is for the duty office only.
//!
//! - Passwords are kept as argon2id PHC strings (the crate's defaults: 19 MiB, 2 passes), never
//!   in clear; hashing runs off the async threads.
//! - A session is 128 random bits in an `HttpOnly`, `SameSite=Strict` cookie; the store keeps
//!   only its SHA-256, with an absolute expiry (a duty shift and a half) and a sign-out time.
//! - A failed sign-in does the same work whether the user exists or not, so the answer time
//!   does not tell which names exist.

use crate::store::sql::{Conn, OptionalExtension, Tx};
use crate::store::stamp;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use rusqlite::params;
use sha2::{Digest, Sha256};

/// How long a session lasts from sign-in: a 12-hour duty shift with its handover.
pub const SESSION_HOURS: i64 = 14;

/// Roles: an officer may act (mark help handled, sign people in later); a viewer only reads.
pub const ROLES: [&str; 2] = ["officer", "viewer"];

/// Hash a password for storage (argon2id, random salt).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| anyhow::anyhow!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// Whether `password` matches a stored hash (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a password nobody has, verified against when the user does not exist, so that an
/// unknown name costs the same time as a wrong password.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("stormbell decoy").unwrap_or_default())
}

/// Why a password is refused for an office account (none: it is acceptable).
pub fn weak(password: &str) -> Option<&'static str> {
    if password.chars().count() < 10 {
        Some("at least 10 characters / 至少10个字符")
    } else if password.chars().all(|c| c.is_ascii_digit()) {
        Some("not only digits / 不能全是数字")
    } else {
        None
    }
}

/// A user ready to be stored: checked, the password already hashed (argon2 is slow on
/// purpose, so it runs before the write, never inside the store's one writer).
#[derive(Debug, Clone)]
pub struct NewUser {
    name: String,
    role: String,
    hash: String,
}

impl NewUser {
    /// Check a name, role and password, and hash the password.
    pub fn new(name: &str, password: &str, role: &str) -> anyhow::Result<NewUser> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            anyhow::bail!("a user name is 1 to 64 printable characters");
        }
        if !ROLES.contains(&role) {
            anyhow::bail!("role {role:?}: one of {}", ROLES.join(", "));
        }
        if let Some(why) = weak(password) {
            anyhow::bail!("password: {why}");
        }
        Ok(NewUser {
            name: name.to_string(),
            role: role.to_string(),
            hash: hash_password(password)?,
        })
    }
}

/// Add a user, or set the password and role of an existing one (enabling it again; their
/// sessions signed in with the old password end).
pub fn put_user(tx: &Tx<'_>, u: &NewUser, now: Timestamp) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO web_user (name, hash, role, created) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET hash = ?2, role = ?3, disabled = 0",
        params![u.name, u.hash, u.role, stamp(now)],
    )?;
    tx.execute(
        "UPDATE web_session SET ended = ?2 WHERE \"user\" = ?1 AND ended IS NULL",
        params![u.name, stamp(now)],
    )?;
    Ok(())
}

/// Disable a user and end their sessions; false if there is no such user.
pub fn disable_user(tx: &Tx<'_>, name: &str, now: Timestamp) -> anyhow::Result<bool> {
    let n = tx.execute("UPDATE web_user SET disabled = 1 WHERE name = ?1", [name])?;
    tx.execute(
        "UPDATE web_session SET ended = ?2 WHERE \"user\" = ?1 AND ended IS NULL",
        params![name, stamp(now)],
    )?;
    Ok(n > 0)
}

/// A user as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Name.
    pub name: String,
    /// officer | viewer.
    pub role: String,
    /// When added.
    pub created: String,
    /// Disabled.
    pub disabled: bool,
}

/// Every user, by name.
pub fn users(c: &Conn<'_>) -> anyhow::Result<Vec<User>> {
    Ok(
        c.prepare("SELECT name, role, created, disabled FROM web_user ORDER BY name")?
            .query_map((), |r| {
                Ok(User {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    created: r.get(2)?,
                    disabled: r.get(3)?,
                })
            })?
            .collect::<crate::store::sql::Result<_>>()?,
    )
}

/// A user's stored hash and role, if they exist and are enabled.
pub fn credentials(c: &Conn<'_>, name: &str) -> anyhow::Result<Option<(String, String)>> {
    Ok(
        c.prepare_cached("SELECT hash, role FROM web_user WHERE name = ?1 AND disabled = 0")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    )
}

/// Check a name and password (blocking: call it off the async threads). `Some(role)` when they
/// match an enabled user.
pub fn check(stored: Option<(String, String)>, password: &str) -> Option<String> {
    match stored {
        Some((hash, role)) => verify_password(&hash, password).then_some(role),
        None => {
            let _ = verify_password(decoy(), password);
            None
        }
    }
}

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The stored id (SHA-256 of the cookie), also the key of the session's CSRF value.
    pub id: String,
    /// Who.
    pub user: String,
    /// Their role.
    pub role: String,
}

fn session_id(cookie: &str) -> String {
    hex::encode(Sha256::digest(cookie.as_bytes()))
}

/// Start a session; returns the cookie value.
pub fn start(tx: &Tx<'_>, user: &str, now: Timestamp) -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| anyhow::anyhow!("no randomness for a session: {e}"))?;
    let cookie = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let expires = now
        .checked_add(SignedDuration::from_hours(SESSION_HOURS))
        .unwrap_or(now);
    tx.execute(
        "INSERT INTO web_session (id, \"user\", created, expires) VALUES (?1, ?2, ?3, ?4)",
        params![session_id(&cookie), user, stamp(now), stamp(expires)],
    )?;
    Ok(cookie)
}

/// The live session of a cookie value, if any (not expired, not ended, user still enabled).
pub fn session(c: &Conn<'_>, cookie: &str, now: Timestamp) -> anyhow::Result<Option<Session>> {
    // A cookie is 22 base64url characters; anything else is not ours.
    if cookie.len() != 22
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(None);
    }
    let id = session_id(cookie);
    Ok(c.prepare_cached(
        "SELECT s.\"user\", u.role FROM web_session s JOIN web_user u ON u.name = s.\"user\"
         WHERE s.id = ?1 AND s.ended IS NULL AND s.expires > ?2 AND u.disabled = 0",
    )?
    .query_row(params![id, stamp(now)], |r| {
        Ok(Session {
            id: id.clone(),
            user: r.get(0)?,
            role: r.get(1)?,
        })
    })
    .optional()?)
}

/// End a session (sign out).
pub fn end(tx: &Tx<'_>, id: &str, now: Timestamp) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE web_session SET ended = ?2 WHERE id = ?1 AND ended IS NULL",
        params![id, stamp(now)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let h = hash_password("暴雨红色预警-2026").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("暴雨"));
        assert!(verify_password(&h, "暴雨红色预警-2026"));
        assert!(!verify_password(&h, "暴雨红色预警-2025"));
        assert!(!verify_password("not a hash", "x"));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash_password("暴雨红色预警-2026").unwrap());
    }

    #[test]
    fn weak_passwords_are_named() {
        assert!(weak("short").is_some());
        assert!(weak("13800138000").is_some());
        assert!(weak("值班室 password 1").is_none());
    }
}
