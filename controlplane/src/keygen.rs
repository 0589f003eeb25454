//! `controlplane keygen`: a new Ed25519 key pair for signing snapshots, written as two files
//! that are never overwritten; the private one is created with mode 0600.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use gateway_schema::SigningKey;

/// Why the key pair could not be written.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error(transparent)]
    Key(#[from] gateway_schema::signed::KeyError),
    #[error("cannot create {path} (it must not exist yet): {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn create(path: &Path, mode: u32, text: &str) -> Result<(), KeygenError> {
    let err = |source| KeygenError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)
}

/// Writes `<prefix>.key` (0600) and `<prefix>.pub`; returns their paths.
pub fn write_pair(prefix: &Path) -> Result<(PathBuf, PathBuf), KeygenError> {
    let pair = SigningKey::generate()?;
    let private = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    create(&private, 0o600, pair.private_pkcs8_b64.expose())?;
    create(&public, 0o644, &pair.public_b64)?;
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn writes_a_usable_pair_with_a_private_file_mode_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("keygen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let (private, public) = write_pair(&dir.join("snap")).unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&private)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default();
        assert_eq!(mode, 0o600);
        let key_text = std::fs::read_to_string(&private).unwrap_or_default();
        let key = SigningKey::from_base64(&gateway_schema::Secret::new(key_text))
            .unwrap_or_else(|e| panic!("{e}"));
        let pub_text = std::fs::read_to_string(&public).unwrap_or_default();
        assert_eq!(pub_text.trim(), key.public_key_b64());
        assert!(matches!(
            write_pair(&dir.join("snap")),
            Err(KeygenError::Write { .. })
        ));
    }
}
