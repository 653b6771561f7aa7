//! The messaging directory's contents, counted and destroyed through file descriptors, so no
//! local user can redirect the wipe: the agent runs as root and the directory belongs to the
//! app's user, who may swap any file or directory in it for a symbolic link at any moment.
//!
//! - The directory itself is opened one path component at a time, refusing a symbolic link at
//!   every step (its path was made canonical at start-up, so a link found now was put there
//!   since).
//! - Every entry is reached from its parent's descriptor (`openat`, `unlinkat`) with
//!   `O_NOFOLLOW`: a name swapped for a link after it was looked at is found to be a link when
//!   it is opened, and only the link is removed. Nothing is resolved by path twice.
//! - A file is overwritten only through a descriptor that `fstat` shows is a regular file with
//!   one link (a hard link would share its blocks with a name outside), and never crosses into
//!   another filesystem mounted inside the directory.

use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// What [`walk`] does with each entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Count only.
    Count,
    /// Overwrite and delete, keeping the directory itself.
    Destroy,
}

/// Files (anything that is not a directory: links count, as the link is what is removed) and
/// bytes of regular files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct WalkError {
    pub path: String,
    pub source: std::io::Error,
}

fn err(path: &Path, e: impl Into<std::io::Error>) -> WalkError {
    WalkError {
        path: path.display().to_string(),
        source: e.into(),
    }
}

/// How many times a directory is listed again when entries appear while it is emptied.
const PASSES: usize = 3;

/// Opens the directory at `path` (absolute, canonical) without following a symbolic link in
/// any component.
pub fn open_dir(path: &Path) -> Result<OwnedFd, WalkError> {
    if !path.is_absolute() {
        return Err(err(path, std::io::Error::other("not an absolute path")));
    }
    let mut current = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(Path::new("/"), e))?;
    let components: Vec<_> = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    for (i, component) in components.iter().enumerate() {
        let Component::Normal(name) = component else {
            return Err(err(
                path,
                std::io::Error::other("'..' in the path: it must be canonical"),
            ));
        };
        let last = i + 1 == components.len();
        let flags = OFlags::DIRECTORY
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | if last { OFlags::RDONLY } else { OFlags::PATH };
        current = rustix::fs::openat(&current, *name, flags, Mode::empty()).map_err(|e| {
            if e == Errno::LOOP || e == Errno::NOTDIR {
                err(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotADirectory, format!(
                        "{} is no longer a directory (a symbolic link or file was put in its place): refusing to follow it",
                        components[..=i]
                            .iter()
                            .fold(PathBuf::from("/"), |p, c| p.join(c))
                            .display()
                    )),
                )
            } else {
                err(path, e)
            }
        })?;
    }
    if components.is_empty() {
        current = rustix::fs::open(
            "/",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(path, e))?;
    }
    Ok(current)
}

/// Counts, or destroys, everything under the directory `dir` (whose path, for messages, is
/// `path`).
pub fn walk(dir: BorrowedFd<'_>, path: &Path, how: Walk) -> Result<Tally, WalkError> {
    let root = rustix::fs::fstat(dir).map_err(|e| err(path, e))?;
    walk_in(dir, path, how, &root)
}

fn walk_in(dir: BorrowedFd<'_>, path: &Path, how: Walk, root: &Stat) -> Result<Tally, WalkError> {
    let mut tally = Tally::default();
    for _ in 0..if how == Walk::Destroy { PASSES } else { 1 } {
        let names = list(dir, path)?;
        if names.is_empty() {
            break;
        }
        for name in names {
            let entry = path.join(name.to_string_lossy().as_ref());
            let t = entry_walk(dir, &name, &entry, how, root)?;
            tally.files += t.files;
            tally.bytes += t.bytes;
        }
    }
    if how == Walk::Destroy {
        rustix::fs::fsync(dir).map_err(|e| err(path, e))?;
    }
    Ok(tally)
}

/// The names in `dir` (no `.` and `..`).
fn list(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<CString>, WalkError> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(|e| err(path, e))? {
        let entry = entry.map_err(|e| err(path, e))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn entry_walk(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &Path,
    how: Walk,
    root: &Stat,
) -> Result<Tally, WalkError> {
    // The check...
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(Tally::default()),
        Err(e) => return Err(err(path, e)),
    };
    if how == Walk::Destroy {
        // ...and the act: whatever the name holds by now is what the act meets.
        fail::fail_point!("vault-wipe-before-act");
    }
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => directory(dir, name, path, how, root),
        FileType::RegularFile => file(dir, name, path, how, size(stat.st_size)),
        _ => other(dir, name, path, how, 0),
    }
}

fn size(st_size: i64) -> u64 {
    u64::try_from(st_size).unwrap_or(0)
}

