//! Writing key material and state to disk: secrets 0600, never overwriting by accident; and
//! the check every directory argument of `wardctl` and `ward-agent` gets; a directory others
//! drop JSON files into (audit checkpoints), prepared and read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (0700) when missing and checks it can be written; a clear error otherwise.
pub fn prepare_private_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{} is a file, not a directory", dir.display()));
    }
    create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(".ward-write-test");
    replace_file(&probe, b"", 0o600)
        .and_then(|()| fs::remove_file(&probe))
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

/// Every `*.json` and `*.jsonl` file directly in `dir` (not hidden, not in a subdirectory),
/// by name, with its text.
pub fn read_json_files(dir: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            p.is_file()
                && name.is_some_and(|n| {
                    !n.starts_with('.') && (n.ends_with(".json") || n.ends_with(".jsonl"))
                })
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| fs::read_to_string(&path).map(|text| (path, text)))
        .collect()
}

/// Creates `path` with mode 0600 and writes `bytes`; fails if the file exists.
pub fn create_secret_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_file(path, bytes, 0o600)
}

/// Creates `path` with mode 0644 and writes `bytes`; fails if the file exists.
pub fn create_public_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_file(path, bytes, 0o644)
}

fn create_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    sync_parent(path)
}

/// Replaces `path` atomically (write a temporary file, fsync, rename) with the given mode.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Creates a directory (and parents) readable only by its owner; tightens an existing one.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// A directory argument: refused when the path, or the nearest part of it that exists, is not
/// a directory ("is a file, not a directory", exit 2), before anything is read or created.
pub fn directory_arg(text: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(text);
    // The path, or else the nearest part of it that exists, must be a directory: one to be
    // created under a file would fail later with "Not a directory" (exit 1).
    for at in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        let Ok(meta) = std::fs::metadata(at) else {
            continue;
        };
        if meta.is_dir() {
            break;
        }
        let what = if meta.is_file() {
            "is a file, not a directory"
        } else {
            "is not a directory"
        };
        let named = if at == path {
            format!("{text} {what}")
        } else {
            format!("{text}: {} {what}", at.display())
        };
        return Err(format!(
            "{named}: give a directory (or a path where one can be made), or move the file away"
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create_secret_file(&path, b"one").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(create_secret_file(&path, b"two").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn replace_keeps_mode_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace_file(&path, b"a", 0o600).unwrap();
        replace_file(&path, b"b", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"b");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
