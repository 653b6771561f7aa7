//! The advisory lock `wardctl serve` holds on its SQLite data directory while it serves: a
//! second controller on the same directory would share the store unsynchronized and rewrite
//! `server-url` under the first. The lock is the kernel's (flock on `DIR/serve.lock`), so it
//! is released when the process ends, however it ends; the file names the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::core::Timestamp;

/// Held while serving; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeLockError {
    #[error(
        "{dir} is in use by another `wardctl serve` ({holder}): two controllers must not share one SQLite data directory. Stop that one first, or give this one its own --data-dir"
    )]
    Held { dir: String, holder: String },
    #[error("cannot lock the data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The lock file inside `dir`.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("serve.lock")
}

impl ServeLock {
    /// Takes the lock on `dir` (which must exist) for this process, started at `now`, or says
    /// who holds it.
    pub fn acquire(dir: &Path, now: Timestamp) -> Result<Self, ServeLockError> {
        let path = lock_path(dir);
        let io = |source| ServeLockError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut text = String::new();
                // Best effort: a holder that has just taken the lock may not have written yet.
                let _ = file.read_to_string(&mut text);
                return Err(ServeLockError::Held {
                    dir: dir.display().to_string(),
                    holder: describe(&text),
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        let text = format!("pid {}\nstarted {}\n", std::process::id(), now.rfc3339());
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// "pid N, started T" from the lock file's text (only its two known lines, cleaned).
fn describe(text: &str) -> String {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| crate::core::text::clean(v.trim(), 64))
            .filter(|v| !v.is_empty())
    };
    match (field("pid "), field("started ")) {
        (Some(pid), Some(started)) => format!("pid {pid}, started {started}"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "a process that is still starting".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_taker_is_told_who_holds_it_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::from_unix_ms(1_800_000_000_000);
        let first = ServeLock::acquire(dir.path(), now).unwrap();
        let err = ServeLock::acquire(dir.path(), now).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}, started 2027-01-15", std::process::id())),
            "{err}"
        );
        drop(first);
        ServeLock::acquire(dir.path(), now).unwrap();
    }
}
