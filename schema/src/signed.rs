//! Signed snapshots: what the control plane pushes and what a gateway keeps on disk.
//!
//! The envelope carries the snapshot's JSON text exactly as it was signed (`payload`), its
//! version and SHA-256, and an Ed25519 signature over the payload bytes. A gateway holds only
//! the public key; [`SignedSnapshot::verify`] checks the signature, the hash and that the
//! version inside the payload is the one outside, then parses and validates the snapshot, so
//! nothing unverified is ever parsed into a [`Snapshot`].

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::{Secret, Snapshot, ValidationErrors};

/// The wire and on-disk form of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSnapshot {
    /// The snapshot's version (also inside the payload; both must agree).
    pub version: u64,
    /// Lowercase hex SHA-256 of `payload`.
    pub sha256: String,
    /// Base64 (standard, padded) Ed25519 signature of `payload`'s bytes.
    pub signature: String,
    /// The snapshot as JSON text, exactly the bytes that were signed.
    pub payload: String,
}

/// Why a signed snapshot was refused. Each variant is a stable metric reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the snapshot envelope is not valid JSON of the expected shape: {0}")]
    Envelope(String),
    #[error("the snapshot signature does not verify with the configured public key")]
    Signature,
    #[error("the snapshot's sha256 does not match its payload")]
    Hash,
    #[error("the snapshot payload is not a valid snapshot: {0}")]
    Payload(String),
    #[error("the envelope says version {outer} but the payload says {inner}")]
    VersionMismatch { outer: u64, inner: u64 },
    #[error("the snapshot does not validate: {0}")]
    Invalid(ValidationErrors),
}

impl VerifyError {
    /// A short, stable reason for metrics and status reports.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Envelope(_) => "envelope",
            Self::Signature => "signature",
            Self::Hash => "hash",
            Self::Payload(_) => "payload",
            Self::VersionMismatch { .. } => "version_mismatch",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Why a key could not be loaded or a snapshot signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not base64 of an Ed25519 PKCS#8 document")]
    BadPrivateKey,
    #[error("the public key is not base64 of 32 bytes (an Ed25519 public key)")]
    BadPublicKey,
    #[error("the system random number generator failed")]
    Rng,
    #[error("the snapshot cannot be serialised: {0}")]
    Serialize(String),
}

/// The control plane's signing key (Ed25519). Its `Debug` never shows the key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

/// A gateway's verification key: the control plane's Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey([u8; 32]);

/// A freshly generated key pair, both halves base64, for `controlplane keygen`.
pub struct GeneratedKeyPair {
    /// Base64 PKCS#8 private key: keep secret (file mode 0600).
    pub private_pkcs8_b64: Secret,
    /// Base64 public key: give to every gateway.
    pub public_b64: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl SigningKey {
    /// Generates a new key pair.
    pub fn generate() -> Result<GeneratedKeyPair, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Rng)?;
        let key = Self::from_pkcs8(doc.as_ref())?;
        Ok(GeneratedKeyPair {
            private_pkcs8_b64: Secret::new(b64().encode(doc.as_ref())),
            public_b64: key.public_key_b64(),
        })
    }

    /// Parses base64 PKCS#8 (what `controlplane keygen` writes).
    pub fn from_base64(text: &Secret) -> Result<Self, KeyError> {
        let der = b64()
            .decode(text.expose().trim())
            .map_err(|_| KeyError::BadPrivateKey)?;
        Self::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| KeyError::BadPrivateKey)?;
        Ok(Self { pair })
    }

    /// The public half, base64.
    pub fn public_key_b64(&self) -> String {
        use ring::signature::KeyPair as _;
        b64().encode(self.pair.public_key().as_ref())
    }

    /// Serialises and signs `snapshot`.
    pub fn sign(&self, snapshot: &Snapshot) -> Result<SignedSnapshot, KeyError> {
        let payload =
            serde_json::to_string(snapshot).map_err(|e| KeyError::Serialize(e.to_string()))?;
        let signature = self.pair.sign(payload.as_bytes());
        Ok(SignedSnapshot {
            version: snapshot.version,
            sha256: sha256_hex(payload.as_bytes()),
            signature: b64().encode(signature.as_ref()),
            payload,
        })
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

impl VerifyingKey {
    /// Parses a base64 Ed25519 public key.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let raw = b64()
            .decode(text.trim())
            .map_err(|_| KeyError::BadPublicKey)?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| KeyError::BadPublicKey)?;
        Ok(Self(raw))
    }
}

