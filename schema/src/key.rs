//! Virtual keys: minted here, stored and compared only as SHA-256 digests.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::Secret;

/// Every virtual key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "gwk_";
/// How many leading characters of a key are kept for display (`gwk_` + 8 hex digits).
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// The lowercase hex SHA-256 digest of a virtual key: what configs, snapshots and the store hold.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of a presented key.
    pub fn of(key: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, key);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Parses 64 hex digits.
    pub fn parse_hex(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| "must be 64 hexadecimal digits (a SHA-256 digest)".to_owned())?;
        Ok(Self(out))
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({self})")
    }
}

impl TryFrom<String> for KeyDigest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse_hex(&s)
    }
}

impl From<KeyDigest> for String {
    fn from(d: KeyDigest) -> String {
        d.to_string()
    }
}

/// A freshly minted virtual key. The plaintext is shown once and then only its digest is kept.
#[derive(Debug)]
pub struct MintedKey {
    /// The plaintext key (redacted in formatting).
    pub plaintext: Secret,
    /// Its SHA-256 digest.
    pub digest: KeyDigest,
    /// A short, non-secret prefix for display (`gwk_1a2b3c4d`).
    pub display_prefix: String,
}

/// Why minting failed: only if the OS random source fails.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct MintError;

impl MintedKey {
    /// Mints a key of 256 random bits: `gwk_` followed by 64 hex digits.
    pub fn generate() -> Result<Self, MintError> {
        let mut raw = [0u8; 32];
        SystemRandom::new().fill(&mut raw).map_err(|_| MintError)?;
        let plaintext = format!("{KEY_PREFIX}{}", hex::encode(raw));
        let digest = KeyDigest::of(plaintext.as_bytes());
        let display_prefix = plaintext[..DISPLAY_PREFIX_LEN].to_owned();
        Ok(Self {
            plaintext: Secret::new(plaintext),
            digest,
            display_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_key_matches_its_digest_and_prefix() -> Result<(), MintError> {
        let k = MintedKey::generate()?;
        assert_eq!(k.plaintext.expose().len(), 68);
        assert!(k.plaintext.expose().starts_with(&k.display_prefix));
        assert_eq!(KeyDigest::of(k.plaintext.expose().as_bytes()), k.digest);
        assert!(!format!("{k:?}").contains(&k.plaintext.expose()[12..]));
        Ok(())
    }

    #[test]
    fn digest_hex_round_trips_and_rejects_garbage() {
        let d = KeyDigest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(KeyDigest::parse_hex(&d.to_string()), Ok(d));
        assert!(KeyDigest::parse_hex("xyz").is_err());
        assert!(KeyDigest::parse_hex(&"a".repeat(63)).is_err());
    }
}
