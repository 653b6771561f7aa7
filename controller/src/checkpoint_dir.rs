//! A directory of signed audit checkpoints (`serve --audit-checkpoints DIR`, `audit verify
//! --checkpoints DIR`): one file per checkpoint, written atomically, never overwritten.
//!
//! Reading takes every `*.json` and `*.jsonl` file in the directory (not its subdirectories;
//! [`ward_files::read_json_files`]), one checkpoint per non-empty line
//! ([`crate::core::audit::checkpoint::read_files`]). Other files are ignored. The directory is
//! created and checked with [`ward_files::prepare_private_dir`].

use std::io;
use std::path::{Path, PathBuf};

use crate::core::audit::Checkpoint;
use crate::core::audit::checkpoint::{Read, read_files};

/// Writes `checkpoint` as its own file (temporary file, fsync, rename, fsync of the
/// directory). A file for the same (seq, hash) is kept as it is.
pub fn write(dir: &Path, checkpoint: &Checkpoint) -> io::Result<PathBuf> {
    let path = dir.join(checkpoint.file_name());
    if !path.exists() {
        ward_files::replace_file(&path, format!("{checkpoint}\n").as_bytes(), 0o644)?;
    }
    Ok(path)
}

/// Every checkpoint in `dir`, and every line that is not one.
pub fn read(dir: &Path) -> io::Result<Read> {
    Ok(read_files(ward_files::read_json_files(dir)?))
}
