//! Digest authentication (RFC 2617, RFC 8760's SHA-256): the answer to a trunk's 401 or 407.
//!
//! A trunk challenges every INVITE (and REGISTER) with a realm and a nonce; the answer is a
//! hash over the user, the password, the method and the URI, so the password never travels.
//! MD5 is what carriers and PBXs ask for; SHA-256 is answered too. Any other algorithm, or a
//! `qop` that offers only `auth-int`, is refused with what was asked.

use md5::Digest as _;
use sha2::Digest as _;

/// A challenge as a trunk sent it (`WWW-Authenticate` / `Proxy-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space.
    pub realm: String,
    /// The server's nonce.
    pub nonce: String,
    /// Echoed back as it came.
    pub opaque: Option<String>,
    /// `MD5` (also when absent) or `SHA-256`.
    pub algorithm: String,
    /// Whether `qop=auth` was offered (then the answer carries a cnonce and a count).
    pub qop_auth: bool,
}

/// Parameters of a `Digest …` header value, names lower-cased, quotes removed.
fn params(v: &str) -> Option<Vec<(String, String)>> {
    let rest = v.trim();
    let rest = rest
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("digest"))
        .map(|_| &rest[6..])?;
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if name.trim().is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            if chars.next_if_eq(&'"').is_some() {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {
                            value.push(c);
                            escaped = false;
                        }
                    }
                }
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            }
        }
        out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Some(out)
}

impl Challenge {
    /// Read a challenge; an error says what the trunk asked that cannot be answered.
    pub fn parse(v: &str) -> Result<Challenge, String> {
        let p = params(v).ok_or_else(|| format!("not a Digest challenge: {v:?}"))?;
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let realm = get("realm").ok_or("the challenge has no realm")?;
        let nonce = get("nonce").ok_or("the challenge has no nonce")?;
        let algorithm = get("algorithm").unwrap_or_else(|| "MD5".into());
        if !algorithm.eq_ignore_ascii_case("MD5") && !algorithm.eq_ignore_ascii_case("SHA-256") {
            return Err(format!(
                "the trunk asks for digest algorithm {algorithm:?} (MD5 and SHA-256 are answered)"
            ));
        }
        let qop = get("qop");
        let qop_auth = qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")));
        if qop.is_some() && !qop_auth {
            return Err(format!(
                "the trunk offers only qop {:?} (auth is answered)",
                qop.unwrap_or_default()
            ));
        }
        Ok(Challenge {
            realm,
            nonce,
            opaque: get("opaque"),
            algorithm,
            qop_auth,
        })
    }

    /// The `Authorization` / `Proxy-Authorization` value for `method` on `uri`; `cnonce` is
    /// fresh per answer, `nc` counts the answers to this nonce.
    pub fn answer(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let h = |s: String| -> String {
            if self.algorithm.eq_ignore_ascii_case("SHA-256") {
                hex::encode(sha2::Sha256::digest(s.as_bytes()))
            } else {
                hex::encode(md5::Md5::digest(s.as_bytes()))
            }
        };
        let ha1 = h(format!("{user}:{}:{password}", self.realm));
        let ha2 = h(format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            h(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            h(format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
            q(user),
            q(&self.realm),
            q(&self.nonce),
            q(uri),
            self.algorithm
        );
        if self.qop_auth {
            v.push_str(&format!(", qop=auth, cnonce=\"{}\", nc={nc}", q(cnonce)));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(", opaque=\"{}\"", q(o)));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's worked example (HTTP's, the same arithmetic SIP uses).
    #[test]
    fn the_rfc_example_gives_the_rfc_response() {
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let a = c.answer(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(a.contains("nc=00000001"), "{a}");
        assert!(
            a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
            "{a}"
        );
    }

    #[test]
    fn what_cannot_be_answered_is_named() {
        let e =
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256").unwrap_err();
        assert!(e.contains("SHA-512-256"), "{e}");
        let e = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").unwrap_err();
        assert!(e.contains("auth-int"), "{e}");
        assert!(
            Challenge::parse("Basic realm=\"r\"")
                .unwrap_err()
                .contains("not a Digest")
        );
        assert!(
            Challenge::parse("Digest nonce=\"n\"")
                .unwrap_err()
                .contains("realm")
        );
        let plain = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!plain.qop_auth);
        assert!(
            !plain
                .answer("u", "p", "INVITE", "sip:x", "c", 1)
                .contains("qop")
        );
    }
}
