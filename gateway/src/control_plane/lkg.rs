//! The last-known-good snapshot on disk: the signed envelope exactly as received, written by
//! atomic rename (a crash never leaves a half-written file), read back and verified at start.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use gateway_schema::SignedSnapshot;

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LkgError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Envelope(gateway_schema::VerifyError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LkgError + '_ {
    move |source| LkgError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads the envelope; `Ok(None)` when there is no file. Verification is the caller's.
pub fn read(path: &Path) -> Result<Option<SignedSnapshot>, LkgError> {
    match std::fs::read(path) {
        Ok(bytes) => SignedSnapshot::from_json(&bytes)
            .map(Some)
            .map_err(LkgError::Envelope),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes the envelope to `path` atomically: a temporary file in the same directory, fsync'd,
/// renamed over the old one, then the directory fsync'd.
pub fn write(path: &Path, signed: &SignedSnapshot) -> Result<(), LkgError> {
    let bytes = serde_json::to_vec(signed).map_err(|e| io(path)(std::io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or("snapshot".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("lkg-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("snap.json");
        assert!(matches!(read(&path), Ok(None)));
        let signed = SignedSnapshot {
            version: 3,
            sha256: "00".into(),
            signature: "AA==".into(),
            payload: "{}".into(),
        };
        write(&path, &signed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&path).ok().flatten(), Some(signed));
        std::fs::write(&path, b"{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(read(&path), Err(LkgError::Envelope(_))));
        let leftovers = std::fs::read_dir(&dir)
            .map(|d| d.count())
            .unwrap_or_default();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
