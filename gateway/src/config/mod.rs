//! The standalone config file: gateway-local `server` settings plus a [`Snapshot`].
//!
//! Parsed once at the edge into typed values ([`GatewayFile`]); everything the hot path needs
//! is then compiled into an [`crate::state::ActiveConfig`] off the hot path.

mod ingest;
mod limits;
mod server;

use std::path::{Path, PathBuf};

use gateway_schema::{Snapshot, ValidationErrors};
pub use ingest::IngestSettings;
pub use limits::{FailureMode, LimitsSettings};
pub use server::{ControlPlaneSettings, ServerSettings, TlsSettings};

/// Why a config file was refused. Each message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {reason}")]
    Yaml { path: PathBuf, reason: String },
    #[error("config file {path}: {field}: {reason}")]
    Field {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("config file {path}: {errors}")]
    Invalid {
        path: PathBuf,
        errors: ValidationErrors,
    },
}

/// A parsed and validated config file.
#[derive(Debug, Clone)]
pub struct GatewayFile {
    /// Listener and process settings (read at start; a reload does not change them).
    pub server: ServerSettings,
    /// What the gateway enforces (live-reloadable).
    pub snapshot: Snapshot,
}

impl GatewayFile {
    /// Reads, parses and validates `path`. Blocking: call it at start or from the reload thread.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates config text; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let yaml_err = |reason: String| ConfigError::Yaml {
            path: path.to_owned(),
            reason,
        };
        let mut doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| yaml_err(e.to_string()))?;
        if doc.is_null() {
            doc = serde_yaml_ng::Value::Mapping(Default::default());
        }
        let map = doc
            .as_mapping_mut()
            .ok_or_else(|| yaml_err("the top level must be a mapping".into()))?;
        let server_value = map.remove("server");

        let server = match server_value {
            None => ServerSettings::default(),
            Some(v) => deserialize_at(path, "server", v)?,
        };
        server
            .validate()
            .map_err(|(field, reason)| ConfigError::Field {
                path: path.to_owned(),
                field: format!("server.{field}"),
                reason,
            })?;
        let snapshot: Snapshot = deserialize_at(path, "", doc)?;
        snapshot.validate().map_err(|errors| ConfigError::Invalid {
            path: path.to_owned(),
            errors,
        })?;
        Ok(Self { server, snapshot })
    }
}

fn deserialize_at<T: serde::de::DeserializeOwned>(
    path: &Path,
    prefix: &str,
    value: serde_yaml_ng::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let field = match (prefix.is_empty(), inner == ".") {
            (true, _) => inner,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{inner}"),
        };
        ConfigError::Field {
            path: path.to_owned(),
            field,
            reason: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayFile, String> {
        GatewayFile::parse(Path::new("test.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_defaults() {
        let f = parse("").map_err(|e| e.to_string());
        let f = match f {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(f.server.listen, "127.0.0.1:8080");
        assert_eq!(f.snapshot.max_request_bytes, 10 * 1024 * 1024);
    }

    #[test]
    fn shipped_configs_are_valid() {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        // The quickstart must also compile (its keys are optional, its hosts may not resolve).
        let quick = GatewayFile::load(&conf.join("quickstart.yaml"));
        let quick = quick.unwrap_or_else(|e| panic!("{e}"));
        crate::state::ActiveConfig::build(&quick.snapshot, 1).unwrap_or_else(|e| panic!("{e}"));
        // The production template's secrets live in files that exist only in a deployment.
        GatewayFile::load(&conf.join("gateway.production.yaml")).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("server:\n  listen: 1.2.3.4:80\n  threds: 2\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("server") && e.contains("threds"), "{e}");
        let e = parse("providers:\n  - name: Bad\n    kind: openai\n    base_url: https://x\n")
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("providers[0].name") && e.contains("lowercase"),
            "{e}"
        );
        let e = parse("server:\n  listen: nonsense\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("server.listen"), "{e}");
        let e = parse("routes:\n  - model: x\n    provider: nope\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("routes[0].provider: names no provider"), "{e}");
        let e = parse("- a\n").err().unwrap_or_default();
        assert!(e.contains("top level must be a mapping"), "{e}");
    }
}
