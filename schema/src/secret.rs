//! Secrets and references to them.
//!
//! Snapshots carry only [`SecretRef`]s (`env:NAME`, `file:/path`); the gateway resolves them
//! locally into a [`Secret`], whose `Debug` and `Display` print a redaction so a log line,
//! an error or a metric can never carry the value by accident.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A secret value. Its formatting impls never show the value; use [`Secret::expose`] at the one
/// place the value is really needed (a header sent to a provider, a digest comparison).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself. Every call site is a place where the value leaves the type.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Where a secret lives: an environment variable or a file (e.g. a mounted Kubernetes Secret).
/// Written `env:NAME` or `file:/path` in configs and snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretRef {
    /// `env:NAME`
    Env(String),
    /// `file:/path`; surrounding whitespace (a trailing newline) is trimmed when read.
    File(PathBuf),
}

/// Why a secret reference could not be parsed or resolved. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretResolveError {
    #[error("secret reference must be `env:NAME` or `file:/path`")]
    Syntax,
    #[error("environment variable {0} is not set (or not valid UTF-8)")]
    EnvMissing(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("secret file {0} is empty")]
    FileEmpty(String),
}

impl SecretRef {
    /// Parses `env:NAME` or `file:/path`.
    pub fn parse(s: &str) -> Result<Self, SecretResolveError> {
        if let Some(name) = s.strip_prefix("env:") {
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if valid {
                return Ok(Self::Env(name.to_owned()));
            }
        } else if let Some(path) = s.strip_prefix("file:") {
            if !path.is_empty() {
                return Ok(Self::File(PathBuf::from(path)));
            }
        }
        Err(SecretResolveError::Syntax)
    }

    /// Reads the secret now. Does blocking I/O for `file:`: call it off the hot path.
    pub fn resolve(&self) -> Result<Secret, SecretResolveError> {
        match self {
            Self::Env(name) => match std::env::var(name) {
                Ok(v) if v.trim().is_empty() => Err(SecretResolveError::EnvEmpty(name.clone())),
                Ok(v) => Ok(Secret::new(v.trim().to_owned())),
                Err(_) => Err(SecretResolveError::EnvMissing(name.clone())),
            },
            Self::File(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| SecretResolveError::File {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
                let value = text.trim();
                if value.is_empty() {
                    return Err(SecretResolveError::FileEmpty(shown));
                }
                Ok(Secret::new(value.to_owned()))
            }
        }
    }
}

impl std::str::FromStr for SecretRef {
    type Err = SecretResolveError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SecretRef {
    type Error = SecretResolveError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("sk-canary-123");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert!(!format!("{:?}", Some(&s)).contains("canary"));
        assert_eq!(s.expose(), "sk-canary-123");
    }

    #[test]
    fn parses_and_round_trips_references() {
        assert_eq!(
            SecretRef::parse("env:OPENAI_API_KEY"),
            Ok(SecretRef::Env("OPENAI_API_KEY".into()))
        );
        assert_eq!(
            SecretRef::parse("file:/run/k").map(|r| r.to_string()),
            Ok("file:/run/k".into())
        );
        for bad in ["", "env:", "file:", "OPENAI", "env:A-B", "vault:x"] {
            assert_eq!(
                SecretRef::parse(bad),
                Err(SecretResolveError::Syntax),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolves_files_trimmed_and_reports_missing_ones() {
        let dir = std::env::temp_dir().join(format!("schema-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("key");
        std::fs::write(&path, "sk-file-value\n").ok();
        let r = SecretRef::File(path.clone());
        assert_eq!(
            r.resolve().map(|s| s.expose().to_owned()),
            Ok("sk-file-value".into())
        );
        let missing = SecretRef::File(dir.join("nope"));
        assert!(matches!(
            missing.resolve(),
            Err(SecretResolveError::File { .. })
        ));
        let unset = SecretRef::Env("SCHEMA_TEST_SURELY_UNSET_VAR".into());
        assert_eq!(
            unset.resolve(),
            Err(SecretResolveError::EnvMissing(
                "SCHEMA_TEST_SURELY_UNSET_VAR".into()
            ))
        );
    }
}