impl SignedSnapshot {
    /// Parses an envelope from JSON bytes (the stream's event data, or the file on disk).
    pub fn from_json(bytes: &[u8]) -> Result<Self, VerifyError> {
        serde_json::from_slice(bytes).map_err(|e| VerifyError::Envelope(e.to_string()))
    }

    /// Checks signature, hash and version, then parses and validates the snapshot.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Snapshot, VerifyError> {
        let signature = b64()
            .decode(&self.signature)
            .map_err(|_| VerifyError::Signature)?;
        UnparsedPublicKey::new(&ED25519, &key.0)
            .verify(self.payload.as_bytes(), &signature)
            .map_err(|_| VerifyError::Signature)?;
        if sha256_hex(self.payload.as_bytes()) != self.sha256 {
            return Err(VerifyError::Hash);
        }
        let snapshot: Snapshot =
            serde_json::from_str(&self.payload).map_err(|e| VerifyError::Payload(e.to_string()))?;
        if snapshot.version != self.version {
            return Err(VerifyError::VersionMismatch {
                outer: self.version,
                inner: snapshot.version,
            });
        }
        snapshot.validate().map_err(VerifyError::Invalid)?;
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (SigningKey, VerifyingKey) {
        let generated = SigningKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let signing =
            SigningKey::from_base64(&generated.private_pkcs8_b64).unwrap_or_else(|e| panic!("{e}"));
        let verifying =
            VerifyingKey::from_base64(&generated.public_b64).unwrap_or_else(|e| panic!("{e}"));
        (signing, verifying)
    }

    fn snapshot(version: u64) -> Snapshot {
        serde_json::from_value(serde_json::json!({"version": version, "projects": [{"slug": "p"}]}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn signed_snapshot_round_trips() {
        let (s, v) = pair();
        let signed = s.sign(&snapshot(7)).unwrap_or_else(|e| panic!("{e}"));
        let text = serde_json::to_vec(&signed).unwrap_or_else(|e| panic!("{e}"));
        let back = SignedSnapshot::from_json(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.verify(&v), Ok(snapshot(7)));
    }

    #[test]
    fn tampering_of_any_part_is_refused() {
        let (s, v) = pair();
        let good = s.sign(&snapshot(7)).unwrap_or_else(|e| panic!("{e}"));

        let mut payload = good.clone();
        payload.payload = payload.payload.replace("\"p\"", "\"q\"");
        assert_eq!(payload.verify(&v), Err(VerifyError::Signature));

        let mut hash = good.clone();
        hash.sha256 = sha256_hex(b"other");
        assert_eq!(hash.verify(&v), Err(VerifyError::Hash));

        let mut version = good.clone();
        version.version = 8;
        assert!(matches!(
            version.verify(&v),
            Err(VerifyError::VersionMismatch { outer: 8, inner: 7 })
        ));

        let (other_signer, _) = pair();
        let foreign = other_signer
            .sign(&snapshot(7))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(foreign.verify(&v), Err(VerifyError::Signature));

        let mut garbage = good;
        garbage.signature = "!!".into();
        assert_eq!(garbage.verify(&v), Err(VerifyError::Signature));
        assert!(matches!(
            SignedSnapshot::from_json(b"{\"version\":1}"),
            Err(VerifyError::Envelope(_))
        ));
    }

    #[test]
    fn keys_parse_only_their_own_shape_and_never_print() {
        assert_eq!(
            VerifyingKey::from_base64("AAAA").err(),
            Some(KeyError::BadPublicKey)
        );
        assert_eq!(
            SigningKey::from_base64(&Secret::new("bm90IGEga2V5")).err(),
            Some(KeyError::BadPrivateKey)
        );
        let (s, _) = pair();
        assert_eq!(format!("{s:?}"), "SigningKey([REDACTED])");
    }
}
