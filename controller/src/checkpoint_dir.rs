//! A directory of signed audit checkpoints (`serve --audit-checkpoints DIR`, `audit verify
//! --checkpoints DIR`): one file per checkpoint, written atomically, never overwritten.
//!
//! Reading takes every `*.json` and `*.jsonl` file in the directory (not its subdirectories),
//! one checkpoint per non-empty line, so checkpoints collected from the log stream or syslog
//! can be dropped in beside the controller's own files. Other files are ignored.

use std::io;
use std::path::{Path, PathBuf};

use crate::core::audit::Checkpoint;
use crate::core::audit::checkpoint::CheckpointError;

/// A line of a checkpoint file that is not a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {error}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct BadCheckpoint {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub error: CheckpointError,
}

/// What a directory holds.
#[derive(Debug, Default)]
pub struct Read {
    pub checkpoints: Vec<Checkpoint>,
    pub bad: Vec<BadCheckpoint>,
}

/// Creates `dir` (0700) when missing and checks it can be written; a clear error otherwise.
pub fn prepare(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{} is a file, not a directory", dir.display()));
    }
    ward_certs::files::create_private_dir(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(".ward-write-test");
    ward_certs::files::replace_file(&probe, b"", 0o600)
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

/// Writes `checkpoint` as its own file (temporary file, fsync, rename, fsync of the
/// directory). A file for the same (seq, hash) is kept as it is.
pub fn write(dir: &Path, checkpoint: &Checkpoint) -> io::Result<PathBuf> {
    let path = dir.join(checkpoint.file_name());
    if !path.exists() {
        ward_certs::files::replace_file(&path, format!("{checkpoint}\n").as_bytes(), 0o644)?;
    }
    Ok(path)
}

/// Every checkpoint in `dir`, and every line that is not one.
pub fn read(dir: &Path) -> io::Result<Read> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
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
    let mut out = Read::default();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        let several = lines.len() > 1;
        for (i, line) in lines {
            match line.parse::<Checkpoint>() {
                Ok(c) => out.checkpoints.push(c),
                Err(error) => out.bad.push(BadCheckpoint {
                    path: path.clone(),
                    line: several.then_some(i + 1),
                    error,
                }),
            }
        }
    }
    Ok(out)
}
