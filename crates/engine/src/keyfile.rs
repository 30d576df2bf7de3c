//! The audit signing key on disk: created on first start, readable by its owner only.
//!
//! The file holds the key in the signed-note private key text form
//! (`PRIVATE+KEY+<name>+<key id>+<key>`), one line.

use countersign_audit::note::{NoteError, SigningKey};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("audit key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit key file {path} is not a signing key: {source}")]
    Malformed {
        path: PathBuf,
        #[source]
        source: NoteError,
    },
    #[error("audit key file {path} is readable by others (mode {mode:o}); make it 0600")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("cannot create an audit key named `{name}`: {source}")]
    Generate {
        name: String,
        #[source]
        source: NoteError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads the key at `path`.
pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(io(path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    SigningKey::from_private_text(text.trim()).map_err(|source| KeyFileError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// Reads the key at `path`, or creates one named `name` there (mode 0600) if there is none.
pub fn load_or_create(path: &Path, name: &str) -> Result<SigningKey, KeyFileError> {
    if path.exists() {
        return load(path);
    }
    let key = generate(name)?;
    write_new(path, &key)?;
    tracing::info!(path = %path.display(), key = %key.verifier(), "created the audit signing key");
    Ok(key)
}

pub fn generate(name: &str) -> Result<SigningKey, KeyFileError> {
    SigningKey::generate(name).map_err(|source| KeyFileError::Generate {
        name: name.to_owned(),
        source,
    })
}

/// Writes `key` to a new file at `path`, owner-only, refusing to overwrite.
pub fn write_new(path: &Path, key: &SigningKey) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(format!("{}\n", key.to_private_text()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}

/// Puts `next` (already written) in place of `current`, keeping the old key beside it as
/// `<current>.retired-<millis>` so earlier checkpoints stay attributable.
pub fn promote(current: &Path, next: &Path, millis: i64) -> Result<PathBuf, KeyFileError> {
    let mut retired = current.as_os_str().to_owned();
    retired.push(format!(".retired-{millis}"));
    let retired = PathBuf::from(retired);
    std::fs::rename(current, &retired).map_err(io(current))?;
    std::fs::rename(next, current).map_err(io(next))?;
    Ok(retired)
}

/// The first key this log was signed with: the oldest `<path>.retired-<millis>` beside `path`,
/// or the key at `path` if it was never rotated. Verifying from it follows every announced
/// rotation, so the whole log checks out; starting from the current key would not.
pub fn original(path: &Path) -> Result<SigningKey, KeyFileError> {
    let name = path
        .file_name()
        .map(|n| format!("{}.retired-", n.to_string_lossy()))
        .unwrap_or_default();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let oldest = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let millis: i64 = file.strip_prefix(&name)?.parse().ok()?;
            Some((millis, entry.path()))
        })
        .min();
    match oldest {
        Some((_, retired)) => load(&retired),
        None => load(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_owner_only_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        let key = load_or_create(&path, "log.example/countersign").unwrap();
        let again = load_or_create(&path, "ignored").unwrap();
        assert_eq!(key.verifier(), again.verifier());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(load(&path), Err(KeyFileError::Exposed { .. })));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(dir.path().join("bad.key"), "garbage").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("bad.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        assert!(matches!(
            load(&dir.path().join("bad.key")),
            Err(KeyFileError::Malformed { .. })
        ));
        assert!(write_new(&path, &key).is_err(), "never overwrites a key");
    }

    #[test]
    fn promotion_keeps_the_retired_key() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("audit.key");
        let next = dir.path().join("audit.key.next");
        let old = load_or_create(&current, "a").unwrap();
        let new = generate("a").unwrap();
        write_new(&next, &new).unwrap();
        assert_eq!(original(&current).unwrap().verifier(), old.verifier());
        let retired = promote(&current, &next, 42).unwrap();
        assert_eq!(load(&current).unwrap().verifier(), new.verifier());
        assert_eq!(load(&retired).unwrap().verifier(), old.verifier());
        assert!(!next.exists());
        // A second rotation: the original is still the first key.
        let newest = generate("a").unwrap();
        write_new(&next, &newest).unwrap();
        promote(&current, &next, 99).unwrap();
        assert_eq!(original(&current).unwrap().verifier(), old.verifier());
    }
}
