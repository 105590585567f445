//! Signing EBD packages: SM2 with SM3 (GY/T 389-2023 / GD/J 081-2018 name these algorithms),
//! or none for test platforms. Chosen by config; the rest of the adapter sees one trait.
//!
//! What is signed is the exact bytes of the package's `EBDB_<EBDID>.xml`. The signature file
//! `EBDS_EBDB_<EBDID>.xml` names the certificate by issuer and serial number, the algorithms,
//! the time (Unix seconds in hex, as the vendor samples have it) and the value: the SM2
//! signature as a DER `SEQUENCE { r INTEGER, s INTEGER }` (GM/T 0009), base64. The
//! distinguishing identifier is GM/T 0009's default `1234567812345678`. In production the key
//! usually lives in a USB key or a signature server; `Signer` is where that plugs in.

use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sm2::dsa::signature::Signer as _;

/// The default SM2 distinguishing identifier (GM/T 0009-2012).
pub const DEFAULT_DISTID: &str = "1234567812345678";

/// A signature over a package's main document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Certificate type (1: the platform certificate, as in the vendor samples).
    pub cert_type: String,
    /// Who issued the certificate.
    pub issuer: String,
    /// Its serial number.
    pub cert_sn: String,
    /// "SM3".
    pub digest_algorithm: &'static str,
    /// "SM2".
    pub signature_algorithm: &'static str,
    /// The value, base64 of DER.
    pub value: String,
}

/// Signs a package's main document. `None` from [`Signer::sign`] means the package goes
/// without a signature file (test platforms).
pub trait Signer: Send + Sync {
    /// Sign these bytes.
    fn sign(&self, document: &[u8]) -> anyhow::Result<Option<Signed>>;
}

/// No signature: for test platforms that do not check one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSigner;

impl Signer for NoSigner {
    fn sign(&self, _: &[u8]) -> anyhow::Result<Option<Signed>> {
        Ok(None)
    }
}

/// `[dispatch.broadcast.platform.signer]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SignerSettings {
    /// No signature file.
    None,
    /// SM2/SM3 with a key file.
    Sm2 {
        /// PKCS#8 PEM private key (`openssl genpkey -algorithm SM2`).
        key: std::path::PathBuf,
        /// Certificate serial number, as the platform registered it.
        cert_sn: String,
        /// Certificate issuer id.
        issuer: String,
    },
}

impl SignerSettings {
    /// The signer these settings describe (reading the key now: a bad key stops start-up).
    pub fn build(&self) -> anyhow::Result<Box<dyn Signer>> {
        Ok(match self {
            SignerSettings::None => Box::new(NoSigner),
            SignerSettings::Sm2 {
                key,
                cert_sn,
                issuer,
            } => Box::new(Sm2Signer::from_pem_file(key, cert_sn, issuer)?),
        })
    }
}

/// SM2 signatures (SM3 digest) with a private key held in memory.
pub struct Sm2Signer {
    key: sm2::dsa::SigningKey,
    cert_sn: String,
    issuer: String,
}

impl std::fmt::Debug for Sm2Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sm2Signer")
            .field("cert_sn", &self.cert_sn)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Sm2Signer {
    /// From a PKCS#8 PEM key file.
    pub fn from_pem_file(path: &Path, cert_sn: &str, issuer: &str) -> anyhow::Result<Sm2Signer> {
        use sm2::pkcs8::DecodePrivateKey;
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("SM2 key {}: {e}", path.display()))?;
        let secret = sm2::SecretKey::from_pkcs8_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "SM2 key {}: not a PKCS#8 PEM SM2 private key ({e}); make one with `openssl genpkey -algorithm SM2`",
                path.display()
            )
        })?;
        let key = sm2::dsa::SigningKey::new(DEFAULT_DISTID, &secret)
            .map_err(|e| anyhow::anyhow!("SM2 key {}: {e}", path.display()))?;
        Ok(Sm2Signer {
            key,
            cert_sn: cert_sn.into(),
            issuer: issuer.into(),
        })
    }
}

impl Signer for Sm2Signer {
    fn sign(&self, document: &[u8]) -> anyhow::Result<Option<Signed>> {
        let sig: sm2::dsa::Signature = self
            .key
            .try_sign(document)
            .map_err(|e| anyhow::anyhow!("SM2 signing failed: {e}"))?;
        let der = der_signature(&sig.r_bytes(), &sig.s_bytes());
        Ok(Some(Signed {
            cert_type: "1".into(),
            issuer: self.issuer.clone(),
            cert_sn: self.cert_sn.clone(),
            digest_algorithm: "SM3",
            signature_algorithm: "SM2",
            value: base64::engine::general_purpose::STANDARD.encode(der),
        }))
    }
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from big-endian r and s.
fn der_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(v: &[u8]) -> Vec<u8> {
        let mut v: &[u8] = v;
        while v.len() > 1 && v[0] == 0 {
            v = &v[1..];
        }
        let mut out = vec![0x02];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    }
    let (r, s) = (integer(r), integer(s));
    let mut out = vec![0x30, (r.len() + s.len()) as u8];
    out.extend(r);
    out.extend(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal_and_positive() {
        // Leading zeros dropped; a high bit gets a zero pad byte.
        assert_eq!(
            der_signature(&[0, 0, 0x7f], &[0x80, 1]),
            vec![0x30, 0x08, 0x02, 0x01, 0x7f, 0x02, 0x03, 0x00, 0x80, 0x01]
        );
        assert_eq!(der_signature(&[0], &[0]), vec![0x30, 6, 2, 1, 0, 2, 1, 0]);
    }
}
