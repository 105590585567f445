//! Personal check-in links: each responsible person's SMS carries a short link with a token
//! bound to that person and that warning version, so a village lead on a cheap phone can
//! answer with one tap (the pages are respond's, in `web`).
//!
//! A token is 128 bits from the operating system's random source, base64url (22 characters):
//! not derived from anything, so knowing one tells nothing about another. It is made in the
//! transaction that queues the SMS, stored on the `dispatch_message` row that carries it (its
//! `token` and `link_expires`), and expires `valid_for` after the decision. The SMS is rendered once for everyone with a
//! placeholder of the link's exact length and the person's link put in its place, so the
//! segment count is known and the same for all.

use crate::store::sql::{Conn, OptionalExtension};
use base64::Engine;
use jiff::Timestamp;
use rusqlite::params;
use serde::Serialize;

/// Characters of a token.
pub const TOKEN_LEN: usize = 22;

/// A new token: 16 random bytes, base64url without padding.
pub fn token() -> anyhow::Result<String> {
    Tokens::default().draw()
}

/// Tokens for many texts at once (a red warning for a whole county): the operating system's
/// random bytes drawn for 64 tokens per call rather than one system call per token. Every
/// byte is used once, so the tokens are exactly as unpredictable as [`token`]'s.
#[derive(Default)]
pub struct Tokens {
    bytes: Vec<u8>,
}

impl Tokens {
    /// The next token.
    pub fn draw(&mut self) -> anyhow::Result<String> {
        if self.bytes.len() < 16 {
            self.bytes.resize(16 * 64, 0);
            getrandom::getrandom(&mut self.bytes)
                .map_err(|e| anyhow::anyhow!("no randomness for a link token: {e}"))?;
        }
        let at = self.bytes.len() - 16;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.bytes[at..]);
        self.bytes.truncate(at);
        Ok(token)
    }
}

/// Whether a string has a token's shape (checked before any lookup).
pub fn well_formed(t: &str) -> bool {
    t.len() == TOKEN_LEN
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The placeholder a text is rendered with, as long as a real link under `base`.
pub fn placeholder(base: &str) -> String {
    format!("{base}{}", "~".repeat(TOKEN_LEN))
}

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    /// The token.
    pub token: String,
    /// The message that carried it.
    pub message: i64,
    /// The decision (warning version).
    pub decision: i64,
    /// hazard:area.
    pub lineage: String,
    /// Version.
    pub version: i64,
    /// The person.
    pub person: String,
    /// Made.
    pub created: Timestamp,
    /// Refused after.
    pub expires: Timestamp,
}

fn row(r: &crate::store::sql::Row<'_>) -> crate::store::sql::Result<anyhow::Result<Link>> {
    let created: String = r.get(6)?;
    let expires: String = r.get(7)?;
    let (token, message, decision, lineage, version, person) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    );
    Ok((|| {
        Ok(Link {
            token,
            message,
            decision,
            lineage,
            version,
            person,
            created: created.parse()?,
            expires: expires.parse()?,
        })
    })())
}

/// The link a token stands for, if it exists (expired or not: the caller decides what an
/// expired one gets).
pub fn lookup(conn: &Conn<'_>, token: &str) -> anyhow::Result<Option<Link>> {
    if !well_formed(token) {
        return Ok(None);
    }
    conn.prepare_cached(
        "SELECT token, id, decision, lineage, version, person, created, link_expires
         FROM dispatch_message WHERE token = ?1",
    )?
    .query_row(params![token], row)
    .optional()?
    .transpose()
}

/// The link carried by a message (for merged texts, which carry the carrier's).
pub fn of_message(conn: &Conn<'_>, message: i64) -> anyhow::Result<Option<Link>> {
    conn.prepare_cached(
        "SELECT token, id, decision, lineage, version, person, created, link_expires
         FROM dispatch_message WHERE id = ?1 AND token IS NOT NULL",
    )?
    .query_row(params![message], row)
    .optional()?
    .transpose()
}

/// The newest link made (the demo prints it as a lead's link to try by hand).
pub fn latest_token(conn: &Conn<'_>) -> anyhow::Result<Option<String>> {
    Ok(conn
        .query_row(
            // Links are made with the message that carries them: the newest message's.
            "SELECT token FROM dispatch_message WHERE token IS NOT NULL ORDER BY id DESC LIMIT 1",
            (),
            |r| r.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_url_safe_and_of_one_length() {
        let a: Vec<String> = (0..200).map(|_| token().unwrap()).collect();
        let mut b = a.clone();
        b.sort();
        b.dedup();
        assert_eq!(b.len(), 200);
        assert!(a.iter().all(|t| well_formed(t)));
        // Drawn in bulk: past several refills, none repeats and none is another's.
        let mut many = Tokens::default();
        let mut c: Vec<String> = (0..200).map(|_| many.draw().unwrap()).collect();
        assert!(c.iter().all(|t| well_formed(t)));
        c.extend(a);
        c.sort();
        c.dedup();
        assert_eq!(c.len(), 400);
        assert!(!well_formed("short"));
        assert!(!well_formed("aaaaaaaaaaaaaaaaaaaa/+"));
        assert_eq!(
            placeholder("http://x/r/").len(),
            "http://x/r/".len() + TOKEN_LEN
        );
    }
}