fn directory(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &Path,
    how: Walk,
    root: &Stat,
) -> Result<Tally, WalkError> {
    let sub = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(sub) => sub,
        // No longer a directory: swapped for a link or a file since it was looked at.
        Err(Errno::LOOP | Errno::NOTDIR) => return other(dir, name, path, how, 0),
        Err(Errno::NOENT) => return Ok(Tally::default()),
        Err(e) => return Err(err(path, e)),
    };
    let stat = rustix::fs::fstat(&sub).map_err(|e| err(path, e))?;
    if stat.st_dev != root.st_dev {
        return Err(err(
            path,
            std::io::Error::other(
                "another filesystem is mounted here: the wipe does not cross into it (unmount it, or wipe it separately)",
            ),
        ));
    }
    let tally = walk_in(sub.as_fd(), path, how, root)?;
    drop(sub);
    if how == Walk::Destroy {
        match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            // Swapped for a link or a file while it was emptied: remove that name only.
            Err(Errno::NOTDIR) => {
                return other(dir, name, path, how, 0).map(|t| Tally {
                    files: tally.files + t.files,
                    bytes: tally.bytes,
                });
            }
            Err(e) => return Err(err(path, e)),
        }
    }
    Ok(tally)
}

fn file(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &Path,
    how: Walk,
    bytes: u64,
) -> Result<Tally, WalkError> {
    let counted = Tally { files: 1, bytes };
    if how == Walk::Count {
        return Ok(counted);
    }
    // Non-blocking: a FIFO swapped in must not hang the wipe.
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP | Errno::NXIO | Errno::ISDIR) => return other(dir, name, path, how, 0),
        Err(Errno::NOENT) => return Ok(Tally::default()),
        Err(e) => return Err(err(path, e)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| err(path, e))?;
    let regular = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile;
    let bytes = size(stat.st_size);
    if regular && stat.st_nlink == 1 {
        overwrite(fd, bytes).map_err(|e| err(path, e))?;
    }
    unlink(dir, name, path)?;
    fail::fail_point!("vault-after-file-removed");
    Ok(Tally {
        files: 1,
        bytes: if regular { bytes } else { 0 },
    })
}

/// A link, socket, FIFO or device node: counted as one file, and the name removed (never what
/// it points to).
fn other(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &Path,
    how: Walk,
    bytes: u64,
) -> Result<Tally, WalkError> {
    if how == Walk::Destroy {
        unlink(dir, name, path)?;
    }
    Ok(Tally { files: 1, bytes })
}

fn unlink(dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<(), WalkError> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        // Gone already, or swapped for a directory: the next pass over the parent sees it.
        Ok(()) | Err(Errno::NOENT | Errno::ISDIR) => Ok(()),
        Err(e) => Err(err(path, e)),
    }
}

/// Writes zeros over the whole file and syncs it.
fn overwrite(fd: OwnedFd, len: u64) -> std::io::Result<()> {
    zero_fill(&mut std::fs::File::from(fd), len)
}

/// Writes `len` zeros from the file's current position and syncs it.
pub(crate) fn zero_fill(file: &mut std::fs::File, len: u64) -> std::io::Result<()> {
    let zeros = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Whether the directory `dir` has no entries.
pub fn is_empty(dir: BorrowedFd<'_>, path: &Path) -> Result<bool, WalkError> {
    Ok(list(dir, path)?.is_empty())
}

/// Opens a file in an absolute `path` for reading without following a link in its last
/// component (the key file: a link put in its place is refused, not read through).
pub fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    let fd = rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_dir_refuses_a_symbolic_link_in_any_component() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("real/data")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        assert!(open_dir(&root.join("real/data")).is_ok());
        let e = open_dir(&root.join("link/data")).unwrap_err();
        assert!(e.to_string().contains("refusing to follow"), "{e}");
        std::os::unix::fs::symlink(root.join("real/data"), root.join("last")).unwrap();
        assert!(open_dir(&root.join("last")).is_err());
        assert!(open_dir(Path::new("relative")).is_err());
    }

    #[test]
    fn a_hard_linked_file_is_unlinked_but_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let (dir, outside) = (root.join("m"), root.join("outside.txt"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&outside, b"shared blocks").unwrap();
        std::fs::hard_link(&outside, dir.join("link.txt")).unwrap();
        std::fs::write(dir.join("own.txt"), b"mine").unwrap();
        let fd = open_dir(&dir).unwrap();
        let t = walk(fd.as_fd(), &dir, Walk::Destroy).unwrap();
        assert_eq!(
            t,
            Tally {
                files: 2,
                bytes: 17
            }
        );
        assert_eq!(std::fs::read(&outside).unwrap(), b"shared blocks");
        assert!(is_empty(fd.as_fd(), &dir).unwrap());
    }

    #[test]
    fn a_fifo_is_removed_without_hanging() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        rustix::fs::mknodat(
            CWD,
            dir.join("pipe"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let fd = open_dir(&dir).unwrap();
        assert_eq!(walk(fd.as_fd(), &dir, Walk::Destroy).unwrap().files, 1);
        assert!(is_empty(fd.as_fd(), &dir).unwrap());
    }

    #[test]
    fn the_key_file_is_not_read_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::write(dir.join("real"), b"k").unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
        assert!(open_no_follow(&dir.join("real")).is_ok());
        assert!(open_no_follow(&dir.join("link")).is_err());
    }
}
